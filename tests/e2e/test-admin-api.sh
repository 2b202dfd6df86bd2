#!/usr/bin/env bash
# The admin API from Python, built from the .proto alone (tests/tools/admin-client.py):
# every method on both daemons, the default 0600 sockets, Watch's events2 order, and the
# status codes of bad requests (NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT,
# UNIMPLEMENTED), with the daemons serving on afterwards.
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 16M
fill "$T/e0" 0 2 a
M=$(mirror_extents vol 1)
start_server
start_client vol "$T/e0" master-1
wait_status vol state INSYNC 20
CS=unix:$FREP_RUN_DIR/client-vol.sock
SS=unix:$FREP_RUN_DIR/server.sock
AC=(/usr/bin/python3 "$FREP_SRC/tests/tools/admin-client.py")

# call TARGET METHOD [JSON]: the JSON answer; fails the test on an error status.
call() {
	"${AC[@]}" "$@" 2>"$T/call.err" || fail "$2 on $1: $(cat "$T/call.err")"
}
# refused TARGET METHOD JSON CODE MESSAGE-REGEX: the call fails with exactly that status.
refused() {
	local out rc=0
	out=$("${AC[@]}" "$1" "$2" "$3" 2>&1) && fail "$2 $3 on $1 succeeded: $out"
	[[ $out =~ ^$4:\ $5 ]] || fail "$2 $3 on $1: want $4: $5, got: $out"
}
field() { # EXPR: a python expression on d, the JSON document on stdin
	/usr/bin/python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

# The default sockets, mode 0600.
for s in "$FREP_RUN_DIR/client-vol.sock" "$FREP_RUN_DIR/server.sock"; do
	[ -S "$s" ] || fail "no admin socket $s"
	[ "$(stat -c %a "$s")" = 600 ] || fail "$s has mode $(stat -c %a "$s"), not 600"
done

# Status on the master: the volume, its role, state and figures.
st=$(call "$CS" Status)
[ "$(field 'd["daemon"]' <<<"$st")" = frep-client ] || fail "daemon: $st"
[ "$(field 'd["volumes"][0]["name"], d["volumes"][0]["role"], d["volumes"][0]["state"]' <<<"$st")" = \
	"('vol', 'MASTER', 'INSYNC')" ] || fail "master status: $st"
[ "$(field 'd["volumes"][0]["master"]["peer"]["identity"]' <<<"$st")" = frep-mirror ] ||
	fail "peer identity: $st"
[ "$(field 'd["volumes"][0]["master"]["volume_size_bytes"]' <<<"$st")" = $((16 << 20)) ] ||
	fail "volume size: $st"
# Status on the mirror: owner, consistent, the connected master.
st=$(call "$SS" Status '{"volume": "vol"}')
[ "$(field 'd["volumes"][0]["role"], d["volumes"][0]["state"], d["volumes"][0]["mirror"]["owner_identity"], d["volumes"][0]["mirror"]["consistent"], d["volumes"][0]["mirror"]["connected_master"]["identity"]' <<<"$st")" = \
	"('MIRROR', 'INSYNC', 'master-1', True, 'master-1')" ] || fail "mirror status: $st"

# Watch: EXISTS first, INITIAL_DONE, then the change a pause makes.
"${AC[@]}" "$CS" Watch '{"volume": "vol"}' --count 5 >"$T/watch.jsonl" 2>"$T/watch.err" &
WATCH=$!
PIDS+=("$WATCH")
wait_for 10 "the watcher's first events" grep -q INITIAL_DONE "$T/watch.jsonl"
out=$(call "$CS" Pause '{"volume": "vol"}')
[[ $(field 'd["message"]' <<<"$out") == "pausing vol: "* ]] || fail "pause: $out"
[ "$(field 'd["volume"]["master"]["paused"]' <<<"$out")" = True ] || fail "pause answer: $out"
wait_status vol state IDLE 10
wait_for 10 "the watcher's STATE_CHANGE" grep -q STATE_CHANGE "$T/watch.jsonl"
/usr/bin/python3 - "$T/watch.jsonl" <<'PY' || fail "Watch events: $(cat "$T/watch.jsonl")"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
kinds = [e["kind"] for e in ev]
assert kinds[:2] == ["EXISTS", "INITIAL_DONE"], kinds
assert ev[0]["volume"]["state"] == "INSYNC", ev[0]
sc = [e for e in ev if e["kind"] == "STATE_CHANGE"][0]
assert (sc["old_state"], sc["volume"]["state"]) == ("INSYNC", "IDLE"), sc
assert sc["reason"].startswith("event PAUSE"), sc
seqs = [int(e["seq"]) for e in ev[2:]]
assert seqs == sorted(seqs) and seqs[0] > 0, seqs
PY
kill "$WATCH" 2>/dev/null || true

# Illegal requests: FAILED_PRECONDITION naming the volume and the state.
refused "$CS" Pause '{"volume": "vol"}' FAILED_PRECONDITION 'vol is already paused \(state IDLE\)'
out=$(call "$CS" Resume '{"volume": "vol"}')
[ "$(field 'd["message"]' <<<"$out")" = "resuming vol" ] || fail "resume: $out"
wait_status vol state INSYNC 10
refused "$CS" Resume '{"volume": "vol"}' FAILED_PRECONDITION 'vol is not paused \(state INSYNC\)'
refused "$SS" Pause '{"volume": "vol"}' FAILED_PRECONDITION 'pause is a master command: frep-server serves mirror volumes'
refused "$SS" SetRate '{"volume": "vol", "bytes_per_second": 4096}' FAILED_PRECONDITION 'set-rate is a master command'
refused "$SS" Verify '{"volume": "vol"}' FAILED_PRECONDITION 'verify is a master command'
refused "$SS" GetVerifyResult '{"volume": "vol"}' FAILED_PRECONDITION 'verify is a master command'
# Unknown volumes: NOT_FOUND.
refused "$CS" Status '{"volume": "nope"}' NOT_FOUND "no volume 'nope' here: this frep-client serves 'vol'"
refused "$CS" Pause '{"volume": "nope"}' NOT_FOUND "no volume 'nope' here"
refused "$SS" Status '{"volume": "nope"}' NOT_FOUND "no volume 'nope' on this mirror"
refused "$SS" Watch '{"volume": "nope"}' NOT_FOUND "no volume 'nope' on this mirror"
# Bad arguments: INVALID_ARGUMENT.
refused "$CS" Resync '{"volume": "vol"}' INVALID_ARGUMENT 'vol: only a full resync can be requested'
refused "$CS" SetRate '{"volume": "vol", "bytes_per_second": 100}' INVALID_ARGUMENT 'vol: rate 100 bytes/s is below 4096'
refused "$CS" Pause '{}' INVALID_ARGUMENT 'Pause needs a volume name'
refused "$SS" Status '{"volume": "../etc"}' INVALID_ARGUMENT "'../etc' is not a volume name"
long=$(printf 'v%.0s' $(seq 70))
refused "$CS" Status "{\"volume\": \"$long\"}" INVALID_ARGUMENT 'volume name longer than 64 bytes'
# A NUL inside the name ("vol\0x", field 1): refused, never read as "vol".
refused "$CS" Status raw:0a05766f6c0078 INVALID_ARGUMENT 'request has a NUL byte in a string field'
refused "$CS" Pause raw:0a05766f6c0078 INVALID_ARGUMENT 'request has a NUL byte'
# Garbage instead of a message, and a method the service does not have.
refused "$CS" Status raw:ffffffff INVALID_ARGUMENT 'malformed request message'
refused "$CS" Frobnicate '{}' UNIMPLEMENTED 'unknown method /frep.admin.v1.Admin/Frobnicate'

# SetRate: persisted and shown; Resync full: a full pass, then INSYNC again.
out=$(call "$CS" SetRate '{"volume": "vol", "bytes_per_second": 52428800}')
[ "$(field 'd["message"]' <<<"$out")" = "vol: copy and verify rate 50M/s (persisted)" ] || fail "set-rate: $out"
[ "$(ctl_field vol max_rate_bps)" = 52428800 ] || fail "max_rate_bps $(ctl_field vol max_rate_bps)"
out=$(call "$CS" Resync '{"volume": "vol", "full": true}')
[ "$(field 'd["message"]' <<<"$out")" = "vol: a full resync of every allocated block starts now" ] || fail "resync: $out"
wait_log "$T/client-vol.log" 'OUTOFSYNC: full pass over' 10
wait_status vol state INSYNC 20

# Verify and GetVerifyResult: an intact mirror, every region the same.
out=$(call "$CS" Verify '{"volume": "vol"}')
id=$(field 'd["verify_id"]' <<<"$out")
[ "$id" -gt 0 ] || fail "verify id: $out"
verify_done() {
	"${AC[@]}" "$CS" GetVerifyResult '{"volume": "vol"}' >"$T/vr.json" 2>&1 &&
		[ "$(field 'd["status"]["running"]' <"$T/vr.json")" = False ]
}
wait_for 30 "the verify to finish" verify_done
[ "$(field 'd["status"]["verify_id"], d["status"]["outcome"], d["status"]["mismatched_regions"], len(d["mismatches"]), int(d["region_size"]) > 0' <"$T/vr.json")" = \
	"('$id', 'ok', '0', 0, True)" ] || fail "verify result: $(cat "$T/vr.json")"
[ "$(ctl_field vol verify | jq -r .outcome)" = ok ] || fail "Status lacks the verify: $(ctl vol status)"

# Snapshots and exports on the mirror; the master refuses them, naming frep-server.
out=$(call "$SS" CreateSnapshot '{"volume": "vol", "name": "py"}')
[ "$(field 'd["snapshot"]["name"], d["snapshot"]["kind"], d["snapshot"]["valid"]' <<<"$out")" = \
	"('py', 'USER', True)" ] || fail "CreateSnapshot: $out"
out=$(call "$SS" Export "{\"volume\": \"vol\", \"snapshot\": \"py\", \"nbd\": \"unix:$T/py.sock\"}")
[ "$(field 'd["snapshot"]["export"]["export_name"], d["snapshot"]["export"]["nbd"], int(d["snapshot"]["export"]["pid"]) > 0' <<<"$out")" = \
	"('vol@py', 'unix:$T/py.sock', True)" ] || fail "Export: $out"
[ "$(nbdinfo --size "nbd+unix:///vol@py?socket=$T/py.sock")" = $((16 << 20)) ] || fail "nbdinfo vol@py"
out=$(call "$SS" ListSnapshots '{}')
[ "$(field '[(s["volume"], s["name"], "export" in s) for s in d["snapshots"]]' <<<"$out")" = \
	"[('vol', 'py', True)]" ] || fail "ListSnapshots: $out"
[ "$("${AC[@]}" "$SS" Status '{"volume": "vol"}' --field exports)" = 1 ] || fail "MirrorStatus.exports"
out=$(call "$SS" Unexport '{"volume": "vol", "name": "py"}')
[ "$(field 'd["message"]' <<<"$out")" = "unexported vol@py; its NBD clients were disconnected" ] || fail "Unexport: $out"
out=$(call "$SS" DeleteSnapshot '{"volume": "vol", "name": "py"}')
[[ $(field 'd["message"]' <<<"$out") == "snapshot vol@py deleted"* ]] || fail "DeleteSnapshot: $out"
refused "$SS" Export '{"volume": "vol", "snapshot": "py", "nbd": "unix:/tmp/x.sock"}' NOT_FOUND "no snapshot 'py' of volume 'vol'"
refused "$SS" Export '{"volume": "vol", "nbd": "nowhere"}' INVALID_ARGUMENT '--nbd: expected unix:/ABSOLUTE/PATH'
refused "$SS" Unexport '{"volume": "vol"}' NOT_FOUND 'vol has no export of its latest state'
refused "$CS" CreateSnapshot '{"volume": "vol"}' FAILED_PRECONDITION 'snapshot create is a mirror command: frep-client serves master volumes; run it against frep-server'
refused "$CS" ListSnapshots '{}' FAILED_PRECONDITION 'snapshot list is a mirror command'
refused "$CS" DeleteSnapshot '{"volume": "vol", "name": "x"}' FAILED_PRECONDITION 'snapshot delete is a mirror command'
refused "$CS" Export '{"volume": "vol", "nbd": "unix:/tmp/x.sock"}' FAILED_PRECONDITION 'export is a mirror command'
refused "$CS" Unexport '{"volume": "vol"}' FAILED_PRECONDITION 'unexport is a mirror command'

# The daemons served all of that and replication goes on: a write reaches the mirror.
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x42 1M 64k' >/dev/null || fail "write"
wait_converged "$T/e0" "$M" 20
alive "$SERVER_PID" frep-server
alive "$CLIENT_PID" frep-client
stop "$CLIENT_PID"
# Without its master the mirror's volume is DETACHED, as its metadata says.
st=$(call "$SS" Status)
[ "$(field 'd["volumes"][0]["state"], d["volumes"][0]["mirror"]["consistent"], "connected_master" in d["volumes"][0]["mirror"]' <<<"$st")" = \
	"('DETACHED', True, False)" ] || fail "detached status: $st"
stop "$SERVER_PID"
[ ! -e "$FREP_RUN_DIR/server.sock" ] || fail "frep-server left its admin socket behind"
pass "every method from Python on both daemons; Watch EXISTS, INITIAL_DONE, STATE_CHANGE; NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT (NUL, garbage, bad rate), UNIMPLEMENTED"
