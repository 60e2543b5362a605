"""How every ``frugalvision`` command declares and parses its options, without importing torch (``--help`` is
instant): the parser class (errors as one line), the help formatter (defaults printed from the values in use), hidden
spellings of renamed options, and the check of output paths before any work.

Output paths, one rule for every command: an output file (``--output``, ``--onnx``, ``--table``, ``--figure``) or
folder (``--output-dir``) may lie in folders that do not exist yet, which are created; it may not lie under an
existing file, nor in a folder where the user cannot create files. Both are checked before any work starts.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from ..errors import OutputError, one_line
from ..names import CONV_TYPES

__all__ = [
    "ArgumentParser",
    "HelpFormatter",
    "add_data_config_arguments",
    "add_model_arguments",
    "check_output_path",
    "hide_aliases",
]


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse`` parser whose errors are one line, ``frugalvision CMD: error: ...; see `frugalvision CMD
    --help```, exit code 2 (the usage block is for ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message, limit=None)}; see `{self.prog} --help`\n")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help text with each option's default as the parser will use it (``(default: 64)``), unless the option has no
    default value of its own (``None``, a switch) or its help already says what the default is; old spellings of
    renamed options (:func:`hide_aliases`) are left out."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        hidden = getattr(action, "hidden_aliases", ())
        if hidden:
            action = copy.copy(action)
            action.option_strings = [s for s in action.option_strings if s not in hidden]
        return super()._format_action_invocation(action)


def hide_aliases(action: argparse.Action, *old: str) -> argparse.Action:
    """Keep ``old`` spellings of an option working (``action`` was declared with them) but out of ``--help``."""
    action.hidden_aliases = old  # type: ignore[attr-defined]
    return action


def check_output_path(path: str | os.PathLike | None, option: str, *, folder: bool = False,
                      suffixes: Sequence[str] = ()) -> None:
    """Raise :class:`~frugalvision.errors.OutputError` unless ``path`` can be written (see the module docstring for
    the rule); ``None`` passes. Nothing is created: the nearest existing folder above ``path`` is probed with a
    temporary file that is removed at once.

    Args:
        option: the option that named the path, for the message.
        folder: ``path`` is a folder (it may exist, as a folder); else a file (it may exist, as a file).
        suffixes: accepted file name endings (e.g. ``(".onnx",)``), empty for any.
    """
    if path is None:
        return
    path = Path(path)
    if suffixes and not str(path).endswith(tuple(suffixes)):
        raise OutputError(f"{option} must be a {' or '.join(suffixes)} file, got {path}")
    if path.exists():
        if folder and not path.is_dir():
            raise OutputError(f"{option} {path} is a file, not a folder")
        if not folder and path.is_dir():
            raise OutputError(f"{option} {path} is a folder; give a file name")
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{option} {path}: {existing} is a file, not a folder")
    import tempfile  # here: its import costs more than the rest of the parser

    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".frugalvision-write-test-")
    except OSError as error:
        raise OutputError(f"{option} {path}: cannot create files in {existing} "
                          f"({error.strerror or one_line(error)})") from None
    os.close(fd)
    os.unlink(probe)


def add_model_arguments(parser: argparse.ArgumentParser, *, checkpoint: str = "required") -> None:
    """``--checkpoint`` and the options that build a model for a file without frugalvision metadata (an official
    checkpoint as released): ``--model``, ``--conv-type``, ``--num-classes``, ``--model-option KEY=VALUE``, ``--ema``.

    Args:
        checkpoint: ``"required"``, ``"optional"`` (a fresh model from ``--model`` without one) or ``"repeat"``.
    """
    if checkpoint == "repeat":
        parser.add_argument("--checkpoint", action="append", default=[], metavar="RUN_OR_FILE",
                            help="run folder or checkpoint file (repeatable); official files need --model")
    else:
        parser.add_argument("--checkpoint", required=checkpoint == "required", metavar="RUN_OR_FILE",
                            help="run folder or checkpoint file; an official checkpoint as released needs --model")
    parser.add_argument("--model", help="architecture of a checkpoint without frugalvision metadata (official files)"
                        + ("; without --checkpoint, a freshly initialised model" if checkpoint == "optional" else "")
                        + "; built with its own default conv type (adder for the AdderNet zoo: lenet5_bn, resnet20, "
                        "...; conv for VanillaNet) unless --conv-type says otherwise")
    parser.add_argument("--conv-type", choices=CONV_TYPES, help="with --model: the conv type of the twin (default: "
                        "the model's own)")
    parser.add_argument("--num-classes", type=int, help="with --model: classifier outputs (default: the model's)")
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="with --model: another model option (YAML value), e.g. deploy=true; repeatable")
    parser.add_argument("--ema", action="store_true", help="with --model: the model_ema weights of a nested "
                        "official checkpoint")


def add_data_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--input-size``, ``--mean``, ``--std``: override the preprocessing a checkpoint carries."""
    parser.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                        help="input size (default: the checkpoint's data config, or the model's default)")
    parser.add_argument("--mean", type=float, nargs="+", help="per-channel mean on the 0..1 scale")
    parser.add_argument("--std", type=float, nargs="+", help="per-channel standard deviation")
