#!/usr/bin/env bash
# sysroot.sh DEBARCH DIR: a minimal Debian root of another architecture
# (arm64, armhf) in DIR, for running that architecture's programs under
# qemu-user (`qemu-aarch64 -L DIR ...`) and for linking against its
# libraries.
#
# It is not a bootable system: the packages below and their dependencies are
# downloaded with apt-get, from the sources this machine's apt already uses,
# into a private apt state under DIR.apt (the machine's own dpkg database,
# architectures and package lists are not touched), and unpacked with
# dpkg-deb; no maintainer script runs. That is all the emulated tests need:
#   - python3.11, python3-pytest and python3-serial: the binding's tests under an emulated
#     interpreter (ctypes loads the cross-built libloramesh.so);
#   - libssl-dev: libcrypto for the in-process TPM simulator that
#     keystore/tpm's tests link (go-tpm-tools);
#   - libsofthsm2: the PKCS#11 module the SoftHSM tests dlopen, built for the
#     emulated architecture (a host module cannot load there).
# The libc in DIR is the same glibc release as the cross compilers' (both
# Debian 12), so programs linked by aarch64-linux-gnu-gcc run against it.
#
# About 20 MB is downloaded per architecture. DIR/.stamp records the package
# list; a root made from the same list is reused.
set -euo pipefail

ARCH=${1:?usage: sysroot.sh DEBARCH DIR}
DIR=${2:?usage: sysroot.sh DEBARCH DIR}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd) # apt reads relative Dir:: paths as under /var
PKGS="libc6 python3.11-minimal libpython3.11-stdlib python3-pytest python3-serial libssl-dev libsofthsm2"
STAMP="$ARCH: $PKGS"

if [ -f "$DIR/.stamp" ] && [ "$(cat "$DIR/.stamp")" = "$STAMP" ]; then
	exit 0
fi
APT=$DIR.apt
rm -rf "$DIR" "$APT"
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$DIR"
: > "$APT/status" # an empty dpkg database: every dependency is fetched
opts=(-o "APT::Architecture=$ARCH" -o "APT::Architectures::=$ARCH"
	-o "Dir::State::Lists=$APT/lists" -o "Dir::State::status=$APT/status"
	-o "Dir::Cache::archives=$APT/archives" -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
	-o "Debug::NoLocking=1" -o "APT::Sandbox::User=root" -q
	-o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
	-o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
	-o "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false")
# A mirror being synced answers with files of the wrong size for a moment:
# try again a few times before failing.
retry() {
	local log=$1
	shift
	for i in 1 2 3; do
		"$@" >"$log" 2>&1 && return 0
		[ $i = 3 ] || { echo "sysroot $ARCH: apt-get failed (try $i), again in $((i * 5)) s" >&2; sleep $((i * 5)); }
	done
	return 1
}
echo "sysroot $ARCH: fetching $PKGS (and dependencies)"
# An index that still fails (seen: a proxy serving an old bookworm-security
# list under a new Release file) only means older versions from the other
# suites; whether everything needed can be had is the next step's question.
if ! retry "$APT/update.log" apt-get "${opts[@]}" update; then
	echo "sysroot $ARCH: warning: some package lists failed; going on with the others:" >&2
	grep '^E:' "$APT/update.log" | head -3 >&2
fi
retry "$APT/install.log" apt-get "${opts[@]}" install -y --download-only --no-install-recommends $PKGS ||
	{ cat "$APT/install.log" >&2; exit 1; }
n=0
for deb in "$APT"/archives/*.deb; do
	dpkg-deb -x "$deb" "$DIR"
	n=$((n + 1))
done
# A link-time name for libcrypto is in libssl-dev; check what the tests need.
for f in usr/bin/python3.11 usr/lib/python3/dist-packages/pytest/__init__.py usr/include/openssl/evp.h \
	usr/lib/softhsm/libsofthsm2.so; do
	[ -e "$DIR/$f" ] || { echo "sysroot $ARCH: $f missing after unpacking" >&2; exit 1; }
done
rm -rf "$APT"
echo "$STAMP" > "$DIR/.stamp"
echo "sysroot $ARCH: $n packages in $DIR ($(du -sh "$DIR" | cut -f1))"
