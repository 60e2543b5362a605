"""Model registry: ``@register_model`` entrypoints looked up by name (timm-style)."""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Callable

from torch import nn

__all__ = ["is_model", "list_models", "model_entrypoint", "model_train_defaults", "register_model", "train_defaults"]

_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}
_FAMILIES: dict[str, str] = {}  # model name -> module that defines it


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its ``__name__`` and add it to its module's ``__all__``."""
    name = fn.__name__
    if name in _ENTRYPOINTS:
        raise ValueError(f"model {name!r} is registered twice")
    _ENTRYPOINTS[name] = fn
    _FAMILIES[name] = fn.__module__.rsplit(".", 1)[-1]
    module = sys.modules[fn.__module__]
    if hasattr(module, "__all__") and name not in module.__all__:
        module.__all__.append(name)
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models that match the shell-style ``pattern``."""
    return sorted(name for name in _ENTRYPOINTS if fnmatch.fnmatch(name, pattern))


def is_model(name: str) -> bool:
    return name in _ENTRYPOINTS


def model_family(name: str) -> str:
    return _FAMILIES[name]


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    if name not in _ENTRYPOINTS:
        close = [m for m in _ENTRYPOINTS if name.split("_")[0] in m][:5]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (see `frugalvision.list_models()`)")
    return _ENTRYPOINTS[name]


def train_defaults(**options: object) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator (below ``@register_model``) recording the training options a model trains well with by default,
    e.g. ``@train_defaults(epochs=30, lr=0.1)``; recipes and command-line flags override them."""

    def mark(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        fn.train_defaults = dict(options)
        return fn

    return mark


def model_train_defaults(name: str) -> dict[str, object]:
    return dict(getattr(model_entrypoint(name), "train_defaults", {}))
