#!/usr/bin/env bash
# ocf-tester, resource-agents' own conformance check, passes on the agent ocf/frep: meta-data
# against the OCF DTD (also as user nobody), validate-all, probes and monitors of a stopped
# and a started instance, start and stop twice, notify, and the promote/demote sequence
# (promote, demote, demote again, promote twice) on a real frep-server holding a detached,
# consistent copy of a real master's volume. Promote makes the copy a primary and serves
# it with frep-client --adopt; demote without a mirror stops frep-client and leaves it
# promoted, which the next promote serves again. And cmake --install puts the agent where
# Pacemaker looks for ocf:frep:frep.
source "$(dirname "$0")/ocf.sh"
certs master-1

R=$T/root
DESTDIR=$R cmake --install "$FREP_BUILD" >"$T/install.log" 2>&1 || fail "cmake --install: $(tail -n 3 "$T/install.log")"
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:[A-Z]*=//p' "$FREP_BUILD/CMakeCache.txt")
installed=$R$prefix/lib/ocf/resource.d/frep/frep
[ "$(stat -c %a "$installed" 2>/dev/null)" = 755 ] || fail "cmake --install did not install $installed with mode 0755"
cmp -s "$installed" "$AGENT" || fail "$installed is not ocf/frep"

mkvol "$T/e0" 8M; fill "$T/e0" 0 8 a
start_server
start_client vol "$T/e0" master-1 --admin "unix:$RUN_A/client-vol.sock"
wait_for 30 "A's master INSYNC" eval '[ "$(a_status | jq -r .volumes[0].state)" = INSYNC ]'
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x3c 0 64k' >/dev/null || fail "write to A"
wait_for 20 "the write acknowledged" eval '[ "$(a_status | jq -r .volumes[0].master.lag_tx)" = 0 ]'
stop "$CLIENT_PID"
[ "$(mctl --json status vol | jq -r .volumes[0].state)" = DETACHED ] || fail "B's copy is not DETACHED"

SCORES=$T/scores-B ocf-tester -v -n frep -o volume=vol -o journal="$T/B.journal" -o data_dir="$T/mirror" \
	-o run_dir="$RUN_B" -o frepctl="$BIN/frepctl" -o frep_client="$BIN/frep-client" \
	-o log="$T/client-B-ra.log" -o client_options="$(b_client_options)" "$AGENT" >"$T/tester.log" 2>&1 ||
	fail "ocf-tester failed: $(grep -E '^\* rc=|Tests failed|Aborting' "$T/tester.log")"
grep -q "$AGENT passed all tests" "$T/tester.log" || fail "ocf-tester said: $(tail -n 5 "$T/tester.log")"
! grep -q 'partially supports promotable' "$T/tester.log" || fail "ocf-tester: partial promotable support"

# What ocf-tester drove: frepctl promote once, then frep-client --adopt at each promote
# (three: it promotes, demotes and promotes twice more), each stopped by a demote.
[ "$(grep -c 'adopted the promoted copy' "$T/client-B-ra.log")" = 1 ] ||
	fail "the copy was adopted by a new journal more than once: $(grep adopted "$T/client-B-ra.log")"
[ "$(grep -c 'NBD listening on' "$T/client-B-ra.log")" = 3 ] ||
	fail "ocf-tester's promotes did not serve the volume three times: $(grep -c 'NBD listening' "$T/client-B-ra.log")"
[ "$(grep -c 'frep-ocf: frep-client (pid [0-9]*) exited with status 0' "$T/client-B-ra.log")" = 3 ] ||
	fail "a frep-client did not end cleanly: $(grep 'frep-ocf:' "$T/client-B-ra.log")"
[ "$(mctl --json status vol | jq -r .volumes[0].state)" = PROMOTED ] || fail "B's copy is not PROMOTED"
[ ! -e "$RUN_B/frep-client-vol.pid" ] || fail "the pid file outlived stop"
# Scores: the master 1000, the promoted copy nobody serves 902 (900 + its epoch 2;
# between demote and stop), none once stopped.
grep -qx 'crm_attribute -p -q -v 1000' "$T/scores-B" || fail "no score 1000: $(sort -u "$T/scores-B")"
grep -qx 'crm_attribute -p -q -v 902' "$T/scores-B" || fail "no score 902: $(sort -u "$T/scores-B")"
[ "$(tail -n 1 "$T/scores-B")" = 'crm_attribute -p -q -D' ] || fail "the last score is not deleted: $(tail -n 1 "$T/scores-B")"
# The data written through A's master is still the volume's.
expect B start 0
expect B promote 0
b_pid || fail "no pid file after promote"
qemu-io -f raw "nbd+unix:///vol?socket=$T/b.sock" -c 'read -P 0x3c 0 64k' | grep -q 'read 65536/65536' ||
	fail "the promoted volume lost A's write"
expect B demote 0
expect B stop 0
alive "$SERVER_PID" frep-server
pass "ocf-tester passed all tests, promote/demote three times over one adopted copy"
