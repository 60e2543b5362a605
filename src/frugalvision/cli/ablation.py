"""``frugalvision ablation NAME``: train an ablation grid and write its table (CSV + Markdown) and figure."""

from __future__ import annotations

import argparse

from ..names import DATASET_NAMES
from .options import check_output_path, hide_aliases

HELP = "train an ablation grid and write its table and figure"
DESCRIPTION = ("addernet-optim: AdderNet LeNet-5-BN with full-precision vs sign weight gradient x ALR / ILR / no LR "
               "scaling (the paper's optimisation ablation). Finished runs are reused, unfinished ones resumed. "
               "Unset training options take lenet5_bn's training defaults.")
# lenet5_bn's training defaults (models/lenet.py, register_model train_defaults), which the runs use unless set;
# tests/cli check these against the code
LENET5_BN_DEFAULTS = {"batch_size": 64, "lr": 0.1, "seed": 0}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=("addernet-optim",), help="which ablation")
    p.add_argument("--epochs", type=int, default=5, help="epochs per run")
    p.add_argument("--dataset", default="mnist5k", choices=DATASET_NAMES, help="training data")
    p.add_argument("--batch-size", type=int, help=f"batch size (default {LENET5_BN_DEFAULTS['batch_size']})")
    p.add_argument("--lr", type=float, help=f"base learning rate (default {LENET5_BN_DEFAULTS['lr']}, cosine "
                   "schedule)")
    p.add_argument("--seed", type=int, help=f"random seed (default {LENET5_BN_DEFAULTS['seed']})")
    hide_aliases(p.add_argument("--output-dir", "--output", dest="output", default="runs/ablation_addernet_optim",
                                metavar="DIR", help="parent folder of the run folders"), "--output")
    p.add_argument("--table", help="Markdown table path; the CSV goes next to it (default OUTPUT_DIR/<name>.md)")
    p.add_argument("--figure", help="PNG of the learning curves (default OUTPUT_DIR/<name>.png)")
    p.add_argument("--grads", default="full,sign", help="weight gradients to train, comma list")
    p.add_argument("--lr-modes", default="alr,ilr,none", help="LR scaling modes, comma list")
    p.add_argument("--retrain", action="store_true", help="train every run afresh instead of reusing/resuming")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--json", action="store_true", help="print one JSON object (rows, table and figure paths)")


def run(args: argparse.Namespace) -> int:
    from ..analysis.ablation import ABLATIONS
    from .common import print_table

    check_output_path(args.output, "--output-dir", folder=True)
    check_output_path(args.table, "--table")
    check_output_path(args.figure, "--figure", suffixes=(".png", ".svg", ".pdf"))
    overrides = {k: getattr(args, k) for k in ("batch_size", "lr", "seed", "device") if getattr(args, k) is not None}
    grads = tuple(g.strip() for g in args.grads.split(",") if g.strip())
    lr_modes = tuple(m.strip() for m in args.lr_modes.split(",") if m.strip())
    result = ABLATIONS[args.name](args.output, epochs=args.epochs, dataset=args.dataset, grads=grads,
                                  lr_modes=lr_modes, table=args.table, figure=args.figure, retrain=args.retrain,
                                  **overrides)
    if args.json:
        import json

        print(json.dumps({"rows": result.rows, "table": str(result.markdown_path), "csv": str(result.csv_path),
                          "figure": str(result.figure_path)}, default=str))
        return 0
    print_table(
        f"{args.name} on {args.dataset}, {args.epochs} epochs per run",
        ("weight grad", "LR scaling", "best val top-1 %", "final val top-1 %", "final train loss", "s/epoch"),
        [(r["weight_grad"], r["lr_scaling"], f"{r['best_val_top1']:.2f}", f"{r['final_val_top1']:.2f}",
          f"{r['final_train_loss']:.4f}", f"{r['seconds_per_epoch']:.1f}") for r in result.rows],
        caption=f"table: {result.markdown_path} and {result.csv_path}; figure: {result.figure_path}",
    )
    return 0
