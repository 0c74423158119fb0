module github.com/loramesh/loramesh-core

go 1.26.0

require (
	filippo.io/edwards25519 v1.2.0
	filippo.io/nistec v0.0.4
	github.com/flynn/noise v1.1.0
	github.com/foxboron/go-tpm-keyfiles v0.0.0-20251226215517-609e4778396f
	github.com/fxamacker/cbor/v2 v2.10.0
	github.com/google/go-tpm v0.9.8
	github.com/miekg/pkcs11 v1.1.2
	golang.org/x/crypto v0.59.0
	golang.org/x/sys v0.50.0
	golang.org/x/text v0.44.0
)

require (
	github.com/google/go-tpm-tools v0.4.11 // indirect
	github.com/x448/float16 v0.8.4 // indirect
)
