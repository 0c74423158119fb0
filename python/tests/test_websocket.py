"""The WebSocket bridge: RFC 6455 framing and handshake, its limits, and a
daemon carrying a second engine's packets over it (the browser end to end
is tests/web)."""
import base64
import json
import os
import random
import socket
import struct
import time

import pytest

from loramesh import websocket as ws
from loramesh.websocket import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, FrameDecoder, ProtocolError,
                                WebSocketLink, encode_frame, origin_allowed, parse_request)


def frame(fin, op, payload, mask=True, rsv=0, length=None):
    """A frame built by hand, to break rules encode_frame keeps."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv | op])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + payload


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536])
def test_frames_round_trip(n):
    data = os.urandom(n)
    dec = FrameDecoder(masked=True, max_binary=1 << 20)
    stream = encode_frame(OP_BINARY, data, mask=True)
    # byte by byte: a frame split anywhere is still whole once complete
    out = []
    for i in range(0, len(stream), max(1, len(stream) // 7)):
        out += dec.feed(stream[i:i + max(1, len(stream) // 7)])
    assert out == [(OP_BINARY, data)]
    assert FrameDecoder(masked=False, max_binary=1 << 20).feed(encode_frame(OP_BINARY, data)) == [(OP_BINARY, data)]


def test_fragments_with_a_ping_between():
    dec = FrameDecoder(masked=True)
    out = dec.feed(frame(False, OP_TEXT, b'{"a":') + frame(True, OP_PING, b"p") + frame(False, OP_CONT, b" 1")
                   + frame(True, OP_CONT, b"}"))
    assert out == [(OP_PING, b"p"), (OP_TEXT, b'{"a": 1}')]


@pytest.mark.parametrize("data,code", [
    (frame(True, OP_BINARY, b"x", rsv=0x40), 1002),                      # compression bit, not negotiated
    (frame(True, 0x3, b"x"), 1002),                                      # reserved opcode
    (frame(True, OP_BINARY, b"x", mask=False), 1002),                    # a client must mask
    (frame(True, OP_PING, b"x" * 126), 1002),                            # control frames are short
    (frame(False, OP_PING, b"x"), 1002),                                 # and never fragmented
    (frame(True, OP_CONT, b"x"), 1002),                                  # continuation of nothing
    (frame(False, OP_TEXT, b"x") + frame(True, OP_BINARY, b"y"), 1002),  # a message inside a message
    (frame(True, OP_TEXT, b"\xff\xfe"), 1007),                           # text that is not UTF-8
    (frame(True, OP_BINARY, b"x" * (ws.MAX_PACKET + 1)), 1009),          # larger than any packet
    (frame(True, OP_TEXT, b"x" * (ws.MAX_TEXT + 1)), 1009),
    (frame(False, OP_BINARY, b"x" * 40000) + frame(True, OP_CONT, b"x" * 40000), 1009),
    (b"\x82\xfe\x00\x05" + b"\0" * 4 + b"hello", 1002),                  # 16-bit length for 5 bytes
    (b"\x82\xff" + struct.pack(">Q", 5) + b"\0" * 4 + b"hello", 1002),   # 64-bit length for 5 bytes
], ids=lambda v: "" if isinstance(v, bytes) else str(v))  # masks are random: ids must not show the bytes
def test_decoder_refuses(data, code):
    with pytest.raises(ProtocolError) as e:
        FrameDecoder(masked=True).feed(data)
    assert e.value.code == code


def test_decoder_fuzz():
    """Random and mutated streams raise ProtocolError or decode; nothing
    else escapes and nothing grows beyond the limits."""
    rnd = random.Random(18)
    valid = (encode_frame(OP_BINARY, b"packet" * 20, mask=True) + encode_frame(OP_TEXT, b'{"type":"card"}', mask=True)
             + encode_frame(OP_PING, b"", mask=True) + frame(False, OP_BINARY, b"ab") + frame(True, OP_CONT, b"cd"))
    for i in range(4000):
        if i % 2:
            data = bytearray(valid)
            for _ in range(rnd.randint(1, 4)):
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        else:
            data = bytearray(rnd.randbytes(rnd.randint(0, 300)))
        dec = FrameDecoder(masked=True)
        try:
            for j in range(0, len(data), 17):
                for op, payload in dec.feed(bytes(data[j:j + 17])):
                    assert op in (OP_BINARY, OP_TEXT, OP_PING, OP_PONG, OP_CLOSE)
                    assert len(payload) <= ws.MAX_PACKET
        except ProtocolError:
            pass
        assert len(dec.msg) <= ws.MAX_PACKET


REQ = ("GET / HTTP/1.1\r\nHost: 127.0.0.1:7100\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://localhost:8000")


def test_request_parsing():
    path, h = parse_request(REQ.encode())
    assert path == "/" and h["origin"] == "http://localhost:8000"
    # RFC 6455's own example of the accept key
    assert ws.accept_key(h["sec-websocket-key"]) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    for bad in (REQ.replace("GET", "POST"), REQ.replace("HTTP/1.1", "HTTP/1.0"), REQ.replace("Version: 13", "Version: 8"),
                REQ.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="), REQ.replace("Upgrade: websocket", "Upgrade: h2c"),
                REQ.replace("Connection: keep-alive, Upgrade", "Connection: close"), REQ + "\r\nbad header"):
        with pytest.raises(ProtocolError):
            parse_request(bad.encode())
    rnd = random.Random(6455)
    for _ in range(2000):
        b = bytearray(REQ.encode())
        for _ in range(rnd.randint(1, 5)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        try:
            parse_request(bytes(b))
        except ProtocolError:
            pass


@pytest.mark.parametrize("origin,ok", [
    (None, True), ("http://127.0.0.1:8000", True), ("http://localhost", True), ("https://localhost:443", True),
    ("http://[::1]:8000", True), ("http://example.org", False), ("http://127.0.0.1.example.org", False),
    ("null", False), ("file://", False), ("http://localhost:80x", False), ("http://[::1]x", False),
    ("https://app.example.org", True),  # configured below
])
def test_origins(origin, ok):
    assert origin_allowed(origin, {"https://app.example.org"}) is ok


# ---- the link over real sockets -------------------------------------------

class Client:
    """A test WebSocket client (masked frames)."""

    def __init__(self, port, origin="http://localhost:8000", key=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = key or base64.b64encode(os.urandom(16)).decode()
        hdr = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
              "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % key
        if origin:
            hdr += "Origin: %s\r\n" % origin
        self.s.sendall((hdr + "\r\n").encode())
        self.key = key
        self.dec = FrameDecoder(masked=False, max_text=1 << 16)
        self.head = b""

    def status(self, link):
        end = time.monotonic() + 5
        self.s.settimeout(0.05)
        while b"\r\n\r\n" not in self.head and time.monotonic() < end:
            link.receive()
            try:
                self.head += self.s.recv(4096)
            except socket.timeout:
                continue
        head, _, rest = self.head.partition(b"\r\n\r\n")
        self.rest = rest
        return head.split(b"\r\n")[0].decode()

    def send(self, op, payload):
        self.s.sendall(encode_frame(op, payload, mask=True))

    def messages(self, link, want=1):
        out = self.dec.feed(self.rest)
        self.rest = b""
        end = time.monotonic() + 5
        while len(out) < want and time.monotonic() < end:
            link.receive()
            self.s.settimeout(0.1)
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                continue
            if not data:
                break
            out += self.dec.feed(data)
        return out


def free_tcp_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pump(link, seconds=0.3):
    got = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        got += link.receive()
        time.sleep(0.01)
    return got


@pytest.fixture
def link():
    offers = []
    lk = WebSocketLink("127.0.0.1:%d" % free_tcp_port(), card=b"\x83\x05card", on_card=lambda c, a: offers.append((c, a)))
    lk.fingerprint = "AAAA-BBBB-CCCC-DDDD"
    lk.offers = offers
    lk.port = int(lk.local.rsplit(":", 1)[1])
    yield lk
    lk.close()


def test_link_hello_packets_and_offer(link):
    c = Client(link.port)
    assert c.status(link) == "HTTP/1.1 101 Switching Protocols"
    assert ("Sec-WebSocket-Accept: %s\r\n" % ws.accept_key(c.key)).encode() in c.head
    (op, hello), = c.messages(link)
    hello = json.loads(hello)
    assert op == OP_TEXT and hello["type"] == "hello" and base64.b64decode(hello["card"]) == b"\x83\x05card"
    c.send(OP_BINARY, b"\x21packet")
    got = pump(link)
    assert len(got) == 1 and got[0][0] == b"\x21packet"
    addr = got[0][1]
    assert addr.startswith("127.0.0.1:") and link.connections() == [addr]
    link.send(b"\x24reply", addr)
    assert c.messages(link) == [(OP_BINARY, b"\x24reply")]
    c.send(OP_PING, b"hi")
    assert c.messages(link) == [(OP_PONG, b"hi")]
    c.send(OP_TEXT, json.dumps({"type": "card", "card": base64.b64encode(b"mycard").decode()}).encode())
    pump(link)
    assert link.offers == [(b"mycard", addr)]
    # one offer per connection: a second one closes it (policy violation)
    c.send(OP_TEXT, json.dumps({"type": "card", "card": "eA=="}).encode())
    (op, payload), = c.messages(link)
    assert op == OP_CLOSE and struct.unpack(">H", payload[:2])[0] == 1008 and len(link.offers) == 1


def test_stale_address_reaches_every_browser(link):
    a, b = Client(link.port), Client(link.port)
    for c in (a, b):
        assert "101" in c.status(link)
        c.messages(link)  # hello
    a.send(OP_BINARY, b"from a")
    (_, addr_a), = pump(link)
    a.s.close()
    pump(link)
    link.send(b"for a's old connection", addr_a)  # a reloaded: its new page is b here
    assert b.messages(link) == [(OP_BINARY, b"for a's old connection")]
    b.s.close()
    pump(link)
    with pytest.raises(ws.LinkError):
        link.send(b"nobody", "")


def test_refusals(link):
    c = Client(link.port, origin="http://evil.example")
    assert c.status(link).startswith("HTTP/1.1 403")
    c = Client(link.port, origin=None)  # not a browser: no cross-site risk
    assert "101" in c.status(link)
    c.messages(link)
    c.send(OP_BINARY, b"x" * (ws.MAX_PACKET + 1))
    (op, payload), = c.messages(link)
    assert op == OP_CLOSE and struct.unpack(">H", payload[:2])[0] == 1009
    bad = socket.create_connection(("127.0.0.1", link.port))
    bad.sendall(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 2000)
    pump(link)
    assert bad.recv(100).startswith(b"HTTP/1.1 400")


def test_connection_limit(link):
    cs = [Client(link.port) for _ in range(ws.MAX_CONNS)]
    for c in cs:
        assert "101" in c.status(link)
    extra = socket.create_connection(("127.0.0.1", link.port))
    pump(link)
    extra.settimeout(2)
    assert extra.recv(10) == b""  # closed at once


# ---- a daemon's bridge, with a second engine as the browser ----------------

def test_daemon_bridge_with_an_engine_as_browser(make_node, tmp_path):
    """The daemon carries packets for a peer on its WebSocket link: the card
    goes over the bridge both ways (hello, offer), and messages both ways
    reach 'delivered'. The peer here is the library's engine driven from
    Python; tests/web does the same with a browser."""
    from loramesh import IdentityKey
    from loramesh.engine import Engine
    from loramesh.client import connect
    from loramesh.config import Home
    d = make_node("daemon")
    port = free_tcp_port()
    d.run("link", "websocket", "127.0.0.1:%d" % port)
    d.run("start")
    assert d.json("status")["links"]["ws"] == "ws://127.0.0.1:%d" % port
    ctl = connect(Home(str(d.home)), "file:" + str(d.secret_file))
    ctl.request("subscribe")

    me = IdentityKey.generate()
    eng = Engine(me, str(tmp_path / "peer-state"))
    eng.add_link("bridge", "stream")
    c = Client(port, origin="http://localhost:9")
    head = b""
    while b"\r\n\r\n" not in head:
        head += c.s.recv(4096)
    head, _, c.rest = head.partition(b"\r\n\r\n")
    assert b" 101 " in head

    def frames(timeout=0.2):
        c.s.settimeout(timeout)
        out = c.dec.feed(c.rest)
        c.rest = b""
        try:
            data = c.s.recv(65536)
            out += c.dec.feed(data)
        except socket.timeout:
            pass
        return out

    hello = None
    for _ in range(50):
        for op, p in frames():
            if op == OP_TEXT:
                hello = json.loads(p)
        if hello:
            break
    assert hello and hello["fingerprint"] == d.json("id")["fingerprint"]
    eng.add_contact("daemon", base64.b64decode(hello["card"]))
    eng.set_contact_addr("daemon", "bridge", "")
    my_card = me.card("peer")
    c.send(OP_TEXT, json.dumps({"type": "card", "card": base64.b64encode(my_card).decode()}).encode())
    offer = None
    end = time.monotonic() + 10
    while offer is None and time.monotonic() < end:
        offer = next((e for e in ctl.events(0.2) if e.get("event") == "card-offer"), None)
    assert offer and base64.b64decode(offer["card"]) == my_card and offer["link"] == "ws"
    ctl.request("contact_import", card=offer["card"], contact="peer", addr="ws")

    mid = eng.send("daemon", "from the peer")
    d_mid = ctl.request("send", contact="peer", text="from the daemon")["id"]
    got, states, d_states = [], [], []
    end = time.monotonic() + 30
    while time.monotonic() < end and not ("delivered" in states and "delivered" in d_states and got):
        for op, p in frames(0.05):
            if op == OP_BINARY:
                eng.receive("bridge", "", p)
        eng.tick()
        for _, _, p in eng.packets():
            c.send(OP_BINARY, p)
        for ev in eng.events():
            if ev.kind == "message":
                got.append(ev.text)
            if ev.kind == "delivery" and ev.msg_id == mid:
                states.append(ev.state)
        for ev in ctl.events(0.05):
            if ev.get("event") == "delivery" and ev.get("id") == d_mid:
                d_states.append(ev["state"])
    assert got == ["from the daemon"], got
    assert "delivered" in states and "delivered" in d_states, (states, d_states)
    assert "from the peer" in [json.loads(l)["text"] for l in d.run("--json", "listen", "--history", "20", "--duration",
                                                                      "0.3").stdout.decode().splitlines()
                               if json.loads(l).get("event") == "message"]
    eng.close()
    me.close()
