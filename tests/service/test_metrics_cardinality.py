"""Metrics by route template on real sockets: a caller chooses paths, names and methods, never
labels; the scrape stays the same size whatever it sends."""

from __future__ import annotations

import random
import re
import socket
from collections.abc import Iterator

import httpx
import pytest

from servepath.config import Settings
from servepath.model.loaded import LoadedModel
from tests.service.live import LiveServer, Responses, connect, live_server


@pytest.fixture
def server(example_model: LoadedModel) -> Iterator[LiveServer]:
    with live_server(Settings(store_url="off", cache_url="off"), example_model) as live:
        yield live


def routes_labelled(text: str) -> set[str]:
    return set(re.findall(r'servepath_http_requests_total\{[^}]*route="([^"]*)"', text))


def send_all(s: socket.socket, requests: list[bytes]) -> list[int]:
    """Pipeline ``requests`` in groups on one keep-alive connection; their statuses."""
    reader = Responses(s)
    statuses = []
    for start in range(0, len(requests), 16):
        group = requests[start : start + 16]
        s.sendall(b"".join(group))
        statuses += [reader.next()[0] for _ in group]
    return statuses


def junk(rng: random.Random, i: int, model: str) -> bytes:
    word = f"{rng.getrandbits(64):x}{i}"
    path = rng.choice(
        [
            f"/{word}",
            f"/v2/health/live{'/' * (1 + i % 50)}",
            f"/metrics{'/' * (1 + i % 50)}",
            f"/decisions{'/' * (1 + i % 7)}",
            f"/v2/models/{word}",
            f"/v2/models/{word}/ready",
            f"/v2/models/{word}/versions/{i}",
            f"/v2/models/{model}/versions/{word}/ready",
            f"/%2e%2e/{word}",
            f"/v2/{word}/infer",
            f"//{word}//",
        ]
    )
    # (no HEAD: its answer has a Content-Length and no body, which the reader cannot frame)
    method = rng.choice(["GET", "POST", "DELETE", "PROPFIND", "MKCOL", "PURGE", "LOCK"])
    body = b"{}" if method == "POST" else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def test_thousands_of_junk_paths_leave_the_metrics_page_the_same_size(
    server: LiveServer, example_model: LoadedModel
) -> None:
    rng = random.Random(17)
    with connect(server.port) as s:
        send_all(s, [junk(rng, i, example_model.name) for i in range(300)])
    first = httpx.get(server.url + "/metrics", timeout=10).text
    with connect(server.port) as s:
        statuses = send_all(s, [junk(rng, i, example_model.name) for i in range(300, 4300)])
    assert all(status < 500 for status in statuses)
    after = httpx.get(server.url + "/metrics", timeout=10).text
    # The same labels; only the counts' digits may grow.
    assert routes_labelled(after) <= routes_labelled(first) | {"/metrics"}
    assert len(after.splitlines()) <= len(first.splitlines()) + 40
    assert len(after) < len(first) * 1.2 + 4_000, (len(first), len(after))


def test_a_path_that_is_no_route_is_labelled_unknown(server: LiveServer) -> None:
    for path in ("/nope", "/v2/models", "/%2e%2e/metrics", "//", "/v2/health/livex"):
        httpx.get(server.url + path, timeout=10)
    labels = routes_labelled(httpx.get(server.url + "/metrics", timeout=10).text)
    assert "unknown" in labels
    assert not any("nope" in label or "%" in label or ".." in label for label in labels)


def test_model_routes_are_labelled_by_template_not_by_the_callers_name(
    server: LiveServer, example_model: LoadedModel
) -> None:
    for name in ("alpha", "beta", example_model.name):
        httpx.get(f"{server.url}/v2/models/{name}", timeout=10)
        httpx.get(f"{server.url}/v2/models/{name}/ready", timeout=10)
        httpx.post(f"{server.url}/v2/models/{name}/infer", json={}, timeout=10)
    labels = routes_labelled(httpx.get(server.url + "/metrics", timeout=10).text)
    assert {"/v2/models/{name}", "/v2/models/{name}/ready", "/v2/models/{name}/infer"} <= labels
    assert not any("alpha" in label or "beta" in label for label in labels)


@pytest.mark.parametrize("slashes", ["/", "////"])
def test_trailing_slashes_reach_the_route_and_count_under_its_template(
    server: LiveServer, example_model: LoadedModel, slashes: str
) -> None:
    for path, status in [
        ("/v2/health/live", 200),
        ("/v2/health/ready", 200),
        ("/metrics", 200),
        ("/", 200),
        (f"/v2/models/{example_model.name}", 200),
    ]:
        r = httpx.get(server.url + path.rstrip("/") + slashes, timeout=10)
        assert r.status_code == status, (path, r.text[:200])
    r = httpx.post(server.url + "/decisions" + slashes, json=example_model.schema.example())
    assert r.status_code == 200
    labels = routes_labelled(httpx.get(server.url + "/metrics", timeout=10).text)
    assert not any(label.endswith("/") and label != "/" for label in labels), labels
    assert {"/v2/health/live", "/metrics", "/decisions", "/v2/models/{name}"} <= labels


def test_rare_methods_share_one_label(server: LiveServer) -> None:
    with connect(server.port) as s:
        methods = ["PROPFIND", "MKCOL", "LOCK", "UNLOCK", "PURGE", "REPORT", "SEARCH", "COPY"]
        send_all(s, [f"{m} /metrics HTTP/1.1\r\nHost: t\r\n\r\n".encode() for m in methods])
    text = httpx.get(server.url + "/metrics", timeout=10).text
    assert 'method="other",route="/metrics",status="405"} 8.0' in text
    assert "PROPFIND" not in text
