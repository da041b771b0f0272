"""/docs works with no network: Swagger UI's assets come from the server itself."""

from __future__ import annotations

import re

import httpx
import pytest

from servepath.service.docs_assets import ASSET_ROUTES, INIT_ROUTE

pytestmark = pytest.mark.anyio


async def test_docs_links_only_its_own_assets_and_its_policy_allows_only_this_server(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert links and all(link.startswith("/") and not link.startswith("//") for link in links)
    assert set(links) == {*ASSET_ROUTES, INIT_ROUTE, "/openapi.json"}
    policy = page.headers["content-security-policy"]
    script_src = next(p for p in policy.split("; ") if p.startswith("script-src"))
    assert script_src == "script-src 'self'"
    assert "http" not in policy


async def test_the_assets_are_swagger_ui_5_served_with_their_types_and_cached(
    client: httpx.AsyncClient,
) -> None:
    bundle = await client.get("/docs/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert 'PACKAGE_VERSION:"5.' in bundle.text  # OpenAPI 3.1 needs Swagger UI 5
    css = await client.get("/docs/swagger-ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    init = await client.get(INIT_ROUTE)
    assert "/openapi.json" in init.text
    again = await client.get(
        "/docs/swagger-ui-bundle.js", headers={"If-None-Match": bundle.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""
    assert "max-age" in bundle.headers["cache-control"]
