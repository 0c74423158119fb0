"""A messenger node: identity, contacts, sessions and one transport.

Sessions live as long as the Node. The first message to a contact runs the
handshake; incoming packets are dispatched on their kind (lm_packet_kind).
"""
from __future__ import annotations

import base64
import time

from . import _lib
from .errors import LoraMeshError
from .keys import SUITE_NAMES, ContactCard
from .session import Responder, Session


class Event:
    def __init__(self, kind, contact=None, text=None, addr=None, detail=None):
        self.kind, self.contact, self.text, self.addr, self.detail = kind, contact, text, addr, detail

    def as_dict(self):
        d = {"event": self.kind}
        for k in ("contact", "text", "detail"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        return d


class Node:
    def __init__(self, identity, contacts: dict, transport, handshake_timeout: float = 10.0):
        self.identity = identity
        self.contacts = contacts  # name -> ContactCard
        self.transport = transport
        self.timeout = handshake_timeout
        self.responder = Responder(identity, allow=contacts.values())
        self.sessions = {}  # name -> established Session
        self.pending = {}   # name -> (initiator Session, addr)
        self.addrs = {}     # name -> last address heard from / sent to
        self.backlog = []   # events seen while waiting for a handshake

    def close(self):
        for s in self.sessions.values():
            s.close()
        for s, _ in self.pending.values():
            s.close()
        self.responder.close()

    def _contact_for_key(self, key: bytes):
        for name, card in self.contacts.items():
            if key in card.dh_keys.values():
                return name
        return None

    def session_info(self, name):
        s = self.sessions[name]
        return "%s, handshake %s" % (SUITE_NAMES.get(s.suite, s.suite), s.handshake_hash[:4].hex())

    # ---- sending -------------------------------------------------------

    def connect(self, name: str, addr) -> Session:
        if name in self.sessions:
            return self.sessions[name]
        card = self.contacts[name]
        if name not in self.pending:
            sess, msg1 = Session.initiate(self.identity, card)
            self.pending[name] = (sess, addr)
            self.transport.send(msg1, addr)
        deadline = time.monotonic() + self.timeout
        while name not in self.sessions:
            left = deadline - time.monotonic()
            if left <= 0:
                sess, _ = self.pending.pop(name, (None, None))
                if sess:
                    sess.close()
                raise TimeoutError("no handshake reply from %s within %gs" % (name, self.timeout))
            # Events for others wait in the backlog for poll(); reading the
            # transport directly keeps them from being served back here.
            self.backlog.extend(self._receive(left))
        return self.sessions[name]

    def send(self, name: str, text: str, addr=None) -> None:
        addr = addr if addr is not None else self.addrs.get(name)
        sess = self.connect(name, addr)
        data = bytearray(text.encode("utf-8"))
        packet = sess.encrypt(data)
        self.transport.send(packet, addr if addr is not None else self.addrs.get(name))

    # ---- receiving -----------------------------------------------------

    def poll(self, timeout: float) -> list:
        """Waits up to timeout for one packet; returns the events it caused."""
        if self.backlog:
            ev, self.backlog = self.backlog, []
            return ev
        return self._receive(timeout)

    def _receive(self, timeout: float) -> list:
        """Reads and handles one packet from the transport."""
        got = self.transport.recv(timeout)
        if got is None:
            return []
        packet, addr = got
        try:
            return self.handle(packet, addr)
        except LoraMeshError as e:
            return [Event("dropped", addr=addr, detail=str(e))]

    def handle(self, packet: bytes, addr) -> list:
        kind = _lib_packet_kind(packet)
        if kind in (_lib.PACKET_INIT_X25519, _lib.PACKET_INIT_P256):
            sess, msg2 = self.responder.respond(packet)
            name = self._contact_for_key(sess.peer_key)
            if name is None:  # allow list makes this unreachable
                sess.close()
                return [Event("dropped", addr=addr, detail="handshake from unknown key")]
            if name in self.pending:
                # Both ends initiated at once. The handshake of the end with
                # the lower static key wins on both sides, so both keep the
                # same session.
                mine = self.identity.dh_public(sess.suite)
                if mine < sess.peer_key:
                    sess.close()
                    return [Event("dropped", name, addr=addr, detail="simultaneous open: keeping our handshake")]
                pending, _ = self.pending.pop(name)
                pending.close()
            self.transport.send(msg2, addr)
            old = self.sessions.pop(name, None)
            if old:
                old.close()
            self.sessions[name] = sess
            self.addrs[name] = addr
            return [Event("session", name, addr=addr, detail=self.session_info(name))]
        if kind == _lib.PACKET_RESPONSE:
            err = None
            for name, (sess, a) in list(self.pending.items()):
                if a is not None and addr != "serial" and a != addr:
                    continue
                try:
                    sess.finish(packet)
                except LoraMeshError as e:
                    err = e
                    continue
                del self.pending[name]
                self.sessions[name] = sess
                self.addrs[name] = addr
                return [Event("session", name, addr=addr, detail=self.session_info(name))]
            return [Event("dropped", addr=addr, detail=str(err) if err else "unexpected handshake reply")]
        if kind == _lib.PACKET_TRANSPORT:
            order = sorted(self.sessions, key=lambda n: self.addrs.get(n) != addr)
            first = None
            for name in order:
                try:
                    pt = self.sessions[name].decrypt(packet)
                except LoraMeshError as e:
                    first = first or e
                    continue
                self.addrs[name] = addr
                return [Event("message", name, pt.decode("utf-8", "replace"), addr=addr)]
            return [Event("dropped", addr=addr, detail=str(first) if first else "message with no session")]
        return [Event("dropped", addr=addr, detail="packet kind %d not handled here" % kind)]


def _lib_packet_kind(packet):
    from . import _capi
    return _capi.packet_kind(packet)


def load_contacts(entries: dict) -> dict:
    return {name: ContactCard(base64.b64decode(e["card"])) for name, e in entries.items()}
