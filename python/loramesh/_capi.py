"""Layer 2: one thin function per C function.

Each checks lengths, converts Python buffers, applies the header's output
buffer rule (retry with the reported size on LM_ERR_BUFFER_TOO_SMALL, which
changes no state) and turns an LM_ERR_* code into the matching exception with
the message from lm_last_error. Handles are plain ints here.
"""
from __future__ import annotations

import ctypes
from ctypes import byref, c_int, c_size_t, c_uint32, c_uint64

from . import _lib
from ._lib import ERR_BUFFER_TOO_SMALL, lib, u8p
from .errors import BY_CODE, InvalidArgumentError, LoraMeshError


# ---- errors -----------------------------------------------------------

def strerror(code: int) -> str:
    return lib().lm_strerror(code).decode("utf-8", "replace")


def last_error() -> str:
    n = c_size_t(256)
    buf = ctypes.create_string_buffer(256)
    if lib().lm_last_error(buf, byref(n)) != 0:
        return ""
    return buf.value.decode("utf-8", "replace")


def error_for(code: int, fn: str) -> LoraMeshError:
    # lm_last_error must be read right after the failing call, on the same
    # thread: ctypes runs each call on the calling OS thread.
    msg = last_error()
    name = strerror(code)
    cls = BY_CODE.get(code, LoraMeshError)
    return cls(msg or "%s: %s" % (fn, name), code, name)


def check(code: int, fn: str) -> None:
    if code != 0:
        raise error_for(code, fn)


# ---- buffers ----------------------------------------------------------

def _in(data):
    """(ctypes array or None, length) for an input buffer. bytearrays are
    used in place (no copy), so wiping them afterwards wipes what C saw."""
    if data is None:
        return None, 0
    if isinstance(data, str):
        raise TypeError("expected bytes-like, got str")
    if isinstance(data, bytearray):
        n = len(data)
        return ((ctypes.c_uint8 * n).from_buffer(data) if n else None), n
    mv = memoryview(data).cast("B")
    n = mv.nbytes
    return ((ctypes.c_uint8 * n).from_buffer_copy(mv) if n else None), n


def _ptr(arr):
    return ctypes.cast(arr, u8p) if arr is not None else None


def wipe_buffer(arr) -> None:
    if arr is not None:
        lib().lm_secure_wipe(arr, ctypes.sizeof(arr))


def secure_wipe(buf: bytearray) -> None:
    """Zeroes a bytearray with lm_secure_wipe (the compiler cannot drop it)."""
    if not isinstance(buf, bytearray):
        raise TypeError("secure_wipe needs a bytearray (bytes cannot be wiped)")
    if buf:
        arr = (ctypes.c_uint8 * len(buf)).from_buffer(buf)
        lib().lm_secure_wipe(arr, len(buf))
        del arr


class Secret:
    """A secret input as a ctypes buffer. Wipes the caller's bytearray (and
    any copy made here) on exit."""

    def __init__(self, value):
        if isinstance(value, str):
            value = value.encode("utf-8")
        self.source = value
        self.arr, self.n = _in(value)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        wipe_buffer(self.arr)
        self.arr = None
        if isinstance(self.source, bytearray):
            secure_wipe(self.source)


def _out(name: str, call, sizes):
    """Calls call(bufs, lens) with output buffers of the given sizes,
    growing them on LM_ERR_BUFFER_TOO_SMALL. Returns the ctypes arrays and
    the written lengths."""
    for _ in range(4):
        bufs = [(ctypes.c_uint8 * max(s, 1))() for s in sizes]
        lens = [c_size_t(s) for s in sizes]
        rc = call([ctypes.cast(b, u8p) for b in bufs], [byref(n) for n in lens])
        if rc == ERR_BUFFER_TOO_SMALL:
            sizes = [max(n.value, s) for n, s in zip(lens, sizes)]
            continue
        check(rc, name)
        return bufs, [n.value for n in lens]
    raise LoraMeshError("%s: output size keeps growing" % name)


def _bytes_out(name, call, sizes, wipe=False):
    bufs, lens = _out(name, call, sizes)
    out = [bytes(b[:n]) for b, n in zip(bufs, lens)]
    if wipe:
        for b in bufs:
            wipe_buffer(b)
    return out


def _str_out(name, call, size=64):
    for _ in range(4):
        buf = ctypes.create_string_buffer(max(size, 1))
        n = c_size_t(size)
        rc = call(buf, byref(n))
        if rc == ERR_BUFFER_TOO_SMALL:
            size = n.value
            continue
        check(rc, name)
        return buf.raw[: max(n.value - 1, 0)].decode("utf-8")
    raise LoraMeshError("%s: output size keeps growing" % name)


def _name(s: str) -> bytes:
    if not isinstance(s, str) or "\0" in s:
        raise InvalidArgumentError("name must be a string without NUL")
    return s.encode("utf-8")


# ---- library ----------------------------------------------------------

def version() -> str:
    return lib().lm_version().decode()


def abi_version() -> int:
    return lib().lm_abi_version()


def features():
    """(LM_FEATURE_* bits, the library's description of them)."""
    f = c_uint32()
    check(lib().lm_features(byref(f)), "lm_features")
    return f.value, lib().lm_features_string().decode("utf-8", "replace")


def locked_memory():
    a, b = c_size_t(), c_size_t()
    check(lib().lm_locked_memory(byref(a), byref(b)), "lm_locked_memory")
    return a.value, b.value


def encrypt_size(n: int) -> int:
    return lib().lm_encrypt_size(n)


def packet_kind(packet) -> int:
    arr, n = _in(packet)
    k = c_int()
    check(lib().lm_packet_kind(_ptr(arr), n, byref(k)), "lm_packet_kind")
    return k.value


# ---- keystores --------------------------------------------------------

def keystore_open_memory(path: str, passphrase, argon=(0, 0, 0)) -> int:
    h = c_uint64()
    t, m, p = argon
    with Secret(passphrase) as s:
        rc = lib().lm_keystore_open_memory(_name(path), _ptr(s.arr), s.n, t, m, p, byref(h))
    check(rc, "lm_keystore_open_memory")
    return h.value


def keystore_open_pkcs11(uri: str, pin) -> int:
    h = c_uint64()
    with Secret(pin if pin is not None else bytearray()) as s:
        rc = lib().lm_keystore_open_pkcs11(_name(uri), _ptr(s.arr), s.n, byref(h))
    check(rc, "lm_keystore_open_pkcs11")
    return h.value


def keystore_open_tpm(device: str, key_dir: str, auth) -> int:
    h = c_uint64()
    with Secret(auth if auth is not None else bytearray()) as s:
        rc = lib().lm_keystore_open_tpm(_name(device or ""), _name(key_dir), _ptr(s.arr), s.n, byref(h))
    check(rc, "lm_keystore_open_tpm")
    return h.value


def keystore_list(ks: int) -> list:
    s = _str_out("lm_keystore_list", lambda b, n: lib().lm_keystore_list(ks, b, n), 256)
    return [x for x in s.split("\n") if x]


def keystore_generate(ks: int, name: str, suite_mask: int = 0) -> int:
    h = c_uint64()
    check(lib().lm_keystore_generate(ks, _name(name), suite_mask, byref(h)), "lm_keystore_generate")
    return h.value


def keystore_load(ks: int, name: str) -> int:
    h = c_uint64()
    check(lib().lm_keystore_load(ks, _name(name), byref(h)), "lm_keystore_load")
    return h.value


def keystore_delete(ks: int, name: str) -> None:
    check(lib().lm_keystore_delete(ks, _name(name)), "lm_keystore_delete")


def keystore_close(ks: int) -> None:
    check(lib().lm_keystore_close(ks), "lm_keystore_close")


# ---- identities -------------------------------------------------------

def identity_generate() -> int:
    h = c_uint64()
    check(lib().lm_identity_generate(byref(h)), "lm_identity_generate")
    return h.value


def identity_from_seed(seed) -> int:
    h = c_uint64()
    with Secret(seed) as s:
        if s.n != _lib.SEED_SIZE:
            raise InvalidArgumentError("seed must be %d bytes" % _lib.SEED_SIZE)
        rc = lib().lm_identity_from_seed(_ptr(s.arr), s.n, byref(h))
    check(rc, "lm_identity_from_seed")
    return h.value


def identity_public_key(ident: int) -> bytes:
    return _bytes_out("lm_identity_public_key",
                      lambda b, n: lib().lm_identity_public_key(ident, b[0], n[0]),
                      [_lib.MAX_PUBLIC_KEY_SIZE])[0]


def identity_x25519_public(ident: int) -> bytes:
    return _bytes_out("lm_identity_x25519_public",
                      lambda b, n: lib().lm_identity_x25519_public(ident, b[0], n[0]),
                      [_lib.MAX_PUBLIC_KEY_SIZE])[0]


def identity_dh_public(ident: int, suite: int) -> bytes:
    return _bytes_out("lm_identity_dh_public",
                      lambda b, n: lib().lm_identity_dh_public(ident, suite, b[0], n[0]),
                      [_lib.MAX_PUBLIC_KEY_SIZE])[0]


def identity_suites(ident: int) -> int:
    m = c_uint32()
    check(lib().lm_identity_suites(ident, byref(m)), "lm_identity_suites")
    return m.value


def identity_sign(ident: int, msg) -> bytes:
    arr, n = _in(msg)
    sig = _bytes_out("lm_identity_sign",
                     lambda b, l: lib().lm_identity_sign(ident, _ptr(arr), n, b[0], l[0]),
                     [_lib.SIGNATURE_SIZE])[0]
    if len(sig) != _lib.SIGNATURE_SIZE:
        raise LoraMeshError("lm_identity_sign: unexpected signature length %d" % len(sig))
    return sig


def verify(public_key, msg, sig) -> None:
    """Raises AuthenticationError when the signature is not valid."""
    k, kn = _in(public_key)
    m, mn = _in(msg)
    s, sn = _in(sig)
    check(lib().lm_verify(_ptr(k), kn, _ptr(m), mn, _ptr(s), sn), "lm_verify")


def identity_close(ident: int) -> None:
    check(lib().lm_identity_close(ident), "lm_identity_close")


# ---- cards ------------------------------------------------------------

def card_create(ident: int, name: str) -> bytes:
    nm = _name(name)
    return _bytes_out("lm_card_create",
                      lambda b, n: lib().lm_card_create(ident, nm, b[0], n[0]), [512])[0]


def card_parse(card) -> int:
    arr, n = _in(card)
    h = c_uint64()
    check(lib().lm_card_parse(_ptr(arr), n, byref(h)), "lm_card_parse")
    return h.value


def card_fingerprint(card: int) -> str:
    return _str_out("lm_card_fingerprint", lambda b, n: lib().lm_card_fingerprint(card, b, n))


def card_name(card: int) -> str:
    return _str_out("lm_card_name", lambda b, n: lib().lm_card_name(card, b, n), 80)


def card_signing_key(card: int) -> bytes:
    return _bytes_out("lm_card_signing_key",
                      lambda b, n: lib().lm_card_signing_key(card, b[0], n[0]),
                      [_lib.MAX_PUBLIC_KEY_SIZE])[0]


def card_dh_key(card: int, suite: int) -> bytes:
    return _bytes_out("lm_card_dh_key",
                      lambda b, n: lib().lm_card_dh_key(card, suite, b[0], n[0]),
                      [_lib.MAX_PUBLIC_KEY_SIZE])[0]


def card_choose_suite(a: int, b: int) -> int:
    s = c_int()
    check(lib().lm_card_choose_suite(a, b, byref(s)), "lm_card_choose_suite")
    return s.value


def card_close(card: int) -> None:
    check(lib().lm_card_close(card), "lm_card_close")


# ---- handshake --------------------------------------------------------

def initiate(ident: int, suite: int, peer_key, payload=b""):
    """Returns (initiator handle, message 1)."""
    k, kn = _in(peer_key)
    p, pn = _in(payload)
    h = c_uint64()
    msg1 = _bytes_out("lm_initiate",
                      lambda b, n: lib().lm_initiate(ident, suite, _ptr(k), kn, _ptr(p), pn,
                                                     byref(h), b[0], n[0]),
                      [pn + 128])[0]
    return h.value, msg1


def finish(initiator: int, msg2):
    """Returns (session handle, responder payload)."""
    m, mn = _in(msg2)
    h = c_uint64()
    payload = _bytes_out("lm_finish",
                         lambda b, n: lib().lm_finish(initiator, _ptr(m), mn, byref(h), b[0], n[0]),
                         [max(mn, 1)], wipe=True)[0]
    return h.value, payload


def initiator_close(h: int) -> None:
    check(lib().lm_initiator_close(h), "lm_initiator_close")


def responder_new(ident: int) -> int:
    h = c_uint64()
    check(lib().lm_responder_new(ident, byref(h)), "lm_responder_new")
    return h.value


def responder_allow(resp: int, suite: int, key) -> None:
    k, kn = _in(key)
    check(lib().lm_responder_allow(resp, suite, _ptr(k), kn), "lm_responder_allow")


def respond(resp: int, msg1, reply=b""):
    """Returns (session handle, peer static key, initiator payload, message 2)."""
    m, mn = _in(msg1)
    r, rn = _in(reply)
    h = c_uint64()
    bufs, lens = _out("lm_respond",
                      lambda b, n: lib().lm_respond(resp, _ptr(m), mn, _ptr(r), rn, byref(h),
                                                    b[0], n[0], b[1], n[1], b[2], n[2]),
                      [_lib.MAX_PUBLIC_KEY_SIZE, max(mn, 1), rn + 128])
    peer, payload, msg2 = (bytes(b[:n]) for b, n in zip(bufs, lens))
    wipe_buffer(bufs[1])
    return h.value, peer, payload, msg2


def responder_close(h: int) -> None:
    check(lib().lm_responder_close(h), "lm_responder_close")


# ---- sessions ---------------------------------------------------------

def session_encrypt(sess: int, plaintext) -> bytes:
    p, pn = _in(plaintext)
    size = encrypt_size(pn)
    if size == 0:
        raise InvalidArgumentError("plaintext longer than %d bytes" % _lib.MAX_PAYLOAD)
    try:
        out = _bytes_out("lm_session_encrypt",
                         lambda b, n: lib().lm_session_encrypt(sess, _ptr(p), pn, b[0], n[0]), [size])[0]
    finally:
        if not isinstance(plaintext, bytearray):
            wipe_buffer(p)  # our copy; the caller's bytearray is theirs
    if len(out) != size:
        raise LoraMeshError("lm_session_encrypt: wrote %d bytes, expected %d" % (len(out), size))
    return out


def session_decrypt(sess: int, packet) -> bytes:
    p, pn = _in(packet)
    return _bytes_out("lm_session_decrypt",
                      lambda b, n: lib().lm_session_decrypt(sess, _ptr(p), pn, b[0], n[0]),
                      [max(min(pn, _lib.MAX_PAYLOAD), 1)], wipe=True)[0]


def session_peer(sess: int) -> bytes:
    return _bytes_out("lm_session_peer", lambda b, n: lib().lm_session_peer(sess, b[0], n[0]),
                      [_lib.MAX_PUBLIC_KEY_SIZE])[0]


def session_suite(sess: int) -> int:
    s = c_int()
    check(lib().lm_session_suite(sess, byref(s)), "lm_session_suite")
    return s.value


def session_handshake_hash(sess: int) -> bytes:
    return _bytes_out("lm_session_handshake_hash",
                      lambda b, n: lib().lm_session_handshake_hash(sess, b[0], n[0]),
                      [_lib.HASH_SIZE])[0]


def session_close(sess: int) -> None:
    check(lib().lm_session_close(sess), "lm_session_close")


# ---- messenger engine -------------------------------------------------

def engine_open(ident: int, state_dir: str, now_ms: int) -> int:
    h = c_uint64()
    check(lib().lm_engine_open(ident, _name(state_dir), now_ms, byref(h)), "lm_engine_open")
    return h.value


def engine_add_link(e: int, link: str, profile: int, frame_size: int = 0) -> None:
    check(lib().lm_engine_add_link(e, _name(link), profile, frame_size), "lm_engine_add_link")


def engine_close(e: int) -> None:
    check(lib().lm_engine_close(e), "lm_engine_close")


def engine_contact_add(e: int, name: str, card, replace: bool = False) -> int:
    arr, n = _in(card)
    r = c_int()
    check(lib().lm_engine_contact_add(e, _name(name), _ptr(arr), n, _lib.CONTACT_REPLACE if replace else 0,
                                      byref(r)), "lm_engine_contact_add")
    return r.value


def engine_contact_remove(e: int, name: str) -> None:
    check(lib().lm_engine_contact_remove(e, _name(name)), "lm_engine_contact_remove")


def engine_contact_verify(e: int, name: str, fingerprint: str) -> None:
    check(lib().lm_engine_contact_verify(e, _name(name), _name(fingerprint)), "lm_engine_contact_verify")


def engine_contact_set_addr(e: int, name: str, link: str, addr: str) -> None:
    check(lib().lm_engine_contact_set_addr(e, _name(name), _name(link), _name(addr)), "lm_engine_contact_set_addr")


def engine_contacts(e: int) -> list:
    """One tuple per contact: (name, display name, fingerprint, verified,
    session, queued, last link, last address)."""
    s = _str_out("lm_engine_contacts", lambda b, n: lib().lm_engine_contacts(e, b, n), 1024)
    out = []
    for line in s.split("\n"):
        if line:
            f = line.split("\t")
            out.append((f[0], f[1], f[2], f[3] == "1", f[4] == "1", int(f[5]), f[6], f[7]))
    return out


def engine_contact_card(e: int, name: str) -> bytes:
    nm = _name(name)
    return _bytes_out("lm_engine_contact_card", lambda b, n: lib().lm_engine_contact_card(e, nm, b[0], n[0]),
                      [512])[0]


def engine_send(e: int, now_ms: int, contact: str, text) -> int:
    arr, n = _in(text)
    h = c_uint64()
    check(lib().lm_engine_send(e, now_ms, _name(contact), _ptr(arr), n, byref(h)), "lm_engine_send")
    return h.value


def engine_receive(e: int, now_ms: int, link: str, addr: str, packet) -> None:
    arr, n = _in(packet)
    check(lib().lm_engine_receive(e, now_ms, _name(link), _name(addr), _ptr(arr), n), "lm_engine_receive")


def engine_tick(e: int, now_ms: int) -> None:
    check(lib().lm_engine_tick(e, now_ms), "lm_engine_tick")


def engine_deadline(e: int) -> int:
    d = ctypes.c_int64()
    check(lib().lm_engine_deadline(e, byref(d)), "lm_engine_deadline")
    return d.value


def engine_next_packet(e: int):
    """(link, addr, packet), or None when nothing waits."""
    have = c_int()
    sizes = [_lib.LINK_MAX + 1, _lib.ADDR_MAX + 1, 4096]
    for _ in range(4):
        link = ctypes.create_string_buffer(sizes[0])
        addr = ctypes.create_string_buffer(sizes[1])
        pkt = (ctypes.c_uint8 * sizes[2])()
        ns = [c_size_t(x) for x in sizes]
        rc = lib().lm_engine_next_packet(e, link, byref(ns[0]), addr, byref(ns[1]), ctypes.cast(pkt, u8p),
                                         byref(ns[2]), byref(have))
        if rc == ERR_BUFFER_TOO_SMALL:
            sizes = [max(n.value, s) for n, s in zip(ns, sizes)]
            continue
        check(rc, "lm_engine_next_packet")
        if not have.value:
            return None
        return link.value.decode(), addr.value.decode(), bytes(pkt[:ns[2].value])
    raise LoraMeshError("lm_engine_next_packet: output size keeps growing")


def _event_out(fn: str, call):
    """(lm_event, data bytes) from an event-writing call, or None when it has
    none."""
    have = c_int()
    ev = _lib.Event()
    size = 1024
    for _ in range(4):
        buf = (ctypes.c_uint8 * size)()
        n = c_size_t(size)
        rc = call(byref(ev), ctypes.cast(buf, u8p), byref(n), byref(have))
        if rc == ERR_BUFFER_TOO_SMALL:
            size = n.value
            continue
        check(rc, fn)
        if not have.value:
            return None
        return ev, bytes(buf[:n.value])
    raise LoraMeshError("%s: output size keeps growing" % fn)


def engine_next_event(e: int):
    """(lm_event, data bytes), or None when nothing waits."""
    return _event_out("lm_engine_next_event", lambda ev, b, n, h: lib().lm_engine_next_event(e, ev, b, n, h))


def engine_set_history(e: int, keep: int, max_age_s: int) -> None:
    check(lib().lm_engine_set_history(e, keep, max_age_s), "lm_engine_set_history")


def engine_history(e: int, index: int):
    """The index-th kept message as (lm_event, text), oldest first; None
    past the last."""
    return _event_out("lm_engine_history", lambda ev, b, n, h: lib().lm_engine_history(e, index, ev, b, n, h))
