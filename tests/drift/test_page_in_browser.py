"""The drift page in a real browser (Debian's Chromium), opened from disk at a laptop's and a
phone's size: nothing is fetched, nothing errs, nothing is wider than the screen, every
distribution is drawn, and a feature named like markup stays text.

In a module of its own: the browser fixture's event loop forbids ``asyncio.run`` beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from servepath.config import Settings
from servepath.drift import DriftReport, VersionDrift
from servepath.drift.columns import ColumnBuilder, Sample
from servepath.drift.compare import compare_feature
from servepath.render.drift import drift_html
from tests.helpers.browser import VIEWPORTS, Browser, browser  # noqa: F401  (the fixture)

pytestmark = pytest.mark.timeout(120)
HOSTILE = '<img src=x onerror="alert(1)">'


def _sample(values: list[Any], kind: str) -> Sample:
    builder = ColumnBuilder(kind)  # type: ignore[arg-type]
    builder.add(values)
    return builder.sample()


def _report() -> DriftReport:
    rng = np.random.default_rng(9)
    ref_income, cur_income = rng.lognormal(10.7, 0.4, 3000), rng.lognormal(11.0, 0.4, 2000)
    purposes = [f"purpose_{i}" for i in range(15)]
    ref_purpose = rng.choice(purposes, 3000).tolist()
    cur_purpose = rng.choice([*purposes, HOSTILE], 2000).tolist()
    features = (
        compare_feature("income", "feature", _sample(ref_income.tolist(), "numeric"),
                        _sample(cur_income.tolist(), "numeric")),
        compare_feature("age", "feature", _sample(rng.integers(21, 70, 3000).tolist(), "numeric"),
                        _sample(rng.integers(21, 70, 2000).tolist(), "numeric")),
        compare_feature(HOSTILE, "feature", _sample(ref_purpose, "categorical"),
                        _sample(cur_purpose, "categorical")),
        compare_feature("term_months", "feature", _sample([12.0, 24.0, 36.0] * 1000, "numeric"),
                        _sample([12.0, 36.0, 60.0] * 700, "numeric")),
    )  # fmt: skip
    prediction = (
        compare_feature("decision", "prediction", _sample(["approve", "decline"] * 1500,
                        "categorical"), _sample(["approve"] * 1500 + ["decline"] * 500,
                        "categorical")),
    )  # fmt: skip
    version = VersionDrift("credit", "3f2a9c01e7b4", "7", 2000, features, prediction, 0.5)
    return DriftReport(
        store=str(Settings().data_dir / "predictions.sqlite3"),
        reference_kind="file",
        reference="/data/train.csv",
        reference_rows=3000,
        since=1_790_000_000.0,
        until=None,
        reference_since=None,
        reference_until=None,
        traffic="ordinary",
        fail_share=0.5,
        features_from="reference",
        versions=(version,),
        notes=("not in the logged instances, not compared: label",),
    )


def test_the_drift_page_draws_each_distribution_and_fits_both_screens(
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    report = _report()
    assert not report.ok
    path = tmp_path / "drift.html"
    path.write_text(drift_html(report, generated="2026-12-07T18:00:00+00:00"), encoding="utf-8")

    def check(page: Any, size: str) -> None:
        assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORTS[size][0]
        charts = page.locator("figure svg[role=img]")
        assert charts.count() == 5  # four features and the decision
        for i in range(charts.count()):
            box = charts.nth(i).bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 20
        assert page.locator("script, img").count() == 0  # the hostile name is text
        first = page.locator("tbody tr").first.inner_text()
        assert "DRIFT" in first
        assert page.get_by_role("heading", name="credit 7 (3f2a9c01e7b4)").is_visible()

    records = browser.visit(path.as_uri(), tmp_path / "shots", name="drift", check=check)
    for record in records.values():
        record.assert_clean()
