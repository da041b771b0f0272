"""Wait until a URL answers: the loop every test that starts a server needs."""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx

#: Runs one GET somewhere else (in a network namespace: ``lambda get: net.call(node, get)``).
Runner = Callable[[Callable[[], httpx.Response]], httpx.Response]


def wait_until_answers(
    url: str,
    *,
    timeout: float = 30,
    expect: int | None = 200,
    process: subprocess.Popen[Any] | None = None,
    verify: ssl.SSLContext | bool = True,
    run: Runner | None = None,
    interval: float = 0.05,
) -> httpx.Response:
    """GET ``url`` until it answers ``expect`` (any status when None), and return the answer.

    ``process`` is the server: its exit ends the wait at once. Proxy variables are ignored.
    Raises TimeoutError naming the last status or error.
    """

    def get() -> httpx.Response:
        return httpx.get(url, timeout=2, trust_env=False, verify=verify)

    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise TimeoutError(f"the server exited with code {process.returncode}")
        try:
            response = run(get) if run is not None else get()
            if expect is None or response.status_code == expect:
                return response
            last = f"status {response.status_code}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(interval)
    raise TimeoutError(f"{url} did not answer {expect or 'at all'} within {timeout}s ({last})")
