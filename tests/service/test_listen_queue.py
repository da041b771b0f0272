"""The accept queue is part of the building: its bound is a flag, and a scrape reports it."""

from __future__ import annotations

import re

import httpx
import pytest

from servepath.config import Settings
from servepath.errors import ConfigError
from servepath.model.loaded import LoadedModel
from tests.service.live import live_server


def test_the_backlog_is_a_setting_with_a_sane_range() -> None:
    assert Settings().backlog == 4096
    assert Settings.from_env({"SERVEPATH_BACKLOG": "128"}).backlog == 128
    for bad in (0, 70000):
        with pytest.raises(ConfigError, match="backlog"):
            Settings(backlog=bad)


def test_a_scrape_reports_the_listen_queue_its_bound_and_the_kernels_overflows(
    example_model: LoadedModel,
) -> None:
    with live_server(Settings(store_url="off", backlog=64), example_model) as live:
        text = httpx.get(live.url + "/metrics", timeout=10).text
    assert re.search(r"^servepath_listen_backlog 64\.0$", text, re.M), text
    queued = re.search(r"^servepath_listen_queue (\S+)$", text, re.M)
    assert queued is not None and float(queued.group(1)) >= 0
    assert re.search(r"^servepath_kernel_listen_overflows \d+", text, re.M)
    assert re.search(r"^servepath_kernel_listen_drops \d+", text, re.M)
