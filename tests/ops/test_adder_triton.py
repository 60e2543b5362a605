"""The Triton adder kernels, run on the CPU through the Triton interpreter (tiny shapes: it is slow).

``TRITON_INTERPRET=1`` must be set before triton is first imported (triton's own ``@jit`` helpers are decorated at
import time), and importing torch's custom-op machinery (i.e. :mod:`frugalvision.ops`) already imports triton. So
when this module is collected in a process where that has happened, its tests are skipped here and
:func:`test_triton_kernels_in_fresh_process` runs this file again in a fresh interpreter with the variable set. On a
GPU-less machine the Triton backend is not registered, so the tests call the kernels directly.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

_INTERPRETED = not torch.cuda.is_available()
_NEEDS_FRESH_PROCESS = _INTERPRETED and "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1"
if _INTERPRETED and not _NEEDS_FRESH_PROCESS:
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from frugalvision.ops import backends  # noqa: E402
from frugalvision.ops import reference as ref  # noqa: E402

if not _NEEDS_FRESH_PROCESS:
    from frugalvision.ops.triton import adder_triton

_here = pytest.mark.skipif(_NEEDS_FRESH_PROCESS, reason="run by test_triton_kernels_in_fresh_process")


@pytest.mark.skipif(not _NEEDS_FRESH_PROCESS, reason="triton interpreter already active in this process")
def test_triton_kernels_in_fresh_process():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# (n, c_in, h, w, c_out, k, stride, padding, dilation, groups)
CASES = [
    (2, 4, 6, 7, 6, 3, 1, 1, 1, 1),
    (1, 4, 7, 6, 6, 3, 2, 0, 1, 2),
    (1, 3, 7, 7, 5, 3, 1, 2, 2, 1),
    (2, 4, 5, 6, 4, 2, 2, 1, 2, 2),
]


def _rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double().cpu(), expected.double().cpu()
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def _inputs(case, dtype):
    n, c_in, h, w, c_out, k, stride, padding, dilation, groups = case
    gen = torch.Generator().manual_seed(sum(case))
    x = torch.randn(n, c_in, h, w, generator=gen, dtype=torch.float64)
    weight = torch.randn(c_out, c_in // groups, k, k, generator=gen, dtype=torch.float64)
    args = ((stride, stride), (padding, padding), (dilation, dilation), groups)
    return x, weight, args


@_here
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_triton_kernels_match_reference(case, dtype):
    x, w, args = _inputs(case, dtype)
    y_ref = ref.adder2d_forward(x, w, *args)
    go = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    gi_ref = ref.adder2d_grad_input(go, x, w, *args)
    gw_ref = ref.adder2d_grad_weight(go, x, w, *args)
    tol = 1e-6 if dtype == torch.float64 else 1e-4
    xt, wt, got = (t.to(device=DEVICE, dtype=dtype) for t in (x, w, go))
    if dtype == torch.float32:  # non-contiguous input on the float32 runs
        xt = xt.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    y = adder_triton.adder2d_forward(xt, wt, *args)
    assert y.dtype == dtype and y.shape == y_ref.shape
    assert _rel_err(y, y_ref) <= tol
    assert _rel_err(adder_triton.adder2d_grad_input(got, xt, wt, *args), gi_ref) <= tol
    assert _rel_err(adder_triton.adder2d_grad_weight(got, xt, wt, *args, False), gw_ref) <= tol


@_here
def test_triton_half_input_accumulates_in_float32():
    # bfloat16 arithmetic is wrong in the interpreter (research/kernels.md §2.2); float16 exercises the same path
    x, w, args = _inputs(CASES[0], torch.float32)
    xh, wh = x.to(DEVICE, torch.float16), w.to(DEVICE, torch.float16)
    y = adder_triton.adder2d_forward(xh, wh, *args)
    assert y.dtype == torch.float32
    assert _rel_err(y, ref.adder2d_forward(xh.double().cpu(), wh.double().cpu(), *args)) <= 1e-5


@_here
def test_padding_contributes_abs_weight():
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    y = adder_triton.adder2d_forward(torch.zeros(1, 2, 1, 1, dtype=torch.float64, device=DEVICE),
                                     w.to(DEVICE), (1, 1), (1, 1), (1, 1), 1)
    torch.testing.assert_close(y.view(3).cpu(), -w.abs().sum((1, 2, 3)))


@_here
def test_triton_backend_refuses_cpu_tensors():
    assert backends.triton_rejects(torch.zeros(1), torch.zeros(1)) is not None
    assert backends.numba_rejects(torch.zeros(1), torch.zeros(1)) is None
