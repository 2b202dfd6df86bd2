#!/usr/bin/env bash
# Power loss (crashfs shim) at each named crash point, on each side where it exists, under 16 concurrent writers with overlapping ranges: the restarted daemon recovers, the master volume holds every replied write and a TXID-order prefix of the rest, the mirror is prefix-consistent at a TXID covering all it acknowledged, nothing is reordered, and it converges.
#
# CRASH_SEED=N replays the draws (which hit of each site crashes); CRASH_CASES=LIST
# (e.g. "mirror:apply,master:copy") runs only those cases; CRASH_SIDES=LIST the cases
# of those sides (default master; test-crash-power-mirror.sh runs the mirror side).
source "$(dirname "$0")/lib.sh"
CRASH_HELPERS_ONLY=1 source "$(dirname "$0")/test-crash-kill9.sh"
# A command failing under set -e would end the run without a word: name it.
set -o errtrace
trap 'echo "$TEST_NAME: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR

SHIM=${FREP_CRASHFS:-$BIN/tests/crashfs.so}
[ -f "$SHIM" ] || fail "crashfs shim not built: $SHIM"
SEED=${CRASH_SEED:-$((RANDOM * 32768 + RANDOM))}
WSEED=w$SEED
MAXLEN=16384
# The write-driven sites crash within their first WRITE_HITS hits; the writer runs
# until the crash (concurrent writes share hits: a group commit is one append site).
WRITE_HITS=50
echo "crash seed $SEED (replay: CRASH_SEED=$SEED)"
certs master-1

# side:site:MAX: the crash is at hit 1 + rnd % MAX. The master writes its metadata
# once per start (the generation), so only its first hit exists; the mirror writes
# its metadata at creation, at the start of the copy and when consistent. The
# master clears the bits of what the mirror acknowledged it copied (copy-clear)
# once per pass of a volume this small: at the COPY_ACK after COPY_DONE.
ALL_CASES=(master:journal-append:$WRITE_HITS master:journal-synced:$WRITE_HITS master:meta-write:1
	master:copy:3 master:copy-clear:1 mirror:journal-synced:$WRITE_HITS mirror:ack-sent:$WRITE_HITS
	mirror:apply:$WRITE_HITS mirror:meta-write:3 mirror:copy:3)
sides=,${CRASH_SIDES:-master},
if [ -n "${CRASH_CASES:-}" ]; then
	IFS=, read -r -a want <<<"$CRASH_CASES"
	CASES=()
	for c in "${ALL_CASES[@]}"; do
		for w in "${want[@]}"; do [ "${c%:*}" = "$w" ] && CASES+=("$c"); done
	done
	[ ${#CASES[@]} -gt 0 ] || fail "CRASH_CASES=$CRASH_CASES matches no case"
else
	CASES=()
	for c in "${ALL_CASES[@]}"; do
		[[ $sides == *",${c%%:*},"* ]] && CASES+=("$c")
	done
fi

SHIM_ENV=(LD_PRELOAD="$SHIM" ASAN_OPTIONS="$ASAN_OPTIONS:verify_asan_link_order=0")

# client_args: frep-client's options for the current case.
client_args() {
	CLIENT_ARGS=(--trace-tx "$MTRACE" --backoff 0.1:0.5 --heartbeat-timeout 3)
}

# launch_client [ENV...]: frep-client of the case, possibly under the shim. Not
# start_client: a crash at the first metadata write comes before the NBD socket.
launch_client() {
	rm -f "$T/$VOL.sock"
	env "$@" "$BIN/frep-client" --volume "$VOL=$MASTER" --mirror "127.0.0.1:$PORT" \
		--server-name frep-mirror --journal "$JOURNAL" --cert "$PKI/master-1.crt" \
		--key "$PKI/master-1.key" --ca "$PKI/ca.crt" --nbd "unix:$T/$VOL.sock" "${CLIENT_ARGS[@]}" \
		>>"$T/client-$VOL.log" 2>&1 &
	CLIENT_PID=$!
	PIDS+=("$CLIENT_PID")
}

# launch_server PORT [ENV...]: frep-server of the case; the log of the previous one
# is kept in SALL.
launch_server() {
	local port=$1
	shift
	[ -f "${SERVER_LOG:-}" ] && cat "$SERVER_LOG" >>"$SALL"
	# Emptied here, not by the background job's redirection: the wait below must not
	# see the previous server's "listening" line.
	: >"$T/server.log"
	env "$@" "$BIN/frep-server" --listen "127.0.0.1:$port" \
		--data-dir "$SERVER_DATA" --cert "$PKI/server.crt" --key "$PKI/server.key" --ca "$PKI/ca.crt" \
		--trace-tx "$RTRACE" --heartbeat-timeout 3 >>"$T/server.log" 2>&1 &
	SERVER_PID=$!
	SERVER_LOG=$T/server.log
	PIDS+=("$SERVER_PID")
	wait_fast 20 "frep-server listening" grep -Eq 'listening on 127\.0\.0\.1:[0-9]+' "$SERVER_LOG"
	SERVER_PORT=$(grep -Eo 'listening on 127\.0\.0\.1:[0-9]+' "$SERVER_LOG" | tail -n1 | cut -d: -f2)
}

get_status_ok() {
	get_status
	[ -n "$STATUS" ]
}

# last_traced: highest TXID in the master trace (0 if none).
last_traced() {
	[ -f "$MTRACE" ] || { echo 0; return; }
	sed -n 's/.* txid=\([0-9]*\) .*/\1/p' "$MTRACE" | sort -n | tail -n1 | grep . || echo 0
}

# client_started FROM_LINE: the client launched last left NEW (its log from line FROM_LINE on).
client_started() {
	tail -n +"$1" "$T/client-$VOL.log" | grep -Eq 'state NEW -> '
}

# write_some COUNT|until-crash: the writer (DEPTH in flight) from where the last one
# stopped; tolerates errors (the master may die under it). until-crash: in the
# background (WPID) until the victim dies, then stop_writer.
write_some() {
	local count=(--count "$1")
	[ "$1" = until-crash ] && count=(--duration 30)
	# shellcheck disable=SC2046 # writer_args is a word list
	"${W[@]}" --uri "$(nbd_uri "$VOL")" $(writer_args) --first-index "$(next_index)" "${count[@]}" \
		--tolerate-errors >"$T/writer.out" 2>"$T/writer.err" &
	WPID=$!
	if [ "$1" = until-crash ]; then
		wait_fast 30 "the crash at $site hit $n ($side)" dead "$victim"
		stop_writer "$k"
	else
		wait "$WPID" || fail "case $k: writer failed: $(tail -n 3 "$T/writer.err")"
	fi
}

k=0
for c in "${CASES[@]}"; do
	IFS=: read -r side site max <<<"$c"
	n=$((1 + $(rnd "$k" "$side:$site" "$max")))
	VOL=p$k
	R=$T/root$k # everything the shim rolls back; traces and logs stay outside
	mkdir -p "$R"
	mkvol "$R/e0" 8M; mkvol "$R/e1" 8M
	fill "$R/e0" 1 5 "a$SEED.$k"; fill "$R/e1" 0 3 "b$SEED.$k"
	cp "$R/e0" "$T/$VOL.i0"; cp "$R/e1" "$T/$VOL.i1"
	MASTER="$R/e0,$R/e1" INITIAL="$T/$VOL.i0,$T/$VOL.i1" JOURNAL=$R/$VOL.journal
	SERVER_DATA=$R/mirror MTRACE=$T/$VOL.master.trace RTRACE=$T/$VOL.mirror.trace SALL=$T/$VOL.server.all.log
	REC=$T/$VOL.record EXPECTED=$T/$VOL.expected.img
	: >"$REC" # a case that crashes before any write still has a (empty) record
	MIRROR=$(mirror_extents "$VOL" 2)
	SERVER_LOG=
	client_args
	crash_env=("${SHIM_ENV[@]}" CRASHFS_ROOT="$R" FREP_CRASH_AT="$site:$n")
	echo "case $k: power loss in $side at $site hit $n"
	insync=$(insync_count) # the log, not status polls: see insync_count

	if [ "$side" = mirror ]; then
		launch_server 0 "${crash_env[@]}"
		PORT=$SERVER_PORT
		launch_client
		victim=$SERVER_PID
	else
		launch_server 0
		PORT=$SERVER_PORT
		launch_client "${crash_env[@]}"
		victim=$CLIENT_PID
	fi
	# Copy and metadata sites crash on their own; the others need writes.
	case $site in
	copy | copy-clear | meta-write) ;;
	*)
		wait_fast 30 "INSYNC before the writes" insync_past "$insync"
		write_some until-crash
		;;
	esac
	wait_fast 30 "the crash at $site hit $n ($side)" dead "$victim"
	rc=0
	wait "$victim" 2>/dev/null || rc=$?
	[ $rc -eq 137 ] || fail "case $k: $side exited $rc, expected 137 from the crash at $site:$n"
	vlog=$SERVER_LOG
	[ "$side" = master ] && vlog=$T/client-$VOL.log
	grep -q "crash point $site hit $n" "$vlog" || fail "case $k: no 'crash point $site hit $n' line in $vlog"
	grep -q 'crashfs: power loss' "$vlog" || fail "case $k: the shim did not pull the plug"

	if [ "$side" = mirror ]; then
		# Everything the master saw acknowledged must survive the mirror's power loss.
		wait_fast 10 "status" get_status_ok
		acked=$(status_of acked_txid)
		# Replay on a port the master does not know, stop, check the stopped mirror.
		launch_server 0
		durable=$(recovered_txid)
		if [ -f "$SERVER_DATA/$VOL/meta" ]; then
			[ -n "$durable" ] || fail "case $k: no 'recovered' line after the power loss"
			[ "$durable" -ge "$acked" ] ||
				fail "case $k: mirror recovered durable TXID $durable < TXID $acked the master saw acknowledged"
		fi
		stop "$SERVER_PID"
		[ -f "$SERVER_DATA/$VOL/meta" ] && check_prefix "$k" "$acked"
		launch_server "$PORT"
	else
		# Every TXID the master traced had been fdatasync'd: its journal keeps them.
		traced=$(last_traced)
		from=$(($(wc -l <"$T/client-$VOL.log") + 1))
		launch_client
		wait_fast 20 "frep-client to leave NEW" client_started "$from"
		tail -n +"$from" "$T/client-$VOL.log" | grep -E 'state NEW -> ERROR' &&
			fail "case $k: frep-client did not recover from the power loss at $site:$n: $(tail -n +"$from" \
				"$T/client-$VOL.log" | grep -Eo 'reason: .*' | head -n1)"
		wait_fast 20 "frep-client control socket" get_status_ok
		committed=$(status_of committed_txid)
		[ "$committed" -ge "$traced" ] ||
			fail "case $k: master restarted at committed TXID $committed < $traced it had traced (fdatasync'd)"
	fi
	# No write in flight: the recovered master volume holds every replied write; INSYNC
	# with every committed TXID acknowledged.
	wait_fast 30 "the mirror to acknowledge every committed TXID" in_sync_drained
	check_master "$k" "$(status_of committed_txid)"
	write_some 50
	wait_fast 30 "the mirror to acknowledge every committed TXID" in_sync_drained
	wait_fast 30 "mirror byte-identical to master" same_bytes "$MASTER" "$MIRROR"
	out=$("${C[@]}" converge --master "$MASTER" --mirror "$MIRROR" 2>&1) || fail "case $k: $out"
	check_trace "$k"
	alive "$SERVER_PID" frep-server
	alive "$CLIENT_PID" frep-client
	final=$(status_of committed_txid)
	stop "$CLIENT_PID"
	stop "$SERVER_PID"
	check_master "$k.final" "$final"
	check_prefix "$k.final" "$final"
	echo "case $k: $side $site:$n recovered; converged at TXID $final"
	k=$((k + 1))
done
[ "$FAILURES" -eq 0 ] || fail "$FAILURES failed check(s) (seed $SEED)"
pass "seed $SEED: power loss at ${#CASES[@]} crash points (${CASES[*]%:*}) under $DEPTH writers in flight; each recovered, master and mirror prefix-consistent, in order, converged"
