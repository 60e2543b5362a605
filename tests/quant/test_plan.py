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
