from __future__ import annotations

import itertools
import pickle
import random

import pytest

from servepath.load.histogram import HIGHEST_US, LatencyHistogram


def test_percentiles_are_read_back_in_milliseconds_to_three_digits() -> None:
    h = LatencyHistogram()
    for us in range(1, 10_001):  # 1 µs .. 10 ms, uniform
        h.record_us(us)
    assert h.count == 10_000
    assert h.percentile_ms(50) == pytest.approx(5.0, rel=0.002)
    assert h.percentile_ms(99) == pytest.approx(9.9, rel=0.002)
    assert h.max_ms() == pytest.approx(10.0, rel=0.002)
    assert h.mean_ms() == pytest.approx(5.0, rel=0.01)


def test_an_empty_histogram_reads_zero_rather_than_raising() -> None:
    h = LatencyHistogram()
    assert h.count == 0
    assert h.percentile_ms(99) == 0.0
    assert h.max_ms() == 0.0
    assert h.spectrum() == []


def test_histograms_of_several_processes_merge_into_the_one_a_single_process_records() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(7, 1.2)) + 1 for _ in range(20_000)]
    whole = LatencyHistogram()
    parts = [LatencyHistogram() for _ in range(3)]
    for i, v in enumerate(values):
        whole.record_us(v)
        parts[i % 3].record_us(v)
    # The parts travel between processes in their encoded form.
    travelled = [LatencyHistogram.decode(p.encode()) for p in parts]
    merged = LatencyHistogram.merged(travelled)
    assert merged.count == whole.count
    for p in (50, 90, 99, 99.9, 100):
        assert merged.percentile_ms(p) == whole.percentile_ms(p)


def test_a_histogram_pickles_through_its_compressed_encoding() -> None:
    h = LatencyHistogram()
    for us in (100, 200, 5_000_000):
        h.record_us(us)
    back = pickle.loads(pickle.dumps(h))
    assert back.count == 3
    assert back.max_ms() == pytest.approx(5000, rel=0.001)


def test_values_beyond_an_hour_are_clamped_and_counted() -> None:
    h = LatencyHistogram()
    h.record_seconds(7200)
    h.record_seconds(-1)
    assert h.count == 2
    assert h.clamped == 1
    assert h.max_ms() == pytest.approx(HIGHEST_US / 1000, rel=0.001)


def test_the_spectrum_climbs_to_the_maximum() -> None:
    h = LatencyHistogram()
    for us in range(1, 1001):
        h.record_us(us * 10)
    points = h.spectrum()
    assert points[0].percentile < 1
    assert points[-1].percentile == 100.0
    assert points[-1].ms == pytest.approx(h.max_ms())
    assert all(a.ms <= b.ms for a, b in itertools.pairwise(points))
    assert h.count_above_ms(5.0) == pytest.approx(500, abs=5)
