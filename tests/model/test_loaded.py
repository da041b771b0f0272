"""Loading artifacts: scikit-learn joblib and ONNX; versions are content hashes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from servepath.errors import ModelLoadError
from servepath.model.example import (
    CATEGORICAL_FEATURES,
    EXAMPLE_APPLICANT,
    NUMERIC_FEATURES,
    generate_applicants,
)
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


def test_onnx_model_serves_the_same_decisions_as_scikit_learn(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    data = generate_applicants(3000, seed=7)
    features = data[list(NUMERIC_FEATURES + CATEGORICAL_FEATURES)]
    pipe = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), list(NUMERIC_FEATURES)),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FEATURES)),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    ).fit(features, data["decision"])
    types = [(n, FloatTensorType([None, 1])) for n in NUMERIC_FEATURES] + [
        (n, StringTensorType([None, 1])) for n in CATEGORICAL_FEATURES
    ]
    onx = to_onnx(
        pipe,
        initial_types=types,
        options={id(pipe.steps[-1][1]): {"zipmap": False}},
        target_opset=17,
    )
    path = tmp_path / "credit.onnx"
    path.write_bytes(onx.SerializeToString())

    model = load_model(path)
    assert model.format == "onnx" and model.name == "credit"
    kinds = {f.name: f.kind for f in model.schema.features}
    assert kinds["purpose"] == "category" and kinds["income"] == "number"
    rows = features.iloc[:200].to_dict("records")
    onnx_out = model.predict_rows(rows)
    sk_proba = pipe.predict_proba(features.iloc[:200]).max(axis=1)
    sk_labels = pipe.predict(features.iloc[:200])
    assert [o["decision"] for o in onnx_out] == list(sk_labels)
    assert max(abs(o["probability"] - p) for o, p in zip(onnx_out, sk_proba, strict=True)) < 1e-4
    assert model.predict_rows([EXAMPLE_APPLICANT])[0]["decision"] in ("approve", "decline")


def test_corrupt_onnx_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x01garbage")
    with pytest.raises(ModelLoadError, match="onnxruntime"):
        load_model(path)
