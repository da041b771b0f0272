"""Build the prediction log (and its reader) that a `Settings` asks for."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from servepath.config import Settings
from servepath.errors import ConfigError
from servepath.store.base import NoLog, PredictionLog
from servepath.store.reader import LogReader, PostgresReader, SQLiteReader
from servepath.store.spool import Spool

StoreKind = Literal["sqlite", "postgresql", "off"]

STORE_URL_FORMS = "sqlite, sqlite:///ABSOLUTE/PATH, postgresql://USER@HOST:PORT/DBNAME, off"


@dataclass(frozen=True)
class StoreTarget:
    """Where a store URL points: a SQLite file, a PostgreSQL conninfo, or nowhere."""

    kind: StoreKind
    location: str  # the SQLite path or the PostgreSQL URL ("" when off)

    @property
    def sqlite_path(self) -> Path:
        return Path(self.location)


def parse_store_url(url: str, data_dir: Path) -> StoreTarget:
    """Interpret a ``--store`` / ``SERVEPATH_STORE_URL`` value."""
    from servepath.store.sqlite import DEFAULT_FILENAME

    text = url.strip()
    lowered = text.lower()
    if lowered == "off":
        return StoreTarget("off", "")
    if lowered == "sqlite":
        return StoreTarget("sqlite", str(data_dir / DEFAULT_FILENAME))
    if lowered.startswith("sqlite://"):
        parts = urlsplit(text)
        path = unquote(parts.path)
        if parts.netloc or not path.startswith("/") or path == "/":
            raise ConfigError(
                f"store {text!r}: a SQLite URL names an absolute file, "
                "as in sqlite:///var/lib/servepath/predictions.sqlite3"
            )
        return StoreTarget("sqlite", path)
    if lowered.startswith(("postgresql://", "postgres://")):
        from servepath.store.postgres import parse_conninfo

        parse_conninfo(text)
        return StoreTarget("postgresql", text)
    raise ConfigError(f"store {_redact(text)!r} is not one of: {STORE_URL_FORMS}")


def spool_dir(target: StoreTarget, data_dir: Path) -> Path:
    """The spool directory of one store: records spooled for it are replayed only into it."""
    if target.kind == "postgresql":
        from servepath.store.postgres import parse_conninfo

        params = parse_conninfo(target.location)
        params.pop("password", None)
        identity = " ".join(f"{k}={params[k]}" for k in sorted(params))
    else:
        identity = str(Path(target.location).resolve())
    digest = hashlib.blake2b(identity.encode(), digest_size=6).hexdigest()
    return data_dir / "spool" / f"{target.kind}-{digest}"


def open_log(settings: Settings) -> PredictionLog:
    """The prediction log for ``settings.store_url``; nothing connects until ``start()``."""
    target = parse_store_url(settings.store_url, settings.data_dir)
    if target.kind == "off":
        return NoLog()
    from servepath.store.writer import BatchedLog

    spool = Spool(spool_dir(target, settings.data_dir))
    if target.kind == "sqlite":
        from servepath.store.sqlite import SQLiteSink

        return BatchedLog(SQLiteSink(target.sqlite_path, durable=settings.durable), spool=spool)
    from servepath.store.postgres import PostgresSink

    sink = PostgresSink(target.location, write_timeout=settings.store_write_timeout)
    return BatchedLog(sink, spool=spool)


def open_reader(settings: Settings) -> LogReader:
    """A reader of the log ``settings.store_url`` names (``servepath log``)."""
    target = parse_store_url(settings.store_url, settings.data_dir)
    if target.kind == "off":
        raise ConfigError("the prediction log is off (store 'off'): there is nothing to read")
    if target.kind == "sqlite":
        return SQLiteReader(target.sqlite_path)
    return PostgresReader(target.location)


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, hostpart = rest.rpartition("@")
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{hostpart}"
