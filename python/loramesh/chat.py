"""The chat screen: one contact's conversation, through the daemon.

On a terminal it is a curses screen: the conversation above, a status line,
and the line being typed below, which incoming messages never cut into and
which never reaches the shell. Each line shows its time and its sender,
unverified senders marked with "?"; every character a peer chose is
escaped (text.escape). Typed lines go to the daemon at once and are queued
there while the contact is away.

Without a terminal (stdin from a file or /dev/null) it reads lines, sends
each, prints what happens, and after the end of input waits until every
message sent is delivered or failed (at most --linger seconds).
"""
from __future__ import annotations

import curses
import locale
import os
import select
import sys
import time

from .text import escape, lines


def stamp(t) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t or time.time()))


def sender(ev: dict, contact: str) -> str:
    who = ev.get("contact") or contact
    return escape(who) + ("" if ev.get("verified") else "?")


def render(ev: dict, contact: str, states: dict) -> list:
    """The display lines of an event (escaped)."""
    kind = ev.get("event")
    if kind == "message":
        who = sender(ev, contact)
        return ["[%s] %s: %s" % (stamp(ev.get("sent") or ev.get("time")), who, l) for l in lines(ev.get("text", ""))]
    if kind == "sent-by-me":
        states.setdefault(ev["id"], ev.get("state") or "queued")
        return ["[%s] me -> %s: %s" % (stamp(ev.get("time")), escape(ev.get("contact", "")), l)
                for l in lines(ev.get("text", ""))]
    if kind == "delivery":
        states[ev["id"]] = ev["state"]
        if ev["state"] == "failed":
            return ["[%s] * message %d to %s failed: %s" % (stamp(ev.get("time")), ev["id"], escape(contact),
                                                          escape(ev.get("reason", "")))]
        if ev["state"] == "delivered":
            return ["[%s] * message %d delivered" % (stamp(ev.get("time")), ev["id"])]
        return []
    if kind == "session":
        return ["[%s] * secure session with %s" % (stamp(ev.get("time")), sender(ev, contact))]
    if kind == "stranger":
        return ["[%s] ! a node not among your contacts tried to reach you from %s:%s (its handshake key "
                "%s; a card's fingerprint differs): import its card to talk" % (
                    stamp(ev.get("time")), escape(ev.get("link", "")), escape(ev.get("addr", "")),
                    escape(ev.get("fingerprint", "")))]
    if kind == "link":
        return ["[%s] ! %s" % (stamp(ev.get("time")), escape(ev.get("detail", "")))]
    if kind == "card-offer":  # a browser node's card, over the WebSocket bridge
        return ["[%s] * %s offers a card over the WebSocket bridge, fingerprint %s; compare it with the page, then:"
                % (stamp(ev.get("time")), escape(ev.get("name", "")), ev.get("fingerprint", "")),
                "  echo %s | loramesh contact import - --addr ws" % ev.get("card", "")]
    return []


def line_mode(client, contact: str, linger: float, out=sys.stdout) -> int:
    """Lines from stdin, events to stdout. Returns 0 if everything sent was
    delivered, 6 if something failed or was still pending at the end."""
    states = {}
    client.request("subscribe", contact=contact)
    fd = sys.stdin.fileno()
    pending = b""
    eof_at = None
    while True:
        wait = 0.2
        if eof_at is None:
            r, _, _ = select.select([fd, client], [], [], wait)
        else:
            r, _, _ = select.select([client], [], [], wait)
        if fd in r:
            chunk = os.read(fd, 4096)
            if not chunk:
                eof_at = time.monotonic()
                chunk = b"\n"
            pending += chunk
            *done, pending = pending.split(b"\n")
            for raw in done:
                text = raw.decode("utf-8", "replace").rstrip("\r")
                if text:
                    mid = client.request("send", contact=contact, text=text)["id"]
                    for l in render({"event": "sent-by-me", "id": mid, "contact": contact, "text": text,
                                     "time": time.time()}, contact, states):
                        print(l, file=out, flush=True)
        for ev in client.events(0 if fd in r else 0.01):
            for l in render(ev, contact, states):
                print(l, file=out, flush=True)
        if eof_at is not None:
            open_ = [m for m, s in states.items() if s not in ("delivered", "failed")]
            if not open_ or time.monotonic() - eof_at > linger:
                return 0 if all(s == "delivered" for s in states.values()) else 6


def screen(client, contact: str, verified: bool) -> int:
    locale.setlocale(locale.LC_ALL, "")
    return curses.wrapper(_screen, client, contact, verified)


def _screen(win, client, contact, verified):
    curses.curs_set(1)
    win.nodelay(True)
    win.keypad(True)
    states = {}
    shown = []
    typed = ""
    client.request("subscribe", contact=contact, history=50)
    mark = "" if verified else "  (? = not verified: compare fingerprints with `loramesh contact verify`)"
    while True:
        for ev in client.events(0):
            shown += render(ev, contact, states)
        h, w = win.getmaxyx()
        win.erase()
        body = shown[-(h - 2):] if h > 2 else []
        for i, l in enumerate(body):
            win.addnstr(i, 0, l, w - 1)
        queued = sum(1 for s in states.values() if s in ("queued", "sent"))
        status = "chat with %s%s   %s   Ctrl-D to leave" % (escape(contact), mark,
                                                             "%d waiting" % queued if queued else "")
        win.addnstr(h - 2, 0, status, w - 1, curses.A_REVERSE)
        prompt = "> " + typed
        win.addnstr(h - 1, 0, prompt[-(w - 1):], w - 1)
        win.refresh()
        r, _, _ = select.select([sys.stdin, client], [], [], 0.2)
        while True:
            try:
                k = win.get_wch()
            except curses.error:
                break
            if k in ("\x04",) or k == curses.KEY_EXIT:
                return 0
            if k in ("\n", "\r", curses.KEY_ENTER):
                if typed.strip():
                    mid = client.request("send", contact=contact, text=typed)["id"]
                    shown += render({"event": "sent-by-me", "id": mid, "contact": contact, "text": typed,
                                     "time": time.time()}, contact, states)
                typed = ""
            elif k in (curses.KEY_BACKSPACE, "\x7f", "\b"):
                typed = typed[:-1]
            elif k == "\x15":  # Ctrl-U
                typed = ""
            elif isinstance(k, str) and k.isprintable():
                typed += k
