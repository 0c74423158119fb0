// Command demo runs two in-process nodes with memory identities through
// card exchange, a Noise_IK handshake and a few messages, printing what
// happens. `make run` uses it until the Python CLI's demo is present.
package main

import (
	"fmt"
	"os"

	"github.com/loramesh/loramesh-core/core"
	"github.com/loramesh/loramesh-core/keystore"
	"github.com/loramesh/loramesh-core/keystore/memory"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	alice, err := memory.Generate()
	if err != nil {
		return err
	}
	bob, err := memory.Generate()
	if err != nil {
		return err
	}
	ca, _ := core.NewCard(alice, "alice")
	cb, _ := core.NewCard(bob, "bob")
	cardA, err := core.ParseCard(ca)
	if err != nil {
		return err
	}
	cardB, err := core.ParseCard(cb)
	if err != nil {
		return err
	}
	fmt.Printf("alice %s, card %d bytes\nbob   %s, card %d bytes\n", cardA.Fingerprint(), len(ca), cardB.Fingerprint(), len(cb))
	suite, err := core.ChooseSuite(cardA, cardB)
	if err != nil {
		return err
	}
	bobKey, _ := cardB.DHKey(suite)
	in, m1, err := core.Initiate(alice, bobKey, []byte("hi bob"), nil)
	if err != nil {
		return err
	}
	fmt.Printf("alice -> bob  handshake init, %d bytes (%v)\n", len(m1), suite)
	r := core.NewResponder(bob, nil)
	if k, ok := cardA.DHKey(suite); ok {
		r.Allow(k)
	}
	sb, p1, m2, err := r.Respond(m1, []byte("hi alice"))
	if err != nil {
		return err
	}
	fmt.Printf("bob   <- %q from %s\nbob -> alice  handshake response, %d bytes\n", p1, who(sb.Peer(), cardA), len(m2))
	sa, p2, err := in.Finish(m2)
	if err != nil {
		return err
	}
	fmt.Printf("alice <- %q\n", p2)
	for i, m := range []string{"meet at the ridge at 6", "copy, bringing the relay", "ok"} {
		from, to, name := sa, sb, "alice -> bob  "
		if i%2 == 1 {
			from, to, name = sb, sa, "bob -> alice  "
		}
		ct, err := from.Encrypt([]byte(m))
		if err != nil {
			return err
		}
		pt, err := to.Decrypt(ct)
		if err != nil {
			return err
		}
		fmt.Printf("%s%q: %d bytes on air\n", name, pt, len(ct))
		if _, err := to.Decrypt(ct); err != nil {
			fmt.Printf("               replay of it refused: %v\n", err)
		}
	}
	locked, inUse := core.LockedMemory()
	fmt.Printf("locked memory: %d bytes reserved, %d in use\n", locked, inUse)
	sa.Close()
	sb.Close()
	return nil
}

func who(k keystore.PublicKey, c *core.Card) string {
	if own, ok := c.DHKey(k.Suite()); ok && own.Equal(k) {
		return c.Name
	}
	return "unknown"
}
