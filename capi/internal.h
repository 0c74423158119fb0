/* Helpers implemented in lasterr.c for the Go side of capi; not part of the
 * ABI (hidden visibility, absent from the dynamic symbol table). */
#ifndef LM_INTERNAL_H
#define LM_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

#define LM_INTERNAL __attribute__((visibility("hidden")))

/* Stores the calling thread's last error message (truncated to 255 bytes). */
LM_INTERNAL void lm__set_error(const char *msg, size_t n);
/* Length of the calling thread's message, without the NUL. */
LM_INTERNAL size_t lm__error_len(void);
/* Copies the message and its NUL into out (cap >= lm__error_len()+1). */
LM_INTERNAL void lm__error_copy(char *out);
/* memset that the compiler may not elide. */
LM_INTERNAL void lm__wipe(void *p, size_t n);
#endif
