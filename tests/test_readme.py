"""The README's Python tour runs unchanged (against stand-ins for the files it names), and its commands exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import frugalvision as fv
from frugalvision.cli.main import build_parser
from frugalvision.models import save_model
from frugalvision.models.resnet import official_state_dict


def _readme(repo_root: Path) -> str:
    return (repo_root / "README.md").read_text()


def _block(text: str, heading: str, language: str) -> str:
    section = text[text.index(heading):]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} block after {heading}"
    return match.group(1)


@pytest.mark.slow
def test_the_python_tour_runs_unchanged(repo_root, tmp_path, monkeypatch):
    """Stand-ins: an official-layout ResNet-20 AdderNet file, an official VanillaNet-5 EMA checkpoint, a run folder,
    a calibration loader and an image, all where the tour names them (the current folder)."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    torch.save(official_state_dict(fv.create_model("resnet20", conv_type="adder")), "ResNet20-AdderNet.pth")
    vanilla = {k: v for k, v in fv.create_model("vanillanet_5").state_dict().items() if k != "_extra_state"}
    torch.save({"model": vanilla, "model_ema": vanilla}, "vanillanet_5.pth")
    save_model(Path("runs/lenet5_bn_adder/model.safetensors"), fv.create_model("lenet5_bn", conv_type="adder"))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save("cat.jpg")
    calibration_loader = [torch.randn(16, 3, 32, 32) for _ in range(2)]
    namespace = {"calibration_loader": calibration_loader}
    exec(compile(_block(_readme(repo_root), "## A short tour", "python"), "README.md", "exec"), namespace)
    assert namespace["deployed"].deploy is True
    assert namespace["int8"].frugalvision_cfg["quantized"]["layout"] == "resnet"
    (prediction,) = namespace["fv"].predict(namespace["official"], ["cat.jpg"], top_k=3)
    assert len(prediction.top_k) == 3 and prediction.top_k[0][0] in namespace["official"].data_config.class_names


def test_every_command_of_the_tour_parses(repo_root):
    parser = build_parser()
    lines = _block(_readme(repo_root), "## A short tour", "bash").splitlines()
    commands = [c for c in (line.split("#")[0].strip() for line in lines) if c.startswith("frugalvision ")]
    assert len(commands) >= 15
    for command in commands:
        parser.parse_args(shlex.split(command)[1:])  # argparse exits (SystemExit) on an unknown option or command
