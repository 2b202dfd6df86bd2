#!/usr/bin/env bash
# Snapshot space runs out: the mirror's data dir is a small tmpfs, two snapshots are
# alive, and the master overwrites the whole volume. When an overlay cannot grow, the
# oldest snapshot is invalidated (the log, status and list say so, with the reason),
# the newer one keeps its content while it still fits, and replication never stops:
# the mirror stays INSYNC, without an error, and converges.
source "$(dirname "$0")/lib.sh"
certs master-1
LOG=$T/client-vol.log

mkvol "$T/e0" 24M; fill "$T/e0" 0 24 a
# 24 MiB volume + the mirror's 64 MiB journal (its minimum) = 88 MiB of 104: room for
# 16 MiB of snapshot copies, less than one full overwrite per snapshot. The master's
# 32 MiB buffer holds all the test writes, so no stall of the mirror can crack it:
# what the test sees of replication is the snapshots' doing alone.
start_server_small 104M
start_client vol "$T/e0" master-1 --journal-size 32M
wait_status vol state INSYNC 30

snapshot_create vol old >/dev/null
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x11 0 2M' >/dev/null || fail "write"
wait_status vol lag_tx 0 20
snapshot_create vol new >/dev/null
cp "$T/e0" "$T/at-new.img"
# 2 MiB into new's copies, then the rest of the volume: past what both can hold.
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x22 0 2M' >/dev/null || fail "write"
wait_status vol lag_tx 0 20
read_snapshot vol new "$T/new-early.img"
cmp "$T/new-early.img" "$T/at-new.img" || fail "snapshot new is wrong before space ran out"
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x33 2M 22M' >/dev/null || fail "write"
wait_log "$SERVER_LOG" 'snapshot old \(TXID [0-9]+\) invalidated: no space left' 20
wait_status vol lag_tx 0 20
[ "$(ctl_field vol state)" = INSYNC ] || fail "the master left INSYNC: $(ctl_field vol state) $(ctl_field vol error)"
grep -q 'NO_SPACE' "$SERVER_LOG" "$LOG" && fail "a snapshot's space stopped replication"
wait_converged "$T/e0" "$MNT/data/vol/extent.0"

list=$(mctl --json snapshot list vol)
[ "$(jq -r '.snapshots[0].name, .snapshots[0].valid' <<<"$list" | paste -sd' ')" = "old false" ] ||
	fail "old is not listed invalid: $list"
jq -r '.snapshots[0].invalid_reason' <<<"$list" | grep -q 'no space left' || fail "no reason: $list"
st=$(mctl --json status vol)
[ "$(jq -r '.volumes[0].mirror.snapshots_invalid' <<<"$st")" -ge 1 ] || fail "status does not count it: $st"
out=$(mctl export vol@old --nbd "unix:$T/old.sock" 2>&1) && fail "an invalid snapshot was exported: $out"
# new: either still whole, or invalidated in turn when space ran out again; never wrong.
if [ "$(jq -r '.snapshots[1].valid' <<<"$list")" = true ]; then
	read_snapshot vol new "$T/new.img"
	cmp "$T/new.img" "$T/at-new.img" || fail "snapshot new changed"
	new_fate="new still whole"
else
	new_fate="new invalidated in turn"
	grep -q 'snapshot new (TXID [0-9]*) invalidated: no space left' "$SERVER_LOG" ||
		fail "new is invalid without a logged reason"
fi
# Deleting the invalid snapshot removes it; replication went on all along.
mctl snapshot delete vol old >/dev/null || fail "delete old"
[ "$(mctl --json snapshot list vol | jq -r '[.snapshots[].name] | join(",")')" = new ] || fail "old still listed"
alive "$SERVER_PID" frep-server
pass "space ran out: the oldest snapshot was invalidated ($new_fate) and replication went on"
