"""Bad input on the command line, every command: exit code 2, one line on stderr that names the problem, and nothing
written (the working folder, where every output path of the table points, is the same after as before).

Each case is ``(argv, pattern)``: ``{tmp}`` in argv is the test's working folder, which holds ``bad.pth`` (random
bytes), ``afile`` (a plain file, for paths "under a file"), ``typo.yaml`` (a recipe with a misspelled model option)
and ``images/`` (one image); ``pattern`` is a regular expression the error line must match.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frugalvision.cli.main import main

CASES: list[tuple[str, str]] = [
    # argparse's own checks: one line + where the help is
    ("", r"^frugalvision: error: give a command; see `frugalvision --help`$"),
    ("trian", r"invalid choice: 'trian'.*see `frugalvision --help`$"),
    ("train --input-size 3 32", r"^frugalvision train: error: argument --input-size: expected 3 arguments; see "
                                r"`frugalvision train --help`$"),
    ("train --epochs many", r"--epochs: invalid int value: 'many'"),
    ("train --dataset nope", r"--dataset: invalid choice: 'nope'"),
    ("train --bogus 1", r"^frugalvision train: error: unrecognized arguments: --bogus 1; see `frugalvision train"),
    ("eval --dataset mnist5k", r"the following arguments are required: --checkpoint"),
    ("eval --checkpoint x --dataset mnist5k --conv-type bogus", r"--conv-type: invalid choice"),
    ("predict --checkpoint {tmp}/bad.pth", r"required: IMAGE_OR_DIR"),
    ("quantize --checkpoint x --dataset mnist5k", r"required: --output"),
    ("count --model lenet5_bn --energy int4", r"--energy: invalid choice: 'int4'"),
    ("plot nope --output {tmp}/f.png", r"argument kind: invalid choice: 'nope'"),
    ("ablation nope", r"invalid choice: 'nope'"),
    ("bench nope", r"^frugalvision bench: error: argument TARGET: invalid choice: 'nope'"),
    ("bench model --batch-sizes 1,x", r"--batch-sizes: integers expected, got '1,x'"),
    ("bench onnx --bogus", r"^frugalvision bench onnx: error: unrecognized arguments: --bogus; see `frugalvision "
                           r"bench onnx --help`$"),
    # options and configurations
    ("train --model lenet9 --dataset fake --output-dir {tmp}/runs", r"unknown model 'lenet9'"),
    ("train --config {tmp}/missing.yaml --output-dir {tmp}/runs", r"config file not found: .*missing.yaml"),
    ("train --config {tmp}/typo.yaml --dataset folder --data-dir {tmp}/images --output-dir {tmp}/runs",
     r"config file .*typo.yaml: model_kwargs: .*'conv_typo'"),
    ("train --model lenet5_bn --conv-type adder,conv --name one --dataset fake --output-dir {tmp}/runs",
     r"--name names one run"),
    ("train --model lenet5_bn --conv-type adder --dataset fake --epochs 1 --output-dir {tmp}/afile/runs",
     r"--output-dir .*afile/runs: .*afile is a file, not a folder"),
    ("count", r"give --checkpoint RUN_OR_FILE or --model NAME"),
    ("count --model lenet9", r"unknown model 'lenet9'"),
    ("count --model lenet5_bn --model-option oops", r"--model-option takes KEY=VALUE, got 'oops'"),
    ("count --model lenet5_bn --model-option conv_typo=adder", r"'conv_typo'"),
    ("quantize --checkpoint {tmp}/bad.pth --model lenet5_bn --dataset mnist5k --output {tmp}/q.safetensors "
     "--calibration-images 0", r"--calibration-images must be >= 1"),
    ("ablation addernet-optim --grads exact --output-dir {tmp}/ablation", r"weight gradient must be one of"),
    ("bench startup --rounds 0 --output {tmp}/s.csv", r"--rounds must be >= 1"),
    ("bench adder --shapes vgg --output {tmp}/a.csv", r"--shapes: unknown set"),
    ("bench quant-model --warm-calls -1 --output {tmp}/q.csv", r"--warm-calls must be 0 or more, got -1"),
    ("plot filters --output {tmp}/f.png", r"plot filters needs --checkpoint"),
    # checkpoints
    ("eval --checkpoint {tmp}/bad.pth --dataset mnist5k", r"bad.pth is not a valid checkpoint"),
    ("eval --checkpoint {tmp}/bad.pth --model lenet5_bn --dataset mnist5k", r"bad.pth is not a valid checkpoint"),
    ("predict {tmp}/images --checkpoint {tmp}/bad.pth --model lenet5_bn", r"bad.pth is not a valid checkpoint"),
    ("eval --checkpoint {tmp}/missing.pth --dataset mnist5k", r"missing.pth"),
    ("report {tmp}/missing_run", r"run folder not found: .*missing_run"),
    # output paths, checked before any work
    ("deploy --checkpoint {tmp}/bad.pth --model lenet5_bn", r"nothing to write"),
    ("deploy --checkpoint {tmp}/bad.pth --model lenet5_bn --onnx /proc/m.onnx", r"--onnx /proc/m.onnx: cannot create "
                                                                                 r"files in /proc"),
    ("deploy --checkpoint {tmp}/bad.pth --model lenet5_bn --onnx {tmp}/afile/m.onnx", r"afile is a file, not a "
                                                                                      r"folder"),
    ("deploy --checkpoint {tmp}/bad.pth --model lenet5_bn --onnx {tmp}/m.txt", r"--onnx must be a .onnx file"),
    ("deploy --checkpoint {tmp}/bad.pth --model lenet5_bn --output {tmp}/m.pt", r"--output must be a .safetensors"),
    ("deploy --checkpoint {tmp}/bad.pth --model lenet5_bn --onnx {tmp}/folder.onnx", r"is a folder; give a file "
                                                                                     r"name"),
    ("quantize --checkpoint {tmp}/bad.pth --model lenet5_bn --dataset mnist5k --output {tmp}/q.pt",
     r"--output must be a .safetensors file"),
    ("quantize --checkpoint {tmp}/bad.pth --model lenet5_bn --calibration mnist5k --output {tmp}/afile/q.safetensors",
     r"afile is a file, not a folder"),
    ("plot curves --checkpoint {tmp}/runs --output {tmp}/f.gif", r"--output must be a .png or .svg or .pdf file"),
    ("plot filters --checkpoint {tmp}/bad.pth --output {tmp}/afile/f.png", r"afile is a file, not a folder"),
    ("plot filters --train --output-dir {tmp}/afile/runs --output {tmp}/f.png", r"--output-dir .*afile is a file"),
    ("report {tmp}/images --output {tmp}/afile/r.html", r"afile is a file, not a folder"),
    ("ablation addernet-optim --output-dir {tmp}/afile/ablation", r"afile is a file, not a folder"),
    ("bench startup --output {tmp}/afile/s.csv", r"afile is a file, not a folder"),
    ("bench startup --output {tmp}/s.txt", r"--output must be a .csv file"),
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "bad.pth").write_bytes(np.random.default_rng(0).bytes(3000))
    (tmp_path / "afile").write_text("a plain file\n")
    (tmp_path / "folder.onnx").mkdir()
    (tmp_path / "typo.yaml").write_text("model: lenet5_bn\nmodel_kwargs:\n  conv_typo: adder\n")
    (tmp_path / "images" / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(tmp_path / "images" / "a" / "x.png")
    monkeypatch.chdir(tmp_path)  # default output paths (runs/, benchmarks/) land here too
    return tmp_path


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_the_table_is_large_and_spans_the_commands():
    commands = {argv.split()[0] for argv, _ in CASES if argv}
    assert len(CASES) >= 30
    every = {"train", "eval", "predict", "count", "deploy", "quantize", "plot", "report", "ablation", "bench"}
    assert every <= commands


@pytest.mark.parametrize(("argv", "pattern"), CASES, ids=[argv or "(none)" for argv, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, pattern, workdir, capsys, monkeypatch):
    monkeypatch.delenv("FRUGALVISION_DEBUG", raising=False)
    before = _snapshot(workdir)
    try:
        code = main(argv.format(tmp=workdir).split())
    except SystemExit as stop:  # argparse
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert re.search(pattern, err.strip()), err
    assert "weights_only" not in err and "internal error" not in err
    assert _snapshot(workdir) == before


@pytest.mark.parametrize("argv", [
    ["train", "--input-size", "3", "32"],
    ["deploy", "--checkpoint", "bad.pth", "--model", "lenet5_bn", "--onnx", "/proc/m.onnx"],
    ["eval", "--checkpoint", "bad.pth", "--dataset", "mnist5k"],
])
def test_bad_input_through_the_real_command(argv, workdir, repo_root):
    before = _snapshot(workdir)
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src")}
    env.pop("FRUGALVISION_DEBUG", None)
    result = subprocess.run([sys.executable, "-m", "frugalvision", *argv], capture_output=True, text=True, env=env,
                            cwd=workdir, timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and result.stdout == "", result.stderr
    assert _snapshot(workdir) == before
