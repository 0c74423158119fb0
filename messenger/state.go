package messenger

import (
	"bytes"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/loramesh/loramesh-core/core"
)

// The state that outlives the process (docs/PROTOCOL.md §8): contacts, the
// highest message 1 timestamp accepted from each (so a replayed handshake is
// refused after a restart too), where each was last heard, and this node's
// last handshake timestamp. No session key is ever in it: sessions are
// re-established by handshake after a restart.

const stateVersion = 1

type stateFile struct {
	Version  int            `cbor:"1,keyasint"`
	LastTS   uint64         `cbor:"2,keyasint"`
	Contacts []contactState `cbor:"3,keyasint"`
	Owner    []byte         `cbor:"4,keyasint"` // the node's identity ID
}

type contactState struct {
	Name     string     `cbor:"1,keyasint"`
	Card     []byte     `cbor:"2,keyasint"`
	Verified bool       `cbor:"3,keyasint,omitempty"`
	Addrs    [][]string `cbor:"4,keyasint,omitempty"`
	Last     []string   `cbor:"5,keyasint,omitempty"`
	HW       uint64     `cbor:"6,keyasint,omitempty"`
	Added    int64      `cbor:"7,keyasint"`
}

var (
	stateEnc, _ = cbor.CoreDetEncOptions().EncMode()
	stateDec, _ = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxArrayElements:  65536,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
)

func (e *Engine) save() []byte {
	f := stateFile{Version: stateVersion, LastTS: e.lastTS, Owner: e.myID[:]}
	for _, ci := range e.Contacts() {
		c := e.contacts[ci.Name]
		cs := contactState{Name: c.name, Card: c.card.Bytes(), Verified: c.verified, HW: c.hw, Added: c.added.Unix()}
		for _, a := range c.addrs {
			cs.Addrs = append(cs.Addrs, []string{a.Link, a.Addr})
		}
		if c.last != (Addr{}) {
			cs.Last = []string{c.last.Link, c.last.Addr}
		}
		f.Contacts = append(f.Contacts, cs)
	}
	b, _ := stateEnc.Marshal(f)
	return b
}

// load restores a saved state. A state that does not parse, or breaks the
// engine's rules (two contacts sharing a key), is refused whole: the host
// keeps the file and reports it.
func (e *Engine) load(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	var f stateFile
	if err := stateDec.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%w: %v", ErrStateFile, err)
	}
	if c, err := stateEnc.Marshal(f); err != nil || !bytes.Equal(c, b) {
		return fmt.Errorf("%w: not its canonical encoding", ErrStateFile)
	}
	if f.Version > stateVersion {
		return fmt.Errorf("version %d: %w", f.Version, ErrStateVersion)
	}
	if !bytes.Equal(f.Owner, e.myID[:]) {
		return fmt.Errorf("%w: it belongs to another identity (fingerprint %s)", ErrStateOwner, core.FormatFingerprint([32]byte(append(f.Owner, make([]byte, 32)...)[:32])))
	}
	e.lastTS = f.LastTS
	for _, cs := range f.Contacts {
		if _, err := e.AddContact(cs.Name, cs.Card, false); err != nil {
			return fmt.Errorf("%w: contact %q: %w", ErrStateFile, cs.Name, err)
		}
		c := e.contacts[cs.Name]
		c.verified, c.hw, c.added = cs.Verified, cs.HW, time.Unix(cs.Added, 0)
		var addrs []Addr
		for _, a := range cs.Addrs {
			if len(a) != 2 {
				return fmt.Errorf("%w: contact %q: address", ErrStateFile, cs.Name)
			}
			addrs = append(addrs, Addr{a[0], a[1]})
		}
		e.setAddrs(c, addrs)
		switch len(cs.Last) {
		case 0:
		case 2:
			e.setLast(c, Addr{cs.Last[0], cs.Last[1]})
		default:
			return fmt.Errorf("%w: contact %q: last address", ErrStateFile, cs.Name)
		}
	}
	e.dirty = false
	return nil
}
