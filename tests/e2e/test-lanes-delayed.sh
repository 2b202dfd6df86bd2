#!/usr/bin/env bash
# Lanes (spec LANE-6..8): a copy over three lanes, one of them 500 ms late (fault proxy),
# while a writer writes across the volume: no copy record late on its lane overwrites a
# newer write (the mirror, stopped under load once in sync, is the master after exactly
# the writes up to its TXID: tests/tools/frep-check.py prefix), and the mirror converges
# byte-identical.
source "$(dirname "$0")/lib.sh"
certs master-1
PY=/usr/bin/python3
W=("$PY" "$FREP_SRC/tests/tools/frep-write.py")
C=("$PY" "$FREP_SRC/tests/tools/frep-check.py")
MAXLEN=16384

mkvol "$T/e0" 24M; mkvol "$T/e1" 8M
fill "$T/e0" 0 24 a; fill "$T/e1" 2 4 b
cp "$T/e0" "$T/i0"; cp "$T/e1" "$T/i1"
EXT="$T/e0,$T/e1"
start_server
start_proxy
# Connection 1 is lane 0, 2 and 3 the joining lanes: lane 1 runs half a second late,
# both ways, for the whole copy.
pctl delay 500 2 >/dev/null
# --max-rate stretches the 28 MiB copy over about 5 s, so the writer's TXs land
# while records read before them are still on their way.
SERVER_PORT=$PROXY_PORT start_client vol "$EXT" master-1 --lanes 3 --max-rate 6M \
	--trace-tx "$T/master.trace"
"${W[@]}" --uri "$(nbd_uri vol)" --seed s --duration 16 --depth 4 --rate 400 --ops write \
	--max-len $MAXLEN >"$T/writer.out" 2>"$T/writer.log" &
WPID=$!
PIDS+=("$WPID")

wait_log "$T/client-vol.log" 'lanes 1\.\.2 joined the session' 10
wait_log "$T/server.log" 'lane 2 of 3 joined session' 10
wait_log "$T/client-vol.log" 'state REPLICATE -> INSYNC' 40
during=$(grep -Eo 'sequencing TXIDs [0-9]+\.\.[0-9]+' "$T/client-vol.log" | head -n1)
first=${during#sequencing TXIDs }; last=${first#*..}; first=${first%..*}
[ "$last" -ge "$first" ] || fail "no write landed during the copy ($during)"
grep -q 'mirror buffer overflowed' "$T/client-vol.log" && fail "the writer overflowed the buffer"
[ "$(mctl --json status vol | jq -r '.volumes[0].mirror.connected_master.lanes')" = 3 ] ||
	fail "the mirror's status does not show 3 lanes: $(mctl --json status vol)"
[ "$(ctl vol status | jq -r '.volumes[0].master.peer.lanes')" = 3 ] ||
	fail "the master's status does not show 3 lanes: $(ctl vol status)"

# In sync and still written to: stop the mirror there. What it holds must be the
# master after exactly the TXIDs up to the last one it applied.
before=$(ctl_field vol committed_txid)
wait_for 10 "writes past TXID $before in sync" committed_above vol $((before + 200))
kill -0 "$WPID" 2>/dev/null || fail "the writer stopped before the mirror: $(tail -n2 "$T/writer.log")"
stop "$SERVER_PID"
out=$("${C[@]}" prefix --initial "$T/i0,$T/i1" --master-trace "$T/master.trace" \
	--mirror-dir "$T/mirror/vol" --seed s --max-len $MAXLEN --txid-from applied) ||
	fail "prefix consistency after a copy over a late lane: $out"
echo "$out"
# The late lane carried copy records: more than the handshake went up connection 2
# (logged once the master, told the mirror went away, closed its lanes too).
wait_log "$T/proxy.log" 'connection 2 [a-z() ]+ after [0-9]+ bytes up' 10
lane1=$(grep -Eo 'connection 2 [a-z() ]+ after [0-9]+ bytes up' "$T/proxy.log" | grep -Eo '[0-9]+ bytes' | cut -d' ' -f1)
[ "${lane1:-0}" -gt 1048576 ] || fail "the delayed lane carried ${lane1:-no} bytes: $(grep 'connection 2' "$T/proxy.log")"

# Back up on the same port; the master catches up through the proxy (no delay now).
SERVER_PORT_WANTED=$SERVER_PORT start_server
kill -TERM "$WPID"
wait "$WPID" 2>/dev/null || true
wait_status vol state INSYNC 30
wait_status vol lag_tx 0 30
wait_converged "$EXT" "$(mirror_extents vol 2)" 30
alive "$SERVER_PID" frep-server
alive "$CLIENT_PID" frep-client
stop "$CLIENT_PID"
stop "$SERVER_PID"
pass "a copy over 3 lanes, lane 1 500 ms late, under writes ($during during it): prefix consistent, converged"
