#!/usr/bin/env bash
# Protocol version 2 compression end to end: --compress zstd, lz4 and none each replicate
# byte-identical, copy and TX data; status on both sides says what the link carried.
source "$(dirname "$0")/lib.sh"
certs master-1

# 48 MiB: 16 MiB of text (compresses), 8 MiB of random data (goes raw), the rest holes.
mkvol "$T/v" 48M
(set +o pipefail
find /usr/share/doc /usr/share/common-licenses /usr/share/perl5 /usr/include -type f ! -name '*.gz' -print0 2>/dev/null | xargs -0 cat 2>/dev/null |
	head -c 16M | dd of="$T/v" conv=notrunc status=none)
fill "$T/v" 16 8 rnd
start_server

# replicated ALG: volume c-ALG, a copy of the same data, makes its first copy with
# --compress ALG; then compressible writes in INSYNC.
replicated() {
	local alg=$1 v=c-$1 data wire
	# peer FIELD: the master's peer status field; mpeer FIELD: the mirror's.
	peer() { ctl "$v" status | jq -r ".volumes[0].master.peer.$1"; }
	mpeer() { mctl --json status "$v" | jq -r ".volumes[0].mirror.connected_master.$1"; }
	cp --sparse=always "$T/v" "$T/$v"
	start_client "$v" "$T/$v" master-1 --compress "$alg"
	wait_log "$T/client-$v.log" "connected to mirror .*protocol 2, compression $alg, 1 lane" 20
	wait_status "$v" state INSYNC 60
	[ "$(peer protocol)" = 2 ] || fail "$alg: the session is not protocol 2"
	[ "$(peer compression)" = "$alg" ] || fail "$alg: status says compression $(peer compression)"
	[ "$(mpeer compression)" = "$alg" ] || fail "$alg: the mirror says compression $(mpeer compression)"
	# Writes in INSYNC: 1 MiB of text at 30 MiB, as TXs.
	nbdsh -u "$(nbd_uri "$v")" -c "h.pwrite(open('/usr/share/common-licenses/GPL-3', 'rb').read()[:1<<20].ljust(1<<20, b'x'), 30 << 20); h.flush()"
	wait_converged "$T/$v" "$(mirror_extents "$v" 1)" 30
	data=$(peer data_bytes)
	wire=$(peer wire_bytes)
	[ "$data" -ge $((24 << 20)) ] || fail "$alg: only $data data bytes counted; the copy alone sent 24 MiB"
	if [ "$alg" = none ]; then
		[ "$wire" -eq "$data" ] || fail "none: $wire wire bytes for $data data bytes"
	else
		# The text halves at least; the random 8 MiB cannot shrink and goes raw.
		[ "$wire" -lt $((data * 3 / 4)) ] || fail "$alg: $wire wire bytes for $data data bytes"
		[ "$wire" -gt $((8 << 20)) ] || fail "$alg: $wire wire bytes; 8 MiB of random data cannot shrink"
		# The mirror counted the same bytes coming in.
		[ "$(mpeer wire_bytes)" -eq "$wire" ] && [ "$(mpeer data_bytes)" -eq "$data" ] ||
			fail "$alg: the mirror counted $(mpeer data_bytes)/$(mpeer wire_bytes), the master $data/$wire"
	fi
	echo "$alg: $data data bytes as $wire on the wire"
	stop "$CLIENT_PID"
}

replicated zstd
replicated lz4
replicated none
alive "$SERVER_PID" frep-server
pass "zstd, lz4 and none replicate byte-identical, copy and TXs; both sides count the wire"
