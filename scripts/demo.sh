#!/usr/bin/env bash
# frep's main job on one machine: a master and a mirror on loopback replicating a live,
# sparse, multi-extent volume while a real NBD client writes to it; ends byte-identical.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD

bash scripts/install-deps.sh
build=${FREP_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target frep-server frep-client frepctl >/dev/null

dir=${FREP_DEMO_DIR:-$(mktemp -d /tmp/frep-demo.XXXXXX)}
port=${FREP_DEMO_PORT:-0}
mkdir -p "$dir"
# The daemons' admin sockets, which frepctl finds: here rather than in /run/frep, so the
# demo never meets a frep already running on this host.
export FREP_RUN_DIR=${FREP_RUN_DIR:-$dir/run}
pids=()
finish() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap finish EXIT
say() { printf '\n== %s\n' "$*"; }
wait_for() { # wait_for SECONDS WHAT CMD...
	local end=$((SECONDS + $1)) what=$2
	shift 2
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || { echo "demo: timed out waiting for $what (logs in $dir)" >&2; exit 1; }
		sleep 0.2
	done
}

say "throwaway CA and certificates in $dir/pki"
bash scripts/gen-certs.sh "$dir/pki" master-1
ls "$dir/pki"

say "sample volume 'demo': 3 sparse extents (128M + 64M + 128M), about 100M allocated"
rm -rf "$dir/master" "$dir/mirror"
mkdir -p "$dir/master"
truncate -s 128M "$dir/master/e0"
truncate -s 64M "$dir/master/e1"
truncate -s 128M "$dir/master/e2"
# Deterministic data; head closing the pipe (SIGPIPE to openssl) is expected.
rnd() { (set +o pipefail; openssl enc -aes-128-ctr -pass "pass:$1" -nosalt -pbkdf2 </dev/zero 2>/dev/null | head -c "$2"); }
rnd a 48M | dd of="$dir/master/e0" bs=1M seek=8 conv=notrunc status=none
rnd b 16M | dd of="$dir/master/e1" bs=1M seek=40 conv=notrunc status=none
rnd c 36M | dd of="$dir/master/e2" bs=1M seek=90 conv=notrunc status=none
ext="$dir/master/e0,$dir/master/e1,$dir/master/e2"
du -h --apparent-size -c "$dir"/master/e* | tail -n1 | sed 's/total/apparent size/'
du -h -c "$dir"/master/e* | tail -n1 | sed 's/total/allocated/'

say "frep-server (mirror) on 127.0.0.1, data in $dir/mirror"
"$build/frep-server" --listen "127.0.0.1:$port" --data-dir "$dir/mirror" \
	--cert "$dir/pki/server.crt" --key "$dir/pki/server.key" --ca "$dir/pki/ca.crt" \
	2>"$dir/server.log" &
pids+=($!)
wait_for 10 "frep-server to listen" grep -q 'listening on' "$dir/server.log"
addr=$(grep -Eo 'listening on [^,]+' "$dir/server.log" | head -n1 | cut -d' ' -f3)
tail -n1 "$dir/server.log"

say "frep-client (master) serving NBD on $dir/demo.sock, replicating to $addr"
"$build/frep-client" --volume "demo=$ext" --mirror "$addr" --server-name frep-mirror \
	--journal "$dir/master/demo.journal" --cert "$dir/pki/master-1.crt" \
	--key "$dir/pki/master-1.key" --ca "$dir/pki/ca.crt" --nbd "unix:$dir/demo.sock" \
	2>"$dir/client.log" &
pids+=($!)
wait_for 20 "the NBD socket" test -S "$dir/demo.sock"
uri="nbd+unix:///demo?socket=$dir/demo.sock"

say "writing through NBD (nbdsh) while the bulk copy runs"
LIBNBD_DEBUG=0 PATH=/usr/bin:$PATH nbdsh -u "$uri" -c '
import os, time
size = h.get_size()
n = 0
end = time.time() + 2
# Paced to about 25 MB/s: a burst faster than the link drains would overflow the
# 100 MiB mirror buffer and crack the mirror (it would still converge, by another pass).
while time.time() < end and n < 400:
    off = (n * 2654435761 * 4096) % (size - 131072)
    h.pwrite(os.urandom(131072), off)
    n += 1
    time.sleep(0.005)
# one write across the e0/e1 boundary
h.pwrite(b"B" * 65536, 128 * 1024 * 1024 - 32768)
h.flush()
print("  %d writes of 128K during the copy, plus one across the extent boundary" % n)
'

wait_for 120 "INSYNC" grep -q 'state REPLICATE -> INSYNC' "$dir/client.log"
grep -E 'copy walked|state .* -> ' "$dir/client.log" | sed 's/^[^ ]* /  /'

say "frepctl status (both daemons, through their admin sockets in $FREP_RUN_DIR)"
"$build/frepctl" status | sed 's/^/  /'

say "writing after the copy (qemu-io: write, discard, zero)"
qemu-io -f raw "$uri" -c 'write -P 0x42 200M 4M' -c 'discard 10M 2M' -c 'write -z 60M 1M' |
	grep -E 'wrote|discard' | sed 's/^/  /'

say "waiting for the mirror to catch up"
mirror="$dir/mirror/demo/extent.0 $dir/mirror/demo/extent.1 $dir/mirror/demo/extent.2"
same() { [ "$(cat $ext_sp | sha256sum)" = "$(cat $mirror | sha256sum)" ]; }
ext_sp=${ext//,/ }
wait_for 60 "mirror and master to be byte-identical" same
printf '  master sha256: %s\n' "$(cat $ext_sp | sha256sum | cut -d' ' -f1)"
printf '  mirror sha256: %s\n' "$(cat $mirror | sha256sum | cut -d' ' -f1)"
for i in 0 1 2; do
	cmp "$dir/master/e$i" "$dir/mirror/demo/extent.$i" || exit 1
done
echo "  extents byte-identical: e0=extent.0 e1=extent.1 e2=extent.2"

say "clean shutdown"
finish
pids=()
grep -E 'shutting down|goodbye' "$dir/client.log" "$dir/server.log" | sed 's/^[^:]*\///; s/^/  /' | head -n 4
echo
echo "demo OK: logs and volumes in $dir"
