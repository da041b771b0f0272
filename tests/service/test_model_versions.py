"""Versions of one model in one process: the repository routes, canary routing, shadow copies.

The app runs in-process over httpx's ASGI transport with a real model repository on disk
(three versions, see ``versions_support``); the real servers are in ``test_model_swap``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from servepath.cache.base import NoCache
from servepath.cache.memory import MemoryCache
from servepath.config import Settings
from servepath.errors import ConfigError
from servepath.service.app import ServepathApp
from servepath.service.deployments import BUCKETS, bucket, in_share
from servepath.service.shadow import agrees
from servepath.store import open_log
from servepath.store.base import NoLog
from servepath.store.reader import SQLiteReader
from tests.service.versions_support import admin, build_repository, user, write_keys

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory, example_model_path: Path) -> Path:
    return build_repository(tmp_path_factory.mktemp("repo"), example_model_path)


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory for the module: each version's engine race runs once."""
    return tmp_path_factory.mktemp("data")


def _settings(repository: Path, tmp_path: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "model_repository": str(repository),
        "data_dir": tmp_path,
        "model_control": "explicit",
        "api_key_file": write_keys(tmp_path / "keys"),
        "admin_keys": "admin",
        "forwarded_allow_ips": "127.0.0.1",
    }
    values.update(changes)
    if "model" in values:
        values["model_path"] = Path(values.pop("model"))
    return Settings(**values)


async def _started(settings: Settings, cache: Any = None, store: Any = None) -> ServepathApp:
    app = ServepathApp(settings, cache=cache or NoCache(), store=store or NoLog())
    await app.startup()
    # Ready once every configured version serves (a candidate prepared on a busy machine
    # can take a while: its child runs at a background priority).
    deadline = time.monotonic() + 240
    while app.plane.state == "loading" and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert app.plane.state == "ready", app.plane.load_error
    return app


@pytest.fixture
async def app(repository: Path, engines: Path) -> AsyncIterator[ServepathApp]:
    app = await _started(_settings(repository, engines, model="1"))
    yield app
    await app.shutdown()


@pytest.fixture
async def client(app: ServepathApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 51515))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def _example(app: ServepathApp) -> dict[str, Any]:
    assert app.plane.model is not None
    return app.plane.model.schema.example()


async def _control(client: httpx.AsyncClient, action: str, **parameters: Any) -> httpx.Response:
    body = {"parameters": parameters} if parameters else None
    return await client.post(f"/v2/repository/models/fraud/{action}", json=body, headers=admin())


# --- settings -------------------------------------------------------------------------------


@pytest.mark.pure
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"api_key_file": None}, "needs --api-key-file and --admin-keys"),
        ({"admin_keys": ""}, "needs --api-key-file and --admin-keys"),
        ({"model_repository": None}, "loads versions from --model-repository"),
        ({"model": "/models/fraud.joblib"}, "names one of its version folders"),
        ({"model_control": "implicit"}, "none or explicit"),
        ({"candidate_weight": 101.0, "candidate": "2"}, "0 to 100"),
        ({"shadow_share": 1.5, "shadow": "2"}, "fraction 0 to 1"),
        ({"candidate_weight": 20.0}, "needs --candidate"),
    ],
)
def test_model_control_refuses_to_start_without_what_keeps_it_safe(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(tmp_path / "repo", tmp_path, **changes)


# --- routing (pure) -------------------------------------------------------------------------


@pytest.mark.pure
def test_a_canary_of_20_percent_takes_20_of_every_1000_callers_within_4_points() -> None:
    for prefix in ("10.0.", "key-", "2001:db8::"):
        callers = [f"{prefix}{i}" for i in range(1000)]
        share = sum(in_share(c, 20) for c in callers) / 10
        assert 16 <= share <= 24, (prefix, share)


@pytest.mark.pure
def test_raising_the_weight_only_moves_callers_to_the_candidate() -> None:
    callers = [f"caller-{i}" for i in range(2000)]
    at_10 = {c for c in callers if in_share(c, 10)}
    at_30 = {c for c in callers if in_share(c, 30)}
    assert at_10 <= at_30
    assert not any(in_share(c, 0) for c in callers)
    assert all(in_share(c, 100) for c in callers)
    assert all(0 <= bucket(c) < BUCKETS for c in callers)


@pytest.mark.pure
def test_answers_agree_on_the_decision_or_within_the_tolerance() -> None:
    assert agrees({"decision": "approve", "probability": 0.9}, {"decision": "approve"})
    assert not agrees({"decision": "approve"}, {"decision": "deny"})
    assert agrees({"value": 1.0}, {"value": 1.0 + 1e-9})
    assert not agrees({"value": 1.0}, {"value": 1.01})
    assert not agrees({"decision": True}, {"decision": 1})
    assert not agrees({"value": 1.0}, {"value": "1.0"})


# --- the repository routes ------------------------------------------------------------------


async def test_the_index_lists_every_folder_and_its_state(client: httpx.AsyncClient) -> None:
    response = await client.post("/v2/repository/index", headers=admin())
    assert response.status_code == 200
    by_version = {entry["version"]: entry for entry in response.json()}
    assert by_version["1"]["state"] == "READY"
    assert by_version["1"]["role"] == "primary"
    assert by_version["2"] == {"name": "fraud", "version": "2", "state": "UNAVAILABLE",
                               "reason": "not loaded"}  # fmt: skip


async def test_only_admin_keys_may_call_model_control(client: httpx.AsyncClient) -> None:
    for path in ("/v2/repository/index", "/v2/repository/models/fraud/load"):
        assert (await client.post(path)).status_code == 401
        refused = await client.post(path, headers=user(), json={"parameters": {"version": "2"}})
        assert refused.status_code == 403
        assert "admin" in refused.json()["error"]
    # A key that may not control still predicts.
    assert (await client.post("/decisions", json=_example_of(client), headers=user())).is_success


def _example_of(client: httpx.AsyncClient) -> dict[str, Any]:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    return _example(transport.app)  # type: ignore[arg-type]


async def test_a_load_swaps_the_version_every_later_answer_carries(
    client: httpx.AsyncClient, app: ServepathApp
) -> None:
    row = _example(app)
    before = await client.post("/decisions", json=row, headers=user())
    assert before.headers["x-model-version"] == "1"
    assert before.json()["model_label"] == "1"
    loaded = await _control(client, "load", version="2")
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["serving"]["primary"]["label"] == "2"
    after = await client.post("/decisions", json=row, headers=user())
    assert after.headers["x-model-version"] == "2"
    assert after.json()["model_version"] != before.json()["model_version"]
    metadata = (await client.get("/v2/models/fraud", headers=user())).json()
    assert metadata["versions"] == ["2"]
    # V2 inference by version label.
    infer = await client.post(
        "/v2/models/fraud/versions/2/infer",
        json={
            "inputs": [
                {
                    "name": k,
                    "shape": [1],
                    "datatype": "BYTES" if isinstance(v, str) else "FP64",
                    "data": [v],
                }
                for k, v in row.items()
            ]
        },
        headers=user(),
    )
    assert infer.status_code == 200, infer.text
    assert infer.json()["model_version"] == "2"


@pytest.mark.parametrize(
    ("parameters", "status", "words"),
    [
        ({"version": "9"}, 404, "no version '9'"),
        ({"version": "../1"}, 404, "version label"),
        ({"version": "/etc/passwd"}, 404, "version label"),
        ({"version": "2", "role": "boss"}, 400, "role"),
        ({"version": "2", "role": "candidate", "weight": 250}, 400, "weight"),
        ({}, 400, "version"),
    ],
)
async def test_a_load_that_cannot_be_done_is_refused_and_the_old_version_serves(
    client: httpx.AsyncClient, app: ServepathApp, parameters: dict[str, Any], status: int,
    words: str,
) -> None:  # fmt: skip
    response = await _control(client, "load", **parameters)
    assert response.status_code == status, response.text
    assert words in response.text
    answer = await client.post("/decisions", json=_example(app), headers=user())
    assert answer.headers["x-model-version"] == "1"


async def test_a_broken_version_is_refused_with_its_reason(
    repository: Path, tmp_path: Path, engines: Path
) -> None:
    repo = tmp_path / "fraud"
    (repo / "1").mkdir(parents=True)
    (repo / "1" / "model.joblib").write_bytes((repository / "1" / "model.joblib").read_bytes())
    (repo / "4").mkdir()
    (repo / "4" / "model.joblib").write_bytes(b"\x80\x04not a pickle at all")
    (repo / "5").mkdir()
    (repo / "5" / "model.joblib").write_bytes((repository / "1" / "model.joblib").read_bytes())
    (repo / "5" / "model.joblib.schema.json").write_text('[{"name": "shoe_size", "kind": 3}]')
    big = repo / "6"
    big.mkdir()
    (big / "model.joblib").write_bytes((repository / "1" / "model.joblib").read_bytes() * 4)
    limit = (repository / "1" / "model.joblib").stat().st_size * 2
    app = await _started(_settings(repo, engines, model="1", max_model_bytes=limit))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for label, reason in (("4", "load_failed"), ("5", "load_failed"),
                                  ("6", "too_large")):  # fmt: skip
                response = await _control(client, "load", version=label)
                assert response.status_code == 400, response.text
                assert response.json()["reason"] == reason
                assert "serving version is unchanged" in response.json()["error"]
                answer = await client.post("/decisions", json=_example(app), headers=user())
                assert answer.headers["x-model-version"] == "1"
            index = (await client.post("/v2/repository/index", headers=admin())).json()
            states = {e["version"]: e for e in index}
            assert states["4"]["state"] == "UNAVAILABLE"
            assert states["6"]["reason"].startswith("too_large")
    finally:
        await app.shutdown()


async def test_the_primary_cannot_be_unloaded_and_a_candidate_can(
    client: httpx.AsyncClient, app: ServepathApp
) -> None:
    refused = await _control(client, "unload", version="1")
    assert refused.status_code == 409
    assert (await _control(client, "load", version="2", role="candidate")).status_code == 200
    assert (await _control(client, "unload", version="2")).status_code == 200
    assert app.plane.candidate is None
    assert (await _control(client, "promote")).status_code == 409


# --- canary ---------------------------------------------------------------------------------


async def test_a_caller_with_a_key_is_the_key_for_the_canary(
    client: httpx.AsyncClient, app: ServepathApp
) -> None:
    loaded = await _control(client, "load", version="3", role="candidate", weight=20)
    assert loaded.status_code == 200, loaded.text
    row = _example(app)
    versions = set()
    for i in range(200):
        # The key's name is the caller when there is one, whatever address it comes from.
        response = await client.post(
            "/decisions", json=row, headers={**user(), "X-Forwarded-For": f"198.51.100.{i}"}
        )
        assert response.status_code == 200
        versions.add(response.headers["x-model-version"])
    assert len(versions) == 1


async def test_a_canary_answers_its_share_of_callers_and_each_caller_always_the_same(
    repository: Path, engines: Path
) -> None:
    settings = Settings(
        model_repository=str(repository),
        model_path=Path("1"),
        candidate="3",
        candidate_weight=20.0,
        data_dir=engines,
        forwarded_allow_ips="127.0.0.1",
    )
    app = await _started(settings, cache=MemoryCache(max_entries=10_000, max_bytes=1 << 24))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            row = _example(app)
            per_caller: dict[str, set[str]] = {}
            for _ in range(2):
                for i in range(1000):
                    caller = f"10.1.{i // 250}.{i % 250}" if i % 2 else f"2001:db8::{i:x}"
                    response = await client.post(
                        "/decisions", json=row, headers={"X-Forwarded-For": caller}
                    )
                    assert response.status_code == 200
                    per_caller.setdefault(caller, set()).add(response.headers["x-model-version"])
            assert all(len(v) == 1 for v in per_caller.values()), "a caller changed sides"
            callers_on_3 = Counter(next(iter(v)) for v in per_caller.values())["3"]
            share = callers_on_3 / 10
            assert 16 <= share <= 24
            # The live page shows the split beside the versions.
            page = (await client.get("/_ui/data")).json()
            split = {v["label"]: v for v in page["versions"]}
            assert split["3"]["role"] == "candidate" and split["3"]["weight"] == 20.0
            assert split["1"]["answered"] + split["3"]["answered"] == 2000
            assert split["3"]["answered"] == 2 * callers_on_3
            # A caller may ask for a version by name; one not in service is a 404.
            asked = await client.post("/decisions", json=row, headers={"X-Model-Version": "3"})
            assert asked.headers["x-model-version"] == "3"
            missing = await client.post("/decisions", json=row, headers={"X-Model-Version": "2"})
            assert missing.status_code == 404
            # The cache keys by version: the candidate's answer is not the primary's hit.
            assert (
                asked.json()["model_version"]
                != (
                    await client.post("/decisions", json=row, headers={"X-Model-Version": "1"})
                ).json()["model_version"]
            )
    finally:
        await app.shutdown()


# --- shadow ---------------------------------------------------------------------------------


async def test_a_shadow_sees_copies_after_the_answers_and_counts_agreement(
    repository: Path, engines: Path, tmp_path: Path
) -> None:
    settings = Settings(
        model_repository=str(repository),
        model_path=Path("1"),
        shadow="3",
        shadow_share=1.0,
        data_dir=engines,
        store_url=f"sqlite:///{tmp_path / 'log.sqlite3'}",
    )
    app = await _started(settings, store=open_log(settings))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            model = app.plane.model
            assert model is not None
            rows = [model.schema.example() for _ in range(40)]
            for i, row in enumerate(rows):
                row["income"] = 1000.0 * (i + 1)
                row["past_defaults"] = float(i % 4)
            for row in rows:
                # One copy at a time runs: wait for the last one, as an idle server would.
                while app.plane.shadows.rows:
                    await asyncio.sleep(0.005)
                response = await client.post("/decisions", json=row)
                assert response.status_code == 200
                assert response.headers["x-model-version"] == "1"  # never the shadow's
            metrics = app.metrics
            for _ in range(1000):
                text = metrics.render().decode()
                if _shadow_total(text, "skipped") >= len(rows):
                    break
                await asyncio.sleep(0.01)
            text = metrics.render().decode()
            # Every copy was compared, or skipped (a machine busy enough to make the event
            # loop late leaves no room): none is lost.
            assert _shadow_total(text, "skipped") == len(rows)
            compared = _shadow_total(text)
            assert compared >= len(rows) // 2
            page_shadow = (await client.get("/_ui/data")).json()["shadow"]
            assert 'servepath_shadow_total{outcome="agree",version="3"}' in text
            assert 'servepath_shadow_total{outcome="disagree",version="3"}' in text
    finally:
        await app.shutdown()
    assert page_shadow["agree"] + page_shadow["disagree"] == compared
    # Every copy is in the log, linked to the record of the request it copied.
    with SQLiteReader(tmp_path / "log.sqlite3") as reader:
        records = reader.recent(limit=1000)
        comparison = reader.compare()
    shadows = [r for r in records if r.role == "shadow"]
    answered = {r.record_id: r for r in records if r.role is None}
    assert len(answered) == len(rows) and len(shadows) == compared
    assert all(r.shadow_of in answered and r.model_label == "3" for r in shadows)
    assert {r.model_label for r in answered.values()} == {"1"}
    [pair] = comparison.pairs
    assert pair.requests == compared and 0 < pair.agreement < 1


def _shadow_total(text: str, *also: str) -> float:
    """Copies counted as agree or disagree (and the other outcomes named)."""
    outcomes = ("agree", "disagree", *also)
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("servepath_shadow_total{")
        and any(f'outcome="{o}"' in line for o in outcomes)
    )


async def test_shadow_work_is_skipped_while_requests_are_being_refused(
    repository: Path, engines: Path
) -> None:
    settings = Settings(
        model_repository=str(repository),
        model_path=Path("1"),
        shadow="2",
        shadow_share=1.0,
        data_dir=engines,
    )
    app = await _started(settings)
    try:
        plane = app.plane
        # A refusal in the last second: the building is full, shadow work goes first.
        import time

        plane.admission._refuse(time.perf_counter(), "in_flight", 0.0, "full")
        assert not plane.shadows.room()
    finally:
        await app.shutdown()


@pytest.mark.anyio
async def test_with_a_candidate_configured_the_server_is_ready_once_it_serves(
    repository: Path, engines: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The candidate's load is held until the test lets it go: meanwhile the primary is in
    # place, but readiness says 503 (a load balancer would otherwise send every caller to
    # the primary, and the canary's share would be 0 without a word).
    from servepath.service.dataplane import DataPlane

    release = asyncio.Event()
    load_spec = DataPlane.load_spec

    async def held(self: DataPlane, spec: str, role: Any) -> Any:
        await release.wait()
        return await load_spec(self, spec, role)

    monkeypatch.setattr(DataPlane, "load_spec", held)
    settings = Settings(model_repository=str(repository), model_path=Path("1"), candidate="3",
                        candidate_weight=20.0, data_dir=engines)  # fmt: skip
    app = ServepathApp(settings, cache=NoCache(), store=NoLog())
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            deadline = time.monotonic() + 120
            while app.plane.primary is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert app.plane.primary is not None and app.plane.candidate is None
            assert (await client.get("/")).status_code == 503
            release.set()
            while app.plane.state == "loading" and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert app.plane.state == "ready" and app.plane.candidate is not None
            assert (await client.get("/")).status_code == 200
    finally:
        release.set()
        await app.shutdown()
