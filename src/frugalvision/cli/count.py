"""``frugalvision count``: parameters, multiplications, additions, XNORs, energy and latency of a model."""

from __future__ import annotations

import argparse
import json

from ..names import ENERGY_TABLE_NAMES
from .options import add_model_arguments

HELP = "count params, mul, add, xnor, energy and latency of a model"
DESCRIPTION = ("Count the arithmetic of one forward pass (per image) of a model: a freshly built --model, or a run "
               "folder / checkpoint (official files with --model).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p, checkpoint="optional")
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), default=None,
                   help="input size (default: the checkpoint's or model's data config, e.g. 1 28 28 for LeNet)")
    p.add_argument("--paper-convention", action="store_true",
                   help="exclude BatchNorm and the first and last layers, like the AdderNet paper's tables")
    p.add_argument("--energy", choices=ENERGY_TABLE_NAMES, default="fp32",
                   help="price operations of no fixed precision as fp32 or int8; an integer model's adder "
                   "layers are int8 and its requantisation fp32 either way")
    p.add_argument("--layers", action="store_true", help="also list every counted layer")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..analysis import counting
    from ..analysis.counting import human
    from .common import load_model_from_args, model_input_size, print_table

    model = load_model_from_args(args)
    input_size = model_input_size(model, args.input_size)
    costs = counting.count_ops(model, input_size, paper_convention=args.paper_convention, energy=args.energy)
    name = model.frugalvision_cfg["model"] if hasattr(model, "frugalvision_cfg") else type(model).__name__
    conv_type = getattr(model, "frugalvision_cfg", {}).get("kwargs", {}).get("conv_type")
    if args.json:
        out = {k: v for k, v in costs.items() if args.layers or k != "layers"}
        print(json.dumps({"model": name, "conv_type": conv_type, "checkpoint": args.checkpoint,
                          "input_size": list(input_size), **out}))
        return 0
    title = name + (f" ({conv_type})" if conv_type else "")
    print_table(
        f"{title} at {tuple(input_size)}" + (", paper convention" if args.paper_convention else ""),
        ("params", "mul", "add", "xnor", "energy µJ", "latency Mcycles"),
        [(human(costs["params"]), human(costs["mul"]), human(costs["add"]), human(costs["xnor"]),
          f"{costs['energy_pj'] / 1e6:.3f}", f"{costs['latency_cycles'] / 1e6:.3f}")],
        caption=f"energy: {_priced(costs)}; XNORs unpriced",
    )
    if args.layers:
        print_table("layers", ("module", "op", "mul", "add", "xnor", "priced as"),
                    [(r["module"], r["op"], r["mul"], r["add"], r["xnor"], r["precision"] or costs["energy_table"])
         for r in costs["layers"]])
    return 0


def _priced(costs: dict) -> str:
    """How the energy was priced: per arithmetic, the multiplications and additions counted at its rates."""
    from ..analysis.counting import ENERGY_SOURCE, human

    parts = [f"{name} {human(c['mul'])} mul + {human(c['add'])} add"
             for name, c in sorted(costs["by_precision"].items())]
    return (", ".join(parts) or "no arithmetic") + f" ({ENERGY_SOURCE}; integer kernels fix their own arithmetic)"
