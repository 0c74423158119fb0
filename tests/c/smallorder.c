/* Issue 16 #5: lm_verify refuses small-order and non-canonical Ed25519
 * public keys. With the key 01 00..00 (the neutral point) the signature
 * R = 01 00..00, S = 0 satisfies the Ed25519 equation for every message;
 * it must be refused for each of 1,000 messages, as must the same forgery
 * under the neutral point's non-canonical encoding (y = p + 1) and under the
 * other points of small order. A genuine key and signature still verify, so
 * the refusals are not of everything. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

static void hex(const char *s, uint8_t out[32]) {
	for (int i = 0; i < 32; i++)
		sscanf(s + 2 * i, "%2hhx", &out[i]);
}

int main(void) {
	static const char *keys[] = {
		"0100000000000000000000000000000000000000000000000000000000000000", /* neutral point */
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* neutral point, y = p + 1 */
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* order 2 */
		"0000000000000000000000000000000000000000000000000000000000000000", /* order 4 */
		"0000000000000000000000000000000000000000000000000000000000000080",
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", /* order 8 */
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* y = p */
	};
	uint8_t sig[64] = {1}; /* R = the neutral point, S = 0 */
	int accepted = 0, tried = 0;
	for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
		uint8_t key[32];
		hex(keys[k], key);
		for (uint32_t i = 0; i < 1000; i++) {
			uint8_t msg[4] = {i >> 24, i >> 16, i >> 8, i};
			int rc = lm_verify(key, 32, msg, sizeof msg, sig, 64);
			tried++;
			if (rc == LM_OK)
				accepted++;
			else if (rc != LM_ERR_INVALID_KEY) {
				fprintf(stderr, "key %s message %u: rc %d (%s), want LM_ERR_INVALID_KEY\n", keys[k], i, rc,
					last_error());
				return 1;
			}
		}
	}
	printf("%d of %d forged signatures under small-order keys accepted\n", accepted, tried);
	REQUIRE(accepted == 0);

	uint64_t id = 0;
	uint8_t pub[32], good[64];
	size_t pn = sizeof pub, sn = sizeof good;
	static const uint8_t m[] = "a genuine message";
	OK(lm_identity_generate(&id));
	OK(lm_identity_public_key(id, pub, &pn));
	OK(lm_identity_sign(id, m, sizeof m, good, &sn));
	OK(lm_verify(pub, pn, m, sizeof m, good, sn));
	OK(lm_identity_close(id));
	return 0;
}
