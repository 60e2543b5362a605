"""``frugalvision quantize`` and the commands that read its integer model: eval, count, predict, bench model."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
import torch

import frugalvision as fv
from frugalvision.cli.main import main
from frugalvision.models.checkpoint import save_model
from frugalvision.quant import weight_count


@pytest.fixture(scope="module")
def int8_lenet(tmp_path_factory):
    """A LeNet-5-BN AdderNet (random weights, BN statistics of real digits) quantised through the command line:
    (float checkpoint, integer model file, the metrics ``quantize --json`` printed)."""
    from frugalvision.data import build_dataset

    folder = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    model = fv.create_model("lenet5_bn")
    digits = torch.stack([build_dataset("mnist5k", "train")[i][0] for i in range(64)])
    model.train()
    with torch.no_grad():
        model(digits)  # BatchNorm statistics of real inputs, so that the layers see realistic ranges
    checkpoint = folder / "lenet.safetensors"
    save_model(checkpoint, model.eval())
    output = folder / "lenet_int8.safetensors"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["quantize", "--checkpoint", str(checkpoint), "--calibration", "mnist5k", "--calibration-images",
                     "32", "--observer", "minmax", "--output", str(output), "--json"]) == 0
    return checkpoint, output, json.loads(printed.getvalue())


def test_quantize_writes_a_loadable_model_and_reports_both_accuracies(int8_lenet, capsys):
    checkpoint, output, metrics = int8_lenet
    assert metrics["num_samples"] == 500 and metrics["calibration_images"] == 32 and metrics["observer"] == "minmax"
    qmodel = fv.load_model(output)
    assert qmodel.frugalvision_cfg["quantized"]["layout"] == "chain"
    assert qmodel.data_config == fv.load_model(checkpoint).data_config  # preprocess as the source model
    # eval of the written file gives the int8 accuracy quantize reported
    assert main(["eval", "--checkpoint", str(output), "--dataset", "mnist5k", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(metrics["int8_top1"])


def test_count_prices_integer_adds_as_int8_and_requantisation_as_fp32(int8_lenet, capsys):
    _, output, _ = int8_lenet
    assert main(["count", "--checkpoint", str(output), "--json"]) == 0
    costs = json.loads(capsys.readouterr().out)
    # LeNet-5-BN: 416,520 |x - w| terms (two additions each), every one in the integer kernels
    assert costs["by_precision"]["int8"] == {"mul": 0, "add": 2 * 416_520}
    fp32 = costs["by_precision"]["fp32"]  # the input's quantisation and each layer's requantisation, like BatchNorm
    assert fp32["mul"] == 1 * 28 * 28 + 6_518 and fp32["add"] == fp32["mul"]
    assert costs["params"] == weight_count(fv.load_model(output)) == 61_942 - 2 * 236  # BN affine params folded
    expected_pj = 2 * 416_520 * 0.03 + fp32["mul"] * 3.7 + fp32["add"] * 0.9
    assert costs["energy_pj"] == pytest.approx(expected_pj)


def test_bench_model_and_predict_take_the_integer_model(int8_lenet, tmp_path, capsys):
    from PIL import Image

    _, output, _ = int8_lenet
    assert main(["bench", "model", "--checkpoint", str(output), "--batch-sizes", "2", "--iters", "2", "--warmup", "1",
                 "--no-resnet", "--output", str(tmp_path / "b.csv"), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert result["variant"] == "quantized" and result["input_size"] == "1x28x28" and result["median_ms"] > 0
    image = tmp_path / "seven.png"
    Image.fromarray((torch.rand(28, 28) * 255).to(torch.uint8).numpy()).save(image)
    assert main(["predict", "--checkpoint", str(output), str(image), "--top-k", "2", "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)["predictions"]
    top_k = prediction["top_k"]
    assert len(top_k) == 2 and top_k[0]["index"] != top_k[1]["index"]
    assert [entry["class"] for entry in top_k] == [str(entry["index"]) for entry in top_k]  # MNIST classes: digits


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--output", "q.pt"], r"--output must be a \.safetensors file"),
        (["--output", "q.safetensors", "--calibration-images", "0"], "--calibration-images must be >= 1"),
    ],
)
def test_quantize_options_are_checked(int8_lenet, argv, message, tmp_path, capsys):
    checkpoint, _, _ = int8_lenet
    assert main(["quantize", "--checkpoint", str(checkpoint), "--calibration", "mnist5k",
                 *[str(tmp_path / a) if a.startswith("q.") else a for a in argv]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and re.search(message, err), err


def test_a_cnn_twin_is_refused_with_one_line(tmp_path, capsys):
    checkpoint = tmp_path / "cnn.safetensors"
    save_model(checkpoint, fv.create_model("lenet5_bn", conv_type="conv"))
    assert main(["quantize", "--checkpoint", str(checkpoint), "--calibration", "mnist5k", "--output",
                 str(tmp_path / "q.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "PyTorch" in err, err
    assert not (tmp_path / "q.safetensors").exists()
