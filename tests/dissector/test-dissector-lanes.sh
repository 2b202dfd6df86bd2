#!/usr/bin/env bash
# Scripted version-2 sessions over real TLS on loopback (tests/dissector/v2-pair.py
# plays master and mirror): a session of three lanes with zstd, as spec "Lanes" has it
# (frep-server grants one lane so far), and sessions that break version 2's rules of
# lanes (LANE-1..7), negotiation (NEG-3), framing (FRAME-3, FRAME-5) and compression
# (COMP-1, COMP-3, COMP-4). Decoded: every frame of every lane has its session and
# lane and links to the HELLO of lane 0 that opened the session, which links to the
# lanes that joined; copy records of joining lanes are acknowledged by lane 0's
# COPY_ACKs; each compressed trailer decompresses to what was sent; each broken rule
# is flagged on the frame that breaks it, and nothing else is; frepcap.py's checks hold.
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/ws.sh"
certs master-1
command -v protoc >/dev/null || fail "protoc (protobuf-compiler) is not installed"

mkdir -p "$T/py"
protoc --python_out="$T/py" -I "$FREP_SRC/proto" frep/v1/frep.proto 2>"$T/protoc.log" ||
	fail "protoc --python_out: $(cat "$T/protoc.log")"
/usr/bin/python3 "$FREP_SRC/tests/dissector/v2-pair.py" "$PKI" "$WS/keys" "$T/py" "$T/port" \
	"$T/go" >"$T/manifest.json" 2>"$T/pair.log" &
PAIR_PID=$!
PIDS+=("$PAIR_PID")
wait_for 10 "the port of v2-pair.py" test -s "$T/port"
SERVER_PORT=$(cat "$T/port")
capture_start lanes.pcap
touch "$T/go"
wait "$PAIR_PID" || fail "v2-pair.py: $(cat "$T/pair.log")"
capture_stop

# Links forward (lane_in, ack_in) in two passes.
ws_filters \
	_ws.malformed 0 \
	'frep.session == 40:41:42:43:44:45:46:47:48:49:4a:4b:4c:4d:4e:4f' + \
	'frep.hdr.type == 1 && frep.lane == 0 && frep.session.lane_in' 2 \
	'frep.lane > 0 && frep.hdr.type == 7 && frep.ack_in' +

/usr/bin/python3 - "$T" "$FREP_SRC/tests/dissector" >"$T/check.out" 2>&1 <<'PY' || fail "$(cat "$T/check.out")"
import hashlib
import json
import sys
sys.path.insert(0, sys.argv[2])
from frepcap import load_checked, val, num, has, NAMES

T = sys.argv[1]
frames, problems = load_checked(T)
sent = json.load(open(T + "/manifest.json"))
if [f["type"] for f in frames] != [s["type"] for s in sent]:
	print("frames %s\nsent %s" % ([NAMES[f["type"]] for f in frames], [NAMES[s["type"]] for s in sent]))
	sys.exit(1)
# Expert info of frep's that the sessions may show: what the scripts break, and
# what a TX on a joining lane brings (no TX_ACK).
EXPERT = ("frep.hdr.", "frep.body.", "frep.limit.", "frep.trailer.crc_bad", "frep.trailer.length_bad",
	  "frep.trailer.decompress_failed", "frep.trailer.not_decompressed", "frep.seq.", "frep.lane.",
	  "frep.session.reused", "frep.neg.", "frep.peer_error.")
FIELDS = ("frep.hdr.type", "frep.hdr.version", "frep.hdr.flags", "frep.hdr.body_len", "frep.hdr.trailer_len",
	  "frep.hdr.magic", "frep.hdr.flags.compressed", "frep.hdr.flags.reserved")
first = {}	# conn -> its HELLO's packet
for f, s in zip(frames, sent):
	where = "packet %d %s on %s" % (f["packet"], NAMES[f["type"]], s["conn"])
	experts = sorted(k for k in f["f"] if k.startswith(EXPERT) and k not in FIELDS)
	if experts != s["expert"]:
		problems.append("%s: expert info %s, expected %s" % (where, experts, s["expert"]))
	msgs = " | ".join(f["f"].get("_ws.expert.message", []))
	for t in s["text"]:
		if t not in msgs:
			problems.append("%s: no expert message saying '%s': %s" % (where, t, msgs))
	first.setdefault(s["conn"], f["packet"])
	session = s["conn"][0] + "0"
	if num(f, "frep.lane") != s["lane"]:
		problems.append("%s: lane %s, sent on lane %d" % (where, val(f, "frep.lane"), s["lane"]))
	opened = None if f["packet"] == first[session] else first[session]
	if num(f, "frep.session.opened_in") != opened:
		problems.append("%s: session opened in %s, expected %s" % (where, val(f, "frep.session.opened_in"), opened))
	if has(f, "frep.trailer.data") and "data" in s and \
			hashlib.sha256(bytes.fromhex(val(f, "frep.trailer.data").replace(":", ""))).hexdigest() != s["data"]:
		problems.append("%s: decompressed data differ from what was sent" % where)
# One session_id for A's three lanes (and D's, which reuses it), another for each other.
ids = {}
for f, s in zip(frames, sent):
	ids.setdefault(s["conn"][0], set()).add(val(f, "frep.session"))
if ids["A"] != ids["D"] or any(len(v) != 1 for v in ids.values()) or len({min(v) for v in ids.values()}) != len(ids) - 1:
	problems.append("session ids by session %s" % ids)
# Lane 0's HELLO links to the two lanes that joined; their records are acknowledged on lane 0.
if sorted(int(x) for x in frames[0]["f"].get("frep.session.lane_in", [])) != [first["A1"], first["A2"]]:
	problems.append("lane 0's HELLO links to %s, lanes joined in %s, %s" %
			(frames[0]["f"].get("frep.session.lane_in"), first["A1"], first["A2"]))
acked = [s["conn"] for f, s in zip(frames, sent) if f["type"] in (7, 8) and s["conn"][0] == "A" and
	 has(f, "frep.ack_in")]
decompressed = len([f for f in frames if has(f, "frep.trailer.data")])
if sorted(acked) != ["A0", "A1", "A1", "A2", "A2"]:
	problems.append("copy records of A acknowledged: %s" % acked)
if problems:
	print("\n".join(problems))
	sys.exit(1)
print("%d frames on %d lanes: sessions, lanes and links right, %d copy records of session A "
      "acknowledged across lanes, %d trailers decompressed as sent, %d broken rules flagged" %
      (len(frames), len(first), len(acked), decompressed, sum(len(s["expert"]) for s in sent)))
PY
pass "$(cat "$T/check.out")"
