"""``frugalvision`` command line: one subcommand per module in :data:`COMMANDS`.

Each command module defines ``add_parser(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``.

Exit codes: 0 success; 2 an error the user can fix (a :class:`~frugalvision.errors.FrugalVisionError`: bad option,
configuration, data or checkpoint), printed as one line; 1 anything else, which is a bug in frugalvision and is
reported as one (``FRUGALVISION_DEBUG=1`` shows the traceback of either kind); 130 interrupted; 141 output pipe
closed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ..errors import FrugalVisionError, one_line

__all__ = ["COMMANDS", "main"]

# module names under frugalvision.cli, in the order `--help` lists them
COMMANDS = ("train", "eval", "predict", "quantize", "count", "bench", "deploy", "plot", "ablation", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="frugalvision",
        description="Frugal vision networks: AdderNet, adaptive convolutional kernels, VanillaNet.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"frugalvision.cli.{name.replace('-', '_')}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("frugalvision: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`frugalvision predict DIR | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except FrugalVisionError as error:
        if os.environ.get("FRUGALVISION_DEBUG"):
            raise
        print(f"frugalvision {args.command}: error: {one_line(error, limit=None)}", file=sys.stderr)
        return 2
    except Exception as error:  # not the user's fault: say so, and how to get the details
        if os.environ.get("FRUGALVISION_DEBUG"):
            raise
        print(f"frugalvision {args.command}: internal error (a bug in frugalvision, please report it): "
              f"{one_line(error, with_type=True)}; rerun with FRUGALVISION_DEBUG=1 for the traceback",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
