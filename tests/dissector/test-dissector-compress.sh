#!/usr/bin/env bash
# Real sessions of frep-client --compress zstd and --compress lz4 with frep-server
# (protocol version 2), captured on loopback and decoded: COPY_DATA and TX frames
# go compressed (flag COMPRESSED), each is decompressed with the algorithm its
# connection's WELCOME chose into exactly its declared length, its data_crc checks
# against the data, and the data equals the volume's bytes at its offset; version-1
# framing until WELCOME and version 2 after it; every frame has its session and
# lane; no expert error; -z frep,tree counts the compressed trailers and their bytes.
# Then mutated copies of the capture are decoded without a crash.
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/ws.sh"
certs master-1
command -v nbdsh >/dev/null || fail "nbdsh (libnbd-bin) is not installed"

# compressible PATH OFFSET_MIB LEN_MIB: 64-byte text lines that name their own
# offset, so data shown at the wrong offset cannot match.
compressible() {
	/usr/bin/python3 - "$@" <<'PY'
import sys
path, off, n = sys.argv[1], int(sys.argv[2]) << 20, int(sys.argv[3]) << 20
with open(path, "r+b") as f:
	f.seek(off)
	f.write(b"".join((b"frep compressed block at offset %012d of the volume\n" % o).rjust(64, b".")
			 for o in range(off, off + n, 64)))
PY
}

start_server
capture_start compress.pcap
for alg in zstd lz4; do
	# Data at 0-1 MiB and 2-3 MiB: two COPY_DATA of 1 MiB; then two compressible
	# writes at 3 MiB and one of random bytes, which goes raw (COMP-2).
	mkvol "$T/$alg" 4M
	compressible "$T/$alg" 0 1
	compressible "$T/$alg" 2 1
	start_client "$alg" "$T/$alg" master-1 --keylog "$WS/keys" --compress "$alg"
	wait_status "$alg" state INSYNC 30
	grep -q "protocol 2, compression $alg" "$T/client-$alg.log" ||
		fail "frep-client did not negotiate $alg: $(grep -m1 'connected to mirror' "$T/client-$alg.log")"
	nbdsh -u "$(nbd_uri "$alg")" -c '
h.pwrite(b"frep compressed write one ".ljust(64, b"-") * 1024, 3 << 20)
h.pwrite(b"frep compressed write two ".ljust(64, b"=") * 2048, (3 << 20) + 65536)
import os
h.pwrite(os.urandom(16384), (3 << 20) + 262144)' || fail "nbdsh could not write to $alg"
	wait_converged "$T/$alg" "$(mirror_extents "$alg" 1)" 30
	wait_status "$alg" lag_tx 0 10
	stop "$CLIENT_PID"
done
stop "$SERVER_PID"
capture_stop

ws_filters \
	_ws.malformed 0 \
	"$WS_BAD_EXPERT" 0 \
	"frep && _ws.expert.severity == 8388608" 0 \
	"frep.hdr.flags.compressed == 1 && frep.trailer.compression == 1" + \
	"frep.hdr.flags.compressed == 1 && frep.trailer.compression == 2" + \
	"frep.hdr.flags.compressed == 1 && !(frep.trailer.crc_status == 1)" 0 \
	"frep.hdr.type == 11 && frep.hdr.flags.compressed == 0 && frep.trailer.crc_status == 1" + \
	"frep.hdr.type <= 2 && frep.hdr.version != 1" 0 \
	"frep.hdr.type > 2 && frep.hdr.version != 2" 0 \
	"frep && !frep.session" 0 \
	"frep.lane != 0" 0 \
	"frep.hdr.type != 1 && !frep.session.opened_in" 0

# frepcap.py's checks (links, one pass against two, statistics with the trailers'
# bytes), and every decompressed trailer against the volume.
/usr/bin/python3 - "$T" "$FREP_SRC/tests/dissector" >"$T/check.out" 2>&1 <<'PY' || fail "$(cat "$T/check.out")"
import sys
sys.path.insert(0, sys.argv[1 + 1])
from frepcap import load_checked, val, num, has, NAMES

T = sys.argv[1]
frames, problems = load_checked(T)
algs = {1: "zstd", 2: "lz4"}
seen = {}
for f in frames:
	if f["type"] not in (7, 11) or not num(f, "frep.hdr.flags.compressed"):
		continue
	alg = algs[num(f, "frep.trailer.compression")]
	off = num(f, "frep.copy_data.offset") if f["type"] == 7 else num(f, "frep.tx.offset")
	data = bytes.fromhex(val(f, "frep.trailer.data").replace(":", ""))
	with open("%s/%s" % (T, alg), "rb") as vol:
		vol.seek(off)
		want = vol.read(len(data))
	if data != want or len(data) != num(f, "frep.trailer.data_len"):
		problems.append("packet %d %s: %d bytes decompressed at offset %d differ from %s's volume" %
				(f["packet"], NAMES[f["type"]], len(data), off, alg))
	if num(f, "frep.hdr.trailer_len") >= len(data) or float(val(f, "frep.trailer.ratio")) <= 1:
		problems.append("packet %d: %d bytes on the wire for %d of data" %
				(f["packet"], num(f, "frep.hdr.trailer_len"), len(data)))
	seen.setdefault((alg, NAMES[f["type"]]), []).append(len(data))
for alg in algs.values():
	for name, n in (("COPY_DATA", 2), ("TX", 2)):
		if len(seen.get((alg, name), [])) != n:
			problems.append("%s: %d compressed %s frames, expected %d" %
					(alg, len(seen.get((alg, name), [])), name, n))
if len({val(f, "frep.session") for f in frames}) != 2:
	problems.append("sessions %s, expected 2" % sorted({val(f, "frep.session") for f in frames}))
if problems:
	print("\n".join(problems))
	sys.exit(1)
print("compressed frames decompressed equal to the volume: %s" %
      ", ".join("%s %s %s" % (a, n, "+".join(map(str, v))) for (a, n), v in sorted(seen.items())))
PY
# Damaged compressed trailers (corrupt, or shorter or longer than declared once
# decompressed) are refused without a crash.
ws_mutated 1 2
pass "$(cat "$T/check.out"); CRC good, versions, sessions and statistics right, no expert error; 2 mutated captures decoded without a crash"
