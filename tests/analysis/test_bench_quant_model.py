"""The whole-network int8 benchmark on LeNet-5-BN at a tiny size: bookkeeping only (rows, ratios, CSV, table)."""

from __future__ import annotations

import csv

import pytest

from frugalvision.analysis import bench_quant_model
from frugalvision.analysis.bench_quant import write_csv


def test_rows_ratios_and_csv(tmp_path):
    pytest.importorskip("onnxruntime")
    rows = bench_quant_model.bench_quant_models(["lenet5_bn"], [2], repeats={2: 3}, calibration_images=8)
    methods = [r["method"] for r in rows]
    # LeNet-5-BN has no multiplicative stem: no int8-stem variant
    assert methods == [m for m in bench_quant_model.METHODS if m != "int8_adder_int8stem"]
    by_method = {r["method"]: r for r in rows}
    assert by_method["fp32_cnn"]["time_vs_fp32_cnn"] == 1.0
    best = min(by_method[m]["median_ms"] for m in bench_quant_model.INT8_CNN)
    for row in rows:
        assert row["repeats"] == 3 and row["min_ms"] <= row["median_ms"] <= row["p90_ms"] + 1e-9
        assert row["time_vs_best_int8_cnn"] == pytest.approx(row["median_ms"] / best, rel=1e-3, abs=1e-3)
    path = write_csv(rows, tmp_path / "bench.csv", {"cpu": "test", "load_average_1m": "0"})
    with path.open() as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == len(rows) and written[0]["cpu"] == "test"
    assert "int8_adder" in bench_quant_model.format_table(rows)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown methods"):
        bench_quant_model.bench_quant_models(["lenet5_bn"], [1], methods=["int4_adder"])
