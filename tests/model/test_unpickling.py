"""A joblib file that refers to code this process cannot import says which and how to fix it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from servepath.errors import ModelLoadError
from servepath.model.loaded import load_model

TRAIN = """
import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline


class Clip(BaseEstimator, TransformerMixin):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.clip(X, 0, 10)


frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
joblib.dump(make_pipeline(Clip(), LogisticRegression()).fit(frame, [0, 0, 1, 1]), {path!r})
"""


def _train(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "model.joblib"
    code = textwrap.dedent(script).replace("{path!r}", repr(str(path)))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=tmp_path)
    return path


def test_a_class_from_the_training_script_is_named_with_the_fix(tmp_path: Path) -> None:
    path = _train(tmp_path, TRAIN)
    with pytest.raises(ModelLoadError) as caught:
        load_model(path)
    message = str(caught.value)
    assert "'Clip'" in message and "__main__" in message
    assert "PYTHONPATH" in message and "not a joblib file" not in message


def test_a_module_that_is_not_installed_is_named(tmp_path: Path) -> None:
    (tmp_path / "mylib_24.py").write_text("class Box:\n    pass\n")
    script = "import joblib, mylib_24\njoblib.dump(mylib_24.Box(), {path!r})\n"
    path = _train(tmp_path, script)
    (tmp_path / "mylib_24.py").unlink()
    with pytest.raises(ModelLoadError, match=r"'mylib_24'.*PYTHONPATH"):
        load_model(path)
