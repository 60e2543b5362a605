"""Tests for frugalvision.export.onnx: AdderNet layers exported in standard ONNX operators, checked with onnxruntime."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

import frugalvision as fv
from frugalvision.errors import FrugalVisionError
from frugalvision.export import ExportError, export_onnx, relative_error
from frugalvision.layers import Adder2d
from frugalvision.ops import adder2d
from frugalvision.ops.reference import adder2d_forward

from .utils import calibrated

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _run(path: Path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x.numpy()})
    return torch.from_numpy(out)


def _op_types(path: Path) -> Counter:
    graph = onnx.load(str(path)).graph
    assert all(node.domain in ("", "ai.onnx") for node in graph.node)
    return Counter(node.op_type for node in graph.node)




class FunctionalAdder(nn.Module):
    """A layer calling the functional op directly (not through Adder2d)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(6, 3, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adder2d(x, self.weight, None, stride=2, padding=1).relu()


ADDER_LAYERS = {
    "plain": dict(in_channels=3, out_channels=5, kernel_size=3),
    "padded_bias": dict(in_channels=3, out_channels=5, kernel_size=3, padding=1, bias=True),
    "strided_rect": dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)),
    "dilated": dict(in_channels=2, out_channels=3, kernel_size=3, padding=2, dilation=(2, 3)),
    "grouped": dict(in_channels=8, out_channels=12, kernel_size=(3, 2), stride=(2, 1), padding=(2, 0),
                    dilation=(2, 1), groups=4, bias=True),
    "depthwise": dict(in_channels=6, out_channels=6, kernel_size=5, stride=2, padding=2, groups=6),
    "pointwise": dict(in_channels=7, out_channels=3, kernel_size=1),
}


@pytest.mark.parametrize("name", list(ADDER_LAYERS))
def test_adder_layer_matches_float64_reference(tmp_path: Path, name: str) -> None:
    torch.manual_seed(1)
    layer = Adder2d(**ADDER_LAYERS[name]).eval()
    example = torch.randn(1, layer.in_channels, 11, 9)
    path = tmp_path / f"{name}.onnx"
    error = export_onnx(layer, path, example)
    assert error is not None and error <= 1e-5
    ops = _op_types(path)
    taps = layer.kernel_size[0] * layer.kernel_size[1]
    for op in ("Slice", "Sub", "Abs", "ReduceSum"):  # one of each per kernel tap
        assert ops[op] == taps, op
    assert ops["Add"] == taps - 1 + (layer.bias is not None)
    assert ops["Pad"] == (1 if layer.padding != (0, 0) else 0)
    x = torch.randn(3, layer.in_channels, 11, 9)  # another batch size: the batch axis is dynamic
    expected = adder2d_forward(x.double(), layer.weight.double(), layer.stride, layer.padding, layer.dilation,
                               layer.groups)
    if layer.bias is not None:
        expected = expected + layer.bias.double().view(1, -1, 1, 1)
    assert relative_error(_run(path, x).double(), expected) <= 1e-6


def test_functional_adder_call_exports(tmp_path: Path) -> None:
    model = FunctionalAdder().eval()
    error = export_onnx(model, tmp_path / "f.onnx", torch.randn(2, 3, 8, 8))
    assert error is not None and error <= 1e-5
    assert _op_types(tmp_path / "f.onnx")["ReduceSum"] == 9


@pytest.mark.parametrize(("name", "input_size"), [("lenet5_bn", (1, 28, 28)), ("resnet20", (3, 32, 32))])
def test_adder_models_export_and_match(tmp_path: Path, name: str, input_size: tuple[int, ...]) -> None:
    model = calibrated(fv.create_model(name, conv_type="adder"), input_size)
    path = tmp_path / f"{name}.onnx"
    error = export_onnx(model, path, torch.randn(2, *input_size), tolerance=1e-4)
    assert error is not None and error <= 1e-4
    ops = _op_types(path)
    adders = [m for m in model.modules() if isinstance(m, Adder2d)]
    assert ops["Neg"] == len(adders)  # one decomposed adder per layer
    assert ops["ReduceSum"] == sum(m.kernel_size[0] * m.kernel_size[1] for m in adders)
    x = torch.randn(1, *input_size)  # batch 1
    with torch.no_grad():
        assert relative_error(_run(path, x), model(x)) <= 1e-4


def test_largest_intermediate_is_one_tap(tmp_path: Path) -> None:
    """The memory argument: no tensor of the graph is larger than N * O * C/G * Ho * Wo of one layer."""
    model = calibrated(fv.create_model("resnet20", conv_type="adder"), (3, 32, 32))
    path = tmp_path / "r.onnx"
    export_onnx(model, path, torch.randn(1, 3, 32, 32))
    inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    largest = 0
    for value in inferred.graph.value_info:
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in value.type.tensor_type.shape.dim]
        largest = max(largest, torch.Size(dims).numel())
    # ResNet-20's widest tap: 16 output x 16 input channels x 32 x 32 positions at batch 1 (stage 1).
    one_tap = 16 * 16 * 32 * 32
    assert largest == one_tap
    im2col_broadcast = one_tap * 9  # what materialising all taps at once would need
    assert largest * 9 == im2col_broadcast


def test_vanillanet_fused_export(tmp_path: Path) -> None:
    model = fv.reparameterize_model(calibrated(fv.create_model("vanillanet_5"), (3, 64, 64)))
    error = export_onnx(model, tmp_path / "v.onnx", torch.randn(1, 3, 64, 64))
    assert error is not None and error <= 1e-4
    assert "ReduceSum" not in _op_types(tmp_path / "v.onnx")


def test_cnn_twin_export(tmp_path: Path) -> None:
    model = calibrated(fv.create_model("resnet20", conv_type="conv"), (3, 32, 32))
    error = export_onnx(model, tmp_path / "c.onnx", torch.randn(2, 3, 32, 32))
    assert error is not None and error <= 1e-4


# ------------------------------------------------------------------------------------------------------- failures


def _assert_one_line(err: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(err.value)
    assert "\n" not in message and len(message) <= 400, message
    assert isinstance(err.value, FrugalVisionError) and isinstance(err.value, ValueError)
    for fragment in fragments:
        assert fragment in message, message


def test_an_unexpected_exception_in_the_exporter_stays_a_bug_and_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    """Only the exporter's own errors (a layer without an ONNX form) are the user's: anything else is not reworded."""

    def broken_export(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        export_onnx(fv.create_model("lenet5_bn").eval(), tmp_path / "a.onnx", torch.randn(1, 1, 28, 28))
    assert list(tmp_path.iterdir()) == []


def test_unsupported_layer_is_one_line_and_writes_nothing(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    model = fv.create_model("adaptive_lenet").eval()  # its custom op has no ONNX form
    path = tmp_path / "out" / "a.onnx"
    with pytest.raises(ExportError) as err:
        export_onnx(model, path, torch.randn(1, 1, 28, 28))
    _assert_one_line(err, "AdaptiveLeNet", "adaptive_conv2d")
    assert list(path.parent.iterdir()) == []
    out, _ = capfd.readouterr()
    assert out == ""  # torch's exporter would print its whole graph to stdout


def test_bad_arguments(tmp_path: Path) -> None:
    layer = Adder2d(1, 2, 3).eval()
    with pytest.raises(ExportError) as err:
        export_onnx(layer, tmp_path / "x.onnx", torch.randn(1, 1, 8, 8), opset=9)
    _assert_one_line(err, "opset 9", "11..20")
    with pytest.raises(ExportError) as err:
        export_onnx(layer, tmp_path / "x.onnx", torch.randn(1, 8, 8))
    _assert_one_line(err, "4-D", "(1, 8, 8)")
    assert not list(tmp_path.iterdir())


def test_tolerance_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from frugalvision.export import onnx as export_module

    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous export")
    monkeypatch.setattr(export_module, "_verify", lambda *args: 0.5)
    with pytest.raises(ExportError) as err:
        export_onnx(Adder2d(1, 2, 3).eval(), path, torch.randn(1, 1, 8, 8), tolerance=1e-4)
    _assert_one_line(err, "5.00e-01")
    assert path.read_bytes() == b"previous export" and sorted(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("opset", [11, 17, 18, 20])
def test_opsets(tmp_path: Path, opset: int) -> None:
    layer = Adder2d(2, 3, 3, padding=1, groups=1).eval()
    error = export_onnx(layer, tmp_path / "o.onnx", torch.randn(1, 2, 6, 6), opset=opset)
    assert error is not None and error <= 1e-5
    assert onnx.load(str(tmp_path / "o.onnx")).opset_import[0].version == opset


# ------------------------------------------------------------------------------------- official checkpoint, real data

@pytest.mark.slow
def test_official_resnet20_on_real_images(tmp_path: Path, shared_data) -> None:
    """The released ResNet-20 AdderNet: onnxruntime and PyTorch agree on real CIFAR-10 images."""
    from frugalvision.data import build_dataset, dataset_info

    checkpoint = shared_data("official/ResNet20-AdderNet.pth")
    sample = shared_data("cifar10_jpeg_10k")
    model = fv.create_model("resnet20", conv_type="adder", checkpoint_path=checkpoint).eval()
    val = build_dataset("folder", "val", sample, data_config=dataset_info("cifar10").data_config())
    images = torch.stack([val[i][0] for i in range(0, len(val), 25)])  # 40 images, 4 per class
    path = tmp_path / "official.onnx"
    error = export_onnx(model, path, images[:2], tolerance=1e-4)
    assert error is not None and error <= 1e-4
    onnx_logits = _run(path, images)
    with torch.no_grad():
        torch_logits = model(images)
    assert relative_error(onnx_logits, torch_logits) <= 1e-4
    assert torch.equal(onnx_logits.argmax(1), torch_logits.argmax(1))
