"""``frugalvision bench epoch`` on 64 images: one row per conv type, positive times, the wait policy recorded."""

from __future__ import annotations

import os

import pytest

from frugalvision.cli.main import main

from .conftest import MACHINE_COLUMNS, assert_positive, read_csv


def test_command_times_both_twins_and_records_the_wait_policy(tmp_path, capsys, one_thread):
    output = tmp_path / "epoch.csv"
    assert main(["bench", "epoch", "--images", "64", "--epochs", "2", "--batch-size", "32", "--threads", "1",
                 "--output", str(output)]) == 0
    rows = read_csv(output)
    assert [r["conv_type"] for r in rows] == ["adder", "conv"]
    assert MACHINE_COLUMNS <= set(rows[0]) and rows[0]["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY", "")
    assert [(r["images"], r["epochs"], r["batch_size"]) for r in rows] == [("64", "2", "32")] * 2
    assert_positive(rows, ("median_s", "min_s", "cpu_median_s"))
    assert all(float(r["min_s"]) <= float(r["median_s"]) for r in rows)
    assert float(rows[0]["time_vs_conv"]) == pytest.approx(float(rows[0]["median_s"]) / float(rows[1]["median_s"]),
                                                           rel=1e-2, abs=1e-3)
    assert rows[1]["time_vs_conv"] == "1.0"
    assert "lenet5_bn adder" in capsys.readouterr().out
