"""Showing text a peer chose (messages, display names) without letting it
drive the terminal or pass for something else.

Every C0 and C1 control character (ESC among them), DEL, and every Unicode
format character (bidirectional overrides and isolates, zero-width joiners,
invisible separators) is shown as a visible escape such as \\x1b or
\\u202e. Line breaks split a message into lines, each shown under its
sender, so no line can pose as another contact's.
"""
from __future__ import annotations

import unicodedata

_NAMED = {"\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def escape(s: str) -> str:
    """s with every control and format character made visible."""
    out = []
    for ch in s:
        o = ord(ch)
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif o < 0x20 or 0x7F <= o < 0xA0:
            out.append("\\x%02x" % o)
        elif unicodedata.category(ch) in ("Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append("\\u%04x" % o if o <= 0xFFFF else "\\U%08x" % o)
        else:
            out.append(ch)
    return "".join(out)


def lines(s: str) -> list:
    """The escaped lines of a message (at least one)."""
    return [escape(line) for line in s.split("\n")] or [""]
