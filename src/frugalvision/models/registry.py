"""Model registry: entrypoints registered by name (timm-style), each with what it needs beyond its constructor.

``@register_model`` records, next to the entrypoint function:

* ``checkpoint_filter``: how to turn an *official* checkpoint's state dict into this model's key names (timm's
  ``pretrained_filter_fn`` idea); passed explicitly by each entrypoint, ``None`` when official files already match.
* ``data_config``: the preprocessing of the data its recipes and released weights use (input size, mean, std,
  resize/crop policy, classes; timm's ``pretrained_cfg`` idea), used whenever a checkpoint carries no config of its own.
* ``train_defaults`` (from ``@train_defaults``): the training options the model trains well with by default.

Calling a registered entrypoint, directly or through :func:`~frugalvision.models.create_model`, stamps the model
with ``frugalvision_cfg = {"model": name, "kwargs": {...}}`` (what checkpoints store so that the model can be
rebuilt) and ``data_config`` (the default above, fitted to the ``num_classes`` / ``in_chans`` it was built with; a
checkpoint's own config replaces it when loaded by :func:`~frugalvision.models.load_model`).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..data import DataConfig
from ..errors import ConfigError

__all__ = [
    "CheckpointFilter",
    "ModelEntry",
    "check_model_options",
    "fit_data_config",
    "is_model",
    "list_models",
    "model_entry",
    "model_entrypoint",
    "model_option_defaults",
    "model_train_defaults",
    "register_model",
    "train_defaults",
]

# filter(state_dict, model) -> state_dict with this library's key names (may fuse, convert or add entries)
CheckpointFilter = Callable[[dict[str, Tensor], nn.Module], dict[str, Tensor]]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its entrypoint and the facts recorded with it."""

    name: str
    entrypoint: Callable[..., nn.Module]
    checkpoint_filter: CheckpointFilter | None = None
    data_config: DataConfig | None = None
    train_defaults: Mapping[str, Any] = field(default_factory=dict)


_ENTRIES: dict[str, ModelEntry] = {}


def register_model(
    fn: Callable[..., nn.Module] | None = None,
    *,
    checkpoint_filter: CheckpointFilter | None = None,
    data_config: DataConfig | None = None,
) -> Any:
    """Register an entrypoint under its ``__name__`` (bare, or ``@register_model(checkpoint_filter=...,
    data_config=...)``).

    The registered function is a wrapper that stamps every model it returns with ``frugalvision_cfg`` (name and
    the keyword arguments it was called with) and ``data_config``; it is added to its module's ``__all__``.
    """

    def register(entrypoint: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = entrypoint.__name__
        if name in _ENTRIES:
            raise RuntimeError(f"model {name!r} is registered twice")

        @functools.wraps(entrypoint)
        def build(**kwargs: Any) -> nn.Module:
            check_model_options(name, entrypoint, kwargs)
            model = entrypoint(**kwargs)
            model.frugalvision_cfg = {"model": name, "kwargs": dict(kwargs)}
            model.data_config = fit_data_config(data_config, kwargs) if data_config is not None else None
            return model

        _ENTRIES[name] = ModelEntry(name, build, checkpoint_filter, data_config,
                                    dict(getattr(entrypoint, "train_defaults", {})))
        module = sys.modules[entrypoint.__module__]
        if hasattr(module, "__all__") and name not in module.__all__:
            module.__all__.append(name)
        return build

    return register(fn) if fn is not None else register


def _keyword_names(target: Callable[..., Any]) -> tuple[set[str], bool]:
    """The keyword parameters of ``target`` and whether it also takes ``**kwargs``."""
    params = inspect.signature(target).parameters.values()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def check_model_options(name: str, entrypoint: Callable[..., nn.Module], options: Mapping[str, Any]) -> None:
    """Refuse options that neither ``entrypoint`` nor, when it passes ``**kwargs`` on, the model class it returns
    (its return annotation) takes. Options a class passes on in turn go to its layers, which check them
    (:func:`~frugalvision.layers.create_conv2d`). Checked before the model is built, so that a ``TypeError`` raised
    while building it is a bug, never a user's typo.

    Raises:
        ConfigError: an unknown option (the message lists the known ones).
    """
    accepted, forwards = _keyword_names(entrypoint)
    if forwards:
        returned = typing.get_type_hints(entrypoint).get("return")
        if not isinstance(returned, type):
            return
        class_names, forwards = _keyword_names(returned)
        accepted |= class_names
        if forwards:
            return
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"model {name} has no option {', '.join(map(repr, unknown))}; its options: "
                          f"{', '.join(sorted(accepted))}")


def fit_data_config(config: DataConfig, model_kwargs: Mapping[str, Any]) -> DataConfig | None:
    """``config`` adapted to a model built with other ``num_classes`` / ``in_chans``: class names are dropped when
    the count changes; 1 <-> 3 channels repeat or average mean and std (other channel counts have no default)."""
    changes: dict[str, Any] = {}
    num_classes = model_kwargs.get("num_classes")
    if num_classes is not None and num_classes != config.num_classes:
        changes.update(num_classes=num_classes, class_names=None)
    in_chans = model_kwargs.get("in_chans")
    if in_chans is not None and in_chans != config.input_size[0]:
        if in_chans not in (1, 3):
            return None
        mean = [sum(config.mean) / len(config.mean)] * in_chans if in_chans == 1 else list(config.mean) * 3
        std = [sum(config.std) / len(config.std)] * in_chans if in_chans == 1 else list(config.std) * 3
        changes.update(input_size=(in_chans, *config.input_size[1:]), mean=tuple(mean), std=tuple(std))
    return config.replace(**changes) if changes else config


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models that match the shell-style ``pattern``."""
    return sorted(name for name in _ENTRIES if fnmatch.fnmatch(name, pattern))


def is_model(name: str) -> bool:
    return name in _ENTRIES


def model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; a one-line :class:`~frugalvision.errors.ConfigError` for unknown names."""
    if name not in _ENTRIES:
        close = difflib.get_close_matches(str(name), list(_ENTRIES), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint} (see `frugalvision.list_models()`)")
    return _ENTRIES[name]


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    return model_entry(name).entrypoint


def model_option_defaults(name: str) -> dict[str, Any]:
    """The defaults of the options a registered entrypoint names in its signature, e.g. ``{"num_classes": 10,
    "in_chans": 3, "conv_type": "adder"}`` for ``resnet20``: what a model built without them uses. Options that
    only reach the model class through ``**kwargs`` are not listed (an entrypoint may fix them, as ``small_cnn``
    does)."""
    params = inspect.signature(inspect.unwrap(model_entrypoint(name))).parameters.values()
    return {p.name: p.default for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty}


def train_defaults(**options: object) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator (below ``@register_model``) recording the training options a model trains well with by default,
    e.g. ``@train_defaults(epochs=30, lr=0.1)``; recipes and command-line flags override them."""

    def mark(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        fn.train_defaults = dict(options)
        return fn

    return mark


def model_train_defaults(name: str) -> dict[str, Any]:
    return dict(model_entry(name).train_defaults)
