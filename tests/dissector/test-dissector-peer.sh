#!/usr/bin/env bash
# Scripted sessions with frep-server (tests/tools/frep-peer plays the master),
# captured and decoded: every one of the 25 message types, in the order they went;
# a TX past a gap, the RESEND it brings and the TXs resent for it, a duplicate TX,
# a heartbeat and its echo, a VERIFY whose hash matches and one whose does not,
# ERRORs and the values beyond limits that caused them;
# their links, expert info, display filters and statistics (tests/dissector/
# frepcap.py checks what holds for any capture). Then mutated copies of the
# capture are decoded without a crash.
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/ws.sh"
certs master-1
source "$(dirname "$0")/../e2e/peer.sh"

start_server --keylog "$WS/keys"
capture_start peer.pcap
hello pd
enc CopyData "$W/cd0.bin" <<<'offset: 0 data_crc: 0'
enc CopyHole "$W/hole.bin" <<<"offset: 4096 length: $((EXT - 4096))"
enc CopyDone "$W/done.bin" <<<'last_txid: 0 copied_bytes: 4096'
enc Tx "$W/tx1.bin" <<<'generation: 1 txid: 1 op: TX_WRITE offset: 8192 length: 4096 data_crc: 0'
enc Tx "$W/tx2.bin" <<<'generation: 1 txid: 2 op: TX_ZERO offset: 0 length: 4096 data_crc: 0'
enc Tx "$W/tx3.bin" <<<'generation: 1 txid: 3 op: TX_WRITE offset: 12288 length: 4096 data_crc: 0'
enc Tx "$W/tx4.bin" <<<'generation: 1 txid: 4 op: TX_TRIM offset: 16384 length: 4096 data_crc: 0'
enc Tx "$W/tx5.bin" <<<'generation: 1 txid: 5 op: TX_WRITE offset: 20480 length: 4096 data_crc: 0'
enc Heartbeat "$W/hb1.bin" <<<'seq: 1 txid: 3'
enc StartSync "$W/sync4.bin" <<<'from_txid: 4'
: >"$W/empty.bin"
# At TXID 3, [0, 4096) is zeroes (TX 2) and [8192, 12288) TX 1's 'A's: a VERIFY of
# each with the XXH3-128 of 4096 zero bytes (VFY-2; xxhsum -H2 prints the canonical
# form) matches, then mismatches.
zero_hash=$(head -c 4096 /dev/zero | xxhsum -H2 | cut -d' ' -f1 | sed 's/../\\x&/g')
enc Verify "$W/vfy-zero.bin" <<<"verify_id: 1 offset: 0 length: 4096 txid: 3 hash: \"$zero_hash\""
enc Verify "$W/vfy-a.bin" <<<"verify_id: 1 offset: 8192 length: 4096 txid: 3 hash: \"$zero_hash\""
# TX 3 past the gap of 1..2: RESEND 1..2; the master goes back to 1 (go-back-N,
# SEQ-7), in one write, so that the one TX_ACK 3 comes after all of them.
peer replay <<'EOF2'
send HELLO hello-pd.bin
expect WELCOME
send EXTENT_TABLE ext1m.bin
expect PARTS_READY
send START_COPY startrep.bin
send COPY_DATA cd0.bin A crc
send COPY_HOLE hole.bin
send COPY_DONE done.bin
expect COPY_ACK
expect CONSISTENT
send TX tx3.bin C crc
expect RESEND resend.out
cork
send TX tx1.bin A crc
send TX tx2.bin
send TX tx3.bin C crc
uncork
expect TX_ACK
send VERIFY vfy-zero.bin
expect VERIFY_RESULT vfy1.out
send VERIFY vfy-a.bin
expect VERIFY_RESULT vfy2.out
send HEARTBEAT hb1.bin
expect HEARTBEAT
send PAUSE empty.bin
send RESUME empty.bin
send TX tx4.bin
expect TX_ACK
send GOODBYE bye.bin
expect-close
EOF2
body_is replay Resend "$W/resend.out" $'from_txid: 1\nto_txid: 2'
for v in vfy1 vfy2; do
	dec VerifyResult "$W/$v.out" | grep -qx 'status: VERIFY_HASHED' || fail "$v: $(dec VerifyResult "$W/$v.out")"
done
released pd
# Back in sync from TXID 4; RESUME is illegal in INSYNC: ERROR UNEXPECTED.
peer error <<'EOF2'
send HELLO hello-pd.bin
expect WELCOME
send EXTENT_TABLE ext1m.bin
expect PARTS_READY
send START_SYNC sync4.bin
send TX tx5.bin B crc
expect TX_ACK
send RESUME empty.bin
expect ERROR
expect-close
EOF2
# Values the spec forbids, each refused with an ERROR: a 65-byte volume name (HS-2),
# an extent of 5000 bytes (MP-1) with more bytes allocated than that (MP-7), a TX_WRITE whose length is not its data's (SEQ-2).
long=$(printf 'v%.0s' $(seq 65))
hello "$long" 1 "$UUID" 1 hello-long.bin
refused long 1 'volume' <<<'send HELLO hello-long.bin'
enc ExtentTable "$W/ext5000.bin" <<<'extent_size: 5000 allocated_bytes: 8192'
hello pe
refused extents 7 '5000' <<'EOF2'
send HELLO hello-pe.bin
expect WELCOME
send EXTENT_TABLE ext5000.bin
EOF2
enc Tx "$W/txbad.bin" <<<'generation: 1 txid: 1 op: TX_WRITE offset: 0 length: 8192 data_crc: 0'
{ insync pf; echo 'send TX txbad.bin A crc'; } | refused txlen 1 'do not agree'
# Fail-back and switchover: pd never diverged (one empty DIVERGENCE), then it takes over
# at TXID 5 (SWITCHOVER_DONE: epoch 2) and the session ends.
enc DivergenceRequest "$W/divq.bin" <<<'since_txid: 0'
enc StartSync "$W/sync5.bin" <<<'from_txid: 5'
enc Switchover "$W/swo.bin" <<<'txid: 5'
peer switch <<'EOF2'
send HELLO hello-pd.bin
expect WELCOME
send EXTENT_TABLE ext1m.bin
expect PARTS_READY
send DIVERGENCE_REQUEST divq.bin
expect DIVERGENCE div.out
send START_SYNC sync5.bin
send SWITCHOVER swo.bin
expect SWITCHOVER_DONE swo.out
expect-close
EOF2
body_is switch Divergence "$W/div.out" 'last: true'
body_is switch SwitchoverDone "$W/swo.out" $'epoch: 2\ntxid: 5'
stop_server_clean
capture_stop
# Display filters on the links and expert info, in two passes (TX 1, 2 and 3 again
# went in one packet).
ws_filters frep.seq.gap 1 frep.seq.resent 1 frep.seq.resend 1 frep.resent_in 1 \
	frep.resent_for 1 frep.resend_of 1 'frep.acks == 4' 1 'frep.hb.echo_in && frep.hb.rtt' 1 \
	frep.hb.echo_to 1 frep.vfy.result_in 2 frep.vfy.request_in 2 'frep.vfy.match == 1' 1 \
	frep.vfy.mismatch 1 frep.peer_error.severe 4 'frep.limit.exceeded || frep.body.inconsistent' 3 \
	'frep.seq.ack_unsent || frep.peer_error.minor || frep.peer_error.severity' 0 _ws.malformed 0

/usr/bin/python3 - "$T" "$FREP_SRC/tests/dissector" >"$T/check.out" 2>&1 <<'PY' || fail "$(cat "$T/check.out")"
import sys
sys.path.insert(0, sys.argv[2])
from frepcap import load_checked, val, has, NAMES

frames, problems = load_checked(sys.argv[1])
want = [1, 2, 3, 4, 5, 7, 8, 10, 9, 14, 11, 13, 11, 11, 11, 12, 20, 21, 20, 21, 15, 15, 16, 17,
	11, 12, 19,
	1, 2, 3, 4, 6, 11, 12, 17, 18,
	1, 18,
	1, 2, 3, 18,
	1, 2, 3, 4, 5, 10, 9, 14, 11, 18,
	1, 2, 3, 4, 22, 23, 6, 24, 25]
got = [f["type"] for f in frames]
if got != want:
	print("frames %s, sent %s" % ([NAMES[t] for t in got], [NAMES[t] for t in want]))
	sys.exit(1)
if sorted(set(got)) != list(range(1, 26)):
	problems.append("types decoded: %s" % sorted(set(got)))
copy_data, copy_hole, copy_ack = frames[5], frames[6], frames[8]
tx3, resend, tx1, tx2, tx3again, tx_ack3 = frames[10:16]
vfy_zero, vfy_zero_res, vfy_a, vfy_a_res = frames[16:20]
hb, echo, error = frames[20], frames[21], frames[35]


def expect(frame, field, values):
	if frame["f"].get(field) != values:
		problems.append("packet %d %s: %s is %s, expected %s" % (
			frame["packet"], NAMES[frame["type"]], field, frame["f"].get(field), values))


def expert(frame, name, text):
	msgs = frame["f"].get("_ws.expert.message", [])
	if not has(frame, name) or not any(text in m for m in msgs):
		problems.append("packet %d %s: no %s saying '%s': %s" % (
			frame["packet"], NAMES[frame["type"]], name, text, msgs))


# The COPY_ACK after COPY_DONE covers the COPY_DATA and the COPY_HOLE.
for f in (copy_data, copy_hole):
	expect(f, "frep.ack_in", [str(copy_ack["packet"])])
expect(copy_ack, "frep.acks", ["2"])
# TX 3 went first, past the gap of 1..2; the mirror asked for them.
expert(tx3, "frep.seq.gap", "TXIDs 1..2 were not sent before it")
expert(resend, "frep.seq.resend", "TXIDs 1..2 again")
expect(resend, "frep.resent_in", [str(tx1["packet"]), str(tx2["packet"])])
for f in (tx1, tx2):
	expect(f, "frep.resent_for", [str(resend["packet"])])
	expert(f, "frep.seq.resent", "sent for the RESEND in frame %d" % resend["packet"])
# TX 3 again (go-back-N): a resend of the first TX 3, not asked for by the RESEND.
expect(tx3again, "frep.resend_of", [str(tx3["packet"])])
expect(tx3again, "frep.resent_for", None)
expert(tx3again, "frep.seq.resent", "TX 3 sent again (first in frame %d)" % tx3["packet"])
# One TX_ACK 3 covers all four, from the first TX 3 on.
expect(tx_ack3, "frep.acks", ["4"])
expect(tx_ack3, "frep.ack_to", [str(tx3["packet"])])
expect(hb, "frep.hb.echo_in", [str(echo["packet"])])
expect(echo, "frep.hb.echo_to", [str(hb["packet"])])
if not 0 < float(val(echo, "frep.hb.rtt") or 0) < 10:
	problems.append("heartbeat round trip %s s" % val(echo, "frep.hb.rtt"))
# Each VERIFY_RESULT answers its VERIFY; the first hash matches, the second does not (VFY-5, VFY-7).
expect(vfy_zero, "frep.vfy.result_in", [str(vfy_zero_res["packet"])])
expect(vfy_a_res, "frep.vfy.request_in", [str(vfy_a["packet"])])
expect(vfy_zero_res, "frep.vfy.match", ["1"])
expect(vfy_a_res, "frep.vfy.match", ["0"])
expect(vfy_zero_res, "frep.verify_result.status", ["1"])
expert(vfy_a_res, "frep.vfy.mismatch", "at offset 8192 differs at TXID 3")
expert(error, "frep.peer_error.severe", "ERROR UNEXPECTED (severe): RESUME is illegal in state INSYNC")
# The refused values are flagged where they are, and so are the ERRORs they bring.
expert(frames[36], "frep.limit.exceeded", "volume is 65 bytes: 1..64 (HS-2)")
expert(frames[40], "frep.limit.exceeded", "extent 0 is 5000 bytes: a non-zero multiple of 4096 (MP-1)")
expert(frames[40], "frep.body.inconsistent", "allocated_bytes 8192 exceeds the volume's 5000 bytes (MP-7)")
expert(frames[50], "frep.body.inconsistent", "TX_WRITE of length 8192 carries 4096 data bytes (SEQ-2)")
for i in (37, 41, 51):
	expert(frames[i], "frep.peer_error.severe", "(severe)")
# Nothing else is flagged (TX 4 and TX 5 included): the sessions are otherwise well-formed.
flagged = sorted((i, k) for i, f in enumerate(frames) for k in f["f"]
		 if k.startswith(("frep.seq.", "frep.peer_error.", "frep.limit.", "frep.body.", "frep.vfy.mis",
				  "frep.hdr.bad", "frep.hdr.unknown", "frep.hdr.flags_", "frep.hdr.over",
				  "frep.hdr.trailer_unexpected", "frep.trailer.crc_bad")))
expected_flags = sorted([(10, "frep.seq.gap"), (11, "frep.seq.resend"), (12, "frep.seq.resent"),
			 (13, "frep.seq.resent"), (14, "frep.seq.resent"), (19, "frep.vfy.mismatch"),
			 (35, "frep.peer_error.severe"),
			 (36, "frep.limit.exceeded"), (37, "frep.peer_error.severe"),
			 (40, "frep.body.inconsistent"), (40, "frep.limit.exceeded"),
			 (41, "frep.peer_error.severe"),
			 (50, "frep.body.inconsistent"), (51, "frep.peer_error.severe")])
if flagged != expected_flags:
	problems.append("expert info (frame index, name) %s, expected %s" % (flagged, expected_flags))
if problems:
	print("\n".join(problems))
	sys.exit(1)
print("%d frames of all 21 types; gap, RESEND, resent and duplicate TXs, echo, VERIFY match "
      "and mismatch, ERRORs, limits linked and flagged" % len(frames))
PY

# Mutated captures: damaged bytes never crash tshark nor trip an assertion of frep's.
ws_mutated $(seq 6)
pass "$(cat "$T/check.out"); display filters right; 6 mutated captures decoded without a crash"
