"""``frugalvision plot KIND``: the AdderNet paper's figures and learning curves as PNG files."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import ConfigError
from .options import add_model_arguments, check_output_path, hide_aliases

KINDS = ("features", "filters", "weights", "curves")
# what `--train` trains for each kind: (model, default epochs)
TRAIN_MODELS = {"features": ("lenet_pp", 10), "filters": ("lenet5_bn", 5), "weights": ("lenet5_bn", 5)}


HELP = "draw a figure (features, filters, weights, curves) to a PNG"
DESCRIPTION = ("features: LeNet++ 2-D/3-D features, CNN vs AdderNet (paper Fig. 1). filters: first-layer filters. "
               "weights: weight histograms with fitted Laplace and Gaussian densities. curves: learning curves of run "
               "folders. Give checkpoints/run folders with --checkpoint (repeatable), or --train to train the CNN and "
               "AdderNet twins first (features: lenet_pp; filters, weights: lenet5_bn; finished runs are reused).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=KINDS, help="which figure")
    add_model_arguments(p, checkpoint="repeat")
    p.add_argument("--label", action="append", default=[], help="panel/legend label per --checkpoint, in order")
    p.add_argument("--output", required=True, help="image file to write (PNG; .svg and .pdf also work)")
    p.add_argument("--train", action="store_true",
                   help="train the CNN and AdderNet twins into --output-dir first (reused when already finished)")
    hide_aliases(p.add_argument("--output-dir", "--runs-dir", dest="runs_dir", default="runs/figures", metavar="DIR",
                                help="with --train: parent folder of the run folders"), "--runs-dir")
    p.add_argument("--epochs", type=int, help="epochs for --train (features: 10, filters/weights: 5)")
    p.add_argument("--retrain", action="store_true",
                   help="with --train: start the runs afresh (needed when --output-dir holds runs with other settings)")
    p.add_argument("--feature-dim", type=int, choices=(2, 3), default=2, help="features: LeNet++ feature size")
    p.add_argument("--dataset", default="mnist5k",
                   help="data to train on (--train) and, for features, to embed")
    p.add_argument("--split", default="val", help="features: dataset split")
    p.add_argument("--max-points", type=int, default=2000, help="features: most points drawn per panel")
    p.add_argument("--layer", help="filters, weights: module name (default: first layer / largest layer)")
    p.add_argument("--panels", help="curves: comma list of loss, accuracy, lr, lambda, train_loss, val_top1")
    p.add_argument("--dpi", type=int, default=150, help="resolution of PNG output, dots per inch")
    p.add_argument("--device", help="with --train: auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--json", action="store_true", help="print one JSON object (the file written, its sources)")


def _sources(args: argparse.Namespace) -> list[Any] | dict[str, Any]:
    """Run folders / checkpoint files as given, or (with --model: official files) the models built from them."""
    if args.label and len(args.label) != len(args.checkpoint):
        raise ConfigError(f"{len(args.label)} --label for {len(args.checkpoint)} --checkpoint; give one per checkpoint")
    sources = list(args.checkpoint)
    if args.model is not None:
        from .common import load_model_from_args

        if args.kind == "curves":
            raise ConfigError("plot curves reads run folders (their metrics.csv); --model applies to the other kinds")
        sources = [load_model_from_args(args, checkpoint=path) for path in sources]
    return dict(zip(args.label, sources)) if args.label else sources


def run(args: argparse.Namespace) -> int:
    from ..analysis import figures
    from ..train.runs import train_twins

    check_output_path(args.output, "--output", suffixes=(".png", ".svg", ".pdf"))
    if args.train:
        check_output_path(args.runs_dir, "--output-dir", folder=True)
        if args.kind not in TRAIN_MODELS:
            raise ConfigError("--train applies to features, filters and weights; curves read existing run folders")
        model, epochs = TRAIN_MODELS[args.kind]
        extra = {"device": args.device} if args.device else {}
        extra["dataset"] = args.dataset
        model_kwargs = {"feature_dim": args.feature_dim} if args.kind == "features" else {}
        prefix = f"{model}_{args.feature_dim}d" if args.kind == "features" else model
        runs = train_twins(model, output=args.runs_dir, model_kwargs=model_kwargs, run_prefix=prefix,
                           retrain=args.retrain, epochs=args.epochs or epochs, **extra)
        args.checkpoint = [*args.checkpoint, *(str(path) for path in runs.values())]
    if not args.checkpoint:
        raise ConfigError(f"plot {args.kind} needs --checkpoint RUN_DIR_OR_FILE"
                         + (" (or --train)" if args.kind in TRAIN_MODELS else ""))
    sources = _sources(args)
    if args.kind == "features":
        fig = figures.plot_features(sources, args.dataset, args.split, max_points=args.max_points)
    elif args.kind == "filters":
        fig = figures.plot_filters(sources, layer=args.layer)
    elif args.kind == "weights":
        fig = figures.plot_weights(sources, layer=args.layer)
    else:
        panels = [p.strip() for p in args.panels.split(",") if p.strip()] if args.panels else None
        fig = figures.plot_curves(sources, panels=panels)
    path = figures.save_figure(fig, args.output, dpi=args.dpi)
    if args.json:
        import json

        print(json.dumps({"kind": args.kind, "output": str(path), "checkpoints": [str(c) for c in args.checkpoint]}))
    else:
        print(f"wrote {path}")
    return 0
