"""Operation counting by dispatch, cross-checked against per-layer formulas."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from frugalvision import count_ops, create_model
from frugalvision.layers import Adder2d, BinaryConv2d

# LeNet-5-BN on 28x28 digits (first layer padding 2): (C_out, C_in*k*k, H_out*W_out) of each weight layer
LENET_LAYERS = [(6, 25, 28 * 28), (16, 6 * 25, 10 * 10), (120, 16 * 25, 1), (84, 120, 1), (10, 84, 1)]
LENET_MACS = sum(o * k * p for o, k, p in LENET_LAYERS)  # 416,520
LENET_BN_ELEMENTS = 6 * 28 * 28 + 16 * 10 * 10 + 120 + 84 + 10


def test_lenet_counts_match_formulas():
    assert LENET_MACS == 416_520
    conv = count_ops(create_model("lenet5_bn", conv_type="conv"), (1, 28, 28))
    assert conv["mul"] == LENET_MACS + LENET_BN_ELEMENTS
    assert conv["add"] == LENET_MACS + LENET_BN_ELEMENTS
    adder = count_ops(create_model("lenet5_bn", conv_type="adder"), (1, 28, 28))
    assert adder["mul"] == LENET_BN_ELEMENTS
    assert adder["add"] == 2 * LENET_MACS + LENET_BN_ELEMENTS
    assert adder["latency_cycles"] == 4 * adder["mul"] + 2 * adder["add"]
    assert adder["energy_pj"] == pytest.approx(3.7 * adder["mul"] + 0.9 * adder["add"])
    # the paper's latency estimate: AdderNet LeNet-5 ~1.7M cycles vs CNN ~2.6M
    assert adder["latency_cycles"] == pytest.approx(1.7e6, rel=0.02)
    assert conv["latency_cycles"] == pytest.approx(2.6e6, rel=0.03)


def test_binary_counts_xnor_and_keeps_edges_multiplicative():
    binary = count_ops(create_model("lenet5_bn", conv_type="binary"), (1, 28, 28))
    inner = sum(o * k * p for o, k, p in LENET_LAYERS[1:-1])
    assert binary["xnor"] == inner
    assert binary["mul"] == 6 * 25 * 784 + 84 * 10 + LENET_BN_ELEMENTS


def test_paper_convention_drops_first_last_and_bn():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), Adder2d(8, 8, 3, padding=1),
                          nn.BatchNorm2d(8), BinaryConv2d(8, 8, 1, bias=False), nn.Flatten(), nn.Linear(8 * 16, 5))
    full = count_ops(model, (3, 4, 4))
    paper = count_ops(model, (3, 4, 4), paper_convention=True)
    adder_macs = 8 * 8 * 9 * 16
    binary_macs = 8 * 8 * 16
    assert paper["mul"] == 0
    assert paper["add"] == 2 * adder_macs + binary_macs
    assert paper["xnor"] == binary_macs
    assert full["mul"] == 8 * 27 * 16 + 2 * 8 * 16 + 128 * 5
    assert [r["module"] for r in paper["layers"]] == ["2", "4"]


def test_counting_restores_mode_and_handles_batches():
    model = create_model("lenet5_bn", conv_type="adder").train()
    one = count_ops(model, (1, 28, 28))
    four = count_ops(model, (1, 28, 28), batch_size=4)
    assert model.training
    assert one["add"] == four["add"]


def test_int8_energy_table_and_bad_options_refused():
    model = create_model("lenet5_bn", conv_type="conv")
    int8 = count_ops(model, (1, 28, 28), energy="int8")
    assert int8["energy_pj"] == pytest.approx(0.2 * int8["mul"] + 0.03 * int8["add"])
    with pytest.raises(ValueError, match="unknown energy table"):
        count_ops(model, (1, 28, 28), energy="fp8")
    with pytest.raises(ValueError, match="input_size"):
        count_ops(model, (28, 28))


def test_user_model_counted_by_dispatch():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    costs = count_ops(model, (1, 1, 10))
    assert costs["mul"] == 10 * 20 + 20 * 3
    assert costs["params"] == sum(p.numel() for p in model.parameters())
    assert torch.is_grad_enabled()
