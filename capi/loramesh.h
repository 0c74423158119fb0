/*
 * loramesh.h: the C ABI of libloramesh (loramesh-core built with
 * `go build -buildmode=c-shared`).
 *
 * This header is written by hand and is the contract; the header cgo
 * generates is not installed. tests/capi_test.go checks that every function
 * declared here is exported by the library with this signature.
 *
 * ------------------------------------------------------------------------
 * CONVENTIONS
 *
 * Return values. Every function that can fail returns an int: LM_OK (0) or
 * one of the LM_ERR_* codes below. lm_strerror(code) names a code;
 * lm_last_error() gives the message of the calling thread's last failure.
 *
 * Handles. Keystores, identities, cards, responders, initiators and sessions
 * are uint64_t handles: opaque numbers from a table inside the library, never
 * pointers. 0 is never a valid handle. A closed, unknown or wrong-kind handle
 * gives LM_ERR_HANDLE (closing twice gives LM_ERR_HANDLE the second time).
 * Every handle must be closed by its lm_*_close function. Closing an identity
 * makes the responders and initiators built on it fail with LM_ERR_STATE;
 * sessions do not depend on the identity or keystore once created.
 *
 * Input buffers. (ptr, len) pairs; ptr may be NULL only when len is 0, and
 * len may not exceed 64 MiB (else LM_ERR_INVALID_ARG). The
 * library copies what it keeps and never holds a pointer to caller memory
 * after a call returns. Secrets passed in (passphrases, PINs, auth values,
 * seeds) are copied into mlocked memory that is wiped when no longer needed;
 * the caller wipes its own copy (lm_secure_wipe).
 *
 * OUTPUT BUFFER RULE (the only one, used by every function with a
 * variable-size output): the caller provides the buffer and a size_t
 * in/out length:
 *   - on entry, *len is the capacity of buf (buf may be NULL when *len is 0);
 *   - on LM_OK, *len is the number of bytes written;
 *   - if the buffer is too small, the function returns
 *     LM_ERR_BUFFER_TOO_SMALL, sets *len to the size needed, writes nothing
 *     and CHANGES NO STATE: no message number is used, no handshake is
 *     consumed, no handle is created. Call again with a bigger buffer.
 *   - on any other error *len is left unchanged.
 * Functions with several outputs check all of them before doing anything and,
 * when one is too small, report the needed size of every output.
 * String outputs (names, fingerprints, messages) are NUL terminated and the
 * length counts the NUL. len pointers must not be NULL (LM_ERR_INVALID_ARG).
 * Sizes are predictable: public keys are at most LM_MAX_PUBLIC_KEY_SIZE,
 * signatures LM_SIGNATURE_SIZE, a transport packet is lm_encrypt_size(n) for
 * n bytes of plaintext and a plaintext is never larger than LM_MAX_PAYLOAD.
 * Outputs are written only after every input has been read, so an output
 * buffer may be the same memory as an input (in-place encrypt and decrypt
 * work). Outputs holding plaintext are the caller's to wipe.
 *
 * Threads. Every function may be called from any thread at any time.
 * Sessions and initiators lock internally (two threads on one session are
 * serialised, never interleaved), responders and identities are safe for
 * concurrent use, and the handle table is locked. lm_last_error is per
 * thread.
 *
 * PROCESS-WIDE EFFECTS (read before loading the library):
 *   - Loading runs the Go runtime, which installs its own signal handlers
 *     (see the Go "os/signal" documentation on c-shared libraries). The
 *     library never installs interrupt handlers of its own.
 *   - No resource limit is changed: core dumps stay as the host set them
 *     (the locked pages holding secrets are MADV_DONTDUMP).
 *   - Secrets live in mlocked pages: the process needs RLIMIT_MEMLOCK
 *     headroom (64 KiB chunks for session and handshake keys, identity
 *     seeds, PINs and auth values, one page per secret passed in while a
 *     call runs). When locking fails the call returns LM_ERR_LOCKED_MEMORY;
 *     nothing aborts.
 *   - A Go c-shared library cannot be unloaded (dlclose does nothing useful)
 *     and does not survive fork(): the host must not fork after loading it
 *     unless the child immediately calls exec (posix_spawn/subprocess are
 *     fine). The session-key pages are MADV_WIPEONFORK.
 *   - Loading does nothing else: no keys, files, devices or locked memory are
 *     touched until a function is called.
 * ------------------------------------------------------------------------
 */
#ifndef LORAMESH_H
#define LORAMESH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change to a declaration below. Compare with
 * lm_abi_version() at run time. */
#define LM_ABI_VERSION 2

/* Error codes. Values are stable within an ABI version. */
enum lm_error {
	LM_OK = 0,
	LM_ERR_INVALID_ARG = 1,       /* NULL pointer, wrong length, bad value */
	LM_ERR_BUFFER_TOO_SMALL = 2,  /* see the output buffer rule */
	LM_ERR_AUTH = 3,              /* a packet or signature does not authenticate */
	LM_ERR_REPLAY = 4,            /* replayed handshake message 1 or transport packet */
	LM_ERR_MALFORMED = 5,         /* not a valid packet, or too long */
	LM_ERR_LIMIT = 6,             /* message limit reached: do a new handshake */
	LM_ERR_UNSUPPORTED = 7,       /* suite not supported by a key, card or token */
	LM_ERR_KEYSTORE = 8,          /* key holder failure (file, token, TPM) */
	LM_ERR_PIN = 9,               /* wrong PIN, passphrase or auth value */
	LM_ERR_LOCKED = 10,           /* PIN or key locked out */
	LM_ERR_NOT_FOUND = 11,        /* no such identity, token or device */
	LM_ERR_EXISTS = 12,           /* identity name already taken */
	LM_ERR_HANDLE = 13,           /* unknown, closed or wrong-kind handle */
	LM_ERR_LOCKED_MEMORY = 14,    /* cannot mlock memory for secrets */
	LM_ERR_UNKNOWN_PEER = 15,     /* initiator not on the responder's allow list */
	LM_ERR_TOO_OLD = 16,          /* transport packet outside the receive window */
	LM_ERR_STATE = 17,            /* object used out of order or after close */
	LM_ERR_BAD_CARD = 18,         /* contact card invalid or badly signed */
	LM_ERR_VERSION = 19,          /* unsupported format version or packet kind */
	LM_ERR_INVALID_KEY = 20,      /* public key not valid for its suite */
	LM_ERR_INTERNAL = 21,         /* bug in the library (includes recovered panics) */
	LM_ERR_IN_USE = 22,           /* state directory used by another process (named in the message) */
	LM_ERR_KEY_CHANGED = 23,      /* a contact of that name holds another identity: LM_CONTACT_REPLACE */
	LM_ERR_CONFLICT = 24,         /* the card's keys belong to another contact or to this node */
	LM_ERR_FULL = 25              /* too many messages queued for the contact */
};

/* Handshake suites (the numbers travel on the wire). */
#define LM_SUITE_X25519 1 /* Noise_IK_25519_ChaChaPoly_SHA256 */
#define LM_SUITE_P256 2   /* Noise_IK_P256_ChaChaPoly_SHA256 */
/* Bit of a suite in a suite mask (lm_identity_suites, lm_keystore_generate). */
#define LM_SUITE_BIT(s) (1u << (s))

/* Packet kinds (lm_packet_kind): a packet's first byte, except a card's
 * (docs/PROTOCOL.md §1, wire format version 2). */
#define LM_PACKET_INIT_X25519 0x21 /* handshake message 1, 25519 suite */
#define LM_PACKET_INIT_P256 0x22   /* handshake message 1, P-256 suite */
#define LM_PACKET_RESPONSE 0x23    /* handshake message 2 */
#define LM_PACKET_TRANSPORT 0x24   /* session message */
#define LM_PACKET_CARD 5           /* contact card (a CBOR array) */

#define LM_SEED_SIZE 32            /* lm_identity_from_seed */
#define LM_SIGNATURE_SIZE 64       /* Ed25519, or ECDSA P-256 raw r||s */
#define LM_MAX_PUBLIC_KEY_SIZE 33  /* 32 (X25519, Ed25519), 33 (compressed P-256) */
#define LM_HASH_SIZE 32            /* lm_session_handshake_hash */
#define LM_MAX_PAYLOAD 65471       /* plaintext and lm_respond reply limit */
#define LM_MAX_INIT_PAYLOAD 65437  /* lm_initiate payload limit */
#define LM_MAX_OVERHEAD 21         /* lm_encrypt_size(n) == n + LM_MAX_OVERHEAD */

/* Feature bits (lm_features): what this build of the library guarantees
 * about the secrets it handles. Check them at start-up; README.md
 * ("Architectures and custody guarantees") says which hold where. */
#define LM_FEATURE_ERASE 0x1 /* runtime/secret erases the registers, stack and heap
			      * temporaries of every operation on key material
			      * (linux/amd64 and linux/arm64 only) */
#define LM_FEATURE_MLOCK 0x2 /* kept secrets live in mlocked pages, excluded from core
			      * dumps, never in ordinary memory (every Linux build) */

/* Messenger engine types (see "Messenger engine" below). */
/* Link profiles (lm_engine_add_link): sizes and timers. */
#define LM_LINK_LORA 1   /* 255-byte frames, ~1.8 kbit/s, 1 % duty cycle; tens of seconds, a day to deliver */
#define LM_LINK_UDP 2    /* 1,200-byte datagrams; seconds, ten minutes to deliver */
#define LM_LINK_STREAM 3 /* an ordered connection (Tor): 4,096-byte packets */

#define LM_NAME_MAX 64  /* contact names: 1-64 of [A-Za-z0-9._-], not starting with . or - */
#define LM_LINK_MAX 32  /* link names: printable ASCII */
#define LM_ADDR_MAX 255 /* addresses on a link: printable ASCII ("" for a radio link) */
#define LM_HISTORY_MAX 10000 /* messages lm_engine_set_history may keep */

/* Event kinds. */
#define LM_EVENT_MESSAGE 1  /* a message from contact: data is its text; seq, sent_ms, verified */
#define LM_EVENT_DELIVERY 2 /* message msg_id to contact is now state; data: why, when failed */
#define LM_EVENT_SESSION 3  /* a session with contact was established or renewed; data: the suite */
#define LM_EVENT_STRANGER 4 /* an unknown key (data) tried a handshake from link/addr; not answered */
#define LM_EVENT_ADDRESS 5  /* contact is now reached at link/addr */
#define LM_EVENT_DROPPED 6  /* a packet refused or an attempt failed, nothing lost; data: why */

/* Delivery states. */
#define LM_DELIVERY_QUEUED 1    /* accepted, waiting for a session or a slot */
#define LM_DELIVERY_SENT 2      /* every fragment handed to the link at least once */
#define LM_DELIVERY_DELIVERED 3 /* acknowledged by the contact */
#define LM_DELIVERY_FAILED 4    /* given up; never delivered */

typedef struct lm_event {
	int32_t kind;                  /* LM_EVENT_* */
	int32_t state;                 /* LM_DELIVERY_*, for LM_EVENT_DELIVERY */
	uint64_t msg_id;               /* our message (LM_EVENT_DELIVERY) */
	uint64_t seq;                  /* orders one contact's messages (LM_EVENT_MESSAGE) */
	int64_t time_ms;               /* when it happened, on the engine's clock */
	int64_t sent_ms;               /* when the sender wrote it, on its clock (LM_EVENT_MESSAGE) */
	int32_t verified;              /* the contact's fingerprint was verified */
	char contact[LM_NAME_MAX + 1]; /* NUL terminated; "" when none */
	char link[LM_LINK_MAX + 1];
	char addr[LM_ADDR_MAX + 1];
	char fingerprint[20];          /* LM_EVENT_STRANGER: of the key, "XXXX-XXXX-XXXX-XXXX" */
} lm_event;

/* lm_engine_contact_add: flags and results. */
#define LM_CONTACT_REPLACE 1
#define LM_IMPORT_NEW 1
#define LM_IMPORT_UNCHANGED 2
#define LM_IMPORT_REPLACED 3

/* Defined by capi's Go side to read the types above without the
 * prototypes, which cgo declares itself. */
#ifndef LM_TYPES_ONLY

/* ---- Library ------------------------------------------------------------ */

/* Library version, e.g. "0.1.0". Static string, never freed. */
const char *lm_version(void);

/* LM_ABI_VERSION of the library actually loaded. */
int lm_abi_version(void);

/* Static English name of an error code ("unknown error" for others). */
const char *lm_strerror(int code);

/* Copies the message of the calling thread's most recent failed call into
 * buf (output buffer rule; NUL terminated; at most 256 bytes). Every
 * function returning an LM_* code, except this one, replaces the message on
 * failure and clears it (to "") on success. The message is thread-local:
 * it is kept in the calling OS thread's own storage (a C __thread variable),
 * so other threads cannot overwrite it. Messages never hold secrets
 * or bytes received from a peer. */
int lm_last_error(char *buf, size_t *len);

/* The LM_FEATURE_* bits of this build. A bit that is clear is a guarantee
 * the library does NOT give on this architecture: without LM_FEATURE_ERASE
 * (linux/arm, 32-bit), copies of keys that the Go primitives leave in
 * registers, on stacks and in freed heap memory are not erased, only the
 * library's own buffers are wiped. The library never drops a guarantee
 * silently: this is where it says so. */
int lm_features(uint32_t *flags);

/* The same in words, for logs and bug reports, e.g.
 *   "linux/arm go1.26.8 GOARM=7: mlock yes, erase no (runtime/secret does
 *    not erase on linux/arm; only linux/amd64 and linux/arm64)"
 * The first word is the platform (GOOS/GOARCH), the second the Go version.
 * Static string, never freed. */
const char *lm_features_string(void);

/* Zeroes len bytes at buf in a way the compiler cannot remove. NULL is
 * ignored. */
void lm_secure_wipe(void *buf, size_t len);

/* Bytes of mlocked memory held for session and handshake keys, and bytes in
 * use (for leak checks and memlock budgeting). */
int lm_locked_memory(size_t *locked, size_t *in_use);

/* ---- Keystores ---------------------------------------------------------- */

/* A directory of NAME.lmid identity files sealed under one passphrase
 * (created 0700 if missing). argon2id costs for NEW files: all three 0 means
 * the default (3 passes, 64 MiB, 4 threads); otherwise time 1..16, threads
 * >= 1, memory_kib 8*threads..1048576. Small values are for tests only. */
int lm_keystore_open_memory(const char *dir, const uint8_t *passphrase, size_t passphrase_len,
			    uint32_t argon_time, uint32_t argon_memory_kib, uint8_t argon_threads,
			    uint64_t *keystore);

/* A PKCS#11 token named by an RFC 7512 URI, e.g.
 *   pkcs11:token=loramesh?module-path=/usr/lib/softhsm/libsofthsm2.so
 * Identities are P-256 key pairs (plus X25519 when the token has it).
 * pin may be NULL with pin_len 0 to use the URI's pin-source or pin-value.
 * Prefer pin or pin-source: a pin-value travels inside the URI string, which
 * the library copies into memory it cannot wipe (the one secret input not
 * kept in locked memory).
 * Wrong PIN: LM_ERR_PIN; locked PIN: LM_ERR_LOCKED; no token: LM_ERR_NOT_FOUND. */
int lm_keystore_open_pkcs11(const char *uri, const uint8_t *pin, size_t pin_len, uint64_t *keystore);

/* A TPM 2.0 keystore: key files NAME.pem in key_dir (created 0700), keys in
 * the TPM. device: NULL or "" for /dev/tpmrm0, a path for another device,
 * "unix:PATH" for an swtpm Unix socket, "tcp:HOST:PORT" for swtpm over TCP
 * (control port PORT+1). auth (at most 32 bytes; may be NULL/0 for none) is
 * the auth value of every key generated or loaded through this keystore
 * (keys with one are dictionary-attack protected: a few wrong values lock
 * them out, LM_ERR_LOCKED). lm_keystore_load checks the auth value with one
 * signature: a wrong one is LM_ERR_PIN and lm_last_error says how many
 * tries the TPM has left; a value the TPM rejected is never sent again
 * (later calls through this keystore fail with LM_ERR_PIN without reaching
 * the TPM), so a typo cannot use up the lockout counter. A storage key that
 * differs from the one recorded at generation (NAME.srk) is
 * LM_ERR_KEYSTORE. No device or socket: LM_ERR_NOT_FOUND. swtpm
 * serves one connection at a time: keep one keystore per swtpm open, with
 * its identities. */
int lm_keystore_open_tpm(const char *device, const char *key_dir, const uint8_t *auth, size_t auth_len,
			 uint64_t *keystore);

/* Identity names, sorted, each followed by '\n', then a NUL (output buffer
 * rule; an empty keystore gives "" and *len == 1). */
int lm_keystore_list(uint64_t keystore, char *buf, size_t *len);

/* Creates identity name with keys for the suites in suite_mask (bits
 * LM_SUITE_BIT(s); 0 means every suite the keystore can hold) and returns
 * a new identity handle. Names (all keystore functions): 1-64 characters of
 * [A-Za-z0-9._-], not starting with '.' or '-' (else LM_ERR_INVALID_ARG).
 * LM_ERR_EXISTS if taken. */
int lm_keystore_generate(uint64_t keystore, const char *name, uint32_t suite_mask, uint64_t *identity);

/* Opens identity name: a new identity handle. LM_ERR_NOT_FOUND, LM_ERR_PIN. */
int lm_keystore_load(uint64_t keystore, const char *name, uint64_t *identity);

/* Deletes identity name for good. */
int lm_keystore_delete(uint64_t keystore, const char *name);

/* Closes the keystore handle (forgets its passphrase, PIN or auth value).
 * Memory and PKCS#11 identities loaded from it stay usable until closed. A
 * TPM identity with an auth value asks for it again after a wrong one or a
 * reload, so once its keystore is closed such a call fails with
 * LM_ERR_STATE: keep a TPM keystore open as long as its identities. */
int lm_keystore_close(uint64_t keystore);

/* ---- Identities --------------------------------------------------------- */

/* A new random software identity, held in memory only (not saved). */
int lm_identity_generate(uint64_t *identity);

/* The software identity of a LM_SEED_SIZE-byte seed (deterministic). */
int lm_identity_from_seed(const uint8_t *seed, size_t seed_len, uint64_t *identity);

/* The signing public key: 32-byte Ed25519 key for software identities, a
 * 33-byte compressed P-256 key for PKCS#11 and TPM identities. */
int lm_identity_public_key(uint64_t identity, uint8_t *out, size_t *len);

/* The 32-byte X25519 public key derived from a software identity's seed
 * (the Montgomery form of its Ed25519 key). LM_ERR_UNSUPPORTED for hardware
 * identities: use lm_identity_dh_public. */
int lm_identity_x25519_public(uint64_t identity, uint8_t *out, size_t *len);

/* The static Diffie-Hellman public key for suite (32 or 33 bytes), the key a
 * peer passes to lm_initiate. LM_ERR_UNSUPPORTED if the identity has none. */
int lm_identity_dh_public(uint64_t identity, int suite, uint8_t *out, size_t *len);

/* Suites the identity holds a DH key for, as a mask of LM_SUITE_BIT(s). */
int lm_identity_suites(uint64_t identity, uint32_t *suite_mask);

/* Signs msg (any length) and writes LM_SIGNATURE_SIZE bytes. Scheme, chosen
 * by the identity's signing key (lm_identity_public_key):
 *   32-byte key: Ed25519 over  "loramesh sign v1" || 0x00 || msg
 *   33-byte key: ECDSA P-256 over SHA-256("loramesh sign v1" || 0x00 || msg),
 *                signature as raw big-endian r || s (32 bytes each).
 * The context prefix keeps these signatures apart from contact cards (which
 * this function therefore cannot be used to forge). */
int lm_identity_sign(uint64_t identity, const uint8_t *msg, size_t msg_len, uint8_t *sig, size_t *sig_len);

/* Verifies a signature made by lm_identity_sign under public_key (32 bytes:
 * Ed25519; 33 bytes: compressed P-256). LM_OK if valid, LM_ERR_AUTH if not,
 * LM_ERR_INVALID_KEY for a key that is not a valid point,
 * LM_ERR_INVALID_ARG for other lengths. */
int lm_verify(const uint8_t *public_key, size_t public_key_len, const uint8_t *msg, size_t msg_len,
	      const uint8_t *sig, size_t sig_len);

/* Closes the identity handle and wipes what it holds. */
int lm_identity_close(uint64_t identity);

/* ---- Contact cards ------------------------------------------------------ */

/* Creates the identity's signed contact card under display name (1-64 bytes
 * of printable UTF-8): the bytes to hand to a contact. */
int lm_card_create(uint64_t identity, const char *name, uint8_t *out, size_t *len);

/* Verifies card bytes (signature, canonical encoding, keys) and returns a
 * card handle. LM_ERR_BAD_CARD if anything is wrong. */
int lm_card_parse(const uint8_t *card, size_t card_len, uint64_t *handle);

/* The card's fingerprint, "XXXX-XXXX-XXXX-XXXX" (base32, NUL terminated), to
 * compare out of band. */
int lm_card_fingerprint(uint64_t card, char *buf, size_t *len);

/* The card's display name (NUL terminated; the name contains no NUL). */
int lm_card_name(uint64_t card, char *buf, size_t *len);

/* The card's signing public key (32 or 33 bytes, see lm_verify). */
int lm_card_signing_key(uint64_t card, uint8_t *out, size_t *len);

/* The card's DH key for suite; LM_ERR_UNSUPPORTED if it has none. */
int lm_card_dh_key(uint64_t card, int suite, uint8_t *out, size_t *len);

/* The suite two cards share (X25519 preferred). LM_ERR_UNSUPPORTED if none. */
int lm_card_choose_suite(uint64_t card_a, uint64_t card_b, int *suite);

int lm_card_close(uint64_t card);

/* ---- Handshake (Noise IK) ----------------------------------------------- */

/* Starts a handshake from identity to the responder whose static DH key for
 * suite is peer_key (from lm_card_dh_key). payload (up to
 * LM_MAX_INIT_PAYLOAD bytes, else LM_ERR_MALFORMED; may be empty) is
 * encrypted to the responder but has no forward secrecy. Writes handshake message 1 to msg1 and returns an initiator
 * handle. The identity must stay open until lm_finish. */
int lm_initiate(uint64_t identity, int suite, const uint8_t *peer_key, size_t peer_key_len,
		const uint8_t *payload, size_t payload_len,
		uint64_t *initiator, uint8_t *msg1, size_t *msg1_len);

/* Reads handshake message 2. On success returns a session handle and the
 * responder's payload. A forged or corrupted msg2 returns an error and
 * leaves the initiator waiting for the genuine one; after success the
 * initiator is spent (LM_ERR_STATE) but its handle must still be closed.
 * payload's needed size is computed from msg2 before anything changes. */
int lm_finish(uint64_t initiator, const uint8_t *msg2, size_t msg2_len,
	      uint64_t *session, uint8_t *payload, size_t *payload_len);

/* Abandons (or releases a finished) handshake and wipes its keys. */
int lm_initiator_close(uint64_t initiator);

/* A responder answers handshakes addressed to identity; it remembers recent
 * messages 1 so a replay gets LM_ERR_REPLAY. It answers anyone until
 * lm_responder_allow is called; from then on only the allowed keys. */
int lm_responder_new(uint64_t identity, uint64_t *responder);

/* Adds an initiator static key (suite, 32 or 33 bytes) to the allow list. */
int lm_responder_allow(uint64_t responder, int suite, const uint8_t *key, size_t key_len);

/* Answers handshake message 1 with reply (may be empty). Outputs: a session
 * handle, the initiator's authenticated static key (peer_key, 32 or 33
 * bytes: check it against your contacts' lm_card_dh_key), the initiator's
 * payload and message 2 to send back. All output sizes are computed from
 * msg1 and reply before anything changes, so LM_ERR_BUFFER_TOO_SMALL does not
 * consume msg1. Errors: LM_ERR_REPLAY (already answered), LM_ERR_AUTH,
 * LM_ERR_MALFORMED, LM_ERR_UNKNOWN_PEER; none changes the responder. */
int lm_respond(uint64_t responder, const uint8_t *msg1, size_t msg1_len,
	       const uint8_t *reply, size_t reply_len, uint64_t *session,
	       uint8_t *peer_key, size_t *peer_key_len,
	       uint8_t *payload, size_t *payload_len,
	       uint8_t *msg2, size_t *msg2_len);

int lm_responder_close(uint64_t responder);

/* ---- Sessions ----------------------------------------------------------- */

/* Exact size of the transport packet for plaintext_len bytes (at most
 * plaintext_len + LM_MAX_OVERHEAD), or 0 if plaintext_len > LM_MAX_PAYLOAD. */
size_t lm_encrypt_size(size_t plaintext_len);

/* Seals plaintext as the next transport packet. The output size is checked
 * before a message number is used: LM_ERR_BUFFER_TOO_SMALL burns nothing.
 * LM_ERR_LIMIT when the session's message limit (2^32) is reached. */
int lm_session_encrypt(uint64_t session, const uint8_t *plaintext, size_t plaintext_len,
		       uint8_t *out, size_t *len);

/* Opens a transport packet. Late and reordered packets within the window
 * (64 messages) open exactly once. Any failure (LM_ERR_AUTH, LM_ERR_REPLAY,
 * LM_ERR_TOO_OLD, LM_ERR_MALFORMED, LM_ERR_BUFFER_TOO_SMALL) leaves the
 * session unchanged. */
int lm_session_decrypt(uint64_t session, const uint8_t *packet, size_t packet_len,
		       uint8_t *out, size_t *len);

/* The peer's static DH public key (authenticated by the handshake). */
int lm_session_peer(uint64_t session, uint8_t *out, size_t *len);

/* The session's suite (LM_SUITE_*). */
int lm_session_suite(uint64_t session, int *suite);

/* The Noise handshake hash (LM_HASH_SIZE bytes), for channel binding. */
int lm_session_handshake_hash(uint64_t session, uint8_t *out, size_t *len);

/* Wipes the session's keys and releases the handle. */
int lm_session_close(uint64_t session);

/* ---- Dispatch ----------------------------------------------------------- */

/* The kind (LM_PACKET_*) of a received packet, from its first two bytes
 * only. LM_ERR_MALFORMED if not a packet, LM_ERR_VERSION for an unknown
 * kind. */
int lm_packet_kind(const uint8_t *packet, size_t packet_len, int *kind);

/* ---- Messenger engine (docs/PROTOCOL.md §6-§8) -------------------------
 *
 * The engine owns what makes a messenger trustworthy above the handshake:
 * contacts, which session a packet belongs to, when a new session may
 * replace a working one, where replies go, retries, acknowledgements and
 * fragmentation. It does no I/O and reads no clock: the host passes the time
 * (milliseconds since the Unix epoch) on every call, feeds it received
 * packets with the link and address they came from, and takes the packets
 * to transmit and the events for the user. Typical loop:
 *
 *   lm_engine_open(identity, dir, now, &e);
 *   lm_engine_add_link(e, "udp", LM_LINK_UDP, 0);
 *   for (;;) {
 *       wait for input, at most until lm_engine_deadline(e, &t);
 *       lm_engine_receive(e, now, "udp", "192.0.2.7:7000", pkt, n);  or
 *       lm_engine_send(e, now, "alice", text, n, &id);               or
 *       lm_engine_tick(e, now);
 *       while (lm_engine_next_packet(e, ..., &have) == LM_OK && have) transmit;
 *       while (lm_engine_next_event(e, &ev, ..., &have) == LM_OK && have) show;
 *   }
 *
 * The engine's state (contacts, replay marks, last addresses, queued
 * messages, the ids of messages delivered, the history) is sealed to the
 * identity (docs/STORAGE.md: only this identity's key opens it, wherever it
 * is held) and saved in the state directory by the calls that find a save
 * due: user actions (send, contacts) at once, received messages within
 * their acknowledgement delay, everything else within 30 s. Nothing is
 * acknowledged, and no message event is given, before the save that
 * records it: a crash or power cut at any moment loses no message its
 * sender was told is delivered and shows none twice. If a save fails the
 * call says so (LM_ERR_KEYSTORE, naming the file) and what waits for it
 * keeps waiting. One engine per identity and directory: the directory is
 * locked while open.
 */

/* Opens the engine of identity with its state in state_dir (created 0700).
 * A directory another engine holds, in this or another process, gives
 * LM_ERR_IN_USE naming that process. The identity must stay open until
 * lm_engine_close. A damaged state file gives LM_ERR_KEYSTORE naming it and
 * is left as it is. */
int lm_engine_open(uint64_t identity, const char *state_dir, int64_t now_ms, uint64_t *engine);

/* Registers a link (a name the host chooses, e.g. "udp", "kiss") with a
 * profile; frame_size 0 keeps the profile's. */
int lm_engine_add_link(uint64_t engine, const char *link, int profile, uint32_t frame_size);

/* Saves the state, wipes every session and releases the directory. */
int lm_engine_close(uint64_t engine);

/* The history kept in the state: the last keep messages (at most
 * LM_HISTORY_MAX; 0 keeps none and drops what was kept), none older than
 * max_age_s seconds (0: no age limit). An engine opened here keeps 1000
 * until told otherwise. */
int lm_engine_set_history(uint64_t engine, uint32_t keep, int64_t max_age_s);
/* The index-th kept message, oldest first (*have 0 past the last): kind
 * LM_EVENT_MESSAGE for one received (time_ms when it arrived, sent_ms,
 * seq, verified), LM_EVENT_DELIVERY for one sent (msg_id, its current
 * state, time_ms when it was queued); its text in data (output buffer
 * rule). */
int lm_engine_history(uint64_t engine, uint64_t index, lm_event *ev, uint8_t *data, size_t *len, int *have);

/* Contacts. A contact is its card's identity. lm_engine_contact_add:
 * result LM_IMPORT_NEW (also a new card of the same identity: verification
 * kept), LM_IMPORT_UNCHANGED (the same card again: nothing changed),
 * LM_IMPORT_REPLACED (another identity under the name, with
 * LM_CONTACT_REPLACE: verification reset). Errors: LM_ERR_KEY_CHANGED (a
 * different identity without LM_CONTACT_REPLACE; the message has both
 * fingerprints), LM_ERR_CONFLICT (this node's own card, or a key another
 * contact holds), LM_ERR_BAD_CARD, LM_ERR_INVALID_ARG (name). */
int lm_engine_contact_add(uint64_t engine, const char *name, const uint8_t *card, size_t card_len,
			  uint32_t flags, int *result);
/* Forgets a contact; its undelivered messages fail. */
int lm_engine_contact_remove(uint64_t engine, const char *name);
/* Marks a contact verified if fingerprint (as read out of band; case,
 * spaces and dashes ignored) is its card's; LM_ERR_AUTH, whose message never
 * shows the expected value, if not. */
int lm_engine_contact_verify(uint64_t engine, const char *name, const char *fingerprint);
/* Where the contact is first sent to, until it answers from somewhere. */
int lm_engine_contact_set_addr(uint64_t engine, const char *name, const char *link, const char *addr);
/* Every contact, a line each, tab-separated: name, display name, fingerprint,
 * verified (0/1), session (0/1), messages queued, last link, last address.
 * Display names are the contact's own text: escape them when shown. */
int lm_engine_contacts(uint64_t engine, char *buf, size_t *len);
/* A contact's card. */
int lm_engine_contact_card(uint64_t engine, const char *name, uint8_t *out, size_t *len);

/* Queues a message (at most 16 KiB) for contact and returns its id for
 * LM_EVENT_DELIVERY. LM_ERR_NOT_FOUND: no such contact, or no address known
 * for it; LM_ERR_FULL: too many queued; LM_ERR_INVALID_ARG: too long. */
int lm_engine_send(uint64_t engine, int64_t now_ms, const char *contact, const uint8_t *text, size_t len,
		   uint64_t *msg_id);
/* Hands the engine a packet that arrived on link from addr. Never fails for
 * what the packet holds: a bad packet is dropped (LM_EVENT_DROPPED at most). */
int lm_engine_receive(uint64_t engine, int64_t now_ms, const char *link, const char *addr,
		      const uint8_t *packet, size_t len);
/* Runs the engine's timers. */
int lm_engine_tick(uint64_t engine, int64_t now_ms);
/* When to call lm_engine_tick next, in ms since the epoch: 0 if packets or
 * events are waiting, -1 if nothing is due until input comes. */
int lm_engine_deadline(uint64_t engine, int64_t *deadline_ms);
/* The next packet to transmit on link to addr (NUL-terminated strings;
 * output buffer rule for all three). *have is 1 if one was written, 0 if
 * there is none. A too-small buffer takes nothing. */
int lm_engine_next_packet(uint64_t engine, char *link, size_t *link_len, char *addr, size_t *addr_len,
			  uint8_t *packet, size_t *packet_len, int *have);
/* The next event, its variable part in data (output buffer rule). *have is
 * 1 if one was written, 0 if there is none. */
int lm_engine_next_event(uint64_t engine, lm_event *event, uint8_t *data, size_t *data_len, int *have);

#endif /* LM_TYPES_ONLY */

#ifdef __cplusplus
}
#endif

#endif /* LORAMESH_H */
