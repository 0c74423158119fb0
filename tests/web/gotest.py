#!/usr/bin/python3
"""Runs a Go test binary built for js/wasm in headless Chromium: what
go_js_wasm_exec does with node, for tests that need a browser (IndexedDB,
WebAuthn). The page is served from 127.0.0.1 and opened as
http://localhost:PORT (WebAuthn refuses IP addresses as relying party
IDs), with a virtual authenticator that supports the PRF extension.

    tests/web/gotest.py build/webtest/webcrypto.wasm -test.v
"""
import functools
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(os.path.dirname(HERE)), "python")]
from cdp import Browser  # noqa: E402

RUNNER = """<!doctype html><meta charset="utf-8"><title>go test</title>
<script src="wasm_exec.js"></script>
<script>
window.__out = [];
const go = new Go();
go.argv = ["js"].concat(%s);
go.exit = (code) => { window.__exit = code; };
WebAssembly.instantiateStreaming(fetch("test.wasm"), go.importObject)
  .then(({instance}) => go.run(instance))
  .catch((e) => { console.log("runner: " + e); window.__exit = 3; });
</script>"""

AUTHENTICATOR = {"protocol": "ctap2", "ctap2Version": "ctap2_1", "transport": "usb", "hasResidentKey": True,
                 "hasUserVerification": True, "isUserVerified": True, "automaticPresenceSimulation": True,
                 "hasPrf": True}


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def serve(directory):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=directory))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def virtual_authenticator(page, **options):
    page.call("WebAuthn.enable", {"enableUI": False})
    return page.call("WebAuthn.addVirtualAuthenticator", {"options": dict(AUTHENTICATOR, **options)})["authenticatorId"]


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    wasm, args = argv[0], argv[1:]
    work = tempfile.mkdtemp(prefix="lm-gotest-")
    try:
        www = os.path.join(work, "www")
        os.mkdir(www)
        goroot = os.popen("go env GOROOT").read().strip()
        shutil.copy(os.path.join(goroot, "lib", "wasm", "wasm_exec.js"), www)
        shutil.copy(wasm, os.path.join(www, "test.wasm"))
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write(RUNNER % json.dumps(args))
        srv = serve(www)
        url = "http://localhost:%d/index.html" % srv.server_address[1]
        with Browser(os.path.join(work, "profile")) as b:
            page = b.open(url, before=virtual_authenticator)
            printed = 0
            end = time.monotonic() + 300
            code = None
            while code is None and time.monotonic() < end:
                b.pump(0.2)
                for line in page.console[printed:]:
                    print(line, flush=True)
                printed = len(page.console)
                code = page.eval("window.__exit === undefined ? null : window.__exit")
            b.pump(0.2)
            for line in page.console[printed:]:
                print(line, flush=True)
        srv.shutdown()
        if code is None:
            print("gotest: the test binary did not finish in 300 s", file=sys.stderr)
            return 1
        return code
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
