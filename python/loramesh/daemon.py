"""The daemon: one process per node owns the identity, the links and the
messenger engine; commands talk to it over a local control socket.

Control protocol (docs/CONTROL.md): JSON objects, one per line, over a
Unix stream socket of mode 0600 that only the node's user may connect to.
A request carries "op" and an optional "id", echoed in its reply as
"reply" with "ok" true and the op's fields, or "ok" false with "error"
(what happened and what to do) and "code". Events arrive as objects with
"event", to clients that subscribed and, for deliveries, to the client
that sent the message.
"""
from __future__ import annotations

import base64
import binascii
import collections
import errno
import json
import os
import select
import signal
import socket
import struct
import sys
import time

from . import __version__, _lib, errors, torlink, websocket
from .engine import Engine
from .keys import ContactCard
from .node import Node
from .transport import KissTransport, LinkError, UdpTransport, parse_addr

MAX_LINE = 256 * 1024       # a request: a 16 KiB message in base64 and more
MAX_BACKLOG = 4 * 1024 * 1024  # output a slow client may fall behind by
TRANSIENT = 2000            # session, stranger and link events kept for clients that attach later
HISTORY_KEEP, HISTORY_DAYS = 1000, 30  # [history] defaults: messages kept, sealed, in the engine's state


class DaemonError(Exception):
    """The daemon cannot start; the message says why and what to do."""


def open_links(cfg: dict, home=None, identity=None, log=None) -> dict:
    links = {}
    lc = cfg.get("link", {})
    try:
        if "udp" in lc:
            links["udp"] = UdpTransport(lc["udp"].get("bind", "0.0.0.0:7000"))
        if "kiss" in lc:
            k = lc["kiss"]
            links["kiss"] = KissTransport(k.get("serial", "auto"), int(k.get("baud", 9600)),
                                          frame_size=int(k.get("frame", 255)))
        if home is not None and torlink.enabled(cfg):
            links["tor"] = torlink.TorLink(home, cfg, identity, log)
        if "websocket" in lc:  # browser nodes (websocket.py)
            w = lc["websocket"]
            links["ws"] = websocket.WebSocketLink(w.get("bind"), w.get("origins", "").split(","))
    except LinkError:
        for tr in links.values():
            tr.close()
        raise
    if not links:
        raise DaemonError("no link configured: add one with `loramesh link udp HOST:PORT`, "
                          "`loramesh link kiss DEVICE` or `loramesh tor on`")
    return links


def parse_contact_addr(s: str):
    """"udp:HOST:PORT", "kiss", "ws" or "tor:ONION" to (link, addr)."""
    link, _, addr = s.partition(":")
    if link in ("kiss", "ws") and not addr:
        return link, ""
    if link == "udp" and addr:
        host, port = parse_addr(addr)
        return "udp", "%s:%d" % (host, port)
    if link == "tor" and addr:
        return "tor", torlink.T.check_onion_address(addr)
    raise ValueError("address must be udp:HOST:PORT, kiss, ws or tor:ONION, got %r" % s)


class Client:
    def __init__(self, sock):
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.subscribed = False
        self.filter = None  # contact name, or None for all
        self.msg_ids = set()
        # Messages replayed from the history whose live event may still come
        # (the engine records a message before the save that releases its
        # event): shown once, not twice.
        self.replayed = set()

    def fileno(self):
        return self.sock.fileno()

    def send(self, obj: dict) -> None:
        self.outbuf += json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n"

    def wants(self, ev: dict) -> bool:
        if ev.get("event") == "delivery" and ev.get("id") in self.msg_ids:
            return True
        if not self.subscribed:
            return False
        return self.filter is None or ev.get("contact") in (None, self.filter)


def message_key(ev: dict):
    """What names a received message across its history record and its
    event (contact, seq), or None for other events."""
    if ev.get("event") == "message":
        return ev.get("contact"), ev.get("seq")
    return None


def history_limits(cfg: dict) -> tuple:
    """(messages kept, their maximum age in seconds) from config.toml's
    [history]: keep (0 keeps none) and days (0: any age)."""
    h = cfg.get("history", {})
    try:
        keep, days = int(h.get("keep", HISTORY_KEEP)), int(h.get("days", HISTORY_DAYS))
    except (TypeError, ValueError):
        keep = days = -1
    if not 0 <= keep <= _lib.HISTORY_MAX or days < 0:
        raise DaemonError("[history] in config.toml: keep must be 0 to %d and days 0 or more "
                          "(0 keeps no history; days 0 keeps any age)" % _lib.HISTORY_MAX)
    return keep, days * 86400


class Daemon:
    def __init__(self, home, cfg: dict, identity, log=sys.stderr):
        self.home, self.cfg, self.identity, self.log = home, cfg, identity, log
        self.display = cfg["identity"].get("display_name", "")
        try:
            self.engine = Engine(identity, home.state_dir(cfg["identity"]["name"]))
        except errors.InUseError as e:
            raise DaemonError("another daemon runs for %s: %s" % (home.path, e))
        try:
            self.engine.set_history(*history_limits(cfg))
            self.links = open_links(cfg, home, identity, self.say)
        except (LinkError, DaemonError) as e:
            self.engine.close()
            raise DaemonError(str(e))
        self.node = Node(self.engine, self.links)
        if "ws" in self.links:
            websocket.attach(self, self.links["ws"])
        self.default_radio()
        self.tor_setup()
        self.transient = collections.deque(maxlen=TRANSIENT)
        self.clients = {}
        self.stopping = False
        self.server = self.listen(home.socket_path())

    def default_radio(self) -> None:
        """Contacts without an address go over the radio when there is one."""
        if "kiss" not in self.links:
            return
        for c in self.engine.contacts():
            if not c.last_link:
                try:
                    self.engine.set_contact_addr(c.name, "kiss", "")
                except errors.LoraMeshError:
                    pass

    # ---- Tor (issue 17) --------------------------------------------------

    def tor_setup(self) -> None:
        """With the Tor link: its delivery deadline, and contacts' onion addresses."""
        if "tor" not in self.links:
            return
        deadline = torlink.settings(self.cfg)["deadline"]
        if deadline:
            self.engine.set_link_deadline("tor", float(deadline))
        self.tor_addrs()

    def tor_addrs(self, name: str = None) -> None:
        """Contacts whose card carries an onion address are reached there
        too, after their other addresses (the card is the authority for a
        contact's onion; without one, a `contact addr NAME tor:ONION` stays)."""
        if "tor" not in self.links:
            return
        for c in self.engine.contacts() if name is None else [self.need(name)]:
            with ContactCard(self.engine.contact_card(c.name)) as cc:
                onion = cc.onion
            if not onion:
                continue
            addrs = self.engine.contact_addrs(c.name)
            want = [a for a in addrs if a[0] != "tor"] + [("tor", onion)]
            if want != addrs:
                self.engine.set_contact_addrs(c.name, want)

    def my_onion(self):
        tr = self.links.get("tor")
        return tr.address if tr is not None else None

    def listen(self, path: str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1)
            probe.connect(path)
            probe.close()
            raise DaemonError("a daemon already answers on %s" % path)
        except (FileNotFoundError, ConnectionRefusedError):
            try:
                os.unlink(path)  # a dead daemon's socket
            except FileNotFoundError:
                pass
        except socket.timeout:
            raise DaemonError("%s exists and does not answer: remove it if no daemon runs" % path)
        old = os.umask(0o177)
        try:
            s.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        s.listen(16)
        s.setblocking(False)
        self.sock_path = path
        return s

    def say(self, msg: str) -> None:
        print("%s loramesh daemon: %s" % (time.strftime("%Y-%m-%d %H:%M:%S"), msg), file=self.log, flush=True)

    # ---- the loop ------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *a: self.stop())
        signal.signal(signal.SIGINT, lambda *a: self.stop())
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.say("node %s (%s) up; links %s; control %s" % (self.display, self.fingerprint(),
                 ", ".join("%s %s" % (n, getattr(t, "local", getattr(t, "device", ""))) for n, t in self.links.items()),
                 self.sock_path))
        try:
            while not self.stopping:
                self.once(1.0)
        finally:
            self.close()

    def once(self, cap: float) -> None:
        links = self.node.fds()
        rl = [self.server.fileno()] + list(self.clients) + list(links)
        wl = [fd for fd, c in self.clients.items() if c.outbuf]
        try:
            r, w, _ = select.select(rl, wl, [], self.node.timeout(cap))
        except InterruptedError:
            return
        errs = []
        for fd in r:
            if fd == self.server.fileno():
                self.accept()
            elif fd in self.clients:
                self.read(self.clients[fd])
            elif fd in links:
                errs += self.node.readable(links[fd])
        errs += self.node.flush()
        for e in errs:
            self.publish({"event": "link", "time": time.time(), "detail": e})
        for ev in self.engine.events():
            self.publish(ev.as_dict())
        for fd in w:
            if fd in self.clients:
                self.write(self.clients[fd])

    def publish(self, ev: dict) -> None:
        if ev["event"] in ("session", "stranger", "link"):
            self.transient.append(ev)
        if ev["event"] in ("stranger", "link", "dropped"):
            self.say(json.dumps(ev, ensure_ascii=True))
        key = message_key(ev)
        for c in list(self.clients.values()):
            if key is not None and key in c.replayed:
                c.replayed.discard(key)
                continue
            if c.wants(ev):
                c.send(ev)
                if len(c.outbuf) > MAX_BACKLOG:
                    self.drop(c)

    def accept(self) -> None:
        try:
            s, _ = self.server.accept()
        except OSError:
            return
        creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        if uid != os.getuid():
            s.close()
            return
        s.setblocking(False)
        self.clients[s.fileno()] = Client(s)

    def drop(self, c: Client) -> None:
        self.clients.pop(c.fileno(), None)
        c.sock.close()

    def read(self, c: Client) -> None:
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(c)
            return
        c.inbuf += data
        while b"\n" in c.inbuf:
            line, _, rest = bytes(c.inbuf).partition(b"\n")
            c.inbuf = bytearray(rest)
            self.request(c, line)
        if len(c.inbuf) > MAX_LINE:
            c.send({"ok": False, "error": "request too long", "code": "usage"})
            self.drop(c)

    def write(self, c: Client) -> None:
        try:
            n = c.sock.send(c.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.drop(c)
            return
        del c.outbuf[:n]

    # ---- requests ------------------------------------------------------

    def request(self, c: Client, line: bytes) -> None:
        rid = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request is a JSON object")
            rid = req.get("id")
            fn = getattr(self, "op_" + str(req.get("op")), None)
            if fn is None:
                raise ValueError("unknown op %r" % req.get("op"))
            reply = fn(c, req) or {}
            reply.update(ok=True)
        except errors.LoraMeshError as e:
            reply = {"ok": False, "error": str(e), "code": type(e).__name__}
        except (ValueError, KeyError, TypeError, binascii.Error) as e:
            msg = "missing field %s" % e if isinstance(e, KeyError) else str(e)
            reply = {"ok": False, "error": msg, "code": "usage"}
        if rid is not None:
            reply["reply"] = rid
        c.send(reply)

    def fingerprint(self) -> str:
        with ContactCard(self.identity.card(self.display or "node")) as card:
            return card.fingerprint

    def op_status(self, c, req):
        contacts = self.engine.contacts()
        return {"pid": os.getpid(), "version": __version__, "name": self.display,
                "fingerprint": self.fingerprint(), "keystore": self.cfg["identity"]["keystore"],
                "links": {n: getattr(t, "local", getattr(t, "device", "")) for n, t in self.links.items()},
                "contacts": len(contacts), "queued": sum(x.queued for x in contacts),
                **({"tor": self.links["tor"].status()} if "tor" in self.links else {})}

    def contact_dict(self, x) -> dict:
        d = {"contact": x.name, "name": x.display_name, "fingerprint": x.fingerprint, "verified": x.verified,
             "session": x.session, "queued": x.queued}
        if x.last_link:
            d["addr"] = "%s:%s" % (x.last_link, x.last_addr) if x.last_addr else x.last_link
        return d

    def op_contacts(self, c, req):
        return {"contacts": [self.contact_dict(x) for x in self.engine.contacts()]}

    def op_contact_show(self, c, req):
        x = self.need(req["contact"])
        d = self.contact_dict(x)
        card = self.engine.contact_card(x.name)
        with ContactCard(card) as cc:
            d.update(card=base64.b64encode(card).decode(), signing_key=cc.signing_key.hex(),
                     dh_keys={"x25519" if s == 1 else "p256": k.hex() for s, k in cc.dh_keys.items()})
            if cc.onion:
                d["onion"] = cc.onion
        d["addrs"] = ["%s:%s" % a if a[1] else a[0] for a in self.engine.contact_addrs(x.name)]
        return d

    def need(self, name: str):
        x = self.engine.contact(name)
        if x is None:
            raise errors.NotFoundError("no contact %r (see `loramesh contact list`)" % name, 11)
        return x

    def op_contact_import(self, c, req):
        card = base64.b64decode(req["card"], validate=True)
        with ContactCard(card) as cc:
            name = req.get("contact") or cc.name
            fp = cc.fingerprint
        old = self.engine.contact(name)
        result = self.engine.add_contact(name, card, bool(req.get("replace")))
        if req.get("addr"):
            self.engine.set_contact_addr(name, *parse_contact_addr(req["addr"]))
        else:
            self.default_radio()
        self.tor_addrs(name)
        out = {"contact": name, "fingerprint": fp, "result": result}
        if result == "replaced" and old is not None:
            out["old_fingerprint"] = old.fingerprint
        return out

    def op_contact_remove(self, c, req):
        self.need(req["contact"])
        self.engine.remove_contact(req["contact"])
        return {"contact": req["contact"]}

    def op_contact_verify(self, c, req):
        self.need(req["contact"])
        self.engine.verify_contact(req["contact"], str(req["fingerprint"]))
        return {"contact": req["contact"], "verified": True}

    def op_contact_addr(self, c, req):
        self.need(req["contact"])
        link, addr = parse_contact_addr(req["addr"])
        if link not in self.links:
            raise ValueError("this node has no %s link (add one with `loramesh link %s ...`)" % (link, link))
        self.engine.set_contact_addr(req["contact"], link, addr)
        self.tor_addrs(req["contact"])
        return {"contact": req["contact"], "addr": req["addr"]}

    def op_send(self, c, req):
        self.need(req["contact"])
        text = str(req["text"])
        mid = self.engine.send(req["contact"], text)
        c.msg_ids.add(mid)
        ev = {"event": "sent-by-me", "time": time.time(), "contact": req["contact"], "id": mid, "text": text,
              "state": "queued"}
        for other in self.clients.values():
            if other is not c and other.wants(ev):
                other.send(ev)
        return {"id": mid}

    def op_subscribe(self, c, req):
        c.subscribed = True
        c.filter = req.get("contact")
        n = int(req.get("history", 0))
        if n > 0:
            past = [ev for ev in self.past() if c.filter is None or ev.get("contact") == c.filter]
            for ev in past[-n:]:
                c.send(dict(ev, history=True))
                if message_key(ev) is not None:
                    c.replayed.add(message_key(ev))
        return {}

    def past(self) -> list:
        """The kept messages, from the engine's sealed history (so they
        survive a restart), with this run's session, stranger and link
        events, in time order."""
        out = list(self.transient)
        for ev in self.engine.history():
            if ev.kind == "message":
                out.append(ev.as_dict())
            else:
                out.append({"event": "sent-by-me", "time": ev.time, "contact": ev.contact, "id": ev.msg_id,
                            "text": ev.data.decode("utf-8", "replace"), "state": ev.state})
        out.sort(key=lambda ev: ev["time"])
        return out

    def op_card(self, c, req):
        card = self.identity.card(req.get("name") or self.display or "node", onion=self.my_onion())
        return {"card": base64.b64encode(card).decode()}

    def op_sign(self, c, req):
        return {"signature": self.identity.sign(base64.b64decode(req["data"], validate=True)).hex()}

    def op_verify(self, c, req):
        self.need(req["contact"])
        with ContactCard(self.engine.contact_card(req["contact"])) as cc:
            cc.verify(base64.b64decode(req["data"], validate=True), bytes.fromhex(req["signature"]))
        return {"valid": True}

    def op_stop(self, c, req):
        self.stop()
        return {}

    def stop(self) -> None:
        self.stopping = True

    def close(self) -> None:
        self.say("stopping")
        for c in list(self.clients.values()):
            for _ in range(3):
                if c.outbuf:
                    self.write(c)
            self.drop(c)
        try:
            self.server.close()
            os.unlink(self.sock_path)
        except OSError:
            pass
        self.node.close()
        self.engine.close()
        self.identity.close()


def report(fd, line: str) -> None:
    """Tells the process that started us how startup went."""
    if fd is None:
        return
    try:
        os.write(fd, line.encode("utf-8", "replace") + b"\n")
        os.close(fd)
    except OSError as e:
        if e.errno != errno.EBADF:
            raise
