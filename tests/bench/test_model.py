"""``frugalvision bench model``: train-mode vs fused latency of a tiny VanillaNet, through the library and the CLI."""

from __future__ import annotations

import json

import pytest

from frugalvision.bench.common import write_csv
from frugalvision.bench.model import bench_model
from frugalvision.cli.main import main

from .conftest import MACHINE_COLUMNS, assert_positive, committed_columns, read_csv


def test_bench_model_measures_and_writes_csv(tmp_path) -> None:
    from dataclasses import asdict

    results = bench_model("vanillanet_test", variants=("train", "fused"), batch_sizes=(1, 2), input_size=(3, 32, 32),
                          warmup=0, iters=1)
    assert [(r.variant, r.batch_size) for r in results] == [("train", 1), ("train", 2), ("fused", 1), ("fused", 2)]
    for r in results:  # a timing has no oracle; its fields must agree with each other
        assert (r.model, r.input_size, r.iters) == ("vanillanet_test", "3x32x32", 1)
        assert r.min_ms == r.median_ms == r.mean_ms  # one timed pass
        assert r.images_per_s == pytest.approx(r.batch_size / (r.median_ms / 1e3), rel=1e-3, abs=0.006)  # both rounded
    rows = read_csv(write_csv([asdict(r) for r in results], tmp_path / "b.csv"))
    assert [(row["variant"], int(row["batch_size"]), float(row["median_ms"])) for row in rows] == [
        (r.variant, r.batch_size, r.median_ms) for r in results]


def test_command_json_and_csv(tmp_path, capsys, repo_root):
    output = tmp_path / "model.csv"
    assert main(["bench", "model", "--model", "lenet5_bn", "--batch-sizes", "1", "2", "--iters", "2", "--warmup", "1",
                 "--no-resnet", "--output", str(output), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["csv"] == str(output)
    assert [(r["variant"], r["batch_size"], r["input_size"]) for r in result["results"]] == [
        ("train", 1, "1x28x28"), ("train", 2, "1x28x28"), ("fused", 1, "1x28x28"), ("fused", 2, "1x28x28")]
    rows = read_csv(output)
    assert set(committed_columns(repo_root, "bench_model_vanillanet_5.csv")) <= set(rows[0])
    assert MACHINE_COLUMNS <= set(rows[0])
    assert_positive(rows, ("median_ms", "min_ms", "images_per_s"))
    assert main(["bench", "model", "--model", "lenet5_bn", "--batch-sizes", "1", "--iters", "1", "--no-resnet",
                 "--deploy", "--input-size", "1", "32", "32", "--output", str(output)]) == 0
    assert "lenet5_bn (fused)" in capsys.readouterr().out
    assert [(r["variant"], r["input_size"]) for r in read_csv(output)] == [("fused", "1x32x32")]
