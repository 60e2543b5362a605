"""OpenMP's wait policy for the process: passive by default, and a warning where torch came first.

Two OpenMP thread pools share the cores: torch's (its own ``libgomp``) and the one behind the numba kernels (the
system's). With libgomp's default waiting, an idle pool spins while the other works; on a 2-core machine that made a
LeNet-5-BN epoch 2-3x slower (README, "Threads"). ``import frugalvision`` therefore sets ``OMP_WAIT_POLICY=PASSIVE``
unless the environment has one. libgomp reads it once, when it is loaded: torch imported before frugalvision keeps
the spinning default, and then an integer model's call after an idle spell took 6.9-7.3 ms instead of 0.77-0.84 ms
(ResNet-20, batch 1, 2 threads, after a 20 ms sleep; 7.9-10.4 against 3.3 ms at batch 8). :func:`warn_if_torch_spins`
says so once, on the first numba kernel call.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["TORCH_IMPORTED_FIRST", "warn_if_torch_spins"]

# torch's libgomp was loaded before the default below could reach it
TORCH_IMPORTED_FIRST = "torch" in sys.modules and "OMP_WAIT_POLICY" not in os.environ
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_warned: list[bool] = []


def warn_if_torch_spins() -> None:
    """One ``RuntimeWarning`` per process where torch (built with OpenMP) was imported before frugalvision without
    ``OMP_WAIT_POLICY`` in the environment."""
    if _warned or not TORCH_IMPORTED_FIRST:
        return
    _warned.append(True)
    import torch

    if getattr(torch._C, "has_openmp", False):
        warnings.warn("torch was imported before frugalvision without OMP_WAIT_POLICY set, so PyTorch's OpenMP threads "
                      "spin when idle and slow frugalvision's CPU kernels (an integer ResNet-20 call after an idle "
                      "spell: ~7 ms instead of ~0.8 ms); import frugalvision first or set OMP_WAIT_POLICY=PASSIVE",
                      RuntimeWarning, stacklevel=3)
