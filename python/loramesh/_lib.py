"""Layer 1: find libloramesh.so and declare every function of loramesh.h.

Nothing here checks return codes; see _capi.py for that. The library is
loaded on first use (``lib()``), never at import, because loading runs the
Go runtime (see the PROCESS-WIDE EFFECTS section of capi/loramesh.h: no
core dumps, Go signal handlers, no fork() without exec afterwards).
"""
from __future__ import annotations

import ctypes
import os
import threading
from ctypes import (POINTER, Structure, c_char, c_char_p, c_int, c_int32, c_int64, c_size_t, c_uint8,
                    c_uint32, c_uint64, c_void_p)

from .errors import LibraryNotFoundError

# Values of the header's #defines (ABI version 2). The library exports no
# symbol for them; lm_abi_version() is checked at load so they cannot drift.
ABI_VERSION = 2
SUITE_X25519 = 1
SUITE_P256 = 2
PACKET_INIT_X25519 = 0x21
PACKET_INIT_P256 = 0x22
PACKET_RESPONSE = 0x23
PACKET_TRANSPORT = 0x24
PACKET_CARD = 5
SEED_SIZE = 32
SIGNATURE_SIZE = 64
MAX_PUBLIC_KEY_SIZE = 33
HASH_SIZE = 32
MAX_PAYLOAD = 65471       # plaintext and lm_respond reply limit
MAX_INIT_PAYLOAD = 65437  # lm_initiate payload limit
MAX_OVERHEAD = 21
ERR_BUFFER_TOO_SMALL = 2
FEATURE_ERASE = 0x1  # runtime/secret erases temporaries (linux/amd64, linux/arm64)
FEATURE_MLOCK = 0x2  # kept secrets in mlocked pages (every Linux build)
# Messenger engine
LINK_LORA, LINK_UDP, LINK_STREAM = 1, 2, 3
NAME_MAX, LINK_MAX, ADDR_MAX = 64, 32, 255
EVENT_MESSAGE, EVENT_DELIVERY, EVENT_SESSION, EVENT_STRANGER, EVENT_ADDRESS, EVENT_DROPPED = range(1, 7)
DELIVERY_QUEUED, DELIVERY_SENT, DELIVERY_DELIVERED, DELIVERY_FAILED = range(1, 5)
CONTACT_REPLACE = 1
IMPORT_NEW, IMPORT_UNCHANGED, IMPORT_REPLACED = 1, 2, 3
HISTORY_MAX = 10000


class Event(Structure):
    """struct lm_event."""
    _fields_ = [
        ("kind", c_int32), ("state", c_int32), ("msg_id", c_uint64), ("seq", c_uint64),
        ("time_ms", c_int64), ("sent_ms", c_int64), ("verified", c_int32),
        ("contact", c_char * (NAME_MAX + 1)), ("link", c_char * (LINK_MAX + 1)),
        ("addr", c_char * (ADDR_MAX + 1)), ("fingerprint", c_char * 20),
    ]


def suite_bit(suite: int) -> int:
    return 1 << suite


u8p = POINTER(c_uint8)
u64p = POINTER(c_uint64)
sizep = POINTER(c_size_t)
intp = POINTER(c_int)
u32p = POINTER(c_uint32)

# name: (restype, argtypes). Every function of loramesh.h.
SIGNATURES = {
    "lm_version": (c_char_p, []),
    "lm_abi_version": (c_int, []),
    "lm_strerror": (c_char_p, [c_int]),
    "lm_last_error": (c_int, [c_char_p, sizep]),
    "lm_secure_wipe": (None, [c_void_p, c_size_t]),
    "lm_locked_memory": (c_int, [sizep, sizep]),
    "lm_features": (c_int, [u32p]),
    "lm_features_string": (c_char_p, []),
    "lm_keystore_open_memory": (c_int, [c_char_p, u8p, c_size_t, c_uint32, c_uint32, c_uint8, u64p]),
    "lm_keystore_open_pkcs11": (c_int, [c_char_p, u8p, c_size_t, u64p]),
    "lm_keystore_open_tpm": (c_int, [c_char_p, c_char_p, u8p, c_size_t, u64p]),
    "lm_keystore_list": (c_int, [c_uint64, c_char_p, sizep]),
    "lm_keystore_generate": (c_int, [c_uint64, c_char_p, c_uint32, u64p]),
    "lm_keystore_load": (c_int, [c_uint64, c_char_p, u64p]),
    "lm_keystore_delete": (c_int, [c_uint64, c_char_p]),
    "lm_keystore_close": (c_int, [c_uint64]),
    "lm_identity_generate": (c_int, [u64p]),
    "lm_identity_from_seed": (c_int, [u8p, c_size_t, u64p]),
    "lm_identity_public_key": (c_int, [c_uint64, u8p, sizep]),
    "lm_identity_x25519_public": (c_int, [c_uint64, u8p, sizep]),
    "lm_identity_dh_public": (c_int, [c_uint64, c_int, u8p, sizep]),
    "lm_identity_suites": (c_int, [c_uint64, u32p]),
    "lm_identity_sign": (c_int, [c_uint64, u8p, c_size_t, u8p, sizep]),
    "lm_verify": (c_int, [u8p, c_size_t, u8p, c_size_t, u8p, c_size_t]),
    "lm_identity_close": (c_int, [c_uint64]),
    "lm_card_create": (c_int, [c_uint64, c_char_p, u8p, sizep]),
    "lm_card_parse": (c_int, [u8p, c_size_t, u64p]),
    "lm_card_fingerprint": (c_int, [c_uint64, c_char_p, sizep]),
    "lm_card_name": (c_int, [c_uint64, c_char_p, sizep]),
    "lm_card_signing_key": (c_int, [c_uint64, u8p, sizep]),
    "lm_card_dh_key": (c_int, [c_uint64, c_int, u8p, sizep]),
    "lm_card_choose_suite": (c_int, [c_uint64, c_uint64, intp]),
    "lm_card_close": (c_int, [c_uint64]),
    "lm_initiate": (c_int, [c_uint64, c_int, u8p, c_size_t, u8p, c_size_t, u64p, u8p, sizep]),
    "lm_finish": (c_int, [c_uint64, u8p, c_size_t, u64p, u8p, sizep]),
    "lm_initiator_close": (c_int, [c_uint64]),
    "lm_responder_new": (c_int, [c_uint64, u64p]),
    "lm_responder_allow": (c_int, [c_uint64, c_int, u8p, c_size_t]),
    "lm_respond": (c_int, [c_uint64, u8p, c_size_t, u8p, c_size_t, u64p,
                           u8p, sizep, u8p, sizep, u8p, sizep]),
    "lm_responder_close": (c_int, [c_uint64]),
    "lm_encrypt_size": (c_size_t, [c_size_t]),
    "lm_session_encrypt": (c_int, [c_uint64, u8p, c_size_t, u8p, sizep]),
    "lm_session_decrypt": (c_int, [c_uint64, u8p, c_size_t, u8p, sizep]),
    "lm_session_peer": (c_int, [c_uint64, u8p, sizep]),
    "lm_session_suite": (c_int, [c_uint64, intp]),
    "lm_session_handshake_hash": (c_int, [c_uint64, u8p, sizep]),
    "lm_session_close": (c_int, [c_uint64]),
    "lm_packet_kind": (c_int, [u8p, c_size_t, intp]),
    "lm_engine_open": (c_int, [c_uint64, c_char_p, c_int64, u64p]),
    "lm_engine_add_link": (c_int, [c_uint64, c_char_p, c_int, c_uint32]),
    "lm_engine_close": (c_int, [c_uint64]),
    "lm_engine_contact_add": (c_int, [c_uint64, c_char_p, u8p, c_size_t, c_uint32, intp]),
    "lm_engine_contact_remove": (c_int, [c_uint64, c_char_p]),
    "lm_engine_contact_verify": (c_int, [c_uint64, c_char_p, c_char_p]),
    "lm_engine_contact_set_addr": (c_int, [c_uint64, c_char_p, c_char_p, c_char_p]),
    "lm_engine_contacts": (c_int, [c_uint64, c_char_p, sizep]),
    "lm_engine_contact_card": (c_int, [c_uint64, c_char_p, u8p, sizep]),
    "lm_engine_send": (c_int, [c_uint64, c_int64, c_char_p, u8p, c_size_t, u64p]),
    "lm_engine_receive": (c_int, [c_uint64, c_int64, c_char_p, c_char_p, u8p, c_size_t]),
    "lm_engine_tick": (c_int, [c_uint64, c_int64]),
    "lm_engine_deadline": (c_int, [c_uint64, POINTER(c_int64)]),
    "lm_engine_next_packet": (c_int, [c_uint64, c_char_p, sizep, c_char_p, sizep, u8p, sizep, intp]),
    "lm_engine_next_event": (c_int, [c_uint64, POINTER(Event), u8p, sizep, intp]),
    "lm_engine_set_history": (c_int, [c_uint64, c_uint32, c_int64]),
    "lm_engine_history": (c_int, [c_uint64, c_uint64, POINTER(Event), u8p, sizep, intp]),
}

LIB_NAME = "libloramesh.so"
_lock = threading.Lock()
_lib = None


def candidates() -> list:
    """Paths tried, in order: $LORAMESH_LIB alone when it is set (an explicit
    choice is never silently replaced), else next to the package, then the
    repository's build/ directory."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = os.environ.get("LORAMESH_LIB")
    if env:
        return [env]
    paths = [os.path.join(here, LIB_NAME)]
    # python/loramesh/_lib.py -> repository root is two levels up.
    paths.append(os.path.join(os.path.dirname(os.path.dirname(here)), "build", LIB_NAME))
    return paths


def _declare(cdll) -> None:
    for name, (restype, argtypes) in SIGNATURES.items():
        fn = getattr(cdll, name)  # AttributeError: symbol missing
        fn.restype = restype
        fn.argtypes = argtypes


def load(path: str = None):
    """Loads the library at path, or the first candidate that exists."""
    tried = []
    for p in [path] if path else candidates():
        if not os.path.isfile(p):
            tried.append("%s (not found)" % p)
            continue
        try:
            cdll = ctypes.CDLL(os.path.abspath(p))
        except OSError as e:
            tried.append("%s (%s)" % (p, e))
            continue
        # Loaded: a Go runtime now runs in this process and cannot be
        # unloaded. Never load a second library after it: fail here.
        try:
            _declare(cdll)
            version = cdll.lm_version()
            abi = cdll.lm_abi_version()
        except AttributeError as e:
            tried.append("%s (%s)" % (p, e))
            break
        if not version or abi != ABI_VERSION:
            tried.append("%s (ABI version %d, this binding needs %d)" % (p, abi, ABI_VERSION))
            break
        cdll._lm_path = os.path.abspath(p)
        return cdll
    raise LibraryNotFoundError(
        "cannot load %s; tried: %s. Build it with `make lib` in the repository "
        "(or set LORAMESH_LIB to its path)" % (LIB_NAME, "; ".join(tried)))


def lib():
    """The loaded library (loaded on first call)."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                _lib = load()
    return _lib
