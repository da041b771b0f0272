"""Choosing an engine: only those that reproduce the model, then the fastest for one row and
for a batch (pure: hand-made trials and answers)."""

from __future__ import annotations

import numpy as np
import pytest

from servepath.model.engines import Answers, Candidate
from servepath.model.race import (
    ACCEPT,
    BATCH,
    TOLERANCE,
    Trial,
    choose,
    difference,
    probe_rows,
    time_engines,
    verify,
)
from servepath.model.schema import Feature, InputSchema


def trial(name: str, one: float, batch: float, diff: float = 0.0, **kw: object) -> Trial:
    return Trial(name, "", disagreement=diff, one_row_ms=one, batch_ms=batch, **kw)  # type: ignore[arg-type]


def test_the_fastest_agreeing_engine_serves_both_sizes() -> None:
    choice = choose([trial("sklearn", 4.0, 5.0), trial("onnxruntime", 0.1, 0.4)], "sklearn")
    assert (choice.small, choice.large, choice.crossover) == ("onnxruntime", "onnxruntime", None)


def test_a_faster_engine_that_disagrees_is_not_chosen() -> None:
    trials = [
        trial("sklearn", 4.0, 5.0),
        trial("treelite", 0.2, 0.9),
        trial("onnxruntime", 0.05, 0.1, diff=2e-3),
        trial("xgboost", 0.01, 0.01, label_mismatches=1),
        Trial("broken", "", error="fails on the probe rows"),
    ]
    choice = choose(trials, "sklearn")
    assert choice.small == choice.large == "treelite"
    assert not trials[2].agrees and "disagrees by 0.002" in trials[2].verdict
    assert "labels differ on 1" in trials[3].verdict
    assert trials[4].verdict == "fails on the probe rows"


def test_different_winners_split_the_batch_sizes_where_their_costs_cross() -> None:
    # compiled: 0.1 + 0.03 n; treelite: 0.5 + 0.005 n -> equal at n = 16
    compiled = trial("compiled", 0.13, 0.1 + 0.03 * BATCH)
    treelite = trial("treelite", 0.505, 0.5 + 0.005 * BATCH)
    choice = choose([trial("sklearn", 9.0, 9.5), compiled, treelite], "sklearn")
    assert (choice.small, choice.large) == ("compiled", "treelite")
    assert choice.crossover == 16


def test_nothing_but_the_reference_agrees() -> None:
    choice = choose([Trial("sklearn", "", disagreement=0.0), trial("x", 1, 1, diff=1)], "sklearn")
    assert choice.small == choice.large == "sklearn" and "no engine" in choice.why


def test_difference_counts_labels_and_the_largest_probability_gap() -> None:
    want = Answers(labels=np.array([0, 1, 1]), proba=np.array([[0.9, 0.1], [0.4, 0.6], [0, 1]]))
    got = Answers(labels=np.array([0, 0, 1]), proba=want.proba + [[1e-7, -1e-7]] * 3)  # type: ignore[operator]
    worst, mismatches = difference(got, want)
    assert worst == pytest.approx(1e-7) and mismatches == 1
    shape = Answers(labels=np.array([0]), proba=np.array([[1.0, 0.0]]))
    assert difference(shape, want)[0] == float("inf")
    big = Answers(values=np.array([100_000.0, 2.0]))
    near = Answers(values=np.array([100_000.05, 2.0]))
    assert difference(near, big)[0] == pytest.approx(5e-7)  # relative beyond 1


def test_verify_reports_an_engine_that_raises() -> None:
    def boom(rows: object) -> Answers:
        raise RuntimeError("no such input")

    rows = [{"a": 1.0}, {"a": 2.0}]
    want = Answers(values=np.array([1.0, 2.0]))
    failed = verify(Candidate("x", "", boom), want, rows)
    assert not failed.agrees and "RuntimeError: no such input" in failed.verdict
    same = verify(
        Candidate("y", "", lambda r: Answers(values=np.array([x["a"] for x in r]))), want, rows
    )  # type: ignore[index]
    assert same.agrees and same.disagreement == 0.0


def test_probe_rows_cover_categories_and_missing_values_and_keep_signs() -> None:
    schema = InputSchema(
        (
            Feature("income", "number", None, 50_000.0, nullable=True),
            Feature("shift", "number", None, -3.0),
            Feature("home", "category", ("rent", "own", "mortgage"), "rent"),
            Feature("flag", "boolean", None, False),
            Feature("note", "any", None, None),
        )
    )
    rows = probe_rows(schema, 200)
    assert rows[0] == schema.example()
    assert {r["home"] for r in rows} == {"rent", "own", "mortgage"}
    assert {r["flag"] for r in rows} == {True, False}
    incomes = [r["income"] for r in rows]
    assert None in incomes and all(i is None or i > 0 for i in incomes)
    assert all(r["shift"] < 0 for r in rows)  # type: ignore[operator]
    assert all("note" not in r for r in rows)
    assert probe_rows(schema, 50) == probe_rows(schema, 50)  # seeded


def test_time_engines_measures_each_engine_in_turns_within_its_budget() -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    def engine(cost_per_row: float):  # type: ignore[no-untyped-def]
        def run(rows: list[object]) -> Answers:
            now[0] += 0.001 + cost_per_row * len(rows)
            return Answers()

        return run

    rows = [{"a": float(i)} for i in range(BATCH)]
    timed = time_engines({"fast": engine(1e-5), "slow": engine(1e-4)}, rows, clock=clock)
    assert timed["fast"][0] == pytest.approx(1.01) and timed["slow"][0] == pytest.approx(1.1)
    assert timed["fast"][1] == pytest.approx(1 + 0.01 * BATCH)
    assert TOLERANCE == 1e-6


def test_an_engine_needs_headroom_below_the_tolerance_on_the_probes() -> None:
    assert trial("onnxruntime", 0.1, 0.2, diff=ACCEPT).agrees
    near = trial("onnxruntime", 0.1, 0.2, diff=0.8 * TOLERANCE)
    assert not near.agrees and "on the probes" in near.verdict
