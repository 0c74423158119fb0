"""A private Tor network on 127.0.0.1 for tests (standard library only).

Three directory authorities (they relay too) and `relays` more relays, all
with TestingTorNetwork 1, our own three DirAuthority lines and
UseDefaultFallbackDirs 0, so no tor here ever contacts the public network.
Run it inside a network namespace of its own (run.py does): then nothing
can even be addressed but loopback.

    net = TorNet(tmpdir)
    net.build()                    # keys, fingerprints, torrc files
    net.start()                    # authorities + relays; returns once the consensus lists all
    TorProcess(d, net.client_config())   # clients join with these torrc lines
    net.stop()

Settings that make it converge in 15-20 s instead of 30-90 s (each fixed a
failure seen while testing this recipe):
- staged start: relays first; clients only once the consensus lists every
  relay, after a SIGHUP to the relays (it resets their download backoff),
  so no client sees a 404 or an empty consensus and backs off;
- AuthDirTestReachability 0: authorities vote Running at once, so the first
  consensus is not empty;
- V3BandwidthsFile with equal weights, guards = the authorities only
  (TestingDirAuthVoteGuard ... + IsStrict), Stable without uptime: with
  tiny self-reported bandwidths one relay would win every pick and circuits
  would loop back to the guard;
- voting every 10 s; GeoIPFile/GeoIPv6File empty (35 MiB less per tor).
Every wait is bounded; each tor also has __OwningControllerProcess = our
pid, so it exits by itself if this process dies without stop().
"""
import fcntl
import http.client
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time

LOOP = "127.0.0.1"
TIMES = {}  # seconds measured by the tests, printed at the end (conftest)
NOTES = []  # and what they had to do on the way


def lo_up():
    """Set IFF_UP on lo (SIOCGIFFLAGS/SIOCSIFFLAGS): a new namespace starts with it down."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, req))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))
    finally:
        s.close()


def interfaces():
    with open("/proc/net/dev") as f:
        return [line.split(":")[0].strip() for line in f.readlines()[2:]]


class Node:
    def __init__(self, root, index, role, base_port):
        self.role = role  # "auth" or "relay"
        self.nick = "lmtest%d%s" % (index, role[0])
        self.dir = os.path.join(root, self.nick)
        self.or_port = base_port + index
        self.dir_port = base_port + 100 + index if role == "auth" else None
        self.proc = None


class TorNet:
    """3 authorities + `relays` relays under root (a fresh directory), on base_port.. base_port+102."""

    def __init__(self, root, relays=2, base_port=15000, tor="tor", gencert="tor-gencert"):
        self.root = os.path.abspath(root)
        self.tor = shutil.which(tor)
        self.gencert = shutil.which(gencert)
        if not self.tor or not self.gencert:
            raise RuntimeError("tor and tor-gencert are needed: apt-get install tor")
        self.nodes = [Node(self.root, i, "auth" if i < 3 else "relay", base_port) for i in range(3 + relays)]
        self.empty = os.path.join(self.root, "empty")
        self.dirauth = []

    def _run_all(self, cmds, what, stdin=None, timeout=60):
        """Run the commands in parallel (key generation is CPU-bound but short); outputs in order."""
        procs = [subprocess.Popen(c, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for c in cmds]
        outs = []
        for p in procs:
            try:
                out, _ = p.communicate(stdin, timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise RuntimeError("%s took more than %d s" % (what, timeout))
            if p.returncode:
                raise RuntimeError("%s failed (%d): %s" % (what, p.returncode, out.decode(errors="replace")[-500:]))
            outs.append(out.decode())
        return outs

    def build(self):
        if os.path.exists(self.root):
            shutil.rmtree(self.root)
        os.makedirs(self.root)
        open(self.empty, "w").close()  # tor refuses -f /dev/null
        with open(os.path.join(self.root, "resolv.conf"), "w") as f:
            f.write("nameserver 127.0.0.1\n")  # relays never resolve here; if they did, only loopback
        auths = [n for n in self.nodes if n.role == "auth"]
        for n in self.nodes:
            os.makedirs(os.path.join(n.dir, "keys"), mode=0o700)
            os.chmod(n.dir, 0o700)
        # Authority keys: empty passphrase on stdin.
        self._run_all([[self.gencert, "--create-identity-key", "--passphrase-fd", "0",
                        "-i", os.path.join(n.dir, "keys", "authority_identity_key"),
                        "-s", os.path.join(n.dir, "keys", "authority_signing_key"),
                        "-c", os.path.join(n.dir, "keys", "authority_certificate"),
                        "-m", "12", "-a", "%s:%d" % (LOOP, n.dir_port)] for n in auths],
                      "tor-gencert", stdin=b"\n")
        # Relay identity keys, made now so that we know every fingerprint before any tor starts.
        outs = self._run_all([[self.tor, "--defaults-torrc", self.empty, "-f", self.empty, "--list-fingerprint",
                               "--DataDirectory", n.dir, "--Nickname", n.nick, "--ORPort", "%s:%d" % (LOOP, n.or_port),
                               "--DisableNetwork", "1", "--UseDefaultFallbackDirs", "0", "--Log", "err stderr"]
                              for n in self.nodes], "tor --list-fingerprint")
        for n, out in zip(self.nodes, outs):
            m = re.search(r"^%s ((?:[0-9A-F]{4} ?){10})$" % n.nick, out, re.M)
            if not m:
                raise RuntimeError("no fingerprint for %s in: %s" % (n.nick, out[-300:]))
            n.fpr = m.group(1).replace(" ", "")
        for n in auths:
            with open(os.path.join(n.dir, "keys", "authority_certificate")) as f:
                v3ident = re.search(r"^fingerprint ([0-9A-F]{40})$", f.read(), re.M).group(1)
            self.dirauth.append("DirAuthority %s orport=%d no-v2 v3ident=%s %s:%d %s"
                                % (n.nick, n.or_port, v3ident, LOOP, n.dir_port, n.fpr))
        # Equal measured bandwidth for the plain relays (authorities get MeasuredButAuthority).
        bw = os.path.join(self.root, "bandwidths")
        with open(bw, "w") as f:
            f.write("%d\n" % time.time())
            f.writelines("node_id=$%s bw=1000\n" % n.fpr for n in self.nodes)
        guards = ",".join("$" + n.fpr for n in auths)
        for n in self.nodes:
            lines = self.common(n.dir) + [
                "Nickname " + n.nick, "PidFile %s/tor.pid" % n.dir, "Log notice file %s/notice.log" % n.dir,
                "ControlPort 0", "SocksPort 0", "ShutdownWaitLength 0",
                "Address " + LOOP, "ORPort %s:%d" % (LOOP, n.or_port), "AddressDisableIPv6 1", "AssumeReachable 1",
                "ExitRelay 0", "ExitPolicy reject *:*", "ServerDNSDetectHijacking 0",
                "ServerDNSResolvConfFile %s/resolv.conf" % self.root, "ContactInfo %s@test.invalid" % n.nick,
                "__OwningControllerProcess %d" % os.getpid()]
            if n.role == "auth":
                lines += ["AuthoritativeDirectory 1", "V3AuthoritativeDirectory 1",
                          "DirPort %s:%d" % (LOOP, n.dir_port),
                          "V3AuthVotingInterval 10", "V3AuthVoteDelay 2", "V3AuthDistDelay 2",
                          "TestingV3AuthInitialVotingInterval 10", "TestingV3AuthInitialVoteDelay 2",
                          "TestingV3AuthInitialDistDelay 2", "V3AuthNIntervalsValid 2",
                          "TestingDirAuthVoteHSDir *", "AuthDirTestReachability 0",
                          "AuthDirVoteStableGuaranteeMinUptime 0", "AuthDirVoteStableGuaranteeMTBF 0",
                          "V3BandwidthsFile " + bw,
                          "TestingDirAuthVoteGuard " + guards, "TestingDirAuthVoteGuardIsStrict 1"]
            with open(os.path.join(n.dir, "torrc"), "w") as f:
                f.write("\n".join(lines) + "\n")

    def common(self, data_dir=None):
        """torrc lines every tor of this network needs (clients: pass client_config())."""
        lines = ["TestingTorNetwork 1", "UseDefaultFallbackDirs 0", "ClientUseIPv6 0",
                 "GeoIPFile " + self.empty, "GeoIPv6File " + self.empty] + self.dirauth
        if data_dir:
            lines.insert(0, "DataDirectory " + data_dir)
        return lines

    def client_config(self):
        # A fresh client has no learned circuit build timeout and uses 60 s,
        # so a rendezvous circuit stuck after a stale introduction (an intro
        # point still holding a killed service's circuit ACKs it) waits
        # 3 x 60 + 1 s before tor gives up. Clients on the public network
        # learn a few seconds; 5 s fixed is ample on loopback.
        return self.common() + ["LearnCircuitBuildTimeout 0", "CircuitBuildTimeout 5"]

    def start(self, timeout=90.0):
        """Start every relay; return the seconds until the consensus lists them all (then SIGHUP the relays)."""
        t0 = time.monotonic()
        for n in self.nodes:
            with open(os.path.join(n.dir, "stdout.log"), "wb") as out:
                cmd = [self.tor, "--defaults-torrc", self.empty, "-f", os.path.join(n.dir, "torrc")]
                n.proc = subprocess.Popen(cmd, cwd=n.dir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        deadline = t0 + timeout
        while self.consensus_size() < len(self.nodes):
            dead = [n.nick for n in self.nodes if n.proc.poll() is not None]
            if dead:
                raise RuntimeError("tor exited: %s (see %s/*/notice.log)" % (", ".join(dead), self.root))
            if time.monotonic() > deadline:
                raise TimeoutError("after %g s the consensus lists %d of %d relays (see %s/*/notice.log)"
                                   % (timeout, self.consensus_size(), len(self.nodes), self.root))
            time.sleep(0.5)
        for n in self.nodes:
            if n.role == "relay":
                n.proc.send_signal(signal.SIGHUP)
        return time.monotonic() - t0

    def consensus_size(self):
        """Relays in the first authority's current microdesc consensus (0 if none yet)."""
        try:
            h = http.client.HTTPConnection(LOOP, self.nodes[0].dir_port, timeout=5)
            h.request("GET", "/tor/status-vote/current/consensus-microdesc")
            r = h.getresponse()
            body = r.read()
            h.close()
        except OSError:
            return 0
        return body.count(b"\nr ") if r.status == 200 else 0

    def stop(self, grace=10.0):
        """SIGTERM every tor by pid, SIGKILL what is left after grace seconds."""
        running = [n.proc for n in self.nodes if n.proc and n.proc.poll() is None]
        for p in running:
            p.terminate()
        deadline = time.monotonic() + grace
        for p in running:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
