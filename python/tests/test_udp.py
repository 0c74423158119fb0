"""UDP nodes in one process: names resolve, simultaneous opens agree."""
import threading

import loramesh as lm
from loramesh.node import Node
from loramesh.transport import UdpTransport, parse_addr


def test_parse_addr_resolves_names():
    assert parse_addr("localhost:7000") == ("127.0.0.1", 7000)
    for bad in ("7000", "host:", "host:99999", "no.such.host.invalid:1"):
        try:
            parse_addr(bad)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % bad)


def pair():
    a, b = lm.IdentityKey.generate(), lm.IdentityKey.generate()
    ca, cb = lm.ContactCard(a.card("alice")), lm.ContactCard(b.card("bob"))
    ta, tb = UdpTransport("127.0.0.1:0"), UdpTransport("127.0.0.1:0")
    alice, bob = Node(a, {"bob": cb}, ta, 10), Node(b, {"alice": ca}, tb, 10)
    return alice, bob, ta, tb


def test_handshake_to_a_hostname():
    alice, bob, ta, tb = pair()
    got = []

    def bob_loop():
        while not got:
            got.extend(e.text for e in bob.poll(0.2) if e.kind == "message")

    t = threading.Thread(target=bob_loop, daemon=True)
    t.start()
    alice.send("bob", "by name", parse_addr("localhost:%d" % tb.local[1]))
    t.join(10)
    assert got == ["by name"]


def test_simultaneous_open_ends_in_one_session():
    alice, bob, ta, tb = pair()
    alice.addrs["bob"], bob.addrs["alice"] = tb.local, ta.local
    go = threading.Barrier(2)
    received = {"alice": [], "bob": []}

    def side(node, me, peer):
        go.wait()
        node.send(peer, "hello from " + me)
        for _ in range(50):
            received[me].extend(e.text for e in node.poll(0.1) if e.kind == "message")
            if received[me]:
                break

    ts = [threading.Thread(target=side, args=(alice, "alice", "bob")),
          threading.Thread(target=side, args=(bob, "bob", "alice"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(15)
    assert received == {"alice": ["hello from bob"], "bob": ["hello from alice"]}
    assert alice.sessions["bob"].handshake_hash == bob.sessions["alice"].handshake_hash
