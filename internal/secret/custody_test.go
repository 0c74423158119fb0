package secret

import (
	"runtime"
	"testing"
)

// The custody report follows the build: native builds lock, js/wasm does
// not and says its memory is readable by the page; erasure only where
// runtime/secret does it.
func TestCustody(t *testing.T) {
	c := CustodyOf()
	wasm := runtime.GOOS == "js"
	if c.Locked == wasm || c.ScriptReadable != wasm || !c.Wipes || c.Erases != Erases {
		t.Fatalf("custody %+v on %s/%s", c, runtime.GOOS, runtime.GOARCH)
	}
	if wasm && (c.Erases || c.Level != "unprotected") {
		t.Fatalf("js/wasm claims more than it does: %+v", c)
	}
	if want := map[bool]string{true: "locked+erased", false: "locked"}[Erases]; !wasm && c.Level != want {
		t.Fatalf("level %q, want %q", c.Level, want)
	}
}
