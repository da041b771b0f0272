"""`servepath drift` end to end, on real prediction logs written by the store's own writer
(SQLite and PostgreSQL, the same records in each): an earlier window of the log or a file
of training rows (CSV, Parquet) as the reference, per model version, synthetic traffic and a
shadow's copies left out, the exit code by the share of drifted features, and the page."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from servepath.cli import app
from servepath.model.example import CATEGORICAL_FEATURES, NUMERIC_FEATURES, generate_applicants
from servepath.store.base import PredictionRecord
from servepath.store.postgres import PostgresSink
from servepath.store.spool import Spool
from servepath.store.sqlite import SQLiteSink
from servepath.store.writer import BatchedLog
from tests.store.conftest import (
    create_database,
    database_url,
    drop_database,
    make_record,
    postgres_answers,
)
from tests.support import need

runner = CliRunner()
FEATURES = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)
NOW = time.time()
#: The reference window: two to one hours ago; the current window: the last hour.
REFERENCE_SINCE, CURRENT_SINCE = NOW - 7200, NOW - 3600


def _records() -> list[PredictionRecord]:
    """1,500 answers an hour or two ago; in the last hour 1,200 of v1 and 300 of v2 whose
    incomes are 30% higher, loans twice as large and purposes partly new; besides them,
    load-test requests and a shadow's copies carrying categories no caller sent."""
    reference = generate_applicants(1500, seed=1)
    current = generate_applicants(1500, seed=2)
    current["income"] *= 1.3
    current["loan_amount"] *= 2.0
    current.loc[current.index % 5 == 0, "purpose"] = "boat"
    records = []

    def add(frame: Any, start: float, step: float, **changes: Any) -> None:
        for i, row in enumerate(frame.to_dict("records")):
            decision = row.pop("decision")
            fields = {"model_version": "v1", **changes}
            if fields.get("model_version") == "v1" and "role" not in changes and i >= 1200:
                fields.update(model_version="v2", model_label="2")
            records.append(
                make_record(
                    ts=start + i * step,
                    instance=row,
                    output={"decision": decision, "probability": 0.5},
                    **fields,
                )
            )

    add(reference, REFERENCE_SINCE + 1, 2.0, model_version="v0")
    add(current, CURRENT_SINCE + 1, 2.0)
    noise = generate_applicants(200, seed=3)
    noise["purpose"] = "loadtest"
    add(noise, CURRENT_SINCE + 2, 2.0, traffic="load", model_version="v1")
    noise["purpose"] = "shadowcat"
    add(noise, CURRENT_SINCE + 3, 2.0, role="shadow", model_version="v1")
    return records


def _write(sink: Any, spool: Path, records: list[PredictionRecord]) -> None:
    async def write() -> None:
        log = BatchedLog(sink, spool=Spool(spool))
        await log.start()
        log.record(records)
        await log.close()

    asyncio.run(write())


@dataclass(frozen=True)
class Logs:
    sqlite: str
    directory: Path


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Logs:
    directory = tmp_path_factory.mktemp("drift")
    path = directory / "predictions.sqlite3"
    _write(SQLiteSink(path), directory / "spool", _records())
    return Logs(f"sqlite://{path}", directory)


@pytest.fixture(scope="module")
def postgres_log(logs: Logs) -> Iterator[str]:
    need(postgres_answers(), "PostgreSQL at 127.0.0.1:5432 (user postgres, trust)")
    name = f"sp_test_{uuid.uuid4().hex[:12]}"
    create_database(name)
    try:
        url = database_url(name)
        _write(PostgresSink(url), logs.directory / "spool-pg", _records())
        yield url
    finally:
        drop_database(name)


def _drift(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["drift", *args, "--json"])
    return result.exit_code, orjson.loads(result.stdout)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat()


def _window_args(store: str) -> list[str]:
    # Absolute times: the records were written at import, the command runs later.
    return ["--store", store, "--reference-since", _iso(REFERENCE_SINCE),
            "--reference-until", _iso(CURRENT_SINCE)]  # fmt: skip


def _by_name(version: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in version["features"]}


def test_a_window_of_the_log_against_an_earlier_one_per_feature_and_version(logs: Logs) -> None:
    code, report = _drift(*_window_args(logs.sqlite))
    versions = {v["model_version"]: v for v in report["versions"]}
    assert set(versions) == {"v1", "v2"}
    assert report["reference"]["rows"] == 1500
    v1 = versions["v1"]
    assert v1["rows"] == 1200  # the load test's requests and the shadow's copies left out
    features = _by_name(v1)
    assert set(features) == set(FEATURES)
    for f in features.values():
        assert {"name", "test", "statistic", "threshold", "drifted"} <= set(f)
    # 1,500 reference values: distances, at Evidently's 0.1
    assert features["income"]["test"] == "wasserstein" and features["income"]["threshold"] == 0.1
    assert features["purpose"]["test"] == "jensenshannon"
    drifted = {name for name, f in features.items() if f["drifted"]}
    assert {"income", "loan_amount", "purpose"} <= drifted
    assert "age" not in drifted and "home_ownership" not in drifted
    assert [u["value"] for u in features["purpose"]["unseen"]] == ["boat"]
    assert features["income"]["out_of_range"] > 0
    # the prediction's own fields are compared, apart from the features
    assert {p["name"] for p in v1["prediction"]} == {"decision", "probability"}
    # fewer than half the features drifted: no dataset drift, exit 0
    assert v1["drifted_share"] < 0.5 and not v1["drifted"]
    assert code == 0 and report["ok"]
    # a version is named by its label as well
    assert versions["v2"]["model_label"] == "2" and versions["v1"]["model_label"] is None
    _, only = _drift(*_window_args(logs.sqlite), "--model-version", "2")
    assert [(v["model_version"], v["rows"]) for v in only["versions"]] == [("v2", 300)]


def test_the_exit_code_says_whether_the_share_of_drifted_features_reached_fail_share(
    logs: Logs,
) -> None:
    code, report = _drift(*_window_args(logs.sqlite), "--fail-share", "0.3")
    assert code == 1 and not report["ok"]
    v1 = next(v for v in report["versions"] if v["model_version"] == "v1")
    assert v1["drifted"] and v1["drifted_share"] >= 0.3


def test_postgresql_gives_the_same_verdicts_and_statistics_as_sqlite(
    logs: Logs, postgres_log: str
) -> None:
    _, from_sqlite = _drift(*_window_args(logs.sqlite))
    _, from_postgres = _drift(*_window_args(postgres_log))
    for a, b in zip(from_sqlite["versions"], from_postgres["versions"], strict=True):
        assert a["model_version"] == b["model_version"] and a["rows"] == b["rows"]
        for name, f in _by_name(a).items():
            g = _by_name(b)[name]
            assert (f["test"], f["drifted"]) == (g["test"], g["drifted"])
            assert f["statistic"] == pytest.approx(g["statistic"], rel=1e-9)


def test_training_rows_as_the_reference_csv_or_parquet_with_the_schemas_kinds(
    logs: Logs,
) -> None:
    train = generate_applicants(800, seed=4)  # ≤ 1,000 rows: tests, not distances
    csv, parquet = logs.directory / "train.csv", logs.directory / "train.parquet"
    train.to_csv(csv, index=False)
    train.to_parquet(parquet, index=False)
    schema = logs.directory / "schema.json"
    items = [{"name": n, "kind": "number"} for n in NUMERIC_FEATURES]
    items += [{"name": n, "kind": "category", "example": "x"} for n in CATEGORICAL_FEATURES]
    schema.write_bytes(orjson.dumps(items))
    args = ["--store", logs.sqlite, "--since", _iso(CURRENT_SINCE), "--schema", str(schema)]
    code, from_csv = _drift(*args, "--reference", str(csv), "--model-version", "v1")
    assert code == (0 if from_csv["ok"] else 1)
    assert from_csv["reference"] == {
        "kind": "file", "source": str(csv), "rows": 800, "since": None, "until": None,
    }  # fmt: skip
    assert [v["model_version"] for v in from_csv["versions"]] == ["v1"]
    features = _by_name(from_csv["versions"][0])
    assert set(features) == set(FEATURES)  # the label column is the prediction's, not a feature
    assert features["income"]["kind"] == "numeric" and features["income"]["test"] == "ks"
    # term_months is a number to the schema: compared as categories for its 5 values
    assert features["term_months"]["kind"] == "numeric"
    assert features["term_months"]["test"] == "chisquare"
    assert features["purpose"]["test"] == "chisquare" and features["purpose"]["drifted"]
    assert [p["name"] for p in from_csv["versions"][0]["prediction"]] == ["decision"]
    _, from_parquet = _drift(*args, "--reference", str(parquet), "--model-version", "v1")
    for name, f in features.items():
        g = _by_name(from_parquet["versions"][0])[name]
        assert (f["test"], f["drifted"]) == (g["test"], g["drifted"])
        assert f["statistic"] == pytest.approx(g["statistic"], rel=1e-12)


def test_the_page_puts_the_drifted_features_first_with_both_distributions(logs: Logs) -> None:
    page = logs.directory / "drift.html"
    result = runner.invoke(app, ["drift", *_window_args(logs.sqlite), "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert "DRIFT" in result.output and "income" in result.output
    html = page.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in html and "<script" not in html
    v1 = html[html.index("decision v1") :]
    body = v1[v1.index("<tbody>") : v1.index("</tbody>")]
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr.*?</tr>", body)]
    names = [cells[1] for cells in rows]
    drifted = {"income", "loan_amount", "purpose"}
    assert set(names[:3]) == drifted and not drifted & set(names[3:])
    # one figure per feature and per field of the prediction, each drawn with both sides
    figures = v1[: v1.index("</section>")].count("<figure")
    assert figures == len(FEATURES) + 2
    assert v1.count("reference and current") >= figures
    # a page that cannot be written is bad usage; the report itself was still printed
    result = runner.invoke(app, ["drift", *_window_args(logs.sqlite), "--html",
                                 str(logs.directory / "no-such-dir" / "x.html")])  # fmt: skip
    assert result.exit_code == 2 and "cannot write" in result.output
    assert "DRIFT" in result.output


def test_a_drift_needs_a_reference_and_a_current_window_with_predictions(logs: Logs) -> None:
    result = runner.invoke(app, ["drift", "--store", logs.sqlite, "--json"])
    assert result.exit_code == 2
    overlapping = ["--store", logs.sqlite, "--reference-since", "2h", "--reference-until", "1h"]
    result = runner.invoke(app, ["drift", *overlapping, "--since", "90m"])
    assert result.exit_code == 2 and "overlap" in result.output
    code, report = _drift(*overlapping, "--since", "1m", "--until", "30s")
    assert code == 1 and report["failure"] == "no_data"
