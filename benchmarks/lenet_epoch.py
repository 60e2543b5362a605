"""Time one plain training epoch of LeNet-5-BN (adder or CNN twin) on mnist5k, batch 64.

Used to choose frugalvision's OpenMP wait policy (README, "Notes"). Prints the wall and CPU seconds of the second of
two epochs (the first pays numba's cache load). Example:

    OMP_WAIT_POLICY=PASSIVE python benchmarks/lenet_epoch.py adder
"""

from __future__ import annotations

import os
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import frugalvision as fv
from frugalvision.data import build_dataset


def main(conv_type: str) -> None:
    torch.manual_seed(0)
    model = fv.create_model("lenet5_bn", conv_type=conv_type)
    loader = DataLoader(build_dataset("mnist5k", "train", augment=True), 64, shuffle=True, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        wall, cpu = time.perf_counter(), time.process_time()
        for images, target in loader:
            loss = F.cross_entropy(model(images), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    policy = os.environ.get("OMP_WAIT_POLICY") or "libgomp default"
    print(f"{conv_type} epoch: wall {wall:.2f} s, cpu {cpu:.2f} s (OMP_WAIT_POLICY={policy}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "adder")
