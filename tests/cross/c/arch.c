/* arch.c: what a C program built for one architecture sees of libloramesh:
 * the build's feature bits and text, the width of a pointer, and the layout
 * of struct lm_event as this architecture's C compiler lays it out (the
 * Python binding's ctypes copy must agree; tests/cross checks it under the
 * emulated interpreter). Prints "key value" lines. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "loramesh.h"

int main(void) {
	uint32_t f = 0xffffffffu;
	if (lm_features(NULL) != LM_ERR_INVALID_ARG || lm_features(&f) != LM_OK || f == 0xffffffffu) {
		fprintf(stderr, "lm_features misbehaves\n");
		return 1;
	}
	const char *text = lm_features_string();
	if (!text || text != lm_features_string()) {
		fprintf(stderr, "lm_features_string is not one static string\n");
		return 1;
	}
	printf("features %u\n", (unsigned)f);
	printf("text %s\n", text);
	printf("pointer_bits %u\n", (unsigned)(sizeof(void *) * 8));
	printf("size_t_bits %u\n", (unsigned)(sizeof(size_t) * 8));
	printf("layout size=%zu kind=%zu state=%zu msg_id=%zu seq=%zu time_ms=%zu sent_ms=%zu verified=%zu "
	       "contact=%zu link=%zu addr=%zu fingerprint=%zu\n",
	       sizeof(lm_event), offsetof(lm_event, kind), offsetof(lm_event, state), offsetof(lm_event, msg_id),
	       offsetof(lm_event, seq), offsetof(lm_event, time_ms), offsetof(lm_event, sent_ms),
	       offsetof(lm_event, verified), offsetof(lm_event, contact), offsetof(lm_event, link),
	       offsetof(lm_event, addr), offsetof(lm_event, fingerprint));
	/* A size_t past 2^31 as an input length: refused as too long on every
	 * architecture (the 64 MiB input bound), never wrapped into a small one. */
	uint8_t sig[LM_SIGNATURE_SIZE] = {0}, key[32] = {0};
	int rc = lm_verify(key, sizeof key, sig, (size_t)1 << 31 | 5, sig, sizeof sig);
	printf("huge_input %d\n", rc);
	return 0;
}
