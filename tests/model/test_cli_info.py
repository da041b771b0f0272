"""`servepath model info`: the schema, the outputs, and the engine race, as a table and JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.model.conftest import Served


def _info(path: Path | str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SERVEPATH_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "servepath", "model", "info", str(path), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture(scope="module")
def dropped(zoo: dict[str, Served]) -> Served:
    return zoo["dropped_column"]


def test_info_names_the_engine_the_others_and_the_costs(dropped: Served, tmp_path: Path) -> None:
    done = _info(dropped.path, tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "dropped_column" in text and "outputs: decision, probability" in text
    assert "home" in text and "not used by the model (optional)" in text
    assert "served by " in text and "1 row" in text and "64 rows" in text and "max |Δ|" in text
    assert "sklearn " in text and "not chosen" in text
    # the conversion was cached in the data directory, by the artifact's hash
    assert any((tmp_path / "engines").rglob("*.onnx"))


def test_info_json_is_the_same_data(dropped: Served, tmp_path: Path) -> None:
    done = _info(dropped.path, tmp_path, "--json", "--probabilities")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["outputs"] == ["decision", "probability", "probabilities"]
    assert data["classes"] == ["approve", "decline", "review"]
    home = next(f for f in data["inputs"] if f["name"] == "home")
    assert home["kind"] == "any"
    engines = data["engines"]
    served = {engines["choice"]["small"], engines["choice"]["large"]}
    trials = {t["engine"]: t for t in engines["trials"]}
    assert served <= set(trials) and all(trials[e]["agrees"] for e in served)
    assert engines["largest_difference"] <= 1e-6
    assert all(t["verdict"] for t in engines["trials"])


def test_info_on_an_array_fitted_model_fails_with_the_fix(tmp_path: Path) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    path = tmp_path / "array.joblib"
    joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), path)
    done = _info(path, tmp_path)
    assert done.returncode == 1
    assert "fit it on a pandas DataFrame" in done.stderr
    data = json.loads(_info(path, tmp_path, "--json").stdout)
    assert data["ok"] is False and "pandas DataFrame" in data["message"]


def test_info_reads_a_model_at_a_url_as_serve_does(dropped: Served, tmp_path: Path) -> None:
    import http.server
    import shutil
    import threading

    root = tmp_path / "store"
    (root / "m").mkdir(parents=True)
    shutil.copy(dropped.path, root / "m" / "dropped_column.joblib")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/m/dropped_column.joblib"
        done = _info(url, tmp_path / "data", "--json", "--allow-http-model")
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["name"] == "dropped_column"
    assert data["version"] == dropped.model.version


def test_info_says_which_schema_source_it_used_and_names_a_misnamed_file(
    dropped: Served, tmp_path: Path
) -> None:
    import shutil

    path = tmp_path / "credit.joblib"
    shutil.copy(dropped.path, path)
    (tmp_path / "credit.schema.json").write_text("[]")
    done = _info(path, tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert "inputs (schema: read from the model" in done.stdout
    assert (
        "found credit.schema.json; the schema file for credit.joblib is named "
        "credit.joblib.schema.json" in done.stdout
    )
    data = json.loads(_info(path, tmp_path / "data", "--json").stdout)
    source = data["schema_source"]
    assert source["kind"] == "model" and source["path"] is None
    assert source["expected_file"] == str(tmp_path / "credit.joblib.schema.json")
    assert source["misnamed"] == [str(tmp_path / "credit.schema.json")]
    # the file under the rule's name is read, and named as the source
    inputs = data["inputs"]
    (tmp_path / "credit.joblib.schema.json").write_text(json.dumps(inputs))
    data = json.loads(_info(path, tmp_path / "data", "--json").stdout)
    assert data["schema_source"]["kind"] == "file"
    assert data["schema_source"]["path"] == str(tmp_path / "credit.joblib.schema.json")
    assert data["schema_source"]["misnamed"] == []


def test_a_second_info_reads_the_engine_race_from_the_cache(
    dropped: Served, tmp_path: Path
) -> None:
    first = _info(dropped.path, tmp_path, "--json")
    assert first.returncode == 0, first.stderr
    race = json.loads(first.stdout)["engines"]["race"]
    assert race["cached"] is False and race["raced_at"]
    again = _info(dropped.path, tmp_path, "--json")
    assert again.returncode == 0, again.stderr
    engines = json.loads(again.stdout)["engines"]
    assert engines["race"] == {"cached": True, "raced_at": race["raced_at"]}
    assert engines["choice"] == json.loads(first.stdout)["engines"]["choice"]
    text = _info(dropped.path, tmp_path).stdout
    assert f"engine race: cached (from {race['raced_at'][:10]}" in text


def test_a_cached_race_whose_engine_cannot_serve_now_is_run_again(
    dropped: Served, tmp_path: Path
) -> None:
    from servepath.model.loaded import load_model

    first = load_model(dropped.path, cache_dir=tmp_path, race_budget_s=0.1)
    assert first.report is not None and not first.report.from_cache
    assert load_model(dropped.path, cache_dir=tmp_path, race_budget_s=0.1).report.from_cache  # type: ignore[union-attr]
    # The kept file names an engine that this installation does not build (a library gone).
    (kept,) = tmp_path.rglob("race-*.json")
    data = json.loads(kept.read_text())
    data["choice"]["small"] = data["choice"]["large"] = "an-engine-not-installed"
    kept.write_text(json.dumps(data))
    again = load_model(dropped.path, cache_dir=tmp_path, race_budget_s=0.1)
    assert again.report is not None and not again.report.from_cache
    assert again.report.choice.small != "an-engine-not-installed"
    assert again.predict_rows([again.schema.example()])
    # and the race run again is what the cache keeps now
    assert load_model(dropped.path, cache_dir=tmp_path, race_budget_s=0.1).report.from_cache  # type: ignore[union-attr]


def test_serve_says_at_start_the_misnamed_schema_file_and_reuses_the_race(
    example_model_path: Path, tmp_path: Path
) -> None:
    import shutil

    from tests.support import serve

    path = tmp_path / "credit.joblib"
    shutil.copy(example_model_path, path)
    (tmp_path / "credit.schema.json").write_text("[]")
    env = {"SERVEPATH_DATA_DIR": str(tmp_path / "data")}
    logs = []
    for _ in range(2):
        with serve(tmp_path, model=path, args=["--store", "off"], env=env) as server:
            logs.append(server.log())
    note = "found credit.schema.json; the schema file for credit.joblib is named"
    assert note in logs[0] and note in logs[1]
    assert "engine race: run now" in logs[0]
    assert "engine race: cached (from " in logs[1]
