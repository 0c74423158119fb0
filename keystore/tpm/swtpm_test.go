package tpm

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
)

// swtpm is one software TPM the test started, with its own state directory.
type swtpm struct {
	dir        string
	cmd, plat  string // host:port, or socket paths for unixio
	port       int
	unixSocket bool
}

// startSwtpm starts swtpm on free loopback ports (or Unix sockets) and stops
// it, by the pid it wrote, when the test ends.
func startSwtpm(t testing.TB, unixSocket bool) *swtpm {
	t.Helper()
	dir := t.TempDir()
	for range 5 {
		s := &swtpm{dir: dir, unixSocket: unixSocket}
		if unixSocket {
			s.cmd, s.plat = filepath.Join(dir, "tpm.sock"), filepath.Join(dir, "ctrl.sock")
		} else {
			s.port = freePortPair(t)
			s.cmd, s.plat = fmt.Sprintf("127.0.0.1:%d", s.port), fmt.Sprintf("127.0.0.1:%d", s.port+1)
		}
		if err := s.start(t); err != nil {
			t.Logf("swtpm: %v", err)
			continue
		}
		t.Cleanup(func() { s.stop(t) })
		return s
	}
	t.Fatal("could not start swtpm")
	return nil
}

// start runs swtpm on s's state directory, ports or sockets.
func (s *swtpm) start(t testing.TB) error {
	server := "type=unixio,path=" + s.cmd
	ctrl := "type=unixio,path=" + s.plat
	if !s.unixSocket {
		server = fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", s.port)
		ctrl = fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", s.port+1)
	}
	// Output goes to a file: the daemon would hold a pipe open forever.
	logFile := filepath.Join(s.dir, "swtpm.log")
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+s.dir,
		"--server", server, "--ctrl", ctrl, "--flags", "not-need-init,startup-clear",
		"--pid", "file="+filepath.Join(s.dir, "pid"), "--daemon")
	c.Stdout, c.Stderr = log, log
	err = c.Run()
	log.Close()
	if err != nil {
		out, _ := os.ReadFile(logFile)
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// stop ends swtpm (its state directory stays, so keys stay valid).
func (s *swtpm) stop(t testing.TB) { stopPid(t, filepath.Join(s.dir, "pid")) }

func stopPid(t testing.TB, pidFile string) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Errorf("swtpm pid: %v", err)
		return
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	if pid <= 1 {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for range 100 {
		// The daemon is not our child: where nothing reaps it, it
		// lingers as a zombie, which is gone enough.
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || bytes.Contains(st, []byte(") Z ")) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// freePortPair finds P with P and P+1 free on loopback (swtpm's server and
// control ports); start retries if another process takes them meanwhile.
func freePortPair(t testing.TB) int {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		l.Close()
		if err == nil {
			l2.Close()
			return p
		}
	}
	t.Fatal("no free port pair")
	return 0
}

func (s *swtpm) open(t testing.TB, dir, auth string) *Keystore {
	t.Helper()
	cfg := Config{Dir: dir, Auth: pin(auth)}
	var ks *Keystore
	var err error
	if s.unixSocket {
		ks, err = OpenSwtpmUnix(s.cmd, cfg)
	} else {
		ks, err = OpenSwtpm(s.cmd, s.plat, cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// tool runs a tpm2-tools or openssl command against s.
func (s *swtpm) tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	c := exec.Command(name, args...)
	c.Env = append(os.Environ(), fmt.Sprintf("TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=%d", s.port))
	c.Dir = s.dir
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func TestSwtpm(t *testing.T) {
	s := startSwtpm(t, false)
	keys := t.TempDir()
	const right = "4711"
	ks := s.open(t, keys, right)
	id := generate(t, ks, "field")
	pub := id.ecPub
	msg := []byte("signed by the TPM, checked by openssl")
	d := sha256.Sum256(msg)
	// The first Sign of a DA-protected key answers TPM_RC_RETRY on swtpm.
	sig, err := id.Sign(nil, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	sk, peer := softPeer(t)
	var z [32]byte
	if err := id.DH(peer, &z); err != nil {
		t.Fatal(err)
	}
	myECDH, _ := pub.ECDH()
	if want, _ := sk.ECDH(myECDH); !bytes.Equal(z[:], want) {
		t.Fatal("swtpm DH differs from crypto/ecdh")
	}
	if n := id.PrivateKeyOps(); n != 2 {
		t.Fatalf("ops = %d, want 2", n)
	}
	id.Close()
	ks.Close()

	t.Run("tpm2-tools loads the key file", func(t *testing.T) {
		s.tool(t, "tpm2_load", "-r", filepath.Join(keys, "field.pem"), "-c", "key.ctx")
		out := s.tool(t, "tpm2_readpublic", "-c", "key.ctx")
		s.tool(t, "tpm2_flushcontext", "-t")
		x, y := field(out, "x"), field(out, "y")
		if x != hex.EncodeToString(pub.X.FillBytes(make([]byte, 32))) ||
			y != hex.EncodeToString(pub.Y.FillBytes(make([]byte, 32))) {
			t.Fatalf("tpm2_readpublic shows another point:\n%s", out)
		}
	})

	t.Run("openssl verifies the signature", func(t *testing.T) {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		write := func(name string, b []byte) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		pp := write("pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		out := s.tool(t, "openssl", "dgst", "-sha256", "-verify", pp,
			"-signature", write("sig", sig), write("msg", msg))
		if !strings.Contains(out, "Verified OK") {
			t.Fatalf("openssl: %s", out)
		}
	})

	t.Run("reloaded in a second process", func(t *testing.T) {
		sk, peer := softPeer(t)
		out := runChild(t, s, keys, right, peer)
		var zHash, sigHex string
		fmt.Sscan(out, &zHash, &sigHex)
		want, _ := sk.ECDH(myECDH)
		wh := sha256.Sum256(want)
		if zHash != hex.EncodeToString(wh[:]) {
			t.Fatalf("child DH differs: %q", out)
		}
		csig, _ := hex.DecodeString(sigHex)
		cd := sha256.Sum256([]byte(childMsg))
		if !ecdsa.VerifyASN1(pub, cd[:], csig) {
			t.Fatal("child signature does not verify with the parent's public key")
		}
	})

	t.Run("handshake with a memory identity", func(t *testing.T) {
		ks := s.open(t, keys, right)
		defer ks.Close()
		id, err := ks.Open("field")
		if err != nil {
			t.Fatal(err)
		}
		defer id.Close()
		mem, err := memory.Generate()
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Close()
		handshake(t, id.(*Identity), mem)
	})

	t.Run("handshake with a SoftHSM identity", func(t *testing.T) {
		ks := s.open(t, keys, right)
		defer ks.Close()
		id, err := ks.Open("field")
		if err != nil {
			t.Fatal(err)
		}
		defer id.Close()
		handshake(t, id.(*Identity), softhsmPeer(t))
	})

	t.Run("wrong auth, lockout, recovery", func(t *testing.T) {
		// Each keystore remembers the values that failed; a fresh one (a
		// person retyping the same mistake in a new process) costs a try.
		var ae *AuthError
		for left := uint32(2); ; left-- {
			ks := s.open(t, keys, "wrong")
			_, err := ks.Open("field")
			if left == 0 {
				// The third failure used the last try.
				if !errors.As(err, &ae) || ae.Left != 0 {
					t.Fatalf("third wrong auth: %v", err)
				}
				ks.Close()
				break
			}
			if !errors.As(err, &ae) || !ae.Known || ae.Left != left || ae.Max != 3 {
				t.Fatalf("wrong auth with %d tries left: %v", left, err)
			}
			if _, err := ks.Open("field"); !errors.As(err, &ae) || !ae.NotResent {
				t.Fatalf("same wrong value again: %v", err)
			}
			ks.Close()
		}
		ks := s.open(t, keys, right)
		_, err := ks.Open("field")
		var le *LockoutError
		if !errors.Is(err, keystore.ErrLockedOut) || !errors.As(err, &le) || le.Wait != 1000*time.Second ||
			!strings.Contains(err.Error(), "tpm2_dictionarylockout -c") {
			t.Fatalf("right auth during lockout: %v", err)
		}
		// swtpm serves one connection at a time: let the tool in.
		ks.Close()
		s.tool(t, "tpm2_dictionarylockout", "-c")
		ks = s.open(t, keys, right)
		defer ks.Close()
		id, err := ks.Open("field")
		if err != nil {
			t.Fatalf("after tpm2_dictionarylockout -c: %v", err)
		}
		defer id.Close()
		var z [32]byte
		if err := id.DH(peer, &z); err != nil {
			t.Fatal(err)
		}
	})
}

// field returns the value of a "name: value" line of tpm2-tools YAML output.
func field(out, name string) string {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), name+": "); ok {
			return v
		}
	}
	return ""
}

func TestSwtpmUnixSocket(t *testing.T) {
	s := startSwtpm(t, true)
	ks := s.open(t, t.TempDir(), "")
	defer ks.Close()
	id := generate(t, ks, "u")
	sk, peer := softPeer(t)
	var z [32]byte
	if err := id.DH(peer, &z); err != nil {
		t.Fatal(err)
	}
	myECDH, _ := id.ecPub.ECDH()
	if want, _ := sk.ECDH(myECDH); !bytes.Equal(z[:], want) {
		t.Fatal("DH over the Unix socket differs from crypto/ecdh")
	}
}

// The second process: the test binary re-executed with childEnv set.
const (
	childEnv = "LORAMESH_TPM_CHILD"
	childMsg = "second process"
)

func runChild(t *testing.T, s *swtpm, dir, auth string, peer keystore.PublicKey) string {
	t.Helper()
	c := exec.Command(os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), childEnv+"=1",
		"CHILD_CMD="+s.cmd, "CHILD_PLAT="+s.plat, "CHILD_DIR="+dir,
		"CHILD_PEER="+hex.EncodeToString(peer.Bytes()))
	c.Stdin = strings.NewReader(auth) // not in the environment
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}
	return string(out)
}

// child opens the saved key, does one DH and one Sign, and prints the
// SHA-256 of the shared secret (never the secret) and the signature.
func child() int {
	auth, _ := io.ReadAll(os.Stdin)
	ks, err := OpenSwtpm(os.Getenv("CHILD_CMD"), os.Getenv("CHILD_PLAT"), Config{
		Dir:  os.Getenv("CHILD_DIR"),
		Auth: func(string) ([]byte, error) { return bytes.Clone(auth), nil },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer ks.Close()
	id, err := ks.Open("field")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer id.Close()
	pb, _ := hex.DecodeString(os.Getenv("CHILD_PEER"))
	peer, err := keystore.ParsePublicKey(keystore.P256, pb)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var z [32]byte
	if err := id.DH(peer, &z); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	d := sha256.Sum256([]byte(childMsg))
	sig, err := id.Sign(nil, d[:], crypto.SHA256)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	zh := sha256.Sum256(z[:])
	fmt.Printf("%x %x\n", zh, sig)
	return 0
}
