package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
	"github.com/loramesh/loramesh-core/messenger"
)

// softID is a software P-256 identity: cheap to make by the thousand, for
// the contacts of a hub node.
type softID struct{ k *ecdsa.PrivateKey }

func newSoftID() softID                   { return softID{must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))} }
func (s softID) Public() crypto.PublicKey { return &s.k.PublicKey }
func (s softID) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return s.k.Sign(r, d, o)
}
func (s softID) Suites() []keystore.Suite { return []keystore.Suite{keystore.P256} }
func (s softID) Close() error             { return nil }
func (s softID) DHPublic(keystore.Suite) (keystore.PublicKey, error) {
	return keystore.FromECDH(must(s.k.PublicKey.ECDH()))
}
func (s softID) DH(p keystore.PublicKey, out *[32]byte) error {
	z, err := must(s.k.ECDH()).ECDH(must(p.ECDH()))
	copy(out[:], z)
	return err
}

// pump moves packets between engines addressed by name until none moves.
func pump(now time.Time, engines map[string]*messenger.Engine, onAir func(messenger.Packet)) {
	for moved := true; moved; {
		moved = false
		for name, e := range engines {
			pkts, _ := e.Poll()
			for _, p := range pkts {
				if onAir != nil {
					onAir(p)
				}
				if to := engines[p.To.Addr]; to != nil {
					to.Receive(now, messenger.Addr{Link: "udp", Addr: name}, p.Data)
					moved = true
				}
			}
		}
	}
}

// hub makes a node with n contacts, each with a confirmed session.
func hub(n int) (*messenger.Engine, time.Time) {
	now := time.Now()
	hid := must(memory.Generate())
	h := must(messenger.New(hid, messenger.Config{}, nil, now))
	must(0, h.AddLink("udp", messenger.UDP))
	hubCard := must(core.NewCard(hid, "hub"))
	for i := range n {
		id := newSoftID()
		name := fmt.Sprint("c", i)
		c := must(messenger.New(id, messenger.Config{}, nil, now))
		must(0, c.AddLink("udp", messenger.UDP))
		must(c.AddContact("hub", hubCard, false))
		must(0, c.SetContactAddrs("hub", messenger.Addr{Link: "udp", Addr: "hub"}))
		must(h.AddContact(name, must(core.NewCard(id, name)), false))
		must(c.Send(now, "hub", []byte("hi")))
		pump(now, map[string]*messenger.Engine{"hub": h, name: c}, nil)
		c.Close()
	}
	h.Poll()
	return h, now
}

func benchEngine() {
	forged := make([]byte, 60)
	for _, n := range []int{1, 100, 10000} {
		fmt.Fprintf(os.Stderr, "  (setting up %d sessions)\n", n)
		h, now := hub(n)
		from := messenger.Addr{Link: "udp", Addr: "mallory"}
		rand.Read(forged)
		forged[0] = byte(core.KindTransport)
		t := interleave(2000, func() {
			rand.Read(forged[1:5]) // any hint, any counter
			h.Receive(now, from, forged)
		}, func() {
			rand.Read(forged[1:5])
		})
		cost := t[0] - t[1]
		add(row{fmt.Sprintf("forged transport packet, %d sessions", n), dur(cost), "", "", "≤ 20 µs", verdict(cost <= 20000)})
		h.Close()
	}

	// A genuine packet through the engine's demultiplexer, against the bare
	// Session.Decrypt of the core that has its session given.
	a, b := must(memory.Generate()), must(memory.Generate())
	const n = 30000
	mk := func() (*core.Session, [][]byte) {
		is, rs := handshake(a, b, keystore.X25519, core.NewResponder(b, nil))
		var pk [][]byte
		for range n {
			pk = append(pk, must(is.Encrypt(make([]byte, 100))))
		}
		return rs, pk
	}
	r1, p1 := mk()
	r2, p2 := mk()
	d := core.NewDemux()
	d.Add(r1)
	i1, i2 := 0, 0
	t := interleave(n/11, func() {
		must(d.Open(p1[i1]))
		i1++
	}, func() {
		must(r2.Decrypt(p2[i2]))
		i2++
	})
	add(row{"genuine transport packet, 100 bytes, found by hint", dur(t[0]), "Session.Decrypt with its session given: " + dur(t[1]),
		fmt.Sprintf("%.2f", t[0]/t[1]), "", ""})

	// Bytes on air for one 100-byte message and its acknowledgement.
	now := time.Now()
	x, y := must(memory.Generate()), must(memory.Generate())
	ex := must(messenger.New(x, messenger.Config{}, nil, now))
	ey := must(messenger.New(y, messenger.Config{}, nil, now))
	for _, e := range []*messenger.Engine{ex, ey} {
		must(0, e.AddLink("udp", messenger.UDP))
	}
	must(ex.AddContact("y", must(core.NewCard(y, "y")), false))
	must(ey.AddContact("x", must(core.NewCard(x, "x")), false))
	must(0, ex.SetContactAddrs("y", messenger.Addr{Link: "udp", Addr: "y"}))
	must(0, ey.SetContactAddrs("x", messenger.Addr{Link: "udp", Addr: "x"}))
	es := map[string]*messenger.Engine{"x": ex, "y": ey}
	var hs []int
	must(ex.Send(now, "y", []byte("warm up")))
	pump(now, es, func(p messenger.Packet) {
		if k, _ := core.PacketKind(p.Data); k != core.KindTransport {
			hs = append(hs, len(p.Data))
		}
	})
	now = now.Add(time.Second)
	ex.Tick(now)
	ey.Tick(now)
	pump(now, es, nil)
	total := 0
	must(ex.Send(now, "y", []byte(strings.Repeat("m", 100))))
	pump(now, es, func(p messenger.Packet) { total += len(p.Data) })
	now = now.Add(time.Second)
	ey.Tick(now)
	pump(now, es, func(p messenger.Packet) { total += len(p.Data) })
	add(row{"bytes on air, a 100-byte message and its acknowledgement", fmt.Sprint(total),
		"Meshtastic direct message with its ack: about 158", "", "≤ 150", verdict(total <= 150)})
	add(row{"bytes on air, the engine's handshake (25519, payloads included)", fmt.Sprintf("message 1 %d, message 2 %d", hs[0], hs[1]),
		"version 1 without payloads: 100, 52", "", "≤ 116, 68", verdict(hs[0] <= 116 && hs[1] <= 68)})
	ex.Close()
	ey.Close()
}
