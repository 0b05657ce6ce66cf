"""GeoIP lookups against a MaxMind DB file made for the test with mmdb-writer, in GeoLite2-City's layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from posthouse.server.errors import ConfigurationError
from posthouse.server.services.geoip import NOWHERE, GeoIp, Location
from tracking_helpers import write_city_db


@pytest.fixture
def geo(tmp_path: Path) -> GeoIp:
    return GeoIp(str(write_city_db(tmp_path / "city.mmdb")))


@pytest.mark.parametrize(("ip", "expected"), [
    ("188.2.95.4", Location(country_iso_code="RS", country="Serbia", region_iso_code="VO",
                            region="Autonomna Pokrajina Vojvodina", city="Novi Sad", zip="21000",
                            coords="45.2517,19.8369")),
    ("90.12.34.56", Location(country_iso_code="FR", country="France")),
    ("2a02:2f0c:1::5", Location(country_iso_code="FR", country="France")),
    ("8.8.8.8", Location(country_iso_code="US", country="United States")),
    ("188.2.96.1", NOWHERE),  # not in the database
    ("10.1.2.3", NOWHERE),  # private: never looked up
    ("127.0.0.1", NOWHERE),
    ("::1", NOWHERE),
    ("not an address", NOWHERE),
    ("", NOWHERE),
    (None, NOWHERE),
])
def test_lookups(geo: GeoIp, ip: str | None, expected: Location) -> None:
    assert geo.locate(ip) == expected


def test_an_ipv6_address_in_an_ipv4_database_has_no_location(tmp_path: Path) -> None:
    geo = GeoIp(str(write_city_db(tmp_path / "v4.mmdb", ip_version=4)))
    assert geo.locate("188.2.95.4").city == "Novi Sad"
    assert geo.locate("2a02:2f0c:1::5") == NOWHERE
    geo.close()


def test_a_missing_file_is_a_clear_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot open the GeoIP database .*missing\.mmdb"):
        GeoIp(str(tmp_path / "missing.mmdb"))


def test_a_corrupt_file_is_a_clear_configuration_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"this is not a MaxMind database" * 10)
    with pytest.raises(ConfigurationError, match="cannot open the GeoIP database"):
        GeoIp(str(broken))
