// Per-thread last-error storage. A cgo export runs on the OS thread that
// called it and C functions it calls run on that same thread, so a C
// __thread variable is the caller's own: no Go state is keyed by thread.
#include <string.h>
#include "internal.h"

#define LM_ERRMAX 256

static __thread char lm_err[LM_ERRMAX];
static __thread size_t lm_errlen;

void lm__set_error(const char *msg, size_t n) {
	if (n > LM_ERRMAX - 1)
		n = LM_ERRMAX - 1;
	if (n > 0)
		memcpy(lm_err, msg, n);
	lm_err[n] = 0;
	lm_errlen = n;
}

size_t lm__error_len(void) { return lm_errlen; }

void lm__error_copy(char *out) {
	memcpy(out, lm_err, lm_errlen);
	out[lm_errlen] = 0;
}

void lm__wipe(void *p, size_t n) {
	if (p == NULL || n == 0)
		return;
	memset(p, 0, n);
	// The asm barrier tells the compiler the zeroed memory is observed.
	__asm__ __volatile__("" : : "r"(p) : "memory");
}
