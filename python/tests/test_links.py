"""Links (UDP addresses, KISS framing) and nodes over them: two engines
through a pty pair, and two CLI daemons on a 255-byte KISS link."""
import os
import shutil
import subprocess
import sys
import time
import tty

import pytest

import loramesh as lm
from conftest import befriend
from loramesh.engine import Engine
from loramesh.node import Node
from loramesh.transport import FEND, FESC, KissDecoder, KissTransport, LinkError, kiss_encode, parse_addr


def test_parse_addr_resolves_names():
    assert parse_addr("localhost:7000") == ("127.0.0.1", 7000)
    for bad in ("7000", "host:", "host:99999", "host:0", "no.such.host.invalid:1"):
        with pytest.raises(ValueError):
            parse_addr(bad)


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


def test_kiss_decoder_bounds_an_unterminated_frame():
    d = KissDecoder()
    assert d.feed(bytes([FEND, 0]) + b"\x41" * (KissDecoder.MAX_FRAME + 10)) == []
    assert len(d.buf) <= KissDecoder.MAX_FRAME + 1
    # it resynchronises at the next FEND and decodes the frame after it
    assert d.feed(kiss_encode(b"after")) == [b"after"]


def test_kiss_refuses_frames_larger_than_the_radio_takes():
    master, slave = os.openpty()
    try:
        tr = KissTransport(fd=master, frame_size=255)
        with pytest.raises(LinkError, match="255-byte frames"):
            tr.send(b"x" * 256)
    finally:
        os.close(master)
        os.close(slave)


def test_two_engines_over_a_pty(tmp_path):
    """A long message on 255-byte KISS frames: fragmented, every frame fits,
    reassembled whole; garbage on the line changes nothing."""
    master, slave = os.openpty()
    tty.setraw(slave)
    a, b = lm.IdentityKey.generate(), lm.IdentityKey.generate()
    ea, eb = Engine(a, str(tmp_path / "a")), Engine(b, str(tmp_path / "b"))
    ea.add_contact("bob", b.card("bob"))
    eb.add_contact("alice", a.card("alice"))
    # bob opens the slave side through pyserial, alice uses the raw fd.
    alice = Node(ea, {"kiss": KissTransport(fd=master)})
    bob = Node(eb, {"kiss": KissTransport(os.ttyname(slave), 9600)})
    ea.set_contact_addr("bob", "kiss", "")
    eb.set_contact_addr("alice", "kiss", "")
    sizes = []
    real = alice.links["kiss"].send
    alice.links["kiss"].send = lambda p, addr="": (sizes.append(len(p)), real(p, addr))
    big = "".join(chr(0x41 + i % 26) for i in range(300)) + "ü" * 2000
    mid = ea.send("bob", big)
    os.write(master, kiss_encode(b"\x00garbage"))
    got, states = [], []
    end = time.monotonic() + 60
    while time.monotonic() < end and "delivered" not in states:
        for node, who in ((alice, "alice"), (bob, "bob")):
            evs, errs = node.step(0.05)
            assert not errs
            got += [e.text for e in evs if e.kind == "message"]
            states += [e.state for e in evs if e.kind == "delivery" and e.msg_id == mid]
    assert got == [big] and "delivered" in states
    assert max(sizes) <= 255 and len(sizes) > 10
    for n in (alice, bob):
        n.engine.close()
        n.close()
    os.close(master)
    os.close(slave)


@pytest.fixture
def pty_pair(tmp_path):
    """Two linked ptys from socat (a null-modem cable between two TNCs)."""
    if not shutil.which("socat"):
        pytest.fail("socat is missing: apt-get install socat (make test installs it)")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    p = subprocess.Popen(["socat", "pty,raw,echo=0,link=%s" % a, "pty,raw,echo=0,link=%s" % b],
                         stderr=subprocess.DEVNULL)
    for _ in range(100):
        if a.exists() and b.exists():
            break
        time.sleep(0.05)
    yield str(a), str(b)
    p.terminate()
    p.wait(5)


def test_long_message_between_two_daemons_over_kiss(make_node, pty_pair):
    a = make_node("alice", "--serial", pty_pair[0], udp=False)
    b = make_node("bob", "--serial", pty_pair[1], udp=False)
    befriend(a, b)
    text = "x" * 300
    r = a.run("--json", "send", "bob", text, "--timeout", "120")
    assert b'"delivered"' in r.stdout
    out = b.run("--json", "listen", "--history", "20", "--duration", "0.5").stdout.decode()
    assert text in out
