from __future__ import annotations

import math

import pytest

from servepath.errors import ConfigError
from servepath.load.capacity import (
    SLO,
    USL_MIN_R_SQUARED,
    check_slo,
    estimate_replicas,
    fit_usl,
    parse_error_budget,
    parse_slo,
)


@pytest.mark.parametrize(
    ("text", "percentile", "ms"),
    [
        ("p99=50ms", 99.0, 50.0),
        ("p99.9=200ms", 99.9, 200.0),
        ("p50=0.5s", 50.0, 500.0),
        ("P95 = 20", 95.0, 20.0),
        ("p99=800us", 99.0, 0.8),
    ],
)
def test_slos_read_percentile_and_threshold(text: str, percentile: float, ms: float) -> None:
    slo = parse_slo(text)
    assert (slo.percentile, slo.threshold_ms) == (percentile, pytest.approx(ms))


@pytest.mark.parametrize("text", ["p99", "99=50ms", "p100=5ms", "p0=5ms", "p99=0ms", "p99=5 days"])
def test_an_slo_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_slo(text)


def test_error_budgets_are_percentages_or_fractions() -> None:
    assert parse_error_budget("0.1%") == pytest.approx(0.001)
    assert parse_error_budget("0.02") == pytest.approx(0.02)
    for bad in ("x", "100%", "-1%"):
        with pytest.raises(ConfigError):
            parse_error_budget(bad)


def test_slo_check_names_each_way_a_run_missed() -> None:
    slo = SLO(99.0, 50.0, error_budget=0.01)
    assert check_slo(slo, 49.0, 1000, 10).met
    assert check_slo(slo, 51.0, 1000, 0).failures == ("latency",)
    assert check_slo(slo, 10.0, 1000, 11).failures == ("errors",)
    assert "no_responses" in check_slo(slo, 0.0, 0, 0).failures


def test_linear_estimate_plans_each_replica_below_its_capacity_by_the_headroom() -> None:
    est = estimate_replicas(1000, 300, headroom=0.3)
    assert est.model == "linear"
    assert est.planned_per_replica_rps == pytest.approx(210)
    assert est.replicas == math.ceil(1000 / 210) == 5
    assert "30% headroom" in est.statement and "linear" in est.statement


def test_exact_fits_do_not_round_up_a_replica() -> None:
    assert estimate_replicas(400, 100, headroom=0.0).replicas == 4


def test_no_capacity_means_no_estimate() -> None:
    with pytest.raises(ConfigError):
        estimate_replicas(100, 0)


def _usl(n: float, lam: float, sigma: float, kappa: float) -> float:
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def test_usl_fit_recovers_known_coefficients() -> None:
    points = [(n, _usl(n, 100.0, 0.05, 0.002)) for n in (1, 2, 4, 8, 16, 32, 64)]
    model = fit_usl(points)
    assert model.lambda_ == pytest.approx(100.0, rel=0.02)
    assert model.sigma == pytest.approx(0.05, rel=0.1)
    assert model.kappa == pytest.approx(0.002, rel=0.1)
    assert model.r_squared > 0.999
    assert model.peak_concurrency == pytest.approx(math.sqrt(0.95 / 0.002), rel=0.1)


def test_usl_fit_with_no_crosstalk_finds_no_peak() -> None:
    points = [(n, _usl(n, 50.0, 0.1, 0.0)) for n in (1, 2, 4, 8, 16)]
    model = fit_usl(points)
    assert model.kappa < 1e-5
    assert model.peak_throughput == pytest.approx(50.0 / 0.1, rel=0.15)


def test_usl_needs_three_concurrencies() -> None:
    with pytest.raises(ConfigError):
        fit_usl([(1, 100.0), (2, 190.0)])


def test_three_concurrencies_fit_the_usl_exactly_so_it_is_neither_trusted_nor_extrapolated() -> (
    None
):
    # 1, 4, 16 as `load --concurrency 1,4,16` measures them: any three points give R² = 1
    model = fit_usl([(1, 100.0), (4, 320.0), (16, 600.0)])
    assert model.r_squared == pytest.approx(1.0, abs=1e-3)
    assert not model.enough_points and not model.good_fit
    assert model.weakness is not None and "measure 4 or more" in model.weakness
    assert model.to_json()["enough_points"] is False
    est = estimate_replicas(3000, 600.0, headroom=0.0, usl=model)
    assert est.model == "linear" and est.usl is None and est.replicas == 5
    assert any("3 concurrencies fit" in note for note in est.notes)
    four = fit_usl([(n, _usl(n, 100.0, 0.05, 0.01)) for n in (1, 2, 4, 16)])
    assert four.enough_points and four.good_fit and four.weakness is None


def test_usl_estimate_never_plans_a_replica_beyond_the_fitted_peak() -> None:
    model = fit_usl([(n, _usl(n, 100.0, 0.05, 0.01)) for n in (1, 2, 4, 8, 16, 32)])
    peak = model.peak_throughput
    est = estimate_replicas(5000, peak * 2, headroom=0.2, usl=model)
    assert est.model == "usl"
    assert est.per_replica_rps == pytest.approx(peak)
    assert est.replicas == math.ceil(5000 / (peak * 0.8))
    assert "USL" in est.statement and "σ=" in est.statement


def test_a_poor_usl_fit_is_flagged_and_not_planned_with() -> None:
    # throughput that jumps about with concurrency: no curve explains it
    model = fit_usl([(1, 400.0), (2, 90.0), (4, 700.0), (8, 120.0), (16, 650.0)])
    assert model.r_squared < USL_MIN_R_SQUARED and not model.good_fit
    assert model.to_json()["good_fit"] is False
    est = estimate_replicas(3000, 650.0, headroom=0.3, usl=model)
    assert est.model == "linear" and est.usl is None
    assert est.replicas == math.ceil(3000 / (650 * 0.7))
    assert any("poor" in note and "not used" in note for note in est.notes)


def test_replica_estimates_carry_the_cache_ratio_they_were_measured_at() -> None:
    computed = estimate_replicas(1000, 300, cache_hit_ratio=0.0)
    assert "measured with 0.0% of answers from the cache" in computed.statement
    assert computed.to_json()["cache_hit_ratio"] == 0.0 and not computed.notes
    cached = estimate_replicas(1000, 3000, cache_hit_ratio=0.98)
    assert cached.replicas == 1 and "1 replica for" in cached.statement
    assert any("98.0% of the answers came from the cache" in n for n in cached.notes)


def test_importing_the_capacity_model_does_not_import_numpy() -> None:
    import subprocess
    import sys

    code = "import sys, servepath.load.capacity; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
