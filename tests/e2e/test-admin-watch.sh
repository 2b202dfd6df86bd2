#!/usr/bin/env bash
# The admin API never holds replication up, nor one caller another: a watcher that stops
# reading is dropped with RESOURCE_EXHAUSTED once 1000 events behind, while Status answers
# and writes replicate; silent connections and garbage block nobody. Operator settings
# (pause, set-rate) survive a restart of frep-client.
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 16M
M=$(mirror_extents vol 1)
start_server
start_client vol "$T/e0" master-1 --max-rate 20M
wait_status vol state INSYNC 20
SOCK=$FREP_RUN_DIR/client-vol.sock

# Two silent connections and one that sends garbage instead of HTTP/2.
/usr/bin/python3 - "$SOCK" "$T/silent.ready" <<'PY' &
import socket, sys, time
socks = [socket.socket(socket.AF_UNIX) for _ in range(3)]
for s in socks:
    s.connect(sys.argv[1])
socks[2].sendall(b"\0\1\2 not http/2 at all\r\n" * 8)
open(sys.argv[2], "w").close()
time.sleep(120)
PY
PIDS+=($!)
wait_for 10 "the silent connections" test -e "$T/silent.ready"

# A watcher that reads its first event, then stops reading.
# (Started directly, not through lib.sh's admin function: $! must be python's own PID.)
/usr/bin/python3 "$FREP_SRC/tests/tools/admin-client.py" "unix:$SOCK" Watch '{"volume": "vol"}' \
	--stall-until "$T/read-again" >"$T/watch.out" 2>"$T/watch.err" &
WATCHER=$!
PIDS+=("$WATCHER")
wait_for 10 "the watcher to stall" grep -q stalled "$T/watch.out"
# 3000 events (each full-resync request is one, and costs no disk write): past the 1000
# limit plus what the transport buffers for the stuck stream.
admin vol Resync '{"volume": "vol", "full": true}' --repeat 3000 --field message \
	>"$T/resyncs.out" || fail "Resync x3000: $(cat "$T/resyncs.out")"
wait_log "$T/client-vol.log" "admin: Watch from unix:.*: watcher fell [0-9]+ events behind \(limit 1000\): dropped" 20
# Meanwhile everything else goes on: Status answers, writes replicate.
wait_status vol state INSYNC 20
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x61 2M 1M' >/dev/null || fail "write"
wait_converged "$T/e0" "$M" 20
# The watcher, reading again, learns why its stream ended.
touch "$T/read-again"
rc=0
wait "$WATCHER" || rc=$?
[ $rc -eq 1 ] || fail "the dropped watcher exited $rc: $(cat "$T/watch.err")"
grep -Eq '^RESOURCE_EXHAUSTED: watcher fell [0-9]+ events behind \(limit 1000\): dropped; reconnect to get the current state$' \
	"$T/watch.err" || fail "dropped watcher's status: $(cat "$T/watch.err")"

# Settings persist: pause and a rate, then a restart of frep-client.
admin vol SetRate '{"volume": "vol", "bytes_per_second": 8388608}' >/dev/null || fail "SetRate 8M"
ctl vol pause | grep -q '^ok pausing vol' || fail "pause"
wait_status vol state IDLE 10
stop "$CLIENT_PID"
start_client vol "$T/e0" master-1 --max-rate 20M
wait_log "$T/client-vol.log" 'copy rate 8\.0M/s set by the operator \(frepctl set-rate\) overrides --max-rate' 10
wait_log "$T/client-vol.log" 'paused by the operator: sequencing stays paused until `frepctl resume vol`' 10
# Back in sync, the master pauses again by itself.
wait_log "$T/client-vol.log" 'state INSYNC -> IDLE \(event PAUSE\)' 20
[ "$(ctl_field vol paused)" = true ] || fail "paused after the restart: $(ctl_field vol paused)"
[ "$(ctl_field vol max_rate_bps)" = 8388608 ] || fail "rate after the restart: $(ctl_field vol max_rate_bps)"
ctl vol resume | grep -q '^ok resuming vol$' || fail "resume"
wait_status vol state INSYNC 10

# A watcher stopped dead (^Z on frepctl watch) with events piled up in its socket does not
# hold up the daemon's shutdown: stuck calls are abandoned, and SIGTERM still exits 0
# within stop's 10 s.
"$BIN/frepctl" --admin "unix:$SOCK" --json watch vol >"$T/frozen.out" 2>&1 &
FROZEN=$!
PIDS+=("$FROZEN")
wait_for 10 "the frozen watcher's first events" grep -q INITIAL_DONE "$T/frozen.out"
kill -STOP "$FROZEN"
admin vol Resync '{"volume": "vol", "full": true}' --repeat 600 --field message >/dev/null ||
	fail "Resync x600"
wait_status vol state INSYNC 20
stop "$CLIENT_PID"
grep -q 'admin: 1 call(s) still stuck on peers that do not read after 5000 ms; stopping without them' \
	"$T/client-vol.log" || fail "no word of the abandoned watcher: $(tail -n 5 "$T/client-vol.log")"
kill -CONT "$FROZEN"
kill "$FROZEN" 2>/dev/null || true

alive "$SERVER_PID" frep-server
stop "$SERVER_PID"
pass "stuck watcher dropped (RESOURCE_EXHAUSTED) while Status and replication went on; silent and garbage connections harmless; pause and rate survive a restart; a frozen watcher does not hold up SIGTERM"
