#!/usr/bin/env bash
# The Pacemaker resource agent ocf/frep, action by action, on two nodes on loopback (A
# the master, B the mirror; tests/e2e/ocf.sh): valid meta-data, validate-all's errors,
# monitor's codes and promotion scores for nothing running (7), a mirror copy (0), a
# running master (8) and a fenced one (9); after kill -9 of A's master, promote on B
# makes its copy a primary and serves it with frep-client --adopt (monitor 8, NBD writes
# land); demote without a mirror stops it and leaves a promotable copy; stop.
source "$(dirname "$0")/ocf.sh"
certs master-1

# 1. meta-data: well-formed, valid against the DTD ocf-tester uses and the schema of
# resource-agents, with both roles' monitors at different intervals.
expect B meta-data 0
xmllint --noout "$T/ra.out" || fail "meta-data is not well-formed XML"
xmllint --noout --dtdvalid /usr/share/resource-agents/ra-api-1.dtd "$T/ra.out" 2>"$T/xml.err" ||
	fail "meta-data does not validate against ra-api-1.dtd: $(cat "$T/xml.err")"
xmllint --noout --relaxng /usr/share/resource-agents/metadata.rng "$T/ra.out" 2>"$T/xml.err" ||
	fail "meta-data does not validate against metadata.rng: $(cat "$T/xml.err")"
x() { xmllint --xpath "$1" "$T/ra.out"; }
[ "$(x 'string(/resource-agent/version)')" = 1.1 ] || fail "meta-data is not OCF 1.1"
for a in start stop promote demote notify monitor validate-all meta-data; do
	[ "$(x "count(//actions/action[@name='$a'])")" -ge 1 ] || fail "meta-data lacks action $a"
done
pi=$(x "string(//action[@name='monitor'][@role='Promoted']/@interval)")
ui=$(x "string(//action[@name='monitor'][@role='Unpromoted']/@interval)")
[ -n "$pi" ] && [ -n "$ui" ] && [ "$pi" != "$ui" ] || fail "monitor intervals: Promoted '$pi', Unpromoted '$ui'"
[ "$(x "string(//parameter[@name='volume']/@required)")" = 1 ] || fail "volume is not required"

# 2. validate-all.
expect B validate-all 0
expect B validate-all 6 OCF_RESKEY_volume=
grep -q 'volume is required' <<<"$RA_REASON" || fail "no volume: $RA_REASON"
expect B validate-all 6 OCF_RESKEY_volume=.hidden
grep -q "'.hidden' is not a frep volume name" <<<"$RA_REASON" || fail "bad volume: $RA_REASON"
expect B validate-all 6 OCF_RESKEY_journal=
grep -q 'journal is required' <<<"$RA_REASON" || fail "no journal: $RA_REASON"
expect B validate-all 6 OCF_RESKEY_journal=rel.journal
expect B validate-all 6 OCF_RESKEY_client_options="--mirror h --journal=/x"
grep -q 'must not give --journal' <<<"$RA_REASON" || fail "--journal in client_options: $RA_REASON"
expect B validate-all 0 OCF_RESKEY_client_options="--journal-size 64M --admin-listen 127.0.0.1:0"
expect B validate-all 5 OCF_RESKEY_frep_client="$T/nowhere/frep-client"
grep -q "cannot find the program $T/nowhere/frep-client" <<<"$RA_REASON" || fail "no binary: $RA_REASON"

# 3. Nothing running: not running (7), as probe and as recurring monitor; start needs
# frep-server.
expect B monitor 7
expect B monitor 7 OCF_RESKEY_CRM_meta_interval=0
expect B start 1
grep -q "frep-server does not answer on $RUN_B/server.sock" <<<"$RA_REASON" || fail "start without frep-server: $RA_REASON"
expect B monitor 7

# 4. B's frep-server mirrors A's frep-client: A is a running master (8, score 1000), B
# a mirror copy in sync (0, 150).
mkvol "$T/e0" 16M; fill "$T/e0" 0 16 a
start_server
# Before any master connected, B's frep-server holds no copy: a valid, unpromotable instance.
expect B start 0
expect B monitor 0
expect_score B -
start_client vol "$T/e0" master-1 --admin "unix:$RUN_A/client-vol.sock"
wait_for 30 "A's master INSYNC" eval '[ "$(a_status | jq -r .volumes[0].state)" = INSYNC ]'
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x11 0 1M' >/dev/null || fail "write to A"
wait_for 20 "the write acknowledged" eval '[ "$(a_status | jq -r .volumes[0].master.lag_tx)" = 0 ]'
expect A monitor 8
expect_score A 1000
expect B monitor 0
expect_score B 150
expect B monitor 0 OCF_RESKEY_CRM_meta_interval=0

# 5. A's master dies (kill -9): B's copy, detached and consistent, is promoted and served.
kill -KILL "$CLIENT_PID"
expect A monitor 7
wait_for 10 "the mirror to see its master gone" \
	eval '[ "$(mctl --json status vol | jq -r .volumes[0].state)" = DETACHED ]'
expect B monitor 0
expect_score B 140
expect B promote 0
grep -q 'promoted vol at TXID' "$T/ra.err" || fail "promote did not log frepctl promote's answer: $(cat "$T/ra.err")"
b_pid || fail "promote left no pid file"
bpid=$BPID
tr '\0' '\n' <"/proc/$bpid/cmdline" | grep -qx "adopt=$T/mirror/vol" || fail "pid $bpid is not frep-client --adopt"
[ "$(mctl --json status vol | jq -r .volumes[0].state)" = PROMOTED ] || fail "B's copy is not PROMOTED"
expect B monitor 8
expect_score B 1000
qemu-io -f raw "nbd+unix:///vol?socket=$T/b.sock" -c 'write -P 0x5e 1M 64k' >/dev/null ||
	fail "a write to the promoted volume failed: $(tail -n 3 "$T/client-B-ra.log")"
qemu-io -f raw "nbd+unix:///vol?socket=$T/b.sock" -c 'read -P 0x11 0 1M' -c 'read -P 0x5e 1M 64k' |
	grep -q 'read 65536/65536' || fail "the promoted volume does not hold A's acknowledged write and B's"
expect B promote 0
b_pid && [ "$BPID" = "$bpid" ] || fail "a second promote started another frep-client"

# 6. A's old master comes back: fenced by B's frep-server. Monitor says so (9, no score)
# and promote refuses it; its frep-client is not the agent's, so stop refuses too.
start_client vol "$T/e0" master-1 --admin "unix:$RUN_A/client-vol.sock"
wait_for 20 "A fenced" eval 'a_status | jq -e .volumes[0].master.fenced >/dev/null'
expect A monitor 9
grep -q 'fenced: vol was promoted elsewhere (epoch 2 after TXID' <<<"$RA_REASON" || fail "fenced monitor: $RA_REASON"
expect_score A -
expect A promote 1
grep -q 'is fenced' <<<"$RA_REASON" || fail "promote of a fenced master: $RA_REASON"
expect A stop 1
grep -q "a frep-client this agent did not start serves vol ($RUN_A/client-vol.sock answers)" <<<"$RA_REASON" ||
	fail "stop of a foreign frep-client: $RA_REASON"
alive "$CLIENT_PID" "A's frep-client"
stop "$CLIENT_PID"

# 7. Demote B with no mirror in sync: frep-client stops, the copy stays promoted and
# promotable (0, 902: 900 + its epoch 2); promote serves it again with its journal,
# writes kept.
expect B demote 0
pid_gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status"; }
wait_for 5 "B's frep-client to exit" pid_gone "$bpid"
expect B monitor 0
expect_score B 902
expect B demote 0
expect B promote 0
b_pid || fail "the second promote left no pid file"
bpid=$BPID
expect B monitor 8
qemu-io -f raw "nbd+unix:///vol?socket=$T/b.sock" -c 'read -P 0x5e 1M 64k' | grep -q 'read 65536/65536' ||
	fail "the write before the demote is gone"
# A frep-client that dies while promoted: a failed master.
kill -KILL "$bpid"
wait_for 5 "B's frep-client to die" pid_gone "$bpid"
expect B monitor 9
grep -q 'frep-client for vol is gone' <<<"$RA_REASON" || fail "dead frep-client: $RA_REASON"
expect_score B 902

# 8. Stop: not running (7), no score; twice is fine.
expect B demote 0
expect B stop 0
expect_score B -
expect B monitor 7
expect B stop 0
# Started, and then frep-server goes away: a failure, not "stopped".
expect B start 0
stop "$SERVER_PID"
expect B monitor 1
grep -q "frep-server does not answer for vol on $RUN_B/server.sock" <<<"$RA_REASON" || fail "monitor without frep-server: $RA_REASON"
expect B monitor 1 OCF_RESKEY_CRM_meta_interval=0
expect B stop 0
expect B monitor 7
pass "meta-data, validate-all, monitor 7/0/8/9 with scores, promote after kill -9 serves writes, demote, stop"
