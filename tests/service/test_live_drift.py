"""Live drift through the in-process app: the gauge on /metrics and the live page's panel
after unchanged and shifted traffic, nothing of it without a profile, a profile of other
inputs refused, and the workers' counts merged through their shared directory."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from servepath.cache.base import NoCache
from servepath.config import Settings
from servepath.errors import UsageError
from servepath.model.example import NUMERIC_FEATURES, generate_applicants
from servepath.model.loaded import LoadedModel
from servepath.model.profile import (
    Profile,
    ProfileError,
    ProfileMismatch,
    build_profile,
    write_profile,
)
from servepath.model.schema import InputSchema
from servepath.service.app import ServepathApp
from servepath.service.livedrift import DriftMonitor
from servepath.service.preflight import check_settings
from servepath.store.base import NoLog

pytestmark = pytest.mark.anyio

FEATURES = [*NUMERIC_FEATURES, "home_ownership", "purpose"]


def applicants(n: int, seed: int, *, income: float = 1.0) -> list[dict[str, Any]]:
    """``n`` instances of the example model's callers; ``income`` scales their income."""
    frame = generate_applicants(n, seed)[FEATURES]
    frame["income"] = frame["income"] * income
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def example_profile(model: LoadedModel, version: str | None = None) -> Profile:
    frame = generate_applicants(5_000, seed=11)
    version = model.version if version is None else version
    return build_profile(model.schema, frame, model_name=model.name, model_version=version)


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory: pytest.TempPathFactory, example_model: LoadedModel) -> Path:
    path = tmp_path_factory.mktemp("profile") / "profile.json"
    write_profile(example_profile(example_model), path)
    return path


async def _client(app: ServepathApp) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def drift_app(
    profile_path: Path, example_model: LoadedModel
) -> AsyncIterator[tuple[ServepathApp, httpx.AsyncClient]]:
    settings = Settings(reference_profile=profile_path)
    app = ServepathApp(settings, model=example_model, cache=NoCache(), store=NoLog())
    await app.startup()
    try:
        async with await _client(app) as client:
            yield app, client
    finally:
        await app.shutdown()


def drift_gauge(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "servepath_feature_drift":
                found[sample.labels["feature"]] = sample.value
            elif sample.name == "servepath_feature_drift_window_rows":
                found["(rows)"] = sample.value
    return found


async def _send(client: httpx.AsyncClient, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), 100):
        answer = await client.post("/decisions", json={"instances": rows[start : start + 100]})
        assert answer.status_code == 200, answer.text


async def test_unchanged_traffic_leaves_every_feature_under_the_threshold(
    drift_app: tuple[ServepathApp, httpx.AsyncClient],
) -> None:
    _, client = drift_app
    await _send(client, applicants(600, seed=21))
    gauge = drift_gauge((await client.get("/metrics")).text)
    assert gauge.pop("(rows)") == 600
    assert set(gauge) == set(FEATURES)
    assert max(gauge.values()) < 0.1, gauge
    panel = (await client.get("/_ui/data")).json()["drift"]
    assert panel["drifted"] == [] and panel["enough"] and panel["rows"] == 600
    assert panel["scope"] == "worker" and panel["note"] is None


async def test_shifted_traffic_shows_on_the_gauge_and_tops_the_page_as_drifted(
    drift_app: tuple[ServepathApp, httpx.AsyncClient],
) -> None:
    _, client = drift_app
    await _send(client, applicants(600, seed=22, income=3.0))
    gauge = drift_gauge((await client.get("/metrics")).text)
    assert gauge["income"] > 1.0 and gauge["age"] < 0.1, gauge
    panel = (await client.get("/_ui/data")).json()["drift"]
    top = panel["features"][0]
    assert top["name"] == "income" and top["drifted"] and top["threshold"] == 0.2
    assert "income" in panel["drifted"] and "age" not in panel["drifted"]
    psis = [f["psi"] for f in panel["features"]]
    assert psis == sorted(psis, reverse=True)


async def test_without_a_profile_there_is_no_gauge_and_no_panel(example_model: LoadedModel) -> None:
    app = ServepathApp(Settings(), model=example_model, cache=NoCache(), store=NoLog())
    await app.startup()
    try:
        async with await _client(app) as client:
            await _send(client, applicants(300, seed=23))
            assert "servepath_feature_drift" not in (await client.get("/metrics")).text
            assert (await client.get("/_ui/data")).json()["drift"] is None
    finally:
        await app.shutdown()


async def test_a_profile_of_other_inputs_is_refused_as_a_model_that_does_not_load(
    tmp_path: Path, example_model: LoadedModel
) -> None:
    schema = InputSchema(tuple(f for f in example_model.schema.features if f.name != "age"))
    frame = generate_applicants(500, seed=12)
    other = build_profile(schema, frame, model_name="m", model_version=example_model.version)
    path = tmp_path / "other.json"
    write_profile(other, path)
    settings = Settings(reference_profile=path, on_model_failure="stay")
    with pytest.raises(ProfileMismatch, match="'age' is an input of the model but not in"):
        ServepathApp(settings, model=example_model, cache=NoCache(), store=NoLog())
    app = ServepathApp(settings, model_loader=lambda: example_model, cache=NoCache(), store=NoLog())
    await app.plane.load()
    assert app.plane.state == "failed" and "'age'" in (app.plane.load_error or "")


async def test_a_profile_of_another_version_serves_with_a_warning_on_the_page(
    tmp_path: Path, example_model: LoadedModel
) -> None:
    path = tmp_path / "old.json"
    write_profile(example_profile(example_model, version="0123456789ab"), path)
    app = ServepathApp(
        Settings(reference_profile=path), model=example_model, cache=NoCache(), store=NoLog()
    )
    panel = app.plane.drift.panel() if app.plane.drift else {}
    assert "built for" in panel["note"] and "0123456789ab" in panel["note"]


async def test_a_version_of_other_inputs_swapped_in_pauses_drift_until_one_it_describes(
    drift_app: tuple[ServepathApp, httpx.AsyncClient], example_model: LoadedModel
) -> None:
    app, client = drift_app
    schema = InputSchema(tuple(f for f in example_model.schema.features if f.name != "age"))
    other = dataclasses.replace(example_model, schema=schema, version="0123456789ab")
    app.plane.install(other)
    assert app.plane.primary is not None and app.plane.primary.sketch is None
    panel = (await client.get("/_ui/data")).json()["drift"]
    assert "'age'" in panel["paused"]
    assert "servepath_feature_drift{" not in (await client.get("/metrics")).text
    app.plane.install(example_model)
    assert app.plane.primary.sketch is not None and app.plane.drift is not None
    assert app.plane.drift.paused is None


def test_workers_counts_are_summed_into_one_statistic(
    tmp_path: Path, example_model: LoadedModel
) -> None:
    profile = example_profile(example_model)
    # Two workers of one server: this process and its parent (both alive, as workers are).
    mine = DriftMonitor(profile, shared=tmp_path, pid=os.getpid())
    theirs = DriftMonitor(profile, shared=tmp_path, pid=os.getppid())
    validated = [example_model.schema.validate_one(r) for r in applicants(300, seed=24)]
    mine.sketch.note(validated[:150])
    theirs.sketch.note(validated[150:])
    assert not mine.report().enough  # 150 rows alone: too few
    assert theirs.publish() and not theirs.publish()  # written once, then unchanged
    report = mine.report()
    assert report.rows == 300 and report.enough
    alone = DriftMonitor(profile, pid=os.getpid())
    alone.sketch.note(validated)
    assert [f.psi for f in report.features] == [f.psi for f in alone.report().features]
    # Another profile's counts are never summed with these.
    stranger = DriftMonitor(example_profile(example_model, "0123456789ab"), shared=tmp_path)
    assert stranger.profile.digest == profile.digest  # same bins: the version is no matter
    (tmp_path / "drift-counts" / f"counts-{os.getppid()}.json").write_text('{"digest": "x"}')
    assert mine.report().rows == 150


def test_serve_refuses_a_file_that_is_no_profile_before_it_binds(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    with pytest.raises(ProfileError, match="is not a profile") as refused:
        check_settings(Settings(reference_profile=bad, data_dir=tmp_path))
    assert isinstance(refused.value, UsageError)  # exit status 2
