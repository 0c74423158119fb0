"""Configuration (TOML) and state files for the CLI.

config.toml is read with tomllib on Python 3.11+; on 3.9/3.10 a small
parser reads the subset written here (tables, string/int/bool values).
Every file is written atomically: temp file in the same directory, fsync,
rename, fsync of the directory; 0600 throughout.
"""
from __future__ import annotations

import json
import os
import re

try:
    import tomllib as _toml
except ImportError:  # Python < 3.11
    _toml = None


def config_home() -> str:
    env = os.environ.get("LORAMESH_HOME")
    if env:
        return env
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "loramesh")


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, mode=0o700, exist_ok=True)
    tmp = os.path.join(d, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
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
    for k, v in data.items():
        if not isinstance(v, dict):
            out.append("%s = %s" % (k, _value(v)))
    for k, v in data.items():
        if isinstance(v, dict):
            out.append("\n[%s]" % k)
            out.extend("%s = %s" % (kk, _value(vv)) for kk, vv in v.items())
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
            table = root.setdefault(s[1:-1].strip(), {})
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
    """The node directory: config.toml, contacts.json, keys/."""

    def __init__(self, path: str = None):
        self.path = path or config_home()
        self.config_path = os.path.join(self.path, "config.toml")
        self.contacts_path = os.path.join(self.path, "contacts.json")

    def exists(self) -> bool:
        return os.path.exists(self.config_path)

    def load_config(self) -> dict:
        with open(self.config_path, "r", encoding="utf-8") as f:
            return loads_toml(f.read())

    def save_config(self, cfg: dict) -> None:
        write_atomic(self.config_path, dumps_toml(cfg).encode("utf-8"))

    def load_contacts(self) -> dict:
        try:
            with open(self.contacts_path, "r", encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def save_contacts(self, contacts: dict) -> None:
        write_atomic(self.contacts_path, (json.dumps(contacts, indent=2, sort_keys=True) + "\n").encode())
