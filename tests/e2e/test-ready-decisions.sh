#!/usr/bin/env bash
# READY decisions after restarts: a renewed certificate keeps ownership; writes made while
# the mirror was down are resent from its durable TXID; a mirror ahead of the master is ERROR.
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 16M; mkvol "$T/e1" 16M; fill "$T/e0" 1 4 a; fill "$T/e1" 0 2 b
EXT="$T/e0,$T/e1"
M=$(mirror_extents vol 2)
LOG=$T/client-vol.log
start_server
start_client vol "$EXT"
wait_log "$LOG" 'state REPLICATE -> INSYNC' 20
# The progress line carries every figure operators rely on.
grep -Eq 'progress state=REPLICATE copied=[0-9.]+[KMGT]? total=[0-9.]+[KMGT]? rate=[0-9.]+[KMGT]?/s eta=[^ ]+ lag_tx=[0-9]+ lag_bytes=[0-9.]+[KMGT]? buffer_free=[0-9]+%' "$LOG" ||
	fail "no well-formed progress line"
same_bytes "$EXT" "$M" || fail "not identical after the first copy"

# A renewed certificate (new key, same CN, same CA) keeps ownership.
stop "$CLIENT_PID"
mkdir -p "$T/renewed" && cp "$PKI"/ca.* "$T/renewed/"
bash "$FREP_SRC/scripts/gen-certs.sh" "$T/renewed" master-1
cmp -s "$PKI/master-1.key" "$T/renewed/master-1.key" && fail "renewed key equals the old one"
: >"$LOG"
PKI=$T/renewed start_client vol "$EXT"
wait_log "$LOG" 'state READY -> INSYNC' 20
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x11 0 64k' >/dev/null
wait_converged "$EXT" "$M" 20

# Snapshot of the master's buffer for the last case (the client is stopped for it).
stop "$CLIENT_PID"
cp "$T/vol.journal" "$T/old.journal"; cp "$T/vol.journal.meta" "$T/old.journal.meta"
: >"$LOG"
start_client vol "$EXT"
wait_log "$LOG" 'state READY -> INSYNC' 20

# The mirror goes away; the master keeps taking writes and resends them when it returns.
stop "$SERVER_PID"
wait_log "$LOG" 'state INSYNC -> LINKDOWN' 10
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x22 1M 1M' -c "write -P 0x33 $((16 * 1048576 - 4096)) 8k" \
	-c 'discard 3M 1M' >/dev/null || fail "writes while the mirror is down"
SERVER_PORT_WANTED=$SERVER_PORT start_server
wait_log "$LOG" 'state LINKDOWN -> INIT' 40
wait_log "$LOG" 'mirror consistent at TXID [0-9]+; resending from [0-9]+' 20
wait_converged "$EXT" "$M" 20
qemu-io -f raw -r "$(nbd_uri vol)" -c 'read -P 0x22 1M 1M' | grep -q 'read 1048576/1048576' ||
	fail "master lost a write made while the mirror was down"

# Restoring an old mirror buffer makes the mirror ahead of the master: severe AHEAD.
stop "$CLIENT_PID"
cp "$T/old.journal" "$T/vol.journal"; cp "$T/old.journal.meta" "$T/vol.journal.meta"
: >"$LOG"
start_client vol "$EXT"
wait_log "$LOG" 'state READY -> ERROR.*AHEAD.*mirror holds TXID [0-9]+ but the master committed only up to [0-9]+' 20
wait_log "$SERVER_LOG" 'AHEAD' 5
alive "$SERVER_PID" frep-server
alive "$CLIENT_PID" "frep-client in ERROR"
pass "renewed cert kept ownership; resend after mirror restart converged; mirror-ahead is ERROR"
