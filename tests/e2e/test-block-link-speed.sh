#!/usr/bin/env bash
# The block policy under writes that outrun a capped link (fault proxy `rate`): writers
# wait for room instead of cracking, the buffer turns over many times (records are freed
# as the mirror acknowledges them), the mirror never leaves INSYNC, status says the writes
# outrun the link with both rates, and afterwards the mirror is byte-equal with a clean
# bitmap. How close to the link's speed it runs is a benchmark row (bench/run.sh
# sustained), not asserted here.
source "$(dirname "$0")/lib.sh"
certs master-1

CAP=4 # MB/s
MIB=32
JOURNAL_MIB=2
mkvol "$T/e0" ${MIB}M
fill "$T/e0" 0 $MIB blk
M=$(mirror_extents vol 1)
LOG=$T/client-vol.log
start_server
start_proxy
SERVER_PORT=$PROXY_PORT start_client vol "$T/e0" master-1 --journal-size ${JOURNAL_MIB}M \
	--on-buffer-full=block
wait_status vol state INSYNC 30
pctl rate $CAP >/dev/null
up0=$(proxy_stat up)

# Full speed for 8 s: about 32 MB can cross the link, 16 times the buffer.
timeout 40 fio --name=block --ioengine=nbd --uri="$(nbd_uri vol)" --rw=randwrite --bs=64k \
	--iodepth=8 --size=${MIB}m --time_based --runtime=8 --output-format=json \
	--output="$T/fio.json" >"$T/fio.log" 2>&1 &
FIO_PID=$!
PIDS+=("$FIO_PID")
wait_log "$LOG" 'mirror buffer full at TXID [0-9]+: writers wait for the mirror' 20
outrun_seen() {
	[ "$(ctl_field vol outrun)" = true ]
}
wait_for 15 "status to say the writes outrun the link" outrun_seen
wait_log "$LOG" 'writes outrun the link to the mirror: dirtying [0-9.]+[KM]?/s, draining [0-9.]+[KM]?/s' 5
wait "$FIO_PID" || fail "fio failed: $(tail -n 5 "$T/fio.log")"
written=$(/usr/bin/python3 -c "import json; print(json.load(open('$T/fio.json'))['jobs'][0]['write']['io_bytes'])")
[ "$written" -gt $((4 * JOURNAL_MIB << 20)) ] ||
	fail "only $written bytes written: the buffer did not turn over (records not freed as acknowledged)"

grep -q 'mirror cracked' "$LOG" && fail "the block policy cracked: $(grep 'mirror cracked' "$LOG" | head -n1)"
grep -Eq 'state INSYNC -> ' "$LOG" && fail "the mirror left INSYNC: $(grep -E 'state INSYNC -> ' "$LOG" | head -n1)"
wait_status vol lag_tx 0 30
pctl rate 0 >/dev/null
wait_converged "$T/e0" "$M" 30
[ "$(dirty_regions vol)" = 0 ] || fail "dirty regions after the block policy: $(ctl vol status)"
up=$(($(proxy_stat up) - up0))
[ "$up" -ge "$written" ] || fail "$up bytes crossed the link for $written written: the mirror missed some"
wait_status vol outrun false 15
wait_log "$LOG" 'the mirror keeps up again' 5
pass "block policy: $written bytes written through a $CAP MB/s link and a ${JOURNAL_MIB} MiB buffer, no crack, INSYNC throughout"
