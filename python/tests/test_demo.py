"""make run's demo (tests/run_demo.sh) does what it says at each step."""
import os
import re
import subprocess

from conftest import cli_env

DEMO = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "run_demo.sh")


def test_make_run_demo():
    p = subprocess.run([DEMO], env=cli_env(), capture_output=True, timeout=300)
    out = re.sub(rb"\x1b\[[0-9;]*m", b"", p.stdout + p.stderr).decode()
    assert p.returncode == 0, out[-2000:]
    assert "Traceback" not in out
    steps = out.split("\n== ")

    def step(title):
        s = [x for x in steps if x.startswith(title)]
        assert s, "no step %r in the demo" % title
        return s[0]

    assert "alice| delivered to bob" in step("a long message over the radio")
    udp = step("UDP:")
    assert "bob| delivered to carol" in udp and "carol| delivered to alice" in udp
    assert re.search(r"alice\| queued as message \d+", step("carol goes away"))
    assert "(1 queued)" in step("carol goes away")
    back = step("carol comes back")
    assert "carol| " in back and "alice: are you back?" in back
    sig = step("signatures")
    assert "good signature from bob" in sig
    assert sig.index("changed after it was signed") < sig.index("BAD signature")
    assert "messages waiting: 0" in step("status of each daemon")
