"""The live page's list across workers: with ``--workers N`` each worker keeps its own ring,
so a viewer whose request another worker answered would not find it. Each worker therefore
writes its ring's rows to a small file of its own in the workers' shared directory (the one
the supervisor makes for their metrics) at most once every :data:`SHARE_INTERVAL_S`, and only
when the ring changed — atomically, by writing a temporary file and renaming it over the old
one, so a reader sees a whole snapshot or the previous one. The page merges every living
worker's file with its own ring, newest first, at most :data:`~servepath.service.ui.RING_SIZE`
rows.

The request path pays nothing more: the snapshot is made off it, from the rows the page
renders anyway. Bounded: a file holds at most one ring's rows, and a file larger than
:data:`MAX_FILE_BYTES` (or unreadable, or of a worker that is gone) is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from servepath.net.forwarded import TrustedProxies
from servepath.service.metrics import process_alive
from servepath.service.ui import Entry, SeenRing

log = logging.getLogger(__name__)

#: Seconds between two snapshots of a worker's ring (at most; none while it is unchanged).
SHARE_INTERVAL_S = 1.0
#: The directory of the snapshots, inside the workers' shared metrics directory.
SUBDIR = "ui-rings"
#: A snapshot larger than this is not read (200 rows with the longest chains are ~1 MiB).
MAX_FILE_BYTES = 4 << 20
_SNAPSHOT = re.compile(r"^ring-(\d+)\.json$")


def shared_directory(workers: int, metrics_dir: str | None) -> Path | None:
    """Where the workers' snapshots go: None with one worker (its ring is every request)."""
    if workers <= 1 or not metrics_dir:
        return None
    return Path(metrics_dir) / SUBDIR


def merge(own: Iterable[dict[str, Any]], others: Iterable[Iterable[dict[str, Any]]],
          limit: int) -> list[dict[str, Any]]:  # fmt: skip
    """Rows of every worker, newest first, at most ``limit``."""
    rows = [*own, *(row for rows in others for row in rows)]
    rows.sort(key=lambda r: r.get("time") or 0.0, reverse=True)
    return rows[:limit]


class RingShare:
    """This worker's side of the shared list: writes its snapshot, reads the others'."""

    def __init__(
        self, directory: Path, ring: SeenRing, trusted: TrustedProxies, pid: int | None = None
    ) -> None:
        self.directory = directory
        self.ring = ring
        self.trusted = trusted
        self.pid = os.getpid() if pid is None else pid
        self.path = directory / f"ring-{self.pid}.json"
        self._written: tuple[int, Entry | None] | None = None
        self._task: asyncio.Task[None] | None = None
        #: Snapshots written so far.
        self.writes = 0

    def rows(self) -> list[dict[str, Any]]:
        """This worker's rows as the page shows them, each naming this worker's pid."""
        return [{**row, "pid": self.pid} for row in self.ring.entries(self.trusted)]

    def publish(self) -> bool:
        """Write this worker's snapshot if its ring changed since the last one."""
        state = (len(self.ring), self.ring.newest())
        kept = self._written
        if kept is not None and state[0] == kept[0] and state[1] is kept[1]:
            return False
        body = orjson.dumps({"pid": self.pid, "requests": self.rows()})
        tmp = self.directory / f".ring-{self.pid}.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(body)
            tmp.replace(self.path)
        except OSError as exc:
            log.warning("cannot share the live page's list in %s: %s", self.directory, exc)
            return False
        self._written = state
        self.writes += 1
        return True

    def others(self) -> list[list[dict[str, Any]]]:
        """The rows of every other living worker, as their last snapshots hold them."""
        found: list[list[dict[str, Any]]] = []
        try:
            names = os.listdir(self.directory)
        except OSError:
            return found
        for name in names:
            match = _SNAPSHOT.match(name)
            if match is None or int(match.group(1)) == self.pid:
                continue
            if not process_alive(int(match.group(1))):
                continue
            rows = _read(self.directory / name)
            if rows is not None:
                found.append(rows)
        return found

    def merged(self, limit: int) -> list[dict[str, Any]]:
        """Every worker's rows, this one's live, newest first."""
        return merge(self.rows(), self.others(), limit)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SHARE_INTERVAL_S)
            try:
                self.publish()
            except Exception:  # the page's list must never stop the worker
                log.exception("sharing the live page's list failed")


def _read(path: Path) -> list[dict[str, Any]] | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    rows = data.get("requests") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        return None
    return [r for r in rows if isinstance(r, dict)]
