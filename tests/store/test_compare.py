"""`log compare` on SQLite and PostgreSQL: shadows paired with the requests they copied,
agreement and confusion for a classifier, differences for numbers, and the live split."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from servepath.cli import app
from servepath.store.compare import compare
from tests.store.conftest import Backend, make_record

pytestmark = pytest.mark.anyio
runner = CliRunner()

APPROVE = {"decision": "approve", "probability": 0.9}
DECLINE = {"decision": "decline", "probability": 0.3}


def _request(name: str, outputs: list[dict[str, Any]], **fields: Any) -> list[Any]:
    return [make_record(name, i, output=out, **fields) for i, out in enumerate(outputs)]


def _traffic() -> list[Any]:
    records = []
    # Four requests answered by version 1, each copied to shadow 3.
    answers = [
        ([APPROVE, APPROVE], [APPROVE, DECLINE]),
        ([DECLINE], [DECLINE]),
        ([APPROVE], [APPROVE]),
        ([DECLINE], [APPROVE]),
    ]
    for n, (primary, shadow) in enumerate(answers):
        records += _request(f"p{n}", primary, model_label="1", model_version="aaa",
                            latency_ms=2.0)  # fmt: skip
        records += _request(f"s{n}", shadow, model_label="3", model_version="ccc",
                            latency_ms=5.0, role="shadow", shadow_of=f"p{n}")  # fmt: skip
    # A candidate answered one caller; it has no shadow.
    records += _request("c0", [APPROVE], model_label="2", model_version="bbb",
                        role="candidate")  # fmt: skip
    return records


async def test_a_shadow_is_compared_with_the_answers_the_callers_got(
    backend: Backend, started
) -> None:
    log = await started(backend.log())
    log.record(_traffic())
    await log.close()
    with backend.reader() as reader:
        result = reader.compare()
        stats = reader.stats()
    [pair] = result.pairs
    assert (pair.primary, pair.shadow) == ("1 (aaa)", "3 (ccc)")
    assert (pair.requests, pair.instances) == (4, 5)
    assert pair.agreement == pytest.approx(3 / 5)
    assert pair.confusion == {"approve": {"approve": 2, "decline": 1},
                              "decline": {"approve": 1, "decline": 1}}  # fmt: skip
    assert pair.mean_abs_difference == pytest.approx((0.6 + 0.6) / 5)
    assert pair.latency_ms["1 (aaa)"]["p50"] == 2.0 and pair.latency_ms["3 (ccc)"]["p99"] == 5.0
    live = {(v.version, v.role): v.requests for v in result.live}
    assert live == {("1 (aaa)", "primary"): 4, ("2 (bbb)", "candidate"): 1}
    # What no caller saw is not in the statistics of what callers got.
    assert stats.requests == 5 and stats.predictions == 6


async def test_log_compare_prints_the_pair_and_the_split(backend: Backend, started) -> None:
    log = await started(backend.log())
    log.record(_traffic())
    await log.close()
    url = backend.location if backend.kind != "sqlite" else f"sqlite:///{backend.location}"
    result = runner.invoke(app, ["log", "compare", "--store", url])
    assert result.exit_code == 0, result.output
    assert "shadow 3 (ccc) against primary 1 (aaa): 4 requests, 5 instances" in result.output
    assert "agreement 60.0" in result.output
    as_json = runner.invoke(app, ["log", "compare", "--store", url, "--json"])
    data = orjson.loads(as_json.stdout)
    assert data["pairs"][0]["confusion"]["decline"] == {"approve": 1, "decline": 1}
    assert {v["role"] for v in data["live"]} == {"primary", "candidate"}


@pytest.mark.pure
def test_numbers_are_compared_by_their_difference() -> None:
    rows = [
        ("1", "aaa", "2", "bbb", "r1", 0, '{"value": 10.0}', '{"value": 10.0000000001}', 1, 2),
        ("1", "aaa", "2", "bbb", "r2", 0, '{"value": 5.0}', '{"value": 7.0}', 1, 2),
    ]
    [pair] = compare("test", None, rows, []).pairs
    assert pair.agreement == 0.5 and pair.confusion == {}
    assert pair.p99_abs_difference == pytest.approx(2.0)
