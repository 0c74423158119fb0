/* threads.c: 8 threads hammer one keystore identity, one responder, four
 * shared session pairs and the handle table at once; every message is
 * checked, and each thread's lm_last_error stays its own.
 * Usage: threads DIR (an empty scratch directory). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define NTHREADS 8
#define NPAIRS 4
#define ITER 200

static uint64_t shared_id, peer_id, responder_shared, responder_peer, ks;
static uint8_t shared_pub[32];
static struct {
	uint64_t ini, resp;
} pairs[NPAIRS];

static void *worker(void *arg) {
	int t = (int)(intptr_t)arg;
	char text[128], missing[32];
	snprintf(missing, sizeof missing, "missing-%d", t);
	for (int i = 0; i < ITER; i++) {
		/* The shared identity signs; everyone verifies. */
		snprintf(text, sizeof text, "thread %d message %d", t, i);
		uint8_t sig[64];
		size_t ns = sizeof sig;
		OK(lm_identity_sign(shared_id, (const uint8_t *)text, strlen(text), sig, &ns));
		OK(lm_verify(shared_pub, 32, (const uint8_t *)text, strlen(text), sig, ns));

		/* Shared session pairs, both directions, messages checked. */
		int p = (t + i) % NPAIRS;
		lm_test_send(pairs[p].ini, pairs[p].resp, text);
		lm_test_send(pairs[p].resp, pairs[p].ini, text);

		/* Fresh handshakes through the shared responders. */
		if (i % 6 == t % 6) {
			uint64_t a, b;
			int suite = (i & 1) ? LM_SUITE_P256 : LM_SUITE_X25519;
			lm_test_handshake(shared_id, peer_id, responder_peer, suite, &a, &b);
			lm_test_send(a, b, text);
			lm_test_send(b, a, text);
			OK(lm_session_close(a));
			OK(lm_session_close(b));
			lm_test_handshake(peer_id, shared_id, responder_shared, suite, &a, &b);
			lm_test_send(a, b, text);
			OK(lm_session_close(a));
			OK(lm_session_close(b));
		}

		/* Handle churn: cards made, parsed and closed. */
		uint8_t card[512];
		size_t nc = sizeof card;
		uint64_t c = 0;
		OK(lm_card_create(shared_id, "shared", card, &nc));
		OK(lm_card_parse(card, nc, &c));
		OK(lm_card_close(c));
		CHECK(lm_card_close(c), LM_ERR_HANDLE);

		/* This thread's error message survives other threads' calls. */
		uint64_t none = 0;
		CHECK(lm_keystore_load(ks, missing, &none), LM_ERR_NOT_FOUND);
		sched_yield();
		const char *m = last_error();
		if (!strstr(m, missing)) {
			fprintf(stderr, "thread %d: last error %s, want one naming %s\n", t, m, missing);
			exit(1);
		}
	}
	return NULL;
}

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: threads DIR\n");
		return 2;
	}
	static const uint8_t pass[] = "threads";
	OK(lm_keystore_open_memory(argv[1], pass, sizeof pass, 1, 64, 1, &ks));
	OK(lm_keystore_generate(ks, "shared", 0, &shared_id));
	OK(lm_keystore_generate(ks, "peer", 0, &peer_id));
	size_t n = sizeof shared_pub;
	OK(lm_identity_public_key(shared_id, shared_pub, &n));
	OK(lm_responder_new(shared_id, &responder_shared));
	OK(lm_responder_new(peer_id, &responder_peer));
	for (int p = 0; p < NPAIRS; p++)
		lm_test_handshake(shared_id, peer_id, responder_peer, p % 2 ? LM_SUITE_P256 : LM_SUITE_X25519,
				  &pairs[p].ini, &pairs[p].resp);

	pthread_t th[NTHREADS];
	for (int t = 0; t < NTHREADS; t++)
		REQUIRE(pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t) == 0);
	for (int t = 0; t < NTHREADS; t++)
		REQUIRE(pthread_join(th[t], NULL) == 0);

	/* Each pair carried NTHREADS*ITER/NPAIRS messages each way: the next
	 * one still goes through. */
	for (int p = 0; p < NPAIRS; p++) {
		lm_test_send(pairs[p].ini, pairs[p].resp, "after");
		OK(lm_session_close(pairs[p].ini));
		OK(lm_session_close(pairs[p].resp));
	}
	OK(lm_responder_close(responder_shared));
	OK(lm_responder_close(responder_peer));
	OK(lm_identity_close(shared_id));
	OK(lm_identity_close(peer_id));
	OK(lm_keystore_close(ks));
	size_t locked = 0, in_use = 1;
	OK(lm_locked_memory(&locked, &in_use));
	REQUIRE(in_use == 0);
	printf("threads: ok (%d threads x %d iterations)\n", NTHREADS, ITER);
	return 0;
}
