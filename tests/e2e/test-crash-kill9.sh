#!/usr/bin/env bash
# kill -9 of frep-client or frep-server at seeded random points under 16 concurrent writers with overlapping ranges; after each restart: the master volume holds every replied write and a TXID-order prefix of the rest, INSYNC, convergence, durability, in-order application and prefix consistency (tests/tools/frep-check.py).
#
# Environment (defaults are the CI run; tests/crash-soak.sh sets them for long runs):
#   CRASH_SEED=N          base seed; every per-iteration draw derives from it (printed first)
#   CRASH_SIDES=LIST      which daemons to kill, in turn: master,mirror (default master;
#                         test-crash-kill9-mirror.sh runs the mirror side)
#   CRASH_ITERS=N         iterations per side (default 20: 25 took 55 s of the 60 s
#                         bound on an idle 2-core machine, too close for CI)
#   CRASH_BUDGET=SECS     fail if the loop would run past this (default 50; 0 = no bound)
#   CRASH_CHECK_EVERY=N   prefix, trace and (mirror side) master-volume checks every N-th
#                         iteration of a side (default 5); the master volume after every
#                         master crash
#   CRASH_KEEP_GOING=1    (soak) report a failed check and go on with the next iteration
#                         instead of failing at once; the run still fails at the end
# Each iteration prints one line "iter I side S seed X (request K|delay_ms D) acked A
# durable U next_index N recovery_ms R result OK|FAIL"; the last line is a tally.
#
# The writer (tests/tools/frep-write.py) keeps DEPTH requests in flight, every HOT-th
# of them in one 64 KiB range, at most RATE a second: TXID order is the master's
# commit order, not request order. Its --record file says which requests were sent
# and replied to; frep-check.py ties each traced TXID to its request by the data's CRC.

# Helpers, shared with test-crash-power.sh (it sources this file with
# CRASH_HELPERS_ONLY=1 after lib.sh). They read VOL, INITIAL, MASTER, WSEED, MAXLEN,
# SEED, the traces MTRACE and RTRACE, the writer's record REC, the checker's cache
# EXPECTED, the mirror's data dir (lib.sh's SERVER_DATA) and the server logs:
# SERVER_LOG and the earlier ones appended to SALL.
PY=/usr/bin/python3
DEPTH=16
HOT=4
# Requests a second, in bursts of DEPTH that are in flight together: a bound on the
# TXIDs the checks replay, however fast the master is, so the loop fits CRASH_BUDGET.
RATE=500
W=("$PY" "${FREP_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/tests/tools/frep-write.py")
C=("$PY" "${FREP_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/tests/tools/frep-check.py")
FAILURES=0 MASTER_OK=0 MASTER_MS=0 PREFIX_OK=0 TRACE_OK=0

# rnd I TAG MOD: a number in [0, MOD) drawn from (seed, iteration, tag).
rnd() {
	local h
	h=$(printf '%s/%s/%s' "$SEED" "$1" "$2" | sha256sum | cut -c1-8)
	echo $((16#$h % $3))
}

# wait_fast TIMEOUT_S WHAT COMMAND...: wait_for with a finer poll; the loop's waits
# add up over many iterations.
wait_fast() {
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"
		sleep 0.02
	done
}

dead() {
	! kill -0 "$1" 2>/dev/null
}

now_ms() {
	echo $(($(date +%s%N) / 1000000))
}

# status_of KEY: one key of the status line fetched last by get_status.
get_status() {
	STATUS=$(ctl "$VOL" status 2>/dev/null) || STATUS=""
}
status_of() {
	[ -n "$STATUS" ] && status_field "$1" <<<"$STATUS"
}

# last_txid TRACE: the TXID of the last transaction line of a trace ("" if none).
last_txid() {
	local l
	l=$(grep ' txid=' "$1" 2>/dev/null | tail -n1) || true
	if [[ $l =~ \ txid=([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; fi
}

# mirror_caught_up: the mirror applied the last TXID the master committed (both traces
# end on it). Reading two files costs nothing; drained() polls status only after this.
mirror_caught_up() {
	local m
	m=$(last_txid "$MTRACE")
	[ -z "$m" ] || [ "$(last_txid "$RTRACE")" = "$m" ]
}

# drained: the master INSYNC with every committed TXID acknowledged (status), waited for
# first in the traces, so that the status is asked once or twice rather than polled.
drained() {
	wait_fast 30 "the mirror to apply every committed TXID" mirror_caught_up
	wait_fast 30 "the mirror to acknowledge every committed TXID" in_sync_drained
}

# in_sync_drained: INSYNC with every committed TXID acknowledged by the mirror.
in_sync_drained() {
	get_status
	[ "$(status_of state)" = INSYNC ] && [ "$(status_of acked_txid)" = "$(status_of committed_txid)" ]
}

# committed_past TXID: the master committed past TXID. Its trace has a line per
# committed transaction, in order: its last line says, without a status call.
committed_past() {
	local c
	c=$(last_txid "$MTRACE")
	[ -n "$c" ] && [ "$c" -gt "$1" ]
}

# insync_count: how many times the master's log says it reached INSYNC. The loop waits
# for the count to grow rather than polling the status: a status call is a gRPC client
# start (about 0.1 s of CPU under ASan), a grep of the log is nothing, and the CPU is
# what the restarted daemons need. The FSM logs each state change as it makes it.
insync_count() {
	local log=$T/client-$VOL.log
	if [ -f "$log" ]; then grep -c -- '-> INSYNC ' "$log" || true; else echo 0; fi
}
insync_past() {
	[ "$(insync_count)" -gt "$1" ]
}

# recovered_txid: durable TXID the last server start reported for vol ("" if none).
recovered_txid() {
	grep -Eo "volume=$VOL recovered: durable TXID [0-9]+" "$SERVER_LOG" | tail -n1 | grep -Eo '[0-9]+$' || true
}

# next_index: 1 + the highest index the writer sent (0 if none): a new writer run
# goes on from there, so no two requests share their data.
next_index() {
	local n
	n=$(sed -n 's/^sent \([0-9]*\)$/\1/p' "$REC" 2>/dev/null | sort -n | tail -n1)
	echo $((${n:--1} + 1))
}

# stop_writer ITER: SIGTERM to the writer WPID, which stops sending and waits for the
# replies to what it sent: afterwards no write is in flight at the master, so the
# master volume holds still for the checks.
stop_writer() {
	local rc=0
	kill -TERM "$WPID" 2>/dev/null || true
	wait_fast 30 "the writer to finish its requests in flight" dead "$WPID"
	wait "$WPID" || rc=$?
	[ $rc -eq 0 ] || fail "iteration $1: the writer exited $rc: $(tail -n 3 "$T/writer.err")"
}

# writer_args: frep-write.py options shared by every run of the crash tests.
writer_args() {
	echo --seed "$WSEED" --max-len "$MAXLEN" --depth "$DEPTH" --hot-every "$HOT" --rate "$RATE" --record "$REC"
}

# check_fail ITER MESSAGE: fatal unless CRASH_KEEP_GOING.
check_fail() {
	FAILURES=$((FAILURES + 1))
	ITER_RESULT=FAIL
	echo "FAIL: iteration $1 (seed $SEED): $2" >&2
	[ -n "${CRASH_KEEP_GOING:-}" ] || fail "iteration $1 (seed $SEED): $2"
}

# check_prefix ITER MIN_TXID: prefix consistency of the stopped, replayed mirror.
check_prefix() {
	local out rc=0 t=$(now_ms)
	out=$("${C[@]}" prefix --initial "$INITIAL" --master-trace "$MTRACE" --mirror-dir "${SERVER_DATA:-$T/mirror}/$VOL" \
		--seed "$WSEED" --max-len "$MAXLEN" --hot-every "$HOT" --min-txid "$2" 2>&1) || rc=$?
	echo "  prefix check $1: $(($(now_ms) - t)) ms: $out"
	case $rc in
	0) PREFIX_OK=$((PREFIX_OK + 1)) ;;
	3) ;; # not consistent (a copy or resync in progress): only --min-txid was checked
	*) check_fail "$1" "prefix check: $out" ;;
	esac
}

# fix_traces: writes MTRACE.dedup and RTRACE.fixed for frep-check.py trace.
#  - A restarted frep-client traces its held journal records again (redo), which the
#    checker reads as a step back in commit order: keep each TXID's first line; a
#    repeated TXID must repeat the same line.
#  - frep-server traces what a session applies, not what a journal replay re-applies
#    (at start, or when a session ended between journal fdatasync and apply). A gap
#    in the mirror trace is filled with the master's lines only if a logged replay
#    ("journal replay: re-applied TXIDs A..B") covers all of it; any other gap stays
#    and fails the check.
fix_traces() {
	cat "$SALL" "$SERVER_LOG" 2>/dev/null >"$T/server.cat.log" || true
	"$PY" - "$MTRACE" "$MTRACE.dedup" "$RTRACE" "$RTRACE.fixed" "$T/server.cat.log" "$VOL" <<'EOF'
import re, sys
def lines(path):
	return open(path).read().split("\n")[:-1]	# a last line without newline was cut
def txid(line):
	m = re.search(r"(?:^| )txid=(\d+)(?: |$)", line)
	return int(m.group(1)) if m else None
seen, out = {}, []
for n, line in enumerate(lines(sys.argv[1]), 1):
	t = txid(line)
	if t is None:
		out.append(line)
	elif t in seen:
		if seen[t] != line:
			sys.exit("master trace line %d: txid=%d re-traced as %r, first %r" % (n, t, line, seen[t]))
	else:
		seen[t] = line
		out.append(line)
open(sys.argv[2], "w").write("".join(l + "\n" for l in out))
replayed = set()
for m in re.finditer(r"volume=" + re.escape(sys.argv[6]) + r" journal replay: re-applied TXIDs (\d+)\.\.(\d+)", open(sys.argv[5]).read()):
	replayed.update(range(int(m.group(1)), int(m.group(2)) + 1))
out, prev, filled = [], None, 0
for line in lines(sys.argv[3]):
	t = txid(line)
	if t is not None and prev is not None and t > prev + 1 and all(x in replayed and x in seen for x in range(prev + 1, t)):
		out += ["volume=%s %s" % (sys.argv[6], seen[x]) for x in range(prev + 1, t)]
		filled += t - prev - 1
	out.append(line)
	prev = t
open(sys.argv[4], "w").write("".join(l + "\n" for l in out))
print("filled %d replayed TXID(s)" % filled)
EOF
}

# check_master ITER TXID: with no write in flight, the master volume is the initial
# image with TXIDs 1..TXID applied in TXID order, and every write the writer saw
# replied to is among them.
check_master() {
	local out t=$(now_ms)
	out=$("${C[@]}" master --initial "$INITIAL" --master-trace "$MTRACE" --master "$MASTER" --txid "$2" \
		--seed "$WSEED" --max-len "$MAXLEN" --hot-every "$HOT" --record "$REC" --cache "$EXPECTED" 2>&1) ||
		{ check_fail "$1" "master check: $out"; return; }
	MASTER_OK=$((MASTER_OK + 1))
	MASTER_MS=$((MASTER_MS + $(now_ms) - t))
}

check_trace() {
	local out
	out=$(fix_traces 2>&1) || check_fail "$1" "$out"
	out=$("${C[@]}" trace --master-trace "$MTRACE.dedup" --mirror-trace "$RTRACE.fixed" 2>&1) ||
		check_fail "$1" "trace check: $out"
	TRACE_OK=$((TRACE_OK + 1))
}

[ -z "${CRASH_HELPERS_ONLY:-}" ] || return 0

source "$(dirname "$0")/lib.sh"
# A command failing under set -e would end the run without a word: name it.
set -o errtrace
trap 'echo "$TEST_NAME: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR
VOL=vol
MTRACE=$T/master.trace
RTRACE=$T/mirror.trace
SALL=$T/server.all.log
REC=$T/writer.record
EXPECTED=$T/expected.img
: >"$REC"

SEED=${CRASH_SEED:-$((RANDOM * 32768 + RANDOM))}
IFS=, read -r -a SIDES <<<"${CRASH_SIDES:-master}"
ITERS=${CRASH_ITERS:-20}
BUDGET=${CRASH_BUDGET:-50}
CHECK_EVERY=${CRASH_CHECK_EVERY:-5}
TEST_NAME=$TEST_NAME-${CRASH_SIDES:-master}
WSEED=w$SEED
MAXLEN=16384
echo "crash seed $SEED, sides ${SIDES[*]}, $ITERS iteration(s) per side (replay: CRASH_SEED=$SEED)"

for s in "${SIDES[@]}"; do
	[ "$s" = master ] || [ "$s" = mirror ] || fail "CRASH_SIDES: unknown side '$s'"
done

# Small volume, two extents of 8 MiB: the writer's hot range straddles their boundary,
# and the checks rebuild 16 MiB images.
mkvol "$T/e0" 8M; mkvol "$T/e1" 8M
fill "$T/e0" 2 4 "a$SEED"; fill "$T/e1" 1 3 "b$SEED"
cp "$T/e0" "$T/i0"; cp "$T/e1" "$T/i1"
MASTER="$T/e0,$T/e1"
INITIAL="$T/i0,$T/i1"
MIRROR=$(mirror_extents vol 2)
certs master-1

SERVER_ARGS=(--trace-tx "$RTRACE" --heartbeat-timeout 3)
CLIENT_ARGS=(--trace-tx "$MTRACE" --backoff 0.1:0.5
	--heartbeat-timeout 3)

start_server "${SERVER_ARGS[@]}"
PORT=$SERVER_PORT
start_client vol "$MASTER" master-1 "${CLIENT_ARGS[@]}"
wait_fast 30 "INSYNC" status_is vol state INSYNC
URI=$(nbd_uri vol)

# restart_client: after a kill -9; the stale sockets go first so the waits see the new ones.
restart_client() {
	rm -f "$T/vol.sock"
	start_client vol "$MASTER" master-1 "${CLIENT_ARGS[@]}"
}

# restart_server [PORT]: keeps the previous log as server.prev.log, and all in server.all.log.
restart_server() {
	[ -f "$SERVER_LOG" ] && cp "$SERVER_LOG" "$T/server.prev.log" && cat "$SERVER_LOG" >>"$SALL"
	SERVER_PORT_WANTED=${1:-$PORT} start_server "${SERVER_ARGS[@]}"
}

NEXT=0 # next writer index
STATUS_FRESH=0
START=$SECONDS
declare -A KILLS=([master]=0 [mirror]=0)
declare -A REC_SUM=([master]=0 [mirror]=0) REC_MAX=([master]=0 [mirror]=0)
total=$((ITERS * ${#SIDES[@]}))
for ((i = 0; i < total; i++)); do
	if [ "$BUDGET" -gt 0 ] && [ $((SECONDS - START)) -ge "$BUDGET" ]; then
		fail "only $i of $total iterations fit in ${BUDGET}s (seed $SEED): the machine is too slow for the CI bound"
	fi
	side=${SIDES[i % ${#SIDES[@]}]}
	n=$((KILLS[$side] + 1))
	ITER_RESULT=OK
	alive "$SERVER_PID" frep-server
	alive "$CLIENT_PID" frep-client

	# Writer: DEPTH requests in flight, from the next index, until killed (its
	# --duration is only a safety bound). The seeded crash point: for the master, a
	# request index at which the writer itself kills it, so requests are in flight
	# (up to DEPTH of them, the hot range among them); for the mirror, a delay.
	# Status calls are gRPC client starts (CPU the restarted daemons need), so each is
	# made only where nothing cheaper tells. A master iteration starts from the status
	# the previous one ended on if that is still true (drained, writer stopped, nothing
	# written since); a mirror iteration needs only the committed TXID, which the
	# master's trace gives, and reads the status just before its kill.
	if [ "$side" = master ]; then
		[ "$STATUS_FRESH" = 1 ] || get_status
		acked=$(status_of acked_txid)
		[ -n "$acked" ] || fail "iteration $i: no status before the writes: '$STATUS'"
		[ "$(status_of state)" = INSYNC ] || fail "iteration $i: not INSYNC before the writes: $STATUS"
	else
		c0=$(last_txid "$MTRACE")
		c0=${c0:-0}
	fi
	STATUS_FRESH=0
	kill_at=()
	if [ "$side" = master ]; then
		crash="request $((NEXT + DEPTH + $(rnd "$i" request 300)))"
		kill_at=(--kill-at "${crash#request }:$CLIENT_PID")
	else
		crash="delay_ms $((20 + $(rnd "$i" delay 300)))"
	fi
	# shellcheck disable=SC2046 # writer_args is a word list
	"${W[@]}" --uri "$URI" $(writer_args) --first-index "$NEXT" --tolerate-errors "${kill_at[@]}" \
		--duration 60 >"$T/writer.out" 2>"$T/writer.err" &
	WPID=$!

	durable=-
	if [ "$side" = master ]; then
		wait_fast 30 "the writer to kill frep-client at $crash" dead "$CLIENT_PID"
		wait "$CLIENT_PID" 2>/dev/null || true
		t0=$(now_ms)
		wait "$WPID" || fail "iteration $i: writer failed: $(cat "$T/writer.err")"
		grep -q 'stopped=error' "$T/writer.out" || fail "iteration $i: the writer did not see the master die: $(cat "$T/writer.out")"
		insync=$(insync_count)
		restart_client
		wait_fast 30 "INSYNC" insync_past "$insync"
	else
		wait_fast 10 "the writer's first commits" committed_past "$c0"
		delay=${crash#delay_ms }
		# The status (what the master saw acknowledged) is read inside the delay, not
		# after it: acknowledgements only grow, so any value read before the kill is
		# a bound the mirror must recover to, and the crash point stays where seeded.
		t0=$(now_ms)
		get_status
		left=$((delay - ($(now_ms) - t0)))
		[ "$left" -le 0 ] || sleep "$(printf '%d.%03d' $((left / 1000)) $((left % 1000)))" # the seeded crash point
		acked=$(status_of acked_txid)
		[ -n "$acked" ] || fail "iteration $i: no status before the kill: '$STATUS'"
		[ "$(status_of state)" = INSYNC ] || fail "iteration $i: not INSYNC before the kill: $STATUS"
		insync=$(insync_count)
		kill -KILL "$SERVER_PID"
		wait "$SERVER_PID" 2>/dev/null || true
		# Mark the restart. kill -9 can cut a trace write short where it crosses a page
		# of the file, so end the torn line first: the marker must be a line of its own.
		[ ! -s "$RTRACE" ] || [ -z "$(tail -c1 "$RTRACE")" ] || echo >>"$RTRACE"
		echo "volume=$VOL event=restart iteration=$i" >>"$RTRACE"
		t0=$(now_ms)
		if [ $((n % CHECK_EVERY)) -eq 0 ]; then
			# Replay on a port the master does not know, stop, check the stopped mirror.
			# The writer stops first: the checker needs the CPU more than the load.
			stop_writer "$i"
			restart_server 0
			durable=$(recovered_txid)
			stop "$SERVER_PID"
			check_prefix "$i" "$acked"
			t0=$(now_ms)
		fi
		restart_server
		durable=$(recovered_txid)
		[ -n "$durable" ] || fail "iteration $i: no 'recovered' line in the server log"
		[ "$durable" -ge "$acked" ] ||
			check_fail "$i" "mirror recovered durable TXID $durable < TXID $acked the master saw acknowledged"
		# Catch-up runs under the writer's load.
		wait_fast 30 "INSYNC" insync_past "$insync"
		if [ $((n % CHECK_EVERY)) -ne 0 ]; then
			kill -0 "$WPID" 2>/dev/null ||
				fail "iteration $i: the writer stopped while only the mirror died: $(cat "$T/writer.out" "$T/writer.err")"
			stop_writer "$i"
		fi
	fi
	rec=$(($(now_ms) - t0))
	KILLS[$side]=$n
	prev=$NEXT
	NEXT=$(next_index)
	[ "$NEXT" -gt "$prev" ] || fail "iteration $i: the writer sent nothing"

	REC_SUM[$side]=$((REC_SUM[$side] + rec))
	[ "$rec" -gt "${REC_MAX[$side]}" ] && REC_MAX[$side]=$rec
	# The writer is stopped: everything committed reaches the mirror, bytes converge.
	if [ "$side" = master ]; then
		drained
		STATUS_FRESH=1
		a2=$(status_of acked_txid)
		[ "$a2" -ge "$acked" ] || check_fail "$i" "after the restart acked_txid $a2 < $acked before the kill"
	else
		wait_fast 30 "the mirror to apply every committed TXID" mirror_caught_up
	fi
	# (same_bytes is the convergence check; frep-check.py converge would only repeat it.)
	wait_fast 30 "mirror byte-identical to master" same_bytes "$MASTER" "$MIRROR"
	# The master volume after every master crash; with the mirror's, as often as the
	# mirror's own checks (incremental: every replied write is still checked).
	if [ "$side" = master ]; then
		check_master "$i" "$(status_of committed_txid)"
	elif [ $((n % CHECK_EVERY)) -eq 0 ]; then
		# No fresh status here (see the loop's start): with the writer stopped and the
		# mirror caught up, the trace's last TXID is the committed one.
		check_master "$i" "$(last_txid "$MTRACE")"
	fi
	[ $((n % CHECK_EVERY)) -eq 0 ] && check_trace "$i"
	alive "$SERVER_PID" frep-server
	alive "$CLIENT_PID" frep-client
	echo "iter $i side $side seed $SEED $crash acked $acked durable $durable next_index $NEXT recovery_ms $rec result $ITER_RESULT"
done

# Final: both stopped cleanly; the mirror, replayed and closed, is consistent at the
# master's last TXID, and the whole trace is in order.
get_status
final=$(status_of committed_txid)
stop "$CLIENT_PID"
stop "$SERVER_PID"
check_master final "$final"
check_prefix final "$final"
check_trace final
for s in master mirror; do
	k=${KILLS[$s]}
	[ "$k" -gt 0 ] && echo "tally side $s kills $k recovery_ms_mean $((REC_SUM[$s] / k)) recovery_ms_max ${REC_MAX[$s]}"
done
echo "tally iterations $total failures $FAILURES master_checks_ok $MASTER_OK master_checks_ms $MASTER_MS prefix_checks_ok $PREFIX_OK trace_checks_ok $TRACE_OK last_txid $final seconds $((SECONDS - START))"
[ "$FAILURES" -eq 0 ] || fail "$FAILURES failed check(s) (seed $SEED)"
pass "seed $SEED: $total kill -9 iterations (${SIDES[*]}) under $DEPTH writers in flight, each back to INSYNC and converged; master, prefix and trace checks held; last TXID $final"
