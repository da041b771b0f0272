"""The engine race's result, kept beside the artifact's conversions so that a second load of
the same artifact (``model info`` again, a restart of ``serve``) does not race again.

A race costs seconds (every engine predicts the probe rows, then each is timed within a
budget); its outcome depends only on the artifact, the input schema, the libraries that
evaluate it and the machine. The cache's key is the artifact's SHA-256, a hash of the
schema, and the versions of every library an engine runs on (and of servepath); the file
lives in the data directory's ``engines/`` beside the ONNX conversions, so a different
machine has its own. A load that finds it still predicts the probe rows with the engines
that serve (on :data:`CHECK_ROWS` of them) and compares them with the model's own answers: an
entry that no longer agrees is raced again, never trusted.

The file is written atomically (a temporary file renamed), so workers starting together
read a whole file or none.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson

from servepath.model.race import Choice, Trial

log = logging.getLogger(__name__)

#: Bumped when what a race measures, or how it chooses, changes.
REVISION = 1
#: Probe rows a kept race's serving engines must reproduce again before it is reused.
CHECK_ROWS = 32
#: The distributions whose versions decide what an engine answers and how fast.
LIBRARIES = (
    "servepath",
    "numpy",
    "pandas",
    "scikit-learn",
    "onnxruntime",
    "skl2onnx",
    "onnxmltools",
    "treelite",
    "xgboost",
    "lightgbm",
)


def library_versions() -> dict[str, str]:
    """The installed version of each of :data:`LIBRARIES` ("-" when absent)."""
    return dict(_library_versions())


@functools.cache
def _library_versions() -> dict[str, str]:
    # Read once per process (each call parses the packages' metadata, on the GIL).
    found: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "-"
    return found


def race_key(digest: str, schema_json: Any, options: dict[str, Any]) -> str:
    """The key of one race: the artifact, its schema, the load's options, the libraries."""
    parts = {
        "artifact": digest,
        "schema": schema_json,
        "options": options,
        "libraries": library_versions(),
        "revision": REVISION,
    }
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class CachedRace:
    """A race's outcome as kept: the choice, every trial, and when it was run."""

    choice: Choice
    trials: tuple[Trial, ...]
    raced_at: float  # unix time
    #: The model's predict() is the argmax of its predict_proba() on the probe rows (the
    #: engines are built for that, see :func:`servepath.model.engines.sklearn_candidates`).
    argmax_is_predict: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "choice": asdict(self.choice),
            "trials": [asdict(t) for t in self.trials],
            "raced_at": self.raced_at,
            "argmax_is_predict": self.argmax_is_predict,
        }

    @classmethod
    def from_json(cls, data: Any) -> CachedRace:
        """Raises KeyError, TypeError or ValueError on a file that is not one."""
        choice = Choice(**data["choice"])
        trials = tuple(Trial(**t) for t in data["trials"])
        return cls(choice, trials, float(data["raced_at"]), bool(data["argmax_is_predict"]))


def cache_file(cache_dir: Path, digest: str, key: str) -> Path:
    return cache_dir / digest[:32] / f"race-{key[:32]}.json"


def read(cache_dir: Path | None, digest: str, key: str) -> CachedRace | None:
    """The race kept under ``key``, or None (absent, unreadable, or another format)."""
    if cache_dir is None:
        return None
    path = cache_file(cache_dir, digest, key)
    try:
        return CachedRace.from_json(orjson.loads(path.read_bytes()))
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        log.info("the cached engine race %s is unreadable (%s): racing again", path, exc)
        return None


def write(cache_dir: Path | None, digest: str, key: str, race: CachedRace) -> None:
    """Keep ``race`` under ``key``; a data directory that cannot be written costs a race per
    load, nothing more."""
    if cache_dir is None:
        return
    path = cache_file(cache_dir, digest, key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(orjson.dumps(race.to_json()))
        tmp.replace(path)
    except OSError as exc:
        log.warning("cannot cache the engine race in %s: %s", path.parent, exc)
