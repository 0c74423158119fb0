package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
	"github.com/loramesh/loramesh-core/keystore/pkcs11"
	"github.com/loramesh/loramesh-core/keystore/tpm"
)

func header(t *testing.T) string {
	b, err := os.ReadFile("loramesh.h")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCodesMatchHeader: the enum in loramesh.h and the Go constants agree,
// and so do the size macros.
func TestCodesMatchHeader(t *testing.T) {
	h := header(t)
	want := map[string]int{
		"LM_OK": int(ok), "LM_ERR_INVALID_ARG": int(errInvalidArg), "LM_ERR_BUFFER_TOO_SMALL": int(errBufferTooSmall),
		"LM_ERR_AUTH": int(errAuth), "LM_ERR_REPLAY": int(errReplay), "LM_ERR_MALFORMED": int(errMalformed),
		"LM_ERR_LIMIT": int(errLimit), "LM_ERR_UNSUPPORTED": int(errUnsupported), "LM_ERR_KEYSTORE": int(errKeystore),
		"LM_ERR_PIN": int(errPIN), "LM_ERR_LOCKED": int(errLocked), "LM_ERR_NOT_FOUND": int(errNotFound),
		"LM_ERR_EXISTS": int(errExists), "LM_ERR_HANDLE": int(errHandle), "LM_ERR_LOCKED_MEMORY": int(errLockedMemory),
		"LM_ERR_UNKNOWN_PEER": int(errUnknownPeer), "LM_ERR_TOO_OLD": int(errTooOld), "LM_ERR_STATE": int(errState),
		"LM_ERR_BAD_CARD": int(errBadCard), "LM_ERR_VERSION": int(errVersion), "LM_ERR_INVALID_KEY": int(errInvalidKey),
		"LM_ERR_INTERNAL": int(errInternal), "LM_ERR_IN_USE": int(errInUse), "LM_ERR_KEY_CHANGED": int(errKeyChanged),
		"LM_ERR_CONFLICT": int(errConflict), "LM_ERR_FULL": int(errFull),
	}
	got := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(LM_(?:OK|ERR_[A-Z_]+)) = (\d+),?`).FindAllStringSubmatch(h, -1) {
		got[m[1]], _ = strconv.Atoi(m[2])
	}
	if len(got) != len(want) || len(got) != numCodes {
		t.Fatalf("header has %d codes, Go %d, numCodes %d", len(got), len(want), numCodes)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: header %d, Go %d", k, got[k], v)
		}
	}
	macro := func(name string) int {
		m := regexp.MustCompile(`#define ` + name + ` (0x[0-9a-f]+|\d+)`).FindStringSubmatch(h)
		if m == nil {
			t.Fatalf("no %s in header", name)
		}
		v, _ := strconv.ParseInt(m[1], 0, 64)
		return int(v)
	}
	for name, k := range map[string]core.Kind{"LM_PACKET_INIT_X25519": core.KindInitX25519, "LM_PACKET_INIT_P256": core.KindInitP256,
		"LM_PACKET_RESPONSE": core.KindResponse, "LM_PACKET_TRANSPORT": core.KindTransport, "LM_PACKET_CARD": core.KindCard} {
		if macro(name) != int(k) {
			t.Errorf("%s differs from core", name)
		}
	}
	if macro("LM_ABI_VERSION") != abiVersion {
		t.Error("LM_ABI_VERSION differs from abiVersion")
	}
	if macro("LM_MAX_PAYLOAD") != maxPayload {
		t.Error("LM_MAX_PAYLOAD differs")
	}
	if macro("LM_MAX_OVERHEAD") != core.EncryptedSize(maxPayload)-maxPayload {
		t.Errorf("LM_MAX_OVERHEAD: %d", core.EncryptedSize(maxPayload)-maxPayload)
	}
	if macro("LM_MAX_INIT_PAYLOAD") != maxInitPayload {
		t.Error("LM_MAX_INIT_PAYLOAD differs")
	}
	if macro("LM_SEED_SIZE") != memory.SeedSize {
		t.Error("LM_SEED_SIZE differs")
	}
	if macro("LM_FEATURE_ERASE") != featureErase || macro("LM_FEATURE_MLOCK") != featureMlock {
		t.Error("LM_FEATURE_* differ")
	}
}

// TestFeatures: the bits are the build's (secret.Erases; mlock on Linux),
// and the text says the same, starting with the platform and Go version.
func TestFeatures(t *testing.T) {
	f, text := featureFlags(), featureText()
	t.Log(text)
	if (f&featureErase != 0) != secret.Erases {
		t.Errorf("erase bit %v, secret.Erases %v", f&featureErase != 0, secret.Erases)
	}
	if (f&featureMlock != 0) != (runtime.GOOS == "linux") {
		t.Errorf("mlock bit %v on %s", f&featureMlock != 0, runtime.GOOS)
	}
	if f&^(featureErase|featureMlock) != 0 {
		t.Errorf("undocumented bits %#x", f)
	}
	words := strings.Fields(text)
	if len(words) < 2 || words[0] != runtime.GOOS+"/"+runtime.GOARCH || strings.TrimSuffix(words[1], ":") != runtime.Version() {
		t.Errorf("text %q does not start with the platform and Go version", text)
	}
	for bit, word := range map[uint32]string{featureErase: "erase", featureMlock: "mlock"} {
		want := word + " no"
		if f&bit != 0 {
			want = word + " yes"
		}
		if !strings.Contains(text, want) {
			t.Errorf("text %q lacks %q", text, want)
		}
	}
	if secret.Erases == strings.Contains(text, "(") {
		t.Errorf("text %q: a missing guarantee comes with its reason, a present one without", text)
	}
}

// TestLimitsWithinCore: the C ABI's one payload bound for every suite is
// within each of core's per-suite limits, and the largest message 1 it lets
// through is one core's responder reads.
func TestLimitsWithinCore(t *testing.T) {
	a, _ := memory.Generate()
	b, _ := memory.Generate()
	for _, suite := range []keystore.Suite{keystore.X25519, keystore.P256} {
		if maxInitPayload > core.MaxInitPayload(suite) || maxPayload > core.MaxReplyPayload(suite) || maxPayload > core.MaxPlaintext {
			t.Fatalf("%v: C ABI limits above core's", suite)
		}
		k, _ := b.DHPublic(suite)
		in, m1, err := core.Initiate(a, k, make([]byte, maxInitPayload), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := core.NewResponder(b, nil).Respond(m1, make([]byte, maxPayload)); err != nil {
			t.Errorf("%v: largest msg1 refused: %v", suite, err)
		}
		in.Close()
	}
}

func TestHandles(t *testing.T) {
	h1 := newHandle(kindCard, 1)
	h2 := newHandle(kindSession, 2)
	if h1 == 0 || h2 == h1 || uint64(h1)>>48 != 0x4c4d {
		t.Fatalf("handles %x %x", h1, h2)
	}
	if _, found := lookup(h1, kindSession); found {
		t.Fatal("wrong kind found")
	}
	if _, found := release(h1, kindCard); !found {
		t.Fatal("release")
	}
	if _, found := release(h1, kindCard); found {
		t.Fatal("double release")
	}
	release(h2, kindSession)
}

// TestGuardRecovers: a panic inside an export becomes LM_ERR_INTERNAL with a
// message, and a success clears the message.
func TestGuardRecovers(t *testing.T) {
	rc := ok
	func() {
		defer guard(&rc)
		var m map[string]int
		m["boom"]++ // a runtime panic: assignment to entry in nil map
	}()
	if rc != errInternal {
		t.Fatalf("rc %d, want LM_ERR_INTERNAL", rc)
	}
	rc = ok
	func() {
		defer guard(&rc)
		rc = codeOf(core.ErrReplay, errInternal)
	}()
	if rc != errReplay {
		t.Fatalf("rc %d, want LM_ERR_REPLAY", rc)
	}
}

// TestCodeOf: wrapped sentinels map to their codes, the more specific first.
func TestCodeOf(t *testing.T) {
	cases := []struct {
		err  error
		want cInt
	}{
		{core.ErrAuth, errAuth},
		{core.ErrReplay, errReplay},
		{core.ErrLimit, errLimit},
		{core.ErrTooOld, errTooOld},
		{core.ErrUnknownPeer, errUnknownPeer},
		{core.ErrLockedMemory, errLockedMemory},
		{core.ErrState, errState},
		{keystore.ErrClosed, errState},
		{core.ErrVersion, errVersion},
		{core.ErrMalformed, errMalformed},
		{fmt.Errorf("%w: %w", core.ErrBadCard, core.ErrMalformed), errBadCard},
		{keystore.ErrWrongPIN, errPIN},
		{keystore.ErrLockedOut, errLocked},
		{keystore.ErrNotFound, errNotFound},
		{pkcs11.ErrTokenNotFound, errNotFound},
		{keystore.ErrExists, errExists},
		{keystore.ErrUnsupportedSuite, errUnsupported},
		{keystore.ErrInvalidPublicKey, errInvalidKey},
		{pkcs11.ErrURI, errInvalidArg},
		{tpm.ErrNoDevice, errNotFound},
		{&tpm.LockoutError{}, errLocked},
		{pkcs11.ErrModuleLoad, errKeystore},
		{keystore.ErrKeystore, errKeystore},
		{errors.New("other"), errInternal},
	}
	for _, c := range cases {
		if got := codeOf(fmt.Errorf("step: %w", c.err), errInternal); got != c.want {
			t.Errorf("%v: code %d, want %d", c.err, got, c.want)
		}
	}
}
