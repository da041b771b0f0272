"""The load command as a typed call: which options go together, and what a run sends."""

from __future__ import annotations

import pytest

from servepath.client import Trust
from servepath.errors import UsageError
from servepath.load.capacity import parse_slo
from servepath.load.run import LoadRequest

URL = "http://127.0.0.1:1/decisions"


def request(**changes: object) -> LoadRequest:
    return LoadRequest(url=URL, trust=Trust(), **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"rate": 5.0, "concurrency": (2,)},
        {"rate": -3.0},
        {"concurrency": (1, 4), "find_max": True, "slo": parse_slo("p99=50ms")},
        {"find_max": True},
        {"target_rps": 100.0, "slo": parse_slo("p99=50ms")},
        {"repeat": True, "unique": 0.5},
        {"unique": 1.5},
    ],
)
def test_options_that_do_not_go_together_are_usage_errors(changes: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        request(**changes).check()


def test_a_url_that_is_not_http_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        LoadRequest(url="ftp://host/", trust=Trust()).check()


def test_fresh_instances_by_default_and_none_with_data_or_repeat() -> None:
    assert request().fresh_share == 1.0
    assert request(instances=({"x": 1},)).fresh_share == 0.0
    assert request(repeat=True).fresh_share == 0.0
    assert request(unique=0.25).fresh_share == 0.25
