"""Helpers shared by the whole suite: requirement checks that fail under CI instead of skipping."""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ALL = os.environ.get("SERVEPATH_REQUIRE_ALL") == "1"


def need(condition: bool, reason: str) -> None:
    """Skip the calling test when ``condition`` is false, or fail under SERVEPATH_REQUIRE_ALL=1.

    CI sets SERVEPATH_REQUIRE_ALL=1 so that a missing server, binary or privilege cannot
    hide behind a skip.
    """
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required for this test but missing: {reason}", pytrace=False)
    pytest.skip(reason)


def need_binary(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"{name} is not installed")
    assert path is not None
    return path


def need_root() -> None:
    need(os.geteuid() == 0, "needs root (ip netns, iptables)")
