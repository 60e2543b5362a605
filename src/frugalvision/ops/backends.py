"""Registers the fast adder2d backends with :mod:`.dispatch` (imported by :mod:`frugalvision.ops`).

* ``numba`` (priority 10): CPU tensors of any float dtype, see :mod:`.cpu.adder_numba`.
* ``triton`` (priority 20): CUDA tensors, registered only when CUDA is available and triton imports, see
  :mod:`.triton.adder_triton`.

The plain-PyTorch ``reference`` backend (priority -100) stays the fallback for everything else.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch
from torch import Tensor

from .adder2d import ADDER_OP, reference_grad_weight
from .dispatch import Backend, register_backend

__all__ = ["numba_rejects", "triton_rejects"]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _rejects_unless(device_type: str, kernels: str) -> Callable[..., str | None]:
    def rejects(*tensors: Tensor) -> str | None:
        for t in tensors:
            if t.device.type != device_type:
                return f"{kernels} kernels run on {device_type.upper()} tensors, got {t.device}"
            if t.dtype not in _FLOATS:
                return f"unsupported dtype {t.dtype}"
        return None

    rejects.__doc__ = f"Why the {kernels} kernels cannot run these tensors, or ``None``."
    return rejects


numba_rejects = _rejects_unless("cpu", "numba")
triton_rejects = _rejects_unless("cuda", "triton")


def _register_numba() -> None:
    if importlib.util.find_spec("numba") is None:
        return
    from .cpu import adder_numba

    register_backend(
        ADDER_OP,
        Backend(
            name="numba",
            kernels={
                "forward": adder_numba.adder2d_forward,
                "grad_input": adder_numba.adder2d_grad_input,
                "grad_weight": reference_grad_weight,  # oneDNN conv weight gradient minus the rank-1 term
            },
            rejects=numba_rejects,
            priority=10,
        ),
    )


def _register_triton() -> None:
    if not torch.cuda.is_available() or importlib.util.find_spec("triton") is None:
        return
    from .triton import adder_triton

    register_backend(
        ADDER_OP,
        Backend(
            name="triton",
            kernels={
                "forward": adder_triton.adder2d_forward,
                "grad_input": adder_triton.adder2d_grad_input,
                "grad_weight": adder_triton.adder2d_grad_weight,
            },
            rejects=triton_rejects,
            priority=20,
        ),
    )


_register_numba()
_register_triton()
