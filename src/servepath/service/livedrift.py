"""The live drift monitor (``serve --reference-profile FILE``): the profile checked against
the model that serves, the sketch the data plane feeds, the ``servepath_feature_drift`` gauge
and the live page's drift panel.

With ``--workers N`` each worker counts the rows it answered, a sample of the server's
traffic. The statistic of the whole traffic is the statistic of the *summed* counts, which no
combination of the workers' own statistics gives (a maximum would read each worker's
sampling noise as drift). Each worker therefore writes its window's counts to a small file
of its own in the workers' shared directory every :data:`SHARE_INTERVAL_S` (atomically, only
when they changed), and whoever is asked — the worker a scrape or a page reaches — sums its
own live counts with every living worker's last file, and computes the statistics once. The
gauge is then one series per feature whichever worker answers, at most a second behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from servepath.model.loaded import LoadedModel
from servepath.model.profile import Profile, ProfileMismatch, check_against, version_note
from servepath.service.metrics import Sample, process_alive
from servepath.service.sketch import DEFAULT_WINDOW, Counts, DriftReport, Sketch

log = logging.getLogger(__name__)

#: Seconds between two snapshots of a worker's counts (none while they are unchanged).
SHARE_INTERVAL_S = 1.0
#: The snapshots' directory, inside the workers' shared directory.
SUBDIR = "drift-counts"
#: A snapshot larger than this is not read (a profile of 1,000 features is ~100 KiB).
MAX_FILE_BYTES = 4 << 20
_SNAPSHOT = re.compile(r"^counts-(\d+)\.json$")

GAUGE = "servepath_feature_drift"
GAUGE_HELP = (
    "Population stability index of each input feature over the latest rows (the window) "
    "against the reference profile (serve --reference-profile); past the profile's "
    "threshold (0.2 by default) the feature has drifted. With workers, computed from every "
    "worker's counts summed: one value for the server. Absent while the window holds too "
    "few rows."
)
ROWS = "servepath_feature_drift_window_rows"
ROWS_HELP = "Rows the drift statistics cover (every worker's window summed)."


class DriftMonitor:
    """See the module docstring. ``shared``: the workers' shared directory (None: one
    process, whose counts are all of them)."""

    def __init__(
        self,
        profile: Profile,
        *,
        window: int = DEFAULT_WINDOW,
        shared: Path | None = None,
        pid: int | None = None,
    ) -> None:
        self.profile = profile
        self.sketch = Sketch(profile, window=window)
        self.directory = shared / SUBDIR if shared is not None else None
        self.pid = os.getpid() if pid is None else pid
        self.path = self.directory / f"counts-{self.pid}.json" if self.directory else None
        #: Why drift is not measured now (a version swapped in whose inputs the profile does
        #: not describe); None while it is.
        self.paused: str | None = None
        #: The warning that the profile was built for another version, if it was.
        self.note: str | None = None
        self.served: dict[str, str] | None = None
        self._written: int | None = None
        self._task: asyncio.Task[None] | None = None

    # --- the model -------------------------------------------------------------------------

    def check(self, model: LoadedModel) -> None:
        """Raise :class:`~servepath.model.profile.ProfileMismatch` unless the profile
        describes ``model``'s inputs: what start-up asks of the first version."""
        check_against(self.profile, model.schema)

    def sketch_for(self, model: LoadedModel, role: str) -> Sketch | None:
        """The sketch a version's rows are noted in: None for a version whose inputs the
        profile does not describe (said in the log; for the primary, on the page too, and
        drift pauses until a version it describes serves again)."""
        try:
            check_against(self.profile, model.schema)
        except ProfileMismatch as exc:
            log.error("live drift leaves out the %s version %s: %s", role, model.version, exc)
            if role == "primary":
                # Without the profile's path: the live page shows it to any caller.
                self.paused = (
                    f"Paused: version {model.version} does not match the reference profile: "
                    f"feature {exc.feature!r} {exc.reason}."
                )
            return None
        if role == "primary":
            self.paused = None
            self.served = {"name": model.name, "version": model.version}
            self.note = version_note(self.profile, model.name, model.version)
            if self.note:
                log.warning("%s (%s)", self.note, self.profile.path or "built in memory")
        return self.sketch

    # --- the statistics --------------------------------------------------------------------

    def report(self) -> DriftReport:
        """The drift of the server's latest rows (every worker's, with workers)."""
        return self.sketch.report(self.others())

    def samples(self) -> list[Sample]:
        """The gauge: one series per feature (while the window holds enough rows)."""
        if self.paused is not None:
            return []
        report = self.report()
        found = [Sample(ROWS, ROWS_HELP, "gauge", (), float(report.rows))]
        found.extend(
            Sample(GAUGE, GAUGE_HELP, "gauge", (("feature", f.name),), f.psi)
            for f in report.features
        )
        return found

    def panel(self) -> dict[str, Any]:
        """What the live page's drift panel shows."""
        report = self.report()
        return {
            **report.to_json(),
            "profile": {
                "model": self.profile.model_name,
                "version": self.profile.model_version,
                "rows": self.profile.rows,
                "source": self.profile.source,
                "created": self.profile.created,
            },
            "serving": self.served,
            "note": self.note,
            "paused": self.paused,
            "scope": "all workers" if self.directory is not None else "worker",
        }

    # --- the workers' counts ---------------------------------------------------------------

    def publish(self) -> bool:
        """Write this worker's window counts if they changed since the last snapshot."""
        if self.directory is None or self.path is None:
            return False
        counts = self.sketch.counts()
        total = self.sketch.total
        if total == self._written:
            return False
        body = orjson.dumps(
            {
                "pid": self.pid,
                "digest": self.profile.digest,
                "rows": self.sketch.rows,
                "counts": [c.tolist() for c in counts],
            }
        )
        tmp = self.directory / f".counts-{self.pid}.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(body)
            tmp.replace(self.path)
        except OSError as exc:
            log.warning("cannot share the drift counts in %s: %s", self.directory, exc)
            return False
        self._written = total
        return True

    def others(self) -> list[tuple[int, list[Counts]]]:
        """Every other living worker's (rows, counts), as its last snapshot holds them."""
        if self.directory is None:
            return []
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        shapes = [b.bins for b in self.sketch.binners]
        found = []
        for name in names:
            match = _SNAPSHOT.match(name)
            if match is None or int(match.group(1)) == self.pid:
                continue
            if not process_alive(int(match.group(1))):
                continue
            read = _read(self.directory / name, self.profile.digest, shapes)
            if read is not None:
                found.append(read)
        return found

    def start(self) -> None:
        if self.directory is not None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SHARE_INTERVAL_S)
            try:
                self.publish()
            except Exception:  # drift must never stop the worker
                log.exception("sharing the drift counts failed")


def _read(path: Path, digest: str, shapes: list[int]) -> tuple[int, list[Counts]] | None:
    """A snapshot's (rows, counts), or None when it is unreadable, too large, or of another
    profile (a worker started with another file)."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        data = orjson.loads(path.read_bytes())
        if not isinstance(data, dict) or data.get("digest") != digest:
            return None
        counts = [np.asarray(c, dtype=np.int64) for c in data["counts"]]
        if [len(c) for c in counts] != shapes:
            return None
        return int(data["rows"]), counts
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
