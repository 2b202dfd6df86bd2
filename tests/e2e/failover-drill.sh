# The failover drill (README "Failover and fail-back"), run by test-failover-drill.sh
# (async) and test-failover-drill-sync.sh (MODE=sync). Host A runs the master (and,
# for the fail-back, a frep-server of its own: data dir $T/a-mirror); host B the mirror.
# 1-2. A stamped writer writes to the master; kill -9 the master; promote the mirror:
#    its copy is the master after exactly the writes up to t, and t is at least every
#    TXID the mirror acknowledged (sync: every write acknowledged to the writer is on it).
# 3. frep-client --adopt serves the promoted copy read-write on B.
# 4. The old master, restarted, is FENCED: its NBD clients cannot write, its data stays
#    its own, its status counts what a demote would discard, it stays fenced across a
#    restart with the mirror out of reach.
# 5. frepctl demote on A: A's frep-server adopts the copy, snapshot pre-demote keeps the
#    discarded writes, and the reverse replication converges to byte-identical while
#    sending at most 1.1 x (the regions either side changed since t) + 1 MiB.
# 6. frepctl switchover back to the original roles: A's copy the primary again (served
#    by frep-client --adopt on A), B's the mirror, 0 bytes copied, identical.
source "$(dirname "$0")/lib.sh"
certs master-1
MODE=${MODE:-async}
PY=/usr/bin/python3
W=("$PY" "$FREP_SRC/tests/tools/frep-write.py")
C=("$PY" "$FREP_SRC/tests/tools/frep-check.py")
LOG=$T/client-vol.log

mkvol "$T/e0" 16M; fill "$T/e0" 0 16 a; cp "$T/e0" "$T/i0"
start_server --trace-tx "$T/mirror.trace"
# Host A's frep-server, for the fail-back (its own data dir, port and admin socket).
mkdir -p "$T/a-mirror"
"$BIN/frep-server" --listen 127.0.0.1:0 --data-dir "$T/a-mirror" --admin "unix:$T/a-server.sock" \
	--cert "$PKI/server.crt" --key "$PKI/server.key" --ca "$PKI/ca.crt" >>"$T/a-server.log" 2>&1 &
A_PID=$!
PIDS+=("$A_PID")
wait_log "$T/a-server.log" 'listening on 127\.0\.0\.1:[0-9]+' 20
A_PORT=$(grep -Eo 'listening on 127\.0\.0\.1:[0-9]+' "$T/a-server.log" | tail -n1 | cut -d: -f2)
actl() { "$BIN/frepctl" --admin "unix:$T/a-server.sock" "$@"; }
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

# 3. The promoted copy served read-write by frep-client --adopt. Its mirror is host A's
# frep-server, which does not hold the volume yet: the old master must be demoted first
# (DIVERGED until then), and writes go on into the new primary's buffer.
"$BIN/frep-client" --adopt "$T/mirror/vol" --volume vol --mirror "127.0.0.1:$A_PORT" \
	--server-name frep-mirror --journal "$T/new.journal" --cert "$PKI/master-1.crt" \
	--key "$PKI/master-1.key" --ca "$PKI/ca.crt" --nbd "unix:$T/new.sock" \
	--admin "unix:$T/new-admin.sock" --trace-tx "$T/new.trace" --backoff 0.2:0.5 \
	--mode "$MODE" >>"$T/new.log" 2>&1 &
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

# 5. Fail back: demote A. Its frep-client hands the copy to A's frep-server and ends.
wait_for 10 "the old master to be told FENCED again" eval \
	'[ "$(ctl vol status | jq -r ".volumes[0].master.fenced.txid // empty")" = "$t" ]'
cp "$T/e0" "$T/old.img"
out=$(frepctl_for vol demote vol --mirror-admin "unix:$T/a-server.sock" 2>&1) || fail "demote: $out"
grep -q "demoted vol: it discards [0-9]* TX(s)" <<<"$out" || fail "demote said: $out"
grep -q 'a mirror copy of vol now' <<<"$out" || fail "the adoption said: $out"
wait_for 10 "the demoted frep-client to end" eval '! kill -0 "$CLIENT_PID" 2>/dev/null'
[ -L "$T/a-mirror/vol/extent.0" ] || fail "A's frep-server does not link the old master's extent"
# The discarded writes stay readable: snapshot pre-demote is the old master as it was.
actl export vol@pre-demote --nbd "unix:$T/pd.sock" >/dev/null || fail "export of pre-demote"
nbdcopy "nbd+unix:///vol@pre-demote?socket=$T/pd.sock" "$T/pd.img" || fail "reading pre-demote"
actl unexport vol@pre-demote >/dev/null || fail "unexport pre-demote"
cmp -s "$T/pd.img" "$T/old.img" || fail "snapshot pre-demote is not the old master as it was"
# Reverse replication: B -> A, only what either side changed since t.
wait_for 30 "the new primary to be INSYNC with A" eval \
	'[ "$("$BIN/frepctl" --admin "unix:$T/new-admin.sock" --json status vol | jq -r .volumes[0].state)" = INSYNC ]'
wait_converged "$T/mirror/vol/extent.0" "$T/e0"
copied=$(grep -Eo 'dirty resync done: [0-9]+ data bytes' "$T/new.log" | tail -n1 | grep -Eo '[0-9]+ data' | cut -d' ' -f1)
[ -n "$copied" ] || fail "the fail-back was no dirty resync: $(grep -E 'pass|resync' "$T/new.log")"
union=$("$PY" - "$t" "$T/master.trace" "$T/new.trace" <<'PY'
import re, sys
t, region = int(sys.argv[1]), 65536
dirty = set()
for path in sys.argv[2:]:
    for line in open(path):
        m = dict(re.findall(r"(\w+)=(\S+)", line))
        if int(m["txid"]) > t and int(m["len"]) > 0:
            off, n = int(m["off"]), int(m["len"])
            dirty.update(range(off // region, (off + n - 1) // region + 1))
print(len(dirty) * region)
PY
)
[ "$union" -gt 0 ] || fail "no region changed since t: the drill tests nothing"
limit=$((union * 11 / 10 + (1 << 20)))
[ "$copied" -le "$limit" ] || fail "the fail-back copied $copied bytes, over 1.1 x $union + 1 MiB"

# 6. Switch over back: B's frep-server is up again, A's copy becomes the primary. Not
# while snapshot pre-demote still holds the discarded writes (a promotion ends it).
SERVER_PORT_WANTED=$SERVER_PORT start_server --trace-tx "$T/mirror.trace"
nctl() { "$BIN/frepctl" --admin "unix:$T/new-admin.sock" "$@"; }
out=$(nctl switchover vol --mirror-admin "unix:$FREP_RUN_DIR/server.sock" 2>&1) &&
	fail "a switchover ended snapshot pre-demote: $out"
grep -q 'UNAVAILABLE.*snapshot pre-demote of vol still holds the writes a demote discarded' <<<"$out" ||
	fail "the refused switchover said: $out"
qemu-io -f raw "nbd+unix:///vol?socket=$T/new.sock" -c 'write -P 0x6b 3M 4k' >/dev/null ||
	fail "writes did not come back after a refused switchover"
actl snapshot delete vol pre-demote >/dev/null || fail "deleting pre-demote"
wait_for 20 "the new primary to be INSYNC again" eval \
	'[ "$(nctl --json status vol | jq -r .volumes[0].state)" = INSYNC ]'
t2=$(nctl --json status vol | jq -r .volumes[0].master.committed_txid)
out=$(nctl switchover vol --mirror-admin "unix:$FREP_RUN_DIR/server.sock" 2>&1) || fail "switchover: $out"
grep -q "switched over vol at TXID $t2: the mirror's copy is the primary at epoch 3" <<<"$out" ||
	fail "switchover said: $out"
grep -q 'Local NBD clients are disconnected' <<<"$out" || fail "switchover did not say the NBD clients go: $out"
grep -q "consistent at TXID $t2 (epoch 3): the new primary's master has nothing to copy" <<<"$out" ||
	fail "B's frep-server did not take its copy back: $out"
wait_for 10 "B's frep-client to end" eval '! kill -0 "$NEW_PID" 2>/dev/null'
[ "$(actl --json status vol | jq -r .volumes[0].state)" = PROMOTED ] || fail "A's copy is not promoted"
"$BIN/frep-client" --adopt "$T/a-mirror/vol" --volume vol --mirror "127.0.0.1:$SERVER_PORT" \
	--server-name frep-mirror --journal "$T/a2.journal" --cert "$PKI/master-1.crt" \
	--key "$PKI/master-1.key" --ca "$PKI/ca.crt" --nbd "unix:$T/a2.sock" \
	--admin "unix:$T/a2-admin.sock" --mode "$MODE" >>"$T/a2.log" 2>&1 &
PIDS+=("$!")
wait_for 20 "A's primary to be INSYNC with B" eval \
	'[ "$("$BIN/frepctl" --admin "unix:$T/a2-admin.sock" --json status vol | jq -r .volumes[0].state)" = INSYNC ]'
grep -q "mirror consistent at TXID $t2; resending from $((t2 + 1))" "$T/a2.log" ||
	fail "A's primary did not resume in sync: $(grep -E 'consistent|pass' "$T/a2.log")"
grep -qE 'pass over|copy walked' "$T/a2.log" && fail "the switchover copied: $(grep -E 'pass over' "$T/a2.log")"
cmp -s "$T/e0" "$T/mirror/vol/extent.0" || fail "after the switchover the copies differ"
qemu-io -f raw "nbd+unix:///vol?socket=$T/a2.sock" -c 'write -P 0x7a 2M 64k' >/dev/null ||
	fail "a write to A's primary failed"
wait_converged "$T/e0" "$T/mirror/vol/extent.0"
pass "$MODE drill: promoted at TXID $t (acknowledged $acked), the old master fenced, demoted and failed back with $copied bytes (regions changed: $union), switched back at TXID $t2 with nothing copied"
