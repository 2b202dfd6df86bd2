#!/usr/bin/env bash
# --on-buffer-full=block: while the link stalls, writers wait instead of cracking; all
# complete once it flows again, and the mirror never goes OUTOFSYNC. Past --degrade-after
# of unreachability, block degrades to crack. Dead links are found by heartbeats.
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 32M; fill "$T/e0" 0 8 k
M=$(mirror_extents vol 1)
LOG=$T/client-vol.log
start_server
start_proxy
SERVER_PORT=$PROXY_PORT start_client vol "$T/e0" master-1 --journal-size 2M \
	--on-buffer-full=block --degrade-after 30 --heartbeat-timeout 30
wait_status vol state INSYNC 20

# Stall the link, then write 4 MiB (twice the buffer): the writer must block.
pctl stall >/dev/null
/usr/bin/python3 - "$T/vol.sock" >"$T/writer.log" 2>&1 <<'PY' &
import nbd, sys, time
h = nbd.NBD()
h.connect_unix(sys.argv[1])
for i in range(64):
    h.pwrite(bytes([i]) * 65536, i * 65536 + (16 << 20))
    print("wrote", i, time.time(), flush=True)
h.shutdown()
print("done", flush=True)
PY
WRITER=$!
PIDS+=("$WRITER")
wait_log "$LOG" 'mirror buffer full at TXID [0-9]+: writers wait' 20
sleep 1 # the writer must stay blocked while the link is stalled
n=$(grep -c '^wrote' "$T/writer.log" || true)
[ "$n" -lt 64 ] || fail "all writes completed during the stall"
grep -q done "$T/writer.log" && fail "writer finished during the stall"
pctl unstall >/dev/null
wait_for 30 "blocked writes to complete" grep -q done "$T/writer.log"
wait "$WRITER" || fail "writer failed: $(cat "$T/writer.log")"
wait_converged "$T/e0" "$M" 20
grep -q 'OUTOFSYNC\|cracked' "$LOG" && fail "block policy cracked the mirror"
echo "blocked after $n of 64 writes during the stall"

# A silent link (stalled, no TCP error) is found by the heartbeat timeout.
stop "$CLIENT_PID"
: >"$LOG"
SERVER_PORT=$PROXY_PORT start_client vol "$T/e0" master-1 --journal-size 2M \
	--on-buffer-full=block --degrade-after 2 --heartbeat-timeout 1.5 --backoff 0.2:1
wait_status vol state INSYNC 20
pctl stall >/dev/null
wait_log "$LOG" 'no frame from the mirror for [0-9]+ ms \(--heartbeat-timeout\)' 10
wait_log "$LOG" 'state INSYNC -> LINKDOWN' 5
# Unreachable past --degrade-after: block degrades to crack, writes complete locally.
pctl refuse on >/dev/null
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x44 8M 3M' >/dev/null || fail "writes while degraded"
wait_log "$LOG" 'block policy degraded to crack' 10
wait_log "$LOG" 'mirror cracked' 10
pctl unstall >/dev/null
pctl refuse off >/dev/null
wait_status vol state INSYNC 30
wait_log "$LOG" 'restored' 5
wait_converged "$T/e0" "$M" 20
alive "$SERVER_PID" frep-server
pass "block held $((64 - n)) writes during a stall without cracking; heartbeat found the dead link; degraded to crack after 2 s"
