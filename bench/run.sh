#!/usr/bin/env bash
# REPLICATE throughput of a dense volume on tmpfs, against a raw TLS pipe moving the
# same bytes with the same cipher suite, in one run. Prints both figures and the ratio.
# Usage: bench/run.sh [SIZE_MIB]   (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}

bash scripts/install-deps.sh
build=${FREP_BENCH_BUILD:-build-bench}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DFREP_TEST_HOOKS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target frep-server frep-client tls-pipe >/dev/null

dir=$(mktemp -d /dev/shm/frep-bench.XXXXXX)
pids=()
finish() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap finish EXIT
bash scripts/gen-certs.sh "$dir/pki" master-1

# Baseline: the raw TLS pipe, same certificates, same suite, same 4 MiB writes.
base=$("$build/bench/tls-pipe" --bytes "${size_mib}M" --chunk 4M --certs "$dir/pki")
base_mbps=$(sed -n 's/.*MBps=\([0-9.]*\).*/\1/p' <<<"$base")
cipher=$(sed -n 's/.*cipher=\([^ ]*\).*/\1/p' <<<"$base")

# frep: a dense volume (every block allocated) on tmpfs, mirror data dir on tmpfs.
(set +o pipefail; openssl enc -aes-128-ctr -pass pass:bench -nosalt -pbkdf2 </dev/zero 2>/dev/null |
	head -c $((size_mib << 20)) >"$dir/vol")
# On a VM that hands freed guest pages back to the host (free page reporting),
# the first touch of a page costs ~2 s/GiB, which the raw pipe (it keeps no
# data) never pays. Touch and free enough memory for the mirror's extents first,
# so both figures measure transfer, not the hypervisor.
head -c $(((size_mib + 512) << 20)) /dev/zero >"$dir/warm" && rm -f "$dir/warm"
"$build/frep-server" --listen 127.0.0.1:0 --data-dir "$dir/mirror" --cert "$dir/pki/server.crt" \
	--key "$dir/pki/server.key" --ca "$dir/pki/ca.crt" 2>"$dir/server.log" &
pids+=($!)
for _ in $(seq 100); do grep -q 'listening on' "$dir/server.log" && break; sleep 0.1; done
addr=$(grep -Eo 'listening on [^,]+' "$dir/server.log" | cut -d' ' -f3)
start=$(date +%s.%N)
"$build/frep-client" --volume "bench=$dir/vol" --mirror "$addr" --server-name frep-mirror \
	--journal "$dir/journal" --journal-size 64M --cert "$dir/pki/master-1.crt" \
	--key "$dir/pki/master-1.key" --ca "$dir/pki/ca.crt" --nbd "unix:$dir/nbd.sock" \
	2>"$dir/client.log" &
pids+=($!)
for _ in $(seq 1200); do grep -q 'state REPLICATE -> INSYNC' "$dir/client.log" && break; sleep 0.05; done
end=$(date +%s.%N)
grep -q 'state REPLICATE -> INSYNC' "$dir/client.log" || { cat "$dir/client.log"; exit 1; }
copy_ms=$(sed -n 's/.*copy walked [0-9]* bytes ([0-9]* data) in \([0-9]*\) ms.*/\1/p' "$dir/client.log")
cmp "$dir/vol" "$dir/mirror/bench/extent.0" || { echo "bench: mirror differs" >&2; exit 1; }

copy_mbps=$(awk -v b=$((size_mib << 20)) -v ms="$copy_ms" 'BEGIN { printf "%.1f", b / 1e6 / (ms / 1000) }')
e2e_mbps=$(awk -v b=$((size_mib << 20)) -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", b / 1e6 / (e - s) }')
ratio=$(awk -v a="$copy_mbps" -v b="$base_mbps" 'BEGIN { printf "%.3f", a / b }')
echo "volume:              ${size_mib} MiB dense, tmpfs, cipher $cipher"
echo "raw TLS pipe:        ${base_mbps} MB/s"
echo "frep REPLICATE:      ${copy_mbps} MB/s (copy phase, ${copy_ms} ms)"
echo "frep start->INSYNC:  ${e2e_mbps} MB/s (process start, handshake, copy, consistency)"
echo "ratio (REPLICATE / raw TLS): ${ratio}   target >= 0.85"
