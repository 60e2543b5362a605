"""Odd-shape cases of the op tests, the adder2d grid, and the one check every adder2d backend goes through.

:func:`check_backend_against_oracle` runs the public :func:`frugalvision.ops.adder2d` (forward and backward) with
``use_backend(name)``, so the kernels a backend has *registered* are the ones tested, and compares all three
outputs (Y, dX, dW; ``weight_grad`` "full" and "sign") with the float64 loop oracle of :mod:`.brute_force`.
The shapes are tiny, so the oracle is computed directly on every case (no comparison with a second kernel).
"""

from __future__ import annotations

import functools
import itertools
import zlib
from dataclasses import dataclass

import torch
from torch import Tensor

from frugalvision.ops import adder2d, dispatch, use_backend
from frugalvision.ops.adder2d import ADDER_OP

from .brute_force import brute_force_adder, output_size

__all__ = ["EXTRA_CASES", "GRID", "ConvCase", "assert_rel_close", "check_backend_against_oracle", "draw_input",
           "make_inputs", "oracle", "rel_err"]

Pair = tuple[int, int]
LAYOUTS = ("contiguous", "channels_last", "sliced")
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}  # max |error| / max |oracle|


@dataclass(frozen=True)
class ConvCase:
    """The geometry of one sliding-window op call and the memory layout of its input."""

    batch: int
    c_in: int
    c_out: int
    height: int
    width: int
    kernel: Pair = (3, 3)
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    layout: str = "contiguous"  # "channels_last", or "sliced": a column slice of a channels-last tensor

    @property
    def id(self) -> str:
        def fmt(p: Pair) -> str:
            return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"

        return (f"n{self.batch}-c{self.c_in}-o{self.c_out}-{self.height}x{self.width}-k{fmt(self.kernel)}"
                f"-s{fmt(self.stride)}-p{fmt(self.padding)}-d{fmt(self.dilation)}-g{self.groups}-{self.layout}")

    def conv_kwargs(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def output_hw(self) -> Pair:
        return output_size(self.height, self.width, self.kernel, self.stride, self.padding, self.dilation)

    def generator(self) -> torch.Generator:
        """A generator seeded from the case (the same values in every process)."""
        return torch.Generator().manual_seed(zlib.crc32(self.id.encode()))


def _grid() -> list[ConvCase]:
    """Stride x padding x dilation x groups on a 7 x 9 map, 4 -> 6 channels; batch 1 / 2 and the three memory
    layouts spread evenly over the points (every pair of a geometry value and a batch size or layout occurs)."""
    cases = []
    for index, (s, p, d, g) in enumerate(itertools.product((1, 2), (0, 1, 2), (1, 2), (1, 2))):
        cases.append(ConvCase(batch=1 + (s + p + d + g) % 2, c_in=4, c_out=6, height=7, width=9, stride=(s, s),
                               padding=(p, p), dilation=(d, d), groups=g, layout=LAYOUTS[(index // 2 + g) % 3]))
    return cases


GRID = _grid()
EXTRA_CASES = [
    ConvCase(1, 1, 1, 5, 5),  # one channel
    ConvCase(3, 2, 3, 6, 7, kernel=(1, 1), stride=(2, 2)),  # 1 x 1 kernel
    ConvCase(2, 4, 4, 8, 8, kernel=(2, 2), padding=(1, 1), groups=4),  # even kernel, depthwise
    ConvCase(1, 6, 4, 10, 9, kernel=(5, 5), stride=(2, 2), padding=(2, 2), groups=2, layout="sliced"),
    ConvCase(2, 4, 6, 7, 8, kernel=(2, 3), stride=(1, 2), padding=(2, 0), dilation=(2, 1), groups=2,
              layout="channels_last"),  # rectangular kernel, unequal stride / padding / dilation
    # numba's register tiles (4 positions x 2 channels forward, 2 x 2 / 1 x 4 input gradient) and K_ALIGN tails
    ConvCase(2, 3, 5, 5, 6, padding=(1, 1)),
    ConvCase(2, 5, 3, 5, 11, padding=(1, 1)),
    ConvCase(2, 2, 7, 5, 13, padding=(1, 1), layout="sliced"),
    # numba's input gradient: fc-as-conv and stride 2 take the sparse-tap path, LeNet conv2 the dense one
    ConvCase(3, 5, 7, 5, 5, kernel=(5, 5)),
    ConvCase(3, 5, 7, 9, 9, stride=(2, 2), padding=(1, 1)),
    ConvCase(3, 5, 7, 14, 14, kernel=(5, 5)),
]


def draw_input(case: ConvCase, gen: torch.Generator, dtype: torch.dtype, device: str = "cpu") -> Tensor:
    """x (N, C, H, W) in the case's memory layout, drawn in float64 and rounded to ``dtype``: drawn channels-last
    with two extra columns, "sliced" keeps a column slice of that (no dense layout at all)."""
    wide = torch.randn(case.batch, case.height, case.width + 2, case.c_in, generator=gen, dtype=torch.float64)
    x = wide.to(device=device, dtype=dtype).permute(0, 3, 1, 2)[..., 1 : case.width + 1]  # (N, C, H, W) view
    if case.layout == "contiguous":
        x = x.contiguous()
    elif case.layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    assert x.is_contiguous() == (case.layout == "contiguous")
    return x


def make_inputs(case: ConvCase, dtype: torch.dtype, device: str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """adder2d's x (in the case's memory layout), weight and an output gradient, drawn in float64 and rounded."""
    gen = case.generator()
    x = draw_input(case, gen, dtype, device)
    weight = torch.randn(case.c_out, case.c_in // case.groups, *case.kernel, generator=gen, dtype=torch.float64)
    grad_output = torch.randn(case.batch, case.c_out, *case.output_hw(), generator=gen, dtype=torch.float64)
    return x, weight.to(device=device, dtype=dtype), grad_output.to(device=device, dtype=dtype)


@functools.cache
def oracle(case: ConvCase, dtype: torch.dtype, weight_grad: str) -> tuple[Tensor, Tensor, Tensor]:
    """(Y, dX, dW) of the float64 loop formula on the case's inputs, as rounded to ``dtype``."""
    x, weight, grad_output = make_inputs(case, dtype)
    return brute_force_adder(x.double(), weight.double(), grad_output=grad_output.double(), weight_grad=weight_grad,
                             **case.conv_kwargs())


def rel_err(actual: Tensor, expected: Tensor) -> float:
    """max |actual - expected| / max |expected| in float64."""
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def assert_rel_close(actual: Tensor, expected: Tensor, tol: float, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = rel_err(actual, expected)
    assert err <= tol, f"{what}: relative max error {err:.3g} > {tol:g}"


def check_backend_against_oracle(backend: str, case: ConvCase, dtype: torch.dtype, device: str = "cpu") -> None:
    """Forward, input gradient and weight gradient (full and sign) of ``backend`` through the registered ops.

    ``adder2d`` forward and backward give Y, dX and the full dW; the sign dW comes from the registered
    ``frugalvision::adder2d_grad_weight`` op itself (what ``weight_grad="sign"`` calls in the backward; the flag's
    path through autograd is tested in test_adder_reference.py), so the forward does not run twice.
    """
    tol = TOLERANCE[dtype]
    x, weight, grad_output = make_inputs(case, dtype, device)
    x, weight = x.detach().requires_grad_(True), weight.detach().requires_grad_(True)  # leaves, same strides
    with use_backend(backend):
        selected = dispatch.select(ADDER_OP, x, weight).name
        assert selected == backend, f"use_backend({backend!r}) runs the {selected!r} kernels"
        y = adder2d(x, weight, **case.conv_kwargs())
        y.backward(grad_output)
        geometry = (list(case.stride), list(case.padding), list(case.dilation), case.groups)
        grad_w_sign = torch.ops.frugalvision.adder2d_grad_weight(grad_output, x.detach(), weight.detach(), *geometry,
                                                                 True)
    y_ref, grad_x_ref, grad_w_ref = oracle(case, dtype, "full")
    assert (y.dtype, x.grad.dtype, weight.grad.dtype, grad_w_sign.dtype) == (dtype,) * 4
    assert_rel_close(y, y_ref, tol, f"{backend} forward")
    assert_rel_close(x.grad, grad_x_ref, tol, f"{backend} input gradient")
    assert_rel_close(weight.grad, grad_w_ref, tol, f"{backend} weight gradient (full)")
    assert_rel_close(grad_w_sign, oracle(case, dtype, "sign")[2], tol, f"{backend} weight gradient (sign)")
