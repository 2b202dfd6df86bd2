#!/usr/bin/env bash
# The fault proxy's rate cap: between two samples, a bulk copy through "rate 2" moves at
# most 2 MB/s times the time between them plus one burst, a stall banks no more than the
# burst, bad rates get a clear error, and after "rate 0" the copy completes byte-equal.
source "$(dirname "$0")/lib.sh"
certs master-1

RATE_MBPS=2
VOL_MIB=32 # 16 s of copy at the cap: far more than the test lets pass before "rate 0"

# up_at_least BYTES: predicate for wait_for.
up_at_least() {
	[ "$(proxy_stat up)" -ge "$1" ]
}

# within_cap WHAT UP_BEFORE T_BEFORE_NS UP_AFTER T_AFTER_NS: the bytes forwarded up
# between two samples stay within the cap. T_BEFORE is read before the first sample was
# asked for, T_AFTER after the second was answered: the proxy's own moments lie between,
# so this upper bound holds however slow the machine is.
within_cap() {
	local bytes=$(($4 - $2)) bound=$((($5 - $3) * RATE_MBPS / 1000 + BURST))
	echo "$1: $bytes bytes up in $((($5 - $3) / 1000000)) ms, cap $bound"
	[ "$bytes" -le "$bound" ] || fail "$1: $bytes bytes went up, above the cap of $bound"
	[ "$bytes" -gt 0 ] || fail "$1: nothing went up, so the cap was not tested"
}

mkvol "$T/e0" "${VOL_MIB}M"
fill "$T/e0" 0 "$VOL_MIB" rate
start_server
start_proxy

# Bad rates are refused with a message that says what to give instead.
for bad in -1 abc 0.0001 1e9 nan 2x; do
	out=$("$BIN/tests/fault-proxy" --control "unix:$PROXY_CTL" --cmd "rate $bad") &&
		fail "rate $bad was accepted: $out"
	grep -q "^error rate wants MB/s, 0.001\.\.100000 with decimals (e.g. 12.5), or 0 to end the cap; got '$bad'$" <<<"$out" ||
		fail "rate $bad: unclear answer '$out'"
done
pctl rate 12.5 | grep -q '^ok rate 12.5 MB/s per direction, burst 125000 bytes$' ||
	fail "rate 12.5 not taken as 12.5 MB/s with 10 ms of burst"
pctl rate "$RATE_MBPS" >/dev/null
[ "$(proxy_stat rate)" = "$RATE_MBPS" ] || fail "stats does not show rate=$RATE_MBPS"
BURST=$(proxy_stat burst)

SERVER_PORT=$PROXY_PORT start_client vol "$T/e0" master-1 --journal-size 4M
wait_for 20 "the copy to flow through the proxy" up_at_least $((1 << 20))

t1=$(date +%s%N)
up1=$(proxy_stat up)
sleep 2
up2=$(proxy_stat up)
t2=$(date +%s%N)
within_cap "copy at the cap" "$up1" "$t1" "$up2" "$t2"
# Without the cap the whole volume would have gone up long before.
[ "$up2" -lt $((VOL_MIB << 20)) ] || fail "the whole volume went up: the cap did not hold"
status_not vol state INSYNC || fail "INSYNC at $up2 bytes up: the cap did not hold"

# A stalled link refills its bucket only up to the burst: no banked surge after unstall.
pctl stall >/dev/null
sleep 1
t3=$(date +%s%N)
up3=$(proxy_stat up)
pctl unstall >/dev/null
sleep 1
up4=$(proxy_stat up)
t4=$(date +%s%N)
within_cap "after a 1 s stall" "$up3" "$t3" "$up4" "$t4"

pctl rate 0 >/dev/null
[ "$(proxy_stat rate)" = 0 ] || fail "stats does not show rate=0 after 'rate 0'"
wait_status vol state INSYNC 30
cmp "$T/e0" "$(mirror_extents vol 1)" || fail "the mirror differs from the master"
alive "$SERVER_PID" frep-server
alive "$CLIENT_PID" frep-client
alive "$PROXY_PID" fault-proxy
pass "rate $RATE_MBPS held between samples and after a stall; uncapped, the copy completed byte-equal"
