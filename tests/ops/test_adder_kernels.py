"""The numba CPU adder kernels against the reference op, an independent loop formula, opcheck and torch.compile."""

from __future__ import annotations

import itertools
import math

import numba
import pytest
import torch
from torch import nn

from frugalvision.ops import adder2d, dispatch, use_backend
from frugalvision.ops import reference as ref
from frugalvision.ops.cpu import adder_numba

# (stride, padding, dilation, groups): the full odd-shape grid of the acceptance criteria
GRID = list(itertools.product((1, 2), (0, 1, 2), (1, 2), (1, 2)))


def _rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected.double()).abs().max() / expected.double().abs().max().clamp_min(1e-30)).item()


def _loop_formula(x, w, go, stride, padding, dilation, groups):
    """SPEC §1 written out element by element in float64 (no unfold, no broadcasting): Y, dX, dW."""
    n_img, c_in, height, width = x.shape
    c_out, cg, kh, kw = w.shape
    og = c_out // groups
    h_out = (height + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    w_out = (width + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    xs, ws, gs = x.double().tolist(), w.double().tolist(), go.double().tolist()
    y = [[[[0.0] * w_out for _ in range(h_out)] for _ in range(c_out)] for _ in range(n_img)]
    dx = [[[[0.0] * width for _ in range(height)] for _ in range(c_in)] for _ in range(n_img)]
    dw = [[[[0.0] * kw for _ in range(kh)] for _ in range(cg)] for _ in range(c_out)]
    for n, o, oh, ow in itertools.product(range(n_img), range(c_out), range(h_out), range(w_out)):
        g = gs[n][o][oh][ow]
        for c, i, j in itertools.product(range(cg), range(kh), range(kw)):
            ci = o // og * cg + c
            ih, iw = oh * stride - padding + i * dilation, ow * stride - padding + j * dilation
            inside = 0 <= ih < height and 0 <= iw < width
            xv = xs[n][ci][ih][iw] if inside else 0.0
            wv = ws[o][c][i][j]
            y[n][o][oh][ow] -= abs(xv - wv)
            dw[o][c][i][j] += (xv - wv) * g
            if inside:
                dx[n][ci][ih][iw] += max(-1.0, min(1.0, wv - xv)) * g
    return tuple(torch.tensor(t, dtype=torch.float64) for t in (y, dx, dw))


def _case(stride, padding, dilation, groups, dtype, n=1, seed=0, contiguous=True):
    gen = torch.Generator().manual_seed(seed)
    c_in, c_out = 4, 6
    if contiguous:
        x = torch.randn(n, c_in, 7, 9, generator=gen, dtype=dtype)
    else:  # a channels-last, column-sliced view
        x = torch.randn(n, 7, 12, c_in, generator=gen, dtype=dtype).permute(0, 3, 1, 2)[..., 1:10]
    w = torch.randn(c_out, c_in // groups, 3, 3, generator=gen, dtype=dtype)
    return x, w



def _numba_grad_weight(*args):
    """The weight-gradient kernel the numba backend registers (oneDNN conv weight gradient - rank-1 term)."""
    backend = next(b for b in dispatch._REGISTRY["adder2d"] if b.name == "numba")
    return backend.kernels["grad_weight"](*args)

@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"), GRID)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kernels_match_reference(stride, padding, dilation, groups, dtype):
    x, w = _case(stride, padding, dilation, groups, dtype, contiguous=(stride + padding) % 2 == 0)
    args = ((stride, stride), (padding, padding), (dilation, dilation), groups)
    xd, wd = x.double(), w.double()
    y_ref = ref.adder2d_forward(xd, wd, *args)
    go = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    tol = 1e-6 if dtype == torch.float64 else 1e-4
    y = adder_numba.adder2d_forward(x, w, *args)
    assert y.dtype == dtype and y.shape == y_ref.shape and y.is_contiguous()
    assert _rel_err(y, y_ref) <= tol
    gi = adder_numba.adder2d_grad_input(go.to(dtype), x, w, *args)
    assert gi.shape == x.shape
    assert _rel_err(gi, ref.adder2d_grad_input(go, xd, wd, *args)) <= tol
    gw = _numba_grad_weight(go.to(dtype), x, w, *args, False)
    assert _rel_err(gw, ref.adder2d_grad_weight(go, xd, wd, *args)) <= tol


@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"), [(1, 1, 1, 1), (2, 2, 1, 2), (1, 0, 2, 2)])
def test_kernels_match_loop_formula(stride, padding, dilation, groups):
    x, w = _case(stride, padding, dilation, groups, torch.float64, n=2, seed=3)
    args = ((stride, stride), (padding, padding), (dilation, dilation), groups)
    y_out = adder_numba.adder2d_forward(x, w, *args)
    go = torch.randn(y_out.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y, dx, dw = _loop_formula(x, w, go, stride, padding, dilation, groups)
    assert _rel_err(y_out, y) <= 1e-12
    assert _rel_err(adder_numba.adder2d_grad_input(go, x, w, *args), dx) <= 1e-12
    assert _rel_err(_numba_grad_weight(go, x, w, *args, False), dw) <= 1e-12


@pytest.mark.parametrize(("c_in", "c_out", "width"), [(1, 1, 1), (3, 5, 6), (5, 3, 11), (2, 7, 13)])
def test_tile_tails(c_in, c_out, width):
    """Channel and width counts that are not multiples of the register tiles, K not a multiple of K_ALIGN."""
    gen = torch.Generator().manual_seed(c_in * 100 + width)
    x = torch.randn(2, c_in, 5, width, generator=gen, dtype=torch.float64)
    w = torch.randn(c_out, c_in, 3, 3, generator=gen, dtype=torch.float64)
    args = ((1, 1), (1, 1), (1, 1), 1)
    y_ref = ref.adder2d_forward(x, w, *args)
    go = torch.randn(y_ref.shape, generator=gen, dtype=torch.float64)
    assert _rel_err(adder_numba.adder2d_forward(x, w, *args), y_ref) <= 1e-12
    assert _rel_err(adder_numba.adder2d_grad_input(go, x, w, *args), ref.adder2d_grad_input(go, x, w, *args)) <= 1e-12


@pytest.mark.parametrize(("size", "k", "stride", "padding"), [(5, 5, 1, 0), (9, 3, 2, 1), (14, 5, 1, 0)])
def test_dense_and_sparse_input_gradient_paths(size, k, stride, padding):
    """fc-as-conv (5x5 kernel on a 5x5 map) and stride 2 take the sparse-tap path, LeNet conv2 the dense one."""
    gen = torch.Generator().manual_seed(size)
    x = torch.randn(3, 5, size, size, generator=gen, dtype=torch.float64)
    w = torch.randn(7, 5, k, k, generator=gen, dtype=torch.float64)
    args = ((stride, stride), (padding, padding), (1, 1), 1)
    y_ref = ref.adder2d_forward(x, w, *args)
    go = torch.randn(y_ref.shape, generator=gen, dtype=torch.float64)
    assert _rel_err(adder_numba.adder2d_forward(x, w, *args), y_ref) <= 1e-12
    assert _rel_err(adder_numba.adder2d_grad_input(go, x, w, *args), ref.adder2d_grad_input(go, x, w, *args)) <= 1e-12


def test_padding_contributes_abs_weight():
    x = torch.zeros(1, 2, 1, 1)
    w = torch.randn(3, 2, 3, 3)
    y = adder_numba.adder2d_forward(x, w, (1, 1), (1, 1), (1, 1), 1)
    torch.testing.assert_close(y.view(3), -w.abs().sum((1, 2, 3)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_float32(dtype):
    x, w = _case(1, 1, 1, 1, torch.float32, n=2)
    x, w = x.to(dtype), w.to(dtype)
    with use_backend("numba"):
        y = adder2d(x, w, padding=1)
    assert y.dtype == torch.float32
    expected = ref.adder2d_forward(x.double(), w.double(), (1, 1), (1, 1), (1, 1), 1)
    assert _rel_err(y, expected) <= 1e-5


def test_numba_is_selected_on_cpu_and_gradients_flow():
    x, w = _case(2, 1, 1, 2, torch.float64, n=2)
    assert dispatch.select("adder2d", x, w).name == "numba"
    x.requires_grad_(True)
    w.requires_grad_(True)
    y = adder2d(x, w, stride=2, padding=1, groups=2)
    go = torch.randn_like(y)
    y.backward(go)
    with use_backend("reference"):
        x2, w2 = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
        y2 = adder2d(x2, w2, stride=2, padding=1, groups=2)
        y2.backward(go)
    assert _rel_err(y, y2) <= 1e-12
    assert _rel_err(x.grad, x2.grad) <= 1e-12
    assert _rel_err(w.grad, w2.grad) <= 1e-12


def test_thread_count_follows_torch():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert adder_numba.sync_threads() == 1 and numba.get_num_threads() == 1
        torch.set_num_threads(before)
        assert adder_numba.sync_threads() == min(before, numba.config.NUMBA_NUM_THREADS)
    finally:
        torch.set_num_threads(before)


def test_opcheck_with_numba_backend():
    x, w = _case(1, 1, 1, 1, torch.float64, n=2)
    x.requires_grad_(True)
    w.requires_grad_(True)
    with use_backend("numba"):
        torch.library.opcheck(torch.ops.frugalvision.adder2d.default, (x, w, [1, 1], [1, 1], [1, 1], 1, False))
        go = torch.randn(2, 6, 7, 9, dtype=torch.float64)
        conv_args = (go, x.detach(), w.detach(), [1, 1], [1, 1], [1, 1], 1)
        torch.library.opcheck(torch.ops.frugalvision.adder2d_grad_input.default, conv_args)
        torch.library.opcheck(torch.ops.frugalvision.adder2d_grad_weight.default, (*conv_args, False))


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


def test_torch_compile_fullgraph():
    torch.manual_seed(0)
    model = _TinyAdderNet()
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    expected.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for p, g in zip(model.parameters(), grads):
        assert math.isfinite(p.grad.abs().sum().item())
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-4)
