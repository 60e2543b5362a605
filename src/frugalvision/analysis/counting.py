"""Arithmetic cost of a forward pass, counted by dispatch: multiplications, additions, XNORs, energy, latency.

Counting intercepts the ATen / ``frugalvision::`` ops that a model actually runs (``TorchDispatchMode``), so any
model is counted, including user models built from frugalvision layers. Each op kind has a cost formula
(:mod:`frugalvision.ops.cost`): frugalvision's ops register theirs next to their definition, PyTorch's are
registered here. The innermost module running an op is recorded with it, which
tells binary convolutions (XNOR + popcount) from ordinary ones.

Conventions (those of the AdderNet paper, Chen et al. CVPR 2020, Tables 1-3):
    convolution / linear: one multiplication and one addition per multiply-accumulate (MAC), plus bias additions;
    adder layer: two additions per term (the subtraction and the accumulation), no multiplication;
    binary convolution: one XNOR and one addition (popcount accumulation) per MAC; the per-channel scale folds into
        the following BatchNorm and is not counted;
    BatchNorm (inference): one multiplication and one addition per element (the folded affine map).
``paper_convention=True`` drops BatchNorm and the first and last weight layers, as the paper's CIFAR/ImageNet
tables do. Energy uses Horowitz, "Computing's Energy Problem", ISSCC 2014 (45 nm); latency uses the VIA Nano 2000
latencies the paper quotes (FP add 2 cycles, FP mul 4 cycles). XNORs have no entry in either table and are left
unpriced (reported as a count only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from .. import ops  # noqa: F401  (registers the frugalvision:: ops and their cost formulas)
from ..errors import ConfigError
from ..layers.binary import BinaryConv2d
from ..ops.cost import NORM, WEIGHT_LAYER, cost_formula, register_cost

__all__ = ["ENERGY_SOURCE", "ENERGY_TABLES", "LATENCY_SOURCE", "EnergyTable", "count_ops", "human", "parameter_count"]


# Where the rates come from, short, for the captions under cost tables (EnergyTable.source has the long form)
ENERGY_SOURCE = "45 nm, Horowitz 2014"
LATENCY_SOURCE = "VIA Nano 2000"


@dataclass(frozen=True)
class EnergyTable:
    """Energy per operation in picojoules and latency in cycles."""

    name: str
    add_pj: float
    mul_pj: float
    add_cycles: int = 2
    mul_cycles: int = 4
    source: str = "Horowitz, ISSCC 2014, 45 nm, 0.9 V; latency: VIA Nano 2000 (Agner Fog), as in AdderNet Sec. 4.1"

    def caption(self) -> str:
        """The line under a cost table priced with this table: its rates and their sources."""
        return (f"Energy: {self.name.upper()} add {self.add_pj:g} pJ, mul {self.mul_pj:g} pJ ({ENERGY_SOURCE}). "
                f"Latency: add {self.add_cycles}, mul {self.mul_cycles} cycles ({LATENCY_SOURCE}).")


def human(value: float) -> str:
    """An operation or parameter count for people: 1234567 -> '1.23M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


ENERGY_TABLES = {
    "fp32": EnergyTable("fp32", add_pj=0.9, mul_pj=3.7),
    "int8": EnergyTable("int8", add_pj=0.03, mul_pj=0.2),
}

def _convolution(args, kwargs, out, module):
    weight, bias = args[1], args[2]
    macs = out.numel() * weight[0].numel()  # every output element is one dot product over C_in/groups*kh*kw
    bias_adds = out.numel() if bias is not None else 0
    if isinstance(module, BinaryConv2d):
        return WEIGHT_LAYER, {"xnor": macs, "add": macs + bias_adds}
    return WEIGHT_LAYER, {"mul": macs, "add": macs + bias_adds}


def _matmul(args, kwargs, out, module):
    inner = args[0].shape[-1]
    return WEIGHT_LAYER, {"mul": out.numel() * inner, "add": out.numel() * inner}


def _addmm(args, kwargs, out, module):
    inner = args[1].shape[-1]
    return WEIGHT_LAYER, {"mul": out.numel() * inner, "add": out.numel() * (inner + 1)}


def _batch_norm(args, kwargs, out, module):
    y = out[0] if isinstance(out, (tuple, list)) else out
    return NORM, {"mul": y.numel(), "add": y.numel()}


aten = torch.ops.aten
register_cost(aten.convolution.default, _convolution)
register_cost(aten.mm.default, _matmul)
register_cost(aten.bmm.default, _matmul)
register_cost(aten.addmm.default, _addmm)
for _op in (aten._native_batch_norm_legit_no_training.default, aten._native_batch_norm_legit.default,
            aten.native_batch_norm.default):
    register_cost(_op, _batch_norm)


class _Counter(TorchDispatchMode):
    def __init__(self, module_stack: list[tuple[str, nn.Module]]) -> None:
        super().__init__()
        self.module_stack = module_stack
        self.records: list[dict[str, Any]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = cost_formula(func)
        if formula is not None:
            name, module = self.module_stack[-1] if self.module_stack else ("", None)
            result = formula(args, kwargs, out, module)
            for kind, counts in ([result] if isinstance(result, tuple) else result or []):
                self.records.append({"module": name, "op": str(func.overloadpacket.__name__), "kind": kind,
                                     "mul": counts.get("mul", 0), "add": counts.get("add", 0),
                                     "xnor": counts.get("xnor", 0), "precision": counts.get("precision")})
        return out


def _run_counted(model: nn.Module, stack: list[tuple[str, nn.Module]], x: Tensor) -> list[dict[str, Any]]:
    """Run ``model`` on the meta device (shapes only, instant even for ImageNet models) and record its ops.

    Parameters and buffers are swapped for meta tensors for the duration of the call and restored afterwards, so
    the model's weights are never copied or touched.
    """
    saved = {}
    for module in model.modules():
        for name, tensor in [*module._parameters.items(), *module._buffers.items()]:
            if tensor is not None:
                saved[(module, name)] = tensor
                meta = torch.empty_like(tensor, device="meta")
                if name in module._parameters:
                    module._parameters[name] = nn.Parameter(meta, requires_grad=tensor.requires_grad)
                else:
                    module._buffers[name] = meta
    counter = _Counter(stack)
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        for (module, name), tensor in saved.items():
            if name in module._parameters:
                module._parameters[name] = tensor
            else:
                module._buffers[name] = tensor
    return counter.records


def parameter_count(model: nn.Module) -> int:
    """The model's parameters as ``count`` reports them: its parameters; an integer model's weights are buffers
    (uint8 / int8), counted by its own rule (:func:`frugalvision.quant.modules.weight_count`)."""
    from ..quant import is_quantized, weight_count

    return weight_count(model) if is_quantized(model) else sum(p.numel() for p in model.parameters())


def count_ops(
    model: nn.Module,
    input_size: Sequence[int],
    *,
    paper_convention: bool = False,
    energy: str = "fp32",
    batch_size: int = 1,
) -> dict[str, Any]:
    """Count the arithmetic of one forward pass of ``model`` on a (batch_size, *input_size) input.

    Args:
        model: any ``nn.Module``; it is run once in eval mode on the meta device (no arithmetic is done, its
            weights are untouched and its mode is restored).
        input_size: (C, H, W).
        paper_convention: exclude BatchNorm and the first and last weight layers (AdderNet Tables 2-3).
        energy: ``"fp32"`` or ``"int8"`` (see :data:`ENERGY_TABLES`): the arithmetic that operations without a
            fixed precision are priced at. Integer kernels fix theirs (an integer model's adder layers: int8
            additions; its requantisation: float32 multiply-adds), whatever is chosen here.

    Returns:
        ``params``, ``mul``, ``add``, ``xnor``, ``energy_pj``, ``latency_cycles`` (per image), ``by_precision``
        (``{"int8"|"fp32": {"mul", "add"}}`` per image), plus ``layers`` (one record per counted op: module, op, kind,
        mul, add, xnor, precision) and ``energy_table``.
    """
    if energy not in ENERGY_TABLES:
        raise ConfigError(f"unknown energy table {energy!r}; choose one of {', '.join(ENERGY_TABLES)}")
    if len(input_size) != 3:
        raise ConfigError(f"input_size must be (C, H, W), got {tuple(input_size)}")
    table = ENERGY_TABLES[energy]
    stack: list[tuple[str, nn.Module]] = []
    hooks = []

    def enter(name: str, module: nn.Module) -> None:
        stack.append((name, module))

    def leave(*_: Any) -> None:
        stack.pop()

    for name, module in model.named_modules():
        hooks.append(module.register_forward_pre_hook(lambda m, a, name=name: enter(name, m)))
        hooks.append(module.register_forward_hook(leave))
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = model.training
    try:
        model.eval()
        records = _run_counted(model, stack, torch.zeros(batch_size, *input_size, device="meta", dtype=dtype))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    if paper_convention:
        weight_idx = [i for i, r in enumerate(records) if r["kind"] == WEIGHT_LAYER]
        dropped = {weight_idx[0], weight_idx[-1]} if weight_idx else set()
        records = [r for i, r in enumerate(records) if i not in dropped and r["kind"] != NORM]
    totals = {key: sum(r[key] for r in records) // batch_size for key in ("mul", "add", "xnor")}
    by_precision: dict[str, dict[str, int]] = {}
    for r in records:
        entry = by_precision.setdefault(r["precision"] or table.name, {"mul": 0, "add": 0})
        entry["mul"] += r["mul"] // batch_size
        entry["add"] += r["add"] // batch_size
    priced = {name: ENERGY_TABLES[name] for name in by_precision}
    return {
        "params": parameter_count(model),
        **totals,
        "energy_pj": sum(c["mul"] * priced[p].mul_pj + c["add"] * priced[p].add_pj for p, c in by_precision.items()),
        "latency_cycles": sum(c["mul"] * priced[p].mul_cycles + c["add"] * priced[p].add_cycles
                              for p, c in by_precision.items()),
        "by_precision": by_precision,
        "energy_table": table.name,
        "paper_convention": paper_convention,
        "layers": records,
    }

