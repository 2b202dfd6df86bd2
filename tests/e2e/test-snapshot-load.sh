#!/usr/bin/env bash
# Snapshots under load: while a stamped writer writes at full speed on the master (16 in
# flight, two extents), three snapshots are taken on the mirror; each, read back whole
# through its NBD export with nbdcopy, is the master after exactly the writes up to its
# TXID (tests/tools/frep-check.py snapshot), while replication goes on and converges.
# Deleting a snapshot frees its space; the others still read right.
source "$(dirname "$0")/lib.sh"
certs master-1
PY=/usr/bin/python3
W=("$PY" "$FREP_SRC/tests/tools/frep-write.py")
C=("$PY" "$FREP_SRC/tests/tools/frep-check.py")

mkvol "$T/e0" 24M; mkvol "$T/e1" 8M
fill "$T/e0" 0 24 a; fill "$T/e1" 2 4 b
cp "$T/e0" "$T/i0"; cp "$T/e1" "$T/i1"
start_server
start_client vol "$T/e0,$T/e1" master-1 --trace-tx "$T/master.trace"
wait_status vol state INSYNC 30

"${W[@]}" --uri "$(nbd_uri vol)" --seed s --duration 20 --depth 16 --ops write --max-len 16384 \
	>"$T/writer.out" 2>"$T/writer.log" &
WPID=$!
PIDS+=("$WPID")
txids=()
for s in s1 s2 s3; do
	# Each snapshot lands while writes are in flight: the master keeps committing.
	before=$(ctl_field vol committed_txid)
	wait_for 20 "writes past TXID $before" committed_above vol $((before + 200))
	txids+=("$(snapshot_create vol "$s")")
done
kill -0 "$WPID" 2>/dev/null || fail "the writer stopped before the last snapshot: $(tail -n2 "$T/writer.log")"
[ "${txids[0]}" -lt "${txids[1]}" ] && [ "${txids[1]}" -lt "${txids[2]}" ] ||
	fail "snapshot TXIDs ${txids[*]} do not grow"
# One of them read while the writer still writes.
read_snapshot vol s2 "$T/s2.img"
kill -0 "$WPID" 2>/dev/null || fail "the writer stopped before the read under load ended"
kill -TERM "$WPID"
wait "$WPID" 2>/dev/null || true
wait_status vol lag_tx 0 30

check() { # SNAPSHOT IMAGE TXID
	"${C[@]}" snapshot --initial "$T/i0,$T/i1" --master-trace "$T/master.trace" --image "$2" \
		--txid "$3" --seed s --max-len 16384 || fail "snapshot $1 is not the master at TXID $3"
}
check s2 "$T/s2.img" "${txids[1]}"
for i in 0 2; do
	read_snapshot vol "s$((i + 1))" "$T/s$((i + 1)).img"
	check "s$((i + 1))" "$T/s$((i + 1)).img" "${txids[$i]}"
done
# The mirror itself went on: byte-identical to the master.
wait_converged "$T/e0,$T/e1" "$(mirror_extents vol 2)"

# list shows them oldest first with their TXIDs and space; status counts them.
list=$(mctl --json snapshot list vol)
[ "$(jq -r '[.snapshots[].name] | join(",")' <<<"$list")" = s1,s2,s3 ] || fail "snapshot list: $list"
[ "$(jq -r '.snapshots[0].txid' <<<"$list")" = "${txids[0]}" ] || fail "s1's TXID in the list: $list"
used=$(jq -r '.snapshots[0].used_bytes' <<<"$list")
[ "$used" -gt 0 ] || fail "s1 holds no space after overwrites: $list"
[ "$(mctl --json status vol | jq -r '.volumes[0].mirror.snapshots')" = 3 ] || fail "status does not count 3 snapshots"
bytes=$(mctl --json status vol | jq -r '.volumes[0].mirror.snapshot_bytes')
# delete frees s1's space; s3 still reads right afterwards.
mctl snapshot delete vol s1 >/dev/null || fail "snapshot delete vol s1"
[ ! -e "$T/mirror/vol/snapshots/s1" ] || fail "s1's files are still there after delete"
after=$(mctl --json status vol | jq -r '.volumes[0].mirror.snapshot_bytes')
[ "$after" -le $((bytes - used)) ] || fail "snapshot bytes $bytes -> $after after deleting s1 ($used bytes)"
read_snapshot vol s3 "$T/s3b.img"
cmp -s "$T/s3.img" "$T/s3b.img" || fail "s3 changed when s1 was deleted"
pass "3 snapshots taken under load (TXIDs ${txids[*]}) read back as the master at their TXIDs"
