"""Onion addresses in cards: the core's check (Go, through the C ABI) and
loramesh.tor's (pure Python) are independent implementations of the same
rules; they must agree on every input, and both on addresses tor made."""
import base64
import hashlib
import os
import random

import pytest

from loramesh import BadCardError, IdentityKey, InvalidArgumentError, MalformedError, _capi
from loramesh import tor as T
from loramesh.keys import ContactCard

TOR_MADE = ["2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion",
            "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion",
            "facebookwkhpilnemxj7asaniu7vnjjbiltxjqhye3mhbshg7kx5tfyd.onion"]


def onion_of(pub: bytes, version: int = 3) -> str:
    check = hashlib.sha3_256(b".onion checksum" + pub + bytes([version])).digest()[:2]
    return base64.b32encode(pub + check + bytes([version])).decode().lower() + ".onion"


def go_ok(addr: str) -> bool:
    try:
        _capi.onion_check(addr)
        return True
    except MalformedError:
        return False


def py_ok(addr: str) -> bool:
    try:
        T.check_onion_address(addr)
        return True
    except InvalidArgumentError:
        return False


ORDER2 = bytes([0xEC]) + b"\xff" * 30 + b"\x7f"  # y = -1, a point of order 2
IDENTITY = b"\x01" + b"\0" * 31
NONCANON = bytes([0xEE]) + b"\xff" * 30 + b"\x7f"  # y = p + 1


def cases():
    rng = random.Random(17)
    out = list(TOR_MADE)
    good = TOR_MADE[0]
    for i in range(56):  # every position, a random other base32 character
        c = rng.choice([x for x in "abcdefghijklmnopqrstuvwxyz234567" if x != good[i]])
        out.append(good[:i] + c + good[i + 1:])
    for _ in range(200):  # random 32-byte strings: about half are not points, most points have torsion
        out.append(onion_of(os.urandom(32)))
    out += [onion_of(k) for k in (ORDER2, IDENTITY, NONCANON)]
    out += [onion_of(T.parse_onion_address(good), v) for v in (0, 2, 4, 255)]
    out += [good.upper(), good[:-6], good + ".", "x" + good, good[1:], "", "\u00e9" * 56 + ".onion",
            good[:55] + "b.onion", "expyuzz4wqqyqhjn.onion", good.replace(".onion", ".ONION")]
    return out


def test_go_and_python_agree_on_onion_addresses():
    accepted = 0
    for a in cases():
        assert go_ok(a) == py_ok(a), a
        accepted += go_ok(a)
    assert all(go_ok(a) for a in TOR_MADE)
    assert 3 <= accepted < 150  # tor's, and the random keys that happen to be of prime order (1 in 16)
    for bad in (ORDER2, IDENTITY, NONCANON):
        assert not py_ok(onion_of(bad))


def test_python_says_what_is_wrong():
    good = TOR_MADE[1]
    for addr, why in [(good[:56].upper() + ".onion", "lower case"), (good[:20] + ".onion", "56 base32"),
                      (good[:10] + "1" + good[11:], "not base32"), (good[:12] + "a" + good[13:], "checksum"),
                      (onion_of(ORDER2), "not a valid Ed25519 key"), (good[:-6], "not an onion address")]:
        with pytest.raises(InvalidArgumentError, match=why):
            T.check_onion_address(addr)


def test_cards_carry_an_onion_address():
    with IdentityKey.generate() as idk:
        plain = idk.card("Alice")
        with_onion = idk.card("Alice", onion=TOR_MADE[0])
        assert len(with_onion) == len(plain) + 65
        with ContactCard(plain) as c:
            assert c.onion is None
        with ContactCard(with_onion) as c:
            assert c.onion == TOR_MADE[0]
            fp = c.fingerprint
        with ContactCard(plain) as c:
            assert c.fingerprint == fp  # the same identity
        with pytest.raises(BadCardError):
            idk.card("Alice", onion=TOR_MADE[0].upper())
        with pytest.raises(BadCardError):
            idk.card("Alice", onion=onion_of(ORDER2))
        for i in range(len(with_onion)):  # the address is signed with the rest
            bad = bytearray(with_onion)
            bad[i] ^= 1
            with pytest.raises(BadCardError):
                ContactCard(bytes(bad))
