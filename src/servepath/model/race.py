"""Choosing the engine: each candidate must reproduce the reference on probe rows, then the
fastest for one row and for a 64-row batch serve.

``choose`` is pure (trials in, choice out); ``run_race`` is the thin part that predicts and
times.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from servepath.model.engines import Answers, Candidate, EngineFn, Row
from servepath.model.schema import InputSchema

#: Largest disagreement with the model's own answers a served answer may show: a probability,
#: or a regression value (relative to its size when that exceeds one).
TOLERANCE = 1e-6
#: An engine serves only if it stays within this on the probe rows: half the tolerance, so
#: that rows the probes did not cover (float32 sums over hundreds of trees wander with the
#: row) still land within it.
ACCEPT = TOLERANCE / 2
BATCH = 64
PROBE_ROWS = 256


@dataclass(frozen=True)
class Trial:
    """One engine's result: whether it reproduces the reference, and what it costs."""

    name: str
    detail: str
    error: str | None = None
    disagreement: float | None = None  # max |Δ| over the probe rows
    label_mismatches: int = 0
    one_row_ms: float | None = None
    batch_ms: float | None = None
    convert_seconds: float = 0.0
    cached: bool = False

    @property
    def agrees(self) -> bool:
        return (
            self.error is None
            and self.disagreement is not None
            and self.disagreement <= ACCEPT
            and self.label_mismatches == 0
        )

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return self.error
        if self.label_mismatches:
            return f"labels differ on {self.label_mismatches} probe rows"
        if self.disagreement is not None and self.disagreement > ACCEPT:
            return f"disagrees by {self.disagreement:.2g} (> {ACCEPT:g} on the probes)"
        return "agrees"

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "detail": self.detail,
            "agrees": self.agrees,
            "verdict": self.verdict,
            "max_difference": self.disagreement,
            "one_row_ms": _r(self.one_row_ms),
            "batch_ms": _r(self.batch_ms),
            "convert_seconds": round(self.convert_seconds, 3),
            "conversion_cached": self.cached,
        }


def _r(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


@dataclass(frozen=True)
class Choice:
    """The engine for small batches, the one for large ones, and where they meet."""

    small: str
    large: str
    crossover: int | None  # batches of at least this many rows go to ``large``
    why: str

    def to_json(self) -> dict[str, Any]:
        return {
            "small": self.small,
            "large": self.large,
            "crossover": self.crossover,
            "why": self.why,
        }


def choose(trials: Sequence[Trial], reference: str) -> Choice:
    """The fastest agreeing engine for one row and for a batch (ties: the earlier trial)."""
    timed = [t for t in trials if t.agrees and t.one_row_ms is not None and t.batch_ms is not None]
    if not timed:
        return Choice(reference, reference, None, "no engine reproduced the model but itself")
    one = min(timed, key=lambda t: t.one_row_ms or 0.0)
    batch = min(timed, key=lambda t: t.batch_ms or 0.0)
    if one.name == batch.name:
        return Choice(one.name, one.name, None, "fastest for one row and for a batch")
    # Linear cost model t(n) = a + b n through the two measurements of each engine.
    a1, b1 = _line(one)
    a2, b2 = _line(batch)
    crossover = BATCH
    if b1 > b2:
        crossover = int(np.clip(np.ceil((a2 - a1) / (b1 - b2)), 2, BATCH))
    return Choice(
        one.name,
        batch.name,
        crossover,
        f"{one.name} is fastest for one row, {batch.name} for {BATCH} rows",
    )


def _line(trial: Trial) -> tuple[float, float]:
    t1, tb = trial.one_row_ms or 0.0, trial.batch_ms or 0.0
    slope = max(0.0, (tb - t1) / (BATCH - 1))
    return t1 - slope, slope


# --- probing -------------------------------------------------------------------------


def probe_rows(
    schema: InputSchema,
    count: int = PROBE_ROWS,
    seed: int = 0,
    *,
    positive: frozenset[str] = frozenset(),
) -> list[Row]:
    """Rows around the schema's example: every category, a spread of numbers, some missing
    values where the model takes them. ``positive``: fields the model only defines above zero
    (it takes their log): without an example to follow, their probes stay above zero too."""
    rng = np.random.default_rng(seed)
    example = schema.example()
    rows: list[Row] = [dict(example)]
    used = schema.used
    for i in range(count - 1):
        row: Row = {}
        for f in used:
            if f.nullable and rng.random() < 0.08:
                row[f.name] = None
            elif f.categories:
                options = list(f.categories)
                row[f.name] = options[(i + int(rng.integers(len(options)))) % len(options)]
            elif f.kind == "boolean":
                row[f.name] = bool(rng.integers(2))
            elif f.kind == "category":
                row[f.name] = example[f.name]
            else:
                base = example[f.name]
                centre = float(base) if isinstance(base, int | float) else 0.0
                if centre:
                    # same sign and order of magnitude: a log or a ratio in the pipeline
                    # stays defined
                    value = centre * float(np.exp(rng.normal(0.0, 0.6)))
                elif f.name in positive:
                    value = float(rng.exponential(1.0)) + 1e-3
                else:
                    value = float(rng.normal(0.0, 1.0))
                if isinstance(base, float) and float(base).is_integer() and abs(centre) > 5:
                    value = round(value)
                row[f.name] = float(value)
        rows.append(row)
    return rows


def difference(got: Answers, want: Answers) -> tuple[float, int]:
    """Largest numeric difference and the number of rows whose label differs."""
    worst = 0.0
    mismatches = 0
    if want.proba is not None:
        if got.proba is None or got.proba.shape != want.proba.shape:
            return float("inf"), 0
        worst = float(np.abs(got.proba - want.proba).max(initial=0.0))
    if want.labels is not None:
        if got.labels is None or got.labels.shape != want.labels.shape:
            return float("inf"), 0
        mismatches = int((got.labels != want.labels).sum())
    if want.values is not None:
        if got.values is None or got.values.size != want.values.size:
            return float("inf"), 0
        w = want.values.reshape(-1)
        g = got.values.reshape(-1)
        worst = float((np.abs(g - w) / np.maximum(1.0, np.abs(w))).max(initial=0.0))
    if not np.isfinite(worst):
        worst = float("inf")
    return worst, mismatches


def verify(candidate: Candidate, want: Answers, rows: Sequence[Row]) -> Trial:
    base = Trial(
        candidate.name,
        candidate.detail,
        candidate.error,
        convert_seconds=candidate.convert_seconds,
        cached=candidate.cached,
    )
    if candidate.predict is None:
        return base
    try:
        got = candidate.predict(rows)
        worst, mismatches = difference(got, want)
        single = candidate.predict(rows[:1])
        w1, m1 = difference(single, _first(want))
    except Exception as exc:  # an engine that raises on the probe rows is not used
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return Trial(
            candidate.name,
            candidate.detail,
            f"fails on the probe rows: {type(exc).__name__}: {text}",
            convert_seconds=candidate.convert_seconds,
            cached=candidate.cached,
        )
    return Trial(
        candidate.name,
        candidate.detail,
        None,
        max(worst, w1),
        mismatches + m1,
        convert_seconds=candidate.convert_seconds,
        cached=candidate.cached,
    )


def _first(answers: Answers) -> Answers:
    return Answers(
        labels=answers.labels[:1] if answers.labels is not None else None,
        proba=answers.proba[:1] if answers.proba is not None else None,
        values=answers.values[:1] if answers.values is not None else None,
    )


def time_engines(
    engines: dict[str, EngineFn],
    rows: Sequence[Row],
    *,
    budget_s: float = 1.0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, tuple[float, float]]:
    """Milliseconds for one row and for ``BATCH`` rows, per engine (the lower quartile).

    Measured in turns, so that a noisy neighbour slows every engine alike, and bounded: an
    engine stops being measured once it has used its share of ``budget_s`` (a model that
    takes a second a call is measured once, not forty times). The first call of each, which
    pays for warming up, counts only when it is the only one.
    """
    one: dict[str, list[float]] = {n: [] for n in engines}
    batch: dict[str, list[float]] = {n: [] for n in engines}
    spent = dict.fromkeys(engines, 0.0)
    share = budget_s / max(1, len(engines))
    batch_rows = list(rows[:BATCH])
    singles = [[r] for r in rows[:BATCH]]

    def measure(name: str, fn: EngineFn, args: list[Row], into: dict[str, list[float]]) -> None:
        t0 = clock()
        fn(args)
        elapsed = clock() - t0
        spent[name] += elapsed
        into[name].append(elapsed * 1000)

    for name, fn in engines.items():
        measure(name, fn, singles[0], one)
        measure(name, fn, batch_rows, batch)
    for turn in range(1, 40):
        active = [n for n in engines if spent[n] < share]
        if not active:
            break
        for name in active:
            measure(name, engines[name], singles[turn % len(singles)], one)
            if turn % 3 == 1:
                measure(name, engines[name], batch_rows, batch)

    def settled(samples: list[float]) -> float:
        # The lower quartile: a busy machine only ever adds time, and the engines are
        # compared by what they cost, not by what their neighbours cost them.
        return float(np.percentile(samples[1:] if len(samples) > 1 else samples, 25))

    return {n: (settled(one[n]), settled(batch[n])) for n in engines}
