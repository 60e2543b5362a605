"""``frugalvision bench adder`` on tiny sizes: the official formulation against the reference op, and the command's
rows, CSV and table (timings have no oracle: checked positive and finite)."""

from __future__ import annotations

import pytest
import torch

from frugalvision.bench import adder
from frugalvision.cli.main import main
from frugalvision.ops import adder2d, use_backend

from .conftest import MACHINE_COLUMNS, assert_positive, committed_columns, read_csv


def test_official_formulation_matches_the_reference_forward_and_backward():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = adder.official_adder2d(x, w, stride=2, padding=1)
    grad = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    gx, gw = torch.autograd.grad(y, (x, w), grad)
    with use_backend("torch"):
        y_ref = adder2d(x, w, stride=2, padding=1)
        gx_ref, gw_ref = torch.autograd.grad(y_ref, (x, w), grad)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(gw, gw_ref)
    torch.testing.assert_close(gx, gx_ref)


def test_command_writes_rows_for_every_method_pass_and_the_epoch(tmp_path, capsys, repo_root, one_thread):
    output = tmp_path / "adder.csv"
    assert main(["bench", "adder", "--shapes", "lenet5", "--batch-size", "2", "--repeats", "2", "--slow-repeats", "1",
                 "--epoch-images", "64", "--threads", "1", "--output", str(output)]) == 0
    rows = read_csv(output)
    assert set(committed_columns(repo_root, "bench_adder_cpu2-x86_64-t2_20261125-045026.csv")) <= set(rows[0])
    assert MACHINE_COLUMNS <= set(rows[0]) and rows[0]["torch_threads"] == "1"
    layers = [r for r in rows if r["pass"] != "train_epoch"]
    assert [(r["shape"], r["method"], r["pass"]) for r in layers] == [
        (s, m, p) for s in ("lenet5_conv1", "lenet5_conv2", "lenet5_fc1", "lenet5_fc2")
        for p in ("forward", "forward_backward") for m in adder.METHODS]
    assert_positive(layers, ("time_ms", "cpu_ms"))
    for row in layers:
        conv = next(r for r in layers if (r["shape"], r["pass"], r["method"]) == (row["shape"], row["pass"], "conv"))
        assert float(row["time_vs_conv"]) == pytest.approx(
            float(row["time_ms"]) / float(conv["time_ms"]), rel=1e-2, abs=1e-3)
    epoch = [r for r in rows if r["pass"] == "train_epoch"]
    assert [r["method"] for r in epoch] == ["frugalvision", "conv"] and epoch[0]["input"].startswith("64 images")
    assert_positive(epoch, ("time_ms",))
    out = capsys.readouterr().out
    assert "lenet5_conv2" in out and "LeNet-5-BN training epoch" in out and str(output) in out
