#!/usr/bin/env bash
# run_demo.sh (make run): three loramesh nodes, each with its identity in a
# different keystore, talk through their daemons:
#   alice: identity on a throwaway SoftHSM token (PKCS#11)
#   bob:   identity in a passphrase-sealed identity file (memory keystore)
#   carol: identity in a throwaway swtpm TPM
# alice and bob share a 255-byte KISS radio link (a socat pty pair standing
# in for two LoRa TNCs); everyone also has UDP on 127.0.0.1.
# Expects build/libloramesh.so (`make lib`). Everything lives in one
# temporary directory removed at exit; daemons, socat and swtpm are stopped.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIB=${LORAMESH_LIB:-$ROOT/build/libloramesh.so}
PY=${PYTHON:-/usr/bin/python3}
[ -f "$LIB" ] || { echo "run_demo: $LIB is missing: run \`make lib\` first" >&2; exit 1; }
export LORAMESH_LIB=$LIB PYTHONPATH=$ROOT/python${PYTHONPATH:+:$PYTHONPATH}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/loramesh-demo.XXXXXX")
SOCAT=
cleanup() {
	for n in alice bob carol; do [ -f "$WORK/$n/config.toml" ] && lm "$n" stop >/dev/null 2>&1 || true; done
	[ -n "$SOCAT" ] && kill "$SOCAT" 2>/dev/null || true
	[ -f "$WORK/swtpm/pid" ] && kill "$(cat "$WORK/swtpm/pid")" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
free_port() { # a free loopback port (TCP and UDP); with $1=2 the next one too
	"$PY" - "${1:-1}" <<'PY'
import socket, sys
n = int(sys.argv[1])
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    socks = []
    try:
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
lm() { local who=$1; shift; "$PY" -m loramesh --home "$WORK/$who" "$@" --passphrase-file "$WORK/$who.secret"; }
show() { local who=$1; shift; echo "\$ loramesh $*   # $who" >&2; lm "$who" "$@" 2>&1 | sed "s/^/  $who| /"; }

# Secrets live in files of mode 0600 (never on a command line, where `ps`
# shows them, nor in the environment, which cannot be wiped).
umask 077
printf '4711-demo\n' > "$WORK/alice.secret"
printf 'correct horse battery staple\n' > "$WORK/bob.secret"
printf 'carol-tpm-auth\n' > "$WORK/carol.secret"

say "SoftHSM token for alice"
export SOFTHSM2_CONF=$WORK/softhsm2.conf
mkdir -p "$WORK/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$WORK/tokens" > "$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label alice --pin 4711-demo --so-pin 12345678 | sed 's/^/  /'
URI="pkcs11:token=alice?module-path=/usr/lib/softhsm/libsofthsm2.so"

say "swtpm for carol"
mkdir -p "$WORK/swtpm"
TPMPORT=$(free_port 2)
swtpm socket --tpm2 --tpmstate dir="$WORK/swtpm" \
	--server type=tcp,port="$TPMPORT",bindaddr=127.0.0.1 \
	--ctrl type=tcp,port=$((TPMPORT + 1)),bindaddr=127.0.0.1 \
	--flags not-need-init,startup-clear --pid file="$WORK/swtpm/pid" --daemon
for _ in $(seq 50); do [ -s "$WORK/swtpm/pid" ] && break; sleep 0.1; done
note "swtpm pid $(cat "$WORK/swtpm/pid") on 127.0.0.1:$TPMPORT"

say "a radio channel between alice and bob: two linked ptys (socat)"
socat pty,raw,echo=0,link="$WORK/radio-a" pty,raw,echo=0,link="$WORK/radio-b" 2>/dev/null &
SOCAT=$!
for _ in $(seq 50); do [ -e "$WORK/radio-b" ] && break; sleep 0.1; done
note "alice's TNC: $WORK/radio-a   bob's TNC: $WORK/radio-b"

say "init: each node makes its identity where its keystore keeps it"
PA=$(free_port) PB=$(free_port) PC=$(free_port)
show alice init --name alice --pkcs11 "$URI" --udp "127.0.0.1:$PA" --serial "$WORK/radio-a"
show bob init --name bob --udp "127.0.0.1:$PB" --serial "$WORK/radio-b"
show carol init --name carol --tpm "tcp:127.0.0.1:$TPMPORT" --udp "127.0.0.1:$PC"
note "id and card export need no secret: they read the public card"
show bob id

say "cards: alice and bob over the radio, carol over UDP"
for n in alice bob carol; do lm "$n" card export -o "$WORK/$n.card" >/dev/null; done
show alice contact import "$WORK/bob.card" --addr kiss
show bob contact import "$WORK/alice.card" --addr kiss
show bob contact import "$WORK/carol.card" --addr "udp:127.0.0.1:$PC"
show carol contact import "$WORK/bob.card" --addr "udp:127.0.0.1:$PB"
show carol contact import "$WORK/alice.card" --addr "udp:127.0.0.1:$PA"
show alice contact import "$WORK/carol.card" --addr "udp:127.0.0.1:$PC"
note "a fingerprint read over the phone, typed in: a wrong one is refused without showing the right one"
show alice contact verify bob AAAA-BBBB-CCCC-DDDD || true
for pair in "alice bob" "bob alice" "bob carol" "carol bob" "carol alice" "alice carol"; do
	set -- $pair
	lm "$1" contact verify "$2" "$(lm "$2" --json id | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])')" >/dev/null
done
show alice contact list

say "a long message over the radio: split into fragments that fit 255-byte frames"
LONG=$(printf 'Meet at the ridge at dawn. %.0s' $(seq 20))
note "${#LONG} characters; the daemon's engine fragments, acknowledges and reassembles"
show alice send bob "$LONG"
show bob listen --history 5 --duration 0.5 | tail -n 3

say "UDP: bob -> carol (TPM) and carol -> alice (SoftHSM), each waiting for 'delivered'"
show bob send carol "hello carol, your key never left the TPM"
show carol send alice "hello alice, mine neither, nor yours the token"

say "carol goes away; alice's message waits in the queue"
show carol stop
show alice send carol --no-wait "are you back?"
show alice contact list
note "(queued: the engine retries with backoff and keeps it until its deadline)"

say "carol comes back; the queued message is delivered without anyone doing anything"
show carol start
note "(alice's next handshake attempt, at most a backoff away, finds carol; the message follows at once)"
for _ in $(seq 90); do
	lm alice --json contact show carol | grep -q '"queued": 0' && break
	sleep 1
done
show alice contact list
show carol listen --history 10 --duration 0.5

say "signatures: bob signs a file, carol verifies it"
echo "the plan" > "$WORK/plan.txt"
show bob sign "$WORK/plan.txt"
show carol verify "$WORK/plan.txt" "$WORK/plan.txt.sig" --contact bob
echo "the plan, changed after signing" > "$WORK/plan.txt"
note "now the file was changed after it was signed: the next check must fail"
show carol verify "$WORK/plan.txt" "$WORK/plan.txt.sig" --contact bob || true

say "status of each daemon"
for n in alice bob carol; do show "$n" status; done
say "done: every message above was acknowledged by its recipient before it showed 'delivered'"
