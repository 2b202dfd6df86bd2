# Shared by tests/conformance/test-*.sh: frep-conform against frep's own daemons
# (conform_mirror here; conform_master in conform-master.sh, which sources this).
#
# Source it after tests/e2e/lib.sh; it is not a test itself. Nothing may SKIP at
# home: every case, the durability ones included, runs against frep-server
# (under the crashfs shim, whose simulated power loss --crash-cmd pulls) and
# frep-client.
CONFORM=$BIN/frep-conform
SHIM=${FREP_CRASHFS:-$BIN/tests/crashfs.so}
[ -x "$CONFORM" ] || fail "frep-conform not built: $CONFORM"
[ -f "$SHIM" ] || fail "crashfs shim not built: $SHIM"
# frep-server's frame bound (FRAME-11) and silence timeout (HB-3), short so that
# the cases that wait them out fit the test's time; frep-conform is told both.
FRAME_BOUND_MS=2000
PEER_TIMEOUT_S=3
# The daemons' files go on tmpfs: every case makes a volume (a mirror's journal is
# at least 64 MiB), and the fsyncs of that on a disk cost a case 0.3 s, a tenth of
# that here. The crashfs shim's power cut works the same on either.
FAST=$(mktemp -d /dev/shm/frep-conform.XXXXXX)
conform_exit() {
	local rc=$?
	[ -z "${MIRROR_UP:-}" ] || stop_mirror
	rm -rf "$FAST"
	(exit $rc)
	cleanup
}
trap conform_exit EXIT

# selected_cases ROLE PATTERN...: the IDs of ROLE's cases those --case globs select.
selected_cases() {
	local role=$1 id p
	shift
	while read -r id; do
		for p in "$@"; do
			# shellcheck disable=SC2053 # a glob, as frep-conform --case takes it
			if [[ $id == $p ]]; then echo "$id"; break; fi
		done
	done < <("$CONFORM" list "$role" | cut -f1)
}

# check_junit FILE ROLE N: FILE is well-formed XML with N passing testcases of ROLE.
check_junit() {
	/usr/bin/python3 - "$@" <<'PY' || fail "the JUnit report $1 is not what the run printed"
import sys, xml.etree.ElementTree as ET
path, role, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
suite = ET.parse(path).getroot()
cases = suite.findall("testcase")
assert suite.get("name") == "frep-conform " + role, suite.get("name")
assert int(suite.get("tests")) == want == len(cases), (suite.get("tests"), len(cases))
assert suite.get("failures") == "0" and suite.get("skipped") == "0"
assert all(c.find("failure") is None and c.find("skipped") is None for c in cases)
assert all(c.find("properties/property[@name='clauses']").get("value") for c in cases)
PY
}

# MIRROR_OPTS: more frep-server options (test-conform-mirror-thin.sh: --preallocate=sparse).
# The mirror runs from a launcher script so that --restart-cmd, run by
# frep-conform, can start it again on the same port after a power cut.
mirror_scripts() {
	local data=$FAST/mirror
	mkdir -p "$data"
	cat >"$T/mirror-start.sh" <<EOS
#!/usr/bin/env bash
set -euo pipefail
port=\${1:-\$(cat "$T/mirror.port")}
n=0
while [ -e "$T/mirror-\$n.log" ]; do n=\$((n + 1)); done
log=$T/mirror-\$n.log
env LD_PRELOAD="$SHIM" CRASHFS_ROOT="$data" CRASHFS_SIGNAL=USR2 ${MIRROR_ENV:-} \\
	ASAN_OPTIONS="$ASAN_OPTIONS:verify_asan_link_order=0" FREP_TEST_FRAME_MS=$FRAME_BOUND_MS \\
	"$BIN/${MIRROR_BIN:-frep-server}" --listen "127.0.0.1:\$port" --data-dir "$data" --cert "$PKI/server.crt" \\
	--key "$PKI/server.key" --ca "$PKI/ca.crt" --heartbeat-timeout $PEER_TIMEOUT_S ${MIRROR_OPTS:-} \\
	>"\$log" 2>&1 &
echo \$! >"$T/mirror.pid"
for _ in \$(seq 200); do
	grep -Eq 'listening on 127\.0\.0\.1:[0-9]+' "\$log" && break
	kill -0 "\$(cat "$T/mirror.pid")" 2>/dev/null || { cat "\$log" >&2; exit 1; }
	sleep 0.05
done
grep -Eo 'listening on 127\.0\.0\.1:[0-9]+' "\$log" | tail -n1 | cut -d: -f2 >"$T/mirror.port"
EOS
	# The power cut: the shim undoes every write not made durable, then SIGKILL.
	cat >"$T/mirror-crash.sh" <<EOS
#!/usr/bin/env bash
pid=\$(cat "$T/mirror.pid")
kill -USR2 "\$pid"
for _ in \$(seq 200); do kill -0 "\$pid" 2>/dev/null || exit 0; sleep 0.05; done
echo "frep-server \$pid still runs after its power cut" >&2
exit 1
EOS
}

stop_mirror() {
	local pid
	pid=$(cat "$T/mirror.pid" 2>/dev/null) || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
}

# run_conform RC_VAR [OPTIONS...] -- PATTERN...: frep-conform mirror against the
# running mirror, output in $T/conform.log (and shown), exit status in RC_VAR.
run_conform() {
	local -n rc_out=$1
	shift
	local opts=() cases=()
	while [ "$1" != -- ]; do opts+=("$1"); shift; done
	shift
	for p in "$@"; do cases+=(--case "$p"); done
	rc_out=0
	"$CONFORM" mirror --target "127.0.0.1:$(cat "$T/mirror.port")" --ca "$PKI/ca.crt" \
		--cert "$PKI/master-1.crt" --key "$PKI/master-1.key" \
		--other-cert "$PKI/master-2.crt" --other-key "$PKI/master-2.key" \
		--peer-timeout $PEER_TIMEOUT_S --frame-bound "$((FRAME_BOUND_MS / 1000))" \
		--crash-cmd "bash $T/mirror-crash.sh" --restart-cmd "bash $T/mirror-start.sh" \
		--junit "$T/junit.xml" "${opts[@]}" "${cases[@]}" >"$T/conform.log" 2>&1 || rc_out=$?
	cat "$T/conform.log"
}

start_mirror() {
	certs master-1 master-2
	mirror_scripts
	MIRROR_UP=1
	bash "$T/mirror-start.sh" 0 || fail "frep-server did not start"
}

# conform_mirror PATTERN...: every mirror case matching a PATTERN passes, none skips,
# and frep-server stays up and exits cleanly (no sanitizer report).
conform_mirror() {
	local want rc
	start_mirror
	want=$(selected_cases mirror "$@" | wc -l)
	[ "$want" -gt 0 ] || fail "no mirror case matches $*"
	run_conform rc -- "$@"
	[ "$rc" -eq 0 ] || fail "frep-conform mirror exited $rc"
	grep -Eq "^$want passed, 0 failed, 0 skipped " "$T/conform.log" ||
		fail "expected $want cases passed, none failed or skipped: $(tail -n1 "$T/conform.log")"
	check_junit "$T/junit.xml" mirror "$want"
	local pid
	pid=$(cat "$T/mirror.pid")
	kill -0 "$pid" 2>/dev/null || fail "frep-server is gone"
	kill -TERM "$pid"
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	! kill -0 "$pid" 2>/dev/null || fail "frep-server still runs 10 s after SIGTERM"
	! grep -Eq 'ASan|AddressSanitizer|LeakSanitizer|runtime error' "$T"/mirror-*.log ||
		fail "sanitizer report in the server log"
	pass "$want mirror cases passed"
}

# conform_broken RULE CLAUSE PATTERN...: frep-server-broken, breaking RULE, fails
# exactly the selected cases that cite CLAUSE, and passes the others. Each wait
# for the mirror is CONFORM_TIMEOUT_S (default 1 s).
conform_broken() {
	local rule=$1 clause=$2 rc
	shift 2
	MIRROR_BIN=frep-server-broken MIRROR_ENV="FREP_BREAK=$rule" start_mirror
	selected_cases mirror "$@" >"$T/selected"
	"$CONFORM" list mirror | awk -F'\t' -v c="$clause" '{ n = split($2, a, " "); for (i = 1; i <= n; i++) if (a[i] == c) print $1 }' |
		sort >"$T/cite"
	sort "$T/selected" | comm -12 - "$T/cite" >"$T/want"
	[ -s "$T/want" ] || fail "no selected case cites $clause: the test proves nothing"
	# A broken mirror drops what it should answer: short waits keep the test bounded.
	run_conform rc --timeout "${CONFORM_TIMEOUT_S:-1}" -- "$@"
	[ "$rc" -eq 1 ] || fail "frep-conform exited $rc against a mirror breaking $rule; expected 1"
	sed -n 's/^FAIL \([^ ]*\) .*/\1/p' "$T/conform.log" | sort >"$T/failed"
	diff -u "$T/want" "$T/failed" >"$T/diff.log" ||
		fail "breaking $rule should fail exactly the selected cases citing $clause: $(cat "$T/diff.log")"
	! grep -q '^SKIP ' "$T/conform.log" || fail "a case skipped"
	pass "breaking $rule fails exactly the $(wc -l <"$T/want") selected cases citing $clause"
}
