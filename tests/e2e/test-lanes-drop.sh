#!/usr/bin/env bash
# Lanes (spec LANE-9, COPY-16): one lane cut in the middle of a copy is a lost link for the
# whole session: the mirror ends it, the master goes LINKDOWN, reconnects with all its lanes
# and resumes the copy from the mirror's cursor (the contiguous durable mark, LANE-8), and
# the mirror converges byte-identical.
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 48M; mkvol "$T/e1" 16M
fill "$T/e0" 0 48 a; fill "$T/e1" 0 16 b
EXT="$T/e0,$T/e1"
start_server
start_proxy
# --max-rate: 64 MiB at 8 MB/s, so the copy is still running when the lane goes.
SERVER_PORT=$PROXY_PORT start_client vol "$EXT" master-1 --lanes 3 --max-rate 8M --backoff 0.2:1
wait_log "$T/client-vol.log" 'lanes 1\.\.2 joined the session' 10

# The mirror's cursor has moved: a COPY_ACK made part of the copy durable.
cursor_moved() {
	grep -Eq '^copy_cursor=[1-9]' "$T/mirror/vol/meta"
}
wait_for 20 "the mirror's copy cursor to move" cursor_moved
conns=$(proxy_stat conns)
[ "$(tr ',' '\n' <<<"$conns" | wc -l)" = 3 ] || fail "expected 3 connections through the proxy, got $conns"
# The last one accepted is a joining lane (lane 0 always comes first).
lane_conn=${conns##*,}
pctl drop-now "$lane_conn" >/dev/null

wait_log "$T/server.log" 'lane [12]: .*the session ends \(LANE-9\)' 10
wait_log "$T/client-vol.log" 'state REPLICATE -> LINKDOWN' 10
grep -Eq 'WARN volume=vol mirror .*: lane [12]: ' "$T/client-vol.log" ||
	grep -Eq 'WARN volume=vol mirror .*: (connection closed by the mirror|mirror closed the session)' \
		"$T/client-vol.log" || fail "the master did not say why the link went down"
wait_log "$T/client-vol.log" 'resuming the interrupted copy at offset [1-9][0-9]*' 20
at=$(grep -Eo 'resuming the interrupted copy at offset [0-9]+' "$T/client-vol.log" | head -n1)
at=${at##* }
wait_log "$T/server.log" "copy resumes at offset $at" 10
wait_log "$T/client-vol.log" 'lanes 1\.\.2 joined the session' 10
[ "$(grep -c 'lanes 1\.\.2 joined the session' "$T/client-vol.log")" -ge 2 ] ||
	fail "the reconnected session did not open its lanes again"
wait_log "$T/client-vol.log" 'state REPLICATE -> INSYNC' 40
# The resumed pass sent only what lay past the cursor.
sent=$(grep -Eo 'copy walked [0-9]+ bytes \([0-9]+ data\)' "$T/client-vol.log" | tail -n1 |
	grep -Eo '\([0-9]+' | tr -d '(')
[ "$sent" -le $((64 * 1048576 - at)) ] || fail "the resumed pass sent $sent bytes, past the cursor $at"
wait_converged "$EXT" "$(mirror_extents vol 2)" 30
[ "$(proxy_stat drops)" = 1 ] || fail "expected exactly one cut"
alive "$SERVER_PID" frep-server
alive "$CLIENT_PID" frep-client
stop "$CLIENT_PID"
stop "$SERVER_PID"
pass "lane cut mid-copy: LINKDOWN, resumed at offset $at with 3 lanes ($sent bytes sent), converged"
