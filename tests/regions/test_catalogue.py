"""The region catalogue: complete enough, internally consistent, and helpful about typos."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from servepath.errors import UnknownRegion
from servepath.regions.catalogue import (
    PROVIDERS,
    all_regions,
    close_matches,
    get_region,
    regions_of,
    resolve_regions,
)
from servepath.regions.model import great_circle_km


def test_region_ids_are_unique_across_providers() -> None:
    ids = [r.id for r in all_regions()]
    assert len(ids) == len(set(ids))


def test_every_provider_has_its_regions() -> None:
    counts = {p: len(regions_of(p)) for p in PROVIDERS}
    assert counts["gcp"] >= 40
    assert counts["aws"] >= 30
    assert counts["azure"] >= 50
    assert sum(counts.values()) == len(all_regions())
    assert regions_of(None) == all_regions()


def test_coordinates_are_valid_degrees_and_never_the_null_island() -> None:
    for r in all_regions():
        assert -90 <= r.latitude <= 90, r
        assert -180 <= r.longitude <= 180, r
        assert (r.latitude, r.longitude) != (0.0, 0.0), r
        assert r.city and r.country, r


def test_regions_in_the_same_city_sit_within_50_km_of_each_other() -> None:
    # Catches a mistyped coordinate: the same city entered twice must land in the same place.
    by_city: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for r in all_regions():
        by_city[(r.city.split(",")[0].split(" (")[0], r.country)].append((r.latitude, r.longitude))
    checked = 0
    for city, points in by_city.items():
        for (la1, lo1), (la2, lo2) in itertools.combinations(points, 2):
            assert great_circle_km(la1, lo1, la2, lo2) < 50, city
            checked += 1
    assert checked > 20


@pytest.mark.parametrize(
    ("region_id", "city", "country"),
    [
        ("europe-central2", "Warsaw", "Poland"),
        ("europe-west1", "St. Ghislain", "Belgium"),
        ("us-central1", "Council Bluffs, Iowa", "United States"),
    ],
)
def test_the_calibration_regions_are_where_google_says(
    region_id: str, city: str, country: str
) -> None:
    region = get_region(region_id)
    assert (region.provider, region.city, region.country) == ("gcp", city, country)


def test_calibration_regions_are_on_the_right_side_of_the_world() -> None:
    warsaw, belgium, iowa = (
        get_region(i) for i in ("europe-central2", "europe-west1", "us-central1")
    )
    assert warsaw.longitude > belgium.longitude > 0 > iowa.longitude
    assert 50 < warsaw.latitude < 53 and 50 < belgium.latitude < 51 and 41 < iowa.latitude < 42


def test_lookup_ignores_case_and_surrounding_space() -> None:
    assert get_region("  Europe-Central2 ").id == "europe-central2"


def test_unknown_region_suggests_the_nearest_spelling() -> None:
    with pytest.raises(UnknownRegion) as caught:
        get_region("europe-centrl2")
    assert caught.value.suggestions[0] == "europe-central2"
    assert "did you mean europe-central2" in str(caught.value)


def test_a_city_name_suggests_the_regions_in_that_city() -> None:
    assert {"europe-central2", "polandcentral"} <= set(close_matches("warsaw"))
    with pytest.raises(UnknownRegion) as caught:
        get_region("Frankfurt")
    assert {"europe-west3", "eu-central-1", "germanywestcentral"} <= set(caught.value.suggestions)


def test_nonsense_gets_no_suggestions_but_still_a_clear_message() -> None:
    with pytest.raises(UnknownRegion) as caught:
        get_region("qqqqqq")
    assert caught.value.suggestions == ()
    assert "servepath regions list" in str(caught.value)


def test_resolve_regions_keeps_order_and_drops_repeats() -> None:
    ids = [r.id for r in resolve_regions(["us-east1", "europe-west1", "US-EAST1"])]
    assert ids == ["us-east1", "europe-west1"]


def test_region_json_has_every_field() -> None:
    data = get_region("eu-west-1").to_json()
    assert data == {
        "id": "eu-west-1",
        "provider": "aws",
        "city": "Dublin",
        "country": "Ireland",
        "latitude": 53.3498,
        "longitude": -6.2603,
    }
