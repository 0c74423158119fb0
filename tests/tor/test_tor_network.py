"""End to end on a private Tor network: TorProcess, ADD_ONION with our own
keys, two OnionLinks exchanging packets both ways, a tor crash and restart
with the same onion address, a power cut, an onion that was never published.

Runs only through run.py (a network namespace with nothing but lo)."""
import os
import random
import signal
import time

import pytest

import testnet
from loramesh import InvalidArgumentError
from loramesh.tor import (
    InboundAddr, OnionLink, OnionUnreachableError, TorProcess, generate_onion_key,
    onion_address_from_public_key, parse_onion_address, wipe,
)

TIMES = testnet.TIMES
MAX_FRAME = 4096

# ---- an independent Ed25519 public key computation (slow, test-only) ----
P = 2 ** 255 - 19
D = -121665 * pow(121666, P - 2, P) % P
BASE = (15112221349535400772501151409588531511454012693041857206046113283949847762202,
        46316835694926478169428394003475163141307993866256225615783033603165251855960)


def _add(p, q):
    (x1, y1), (x2, y2) = p, q
    t = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + y1 * x2) * pow(1 + t, P - 2, P) % P, (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P)


def public_key(expanded: bytearray) -> bytes:
    """A = a*B for the clamped scalar a in the first half of tor's expanded secret."""
    k, r, p = int.from_bytes(bytes(expanded[:32]), "little"), (0, 1), BASE
    while k:
        if k & 1:
            r = _add(r, p)
        p, k = _add(p, p), k >> 1
    return (r[1] | (r[0] & 1) << 255).to_bytes(32, "little")


# ---- fixtures -----------------------------------------------------------

def test_onion_address_matches_tor(tmp_path):
    """Our v3 address computation against tor's ServiceID, several keys; no network needed."""
    empty = tmp_path / "empty"
    empty.write_text("")
    tor = TorProcess(str(tmp_path / "tor"), ["DisableNetwork 1", "GeoIPFile %s" % empty, "GeoIPv6File %s" % empty])
    t = time.monotonic()
    tor.start()
    TIMES["tor start to authenticated control"] = time.monotonic() - t
    try:
        for _ in range(5):
            key = generate_onion_key()
            before = bytes(key)
            sid = tor.control.add_onion(key, [(80, "127.0.0.1:9")])
            assert key == before, "add_onion must leave the caller's key intact"
            address = onion_address_from_public_key(public_key(key))
            assert address == sid + ".onion"
            assert parse_onion_address(address) == public_key(key)
            tor.control.del_onion(sid)
    finally:
        tor.stop()
    assert tor.proc is None


@pytest.fixture(scope="module")
def tors(net, tmp_path_factory):
    root = tmp_path_factory.mktemp("clients")
    ts = [TorProcess(str(root / name), net.client_config(), restart_delay=0.5) for name in ("alice", "bob")]
    try:
        t = time.monotonic()
        for tp in ts:
            tp.start()
        for tp in ts:
            tp.wait_bootstrap(timeout=60, stall=45)
        TIMES["two clients bootstrapped"] = time.monotonic() - t
        yield ts
    finally:
        for tp in ts:
            tp.stop()


class Peer:
    """A link plus what it received; echo=True answers inbound packets on their connection, reversed."""

    def __init__(self, link, echo=True):
        self.link, self.echo, self.got, self.events = link, echo, [], []

    def pump(self):
        while True:
            r = self.link.recv(0.02)
            if r is None:
                break
            self.got.append(r)
            if self.echo and isinstance(r[1], InboundAddr):
                self.link.send(r[0][::-1], r[1])
        self.events += self.link.events()


def pump_until(peers, cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("%s: not done after %g s; events: %s" % (what, timeout, [p.events for p in peers]))
        for p in peers:
            p.pump()


ACK_TIMEOUT = 25.0  # longer than connect_timeout, so it never cuts a connect short


def deliver(src, dst, addr, payload, timeout, what):
    """Send payload until dst has it, as the engine would: resend every 2 s
    (first contact may meet a descriptor not yet fetchable), and when
    nothing got through for ACK_TIMEOUT, disconnect(): after a peer's tor
    dies, tor may keep a stream open that leads nowhere."""
    deadline = time.monotonic() + timeout
    t0 = since = time.monotonic()
    last = 0.0
    while not any(pkt == payload for pkt, _ in dst.got):
        now = time.monotonic()
        if now > deadline:
            raise AssertionError("%s: %r not delivered within %g s; events: %s / %s; %s"
                                 % (what, payload, timeout, src.events, dst.events, testnet.NOTES))
        if now - since > ACK_TIMEOUT:
            src.link.disconnect(addr)
            testnet.NOTES.append("%s: nothing through after %.1f s, disconnect()" % (what, now - t0))
            since = now
        if now - last > 2.0:
            try:
                src.link.send(payload, addr)
                last = now
            except OnionUnreachableError:
                pass  # backing off after a failure; the loop tries again
        src.pump()
        dst.pump()
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def peers(tors):
    keys = [generate_onion_key(), generate_onion_key()]
    links = []
    try:
        for tp, key in zip(tors, keys):
            # connect_timeout: a connect that meets a restarted peer's stale intro point
            # stalls in tor for 3 x CircuitBuildTimeout + 1 s; past that, a new route helps.
            links.append(OnionLink(tp, key, max_frame=MAX_FRAME, connect_timeout=20, retry_delay=0.5,
                                   max_retry_delay=4))
        for link, key in zip(links, keys):
            assert link.address == onion_address_from_public_key(public_key(key))
        t = time.monotonic()
        for link in links:
            link.wait_published(60)
        TIMES["both onion services uploaded"] = time.monotonic() - t
        peers = [Peer(link) for link in links]
        for peer, key in zip(peers, keys):
            peer.key = key
        yield peers
    finally:
        for link in links:
            link.close()
        for key in keys:
            wipe(key)


def _packets(rng, n):
    sizes = [rng.randint(1, 64) for _ in range(n)] + [MAX_FRAME, MAX_FRAME - 1, 1, MAX_FRAME]
    rng.shuffle(sizes)
    return [bytes(rng.getrandbits(8) for _ in range(s)) for s in sizes]


def _bulk(src, dst, addr, pkts, timeout, what):
    """Send all pkts to addr over the open connection; dst echoes; check both sides, in order."""
    n0, r0 = len(dst.got), len(src.got)
    want, back = set(pkts), {p[::-1] for p in pkts}

    def arrived():  # ignores late copies of earlier probes and the other direction's traffic
        return ([x for x in dst.got[n0:] if x[0] in want], [x for x in src.got[r0:] if x[0] in back])
    for p in pkts:
        src.link.send(p, addr)
    pump_until([src, dst], lambda: [len(x) for x in arrived()] >= [len(pkts)] * 2, timeout, what)
    got, replies = arrived()
    assert [p for p, _ in got] == pkts
    assert all(isinstance(a, InboundAddr) for _, a in got), "inbound packets must not carry an onion address"
    assert [p for p, _ in replies] == [p[::-1] for p in pkts]
    assert all(a == addr for _, a in replies), "replies on our outbound stream come from the onion we called"


def test_exchange_both_ways(peers):
    alice, bob = peers
    rng = random.Random(1)
    TIMES["first packet alice->bob"] = deliver(alice, bob, bob.link.address, b"hello bob", 60, "first contact")
    TIMES["first packet bob->alice"] = deliver(bob, alice, alice.link.address, b"hello alice", 60, "first contact")
    t = time.monotonic()
    _bulk(alice, bob, bob.link.address, _packets(rng, 200), 60, "alice->bob bulk")
    _bulk(bob, alice, alice.link.address, _packets(rng, 200), 60, "bob->alice bulk")
    TIMES["2 x 204 packets each way and back"] = time.monotonic() - t
    with pytest.raises(InvalidArgumentError):
        alice.link.send(bytes(MAX_FRAME + 1), bob.link.address)


def test_restart_keeps_address(peers, tors):
    alice, bob = peers
    bob_tor = tors[1]
    address, gen = bob.link.address, bob_tor.generation
    t = time.monotonic()
    os.kill(bob_tor.pid, signal.SIGKILL)  # a crash: TorProcess.poll() (run by recv) restarts it
    pump_until([alice, bob], lambda: bob_tor.generation > gen and any(
        e.kind == "published" for e in bob.events), 30, "tor restart")
    TIMES["bob's tor killed -> restarted, service added again"] = time.monotonic() - t
    assert bob.link.address == address
    t2 = time.monotonic()
    deliver(alice, bob, address, b"after restart", 90, "alice->bob after bob's tor restarted")
    TIMES["bob's tor restarted -> alice's packet arrives"] = time.monotonic() - t2
    deliver(bob, alice, alice.link.address, b"bob is back", 60, "bob->alice after restart")
    _bulk(alice, bob, address, _packets(random.Random(2), 50), 60, "bulk after restart")


def test_power_loss(peers, net, tmp_path):
    """Bob's host loses power: his tor freezes with its connections open, so
    the relays keep his circuits and alice's open stream swallows packets.
    He comes back on another tor with the same key. After disconnect()
    (what the engine does when acks stop coming) alice reaches him again."""
    alice, bob = peers
    address, old = bob.link.address, bob.link.tor
    deliver(alice, bob, address, b"before the power cut", 60, "alice->bob before the power cut")
    new_tor = TorProcess(str(tmp_path / "bob2"), net.client_config())
    new_link = None
    os.kill(old.pid, signal.SIGSTOP)
    try:
        new_tor.start()
        new_tor.wait_bootstrap(60, stall=45)
        new_link = OnionLink(new_tor, bob.key, max_frame=MAX_FRAME, connect_timeout=30)
        assert new_link.address == address
        new_link.wait_published(60)
        new_bob = Peer(new_link)
        alice.link.send(b"into the void", address)  # on the stream to the frozen host
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            alice.pump()
            new_bob.pump()
        assert not new_bob.got, "a frozen host's stream cannot deliver to the new one"
        t = time.monotonic()
        alice.link.disconnect(address)
        deliver(alice, new_bob, address, b"after the power cut", 90, "alice->bob after the power cut")
        TIMES["power cut: disconnect -> packet at bob's new tor"] = time.monotonic() - t
    finally:
        os.kill(old.pid, signal.SIGKILL)
        if new_link:
            new_link.close()
        new_tor.stop()


def test_unreachable_onion_fails_fast(peers):
    alice, _ = peers
    nowhere_key = generate_onion_key()
    nowhere = onion_address_from_public_key(public_key(nowhere_key))  # valid, never published
    t = time.monotonic()
    alice.link.send(b"anyone there?", nowhere)
    pump_until([alice], lambda: any(e.kind == "unreachable" and e.addr == nowhere for e in alice.events),
               30, "unreachable onion")
    took = time.monotonic() - t
    TIMES["never-published onion reported unreachable"] = took
    ev = [e for e in alice.events if e.kind == "unreachable" and e.addr == nowhere][0]
    assert "0xF0" in ev.reason and "descriptor" in ev.reason, ev
    assert ev.dropped == 1
    with pytest.raises(OnionUnreachableError, match="0xF0"):
        alice.link.send(b"again", nowhere)  # backing off: fails at once, with the reason


def test_attach_to_running_tor(tors):
    alice_tor = tors[0]
    other = TorProcess.attach(alice_tor.control.addr)
    other.start()
    try:
        assert other.bootstrap_progress() == 100
        assert other.socks_address() == alice_tor.socks_address()
    finally:
        other.stop()
    assert alice_tor.alive(), "detaching must not stop a tor we only attached to"
