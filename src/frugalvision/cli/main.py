"""``frugalvision`` command line: one subcommand per module in :data:`COMMANDS`.

Each command module defines ``add_parser(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``.
Errors the user can fix (bad option, missing data, corrupt checkpoint) are raised as :class:`CLIError` or one of
the library's ``ValueError`` / ``FileNotFoundError`` subclasses and printed as one line; the exit code is 2.
``FRUGALVISION_DEBUG=1`` re-raises them with the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "CLIError", "main"]

# module names under frugalvision.cli, in the order `--help` lists them
COMMANDS = ("train", "eval", "count", "bench", "deploy", "plot", "ablation", "report")


class CLIError(Exception):
    """An error caused by the user's input; reported as one line, exit code 2."""


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


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


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
    except (CLIError, ValueError, TypeError, FileNotFoundError, KeyError, RuntimeError, OSError) as error:
        if os.environ.get("FRUGALVISION_DEBUG"):
            raise
        print(f"frugalvision {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
