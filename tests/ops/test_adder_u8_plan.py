"""The compiled step driver (frugalvision.ops.cpu.adder_u8_plan): a hand-built table of adder and max-pool steps on
odd shapes, against the plain-PyTorch reference op and F.max_pool2d; the stem kernel against F.conv2d in float64 and
torch.quantize_per_tensor."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from frugalvision.ops import pack_adder_weight_u8
from frugalvision.ops import reference as ref
from frugalvision.ops.cpu import adder_u8_numba
from frugalvision.ops.cpu.adder_u8_plan import (
    BUFFER_ARENA,
    BUFFER_INPUT,
    BUFFER_OUTPUT,
    PARAM_COUNT,
    QUANTIZE_PARAMS,
    STEM_PARAMS,
    STEP_ADDER,
    STEP_FIELDS,
    STEP_MAX_POOL,
    _conv_stem_u8,
    _patches_u8,
    _quantize_u8,
    run_steps,
)

RUNNABLE = [width for width in adder_u8_numba.WIDTHS.values() if adder_u8_numba.width_rejects(width) is None]


def _max_pool_nhwc(x, kernel, stride, padding, dilation, ceil_mode):
    y = F.max_pool2d(x.permute(0, 3, 1, 2).float(), kernel, stride, padding, dilation, ceil_mode)  # exact on bytes
    return y.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@pytest.mark.parametrize("width", RUNNABLE)
@pytest.mark.parametrize("workers", [1, 2, 5])  # 5: more workers than numba's threads share the tasks too
@pytest.mark.parametrize("n, size, c_in, c_mid, k, stride, padding, pool", [
    (1, 9, 5, 11, 3, 2, 1, (3, 2, 1, 1, True)),  # C not a multiple of 8 (copied patch rows), ceil-mode pool
    (3, 8, 16, 16, 3, 1, 1, (2, 2, 0, 1, False)),  # rows read in place
    (2, 11, 8, 24, 5, 1, 2, (3, 1, 1, 2, False)),  # taps read in place, dilated pool
    (0, 6, 8, 8, 3, 1, 1, (2, 2, 0, 1, False)),  # empty batch
])
def test_driver_runs_adder_pool_adder_like_the_reference(width, workers, n, size, c_in, c_mid, k, stride, padding,
                                                        pool):
    gen = torch.Generator().manual_seed(n + size)
    x = torch.randint(0, 256, (n, size, size, c_in), generator=gen, dtype=torch.uint8)
    w1 = torch.randint(0, 256, (c_mid, c_in, k, k), generator=gen, dtype=torch.uint8)
    w2 = torch.randint(0, 256, (c_mid, c_mid, 1, 1), generator=gen, dtype=torch.uint8)
    scale1, scale2 = (torch.rand(c_mid, generator=gen) * 0.02 - 0.01 for _ in range(2))
    bias1, bias2 = (torch.randn(c_mid, generator=gen) * 50 + 128 for _ in range(2))
    z1, z2, rz, rs = 7, 130, 12, 0.75
    # the reference: adder (uint8 out) -> max-pool -> 1x1 adder with the pooled map as residual (float32 out)
    p1, p2 = pack_adder_weight_u8(w1), pack_adder_weight_u8(w2)
    a = ref.adder2d_u8_reference(x, w1, (stride, stride), (padding, padding), (1, 1), zero_point=z1, scale=scale1,
                                 bias=bias1, output="uint8", qmin=3, qmax=250)
    b = _max_pool_nhwc(a, *pool)
    expected = ref.adder2d_u8_reference(b, w2, (1, 1), (0, 0), (1, 1), zero_point=z2, scale=scale2, bias=bias2,
                                        residual=b, residual_zero_point=rz, residual_scale=rs, output="float32")

    weights = np.concatenate([p1.data.numpy().reshape(-1), p2.data.numpy().reshape(-1)])
    blocks = -(-c_mid // 8)
    scales = np.concatenate([adder_u8_numba.per_group_padded(s, 1, blocks, 1.0) for s in (scale1, scale2)])
    biases = np.concatenate([adder_u8_numba.per_group_padded(s, 1, blocks, 0.0) for s in (bias1, bias2)])
    ints1, floats1, shape1 = adder_u8_numba.kernel_arguments(
        width, tuple(x.shape), tuple(p1.data.shape), c_mid, (k, k), (stride, stride), (padding, padding), (1, 1), z1,
        False, 0, 0.0, "uint8", 3, 250, 2)
    ints2, floats2, shape2 = adder_u8_numba.kernel_arguments(
        width, tuple(b.shape), tuple(p2.data.shape), c_mid, (1, 1), (1, 1), (0, 0), (1, 1), z2, True, rz, rs,
        "float32", 0, 255, 2)
    assert shape1 == a.shape and shape2 == expected.shape
    pool_ints = np.zeros(PARAM_COUNT, dtype=np.int64)
    kp, sp, pp, dp, _ = pool
    pool_ints[:14] = [*a.shape[:3], c_mid, b.shape[1], b.shape[2], kp, kp, sp, sp, pp, pp, dp, dp]
    a_bytes, b_bytes = a.numel(), b.numel()
    b_at = -(-a_bytes // 64) * 64 + 64  # the pooled map after the first layer's output in the arena
    table = np.zeros((3, len(STEP_FIELDS)), dtype=np.int64)
    w1_bytes, vec = p1.data.numel(), 8 * blocks
    table[0] = [STEP_ADDER, BUFFER_INPUT, 0, x.numel(), BUFFER_ARENA, 0, a_bytes, BUFFER_ARENA, 0, 0,
                0, w1_bytes, 1, blocks, p1.data.shape[2], 0, vec]
    table[1, :7] = [STEP_MAX_POOL, BUFFER_ARENA, 0, a_bytes, BUFFER_ARENA, b_at, b_bytes]
    table[2] = [STEP_ADDER, BUFFER_ARENA, b_at, b_bytes, BUFFER_OUTPUT, 0, expected.numel() * 4, BUFFER_ARENA, b_at,
                b_bytes, w1_bytes, p2.data.numel(), 1, blocks, p2.data.shape[2], vec, vec]
    out = torch.full(expected.shape, float("nan"))
    arena = np.full(b_at + b_bytes + 64, 0xAB, dtype=np.uint8)
    previous = numba.get_num_threads()
    numba.set_num_threads(min(max(workers, previous), numba.config.NUMBA_NUM_THREADS))  # workers on real threads
    try:
        run_steps(width, x.view(-1).numpy(), out.view(-1).view(torch.uint8).numpy(), arena, weights, scales, biases,
                  table, np.stack([ints1, pool_ints, ints2]), np.stack([floats1, np.zeros(4, np.float32), floats2]),
                  workers=workers)
    finally:
        numba.set_num_threads(previous)
    assert torch.equal(torch.from_numpy(arena[:a_bytes]).view(a.shape), a)
    assert torch.equal(torch.from_numpy(arena[b_at : b_at + b_bytes]).view(b.shape), b)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("width", RUNNABLE)
@pytest.mark.parametrize("threads", [2, 3, 7])
def test_small_batches_split_channel_tiles_between_tasks(width, threads):
    """One block of positions (batch 1, 6x6 map) and 40 output channels: the channel tiles are dealt to several
    parallel tasks (as many as the threads need, at most one tile each); the result is the reference's."""
    gen = torch.Generator().manual_seed(threads)
    x = torch.randint(0, 256, (1, 6, 6, 24), generator=gen, dtype=torch.uint8)
    weight = torch.randint(0, 256, (40, 24, 3, 3), generator=gen, dtype=torch.uint8)
    packed = pack_adder_weight_u8(weight)
    scale, bias = torch.rand(40, generator=gen) * 0.01, torch.randn(40, generator=gen) * 50 + 128
    residual = torch.randint(0, 256, (1, 6, 6, 40), generator=gen, dtype=torch.uint8)
    expected = ref.adder2d_u8_reference(x, weight, (1, 1), (1, 1), (1, 1), zero_point=9, scale=scale, bias=bias,
                                        residual=residual, residual_zero_point=3, residual_scale=0.5, output="uint8")
    ints, floats, shape = adder_u8_numba.kernel_arguments(
        width, tuple(x.shape), tuple(packed.data.shape), 40, (3, 3), (1, 1), (1, 1), (1, 1), 9, True, 3, 0.5, "uint8",
        0, 255, threads)
    tiles = -(-5 // adder_u8_numba.TILES[width][1])  # 5 rows of 8 channels, NR rows per tile
    assert ints[-1] == min(threads, tiles) and ints[-2] == ints[-1]  # channel_splits, num_chunks
    out = torch.empty(shape, dtype=torch.uint8)
    adder_u8_numba._FORWARD_KERNELS[width](
        x.view(-1).numpy(), packed.data.numpy(), out.view(-1).numpy(),
        adder_u8_numba.per_group_padded(scale, 1, 5, 1.0), adder_u8_numba.per_group_padded(bias, 1, 5, 0.0),
        residual.view(-1).numpy(), ints, floats)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("n, h, w, k, stride, padding, dilation", [
    (2, 28, 28, 5, 1, 2, 1),  # LeNet-5's first layer: 8-byte moves inside, taps one by one at the borders
    (1, 7, 9, 3, 2, 1, 2),  # strided, dilated: taps one by one
    (3, 6, 11, (2, 9), 1, (0, 4), 1),  # a kernel row longer than 8 taps
])
def test_patch_rows_of_a_one_channel_map_equal_unfold(n, h, w, k, stride, padding, dilation):
    kh, kw = (k, k) if isinstance(k, int) else k
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    zero_point = 17
    x = torch.randint(0, 256, (n, h, w, 1), generator=torch.Generator().manual_seed(h), dtype=torch.uint8)
    padded = F.pad(x[..., 0].float(), (pw, pw, ph, ph), value=zero_point)  # (N, H + 2ph, W + 2pw)
    cols = F.unfold(padded[:, None], (kh, kw), dilation=dilation, stride=stride)  # (N, kh * kw, Ho * Wo), (i, j)
    h_out = (h + 2 * ph - dilation * (kh - 1) - 1) // stride + 1
    w_out = (w + 2 * pw - dilation * (kw - 1) - 1) // stride + 1
    row_bytes = -(-kh * kw // 8) * 8
    expected = torch.zeros(n, h_out, w_out, row_bytes, dtype=torch.uint8)
    expected[..., : kh * kw] = cols.transpose(1, 2).reshape(n, h_out, w_out, kh * kw).to(torch.uint8)
    out = torch.full((n, h_out, w_out, row_bytes), 0xAB, dtype=torch.uint8)
    params = np.zeros(PARAM_COUNT, dtype=np.int64)
    params[:16] = [n, h, w, 1, h_out, w_out, kh, kw, stride, stride, ph, pw, dilation, dilation, zero_point, row_bytes]
    _patches_u8(x.view(-1).numpy(), out.view(-1).numpy(), params)
    assert torch.equal(out, expected)


def _stem_reference(x, weight, bias, stride, padding, dilation, scale, zero_point, relu):
    """FloatConvStem's definition: F.conv2d in float64 rounded once to float32, [ReLU], torch's quantiser."""
    y = F.conv2d(x.double(), weight.double(), bias.double(), stride, padding, dilation).float()
    y = y.relu() if relu else y
    q = torch.quantize_per_tensor(y.contiguous(), scale, zero_point, torch.quint8).int_repr()
    return q.permute(0, 2, 3, 1).contiguous()  # (N, Ho, Wo, O)


def _run_stem(x, weight, bias, stride, padding, dilation, scale, zero_point, relu):
    n, c, h, w = x.shape
    out_channels, _, kh, kw = weight.shape
    h_out = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    w_out = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    o8 = -(-out_channels // 8) * 8
    packed = torch.zeros(c, kh, kw, o8)
    packed[..., :out_channels] = weight.permute(1, 2, 3, 0)  # (C, kh, kw, O8)
    bias8 = torch.zeros(o8)
    bias8[:out_channels] = bias
    params = np.zeros(PARAM_COUNT, dtype=np.int64)
    params[: len(STEM_PARAMS)] = [n, c, h, w, out_channels, h_out, w_out, kh, kw, *stride, *padding, *dilation,
                                  zero_point, zero_point if relu else 0, o8]
    padded = np.empty(n * c * (h + 2 * padding[0]) * (w + 2 * padding[1]), dtype=np.float64)
    out = torch.full((n, h_out, w_out, out_channels), 0xAB, dtype=torch.uint8)
    _conv_stem_u8(x.contiguous().view(-1).numpy(), out.view(-1).numpy(), padded, packed.view(-1).numpy(),
                  bias8.numpy(), params, np.float32(1.0) / np.float32(scale))
    return out


@pytest.mark.parametrize("n, c, h, w, out_channels, k, stride, padding, dilation, zero_point, relu", [
    (2, 3, 32, 32, 16, 3, (1, 1), (1, 1), (1, 1), 0, True),  # ResNet-20's stem
    (1, 3, 9, 13, 5, 3, (2, 1), (1, 2), (1, 1), 7, True),  # batch 1, stride, uneven padding, 5 channels
    (3, 1, 12, 11, 13, 5, (1, 2), (0, 3), (2, 1), 100, False),  # one channel, dilation, a 13-channel tail
    (1, 3, 23, 23, 64, 7, (2, 2), (3, 3), (1, 1), 3, True),  # ResNet-18's stem shape (smaller image)
])
def test_stem_kernel_equals_float64_conv_and_torch_quantiser(n, c, h, w, out_channels, k, stride, padding,
                                                            dilation, zero_point, relu):
    gen = torch.Generator().manual_seed(h * w + c)
    x = torch.randn(n, c, h, w, generator=gen)
    weight = torch.randn(out_channels, c, k, k, generator=gen) / k
    bias = torch.randn(out_channels, generator=gen)
    scale = 0.0173
    expected = _stem_reference(x, weight, bias, stride, padding, dilation, scale, zero_point, relu)
    assert 0 < (expected == 255).sum() < expected.numel() / 4  # clamped values and plenty of others
    out = _run_stem(x, weight, bias, stride, padding, dilation, scale, zero_point, relu)
    assert torch.equal(out, expected)


def test_stem_kernel_rounds_ties_to_even_like_torch():
    """Inputs and weights on a coarse binary grid: every output is a multiple of 1/16, so ``y / 0.125`` lands
    on many exact halves (ties); torch rounds them to even, and so must the kernel."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(-8, 9, (2, 3, 7, 6), generator=gen).float() / 4
    weight = torch.randint(-4, 5, (8, 3, 3, 3), generator=gen).float() / 4
    bias = torch.randint(-8, 9, (8,), generator=gen).float() / 16
    args = ((1, 1), (1, 1), (1, 1), 0.125, 128, False)
    expected = _stem_reference(x, weight, bias, *args)
    y = F.conv2d(x, weight, bias, padding=1) / 0.125
    assert ((y - y.floor()) == 0.5).sum() > 20  # ties
    assert torch.equal(_run_stem(x, weight, bias, *args), expected)


def test_stem_kernel_accumulates_in_float64():
    """Large inputs (4096 + noise) and weights that sum to ~0 per channel: the terms (~1e3) cancel down to ~1, so a
    float32 accumulation is off by ~1e-4 and moves some bytes (checked: it fails this test); the float64 sums
    round to the float64 reference's float32 values."""
    gen = torch.Generator().manual_seed(11)
    x = 4096 + torch.randn(2, 3, 10, 10, generator=gen)
    weight = torch.randn(16, 3, 3, 3, generator=gen)
    weight -= weight.mean((1, 2, 3), keepdim=True)
    bias = torch.randn(16, generator=gen)
    args = ((1, 1), (0, 0), (1, 1), 0.05, 128, False)
    expected = _stem_reference(x, weight, bias, *args)
    assert 0 < (expected == 255).sum() + (expected == 0).sum() < expected.numel() / 4
    assert torch.equal(_run_stem(x, weight, bias, *args), expected)


@pytest.mark.parametrize("n, c, h, w, scale, zero_point", [(3, 1, 5, 13, 0.25, 0), (1, 3, 7, 9, 0.0173, 200)])
def test_quantize_kernel_equals_torch_quantize_per_tensor(n, c, h, w, scale, zero_point):
    """Finite values, ties, clamped ones (beyond |x / scale| ~ 2**31 torch's own int32 conversion overflows)."""
    gen = torch.Generator().manual_seed(c)
    x = torch.randn(n, c, h, w, generator=gen) * 3
    x[0, 0, 0, :4] = torch.tensor([1e5, -1e5, 255.5 - zero_point, -0.5 - zero_point]) * scale  # clamped, ties
    x[-1, -1, -1, :8] = torch.arange(-4, 4) * scale + scale / 2  # ties: k + 1/2 after the division
    expected = torch.quantize_per_tensor(x, scale, zero_point, torch.quint8).int_repr().permute(0, 2, 3, 1)
    out = torch.full((n, h, w, c), 0xAB, dtype=torch.uint8)
    params = np.zeros(PARAM_COUNT, dtype=np.int64)
    params[: len(QUANTIZE_PARAMS)] = [n, c, h, w, zero_point]
    _quantize_u8(x.view(-1).numpy(), out.view(-1).numpy(), params, np.float32(1.0) / np.float32(scale))
    assert torch.equal(out, expected)
