#!/usr/bin/env bash
# What the agent ocf/frep's demote asks of a running master, with a real mirror: B's
# frep-client (promoted by the agent) replicates to A's frep-server. A fenced master
# (A's copy promoted with --force) is failed back with `frepctl demote VOLUME`; an
# unfenced one in sync with its mirror hands the role over with `frepctl switchover
# VOLUME`; both on the frep-client's admin socket, and the agent never forces anything.
# frepctl runs through a wrapper that records each call and its exit status, and
# demote's outcome follows frepctl's: success once the frep-client has ended, or
# OCF_ERR_GENERIC with frepctl's refusal as the exit reason. (Demote without a mirror,
# which stops frep-client: test-ocf-failover.sh.)
source "$(dirname "$0")/ocf.sh"
certs master-1
mkvol "$T/e0" 8M; fill "$T/e0" 0 8 a

# The recording frepctl: "RC ARGS" per call.
cat >"$T/frepctl-rec" <<EOF
#!/bin/sh
"$BIN/frepctl" "\$@"
rc=\$?
echo "\$rc \$*" >>"$T/frepctl.calls"
exit \$rc
EOF
chmod +x "$T/frepctl-rec"

A_SERVER_PID="" PAIR=0
# pair: from scratch, B's frep-server receives the volume from a first master (on A),
# which then stops; the agent starts and promotes B, whose frep-client replicates to A's
# frep-server ($T/mirror-a, admin socket in $RUN_A) until INSYNC.
pair() {
	local p log
	PAIR=$((PAIR + 1))
	log=$T/server-a$PAIR.log
	for p in ${BPID:-} ${A_SERVER_PID:-} ${SERVER_PID:-}; do
		kill -TERM "$p" 2>/dev/null || continue
		wait_for 10 "pid $p to exit" eval "! kill -0 $p 2>/dev/null"
	done
	rm -rf "$T/mirror" "$T/mirror-a" "$T"/vol.journal* "$T"/B.journal* "${RUN_A:?}"/* "${RUN_B:?}"/* \
		"$T/frepctl.calls"
	start_server
	"$BIN/frep-server" --listen 127.0.0.1:0 --data-dir "$T/mirror-a" --cert "$PKI/server.crt" \
		--key "$PKI/server.key" --ca "$PKI/ca.crt" --admin "unix:$RUN_A/server.sock" >"$log" 2>&1 &
	A_SERVER_PID=$!
	PIDS+=("$A_SERVER_PID")
	wait_log "$log" 'listening on 127\.0\.0\.1:[0-9]+' 20
	B_MIRROR=127.0.0.1:$(grep -Eo 'listening on 127\.0\.0\.1:[0-9]+' "$log" | cut -d: -f2)
	start_client vol "$T/e0" master-1 --admin "unix:$RUN_A/client-vol.sock"
	wait_for 30 "the first master INSYNC" eval '[ "$(a_status | jq -r .volumes[0].state)" = INSYNC ]'
	stop "$CLIENT_PID"
	expect B start 0
	expect B promote 0
	b_pid || fail "promote left no pid file"
	wait_for 30 "B's master INSYNC with A's frep-server" eval \
		'[ "$(b_status | jq -r .volumes[0].state)" = INSYNC ]'
	expect B monitor 8
}

b_status() {
	"$BIN/frepctl" --admin "unix:$RUN_B/client-vol.sock" --json status vol 2>/dev/null
}

# demoted_by CMD: the agent's demote ran `frepctl --admin unix:B's client socket CMD vol`
# once, no other demote, switchover or --force, and its outcome ($RA_RC) follows
# frepctl's exit status, which it leaves in FREPCTL_RC.
demoted_by() {
	local cmd=$1 line rc
	line=$(grep -E " --admin unix:$RUN_B/client-vol\.sock $cmd vol\$" "$T/frepctl.calls") ||
		fail "demote did not run frepctl $cmd on B's frep-client: $(cat "$T/frepctl.calls")"
	[ "$(grep -cE ' (demote|switchover) ' "$T/frepctl.calls")" = 1 ] ||
		fail "demote ran more than frepctl $cmd: $(cat "$T/frepctl.calls")"
	! grep -q -- '--force' "$T/frepctl.calls" || fail "the agent forced: $(cat "$T/frepctl.calls")"
	rc=${line%% *}
	if [ "$rc" = 0 ]; then
		[ "$RA_RC" = 0 ] || fail "frepctl $cmd succeeded but demote returned $RA_RC: $RA_REASON"
		! kill -0 "$BPID" 2>/dev/null || grep -q '^State:.*Z' "/proc/$BPID/status" ||
			fail "demote succeeded with B's frep-client still running"
	else
		[ "$RA_RC" = 1 ] || fail "frepctl $cmd exited $rc but demote returned $RA_RC"
		grep -q "frepctl $cmd vol failed (exit $rc): frepctl: " <<<"$RA_REASON" ||
			fail "demote's exit reason does not give frepctl's refusal: $RA_REASON"
	fi
	FREPCTL_RC=$rc
}

# 1. Fenced: A's copy is promoted by force (B's master is connected), which fences B.
pair
out=$("$BIN/frepctl" --admin "unix:$RUN_A/server.sock" promote vol --force 2>&1) ||
	fail "promote --force on A: $out"
wait_for 20 "B fenced" eval 'b_status | jq -e .volumes[0].master.fenced >/dev/null'
expect B monitor 9
expect_score B -
ra B demote OCF_RESKEY_frepctl="$T/frepctl-rec"
demoted_by demote
rc_demote=$FREPCTL_RC
[ "$rc_demote" = 0 ] || fail "frepctl demote of a fenced master failed (exit $rc_demote)"
# B's frep-server took B's copy back as a mirror that diverged, with its pre-demote snapshot.
"$BIN/frepctl" --admin "unix:$RUN_B/server.sock" --json snapshot list vol |
	jq -e '.snapshots | map(.name) | index("pre-demote")' >/dev/null ||
	fail "no pre-demote snapshot on B after the agent's demote"

# 2. In sync with its mirror, not fenced: a planned switchover.
pair
ra B demote OCF_RESKEY_frepctl="$T/frepctl-rec"
demoted_by switchover
rc_switch=$FREPCTL_RC
[ "$rc_switch" = 0 ] || fail "frepctl switchover of an in-sync master failed (exit $rc_switch)"
[ "$("$BIN/frepctl" --admin "unix:$RUN_A/server.sock" --json status vol | jq -r .volumes[0].state)" = PROMOTED ] ||
	fail "after the switchover A's copy is not the primary"
alive "$SERVER_PID" "B's frep-server"
alive "$A_SERVER_PID" "A's frep-server"
pass "demote of a fenced master runs frepctl demote (exit $rc_demote), of one in sync frepctl switchover (exit $rc_switch); outcome follows frepctl"
