"""``frugalvision count``: parameters, multiplications, additions, XNORs, energy and latency of a model."""

from __future__ import annotations

import argparse
import json

from ..errors import ConfigError
from .common import human, print_table


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("count", help="count params, mul, add, xnor, energy and latency of a model",
                              description="Count the arithmetic of one forward pass (per image).")
    p.add_argument("--model", required=True)
    p.add_argument("--conv-type", help="conv | adder | binary (models that have twins)")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), default=None,
                   help="input size (default: the model's dataset size, e.g. 1 28 28 for LeNet)")
    p.add_argument("--paper-convention", action="store_true",
                   help="exclude BatchNorm and the first and last layers, like the AdderNet paper's tables")
    p.add_argument("--energy", choices=("fp32", "int8"), default="fp32")
    p.add_argument("--layers", action="store_true", help="also list every counted layer")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    from ..analysis.counting import count_ops
    from ..models import create_model

    kwargs = {"conv_type": args.conv_type, "num_classes": args.num_classes}
    model = create_model(args.model, **kwargs)
    input_size = args.input_size or getattr(model, "default_input_size", None)
    if input_size is None:
        raise ConfigError(f"--input-size C H W is needed for {args.model}")
    costs = count_ops(model, input_size, paper_convention=args.paper_convention, energy=args.energy)
    if args.json:
        out = {k: v for k, v in costs.items() if args.layers or k != "layers"}
        print(json.dumps({"model": args.model, "conv_type": args.conv_type, "input_size": list(input_size), **out}))
        return 0
    name = args.model + (f" ({args.conv_type})" if args.conv_type else "")
    print_table(
        f"{name} at {tuple(input_size)}" + (", paper convention" if args.paper_convention else ""),
        ("params", "mul", "add", "xnor", "energy µJ", "latency Mcycles"),
        [(human(costs["params"]), human(costs["mul"]), human(costs["add"]), human(costs["xnor"]),
          f"{costs['energy_pj'] / 1e6:.3f}", f"{costs['latency_cycles'] / 1e6:.3f}")],
        caption=f"energy table {costs['energy_table']}; XNORs unpriced",
    )
    if args.layers:
        print_table("layers", ("module", "op", "mul", "add", "xnor"),
                    [(r["module"], r["op"], r["mul"], r["add"], r["xnor"]) for r in costs["layers"]])
    return 0
