package messenger

import (
	"time"

	"github.com/loramesh/loramesh-core/keystore"
)

// EventKind says what an Event reports.
type EventKind int

const (
	// EventMessage: a message arrived from Contact (Text, Seq, SentAt,
	// Verified). Each message is delivered once; a Durable engine reports
	// it once the save recording it is done.
	EventMessage EventKind = iota + 1
	// EventDelivery: message ID to Contact is now State (Reason if Failed).
	EventDelivery
	// EventSession: a session with Contact was established or renewed
	// (Reason names the suite).
	EventSession
	// EventStranger: someone whose key no contact holds tried a handshake
	// (Key, Fingerprint, From); they got no answer.
	EventStranger
	// EventAddress: Contact is now reached at From (it sent from there).
	EventAddress
	// EventDropped: a packet was refused or an attempt failed (Reason),
	// nothing was lost.
	EventDropped
)

// DeliveryState is where an outgoing message is.
type DeliveryState int

const (
	Queued    DeliveryState = iota + 1 // accepted, waiting for a session or a slot
	Sent                               // every fragment handed to the link at least once
	Delivered                          // the contact acknowledged it
	Failed                             // given up (Reason says why): not acknowledged in time
)

func (s DeliveryState) String() string {
	switch s {
	case Queued:
		return "queued"
	case Sent:
		return "sent"
	case Delivered:
		return "delivered"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Event is something the user should see.
type Event struct {
	Kind        EventKind
	At          time.Time // when it happened (the engine's clock)
	Contact     string
	ID          MsgID
	State       DeliveryState
	Reason      string
	Text        []byte
	Seq         uint64    // orders one contact's messages: its epoch << 16 | its message number
	SentAt      time.Time // the sender's clock when the message was written
	Verified    bool      // the contact's fingerprint was verified
	From        Addr
	Key         keystore.PublicKey
	Fingerprint string
}
