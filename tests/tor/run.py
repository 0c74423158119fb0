#!/usr/bin/env python3
"""Run the tor tests (pytest, this directory) inside a network namespace of their own.

    /usr/bin/python3 tests/tor/run.py [pytest arguments]      (make tortest)

Re-executes itself under `unshare --net` (with --map-root-user when not
root), brings up lo, checks that lo is the only interface, then runs
pytest here. Every tor of the tests therefore sees only 127.0.0.1: it can
neither reach nor address anything else, whatever its configuration.
Why a driver rather than a fixture: a namespace is entered by a whole
process before any socket is made, and pytest (its capture, plugins) is
easier to start inside one than to move into one.
"""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MARK = "LORAMESH_TOR_NETNS"


def main():
    if os.environ.get(MARK) != "1":
        unshare = shutil.which("unshare")
        if not unshare:
            sys.exit("tor tests: `unshare` is missing (Debian: apt-get install util-linux)")
        cmd = [unshare, "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
        if subprocess.call(cmd + ["true"]) != 0:
            sys.exit("tor tests: cannot create a network namespace (%s): run as root, as CI does, "
                     "or enable unprivileged user namespaces" % " ".join(cmd))
        env = dict(os.environ, **{MARK: "1"})
        return subprocess.call(cmd + ["--", sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env=env)
    sys.path.insert(0, HERE)
    import testnet
    testnet.lo_up()
    others = [i for i in testnet.interfaces() if i != "lo"]
    if others:
        sys.exit("tor tests: refusing to run, the namespace has interfaces besides lo: %s" % others)
    import pytest
    return pytest.main(["-p", "no:cacheprovider", HERE] + sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
