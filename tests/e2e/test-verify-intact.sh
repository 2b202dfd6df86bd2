#!/usr/bin/env bash
# Online verify of an intact mirror under a concurrent random-write load over the whole
# volume reports nothing: master and mirror hash each region as of the same TXID, however
# the writes fall (spec VFY-3). The verify runs at the operator's rate (set-rate, like a
# copy), long enough for hundreds of writes to interleave with it; a pause ends it with an
# outcome, as leaving INSYNC does (VFY-7).
# spec: VFY-3, VFY-5, VFY-7
source "$(dirname "$0")/lib.sh"
certs master-1
mkvol "$T/e0" 32M
fill "$T/e0" 0 32 p
M=$(mirror_extents vol 1)
start_server
start_client vol "$T/e0" master-1
wait_status vol state INSYNC 30
wait_converged "$T/e0" "$M" 30

start_load vol 32m
# 32 MiB at 32 MiB/s: about a second of verifying, writes all along.
"$BIN/frepctl" set-rate vol 32M >/dev/null || fail "set-rate 32M refused"
for run in 1 2; do
	before=$(ctl_field vol committed_txid)
	verify vol >"$T/verify.out"
	read -r outcome mismatched repaired regions <"$T/verify.out"
	[ "$VERIFY_RC $outcome $mismatched ${regions:-}" = "0 ok 0 " ] ||
		fail "verify $run of an intact mirror under load: exit $VERIFY_RC, $outcome, $mismatched mismatching ${regions:-}"
	after=$(ctl_field vol committed_txid)
	[ $((after - before)) -ge 100 ] ||
		fail "verify $run: only $((after - before)) writes committed while it ran: not under load"
	kill -0 "$LOAD" || fail "the load stopped during verify $run: $(tail -n 5 "$T/fio.log")"
done
# The rate held: 32 MiB at 32 MiB/s takes most of a second.
ms=$(grep -Eo 'verify 2 done in [0-9]+ ms' "$T/client-vol.log" | grep -Eo '[0-9]+ ms' | cut -d' ' -f1)
[ "$ms" -ge 700 ] || fail "verify 2 took $ms ms at 32 MiB/s over 32 MiB: the rate did not hold"

# A pause ends a running verify with an outcome (VFY-7); the mirror stays consistent.
"$BIN/frepctl" set-rate vol 4M >/dev/null || fail "set-rate 4M refused"
"$BIN/frepctl" verify vol >/dev/null || fail "verify 3 refused"
"$BIN/frepctl" pause vol >/dev/null || fail "pause refused"
wait_log "$T/client-vol.log" 'verify 3 done in [0-9]+ ms: aborted: the operator paused replication' 10
[ "$(admin vol GetVerifyResult '{"volume": "vol"}' | /usr/bin/python3 -c \
	'import json,sys; print(json.load(sys.stdin)["status"]["outcome"])')" = \
	"aborted: the operator paused replication" ] || fail "verify 3's outcome after a pause"
"$BIN/frepctl" verify vol >"$T/refused.out" 2>&1 && fail "a verify started while paused (IDLE)"
grep -q 'verify runs only while the mirror is INSYNC (state IDLE)' "$T/refused.out" ||
	fail "verify while paused: $(cat "$T/refused.out")"
"$BIN/frepctl" resume vol >/dev/null || fail "resume refused"
kill -TERM "$LOAD"
wait "$LOAD" 2>/dev/null || true
wait_converged "$T/e0" "$M" 30
alive "$SERVER_PID" frep-server
alive "$CLIENT_PID" frep-client
pass "two verifies under load at 32 MiB/s: nothing reported (verify 2: $ms ms); a pause aborts one"
