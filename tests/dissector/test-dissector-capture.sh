#!/usr/bin/env bash
# A real session of frep-client with frep-server, captured on loopback: the copy of
# a volume with holes, INSYNC writes, a goodbye. Decoded by the plugin three ways
# (ALPN frep/1, the TLS port preference, the frame-magic heuristic), every way finds
# the same frep frames with the same Info lines; every decrypted byte is in a frep
# frame, none malformed; the TX frames equal frep-client's --trace-tx; every TX and
# copy record is linked to its acknowledgement; display filters select the right
# packets. (Heartbeats, pause, resume and restart: test-dissector-life.sh; RESEND,
# ERROR, limits and mutated captures: test-dissector-peer.sh.)
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/ws.sh"
certs master-1

# Data at 0-1 MiB and 2-3 MiB of 4 MiB: the copy sends two holes.
mkvol "$T/e0" 4M
fill "$T/e0" 0 1 seed
fill "$T/e0" 2 1 seed2
start_server
capture_start frep.pcap
start_client vol1 "$T/e0" master-1 --keylog "$WS/keys" --trace-tx "$T/trace"
wait_status vol1 state INSYNC 30
write_tx vol1 0 24
wait_converged "$T/e0" "$(mirror_extents vol1 1)" 30
wait_status vol1 lag_tx 0 10
stop "$CLIENT_PID"
stop "$SERVER_PID"
capture_stop

# decode NAME TSHARK_OPTIONS...: the packet number, frep types and Info column of
# each packet with frep frames.
decode() {
	local name=$1
	shift
	ws_decode "$@" -Y frep -T fields -E occurrence=a -e frame.number -e frep.hdr.type \
		-e _ws.col.Info >"$T/$name.frames" 2>"$T/$name.err" ||
		fail "tshark ($name): $(cat "$T/$name.err")"
}
decode alpn --disable-heuristic frep_tls
decode port -o frep.alpn:FALSE -o "frep.tls.port:$SERVER_PORT" --disable-heuristic frep_tls
decode heuristic -o frep.alpn:FALSE -o frep.tls.port:0
decode none -o frep.alpn:FALSE -o frep.tls.port:0 --disable-heuristic frep_tls
[ -s "$T/alpn.frames" ] || fail "no frep frame found through ALPN frep/1"
[ ! -s "$T/none.frames" ] || fail "frep found with ALPN, port and heuristic all off"
cmp -s "$T/alpn.frames" "$T/port.frames" || fail "the TLS port finds other frames than ALPN"
cmp -s "$T/alpn.frames" "$T/heuristic.frames" || fail "the heuristic finds other frames than ALPN"
types=$(cut -f2 "$T/alpn.frames" | tr ',' '\n' | sort -n | uniq -c | awk '{printf "%s:%s ", $2, $1}')
for t in 1 2 3 4 5 7 8 9 10 11 12 14 19; do
	grep -Eq "(^| )$t:" <<<"$types" || fail "no frame of type $t decoded (types:count $types)"
done

# The Info column says what the frames hold.
read -r _ txid _ off len _ < <(sed -En '/op=write/{s/[a-z]+=//g;p;q}' "$T/trace")
for line in "TX txid=$txid off=$off len=$len" 'TX_ACK through=[0-9]+' 'HELLO volume=vol1 master=' \
	'COPY_HOLE off=[0-9]+ len=[0-9]+' 'GOODBYE "master shutting down"'; do
	grep -Eq "$line" "$T/alpn.frames" || fail "no '$line' in the Info column"
done

# Display filters, in two passes: links to later frames count too.
ws_filters \
	_ws.malformed 0 \
	"$WS_BAD_EXPERT" 0 \
	"frep.hdr.type == 7 && frep.hdr.trailer_len > 16384 && frep.trailer.crc_status == 1" + \
	"frep.tx.txid == $txid" 1 \
	'frep.hello.volume == "vol1"' 1 \
	"frep.hdr.type == 11 && !frep.ack_in" 0 \
	"frep.hdr.type == 11 && frep.ack_time >= 0" + \
	"frep.hdr.type == 12 && frep.acks >= 1 && frep.ack_to" + \
	"(frep.hdr.type == 7 || frep.hdr.type == 8) && !frep.ack_in" 0 \
	"frep.hdr.type == 9 && frep.acks >= 1 && frep.ack_to" +

# frepcap.py's checks (every decrypted byte decoded, links by definition, one pass
# against two, statistics), and the TX frames against --trace-tx.
/usr/bin/python3 - "$T" "$FREP_SRC/tests/dissector" >"$T/check.out" 2>&1 <<'PY' || fail "$(cat "$T/check.out")"
import sys
sys.path.insert(0, sys.argv[2])
from frepcap import load_checked, val, num, has, NAMES

frames, problems = load_checked(sys.argv[1])
by_type = lambda t: [f for f in frames if f["type"] == t]
ops = {"write": 1, "trim": 2, "zero": 3}
trace = [dict(w.split("=") for w in line.split()) for line in open(sys.argv[1] + "/trace")]
want = [(int(t["gen"]), int(t["txid"]), ops[t["op"]], int(t["off"]), int(t["len"]), int(t["crc"], 16))
	for t in trace]
seen = [(num(f, "frep.tx.generation"), num(f, "frep.tx.txid"), num(f, "frep.tx.op"),
	 num(f, "frep.tx.offset"), num(f, "frep.tx.length"), int(val(f, "frep.tx.data_crc"), 16))
	for f in by_type(11)]
if not want or seen != want:
	problems.append("TX frames %s\n!= --trace-tx %s" % (seen, want))
for name, n, ok in (("COPY_DATA", len(by_type(7)), 2), ("COPY_HOLE", len(by_type(8)), 2),
		    ("GOODBYE", len(by_type(19)), 1)):
	if n != ok:
		problems.append("%d %s, expected %d" % (n, name, ok))
if problems:
	print("\n".join(problems))
	sys.exit(1)
print("%d TX frames equal the trace and are acknowledged, as are %d copy records" %
      (len(want), len(by_type(7) + by_type(8))))
PY
pass "$(cat "$T/check.out"); frames by type:count $types; found alike by ALPN, port and heuristic"
