#!/usr/bin/env bash
# A real session of frep-client --lanes 3 --compress zstd with frep-server, captured
# on loopback and decoded: three TLS connections, one session (frep.session), lanes
# 0..2; the joining lanes link to lane 0's HELLO and carry only copy records, each
# with its pass and seq; the copy records are acknowledged across lanes; compressed
# trailers check; no expert error (the LANE-* checks included).
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/ws.sh"
certs master-1

mkvol "$T/v" 24M
fill "$T/v" 0 4 a
(set +o pipefail
find /usr/include -type f -print0 | xargs -0 cat 2>/dev/null | head -c 8M |
	dd of="$T/v" bs=1M seek=8 conv=notrunc status=none)
start_server
capture_start lanes.pcap
start_client v "$T/v" master-1 --keylog "$WS/keys" --compress zstd --lanes 3
wait_status v state INSYNC 30
grep -q "compression zstd, 3 lanes" "$T/client-v.log" ||
	fail "frep-client did not get 3 lanes: $(grep -m1 'connected to mirror' "$T/client-v.log")"
nbdsh -u "$(nbd_uri v)" -c 'h.pwrite(b"after the copy ".ljust(64, b".") * 256, 20 << 20)' ||
	fail "nbdsh could not write"
wait_converged "$T/v" "$(mirror_extents v 1)" 30
wait_status v lag_tx 0 10
stop "$CLIENT_PID"
stop "$SERVER_PID"
capture_stop

ws_filters \
	_ws.malformed 0 \
	"$WS_BAD_EXPERT" 0 \
	"frep && _ws.expert.severity == 8388608" 0 \
	"frep.lane == 1 && frep.hdr.type == 1" 1 \
	"frep.lane == 2 && frep.hdr.type == 1" 1 \
	"frep.lane > 0 && frep.hdr.type == 7" + \
	"frep.lane > 0 && frep.hdr.type != 1 && frep.hdr.type != 2 && frep.hdr.type != 7 && frep.hdr.type != 8 && frep.hdr.type != 18 && frep.hdr.type != 19" 0 \
	"frep.lane > 0 && !frep.session.opened_in" 0 \
	"frep.hdr.type == 7 && !frep.copy_data.seq" 0 \
	"frep.hdr.type == 10 && !frep.copy_done.lane_records" 0 \
	"frep.hdr.flags.compressed == 1 && !(frep.trailer.crc_status == 1)" 0 \
	"frep.hdr.type == 11 && frep.lane != 0" 0

# One session over three TCP streams, and frepcap.py's checks (links, statistics).
/usr/bin/python3 - "$T" "$FREP_SRC/tests/dissector" >"$T/check.out" 2>&1 <<'PY' || fail "$(cat "$T/check.out")"
import sys
sys.path.insert(0, sys.argv[2])
from frepcap import load_checked, val, num

frames, problems = load_checked(sys.argv[1])
sessions = {val(f, "frep.session") for f in frames}
lanes = {num(f, "frep.lane") for f in frames}
if len(sessions) != 1 or lanes != {0, 1, 2}:
	problems.append("sessions %s, lanes %s: expected one session over lanes 0..2" %
			(sorted(sessions), sorted(lanes)))
records = [f for f in frames if f["type"] in (7, 8)]
if not records or any(not num(f, "frep.ack_in") for f in records):
	problems.append("%d copy records, %d without a COPY_ACK link" %
			(len(records), sum(1 for f in records if not num(f, "frep.ack_in"))))
if problems:
	print("\n".join(problems))
	sys.exit(1)
print("one session over lanes 0..2; %d copy records, all acknowledged" % len(records))
PY
pass "$(cat "$T/check.out"); joining lanes carry copy records only, each with pass and seq; no expert error"
