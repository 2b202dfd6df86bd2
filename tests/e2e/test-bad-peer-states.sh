#!/usr/bin/env bash
# A misbehaving master in every mirror state: illegal events, a TX cut inside its data, a TX past a gap; nothing half-received is ever journaled.
#
# frep-conform peer (conformance/peer-script.c) plays the master over real TLS. Each case takes
# frep-server's machine (fsm/mirror.rl) to one state with legal messages and
# then sends one message that the state's table does not list (spec FSM-1):
# the answer must be a severe Error UNEXPECTED naming the message and the state,
# the server must log the illegal event, and it must keep serving. protoc,
# independent of the project's protobuf-c code, encodes and decodes the bodies.
source "$(dirname "$0")/lib.sh"
certs master-1
source "$(dirname "$0")/peer.sh"

# illegal NAME VOLUME STATE MSG EVENT: runs the script on stdin (it must leave the
# mirror in STATE), then expects Error UNEXPECTED for MSG and the close; checks the
# server's log for the illegal EVENT and the move to ERROR, and that it is still up.
illegal() {
	local name=$1 vol=$2 state=$3 msg=$4 ev=$5
	refused "$name" 2 "^$msg is illegal in state $state\$"
	wait_log "$SERVER_LOG" "WARN volume=$vol state $state: illegal event $ev\$" 5
	wait_log "$SERVER_LOG" "volume=$vol state $state -> ERROR \(event SEVERE\) reason: $msg is illegal" 5
	alive "$SERVER_PID" frep-server
}

# tx TXID OP OFFSET: writes $W/txTXID.bin, 4096 bytes long.
tx() {
	enc Tx "$W/tx$1.bin" <<<"generation: 1 txid: $1 op: $2 offset: $3 length: 4096 data_crc: 0"
}

# block FILE INDEX: the INDEXth 4 KiB block of FILE.
block() {
	dd if="$1" bs=4096 skip="$2" count=1 status=none
}

start_server

enc StartCopy "$W/startoos.bin" <<<"kind: PHASE_OUTOFSYNC base_txid: 0 total_bytes: $EXT"
enc CopyData "$W/copydata.bin" <<<'offset: 0 data_crc: 0'
enc StartSync "$W/sync1.bin" <<<'from_txid: 1'
enc StartSync "$W/sync2.bin" <<<'from_txid: 2'
enc Heartbeat "$W/hb.bin" <<<'seq: 1 txid: 0'
: | enc Pause "$W/pause.bin"
: | enc Resume "$W/resume.bin"
tx 1 TX_WRITE 0
tx 2 TX_WRITE 8192
tx 3 TX_WRITE 24576
tx 7 TX_WRITE 16384

# 1. spec: FSM-1, HS-1. INIT: an extent table before any HELLO.
illegal init - INIT EXTENT_TABLE MSG_EXTENT_TABLE <<<'send EXTENT_TABLE ext1m.bin'

# 2. MAKEPARTS: a copy before the extents are settled.
hello s-mp
illegal makeparts s-mp MAKEPARTS START_COPY MSG_START_REPLICATE <<'EOF'
send HELLO hello-s-mp.bin
expect WELCOME
send START_COPY startrep.bin
EOF

# 3. READY: a TX before the master chose copy or sync.
{ ready s-ready; echo 'send TX tx1.bin A crc'; } | illegal ready s-ready READY TX MSG_TX

# 4. REPLICATE: START_SYNC in the middle of the first copy.
{ ready s-rep; printf 'send START_COPY startrep.bin\nsend COPY_DATA copydata.bin A crc\nsend START_SYNC sync0.bin\n'; } |
	illegal replicate s-rep REPLICATE START_SYNC MSG_START_SYNC

# 5. OUTOFSYNC (spec IDLE-1): PAUSE during a resync of an existing, consistent volume.
{ insync s-oos; printf 'send GOODBYE bye.bin\nexpect-close\n'; } | peer oos-setup
wait_log "$SERVER_LOG" 'volume=s-oos master .* said goodbye' 5
released s-oos
{ ready s-oos welcome-oos.out; printf 'send START_COPY startoos.bin\nsend PAUSE pause.bin\n'; } |
	illegal outofsync s-oos OUTOFSYNC PAUSE MSG_PAUSE
has outofsync Welcome "$W/welcome-oos.out" 'known: true' 'consistent: true' 'phase: 4'
grep -Eq 'volume=s-oos state READY -> OUTOFSYNC \(event MSG_START_OUTOFSYNC\)' "$SERVER_LOG" ||
	fail "case outofsync: the mirror did not log READY -> OUTOFSYNC"

# 6. INSYNC: bulk-copy data while sequencing.
{ insync s-insync; echo 'send COPY_DATA copydata.bin A crc'; } |
	illegal insync s-insync INSYNC COPY_DATA MSG_COPY_DATA

# 7. IDLE: PAUSE is legal in INSYNC; an extent table is not legal after it.
{ insync s-idle; printf 'send PAUSE pause.bin\nsend EXTENT_TABLE ext1m.bin\n'; } |
	illegal idle s-idle IDLE EXTENT_TABLE MSG_EXTENT_TABLE
grep -Eq 'volume=s-idle state INSYNC -> IDLE \(event MSG_PAUSE\)' "$SERVER_LOG" ||
	fail "case idle: the mirror did not log INSYNC -> IDLE"

# 8. ERROR is terminal (spec FSM-8, ERR-1): a RESUME (illegal in INSYNC) and,
# in the same TCP write, a valid TX and a HEARTBEAT. The mirror answers only
# the RESUME; nothing after it is handled, so TX 1 is never journaled.
{ insync s-error; printf 'cork\nsend RESUME resume.bin\nsend TX tx1.bin A crc\nsend HEARTBEAT hb.bin\nuncork\n'; } |
	illegal error s-error INSYNC RESUME MSG_RESUME
n=$(grep -c 'volume=s-error .*illegal event' "$SERVER_LOG" || true)
[ "$n" = 1 ] || fail "case error: $n illegal events logged after ERROR, expected only the RESUME"
! grep -q 'state ERROR: illegal event' "$SERVER_LOG" || fail "case error: events were fed to ERROR"
released s-error
peer error-back <<'EOF'
send HELLO hello-s-error.bin
expect WELCOME welcome-error.out
send GOODBYE bye.bin
expect-close
EOF
has error-back Welcome "$W/welcome-error.out" 'known: true' 'durable_txid: 0' 'consistent: true'
cmp -s "$T/mirror/s-error/extent.0" <(head -c $EXT /dev/zero) ||
	fail "case error: TX 1, sent after the illegal RESUME, reached the extents"

# 9. spec: FRAME-10, SEQ-4, SEQ-10. In INSYNC, TX 1 is acknowledged, then TX 2
# is cut off in the middle of its data. The loss is logged; TX 2 is neither
# applied nor journaled (the same master reconnecting hears durable TXID 1),
# and resending it in a new session works.
{ insync vtrunc; cat <<'EOF'; } | peer trunc
send TX tx1.bin A crc
expect TX_ACK txack-trunc.out
cork
send TX tx2.bin B crc
uncork -2048
close
EOF
body_is trunc TxAck "$W/txack-trunc.out" 'txid: 1'
wait_log "$SERVER_LOG" 'WARN volume=vtrunc master 127\.0\.0\.1:[0-9]+: connection lost inside a TX frame' 10
alive "$SERVER_PID" frep-server
MX=$T/mirror/vtrunc/extent.0
cmp -s <(block "$MX" 0) "$W/A" || fail "trunc: TX 1 was not applied"
cmp -s <(block "$MX" 2) <(head -c 4096 /dev/zero) || fail "trunc: part of the cut TX 2 was applied"
released vtrunc
{ ready vtrunc welcome-trunc.out; cat <<'EOF'; } | peer trunc-back
send START_SYNC sync1.bin
send TX tx2.bin B crc
expect TX_ACK txack-trunc2.out
send GOODBYE bye.bin
expect-close
EOF
has trunc-back Welcome "$W/welcome-trunc.out" 'known: true' 'durable_txid: 1' 'consistent: true'
body_is trunc-back TxAck "$W/txack-trunc2.out" 'txid: 2'
wait_log "$SERVER_LOG" 'volume=vtrunc master .* said goodbye' 5
cmp -s <(block "$MX" 2) "$W/B" || fail "trunc-back: resent TX 2 not applied"
released vtrunc

# 10. spec: SEQ-6. TX 7 while 3 is expected: RESEND 3..6, and when the master
# leaves without filling the gap, TX 7 was never journaled (durable TXID still
# 2 on reconnect) nor applied; the next honest TX 3 is.
{ ready vtrunc; cat <<'EOF'; } | peer gap
send START_SYNC sync2.bin
send TX tx7.bin C crc
expect RESEND resend-gap.out
close
EOF
body_is gap Resend "$W/resend-gap.out" $'from_txid: 3\nto_txid: 6'
wait_log "$SERVER_LOG" 'volume=vtrunc .*TX 7 arrived past a gap: asking for 3\.\.6' 5
wait_log "$SERVER_LOG" 'volume=vtrunc master 127\.0\.0\.1:[0-9]+ closed the connection' 5
released vtrunc
{ ready vtrunc welcome-gap.out; cat <<'EOF'; } | peer gap-back
send START_SYNC sync2.bin
send TX tx3.bin D crc
expect TX_ACK txack-gap.out
send GOODBYE bye.bin
expect-close
EOF
has gap-back Welcome "$W/welcome-gap.out" 'known: true' 'durable_txid: 2' 'consistent: true'
body_is gap-back TxAck "$W/txack-gap.out" 'txid: 3'
wait_log "$SERVER_LOG" 'volume=vtrunc master .* said goodbye' 5
truncate -s $EXT "$W/expect-vtrunc"
dd if="$W/A" of="$W/expect-vtrunc" bs=4096 seek=0 conv=notrunc status=none
dd if="$W/B" of="$W/expect-vtrunc" bs=4096 seek=2 conv=notrunc status=none
dd if="$W/D" of="$W/expect-vtrunc" bs=4096 seek=6 conv=notrunc status=none
cmp -s "$W/expect-vtrunc" "$MX" || fail "gap-back: mirror differs from TX 1, 2, 3 applied (held-back TX 7 applied?)"

stop_server_clean
pass "illegal event answered UNEXPECTED in INIT, MAKEPARTS, READY, REPLICATE, OUTOFSYNC, INSYNC, IDLE; nothing handled after ERROR; cut TX and held-back TX never journaled; server kept serving"
