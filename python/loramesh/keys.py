"""Layer 3: identities, contact cards and keystores as typed classes."""
from __future__ import annotations

import os
import stat
import threading
import weakref

from . import _capi
from ._lib import SUITE_P256, SUITE_X25519, suite_bit
from .errors import InvalidArgumentError, StateError, UnsupportedError

SUITE_NAMES = {SUITE_X25519: "x25519", SUITE_P256: "p256"}


def _quiet(close, h):
    try:
        close(h)
    except Exception:  # already closed, or interpreter shutting down
        pass


class _Handle:
    """An integer handle closed by close(), the with statement, or (as a
    safety net) garbage collection."""

    _close_fn = None
    _kind = "object"

    def __init__(self, handle: int):
        self._h = handle
        self._finalizer = weakref.finalize(self, _quiet, type(self)._close_fn, handle)

    @property
    def handle(self) -> int:
        if not self._h:
            raise StateError("%s is closed" % self._kind)
        return self._h

    @property
    def closed(self) -> bool:
        return not self._h

    def close(self) -> None:
        if self._h:
            self._finalizer.detach()
            h, self._h = self._h, 0
            type(self)._close_fn(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PublicKey:
    """A static Diffie-Hellman public key of one suite (SUITE_X25519: 32
    bytes, SUITE_P256: a 33-byte compressed point). The suite is said, never
    guessed from the length."""

    SIZES = {SUITE_X25519: 32, SUITE_P256: 33}

    def __init__(self, suite: int, public: bytes):
        if suite not in self.SIZES:
            raise InvalidArgumentError("unknown suite %r" % (suite,))
        if len(public) != self.SIZES[suite]:
            raise InvalidArgumentError("a suite %d public key is %d bytes" % (suite, self.SIZES[suite]))
        self.suite = suite
        self._pub = bytes(public)

    def public_bytes(self) -> bytes:
        return self._pub

    def __eq__(self, other):
        return isinstance(other, PublicKey) and (self.suite, self._pub) == (other.suite, other._pub)

    def __hash__(self):
        return hash((self.suite, self._pub))

    def __repr__(self):
        return "PublicKey(%d, %s)" % (self.suite, self._pub.hex())


class X25519Key(PublicKey):
    """A static X25519 public key (32 bytes)."""

    def __init__(self, public: bytes):
        super().__init__(SUITE_X25519, public)


class IdentityKey(_Handle):
    """A long-term identity: signing key plus static DH keys for one or more
    suites. Software identities (generate, from_seed, MemoryKeystore) hold an
    Ed25519 key; PKCS#11 and TPM identities a P-256 key in hardware."""

    _close_fn = staticmethod(_capi.identity_close)
    _kind = "identity"

    def __init__(self, handle: int, name: str = None, keystore=None):
        super().__init__(handle)
        self.name = name
        self.keystore = keystore
        self._responder = None
        self._lock = threading.Lock()
        self.owned_keystore = None  # closed with this identity

    @classmethod
    def generate(cls) -> "IdentityKey":
        """A new random software identity, in memory only."""
        return cls(_capi.identity_generate())

    @classmethod
    def from_seed(cls, seed) -> "IdentityKey":
        """The software identity of a 32-byte seed; a bytearray is wiped."""
        return cls(_capi.identity_from_seed(seed))

    def public_bytes(self) -> bytes:
        """Signing public key: 32-byte Ed25519 or 33-byte compressed P-256."""
        return _capi.identity_public_key(self.handle)

    def derive_x25519(self) -> X25519Key:
        """The identity's X25519 static key (for software identities the
        Montgomery form of the Ed25519 key)."""
        try:
            return X25519Key(_capi.identity_x25519_public(self.handle))
        except UnsupportedError:
            if SUITE_X25519 not in self.suites:
                raise
            return X25519Key(_capi.identity_dh_public(self.handle, SUITE_X25519))

    def dh_public(self, suite: int) -> bytes:
        return _capi.identity_dh_public(self.handle, suite)

    @property
    def suites(self) -> list:
        mask = _capi.identity_suites(self.handle)
        return [s for s in (SUITE_X25519, SUITE_P256) if mask & suite_bit(s)]

    def sign(self, data) -> bytes:
        return _capi.identity_sign(self.handle, data)

    def card(self, name: str, onion: str = None) -> bytes:
        """This identity's signed contact card under display name, with the
        v3 onion address where the node is reached over Tor, if any."""
        if onion:
            return _capi.card_create_with(self.handle, name, onion)
        return _capi.card_create(self.handle, name)

    def seal(self, purpose: str, data) -> bytes:
        """data sealed to this identity for purpose (lm_seal): only this
        identity opens it, and only for the same purpose."""
        return _capi.seal(self.handle, purpose, data)

    def unseal(self, purpose: str, sealed) -> bytearray:
        """Opens what seal() made: a bytearray the caller wipes
        (secure_wipe). AuthenticationError when it was sealed to another
        identity or purpose, or damaged; MalformedError when it is not
        sealed data at all."""
        return _capi.unseal(self.handle, purpose, sealed)

    def responder(self) -> "Responder":
        """The identity's shared responder (remembers answered handshakes so
        a replay raises ReplayError)."""
        from .session import Responder
        with self._lock:
            if self._responder is None or self._responder.closed:
                self._responder = Responder(self)
            return self._responder

    def close(self) -> None:
        if self._responder is not None:
            self._responder.close()
        super().close()
        if self.owned_keystore is not None:
            self.owned_keystore.close()
            self.owned_keystore = None

    def __repr__(self):
        return "IdentityKey(%s)" % (self.name or ("closed" if self.closed else self.public_bytes().hex()))


def verify(public_key, data, signature) -> None:
    """Checks a signature from IdentityKey.sign; raises AuthenticationError
    (bad signature) or InvalidKeyError / InvalidArgumentError."""
    _capi.verify(public_key, data, signature)


class ContactCard(_Handle):
    """A contact card whose signature, encoding and keys the core verified."""

    _close_fn = staticmethod(_capi.card_close)
    _kind = "card"

    def __init__(self, data):
        """Parses and verifies card bytes; raises BadCardError."""
        data = bytes(data)
        super().__init__(_capi.card_parse(data))
        self.raw = data
        self.name = _capi.card_name(self._h)
        self.fingerprint = _capi.card_fingerprint(self._h)
        self.signing_key = _capi.card_signing_key(self._h)
        self.onion = _capi.card_onion(self._h) or None  # checked by the core; None: not on Tor
        self.dh_keys = {}
        for s in (SUITE_X25519, SUITE_P256):
            try:
                self.dh_keys[s] = _capi.card_dh_key(self._h, s)
            except UnsupportedError:
                pass

    parse = classmethod(lambda cls, data: cls(data))

    def __bytes__(self):
        return self.raw

    @property
    def suites(self) -> list:
        return sorted(self.dh_keys)

    def dh_key(self, suite: int) -> bytes:
        if suite not in self.dh_keys:
            raise UnsupportedError("card has no key for suite %d" % suite)
        return self.dh_keys[suite]

    def choose_suite(self, other: "ContactCard") -> int:
        return _capi.card_choose_suite(self.handle, other.handle)

    def verify(self, data, signature) -> None:
        """Checks a signature made by this contact's identity."""
        _capi.verify(self.signing_key, data, signature)

    def __repr__(self):
        return "ContactCard(%r, %s)" % (self.name, self.fingerprint)


class _Keystore(_Handle):
    _close_fn = staticmethod(_capi.keystore_close)
    _kind = "keystore"

    def list(self) -> list:
        return _capi.keystore_list(self.handle)

    def __contains__(self, name):
        return name in self.list()

    def generate(self, name: str, suites=None) -> IdentityKey:
        """Creates identity name (suites: list of SUITE_*; None = all the
        keystore can hold). ExistsError if taken."""
        mask = 0
        for s in suites or ():
            mask |= suite_bit(s)
        return IdentityKey(_capi.keystore_generate(self.handle, name, mask), name, self)

    def load(self, name: str) -> IdentityKey:
        return IdentityKey(_capi.keystore_load(self.handle, name), name, self)

    def delete(self, name: str) -> None:
        _capi.keystore_delete(self.handle, name)


class MemoryKeystore(_Keystore):
    """A directory of passphrase-sealed identity files (NAME.lmid).

    argon2=(time, memory_kib, threads) sets the costs of NEW files; small
    values are for tests only. A bytearray passphrase is wiped."""

    def __init__(self, path, passphrase, argon2=None):
        super().__init__(_capi.keystore_open_memory(os.fspath(path), passphrase, argon2 or (0, 0, 0)))
        self.path = os.fspath(path)


class Pkcs11Keystore(_Keystore):
    """Identities on a PKCS#11 token named by an RFC 7512 URI. pin None uses
    the URI's pin-source/pin-value; a bytearray PIN is wiped."""

    def __init__(self, uri: str, pin=None):
        super().__init__(_capi.keystore_open_pkcs11(uri, pin))
        self.uri = uri


def tpm_device(device_or_socket) -> str:
    """Normalises a TPM location for lm_keystore_open_tpm: None or "" (the
    default /dev/tpmrm0), a device path, a Unix socket path, "HOST:PORT"
    for swtpm over TCP, or an explicit "unix:" / "tcp:" form."""
    d = device_or_socket or ""
    if not d or d.startswith(("unix:", "tcp:")):
        return d
    try:
        if stat.S_ISSOCK(os.stat(d).st_mode):
            return "unix:" + d
    except OSError:
        pass
    if not d.startswith("/") and ":" in d:
        return "tcp:" + d
    return d


class TpmKeystore(_Keystore):
    """Identities in a TPM 2.0: key files in key_dir, keys in the TPM. auth
    (at most 32 bytes, a bytearray is wiped) protects every key.

    Keep the keystore open while its identities are in use: the library
    forgets the auth value (and the TPM connection) at close, after which a
    TPM identity's sign and DH fail (with StateError)."""

    def __init__(self, device_or_socket, auth=None, key_dir=None):
        if key_dir is None:
            base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
            key_dir = os.path.join(base, "loramesh", "tpm-keys")
        self.device = tpm_device(device_or_socket)
        super().__init__(_capi.keystore_open_tpm(self.device, os.fspath(key_dir), auth))
        self.key_dir = os.fspath(key_dir)
