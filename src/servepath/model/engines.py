"""The engines that can evaluate a model, each a function from clean rows to answers.

* ``sklearn`` — the model's own ``predict_proba``/``predict`` on a DataFrame: the reference
  every other engine must reproduce, and the engine of last resort.
* ``onnxruntime`` — the whole pipeline converted to ONNX (``model/convert.py``).
* ``treelite`` / ``xgboost`` / ``lightgbm`` / ``sklearn-numpy`` — a pipeline split in two:
  its preprocessing converted to ONNX (or, for a bare model, the columns as a matrix), its
  final estimator evaluated by treelite's GTIL, XGBoost's ``inplace_predict``, LightGBM on
  numpy, or scikit-learn itself on the matrix.

Which one serves is measured, not assumed: ``model/race.py``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from servepath.model.convert import convert_cached
from servepath.model.schema import InputSchema, Value
from servepath.model.sklearn_schema import FramePlan

log = logging.getLogger(__name__)

Row = dict[str, Value]
Task = Literal["proba", "label", "regression"]


@dataclass(frozen=True)
class Answers:
    """What an engine computed for a batch: class indices and probabilities, or values."""

    labels: np.ndarray | None = None  # (n,) indices into the classes
    proba: np.ndarray | None = None  # (n, classes)
    values: np.ndarray | None = None  # (n,) or (n, targets)


EngineFn = Callable[[Sequence[Row]], Answers]
Matrix = Callable[[Sequence[Row]], np.ndarray]


@dataclass(frozen=True)
class Candidate:
    name: str
    detail: str
    predict: EngineFn | None
    error: str | None = None  # why it could not be built
    convert_seconds: float = 0.0
    cached: bool = False


# --- turning rows into what an engine eats ---------------------------------------------


def frame_builder(plan: FramePlan) -> Callable[[Sequence[Row]], Any]:
    """Rows to the DataFrame the model was fitted on (dtypes as at fit time)."""
    import pandas as pd

    def floats(values: list[Any]) -> Any:
        return np.array(values, dtype=np.float64)

    def objects(values: list[Any]) -> Any:
        # JSON null becomes NaN, as pandas makes it of a missing string in a DataFrame built
        # from records: imputers and encoders see the missing value they were fitted on
        return np.array([np.nan if v is None else v for v in values], dtype=object)

    def categorical(cats: list[Any]) -> Callable[[list[Any]], Any]:
        return lambda values: pd.Categorical(values, categories=cats)

    builders: list[tuple[str, Callable[[list[Any]], Any]]] = []
    for name, dtype in zip(plan.columns, plan.dtypes, strict=True):
        if dtype == "float":
            builders.append((name, floats))
        elif dtype == "int":
            builders.append((name, _int_column))
        elif dtype == "category":
            builders.append((name, categorical(list(plan.categories.get(name, ())))))
        else:
            builders.append((name, objects))

    def frame(rows: Sequence[Row]) -> Any:
        return pd.DataFrame(
            {name: build([r.get(name) for r in rows]) for name, build in builders}, copy=False
        )

    return frame


def _int_column(values: list[Any]) -> np.ndarray:
    if any(v is None for v in values):
        return np.array(values, dtype=np.float64)
    return np.array(values, dtype=np.int64)


def onnx_feeder(session: Any) -> Callable[[Sequence[Row]], dict[str, np.ndarray]]:
    """Rows to one (n, 1) tensor per ONNX input, typed as the input declares."""
    makers: list[tuple[str, Any]] = []
    for inp in session.get_inputs():
        t = inp.type
        if "string" in t:
            dtype: Any = object
        elif "double" in t:
            dtype = np.float64
        elif "float" in t:
            dtype = np.float32
        elif "int64" in t:
            dtype = np.int64
        elif "bool" in t:
            dtype = np.bool_
        else:
            raise ValueError(f"ONNX input {inp.name!r} has type {t}, which servepath cannot feed")
        makers.append((inp.name, dtype))

    def feed(rows: Sequence[Row]) -> dict[str, np.ndarray]:
        n = len(rows)
        out = {}
        for name, dtype in makers:
            values = [r.get(name) for r in rows]
            if dtype is object:
                values = ["" if v is None else v for v in values]
            out[name] = np.array(values, dtype=dtype).reshape(n, 1)
        return out

    return feed


def onnx_session(model: bytes | str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


# --- the reference ----------------------------------------------------------------------


def sklearn_engine(
    estimator: Any, plan: FramePlan, task: Task, classes: list[Any], argmax_is_predict: bool
) -> EngineFn:
    frame = frame_builder(plan)
    index = {_key(c): i for i, c in enumerate(classes)}

    if task == "proba":
        if argmax_is_predict:

            def proba_only(rows: Sequence[Row]) -> Answers:
                p = np.asarray(estimator.predict_proba(frame(rows)), dtype=np.float64)
                return Answers(labels=p.argmax(axis=1), proba=p)

            return proba_only

        def proba_and_label(rows: Sequence[Row]) -> Answers:
            x = frame(rows)
            p = np.asarray(estimator.predict_proba(x), dtype=np.float64)
            labels = np.array([index[_key(v)] for v in np.asarray(estimator.predict(x))])
            return Answers(labels=labels, proba=p)

        return proba_and_label
    if task == "label":

        def label(rows: Sequence[Row]) -> Answers:
            predicted = np.asarray(estimator.predict(frame(rows)))
            return Answers(labels=np.array([index[_key(v)] for v in predicted]))

        return label

    def regression(rows: Sequence[Row]) -> Answers:
        return Answers(values=np.asarray(estimator.predict(frame(rows)), dtype=np.float64))

    return regression


def _key(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# --- ONNX ------------------------------------------------------------------------------


def onnx_answers(
    session: Any, task: Task, classes: list[Any]
) -> Callable[[dict[str, np.ndarray], int], Answers]:
    """Read a converted model's outputs: label and probabilities, or the prediction."""
    names = [o.name for o in session.get_outputs()]
    index = {_key(c): i for i, c in enumerate(classes)}
    str_index = {str(c): i for i, c in enumerate(classes)}

    def labels_of(raw: Any) -> np.ndarray:
        flat = np.asarray(raw).reshape(-1)
        out = np.empty(len(flat), dtype=np.intp)
        for i, v in enumerate(flat):
            v = _key(v)
            j = index.get(v)
            if j is None:
                j = str_index[str(v)]
            out[i] = j
        return out

    if task == "regression":

        def regression(feed: dict[str, np.ndarray], n: int) -> Answers:
            first = np.asarray(session.run(None, feed)[0], dtype=np.float64)
            return Answers(values=first.reshape(n) if first.size == n else first.reshape(n, -1))

        return regression
    label_name = names[0]
    proba_name = names[1] if len(names) > 1 else None

    def classify(feed: dict[str, np.ndarray], n: int) -> Answers:
        results = session.run(None, feed)
        by_name = dict(zip(names, results, strict=True))
        proba = None
        if task == "proba" and proba_name is not None:
            proba = np.asarray(by_name[proba_name], dtype=np.float64).reshape(n, -1)
        return Answers(labels=labels_of(by_name[label_name]), proba=proba)

    return classify


def onnx_engine(
    session: Any, task: Task, classes: list[Any], columns: Matrix | None = None
) -> EngineFn:
    """``columns``: feed the model's one input with this matrix instead of one per column."""
    read = onnx_answers(session, task, classes)
    if columns is not None:
        only = session.get_inputs()[0].name
        dtype = np.float64 if "double" in session.get_inputs()[0].type else np.float32

        def predict_matrix(rows: Sequence[Row]) -> Answers:
            return read({only: columns(rows).astype(dtype, copy=False)}, len(rows))

        return predict_matrix
    feed = onnx_feeder(session)

    def predict(rows: Sequence[Row]) -> Answers:
        return read(feed(rows), len(rows))

    return predict


# --- split engines: preprocessing, then the final estimator ----------------------------


def onnx_matrix(session: Any) -> Matrix:
    feed = onnx_feeder(session)
    output = session.get_outputs()[0].name

    def matrix(rows: Sequence[Row]) -> np.ndarray:
        return np.asarray(session.run([output], feed(rows))[0])

    return matrix


def column_matrix(plan: FramePlan, schema: InputSchema) -> Matrix | None:
    """Rows as a float64 matrix, for a bare model on numeric (or pandas-categorical) columns.

    A categorical column becomes its category code, as LightGBM encodes it (NaN when missing
    or unknown). None when some column is a string the model reads as such.
    """
    kinds = {f.name: f.kind for f in schema.features}

    def number(value: Any) -> float:
        return np.nan if value is None else float(value)

    def coder(codes: dict[Any, float]) -> Callable[[Any], float]:
        return lambda value: codes.get(value, np.nan)

    getters: list[Callable[[Any], float]] = []
    for name, dtype in zip(plan.columns, plan.dtypes, strict=True):
        if dtype == "category":
            cats = plan.categories.get(name, ())
            getters.append(coder({c: float(i) for i, c in enumerate(cats)}))
        elif dtype in ("float", "int") and kinds[name] == "number":
            getters.append(number)
        else:
            return None
    columns = plan.columns

    def matrix(rows: Sequence[Row]) -> np.ndarray:
        return np.array(
            [[get(r.get(c)) for c, get in zip(columns, getters, strict=True)] for r in rows],
            dtype=np.float64,
        )

    return matrix


def _two_classes(p: np.ndarray, n: int, width: int) -> np.ndarray:
    p = p.reshape(n, -1)
    if p.shape[1] == 1 and width == 2:
        p = np.hstack([1.0 - p, p])
    return p


def final_engines(
    final: Any, task: Task, classes: list[Any], argmax_is_predict: bool = True
) -> list[tuple[str, str, Callable[[np.ndarray], Answers]]]:
    """Evaluators of a final estimator on its input matrix: (name, detail, fn)."""
    out: list[tuple[str, str, Callable[[np.ndarray], Answers]]] = []
    width = len(classes)
    module = type(final).__module__.split(".")[0]

    def wrap(p: np.ndarray) -> Answers:
        if task == "regression":
            return Answers(values=np.asarray(p, dtype=np.float64).reshape(p.shape[0], -1)[:, 0])
        proba = _two_classes(np.asarray(p, dtype=np.float64), p.shape[0], width)
        return Answers(labels=proba.argmax(axis=1), proba=proba)

    if module == "xgboost" and hasattr(final, "get_booster"):
        booster = final.get_booster()
        booster.set_param({"nthread": 1})

        def xgb(x: np.ndarray) -> Answers:
            return wrap(booster.inplace_predict(x.astype(np.float32, copy=False)))

        out.append(("xgboost", "inplace_predict on float32", xgb))
    if module == "lightgbm" and hasattr(final, "booster_"):
        lgb_booster = final.booster_

        def lgb(x: np.ndarray) -> Answers:
            return wrap(lgb_booster.predict(x, num_threads=1))

        out.append(("lightgbm", "Booster.predict on float64", lgb))
    tl = _treelite_model(final, module)
    if tl is not None:
        import treelite.gtil

        tl_model, dtype = tl
        unknown_as_nan = _unknown_categories_as_nan(final)

        def gtil(x: np.ndarray) -> Answers:
            if dtype == "float32-as-float64":
                x = x.astype(np.float32).astype(np.float64)  # sklearn's trees: float32(x)
            elif dtype == "float32":
                x = x.astype(np.float32)
            else:
                x = x.astype(np.float64, copy=False)
            if unknown_as_nan is not None:
                x = unknown_as_nan(x)
            return wrap(treelite.gtil.predict(tl_model, x, nthread=1))

        out.append(("treelite", "GTIL", gtil))
    if task != "label":
        index = {_key(c): i for i, c in enumerate(classes)}

        def sk(x: np.ndarray) -> Answers:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "X does not have feature names"
                if task == "regression":
                    return Answers(values=np.asarray(final.predict(x), dtype=np.float64))
                proba = np.asarray(final.predict_proba(x), dtype=np.float64)
                if argmax_is_predict:
                    return Answers(labels=proba.argmax(axis=1), proba=proba)
                predicted = np.asarray(final.predict(x))
            return Answers(labels=np.array([index[_key(v)] for v in predicted]), proba=proba)

        out.append(("sklearn-numpy", f"{type(final).__name__} on the matrix", sk))
    return out


def _treelite_model(final: Any, module: str) -> tuple[Any, str] | None:
    """A treelite model of ``final`` and the dtype its inputs are compared in, or None."""
    try:
        import treelite
        import treelite.sklearn
    except ImportError:
        return None
    try:
        if module == "xgboost" and hasattr(final, "get_booster"):
            return treelite.frontend.from_xgboost(final.get_booster()), "float32"
        if module == "lightgbm" and hasattr(final, "booster_"):
            return treelite.frontend.from_lightgbm(final.booster_), "float64"
        if module == "sklearn":
            from sklearn.ensemble import (
                HistGradientBoostingClassifier,
                HistGradientBoostingRegressor,
            )

            if isinstance(final, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
                # treelite applies HistGradientBoosting's own category encoding; where the
                # categories are strings, the matrix holds their index instead (column_matrix)
                return treelite.sklearn.import_model(_string_categories_as_codes(final)), "float64"
            return treelite.sklearn.import_model(final), "float32-as-float64"
    except Exception as exc:  # not a tree ensemble treelite knows
        log.debug("treelite cannot import %s: %s", type(final).__name__, exc)
    return None


def _unknown_categories_as_nan(final: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """HistGradientBoosting treats a category it never saw as missing; treelite would not."""
    pre = getattr(final, "_preprocessor", None)
    known: list[tuple[int, np.ndarray]] = []
    for name, transformer, selector in getattr(pre, "transformers_", []):
        if name != "encoder":
            continue
        items = list(selector)
        if items and all(isinstance(i, bool | np.bool_) for i in items):
            columns = [i for i, keep in enumerate(items) if keep]
        else:
            columns = [int(i) for i in items]
        for j, cats in zip(columns, transformer.categories_, strict=True):
            values = np.asarray(cats)
            if values.dtype.kind in "fiu":
                known.append((j, values[~np.isnan(values.astype(np.float64))]))
    if not known:
        return None

    def apply(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        for j, values in known:
            x[~np.isin(x[:, j], values), j] = np.nan
        return x

    return apply


def _string_categories_as_codes(final: Any) -> Any:
    pre = getattr(final, "_preprocessor", None)
    encoders = [t for name, t, _ in getattr(pre, "transformers_", []) if name == "encoder"]
    if not encoders or all(
        np.asarray(c).dtype.kind in "fiu" for c in getattr(encoders[0], "categories_", [])
    ):
        return final
    import copy

    clone = copy.deepcopy(final)
    for name, transformer, _ in clone._preprocessor.transformers_:
        if name == "encoder":
            transformer.categories_ = [
                np.arange(len(c), dtype=np.float64) for c in transformer.categories_
            ]
    return clone


# --- building the candidates -------------------------------------------------------------


def sklearn_candidates(
    estimator: Any,
    schema: InputSchema,
    plan: FramePlan,
    task: Task,
    classes: list[Any],
    *,
    digest: str,
    cache_dir: Path | None,
    argmax_is_predict: bool = True,
) -> list[Candidate]:
    """Every engine that might reproduce ``estimator``, built; the reference is not included."""
    from sklearn.pipeline import Pipeline

    candidates: list[Candidate] = []
    bare = not isinstance(estimator, Pipeline)
    columns = column_matrix(plan, schema) if bare else None
    for precision in ("double", "float"):
        conv = convert_cached(
            estimator,
            schema,
            part="whole",
            precision=precision,
            digest=digest,
            cache_dir=cache_dir,
            single_input=columns is not None,
        )
        detail = f"skl2onnx, whole model, {'float64' if precision == 'double' else 'float32'}"
        name = "onnxruntime" if precision == "double" else "onnxruntime-float32"
        candidates.append(_onnx_candidate(name, detail, conv, task, classes, columns))
        if conv.onnx is not None and precision == "double":
            break  # float32 only where float64 does not convert

    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    matrix: Matrix | None = None
    prep_detail = ""
    prep_seconds, prep_cached = 0.0, False
    if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
        conv = convert_cached(
            estimator, schema, part="prep", precision="double", digest=digest, cache_dir=cache_dir
        )
        prep_seconds, prep_cached = conv.seconds, conv.cached
        if conv.onnx is not None:
            try:
                matrix = onnx_matrix(onnx_session(conv.onnx))
                prep_detail = "preprocessing in onnxruntime"
            except Exception as exc:
                prep_detail = f"preprocessing does not run in onnxruntime: {exc}"
        else:
            prep_detail = f"preprocessing does not convert: {conv.error}"
    elif bare:
        matrix = columns
        prep_detail = "columns as a matrix" if matrix is not None else "string columns"
    engines = final_engines(final, task, classes, argmax_is_predict) if final is not None else []
    for name, detail, fn in engines:
        if matrix is None:
            candidates.append(Candidate(name, detail, None, prep_detail or "no preprocessing"))
            continue
        candidates.append(
            Candidate(
                name,
                f"{detail}; {prep_detail}",
                _compose(matrix, fn),
                None,
                prep_seconds,
                prep_cached,
            )
        )
    compiled = _compiled_candidate(estimator, task, classes)
    if compiled is not None:
        candidates.append(compiled)
    return candidates


def _compose(matrix: Matrix, fn: Callable[[np.ndarray], Answers]) -> EngineFn:
    def predict(rows: Sequence[Row]) -> Answers:
        return fn(matrix(rows))

    return predict


def _onnx_candidate(
    name: str, detail: str, conv: Any, task: Task, classes: list[Any], columns: Matrix | None
) -> Candidate:
    if conv.onnx is None:
        return Candidate(name, detail, None, f"does not convert: {conv.error}", conv.seconds)
    try:
        session = onnx_session(conv.onnx)
        fn = onnx_engine(session, task, classes, columns)
    except Exception as exc:
        return Candidate(name, detail, None, f"onnxruntime cannot run it: {exc}", conv.seconds)
    return Candidate(name, detail, fn, None, conv.seconds, conv.cached)


def _compiled_candidate(estimator: Any, task: Task, classes: list[Any]) -> Candidate | None:
    from servepath.model.compiled import NotCompilable, compile_pipeline

    if task != "proba":
        return None
    try:
        compiled = compile_pipeline(estimator)
    except NotCompilable:
        return None
    except Exception as exc:
        return Candidate("compiled", "servepath's evaluator", None, str(exc))
    fn = compiled.predict_proba

    def predict(rows: Sequence[Row]) -> Answers:
        p = fn(rows)  # type: ignore[arg-type]  # its rows never hold None: no nullable input
        return Answers(labels=p.argmax(axis=1), proba=p)

    return Candidate("compiled", f"servepath's evaluator: {compiled.description}", predict)
