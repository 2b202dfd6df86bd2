#!/usr/bin/env bash
# Bad input from an authenticated master is harmless: frep-server answers with the right Error, stays up, keeps serving.
#
# frep-conform peer (conformance/peer-script.c) plays the master; tests/e2e/peer.sh has the helpers.
source "$(dirname "$0")/lib.sh"
certs master-1
source "$(dirname "$0")/peer.sh"

# bad NAME CODE REGEX: runs the script on stdin, then expects Error CODE (message ~ REGEX)
# and the close; the server log must carry the same reason.
bad() {
	refused "$@"
	wait_log "$SERVER_LOG" "$3" 5
}

start_server

# 1. spec: FRAME-2, FRAME-9. Bad magic.
bad magic 1 'bad frame magic' <<<'raw 58585858 01 01 0000 00000000 00000000'
# 2. spec: FRAME-4, FRAME-9. Unknown type byte 200, and type 0.
bad type200 1 'unknown message type' <<<'raw 46524550 01 c8 0000 00000000 00000000'
bad type0 1 'unknown message type' <<<'raw 46524550 01 00 0000 00000000 00000000'
# spec: FRAME-3, FRAME-5. Version 2; a reserved flag bit set.
bad version2 1 'frame version is not 1' <<<'raw 46524550 02 01 0000 00000000 00000000'
bad flags 1 'frame flags set in a version-1 frame' <<<'raw 46524550 01 01 0001 00000000 00000000'
# 3. spec: FRAME-6, FRAME-7, FRAME-8. Hostile lengths are refused from the header
# alone: the Error comes back although the 4 GiB body never does (nothing was
# read or allocated for it), and the server stays up (checked at the end).
bad bodymax 1 'body length exceeds 65536' <<<'raw 46524550 01 01 0000 ffffffff 00000000'
bad body65537 1 'body length exceeds 65536' <<<'raw 46524550 01 01 0000 00010001 00000000'
bad trailerhello 1 'trailer on a message type that takes none' <<<'raw 46524550 01 01 0000 00000000 00000010'
bad trailermax 1 'trailer length exceeds 33554432' <<<'raw 46524550 01 0b 0000 00000000 ffffffff'

# 4. spec: FRAME-10, FRAME-11. Truncated frames are a lost link, not a clean close,
# and cost the server nothing: a header and half of its 100-byte body, then close;
# half a header, then close.
printf 'raw 46524550 01 01 0000 00000064 00000000\nraw %s\nclose\n' "$(printf '%0100d' 0)" | peer truncbody
wait_log "$SERVER_LOG" 'connection lost inside a HELLO frame' 10
printf 'raw 46524550 01 01 00\nclose\n' | peer trunchdr
wait_log "$SERVER_LOG" 'WARN volume=- master 127\.0\.0\.1:[0-9]+: reading frame header' 10

# 5. spec: MSG-1, MSG-2, FRAME-9. A body that is not protobuf; a Hello missing required fields.
printf '\377\377\377\377\377\377\377\377' >"$W/garbage.bin"
bad garbage 1 'malformed HELLO body \(8 bytes\)' <<<'send HELLO garbage.bin'
enc Hello "$W/partial.bin" <<<'volume: "v5"'
bad partial 1 'malformed HELLO body' <<<'send HELLO partial.bin'
# spec: HS-2. A 3-byte UUID.
hello v5uuid 1 '\001\002\003'
bad shortuuid 1 'HELLO with a malformed uuid' <<<'send HELLO hello-v5uuid.bin'

# 6. spec: FSM-1, HS-1, MSG-6. Messages illegal in INIT, and one a mirror never receives.
enc Tx "$W/tx-zero.bin" <<<'generation: 1 txid: 1 op: TX_ZERO offset: 0 length: 4096 data_crc: 0'
bad txinit 2 'TX is illegal in state INIT' <<<'send TX tx-zero.bin'
wait_log "$SERVER_LOG" 'ERROR volume=- .*UNEXPECTED: TX is illegal in state INIT' 5
bad syncinit 2 'START_SYNC is illegal in state INIT' <<<'send START_SYNC sync0.bin'
enc Welcome "$W/welcome.bin" <<<'proto_version: 1 known: false durable_txid: 0 consistent: false consistent_txid: 0 phase: 0 copy_cursor: 0'
bad welcome 2 'WELCOME is not a message a master sends' <<<'send WELCOME welcome.bin'
# A second HELLO, in MAKEPARTS.
hello v6
bad hello2 2 'HELLO is illegal in state MAKEPARTS' <<'EOF'
send HELLO hello-v6.bin
expect WELCOME
send HELLO hello-v6.bin
EOF

# 7. spec: SEQ-4, SEQ-6, SEQ-8, SEQ-10, COPY-6, COPY-11. A copy with one COPY_DATA
# across the extent boundary, then TX 2 before TX 1: the mirror must hold TX 2
# back, ask for exactly TX 1, then journal both, acknowledge 2, and apply in
# TXID order (TX 2 wins where they overlap).
enc ExtentTable "$W/ext7.bin" <<<'extent_size: 1048576 extent_size: 524288'
enc StartCopy "$W/sc7.bin" <<<'kind: PHASE_REPLICATE base_txid: 0 total_bytes: 1572864'
enc CopyData "$W/cd7.bin" <<<'offset: 1044480 data_crc: 0'
enc CopyDone "$W/done7.bin" <<<'last_txid: 0 copied_bytes: 8192'
enc Tx "$W/tx1.bin" <<<'generation: 1 txid: 1 op: TX_WRITE offset: 0 length: 8192 data_crc: 0'
enc Tx "$W/tx2.bin" <<<'generation: 1 txid: 2 op: TX_WRITE offset: 4096 length: 4096 data_crc: 0'
cat "$W/A" "$W/A" >"$W/A8k"
cat "$W/C" "$W/C" >"$W/C8k"
hello v7
peer gap <<'EOF'
send HELLO hello-v7.bin
expect WELCOME welcome7.out
send EXTENT_TABLE ext7.bin
expect PARTS_READY parts7.out
send START_COPY sc7.bin
send COPY_DATA cd7.bin C8k crc
send COPY_DONE done7.bin
expect COPY_ACK copyack7.out
expect CONSISTENT consistent7.out
send TX tx2.bin B crc
expect RESEND resend7.out
send TX tx1.bin A8k crc
expect TX_ACK txack7.out
send GOODBYE bye.bin
expect-close
EOF
has gap Welcome "$W/welcome7.out" 'known: false'
has gap PartsReady "$W/parts7.out" 'volume_size: 1572864'
has gap CopyAck "$W/copyack7.out" 'through: 1572864'
has gap Consistent "$W/consistent7.out" 'txid: 0'
body_is gap Resend "$W/resend7.out" $'from_txid: 1\nto_txid: 1'
# Cumulative: one TX_ACK 2 covers both TXs.
body_is gap TxAck "$W/txack7.out" 'txid: 2'
wait_log "$SERVER_LOG" 'volume=v7 .*TX 2 arrived past a gap: asking for 1\.\.1' 5
wait_log "$SERVER_LOG" 'volume=v7 .*said goodbye' 5
# Expected content: zeros, TX 1's A then TX 2's B over its second half, the copied C across extents.
truncate -s 1572864 "$W/expect7"
dd if="$W/A8k" of="$W/expect7" bs=4096 seek=0 conv=notrunc status=none
dd if="$W/B" of="$W/expect7" bs=4096 seek=1 conv=notrunc status=none
dd if="$W/C8k" of="$W/expect7" bs=4096 seek=255 conv=notrunc status=none
same_bytes "$W/expect7" "$(mirror_extents v7 2)" ||
	fail "gap: mirror extents differ from TX 1 then TX 2 applied in order"

# spec: HS-7, RDY-3, SEQ-8. The same master comes back: WELCOME reports TXID 2
# durable and consistent; after START_SYNC a stale duplicate of TX 1 is ignored
# (applying it again would put A back over TX 2's B) and TX 3 is acknowledged.
enc StartSync "$W/sync2.bin" <<<'from_txid: 2'
enc Tx "$W/tx3.bin" <<<'generation: 1 txid: 3 op: TX_ZERO offset: 0 length: 4096 data_crc: 0'
released v7
peer resume <<'EOF'
send HELLO hello-v7.bin
expect WELCOME welcome7b.out
send EXTENT_TABLE ext7.bin
expect PARTS_READY
send START_SYNC sync2.bin
send TX tx1.bin A8k crc
send TX tx3.bin
expect TX_ACK txack7b.out
send GOODBYE bye.bin
expect-close
EOF
has resume Welcome "$W/welcome7b.out" 'known: true' 'durable_txid: 2' 'consistent: true' 'phase: 4'
body_is resume TxAck "$W/txack7b.out" 'txid: 3'
dd if=/dev/zero of="$W/expect7" bs=4096 count=1 conv=notrunc status=none
same_bytes "$W/expect7" "$(mirror_extents v7 2)" ||
	fail "resume: mirror extents differ (duplicate TX 1 applied, or TX 3 not)"
# spec: HS-5. Another volume UUID under the same name is refused.
hello v7 1 0123456789abcdef 2 hello-v7other.bin
released v7
bad clash 5 'volume v7 belongs to master master-1 with another volume UUID' <<<'send HELLO hello-v7other.bin'

# 8. spec: SEQ-2, COPY-7, MP-1. Out-of-range and corrupt data, and a malformed extent table.
enc Tx "$W/txrange.bin" <<<'generation: 1 txid: 1 op: TX_WRITE offset: 1044480 length: 8192 data_crc: 0'
{ insync v8range; echo 'send TX txrange.bin A8k crc'; } | bad txrange 8 'TX 1: 8192 bytes at offset 1044480 leave the 1048576-byte volume'
enc Tx "$W/txzrange.bin" <<<'generation: 1 txid: 1 op: TX_ZERO offset: 18446744073709547520 length: 8192 data_crc: 0'
{ insync v8zrange; echo 'send TX txzrange.bin'; } | bad txzrange 8 'leave the 1048576-byte volume'
enc Tx "$W/txcrc.bin" <<<'generation: 1 txid: 1 op: TX_WRITE offset: 0 length: 4096 data_crc: 1'
{ insync v8crc; echo 'send TX txcrc.bin A'; } | bad txcrc 9 'TX 1: CRC32C mismatch'
enc CopyData "$W/cdrange.bin" <<<'offset: 1048576 data_crc: 0'
{ ready v8copy; printf 'send START_COPY startrep.bin\nsend COPY_DATA cdrange.bin A crc\n'; } |
	bad copyrange 8 'COPY_DATA of 4096 bytes at offset 1048576 outside the volume'
enc CopyData "$W/cdcrc.bin" <<<'offset: 0 data_crc: 7'
{ ready v8copycrc; printf 'send START_COPY startrep.bin\nsend COPY_DATA cdcrc.bin A\n'; } |
	bad copycrc 9 'COPY_DATA at offset 0: CRC32C mismatch'
# Nothing of the rejected data reached the extents.
cmp -s "$T/mirror/v8crc/extent.0" <(head -c 1048576 /dev/zero) || fail "txcrc: rejected TX data was applied"
cmp -s "$T/mirror/v8copycrc/extent.0" <(head -c 1048576 /dev/zero) || fail "copycrc: rejected COPY_DATA was written"
enc ExtentTable "$W/ext-odd.bin" <<<'extent_size: 1048576 extent_size: 1000'
hello v8ext
bad badext 7 'extent 1 size 1000 is not a non-zero multiple of 4096' <<'EOF'
send HELLO hello-v8ext.bin
expect WELCOME
send EXTENT_TABLE ext-odd.bin
EOF
: | enc ExtentTable "$W/ext-none.bin"
hello v8ext0
bad noext 7 'extent table malformed: 0 extents' <<'EOF'
send HELLO hello-v8ext0.bin
expect WELCOME
send EXTENT_TABLE ext-none.bin
EOF

# spec: SEQ-6, SEQ-11. A held-back TX is checked when the gap is filled, like any
# other: TX 2 of generation 1 waits past the gap, TX 1 of generation 2 fills it,
# and journaling TX 2 next would lower the generation.
hello v8gen 1 "$UUID" 2
enc Tx "$W/tx1g2.bin" <<<'generation: 2 txid: 1 op: TX_ZERO offset: 0 length: 4096 data_crc: 0'
enc Tx "$W/tx2g1.bin" <<<'generation: 1 txid: 2 op: TX_ZERO offset: 4096 length: 4096 data_crc: 0'
bad heldgen 1 'TX 2 from generation 1 after a TX of generation 2: generations never go down' <<'EOF'
send HELLO hello-v8gen.bin
expect WELCOME
send EXTENT_TABLE ext1m.bin
expect PARTS_READY
send START_COPY startrep.bin
send COPY_DONE copydone.bin
expect COPY_ACK
expect CONSISTENT
send TX tx2g1.bin
expect RESEND
send TX tx1g2.bin
EOF

# 9. spec: LANE-2, HS-2. Two lanes are not supported in version 1.
hello v9 2
bad lanes 15 'lane 0 of 2' <<<'send HELLO hello-v9.bin'

# After all of that the server is up and an honest master still replicates.
alive "$SERVER_PID" frep-server
mkvol "$T/h0" 4M
fill "$T/h0" 1 1 honest
start_client honest "$T/h0"
wait_log "$SERVER_LOG" 'volume=honest .*state REPLICATE -> INSYNC' 20
wait_converged "$T/h0" "$(mirror_extents honest 1)" 10
stop "$CLIENT_PID"
stop_server_clean
pass "bad magic/type/version/flags/lengths, truncation, malformed bodies, illegal messages, gap and resend, RANGE/CHECKSUM/BAD_EXTENTS/LANES all answered per spec; server kept serving"
