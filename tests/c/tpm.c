/* tpm.c: an identity in a TPM (swtpm) talking to a memory identity.
 * Usage: tpm DEVICE KEYDIR, DEVICE as lm_keystore_open_tpm takes it (the
 * test driver passes "unix:SOCKET" of a fresh swtpm). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const uint8_t auth[] = "4321";

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: tpm DEVICE KEYDIR\n");
		return 2;
	}
	const char *dev = argv[1], *dir = argv[2];
	uint64_t ks = 0, id = 0, mem = 0;

	CHECK(lm_keystore_open_tpm(dev, NULL, auth, 4, &ks), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_open_tpm(dev, dir, auth, 33, &ks), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_open_tpm(dev, dir, NULL, 4, &ks), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_open_tpm("tcp:nowhere", dir, auth, 4, &ks), LM_ERR_INVALID_ARG);
	CHECK(lm_keystore_open_tpm("/nonexistent/tpm", dir, auth, 4, &ks), LM_ERR_NOT_FOUND);
	REQUIRE(ks == 0);

	OK(lm_keystore_open_tpm(dev, dir, auth, 4, &ks));
	OK(lm_keystore_generate(ks, "tpmid", 0, &id));
	CHECK(lm_keystore_generate(ks, "tpmid2", LM_SUITE_BIT(LM_SUITE_X25519), &mem), LM_ERR_UNSUPPORTED);
	char list[64];
	size_t n = sizeof list;
	OK(lm_keystore_list(ks, list, &n));
	REQUIRE(strcmp(list, "tpmid\n") == 0);

	uint8_t pub[33];
	size_t np = sizeof pub;
	OK(lm_identity_public_key(id, pub, &np));
	REQUIRE(np == 33);
	uint32_t mask = 0;
	OK(lm_identity_suites(id, &mask));
	REQUIRE(mask == LM_SUITE_BIT(LM_SUITE_P256));
	const uint8_t m[] = "signed in the TPM";
	uint8_t sig[64];
	size_t ns = sizeof sig;
	OK(lm_identity_sign(id, m, sizeof m, sig, &ns));
	OK(lm_verify(pub, 33, m, sizeof m, sig, 64));

	/* Card and handshakes with a memory identity, both directions. */
	OK(lm_identity_generate(&mem));
	uint8_t cbuf[512], mbuf[512];
	size_t cn = sizeof cbuf, mn = sizeof mbuf;
	uint64_t ct = 0, cm = 0;
	OK(lm_card_create(id, "TPM", cbuf, &cn));
	OK(lm_card_create(mem, "Memory", mbuf, &mn));
	OK(lm_card_parse(cbuf, cn, &ct));
	OK(lm_card_parse(mbuf, mn, &cm));
	int suite = 0;
	OK(lm_card_choose_suite(ct, cm, &suite));
	REQUIRE(suite == LM_SUITE_P256);
	uint64_t r_tpm = 0, r_mem = 0, a, b;
	OK(lm_responder_new(id, &r_tpm));
	OK(lm_responder_new(mem, &r_mem));
	lm_test_handshake(id, mem, r_mem, suite, &a, &b);
	for (int i = 0; i < 10; i++) {
		lm_test_send(a, b, "tpm to memory");
		lm_test_send(b, a, "memory to tpm");
	}
	OK(lm_session_close(a));
	OK(lm_session_close(b));
	lm_test_handshake(mem, id, r_tpm, suite, &a, &b);
	lm_test_send(a, b, "memory to tpm, initiating");
	lm_test_send(b, a, "tpm to memory, responding");
	OK(lm_session_close(a));
	OK(lm_session_close(b));
	OK(lm_responder_close(r_tpm));
	OK(lm_responder_close(r_mem));
	OK(lm_card_close(ct));
	OK(lm_card_close(cm));
	OK(lm_identity_close(mem));
	OK(lm_identity_close(id));
	OK(lm_keystore_close(ks));

	/* One wrong auth value (the dictionary-attack counter allows a few). */
	static const uint8_t wrong[] = "0000";
	OK(lm_keystore_open_tpm(dev, dir, wrong, 4, &ks));
	int rc = lm_keystore_load(ks, "tpmid", &id);
	if (rc == LM_OK) {
		ns = sizeof sig;
		CHECK(lm_identity_sign(id, m, sizeof m, sig, &ns), LM_ERR_PIN);
		OK(lm_identity_close(id));
	} else {
		CHECK(rc, LM_ERR_PIN);
	}
	OK(lm_keystore_close(ks));

	/* The right one again; then delete. */
	OK(lm_keystore_open_tpm(dev, dir, auth, 4, &ks));
	OK(lm_keystore_load(ks, "tpmid", &id));
	ns = sizeof sig;
	OK(lm_identity_sign(id, m, sizeof m, sig, &ns));
	OK(lm_verify(pub, 33, m, sizeof m, sig, 64));
	OK(lm_identity_close(id));
	OK(lm_keystore_delete(ks, "tpmid"));
	CHECK(lm_keystore_load(ks, "tpmid", &id), LM_ERR_NOT_FOUND);
	OK(lm_keystore_close(ks));
	printf("tpm: ok\n");
	return 0;
}
