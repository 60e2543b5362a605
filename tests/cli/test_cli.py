"""Command line: happy paths on tiny data and one-line errors with a non-zero exit code."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from frugalvision.cli.main import main

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
    out = tmp_path_factory.mktemp("runs")
    config = out / "tiny.yaml"
    config.write_text("fake_size: 64\nfake_input_size: [1, 28, 28]\neval_batch_size: 64\n")
    assert main(["train", "--model", "lenet5_bn", "--conv-type", "conv", "--config", str(config),
                 "--output", str(out), *FAKE]) == 0
    return out / "lenet5_bn_conv"


def test_train_writes_run_folder_and_table(trained_run, capsys):
    assert (trained_run / "model.safetensors").is_file()
    assert (trained_run / "last.safetensors").is_file()
    assert (trained_run / "metrics.csv").is_file()


def test_eval_json_on_mnist_t10k_files(trained_run, tmp_path, capsys):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "MNIST" / "raw", "t10k", rng.integers(0, 255, (20, 28, 28)), rng.integers(0, 10, 20))
    code = main(["eval", "--checkpoint", str(trained_run), "--dataset", "mnist", "--data-dir", str(tmp_path), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_samples"] == 20
    assert {"top1", "top5", "loss"} <= set(result)
    code = main(["eval", "--checkpoint", str(trained_run / "model.safetensors"), "--dataset", "mnist5k", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["num_samples"] == 500


def test_count_json(capsys):
    assert main(["count", "--model", "lenet5_bn", "--conv-type", "adder", "--json"]) == 0
    costs = json.loads(capsys.readouterr().out)
    assert costs["mul"] < 10_000 and costs["add"] > 800_000 and costs["latency_cycles"] > 1.6e6


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--model", "lenet9", *FAKE], "unknown model 'lenet9'"),
        (["train", "--dataset", "mnist", "--data-dir", "/nonexistent/mnist", "--epochs", "1"], "t10k|train-images"),
        (["train", "--conv-type", "shift", *FAKE], "conv_type must be one of"),
        (["eval", "--checkpoint", "/nonexistent/run", "--dataset", "mnist5k"], "checkpoint not found"),
        (["count", "--model", "lenet5_bn", "--energy", "fp32", "--input-size", "1", "2", "2"], "does not fit"),
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


def test_bad_option_exits_nonzero(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--epochs", "many"])
    assert info.value.code != 0


def test_killed_run_resumes(tmp_path):
    """SIGKILL a real training process after its first checkpoint; --resume finishes the run."""
    cmd = [sys.executable, "-m", "frugalvision", "train", "--model", "lenet5_bn", "--conv-type", "conv",
           "--dataset", "fake", "--epochs", "40", "--batch-size", "16", "--no-progress", "--output", str(tmp_path)]
    recipe = tmp_path / "r.yaml"
    recipe.write_text("fake_size: 64\nfake_input_size: [1, 28, 28]\n")
    proc = subprocess.Popen([*cmd, "--config", str(recipe)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    last = tmp_path / "lenet5_bn_conv" / "last.safetensors"
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
