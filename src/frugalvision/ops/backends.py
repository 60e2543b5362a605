"""Registers the adder2d and adder2d_u8 backends with :mod:`.dispatch` (imported by :mod:`frugalvision.ops`): the
plain-PyTorch one at once, the fast ones deferred to the first use of each op so that importing frugalvision does
not import numba.

* ``torch`` (priority -100, both ops): portable plain PyTorch, any device and dtype, see :mod:`.adder_torch`; the
  fallback for whatever no faster backend accepts.
* ``numba`` (priority 10): CPU tensors of any float dtype, see :mod:`.cpu.adder_numba`.
* ``triton`` (priority 20): CUDA tensors, registered only when CUDA is available and triton imports, see
  :mod:`.triton.adder_triton`.

and the adder2d_u8 backends (uint8 CPU tensors, see :mod:`.cpu.adder_u8_numba`): ``sad512`` (priority 30, needs
AVX-512BW), ``sad256`` (20, needs AVX2), ``portable`` (10, generic LLVM vector code).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable

import torch
from torch import Tensor

from . import adder_torch
from .adder2d import ADDER_OP
from .adder2d_u8 import ADDER_U8_OP, cpu_uint8_rejects
from .dispatch import Backend, register_backend, register_deferred

__all__ = ["numba_rejects", "sad_rejects", "triton_rejects"]

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


def _register_torch() -> None:
    kernels = {"forward": adder_torch.adder2d_forward, "grad_input": adder_torch.adder2d_grad_input,
               "grad_weight": adder_torch.adder2d_grad_weight}
    register_backend(ADDER_OP, Backend(name="torch", kernels=kernels, priority=-100))
    register_backend(ADDER_U8_OP, Backend(name="torch", kernels={"forward": adder_torch.adder2d_u8_forward},
                                          priority=-100))


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
                "grad_weight": adder_torch.adder2d_grad_weight,  # oneDNN conv weight gradient minus the rank-1 term
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


def sad_rejects(width: int) -> Callable[..., str | None]:
    """``rejects`` of the adder2d_u8 backend of this vector width (see :data:`.cpu.adder_u8_numba.WIDTHS`)."""
    from .cpu.adder_u8_numba import width_rejects

    def rejects(*tensors: Tensor) -> str | None:
        return cpu_uint8_rejects(*tensors) or width_rejects(width)

    return rejects


def _register_sad() -> None:
    if importlib.util.find_spec("numba") is None:
        return
    from .cpu import adder_u8_numba

    for priority, (name, width) in zip((30, 20, 10), adder_u8_numba.WIDTHS.items()):
        register_backend(
            ADDER_U8_OP,
            Backend(name=name, kernels={"forward": functools.partial(adder_u8_numba.adder2d_u8_forward, width)},
                    rejects=sad_rejects(width), priority=priority),
        )


_register_torch()
# Registered on first use of each op: importing numba and the kernel modules costs about half a second.
register_deferred(ADDER_OP, _register_numba)
register_deferred(ADDER_OP, _register_triton)
register_deferred(ADDER_U8_OP, _register_sad)
