"""A model repository for the version tests: three versions of the example's task.

``1`` is the example model; ``2`` is the same fitted pipeline written again with compression
(other bytes, so another content version, and the same answers); ``3`` is trained on far
fewer rows with another seed, so its answers differ from ``1``'s on some instances.
"""

from __future__ import annotations

import shutil
from pathlib import Path

KEYS = {"admin": "a" * 24, "user": "u" * 24}


def build_repository(root: Path, example: Path) -> Path:
    import joblib

    from servepath.model.example import write_example

    repo = root / "fraud"
    (repo / "1").mkdir(parents=True)
    shutil.copy(example, repo / "1" / "model.joblib")
    (repo / "2").mkdir()
    joblib.dump(joblib.load(example), repo / "2" / "model.joblib", compress=3)
    write_example(repo / "3" / "model.joblib", rows=600, seed=11)
    return repo


def write_keys(path: Path) -> Path:
    path.write_text("".join(f"{name}:{key}\n" for name, key in KEYS.items()))
    path.chmod(0o600)
    return path


def admin() -> dict[str, str]:
    return {"X-API-Key": KEYS["admin"]}


def user() -> dict[str, str]:
    return {"X-API-Key": KEYS["user"]}
