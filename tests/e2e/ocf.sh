# Shared helpers for the tests of the Pacemaker resource agent ocf/frep (test-ocf-*.sh).
#
# Source it instead of lib.sh (it sources lib.sh); it is not a test itself (ctest runs
# test-*.sh only). The agent
# runs as Pacemaker's execd runs it: OCF_ROOT=/usr/lib/ocf (Debian's resource-agents,
# whose ocf-shellfuncs it sources), OCF_RESKEY_* parameters, Pacemaker 2.1.5's feature
# set, so that promotion scores go through crm_attribute --promotion. There is no
# cluster: HA_SBIN_DIR is a directory whose crm_attribute and crm_master append their
# arguments to $SCORES, for last_score to read.
#
# A test plays up to two nodes on loopback: each has its own run dir (the agent's
# run_dir: admin sockets, state and pid files), journal and score file.
#   B  the mirror host: frep-server started with lib.sh's start_server (data dir
#      $T/mirror, run dir $FREP_RUN_DIR)
#   A  the master host: a frep-client with --admin unix:$RUN_A/client-vol.sock
#
# The agent leaves the frep-client it starts (and the shell that waits for it) behind
# when it exits, as daemons. Their orphans must not go to this machine's PID 1, which is
# no init and never reaps them: the test first makes itself a child subreaper (prctl
# PR_SET_CHILD_SUBREAPER, kept across exec), so that orphans come to its bash, which
# reaps them; lib.sh's cleanup stops the frep-client (b_pid adds it to PIDS).
if [ -z "${FREP_OCF_SUBREAPER:-}" ]; then
	export FREP_OCF_SUBREAPER=1
	exec /usr/bin/python3 -c 'import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER): " + os.strerror(ctypes.get_errno()))
os.execv("/bin/bash", ["bash"] + sys.argv[1:])' "$0" "$@"
fi
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ -x /usr/sbin/ocf-tester ] && [ -f /usr/lib/ocf/lib/heartbeat/ocf-shellfuncs ] ||
	fail "resource-agents is not installed (scripts/install-deps.sh installs it)"

export OCF_ROOT=/usr/lib/ocf OCF_RA_VERSION_MAJOR=1 OCF_RA_VERSION_MINOR=1
export OCF_RESKEY_crm_feature_set=3.16.2
export OCF_RESKEY_CRM_meta_timeout=20000
AGENT=$FREP_SRC/ocf/frep
RUN_A=$T/run-a
RUN_B=$FREP_RUN_DIR
mkdir -p "$RUN_A" "$T/sbin"
for p in crm_attribute crm_master; do
	# shellcheck disable=SC2016 # expanded by the stub
	printf '#!/bin/sh\necho "$(basename "$0") $*" >>"$SCORES"\n' >"$T/sbin/$p"
	chmod +x "$T/sbin/$p"
done
export HA_SBIN_DIR=$T/sbin

# The client options of a promoted node B: its mirror-to-be is unreachable unless
# B_MIRROR says otherwise; NBD on $T/b.sock.
b_client_options() {
	echo "--mirror ${B_MIRROR:-127.0.0.1:1} --server-name frep-mirror --cert $PKI/master-1.crt" \
		"--key $PKI/master-1.key --ca $PKI/ca.crt --nbd unix:$T/b.sock"
}

# ra NODE ACTION [VAR=VALUE...]: runs the agent's ACTION for volume vol on node A or B
# (VAR=VALUE overrides a parameter or adds to the environment); sets RA_RC, and leaves
# its stderr in $T/ra.err (RA_REASON: its ocf-exit-reason) and stdout in $T/ra.out.
ra() {
	local node=$1 action=$2 run
	shift 2
	case $node in A) run=$RUN_A ;; B) run=$RUN_B ;; *) fail "ra: no node $node" ;; esac
	RA_RC=0
	env OCF_RESOURCE_INSTANCE="frep:$node" SCORES="$T/scores-$node" \
		OCF_RESKEY_CRM_meta_interval=10000 \
		OCF_RESKEY_volume=vol OCF_RESKEY_journal="$T/$node.journal" OCF_RESKEY_run_dir="$run" \
		OCF_RESKEY_data_dir="$T/mirror" OCF_RESKEY_frepctl="$BIN/frepctl" \
		OCF_RESKEY_frep_client="$BIN/frep-client" OCF_RESKEY_log="$T/client-$node-ra.log" \
		OCF_RESKEY_client_options="$(b_client_options)" \
		"$@" "$AGENT" "$action" >"$T/ra.out" 2>"$T/ra.err" || RA_RC=$?
	RA_REASON=$(sed -n 's/^ocf-exit-reason://p' "$T/ra.err" | tail -n 1)
}

# expect NODE ACTION RC [VAR=VALUE...]: ra, and fails unless it returned RC.
expect() {
	local node=$1 action=$2 want=$3
	shift 3
	ra "$node" "$action" "$@"
	[ "$RA_RC" = "$want" ] ||
		fail "$action on $node ${*:+($*) }returned $RA_RC, not $want: $(tail -n 5 "$T/ra.err")"
}

# last_score NODE: the promotion score node NODE last set ("-" if deleted, "" if none).
last_score() {
	local line
	line=$(tail -n 1 "$T/scores-$1" 2>/dev/null)
	case $line in
	"") echo "" ;;
	*" -D"*) echo - ;;
	*) sed 's/.* -v \([0-9-]*\).*/\1/' <<<"$line" ;;
	esac
}

# expect_score NODE SCORE: and through crm_attribute --promotion (Pacemaker >= 2.1's way).
expect_score() {
	[ "$(last_score "$1")" = "$2" ] || fail "node $1's promotion score is '$(last_score "$1")', not $2 ($(tail -n 1 "$T/scores-$1" 2>/dev/null))"
	tail -n 1 "$T/scores-$1" | grep -q '^crm_attribute -p ' ||
		fail "the score was not set with crm_attribute -p: $(tail -n 1 "$T/scores-$1")"
}

# b_pid: BPID, the pid of the frep-client the agent started on B (its pid file), which
# the cleanup then stops too.
b_pid() {
	BPID=$(cat "$RUN_B/frep-client-vol.pid" 2>/dev/null) || return 1
	PIDS+=("$BPID")
}

# a_status: frepctl --json status vol on node A's frep-client (its --admin socket).
a_status() {
	"$BIN/frepctl" --admin "unix:$RUN_A/client-vol.sock" --json status vol 2>/dev/null
}
