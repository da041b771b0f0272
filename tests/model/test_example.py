"""The example model's generator is seeded and its model is better than guessing."""

from __future__ import annotations

from servepath.model.example import generate_applicants, train_example


def test_generator_is_deterministic_for_a_seed() -> None:
    a = generate_applicants(500, seed=1)
    b = generate_applicants(500, seed=1)
    c = generate_applicants(500, seed=2)
    assert a.equals(b)
    assert not a.equals(c)


def test_generated_applicants_are_plausible() -> None:
    d = generate_applicants(5000)
    assert d["age"].between(21, 70).all()
    assert (d["employment_years"] <= d["age"] - 18).all()
    assert (d["credit_history_years"] <= d["age"] - 18).all()
    assert d["loan_amount"].between(1000, 150000).all()
    assert set(d["term_months"]) <= {12, 24, 36, 48, 60}
    assert 30_000 < d["income"].median() < 70_000
    approve = (d["decision"] == "approve").mean()
    assert 0.5 < approve < 0.85


def test_model_beats_the_majority_class_clearly() -> None:
    _, accuracy = train_example(rows=4000)
    d = generate_applicants(4000)
    majority = max((d["decision"] == "approve").mean(), (d["decision"] == "decline").mean())
    assert accuracy > majority + 0.05
