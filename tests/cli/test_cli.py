"""Command line: happy paths on tiny data and one-line errors with a non-zero exit code."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from frugalvision import count_ops, load_model
from frugalvision.analysis.counting import human
from frugalvision.cli.main import main
from frugalvision.run_dir import RunDir

FAKE = ["--dataset", "fake", "--epochs", "1", "--batch-size", "32", "--no-progress"]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def _write_idx(folder, prefix, images, labels):
    folder.mkdir(parents=True, exist_ok=True)
    header = np.array([2051, len(images), 28, 28], dtype=">i4").tobytes()
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + images.astype(np.uint8).tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        np.array([2049, len(labels)], dtype=">i4").tobytes() + labels.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A one-epoch CNN LeNet-5-BN on fake digits through ``frugalvision train``; returns (run folder, stdout)."""
    out = tmp_path_factory.mktemp("runs")
    config = out / "tiny.yaml"
    config.write_text("fake_size: 64\nfake_input_size: [1, 28, 28]\neval_batch_size: 64\n")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["train", "--model", "lenet5_bn", "--conv-type", "conv", "--config", str(config),
                     "--output", str(out), *FAKE]) == 0
    return out / "lenet5_bn_conv", stdout.getvalue()


def test_train_prints_the_comparison_table_of_the_run_it_wrote(trained_run):
    run_dir, stdout = trained_run
    history = list(csv.DictReader(RunDir(run_dir).metrics_file.open()))
    assert [row["epoch"] for row in history] == ["1"]
    costs = count_ops(load_model(run_dir), (1, 28, 28))
    table_row = next(line for line in stdout.splitlines() if line.startswith("│ lenet5_bn_conv"))
    cells = [cell.strip() for cell in table_row.strip("│ ").split("│")]
    assert cells[:5] == ["lenet5_bn_conv", f"{float(history[0]['val_top1']):.2f}", human(costs["params"]),
                         human(costs["mul"]), human(costs["add"])]
    assert cells[5] == f"{costs['energy_pj'] / 1e6:.3f}" and cells[6] == f"{costs['latency_cycles'] / 1e6:.2f}"
    assert costs["params"] == 61_942  # LeNet-5-BN, counted independently in tests/analysis
    assert f"Run folders: {run_dir}" in stdout
    assert load_model(run_dir).frugalvision_cfg == {"model": "lenet5_bn", "kwargs": {"conv_type": "conv",
                                                                                   "num_classes": 10, "in_chans": 1}}


def test_eval_json_on_mnist_t10k_files(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    rng = np.random.default_rng(0)
    images_and_labels = rng.integers(0, 255, (20, 28, 28)), rng.integers(0, 10, 20)
    _write_idx(tmp_path / "MNIST" / "raw", "t10k", *images_and_labels)
    code = main(["eval", "--checkpoint", str(run_dir), "--dataset", "mnist", "--data-dir", str(tmp_path), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_samples"] == 20
    # the same numbers through the library on the same 20 digits
    # the same numbers by hand: the 20 digits normalised with MNIST's mean / std, through the saved model
    digits = torch.from_numpy(np.stack(images_and_labels[0])).float().div(255).sub(0.1307).div(0.3081)[:, None]
    with torch.no_grad():
        logits = load_model(run_dir)(digits)
    labels = torch.from_numpy(images_and_labels[1]).long()
    assert result["top1"] == pytest.approx(100 * (logits.argmax(1) == labels).float().mean().item())
    assert result["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
    code = main(["eval", "--checkpoint", str(RunDir(run_dir).model_file), "--dataset", "mnist5k", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["num_samples"] == 500


def test_count_json_gives_lenet5_adder_costs(capsys):
    assert main(["count", "--model", "lenet5_bn", "--conv-type", "adder", "--json"]) == 0
    costs = json.loads(capsys.readouterr().out)
    # 416,520 |x - w| terms x 2 additions, plus BatchNorm on 6*28*28 + 16*10*10 + 120 + 84 + 10 = 6,518 activations
    # (1 multiplication + 1 addition each)
    assert costs["mul"] == 6_518 and costs["add"] == 2 * 416_520 + 6_518
    assert costs["latency_cycles"] == 4 * costs["mul"] + 2 * costs["add"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--model", "lenet9", *FAKE], "unknown model 'lenet9'"),
        (["train", "--dataset", "mnist", "--data-dir", "/nonexistent/mnist", "--epochs", "1"], "t10k|train-images"),
        (["train", "--conv-type", "shift", *FAKE], "conv_type must be one of"),
        (["eval", "--checkpoint", "/nonexistent/run", "--dataset", "mnist5k"], "checkpoint not found"),
        (["count", "--model", "lenet5_bn", "--energy", "fp32", "--input-size", "1", "2", "2"], "does not fit"),
        (["count", "--model", "vanillanet_test", "--model-option", "depth=3"],
         r"model vanillanet_test has no option 'depth'; its options: act_num, .*strides$"),
        (["count", "--model", "lenet5_bn", "--model-option", "widen=2"], r"Adder2d \(conv_type='adder'\) has no"),
    ],
)
def test_errors_are_one_line(argv, message, tmp_path, capsys):
    code = main([*argv, "--output", str(tmp_path)] if argv[0] == "train" else argv)
    assert code == 2
    line = _error_line(capsys)
    assert line.startswith(f"frugalvision {argv[0]}: error:")
    import re

    assert re.search(message, line), line


def test_corrupt_checkpoint_and_missing_config(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(os.urandom(64))
    assert main(["eval", "--checkpoint", str(bad), "--dataset", "mnist5k"]) == 2
    assert "corrupt checkpoint" in _error_line(capsys)
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("epochs: 2\nlearning_rate: 0.1\n")
    assert main(["train", "--config", str(recipe), "--output", str(tmp_path)]) == 2
    assert "unknown training option(s): learning_rate" in _error_line(capsys)
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in _error_line(capsys)


def test_unexpected_exception_is_reported_as_a_bug_with_exit_1(monkeypatch, capsys):
    import frugalvision.analysis.counting as counting

    def broken(*args, **kwargs):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(counting, "count_ops", broken)
    assert main(["count", "--model", "lenet5_bn"]) == 1
    line = _error_line(capsys)
    assert line == ("frugalvision count: internal error (a bug in frugalvision, please report it): ZeroDivisionError: "
                    "float division by zero; rerun with FRUGALVISION_DEBUG=1 for the traceback")
    monkeypatch.setenv("FRUGALVISION_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["count", "--model", "lenet5_bn"])


def test_unknown_model_option_in_a_recipe_exits_2(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: lenet5_bn\nmodel_kwargs: {conv_type: adder, widen: 2}\nfake_size: 8\n")
    assert main(["train", "--config", str(recipe), "--output", str(tmp_path), *FAKE]) == 2
    assert _error_line(capsys) == (f"frugalvision train: error: config file {recipe}: model_kwargs: Adder2d "
                                   "(conv_type='adder') has no option 'widen'")
    assert not (tmp_path / "lenet5_bn_adder").exists()


def test_a_type_error_inside_a_model_constructor_is_a_bug_not_a_config_error(monkeypatch, capsys):
    """Options are checked against the signatures before the model is built: a TypeError while building it is a
    bug in the model (exit 1), not a user's bad option (exit 2)."""
    from frugalvision.models import registry

    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))

    @registry.register_model
    def broken_lenet(num_classes: int = 10, in_chans: int = 1) -> torch.nn.Module:
        return torch.nn.Linear(in_chans, num_classes, bais=True)  # the bug: a misspelt argument

    assert main(["count", "--model", "broken_lenet", "--input-size", "1", "1", "1"]) == 1
    line = _error_line(capsys)
    assert line.startswith("frugalvision count: internal error (a bug in frugalvision, please report it): TypeError: ")
    assert "bais" in line
    assert main(["count", "--model", "broken_lenet", "--model-option", "depth=2"]) == 2  # a real bad option still is
    assert _error_line(capsys) == ("frugalvision count: error: model broken_lenet has no option 'depth'; its options: "
                                   "in_chans, num_classes")


def test_a_long_user_error_is_printed_whole_on_one_line(monkeypatch, capsys):
    import frugalvision.analysis.counting as counting
    from frugalvision.errors import InputError

    def refuse(*args, **kwargs):
        raise InputError("layer " + "x" * 400 + " cannot be counted\n(second line)")

    monkeypatch.setattr(counting, "count_ops", refuse)
    assert main(["count", "--model", "lenet5_bn"]) == 2
    assert _error_line(capsys) == f"frugalvision count: error: layer {'x' * 400} cannot be counted (second line)"


def test_user_error_shows_its_traceback_with_debug(monkeypatch):
    from frugalvision.errors import ConfigError

    monkeypatch.setenv("FRUGALVISION_DEBUG", "1")
    with pytest.raises(ConfigError, match="unknown model 'lenet9'"):
        main(["count", "--model", "lenet9"])


def test_bad_option_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--epochs", "many"])
    assert info.value.code == 2  # README: 2 is a problem you can fix (argparse's own usage errors too)


def test_killed_run_resumes(tmp_path):
    """SIGKILL a real training process after its first checkpoint; --resume finishes the run."""
    cmd = [sys.executable, "-m", "frugalvision", "train", "--model", "lenet5_bn", "--conv-type", "conv",
           "--dataset", "fake", "--epochs", "40", "--batch-size", "16", "--no-progress", "--output", str(tmp_path)]
    recipe = tmp_path / "r.yaml"
    recipe.write_text("fake_size: 64\nfake_input_size: [1, 28, 28]\n")
    proc = subprocess.Popen([*cmd, "--config", str(recipe)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    last = RunDir(tmp_path / "lenet5_bn_conv").last_file
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists()
    cmd[cmd.index("40")] = "2"  # shorten the remaining work; the schedule length is part of the resumed state
    done = subprocess.run([*cmd, "--config", str(recipe), "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Resuming" in done.stdout


def test_results_table_tool_reports_the_run_as_its_metrics_and_count_ops_say(trained_run, load_tool):
    results_table = load_tool("results_table")
    run_dir, _ = trained_run
    [epoch] = list(csv.DictReader(RunDir(run_dir).metrics_file.open()))
    costs = count_ops(load_model(run_dir), (1, 28, 28))
    row = results_table.describe(run_dir)
    assert row == {"run": "lenet5_bn_conv", "model": "lenet5_bn CNN", "seed": 0, "epochs": 1,
                   "val_top1": float(epoch["val_top1"]), "best_val_top1": float(epoch["val_top1"]),
                   "seconds_per_epoch": float(epoch["epoch_seconds"]), "params": 61_942, "mul": costs["mul"],
                   "add": costs["add"], "xnor": 0}
    table = results_table.markdown([row]).splitlines()
    assert table[2].startswith(f"| `lenet5_bn_conv` | lenet5_bn CNN | 0 | 1 | {float(epoch['val_top1']):.2f} |")
