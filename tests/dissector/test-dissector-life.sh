#!/usr/bin/env bash
# The rest of a master's life with frep-server, captured on loopback: heartbeats
# and their echoes while sequencing and while paused (IDLE-2), a pause and a
# resume, a goodbye, and a restart that resumes sequencing with START_SYNC (a
# second TCP session, with links of its own). Decoded in one pass and in two:
# frepcap.py's checks, the TX frames against --trace-tx, display filters.
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/ws.sh"
certs master-1

mkvol "$T/e0" 4M
fill "$T/e0" 0 1 life
M=$(mirror_extents vol1 1)
start_server
capture_start life.pcap
# Heartbeats every second (min(2 s, timeout / 3), HB-1).
client() {
	start_client vol1 "$T/e0" master-1 --keylog "$WS/keys" --trace-tx "$T/trace" \
		--heartbeat-timeout 3
}
client
wait_status vol1 state INSYNC 30
chmod a+r "$WS/keys"
write_tx vol1 0 4
ctl vol1 pause | grep -q '^ok pausing' || fail "pause refused in INSYNC"
wait_status vol1 state IDLE 10
write_tx vol1 4 2
# An echo after the PAUSE frame, not one from before it (heartbeats run all along).
pause_frame() { ws_decode -Y 'frep.hdr.type == 16' -T fields -e frame.number 2>/dev/null | head -1; }
has_pause() { [ -n "$(pause_frame)" ]; }
wait_for 10 "the PAUSE in the capture" has_pause
P=$(pause_frame)
wait_for 15 "a heartbeat echo after the PAUSE in the capture" \
	ws_has "frep.hdr.type == 15 && frep.hb.echo_to && frame.number > $P"
ctl vol1 resume | grep -q '^ok resuming' || fail "resume refused in IDLE"
wait_status vol1 state INSYNC 10
wait_converged "$T/e0" "$M" 30
wait_status vol1 lag_tx 0 10
# SIGTERM: GOODBYE. Restarted on the same journal, it is known and in sync: START_SYNC.
stop "$CLIENT_PID"
client
wait_status vol1 state INSYNC 30
write_tx vol1 6 2
wait_converged "$T/e0" "$M" 30
wait_status vol1 lag_tx 0 10
stop "$CLIENT_PID"
stop "$SERVER_PID"
capture_stop

ws_filters \
	_ws.malformed 0 \
	"$WS_BAD_EXPERT" 0 \
	"frep.hdr.type == 11 && !frep.ack_in" 0 \
	"frep.hb.echo_in && frep.hb.rtt > 0" + \
	"frep.hb.echo_to && frep.hb.rtt > 0" + \
	"frep.start_sync.from_txid == 6" 1 \
	"frep.hdr.type == 16 || frep.hdr.type == 17" 2 \
	'frep.goodbye.reason == "master shutting down"' 2

/usr/bin/python3 - "$T" "$FREP_SRC/tests/dissector" >"$T/check.out" 2>&1 <<'PY' || fail "$(cat "$T/check.out")"
import sys
sys.path.insert(0, sys.argv[2])
from frepcap import load_checked, val, num, has, NAMES

frames, problems = load_checked(sys.argv[1])
by_type = lambda t: [f for f in frames if f["type"] == t]
trace = [int(dict(w.split("=") for w in line.split())["txid"]) for line in open(sys.argv[1] + "/trace")]
if [num(f, "frep.tx.txid") for f in by_type(11)] != trace or len(trace) != 8:
	problems.append("TXIDs %s, --trace-tx %s" % ([num(f, "frep.tx.txid") for f in by_type(11)], trace))
streams = sorted({f["stream"] for f in frames})
if len(streams) != 2:
	problems.append("%d sessions" % len(streams))
if [f["stream"] for f in by_type(6)] != streams[1:]:
	problems.append("START_SYNC not in the second session")
# Paused, the master still sends heartbeats, and the mirror echoes them.
pause, resume = by_type(16)[0], by_type(17)[0]
idle = [f for f in by_type(15) if pause["packet"] < f["packet"] < resume["packet"] and
	has(f, "frep.hb.echo_in")]
if not idle:
	problems.append("no heartbeat echoed between PAUSE (%d) and RESUME (%d)" % (pause["packet"], resume["packet"]))
if problems:
	print("\n".join(problems))
	sys.exit(1)
print("%d TX frames equal the trace; %d heartbeats echoed, %d while paused; START_SYNC in the second session" %
      (len(trace), len([f for f in by_type(15) if has(f, "frep.hb.echo_in")]), len(idle)))
PY
pass "$(cat "$T/check.out")"
