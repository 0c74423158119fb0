package core

import (
	"container/list"
	"crypto/sha256"

	"github.com/loramesh/loramesh-core/keystore"
)

// replayCache is the responder's memory of accepted messages 1
// (docs/PROTOCOL.md §3, "Replay of message 1"): per initiator static key, the
// tags of its last replayDepth accepted messages 1, for the peers most
// recently seen initiators. Partitioned by peer so that one initiator can
// evict only its own entries; only a crowd of other initiators can push a
// peer out. Tags are added only after message 1 authenticated, so forgeries
// cannot evict anything. Not safe for concurrent use: the Responder locks.
type replayCache struct {
	peers int // initiators remembered
	tags  map[replayTag]bool
	byKey map[string]*list.Element // of *peerTags, most recent in front
	lru   list.List
}

// replayTag identifies a message 1: SHA-256 of its ephemeral key, truncated.
type replayTag [16]byte

type peerTags struct {
	peer string
	tags []replayTag
}

const replayDepth = 16

func newReplayCache(peers int) *replayCache {
	return &replayCache{peers: peers, tags: map[replayTag]bool{}, byKey: map[string]*list.Element{}}
}

func tagOf(e []byte) (t replayTag) {
	h := sha256.Sum256(e)
	copy(t[:], h[:])
	return t
}

func (c *replayCache) seen(t replayTag) bool { return c.tags[t] }

// add records t for peer. It reports false if t was recorded already.
func (c *replayCache) add(t replayTag, peer keystore.PublicKey) bool {
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
	if len(p.tags) > replayDepth {
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
