// Package webcrypto is the browser's keystore: an identity's private keys
// are non-extractable WebCrypto keys, and every signature and static DH
// happens inside WebCrypto (js/wasm only; natively only the record format
// builds, for its tests and fuzzing).
//
// Keys: Ed25519 signs and X25519 does DH where the browser has them, and a
// P-256 ECDH key is always there too, so the node can talk to hardware
// identities, which have only P-256. Without Ed25519 (or when an identity is
// generated for P-256 alone) the identity signs with ECDSA P-256: WebCrypto
// cannot give one P-256 key both uses, so such an identity holds two keys.
// WebCrypto's ECDSA hashes what it signs, so identities implement
// crypto.MessageSigner, and Sign refuses digests.
//
// Storage (IndexedDB database "loramesh-keys", one record per identity):
//
//   - ProtectNone: the CryptoKeys themselves are stored. "Non-extractable"
//     only means that scripts cannot export them: the browser writes them
//     to its profile directory as plain PKCS#8, so at rest they are as safe
//     as a file in the user's home directory.
//   - ProtectPRF: the keys are stored only wrapped (AES-256-GCM) under a key
//     derived (HKDF-SHA-256) from the output of the WebAuthn PRF extension
//     of a FIDO2 security key's credential. At each start the authenticator
//     evaluates the PRF again (touch, and PIN if it asks for one) and the
//     keys are unwrapped into non-extractable keys that are never stored.
//     The PRF output never enters Go memory; the page's JavaScript could
//     read it while it exists, as it can read all of the wasm memory.
package webcrypto
