"""What `serve` checks before it starts: files named, the port, the example model."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from servepath.config import Settings
from servepath.errors import BindFailed, ConfigError
from servepath.service import preflight
from tests.support import free_port


def test_a_model_file_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, model_path=tmp_path / "missing.joblib")
    with pytest.raises(ConfigError, match="does not exist"):
        preflight.check_settings(settings)


def test_a_taken_port_fails_to_bind_naming_the_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(data_dir=tmp_path, host="127.0.0.1", port=port)
        with pytest.raises(BindFailed, match=str(port)):
            preflight.bind(settings)


def test_a_free_port_is_bound_before_any_model_loads(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, host="127.0.0.1", port=free_port())
    listeners = preflight.bind(settings)
    try:
        assert listeners.main.getsockname()[0] == "127.0.0.1" and listeners.redirect is None
    finally:
        listeners.main.close()


def test_no_example_model_is_trained_when_a_model_is_given(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, model_path=tmp_path / "model.joblib")
    assert preflight.ensure_example_model(settings) is None


def test_the_banner_says_where_it_listens() -> None:
    lines = preflight.banner_lines(Settings(host="127.0.0.1", port=8080))
    assert lines[0].startswith("servepath listening on 127.0.0.1:8080")
