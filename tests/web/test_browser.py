"""A browser node end to end, in headless Chromium driven over the DevTools
protocol: the example page (examples/web) makes an identity that survives a
reload and a browser restart, exchanges cards with a CLI daemon over its
WebSocket bridge, and messages flow both ways with their delivery states;
and an identity wrapped by a security key (Chromium's virtual
authenticator, with the PRF extension)."""
import glob
import json
import os
import time

import pytest

from cdp import Browser, CDPError
from gotest import virtual_authenticator

ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")
X25519_PKCS8 = bytes.fromhex("302e020100300506032b656e04220420")


def open_page(b, site, before=None):
    page = b.open(site + "index.html", before=before)
    page.wait("window.app && app.lm !== null && app.features !== undefined")
    return page


def reload(page):
    page.reload()
    page.wait("window.app && app.lm !== null && app.features !== undefined")


def connect(page, daemon):
    """Connects to the daemon's bridge; returns the card it offers."""
    page.eval("app.connect(%s)" % json.dumps(daemon.ws_url))
    return page.wait("app.link === 'connected' && app.hello && "
                     "{fingerprint: app.hello.fingerprint, card: btoa(String.fromCharCode(...app.hello.card))}")


def befriend(page, daemon, me, ctl):
    """Cards over the bridge both ways; both sides verify the fingerprint
    they were told out of band (here: read from the other side)."""
    hello = connect(page, daemon)
    assert hello["fingerprint"] == daemon.fingerprint
    r = page.eval("app.importContact('daemon', app.hello.card)")
    assert r["result"] == "new" and r["fingerprint"] == daemon.fingerprint and not r["verified"]
    assert page.eval("app.verify('daemon', %s)" % json.dumps(daemon.fingerprint.lower().replace("-", " ")))
    page.eval("app.offer()")
    offer = None
    end = time.monotonic() + 20
    while offer is None and time.monotonic() < end:
        offer = next((e for e in ctl.events(0.2) if e.get("event") == "card-offer"), None)
    assert offer is not None, "no card offer reached the daemon"
    assert offer["fingerprint"] == me["fingerprint"] and offer["card"] == me["card"] and offer["link"] == "ws"
    # The CLI user's way: the offer's card, piped into `contact import`.
    daemon.run("contact", "import", "-", "--as", "web", "--addr", "ws", input=offer["card"].encode())
    daemon.run("contact", "verify", "web", me["fingerprint"])


def received(daemon):
    out = daemon.run("--json", "listen", "--history", "50", "--duration", "0.3").stdout.decode()
    return [json.loads(l)["text"] for l in out.splitlines() if json.loads(l).get("event") == "message"]


def exchange(page, daemon, tag):
    """A message each way, each acknowledged by its recipient."""
    text = "from the browser, " + tag
    mid = page.eval("app.send('daemon', %s)" % json.dumps(text))
    page.wait("(app.states[%d] || []).includes('delivered')" % mid, timeout=60)
    states = page.eval("app.states[%d]" % mid)
    assert states[0] == "queued" and states[-1] == "delivered" and "sent" in states, states
    assert text in received(daemon)
    back = "from the daemon, " + tag
    r = daemon.json("send", "web", back, "--timeout", "60")  # returns once the browser acknowledged it
    assert r["state"] == "delivered"
    page.wait("app.messages.some(m => m.text === %s && m.contact === 'daemon' && m.verified)" % json.dumps(back))


def profile_has(profile, pattern):
    """Whether any IndexedDB file of the profile holds pattern."""
    for f in glob.glob(os.path.join(profile, "Default", "IndexedDB", "**", "*"), recursive=True):
        if os.path.isfile(f):
            with open(f, "rb") as fh:
                if pattern in fh.read():
                    return True
    return False


def test_browser_node_talks_to_a_daemon(site, daemon, tmp_path):
    prof = str(tmp_path / "profile")
    ctl = daemon.control()
    ctl.request("subscribe")
    with Browser(prof) as b:
        page = open_page(b, site)
        f = page.eval("app.features")
        # Custody is reported as it is, never assumed to be the native one.
        assert (f["custody"], f["lockedMemory"], f["erasure"], f["memoryReadable"]) == ("unprotected", False, False, True)
        me = page.eval("app.start({name: 'web', displayName: 'Web page'})")
        assert me["protection"] == "none" and me["signing"] == "Ed25519"
        reload(page)
        assert page.eval("app.start({name: 'web'})") == me, "the identity changed across a reload"

        # A second tab cannot open the identity the first holds.
        other = open_page(b, site)
        err = other.eval("app.start({name: 'web'}).then(() => 'opened', (e) => e.message)")
        assert "another tab" in err, err

        befriend(page, daemon, me, ctl)
        exchange(page, daemon, "first page")

        # Reload: the page's sessions are gone, its contacts are not; the
        # daemon's next packet reaches the new page, which shakes hands anew.
        reload(page)
        assert page.eval("app.start({name: 'web'})") == me
        connect(page, daemon)
        exchange(page, daemon, "after a reload")

    # Restart: the same profile is the same browser.
    with Browser(prof) as b:
        page = open_page(b, site)
        assert page.eval("app.start({name: 'web'})") == me, "the identity changed across a browser restart"
        cs = page.eval("app.refresh()")
        assert [(c["contact"], c["fingerprint"], c["verified"]) for c in cs] == [("daemon", daemon.fingerprint, True)]
        connect(page, daemon)
        exchange(page, daemon, "after a restart")
        assert page.eval("app.events.filter(e => e.kind === 'dropped').length") == 0
    # What README.md says of "non-extractable" keys: Chromium keeps them as
    # plain PKCS#8 in the profile.
    assert profile_has(prof, ED25519_PKCS8) and profile_has(prof, X25519_PKCS8)


def test_identity_wrapped_by_a_security_key(site, daemon, tmp_path):
    prof = str(tmp_path / "profile")
    ctl = daemon.control()
    ctl.request("subscribe")
    auth = []
    with Browser(prof) as b:
        page = open_page(b, site, before=lambda p: auth.append(virtual_authenticator(p)))
        me = page.eval("app.start({name: 'sk', displayName: 'Security key', protect: 'prf'})")
        assert me["protection"] == "prf"
        creds = page.call("WebAuthn.getCredentials", {"authenticatorId": auth[0]})["credentials"]
        assert len(creds) == 1
        # IndexedDB holds the record only: no CryptoKey at all.
        stored = page.eval("""new Promise((ok, bad) => { const r = indexedDB.open('loramesh-keys');
            r.onsuccess = () => { const g = r.result.transaction('identities').objectStore('identities').get('sk');
              g.onsuccess = () => ok(Object.keys(g.result).sort()); g.onerror = bad; }; r.onerror = bad; })""")
        assert stored == ["record"]
        reload(page)
        assert page.eval("app.start({name: 'sk'})") == me, "the key did not unlock the same identity"
        used = page.call("WebAuthn.getCredentials", {"authenticatorId": auth[0]})["credentials"][0]["signCount"]
        assert used > creds[0]["signCount"]  # an assertion (the PRF) was asked for

        befriend(page, daemon, me, ctl)
        exchange(page, daemon, "wrapped keys")

        # Another security key, without the credential: refused at once.
        page.call("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": auth[0]})
        fresh = virtual_authenticator(page)
        reload(page)
        err = page.eval("app.start({name: 'sk'}).then(() => 'opened', (e) => e.message)")
        assert "security key was not used" in err, err
        # The credential moved to another authenticator without its PRF
        # secret (all that CDP can export): refused, saying why.
        page.call("WebAuthn.addCredential", {"authenticatorId": fresh, "credential": creds[0]})
        err = page.eval("app.start({name: 'sk'}).then(() => 'opened', (e) => e.message)")
        assert "PRF" in err, err
    assert not profile_has(prof, ED25519_PKCS8) and not profile_has(prof, X25519_PKCS8)
