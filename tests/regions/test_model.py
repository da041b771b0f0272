"""The latency model: physics, calibration, and the calibration points it must reproduce."""

from __future__ import annotations

import itertools
import math

import pytest

from servepath.regions.catalogue import all_regions, get_region
from servepath.regions.model import (
    CALIBRATION_POINTS,
    DEFAULT_MODEL,
    EARTH_RADIUS_KM,
    FIBRE_KM_PER_MS,
    LatencyModel,
    calibrate,
    great_circle_km,
    latency_matrix,
    region_distance_km,
)


def test_great_circle_distance_matches_known_city_pairs() -> None:
    # London to Paris is 344 km, New York to London 5,570 km (great circle).
    assert great_circle_km(51.5074, -0.1278, 48.8566, 2.3522) == pytest.approx(344, abs=3)
    assert great_circle_km(40.7128, -74.0060, 51.5074, -0.1278) == pytest.approx(5570, abs=15)


def test_great_circle_distance_is_zero_symmetric_and_bounded_by_half_the_earth() -> None:
    assert great_circle_km(52.2, 21.0, 52.2, 21.0) == 0
    assert great_circle_km(10, 20, -30, 40) == pytest.approx(great_circle_km(-30, 40, 10, 20))
    assert great_circle_km(0, 0, 0, 180) == pytest.approx(math.pi * EARTH_RADIUS_KM)
    assert great_circle_km(90, 0, -90, 0) == pytest.approx(math.pi * EARTH_RADIUS_KM)


@pytest.mark.parametrize("point", CALIBRATION_POINTS, ids=lambda p: f"{p.a}-{p.b}")
def test_model_reproduces_each_calibration_point_within_25_percent(point) -> None:  # type: ignore[no-untyped-def]
    estimate = DEFAULT_MODEL.rtt_ms(get_region(point.a), get_region(point.b))
    assert estimate == pytest.approx(point.rtt_ms, rel=0.25)


def test_warsaw_to_belgium_is_near_20_ms_and_warsaw_to_iowa_near_100_ms() -> None:
    warsaw = get_region("europe-central2")
    assert 15 <= DEFAULT_MODEL.rtt_ms(warsaw, get_region("europe-west1")) <= 25
    assert 75 <= DEFAULT_MODEL.rtt_ms(warsaw, get_region("us-central1")) <= 125


def test_every_region_is_under_1_ms_from_itself() -> None:
    for region in all_regions():
        assert DEFAULT_MODEL.rtt_ms(region, region) < 1


def test_the_default_constants_are_the_rounded_fit_of_the_calibration_points() -> None:
    points = [
        (region_distance_km(get_region(p.a), get_region(p.b)), p.rtt_ms) for p in CALIBRATION_POINTS
    ]
    fitted = calibrate(points)
    assert fitted.base_ms == pytest.approx(DEFAULT_MODEL.base_ms, abs=0.05)
    assert fitted.stretch == pytest.approx(DEFAULT_MODEL.stretch, abs=0.005)
    for distance, rtt in points:
        assert fitted.rtt_for_distance_ms(distance) == pytest.approx(rtt)


def test_calibrate_fits_a_line_through_more_than_two_points() -> None:
    model = calibrate([(0, 4.0), (1000, 16.0), (2000, 28.0)], fibre_km_per_ms=200)
    assert model.base_ms == pytest.approx(4.0)
    assert model.stretch == pytest.approx(1.2)  # 12 ms per 1000 km = 2 × 1000 × 1.2 / 200


def test_calibrate_refuses_points_that_cannot_pin_a_line() -> None:
    with pytest.raises(ValueError, match="at least two"):
        calibrate([(100, 5.0)])
    with pytest.raises(ValueError, match="different distances"):
        calibrate([(100, 5.0), (100, 9.0)])


def test_no_estimate_beats_light_in_fibre_on_the_great_circle() -> None:
    regions = all_regions()
    for a, b in itertools.combinations(regions, 2):
        floor = 2 * region_distance_km(a, b) / FIBRE_KM_PER_MS
        assert DEFAULT_MODEL.rtt_ms(a, b) >= floor


def test_rtt_grows_with_distance() -> None:
    model = LatencyModel(base_ms=5, stretch=1.2)
    values = [model.rtt_for_distance_ms(d) for d in (0, 10, 500, 5000, 20000)]
    assert values == sorted(values) and len(set(values)) == len(values)
    with pytest.raises(ValueError):
        model.rtt_for_distance_ms(-1)


def test_transatlantic_estimate_is_in_the_range_clouds_report() -> None:
    # London ↔ northern Virginia is reported at roughly 70-80 ms on inter-region dashboards.
    rtt = DEFAULT_MODEL.rtt_ms(get_region("europe-west2"), get_region("us-east4"))
    assert 60 <= rtt <= 90


def test_matrix_is_symmetric_with_the_same_region_cost_on_its_diagonal() -> None:
    regions = [get_region(i) for i in ("europe-central2", "europe-west1", "us-central1", "eastus")]
    matrix = latency_matrix(regions)
    n = len(regions)
    for i in range(n):
        assert matrix.rtt_ms[i][i] == DEFAULT_MODEL.same_region_ms
        for j in range(n):
            assert matrix.rtt_ms[i][j] == pytest.approx(matrix.rtt_ms[j][i])
    data = matrix.to_json()
    assert data["regions"] == [r.id for r in regions]
    assert data["rtt_ms"][0][1] == pytest.approx(20.0, abs=0.1)  # type: ignore[index]
    assert data["model"]["base_ms"] == DEFAULT_MODEL.base_ms  # type: ignore[index]
