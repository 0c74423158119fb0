"""loramesh: command-line messenger node.

Exit codes:
  0  success
  1  other error
  2  usage error
  3  verification failed (bad signature, bad card, fingerprint mismatch)
  4  wrong PIN, passphrase or auth value; PIN locked
  5  not initialised, no such contact, identity or token; keystore failure
  6  network: no reply in time, or a peer's packet failed to authenticate
  7  libloramesh.so missing or unusable (build it with `make lib`)
"""
from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import json
import os
import re
import selectors
import socket
import sys
import time

from . import _lib, errors
from .config import Home, write_atomic
from .errors import LoraMeshError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_VERIFY, EXIT_PIN, EXIT_KEYSTORE, EXIT_NET, EXIT_LIB = range(8)


class CliError(Exception):
    def __init__(self, msg, code=EXIT_ERROR):
        super().__init__(msg)
        self.code = code


def exit_code(e: BaseException) -> int:
    if isinstance(e, CliError):
        return e.code
    if isinstance(e, errors.LibraryNotFoundError):
        return EXIT_LIB
    if isinstance(e, errors.PinError):
        return EXIT_PIN
    if isinstance(e, (errors.BadCardError, errors.AuthenticationError)):
        return EXIT_VERIFY
    if isinstance(e, (errors.KeystoreError, FileNotFoundError)):
        return EXIT_KEYSTORE
    if isinstance(e, (TimeoutError, ConnectionError)):
        return EXIT_NET
    return EXIT_ERROR


# ---- output -----------------------------------------------------------

class Out:
    def __init__(self, as_json: bool):
        self.json = as_json

    def result(self, data: dict, text: str) -> None:
        if self.json:
            print(json.dumps(data, sort_keys=True))
        else:
            print(text)
        sys.stdout.flush()

    def event(self, ev, me=None) -> None:
        if self.json:
            print(json.dumps(ev.as_dict(), sort_keys=True))
        elif ev.kind == "message":
            print("[%s] %s" % (ev.contact, ev.text))
        elif ev.kind == "sent":
            print("[me -> %s] %s" % (ev.contact, ev.text))
        elif ev.kind == "session":
            print("* secure session with %s (%s)" % (ev.contact, ev.detail))
        elif ev.kind == "dropped":
            print("! ignored packet from %s: %s" % (fmt_addr(ev.addr), ev.detail), file=sys.stderr)
        else:
            print("* %s" % (ev.detail or ev.kind))
        sys.stdout.flush()


def fmt_addr(a):
    return "%s:%d" % a if isinstance(a, tuple) else str(a)


# ---- secrets ----------------------------------------------------------

def read_secret(args, what: str, confirm=False, allow_empty=False):
    """A bytearray from --*-file, --*-env or a prompt; never echoed."""
    if getattr(args, "secret_file", None):
        buf = bytearray(os.path.getsize(args.secret_file) + 1)
        with open(args.secret_file, "rb", buffering=0) as f:
            n = f.readinto(buf)
        del buf[n:]
        while buf and buf[-1:] in (b"\n", b"\r"):
            del buf[-1:]
    elif getattr(args, "secret_env", None):
        v = os.environb.get(os.fsencode(args.secret_env))
        if v is None:
            raise CliError("environment variable %s is not set" % args.secret_env, EXIT_USAGE)
        buf = bytearray(v)
    else:
        if not sys.stdin.isatty():
            raise CliError("no %s: no terminal to prompt on; use --%s-file or --%s-env"
                           % (what, what.split()[-1], what.split()[-1]), EXIT_USAGE)
        buf = bytearray(getpass.getpass("%s: " % what.capitalize()).encode("utf-8"))
        if confirm:
            again = bytearray(getpass.getpass("Repeat %s: " % what).encode("utf-8"))
            same = again == buf
            from ._capi import secure_wipe
            secure_wipe(again)
            if not same:
                secure_wipe(buf)
                raise CliError("the two entries differ", EXIT_USAGE)
    if not buf and not allow_empty:
        raise CliError("empty %s" % what, EXIT_USAGE)
    return buf


# ---- identity and contacts ----------------------------------------------

def open_keystore(args, cfg, create=False):
    from .keys import MemoryKeystore, Pkcs11Keystore, TpmKeystore
    ident = cfg["identity"]
    kind = ident["keystore"]
    if kind == "memory":
        pw = read_secret(args, "passphrase", confirm=create and not (args.secret_file or args.secret_env))
        a = cfg.get("argon2", {})
        return MemoryKeystore(ident["path"], pw, (a.get("time", 0), a.get("memory_kib", 0), a.get("threads", 0)))
    if kind == "pkcs11":
        uri = ident["uri"]
        pin = None
        if not re.search(r"[?&;]pin-(source|value)=", uri) or args.secret_file or args.secret_env:
            pin = read_secret(args, "token PIN")
        return Pkcs11Keystore(uri, pin)
    if kind == "tpm":
        auth = read_secret(args, "TPM key auth", allow_empty=True)
        return TpmKeystore(ident["device"], auth, ident["key_dir"])
    raise CliError("unknown keystore %r in config" % kind)


def load_identity(args, home):
    if not home.exists():
        raise CliError("no node in %s: run `loramesh init` first" % home.path, EXIT_KEYSTORE)
    cfg = home.load_config()
    ks = open_keystore(args, cfg)
    try:
        ident = ks.load(cfg["identity"]["name"])
    except BaseException:
        ks.close()
        raise
    # Kept open with the identity: the TPM backend forgets the key's auth
    # value when its keystore closes (capi issue, see the report).
    ident.owned_keystore = ks
    return cfg, ident


def contact_cards(home, names=None):
    from .keys import ContactCard
    entries = home.load_contacts()
    out = {}
    for name, e in entries.items():
        if names is None or name in names:
            out[name] = ContactCard(base64.b64decode(e["card"]))
    return out


def need_contact(home, name):
    entries = home.load_contacts()
    if name not in entries:
        raise CliError("no contact %r (see `loramesh contact list`)" % name, EXIT_KEYSTORE)
    return entries[name]


def read_card_bytes(path):
    data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    from . import _capi
    try:
        if _capi.packet_kind(data) == _lib.PACKET_CARD:
            return data
    except LoraMeshError:
        pass
    try:
        return base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CliError("%s: neither a card nor base64 text" % path, EXIT_VERIFY)


# ---- commands -----------------------------------------------------------

def cmd_init(args, home, out):
    if home.exists() and not args.force:
        raise CliError("%s already exists (use --force to start over)" % home.config_path, EXIT_USAGE)
    name = args.identity
    display = args.name or os.environ.get("USER") or socket.gethostname()
    if args.pkcs11:
        ident = {"keystore": "pkcs11", "uri": args.pkcs11}
    elif args.tpm:
        ident = {"keystore": "tpm", "device": args.tpm,
                 "key_dir": os.path.abspath(args.tpm_key_dir or os.path.join(home.path, "tpm-keys"))}
    else:
        ident = {"keystore": "memory", "path": os.path.join(os.path.abspath(home.path), "keys")}
    ident.update({"name": name, "display_name": display})
    cfg = {"identity": ident}
    if args.argon2:
        t, m, p = (int(x) for x in args.argon2.split(","))
        cfg["argon2"] = {"time": t, "memory_kib": m, "threads": p}
    os.makedirs(home.path, mode=0o700, exist_ok=True)
    with open_keystore(args, cfg, create=True) as ks:
        if args.force and name in ks.list():
            ks.delete(name)
        with ks.generate(name) as idk:
            info = identity_info(idk, display)
    home.save_config(cfg)
    info["keystore"] = ident["keystore"]
    out.result(info, "created identity %r in the %s keystore\nfingerprint %s\nconfig %s"
               % (name, ident["keystore"], info["fingerprint"], home.config_path))


def identity_info(idk, display):
    from .keys import SUITE_NAMES, ContactCard
    with ContactCard(idk.card(display)) as card:
        fp = card.fingerprint
    return {"name": display, "fingerprint": fp,
            "suites": [SUITE_NAMES[s] for s in idk.suites],
            "signing_key": idk.public_bytes().hex(),
            "dh_keys": {SUITE_NAMES[s]: idk.dh_public(s).hex() for s in idk.suites}}


def cmd_id(args, home, out):
    cfg, idk = load_identity(args, home)
    with idk:
        info = identity_info(idk, cfg["identity"]["display_name"])
    info["keystore"] = cfg["identity"]["keystore"]
    lines = ["name        %s" % info["name"], "fingerprint %s" % info["fingerprint"],
             "keystore    %s" % info["keystore"], "suites      %s" % ", ".join(info["suites"]),
             "signing key %s" % info["signing_key"]]
    lines += ["%-11s %s" % (k, v) for k, v in info["dh_keys"].items()]
    out.result(info, "\n".join(lines))


def cmd_card_export(args, home, out):
    cfg, idk = load_identity(args, home)
    with idk:
        card = idk.card(args.name or cfg["identity"]["display_name"])
    b64 = base64.b64encode(card).decode()
    if args.output:
        write_atomic(args.output, card, 0o644)
    if args.output and not out.json:
        print("card written to %s" % args.output, file=sys.stderr)
    else:
        out.result({"card": b64}, b64)


def cmd_contact(args, home, out):
    from .keys import ContactCard, SUITE_NAMES
    entries = home.load_contacts()
    if args.action == "import":
        data = read_card_bytes(args.file)
        with ContactCard(data) as card:  # BadCardError says why
            name = args.as_name or card.name
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
                raise CliError("contact name %r: use --as NAME with letters, digits, . _ -" % name, EXIT_USAGE)
            old = entries.get(name)
            if old and base64.b64decode(old["card"]) != data and not args.replace:
                raise CliError("contact %r exists with another card (use --replace)" % name, EXIT_USAGE)
            entries[name] = {"card": base64.b64encode(data).decode(), "verified": False}
            fp = card.fingerprint
        home.save_contacts(entries)
        out.result({"contact": name, "fingerprint": fp},
                   "imported %s, fingerprint %s\ncompare it with %s out of band, then run "
                   "`loramesh contact verify %s FINGERPRINT`" % (name, fp, name, name))
    elif args.action == "list":
        rows = []
        for name in sorted(entries):
            with ContactCard(base64.b64decode(entries[name]["card"])) as c:
                rows.append({"contact": name, "name": c.name, "fingerprint": c.fingerprint,
                             "verified": entries[name].get("verified", False)})
        out.result({"contacts": rows}, "\n".join(
            "%-16s %s  %s%s" % (r["contact"], r["fingerprint"], r["name"],
                                "" if r["verified"] else "  (unverified)") for r in rows) or "no contacts")
    elif args.action == "show":
        e = need_contact(home, args.contact)
        with ContactCard(base64.b64decode(e["card"])) as c:
            info = {"contact": args.contact, "name": c.name, "fingerprint": c.fingerprint,
                    "verified": e.get("verified", False), "signing_key": c.signing_key.hex(),
                    "dh_keys": {SUITE_NAMES[s]: k.hex() for s, k in c.dh_keys.items()}}
        out.result(info, "\n".join("%-11s %s" % (k, v) for k, v in info.items() if k != "dh_keys")
                   + "".join("\n%-11s %s" % (k, v) for k, v in info["dh_keys"].items()))
    elif args.action == "remove":
        need_contact(home, args.contact)
        del entries[args.contact]
        home.save_contacts(entries)
        out.result({"removed": args.contact}, "removed %s" % args.contact)
    elif args.action == "verify":
        need_contact(home, args.contact)
        e = entries[args.contact]
        with ContactCard(base64.b64decode(e["card"])) as c:
            fp = c.fingerprint
        norm = lambda s: re.sub(r"[^A-Z0-9]", "", s.upper())
        if norm(args.fingerprint) != norm(fp):
            raise CliError("fingerprint mismatch for %s: the card says %s" % (args.contact, fp), EXIT_VERIFY)
        e["verified"] = True
        home.save_contacts(entries)
        out.result({"contact": args.contact, "verified": True}, "%s verified (%s)" % (args.contact, fp))


def cmd_sign(args, home, out):
    _, idk = load_identity(args, home)
    with open(args.file, "rb") as f:
        data = f.read()
    with idk:
        sig = idk.sign(data)
    path = args.output or args.file + ".sig"
    write_atomic(path, sig, 0o644)
    out.result({"signature": sig.hex(), "file": path}, "signature written to %s" % path)


def cmd_verify(args, home, out):
    cards = contact_cards(home, [args.contact])
    if args.contact not in cards:
        raise CliError("no contact %r" % args.contact, EXIT_KEYSTORE)
    with open(args.file, "rb") as f:
        data = f.read()
    with open(args.signature, "rb") as f:
        sig = f.read()
    with cards[args.contact] as card:
        try:
            card.verify(data, sig)
        except errors.InvalidArgumentError:
            raise CliError("%s: not a signature" % args.signature, EXIT_VERIFY)
        except errors.AuthenticationError:
            raise CliError("BAD signature: %s was not signed by %s" % (args.file, args.contact), EXIT_VERIFY)
    out.result({"valid": True, "contact": args.contact}, "good signature from %s" % args.contact)


def make_node(args, home):
    from .node import Node
    from .transport import KissTransport, UdpTransport
    _, idk = load_identity(args, home)
    cards = contact_cards(home)
    if args.serial:
        tr = KissTransport(args.serial, args.baud)
    else:
        tr = UdpTransport(args.bind)
    return Node(idk, cards, tr, args.timeout), idk


def peer_addr(args):
    from .transport import KissTransport, parse_addr
    if args.serial:
        return KissTransport.ADDR
    if not getattr(args, "to", None):
        raise CliError("--to HOST:PORT is needed with UDP", EXIT_USAGE)
    return parse_addr(args.to)


def send_text(node, out, contact, text, addr):
    """Sends one message, first reporting what arrived while it waited (the
    handshake), then the message itself."""
    from .node import Event
    node.send(contact, text, addr)
    for ev in node.backlog:
        out.event(ev)
    node.backlog = []
    out.event(Event("sent", contact, text))


def cmd_send(args, home, out):
    need_contact(home, args.contact)
    addr = peer_addr(args)
    node, idk = make_node(args, home)
    try:
        for text in args.message:
            send_text(node, out, args.contact, text, addr)
    finally:
        node.close()
        idk.close()


def cmd_listen(args, home, out):
    from .node import Event
    node, idk = make_node(args, home)
    got = 0
    where = "serial %s" % args.serial if args.serial else fmt_addr(node.transport.local)
    out.event(Event("listening", detail="listening on %s as %s" % (where, idk.name)))
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while args.count is None or got < args.count:
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                break
            for ev in node.poll(min(left, 1.0)):
                out.event(ev)
                got += ev.kind == "message"
    finally:
        node.close()
        idk.close()


def cmd_chat(args, home, out):
    from .node import Event
    need_contact(home, args.contact)
    addr = peer_addr(args)
    node, idk = make_node(args, home)
    where = "serial %s" % args.serial if args.serial else fmt_addr(node.transport.local)
    out.event(Event("listening", detail="chat with %s on %s; type lines, Ctrl-D to end" % (args.contact, where)))
    sel = selectors.DefaultSelector()
    sel.register(node.transport.fileno(), selectors.EVENT_READ, "net")
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    pending = b""
    eof_at = None
    try:
        while eof_at is None or time.monotonic() - eof_at < args.linger:
            for key, _ in sel.select(0.2):
                if key.data == "net":
                    for ev in node.poll(0):
                        out.event(ev)
                    continue
                chunk = os.read(sys.stdin.fileno(), 4096)
                if not chunk:
                    sel.unregister(sys.stdin.fileno())
                    eof_at = time.monotonic()
                    chunk = b"\n"
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    text = line.decode("utf-8", "replace").rstrip("\r")
                    if text:
                        send_text(node, out, args.contact, text, addr)
    finally:
        node.close()
        idk.close()


# ---- argument parsing ---------------------------------------------------

def build_parser():
    S = argparse.SUPPRESS
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=S, help="node directory (default $LORAMESH_HOME or $XDG_CONFIG_HOME/loramesh)")
    common.add_argument("--json", action="store_true", default=S, help="machine-readable output")
    common.add_argument("--debug", action="store_true", default=S, help="tracebacks on errors")
    common.add_argument("--passphrase-file", "--pin-file", "--auth-file", dest="secret_file", default=S,
                        metavar="FILE", help="read the passphrase / PIN / TPM auth from FILE")
    common.add_argument("--passphrase-env", "--pin-env", "--auth-env", dest="secret_env", default=S,
                        metavar="NAME", help="read it from environment variable NAME")
    p = argparse.ArgumentParser(prog="loramesh", parents=[common], description="LoRa mesh messenger node",
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name, fn, help):
        sp = sub.add_parser(name, parents=[common], help=help)
        sp.set_defaults(func=fn)
        return sp

    sp = add("init", cmd_init, "create this node's identity")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--pkcs11", metavar="URI", help="identity on a PKCS#11 token (RFC 7512 URI)")
    g.add_argument("--tpm", metavar="DEVICE|SOCKET", help="identity in a TPM (/dev/tpmrm0, unix:PATH, tcp:HOST:PORT)")
    sp.add_argument("--tpm-key-dir", metavar="DIR")
    sp.add_argument("--name", help="display name on your contact card")
    sp.add_argument("--identity", default="node", help="identity name inside the keystore")
    sp.add_argument("--argon2", metavar="T,MKIB,P", help="argon2id costs for the identity file (tests only)")
    sp.add_argument("--force", action="store_true", help="replace an existing node")

    add("id", cmd_id, "show fingerprint, suites and public keys")

    sp = add("card", cmd_card_export, "contact card")
    sp.add_argument("action", choices=["export"])
    sp.add_argument("-o", "--output", help="write the binary card to FILE (default: base64 on stdout)")
    sp.add_argument("--name", help="display name (default from config)")

    sp = add("contact", cmd_contact, "manage contacts")
    csub = sp.add_subparsers(dest="action", metavar="ACTION")
    csub.required = True
    c = csub.add_parser("import", parents=[common], help="import a card file (binary or base64; - for stdin)")
    c.add_argument("file")
    c.add_argument("--as", dest="as_name", metavar="NAME", help="local contact name (default: card name)")
    c.add_argument("--replace", action="store_true")
    csub.add_parser("list", parents=[common])
    for a in ("show", "remove"):
        csub.add_parser(a, parents=[common]).add_argument("contact")
    c = csub.add_parser("verify", parents=[common], help="mark verified after comparing the fingerprint")
    c.add_argument("contact")
    c.add_argument("fingerprint")

    def net(sp, peer=True):
        if peer:
            sp.add_argument("--to", metavar="HOST:PORT", help="peer UDP address")
        sp.add_argument("--bind", metavar="HOST:PORT", help="local UDP address (default: any port)")
        sp.add_argument("--serial", metavar="DEVICE", help="KISS TNC on a serial port instead of UDP")
        sp.add_argument("--baud", type=int, default=9600)
        sp.add_argument("--timeout", type=float, default=10.0, help="handshake timeout, seconds")

    sp = add("send", cmd_send, "send messages to a contact")
    sp.add_argument("contact")
    sp.add_argument("message", nargs="+")
    net(sp)
    sp = add("listen", cmd_listen, "receive and print messages")
    sp.add_argument("--count", type=int, help="exit after N messages")
    sp.add_argument("--duration", type=float, help="exit after SECONDS")
    net(sp, peer=False)
    sp = add("chat", cmd_chat, "send stdin lines, print what arrives")
    sp.add_argument("contact")
    sp.add_argument("--linger", type=float, default=2.0, help="keep receiving SECONDS after end of input")
    net(sp)

    sp = add("sign", cmd_sign, "sign a file with this node's identity")
    sp.add_argument("file")
    sp.add_argument("-o", "--output", help="signature file (default FILE.sig)")
    sp = add("verify", cmd_verify, "verify a contact's signature on a file")
    sp.add_argument("file")
    sp.add_argument("signature")
    sp.add_argument("--contact", required=True)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for k in ("home", "secret_file", "secret_env"):
        if not hasattr(args, k):
            setattr(args, k, None)
    debug = getattr(args, "debug", False)
    out = Out(getattr(args, "json", False))
    home = Home(args.home)
    try:
        args.func(args, home, out)
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except (LoraMeshError, CliError, OSError, ValueError, KeyError) as e:
        if debug:
            raise
        msg = str(e) or type(e).__name__
        if isinstance(e, KeyError):
            msg = "configuration lacks %s" % e
        if out.json:
            print(json.dumps({"error": msg, "exit": exit_code(e)}), file=sys.stderr)
        else:
            print("loramesh: error: %s" % msg, file=sys.stderr)
        return exit_code(e)


if __name__ == "__main__":
    sys.exit(main())
