"""``frugalvision bench TARGET``: every target of :mod:`frugalvision.bench`, registered in a loop (options and
behaviour live with each target)."""

from __future__ import annotations

import argparse

from .options import HelpFormatter, add_model_arguments, check_output_path

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "run"]

HELP = "benchmarks: start-up, adder kernels, integer AdderNets, model latency, ONNX"
DESCRIPTION = "Benchmarks, each writing a CSV with the machine it ran on; see `frugalvision bench TARGET --help`."


def add_arguments(bench: argparse.ArgumentParser) -> None:
    from ..bench import TARGETS

    targets = bench.add_subparsers(dest="bench_target", metavar="TARGET", required=True, help="what to measure")
    for target in TARGETS:
        parser = targets.add_parser(target.name, help=target.help, description=target.description,
                                    formatter_class=HelpFormatter)
        if target.model_arguments is not None:
            add_model_arguments(parser, checkpoint=target.model_arguments)
            parser.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                                help="input size (default: the model's data config, e.g. 3 224 224 for VanillaNet)")
        target.add_arguments(parser)
        parser.set_defaults(_bench_target=target, _parser=parser)


def run(args: argparse.Namespace) -> int:
    target = args._bench_target
    if getattr(args, "output", None) is not None:
        check_output_path(args.output, "--output", suffixes=(".csv",))
    if target.model_arguments is not None:
        from .common import load_model_from_args, model_input_size

        args.model_object = load_model_from_args(args)
        args.model_input_size = model_input_size(args.model_object, args.input_size)
    return int(target.run(args) or 0)
