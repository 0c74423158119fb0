/* basic.c: the whole libloramesh API from C, one thread, every documented
 * wrong-input case. Usage: basic DIR (an empty scratch directory). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const uint8_t pass[] = "correct horse battery staple";

/* Argon2id costs small enough for tests (1 pass, 64 KiB, 1 lane). */
#define T_TIME 1
#define T_MEM 64
#define T_THREADS 1

static void test_library(void) {
	REQUIRE(lm_version() != NULL && strlen(lm_version()) > 0);
	REQUIRE(lm_abi_version() == LM_ABI_VERSION);
	/* Every code has its own name; others are "unknown error". */
	const char *unknown = lm_strerror(-1);
	REQUIRE(unknown && strcmp(unknown, lm_strerror(999)) == 0);
	for (int i = LM_OK; i <= LM_ERR_INTERNAL; i++) {
		REQUIRE(lm_strerror(i) != NULL && strcmp(lm_strerror(i), unknown) != 0);
		for (int j = 0; j < i; j++)
			REQUIRE(strcmp(lm_strerror(i), lm_strerror(j)) != 0);
	}
	REQUIRE(strcmp(lm_strerror(LM_ERR_FULL + 1), unknown) == 0);

	/* lm_last_error: set on failure, cleared on success, buffer rule. */
	CHECK(lm_session_close(0), LM_ERR_HANDLE);
	char msg[256];
	size_t n = 0;
	CHECK(lm_last_error(NULL, &n), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(n > 1 && n <= 256);
	size_t need = n;
	n = 3;
	CHECK(lm_last_error(msg, &n), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(n == need);
	OK(lm_last_error(msg, &n));
	REQUIRE(n == need && msg[n - 1] == 0 && strlen(msg) == n - 1 && strstr(msg, "lm_session_close"));
	CHECK(lm_last_error(NULL, NULL), LM_ERR_INVALID_ARG);
	n = 1;
	CHECK(lm_last_error(NULL, &n), LM_ERR_INVALID_ARG);
	size_t locked, in_use;
	OK(lm_locked_memory(&locked, &in_use));
	n = sizeof msg;
	OK(lm_last_error(msg, &n));
	REQUIRE(n == 1 && msg[0] == 0);
	CHECK(lm_locked_memory(NULL, &in_use), LM_ERR_INVALID_ARG);

	uint8_t secret[40];
	memset(secret, 0xAB, sizeof secret);
	lm_secure_wipe(secret + 4, 32);
	for (int i = 0; i < 40; i++)
		REQUIRE(secret[i] == ((i >= 4 && i < 36) ? 0 : 0xAB));
	lm_secure_wipe(NULL, 10);
	lm_secure_wipe(secret, 0);

	REQUIRE(lm_encrypt_size(0) == 1 + 4 + 16); /* kind, hint, tag */
	REQUIRE(lm_encrypt_size(5) == 1 + 4 + 21);
	REQUIRE(lm_encrypt_size(200) == 200 + LM_MAX_OVERHEAD);
	REQUIRE(lm_encrypt_size(LM_MAX_PAYLOAD) <= LM_MAX_PAYLOAD + LM_MAX_OVERHEAD);
	REQUIRE(lm_encrypt_size(LM_MAX_PAYLOAD + 1) == 0);
}

static void read_key(uint64_t id, int suite, uint8_t *out, size_t *len) {
	*len = LM_MAX_PUBLIC_KEY_SIZE;
	OK(lm_identity_dh_public(id, suite, out, len));
}

/* The keystore part; returns alice and bob loaded from it. */
static void test_keystore(const char *dir, uint64_t *alice, uint64_t *bob) {
	uint64_t ks = 0, id = 0;
	/* Wrong inputs. */
	CHECK(lm_keystore_open_memory(NULL, pass, sizeof pass, T_TIME, T_MEM, T_THREADS, &ks), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_open_memory(dir, NULL, 5, T_TIME, T_MEM, T_THREADS, &ks), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_open_memory(dir, pass, 0, T_TIME, T_MEM, T_THREADS, &ks), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_open_memory(dir, pass, sizeof pass, T_TIME, T_MEM, T_THREADS, NULL), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_open_memory(dir, pass, sizeof pass, 0, T_MEM, T_THREADS, &ks), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_open_memory(dir, pass, sizeof pass, 17, T_MEM, T_THREADS, &ks), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_open_memory(dir, pass, sizeof pass, 1, 7, 1, &ks), LM_ERR_INVALID_ARG);
	REQUIRE(ks == 0);

	OK(lm_keystore_open_memory(dir, pass, sizeof pass, T_TIME, T_MEM, T_THREADS, &ks));
	REQUIRE(ks != 0);

	char list[64];
	size_t n = sizeof list;
	OK(lm_keystore_list(ks, list, &n));
	REQUIRE(n == 1 && list[0] == 0);

	uint64_t a = 0, b = 0, c = 0;
	OK(lm_keystore_generate(ks, "alice", 0, &a));
	OK(lm_keystore_generate(ks, "bob", LM_SUITE_BIT(LM_SUITE_X25519) | LM_SUITE_BIT(LM_SUITE_P256), &b));
	OK(lm_keystore_generate(ks, "carol", 0, &c));
	REQUIRE(a && b && c && a != b && b != c);
	CHECK(lm_keystore_generate(ks, "alice", 0, &id), LM_ERR_EXISTS);
	CHECK(lm_keystore_generate(ks, "../evil", 0, &id), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_generate(ks, ".hidden", 0, &id), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_generate(ks, "", 0, &id), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_generate(ks, NULL, 0, &id), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_generate(ks, "dave", 1u << 9, &id), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_generate(ks, "dave", 0, NULL), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_generate(ks + 1000, "dave", 0, &id), LM_ERR_HANDLE);
	CHECK(lm_keystore_generate(a, "dave", 0, &id), LM_ERR_HANDLE); /* wrong kind */
	REQUIRE(id == 0);

	/* List, with the size query. */
	n = 0;
	CHECK(lm_keystore_list(ks, NULL, &n), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(n == strlen("alice\nbob\ncarol\n") + 1);
	size_t need = n;
	n = need - 1;
	CHECK(lm_keystore_list(ks, list, &n), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(n == need);
	OK(lm_keystore_list(ks, list, &n));
	REQUIRE(n == need && strcmp(list, "alice\nbob\ncarol\n") == 0);
	CHECK(lm_keystore_list(ks, list, NULL), LM_ERR_INVALID_ARG);

	/* Delete. */
	OK(lm_keystore_delete(ks, "carol"));
	CHECK(lm_keystore_delete(ks, "carol"), LM_ERR_NOT_FOUND);
	CHECK(lm_keystore_delete(ks, "a/b"), LM_ERR_INVALID_ARG);
	n = sizeof list;
	OK(lm_keystore_list(ks, list, &n));
	REQUIRE(strcmp(list, "alice\nbob\n") == 0);
	OK(lm_identity_close(c)); /* a deleted identity stays usable until closed */

	/* Load: same keys as generated. */
	CHECK(lm_keystore_load(ks, "carol", &id), LM_ERR_NOT_FOUND);
	CHECK(lm_keystore_load(ks, "alice", NULL), LM_ERR_INVALID_ARG);
	OK(lm_keystore_load(ks, "alice", alice));
	OK(lm_keystore_load(ks, "bob", bob));
	uint8_t k1[33], k2[33];
	size_t n1, n2;
	read_key(a, LM_SUITE_P256, k1, &n1);
	read_key(*alice, LM_SUITE_P256, k2, &n2);
	REQUIRE(n1 == 33 && n2 == 33 && memcmp(k1, k2, 33) == 0);
	OK(lm_identity_close(a));
	OK(lm_identity_close(b));
	CHECK(lm_identity_close(b), LM_ERR_HANDLE);

	/* The wrong passphrase on the same directory. */
	uint64_t bad = 0;
	static const uint8_t wrong[] = "wrong";
	OK(lm_keystore_open_memory(dir, wrong, sizeof wrong, T_TIME, T_MEM, T_THREADS, &bad));
	CHECK(lm_keystore_load(bad, "alice", &id), LM_ERR_PIN);
	OK(lm_keystore_close(bad));

	OK(lm_keystore_close(ks));
	CHECK(lm_keystore_close(ks), LM_ERR_HANDLE);
	CHECK(lm_keystore_list(ks, list, &n), LM_ERR_HANDLE);
	CHECK(lm_keystore_load(ks, "alice", &id), LM_ERR_HANDLE);
}

static void test_identity(uint64_t alice) {
	uint8_t pk[33], x[33], dh[33];
	size_t n = sizeof pk, nx = sizeof x, nd = sizeof dh;
	OK(lm_identity_public_key(alice, pk, &n));
	REQUIRE(n == 32);
	OK(lm_identity_x25519_public(alice, x, &nx));
	OK(lm_identity_dh_public(alice, LM_SUITE_X25519, dh, &nd));
	REQUIRE(nx == 32 && nd == 32 && memcmp(x, dh, 32) == 0);
	nd = sizeof dh;
	OK(lm_identity_dh_public(alice, LM_SUITE_P256, dh, &nd));
	REQUIRE(nd == 33 && (dh[0] == 2 || dh[0] == 3));
	nd = 32;
	CHECK(lm_identity_dh_public(alice, LM_SUITE_P256, dh, &nd), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(nd == 33);
	CHECK(lm_identity_dh_public(alice, 3, dh, &nd), LM_ERR_INVALID_ARG);
	CHECK(lm_identity_dh_public(alice, 0, dh, &nd), LM_ERR_INVALID_ARG);
	CHECK(lm_identity_dh_public(alice, 257, dh, &nd), LM_ERR_INVALID_ARG); /* 257 = 1 mod 256 */
	CHECK(lm_identity_dh_public(alice, 258, dh, &nd), LM_ERR_INVALID_ARG);
	CHECK(lm_identity_dh_public(alice, -255, dh, &nd), LM_ERR_INVALID_ARG);
	CHECK(lm_identity_public_key(alice, NULL, NULL), LM_ERR_INVALID_ARG);
	n = 5;
	CHECK(lm_identity_public_key(alice, NULL, &n), LM_ERR_INVALID_ARG);
	CHECK(lm_identity_public_key(12345, pk, &n), LM_ERR_HANDLE);
	uint32_t mask = 0;
	OK(lm_identity_suites(alice, &mask));
	REQUIRE(mask == (LM_SUITE_BIT(LM_SUITE_X25519) | LM_SUITE_BIT(LM_SUITE_P256)));
	CHECK(lm_identity_suites(alice, NULL), LM_ERR_INVALID_ARG);

	/* Sign and verify. */
	const uint8_t msg[] = "attack at dawn";
	uint8_t sig[64];
	size_t ns = 10;
	CHECK(lm_identity_sign(alice, msg, sizeof msg, sig, &ns), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(ns == LM_SIGNATURE_SIZE);
	OK(lm_identity_sign(alice, msg, sizeof msg, sig, &ns));
	REQUIRE(ns == 64);
	OK(lm_verify(pk, 32, msg, sizeof msg, sig, 64));
	OK(lm_identity_sign(alice, NULL, 0, sig, &ns)); /* empty message */
	OK(lm_verify(pk, 32, NULL, 0, sig, 64));
	CHECK(lm_identity_sign(alice, NULL, 3, sig, &ns), LM_ERR_INVALID_ARG);
	CHECK(lm_verify(pk, 32, msg, sizeof msg, sig, 64), LM_ERR_AUTH);
	OK(lm_identity_sign(alice, msg, sizeof msg, sig, &ns));
	sig[10] ^= 1;
	CHECK(lm_verify(pk, 32, msg, sizeof msg, sig, 64), LM_ERR_AUTH);
	sig[10] ^= 1;
	CHECK(lm_verify(pk, 32, msg, sizeof msg - 1, sig, 64), LM_ERR_AUTH);
	CHECK(lm_verify(pk, 31, msg, sizeof msg, sig, 64), LM_ERR_INVALID_ARG);
	CHECK(lm_verify(pk, 32, msg, sizeof msg, sig, 63), LM_ERR_INVALID_ARG);
	CHECK(lm_verify(NULL, 32, msg, sizeof msg, sig, 64), LM_ERR_INVALID_ARG);
	CHECK(lm_verify(pk, 32, msg, sizeof msg, NULL, 64), LM_ERR_INVALID_ARG);
	uint8_t notpoint[33] = {0x05};
	CHECK(lm_verify(notpoint, 33, msg, sizeof msg, sig, 64), LM_ERR_INVALID_KEY);

	/* from_seed is deterministic; a seed is 32 bytes. */
	uint8_t seed[LM_SEED_SIZE];
	for (int i = 0; i < LM_SEED_SIZE; i++)
		seed[i] = (uint8_t)i;
	uint64_t s1, s2, g;
	OK(lm_identity_from_seed(seed, sizeof seed, &s1));
	OK(lm_identity_from_seed(seed, sizeof seed, &s2));
	lm_secure_wipe(seed, sizeof seed);
	uint8_t p1[32], p2[32];
	size_t l1 = 32, l2 = 32;
	OK(lm_identity_public_key(s1, p1, &l1));
	OK(lm_identity_public_key(s2, p2, &l2));
	REQUIRE(memcmp(p1, p2, 32) == 0);
	CHECK(lm_identity_from_seed(seed, 31, &g), LM_ERR_INVALID_ARG);
	CHECK(lm_identity_from_seed(NULL, 32, &g), LM_ERR_INVALID_ARG);
	CHECK(lm_identity_from_seed(seed, 32, NULL), LM_ERR_INVALID_ARG);
	OK(lm_identity_generate(&g));
	l1 = 32;
	OK(lm_identity_public_key(g, p1, &l1));
	REQUIRE(memcmp(p1, p2, 32) != 0);
	CHECK(lm_identity_generate(NULL), LM_ERR_INVALID_ARG);
	OK(lm_identity_close(s1));
	OK(lm_identity_close(s2));
	OK(lm_identity_close(g));
	CHECK(lm_identity_close(g), LM_ERR_HANDLE);
	CHECK(lm_identity_sign(g, msg, sizeof msg, sig, &ns), LM_ERR_HANDLE);
}

/* Creates id's card into buf (size query first) and parses it. */
static uint64_t make_card(uint64_t id, const char *name, uint8_t *buf, size_t *len) {
	size_t n = 0;
	CHECK(lm_card_create(id, name, NULL, &n), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(n > 0 && n <= *len);
	OK(lm_card_create(id, name, buf, len));
	REQUIRE(*len == n);
	uint64_t c = 0;
	OK(lm_card_parse(buf, *len, &c));
	return c;
}

static void test_cards(uint64_t alice, uint64_t bob, uint64_t *ca, uint64_t *cb) {
	uint8_t abuf[512], bbuf[512];
	size_t alen = sizeof abuf, blen = sizeof bbuf;
	*ca = make_card(alice, "Alice", abuf, &alen);
	*cb = make_card(bob, "Bob \xc3\xa9", bbuf, &blen);

	char s[64];
	size_t n = sizeof s;
	OK(lm_card_name(*cb, s, &n));
	REQUIRE(n == strlen("Bob \xc3\xa9") + 1 && strcmp(s, "Bob \xc3\xa9") == 0);
	n = 3;
	CHECK(lm_card_name(*cb, s, &n), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(n == strlen("Bob \xc3\xa9") + 1);
	n = sizeof s;
	OK(lm_card_fingerprint(*ca, s, &n));
	REQUIRE(n == 20 && strlen(s) == 19 && s[4] == '-' && s[9] == '-' && s[14] == '-');
	char s2[64];
	size_t n2 = sizeof s2;
	OK(lm_card_fingerprint(*cb, s2, &n2));
	REQUIRE(strcmp(s, s2) != 0);
	n = 19;
	CHECK(lm_card_fingerprint(*ca, s, &n), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(n == 20);

	/* Onion addresses: cards without one say "", cards with one carry it. */
	const char *onion = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";
	n = sizeof s;
	OK(lm_card_onion(*ca, s, &n));
	REQUIRE(n == 1 && s[0] == 0);
	OK(lm_onion_check(onion));
	CHECK(lm_onion_check("2GZYXA5IHM7NSGGFXNU52RCK2VV4RVMDLKIU3ZZUI5DU4XYCLEN53WID.onion"), LM_ERR_MALFORMED);
	CHECK(lm_onion_check("2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wia.onion"), LM_ERR_MALFORMED);
	CHECK(lm_onion_check(NULL), LM_ERR_INVALID_ARG);
	uint8_t obuf[512];
	size_t olen = 0;
	CHECK(lm_card_create_with(alice, "Alice", onion, NULL, &olen), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(olen == alen + 65);
	OK(lm_card_create_with(alice, "Alice", onion, obuf, &olen));
	uint64_t co = 0;
	OK(lm_card_parse(obuf, olen, &co));
	char so[80];
	n = sizeof so;
	OK(lm_card_onion(co, so, &n));
	REQUIRE(n == strlen(onion) + 1 && strcmp(so, onion) == 0);
	n = 10;
	CHECK(lm_card_onion(co, so, &n), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(n == strlen(onion) + 1);
	OK(lm_card_close(co));
	olen = sizeof obuf;
	CHECK(lm_card_create_with(alice, "Alice", "nope.onion", obuf, &olen), LM_ERR_BAD_CARD);
	olen = sizeof obuf;
	OK(lm_card_create_with(alice, "Alice", NULL, obuf, &olen));
	REQUIRE(olen == alen && memcmp(obuf, abuf, alen) == 0);

	/* The card's keys are the identity's. */
	uint8_t k1[33], k2[33];
	size_t n1 = sizeof k1, nk = sizeof k2;
	OK(lm_card_signing_key(*ca, k1, &n1));
	OK(lm_identity_public_key(alice, k2, &nk));
	REQUIRE(n1 == 32 && nk == 32 && memcmp(k1, k2, 32) == 0);
	for (int suite = LM_SUITE_X25519; suite <= LM_SUITE_P256; suite++) {
		n1 = sizeof k1;
		nk = sizeof k2;
		OK(lm_card_dh_key(*cb, suite, k1, &n1));
		OK(lm_identity_dh_public(bob, suite, k2, &nk));
		REQUIRE(n1 == nk && memcmp(k1, k2, n1) == 0);
	}
	CHECK(lm_card_dh_key(*cb, 7, k1, &n1), LM_ERR_INVALID_ARG);
	int suite = 0;
	OK(lm_card_choose_suite(*ca, *cb, &suite));
	REQUIRE(suite == LM_SUITE_X25519);
	CHECK(lm_card_choose_suite(*ca, *cb, NULL), LM_ERR_INVALID_ARG);
	CHECK(lm_card_choose_suite(*ca, alice, &suite), LM_ERR_HANDLE);

	/* A signature checks against the card's signing key. */
	const uint8_t m[] = "hello";
	uint8_t sig[64];
	size_t ns = sizeof sig;
	OK(lm_identity_sign(bob, m, sizeof m, sig, &ns));
	n1 = sizeof k1;
	OK(lm_card_signing_key(*cb, k1, &n1));
	OK(lm_verify(k1, n1, m, sizeof m, sig, 64));

	/* Every single-byte change of a card is rejected. */
	int kind = 0;
	OK(lm_packet_kind(abuf, alen, &kind));
	REQUIRE(kind == LM_PACKET_CARD);
	for (size_t i = 0; i < alen; i++) {
		uint64_t h = 0;
		abuf[i] ^= 0x20;
		int rc = lm_card_parse(abuf, alen, &h);
		abuf[i] ^= 0x20;
		if (rc != LM_ERR_BAD_CARD) {
			fprintf(stderr, "card byte %zu flipped: rc %d\n", i, rc);
			exit(1);
		}
		REQUIRE(h == 0);
	}
	uint64_t h = 0;
	CHECK(lm_card_parse(abuf, alen - 1, &h), LM_ERR_BAD_CARD);
	CHECK(lm_card_parse(abuf, 0, &h), LM_ERR_BAD_CARD);
	CHECK(lm_card_parse(NULL, alen, &h), LM_ERR_INVALID_ARG);
	CHECK(lm_card_parse(abuf, alen, NULL), LM_ERR_INVALID_ARG);
	n = sizeof abuf;
	/* Display names (docs/PROTOCOL.md §5): refused names are invalid
	 * arguments; accepted ones are prepared. */
	CHECK(lm_card_create(alice, "", abuf, &n), LM_ERR_INVALID_ARG);
	CHECK(lm_card_create(alice, "tab\there", abuf, &n), LM_ERR_INVALID_ARG);
	CHECK(lm_card_create(alice, "Alice\xe3\x85\xa4", abuf, &n), LM_ERR_INVALID_ARG); /* U+3164 */
	CHECK(lm_card_create(alice, "Alice\xe2\xa0\x80", abuf, &n), LM_ERR_INVALID_ARG); /* U+2800 */
	{
		uint8_t pbuf[512];
		char nm[80];
		size_t pn = sizeof pbuf, nn = sizeof nm;
		uint64_t ph = 0;
		OK(lm_card_create(alice, " Al\xc2\xa0ice ", pbuf, &pn)); /* U+00A0 and spaces */
		OK(lm_card_parse(pbuf, pn, &ph));
		OK(lm_card_name(ph, nm, &nn));
		REQUIRE(strcmp(nm, "Al ice") == 0);
		OK(lm_card_close(ph));
	}
	CHECK(lm_card_create(alice, NULL, abuf, &n), LM_ERR_INVALID_ARG);
	CHECK(lm_card_create(*ca, "x", abuf, &n), LM_ERR_HANDLE);
	OK(lm_card_parse(abuf, alen, &h));
	OK(lm_card_close(h));
	CHECK(lm_card_close(h), LM_ERR_HANDLE);
	CHECK(lm_card_name(h, s, &n), LM_ERR_HANDLE);
}

struct pair {
	uint64_t ini, resp; /* sessions: initiator side, responder side */
};

/* Runs a full handshake of suite from ini_id to the responder of resp_id. */
static struct pair handshake(uint64_t ini_id, uint64_t resp_id, uint64_t responder, int suite) {
	uint8_t rkey[33], ikey[33], msg1[256], msg2[256], peer[33], pl[64];
	size_t rlen = sizeof rkey, ilen = sizeof ikey;
	OK(lm_identity_dh_public(resp_id, suite, rkey, &rlen));
	OK(lm_identity_dh_public(ini_id, suite, ikey, &ilen));
	const uint8_t hello[] = "hello responder", welcome[] = "welcome";

	uint64_t in = 0;
	size_t m1 = 0;
	CHECK(lm_initiate(ini_id, suite, rkey, rlen, hello, sizeof hello, &in, NULL, &m1), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(in == 0 && m1 > 0 && m1 <= sizeof msg1);
	size_t need1 = m1;
	m1 = sizeof msg1;
	OK(lm_initiate(ini_id, suite, rkey, rlen, hello, sizeof hello, &in, msg1, &m1));
	REQUIRE(in != 0 && m1 == need1);
	int kind = 0;
	OK(lm_packet_kind(msg1, m1, &kind));
	REQUIRE(kind == (suite == LM_SUITE_X25519 ? LM_PACKET_INIT_X25519 : LM_PACKET_INIT_P256));

	/* Too-small outputs do not consume msg1: the retry succeeds. */
	struct pair p = {0, 0};
	size_t np = 1, npl = 1, nm2 = 1;
	CHECK(lm_respond(responder, msg1, m1, welcome, sizeof welcome, &p.resp, peer, &np, pl, &npl, msg2, &nm2),
	      LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(p.resp == 0 && np == ilen && npl == sizeof hello && nm2 > sizeof welcome);
	size_t need2 = nm2;
	np = sizeof peer, npl = sizeof pl, nm2 = sizeof msg2;
	OK(lm_respond(responder, msg1, m1, welcome, sizeof welcome, &p.resp, peer, &np, pl, &npl, msg2, &nm2));
	REQUIRE(p.resp != 0 && nm2 == need2);
	REQUIRE(np == ilen && memcmp(peer, ikey, ilen) == 0);
	REQUIRE(npl == sizeof hello && memcmp(pl, hello, sizeof hello) == 0);
	/* The replay is refused. */
	uint64_t s2 = 0;
	np = sizeof peer, npl = sizeof pl, nm2 = sizeof msg2;
	CHECK(lm_respond(responder, msg1, m1, welcome, sizeof welcome, &s2, peer, &np, pl, &npl, msg2, &nm2),
	      LM_ERR_REPLAY);
	REQUIRE(s2 == 0);

	/* msg2: size query, a forgery (initiator stays ready), then the genuine. */
	OK(lm_packet_kind(msg2, need2, &kind));
	REQUIRE(kind == LM_PACKET_RESPONSE);
	size_t npay = 0;
	CHECK(lm_finish(in, msg2, need2, &p.ini, NULL, &npay), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(npay == sizeof welcome && p.ini == 0);
	for (size_t i = 0; i < need2; i++) {
		msg2[i] ^= 1;
		npay = sizeof pl;
		int rc = lm_finish(in, msg2, need2, &p.ini, pl, &npay);
		msg2[i] ^= 1;
		if (rc == LM_OK || rc == LM_ERR_INTERNAL || rc == LM_ERR_BUFFER_TOO_SMALL || p.ini != 0) {
			fprintf(stderr, "msg2 byte %zu flipped: rc %d\n", i, rc);
			exit(1);
		}
	}
	msg2[need2 - 1] ^= 1;
	npay = sizeof pl;
	CHECK(lm_finish(in, msg2, need2, &p.ini, pl, &npay), LM_ERR_AUTH);
	msg2[need2 - 1] ^= 1;
	/* Truncated: v2 packets run to the end of the frame, so the tag fails. */
	CHECK(lm_finish(in, msg2, need2 - 1, &p.ini, pl, &npay), LM_ERR_AUTH);
	npay = sizeof pl;
	OK(lm_finish(in, msg2, need2, &p.ini, pl, &npay));
	REQUIRE(p.ini != 0 && npay == sizeof welcome && memcmp(pl, welcome, npay) == 0);
	npay = sizeof pl;
	uint64_t again = 0;
	CHECK(lm_finish(in, msg2, need2, &again, pl, &npay), LM_ERR_STATE);
	OK(lm_initiator_close(in));
	CHECK(lm_initiator_close(in), LM_ERR_HANDLE);
	CHECK(lm_finish(in, msg2, need2, &again, pl, &npay), LM_ERR_HANDLE);

	/* Both sides agree on the handshake. */
	uint8_t h1[32], h2[32];
	size_t nh1 = 32, nh2 = 32;
	OK(lm_session_handshake_hash(p.ini, h1, &nh1));
	OK(lm_session_handshake_hash(p.resp, h2, &nh2));
	REQUIRE(nh1 == 32 && memcmp(h1, h2, 32) == 0);
	int s1 = 0, s2s = 0;
	OK(lm_session_suite(p.ini, &s1));
	OK(lm_session_suite(p.resp, &s2s));
	REQUIRE(s1 == suite && s2s == suite);
	np = sizeof peer;
	OK(lm_session_peer(p.ini, peer, &np));
	REQUIRE(np == rlen && memcmp(peer, rkey, rlen) == 0);
	np = sizeof peer;
	OK(lm_session_peer(p.resp, peer, &np));
	REQUIRE(np == ilen && memcmp(peer, ikey, ilen) == 0);
	return p;
}

static void send_ok(uint64_t from, uint64_t to, const char *text) {
	uint8_t pkt[512], out[512];
	size_t n = sizeof pkt, m = sizeof out, len = strlen(text);
	OK(lm_session_encrypt(from, (const uint8_t *)text, len, pkt, &n));
	REQUIRE(n == lm_encrypt_size(len));
	OK(lm_session_decrypt(to, pkt, n, out, &m));
	REQUIRE(m == len && memcmp(out, text, len) == 0);
}

static void test_messages(struct pair p) {
	char text[64];
	for (int i = 0; i < 50; i++) {
		snprintf(text, sizeof text, "message %d from the initiator", i);
		send_ok(p.ini, p.resp, text);
		snprintf(text, sizeof text, "message %d from the responder", i);
		send_ok(p.resp, p.ini, text);
	}
	/* An empty message. */
	send_ok(p.ini, p.resp, "");

	/* A too-small buffer burns no message number. */
	const uint8_t pt[] = "numbered";
	uint8_t a[64], b[64], out[64];
	size_t na = sizeof a, nb = 5, no;
	OK(lm_session_encrypt(p.ini, pt, sizeof pt, a, &na));
	CHECK(lm_session_encrypt(p.ini, pt, sizeof pt, b, &nb), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(nb == lm_encrypt_size(sizeof pt));
	OK(lm_session_encrypt(p.ini, pt, sizeof pt, b, &nb));

	/* Out of order, then replays. b first, then a. Decrypting b skips
	 * exactly one key (a's), one 32-byte locked slot: had the too-small
	 * buffer burnt a number, two would be held. */
	no = 3;
	CHECK(lm_session_decrypt(p.resp, b, nb, out, &no), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(no == sizeof pt);
	size_t l0, u0, l1, u1;
	OK(lm_locked_memory(&l0, &u0));
	OK(lm_session_decrypt(p.resp, b, nb, out, &no));
	OK(lm_locked_memory(&l1, &u1));
	REQUIRE(u1 == u0 + 32);
	REQUIRE(no == sizeof pt && memcmp(out, pt, no) == 0);
	no = sizeof out;
	OK(lm_session_decrypt(p.resp, a, na, out, &no));
	REQUIRE(no == sizeof pt && memcmp(out, pt, no) == 0);
	no = sizeof out;
	CHECK(lm_session_decrypt(p.resp, a, na, out, &no), LM_ERR_REPLAY);
	CHECK(lm_session_decrypt(p.resp, b, nb, out, &no), LM_ERR_REPLAY);

	/* The receive window (64 behind) and lookahead (32 ahead): 100
	 * packets; 32 ahead is not recognised, 31 ahead is; three jumps later
	 * the next expected is 93, so 29 is the last one kept and 28 too old. */
	{
		static uint8_t pk[100][32];
		size_t pn[100];
		for (int i = 0; i < 100; i++) {
			pn[i] = sizeof pk[i];
			OK(lm_session_encrypt(p.ini, (const uint8_t *)"w", 1, pk[i], &pn[i]));
		}
		no = sizeof out;
		CHECK(lm_session_decrypt(p.resp, pk[32], pn[32], out, &no), LM_ERR_TOO_OLD);
		OK(lm_session_decrypt(p.resp, pk[31], pn[31], out, &no));
		OK(lm_session_decrypt(p.resp, pk[62], pn[62], out, &no));
		OK(lm_session_decrypt(p.resp, pk[92], pn[92], out, &no));
		CHECK(lm_session_decrypt(p.resp, pk[0], pn[0], out, &no), LM_ERR_TOO_OLD);
		CHECK(lm_session_decrypt(p.resp, pk[28], pn[28], out, &no), LM_ERR_TOO_OLD);
		OK(lm_session_decrypt(p.resp, pk[29], pn[29], out, &no));
		OK(lm_session_decrypt(p.resp, pk[40], pn[40], out, &no));
		REQUIRE(no == 1 && out[0] == 'w');
		no = sizeof out;
		CHECK(lm_session_decrypt(p.resp, pk[40], pn[40], out, &no), LM_ERR_REPLAY);
		OK(lm_session_decrypt(p.resp, pk[91], pn[91], out, &no));
	}

	/* Tampering: every byte of a fresh packet, and the session survives. */
	na = sizeof a;
	OK(lm_session_encrypt(p.resp, pt, sizeof pt, a, &na));
	for (size_t i = 0; i < na; i++) {
		a[i] ^= 0x01;
		no = sizeof out;
		int rc = lm_session_decrypt(p.ini, a, na, out, &no);
		a[i] ^= 0x01;
		if (rc == LM_OK || rc == LM_ERR_INTERNAL || rc == LM_ERR_BUFFER_TOO_SMALL) {
			fprintf(stderr, "transport byte %zu flipped: rc %d\n", i, rc);
			exit(1);
		}
	}
	no = sizeof out;
	OK(lm_session_decrypt(p.ini, a, na, out, &no));
	REQUIRE(no == sizeof pt && memcmp(out, pt, no) == 0);
	a[na - 1] ^= 0x80;
	no = sizeof out;
	CHECK(lm_session_decrypt(p.ini, a, na, out, &no), LM_ERR_REPLAY);

	na = sizeof a;
	OK(lm_session_encrypt(p.resp, pt, sizeof pt, a, &na));
	a[na - 1] ^= 0x80;
	CHECK(lm_session_decrypt(p.ini, a, na, out, &no), LM_ERR_AUTH);
	a[na - 1] ^= 0x80;
	OK(lm_session_decrypt(p.ini, a, na, out, &no));

	/* Wrong inputs. */
	const uint8_t junk[] = {0x82, 0x04, 0x41, 0x00}; /* a version 1 transport packet */
	const uint8_t shortp[] = {LM_PACKET_TRANSPORT, 1, 2, 3};
	no = sizeof out;
	CHECK(lm_session_decrypt(p.ini, junk, sizeof junk, out, &no), LM_ERR_VERSION);
	CHECK(lm_session_decrypt(p.ini, shortp, sizeof shortp, out, &no), LM_ERR_MALFORMED);
	CHECK(lm_session_decrypt(p.ini, junk, 1, out, &no), LM_ERR_MALFORMED);
	CHECK(lm_session_decrypt(p.ini, NULL, 10, out, &no), LM_ERR_INVALID_ARG);
	CHECK(lm_session_decrypt(p.ini, a, na, out, NULL), LM_ERR_INVALID_ARG);
	CHECK(lm_session_encrypt(p.ini, NULL, 4, a, &na), LM_ERR_INVALID_ARG);
	na = 10;
	CHECK(lm_session_encrypt(p.ini, pt, sizeof pt, NULL, &na), LM_ERR_INVALID_ARG);
	static uint8_t big[LM_MAX_PAYLOAD + 1];
	static uint8_t bigout[LM_MAX_PAYLOAD + 64];
	size_t nbig = sizeof bigout;
	CHECK(lm_session_encrypt(p.ini, big, sizeof big, bigout, &nbig), LM_ERR_MALFORMED);
	OK(lm_session_encrypt(p.ini, big, LM_MAX_PAYLOAD, bigout, &nbig));
	REQUIRE(nbig == lm_encrypt_size(LM_MAX_PAYLOAD));
	size_t nplain = sizeof big;
	OK(lm_session_decrypt(p.resp, bigout, nbig, big, &nplain));
	REQUIRE(nplain == LM_MAX_PAYLOAD);
	CHECK(lm_session_encrypt(p.ini + 999, pt, sizeof pt, a, &na), LM_ERR_HANDLE);
	int kind = 0;
	OK(lm_packet_kind(a, na, &kind));
	REQUIRE(kind == LM_PACKET_TRANSPORT);
	const uint8_t future[] = {0x82, 0x09, 0x40};
	CHECK(lm_packet_kind(future, sizeof future, &kind), LM_ERR_VERSION);
	CHECK(lm_packet_kind(junk, 1, &kind), LM_ERR_MALFORMED);
	CHECK(lm_packet_kind(junk, sizeof junk, NULL), LM_ERR_INVALID_ARG);
	CHECK(lm_packet_kind(NULL, 4, &kind), LM_ERR_INVALID_ARG);
}

static void test_handshake_errors(uint64_t alice, uint64_t bob, uint64_t responder) {
	uint8_t rkey[33], msg1[256], msg2[256], peer[33], pl[64];
	size_t rlen = sizeof rkey, m1 = sizeof msg1;
	OK(lm_identity_dh_public(bob, LM_SUITE_X25519, rkey, &rlen));
	uint64_t in = 0, s = 0;
	/* Wrong inputs to lm_initiate. */
	CHECK(lm_initiate(alice, LM_SUITE_X25519, rkey, 31, NULL, 0, &in, msg1, &m1), LM_ERR_INVALID_ARG);
	CHECK(lm_initiate(alice, LM_SUITE_P256, rkey, 32, NULL, 0, &in, msg1, &m1), LM_ERR_INVALID_ARG);
	CHECK(lm_initiate(alice, 9, rkey, 32, NULL, 0, &in, msg1, &m1), LM_ERR_INVALID_ARG);
	CHECK(lm_initiate(alice, LM_SUITE_X25519, NULL, 32, NULL, 0, &in, msg1, &m1), LM_ERR_INVALID_ARG);
	CHECK(lm_initiate(alice, LM_SUITE_X25519, rkey, 32, NULL, 5, &in, msg1, &m1), LM_ERR_INVALID_ARG);
	CHECK(lm_initiate(alice, LM_SUITE_X25519, rkey, 32, NULL, 0, NULL, msg1, &m1), LM_ERR_INVALID_ARG);
	CHECK(lm_initiate(alice, LM_SUITE_X25519, rkey, 32, NULL, 0, &in, msg1, NULL), LM_ERR_INVALID_ARG);
	CHECK(lm_initiate(bob + 777, LM_SUITE_X25519, rkey, 32, NULL, 0, &in, msg1, &m1), LM_ERR_HANDLE);
	uint8_t off[33] = {0x02};
	memset(off + 1, 0xff, 32); /* x >= p */
	CHECK(lm_initiate(alice, LM_SUITE_P256, off, 33, NULL, 0, &in, msg1, &m1), LM_ERR_INVALID_KEY);
	REQUIRE(in == 0);

	/* The largest payloads, P-256 (the larger keys), and one byte more. */
	{
		static uint8_t big[LM_MAX_PAYLOAD + 1], bm1[LM_MAX_PAYLOAD + 200], bm2[LM_MAX_PAYLOAD + 200],
		    bpl[LM_MAX_PAYLOAD];
		uint8_t pk[33], ppeer[33];
		size_t pkl = sizeof pk, bn1 = sizeof bm1;
		uint64_t r = 0;
		OK(lm_identity_dh_public(bob, LM_SUITE_P256, pk, &pkl));
		CHECK(lm_initiate(alice, LM_SUITE_P256, pk, pkl, big, LM_MAX_INIT_PAYLOAD + 1, &in, bm1, &bn1),
		      LM_ERR_MALFORMED);
		OK(lm_initiate(alice, LM_SUITE_P256, pk, pkl, big, LM_MAX_INIT_PAYLOAD, &in, bm1, &bn1));
		OK(lm_responder_new(bob, &r));
		size_t bnp = sizeof ppeer, bnpl = sizeof bpl, bn2 = sizeof bm2;
		CHECK(lm_respond(r, bm1, bn1, big, LM_MAX_PAYLOAD + 1, &s, ppeer, &bnp, bpl, &bnpl, bm2, &bn2),
		      LM_ERR_MALFORMED);
		OK(lm_respond(r, bm1, bn1, big, LM_MAX_PAYLOAD, &s, ppeer, &bnp, bpl, &bnpl, bm2, &bn2));
		REQUIRE(bnpl == LM_MAX_INIT_PAYLOAD);
		uint64_t s2 = 0;
		bnpl = sizeof bpl;
		OK(lm_finish(in, bm2, bn2, &s2, bpl, &bnpl));
		REQUIRE(bnpl == LM_MAX_PAYLOAD);
		OK(lm_session_close(s));
		OK(lm_session_close(s2));
		OK(lm_initiator_close(in));
		OK(lm_responder_close(r));
		s = 0;
		in = 0;
		m1 = sizeof msg1;
	}

	/* A tampered msg1: every byte, the responder unchanged afterwards. */
	OK(lm_initiate(alice, LM_SUITE_X25519, rkey, rlen, NULL, 0, &in, msg1, &m1));
	for (size_t i = 0; i < m1; i++) {
		msg1[i] ^= 0x04;
		size_t np = sizeof peer, npl = sizeof pl, nm2 = sizeof msg2;
		int rc = lm_respond(responder, msg1, m1, NULL, 0, &s, peer, &np, pl, &npl, msg2, &nm2);
		msg1[i] ^= 0x04;
		if (rc == LM_OK || rc == LM_ERR_INTERNAL || rc == LM_ERR_BUFFER_TOO_SMALL || s != 0) {
			fprintf(stderr, "msg1 byte %zu flipped: rc %d\n", i, rc);
			exit(1);
		}
	}
	msg1[m1 - 3] ^= 0x04;
	size_t np = sizeof peer, npl = sizeof pl, nm2 = sizeof msg2;
	CHECK(lm_respond(responder, msg1, m1, NULL, 0, &s, peer, &np, pl, &npl, msg2, &nm2), LM_ERR_AUTH);
	msg1[m1 - 3] ^= 0x04;
	OK(lm_respond(responder, msg1, m1, NULL, 0, &s, peer, &np, pl, &npl, msg2, &nm2));
	REQUIRE(npl == 0);
	OK(lm_session_close(s));
	OK(lm_initiator_close(in));

	/* Wrong inputs to lm_respond. */
	np = sizeof peer, npl = sizeof pl, nm2 = sizeof msg2;
	CHECK(lm_respond(responder, NULL, m1, NULL, 0, &s, peer, &np, pl, &npl, msg2, &nm2), LM_ERR_INVALID_ARG);
	CHECK(lm_respond(responder, msg1, m1, NULL, 0, NULL, peer, &np, pl, &npl, msg2, &nm2), LM_ERR_INVALID_ARG);
	CHECK(lm_respond(responder, msg1, m1, NULL, 0, &s, peer, NULL, pl, &npl, msg2, &nm2), LM_ERR_INVALID_ARG);
	CHECK(lm_respond(responder, msg1, m1, NULL, 0, &s, NULL, &np, pl, &npl, msg2, &nm2), LM_ERR_INVALID_ARG);
	CHECK(lm_respond(alice, msg1, m1, NULL, 0, &s, peer, &np, pl, &npl, msg2, &nm2), LM_ERR_HANDLE);
	CHECK(lm_respond(responder, msg1, 2, NULL, 0, &s, peer, &np, pl, &npl, msg2, &nm2), LM_ERR_MALFORMED);
	CHECK(lm_respond(responder, msg2, nm2, NULL, 0, &s, peer, &np, pl, &npl, msg2, &nm2), LM_ERR_MALFORMED);
	CHECK(lm_responder_new(alice, NULL), LM_ERR_INVALID_ARG);
	CHECK(lm_responder_new(responder, &s), LM_ERR_HANDLE);

	/* An allow list: alice is refused until added. */
	uint64_t strict = 0, carol = 0;
	OK(lm_responder_new(bob, &strict));
	OK(lm_identity_generate(&carol));
	uint8_t ck[33];
	size_t ckl = sizeof ck;
	OK(lm_identity_dh_public(carol, LM_SUITE_X25519, ck, &ckl));
	OK(lm_responder_allow(strict, LM_SUITE_X25519, ck, ckl));
	CHECK(lm_responder_allow(strict, LM_SUITE_X25519, ck, 33), LM_ERR_INVALID_ARG);
	CHECK(lm_responder_allow(strict, LM_SUITE_X25519, NULL, 32), LM_ERR_INVALID_ARG);
	CHECK(lm_responder_allow(alice, LM_SUITE_X25519, ck, ckl), LM_ERR_HANDLE);
	m1 = sizeof msg1;
	OK(lm_initiate(alice, LM_SUITE_X25519, rkey, rlen, NULL, 0, &in, msg1, &m1));
	np = sizeof peer, npl = sizeof pl, nm2 = sizeof msg2;
	CHECK(lm_respond(strict, msg1, m1, NULL, 0, &s, peer, &np, pl, &npl, msg2, &nm2), LM_ERR_UNKNOWN_PEER);
	uint8_t ak[33];
	size_t akl = sizeof ak;
	OK(lm_identity_dh_public(alice, LM_SUITE_X25519, ak, &akl));
	OK(lm_responder_allow(strict, LM_SUITE_X25519, ak, akl));
	OK(lm_respond(strict, msg1, m1, NULL, 0, &s, peer, &np, pl, &npl, msg2, &nm2));
	OK(lm_session_close(s));
	OK(lm_initiator_close(in));

	/* A responder whose identity is closed fails cleanly. */
	uint8_t cpk[33];
	size_t cpl = sizeof cpk;
	OK(lm_identity_dh_public(carol, LM_SUITE_X25519, cpk, &cpl));
	uint64_t rc_carol = 0;
	OK(lm_responder_new(carol, &rc_carol));
	m1 = sizeof msg1;
	OK(lm_initiate(alice, LM_SUITE_X25519, cpk, cpl, NULL, 0, &in, msg1, &m1));
	OK(lm_identity_close(carol));
	np = sizeof peer, npl = sizeof pl, nm2 = sizeof msg2;
	CHECK(lm_respond(rc_carol, msg1, m1, NULL, 0, &s, peer, &np, pl, &npl, msg2, &nm2), LM_ERR_STATE);
	OK(lm_initiator_close(in));
	OK(lm_responder_close(rc_carol));
	OK(lm_responder_close(strict));
	CHECK(lm_responder_close(strict), LM_ERR_HANDLE);
}

/* Sealed data: opens only with the identity and purpose it was sealed for;
 * sizes are reported before any work; damage is refused. */
static void test_seal(uint64_t alice, uint64_t bob) {
	static const uint8_t key[64] = "an onion service key, 64 bytes of it, for the sealing test....";
	uint8_t sealed[64 + LM_SEAL_MAX_OVERHEAD], opened[80];
	size_t n = 0, m = sizeof opened;
	CHECK(lm_seal(alice, "onion-key", key, sizeof key, NULL, &n), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(n > sizeof key && n <= sizeof sealed);
	n = sizeof sealed;
	OK(lm_seal(alice, "onion-key", key, sizeof key, sealed, &n));
	for (size_t i = 0; i + 16 <= n; i++)
		REQUIRE(memcmp(sealed + i, key, 16) != 0);
	size_t need = 0;
	CHECK(lm_unseal(alice, "onion-key", sealed, n, NULL, &need), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(need == sizeof key);
	OK(lm_unseal(alice, "onion-key", sealed, n, opened, &m));
	REQUIRE(m == sizeof key && memcmp(opened, key, m) == 0);
	lm_secure_wipe(opened, sizeof opened);
	m = sizeof opened;
	CHECK(lm_unseal(bob, "onion-key", sealed, n, opened, &m), LM_ERR_AUTH);
	CHECK(lm_unseal(alice, "other", sealed, n, opened, &m), LM_ERR_AUTH);
	CHECK(lm_unseal(alice, "state", sealed, n, opened, &m), LM_ERR_AUTH);
	REQUIRE(m == sizeof opened); /* unchanged on error */
	sealed[n - 1] ^= 1;
	CHECK(lm_unseal(alice, "onion-key", sealed, n, opened, &m), LM_ERR_AUTH);
	sealed[n - 1] ^= 1;
	sealed[0] ^= 1;
	CHECK(lm_unseal(alice, "onion-key", sealed, n, opened, &m), LM_ERR_MALFORMED);
	sealed[0] ^= 1;
	CHECK(lm_unseal(alice, "onion-key", sealed, 20, opened, &m), LM_ERR_MALFORMED);
	CHECK(lm_seal(alice, "Onion Key", key, sizeof key, sealed, &n), LM_ERR_INVALID_ARG);
	CHECK(lm_seal(alice, "", key, sizeof key, sealed, &n), LM_ERR_INVALID_ARG);
	CHECK(lm_seal(alice, NULL, key, sizeof key, sealed, &n), LM_ERR_INVALID_ARG);
	CHECK(lm_seal(alice, "onion-key", NULL, 5, sealed, &n), LM_ERR_INVALID_ARG);
	CHECK(lm_seal(alice + 1000, "onion-key", key, sizeof key, sealed, &n), LM_ERR_HANDLE);
	CHECK(lm_unseal(alice, "onion-key", sealed, n, opened, NULL), LM_ERR_INVALID_ARG);
}

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: basic DIR\n");
		return 2;
	}
	test_library();
	uint64_t alice = 0, bob = 0;
	test_keystore(argv[1], &alice, &bob);
	test_identity(alice);
	test_seal(alice, bob);
	uint64_t ca, cb;
	test_cards(alice, bob, &ca, &cb);

	uint64_t responder = 0;
	OK(lm_responder_new(bob, &responder));
	int suite = 0;
	OK(lm_card_choose_suite(ca, cb, &suite));
	struct pair x = handshake(alice, bob, responder, suite);
	test_messages(x);
	struct pair p = handshake(alice, bob, responder, LM_SUITE_P256);
	test_messages(p);
	/* And the other way round. */
	uint64_t responder_a = 0;
	OK(lm_responder_new(alice, &responder_a));
	struct pair y = handshake(bob, alice, responder_a, LM_SUITE_X25519);
	send_ok(y.ini, y.resp, "from bob");
	send_ok(y.resp, y.ini, "from alice");
	test_handshake_errors(alice, bob, responder);

	/* Close everything; every second close is refused. */
	uint64_t sessions[] = {x.ini, x.resp, p.ini, p.resp, y.ini, y.resp};
	for (size_t i = 0; i < sizeof sessions / sizeof sessions[0]; i++) {
		OK(lm_session_close(sessions[i]));
		CHECK(lm_session_close(sessions[i]), LM_ERR_HANDLE);
	}
	uint8_t buf[64];
	size_t n = sizeof buf;
	CHECK(lm_session_encrypt(x.ini, buf, 1, buf, &n), LM_ERR_HANDLE);
	CHECK(lm_session_peer(x.ini, buf, &n), LM_ERR_HANDLE);
	OK(lm_responder_close(responder));
	OK(lm_responder_close(responder_a));
	OK(lm_card_close(ca));
	OK(lm_card_close(cb));
	CHECK(lm_card_close(cb), LM_ERR_HANDLE);
	OK(lm_identity_close(alice));
	OK(lm_identity_close(bob));
	CHECK(lm_identity_close(bob), LM_ERR_HANDLE);
	CHECK(lm_session_close(0), LM_ERR_HANDLE);
	CHECK(lm_session_close(UINT64_MAX), LM_ERR_HANDLE);

	size_t locked = 0, in_use = 1;
	OK(lm_locked_memory(&locked, &in_use));
	REQUIRE(in_use == 0 && locked > 0);
	printf("basic: ok\n");
	return 0;
}
