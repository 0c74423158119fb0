"""Reading passphrases, PINs and auth values into wipeable memory.

Python's str and bytes cannot be wiped, and getpass returns a str: secrets
here are read byte by byte into a bytearray, from a file, an inherited
descriptor, or the terminal with echo off, and the caller wipes it with
secure_wipe() (or uses it in a with block). Environment variables are
bytes the process cannot wipe: they are accepted for automation, with a
warning, and never recommended.
"""
from __future__ import annotations

import os
import sys
import termios

from ._capi import secure_wipe


class SecretError(Exception):
    """A secret could not be read; the message says what to do."""


class Secret(bytearray):
    """A bytearray that wipes itself when a with block ends."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.wipe()

    def wipe(self):
        if self:
            secure_wipe(self)
        del self[:]


def _read_fd(fd: int, limit: int = 4096) -> Secret:
    buf = Secret()
    chunk = bytearray(1)
    while len(buf) < limit:
        n = os.readv(fd, [chunk])
        if n == 0 or chunk[0] == 0x0A:
            break
        buf.append(chunk[0])
    chunk[0] = 0
    if buf[-1:] == b"\r":
        del buf[-1:]
    return buf


def from_file(path: str) -> Secret:
    """The first line of a file (mode 0600 recommended)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise SecretError("cannot read %s: %s" % (path, e.strerror))
    try:
        return _read_fd(fd)
    finally:
        os.close(fd)


def from_fd(fd: int) -> Secret:
    """A line from an inherited descriptor (a pipe a parent wrote)."""
    try:
        return _read_fd(fd)
    finally:
        os.close(fd)


def from_env(name: str) -> Secret:
    v = os.environb.get(os.fsencode(name))
    if v is None:
        raise SecretError("environment variable %s is not set" % name)
    print("loramesh: warning: a secret in an environment variable cannot be wiped from memory "
          "and is visible to the process's owner; prefer a file or the prompt", file=sys.stderr)
    return Secret(v)


def prompt(what: str, tty_path: str = "/dev/tty") -> Secret:
    """Reads a secret from the terminal with echo off."""
    try:
        fd = os.open(tty_path, os.O_RDWR | os.O_NOCTTY)
    except OSError:
        raise SecretError("no terminal to ask for the %s on" % what)
    try:
        os.write(fd, ("%s: " % (what[:1].upper() + what[1:])).encode())
        old = termios.tcgetattr(fd)
        new = list(old)
        new[3] &= ~(termios.ECHO | termios.ECHONL)
        termios.tcsetattr(fd, termios.TCSAFLUSH, new)
        try:
            return _read_fd(fd)
        finally:
            termios.tcsetattr(fd, termios.TCSAFLUSH, old)
            os.write(fd, b"\n")
    finally:
        os.close(fd)


def has_terminal() -> bool:
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
        return True
    except OSError:
        return False
