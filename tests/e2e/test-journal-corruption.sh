#!/usr/bin/env bash
# Corruption of the mirror's journal in the middle (not a torn tail) is never applied:
# the volume is refused with the severe CHECKSUM error, the master goes to ERROR with
# the reason, and the server keeps serving other volumes.
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 8M; fill "$T/e0" 0 1 c
mkvol "$T/o0" 4M; fill "$T/o0" 0 1 o
start_server
start_client vol "$T/e0" master-1 --mode sync --backoff 0.2:1
wait_status vol state INSYNC 20
# Sync mode: each write is its own mirror batch, fdatasync'd before the next one.
for i in 1 2 3 4 5 6; do
	qemu-io -f raw "$(nbd_uri vol)" -c "write -P $((0x40 + i)) $((i << 20)) 64k" >/dev/null
done
kill -KILL "$SERVER_PID"
stop "$CLIENT_PID"

# Flip one data byte of the third-newest record of the mirror journal.
bad=$(corrupt_journal_record "$T/mirror/vol/journal" 3)
SERVER_PORT_WANTED=$SERVER_PORT start_server
wait_log "$SERVER_LOG" "volume=vol recovery failed: .*corrupt record TXID $bad .*to recover, remove $T/mirror/vol on the mirror" 10
: >"$T/client-vol.log"
start_client vol "$T/e0" master-1 --backoff 0.2:1
wait_log "$T/client-vol.log" 'state INIT -> ERROR .*CHECKSUM.*corrupt record' 20
[ "$(ctl_field vol state)" = ERROR ] && ctl_field vol error | grep -q CHECKSUM ||
	fail "status: state $(ctl_field vol state), last error $(ctl_field vol error)"

# The server still serves another master's volume.
JOURNAL=$T/o.journal start_client other "$T/o0" master-1
wait_log "$SERVER_LOG" 'volume=other .*state REPLICATE -> INSYNC' 20
alive "$SERVER_PID" frep-server
pass "a corrupt record inside the mirror journal is refused (CHECKSUM, severe), never applied"
