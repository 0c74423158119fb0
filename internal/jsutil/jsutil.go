//go:build js && wasm

// Package jsutil is the small glue between Go and the JavaScript host on
// js/wasm: awaiting promises, returning them, moving bytes, and IndexedDB.
//
// Deadlock rule: a js.FuncOf handler runs on the JavaScript event loop's
// turn and must never block; Await may only be called from a goroutine of
// its own (Promise starts one for every exported call).
package jsutil

import (
	"errors"
	"fmt"

	"syscall/js"
)

// Error is a JavaScript exception or rejection: its name (DataError,
// OperationError, NotAllowedError, ...) and message.
type Error struct{ Name, Message string }

func (e *Error) Error() string { return e.Name + ": " + e.Message }

// AsError converts a thrown or rejected JavaScript value.
func AsError(v js.Value) error {
	if v.Type() == js.TypeObject {
		name, msg := v.Get("name"), v.Get("message")
		if name.Type() == js.TypeString {
			return &Error{Name: name.String(), Message: msg.String()}
		}
	}
	return &Error{Name: "Error", Message: v.String()}
}

// Name is the JavaScript error name of err, "" if it is not one.
func Name(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Name
	}
	return ""
}

// Await waits for p to settle. Never call it on the event loop's turn (in
// a js.FuncOf handler): the program would deadlock and exit.
func Await(p js.Value) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	ok := js.FuncOf(func(_ js.Value, a []js.Value) any {
		ch <- result{v: arg(a)}
		return nil
	})
	bad := js.FuncOf(func(_ js.Value, a []js.Value) any {
		ch <- result{err: AsError(arg(a))}
		return nil
	})
	defer ok.Release()
	defer bad.Release()
	js.Global().Get("Promise").Call("resolve", p).Call("then", ok, bad)
	r := <-ch
	return r.v, r.err
}

func arg(a []js.Value) js.Value {
	if len(a) == 0 {
		return js.Undefined()
	}
	return a[0]
}

// Call calls method on obj and awaits the promise it returns; a
// synchronous throw becomes an error too.
func Call(obj js.Value, method string, args ...any) (v js.Value, err error) {
	defer func() {
		if r := recover(); r != nil {
			if je, ok := r.(js.Error); ok {
				err = AsError(je.Value)
				return
			}
			err = fmt.Errorf("%s: %v", method, r)
		}
	}()
	return Await(obj.Call(method, args...))
}

// Promise runs f on a goroutine of its own and returns a Promise of its
// result: what every exported function returns.
func Promise(f func() (any, error)) js.Value {
	exec := js.FuncOf(func(_ js.Value, a []js.Value) any {
		resolve, reject := a[0], a[1]
		go func() {
			v, err := func() (v any, err error) {
				defer func() {
					if r := recover(); r != nil { // a panic would end the instance
						err = fmt.Errorf("internal error: %v", r)
					}
				}()
				return f()
			}()
			if err != nil {
				reject.Invoke(js.Global().Get("Error").New(err.Error()))
				return
			}
			resolve.Invoke(v)
		}()
		return nil
	})
	defer exec.Release() // the executor runs synchronously inside new Promise
	return js.Global().Get("Promise").New(exec)
}

// U8 copies b into a new Uint8Array.
func U8(b []byte) js.Value {
	u := js.Global().Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(u, b)
	return u
}

// Bytes copies a Uint8Array, ArrayBuffer or ArrayBuffer view into Go.
func Bytes(v js.Value) ([]byte, error) {
	u, err := view(v)
	if err != nil {
		return nil, err
	}
	b := make([]byte, u.Get("byteLength").Int())
	js.CopyBytesToGo(b, u)
	return b, nil
}

// BytesInto copies exactly len(dst) bytes into dst (a key slot), then
// overwrites the JavaScript buffer with zeros: what can be wiped there.
func BytesInto(dst []byte, v js.Value) error {
	u, err := view(v)
	if err != nil {
		return err
	}
	defer u.Call("fill", 0)
	if n := u.Get("byteLength").Int(); n != len(dst) {
		return fmt.Errorf("%d bytes where %d were expected", n, len(dst))
	}
	js.CopyBytesToGo(dst, u)
	return nil
}

func view(v js.Value) (js.Value, error) {
	u8 := js.Global().Get("Uint8Array")
	switch {
	case v.InstanceOf(u8):
		return v, nil
	case v.InstanceOf(js.Global().Get("ArrayBuffer")):
		return u8.New(v), nil
	case v.Type() == js.TypeObject && v.Get("buffer").InstanceOf(js.Global().Get("ArrayBuffer")):
		return u8.New(v.Get("buffer"), v.Get("byteOffset"), v.Get("byteLength")), nil
	}
	return js.Value{}, errors.New("expected bytes (Uint8Array or ArrayBuffer)")
}
