#!/usr/bin/env bash
# A real session captured on loopback and decoded by the plugin three ways (ALPN
# frep/1, the TLS port preference, the frame-magic heuristic): every way finds the
# same frep frames, none malformed, and the TX frames equal frep-client's --trace-tx.
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/ws.sh"
certs master-1

mkvol "$T/e0" 8M
fill "$T/e0" 0 4 seed
start_server
# -U: each packet reaches the file as it is captured, so stopping loses none.
tcpdump -i lo -U -Z root -B 16384 -w "$WS/frep.pcap" "tcp port $SERVER_PORT" \
	>"$T/tcpdump.log" 2>&1 &
TCPDUMP_PID=$!
PIDS+=("$TCPDUMP_PID")
wait_log "$T/tcpdump.log" 'listening on lo' 10
start_client vol1 "$T/e0" master-1 --keylog "$WS/keys" --trace-tx "$T/trace"
wait_log "$T/client-vol1.log" 'state REPLICATE -> INSYNC' 30
/usr/bin/python3 "$FREP_SRC/tests/tools/frep-write.py" --uri "$(nbd_uri vol1)" --seed dissect \
	--count 24 --ops write,trim,zero --max-len 65536 >"$T/writer.log" 2>&1 ||
	fail "frep-write.py: $(cat "$T/writer.log")"
wait_converged "$T/e0" "$(mirror_extents vol1 1)" 30
stop "$CLIENT_PID"
stop "$SERVER_PID"
stop "$TCPDUMP_PID"
chmod a+r "$WS/frep.pcap" "$WS/keys"

# decode NAME TSHARK_OPTIONS...: one line per frep frame, "type|info-relevant fields".
decode() {
	local name=$1
	shift
	ws_tshark -r "$WS/frep.pcap" -o "tls.keylog_file:$WS/keys" "$@" -Y frep \
		-T fields -E occurrence=a -e frame.number -e frep.hdr.type >"$T/$name.frames" \
		2>"$T/$name.err" || fail "tshark ($name): $(cat "$T/$name.err")"
}
decode alpn --disable-heuristic frep_tls
decode port -o frep.alpn:FALSE -o "frep.tls.port:$SERVER_PORT" --disable-heuristic frep_tls
decode heuristic -o frep.alpn:FALSE -o frep.tls.port:0
decode none -o frep.alpn:FALSE -o frep.tls.port:0 --disable-heuristic frep_tls
[ -s "$T/alpn.frames" ] || fail "no frep frame found through ALPN frep/1"
[ ! -s "$T/none.frames" ] || fail "frep found with ALPN, port and heuristic all off"
cmp -s "$T/alpn.frames" "$T/port.frames" || fail "the TLS port finds other frames than ALPN"
cmp -s "$T/alpn.frames" "$T/heuristic.frames" || fail "the heuristic finds other frames than ALPN"

# count FILTER: packets the display filter selects (default decoding: ALPN).
count() {
	ws_tshark -r "$WS/frep.pcap" -o "tls.keylog_file:$WS/keys" -Y "$1" 2>/dev/null | wc -l
}
types=$(cut -f2 "$T/alpn.frames" | tr ',' '\n' | sort -n | uniq -c | awk '{printf "%s:%s ", $2, $1}')
for t in 1 2 3 4 5 7 10 11 12 14 19; do
	grep -Eq "(^| )$t:" <<<"$types" || fail "no frame of type $t decoded (types:count $types)"
done
[ "$(count _ws.malformed)" -eq 0 ] || fail "$(count _ws.malformed) malformed packets"
bad='frep.hdr.bad_magic || frep.hdr.bad_version || frep.hdr.unknown_type || frep.hdr.oversized ||
	frep.body.truncated || frep.body.missing || frep.body.wire_type || frep.body.unknown_field ||
	frep.trailer.crc_bad || frep.hdr.trailer_unexpected'
[ "$(count "$bad")" -eq 0 ] || fail "frames with expert errors: $(count "$bad")"

# Reassembly: COPY_DATA trailers are larger than a TLS record (16 KiB) and check out.
big=$(count 'frep.hdr.type == 7 && frep.hdr.trailer_len > 16384 && frep.trailer.crc_status == 1')
[ "$big" -gt 0 ] || fail "no COPY_DATA frame over 16 KiB reassembled with a good CRC32C"

# TX frames: txid, op, offset, length and CRC32C equal the master's trace, in order.
ws_tshark -r "$WS/frep.pcap" -o "tls.keylog_file:$WS/keys" -Y frep.tx.txid -T fields \
	-E occurrence=a -e frep.tx.generation -e frep.tx.txid -e frep.tx.op -e frep.tx.offset \
	-e frep.tx.length -e frep.tx.data_crc 2>/dev/null >"$T/tx.fields"
/usr/bin/python3 - "$T/tx.fields" "$T/trace" >"$T/tx.cmp" <<'PY' || fail "$(cat "$T/tx.cmp")"
import sys
ops = {"write": 1, "trim": 2, "zero": 3}
seen = []
for line in open(sys.argv[1]):
	cols = [c.split(",") for c in line.rstrip("\n").split("\t")]
	seen += zip(*cols)
seen = [(int(g), int(t), int(o), int(f), int(n), int(c, 16)) for g, t, o, f, n, c in seen]
want = []
for line in open(sys.argv[2]):
	kv = dict(w.split("=") for w in line.split())
	want.append((int(kv["gen"]), int(kv["txid"]), ops[kv["op"]], int(kv["off"]), int(kv["len"]),
		     int(kv["crc"], 16)))
if not want or seen != want:
	print("TX frames %s\n!= --trace-tx %s" % (seen, want))
	sys.exit(1)
print(len(want), "TX frames equal the trace")
PY

# Display filters select the right frames, and the Info column says what they hold.
read -r gen txid op off len crc < <(sed -En '/op=write/{s/[a-z]+=//g;p;q}' "$T/trace")
info=$(ws_tshark -r "$WS/frep.pcap" -o "tls.keylog_file:$WS/keys" -Y "frep.tx.txid == $txid" \
	-T fields -e _ws.col.Info 2>/dev/null)
grep -q "TX txid=$txid off=$off len=$len" <<<"$info" || fail "Info of TX $txid: '$info'"
[ "$(count "frep.tx.txid == $txid")" -eq 1 ] || fail "frep.tx.txid == $txid selects $(count "frep.tx.txid == $txid") packets"
[ "$(count 'frep.hello.volume == "vol1"')" -eq 1 ] || fail "frep.hello.volume selects no single HELLO"
n_tx=$(wc -l <"$T/trace")
[ "$(ws_tshark -r "$WS/frep.pcap" -o "tls.keylog_file:$WS/keys" -Y 'frep.hdr.type == 11' -T fields \
	-E occurrence=a -e frep.hdr.type 2>/dev/null | tr ',\n' '\n\n' | grep -c '^11$')" -eq "$n_tx" ] ||
	fail "frep.hdr.type == 11 does not select the $n_tx TX frames"
ws_tshark -r "$WS/frep.pcap" -o "tls.keylog_file:$WS/keys" -Y frep -T fields -e _ws.col.Info \
	2>/dev/null >"$T/info"
grep -Eq 'TX_ACK through=[0-9]+' "$T/info" || fail "no 'TX_ACK through=' in the Info column"
grep -Eq 'HELLO volume=vol1 master=' "$T/info" || fail "no 'HELLO volume=vol1' in the Info column"

# Mutated captures (editcap -E, seeded): damaged bytes never crash tshark nor
# trip a dissector assertion. ChaCha20 is a stream cipher: with the MAC check
# off (tls.ignore_ssl_mac_failed) a damaged ciphertext byte is the same damaged
# byte of frep, so the damage reaches the dissector, which must still show
# frep frames. Each decode is bounded; a crash is a signal, a hang the timeout.
for seed in 1 2 3 4 5 6; do
	editcap -E 0.0001 --seed "$seed" "$WS/frep.pcap" "$WS/mutated.pcap" >/dev/null 2>&1 ||
		fail "editcap -E --seed $seed failed"
	chmod a+r "$WS/mutated.pcap"
	rc=0
	timeout 30 setpriv --reuid=nobody --regid=nogroup --clear-groups \
		env -i PATH=/usr/bin:/bin HOME="$WS/home" tshark -r "$WS/mutated.pcap" \
		-o "tls.keylog_file:$WS/keys" -o tls.ignore_ssl_mac_failed:TRUE -V \
		>"$T/mutated.txt" 2>&1 || rc=$?
	[ "$rc" -lt 124 ] || fail "tshark on a capture mutated with seed $seed: exit $rc (crash or hang)"
	! grep -qi 'dissector bug' "$T/mutated.txt" ||
		fail "seed $seed: $(grep -i -m1 'dissector bug' "$T/mutated.txt")"
	grep -q '^frep block replication protocol' "$T/mutated.txt" ||
		fail "seed $seed: no frep frame decoded, so the damage never reached the dissector"
done
pass "$(cat "$T/tx.cmp"); frames by type:count $types; found alike by ALPN, port and heuristic; 6 mutated captures decoded without a crash"
