"""Layer 3: the messenger engine (contacts, sessions, reliable delivery).

The engine does no I/O and reads no clock: its host (node.py, the daemon)
feeds it received packets and the time, and takes the packets to transmit
and the events to show. See capi/loramesh.h, "Messenger engine".
"""
from __future__ import annotations

import time
from collections import namedtuple

from . import _capi, _lib
from .keys import IdentityKey, _Handle

EVENT_NAMES = {_lib.EVENT_MESSAGE: "message", _lib.EVENT_DELIVERY: "delivery", _lib.EVENT_SESSION: "session",
               _lib.EVENT_STRANGER: "stranger", _lib.EVENT_ADDRESS: "address", _lib.EVENT_DROPPED: "dropped"}
STATE_NAMES = {_lib.DELIVERY_QUEUED: "queued", _lib.DELIVERY_SENT: "sent", _lib.DELIVERY_DELIVERED: "delivered",
               _lib.DELIVERY_FAILED: "failed"}
PROFILES = {"lora": _lib.LINK_LORA, "udp": _lib.LINK_UDP, "stream": _lib.LINK_STREAM}
IMPORT_RESULTS = {_lib.IMPORT_NEW: "new", _lib.IMPORT_UNCHANGED: "unchanged", _lib.IMPORT_REPLACED: "replaced"}

Contact = namedtuple("Contact", "name display_name fingerprint verified session queued last_link last_addr")


def now_ms() -> int:
    return int(time.time() * 1000)


class Event:
    """Something the user should see. kind: message, delivery, session,
    stranger, address or dropped. text (message) is the peer's own bytes,
    decoded with replacement: escape it before showing it."""

    __slots__ = ("kind", "contact", "msg_id", "state", "seq", "time", "sent_time", "verified", "link", "addr",
                 "fingerprint", "data")

    def __init__(self, ev, data: bytes):
        self.kind = EVENT_NAMES.get(ev.kind, "unknown")
        self.contact = ev.contact.decode("utf-8", "replace")
        self.msg_id = ev.msg_id
        self.state = STATE_NAMES.get(ev.state)
        self.seq = ev.seq
        self.time = ev.time_ms / 1000.0
        self.sent_time = ev.sent_ms / 1000.0 if ev.sent_ms else None
        self.verified = bool(ev.verified)
        self.link = ev.link.decode("ascii", "replace")
        self.addr = ev.addr.decode("ascii", "replace")
        self.fingerprint = ev.fingerprint.decode("ascii", "replace")
        self.data = data

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    @property
    def reason(self) -> str:
        return self.data.decode("utf-8", "replace") if self.kind in ("delivery", "dropped", "session") else ""

    def as_dict(self) -> dict:
        d = {"event": self.kind, "time": self.time}
        if self.contact:
            d["contact"] = self.contact
            d["verified"] = self.verified
        if self.kind == "message":
            d.update(text=self.text, seq=self.seq, sent=self.sent_time)
        elif self.kind == "delivery":
            d.update(id=self.msg_id, state=self.state)
            if self.state == "failed":
                d["reason"] = self.reason
        elif self.kind == "stranger":
            d.update(key=self.data.hex(), fingerprint=self.fingerprint, link=self.link, addr=self.addr)
        elif self.kind == "address":
            d.update(link=self.link, addr=self.addr)
        elif self.kind in ("dropped", "session"):
            d["detail"] = self.reason
            if self.link:
                d.update(link=self.link, addr=self.addr)
        return d

    def __repr__(self):
        return "Event(%r)" % self.as_dict()


class Engine(_Handle):
    """One identity's messenger engine, its state in state_dir (locked while
    open: a second engine on it raises InUseError naming the first process).
    Keep the identity open as long as the engine."""

    _close_fn = staticmethod(_capi.engine_close)
    _kind = "engine"

    def __init__(self, identity: IdentityKey, state_dir: str, now: int = None):
        super().__init__(_capi.engine_open(identity.handle, state_dir, now if now is not None else now_ms()))
        self.identity = identity

    def add_link(self, name: str, profile: str, frame_size: int = 0) -> None:
        _capi.engine_add_link(self.handle, name, PROFILES[profile], frame_size)

    def add_contact(self, name: str, card: bytes, replace: bool = False) -> str:
        """'new', 'unchanged' or 'replaced'."""
        return IMPORT_RESULTS[_capi.engine_contact_add(self.handle, name, card, replace)]

    def remove_contact(self, name: str) -> None:
        _capi.engine_contact_remove(self.handle, name)

    def verify_contact(self, name: str, fingerprint: str) -> None:
        _capi.engine_contact_verify(self.handle, name, fingerprint)

    def set_contact_addr(self, name: str, link: str, addr: str) -> None:
        _capi.engine_contact_set_addr(self.handle, name, link, addr)

    def contacts(self) -> list:
        return [Contact(*c) for c in _capi.engine_contacts(self.handle)]

    def contact(self, name: str):
        for c in self.contacts():
            if c.name == name:
                return c
        return None

    def contact_card(self, name: str) -> bytes:
        return _capi.engine_contact_card(self.handle, name)

    def send(self, contact: str, text, now: int = None) -> int:
        if isinstance(text, str):
            text = text.encode("utf-8")
        return _capi.engine_send(self.handle, now if now is not None else now_ms(), contact, text)

    def receive(self, link: str, addr: str, packet, now: int = None) -> None:
        _capi.engine_receive(self.handle, now if now is not None else now_ms(), link, addr, packet)

    def tick(self, now: int = None) -> None:
        _capi.engine_tick(self.handle, now if now is not None else now_ms())

    def deadline(self):
        """Seconds since the epoch when tick is next due; None: not before
        input comes."""
        d = _capi.engine_deadline(self.handle)
        return None if d < 0 else d / 1000.0

    def packets(self):
        while True:
            p = _capi.engine_next_packet(self.handle)
            if p is None:
                return
            yield p

    def events(self):
        while True:
            e = _capi.engine_next_event(self.handle)
            if e is None:
                return
            yield Event(*e)

    def set_history(self, keep: int, max_age_s: int = 0) -> None:
        """Keep the last keep messages (at most HISTORY_MAX; 0 keeps none and
        forgets what was kept), none older than max_age_s (0: any age). The
        history is sealed with the rest of the engine's state."""
        _capi.engine_set_history(self.handle, keep, max_age_s)

    def history(self):
        """The kept messages, oldest first, as events: "message" for one
        received, "delivery" (with its current state) for one sent."""
        i = 0
        while True:
            e = _capi.engine_history(self.handle, i)
            if e is None:
                return
            yield Event(*e)
            i += 1
