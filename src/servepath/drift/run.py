"""`servepath drift`: the current window of the prediction log against a reference, per
feature and per model version.

The reference is a file of rows (the training data, CSV or Parquet) or an earlier window of
the log itself; the current window is the log's ``[since, until)``. Which features are
compared, and of which kind:

* with a schema (``--schema FILE``, or the one a ``--model`` carries), its features (those
  the model uses), a ``number`` numeric, a ``category`` or ``boolean`` categorical;
* without one, the reference's columns (a file's columns, or the keys of the reference
  window's instances) that the current window's instances carry too, each of the kind its
  reference values have (:mod:`servepath.drift.columns`, :mod:`servepath.drift.reference`).

The prediction's own fields (a classifier's ``decision``, a ``probability`` or a regression's
value: the output's scalar fields) are compared too, when the reference has them (a log
window always does; a file when it has a column of that name), and reported apart: the
dataset's verdict is the share of drifted *features*, as Evidently's is of the columns it
is given.

Reading is the cost at a million rows: only the instance and output columns (and the model
version) of the window are read, through the ``ts`` index, in chunks; each chunk's JSON is
parsed in one ``orjson`` call, and each feature's values are kept as a float array or as
counts as they come (:class:`servepath.drift.columns.ColumnBuilder`).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, Final

import orjson

from servepath.config import Settings
from servepath.drift.columns import ColumnBuilder, Kind, Sample
from servepath.drift.compare import (
    DEFAULT_FAIL_SHARE,
    FeatureDrift,
    compare_feature,
    drifted_share,
)
from servepath.errors import ConfigError, NothingToCompare
from servepath.model.schema import InputSchema
from servepath.store.bounds import TRUNCATED_KEY
from servepath.store.reader import InstanceRow, LogReader
from servepath.traffic import TrafficFilter

__all__ = ["DriftReport", "DriftRequest", "VersionDrift", "run"]

#: Instances of the reference window whose keys name its features when there is no schema.
_KEYS_FROM: Final = 1000
_KIND_OF: Final[dict[str, Kind]] = {
    "number": "numeric",
    "category": "categorical",
    "boolean": "categorical",
}


@dataclass(frozen=True)
class DriftRequest:
    """What to compare. Times are unix seconds; a window is ``[since, until)``, open at a
    None end. ``reference_file`` wins over the reference window."""

    settings: Settings
    since: float | None = None
    until: float | None = None
    reference_file: Path | None = None
    reference_since: float | None = None
    reference_until: float | None = None
    schema: InputSchema | None = None
    traffic: TrafficFilter = "ordinary"
    fail_share: float = DEFAULT_FAIL_SHARE
    #: Only this model version (the log's ``model_version``, or its label), else every
    #: version in turn.
    model_version: str | None = None


@dataclass(frozen=True)
class VersionDrift:
    """One model version's current window against the reference."""

    model_name: str
    model_version: str
    #: The version's label (a repository folder), when the log has one.
    model_label: str | None
    rows: int
    features: tuple[FeatureDrift, ...]
    prediction: tuple[FeatureDrift, ...]
    fail_share: float

    @property
    def drifted_share(self) -> float:
        return drifted_share(self.features)

    @property
    def drifted(self) -> bool:
        """Evidently's dataset rule: at least ``fail_share`` of the features drifted."""
        return bool(self.features) and self.drifted_share >= self.fail_share

    def to_json(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_label": self.model_label,
            "rows": self.rows,
            "drifted": self.drifted,
            "drifted_features": sum(f.drifted for f in self.features),
            "drifted_share": self.drifted_share,
            "features": [f.to_json() for f in self.features],
            "prediction": [f.to_json() for f in self.prediction],
        }


@dataclass(frozen=True)
class DriftReport:
    store: str
    #: ``file`` or ``log``, and what it is: the file's path, or the window.
    reference_kind: str
    reference: str
    reference_rows: int
    since: float | None
    until: float | None
    reference_since: float | None
    reference_until: float | None
    traffic: TrafficFilter
    fail_share: float
    #: Where the features and their kinds came from: ``schema`` or ``reference``.
    features_from: str
    versions: tuple[VersionDrift, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not any(v.drifted for v in self.versions)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "store": self.store,
            "reference": {
                "kind": self.reference_kind,
                "source": self.reference,
                "rows": self.reference_rows,
                "since": self.reference_since,
                "until": self.reference_until,
            },
            "current": {"since": self.since, "until": self.until},
            "traffic": self.traffic,
            "fail_share": self.fail_share,
            "features_from": self.features_from,
            "versions": [v.to_json() for v in self.versions],
            "notes": list(self.notes),
        }


#: A model version as the log names it: model name, version, label.
_Key = tuple[str, str, str | None]


@dataclass
class _Side:
    """One side being read: a builder per feature and per prediction field."""

    features: dict[str, ColumnBuilder]
    outputs: dict[str, ColumnBuilder]
    rows: int = 0


def run(request: DriftRequest) -> DriftReport:
    """Compare the current window with the reference, per model version."""
    from servepath.store.factory import open_reader

    if not 0 < request.fail_share <= 1:
        raise ConfigError(f"--fail-share {request.fail_share:g} is not in (0, 1]")
    notes: list[str] = []
    schema_kinds = _schema_kinds(request.schema)
    with open_reader(request.settings) as reader:
        if request.reference_file is not None:
            reference, ref_rows, described = _file_reference(request, schema_kinds, notes)
            ref_kind = "file"
        else:
            reference, ref_rows = _log_reference(reader, request, schema_kinds)
            described, ref_kind = _window(request.reference_since, request.reference_until), "log"
        kinds = {n: s.kind for n, s in reference.outputs.items()}
        kinds.update((n, s.kind) for n, s in reference.features.items())
        current = _read_log(
            reader,
            request.since,
            request.until,
            request.traffic,
            list(reference.features),
            kinds,
            request.model_version,
        )
        store = reader.target
    if not current:
        which = f" of version {request.model_version}" if request.model_version else ""
        raise NothingToCompare(
            f"no prediction{which} in the current window "
            f"{_window(request.since, request.until)} of {store}",
            hints=("widen the window (--since, --until), or check --traffic and --store",),
        )
    versions = []
    for (name, version, label), side in current.items():
        features = _kept(reference.features, side, schema_kinds, notes)
        outputs = {
            n: b.sample()
            for n, b in side.outputs.items()
            if n in reference.outputs and n not in features
        }
        versions.append(
            VersionDrift(
                model_name=name,
                model_version=version,
                model_label=label,
                rows=side.rows,
                features=tuple(
                    compare_feature(n, "feature", reference.features[n], s)
                    for n, s in features.items()
                ),
                prediction=tuple(
                    compare_feature(n, "prediction", reference.outputs[n], s)
                    for n, s in outputs.items()
                ),
                fail_share=request.fail_share,
            )
        )
    return DriftReport(
        store=store,
        reference_kind=ref_kind,
        reference=described,
        reference_rows=ref_rows,
        since=request.since,
        until=request.until,
        reference_since=request.reference_since,
        reference_until=request.reference_until,
        traffic=request.traffic,
        fail_share=request.fail_share,
        features_from="schema" if request.schema is not None else "reference",
        versions=tuple(versions),
        notes=tuple(dict.fromkeys(notes)),
    )


@dataclass(frozen=True)
class _Samples:
    features: dict[str, Sample]
    outputs: dict[str, Sample]


def _schema_kinds(schema: InputSchema | None) -> dict[str, Kind] | None:
    if schema is None:
        return None
    return {f.name: _KIND_OF[f.kind] for f in schema.used}


def _file_reference(
    request: DriftRequest, schema_kinds: dict[str, Kind] | None, notes: list[str]
) -> tuple[_Samples, int, str]:
    from servepath.drift.reference import read_reference

    assert request.reference_file is not None
    path = request.reference_file
    table = read_reference(path)
    features: dict[str, Sample] = {}
    outputs: dict[str, Sample] = {}
    if schema_kinds is not None:
        absent = [n for n in schema_kinds if n not in table.columns]
        if absent:
            notes.append(f"not in {path.name}, not compared: {', '.join(absent)}")
    for name, column in table.columns.items():
        kind = schema_kinds.get(name, column.kind) if schema_kinds else column.kind
        builder = ColumnBuilder(kind)
        builder.add(column.values)
        # Which columns are features and which the prediction's is settled once the current
        # window's instances are read: keep every column on both lists until then.
        features[name] = outputs[name] = builder.sample()
    if schema_kinds is not None:
        features = {n: s for n, s in features.items() if n in schema_kinds}
    return _Samples(features, outputs), table.rows, str(path)


def _log_reference(
    reader: LogReader, request: DriftRequest, schema_kinds: dict[str, Kind] | None
) -> tuple[_Samples, int]:
    sides = _read_log(
        reader,
        request.reference_since,
        request.reference_until,
        request.traffic,
        list(schema_kinds) if schema_kinds is not None else None,
        schema_kinds or {},
        None,
        pooled=True,
    )
    if not sides:
        raise NothingToCompare(
            "no prediction in the reference window "
            f"{_window(request.reference_since, request.reference_until)} of {reader.target}",
            hints=(
                "give --reference FILE, or a window that holds predictions "
                "(--reference-since, --reference-until)",
            ),
        )
    side = next(iter(sides.values()))
    return (
        _Samples(
            {n: b.sample() for n, b in side.features.items()},
            {n: b.sample() for n, b in side.outputs.items()},
        ),
        side.rows,
    )


def _kept(
    reference: Mapping[str, Sample],
    current: _Side,
    schema_kinds: dict[str, Kind] | None,
    notes: list[str],
) -> dict[str, Sample]:
    """The current samples of the features compared: the schema's, or the reference's that
    the current instances carry."""
    samples = {n: b.sample() for n, b in current.features.items() if n in reference}
    if schema_kinds is not None:
        return samples
    absent = [n for n, s in samples.items() if s.missing == s.rows]
    shown = [n for n in absent if n not in current.outputs]  # the prediction's, compared there
    if shown:
        notes.append(f"not in the logged instances, not compared: {', '.join(shown)}")
    return {n: s for n, s in samples.items() if n not in absent}


def _read_log(
    reader: LogReader,
    since: float | None,
    until: float | None,
    traffic: TrafficFilter,
    feature_names: list[str] | None,
    kinds: Mapping[str, Kind],
    model_version: str | None,
    *,
    pooled: bool = False,
) -> dict[_Key, _Side]:
    """Each model version's side of ``[since, until)`` (or one side for every version,
    ``pooled``). The features are those named, else the keys of the first instances read;
    the output fields are the scalar keys of the first outputs read; a name in ``kinds``
    is read as that kind."""
    sides: dict[_Key, _Side] = {}
    output_names: list[str] | None = None
    with _cyclic_gc_paused():
        for chunk in reader.instances(since=since, until=until, traffic=traffic):
            for key, instances, outputs in _grouped(chunk, model_version, pooled):
                if feature_names is None:
                    feature_names = _keys(instances)
                if output_names is None:
                    output_names = _keys(outputs, scalar_only=True)
                side = sides.get(key)
                if side is None:
                    side = sides[key] = _Side(
                        {n: ColumnBuilder(kinds.get(n)) for n in feature_names},
                        {n: ColumnBuilder(kinds.get(n)) for n in output_names},
                    )
                side.rows += len(instances)
                for builders, rows in ((side.features, instances), (side.outputs, outputs)):
                    for builder, values in zip(
                        builders.values(), _columns(rows, list(builders)), strict=True
                    ):
                        builder.add(values)
    return sides


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Parsing a million instances makes a million dicts, and every few hundred of them
    wake the cyclic collector, which walks the live objects: a quarter of the read's time.
    None of them is in a cycle (reference counting frees them), so it sleeps meanwhile."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _columns(rows: list[dict[str, Any]], names: Sequence[str]) -> list[Sequence[Any]]:
    """The rows' values per name (None where a row lacks it): one pass in C per name when
    every row has it (a tenth of the cost of transposing the rows as tuples)."""
    try:
        return [list(map(itemgetter(name), rows)) for name in names]
    except KeyError:
        return [[row.get(name) for row in rows] for name in names]


def _grouped(
    chunk: Sequence[InstanceRow], model_version: str | None, pooled: bool
) -> Iterator[tuple[_Key, list[dict[str, Any]], list[dict[str, Any]]]]:
    """The chunk's instances and outputs parsed, per model version (``model_version`` keeps
    the rows whose version or label it names)."""
    names, versions, labels, instances, outputs = zip(*chunk, strict=True)
    keys = set(zip(names, versions, labels, strict=True))
    if pooled or (len(keys) == 1 and model_version is None):
        # One version in the chunk (the usual case): no row-by-row grouping.
        key = ("*", "*", None) if pooled else next(iter(keys))
        yield key, _parsed(instances), _parsed(outputs)
        return
    texts: dict[_Key, tuple[list[str], list[str]]] = {}
    for name, version, label, instance, output in chunk:
        if model_version is not None and model_version not in (version, label):
            continue
        group = texts.get((name, version, label))
        if group is None:
            group = texts[(name, version, label)] = ([], [])
        group[0].append(instance)
        group[1].append(output)
    for key, (group_instances, group_outputs) in texts.items():
        yield key, _parsed(group_instances), _parsed(group_outputs)


def _parsed(texts: Sequence[str]) -> list[dict[str, Any]]:
    """JSON objects parsed in one call; anything else (a hand-written row) as empty."""
    values = orjson.loads("[" + ",".join(texts) + "]")
    if set(map(type, values)) <= {dict}:  # in C: a generator costs a tenth of the parse
        return values  # type: ignore[no-any-return]
    return [v if type(v) is dict else {} for v in values]


def _keys(rows: Iterable[dict[str, Any]], *, scalar_only: bool = False) -> list[str]:
    seen: dict[str, None] = {}
    for i, row in enumerate(rows):
        if i >= _KEYS_FROM:
            break
        for key, value in row.items():
            if key == TRUNCATED_KEY or (scalar_only and isinstance(value, dict | list)):
                continue
            seen[key] = None
    return list(seen)


def _window(since: float | None, until: float | None) -> str:
    from datetime import datetime

    def at(ts: float | None, open_end: str) -> str:
        if ts is None:
            return open_end
        return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")

    return f"[{at(since, 'the start')}, {at(until, 'now')})"
