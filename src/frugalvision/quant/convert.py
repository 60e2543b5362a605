"""``frugalvision.quantize``: post-training conversion of an AdderNet into an integer model (issue 11).

Three layouts, chosen from the model's structure:

* ``resnet``: the zoo's ResNets (:class:`~frugalvision.models.resnet.ResNet` with basic or bottleneck blocks whose
  layers are adder layers: ``resnet20/32/18/50`` and adderized CNN twins of them). fp32 (or int8) stem, uint8
  blocks whose last layer fuses BatchNorm + residual + ReLU + requantisation, fp32 head.
* ``chain``: sequential networks (LeNet-5-BN, LeNet++, VGG-small and adderized twins): groups
  ``Adder2d [MaxPool2d] [BatchNorm2d] [ReLU | other activation] [MaxPool2d]``, an optional multiplicative stem
  (fp32 or int8) and classifier (fp32).
* ``generic``: any other model (e.g. :func:`frugalvision.adderize` applied to a torchvision network): each
  ``Adder2d``, with the BatchNorm that alone consumes its output folded in (found with ``torch.fx``), becomes an
  :class:`~frugalvision.quant.modules.AdderUnit` (float in, uint8 inside, float out); everything else stays fp32.

Calibration runs the float model on the calibration images, observes every tensor that becomes uint8 (see
:mod:`.observers`) and folds each layer with :mod:`.fold`.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, InputError
from ..layers import AdaptiveConv2d, Adder2d, BinaryConv2d
from ..models.lenet import LeNet5BN, LeNetPP
from ..models.resnet import BasicBlock, Bottleneck, ResNet
from ..models.vgg import VGGSmall
from ..ops import adder2d, quantize_u8_nhwc
from .fold import QMAX, QParams, batch_norm_affine, clip_and_quantize_weight, fold_adder_affine, requantize_affine
from .modules import (
    AdderUnit,
    FloatConvStem,
    FloatLinearHead,
    Int8ConvStem,
    PooledEpilogue,
    QuantizedAdder2d,
    QuantizeInput,
)
from .networks import (
    ChannelsFirst,
    MaxPoolUint8,
    QuantizedBasicBlock,
    QuantizedBottleneck,
    QuantizedChain,
    QuantizedResNet,
)
from .observers import OBSERVERS, RangeStats, minmax_range, percentile_range, search_range

__all__ = ["FORMAT_VERSION", "LAYOUTS", "build_integer_model", "quantize"]

FORMAT_VERSION = 1
LAYOUTS = ("resnet", "chain", "generic")
# float activations allowed between adder layers of a chain (they force a float32 output and a requantisation)
_FLOAT_ACTIVATIONS = (nn.PReLU, nn.LeakyReLU, nn.Hardtanh, nn.ReLU6, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Tanh)
_CALIBRATION_BATCH = 64


@dataclass
class Site:
    """One adder layer of the integer model and what calibration needs to fill it."""

    adder: Adder2d  # the float layer (weights, geometry)
    norm: nn.BatchNorm2d | None  # its BatchNorm, folded into the epilogue
    target: QuantizedAdder2d  # receives the uint8 weights
    epilogue: QuantizedAdder2d | PooledEpilogue | None  # receives scale / bias (None: int32 output, no epilogue)
    input: str  # activation key of its uint8 input
    output: str | None = None  # activation key of its uint8 output (None: float output)
    relu: bool = False  # fused ReLU (clamp at the output zero point)
    residual: str | None = None  # activation key of the uint8 residual added in the epilogue
    pre_pool: nn.MaxPool2d | None = None  # max-pool between the layer and its BatchNorm


@dataclass
class Plan:
    """Where the float model's activations are observed and which integer modules they configure."""

    captures: dict[str, tuple[nn.Module, str]] = field(default_factory=dict)  # key -> (module, "input" | "output")
    sites: list[Site] = field(default_factory=list)
    entries: list[tuple[Callable[[QParams], None], str]] = field(default_factory=list)  # qparams setters

    def capture(self, key: str, module: nn.Module, where: str) -> str:
        self.captures[key] = (module, where)
        return key


def _geometry(adder: Adder2d) -> dict[str, Any]:
    return dict(in_channels=adder.in_channels, out_channels=adder.out_channels, kernel_size=adder.kernel_size,
                stride=adder.stride, padding=adder.padding, dilation=adder.dilation, groups=adder.groups)


def _qadder(adder: Adder2d, output: str, residual: bool = False) -> QuantizedAdder2d:
    return QuantizedAdder2d(**_geometry(adder), output=output, residual=residual)


STEMS = ("fp32", "int8")


def _stem(conv: nn.Conv2d, norm: nn.BatchNorm2d | None, relu: bool, pool: nn.Module | None, kind: str, plan: Plan,
          out_key: str) -> nn.Module:
    """The multiplicative first layer (``kind`` fp32 or int8), registered in ``plan``: its uint8 output is the
    tensor ``out_key``; the int8 stem also quantises the image (key ``stem:in``)."""
    if kind == "fp32":
        stem = FloatConvStem(conv, norm, relu, pool)
        plan.entries.append((stem.quant.set_qparams, out_key))
        return stem
    stem = Int8ConvStem(conv, norm, relu, pool)
    plan.entries.append((stem.set_input_qparams, plan.capture("stem:in", conv, "input")))
    plan.entries.append((stem.set_output_qparams, out_key))
    return stem


# ----------------------------------------------------------------------------------------------------------------
# Layout: ResNet


def _resnet_blocks(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The blocks of a zoo ResNet whose layers are all adder layers, else None."""
    if not isinstance(model, ResNet) or type(model.conv1) is not nn.Conv2d or not isinstance(model.relu, nn.ReLU):
        return None
    if not isinstance(model.avgpool, nn.AdaptiveAvgPool2d) or model.avgpool.output_size not in (1, (1, 1)):
        return None
    if type(model.fc) is not nn.Conv2d or not isinstance(model.maxpool, (nn.Identity, nn.MaxPool2d)):
        return None
    blocks = []
    for i in range(model.num_stages):
        for j, block in enumerate(getattr(model, f"layer{i + 1}")):
            names = ("conv1", "conv2") if type(block) is BasicBlock else ("conv1", "conv2", "conv3")
            if type(block) not in (BasicBlock, Bottleneck) or not isinstance(block.relu, nn.ReLU):
                return None
            if not all(isinstance(getattr(block, n), Adder2d) for n in names):
                return None
            ds = block.downsample
            if ds is not None and not (len(ds) == 2 and isinstance(ds[0], Adder2d)
                                       and isinstance(ds[1], nn.BatchNorm2d)):
                return None
            blocks.append((f"layer{i + 1}.{j}", block))
    return blocks


def _build_resnet(model: ResNet, blocks: list[tuple[str, nn.Module]], stem_kind: str) -> tuple[nn.Module, Plan]:
    plan = Plan()
    pool = None if isinstance(model.maxpool, nn.Identity) else copy.deepcopy(model.maxpool)
    in_keys = [plan.capture(f"{name}:in", block, "input") for name, block in blocks]
    stem = _stem(model.conv1, model.bn1, True, pool, stem_kind, plan, in_keys[0])
    stages: dict[str, list[nn.Module]] = defaultdict(list)
    for index, (name, block) in enumerate(blocks):
        last = index == len(blocks) - 1
        out_key = None if last else in_keys[index + 1]
        residual_key, downsample = in_keys[index], None
        if block.downsample is not None:
            ds_adder, ds_norm = block.downsample[0], block.downsample[1]
            downsample = _qadder(ds_adder, "uint8")
            residual_key = plan.capture(f"{name}.downsample:out", block.downsample, "output")
            plan.sites.append(Site(ds_adder, ds_norm, downsample, downsample, in_keys[index], residual_key))
        names = ["conv1", "conv2"] if isinstance(block, BasicBlock) else ["conv1", "conv2", "conv3"]
        layers, key = [], in_keys[index]
        for k, layer_name in enumerate(names):
            adder, norm = getattr(block, layer_name), getattr(block, f"bn{k + 1}")
            if k < len(names) - 1:
                qlayer = _qadder(adder, "uint8")
                next_key = plan.capture(f"{name}.{names[k + 1]}:in", getattr(block, names[k + 1]), "input")
                plan.sites.append(Site(adder, norm, qlayer, qlayer, key, next_key, relu=True))
                key = next_key
            else:
                qlayer = _qadder(adder, "float32" if last else "uint8", residual=True)
                plan.sites.append(Site(adder, norm, qlayer, qlayer, key, out_key, relu=True, residual=residual_key))
            layers.append(qlayer)
        qblock = (QuantizedBasicBlock if isinstance(block, BasicBlock) else QuantizedBottleneck)(*layers, downsample)
        stages[name.split(".")[0]].append(qblock)
    head = FloatLinearHead(model.fc, model.bn2, relu=False)
    return QuantizedResNet(stem, [nn.Sequential(*blocks) for blocks in stages.values()], head), plan


# ----------------------------------------------------------------------------------------------------------------
# Layout: sequential chain


def _chain_modules(model: nn.Module) -> tuple[list[tuple[str, nn.Module]], nn.Module | None] | None:
    """(name, module) in execution order and the fp32 classifier applied after ``flatten(1)``, for the zoo's
    sequential networks; None for other models."""
    def named(prefix: str, seq: nn.Sequential) -> list[tuple[str, nn.Module]]:
        return [(f"{prefix}.{i}", m) for i, m in enumerate(seq)]

    if type(model) is LeNet5BN:
        return named("features", model.features) + named("classifier", model.classifier), None
    if type(model) is LeNetPP:
        return named("features", model.features) + named("embedding", model.embedding) + named(
            "classifier", model.classifier), None
    if type(model) is VGGSmall:
        return named("features", model.features), model.classifier
    return None


@dataclass
class _Group:
    name: str
    adder: Adder2d
    pre_pool: nn.MaxPool2d | None = None
    norm: nn.BatchNorm2d | None = None
    relu: bool = False
    activations: list[nn.Module] = field(default_factory=list)
    post_pool: nn.MaxPool2d | None = None


def _parse_chain(modules: list[tuple[str, nn.Module]]) -> tuple[tuple | None, list[_Group]] | None:
    """Split a chain into an optional multiplicative stem (conv, norm, relu, pool) and adder groups; None if it does
    not fit."""
    i, n = 0, len(modules)

    def take(kind: type | tuple[type, ...]) -> nn.Module | None:
        nonlocal i
        if i < n and isinstance(modules[i][1], kind):
            i += 1
            return modules[i - 1][1]
        return None

    stem = None
    if n and type(modules[0][1]) is nn.Conv2d:
        conv = modules[0][1]
        i = 1
        stem = (conv, take(nn.BatchNorm2d), take(nn.ReLU) is not None, take(nn.MaxPool2d))
    groups = []
    while i < n and isinstance(modules[i][1], Adder2d):
        group = _Group(modules[i][0], modules[i][1])
        i += 1
        if i + 1 < n and isinstance(modules[i][1], nn.MaxPool2d) and isinstance(modules[i + 1][1], nn.BatchNorm2d):
            group.pre_pool = take(nn.MaxPool2d)
        group.norm = take(nn.BatchNorm2d)
        group.relu = take(nn.ReLU) is not None
        while (act := take(_FLOAT_ACTIVATIONS)) is not None:
            group.activations.append(act)
        group.post_pool = take(nn.MaxPool2d)
        groups.append(group)
    if i != n or not groups:
        return None
    return stem, groups


def _build_chain(modules: list[tuple[str, nn.Module]], classifier: nn.Module | None, stem_kind: str,
                 ) -> tuple[nn.Module, Plan] | None:
    parsed = _parse_chain(modules)
    if parsed is None:
        return None
    stem, groups = parsed
    plan = Plan()
    keys = [plan.capture(f"{g.name}:in", g.adder, "input") for g in groups]
    if stem is not None:
        steps: list[nn.Module] = [_stem(*stem, stem_kind, plan, keys[0])]
    else:
        steps = [QuantizeInput()]
        plan.entries.append((steps[0].set_qparams, keys[0]))
    for index, group in enumerate(groups):
        last = index == len(groups) - 1
        fused = not last and not group.activations  # uint8 straight into the next adder layer
        out_key = keys[index + 1] if fused else None
        if group.pre_pool is not None:
            qlayer = _qadder(group.adder, "int32")
            epilogue = PooledEpilogue(group.adder.out_channels, group.pre_pool, "uint8" if fused else "float32")
            steps += [qlayer, epilogue]
        else:
            qlayer = epilogue = _qadder(group.adder, "uint8" if fused else "float32")
            steps.append(qlayer)
        plan.sites.append(Site(group.adder, group.norm, qlayer, epilogue, keys[index], out_key,
                               relu=group.relu and fused, pre_pool=group.pre_pool))
        if fused:
            if group.post_pool is not None:
                steps.append(MaxPoolUint8(group.post_pool))
            continue
        steps.append(ChannelsFirst())
        steps += [nn.ReLU()] if group.relu else []
        steps += [copy.deepcopy(act) for act in group.activations]
        steps += [copy.deepcopy(group.post_pool)] if group.post_pool is not None else []
        if not last:
            requant = QuantizeInput()
            steps.append(requant)
            plan.entries.append((requant.set_qparams, keys[index + 1]))
    head = copy.deepcopy(classifier) if classifier is not None else None
    return QuantizedChain(nn.Sequential(*steps), head), plan


# ----------------------------------------------------------------------------------------------------------------
# Layout: generic (any model)


class _LeafTracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, Adder2d) or super().is_leaf_module(m, module_qualified_name)


def find_folded_norms(model: nn.Module) -> dict[str, str]:
    """``{adder_name: norm_name}`` for every adder layer whose output only feeds a BatchNorm used nowhere else
    (traced with ``torch.fx``; an untraceable model folds nothing)."""
    try:
        graph = _LeafTracer().trace(model)
    except Exception:  # FX raises many types for untraceable Python; then nothing is folded
        return {}
    calls = defaultdict(int)
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] += 1
    pairs = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(model.get_submodule(node.target), Adder2d):
            continue
        users = list(node.users)
        if len(users) == 1 and users[0].op == "call_module" and calls[node.target] == 1 \
                and isinstance(model.get_submodule(users[0].target), nn.BatchNorm2d) and calls[users[0].target] == 1:
            pairs[node.target] = users[0].target
    return pairs


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _build_generic(model: nn.Module, folded: dict[str, str] | None) -> tuple[nn.Module, Plan, dict[str, str]]:
    folded = find_folded_norms(model) if folded is None else folded
    qmodel = copy.deepcopy(model)
    plan = Plan()
    for name, adder in [(n, m) for n, m in model.named_modules() if isinstance(m, Adder2d)]:
        unit = AdderUnit(adder)
        _set_submodule(qmodel, name, unit)
        norm = None
        if name in folded:
            norm = model.get_submodule(folded[name])
            _set_submodule(qmodel, folded[name], nn.Identity())
        key = plan.capture(f"{name}:in", adder, "input")
        plan.sites.append(Site(adder, norm, unit.adder, unit.adder, key))
        plan.entries.append((unit.quant.set_qparams, key))
    return qmodel, plan, folded


# ----------------------------------------------------------------------------------------------------------------
# Building and calibrating


def _check_quantizable(model: nn.Module) -> None:
    adders = 0
    for name, module in model.named_modules():
        if isinstance(module, BinaryConv2d):
            raise InputError(f"quantize: {name} is a binary convolution; frugalvision.quantize converts AdderNets - "
                             "quantize CNN or binary twins with PyTorch's quantization (torch.ao.quantization)")
        if isinstance(module, AdaptiveConv2d):
            raise InputError(f"quantize: layer {name} ({type(module).__name__}) is not supported; "
                             "frugalvision.quantize converts AdderNets")
        adders += isinstance(module, Adder2d)
    if adders == 0:
        raise InputError(f"quantize: {type(model).__name__} has no adder layer (a CNN twin?); quantize CNNs with "
                         "PyTorch's quantization (torch.ao.quantization.quantize_fx)")


def build_integer_model(model: nn.Module, layout: str | None = None, folded_norms: dict[str, str] | None = None,
                        stem: str = "fp32") -> tuple[nn.Module, Plan, dict[str, Any]]:
    """The integer model's structure for ``model`` (numbers not yet set), its calibration plan and the layout
    record that rebuilds the same structure (``layout``, ``stem``, and ``folded_norms`` for the generic layout)."""
    _check_quantizable(model)
    if stem not in STEMS:
        raise ConfigError(f"quantize: stem must be one of {', '.join(STEMS)}, got {stem!r}")
    if layout in (None, "resnet") and (blocks := _resnet_blocks(model)) is not None:
        qmodel, plan = _build_resnet(model, blocks, stem)
        return qmodel, plan, {"layout": "resnet", "stem": stem}
    if layout in (None, "chain") and (chain := _chain_modules(model)) is not None:
        built = _build_chain(*chain, stem)
        if built is not None:
            return built[0], built[1], {"layout": "chain", "stem": stem}
    if layout not in (None, "generic"):
        raise InputError(f"quantize: the model does not have the structure of the {layout!r} layout")
    qmodel, plan, folded = _build_generic(model, folded_norms)
    return qmodel, plan, {"layout": "generic", "stem": stem, "folded_norms": folded}


def _calibration_batches(data: Any, max_images: int) -> list[Tensor]:
    """Up to ``max_images`` float images from batches, (input, target) pairs or single images, in batches of 64."""
    if isinstance(data, Tensor):
        data = [data]
    try:
        iterator = iter(data)
    except TypeError:
        raise InputError(f"quantize: calibration_data must be iterable, got {type(data).__name__}") from None
    images, total = [], 0
    for item in iterator:
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() not in (3, 4):
            raise InputError("quantize: calibration_data must yield float (N, C, H, W) batches, (C, H, W) images or "
                             f"(input, target) pairs, got {type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
        x = x.detach().cpu().float()
        x = x[None] if x.dim() == 3 else x
        images.append(x[: max_images - total])
        total += images[-1].shape[0]
        if total >= max_images:
            break
    if total == 0:
        raise InputError("quantize: calibration_data is empty; pass a few hundred training images")
    try:
        return list(torch.cat(images).split(_CALIBRATION_BATCH))
    except RuntimeError:
        raise InputError("quantize: calibration images differ in shape") from None


def _observe(model: nn.Module, plan: Plan, batches: list[Tensor], keep: int) -> tuple[dict, dict]:
    """Run the float model; per activation key: statistics and the first ``keep`` images' tensors (float)."""
    stats = {key: RangeStats(f"{where} of {key.split(':')[0]}", seed=i)
             for i, (key, (_, where)) in enumerate(plan.captures.items())}
    kept: dict[str, list[Tensor]] = defaultdict(list)

    def record(key: str, value: Tensor) -> None:
        stats[key].update(value)
        have = sum(t.shape[0] for t in kept[key])
        if have < keep:
            kept[key].append(value[: keep - have].detach().float().clone())

    hooks = []
    for key, (module, where) in plan.captures.items():
        if where == "input":
            hooks.append(module.register_forward_pre_hook(lambda m, args, key=key: record(key, args[0])))
        else:
            hooks.append(module.register_forward_hook(lambda m, args, out, key=key: record(key, out)))
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return stats, {key: torch.cat(values) for key, values in kept.items() if values}


def _float_layer_output(site: Site, x: Tensor) -> Tensor:
    """fp32 BatchNorm output of an adder site on float input ``x`` (N, C, H, W), as (N, H', W', O)."""
    a = site.adder
    y = adder2d(x, a.weight.detach().float(), a.bias, a.stride, a.padding, a.dilation, a.groups)
    if site.pre_pool is not None:
        y = site.pre_pool(y)
    g, h = batch_norm_affine(site.norm, y.shape[1])
    y = y * g.float().view(1, -1, 1, 1) + h.float().view(1, -1, 1, 1)
    return y.permute(0, 2, 3, 1)


def _integer_layer_output(site: Site, input_q: Tensor, qparams: QParams) -> Tensor:
    """The same BatchNorm output computed by the integer layer (uint8 (N, H, W, C) input on the grid ``qparams``)."""
    weight_q, clip_cost = clip_and_quantize_weight(site.adder.weight, qparams)
    a, c = fold_adder_affine(qparams, clip_cost, site.adder.bias, site.norm)
    layer = _qadder(site.adder, "float32" if site.pre_pool is None else "int32")
    layer.set_weight(weight_q, qparams.zero_point)
    if site.pre_pool is None:
        layer.set_epilogue(a, c)
        return layer(input_q)
    epilogue = PooledEpilogue(site.adder.out_channels, site.pre_pool, "float32")
    epilogue.set_epilogue(a, c)
    return epilogue(layer(input_q))


def _output_error(key: str, x: Tensor, plan: Plan) -> Callable[[QParams], float]:
    """Mean squared error that quantising tensor ``key`` with given qparams causes in the BatchNorm outputs of the
    integer layers that read it (plus the tensor's own error where it is a residual or has no adder reader)."""
    consumers = [s for s in plan.sites if s.input == key]
    direct = any(s.residual == key for s in plan.sites) or not consumers
    with torch.no_grad():
        references = [_float_layer_output(s, x) for s in consumers]

    def error(qparams: QParams) -> float:
        with torch.no_grad():
            total = float(((qparams.fake_quantize(x) - x) ** 2).mean()) if direct else 0.0
            if consumers:
                input_q = quantize_u8_nhwc(x, qparams.scale, qparams.zero_point)
                for site, ref in zip(consumers, references):
                    total += float(((_integer_layer_output(site, input_q, qparams) - ref) ** 2).mean())
        return total

    return error


def _fill(plan: Plan, qparams: dict[str, QParams]) -> None:
    for site in plan.sites:
        qin = qparams[site.input]
        weight_q, clip_cost = clip_and_quantize_weight(site.adder.weight, qin)
        site.target.set_weight(weight_q, qin.zero_point)
        if site.epilogue is None:
            continue
        a, c = fold_adder_affine(qin, clip_cost, site.adder.bias, site.norm)
        residual = qparams[site.residual] if site.residual is not None else None
        if site.output is not None:
            qout = qparams[site.output]
            scale, bias = requantize_affine(a, c, qout)
            qmin = qout.zero_point if site.relu else 0
            residual_scale = residual.scale / qout.scale if residual else 0.0
        else:
            scale, bias, qmin = a, c, 0
            residual_scale = residual.scale if residual else 0.0
        if isinstance(site.epilogue, PooledEpilogue):
            site.epilogue.set_epilogue(scale, bias, qmin, QMAX)
        else:
            site.epilogue.set_epilogue(scale, bias, qmin, QMAX, residual.zero_point if residual else 0,
                                       residual_scale)
    for setter, key in plan.entries:
        setter(qparams[key])


def choose_qparams(stats: dict[str, RangeStats], kept: dict[str, Tensor], plan: Plan, observer: str,
                   percentile: float) -> dict[str, QParams]:
    """Each uint8 tensor's qparams from its calibration statistics with ``observer`` (``minmax``, ``percentile``
    or ``mse``, the search that minimises the consuming layers' output error on the ``kept`` tensors)."""
    qparams = {}
    for key, stat in stats.items():
        if stat.count == 0:
            raise InputError(f"quantize: calibration never reached {key.split(':')[0]} (is it used in forward?)")
        if observer == "minmax":
            lo, hi = minmax_range(stat)
        elif observer == "percentile":
            lo, hi = percentile_range(stat, percentile)
        else:
            (lo, hi), _ = search_range(stat, _output_error(key, kept[key], plan))
        qparams[key] = QParams.from_range(lo, hi)
    return qparams


def _calibrate(model: nn.Module, batches: list[Tensor], observer: str, percentile: float, search_images: int,
               stem: str) -> tuple[nn.Module, dict[str, Any]]:
    """Observe the float model once, then build the integer model with ``observer`` - or, for ``"auto"``, with each
    observer, keeping the one whose logits are closest to fp32 (mean squared error on the calibration images)."""
    qmodel, plan, layout = build_integer_model(model, stem=stem)
    logits: list[Tensor] = []
    hook = model.register_forward_hook(lambda m, args, out: logits.append(out.detach().float()))
    try:
        stats, kept = _observe(model, plan, batches, search_images if observer in ("mse", "auto") else 0)
    finally:
        hook.remove()
    if observer != "auto":
        _fill(plan, choose_qparams(stats, kept, plan, observer, percentile))
        return qmodel, {**layout, "observer": observer}
    reference = torch.cat(logits)
    best, errors = None, {}
    for candidate in OBSERVERS:
        if best is not None:
            qmodel, plan, _ = build_integer_model(model, layout["layout"], layout.get("folded_norms"), stem)
        _fill(plan, choose_qparams(stats, kept, plan, candidate, percentile))
        with torch.no_grad():
            out = torch.cat([qmodel(x) for x in batches])
        errors[candidate] = float(((out - reference) ** 2).mean())
        if best is None or errors[candidate] < errors[best[0]]:
            best = (candidate, qmodel)
    return best[1], {**layout, "observer": best[0], "observer_logit_mse": errors}


def _adder_paths(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, Adder2d)]


def quantize(
    model: nn.Module,
    calibration_data: Iterable[Any],
    *,
    bits: int = 8,
    observer: str = "auto",
    percentile: float = 99.99,
    max_images: int = 512,
    search_images: int = 32,
    stem: str = "fp32",
) -> nn.Module:
    """Integer (uint8) AdderNet for inference: float images in, float logits out (docs/integer_addernet.md).

    Every adder layer runs ``frugalvision::adder2d_u8`` on uint8 activations and weights that share one scale and
    zero point (AdderNet Eq. 2 in integers, see :mod:`frugalvision.quant.fold`); BatchNorm, ReLU and residual
    additions fold into one float32 requantisation per output element; the multiplicative stem and classifier of
    the CIFAR / ImageNet models stay fp32 (``stem="int8"`` runs the stem in PyTorch's int8 conv).

    Args:
        model: an AdderNet of the zoo (``lenet5_bn``, ``lenet_pp``, ``vgg_small``, ``resnet20/32/18/50`` with
            ``conv_type="adder"``) or any model with :class:`~frugalvision.layers.Adder2d` layers (e.g. the output
            of :func:`frugalvision.adderize`). It is not modified.
        calibration_data: an iterable of float input batches (N, C, H, W), of (input, target) pairs (a
            ``DataLoader``), or of single (C, H, W) images (a dataset); a few hundred training images.
        bits: 8 (uint8 is the only width of the SAD kernels).
        observer: how each uint8 tensor's range is chosen: ``"minmax"``, ``"percentile"``, ``"mse"`` (the range
            that minimises the consuming layers' output error; see :mod:`frugalvision.quant.observers`), or
            ``"auto"`` (default): all three, keeping the model whose logits are closest to fp32 on the calibration
            images (the choice and each error are recorded in ``model.frugalvision_cfg["quantized"]``).
        percentile: the percentile of the ``"percentile"`` observer.
        max_images: calibration images used (the first ones of ``calibration_data``).
        search_images: images whose activations the ``"mse"`` search evaluates.
        stem: how the multiplicative first layer of the CIFAR / ImageNet models runs: ``"fp32"`` (default; top-1
            agreement with fp32 98.9 % for the released ResNet-20) or ``"int8"`` (PyTorch's quantized conv: 98.5 %,
            ~5 % faster whole network at batch 64); measurements in docs/integer_addernet.md.

    Returns:
        An eval-only ``nn.Module`` on the CPU; save it with :func:`frugalvision.quant.save_quantized` and load it
        with :func:`frugalvision.load_model`.

    Raises:
        InputError / ConfigError: (``ValueError``) a conv or binary twin, an unsupported layer, bad options, empty
        calibration data; the message is one line.
    """
    if isinstance(bits, bool) or bits != 8:
        raise ConfigError(f"quantize: bits={bits!r} is not supported; the integer adder kernels use 8 bits")
    if observer not in (*OBSERVERS, "auto"):
        raise ConfigError(f"quantize: observer must be auto, {', '.join(OBSERVERS)}; got {observer!r}")
    if max_images < 1 or search_images < 1:
        raise ConfigError("quantize: max_images and search_images must be >= 1")
    source = model
    if any(t.device.type != "cpu" for t in [*model.parameters(), *model.buffers()]):
        source = copy.deepcopy(model).cpu()
    build_integer_model(source, stem=stem)  # unsupported models and options fail here, before calibration
    batches = _calibration_batches(calibration_data, max_images)
    was_training = source.training
    source.eval()
    try:
        qmodel, record = _calibrate(source, batches, observer, percentile, min(search_images, max_images), stem)
    finally:
        source.train(was_training)
    base = dict(getattr(model, "frugalvision_cfg", None) or {})
    base.pop("quantized", None)
    base["quantized"] = {"format": FORMAT_VERSION, "bits": bits, "adder_layers": _adder_paths(source), **record}
    qmodel.frugalvision_cfg = base
    for attribute in ("data_config", "default_input_size", "num_classes"):  # preprocessing and facts of the source
        if getattr(model, attribute, None) is not None:
            setattr(qmodel, attribute, getattr(model, attribute))
    qmodel.requires_grad_(False)
    return qmodel.eval()
