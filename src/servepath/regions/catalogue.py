"""Where the public cloud regions are: id, provider, city, country and coordinates.

Coordinates are those of the city (or the town) each provider names for the region; the data
centres sit within a few tens of kilometres of it, which is below what the latency model can
resolve (10 km of fibre is 0.1 ms of round trip). Regions a provider has announced but not
opened are left out, and so are sovereign or restricted partitions (AWS GovCloud and China,
Azure's government clouds and partner-only regions such as Jio India).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from servepath.errors import UnknownRegion

Provider = Literal["gcp", "aws", "azure"]
PROVIDERS: tuple[Provider, ...] = get_args(Provider)

__all__ = [
    "PROVIDERS",
    "Provider",
    "Region",
    "UnknownRegion",
    "all_regions",
    "close_matches",
    "get_region",
    "regions_of",
    "resolve_regions",
]


@dataclass(frozen=True)
class Region:
    """One cloud region, placed at the city its provider names for it."""

    id: str
    provider: Provider
    city: str
    country: str
    latitude: float
    longitude: float

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "provider": self.provider,
            "city": self.city,
            "country": self.country,
            "latitude": self.latitude,
            "longitude": self.longitude,
        }


# (id, city, country, latitude, longitude)
_Row = tuple[str, str, str, float, float]

_GCP: tuple[_Row, ...] = (
    ("africa-south1", "Johannesburg", "South Africa", -26.2041, 28.0473),
    ("asia-east1", "Changhua County", "Taiwan", 24.0518, 120.5161),
    ("asia-east2", "Hong Kong", "Hong Kong", 22.3193, 114.1694),
    ("asia-northeast1", "Tokyo", "Japan", 35.6762, 139.6503),
    ("asia-northeast2", "Osaka", "Japan", 34.6937, 135.5023),
    ("asia-northeast3", "Seoul", "South Korea", 37.5665, 126.9780),
    ("asia-south1", "Mumbai", "India", 19.0760, 72.8777),
    ("asia-south2", "Delhi", "India", 28.7041, 77.1025),
    ("asia-southeast1", "Jurong West", "Singapore", 1.3404, 103.7090),
    ("asia-southeast2", "Jakarta", "Indonesia", -6.2088, 106.8456),
    ("australia-southeast1", "Sydney", "Australia", -33.8688, 151.2093),
    ("australia-southeast2", "Melbourne", "Australia", -37.8136, 144.9631),
    ("europe-central2", "Warsaw", "Poland", 52.2297, 21.0122),
    ("europe-north1", "Hamina", "Finland", 60.5693, 27.1878),
    ("europe-north2", "Stockholm", "Sweden", 59.3293, 18.0686),
    ("europe-southwest1", "Madrid", "Spain", 40.4168, -3.7038),
    ("europe-west1", "St. Ghislain", "Belgium", 50.4491, 3.8186),
    ("europe-west2", "London", "United Kingdom", 51.5074, -0.1278),
    ("europe-west3", "Frankfurt", "Germany", 50.1109, 8.6821),
    ("europe-west4", "Eemshaven", "Netherlands", 53.4386, 6.8355),
    ("europe-west6", "Zurich", "Switzerland", 47.3769, 8.5417),
    ("europe-west8", "Milan", "Italy", 45.4642, 9.1900),
    ("europe-west9", "Paris", "France", 48.8566, 2.3522),
    ("europe-west10", "Berlin", "Germany", 52.5200, 13.4050),
    ("europe-west12", "Turin", "Italy", 45.0703, 7.6869),
    ("me-central1", "Doha", "Qatar", 25.2854, 51.5310),
    ("me-central2", "Dammam", "Saudi Arabia", 26.4207, 50.0888),
    ("me-west1", "Tel Aviv", "Israel", 32.0853, 34.7818),
    ("northamerica-northeast1", "Montréal", "Canada", 45.5019, -73.5674),
    ("northamerica-northeast2", "Toronto", "Canada", 43.6532, -79.3832),
    ("northamerica-south1", "Querétaro", "Mexico", 20.5888, -100.3899),
    ("southamerica-east1", "Osasco (São Paulo)", "Brazil", -23.5325, -46.7917),
    ("southamerica-west1", "Santiago", "Chile", -33.4489, -70.6693),
    ("us-central1", "Council Bluffs, Iowa", "United States", 41.2619, -95.8608),
    ("us-east1", "Moncks Corner, South Carolina", "United States", 33.1960, -80.0131),
    ("us-east4", "Ashburn, Virginia", "United States", 39.0438, -77.4874),
    ("us-east5", "Columbus, Ohio", "United States", 39.9612, -82.9988),
    ("us-south1", "Dallas, Texas", "United States", 32.7767, -96.7970),
    ("us-west1", "The Dalles, Oregon", "United States", 45.5946, -121.1787),
    ("us-west2", "Los Angeles, California", "United States", 34.0522, -118.2437),
    ("us-west3", "Salt Lake City, Utah", "United States", 40.7608, -111.8910),
    ("us-west4", "Las Vegas, Nevada", "United States", 36.1699, -115.1398),
)

_AWS: tuple[_Row, ...] = (
    ("af-south-1", "Cape Town", "South Africa", -33.9249, 18.4241),
    ("ap-east-1", "Hong Kong", "Hong Kong", 22.3193, 114.1694),
    ("ap-east-2", "Taipei", "Taiwan", 25.0330, 121.5654),
    ("ap-northeast-1", "Tokyo", "Japan", 35.6762, 139.6503),
    ("ap-northeast-2", "Seoul", "South Korea", 37.5665, 126.9780),
    ("ap-northeast-3", "Osaka", "Japan", 34.6937, 135.5023),
    ("ap-south-1", "Mumbai", "India", 19.0760, 72.8777),
    ("ap-south-2", "Hyderabad", "India", 17.3850, 78.4867),
    ("ap-southeast-1", "Singapore", "Singapore", 1.3521, 103.8198),
    ("ap-southeast-2", "Sydney", "Australia", -33.8688, 151.2093),
    ("ap-southeast-3", "Jakarta", "Indonesia", -6.2088, 106.8456),
    ("ap-southeast-4", "Melbourne", "Australia", -37.8136, 144.9631),
    ("ap-southeast-5", "Kuala Lumpur", "Malaysia", 3.1390, 101.6869),
    ("ap-southeast-6", "Auckland", "New Zealand", -36.8485, 174.7633),
    ("ap-southeast-7", "Bangkok", "Thailand", 13.7563, 100.5018),
    ("ca-central-1", "Montréal", "Canada", 45.5019, -73.5674),
    ("ca-west-1", "Calgary", "Canada", 51.0447, -114.0719),
    ("eu-central-1", "Frankfurt", "Germany", 50.1109, 8.6821),
    ("eu-central-2", "Zurich", "Switzerland", 47.3769, 8.5417),
    ("eu-north-1", "Stockholm", "Sweden", 59.3293, 18.0686),
    ("eu-south-1", "Milan", "Italy", 45.4642, 9.1900),
    ("eu-south-2", "Zaragoza (Aragón)", "Spain", 41.6488, -0.8891),
    ("eu-west-1", "Dublin", "Ireland", 53.3498, -6.2603),
    ("eu-west-2", "London", "United Kingdom", 51.5074, -0.1278),
    ("eu-west-3", "Paris", "France", 48.8566, 2.3522),
    ("il-central-1", "Tel Aviv", "Israel", 32.0853, 34.7818),
    ("me-central-1", "Dubai", "United Arab Emirates", 25.2048, 55.2708),
    ("me-south-1", "Manama", "Bahrain", 26.2285, 50.5860),
    ("mx-central-1", "Querétaro", "Mexico", 20.5888, -100.3899),
    ("sa-east-1", "São Paulo", "Brazil", -23.5505, -46.6333),
    ("us-east-1", "Ashburn, Virginia", "United States", 39.0438, -77.4874),
    ("us-east-2", "Columbus, Ohio", "United States", 39.9612, -82.9988),
    ("us-west-1", "San Jose, California", "United States", 37.3382, -121.8863),
    ("us-west-2", "Boardman, Oregon", "United States", 45.8399, -119.7006),
)

_AZURE: tuple[_Row, ...] = (
    ("australiacentral", "Canberra", "Australia", -35.2809, 149.1300),
    ("australiacentral2", "Canberra", "Australia", -35.2809, 149.1300),
    ("australiaeast", "Sydney", "Australia", -33.8688, 151.2093),
    ("australiasoutheast", "Melbourne", "Australia", -37.8136, 144.9631),
    ("brazilsouth", "São Paulo", "Brazil", -23.5505, -46.6333),
    ("brazilsoutheast", "Rio de Janeiro", "Brazil", -22.9068, -43.1729),
    ("canadacentral", "Toronto", "Canada", 43.6532, -79.3832),
    ("canadaeast", "Quebec City", "Canada", 46.8139, -71.2080),
    ("centralindia", "Pune", "India", 18.5204, 73.8567),
    ("centralus", "Des Moines, Iowa", "United States", 41.5868, -93.6250),
    ("chilecentral", "Santiago", "Chile", -33.4489, -70.6693),
    ("eastasia", "Hong Kong", "Hong Kong", 22.3193, 114.1694),
    ("eastus", "Boydton, Virginia", "United States", 36.6676, -78.3875),
    ("eastus2", "Boydton, Virginia", "United States", 36.6676, -78.3875),
    ("francecentral", "Paris", "France", 48.8566, 2.3522),
    ("francesouth", "Marseille", "France", 43.2965, 5.3698),
    ("germanynorth", "Berlin", "Germany", 52.5200, 13.4050),
    ("germanywestcentral", "Frankfurt", "Germany", 50.1109, 8.6821),
    ("indonesiacentral", "Jakarta", "Indonesia", -6.2088, 106.8456),
    ("israelcentral", "Tel Aviv", "Israel", 32.0853, 34.7818),
    ("italynorth", "Milan", "Italy", 45.4642, 9.1900),
    ("japaneast", "Tokyo", "Japan", 35.6762, 139.6503),
    ("japanwest", "Osaka", "Japan", 34.6937, 135.5023),
    ("koreacentral", "Seoul", "South Korea", 37.5665, 126.9780),
    ("koreasouth", "Busan", "South Korea", 35.1796, 129.0756),
    ("malaysiawest", "Kuala Lumpur", "Malaysia", 3.1390, 101.6869),
    ("mexicocentral", "Querétaro", "Mexico", 20.5888, -100.3899),
    ("newzealandnorth", "Auckland", "New Zealand", -36.8485, 174.7633),
    ("northcentralus", "Chicago, Illinois", "United States", 41.8781, -87.6298),
    ("northeurope", "Dublin", "Ireland", 53.3498, -6.2603),
    ("norwayeast", "Oslo", "Norway", 59.9139, 10.7522),
    ("norwaywest", "Stavanger", "Norway", 58.9700, 5.7331),
    ("polandcentral", "Warsaw", "Poland", 52.2297, 21.0122),
    ("qatarcentral", "Doha", "Qatar", 25.2854, 51.5310),
    ("southafricanorth", "Johannesburg", "South Africa", -26.2041, 28.0473),
    ("southafricawest", "Cape Town", "South Africa", -33.9249, 18.4241),
    ("southcentralus", "San Antonio, Texas", "United States", 29.4241, -98.4936),
    ("southeastasia", "Singapore", "Singapore", 1.3521, 103.8198),
    ("southindia", "Chennai", "India", 13.0827, 80.2707),
    ("spaincentral", "Madrid", "Spain", 40.4168, -3.7038),
    ("swedencentral", "Gävle", "Sweden", 60.6749, 17.1413),
    ("switzerlandnorth", "Zurich", "Switzerland", 47.3769, 8.5417),
    ("switzerlandwest", "Geneva", "Switzerland", 46.2044, 6.1432),
    ("uaecentral", "Abu Dhabi", "United Arab Emirates", 24.4539, 54.3773),
    ("uaenorth", "Dubai", "United Arab Emirates", 25.2048, 55.2708),
    ("uksouth", "London", "United Kingdom", 51.5074, -0.1278),
    ("ukwest", "Cardiff", "United Kingdom", 51.4816, -3.1791),
    ("westcentralus", "Cheyenne, Wyoming", "United States", 41.1400, -104.8202),
    ("westeurope", "Amsterdam", "Netherlands", 52.3676, 4.9041),
    ("westindia", "Mumbai", "India", 19.0760, 72.8777),
    ("westus", "San Francisco, California", "United States", 37.7749, -122.4194),
    ("westus2", "Quincy, Washington", "United States", 47.2343, -119.8526),
    ("westus3", "Phoenix, Arizona", "United States", 33.4484, -112.0740),
)


def _build() -> tuple[Region, ...]:
    tables: tuple[tuple[Provider, tuple[_Row, ...]], ...] = (
        ("gcp", _GCP),
        ("aws", _AWS),
        ("azure", _AZURE),
    )
    return tuple(
        Region(id_, provider, city, country, lat, lon)
        for provider, table in tables
        for id_, city, country, lat, lon in table
    )


_REGIONS: tuple[Region, ...] = _build()
_BY_ID: dict[str, Region] = {r.id: r for r in _REGIONS}


def all_regions() -> tuple[Region, ...]:
    """Every region in the catalogue, provider by provider, each provider's sorted by id."""
    return _REGIONS


def regions_of(provider: Provider | None) -> tuple[Region, ...]:
    """The regions of one provider, or all of them for ``None``."""
    if provider is None:
        return _REGIONS
    return tuple(r for r in _REGIONS if r.provider == provider)


def close_matches(text: str, limit: int = 5) -> list[str]:
    """Region ids that look like ``text``: near spellings first, then city or country hits."""
    needle = text.strip().lower()
    found = difflib.get_close_matches(needle, list(_BY_ID), n=limit, cutoff=0.6)
    if len(needle) >= 3:
        for region in _REGIONS:
            place = f"{region.city} {region.country}".lower()
            if needle in place and region.id not in found:
                found.append(region.id)
    return found[:limit]


def get_region(region_id: str) -> Region:
    """The region with this id (ids are unique across providers); raises ``UnknownRegion``."""
    key = region_id.strip().lower()
    try:
        return _BY_ID[key]
    except KeyError:
        raise UnknownRegion(region_id.strip(), close_matches(key)) from None


def resolve_regions(region_ids: Iterable[str]) -> list[Region]:
    """Look up several ids, keeping their order and dropping repeats."""
    seen: dict[str, Region] = {}
    for region_id in region_ids:
        region = get_region(region_id)
        seen.setdefault(region.id, region)
    return list(seen.values())
