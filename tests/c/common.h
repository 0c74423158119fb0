/* Shared helpers for the libloramesh C tests. */
#ifndef LM_TEST_COMMON_H
#define LM_TEST_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loramesh.h"

static inline void lm_test_fail(const char *file, int line, const char *expr, int rc, int want) {
	char msg[256];
	size_t n = sizeof msg;
	if (lm_last_error(msg, &n) != LM_OK)
		strcpy(msg, "(no message)");
	fprintf(stderr, "%s:%d: %s = %d (%s: %s), want %d (%s)\n", file, line, expr, rc, lm_strerror(rc), msg, want,
		lm_strerror(want));
	exit(1);
}

/* CHECK(expr, code): expr must return code. OK(expr): LM_OK. */
#define CHECK(expr, want)                                                  \
	do {                                                               \
		if (getenv("LM_TEST_TRACE"))                               \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #expr); \
		int rc_ = (expr);                                          \
		if (rc_ != (want))                                         \
			lm_test_fail(__FILE__, __LINE__, #expr, rc_, (want)); \
	} while (0)
#define OK(expr) CHECK(expr, LM_OK)

#define REQUIRE(cond)                                                                \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "%s:%d: requirement failed: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                     \
		}                                                                    \
	} while (0)

/* The message of this thread's last failure. */
static inline const char *last_error(void) {
	static __thread char msg[256];
	size_t n = sizeof msg;
	if (lm_last_error(msg, &n) != LM_OK)
		return "(lm_last_error failed)";
	return msg;
}

/* A complete handshake of suite from ini_id to the identity resp_id answered
 * by responder: two sessions, and both payloads checked. */
static inline void lm_test_handshake(uint64_t ini_id, uint64_t resp_id, uint64_t responder, int suite,
				     uint64_t *s_ini, uint64_t *s_resp) {
	uint8_t rkey[LM_MAX_PUBLIC_KEY_SIZE], ikey[LM_MAX_PUBLIC_KEY_SIZE], peer[LM_MAX_PUBLIC_KEY_SIZE];
	uint8_t msg1[256], msg2[256], pl[64];
	size_t rlen = sizeof rkey, ilen = sizeof ikey, m1 = sizeof msg1, m2 = sizeof msg2, np = sizeof peer,
	       npl = sizeof pl;
	static const uint8_t hello[] = "hello", welcome[] = "welcome";
	uint64_t in = 0;
	OK(lm_identity_dh_public(resp_id, suite, rkey, &rlen));
	OK(lm_identity_dh_public(ini_id, suite, ikey, &ilen));
	OK(lm_initiate(ini_id, suite, rkey, rlen, hello, sizeof hello, &in, msg1, &m1));
	OK(lm_respond(responder, msg1, m1, welcome, sizeof welcome, s_resp, peer, &np, pl, &npl, msg2, &m2));
	REQUIRE(np == ilen && memcmp(peer, ikey, ilen) == 0);
	REQUIRE(npl == sizeof hello && memcmp(pl, hello, npl) == 0);
	npl = sizeof pl;
	OK(lm_finish(in, msg2, m2, s_ini, pl, &npl));
	REQUIRE(npl == sizeof welcome && memcmp(pl, welcome, npl) == 0);
	OK(lm_initiator_close(in));
}

/* Sends text from session from to session to and checks what arrives. */
static inline void lm_test_send(uint64_t from, uint64_t to, const char *text) {
	uint8_t pkt[512], out[512];
	size_t n = sizeof pkt, m = sizeof out, len = strlen(text);
	OK(lm_session_encrypt(from, (const uint8_t *)text, len, pkt, &n));
	REQUIRE(n == lm_encrypt_size(len));
	OK(lm_session_decrypt(to, pkt, n, out, &m));
	REQUIRE(m == len && memcmp(out, text, len) == 0);
}

#endif
