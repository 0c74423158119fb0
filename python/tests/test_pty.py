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
