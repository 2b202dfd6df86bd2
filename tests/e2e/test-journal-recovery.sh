#!/usr/bin/env bash
# A damaged committed record at the head of the master's journal is never dropped as a
# torn tail (its TXID may be on the mirror, and a new write reusing it would be ignored
# there as a duplicate): frep-client refuses to start, names the journal, the TXID and
# the recovery, and following that recovery brings the mirror back byte-identical.
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 8M; fill "$T/e0" 0 1 c
start_server
start_client vol "$T/e0" master-1 --control "unix:$T/vol.ctl" --backoff 0.2:1
wait_status vol state INSYNC 20
# With the mirror gone, async writes commit and apply locally and stay in the journal.
stop "$SERVER_PID"
for i in 1 2 3; do
	qemu-io -f raw "$(nbd_uri vol)" -c "write -P $((0x50 + i)) $((i << 20)) 64k" >/dev/null
done
stop "$CLIENT_PID"

# Flip one data byte of the newest record: nothing follows it, only the mark covers it.
newest=$(corrupt_journal_record "$T/vol.journal" 1)

SERVER_PORT_WANTED=$SERVER_PORT start_server
rc=0
timeout 20 "$BIN/frep-client" --volume "vol=$T/e0" --mirror "127.0.0.1:$SERVER_PORT" \
	--server-name frep-mirror --journal "$T/vol.journal" --cert "$PKI/master-1.crt" \
	--key "$PKI/master-1.key" --ca "$PKI/ca.crt" --nbd "unix:$T/vol.sock" \
	>"$T/client-refused.log" 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "frep-client with a damaged committed record: exit $rc, expected 1"
want="state NEW -> ERROR \(event JOURNAL_FAIL\) reason: journal $T/vol.journal: corrupt record TXID $newest .*committed through TXID $newest"
grep -Eq "$want" "$T/client-refused.log" || fail "no clear error naming TXID $newest: $(cat "$T/client-refused.log")"
grep -q "to recover, move $T/vol.journal aside (keep its .meta), remove the volume's directory DIR/vol on the mirror" \
	"$T/client-refused.log" || fail "the error lacks the recovery: $(cat "$T/client-refused.log")"
grep -q 'NBD listening' "$T/client-refused.log" && fail "NBD was served from a damaged journal"
grep -q 'state .* -> INSYNC' "$SERVER_LOG" && fail "the mirror went INSYNC with the refused master"

# The recovery the message gives: a new journal and a full copy.
mv "$T/vol.journal" "$T/vol.journal.damaged"
rm -rf "$T/mirror/vol"
: >"$T/client-vol.log"
start_client vol "$T/e0" master-1 --control "unix:$T/vol.ctl" --backoff 0.2:1
wait_status vol state INSYNC 20
qemu-io -f raw "$(nbd_uri vol)" -c "read -P $((0x53)) $((3 << 20)) 64k" >/dev/null ||
	fail "the master volume lost the write of TXID $newest"
wait_converged "$T/e0" "$(mirror_extents vol 1)" 20
alive "$CLIENT_PID" frep-client
alive "$SERVER_PID" frep-server
pass "a damaged newest committed record stops frep-client with the TXID and the recovery, which converges"
