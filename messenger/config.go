package messenger

import (
	"crypto/rand"
	"fmt"
	"io"
	"time"
)

// Addr is where a packet came from or goes to: a link the host registered
// and an address on it, opaque to the engine ("192.0.2.7:7000" on a UDP
// link; "" on a radio link, where every frame is heard by everyone in range).
type Addr struct {
	Link string
	Addr string
}

func (a Addr) String() string {
	if a.Addr == "" {
		return a.Link
	}
	return a.Link + ":" + a.Addr
}

// Profile holds a link's sizes and timers (docs/PROTOCOL.md §7). LoRa, UDP
// and Stream are the defaults; a zero field takes LoRa's value.
type Profile struct {
	FrameSize   int           // largest packet the link carries
	Bitrate     int           // bits per second, for airtime (0: not metered)
	DutyCycle   float64       // fraction of time the node may transmit (0: no limit)
	RTO         time.Duration // first retransmission timeout
	MaxRTO      time.Duration // the backoff stops doubling here
	Deadline    time.Duration // a message not delivered by then fails
	AckDelay    time.Duration // how long an acknowledgement waits to ride on other traffic
	InFlight    int           // unacknowledged data packets per contact
	Reassembly  time.Duration // a partly received message is dropped after this
	RenewAfter  time.Duration // a session older than this is replaced by a fresh handshake
	RenewCount  int           // ... or once it has sent this many messages
	Grace       time.Duration // a replaced session still receives this long
	Handshakes  float64       // handshakes answered per second, sustained
	HandshakeB  int           // ... and in a burst
	MaxAttempts int           // transmissions of one message 1 before a fresh one
}

// Default profiles. LoRa: 255-byte frames at about 1.8 kbit/s (SF9, 125
// kHz), so a full frame takes 1.2 s of airtime, and EU868's 1 % duty cycle,
// so about 30 frames an hour; timers in tens of seconds and a day to
// deliver. UDP: 1,200-byte datagrams, timers in seconds. Stream: an ordered
// connection (Tor), 4,096-byte packets.
var (
	LoRa = Profile{
		FrameSize: 255, Bitrate: 1760, DutyCycle: 0.01,
		RTO: 30 * time.Second, MaxRTO: 30 * time.Minute, Deadline: 24 * time.Hour,
		AckDelay: 2 * time.Second, InFlight: 8, Reassembly: 2 * time.Hour,
		RenewAfter: 6 * time.Hour, RenewCount: 1000, Grace: 15 * time.Minute,
		Handshakes: 0.2, HandshakeB: 8, MaxAttempts: 4,
	}
	UDP = Profile{
		FrameSize: 1200,
		RTO:       time.Second, MaxRTO: 30 * time.Second, Deadline: 10 * time.Minute,
		AckDelay: 20 * time.Millisecond, InFlight: 16, Reassembly: 5 * time.Minute,
		RenewAfter: time.Hour, RenewCount: 10000, Grace: 2 * time.Minute,
		Handshakes: 20, HandshakeB: 40, MaxAttempts: 4,
	}
	Stream = Profile{
		FrameSize: 4096,
		RTO:       10 * time.Second, MaxRTO: 5 * time.Minute, Deadline: 24 * time.Hour,
		AckDelay: 100 * time.Millisecond, InFlight: 16, Reassembly: 30 * time.Minute,
		RenewAfter: time.Hour, RenewCount: 10000, Grace: 5 * time.Minute,
		Handshakes: 5, HandshakeB: 20, MaxAttempts: 4,
	}
)

// withDefaults fills zero fields from LoRa and checks the rest.
func (p Profile) withDefaults() (Profile, error) {
	d := LoRa
	set := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	if p.FrameSize == 0 {
		p.FrameSize = d.FrameSize
	}
	set(&p.RTO, d.RTO)
	set(&p.MaxRTO, d.MaxRTO)
	set(&p.Deadline, d.Deadline)
	set(&p.AckDelay, d.AckDelay)
	set(&p.Reassembly, d.Reassembly)
	set(&p.RenewAfter, d.RenewAfter)
	set(&p.Grace, d.Grace)
	if p.InFlight <= 0 {
		p.InFlight = d.InFlight
	}
	if p.RenewCount <= 0 || p.RenewCount > maxSeq {
		p.RenewCount = min(d.RenewCount, maxSeq)
	}
	if p.Handshakes <= 0 {
		p.Handshakes, p.HandshakeB = d.Handshakes, d.HandshakeB
	}
	if p.HandshakeB <= 0 {
		p.HandshakeB = 1
	}
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.FrameSize < minFrame || p.FrameSize > 65535 {
		return p, fmt.Errorf("frame size %d outside %d-65535: %w", p.FrameSize, minFrame, ErrConfig)
	}
	if p.DutyCycle < 0 || p.DutyCycle > 1 || p.Bitrate < 0 {
		return p, fmt.Errorf("duty cycle %g or bitrate %d out of range: %w", p.DutyCycle, p.Bitrate, ErrConfig)
	}
	return p, nil
}

// minFrame: the largest handshake packet (a P-256 message 1, 115 bytes) and
// a data fragment with room for some text must fit.
const minFrame = 128

// Config tunes an engine. The zero value is usable once links are added.
type Config struct {
	MaxMessage   int       // largest message accepted by Send (default 16 KiB, max 56 KiB)
	MaxQueued    int       // messages waiting per contact (default 256)
	MaxStrangers int       // strangers remembered, to report each once (default 256)
	Rand         io.Reader // ephemeral keys; crypto/rand when nil

	// Durable: the host saves what Changed returns and calls Saved once it
	// is on disk (docs/STORAGE.md). Acknowledgements of received messages
	// and the first transmission of each message then wait for the save
	// that records them, so that a crash at any moment loses no
	// acknowledged message and delivers none twice. Without it nothing
	// waits, and a crash loses what the last save did not hold.
	Durable bool
	// SaveEvery bounds how long a change that risks nothing (a replay mark,
	// a delivery state, an address) waits to be saved, batched with others
	// (default 30 s). User actions are saved at once; received messages
	// with their acknowledgement delay.
	SaveEvery time.Duration
	// History keeps the last History messages, both ways, with their
	// delivery states, in the state (0: none); HistoryAge drops those
	// older (0: no age limit).
	History    int
	HistoryAge time.Duration
}

func (c Config) withDefaults() Config {
	if c.MaxMessage <= 0 {
		c.MaxMessage = 16 << 10
	}
	c.MaxMessage = min(c.MaxMessage, maxFragments*minFragment)
	if c.MaxQueued <= 0 {
		c.MaxQueued = 256
	}
	if c.MaxStrangers <= 0 {
		c.MaxStrangers = 256
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.SaveEvery <= 0 {
		c.SaveEvery = 30 * time.Second
	}
	c.History = min(max(c.History, 0), MaxHistory)
	return c
}
