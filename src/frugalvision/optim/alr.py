"""Adaptive learning rate of AdderNet (Chen et al., CVPR 2020, Eq. 12-13).

For every adder weight tensor F_l: ``grad <- eta * sqrt(numel(F_l)) * grad / max(||grad||_2, 1e-12)``, eta = 0.2
(the official value; maintainers found it by a search over 0.01-10). The update RMS is then exactly ``eta * lr``
before momentum and weight decay.

Where it is applied matters. The official code normalises inside the layer's backward, i.e. once per
backward call and before loss-scale removal, gradient accumulation and all-reduce. That silently breaks
``GradScaler`` (the normalised gradient is divided by the scale afterwards), gradient accumulation (a sum of unit
directions) and multi-GPU training. Modes:

    "alr"       (default) normalise the *final* gradient: call :meth:`AdaptiveLR.apply` after ``scaler.unscale_``
                and after DDP's all-reduce, right before ``optimizer.step()``.
    "official"  per-backward normalisation through gradient hooks, for parity with the released code.
    "ilr"       no normalisation; adder weights get ``ilr_factor`` (100) times the learning rate (paper ablation).
    "none"      plain gradients.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..layers.adder import Adder2d
from ..names import ALR_MODES

__all__ = ["ALR_MODES", "AdaptiveLR", "adder_weights"]



def adder_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weight tensors of every :class:`Adder2d` in ``model`` (each normalised on its own)."""
    return [m.weight for m in model.modules() if isinstance(m, Adder2d)]


def _normalised(grad: Tensor, eta: float) -> Tensor:
    norm = torch.linalg.vector_norm(grad).clamp_min(1e-12)
    return grad * (eta * math.sqrt(grad.numel()) / norm)


class AdaptiveLR:
    """Applies one of :data:`ALR_MODES` to the adder weights of a model.

    Args:
        params: the adder weights (see :func:`adder_weights`).
        mode: one of :data:`ALR_MODES`.
        eta: the ALR hyper-parameter (Eq. 13).
        ilr_factor: learning-rate multiplier of the ``"ilr"`` mode.

    Example:
        >>> alr = AdaptiveLR(adder_weights(model))
        >>> optimizer = torch.optim.SGD(alr.param_groups(model.parameters(), lr=0.1), momentum=0.9)
        >>> loss.backward(); alr.apply(); optimizer.step()
    """

    def __init__(self, params: Iterable[nn.Parameter], mode: str = "alr", eta: float = 0.2,
                 ilr_factor: float = 100.0) -> None:
        if mode not in ALR_MODES:
            raise ConfigError(f"unknown adaptive learning-rate mode {mode!r}; choose one of {', '.join(ALR_MODES)}")
        if eta <= 0:
            raise ConfigError(f"eta must be positive, got {eta}")
        self.params = list(params)
        self.mode, self.eta, self.ilr_factor = mode, eta, ilr_factor
        self._hooks = []
        if mode == "official":
            self._hooks = [p.register_hook(lambda g: _normalised(g, self.eta)) for p in self.params]

    def param_groups(self, params: Iterable[nn.Parameter], lr: float, **group_options: Any) -> list[dict[str, Any]]:
        """Optimizer parameter groups: in ``"ilr"`` mode the adder weights form a group with ``ilr_factor * lr``."""
        params = list(params)
        if self.mode != "ilr" or not self.params:
            return [{"params": params, "lr": lr, **group_options}]
        adder_ids = {id(p) for p in self.params}
        others = [p for p in params if id(p) not in adder_ids]
        adders = [p for p in params if id(p) in adder_ids]
        return [{"params": others, "lr": lr, **group_options},
                {"params": adders, "lr": lr * self.ilr_factor, **group_options}]

    @torch.no_grad()
    def apply(self) -> None:
        """Normalise the accumulated gradients (``"alr"`` mode; a no-op in the other modes)."""
        if self.mode != "alr":
            return
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return
        norms = torch._foreach_norm(grads)  # one reduction per tensor, fused
        for grad, norm in zip(grads, norms):
            grad.mul_(self.eta * math.sqrt(grad.numel()) / norm.clamp_min(1e-12))

    def remove(self) -> None:
        """Detach the gradient hooks of the ``"official"`` mode."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
