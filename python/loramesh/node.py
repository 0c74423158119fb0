"""A node: one messenger engine and its links. Packets from the links go
into the engine; what the engine wants sent goes out on them. Everything
the engine decides (sessions, retries, acknowledgements, fragments,
addresses) it decides itself; this is only the I/O around it.
"""
from __future__ import annotations

import select
import time

from .engine import Engine
from .transport import LinkError


class Node:
    def __init__(self, engine: Engine, links: dict):
        self.engine = engine
        self.links = links  # name -> transport
        for name, tr in links.items():
            engine.add_link(name, tr.profile, getattr(tr, "frame_size", 0))

    def fds(self) -> dict:
        return {tr.fileno(): name for name, tr in self.links.items()}

    def timeout(self, cap: float) -> float:
        """Seconds until the engine next needs a tick, at most cap."""
        d = self.engine.deadline()
        if d is None:
            return cap
        return max(0.0, min(cap, d - time.time()))

    def readable(self, name: str) -> list:
        """Feeds what link name received to the engine; returns link errors."""
        try:
            for packet, addr in self.links[name].receive():
                self.engine.receive(name, addr, packet)
        except LinkError as e:
            return [str(e)]
        return []

    def flush(self) -> list:
        """Runs due timers, transmits what the engine wants sent; returns
        link errors (the engine retries what did not go out). Links with
        timers of their own (polled: Tor) are read on every call, and the
        addresses they failed to reach are reported to the engine."""
        errors = []
        for name, tr in self.links.items():
            if getattr(tr, "polled", False):
                errors += self.readable(name)
        d = self.engine.deadline()
        if d is not None and d <= time.time():
            self.engine.tick()
        for link, addr, packet in self.engine.packets():
            tr = self.links.get(link)
            if tr is None:
                continue
            try:
                tr.send(packet, addr)
            except LinkError as e:
                errors.append(str(e))
        for name, tr in self.links.items():
            for addr, why in tr.failures() if hasattr(tr, "failures") else ():
                self.engine.unreachable(name, addr, why)
                errors.append("%s: %s unreachable: %s" % (name, addr, why))
        return errors

    def step(self, timeout: float):
        """Waits up to timeout for packets; returns (events, link errors)."""
        fds = self.fds()
        r, _, _ = select.select(list(fds), [], [], self.timeout(timeout))
        errors = []
        for fd in r:
            errors += self.readable(fds[fd])
        errors += self.flush()
        return list(self.engine.events()), errors

    def close(self) -> None:
        for tr in self.links.values():
            tr.close()
