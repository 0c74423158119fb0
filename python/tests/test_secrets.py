"""Issue 11 #10: PINs and passphrases are read into wipeable bytearrays
(the terminal with echo off, a file, a descriptor), environment values come
with a warning, and a pin-value in a PKCS#11 URI is warned about."""
import os
import pty
import select
import subprocess
import sys
import termios
import threading
import time

from conftest import PIN, cli_env

from loramesh import secret_input


def _drain(fd, wait=0.5):
    out = b""
    while select.select([fd], [], [], wait)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        wait = 0.1
    return out


def test_prompt_reads_with_echo_off_into_a_wiped_bytearray(monkeypatch):
    master, slave = pty.openpty()
    try:
        got = {}
        t = threading.Thread(target=lambda: got.setdefault("s", secret_input.prompt("token PIN", os.ttyname(slave))))
        t.start()
        end = time.monotonic() + 10
        while termios.tcgetattr(slave)[3] & termios.ECHO:
            assert time.monotonic() < end, "the prompt never turned echo off"
            time.sleep(0.01)
        os.write(master, b"s3cr3t-PIN\n")
        t.join(10)
        shown = _drain(master)
        s = got["s"]
        assert type(s) is secret_input.Secret and isinstance(s, bytearray)
        assert bytes(s) == b"s3cr3t-PIN"
        assert b"Token PIN: " in shown and b"s3cr3t" not in shown, shown
        assert termios.tcgetattr(slave)[3] & termios.ECHO, "echo not restored"
        seen = []
        real = secret_input.secure_wipe
        monkeypatch.setattr(secret_input, "secure_wipe", lambda b: (real(b), seen.append(bytes(b))))
        with s:
            pass
        assert seen == [bytes(10)] and len(s) == 0
    finally:
        os.close(master)
        os.close(slave)


def test_file_fd_and_env_sources(tmp_path, monkeypatch, capsys):
    f = tmp_path / "pin"
    f.write_bytes(b"from-file\r\nsecond line\n")
    s = secret_input.from_file(str(f))
    assert type(s) is secret_input.Secret and bytes(s) == b"from-file"
    r, w = os.pipe()
    os.write(w, b"from-fd\n")
    os.close(w)
    s = secret_input.from_fd(r)
    assert type(s) is secret_input.Secret and bytes(s) == b"from-fd"
    monkeypatch.setenv("LM_TEST_PIN", "from-env")
    s = secret_input.from_env("LM_TEST_PIN")
    assert type(s) is secret_input.Secret and bytes(s) == b"from-env"
    assert "cannot be wiped" in capsys.readouterr().err


def test_pin_value_in_uri_warns(softhsm, tmp_path):
    home = tmp_path / "node"
    r = subprocess.run([sys.executable, "-m", "loramesh", "--home", str(home), "init", "--name", "pinuri",
                        "--udp", "127.0.0.1:9", "--pkcs11", softhsm + "&pin-value=" + PIN],
                       env=cli_env(), capture_output=True, timeout=60)
    assert b"warning: a pin-value in the URI" in r.stderr and b"pin-source" in r.stderr, r.stderr
    assert PIN.encode() not in r.stderr + r.stdout
