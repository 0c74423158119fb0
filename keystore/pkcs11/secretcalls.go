package pkcs11

// The two PKCS#11 calls that carry secrets, made without miekg/pkcs11.
//
// miekg/pkcs11 copies the PIN of C_Login (C.CString) and the value read by
// C_GetAttributeValue (C.malloc) through C heap buffers that it frees
// without wiping. These calls go to the same module, through the function
// list it exports (C_GetFunctionList, found with dlsym on the module miekg
// already loaded: RTLD_NOLOAD, so the module's state is the one miekg
// initialised), and point the module straight at our locked memory: the PIN
// in its secret.Buffer, the derived secret into a locked slot. No copy is
// made on either side of the call but the module's own.
//
// The calls are plain C function pointers: they must not run inside
// secret.Do (a cgo call there crashes Go 1.26), and none does.

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>

typedef unsigned long lm_ulong;
typedef struct { unsigned char major, minor; } lm_version;
typedef struct { lm_ulong type; void *value; lm_ulong len; } lm_attribute;
// The start of CK_FUNCTION_LIST (PKCS#11 2.40 section 5.1): a version, then
// function pointers in the order of pkcs11f.h. Index 18 is C_Login, 24
// C_GetAttributeValue.
typedef struct { lm_version version; void *fn[25]; } lm_function_list;

typedef lm_ulong (*lm_get_function_list)(lm_function_list **);
typedef lm_ulong (*lm_login_fn)(lm_ulong, lm_ulong, unsigned char *, lm_ulong);
typedef lm_ulong (*lm_get_attribute_fn)(lm_ulong, lm_ulong, lm_attribute *, lm_ulong);

static lm_function_list *lm_function_list_of(const char *path) {
	void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
	if (h == NULL) return NULL;
	lm_get_function_list g = (lm_get_function_list)dlsym(h, "C_GetFunctionList");
	lm_function_list *fl = NULL;
	if (g == NULL || g(&fl) != 0) fl = NULL;
	dlclose(h); // miekg's handle keeps the module loaded
	return fl;
}

static lm_ulong lm_login(lm_function_list *fl, lm_ulong sh, lm_ulong user, unsigned char *pin, lm_ulong n) {
	return ((lm_login_fn)fl->fn[18])(sh, user, pin, n);
}

static lm_ulong lm_get_value(lm_function_list *fl, lm_ulong sh, lm_ulong obj, unsigned char *buf, lm_ulong *n) {
	lm_attribute a = { 0x11, buf, *n }; // 0x11: CKA_VALUE
	lm_ulong rv = ((lm_get_attribute_fn)fl->fn[24])(sh, obj, &a, 1);
	*n = a.len;
	return rv;
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/loramesh/loramesh-core/keystore"
	p11 "github.com/miekg/pkcs11"
)

// funcList is the module's CK_FUNCTION_LIST.
type funcList = C.lm_function_list

// functionList finds the module's CK_FUNCTION_LIST; the module must be
// loaded (by miekg) at path.
func functionList(path string) (*C.lm_function_list, error) {
	cp := C.CString(path) // a path, not a secret
	defer C.free(unsafe.Pointer(cp))
	fl := C.lm_function_list_of(cp)
	if fl == nil {
		return nil, fmt.Errorf("%w: %s: C_GetFunctionList not found", ErrModuleLoad, path)
	}
	if fl.version.major < 2 {
		return nil, fmt.Errorf("%w: %s: Cryptoki %d.%d", ErrModuleLoad, path, fl.version.major, fl.version.minor)
	}
	return fl, nil
}

// login is C_Login with the PIN read in place from pin, which must be
// locked memory outside the Go heap (secret.Buffer).
func (m *module) login(sh p11.SessionHandle, pin []byte) error {
	if len(pin) == 0 {
		return p11.Error(p11.CKR_ARGUMENTS_BAD)
	}
	rv := C.lm_login(m.fl, C.lm_ulong(sh), C.lm_ulong(p11.CKU_USER), (*C.uchar)(unsafe.Pointer(&pin[0])), C.lm_ulong(len(pin)))
	if rv != 0 {
		return p11.Error(rv)
	}
	return nil
}

// readValue reads the CKA_VALUE of obj, which must be exactly 32 bytes,
// straight into out, a locked slot outside the Go heap.
func (m *module) readValue(sh p11.SessionHandle, obj p11.ObjectHandle, out *[32]byte) error {
	n := C.lm_ulong(len(out))
	rv := C.lm_get_value(m.fl, C.lm_ulong(sh), C.lm_ulong(obj), (*C.uchar)(unsafe.Pointer(&out[0])), &n)
	if rv != 0 {
		return p11.Error(rv)
	}
	if n != 32 {
		return fmt.Errorf("pkcs11: derived %d bytes, want 32: %w", uint64(n), keystore.ErrKeystore)
	}
	return nil
}
