"""The CLI and its daemon end to end, as separate processes, each failure
the CLI issue lists as a test."""
import json
import os
import socket
import struct
import subprocess
import sys
import time

import pytest

from conftest import PASS, PIN, assert_sealed, befriend, cli_env, free_udp_port, history_texts


def wait_until(cond, timeout=30.0, step=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def queued(node, contact):
    return {c["contact"]: c for c in node.json("contact", "list")["contacts"]}[contact]["queued"]


def received(node, n=50):
    """The message texts in the daemon's recent history."""
    out = node.run("--json", "listen", "--history", str(n), "--duration", "0.5").stdout.decode()
    return [json.loads(l)["text"] for l in out.splitlines() if json.loads(l).get("event") == "message"]


def test_send_both_ways_memory_and_softhsm(make_node, softhsm):
    a = make_node("alice")
    h = make_node("hsm", "--pkcs11", softhsm, secret_text=PIN)
    befriend(a, h)
    r = a.run("--json", "send", "hsm", "hello", "ünïcode ✓")
    assert json.loads(r.stdout)["state"] == "delivered"
    r = h.run("--json", "send", "alice", "and back")
    assert json.loads(r.stdout)["state"] == "delivered"
    assert "hello ünïcode ✓" in received(h)  # the words of one message, not two messages
    assert "and back" in received(a)
    for p in (a, h):
        st = p.json("status")
        assert st["running"] and st["contacts"] == 1
    # Secrets never show in output, and the SoftHSM configuration was saved
    # so the daemon found the token without the environment.
    assert "softhsm2_conf" in (h.home / "config.toml").read_text()
    log = (a.home / "daemon.log").read_bytes() + (h.home / "daemon.log").read_bytes()
    assert PASS.encode() not in log and PIN.encode() not in log
    # The history outlives the daemons, sealed to each identity wherever its
    # key is held.
    for p in (a, h):
        p.stop()
    assert history_texts(h) == [("in", "hello ünïcode ✓", None), ("out", "and back", "delivered")]
    assert history_texts(a) == [("out", "hello ünïcode ✓", "delivered"), ("in", "and back", None)]
    for p in (a, h):
        assert_sealed(p, ["hello", "ünïcode", "and back"])


def test_history_opt_out(make_node):
    a, b = make_node("alice"), make_node("bob")
    befriend(a, b)
    with open(b.home / "config.toml", "a") as f:
        f.write("\n[history]\nkeep = 0\n")
    b.stop()
    b.run("start")
    a.run("send", "bob", "not kept")
    assert "not kept" in [t for _, t, _ in history_texts(a)]
    assert history_texts(b) == []
    with open(b.home / "config.toml", "a") as f:
        f.write("days = -1\n")
    b.stop()
    r = b.run("start", check=False)
    assert r.returncode != 0 and b"[history]" in r.stderr and b"config.toml" in r.stderr


def test_daemon_killed_at_random_moments(make_node):
    """kill -9 of the receiving daemon 20 times while messages flow: every
    message is delivered and shown exactly once (from the sealed history)."""
    import random
    import signal
    a, b = make_node("alice"), make_node("bob")
    befriend(a, b)
    rng = random.Random(7)
    sent = []
    for k in range(20):
        for i in range(3):
            sent.append("m%02d-%d" % (k, i))
            a.run("send", "--no-wait", "bob", sent[-1])
        time.sleep(rng.uniform(0.0, 0.6))
        pid = b.json("start")["pid"]
        os.kill(pid, signal.SIGKILL)
    b.run("start")
    assert wait_until(lambda: queued(a, "bob") == 0, 120), "messages still queued"
    outs = {t: s for d, t, s in history_texts(a) if d == "out"}
    assert outs == {t: "delivered" for t in sent}
    got = [t for d, t, _ in history_texts(b) if d == "in"]
    assert sorted(got) == sorted(sent), "lost or shown twice"


def test_peer_absent_then_back(make_node):
    a, b = make_node("alice"), make_node("bob")
    befriend(a, b)
    b.run("stop")
    r = a.run("send", "bob", "--timeout", "2", "are you there", check=False)
    assert r.returncode == 6 and b"not delivered yet" in r.stderr
    assert queued(a, "bob") == 1
    b.run("start")
    assert wait_until(lambda: queued(a, "bob") == 0, 60), "queued message never delivered"
    assert "are you there" in received(b)


def test_second_command_during_chat(make_node):
    a, b = make_node("alice"), make_node("bob")
    befriend(a, b)
    # An open chat (line mode, stdin a pipe kept open) and a second command
    # on the same identity: both go through the one daemon.
    chat = subprocess.Popen([sys.executable, "-m", "loramesh", "--home", str(a.home), "chat", "bob",
                             "--linger", "20", "--passphrase-file", str(a.secret_file)],
                            env=a.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        chat.stdin.write(b"from the chat\n")
        chat.stdin.flush()
        first = chat.stdout.readline().decode()  # the chat is up and subscribed
        assert "me -> bob: from the chat" in first
        a.run("send", "bob", "from another command")
        b.run("send", "alice", "reply to both")
        out, err = chat.communicate(b"after the reply\n", timeout=60)
    finally:
        chat.kill()
    assert chat.returncode == 0, err
    text = first + out.decode()
    assert "bob: reply to both" in text
    assert "me -> bob: from another command" in text  # the other command's message shows in the chat
    assert wait_until(lambda: {"from the chat", "from another command", "after the reply"} <= set(received(b)))


def test_ten_concurrent_imports(make_node, tmp_path):
    a = make_node("alice")
    a.run("stop")
    cards = []
    for i in range(10):
        p = make_node("c%d" % i, udp=False)
        cards.append(tmp_path / ("c%d.card" % i))
        p.run("card", "export", "-o", str(cards[-1]))
    procs = [subprocess.Popen([sys.executable, "-m", "loramesh", "--home", str(a.home), "contact", "import",
                               str(c), "--passphrase-file", str(a.secret_file)], env=a.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in cards]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    names = {c["contact"] for c in a.json("contact", "list")["contacts"]}
    assert names == {"c%d" % i for i in range(10)}


def test_contact_rules(make_node, tmp_path):
    a, b = make_node("alice"), make_node("bob")
    befriend(a, b)
    assert a.json("contact", "show", "bob")["verified"]
    card = tmp_path / "bob.card"
    # The same card again keeps the verification.
    r = a.run("contact", "import", str(card), "--as", "bob")
    assert b"nothing changed" in r.stdout and a.json("contact", "show", "bob")["verified"]
    # Another identity under the name: refused, then a warning with both fingerprints.
    m = make_node("mallory", udp=False)
    m.run("card", "export", "-o", str(tmp_path / "m.card"))
    r = a.run("contact", "import", str(tmp_path / "m.card"), "--as", "bob", check=False)
    assert r.returncode == 3 and b"different key" in r.stderr
    r = a.run("contact", "import", str(tmp_path / "m.card"), "--as", "bob", "--replace")
    old = b.json("id")["fingerprint"]
    new = m.json("id")["fingerprint"]
    assert b"WARNING" in r.stdout and old.encode() in r.stdout and new.encode() in r.stdout
    assert not a.json("contact", "show", "bob")["verified"]
    # The node's own card is refused.
    a.run("card", "export", "-o", str(tmp_path / "own.card"))
    r = a.run("contact", "import", str(tmp_path / "own.card"), "--as", "me", check=False)
    assert r.returncode == 3 and b"own card" in r.stderr


def test_verify_mismatch_does_not_show_the_fingerprint(make_node):
    a, b = make_node("alice"), make_node("bob")
    befriend(a, b, verify=False)
    r = a.run("contact", "verify", "bob", "AAAA-BBBB-CCCC-DDDD", check=False)
    fp = b.json("id")["fingerprint"]
    assert r.returncode == 3 and b"does NOT match" in r.stderr
    assert fp.encode() not in r.stdout + r.stderr
    assert not a.json("contact", "show", "bob")["verified"]


def test_escape_sequences_are_shown_escaped(make_node):
    a, b = make_node("alice"), make_node("bob")
    befriend(a, b, verify=False)
    evil = "\x1b]0;owned\x07\x1b[2J\u202egnp.exe\nbob: fake line"
    a.run("send", "bob", evil)
    out = b.run("listen", "--history", "10", "--duration", "0.5").stdout.decode()
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b]0;owned\\x07" in out and "\\u202e" in out
    # The second line is shown under its real sender, marked unverified.
    assert "] alice?: bob: fake line" in out


def udp_from_port_zero(dst_port, payload):
    """A datagram to 127.0.0.1:dst_port whose source port is 0 (raw socket)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    hdr = struct.pack("!HHHH", 0, dst_port, 8 + len(payload), 0)
    s.sendto(hdr + payload, ("127.0.0.1", 0))
    s.close()


def test_port_zero_replay_does_not_stop_the_daemon(make_node, tmp_path):
    from loramesh import MemoryKeystore
    from loramesh.engine import Engine
    a, b = make_node("alice"), make_node("bob")
    befriend(a, b)
    b.run("stop")
    # Bob's genuine message 1, made with his identity, arriving from UDP
    # source port 0, where no answer can go: twice (the second time it is
    # a retransmission, answered from the cache).
    with MemoryKeystore(str(b.home / "keys"), bytearray(PASS.encode())) as ks, ks.load("node") as bob:
        with Engine(bob, str(tmp_path / "scratch")) as e:
            e.add_link("udp", "udp")
            e.add_contact("alice", (a.home / "card").read_bytes())
            e.set_contact_addr("alice", "udp", "127.0.0.1:%d" % a.port)
            e.send("alice", "hi")
            m1 = next(p for _, _, p in e.packets())
    for _ in range(2):
        udp_from_port_zero(a.port, m1)
    udp_from_port_zero(a.port, b"\x24" + os.urandom(40))
    time.sleep(1)
    assert a.json("status")["running"]
    assert b"sending to UDP 127.0.0.1:0" in (a.home / "daemon.log").read_bytes()
    b.run("start")
    a.run("send", "bob", "still here")
    b.run("send", "alice", "and me")


def test_chat_with_stdin_from_dev_null(make_node):
    a, b = make_node("alice"), make_node("bob")
    befriend(a, b)
    with open(os.devnull, "rb") as null:
        p = subprocess.run([sys.executable, "-m", "loramesh", "--home", str(a.home), "chat", "bob",
                            "--passphrase-file", str(a.secret_file)], env=a.env, stdin=null,
                           capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr


def test_init_force_keeps_a_backup_and_every_step_works(make_node, tmp_path):
    a = make_node("alice")
    first = a.json("id")["fingerprint"]
    a.run("stop")
    r = a.run("init", "--force", "--name", "alice", "--argon2", "1,64,1", check=False)
    assert r.returncode == 2 and b"confirmation" in r.stderr  # no terminal, no --yes: nothing changed
    assert a.json("id")["fingerprint"] == first
    r = a.run("--json", "init", "--force", "--yes", "--name", "alice", "--argon2", "1,64,1")
    info = json.loads(r.stdout)
    assert info["fingerprint"] != first and info["backup"] == "node"
    assert a.json("id")["fingerprint"] == info["fingerprint"]
    a.run("identity", "use", "node")  # the backup comes back
    assert a.json("id")["fingerprint"] == first
    a.run("identity", "export", str(tmp_path / "backup.lmid"))
    assert (tmp_path / "backup.lmid").stat().st_mode & 0o777 == 0o600


def test_one_daemon_per_node(make_node):
    a = make_node("alice")
    a.run("start")
    r = a.run("daemon", check=False)
    assert r.returncode != 0 and (b"another daemon" in r.stderr or b"already answers" in r.stderr)
    assert b"Traceback" not in r.stderr and r.stderr.startswith(b"loramesh: error: ")
    assert a.json("status")["running"]


def test_errors_say_what_and_where(make_node, tmp_path):
    nowhere = tmp_path / "nowhere"
    r = subprocess.run([sys.executable, "-m", "loramesh", "--home", str(nowhere), "send", "bob", "x"],
                       env=cli_env(), capture_output=True)
    assert r.returncode == 5 and str(nowhere).encode() in r.stderr and b"loramesh init" in r.stderr
    a = make_node("alice")
    r = a.run("send", "nobody", "x", check=False)
    assert r.returncode == 5 and b"no contact 'nobody'" in r.stderr
    a.run("stop")
    bad = tmp_path / "wrong"
    bad.write_text("not the passphrase\n")
    r = subprocess.run([sys.executable, "-m", "loramesh", "--home", str(a.home), "start",
                        "--passphrase-file", str(bad)], env=a.env, capture_output=True)
    assert r.returncode == 4 and b"wrong" in r.stderr and b"Traceback" not in r.stderr
    (a.home / "config.toml").write_text("[identity\nbroken")
    r = a.run("status", check=False)
    assert r.returncode == 5 and b"config.toml" in r.stderr
    # A port another program holds: the error names it and says what to do.
    b = make_node("bob")
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    b.run("stop")
    b.run("link", "udp", "127.0.0.1:%d" % holder.getsockname()[1])
    r = b.run("start", check=False)
    holder.close()
    assert r.returncode != 0 and b"cannot listen on UDP" in r.stderr and b"Errno" not in r.stderr


def test_sign_and_verify(make_node, tmp_path):
    a, b = make_node("alice"), make_node("bob")
    befriend(a, b, verify=False)
    f = tmp_path / "doc"
    f.write_bytes(b"a document")
    a.run("sign", str(f))
    b.run("verify", str(f), str(f) + ".sig", "--contact", "alice")
    f.write_bytes(b"a changed document")
    r = b.run("verify", str(f), str(f) + ".sig", "--contact", "alice", check=False)
    assert r.returncode == 3 and b"BAD signature" in r.stderr


def test_version_and_help():
    r = subprocess.run([sys.executable, "-m", "loramesh", "--version"], env=cli_env(), capture_output=True)
    assert r.returncode == 0 and r.stdout.startswith(b"loramesh ")
    r = subprocess.run([sys.executable, "-m", "loramesh", "contact", "--help"], env=cli_env(), capture_output=True)
    for action in (b"import", b"list", b"show", b"remove", b"verify", b"addr"):
        assert action in r.stdout


def test_missing_library(tmp_path):
    env = cli_env(LORAMESH_LIB=str(tmp_path / "nope.so"))
    (tmp_path / "pass").write_text("x\n")
    r = subprocess.run([sys.executable, "-m", "loramesh", "--home", str(tmp_path / "home"), "init", "--name", "x",
                        "--passphrase-file", str(tmp_path / "pass")], env=env, capture_output=True)
    assert r.returncode == 7 and b"nope.so" in r.stderr and b"make lib" in r.stderr


def test_public_commands_ask_for_no_secret(make_node, tmp_path):
    """id, card and contact list read public files only: with the daemon
    stopped and no terminal or passphrase file, they work and ask nothing."""
    from conftest import run_cli
    a = make_node("alice")
    a.stop()
    for args in (["id"], ["card", "export", "-o", str(tmp_path / "a.card")], ["card"]):
        r = run_cli(a.home, *args, input=b"")
        assert r.returncode == 0, (args, r.stderr)
        assert b"passphrase" not in r.stderr.lower(), args
    assert (tmp_path / "a.card").read_bytes()
    assert not a.json("status")["running"]  # nothing started a daemon (which would need the secret)


def test_identity_export_and_import(make_node, tmp_path):
    """A memory identity exported from one node and imported into another
    (same passphrase) becomes that node's identity, fingerprint and all."""
    a, b = make_node("alice"), make_node("restored")
    a.stop()
    b.stop()
    f = tmp_path / "alice.lmid"
    a.run("identity", "export", str(f))
    assert f.stat().st_mode & 0o777 == 0o600
    r = a.run("identity", "export", str(f), check=False)
    assert r.returncode != 0 and b"exists" in r.stderr  # never overwritten
    name = b.json("identity", "import", str(f))["identity"]
    b.run("identity", "use", name)
    assert b.json("id")["fingerprint"] == a.json("id")["fingerprint"]


def test_init_display_names(tmp_path):
    """A display name the card rule refuses (docs/PROTOCOL.md §5) is a usage
    error that says why, before any identity is created; an accepted one is
    stored prepared (spaces trimmed, U+00A0 a space)."""
    secret = tmp_path / "secret"
    secret.write_text(PASS + "\n")
    home = tmp_path / "node"
    for bad in ("Alice\u3164", "\u115fAlice", "Ali\u034fce", "Alice\ufe0f", "Alice\u2800", "a\tb"):
        r = subprocess.run([sys.executable, "-m", "loramesh", "--home", str(home), "init", "--name", bad,
                            "--argon2", "1,64,1", "--passphrase-file", str(secret)], env=cli_env(), capture_output=True)
        assert r.returncode == 2 and b"display name" in r.stderr and b"refused" in r.stderr, r.stderr
        assert not (home / "keys").exists() and not (home / "config.toml").exists()
    r = subprocess.run([sys.executable, "-m", "loramesh", "--home", str(home), "init", "--name", " Al\u00a0ice ",
                        "--argon2", "1,64,1", "--passphrase-file", str(secret)], env=cli_env(), capture_output=True)
    assert r.returncode == 0 and b"stored as 'Al ice'" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "loramesh", "--home", str(home), "--json", "id"], env=cli_env(),
                       capture_output=True)
    assert json.loads(r.stdout)["name"] == "Al ice"


def test_a_stranger_is_shown(make_node, tmp_path):
    """A node that is not a contact gets no answer, and the user is told,
    with its handshake key's fingerprint and how to talk to it."""
    a, c = make_node("alice"), make_node("carol")
    card = tmp_path / "alice.card"
    a.run("card", "export", "-o", str(card))
    c.run("contact", "import", str(card), "--as", "alice", "--addr", a.addr)
    a.run("start")
    c.run("send", "--no-wait", "alice", "hello stranger")

    def shown():
        out = a.run("listen", "--history", "20", "--duration", "0.3").stdout
        return b"not among your contacts" in out and b"import its card" in out
    assert wait_until(shown, 30), a.run("listen", "--history", "20", "--duration", "0.3").stdout
    assert "hello stranger" not in [t for _, t, _ in history_texts(a)]


def test_a_message_replayed_from_history_is_not_shown_again_live():
    """The engine records a message in its history before the save that
    releases its event: a client that subscribed in between gets it from
    the history, and the live event is not sent to it a second time."""
    import collections
    from loramesh.daemon import Client, Daemon
    d = Daemon.__new__(Daemon)
    d.transient, d.clients, d.say = collections.deque(), {}, lambda m: None
    c = Client(None)
    c.subscribed = True
    d.clients[1] = c
    ev = {"event": "message", "contact": "bob", "seq": 7, "text": "hi", "time": 1.0}
    rec = type("R", (), {"kind": "message", "as_dict": lambda self: dict(ev)})()
    d.engine = type("E", (), {"history": lambda self: [rec]})()
    d.op_subscribe(c, {"history": 10})
    assert b'"hi"' in c.outbuf and b'"history": true' in c.outbuf
    c.outbuf = bytearray()
    d.publish(ev)  # the live event, released by the save
    assert c.outbuf == b""
    d.publish(dict(ev, seq=8, text="next"))
    assert b'"next"' in c.outbuf and b'"hi"' not in c.outbuf


def test_send_timeout_must_be_seconds(make_node):
    a = make_node("alice")
    for bad in ("-1", "nan", "soon"):
        r = a.run("send", "--timeout", bad, "bob", "hi", check=False)
        assert r.returncode == 2 and b"number of seconds" in r.stderr, (bad, r.stderr)
