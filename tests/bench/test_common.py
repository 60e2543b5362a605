"""The shared benchmark helpers: machine information, tidy CSV, tables, shape sets, result paths, the timer."""

from __future__ import annotations

import time

import pytest
import torch

from frugalvision.bench import TARGETS, common, target
from frugalvision.errors import ConfigError

from .conftest import MACHINE_COLUMNS, read_csv


def test_machine_info_has_the_cpu_flags_and_load_averages():
    info = common.machine_info(extra="x")
    assert MACHINE_COLUMNS <= set(info) and info["extra"] == "x"
    assert all(float(info[f"load_average_{m}m"]) >= 0 for m in (1, 5, 15))
    assert info["torch_threads"] == str(torch.get_num_threads())
    flags = next((line for line in open("/proc/cpuinfo") if line.startswith(("flags", "Features"))), "")
    assert ("avx2" in info["cpu_flags"].split()) == (" avx2" in flags)


def test_csv_is_tidy_with_the_union_of_columns_and_machine_info_on_every_row(tmp_path):
    rows = [{"method": "a", "median_ms": 1.5}, {"method": "b", "terms": 7, "cpu": "row wins"}]
    path = common.write_csv(rows, tmp_path / "sub" / "x.csv", {"cpu": "test cpu", "torch": "9"})
    written = read_csv(path)
    assert list(written[0]) == ["method", "median_ms", "terms", "cpu", "torch"]
    assert [(r["method"], r["median_ms"], r["terms"], r["cpu"], r["torch"]) for r in written] == [
        ("a", "1.5", "", "test cpu", "9"), ("b", "", "7", "row wins", "9")]
    with pytest.raises(ValueError, match="no rows"):
        common.write_csv([], tmp_path / "empty.csv")


def test_table_aligns_columns_right():
    assert common.format_table(["a", "bbb"], [[1, 2.5], ["long", "x"]]).splitlines() == [
        "   a  bbb", "   1  2.5", "long    x"]


def test_shape_sets_parse_and_reject_unknown_names():
    shapes = common.parse_shape_sets(" resnet20 , lenet5", 4)
    assert [s.name for s in shapes] == ["resnet20_stage1", "resnet20_stage2", "resnet20_stage3", "lenet5_conv1",
                                       "lenet5_conv2", "lenet5_fc1", "lenet5_fc2"]
    assert {s.n for s in shapes} == {4} and shapes[0].input == "4x16x32x32" and shapes[0].filters == "16x16x3x3"
    assert [s.name for s in common.parse_shape_sets("lenet5", 1, keep=lambda s: s.k == 5)] == [
        "lenet5_conv1", "lenet5_conv2", "lenet5_fc1"]
    for bad in ("vgg", "", " , "):
        with pytest.raises(ConfigError, match="unknown set"):
            common.parse_shape_sets(bad, 1)


def test_result_path_is_under_benchmarks_results():
    assert common.result_path("quant-model", stamp=False).as_posix() == "benchmarks/results/bench_quant_model.csv"
    stamped = common.result_path("adder", "cpu2-t1")
    assert stamped.parent.as_posix() == "benchmarks/results" and stamped.name.startswith("bench_adder_cpu2-t1_2")


def test_interleaved_timer_shuffles_the_order_and_counts_rounds():
    calls: list[str] = []

    def make(name: str, seconds: float):
        def fn() -> None:
            calls.append(name)
            time.sleep(seconds)
        return fn

    timings = common.time_interleaved({"slow": make("slow", 0.004), "fast": make("fast", 0.0), "few": make("few", 0)},
                                      6, warmup=1, repeats={"few": 2})
    assert calls[:3] == ["slow", "fast", "few"]  # warm-up, in order
    rounds = [calls[i:i + 3] for i in range(3, 9, 3)] + [calls[9 + 2 * i:11 + 2 * i] for i in range(4)]
    assert [sorted(r) for r in rounds] == [["fast", "few", "slow"]] * 2 + [["fast", "slow"]] * 4
    assert len({r.index("slow") < r.index("fast") for r in rounds}) == 2  # a new order in each round
    assert [len(timings.wall[m]) for m in ("slow", "fast", "few")] == [6, 6, 2]
    assert timings.median("slow") >= 0.004 > timings.median("fast")
    assert timings.minimum("slow") <= timings.median("slow")
    longer = common.time_interleaved({"a": lambda: time.sleep(0.002)}, 1, warmup=0, min_seconds=0.03)
    assert len(longer.wall["a"]) >= 2 and sum(longer.wall["a"]) >= 0.004  # more rounds until 30 ms passed
    self_timed = common.time_interleaved({"peak": lambda: 0.25}, 3, self_timed=("peak",))
    assert self_timed.wall["peak"] == [0.25, 0.25, 0.25] and self_timed.cpu["peak"] == []


def test_every_target_is_registered_once():
    names = [t.name for t in TARGETS]
    assert names == ["adder", "epoch", "quant", "quant-model", "model", "onnx", "startup"]
    assert target("startup") is TARGETS[-1]
    with pytest.raises(KeyError, match="no benchmark target"):
        target("nope")
