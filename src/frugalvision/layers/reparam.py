"""Fusion algebra for structural re-parameterisation: pure functions on weight tensors.

Every deploy-time fusion in frugalvision is a composition of three linear identities:

* **Conv + BatchNorm fold** (inference BN is a per-channel affine map ``y = s * (z - mu) + beta`` with
  ``s = gamma / sqrt(var + eps)``): ``W' = W * s[o]``, ``b' = beta + (b - mu) * s``.
* **1x1 after k x k merge**: a 1x1 convolution ``(W2, b2)`` applied to the output of any convolution ``(W1, b1)``
  with ``groups=1`` is one convolution with ``W[o, c, i, j] = sum_m W2[o, m] W1[m, c, i, j]`` and
  ``b = W2 b1 + b2``. This is exact for any kernel size, stride and padding of the first conv, because the 1x1
  acts point-wise on its output (zero padding stays inside the first conv).
* **BN after a bias-free depthwise conv** is the conv+BN fold with ``b = 0``.

:func:`reparameterize_model` applies the fusions of a whole model: it calls each re-parameterisable module's
``switch_to_deploy()`` (the name used by VanillaNet and RepVGG; ``reparameterize()`` and ``fuse()``, timm's and others'
names, are accepted too). The walk calls the outermost such module and does not descend into it: a model's own
method knows how to fuse its children together (VanillaNet merges the stem's conv with its 1x1 conv, which no child
could do alone).

These are the fusions of VanillaNet (Chen et al., "VanillaNet: the Power of Minimalism in Deep Learning",
NeurIPS 2023, arXiv 2305.12972, Sec. 3 "deep training" and the deploy conversion) and of RepVGG (Ding et al.,
CVPR 2021, arXiv 2101.03697). All functions work in float64 internally when given float64 tensors and return
contiguous tensors (fused weights with channels-last strides slow some backends down).
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import Tensor, nn

from ..errors import InputError

__all__ = ["bn_scale_shift", "fold_bn", "fold_bn_into_conv", "merge_1x1_after", "reparameterize_model", "to_conv"]


def bn_scale_shift(bn: nn.BatchNorm2d | nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """The per-channel affine map ``y = scale * x + shift`` an inference-mode BatchNorm computes.

    Raises:
        ValueError: when the BN keeps no running statistics (its inference map is undefined).
    """
    if bn.running_mean is None or bn.running_var is None:
        raise InputError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    mean, var = bn.running_mean.detach(), bn.running_var.detach()
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    return scale, beta - mean * scale


def fold_bn(weight: Tensor, bias: Tensor | None, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """Fold an inference-mode BatchNorm that follows a conv ``(weight, bias)`` into that conv.

    Args:
        weight: (O, I/groups, kh, kw) convolution weight (any trailing dims; the BN acts on dim 0).
        bias: (O,) or None (a bias-free conv, e.g. VanillaNet's series-activation depthwise conv).
        bn: the BatchNorm over the O output channels.

    Returns:
        ``(W', b')`` with ``W' = W * s`` and ``b' = shift + b * s`` (``s``, ``shift`` from :func:`bn_scale_shift`).
    """
    scale, shift = bn_scale_shift(bn)
    scale, shift = scale.to(weight.dtype), shift.to(weight.dtype)
    w = weight.detach() * scale.reshape(-1, *([1] * (weight.dim() - 1)))  # (O,) -> (O, 1, 1, 1) broadcast
    b = shift if bias is None else shift + bias.detach() * scale
    return w.contiguous(), b.contiguous()


def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """:func:`fold_bn` for a ``Conv2d`` module followed by a ``BatchNorm2d`` module."""
    return fold_bn(conv.weight, conv.bias, bn)


def merge_1x1_after(w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None) -> tuple[Tensor, Tensor]:
    """One convolution equal to ``conv1x1(w2, b2)(conv(w1, b1)(x))``.

    Args:
        w1: (M, C, kh, kw) weight of the first conv (groups=1; any kernel size, stride, padding).
        b1: (M,) or None.
        w2: (O, M, 1, 1) weight of the second conv (a 1x1, stride 1, no padding, groups=1), or (O, M).
        b2: (O,) or None.

    Returns:
        ``(W, b)`` with W (O, C, kh, kw) and b (O,); both contiguous. The fused conv keeps the first conv's
        stride and padding.
    """
    mix = w2.detach().reshape(w2.shape[0], w2.shape[1])  # (O, M, 1, 1) -> (O, M)
    if mix.shape[1] != w1.shape[0]:
        raise InputError(f"cannot merge: second conv expects {mix.shape[1]} channels, first gives {w1.shape[0]}")
    w = torch.einsum("om,mckl->ockl", mix, w1.detach())  # (O, M) x (M, C, kh, kw) -> (O, C, kh, kw)
    b = torch.zeros(mix.shape[0], dtype=w.dtype, device=w.device) if b2 is None else b2.detach().clone()
    if b1 is not None:
        b = b + mix @ b1.detach()
    return w.contiguous(), b.contiguous()


def to_conv(weight: Tensor, bias: Tensor | None, like: nn.Conv2d) -> nn.Conv2d:
    """A new ``Conv2d`` with the geometry of ``like`` (stride, padding, dilation, groups) holding ``weight``/``bias``.

    The parameters are contiguous copies on ``like``'s device and dtype.
    """
    out_chans = weight.shape[0]
    in_chans = weight.shape[1] * like.groups
    conv = nn.Conv2d(in_chans, out_chans, tuple(weight.shape[2:]), stride=like.stride, padding=like.padding,
                     dilation=like.dilation, groups=like.groups, bias=bias is not None,
                     padding_mode=like.padding_mode, device=like.weight.device, dtype=like.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight.contiguous())
        if bias is not None:
            conv.bias.copy_(bias)
    return conv


# ----------------------------------------------------------------------------------------------------------------
# The whole-model walk

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
        ConfigError: when a module refuses to fuse (e.g. a VanillaNet whose deep-training act_learn is not 1).

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
