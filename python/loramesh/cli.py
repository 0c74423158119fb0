"""loramesh: command-line messenger node.

One daemon per node owns the identity, the links and the messenger engine;
the commands below talk to it, starting it when needed (it asks for the
node's passphrase, PIN or auth value once, then keeps the identity open).

Exit codes:
  0  success (send: the message was delivered)
  1  other error
  2  usage error
  3  verification failed (bad signature, bad card, fingerprint mismatch)
  4  wrong PIN, passphrase or auth value; locked out
  5  not initialised, no such contact, identity, token or device
  6  not delivered (failed, or not yet delivered when --timeout ran out)
  7  libloramesh.so missing or unusable
"""
from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import shutil
import socket
import sys
import time

from . import __version__, chat, errors, torlink
from .chat import render
from .client import DaemonFailed, NotRunning, connect, read_secret, try_connect
from .config import ConfigError, Home, dumps_toml, loads_toml, write_atomic
from .daemon import Daemon, DaemonError, report
from .identity import SECRET_NAMES, open_identity, open_keystore, secret_needed
from .keys import ContactCard, IdentityKey
from .secret_input import SecretError, has_terminal, prompt
from .text import escape
from .transport import parse_addr

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_VERIFY, EXIT_PIN, EXIT_KEYSTORE, EXIT_NET, EXIT_LIB = range(8)

# Daemon error codes (exception class names) to exit codes.
CODE_EXIT = {"PinError": EXIT_PIN, "LockedError": EXIT_PIN, "BadCardError": EXIT_VERIFY,
             "AuthenticationError": EXIT_VERIFY, "KeyChangedError": EXIT_VERIFY, "ConflictError": EXIT_VERIFY,
             "NotFoundError": EXIT_KEYSTORE, "KeystoreError": EXIT_KEYSTORE, "usage": EXIT_USAGE,
             "LibraryNotFoundError": EXIT_LIB}


class CliError(Exception):
    def __init__(self, msg, code=EXIT_ERROR):
        super().__init__(msg)
        self.code = code


def seconds(s: str) -> float:
    """An argparse type: a number of seconds, not negative."""
    try:
        v = float(s)
    except ValueError:
        v = -1.0
    if not v >= 0:  # also NaN
        raise argparse.ArgumentTypeError("%r is not a number of seconds (0 or more)" % s)
    return v


def exit_code(e: BaseException) -> int:
    if isinstance(e, CliError):
        return e.code
    if isinstance(e, DaemonFailed):
        return CODE_EXIT.get(e.code, EXIT_ERROR)
    if isinstance(e, errors.LibraryNotFoundError):
        return EXIT_LIB
    if isinstance(e, errors.PinError):
        return EXIT_PIN
    if isinstance(e, (errors.BadCardError, errors.AuthenticationError)):
        return EXIT_VERIFY
    if isinstance(e, (errors.KeystoreError, ConfigError, NotRunning)):
        return EXIT_KEYSTORE
    if isinstance(e, SecretError):
        return EXIT_USAGE
    return EXIT_ERROR


class Out:
    def __init__(self, as_json: bool):
        self.json = as_json

    def result(self, data: dict, text: str) -> None:
        if self.json:
            print(json.dumps(data, sort_keys=True))
        elif text:
            print(text)
        sys.stdout.flush()


def secret_source(args):
    if args.secret_file:
        return "file:" + args.secret_file
    if args.secret_env:
        return "env:" + args.secret_env
    if getattr(args, "secret_fd", None) is not None:
        return "fd:%d" % args.secret_fd
    return None


def daemon(args, home, start=True):
    home.load_config()  # a clear error before anything else when not initialised
    return connect(home, secret_source(args), start=start)


# ---- init and identity -------------------------------------------------

def prepare_display_name(name: str) -> str:
    """name as the card carries it (docs/PROTOCOL.md §5), checked before
    anything is created: a refused name is a usage error that says why."""
    try:
        with IdentityKey.generate() as probe, ContactCard(probe.card(name)) as c:
            prepared = c.name
    except errors.InvalidArgumentError as e:
        raise CliError("display name %s refused (%s): use 1-64 bytes of text without control, invisible or blank "
                       "characters (docs/PROTOCOL.md §5)" % (ascii(name), e), EXIT_USAGE)
    if prepared != name:
        print("loramesh: note: the display name is stored as %s" % ascii(prepared), file=sys.stderr)
    return prepared


def _pending_path(home) -> str:
    return os.path.join(home.path, "init.pending")


def _card_matches(home, cfg) -> bool:
    """Whether the card file is the card of the identity cfg names (the
    fingerprint config.toml records; configs from before it: any card)."""
    try:
        with open(home.card_path, "rb") as f, ContactCard(f.read()) as c:
            return cfg["identity"].get("fingerprint", c.fingerprint) == c.fingerprint
    except (OSError, errors.LoraMeshError):
        return False


def cmd_init(args, home, out):
    """Creates the node, or replaces its identity (--force), so that every
    prefix of the run leaves a node that works or that a plain `loramesh
    init` finishes: init.pending (the new configuration, naming a fresh
    identity) is written first; then the identity is created (the old one
    stays, a backup); config.toml, which records the card's fingerprint, is
    switched atomically; the card is written; init.pending goes. `init`
    finds an interrupted run by init.pending, or by a card that is not the
    one config.toml expects, and completes it."""
    try:
        with open(_pending_path(home), "r", encoding="utf-8") as f:
            pending = loads_toml(f.read())
    except FileNotFoundError:
        pending = None
    old = home.load_config() if home.exists() else None
    if pending is None and old and not args.force:
        if _card_matches(home, old):
            raise CliError("%s already holds a node (`loramesh id` shows it); `loramesh init --force` replaces "
                           "its identity and keeps the old one as a backup" % home.path, EXIT_USAGE)
        pending = old  # config.toml switched, its card not yet written
    if old:
        try:
            try_connect(home).close()
            raise CliError("the node's daemon is running: stop it first with `loramesh stop`", EXIT_USAGE)
        except NotRunning:
            pass
    if pending is not None:
        cfg = pending
        print("loramesh: finishing an interrupted `loramesh init` (identity %r)" % cfg["identity"]["name"],
              file=sys.stderr)
    else:
        cfg = _new_config(args, home, old)
    ident = cfg["identity"]
    os.makedirs(home.path, mode=0o700, exist_ok=True)
    need = secret_needed(ident)
    secret = None
    if need:
        secret = read_secret(need[0], secret_source(args), confirm=True, allow_empty=need[1])
        if need[0] == SECRET_NAMES["tpm"] and not secret:
            print("loramesh: warning: no auth value: the TPM key is usable by anyone who can reach the TPM",
                  file=sys.stderr)
    with open_keystore(cfg, secret) as ks:
        taken = set(ks.list())
        if pending is None:
            ident["name"] = next(n for n in ["node"] + ["node-%d" % i for i in range(2, 1000)] if n not in taken)
            write_atomic(_pending_path(home), dumps_toml(cfg).encode("utf-8"))
        with (ks.load if ident["name"] in taken else ks.generate)(ident["name"]) as idk:
            card = idk.card(ident["display_name"])
    with ContactCard(card) as c:
        ident["fingerprint"] = fp = c.fingerprint
    home.save_config(cfg)
    write_atomic(home.card_path, card, 0o644)
    try:
        os.unlink(_pending_path(home))
    except FileNotFoundError:
        pass
    name = ident["name"]
    info = {"name": ident["display_name"], "fingerprint": fp, "keystore": ident["keystore"], "identity": name,
            "config": home.config_path}
    text = "%s identity %r in the %s keystore\nfingerprint %s\nconfig %s" % (
        "created" if pending is None else "finished setting up", name, ident["keystore"], fp, home.config_path)
    if old and old["identity"].get("name") != name:
        info["backup"] = old["identity"].get("name")
        text += "\nthe previous identity %r is kept in the keystore as a backup" % info["backup"]
    out.result(info, text)


def _new_config(args, home, old) -> dict:
    """config.toml for a new identity, from the options (after the
    confirmation a replacement needs)."""
    display = prepare_display_name(args.name or os.environ.get("USER") or socket.gethostname())
    if old and not args.yes:
        if not has_terminal():
            raise CliError("replacing an identity needs confirmation: run on a terminal, or add --yes", EXIT_USAGE)
        with prompt("type 'replace' to replace this node's identity (the old one is kept as a backup)") as ans:
            if bytes(ans) != b"replace":
                raise CliError("not replaced", EXIT_USAGE)
    if args.pkcs11:
        ident = {"keystore": "pkcs11", "uri": args.pkcs11}
        conf = args.softhsm2_conf or os.environ.get("SOFTHSM2_CONF")
        if conf:
            ident["softhsm2_conf"] = os.path.abspath(conf)
        if re.search(r"[?&;]pin-value=", args.pkcs11):
            print("loramesh: warning: a pin-value in the URI is kept in config.toml and shows in the process "
                  "list; prefer pin-source=file:... or the prompt", file=sys.stderr)
    elif args.tpm:
        ident = {"keystore": "tpm", "device": args.tpm,
                 "key_dir": os.path.abspath(args.tpm_key_dir or os.path.join(home.path, "tpm-keys"))}
    else:
        ident = {"keystore": "memory", "path": os.path.join(home.path, "keys")}
    ident["display_name"] = display
    cfg = {"identity": ident}
    if args.argon2:
        t, m, p = (int(x) for x in args.argon2.split(","))
        cfg["argon2"] = {"time": t, "memory_kib": m, "threads": p}
    cfg["link"] = (old or {}).get("link") or {}
    if args.udp:
        cfg["link"]["udp"] = {"bind": args.udp}
    if args.serial:
        cfg["link"]["kiss"] = {"serial": args.serial, "baud": 9600}
    if not cfg["link"]:
        cfg["link"]["udp"] = {"bind": "0.0.0.0:7000"}
    return cfg


def my_card(home) -> bytes:
    cfg = home.load_config()
    try:
        with open(home.card_path, "rb") as f:
            card = f.read()
    except OSError as e:
        raise CliError("cannot read %s: %s (run `loramesh init` to make it again)"
                       % (home.card_path, e.strerror), EXIT_KEYSTORE)
    if not _card_matches(home, cfg):
        raise CliError("%s is not the card of the identity config.toml names (an interrupted `loramesh init`): "
                       "run `loramesh init` to finish it" % home.card_path, EXIT_KEYSTORE)
    return card


def cmd_id(args, home, out):
    cfg = home.load_config()
    with ContactCard(my_card(home)) as c:
        info = {"name": c.name, "fingerprint": c.fingerprint, "keystore": cfg["identity"]["keystore"],
                "signing_key": c.signing_key.hex(),
                "dh_keys": {"x25519" if s == 1 else "p256": k.hex() for s, k in c.dh_keys.items()}}
    rows = ["name        %s" % escape(info["name"]), "fingerprint %s" % info["fingerprint"],
            "keystore    %s" % info["keystore"], "signing key %s" % info["signing_key"]]
    rows += ["%-11s %s" % (k, v) for k, v in info["dh_keys"].items()]
    out.result(info, "\n".join(rows))


def cmd_card(args, home, out):
    card = tor_card(args, home) or my_card(home)
    if args.output:
        write_atomic(args.output, card, 0o644)
        out.result({"file": args.output}, "card written to %s" % args.output)
    else:
        out.result({"card": base64.b64encode(card).decode()}, base64.b64encode(card).decode())


def cmd_identity_export(args, home, out):
    cfg = home.load_config()
    ident = cfg["identity"]
    if ident["keystore"] == "memory":
        src = os.path.join(ident["path"], ident["name"] + ".lmid")
    elif ident["keystore"] == "tpm":
        src = os.path.join(ident["key_dir"], ident["name"] + ".pem")
    else:
        raise CliError("a PKCS#11 identity stays on its token and cannot be exported", EXIT_USAGE)
    if os.path.exists(args.file):
        raise CliError("%s exists: choose another file" % args.file, EXIT_USAGE)
    shutil.copyfile(src, args.file)
    os.chmod(args.file, 0o600)
    what = "sealed under your passphrase" if ident["keystore"] == "memory" else \
        "usable only with this TPM (and its auth value)"
    out.result({"file": args.file}, "identity exported to %s (%s)" % (args.file, what))


def cmd_identity_import(args, home, out):
    cfg = home.load_config()
    ident = cfg["identity"]
    if ident["keystore"] not in ("memory", "tpm"):
        raise CliError("identity import works for memory and TPM nodes", EXIT_USAGE)
    d, ext = (ident["path"], ".lmid") if ident["keystore"] == "memory" else (ident["key_dir"], ".pem")
    name = next(n for n in ["imported-%d" % i for i in range(1, 1000)] if not os.path.exists(os.path.join(d, n + ext)))
    os.makedirs(d, mode=0o700, exist_ok=True)
    with open(args.file, "rb") as f:
        data = f.read()
    write_atomic(os.path.join(d, name + ext), data)
    out.result({"identity": name}, "imported as %r; switch to it with `loramesh identity use %s`" % (name, name))


def cmd_identity_use(args, home, out):
    """Makes another identity of the keystore the node's (a backup, or an
    imported one): it must open with the node's secret; the card is made
    anew; config.toml switches atomically."""
    try:
        try_connect(home).close()
        raise CliError("the node's daemon is running: stop it first with `loramesh stop`", EXIT_USAGE)
    except NotRunning:
        pass
    cfg = home.load_config()
    cfg["identity"]["name"] = args.name
    need = secret_needed(cfg["identity"])
    secret = read_secret(need[0], secret_source(args), allow_empty=need[1]) if need else None
    with open_identity(cfg, secret) as idk:
        card = idk.card(prepare_display_name(cfg["identity"].get("display_name") or "node"))
    with ContactCard(card) as c:  # config.toml first, as init does: a plain `init` writes the card
        cfg["identity"]["fingerprint"] = c.fingerprint
    home.save_config(cfg)
    write_atomic(home.card_path, card, 0o644)
    with ContactCard(card) as c:
        out.result({"identity": args.name, "fingerprint": c.fingerprint},
                   "the node now uses identity %r, fingerprint %s" % (args.name, c.fingerprint))


# ---- links -------------------------------------------------------------

def cmd_link(args, home, out):
    with home.locked():
        cfg = home.load_config()
        links = cfg.setdefault("link", {})
        if args.kind == "udp":
            parse_addr(args.where)
            links["udp"] = {"bind": args.where}
        elif args.kind == "kiss":
            links["kiss"] = {"serial": args.where, "baud": args.baud, "frame": args.frame}
        elif args.kind == "websocket":  # the bridge for browser nodes
            parse_addr(args.where)
            links["websocket"] = {"bind": args.where}
        elif args.kind == "remove":
            if links.pop(args.where, None) is None:
                raise CliError("no link %r" % args.where, EXIT_USAGE)
        write_atomic(home.config_path, dumps_toml(cfg).encode())
    out.result({"link": cfg["link"]}, "links: %s (restart the daemon to apply: `loramesh stop`)"
               % ", ".join("%s %s" % (k, v.get("bind") or v.get("serial")) for k, v in cfg["link"].items()))


# ---- contacts ----------------------------------------------------------

def read_card_file(path: str) -> bytes:
    try:
        data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    except OSError as e:
        raise CliError("cannot read %s: %s" % (path, e.strerror), EXIT_USAGE)
    if data[:1] == b"\x83":
        return data
    try:
        return base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CliError("%s: neither a card nor base64 text" % path, EXIT_VERIFY)


def cmd_contact_import(args, home, out):
    card = read_card_file(args.file)
    c = daemon(args, home)
    r = c.request("contact_import", card=base64.b64encode(card).decode(), contact=args.as_name,
                  replace=args.replace, addr=args.addr)
    name = r["contact"]
    if r["result"] == "unchanged":
        text = "%s already holds this card (nothing changed)" % name
    elif r["result"] == "replaced":
        text = ("WARNING: %s's key changed: it was %s, it is now %s. Verify the new one before trusting it:\n"
                "`loramesh contact verify %s`" % (name, r.get("old_fingerprint"), r["fingerprint"], name))
    else:
        text = ("imported %s, fingerprint %s\ncompare it with %s out of band, then run "
                "`loramesh contact verify %s`" % (name, r["fingerprint"], name, name))
    out.result(r, text)


def fmt_contact(r) -> str:
    mark = "verified" if r["verified"] else "NOT verified"
    return "%-16s %s  %-12s  %s%s" % (r["contact"], r["fingerprint"], mark, escape(r["name"]),
                                     "  (%d queued)" % r["queued"] if r["queued"] else "")


def cmd_contact_list(args, home, out):
    rows = daemon(args, home).request("contacts")["contacts"]
    out.result({"contacts": rows}, "\n".join(fmt_contact(r) for r in rows) or
               "no contacts (import a card with `loramesh contact import FILE`)")


def cmd_contact_show(args, home, out):
    r = daemon(args, home).request("contact_show", contact=args.contact)
    keys = ("contact", "name", "fingerprint", "verified", "session", "queued", "addr", "onion", "signing_key")
    text = "\n".join("%-11s %s" % (k, escape(str(r[k]))) for k in keys if k in r)
    if r.get("addrs"):
        text += "\n%-11s %s" % ("reached at", escape(", ".join(r["addrs"])))
    text += "".join("\n%-11s %s" % (k, v) for k, v in r["dh_keys"].items())
    out.result(r, text)


def cmd_contact_remove(args, home, out):
    out.result(daemon(args, home).request("contact_remove", contact=args.contact), "removed %s" % args.contact)


def cmd_contact_verify(args, home, out):
    fp = args.fingerprint
    if fp is None:
        if not has_terminal():
            raise CliError("give the fingerprint %s read to you: `loramesh contact verify %s XXXX-XXXX-XXXX-XXXX`"
                           % (args.contact, args.contact), EXIT_USAGE)
        print("Ask %s to read their fingerprint to you (`loramesh id` on their side) and type it." % args.contact)
        fp = input("Fingerprint: ")
    c = daemon(args, home)
    try:
        c.request("contact_verify", contact=args.contact, fingerprint=fp)
    except DaemonFailed as e:
        if e.code == "AuthenticationError":
            raise CliError("the fingerprint does NOT match %s's card: do not trust this contact until you "
                           "find out why (a wrong card, or someone else's)" % args.contact, EXIT_VERIFY)
        raise
    out.result({"contact": args.contact, "verified": True}, "%s verified" % args.contact)


def cmd_contact_addr(args, home, out):
    r = daemon(args, home).request("contact_addr", contact=args.contact, addr=args.addr)
    out.result(r, "%s: %s" % (args.contact, args.addr))


# ---- daemon ------------------------------------------------------------

def cmd_daemon(args, home, out):
    """Runs the daemon in the foreground (what `start` runs in the background)."""
    status_fd = args.status_fd
    try:
        cfg = home.load_config()
        if args.tor:
            cfg.setdefault("tor", {})["enabled"] = True
        need = secret_needed(cfg["identity"])
        secret = read_secret(need[0], secret_source(args), allow_empty=need[1]) if need else None
        idk = open_identity(cfg, secret)
        d = Daemon(home, cfg, idk)
    except (errors.LoraMeshError, DaemonError, SecretError, ConfigError, OSError, ValueError) as e:
        report(status_fd, "ERROR %s %s" % (type(e).__name__, str(e).replace("\n", " ")))
        raise
    report(status_fd, "READY")
    d.run()


def cmd_start(args, home, out):
    try:
        c = try_connect(home)
        st = c.request("status")
        out.result(st, "the daemon already runs (pid %d)" % st["pid"])
        return
    except NotRunning:
        pass
    c = daemon(args, home)
    st = c.request("status")
    out.result(st, "daemon started (pid %d), node %s" % (st["pid"], st["fingerprint"]))


def cmd_stop(args, home, out):
    try:
        c = try_connect(home)
    except NotRunning:
        out.result({"running": False}, "no daemon runs for %s" % home.path)
        return
    pid = c.request("status")["pid"]
    c.request("stop")
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    out.result({"stopped": pid}, "daemon %d stopped" % pid)


def cmd_status(args, home, out):
    home.load_config()
    try:
        st = try_connect(home).request("status")
    except NotRunning as e:
        out.result({"running": False}, str(e))
        return
    links = ", ".join("%s %s" % kv for kv in st["links"].items())
    text = "daemon %d: node %s (%s, %s keystore)\nlinks: %s\ncontacts: %d, messages waiting: %d" % (
        st["pid"], escape(st["name"]), st["fingerprint"], st["keystore"], links, st["contacts"], st["queued"])
    if "tor" in st:
        text += "\n" + tor_status_text(st["tor"])
    out.result(dict(st, running=True), text)


# ---- Tor ---------------------------------------------------------------

def tor_card(args, home):
    """With Tor on, this node's card carries its onion address, which only
    the daemon knows (and signs with the identity it holds): ask it."""
    if not torlink.enabled(home.load_config()):
        return None
    return base64.b64decode(daemon(args, home).request("card")["card"])


def tor_status_text(t: dict) -> str:
    where = "attached to %s" % t["control"] if t["mode"] == "attached" else \
        "own tor (pid %s, %s)" % (t.get("pid") or "-", t.get("data_dir"))
    lines = ["tor: %s, bootstrapped %d%%%s" % (where, t["bootstrap"],
                                               " (%s)" % t["phase"] if t["bootstrap"] < 100 and t["phase"] else "")]
    lines.append("onion: %s" % (t["onion"] or "not published yet"))
    if t.get("problem"):
        lines.append("tor problem: %s" % t["problem"])
    return "\n".join(lines)


def cmd_tor(args, home, out):
    action = args.action or "status"
    if action == "status":
        t = torlink.settings(home.load_config())
        info = {"settings": t}
        text = "Tor: %s" % ("on" if t["enabled"] else "off (turn it on with `loramesh tor on`)")
        if t["enabled"]:
            text += ", %s" % ("attached to tor's control port %s" % t["control"] if t["control"] else
                              "own tor in %s" % torlink.data_dir(home))
            if t["torrc"]:
                text += ", extra torrc lines from %s" % t["torrc"]
        try:
            st = try_connect(home).request("status")
        except NotRunning:
            st = None
        if st is not None and "tor" in st:
            info["daemon"] = st["tor"]
            text += "\n" + tor_status_text(st["tor"])
        elif st is not None and t["enabled"]:
            text += "\nthe daemon runs without Tor: restart it to apply (`loramesh stop`)"
        out.result(info, text)
        return
    with home.locked():
        cfg = home.load_config()
        t = cfg.setdefault("tor", {})
        if action == "off":
            t["enabled"] = False
        else:
            try:  # a clear error now, not at the daemon's start
                if args.attach is not None:
                    torlink.check_control_addr(args.attach)
                if args.torrc:
                    torlink.read_torrc(args.torrc)
            except torlink.TorLinkError as e:
                raise CliError(str(e), EXIT_USAGE)
            if args.deadline is not None and not 60 <= args.deadline <= 30 * 86400:
                raise CliError("--deadline is seconds, from 60 to 2592000 (30 days)", EXIT_USAGE)
            t["enabled"] = True
            if args.attach is not None:
                t["control"] = args.attach
            if args.own:
                t["control"] = ""
            if args.torrc is not None:
                t["torrc"] = os.path.abspath(args.torrc) if args.torrc else ""
            if args.binary is not None:
                t["binary"] = args.binary
            if args.deadline is not None:
                t["deadline"] = args.deadline
            if not t.get("control"):
                torlink.T.find_tor(t.get("binary") or "tor")  # our own tor needs one
        write_atomic(home.config_path, dumps_toml(cfg).encode())
    text = "Tor %s" % ("off" if action == "off" else "on")
    try:
        try_connect(home).close()
        text += " (restart the daemon to apply: `loramesh stop`)"
    except NotRunning:
        pass
    if action == "on":
        text += "\nyour card will carry your onion address: give contacts the new one (`loramesh card`)"
    out.result({"tor": torlink.settings(cfg)}, text)


# ---- messaging ---------------------------------------------------------

def cmd_send(args, home, out):
    text = " ".join(args.message)
    if not text:
        raise CliError("empty message", EXIT_USAGE)
    c = daemon(args, home)
    c.request("contact_show", contact=args.contact)  # a clear error first
    mid = c.request("send", contact=args.contact, text=text)["id"]
    if args.no_wait:
        out.result({"id": mid, "state": "queued"}, "queued as message %d" % mid)
        return
    deadline = time.monotonic() + args.timeout
    state, reason = "queued", ""
    progress = sys.stderr.isatty() and not out.json
    while state not in ("delivered", "failed") and time.monotonic() < deadline:
        if progress:
            print("\r%s message %d ... %s   " % (escape(args.contact), mid, state), end="", file=sys.stderr, flush=True)
        for ev in c.events(0.5):
            if ev.get("event") == "delivery" and ev.get("id") == mid:
                state, reason = ev["state"], ev.get("reason", "")
    if progress:
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    data = {"id": mid, "state": state}
    if reason:
        data["reason"] = reason
    if state == "delivered":
        out.result(data, "delivered to %s" % escape(args.contact))
        return
    if state == "failed":
        raise CliError("message to %s failed: %s" % (escape(args.contact), escape(reason)), EXIT_NET)
    out.result(data, "")
    raise CliError("message %d to %s not delivered yet (%s); the daemon keeps trying, see "
                   "`loramesh listen`" % (mid, escape(args.contact), state), EXIT_NET)


def cmd_listen(args, home, out):
    c = daemon(args, home)
    c.request("subscribe", contact=args.contact, history=args.history)
    got, states = 0, {}
    end = time.monotonic() + args.duration if args.duration else None
    while (args.count is None or got < args.count) and (end is None or time.monotonic() < end):
        for ev in c.events(1.0):
            if out.json:
                print(json.dumps(ev, sort_keys=True), flush=True)
            else:
                for l in render(ev, ev.get("contact", ""), states):
                    print(l, flush=True)
            got += ev.get("event") == "message"


def cmd_chat(args, home, out):
    c = daemon(args, home)
    info = c.request("contact_show", contact=args.contact)
    if sys.stdin.isatty() and sys.stdout.isatty():
        return chat.screen(c, args.contact, info["verified"])
    rc = chat.line_mode(c, args.contact, args.linger)
    if rc:
        raise CliError("some messages to %s were not delivered" % escape(args.contact), rc)


def cmd_sign(args, home, out):
    with open(args.file, "rb") as f:
        data = f.read()
    sig = bytes.fromhex(daemon(args, home).request("sign", data=base64.b64encode(data).decode())["signature"])
    path = args.output or args.file + ".sig"
    write_atomic(path, sig, 0o644)
    out.result({"signature": sig.hex(), "file": path}, "signature written to %s" % path)


def cmd_verify(args, home, out):
    with open(args.file, "rb") as f:
        data = f.read()
    with open(args.signature, "rb") as f:
        sig = f.read()
    try:
        daemon(args, home).request("verify", contact=args.contact, data=base64.b64encode(data).decode(),
                                   signature=sig.hex())
    except DaemonFailed as e:
        if e.code in ("AuthenticationError", "InvalidArgumentError"):
            raise CliError("BAD signature: %s was not signed by %s" % (args.file, args.contact), EXIT_VERIFY)
        raise
    out.result({"valid": True, "contact": args.contact}, "good signature from %s" % args.contact)


# ---- argument parsing ---------------------------------------------------

def build_parser():
    S = argparse.SUPPRESS
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=S, help="node directory (default $LORAMESH_HOME or ~/.config/loramesh)")
    common.add_argument("--json", action="store_true", default=S, help="machine-readable output")
    common.add_argument("--debug", action="store_true", default=S, help="tracebacks on errors")
    common.add_argument("--passphrase-file", "--pin-file", "--auth-file", dest="secret_file", default=S,
                        metavar="FILE", help="read the passphrase / PIN / TPM auth value from FILE")
    common.add_argument("--passphrase-env", "--pin-env", "--auth-env", dest="secret_env", default=S,
                        metavar="NAME", help="read it from environment variable NAME (not recommended)")
    p = argparse.ArgumentParser(prog="loramesh", parents=[common], description="LoRa mesh messenger node",
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version="loramesh %s" % __version__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(sp, name, fn, help):
        x = sp.add_parser(name, parents=[common], help=help, description=help)
        x.set_defaults(func=fn)
        return x

    x = add(sub, "init", cmd_init, "create this node's identity")
    g = x.add_mutually_exclusive_group()
    g.add_argument("--pkcs11", metavar="URI", help="identity on a PKCS#11 token (RFC 7512 URI)")
    g.add_argument("--tpm", metavar="DEVICE", help="identity in a TPM (/dev/tpmrm0, unix:PATH, tcp:HOST:PORT)")
    x.add_argument("--softhsm2-conf", metavar="FILE", help="SoftHSM2 configuration (saved for the daemon)")
    x.add_argument("--tpm-key-dir", metavar="DIR")
    x.add_argument("--name", help="display name on your contact card")
    x.add_argument("--udp", metavar="HOST:PORT", help="UDP link address (default 0.0.0.0:7000)")
    x.add_argument("--serial", metavar="DEVICE", help="KISS TNC on a serial port (auto: /dev/serial/by-id)")
    x.add_argument("--argon2", metavar="T,MKIB,P", help="argon2id costs for the identity file (tests only)")
    x.add_argument("--force", action="store_true", help="replace the identity (the old one is kept)")
    x.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    add(sub, "id", cmd_id, "show this node's name, fingerprint and keys")
    x = add(sub, "card", cmd_card, "export this node's contact card")
    x.add_argument("action", nargs="?", choices=["export"], default="export")
    x.add_argument("-o", "--output", help="write the binary card to FILE (default: base64 on stdout)")

    x = add(sub, "identity", None, "export or import the identity (memory and TPM nodes)")
    isub = x.add_subparsers(dest="action", metavar="ACTION")
    isub.required = True
    add(isub, "export", cmd_identity_export, "copy the sealed identity file").add_argument("file")
    add(isub, "import", cmd_identity_import, "add an exported identity to the keystore").add_argument("file")
    add(isub, "use", cmd_identity_use, "make another identity of the keystore this node's").add_argument("name")

    x = add(sub, "contact", None, "manage contacts: import, list, show, verify, addr, remove")
    csub = x.add_subparsers(dest="action", metavar="ACTION")
    csub.required = True
    y = add(csub, "import", cmd_contact_import, "import a card file (binary or base64; - for stdin)")
    y.add_argument("file")
    y.add_argument("--as", dest="as_name", metavar="NAME", help="local contact name (default: the card's name)")
    y.add_argument("--replace", action="store_true", help="replace a contact of that name with another identity")
    y.add_argument("--addr", metavar="udp:HOST:PORT|kiss|ws", help="where the contact is reached")
    add(csub, "list", cmd_contact_list, "list contacts")
    add(csub, "show", cmd_contact_show, "show a contact's card and state").add_argument("contact")
    add(csub, "remove", cmd_contact_remove, "forget a contact").add_argument("contact")
    y = add(csub, "verify", cmd_contact_verify, "mark verified after comparing fingerprints out of band")
    y.add_argument("contact")
    y.add_argument("fingerprint", nargs="?", help="as read to you (asked for when omitted)")
    y = add(csub, "addr", cmd_contact_addr, "set where a contact is reached")
    y.add_argument("contact")
    y.add_argument("addr", metavar="udp:HOST:PORT|kiss|ws")

    x = add(sub, "link", cmd_link, "configure links: udp HOST:PORT, kiss DEVICE, websocket HOST:PORT, remove NAME")
    x.add_argument("kind", choices=["udp", "kiss", "websocket", "remove"])
    x.add_argument("where", metavar="ADDRESS|DEVICE|NAME")
    x.add_argument("--baud", type=int, default=9600)
    x.add_argument("--frame", type=int, default=255, help="radio frame size (KISS)")

    x = add(sub, "tor", cmd_tor, "reach contacts over Tor: tor on|off|status")
    x.add_argument("action", nargs="?", choices=["on", "off", "status"], help="default: status")
    x.add_argument("--attach", metavar="HOST:PORT|PATH", help="use a running tor's control port (cookie "
                   "authentication) instead of starting our own")
    x.add_argument("--own", action="store_true", help="start and supervise our own tor again (the default)")
    x.add_argument("--torrc", metavar="FILE", help="extra torrc lines for our own tor (bridges, a test "
                   "network); '' removes them")
    x.add_argument("--binary", metavar="PATH", help="the tor program (default: tor in PATH)")
    x.add_argument("--deadline", type=int, metavar="SECONDS", help="how long a message over Tor may wait "
                   "for delivery before it fails (default 86400)")

    x = add(sub, "daemon", cmd_daemon, "run the node's daemon in the foreground")
    x.add_argument("--tor", action="store_true", help="run the Tor link, whatever config.toml says")
    x.add_argument("--secret-fd", type=int, help=S)
    x.add_argument("--status-fd", type=int, help=S)
    add(sub, "start", cmd_start, "start the daemon in the background")
    add(sub, "stop", cmd_stop, "stop the daemon")
    add(sub, "status", cmd_status, "show the daemon's state")

    x = add(sub, "send", cmd_send, "send a message and wait until it is delivered")
    x.add_argument("contact")
    x.add_argument("message", nargs="+", help="the words of one message")
    x.add_argument("--no-wait", action="store_true", help="return once queued")
    x.add_argument("--timeout", type=seconds, default=60.0, help="seconds to wait for delivery (default 60)")
    x = add(sub, "listen", cmd_listen, "print messages and events")
    x.add_argument("--contact", help="only this contact's")
    x.add_argument("--count", type=int, help="exit after N messages")
    x.add_argument("--duration", type=float, help="exit after SECONDS")
    x.add_argument("--history", type=int, default=0, metavar="N", help="first show the last N events")
    x = add(sub, "chat", cmd_chat, "chat with a contact")
    x.add_argument("contact")
    x.add_argument("--linger", type=float, default=30.0, help="without a terminal: seconds to wait for "
                   "delivery after the end of input")

    x = add(sub, "sign", cmd_sign, "sign a file with this node's identity")
    x.add_argument("file")
    x.add_argument("-o", "--output", help="signature file (default FILE.sig)")
    x = add(sub, "verify", cmd_verify, "verify a contact's signature on a file")
    x.add_argument("file")
    x.add_argument("signature")
    x.add_argument("--contact", required=True)
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    for k in ("home", "secret_file", "secret_env", "json", "debug"):
        if not hasattr(args, k):
            setattr(args, k, None)
    if args.func is None:
        p.parse_args((argv or sys.argv[1:]) + ["--help"])
    out = Out(bool(args.json))
    home = Home(args.home)
    try:
        args.func(args, home, out)
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except (errors.LoraMeshError, CliError, DaemonError, DaemonFailed, NotRunning, ConfigError, SecretError,
            OSError, ValueError) as e:
        if args.debug:
            raise
        msg = str(e) or type(e).__name__
        if isinstance(e, OSError) and e.filename and e.strerror:
            msg = "%s: %s" % (e.filename, e.strerror)
        if out.json:
            print(json.dumps({"error": msg, "exit": exit_code(e)}), file=sys.stderr)
        else:
            print("loramesh: error: %s" % msg, file=sys.stderr)
        return exit_code(e)


if __name__ == "__main__":
    sys.exit(main())
