"""Configuration is validated at construction: each bad field gives one ConfigError naming it, before any data is
read (also through the command line, where a bad recipe exits with code 2 and one line)."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import REPO_ROOT
from frugalvision.cli.main import main
from frugalvision.errors import ConfigError
from frugalvision.train.config import DeepTrainingConfig, TrainConfig, load_recipe
from frugalvision.train.deep_training import DeepTraining

RECIPES = REPO_ROOT / "recipes"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amp": "fp8"}, r"^amp must be one of none, bf16, fp16; got 'fp8'$"),
        ({"optimizer": "sgdd"}, r"^optimizer must be one of sgd, nesterov, adamw, lamb; got 'sgdd'$"),
        ({"lr": -0.1}, r"^lr must be > 0, got -0\.1$"),
        ({"loss": "mse"}, r"^loss must be one of ce, bce; got 'mse'$"),
        ({"scheduler": "step"}, r"^scheduler must be one of cosine, constant; got 'step'$"),
        ({"alr": "adaptive"}, r"^alr must be one of alr, official, ilr, none; got 'adaptive'$"),
        ({"epochs": 0}, r"^epochs must be >= 1, got 0$"),
        ({"epochs": "10"}, r"^epochs must be an integer, got '10'$"),
        ({"momentum": 1.5}, r"^momentum must be < 1, got 1\.5$"),
        ({"model": "resnet21"}, r"^unknown model 'resnet21'; did you mean"),
        ({"dataset": "svhn"}, r"^dataset must be one of mnist5k, .*; got 'svhn'$"),
        ({"model_kwargs": {"conv_type": "shift"}}, r"^model_kwargs\.conv_type must be one of"),
        ({"min_lr": 0.5, "lr": 0.1}, r"^min_lr \(0\.5\) must not exceed lr \(0\.1\)$"),
        ({"warmup_epochs": 20, "epochs": 20}, r"^warmup_epochs \(20\) must be shorter than epochs \(20\)$"),
        ({"deep_training": {"decay_epoch": 5}}, r"^deep_training: unknown key\(s\) decay_epoch"),
        ({"deep_training": {"decay_epochs": 5, "schedule": "step"}}, r"^deep_training\.schedule must be one of"),
        ({"layer_decay": {"rate": 0.8}, "alr": "ilr"}, r"^layer_decay and alr=ilr"),
        ({"randaugment": "rand-m9", "dataset": "mnist5k"}, r"^randaugment / reprob are ImageNet-style"),
        ({"device": "gpu"}, r"^device must be auto, cpu, cuda or cuda:N, got 'gpu'$"),
        ({"run_name": "a/b"}, r"^run_name must be a plain folder name"),
    ],
)
def test_each_bad_field_raises_one_error_naming_it(changes, message) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the combination fp16 without CUDA")
def test_fp16_without_cuda_is_refused_at_construction() -> None:
    with pytest.raises(ConfigError, match="amp=fp16 needs a CUDA device"):
        TrainConfig(amp="fp16")
    assert TrainConfig(amp="bf16").amp == "bf16"


def test_unknown_option_names_the_closest_valid_one() -> None:
    with pytest.raises(ConfigError, match=r"unknown training option\(s\): epoch \(did you mean epochs\?\)$"):
        TrainConfig.from_dict({"epoch": 3})


def test_deep_training_goes_through_one_validating_constructor() -> None:
    assert DeepTrainingConfig.from_dict({"decay_epochs": 3}).to_dict() == {"decay_epochs": 3, "schedule": "linear"}
    with pytest.raises(ConfigError, match="deep_training needs decay_epochs"):
        DeepTraining.from_config({"schedule": "linear"})
    with pytest.raises(ConfigError, match=r"deep_training\.decay_epochs must be >= 0, got -1"):
        DeepTraining(-1)
    assert TrainConfig(deep_training={"decay_epochs": 4}).deep_training == {"decay_epochs": 4, "schedule": "linear"}


def test_every_shipped_recipe_is_a_valid_config() -> None:
    paths = sorted(RECIPES.glob("*.yaml"))
    assert len(paths) >= 30
    for path in paths:
        config = TrainConfig.from_dict(load_recipe(path))
        assert config.model == load_recipe(path)["model"]


BAD_RECIPES = {
    "not_yaml.yaml": ("epochs: [1, 2\n", r"is not valid YAML"),
    "not_mapping.yaml": ("- epochs\n- 3\n", r"must hold a mapping of options, got list"),
    "unknown_key.yaml": ("epochs: 2\nlearning_rate: 0.1\n", r"unknown training option\(s\): learning_rate"),
    "bad_section_key.yaml": ("optimizer: {name: sgd, betas: [0.9, 0.99]}\n", r"unknown option optimizer\.betas"),
    "bad_optimizer.yaml": ("optimizer: {name: sgdd}\n", r"optimizer must be one of"),
    "negative_lr.yaml": ("optimizer: {name: sgd, lr: -1}\n", r"lr must be > 0, got -1"),
    "bad_amp.yaml": ("amp: fp8\n", r"amp must be one of none, bf16, fp16; got 'fp8'"),
    "bad_deep_training.yaml": ("model: vanillanet_test\ndeep_training: {decay_epoch: 3}\n",
                               r"deep_training: unknown key\(s\) decay_epoch"),
    "bad_model.yaml": ("model: resnet21\n", r"unknown model 'resnet21'"),
    "bad_epochs.yaml": ("epochs: -3\n", r"epochs must be >= 1, got -3"),
    "bad_conv_type.yaml": ("model: resnet20\nmodel_kwargs: {conv_type: shift}\n", r"conv_type must be one of"),
    "bad_batch_type.yaml": ("batch_size: 12.5\n", r"batch_size must be an integer, got 12\.5"),
}


@pytest.mark.parametrize("name", sorted(BAD_RECIPES))
def test_bad_recipe_exits_2_with_one_line_before_reading_data(name, tmp_path, capsys, monkeypatch) -> None:
    import frugalvision.train.builders as builders

    def no_data(*args, **kwargs):
        raise AssertionError("data was read before the configuration was validated")

    monkeypatch.setattr(builders, "build_data", no_data)
    text, message = BAD_RECIPES[name]
    recipe = tmp_path / name
    data = "" if name.startswith("not_") else "dataset: mnist\ndata_dir: /nonexistent/mnist\n"  # never read
    recipe.write_text(text + data)
    assert main(["train", "--config", str(recipe), "--output", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"frugalvision train: error: config file {recipe}"), err
    assert re.search(message, err), err
    assert not (tmp_path / "runs").exists()  # nothing written
