# Dissector tests: tshark with the plugin under test. Source after tests/e2e/lib.sh.
#
# tshark run as root ignores personal plugins and WIRESHARK_PLUGIN_DIR, so it
# runs as nobody with a private HOME whose personal plugin folder holds the
# plugin just built ($FREP_DISSECTOR). Files it reads go in $WS.
: "${FREP_DISSECTOR:=$FREP_BUILD/dissector/frep.so}"
[ -f "$FREP_DISSECTOR" ] || fail "no plugin at $FREP_DISSECTOR: build the frep-dissector target"
WS=$T/ws
WS_PLUGINS=$WS/home/.local/lib/wireshark/plugins/$(tshark -v 2>/dev/null |
	sed -En '1s/.* ([0-9]+\.[0-9]+)\.[0-9]+.*/\1/p')/epan
mkdir -p "$WS_PLUGINS"
cp "$FREP_DISSECTOR" "$WS_PLUGINS/frep.so"
chmod 711 "$T"
chmod -R a+rX "$WS"

# ws_tshark ARGS...: tshark as nobody with the plugin; reads files in $WS only.
ws_tshark() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups \
		env -i PATH=/usr/bin:/bin HOME="$WS/home" tshark "$@"
}

# capture_start FILE: tcpdump of the server's port on lo into $WS/FILE (start_server
# first). -U: each packet reaches the file as it is captured.
capture_start() {
	CAPTURE=$WS/$1
	tcpdump -i lo -U -Z root -B 16384 -w "$CAPTURE" "tcp port $SERVER_PORT" \
		>"$T/tcpdump.log" 2>&1 &
	TCPDUMP_PID=$!
	PIDS+=("$TCPDUMP_PID")
	wait_log "$T/tcpdump.log" 'listening on lo' 10
}

# capture_stop: stops tcpdump without losing the end of the session. Stopped, it
# drops what the kernel holds for it but it has not written yet; so, once the
# daemons are gone (the port closed), one refused connection is the capture's
# last packet, and when its RST is in the file everything before it is too.
capture_stop() {
	local port
	port=$(/usr/bin/python3 - "$SERVER_PORT" <<'PY'
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.connect_ex(("127.0.0.1", int(sys.argv[1])))
PY
	)
	wait_for 10 "the end marker in the capture" captured \
		"tcp src port $SERVER_PORT and dst port $port and tcp[tcpflags] & tcp-rst != 0"
	stop "$TCPDUMP_PID"
	chmod a+r "$CAPTURE" "$WS/keys"
}

# captured FILTER: the capture holds a packet that the tcpdump FILTER selects.
captured() {
	[ -n "$(tcpdump -r "$CAPTURE" -n "$1" 2>/dev/null)" ]
}

# ws_decode ARGS...: tshark with the plugin on the capture, its key log given.
ws_decode() {
	ws_tshark -r "$CAPTURE" -o "tls.keylog_file:$WS/keys" "$@"
}

# ws_decode_all [FILTER...]: the capture decoded in one pass ($T/one.json) and in
# two ($T/two.json), the frame, tcp, tls and frep layers of every TLS packet, which
# tests/dissector/frepcap.py reads; with the one pass, the statistics of tshark -z
# frep,tree ($T/stats.txt); with the two, how many packets each display FILTER
# selects ($T/counts.txt, for ws_filters; a FILTER holds no comma). tshark prints
# the statistics after the JSON array: each run is split at the array's end, and
# costs one tshark start, the bulk of a small capture's decode.
ws_decode_all() {
	local pass out counts=()
	[ $# -eq 0 ] || counts=(-z "io,stat,0,$(IFS=,; echo "$*")")
	for pass in one two; do
		out=$T/$pass.out
		if [ $pass = one ]; then
			ws_decode -Y tls -T json --no-duplicate-keys -J 'frame tcp tls frep' -z frep,tree
		else
			ws_decode -2 -Y tls -T json --no-duplicate-keys -J 'frame tcp tls frep' \
				"${counts[@]}"
		fi >"$out" 2>"$T/$pass.err" || fail "tshark ($pass pass): $(cat "$T/$pass.err")"
		awk -v json="$T/$pass.json" -v rest="$T/$pass.rest" \
			'done { print >rest; next } { print >json } /^]$/ { done = 1 }' "$out"
		rm "$out"
	done
	[ -s "$T/one.rest" ] || fail "tshark printed no -z frep,tree statistics"
	mv "$T/one.rest" "$T/stats.txt"
	mv "$T/two.rest" "$T/counts.txt" 2>/dev/null || : >"$T/counts.txt"
}

# ws_has FILTER: the capture, even one tcpdump is still writing, holds a frame that
# the display FILTER selects (in one pass).
ws_has() {
	[ -n "$(ws_decode -Y "$1" 2>/dev/null)" ]
}

# Expert info of frep that a session of frep's own daemons never has (a display filter).
WS_BAD_EXPERT='frep.hdr.bad_magic || frep.hdr.bad_version || frep.hdr.version_mismatch ||
	frep.hdr.unknown_type || frep.hdr.flags_set || frep.hdr.compressed_unexpected ||
	frep.hdr.oversized || frep.body.truncated || frep.body.missing || frep.body.wire_type ||
	frep.body.unknown_field || frep.trailer.crc_bad || frep.hdr.trailer_unexpected ||
	frep.trailer.length_bad || frep.trailer.decompress_failed || frep.trailer.not_decompressed ||
	frep.body.inconsistent || frep.limit.exceeded || frep.seq.gap || frep.seq.resent ||
	frep.seq.ack_unsent || frep.peer_error.severe || frep.peer_error.minor ||
	frep.peer_error.severity || frep.session.reused || frep.lane.join_bad ||
	frep.lane.unexpected || frep.lane.no_seq || frep.lane.records || frep.neg.bad_choice'

# write_tx VOLUME FIRST COUNT: requests FIRST.. of a fixed sequence of writes, trims and
# zeroes (up to 32 KiB, over a TLS record) through VOLUME's NBD export.
write_tx() {
	/usr/bin/python3 "$FREP_SRC/tests/tools/frep-write.py" --uri "$(nbd_uri "$1")" --seed dissect \
		--first-index "$2" --count "$3" --ops write,trim,zero --max-len 32768 >"$T/writer.log" 2>&1 ||
		fail "frep-write.py: $(cat "$T/writer.log")"
}

# ws_filters FILTER EXPECTED ...: ws_decode_all, counting the packets each display
# FILTER selects in two passes; each must select EXPECTED (a number, or + for some).
ws_filters() {
	local fs=() want=() counts i
	while [ $# -gt 0 ]; do
		fs+=("$(tr -s '\n\t' '  ' <<<"$1")")
		want+=("$2")
		shift 2
	done
	ws_decode_all "${fs[@]}"
	mapfile -t counts < <(awk -F'|' '/<>/ { for (i = 3; i < NF; i += 2) print $i + 0 }' "$T/counts.txt")
	[ ${#counts[@]} -eq ${#fs[@]} ] || fail "tshark -z io,stat gave ${#counts[@]} counts for ${#fs[@]} filters"
	for i in "${!fs[@]}"; do
		[[ ${want[i]} = + && ${counts[i]} -gt 0 || ${want[i]} = "${counts[i]}" ]] ||
			fail "display filter '${fs[i]}' selects ${counts[i]} packets, expected ${want[i]/+/some}"
	done
}

# ws_mutated SEED...: the capture mutated with editcap -E, once per SEED, and decoded:
# damaged bytes never crash tshark nor trip an assertion of frep's dissector. ChaCha20
# is a stream cipher: with the MAC check off (tls.ignore_ssl_mac_failed) a damaged
# ciphertext byte is the same damaged byte of frep, so the damage reaches the
# dissector, which must still show frep frames. Each decode is bounded; a crash is a
# signal, a hang the timeout. Odd seeds run in two passes: the second pass reads the
# links of damaged frames back.
ws_mutated() {
	local seed rc passes
	for seed in "$@"; do
		editcap -E 0.002 --seed "$seed" "$CAPTURE" "$WS/mutated.pcap" >/dev/null 2>&1 ||
			fail "editcap -E --seed $seed failed"
		chmod a+r "$WS/mutated.pcap"
		passes=()
		[ $((seed % 2)) -eq 0 ] || passes=(-2)
		rc=0
		timeout 30 setpriv --reuid=nobody --regid=nogroup --clear-groups \
			env -i PATH=/usr/bin:/bin HOME="$WS/home" tshark -r "$WS/mutated.pcap" \
			-o "tls.keylog_file:$WS/keys" -o tls.ignore_ssl_mac_failed:TRUE -V "${passes[@]}" \
			>"$T/mutated.txt" 2>&1 || rc=$?
		[ "$rc" -lt 124 ] || fail "tshark on a capture mutated with seed $seed: exit $rc (crash or hang)"
		# Wireshark 4.0's own TLS reassembly asserts on some damaged records
		# (packet-tls.c: failed assertion "fh"), which no frep change can prevent: only
		# frep's assertions fail the test.
		! grep -qi 'dissector bug, protocol frep' "$T/mutated.txt" ||
			fail "seed $seed: $(grep -i -m1 'dissector bug, protocol frep' "$T/mutated.txt")"
		grep -q '^frep block replication protocol' "$T/mutated.txt" ||
			fail "seed $seed: no frep frame decoded, so the damage never reached the dissector"
	done
}
