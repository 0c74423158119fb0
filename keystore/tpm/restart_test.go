package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/loramesh/loramesh-core/keystore"
)

// An identity stays usable across a restart of the TPM process (swtpm
// killed and started again on the same state): the next call reconnects,
// re-creates the storage key, the session and the loaded key, and works;
// while the TPM is down calls fail with ErrNoDevice and the one after it is
// back works. Over TCP (a persistent connection) and a Unix socket (a
// connection per command).
func TestSwtpmRestart(t *testing.T) {
	for _, unix := range []bool{false, true} {
		name := map[bool]string{false: "tcp", true: "unix"}[unix]
		t.Run(name, func(t *testing.T) {
			s := startSwtpm(t, unix)
			ks := s.open(t, t.TempDir(), "4711")
			defer ks.Close()
			id := generate(t, ks, "survivor")
			sk, peer := softPeer(t)
			mine, _ := id.ecPub.ECDH()
			want, _ := sk.ECDH(mine)
			check := func(when string) {
				t.Helper()
				var z [32]byte
				if err := id.DH(peer, &z); err != nil {
					t.Fatalf("%s: DH: %v", when, err)
				}
				if !bytes.Equal(z[:], want) {
					t.Fatalf("%s: wrong secret", when)
				}
				d := sha256.Sum256([]byte(when))
				sig, err := id.Sign(nil, d[:], crypto.SHA256)
				if err != nil || !ecdsa.VerifyASN1(id.ecPub, d[:], sig) {
					t.Fatalf("%s: Sign: %v", when, err)
				}
			}
			check("before")
			for round := range 2 {
				pid, _ := os.ReadFile(filepath.Join(s.dir, "pid"))
				s.stop(t)
				time.Sleep(50 * time.Millisecond)
				if round == 1 {
					// Down: a typed error, and the keystore is not wedged.
					var z [32]byte
					if err := id.DH(peer, &z); !errors.Is(err, ErrNoDevice) && !errors.Is(err, keystore.ErrKeystore) {
						t.Fatalf("TPM down: %v", err)
					}
				}
				if err := s.start(t); err != nil {
					t.Fatal(err)
				}
				if now, _ := os.ReadFile(filepath.Join(s.dir, "pid")); bytes.Equal(now, pid) {
					t.Fatal("swtpm did not restart")
				}
				check("after restart")
			}
			o, err := ks.Open("survivor")
			if err != nil {
				t.Fatalf("open after restarts: %v", err)
			}
			o.Close()
		})
	}
}
