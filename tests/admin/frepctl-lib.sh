# frepctl helpers on top of tests/e2e/lib.sh (which they source), for tests/admin/test-frepctl-*.sh.
# lib.sh points FREP_RUN_DIR (the daemons' default admin sockets, frepctl's discovery) at $T/run.
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"

# fctl ARGS...: runs frepctl; sets RC, OUT and ERR. Never fails by itself.
fctl() {
	RC=0
	"$BIN/frepctl" "$@" >"$T/fctl.out" 2>"$T/fctl.err" || RC=$?
	OUT=$(cat "$T/fctl.out")
	ERR=$(cat "$T/fctl.err")
}

# expect RC ARGS...: frepctl ARGS exits RC (OUT and ERR as fctl sets them).
expect() {
	local want=$1
	shift
	fctl "$@"
	[ "$RC" = "$want" ] || fail "frepctl $* exited $RC, want $want; stdout: $OUT; stderr: $ERR"
}

# out_has REGEX / err_has REGEX: the last frepctl's stdout / stderr has a line matching.
out_has() {
	grep -Eq -- "$1" <<<"$OUT" || fail "no /$1/ in the stdout of frepctl: $OUT"
}
err_has() {
	grep -Eq -- "$1" <<<"$ERR" || fail "no /$1/ in the stderr of frepctl: $ERR"
}

# jqc FILTER [ARGS...]: jq over the last frepctl's stdout, compact (-c) and raw (-r).
jqc() {
	jq -cr "$@" <<<"$OUT"
}

# field NAME ROLE FILTER: jq FILTER over volume NAME's status as its ROLE (MASTER or MIRROR)
# daemon reports it, from frepctl --json status.
field() {
	"$BIN/frepctl" --json status "$1" 2>/dev/null |
		jq -r --arg role "$2" ".volumes[] | select(.role == \$role) | $3"
}

# wait_state NAME ROLE STATE [TIMEOUT_S]
state_is() {
	[ "$(field "$1" "$2" .state)" = "$3" ]
}
wait_state() {
	wait_for "${4:-20}" "$1's $2 in $3" state_is "$1" "$2" "$3"
}

# ended PID: the process has exited.
ended() {
	! kill -0 "$1" 2>/dev/null
}
# reap PID: waits (bounded) for a watcher frepctl; WRC is its exit status.
reap() {
	wait_for 10 "frepctl watch (pid $1) to exit" ended "$1"
	WRC=0
	wait "$1" || WRC=$?
}
