"""Fixtures for the browser tests: the page served from 127.0.0.1, a CLI
daemon with a WebSocket bridge, headless Chromium (tests/web/cdp.py)."""
import base64
import functools
import http.server
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PYDIR = os.path.join(ROOT, "python")
WEB = os.path.join(ROOT, "build", "web")
LIB = os.environ.get("LORAMESH_LIB") or os.path.join(ROOT, "build", "libloramesh.so")
sys.path[:0] = [HERE, PYDIR]

if not os.path.isfile(os.path.join(WEB, "loramesh.wasm")):
    raise pytest.UsageError("%s/loramesh.wasm is missing: run `make wasm` first" % WEB)
if not os.path.isfile(LIB):
    raise pytest.UsageError("%s is missing: run `make lib` first" % LIB)


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@pytest.fixture(scope="session")
def site():
    """build/web served on 127.0.0.1 only; pages are opened as
    http://localhost:PORT/ because WebAuthn refuses IP addresses as relying
    party IDs (localhost resolves to the loopback address)."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=WEB))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield "http://localhost:%d/" % srv.server_address[1]
    srv.shutdown()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Daemon:
    """A CLI node (memory keystore) whose daemon has a WebSocket bridge."""

    def __init__(self, home, secret):
        self.home, self.secret = home, secret
        self.env = dict(os.environ, LORAMESH_LIB=LIB, PYTHONPATH=PYDIR + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def run(self, *args, input=None, check=True, timeout=90):
        p = subprocess.run([sys.executable, "-m", "loramesh", "--home", str(self.home)] + list(args)
                           + ["--passphrase-file", str(self.secret)], env=self.env, input=input,
                           capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("loramesh %s: rc %d\n%s%s" % (" ".join(args), p.returncode, p.stdout.decode(),
                                                              p.stderr.decode()))
        return p

    def json(self, *args, **kw):
        return json.loads(self.run("--json", *args, **kw).stdout)

    def card(self):
        return base64.b64decode(self.run("card").stdout.strip())

    def control(self):
        from loramesh.client import connect
        from loramesh.config import Home
        return connect(Home(str(self.home)), "file:" + str(self.secret))


@pytest.fixture
def daemon(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("pass phrase for the browser test\n")
    secret.chmod(0o600)
    d = Daemon(tmp_path / "daemon", secret)
    d.ws_port = free_port()
    d.run("init", "--name", "daemon", "--udp", "127.0.0.1:%d" % free_port(), "--argon2", "1,64,1")
    d.run("link", "websocket", "127.0.0.1:%d" % d.ws_port)
    d.run("start")
    d.ws_url = "ws://127.0.0.1:%d/" % d.ws_port
    d.fingerprint = d.json("id")["fingerprint"]
    yield d
    d.run("stop", check=False)
