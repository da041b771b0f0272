"""Where a model's input schema comes from: the one rule for the schema file's name, and the
words that say which source was used.

The rule: the schema file of an artifact is the artifact's whole file name followed by
``.schema.json``, beside it — ``numeric.onnx`` reads ``numeric.onnx.schema.json``,
``model.joblib`` reads ``model.joblib.schema.json``. ``--schema FILE`` names another file.
A file that a person plausibly meant instead (``numeric.schema.json``) is never read, but it
is named, so that a schema that seems ignored says why.

Pure but for looking at the directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

#: What follows the artifact's file name in its schema file's name.
SUFFIX = ".schema.json"
#: The rule, in the words README.md, docs/models.md and ``--help`` all use.
RULE = (
    "the artifact's whole file name + .schema.json, beside it: "
    "numeric.onnx reads numeric.onnx.schema.json"
)

SourceKind = Literal["file", "metadata", "graph", "model"]


def schema_file_for(artifact: Path) -> Path:
    """The schema file read for ``artifact`` when no ``--schema`` is given."""
    return artifact.with_name(artifact.name + SUFFIX)


def near_misses(artifact: Path) -> tuple[Path, ...]:
    """Files beside ``artifact`` that look meant as its schema file but are not read: its
    stem + ``.schema.json`` (``numeric.schema.json``), or its name + ``.json``."""
    wanted = schema_file_for(artifact)
    names = [artifact.stem + SUFFIX, artifact.name + ".json", artifact.stem + ".json"]
    found: list[Path] = []
    for name in dict.fromkeys(names):
        candidate = artifact.with_name(name)
        if candidate != wanted and candidate != artifact and candidate.is_file():
            found.append(candidate)
    return tuple(found)


def misnamed_note(artifact: Path, misses: tuple[Path, ...]) -> str | None:
    """The sentence that names a plausible but unread schema file, or None."""
    if not misses:
        return None
    found = ", ".join(p.name for p in misses)
    return (
        f"found {found}; the schema file for {artifact.name} is named "
        f"{schema_file_for(artifact).name} (not read: rename it, or pass --schema)"
    )


@dataclass(frozen=True)
class SchemaSource:
    """Which source a model's input schema was read from."""

    kind: SourceKind
    path: Path | None = None  # the schema file, for kind "file"
    #: A plausible but wrongly named schema file beside the artifact (not read).
    misnamed: tuple[Path, ...] = ()

    def describe(self) -> str:
        if self.kind == "file":
            return f"the schema file {self.path}"
        if self.kind == "metadata":
            return "the ONNX metadata key servepath.schema"
        if self.kind == "graph":
            return "inferred from the ONNX graph"
        return "read from the model (the columns it was fitted on and what its steps learned)"

    def note(self, artifact: Path) -> str | None:
        return misnamed_note(artifact, self.misnamed)

    def to_json(self, artifact: Path) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": str(self.path) if self.path is not None else None,
            "description": self.describe(),
            "expected_file": str(schema_file_for(artifact)),
            "misnamed": [str(p) for p in self.misnamed],
            "note": self.note(artifact),
        }
