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
    "ControlTimeoutError", "OnionLinkError", "SocksError", "OnionUnreachableError", "LinkBusyError",
    "NotConnectedError", "TorControl", "Reply", "Event", "wipe", "generate_onion_key",
    "onion_address_from_public_key", "parse_onion_address", "SOCKS_REPLIES",
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


class SocksError(OnionLinkError):
    """Tor's SOCKS port refused a connection; ``reply`` is the SOCKS5 code."""

    def __init__(self, reply, target):
        self.reply = reply
        self.reply_name = SOCKS_REPLIES.get(reply, "unknown reply")
        super().__init__("tor could not connect to %s: SOCKS5 reply 0x%02X (%s)" % (target, reply, self.reply_name))


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
    """Zero a bytearray in place with memset (a C call the interpreter cannot skip)."""
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
    """The public key of a v3 onion address ("x.onion", or tor's ServiceID
    without the suffix), after checking version and checksum."""
    if not isinstance(addr, str):
        raise InvalidArgumentError("an onion address is a str like 'xxxx.onion', got %s" % type(addr).__name__)
    sid = addr[:-6] if addr.endswith(".onion") else addr
    if len(sid) != 56:
        raise InvalidArgumentError("%r is not a v3 onion address (56 base32 characters + .onion)" % addr[:80])
    try:
        raw = base64.b32decode(sid.upper())
    except (ValueError, TypeError):
        raise InvalidArgumentError("%r is not a v3 onion address: not base32" % addr[:80]) from None
    pub = raw[:32]
    if raw[34] != 3:
        raise InvalidArgumentError("%r is not a v3 onion address: version %d" % (addr, raw[34]))
    if onion_address_from_public_key(pub) != sid.lower() + ".onion":
        raise InvalidArgumentError("%r has a wrong checksum: mistyped?" % addr)
    return pub


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

    def drain(self) -> None:
        """Queue the events that have arrived, without waiting (raises if tor closed the connection)."""
        while True:
            rep = self._next(None)  # parses after each read, so the buffer stays bounded
            if rep is None:
                return
            if not isinstance(rep, Event):
                self._fail(ControlProtocolError("reply without a command from %s: %r" % (self.addr, rep)))
            self.events.append(rep)

    def next_event(self, timeout: float = 0.0):
        """The oldest queued event, reading the socket for up to timeout s; or None."""
        if self.events:
            return self.events.popleft()
        deadline = time.monotonic() + timeout if timeout > 0 else None
        while True:
            rep = self._next(deadline)
            if rep is None:
                return None
            if isinstance(rep, Event):
                return rep
            self._fail(ControlProtocolError("reply without a command from %s: %r" % (self.addr, rep)))

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
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                rep = self._next(deadline)
                if rep is None:
                    return None
                if not isinstance(rep, Event):
                    self._fail(ControlProtocolError("reply without a command from %s: %r" % (self.addr, rep)))
                if pred(rep):
                    return rep
                seen.append(rep)
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
