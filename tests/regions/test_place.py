"""Placement: ranking regions for a population of callers."""

from __future__ import annotations

import math

import pytest

from servepath.errors import BadCallers
from servepath.regions.catalogue import Region, get_region
from servepath.regions.model import DEFAULT_MODEL, LatencyModel
from servepath.regions.place import parse_callers, place


def r(region_id: str) -> Region:
    return get_region(region_id)


WARSAW, SOUTH_CAROLINA, LONDON, TOKYO = (
    r("europe-central2"),
    r("us-east1"),
    r("europe-west2"),
    r("asia-northeast1"),
)


def test_callers_all_in_one_region_put_the_service_there() -> None:
    ranked = place({WARSAW: 1}, [TOKYO, SOUTH_CAROLINA, WARSAW, LONDON])
    assert [p.region.id for p in ranked] == [
        "europe-central2",
        "europe-west2",
        "us-east1",
        "asia-northeast1",
    ]
    assert ranked[0].mean_rtt_ms == ranked[0].worst_rtt_ms == DEFAULT_MODEL.same_region_ms
    assert [p.rank for p in ranked] == [1, 2, 3, 4]


def test_mostly_european_callers_favour_warsaw_and_tokyo_is_last() -> None:
    ranked = place({WARSAW: 70, SOUTH_CAROLINA: 30}, [TOKYO, SOUTH_CAROLINA, WARSAW])
    assert [p.region.id for p in ranked] == ["europe-central2", "us-east1", "asia-northeast1"]
    best = ranked[0]
    warsaw_to_sc = DEFAULT_MODEL.rtt_ms(WARSAW, SOUTH_CAROLINA)
    assert best.mean_rtt_ms == pytest.approx(0.7 * 0.5 + 0.3 * warsaw_to_sc)
    assert best.worst_caller == "us-east1"
    assert best.worst_rtt_ms == pytest.approx(warsaw_to_sc)


def test_ranking_by_worst_caller_prefers_the_region_between_the_callers() -> None:
    callers = {WARSAW: 70, SOUTH_CAROLINA: 30}
    by_mean = place(callers, [WARSAW, LONDON], by="mean")
    by_worst = place(callers, [WARSAW, LONDON], by="worst")
    assert by_mean[0].region == WARSAW
    assert by_worst[0].region == LONDON
    assert by_worst[0].worst_rtt_ms < by_worst[1].worst_rtt_ms


def test_weights_are_shares_whatever_their_scale() -> None:
    a = place({WARSAW: 70, SOUTH_CAROLINA: 30}, [LONDON])[0]
    b = place({WARSAW: 0.7, SOUTH_CAROLINA: 0.3}, [LONDON])[0]
    assert a.mean_rtt_ms == pytest.approx(b.mean_rtt_ms)
    assert [c.weight for c in a.callers] == pytest.approx([0.7, 0.3])


def test_equal_candidates_are_ordered_by_id() -> None:
    # Two providers' regions in Warsaw are the same distance from every caller.
    ranked = place({LONDON: 1, SOUTH_CAROLINA: 1}, [r("polandcentral"), WARSAW])
    assert ranked[0].mean_rtt_ms == pytest.approx(ranked[1].mean_rtt_ms)
    assert [p.region.id for p in ranked] == ["europe-central2", "polandcentral"]


def test_equal_means_fall_back_to_the_worst_caller() -> None:
    # On the equator, with RTT proportional to distance: a candidate at one caller's place and
    # one halfway between two equal callers have the same mean; the halfway one serves its
    # worst caller better, and wins although its id sorts last.
    def equator(region_id: str, longitude: float) -> Region:
        return Region(region_id, "gcp", region_id, "nowhere", 0.0, longitude)

    linear = LatencyModel(base_ms=0.0, stretch=1.0, same_region_ms=0.0)
    callers = {equator("c-west", 0.0): 1.0, equator("c-east", 20.0): 1.0}
    edge, middle = equator("a-edge", 0.0), equator("z-middle", 10.0)
    ranked = place(callers, [edge, middle], model=linear)
    assert ranked[0].mean_rtt_ms == pytest.approx(ranked[1].mean_rtt_ms)
    assert [p.region.id for p in ranked] == ["z-middle", "a-edge"]
    assert ranked[1].worst_caller == "c-east"


def test_a_caller_without_traffic_is_never_the_worst_caller() -> None:
    best = place({WARSAW: 1, TOKYO: 0}, [WARSAW])[0]
    assert best.worst_caller == "europe-central2"
    assert best.worst_rtt_ms == DEFAULT_MODEL.same_region_ms


def test_repeated_candidates_are_ranked_once() -> None:
    assert len(place({WARSAW: 1}, [LONDON, LONDON, WARSAW])) == 2


@pytest.mark.parametrize(
    "callers",
    [{}, {WARSAW: 0.0}, {WARSAW: -1.0}, {WARSAW: math.nan}, {WARSAW: math.inf}],
    ids=["none", "all-zero", "negative", "nan", "inf"],
)
def test_unusable_caller_weights_are_refused(callers: dict[Region, float]) -> None:
    with pytest.raises(BadCallers):
        place(callers, [LONDON])


def test_no_candidates_is_refused() -> None:
    with pytest.raises(BadCallers, match="no candidate"):
        place({WARSAW: 1}, [])


def test_parse_callers_reads_weights_and_defaults_to_one() -> None:
    assert parse_callers("europe-central2=70, us-east1=30%") == [
        ("europe-central2", 70.0),
        ("us-east1", 30.0),
    ]
    assert parse_callers("a,b,") == [("a", 1.0), ("b", 1.0)]


@pytest.mark.parametrize("text", ["", " , ", "=5", "europe-central2=lots"])
def test_parse_callers_rejects_malformed_lists(text: str) -> None:
    with pytest.raises(BadCallers):
        parse_callers(text)


def test_placement_json_names_the_region_and_rounds_ms() -> None:
    data = place({WARSAW: 1}, [LONDON])[0].to_json()
    assert data["region"] == "europe-west2" and data["provider"] == "gcp"
    assert data["mean_rtt_ms"] == round(DEFAULT_MODEL.rtt_ms(WARSAW, LONDON), 1)
    assert data["callers"] == [
        {"region": "europe-central2", "weight": 1.0, "rtt_ms": data["mean_rtt_ms"]}
    ]
