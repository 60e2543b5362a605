"""Every AdderNet paper recipe (recipes/addernet_*.yaml) loads and trains one step, on fake data at CIFAR scale.

The recipes hold the official hyper-parameters (AdderNet, Chen et al., CVPR 2020; huawei-noah/AdderNet main.py and
issues #17, #50); here only the data, the epoch count and the batch size are swapped for a tiny fake run.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO_ROOT
from frugalvision import create_model, load_model
from frugalvision.cli.main import build_parser
from frugalvision.cli.train import build_configs
from frugalvision.data import build_dataset
from frugalvision.optim import AdaptiveLR, adder_weights
from frugalvision.run_dir import RunDir
from frugalvision.train.config import TrainConfig, load_recipe
from frugalvision.train.engine import train
from frugalvision.train.optimization import build_optimizer, lr_factor

RECIPES = sorted((REPO_ROOT / "recipes").glob("addernet_*.yaml"))
PAPER_ROWS = {
    ("lenet5_bn", "mnist"), ("vgg_small", "cifar10"), ("vgg_small", "cifar100"), ("resnet20", "cifar10"),
    ("resnet20", "cifar100"), ("resnet32", "cifar10"), ("resnet32", "cifar100"), ("resnet18", "imagenet"),
    ("resnet50", "imagenet"),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _args(config: Path) -> argparse.Namespace:
    """What ``frugalvision train --config RECIPE`` parses (the real parser, so new options get their defaults)."""
    return build_parser().parse_args(["train", "--config", str(config)])


def test_every_paper_row_has_three_recipes() -> None:
    names = {p.stem for p in RECIPES}
    expected = {f"addernet_{m}_{d}_{c}" for m, d in PAPER_ROWS for c in ("adder", "conv", "binary")}
    assert names == expected


def _config(recipe: Path) -> TrainConfig:
    values = load_recipe(recipe)
    (config,) = build_configs(_args(recipe))  # the command line's path: model defaults < recipe
    model, dataset, conv_type = recipe.stem.removeprefix("addernet_").rsplit("_", 2)
    assert (config.model, config.dataset, config.model_kwargs["conv_type"]) == (model, dataset, conv_type)
    assert config.optimizer in ("sgd", "nesterov") and config.momentum == 0.9 and config.scheduler == "cosine"
    assert config.weight_decay == (1e-4 if dataset == "imagenet" else 5e-4)
    assert config.epochs == {"mnist": 50, "imagenet": 150}.get(dataset, 400) and config.lr == 0.1
    assert config.batch_size == values["batch_size"] == 256
    if conv_type == "adder":
        assert (config.alr, config.alr_eta) == ("alr", 0.2)
    return config


def _input_size(config: TrainConfig) -> list[int]:
    return [1, 28, 28] if config.dataset == "mnist" else [3, 32, 32]  # ImageNet models at CIFAR scale


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_builds_and_steps(recipe: Path) -> None:
    """The recipe's model, optimizer, schedule and ALR take one step on a fake batch of 2."""
    config = _config(recipe)
    torch.manual_seed(0)
    in_chans, size = _input_size(config)[0], _input_size(config)[1]
    model = create_model(config.model, num_classes=10, in_chans=in_chans, **config.model_kwargs)
    alr = AdaptiveLR(adder_weights(model), mode=config.alr, eta=config.alr_eta)
    optimizer = build_optimizer(config, model, alr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, steps_per_epoch=10))
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(torch.randn(2, in_chans, size, size)), torch.tensor([0, 1]))
    loss.backward()
    raw_norms = [w.grad.norm().item() for w in adder_weights(model)]
    alr.apply()
    optimizer.step()
    scheduler.step()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    # ALR (Eq. 13) gave every adder gradient the norm eta * sqrt(numel). A batch of 2 through BatchNorm on 1 x 1
    # maps leaves some gradients numerically zero (norm < 1e-12, which ALR leaves small): those are not checked.
    healthy = [(w, raw) for w, raw in zip(adder_weights(model), raw_norms) if raw > 1e-10]
    assert bool(healthy) == (config.model_kwargs["conv_type"] == "adder")
    for w, _ in healthy:
        assert w.grad.norm().item() == pytest.approx(config.alr_eta * w.numel() ** 0.5, rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["addernet_resnet20_cifar10_adder", "addernet_lenet5_bn_mnist_adder"])
def test_recipe_runs_through_the_engine(name: str, tmp_path: Path) -> None:
    """A one-epoch engine run (train, BN recalibration, eval, checkpoint) with the recipe on fake data: the saved
    model is the one whose validation loss and accuracy the run reports (recomputed here on the same images)."""
    config = _config(RECIPES[[p.stem for p in RECIPES].index(name)])
    tiny = config.replace(dataset="fake", fake_size=4, fake_input_size=_input_size(config), epochs=1, batch_size=2,
                          eval_batch_size=4, bn_recalibration_batches=1, num_workers=0, output=str(tmp_path),
                          device="cpu")
    result = train(tiny, log=None)
    assert len(result.history) == 1 and math.isfinite(result.history[0]["train_loss"])
    saved = load_model(RunDir(result.run_dir).model_file).eval()
    val = build_dataset("fake", tiny.val_split, fake_size=4, fake_input_size=tuple(tiny.fake_input_size))
    images, labels = torch.stack([val[i][0] for i in range(4)]), torch.tensor([val[i][1] for i in range(4)])
    with torch.no_grad():
        logits = saved(images)
    assert F.cross_entropy(logits, labels).item() == pytest.approx(result.metrics["val_loss"], rel=1e-5)
    assert 100 * (logits.argmax(1) == labels).float().mean().item() == pytest.approx(result.metrics["val_top1"])
