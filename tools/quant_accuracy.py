"""Accuracy table of docs/integer_addernet.md: fp32 vs int8 (frugalvision.quantize) for the two issue-11 models.

* LeNet-5-BN AdderNet trained by ``frugalvision train --conv-type adder`` (50 epochs on the embedded mnist5k):
  calibrated on mnist5k/train images, measured on the 500 mnist5k/val images.
* The released ResNet-20 AdderNet (``ResNet20-AdderNet.pth``) on the shared CIFAR-10 JPEG sample
  (``cifar10_jpeg_10k``, read with torchvision's ImageFolder, CIFAR mean/std as the official code): calibrated on
  its train/ images, measured on its 1,000 val/ images. Both folders hold CIFAR-10 *training* images (see their
  PROVENANCE.md): the numbers are int8-vs-fp32 agreement and accuracy on these files, not test accuracy.

For each observer (and ``auto``, the library default) the calibration images are drawn at random from the train
split with seeds 0..S-1; the table gives the mean and the range over the seeds. Usage::

    python tools/quant_accuracy.py --lenet-run runs/lenet5_bn_adder \\
        --resnet20 ../shared/data/official/ResNet20-AdderNet.pth --cifar ../shared/data/cifar10_jpeg_10k \\
        --seeds 5 --output docs/integer_addernet_accuracy.csv
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import torch
from torch import Tensor, nn

import frugalvision as fv
from frugalvision.quant.compare import compare_models

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
OBSERVERS = ("auto", "minmax", "percentile", "mse")


def _stack(dataset, indices) -> tuple[Tensor, Tensor]:
    items = [dataset[i] for i in indices]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


def _lenet_data(run: Path) -> tuple[nn.Module, object, tuple[Tensor, Tensor]]:
    from frugalvision.data import build_dataset

    model = fv.load_model(run)
    train, val = build_dataset("mnist5k", "train"), build_dataset("mnist5k", "val")
    return model, train, _stack(val, range(len(val)))


def _cifar_data(checkpoint: Path, folder: Path) -> tuple[nn.Module, object, tuple[Tensor, Tensor]]:
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)])
    model = fv.create_model("resnet20", conv_type="adder", checkpoint_path=checkpoint).eval()
    train, val = ImageFolder(str(folder / "train"), transform), ImageFolder(str(folder / "val"), transform)
    return model, train, _stack(val, range(len(val)))


def measure(name: str, model: nn.Module, train, val: tuple[Tensor, Tensor], seeds: int, images: int,
            observers: tuple[str, ...], stem: str = "fp32") -> list[dict[str, object]]:
    rows = []
    has_stem = any(type(m) is nn.Conv2d for m in model.modules())
    name = f"{name}, {stem} stem" if has_stem else name
    for observer in observers:
        for seed in range(seeds):
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:images]
            calibration, _ = _stack(train, order.tolist())
            start = time.perf_counter()
            qmodel = fv.quantize(model, calibration.split(64), observer=observer, max_images=images, stem=stem)
            seconds = time.perf_counter() - start
            metrics = compare_models(model, qmodel, zip(val[0].split(250), val[1].split(250)))
            chosen = qmodel.frugalvision_cfg["quantized"]["observer"]
            rows.append({"model": name, "observer": observer, "chosen": chosen, "seed": seed,
                         "calibration_images": images, "calibration_s": round(seconds, 1), **metrics})
            print(f"{name} {observer} (chose {chosen}) seed {seed}: fp32 {metrics['fp32_top1']:.2f} "
                  f"int8 {metrics['int8_top1']:.2f} agree {metrics['agreement']:.2f} "
                  f"rel err {metrics['logit_rel_error']:.4f}", flush=True)
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    """Mean [min, max] over seeds per (model, observer)."""
    lines = ["| model | observer | fp32 top-1 % | int8 top-1 % | agreement % | logit rel. error | logit MSE |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]

    def cell(values: list[float], fmt: str) -> str:
        mean = statistics.fmean(values)
        if len(values) == 1 or max(values) == min(values):
            return format(mean, fmt)
        return f"{format(mean, fmt)} [{format(min(values), fmt)}, {format(max(values), fmt)}]"

    for key in dict.fromkeys((r["model"], r["observer"]) for r in rows):
        group = [r for r in rows if (r["model"], r["observer"]) == key]
        observer = key[1]
        if observer == "auto":
            chosen = sorted({str(r["chosen"]) for r in group})
            observer = f"auto (chose {', '.join(chosen)})"
        lines.append(f"| {key[0]} | {observer} | {cell([r['fp32_top1'] for r in group], '.2f')} | "
                     f"{cell([r['int8_top1'] for r in group], '.2f')} | {cell([r['agreement'] for r in group], '.2f')} "
                     f"| {cell([100 * r['logit_rel_error'] for r in group], '.2f')} % | "
                     f"{cell([r['logit_mse'] for r in group], '.4f')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lenet-run", type=Path, help="run folder of frugalvision train --conv-type adder")
    parser.add_argument("--resnet20", type=Path, help="ResNet20-AdderNet.pth as released")
    parser.add_argument("--cifar", type=Path, help="the cifar10_jpeg_10k folder (train/, val/)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--images", type=int, default=512, help="calibration images")
    parser.add_argument("--observers", default=",".join(OBSERVERS))
    parser.add_argument("--stem", default="fp32", choices=("fp32", "int8"), help="stem of the ResNet (quantize)")
    parser.add_argument("--output", type=Path, help="CSV of every run")
    args = parser.parse_args()
    observers = tuple(args.observers.split(","))
    rows = []
    if args.lenet_run:
        rows += measure("LeNet-5-BN (mnist5k val)", *_lenet_data(args.lenet_run), args.seeds, args.images, observers)
    if args.resnet20 and args.cifar:
        rows += measure("ResNet-20 released (CIFAR JPEG val)", *_cifar_data(args.resnet20, args.cifar), args.seeds,
                        args.images, observers, args.stem)
    if args.output and rows:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    print(markdown(rows))


if __name__ == "__main__":
    main()
