# frepctl helpers on top of tests/e2e/lib.sh (which they source), for tests/admin/test-frepctl-*.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"
# The daemons' default admin sockets and frepctl's discovery, away from /run/frep.
export FREP_RUN_DIR=$T/run
mkdir -p "$FREP_RUN_DIR"

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

# pyjson EXPR: a Python expression over the JSON document on stdin (as d); prints the
# result (dicts, lists, tuples and booleans as JSON).
pyjson() {
	/usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
r = eval(sys.argv[1])
print(json.dumps(r) if isinstance(r, (dict, list, tuple, bool)) or r is None else r)' "$1"
}

# field NAME ROLE EXPR: EXPR over volume NAME's status as reported by its ROLE (MASTER or
# MIRROR) daemon (as v), from frepctl --json status.
field() {
	"$BIN/frepctl" --json status "$1" 2>/dev/null |
		pyjson "[v for v in d['volumes'] if v['role'] == '$2'][0]$3"
}

# wait_state NAME ROLE STATE [TIMEOUT_S]
state_is() {
	[ "$(field "$1" "$2" "['state']")" = "$3" ]
}
wait_state() {
	wait_for "${4:-20}" "$1's $2 in $3" state_is "$1" "$2" "$3"
}
