"""Load a model artifact (scikit-learn joblib or ONNX) and predict with it."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from servepath.errors import ModelLoadError
from servepath.model.schema import InputSchema, schema_from_json, schema_from_sklearn

log = logging.getLogger(__name__)

Row = dict[str, float | str]
Output = dict[str, Any]
#: ONNX metadata key under which a schema (``InputSchema.to_json()``) may be stored.
ONNX_SCHEMA_KEY = "servepath.schema"
ONNX_CLASSES_KEY = "servepath.classes"
#: Batches at least this large go to scikit-learn even when a compiled predictor exists.
LARGE_BATCH = 512


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to predict: its name, content-hash version, schema and batch predictor."""

    name: str
    version: str
    path: Path
    format: Literal["sklearn", "onnx"]
    schema: InputSchema
    outputs: tuple[str, ...]  # the keys each prediction carries
    predict_rows: Callable[[Sequence[Row]], list[Output]]
    engine: Literal["sklearn", "compiled", "onnxruntime"] = "sklearn"
    engine_note: str = ""  # why this engine: what was compiled, or why compiling was not possible

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "engine": self.engine,
        }


def content_version(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def load_model(path: Path, name: str | None = None, *, compile: bool = True) -> LoadedModel:
    """Load ``path`` by its suffix: ``.onnx`` through onnxruntime, anything else with joblib.

    ``compile``: evaluate supported scikit-learn pipelines with servepath's compiled predictor
    once it has reproduced the pipeline's probabilities (see ``model/compiled.py``).
    """
    if not path.exists():
        raise ModelLoadError(str(path), "no such file")
    if not path.is_file():
        raise ModelLoadError(str(path), "not a regular file")
    model_name = name or _name_from_path(path)
    version = content_version(path)
    if path.suffix.lower() == ".onnx":
        return _load_onnx(path, model_name, version)
    return _load_sklearn(path, model_name, version, compile)


def _name_from_path(path: Path) -> str:
    stem = path.stem
    if stem in ("model", "example-model"):
        return "decision"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in stem) or "model"


def _classifier_outputs(classes: Sequence[Any], proba: np.ndarray) -> list[Output]:
    labels = [_plain(c) for c in classes]
    best = proba.argmax(axis=1)
    return [
        {"decision": labels[j], "probability": round(float(proba[i, j]), 6)}
        for i, j in enumerate(best)
    ]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# --- scikit-learn -------------------------------------------------------------------


def _load_sklearn(path: Path, name: str, version: str, compile: bool) -> LoadedModel:
    import joblib
    import pandas as pd

    try:
        estimator = joblib.load(path)
    except Exception as exc:  # joblib raises anything unpickling can raise
        raise ModelLoadError(str(path), f"not a joblib file ({type(exc).__name__}: {exc})") from exc
    if not hasattr(estimator, "predict"):
        raise ModelLoadError(str(path), f"{type(estimator).__name__} has no predict()")
    try:
        schema = schema_from_sklearn(estimator)
    except ValueError as exc:
        raise ModelLoadError(str(path), str(exc)) from exc
    columns = list(schema.names)

    engine: Literal["sklearn", "compiled"] = "sklearn"
    note = "scikit-learn"
    if hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_"):
        classes = list(estimator.classes_)

        def sklearn_proba(rows: Sequence[Row]) -> np.ndarray:
            frame = pd.DataFrame.from_records(rows, columns=columns)
            return np.asarray(estimator.predict_proba(frame))

        proba = sklearn_proba
        if compile:
            compiled, note = _try_compile(estimator, schema, sklearn_proba)
            if compiled is not None:
                engine = "compiled"
                fast = compiled

                def proba(rows: Sequence[Row]) -> np.ndarray:
                    # scikit-learn's own loops win once a batch is large enough to amortise
                    # its per-call overhead.
                    return fast(rows) if len(rows) < LARGE_BATCH else sklearn_proba(rows)

        def predict_rows(rows: Sequence[Row]) -> list[Output]:
            return _classifier_outputs(classes, proba(rows))

        outputs: tuple[str, ...] = ("decision", "probability")
    else:

        def predict_rows(rows: Sequence[Row]) -> list[Output]:
            frame = pd.DataFrame.from_records(rows, columns=columns)
            return [{"prediction": _plain(v)} for v in np.asarray(estimator.predict(frame))]

        outputs = ("prediction",)

    model = LoadedModel(name, version, path, "sklearn", schema, outputs, predict_rows, engine, note)
    _smoke_test(model)
    return model


def _try_compile(
    estimator: Any, schema: InputSchema, reference: Callable[[Sequence[Row]], np.ndarray]
) -> tuple[Callable[[Sequence[Row]], np.ndarray] | None, str]:
    from servepath.model.compiled import (
        TOLERANCE,
        NotCompilable,
        compile_pipeline,
        probe_rows,
        verify,
    )

    try:
        compiled = compile_pipeline(estimator)
        rows = probe_rows(schema)
        worst = max(verify(compiled, reference, rows), verify(compiled, reference, rows[:1]))
    except NotCompilable as exc:
        log.info("serving with scikit-learn: %s", exc)
        return None, f"scikit-learn (not compiled: {exc})"
    except Exception as exc:  # a probe row the pipeline itself rejects, for one
        log.warning("serving with scikit-learn: compiling failed: %r", exc)
        return None, f"scikit-learn (compiling failed: {exc})"
    if not worst <= TOLERANCE:
        log.warning("serving with scikit-learn: compiled predictor disagreed by %.3g", worst)
        return None, f"scikit-learn (compiled predictor disagreed by {worst:.3g})"
    note = f"compiled ({compiled.description}; max |Δp| {worst:.1e} on {len(rows)} probe rows)"
    log.info("serving with the %s predictor", note)
    return compiled.predict_proba, note


# --- ONNX ---------------------------------------------------------------------------


def _load_onnx(path: Path, name: str, version: str) -> LoadedModel:
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelLoadError(str(path), f"onnxruntime cannot open it: {exc}") from exc
    meta = session.get_modelmeta().custom_metadata_map
    inputs = session.get_inputs()
    if meta.get(ONNX_SCHEMA_KEY):
        import orjson

        schema = schema_from_json(orjson.loads(meta[ONNX_SCHEMA_KEY]))
    else:
        schema = _schema_from_onnx_inputs(inputs)
    feed = _onnx_feeder(inputs, schema)
    output_names = [o.name for o in session.get_outputs()]
    classes_meta = meta.get(ONNX_CLASSES_KEY)
    classes = classes_meta.split(",") if classes_meta else None

    def predict_rows(rows: Sequence[Row]) -> list[Output]:
        results = session.run(None, feed(rows))
        by_name = dict(zip(output_names, results, strict=True))
        proba = by_name.get("probabilities", by_name.get("output_probability"))
        labels = by_name.get("label", by_name.get("output_label"))
        if proba is not None:
            if isinstance(proba, list):  # ZipMap output: one {class: probability} per row
                keys = list(proba[0].keys()) if proba else []
                matrix = np.array([[p[k] for k in keys] for p in proba])
                return _classifier_outputs(keys, matrix)
            matrix = np.asarray(proba)
            if classes is None and labels is not None:
                # Without stored class names, the model's own label output names the decision.
                return [
                    {"decision": _plain(label), "probability": round(float(row.max()), 6)}
                    for label, row in zip(np.asarray(labels).reshape(-1), matrix, strict=True)
                ]
            return _classifier_outputs(classes or list(range(matrix.shape[1])), matrix)
        first = np.asarray(results[0]).reshape(len(rows), -1)
        return [{"prediction": _plain(v[0])} for v in first]

    has_proba = any(n in output_names for n in ("probabilities", "output_probability"))
    outputs = ("decision", "probability") if has_proba else ("prediction",)
    model = LoadedModel(
        name, version, path, "onnx", schema, outputs, predict_rows, "onnxruntime", "onnxruntime"
    )
    _smoke_test(model)
    return model


def _schema_from_onnx_inputs(inputs: Sequence[Any]) -> InputSchema:
    from servepath.model.schema import Feature, FeatureKind

    if len(inputs) == 1 and _width(inputs[0]) not in (None, 1):
        width = _width(inputs[0])
        assert width is not None
        return InputSchema(tuple(Feature(f"f{i}", "number") for i in range(width)))
    features = []
    for inp in inputs:
        kind: FeatureKind = "category" if "string" in inp.type else "number"
        features.append(Feature(inp.name, kind, None, "value" if kind == "category" else 0.0))
    return InputSchema(tuple(features))


def _width(inp: Any) -> int | None:
    shape = inp.shape
    if len(shape) == 2 and isinstance(shape[1], int):
        return int(shape[1])
    return None


def _onnx_feeder(inputs: Sequence[Any], schema: InputSchema) -> Callable[[Sequence[Row]], Any]:
    names = schema.names
    input_names = [i.name for i in inputs]
    if len(inputs) == 1 and input_names[0] not in names:
        dtype = np.float64 if "double" in inputs[0].type else np.float32
        only = input_names[0]

        def feed_matrix(rows: Sequence[Row]) -> dict[str, Any]:
            return {only: np.array([[r[n] for n in names] for r in rows], dtype=dtype)}

        return feed_matrix
    kinds = {i.name: i.type for i in inputs}

    def feed_columns(rows: Sequence[Row]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for n in input_names:
            t = kinds[n]
            if "string" in t:
                out[n] = np.array([[r[n]] for r in rows], dtype=object)
            elif "int64" in t:
                out[n] = np.array([[r[n]] for r in rows], dtype=np.int64)
            elif "double" in t:
                out[n] = np.array([[r[n]] for r in rows], dtype=np.float64)
            else:
                out[n] = np.array([[r[n]] for r in rows], dtype=np.float32)
        return out

    return feed_columns


def _smoke_test(model: LoadedModel) -> None:
    """Predict the schema's example once, so a broken artifact fails at load, not per request."""
    try:
        model.predict_rows([model.schema.example()])
    except Exception as exc:
        raise ModelLoadError(
            str(model.path), f"predicting the example instance failed: {type(exc).__name__}: {exc}"
        ) from exc
