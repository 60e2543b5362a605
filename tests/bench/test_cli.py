"""``frugalvision bench TARGET --help`` for every registered target, and its options reach the target."""

from __future__ import annotations

import pytest

from frugalvision.bench import TARGETS
from frugalvision.cli.main import main


@pytest.mark.parametrize("name", [t.name for t in TARGETS])
def test_help_of_every_target(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: frugalvision bench {name}") and "--output" in out


def test_bench_help_lists_every_target(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert all(f"    {t.name}" in out for t in TARGETS)


@pytest.mark.parametrize(("argv", "message"), [
    (["adder", "--shapes", "vgg"], "--shapes: unknown set"),
    (["adder", "--skip", "conv"], "--skip: only reference and official"),
    (["quant", "--shapes", "vgg"], "--shapes: unknown set"),
    (["quant", "--repeats", "0"], "must be positive"),
    (["quant-model", "--models", "nope"], "--models: unknown model"),
    (["quant-model", "--batch-sizes", "0"],
     "batch sizes, --threads, --repeats, --repeats-1 and --calibration-images must be positive"),
    (["epoch", "--conv-types", "binary"], "conv types binary"),
    (["model"], "give --checkpoint RUN_OR_FILE or --model NAME"),
    (["onnx", "--model", "lenet5_bn", "--rounds", "0"], "--rounds"),
])
def test_bad_options_are_user_errors(argv, message, capsys):
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("frugalvision bench: error:") and message in err and len(err.strip().splitlines()) == 1
