# The failover drill (README "Failover and fail-back"), run by test-failover-drill.sh
# (async) and test-failover-drill-sync.sh (MODE=sync). A stamped writer writes to the
# master; kill -9 the master; promote the mirror: its copy is the master after exactly
# the writes up to t, and t is at least every TXID the mirror acknowledged (sync: every
# write acknowledged to the writer is on it). frep-client --adopt serves the promoted
# copy read-write; the old master, restarted, is FENCED: its NBD clients cannot write,
# its data stays its own, its status counts what a demote would discard, and it stays
# fenced across a restart with the mirror out of reach.
source "$(dirname "$0")/lib.sh"
certs master-1
MODE=${MODE:-async}
PY=/usr/bin/python3
W=("$PY" "$FREP_SRC/tests/tools/frep-write.py")
C=("$PY" "$FREP_SRC/tests/tools/frep-check.py")
LOG=$T/client-vol.log

mkvol "$T/e0" 16M; fill "$T/e0" 0 16 a; cp "$T/e0" "$T/i0"
start_server --trace-tx "$T/mirror.trace"
start_client vol "$T/e0" master-1 --trace-tx "$T/master.trace" --mode "$MODE"
wait_status vol state INSYNC 30

# 1. The writer writes; the master dies under it (kill -9).
"${W[@]}" --uri "$(nbd_uri vol)" --seed d --duration 30 --depth 16 --ops write --max-len 65536 \
	--record "$T/writer.record" --tolerate-errors >"$T/writer.out" 2>"$T/writer.log" &
WPID=$!
PIDS+=("$WPID")
wait_for 20 "writes to commit" committed_above vol 300
acked=$(ctl_field vol acked_txid)
kill -KILL "$CLIENT_PID"
wait "$WPID" 2>/dev/null || true
wait_for 10 "the mirror to see its master gone" \
	eval '[ "$(mctl --json status vol | jq -r .volumes[0].state)" = DETACHED ]'

# 2. Promote: t >= every acknowledged TXID, the copy is the master at exactly t.
out=$(mctl --json promote vol 2>&1) || fail "promote: $out"
st=$(mctl --json status vol)
t=$(jq -r '.volumes[0].mirror.promotion.txid' <<<"$st")
[ "$(jq -r '.volumes[0].state' <<<"$st")" = PROMOTED ] || fail "not PROMOTED after promote: $st"
[ "$(jq -r '.volumes[0].mirror.epoch' <<<"$st")" = 2 ] || fail "epoch is not 2: $st"
[ "$t" -ge "$acked" ] || fail "promoted at TXID $t, below $acked the mirror acknowledged"
rec=$(jq -r '.volumes[0].mirror.promotion.recovery_txid' <<<"$st")
[ "$rec" -ge "$acked" ] && [ "$rec" -le "$t" ] || fail "recovery point $rec outside $acked..$t"
jq -r '.message' <<<"$out" | grep -q "promoted vol at TXID $t: epoch 2 begins" || fail "promote said: $out"
jq -r '.volumes[0].mirror.promotion.master_mode' <<<"$st" | grep -qx "$MODE" || fail "mode not $MODE: $st"
if [ "$MODE" = async ]; then
	jq -r '.message' <<<"$out" | grep -q "writes it committed after TXID $t are not on this copy" ||
		fail "promote did not say what async mode leaves behind: $out"
fi
cp "$T/mirror/vol/extent.0" "$T/promoted.img"
if [ "$MODE" = sync ]; then
	# Every write the writer saw acknowledged is on the promoted copy, in TXID order.
	"${C[@]}" master --initial "$T/i0" --master-trace "$T/master.trace" --master "$T/promoted.img" \
		--txid "$t" --seed d --max-len 65536 --record "$T/writer.record" ||
		fail "the promoted copy lacks a write acknowledged in sync mode"
else
	"${C[@]}" snapshot --initial "$T/i0" --master-trace "$T/master.trace" --image "$T/promoted.img" \
		--txid "$t" --seed d --max-len 65536 || fail "the promoted copy is not the master at TXID $t"
fi
again=$(mctl promote vol 2>&1) && fail "a second promote was taken: $again"
grep -q 'already promoted' <<<"$again" || fail "second promote: $again"

# 3. The promoted copy served read-write by frep-client --adopt (its mirror-to-be is
# the old master's host, not up yet: writes go on into its buffer).
"$BIN/frep-client" --adopt "$T/mirror/vol" --volume vol --mirror 127.0.0.1:1 \
	--server-name frep-mirror --journal "$T/new.journal" --cert "$PKI/master-1.crt" \
	--key "$PKI/master-1.key" --ca "$PKI/ca.crt" --nbd "unix:$T/new.sock" \
	--admin "unix:$T/new-admin.sock" >>"$T/new.log" 2>&1 &
NEW_PID=$!
PIDS+=("$NEW_PID")
wait_for 20 "the adopted primary's NBD socket" client_listening "$T/new.log" 0
grep -q "adopted the promoted copy $T/mirror/vol: epoch 2, TXIDs go on after $t" "$T/new.log" ||
	fail "no adoption line: $(cat "$T/new.log")"
qemu-io -f raw "nbd+unix:///vol?socket=$T/new.sock" -c 'write -P 0x5e 1M 64k' >/dev/null ||
	fail "a write to the promoted volume failed"
nst=$("$BIN/frepctl" --admin "unix:$T/new-admin.sock" --json status vol)
[ "$(jq -r '.volumes[0].master.committed_txid' <<<"$nst")" -gt "$t" ] ||
	fail "the new primary's TXIDs do not go on after $t: $nst"
[ "$(jq -r '.volumes[0].master.epoch' <<<"$nst")" = 2 ] || fail "the new primary is not at epoch 2: $nst"
"$PY" - "$T/mirror/vol/extent.0" <<'PY' || fail "the promoted volume does not hold the new write"
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(1 << 20)
    sys.exit(0 if f.read(65536) == b"\x5e" * 65536 else 1)
PY

# 4. The old master comes back: FENCED, its NBD clients cannot write, its data its own.
start_client vol "$T/e0" master-1 --trace-tx "$T/master.trace" --mode "$MODE"
wait_status vol state ERROR 20
[ "$(ctl_field vol error | cut -d: -f1)" = FENCED ] || fail "not FENCED: $(ctl_field vol error)"
ost=$(ctl vol status)
[ "$(jq -r '.volumes[0].master.fenced.epoch' <<<"$ost")" = 2 ] || fail "fenced epoch: $ost"
[ "$(jq -r '.volumes[0].master.fenced.txid' <<<"$ost")" = "$t" ] || fail "fenced TXID: $ost"
committed=$(jq -r '.volumes[0].master.committed_txid' <<<"$ost")
[ "$(jq -r '.volumes[0].master.fenced.discard_tx // 0' <<<"$ost")" = $((committed - t)) ] ||
	fail "discard_tx is not committed $committed - t $t: $ost"
grep -q "promoted on this host" "$SERVER_LOG" || fail "the mirror did not say why it fenced the master"
out=$(qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x66 0 4k' 2>&1) &&
	fail "a fenced master took a write: $out"
grep -qi 'not permitted\|read-only' <<<"$out" || fail "the refused write said: $out"
"${C[@]}" master --initial "$T/i0" --master-trace "$T/master.trace" --master "$T/e0" \
	--txid "$committed" --seed d --max-len 65536 || fail "the fenced master's data is not its own"
cp "$T/e0" "$T/old.img"

# Fenced across a restart, even with the mirror out of reach.
stop "$CLIENT_PID"
stop "$SERVER_PID"
start_client vol "$T/e0" master-1 --mode "$MODE"
grep -q 'fenced since' "$LOG" || fail "the restarted master did not say it is fenced"
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x67 0 4k' >/dev/null 2>&1 &&
	fail "a fenced master took a write after a restart"
cmp -s "$T/e0" "$T/old.img" || fail "the fenced master's volume changed"
# --on-fenced=serve: writes go on, counted as what a demote would discard.
stop "$CLIENT_PID"
start_client vol "$T/e0" master-1 --mode async --on-fenced=serve
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x68 0 4k' >/dev/null ||
	fail "--on-fenced=serve refused a write"
[ "$(ctl vol status | jq -r .volumes[0].master.fenced.discard_tx)" -gt $((committed - t)) ] ||
	fail "a served write is not counted: $(ctl vol status)"
pass "$MODE drill: promoted at TXID $t (acknowledged $acked), served by --adopt; the old master is fenced"
