"""loramesh: Python binding of libloramesh (loramesh-core's C API).

Three layers: _lib (ctypes declarations), _capi (thin checked wrappers),
and the classes exported here. The shared library is loaded on first use
from $LORAMESH_LIB, next to this package, or the repository's build/.

Loading it starts the Go runtime in this process: core dumps are disabled,
Go installs signal handlers, and the process must not fork() without exec
afterwards (subprocess is fine). See capi/loramesh.h.
"""
from typing import NamedTuple

from ._capi import secure_wipe
from ._lib import (
    MAX_PAYLOAD, PACKET_CARD, PACKET_INIT_P256, PACKET_INIT_X25519, PACKET_RESPONSE,
    PACKET_TRANSPORT, SEED_SIZE, SIGNATURE_SIZE, SUITE_P256, SUITE_X25519,
)
from .errors import *  # noqa: F401,F403
from .errors import LoraMeshError
from .keys import (
    ContactCard, IdentityKey, MemoryKeystore, Pkcs11Keystore, PublicKey, TpmKeystore, X25519Key, verify,
)
from .session import Responder, Session

__version__ = "0.1.0"


def library_version() -> str:
    """Version string of the loaded libloramesh."""
    from . import _capi
    return _capi.version()


class Features(NamedTuple):
    """What the loaded library guarantees about secrets (lm_features).

    erase: runtime/secret erases the registers, stack and heap temporaries of
    every operation on key material; only linux/amd64 and linux/arm64 builds.
    mlock: secrets the library keeps live in mlocked pages (every Linux build).
    platform ("linux/arm") and go_version come from the library itself, not
    from this interpreter; text is its one-line description, for logs.
    """
    erase: bool
    mlock: bool
    platform: str
    go_version: str
    flags: int
    text: str


def features() -> Features:
    """The loaded library's custody guarantees on this architecture. Check
    erase before relying on it: on 32-bit ARM it is False."""
    from . import _capi, _lib
    flags, text = _capi.features()
    words = text.split()
    return Features(bool(flags & _lib.FEATURE_ERASE), bool(flags & _lib.FEATURE_MLOCK),
                    words[0] if words else "", words[1].rstrip(":") if len(words) > 1 else "", flags, text)


def packet_kind(packet) -> int:
    """PACKET_* kind of a received packet (from its first two bytes)."""
    from . import _capi
    return _capi.packet_kind(packet)


__all__ = [
    "ContactCard", "Features", "IdentityKey", "LoraMeshError", "MemoryKeystore", "Pkcs11Keystore",
    "PublicKey", "Responder", "Session", "TpmKeystore", "X25519Key", "features", "library_version", "packet_kind",
    "secure_wipe", "verify",
]
