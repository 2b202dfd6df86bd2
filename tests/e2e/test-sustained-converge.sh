#!/usr/bin/env bash
# Sustained load over a capped link (fault proxy `rate`): after an overload has cracked
# the mirror, it gets back to INSYNC while writes go on below the link rate. Every crack
# during a resync pass keeps what the pass copied (CRK-5), so the dirty set shrinks pass
# by pass; then the writer stops and the mirror is byte-equal with a clean bitmap.
source "$(dirname "$0")/lib.sh"
certs master-1

CAP=4 # MB/s: the link, slower than this machine writes
MIB=32
mkvol "$T/e0" ${MIB}M
fill "$T/e0" 0 $MIB sus
M=$(mirror_extents vol 1)
LOG=$T/client-vol.log
start_server
start_proxy
SERVER_PORT=$PROXY_PORT start_client vol "$T/e0" master-1 --journal-size 4M
wait_status vol state INSYNC 30
pctl rate $CAP >/dev/null

# fio_writer NAME SECONDS [FIO ARGS...]: 64 KiB random writes over the whole volume, in
# the background (FIO_PID).
fio_writer() {
	local name=$1 secs=$2
	shift 2
	timeout $((secs + 20)) fio --name="$name" --ioengine=nbd --uri="$(nbd_uri vol)" --rw=randwrite \
		--bs=64k --iodepth=4 --size=${MIB}m --time_based --runtime="$secs" "$@" \
		--output="$T/fio-$name.out" >"$T/fio-$name.log" 2>&1 &
	FIO_PID=$!
	PIDS+=("$FIO_PID")
}

# The overload: writes at full speed for 3 s, far above the cap. The buffer cracks.
fio_writer overload 3
wait "$FIO_PID" || fail "the overload writer failed: $(tail -n 5 "$T/fio-overload.log")"
wait_log "$LOG" 'mirror buffer full: mirror cracked' 10
dirty=$(dirty_regions vol)
[ "$dirty" -gt 64 ] || fail "the overload left only $dirty dirty regions: it did not outrun the link"

# Then writes go on at a quarter of the link: the mirror must get back to INSYNC under them.
fio_writer steady 50 --rate=1m
cracks_before=$(grep -c 'mirror cracked' "$LOG")
wait_status vol state INSYNC 45
kill -0 "$FIO_PID" 2>/dev/null || fail "the steady writer ended before the mirror was back in sync"
passes=$(grep -Ec '(REPLICATE|OUTOFSYNC): dirty pass over' "$LOG")
echo "back in sync under writes after $passes dirty pass(es), $(($(grep -c 'mirror cracked' "$LOG") - cracks_before)) crack(s) meanwhile"
kill -TERM "$FIO_PID"
wait "$FIO_PID" 2>/dev/null || true
wait_status vol lag_tx 0 30
wait_converged "$T/e0" "$M" 30
[ "$(dirty_regions vol)" = 0 ] || fail "bitmap not clean once in sync: $(ctl vol status)"
pass "after an overload of a $CAP MB/s link the mirror converged with writes going on at 1 MB/s ($dirty regions were dirty)"
