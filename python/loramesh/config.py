"""The node's directory: config.toml, the public card, keys, the engine's
state, the daemon's socket.

config.toml is read with tomllib on Python 3.11+; on 3.9/3.10 a small
parser reads the subset written here (tables, dotted tables, string, int
and bool values). Every file is written atomically under a lock: a
temporary file in the same directory, fsync, rename, fsync of the
directory, mode 0600; temporaries a crash left are removed on the next
write.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
import time

try:
    import tomllib as _toml
except ImportError:  # Python < 3.11
    _toml = None


class ConfigError(Exception):
    """config.toml is missing, unreadable or wrong; the message names it."""


def config_home() -> str:
    env = os.environ.get("LORAMESH_HOME")
    if env:
        return os.path.abspath(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "loramesh")


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, mode=0o700, exist_ok=True)
    _clean_temps(d)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-%s-%d-" % (os.path.basename(path), os.getpid()))
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _clean_temps(d: str) -> None:
    """Removes temporaries of write_atomic that a crash left: never renamed
    into place, they are garbage (keys are written by the library, but
    config.toml may hold a pin-value). A temporary is removed once the
    process named in it is gone, or after 60 s (one without a pid)."""
    try:
        names = os.listdir(d)
    except OSError:
        return
    for n in names:
        if not n.startswith(".tmp-"):
            continue
        try:
            pid = int(n.rsplit("-", 2)[1])
            os.kill(pid, 0)
            gone = False
        except (ValueError, IndexError):
            gone = None
        except ProcessLookupError:
            gone = True
        except OSError:
            gone = False
        try:
            if gone or (gone is None and time.time() - os.stat(os.path.join(d, n)).st_mtime > 60):
                os.unlink(os.path.join(d, n))
        except OSError:
            pass


# ---- TOML -------------------------------------------------------------

def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        # JSON string escapes (\" \\ \n \uXXXX) are valid TOML basic strings.
        return json.dumps(v, ensure_ascii=False)
    raise TypeError("cannot write %r to TOML" % (v,))


def dumps_toml(data: dict) -> str:
    out = []

    def table(prefix, d):
        scalars = [(k, v) for k, v in d.items() if not isinstance(v, dict)]
        if prefix and scalars:
            out.append("\n[%s]" % prefix)
        out.extend("%s = %s" % (k, _value(v)) for k, v in scalars)
        for k, v in d.items():
            if isinstance(v, dict):
                table(prefix + "." + k if prefix else k, v)

    table("", data)
    return "\n".join(out).lstrip("\n") + "\n"


_KEY = re.compile(r'^([A-Za-z0-9_-]+)\s*=\s*(.+?)\s*$')


def _loads_subset(text: str) -> dict:
    root = {}
    table = root
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("[") and s.endswith("]"):
            table = root
            for part in s[1:-1].strip().split("."):
                table = table.setdefault(part.strip(), {})
            continue
        m = _KEY.match(s)
        if not m:
            raise ValueError("line %d: not understood" % n)
        key, raw = m.groups()
        if raw.startswith('"'):
            val, end = json.JSONDecoder().raw_decode(raw)
            rest = raw[end:].strip()
            if rest and not rest.startswith("#"):
                raise ValueError("line %d: text after string" % n)
        else:
            raw = raw.split("#", 1)[0].strip()
            if raw in ("true", "false"):
                val = raw == "true"
            elif re.fullmatch(r"[+-]?\d+", raw):
                val = int(raw)
            else:
                raise ValueError("line %d: unsupported value (this Python reads a TOML subset)" % n)
        table[key] = val
    return root


def loads_toml(text: str) -> dict:
    if _toml is not None:
        return _toml.loads(text)
    return _loads_subset(text)


# ---- the node's files -------------------------------------------------

class Home:
    """The node directory."""

    def __init__(self, path: str = None):
        self.path = os.path.abspath(path or config_home())
        self.config_path = os.path.join(self.path, "config.toml")
        self.card_path = os.path.join(self.path, "card")
        self.state_root = os.path.join(self.path, "state")
        self.lock_path = os.path.join(self.path, ".lock")

    def exists(self) -> bool:
        return os.path.exists(self.config_path)

    def state_dir(self, identity: str) -> str:
        """The engine's state of one identity: a new identity (init --force)
        starts afresh, and returns to its own state when chosen again."""
        return os.path.join(self.state_root, identity)

    def socket_path(self) -> str:
        """The daemon's control socket: in $XDG_RUNTIME_DIR when set (and
        the path fits a Unix socket), else in the node directory."""
        p = os.path.join(self.path, "daemon.sock")
        run = os.environ.get("XDG_RUNTIME_DIR")
        if run and os.path.isdir(run):
            p = os.path.join(run, "loramesh-%s.sock" % hashlib.sha256(self.path.encode()).hexdigest()[:16])
        if len(p.encode()) >= 100:
            p = os.path.join(tempfile.gettempdir(), "loramesh-%d-%s.sock" % (
                os.getuid(), hashlib.sha256(self.path.encode()).hexdigest()[:16]))
        return p

    def load_config(self) -> dict:
        _clean_temps(self.path)
        try:
            with open(self.config_path, "r", encoding="utf-8") as f:
                return loads_toml(f.read())
        except FileNotFoundError:
            raise ConfigError("no node in %s: run `loramesh init` first" % self.path)
        except OSError as e:
            raise ConfigError("cannot read %s: %s" % (self.config_path, e.strerror))
        except ValueError as e:
            raise ConfigError("%s is not valid TOML: %s (fix that line; the identity and contacts are not in this file)"
                              % (self.config_path, e))

    def save_config(self, cfg: dict) -> None:
        with self.locked():
            write_atomic(self.config_path, dumps_toml(cfg).encode("utf-8"))

    def locked(self):
        """An exclusive lock on the node directory's lock file, for
        read-modify-write of its files by concurrent commands."""
        return _Lock(self.lock_path)


class _Lock:
    def __init__(self, path):
        self.path = path

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
