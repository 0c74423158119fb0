"""The binding on its own: identities, cards, handshakes, bad input."""
import os

import pytest

import loramesh as lm
from loramesh import _capi, _lib
from conftest import ARGON, PIN


def pair(suite=None):
    a, b = lm.IdentityKey.generate(), lm.IdentityKey.generate()
    card_b = lm.ContactCard(b.card("bob"))
    s_a, msg1 = lm.Session.initiate(a, card_b, suite=suite)
    s_b, msg2 = lm.Session.respond(b, msg1)
    s_a.finish(msg2)
    return a, b, s_a, s_b


def test_library_loaded():
    # The library is the one the tests built, and it is this binding's.
    assert _lib.lib()._lm_path == os.path.abspath(os.environ["LORAMESH_LIB"])
    assert lm.library_version() == lm.__version__
    assert _capi.abi_version() == _lib.ABI_VERSION
    for n in (0, 1, 255, _lib.MAX_PAYLOAD):
        assert _capi.encrypt_size(n) == n + _lib.MAX_OVERHEAD
    assert _capi.encrypt_size(_lib.MAX_PAYLOAD + 1) == 0


# What the interpreter runs on, as Go names it (the library must match it).
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "armv8l": "arm"}


def test_features_say_what_this_architecture_guarantees():
    import platform
    f = lm.features()
    assert f.mlock and f.flags & ~(_lib.FEATURE_ERASE | _lib.FEATURE_MLOCK) == 0
    goarch = GOARCH.get(platform.machine())
    if goarch:
        assert f.platform == "linux/" + goarch, (f.text, platform.machine())
    assert f.go_version.startswith("go1.")
    # runtime/secret erases only on amd64 and arm64, and a build without it
    # says why; 32-bit ARM never claims it.
    if f.platform in ("linux/amd64", "linux/arm64"):
        assert f.erase or "GOEXPERIMENT" in f.text, f.text
    else:
        assert not f.erase and "does not erase" in f.text, f.text
    assert ("erase yes" in f.text) == f.erase and "mlock yes" in f.text


def test_identity_from_seed_is_deterministic_and_wipes():
    seed = bytearray(range(32))
    a = lm.IdentityKey.from_seed(seed)
    assert seed == bytearray(32)  # wiped
    b = lm.IdentityKey.from_seed(bytearray(range(32)))
    assert a.public_bytes() == b.public_bytes() and len(a.public_bytes()) == 32
    assert a.derive_x25519() == b.derive_x25519()
    assert a.suites == [lm.SUITE_X25519, lm.SUITE_P256]
    with pytest.raises(lm.InvalidArgumentError):
        lm.IdentityKey.from_seed(bytearray(31))


def test_sign_verify():
    with lm.IdentityKey.generate() as a:
        sig = a.sign(b"data")
        assert len(sig) == lm.SIGNATURE_SIZE
        lm.verify(a.public_bytes(), b"data", sig)
        with pytest.raises(lm.AuthenticationError):
            lm.verify(a.public_bytes(), b"datA", sig)
        with pytest.raises(lm.InvalidArgumentError):
            lm.verify(a.public_bytes()[:31], b"data", sig)


def test_card_roundtrip_and_every_flipped_byte_refused():
    a = lm.IdentityKey.generate()
    raw = a.card("alice")
    assert lm.packet_kind(raw) == lm.PACKET_CARD
    c = lm.ContactCard(raw)
    assert c.name == "alice" and c.signing_key == a.public_bytes()
    assert c.dh_key(lm.SUITE_X25519) == a.derive_x25519().public_bytes()
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 0x01
        with pytest.raises((lm.BadCardError, lm.MalformedError, lm.VersionError)):
            lm.ContactCard(bytes(bad))


@pytest.mark.parametrize("suite", [lm.SUITE_X25519, lm.SUITE_P256])
def test_handshake_both_suites(suite):
    a, b, s_a, s_b = pair(suite)
    assert s_a.suite == s_b.suite == suite
    assert s_a.handshake_hash == s_b.handshake_hash
    assert s_b.peer_key == a.dh_public(suite)
    assert s_a.peer_key == b.dh_public(suite)
    for i in range(5):
        assert s_b.decrypt(s_a.encrypt(b"a%d" % i)) == b"a%d" % i
        assert s_a.decrypt(s_b.encrypt(b"b%d" % i)) == b"b%d" % i


def test_initiate_with_raw_keys():
    a, b = lm.IdentityKey.generate(), lm.IdentityKey.generate()
    for key in (b.derive_x25519(), lm.PublicKey(lm.SUITE_X25519, b.derive_x25519().public_bytes()),
                lm.PublicKey(lm.SUITE_P256, b.dh_public(lm.SUITE_P256))):
        s, m1 = lm.Session.initiate(a, key)
        r, m2 = lm.Session.respond(b, m1)
        s.finish(m2)
        assert r.decrypt(s.encrypt(b"x")) == b"x"
    with pytest.raises(lm.InvalidArgumentError):
        lm.PublicKey(lm.SUITE_P256, b"\x01" * 32)  # the suite is said, and the length must fit it
    with pytest.raises(lm.InvalidArgumentError):
        lm.Session.initiate(a, b.derive_x25519().public_bytes())  # raw bytes: which suite?


def test_payloads():
    a, b = lm.IdentityKey.generate(), lm.IdentityKey.generate()
    s, m1 = lm.Session.initiate(a, lm.ContactCard(b.card("b")), payload=b"hello")
    r, m2 = lm.Session.respond(b, m1, reply=b"welcome")
    assert r.peer_payload == b"hello"
    assert s.finish(m2) == b"welcome"


def test_tampered_ciphertext_and_replay_leave_session_usable():
    _, _, s_a, s_b = pair()
    c = s_a.encrypt(b"first")
    for i in range(len(c)):
        bad = bytearray(c)
        bad[i] ^= 0x80
        with pytest.raises((lm.AuthenticationError, lm.MalformedError, lm.VersionError, lm.ReplayError)):
            s_b.decrypt(bytes(bad))
    assert s_b.decrypt(c) == b"first"  # still opens once
    with pytest.raises(lm.ReplayError):
        s_b.decrypt(c)
    with pytest.raises(lm.MalformedError):
        s_b.decrypt(b"")
    assert s_b.decrypt(s_a.encrypt(b"second")) == b"second"
    assert s_a.decrypt(s_b.encrypt(b"back")) == b"back"


def test_garbage_and_replayed_handshakes():
    a, b = lm.IdentityKey.generate(), lm.IdentityKey.generate()
    card = lm.ContactCard(b.card("b"))
    for garbage in (b"", b"\x00", os.urandom(100), card.raw):
        with pytest.raises(lm.LoraMeshError) as e:
            lm.Session.respond(b, garbage)
        assert isinstance(e.value, (lm.MalformedError, lm.VersionError))
    s, m1 = lm.Session.initiate(a, card)
    bad = bytearray(m1)
    bad[-1] ^= 1
    with pytest.raises(lm.AuthenticationError):
        lm.Session.respond(b, bytes(bad))
    r, m2 = lm.Session.respond(b, m1)  # the responder is unchanged
    with pytest.raises(lm.ReplayError):
        lm.Session.respond(b, m1)
    bad2 = bytearray(m2)
    bad2[-1] ^= 1
    with pytest.raises(lm.AuthenticationError):
        s.finish(bytes(bad2))
    with pytest.raises(lm.StateError):
        s.encrypt(b"too early")
    s.finish(m2)  # the genuine reply still works
    assert r.decrypt(s.encrypt(b"ok")) == b"ok"


def test_allow_list():
    a, b, c = (lm.IdentityKey.generate() for _ in range(3))
    card_a, card_b = lm.ContactCard(a.card("a")), lm.ContactCard(b.card("b"))
    with lm.Responder(b, allow=[card_a]) as resp:
        _, m1 = lm.Session.initiate(c, card_b)
        with pytest.raises(lm.UnknownPeerError):
            resp.respond(m1)
        _, m1 = lm.Session.initiate(a, card_b)
        s, _ = resp.respond(m1)
        assert s.peer_key in card_a.dh_keys.values()


def test_buffer_too_small_is_retried():
    with lm.IdentityKey.generate() as a:
        h = a.handle
        out = _capi._bytes_out("pk", lambda b, n: _lib.lib().lm_identity_public_key(h, b[0], n[0]), [0])[0]
        assert out == a.public_bytes()
        card = lm.ContactCard(a.card("x"))
        fp = _capi._str_out("fp", lambda b, n: _lib.lib().lm_card_fingerprint(card.handle, b, n), 1)
        assert fp == card.fingerprint and len(fp) == 19


def test_use_after_close():
    a = lm.IdentityKey.generate()
    a.close()
    a.close()  # idempotent
    with pytest.raises(lm.StateError):
        a.sign(b"x")
    with pytest.raises(lm.HandleError):
        _capi.identity_sign(123456, b"x")
    _, _, s_a, _ = pair()
    s_a.close()
    with pytest.raises(lm.StateError):
        s_a.encrypt(b"x")


def test_secure_wipe():
    b = bytearray(b"secret!")
    lm.secure_wipe(b)
    assert b == bytearray(7)
    with pytest.raises(TypeError):
        lm.secure_wipe(b"bytes")


def test_memory_keystore_wrong_passphrase(tmp_path):
    pw = bytearray(b"right passphrase")
    with lm.MemoryKeystore(tmp_path, pw, argon2=ARGON) as ks:
        assert pw == bytearray(len(pw))  # wiped after use
        ident = ks.generate("me")
        pub = ident.public_bytes()
        with pytest.raises(lm.ExistsError):
            ks.generate("me")
        assert ks.list() == ["me"]
        with pytest.raises(lm.InvalidArgumentError):
            ks.generate("../evil")
    with lm.MemoryKeystore(tmp_path, bytearray(b"wrong"), argon2=ARGON) as ks:
        with pytest.raises(lm.PinError):
            ks.load("me")
    with lm.MemoryKeystore(tmp_path, bytearray(b"right passphrase")) as ks:
        with pytest.raises(lm.NotFoundError):
            ks.load("nobody")
        again = ks.load("me")
        assert again.public_bytes() == pub
        # usable wherever an IdentityKey is
        _, m1 = lm.Session.initiate(lm.IdentityKey.generate(), lm.ContactCard(again.card("me")))
        s, _ = lm.Session.respond(again, m1)
    # The identity (and its session) outlive the keystore handle.
    assert ident.sign(b"x") and s.suite == lm.SUITE_X25519


def test_pkcs11_identity_and_wrong_pin(softhsm):
    with pytest.raises(lm.PinError):
        lm.Pkcs11Keystore(softhsm, bytearray(b"0000")).list()
    with lm.Pkcs11Keystore(softhsm, bytearray(PIN.encode())) as ks:
        name = "binding-%d" % os.getpid()
        ident = ks.generate(name)
        assert len(ident.public_bytes()) == 33
        assert lm.SUITE_P256 in ident.suites
        soft = lm.IdentityKey.generate()
        # Hardware identity as initiator and as responder.
        s, m1 = lm.Session.initiate(ident, lm.ContactCard(soft.card("soft")), suite=lm.SUITE_P256)
        r, m2 = lm.Session.respond(soft, m1)
        s.finish(m2)
        assert r.decrypt(s.encrypt(b"from the token")) == b"from the token"
        s2, m1 = lm.Session.initiate(soft, lm.ContactCard(ident.card("hsm")))
        r2, m2 = lm.Session.respond(ident, m1)
        s2.finish(m2)
        assert r2.decrypt(s2.encrypt(b"to the token")) == b"to the token"
        lm.verify(ident.public_bytes(), b"m", ident.sign(b"m"))
        ks.delete(name)
        ident.close()


def test_missing_library_says_where_it_looked(tmp_path):
    with pytest.raises(lm.LibraryNotFoundError) as e:
        _lib.load(str(tmp_path / "nope.so"))
    assert str(tmp_path / "nope.so") in str(e.value) and "make lib" in str(e.value)
    bogus = tmp_path / "libloramesh.so"
    bogus.write_bytes(b"not an ELF file")
    with pytest.raises(lm.LibraryNotFoundError):
        _lib.load(str(bogus))
    assert isinstance(e.value, OSError) and isinstance(e.value, lm.LoraMeshError)


def test_size_limits():
    a, b, s_a, s_b = pair()
    with pytest.raises(lm.InvalidArgumentError):
        s_a.encrypt(bytes(_lib.MAX_PAYLOAD + 1))
    big = bytes(_lib.MAX_PAYLOAD)
    assert s_b.decrypt(s_a.encrypt(big)) == big
    card = lm.ContactCard(b.card("b"))
    with pytest.raises(lm.MalformedError):
        lm.Session.initiate(a, card, payload=bytes(_lib.MAX_INIT_PAYLOAD + 1))
    s, m1 = lm.Session.initiate(a, card, payload=bytes(_lib.MAX_INIT_PAYLOAD))
    r, m2 = lm.Session.respond(b, m1)
    assert r.peer_payload == bytes(_lib.MAX_INIT_PAYLOAD)
