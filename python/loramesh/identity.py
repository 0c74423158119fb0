"""The node's identity as config.toml describes it: which keystore holds
it, which secret it needs, and opening it."""
from __future__ import annotations

import os
import re

from .keys import MemoryKeystore, Pkcs11Keystore, TpmKeystore

SECRET_NAMES = {"memory": "passphrase", "pkcs11": "token PIN", "tpm": "TPM auth value"}


def secret_needed(ident: dict):
    """(what, optional): the secret the keystore asks for, or None."""
    kind = ident.get("keystore")
    if kind == "pkcs11" and re.search(r"[?&;]pin-(source|value)=", ident.get("uri", "")):
        return None
    if kind == "tpm":
        return SECRET_NAMES[kind], ident.get("auth", True) is False
    return SECRET_NAMES.get(kind, "secret"), False


def open_keystore(cfg: dict, secret):
    """Opens the keystore cfg names with secret (a bytearray, wiped)."""
    ident = cfg["identity"]
    kind = ident.get("keystore")
    if kind == "memory":
        a = cfg.get("argon2", {})
        return MemoryKeystore(ident["path"], secret, (a.get("time", 0), a.get("memory_kib", 0), a.get("threads", 0)))
    if kind == "pkcs11":
        if ident.get("softhsm2_conf"):
            # SoftHSM reads this once, when its module initialises.
            os.environ["SOFTHSM2_CONF"] = ident["softhsm2_conf"]
        return Pkcs11Keystore(ident["uri"], secret)
    if kind == "tpm":
        return TpmKeystore(ident["device"], secret, ident["key_dir"])
    raise ValueError("config.toml: unknown keystore %r (memory, pkcs11 or tpm)" % kind)


def open_identity(cfg: dict, secret):
    """The node's identity, with its keystore kept open beside it (a TPM
    identity needs its keystore; closing the identity closes both)."""
    ks = open_keystore(cfg, secret)
    try:
        idk = ks.load(cfg["identity"]["name"])
    except BaseException:
        ks.close()
        raise
    idk.owned_keystore = ks
    return idk
