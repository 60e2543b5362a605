"""Integer models save as one safetensors file and frugalvision.load_model rebuilds them exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import frugalvision as fv
from frugalvision.errors import CheckpointError
from frugalvision.quant import save_quantized

from .utils import batch_statistics


def _quantized(name: str, conv_type: str = "adder", adderized: bool = False, **options):
    torch.manual_seed(0)
    model = fv.create_model(name, conv_type=conv_type)
    if adderized:
        model = fv.adderize(model)
    shape = model.default_input_size
    images = torch.randn(8, *shape, generator=torch.Generator().manual_seed(1))
    batch_statistics(model, images)
    return fv.quantize(model, [images], observer="minmax", **options), images


CASES = {
    "lenet5_bn": dict(name="lenet5_bn"),
    "resnet20": dict(name="resnet20"),  # fp32 stem
    "resnet20_int8_stem": dict(name="resnet20", stem="int8"),
    "adderized_lenet5_bn": dict(name="lenet5_bn", conv_type="conv", adderized=True),  # generic layout
    "adderized_resnet20": dict(name="resnet20", conv_type="conv", adderized=True),  # adder layers restored
}


@pytest.mark.parametrize("case", list(CASES))
def test_save_load_round_trip_gives_identical_outputs(case, tmp_path):
    qmodel, images = _quantized(**CASES[case])
    path = tmp_path / "q.safetensors"
    save_quantized(qmodel, path)
    loaded = fv.load_model(path)
    with torch.no_grad():
        assert torch.equal(loaded(images), qmodel(images))
    assert type(loaded) is type(qmodel) and not loaded.training
    assert loaded.frugalvision_cfg == json.loads(json.dumps(qmodel.frugalvision_cfg))


def test_file_holds_uint8_weights_float32_multipliers_and_the_config(tmp_path):
    qmodel, _ = _quantized("resnet20")
    path = tmp_path / "q.safetensors"
    save_quantized(qmodel, path)
    tensors = load_file(str(path))
    assert tensors["layer1.0.conv1.weight_q"].dtype == torch.uint8
    assert tensors["layer1.0.conv1.scale"].dtype == torch.float32
    assert not any("packed" in key for key in tensors)  # the kernel layout is rebuilt on load
    with safe_open(str(path), framework="pt") as f:
        config = json.loads(f.metadata()["frugalvision"])
    assert config["model"] == "resnet20" and config["quantized"]["layout"] == "resnet"


def test_mismatched_or_unknown_files_fail_with_one_line(tmp_path):
    qmodel, _ = _quantized("lenet5_bn")
    path = tmp_path / "q.safetensors"
    save_quantized(qmodel, path)
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        config = json.loads(f.metadata()["frugalvision"])
    save_file({**tensors, "steps.1.weight_q": tensors["steps.1.weight_q"].to(torch.int16)},
              str(tmp_path / "int16.safetensors"), {"frugalvision": json.dumps(config)})
    del tensors["steps.1.weight_q"]
    save_file(tensors, str(tmp_path / "missing.safetensors"), {"frugalvision": json.dumps(config)})
    config["quantized"]["format"] = 99
    save_file(load_file(str(path)), str(tmp_path / "future.safetensors"), {"frugalvision": json.dumps(config)})
    for name, match in (("missing", "does not fit"), ("future", "format 99"),
                        ("int16", r"steps\.1\.weight_q has torch\.int16 .*, model expects torch\.uint8")):
        with pytest.raises(CheckpointError, match=match) as info:
            fv.load_model(tmp_path / f"{name}.safetensors")
        assert "\n" not in str(info.value)


def test_models_not_built_by_create_model_cannot_be_saved(tmp_path):
    from frugalvision.models.resnet import BasicBlock, ResNet

    model = batch_statistics(ResNet(BasicBlock, (1, 1, 1), (4, 8, 8)), torch.randn(4, 3, 16, 16))
    qmodel = fv.quantize(model, [torch.randn(4, 3, 16, 16)], observer="minmax")
    with pytest.raises(CheckpointError, match="create_model"):
        save_quantized(qmodel, tmp_path / "q.safetensors")
    with pytest.raises(CheckpointError, match=r"not a model returned by frugalvision\.quantize"):
        save_quantized(model, tmp_path / "q.safetensors")


def test_load_model_of_a_fresh_interpreter_finds_the_integer_loader(tmp_path, repo_root):
    """The models package never imports quant: the integer loader is registered by importing frugalvision.quant,
    which any ``frugalvision.*`` import does through the package ``__init__``. A new interpreter that imports only
    ``frugalvision.models.factory`` must still load an integer file as an integer model."""
    qmodel, images = _quantized("lenet5_bn")
    save_quantized(qmodel, tmp_path / "q.safetensors")
    torch.save(images, tmp_path / "images.pt")
    with torch.no_grad():
        torch.save(qmodel(images), tmp_path / "expected.pt")
    script = (
        "import sys, torch\n"
        "from frugalvision.models.factory import load_model\n"
        "model = load_model(sys.argv[1] + '/q.safetensors')\n"
        "images = torch.load(sys.argv[1] + '/images.pt', weights_only=True)\n"
        "expected = torch.load(sys.argv[1] + '/expected.pt', weights_only=True)\n"
        "assert type(model).__module__.startswith('frugalvision.quant'), type(model)\n"
        "with torch.no_grad():\n"
        "    assert torch.equal(model(images), expected)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src")}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
