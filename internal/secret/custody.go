package secret

// Custody is what this build does with secrets in memory, for feature
// queries: a host reports it to its user instead of letting them assume
// the native guarantees (the browser's loramesh.features(); the C ABI's
// and Python's feature query report the same facts).
type Custody struct {
	// Locked: secret slots and buffers are in mlocked pages, out of swap,
	// core dumps and forked children (false on js/wasm).
	Locked bool
	// Erases: Do erases the registers, stack and heap temporaries of the
	// primitives (runtime/secret; only linux/amd64 and linux/arm64 builds
	// with GOEXPERIMENT=runtimesecret).
	Erases bool
	// Wipes: the library's own secrets (its slots and buffers) are
	// overwritten when done. True everywhere.
	Wipes bool
	// ScriptReadable: all of the library's memory, secrets included, is
	// an object the host's scripts can read: on js/wasm the linear memory
	// is an ArrayBuffer every script on the page can reach.
	ScriptReadable bool
	// Level sums it up: "locked+erased", "locked" or "unprotected".
	Level string
}

// CustodyOf reports this build's custody of secrets.
func CustodyOf() Custody {
	c := Custody{Locked: Locked, Erases: Erases, Wipes: true, ScriptReadable: scriptReadable}
	switch {
	case Locked && Erases:
		c.Level = "locked+erased"
	case Locked:
		c.Level = "locked"
	default:
		c.Level = "unprotected"
	}
	return c
}
