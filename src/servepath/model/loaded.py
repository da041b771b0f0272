"""Load a model artifact (joblib or ONNX), choose its engine, and predict with it.

A joblib artifact is any scikit-learn estimator or pipeline fitted on a DataFrame, XGBoost
and LightGBM models (their scikit-learn classes) included. At load, every engine that might
evaluate it (``model/engines.py``) is built and must reproduce the model's own answers on
probe rows; the fastest of those for one row and for a 64-row batch serves
(``model/race.py``). The report of that race is ``LoadedModel.report``.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from servepath.errors import ModelLoadError
from servepath.model import race_cache
from servepath.model.convert import file_digest
from servepath.model.engines import (
    Answers,
    Candidate,
    EngineFn,
    Task,
    onnx_answers,
    onnx_feeder,
    onnx_session,
    sklearn_candidates,
    sklearn_engine,
)
from servepath.model.race import (
    BATCH,
    PROBE_ROWS,
    Choice,
    Trial,
    choose,
    probe_rows,
    time_engines,
    verify,
)
from servepath.model.schema import Feature, InputSchema, Value
from servepath.model.schema_file import SchemaSource, near_misses, schema_file_for
from servepath.model.source import artifact_name, unpickling_failure

log = logging.getLogger(__name__)

Row = dict[str, Value]
Output = dict[str, Any]
#: ONNX metadata keys servepath reads (documented in docs/models.md).
from servepath.model.onnx_schema import CLASSES_KEY as ONNX_CLASSES_KEY  # noqa: E402
from servepath.model.onnx_schema import OUTPUTS_KEY as ONNX_OUTPUTS_KEY  # noqa: E402
from servepath.model.onnx_schema import SCHEMA_KEY as ONNX_SCHEMA_KEY  # noqa: E402

__all__ = [
    "ONNX_CLASSES_KEY",
    "ONNX_OUTPUTS_KEY",
    "ONNX_SCHEMA_KEY",
    "EngineReport",
    "LoadedModel",
    "load_model",
]

#: A model whose 64-row batch costs less than this runs on the event loop (see MicroBatcher).
INLINE_BATCH_MS = 1.0
#: Where in the data directory conversions are kept, by the artifact's content hash.
ENGINES_SUBDIR = "engines"


def engines_dir(data_dir: Path) -> Path:
    return data_dir / ENGINES_SUBDIR


@dataclass(frozen=True)
class EngineReport:
    """Which engine serves, why the others do not, and what each costs."""

    choice: Choice
    trials: tuple[Trial, ...]
    reference: str
    load_seconds: float = 0.0
    #: When the race was run (unix time); None: no race (an ONNX artifact).
    raced_at: float | None = None
    #: The race's outcome was read from the cache (:mod:`servepath.model.race_cache`).
    from_cache: bool = False

    def race_line(self) -> str | None:
        """Whether the race ran now or was read from the cache, and when it ran."""
        if self.raced_at is None:
            return None
        if not self.from_cache:
            return "engine race: run now (kept in the cache for the next load)"
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.raced_at))
        return f"engine race: cached (from {when})"

    @property
    def serving(self) -> Trial | None:
        return next((t for t in self.trials if t.name == self.choice.small), None)

    @property
    def largest_difference(self) -> float:
        served = {self.choice.small, self.choice.large}
        values = [t.disagreement or 0.0 for t in self.trials if t.name in served]
        return max(values, default=0.0)

    def summary(self) -> str:
        """One line: the engine, its cost, its largest disagreement."""
        c = self.choice
        head = c.small if c.small == c.large else f"{c.small} below {c.crossover} rows, {c.large}"
        trials = {t.name: t for t in self.trials}
        small, large = trials.get(c.small), trials.get(c.large)
        one = small.one_row_ms if small else None
        batch = large.batch_ms if large else None
        cost = ""
        if one is not None and batch is not None:
            cost = f"; 1 row {one:.3f} ms, {BATCH} rows {batch:.3f} ms"
        return f"{head}{cost}; max |Δ| {self.largest_difference:.1e} against {self.reference}"

    def lines(self) -> list[str]:
        """The summary, then one line per engine with its verdict."""
        took = f"; loaded in {self.load_seconds:.2f} s" if self.load_seconds else ""
        out = [f"served by {self.summary()}{took}"]
        race = self.race_line()
        if race is not None:
            out.append(race)
        for t in self.trials:
            cost = ""
            if t.one_row_ms is not None and t.batch_ms is not None:
                cost = f"1 row {t.one_row_ms:.3f} ms, {BATCH} rows {t.batch_ms:.3f} ms; "
            diff = f"max |Δ| {t.disagreement:.1e}; " if t.disagreement is not None else ""
            conv = ""
            if t.cached:
                conv = "; conversion from the cache"
            elif t.convert_seconds >= 0.01:
                conv = f"; converted in {t.convert_seconds:.2f} s"
            role = "serves" if t.name in (self.choice.small, self.choice.large) else "not chosen"
            verdict = t.verdict if not t.agrees else ("slower" if role == "not chosen" else "")
            detail = f"{role}: {cost}{diff}{verdict}".rstrip("; ").rstrip(":")
            out.append(f"  {t.name:<20} {detail} ({t.detail}){conv}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "choice": self.choice.to_json(),
            "reference": self.reference,
            "largest_difference": self.largest_difference,
            "load_seconds": round(self.load_seconds, 3),
            "race": {
                "cached": self.from_cache,
                "raced_at": None
                if self.raced_at is None
                else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.raced_at)),
            },
            "trials": [t.to_json() for t in self.trials],
        }


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
    engine: str = "sklearn"
    engine_note: str = ""  # one line: which engine, its cost, its largest disagreement
    report: EngineReport | None = None
    task: Task = "proba"
    classes: tuple[Any, ...] = ()
    #: the model answers fast enough to run on the event loop rather than the model thread
    inline: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    #: Where the input schema came from (a file, the ONNX metadata or graph, the model).
    schema_source: SchemaSource = field(default_factory=lambda: SchemaSource("model"))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "engine": self.engine,
        }

    @property
    def output_kind(self) -> str:
        """JSON type of ``decision``: string, integer, number or boolean."""
        return _label_kind(self.classes)


def _label_kind(classes: Sequence[Any]) -> str:
    if classes and all(isinstance(c, bool) for c in classes):
        return "boolean"
    if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "integer"
    if classes and all(isinstance(c, int | float) and not isinstance(c, bool) for c in classes):
        return "number"
    return "string"


def load_model(
    path: Path,
    name: str | None = None,
    *,
    cache_dir: Path | None = None,
    schema_path: Path | None = None,
    probabilities: bool = False,
    race_budget_s: float = 1.0,
) -> LoadedModel:
    """Load ``path`` by its suffix: ``.onnx`` through onnxruntime, anything else with joblib.

    ``cache_dir``: where conversions are kept between runs (the data directory's
    ``engines/``); None converts at every load. ``schema_path``: a JSON schema for the inputs
    (``InputSchema.to_json()``), which wins over what the model says; without one, the
    artifact's file name + ``.schema.json`` beside it is read when present
    (:mod:`servepath.model.schema_file`). ``probabilities``:
    every answer also carries ``probabilities``, one per class.
    """
    start = time.perf_counter()
    if not path.exists():
        raise ModelLoadError(str(path), "no such file")
    if not path.is_file():
        raise ModelLoadError(str(path), "not a regular file")
    model_name = name or _name_from_path(path)
    digest = file_digest(path)
    version = digest[:12]
    schema_json, schema_file = _read_schema_file(path, schema_path)
    misses = near_misses(path) if schema_file is None else ()
    try:
        if path.suffix.lower() == ".onnx":
            model = _load_onnx(path, model_name, version, schema_json, probabilities)
        else:
            model = _load_sklearn(
                path,
                model_name,
                version,
                digest,
                cache_dir,
                schema_json,
                probabilities,
                race_budget_s,
                start,
            )
    except ModelLoadError as exc:
        note = SchemaSource("model", misnamed=misses).note(path)
        if note is None:
            raise
        # A load that failed for want of a schema may have had one under another name.
        raise ModelLoadError(exc.path, f"{exc.reason} ({note})") from exc
    if schema_file is not None:
        model = replace(model, schema_source=SchemaSource("file", schema_file))
    elif misses:
        model = replace(model, schema_source=replace(model.schema_source, misnamed=misses))
    _smoke_test(model)
    note = model.schema_source.note(path)
    if note is not None:
        log.warning("model %s: %s", model.name, note)
    for line in model.report.lines() if model.report else [model.engine_note]:
        log.info("model %s: %s", model.name, line)
    return model


def _read_schema_file(path: Path, given: Path | None) -> tuple[Any, Path | None]:
    """The schema file's JSON and its path: ``given``, else the artifact's own schema file
    when it exists; (None, None) when there is none."""
    import orjson

    candidate = given if given is not None else schema_file_for(path)
    if given is None and not candidate.is_file():
        return None, None
    try:
        return orjson.loads(candidate.read_bytes()), candidate
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ModelLoadError(str(path), f"cannot read the schema file {candidate}: {exc}") from exc


def _name_from_path(path: Path) -> str:
    return artifact_name(path.as_posix())


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def output_names(task: Task, probabilities: bool) -> tuple[str, ...]:
    if task == "regression":
        return ("prediction",)
    if task == "label":
        return ("decision",)
    return (
        ("decision", "probability", "probabilities")
        if probabilities
        else ("decision", "probability")
    )


def formatter(
    task: Task, classes: Sequence[Any], probabilities: bool
) -> Callable[[Answers, int], list[Output]]:
    """Answers to the JSON-ready outputs, one dict per row."""
    labels = [_plain(c) for c in classes]
    keys = [str(c) for c in labels]

    if task == "regression":

        def regression(a: Answers, n: int) -> list[Output]:
            assert a.values is not None
            values = a.values.reshape(n, -1)
            if values.shape[1] == 1:
                return [{"prediction": float(v)} for v in values[:, 0]]
            return [{"prediction": [float(x) for x in v]} for v in values]

        return regression
    if task == "label":

        def label(a: Answers, n: int) -> list[Output]:
            assert a.labels is not None
            return [{"decision": labels[j]} for j in a.labels.tolist()]

        return label

    def proba(a: Answers, n: int) -> list[Output]:
        assert a.labels is not None and a.proba is not None
        p = a.proba.tolist()
        idx = a.labels.tolist()
        if probabilities:
            return [
                {
                    "decision": labels[j],
                    "probability": row[j],
                    "probabilities": dict(zip(keys, row, strict=True)),
                }
                for j, row in zip(idx, p, strict=True)
            ]
        return [
            {"decision": labels[j], "probability": row[j]} for j, row in zip(idx, p, strict=True)
        ]

    return proba


def _dispatch(
    engines: dict[str, EngineFn], choice: Choice, fmt: Callable[[Answers, int], list[Output]]
) -> Callable[[Sequence[Row]], list[Output]]:
    small = engines[choice.small]
    if choice.small == choice.large or choice.crossover is None:

        def one(rows: Sequence[Row]) -> list[Output]:
            return fmt(small(rows), len(rows))

        return one
    large = engines[choice.large]
    crossover = choice.crossover

    def two(rows: Sequence[Row]) -> list[Output]:
        engine = small if len(rows) < crossover else large
        return fmt(engine(rows), len(rows))

    return two


# --- scikit-learn -------------------------------------------------------------------


def _load_sklearn(
    path: Path,
    name: str,
    version: str,
    digest: str,
    cache_dir: Path | None,
    schema_json: Any,
    probabilities: bool,
    race_budget_s: float,
    start: float,
) -> LoadedModel:
    import joblib

    from servepath.model.schema import schema_from_json
    from servepath.model.sklearn_schema import FramePlan, examples_from_splits, inspect_sklearn

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # version-mismatch warnings: the probes decide
            estimator = joblib.load(path)
    except Exception as exc:  # joblib raises anything unpickling can raise
        raise ModelLoadError(str(path), unpickling_failure(exc)) from exc
    if not hasattr(estimator, "predict"):
        raise ModelLoadError(str(path), f"{type(estimator).__name__} has no predict()")
    try:
        schema, plan = inspect_sklearn(estimator)
        schema = examples_from_splits(estimator, schema, plan)
        if schema_json is not None:
            given = schema_from_json(schema_json)
            if set(given.names) != set(schema.names):
                raise ValueError(
                    f"the schema file names {sorted(given.names)}, the model was fitted on "
                    f"{sorted(schema.names)}"
                )
            order = {n: i for i, n in enumerate(schema.names)}
            schema = InputSchema(tuple(sorted(given.features, key=lambda f: order[f.name])))
            plan = FramePlan(
                plan.columns,
                tuple(
                    "object" if f.kind != "number" and d != "category" else d
                    for f, d in zip(schema.features, plan.dtypes, strict=True)
                ),
                plan.categories,
                plan.unset_examples,
                plan.functions,
            )
    except ValueError as exc:
        raise ModelLoadError(str(path), str(exc)) from exc
    classes_attr = getattr(estimator, "classes_", None)
    if classes_attr is not None and not isinstance(classes_attr, np.ndarray):
        raise ModelLoadError(str(path), "multi-output classifiers are not supported")
    classes = [_plain(c) for c in classes_attr] if classes_attr is not None else []
    task: Task
    if classes_attr is None:
        task = "regression"
    elif hasattr(estimator, "predict_proba"):
        task = "proba"
    else:
        task = "label"

    from servepath.model.engines import frame_builder

    frame = frame_builder(plan)
    # Probing asks the model about rows it may not take (a log of a negative number, a
    # missing value): the model's RuntimeWarnings there are answers, not news for the user.
    quiet = contextlib.ExitStack()
    quiet.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    quiet.enter_context(np.errstate(all="ignore"))
    with quiet:
        return _race_sklearn(
            estimator, path, name, version, digest, cache_dir, schema, plan, frame, task,
            classes, probabilities, race_budget_s, start,
        )  # fmt: skip


def _race_sklearn(
    estimator: Any,
    path: Path,
    name: str,
    version: str,
    digest: str,
    cache_dir: Path | None,
    schema: InputSchema,
    plan: Any,
    frame: Callable[[Sequence[Row]], Any],
    task: Task,
    classes: list[Any],
    probabilities: bool,
    race_budget_s: float,
    start: float,
) -> LoadedModel:
    schema = _find_nullable(estimator, schema, frame, task)

    def build(argmax_is_predict: bool) -> list[Candidate]:
        reference = Candidate(
            "sklearn",
            f"{type(estimator).__name__}.{'predict_proba' if task == 'proba' else 'predict'} "
            "on a DataFrame",
            sklearn_engine(estimator, plan, task, classes, argmax_is_predict),
        )
        return [
            reference,
            *sklearn_candidates(
                estimator,
                schema,
                plan,
                task,
                classes,
                digest=digest,
                cache_dir=cache_dir,
                argmax_is_predict=argmax_is_predict,
            ),
        ]

    def probe(count: int) -> tuple[list[Row], Answers, bool]:
        try:
            return _probe(estimator, schema, frame, task, classes, plan.positive, count)
        except Exception as exc:
            raise ModelLoadError(
                str(path),
                f"the model cannot predict its own example instance: {type(exc).__name__}: {exc}",
            ) from exc

    key = race_cache.race_key(digest, schema.to_json(), {"task": task})
    kept = race_cache.read(cache_dir, digest, key)
    found = None
    if kept is not None:
        # The kept race is checked on a few probe rows, not all of them: the rows' reference
        # answers are what a full probe costs most.
        rows, want, _ = probe(race_cache.CHECK_ROWS)
        found = _reuse_race(kept, build(kept.argmax_is_predict), want, rows, start)
    if found is not None:
        report, engines = found
    else:
        rows, want, argmax_is_predict = probe(PROBE_ROWS)
        candidates = build(argmax_is_predict)
        report, engines = _race(candidates, want, rows, "scikit-learn", race_budget_s, start)
        raced_at = report.raced_at or time.time()
        race = race_cache.CachedRace(report.choice, report.trials, raced_at, argmax_is_predict)
        race_cache.write(cache_dir, digest, key, race)
    fmt = formatter(task, classes, probabilities or _asks_probabilities(estimator))
    predict_rows = _dispatch(engines, report.choice, fmt)
    outputs = output_names(task, probabilities or _asks_probabilities(estimator))
    batch_ms = next((t.batch_ms for t in report.trials if t.name == report.choice.large), None)
    engine = report.choice.small
    if report.choice.large != report.choice.small:
        engine = f"{report.choice.small}+{report.choice.large}"
    return LoadedModel(
        name,
        version,
        path,
        "sklearn",
        schema,
        outputs,
        predict_rows,
        engine,
        report.summary(),
        report,
        task,
        tuple(classes),
        inline=batch_ms is not None and batch_ms < INLINE_BATCH_MS,
    )


def _asks_probabilities(estimator: Any) -> bool:
    wanted = getattr(estimator, "servepath_outputs_", None) or ()
    return "probabilities" in wanted


def _probe(
    estimator: Any,
    schema: InputSchema,
    frame: Callable[[Sequence[Row]], Any],
    task: Task,
    classes: list[Any],
    positive: frozenset[str] = frozenset(),
    count: int = PROBE_ROWS,
) -> tuple[list[Row], Answers, bool]:
    """``count`` probe rows and the model's own answers for them. Rows the model itself
    refuses (a value its FunctionTransformer cannot take, say) are left out; the example must
    pass."""
    rows = probe_rows(schema, count, positive=positive)
    try:
        want, argmax = _reference_answers(estimator, frame(rows), task, classes)
        return rows, want, argmax
    except Exception:
        pass
    kept = []
    for i, row in enumerate(rows):
        try:
            _reference_answers(estimator, frame([row]), task, classes)
        except Exception:
            if i == 0:
                raise
            continue
        kept.append(row)
    want, argmax = _reference_answers(estimator, frame(kept), task, classes)
    return kept, want, argmax


def _reference_answers(
    estimator: Any, frame: Any, task: Task, classes: list[Any]
) -> tuple[Answers, bool]:
    index = {c: i for i, c in enumerate(classes)}
    if task == "regression":
        return Answers(values=np.asarray(estimator.predict(frame), dtype=np.float64)), False
    predicted = [_plain(v) for v in np.asarray(estimator.predict(frame))]
    labels = np.array([index[v] for v in predicted], dtype=np.intp)
    if task == "label":
        return Answers(labels=labels), False
    proba = np.asarray(estimator.predict_proba(frame), dtype=np.float64)
    return Answers(labels=labels, proba=proba), bool((proba.argmax(axis=1) == labels).all())


def _find_nullable(
    estimator: Any, schema: InputSchema, frame: Callable[[Sequence[Row]], Any], task: Task
) -> InputSchema:
    """Mark the features the model accepts a missing value for, by trying one.

    A model may say instead: ``servepath_nullable_``, the names of the fields that take null
    (``()``: none, as for a model whose training data had no missing values)."""
    declared = getattr(estimator, "servepath_nullable_", None)
    if declared is not None:
        allowed = {str(n) for n in declared}
        return InputSchema(
            tuple(
                Feature(f.name, f.kind, f.categories, f.example, f.closed, f.name in allowed)
                for f in schema.features
            )
        )
    example = schema.example()
    call = estimator.predict_proba if task == "proba" else estimator.predict
    candidates = [f for f in schema.used if not f.nullable][:300]

    def accepts(rows: list[Row]) -> bool:
        try:
            result = np.asarray(call(frame(rows)))
        except Exception:
            return False
        return task == "label" or bool(np.isfinite(result.astype(np.float64)).all())

    # One call tries every field at once (one row each); only if the model refuses one of
    # them is each tried alone.
    everyone = accepts([{**example, f.name: None} for f in candidates]) if candidates else False
    taking = {f.name for f in candidates} if everyone else set()
    if candidates and not everyone:
        taking = {f.name for f in candidates if accepts([{**example, f.name: None}])}
    features = []
    for f in schema.features:
        nullable = f.nullable or f.name in taking
        features.append(
            Feature(f.name, f.kind, f.categories, f.example, f.closed, nullable)
            if nullable != f.nullable
            else f
        )
    return InputSchema(tuple(features))


def _race(
    candidates: list[Candidate],
    want: Answers,
    rows: list[Row],
    reference_label: str,
    budget_s: float,
    start: float,
) -> tuple[EngineReport, dict[str, EngineFn]]:
    # The reference is what the others are measured against: it agrees by definition.
    first = candidates[0]
    trials = [Trial(first.name, first.detail, disagreement=0.0)]
    trials += [verify(c, want, rows) for c in candidates[1:]]
    agreeing = {
        c.name: c.predict
        for c, t in zip(candidates, trials, strict=True)
        if t.agrees and c.predict is not None
    }
    timings = time_engines(agreeing, rows, budget_s=budget_s) if agreeing else {}
    timed = tuple(
        Trial(
            t.name,
            t.detail,
            t.error,
            t.disagreement,
            t.label_mismatches,
            timings[t.name][0] if t.name in timings else None,
            timings[t.name][1] if t.name in timings else None,
            t.convert_seconds,
            t.cached,
        )
        for t in trials
    )
    choice = choose(timed, candidates[0].name)
    report = EngineReport(
        choice, timed, reference_label, time.perf_counter() - start, raced_at=time.time()
    )
    return report, agreeing


def _reuse_race(
    kept: race_cache.CachedRace,
    candidates: list[Candidate],
    want: Answers,
    rows: list[Row],
    start: float,
) -> tuple[EngineReport, dict[str, EngineFn]] | None:
    """The kept race's report and engines, once the engines it chose reproduce the model's
    own answers again on the probe rows; None (race again) when one does not, or is gone."""
    built = {c.name: c for c in candidates}
    serving = {kept.choice.small, kept.choice.large}
    reference = candidates[0].name
    for name in serving - {reference}:
        candidate = built.get(name)
        if candidate is None or candidate.predict is None:
            return None
        if not verify(candidate, want, rows).agrees:
            log.info("the cached engine race chose %s, which no longer agrees: racing again", name)
            return None
    engines = {
        t.name: fn
        for t in kept.trials
        if t.agrees and t.name in built and (fn := built[t.name].predict) is not None
    }
    if not serving <= set(engines):
        return None
    # The verdicts and costs are the kept race's; how each conversion was had is this load's.
    trials = tuple(
        replace(t, convert_seconds=c.convert_seconds, cached=c.cached)
        if (c := built.get(t.name)) is not None
        else t
        for t in kept.trials
    )
    report = EngineReport(
        kept.choice,
        trials,
        "scikit-learn",
        time.perf_counter() - start,
        raced_at=kept.raced_at,
        from_cache=True,
    )
    return report, engines


# --- ONNX ---------------------------------------------------------------------------


def _load_onnx(
    path: Path, name: str, version: str, schema_json: Any, probabilities: bool
) -> LoadedModel:
    import onnx

    from servepath.model.onnx_schema import inspect_onnx

    try:
        proto = onnx.load(str(path))
        session = onnx_session(proto.SerializeToString())
    except Exception as exc:
        raise ModelLoadError(str(path), f"onnxruntime cannot open it: {exc}") from exc
    meta = {p.key: p.value for p in proto.metadata_props}
    try:
        facts = inspect_onnx(proto, meta, schema_json)
    except ValueError as exc:
        raise ModelLoadError(str(path), str(exc)) from exc
    schema = facts.schema
    output_list = session.get_outputs()
    names = [o.name for o in output_list]
    proba_name = next((n for n in names if "prob" in n.lower()), None)
    label_name = next((n for n in names if "label" in n.lower()), None)
    task: Task = "proba" if proba_name else ("label" if label_name else "regression")
    feed = _onnx_artifact_feeder(session, schema)
    classes = list(facts.classes or [])
    wants_probabilities = probabilities or facts.probabilities
    answers: Callable[[Sequence[Row]], Answers]
    if task == "regression":
        read = onnx_answers(session, "regression", [])

        def regression(rows: Sequence[Row]) -> Answers:
            return read(feed(rows), len(rows))

        answers = regression
    else:
        answers, classes = _onnx_classifier(
            session,
            feed,
            task,
            classes,
            list(facts.graph_classes or classes),
            names,
            proba_name,
            label_name,
            schema.example(),
        )
    fmt = formatter(task, classes, wants_probabilities)

    def predict_rows(rows: Sequence[Row]) -> list[Output]:
        return fmt(answers(rows), len(rows))

    rows = probe_rows(schema, 64)
    trial = verify(Candidate("onnxruntime", "the artifact itself", answers), answers(rows), rows)
    timings = time_engines({"onnxruntime": answers}, rows, budget_s=0.5) if trial.agrees else {}
    one, batch = timings.get("onnxruntime", (None, None))
    trial = Trial(
        trial.name,
        trial.detail,
        trial.error,
        trial.disagreement,
        trial.label_mismatches,
        one,
        batch,
    )
    if trial.error is not None:
        raise ModelLoadError(str(path), f"predicting rows from its schema failed: {trial.error}")
    report = EngineReport(
        Choice("onnxruntime", "onnxruntime", None, "the artifact is ONNX"),
        (trial,),
        "the ONNX model itself",
    )
    return LoadedModel(
        name,
        version,
        path,
        "onnx",
        schema,
        output_names(task, wants_probabilities),
        predict_rows,
        "onnxruntime",
        report.summary(),
        report,
        task,
        tuple(classes),
        inline=batch is not None and batch < INLINE_BATCH_MS,
        extra={"schema_source": facts.schema_source},
        schema_source=SchemaSource("graph" if facts.schema_source == "graph" else "metadata")
        if facts.schema_source != "schema file"
        else SchemaSource("file"),
    )


def _onnx_classifier(
    session: Any,
    feed: Callable[[Sequence[Row]], dict[str, np.ndarray]],
    task: Task,
    classes: list[Any],
    graph_classes: list[Any],
    names: list[str],
    proba_name: str | None,
    label_name: str | None,
    example: Row,
) -> tuple[Callable[[Sequence[Row]], Answers], list[Any]]:
    """An ONNX classifier's answers: ZipMap or tensor probabilities, labels by their position
    among the graph's own classes (``classes`` may rename them)."""

    def run(rows: Sequence[Row]) -> dict[str, Any]:
        return dict(zip(names, session.run(None, feed(rows)), strict=True))

    learned = list(classes)
    positions = {str(c): i for i, c in enumerate(graph_classes or learned)}

    def answers(rows: Sequence[Row]) -> Answers:
        n = len(rows)
        by_name = run(rows)
        proba = None
        if proba_name is not None:
            raw = by_name[proba_name]
            if isinstance(raw, list):  # ZipMap: one {class: probability} per row
                keys = learned or (list(raw[0].keys()) if raw else [])
                proba = np.array([[p[k] for k in keys] for p in raw], dtype=np.float64)
            else:
                proba = np.asarray(raw, dtype=np.float64).reshape(n, -1)
        if label_name is not None:
            flat = np.asarray(by_name[label_name]).reshape(-1)
            if positions:
                labels = np.array([positions[str(_plain(v))] for v in flat], dtype=np.intp)
            else:
                labels = flat.astype(np.intp)
        else:
            assert proba is not None
            labels = proba.argmax(axis=1)
        return Answers(labels=labels, proba=proba if task == "proba" else None)

    if not learned:
        # Without stated classes, ZipMap keys or the probability columns name them.
        sample = run([example])
        raw = sample.get(proba_name) if proba_name else None
        width = session.get_outputs()[names.index(proba_name)].shape if proba_name else None
        if isinstance(raw, list) and raw:
            learned = list(raw[0].keys())
            positions.update({str(c): i for i, c in enumerate(learned)})
        elif width and len(width) == 2 and isinstance(width[1], int):
            learned = list(range(width[1]))
    return answers, learned


def _onnx_artifact_feeder(
    session: Any, schema: InputSchema
) -> Callable[[Sequence[Row]], dict[str, np.ndarray]]:
    inputs = session.get_inputs()
    names = [f.name for f in schema.used]
    if len(inputs) == 1 and inputs[0].name not in names:
        dtype = np.float64 if "double" in inputs[0].type else np.float32
        only = inputs[0].name

        def feed_matrix(rows: Sequence[Row]) -> dict[str, np.ndarray]:
            values = [[np.nan if r[n] is None else r[n] for n in names] for r in rows]
            return {only: np.array(values, dtype=dtype).reshape(len(rows), len(names))}

        return feed_matrix
    return onnx_feeder(session)


def _smoke_test(model: LoadedModel) -> None:
    """Predict the schema's example once, so a broken artifact fails at load, not per request."""
    try:
        model.predict_rows([model.schema.example()])
    except Exception as exc:
        raise ModelLoadError(
            str(model.path), f"predicting the example instance failed: {type(exc).__name__}: {exc}"
        ) from exc
