"""Folding arithmetic: lossless weight clipping, the per-layer error bound, and bit-exact integer blocks."""

from __future__ import annotations

import torch
from torch import nn

import frugalvision as fv
from frugalvision.layers import Adder2d
from frugalvision.models.resnet import BasicBlock, ResNet
from frugalvision.quant.fold import QParams, clip_and_quantize_weight

from .oracle import epilogue_f32_steps, sad_int64, to_uint8
from .utils import batch_statistics


def test_weight_clipping_is_exact_for_activations_in_range():
    """|x - w| = |x - clip(w)| + |w - clip(w)| for every x in [lo, hi] (float64, weights far outside the range)."""
    gen = torch.Generator().manual_seed(0)
    q = QParams.from_range(-0.5, 2.0)
    weight = torch.randn(5, 3, 3, 3, generator=gen, dtype=torch.float64) * 6  # most weights outside [lo, hi]
    x = torch.rand(200, 27, generator=gen, dtype=torch.float64) * (q.hi - q.lo) + q.lo
    w = weight.flatten(1)
    _, clip_cost = clip_and_quantize_weight(weight, q)
    exact = (x[:, None, :] - w[None]).abs().sum(-1)  # (200, 5)
    clipped = (x[:, None, :] - w.clamp(q.lo, q.hi)[None]).abs().sum(-1) + clip_cost
    assert torch.allclose(exact, clipped, rtol=0, atol=1e-9)
    assert (clip_cost > 1).all()  # the constant matters


def test_quantized_layer_error_is_within_the_scale_bound():
    """One adder layer + BatchNorm: every term |q(x) - q(w)| s differs from |x - w| by at most s/2 + s/2, so the
    BatchNorm output differs by at most |g| K s (g = gamma / sigma, K terms); the RMS error, a sum of K nearly
    independent rounding errors, stays near |g| s sqrt(K / 6) - far below the worst case."""
    torch.manual_seed(0)
    model = nn.Sequential(Adder2d(4, 6, 3, stride=2, padding=2), nn.BatchNorm2d(6))
    nn.init.normal_(model[0].weight, std=2.0)
    x = torch.randn(8, 4, 7, 7)  # signed: the zero point sits mid-range; a third of the taps are padding (x = 0)
    batch_statistics(model, x)
    qmodel = fv.quantize(model, [x], observer="minmax")  # calibrated on x itself: nothing is clamped
    with torch.no_grad():
        error = (qmodel(x) - model(x)).abs()
    norm = model[1]
    g = (norm.weight / torch.sqrt(norm.running_var + norm.eps)).abs().view(1, -1, 1, 1)
    s, k = QParams.from_range(float(x.min()), float(x.max())).scale, 4 * 9
    assert 100 < qmodel[0].quant.zero_point < 155
    assert isinstance(qmodel[0], fv.quant.modules.AdderUnit) and isinstance(qmodel[1], nn.Identity)  # BN folded
    assert (error <= g * k * s + 1e-4).all()
    assert ((error / g) ** 2).mean().sqrt() < s * (k / 6) ** 0.5 * 1.5


def _tiny_resnet() -> ResNet:
    torch.manual_seed(0)
    model = ResNet(BasicBlock, (1, 1, 1), (4, 8, 8), conv_type="adder")
    return batch_statistics(model, torch.randn(16, 3, 16, 16))


def _block_oracle(block, x: torch.Tensor) -> torch.Tensor:
    """The integer formula of a quantized basic block from its buffers (int64 sums, float32-step epilogue)."""
    def layer(q, inp, residual=None):
        acc = sad_int64(inp, q.weight_q, q.stride, q.padding, q.dilation, q.groups, q.zero_point)
        y = epilogue_f32_steps(acc, q.scale, q.bias, residual, q.residual_zero_point, q.residual_scale)
        return y.float() if q.output == "float32" else to_uint8(y, q.qmin, q.qmax)

    identity = x if block.downsample is None else layer(block.downsample, x)
    out = layer(block.conv2, layer(block.conv1, x), identity)
    return out.relu() if block.conv2.output == "float32" else out


def test_integer_blocks_equal_the_integer_formula_bit_for_bit():
    model = _tiny_resnet()
    qmodel = fv.quantize(model, [torch.randn(8, 3, 16, 16)], observer="minmax")
    gen = torch.Generator().manual_seed(1)
    blocks = {"layer2.0": (2, 16, 16, 4), "layer3.0": (3, 8, 8, 8)}  # downsample, and the last (float) block
    for name, shape in blocks.items():
        block = qmodel.get_submodule(name)
        x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
        expected = _block_oracle(block, x)
        with torch.no_grad():
            got = block(x)
        assert got.dtype == expected.dtype and torch.equal(got, expected), name
    assert qmodel.layer2[0].downsample is not None and qmodel.layer3[0].conv2.output == "float32"
