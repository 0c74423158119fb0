"""The CLI end to end: separate processes over UDP, memory and SoftHSM."""
import json
import os
import shutil
import socket
import stat
import subprocess
import sys

import pytest

from conftest import PIN, PYDIR, cli_env, run_cli
from loramesh import config

PASS = "pass phrase for tests"


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, softhsm):
    """mem (memory keystore) and hsm (SoftHSM token), cards exchanged."""
    d = tmp_path_factory.mktemp("nodes")
    env = cli_env(LM_PASS=PASS, LM_PIN=PIN)
    mem, hsm = d / "mem", d / "hsm"
    mem_s = ["--passphrase-env", "LM_PASS"]
    hsm_s = ["--pin-env", "LM_PIN"]
    run_cli(mem, "init", "--name", "mem", "--argon2", "1,64,1", *mem_s, env=env)
    run_cli(hsm, "init", "--name", "hsm", "--pkcs11", softhsm, "--identity", "cli-%d" % os.getpid(), *hsm_s, env=env)
    for home, other, s in ((mem, hsm, mem_s), (hsm, mem, hsm_s)):
        run_cli(home, "card", "export", "-o", str(d / (home.name + ".card")), *s, env=env)
    for home, other, s, os_ in ((mem, hsm, mem_s, hsm_s), (hsm, mem, hsm_s, mem_s)):
        run_cli(home, "contact", "import", str(d / (other.name + ".card")), env=env)
        fp = json.loads(run_cli(other, "--json", "id", *os_, env=env).stdout)["fingerprint"]
        run_cli(home, "contact", "verify", other.name, fp.lower(), env=env)
    return {"dir": d, "env": env, "mem": (mem, mem_s), "hsm": (hsm, hsm_s)}


def start_listener(home, secret, env, port, count):
    p = subprocess.Popen([sys.executable, "-m", "loramesh", "--home", str(home), "--json", "listen",
                          "--bind", "127.0.0.1:%d" % port, "--count", str(count), "--duration", "30"] + secret,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = json.loads(p.stdout.readline())
    assert first["event"] == "listening", first
    return p


@pytest.mark.parametrize("sender,receiver", [("mem", "hsm"), ("hsm", "mem")])
def test_messages_over_udp(nodes, sender, receiver):
    env = nodes["env"]
    (sh, ss), (rh, rs) = nodes[sender], nodes[receiver]
    port = free_port()
    lst = start_listener(rh, rs, env, port, 3)
    try:
        r = run_cli(sh, "--json", "send", receiver, "hello", "ünïcode ✓", "third",
                    "--to", "127.0.0.1:%d" % port, *ss, env=env)
        out, err = lst.communicate(timeout=30)
    finally:
        lst.kill()
    sent = [json.loads(l) for l in r.stdout.decode().splitlines()]
    assert [e["event"] for e in sent] == ["session", "sent", "sent", "sent"]
    got = [json.loads(l) for l in out.decode().splitlines()]
    assert [e["event"] for e in got] == ["session", "message", "message", "message"], err
    assert [e["text"] for e in got[1:]] == ["hello", "ünïcode ✓", "third"]
    assert all(e["contact"] == sender for e in got)
    assert lst.returncode == 0
    assert PASS.encode() not in out + err + r.stdout + r.stderr
    assert PIN.encode() not in out + err + r.stdout + r.stderr


def test_chat_both_ways(nodes):
    env = nodes["env"]
    (mh, ms), (hh, hs) = nodes["mem"], nodes["hsm"]
    pm, ph = free_port(), free_port()
    # hsm answers one line after mem's first message arrives.
    hsm = subprocess.Popen([sys.executable, "-m", "loramesh", "--home", str(hh), "chat", "mem",
                            "--bind", "127.0.0.1:%d" % ph, "--to", "127.0.0.1:%d" % pm, "--linger", "4"] + hs,
                           env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert b"chat with" in hsm.stdout.readline()
    mem = subprocess.Popen([sys.executable, "-m", "loramesh", "--home", str(mh), "chat", "hsm",
                            "--bind", "127.0.0.1:%d" % pm, "--to", "127.0.0.1:%d" % ph, "--linger", "3"] + ms,
                           env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    mem.stdin.write(b"ping from mem\n")
    mem.stdin.flush()
    lines = []
    while b"[mem] ping from mem" not in b"".join(lines):
        lines.append(hsm.stdout.readline())
        assert lines[-1], "hsm chat ended early"
    hsm.stdin.write(b"pong from hsm\n")
    hsm.stdin.close()
    mem.stdin.close()
    mout, merr = mem.stdout.read(), mem.stderr.read()
    hout, herr = hsm.stdout.read(), hsm.stderr.read()
    assert mem.wait(30) == 0 and hsm.wait(30) == 0
    hout = b"".join(lines) + hout
    assert b"* secure session with hsm" in mout and b"[hsm] pong from hsm" in mout, merr
    assert b"* secure session with mem" in hout and b"[me -> mem] pong from hsm" in hout, herr


def test_sign_and_verify(nodes, tmp_path):
    env = nodes["env"]
    (mh, ms), (hh, hs) = nodes["mem"], nodes["hsm"]
    f = tmp_path / "doc.txt"
    f.write_bytes(b"signed text\n")
    run_cli(hh, "sign", str(f), *hs, env=env)  # P-256 on the token
    assert "good signature from hsm" in run_cli(mh, "verify", str(f), str(f) + ".sig", "--contact", "hsm", env=env).stdout.decode()
    f.write_bytes(b"changed\n")
    r = run_cli(mh, "verify", str(f), str(f) + ".sig", "--contact", "hsm", env=env, check=False)
    assert r.returncode == 3 and b"BAD signature" in r.stderr
    r = run_cli(mh, "verify", str(f), str(f) + ".sig", "--contact", "mem", env=env, check=False)
    assert r.returncode == 5


def test_errors_and_exit_codes(nodes, tmp_path):
    env = nodes["env"]
    (mh, ms), _ = nodes["mem"], nodes["hsm"]
    # wrong passphrase: 4, one line, no traceback, the passphrase not shown
    bad = dict(env, LM_PASS="wrong")
    r = run_cli(mh, "id", *ms, env=bad, check=False)
    assert r.returncode == 4 and r.stderr.count(b"\n") == 1 and b"Traceback" not in r.stderr
    assert b"wrong" not in r.stderr.replace(b"wrong PIN", b"")
    r = run_cli(mh, "--debug", "id", *ms, env=bad, check=False)
    assert b"Traceback" in r.stderr and b"PinError" in r.stderr
    r = run_cli(mh, "--json", "id", *ms, env=bad, check=False)
    assert json.loads(r.stderr)["exit"] == 4
    # no such contact: 5; not initialised: 5
    assert run_cli(mh, "send", "nobody", "x", "--to", "127.0.0.1:9", *ms, env=env, check=False).returncode == 5
    assert run_cli(tmp_path / "empty", "id", *ms, env=env, check=False).returncode == 5
    # tampered card: 3 with the core's reason
    card = bytearray((nodes["dir"] / "hsm.card").read_bytes())
    card[len(card) // 2] ^= 1
    (tmp_path / "bad.card").write_bytes(bytes(card))
    r = run_cli(mh, "contact", "import", str(tmp_path / "bad.card"), env=env, check=False)
    assert r.returncode in (3, 1) and r.stderr.startswith(b"loramesh: error:"), r.stderr
    # nobody answers the handshake: 6
    r = run_cli(mh, "send", "hsm", "x", "--to", "127.0.0.1:%d" % free_port(), "--timeout", "0.5", *ms,
                env=env, check=False)
    assert r.returncode == 6 and b"no handshake reply" in r.stderr
    # no secret and no terminal: usage error 2
    assert run_cli(mh, "id", env=env, check=False).returncode == 2


def test_missing_library(tmp_path):
    shutil.copytree(os.path.join(PYDIR, "loramesh"), tmp_path / "loramesh")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), LORAMESH_LIB=str(tmp_path / "none.so"))
    r = subprocess.run([sys.executable, "-m", "loramesh", "--home", str(tmp_path / "h"), "init",
                        "--passphrase-env", "X"], env=dict(env, X="x"), capture_output=True, cwd=str(tmp_path))
    assert r.returncode == 7
    assert str(tmp_path / "none.so").encode() in r.stderr and b"make lib" in r.stderr


def test_state_files(nodes):
    mh = nodes["mem"][0]
    for name in ("config.toml", "contacts.json"):
        assert stat.S_IMODE(os.stat(mh / name).st_mode) == 0o600
    text = (mh / "config.toml").read_text()
    assert config._loads_subset(text) == config.loads_toml(text)
    assert json.loads((mh / "contacts.json").read_text())["hsm"]["verified"] is True
    r = run_cli(mh, "--json", "contact", "list", env=nodes["env"])
    assert json.loads(r.stdout)["contacts"][0]["verified"] is True


def test_toml_subset():
    data = {"a": 1, "t": {"s": 'quo"te\\ \u00e9', "b": True, "n": -3}}
    text = config.dumps_toml(data)
    assert config._loads_subset(text) == data
    if config._toml:
        assert config._toml.loads(text) == data


def test_serial_kiss_between_two_processes(nodes):
    """Two CLI processes on two pty pairs joined by a relay (a radio link)."""
    import select
    import threading
    env = nodes["env"]
    (mh, ms), (hh, hs) = nodes["mem"], nodes["hsm"]
    m1, s1 = os.openpty()
    m2, s2 = os.openpty()
    stop = threading.Event()

    def relay():
        while not stop.is_set():
            r, _, _ = select.select([m1, m2], [], [], 0.1)
            for fd in r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                os.write(m2 if fd == m1 else m1, data)

    t = threading.Thread(target=relay, daemon=True)
    t.start()
    try:
        lst = subprocess.Popen([sys.executable, "-m", "loramesh", "--home", str(hh), "--json", "listen",
                                "--serial", os.ttyname(s2), "--count", "2", "--duration", "30"] + hs,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert json.loads(lst.stdout.readline())["event"] == "listening"
        r = run_cli(mh, "send", "hsm", "over the air", "again", "--serial", os.ttyname(s1), *ms, env=env)
        out, err = lst.communicate(timeout=30)
        got = [json.loads(l) for l in out.decode().splitlines()]
        assert [e.get("text") for e in got if e["event"] == "message"] == ["over the air", "again"], err
        assert b"[me -> hsm] again" in r.stdout
    finally:
        stop.set()
        t.join(2)
        for fd in (m1, s1, m2, s2):
            os.close(fd)
