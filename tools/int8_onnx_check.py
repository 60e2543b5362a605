"""Check an int8 model's ONNX export against the integer model on a dataset's validation images, and time both.

    python tools/int8_onnx_check.py INT8.safetensors --dataset folder --data-dir ../shared/data/cifar10_jpeg_10k
    python tools/int8_onnx_check.py INT8.safetensors --dataset mnist5k --latency

Prints one JSON line: the relative error of the logits (max |onnx - model| / max |model|), the worst per-image one,
the argmax agreement and the number of images; with ``--latency``, the median milliseconds per batch of the
integer model (numba kernels) and of the graph in onnxruntime (float32 and int32 sums; ``--threads`` intra-op
threads, spinning off), measured interleaved, for batches of 1 and 64.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader


def _latency(model, sessions: dict, shape: tuple[int, ...], batch: int, reps: int, rounds: int) -> dict[str, float]:
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
    feed = {"input": x.numpy()}
    calls = {"numba": lambda: model(x), **{f"onnxruntime_{k}": (lambda s=s: s.run(None, feed)) for k, s in
                                            sessions.items()}}
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch.no_grad():
        for call in calls.values():
            call()  # warm-up (numba compilation, onnxruntime allocations)
        for _ in range(rounds):
            for name, call in calls.items():
                started = time.perf_counter()
                for _ in range(reps):
                    call()
                times[name].append((time.perf_counter() - started) / reps * 1e3)
    return {name: round(statistics.median(values), 2) for name, values in times.items()}


def main() -> None:
    from frugalvision.data import build_dataset
    from frugalvision.export.onnx_integer import compare_with_onnxruntime, export_integer_onnx, onnx_session
    from frugalvision.models import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a quantize output (.safetensors)")
    parser.add_argument("--dataset", default="folder")
    parser.add_argument("--data-dir")
    parser.add_argument("--images", type=int, default=1000, help="validation images compared (default 1000)")
    parser.add_argument("--latency", action="store_true", help="also time the model and the graph")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint).eval()
    data_config = getattr(model, "data_config", None)
    val = build_dataset(args.dataset, "val", args.data_dir, data_config=data_config)
    images = torch.cat([x for x, _ in DataLoader(val, batch_size=250)])[: args.images]
    shape = tuple(images.shape[1:])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_integer_onnx(model, path, shape)
        started = time.perf_counter()
        record = {**compare_with_onnxruntime(path, model, images), "seconds": round(time.perf_counter() - started, 1)}
        if args.latency:
            sessions = {}
            for accumulator in ("float32", "int32"):
                file = Path(tmp) / f"{accumulator}.onnx"
                export_integer_onnx(model, file, shape, accumulator=accumulator)
                sessions[accumulator] = onnx_session(file, threads=args.threads)
            record["latency_ms_batch1"] = _latency(model, sessions, shape, 1, reps=10, rounds=5)
            record["latency_ms_batch64"] = _latency(model, sessions, shape, 64, reps=1, rounds=3)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
