//go:build js && wasm

package jsutil

import (
	"errors"

	"syscall/js"
)

// ErrNoIndexedDB: the host has no IndexedDB (node, or a page without
// storage access).
var ErrNoIndexedDB = errors.New("IndexedDB is not available here")

// DB is an IndexedDB database with one object store, keyed by strings.
type DB struct {
	db    js.Value
	store string
}

// request waits for an IDBRequest (or transaction, with event "complete").
func request(r js.Value, success string) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	// error and abort may both fire: only the first result counts, and a
	// handler must never block.
	send := func(r result) {
		select {
		case ch <- r:
		default:
		}
	}
	var ok, bad, blocked js.Func
	ok = js.FuncOf(func(js.Value, []js.Value) any {
		v := js.Undefined()
		if success == "success" {
			v = r.Get("result")
		}
		send(result{v: v})
		return nil
	})
	bad = js.FuncOf(func(_ js.Value, a []js.Value) any {
		e := r.Get("error")
		if e.IsNull() || e.IsUndefined() {
			send(result{err: errors.New("IndexedDB request failed")})
		} else {
			send(result{err: AsError(e)})
		}
		return nil
	})
	blocked = js.FuncOf(func(js.Value, []js.Value) any {
		send(result{err: errors.New("IndexedDB is blocked by another tab holding an older version open")})
		return nil
	})
	defer ok.Release()
	defer bad.Release()
	defer blocked.Release()
	r.Set("on"+success, ok)
	r.Set("onerror", bad)
	if success == "complete" {
		r.Set("onabort", bad)
	} else {
		r.Set("onblocked", blocked)
	}
	res := <-ch
	for _, h := range []string{"on" + success, "onerror", "onabort", "onblocked"} {
		r.Set(h, js.Null()) // before the deferred Release: no late event finds a released func
	}
	return res.v, res.err
}

// OpenDB opens (creating it) database name with its one object store.
func OpenDB(name, store string) (*DB, error) {
	idb := js.Global().Get("indexedDB")
	if idb.IsUndefined() || idb.IsNull() {
		return nil, ErrNoIndexedDB
	}
	r := idb.Call("open", name, 1)
	up := js.FuncOf(func(js.Value, []js.Value) any {
		db := r.Get("result")
		if !db.Get("objectStoreNames").Call("contains", store).Bool() {
			db.Call("createObjectStore", store)
		}
		return nil
	})
	defer up.Release()
	r.Set("onupgradeneeded", up)
	db, err := request(r, "success")
	if err != nil {
		return nil, err
	}
	return &DB{db: db, store: store}, nil
}

// Get returns the value stored under key, undefined if there is none.
func (d *DB) Get(key string) (js.Value, error) {
	tx := d.db.Call("transaction", d.store, "readonly")
	return request(tx.Call("objectStore", d.store).Call("get", key), "success")
}

// Put stores v under key (structured clone: CryptoKeys stay CryptoKeys)
// and waits until the transaction is durable.
func (d *DB) Put(key string, v any) error {
	return d.write(func(s js.Value) { s.Call("put", v, key) })
}

// Add stores v under key unless the key exists (a ConstraintError).
func (d *DB) Add(key string, v any) error {
	return d.write(func(s js.Value) { s.Call("add", v, key) })
}

// Delete removes key (nothing if absent).
func (d *DB) Delete(key string) error {
	return d.write(func(s js.Value) { s.Call("delete", key) })
}

func (d *DB) write(op func(store js.Value)) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if je, ok := r.(js.Error); ok {
				err = AsError(je.Value)
				return
			}
			panic(r)
		}
	}()
	tx := d.db.Call("transaction", d.store, "readwrite", map[string]any{"durability": "strict"})
	op(tx.Call("objectStore", d.store))
	_, err = request(tx, "complete")
	return err
}

// Keys lists the keys of the store.
func (d *DB) Keys() ([]string, error) {
	tx := d.db.Call("transaction", d.store, "readonly")
	v, err := request(tx.Call("objectStore", d.store).Call("getAllKeys"), "success")
	if err != nil {
		return nil, err
	}
	out := make([]string, v.Length())
	for i := range out {
		out[i] = v.Index(i).String()
	}
	return out, nil
}

// Close closes the connection.
func (d *DB) Close() { d.db.Call("close") }
