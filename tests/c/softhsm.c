/* softhsm.c: an identity on a SoftHSM2 token talking to a memory identity.
 * Usage: softhsm URI (a freshly initialised token, no identities), with the
 * user PIN in the environment variable LM_TEST_PIN. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

int main(int argc, char **argv) {
	const char *pin = getenv("LM_TEST_PIN");
	if (argc != 2 || pin == NULL) {
		fprintf(stderr, "usage: LM_TEST_PIN=... softhsm URI\n");
		return 2;
	}
	const char *uri = argv[1];
	uint64_t ks = 0, hsm = 0, again = 0, mem = 0;

	/* Wrong inputs, a wrong PIN. */
	static const uint8_t wrong[] = "not-the-pin";
	CHECK(lm_keystore_open_pkcs11(uri, wrong, sizeof wrong - 1, &ks), LM_ERR_PIN);
	CHECK(lm_keystore_open_pkcs11(NULL, (const uint8_t *)pin, strlen(pin), &ks), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_open_pkcs11("pkcs11:token=x?module-name=softhsm2", (const uint8_t *)pin, strlen(pin), &ks),
	      LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_open_pkcs11(uri, (const uint8_t *)pin, strlen(pin), NULL), LM_ERR_INVALID_ARG);
	REQUIRE(ks == 0);

	OK(lm_keystore_open_pkcs11(uri, (const uint8_t *)pin, strlen(pin), &ks));
	OK(lm_keystore_generate(ks, "hsm", 0, &hsm));
	CHECK(lm_keystore_generate(ks, "hsm", 0, &again), LM_ERR_EXISTS);
	char list[64];
	size_t n = sizeof list;
	OK(lm_keystore_list(ks, list, &n));
	REQUIRE(strcmp(list, "hsm\n") == 0);

	/* A hardware identity signs with P-256: 33-byte key, ECDSA. */
	uint8_t pub[33];
	size_t np = sizeof pub;
	OK(lm_identity_public_key(hsm, pub, &np));
	REQUIRE(np == 33 && (pub[0] == 2 || pub[0] == 3));
	uint8_t x[33];
	size_t nx = sizeof x;
	CHECK(lm_identity_x25519_public(hsm, x, &nx), LM_ERR_UNSUPPORTED);
	uint32_t mask = 0;
	OK(lm_identity_suites(hsm, &mask));
	REQUIRE(mask & LM_SUITE_BIT(LM_SUITE_P256));
	const uint8_t m[] = "signed on the token";
	uint8_t sig[64];
	size_t ns = sizeof sig;
	OK(lm_identity_sign(hsm, m, sizeof m, sig, &ns));
	REQUIRE(ns == 64);
	OK(lm_verify(pub, 33, m, sizeof m, sig, 64));
	sig[40] ^= 1;
	CHECK(lm_verify(pub, 33, m, sizeof m, sig, 64), LM_ERR_AUTH);

	/* Cards both ways. */
	OK(lm_identity_generate(&mem));
	uint8_t cbuf[512], mbuf[512];
	size_t cn = sizeof cbuf, mn = sizeof mbuf;
	uint64_t chsm = 0, cmem = 0;
	OK(lm_card_create(hsm, "Token", cbuf, &cn));
	OK(lm_card_create(mem, "Memory", mbuf, &mn));
	OK(lm_card_parse(cbuf, cn, &chsm));
	OK(lm_card_parse(mbuf, mn, &cmem));
	uint8_t ck[33];
	size_t nck = sizeof ck;
	OK(lm_card_signing_key(chsm, ck, &nck));
	REQUIRE(nck == 33 && memcmp(ck, pub, 33) == 0);
	int suite = 0;
	OK(lm_card_choose_suite(chsm, cmem, &suite));
	printf("softhsm: token suites mask %u, chosen suite %d\n", mask, suite);

	/* Handshakes in both directions with the chosen suite and with P-256. */
	uint64_t r_hsm = 0, r_mem = 0;
	OK(lm_responder_new(hsm, &r_hsm));
	OK(lm_responder_new(mem, &r_mem));
	int suites[2] = {suite, LM_SUITE_P256};
	for (int k = 0; k < 2; k++) {
		uint64_t a, b;
		lm_test_handshake(hsm, mem, r_mem, suites[k], &a, &b);
		for (int i = 0; i < 20; i++) {
			lm_test_send(a, b, "token to memory");
			lm_test_send(b, a, "memory to token");
		}
		OK(lm_session_close(a));
		OK(lm_session_close(b));
		lm_test_handshake(mem, hsm, r_hsm, suites[k], &a, &b);
		lm_test_send(a, b, "memory to token, initiating");
		lm_test_send(b, a, "token to memory, responding");
		OK(lm_session_close(a));
		OK(lm_session_close(b));
	}

	/* Reopen by name: same key. Then delete. */
	OK(lm_keystore_load(ks, "hsm", &again));
	uint8_t pub2[33];
	size_t np2 = sizeof pub2;
	OK(lm_identity_public_key(again, pub2, &np2));
	REQUIRE(np2 == 33 && memcmp(pub, pub2, 33) == 0);
	OK(lm_identity_close(again));
	CHECK(lm_keystore_load(ks, "nobody", &again), LM_ERR_NOT_FOUND);
	OK(lm_responder_close(r_hsm));
	OK(lm_responder_close(r_mem));
	OK(lm_card_close(chsm));
	OK(lm_card_close(cmem));
	OK(lm_identity_close(hsm));
	OK(lm_identity_close(mem));
	OK(lm_keystore_delete(ks, "hsm"));
	n = sizeof list;
	OK(lm_keystore_list(ks, list, &n));
	REQUIRE(n == 1 && list[0] == 0);
	OK(lm_keystore_close(ks));
	CHECK(lm_keystore_close(ks), LM_ERR_HANDLE);
	printf("softhsm: ok\n");
	return 0;
}
