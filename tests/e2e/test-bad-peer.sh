#!/usr/bin/env bash
# Bad input from an authenticated master is harmless: frep-server answers with the right Error, stays up, keeps serving.
#
# tests/tools/frep-peer plays the master from a script; protoc, independent of
# the project's protobuf-c code, encodes the bodies it sends and decodes the
# bodies it receives.
source "$(dirname "$0")/lib.sh"
certs master-1
command -v protoc >/dev/null || fail "protoc (protobuf-compiler) is not installed"

W=$T/w
mkdir -p "$W"
PROTO_DIR=$FREP_SRC/proto
UUID='\001\002\003\004\005\006\007\010\011\012\013\014\015\016\017\020'
SID='\100\101\102\103\104\105\106\107\110\111\112\113\114\115\116\117'

# enc MESSAGE OUTFILE: protobuf text on stdin -> binary body (protoc warns about, but keeps, missing fields).
enc() {
	protoc --proto_path="$PROTO_DIR" --encode="frep.v1.$1" frep/v1/frep.proto >"$2" 2>"$2.warn" ||
		fail "protoc could not encode $1: $(cat "$2.warn")"
}

# dec MESSAGE FILE: binary body -> protobuf text on stdout.
dec() {
	protoc --proto_path="$PROTO_DIR" --decode="frep.v1.$1" frep/v1/frep.proto <"$2" ||
		fail "protoc could not decode $2 as $1"
}

# hello VOLUME [LANE_COUNT] OUTFILE
hello() {
	local vol=$1 lanes=1 out=$2
	[ $# -eq 3 ] && { lanes=$2; out=$3; }
	enc Hello "$out" <<EOF
proto_min: 1
proto_max: 1
master_node: "bad-peer"
volume: "$vol"
volume_uuid: "$UUID"
generation: 1
session_id: "$SID"
lane: 0
lane_count: $lanes
retained_first_txid: 0
committed_txid: 0
journal_size: 16777216
EOF
}

# peer NAME: runs frep-peer on the script from stdin in $W; stdout in $W/NAME.out,
# stderr in $T/peer-NAME.log; fails the test unless the script ran as written.
peer() {
	local rc=0
	(cd "$W" && timeout 40 "$BIN/tests/frep-peer" --connect "127.0.0.1:$SERVER_PORT" \
		--server-name frep-mirror --cert "$PKI/master-1.crt" --key "$PKI/master-1.key" \
		--ca "$PKI/ca.crt" --timeout 10) >"$W/$1.out" 2>"$T/peer-$1.log" || rc=$?
	[ $rc -eq 0 ] || fail "case $1: frep-peer exit $rc: $(cat "$T/peer-$1.log")"
}

# check_error NAME CODE REGEX: $W/NAME.error is a severe Error with CODE whose message matches REGEX.
check_error() {
	local txt
	txt=$(dec Error "$W/$1.error")
	grep -qx "code: $2" <<<"$txt" || fail "case $1: expected Error code $2, got: $txt"
	grep -qx 'severe: true' <<<"$txt" || fail "case $1: Error not severe: $txt"
	grep -Eq "^message: \".*$3" <<<"$txt" || fail "case $1: message does not match '$3': $txt"
}

# bad NAME CODE REGEX: runs the script on stdin, then expects Error CODE (message ~ REGEX)
# and the close; the server log must carry the same reason.
bad() {
	local name=$1 code=$2 re=$3
	{ cat; printf 'expect ERROR %s.error\nexpect-close\n' "$name"; } | peer "$name"
	check_error "$name" "$code" "$re"
	wait_log "$SERVER_LOG" "$re" 5
}

start_server

# Bodies shared by several cases.
enc Goodbye "$W/bye.bin" <<<'reason: "test done"'
enc ExtentTable "$W/ext1m.bin" <<<'extent_size: 1048576'
enc StartCopy "$W/startcopy.bin" <<<'kind: PHASE_REPLICATE base_txid: 0 total_bytes: 1048576'
enc CopyDone "$W/copydone.bin" <<<'last_txid: 0 copied_bytes: 0'
enc StartSync "$W/startsync.bin" <<<'from_txid: 0'
head -c 4096 /dev/zero | tr '\0' 'A' >"$W/A4k"

# insync VOLUME: script lines that take a new 1 MiB volume to INSYNC at TXID 0.
insync() {
	hello "$1" "$W/hello-$1.bin"
	cat <<EOF
send HELLO hello-$1.bin
expect WELCOME
send EXTENT_TABLE ext1m.bin
expect PARTS_READY
send START_COPY startcopy.bin
send COPY_DONE copydone.bin
expect COPY_ACK
expect CONSISTENT
EOF
}

# 1. spec: FRAME-2, FRAME-9. Bad magic.
bad magic 1 'bad frame magic' <<<'raw 58585858 01 01 0000 00000000 00000000'
# 2. spec: FRAME-4, FRAME-9. Unknown type byte 200, and type 0.
bad type200 1 'unknown message type' <<<'raw 46524550 01 c8 0000 00000000 00000000'
bad type0 1 'unknown message type' <<<'raw 46524550 01 00 0000 00000000 00000000'
# spec: FRAME-3, FRAME-5. Version 2; a reserved flag bit set.
bad version2 1 'unsupported frame version' <<<'raw 46524550 02 01 0000 00000000 00000000'
bad flags 1 'reserved frame flags set' <<<'raw 46524550 01 01 0001 00000000 00000000'
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
enc Hello "$W/shortuuid.bin" <<EOF
proto_min: 1 proto_max: 1 master_node: "bad-peer" volume: "v5uuid" volume_uuid: "\001\002\003"
generation: 1 session_id: "$SID" lane: 0 lane_count: 1 retained_first_txid: 0 committed_txid: 0
journal_size: 16777216
EOF
bad shortuuid 1 'HELLO with a malformed uuid' <<<'send HELLO shortuuid.bin'

# 6. spec: FSM-1, HS-1, MSG-6. Messages illegal in INIT, and one a mirror never receives.
enc Tx "$W/tx-zero.bin" <<<'generation: 1 txid: 1 op: TX_ZERO offset: 0 length: 4096 data_crc: 0'
bad txinit 2 'TX is illegal in state INIT' <<<'send TX tx-zero.bin'
wait_log "$SERVER_LOG" 'ERROR volume=- .*UNEXPECTED: TX is illegal in state INIT' 5
bad syncinit 2 'START_SYNC is illegal in state INIT' <<<'send START_SYNC startsync.bin'
enc Welcome "$W/welcome.bin" <<<'proto_version: 1 known: false durable_txid: 0 consistent: false consistent_txid: 0 phase: 0 copy_cursor: 0'
bad welcome 2 'WELCOME is not a message a master sends' <<<'send WELCOME welcome.bin'
# A second HELLO, in MAKEPARTS.
hello v6 "$W/hello-v6.bin"
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
head -c 8192 /dev/zero | tr '\0' 'A' >"$W/A8k"
head -c 4096 /dev/zero | tr '\0' 'B' >"$W/B4k"
head -c 8192 /dev/zero | tr '\0' 'C' >"$W/C8k"
hello v7 "$W/hello-v7.bin"
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
send TX tx2.bin B4k crc
expect RESEND resend7.out
send TX tx1.bin A8k crc
expect TX_ACK txack7.out
send GOODBYE bye.bin
expect-close
EOF
grep -qx 'known: false' <(dec Welcome "$W/welcome7.out") || fail "gap: WELCOME for a new volume not known=false"
grep -qx 'volume_size: 1572864' <(dec PartsReady "$W/parts7.out") || fail "gap: PARTS_READY size"
grep -qx 'through: 1572864' <(dec CopyAck "$W/copyack7.out") || fail "gap: COPY_ACK not through the end"
grep -qx 'txid: 0' <(dec Consistent "$W/consistent7.out") || fail "gap: CONSISTENT not at TXID 0"
r=$(dec Resend "$W/resend7.out")
[ "$r" = $'from_txid: 1\nto_txid: 1' ] || fail "gap: expected RESEND 1..1, got: $r"
a=$(dec TxAck "$W/txack7.out")
[ "$a" = 'txid: 2' ] || fail "gap: expected TX_ACK 2 (cumulative, both TXs), got: $a"
wait_log "$SERVER_LOG" 'volume=v7 .*TX 2 arrived past a gap: asking for 1\.\.1' 5
wait_log "$SERVER_LOG" 'volume=v7 .*said goodbye' 5
# Expected content: zeros, TX 1's A then TX 2's B over its second half, the copied C across extents.
truncate -s 1572864 "$W/expect7"
dd if="$W/A8k" of="$W/expect7" bs=4096 seek=0 conv=notrunc status=none
dd if="$W/B4k" of="$W/expect7" bs=4096 seek=1 conv=notrunc status=none
dd if="$W/C8k" of="$W/expect7" bs=4096 seek=255 conv=notrunc status=none
same_bytes "$W/expect7" "$(mirror_extents v7 2)" ||
	fail "gap: mirror extents differ from TX 1 then TX 2 applied in order"

# spec: HS-7, RDY-3, SEQ-8. The same master comes back: WELCOME reports TXID 2
# durable and consistent; after START_SYNC a stale duplicate of TX 1 is ignored
# (applying it again would put A back over TX 2's B) and TX 3 is acknowledged.
enc StartSync "$W/sync2.bin" <<<'from_txid: 2'
enc Tx "$W/tx3.bin" <<<'generation: 1 txid: 3 op: TX_ZERO offset: 0 length: 4096 data_crc: 0'
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
w=$(dec Welcome "$W/welcome7b.out")
for f in 'known: true' 'durable_txid: 2' 'consistent: true' 'phase: 4'; do
	grep -qx "$f" <<<"$w" || fail "resume: WELCOME lacks '$f': $w"
done
a=$(dec TxAck "$W/txack7b.out")
[ "$a" = 'txid: 3' ] || fail "resume: expected TX_ACK 3, got: $a"
dd if=/dev/zero of="$W/expect7" bs=4096 count=1 conv=notrunc status=none
same_bytes "$W/expect7" "$(mirror_extents v7 2)" ||
	fail "resume: mirror extents differ (duplicate TX 1 applied, or TX 3 not)"
# spec: HS-5. Another volume UUID under the same name is refused.
enc Hello "$W/hello-v7other.bin" <<EOF
proto_min: 1 proto_max: 1 master_node: "bad-peer" volume: "v7" volume_uuid: "0123456789abcdef"
generation: 2 session_id: "$SID" lane: 0 lane_count: 1 retained_first_txid: 0 committed_txid: 0
journal_size: 16777216
EOF
bad clash 5 'volume v7 belongs to master master-1 with another volume UUID' <<<'send HELLO hello-v7other.bin'

# 8. spec: SEQ-2, COPY-7, MP-1. Out-of-range and corrupt data, and a malformed extent table.
enc Tx "$W/txrange.bin" <<<'generation: 1 txid: 1 op: TX_WRITE offset: 1044480 length: 8192 data_crc: 0'
{ insync v8range; echo 'send TX txrange.bin A8k crc'; } | bad txrange 8 'TX 1: 8192 bytes at offset 1044480 leave the 1048576-byte volume'
enc Tx "$W/txzrange.bin" <<<'generation: 1 txid: 1 op: TX_ZERO offset: 18446744073709547520 length: 8192 data_crc: 0'
{ insync v8zrange; echo 'send TX txzrange.bin'; } | bad txzrange 8 'leave the 1048576-byte volume'
enc Tx "$W/txcrc.bin" <<<'generation: 1 txid: 1 op: TX_WRITE offset: 0 length: 4096 data_crc: 1'
{ insync v8crc; echo 'send TX txcrc.bin A4k'; } | bad txcrc 9 'TX 1: CRC32C mismatch'
enc CopyData "$W/cdrange.bin" <<<'offset: 1048576 data_crc: 0'
hello v8copy "$W/hello-v8copy.bin"
bad copyrange 8 'COPY_DATA of 4096 bytes at offset 1048576 outside the volume' <<'EOF'
send HELLO hello-v8copy.bin
expect WELCOME
send EXTENT_TABLE ext1m.bin
expect PARTS_READY
send START_COPY startcopy.bin
send COPY_DATA cdrange.bin A4k crc
EOF
enc CopyData "$W/cdcrc.bin" <<<'offset: 0 data_crc: 7'
hello v8copycrc "$W/hello-v8copycrc.bin"
bad copycrc 9 'COPY_DATA at offset 0: CRC32C mismatch' <<'EOF'
send HELLO hello-v8copycrc.bin
expect WELCOME
send EXTENT_TABLE ext1m.bin
expect PARTS_READY
send START_COPY startcopy.bin
send COPY_DATA cdcrc.bin A4k
EOF
# Nothing of the rejected data reached the extents.
cmp -s "$T/mirror/v8crc/extent.0" <(head -c 1048576 /dev/zero) || fail "txcrc: rejected TX data was applied"
cmp -s "$T/mirror/v8copycrc/extent.0" <(head -c 1048576 /dev/zero) || fail "copycrc: rejected COPY_DATA was written"
enc ExtentTable "$W/ext-odd.bin" <<<'extent_size: 1048576 extent_size: 1000'
hello v8ext "$W/hello-v8ext.bin"
bad badext 7 'extent 1 size 1000 is not a non-zero multiple of 4096' <<'EOF'
send HELLO hello-v8ext.bin
expect WELCOME
send EXTENT_TABLE ext-odd.bin
EOF
: | enc ExtentTable "$W/ext-none.bin"
hello v8ext0 "$W/hello-v8ext0.bin"
bad noext 7 'extent table malformed: 0 extents' <<'EOF'
send HELLO hello-v8ext0.bin
expect WELCOME
send EXTENT_TABLE ext-none.bin
EOF

# 9. spec: LANE-2, HS-2. Two lanes are not supported in version 1.
hello v9 2 "$W/hello-v9.bin"
bad lanes 15 'lane 0 of 2: this mirror supports 1 lane' <<<'send HELLO hello-v9.bin'

# After all of that the server is up and an honest master still replicates.
alive "$SERVER_PID" frep-server
mkvol "$T/h0" 4M
fill "$T/h0" 1 1 honest
start_client honest "$T/h0"
wait_log "$SERVER_LOG" 'volume=honest .*state REPLICATE -> INSYNC' 20
wait_converged "$T/h0" "$(mirror_extents honest 1)" 10
stop "$CLIENT_PID"
alive "$SERVER_PID" frep-server
# A clean exit, so sanitizer builds also check for leaks on every error path above.
stop "$SERVER_PID"
if grep -Eq 'ASan|AddressSanitizer|LeakSanitizer|runtime error' "$SERVER_LOG"; then
	fail "sanitizer report in the server log"
fi
pass "bad magic/type/version/flags/lengths, truncation, malformed bodies, illegal messages, gap and resend, RANGE/CHECKSUM/BAD_EXTENTS/LANES all answered per spec; server kept serving"
