#!/usr/bin/env bash
# Exports of mirror snapshots over NBD (README "Reading the mirror"): a snapshot served on a
# unix socket and an implicit one over TCP read as the mirror was when they were taken, are
# read-only (a write gets EPERM) and show their holes; unexport cuts an idle client at once,
# deleting an exported snapshot ends its export, and an export survives a frep-server restart.
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 16M
fill "$T/e0" 0 2 a
fill "$T/e0" 8 1 b
M=$(mirror_extents db 1)
# A thin mirror: the master's holes stay holes. (A fully reserved one keeps them as
# unwritten extents, which ext4 reports as data once they have been read.)
start_server --preallocate=sparse
start_client db "$T/e0" master-1
wait_status db state INSYNC 20
wait_converged "$T/e0" "$M" 20
SCTL=("$BIN/frepctl" --admin "unix:$FREP_RUN_DIR/server.sock")
# sctl ARGS...: frepctl against frep-server; fails the test if it fails.
sctl() {
	"${SCTL[@]}" "$@" 2>"$T/sctl.err" || fail "frepctl $*: $(cat "$T/sctl.err")"
}

# s1 holds the mirror as it is now; the master then overwrites 64K of it.
cp "$T/e0" "$T/s1.img"
sctl snapshot create db s1 >/dev/null
qemu-io -f raw "$(nbd_uri db)" -c 'write -P 0x42 0 64k' >/dev/null || fail "write"
wait_converged "$T/e0" "$M" 20

# Over a unix socket, in a directory frep-server creates.
SOCK=$T/nbd/db@s1.sock
URI="nbd+unix:///db@s1?socket=$SOCK"
out=$(sctl export db@s1 --nbd "unix:$SOCK")
[[ $out == "exporting db@s1 (TXID "*") read-only on unix:$SOCK: $URI" ]] || fail "export: $out"
nbdinfo --json "$URI" >"$T/info.json" || fail "nbdinfo $URI"
[ "$(jq -c '.exports[0] | [."export-name", ."export-size", .is_read_only]' "$T/info.json")" = \
	"[\"db@s1\",$((16 << 20)),true]" ] || fail "nbdinfo: $(cat "$T/info.json")"
# The default export "" is the snapshot too.
[ "$(nbdinfo --size "nbd+unix://?socket=$SOCK")" = $((16 << 20)) ] || fail "default export"
nbdcopy "$URI" "$T/copy.img" || fail "nbdcopy $URI"
cmp "$T/copy.img" "$T/s1.img" || fail "db@s1 differs from the mirror when it was taken"
cmp -s "$T/copy.img" "$T/e0" && fail "db@s1 reads as the master now, not as when it was taken"
# Read-only: a write is refused with EPERM.
nbdsh -u "$URI" -c 'h.pwrite(b"x" * 512, 0)' >"$T/write.out" 2>&1 && fail "a write to db@s1 succeeded"
grep -q 'Operation not permitted' "$T/write.out" || fail "write to db@s1: $(cat "$T/write.out")"
# Block status: the unwritten 2M-8M and 9M-16M are holes.
nbdinfo --map "$URI" >"$T/map" || fail "nbdinfo --map"
awk '$3 != 0 && $1 == 2097152 && $1 + $2 == 8388608 { ok = 1 } END { exit !ok }' "$T/map" ||
	fail "no hole at 2M-8M in the map: $(cat "$T/map")"
awk '$3 == 0 && $1 < 2097152 { ok = 1 } END { exit !ok }' "$T/map" ||
	fail "no data at the start in the map: $(cat "$T/map")"
# frepctl shows the export.
out=$(sctl --json snapshot list db)
[ "$(jq -r '.snapshots[] | select(.name == "s1") | .export.nbd' <<<"$out")" = "unix:$SOCK" ] ||
	fail "snapshot list: $out"
[ "$(sctl --json status db | jq -r '.volumes[0].mirror.exports')" = 1 ] || fail "MirrorStatus.exports"

# The latest consistent state over TCP: an implicit snapshot.
PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sctl --json export db --nbd "127.0.0.1:$PORT" >"$T/exp.json"
IMPL=$(jq -r '.snapshot.name' "$T/exp.json")
[[ $IMPL == export-* ]] && [ "$(jq -r '.snapshot.kind' "$T/exp.json")" = EXPORT ] ||
	fail "implicit export: $(cat "$T/exp.json")"
TURI="nbd://127.0.0.1:$PORT/db@$IMPL"
[ "$(nbdinfo --json "$TURI" | jq -c '.exports[0] | [.is_read_only, ."export-size"]')" = \
	"[true,$((16 << 20))]" ] || fail "nbdinfo $TURI"
nbdcopy "$TURI" "$T/tcp.img" || fail "nbdcopy $TURI"
cmp "$T/tcp.img" "$T/e0" || fail "db@$IMPL differs from the latest state"
sctl unexport db >/dev/null
out=$(sctl --json snapshot list db)
[ "$(jq -r '[.snapshots[].name] | join(",")' <<<"$out")" = s1 ] || fail "implicit snapshot left: $out"

# An idle client is cut at once by unexport, which says so in the log.
GO=$T/go nbdsh -u "$URI" -c '
import os, time
h.pread(512, 0)
print("connected", flush=True)
while not os.path.exists(os.environ["GO"]):
    time.sleep(0.05)
try:
    h.pread(512, 0)
    print("still connected", flush=True)
except Exception as e:
    print("disconnected:", e, flush=True)
' >"$T/holder.out" 2>&1 &
HOLDER=$!
PIDS+=("$HOLDER")
wait_for 10 "the NBD client to connect" grep -q connected "$T/holder.out"
t0=$SECONDS
sctl unexport db@s1 >/dev/null
[ $((SECONDS - t0)) -lt 4 ] || fail "unexport waited $((SECONDS - t0))s for an idle client"
touch "$T/go"
wait_for 10 "the NBD client to finish" grep -Eq 'disconnected|still' "$T/holder.out"
grep -q '^disconnected' "$T/holder.out" || fail "client after unexport: $(cat "$T/holder.out")"
grep -Eq 'export db@s1 ended: unexported .*its NBD clients were disconnected' "$SERVER_LOG" ||
	fail "no end of db@s1 in the log"

# Deleting an exported snapshot ends its export first.
sctl export db@s1 --nbd "unix:$SOCK" >/dev/null
sctl snapshot delete db s1 >/dev/null
grep -Eq 'export db@s1 ended: the snapshot was deleted .*its NBD clients were disconnected' \
	"$SERVER_LOG" || fail "deleting db@s1 did not end its export"
nbdinfo "$URI" >/dev/null 2>&1 && fail "db@s1 still served after its deletion"

# An export survives a restart of frep-server (recorded in the snapshot's directory).
sctl snapshot create db s2 >/dev/null
SOCK2=$T/nbd/db@s2.sock
sctl export db@s2 --nbd "unix:$SOCK2" >/dev/null
nbdcopy "nbd+unix:///db@s2?socket=$SOCK2" "$T/s2.img" || fail "nbdcopy db@s2"
stop "$SERVER_PID"
grep -Eq 'export db@s2 ended: frep-server is shutting down' "$SERVER_LOG" || fail "no end at shutdown"
SERVER_PORT_WANTED=$SERVER_PORT start_server --preallocate=sparse
wait_log "$SERVER_LOG" 'export db@s2: serving read-only' 20
nbdcopy "nbd+unix:///db@s2?socket=$SOCK2" "$T/s2-again.img" || fail "db@s2 after the restart"
cmp "$T/s2.img" "$T/s2-again.img" || fail "db@s2 changed across the restart"

alive "$SERVER_PID" frep-server
alive "$CLIENT_PID" frep-client
stop "$SERVER_PID"
pass "unix and TCP exports: read-only, content as of the snapshot, holes; unexport cuts an idle client; delete ends the export; the export survives a restart"
