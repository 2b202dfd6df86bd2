#!/usr/bin/python3
"""What every decoded frep capture must satisfy, for the dissector tests.

A capture is decoded twice by tshark -T json --no-duplicate-keys -J 'frame tcp tls frep'
(once in one pass, with -z frep,tree for the statistics, once with -2; ws_decode_all in
ws.sh). load() turns a JSON file into one dict per frep frame, in dissection order:
  {"packet": N, "stream": tcp.stream, "src": tcp.srcport, "type": T,
   "bytes": header + body + trailer, "f": {FIELD: [VALUE, ...]}}
where f holds every field of the frame at any depth, link fields and expert info
names (value "") included, and tls_bytes() the decrypted bytes per direction.

check_all() runs the checks that hold for any capture and returns the problems found:
  - the decrypted bytes of each direction are exactly the frep frames decoded there;
  - no malformed packet, no expert info of frep's in the malformed group;
  - the links equal the spec's definitions, recomputed here from the frames alone:
    a TX is acknowledged by the first TX_ACK after it with txid >= its TXID (SEQ-4),
    a COPY_DATA/COPY_HOLE, on any lane of its session, by the first COPY_ACK of its
    pass with through >= its end (COPY-8, LANE-8; the end counts the data, the
    trailer decompressed), a HEARTBEAT is echoed by the other side's next HEARTBEAT of that seq,
    a VERIFY is answered by the first VERIFY_RESULT echoing its verify_id, offset and
    txid (VFY-5), and frep.vfy.match says whether their hashes are equal (VFY-7);
  - one pass shows every backward link and expert info that two passes show;
  - tshark -z frep,tree counts the frames of each type, their KiB and one latency
    per acknowledged request, with the mean of the frames' own times, and the
    trailers: how many, how many compressed, their KiB on the wire and of data.
"""
import json
import re
import sys

# Fields a single pass knows when it reaches the frame (links to earlier frames).
BACKWARD = ("frep.ack_to", "frep.acks", "frep.hb.echo_to", "frep.resend_of",
	    "frep.resent_for", "frep.vfy.request_in", "frep.vfy.match", "_ws.expert.message")
# ChaCha20-Poly1305, the suite frep offers first: each record's plaintext is its
# length less the 16-byte tag.
TLS_TAG = 16
TX, TX_ACK, COPY_DATA, COPY_HOLE, COPY_ACK, START_COPY, HEARTBEAT = 11, 12, 7, 8, 9, 5, 15
VERIFY, VERIFY_RESULT = 20, 21
NAMES = ["", "HELLO", "WELCOME", "EXTENT_TABLE", "PARTS_READY", "START_COPY", "START_SYNC",
	 "COPY_DATA", "COPY_HOLE", "COPY_ACK", "COPY_DONE", "TX", "TX_ACK", "RESEND", "CONSISTENT",
	 "HEARTBEAT", "PAUSE", "RESUME", "ERROR", "GOODBYE", "VERIFY", "VERIFY_RESULT",
	 "DIVERGENCE_REQUEST", "DIVERGENCE", "SWITCHOVER", "SWITCHOVER_DONE"]


def _flatten(node, out):
	for key, value in node.items():
		for v in value if isinstance(value, list) else [value]:
			if isinstance(v, dict):
				_flatten(v, out)
			elif key != "frep.trailer":
				out.setdefault(key, []).append(v)


def _layers(layer):
	return layer if isinstance(layer, list) else [layer] if layer else []


def _packets(path):
	return [p["_source"]["layers"] for p in json.load(open(path))]


def load(path):
	frames = []
	for layers in _packets(path):
		tcp = _layers(layers.get("tcp"))[0]
		for frep in _layers(layers.get("frep")):
			f = {}
			_flatten(frep, f)
			n = lambda k: int(f[k][0])
			frames.append({"packet": int(layers["frame"]["frame.number"]),
				       "stream": int(tcp["tcp.stream"]), "src": int(tcp["tcp.srcport"]),
				       "type": n("frep.hdr.type"),
				       "bytes": 16 + n("frep.hdr.body_len") + n("frep.hdr.trailer_len"),
				       "f": f})
	return frames


def tls_bytes(path):
	"""{(stream, srcport): decrypted application data bytes}."""
	out = {}
	for layers in _packets(path):
		tcp = _layers(layers.get("tcp"))[0]
		key = (int(tcp["tcp.stream"]), int(tcp["tcp.srcport"]))
		for tls in _layers(layers.get("tls")):
			f = {}
			_flatten(tls, f)
			for ct, n in zip(f.get("tls.record.content_type", []), f.get("tls.record.length", [])):
				if ct == "23":
					out[key] = out.get(key, 0) + int(n) - TLS_TAG
	return out


def val(frame, field):
	v = frame["f"].get(field)
	return v[0] if v else None


def num(frame, field):
	v = val(frame, field)
	return None if v is None else int(v)


def has(frame, field):
	return field in frame["f"]


def data_len(frame):
	"""Bytes of data of a frame's trailer: decompressed, if it was."""
	n = num(frame, "frep.trailer.data_len")
	return num(frame, "frep.hdr.trailer_len") if n is None else n


def session(frame):
	"""The session a frame belongs to: lane 0's HELLO (every lane links to it), or its stream."""
	return num(frame, "frep.session.opened_in") or ("stream", frame["stream"])


def expected_links(frames):
	"""[{link field: value}] per frame, from the spec's definitions (check_all)."""
	want = [{} for _ in frames]
	covers = [[] for _ in frames]
	for i, fr in enumerate(frames):
		t = fr["type"]
		later = [(j, g) for j, g in enumerate(frames) if j > i and g["stream"] == fr["stream"]]
		ack = None
		if t == TX:
			ack = next((j for j, g in later if g["type"] == TX_ACK and
				    num(g, "frep.tx_ack.txid") >= num(fr, "frep.tx.txid")), None)
		elif t in (COPY_DATA, COPY_HOLE):
			end = num(fr, "frep.copy_data.offset") + data_len(fr) if t == COPY_DATA else \
				num(fr, "frep.copy_hole.offset") + num(fr, "frep.copy_hole.length")
			later = [(j, g) for j, g in enumerate(frames) if j > i and session(g) == session(fr)]
			for j, g in later:
				if g["type"] == START_COPY:
					break
				if g["type"] == COPY_ACK and num(g, "frep.copy_ack.through") >= end:
					ack = j
					break
		if ack is not None:
			want[i]["frep.ack_in"] = frames[ack]["packet"]
			covers[ack].append(i)
	for i, fr in enumerate(frames):
		if fr["type"] in (TX_ACK, COPY_ACK):
			want[i]["frep.acks"] = len(covers[i])
			if covers[i]:
				want[i]["frep.ack_to"] = frames[covers[i][0]]["packet"]
	waiting = {}
	for i, fr in enumerate(frames):
		if fr["type"] != HEARTBEAT:
			continue
		seq, side = num(fr, "frep.heartbeat.seq"), fr["src"]
		other = next((k for k in waiting if k[0] == fr["stream"] and k[1] != side and k[2] == seq), None)
		if other is None:
			waiting[(fr["stream"], side, seq)] = i
		else:
			req = waiting.pop(other)
			want[req]["frep.hb.echo_in"] = fr["packet"]
			want[i]["frep.hb.echo_to"] = frames[req]["packet"]
	unanswered = []
	for i, fr in enumerate(frames):
		if fr["type"] == VERIFY:
			unanswered.append(i)
		elif fr["type"] == VERIFY_RESULT:
			key = [num(fr, "frep.verify_result." + k) for k in ("verify_id", "offset", "txid")]
			req = next((j for j in unanswered if frames[j]["stream"] == fr["stream"] and
				    [num(frames[j], "frep.verify." + k) for k in ("verify_id", "offset", "txid")]
				    == key), None)
			if req is None:
				continue
			unanswered.remove(req)
			want[req]["frep.vfy.result_in"] = fr["packet"]
			want[i]["frep.vfy.request_in"] = frames[req]["packet"]
			mine, theirs = val(frames[req], "frep.verify.hash"), val(fr, "frep.verify_result.hash")
			if num(fr, "frep.verify_result.status") == 1 and mine and theirs:
				want[i]["frep.vfy.match"] = int(mine == theirs)
	return want


def stats(path):
	"""{section: {item: (count, average or None)}} of tshark -z frep,tree output."""
	out, section = {}, None
	for line in open(path):
		m = re.match(r"^(\S.*?)\s{2,}(\d+)\s", line)
		if m and not line.startswith(("Topic", "frep:")):
			section = m.group(1)
			out[section] = {"": (int(m.group(2)), None)}
			continue
		m = re.match(r"^ (\S.*?)\s{2,}(\d+)\s+(\d+\.\d+)?", line)
		if m and section:
			out[section][m.group(1)] = (int(m.group(2)), float(m.group(3)) if m.group(3) else None)
	return out


def check_all(two, one, two_json, stats_path):
	problems = []
	# Every decrypted byte is in a decoded frame.
	have = {}
	for fr in two:
		key = (fr["stream"], fr["src"])
		have[key] = have.get(key, 0) + fr["bytes"]
	tls = tls_bytes(two_json)
	if tls != have:
		problems.append("decrypted bytes per (stream, port) %s != frep frames decoded %s" % (tls, have))
	for fr in two:
		if any(k.startswith(("frep.hdr.bad", "frep.hdr.oversized", "frep.body.truncated",
				     "frep.body.wire_type", "_ws.malformed")) for k in fr["f"]):
			problems.append("packet %d: malformed frep frame: %s" % (fr["packet"], fr["f"]))
	# Links, against the definitions.
	want = expected_links(two)
	for fr, w in zip(two, want):
		got = {k: num(fr, k) for k in ("frep.ack_in", "frep.ack_to", "frep.acks",
						"frep.hb.echo_in", "frep.hb.echo_to", "frep.vfy.result_in",
						"frep.vfy.request_in", "frep.vfy.match") if has(fr, k)}
		if got != w:
			problems.append("packet %d %s: links %s, by definition %s" %
					(fr["packet"], NAMES[fr["type"]], got, w))
	# One pass: the same frames and backward links.
	if [(f["packet"], f["type"]) for f in one] != [(f["packet"], f["type"]) for f in two]:
		problems.append("one pass decodes other frames than two passes")
	for a, b in zip(one, two):
		for k in BACKWARD:
			if a["f"].get(k) != b["f"].get(k):
				problems.append("packet %d %s: %s is %s in one pass, %s in two" % (
					a["packet"], NAMES[a["type"]], k, a["f"].get(k), b["f"].get(k)))
	# Statistics.
	st = stats(stats_path)
	msgs, kib, lat, trailers = (st.get(s, {}) for s in ("Messages by type", "KiB by type",
							    "Acknowledgement latency (ms)", "Trailers"))
	for t in range(1, len(NAMES)):
		frs = [f for f in two if f["type"] == t]
		if msgs.get(NAMES[t], (0,))[0] != len(frs):
			problems.append("-z frep,tree: %s count %s, frames %d" % (NAMES[t], msgs.get(NAMES[t]), len(frs)))
		if kib.get(NAMES[t], (0,))[0] != sum(f["bytes"] for f in frs) >> 10:
			problems.append("-z frep,tree: %s KiB %s, frames hold %d bytes" %
					(NAMES[t], kib.get(NAMES[t]), sum(f["bytes"] for f in frs)))
	with_trailer = [f for f in two if num(f, "frep.hdr.trailer_len")]
	for item, value in (("", len(with_trailer)),
			    ("compressed", len([f for f in with_trailer if num(f, "frep.hdr.flags.compressed")])),
			    ("KiB on the wire", sum(num(f, "frep.hdr.trailer_len") for f in with_trailer) >> 10),
			    ("KiB of data", sum(data_len(f) for f in with_trailer) >> 10)):
		if trailers.get(item, (0,))[0] != value:
			problems.append("-z frep,tree: Trailers %s %s, frames have %d" %
					(item or "count", trailers.get(item), value))
	for name, types, field in (("TX -> TX_ACK", (TX,), "frep.ack_time"),
				   ("COPY_DATA/COPY_HOLE -> COPY_ACK", (COPY_DATA, COPY_HOLE), "frep.ack_time"),
				   ("HEARTBEAT -> echo (round trip)", (HEARTBEAT,), "frep.hb.echo_in"),
				   ("VERIFY -> VERIFY_RESULT", (VERIFY,), "frep.vfy.time")):
		times = [float(val(f, "frep.hb.rtt" if f["type"] == HEARTBEAT else field)) * 1000
			 for f in two if f["type"] in types and has(f, field)]
		count, avg = lat.get(name, (0, None))
		if count != len(times) or (times and abs(avg - sum(times) / len(times)) > 0.01):
			problems.append("-z frep,tree: %s %s, frames have %d, mean %s ms" %
					(name, lat.get(name), len(times), sum(times) / len(times) if times else None))
	return problems


def load_checked(directory):
	"""The two-pass frames of ws_decode_all's files in directory, and check_all's problems."""
	two, one = load(directory + "/two.json"), load(directory + "/one.json")
	return two, check_all(two, one, directory + "/two.json", directory + "/stats.txt")


if __name__ == "__main__":
	for frame in load(sys.argv[1]):
		print(json.dumps(frame, sort_keys=True))
