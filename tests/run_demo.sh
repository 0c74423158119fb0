#!/usr/bin/env bash
# run_demo.sh: three loramesh nodes talk over UDP on 127.0.0.1 through the CLI.
#   alice: identity on a throwaway SoftHSM token (PKCS#11)
#   bob:   identity in a passphrase-protected identity file (memory keystore)
#   carol: identity in a throwaway swtpm TPM (skipped if swtpm is missing)
# Builds nothing: expects build/libloramesh.so (`make lib`). Everything it
# creates lives in one temporary directory removed at exit; swtpm is stopped
# by its pid.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIB=${LORAMESH_LIB:-$ROOT/build/libloramesh.so}
PY=${PYTHON:-python3}
[ -f "$LIB" ] || { echo "run_demo: $LIB is missing: run \`make lib\` first" >&2; exit 1; }
export LORAMESH_LIB=$LIB PYTHONPATH=$ROOT/python${PYTHONPATH:+:$PYTHONPATH}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/loramesh-demo.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
	if [ -f "$WORK/swtpm/pid" ]; then kill "$(cat "$WORK/swtpm/pid")" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() { # a free loopback UDP+TCP port; with $1=2 also port+1 is free
	"$PY" - "${1:-1}" <<'PY'
import socket, sys
n = int(sys.argv[1])
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    try:
        socks = []
        for i in range(n):
            for t in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                k = socket.socket(socket.AF_INET, t); k.bind(("127.0.0.1", p + i)); socks.append(k)
        print(p); break
    except OSError:
        pass
    finally:
        for k in socks: k.close()
PY
}
lm() { local who=$1; shift; "$PY" -m loramesh --home "$WORK/$who" "$@"; }
show() { local who=$1; shift; echo "\$ loramesh $*   # $who" >&2; lm "$who" "$@" 2>&1 | sed "s/^/  $who| /"; }

# ---- secrets: from environment variables, never on a command line ----
export ALICE_PIN=4711-demo BOB_PASS="correct horse battery staple" CAROL_AUTH=carol-tpm-auth
SECRET_alice=(--pin-env ALICE_PIN) SECRET_bob=(--passphrase-env BOB_PASS) SECRET_carol=(--auth-env CAROL_AUTH)

NODES=(alice bob)
say "SoftHSM token for alice"
export SOFTHSM2_CONF=$WORK/softhsm2.conf
mkdir -p "$WORK/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$WORK/tokens" > "$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label alice --pin "$ALICE_PIN" --so-pin 12345678 | sed 's/^/  /'
URI="pkcs11:token=alice?module-path=/usr/lib/softhsm/libsofthsm2.so"

if command -v swtpm >/dev/null; then
	say "swtpm for carol"
	mkdir -p "$WORK/swtpm"
	TPMPORT=$(free_port 2)
	swtpm socket --tpm2 --tpmstate dir="$WORK/swtpm" \
		--server type=tcp,port="$TPMPORT",bindaddr=127.0.0.1 \
		--ctrl type=tcp,port=$((TPMPORT + 1)),bindaddr=127.0.0.1 \
		--flags not-need-init,startup-clear --pid file="$WORK/swtpm/pid" --daemon
	for _ in $(seq 50); do [ -s "$WORK/swtpm/pid" ] && break; sleep 0.1; done
	echo "  swtpm pid $(cat "$WORK/swtpm/pid") on 127.0.0.1:$TPMPORT"
	NODES+=(carol)
else
	echo "swtpm not installed: carol (TPM) is skipped" >&2
fi

say "init"
show alice init --name alice --pkcs11 "$URI" "${SECRET_alice[@]}"
show bob init --name bob "${SECRET_bob[@]}"
[ -n "${TPMPORT:-}" ] && show carol init --name carol --tpm "tcp:127.0.0.1:$TPMPORT" "${SECRET_carol[@]}"
show bob id "${SECRET_bob[@]}"

say "card exchange (files handed over out of band)"
for n in "${NODES[@]}"; do
	eval 'secret=("${SECRET_'$n'[@]}")'
	show "$n" card export -o "$WORK/$n.card" "${secret[@]}"
done
for n in "${NODES[@]}"; do
	for m in "${NODES[@]}"; do
		[ "$n" = "$m" ] && continue
		show "$n" contact import "$WORK/$m.card"
		# Fingerprint read to the user over the phone, then confirmed:
		fp=$("$PY" -c '
import sys, loramesh
print(loramesh.ContactCard(open(sys.argv[1], "rb").read()).fingerprint)' "$WORK/$m.card")
		show "$n" contact verify "$m" "$fp"
	done
done
show alice contact list

# converse A B "lines of A" "lines of B": both run `loramesh chat` with their
# lines fed to stdin a second apart; A speaks first and so runs the handshake.
converse() {
	local a=$1 b=$2 la=$3 lb=$4 pa pb
	pa=$(free_port) pb=$(free_port)
	eval 'local sa=("${SECRET_'$a'[@]}") sb=("${SECRET_'$b'[@]}")'
	say "$a <-> $b over UDP (127.0.0.1:$pa <-> 127.0.0.1:$pb)"
	{ sleep 3; while IFS= read -r l; do echo "$l"; sleep 1.2; done <<<"$lb"; } |
		lm "$b" chat "$a" --bind "127.0.0.1:$pb" --to "127.0.0.1:$pa" --linger 3 "${sb[@]}" \
		> "$WORK/$b.chat" 2>&1 &
	PIDS+=($!)
	local bpid=$!
	for _ in $(seq 100); do grep -q "chat with" "$WORK/$b.chat" 2>/dev/null && break; sleep 0.1; done
	{ sleep 0.5; while IFS= read -r l; do echo "$l"; sleep 1.2; done <<<"$la"; } |
		lm "$a" chat "$b" --bind "127.0.0.1:$pa" --to "127.0.0.1:$pb" --linger 4 "${sa[@]}" 2>&1 |
		sed "s/^/  $a| /"
	wait "$bpid"
	sed "s/^/  $b| /" "$WORK/$b.chat"
}

converse alice bob "Hello Bob, this is Alice (key on a PKCS#11 token)
Are you there?" "Hi Alice, Bob here (key in an identity file)
Loud and clear."

if [ -n "${TPMPORT:-}" ]; then
	converse carol alice "Alice, Carol speaking from a TPM
P-256 all the way" "Welcome Carol
Got both"
	converse bob carol "Carol, it's Bob" "Hi Bob"
fi

say "signing"
echo "meet at the north gate at noon" > "$WORK/note.txt"
show bob sign "$WORK/note.txt" "${SECRET_bob[@]}"
show alice verify "$WORK/note.txt" "$WORK/note.txt.sig" --contact bob
echo "meet at the south gate" > "$WORK/note.txt"
show alice verify "$WORK/note.txt" "$WORK/note.txt.sig" --contact bob || true
say "done"
