"""Loading artifacts: scikit-learn joblib and ONNX; versions are content hashes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from servepath.errors import ModelLoadError
from servepath.model.loaded import load_model


def test_version_is_a_content_hash(example_model_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.joblib"
    shutil.copy(example_model_path, copy)
    assert load_model(copy).version == load_model(example_model_path).version
    other = tmp_path / "other.joblib"
    other.write_bytes(example_model_path.read_bytes() + b"\0")
    assert load_model(other).version != load_model(example_model_path).version


def test_example_model_name_is_decision(example_model_path: Path) -> None:
    assert load_model(example_model_path).name == "decision"
    assert load_model(example_model_path, "credit").name == "credit"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "no such file"), (b"garbage", "not a joblib file")],
)
def test_unloadable_artifacts_say_why(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "m.joblib"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=reason):
        load_model(path)


def test_joblib_of_something_that_is_not_a_model_is_rejected(tmp_path: Path) -> None:
    import joblib

    path = tmp_path / "m.joblib"
    joblib.dump({"weights": [1, 2]}, path)
    with pytest.raises(ModelLoadError, match="has no predict"):
        load_model(path)


def test_a_conversion_is_cached_by_content_hash_and_reused(tmp_path: Path) -> None:
    import time

    import joblib
    import zoomodels

    estimator, _ = zoomodels.fit(zoomodels.by_name("random_forest"), "test", n=600)
    path = tmp_path / "forest.joblib"
    joblib.dump(estimator, path)
    cache = tmp_path / "engines"
    first = load_model(path, cache_dir=cache, race_budget_s=0.1)
    assert first.report is not None
    converted = [t for t in first.report.trials if t.convert_seconds > 0 and not t.cached]
    assert converted and any(cache.rglob("*.onnx"))
    start = time.perf_counter()
    second = load_model(path, cache_dir=cache, race_budget_s=0.1)
    assert second.report is not None
    onnx_trials = [t for t in second.report.trials if t.name.startswith("onnxruntime")]
    assert onnx_trials and all(t.cached for t in onnx_trials)
    assert time.perf_counter() - start < 30  # a hang, not a timing target
    # another artifact (one byte more) is another entry
    other = tmp_path / "other.joblib"
    other.write_bytes(path.read_bytes())
    joblib.dump(zoomodels.fit(zoomodels.by_name("random_forest"), "test", n=601)[0], other)
    third = load_model(other, cache_dir=cache, race_budget_s=0.1)
    assert third.report is not None
    assert not any(t.cached for t in third.report.trials if t.name.startswith("onnxruntime"))


def test_an_unwritable_cache_costs_a_conversion_not_the_load(tmp_path: Path) -> None:
    import joblib
    import zoomodels

    estimator, _ = zoomodels.fit(zoomodels.by_name("mlp"), "test", n=400)
    path = tmp_path / "mlp.joblib"
    joblib.dump(estimator, path)
    blocked = tmp_path / "engines"
    blocked.write_text("a file where the cache directory would be")
    model = load_model(path, cache_dir=blocked, race_budget_s=0.1)
    assert model.predict_rows([model.schema.example()])


def test_probabilities_per_class_when_asked(tmp_path: Path) -> None:
    import joblib
    import zoomodels

    estimator, _ = zoomodels.fit(zoomodels.by_name("logistic_3class"), "test", n=400)
    path = tmp_path / "lr.joblib"
    joblib.dump(estimator, path)
    model = load_model(path, probabilities=True, race_budget_s=0.1)
    assert model.outputs == ("decision", "probability", "probabilities")
    out = model.predict_rows([model.schema.example()])[0]
    assert set(out["probabilities"]) == {"approve", "decline", "review"}
    assert out["probabilities"][out["decision"]] == out["probability"]
    estimator.servepath_outputs_ = ("probabilities",)  # the artifact may ask for them too
    joblib.dump(estimator, path)
    assert "probabilities" in load_model(path, race_budget_s=0.1).outputs
