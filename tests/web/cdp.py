"""A small Chrome DevTools Protocol client over a WebSocket, standard
library only, for driving the system's headless Chromium in tests and
benchmarks. The WebSocket framing is loramesh.websocket's, as a client
(masked frames): Chromium's DevTools server is its independent peer here,
as browsers are for the daemon's bridge.

    with Browser(profile_dir) as b:
        page = b.open("http://127.0.0.1:8000/")
        page.wait("window.ready === true")
        print(page.eval("document.title"))
"""
from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse

from loramesh.websocket import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, FrameDecoder, accept_key, \
    encode_frame


class CDPError(Exception):
    pass


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    raise CDPError("no Chromium on PATH: `make deps` installs Debian's chromium")


class _WS:
    """A blocking WebSocket client connection."""

    def __init__(self, url: str, timeout: float = 10.0):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           % (u.path or "/", u.hostname, u.port, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CDPError("DevTools closed the connection during the handshake")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        if " 101 " not in lines[0] + " ":
            raise CDPError("DevTools refused the WebSocket: %s" % lines[0])
        hdr = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        if hdr.get("sec-websocket-accept") != accept_key(key):
            raise CDPError("bad Sec-WebSocket-Accept from DevTools")
        self.dec = FrameDecoder(masked=False, max_binary=64 << 20, max_text=64 << 20)
        self.pending = self.dec.feed(rest)
        self.lock = threading.Lock()

    def send(self, text: str) -> None:
        with self.lock:
            self.sock.sendall(encode_frame(OP_TEXT, text.encode("utf-8"), mask=True))

    def recv(self, timeout: float):
        """The next text message, or None at timeout."""
        end = time.monotonic() + timeout
        while True:
            while self.pending:
                op, payload = self.pending.pop(0)
                if op in (OP_TEXT, OP_BINARY):
                    return payload.decode("utf-8")
                if op == OP_PING:
                    with self.lock:
                        self.sock.sendall(encode_frame(OP_PONG, payload, mask=True))
                if op == OP_CLOSE:
                    raise CDPError("DevTools closed the connection")
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            data = self.sock.recv(1 << 20)
            if not data:
                raise CDPError("DevTools connection lost")
            self.pending += self.dec.feed(data)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Page:
    """One tab, attached with a flat session."""

    def __init__(self, browser, target: str, session: str):
        self.b, self.target, self.session = browser, target, session
        self.console = []

    def call(self, method: str, params: dict = None, timeout: float = 60.0) -> dict:
        return self.b.call(method, params, session=self.session, timeout=timeout)

    def eval(self, expr: str, timeout: float = 60.0):
        """Evaluates expr (awaiting a promise) and returns its JSON value."""
        r = self.call("Runtime.evaluate", {"expression": expr, "awaitPromise": True, "returnByValue": True},
                      timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            msg = d.get("exception", {}).get("description") or d.get("text")
            raise CDPError("page threw: %s" % msg)
        return r["result"].get("value")

    def wait(self, expr: str, timeout: float = 60.0):
        """Polls expr until it is truthy; returns its value."""
        end = time.monotonic() + timeout
        while True:
            v = self.eval(expr)
            if v:
                return v
            if time.monotonic() > end:
                raise CDPError("timed out waiting for %s; console:\n%s" % (expr, "\n".join(self.console[-30:])))
            time.sleep(0.1)

    def goto(self, url: str, timeout: float = 60.0) -> None:
        self.call("Page.navigate", {"url": url})
        self.wait("document.readyState === 'complete' && location.href === %s" % json.dumps(url), timeout)

    def reload(self, timeout: float = 60.0) -> None:
        self.eval("window.__reloading = 1")
        self.call("Page.reload", {})
        self.wait("window.__reloading === undefined && document.readyState === 'complete'", timeout)


class Browser:
    """Headless Chromium with its own profile directory (the same directory
    again is the same browser after a restart: IndexedDB and all)."""

    def __init__(self, profile: str, extra_args=()):
        self.profile = profile
        self.args = list(extra_args)
        self.proc = None
        self.ws = None
        self.next_id = 0
        self.events = []
        self.pages = {}

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self) -> None:
        args = [chromium(), "--headless=new", "--no-sandbox", "--remote-debugging-port=0",
                "--user-data-dir=" + self.profile, "--no-first-run", "--no-default-browser-check",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--password-store=basic", "--use-mock-keychain"] + self.args + ["about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        url, seen = None, []
        end = time.monotonic() + 30
        while url is None and time.monotonic() < end:
            r, _, _ = select.select([self.proc.stderr], [], [], 1.0)
            if not r:
                continue
            line = self.proc.stderr.readline().decode("utf-8", "replace")
            if not line:
                break
            seen.append(line.rstrip())
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                url = m.group(1)
        if url is None:
            self.kill()
            raise CDPError("Chromium did not start:\n" + "\n".join(seen[-20:]))
        # Keep draining stderr so Chromium never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        self.ws = _WS(url)

    def _drain(self) -> None:
        try:
            for _ in iter(self.proc.stderr.readline, b""):
                pass
        except (OSError, ValueError):
            pass

    def call(self, method: str, params: dict = None, session: str = None, timeout: float = 60.0) -> dict:
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise CDPError("%s: no answer in %.0f s" % (method, timeout))
            raw = self.ws.recv(left)
            if raw is None:
                continue
            m = json.loads(raw)
            if m.get("id") == mid:
                if "error" in m:
                    raise CDPError("%s: %s" % (method, m["error"].get("message")))
                return m.get("result", {})
            self._event(m)

    def _event(self, m: dict) -> None:
        if m.get("method") == "Runtime.consoleAPICalled":
            page = self.pages.get(m.get("sessionId"))
            if page is not None:
                args = m["params"].get("args", [])
                page.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
        elif m.get("method") == "Runtime.exceptionThrown":
            page = self.pages.get(m.get("sessionId"))
            if page is not None:
                d = m["params"]["exceptionDetails"]
                page.console.append("exception: %s" % (d.get("exception", {}).get("description") or d.get("text")))
        else:
            self.events.append(m)
            del self.events[:-1000]

    def pump(self, seconds: float) -> None:
        """Reads events for a while (console messages land in page.console)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            raw = self.ws.recv(end - time.monotonic())
            if raw is not None:
                self._event(json.loads(raw))

    def open(self, url: str = "about:blank", before=None) -> Page:
        """A new tab at url. before(page) runs once the tab is attached and
        before it navigates (virtual authenticators, for one)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session)
        self.pages[session] = page
        page.call("Runtime.enable")
        page.call("Page.enable")
        if before is not None:
            before(page)
        if url != "about:blank":
            page.goto(url)
        return page

    def close(self) -> None:
        """Closes Chromium and waits for it to exit (a profile is only whole
        once the process has written it)."""
        if self.proc is None:
            return
        try:
            if self.ws is not None:
                self.ws.send(json.dumps({"id": 0, "method": "Browser.close"}))
        except OSError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        if self.ws is not None:
            self.ws.close()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
