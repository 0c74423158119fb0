"""The WebSocket bridge: browser nodes as one more link of the daemon.

A browser node (examples/web, web/loramesh.js) is a full peer with its own
identity and card; the bridge only carries its engine's packets, one binary
WebSocket message per packet, as a UDP link carries datagrams. It is not a
remote control of the daemon: nothing from a browser reaches the control
socket, and the daemon answers handshakes only from contacts, as on every
link.

Addresses on this link are the browser connections' "HOST:PORT". A packet
for a connection that has closed (the page was reloaded) goes to every
connected browser, as a radio frame reaches everyone in range: packets are
end to end encrypted, and the browser whose session it was answers from its
new connection, which the engine then learns. The address "" is that
broadcast too, for contacts imported with `--addr ws`.

Text messages carry public cards, never anything secret:
  - on connecting, the daemon sends {"type": "hello", "card": base64,
    "fingerprint": ...}: its own card, for the page to import;
  - a page may send {"type": "card", "card": base64}: its card, which the
    daemon does not import but announces as a "card-offer" event (with the
    card and its fingerprint) for the user to check and import.

The framing (RFC 6455) is written here rather than taken from Debian's
python3-websockets: the daemon is a select() loop, websockets 10 is built
around asyncio (its sans-I/O layer is not a documented API there), and the
subset needed (the opening handshake, unfragmented sends, reassembly of
fragmented receives, ping/pong/close, strict limits) is small enough to
bound and fuzz here. The same functions, with masking, serve the tests'
DevTools client (tests/web/cdp.py).

Security: the listener is 127.0.0.1 by default. Browsers let any web site
open a WebSocket to a loopback port, so connections whose Origin header is
not a loopback page (or one of the configured origins) are refused; a
client that sends no Origin (not a browser) is accepted. Connections,
message sizes, buffered output and handshake time are bounded.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import select
import socket
import struct
import time

from .transport import LinkError, fmt_addr, parse_addr

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_PACKET = 65540          # the largest loramesh packet (docs/PROTOCOL.md §1)
MAX_TEXT = 8192             # a card offer: cards are a few hundred bytes
MAX_HEAD = 8192             # the HTTP opening request
MAX_CONNS = 16
MAX_BACKLOG = 1 << 20       # output a slow browser may fall behind by
HANDSHAKE_TIME = 10.0       # seconds a connection may take to upgrade
DEFAULT_BIND = "127.0.0.1:7100"


class ProtocolError(Exception):
    """A peer broke RFC 6455 or a limit; code is the close code to send."""

    def __init__(self, msg: str, code: int = 1002):
        super().__init__(msg)
        self.code = code


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


def encode_frame(opcode: int, payload: bytes, mask: bool = False) -> bytes:
    """One final frame. Clients mask (RFC 6455 §5.3), servers do not."""
    n = len(payload)
    head = bytearray([0x80 | opcode])
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 1 << 16:
        head.append(mbit | 126)
        head += struct.pack(">H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack(">Q", n)
    if not mask:
        return bytes(head) + bytes(payload)
    key = os.urandom(4)
    return bytes(head) + key + _xor(payload, key)


def _xor(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


class FrameDecoder:
    """Feeds bytes, returns whole messages as (opcode, payload): text and
    binary messages reassembled from their fragments, control frames as
    they come. Strict: reserved bits, unknown opcodes, the wrong masking for
    the role, non-minimal lengths, oversized messages, fragmented or long
    control frames and invalid UTF-8 text raise ProtocolError."""

    def __init__(self, masked: bool, max_binary: int = MAX_PACKET, max_text: int = MAX_TEXT):
        self.masked = masked  # frames must be masked (a server reading a client)
        self.max = {OP_BINARY: max_binary, OP_TEXT: max_text}
        self.buf = bytearray()
        self.msg_op = None
        self.msg = bytearray()

    def feed(self, data: bytes) -> list:
        self.buf += data
        out = []
        while True:
            frame = self._frame()
            if frame is None:
                return out
            fin, op, payload = frame
            if op >= 0x8:
                out.append((op, payload))
                continue
            if op != OP_CONT:
                self.msg_op = op
            if len(self.msg) + len(payload) > self.max[self.msg_op]:
                raise ProtocolError("message too large", 1009)
            self.msg += payload
            if fin:
                op, msg = self.msg_op, bytes(self.msg)
                self.msg_op, self.msg = None, bytearray()
                if op == OP_TEXT:
                    try:
                        msg.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ProtocolError("text message is not UTF-8", 1007)
                out.append((op, msg))

    def _frame(self):
        b = self.buf
        if len(b) < 2:
            return None
        fin, rsv, op = b[0] & 0x80, b[0] & 0x70, b[0] & 0x0F
        masked, n = b[1] & 0x80, b[1] & 0x7F
        if rsv:
            raise ProtocolError("reserved bits set (no extension was negotiated)")
        if op not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            raise ProtocolError("unknown opcode %d" % op)
        if bool(masked) != self.masked:
            raise ProtocolError("frame masking is wrong for this side")
        if op >= 0x8 and (not fin or n > 125):
            raise ProtocolError("control frames must be whole and at most 125 bytes")
        if op == OP_CONT and self.msg_op is None:
            raise ProtocolError("continuation frame without a message")
        if op in (OP_TEXT, OP_BINARY) and self.msg_op is not None:
            raise ProtocolError("new message inside a fragmented one")
        pos = 2
        if n == 126:
            if len(b) < 4:
                return None
            n = struct.unpack_from(">H", b, 2)[0]
            pos = 4
            if n < 126:
                raise ProtocolError("length not minimally encoded")
        elif n == 127:
            if len(b) < 10:
                return None
            n = struct.unpack_from(">Q", b, 2)[0]
            pos = 10
            if n < 1 << 16 or n >> 63:
                raise ProtocolError("length not minimally encoded")
        limit = 125 if op >= 0x8 else self.max.get(op if op else self.msg_op, 0)
        if n > limit:
            raise ProtocolError("frame too large", 1009)
        key = b""
        if masked:
            if len(b) < pos + 4:
                return None
            key = bytes(b[pos:pos + 4])
            pos += 4
        if len(b) < pos + n:
            return None
        payload = bytes(b[pos:pos + n])
        del b[:pos + n]
        if masked:
            payload = _xor(payload, key)
        return fin, op, payload


def parse_request(head: bytes):
    """The opening request (up to the blank line) as (path, headers with
    lowercase names); ProtocolError unless it is a WebSocket upgrade."""
    try:
        text = head.decode("iso-8859-1")
    except UnicodeDecodeError:  # cannot happen with latin-1, kept for clarity
        raise ProtocolError("bad request")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
        raise ProtocolError("not a GET HTTP/1.1 request")
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError("bad header line")
        name = name.lower()
        value = value.strip()
        headers[name] = headers[name] + ", " + value if name in headers else value
    if headers.get("upgrade", "").lower() != "websocket" or \
            "upgrade" not in [t.strip().lower() for t in headers.get("connection", "").split(",")]:
        raise ProtocolError("not a WebSocket upgrade")
    if headers.get("sec-websocket-version") != "13":
        raise ProtocolError("WebSocket version must be 13")
    try:
        if len(base64.b64decode(headers.get("sec-websocket-key", ""), validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise ProtocolError("bad Sec-WebSocket-Key")
    return parts[1], headers


def origin_allowed(origin, allowed) -> bool:
    """No Origin (not a browser), a loopback page, or a configured origin."""
    if origin is None:
        return True
    if origin in allowed:
        return True
    scheme, sep, rest = origin.partition("://")
    if scheme not in ("http", "https") or not sep:
        return False
    if rest.startswith("[::1]"):
        return rest in ("[::1]",) or rest.startswith("[::1]:") and rest[6:].isdigit()
    host, _, port = rest.partition(":")
    return host in ("127.0.0.1", "localhost") and (port == "" or port.isdigit())


class _Conn:
    def __init__(self, sock, addr: str):
        self.sock = sock
        self.addr = addr
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.open = False  # upgraded
        self.closing = False
        self.since = time.monotonic()
        self.decoder = FrameDecoder(masked=True)
        self.offered = False


class WebSocketLink:
    """The daemon's WebSocket listener as a link: fileno() is an epoll
    descriptor that is readable whenever a connection needs attention, so
    the daemon's select() loop serves it like a socket."""

    profile = "stream"

    def __init__(self, bind: str = None, origins=(), card: bytes = None, on_card=None):
        self.origins = set(o.strip() for o in origins if o.strip())
        self.card = card          # the daemon's card, sent in the hello
        self.fingerprint = ""
        self.on_card = on_card    # called with (card bytes, addr) for an offer
        self.conns = {}           # fd -> _Conn
        self.ep = select.epoll()
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        where = bind or DEFAULT_BIND
        try:
            self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.server.bind(parse_addr(where))
            self.server.listen(16)
        except (OSError, ValueError) as e:
            self.server.close()
            self.ep.close()
            raise LinkError("cannot listen for WebSocket connections on %s: %s" % (
                where, getattr(e, "strerror", None) or e))
        self.server.setblocking(False)
        self.ep.register(self.server.fileno(), select.EPOLLIN)

    @property
    def local(self) -> str:
        return "ws://" + fmt_addr(self.server.getsockname())

    def fileno(self) -> int:
        return self.ep.fileno()

    # ---- the link interface ----------------------------------------------

    def receive(self) -> list:
        """Serves what is ready; returns the packets browsers sent, as
        (packet, "HOST:PORT")."""
        out = []
        for fd, ev in self.ep.poll(0):
            if fd == self.server.fileno():
                self._accept()
                continue
            c = self.conns.get(fd)
            if c is None:
                continue
            if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                self._read(c, out)
            if fd in self.conns and ev & select.EPOLLOUT:
                self._flush(c)
        return out

    def send(self, packet: bytes, addr: str = "") -> None:
        targets = [c for c in self.conns.values() if c.open and not c.closing]
        one = [c for c in targets if c.addr == addr]
        if one:
            targets = one
        if not targets:
            raise LinkError("no browser is connected to the WebSocket bridge %s" % self.local)
        frame = encode_frame(OP_BINARY, packet)
        for c in targets:
            self._queue(c, frame)

    def close(self) -> None:
        for c in list(self.conns.values()):
            self._drop(c)
        self.server.close()
        self.ep.close()

    def connections(self) -> list:
        return [c.addr for c in self.conns.values() if c.open]

    # ---- connections ---------------------------------------------------

    def _accept(self) -> None:
        try:
            s, a = self.server.accept()
        except OSError:
            return
        now = time.monotonic()
        for c in list(self.conns.values()):  # slow openers make room
            if not c.open and now - c.since > HANDSHAKE_TIME:
                self._drop(c)
        if len(self.conns) >= MAX_CONNS:
            s.close()
            return
        s.setblocking(False)
        c = _Conn(s, fmt_addr(a[:2]))
        self.conns[s.fileno()] = c
        self.ep.register(s.fileno(), select.EPOLLIN)

    def _drop(self, c: _Conn) -> None:
        if self.conns.pop(c.sock.fileno(), None) is not None:
            try:
                self.ep.unregister(c.sock.fileno())
            except OSError:
                pass
        c.sock.close()

    def _queue(self, c: _Conn, data: bytes) -> None:
        c.outbuf += data
        if len(c.outbuf) > MAX_BACKLOG:
            self._drop(c)
            return
        self._flush(c)

    def _flush(self, c: _Conn) -> None:
        try:
            while c.outbuf:
                n = c.sock.send(c.outbuf)
                del c.outbuf[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(c)
            return
        if c.closing and not c.outbuf:
            self._drop(c)
            return
        mask = select.EPOLLIN | (select.EPOLLOUT if c.outbuf else 0)
        try:
            self.ep.modify(c.sock.fileno(), mask)
        except OSError:
            pass

    def _read(self, c: _Conn, out: list) -> None:
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(c)
            return
        if c.closing:
            return  # whatever follows a refusal or a close is not read
        try:
            if not c.open:
                c.inbuf += data
                end = c.inbuf.find(b"\r\n\r\n")
                if end < 0:
                    if len(c.inbuf) > MAX_HEAD:
                        raise ProtocolError("request head too long")
                    return
                head, rest = bytes(c.inbuf[:end]), bytes(c.inbuf[end + 4:])
                c.inbuf = bytearray()
                self._upgrade(c, head)
                data = rest
                if not c.open:
                    return
            for op, payload in c.decoder.feed(data):
                self._message(c, op, payload, out)
        except ProtocolError as e:
            if c.open:
                self._close(c, e.code, str(e))
            else:
                self._refuse(c, str(e))

    def _upgrade(self, c: _Conn, head: bytes) -> None:
        _, headers = parse_request(head)
        if not origin_allowed(headers.get("origin"), self.origins):
            # str() of the origin is not echoed: it is the peer's text.
            self._refuse(c, "origin not allowed", status="403 Forbidden")
            return
        key = headers["sec-websocket-key"]
        c.open = True
        self._queue(c, ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Accept: %s\r\n\r\n" % accept_key(key)).encode("ascii"))
        if self.card is not None and c.sock.fileno() in self.conns:
            hello = {"type": "hello", "card": base64.b64encode(self.card).decode(), "fingerprint": self.fingerprint}
            self._queue(c, encode_frame(OP_TEXT, json.dumps(hello).encode()))

    def _refuse(self, c: _Conn, why: str, status: str = "400 Bad Request") -> None:
        body = (why + "\n").encode("ascii", "replace")
        c.closing = True
        self._queue(c, ("HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                        % (status, len(body))).encode("ascii") + body)

    def _close(self, c: _Conn, code: int, why: str = "") -> None:
        if c.closing:
            return
        c.closing = True
        self._queue(c, encode_frame(OP_CLOSE, struct.pack(">H", code) + why.encode("utf-8")[:120]))

    def _message(self, c: _Conn, op: int, payload: bytes, out: list) -> None:
        if c.closing:
            return
        if op == OP_BINARY:
            out.append((payload, c.addr))
        elif op == OP_PING:
            self._queue(c, encode_frame(OP_PONG, payload))
        elif op == OP_CLOSE:
            self._close(c, 1000)
        elif op == OP_TEXT:
            self._text(c, payload)

    def _text(self, c: _Conn, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            raise ProtocolError("text messages are JSON", 1003)
        if not isinstance(msg, dict) or msg.get("type") != "card" or not isinstance(msg.get("card"), str):
            raise ProtocolError("unknown text message", 1003)
        if c.offered:
            raise ProtocolError("one card offer per connection", 1008)
        try:
            card = base64.b64decode(msg["card"], validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("card is not base64", 1003)
        c.offered = True
        if self.on_card is not None:
            self.on_card(card, c.addr)


def attach(daemon, link: WebSocketLink) -> None:
    """Gives the bridge the daemon's card and announces card offers as
    "card-offer" events (the user imports them with `contact import`)."""
    from .keys import ContactCard
    from . import errors

    link.card = daemon.identity.card(daemon.display or "node")
    with ContactCard(link.card) as own:
        link.fingerprint = own.fingerprint

    def offered(card: bytes, addr: str) -> None:
        try:
            with ContactCard(card) as cc:
                ev = {"event": "card-offer", "time": time.time(), "name": cc.name, "fingerprint": cc.fingerprint,
                      "card": base64.b64encode(card).decode(), "link": "ws", "addr": addr}
        except errors.LoraMeshError as e:
            daemon.say("a card offered over the WebSocket bridge from %s was refused: %s" % (addr, e))
            return
        daemon.transient.append(ev)  # replayed to clients that subscribe later, as link events are
        daemon.publish(ev)

    link.on_card = offered
