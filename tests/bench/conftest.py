"""Helpers of the benchmark tests: timings have no oracle, so these tests check the bookkeeping (rows, columns,
ratios of the recorded numbers, machine information) and that every number is a positive finite time."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path

import pytest

MACHINE_COLUMNS = {"cpu", "cpu_count", "torch_threads", "python", "torch", "numba", "load_average_1m",
                   "load_average_5m", "load_average_15m", "cpu_flags", "omp_wait_policy", "date"}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def assert_positive(rows: Iterable[dict[str, str]], columns: Iterable[str]) -> None:
    """Every given column of every row holds a positive finite number."""
    for row in rows:
        for column in columns:
            value = float(row[column])
            assert math.isfinite(value) and value > 0, (column, row)


@pytest.fixture
def one_thread():
    """Benchmarks set torch's thread count; give it back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def committed_columns(repo_root: Path, name: str) -> list[str]:
    """The header of a committed benchmark CSV (benchmarks/results/NAME): new CSVs must keep its columns."""
    with (repo_root / "benchmarks" / "results" / name).open(newline="") as handle:
        return next(csv.reader(handle))
