"""The live page with `servepath serve --workers 2`: whichever worker answers the page, its
list holds the requests every worker answered (each naming its worker), and a login's cookie
opens the page on every worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servepath.model.example import EXAMPLE_APPLICANT
from tests.support import ServerProcess, serve

pytestmark = pytest.mark.timeout(180)

KEY = "workers-key-0123456789abcdef"
WITH_KEY = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def two_workers(
    tmp_path_factory: pytest.TempPathFactory, example_model_path: Path
) -> Iterator[ServerProcess]:
    tmp_path = tmp_path_factory.mktemp("workers")
    keys = tmp_path / "keys.txt"
    keys.write_text(f"viewer:{KEY}\n")
    keys.chmod(0o600)
    args = ["--workers", "2", "--store", "off", "--api-key-file", str(keys)]
    with serve(tmp_path, model=example_model_path, args=args) as server:
        yield server


def _predictions_on_both_workers(server: ServerProcess) -> dict[str, int]:
    """Request id → the pid of the worker that answered it, until both workers answered."""
    answered: dict[str, int] = {}
    for n in range(300):
        # A new connection each time: the kernel hands it to either worker; the path echo on
        # the same connection names the worker that answered the prediction.
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
            rid = f"w-{n}"
            sent = c.post(
                "/decisions", json=EXAMPLE_APPLICANT, headers={**WITH_KEY, "X-Request-ID": rid}
            )
            assert sent.status_code == 200, sent.text
            answered[rid] = c.get("/_path", headers=WITH_KEY).json()["pid"]
        if len(set(answered.values())) == 2 and n >= 3:
            return answered
    pytest.fail(f"300 connections all went to one worker: {set(answered.values())}")


def test_the_page_lists_the_requests_of_every_worker_whichever_answers_it(
    two_workers: ServerProcess,
) -> None:
    answered = _predictions_on_both_workers(two_workers)
    pids = set(answered.values())
    with httpx.Client(base_url=two_workers.url, timeout=10, trust_env=False) as c:
        login = c.post("/_ui/login", data={"key": KEY, "next": "/_ui"})
        assert login.status_code == 303
        cookie = c.cookies["servepath_session"]
    complete_from: set[int] = set()  # workers whose page showed every request
    deadline = time.monotonic() + 60
    last: object = None
    while complete_from != pids and time.monotonic() < deadline:
        # The cookie of one login, on new connections: either worker checks it.
        with httpx.Client(base_url=two_workers.url, timeout=10, trust_env=False) as c:
            c.cookies.set("servepath_session", cookie)
            page = c.get("/_ui/data")
        assert page.status_code == 200, page.text
        data = page.json()
        shown = {r["request_id"]: r["pid"] for r in data["requests"]}
        last = {rid: shown.get(rid) for rid in answered}
        if all(shown.get(rid) == pid for rid, pid in answered.items()):
            complete_from.add(data["server"]["pid"])
        time.sleep(0.1)
    assert complete_from == pids, f"pages complete from {complete_from}; last seen {last}"
    assert data["server"]["ring"]["scope"] == "all workers"
