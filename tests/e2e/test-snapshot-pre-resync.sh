#!/usr/bin/env bash
# The automatic snapshot before a resync: when an OUTOFSYNC pass starts on a consistent
# mirror, the mirror keeps its last consistent state as snapshot pre-resync. While the
# pass runs, the mirror is inconsistent (a user snapshot is refused, with the reason),
# and pre-resync reads as the volume was; a master killed half-way leaves it readable;
# once the mirror is CONSISTENT again it is deleted.
source "$(dirname "$0")/lib.sh"
certs master-1
LOG=$T/client-vol.log

mkvol "$T/e0" 16M; fill "$T/e0" 0 16 old
start_server
start_client vol "$T/e0" master-1
wait_status vol state INSYNC 30
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x5a 1M 2M' >/dev/null || fail "write before the resync"
wait_status vol lag_tx 0 20
cp "$T/e0" "$T/before.img" # the master, as the mirror holds it now
txid=$(ctl_field vol acked_txid)

# A full resync, slowed so that it is still running while we look.
frepctl_for vol set-rate vol 2M >/dev/null || fail "set-rate"
ctl vol resync-full | grep -q '^ok' || fail "resync-full"
wait_log "$LOG" 'OUTOFSYNC: full pass over' 20
list=$(mctl --json snapshot list vol)
[ "$(jq -r '.snapshots[0].name' <<<"$list")" = pre-resync ] &&
	[ "$(jq -r '.snapshots[0].kind' <<<"$list")" = PRE_RESYNC ] &&
	[ "$(jq -r '.snapshots[0].txid' <<<"$list")" = "$txid" ] ||
	fail "no pre-resync snapshot at TXID $txid: $list"
grep -q "snapshot pre-resync created at TXID $txid" "$SERVER_LOG" || fail "the log does not say pre-resync was taken"
# Inconsistent while it runs: no user snapshot.
out=$(mctl snapshot create vol during 2>&1) && fail "a snapshot of an inconsistent mirror was taken: $out"
grep -q 'inconsistent' <<<"$out" || fail "the refusal does not say why: $out"
[ "$(mctl --json status vol | jq -r '.volumes[0].mirror.consistent')" = false ] || fail "mirror consistent mid-resync"

# New writes on the master reach the mirror after the pass; pre-resync keeps the old state.
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0xa5 0 4M' >/dev/null || fail "write during the resync"
read_snapshot vol pre-resync "$T/pre.img"
cmp "$T/pre.img" "$T/before.img" || fail "pre-resync is not the mirror's last consistent state"

# A snapshot saves only what the pass changes: the 4 MiB the master rewrote, not the
# 10 MiB it has copied (a full resync rewrites what the mirror mostly has already).
copied_past() {
	[ "$(mctl --json status vol | jq -r '.volumes[0].mirror.copy.done_bytes // 0')" -ge "$1" ]
}
wait_for 20 "the pass to copy 10 MiB" copied_past $((10 << 20))
used=$(mctl --json snapshot list vol | jq -r '.snapshots[0].used_bytes')
[ "$used" -le $(((4 << 20) + (64 << 10))) ] || fail "pre-resync holds $used bytes: more than the 4 MiB that changed"

# The resync dies half-way: the master is killed. pre-resync stays, readable.
kill -KILL "$CLIENT_PID"
wait "$CLIENT_PID" 2>/dev/null || true
read_snapshot vol pre-resync "$T/pre2.img"
cmp "$T/pre2.img" "$T/before.img" || fail "pre-resync changed when the resync died"

# The master comes back; the pass completes; CONSISTENT deletes pre-resync.
start_client vol "$T/e0" master-1
frepctl_for vol set-rate vol 0 >/dev/null || fail "set-rate 0"
wait_status vol state INSYNC 60
wait_converged "$T/e0" "$(mirror_extents vol 1)"
no_snapshots() {
	[ "$(mctl --json snapshot list vol | jq '.snapshots | length')" = 0 ]
}
wait_for 10 "pre-resync to go at CONSISTENT" no_snapshots
grep -q 'snapshot pre-resync (TXID [0-9]*) deleted' "$SERVER_LOG" || fail "the log does not say pre-resync went"
[ ! -e "$T/mirror/vol/snapshots/pre-resync" ] || fail "pre-resync's files are left"
pass "pre-resync held TXID $txid through a resync and a master killed half-way, then went at CONSISTENT"
