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

# ws_decode_all: the capture decoded in one pass ($T/one.json) and in two
# ($T/two.json), the frame, tcp, tls and frep layers of every TLS packet, and its
# statistics ($T/stats.txt): what tests/dissector/frepcap.py reads.
ws_decode_all() {
	ws_decode -Y tls -T json --no-duplicate-keys -J 'frame tcp tls frep' >"$T/one.json" \
		2>"$T/one.err" || fail "tshark (one pass): $(cat "$T/one.err")"
	ws_decode -2 -Y tls -T json --no-duplicate-keys -J 'frame tcp tls frep' >"$T/two.json" \
		2>"$T/two.err" || fail "tshark -2: $(cat "$T/two.err")"
	ws_decode -q -z frep,tree >"$T/stats.txt" 2>"$T/stats.err" ||
		fail "tshark -z frep,tree: $(cat "$T/stats.err")"
}

# ws_has FILTER: the capture, even one tcpdump is still writing, holds a frame that
# the display FILTER selects (in one pass).
ws_has() {
	[ -n "$(ws_decode -Y "$1" 2>/dev/null)" ]
}

# ws_counts FILTER...: how many packets each display FILTER selects, one line each,
# all from one decode in two passes, so that filters see links to later frames too
# (tshark -z io,stat; a FILTER holds no comma).
ws_counts() {
	local IFS=,
	ws_decode -2 -q -z "io,stat,0,$*" 2>"$T/counts.err" >"$T/counts.txt" ||
		fail "tshark -z io,stat: $(cat "$T/counts.err")"
	awk -F'|' '/<>/ { for (i = 3; i < NF; i += 2) print $i + 0 }' "$T/counts.txt"
}
