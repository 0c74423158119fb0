"""KISS framing, and two nodes talking through a pty pair."""
import os
import threading
import tty

import loramesh as lm
from loramesh.node import Node
from loramesh.transport import FEND, FESC, KissDecoder, KissTransport, kiss_encode


def test_kiss_roundtrip_with_special_bytes():
    data = bytes([FEND, FESC, 0x00, FESC, FEND, 0x41]) + os.urandom(300)
    frame = kiss_encode(data)
    assert frame[0] == FEND and frame[-1] == FEND and frame[1] == 0
    assert FEND not in frame[1:-1]
    d = KissDecoder()
    got = []
    for b in b"noise" + frame + bytes([FEND, 0x01, 0x55, FEND]) + frame:  # byte by byte
        got += d.feed(bytes([b]))
    assert got == [data, data]  # the command-1 frame is not data


def test_two_nodes_over_a_pty():
    master, slave = os.openpty()
    tty.setraw(slave)
    a, b = lm.IdentityKey.generate(), lm.IdentityKey.generate()
    ca, cb = lm.ContactCard(a.card("alice")), lm.ContactCard(b.card("bob"))
    # bob opens the slave side through pyserial, alice uses the raw fd.
    bob = Node(b, {"alice": ca}, KissTransport(os.ttyname(slave), 9600), 10)
    alice = Node(a, {"bob": cb}, KissTransport(fd=master), 10)
    seen = []

    def bob_loop():
        while len(seen) < 2:
            for ev in bob.poll(0.2):
                if ev.kind == "message":
                    seen.append(ev.text)
                    bob.send("alice", "ack " + ev.text)

    t = threading.Thread(target=bob_loop, daemon=True)
    t.start()
    alice.send("bob", "one", "serial")
    alice.send("bob", "two", "serial")
    replies = []
    for _ in range(100):
        replies += [e.text for e in alice.poll(0.1) if e.kind == "message"]
        if len(replies) == 2:
            break
    t.join(5)
    assert seen == ["one", "two"] and replies == ["ack one", "ack two"]
    # garbage on the line is dropped and the session goes on
    os.write(master, kiss_encode(b"\x00garbage"))
    for _ in range(50):
        evs = bob.poll(0.1)
        if evs:
            break
    assert evs and evs[0].kind == "dropped"
    alice.send("bob", "three")
    for _ in range(50):
        evs = bob.poll(0.1)
        if evs:
            break
    assert [e.text for e in evs] == ["three"]
    alice.close()
    bob.close()
    bob.transport.close()
    os.close(master)
    os.close(slave)


def test_kiss_decoder_bounds_an_unterminated_frame():
    d = KissDecoder()
    assert d.feed(bytes([FEND, 0]) + b"\x41" * (KissDecoder.MAX_FRAME + 10)) == []
    assert len(d.buf) <= KissDecoder.MAX_FRAME + 1
    # it resynchronises at the next FEND and decodes the frame after it
    assert d.feed(kiss_encode(b"after")) == [b"after"]


def test_large_message_over_a_pty():
    master, slave = os.openpty()
    tty.setraw(slave)
    tx = KissTransport(os.ttyname(slave), 9600)  # pyserial: non-blocking fd
    rx = KissTransport(fd=master)
    big = os.urandom(20000)  # far more than the tty buffer holds
    got = []

    def reader():
        while not got:
            r = rx.recv(5)
            if r is None:
                break
            got.append(r[0])

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    tx.send(big)
    t.join(10)
    assert got == [big]
