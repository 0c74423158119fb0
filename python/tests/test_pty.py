"""The chat screen driven in a pseudo-terminal, from a shell, as a user
types: lines typed while the contact is away are queued and never reach
the shell; what a contact sends is shown escaped."""
import os
import pty
import re
import select
import signal
import time

from conftest import befriend


class Term:
    """A shell in a pty, driven key by key."""

    def __init__(self, env, cwd):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(cwd)
            os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], dict(env, TERM="xterm", PS1="$ "))
        self.out = b""

    def read(self, secs=0.5):
        end = time.monotonic() + secs
        while time.monotonic() < end:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                try:
                    self.out += os.read(self.fd, 65536)
                except OSError:
                    break
        return self.out

    def type(self, s: str, pause=0.05):
        for ch in s:
            os.write(self.fd, ch.encode())
            time.sleep(pause)

    def wait_for(self, pattern: bytes, secs=30):
        end = time.monotonic() + secs
        while time.monotonic() < end:
            if re.search(pattern, self.read(0.2)):
                return True
        return False

    def close(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except OSError:
            pass
        os.close(self.fd)


def test_chat_screen_queues_typed_lines_and_keeps_them_from_the_shell(make_node, tmp_path):
    a, b = make_node("alice"), make_node("bob")
    befriend(a, b)
    b.run("stop")  # bob is away
    t = Term(a.env, str(tmp_path))
    try:
        t.read(1)
        t.type("python3 -m loramesh --home %s chat bob --passphrase-file %s\n" % (a.home, a.secret_file), 0)
        assert t.wait_for(rb"chat with bob"), t.out[-500:]
        t.type("one\r")
        t.type("two\r")
        assert t.wait_for(rb"me -> bob: two"), t.out[-800:]
        queued = {c["contact"]: c["queued"] for c in a.json("contact", "list")["contacts"]}
        assert queued["bob"] == 2  # queued while bob is away
        t.type("\x04")  # Ctrl-D leaves the chat
        t.read(1)
        t.type("echo SHELL-IS-BACK\n", 0)
        assert t.wait_for(rb"SHELL-IS-BACK\r?\n"), t.out[-800:]
        assert b"command not found" not in t.out  # typed lines never reached the shell
    finally:
        t.close()
    b.run("start")
    end = time.monotonic() + 60
    while time.monotonic() < end:
        out = b.run("--json", "listen", "--history", "20", "--duration", "0.3").stdout
        if b'"one"' in out and b'"two"' in out:
            break
        time.sleep(0.5)
    assert b'"one"' in out and b'"two"' in out


def test_chat_screen_escapes_what_a_contact_sends(make_node, tmp_path):
    a, b = make_node("alice"), make_node("bob")
    befriend(a, b)
    t = Term(a.env, str(tmp_path))
    try:
        t.read(1)
        t.type("python3 -m loramesh --home %s chat bob --passphrase-file %s\n" % (a.home, a.secret_file), 0)
        assert t.wait_for(rb"chat with bob")
        before = len(t.out)
        b.run("send", "alice", "\x1b]2;pwned\x07\x1b[31mred\u202eevil")
        assert t.wait_for(rb"\\x1b\]2;pwned\\x07\\x1b\[31mred\\u202eevil"), t.out[-800:]
        assert b"\x1b]2;pwned" not in t.out[before:]  # never written raw to the terminal
        t.type("\x04")
    finally:
        t.close()


def test_chat_screen_shows_one_contact_with_times_history_and_an_intact_typed_line(make_node, tmp_path):
    """chat bob: bob's earlier message from the sealed history, with its
    time; nothing of carol's; a line half typed when bob's message arrives
    is sent whole."""
    from conftest import history_texts
    a, b, c = make_node("alice"), make_node("bob"), make_node("carol")
    befriend(a, b)
    befriend(a, c)
    b.run("send", "alice", "earlier from bob")
    a.stop()  # the history must come from disk
    t = Term(a.env, str(tmp_path))
    try:
        t.read(1)
        t.type("python3 -m loramesh --home %s chat bob --passphrase-file %s\n" % (a.home, a.secret_file), 0)
        assert t.wait_for(rb"chat with bob"), t.out[-500:]
        assert t.wait_for(rb"\[\d\d:\d\d:\d\d\] bob: earlier from bob"), t.out[-800:]
        t.type("half typed")
        c.run("send", "alice", "carol's plan")
        b.run("send", "alice", "incoming now")
        assert t.wait_for(rb"\[\d\d:\d\d:\d\d\] bob: incoming now"), t.out[-800:]
        t.type(" line\r")
        assert t.wait_for(rb"me -> bob: half typed line"), t.out[-800:]
        t.read(1)
        assert b"carol" not in t.out  # another contact's message is not in bob's chat
        t.type("\x04")
    finally:
        t.close()
    assert ("in", "half typed line", None) in history_texts(b)
    assert ("in", "carol's plan", None) in history_texts(a)


def test_init_asks_each_secret_twice(tmp_path, softhsm):
    """On a terminal, init asks the passphrase (memory) or the PIN (token)
    twice; two different entries create nothing."""
    from conftest import PIN, cli_env
    for kind, args, secret, again in (
            ("passphrase", "--argon2 1,64,1", "correct horse", "repeat the passphrase"),
            ("token PIN", "--pkcs11 '%s'" % softhsm, PIN, "repeat the token PIN")):
        home = tmp_path / kind.replace(" ", "-")
        t = Term(cli_env(), str(tmp_path))
        try:
            t.read(1)
            cmd = "python3 -m loramesh --home %s init --name n --udp 127.0.0.1:0 %s" % (home, args)
            t.type(cmd + "\n", 0)
            assert t.wait_for((kind[0].upper() + kind[1:] + ": ").encode()), t.out[-500:]
            t.type(secret + "\r")
            assert t.wait_for((again[0].upper() + again[1:] + ": ").encode()), t.out[-500:]
            t.type(secret + "x\r")
            assert t.wait_for(rb"the two entries differ"), t.out[-500:]
            assert not (home / "config.toml").exists()
            assert secret.encode() not in t.out  # never echoed
            before = len(t.out)
            t.type(cmd + "\n", 0)
            assert t.wait_for((kind[0].upper() + kind[1:] + ": ").encode() + rb"(?![\s\S]*\$ )")
            t.type(secret + "\r")
            assert t.wait_for((again[0].upper() + again[1:] + ": ").encode() + rb"(?![\s\S]*\$ )")
            t.type(secret + "\r")
            assert t.wait_for(rb"fingerprint|Fingerprint", 60), t.out[before:][-800:]
            assert (home / "config.toml").exists()
        finally:
            t.close()
