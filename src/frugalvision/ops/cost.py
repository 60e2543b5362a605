"""Arithmetic cost formulas of ops, registered next to each op and read by :func:`frugalvision.count_ops`.

A formula receives what the op was called with and what it returned (meta tensors during counting: shapes only)
plus the innermost module running it, and says what kind of layer the op is and how many operations it performs::

    formula(args, kwargs, output, module) -> (kind, counts) | [(kind, counts), ...] | None
    counts = {"mul": int, "add": int, "xnor": int, "precision": "int8" | "fp32" (optional)}

``kind`` is :data:`WEIGHT_LAYER` for layers with weights (the paper convention drops the first and last of them),
:data:`NORM` for normalisation (dropped by the paper convention), or any other string. ``None`` skips the call. An op
that does two kinds of arithmetic (the integer adder layer: int8 absolute differences, then a float32
requantisation) returns one record for each. ``precision`` says in which arithmetic the operations run when the op
fixes it (integer kernels); records without it are priced at the energy table the caller chooses.
frugalvision's own ops register their formula in their module (:mod:`.adder2d`, :mod:`.adaptive_conv`); PyTorch's
ops are registered by :mod:`frugalvision.analysis.counting`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

__all__ = ["NORM", "WEIGHT_LAYER", "CostFormula", "CostRecord", "cost_formula", "register_cost"]

WEIGHT_LAYER = "weight"
NORM = "norm"

CostRecord = tuple[str, dict[str, Any]]
CostFormula = Callable[[Sequence[Any], dict[str, Any], Any, nn.Module | None], CostRecord | list[CostRecord] | None]
_FORMULAS: dict[Any, CostFormula] = {}


def register_cost(op: Any, formula: CostFormula) -> None:
    """Count every call of ``op`` (an ``OpOverload``, e.g. ``torch.ops.frugalvision.adder2d.default``) with
    ``formula``."""
    _FORMULAS[op] = formula


def cost_formula(op: Any) -> CostFormula | None:
    """The formula registered for ``op``, or ``None`` (the op is not counted)."""
    return _FORMULAS.get(op)
