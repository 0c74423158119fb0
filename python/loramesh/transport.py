"""Packet transports: UDP datagrams and KISS frames on a serial line."""
from __future__ import annotations

import os
import select
import socket

FEND, FESC, TFEND, TFESC = 0xC0, 0xDB, 0xDC, 0xDD


def parse_addr(s: str):
    """HOST:PORT resolved to a numeric IPv4 (host, port): replies arrive from
    the numeric address, so a name kept as typed would never match them."""
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError("address must be HOST:PORT, got %r" % s)
    host = host.strip("[]") or "0.0.0.0"
    try:
        info = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise ValueError("cannot resolve %r: %s" % (host, e))
    return info[0][4][:2]


class UdpTransport:
    """One datagram per packet. Addresses are (host, port) tuples."""

    def __init__(self, bind: str = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(parse_addr(bind) if bind else ("0.0.0.0", 0))

    @property
    def local(self):
        return self.sock.getsockname()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, packet: bytes, addr) -> None:
        self.sock.sendto(packet, addr)

    def recv(self, timeout: float):
        """(packet, addr), or None after timeout seconds."""
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return None
        return self.sock.recvfrom(65535)

    def close(self) -> None:
        self.sock.close()


def kiss_encode(data: bytes, port: int = 0) -> bytes:
    out = bytearray([FEND, (port & 0x0F) << 4])
    for b in data:
        if b == FEND:
            out += bytes([FESC, TFEND])
        elif b == FESC:
            out += bytes([FESC, TFESC])
        else:
            out.append(b)
    out.append(FEND)
    return bytes(out)


class KissDecoder:
    """Feeds bytes, yields the payloads of KISS data frames (command 0)."""

    def __init__(self):
        self.buf = bytearray()
        self.esc = False
        self.in_frame = False

    # The largest packet (65,540 bytes) plus the command byte: a frame that
    # grows past this without a closing FEND is dropped, so noise or an
    # attacker on the channel cannot grow the buffer without bound.
    MAX_FRAME = 65541

    def feed(self, data: bytes) -> list:
        frames = []
        for b in data:
            if len(self.buf) > self.MAX_FRAME:
                self.buf.clear()
                self.esc = False
                self.in_frame = False  # resynchronise at the next FEND
            if b == FEND:
                if self.in_frame and len(self.buf) > 1 and (self.buf[0] & 0x0F) == 0:
                    frames.append(bytes(self.buf[1:]))
                self.buf.clear()
                self.esc = False
                self.in_frame = True
            elif not self.in_frame:
                continue
            elif self.esc:
                self.buf.append({TFEND: FEND, TFESC: FESC}.get(b, b))
                self.esc = False
            elif b == FESC:
                self.esc = True
            else:
                self.buf.append(b)
        return frames


class KissTransport:
    """KISS framing over a serial device (pyserial) or any file descriptor
    (e.g. one end of a pty). The radio is a broadcast medium: addr is
    always "serial"."""

    ADDR = "serial"

    def __init__(self, device=None, baud: int = 9600, fd: int = None):
        self.serial = None
        if fd is None:
            try:
                import serial  # Debian: python3-serial
            except ImportError:
                raise OSError("serial transport needs pyserial (apt install python3-serial)")
            self.serial = serial.Serial(device, baud, timeout=0)
            fd = self.serial.fileno()
        self.fd = fd
        self.decoder = KissDecoder()
        self.queue = []

    def fileno(self) -> int:
        return self.fd

    def send(self, packet: bytes, addr=None) -> None:
        # The descriptor is non-blocking (pyserial opens it so): wait for
        # room rather than fail half-way through a frame.
        data = memoryview(kiss_encode(packet))
        while data:
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                select.select([], [self.fd], [], 1.0)
                continue
            data = data[n:]

    def recv(self, timeout: float):
        import time
        deadline = time.monotonic() + (timeout or 0)
        while not self.queue:
            left = deadline - time.monotonic()
            r, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not r:
                return None
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                continue
            if not chunk:  # end of file: nothing more will come
                time.sleep(min(max(left, 0), 0.1))
                return None
            self.queue.extend(self.decoder.feed(chunk))
        return self.queue.pop(0), self.ADDR

    def close(self) -> None:
        if self.serial is not None:
            self.serial.close()
