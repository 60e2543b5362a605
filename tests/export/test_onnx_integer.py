"""Integer AdderNets (``quantize`` outputs) exported to standard-opset ONNX and run with onnxruntime.

The oracle is the integer model itself (numba uint8 SAD kernels, their float32 epilogue, PyTorch's quantiser and
float layers): the graph must give the same bytes wherever the model computes integers, hence the same logits up
to the float32 rounding of the average pool and classifier. One adder layer on odd geometry (groups, strides,
dilation, asymmetric padding, a non-zero zero point) is also checked against the plain-PyTorch int32 reference.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import frugalvision as fv
from frugalvision.cli.main import main
from frugalvision.errors import ExportError
from frugalvision.export import compare_with_onnxruntime, export_integer_onnx
from frugalvision.export.onnx_integer import FLOAT32_EXACT_LIMIT, build_integer_graph, onnx_session, sad_accumulator
from frugalvision.models import save_model
from frugalvision.ops.reference import adder2d_u8_reference
from frugalvision.quant import quantize
from frugalvision.quant.modules import QuantizedAdder2d, QuantizeInput
from frugalvision.quant.networks import ChannelsFirst, QuantizedChain

from .utils import calibrated

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")




def _images(n: int, size: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return torch.randn(n, *size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def int8_lenet() -> nn.Module:
    model = calibrated(fv.create_model("lenet5_bn", conv_type="adder"), (1, 28, 28))
    return quantize(model, [_images(64, (1, 28, 28), seed=2)], observer="minmax")


@pytest.fixture(scope="module")
def int8_resnet20() -> nn.Module:
    model = calibrated(fv.create_model("resnet20", conv_type="adder"), (3, 32, 32))
    return quantize(model, [_images(32, (3, 32, 32), seed=2)], observer="minmax")


def _ops(proto) -> set[str]:
    assert all(node.domain in ("", "ai.onnx") for node in proto.graph.node)  # the standard operator set only
    return {node.op_type for node in proto.graph.node}


def test_int8_lenet_graph_gives_the_integer_models_logits_bit_for_bit(int8_lenet, tmp_path: Path) -> None:
    """An all-adder chain: every step is integer or an IEEE float32 op in the model's order, so the logits match
    exactly (batch axis dynamic: 1 and 37 images)."""
    path = tmp_path / "lenet.onnx"
    export_integer_onnx(int8_lenet, path, (1, 28, 28))
    proto = onnx.load(str(path))
    assert {"Abs", "ReduceSum", "Round", "Clip"} <= _ops(proto)
    assert "frugalvision" not in str(proto.graph.node)
    session = onnx_session(path)
    for n in (1, 37):
        x = _images(n, (1, 28, 28), seed=3) * 2
        (out,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            assert torch.equal(torch.from_numpy(out), int8_lenet(x))


def test_int8_resnet20_graph_matches_the_integer_model(int8_resnet20, tmp_path: Path) -> None:
    """Float stem (float64-accumulated on both sides), residual epilogues, downsampling shortcuts, float head."""
    path = tmp_path / "r20.onnx"
    report = export_integer_onnx(int8_resnet20, path, (3, 32, 32), example=_images(48, (3, 32, 32), seed=4),
                                 tolerance=1e-5)
    assert report is not None
    assert report["argmax_agreement"] == 1.0
    assert report["relative_error"] <= 1e-5
    proto = onnx.load(str(path))
    assert "MatMul" in _ops(proto) and "Conv" not in _ops(proto)  # the stem as float64 columns x weights


def test_the_float32_sums_are_exact_below_2_24_and_int32_gives_the_same_graph_output(int8_lenet, tmp_path) -> None:
    assert sad_accumulator((FLOAT32_EXACT_LIMIT - 1) // 255) == "float32"
    assert sad_accumulator(FLOAT32_EXACT_LIMIT // 255 + 1) == "int32"
    x = _images(8, (1, 28, 28), seed=5)
    outputs = []
    for accumulator in ("float32", "int32"):
        proto = build_integer_graph(int8_lenet, (1, 28, 28), accumulator=accumulator)
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {"input": x.numpy()})[0])
    assert (outputs[0] == outputs[1]).all()


@pytest.mark.parametrize("groups,stride,padding,dilation", [(1, (2, 1), (1, 2), (1, 2)), (3, (1, 2), (0, 1), (2, 1))])
def test_odd_geometry_adder_layer_against_the_int32_reference(tmp_path, groups, stride, padding, dilation) -> None:
    torch.manual_seed(0)
    channels, out_channels, kernel = 6, 9, (3, 2)
    layer = QuantizedAdder2d(channels, out_channels, kernel, stride, padding, dilation, groups, output="float32")
    layer.set_weight(torch.randint(0, 256, (out_channels, channels // groups, *kernel), dtype=torch.uint8), 37)
    layer.set_epilogue(torch.rand(out_channels) * 0.1 - 0.05, torch.randn(out_channels))
    quant = QuantizeInput()
    quant.set_qparams(type(quant.qparams)(0.02, 37))
    chain = QuantizedChain(nn.Sequential(quant, layer, ChannelsFirst())).eval()
    x = torch.randn(3, channels, 11, 7)
    proto = build_integer_graph(chain, (channels, 11, 7))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    out = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    with torch.no_grad():
        x_q = quant(x)
        expected = adder2d_u8_reference(x_q, layer.weight_q, stride, padding, dilation, zero_point=37,
                                        scale=layer.scale, bias=layer.bias, output="float32", groups=groups)
        assert torch.equal(expected.permute(0, 3, 1, 2).flatten(1), chain(x))  # the oracle agrees with the model
    assert torch.equal(out, expected.permute(0, 3, 1, 2).flatten(1))


def test_unsupported_integer_models_fail_in_one_line(tmp_path) -> None:
    model = calibrated(fv.create_model("resnet20", conv_type="adder"), (3, 32, 32))
    int8_stem = quantize(model, [_images(8, (3, 32, 32))], observer="minmax", stem="int8")
    path = tmp_path / "s.onnx"
    with pytest.raises(ExportError, match="int8 stem"):
        export_integer_onnx(int8_stem, path, (3, 32, 32))
    with pytest.raises(ExportError, match="opset >= 13"):
        export_integer_onnx(int8_stem, path, (3, 32, 32), opset=11)
    assert list(tmp_path.iterdir()) == []


def test_compare_with_onnxruntime_sees_a_wrong_graph(int8_lenet, tmp_path: Path) -> None:
    """The verification can fail: a graph of the model with one epilogue bias changed is caught."""
    path = tmp_path / "lenet.onnx"
    export_integer_onnx(int8_lenet, path, (1, 28, 28))
    layer = int8_lenet.steps[-2]
    original = layer.bias.clone()
    try:
        layer.bias.add_(1.0)
        broken = tmp_path / "broken.onnx"
        export_integer_onnx(int8_lenet, broken, (1, 28, 28))
    finally:
        layer.bias.copy_(original)
    x = _images(16, (1, 28, 28))
    assert compare_with_onnxruntime(path, int8_lenet, x)["relative_error"] == 0.0
    assert compare_with_onnxruntime(broken, int8_lenet, x)["relative_error"] > 1e-3


# ----------------------------------------------------------------------------------------------------- deploy


def test_deploy_exports_an_int8_model_and_reports_parameters_as_count_does(int8_lenet, tmp_path, capsys) -> None:
    from frugalvision.analysis.counting import count_ops
    from frugalvision.quant import save_quantized

    checkpoint = tmp_path / "lenet_int8.safetensors"
    save_quantized(int8_lenet, checkpoint)
    assert main(["deploy", "--checkpoint", str(checkpoint), "--onnx", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    params = count_ops(int8_lenet, (1, 28, 28))["params"]
    assert params > sum(p.numel() for p in int8_lenet.parameters())  # the uint8 weights are buffers
    assert f"integer model: nothing to fuse; {params:,} parameters" in out
    assert "max relative error 0.00e+00" in out and (tmp_path / "m.onnx").is_file()

    assert main(["deploy", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "f.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "integer model" in err
    assert not (tmp_path / "f.safetensors").exists()


def test_deploy_says_nothing_to_fuse_for_an_addernet_and_counts_what_fuses(tmp_path, capsys) -> None:
    adder = calibrated(fv.create_model("lenet5_bn", conv_type="adder"), (1, 28, 28))
    save_model(tmp_path / "adder.safetensors", adder)
    assert main(["deploy", "--checkpoint", str(tmp_path / "adder.safetensors"), "--onnx", str(tmp_path / "a.onnx")]) \
        == 0
    out = capsys.readouterr().out
    total = sum(p.numel() for p in adder.parameters())
    assert f"nothing to fuse (no BatchNorm or branch of this model folds): {total:,} parameters" in out
    assert "fused" not in out

    vanilla = calibrated(fv.create_model("vanillanet_5"), (3, 64, 64))
    save_model(tmp_path / "v.safetensors", vanilla)
    assert main(["deploy", "--checkpoint", str(tmp_path / "v.safetensors"), "--output",
                 str(tmp_path / "vd.safetensors"), "--input-size", "3", "64", "64"]) == 0
    out = capsys.readouterr().out
    fused_total = sum(p.numel() for p in fv.reparameterize_model(vanilla).parameters())
    assert fused_total != sum(p.numel() for p in vanilla.parameters())
    assert f"fused {sum(p.numel() for p in vanilla.parameters()):,} -> {fused_total:,} parameters" in out
