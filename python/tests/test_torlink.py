"""The daemon's Tor link without a Tor network: the onion service key
sealed to the identity, the control address rule, and the errors the
daemon gives (tor missing, authentication refused, control port refused,
bootstrap stuck). The real thing is in tests/tor."""
import os
import stat

import pytest

import loramesh as lm
from loramesh import _lib, errors, torlink
from loramesh import tor as T

from test_tor import FakeControl, protocolinfo


class FakeHome:
    def __init__(self, path):
        self.path = str(path)

    def state_dir(self, identity):
        d = os.path.join(self.path, "state", identity or "-")
        os.makedirs(d, exist_ok=True)
        return d


@pytest.fixture
def ident():
    with lm.IdentityKey.generate() as k:
        yield k


def test_seal_binding(ident):
    data = bytearray(os.urandom(64))
    sealed = ident.seal("onion-key", data)
    assert len(data) < len(sealed) <= len(data) + _lib.SEAL_MAX_OVERHEAD
    assert data[:16] not in sealed
    assert ident.seal("onion-key", data) != sealed  # sealed afresh each time
    out = ident.unseal("onion-key", sealed)
    assert isinstance(out, bytearray) and out == data
    lm.secure_wipe(out)
    with pytest.raises(errors.AuthenticationError):
        ident.unseal("other", sealed)
    with pytest.raises(errors.AuthenticationError):
        ident.unseal("state", sealed)  # host purposes never open the library's own files
    with lm.IdentityKey.generate() as other, pytest.raises(errors.AuthenticationError):
        other.unseal("onion-key", sealed)
    for i in (0, 5, 40, len(sealed) - 1):
        bad = bytearray(sealed)
        bad[i] ^= 0x40
        with pytest.raises((errors.AuthenticationError, errors.MalformedError)):
            ident.unseal("onion-key", bytes(bad))
    with pytest.raises(errors.MalformedError):
        ident.unseal("onion-key", bytes(64))
    for bad in ("", "Onion", "a" * 65, "x/y"):
        with pytest.raises(errors.InvalidArgumentError):
            ident.seal(bad, b"x")
    assert ident.unseal("empty", ident.seal("empty", b"")) == bytearray()


def test_onion_key_sealed_on_disk(tmp_path, ident):
    home = FakeHome(tmp_path)
    assert torlink.load_onion_key(home, ident) is None
    key = T.generate_onion_key()
    torlink.store_onion_key(home, ident, key)
    path = torlink.onion_key_path(home, ident)
    on_disk = open(path, "rb").read()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert on_disk[:4] == b"LMS1"
    for i in range(0, 64 - 8, 4):  # no 8 bytes of the key anywhere in the file
        assert bytes(key[i:i + 8]) not in on_disk
    again = torlink.load_onion_key(home, ident)
    assert again == key
    # Every store seals afresh and replaces the file whole.
    torlink.store_onion_key(home, ident, again)
    assert open(path, "rb").read() != on_disk
    assert [f for f in os.listdir(os.path.dirname(path))] == [torlink.ONION_KEY_FILE]
    T.wipe(key)
    T.wipe(again)


def test_onion_key_of_another_identity_is_refused_clearly(tmp_path, ident):
    home = FakeHome(tmp_path)
    with lm.IdentityKey.generate() as other:
        key = T.generate_onion_key()
        torlink.store_onion_key(home, other, key)  # same directory: FakeHome ignores the name
    with pytest.raises(torlink.TorLinkError, match="does not open with identity .*sealed by another identity.*move "
                                                   "it away to get a new onion address"):
        torlink.load_onion_key(home, ident)


def test_clear_or_damaged_onion_key_is_refused(tmp_path, ident):
    home = FakeHome(tmp_path)
    path = torlink.onion_key_path(home, ident)
    with open(path, "wb") as f:
        f.write(bytes(64))
    with pytest.raises(torlink.TorLinkError, match="not a sealed key file"):
        torlink.load_onion_key(home, ident)
    with open(path, "wb") as f:
        f.write(ident.seal(torlink.SEAL_PURPOSE, b"short"))
    with pytest.raises(torlink.TorLinkError, match="holds 5 bytes, not 64"):
        torlink.load_onion_key(home, ident)


@pytest.mark.parametrize("addr", ["127.0.0.1:9051", "[::1]:9051", "localhost:9051", "/run/tor/control",
                                  "unix:/run/tor/control"])
def test_local_control_addresses(addr):
    assert torlink.check_control_addr(addr) == addr


@pytest.mark.parametrize("addr", ["192.168.1.2:9051", "tor.example:9051", "[2001:db8::1]:9051"])
def test_remote_control_port_refused(addr):
    with pytest.raises(torlink.TorLinkError, match="must be on this machine.*onion service key crosses"):
        torlink.check_control_addr(addr)


def cfg(**tor):
    return {"tor": dict({"enabled": True}, **tor)}


def test_tor_not_installed_says_what_to_do(tmp_path, ident, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(torlink.TorLinkError, match="apt-get install tor.*loramesh tor off"):
        torlink.TorLink(FakeHome(tmp_path), cfg(), ident)
    assert not os.path.exists(torlink.onion_key_path(FakeHome(tmp_path), ident))  # nothing made before tor runs


def test_control_port_refusing_authentication(tmp_path, ident):
    cookie = tmp_path / "control_auth_cookie"
    cookie.write_bytes(os.urandom(32))

    def script(f):
        protocolinfo(f, cookie, methods="COOKIE")
        f.readline()
        f.write("515 Authentication failed: Wrong length on authentication cookie.\n")

    fake = FakeControl(script)
    with pytest.raises(torlink.TorLinkError, match="refused authentication.*CookieAuthentication 1.*debian-tor"):
        torlink.TorLink(FakeHome(tmp_path), cfg(control=fake.addr), ident)
    fake.done()


def test_control_port_refused(tmp_path, ident):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(torlink.TorLinkError, match="127.0.0.1:%d.*loramesh tor on` without --attach" % port):
        torlink.TorLink(FakeHome(tmp_path), cfg(control="127.0.0.1:%d" % port), ident)


def test_bootstrap_stuck_is_explained(monkeypatch):
    link = torlink.TorLink.__new__(torlink.TorLink)
    link.error, link.data_dir = None, "/home/u/.loramesh/tor"
    link.boot = (45, "requesting_descriptors", "Asking for relay descriptors", "")
    link.boot_since = torlink.time.monotonic() - torlink.STUCK_AFTER - 5

    class Tor:
        last_error = None

        def alive(self):
            return True

    link.tor = Tor()
    p = link.problem()
    assert "bootstrap stuck at 45%" in p and "Asking for relay descriptors" in p
    assert "clock" in p and "--torrc" in p and "/home/u/.loramesh/tor/tor.log" in p
    link.boot = (100, "done", "Done", "")
    assert link.problem() is None


def test_link_publishes_the_stored_key_and_withdraws_it(tmp_path, ident, monkeypatch):
    """Our own tor (stubbed): the first start makes a key and stores it
    sealed; the next start publishes the same key; close() withdraws the
    service (DEL_ONION), stops tor and wipes the key."""
    from test_tor import StubTor

    made = []

    class Tor(StubTor):
        pid, last_error = 4242, None

        def __init__(self, data_dir, extra, tor="tor"):
            super().__init__("127.0.0.1:9")
            self.data_dir, self.extra, self.stopped = data_dir, extra, False
            published = self.control.add_onion

            def add_onion(key, ports):
                self.published = bytes(key)  # the test's own copy, to compare
                return published(key, ports)

            self.control.add_onion = add_onion
            made.append(self)

        def start(self):
            pass

        def alive(self):
            return not self.stopped

        def stop(self):
            self.stopped = True

    monkeypatch.setattr(T, "TorProcess", Tor)
    home = FakeHome(tmp_path)
    a = torlink.TorLink(home, cfg(), ident)
    assert made[0].data_dir == os.path.join(home.path, "tor") and made[0].extra == []
    st = a.status()
    assert st["mode"] == "own" and st["onion"] == a.address and st["pid"] == 4242 and st["bootstrap"] == 0
    key, onion = a.key, a.address
    a.close()
    assert made[0].control.deleted in (onion, onion[:-len(".onion")])
    assert made[0].stopped and key == bytearray(64), "the key is wiped at close"
    b = torlink.TorLink(home, cfg(), ident)
    assert made[1].published == made[0].published, "a restart publishes the same key"
    b.close()
