"""``frugalvision bench quant`` on tiny shapes (timings are not checked, only the bookkeeping: rows, ratios, peak,
CSV, table) and the SAD peak loop, checked against numpy inside :func:`sad_peak_run`."""

from __future__ import annotations

import pytest

from frugalvision.bench import quant, sad_peak
from frugalvision.bench.common import LayerShape
from frugalvision.cli.main import main
from frugalvision.ops.cpu import adder_u8_numba

from .conftest import MACHINE_COLUMNS, assert_positive, committed_columns, read_csv

TINY = LayerShape("tiny", 2, 8, 6, 6, 8, 3, 1, 1)
X86_SAD = any(adder_u8_numba.width_rejects(w) is None for w in (64, 32))


def test_shapes_are_the_issue_layers():
    shapes = {s.name: s for s in quant.quant_shapes(64)}
    assert [(s.c_in, s.h, s.c_out, s.k, s.padding) for n, s in shapes.items() if n.startswith("resnet20")] == [
        (16, 32, 16, 3, 1), (32, 16, 32, 3, 1), (64, 8, 64, 3, 1)]
    conv2 = shapes["lenet5_conv2"]
    assert (conv2.n, conv2.c_in, conv2.h, conv2.c_out, conv2.k, conv2.padding) == (64, 6, 14, 16, 5, 0)
    assert len(shapes) == 4


def test_sad_peak_rows():
    rows = sad_peak.sad_peak(threads=[1], repeats=2)
    runnable = [n for n, w in adder_u8_numba.WIDTHS.items() if w and adder_u8_numba.width_rejects(w) is None]
    assert [r["sad_backend"] for r in rows] == runnable
    for row in rows:
        assert row["max_terms_per_s"] >= row["terms_per_s"] > 0
    assert all(f"{r['terms_per_s'] / 1e9:.0f} G terms/s" in quant.summary_table(rows) for r in rows)


def test_peak_loop_checks_its_sum():
    seconds, terms = sad_peak.sad_peak_run(0, 128, 3, 1)
    assert seconds > 0 and terms == 3 * 16 * 128


def test_bench_rows_ratios_and_table():
    methods = ("adder_u8", "adder_u8_i32", "conv_f32", "conv_int8_cl")
    rows = quant.bench_quant_layers([TINY], methods=methods, repeats=2, threads=1)
    by_method = {r["method"]: r for r in rows}
    assert set(by_method) == set(methods) | ({"sad_peak"} if X86_SAD else set())
    adder = by_method["adder_u8"]
    assert adder["terms"] == 2 * 6 * 6 * 8 * 8 * 9 and adder["threads"] == 1
    assert adder["time_vs_conv_f32"] == pytest.approx(adder["median_ms"] / by_method["conv_f32"]["median_ms"], 1e-2)
    if "sad_peak" in by_method:
        assert adder["pct_of_peak"] == pytest.approx(100 * adder["terms_per_s"] / adder["peak_terms_per_s"], abs=0.1)
    table = quant.summary_table(rows)
    assert "tiny" in table and "% peak" in table


def test_command_writes_the_committed_columns(tmp_path, capsys, repo_root, one_thread):
    output = tmp_path / "quant.csv"
    assert main(["bench", "quant", "--shapes", "lenet5", "--batch-size", "2", "--repeats", "2", "--threads", "1",
                 "--output", str(output)]) == 0
    rows = read_csv(output)
    assert set(committed_columns(repo_root, "bench_quant_cpu2-x86_64-t2_20261205-152526.csv")) <= set(rows[0])
    assert MACHINE_COLUMNS <= set(rows[0])
    layers = [r for r in rows if r["shape"] == "lenet5_conv2"]
    assert [r["method"] for r in layers][:len(quant.METHODS)] == list(quant.METHODS)
    assert_positive(layers, ("median_ms", "min_ms", "terms_per_s"))
    peaks = [r for r in rows if r["method"].startswith("sad_peak_")]
    assert len(peaks) == (len([b for b in ("sad512", "sad256") if b in rows[0]["sad_backends"].split()]))
    assert_positive(peaks, ("terms_per_s", "max_terms_per_s"))
    assert str(output) in capsys.readouterr().out
