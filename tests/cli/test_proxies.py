"""`request`, `http`, `load` and `doctor` read the proxy variables the same way: one resolver,
the same choice and the same reason for the same URL and environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.support import free_port

runner = CliRunner()
_CLEAN = {k: "" for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                          "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")}  # fmt: skip


def _invoke(args: list[str], env: dict[str, str]) -> Any:
    from servepath.cli import app

    result = runner.invoke(app, args, env={**_CLEAN, **env})
    document, _ = json.JSONDecoder().raw_decode(result.stdout)
    return document


def choices(url: str, env: dict[str, str], data: Path) -> dict[str, tuple[str | None, str]]:
    """The proxy (and why) each client command picked for ``url``."""
    request = _invoke(["request", url, "--json", "--timeout", "1", "-d", str(data)], env)
    http = _invoke(["http", url, "--json", "--timeout", "1"], env)
    load = _invoke(
        ["load", url, "--json", "--requests", "1", "--concurrency", "1", "--timeout", "1s",
         "--data", str(data)],
        env,
    )  # fmt: skip
    doctor = _invoke(
        ["doctor", url, "--json", "--timeout", "0.3", "--http-timeout", "1", "--large-kb", "0"],
        env,
    )
    local = next(s for s in doctor["stages"] if s["name"] == "local")["data"]
    local = local["proxy"] if isinstance(local.get("proxy"), dict) else local
    return {
        "request": (request["proxy"]["proxy"], request["proxy"]["reason"]),
        "http": (http["proxy"]["proxy"], http["proxy"]["reason"]),
        "load": (load["sending"]["proxy"], load["sending"]["proxy_reason"]),
        "doctor": (local["proxy"], local["reason"]),
    }


@pytest.mark.parametrize(
    ("env", "expect_proxy", "reason"),
    [
        ({"HTTP_PROXY": "PROXY"}, True, "HTTP_PROXY"),
        ({"http_proxy": "PROXY"}, True, "HTTP_PROXY"),
        ({"ALL_PROXY": "PROXY"}, True, "ALL_PROXY"),
        ({"HTTPS_PROXY": "PROXY"}, False, "no proxy variable applies"),  # an http:// URL
        ({"HTTP_PROXY": "PROXY", "NO_PROXY": "*"}, False, "NO_PROXY entry '*'"),
        ({"HTTP_PROXY": "PROXY", "no_proxy": "127.0.0.0/8"}, False, "NO_PROXY entry '127.0.0.0/8'"),
        ({"HTTP_PROXY": "PROXY", "NO_PROXY": "localhost,127.0.0.1:9999"}, False,
         "NO_PROXY entry '127.0.0.1:9999'"),
    ],
)  # fmt: skip
def test_every_client_command_picks_the_same_proxy_for_the_same_environment(
    env: dict[str, str], expect_proxy: bool, reason: str, tmp_path: Path
) -> None:
    data = tmp_path / "one.json"
    data.write_text('{"income": 1.0}')
    proxy = f"http://127.0.0.1:{free_port()}"  # nothing listens: no request leaves
    env = {k: proxy if v == "PROXY" else v for k, v in env.items()}
    url = f"http://127.0.0.1:{free_port()}/decisions"
    picked = choices(url, env, data)
    assert len(set(picked.values())) == 1, picked
    chosen, why = picked["request"]
    assert chosen == (proxy if expect_proxy else None)
    assert why.startswith(reason)


def test_ipv6_hosts_are_matched_by_no_proxy_in_every_spelling(tmp_path: Path) -> None:
    data = tmp_path / "one.json"
    data.write_text('{"income": 1.0}')
    proxy = f"http://127.0.0.1:{free_port()}"
    url = f"http://[::1]:{free_port('::1')}/decisions"
    for entry in ("::1", "[::1]", "[::1]:8080", "::/0"):
        picked = choices(url, {"HTTP_PROXY": proxy, "NO_PROXY": entry}, data)
        assert set(picked.values()) == {(None, f"NO_PROXY entry {entry!r} matches ::1")}, entry
