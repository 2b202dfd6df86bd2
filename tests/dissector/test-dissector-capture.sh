#!/usr/bin/env bash
# A real master's life with frep-server, captured on loopback: the copy of a volume
# with holes, INSYNC writes, heartbeats, a pause and a resume, a goodbye, then a
# restart that resumes sequencing with START_SYNC. Decoded by the plugin three ways
# (ALPN frep/1, the TLS port preference, the frame-magic heuristic), every way finds
# the same frep frames; every decrypted byte is in a frep frame, none malformed; the
# TX frames equal frep-client's --trace-tx; links, statistics and display filters
# are right. (RESEND and ERROR come from a misbehaving master, and mutated captures
# are decoded, in test-dissector-peer.sh.)
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/ws.sh"
certs master-1

# Data at 0-2 MiB and 5-6 MiB of 8 MiB: the copy sends two holes.
mkvol "$T/e0" 8M
fill "$T/e0" 0 2 seed
fill "$T/e0" 5 1 seed5
M=$(mirror_extents vol1 1)
start_server
capture_start frep.pcap
# Heartbeats every second (min(2 s, timeout / 3), HB-1).
client() {
	start_client vol1 "$T/e0" master-1 --keylog "$WS/keys" --trace-tx "$T/trace" \
		--control "unix:$T/vol1.ctl" --heartbeat-timeout 3
}
write() {
	/usr/bin/python3 "$FREP_SRC/tests/tools/frep-write.py" --uri "$(nbd_uri vol1)" --seed dissect \
		--first-index "$1" --count "$2" --ops write,trim,zero --max-len 65536 >"$T/writer.log" 2>&1 ||
		fail "frep-write.py: $(cat "$T/writer.log")"
}
client
wait_status vol1 state INSYNC 30
chmod a+r "$WS/keys"
write 0 16
# Paused, the master goes on with heartbeats (IDLE-2): wait for an echo in the capture.
ctl vol1 pause | grep -q '^ok pausing' || fail "pause refused in INSYNC"
wait_status vol1 state IDLE 10
write 16 4
wait_for 15 "a heartbeat echo in the capture" ws_has 'frep.hdr.type == 15 && frep.hb.echo_to'
ctl vol1 resume | grep -q '^ok resuming' || fail "resume refused in IDLE"
wait_status vol1 state INSYNC 10
wait_converged "$T/e0" "$M" 30
wait_status vol1 lag_tx 0 10
# SIGTERM: GOODBYE. Restarted on the same journal, it is known and in sync: START_SYNC.
stop "$CLIENT_PID"
client
wait_status vol1 state INSYNC 30
write 20 4
wait_converged "$T/e0" "$M" 30
wait_status vol1 lag_tx 0 10
stop "$CLIENT_PID"
stop "$SERVER_PID"
capture_stop

# decode NAME TSHARK_OPTIONS...: the packet numbers and types of the frep frames found.
decode() {
	local name=$1
	shift
	ws_decode "$@" -Y frep -T fields -E occurrence=a -e frame.number -e frep.hdr.type \
		>"$T/$name.frames" 2>"$T/$name.err" || fail "tshark ($name): $(cat "$T/$name.err")"
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
for t in 1 2 3 4 5 6 7 8 9 10 11 12 14 15 16 17 19; do
	grep -Eq "(^| )$t:" <<<"$types" || fail "no frame of type $t decoded (types:count $types)"
done

# Display filters select the right packets (counts from one two-pass decode).
read -r _ txid _ off len _ < <(sed -En '/op=write/{s/[a-z]+=//g;p;q}' "$T/trace")
bad='frep.hdr.bad_magic || frep.hdr.bad_version || frep.hdr.unknown_type || frep.hdr.oversized ||
	frep.body.truncated || frep.body.missing || frep.body.wire_type || frep.body.unknown_field ||
	frep.trailer.crc_bad || frep.hdr.trailer_unexpected || frep.body.inconsistent ||
	frep.limit.exceeded || frep.seq.gap || frep.seq.resent || frep.seq.ack_unsent ||
	frep.peer_error.severe || frep.peer_error.minor || frep.peer_error.severity'
filters=(
	"_ws.malformed" 0
	"$bad" 0
	# Reassembly: COPY_DATA trailers larger than a TLS record (16 KiB) check out.
	"frep.hdr.type == 7 && frep.hdr.trailer_len > 16384 && frep.trailer.crc_status == 1" +
	"frep.tx.txid == $txid" 1
	'frep.hello.volume == "vol1"' 2
	"frep.hdr.type == 11 && !frep.ack_in" 0
	"frep.hdr.type == 11 && frep.ack_time >= 0" +
	"frep.hdr.type == 12 && frep.acks >= 1 && frep.ack_to" +
	"(frep.hdr.type == 7 || frep.hdr.type == 8) && !frep.ack_in" 0
	"frep.hb.echo_in && frep.hb.rtt > 0" +
	"frep.start_sync.from_txid" 1
	"frep.hdr.type == 16 || frep.hdr.type == 17" 2
)
fs=() want=()
for ((i = 0; i < ${#filters[@]}; i += 2)); do
	fs+=("$(tr -s '\n\t' '  ' <<<"${filters[i]}")")
	want+=("${filters[i + 1]}")
done
mapfile -t counts < <(ws_counts "${fs[@]}")
[ ${#counts[@]} -eq ${#fs[@]} ] || fail "tshark -z io,stat gave ${#counts[@]} counts for ${#fs[@]} filters"
for i in "${!fs[@]}"; do
	[[ ${want[i]} = + && ${counts[i]} -gt 0 || ${want[i]} = "${counts[i]}" ]] ||
		fail "display filter '${fs[i]}' selects ${counts[i]} packets, expected ${want[i]/+/some}"
done

# The Info column says what the frames hold.
ws_decode -Y frep -T fields -e _ws.col.Info 2>/dev/null >"$T/info"
for line in "TX txid=$txid off=$off len=$len" 'TX_ACK through=[0-9]+' 'HELLO volume=vol1 master=' \
	'COPY_HOLE off=[0-9]+ len=[0-9]+' 'HEARTBEAT seq=[0-9]+ txid=[0-9]+' 'GOODBYE "master shutting down"'; do
	grep -Eq "$line" "$T/info" || fail "no '$line' in the Info column"
done

# Every decrypted byte in a frep frame, links, statistics (frepcap.check_all), the
# TX frames equal --trace-tx, and what this life must show: every TX and copy record
# acknowledged, heartbeats echoed, two holes, one pause and one resume, the master's
# goodbyes, START_SYNC in the second session.
ws_decode_all
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
for f in by_type(11) + by_type(7) + by_type(8):
	if not has(f, "frep.ack_in"):
		problems.append("packet %d: %s without frep.ack_in" % (f["packet"], NAMES[f["type"]]))
echoes = [f for f in by_type(15) if has(f, "frep.hb.echo_to")]
streams = sorted({f["stream"] for f in frames})
for name, n, ok in (("sessions", len(streams), 2), ("COPY_HOLE", len(by_type(8)), 2),
		    ("PAUSE", len(by_type(16)), 1), ("RESUME", len(by_type(17)), 1),
		    ("START_SYNC", len(by_type(6)), 1), ("START_COPY", len(by_type(5)), 1)):
	if n != ok:
		problems.append("%d %s, expected %d" % (n, name, ok))
if len(echoes) < 1:
	problems.append("no heartbeat echoed")
byes = [val(f, "frep.goodbye.reason") for f in by_type(19)]
if byes.count("master shutting down") != 2:
	problems.append("GOODBYE reasons %s" % byes)
if [f["stream"] for f in by_type(6)] != streams[1:]:
	problems.append("START_SYNC not in the second session")
if problems:
	print("\n".join(problems))
	sys.exit(1)
print("%d TX frames equal the trace; %d TX, %d copy records acknowledged, %d heartbeats echoed" %
      (len(want), len(by_type(11)), len(by_type(7) + by_type(8)), len(echoes)))
PY
pass "$(cat "$T/check.out"); frames by type:count $types; found alike by ALPN, port and heuristic"
