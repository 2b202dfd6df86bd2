#!/usr/bin/env bash
# An authenticated but hostile master cannot pin a session, land on the server's own files, or get a wrong Error.
#
# frep-conform peer (conformance/peer-script.c) plays the master; tests/e2e/peer.sh has the helpers. The
# server runs with --heartbeat-timeout 2 and, through the test hook
# FREP_TEST_FRAME_MS, a 1.5 s frame bound in place of FRAME-11's 15 s.
source "$(dirname "$0")/lib.sh"
certs master-1
source "$(dirname "$0")/peer.sh"

# minor NAME CODE REGEX: $W/NAME.error is a minor Error CODE whose message matches REGEX.
minor() {
	local txt
	txt=$(dec Error "$W/$1.error")
	grep -qx "code: $2" <<<"$txt" || fail "case $1: expected Error code $2, got: $txt"
	! grep -qx 'severe: true' <<<"$txt" || fail "case $1: Error is severe: $txt"
	grep -Eq -- "$3" <<<"$txt" || fail "case $1: message does not match '$3': $txt"
}

FREP_TEST_FRAME_MS=1500 start_server --heartbeat-timeout 2

# 1. spec: HB-3. A master that stops reading: the mirror's answers fill the
# socket buffers and its send waits. It gives up after its heartbeat timeout,
# names the master, and resets the link, which ends the peer's flood.
hello stuck
enc Heartbeat "$W/hb.bin" <<<'seq: 1 txid: 0'
peer stuck <<'EOF'
send HELLO hello-stuck.bin
expect WELCOME
flood HEARTBEAT hb.bin
EOF
grep -Eq '^flood [0-9]+ frames$' "$W/stuck.out" || fail "stuck: flood did not end with the server's reset: $(cat "$W/stuck.out")"
wait_log "$SERVER_LOG" 'WARN volume=stuck master master-1 \(127\.0\.0\.1:[0-9]+\) read nothing for 2000 ms \(--heartbeat-timeout\) while the mirror was sending HEARTBEAT: closing' 5
released stuck

# 2. spec: FRAME-11. A header dribbled in a byte per 300 ms overruns the 1.5 s
# bound from its first byte: the server closes (a link failure, no Error) before
# the header is whole. The same bound leaves a frame that arrives in time alone.
peer trickle <<'EOF'
trickle 300 46524550 01 01 0000 00000010 00000000
expect-close
EOF
sent=$(sed -n 's/^trickle \([0-9]*\) of 16 bytes$/\1/p' "$W/trickle.out")
[ -n "$sent" ] && [ "$sent" -lt 16 ] || fail "trickle: the server waited for the whole header: $(cat "$W/trickle.out")"
wait_log "$SERVER_LOG" 'WARN volume=- master 127\.0\.0\.1:[0-9]+: frame header not completed within 1500 ms of its first byte \(FRAME-11\)' 5
hello slow
hex=$(printf '46524550 01 01 0000 %08x 00000000 ' "$(stat -c %s "$W/hello-slow.bin")"; xxd -p "$W/hello-slow.bin" | tr -d '\n')
peer slow <<EOF
trickle 5 $hex
expect WELCOME
send GOODBYE bye.bin
expect-close
EOF
grep -Eq '^trickle ([0-9]+) of \1 bytes$' "$W/slow.out" || fail "slow: $(cat "$W/slow.out")"

# 3. spec: HS-2, MSG-4. Names that would land on the server's own files, and a
# name with a NUL that protobuf-c would cut to its prefix, are severe PROTOCOL
# errors; nothing is created and the data dir stays locked by the server.
hello .lock
refused dotlock 1 '^volume name \\"\.lock\\" is invalid: use 1-64 of \[A-Za-z0-9\._-\], not starting with' <<<'send HELLO hello-.lock.bin'
hello .hidden
refused dothidden 1 'volume name \\"\.hidden\\" is invalid' <<<'send HELLO hello-.hidden.bin'
hello 'nul\000x' 1 "$UUID" 1 hello-nul.bin
refused nul 1 '^malformed HELLO body: string field volume holds a NUL byte \(MSG-4\)$' <<<'send HELLO hello-nul.bin'
[ ! -e "$T/mirror/.hidden" ] && [ ! -e "$T/mirror/nul" ] || fail "a refused name left a directory: $(ls -a "$T/mirror")"
[ -f "$T/mirror/.lock" ] && ! flock -n "$T/mirror/.lock" true || fail "the data dir lock is no longer the server's"

# 4. A volume whose metadata cannot be read (a file where its directory should
# be) is the minor IO; the leak this once cost is caught at the sanitizer exit below.
: >"$T/mirror/notadir"
hello notadir
{ echo 'send HELLO hello-notadir.bin'; printf 'expect ERROR notadir.error\nexpect-close\n'; } | peer notadir
minor notadir 11 "notadir/meta: Not a directory"

# 5. spec: COPY-4, SEQ-2, MP-1, Limits. TXIDs a journal cannot hold are PROTOCOL,
# not the minor IO a master would retry for ever; sizes that overflow are named so.
enc StartCopy "$W/scmax.bin" <<<"kind: PHASE_REPLICATE base_txid: 18446744073709551615 total_bytes: $EXT"
{ ready bigbase; echo 'send START_COPY scmax.bin'; } |
	refused bigbase 1 '^START_COPY base TXID 18446744073709551615 is out of range: TXIDs stay below 2\^62$'
enc StartCopy "$W/sc62.bin" <<<"kind: PHASE_REPLICATE base_txid: 4611686018427387903 total_bytes: $EXT"
{ ready base62; echo 'send START_COPY sc62.bin'; } |
	refused base62 1 '^START_COPY base TXID 4611686018427387903 is out of range'
enc Tx "$W/txbig.bin" <<<'generation: 1 txid: 4611686018427387904 op: TX_ZERO offset: 0 length: 4096 data_crc: 0'
{ insync bigtx; echo 'send TX txbig.bin'; } |
	refused bigtx 1 '^TX 4611686018427387904 is out of range: TXIDs stay below 2\^62$'
enc ExtentTable "$W/ext-overflow.bin" <<<'extent_size: 9223372036854775808 extent_size: 9223372036854775808'
hello overflow
refused overflow 7 '^extent table malformed: the sizes overflow 64 bits at extent 1 ' <<'EOF'
send HELLO hello-overflow.bin
expect WELCOME
send EXTENT_TABLE ext-overflow.bin
EOF

stop_server_clean

# 6. A master that stops reading while the mirror has the default, long heartbeat
# timeout (30 s): SIGTERM still ends frep-server within its 10 s, exit 0. The
# server cuts the sessions still blocked on their peer halfway through its wait.
: >"$SERVER_LOG"
start_server
hello stuck2
(cd "$W" && timeout 30 "$BIN/frep-conform" peer --connect "127.0.0.1:$SERVER_PORT" \
	--server-name frep-mirror --cert "$PKI/master-1.crt" --key "$PKI/master-1.key" \
	--ca "$PKI/ca.crt" --timeout 10 >"$W/stuck2.out" 2>"$T/peer-stuck2.log" <<'EOF'
send HELLO hello-stuck2.bin
expect WELCOME
flood HEARTBEAT hb.bin
EOF
) &
FLOOD_PID=$!
PIDS+=("$FLOOD_PID")
wait_log "$SERVER_LOG" 'volume=stuck2 master master-1 .* connected' 10
# The mirror's echoes fill the peer's receive buffer, then the mirror's send
# queue: /proc/net/tcp shows bytes queued on the mirror's side of the connection
# that stay there, i.e. its send is blocked.
send_queue() { # bytes queued for sending on the established sockets of local port $1
	local hexport q=0
	hexport=$(printf '%04X' "$1")
	while read -r _ local _ st queues _; do
		[ "${local##*:}" = "$hexport" ] && [ "$st" = 01 ] && q=$((q + 16#${queues%%:*}))
	done < <(tail -n +2 /proc/net/tcp)
	echo "$q"
}
# Blocked: bytes queued, and not one more for half a second (a sender still
# sending would queue more: the flood asks for an echo every few microseconds).
send_blocked() {
	local a b
	a=$(send_queue "$SERVER_PORT")
	sleep 0.5
	b=$(send_queue "$SERVER_PORT")
	[ "$a" -gt 0 ] && [ "$b" -eq "$a" ]
}
wait_for 20 "the mirror's send to block on the stuck peer" send_blocked
stop "$SERVER_PID"
grep -q 'shutting down: cutting 1 session(s) still blocked on their peer' "$SERVER_LOG" ||
	fail "SIGTERM did not cut the blocked session: $(tail -n 5 "$SERVER_LOG")"
wait "$FLOOD_PID" || true
pass "stuck reader closed after the heartbeat timeout (and cut by SIGTERM within 10 s with a long one), trickled frame cut at its bound, dot and NUL names refused, no leak on a failed open, out-of-range TXIDs and overflowing extents answered PROTOCOL/BAD_EXTENTS; clean SIGTERM"
