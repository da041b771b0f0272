"""Live drift end to end: `servepath model profile` writes a model's reference profile from
its training CSV, and a real server with two workers (`serve --workers 2
--reference-profile`) reports shifted traffic answered by both workers on /metrics as one
series per feature, computed from both workers' rows, whichever worker answers the scrape.

The model is a small logistic regression trained here: its engine race takes a second where
the example model's takes several, in each worker."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import joblib
import orjson
import pytest
from typer.testing import CliRunner

from servepath.cli import app as cli_app
from servepath.model.example import generate_applicants
from tests.service.test_live_drift import drift_gauge
from tests.support import serve

pytestmark = pytest.mark.timeout(120)

INPUTS = ["income", "age", "debt_to_income"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A model on three inputs, its training CSV, and a data directory for the CLI."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    where = tmp_path_factory.mktemp("drift-model")
    frame = generate_applicants(3_000, seed=41)
    model = Pipeline([("scale", StandardScaler()), ("fit", LogisticRegression())])
    model.fit(frame[INPUTS], frame["decision"])
    joblib.dump(model, where / "model.joblib")
    frame.to_csv(where / "train.csv", index=False)  # with columns the model does not use
    return where / "model.joblib", where / "train.csv", where / "data"


def _profile(trained: tuple[Path, Path, Path], *args: str) -> tuple[int, str]:
    model, train, data = trained
    result = CliRunner().invoke(
        cli_app,
        ["model", "profile", str(train), "--model", str(model), *args],
        env={"SERVEPATH_DATA_DIR": str(data)},
    )
    return result.exit_code, result.output


def test_model_profile_writes_the_profile_of_the_models_inputs(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "profile.json"
    code, output = _profile(trained, "--out", str(out), "--bins", "8", "--json")
    assert code == 0, output
    printed = orjson.loads(output)
    written = orjson.loads(out.read_bytes())
    assert printed["out"] == str(out) and printed["features"] == written["features"]
    assert [f["name"] for f in written["features"]] == INPUTS
    assert all(len(f["shares"]) == 8 for f in written["features"])
    assert written["model"]["version"] and written["source"] == "train.csv"
    code, table = _profile(trained, "--out", str(out))
    assert code == 0 and "debt_to_income" in table and "number" in table


def test_model_profile_refuses_training_data_without_an_input(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    partial = tmp_path / "partial.csv"
    partial.write_text("income,age\n1,2\n")
    model, _, data = trained
    code, output = _profile((model, partial, data), "--out", str(tmp_path / "p.json"))
    assert code == 2 and "no column 'debt_to_income'" in output


def test_shifted_traffic_to_two_workers_reads_as_drift_of_all_their_rows(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    profile = tmp_path / "profile.json"
    assert _profile(trained, "--out", str(profile))[0] == 0
    model = trained[0]
    args = [
        "--workers",
        "2",
        "--store",
        "off",
        "--cache",
        "off",
        "--reference-profile",
        str(profile),
    ]
    frame = generate_applicants(2_000, seed=42)[INPUTS]
    frame["income"] *= 3.0
    shifted = [dict(zip(INPUTS, map(float, row), strict=True)) for row in frame.to_numpy()]
    with serve(tmp_path, model=model, args=args) as s:
        sent: dict[int, int] = {}
        deadline = time.monotonic() + 60
        # A connection stays with the worker that accepted it: its pid, then its rows. Which
        # worker accepts is the kernel's choice: go on (the same rows again, within the
        # window of each worker) until both have had some.
        for n in range(60):
            if len(sent) == 2 and min(sent.values()) >= 100:
                break
            assert time.monotonic() < deadline, sent
            with httpx.Client(base_url=s.url, timeout=10, trust_env=False) as c:
                pid = c.get("/_path").json()["pid"]
                rows = shifted[n % 20 * 100 : n % 20 * 100 + 100]
                assert c.post("/decisions", json={"instances": rows}).status_code == 200
            sent[pid] = sent.get(pid, 0) + len(rows)
        assert len(sent) == 2 and min(sent.values()) >= 100, sent
        total = sum(sent.values())
        # Each worker shares its counts every second: wait until a scrape sums them all.
        while True:
            with httpx.Client(timeout=10, trust_env=False) as c:
                text = c.get(s.url + "/metrics").text
            gauge = drift_gauge(text)
            if gauge.get("(rows)") == total:
                break
            assert time.monotonic() < deadline, (gauge.get("(rows)"), sent)
            time.sleep(0.1)
        assert gauge["income"] > 1.0 and gauge["age"] < 0.2, gauge
        # One series per feature, not one per worker.
        assert text.count('servepath_feature_drift{feature="income"}') == 1
