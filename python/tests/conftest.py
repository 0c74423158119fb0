import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
ROOT = os.path.dirname(PYDIR)
LIB = os.environ.get("LORAMESH_LIB") or os.path.join(ROOT, "build", "libloramesh.so")
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
ARGON = (1, 64, 1)  # argon2id costs small enough for tests
PIN = "1234-test"

if PYDIR not in sys.path:
    sys.path.insert(0, PYDIR)
if not os.path.isfile(LIB):
    raise pytest.UsageError("%s is missing: run `make lib` first" % LIB)
os.environ["LORAMESH_LIB"] = LIB


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory):
    """A throwaway SoftHSM token; returns its PKCS#11 URI (no PIN in it)."""
    d = tmp_path_factory.mktemp("softhsm")
    (d / "tokens").mkdir()
    conf = d / "softhsm2.conf"
    conf.write_text("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n" % (d / "tokens"))
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "pytest", "--pin", PIN,
                    "--so-pin", "12345678"], check=True, stdout=subprocess.DEVNULL)
    return "pkcs11:token=pytest?module-path=" + SOFTHSM


def cli_env(home=None, **extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = PYDIR + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_cli(home, *args, env=None, input=None, check=True):
    p = subprocess.run([sys.executable, "-m", "loramesh", "--home", str(home)] + list(args),
                       env=env or cli_env(), input=input, capture_output=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("loramesh %s: rc %d\n%s%s" % (" ".join(args), p.returncode,
                                                          p.stdout.decode(), p.stderr.decode()))
    return p
