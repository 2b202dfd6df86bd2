#!/usr/bin/env bash
# A sparse multi-extent volume replicates: REPLICATE -> INSYNC, extents byte-identical.
source "$(dirname "$0")/lib.sh"
certs master-1

# Three extents of different sizes, partly allocated, one data run straddling a boundary.
mkvol "$T/e0" 48M; mkvol "$T/e1" 20M; mkvol "$T/e2" 64M
fill "$T/e0" 2 3 a; fill "$T/e0" 46 2 b; fill "$T/e1" 0 1 c; fill "$T/e2" 63 1 d
EXT="$T/e0,$T/e1,$T/e2"

# A stale mirror extent must become identical too: holes are punched on a thin mirror
# (a preallocated one zeroes them in place, keeping the space: test-thin-mirror.sh).
start_server --preallocate=sparse
start_client vol0 "$EXT"
wait_log "$SERVER_LOG" 'volume=vol0 .*state REPLICATE -> INSYNC' 30
wait_log "$T/client-vol0.log" 'state REPLICATE -> INSYNC' 10
M=$(mirror_extents vol0 3)
same_bytes "$EXT" "$M" || fail "mirror differs from master after INSYNC"
for i in 0 1 2; do
	[ "$(stat -c %s "$T/mirror/vol0/extent.$i")" = "$(stat -c %s "$T/e$i")" ] ||
		fail "extent.$i size differs"
done
# Sparse stays sparse: the mirror allocates no more than the master's data plus slack.
used=$(du -k --total "$T"/mirror/vol0/extent.* | tail -n1 | cut -f1)
[ "$used" -lt $((16 * 1024)) ] || fail "mirror extents use ${used}K, expected sparse (<16M)"

# A restart resumes sequencing without copying again (READY -> INSYNC).
stop "$CLIENT_PID"
start_client vol0 "$EXT"
wait_log "$T/client-vol0.log" 'state READY -> INSYNC' 20
alive "$SERVER_PID" frep-server
pass "3-extent sparse volume replicated byte-identical; restart went READY -> INSYNC"
