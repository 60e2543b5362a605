"""``frugalvision`` command line: one subcommand per module in :data:`COMMANDS`.

Each command module defines ``HELP`` (its line in ``frugalvision --help``), ``DESCRIPTION``,
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import nothing heavy at the top: the parser is
built without torch, and only the options of the command being run are declared, so ``--help`` answers at once;
``run`` imports the library.

Exit codes: 0 success; 2 an error the user can fix (a :class:`~frugalvision.errors.FrugalVisionError`: bad option,
configuration, data or checkpoint; or an option argparse rejects), printed as one line; 1 anything else, which is a
bug in frugalvision and is reported as one (``FRUGALVISION_DEBUG=1`` shows the traceback of either kind); 130
interrupted; 141 output pipe closed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ..errors import FrugalVisionError, one_line
from .options import ArgumentParser, HelpFormatter

__all__ = ["COMMANDS", "build_parser", "main"]

# module names under frugalvision.cli, in the order `--help` lists them
COMMANDS = ("train", "eval", "predict", "quantize", "count", "bench", "deploy", "plot", "ablation", "report")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``frugalvision``; with ``command``, only that subcommand's options are declared (the others
    appear in ``--help`` with their one line)."""
    parser = ArgumentParser(prog="frugalvision", formatter_class=HelpFormatter,
                            description="Frugal vision networks: AdderNet, adaptive convolutional kernels, VanillaNet. "
                            "`frugalvision COMMAND --help` describes each command.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", help="what to do")
    for name in COMMANDS:
        module = importlib.import_module(f"frugalvision.cli.{name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.DESCRIPTION,
                                    formatter_class=HelpFormatter)
        if command is None or command == name:
            module.add_arguments(sub)
        sub.set_defaults(_run=module.run, _parser=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else "")
    # SystemExit: --help (0), or a rejected option (2, printed as one line by the parser of the command concerned)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "_run", None):
        print("frugalvision: error: give a command; see `frugalvision --help`", file=sys.stderr)
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
