"""Tor as a link of the daemon: the [tor] settings of config.toml, the
daemon's own tor (or an attached one), the node's onion service and its
key, and tor.OnionLink in the shape of transport.py's links.

Settings ([tor] in config.toml, `loramesh tor on|off`):
  enabled   the daemon runs the Tor link (also `loramesh daemon --tor`)
  control   "" (default): the daemon starts and supervises its own tor,
            data directory <node directory>/tor, ControlPort auto with
            cookie authentication, SocksPort 127.0.0.1:auto; or
            "HOST:PORT" / "/path/to/control.sock": attach to a running
            tor's control port (cookie authentication; it needs a SocksPort)
  torrc     a file of extra torrc lines for our own tor (bridges, a private
            test network); the system's /etc/tor/torrc is never read or
            written
  binary    the tor program (default "tor", found in PATH)
  deadline  seconds a message reached over Tor may wait for delivery
            before it fails (default: the Stream profile's, 24 h)

The onion service is published with ADD_ONION from a key the daemon keeps
sealed to its identity (store_onion_key / load_onion_key), so the address
survives restarts; it
forwards to a listener of ours on 127.0.0.1 and lives as long as our
control connection: it is gone when the daemon stops.

Addresses on this link, as the engine sees them: "<56 chars>.onion" for a
contact's onion service (we connected to it), "in-<run>-<n>" for a
connection a contact opened to ours (tor does not say who called; <run>
changes at every start, so a saved one never names another connection).
"""
from __future__ import annotations

import ipaddress
import os
import socket
import time

from . import errors
from . import tor as T
from .config import write_atomic
from .transport import LinkError

DEFAULTS = {"enabled": False, "control": "", "torrc": "", "binary": "tor", "deadline": 0}
FRAME = 4096            # the Stream profile's frame, and the onion link's
STUCK_AFTER = 60.0      # seconds without bootstrap progress before we call it stuck
NO_ANSWER = 30.0        # seconds an open connection may stay silent after we sent on it
CONNECT_TIMEOUT = 30.0  # an onion connect (descriptor, introduction, rendezvous)
MAX_RETRY = 30.0        # the longest wait before trying an onion that failed again
INBOUND = "in-"


class TorLinkError(LinkError):
    """The Tor link cannot start or run; the message says what to do."""


def settings(cfg: dict) -> dict:
    t = dict(DEFAULTS)
    t.update(cfg.get("tor") or {})
    return t


def enabled(cfg: dict) -> bool:
    return bool(settings(cfg)["enabled"])


def data_dir(home) -> str:
    """Our own tor's data directory (tor's keys, state and log)."""
    return os.path.join(home.path, "tor")


def read_torrc(path: str) -> list:
    """The extra torrc lines of a file: one option per line, # comments."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise TorLinkError("cannot read the torrc file %s: %s (fix it, or `loramesh tor on` without --torrc)"
                           % (path, e.strerror))
    except UnicodeDecodeError:
        raise TorLinkError("the torrc file %s is not UTF-8 text" % path)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


# ---- the onion service key ------------------------------------------------
#
# The only code that reads or writes the onion service key (tor's 64-byte
# expanded Ed25519 secret). On disk it is sealed to the node's identity
# (lm_seal, purpose "onion-key": HPKE to the identity's own DH key, the
# format of the engine's sealed state), in the identity's state directory,
# mode 0600, replaced atomically; the clear key is never written. In memory
# it lives in one bytearray, written by the library straight from the
# sealed file (IdentityKey.unseal), wiped by TorLink.close. The binding has
# no locked (mlock) buffers for such values: the bytearray is ordinary
# Python memory and may reach swap. The one other place it exists in clear
# is the ADD_ONION command line (tor.Control.add_onion builds it in a
# bytearray it wipes), which crosses the control connection to tor: hence
# a control port on another host is refused (check_control_addr).

ONION_KEY_FILE = "onion_key.sealed"
ONION_KEY_SIZE = 64
SEAL_PURPOSE = "onion-key"


def onion_key_path(home, identity) -> str:
    return os.path.join(home.state_dir(identity.name), ONION_KEY_FILE)


def store_onion_key(home, identity, key: bytearray) -> None:
    if not isinstance(key, bytearray) or len(key) != ONION_KEY_SIZE:
        raise T.InvalidArgumentError("the onion key is a %d-byte bytearray" % ONION_KEY_SIZE)
    write_atomic(onion_key_path(home, identity), identity.seal(SEAL_PURPOSE, key), 0o600)


def load_onion_key(home, identity):
    """The stored key (a bytearray the caller wipes), or None if there is none."""
    path = onion_key_path(home, identity)
    again = ("restore this node's own file from a backup, or move it away to get a new onion address "
             "(contacts then need your new card)")
    try:
        with open(path, "rb") as f:
            sealed = f.read(4096)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise TorLinkError("cannot read the onion service key %s: %s" % (path, e.strerror))
    try:
        key = identity.unseal(SEAL_PURPOSE, sealed)
    except errors.AuthenticationError:
        raise TorLinkError("the onion service key %s does not open with identity %s: it was sealed by another "
                           "identity, or is damaged; %s" % (path, identity.name, again))
    except errors.MalformedError:
        raise TorLinkError("the onion service key %s is not a sealed key file; %s" % (path, again))
    except errors.KeystoreError as e:
        raise TorLinkError("cannot open the onion service key %s with identity %s: %s" % (path, identity.name, e))
    if len(key) != ONION_KEY_SIZE:
        T.wipe(key)
        raise TorLinkError("the onion service key %s holds %d bytes, not %d; %s"
                           % (path, len(key), ONION_KEY_SIZE, again))
    return key


def check_control_addr(addr: str) -> str:
    """A control address we may attach to: a Unix socket or a loopback
    port. The onion key crosses that connection in ADD_ONION, and cookie
    authentication only works where tor's cookie file can be read."""
    fam, where = T._parse_addr(addr)
    if fam != socket.AF_UNIX:
        try:
            loop = ipaddress.ip_address(where[0]).is_loopback
        except ValueError:
            loop = where[0] == "localhost"
        if not loop:
            raise TorLinkError("tor's control port must be on this machine (127.0.0.1:PORT or a Unix socket), "
                               "got %s: the onion service key crosses that connection" % addr)
    return addr


# ---- the link ----------------------------------------------------------------

class TorLink:
    """OnionLink as a link of the node: send(packet, addr), receive(),
    fileno(), close(), with addresses as strings. polled: the node calls
    receive() every turn of its loop, which runs tor's supervision and the
    link's timers; failures() returns the addresses the link failed to
    reach since the last call, for Engine.unreachable."""

    profile = "stream"
    frame_size = FRAME
    polled = True

    def __init__(self, home, cfg: dict, identity, log=None):
        t = settings(cfg)
        self.log = log or (lambda msg: None)
        self.control_addr = t["control"] or None
        self.data_dir = None if self.control_addr else data_dir(home)
        self.fail = []
        self.waiting = {}  # address -> [when we first sent there with nothing heard back since, sends]
        self.tokens = {}  # "in-..." -> InboundAddr
        self.names = {}   # InboundAddr -> "in-..."
        self.run = os.urandom(3).hex()
        self.boot = (0, "", "", "")  # progress, tag, summary, warning
        self.boot_since = self.boot_check = 0.0
        self.boot_done = None  # seconds from start to 100 %
        self.stuck_said = False
        self.started = time.monotonic()
        self.error = None
        self.key = None
        self.link = None
        if self.control_addr:
            self.tor = T.TorProcess.attach(check_control_addr(self.control_addr))
        else:
            extra = read_torrc(t["torrc"]) if t["torrc"] else []
            self.tor = T.TorProcess(self.data_dir, extra, tor=t["binary"] or "tor")
        try:
            self._start(home, identity)
        except BaseException:
            self.close()
            raise

    def _start(self, home, identity):
        try:
            self.tor.start()
        except T.TorNotInstalledError as e:
            raise TorLinkError("%s; or run without Tor: `loramesh tor off`" % e)
        except T.ControlAuthError as e:
            raise TorLinkError("%s; loramesh authenticates with tor's cookie only (CookieAuthentication 1), as "
                               "a user who may read the cookie file (Debian: in group debian-tor)" % e)
        except T.ControlConnectError as e:
            raise TorLinkError("%s; or let loramesh run its own tor: `loramesh tor on` without --attach" % e
                               if self.control_addr else str(e))
        except T.TorError as e:
            raise TorLinkError("tor did not start: %s" % e)
        key = load_onion_key(home, identity)
        if key is None:
            key = T.generate_onion_key()
            try:
                store_onion_key(home, identity, key)
            except BaseException:
                T.wipe(key)
                raise
        self.key = key
        try:
            self.link = T.OnionLink(self.tor, self.key, max_frame=FRAME, connect_timeout=CONNECT_TIMEOUT,
                                    max_retry_delay=MAX_RETRY)
        except T.TorError as e:
            raise TorLinkError("cannot publish the onion service: %s" % e)
        self.boot_since = time.monotonic()

    # -- the link's shape

    @property
    def local(self) -> str:
        return self.link.address if self.link else ""

    @property
    def address(self):
        return self.link.address if self.link else None

    def fileno(self) -> int:
        return self.link.fileno()

    def send(self, packet, addr: str) -> None:
        """Queues a packet for an onion or an inbound connection. A failure
        to reach it is reported through failures(), once; packets refused
        while the link backs off from an onion are dropped (the engine
        retransmits)."""
        dest = addr
        if addr.startswith(INBOUND):
            dest = self.tokens.get(addr)
            if dest is None:
                self.fail.append((addr, "that connection is closed"))
                return
        try:
            self.link.send(packet, dest)
            self.waiting.setdefault(addr, [time.monotonic(), 0])[1] += 1
        except T.NotConnectedError:
            self._forget(dest)
            self.fail.append((addr, "that connection is closed"))
        except T.OnionUnreachableError as e:
            if not self.tor.alive():  # not a backoff: tor itself is gone
                self.fail.append((addr, "tor is not running (%s)" % (self.problem() or e)))
            # else reported when the connection failed; the engine tries again later
        except T.LinkBusyError as e:
            raise LinkError("tor: %s" % e)
        except T.InvalidArgumentError as e:
            raise LinkError("tor: cannot send to %s: %s" % (addr[:80], e))
        except T.TorError as e:
            raise LinkError("tor: %s" % e)

    def receive(self) -> list:
        out = []
        try:
            while True:
                got = self.link.recv(0)
                if got is None:
                    break
                packet, a = got
                name = self._name(a)
                self.waiting.pop(name, None)
                out.append((packet, name))
        except T.TorError as e:
            self.error = str(e)
            self._events()
            raise TorLinkError("tor: %s" % e)
        self._events()
        self._silent()
        self._bootstrap()
        return out

    def _silent(self):
        """Connections that swallow what we send: when a peer's tor dies (a
        crash, a power cut), our tor may keep the stream open and what is
        sent on it is lost. Every engine packet but a bare acknowledgement
        gets an answer within seconds, and what gets none is sent again: a
        connection silent for NO_ANSWER after we sent on it twice is closed
        (tor then builds a new route) and reported, and the engine sends
        again, elsewhere if it can."""
        now = time.monotonic()
        for addr, (since, sends) in list(self.waiting.items()):
            if sends < 2 or now - since < NO_ANSWER:
                continue
            del self.waiting[addr]
            dest = self.tokens.get(addr) if addr.startswith(INBOUND) else addr
            if dest is not None:
                self.link.disconnect(dest)
                if addr.startswith(INBOUND):
                    self._forget(dest)
            self.fail.append((addr, "no answer on the connection for %d s" % NO_ANSWER))

    def failures(self) -> list:
        out, self.fail = self.fail, []
        return out

    def _name(self, a) -> str:
        if not isinstance(a, T.InboundAddr):
            return a
        name = self.names.get(a)
        if name is None:
            name = "%s%s-%d" % (INBOUND, self.run, a.id)
            self.names[a], self.tokens[name] = name, a
        return name

    def _forget(self, a):
        name = self.names.pop(a, None)
        self.tokens.pop(name, None)
        return name

    def _events(self):
        for ev in self.link.events():
            if ev.kind == "unreachable":
                self.waiting.pop(ev.addr, None)
                self.fail.append((ev.addr, ev.reason))
            elif ev.kind == "connected" and ev.addr in self.waiting:
                self.waiting[ev.addr][0] = time.monotonic()  # silence counts from when it opened
            elif ev.kind in ("closed", "idle") and isinstance(ev.addr, T.InboundAddr):
                name = self._forget(ev.addr)
                if name:  # replies cannot go there any more
                    self.fail.append((name, "connection closed (%s)" % ev.reason))
            elif ev.kind == "closed" and ev.dropped:
                self.fail.append((ev.addr, "connection lost with %d packets unsent (%s)" % (ev.dropped, ev.reason)))
            elif ev.kind == "published":
                self.log("onion service %s published (tor %s)" % (ev.addr, self._who()))

    # -- tor's state

    def _who(self) -> str:
        if self.control_addr:
            return "at %s" % self.control_addr
        return "pid %s" % (self.tor.pid or "-")

    def _bootstrap(self):
        """Follows tor's bootstrap (every second until done, then every 30 s) and logs its milestones."""
        now = time.monotonic()
        if now < self.boot_check:
            return
        self.boot_check = now + (1.0 if self.boot[0] < 100 else 30.0)
        try:
            kv = T.parse_kv(self.tor._ctl().getinfo("status/bootstrap-phase")["status/bootstrap-phase"])
            progress = int(kv.get("PROGRESS", "0"))
        except (T.TorError, ValueError):
            return  # tor restarting: poll() reports it
        boot = (progress, kv.get("TAG", ""), kv.get("SUMMARY", ""), kv.get("WARNING", ""))
        if progress != self.boot[0]:
            self.boot_since, self.stuck_said = now, False
            if progress >= 100 and self.boot_done is None:
                self.boot_done = now - self.started
                self.log("tor bootstrapped in %.1f s; onion service %s" % (self.boot_done, self.address))
        self.boot = boot
        problem = self.problem()
        if problem and not self.stuck_said:
            self.stuck_said = True
            self.log(problem)

    def problem(self):
        """What is wrong with tor and what to do, or None."""
        if self.error:
            return self.error
        progress, tag, summary, warning = self.boot
        stalled = time.monotonic() - self.boot_since
        if progress < 100 and stalled >= STUCK_AFTER:
            where = " (tor's log: %s)" % os.path.join(self.data_dir, "tor.log") if self.data_dir else ""
            return ("tor bootstrap stuck at %d%% for %d s (%s%s): check that this machine reaches the internet "
                    "and that its clock is right; where Tor is blocked, put bridges in a torrc file and run "
                    "`loramesh tor on --torrc FILE`%s" % (progress, stalled, summary or tag,
                                                         "; tor says: " + warning if warning else "", where))
        if self.tor.last_error is not None and not self.tor.alive():
            return "tor is restarting after: %s" % self.tor.last_error
        return None

    def status(self) -> dict:
        progress, tag, summary, warning = self.boot
        st = {"mode": "attached" if self.control_addr else "own", "onion": self.address,
              "bootstrap": progress, "phase": summary or tag, "running": self.tor.alive()}
        if self.control_addr:
            st["control"] = self.control_addr
        else:
            st.update(pid=self.tor.pid, data_dir=self.data_dir)
        if self.boot_done is not None:
            st["bootstrapped_in"] = round(self.boot_done, 1)
        if warning:
            st["warning"] = warning
        problem = self.problem()
        if problem:
            st["problem"] = problem
        return st

    def close(self) -> None:
        """Withdraws the onion service, stops our tor (or detaches), wipes the key."""
        try:
            if self.link is not None:
                self.link.close()
        finally:
            self.link = None
            self.tor.stop()
            if self.key is not None:
                T.wipe(self.key)
                self.key = None
