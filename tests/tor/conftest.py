import os
import shutil
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)

import testnet  # noqa: E402

# Never skip: a missing tool is a failure with the fix in its message.
if os.environ.get("LORAMESH_TOR_NETNS") != "1" or testnet.interfaces() != ["lo"]:
    raise pytest.UsageError("the tor tests run only inside their own network namespace: "
                            "`make tortest` or `/usr/bin/python3 tests/tor/run.py`")
for tool in ("tor", "tor-gencert"):
    if not shutil.which(tool):
        raise pytest.UsageError("%s is not installed: apt-get install tor (make tortest installs it)" % tool)


def pytest_terminal_summary(terminalreporter):
    if testnet.TIMES:
        terminalreporter.section("tor timings (s)")
        for what, s in testnet.TIMES.items():
            terminalreporter.write_line("%6.2f  %s" % (s, what))
        for note in testnet.NOTES:
            terminalreporter.write_line("        " + note)


@pytest.fixture(scope="session")
def net(tmp_path_factory):
    """The private Tor network, shared by every test of the session."""
    n = testnet.TorNet(str(tmp_path_factory.mktemp("tornet")), relays=2)
    t = time.monotonic()
    n.build()
    testnet.TIMES["network keys"] = time.monotonic() - t
    try:
        testnet.TIMES["network consensus (all relays listed)"] = n.start(timeout=90)
        yield n
    finally:
        n.stop()
