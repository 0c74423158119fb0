//go:build js && wasm

// Command wasm is loramesh for browsers (make wasm: build/web/loramesh.wasm):
// the core, the messenger engine and the browser keystore, exported to
// JavaScript as globalThis.__lorameshGo for web/loramesh.js, which is the
// API pages use (and documents it). Every call but features returns a
// Promise; the work runs on a goroutine of its own, since WebCrypto and
// IndexedDB are asynchronous.
//
// A node is an identity, its engine and the engine's state: the state is
// kept in IndexedDB ("loramesh-state"); the engine is Durable, as natively
// (docs/STORAGE.md): each save it asks for is written and reported with
// Saved before what waited for it (acknowledgements, first transmissions)
// is handed out. The node holds a Web Lock on its identity while open, so a
// second tab gets an error instead of fighting the first over sessions.
// Unlike the native Store, the state is not sealed to the identity
// (README.md, "In a browser"), and no message history is kept in it.
package main

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"syscall/js"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/internal/jsutil"
	"github.com/loramesh/loramesh-core/internal/secret"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/webcrypto"
	"github.com/loramesh/loramesh-core/messenger"
)

// Link is the one link of a browser node: the daemon's WebSocket bridge.
const Link = "bridge"

const (
	stateDB    = "loramesh-state"
	stateStore = "state"
)

// curve25519 is whether this browser's WebCrypto has Ed25519 and X25519,
// probed once before the API is exported (features must not await).
var curve25519 bool

func main() {
	curve25519 = webcrypto.HasCurve25519()
	api := map[string]any{
		"features":           js.FuncOf(features),
		"listIdentities":     async(listIdentities),
		"identityProtection": async(identityProtection),
		"deleteIdentity":     async(deleteIdentity),
		"open":               async(open),
		"info":               withNode(info),
		"addContact":         withNode(addContact),
		"verifyContact":      withNode(verifyContact),
		"removeContact":      withNode(removeContact),
		"setContactAddr":     withNode(setContactAddr),
		"contacts":           withNode(contacts),
		"send":               withNode(send),
		"receive":            withNode(receive),
		"tick":               withNode(tick),
		"sign":               withNode(sign),
		"close":              async(closeNode),
	}
	v := js.ValueOf(api)
	js.Global().Set("__lorameshGo", v)
	if ready := js.Global().Get("__lorameshReady"); ready.Type() == js.TypeFunction {
		ready.Invoke(v)
	}
	select {}
}

// async exports f: its arguments as given, its result as a Promise.
func async(f func(args []js.Value) (any, error)) js.Func {
	return js.FuncOf(func(_ js.Value, args []js.Value) any {
		return jsutil.Promise(func() (any, error) { return f(args) })
	})
}

// withNode exports f on a node: the first argument is its handle; calls on
// one node are serialised (the engine is not safe for concurrent use).
func withNode(f func(n *node, args []js.Value) (any, error)) js.Func {
	return async(func(args []js.Value) (any, error) {
		if len(args) == 0 {
			return nil, errors.New("missing node handle")
		}
		n, err := lookup(args[0])
		if err != nil {
			return nil, err
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.closed {
			return nil, keystore.ErrClosed
		}
		return f(n, args[1:])
	})
}

// ---- features -------------------------------------------------------

// features reports what this build and this browser do with secrets,
// never leaving the page to assume the native guarantees.
func features(js.Value, []js.Value) any {
	c := secret.CustodyOf()
	nav := js.Global().Get("navigator")
	return map[string]any{
		"platform":       runtime.GOOS + "/" + runtime.GOARCH,
		"go":             runtime.Version(),
		"custody":        c.Level,
		"lockedMemory":   c.Locked,
		"erasure":        c.Erases,
		"wipes":          c.Wipes,
		"memoryReadable": c.ScriptReadable,
		"curve25519":     curve25519,
		"webauthn":       !nav.IsUndefined() && !nav.Get("credentials").IsUndefined(),
		"keysAtRest": map[string]any{
			"none": "non-extractable WebCrypto keys in IndexedDB: plain PKCS#8 in the browser profile on disk",
			"prf":  "wrapped under a FIDO2 security key's WebAuthn PRF output; unwrapped at each start, never stored unwrapped",
		},
	}
}

// ---- identities -----------------------------------------------------

func openKeystore(prf bool) (*webcrypto.Keystore, error) {
	o := webcrypto.Options{}
	if prf {
		o.PRF = &webcrypto.PRFOptions{}
	}
	return webcrypto.Open(o)
}

func listIdentities([]js.Value) (any, error) {
	ks, err := openKeystore(false)
	if err != nil {
		return nil, err
	}
	defer ks.Close()
	names, err := ks.List()
	if err != nil {
		return nil, err
	}
	out := make([]any, len(names))
	for i, n := range names {
		out[i] = n
	}
	return out, nil
}

func identityProtection(args []js.Value) (any, error) {
	name, err := str(args, 0, "name")
	if err != nil {
		return nil, err
	}
	ks, err := openKeystore(false)
	if err != nil {
		return nil, err
	}
	defer ks.Close()
	p, err := ks.Protection(name)
	if err != nil {
		return nil, err
	}
	return p.String(), nil
}

func deleteIdentity(args []js.Value) (any, error) {
	name, err := str(args, 0, "name")
	if err != nil {
		return nil, err
	}
	unlock, err := webLock(name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ks, err := openKeystore(false)
	if err != nil {
		return nil, err
	}
	defer ks.Close()
	if err := ks.Delete(name); err != nil {
		return nil, err
	}
	db, err := jsutil.OpenDB(stateDB, stateStore)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if err := db.Delete(name); err != nil {
		return nil, err
	}
	return nil, db.Delete("card:" + name)
}

// ---- nodes ----------------------------------------------------------

type node struct {
	mu      sync.Mutex
	closed  bool
	name    string
	display string
	id      *webcrypto.Identity
	e       *messenger.Engine
	db      *jsutil.DB
	card    []byte
	unlock  func()
	// What Poll handed out before a save failed: handed out by the next
	// poll, since the engine does not hand it out again.
	pkts []messenger.Packet
	evs  []messenger.Event
}

var handles = struct {
	sync.Mutex
	next  int
	nodes map[int]*node
}{next: 0x4c4d0001, nodes: map[int]*node{}}

func lookup(v js.Value) (*node, error) {
	if v.Type() != js.TypeNumber {
		return nil, errors.New("not a node handle")
	}
	handles.Lock()
	defer handles.Unlock()
	n := handles.nodes[v.Int()]
	if n == nil {
		return nil, fmt.Errorf("node handle: %w", keystore.ErrClosed)
	}
	return n, nil
}

// open opens (or, with create, makes) an identity and its node: options
// {name, create, displayName, protect: "none"|"prf", suites: ["x25519",
// "p256"]}.
func open(args []js.Value) (any, error) {
	if len(args) == 0 || args[0].Type() != js.TypeObject {
		return nil, errors.New("open: options object expected")
	}
	o := args[0]
	name := optStr(o, "name", "browser")
	display := optStr(o, "displayName", "")
	prf := optStr(o, "protect", "none")
	if prf != "none" && prf != "prf" {
		return nil, fmt.Errorf("open: protect must be \"none\" or \"prf\"")
	}
	var suites []keystore.Suite
	if s := o.Get("suites"); s.Type() == js.TypeObject {
		for i := range s.Length() {
			switch s.Index(i).String() {
			case "x25519":
				suites = append(suites, keystore.X25519)
			case "p256":
				suites = append(suites, keystore.P256)
			default:
				return nil, fmt.Errorf("open: suites are \"x25519\" and \"p256\"")
			}
		}
	}
	unlock, err := webLock(name)
	if err != nil {
		return nil, err
	}
	n, err := openNode(name, display, o.Get("create").Truthy(), prf == "prf", suites)
	if err != nil {
		unlock()
		return nil, err
	}
	n.unlock = unlock
	handles.Lock()
	defer handles.Unlock()
	h := handles.next
	handles.next++
	handles.nodes[h] = n
	return h, nil
}

func openNode(name, display string, create, prf bool, suites []keystore.Suite) (n *node, err error) {
	ks, err := openKeystore(prf)
	if err != nil {
		return nil, err
	}
	defer ks.Close()
	id, err := ks.Open(name)
	if errors.Is(err, keystore.ErrNotFound) && create {
		id, err = ks.Generate(name, suites...)
	}
	if err != nil {
		return nil, err
	}
	n = &node{name: name, id: id.(*webcrypto.Identity)}
	defer func() {
		if err != nil {
			n.id.Close()
			if n.db != nil {
				n.db.Close()
			}
		}
	}()
	if n.db, err = jsutil.OpenDB(stateDB, stateStore); err != nil {
		return nil, err
	}
	var state []byte
	if v, err := n.db.Get(name); err != nil {
		return nil, err
	} else if !v.IsUndefined() {
		if state, err = jsutil.Bytes(v); err != nil {
			return nil, fmt.Errorf("state of %s: %w", name, err)
		}
	}
	if err := n.loadCard(display); err != nil {
		return nil, err
	}
	if n.e, err = messenger.New(n.id, messenger.Config{Durable: true}, state, time.Now()); err != nil {
		return nil, err
	}
	if err := n.e.AddLink(Link, messenger.Stream); err != nil {
		return nil, err
	}
	return n, nil
}

// loadCard reuses the card saved with the node (its bytes stay the same
// across restarts even for ECDSA, whose signatures are randomised) unless
// it is not this identity's or another display name is asked for.
func (n *node) loadCard(display string) error {
	v, err := n.db.Get("card:" + n.name)
	if err != nil {
		return err
	}
	if !v.IsUndefined() {
		saved, _ := jsutil.Bytes(v)
		c, err := core.ParseCard(saved)
		mine, _ := core.SigningKeyOf(n.id)
		if err == nil && c.SigningKey().Equal(mine) && (display == "" || display == c.Name) {
			n.card, n.display = saved, c.Name
			return nil
		}
	}
	if display == "" {
		display = n.name
	}
	card, err := core.NewCard(n.id, display)
	if err != nil {
		return err
	}
	if err := n.db.Put("card:"+n.name, jsutil.U8(card)); err != nil {
		return err
	}
	n.card, n.display = card, display
	return nil
}

// webLock holds the Web Lock "loramesh:NAME" until the returned function is
// called; ErrStateInUse if another tab or worker holds it.
func webLock(name string) (func(), error) {
	nav := js.Global().Get("navigator")
	if nav.IsUndefined() || nav.Get("locks").IsUndefined() {
		return nil, errors.New("this browser has no Web Locks: a second tab could not be kept off the identity")
	}
	granted := make(chan bool, 1)
	var release js.Value
	var hold, cb js.Func
	hold = js.FuncOf(func(_ js.Value, a []js.Value) any {
		release = a[0]
		granted <- true
		return nil
	})
	cb = js.FuncOf(func(_ js.Value, a []js.Value) any {
		if len(a) == 0 || a[0].IsNull() {
			granted <- false
			return nil
		}
		return js.Global().Get("Promise").New(hold) // held until release is called
	})
	nav.Get("locks").Call("request", "loramesh:"+name, map[string]any{"ifAvailable": true}, cb)
	ok := <-granted
	cb.Release()
	hold.Release()
	if !ok {
		return nil, fmt.Errorf("identity %s is open in another tab or window: %w", name, messenger.ErrStateInUse)
	}
	return func() { release.Invoke() }, nil
}

func closeNode(args []js.Value) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("missing node handle")
	}
	n, err := lookup(args[0])
	if err != nil {
		return nil, nil // closing twice is harmless
	}
	handles.Lock()
	delete(handles.nodes, args[0].Int())
	handles.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, nil
	}
	n.closed = true
	err = n.db.Put(n.name, jsutil.U8(n.e.State())) // everything, due or not
	n.e.Close()
	n.id.Close()
	n.db.Close()
	n.unlock()
	return nil, err
}

// save stores the engine's state when a save is due and reports it with
// Saved, which releases what waited for it (collected by the next Poll).
// A failed save is not reported: nothing that waits for it goes out, and
// the engine offers the state again later.
func (n *node) save() error {
	if b, due := n.e.Changed(); due {
		if err := n.db.Put(n.name, jsutil.U8(b)); err != nil {
			return fmt.Errorf("saving the state: %w (nothing is acknowledged until a save succeeds)", err)
		}
		n.e.Saved()
	}
	return nil
}

// poll collects what the engine has for the host, saves the state when due
// and collects what that save released: {packets: [{link, addr, data}],
// events: [...], deadline: ms or null}.
func (n *node) poll() (any, error) {
	p, ev := n.e.Poll()
	n.pkts, n.evs = append(n.pkts, p...), append(n.evs, ev...)
	if err := n.save(); err != nil {
		return nil, err // what was collected waits for the next poll
	}
	p, ev = n.e.Poll()
	pkts, evs := append(n.pkts, p...), append(n.evs, ev...)
	n.pkts, n.evs = nil, nil
	ps := make([]any, len(pkts))
	for i, p := range pkts {
		ps[i] = map[string]any{"link": p.To.Link, "addr": p.To.Addr, "data": jsutil.U8(p.Data)}
	}
	es := make([]any, len(evs))
	for i, ev := range evs {
		es[i] = event(ev)
	}
	var deadline any
	if d := n.e.Deadline(); !d.IsZero() {
		deadline = d.UnixMilli()
	}
	return map[string]any{"packets": ps, "events": es, "deadline": deadline}, nil
}

var kinds = map[messenger.EventKind]string{
	messenger.EventMessage: "message", messenger.EventDelivery: "delivery", messenger.EventSession: "session",
	messenger.EventStranger: "stranger", messenger.EventAddress: "address", messenger.EventDropped: "dropped",
}

func event(ev messenger.Event) map[string]any {
	m := map[string]any{"kind": kinds[ev.Kind], "at": ev.At.UnixMilli()}
	if ev.Contact != "" {
		m["contact"] = ev.Contact
		m["verified"] = ev.Verified
	}
	switch ev.Kind {
	case messenger.EventMessage:
		m["text"] = string(ev.Text) // the peer's bytes: escape before showing as HTML
		m["seq"] = float64(ev.Seq)
		m["sent"] = ev.SentAt.UnixMilli()
	case messenger.EventDelivery:
		m["id"] = int(ev.ID)
		m["state"] = ev.State.String()
		if ev.State == messenger.Failed {
			m["reason"] = ev.Reason
		}
	case messenger.EventStranger:
		m["fingerprint"] = ev.Fingerprint
		m["link"], m["addr"] = ev.From.Link, ev.From.Addr
	case messenger.EventAddress:
		m["link"], m["addr"] = ev.From.Link, ev.From.Addr
	case messenger.EventSession, messenger.EventDropped:
		m["detail"] = ev.Reason
	}
	return m
}

func info(n *node, _ []js.Value) (any, error) {
	sk, _ := core.SigningKeyOf(n.id)
	var suites []any
	for _, s := range n.id.Suites() {
		suites = append(suites, map[keystore.Suite]string{keystore.X25519: "x25519", keystore.P256: "p256"}[s])
	}
	return map[string]any{
		"name": n.name, "displayName": n.display, "fingerprint": sk.Fingerprint(),
		"card": jsutil.U8(n.card), "protection": n.id.Protection().String(),
		"signing": map[int]string{core.SigEd25519: "Ed25519", core.SigECDSAP256: "ECDSA P-256"}[sk.Alg()],
		"suites":  suites,
	}, nil
}

func contactInfo(c messenger.ContactInfo) map[string]any {
	m := map[string]any{
		"contact": c.Name, "displayName": c.DisplayName, "fingerprint": c.Fingerprint,
		"verified": c.Verified, "session": c.Session, "queued": c.Queued,
	}
	if c.LastAddr.Link != "" {
		m["link"], m["addr"] = c.LastAddr.Link, c.LastAddr.Addr
	}
	return m
}

func addContact(n *node, args []js.Value) (any, error) {
	name, err := str(args, 0, "contact name")
	if err != nil {
		return nil, err
	}
	if len(args) < 2 {
		return nil, errors.New("addContact: card expected")
	}
	card, err := jsutil.Bytes(args[1])
	if err != nil {
		return nil, fmt.Errorf("addContact: card: %w", err)
	}
	replace := len(args) > 2 && args[2].Truthy()
	imp, err := n.e.AddContact(name, card, replace)
	if err != nil {
		return nil, err
	}
	if err := n.e.SetContactAddrs(name, messenger.Addr{Link: Link}); err != nil {
		return nil, err
	}
	if err := n.save(); err != nil {
		return nil, err
	}
	res := contactInfo(imp.ContactInfo)
	switch {
	case imp.Unchanged:
		res["result"] = "unchanged"
	case imp.Replaced:
		res["result"], res["oldFingerprint"] = "replaced", imp.OldFingerprint
	default:
		res["result"] = "new"
	}
	return res, nil
}

func verifyContact(n *node, args []js.Value) (any, error) {
	name, err := str(args, 0, "contact name")
	if err != nil {
		return nil, err
	}
	fp, err := str(args, 1, "fingerprint")
	if err != nil {
		return nil, err
	}
	if err := n.e.VerifyContact(name, fp); err != nil {
		return nil, err
	}
	return true, n.save()
}

func removeContact(n *node, args []js.Value) (any, error) {
	name, err := str(args, 0, "contact name")
	if err != nil {
		return nil, err
	}
	if err := n.e.RemoveContact(name); err != nil {
		return nil, err
	}
	return n.poll()
}

func setContactAddr(n *node, args []js.Value) (any, error) {
	name, err := str(args, 0, "contact name")
	if err != nil {
		return nil, err
	}
	addr := ""
	if len(args) > 1 && args[1].Type() == js.TypeString {
		addr = args[1].String()
	}
	if err := n.e.SetContactAddrs(name, messenger.Addr{Link: Link, Addr: addr}); err != nil {
		return nil, err
	}
	return n.poll()
}

func contacts(n *node, _ []js.Value) (any, error) {
	cs := n.e.Contacts()
	out := make([]any, len(cs))
	for i, c := range cs {
		out[i] = contactInfo(c)
	}
	return out, nil
}

func send(n *node, args []js.Value) (any, error) {
	name, err := str(args, 0, "contact name")
	if err != nil {
		return nil, err
	}
	text, err := str(args, 1, "text")
	if err != nil {
		return nil, err
	}
	mid, err := n.e.Send(time.Now(), name, []byte(text))
	if err != nil {
		return nil, err
	}
	r, err := n.poll()
	if err != nil {
		return nil, err
	}
	r.(map[string]any)["id"] = int(mid)
	return r, nil
}

// receive feeds a packet from the bridge: (link, addr, bytes).
func receive(n *node, args []js.Value) (any, error) {
	link, err := str(args, 0, "link")
	if err != nil {
		return nil, err
	}
	addr, err := str(args, 1, "address")
	if err != nil {
		return nil, err
	}
	if len(args) < 3 {
		return nil, errors.New("receive: packet expected")
	}
	p, err := jsutil.Bytes(args[2])
	if err != nil {
		return nil, fmt.Errorf("receive: %w", err)
	}
	n.e.Receive(time.Now(), messenger.Addr{Link: link, Addr: addr}, p)
	return n.poll()
}

func tick(n *node, _ []js.Value) (any, error) {
	n.e.Tick(time.Now())
	return n.poll()
}

// sign signs bytes with the identity (core.SignMessage): hex signature.
func sign(n *node, args []js.Value) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("sign: bytes expected")
	}
	b, err := jsutil.Bytes(args[0])
	if err != nil {
		return nil, err
	}
	sig, err := core.SignMessage(n.id, b)
	if err != nil {
		return nil, err
	}
	return jsutil.U8(sig), nil
}

func str(args []js.Value, i int, what string) (string, error) {
	if len(args) <= i || args[i].Type() != js.TypeString {
		return "", fmt.Errorf("%s: a string expected", what)
	}
	return args[i].String(), nil
}

func optStr(o js.Value, key, def string) string {
	if v := o.Get(key); v.Type() == js.TypeString {
		return v.String()
	}
	return def
}
