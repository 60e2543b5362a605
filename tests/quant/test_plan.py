"""Compiled integer plans (frugalvision.quant.plan): the planned forward equals the module-by-module forward bit for
bit (same int32 sums, same float32 epilogue), on every layout, odd batch sizes, and the released ResNet-20."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import frugalvision as fv
from frugalvision.ops import use_backend
from frugalvision.quant import QParams, QuantizedAdder2d
from frugalvision.quant.modules import PlannedForward
from frugalvision.quant.plan import compile_plan, plan_of, planned_forward, plans_disabled

from .test_quantize import _zoo
from .test_released_resnet20 import _images
from .utils import batch_statistics

LAYOUTS = ["lenet5_bn", "lenet_pp", "resnet_basic", "resnet_bottleneck", "adderized_custom",
           pytest.param("vgg_small", marks=pytest.mark.slow)]


def _quantized(name: str, stem: str = "fp32") -> tuple[nn.Module, tuple[int, ...]]:
    model, shape, _ = _zoo(name)
    images = torch.randn(8, *shape, generator=torch.Generator().manual_seed(1))
    batch_statistics(model, images)
    return fv.quantize(model, [images], observer="minmax", stem=stem), shape


def _planned_modules(qmodel: nn.Module) -> list[nn.Module]:
    """The modules that run a plan: the whole network, or the adder units of a generic-layout model."""
    planned = [m for m in qmodel.modules() if isinstance(m, PlannedForward)]
    assert all(plan_of(m) is not None for m in planned)
    return planned


@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("stem", ["fp32", "int8"])
def test_plan_equals_the_module_forward_bit_for_bit(name, stem):
    if stem == "int8" and name in ("lenet5_bn", "lenet_pp", "adderized_custom"):
        pytest.skip("no multiplicative stem")
    qmodel, shape = _quantized(name, stem)
    planned = _planned_modules(qmodel)
    adders = [m for m in qmodel.modules() if isinstance(m, QuantizedAdder2d)]
    assert planned and sum(compile_plan(m).layer_count for m in planned) == len(adders)
    for batch in (1, 5, 1):  # the second batch-1 call reuses the bound tables and arena
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch))
        x = x.transpose(2, 3) if batch == 5 else x  # not contiguous
        with torch.no_grad():
            out = qmodel(x)
            with plans_disabled():
                reference = qmodel(x)
        assert out.dtype == reference.dtype and torch.equal(out, reference)


def test_plan_follows_changed_buffers_and_steps_aside_for_other_backends():
    qmodel, shape = _quantized("resnet_basic")
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = qmodel(x)
        first = plan_of(qmodel)
        layer = qmodel.layer2[0].conv2
        layer.set_epilogue(layer.scale * 1.5, layer.bias, layer.qmin, layer.qmax, layer.residual_zero_point,
                           layer.residual_scale)
        after = qmodel(x)
        assert plan_of(qmodel) is not first and not torch.equal(after, before)
        with plans_disabled():
            assert torch.equal(after, qmodel(x))
        qmodel.load_state_dict(qmodel.state_dict())  # copies into the buffers: the plan is rebuilt, same numbers
        assert torch.equal(qmodel(x), after)
        with use_backend("torch"):
            assert planned_forward(qmodel, x) is None
            assert torch.equal(qmodel(x), after)
        assert planned_forward(qmodel, x.to("meta")) is None


def test_copies_compile_their_own_plan():
    qmodel, shape = _quantized("lenet5_bn")
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = qmodel(x)
        twin = copy.deepcopy(qmodel)
        assert "_integer_plan" not in twin.__dict__
        twin.steps[0].set_qparams(QParams(twin.steps[0].scale * 2, twin.steps[0].zero_point))  # the copy's own
        with plans_disabled():
            expected = twin(x)
        assert torch.equal(twin(x), expected) and not torch.equal(expected, out)
        assert torch.equal(qmodel(x), out)


def test_released_resnet20_plan_equals_the_module_forward(shared_data):
    checkpoint = shared_data("official/ResNet20-AdderNet.pth")
    model = fv.create_model("resnet20", conv_type="adder", checkpoint_path=checkpoint).eval()
    calibration, _ = _images(shared_data("cifar10_jpeg_10k/train"), 4)
    images, _ = _images(shared_data("cifar10_jpeg_10k/val"), 1)
    qmodel = fv.quantize(model, [calibration], observer="minmax")
    assert compile_plan(qmodel).layer_count == 20  # 9 blocks of 2 layers + 2 downsampling shortcuts
    with torch.no_grad():
        for batch in (images[:1], images[1:8], images):
            with plans_disabled():
                reference = qmodel(batch)
            assert torch.equal(qmodel(batch), reference)


def test_float_stem_and_quantiser_run_inside_the_compiled_call():
    """The stem (with its max-pool) and the input quantisers are integer steps of the first segment; a float64 image
    runs the modules (the stem's float64 sums would start from other values); changing the stem's weights in place
    rebuilds the plan."""
    from frugalvision.quant.plan import ConvStemStep, IntegerSegment, MaxPoolStep, QuantizeStep

    qmodel, shape = _quantized("resnet_bottleneck")  # ImageNet stem: 7x7 stride 2, then a 3x3 max-pool
    first = compile_plan(qmodel).program[0]
    assert isinstance(first, IntegerSegment) and first.float_input
    assert [type(s) for s in first.steps[:2]] == [ConvStemStep, MaxPoolStep]
    lenet, _ = _quantized("lenet5_bn")
    assert isinstance(compile_plan(lenet).program[0].steps[0], QuantizeStep)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert planned_forward(qmodel, x.double()) is None
        assert planned_forward(qmodel, x) is not None
        before = qmodel(x)
        qmodel.stem.conv.weight.mul_(1.25)
        after = qmodel(x)
        with plans_disabled():
            assert torch.equal(after, qmodel(x))
        assert not torch.equal(after, before)


def _random_adder(gen: torch.Generator, c_in: int, c_out: int, k: int, padding: int, zero_point: int,
                  output: str = "uint8") -> QuantizedAdder2d:
    layer = QuantizedAdder2d(c_in, c_out, (k, k), padding=(padding, padding), output=output)
    layer.set_weight(torch.randint(0, 256, (c_out, c_in, k, k), generator=gen, dtype=torch.uint8), zero_point)
    scale = (torch.rand(c_out, generator=gen) + 0.5) * 0.1 / (c_in * k * k)  # about 0.1 x the mean |a - b|
    layer.set_epilogue(-scale, torch.rand(c_out, generator=gen) * 100 + 150, qmin=5, qmax=250)
    return layer


def test_channels_padded_to_eight_change_no_sum():
    """A uint8 layer with 6 output channels, read through a max-pool by a padded 3x3 layer (input zero point 37)
    whose 6 outputs a 1x1 layer reads: the plan runs them with 8 channels (scalar epilogues avoided) and the logits
    equal the modules' (the padding channels hold the readers' zero point, their weights too: |z - z| = 0, also
    at the padded border)."""
    from frugalvision.quant.modules import QuantizeInput
    from frugalvision.quant.networks import MaxPoolUint8, QuantizedChain

    gen = torch.Generator().manual_seed(3)
    quant = QuantizeInput()
    quant.set_qparams(QParams(0.05, 20))
    conv1 = _random_adder(gen, 3, 6, 3, 1, 20)
    conv2 = _random_adder(gen, 6, 6, 3, 1, 37)  # reads conv1's output: its zero point is conv1's output's
    conv3 = _random_adder(gen, 6, 4, 1, 0, 91, output="float32")
    conv1.set_epilogue(conv1.scale, conv1.bias, qmin=37, qmax=250)  # a ReLU at the zero point 37
    chain = QuantizedChain(nn.Sequential(quant, conv1, MaxPoolUint8(nn.MaxPool2d(2)), conv2, conv3))
    steps = [s for item in compile_plan(chain).program if hasattr(item, "steps") for s in item.steps]
    widths = [(s.layer.in_channels, s.layer.out_channels) for s in steps if hasattr(s, "layer")]
    assert widths == [(3, 8), (8, 8), (8, 4)]
    x = torch.randn(3, 3, 11, 9, generator=gen) * 2
    with torch.no_grad():
        out = chain(x)
        with plans_disabled():
            reference = chain(x)
    assert torch.equal(out, reference)
