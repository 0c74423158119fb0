"""Links: UDP datagrams and KISS frames on a serial line (a LoRa TNC).

A link moves whole packets and knows nothing of them. Addresses are
strings: "HOST:PORT" on UDP; "" on KISS, where every frame goes to and
comes from the radio channel, heard by every node in range.
"""
from __future__ import annotations

import errno
import glob
import os
import select
import socket
import time

FEND, FESC, TFEND, TFESC = 0xC0, 0xDB, 0xDC, 0xDD


class LinkError(Exception):
    """A link failed; the message names the port or device and what to do."""


def parse_addr(s: str):
    """HOST:PORT resolved to a numeric IPv4 (host, port): replies arrive from
    the numeric address, so a name kept as typed would never match them."""
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("address must be HOST:PORT with a port from 1 to 65535, got %r" % s)
    host = host.strip("[]") or "0.0.0.0"
    try:
        info = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise ValueError("cannot resolve %r: %s" % (host, e.strerror))
    return info[0][4][:2]


def fmt_addr(a) -> str:
    return "%s:%d" % a


class UdpTransport:
    """One datagram per packet, on a socket bound to bind ("HOST:PORT")."""

    profile = "udp"

    def __init__(self, bind: str = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        where = bind or "0.0.0.0:0"
        try:
            self.sock.bind(parse_addr(where))
        except OSError as e:
            self.sock.close()
            hint = " (another program, maybe another loramesh daemon, uses it: pick another port " \
                   "with `loramesh link udp HOST:PORT`)" if e.errno == errno.EADDRINUSE else ""
            raise LinkError("cannot listen on UDP %s: %s%s" % (where, e.strerror, hint))

    @property
    def local(self) -> str:
        return fmt_addr(self.sock.getsockname())

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, packet: bytes, addr: str) -> None:
        try:
            self.sock.sendto(packet, parse_addr(addr))
        except (OSError, ValueError) as e:
            raise LinkError("sending to UDP %s: %s" % (addr, getattr(e, "strerror", None) or e))

    def receive(self) -> list:
        """Every datagram waiting, as (packet, "HOST:PORT")."""
        out = []
        while True:
            try:
                data, a = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError:  # e.g. an ICMP error for an earlier send
                return out
            out.append((data, fmt_addr(a)))

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

    # A frame that grows past this without a closing FEND is dropped, so
    # noise or an attacker on the channel cannot grow the buffer without
    # bound: the largest packet plus the command byte.
    MAX_FRAME = 65541

    def __init__(self):
        self.buf = bytearray()
        self.esc = False
        self.in_frame = False

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


def find_serial() -> str:
    """The one serial device under /dev/serial/by-id (stable across
    reboots and replugging), or a clear error."""
    found = sorted(glob.glob("/dev/serial/by-id/*"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise LinkError("no serial device in /dev/serial/by-id: plug the TNC in, or name its port "
                        "with `loramesh link kiss /dev/ttyUSB0`")
    raise LinkError("several serial devices (%s): name the TNC's with `loramesh link kiss DEVICE`"
                    % ", ".join(found))


class KissTransport:
    """KISS framing on a serial device (pyserial) or any file descriptor
    (one end of a pty). A frame larger than frame_size is refused: a LoRa
    radio would drop it."""

    profile = "lora"

    def __init__(self, device=None, baud: int = 9600, fd: int = None, frame_size: int = 255):
        self.serial = None
        self.frame_size = frame_size
        self.device = device or "fd %s" % fd
        if fd is None:
            if device in (None, "", "auto"):
                device = self.device = find_serial()
            try:
                import serial  # Debian: python3-serial
            except ImportError:
                raise LinkError("the KISS link needs pyserial: apt-get install python3-serial")
            try:
                self.serial = serial.Serial(device, baud, timeout=0)
            except (OSError, serial.SerialException) as e:
                raise LinkError("cannot open serial %s: %s (is the TNC plugged in, and are you in "
                                "group dialout?)" % (device, getattr(e, "strerror", None) or e))
            fd = self.serial.fileno()
        self.fd = fd
        os.set_blocking(fd, False)
        self.decoder = KissDecoder()

    def fileno(self) -> int:
        return self.fd

    def send(self, packet: bytes, addr: str = "") -> None:
        if len(packet) > self.frame_size:
            raise LinkError("a %d-byte packet does not fit the %s's %d-byte frames"
                            % (len(packet), self.device, self.frame_size))
        data = memoryview(kiss_encode(packet))
        deadline = time.monotonic() + 5
        while data:
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LinkError("serial %s does not take data (TNC stuck?)" % self.device)
                select.select([], [self.fd], [], 0.5)
                continue
            except OSError as e:
                raise LinkError("writing to serial %s: %s" % (self.device, e.strerror))
            data = data[n:]

    def receive(self) -> list:
        out = []
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError as e:
                if e.errno == errno.EIO:  # the other end of a pty went away
                    return out
                raise LinkError("reading serial %s: %s" % (self.device, e.strerror))
            if not chunk:
                return out
            out.extend((f, "") for f in self.decoder.feed(chunk))

    def close(self) -> None:
        if self.serial is not None:
            self.serial.close()
