"""``reparameterize_model``: the deploy (fused) copy of any model built from re-parameterisable modules.

A module is re-parameterisable when it has a ``switch_to_deploy()`` method (the name used by VanillaNet and
RepVGG; ``reparameterize()`` and ``fuse()``, timm's and others' names, are accepted too) that fuses it in place.
The walk calls the outermost such module and does not descend into it: a model's own method knows how to fuse its
children together (e.g. VanillaNet merges the stem's conv with its 1x1 conv, which no child could do alone).
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import nn

__all__ = ["reparameterize_model"]

_METHODS = ("switch_to_deploy", "reparameterize", "fuse")
M = TypeVar("M", bound=nn.Module)


def _fuse_in_place(module: nn.Module) -> None:
    for method in _METHODS:
        fn = getattr(module, method, None)
        if callable(fn):
            fn()
            return
    for child in module.children():
        _fuse_in_place(child)


@torch.no_grad()
def reparameterize_model(model: M) -> M:
    """Return a fused deploy copy of ``model`` in eval mode; ``model`` itself is left untouched.

    BatchNorms are folded with their running statistics, so the copy computes what ``model.eval()`` computes.
    Every parameter of the copy is contiguous.

    Raises:
        ValueError: when a module refuses to fuse (e.g. a VanillaNet whose deep-training act_learn is not 1).

    Example:
        >>> fused = reparameterize_model(create_model("vanillanet_5"))
    """
    fused = copy.deepcopy(model).eval()
    _fuse_in_place(fused)
    for param in fused.parameters():
        if not param.is_contiguous():
            param.data = param.data.contiguous()
    if hasattr(fused, "frugalvision_cfg") and getattr(fused, "deploy", False) is True:
        cfg = copy.deepcopy(fused.frugalvision_cfg)
        cfg.setdefault("kwargs", {})["deploy"] = True
        fused.frugalvision_cfg = cfg
    return fused
