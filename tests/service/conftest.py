from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from servepath.cache.base import NoCache
from servepath.config import Settings
from servepath.model.loaded import LoadedModel
from servepath.ratelog import RateLimitedWarning
from servepath.service.app import ServepathApp
from servepath.store.base import NoLog


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
async def app(settings: Settings, example_model: LoadedModel) -> AsyncIterator[ServepathApp]:
    app = ServepathApp(settings, model=example_model, cache=NoCache(), store=NoLog())
    await app.startup()
    yield app
    await app.shutdown()


@pytest.fixture
async def client(app: ServepathApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51515))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def connection_limit_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh "connection limit reached" limiter: it logs at most once per 10 s per process,
    so a test of its line must not follow, in the same process, another test that reached it."""
    from servepath.service import protocol, tls_listener

    fresh = RateLimitedWarning(
        protocol.CONNECTION_LIMIT_WARNING.logger, protocol.CONNECTION_LIMIT_WARNING.message
    )
    monkeypatch.setattr(protocol, "CONNECTION_LIMIT_WARNING", fresh)
    monkeypatch.setattr(tls_listener, "CONNECTION_LIMIT_WARNING", fresh)
