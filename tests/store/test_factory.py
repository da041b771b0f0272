"""Store URLs: what each selects, where its spool lives, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from servepath.config import Settings
from servepath.errors import ConfigError
from servepath.store import NoLog, StoreUnavailable, open_log, open_reader, parse_store_url
from servepath.store.factory import StoreTarget, spool_dir
from servepath.store.postgres import PostgresSink, describe_conninfo
from servepath.store.sqlite import SQLiteSink
from servepath.store.writer import BatchedLog

DATA = Path("/var/lib/servepath")


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("sqlite", StoreTarget("sqlite", "/var/lib/servepath/predictions.sqlite3")),
        ("SQLite", StoreTarget("sqlite", "/var/lib/servepath/predictions.sqlite3")),
        ("sqlite:///srv/log/p.db", StoreTarget("sqlite", "/srv/log/p.db")),
        ("sqlite:///srv/my%20log/p.db", StoreTarget("sqlite", "/srv/my log/p.db")),
        ("off", StoreTarget("off", "")),
        ("postgresql://app@db:5432/preds", StoreTarget("postgresql", "postgresql://app@db:5432/preds")),
        ("postgres://app@db/preds", StoreTarget("postgresql", "postgres://app@db/preds")),
    ],
)  # fmt: skip
def test_store_urls(url: str, target: StoreTarget) -> None:
    assert parse_store_url(url, DATA) == target


@pytest.mark.parametrize(
    "url", ["mysql://db/x", "sqlite://relative.db", "sqlite:///", "", "postgresql://h/?bogus=1"]
)
def test_unusable_store_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_store_url(url, DATA)


def test_error_for_an_unknown_scheme_hides_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        parse_store_url("mysql://app:hunter2@db/x", DATA)
    assert "hunter2" not in str(info.value)


def test_spool_directory_is_per_store_and_ignores_the_password() -> None:
    a = spool_dir(parse_store_url("postgresql://app:one@db/preds", DATA), DATA)
    b = spool_dir(parse_store_url("postgresql://app:two@db/preds", DATA), DATA)
    c = spool_dir(parse_store_url("postgresql://app@db/other", DATA), DATA)
    d = spool_dir(parse_store_url("sqlite", DATA), DATA)
    assert a == b != c
    assert a.parent == DATA / "spool" and a.name.startswith("postgresql-")
    assert d.name.startswith("sqlite-")


def test_open_log_builds_the_configured_backend(tmp_path: Path) -> None:
    sqlite = open_log(Settings(data_dir=tmp_path, durable=True))
    assert isinstance(sqlite, BatchedLog) and isinstance(sqlite.sink, SQLiteSink)
    assert sqlite.sink.path == tmp_path / "predictions.sqlite3" and sqlite.sink.durable
    pg = open_log(Settings(data_dir=tmp_path, store_url="postgresql://app:pw@db/preds"))
    assert isinstance(pg, BatchedLog) and isinstance(pg.sink, PostgresSink)
    assert pg.status().detail == "postgresql://app@db:5432/preds"
    assert isinstance(open_log(Settings(data_dir=tmp_path, store_url="off")), NoLog)


def test_conninfo_description_never_shows_the_password() -> None:
    described = describe_conninfo("postgresql://app:pw@db:6543/preds")
    assert described == "postgresql://app@db:6543/preds"
    assert describe_conninfo("host=db dbname=preds password=pw") == "postgresql://db:5432/preds"


def test_reading_a_log_that_was_never_written_says_so(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="no such file"):
        open_reader(Settings(data_dir=tmp_path))
    assert not (tmp_path / "predictions.sqlite3").exists()


def test_reading_store_off_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="off"):
        open_reader(Settings(data_dir=tmp_path, store_url="off"))
