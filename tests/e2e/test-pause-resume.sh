#!/usr/bin/env bash
# Operator pause and resume through the admin API: IDLE holds sequencing while local
# writes go on into the buffer; resume catches up. Pause is refused outside INSYNC, resume
# when not paused.
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 16M; fill "$T/e0" 0 4 p
M=$(mirror_extents vol 1)
start_server
start_client vol "$T/e0" master-1
wait_status vol state INSYNC 20
out=$(ctl vol resume)
[ "$out" = "error FAILED_PRECONDITION: vol is not paused (state INSYNC)" ] || fail "resume in INSYNC: $out"
ctl vol pause | grep -q '^ok pausing vol' || fail "pause refused in INSYNC"
wait_status vol state IDLE 10
wait_log "$SERVER_LOG" 'volume=vol .*state INSYNC -> IDLE' 10
out=$(ctl vol pause)
[ "$out" = "error FAILED_PRECONDITION: vol is already paused (state IDLE)" ] || fail "second pause: $out"

# Writes while paused: accepted locally, held in the buffer, not on the mirror.
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x77 8M 1M' >/dev/null || fail "write while paused"
sleep 1 # the mirror must NOT change: give sequencing a chance to misbehave
same_bytes "$T/e0" "$M" && fail "mirror changed while paused"
lag=$(ctl_field vol lag_tx)
[ "$lag" -ge 1 ] || fail "status shows lag_tx=$lag while paused with a pending write"
# lag_bytes: the buffer bytes of those records (1 MiB of data and their headers).
lag_bytes=$(ctl_field vol lag_bytes)
[ "$lag_bytes" -gt $((1 << 20)) ] && [ "$lag_bytes" -lt $((1100 << 10)) ] ||
	fail "status shows lag_bytes=$lag_bytes for 1 MiB unacknowledged"

ctl vol resume | grep -q '^ok resuming vol$' || fail "resume refused in IDLE"
wait_status vol state INSYNC 10
wait_converged "$T/e0" "$M" 20
wait_status vol lag_tx 0 10
# Acknowledged records are no lag, freed or not.
[ "$(ctl_field vol lag_bytes)" = 0 ] || fail "lag_bytes=$(ctl_field vol lag_bytes) with lag_tx=0"
alive "$SERVER_PID" frep-server
pass "pause -> IDLE (writes held, lag_tx=$lag), resume -> INSYNC, converged"
