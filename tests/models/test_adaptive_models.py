"""Adaptive-kernel models: registry, shapes, parameter budgets, counting and a short training smoke test."""

from __future__ import annotations

import pytest
import torch

from frugalvision import count_ops, create_model, list_models
from frugalvision.layers import AdaptiveConv2d
from frugalvision.models.adaptive import adaptive_layers
from frugalvision.models.registry import model_train_defaults


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registered_with_the_shared_mnist_recipe():
    assert {"adaptive_lenet", "small_cnn", "resnet18_cifar"} <= set(list_models())
    mnist = {"epochs": 20, "lr": 0.1, "optimizer": "sgd", "weight_decay": 5e-4}
    assert model_train_defaults("adaptive_lenet") == model_train_defaults("small_cnn") == mnist  # twins, one recipe


def test_adaptive_lenet_budget_and_shapes():
    model = create_model("adaptive_lenet")
    layers = adaptive_layers(model)
    assert len(layers) == 1 and layers[0].weight.shape == (4, 1, 25, 25)
    params = n_params(model)
    assert 6_000 <= params <= 10_000  # the paper's ~6.5K (431K / 66); acceptance: <= 10K
    assert 431_080 / params > 50
    out = model(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10)


def test_small_cnn_is_parameter_matched():
    adaptive, cnn = n_params(create_model("adaptive_lenet")), n_params(create_model("small_cnn"))
    assert not adaptive_layers(create_model("small_cnn"))
    assert abs(cnn - adaptive) / adaptive < 0.05


def test_counting_sees_one_adaptive_op():
    counts = count_ops(create_model("adaptive_lenet"), (1, 28, 28))
    ops = [r["op"] for r in counts["layers"] if r["kind"] == "weight"]
    assert ops[0] == "adaptive_conv2d" and ops.count("adaptive_conv2d") == 1
    assert counts["layers"][0]["mul"] == 4 * 28 * 28 * 1 * 25 * 26


@pytest.mark.parametrize("stem_width", [64, 16])
def test_resnet18_cifar_adaptive_stem(stem_width):
    conv = create_model("resnet18_cifar")
    model = create_model("resnet18_cifar", stem_type="adaptive", stem_width=stem_width)
    stem = adaptive_layers(model)
    assert len(stem) == 1 and stem[0].weight.shape == (stem_width, 3, 9, 9)
    assert not adaptive_layers(conv)
    assert 11_000_000 < n_params(conv) < 11_300_000
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="stem_type"):
        create_model("resnet18_cifar", stem_type="adder")


@pytest.mark.slow
def test_adaptive_lenet_learns_a_batch():
    torch.manual_seed(0)
    model = create_model("adaptive_lenet")
    initial_q = model.features[0].weight.detach().clone()
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(10):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    adaptive = model.features[0]
    assert isinstance(adaptive, AdaptiveConv2d)
    assert not torch.equal(adaptive.weight, initial_q)  # the adaptive layer's generator Q is trained too
