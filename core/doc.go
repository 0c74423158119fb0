// Package core is the audited protocol core of loramesh: the Noise_IK
// handshake in two suites (25519 and P-256), the per-message key ratchet
// that follows it, the packet format, and contact cards.
//
// The core holds only ephemeral secrets, each in locked memory and wiped when
// done; long-term private keys stay in a keystore.Identity, which the core
// asks for static-key DH (two calls per handshake per side) and signatures.
// Every packet is parsed strictly and every failure leaves the object it was
// given to exactly as it was. docs/PROTOCOL.md specifies the wire format this
// package implements, step by step.
package core

import "github.com/loramesh/loramesh-core/internal/secret"

// LockedMemory reports the bytes of locked memory held for secrets and the
// bytes in use by live ones, for leak checks and RLIMIT_MEMLOCK budgeting.
func LockedMemory() (locked, inUse int) { return secret.Usage() }
