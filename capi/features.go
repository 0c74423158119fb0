package main

/*
#include <stdint.h>
*/
import "C"

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/loramesh/loramesh-core/internal/secret"
)

// Feature bits: LM_FEATURE_* in loramesh.h (TestCodesMatchHeader).
const (
	featureErase = 1 << 0
	featureMlock = 1 << 1
)

// featureFlags is what this build guarantees about secrets.
//
// Erase: runtime/secret erases the registers, stack and heap temporaries of
// every call that touches key material (secret.Do); Go 1.26 does it only on
// linux/amd64 and linux/arm64 with GOEXPERIMENT=runtimesecret. Elsewhere
// secret.Do just calls its function, and this bit is how a host finds out.
//
// Mlock: secrets the library keeps live in mlocked, MADV_DONTDUMP pages and
// never fall back to ordinary memory (internal/secret). That package uses
// Linux's mlock and madvise, so every build of this library has it.
func featureFlags() uint32 {
	var f uint32
	if secret.Erases {
		f |= featureErase
	}
	if runtime.GOOS == "linux" {
		f |= featureMlock
	}
	return f
}

// featureText is featureFlags in words, for logs: "linux/arm go1.26.8
// GOARM=7: mlock yes, erase no (...)". The first two words are the platform
// and the Go version; the architecture level follows when the build has one.
func featureText() string {
	settings := map[string]string{}
	if bi, found := debug.ReadBuildInfo(); found {
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
	}
	head := runtime.GOOS + "/" + runtime.GOARCH + " " + runtime.Version()
	for _, k := range []string{"GOARM", "GOARM64", "GOAMD64", "GO386"} {
		if v := settings[k]; v != "" {
			head += " " + k + "=" + v
		}
	}
	f := featureFlags()
	yes := func(bit uint32) string {
		if f&bit != 0 {
			return "yes"
		}
		return "no"
	}
	why := ""
	switch {
	case f&featureErase != 0:
	case runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64":
		why = fmt.Sprintf(" (runtime/secret does not erase on %s/%s; only linux/amd64 and linux/arm64)", runtime.GOOS, runtime.GOARCH)
	case !strings.Contains(settings["GOEXPERIMENT"], "runtimesecret"):
		why = " (built without GOEXPERIMENT=runtimesecret)"
	}
	return fmt.Sprintf("%s: mlock %s, erase %s%s", head, yes(featureMlock), yes(featureErase), why)
}

var featureString = sync.OnceValue(func() *C.char { return C.CString(featureText()) })

//export lm_features
func lm_features(flags *C.uint32_t) (rc C.int) {
	defer guard(&rc)
	if flags == nil {
		return failf(errInvalidArg, "lm_features: NULL argument")
	}
	*flags = C.uint32_t(featureFlags())
	return ok
}

//export lm_features_string
func lm_features_string() (s *C.char) {
	defer func() {
		if recover() != nil {
			s = nil
		}
	}()
	return featureString()
}
