# Shared helpers for the misbehaving-master tests: frep-conform peer scripts, protoc-made bodies, Error checks.
#
# Source it after lib.sh and `certs master-1`; it is not a test itself (ctest runs
# test-*.sh only). frep-conform peer (conformance/peer-script.c) plays the master over real TLS from a
# script read on stdin, in the working directory $W; protoc, independent of the
# project's protobuf-c code, encodes the bodies it sends and decodes the bodies it
# receives, so a codec bug cannot hide on both ends at once.
#
# Sourcing creates $W with the bodies and data most cases use:
#   ext1m.bin     EXTENT_TABLE: one extent of $EXT bytes
#   startrep.bin  START_COPY: PHASE_REPLICATE from TXID 0 over $EXT bytes
#   copydone.bin  COPY_DONE: nothing copied, last TXID 0
#   sync0.bin     START_SYNC from TXID 0
#   bye.bin       GOODBYE
#   A B C D       4 KiB of that letter each, for TX and COPY_DATA payloads
command -v protoc >/dev/null || fail "protoc (protobuf-compiler) is not installed"

W=$T/w
mkdir -p "$W"
PROTO_DIR=$FREP_SRC/proto
UUID='\001\002\003\004\005\006\007\010\011\012\013\014\015\016\017\020'
SID='\100\101\102\103\104\105\106\107\110\111\112\113\114\115\116\117'
EXT=1048576
# Each script step is bounded by frep-conform peer's --timeout; this bounds a whole
# script, well inside ctest's 60 s, so a hang fails with the peer's log.
PEER_SCRIPT_TIMEOUT=30

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

# hello VOLUME [LANE_COUNT [UUID [GENERATION [FILE]]]]: writes the HELLO body to
# $W/FILE (default hello-VOLUME.bin); defaults one lane, $UUID, generation 1.
hello() {
	local vol=$1 lanes=${2:-1} uuid=${3:-$UUID} gen=${4:-1} file=${5:-hello-$1.bin}
	enc Hello "$W/$file" <<EOF
proto_min: 1 proto_max: 1 master_node: "bad-peer" volume: "$vol" volume_uuid: "$uuid"
generation: $gen session_id: "$SID" lane: 0 lane_count: $lanes retained_first_txid: 0
committed_txid: 0 journal_size: 16777216
EOF
}

# ready VOLUME [WELCOME_OUT]: writes VOLUME's HELLO body and prints the script lines
# that take it to READY with ext1m.bin (keeping the WELCOME in $W/WELCOME_OUT if named).
ready() {
	hello "$1"
	cat <<EOF
send HELLO hello-$1.bin
expect WELCOME ${2:-}
send EXTENT_TABLE ext1m.bin
expect PARTS_READY
EOF
}

# insync VOLUME: script lines that take a new $EXT-byte volume to INSYNC at TXID 0.
insync() {
	ready "$1"
	cat <<'EOF'
send START_COPY startrep.bin
send COPY_DONE copydone.bin
expect COPY_ACK
expect CONSISTENT
EOF
}

# peer NAME: runs frep-conform peer on the script from stdin in $W; stdout in $W/NAME.out,
# stderr in $T/peer-NAME.log; fails the test unless the script ran as written
# (which also means the server accepted the connection). It authenticates as
# $PEER_CN (default master-1; `certs` must have made it).
peer() {
	local rc=0 cn=${PEER_CN:-master-1}
	(cd "$W" && timeout "$PEER_SCRIPT_TIMEOUT" "$BIN/frep-conform" peer --connect "127.0.0.1:$SERVER_PORT" \
		--server-name frep-mirror --cert "$PKI/$cn.crt" --key "$PKI/$cn.key" \
		--ca "$PKI/ca.crt" --timeout 10) >"$W/$1.out" 2>"$T/peer-$1.log" || rc=$?
	[ $rc -eq 0 ] || fail "case $1: frep-conform peer exit $rc: $(cat "$T/peer-$1.log")"
}

# has NAME MESSAGE FILE FIELD...: the decoded body has each "field: value" line.
has() {
	local name=$1 what=$2 txt f
	txt=$(dec "$2" "$3")
	shift 3
	for f in "$@"; do
		grep -qx "$f" <<<"$txt" || fail "case $name: $what lacks '$f': $txt"
	done
}

# body_is NAME MESSAGE FILE TEXT: the decoded body is exactly TEXT (no other field).
body_is() {
	local txt
	txt=$(dec "$2" "$3")
	[ "$txt" = "$4" ] || fail "case $1: expected $2 '$4', got: '$txt'"
}

# check_error NAME CODE REGEX: $W/NAME.error is a severe Error with CODE whose
# message (the text inside the quotes) matches the extended REGEX.
check_error() {
	local txt msg
	txt=$(dec Error "$W/$1.error")
	grep -qx "code: $2" <<<"$txt" || fail "case $1: expected Error code $2, got: $txt"
	grep -qx 'severe: true' <<<"$txt" || fail "case $1: Error not severe: $txt"
	msg=$(sed -n 's/^message: "\(.*\)"$/\1/p' <<<"$txt")
	grep -Eq -- "$3" <<<"$msg" || fail "case $1: message does not match '$3': $txt"
}

# refused NAME CODE REGEX: runs the script on stdin, then expects a severe Error
# CODE (message ~ REGEX, as check_error) and the server closing the connection.
refused() {
	{ cat; printf 'expect ERROR %s.error\nexpect-close\n' "$1"; } | peer "$1"
	check_error "$@"
}

# released VOLUME: waits until the last session let go of VOLUME. A session
# still closing (checkpoint, fsyncs) holds its lock (spec Appendix A) and a
# reconnect would get BUSY, which a real master retries; a script cannot.
released() {
	wait_for 10 "session lock of $1 released" flock -n "${SERVER_DATA:-$T/mirror}/$1/lock" true
}

# stop_server_clean: the server is still up, exits 0 on SIGTERM (so sanitizer
# builds check every path the cases took for leaks) and logged no sanitizer report.
stop_server_clean() {
	alive "$SERVER_PID" frep-server
	stop "$SERVER_PID"
	! grep -Eq 'ASan|AddressSanitizer|LeakSanitizer|runtime error' "$SERVER_LOG" ||
		fail "sanitizer report in the server log"
}

enc ExtentTable "$W/ext1m.bin" <<<"extent_size: $EXT"
enc StartCopy "$W/startrep.bin" <<<"kind: PHASE_REPLICATE base_txid: 0 total_bytes: $EXT"
enc CopyDone "$W/copydone.bin" <<<'last_txid: 0 copied_bytes: 0'
enc StartSync "$W/sync0.bin" <<<'from_txid: 0'
enc Goodbye "$W/bye.bin" <<<'reason: "test done"'
for c in A B C D; do head -c 4096 /dev/zero | tr '\0' "$c" >"$W/$c"; done
