"""``bench quant-model``: the methods it builds, the ratios and peak columns of its rows, the CSV, and leaving out
methods whose runtime is missing. Timings have no oracle: the one real run is tiny (LeNet-5-BN, batch 1, 2 rounds)
and checks bookkeeping against the row medians and a hand count of LeNet-5's adder terms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frugalvision.bench import quant_model
from frugalvision.bench.cnn_runtimes import cnn_twin
from frugalvision.cli.main import main
from frugalvision.errors import ConfigError

from .conftest import MACHINE_COLUMNS, assert_positive, read_csv

# LeNet-5-BN on 1x28x28, |a - b| terms per image, by hand from its layer shapes (output pixels x filters x taps):
# conv1 28*28 * 6 * 1*5*5, conv2 10*10 * 16 * 6*5*5, fc1 120 * 16*5*5, fc2 84 * 120, fc3 10 * 84
LENET5_TERMS = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 120 * 400 + 84 * 120 + 10 * 84


def _available(methods):
    return [m for m in methods if not quant_model.missing_packages(m)]


def test_ratio_columns_against_hand_computed_ratios():
    wall = {"int8_adder": 3.0, "int8_cnn_fx": 4.0, "int8_cnn_ort": 1.5, "fp32_cnn_torch": 6.0,
            "fp32_cnn_openvino": 2.0, "default_cnn_openvino": 1.0}
    cpu = {"int8_adder": 6.0, "int8_cnn_fx": 2.0, "int8_cnn_ort": 3.0, "fp32_cnn_torch": 12.0,
           "fp32_cnn_openvino": 4.0, "default_cnn_openvino": 1.0}
    columns = quant_model.ratio_columns("int8_adder", wall, cpu)
    # the fastest int8 CNN differs by clock (ort by wall, FX by CPU); default (bf16) OpenVINO is no fp32 baseline
    assert columns == {"time_vs_best_int8_cnn": 2.0, "cpu_vs_best_int8_cnn": 3.0, "best_int8_cnn": "int8_cnn_ort",
                       "time_vs_best_fp32_cnn": 1.5, "cpu_vs_best_fp32_cnn": 1.5, "best_fp32_cnn": "fp32_cnn_openvino"}
    alone = quant_model.ratio_columns("int8_adder", {"int8_adder": 1.0}, {"int8_adder": 1.0})
    assert alone["time_vs_best_int8_cnn"] == "" and alone["best_fp32_cnn"] == ""


def test_missing_runtime_is_left_out_with_a_note_unless_named(monkeypatch):
    monkeypatch.setattr(quant_model, "_importable", lambda package: package not in ("openvino", "nncf"))
    notes = []
    chosen = quant_model.select_methods(None, notes.append)
    assert chosen == [m for m in quant_model.METHODS if "openvino" not in m and m not in quant_model.ALONE_ONLY]
    assert len(notes) == 3 and all("openvino" in n and "not installed" in n and "[bench]" in n for n in notes)
    with pytest.raises(ConfigError, match="int8_cnn_openvino needs openvino, nncf"):
        quant_model.select_methods(["int8_adder", "int8_cnn_openvino"])
    with pytest.raises(ConfigError, match="unknown methods int4_adder"):
        quant_model.select_methods(["int4_adder"])
    assert quant_model.select_methods(["int8_adder", "int8_cnn_fx"]) == ["int8_adder", "int8_cnn_fx"]


def test_every_available_method_computes_the_logits():
    """Each method built for LeNet-5-BN maps a batch to logits; the CNN runtimes' logits are close to the float CNN
    twin's, rebuilt here from the same seeded calibration images."""
    calibration = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    x = calibration[:2]  # inside the calibrated ranges
    with torch.no_grad():
        expected = cnn_twin("lenet5_bn", calibration)(x).numpy()
    # error / largest |logit|; measured: OpenVINO f32 3e-6, bf16 0.02, int8 0.05 (ort) to 0.23 (NNCF) on these small
    # random-weight logits; a wrong scale or a dropped layer is off by about 1 or more
    tolerance = {"fp32_cnn_torch": 1e-5, "fp32_cnn_openvino": 1e-4, "default_cnn_openvino": 0.1,
                 "int8_cnn_fx": 0.35, "int8_cnn_ort": 0.35, "int8_cnn_ort_spin": 0.35, "int8_cnn_openvino": 0.35}
    for method in _available(quant_model.METHODS):
        if method == "int8_adder_int8stem":
            with pytest.raises(ConfigError, match="no multiplicative stem"):
                quant_model.build_method("lenet5_bn", method, threads=1, calibration_images=8)
            continue
        logits = np.asarray(quant_model.build_method("lenet5_bn", method, threads=1, calibration_images=8)(x))
        assert logits.shape == (2, 10) and np.isfinite(logits).all(), method
        if method in tolerance:
            error = np.abs(logits - expected).max() / np.abs(expected).max()
            assert error <= tolerance[method], (method, error)


def test_command_rows_ratios_peak_columns_and_csv(tmp_path, capsys, one_thread):
    methods = _available(["int8_adder", "fp32_cnn_torch", "int8_cnn_fx", "int8_cnn_ort"])
    output = tmp_path / "bench.csv"
    assert main(["bench", "quant-model", "--models", "lenet5_bn", "--batch-sizes", "1", "--repeats-1", "2",
                 "--calibration-images", "8", "--methods", *methods, "--output", str(output)]) == 0
    rows = read_csv(output)
    assert [r["method"] for r in rows] == methods
    run_columns = {"sad_peak_terms_per_s", "openvino", "onnxruntime", "load_average_1m_after"}
    assert MACHINE_COLUMNS | run_columns <= set(rows[0])
    assert_positive(rows, ("median_ms", "cpu_median_ms", "min_ms", "images_per_s"))
    wall = {r["method"]: float(r["median_ms"]) for r in rows}
    cpu = {r["method"]: float(r["cpu_median_ms"]) for r in rows}
    int8_cnn = [m for m in methods if m.startswith("int8_cnn")]
    best_wall, best_cpu = min(int8_cnn, key=wall.get), min(int8_cnn, key=cpu.get)
    for row in rows:
        method = row["method"]
        assert row["repeats"] == "2" and row["threads"] == "2" and row["best_int8_cnn"] == best_wall
        assert float(row["time_vs_best_int8_cnn"]) == pytest.approx(wall[method] / wall[best_wall], rel=1e-3)
        assert float(row["cpu_vs_best_int8_cnn"]) == pytest.approx(cpu[method] / cpu[best_cpu], rel=1e-3)
        assert float(row["time_vs_best_fp32_cnn"]) == pytest.approx(wall[method] / wall["fp32_cnn_torch"], rel=1e-3)
    adder = rows[0]
    peak = float(adder["sad_peak_terms_per_s"])
    assert int(adder["adder_terms"]) == LENET5_TERMS
    assert float(adder["terms_per_s"]) == pytest.approx(LENET5_TERMS / (wall["int8_adder"] / 1e3), rel=1e-3)
    assert float(adder["pct_of_sad_peak"]) == pytest.approx(100 * float(adder["terms_per_s"]) / peak, abs=0.01)
    assert float(adder["beyond_peak_ms"]) == pytest.approx(wall["int8_adder"] - LENET5_TERMS / peak * 1e3, abs=1e-3)
    assert all(r["adder_terms"] == "" for r in rows[1:])  # peak columns for the int8 AdderNet only
    assert "int8_adder" in capsys.readouterr().out


def test_list_options_take_commas_or_spaces():
    assert quant_model._items(["1,8", "64"]) == quant_model._items(["1 8 64"]) == ["1", "8", "64"]
    assert quant_model._items(None) is None  # the default: every model / its batch sizes / every installed method
