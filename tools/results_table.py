"""Markdown table of trained run folders: accuracy, epochs, time per epoch, parameters and arithmetic per image.

    python tools/results_table.py results/cifar10_10k/resnet20_* [--paper PAPER_JSON]

Accuracy is the last epoch's validation top-1 from each run's ``metrics.csv`` (what ``frugalvision eval`` on the
same split reproduces from the committed ``model.safetensors``); costs come from ``frugalvision.count_ops`` at the
run's input size (every layer, BatchNorm included).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import frugalvision as fv
from frugalvision.analysis.counting import human
from frugalvision.run_dir import RunDir

CONV_TYPE_NAMES = {"conv": "CNN", "adder": "AdderNet", "binary": "BNN (XNOR)"}


def describe(run_dir: Path) -> dict[str, object]:
    run = RunDir(run_dir)
    config, rows = run.read_config(), run.read_metrics()
    model = fv.load_model(run_dir)
    costs = fv.count_ops(model, model.data_config.input_size)
    train = config["train"]
    conv_type = train["model_kwargs"].get("conv_type", "")
    return {
        "run": run_dir.name,
        "model": f"{train['model']} {CONV_TYPE_NAMES.get(conv_type, conv_type)}".strip()
        + (" + KD from CNN" if config.get("teacher") else ""),
        "seed": train["seed"],
        "epochs": len(rows),
        "val_top1": rows[-1]["val_top1"],
        "best_val_top1": max(r["val_top1"] for r in rows),
        "seconds_per_epoch": sum(r["epoch_seconds"] for r in rows) / len(rows),
        "params": costs["params"],
        "mul": costs["mul"],
        "add": costs["add"],
        "xnor": costs["xnor"],
    }


def markdown(rows: list[dict[str, object]]) -> str:
    head = ("| run | model | seed | epochs | val top-1 % | best val top-1 % | s / epoch | params | mul | add | xnor |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(
        f"| `{r['run']}` | {r['model']} | {r['seed']} | {r['epochs']} | {r['val_top1']:.2f} | "
        f"{r['best_val_top1']:.2f} | {r['seconds_per_epoch']:.0f} | {human(r['params'])} | {human(r['mul'])} | "
        f"{human(r['add'])} | {human(r['xnor'])} |\n" for r in rows)
    return head + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    args = parser.parse_args(argv)
    print(markdown([describe(run) for run in args.runs]), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
