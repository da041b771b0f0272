"""ONNX artifacts: schema and classes from the graph or the documented metadata keys, never
invented; a schema file beside the model or given with ``schema_path``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import zoomodels

from servepath.errors import ModelLoadError
from servepath.model.loaded import load_model
from servepath.model.onnx_schema import CLASSES_KEY, OUTPUTS_KEY, SCHEMA_KEY


def _export(estimator: Any, path: Path, *, double: bool = False, zipmap: bool = True) -> Any:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        StringTensorType,
    )

    number = DoubleTensorType if double else FloatTensorType
    types = [(n, number([None, 1])) for n in zoomodels.NUMERIC] + [
        (n, StringTensorType([None, 1])) for n in zoomodels.CATEGORICAL
    ]
    options = None if zipmap else {id(estimator.steps[-1][1]): {"zipmap": False}}
    onx = to_onnx(estimator, initial_types=types, options=options, target_opset=17)
    path.write_bytes(onx.SerializeToString())
    return onx


@pytest.fixture(scope="module")
def svm_pipeline() -> tuple[Any, pd.DataFrame]:
    """One-hot with handle_unknown="error" (scikit-learn's default) and bool labels."""
    from sklearn.linear_model import LogisticRegression

    frame, targets = zoomodels.applicants(1500, seed=3)
    pipe = zoomodels._pipe(
        zoomodels._ct(zoomodels._scaler(), zoomodels._onehot()), LogisticRegression(max_iter=500)
    )
    pipe.fit(frame, targets["grade"])
    return pipe, frame


def _rows(frame: pd.DataFrame, n: int = 200) -> list[dict[str, Any]]:
    return frame.iloc[:n].to_dict("records")


def test_default_one_hot_export_serves_and_its_example_is_a_learned_category(
    svm_pipeline: tuple[Any, pd.DataFrame], tmp_path: Path
) -> None:
    pipe, frame = svm_pipeline
    path = tmp_path / "credit.onnx"
    _export(pipe, path)
    model = load_model(path)
    purpose = next(f for f in model.schema.features if f.name == "purpose")
    assert purpose.kind == "category" and purpose.closed
    assert set(purpose.categories or ()) == set(zoomodels.PURPOSES)
    assert model.schema.example()["purpose"] in zoomodels.PURPOSES
    income = next(f for f in model.schema.features if f.name == "income")
    assert income.kind == "number" and income.example == pytest.approx(
        frame["income"].mean(), rel=1e-3
    )  # the scaler's centre, read from the graph
    assert model.extra["schema_source"] == "graph"
    assert model.classes == (0, 1, 2) and model.output_kind == "integer"
    out = model.predict_rows(_rows(frame))
    assert [o["decision"] for o in out] == list(pipe.predict(frame.iloc[:200]))
    proba = pipe.predict_proba(frame.iloc[:200])
    assert max(abs(o["probability"] - proba[i, o["decision"]]) for i, o in enumerate(out)) < 1e-5
    _, errors = model.schema.validate({**model.schema.example(), "purpose": "yacht"})
    assert [e.type for e in errors] == ["enum"]


def test_a_double_precision_export_reproduces_scikit_learn_exactly(
    svm_pipeline: tuple[Any, pd.DataFrame], tmp_path: Path
) -> None:
    pipe, frame = svm_pipeline
    path = tmp_path / "double.onnx"
    _export(pipe, path, double=True, zipmap=False)
    model = load_model(path)
    out = model.predict_rows(_rows(frame))
    proba = pipe.predict_proba(frame.iloc[:200])
    assert max(abs(o["probability"] - proba[i, o["decision"]]) for i, o in enumerate(out)) < 1e-9
    assert model.report is not None and model.report.trials[0].agrees


def test_metadata_states_schema_classes_and_outputs(
    svm_pipeline: tuple[Any, pd.DataFrame], tmp_path: Path
) -> None:
    import onnx

    pipe, frame = svm_pipeline
    path = tmp_path / "meta.onnx"
    onx = _export(pipe, path, zipmap=False)
    schema = [
        {"name": n, "kind": "number", "example": 1000.0 + i}
        for i, n in enumerate(zoomodels.NUMERIC)
    ] + [
        {"name": "home", "kind": "category", "categories": list(zoomodels.HOMES)},
        {"name": "purpose", "kind": "category", "categories": ["car", "education"]},
    ]
    onnx.helper.set_model_props(
        onx,
        {
            SCHEMA_KEY: json.dumps(schema),
            CLASSES_KEY: json.dumps(["low", "mid", "high"]),
            OUTPUTS_KEY: "probabilities",
        },
    )
    path.write_bytes(onx.SerializeToString())
    model = load_model(path)
    assert model.extra["schema_source"] == "metadata"
    assert model.schema.example()["income"] == 1000.0
    purpose = next(f for f in model.schema.features if f.name == "purpose")
    assert purpose.categories == ("car", "education") and purpose.closed
    assert model.classes == ("low", "mid", "high")
    assert model.outputs == ("decision", "probability", "probabilities")
    out = model.predict_rows(_rows(frame, 5))[0]
    assert out["decision"] in ("low", "mid", "high")
    assert set(out["probabilities"]) == {"low", "mid", "high"}
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def _string_input_model(path: Path) -> None:
    """A regressor whose string input reaches no encoder: 2 * x, ``note`` unused."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "double",
        [
            helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, 1]),
            helper.make_tensor_value_info("note", TensorProto.STRING, [None, 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None, 1])],
        initializer=[helper.make_tensor("two", TensorProto.DOUBLE, [1], [2.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def test_a_string_input_of_unknown_values_needs_a_schema_and_says_how(tmp_path: Path) -> None:
    path = tmp_path / "note.onnx"
    _string_input_model(path)
    with pytest.raises(ModelLoadError, match=r"'note' is a string.*--schema FILE"):
        load_model(path)
    schema = [
        {"name": "x", "kind": "number", "example": 3.0},
        {"name": "note", "kind": "category", "categories": ["a", "b"], "closed": False},
    ]
    given = tmp_path / "schema.json"
    given.write_text(json.dumps(schema))
    model = load_model(path, schema_path=given)
    assert model.extra["schema_source"] == "schema file"
    assert model.outputs == ("prediction",)
    assert model.predict_rows([{"x": 3.0, "note": "anything"}]) == [{"prediction": 6.0}]
    # the same file beside the artifact is found by itself
    (tmp_path / "note.onnx.schema.json").write_text(json.dumps(schema))
    assert load_model(path).schema == model.schema


def test_a_broken_schema_file_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "note.onnx"
    _string_input_model(path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot read the schema file"):
        load_model(path, schema_path=bad)
    bad.write_text(json.dumps([{"name": "x", "kind": "vector"}]))
    with pytest.raises(ModelLoadError, match="kind 'vector'"):
        load_model(path, schema_path=bad)


def test_a_matrix_input_model_names_its_columns(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    x = np.random.default_rng(0).normal(size=(100, 3))
    reg = LinearRegression().fit(x, x @ [1.0, 2.0, 3.0])
    path = tmp_path / "linear.onnx"
    path.write_bytes(to_onnx(reg, x[:1].astype(np.float32)).SerializeToString())
    model = load_model(path)
    assert model.schema.names == ("X_0", "X_1", "X_2")
    got = model.predict_rows([{"X_0": 1.0, "X_1": 1.0, "X_2": 1.0}])[0]["prediction"]
    assert got == pytest.approx(6.0, abs=1e-4)


def test_corrupt_onnx_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x01garbage")
    with pytest.raises(ModelLoadError, match="onnxruntime"):
        load_model(path)


def _scaled_matrix_model(tmp_path: Path) -> Path:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(3000, 500, 200), rng.normal(45, 10, 200)])
    clf = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, x[:, 0] > 3000)
    path = tmp_path / "scaled.onnx"
    path.write_bytes(to_onnx(clf, x[:1].astype(np.float32)).SerializeToString())
    return path


def test_a_matrix_input_behind_a_scaler_takes_its_centres_as_examples(tmp_path: Path) -> None:
    model = load_model(_scaled_matrix_model(tmp_path))
    example = model.schema.example()
    assert 2800 < float(example["X_0"] or 0) < 3200
    assert 40 < float(example["X_1"] or 0) < 50


def test_a_schema_narrower_than_the_matrix_input_says_so(tmp_path: Path) -> None:
    path = _scaled_matrix_model(tmp_path)
    schema = tmp_path / "narrow.json"
    schema.write_text(json.dumps([{"name": "income", "kind": "number"}]))
    with pytest.raises(ModelLoadError) as caught:
        load_model(path, schema_path=schema)
    assert "the schema file names 1 field; the model's input X takes 2 columns" in str(caught.value)


def test_a_schema_missing_a_named_input_says_which(
    tmp_path: Path, svm_pipeline: tuple[Any, pd.DataFrame]
) -> None:
    estimator, frame = svm_pipeline
    path = tmp_path / "svm.onnx"
    _export(estimator, path)
    first = frame.columns[0]
    schema = tmp_path / "partial.json"
    schema.write_text(json.dumps([{"name": first, "kind": "number"}]))
    with pytest.raises(ModelLoadError, match="does not name the model's input"):
        load_model(path, schema_path=schema)


def test_the_schema_source_is_named_the_file_the_metadata_or_the_graph(tmp_path: Path) -> None:
    path = tmp_path / "note.onnx"
    _string_input_model(path)
    schema = [
        {"name": "x", "kind": "number", "example": 3.0},
        {"name": "note", "kind": "category", "categories": ["a", "b"], "closed": False},
    ]
    beside = tmp_path / "note.onnx.schema.json"
    beside.write_text(json.dumps(schema))
    source = load_model(path).schema_source
    assert source.kind == "file" and source.path == beside
    assert source.describe() == f"the schema file {beside}"
    linear = tmp_path / "linear.onnx"
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    x = np.random.default_rng(0).normal(size=(50, 2))
    reg = LinearRegression().fit(x, x @ [1.0, 2.0])
    linear.write_bytes(to_onnx(reg, x[:1].astype(np.float32)).SerializeToString())
    assert load_model(linear).schema_source.describe() == "inferred from the ONNX graph"


def test_a_schema_file_named_after_the_stem_is_not_read_and_is_named(tmp_path: Path) -> None:
    path = tmp_path / "note.onnx"
    _string_input_model(path)
    schema = [
        {"name": "x", "kind": "number", "example": 3.0},
        {"name": "note", "kind": "category", "categories": ["a", "b"], "closed": False},
    ]
    (tmp_path / "note.schema.json").write_text(json.dumps(schema))
    with pytest.raises(ModelLoadError) as caught:
        load_model(path)
    assert (
        "found note.schema.json; the schema file for note.onnx is named note.onnx.schema.json"
        in str(caught.value)
    )
