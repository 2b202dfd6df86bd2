#!/usr/bin/env bash
# frepctl promote's refusals and --force: an unknown volume; a connected master
# (refused, then --force disconnects and fences it, its session ending with FENCED);
# an inconsistent copy in the middle of a resync (refused, naming its pre-resync
# snapshot; --force promotes that snapshot, the master as of its TXID, and the
# restored ranges start the adopting frep-client's dirty bitmap).
source "$(dirname "$0")/lib.sh"
certs master-1
PY=/usr/bin/python3
W=("$PY" "$FREP_SRC/tests/tools/frep-write.py")
C=("$PY" "$FREP_SRC/tests/tools/frep-check.py")

# A connected master: refused; --force fences it.
mkvol "$T/e0" 8M; fill "$T/e0" 0 8 a
start_server
out=$(mctl promote nope 2>&1) && fail "promote of an unknown volume was taken: $out"
grep -q 'NOT_FOUND' <<<"$out" || fail "unknown volume: $out"
start_client vol "$T/e0"
wait_status vol state INSYNC 30
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x21 0 1M' >/dev/null || fail "write"
wait_status vol lag_tx 0 20
out=$(mctl promote vol 2>&1) && fail "promote with the master connected was taken: $out"
grep -q 'FAILED_PRECONDITION.*master master-1 (127.0.0.1:[0-9]*) is connected.*--force' <<<"$out" ||
	fail "promote while connected said: $out"
[ "$(ctl_field vol state)" = INSYNC ] || fail "a refused promote disturbed the master"
out=$(mctl --json promote vol --force 2>&1) || fail "promote --force: $out"
t=$(mctl --json status vol | jq -r '.volumes[0].mirror.promotion.txid')
[ "$t" = "$(ctl_field vol committed_txid)" ] || fail "promoted at $t, the master committed $(ctl_field vol committed_txid)"
jq -r .message <<<"$out" | grep -q 'disconnected and fenced master master-1' || fail "promote --force said: $out"
mctl --json status vol | jq -e '.volumes[0].mirror.promotion.forced' >/dev/null || fail "not marked forced"
wait_status vol state ERROR 20
[ "$(ctl_field vol error | cut -d: -f1)" = FENCED ] || fail "the master was not told FENCED: $(ctl_field vol error)"
[ "$(ctl vol status | jq -r .volumes[0].master.fenced.txid)" = "$t" ] || fail "fenced TXID: $(ctl vol status)"
cmp -s "$T/e0" "$T/mirror/vol/extent.0" || fail "the promoted copy is not the master's volume"
out=$(mctl snapshot create vol s 2>&1) && fail "a snapshot of a promoted volume was taken: $out"
grep -q 'FAILED_PRECONDITION.*promoted' <<<"$out" || fail "snapshot of a promoted volume: $out"
stop "$CLIENT_PID"; stop "$SERVER_PID"

# An inconsistent copy: a full resync interrupted by the master's death.
rm -rf "$T/mirror" "$T/vol.journal"*
mkvol "$T/e1" 16M; fill "$T/e1" 0 16 b; cp "$T/e1" "$T/i1"
start_server
start_client vol "$T/e1" master-1 --trace-tx "$T/master.trace"
wait_status vol state INSYNC 30
# A slow resync, so that the writer's writes land behind its cursor (the mirror's base
# changes after the pre-resync snapshot, which saves what they overwrite).
frepctl_for vol set-rate vol 2M >/dev/null || fail "set-rate"
"${W[@]}" --uri "$(nbd_uri vol)" --seed p --duration 30 --depth 4 --ops write --max-len 65536 \
	--rate 200 --tolerate-errors >"$T/writer.out" 2>"$T/writer.log" &
WPID=$!
PIDS+=("$WPID")
wait_for 20 "writes to commit" committed_above vol 100
ctl vol resync-full | grep -q '^ok' || fail "resync --full refused"
wait_log "$SERVER_LOG" 'snapshot pre-resync created at TXID' 20
snap=$(grep -Eo 'snapshot pre-resync created at TXID [0-9]+' "$SERVER_LOG" | tail -n1 | grep -Eo '[0-9]+$')
wait_for 20 "the resync to copy 6 MiB" eval \
	'[ "$(ctl vol status | jq -r ".volumes[0].master.copy.done_bytes // 0")" -ge 6291456 ]'
kill -KILL "$CLIENT_PID"
kill "$WPID" 2>/dev/null; wait "$WPID" 2>/dev/null || true
wait_for 10 "the mirror to see its master gone" \
	eval '[ "$(mctl --json status vol | jq -r .volumes[0].state)" = DETACHED ]'
out=$(mctl promote vol 2>&1) && fail "promote of an inconsistent copy was taken: $out"
grep -q "inconsistent.*snapshot pre-resync at TXID $snap: --force promotes that" <<<"$out" ||
	fail "promote of an inconsistent copy said: $out"
out=$(mctl --json promote vol --force 2>&1) || fail "promote --force of the pre-resync snapshot: $out"
st=$(mctl --json status vol)
[ "$(jq -r '.volumes[0].mirror.promotion.txid' <<<"$st")" = "$snap" ] || fail "promoted TXID: $st"
[ "$(jq -r '.volumes[0].mirror.promotion.source' <<<"$st")" = "snapshot pre-resync" ] || fail "source: $st"
"${C[@]}" snapshot --initial "$T/i1" --master-trace "$T/master.trace" --image "$T/mirror/vol/extent.0" \
	--txid "$snap" --seed p --max-len 65536 || fail "the promoted copy is not the master at TXID $snap"
[ -s "$T/mirror/vol/promoted.dirty" ] || fail "no restored ranges were recorded"
[ "$(mctl --json snapshot list vol | jq '.snapshots | length')" = 0 ] || fail "the pre-resync snapshot is still listed"
# The adopting master starts with the restored ranges dirty: the old master may lack them.
"$BIN/frep-client" --adopt "$T/mirror/vol" --volume vol --mirror 127.0.0.1:1 \
	--server-name frep-mirror --journal "$T/new.journal" --cert "$PKI/master-1.crt" \
	--key "$PKI/master-1.key" --ca "$PKI/ca.crt" --nbd "unix:$T/new.sock" \
	--admin "unix:$T/new-admin.sock" >>"$T/new.log" 2>&1 &
PIDS+=("$!")
wait_for 20 "the adopted primary's NBD socket" client_listening "$T/new.log" 0
dirty=$("$BIN/frepctl" --admin "unix:$T/new-admin.sock" --json status vol | jq -r '.volumes[0].master.dirty_bytes')
[ "$dirty" -gt 0 ] || fail "the adopted primary's bitmap does not hold the restored ranges"
pass "promote: refusals, --force fencing a connected master, --force promoting the pre-resync snapshot (TXID $snap)"
