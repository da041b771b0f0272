"""Fixtures shared by the whole suite."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
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


#: The loggers `serve` configures (service/server.py's logging_config), and the root.
_CONFIGURED_LOGGERS = ("", "servepath", "servepath.access", "uvicorn", "uvicorn.error",
                       "uvicorn.access")  # fmt: skip


@contextlib.contextmanager
def _loggers_kept() -> Iterator[None]:
    saved = [
        (lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled)
        for lg in map(logging.getLogger, _CONFIGURED_LOGGERS)
    ]
    try:
        yield
    finally:
        for lg, handlers, level, propagate, disabled in saved:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate, lg.disabled = propagate, disabled


# A test (or a module's fixture) that runs `serve` in the test process configures logging to
# whatever ``sys.stderr`` was then (a CliRunner's stream, closed when it returns): every
# logger is put back after each test and after each module, so that what runs next in the
# process does not log into a closed stream.
@pytest.fixture(autouse=True, scope="module")
def _loggers_kept_per_module() -> Iterator[None]:
    with _loggers_kept():
        yield


@pytest.fixture(autouse=True)
def _loggers_kept_per_test() -> Iterator[None]:
    with _loggers_kept():
        yield


# --- markers by place -------------------------------------------------------------------------
# `pytest -m pure` runs the logic: no root, no server process, no Docker, no browser, no model
# training (loopback sockets at most), in seconds. tests/topology builds real network
# namespaces as root: all of it is `net`. A test marked `net` or `slow` is never `pure`.
_TESTS = Path(__file__).resolve().parent
_NET = ("topology/",)
_PURE = (
    "net/",
    "netdiag/doctor/",
    "netdiag/test_mtu_logic.py",
    "netdiag/test_netns.py",
    "netdiag/test_ports_logic.py",
    "netdiag/test_services.py",
    "netdiag/test_trace_logic.py",
    "regions/test_catalogue.py",
    "regions/test_model.py",
    "regions/test_place.py",
    "drift/test_stats.py",
    "load/test_capacity.py",
    "load/test_histogram.py",
    "load/test_payloads.py",
    "load/test_recorder.py",
    "load/test_render.py",
    "load/test_sampling.py",
    "load/test_schedule.py",
    "model/test_profile.py",
    "model/test_race.py",
    "report/test_doctor_picture.py",
    "report/test_load_page.py",
    "service/test_admission.py",
    "service/test_auth.py",
    "service/test_jsonbody.py",
    "service/test_sketch.py",
    "service/test_ui_ring.py",
    "cache/test_memory.py",
    "cli/test_output.py",
    "test_contract.py",
    "test_layering.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        where = item.path.resolve().relative_to(_TESTS).as_posix()
        if where.startswith(_NET):
            item.add_marker(pytest.mark.net)
        if where.startswith(_PURE) and not any(
            item.get_closest_marker(name) for name in ("net", "slow")
        ):
            item.add_marker(pytest.mark.pure)
