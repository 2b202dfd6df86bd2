#!/usr/bin/env bash
# No lock across I/O on the master: with the mirror link stalled, async writes complete; with a slow journal fdatasync (crashfs delay), reads complete while a write waits, and writes in flight share the slow sync.
source "$(dirname "$0")/lib.sh"
certs master-1
SHIM=${FREP_CRASHFS:-$BIN/tests/crashfs.so}
[ -f "$SHIM" ] || fail "crashfs shim not built: $SHIM"
MIB=1048576

# drained NAME: the mirror acknowledged every TXID NAME committed.
drained() {
	[ "$(ctl_field "$1" acked_txid)" = "$(ctl_field "$1" committed_txid)" ]
}

# fio_writes NAME BS IO_SIZE TIMEOUT_S: random writes at depth 16 through fio's nbd
# engine; fails unless all of them complete within TIMEOUT_S. Prints the count.
fio_writes() {
	timeout "$4" fio --name="$1" --ioengine=nbd --uri="$(nbd_uri "$1")" --rw=randwrite --bs="$2" \
		--iodepth=16 --size=64M --io_size="$3" --randrepeat=1 --output-format=json \
		--output="$T/fio-$1.json" >"$T/fio-$1.log" 2>&1 ||
		fail "fio writes on $1 did not all complete within $4 s (exit $?): $(tail -n 5 "$T/fio-$1.log")"
	/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["jobs"][0]["write"]["total_ios"])' \
		"$T/fio-$1.json"
}

start_server
start_proxy

echo "1. mirror link stalled: async writes go on"
# A sparse volume: the initial copy is small, so the proxy's receive buffer stays
# small and the batch below overruns everything the stalled link can hold.
mkvol "$T/a0" 64M
SERVER_PORT=$PROXY_PORT start_client stall "$T/a0" master-1 \
	--heartbeat-timeout 60
wait_status stall state INSYNC
pctl stall >/dev/null
c0=$(ctl_field stall committed_txid)
a0=$(ctl_field stall acked_txid)
BATCH=$((32 * MIB))
n=$(fio_writes stall 256k $BATCH 20)
[ "$n" -eq $((BATCH / (256 * 1024))) ] || fail "fio wrote $n writes, want $((BATCH / (256 * 1024)))"
st=$(ctl stall status)
c1=$(ctl_field stall committed_txid)
a1=$(ctl_field stall acked_txid)
[ "$c1" -eq $((c0 + n)) ] || fail "committed_txid $c0 -> $c1 after $n writes: $st"
[ "$a1" = "$a0" ] || fail "acked_txid moved $a0 -> $a1 with the link stalled: $st"
status_is stall state INSYNC || fail "not INSYNC with the link stalled: $st"
# The link holds less than the batch: the sender had committed records it could not
# send, so the writes above completed while it was stuck behind a full socket.
# ss: the client's socket to the proxy (Send-Q), the proxy's accepted one (Recv-Q).
sendq=$(ss -tnH state established "( dport = :$PROXY_PORT )" | awk '{ s += $2 } END { print s + 0 }')
recvq=$(ss -tnH state established "( sport = :$PROXY_PORT )" | awk '{ s += $1 } END { print s + 0 }')
held=$((sendq + recvq + MIB)) # + the proxy's own queue (QUEUE_MAX in fault-proxy.c)
echo "  $n writes ($BATCH bytes) committed in the stall; the link holds $held bytes (Send-Q $sendq, Recv-Q $recvq)"
[ "$sendq" -gt 0 ] || fail "the client's socket to the proxy has nothing queued: the sender never reached the stalled link"
[ "$held" -lt $BATCH ] || fail "the stalled link could hold all $BATCH bytes ($held): the batch proves nothing"
pctl unstall >/dev/null
wait_for 30 "the mirror to acknowledge the stalled writes" drained stall
wait_converged "$T/a0" "$(mirror_extents stall 1)"

echo "2. slow journal fdatasync: reads go on, writes in flight share it"
DELAY_MS=2000
mkvol "$T/b0" 16M
fill "$T/b0" 0 16 "b"
# Only the journal's syncs are slow (not its .meta or .bitmap, nor the volume).
# The shim logs each delayed sync as it starts: the test waits for that line (the
# status line is no witness: it may wait for a lock held across the sync).
DELAYS=$T/delays.log
LD_PRELOAD=$SHIM ASAN_OPTIONS="$ASAN_OPTIONS:verify_asan_link_order=0" CRASHFS_SYNC_DELAY_MS=$DELAY_MS \
	CRASHFS_SYNC_DELAY_PATH="$T/slow.journal" CRASHFS_SYNC_DELAY_LOG=$DELAYS \
	start_client slow "$T/b0" master-1
wait_status slow state INSYNC 40
wait_for 30 "the mirror to acknowledge the copy" drained slow

# delays_past N: more than N delayed syncs have started.
delays_past() {
	[ "$(wc -l <"$DELAYS")" -gt "$1" ]
}

# 2a. One write waits in the slow sync; reads of other blocks, on a second connection
# and on the write's own, complete before its reply.
delays0=$(wc -l <"$DELAYS")
URI=$(nbd_uri slow) VOLFILE=$T/b0 STEP=$T/step DELAY_MS=$DELAY_MS timeout 30 nbdsh -u "$(nbd_uri slow)" -c '
import os, sys, time
step, delay_ms = os.environ["STEP"], int(os.environ["DELAY_MS"])
data = bytes((i * 7 + 3) & 255 for i in range(65536))
t0 = time.monotonic()
cookie = h.aio_pwrite(nbd.Buffer.from_bytearray(data), 0)
h2 = nbd.NBD()
h2.connect_uri(os.environ["URI"])
open(step + ".issued", "w").close()
while not os.path.exists(step + ".syncing"):	# the shim logged the slow sync
    h.poll(10)
    if time.monotonic() - t0 > 10:
        sys.exit("the write never reached the journal fdatasync")
vol = open(os.environ["VOLFILE"], "rb")
for name, conn in (("a second connection", h2), ("the same connection", h)):
    r0 = time.monotonic()
    for k in range(1, 17):
        off = k * 1048576 - 4096
        vol.seek(off)
        if conn.pread(4096, off) != vol.read(4096):
            sys.exit("read at %d on %s returned the wrong bytes" % (off, name))
    if h.aio_command_completed(cookie):
        sys.exit("16 reads on %s finished only after the pending write was replied to (%.0f ms): "
                 "reads waited for the journal fdatasync" % (name, (time.monotonic() - r0) * 1000))
    print("16 reads on %s: %.0f ms, the write still pending" % (name, (time.monotonic() - r0) * 1000))
while not h.aio_command_completed(cookie):
    h.poll(1000)
    if time.monotonic() - t0 > 20:
        sys.exit("the write was not replied to within 20 s")
took = (time.monotonic() - t0) * 1000
if took < delay_ms:
    sys.exit("the write took %.0f ms < the %d ms sync delay: the delay is not in effect" % (took, delay_ms))
if h.pread(len(data), 0) != data:
    sys.exit("the write does not read back")
print("the write was replied to after %.0f ms" % took)
' >"$T/reads.log" 2>&1 &
READER=$!
wait_for 10 "the write to be issued" test -f "$T/step.issued"
wait_for 10 "the write's journal fdatasync to start" delays_past "$delays0"
touch "$T/step.syncing"
wait "$READER" || fail "reads during a slow fdatasync: $(cat "$T/reads.log")"
sed 's/^/  /' "$T/reads.log"

# 2b. Eight writes in flight together share the slow fdatasyncs: at most two (one
# may already be under way when the others arrive).
wait_for 30 "the mirror to acknowledge" drained slow
appends0=$(ctl_field slow journal_appends)
syncs0=$(ctl_field slow journal_syncs)
DELAY_MS=$DELAY_MS timeout 40 nbdsh -u "$(nbd_uri slow)" -c '
import os, sys, time
t0 = time.monotonic()
bufs = {}
for k in range(8):
    data = bytes([k + 1]) * 65536
    bufs[h.aio_pwrite(nbd.Buffer.from_bytearray(data), (k + 1) * 1048576)] = data
while h.aio_in_flight() > 0:
    h.poll(1000)
    if time.monotonic() - t0 > 35:
        sys.exit("8 writes not replied to within 35 s")
for k, cookie in enumerate(bufs):
    if not h.aio_command_completed(cookie):
        sys.exit("write %d failed" % k)
    if h.pread(65536, (k + 1) * 1048576) != bufs[cookie]:
        sys.exit("write %d does not read back" % k)
print("8 writes replied to in %.0f ms" % ((time.monotonic() - t0) * 1000))
' >"$T/writes.log" 2>&1 || fail "8 concurrent writes: $(cat "$T/writes.log")"
appends=$(($(ctl_field slow journal_appends) - appends0))
syncs=$(($(ctl_field slow journal_syncs) - syncs0))
echo "  $(cat "$T/writes.log"): journal_appends +$appends journal_syncs +$syncs"
[ "$appends" -eq 8 ] || fail "journal_appends grew by $appends for 8 writes"
[ "$syncs" -le 2 ] ||
	fail "8 writes in flight took $syncs journal fdatasyncs of $DELAY_MS ms: want <= 2 (they share one sync)"

wait_for 30 "the mirror to acknowledge the writes" drained slow
wait_converged "$T/b0" "$(mirror_extents slow 1)"
alive "$CLIENT_PID" frep-client
pass "writes complete with the link stalled; reads complete during a ${DELAY_MS} ms fdatasync; 8 writes shared $syncs syncs"
