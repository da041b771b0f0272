"""The model zoo (bench/zoomodels.py), fitted small and loaded once per test session."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import zoomodels  # noqa: E402

from servepath.model.loaded import LoadedModel, load_model  # noqa: E402


@dataclass(frozen=True)
class Served:
    entry: zoomodels.ZooModel
    estimator: Any
    frame: Any  # the training frame
    path: Path
    model: LoadedModel


@pytest.fixture(scope="session")
def engines_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory, engines_cache: Path) -> dict[str, Served]:
    """Every zoo model, fitted on 1,200 seeded applicants and loaded (engines raced)."""
    import joblib

    folder = tmp_path_factory.mktemp("zoo")
    served = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and feature-name warnings of the fits
        for entry in zoomodels.ZOO:
            estimator, frame = zoomodels.fit(entry, "test")
            path = folder / f"{entry.name}.joblib"
            joblib.dump(estimator, path)
            model = load_model(path, cache_dir=engines_cache, race_budget_s=0.15)
            served[entry.name] = Served(entry, estimator, frame, path, model)
    return served
