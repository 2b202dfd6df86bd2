#!/usr/bin/env bash
# Snapshots survive crashes of the mirror: power loss (crashfs: every write not yet
# fdatasync'd is undone) at each snapshot crash point, and kill -9. Per case: a stamped
# writer on the master, a snapshot taken on the mirror, writes until the mirror dies,
# restart; the mirror converges, and the snapshot, read through its NBD export, is the
# master after exactly the writes up to its TXID. A crash while a snapshot is being
# created leaves no trace of it, and the next create works.
#
# SNAP_CRASH=power (default) and power2 run the power-loss cases (power2:
# test-snapshot-power2.sh), SNAP_CRASH=kill9 the kill -9 ones (test-snapshot-kill9.sh),
# so that each ctest fits the 60 s bound. CRASH_SEED=N replays the draws.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
W=("$PY" "$FREP_SRC/tests/tools/frep-write.py")
C=("$PY" "$FREP_SRC/tests/tools/frep-check.py")
SEED=${CRASH_SEED:-$((RANDOM * 32768 + RANDOM))}
MODE=${SNAP_CRASH:-power}
MAXLEN=16384
echo "crash seed $SEED (replay: CRASH_SEED=$SEED SNAP_CRASH=$MODE)"
SHIM=${FREP_CRASHFS:-$BIN/tests/crashfs.so}
[ -f "$SHIM" ] || fail "crashfs shim not built: $SHIM"
certs master-1

# mode:site:MAX[:SKIP]: the crash is at hit SKIP + 1 + rnd % MAX of the site; site "time"
# is a plain kill -9 at a random moment of the writes. The new crash points of the
# snapshots, and a crash in the middle of an apply once a snapshot exists (the 150
# writes before it are 150 applies), which the journal replay then finishes.
case $MODE in
power) CASES=(power:snapshot-create:1 power:cow-copied:3 power:cow-mapped:3) ;;
power2) CASES=(power:cow-saved:3 power:apply:50:150) ;;
kill9) CASES=(kill9:cow-copied:3 kill9:time:1 kill9:time:1) ;;
*) fail "SNAP_CRASH=$MODE: give power, power2 or kill9" ;;
esac

rnd() { # TAG MOD
	echo $((16#$(printf '%s/%s' "$SEED" "$1" | sha256sum | cut -c1-8) % $2))
}
dead() {
	! kill -0 "$1" 2>/dev/null
}
# writes COUNT: COUNT more stamped writes, 16 in flight, from where the last run stopped.
writes() {
	"${W[@]}" --uri "$(nbd_uri vol)" --seed "w$k" --max-len $MAXLEN --depth 16 --ops write \
		--first-index "$NEXT" --count "$1" >/dev/null 2>"$T/writer.log" ||
		fail "case $k: writer failed: $(tail -n2 "$T/writer.log")"
	NEXT=$((NEXT + $1))
}

k=0
for c in "${CASES[@]}"; do
	IFS=: read -r mode site max skip <<<"$c"
	n=$((${skip:-0} + 1 + $(rnd "$k:$site" "$max")))
	R=$T/root$k # what the power loss rolls back: the mirror's data dir
	mkdir -p "$R"
	export SERVER_DATA=$R/mirror
	mkvol "$T/m$k" 8M; fill "$T/m$k" 0 8 "init$k"; cp "$T/m$k" "$T/i$k"
	echo "case $k: $mode at $site hit $n"
	crash_env=()
	[ "$site" = time ] || crash_env=(FREP_CRASH_AT="$site:$n")
	if [ "$mode" = power ]; then
		crash_env+=(LD_PRELOAD="$SHIM" CRASHFS_ROOT="$R" ASAN_OPTIONS="$ASAN_OPTIONS:verify_asan_link_order=0")
	fi
	SERVER_ENV=("${crash_env[@]+"${crash_env[@]}"}")
	start_server
	SERVER_ENV=()
	: >"$T/master$k.trace"
	start_client vol "$T/m$k" master-1 --trace-tx "$T/master$k.trace" --backoff 0.1:0.5
	wait_status vol state INSYNC 30
	NEXT=0
	writes 150
	wait_status vol lag_tx 0 30

	if [ "$site" = snapshot-create ]; then
		out=$(mctl snapshot create vol s 2>&1) && fail "case $k: snapshot create survived its crash point: $out"
		txid=""
	else
		txid=$(snapshot_create vol s)
		# Writes until the mirror dies (a crash point), or for a random moment then kill -9.
		"${W[@]}" --uri "$(nbd_uri vol)" --seed "w$k" --max-len $MAXLEN --depth 16 --ops write \
			--first-index "$NEXT" --duration 30 --tolerate-errors >/dev/null 2>"$T/writer.log" &
		WPID=$!
		if [ "$site" = time ]; then
			sleep "0.$((2 + $(rnd "$k:delay" 7)))"
			kill -KILL "$SERVER_PID"
		fi
		wait_for 30 "the mirror's crash at $site" dead "$SERVER_PID"
		kill -TERM "$WPID" 2>/dev/null || true
		wait "$WPID" 2>/dev/null || true
		NEXT=$((NEXT + 100000)) # past whatever that writer sent
	fi
	rc=0
	wait "$SERVER_PID" 2>/dev/null || rc=$?
	[ $rc -eq 137 ] || fail "case $k: frep-server exited $rc, expected 137 (killed)"
	[ "$site" = time ] || grep -q "crash point $site hit $n" "$SERVER_LOG" ||
		fail "case $k: no 'crash point $site hit $n' line in the server log"
	[ "$mode" = kill9 ] || grep -q 'crashfs: power loss' "$SERVER_LOG" || fail "case $k: no power loss"

	# Restart on the same port: the master reconnects, and the mirror catches up.
	SERVER_PORT_WANTED=$SERVER_PORT start_server
	wait_status vol state INSYNC 30
	if [ -z "$txid" ]; then
		[ "$(mctl --json snapshot list vol | jq '.snapshots | length')" = 0 ] ||
			fail "case $k: a snapshot cut short at its creation is listed: $(mctl snapshot list vol)"
		[ ! -e "$SERVER_DATA/vol/snapshots/s" ] || fail "case $k: the cut-short snapshot's files are left"
		txid=$(snapshot_create vol s)
	fi
	writes 50
	wait_status vol lag_tx 0 30
	read_snapshot vol s "$T/s$k.img"
	"${C[@]}" snapshot --initial "$T/i$k" --master-trace "$T/master$k.trace" --image "$T/s$k.img" \
		--txid "$txid" --seed "w$k" --max-len $MAXLEN ||
		fail "case $k ($mode at $site:$n): snapshot s is not the master at TXID $txid"
	wait_converged "$T/m$k" "$(mirror_extents vol 1)"
	stop "$CLIENT_PID"
	stop "$SERVER_PID"
	PIDS=()
	rm -rf "$R" "$T/s$k.img" "$T"/vol.journal* # the next case is a new volume
	k=$((k + 1))
done
pass "${#CASES[@]} $MODE cases: every snapshot read back as the master at its TXID"
