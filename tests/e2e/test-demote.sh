#!/usr/bin/env bash
# frepctl demote and switchover refusals, and what a demote leaves: a master no
# promotion fenced is not demoted (FAILED_PRECONDITION, naming --force); a switchover
# needs INSYNC; demote --force hands over the whole volume; the demoted journal is
# refused at the next start with what to do; frepctl adopt retakes a handoff.
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 8M; fill "$T/e0" 0 8 a
start_server
start_client vol "$T/e0"
wait_status vol state INSYNC 30
out=$(frepctl_for vol demote vol 2>&1) && fail "demote of an unfenced master was taken: $out"
grep -q 'FAILED_PRECONDITION: vol is not fenced.*--force' <<<"$out" || fail "demote said: $out"
stop "$SERVER_PID"
wait_for 20 "the master to lose its mirror" eval '[ "$(ctl_field vol state)" != INSYNC ]'
out=$(frepctl_for vol switchover vol 2>&1) && fail "a switchover without a mirror was taken: $out"
grep -q 'FAILED_PRECONDITION: switchover vol needs its mirror connected and INSYNC' <<<"$out" ||
	fail "switchover said: $out"
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x31 0 64k' >/dev/null || fail "the refusals stopped writes"

# --force: no promotion known, every region counts. The host's frep-server (a second
# data dir here) adopts it; the next start of the journal is refused.
mkdir -p "$T/b"
"$BIN/frep-server" --listen 127.0.0.1:0 --data-dir "$T/b" --admin "unix:$T/b.sock" \
	--cert "$PKI/server.crt" --key "$PKI/server.key" --ca "$PKI/ca.crt" >>"$T/b.log" 2>&1 &
PIDS+=("$!")
wait_log "$T/b.log" 'listening on' 20
out=$(frepctl_for vol demote vol --force --mirror-admin "unix:$T/b.sock" 2>&1) || fail "demote --force: $out"
grep -q 'the whole volume' <<<"$out" || fail "demote --force did not say the whole volume goes: $out"
grep -q 'a mirror copy of vol now' <<<"$out" || fail "the adoption said: $out"
wait_for 10 "the demoted frep-client to end" eval '! kill -0 "$CLIENT_PID" 2>/dev/null'
st=$("$BIN/frepctl" --admin "unix:$T/b.sock" --json status vol)
[ "$(jq -r '.volumes[0].mirror.consistent' <<<"$st")" = false ] || fail "the adopted copy says consistent: $st"
[ "$(readlink "$T/b/vol/extent.0")" = "$T/e0" ] || fail "the adopted extent is not a link to $T/e0"
"$BIN/frepctl" --admin "unix:$T/b.sock" --json snapshot list vol | jq -e '.snapshots[0].name == "pre-demote"' \
	>/dev/null || fail "no pre-demote snapshot"
"$BIN/frep-client" --volume "vol=$T/e0" --mirror 127.0.0.1:1 --server-name frep-mirror \
	--journal "$T/vol.journal" --cert "$PKI/master-1.crt" --key "$PKI/master-1.key" \
	--ca "$PKI/ca.crt" --nbd "unix:$T/again.sock" --admin "unix:$T/again.adm" >"$T/again.log" 2>&1 &&
	fail "a demoted journal was served again"
grep -q 'was demoted (frepctl demote).*--adopt' "$T/again.log" || fail "the refusal said: $(cat "$T/again.log")"
# frepctl adopt retries a handoff; here the copy is already there: ALREADY_EXISTS.
out=$("$BIN/frepctl" --admin "unix:$T/b.sock" adopt vol --handoff "$T/vol.journal.handoff" 2>&1) &&
	fail "a second adoption was taken: $out"
grep -q 'ALREADY_EXISTS' <<<"$out" || fail "a second adoption said: $out"
pass "demote and switchover refuse what they must; demote --force hands the whole volume over"
