"""Saving and loading integer models: one safetensors file, uint8 weights and float32 multipliers as tensors, the
source model's name / options and the ``quantized`` record (layout, adder layers, folded BatchNorms) as metadata.

Loading rebuilds the float model's skeleton with :func:`frugalvision.create_model`, turns the recorded adder layers
back into adder layers (for adderized CNN twins), rebuilds the integer structure from it and loads the tensors;
:func:`frugalvision.load_model` calls :func:`load_quantized` when a file carries the ``quantized`` record: this
module registers it with :func:`frugalvision.models.register_checkpoint_loader` when imported, which
``import frugalvision`` (any ``frugalvision.*`` import) always does, since ``frugalvision/__init__`` imports
:mod:`frugalvision.quant`.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from ..errors import CheckpointError
from ..layers import Adder2d, create_conv2d
from ..models.checkpoint import (
    check_state_dict_fits,
    read_checkpoint_config,
    read_state_dict,
    register_checkpoint_loader,
    restore_data_config,
    save_model,
)
from ..models.factory import create_model
from .convert import FORMAT_VERSION, LAYOUTS, build_integer_model

__all__ = ["QUANTIZED_KEY", "is_quantized", "load_quantized", "save_quantized"]

QUANTIZED_KEY = "quantized"


def is_quantized(obj: nn.Module | dict[str, Any] | None) -> bool:
    """Whether a model (or a checkpoint config) is a frugalvision integer model."""
    config = getattr(obj, "frugalvision_cfg", None) if isinstance(obj, nn.Module) else obj
    return isinstance(config, dict) and isinstance(config.get(QUANTIZED_KEY), dict)


def save_quantized(model: nn.Module, path: str | os.PathLike) -> None:
    """Write an integer model made by :func:`frugalvision.quantize` to ``path`` (safetensors, atomically)."""
    config = getattr(model, "frugalvision_cfg", None)
    if not is_quantized(model):
        raise CheckpointError("save_quantized: not a model returned by frugalvision.quantize")
    if "model" not in config:
        raise CheckpointError("save_quantized: the quantized model's source was not built by "
                              "frugalvision.create_model, so it cannot be rebuilt from a file")
    save_model(path, model)  # tensors, frugalvision_cfg (with the quantized record) and data_config


def _restore_adder_layers(model: nn.Module, paths: list[str]) -> None:
    """Replace the ``nn.Conv2d`` at each path by an adder layer of the same geometry (an adderized twin)."""
    for path in paths:
        try:
            layer = model.get_submodule(path)
        except AttributeError:
            raise CheckpointError(f"quantized checkpoint names adder layer {path}, which the model lacks") from None
        if isinstance(layer, Adder2d):
            continue
        if type(layer) is not nn.Conv2d:
            raise CheckpointError(f"quantized checkpoint: {path} is a {type(layer).__name__}, not an adder layer")
        adder = create_conv2d("adder", layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                              layer.padding, layer.dilation, layer.groups, layer.bias is not None)
        parent, _, child = path.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, adder)


def rebuild_quantized(config: dict[str, Any]) -> nn.Module:
    """The integer model's structure (numbers unset) from a checkpoint config."""
    record = config[QUANTIZED_KEY]
    if record.get("format") != FORMAT_VERSION or record.get("layout") not in LAYOUTS:
        raise CheckpointError(f"quantized checkpoint format {record.get('format')!r} / layout "
                              f"{record.get('layout')!r} is not supported by this frugalvision")
    source = create_model(config["model"], **config.get("kwargs", {}))
    _restore_adder_layers(source, list(record.get("adder_layers", [])))
    qmodel, _, _ = build_integer_model(source, record["layout"], record.get("folded_norms"), record.get("stem", "fp32"))
    qmodel.frugalvision_cfg = {k: v for k, v in config.items() if k != "data_config"}
    for attribute in ("default_input_size", "num_classes", "data_config"):
        if getattr(source, attribute, None) is not None:
            setattr(qmodel, attribute, getattr(source, attribute))
    return qmodel


def load_quantized(path: str | os.PathLike, config: dict[str, Any] | None = None) -> nn.Module:
    """Load an integer model saved by :func:`save_quantized` (eval mode)."""
    config = read_checkpoint_config(path) if config is None else config
    if not is_quantized(config) or "model" not in config:
        raise CheckpointError(f"{path} is not a quantized frugalvision model")
    qmodel = rebuild_quantized(config)
    restore_data_config(qmodel, config, path)  # the preprocessing of the source model
    state = read_state_dict(path)
    check_state_dict_fits(state, qmodel.state_dict(), f"quantized checkpoint {path} does not fit its model",
                          check_dtype=True)
    qmodel.load_state_dict(state, strict=True)
    qmodel.requires_grad_(False)
    return qmodel.eval()


register_checkpoint_loader(QUANTIZED_KEY, load_quantized)
