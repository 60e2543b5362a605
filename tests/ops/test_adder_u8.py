"""The integer adder op (frugalvision::adder2d_u8): the executable spec (:mod:`frugalvision.ops.reference`) against a
loop formula; every backend this CPU runs (the SAD kernels, the portable one, the plain-PyTorch ``torch`` one)
against the spec, exactly, on odd shapes and every output mode; argument errors; opcheck and torch.compile."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from frugalvision.errors import ConfigError, FrugalVisionError
from frugalvision.ops import PackedAdderWeight, adder2d_u8, adder2d_u8_cost, pack_adder_weight_u8, use_backend
from frugalvision.ops import reference as ref
from frugalvision.ops.backends import sad_rejects
from frugalvision.ops.cpu import adder_u8_numba
from frugalvision.ops.dispatch import select

SAD_BACKENDS = ("sad512", "sad256", "portable")
RUNNABLE = [name for name, width in adder_u8_numba.WIDTHS.items() if adder_u8_numba.width_rejects(width) is None]
COMPARED = [*RUNNABLE, "torch"]  # every backend compared with the spec
MODES = [("int32", False), ("float32", False), ("float32", True), ("uint8", False), ("uint8", True)]


def _loop_formula(x, w, stride, padding, dilation, groups, zero_point, scale, bias, residual, rz, rs, output, qmin,
                  qmax):
    """The definition written out element by element (Python ints for S, numpy float32 scalars for the epilogue,
    Python's round-half-to-even): independent of the reference's padding, slicing and broadcasting."""
    n_img, height, width, _ = x.shape
    c_out, cg, kh, kw = w.shape
    og = c_out // groups
    h_out = (height + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    w_out = (width + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    xs, ws = x.tolist(), w.tolist()
    dtype = {"int32": torch.int32, "float32": torch.float32, "uint8": torch.uint8}[output]
    out = torch.zeros(n_img, h_out, w_out, c_out, dtype=dtype)
    for n, oh, ow, o in itertools.product(range(n_img), range(h_out), range(w_out), range(c_out)):
        s = 0
        for c, i, j in itertools.product(range(cg), range(kh), range(kw)):
            ih, iw = oh * stride - padding + i * dilation, ow * stride - padding + j * dilation
            xv = xs[n][ih][iw][o // og * cg + c] if 0 <= ih < height and 0 <= iw < width else zero_point
            s += abs(xv - ws[o][c][i][j])
        if output == "int32":
            out[n, oh, ow, o] = s
            continue
        y = np.float32(s) * np.float32(scale[o]) + np.float32(bias[o])
        if residual is not None:
            y = y + (np.float32(int(residual[n, oh, ow, o])) - np.float32(rz)) * np.float32(rs)
        out[n, oh, ow, o] = float(y) if output == "float32" else min(max(round(float(y)), qmin), qmax)
    return out


def _inputs(n, h, w, c_in, c_out, k, groups, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, h, w, c_in), generator=gen, dtype=torch.uint8)
    weight = torch.randint(0, 256, (c_out, c_in // groups, k, k), generator=gen, dtype=torch.uint8)
    # scales of a real layer are small: y then spans a few hundred units and the uint8 clamp bites on both sides
    scale = (torch.rand(c_out, generator=gen) * 0.02 - 0.01).to(torch.float32)
    bias = (torch.randn(c_out, generator=gen) * 50 + 128).to(torch.float32)
    return x, weight, scale, bias


def _epilogue_args(mode, with_residual, out_shape, scale, bias, seed=1):
    if mode == "int32":
        return {}
    args = {"scale": scale, "bias": bias, "qmin": 3, "qmax": 250}
    if with_residual:
        gen = torch.Generator().manual_seed(seed)
        args.update(residual=torch.randint(0, 256, out_shape, generator=gen, dtype=torch.uint8),
                    residual_zero_point=117, residual_scale=0.37)
    return args


def _run(backend, x, weight, stride, padding, dilation, groups, zero_point, mode, with_residual, scale, bias):
    expected_int = ref.adder2d_u8_reference(x, weight, stride, padding, dilation, zero_point=zero_point, groups=groups)
    args = _epilogue_args(mode, with_residual, tuple(expected_int.shape), scale, bias)
    expected = ref.adder2d_u8_reference(x, weight, stride, padding, dilation, zero_point=zero_point, output=mode,
                                        groups=groups, **args)
    packed = pack_adder_weight_u8(weight, groups)
    with use_backend(backend):
        got = adder2d_u8(x, packed, stride, padding, dilation, zero_point=zero_point, output=mode, **args)
    return got, expected


# --------------------------------------------------------------------------------------------------------------
# The reference is the spec: check it against the loop formula


@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"), [(1, 0, 1, 1), (2, 1, 1, 2), (1, 2, 2, 1)])
@pytest.mark.parametrize(("mode", "with_residual"), MODES)
def test_reference_matches_loop_formula(stride, padding, dilation, groups, mode, with_residual):
    x, weight, scale, bias = _inputs(2, 5, 6, 4, 6, 3, groups)
    expected_int = _loop_formula(x, weight, stride, padding, dilation, groups, 41, None, None, None, 0, 0.0, "int32",
                                 0, 255)
    args = _epilogue_args(mode, with_residual, tuple(expected_int.shape), scale, bias)
    got = ref.adder2d_u8_reference(x, weight, stride, padding, dilation, zero_point=41, output=mode, groups=groups,
                                   **args)
    expected = _loop_formula(x, weight, stride, padding, dilation, groups, 41, scale.tolist(), bias.tolist(),
                             args.get("residual"), args.get("residual_zero_point", 0), args.get("residual_scale", 0.0),
                             mode, args.get("qmin", 0), args.get("qmax", 255))
    assert got.dtype == expected.dtype
    assert torch.equal(got, expected)


def test_padding_contributes_distance_to_the_zero_point():
    x = torch.full((1, 1, 1, 1), 200, dtype=torch.uint8)
    weight = torch.tensor([[[[10, 20, 30], [40, 50, 60], [70, 80, 90]]]], dtype=torch.uint8)
    got = ref.adder2d_u8_reference(x, weight, padding=1, zero_point=5)
    assert got.item() == abs(200 - 50) + sum(abs(5 - v) for v in (10, 20, 30, 40, 60, 70, 80, 90))


# --------------------------------------------------------------------------------------------------------------
# Kernels against the reference


def test_runnable_backends_and_selection():
    assert "portable" in RUNNABLE
    x, weight, _, _ = _inputs(1, 3, 3, 8, 8, 1, 1)
    chosen = select("adder2d_u8", x, pack_adder_weight_u8(weight).data).name
    assert chosen == RUNNABLE[0]  # the widest SAD form the CPU has
    for name in SAD_BACKENDS:
        reason = sad_rejects(adder_u8_numba.WIDTHS[name])(x, weight)
        assert (reason is None) == (name in RUNNABLE)
    assert "float32" in sad_rejects(0)(x.float())


# channel configurations: (C_in, C_out) picked so that every patch layout and both epilogue paths run:
# C_in 8 with groups 1 reads kernel rows in place (LAYOUT_ROWS), C_in 16 with groups 2 reads taps in place
# (LAYOUT_TAPS), odd C_in copies whole patches (LAYOUT_DENSE); C_out/G a multiple of 8 is written by the vector
# epilogue, otherwise by the scalar one.
CHANNELS = {1: [(8, 16), (5, 6)], 2: [(16, 16), (6, 10)]}
GRID = list(itertools.product((1, 2), (0, 1, 2), (1, 2), (1, 2)))


@pytest.mark.parametrize("backend", COMPARED)
@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"), GRID)
def test_kernels_equal_reference_on_the_grid(backend, stride, padding, dilation, groups):
    for c_in, c_out in CHANNELS[groups]:
        x, weight, scale, bias = _inputs(2, 7, 9, c_in, c_out, 3, groups, seed=c_in + c_out)
        for mode, with_residual in MODES:
            got, expected = _run(backend, x, weight, stride, padding, dilation, groups, 77, mode, with_residual,
                                 scale, bias)
            assert got.dtype == expected.dtype and got.shape == expected.shape, (mode, c_in)
            assert torch.equal(got, expected), (mode, with_residual, c_in, c_out)


ODD_SHAPES = {
    # name: (n, h, w, c_in, c_out, k, stride, padding, dilation, groups)
    "batch1_1x1": (1, 5, 4, 24, 40, 1, 1, 0, 1, 1),
    "fc_as_conv": (3, 5, 5, 16, 120, 5, 1, 0, 1, 1),
    "fc_1x1_input": (5, 1, 1, 120, 84, 1, 1, 0, 1, 1),
    "lenet_conv2": (2, 14, 14, 6, 16, 5, 1, 0, 1, 1),
    "resnet_stage1_rows": (2, 32, 32, 16, 16, 3, 1, 1, 1, 1),  # every block touches both borders
    "resnet_downsample": (2, 16, 16, 16, 32, 3, 2, 1, 1, 1),
    "wide_row_stride2": (1, 3, 75, 8, 8, 3, 2, 2, 1, 1),  # output rows longer than a task's block
    "k_not_multiple_of_8": (2, 6, 7, 3, 16, 3, 1, 1, 1, 1),
    "large_sums": (1, 6, 6, 64, 16, 5, 1, 2, 1, 1),  # K = 1600: sums up to 408000
    "one_term": (2, 1, 1, 1, 3, 1, 1, 0, 1, 1),  # K = 1
}


@pytest.mark.parametrize("backend", COMPARED)
@pytest.mark.parametrize("name", list(ODD_SHAPES))
def test_kernels_equal_reference_on_odd_shapes(backend, name):
    n, h, w, c_in, c_out, k, stride, padding, dilation, groups = ODD_SHAPES[name]
    x, weight, scale, bias = _inputs(n, h, w, c_in, c_out, k, groups, seed=len(name))
    zero_point = 9
    if name == "large_sums":  # every term is |255 - 0|, padding included
        x.fill_(255)
        weight[:8].fill_(0)
        zero_point = 255
    for mode, with_residual in MODES:
        got, expected = _run(backend, x, weight, stride, padding, dilation, groups, zero_point, mode, with_residual,
                             scale, bias)
        assert torch.equal(got, expected), (mode, with_residual)
        if name == "large_sums" and mode == "int32":
            assert bool((got[..., :8] == 255 * 5 * 5 * 64).all())


@pytest.mark.parametrize("backend", COMPARED)
def test_rounding_ties_go_to_even_and_clamp(backend):
    # scale 0.5 puts every odd sum exactly on a tie; qmin/qmax cut both tails
    x, weight, _, _ = _inputs(1, 4, 4, 8, 8, 1, 1)
    scale = torch.full((8,), 0.5)
    bias = torch.tensor([0.0, -100.0, -0.5, 0.5, 10.0, -300.0, 200.0, 1.0])
    expected = ref.adder2d_u8_reference(x, weight, zero_point=0, output="uint8", scale=scale, bias=bias, qmin=2,
                                        qmax=200)
    sums = ref.adder2d_u8_reference(x, weight, zero_point=0)
    assert bool((sums % 2 == 1).any())  # there are ties to break
    assert torch.equal(expected.long(), (sums * 0.5 + bias).round().clamp(2, 200).long())
    with use_backend(backend):
        got = adder2d_u8(x, pack_adder_weight_u8(weight), zero_point=0, output="uint8", scale=scale, bias=bias, qmin=2,
                         qmax=200)
    assert torch.equal(got, expected)


def test_empty_batch():
    x, weight, _, _ = _inputs(1, 5, 5, 8, 8, 3, 1)
    out = adder2d_u8(x[:0], pack_adder_weight_u8(weight), padding=1, zero_point=3)
    assert out.shape == (0, 5, 5, 8) and out.dtype == torch.int32


def test_same_result_with_one_thread():
    x, weight, scale, bias = _inputs(2, 9, 9, 16, 24, 3, 1)
    packed = pack_adder_weight_u8(weight)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = adder2d_u8(x, packed, padding=1, zero_point=5, output="uint8", scale=scale, bias=bias)
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads
    assert torch.equal(one, adder2d_u8(x, packed, padding=1, zero_point=5, output="uint8", scale=scale, bias=bias))


# --------------------------------------------------------------------------------------------------------------
# Packing, cost, registration


def test_pack_round_trip_and_layout():
    _, weight, _, _ = _inputs(1, 1, 1, 6, 10, 3, 2)
    packed = pack_adder_weight_u8(weight, groups=2)
    assert isinstance(packed, PackedAdderWeight)
    assert packed.data.shape == (2, 1, 4, 8, 8)  # 5 channels per group -> 1 row of 8; K = 27 -> 4 steps of 8
    assert (packed.kernel_size, packed.groups, packed.in_channels, packed.out_channels) == ((3, 3), 2, 6, 10)
    assert torch.equal(packed.unpack(), weight)
    # data[g, b, t, l, e] = W[g*5 + 8b + l, c, i, j] with 8t + e = (i*3 + j)*3 + c
    assert packed.data[1, 0, 2, 4, 3].item() == weight[5 + 4, (2 * 8 + 3) % 3, (2 * 8 + 3) // 9, (2 * 8 + 3) // 3 % 3]
    assert packed.data[0, 0, 3, 0, 3:].abs().sum().item() == 0  # K padding
    assert packed.data[0, 0, :, 5:].abs().sum().item() == 0  # channel padding


def test_cost():
    cost = adder2d_u8_cost((2, 8, 8, 16), 32, 3, groups=2, padding=1, output="uint8", residual=True)
    outputs = 2 * 8 * 8 * 32
    assert cost == {"abs_diff": outputs * 8 * 9, "add": 2 * outputs * 8 * 9 + 3 * outputs, "mul": 2 * outputs}
    assert adder2d_u8_cost((1, 5, 5, 3), 4, 5) == {"abs_diff": 4 * 75, "add": 2 * 4 * 75, "mul": 0}


class _IntegerLayer(torch.nn.Module):
    """float NCHW in -> uint8 NHWC -> adder2d_u8 (float32 output) -> float NCHW, as a quantized layer runs."""

    def __init__(self) -> None:
        super().__init__()
        _, weight, scale, bias = _inputs(1, 1, 1, 8, 16, 3, 2)
        self.packed = pack_adder_weight_u8(weight, groups=2)
        self.scale, self.bias = scale, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_q = x.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        y = adder2d_u8(x_q, self.packed, 2, 1, zero_point=3, output="float32", scale=self.scale, bias=self.bias)
        return y.permute(0, 3, 1, 2)


def test_count_ops_prices_integer_adds_as_int8_and_the_epilogue_as_fp32():
    from frugalvision import count_ops

    counts = count_ops(_IntegerLayer(), (8, 9, 9))
    records = {r["kind"]: r for r in counts["layers"] if r["op"] == "adder2d_u8"}
    outputs = 5 * 5 * 16  # stride 2, padding 1 on 9 x 9
    assert sorted(records) == ["norm", "weight"]
    # the layer: two int8 additions per |x - w| term (4 input channels per group, 3 x 3 taps)
    assert (records["weight"]["add"], records["weight"]["mul"], records["weight"]["precision"]) == \
        (2 * outputs * 4 * 9, 0, "int8")
    # the requantisation epilogue: one fp32 multiplication and one addition per output, counted like a BatchNorm
    assert (records["norm"]["add"], records["norm"]["mul"], records["norm"]["precision"]) == (outputs, outputs, "fp32")


def test_opcheck():
    x, weight, scale, bias = _inputs(2, 5, 6, 8, 16, 3, 1)
    packed = pack_adder_weight_u8(weight)
    residual = torch.randint(0, 256, (2, 5, 6, 16), dtype=torch.uint8)
    args = (x, packed.data, 16, [3, 3], [1, 1], [1, 1], [1, 1], 7, scale, bias, residual, 4, 0.5, "uint8", 0, 255)
    torch.library.opcheck(torch.ops.frugalvision.adder2d_u8.default, args)
    torch.library.opcheck(torch.ops.frugalvision.adder2d_u8.default,
                          (x, packed.data, 16, [3, 3], [2, 2], [0, 0], [1, 1], 7, None, None, None, 0, 0.0, "int32",
                           0, 255))


def test_torch_compile():
    x, weight, scale, bias = _inputs(1, 6, 6, 8, 8, 3, 1)
    packed = pack_adder_weight_u8(weight)

    def layer(inp: torch.Tensor) -> torch.Tensor:
        return adder2d_u8(inp, packed, padding=1, zero_point=3, output="float32", scale=scale, bias=bias) * 2

    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(x), layer(x))


# --------------------------------------------------------------------------------------------------------------
# Errors


def _valid():
    x, weight, scale, bias = _inputs(1, 4, 4, 8, 8, 3, 1)
    return x, pack_adder_weight_u8(weight), scale, bias


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.update(input_q=a["input_q"].float()), "input_q must be a uint8"),
    (lambda a: a.update(input_q=a["input_q"][0]), r"input_q must be a uint8 \(N, H, W, C\)"),
    (lambda a: a.update(input_q=a["input_q"].permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)), "contiguous"),
    (lambda a: a.update(input_q=a["input_q"][..., :4].contiguous()), "channels"),
    (lambda a: a.update(zero_point=256), "zero_point must be an int in 0..255"),
    (lambda a: a.update(zero_point=-1), "zero_point must be an int in 0..255"),
    (lambda a: a.update(output="int8"), "output must be one of"),
    (lambda a: a.update(output="uint8", scale=None), "needs a scale"),
    (lambda a: a.update(output="int32"), "need output="),
    (lambda a: a.update(scale=a["scale"].double()), "scale must be a float32"),
    (lambda a: a.update(bias=a["bias"][:3]), r"bias must be a float32 \(8,\)"),
    (lambda a: a.update(residual=torch.zeros(1, 4, 4, 7, dtype=torch.uint8)), "residual must be a uint8"),
    (lambda a: a.update(qmin=200, qmax=100), "qmin=200 > qmax=100"),
    (lambda a: a.update(padding=-1), "padding >= 0"),
    (lambda a: a.update(dilation=3), "does not fit"),
    (lambda a: a.update(weight="w"), "weight must be a PackedAdderWeight"),
])
def test_errors_are_one_line_user_errors(change, message):
    x, packed, scale, bias = _valid()
    args = {"input_q": x, "weight": packed, "padding": 1, "zero_point": 3, "output": "float32", "scale": scale,
            "bias": bias}
    change(args)
    with pytest.raises(FrugalVisionError, match=message) as info:
        adder2d_u8(**args)
    assert "\n" not in str(info.value) and str(info.value).startswith("adder2d_u8: ")


def test_pack_errors():
    with pytest.raises(TypeError, match="uint8"):
        pack_adder_weight_u8(torch.zeros(4, 2, 3, 3))
    with pytest.raises(ValueError, match="groups=3"):
        pack_adder_weight_u8(torch.zeros(4, 2, 3, 3, dtype=torch.uint8), groups=3)


def test_forcing_a_backend_the_cpu_lacks_names_the_feature(monkeypatch):
    monkeypatch.setattr(adder_u8_numba, "cpu_features", lambda: frozenset({"sse2"}))
    assert "lacks avx512bw" in adder_u8_numba.width_rejects(64)
    assert "lacks avx2" in adder_u8_numba.width_rejects(32)
    assert adder_u8_numba.width_rejects(0) is None
    x, packed, _, _ = _valid()
    with use_backend("sad512"), pytest.raises(ConfigError, match="lacks avx512bw"):
        adder2d_u8(x, packed, zero_point=0)
