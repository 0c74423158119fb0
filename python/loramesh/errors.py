"""Exceptions: one root, LoraMeshError, and one subclass per C error code."""
from __future__ import annotations


class LoraMeshError(Exception):
    """Root of every error raised by this package.

    ``code`` is the LM_ERR_* code from the C library (0 for errors raised on
    the Python side), ``name`` its lm_strerror text.
    """

    code = 0  # the LM_ERR_* value of each subclass, from BY_CODE below

    def __init__(self, message: str, code: int = None, name: str = ""):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.name = name


class LibraryNotFoundError(LoraMeshError, OSError):
    """libloramesh.so could not be found or loaded."""


class InvalidArgumentError(LoraMeshError, ValueError):
    """NULL pointer, wrong length or bad value."""


class InvalidKeyError(InvalidArgumentError):
    """A public key that is not valid for its suite."""


class AuthenticationError(LoraMeshError):
    """A packet or signature does not authenticate."""


class UnknownPeerError(AuthenticationError):
    """Handshake from a key that is not on the allow list."""


class ReplayError(LoraMeshError):
    """A replayed handshake message 1 or transport packet."""


class TooOldError(ReplayError):
    """Transport packet outside the receive window."""


class MalformedError(LoraMeshError, ValueError):
    """Not a valid packet, or too long."""


class VersionError(MalformedError):
    """Unsupported format version or packet kind."""


class BadCardError(LoraMeshError):
    """Contact card invalid or badly signed."""


class LimitError(LoraMeshError):
    """Message limit reached: do a new handshake."""


class UnsupportedError(LoraMeshError):
    """Suite not supported by a key, card or token."""


class KeystoreError(LoraMeshError):
    """Key holder failure (file, token, TPM)."""


class PinError(KeystoreError):
    """Wrong PIN, passphrase or auth value."""


class LockedError(PinError):
    """PIN or key locked out."""


class NotFoundError(KeystoreError):
    """No such identity, token or device."""


class ExistsError(KeystoreError):
    """Identity name already taken."""


class LockedMemoryError(LoraMeshError, MemoryError):
    """The library cannot mlock memory for secrets (raise RLIMIT_MEMLOCK)."""


class HandleError(LoraMeshError):
    """Unknown, closed or wrong-kind handle (use after close)."""


class StateError(LoraMeshError):
    """Object used out of order or after close."""


class InternalError(LoraMeshError):
    """Bug in the library."""


class InUseError(LoraMeshError):
    """A state directory another process (named in the message) holds."""


class KeyChangedError(LoraMeshError):
    """A contact of that name holds another identity (replace to overwrite)."""


class ConflictError(LoraMeshError):
    """The card's keys belong to another contact or to this node."""


class FullError(LoraMeshError):
    """Too many messages queued for the contact."""


# LM_ERR_* value -> exception class. LM_ERR_BUFFER_TOO_SMALL (2) never
# reaches callers: the thin layer retries with the reported size.
BY_CODE = {
    1: InvalidArgumentError,
    3: AuthenticationError,
    4: ReplayError,
    5: MalformedError,
    6: LimitError,
    7: UnsupportedError,
    8: KeystoreError,
    9: PinError,
    10: LockedError,
    11: NotFoundError,
    12: ExistsError,
    13: HandleError,
    14: LockedMemoryError,
    15: UnknownPeerError,
    16: TooOldError,
    17: StateError,
    18: BadCardError,
    19: VersionError,
    20: InvalidKeyError,
    21: InternalError,
    22: InUseError,
    23: KeyChangedError,
    24: ConflictError,
    25: FullError,
}


for _code, _cls in BY_CODE.items():
    _cls.code = _code
