"""The diagnostic routes on a real server: a flood of live-page polls is refused at once with
503 and Retry-After past the route's budget, counted in the metrics, while predictions and the
operator's scrape of /metrics (which no budget bounds) are answered as before."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from servepath.config import Settings
from servepath.model.example import EXAMPLE_APPLICANT
from servepath.model.loaded import LoadedModel
from servepath.service.admission import Diagnostics, RateLimits
from tests.service.live import LiveServer, live_server

pytestmark = pytest.mark.anyio

#: A budget of five polls and then one every hundred seconds: the flood below spends it.
SMALL = RateLimits(rate=0.01, burst=5)
FLOOD = 100


@pytest.fixture
def server(example_model: LoadedModel) -> Iterator[LiveServer]:
    with live_server(Settings(store_url="off", cache_url="off"), example_model) as live:
        plane = live.app.plane
        plane.diagnostics = Diagnostics(plane.admission, SMALL)
        yield live


async def test_a_flood_of_page_polls_is_refused_and_predictions_and_scrapes_go_on(
    server: LiveServer,
) -> None:
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=server.url, trust_env=False, limits=limits) as client:
        flood = [client.get("/_ui/data") for _ in range(FLOOD)]
        prediction = client.post("/decisions", json=EXAMPLE_APPLICANT)
        *polls, predicted = await asyncio.gather(*flood, prediction)
        scrape = await client.get("/metrics")
        echo = await client.get("/_path")

    statuses = Counter(r.status_code for r in polls)
    assert statuses[200] <= SMALL.burst + 1 and statuses[503] >= FLOOD - SMALL.burst - 1, statuses
    assert set(statuses) <= {200, 503}
    refused = [r for r in polls if r.status_code == 503]
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert refused[0].json()["reason"] == "overloaded"
    assert predicted.status_code == 200, predicted.text
    # The path echo shares the page's budget, spent by the flood; the scrape is not bounded.
    assert echo.status_code == 503
    assert scrape.status_code == 200
    counted = re.search(
        r'servepath_diagnostic_refused_total\{reason="rate",route="/_ui/data"\} (\S+)',
        scrape.text,
    )
    assert counted and float(counted.group(1)) == statuses[503], scrape.text[-2000:]
