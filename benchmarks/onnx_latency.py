"""ONNX export of the AdderNet ResNet-20 and its batch-1 latency in onnxruntime next to PyTorch (docs/deploy.md).

Exports the official ResNet-20 AdderNet checkpoint (random weights with calibrated BatchNorms when
../shared/data/official is absent), checks onnxruntime against PyTorch, times both interleaved at batch 1 with two
threads, and, when the shared CIFAR-10 JPEG sample is present, compares their predictions on its 1,000 val images.
Writes benchmarks/results/bench_onnx_resnet20_adder.csv. Example:

    PYTHONPATH=src python benchmarks/onnx_latency.py [--rounds 100] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import torch

import frugalvision as fv
from frugalvision.analysis.bench_model import write_csv
from frugalvision.analysis.bench_onnx import bench_onnx_vs_torch
from frugalvision.export import export_onnx

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared" / "data"
OFFICIAL = SHARED / "official" / "ResNet20-AdderNet.pth"
SAMPLE = SHARED / "cifar10_jpeg_10k"


def _model() -> tuple[torch.nn.Module, str]:
    if OFFICIAL.is_file():
        return fv.create_model("resnet20", conv_type="adder", checkpoint_path=OFFICIAL).eval(), "official weights"
    torch.manual_seed(0)
    model = fv.create_model("resnet20", conv_type="adder").train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, 3, 32, 32))
    return model.eval(), "random weights, calibrated BatchNorm"


def _agreement(model: torch.nn.Module, onnx_path: Path) -> str:
    import onnxruntime as ort

    from frugalvision.data import build_dataset, dataset_info

    val = build_dataset("folder", "val", SAMPLE, data_config=dataset_info("cifar10").data_config())
    images = torch.stack([val[i][0] for i in range(len(val))])
    labels = torch.tensor(val.targets)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {"input": images.numpy()})
    with torch.inference_mode():
        torch_logits = model(images)
    onnx_pred, torch_pred = torch.from_numpy(onnx_logits).argmax(1), torch_logits.argmax(1)

    def percent(hits: torch.Tensor) -> str:
        return f"{hits.float().mean().item() * 100:.1f} %"

    return (f"{len(val)} val images of the CIFAR-10 JPEG sample: top-1 PyTorch {percent(torch_pred == labels)}, "
            f"onnxruntime {percent(onnx_pred == labels)}, same prediction on {percent(onnx_pred == torch_pred)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--output", type=Path,
                        default=ROOT / "benchmarks" / "results" / "bench_onnx_resnet20_adder.csv")
    args = parser.parse_args()
    model, weights = _model()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "resnet20_adder.onnx"
        error = export_onnx(model, path, torch.randn(1, 3, 32, 32), tolerance=1e-4)
        print(f"exported ResNet-20 AdderNet ({weights}): {path.stat().st_size / 2**20:.1f} MiB, "
              f"onnxruntime vs PyTorch max relative error {error:.1e}")
        if SAMPLE.is_dir() and OFFICIAL.is_file():
            print(_agreement(model, path))
        results = [row for threads in args.threads
                   for row in bench_onnx_vs_torch(model, path, (3, 32, 32), batch_size=1, threads=threads,
                                                  rounds=args.rounds, label="resnet20_adder")]
    write_csv(args.output, results)
    for r in results:
        print(f"{r.runtime:12s} batch 1, {r.threads} threads: median {r.median_ms:7.2f} ms, min {r.min_ms:7.2f} ms, "
              f"CPU {r.cpu_ms:7.2f} ms ({r.iters} interleaved runs; load average {r.load_before} -> {r.load_after})")
    print(f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; wrote {args.output}")


if __name__ == "__main__":
    main()
