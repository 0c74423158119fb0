"""Two loramesh daemons, each running its own tor on the private network,
driven through the CLI as a user would: cards carrying onion addresses,
messages both ways with their delivery states, a daemon that restarts and
keeps its onion address while the other's queued messages wait and then
arrive, and a message to an onion nobody publishes, which stays queued and
then fails with tor's reason.

Runs only through run.py (a network namespace with nothing but lo)."""
import base64
import json
import os
import subprocess
import sys
import time

import pytest

import testnet
from loramesh.client import try_connect
from loramesh.config import Home
from loramesh.keys import ContactCard

TIMES = testnet.TIMES
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LIB = os.environ.get("LORAMESH_LIB") or os.path.join(ROOT, "build", "libloramesh.so")
# An onion address tor made (the Tor Project's): valid, and never published on this network.
NOWHERE = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"

if not os.path.isfile(LIB):
    raise pytest.UsageError("%s is missing: run `make lib` first (make tortest does)" % LIB)


def env():
    e = dict(os.environ, LORAMESH_LIB=LIB)
    e["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("XDG_RUNTIME_DIR", None)  # each node's socket in its own directory
    return e


class Node:
    def __init__(self, root, name):
        self.name = name
        self.home = os.path.join(root, name)
        self.pw = os.path.join(root, name + ".pw")
        with open(self.pw, "w") as f:
            f.write("correct horse %s\n" % name)
        self.events = []
        self.client = None

    def cli(self, *args, check=True, timeout=120):
        p = subprocess.run([sys.executable, "-m", "loramesh", "--home", self.home, "--passphrase-file", self.pw]
                           + list(args), env=env(), capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("%s: loramesh %s: exit %d\n%s%s" % (self.name, " ".join(args), p.returncode,
                                                                    p.stdout, p.stderr))
        return p

    def json(self, *args):
        return json.loads(self.cli("--json", *args).stdout)

    def watch(self):
        """Subscribes to the daemon's events (the history too: what happened before we looked)."""
        self.client = try_connect(Home(self.home))
        self.client.request("subscribe", history=1000)

    def pump(self, timeout=0.2):
        try:
            self.events += self.client.events(timeout)
        except Exception:  # the daemon stopped: the test reconnects after a restart
            self.client = None

    def wait(self, what, pred, timeout, others=()):
        deadline = time.monotonic() + timeout
        t0 = time.monotonic()
        while True:
            found = [e for e in self.events if pred(e)]
            if found:
                return found[0], time.monotonic() - t0
            if time.monotonic() > deadline:
                log = open(os.path.join(self.home, "daemon.log")).read()[-3000:]
                raise AssertionError("%s: %s not within %g s\nevents: %s\ndaemon.log:\n%s"
                                     % (self.name, what, timeout, self.events[-30:], log))
            for n in (self,) + tuple(others):
                if n.client:
                    n.pump(0.1)

    def states(self, mid):
        return [e["state"] for e in self.events if e.get("event") == "delivery" and e.get("id") == mid]

    def status(self):
        return try_connect(Home(self.home)).request("status")

    def wait_bootstrap(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            t = self.status()["tor"]
            if t["bootstrap"] >= 100:
                return t
            if time.monotonic() > deadline:
                raise AssertionError("%s: tor at %d%% after %g s: %s" % (self.name, t["bootstrap"], timeout, t))
            time.sleep(0.25)


def send(node, to, text):
    r = node.json("send", to, text, "--no-wait")
    assert r["state"] == "queued"
    return r["id"]


def delivered(node, mid, timeout, other):
    node.wait("message %d delivered" % mid, lambda e: e.get("event") == "delivery" and e.get("id") == mid
              and e.get("state") in ("delivered", "failed"), timeout, (other,))
    assert node.states(mid)[-1] == "delivered", (mid, node.states(mid), node.events[-20:])


def received(node, text, timeout, other):
    return node.wait("message %r" % text, lambda e: e.get("event") == "message" and e.get("text") == text,
                     timeout, (other,))[0]


@pytest.fixture(scope="module")
def nodes(net, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("daemons"))
    torrc = os.path.join(root, "torrc")
    with open(torrc, "w") as f:
        f.write("# the private test network\n" + "\n".join(net.client_config()) + "\n")
    alice, bob = Node(root, "alice"), Node(root, "bob")
    for n in (alice, bob):
        n.cli("init", "--name", n.name.capitalize(), "--argon2", "1,64,1")
        n.cli("link", "remove", "udp")  # Tor only: no port to share with anything
        n.cli("tor", "on", "--torrc", torrc, *(["--deadline", "60"] if n is bob else []))
    try:
        t = time.monotonic()
        for n in (alice, bob):
            n.cli("start")
        for n in (alice, bob):
            n.tor = n.wait_bootstrap(90)
        TIMES["daemons: started, both tors bootstrapped"] = time.monotonic() - t
        for n in (alice, bob):
            n.watch()
        yield alice, bob
    finally:
        for n in (alice, bob):
            n.cli("stop", check=False)


def test_cards_carry_onion_addresses(nodes, tmp_path):
    alice, bob = nodes
    for me, other in ((alice, bob), (bob, alice)):
        st = me.status()
        onion = st["tor"]["onion"]
        assert onion.endswith(".onion") and st["links"]["tor"] == onion
        shown = me.cli("status").stdout
        assert "bootstrapped 100%" in shown and "onion: %s" % onion in shown, shown
        card = str(tmp_path / (me.name + ".card"))
        me.cli("card", "-o", card)
        with open(card, "rb") as f, ContactCard(f.read()) as c:
            assert c.onion == onion and c.fingerprint == st["fingerprint"]
        other.cli("contact", "import", card, "--as", me.name)
        shown = other.cli("contact", "show", me.name).stdout
        assert "onion       %s" % onion in shown and "tor:%s" % onion in shown, shown
        assert other.json("contact", "show", me.name)["onion"] == onion
    plain = bob.cli("card").stdout.strip()  # base64, the same card
    with ContactCard(base64.b64decode(plain)) as c:
        assert c.onion == bob.status()["tor"]["onion"]


def test_messages_both_ways(nodes):
    alice, bob = nodes
    t = time.monotonic()
    mid = send(alice, "bob", "hello bob, over tor")
    delivered(alice, mid, 90, bob)
    TIMES["daemons: first message alice -> bob delivered"] = time.monotonic() - t
    assert alice.states(mid) == ["queued", "sent", "delivered"]
    assert received(bob, "hello bob, over tor", 10, alice)["contact"] == "alice"
    t = time.monotonic()
    mid = send(bob, "alice", "hi alice ✓")
    delivered(bob, mid, 60, alice)
    TIMES["daemons: reply bob -> alice delivered"] = time.monotonic() - t
    assert bob.states(mid) == ["queued", "sent", "delivered"]
    received(alice, "hi alice ✓", 10, bob)
    shown = alice.json("contact", "show", "bob")
    assert shown["session"] and shown["addr"].startswith("tor:"), shown


def test_restart_keeps_onion_and_queued_messages_arrive(nodes, tmp_path):
    alice, bob = nodes
    onion = bob.status()["tor"]["onion"]
    keys = [os.path.join(d, f) for d, _, fs in os.walk(bob.home) for f in fs if f == "onion_key.sealed"]
    assert len(keys) == 1, keys
    with open(keys[0], "rb") as f:
        sealed = f.read()
    # docs/STORAGE.md: magic 4, kem_id 2, enc 32 (X25519), the 64-byte key, tag 16.
    assert sealed[:4] == b"LMS1" and len(sealed) == 4 + 2 + 32 + 64 + 16, "the onion key is stored sealed (X25519 HPKE)"
    bob.cli("stop")
    bob.client = None
    mids = [send(alice, "bob", "while you were away %d" % i) for i in (1, 2)]
    t_sent = time.monotonic()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alice.pump(0.2)
    for mid in mids:
        assert "delivered" not in alice.states(mid) and "failed" not in alice.states(mid)
    assert alice.json("contact", "show", "bob")["queued"] == 2
    t = time.monotonic()
    bob.cli("start")
    bob.wait_bootstrap(60)
    assert bob.status()["tor"]["onion"] == onion, "the onion address must survive a restart"
    with open(keys[0], "rb") as f:
        assert f.read() == sealed, "the key is read back, not made anew"
    TIMES["daemons: bob restarted and bootstrapped"] = time.monotonic() - t
    bob.watch()
    # While alice's messages find their way: bob writes to an onion nobody publishes.
    ghost = str(tmp_path / "ghost.card")
    import loramesh
    with loramesh.IdentityKey.generate() as idk:
        with open(ghost, "wb") as f:
            f.write(idk.card("Ghost", onion=NOWHERE))
    bob.cli("contact", "import", ghost, "--as", "ghost")
    ghost_mid = send(bob, "ghost", "anyone there?")
    bob.ghost = (ghost_mid, time.monotonic())
    for mid in mids:
        delivered(alice, mid, 120, bob)
    TIMES["daemons: bob back -> alice's queued messages delivered"] = time.monotonic() - t
    TIMES["daemons: queued while bob was away -> delivered"] = time.monotonic() - t_sent
    for i in (1, 2):
        received(bob, "while you were away %d" % i, 10, alice)
    mid = send(bob, "alice", "I am back")
    delivered(bob, mid, 60, alice)


def test_unreachable_onion_stays_queued_then_fails(nodes):
    alice, bob = nodes
    mid, t0 = bob.ghost
    bob.wait("tor reports the ghost unreachable", lambda e: e.get("event") == "link" and NOWHERE in e.get("detail", "")
             and "unreachable" in e.get("detail", ""), 60)
    st = bob.states(mid)
    if "failed" not in st:
        assert st == ["queued"], st  # no session: it never left the queue
        assert bob.json("contact", "show", "ghost")["queued"] == 1
    ev, _ = bob.wait("the ghost message failing", lambda e: e.get("event") == "delivery" and e.get("id") == mid
                     and e.get("state") == "failed", 90)
    took = time.monotonic() - t0
    TIMES["daemons: message to an unpublished onion failed"] = took
    assert bob.states(mid) == ["queued", "failed"]
    assert "no session with ghost within 1m0s" in ev["reason"], ev
    assert "tor:%s unreachable" % NOWHERE in ev["reason"] and "0xF0" in ev["reason"], ev
    assert 55 <= took <= 90, took
    out = bob.cli("contact", "show", "ghost").stdout
    assert "queued" not in out or "queued      0" in out
