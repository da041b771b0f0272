"""What a caller from elsewhere without a key learns of the server: not its data directory,
a database's error text, its hostname or pid; a caller on this machine or with a key does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from servepath.cache.base import NoCache
from servepath.config import Settings
from servepath.model.loaded import LoadedModel
from servepath.service.app import ServepathApp
from servepath.store import open_log

pytestmark = pytest.mark.anyio
KEY = "disclosure-key-0123456789"

Client = Callable[[str], httpx.AsyncClient]


@pytest.fixture
async def clients(tmp_path: Path, example_model: LoadedModel) -> AsyncIterator[Client]:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"ops:{KEY}\n")
    settings = Settings(data_dir=tmp_path / "secret-data-dir", api_key_file=keys)
    app = ServepathApp(settings, model=example_model, cache=NoCache(), store=open_log(settings))
    await app.startup()
    made: list[httpx.AsyncClient] = []

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        made.append(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
        return made[-1]

    yield client
    for c in made:
        await c.aclose()
    await app.shutdown()


async def test_health_keeps_the_data_directory_from_strangers(clients: Client) -> None:
    stranger = (await clients("203.0.113.7").get("/")).json()
    assert stranger["status"] == "ok"
    assert "secret-data-dir" not in str(stranger)
    assert stranger["store"]["detail"].startswith("withheld") and stranger["store"]["healthy"]
    local = (await clients("127.0.0.1").get("/")).json()
    assert "secret-data-dir" in local["store"]["detail"]
    keyed = await clients("203.0.113.7").get("/", headers={"X-API-Key": KEY})
    assert "secret-data-dir" in keyed.json()["store"]["detail"]


async def test_the_path_echo_names_the_host_only_to_insiders(clients: Client) -> None:
    keyed = await clients("203.0.113.7").get("/_path", headers={"X-API-Key": KEY})
    assert keyed.json()["hostname"] and keyed.json()["pid"]
    assert "withheld" not in keyed.json()
    local = await clients("::1").get("/_path", headers={"X-API-Key": KEY})
    assert local.json()["pid"]


async def test_a_spoofed_forwarded_loopback_is_no_insider(clients: Client) -> None:
    spoofed = await clients("203.0.113.7").get("/", headers={"X-Forwarded-For": "127.0.0.1"})
    assert spoofed.json()["store"]["detail"].startswith("withheld")


async def test_without_keys_strangers_get_the_path_but_not_the_host(
    tmp_path: Path, example_model: LoadedModel
) -> None:
    app = ServepathApp(Settings(data_dir=tmp_path), model=example_model, cache=NoCache(),
                       store=open_log(Settings(data_dir=tmp_path, store_url="off")))  # fmt: skip
    await app.startup()
    try:
        for address, insider in (("198.51.100.9", False), ("127.0.0.1", True)):
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                echo = (await c.get("/_path")).json()
            assert echo["peer"]["address"] == address
            assert (echo["hostname"] is not None) is insider
            assert (echo["pid"] is not None) is insider
            assert ("withheld" in echo) is not insider
            assert isinstance(echo["container"]["in_container"], bool)
    finally:
        await app.shutdown()
