"""A model's reference profile: how each input feature was distributed in the data it was
trained on, as fixed bins and the share of the training rows in each. Pure but for reading
and writing the file.

The server compares the traffic it sees with it (:mod:`servepath.service.sketch`): the bins
are fixed here, once, so that counting live rows is a lookup and the two distributions are
compared bin by bin.

* a **number**: ``cuts`` inside ``[min, max]`` at the training column's quantiles (or one bin
  per value when it has no more distinct values than bins), the share of rows in each of the
  ``len(cuts) + 1`` bins, and the share missing. Live values below ``min`` or above ``max``
  fall into two more bins that the training data left empty.
* a **category** (or a boolean): the share of each value seen in training (the most common
  :data:`MAX_CATEGORIES`), the share of the rest (``other``) and the share missing. A live
  value the training data never had counts as ``other``.

The profile names the model version and the schema it was built for; the server refuses one
whose features are not the model's (:func:`check_against`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson

from servepath.errors import ConfigError, InputNotRead

if TYPE_CHECKING:
    import pandas as pd

    from servepath.model.schema import InputSchema

#: The file's format; a reader refuses any other.
FORMAT = "servepath-profile/1"
#: Bins per numeric feature by default (at most; fewer when the column has fewer values).
DEFAULT_BINS = 10
#: Categories a feature keeps by name; the rarer ones are counted together as ``other``.
MAX_CATEGORIES = 50
#: Population stability index past which a feature counts as drifted, unless the profile
#: says otherwise: the usual reading is < 0.1 stable, 0.1–0.25 moving, > 0.25 shifted.
DEFAULT_THRESHOLD = 0.2

Kind = Literal["number", "category", "boolean"]
Category = str | bool


class ProfileError(ConfigError):
    """A reference profile that cannot be read or used as a profile."""


class ProfileMismatch(ConfigError):
    """A reference profile whose features are not the served model's."""

    def __init__(self, path: str, feature: str, reason: str) -> None:
        self.path, self.feature, self.reason = path, feature, reason
        super().__init__(f"reference profile {path}: feature {feature!r} {reason}")


@dataclass(frozen=True, slots=True)
class NumericProfile:
    """One numeric feature: bins ``[min, cuts[0])``, …, ``[cuts[-1], max]``."""

    name: str
    min: float
    max: float
    cuts: tuple[float, ...]
    shares: tuple[float, ...]  # one per bin: len(cuts) + 1
    missing: float
    kind: Kind = "number"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "min": self.min,
            "max": self.max,
            "cuts": list(self.cuts),
            "shares": list(self.shares),
            "missing": self.missing,
        }


@dataclass(frozen=True, slots=True)
class CategoryProfile:
    """One categorical (or boolean) feature: the share of each value, the rest, missing."""

    name: str
    kind: Kind
    categories: tuple[Category, ...]
    shares: tuple[float, ...]  # one per category
    other: float
    missing: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "categories": list(self.categories),
            "shares": list(self.shares),
            "other": self.other,
            "missing": self.missing,
        }


FeatureProfile = NumericProfile | CategoryProfile


@dataclass(frozen=True, slots=True)
class Profile:
    """The reference profile of one model version (see the module docstring)."""

    model_name: str
    model_version: str
    rows: int
    features: tuple[FeatureProfile, ...]
    threshold: float = DEFAULT_THRESHOLD
    source: str = ""
    created: str = ""
    #: Where it was read from ("" when built in this process).
    path: str = ""

    @property
    def digest(self) -> str:
        """A short hash of the bins: two workers merge their counts only when it matches."""
        body = orjson.dumps([f.to_json() for f in self.features], option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(body).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": {"name": self.model_name, "version": self.model_version},
            "rows": self.rows,
            "threshold": self.threshold,
            "source": self.source,
            "created": self.created,
            "features": [f.to_json() for f in self.features],
        }


# --- building ---------------------------------------------------------------------------


def numeric_profile(name: str, values: np.ndarray[Any, Any], bins: int) -> NumericProfile:
    """The bins of one numeric column (NaN: missing) and the share of rows in each."""
    column = np.asarray(values, dtype=float)
    total = len(column)
    present = column[~np.isnan(column)]
    if total == 0 or len(present) == 0:
        raise ProfileError(f"column {name!r} has no values to profile")
    low, high = float(present.min()), float(present.max())
    distinct = np.unique(present)
    if len(distinct) <= bins:
        cuts = distinct[1:]  # one bin per value
    else:
        # Cut at values the data holds ("lower"), not between them: the file reads plainly.
        quantiles = np.quantile(present, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="lower")
        cuts = np.unique(quantiles[quantiles > low])
    counts = np.bincount(np.searchsorted(cuts, present, side="right"), minlength=len(cuts) + 1)
    return NumericProfile(
        name=name,
        min=low,
        max=high,
        cuts=tuple(float(c) for c in cuts),
        shares=tuple(float(c) / total for c in counts),
        missing=(total - len(present)) / total,
    )


def category_profile(
    name: str, values: Sequence[Category | None], kind: Kind = "category"
) -> CategoryProfile:
    """The share of each value of one categorical column (None: missing)."""
    total = len(values)
    if total == 0:
        raise ProfileError(f"column {name!r} has no values to profile")
    counts: dict[Category, int] = {}
    missing = 0
    for value in values:
        if value is None:
            missing += 1
        else:
            counts[value] = counts.get(value, 0) + 1
    # Most common first; ties by value, so that the same data gives the same file.
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    kept = ranked[:MAX_CATEGORIES]
    rest = sum(n for _, n in ranked[MAX_CATEGORIES:])
    return CategoryProfile(
        name=name,
        kind=kind,
        categories=tuple(value for value, _ in kept),
        shares=tuple(n / total for _, n in kept),
        other=rest / total,
        missing=missing / total,
    )


def build_profile(
    schema: InputSchema,
    frame: pd.DataFrame,
    *,
    model_name: str,
    model_version: str,
    bins: int = DEFAULT_BINS,
    threshold: float = DEFAULT_THRESHOLD,
    source: str = "",
) -> Profile:
    """The profile of ``frame``'s columns for every feature the model uses.

    Raises :class:`ProfileError` naming a feature the frame lacks or a column whose values
    are not of the feature's kind; columns the model does not use are ignored.
    """
    import pandas as pd

    if bins < 2:
        raise ProfileError(f"a numeric feature needs at least 2 bins, not {bins}")
    features: list[FeatureProfile] = []
    for feature in schema.used:
        if feature.name not in frame.columns:
            raise ProfileError(f"the training data has no column {feature.name!r}")
        column = frame[feature.name]
        if feature.kind == "number":
            numbers = pd.to_numeric(column, errors="coerce")
            bad = numbers.isna() & column.notna()
            if bad.any():
                example = column[bad].iloc[0]
                raise ProfileError(
                    f"column {feature.name!r} is a number for the model, but holds {example!r}"
                )
            features.append(numeric_profile(feature.name, numbers.to_numpy(dtype=float), bins))
        elif feature.kind == "boolean":
            features.append(
                category_profile(feature.name, _booleans(feature.name, column), "boolean")
            )
        else:
            values = [None if _missing(v) else str(v) for v in column.tolist()]
            features.append(category_profile(feature.name, values))
    return Profile(
        model_name=model_name,
        model_version=model_version,
        rows=len(frame),
        features=tuple(features),
        threshold=threshold,
        source=source,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


_TRUE = frozenset({"true", "1", "yes", "t"})
_FALSE = frozenset({"false", "0", "no", "f"})


def _booleans(name: str, column: pd.Series[Any]) -> list[Category | None]:
    out: list[Category | None] = []
    for value in column.tolist():
        if _missing(value):
            out.append(None)
        elif isinstance(value, bool | np.bool_):
            out.append(bool(value))
        elif str(value).strip().lower() in _TRUE:
            out.append(True)
        elif str(value).strip().lower() in _FALSE:
            out.append(False)
        else:
            raise ProfileError(f"column {name!r} is true/false for the model, but holds {value!r}")
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def read_csv(path: Path, schema: InputSchema) -> pd.DataFrame:
    """A training CSV, each categorical column read as text (so that ``"01"`` stays
    ``"01"``); raises :class:`~servepath.errors.InputNotRead` when it cannot be read."""
    import pandas as pd

    text = {f.name: str for f in schema.used if f.kind != "number"}
    try:
        return pd.read_csv(path, dtype=text, keep_default_na=True)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputNotRead(str(path), str(exc).splitlines()[0] if str(exc) else repr(exc)) from exc


# --- reading and checking ------------------------------------------------------------------


def write_profile(profile: Profile, path: Path) -> None:
    """Write ``profile`` as JSON, atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(orjson.dumps(profile.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    tmp.replace(path)


def read_profile(path: Path) -> Profile:
    """The profile in ``path``; :class:`ProfileError` says why a file is not one."""
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ProfileError(f"cannot read reference profile {path}: {exc.strerror or exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise ProfileError(f"reference profile {path} is not JSON: {exc}") from exc
    try:
        return profile_from_json(data, str(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"reference profile {path} is not a profile: {exc}") from exc


def profile_from_json(data: Any, path: str = "") -> Profile:
    """A profile from its JSON (``Profile.to_json()``); ValueError/KeyError/TypeError when
    it is not one."""
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, Mapping) else None
        raise ValueError(f'its "format" is {found!r}, not {FORMAT!r}')
    features: list[FeatureProfile] = []
    for item in data["features"]:
        name = str(item["name"])
        kind = item["kind"]
        if kind == "number":
            cuts = tuple(float(c) for c in item["cuts"])
            shares = tuple(float(s) for s in item["shares"])
            low, high = float(item["min"]), float(item["max"])
            if len(shares) != len(cuts) + 1:
                raise ValueError(f"feature {name!r}: {len(cuts)} cuts need {len(cuts) + 1} shares")
            if list(cuts) != sorted(set(cuts)) or any(not low < c <= high for c in cuts):
                raise ValueError(f"feature {name!r}: cuts must rise strictly within (min, max]")
            features.append(
                NumericProfile(name, low, high, cuts, shares, float(item.get("missing", 0.0)))
            )
        elif kind in ("category", "boolean"):
            categories = tuple(item["categories"])
            shares = tuple(float(s) for s in item["shares"])
            if len(shares) != len(categories):
                raise ValueError(f"feature {name!r}: one share per category")
            if not all(isinstance(c, bool if kind == "boolean" else str) for c in categories):
                raise ValueError(f"feature {name!r}: {kind} values only")
            features.append(
                CategoryProfile(
                    name,
                    kind,
                    categories,
                    shares,
                    float(item.get("other", 0.0)),
                    float(item.get("missing", 0.0)),
                )
            )
        else:
            raise ValueError(f"feature {name!r}: kind {kind!r} is not number, category, boolean")
    if not features:
        raise ValueError("it profiles no feature")
    threshold = float(data.get("threshold", DEFAULT_THRESHOLD))
    if not threshold > 0:
        raise ValueError(f"threshold {threshold} is not positive")
    model = data.get("model") or {}
    return Profile(
        model_name=str(model.get("name", "")),
        model_version=str(model.get("version", "")),
        rows=int(data.get("rows", 0)),
        features=tuple(features),
        threshold=threshold,
        source=str(data.get("source", "")),
        created=str(data.get("created", "")),
        path=path,
    )


def check_against(profile: Profile, schema: InputSchema) -> None:
    """Raise :class:`ProfileMismatch` naming the first feature the profile and the model's
    schema do not share with the same kind."""
    where = profile.path or "(built in memory)"
    profiled = {f.name: f for f in profile.features}
    used = {f.name: f for f in schema.used}
    for name, feature in used.items():
        found = profiled.get(name)
        if found is None:
            raise ProfileMismatch(where, name, "is an input of the model but not in the profile")
        if found.kind != feature.kind:
            raise ProfileMismatch(
                where, name, f"is a {feature.kind} for the model but a {found.kind} in the profile"
            )
    for name in profiled:
        if name not in used:
            raise ProfileMismatch(where, name, "is in the profile but not an input of the model")


def version_note(profile: Profile, model_name: str, model_version: str) -> str | None:
    """What to warn of when the profile was built for another version of the model."""
    if not profile.model_version or profile.model_version == model_version:
        return None
    # No path: the live page shows this line to callers who may not see the server's files.
    return (
        f"the reference profile was built for {profile.model_name or 'a model'} version "
        f"{profile.model_version}, not the {model_name} version {model_version} that serves: "
        "drift is measured against that version's training data"
    )
