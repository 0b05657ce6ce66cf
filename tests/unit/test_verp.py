"""VERP return paths name one delivery and carry a MAC: forged, altered or foreign ones name nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from posthouse.server.domain.verp import ReturnPath

PATH = ReturnPath("pm_bounces", "bounces.example.com", b"k" * 32)


@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_every_delivery_id_round_trips(delivery_id: int) -> None:
    address = PATH.address_for(delivery_id)
    local = address.split("@")[0]
    assert len(local) <= 64  # RFC 5321 §4.5.3.1.1
    assert PATH.delivery_id_from(address) == delivery_id
    assert PATH.delivery_id_from(address.upper()) == delivery_id  # MTAs may change the case


def test_altered_forged_and_foreign_addresses_name_nothing() -> None:
    address = PATH.address_for(42)
    local, domain = address.split("@")
    token = local.split("+")[1]
    cases = [
        f"pm_bounces+{'2b' + token[2:]}@{domain}",  # another id, the old MAC
        f"pm_bounces+{token[:-1]}{'a' if token[-1] != 'a' else 'b'}@{domain}",  # altered MAC
        f"pm_bounces+{token}@elsewhere.example.com",  # another domain
        f"bounces+{token}@{domain}",  # another local part
        f"pm_bounces@{domain}", f"pm_bounces+@{domain}", f"pm_bounces+zz{token}@{domain}", "",
    ]
    for case in cases:
        assert PATH.delivery_id_from(case) is None, case
    other_key = ReturnPath("pm_bounces", "bounces.example.com", b"x" * 32)
    assert other_key.delivery_id_from(address) is None
    assert PATH.is_return_address(f"anything@{domain.upper()}.") and not PATH.is_return_address("a@b.example")


@given(st.binary(min_size=32, max_size=32), st.integers(min_value=1, max_value=2**63 - 1))
def test_the_token_is_the_id_and_the_first_65_bits_of_its_hmac_in_base32(key: bytes, delivery_id: int) -> None:
    # The form every return path issued so far has: a bounce to an old one must still name its delivery.
    hex_id = f"{delivery_id:x}"
    mac = hmac.new(key, hex_id.encode("ascii"), hashlib.sha256).digest()
    expected = f"pm_bounces+{hex_id}{base64.b32encode(mac).decode('ascii')[:13].lower()}@bounces.example.com"
    assert ReturnPath("pm_bounces", "bounces.example.com", key).address_for(delivery_id) == expected
