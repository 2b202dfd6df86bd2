#!/usr/bin/env bash
# A damaged committed record at the head of the master's journal is never dropped as a
# torn tail (its TXID may be on the mirror, and a new write reusing it would be ignored
# there as a duplicate, SEQ-8). frep-client keeps serving the volume, the replication
# stops in ERROR (CHECKSUM) naming the journal, the TXID and the recovery, new writes get
# TXIDs above the damaged one, and the recovery (a restart: a full resync) converges.
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 8M
fill "$T/e0" 0 1 c
M=$(mirror_extents vol 1)
start_server
start_client vol "$T/e0" master-1 --backoff 0.2:1 --trace-tx "$T/trace"
wait_status vol state INSYNC 20
# Paused, writes commit and apply locally and stay in the journal; a clean stop marks
# them committed (the durable-through mark).
ctl vol pause | grep -q '^ok' || fail "pause"
wait_status vol state IDLE 10
for i in 1 2 3; do
	qemu-io -f raw "$(nbd_uri vol)" -c "write -P $((0x50 + i)) $((i << 20)) 64k" >/dev/null
done
stop "$CLIENT_PID"

# Flip one data byte of the newest record: nothing follows it, only the mark covers it.
newest=$(corrupt_journal_record "$T/vol.journal" 1)

: >"$T/client-vol.log"
server_mark=$(wc -l <"$SERVER_LOG")
start_client vol "$T/e0" master-1 --backoff 0.2:1 --trace-tx "$T/trace"
LOG=$T/client-vol.log
wait_log "$LOG" "state NEW -> ERROR \(event JOURNAL_FAIL\) reason: CHECKSUM: journal $T/vol.journal: corrupt record TXID $newest .*committed through TXID $newest" 10
grep -q 'To recover, restart frep-client: it resyncs the whole volume to the mirror' "$LOG" ||
	fail "the error lacks the recovery: $(grep ERROR "$LOG")"
[ "$(ctl_field vol state)" = ERROR ] || fail "state $(ctl_field vol state), not ERROR"
ctl_field vol error | grep -q "^CHECKSUM: .*TXID $newest" || fail "last error: $(ctl_field vol error)"
dirty=$(dirty_regions vol)
[ "$dirty" = 128 ] || fail "the whole 8 MiB volume (128 regions) must be dirty, status says $dirty"
tail -n +"$((server_mark + 1))" "$SERVER_LOG" | grep -q 'state .* -> INSYNC' &&
	fail "the mirror went INSYNC with the damaged master"

# The volume is served as it is: the write of the damaged record was applied before the
# clean stop, and a new write goes in with a TXID above it.
qemu-io -f raw "$(nbd_uri vol)" -c "read -P $((0x53)) $((3 << 20)) 64k" >/dev/null ||
	fail "the master volume lost the write of TXID $newest"
qemu-io -f raw "$(nbd_uri vol)" -c "write -P 0x66 $((5 << 20)) 64k" >/dev/null || fail "write while in ERROR"
next=$(tail -n1 "$T/trace" | grep -Eo 'txid=[0-9]+' | cut -d= -f2)
[ "$next" -gt "$newest" ] || fail "a new write got TXID $next, not above the damaged TXID $newest"

# The operator's pause outlived the restart; lifted now, it lets sequencing go on later.
[ "$(ctl_field vol paused)" = true ] || fail "the pause did not survive the restart"
ctl vol resume | grep -q '^ok vol: pause lifted; sequencing goes on once the mirror is in sync (state ERROR)$' ||
	fail "resume in ERROR: $(ctl vol resume)"
[ "$(ctl_field vol paused)" = false ] || fail "still paused after resume"

# The recovery the message gives: a restart resyncs the whole volume.
stop "$CLIENT_PID"
start_client vol "$T/e0" master-1 --backoff 0.2:1
wait_status vol state INSYNC 20
wait_converged "$T/e0" "$M" 20
[ "$(dirty_regions vol)" = 0 ] || fail "bitmap not clean after the resync: $(ctl vol status)"
alive "$SERVER_PID" frep-server
pass "a damaged newest committed record: ERROR naming TXID $newest, volume served, TXID $next next, a restart resyncs and converges"
