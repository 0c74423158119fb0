"""TPM identities through swtpm."""
import pytest

import loramesh as lm


def test_tpm_identity(swtpm, tmp_path):
    auth = bytearray(b"tpm auth")
    ks = lm.TpmKeystore(swtpm, auth, key_dir=tmp_path)
    assert auth == bytearray(8)  # wiped
    with ks:
        ident = ks.generate("node")
        assert ks.list() == ["node"] and ident.suites == [lm.SUITE_P256]
        assert len(ident.public_bytes()) == 33
        with pytest.raises(lm.UnsupportedError):
            ident.derive_x25519()
        lm.verify(ident.public_bytes(), b"m", ident.sign(b"m"))
        soft = lm.IdentityKey.generate()
        card = lm.ContactCard(ident.card("tpm"))
        assert card.suites == [lm.SUITE_P256]
        s, m1 = lm.Session.initiate(soft, card)  # chooses the shared suite
        r, m2 = lm.Session.respond(ident, m1)
        s.finish(m2)
        assert r.decrypt(s.encrypt(b"to the TPM")) == b"to the TPM"
        s2, m1 = lm.Session.initiate(ident, lm.ContactCard(soft.card("soft")))
        r2, m2 = lm.Session.respond(soft, m1)
        s2.finish(m2)
        assert s2.suite == lm.SUITE_P256 and r2.decrypt(s2.encrypt(b"x")) == b"x"
        ident.close()
    # One wrong auth (the lockout counter allows a few).
    with lm.TpmKeystore(swtpm, bytearray(b"wrong"), key_dir=tmp_path) as ks:
        with pytest.raises(lm.PinError):
            with ks.load("node") as ident:
                ident.sign(b"m")


def test_tpm_node_talks_to_a_memory_node(make_node, swtpm, tmp_path):
    """A CLI node whose identity is in the TPM (swtpm), with an auth value."""
    from conftest import assert_sealed, befriend, history_texts
    t = make_node("tpm", "--tpm", swtpm, secret_text="tpm auth value")
    m = make_node("mem")
    befriend(t, m)
    assert t.json("id")["keystore"] == "tpm"
    t.run("send", "mem", "from the TPM")
    m.run("send", "tpm", "to the TPM")
    # The history survives a restart, sealed to the TPM-held key.
    t.stop()
    t.run("start")
    assert history_texts(t) == [("out", "from the TPM", "delivered"), ("in", "to the TPM", None)]
    assert_sealed(t, ["from the TPM", "to the TPM"])
    assert "tpm" in (t.home / "config.toml").read_text()
