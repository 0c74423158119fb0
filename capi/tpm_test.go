package main

import (
	"errors"
	"testing"

	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/internal/tpmsim"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/tpm"
)

// daReset sends TPM2_DictionaryAttackLockReset with the empty lockout auth.
func daReset(t *testing.T, tp tpmsim.Transport) {
	t.Helper()
	rsp, err := tp.Send([]byte{0x80, 0x02, 0, 0, 0, 27, 0, 0, 0x01, 0x39, 0x40, 0, 0, 0x0a,
		0, 0, 0, 9, 0x40, 0, 0, 0x09, 0, 0, 0, 0, 0})
	if err != nil || len(rsp) < 10 || rsp[6]|rsp[7]|rsp[8]|rsp[9] != 0 {
		t.Fatalf("DictionaryAttackLockReset: %x %v", rsp, err)
	}
}

// After the TPM rejects the keystore's auth value, the C ABI's copy is
// wiped and never handed out again: every later request is LM_ERR_PIN and
// reaches no TPM, until the keystore is opened with a new value.
func TestTPMAuthNotReoffered(t *testing.T) {
	tp, err := tpmsim.Open()
	if err != nil {
		t.Fatal(err)
	}
	daReset(t, tp)
	defer daReset(t, tp)
	dir := t.TempDir()
	open := func(v string) (*tpm.Keystore, *tpmAuth) {
		b, err := secret.NewBuffer([]byte(v))
		if err != nil {
			t.Fatal(err)
		}
		a := &tpmAuth{val: b}
		ks, err := tpm.OpenTransport(tp, tpm.Config{Dir: dir, Auth: a.get, AuthFailed: a.rejected})
		if err != nil {
			t.Fatal(err)
		}
		return ks, a
	}
	ks, a := open("right")
	id, err := ks.Generate("k", keystore.P256)
	if err != nil {
		t.Fatal(err)
	}
	id.Close()
	ks.Close()
	a.free()

	ks, a = open("wrong")
	defer ks.Close()
	defer a.free()
	if _, err := ks.Open("k"); codeOf(err, errInternal) != errPIN {
		t.Fatalf("wrong value: %v", err)
	}
	if a.val != nil {
		t.Fatal("the rejected value is still stored")
	}
	for range 3 {
		if _, err := a.get("k"); !errors.Is(err, keystore.ErrWrongPIN) {
			t.Fatalf("rejected value handed out again: %v", err)
		}
		if _, err := ks.Open("k"); codeOf(err, errInternal) != errPIN {
			t.Fatalf("after rejection: %v, want LM_ERR_PIN", err)
		}
	}
	// Three tries were possible: had any of those reached the TPM, the
	// right value would now be locked out.
	ks2, a2 := open("right")
	defer ks2.Close()
	defer a2.free()
	id, err = ks2.Open("k")
	if err != nil {
		t.Fatalf("right value after the wrong one: %v", err)
	}
	id.Close()
}
