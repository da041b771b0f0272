"""Versions of one model: a directory (or a ``gs://`` / ``s3://`` prefix) of version folders.

``--model-repository LOCATION`` names a place whose subdirectories are versions of one model,
each holding one artifact as Vertex AI's ``AIP_STORAGE_URI`` does (``model.onnx``,
``model.joblib`` or ``model.pkl``; or one file with such a suffix), plus an optional
``<artifact>.schema.json`` beside it::

    models/fraud/
      1/model.joblib
      2/model.joblib
      2/model.joblib.schema.json
      2024-06-canary/model.onnx

A version's *label* is its folder's name. Labels sort numerically when every label is a
number (``2`` before ``10``), else by their text; the highest serves when no version is
named. What a version directory holds is read when it is asked for, never cached: a version
written after start-up is found by the next ``index`` or ``load``.

Listing and the label rules are pure (:func:`order_labels`, :func:`check_label`); the file
system and the object stores are read by :class:`ModelRepository`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from servepath.errors import ModelLoadError
from servepath.model.source import ARTIFACT_NAMES, ModelSource, artifact_name, is_remote

__all__ = ["LABEL_RULE", "ModelRepository", "check_label", "order_labels"]

#: What a version label may be: a folder's name that is safe in a URL, a header and a path.
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LABEL_RULE = "1-64 characters of letters, digits, '.', '_' and '-', starting with a letter or digit"
#: Suffixes a lone file in a version folder may have to be taken as its artifact.
_ARTIFACT_SUFFIXES = (".onnx", ".joblib", ".pkl", ".pickle")


def check_label(label: str) -> str:
    """``label`` if it can name a version (never a path: no ``/``, no ``..``), else raise."""
    if not _LABEL.match(label) or label in (".", ".."):
        raise ModelLoadError(label[:80], f"not a version label ({LABEL_RULE})")
    return label


def _numeric(label: str) -> bool:
    return label.isdigit()


def order_labels(labels: Iterable[str]) -> list[str]:
    """Labels oldest first: by number when all are numbers, else by text."""
    unique = sorted(set(labels))
    if unique and all(_numeric(label) for label in unique):
        return sorted(unique, key=lambda label: (int(label), label))
    return unique


@dataclass(frozen=True)
class ModelRepository:
    """Versions of one model under ``location`` (a local directory, ``gs://…`` or ``s3://…``)."""

    location: str
    gcs_endpoint: str | None = None
    s3_endpoint: str | None = None

    @property
    def remote(self) -> bool:
        return is_remote(self.location)

    @property
    def name(self) -> str:
        """The model's name: the repository's last path component, made safe for a URL."""
        last = PurePosixPath(self.location.split("?", 1)[0].rstrip("/")).name
        return artifact_name(last + ".model") if last else "model"

    def labels(self) -> list[str]:
        """Every version folder's label, oldest first. Raises :class:`ModelLoadError` when
        the repository cannot be read or holds no version."""
        found = self._remote_labels() if self.remote else self._local_labels()
        labels = order_labels(label for label in found if _LABEL.match(label))
        if not labels:
            raise ModelLoadError(
                self.location,
                "no versions: a model repository holds one folder per version "
                "(e.g. 1/model.joblib, 2/model.onnx)",
            )
        return labels

    def latest(self) -> str:
        return self.labels()[-1]

    def source(self, label: str) -> ModelSource:
        """Where version ``label``'s artifact is (a local file, or a remote folder)."""
        check_label(label)
        if self.remote:
            return ModelSource("remote", f"{self.location.rstrip('/')}/{label}/")
        folder = Path(self.location) / label
        if not folder.is_dir():
            known = ", ".join(order_labels(self._local_labels())[:20]) or "none"
            raise ModelLoadError(str(folder), f"no version {label!r} (versions here: {known})")
        return ModelSource("path", str(artifact_of(folder)))

    def _local_labels(self) -> list[str]:
        root = Path(self.location)
        if not root.is_dir():
            raise ModelLoadError(self.location, "no such directory")
        try:
            return [entry.name for entry in root.iterdir() if entry.is_dir()]
        except OSError as exc:
            raise ModelLoadError(self.location, exc.strerror or str(exc)) from exc

    def _remote_labels(self) -> list[str]:
        from servepath.model.storage import list_folders

        return list_folders(
            self.location, gcs_endpoint=self.gcs_endpoint, s3_endpoint=self.s3_endpoint
        )


def artifact_of(folder: Path) -> Path:
    """The artifact in a version folder: a Vertex AI name, else its one model file."""
    for name in ARTIFACT_NAMES:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(
        entry
        for entry in folder.iterdir()
        if entry.is_file() and entry.suffix.lower() in _ARTIFACT_SUFFIXES
    )
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ModelLoadError(
            str(folder), f"no artifact: a version folder holds {' or '.join(ARTIFACT_NAMES)}"
        )
    names = ", ".join(c.name for c in candidates[:5])
    raise ModelLoadError(
        str(folder), f"more than one artifact ({names}): name the one to serve model.onnx "
        "or model.joblib"
    )  # fmt: skip
