import os
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


def _free_pair():
    import socket
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        try:
            t = socket.socket()
            t.bind(("127.0.0.1", p + 1))
            t.close()
            return p
        except OSError:
            continue


@pytest.fixture(scope="session")
def swtpm(tmp_path_factory):
    """A throwaway swtpm on loopback TCP; returns "tcp:127.0.0.1:PORT"."""
    d = tmp_path_factory.mktemp("swtpm")
    port = _free_pair()
    subprocess.run(["swtpm", "socket", "--tpm2", "--tpmstate", "dir=%s" % d,
                    "--server", "type=tcp,port=%d,bindaddr=127.0.0.1" % port,
                    "--ctrl", "type=tcp,port=%d,bindaddr=127.0.0.1" % (port + 1),
                    "--flags", "not-need-init,startup-clear", "--pid", "file=%s/pid" % d, "--daemon"],
                   check=True)
    yield "tcp:127.0.0.1:%d" % port
    try:
        os.kill(int((d / "pid").read_text()), 15)
    except (OSError, ValueError):
        pass


_next_port = []


def free_udp_port():
    """A UDP port free now and handed out once per run: each pytest-xdist
    worker takes ports from its own range below the kernel's ephemeral
    range (32768-), so parallel workers and the kernel never pick the same."""
    import socket
    if not _next_port:
        worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
        _next_port.append(20000 + 1500 * worker)
    while True:
        p = _next_port[0]
        _next_port[0] += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()


PASS = "pass phrase for tests"


class Node:
    """A CLI node in a temporary home: loramesh run as a separate process,
    its daemon started on demand and stopped at the end."""

    def __init__(self, home, secret_file, env):
        self.home, self.secret_file, self.env = home, secret_file, env
        self.port = None

    def run(self, *args, check=True, input=None, timeout=90):
        p = subprocess.run([sys.executable, "-m", "loramesh", "--home", str(self.home)] + list(args)
                           + ["--passphrase-file", str(self.secret_file)], env=self.env, input=input,
                           capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("loramesh %s: rc %d\n%s%s" % (" ".join(args), p.returncode,
                                                              p.stdout.decode(), p.stderr.decode()))
        return p

    def json(self, *args):
        import json
        return json.loads(self.run("--json", *args).stdout)

    @property
    def addr(self):
        return "udp:127.0.0.1:%d" % self.port

    def card(self):
        import base64
        return base64.b64decode(self.run("card").stdout.strip())

    def stop(self):
        self.run("stop", check=False)


@pytest.fixture
def make_node(tmp_path):
    """make_node(name, *init_args) -> Node on a free UDP port, memory
    keystore unless init_args say otherwise."""
    made = []
    secret = tmp_path / "secret"
    secret.write_text(PASS + "\n")
    secret.chmod(0o600)

    def make(name, *init_args, secret_text=None, udp=True):
        s = secret
        if secret_text is not None:
            s = tmp_path / ("secret-" + name)
            s.write_text(secret_text + "\n")
        n = Node(tmp_path / name, s, cli_env())
        if udp:
            n.port = free_udp_port()
            init_args = init_args + ("--udp", "127.0.0.1:%d" % n.port)
        if not any(a in ("--pkcs11", "--tpm") for a in init_args):
            init_args = init_args + ("--argon2", "1,64,1")
        n.run("init", "--name", name, *init_args)
        made.append(n)
        return n

    yield make
    for n in made:
        n.stop()


def befriend(a, b, verify=True):
    """a and b import each other's cards (as each other's names), with
    addresses, and verify the fingerprints."""
    import json
    for x, y, name in ((a, b, b.home.name), (b, a, a.home.name)):
        card = x.home.parent / ("%s.card" % y.home.name)
        y.run("card", "export", "-o", str(card))
        args = ["contact", "import", str(card), "--as", name]
        if y.port:
            args += ["--addr", y.addr]
        x.run(*args)
        if verify:
            fp = json.loads(y.run("--json", "id").stdout)["fingerprint"]
            x.run("contact", "verify", name, fp)


def assert_sealed(node, texts):
    """No file under the node's directory holds any of texts in clear."""
    import os
    for root, _, names in os.walk(str(node.home)):
        for n in names:
            path = os.path.join(root, n)
            if not os.path.isfile(path):
                continue  # the control socket
            with open(path, "rb") as f:
                data = f.read()
            for t in texts:
                assert t.encode() not in data, "%s holds a message in clear" % path


def history_texts(node, n=1000):
    """(direction, text, state) of the daemon's history, oldest first."""
    import json
    out = node.run("--json", "listen", "--history", str(n), "--duration", "0.5").stdout.decode()
    evs = [json.loads(l) for l in out.splitlines()]
    return [("in" if e["event"] == "message" else "out", e["text"], e.get("state"))
            for e in evs if e.get("history") and e["event"] in ("message", "sent-by-me")]
