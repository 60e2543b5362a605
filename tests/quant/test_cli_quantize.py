"""``frugalvision quantize`` (module frugalvision.cli.quantize; wired into the command line by cli/main.py)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

import frugalvision as fv
from frugalvision.cli import quantize as quantize_command
from frugalvision.errors import ConfigError
from frugalvision.models.checkpoint import save_model


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    quantize_command.add_parser(parser.add_subparsers())
    return quantize_command.run(parser.parse_args(["quantize", *argv]))


def test_quantize_command_writes_a_loadable_model_and_reports_both_accuracies(tmp_path, capsys):
    torch.manual_seed(0)
    checkpoint = tmp_path / "lenet.safetensors"
    save_model(checkpoint, fv.create_model("lenet5_bn"))
    output = tmp_path / "lenet_int8.safetensors"
    assert _run("--checkpoint", str(checkpoint), "--calibration", "mnist5k", "--calibration-images", "32",
                "--observer", "minmax", "--output", str(output), "--json") == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_samples"] == 500 and metrics["calibration_images"] == 32 and metrics["observer"] == "minmax"
    assert {"fp32_top1", "int8_top1", "agreement", "logit_rel_error"} <= set(metrics)
    qmodel = fv.load_model(output)
    assert qmodel.frugalvision_cfg["quantized"]["layout"] == "chain"
    assert qmodel.data_config is not None  # eval / predict preprocess as the source model


def test_quantize_command_rejects_a_non_safetensors_output(tmp_path):
    with pytest.raises(ConfigError, match=r"--output must be a \.safetensors file"):
        _run("--checkpoint", str(tmp_path), "--calibration", "mnist5k", "--output", str(tmp_path / "q.pt"))
