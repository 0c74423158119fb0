// Command bench (make bench) measures speed, bytes on air and locked memory,
// each beside a reference measured in the same run, prints one table and
// regenerates docs/BENCHMARKS.md. Ratios are what count: the machine is
// shared and noisy. Targets are reported met or missed, never tuned away.
package main

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flynn/noise"
	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/internal/noisetest"
	"github.com/loramesh/loramesh-core/internal/softhsm"
	"github.com/loramesh/loramesh-core/internal/tpmsim"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
	"github.com/loramesh/loramesh-core/keystore/pkcs11"
	"github.com/loramesh/loramesh-core/keystore/tpm"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/unix"
)

type row struct{ what, value, ref, ratio, target, verdict string }

var rows []row

func add(r row) {
	rows = append(rows, r)
	fmt.Fprintf(os.Stderr, "  %-58s %s\n", r.what, r.value)
}

func ns(r testing.BenchmarkResult) float64 { return float64(r.T.Nanoseconds()) / float64(r.N) }

// interleave times n calls of each f in turn, eleven rounds, and returns each
// one's median time per call: a measurement and its references share the
// machine's noise instead of taking turns at it.
func interleave(n int, fs ...func()) []float64 {
	const rounds = 11
	per := make([][]float64, len(fs))
	for range rounds {
		for i, f := range fs {
			t0 := time.Now()
			for range n {
				f()
			}
			per[i] = append(per[i], float64(time.Since(t0).Nanoseconds())/float64(n))
		}
	}
	med := make([]float64, len(fs))
	for i, xs := range per {
		slices.Sort(xs)
		med[i] = xs[rounds/2]
	}
	return med
}

func dur(n float64) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.2f ms", n/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f µs", n/1e3)
	}
	return fmt.Sprintf("%.0f ns", n)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

var suites = []keystore.Suite{keystore.X25519, keystore.P256}

func must[T any](v T, err error) T {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	return v
}

func handshake(a, b keystore.Identity, s keystore.Suite, r *core.Responder) (*core.Session, *core.Session) {
	in, m1 := must2(core.Initiate(a, must(b.DHPublic(s)), nil, nil))
	rs, _, m2, err := r.Respond(m1, nil)
	if err != nil {
		must(0, err)
	}
	is, _ := must2(in.Finish(m2))
	return is, rs
}

func must2[A, B any](a A, b B, err error) (A, B) {
	must(0, err)
	return a, b
}

func main() {
	if os.Getenv("LORAMESH_BENCH_CHILD") != "" {
		scaleChild()
		return
	}
	fmt.Fprintln(os.Stderr, "make bench: measuring (about two minutes)")
	benchHandshakes()
	benchTransport()
	benchHardware()
	benchPython()
	bytesOnAir()
	benchEngine()
	scale()
	libSize()
	writeTable()
}

func benchHandshakes() {
	for _, s := range suites {
		a, b := must(memory.Generate()), must(memory.Generate())
		r := core.NewResponder(b, nil)
		cs := noisetest.Suite(s)
		ki, kr := must(cs.GenerateKeypair(rand.Reader)), must(cs.GenerateKeypair(rand.Reader))
		c := ecdh.X25519()
		if s == keystore.P256 {
			c = ecdh.P256()
		}
		k, p := must(c.GenerateKey(rand.Reader)), must(c.GenerateKey(rand.Reader))
		t := interleave(40, func() {
			x, y := handshake(a, b, s, r)
			x.Close()
			y.Close()
		}, func() {
			hi, _ := noise.NewHandshakeState(noise.Config{CipherSuite: cs, Pattern: noise.HandshakeIK, Initiator: true, StaticKeypair: ki, PeerStatic: kr.Public})
			hr, _ := noise.NewHandshakeState(noise.Config{CipherSuite: cs, Pattern: noise.HandshakeIK, StaticKeypair: kr})
			m1, _, _, _ := hi.WriteMessage(nil, nil)
			hr.ReadMessage(nil, m1)
			m2, _, _, _ := hr.WriteMessage(nil, nil)
			if _, _, _, err := hi.ReadMessage(nil, m2); err != nil {
				must(0, err)
			}
		}, func() {
			for range 10 {
				k.ECDH(p.PublicKey())
			}
		})
		ours, flynn, bare := t[0], t[1], t[2]
		name := suiteName(s)
		add(row{"handshake " + name + ", memory identities, both sides", dur(ours), "10 bare scalar mults: " + dur(bare), fmt.Sprintf("%.2f", ours/bare), "≤ 1.15", verdict(ours/bare <= 1.15)})
		add(row{"handshake " + name + ", flynn/noise", dur(flynn), "10 bare scalar mults: " + dur(bare), fmt.Sprintf("%.2f", flynn/bare), "", ""})
	}
}

func suiteName(s keystore.Suite) string {
	if s == keystore.P256 {
		return "P-256"
	}
	return "25519"
}

func benchTransport() {
	a, b := must(memory.Generate()), must(memory.Generate())
	is, rs := handshake(a, b, keystore.X25519, core.NewResponder(b, &core.Config{MaxMessages: 1 << 62}))
	cs := noisetest.Suite(keystore.X25519)
	aead := must(chacha20poly1305.New(make([]byte, 32)))
	for _, n := range []int{16, 100, 200, 1024} {
		msg := make([]byte, n)
		var key [32]byte
		enc, dec := cs.Cipher(key), cs.Cipher(key)
		var i uint64
		nonce := make([]byte, 12)
		t := interleave(3000, func() {
			must(rs.Decrypt(must(is.Encrypt(msg))))
		}, func() {
			ct := enc.Encrypt(nil, i, nil, msg)
			dec.Decrypt(nil, i, nil, ct)
			i++
		}, func() {
			aead.Open(nil, nonce, aead.Seal(nil, nonce, msg, nil), nil)
		})
		ours, flynn, raw := t[0], t[1], t[2]
		target, v := "", ""
		if n == 100 {
			target, v = "≤ 5× flynn", verdict(ours/flynn <= 5)
		}
		add(row{fmt.Sprintf("transport encrypt+decrypt, %d bytes", n), dur(ours),
			fmt.Sprintf("flynn CipherState %s, raw ChaCha20-Poly1305 %s", dur(flynn), dur(raw)), fmt.Sprintf("%.1f× flynn", ours/flynn), target, v})
	}
}

// hardware measures a P-256 handshake between a hardware identity and a
// memory identity, and counts the device's private-key operations.
func hardware(name string, hw keystore.Identity) {
	mem := must(memory.Generate())
	r := core.NewResponder(mem, nil)
	ops := hw.(keystore.OpCounter)
	before := ops.PrivateKeyOps()
	var is, rs *core.Session
	t := ns(testing.Benchmark(func(tb *testing.B) {
		for tb.Loop() {
			x, y := handshake(hw, mem, keystore.P256, r)
			x.Close()
			y.Close()
		}
	}))
	mem2 := must(memory.Generate())
	r2 := core.NewResponder(mem2, nil)
	before = ops.PrivateKeyOps()
	is, rs = handshake(hw, mem2, keystore.P256, r2)
	perHS := ops.PrivateKeyOps() - before
	before = ops.PrivateKeyOps()
	for range 100 {
		ct := must(is.Encrypt([]byte("x")))
		must(rs.Decrypt(ct))
	}
	perMsg := float64(ops.PrivateKeyOps()-before) / 100
	add(row{"handshake P-256, " + name + " identity <-> memory", dur(t), fmt.Sprintf("%d device ops per handshake, %.0f per message", perHS, perMsg), "", "2 and 0", verdict(perHS == 2 && perMsg == 0)})
}

func benchHardware() {
	env := must(softhsm.New())
	defer env.Cleanup()
	tok := must(env.InitToken("bench", "bench-pin"))
	ks := must(pkcs11.OpenURI(tok.URI(), tok.PIN))
	defer ks.Close()
	hardware("SoftHSM", must(ks.Generate("bench", keystore.P256)))

	tr := must(tpmsim.Open())
	dir := must(os.MkdirTemp("", "lmbench-tpm"))
	defer os.RemoveAll(dir)
	tks := must(tpm.OpenTransport(tr, tpm.Config{Dir: dir}))
	defer tks.Close()
	hardware("TPM (simulator)", must(tks.Generate("bench")))
}

// benchPython runs tests/bench_python.py through the binding when present.
func benchPython() {
	script := "tests/bench_python.py"
	if _, err := os.Stat(script); err != nil {
		add(row{"Python encrypt+decrypt, 100 bytes", "not measured", "binding not present", "", "≤ 2×", "not measured"})
		return
	}
	cmd := exec.Command("/usr/bin/python3", script)
	cmd.Env = append(os.Environ(), "PYTHONPATH=python", "LORAMESH_LIB=build/libloramesh.so")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	var res struct {
		Binding      float64  `json:"binding_ns"`
		Cryptography *float64 `json:"cryptography_ns"`
	}
	if err != nil || json.Unmarshal(out, &res) != nil {
		add(row{"Python encrypt+decrypt, 100 bytes", "failed", fmt.Sprint(err), "", "≤ 2×", "**missed**"})
		return
	}
	if res.Cryptography == nil {
		add(row{"Python session encrypt+decrypt, 100 bytes", dur(res.Binding), "cryptography: not installed", "", "≤ 2×", "not measured"})
		return
	}
	ratio := res.Binding / *res.Cryptography
	add(row{"Python session encrypt+decrypt, 100 bytes", dur(res.Binding), "cryptography ChaCha20Poly1305: " + dur(*res.Cryptography), fmt.Sprintf("%.2f", ratio), "≤ 2×", verdict(ratio <= 2)})
}

func bytesOnAir() {
	for _, s := range suites {
		a, b := must(memory.Generate()), must(memory.Generate())
		for _, p := range []int{0, 100} {
			payload := make([]byte, p)
			in, m1 := must2(core.Initiate(a, must(b.DHPublic(s)), payload, nil))
			_, _, m2, err := core.NewResponder(b, nil).Respond(m1, payload)
			must(0, err)
			is, _ := must2(in.Finish(m2))
			tr := must(is.Encrypt(payload))
			want := map[keystore.Suite][3]int{keystore.X25519: {97, 53, 21}, keystore.P256: {99, 54, 21}}[s]
			add(row{fmt.Sprintf("bytes on air %s, payload %d", suiteName(s), p),
				fmt.Sprintf("init %d, response %d, transport %d", len(m1), len(m2), len(tr)),
				fmt.Sprintf("overhead %d / %d / %d", len(m1)-p, len(m2)-p, len(tr)-p), "",
				fmt.Sprintf("≤ %d / %d / %d", want[0], want[1], want[2]),
				verdict(len(m1)-p <= want[0] && len(m2)-p <= want[1] && len(tr)-p <= want[2])})
		}
	}
}

// scale runs a child process per count with RLIMIT_MEMLOCK at 8 MiB; as root
// the child runs as nobody, since CAP_IPC_LOCK ignores the limit.
func scale() {
	exe := must(os.Executable())
	dir := must(os.MkdirTemp("", "lmbench"))
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	child := filepath.Join(dir, "bench")
	data := must(os.ReadFile(exe))
	must(0, os.WriteFile(child, data, 0o755))
	for _, n := range []int{1000, 10000} {
		cmd := exec.Command(child)
		cmd.Env = append(os.Environ(), "LORAMESH_BENCH_CHILD="+strconv.Itoa(n))
		cmd.Dir = dir
		as := "this user"
		if os.Geteuid() == 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			as = "nobody"
		}
		out, err := cmd.CombinedOutput()
		var res struct{ Locked, Slab, InUse, RSS, Base int }
		if err != nil || json.Unmarshal(bytes.TrimSpace(lastLine(out)), &res) != nil {
			add(row{fmt.Sprintf("%d sessions, RLIMIT_MEMLOCK 8 MiB (as %s)", n, as), "failed", strings.TrimSpace(string(lastLine(out))), "", "within 8 MiB", "**missed**"})
			continue
		}
		add(row{fmt.Sprintf("%d sessions, RLIMIT_MEMLOCK 8 MiB (as %s)", n, as),
			fmt.Sprintf("%d B of locked slab per session, %d B resident per session", res.InUse/n, (res.RSS-res.Base)/n),
			fmt.Sprintf("process VmLck %.2f MiB (slab %.2f MiB)", float64(res.Locked)/(1<<20), float64(res.Slab)/(1<<20)), "",
			"within 8 MiB", verdict(res.Locked <= 8<<20)})
	}
}

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

func status(field string) int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb << 10
		}
	}
	return 0
}

func scaleChild() {
	n, _ := strconv.Atoi(os.Getenv("LORAMESH_BENCH_CHILD"))
	lim := unix.Rlimit{Cur: 8 << 20, Max: 8 << 20}
	must(0, unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim))
	a, b := must(memory.Generate()), must(memory.Generate())
	r := core.NewResponder(b, &core.Config{ReplayCache: 1})
	x, y := handshake(a, b, keystore.X25519, r)
	x.Close()
	y.Close()
	runtime.GC()
	base := status("VmRSS")
	_, inUse0 := core.LockedMemory()
	var keep []*core.Session
	for len(keep) < n {
		x, y := handshake(a, b, keystore.X25519, r)
		keep = append(keep, x, y)
	}
	runtime.GC()
	slab, inUse := core.LockedMemory()
	out, _ := json.Marshal(map[string]int{"Locked": status("VmLck"), "Slab": slab, "InUse": inUse - inUse0, "RSS": status("VmRSS"), "Base": base})
	fmt.Println(string(out))
	runtime.KeepAlive(keep)
}

func libSize() {
	st, err := os.Stat("build/libloramesh.so")
	if err != nil {
		add(row{"build/libloramesh.so", "not built", "", "", "", ""})
		return
	}
	add(row{"build/libloramesh.so size", fmt.Sprintf("%.1f MiB", float64(st.Size())/(1<<20)), "", "", "", ""})
	crossSizes()
}

// crossSizes reports the size of each architecture's build (`make cross`):
// the shared library as built and stripped (what a device stores), and the
// static archive (what a firmware link starts from; the linker keeps only
// what is used). Only sizes: no speed is measured for arm64 or arm, since
// under qemu-user the timings are the emulator's, not a board's.
func crossSizes() {
	strip := map[string]string{"amd64": "strip", "arm64": "aarch64-linux-gnu-strip", "arm": "arm-linux-gnueabihf-strip"}
	for _, arch := range []string{"amd64", "arm64", "arm"} {
		dir := filepath.Join("build", "linux-"+arch)
		so, err1 := os.Stat(filepath.Join(dir, "libloramesh.so"))
		ar, err2 := os.Stat(filepath.Join(dir, "libloramesh.a"))
		if err1 != nil || err2 != nil {
			add(row{"libloramesh, linux/" + arch, "not built (make cross)", "", "", "", ""})
			continue
		}
		stripped := "strip failed"
		tmp := filepath.Join(os.TempDir(), "libloramesh-stripped-"+arch+".so")
		if out, err := exec.Command(strip[arch], "-o", tmp, filepath.Join(dir, "libloramesh.so")).CombinedOutput(); err == nil {
			if st, err := os.Stat(tmp); err == nil {
				stripped = mib(st.Size())
			}
			os.Remove(tmp)
		} else {
			fmt.Fprintf(os.Stderr, "  %s: %v: %s\n", strip[arch], err, out)
		}
		what := "libloramesh.so, linux/" + arch
		if arch == "arm" {
			what += " (GOARM=7)"
		}
		add(row{what, mib(so.Size()), "stripped " + stripped + "; libloramesh.a " + mib(ar.Size()), "", "", ""})
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}

func writeTable() {
	var t strings.Builder
	t.WriteString("| measurement | value | reference (same run) | ratio | target | |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&t, "| %s | %s | %s | %s | %s | %s |\n", r.what, r.value, r.ref, r.ratio, r.target, r.verdict)
	}
	fmt.Print(t.String())
	exp := os.Getenv("GOEXPERIMENT")
	doc := fmt.Sprintf(`# Benchmarks

Generated by `+"`make bench`"+` on %s: %s, %d CPUs, %s, GOEXPERIMENT=%s.
Every figure stands beside a reference measured in the same run; on a shared
machine the ratio is what counts. A missed target is reported, not tuned away.

%s
Notes:
- Method: each measurement and its references are timed in turn, eleven
  rounds, and the median per call is shown (interleaving shares the noise).
- Handshake: both sides of a full Noise_IK handshake with keys in
  keystore/memory; the bare reference is ten crypto/ecdh ECDH operations with
  keys made beforehand (an IK handshake needs two key generations and eight
  DHs). The core uses fixed-base tables for ephemeral keys; a memory
  identity unseals its seed (one HMAC) for each operation.
- Transport: a ratcheted Session (a KDF step per message, a fresh message
  key, CBOR framing, one runtime/secret.Do per call) against flynn/noise's
  unratcheted CipherState and the bare AEAD. The ratchet's KDF is two
  HMAC-SHA256 per message per side, four per round trip; on this machine a
  two-block SHA-256 takes about 135 ns, so the KDF alone costs about 2.4
  times flynn's whole round trip at 100 bytes, and the 5x target is missed
  on that floor plus the AEAD composed on the stack (slower than x/crypto's
  fused assembly, but free of heap state runtime/secret would have to
  erase).
- Hardware: device operations are counted by the keystores themselves
  (keystore.OpCounter). SoftHSM and the TPM simulator are software; real
  tokens and TPMs are slower per operation, not different in count.
- Sessions: a child process with RLIMIT_MEMLOCK lowered to 8 MiB, as a
  non-root user has it; "locked per session" is the core slab's share.
- Library sizes: build/linux-GOARCH/ from `+"`make cross`"+`, stripped with
  that architecture's binutils. Every figure above is for this machine's
  architecture only: arm64 and arm are tested under qemu-user (`+"`make test`"+`),
  where timings are the emulator's, not a board's, so none are recorded.
`, time.Now().UTC().Format("2006-01-02"), cpuModel(), runtime.NumCPU(), runtime.Version(), exp, t.String())
	must(0, os.WriteFile("docs/BENCHMARKS.md", []byte(doc), 0o644))
	fmt.Fprintln(os.Stderr, "wrote docs/BENCHMARKS.md")
}
