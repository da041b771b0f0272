"""Model control across workers: every worker serves the versions the last control call chose.

One worker answers a control call (load, unload, promote, rollback). It carries the change
out on itself first — loading beside what serves and verifying, as at start — so a version
that fails is refused before any other worker sees it. Then it writes the resulting roles
as the *desired state* (``control.json``, a generation number and a label per role, written
by rename so no reader sees half of it) in the directory the workers share, and waits until
every live worker has reported that generation applied (``applied-PID.json``). The others
look for a new generation every :data:`POLL_INTERVAL` and apply it the same way; a worker
that starts later (a restart) applies the desired state when its model has loaded.

While workers apply a change, a caller may be answered by either version for up to about a
poll interval plus one load; every answer names its version (``X-Model-Version``).
Control calls are serialised across workers by a lock file, so two at once cannot interleave.

Without workers there is no directory: the one process's state is the desired state.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from servepath.service.dataplane import DataPlane
from servepath.service.metrics import process_alive

log = logging.getLogger(__name__)

__all__ = ["POLL_INTERVAL", "Coordinator", "DesiredState"]

#: How often a worker looks for a new desired state, seconds.
POLL_INTERVAL = 0.25
#: How long a control call waits for the other workers to apply its change, seconds.
APPLY_TIMEOUT = 300.0
STATE_FILE = "control.json"
LOCK_FILE = "control.lock"


@dataclass(frozen=True)
class DesiredState:
    """The roles every worker should serve: one version label each (None: no such role)."""

    generation: int
    primary: str | None
    candidate: str | None = None
    candidate_weight: float = 0.0
    shadow: str | None = None
    shadow_share: float = 0.0

    @classmethod
    def of(cls, plane: DataPlane, generation: int) -> DesiredState:
        return cls(
            generation,
            plane.primary.label if plane.primary else None,
            plane.candidate.label if plane.candidate else None,
            plane.candidate_weight,
            plane.shadow.label if plane.shadow else None,
            plane.shadow_share,
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DesiredState:
        return cls(
            int(data["generation"]),
            data.get("primary"),
            data.get("candidate"),
            float(data.get("candidate_weight", 0.0)),
            data.get("shadow"),
            float(data.get("shadow_share", 0.0)),
        )


async def apply_state(plane: DataPlane, desired: DesiredState) -> None:
    """Make ``plane`` serve ``desired``: promote, load, roll back or unload what differs."""
    if desired.primary is not None and (plane.primary is None or
                                        plane.primary.label != desired.primary):  # fmt: skip
        if plane.candidate is not None and plane.candidate.label == desired.primary:
            plane.promote()
        else:
            await plane.load_label(desired.primary, "primary")
    plane.candidate_weight = desired.candidate_weight
    plane.shadow_share = desired.shadow_share
    for role, label in (("candidate", desired.candidate), ("shadow", desired.shadow)):
        current = getattr(plane, role)
        if label is None:
            if current is not None:
                plane.unload(current.label)
        elif current is None or current.label != label:
            await plane.load_label(label, role)  # type: ignore[arg-type]


class Coordinator:
    """One worker's side of model control; see the module docstring."""

    def __init__(self, plane: DataPlane, directory: str | None) -> None:
        self.plane = plane
        self.directory = Path(directory) if directory else None
        self.applied = 0
        self._lock = asyncio.Lock()

    # --- the worker that answers a control call ------------------------------------------

    async def change(self, action: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
        """Run ``action`` on this worker, then have every worker serve what it chose."""
        async with self._lock:
            if self.directory is None:
                await action()
                return {"workers": {str(os.getpid()): "applied"}}
            fd = await asyncio.to_thread(self._lock_file)
            try:
                # A change another worker made first is this worker's starting point.
                await self._catch_up()
                await action()
                generation = max(self.applied, self._read_generation()) + 1
                desired = DesiredState.of(self.plane, generation)
                self._write(STATE_FILE, asdict(desired))
                self._report(generation, None)
            finally:
                await asyncio.to_thread(_unlock, fd)
        return {"workers": await self._wait_for(generation)}

    def _lock_file(self) -> int:
        assert self.directory is not None
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    async def _wait_for(self, generation: int) -> dict[str, str]:
        deadline = time.monotonic() + APPLY_TIMEOUT
        while True:
            states = self._states(generation)
            if all(state != "pending" for state in states.values()):
                return states
            if time.monotonic() > deadline:
                return states
            await asyncio.sleep(POLL_INTERVAL / 2)

    def _states(self, generation: int) -> dict[str, str]:
        assert self.directory is not None
        states: dict[str, str] = {}
        for path in self.directory.glob("applied-*.json"):
            pid = path.stem.removeprefix("applied-")
            if not pid.isdigit() or not process_alive(int(pid)):
                continue
            try:
                data = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                states[pid] = "pending"
                continue
            if data.get("error"):
                states[pid] = f"failed: {data['error']}"
            elif int(data.get("generation", 0)) >= generation:
                states[pid] = "applied"
            else:
                states[pid] = "pending"
        return states

    # --- every worker ---------------------------------------------------------------------

    async def watch(self) -> None:
        """Apply each new desired state as it appears (a background task per worker)."""
        if self.directory is None:
            return
        self._report(0, None)
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            if self.plane.primary is None:
                continue  # the first load is not done; the state is applied after it
            if self._lock.locked():
                continue  # this worker is making a change itself
            with contextlib.suppress(Exception):
                async with self._lock:
                    await self._catch_up()

    async def _catch_up(self) -> None:
        desired = self._read()
        if desired is None or desired.generation <= self.applied:
            return
        try:
            await apply_state(self.plane, desired)
        except Exception as exc:
            log.error("could not apply model control generation %d: %s",
                      desired.generation, exc)  # fmt: skip
            self._report(desired.generation, str(exc))
            self.applied = desired.generation
            return
        self._report(desired.generation, None)

    def _read(self) -> DesiredState | None:
        assert self.directory is not None
        try:
            return DesiredState.from_json(orjson.loads((self.directory / STATE_FILE).read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("model control state unreadable: %s", exc)
            return None

    def _read_generation(self) -> int:
        desired = self._read()
        return desired.generation if desired is not None else 0

    def _report(self, generation: int, error: str | None) -> None:
        self.applied = max(self.applied, generation)
        self._write(f"applied-{os.getpid()}.json", {"generation": generation, "error": error})

    def _write(self, name: str, data: dict[str, Any]) -> None:
        assert self.directory is not None
        target = self.directory / name
        partial = target.with_name(f".{name}.{os.getpid()}")
        partial.write_bytes(orjson.dumps(data))
        os.replace(partial, target)

    def forget(self) -> None:
        """This worker stops: its report goes, so no control call waits for it."""
        if self.directory is not None:
            with contextlib.suppress(OSError):
                (self.directory / f"applied-{os.getpid()}.json").unlink()


def _unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
