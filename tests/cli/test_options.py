"""The options of every command: help text on each, defaults as used, one spelling per thing (old spellings still
accepted), list options given either way."""

from __future__ import annotations

import argparse
import os
import re
import stat

import pytest

from frugalvision.bench.common import IntList
from frugalvision.cli.main import COMMANDS, build_parser, main
from frugalvision.cli.options import ArgumentParser


def _parsers(parser: argparse.ArgumentParser, prefix: str = "frugalvision"):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prefix} {name}")


ALL_PARSERS = list(_parsers(build_parser()))


def test_every_command_and_bench_target_is_walked():
    names = {name for name, _ in ALL_PARSERS}
    assert {f"frugalvision {c}" for c in COMMANDS} <= names
    assert {"frugalvision bench startup", "frugalvision bench model", "frugalvision bench quant-model"} <= names


@pytest.mark.parametrize(("name", "parser"), ALL_PARSERS, ids=[name for name, _ in ALL_PARSERS])
def test_every_option_has_help(name, parser):
    missing = [action.option_strings or action.dest for action in parser._actions
               if action.help != argparse.SUPPRESS and not (action.help or "").strip()]
    assert missing == []


@pytest.mark.parametrize(("name", "parser"), ALL_PARSERS, ids=[name for name, _ in ALL_PARSERS])
def test_help_prints_the_default_in_use(name, parser):
    """An option with a default of its own shows that value in --help (printed by the formatter from the parser, so
    it cannot drift), unless its help states the default in words."""
    text = "".join(parser.format_help().split())  # long values wrap anywhere
    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS) \
                and "default" not in (action.help or ""):
            expected = "".join(f"(default: {action.default})".split())
            assert expected in text, (action.option_strings, action.default)


def test_the_same_thing_has_one_name():
    """Output folders are --output-dir, output files --output, datasets --dataset, in every command."""
    for name, parser in ALL_PARSERS:
        options = {s: a for a in parser._actions for s in a.option_strings}
        if "--output" in options and "--output-dir" not in options:
            assert "DIR" not in (options["--output"].metavar or ""), name
        for old in ("--runs-dir", "--calibration"):
            if old in options:
                assert old in getattr(options[old], "hidden_aliases", ()), (name, old)
                assert not re.search(rf"{old}(?![-\w])", parser.format_help()), name


@pytest.mark.parametrize(("argv", "dest", "value"), [
    (["quantize", "--checkpoint", "c", "--calibration", "fake", "--output", "q.safetensors"], "dataset", "fake"),
    (["quantize", "--checkpoint", "c", "--dataset", "fake", "--output", "q.safetensors"], "dataset", "fake"),
    (["train", "--output", "somewhere"], "output", "somewhere"),
    (["train", "--output-dir", "somewhere"], "output", "somewhere"),
    (["ablation", "addernet-optim", "--output", "abl"], "output", "abl"),
    (["plot", "curves", "--output", "f.png", "--runs-dir", "r"], "runs_dir", "r"),
    (["plot", "curves", "--output", "f.png", "--output-dir", "r"], "runs_dir", "r"),
    (["bench", "model", "--batch-sizes", "1", "64"], "batch_sizes", [1, 64]),
    (["bench", "model", "--batch-sizes", "1,64"], "batch_sizes", [1, 64]),
    (["bench", "quant-model", "--batch-sizes", "1", "64"], "batch_sizes", [1, 64]),
    (["bench", "quant-model", "--batch-sizes", "1,64"], "batch_sizes", [1, 64]),
])
def test_old_and_new_spellings_parse_alike(argv, dest, value):
    assert getattr(build_parser(argv[0]).parse_args(argv), dest) == value


def test_int_list_rejects_non_integers(capsys):
    parser = ArgumentParser(prog="p")
    parser.add_argument("--n", nargs="+", action=IntList, help="numbers")
    assert parser.parse_args(["--n", "1,2", "3"]).n == [1, 2, 3]
    with pytest.raises(SystemExit):
        parser.parse_args(["--n", "1,two"])
    assert capsys.readouterr().err.count("\n") == 1


def test_ablation_help_states_the_defaults_the_runs_use():
    from frugalvision.cli.ablation import LENET5_BN_DEFAULTS
    from frugalvision.train.runs import resolve_config

    config = resolve_config("lenet5_bn", None)
    assert LENET5_BN_DEFAULTS == {"batch_size": config.batch_size, "lr": config.lr, "seed": config.seed}
    text = " ".join(build_parser("ablation")._subparsers._group_actions[0].choices["ablation"].format_help().split())
    assert f"batch size (default {config.batch_size})" in text


def test_help_says_which_conv_type_a_model_name_defaults_to():
    from frugalvision import create_model
    from frugalvision.layers import Adder2d

    assert any(isinstance(m, Adder2d) for m in create_model("resnet20").modules())  # what the help says
    for command in ("train", "eval", "count"):
        text = " ".join(build_parser(command)._subparsers._group_actions[0].choices[command].format_help().split())
        assert "adder for the AdderNet zoo" in text, command


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask, capsys):
    """Checkpoints and ONNX exports (both written through a private temporary file) get 0666 & ~umask, like any
    other tool's files; a missing output folder is created."""
    pytest.importorskip("onnx")
    old = os.umask(umask)
    try:
        assert main(["deploy", "--model", "lenet5_bn", "--checkpoint", str(_checkpoint(tmp_path)),
                     "--output", str(tmp_path / "d.safetensors"), "--onnx", str(tmp_path / "new" / "d.onnx")]) == 0
    finally:
        os.umask(old)
    for name in ("d.safetensors", "new/d.onnx"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def _checkpoint(tmp_path):
    from frugalvision import create_model
    from frugalvision.models import save_model

    path = tmp_path / "m.safetensors"
    save_model(path, create_model("lenet5_bn"))
    return path
