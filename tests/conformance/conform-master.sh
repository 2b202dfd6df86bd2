# Shared by tests/conformance/test-conform-master-*.sh: frep-conform plays a mirror
# against frep-client.
#
# Source it after tests/e2e/lib.sh; it is not a test itself. frep-conform starts
# frep-client afresh for every case (--run), in the case's own directory {dir},
# under the crashfs shim there, so that --crash-cmd can pull the plug
# (CRASHFS_SIGNAL=USR2) and nothing SKIPs at home.
source "$(dirname "${BASH_SOURCE[0]}")/conform.sh"
# frep-client's silence timeout (HB-3): short, so that the cases that wait it out
# fit the test's time; frep-conform is told it. The backoff is short too: the
# cases that check a master stays away after a severe error wait 2 s, well past
# its MAX, and the backoff case needs MAX >= 4 MIN.
PEER_TIMEOUT_S=2

# conform_master PATTERN...: every master case matching a PATTERN passes, none
# skips, and the JUnit report says so.
conform_master() {
	certs master-1
	local run cases=() want rc=0
	# A 1 MiB sparse volume; the journal takes its default size (100M), so the
	# window case (SEQ-3) meets frep's 64 MiB bound before a full buffer.
	run="truncate -s ${CONFORM_VOLUME:-1M} {dir}/vol && LD_PRELOAD=$SHIM CRASHFS_ROOT={dir} CRASHFS_SIGNAL=USR2"
	run+=" ASAN_OPTIONS=$ASAN_OPTIONS:verify_asan_link_order=0 exec $BIN/frep-client"
	run+=" --volume vol={dir}/vol --mirror {host}:{port} --server-name frep-mirror"
	run+=" --journal {dir}/j --cert $PKI/master-1.crt --key $PKI/master-1.key --ca $PKI/ca.crt"
	run+=" --nbd unix:{dir}/nbd.sock --backoff 0.1:0.5 --heartbeat-timeout $PEER_TIMEOUT_S"
	run+=" --admin unix:{dir}/admin.sock ${CONFORM_CLIENT_ARGS:-}"
	# The operator's pause, resume and verify (IDLE and VFY cases): one admin API call, which must
	# succeed (the client exits non-zero otherwise).
	local admin="/usr/bin/python3 $FREP_SRC/tests/tools/admin-client.py unix:{dir}/admin.sock"
	for p in "$@"; do cases+=(--case "$p"); done
	want=$(selected_cases master "$@" | wc -l)
	[ "$want" -gt 0 ] || fail "no master case matches $*"
	# The power cut: the shim undoes every write not made durable, then SIGKILL;
	# frep-conform waits for the master to die and starts --run again in {dir}.
	"$CONFORM" master --listen 127.0.0.1:0 --ca "$PKI/ca.crt" --cert "$PKI/server.crt" \
		--key "$PKI/server.key" --run "$run" --dir "$FAST/scratch" --peer-timeout $PEER_TIMEOUT_S \
		--crash-cmd 'kill -USR2 {pid}' --restart-cmd 'grep -q "crashfs: power loss" {dir}/master.log' \
		--pause-cmd "$admin Pause '{\"volume\": \"vol\"}'" \
		--resume-cmd "$admin Resume '{\"volume\": \"vol\"}'" \
		--verify-cmd "$admin Verify '{\"volume\": \"vol\"}'" \
		--verify-repair-cmd "$admin Verify '{\"volume\": \"vol\", \"repair\": true}'" \
		--junit "$T/junit.xml" "${cases[@]}" >"$T/conform.log" 2>&1 || rc=$?
	cat "$T/conform.log"
	if [ $rc -ne 0 ]; then
		# A failed case keeps its directory: show what its master logged.
		for f in "$FAST"/scratch/case-*/master.log; do
			[ -f "$f" ] && { echo "=== $f" >&2; tail -n 30 "$f" >&2; }
		done
		fail "frep-conform master exited $rc"
	fi
	grep -Eq "^$want passed, 0 failed, 0 skipped " "$T/conform.log" ||
		fail "expected $want cases passed, none failed or skipped: $(tail -n1 "$T/conform.log")"
	check_junit "$T/junit.xml" master "$want"
	# Passed cases leave nothing behind, and no master outlives its case.
	[ -z "$(ls -A "$FAST/scratch")" ] || fail "case directories left in $FAST/scratch: $(ls "$FAST/scratch")"
	! pgrep -f "frep-plugin.so.*$FAST/scratch" >/dev/null || fail "a master of this run still runs"
	pass "$want master cases passed"
}
