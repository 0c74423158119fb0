"""loramesh.tor without tor: the control protocol against a scripted fake
control port, SAFECOOKIE both ways, SOCKS5 and framing against fake peers.
The real thing (a private Tor network) is in tests/tor."""
import base64
import hashlib
import hmac
import os
import socket
import struct
import threading
import time

import pytest

from loramesh import InvalidArgumentError, LoraMeshError
from loramesh import tor as T

SID = "facebookwkhpilnemxj7asaniu7vnjjbiltxjqhye3mhbshg7kx5tfyd"  # a real v3 address


class FakeControl:
    """A control port that runs script(self) on the first connection, in a thread."""

    def __init__(self, script, unix_path=None):
        if unix_path:
            self.listener = socket.socket(socket.AF_UNIX)
            self.listener.bind(unix_path)
            self.addr = unix_path
        else:
            self.listener = socket.socket()
            self.listener.bind(("127.0.0.1", 0))
            self.addr = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.listener.listen(4)
        self.received = []
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def _run(self, script):
        self.conn, _ = self.listener.accept()
        self.rfile = self.conn.makefile("rb")
        try:
            script(self)
        except Exception as e:  # reported by done()
            self.error = e
        finally:
            self.conn.close()
            self.listener.close()

    def readline(self):
        line = self.rfile.readline()
        self.received.append(line)
        assert line.endswith(b"\r\n"), line
        return line[:-2].decode()

    def write(self, text):
        self.conn.sendall(text.replace("\n", "\r\n").encode())

    def done(self):
        self.thread.join(5)
        if self.error:
            raise self.error


@pytest.fixture
def cookie(tmp_path):
    path = tmp_path / "control_auth_cookie"
    path.write_bytes(os.urandom(32))
    return path


def protocolinfo(fake, path, methods="COOKIE,SAFECOOKIE"):
    assert fake.readline() == "PROTOCOLINFO 1"
    quoted = str(path).replace("\\", "\\\\").replace('"', '\\"')
    fake.write('250-PROTOCOLINFO 1\n250-AUTH METHODS=%s COOKIEFILE="%s"\n250-VERSION Tor="0.4.9.11"\n250 OK\n'
               % (methods, quoted))


def safecookie(fake, path, server_hash_ok=True):
    """The server half of SAFECOOKIE; returns whether the client's hash was right."""
    protocolinfo(fake, path)
    words = fake.readline().split(" ")
    assert words[:2] == ["AUTHCHALLENGE", "SAFECOOKIE"]
    cookie, cnonce, snonce = path.read_bytes(), bytes.fromhex(words[2]), os.urandom(32)
    msg = cookie + cnonce + snonce
    sh = hmac.new(T.SAFECOOKIE_SERVER, msg, hashlib.sha256).digest() if server_hash_ok else os.urandom(32)
    fake.write("250 AUTHCHALLENGE SERVERHASH=%s SERVERNONCE=%s\n" % (sh.hex().upper(), snonce.hex().upper()))
    if not server_hash_ok:
        return None
    line = fake.readline()
    ok = line == "AUTHENTICATE " + hmac.new(T.SAFECOOKIE_CLIENT, msg, hashlib.sha256).hexdigest().upper()
    fake.write("250 OK\n" if ok else "515 Authentication failed: Safe cookie response did not match expected value.\n")
    return ok


def test_safecookie_then_events_interleaved_with_replies(cookie):
    def script(f):
        assert safecookie(f, cookie)
        assert f.readline() == "GETINFO version config-text"
        # Events may come before a reply and between replies; one is multi-line.
        f.write("650 HS_DESC UPLOADED %s UNKNOWN $AAAA~relay\n" % SID)
        f.write("650-CONF_CHANGED\n650-SocksPort=auto\n650 OK\n")
        f.write("250-version=0.4.9.11\n250+config-text=\nSocksPort auto\n..starts with a dot\n.\n250 OK\n")
        f.write("650 HS_DESC FAILED %s NO_AUTH $BBBB~relay REASON=NOT_FOUND\n" % SID)
        assert f.readline() == "SETEVENTS HS_DESC"
        f.write("250 OK\n")

    fake = FakeControl(script)
    with T.TorControl(fake.addr) as c:
        c.authenticate()
        info = c.getinfo("version", "config-text")
        assert info == {"version": "0.4.9.11", "config-text": "SocksPort auto\n.starts with a dot"}
        assert [e.type for e in c.events] == ["HS_DESC", "CONF_CHANGED"]
        c.add_event("HS_DESC")
        ev = c.wait_event(lambda e: e.type == "HS_DESC" and e.words[1] == "FAILED", 2)
        assert ev.words[2] == SID and T.parse_kv(ev.lines[0][0])["REASON"] == "NOT_FOUND"
        assert c.next_event().words[1] == "UPLOADED"
        assert c.next_event().lines[1][0] == "SocksPort=auto"
        assert c.next_event(0.1) is None
    fake.done()


def test_safecookie_wrong_server_hash_never_sends_the_cookie(cookie):
    fake = FakeControl(lambda f: safecookie(f, cookie, server_hash_ok=False) or f.rfile.read())
    c = T.TorControl(fake.addr)
    with pytest.raises(T.ControlAuthError, match="does not know the cookie in .*control_auth_cookie"):
        c.authenticate()
    assert c.closed
    fake.done()
    assert not any(b"AUTHENTICATE" in line for line in fake.received), "no fallback to COOKIE"


def test_cookie_when_safecookie_is_not_offered(cookie):
    def script(f):
        protocolinfo(f, cookie, methods="COOKIE")
        assert f.readline() == "AUTHENTICATE " + cookie.read_bytes().hex().upper()
        f.write("250 OK\n")

    fake = FakeControl(script)
    T.TorControl(fake.addr).authenticate()
    fake.done()


def test_cookie_is_read_afresh_on_each_connect(cookie):
    for _ in range(2):  # tor writes a new cookie at each start
        cookie.write_bytes(os.urandom(32))
        fake = FakeControl(lambda f: safecookie(f, cookie))
        T.TorControl(fake.addr).authenticate()
        fake.done()


def test_authentication_refused(cookie):
    def script(f):
        protocolinfo(f, cookie, methods="COOKIE")
        f.readline()
        f.write("515 Authentication failed: Wrong length on authentication cookie.\n")

    fake = FakeControl(script)
    c = T.TorControl(fake.addr)
    with pytest.raises(T.ControlAuthError) as e:
        c.authenticate()
    msg = str(e.value)
    assert fake.addr in msg and "refused authentication" in msg and "cookie file" in msg and "readable" in msg
    assert isinstance(e.value, LoraMeshError)
    fake.done()


@pytest.mark.parametrize("setup, match", [
    ("missing", "cannot read tor's cookie file .*missing"),
    ("short", "is not 32 bytes"),
    ("long", "is not 32 bytes"),
])
def test_bad_cookie_file(tmp_path, setup, match):
    path = tmp_path / setup
    if setup != "missing":
        path.write_bytes(os.urandom(31 if setup == "short" else 33))
    fake = FakeControl(lambda f: protocolinfo(f, path))
    with pytest.raises(T.ControlAuthError, match=match):
        T.TorControl(fake.addr).authenticate()
    fake.done()


def test_password_only_tor_is_explained(tmp_path):
    def script(f):
        f.readline()
        f.write("250-PROTOCOLINFO 1\n250-AUTH METHODS=HASHEDPASSWORD\n250-VERSION Tor=\"0.4.9.11\"\n250 OK\n")

    fake = FakeControl(script)
    with pytest.raises(T.ControlAuthError, match="CookieAuthentication 1"):
        T.TorControl(fake.addr).authenticate()
    fake.done()


@pytest.mark.parametrize("data, code, lines", [
    (b"250 OK\r\n", 250, [("OK", None)]),
    (b"299 fine\r\n", 299, [("fine", None)]),  # unknown 2yz: still positive
    (b"451 Resource exhausted\r\n", 451, [("Resource exhausted", None)]),
    (b"250-a=1\r\n250+b=\r\n.x\r\n..y\r\n.\r\n250 OK\r\n", 250, [("a=1", None), ("b=", "x\n.y"), ("OK", None)]),
    (b"650 STATUS_CLIENT NOTICE X\r\n", 650, [("STATUS_CLIENT NOTICE X", None)]),
])
def test_parse_reply(data, code, lines):
    rep, used = T.parse_reply(bytearray(data + b"250 next"))
    assert (rep.code, rep.lines, used) == (code, lines, len(data))
    assert isinstance(rep, T.Event) == (code == 650)
    for cut in range(len(data)):  # any prefix is "not yet"
        assert T.parse_reply(bytearray(data[:cut])) == (None, 0)


@pytest.mark.parametrize("data, match", [
    (b"700 what\r\n", "not a control reply line"),
    (b"25x OK\r\n", "not a control reply line"),
    (b"250\r\n", "not a control reply line"),
    (b"HTTP/1.0 400 Bad\r\n", "not a control reply line"),
    (b"250-a\r\n251 b\r\n", "status code changed"),
    (b"250*OK\r\n", "bad separator"),
    (b"250 O\nK\r\n", "bare CR or LF"),
])
def test_parse_reply_rejects(data, match):
    with pytest.raises(T.ControlProtocolError, match=match):
        T.parse_reply(bytearray(data))


def test_parse_reply_bounded():
    with pytest.raises(T.ControlProtocolError, match="longer than"):
        T.parse_reply(bytearray(b"250-" + b"x" * T.MAX_REPLY))


def test_parse_kv_quoting():
    kv = T.parse_kv(r'METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/a b/\"c\"\\d\101" LONE X=')
    assert kv == {"METHODS": "COOKIE,SAFECOOKIE", "COOKIEFILE": '/a b/"c"\\dA', "X": ""}
    with pytest.raises(T.ControlProtocolError, match="unterminated"):
        T.parse_kv('A="open')


def test_refused_and_unknown_codes_raise_typed_errors(cookie):
    def script(f):
        f.readline()
        f.write("552 Unrecognized key \"nope\"\n")
        f.readline()
        f.write("451 Resource exhausted\n")
        f.readline()
        f.write("HTTP/1.0 400 Bad Request\n")

    fake = FakeControl(script)
    c = T.TorControl(fake.addr)
    with pytest.raises(T.ControlReplyError, match="refused GETINFO: 552 Unrecognized key") as e:
        c.getinfo("nope")
    assert e.value.reply_code == 552
    with pytest.raises(T.ControlReplyError) as e:
        c.command("SIGNAL NEWNYM")
    assert e.value.reply_code == 451
    with pytest.raises(T.ControlProtocolError, match="is this tor's control port"):
        c.command("GETINFO version")
    assert c.closed
    fake.done()


def test_no_reply_times_out_and_closes():
    fake = FakeControl(lambda f: (f.readline(), f.rfile.read()))
    c = T.TorControl(fake.addr, timeout=0.3)
    t = time.monotonic()
    with pytest.raises(T.ControlTimeoutError, match="did not answer GETINFO within 0.3 s"):
        c.getinfo("version")
    assert time.monotonic() - t < 2 and c.closed
    fake.done()


def test_connect_refused_names_the_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    addr = "127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    with pytest.raises(T.ControlConnectError, match="cannot connect to tor's control port %s.*is tor running" % addr):
        T.TorControl(addr)
    with pytest.raises(InvalidArgumentError, match="HOST:PORT"):
        T.TorControl("localhost")


def test_unix_socket(tmp_path, cookie):
    fake = FakeControl(lambda f: safecookie(f, cookie), unix_path=str(tmp_path / "control"))
    T.TorControl("unix:" + fake.addr).authenticate()
    fake.done()


def test_add_onion_sends_the_key_only_from_wiped_bytearrays(monkeypatch):
    key = T.generate_onion_key()
    seen = {}

    def script(f):
        line = f.readline()
        seen["line"] = line
        f.write("250-ServiceID=%s\n250 OK\n" % SID)

    wiped = []
    real_wipe = T.wipe
    monkeypatch.setattr(T, "wipe", lambda b: (real_wipe(b), wiped.append(b)))
    fake = FakeControl(script)
    c = T.TorControl(fake.addr)
    before = bytes(key)
    assert c.add_onion(key, [(7464, "127.0.0.1:5555")]) == SID
    fake.done()
    words = seen["line"].split(" ")
    assert words[0] == "ADD_ONION" and words[1].startswith("ED25519-V3:")
    assert base64.b64decode(words[1][11:]) == before
    assert "Flags=DiscardPK" in words and "Port=7464,127.0.0.1:5555" in words
    assert key == before, "the caller's key is the caller's to wipe"
    assert wiped and all(b == bytearray(len(b)) for b in wiped)
    assert len(wiped[0]) == len(seen["line"]) + 2, "the whole command line was wiped"
    with pytest.raises(InvalidArgumentError, match="64-byte bytearray"):
        c.add_onion(before, [(80, "127.0.0.1:1")])
    with pytest.raises(InvalidArgumentError, match="port mapping"):
        c.add_onion(key, [(80, "127.0.0.1:1 Flags=Detach")])


def test_wipe():
    b = bytearray(b"secret")
    T.wipe(b)
    assert b == bytearray(6)
    with pytest.raises(TypeError):
        T.wipe(b"secret")


def test_onion_addresses():
    pub = T.parse_onion_address(SID + ".onion")
    assert T.onion_address_from_public_key(pub) == SID + ".onion"
    assert T.parse_onion_address(SID) == pub
    bad = SID[:10] + ("a" if SID[10] != "a" else "b") + SID[11:]
    with pytest.raises(InvalidArgumentError, match="wrong checksum"):
        T.parse_onion_address(bad + ".onion")
    with pytest.raises(InvalidArgumentError, match="56 base32"):
        T.parse_onion_address("duckduckgo.onion")
    with pytest.raises(InvalidArgumentError, match="not base32"):
        T.parse_onion_address("1" * 56 + ".onion")
    v2 = base64.b32encode(pub + b"\0\0\x02").decode().lower()
    with pytest.raises(InvalidArgumentError, match="version 2"):
        T.parse_onion_address(v2)
    with pytest.raises(InvalidArgumentError, match="32 bytes"):
        T.onion_address_from_public_key(b"short")


def test_generated_keys_are_clamped_and_distinct():
    a, b = T.generate_onion_key(), T.generate_onion_key()
    assert isinstance(a, bytearray) and len(a) == 64 and a != b
    assert a[0] & 7 == 0 and a[31] & 0xC0 == 0x40


def test_tor_not_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(T.TorNotInstalledError, match=r"tor is not installed .*apt-get install tor"):
        T.TorProcess(str(tmp_path / "tor")).start()


def test_unusable_data_dir(tmp_path):
    fake = tmp_path / "tor"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    (tmp_path / "file").write_text("")
    with pytest.raises(T.TorStartError, match="cannot prepare tor's data directory .*file/d: .*this user can write"):
        T.TorProcess(str(tmp_path / "file" / "d"), tor=str(fake)).start()


def test_bad_torrc_lines_refused(tmp_path):
    with pytest.raises(InvalidArgumentError, match="single-line"):
        T.TorProcess(str(tmp_path), ["SocksPort 0\nControlPort 9051"])


def test_tor_that_exits_at_start_is_reported(tmp_path):
    fake = tmp_path / "tor"
    fake.write_text("#!/bin/sh\necho 'Nov 30 [warn] Failed to parse/validate config: bad option'\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(T.TorStartError, match="tor exited at start \\(code 1\\): .*bad option; see .*tor.log"):
        T.TorProcess(str(tmp_path / "d"), tor=str(fake), start_timeout=5).start()
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o700


# ---- OnionLink against a fake tor (SOCKS5 server + stub control) ----------

class StubControl:
    closed = False

    def __init__(self):
        self.commands = []
        self.circuits = ""

    def getinfo(self, key):
        return {key: self.circuits}

    def request(self, line):
        self.commands.append(line)

    command = request

    def add_event(self, *names):
        pass

    def add_onion(self, key, ports):
        assert isinstance(key, bytearray)
        self.ports = ports
        return SID

    def del_onion(self, sid):
        self.deleted = sid


class StubTor:
    """What OnionLink uses of a TorProcess."""

    def __init__(self, socks):
        self.generation = 1
        self.control = StubControl()
        self.socks = socks

    def poll(self):
        return False

    def _ctl(self):
        return self.control

    def socks_address(self):
        return self.socks


class FakeSocks:
    """A SOCKS5 server: answers every CONNECT with `reply`; on success it
    echoes the stream (acting as the remote onion). Records requests."""

    def __init__(self, reply=0, silent=False):
        self.reply, self.silent, self.requests = reply, silent, []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.addr = self.listener.getsockname()
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        try:
            if self.silent:
                return
            assert c.recv(3) == b"\x05\x01\x00"
            c.sendall(b"\x05\x00")
            head = c.recv(5)
            host = c.recv(head[4])
            port = struct.unpack(">H", c.recv(2))[0]
            self.requests.append((head[:4], host.decode(), port))
            c.sendall(bytes([5, self.reply, 0, 1, 0, 0, 0, 0, 0, 0]))
            if self.reply:
                c.close()
                return
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)
        except OSError:
            pass

    def close(self):
        self.listener.close()
        for c in self.conns:
            c.close()


def pump(link, until, timeout=5.0):
    got, events = [], []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = link.recv(0.05)
        if r:
            got.append(r)
        events += link.events()
        if until(got, events):
            return got, events
    raise AssertionError("timed out; got %r events %r" % (got[:3], events))


def frame(p):
    return struct.pack(">H", len(p)) + p


def test_outbound_through_socks_with_framing():
    socks = FakeSocks()
    link = T.OnionLink(StubTor(socks.addr), max_frame=300)
    try:
        pkts = [os.urandom(n) for n in (1, 2, 299, 300, 17)]
        for p in pkts:
            link.send(p, SID + ".onion")
        got, events = pump(link, lambda g, e: len(g) == len(pkts))
        assert got == [(p, SID + ".onion") for p in pkts]  # the fake echoes: replies come from the onion
        assert socks.requests == [(b"\x05\x01\x00\x03", SID + ".onion", T.OnionLink.DEFAULT_PORT)]
        assert [e.kind for e in events] == ["connected"]
        link.send(b"again", SID)  # the same connection, whatever the spelling
        pump(link, lambda g, e: g)
        assert len(socks.requests) == 1
    finally:
        link.close()
        socks.close()


@pytest.mark.parametrize("code, name", [(0xF0, "onion service descriptor can not be found"),
                                        (0xF6, "onion service invalid address"),
                                        (0x01, "general SOCKS server failure"),
                                        (0x99, "unknown reply")])
def test_socks_errors_are_named_and_back_off(code, name):
    socks = FakeSocks(reply=code)
    link = T.OnionLink(StubTor(socks.addr), retry_delay=0.3, max_retry_delay=1)
    try:
        link.send(b"x", SID)
        link.send(b"y", SID)
        _, events = pump(link, lambda g, e: e)
        assert events == [T.LinkEvent("unreachable", SID + ".onion", "SOCKS5 reply 0x%02X (%s)" % (code, name), 2)]
        with pytest.raises(T.OnionUnreachableError, match="0x%02X" % code):
            link.send(b"z", SID)  # failing fast while backing off
        time.sleep(0.35)
        link.send(b"z", SID)  # then trying again
        pump(link, lambda g, e: e)
        with pytest.raises(T.OnionUnreachableError, match="next try in 0.[4-6]"):
            link.send(b"z", SID)  # the backoff doubled
    finally:
        link.close()
        socks.close()


def test_connect_timeout_and_send_buffer_bound():
    socks = FakeSocks(silent=True)  # accepts, never answers
    tor = StubTor(socks.addr)
    tor.control.circuits = ("12 BUILT $A~a,$B~b PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_READY REND_QUERY=%s\n"
                            "13 BUILT $A~a PURPOSE=GENERAL\n"
                            "14 BUILT $A~a PURPOSE=HS_CLIENT_REND REND_QUERY=%s" % (SID, "x" * 56))
    link = T.OnionLink(tor, connect_timeout=0.5, max_pending=1000, max_frame=500)
    try:
        link.send(bytes(498), SID)
        with pytest.raises(T.LinkBusyError, match="send buffer for %s.onion full" % SID):
            link.send(bytes(499), SID)
        t = time.monotonic()
        _, events = pump(link, lambda g, e: e)
        assert 0.4 < time.monotonic() - t < 2
        assert events[0].kind == "unreachable" and "within 0.5 s" in events[0].reason and events[0].dropped == 1
        # A stalled connect makes tor forget its route: close that onion's circuits, fetch the descriptor again.
        assert tor.control.commands == ["CLOSECIRCUIT 12", "HSFETCH " + SID]
    finally:
        link.close()
        socks.close()


def test_socks_port_down_is_an_event():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    addr = s.getsockname()
    s.close()
    link = T.OnionLink(StubTor(addr))
    try:
        link.send(b"x", SID)
        _, events = pump(link, lambda g, e: e)
        assert events[0].kind == "unreachable" and "SOCKS port" in events[0].reason
    finally:
        link.close()


def test_bad_sends():
    link = T.OnionLink(StubTor(("127.0.0.1", 9)), max_frame=100)
    try:
        with pytest.raises(InvalidArgumentError, match="1..100"):
            link.send(bytes(101), SID)
        with pytest.raises(InvalidArgumentError, match="1..100"):
            link.send(b"", SID)
        with pytest.raises(InvalidArgumentError, match="not a v3 onion"):
            link.send(b"x", "example.com")
        with pytest.raises(InvalidArgumentError, match="a packet is bytes"):
            link.send("text", SID)
        with pytest.raises(T.NotConnectedError, match="inbound#7 is closed"):
            link.send(b"x", T.InboundAddr(7))
    finally:
        link.close()
    with pytest.raises(InvalidArgumentError, match="max_frame"):
        T.OnionLink(StubTor(("127.0.0.1", 9)), max_frame=70000)


@pytest.fixture
def served():
    tor = StubTor(("127.0.0.1", 9))
    link = T.OnionLink(tor, T.generate_onion_key(), max_frame=1000, max_conns=2, max_pending=8192)
    assert link.events() == [T.LinkEvent("published", SID + ".onion", "", 0)]
    yield link, tor
    link.close()


def connect(link):
    return socket.create_connection(("127.0.0.1", link.local_port), timeout=5)


def test_inbound_tokens_and_replies(served):
    link, tor = served
    assert link.address == SID + ".onion"
    assert tor.control.ports == [(T.OnionLink.DEFAULT_PORT, "127.0.0.1:%d" % link.local_port)]
    a, b = connect(link), connect(link)
    a.sendall(frame(b"from a") + frame(b"a2")[:3])  # a frame split across writes
    b.sendall(frame(b"from b"))
    a.sendall(frame(b"a2")[3:])
    got, _ = pump(link, lambda g, e: len(g) == 3)
    by = {p: addr for p, addr in got}
    assert all(isinstance(x, T.InboundAddr) for x in by.values())
    assert by[b"from a"] == by[b"a2"] != by[b"from b"]
    link.send(b"reply", by[b"from b"])
    assert b.recv(100) == frame(b"reply")
    a.close()
    _, events = pump(link, lambda g, e: e)
    assert events == [T.LinkEvent("closed", by[b"from a"], "closed by the other side", 0)]
    with pytest.raises(T.NotConnectedError):
        link.send(b"late", by[b"from a"])
    link.close()
    assert tor.control.deleted == SID + ".onion"


@pytest.mark.parametrize("bad", [b"\x00\x00", struct.pack(">H", 1001) + bytes(1001)], ids=["zero", "oversize"])
def test_bad_frames_close_the_connection(served, bad):
    link, _ = served
    c = connect(link)
    c.sendall(frame(b"ok") + bad)
    got, events = pump(link, lambda g, e: e)
    assert [p for p, _ in got] == [b"ok"]
    assert events[0].kind == "closed" and "bad frame length" in events[0].reason
    assert c.recv(10) == b""


def test_inbound_connection_limit(served):
    link, _ = served
    a, b = connect(link), connect(link)
    for s in (a, b):
        s.sendall(frame(b"hi"))
    pump(link, lambda g, e: len(g) == 2)
    c = connect(link)
    link.recv(0.2)
    c.settimeout(2)
    assert c.recv(10) == b"", "a third connection is over max_conns=2"


def test_slow_peer_does_not_block_send(served):
    link, _ = served
    slow, fast = connect(link), connect(link)
    slow.sendall(frame(b"s"))
    fast.sendall(frame(b"f"))
    got, _ = pump(link, lambda g, e: len(g) == 2)
    who = {p: a for p, a in got}
    t = time.monotonic()
    with pytest.raises(T.LinkBusyError):
        for _ in range(100000):  # slow never reads: kernel buffers, then ours fill up
            link.send(bytes(1000), who[b"s"])
    assert time.monotonic() - t < 5
    link.send(b"still fine", who[b"f"])
    assert fast.recv(100) == frame(b"still fine")


def test_receive_queue_is_bounded(served):
    link, _ = served
    link.max_rx = 3
    c = connect(link)
    c.sendall(b"".join(frame(b"%d" % i) for i in range(10)))
    time.sleep(0.2)
    got = []
    while len(got) < 10:
        r = link.recv(0.5)
        assert r is not None, got
        got.append(r[0])
        assert len(link._rx) <= 3
    assert got == [b"%d" % i for i in range(10)]


def test_disconnect(served):
    link, tor = served
    c = connect(link)
    c.sendall(frame(b"hi"))
    (_, token), = pump(link, lambda g, e: g)[0]
    assert link.disconnect(token) == 0
    assert c.recv(10) == b""
    with pytest.raises(T.NotConnectedError):
        link.send(b"x", token)
    socks = FakeSocks()
    tor.socks = socks.addr
    try:
        link.send(b"x", SID)
        pump(link, lambda g, e: g)
        assert link.disconnect(SID) == 0  # a peer that stopped answering: new stream, new tor route
        assert tor.control.commands == ["HSFETCH " + SID]
        assert link.disconnect(SID) == 0
        link.send(b"y", SID)
        pump(link, lambda g, e: g)
        assert len(socks.requests) == 2
    finally:
        socks.close()
