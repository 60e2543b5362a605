"""The whole-network int8 benchmark on LeNet-5-BN at a tiny size: bookkeeping only (rows, ratios, CSV, table)."""

from __future__ import annotations

import pytest

from frugalvision.bench import quant_model
from frugalvision.cli.main import main
from frugalvision.errors import ConfigError

from .conftest import MACHINE_COLUMNS, assert_positive, committed_columns, read_csv


def test_command_rows_ratios_and_csv(tmp_path, capsys, repo_root):
    pytest.importorskip("onnxruntime")
    output = tmp_path / "bench.csv"
    assert main(["bench", "quant-model", "--models", "lenet5_bn", "--batch-sizes", "2", "--repeats", "3",
                 "--calibration-images", "8", "--output", str(output)]) == 0
    rows = read_csv(output)
    # LeNet-5-BN has no multiplicative stem: no int8-stem variant
    assert [r["method"] for r in rows] == [m for m in quant_model.METHODS if m != "int8_adder_int8stem"]
    assert set(committed_columns(repo_root, "bench_quant_model_20261205-152558.csv")) <= set(rows[0])
    assert MACHINE_COLUMNS <= set(rows[0])
    assert_positive(rows, ("median_ms", "min_ms", "p90_ms", "images_per_s"))
    by_method = {r["method"]: r for r in rows}
    assert by_method["fp32_cnn"]["time_vs_fp32_cnn"] == "1.0"
    best = min(float(by_method[m]["median_ms"]) for m in quant_model.INT8_CNN)
    for row in rows:
        assert row["repeats"] == "3" and float(row["min_ms"]) <= float(row["median_ms"]) <= float(row["p90_ms"]) + 1e-9
        assert float(row["time_vs_best_int8_cnn"]) == pytest.approx(float(row["median_ms"]) / best, rel=1e-3, abs=1e-3)
    assert "int8_adder" in capsys.readouterr().out


def test_unknown_method_is_rejected():
    with pytest.raises(ConfigError, match="unknown methods"):
        quant_model.bench_quant_models(["lenet5_bn"], [1], methods=["int4_adder"])
