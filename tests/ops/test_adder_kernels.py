"""Every CPU adder2d backend (torch, numba) against the float64 loop oracle; dispatch, opcheck, torch.compile.

Each backend is run through the public op with ``use_backend(name)`` (so its *registered* forward, input-gradient
and weight-gradient kernels are the ones tested) and compared with :func:`.brute_force.brute_force_adder` on every
case of :data:`.cases.GRID` and :data:`.cases.EXTRA_CASES`. The Triton backend runs the same check in
tests/ops/test_adder_triton.py.
"""

from __future__ import annotations

import numba
import pytest
import torch
from torch import nn

from frugalvision.errors import ConfigError
from frugalvision.ops import adder2d, available_backends, backends, dispatch, use_backend
from frugalvision.ops.adder2d import ADDER_OP
from frugalvision.ops.cpu import adder_numba

from .brute_force import brute_force_adder
from .cases import EXTRA_CASES, GRID, ConvCase, assert_rel_close, check_backend_against_oracle, make_inputs

CPU_BACKENDS = ["torch", "numba"]


@pytest.mark.parametrize("case", GRID + EXTRA_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backend_forward_and_gradients_match_loop_oracle(backend: str, dtype: torch.dtype, case: ConvCase) -> None:
    """Y, dX and dW (full and sign) of the registered kernels equal the float64 loop formula."""
    check_backend_against_oracle(backend, case, dtype)


def test_cpu_backends_are_registered() -> None:
    assert set(CPU_BACKENDS) <= set(available_backends(ADDER_OP))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_padding_contributes_abs_weight(backend: str) -> None:
    """A 1 x 1 zero input with padding 1 under a 3 x 3 kernel: only the centre tap is inside, Y = -sum |W|."""
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    with use_backend(backend):
        y = adder2d(torch.zeros(1, 2, 1, 1, dtype=torch.float64), weight, padding=1)
    torch.testing.assert_close(y.view(3), -weight.abs().sum((1, 2, 3)), rtol=1e-14, atol=0)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_half_inputs_accumulate_in_float32(backend: str, half: torch.dtype) -> None:
    """float16 / bfloat16 in, float32 out, within float32 rounding of the loop formula on the rounded inputs;
    the gradients come back in the input's dtype."""
    case = GRID[7]
    x, weight, grad_output = make_inputs(case, half)
    x, weight = x.detach().requires_grad_(True), weight.detach().requires_grad_(True)
    with use_backend(backend):
        y = adder2d(x, weight, **case.conv_kwargs())
        y.backward(grad_output.float())
    y_ref, grad_x_ref, grad_w_ref = brute_force_adder(x.detach().double(), weight.detach().double(),
                                                      grad_output=grad_output.double(), **case.conv_kwargs())
    assert (y.dtype, x.grad.dtype, weight.grad.dtype) == (torch.float32, half, half)
    assert_rel_close(y, y_ref, 1e-5, "forward")
    half_tol = 1e-2 if half == torch.bfloat16 else 2e-3  # the gradients are rounded to the half type
    assert_rel_close(x.grad, grad_x_ref, half_tol, "input gradient")
    assert_rel_close(weight.grad, grad_w_ref, half_tol, "weight gradient")


def test_numba_is_the_automatic_cpu_backend() -> None:
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        assert dispatch.select(ADDER_OP, torch.zeros(1, dtype=dtype), torch.zeros(1, dtype=dtype)).name == "numba"


def test_backends_say_why_they_reject_tensors() -> None:
    cpu, meta, ints = torch.zeros(1), torch.zeros(1, device="meta"), torch.zeros(1, dtype=torch.int64)
    assert backends.triton_rejects(cpu, cpu) == "triton kernels run on CUDA tensors, got cpu"
    assert backends.numba_rejects(cpu, meta) == "numba kernels run on CPU tensors, got meta"
    assert backends.numba_rejects(cpu, ints) == "unsupported dtype torch.int64"
    assert backends.numba_rejects(cpu, cpu) is None  # None is the "accepted" value of the rejects protocol


def test_forced_backend_errors_name_the_problem() -> None:
    x, weight = torch.zeros(1, 1, 3, 3, device="meta"), torch.zeros(1, 1, 3, 3, device="meta")
    with use_backend("numba"), pytest.raises(ConfigError, match="backend 'numba' cannot run these inputs: numba "
                                                                "kernels run on CPU tensors, got meta"):
        dispatch.select(ADDER_OP, x, weight)
    with use_backend("fpga"), pytest.raises(ConfigError, match=r"unknown backend 'fpga' \(available: .*torch"):
        dispatch.select(ADDER_OP, x, weight)


def test_numba_thread_count_follows_torch() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert adder_numba.sync_threads() == 1 and numba.get_num_threads() == 1
        torch.set_num_threads(before)
        assert adder_numba.sync_threads() == min(before, numba.config.NUMBA_NUM_THREADS)
        assert numba.get_num_threads() == min(before, numba.config.NUMBA_NUM_THREADS)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_registered_ops_pass_opcheck(backend: str) -> None:
    """torch.library.opcheck: schema, fake (meta) kernels, autograd registration and AOT dispatch agree."""
    case = ConvCase(2, 4, 6, 7, 9, stride=(2, 2), padding=(1, 1), groups=2)
    x, weight, grad_output = make_inputs(case, torch.float64)
    geometry = ([2, 2], [1, 1], [1, 1], 2)
    with use_backend(backend):
        torch.library.opcheck(torch.ops.frugalvision.adder2d.default,
                              (x.requires_grad_(), weight.requires_grad_(), *geometry, False))
        conv_args = (grad_output, x.detach(), weight.detach(), *geometry)
        torch.library.opcheck(torch.ops.frugalvision.adder2d_grad_input.default, conv_args)
        for sign in (False, True):
            torch.library.opcheck(torch.ops.frugalvision.adder2d_grad_weight.default, (*conv_args, sign))


class _TinyAdderNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from frugalvision.layers import Adder2d

        self.a1 = Adder2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.a2 = Adder2d(4, 4, 3, stride=2, padding=1, groups=2)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.a1(x)))
        return self.bn2(self.a2(x)).mean((2, 3))


def test_torch_compile_fullgraph_matches_eager() -> None:
    """The ops trace without graph breaks (fullgraph) and the compiled forward and backward give eager's values."""
    torch.manual_seed(0)
    model = _TinyAdderNet()
    x = torch.randn(2, 3, 8, 8)
    weights = torch.randn(2, 4)  # a loss whose gradient is not zero through the final BatchNorm
    expected = model(x)
    (expected * weights).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    assert grads[0].abs().max() > 1e-3  # not vacuous: with out.sum() every gradient before the BN would be 0
    model.zero_grad()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    (out * weights).sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-4)
