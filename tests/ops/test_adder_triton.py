"""The Triton adder2d backend against the float64 loop oracle, through the public op with ``use_backend("triton")``.

On a GPU machine the backend is registered by :mod:`frugalvision.ops.backends` and runs on CUDA tensors. Without
a GPU the kernels run on the CPU in the Triton interpreter (tiny shapes: it is slow):

* ``TRITON_INTERPRET=1`` must be set before triton is first imported (triton's own ``@jit`` helpers are decorated
  at import time), and importing torch's custom-op machinery (i.e. :mod:`frugalvision.ops`) already imports
  triton. So when this module is collected in a process where that has happened, its tests are skipped here and
  :func:`test_triton_kernels_in_fresh_process` runs this file again in a fresh interpreter with the variable set.
* There the backend is registered by the library's own ``_register_triton`` (with ``torch.cuda.is_available``
  patched to say yes), then re-registered with the same kernels and a ``rejects`` that accepts CPU tensors, so the
  kernels tested are exactly the ones the library registers on a GPU.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from unittest import mock

import pytest
import torch

_INTERPRETED = not torch.cuda.is_available()
_NEEDS_FRESH_PROCESS = _INTERPRETED and "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1"
if _INTERPRETED and not _NEEDS_FRESH_PROCESS:
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from frugalvision.ops import adder2d, backends, dispatch, use_backend  # noqa: E402
from frugalvision.ops.adder2d import ADDER_OP  # noqa: E402

from .brute_force import brute_force_adder  # noqa: E402
from .cases import (  # noqa: E402
    EXTRA_CASES,
    GRID,
    ConvCase,
    assert_rel_close,
    check_backend_against_oracle,
    make_inputs,
)

DEVICE = "cpu" if _INTERPRETED else "cuda"
_here = pytest.mark.skipif(_NEEDS_FRESH_PROCESS, reason="run by test_triton_kernels_in_fresh_process")


def _register_triton_for_cpu_tensors() -> None:
    with mock.patch.object(torch.cuda, "is_available", return_value=True):
        backends._register_triton()
    dispatch.available_backends(ADDER_OP)  # runs the deferred registrations
    registered = next(b for b in dispatch._REGISTRY[ADDER_OP] if b.name == "triton")
    dispatch.register_backend(ADDER_OP, dataclasses.replace(registered, rejects=lambda *tensors: None))


if _INTERPRETED and not _NEEDS_FRESH_PROCESS:
    _register_triton_for_cpu_tensors()


@pytest.mark.slow
@pytest.mark.skipif(not _NEEDS_FRESH_PROCESS, reason="triton interpreter already active in this process")
def test_triton_kernels_in_fresh_process():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "not fresh_process"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    ran_all = re.fullmatch(r"=* *\d+ passed, 1 deselected(, \d+ warnings?)? in .*", summary)
    assert ran_all, f"not every test ran in the fresh process: {summary}"


def _triton_cases() -> list[tuple[torch.dtype, ConvCase]]:
    """float32 on a covering subset of the CPU grid (each stride, padding, dilation, groups and layout value occurs)
    on a 5 x 6 map, the rectangular case and one tile tail (batch 2); float64 (the other accumulator path) on two of
    them. The interpreter is too slow for the whole grid."""
    wanted = {(1, 1, 1, 1), (1, 2, 2, 2), (2, 0, 2, 1), (2, 1, 1, 2), (2, 2, 1, 1)}
    chosen = [dataclasses.replace(c, batch=1, height=5, width=6) for c in GRID
              if (c.stride[0], c.padding[0], c.dilation[0], c.groups) in wanted]
    chosen += [dataclasses.replace(EXTRA_CASES[4], batch=1), EXTRA_CASES[6]]
    return [(torch.float32, c) for c in chosen] + [(torch.float64, chosen[1]), (torch.float64, chosen[5])]


@_here
@pytest.mark.parametrize(("dtype", "case"), _triton_cases(), ids=lambda v: v.id if isinstance(v, ConvCase) else str(v))
def test_triton_forward_and_gradients_match_loop_oracle(dtype: torch.dtype, case: ConvCase) -> None:
    """Y, dX and dW (full and sign) of the registered Triton kernels equal the float64 loop formula."""
    check_backend_against_oracle("triton", case, dtype, DEVICE)


@_here
def test_triton_half_input_accumulates_in_float32():
    # bfloat16 arithmetic gives wrong results in the Triton interpreter (a documented limitation); float16 exercises
    # the same path
    case = dataclasses.replace(GRID[7], batch=1, height=5, width=6)
    x, weight, grad_output = make_inputs(case, torch.float16, DEVICE)
    x, weight = x.detach().requires_grad_(True), weight.detach().requires_grad_(True)
    with use_backend("triton"):
        y = adder2d(x, weight, **case.conv_kwargs())
        y.backward(grad_output.float())
    y_ref, grad_x_ref, grad_w_ref = brute_force_adder(x.detach().double().cpu(), weight.detach().double().cpu(),
                                                      grad_output=grad_output.double().cpu(), **case.conv_kwargs())
    assert (y.dtype, x.grad.dtype, weight.grad.dtype) == (torch.float32, torch.float16, torch.float16)
    assert_rel_close(y, y_ref, 1e-5, "forward")
    assert_rel_close(x.grad, grad_x_ref, 2e-3, "input gradient")
    assert_rel_close(weight.grad, grad_w_ref, 2e-3, "weight gradient")


@_here
def test_triton_padding_contributes_abs_weight():
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    with use_backend("triton"):
        y = adder2d(torch.zeros(1, 2, 1, 1, dtype=torch.float64, device=DEVICE), weight.to(DEVICE), padding=1)
    torch.testing.assert_close(y.view(3).cpu(), -weight.abs().sum((1, 2, 3)), rtol=1e-14, atol=0)
