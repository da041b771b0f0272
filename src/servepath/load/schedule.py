"""When requests are meant to leave, and which rates a capacity search tries next.

Everything here is pure arithmetic: the engine in :mod:`servepath.load.generator` asks
this module for intended send times and for the next step of a search.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from servepath.errors import ConfigError

#: Open-loop requests (and connections) in flight at most, per process.
DEFAULT_MAX_INFLIGHT = 100

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|sec|m|min|h)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: plain seconds (``30``) or with a unit (``30s``, ``2m``, ``500ms``)."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{text!r} is not a duration; write e.g. 30, 30s, 2m or 500ms")
    value = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
    if value <= 0:
        raise ConfigError(f"duration {text!r} must be longer than zero")
    return value


@dataclass(frozen=True)
class OpenLoopSchedule:
    """Intended send times of one process's share of an open-loop run.

    With ``processes`` sharing a total rate R, process ``j`` sends at ``j/R + i*N/R``, so the
    union of all processes is the same evenly spaced stream a single process would send.
    """

    rate: float
    phase: float = 0.0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ConfigError(f"rate must be above zero, got {self.rate}")

    def intended(self, i: int) -> float:
        """Seconds after the run's start at which request ``i`` of this process is due."""
        return self.phase + i / self.rate

    def count_before(self, seconds: float) -> int:
        """How many of this process's requests are due strictly before ``seconds``."""
        if seconds <= self.phase:
            return 0
        return math.ceil((seconds - self.phase) * self.rate - 1e-9)


def split_open_loop(rate: float, processes: int) -> list[OpenLoopSchedule]:
    """One interleaved schedule per process; together they send ``rate`` requests a second."""
    if processes < 1:
        raise ConfigError("processes must be at least 1")
    return [OpenLoopSchedule(rate / processes, phase=j / rate) for j in range(processes)]


def split_count(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal whole shares (the first ones get the rest)."""
    if parts < 1:
        raise ConfigError("parts must be at least 1")
    base, rest = divmod(total, parts)
    return [base + (1 if j < rest else 0) for j in range(parts)]


def interleaved_share(total: int, index: int, parts: int) -> int:
    """How many of global indices ``index, index+parts, ...`` fall below ``total``."""
    return max(0, -(-(total - index) // parts))


StepOutcome = Literal["pass", "fail"]


@dataclass
class FindMaxPlan:
    """Sans-IO search for the highest rate that meets an SLO.

    Multiply the rate by ``factor`` while steps pass; after the first failure, bisect between
    the best passing and the lowest failing rate until they are within ``tolerance`` of each
    other (relative to the passing rate). The caller runs each step and reports the outcome.
    """

    start_rate: float
    factor: float = 2.0
    tolerance: float = 0.05
    max_rate: float | None = None
    min_rate: float = 1.0
    max_steps: int = 20
    passed: float | None = None
    failed: float | None = None
    history: list[tuple[float, StepOutcome]] = field(default_factory=list)
    stopped: str | None = None

    def __post_init__(self) -> None:
        if not self.start_rate > 0:
            raise ConfigError("the starting rate of a search must be above zero")
        if not self.factor > 1:
            raise ConfigError("the step factor must be above 1")
        if not 0 < self.tolerance < 1:
            raise ConfigError("the search tolerance must be between 0 and 1")

    @property
    def done(self) -> bool:
        return self.next_rate() is None

    def next_rate(self) -> float | None:
        """The rate to try next, or None when the search is over."""
        if self.stopped is not None or len(self.history) >= self.max_steps:
            return None
        if not self.history:
            return self._cap(self.start_rate)
        if self.failed is None:
            assert self.passed is not None
            if self.max_rate is not None and self.passed >= self.max_rate:
                return None
            return self._cap(self.passed * self.factor)
        if self.passed is None:
            lower = self.failed / self.factor
            return None if self.failed <= self.min_rate else max(lower, self.min_rate)
        if self.failed <= self.passed * (1 + self.tolerance):
            return None
        return (self.passed + self.failed) / 2

    def record(self, rate: float, outcome: StepOutcome) -> None:
        self.history.append((rate, outcome))
        if outcome == "pass":
            self.passed = rate if self.passed is None else max(self.passed, rate)
        else:
            self.failed = rate if self.failed is None else min(self.failed, rate)

    def stop(self, reason: str) -> None:
        """End the search early (e.g. the generator could not keep the step's rate)."""
        self.stopped = reason

    def _cap(self, rate: float) -> float:
        return rate if self.max_rate is None else min(rate, self.max_rate)
