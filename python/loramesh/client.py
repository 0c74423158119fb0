"""Talking to the node's daemon over its control socket, and starting it
when a command needs it and it is not running."""
from __future__ import annotations

import fcntl
import json
import os
import select
import socket
import subprocess
import sys
import time

from . import identity as ident_mod
from . import secret_input


class NotRunning(Exception):
    """No daemon answers for this node."""


class DaemonFailed(Exception):
    """The daemon refused a request or could not start. code is the
    error's class name (PinError, NotFoundError, ..., "usage")."""

    def __init__(self, msg, code=""):
        super().__init__(msg)
        self.code = code


class Client:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self.pending = []  # events read while waiting for a reply
        self.next_id = 1

    def fileno(self) -> int:
        return self.sock.fileno()

    def _send(self, obj) -> None:
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def _lines(self, timeout):
        """Objects that arrive within timeout seconds (None: block)."""
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return []
        data = self.sock.recv(65536)
        if not data:
            raise DaemonFailed("the daemon closed the connection (see `loramesh status`)", "gone")
        self.buf += data
        out = []
        while b"\n" in self.buf:
            line, _, rest = bytes(self.buf).partition(b"\n")
            self.buf = bytearray(rest)
            out.append(json.loads(line))
        return out

    def request(self, op: str, **fields) -> dict:
        rid = self.next_id
        self.next_id += 1
        self._send(dict(fields, op=op, id=rid))
        while True:
            for obj in self._lines(None):
                if obj.get("reply") == rid:
                    if not obj.get("ok"):
                        raise DaemonFailed(obj.get("error", "failed"), obj.get("code", ""))
                    return obj
                self.pending.append(obj)

    def events(self, timeout: float) -> list:
        """Events that arrived (or arrive within timeout)."""
        if self.pending:
            out, self.pending = self.pending, []
            return out
        return [o for o in self._lines(timeout) if "event" in o]

    def close(self) -> None:
        self.sock.close()


def try_connect(home) -> Client:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(home.socket_path())
    except (FileNotFoundError, ConnectionRefusedError):
        s.close()
        raise NotRunning("no daemon runs for %s (start one with `loramesh start`)" % home.path)
    return Client(s)


def connect(home, secret_source=None, start: bool = True) -> Client:
    """A connection to the node's daemon, starting it first when start is
    true and none runs (asking for the node's secret, which goes to the
    daemon through a pipe and nowhere else)."""
    try:
        return try_connect(home)
    except NotRunning:
        if not start:
            raise
    os.makedirs(home.path, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(home.path, ".start.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # concurrent commands start one daemon
        try:
            return try_connect(home)
        except NotRunning:
            pass
        start_daemon(home, secret_source)
        return try_connect(home)
    finally:
        os.close(fd)


def read_secret(what: str, source=None, confirm: bool = False, allow_empty: bool = False):
    """The secret from source ("file:PATH", "env:NAME", "fd:N") or the
    terminal, as a wipeable Secret."""
    if source:
        kind, _, v = source.partition(":")
        s = {"file": secret_input.from_file, "env": secret_input.from_env,
             "fd": lambda x: secret_input.from_fd(int(x))}[kind](v)
    elif secret_input.has_terminal():
        s = secret_input.prompt(what)
        if confirm:
            with secret_input.prompt("repeat the " + what) as again:
                if again != s:
                    s.wipe()
                    raise secret_input.SecretError("the two entries differ")
    else:
        raise secret_input.SecretError("no terminal to ask for the %s: give it with --%s-file FILE"
                                       % (what, {"passphrase": "passphrase", "token PIN": "pin"}.get(what, "auth")))
    if not s and not allow_empty:
        raise secret_input.SecretError("empty %s" % what)
    return s


def start_daemon(home, secret_source=None, timeout: float = 120) -> None:
    """Starts the daemon in the background and waits until it answers."""
    cfg = home.load_config()
    need = ident_mod.secret_needed(cfg["identity"])
    secret = None
    if need:
        secret = read_secret(need[0], secret_source, allow_empty=need[1])
    rs, ws = os.pipe()
    rst, wst = os.pipe()
    cmd = [sys.executable, "-m", "loramesh", "--home", home.path, "daemon", "--status-fd", str(wst)]
    if secret is not None:
        cmd += ["--secret-fd", str(rs)]
    log = open(os.path.join(home.path, "daemon.log"), "ab")
    try:
        subprocess.Popen(cmd, pass_fds=(rs, wst), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True, close_fds=True)
    finally:
        log.close()
        os.close(rs)
        os.close(wst)
    try:
        if secret is not None:
            secret.append(0x0A)
            os.write(ws, secret)  # a pipe buffer holds it: the daemon reads it at start
    finally:
        os.close(ws)
        if secret is not None:
            secret.wipe()
    status = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\n" not in status:
            left = deadline - time.monotonic()
            r, _, _ = select.select([rst], [], [], max(left, 0))
            if not r:
                raise DaemonFailed("the daemon did not start within %ds (see %s)"
                                   % (timeout, os.path.join(home.path, "daemon.log")), "timeout")
            chunk = os.read(rst, 4096)
            if not chunk:
                break
            status += chunk
    finally:
        os.close(rst)
    line = status.decode("utf-8", "replace").strip()
    if line == "READY":
        return
    if line.startswith("ERROR "):
        _, code, msg = (line.split(" ", 2) + ["", ""])[:3]
        raise DaemonFailed(msg, code)
    raise DaemonFailed("the daemon exited at start (see %s)" % os.path.join(home.path, "daemon.log"), "exit")
