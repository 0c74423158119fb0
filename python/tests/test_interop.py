"""The library against independent implementations: OpenSSL and plain
Python arithmetic check what the Go core produces, and the reverse."""
import base64
import hashlib
import os
import subprocess

import loramesh as lm
from conftest import PIN

CONTEXT = b"loramesh sign v1\x00"
ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")
P256_SPKI_COMPRESSED = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200")
P = 2 ** 255 - 19


def pem(der, label="PUBLIC KEY"):
    b = base64.encodebytes(der).decode().replace("\n", "")
    lines = [b[i:i + 64] for i in range(0, len(b), 64)]
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label, "\n".join(lines), label)


def der_int(b):
    b = b.lstrip(b"\x00") or b"\x00"
    if b[0] & 0x80:
        b = b"\x00" + b
    return b"\x02" + bytes([len(b)]) + b


def openssl(*args, **kw):
    return subprocess.run(["openssl"] + list(args), capture_output=True, **kw)


def test_ed25519_signature_verified_by_openssl(tmp_path):
    ident = lm.IdentityKey.generate()
    data = os.urandom(100)
    sig = ident.sign(data)
    (tmp_path / "pub.pem").write_text(pem(ED25519_SPKI + ident.public_bytes()))
    (tmp_path / "msg").write_bytes(CONTEXT + data)
    (tmp_path / "sig").write_bytes(sig)
    args = ["pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "pub.pem"), "-rawin",
            "-in", str(tmp_path / "msg"), "-sigfile", str(tmp_path / "sig")]
    assert openssl(*args).returncode == 0
    (tmp_path / "msg").write_bytes(CONTEXT + data + b"x")
    assert openssl(*args).returncode != 0


def test_openssl_ed25519_signature_verified_by_library(tmp_path):
    key = tmp_path / "k.pem"
    assert openssl("genpkey", "-algorithm", "ed25519", "-out", str(key)).returncode == 0
    pub = openssl("pkey", "-in", str(key), "-pubout", "-outform", "DER", check=True).stdout[-32:]
    (tmp_path / "msg").write_bytes(CONTEXT + b"hello")
    sig = openssl("pkeyutl", "-sign", "-inkey", str(key), "-rawin", "-in", str(tmp_path / "msg"),
                  check=True).stdout
    lm.verify(pub, b"hello", sig)


def test_p256_token_signature_verified_by_openssl(softhsm, tmp_path):
    with lm.Pkcs11Keystore(softhsm, bytearray(PIN.encode())) as ks:
        name = "interop-%d" % os.getpid()
        with ks.generate(name) as ident:
            pub = ident.public_bytes()
            sig = ident.sign(b"token data")
        ks.delete(name)
    assert len(pub) == 33 and len(sig) == 64
    der = der_int(sig[:32]) + der_int(sig[32:])
    (tmp_path / "sig").write_bytes(b"\x30" + bytes([len(der)]) + der)
    (tmp_path / "pub.pem").write_text(pem(P256_SPKI_COMPRESSED + pub))
    (tmp_path / "msg").write_bytes(CONTEXT + b"token data")
    r = openssl("dgst", "-sha256", "-verify", str(tmp_path / "pub.pem"), "-signature",
                str(tmp_path / "sig"), str(tmp_path / "msg"))
    assert r.returncode == 0, r.stderr
    # and the digest is SHA-256 of the context-prefixed message
    assert hashlib.sha256(CONTEXT + b"token data").digest()


def test_x25519_is_the_montgomery_form_of_ed25519():
    for _ in range(5):
        ident = lm.IdentityKey.generate()
        y = int.from_bytes(ident.public_bytes(), "little") & ((1 << 255) - 1)
        u = (1 + y) * pow(1 - y, P - 2, P) % P
        assert ident.derive_x25519().public_bytes() == u.to_bytes(32, "little")
        card = lm.ContactCard(ident.card("x"))
        assert card.dh_key(lm.SUITE_X25519) == u.to_bytes(32, "little")


def test_packet_kinds_dispatch():
    a, b = lm.IdentityKey.generate(), lm.IdentityKey.generate()
    card = lm.ContactCard(b.card("b"))
    for suite, kind in ((lm.SUITE_X25519, lm.PACKET_INIT_X25519), (lm.SUITE_P256, lm.PACKET_INIT_P256)):
        s, m1 = lm.Session.initiate(a, card, suite=suite)
        assert lm.packet_kind(m1) == kind
        r, m2 = lm.Session.respond(b, m1)
        assert lm.packet_kind(m2) == lm.PACKET_RESPONSE
        s.finish(m2)
        assert lm.packet_kind(s.encrypt(b"")) == lm.PACKET_TRANSPORT
