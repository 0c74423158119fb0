"""Tor as one more link: a control-port client, the daemon's own tor, and
an onion-service stream link.

- TorControl: the control protocol (control-spec.txt) over a TCP or Unix
  socket: PROTOCOLINFO, SAFECOOKIE/COOKIE authentication, GETINFO,
  SETEVENTS and asynchronous 650 events, ADD_ONION/DEL_ONION.
- TorProcess: starts and supervises a tor of our own (its own torrc in a
  data directory, never the system's), or attaches to a running one.
- OnionLink: framed packets over onion-service streams, with the shape of
  the transports in transport.py (send, recv, fileno, close).

Standard library only; importing this module does not load libloramesh.
Secrets (the onion service key, tor's auth cookie) live only in bytearrays
that are wiped after use; nothing here logs or prints them.
"""
from __future__ import annotations

import base64
import collections
import ctypes
import errno
import hashlib
import hmac
import itertools
import logging
import os
import select
import shutil
import socket
import struct
import subprocess
import time

from .errors import InvalidArgumentError, LoraMeshError

log = logging.getLogger("loramesh.tor")

__all__ = [
    "TorError", "TorNotInstalledError", "TorStartError", "BootstrapError", "ControlError",
    "ControlConnectError", "ControlAuthError", "ControlProtocolError", "ControlReplyError",
    "ControlTimeoutError", "OnionLinkError", "OnionUnreachableError", "LinkBusyError",
    "NotConnectedError", "TorControl", "TorProcess", "OnionLink", "Reply", "Event", "LinkEvent",
    "InboundAddr", "wipe", "generate_onion_key", "onion_address_from_public_key", "parse_onion_address",
    "check_onion_address",
    "SOCKS_REPLIES",
]


# ---- errors -------------------------------------------------------------

class TorError(LoraMeshError):
    """Root of every error about tor (itself a LoraMeshError)."""


class TorNotInstalledError(TorError):
    """No tor binary where we looked."""


class TorStartError(TorError):
    """Our tor exited or did not open its control port in time."""


class BootstrapError(TorError):
    """Tor did not finish bootstrapping in time, or stopped progressing."""


class ControlError(TorError):
    """Anything that went wrong on a control connection."""


class ControlConnectError(ControlError):
    """The control port could not be reached."""


class ControlAuthError(ControlError):
    """Authentication failed or could not be attempted."""


class ControlProtocolError(ControlError):
    """Tor (or whatever listens there) sent something that is not a valid reply."""


class ControlReplyError(ControlError):
    """Tor refused a command (4xx/5xx); ``code`` is its status code."""

    def __init__(self, message, code=0):
        super().__init__(message)
        self.reply_code = code


class ControlTimeoutError(ControlError):
    """No complete reply in time; the connection is closed."""


class OnionLinkError(TorError):
    """A send on an OnionLink that cannot be done now."""


class OnionUnreachableError(OnionLinkError):
    """The onion failed recently; the link waits before it tries again."""


class LinkBusyError(OnionLinkError):
    """Send buffer or connection limit reached: keep the packet and retry later."""


class NotConnectedError(OnionLinkError):
    """The inbound connection a reply was meant for is closed."""


# SOCKS5 replies (RFC 1928) and tor's ExtendedErrors (tor(1), SocksPort).
SOCKS_REPLIES = {
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
    0xF0: "onion service descriptor can not be found",
    0xF1: "onion service descriptor is invalid",
    0xF2: "onion service introduction failed",
    0xF3: "onion service rendezvous failed",
    0xF4: "onion service missing client authorization",
    0xF5: "onion service wrong client authorization",
    0xF6: "onion service invalid address",
    0xF7: "onion service introduction timed out",
}


# ---- secrets ------------------------------------------------------------

def wipe(buf: bytearray) -> None:
    """Zero a bytearray in place with memset (a C call the interpreter cannot skip).
    Not loramesh.secure_wipe: that loads libloramesh, which this module must not need."""
    if not isinstance(buf, bytearray):
        raise TypeError("wipe needs a bytearray (bytes and str cannot be wiped)")
    n = len(buf)
    if n:
        view = (ctypes.c_char * n).from_buffer(buf)
        ctypes.memset(ctypes.addressof(view), 0, n)
        del view


_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_HEX = b"0123456789ABCDEF"


def _b64_into(src, dst: bytearray, at: int) -> int:
    """Base64 of src written into dst[at:]; returns the end offset. Each
    output character comes from at most two input bytes, so every
    intermediate is an int below 256 (CPython's shared small ints): no new
    object ever holds key bits, unlike base64.b64encode's bytes result."""
    n = len(src)
    for i in range(0, n, 3):
        a = src[i]
        b = src[i + 1] if i + 1 < n else 0
        c = src[i + 2] if i + 2 < n else 0
        dst[at] = _B64[a >> 2]
        dst[at + 1] = _B64[((a & 3) << 4) | (b >> 4)]
        dst[at + 2] = _B64[((b & 15) << 2) | (c >> 6)] if i + 1 < n else 61  # '='
        dst[at + 3] = _B64[c & 63] if i + 2 < n else 61
        at += 4
    return at


def _hex_into(src, dst: bytearray, at: int) -> int:
    for b in src:
        dst[at] = _HEX[b >> 4]
        dst[at + 1] = _HEX[b & 15]
        at += 2
    return at


def generate_onion_key() -> bytearray:
    """A new onion service key: the 64-byte expanded Ed25519 secret that tor
    takes as ``ED25519-V3:<base64>`` (a clamped scalar, then the signing
    prefix), read from /dev/urandom straight into a bytearray. The caller
    keeps it like any secret and wipes it when done."""
    key = bytearray(64)
    with open("/dev/urandom", "rb", buffering=0) as f:
        got = 0
        while got < 64:
            got += f.readinto(memoryview(key)[got:])
    key[0] &= 248
    key[31] &= 127
    key[31] |= 64
    return key


# ---- onion addresses ----------------------------------------------------

def onion_address_from_public_key(pub32: bytes) -> str:
    """The v3 onion address "<56 base32 chars>.onion" of an Ed25519 public
    key: base32(pub | SHA3-256(".onion checksum" | pub | 3)[:2] | 3)
    (rend-spec-v3 6). Tor's ServiceID is the part before ".onion"."""
    pub = bytes(pub32)
    if len(pub) != 32:
        raise InvalidArgumentError("an onion public key is 32 bytes, got %d" % len(pub))
    check = hashlib.sha3_256(b".onion checksum" + pub + b"\x03").digest()[:2]
    return base64.b32encode(pub + check + b"\x03").decode("ascii").lower() + ".onion"


def parse_onion_address(addr) -> bytes:
    """The public key of a v3 onion address, checked as strictly as the
    the library checks the one in a card (internal/onion.Check, docs/PROTOCOL.md §5):
    "<56 lower-case base32 characters>.onion" (or tor's ServiceID, without
    the suffix), version 3, a matching checksum, and a key tor accepts (a
    canonical Ed25519 point of prime order). Raises InvalidArgumentError
    saying what is wrong; the message repeats at most 80 characters of the
    input, which may come from a peer: escape it before showing it."""
    if not isinstance(addr, str):
        raise InvalidArgumentError("an onion address is a str like 'xxxx.onion', got %s" % type(addr).__name__)
    sid = addr[:-6] if addr.endswith(".onion") else addr
    if len(sid) != 56:
        raise InvalidArgumentError("%r is not a v3 onion address (56 base32 characters + .onion)" % addr[:80])
    if not all(c in _B32_LOWER for c in sid):
        if sid.lower() != sid and all(c in _B32_LOWER for c in sid.lower()):
            raise InvalidArgumentError("%r is not a v3 onion address: write it in lower case, as tor does" % addr[:80])
        raise InvalidArgumentError("%r is not a v3 onion address: not base32" % addr[:80])
    raw = base64.b32decode(sid.upper())
    pub = raw[:32]
    if raw[34] != 3:
        raise InvalidArgumentError("%r is not a v3 onion address: version %d" % (addr, raw[34]))
    if onion_address_from_public_key(pub) != sid + ".onion":
        raise InvalidArgumentError("%r has a wrong checksum: mistyped?" % addr)
    if not _prime_order_point(pub):
        raise InvalidArgumentError("%r is not a v3 onion address: its key is not a valid Ed25519 key" % addr)
    return pub


def check_onion_address(addr) -> str:
    """addr if it is a v3 onion address with its ".onion" (see
    parse_onion_address), else InvalidArgumentError."""
    if not isinstance(addr, str) or not addr.endswith(".onion"):
        raise InvalidArgumentError("%r is not an onion address (56 base32 characters + .onion)" % (str(addr)[:80],))
    parse_onion_address(addr)
    return addr


_B32_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz234567")

# Ed25519 (RFC 8032 §5.1) on public values only: decoding an onion
# address's key and checking its order, as tor's ed25519_validate_pubkey does.
_P = 2 ** 255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_L = 2 ** 252 + 27742317777372353535851937790883648493
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decode_point(b: bytes):
    """(x, y) of a canonical point encoding, else None."""
    y = int.from_bytes(b, "little") & ((1 << 255) - 1)
    sign = b[31] >> 7
    if y >= _P:
        return None
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P:
        x = x * _SQRT_M1 % _P
        if (v * x * x - u) % _P:
            return None
    if x == 0 and sign:
        return None  # -0: not canonical
    if x & 1 != sign:
        x = _P - x
    return x, y


def _ext_add(a, b):
    """Extended twisted Edwards addition (RFC 8032 §5.1.4), complete."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    A = (y1 - x1) * (y2 - x2) % _P
    B = (y1 + x1) * (y2 + x2) % _P
    C = 2 * t1 * t2 * _D % _P
    D = 2 * z1 * z2 % _P
    E, F, G, H = B - A, D - C, D + C, B + A
    return E * F % _P, G * H % _P, F * G % _P, E * H % _P


def _prime_order_point(b: bytes) -> bool:
    """b encodes canonically a point other than the identity with [l]P = identity."""
    pt = _decode_point(b)
    if pt is None or pt == (0, 1):
        return False
    p = (pt[0], pt[1], 1, pt[0] * pt[1] % _P)
    r, k = (0, 1, 1, 0), _L
    while k:
        if k & 1:
            r = _ext_add(r, p)
        p, k = _ext_add(p, p), k >> 1
    return r[0] % _P == 0 and (r[1] - r[2]) % _P == 0


# ---- control protocol ---------------------------------------------------

MAX_REPLY = 1 << 20  # bytes; nothing we ask for is near this, and a stuck peer cannot grow our buffer


class Reply:
    """One control-port reply (or 6xx event): its status code and lines.

    ``lines`` is a list of (text, data) where data is the dot-decoded block
    of a "+" line, else None. The last line's text is usually "OK".
    """

    __slots__ = ("code", "lines")

    def __init__(self, code: int, lines: list):
        self.code = code
        self.lines = lines

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def message(self) -> str:
        return self.lines[-1][0]

    def __repr__(self):
        return "Reply(%d, %r)" % (self.code, [t for t, _ in self.lines])


class Event(Reply):
    """An asynchronous event (650): ``type`` is its first word, ``words``
    the first line split on spaces (type first)."""

    __slots__ = ()

    @property
    def words(self) -> list:
        return self.lines[0][0].split(" ")

    @property
    def type(self) -> str:
        return self.words[0]


def parse_reply(buf) -> tuple:
    """(Reply or Event, bytes consumed) for the first complete reply in buf,
    or (None, 0) when buf does not hold one yet. Strict: 3-digit codes in
    2xx/4xx/5xx/6xx, separators '-', '+' or ' ', CRLF line ends, one status
    code per reply; anything else raises ControlProtocolError."""
    pos, code, lines = 0, None, []

    def line():
        nonlocal pos
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if len(buf) > MAX_REPLY:
                raise ControlProtocolError("control reply longer than %d bytes" % MAX_REPLY)
            return None
        raw = bytes(buf[pos:eol])
        if b"\n" in raw or b"\r" in raw:
            raise ControlProtocolError("bare CR or LF inside a control reply line")
        pos = eol + 2
        return raw

    while True:
        raw = line()
        if raw is None:
            return None, 0
        c, sep, text = raw[:3], raw[3:4], raw[4:]
        if len(raw) < 4 or not (c.isdigit() and c.isascii()) or c[:1] not in b"2456":
            raise ControlProtocolError("not a control reply line: %r" % raw[:60])
        if code is not None and c != code:
            raise ControlProtocolError("status code changed inside one reply (%s then %s)"
                                       % (code.decode(), c.decode()))
        code = c
        data = None
        if sep == b"+":
            block = []
            while True:
                d = line()
                if d is None:
                    return None, 0
                if d == b".":
                    break
                block.append(d[1:] if d.startswith(b".") else d)
            data = b"\n".join(block).decode("utf-8", "replace")
        elif sep not in (b"-", b" "):
            raise ControlProtocolError("bad separator %r after status code %s" % (sep, c.decode()))
        lines.append((text.decode("utf-8", "replace"), data))
        if sep == b" ":
            cls = Event if code[:1] == b"6" else Reply
            return cls(int(code), lines), pos


_ESC = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


def _unquote(s: str, i: int) -> tuple:
    """Decode the QuotedString starting at s[i] == '"': (value, index after it)."""
    out = []
    i += 1
    while i < len(s):
        ch = s[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\":
            nxt = s[i + 1:i + 2]
            if nxt in _ESC:
                out.append(_ESC[nxt])
                i += 2
                continue
            oct3 = s[i + 1:i + 4]
            if len(oct3) == 3 and all(c in "01234567" for c in oct3):
                out.append(chr(int(oct3, 8)))
                i += 4
                continue
            raise ControlProtocolError("bad escape in quoted string: %r" % s[i:i + 4])
        out.append(ch)
        i += 1
    raise ControlProtocolError("unterminated quoted string in %r" % s[:80])


def parse_kv(text: str) -> dict:
    """KEY=VALUE and KEY="quoted value" pairs of one reply line; words
    without '=' are ignored. Later duplicates win."""
    out, i, n = {}, 0, len(text)
    while i < n:
        if text[i] == " ":
            i += 1
            continue
        j = i
        while j < n and text[j] not in " =":
            j += 1
        key = text[i:j]
        if j < n and text[j] == "=":
            if j + 1 < n and text[j + 1] == '"':
                val, j = _unquote(text, j + 1)
            else:
                k = text.find(" ", j + 1)
                k = n if k < 0 else k
                val, j = text[j + 1:k], k
            out[key] = val
        i = j
    return out


def _quoted_list(text: str) -> list:
    """A space-separated list of QuotedStrings (GETINFO net/listeners/*)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == " ":
            i += 1
        elif text[i] == '"':
            v, i = _unquote(text, i)
            out.append(v)
        else:
            j = text.find(" ", i)
            j = len(text) if j < 0 else j
            out.append(text[i:j])
            i = j
    return out


def _parse_addr(addr: str):
    """(family, sockaddr) of "HOST:PORT", "[V6]:PORT", "/path" or "unix:/path"."""
    if not isinstance(addr, str) or not addr:
        raise InvalidArgumentError("a control address is HOST:PORT or a Unix socket path, got %r" % (addr,))
    if addr.startswith("unix:"):
        addr = addr[5:]
    if addr.startswith("/"):
        return socket.AF_UNIX, addr
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgumentError("control address must be HOST:PORT or a Unix socket path, got %r" % addr)
    host = host.strip("[]") or "127.0.0.1"
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, int(port))


SAFECOOKIE_SERVER = b"Tor safe cookie authentication server-to-controller hash"
SAFECOOKIE_CLIENT = b"Tor safe cookie authentication controller-to-server hash"


def _read_cookie(path: str, where: str) -> bytearray:
    """The 32-byte cookie file, read afresh (tor rewrites it at every start) into a bytearray."""
    buf = bytearray(32)
    try:
        with open(path, "rb", buffering=0) as f:
            got = 0
            while got < 32:
                n = f.readinto(memoryview(buf)[got:])
                if not n:
                    break
                got += n
            extra = f.read(1)
    except OSError as e:
        wipe(buf)
        raise ControlAuthError("cannot read tor's cookie file %s (%s) for %s: run as the user tor runs as, "
                               "or one in its group (Debian: debian-tor)" % (path, e.strerror or e, where)) from None
    if got != 32 or extra:
        wipe(buf)
        raise ControlAuthError("tor's cookie file %s is not 32 bytes: is it really tor's control_auth_cookie?" % path)
    return buf


class TorControl:
    """A client for tor's control port, over TCP ("127.0.0.1:9051") or a
    Unix socket ("/run/tor/control").

    One command at a time (not thread-safe); each waits at most ``timeout``
    seconds, after which the connection is closed (its state is unknown).
    Asynchronous events (650) that arrive between or before replies are
    queued (at most MAX_EVENTS, oldest dropped) and read with next_event()
    or wait_event(); fileno() is the socket, for select.
    """

    MAX_EVENTS = 1024

    def __init__(self, addr: str, timeout: float = 10.0):
        family, sa = _parse_addr(addr)
        self.addr = addr
        self.timeout = timeout
        self.events = collections.deque(maxlen=self.MAX_EVENTS)
        self._buf = bytearray()
        self._event_names = set()
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(sa)
        except OSError as e:
            self.sock.close()
            self.sock = None
            hint = ("is tor running with ControlPort %s?" % addr if family != socket.AF_UNIX
                    else "is tor running with ControlSocket %s, and may this user open it?" % addr)
            raise ControlConnectError("cannot connect to tor's control port %s: %s: %s"
                                      % (addr, e.strerror or e, hint)) from None

    # -- plumbing

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock else -1

    @property
    def closed(self) -> bool:
        return self.sock is None

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fail(self, exc):
        self.close()
        raise exc

    def _fill(self, deadline) -> bool:
        """Read more into the buffer; False on timeout (None deadline: no wait)."""
        if self.sock is None:
            raise ControlConnectError("control connection to %s is closed" % self.addr)
        left = 0.0 if deadline is None else deadline - time.monotonic()
        if left <= 0 and deadline is not None:
            return False
        try:
            self.sock.settimeout(left if deadline is not None else 0.0)
            chunk = self.sock.recv(65536)
        except (socket.timeout, BlockingIOError):
            return False
        except OSError as e:
            self._fail(ControlConnectError("control connection to %s failed: %s" % (self.addr, e.strerror or e)))
        if not chunk:
            self._fail(ControlConnectError("tor closed the control connection %s (did tor exit?)" % self.addr))
        self._buf += chunk
        return True

    def _next(self, deadline):
        """The next complete reply or event from the buffer/socket, or None on timeout."""
        while True:
            try:
                rep, used = parse_reply(self._buf)
            except ControlProtocolError as e:
                self._fail(ControlProtocolError("%s on %s: is this tor's control port?" % (e, self.addr)))
            if rep is not None:
                del self._buf[:used]
                return rep
            if not self._fill(deadline):
                return None

    def _send(self, line, show: str):
        if self.sock is None:
            raise ControlConnectError("control connection to %s is closed" % self.addr)
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(line)
        except OSError as e:
            self._fail(ControlConnectError("cannot send %s to %s: %s" % (show, self.addr, e.strerror or e)))

    def _reply(self, show: str, timeout=None) -> Reply:
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            rep = self._next(deadline)
            if rep is None:
                self._fail(ControlTimeoutError("tor's control port %s did not answer %s within %g s"
                                               % (self.addr, show, wait)))
            if isinstance(rep, Event):
                self.events.append(rep)
                continue
            return rep

    def request(self, line: str, timeout=None) -> Reply:
        """Send one command line, return its reply (2xx, 4xx or 5xx)."""
        if "\r" in line or "\n" in line:
            raise InvalidArgumentError("a control command is one line, without CR or LF")
        verb = line.split(" ", 1)[0]
        self._send(line.encode("utf-8") + b"\r\n", verb)
        return self._reply(verb, timeout)

    def command(self, line: str, timeout=None) -> Reply:
        """request() that raises ControlReplyError unless tor answers 2xx."""
        return self._check(self.request(line, timeout), line.split(" ", 1)[0])

    def _check(self, rep: Reply, verb: str) -> Reply:
        if not rep.ok:
            raise ControlReplyError("tor at %s refused %s: %d %s" % (self.addr, verb, rep.code, rep.message[:200]),
                                    rep.code)
        return rep

    # -- authentication

    def protocolinfo(self) -> dict:
        """{"methods": [...], "cookiefile": path or None, "version": "0.4.9.11"}."""
        rep = self.command("PROTOCOLINFO 1")
        info = {"methods": [], "cookiefile": None, "version": None}
        for text, _ in rep.lines:
            if text.startswith("AUTH "):
                kv = parse_kv(text[5:])
                info["methods"] = [m for m in kv.get("METHODS", "").split(",") if m]
                info["cookiefile"] = kv.get("COOKIEFILE")
            elif text.startswith("VERSION "):
                info["version"] = parse_kv(text[8:]).get("Tor")
        return info

    def authenticate(self) -> None:
        """PROTOCOLINFO, then SAFECOOKIE (HMAC-SHA256 both ways), COOKIE if
        tor does not offer SAFECOOKIE, or NULL when tor asks for nothing.
        The cookie file is read afresh here each time and wiped after."""
        info = self.protocolinfo()
        methods = info["methods"]
        if "NULL" in methods:
            return self._authenticated(self.request("AUTHENTICATE"), None)
        path = info["cookiefile"]
        if not ("SAFECOOKIE" in methods or "COOKIE" in methods) or not path:
            raise ControlAuthError("tor at %s offers %s authentication; this client needs cookie authentication "
                                   "(CookieAuthentication 1 in its torrc)" % (self.addr, ",".join(methods) or "no"))
        cookie = _read_cookie(path, self.addr)
        line = bytearray(13 + 64 + 2)  # AUTHENTICATE <64 hex> CRLF
        msg = bytearray(96)
        try:
            line[:13] = b"AUTHENTICATE "
            line[-2:] = b"\r\n"
            if "SAFECOOKIE" in methods:
                cnonce = os.urandom(32)
                rep = self.command("AUTHCHALLENGE SAFECOOKIE " + cnonce.hex())
                kv = parse_kv(rep.lines[0][0])
                try:
                    server_hash = bytes.fromhex(kv["SERVERHASH"])
                    snonce = bytes.fromhex(kv["SERVERNONCE"])
                except (KeyError, ValueError):
                    self._fail(ControlProtocolError("bad AUTHCHALLENGE reply from %s" % self.addr))
                if len(snonce) != 32 or len(server_hash) != 32:
                    self._fail(ControlProtocolError("bad AUTHCHALLENGE nonce or hash length from %s" % self.addr))
                msg[0:32] = cookie
                msg[32:64] = cnonce
                msg[64:96] = snonce
                # hmac reads msg in place; the digests are single-use proofs bound to
                # fresh nonces, not the cookie, so they may be plain bytes.
                want = hmac.new(SAFECOOKIE_SERVER, msg, hashlib.sha256).digest()
                if not hmac.compare_digest(want, server_hash):
                    # Never fall back to COOKIE here: that would hand the cookie to whoever this is.
                    self._fail(ControlAuthError(
                        "the server at %s does not know the cookie in %s: it is not the tor that wrote that file "
                        "(another program on this port, or a stale cookie file)" % (self.addr, path)))
                _hex_into(hmac.new(SAFECOOKIE_CLIENT, msg, hashlib.sha256).digest(), line, 13)
            else:
                _hex_into(cookie, line, 13)
            self._send(line, "AUTHENTICATE")
            self._authenticated(self._reply("AUTHENTICATE"), path)
        finally:
            wipe(cookie)
            wipe(line)
            wipe(msg)

    def _authenticated(self, rep: Reply, path):
        if rep.ok:
            return
        self.close()  # tor closes it after a failed AUTHENTICATE anyway
        what = "is the cookie file %s readable and from the tor now running?" % path if path else "check its torrc"
        raise ControlAuthError("control port %s refused authentication (%d %s): %s"
                               % (self.addr, rep.code, rep.message[:120], what))

    # -- queries and events

    def getinfo(self, *keys: str) -> dict:
        """GETINFO keys -> {key: value} (multi-line values joined with "\\n")."""
        for k in keys:
            if not k or any(c in k for c in " \r\n"):
                raise InvalidArgumentError("bad GETINFO key %r" % k)
        rep = self.command("GETINFO " + " ".join(keys))
        out = {}
        for text, data in rep.lines[:-1]:
            key, eq, val = text.partition("=")
            if not eq:
                raise ControlProtocolError("GETINFO reply line without '=' from %s: %r" % (self.addr, text[:80]))
            out[key] = data if data is not None else val
        missing = [k for k in keys if k not in out]
        if missing:
            raise ControlProtocolError("GETINFO reply from %s lacks %s" % (self.addr, ", ".join(missing)))
        return out

    def bootstrap_status(self) -> tuple:
        """(progress 0-100, tag, summary) from status/bootstrap-phase."""
        kv = parse_kv(self.getinfo("status/bootstrap-phase")["status/bootstrap-phase"])
        try:
            return int(kv.get("PROGRESS", "")), kv.get("TAG", ""), kv.get("SUMMARY", "")
        except ValueError:
            raise ControlProtocolError("no PROGRESS in tor's bootstrap status from %s" % self.addr) from None

    def socks_listeners(self) -> list:
        """TCP SOCKS listeners as (host, port), from net/listeners/socks."""
        out = []
        for item in _quoted_list(self.getinfo("net/listeners/socks")["net/listeners/socks"]):
            host, sep, port = item.rpartition(":")
            if sep and port.isdigit() and not item.startswith("unix:"):
                out.append((host.strip("[]"), int(port)))
        return out

    def add_event(self, *names: str) -> None:
        """Subscribe to more events (SETEVENTS with the union of all asked so far)."""
        for n in names:
            if not n.replace("_", "").isalnum():
                raise InvalidArgumentError("bad event name %r" % n)
        want = self._event_names | set(names)
        self.command("SETEVENTS " + " ".join(sorted(want)))
        self._event_names = want

    def _event(self, deadline):
        """The next event from the socket, None on timeout; a reply nobody asked for is a protocol error."""
        rep = self._next(deadline)
        if rep is not None and not isinstance(rep, Event):
            self._fail(ControlProtocolError("reply without a command from %s: %r" % (self.addr, rep)))
        return rep

    def drain(self) -> None:
        """Queue the events that have arrived, without waiting (raises if tor closed the connection)."""
        while True:
            ev = self._event(None)  # parses after each read, so the buffer stays bounded
            if ev is None:
                return
            self.events.append(ev)

    def next_event(self, timeout: float = 0.0):
        """The oldest queued event, reading the socket for up to timeout s; or None."""
        if self.events:
            return self.events.popleft()
        return self._event(time.monotonic() + timeout if timeout > 0 else None)

    def wait_event(self, pred, timeout: float):
        """The first event (queued or new) for which pred(event) is true,
        removed from the queue; others stay queued. None after timeout s."""
        for ev in list(self.events):
            if pred(ev):
                self.events.remove(ev)
                return ev
        deadline = time.monotonic() + timeout
        seen = []
        try:
            while True:
                ev = self._event(deadline)
                if ev is None or pred(ev):
                    return ev
                seen.append(ev)
        finally:
            self.events.extend(seen)

    # -- onion services and ownership

    def add_onion(self, key: bytearray, ports, detach: bool = False, timeout=None) -> str:
        """ADD_ONION ED25519-V3:<key> with Flags=DiscardPK: publish the
        onion service of this 64-byte expanded Ed25519 secret and return its
        ServiceID (56 chars, no ".onion"). ports: [(virtport, "127.0.0.1:P")].
        Without detach the service lives as long as this connection. The key
        is never copied into a str or bytes; every buffer made here is wiped."""
        if not isinstance(key, bytearray) or len(key) != 64:
            raise InvalidArgumentError("the onion key must be a 64-byte bytearray (tor's expanded Ed25519 secret)")
        spec = ""
        for virt, target in ports:
            target = str(target)
            if not (isinstance(virt, int) and 0 < virt < 65536) or not target.isascii() or \
                    any(c in target for c in " \r\n,"):
                raise InvalidArgumentError("bad onion port mapping %r -> %r" % (virt, target))
            spec += " Port=%d,%s" % (virt, target)
        if not spec:
            raise InvalidArgumentError("ADD_ONION needs at least one port")
        flags = " Flags=DiscardPK" + (",Detach" if detach else "")
        head, tail = b"ADD_ONION ED25519-V3:", (flags + spec + "\r\n").encode("ascii")
        # One allocation of the final size: growing a bytearray could leave
        # partial copies of the key in freed memory.
        line = bytearray(len(head) + 88 + len(tail))
        try:
            line[:len(head)] = head
            end = _b64_into(key, line, len(head))
            line[end:] = tail
            self._send(line, "ADD_ONION")
        finally:
            wipe(line)
        rep = self._reply("ADD_ONION", timeout)
        if not rep.ok:
            raise ControlReplyError("tor at %s refused ADD_ONION: %d %s" % (self.addr, rep.code, rep.message[:120]),
                                    rep.code)
        for text, _ in rep.lines:
            if text.startswith("ServiceID="):
                sid = text[10:]
                parse_onion_address(sid)
                return sid
        raise ControlProtocolError("ADD_ONION reply from %s has no ServiceID" % self.addr)

    def del_onion(self, service_id: str) -> None:
        sid = service_id[:-6] if service_id.endswith(".onion") else service_id
        parse_onion_address(sid)
        self.command("DEL_ONION " + sid)

    def take_ownership(self) -> None:
        """Tor exits when this connection closes (and no longer watches the
        pid in __OwningControllerProcess, which could be reused)."""
        self.command("TAKEOWNERSHIP")
        self.command("RESETCONF __OwningControllerProcess")


# ---- our own tor --------------------------------------------------------

def find_tor(tor: str = "tor") -> str:
    path = tor if os.sep in tor else shutil.which(tor)
    if not path or not os.access(path, os.X_OK):
        raise TorNotInstalledError("tor is not installed (no %r in PATH): apt-get install tor" % tor)
    return path


class TorProcess:
    """The daemon's own tor, or an attached one.

    TorProcess(data_dir, extra_config).start() writes <data_dir>/torrc and an
    empty defaults file (the system's /etc/tor/torrc is never read or
    changed), runs ``tor --defaults-torrc <empty> -f <torrc>`` with
    ControlPort auto (written to <data_dir>/control.port), cookie auth and
    SocksPort 127.0.0.1:auto, authenticates and takes ownership: tor exits
    when our control connection closes, i.e. when this process exits.
    Tor's own log goes to <data_dir>/tor.log.

    poll() (call it every second or so) restarts an exited tor with
    exponential backoff (restart_delay doubling up to max_restart_delay)
    and bumps ``generation`` on each (re)start, so users know to publish
    their onion services again. TorProcess.attach(control_addr) uses a
    running tor's control port instead and configures nothing.
    Every wait is bounded. Not thread-safe: use it from one thread.
    """

    STABLE_AFTER = 60.0  # a tor that ran this long resets the restart backoff
    MAX_FAILED_STARTS = 6  # in a row, then poll() raises

    def __init__(self, data_dir: str, extra_config=(), tor: str = "tor", start_timeout: float = 30.0,
                 restart_delay: float = 1.0, max_restart_delay: float = 60.0):
        self.data_dir = os.path.abspath(data_dir) if data_dir is not None else None
        for line in extra_config:
            if not isinstance(line, str) or "\n" in line or "\r" in line:
                raise InvalidArgumentError("extra torrc lines must be single-line strings, got %r" % (line,))
        self.extra_config = list(extra_config)
        self.tor = tor
        self.start_timeout = start_timeout
        self.restart_delay, self.max_restart_delay = restart_delay, max_restart_delay
        self.control = None
        self.proc = None
        self.generation = 0
        self.last_error = None
        self._attach_addr = None
        self._stopped = True
        self._started_at = 0.0
        self._delay = restart_delay
        self._next_try = None
        self._failed_starts = 0
        self._socks = None

    @classmethod
    def attach(cls, control_addr: str, timeout: float = 10.0) -> "TorProcess":
        """Use a running tor's control port; start() connects, poll() reconnects."""
        _parse_addr(control_addr)
        self = cls(None, start_timeout=timeout)
        self._attach_addr = control_addr
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def _path(self, name):
        return os.path.join(self.data_dir, name)

    def _torrc(self) -> str:
        d = self.data_dir
        lines = [
            "# Written by loramesh at every start; edits here are lost.",
            "DataDirectory " + d,
            "ControlPort auto",
            "ControlPortWriteToFile " + self._path("control.port"),
            "CookieAuthentication 1",
            "SocksPort 127.0.0.1:auto ExtendedErrors",
            "RunAsDaemon 0",
            "AvoidDiskWrites 1",  # field devices boot from SD cards
            # Until TAKEOWNERSHIP: tor polls this pid and exits when it is gone.
            "__OwningControllerProcess %d" % os.getpid(),
        ]
        return "\n".join(lines + self.extra_config) + "\n"

    def start(self) -> None:
        """Start tor (or connect to the attached one); bounded by start_timeout."""
        self._kill()
        self._stopped = False
        if self._attach_addr:
            self._connect(self._attach_addr, time.monotonic() + self.start_timeout)
            self._started()
            return
        if self.data_dir is None:
            raise InvalidArgumentError("TorProcess needs a data directory (or use TorProcess.attach)")
        exe = find_tor(self.tor)
        empty, port_file, logfile = self._path("torrc-defaults"), self._path("control.port"), self._path("tor.log")
        try:
            os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
            os.chmod(self.data_dir, 0o700)  # it will hold tor's keys and the cookie: ours alone
            with open(empty, "w"):
                pass
            with open(self._path("torrc"), "w") as f:
                f.write(self._torrc())
            if os.path.exists(port_file):
                os.unlink(port_file)  # so we never read the previous run's port
            if os.path.exists(logfile):
                os.replace(logfile, logfile + ".1")
            out = open(logfile, "wb")
        except OSError as e:
            raise TorStartError("cannot prepare tor's data directory %s: %s: choose a directory this user can "
                                "write" % (self.data_dir, e.strerror or e)) from None
        with out:
            self.proc = subprocess.Popen([exe, "--defaults-torrc", empty, "-f", self._path("torrc")],
                                         cwd=self.data_dir, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        try:
            addr = self._wait_port_file(port_file, deadline)
            self._connect(addr, deadline)
            self.control.take_ownership()
        except BaseException:
            self._kill()
            raise
        self._started()

    def _started(self):
        self._started_at = time.monotonic()
        self._socks = None
        self.generation += 1

    def _log_tail(self) -> str:
        """The last error or warning tor logged, to put in our messages."""
        try:
            with open(self._path("tor.log"), errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return ""
        bad = [l for l in lines if ("[err]" in l or "[warn]" in l) and "see warnings above" not in l] or lines
        return bad[-1].strip().split("] ", 1)[-1][:300] if bad else ""  # without the time stamp

    def _wait_port_file(self, path, deadline) -> str:
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise TorStartError("tor exited at start (code %d): %s; see %s"
                                    % (rc, self._log_tail() or "no output", self._path("tor.log")))
            try:
                with open(path) as f:
                    text = f.read()
                if text.endswith("\n"):  # tor writes it in one go; a newline means complete
                    for line in text.splitlines():
                        if line.startswith("PORT="):
                            return line[5:]
                        if line.startswith("UNIX_PORT="):
                            return line[10:]
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                raise TorStartError("tor did not open its control port within %g s: %s; see %s"
                                    % (self.start_timeout, self._log_tail() or "no output", self._path("tor.log")))
            time.sleep(0.05)

    def _connect(self, addr, deadline):
        if self.control is not None:
            self.control.close()
        ctl = TorControl(addr, timeout=max(1.0, min(10.0, deadline - time.monotonic())))
        try:
            ctl.authenticate()
        except BaseException:
            ctl.close()
            raise
        self.control = ctl

    def alive(self) -> bool:
        """Tor runs and our control connection is open (an EOF is noticed here)."""
        if self.control is None or self.control.closed:
            return False
        if self.proc is not None and self.proc.poll() is not None:
            return False
        try:
            self.control.drain()
        except ControlError:
            return False
        return not self.control.closed

    def poll(self) -> bool:
        """Restart tor (reconnect, if attached) when it is gone, no more
        often than the backoff allows. True when it was (re)started now.
        Raises TorStartError after MAX_FAILED_STARTS failed starts in a row."""
        if self._stopped or self.alive():
            if not self._stopped and time.monotonic() - self._started_at > self.STABLE_AFTER:
                self._delay = self.restart_delay
            return False
        now = time.monotonic()
        if self._next_try is None:
            what = "control connection to %s lost" % self._attach_addr if self._attach_addr else \
                "tor exited (code %s; see %s)" % (self.proc.poll() if self.proc else "?", self._path("tor.log"))
            log.warning("%s; starting it again in %.1f s", what, self._delay)
            self._next_try = now + self._delay
            self._delay = min(self._delay * 2, self.max_restart_delay)
        if now < self._next_try:
            return False
        self._next_try = None
        self._kill()
        try:
            self.start()
        except TorError as e:
            self.last_error = e
            self._failed_starts += 1
            if self._failed_starts >= self.MAX_FAILED_STARTS:
                self._stopped = True
                raise TorStartError("tor failed to start %d times in a row, giving up: %s"
                                    % (self._failed_starts, e)) from None
            return False
        self._failed_starts = 0
        return True

    def _ctl(self) -> TorControl:
        if self.control is None or self.control.closed:
            raise TorError("tor is not running: start() it first (or it is restarting after it exited)")
        return self.control

    def bootstrap_progress(self) -> int:
        """0-100, from GETINFO status/bootstrap-phase."""
        return self._ctl().bootstrap_status()[0]

    def wait_bootstrap(self, timeout: float = 120.0, stall: float = 60.0) -> float:
        """Wait until tor has bootstrapped 100%; returns the seconds waited.
        Raises BootstrapError if it takes longer than timeout, or if progress
        stays the same for stall seconds."""
        t0 = time.monotonic()
        last, since = -1, t0
        while True:
            progress, tag, summary = self._ctl().bootstrap_status()
            now = time.monotonic()
            if progress >= 100:
                return now - t0
            if progress != last:
                last, since = progress, now
            where = " (see %s)" % self._path("tor.log") if self.data_dir else ""
            if now - since >= stall:
                raise BootstrapError("tor bootstrap stuck at %d%% for %d s (%s: %s): can tor reach its "
                                     "directory servers? check the network and the clock%s"
                                     % (progress, stall, tag, summary, where))
            if now - t0 >= timeout:
                raise BootstrapError("tor bootstrap at %d%% after %d s (%s: %s)%s"
                                     % (progress, timeout, tag, summary, where))
            time.sleep(0.25)

    def socks_address(self) -> tuple:
        """(host, port) of tor's SOCKS port (asked once per tor generation)."""
        if self._socks is None:
            listeners = self._ctl().socks_listeners()
            if not listeners:
                raise TorError("tor at %s has no TCP SocksPort (DisableNetwork, or SocksPort 0?)" % self.control.addr)
            self._socks = listeners[0]
        return self._socks

    def _kill(self, grace: float = 5.0):
        if self.control is not None:
            self.control.close()  # with TAKEOWNERSHIP, this alone makes tor exit
            self.control = None
        p, self.proc = self.proc, None
        if p is None:
            return
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(grace)

    def stop(self, grace: float = 5.0) -> None:
        """Stop our tor (detach from an attached one); bounded by about 3 * grace seconds."""
        self._stopped = True
        self._kill(grace)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


# ---- the onion link -----------------------------------------------------

class InboundAddr:
    """The address an OnionLink gives packets that came in on an accepted
    connection: an opaque token for that connection (an onion service does
    not learn who called it). send(packet, token) replies on it."""

    __slots__ = ("id",)

    def __init__(self, conn_id: int):
        self.id = conn_id

    def __eq__(self, other):
        return isinstance(other, InboundAddr) and other.id == self.id

    def __hash__(self):
        return hash(("inbound", self.id))

    def __repr__(self):
        return "inbound#%d" % self.id


LinkEvent = collections.namedtuple("LinkEvent", "kind addr reason dropped")
LinkEvent.__doc__ = """Something that happened on an OnionLink, from events():
kind "connected" (outbound stream open), "unreachable" (an outbound connect
failed: reason says why; ``dropped`` packets queued for it were discarded),
"closed" (a connection ended; ``dropped`` packets were not fully written),
"idle" (closed after idle_timeout without traffic: nothing failed),
"published" (our onion service was (re)added to tor)."""

_CONNECTING, _SOCKS_METHOD, _SOCKS_REPLY, _OPEN = range(4)


class _Conn:
    __slots__ = ("sock", "addr", "out", "state", "rbuf", "frames", "sent", "pending", "deadline", "last")

    def __init__(self, sock, addr, outbound, deadline):
        self.sock = sock
        self.addr = addr  # the onion (outbound) or an InboundAddr
        self.out = outbound
        self.state = _CONNECTING if outbound else _OPEN
        self.rbuf = bytearray()
        self.frames = collections.deque()  # queued frames (header + packet)
        self.sent = 0  # bytes of frames[0] already written
        self.pending = 0  # bytes queued in frames
        self.deadline = deadline
        self.last = time.monotonic()


class OnionLink:
    """Packets over onion-service streams, with the shape of UdpTransport:
    send(packet, addr), recv(timeout) -> (packet, addr) | None, fileno(),
    close(). Each packet travels as a 2-byte big-endian length and the
    bytes (1..max_frame bytes; a zero or oversize frame closes that
    connection).

    With a key (the caller's 64-byte bytearray; the link keeps a reference,
    not a copy, to publish again after tor restarts: the caller wipes it
    after close()), it listens on an ephemeral 127.0.0.1 port and publishes
    the onion service ``address`` (ADD_ONION Port=port,127.0.0.1:LOCAL).
    Inbound packets come with an InboundAddr token, never an onion: the
    caller is anonymous. send(packet, "x.onion") uses or opens the one
    outbound connection to that onion through tor's SOCKS5 port; replies on
    it come back from "x.onion". Everything is non-blocking: send() only
    queues and writes what the socket takes; connecting happens in recv().

    fileno() is an epoll descriptor: readable when any of the link's
    sockets is ready. When it is, call recv(0) until it returns None. Call
    recv() at least every second or so anyway: timers (connect timeouts,
    idle connections, tor restarts) advance there.

    Bounds: max_conns inbound plus max_conns outbound connections (new
    inbound ones beyond that are closed at once); max_pending bytes queued
    per connection (send raises LinkBusyError beyond); max_rx received
    packets waiting for recv() (reading pauses when full); an outbound
    connect (SOCKS included) gets connect_timeout seconds; a failed onion is
    retried no sooner than its backoff (retry_delay doubling up to
    max_retry_delay; send raises OnionUnreachableError meanwhile); a
    connection idle for idle_timeout seconds is closed. Failures after
    send() returned are reported by events().

    Peers that vanish: when a peer's tor dies (crash, power cut), our tor
    often keeps the stream open and packets sent on it are lost, so the
    caller must watch its acknowledgements and call disconnect(addr) when
    they stop (the framing has no keepalive to notice it here). A connect
    that times out or fails at introduction or rendezvous, and disconnect(),
    make tor close its circuits to that onion and fetch its descriptor
    again, since both can point at a host that is gone.
    """

    DEFAULT_PORT = 7464  # virtual onion port both sides use

    def __init__(self, tor, key: bytearray = None, port: int = DEFAULT_PORT, max_frame: int = 4096,
                 max_conns: int = 32, max_pending: int = 65536, max_rx: int = 1024,
                 connect_timeout: float = 60.0, retry_delay: float = 1.0, max_retry_delay: float = 60.0,
                 idle_timeout: float = 600.0):
        if not 1 <= max_frame <= 65535:
            raise InvalidArgumentError("max_frame must be 1..65535 (2-byte length), got %r" % max_frame)
        if key is not None and (not isinstance(key, bytearray) or len(key) != 64):
            raise InvalidArgumentError("the onion key must be a 64-byte bytearray (tor's expanded Ed25519 secret)")
        self.tor = tor
        self.port = port
        self.max_frame, self.max_conns, self.max_pending, self.max_rx = max_frame, max_conns, max_pending, max_rx
        self.connect_timeout, self.idle_timeout = connect_timeout, idle_timeout
        self.retry_delay, self.max_retry_delay = retry_delay, max_retry_delay
        self.address = None
        self._key = key
        self._gen = None
        self._ep = select.epoll()
        self._conns = {}  # fd -> _Conn
        self._out = {}  # onion -> _Conn
        self._in = {}  # InboundAddr -> _Conn
        self._next_id = 1
        self._rx = collections.deque()
        self._events = collections.deque(maxlen=1024)
        self._backoff = {}  # onion -> (not before, next delay, reason)
        self._next_publish = 0.0
        self._next_timers = 0.0
        self._listener = None
        if key is not None:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.bind(("127.0.0.1", 0))
            self._listener.listen(64)
            self._listener.setblocking(False)
            self._ep.register(self._listener.fileno(), select.EPOLLIN)
        try:
            self._maintain(force=True)
        except BaseException:
            self.close()
            raise

    @property
    def local_port(self):
        """The 127.0.0.1 port tor forwards our onion service to (None without a key)."""
        return self._listener.getsockname()[1] if self._listener else None

    def fileno(self) -> int:
        return self._ep.fileno()

    def events(self) -> list:
        """LinkEvents since the last call (at most 1024 kept)."""
        out = list(self._events)
        self._events.clear()
        return out

    # -- tor generations

    def _maintain(self, force=False):
        """Follow tor restarts: publish the service again and forget the old SOCKS port."""
        self.tor.poll()
        if self.tor.generation == self._gen and not force:
            return
        if self._key is None:
            self._gen = self.tor.generation
            return
        now = time.monotonic()
        if now < self._next_publish and not force:
            return
        try:
            ctl = self.tor._ctl()
            ctl.add_event("HS_DESC")
            sid = ctl.add_onion(self._key, [(self.port, "127.0.0.1:%d" % self.local_port)])
        except TorError as e:
            if force:
                raise
            self._next_publish = now + self.retry_delay  # tor may still be settling; keep trying
            log.warning("cannot publish the onion service again: %s", e)
            return
        self._gen = self.tor.generation
        if self.address and self.address != sid + ".onion":
            raise TorError("tor gave a different onion address for the same key (%s)" % sid)
        self.address = sid + ".onion"
        self._events.append(LinkEvent("published", self.address, "", 0))

    def wait_published(self, timeout: float = 60.0) -> float:
        """Wait for tor's HS_DESC UPLOADED for our service (the descriptor
        reached one HSDir); returns the seconds waited."""
        t0 = time.monotonic()
        sid = self.address[:-6]
        ev = self.tor._ctl().wait_event(
            lambda e: e.type == "HS_DESC" and len(e.words) > 2 and e.words[1] == "UPLOADED" and e.words[2] == sid,
            timeout)
        if ev is None:
            raise TorError("the onion service %s was not published within %g s: has tor bootstrapped?"
                           % (self.address, timeout))
        return time.monotonic() - t0

    # -- sending

    def send(self, packet, addr) -> None:
        """Queue one packet for an onion ("x.onion") or an InboundAddr.
        Never blocks. Raises InvalidArgumentError (bad packet or address),
        NotConnectedError (that inbound connection is gone),
        OnionUnreachableError (the onion failed recently: retry later),
        LinkBusyError (buffer or connection limit reached)."""
        if not isinstance(packet, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError("a packet is bytes, got %s" % type(packet).__name__)
        n = len(packet)
        if not 1 <= n <= self.max_frame:
            raise InvalidArgumentError("packet of %d bytes: the onion link carries 1..%d" % (n, self.max_frame))
        if isinstance(addr, InboundAddr):
            conn = self._in.get(addr)
            if conn is None:
                raise NotConnectedError("%r is closed: the reply cannot be delivered on it" % addr)
        else:
            parse_onion_address(addr)
            addr = addr if addr.endswith(".onion") else addr + ".onion"
            conn = self._out.get(addr) or self._connect(addr)
        if conn.pending + 2 + n > self.max_pending:
            raise LinkBusyError("send buffer for %s full (%d bytes queued): retry later" % (addr, conn.pending))
        conn.frames.append(struct.pack(">H", n) + bytes(packet))
        conn.pending += 2 + n
        if conn.state == _OPEN:
            self._flush(conn)

    def _connect(self, onion) -> _Conn:
        now = time.monotonic()
        b = self._backoff.get(onion)
        if b and now < b[0]:
            raise OnionUnreachableError("%s is unreachable (%s); next try in %.1f s" % (onion, b[2], b[0] - now))
        if len(self._out) >= self.max_conns:
            raise LinkBusyError("%d outbound onion connections open (the limit): retry later" % len(self._out))
        try:
            socks = self.tor.socks_address()
        except TorError as e:
            raise OnionUnreachableError("cannot reach %s: tor is not ready (%s)" % (onion, e)) from None
        s = socket.socket(socket.AF_INET6 if ":" in socks[0] else socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex(socks)
        if err not in (0, errno.EINPROGRESS):
            s.close()
            raise OnionUnreachableError("cannot reach %s: tor's SOCKS port %s:%d: %s"
                                        % (onion, socks[0], socks[1], os.strerror(err)))
        conn = _Conn(s, onion, True, now + self.connect_timeout)
        log.debug("connecting to %s through tor's SOCKS port %s:%d (fd %d)", onion, socks[0], socks[1], s.fileno())
        self._conns[s.fileno()] = conn
        self._out[onion] = conn
        self._ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLIN)
        return conn

    def _flush(self, conn):
        while conn.frames:
            bufs = [memoryview(conn.frames[0])[conn.sent:]] + list(itertools.islice(conn.frames, 1, 64))
            try:
                n = conn.sock.sendmsg(bufs)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                return self._close(conn, "write failed: %s" % (e.strerror or e))
            conn.pending -= n
            conn.last = time.monotonic()
            n += conn.sent
            while conn.frames and n >= len(conn.frames[0]):
                n -= len(conn.frames.popleft())
            conn.sent = n
        self._want(conn)
        return True

    def _want(self, conn):
        """epoll interest: read unless the receive queue is full; write while there is something to write."""
        ev = 0 if len(self._rx) >= self.max_rx else select.EPOLLIN
        if conn.state == _CONNECTING or (conn.state == _OPEN and conn.frames):
            ev |= select.EPOLLOUT
        try:
            self._ep.modify(conn.sock.fileno(), ev)
        except (OSError, ValueError):
            pass  # closed meanwhile

    # -- receiving

    def recv(self, timeout: float):
        """(packet, addr) or None after timeout seconds. addr is the onion
        for packets on our outbound connections, an InboundAddr otherwise.
        Also runs the timers, including TorProcess.poll(): a tor restart
        happens inside this call (bounded by its start_timeout), and a tor
        that keeps failing to start raises TorStartError here."""
        deadline = time.monotonic() + max(timeout or 0.0, 0.0)
        while True:
            self._timers()
            if self._rx:
                return self._pop()
            left = deadline - time.monotonic()
            for fd, ev in self._ep.poll(max(0.0, min(left, 0.5))):
                self._on_event(fd, ev)
            if self._rx:
                return self._pop()
            if left <= 0:
                return None

    def _pop(self):
        item = self._rx.popleft()
        if len(self._rx) == self.max_rx - 1:  # room again: parse what waits, resume reading
            for c in list(self._conns.values()):
                if c.state == _OPEN and self._frames(c) is False:
                    continue
                self._want(c)
        return item

    def _on_event(self, fd, ev):
        if self._listener is not None and fd == self._listener.fileno():
            return self._accept()
        conn = self._conns.get(fd)
        if conn is None:
            return
        if conn.state == _CONNECTING:
            if ev & (select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP):
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    return self._fail(conn, "cannot reach tor's SOCKS port: %s" % os.strerror(err))
                try:
                    conn.sock.send(b"\x05\x01\x00")  # SOCKS5, one method: no authentication
                except OSError as e:
                    return self._fail(conn, "tor's SOCKS port: %s" % (e.strerror or e))
                conn.state = _SOCKS_METHOD
                self._want(conn)
            return
        if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and self._read(conn) is False:
            return
        if ev & select.EPOLLOUT and conn.state == _OPEN:
            self._flush(conn)

    def _accept(self):
        while True:
            try:
                s, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. EMFILE: leave the rest in the backlog
                log.warning("onion link accept failed: %s", e)
                return
            if len(self._in) >= self.max_conns:
                s.close()  # the bound on inbound connections: the caller may retry later
                continue
            s.setblocking(False)
            addr = InboundAddr(self._next_id)
            self._next_id += 1
            conn = _Conn(s, addr, False, None)
            self._conns[s.fileno()] = conn
            self._in[addr] = conn
            self._ep.register(s.fileno(), select.EPOLLIN)
            self._want(conn)

    def _read(self, conn):
        if len(self._rx) >= self.max_rx or len(conn.rbuf) > self.max_frame + 2:
            return True
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as e:
            return self._lost(conn, "read failed: %s" % (e.strerror or e))
        if not data:
            return self._lost(conn, "closed by the other side")
        conn.last = time.monotonic()
        conn.rbuf += data
        if conn.state == _SOCKS_METHOD:
            if len(conn.rbuf) < 2:
                return True
            if conn.rbuf[:2] != b"\x05\x00":
                return self._fail(conn, "tor's SOCKS port wants authentication we do not do (%s)" % conn.rbuf[:2].hex())
            del conn.rbuf[:2]
            host = conn.addr.encode("ascii")
            try:  # CONNECT, ATYP 3: tor resolves the onion itself
                conn.sock.send(b"\x05\x01\x00\x03" + bytes([len(host)]) + host + struct.pack(">H", self.port))
            except OSError as e:
                return self._fail(conn, "tor's SOCKS port: %s" % (e.strerror or e))
            conn.state = _SOCKS_REPLY
        if conn.state == _SOCKS_REPLY:
            if len(conn.rbuf) < 2:
                return True
            if conn.rbuf[0] != 5:
                return self._fail(conn, "not a SOCKS5 reply from tor's SOCKS port")
            if conn.rbuf[1] != 0:
                code = conn.rbuf[1]
                name = SOCKS_REPLIES.get(code, "unknown reply")
                return self._fail(conn, "SOCKS5 reply 0x%02X (%s)" % (code, name), new_route=code in (0xF2, 0xF3, 0xF7))
            if len(conn.rbuf) < 5:
                return True
            atyp = conn.rbuf[3]
            size = {1: 10, 4: 22, 3: 7 + conn.rbuf[4]}.get(atyp)
            if size is None:
                return self._fail(conn, "bad SOCKS5 reply address type %d" % atyp)
            if len(conn.rbuf) < size:
                return True
            del conn.rbuf[:size]
            conn.state, conn.deadline = _OPEN, None
            self._backoff.pop(conn.addr, None)
            self._events.append(LinkEvent("connected", conn.addr, "", 0))
            log.debug("connected to %s (fd %d)", conn.addr, conn.sock.fileno())
            if self._flush(conn) is False:
                return False
        if conn.state == _OPEN:
            return self._frames(conn)
        return True

    def _frames(self, conn):
        buf = conn.rbuf
        while len(buf) >= 2 and len(self._rx) < self.max_rx:
            n = (buf[0] << 8) | buf[1]
            if not 1 <= n <= self.max_frame:
                return self._lost(conn, "bad frame length %d (allowed 1..%d)" % (n, self.max_frame))
            if len(buf) < 2 + n:
                break
            self._rx.append((bytes(buf[2:2 + n]), conn.addr))
            del buf[:2 + n]
        if len(self._rx) >= self.max_rx:
            for c in self._conns.values():
                self._want(c)
        return True

    # -- endings

    def _fail(self, conn, reason, new_route=False):
        """An outbound connect failed: back off from that onion, drop what
        was queued for it; new_route when tor's route to it may be stale."""
        now = time.monotonic()
        prev = self._backoff.get(conn.addr)
        delay = prev[1] if prev else self.retry_delay
        self._backoff[conn.addr] = (now + delay, min(delay * 2, self.max_retry_delay), reason)
        log.debug("%s unreachable (fd %d): %s", conn.addr, conn.sock.fileno(), reason)
        self._drop(conn)
        self._events.append(LinkEvent("unreachable", conn.addr, reason, len(conn.frames)))
        if new_route:
            self._new_route(conn.addr)
        return False

    def _new_route(self, onion):
        """Make tor build a fresh route to onion next time. Tor attaches new
        streams to an existing rendezvous circuit, even one that leads to a
        host that lost power (its relays notice only minutes later), and
        intro points can still accept introductions for a service that was
        restarted, stalling every connect until a timeout. So: close tor's
        circuits for that onion, and fetch its descriptor again (a restarted
        service has published new intro points)."""
        sid = onion[:-6]
        try:
            ctl = self.tor._ctl()
            for line in ctl.getinfo("circuit-status")["circuit-status"].splitlines():
                words = line.split(" ")
                if "REND_QUERY=" + sid in words and words[0].isdigit():
                    ctl.request("CLOSECIRCUIT " + words[0])  # 552 if it closed meanwhile: fine
            ctl.command("HSFETCH " + sid)
        except TorError as e:
            log.debug("cannot reset tor's route to %s: %s", onion, e)

    def _lost(self, conn, reason):
        if conn.state != _OPEN:
            return self._fail(conn, reason)
        return self._close(conn, reason)

    def _close(self, conn, reason, kind="closed"):
        log.debug("connection %s closed (fd %d): %s", conn.addr, conn.sock.fileno(), reason)
        self._drop(conn)
        self._events.append(LinkEvent(kind, conn.addr, reason, len(conn.frames)))
        return False

    def _drop(self, conn):
        fd = conn.sock.fileno()
        self._conns.pop(fd, None)
        if conn.out:
            if self._out.get(conn.addr) is conn:
                del self._out[conn.addr]
        else:
            self._in.pop(conn.addr, None)
        try:
            self._ep.unregister(fd)
        except (OSError, ValueError):
            pass
        conn.sock.close()

    def _timers(self):
        now = time.monotonic()
        if now < self._next_timers:  # recv(0) may run in a tight loop: no need to check more often
            return
        self._next_timers = now + 0.1
        self._maintain()
        for conn in list(self._conns.values()):
            if conn.deadline is not None and now > conn.deadline:
                self._fail(conn, "no connection through tor within %g s" % self.connect_timeout, new_route=True)
            elif conn.state == _OPEN and not conn.frames and now - conn.last > self.idle_timeout:
                self._close(conn, "idle for %g s" % self.idle_timeout, kind="idle")
        for onion in [o for o, b in self._backoff.items() if b[0] + self.max_retry_delay < now]:
            del self._backoff[onion]  # long past: forget it, so the table stays small

    def disconnect(self, addr) -> int:
        """Close the connection to addr (an onion or an InboundAddr), if
        any, and return how many packets queued on it were dropped. For a
        peer that stopped acknowledging: the next send() to an onion opens
        a fresh connection over a fresh tor route."""
        if isinstance(addr, InboundAddr):
            conn = self._in.get(addr)
        else:
            conn = self._out.get(addr if str(addr).endswith(".onion") else "%s.onion" % addr)
        if conn is None:
            return 0
        self._drop(conn)
        if conn.out:
            self._new_route(conn.addr)
        return len(conn.frames)

    def close(self) -> None:
        """Close every connection and withdraw the onion service (tor keeps running)."""
        for conn in list(self._conns.values()):
            self._drop(conn)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self.address and self.tor.control is not None and not self.tor.control.closed:
            try:
                self.tor.control.del_onion(self.address)
            except TorError:
                pass  # tor forgets it with the control connection anyway
        self.address = None
        self._key = None
        self._ep.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
