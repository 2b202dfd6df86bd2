#!/usr/bin/env bash
# Installs the Debian 12 packages frep needs to build, demo and test; the one
# install list both README commands use. Idempotent: installs only what is missing.
# --bench adds what bench/run.sh compares against (rsync over ssh) and builds its
# compression image with (mke2fs).
set -euo pipefail

packages=(
	build-essential cmake pkg-config ragel graphviz
	libmbedtls-dev libisal-dev libzstd-dev liblz4-dev
	libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
	libcmocka-dev
	clang libclang-rt-14-dev
	libgrpc-dev python3-grpcio python3-protobuf
	libjson-c-dev libsystemd-dev systemd libmicrohttpd-dev python3-prometheus-client
	libxxhash-dev xxhash
	openssl
	nbdkit nbdkit-plugin-dev
	libwireshark-dev wireshark-dev tshark tcpdump
	libnbd-bin libnbd-dev python3-libnbd qemu-utils nbd-client fio
	python3 jq
	resource-agents libxml2-utils
	util-linux coreutils procps iproute2
)

if [ "${1:-}" = --bench ]; then
	packages+=(rsync openssh-client openssh-server e2fsprogs)
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}; run as root or install them with apt-get" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# tshark's wireshark-common asks whether non-root users may capture: they may not.
echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
