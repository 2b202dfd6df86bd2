#!/usr/bin/env bash
# Both daemons under a stand-in for systemd's notify socket (Type=notify): READY=1 only
# once they serve (frep-server after its journal replay and listening; frep-client after
# its journal redo, with NBD answering), STATUS= lines naming the state up to INSYNC,
# STOPPING=1 and exit 0 on SIGTERM. Twice: the second start has journals to replay.
source "$(dirname "$0")/lib.sh"
certs master-1

# notify NAME ON_READY: a notify socket $T/NAME.notify logging to $T/NAME.notify.out;
# ON_READY runs (bash) when READY=1 arrives.
notify() {
	rm -f "$T/$1.notify"
	/usr/bin/python3 "$FREP_SRC/tests/tools/notify-socket.py" "$T/$1.notify" "$T/$1.notify.out" \
		--on-ready "$2" >>"$T/$1.notify.log" 2>&1 &
	PIDS+=("$!")
	wait_for 10 "notify socket $1" test -S "$T/$1.notify"
}

# has NAME LINE: the notify socket NAME received LINE (a whole line).
has() {
	grep -qxF "$2" "$T/$1.notify.out"
}

# round N: both daemons under supervision, to INSYNC, a write, SIGTERM. Round 1 leaves
# a write in the master's journal that the mirror has not acknowledged.
round() {
	local n=$1
	: >"$T/client-vol.log"
	# READY=1 from frep-server: it listens (the line comes first), and in round 2 it
	# replayed the volume's journal before.
	local server_check="grep -q 'listening on' '$T/server.log'"
	[ "$n" = 1 ] || server_check+=" && grep -q 'volume=vol recovered: ' '$T/server.log'"
	notify server$n "$server_check"
	NOTIFY_SOCKET=$T/server$n.notify start_server
	wait_for 10 "READY=1 from frep-server" grep -q '^ON_READY' "$T/server$n.notify.out"
	has server$n "ON_READY rc=0" || fail "frep-server sent READY=1 before it listened (round $n)"

	# READY=1 from frep-client: NBD answers at once, and in round 2 the redo ran before.
	local client_check="nbdinfo --size '$(nbd_uri vol)'"
	[ "$n" = 1 ] || client_check+=" && grep -q 'volume=vol redo: re-applied TXIDs' '$T/client-vol.log'"
	notify client$n "$client_check"
	NOTIFY_SOCKET=$T/client$n.notify start_client vol "$T/e0"
	wait_for 20 "READY=1 from frep-client" grep -q '^ON_READY' "$T/client$n.notify.out"
	has client$n "ON_READY rc=0" || fail "frep-client sent READY=1 before NBD answered or before its redo (round $n)"
	grep -q '^STATUS=vol: journal redo$' "$T/client$n.notify.out" ||
		fail "frep-client did not report its journal redo in STATUS= (round $n)"

	wait_for 20 "STATUS=vol: INSYNC from frep-client" has client$n "STATUS=vol: INSYNC"
	wait_for 10 "STATUS=vol: INSYNC from frep-server" has server$n "STATUS=vol: INSYNC"
	# The client went through the creation steps on its way there, in order.
	grep -Eo '^STATUS=vol: (INIT|MAKEPARTS|READY|INSYNC)$' "$T/client$n.notify.out" | uniq |
		tr '\n' ' ' | grep -q '^STATUS=vol: INIT STATUS=vol: MAKEPARTS STATUS=vol: READY .*STATUS=vol: INSYNC $' ||
		fail "frep-client's STATUS= lines: $(grep '^STATUS=' "$T/client$n.notify.out" | tr '\n' ' ')"

	qemu-io -f raw "$(nbd_uri vol)" -c "write -P 0x5$n ${n}M 64K" >/dev/null || fail "write (round $n)"
	wait_converged "$T/e0" "$(mirror_extents vol 1)" 20

	if [ "$n" = 1 ]; then
		# The mirror goes first, so the next write stays held in the master's journal
		# for round 2's redo.
		stop "$SERVER_PID"
		qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x77 3M 64K' >/dev/null || fail "write, mirror down"
		stop "$CLIENT_PID"
	else
		stop "$CLIENT_PID"
		stop "$SERVER_PID"
	fi
	has client$n "STOPPING=1" || fail "frep-client exited 0 without STOPPING=1 (round $n)"
	has server$n "STOPPING=1" || fail "frep-server exited 0 without STOPPING=1 (round $n)"
	# Nothing after STOPPING=1 claims to be ready again.
	! sed '1,/^STOPPING=1$/d' "$T/client$n.notify.out" | grep -q '^READY=1' || fail "READY=1 after STOPPING=1"
}

mkvol "$T/e0" 8M
fill "$T/e0" 0 2 svc
round 1
round 2
M=$(mirror_extents vol 1)
qemu-io -f raw -r "$M" -c 'read -P 0x77 3M 64K' >/dev/null || fail "the redone write is not on the mirror"
pass "READY=1 after replay/redo with NBD answering, STATUS= to INSYNC, STOPPING=1 and exit 0, twice"
