"""`servepath log` and `servepath log stats` against real SQLite and PostgreSQL stores."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from servepath.cli import app
from tests.store.conftest import Backend, make_record

runner = CliRunner()


@pytest.fixture
def filled(backend: Backend) -> Backend:
    base = time.time() - 3600
    records = [
        make_record(
            f"cli-{i:03d}",
            ts=base + i * 60,
            latency_ms=float(i + 1),
            cache_hit=i % 4 == 0,
            output={"decision": "approve" if i % 2 else "decline", "probability": 0.75},
        )
        for i in range(40)
    ]

    async def write() -> None:
        log = backend.log()
        await log.start()
        log.record(records)
        await log.close()

    asyncio.run(write())
    return backend


def store_url(backend: Backend) -> str:
    return f"sqlite://{backend.location}" if backend.kind == "sqlite" else backend.location


def test_log_shows_the_most_recent_records_as_a_table(filled: Backend) -> None:
    result = runner.invoke(app, ["log", "--store", store_url(filled), "--limit", "5"])
    assert result.exit_code == 0, result.output
    assert "5 most recent" in result.output
    for i in range(35, 40):
        assert f"cli-{i:03d}" in result.output
    assert "cli-034" not in result.output
    assert "approve 0.75" in result.output


def test_log_json_is_the_records_oldest_first(filled: Backend) -> None:
    result = runner.invoke(app, ["log", "--store", store_url(filled), "-n", "3", "--json"])
    assert result.exit_code == 0, result.output
    rows = orjson.loads(result.stdout)
    assert [r["request_id"] for r in rows] == ["cli-037", "cli-038", "cli-039"]
    assert set(rows[0]) == set(make_record().to_json())
    assert rows[0]["output"] == {"decision": "approve", "probability": 0.75}


def test_log_since_filters_by_time(filled: Backend) -> None:
    # Records are a minute apart, from 60 to 21 minutes ago; 30.5 minutes back keeps the last 10.
    since = "30.5m"
    result = runner.invoke(app, ["log", "--store", store_url(filled), "--since", since, "--json"])
    assert result.exit_code == 0, result.output
    ids = [r["request_id"] for r in orjson.loads(result.stdout)]
    assert ids == [f"cli-{i:03d}" for i in range(30, 40)]


def test_log_stats_json(filled: Backend) -> None:
    result = runner.invoke(app, ["log", "stats", "--store", store_url(filled), "--json"])
    assert result.exit_code == 0, result.output
    stats = orjson.loads(result.stdout)
    assert (stats["predictions"], stats["requests"]) == (40, 40)
    assert stats["cache_hit_rate"] == pytest.approx(0.25)
    (version,) = stats["versions"]
    assert version["decisions"] == {"approve": 20, "decline": 20}
    assert version["latency_ms"]["p50"] == pytest.approx(20.5)
    assert version["latency_ms"]["p99"] == pytest.approx(39.61)


def test_log_stats_table(filled: Backend) -> None:
    result = runner.invoke(app, ["log", "stats", "--store", store_url(filled)])
    assert result.exit_code == 0, result.output
    assert "40 predictions in 40 requests" in result.output
    assert "cache hit rate 25.0%" in result.output
    assert "approve" in result.output and "decline" in result.output
    assert "20.50" in result.output  # p50


def test_log_defaults_to_the_sqlite_file_in_the_data_directory(tmp_path: Path) -> None:
    backend = Backend("sqlite", str(tmp_path / "predictions.sqlite3"), tmp_path / "spool")

    async def write() -> None:
        log = backend.log()
        await log.start()
        await log.record_durable([make_record("from-default-store")])
        await log.close()

    asyncio.run(write())
    result = runner.invoke(
        app, ["log", "--json"], env={"SERVEPATH_DATA_DIR": str(tmp_path), "SERVEPATH_STORE_URL": ""}
    )
    assert result.exit_code == 0, result.output
    assert [r["request_id"] for r in orjson.loads(result.stdout)] == ["from-default-store"]


def test_log_store_url_comes_from_the_environment(filled: Backend) -> None:
    result = runner.invoke(
        app, ["log", "stats", "--json"], env={"SERVEPATH_STORE_URL": store_url(filled)}
    )
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["predictions"] == 40


def test_empty_log_is_not_a_problem(tmp_path: Path) -> None:
    backend = Backend("sqlite", str(tmp_path / "p.sqlite3"), tmp_path / "spool")

    async def create() -> None:
        log = backend.log()
        await log.start()
        await log.close()

    asyncio.run(create())
    result = runner.invoke(app, ["log", "--store", f"sqlite://{backend.location}"])
    assert result.exit_code == 0 and "no predictions" in result.output
    result = runner.invoke(app, ["log", "stats", "--store", f"sqlite://{backend.location}"])
    assert result.exit_code == 0 and "no predictions" in result.output


def test_missing_store_exits_1_with_the_reason(tmp_path: Path) -> None:
    result = runner.invoke(app, ["log", "--store", f"sqlite://{tmp_path}/none.sqlite3"])
    assert result.exit_code == 1
    assert "no such file" in result.output


def test_unreachable_postgres_exits_1(pg_name: str) -> None:
    url = f"postgresql://postgres@127.0.0.1:5432/{pg_name}"
    result = runner.invoke(app, ["log", "stats", "--store", url])
    assert result.exit_code == 1
    assert "does not exist" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["log", "--since", "yesterday"],
        ["log", "--store", "mysql://db/x"],
        ["log", "--limit", "0"],
        ["log", "stats", "--store", "off"],
    ],
)
def test_bad_usage_exits_2(args: list[str], tmp_path: Path) -> None:
    result = runner.invoke(app, args, env={"SERVEPATH_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 2, result.output


def _one_record(tmp_path: Path, *request_ids: str) -> list[str]:
    backend = Backend("sqlite", str(tmp_path / "p.sqlite3"), tmp_path / "spool")

    async def write() -> None:
        log = backend.log()
        await log.start()
        await log.record_durable(
            [make_record(rid, client_addr="203.0.113.10:4242") for rid in request_ids]
        )
        await log.close()

    asyncio.run(write())
    return ["log", "--store", f"sqlite://{backend.location}"]


def test_narrow_terminals_show_the_tail_of_request_ids_that_tells_them_apart(
    tmp_path: Path,
) -> None:
    # time-ordered ids share their start: the tail is what differs
    first, second = "01a2335c79b576d584ceb905fd810284", "01a2335c79b576d584ceb905fd81aa17"
    store = _one_record(tmp_path, first, second)
    narrow = runner.invoke(app, ["--format", "table", *store], env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    assert "…fd810284" in narrow.output and "…fd81aa17" in narrow.output
    assert first not in narrow.output and "01a2335c…" not in narrow.output
    assert "--json has them whole" in narrow.output
    wide = runner.invoke(app, ["--format", "table", *store], env={"COLUMNS": "160"})
    assert first in wide.output and "203.0.113.10:4242" in wide.output


def test_a_pipe_gets_every_column_whole_whatever_the_width(tmp_path: Path) -> None:
    long_id = "5f0c2e8a9b7d4c1e8f3a2b6c7d8e9f01"
    store = _one_record(tmp_path, long_id)
    piped = runner.invoke(app, store, env={"COLUMNS": "40"})  # CliRunner's stdout is a pipe
    assert piped.exit_code == 0, piped.output
    assert long_id in piped.output and "203.0.113.10:4242" in piped.output
    assert "…" not in piped.output.split("\n", 2)[2]  # nothing cut in the rows
    stats = runner.invoke(app, [*store[:1], "stats", *store[1:]], env={"COLUMNS": "40"})
    assert stats.exit_code == 0, stats.output
    assert "…" not in stats.output and "predictions" in stats.output
    rows = [line.split() for line in stats.output.splitlines()]
    assert ["model", "version", "requests", "predictions", "cache", "hits", "p50", "ms",
            "p90", "ms", "p99", "ms"] in rows  # fmt: skip


def test_a_tiny_share_is_not_shown_as_none(tmp_path: Path) -> None:
    from servepath.output import Output
    from servepath.render.text_log import render_stats
    from servepath.store.reader import Latency, LogStats, VersionStats

    stats = LogStats(
        "predictions.sqlite3",
        None,
        (
            VersionStats(
                "decision", "c30a278a5722", 29_117, 29_117, 11,
                {"approve": 29_106, "decline": 11}, Latency(1.0, 2.0, 3.0), 0.0, 60.0,
            ),
        ),
    )  # fmt: skip
    import io

    buffer = io.StringIO()
    render_stats(Output(stdout=buffer), stats, since_text=None)
    text = buffer.getvalue()
    assert "cache hit rate 0.04%" in text and "0.0%" not in text
    assert "29,117 predictions in 29,117 requests" in text
    assert "99.96%" in text  # approve's share, not rounded up to all
