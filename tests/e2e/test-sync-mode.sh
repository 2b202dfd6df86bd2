#!/usr/bin/env bash
# Sync mode: an acknowledged write is on the mirror (kill -9 of the master right after
# loses nothing the mirror needs); when the mirror is unreachable, degrade after
# --degrade-after, or fail with EIO under --sync-fallback=fail.
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 8M; fill "$T/e0" 0 1 s
start_server --trace-tx "$T/mirror.trace"
start_client vol "$T/e0" master-1 --mode sync --degrade-after 2 \
	--trace-tx "$T/master.trace" --backoff 0.2:1
wait_status vol state INSYNC 20
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x5c 1M 64k' >/dev/null || fail "sync write"
# The write returned: kill -9 the master at once. The mirror must hold its TXID.
kill -KILL "$CLIENT_PID"
txid=$(tail -n1 "$T/master.trace" | sed -n 's/.*txid=\([0-9]*\).*/\1/p')
[ -n "$txid" ] || fail "no trace of the write"
# Restart the mirror: its recovered durable TXID must cover the acknowledged write.
kill -KILL "$SERVER_PID"
SERVER_PORT_WANTED=$SERVER_PORT start_server
wait_log "$SERVER_LOG" 'volume=vol recovered: durable TXID [0-9]+' 10
durable=$(grep -Eo 'volume=vol recovered: durable TXID [0-9]+' "$SERVER_LOG" | grep -Eo '[0-9]+$')
[ "$durable" -ge "$txid" ] || fail "mirror durable TXID $durable < acknowledged TXID $txid"

# Degrade: the mirror goes away, a sync write waits --degrade-after, then completes async.
JOURNAL=$T/vol.journal start_client vol "$T/e0" master-1 --mode sync --degrade-after 2 \
	--backoff 0.2:1
wait_status vol state INSYNC 20
stop "$SERVER_PID"
wait_for 10 "the master to leave INSYNC" status_not vol state INSYNC
start=$SECONDS
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x5d 2M 64k' >/dev/null || fail "degraded write failed"
waited=$((SECONDS - start))
wait_log "$T/client-vol.log" 'sync mode degraded to async' 5
[ "$(ctl_field vol mode)" = SYNC ] && [ "$(ctl_field vol degraded)" = true ] ||
	fail "status mode: $(ctl_field vol mode), degraded: $(ctl_field vol degraded)"
SERVER_PORT_WANTED=$SERVER_PORT start_server
wait_status vol state INSYNC 30
wait_log "$T/client-vol.log" 'sync mode restored' 5
stop "$CLIENT_PID"

# --sync-fallback=fail: the same outage gives the writer EIO instead.
JOURNAL=$T/vol.journal start_client vol "$T/e0" master-1 --mode sync --degrade-after 1 \
	--sync-fallback=fail --backoff 0.2:1
wait_status vol state INSYNC 20
stop "$SERVER_PID"
sleep 1.5 # past --degrade-after
rc=0
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x5e 3M 64k' >"$T/eio.out" 2>&1 || rc=$?
grep -q 'Input/output error' "$T/eio.out" || fail "expected EIO, got: $(cat "$T/eio.out")"
pass "sync write TXID $txid durable on the mirror (durable $durable) after kill -9 of both; degrade after 2s (write waited ${waited}s); fail mode gives EIO"
