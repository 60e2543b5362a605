"""``frugalvision bench TARGET``: every target of :mod:`frugalvision.bench`, registered in a loop (options and
behaviour live with each target)."""

from __future__ import annotations

import argparse

from .common import add_model_arguments, load_model_from_args, model_input_size

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..bench import TARGETS

    bench = subparsers.add_parser("bench", help="benchmarks: adder kernels, integer AdderNets, model latency, ONNX",
                                  description="Benchmarks; see `frugalvision bench TARGET --help`.")
    targets = bench.add_subparsers(dest="bench_target", metavar="TARGET", required=True)
    for target in TARGETS:
        parser = targets.add_parser(target.name, help=target.help, description=target.description)
        if target.model_arguments is not None:
            add_model_arguments(parser, checkpoint=target.model_arguments)
            parser.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                                help="input size (default: the model's data config, e.g. 3 224 224 for VanillaNet)")
        target.add_arguments(parser)
        parser.set_defaults(_bench_target=target)
    return bench


def run(args: argparse.Namespace) -> int:
    target = args._bench_target
    if target.model_arguments is not None:
        args.model_object = load_model_from_args(args)
        args.model_input_size = model_input_size(args.model_object, args.input_size)
    return int(target.run(args) or 0)
