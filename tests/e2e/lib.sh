# Shared harness for end-to-end tests: temp dir, certificates, daemons, waits, cleanup.
# Source it from a test script; every helper is bounded in time.
set -euo pipefail

: "${FREP_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${FREP_BUILD:=$FREP_SRC/build}"
BIN=$FREP_BUILD
T=$(mktemp -d /tmp/frep-e2e.XXXXXX)
PKI=$T/pki
PIDS=()
TEST_NAME=$(basename "$0" .sh)
# The daemons' default admin sockets (server.sock, client-NAME.sock) go here, not /run/frep.
export FREP_RUN_DIR=$T/run
mkdir -p "$FREP_RUN_DIR"
export LIBNBD_DEBUG=0
# nbdsh needs the python3 that has Debian's nbd module, not one earlier on PATH (pyenv).
export PATH=/usr/bin:$PATH
# Sanitizer builds: fail on any report, including leaks at exit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

cleanup() {
	local rc=$?
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	done
	if [ $rc -ne 0 ]; then
		echo "--- $TEST_NAME failed; logs in $T:" >&2
		for f in "$T"/*.log; do [ -f "$f" ] && { echo "=== $f" >&2; tail -n 40 "$f" >&2; }; done
		[ -n "${KEEP_LOGS:-}" ] || rm -rf "$T"
	else
		rm -rf "$T"
	fi
	exit $rc
}
trap cleanup EXIT

fail() {
	echo "FAIL: $TEST_NAME: $*" >&2
	exit 1
}

pass() {
	echo "ok: $TEST_NAME: $*"
}

# certs [CLIENT_CN...]: throwaway CA, server cert (CN frep-mirror) and client certs.
certs() {
	bash "$FREP_SRC/scripts/gen-certs.sh" "$PKI" "$@"
}

# admin_certs [OPERATOR_CN...]: the admin API's own PKI in $APKI (gen-certs.sh --admin):
# ca.crt, server.crt/key (CN frep-admin) and one certificate per operator (default admin).
APKI=$T/admin-pki
admin_certs() {
	bash "$FREP_SRC/scripts/gen-certs.sh" --admin "$APKI" "$@"
}

# wait_for TIMEOUT_S DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_for() {
	local timeout=$1 what=$2
	shift 2
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || fail "timed out after ${timeout}s waiting for $what"
		sleep 0.1
	done
}

# wait_log FILE REGEX [TIMEOUT_S]
wait_log() {
	wait_for "${3:-30}" "'$2' in $(basename "$1")" grep -Eq "$2" "$1"
}

# start_server [EXTRA ARGS...]: frep-server on an ephemeral loopback port (or on
# $SERVER_PORT_WANTED, to restart on the same one). Sets SERVER_PID, SERVER_PORT,
# SERVER_LOG; data dir $T/mirror. SERVER_ENV=(VAR=VALUE...) adds to its environment
# (a crash point, the power-loss shim).
SERVER_ENV=()
start_server() {
	local data=${SERVER_DATA:-$T/mirror}
	SERVER_LOG=$T/server.log
	: >"$SERVER_LOG"
	# A predecessor the test killed (SIGKILL is asynchronous) must have let go of
	# the data dir's lock first.
	[ ! -e "$data/.lock" ] || wait_for 10 "the data dir lock of $data to be released" \
		flock -n "$data/.lock" true
	env "${SERVER_ENV[@]+"${SERVER_ENV[@]}"}" "$BIN/frep-server" --listen "127.0.0.1:${SERVER_PORT_WANTED:-0}" --data-dir "$data" \
		--cert "$PKI/server.crt" --key "$PKI/server.key" --ca "$PKI/ca.crt" "$@" \
		>>"$SERVER_LOG" 2>&1 &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	# Polled finely: the crash loops restart the server every iteration.
	local deadline=$((SECONDS + 20))
	until grep -Eq 'listening on 127\.0\.0\.1:[0-9]+' "$SERVER_LOG"; do
		[ $SECONDS -lt $deadline ] || fail "timed out after 20s waiting for frep-server to listen"
		sleep 0.02
	done
	SERVER_PORT=$(grep -Eo 'listening on 127\.0\.0\.1:[0-9]+' "$SERVER_LOG" | tail -n1 | cut -d: -f2)
}

# start_server_small SIZE [EXTRA ARGS...]: frep-server with its data dir on a SIZE tmpfs
# in a mount namespace of its own: a small disk to run out of space on. Sets SERVER_PID,
# SERVER_PORT, SERVER_LOG ($T/server.log, or $SMALL_LOG) and MNT, the tmpfs as the
# server sees it (data dir $MNT/data).
start_server_small() {
	local size=$1
	shift
	mkdir -p "$T/small"
	SERVER_LOG=${SMALL_LOG:-$T/server.log}
	: >"$SERVER_LOG"
	# shellcheck disable=SC2016 # expanded by the inner shell
	unshare -m bash -c 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"' _ \
		"$size" "$T/small" "$BIN/frep-server" --listen 127.0.0.1:0 --data-dir "$T/small/data" \
		--cert "$PKI/server.crt" --key "$PKI/server.key" --ca "$PKI/ca.crt" "$@" >>"$SERVER_LOG" 2>&1 &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	wait_log "$SERVER_LOG" 'listening on 127\.0\.0\.1:[0-9]+' 20
	SERVER_PORT=$(grep -Eo 'listening on 127\.0\.0\.1:[0-9]+' "$SERVER_LOG" | cut -d: -f2)
	MNT=/proc/$SERVER_PID/root$T/small
}

# start_client NAME EXTENTS [CN] [EXTRA ARGS...]: frep-client for volume NAME
# (EXTENTS comma-separated) with certificate CN (default master-1), NBD on
# $T/NAME.sock, journal $T/NAME.journal. Sets CLIENT_PID; log $T/client-NAME.log.
start_client() {
	local name=$1 extents=$2 cn=${3:-master-1} journal=${JOURNAL:-$T/$1.journal}
	shift 3 || shift $#
	# frep-client takes the journal lock at once, before it execs nbdkit: a
	# predecessor the test killed (SIGKILL is asynchronous) must be gone first.
	[ ! -e "$journal.lock" ] || wait_for 10 "the journal lock of $name to be released" \
		flock -n "$journal.lock" true
	local log=$T/client-$name.log listening
	listening=$(grep -c 'NBD listening on' "$log" 2>/dev/null) || true
	"$BIN/frep-client" --volume "$name=$extents" --mirror "127.0.0.1:$SERVER_PORT" \
		--server-name frep-mirror --journal "$journal" \
		--cert "$PKI/$cn.crt" --key "$PKI/$cn.key" --ca "$PKI/ca.crt" \
		--nbd "unix:$T/$name.sock" "$@" >>"$log" 2>&1 &
	CLIENT_PID=$!
	PIDS+=("$CLIENT_PID")
	# The socket file alone proves nothing: a killed predecessor's may still be
	# there. nbdkit says it listens once it does (after journal redo).
	wait_for 20 "NBD socket of $name" client_listening "$log" "${listening:-0}"
}

# client_listening LOG N: LOG has more than N "NBD listening on" lines.
client_listening() {
	[ "$(grep -c 'NBD listening on' "$1")" -gt "$2" ]
}

# start_proxy [SEED]: tests/tools/fault-proxy in front of the server (start_server
# first). Sets PROXY_PID, PROXY_PORT; pctl drives it. Clients reach the mirror through
# it with SERVER_PORT=$PROXY_PORT start_client ...
start_proxy() {
	PROXY_CTL=$T/proxy.ctl
	"$BIN/tests/fault-proxy" --listen 127.0.0.1:0 --target "127.0.0.1:$SERVER_PORT" \
		--control "unix:$PROXY_CTL" --seed "${1:-1}" >>"$T/proxy.log" 2>&1 &
	PROXY_PID=$!
	PIDS+=("$PROXY_PID")
	wait_log "$T/proxy.log" 'listening on 127\.0\.0\.1:[0-9]+' 10
	PROXY_PORT=$(grep -Eo 'listening on 127\.0\.0\.1:[0-9]+' "$T/proxy.log" | tail -n1 | cut -d: -f2)
}

# pctl COMMAND...: one proxy command (drop-after, drop-now [CONN], stall, unstall, delay MS [CONN],
# rate MBPS (a cap per direction; 0 ends it), refuse, stats); prints the answer, and
# an "error" answer fails the test. tests/tools/fault-proxy.c's header says more.
pctl() {
	"$BIN/tests/fault-proxy" --control "unix:$PROXY_CTL" --cmd "$*" || fail "proxy command '$*' failed"
}

# proxy_stat KEY: one field of the proxy's stats line (up, down, drops, rate, ...).
proxy_stat() {
	pctl stats | tr ' ' '\n' | sed -n "s/^$1=//p"
}

# admin NAME METHOD [REQUEST_JSON] [ARGS...]: one admin API call on volume NAME's
# frep-client (its default socket in $FREP_RUN_DIR), through the generic Python client.
admin() {
	local sock=$FREP_RUN_DIR/client-$1.sock
	shift
	/usr/bin/python3 "$FREP_SRC/tests/tools/admin-client.py" "unix:$sock" "$@"
}

# frepctl_for NAME ARGS...: frepctl on volume NAME's frep-client (its default socket).
frepctl_for() {
	local sock=$FREP_RUN_DIR/client-$1.sock
	shift
	"$BIN/frepctl" --admin "unix:$sock" "$@"
}

# mctl ARGS...: frepctl on the mirror's frep-server (its default socket).
mctl() {
	"$BIN/frepctl" --admin "unix:$FREP_RUN_DIR/server.sock" "$@"
}

# snapshot_create VOL NAME: takes snapshot NAME of VOL on the mirror; prints its TXID.
snapshot_create() {
	local out
	out=$(mctl --json snapshot create "$1" "$2" 2>&1) || fail "snapshot create $1 $2: $out"
	jq -r '.snapshot.txid' <<<"$out"
}

# read_snapshot VOL SNAP FILE: snapshot SNAP of VOL read whole through its read-only NBD
# export (nbdcopy), as a backup would; the export ends afterwards.
read_snapshot() {
	local sock=$T/export-$1-$2.sock out
	out=$(mctl export "$1@$2" --nbd "unix:$sock" 2>&1) || fail "export $1@$2: $out"
	nbdcopy "nbd+unix:///$1@$2?socket=$sock" "$3" || fail "nbdcopy of $1@$2 failed"
	out=$(mctl unexport "$1@$2" 2>&1) || fail "unexport $1@$2: $out"
}

# ctl NAME pause|resume|resync-full|status: an operator command on volume NAME through
# frepctl; prints "ok MESSAGE" or "error CODE: details" (status: frepctl's JSON).
ctl() {
	local out rc=0 args
	case $2 in
	pause | resume) args=("$2" "$1") ;;
	resync-full) args=(resync "$1" --full) ;;
	# Status polls run in loops: without the exit-time leak scan of gRPC's heap
	# (frepctl's own tests keep it), each costs a third less CPU under ASan.
	status) ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0 frepctl_for "$1" --json status "$1"; return ;;
	*) fail "ctl: unknown command $2" ;;
	esac
	out=$(frepctl_for "$1" "${args[@]}" 2>&1) || rc=$?
	if [ $rc -eq 0 ]; then echo "ok $out"; else echo "error $(sed 's/^frepctl: [a-z-]* [^:]*: //' <<<"$out")"; fi
}

# status_field KEY: one field of the frepctl --json status document on stdin: a field of
# the volume, of its master or mirror part, or "error" for "CODE: message" of its last error.
status_field() {
	jq -r --arg k "$1" '.volumes[0] | if $k == "error"
		then (.last_error // {} | if .code then "\(.code): \(.message)" else "" end)
		else (if has($k) then .[$k] elif (.master // {} | has($k)) then .master[$k]
		      else (.mirror // {})[$k] end) end'
}

# ctl_field NAME KEY: one field of volume NAME's status.
ctl_field() {
	ctl "$1" status | status_field "$2"
}

# start_load NAME SIZE [OFFSET]: 4 KiB random writes, 4 in flight (fio's nbd engine), to
# [OFFSET, OFFSET + SIZE) of volume NAME for up to 55 s, in the background (LOAD is its
# pid; log $T/fio.log); returns once 200 of them are committed.
start_load() {
	fio --name=load --ioengine=nbd --uri="$(nbd_uri "$1")" --rw=randwrite --bs=4k --iodepth=4 \
		--offset="${3:-0}" --size="$2" --time_based --runtime=55 >"$T/fio.log" 2>&1 &
	LOAD=$!
	PIDS+=("$LOAD")
	local from
	from=$(ctl_field "$1" committed_txid)
	wait_for 20 "the load's writes to commit" committed_above "$1" $((from + 200))
}

# committed_above NAME TXID: volume NAME's master has committed past TXID.
committed_above() {
	[ "$(ctl_field "$1" committed_txid)" -gt "$2" ]
}

# verify NAME [--repair]: frepctl verify NAME --wait --json (online verify, spec VFY-*);
# sets VERIFY_RC (frepctl's exit code) and prints "OUTCOME MISMATCHED REPAIRED" and then
# each mismatching region as "OFFSET+LENGTH", from the result it prints. Redirect its
# output to a file rather than reading it through a pipe, which would lose VERIFY_RC.
verify() {
	VERIFY_RC=0
	"$BIN/frepctl" --json verify "$@" --wait >"$T/verify.json" 2>"$T/verify.err" || VERIFY_RC=$?
	/usr/bin/python3 - "$T/verify.json" <<'PY' || fail "frepctl verify $*: $(cat "$T/verify.json" "$T/verify.err")"
import json, sys
r = json.load(open(sys.argv[1]))
s = r["status"]
print(s.get("outcome", ""), s.get("mismatched_regions", 0), s.get("repaired_regions", 0),
      *["%d+%d" % (g["offset"], g["length"]) for g in r.get("mismatches", [])])
PY
}

# dirty_regions NAME: the dirty bitmap's set regions (64 KiB each) of volume NAME.
dirty_regions() {
	echo $(($(ctl_field "$1" dirty_bytes) / 65536))
}

# wait_status NAME KEY VALUE [TIMEOUT_S]: polls volume NAME's status.
status_is() {
	[ "$(ctl_field "$1" "$2")" = "$3" ]
}
status_not() {
	[ "$(ctl_field "$1" "$2")" != "$3" ]
}
wait_status() {
	wait_for "${4:-30}" "$2=$3 in $1's status" status_is "$1" "$2" "$3"
}

# stop PID: SIGTERM and wait (bounded); fails if it does not exit 0.
stop() {
	local pid=$1 rc=0
	kill -TERM "$pid"
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$pid" 2>/dev/null && fail "process $pid ignored SIGTERM for 10s"
	wait "$pid" || rc=$?
	[ $rc -eq 0 ] || fail "process $pid exited $rc after SIGTERM"
}

# alive PID WHAT: asserts the daemon is still running.
alive() {
	kill -0 "$1" 2>/dev/null || fail "$2 (pid $1) is not running"
}

# nbd_uri NAME: the NBD URI of volume NAME's export.
nbd_uri() {
	echo "nbd+unix:///$1?socket=$T/$1.sock"
}

# mirror_extents NAME N: mirror extent paths of volume NAME, comma-separated.
mirror_extents() {
	local d=${SERVER_DATA:-$T/mirror}/$1 out="" i
	for ((i = 0; i < $2; i++)); do out+="${out:+,}$d/extent.$i"; done
	echo "$out"
}

# same_bytes "A1,A2,..." "B1,B2,...": the concatenations are byte-identical.
same_bytes() {
	local a b
	a=$(IFS=,; cat $1 | sha256sum) || return 1
	b=$(IFS=,; cat $2 2>/dev/null | sha256sum) || return 1
	[ "$a" = "$b" ]
}

# wait_converged MASTER_EXTENTS MIRROR_EXTENTS [TIMEOUT_S]
wait_converged() {
	wait_for "${3:-30}" "mirror byte-identical to master" same_bytes "$1" "$2"
}

# mkvol PATH SIZE: sparse extent file.
mkvol() {
	truncate -s "$2" "$1"
}

# fill PATH OFFSET_MIB LEN_MIB SEED: deterministic pseudo-random data.
# (head closing the pipe kills openssl with SIGPIPE: that is not a failure.)
fill() {
	(set +o pipefail
	openssl enc -aes-128-ctr -pass "pass:$4" -nosalt -pbkdf2 </dev/zero 2>/dev/null |
		head -c $(($3 << 20)) | dd of="$1" bs=1M seek="$2" conv=notrunc status=none)
}

# corrupt_journal_record JOURNAL N: flips one data byte of the Nth-newest record (by
# TXID; 1 is the newest) of a stopped daemon's journal, and prints its TXID.
corrupt_journal_record() {
	/usr/bin/python3 - "$1" "$2" <<'PY'
import struct, sys
path, rank = sys.argv[1], int(sys.argv[2])
data = bytearray(open(path, "rb").read())
recs = []
for off in range(4096, len(data) - 64, 64):
    if data[off:off + 4] == b"FRJR":
        txid = struct.unpack_from("<Q", data, off + 40)[0]
        dlen = struct.unpack_from("<I", data, off + 12)[0]
        recs.append((txid, off, dlen))
recs.sort()
txid, off, dlen = recs[-rank]
assert dlen > 100, recs[-rank]
data[off + 64 + 100] ^= 0xFF
open(path, "r+b").write(data)
print(txid)
PY
}
