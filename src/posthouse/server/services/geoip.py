"""The optional GeoIP database: where an open or click came from, looked up in a MaxMind DB file.

Setting `geoip_database` names a GeoLite2/GeoIP2 City or Country database (`.mmdb`); empty means no
Geo (every Geo field null, as Postmark shows an unknown location). A file that is named but missing or
unreadable stops `posthouse serve` with one line: an operator who set the path expects locations, and a
typo that silently disabled them would go unnoticed. The file is memory-mapped (by libmaxminddb's C
reader where installed), so lookups share the page cache and cost a few microseconds.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

import maxminddb

from posthouse.server.errors import ConfigurationError

log = logging.getLogger("posthouse.tracking")


@dataclass(frozen=True, slots=True)
class Location:
    """Postmark's Geo fields; None where unknown. `coords` is "latitude,longitude"."""

    country_iso_code: str | None = None
    country: str | None = None
    region_iso_code: str | None = None
    region: str | None = None
    city: str | None = None
    zip: str | None = None
    coords: str | None = None


NOWHERE = Location()


def _name(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    names = record.get("names")
    if isinstance(names, dict):
        english = names.get("en")
        return english if isinstance(english, str) else None
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class GeoIp:
    """A MaxMind DB opened once; `locate(ip)` for each hit."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._reader = maxminddb.open_database(path, maxminddb.MODE_AUTO)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigurationError(f"cannot open the GeoIP database {path}: {reason}") from None

    def locate(self, ip: str | None) -> Location:
        """Where `ip` is, as far as the database knows; NOWHERE for private, unknown or malformed addresses."""
        if not ip:
            return NOWHERE
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return NOWHERE
        if not address.is_global:
            return NOWHERE
        try:
            record = self._reader.get(address)
        except (ValueError, maxminddb.InvalidDatabaseError) as exc:
            # An IPv6 address in an IPv4-only database, or a damaged record: no location for this hit.
            log.debug("GeoIP lookup of %s failed: %s", ip, exc)
            return NOWHERE
        if not isinstance(record, dict):
            return NOWHERE
        country = record.get("country") or record.get("registered_country") or {}
        subdivisions = record.get("subdivisions") or [{}]
        region = subdivisions[0] if isinstance(subdivisions, list) and subdivisions else {}
        location = record.get("location") or {}
        coords = None
        if isinstance(location, dict) and isinstance(location.get("latitude"), int | float) \
                and isinstance(location.get("longitude"), int | float):
            coords = f"{location['latitude']},{location['longitude']}"
        postal = record.get("postal") or {}
        return Location(
            country_iso_code=_text(country.get("iso_code")) if isinstance(country, dict) else None,
            country=_name(country),
            region_iso_code=_text(region.get("iso_code")) if isinstance(region, dict) else None,
            region=_name(region),
            city=_name(record.get("city")),
            zip=_text(postal.get("code")) if isinstance(postal, dict) else None,
            coords=coords,
        )

    def close(self) -> None:
        self._reader.close()
