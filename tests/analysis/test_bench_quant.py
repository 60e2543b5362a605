"""The integer-adder benchmark library and its command, on tiny shapes (timings are not checked, only the
bookkeeping: rows, ratios, peak, CSV, table)."""

from __future__ import annotations

import argparse
import csv

import pytest

from frugalvision.analysis import bench_quant
from frugalvision.analysis.bench_adder import LayerShape
from frugalvision.cli import bench_quant as cli_bench_quant
from frugalvision.errors import ConfigError
from frugalvision.ops.cpu import adder_u8_numba

TINY = LayerShape("tiny", 2, 8, 6, 6, 8, 3, 1, 1)


def test_shapes_are_the_issue_layers():
    shapes = {s.name: s for s in bench_quant.quant_shapes(64)}
    assert [(s.c_in, s.h, s.c_out, s.k, s.padding) for n, s in shapes.items() if n.startswith("resnet20")] == [
        (16, 32, 16, 3, 1), (32, 16, 32, 3, 1), (64, 8, 64, 3, 1)]
    conv2 = shapes["lenet5_conv2"]
    assert (conv2.n, conv2.c_in, conv2.h, conv2.c_out, conv2.k, conv2.padding) == (64, 6, 14, 16, 5, 0)


def test_sad_peak_rows():
    rows = bench_quant.sad_peak(threads=[1], repeats=2)
    runnable = [n for n, w in adder_u8_numba.WIDTHS.items() if w and adder_u8_numba.width_rejects(w) is None]
    assert [r["sad_backend"] for r in rows] == runnable
    for row in rows:
        assert row["max_terms_per_s"] >= row["terms_per_s"] > 0
    assert all(f"{r['terms_per_s'] / 1e9:.0f} G terms/s" in bench_quant.format_table(rows) for r in rows)


def test_peak_loop_checks_its_sum():
    seconds, terms = adder_u8_numba.sad_peak_run(0, 128, 3, 1)
    assert seconds > 0 and terms == 3 * 16 * 128


def test_bench_rows_table_and_csv(tmp_path):
    methods = ("adder_u8", "adder_u8_i32", "conv_f32", "conv_int8_cl")
    rows = bench_quant.bench_quant_layers([TINY], methods=methods, repeats=2, threads=1)
    by_method = {r["method"]: r for r in rows}
    x86_sad = any(adder_u8_numba.width_rejects(w) is None for w in (64, 32))
    assert set(by_method) == set(methods) | ({"sad_peak"} if x86_sad else set())
    adder = by_method["adder_u8"]
    assert adder["terms"] == 2 * 6 * 6 * 8 * 8 * 9 and adder["threads"] == 1
    assert adder["time_vs_conv_f32"] == pytest.approx(adder["median_ms"] / by_method["conv_f32"]["median_ms"], 1e-2)
    if "sad_peak" in by_method:
        assert adder["pct_of_peak"] == pytest.approx(100 * adder["terms_per_s"] / adder["peak_terms_per_s"], abs=0.1)
    table = bench_quant.format_table(rows)
    assert "tiny" in table and "% peak" in table
    path = bench_quant.write_csv(rows, tmp_path / "quant.csv")
    with path.open() as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == len(rows)
    assert {"cpu_flags", "load_average_1m", "load_average_5m", "numba", "torch"} <= set(written[0])


def test_command_parses_and_rejects_bad_shapes(tmp_path):
    parser = argparse.ArgumentParser()
    cli_bench_quant.add_subparser(parser.add_subparsers(dest="target"))
    args = parser.parse_args(["quant", "--shapes", "resnet20", "--batch-size", "2", "--repeats", "1",
                              "--output", str(tmp_path / "out.csv")])
    assert args.batch_size == 2 and args.output.name == "out.csv"
    bad = parser.parse_args(["quant", "--shapes", "vgg"])
    with pytest.raises(ConfigError, match="unknown set"):
        cli_bench_quant.run(bad)
