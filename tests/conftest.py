"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from servepath.model.loaded import LoadedModel, load_model


@pytest.fixture(scope="session")
def example_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example model, trained once per test session (a few seconds)."""
    from servepath.model.example import write_example

    path = tmp_path_factory.mktemp("models") / "example-model.joblib"
    write_example(path)
    return path


@pytest.fixture(scope="session")
def example_model(example_model_path: Path) -> LoadedModel:
    return load_model(example_model_path)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
