"""Compiled plan vs the module-by-module forward of the same integer model (docs/integer_addernet.md, "How a forward
runs"), interleaved in one process: ResNet-20 (the released weights when ``--resnet20`` is given, else random) and
LeNet-5-BN (random weights, BatchNorm statistics of random images), batches 1, 8 and 64.

Each round times the two forwards in turn; the table gives the medians over rounds of each round's median wall time
and CPU time (``time.process_time``, all threads: on a loaded machine time-sharing inflates wall time, not CPU
time). The logits are checked to be equal first. Usage::

    NUMBA_NUM_THREADS=1 python tools/bench_plan.py --threads 1 --resnet20 ../shared/data/official/ResNet20-AdderNet.pth
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

import frugalvision as fv
from frugalvision.quant.plan import plans_disabled


def _batch_statistics(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    for norm in [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def _models(resnet20: str | None) -> dict[str, tuple[torch.nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    resnet = fv.create_model("resnet20", conv_type="adder", checkpoint_path=resnet20)
    images = torch.randn(128, 3, 32, 32)
    if resnet20 is None:
        _batch_statistics(resnet, images)
    lenet = _batch_statistics(fv.create_model("lenet5_bn", conv_type="adder"), torch.randn(128, 1, 28, 28))
    return {"resnet20": (fv.quantize(resnet.eval(), [images], observer="minmax"), (3, 32, 32)),
            "lenet5_bn": (fv.quantize(lenet, [torch.randn(128, 1, 28, 28)], observer="minmax"), (1, 28, 28))}


def _median_times(fn: Callable[[], object], reps: int) -> tuple[float, float]:
    wall, cpu = [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-sizes", default="1,8,64")
    parser.add_argument("--resnet20", default=None, help="the released ResNet20-AdderNet.pth (else random weights)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', '')}, "
          f"load average {os.getloadavg()}")
    print("| model | batch | modules ms (CPU ms) | plan ms (CPU ms) | plan / modules, wall (CPU) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with torch.no_grad():
        for name, (qmodel, shape) in _models(args.resnet20).items():
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                x = torch.randn(batch, *shape)

                def modules(x: torch.Tensor = x, qmodel: torch.nn.Module = qmodel) -> torch.Tensor:
                    with plans_disabled():
                        return qmodel(x)

                def plan(x: torch.Tensor = x, qmodel: torch.nn.Module = qmodel) -> torch.Tensor:
                    return qmodel(x)

                if not torch.equal(plan(), modules()):
                    raise SystemExit(f"{name} batch {batch}: the plan's logits differ from the modules'")
                reps = 200 if batch == 1 else 50 if batch <= 8 else 10
                rounds = {"modules": [], "plan": []}
                for _ in range(args.rounds):
                    for method, fn in (("modules", modules), ("plan", plan)):
                        rounds[method].append(_median_times(fn, reps))
                (mw, mc), (pw, pc) = ((statistics.median(t[0] for t in rounds[k]),
                                       statistics.median(t[1] for t in rounds[k])) for k in ("modules", "plan"))
                print(f"| {name} | {batch} | {mw:.3f} ({mc:.3f}) | {pw:.3f} ({pc:.3f}) "
                      f"| {pw / mw:.2f} ({pc / mc:.2f}) |", flush=True)
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
