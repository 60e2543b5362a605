"""``frugalvision ablation NAME``: train an ablation grid and write its table (CSV + Markdown) and figure."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "ablation", help="train an ablation grid and write its table and figure",
        description="addernet-optim: AdderNet LeNet-5-BN with full-precision vs sign weight gradient x ALR / ILR / "
        "no LR scaling (the paper's optimisation ablation). Finished runs are reused, unfinished ones resumed.",
    )
    p.add_argument("name", choices=("addernet-optim",), help="which ablation")
    p.add_argument("--epochs", type=int, default=5, help="epochs per run (default 5)")
    p.add_argument("--dataset", default="mnist5k", help="training data (default mnist5k)")
    p.add_argument("--batch-size", type=int, help="batch size (default 128)")
    p.add_argument("--lr", type=float, help="base learning rate (default 0.1, cosine schedule)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--output", default="runs/ablation_addernet_optim", help="parent folder of the run folders")
    p.add_argument("--table", help="Markdown table path; the CSV goes next to it (default OUTPUT/<name>.md)")
    p.add_argument("--figure", help="PNG of the learning curves (default OUTPUT/<name>.png)")
    p.add_argument("--grads", default="full,sign", help="weight gradients to train, comma list (default full,sign)")
    p.add_argument("--lr-modes", default="alr,ilr,none", help="LR scaling modes, comma list (default alr,ilr,none)")
    p.add_argument("--retrain", action="store_true", help="train every run afresh instead of reusing/resuming")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    return p


def run(args: argparse.Namespace) -> int:
    from ..analysis.ablation import ABLATIONS
    from .common import print_table

    overrides = {k: getattr(args, k) for k in ("batch_size", "lr", "seed", "device") if getattr(args, k) is not None}
    grads = tuple(g.strip() for g in args.grads.split(",") if g.strip())
    lr_modes = tuple(m.strip() for m in args.lr_modes.split(",") if m.strip())
    result = ABLATIONS[args.name](args.output, epochs=args.epochs, dataset=args.dataset, grads=grads,
                                  lr_modes=lr_modes, table=args.table, figure=args.figure, retrain=args.retrain,
                                  **overrides)
    print_table(
        f"{args.name} on {args.dataset}, {args.epochs} epochs per run",
        ("weight grad", "LR scaling", "best val top-1 %", "final val top-1 %", "final train loss", "s/epoch"),
        [(r["weight_grad"], r["lr_scaling"], f"{r['best_val_top1']:.2f}", f"{r['final_val_top1']:.2f}",
          f"{r['final_train_loss']:.4f}", f"{r['seconds_per_epoch']:.1f}") for r in result.rows],
        caption=f"table: {result.markdown_path} and {result.csv_path}; figure: {result.figure_path}",
    )
    return 0
