// Package replay is the responder's memory of accepted handshake messages 1
// (docs/PROTOCOL.md §3, "Replay of message 1").
package replay

import (
	"container/list"
	"crypto/sha256"

	"github.com/loramesh/loramesh-core/keystore"
)

// Cache is the responder's memory of accepted messages 1: per initiator
// static key, the
// tags of its last replayDepth accepted messages 1, for the peers most
// recently seen initiators. Partitioned by peer so that one initiator can
// evict only its own entries; only a crowd of other initiators can push a
// peer out. Tags are added only after message 1 authenticated, so forgeries
// cannot evict anything. Not safe for concurrent use: the Responder locks.
type Cache struct {
	peers int // initiators remembered
	tags  map[Tag]bool
	byKey map[string]*list.Element // of *peerTags, most recent in front
	lru   list.List
}

// Tag identifies a message 1: SHA-256 of its ephemeral key, truncated.
type Tag [16]byte

type peerTags struct {
	peer string
	tags []Tag
}

// Depth is the number of tags remembered per initiator.
const Depth = 16

// New returns a cache that remembers the given number of initiators.
func New(peers int) *Cache {
	return &Cache{peers: peers, tags: map[Tag]bool{}, byKey: map[string]*list.Element{}}
}

// TagOf returns the tag of a message 1 whose ephemeral key is e.
func TagOf(e []byte) (t Tag) {
	h := sha256.Sum256(e)
	copy(t[:], h[:])
	return t
}

// Seen reports whether t is remembered.
func (c *Cache) Seen(t Tag) bool { return c.tags[t] }

// Add records t for peer. It reports false if t was recorded already.
func (c *Cache) Add(t Tag, peer keystore.PublicKey) bool {
	if c.tags[t] {
		return false
	}
	key := string(peer.Bytes())
	e, ok := c.byKey[key]
	if ok {
		c.lru.MoveToFront(e)
	} else {
		e = c.lru.PushFront(&peerTags{peer: key})
		c.byKey[key] = e
	}
	p := e.Value.(*peerTags)
	p.tags = append(p.tags, t)
	c.tags[t] = true
	if len(p.tags) > Depth {
		delete(c.tags, p.tags[0])
		p.tags = p.tags[1:]
	}
	if c.lru.Len() > c.peers {
		old := c.lru.Remove(c.lru.Back()).(*peerTags)
		delete(c.byKey, old.peer)
		for _, t := range old.tags {
			delete(c.tags, t)
		}
	}
	return true
}
