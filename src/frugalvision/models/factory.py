"""``create_model`` and ``load_model``: the public way to build and restore models."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from ..errors import CheckpointError, ConfigError
from .checkpoint import (
    KIND_OPTIONS,
    check_layer_kinds,
    check_state_dict_fits,
    checkpoint_loader,
    read_checkpoint_config,
    read_state_dict,
    restore_data_config,
)
from .registry import model_entry, model_entrypoint

__all__ = ["create_model", "load_checkpoint", "load_model"]


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_ema: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, optionally loading weights.

    Args:
        name: a name from :func:`frugalvision.list_models`.
        pretrained: frugalvision downloads nothing; pass the released file as ``checkpoint_path`` instead.
        checkpoint_path: a frugalvision checkpoint (file or run folder) or an official AdderNet / VanillaNet
            checkpoint as released.
        checkpoint_ema: load the ``model_ema`` entry of a nested checkpoint (the official VanillaNet releases report
            the accuracy of their EMA weights); an error if the file has none.
        **kwargs: model options (``num_classes``, ``in_chans``, ``conv_type``, ...). ``None`` values are dropped so
            that defaults stay in effect.

    Example:
        >>> model = create_model("lenet5_bn", conv_type="adder")
    """
    if pretrained and checkpoint_path is None:
        raise ConfigError(
            f"pretrained weights for {name!r} are not bundled and nothing is downloaded; "
            "pass the released file as checkpoint_path=..."
        )
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    model = model_entrypoint(name)(**kwargs)  # stamps model.frugalvision_cfg (see .registry)
    if checkpoint_path is not None:
        load_checkpoint(model, checkpoint_path, use_ema=checkpoint_ema)
    elif checkpoint_ema:
        raise ConfigError("checkpoint_ema=True needs a checkpoint_path")
    return model


def load_checkpoint(model: nn.Module, checkpoint_path: str | os.PathLike, *, use_ema: bool = False) -> nn.Module:
    """Load weights into ``model`` (strict), converting an official checkpoint's key names with the model's
    registered ``checkpoint_filter`` (models built by a registered entrypoint carry their name).

    Raises:
        CheckpointError: one line naming the file and the model: an unreadable file, weights of another layer kind
            or a stored config that disagrees with the model (:func:`~.checkpoint.check_layer_kinds`, with the
            option that fits), missing / unexpected keys or other shapes.
    """
    state = read_state_dict(checkpoint_path, use_ema=use_ema)
    model_cfg = getattr(model, "frugalvision_cfg", {})
    name = model_cfg.get("model")
    kinds = ", ".join(f"{k}={v!r}" for k, v in model_cfg.get("kwargs", {}).items() if k in (*KIND_OPTIONS, "deploy"))
    what = f"checkpoint {checkpoint_path} does not fit {name or type(model).__name__}{f' ({kinds})' if kinds else ''}"
    check_layer_kinds(state, model, what, read_checkpoint_config(checkpoint_path))
    checkpoint_filter = model_entry(name).checkpoint_filter if name else None
    if checkpoint_filter is not None:
        try:
            state = checkpoint_filter(state, model)
        except CheckpointError as error:  # a filter's finding about the file, e.g. a VanillaNet in the other form
            raise CheckpointError(f"{what}: {error}") from None
    check_state_dict_fits(state, model.state_dict(), what)
    model.load_state_dict(state, strict=True)
    return model


def load_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild a model saved by frugalvision (checkpoint file or run folder) in eval mode."""
    config = read_checkpoint_config(path)
    if config is None or "model" not in config:
        raise CheckpointError(
            f"{path} carries no frugalvision model config; use create_model(name, checkpoint_path=...) instead"
        )
    loader = checkpoint_loader(config)  # another kind of model, e.g. an integer one (see .checkpoint)
    if loader is not None:
        return loader(path, config)
    model = create_model(config["model"], **config.get("kwargs", {}))
    load_checkpoint(model, path)
    restore_data_config(model, config, path)
    return model.eval()
