"""loramesh: Python binding of libloramesh (loramesh-core's C API).

Three layers: _lib (ctypes declarations), _capi (thin checked wrappers),
and the classes exported here. The shared library is loaded on first use
from $LORAMESH_LIB, next to this package, or the repository's build/.

Loading it starts the Go runtime in this process: core dumps are disabled,
Go installs signal handlers, and the process must not fork() without exec
afterwards (subprocess is fine). See capi/loramesh.h.
"""
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


def packet_kind(packet) -> int:
    """PACKET_* kind of a received packet (from its first two bytes)."""
    from . import _capi
    return _capi.packet_kind(packet)


__all__ = [
    "ContactCard", "IdentityKey", "LoraMeshError", "MemoryKeystore", "Pkcs11Keystore",
    "PublicKey", "Responder", "Session", "TpmKeystore", "X25519Key", "library_version", "packet_kind",
    "secure_wipe", "verify",
]
