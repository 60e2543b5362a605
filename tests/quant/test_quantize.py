"""frugalvision.quantize on small randomly initialised AdderNets of every layout: it runs, and its error against fp32
is what 8-bit rounding predicts.

Tolerance. Random networks amplify perturbations by very different factors (a random ResNet-50 turns 0.5 % noise in
its first block into 36 % at the last), so a fixed tolerance is either loose or flaky. The yardstick here is the
float model itself with the rounding noise the integer model has (median over five draws): uniform noise of +-s/2
on every adder layer's input and weights, with s the scale of that layer's input range [lo, hi] (min/max over the
calibration images, computed here independently of frugalvision.quant); exact zeros (ReLU outputs, the padding) and
weights outside [lo, hi] (clipped losslessly) get none, as in the integer model. With the int8 stem, the stem gets
the image's step on its input and the per-channel int8 step on its weights. The integer model must stay within
3x that error (it also rounds the residual branches and the requantised outputs; measured: 0.4-1.6x); a wrong zero
point, a missing clip constant or a mis-scaled residual gives errors 10-100x larger.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import frugalvision as fv
from frugalvision.layers import Adder2d
from frugalvision.models.resnet import BasicBlock, Bottleneck, ResNet

from .utils import batch_statistics, relative_error


def _input_ranges(model: nn.Module, x: torch.Tensor, layers: list[nn.Module]) -> dict[nn.Module, tuple[float, float]]:
    ranges: dict[nn.Module, tuple[float, float]] = {}

    def record(module, args):
        lo, hi = ranges.get(module, (0.0, 0.0))
        ranges[module] = (min(lo, float(args[0].min())), max(hi, float(args[0].max())))

    hooks = [m.register_forward_pre_hook(record) for m in layers]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return ranges


def _noise_predicted_error(model: nn.Module, x: torch.Tensor, reference: torch.Tensor, stem: nn.Module | None = None,
                           draws: int = 5) -> float:
    """Median relative logit error of the float model over ``draws`` draws of rounding-sized noise: on every adder
    layer (and on an int8 ``stem``: image step on its input, per-channel int8 step max|w|/127 on its weights)."""
    adders = [m for m in model.modules() if isinstance(m, Adder2d)]
    ranges = _input_ranges(model, x, adders + ([stem] if stem is not None else []))
    steps: dict[nn.Module, tuple[float, torch.Tensor]] = {}  # module -> (input step, weight step)
    for m, (lo, hi) in ranges.items():
        if m is stem:
            steps[m] = ((hi - lo) / 255, m.weight.detach().abs().flatten(1).amax(1).view(-1, 1, 1, 1) / 127)
        else:
            steps[m] = ((hi - lo) / 255, torch.tensor((hi - lo) / 255))
    return sorted(_noisy_error(model, x, reference, ranges, steps, stem, seed) for seed in range(draws))[draws // 2]


def _noisy_error(model: nn.Module, x: torch.Tensor, reference: torch.Tensor, ranges: dict, steps: dict,
                 stem: nn.Module | None, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)

    def noise(t: torch.Tensor, module: nn.Module, is_weight: bool) -> torch.Tensor:
        lo, hi = ranges[module]
        if module is stem:  # every image value and every int8 weight is rounded
            rounded = torch.ones_like(t, dtype=torch.bool)
        else:  # exact zeros and losslessly clipped weights are not
            rounded = (t >= lo) & (t <= hi) if is_weight else t != 0
        step = steps[module][1] if is_weight else steps[module][0]
        return t + (torch.rand(t.shape, generator=gen) - 0.5) * step * rounded

    saved = {m: m.weight.detach().clone() for m in ranges}
    hooks = [m.register_forward_pre_hook(lambda mod, args: (noise(args[0], mod, False),)) for m in ranges]
    try:
        with torch.no_grad():
            for m, w in saved.items():
                m.weight.copy_(noise(w, m, True))
            return relative_error(model(x), reference)
    finally:
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for m, w in saved.items():
                m.weight.copy_(w)


class _AdderizedNet(nn.Module):
    """A CNN with attribute-style layers and a residual add, adderized: exercises the generic layout."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_a, self.bn_a = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv_b, self.bn_b = nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.relu(self.bn_a(self.conv_a(x)))
        y = self.bn_b(self.conv_b(y))
        return self.head(torch.relu(x + y).mean((2, 3)))


def _zoo(name: str) -> tuple[nn.Module, tuple[int, ...], str]:
    torch.manual_seed(0)
    if name == "lenet5_bn":
        return fv.create_model("lenet5_bn"), (1, 28, 28), "chain"
    if name == "lenet_pp":
        return fv.create_model("lenet_pp", feature_dim=3), (1, 28, 28), "chain"
    if name == "vgg_small":
        return fv.create_model("vgg_small"), (3, 32, 32), "chain"
    if name == "resnet_basic":
        return ResNet(BasicBlock, (1, 2, 1), (4, 8, 16), conv_type="adder"), (3, 16, 16), "resnet"
    if name == "resnet_bottleneck":
        return ResNet(Bottleneck, (1, 1), (4, 8), stem="imagenet", num_classes=7, fc_bias=True,
                      conv_type="adder"), (3, 32, 32), "resnet"
    if name == "adderized_resnet20":
        return fv.adderize(fv.create_model("resnet20", conv_type="conv")), (3, 32, 32), "resnet"
    if name == "adderized_custom":
        return fv.adderize(_AdderizedNet()), (3, 12, 12), "generic"
    raise KeyError(name)


ZOO = [("lenet5_bn", "fp32"), ("lenet_pp", "fp32"), ("resnet_basic", "fp32"), ("resnet_basic", "int8"),
       ("resnet_bottleneck", "fp32"), ("resnet_bottleneck", "int8"), ("adderized_resnet20", "fp32"),
       ("adderized_custom", "fp32"), pytest.param("vgg_small", "int8", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name, stem_kind", ZOO)
def test_quantized_model_tracks_fp32_within_rounding_noise(name, stem_kind):
    model, shape, layout = _zoo(name)
    images = torch.randn(6 if name == "vgg_small" else 16, *shape, generator=torch.Generator().manual_seed(1))
    batch_statistics(model, images)
    qmodel = fv.quantize(model, [images], observer="minmax", stem=stem_kind)  # on its calibration images: no clamp
    assert qmodel.frugalvision_cfg["quantized"]["layout"] == layout
    with torch.no_grad():
        reference = model(images)
        out = qmodel(images)
    assert out.shape == reference.shape and out.dtype == torch.float32
    int8_stem = stem_kind == "int8" and layout != "generic"
    stem = next(m for m in model.modules() if type(m) is nn.Conv2d) if int8_stem else None
    predicted = _noise_predicted_error(model, images, reference, stem)
    assert relative_error(out, reference) <= 3 * predicted + 1e-3, (relative_error(out, reference), predicted)


def test_generic_layout_folds_the_batchnorm_that_alone_reads_an_adder_layer():
    model, shape, _ = _zoo("adderized_custom")
    qmodel = fv.quantize(batch_statistics(model, torch.randn(8, *shape)), [torch.randn(8, *shape)])
    assert qmodel.frugalvision_cfg["quantized"]["folded_norms"] == {"conv_a": "bn_a", "conv_b": "bn_b"}
    assert isinstance(qmodel.bn_a, nn.Identity) and isinstance(qmodel.conv_b, fv.quant.modules.AdderUnit)
    assert type(qmodel.stem) is nn.Conv2d  # the multiplicative layers stay fp32


def test_auto_observer_keeps_the_best_of_the_three():
    model, shape, _ = _zoo("resnet_basic")
    images = torch.randn(16, *shape, generator=torch.Generator().manual_seed(1))
    batch_statistics(model, images)
    qmodel = fv.quantize(model, images.split(8), search_images=8)
    record = qmodel.frugalvision_cfg["quantized"]
    errors = record["observer_logit_mse"]
    assert set(errors) == {"minmax", "percentile", "mse"} and record["observer"] == min(errors, key=errors.get)
    with torch.no_grad():
        chosen = float(((qmodel(images) - model(images)) ** 2).mean())
    assert chosen == pytest.approx(errors[record["observer"]], rel=1e-4)


@pytest.mark.parametrize("stem, kind", [("int8", "Int8ConvStem"), ("fp32", "FloatConvStem")])
def test_stems_and_calibration_from_a_dataset_of_single_images(stem, kind):
    model, shape, _ = _zoo("resnet_basic")
    images = torch.randn(16, *shape, generator=torch.Generator().manual_seed(1))
    batch_statistics(model, images)
    dataset = [(image, 0) for image in images]  # (C, H, W) images with labels, as a Dataset yields them
    qmodel = fv.quantize(model, dataset, observer="minmax", stem=stem, max_images=12)
    assert type(qmodel.stem).__name__ == kind and qmodel.frugalvision_cfg["quantized"]["stem"] == stem
    with torch.no_grad():
        assert relative_error(qmodel(images), model(images)) < 0.1


def test_quantized_model_is_inference_only_and_leaves_the_source_alone():
    model, shape, _ = _zoo("lenet5_bn")
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qmodel = fv.quantize(model, [torch.randn(4, *shape)])
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not qmodel.training and not any(p.requires_grad for p in qmodel.parameters())
    with pytest.raises(ValueError, match="inference only"):
        qmodel.train()


def test_count_ops_runs_integer_models_and_counts_the_entry_quantisation():
    model, shape, _ = _zoo("lenet5_bn")
    qmodel = fv.quantize(batch_statistics(model, torch.randn(8, *shape)), [torch.randn(8, *shape)])
    counts = fv.count_ops(qmodel, shape)
    entry = [r for r in counts["layers"] if r["op"] == "quantize_u8_nhwc"]
    assert len(entry) == 1 and entry[0]["mul"] == entry[0]["add"] == 28 * 28  # 1 x 28 x 28 pixels
    assert counts["add"] >= fv.count_ops(model, shape, paper_convention=True)["add"]  # every adder term counted


def test_weight_count_of_an_integer_model_equals_the_float_models_parameters():
    model, shape, _ = _zoo("resnet_basic")
    qmodel = fv.quantize(batch_statistics(model, torch.randn(8, *shape)), [torch.randn(8, *shape)])
    # BatchNorms fold away; adder weights become uint8 buffers; stem conv and classifier keep their weights (+ bias)
    norms = sum(m.weight.numel() + m.bias.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    stem_bias, head_bias = model.conv1.out_channels, model.fc.out_channels
    assert fv.quant.weight_count(qmodel) == sum(p.numel() for p in model.parameters()) - norms + stem_bias + head_bias
