"""Which artifact to serve: a local file, a model in cloud storage, or the example, decided once.

``--model``, ``SERVEPATH_MODEL`` and Vertex AI's ``AIP_STORAGE_URI`` all name a model; this
module turns what they say into one :class:`ModelSource`, and a source into the local file the
loader reads (:meth:`ModelSource.local_path`: downloaded for ``gs://``, ``s3://`` and
``https://``, trained once for the example). The decision is pure; only ``local_path`` does I/O.

A joblib or pickle artifact is a program: loading it runs whatever code it holds, with the
server's rights. So a plain ``http://`` model URL (anyone on the path can swap the file) is
refused unless allowed, and ``--model-sha256`` pins the exact bytes, checked before the
loader sees them. ONNX runs no code: it is the format for artifacts that cross a trust
boundary.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

log = logging.getLogger(__name__)

__all__ = [
    "ARTIFACT_NAMES",
    "EXAMPLE_NAME",
    "RUNS_CODE",
    "ModelSource",
    "artifact_in",
    "artifact_name",
    "check_pin",
    "is_remote",
    "parse_sha256",
    "runs_code",
    "unpickling_failure",
]

SourceKind = Literal["path", "remote", "example"]
#: In a directory, the artifact servepath loads, in this order (as Vertex AI names them).
ARTIFACT_NAMES = ("model.onnx", "model.joblib", "model.pkl")
#: The example model's file in the data directory.
EXAMPLE_NAME = "example-model.joblib"
_REMOTE = re.compile(r"^(gs|s3|https?)://", re.IGNORECASE)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: Artifact suffixes that are pickles (joblib is one): loading them runs code.
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
#: What to tell whoever loads one.
RUNS_CODE = (
    "loading a joblib/pickle artifact runs the code it holds, with this process's rights: "
    "load only files you trust, pin them with --model-sha256, and use ONNX (.onnx, which runs "
    "no code) for artifacts that cross a trust boundary"
)


def runs_code(path: Path | str) -> bool:
    """Whether loading the artifact at ``path`` runs code it holds (a joblib/pickle file)."""
    return str(path).lower().endswith(PICKLE_SUFFIXES)


def parse_sha256(text: str) -> str:
    """A ``--model-sha256`` value as 64 lower-case hex digits (``sha256:`` prefix allowed)."""
    from servepath.errors import ConfigError

    digest = text.strip().lower().removeprefix("sha256:")
    if not _SHA256.match(digest):
        raise ConfigError(f"--model-sha256 {text!r} is not 64 hex digits (sha256sum FILE)")
    return digest


def check_pin(path: Path, sha256: str | None) -> None:
    """Raise :class:`~servepath.errors.ModelDigestMismatch` unless ``path`` has the pinned
    digest; no pin, no check. Reads the file, never loads it."""
    if sha256 is None:
        return
    from servepath.errors import ModelDigestMismatch

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise ModelDigestMismatch(str(path), sha256, digest.hexdigest())


def is_remote(text: str) -> bool:
    """A model in cloud storage rather than a local path: gs://, s3://, http(s)://."""
    return bool(_REMOTE.match(text.strip()))


def artifact_name(location: str) -> str:
    """A model's name from its file's path or URI: its stem, made safe for a URL (``model``
    and ``example-model``, the names servepath and Vertex AI give files, are ``decision``)."""
    stem = PurePosixPath(location).stem
    if stem in ("model", "example-model"):
        return "decision"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in stem) or "model"


def artifact_in(directory: Path) -> Path:
    """The artifact in a local model directory (Vertex AI copies one and names it)."""
    for name in ARTIFACT_NAMES:
        if (directory / name).exists():
            return directory / name
    return directory / ARTIFACT_NAMES[1]


@dataclass(frozen=True)
class ModelSource:
    """One model to serve: ``kind`` says where it is, ``location`` is its path or URI."""

    kind: SourceKind
    location: str

    @classmethod
    def parse(cls, text: str) -> ModelSource:
        """What ``--model`` / ``SERVEPATH_MODEL`` names: a path, or a URI in cloud storage."""
        if is_remote(text):
            return cls("remote", text.strip())
        return cls("path", text)

    @classmethod
    def from_storage_uri(cls, text: str) -> ModelSource | None:
        """What ``AIP_STORAGE_URI`` names: a local directory (its artifact) or a URI; None
        when it names neither."""
        if text.startswith("/"):
            return cls("path", str(artifact_in(Path(text))))
        if is_remote(text):
            return cls("remote", text.strip())
        return None

    @classmethod
    def example(cls, data_dir: Path) -> ModelSource:
        """The example model, trained once into ``data_dir``."""
        return cls("example", str(data_dir / EXAMPLE_NAME))

    @property
    def name(self) -> str:
        """The model's name as the loader would give its file: the last part of the path or
        URI without its suffix (``model`` and ``example-model`` are ``decision``)."""
        return artifact_name(self.location.split("?", 1)[0].rstrip("/"))

    @property
    def path(self) -> Path | None:
        """The local file, for a path or the example; None for a model in cloud storage."""
        return None if self.kind == "remote" else Path(self.location)

    def local_path(
        self,
        data_dir: Path,
        *,
        gcs_endpoint: str | None = None,
        s3_endpoint: str | None = None,
        sha256: str | None = None,
        allow_http: bool = False,
    ) -> Path:
        """The file to load: a path as it is, a remote model downloaded (or its cached copy),
        the example trained once; checked against ``sha256`` when one is pinned. Raises
        :class:`~servepath.errors.ModelLoadError` or
        :class:`~servepath.errors.ModelDigestMismatch`."""
        if self.kind == "path":
            path = Path(self.location)
        elif self.kind == "example":
            from servepath.model.example import ensure_example

            path = ensure_example(Path(self.location))
        else:
            from servepath.model.storage import fetch_model

            fetched = fetch_model(
                self.location,
                data_dir,
                gcs_endpoint=gcs_endpoint,
                s3_endpoint=s3_endpoint,
                allow_http=allow_http,
            )
            log.info("model %s: %s", self.location,
                     "downloaded" if fetched.downloaded else "cached copy")  # fmt: skip
            path = fetched.path
        check_pin(path, sha256)
        return path


_MISSING_CLASS = re.compile(r"Can't get attribute '([^']+)' on <module '([^']+)'")


def unpickling_failure(exc: Exception) -> str:
    """Why joblib could not read the file, with the fix when the file refers to code that is
    not importable here (a class defined in the training script, a module not installed)."""
    text = str(exc)
    missing = _MISSING_CLASS.search(text) if isinstance(exc, AttributeError) else None
    if missing is not None:
        name, module = missing.groups()
        where = (
            "the training script's __main__"
            if module == "__main__"
            else f"the module {module!r}, which does not define it here"
        )
        return (
            f"the model refers to the class {name!r}, defined in {where}, which this process "
            f"cannot import: define {name} in a module of its own (e.g. {name.lower()}.py), "
            "import it from there in the training script and save the model again, and make "
            "that module importable where servepath runs (install it, or add its directory "
            "to PYTHONPATH)"
        )
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return (
            f"the model refers to the module {exc.name!r}, which is not importable here: "
            "install it, or add its directory to PYTHONPATH"
        )
    return f"not a joblib file ({type(exc).__name__}: {text})"
