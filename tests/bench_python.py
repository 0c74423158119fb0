"""Python half of `make bench`: a 100-byte session.encrypt + session.decrypt
through the binding, beside the cryptography package's ChaCha20Poly1305
encrypt + decrypt in the same run when that package is installed.
Prints one JSON line: {"binding_ns": ..., "cryptography_ns": ... or null}."""
import json
import os
import time

import loramesh


def best_of(fn, rounds=5, n=20000):
    """Median-free and simple: the fastest of a few rounds, per call, in ns."""
    best = None
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        dt = (time.perf_counter_ns() - t0) / n
        best = dt if best is None or dt < best else best
    return best


def main():
    a, b = loramesh.IdentityKey.generate(), loramesh.IdentityKey.generate()
    sa, msg1 = loramesh.Session.initiate(a, loramesh.ContactCard(b.card("b")))
    sb, msg2 = loramesh.Session.respond(b, msg1)
    sa.finish(msg2)
    msg = bytes(100)

    def ours():
        sb.decrypt(sa.encrypt(msg))

    binding = best_of(ours)
    try:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    except ImportError:
        ref = None
    else:
        aead = ChaCha20Poly1305(os.urandom(32))
        nonce = bytes(12)

        def theirs():
            aead.decrypt(nonce, aead.encrypt(nonce, msg, None), None)

        ref = best_of(theirs)
    print(json.dumps({"binding_ns": binding, "cryptography_ns": ref}))


if __name__ == "__main__":
    main()
