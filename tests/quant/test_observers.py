"""Observers and the uint8 grid on data whose answer is known."""

from __future__ import annotations

import pytest
import torch

from frugalvision.errors import ConfigError, InputError
from frugalvision.quant.fold import QParams
from frugalvision.quant.observers import RangeStats, minmax_range, percentile_range, search_range


def test_range_stats_track_extremes_count_and_sign():
    stats = RangeStats(sample_per_update=4)
    stats.update(torch.arange(-5.0, 6.0))
    stats.update(torch.tensor([[7.0]]))
    assert (stats.min, stats.max, stats.count) == (-5.0, 7.0, 12)
    assert not stats.nonnegative
    assert stats.samples.numel() == 5  # 4 drawn from the first tensor, 1 from the second


def test_minmax_keeps_zero_for_nonnegative_tensors():
    stats = RangeStats()
    stats.update(torch.tensor([0.5, 3.0, 1.0]))  # e.g. after a ReLU: the range starts at 0, zero point 0
    assert minmax_range(stats) == (0.0, 3.0)
    assert QParams.from_range(*minmax_range(stats)).zero_point == 0


def test_percentile_ignores_a_rare_outlier():
    values = torch.cat([torch.linspace(0, 1, 100_001), torch.tensor([1000.0])])
    stats = RangeStats(sample_per_update=200_000)
    stats.update(values)
    lo, hi = percentile_range(stats, 99.9)
    assert lo == 0.0 and hi == pytest.approx(0.999, abs=0.01)
    assert minmax_range(stats)[1] == 1000.0


def test_percentile_of_signed_data_is_two_sided():
    stats = RangeStats(sample_per_update=300_000)
    stats.update(torch.linspace(-2, 2, 200_001))
    lo, hi = percentile_range(stats, 99.0)
    assert lo == pytest.approx(-1.96, abs=0.01) and hi == pytest.approx(1.96, abs=0.01)


def test_search_returns_the_candidate_of_least_error():
    stats = RangeStats()
    stats.update(torch.tensor([0.0, 8.0]))
    (lo, hi), trials = search_range(stats, lambda q: (q.hi - 2.0) ** 2)
    assert len(trials) == 25
    assert lo == 0.0 and hi == pytest.approx(2.0)  # alpha = 2**(-16/8) = 1/4 of the maximum
    assert min(trials, key=lambda t: t[1])[0] == pytest.approx(0.25)


def test_qparams_grid_holds_zero_exactly_and_rounds_within_half_a_step():
    q = QParams.from_range(-1.0, 3.0)
    assert q.lo <= -1.0 + q.scale and q.hi >= 3.0 - q.scale and q.hi - q.lo == pytest.approx(255 * q.scale)
    assert int(q.quantize(torch.zeros(1))) == q.zero_point and float(q.dequantize(q.quantize(torch.zeros(1)))) == 0
    x = torch.linspace(q.lo, q.hi, 10_001)
    assert (q.fake_quantize(x) - x).abs().max() <= q.scale / 2 + 1e-6
    assert q.quantize(torch.tensor([-100.0, 100.0])).tolist() == [0, 255]


def test_qparams_reject_non_finite_ranges():
    with pytest.raises(InputError, match="non-finite"):
        QParams.from_range(0.0, float("inf"))


def test_non_finite_values_name_the_tensor_and_a_bad_percentile_is_a_config_error():
    stats = RangeStats("input of block.3")
    with pytest.raises(InputError, match=r"activations at the input of block\.3 are not finite \(NaN or inf\)"):
        stats.update(torch.tensor([0.0, float("nan")]))
    stats.update(torch.tensor([0.0, 1.0]))
    with pytest.raises(ConfigError, match=r"percentile must be in \(50, 100\], got 40"):
        percentile_range(stats, 40.0)
