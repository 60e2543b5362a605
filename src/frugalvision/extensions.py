"""Kinds of checkpoint served by packages above the model zoo, declared by module name.

:func:`frugalvision.models.load_model` rebuilds any frugalvision file; a kind other than a plain registered model (an
integer model: the config key ``"quantized"``) is rebuilt by a loader its own package registers with
:func:`frugalvision.models.register_checkpoint_loader` when imported. The package facade declares here which module
registers the loader of each key, without importing it (that would import torch and the integer kernels on every
``import frugalvision``); the model zoo imports the declared module the first time it meets such a file. This module
imports nothing, so that the lowest layers may read it.
"""

from __future__ import annotations

__all__ = ["declare_checkpoint_loader", "declared_checkpoint_loaders"]

_DECLARED: dict[str, str] = {}


def declare_checkpoint_loader(key: str, module: str) -> None:
    """Importing ``module`` (a dotted name) registers the loader of checkpoints whose config holds ``key``."""
    _DECLARED[key] = module


def declared_checkpoint_loaders() -> dict[str, str]:
    """Config key -> the module whose import registers its loader."""
    return dict(_DECLARED)
