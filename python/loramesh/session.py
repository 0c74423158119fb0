"""Layer 3: Noise IK handshakes and transport sessions."""
from __future__ import annotations

import threading

from . import _capi
from ._lib import SUITE_P256, SUITE_X25519
from .errors import InvalidArgumentError, StateError, UnsupportedError
from .keys import ContactCard, IdentityKey, PublicKey, _Handle


class Responder(_Handle):
    """Answers handshakes addressed to one identity and remembers recent
    messages 1 (a replay raises ReplayError). With allow (contact cards or
    (suite, key) pairs) only those initiators are answered."""

    _close_fn = staticmethod(_capi.responder_close)
    _kind = "responder"

    def __init__(self, identity: IdentityKey, allow=()):
        super().__init__(_capi.responder_new(identity.handle))
        for peer in allow:
            self.allow(peer)

    def allow(self, peer) -> None:
        if isinstance(peer, ContactCard):
            for suite, key in peer.dh_keys.items():
                _capi.responder_allow(self.handle, suite, key)
        else:
            suite, key = peer
            _capi.responder_allow(self.handle, suite, key)

    def respond(self, msg1, reply=b""):
        """Returns (Session, message 2). The session's peer_key is the
        initiator's authenticated static key, peer_payload its payload."""
        h, peer, payload, msg2 = _capi.respond(self.handle, msg1, reply)
        s = Session(session=h)
        s.peer_payload = payload
        return s, msg2


def _peer_key(identity: IdentityKey, peer, suite):
    if isinstance(peer, ContactCard):
        if suite is None:
            mine = set(identity.suites)
            common = [s for s in (SUITE_X25519, SUITE_P256) if s in mine and s in peer.dh_keys]
            if not common:
                raise UnsupportedError("no handshake suite shared with %r" % peer.name)
            suite = common[0]
        return suite, peer.dh_key(suite)
    if isinstance(peer, PublicKey):
        return peer.suite, peer.public_bytes()
    raise InvalidArgumentError("peer must be a ContactCard or a PublicKey(suite, key)")


class Session:
    """One end of an encrypted session.

    An initiator's Session is pending until finish(reply); a responder's is
    ready at once. A failed decrypt changes nothing."""

    def __init__(self, session: int = 0, initiator: int = 0):
        self._session = session
        self._initiator = initiator
        self._lock = threading.Lock()
        self.peer_payload = b""

    @classmethod
    def initiate(cls, identity: IdentityKey, peer, payload=b"", suite=None):
        """Starts a handshake to peer (a ContactCard, or a PublicKey such
        as IdentityKey.derive_x25519() gives). Returns (session, message 1).
        payload is encrypted to the peer but has no forward secrecy."""
        suite, key = _peer_key(identity, peer, suite)
        h, msg1 = _capi.initiate(identity.handle, suite, key, payload)
        return cls(initiator=h), msg1

    @classmethod
    def respond(cls, identity, msg1, reply=b""):
        """Answers message 1 with identity (an IdentityKey, whose shared
        Responder catches replays, or a Responder). Returns (session, reply
        message). Raises MalformedError, AuthenticationError, ReplayError..."""
        responder = identity.responder() if isinstance(identity, IdentityKey) else identity
        return responder.respond(msg1, reply)

    def finish(self, reply) -> bytes:
        """Completes the initiator side with message 2; returns the
        responder's payload. A forged reply raises and leaves the handshake
        waiting for the genuine one."""
        with self._lock:
            if self._session:
                raise StateError("handshake already finished")
            if not self._initiator:
                raise StateError("session is closed")
            h, payload = _capi.finish(self._initiator, reply)
            self._session = h
            init, self._initiator = self._initiator, 0
            _capi.initiator_close(init)
            self.peer_payload = payload
            return payload

    @property
    def established(self) -> bool:
        return bool(self._session)

    def _h(self) -> int:
        if not self._session:
            raise StateError("session not established (call finish) or closed")
        return self._session

    def encrypt(self, plaintext) -> bytes:
        return _capi.session_encrypt(self._h(), plaintext)

    def decrypt(self, packet) -> bytes:
        return _capi.session_decrypt(self._h(), packet)

    @property
    def peer_key(self) -> bytes:
        """The peer's static DH key, authenticated by the handshake."""
        return _capi.session_peer(self._h())

    @property
    def suite(self) -> int:
        return _capi.session_suite(self._h())

    @property
    def handshake_hash(self) -> bytes:
        return _capi.session_handshake_hash(self._h())

    def close(self) -> None:
        with self._lock:
            if self._initiator:
                h, self._initiator = self._initiator, 0
                _capi.initiator_close(h)
            if self._session:
                h, self._session = self._session, 0
                _capi.session_close(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
