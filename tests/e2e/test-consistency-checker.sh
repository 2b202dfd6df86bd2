#!/usr/bin/env bash
# The consistency tools themselves: frep-write.py against a real NBD server (nbdkit), sequential and 16 requests in flight, and each frep-check.py verdict on synthetic masters, mirrors and traces.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
W=("$PY" "$FREP_SRC/tests/tools/frep-write.py")
C=("$PY" "$FREP_SRC/tests/tools/frep-check.py")
MIB=1048576

# expect RC PATTERN CMD...: CMD exits RC and its output matches PATTERN.
expect() {
	local want=$1 pat=$2 rc=0 out
	shift 2
	out=$("$@" 2>&1) || rc=$?
	[ "$rc" -eq "$want" ] || fail "'${*: -6}' exited $rc, want $want: $out"
	grep -Eq -- "$pat" <<<"$out" || fail "'${*: -6}' said '$out', want /$pat/"
	echo "  $out"
}

# serve FILE: nbdkit serving FILE on $T/nbd.sock with one thread, so requests are
# applied in the order they arrive and replied to in that order: frep-write.py
# --log-tx then writes the trace a master would. Sets NBD_PID and URI.
serve() {
	rm -f "$T/nbd.sock"
	nbdkit -f -t 1 -U "$T/nbd.sock" --filter=blocksize-policy file "$1" blocksize-maximum=32M \
		>"$T/nbdkit.log" 2>&1 &
	NBD_PID=$!
	PIDS+=("$NBD_PID")
	URI="nbd+unix:///vol1?socket=$T/nbd.sock"
	# The socket file exists a moment before nbdkit listens on it.
	wait_for 20 "nbdkit to serve $1" nbdinfo --size "$URI"
}

# split_to DIR FILE: FILE cut into the mirror layout DIR/extent.0 (32 MiB) and DIR/extent.1.
split_to() {
	mkdir -p "$1"
	dd if="$2" of="$1/extent.0" bs=1M count=32 status=none
	dd if="$2" of="$1/extent.1" bs=1M skip=32 status=none
}

# meta DIR CONSISTENT CONSISTENT_TXID APPLIED_TXID: a mirror metadata file in the real format.
meta() {
	"${C[@]}" write-meta "$1/meta" format=frep-mirror-1 volume=vol1 owner=master-1 \
		uuid=000102030405060708090a0b0c0d0e0f phase=4 consistent="$2" consistent_txid="$3" \
		applied_txid="$4" extents=2
}

# The CRC32C every trace uses, against the standard check value.
[ "$(printf 123456789 | "${C[@]}" crc32c -)" = e3069283 ] || fail "crc32c(\"123456789\") != e3069283"
expect 0 'selftest OK' "${C[@]}" selftest

# Initial image: extents of 32 MiB + 16 MiB; the boundary is a multiple of the
# writer's 16 MiB straddle step, so some requests cross it.
mkvol "$T/i0" 32M; mkvol "$T/i1" 16M
fill "$T/i0" 0 24 a; fill "$T/i1" 4 8 b
INIT="$T/i0,$T/i1"
cat "$T/i0" "$T/i1" >"$T/served"

serve "$T/served"
ML=$((1 * MIB))

# Phase 1: 40 mixed requests (seed s1), then the "mirror" snapshot at TXID 40.
expect 0 '^frep-write: count=40 first_index=0 last_index=39 stopped=count$' \
	"${W[@]}" --uri "$URI" --seed s1 --count 40 --ops write,trim,zero --max-len $ML --log-tx "$T/master.trace"
grep -q ' op=trim ' "$T/master.trace" || fail "sequence s1 has no trim"
grep -q ' op=zero ' "$T/master.trace" || fail "sequence s1 has no zero"
awk -v b=$((32 * MIB)) '{ split($4, o, "="); split($5, l, "="); if (o[2] < b && o[2] + l[2] > b) x = 1 }
	END { exit !x }' "$T/master.trace" || fail "no request crosses the extent boundary"
split_to "$T/snap/vol1" "$T/served"

# Phase 2: 10 writes of a second seed, continuing at index 0 of s2 and TXID 41, with FUA.
expect 0 'count=10 first_index=0 last_index=9' \
	"${W[@]}" --uri "$URI" --seed s2 --count 10 --max-len $ML --fua --log-tx "$T/master.trace" --log-first-txid 41
# A resumed run continues the sequence: index 10 of s2 is a new TXID 51.
expect 0 'count=1 first_index=10 last_index=10' \
	"${W[@]}" --uri "$URI" --seed s2 --count 1 --first-index 10 --max-len $ML --log-tx "$T/master.trace" --log-first-txid 51
[ "$(wc -l <"$T/master.trace")" -eq 51 ] || fail "writer logged $(wc -l <"$T/master.trace") transactions, want 51"
# The writer refuses a request size the export cannot take rather than change the sequence.
expect 1 'exceeds the export' "${W[@]}" --uri "$URI" --seed s3 --count 1 --max-len $((64 * MIB))
# In flight together, requests are told apart by their data's CRC: writes only.
expect 2 'takes --ops write only' "${W[@]}" --uri "$URI" --seed s3 --count 1 --depth 2 --ops write,trim
stop "$NBD_PID"
split_to "$T/final/vol1" "$T/served"
dd if="$T/served" of="$T/m0" bs=1M count=32 status=none
dd if="$T/served" of="$T/m1" bs=1M skip=32 status=none
# A crash cuts the last trace line: it is ignored.
printf 'gen=0 txid=52 op=wri' >>"$T/master.trace"

P=("${C[@]}" prefix --initial "$INIT" --master-trace "$T/master.trace" --seed s1 --seed s2 --max-len "$ML")

echo "prefix: the NBD server's file is the initial image plus the writer's requests"
meta "$T/final/vol1" 1 51 51
expect 0 '^prefix OK at txid=51 \(51 transactions' "${P[@]}" --mirror-dir "$T/final/vol1" --min-txid 51
meta "$T/snap/vol1" 1 40 40
expect 0 '^prefix OK at txid=40 \(40 transactions' "${P[@]}" --mirror-dir "$T/snap/vol1"

echo "prefix: failures"
# Guarantee 3: the mirror acknowledged 45, yet is consistent only at 40.
expect 1 'txid=40 < --min-txid 45' "${P[@]}" --mirror-dir "$T/snap/vol1" --min-txid 45
# Metadata claims TXID 45 while the extents hold 40: a write of 41..45 is missing.
meta "$T/snap/vol1" 1 45 45
expect 1 'prefix FAIL at txid=45: .*last written by txid=4[1-5] ' "${P[@]}" --mirror-dir "$T/snap/vol1"
# Only the applied TXID ahead: read as INSYNC progress only with --txid-from applied.
meta "$T/snap/vol1" 1 40 45
expect 0 'prefix OK at txid=40' "${P[@]}" --mirror-dir "$T/snap/vol1"
expect 1 'prefix FAIL at txid=45' "${P[@]}" --mirror-dir "$T/snap/vol1" --txid-from applied
# Claims beyond anything the master committed.
meta "$T/snap/vol1" 1 60 60
expect 1 'master trace ends at txid=51' "${P[@]}" --mirror-dir "$T/snap/vol1"
# One flipped byte inside the last write at or below TXID 40: the message names
# the transaction that last touched that byte.
meta "$T/snap/vol1" 1 40 40
read -r AT WHO < <("$PY" - "$T/master.trace" <<'EOF'
import sys
recs = []
for line in open(sys.argv[1]):
	if not line.endswith("\n"):
		continue
	kv = dict(t.split("=", 1) for t in line.split())
	recs.append((int(kv["txid"]), kv["op"], int(kv["off"]), int(kv["len"])))
recs = [r for r in recs if r[0] <= 40]
w = [r for r in recs if r[1] == "write"][-1]
at = w[2] + w[3] // 2
print(at, max(r[0] for r in recs if r[2] <= at < r[2] + r[3]))
EOF
)
cp "$T/snap/vol1/extent.0" "$T/snap-e0.orig"; cp "$T/snap/vol1/extent.1" "$T/snap-e1.orig"
"$PY" - "$T/snap/vol1" "$AT" <<'EOF'
import os, sys
d, at = sys.argv[1], int(sys.argv[2])
k = 0 if at < 32 << 20 else 1
fd = os.open("%s/extent.%d" % (d, k), os.O_RDWR)
rel = at - k * (32 << 20)
b = os.pread(fd, 1, rel)
os.pwrite(fd, bytes([b[0] ^ 0x40]), rel)
os.close(fd)
EOF
expect 1 "prefix FAIL at txid=40: offset $AT .* last written by txid=$WHO " "${P[@]}" --mirror-dir "$T/snap/vol1"
cp "$T/snap-e0.orig" "$T/snap/vol1/extent.0"; cp "$T/snap-e1.orig" "$T/snap/vol1/extent.1"
# An extent shorter than the master's.
truncate -s 15M "$T/snap/vol1/extent.1"
expect 1 'extent sizes' "${P[@]}" --mirror-dir "$T/snap/vol1"
cp "$T/snap-e1.orig" "$T/snap/vol1/extent.1"
# Not consistent: content is not checked (exit 3), the durable TXID still is.
meta "$T/snap/vol1" 0 40 40
expect 3 '^prefix SKIPPED: mirror not consistent' "${P[@]}" --mirror-dir "$T/snap/vol1"
expect 1 'applied_txid=40 < --min-txid 41' "${P[@]}" --mirror-dir "$T/snap/vol1" --min-txid 41
# Metadata whose checksum does not match is not trusted.
meta "$T/snap/vol1" 1 40 40
sed -i 's/^consistent_txid=40$/consistent_txid=39/' "$T/snap/vol1/meta"
expect 1 'crc32c mismatch' "${P[@]}" --mirror-dir "$T/snap/vol1"
# A traced write that no (seed, index) explains fails loudly.
meta "$T/final/vol1" 1 51 51
expect 1 'matches no writer index < 2000 of seed\(s\) s1 ' \
	"${C[@]}" prefix --initial "$INIT" --master-trace "$T/master.trace" --seed s1 --max-len $ML \
	--max-index 2000 --mirror-dir "$T/final/vol1"
# A gap in the master trace below t.
sed '/ txid=20 /d' "$T/master.trace" >"$T/gap.trace"
expect 1 'master trace lacks txid=20' "${C[@]}" prefix --initial "$INIT" --master-trace "$T/gap.trace" \
	--seed s1 --seed s2 --max-len $ML --mirror-dir "$T/final/vol1"

echo "converge"
expect 0 "^converge OK: $((48 * MIB)) bytes" "${C[@]}" converge --master "$T/m0,$T/m1" \
	--mirror "$T/final/vol1/extent.0,$T/final/vol1/extent.1"
expect 1 '^converge FAIL: first difference at offset [0-9]+ \(extent [01] \+[0-9]+\)' \
	"${C[@]}" converge --master "$T/m0,$T/m1" --mirror "$T/snap/vol1/extent.0,$T/snap/vol1/extent.1"
expect 1 'converge FAIL: mirror extent unreadable' "${C[@]}" converge --master "$T/m0,$T/m1" \
	--mirror "$T/snap/vol1/extent.0,$T/snap/vol1/extent.9"

echo "trace"
TR=("${C[@]}" trace --master-trace "$T/master.trace")
mirror_lines() { sed -n "$1p" "$T/master.trace" | sed 's/^/volume=vol1 /'; }
mirror_lines 1,51 >"$T/m.trace"
expect 0 'trace OK: mirror applied 51 transaction\(s\) up to txid=51 .*0 restart' "${TR[@]}" --mirror-trace "$T/m.trace"
# A crash cut the mirror's last line.
printf 'volume=vol1 gen=0 txid=52 op=wr' >>"$T/m.trace"
expect 0 'trace OK: mirror applied 51 ' "${TR[@]}" --mirror-trace "$T/m.trace"
# Restart: the journal replay re-applies 25..30, then the session goes on.
{ mirror_lines 1,30; mirror_lines 25,51; } >"$T/m.trace"
expect 0 'trace OK: .*1 restart\(s\), 6 re-applied' "${TR[@]}" --mirror-trace "$T/m.trace"
# Restart that tore a line mid-file: the crash cut txid 31, the replay appended to it.
{ mirror_lines 1,30; printf 'volume=vol1 gen=0 txid=31 op=wr'; mirror_lines 28,51; } >"$T/m.trace"
expect 0 'trace OK: .*1 restart\(s\), 3 re-applied' "${TR[@]}" --mirror-trace "$T/m.trace"
# Explicit markers: a step back only right after one.
{ mirror_lines 1,30; echo 'volume=vol1 event=start'; mirror_lines 25,51; } >"$T/m.trace"
expect 0 'trace OK: .*1 restart' "${TR[@]}" --mirror-trace "$T/m.trace"
{ echo 'volume=vol1 event=start'; mirror_lines 1,30; mirror_lines 25,51; } >"$T/m.trace"
expect 1 'txid=25 after txid=30 with no restart marker' "${TR[@]}" --mirror-trace "$T/m.trace"
# Reordered: 11 applied before 10.
{ mirror_lines 1,9; mirror_lines 11; mirror_lines 10; mirror_lines 12,51; } >"$T/m.trace"
expect 1 'trace FAIL: .*:10: mirror applied txid=11 right after txid=9' "${TR[@]}" --mirror-trace "$T/m.trace"
# A gap fails, unless a resync carried it (--allow-gaps).
{ mirror_lines 1,20; mirror_lines 23,51; } >"$T/m.trace"
expect 1 'txid=23 right after txid=20' "${TR[@]}" --mirror-trace "$T/m.trace"
expect 0 'trace OK: mirror applied 49 .*1 gap' "${TR[@]}" --mirror-trace "$T/m.trace" --allow-gaps
# Applied data differs from what the master committed.
mirror_lines 1,51 | sed '17s/crc=[0-9a-f]*/crc=deadbeef/' >"$T/m.trace"
expect 1 'trace FAIL: .*:17: mirror applied gen=0 txid=17 .* but the master committed' \
	"${TR[@]}" --mirror-trace "$T/m.trace"
# A TXID the master never committed.
{ mirror_lines 1,51; echo 'volume=vol1 gen=0 txid=52 op=zero off=0 len=4096 crc=00000000'; } >"$T/m.trace"
expect 1 'mirror applied txid=52, which the master trace lacks' "${TR[@]}" --mirror-trace "$T/m.trace"
# Two volumes in one trace need --volume.
{ mirror_lines 1,51; mirror_lines 1,3 | sed 's/volume=vol1/volume=vol2/'; } >"$T/m.trace"
expect 2 'pass --volume' "${TR[@]}" --mirror-trace "$T/m.trace"
expect 0 'trace OK: mirror applied 51 ' "${TR[@]}" --mirror-trace "$T/m.trace" --volume vol1

echo "master: 16 requests in flight, every 4th in the hot range"
# Two 8 MiB extents: the 64 KiB hot range straddles their boundary.
mkvol "$T/c0" 8M; mkvol "$T/c1" 8M
fill "$T/c0" 1 4 c; fill "$T/c1" 2 4 d
cat "$T/c0" "$T/c1" >"$T/served2"
serve "$T/served2"
HW=("${W[@]}" --uri "$URI" --seed h --max-len 16384 --depth 16 --hot-every 4 --record "$T/h.record"
	--log-tx "$T/h.trace")
expect 0 '^frep-write: count=300 first_index=0 last_index=299 stopped=count$' "${HW[@]}" --count 300
cp "$T/served2" "$T/at300"
expect 0 'count=300 first_index=300 last_index=599' "${HW[@]}" --count 300 --first-index 300 --log-first-txid 301
stop "$NBD_PID"
[ "$(grep -c '^sent ' "$T/h.record")" -eq 600 ] && [ "$(grep -c '^ack ' "$T/h.record")" -eq 600 ] ||
	fail "the record does not say 600 sent and 600 acknowledged"
# nbdkit with one thread applies requests in the order they arrive; the checker does
# not rely on it: it ties each traced TXID to its request by the data's CRC.
M=("${C[@]}" master --initial "$T/c0,$T/c1" --seed h --max-len 16384 --hot-every 4)
split_master() { # FILE A B: FILE cut into two 8 MiB extents A and B
	dd if="$1" of="$2" bs=1M count=8 status=none
	dd if="$1" of="$3" bs=1M skip=8 status=none
}
split_master "$T/served2" "$T/h0" "$T/h1"
split_master "$T/at300" "$T/g0" "$T/g1"
MF=("${M[@]}" --master "$T/h0,$T/h1" --record "$T/h.record")
expect 0 '^master OK at txid=600: 600 replied write\(s\) checked, the latest at txid=600; the volume is the initial image plus 600' \
	"${MF[@]}" --master-trace "$T/h.trace" --txid 600
# --cache: the check at 300 keeps its image; the one at 600 replays only 301..600.
sed -n '1,300p' "$T/h.trace" >"$T/h300.trace"
expect 0 'master OK at txid=300: .*initial image plus 300 ' "${M[@]}" --master "$T/g0,$T/g1" \
	--master-trace "$T/h300.trace" --txid 300 --cache "$T/h.cache"
expect 0 'master OK at txid=600: .*the image at txid=300 \(--cache\) plus 300 ' "${MF[@]}" \
	--master-trace "$T/h.trace" --txid 600 --cache "$T/h.cache"
# A replied write past the master's TXID was lost.
expect 1 'master FAIL: write index [0-9]+ .* was replied to as txid=600, but the master holds only up to txid=599' \
	"${MF[@]}" --master-trace "$T/h.trace" --txid 599
# A replied write that no traced transaction carries was never committed.
sed '/ txid=250 /d' "$T/h.trace" >"$T/h.lost.trace"
expect 1 'was replied to but the master traced no such transaction' "${MF[@]}" --master-trace "$T/h.lost.trace" --txid 600
# Two overlapping writes applied out of TXID order: swap the TXIDs of the last two
# hot writes that overlap where nothing later wrote. The verdict names the offset,
# the transaction that should be there and the one whose data is.
read -r A B AT < <("$PY" - "$T/h.trace" <<'PYEOF'
import sys
recs = [dict(t.split("=", 1) for t in l.split()) for l in open(sys.argv[1])]
recs = [(int(r["txid"]), int(r["off"]), int(r["off"]) + int(r["len"])) for r in recs]
for b in range(len(recs) - 1, 0, -1):
	for a in range(b - 1, max(b - 16, -1), -1):
		lo, hi = max(recs[a][1], recs[b][1]), min(recs[a][2], recs[b][2])
		if lo < hi and not any(r[1] < hi and lo < r[2] for r in recs[b + 1:]):
			print(recs[a][0], recs[b][0], lo)
			sys.exit(0)
sys.exit("no overlapping pair in flight together")
PYEOF
)
sed "s/ txid=$A / txid=X /; s/ txid=$B / txid=$A /; s/ txid=X / txid=$B /" "$T/h.trace" >"$T/h.swapped.trace"
# After the swap, txid=B labels A's data, and the master holds the other (now txid=A).
expect 1 "master FAIL at txid=600: offset $AT .* last written by txid=$B .*holds the data of txid $A\$" \
	"${MF[@]}" --master-trace "$T/h.swapped.trace" --txid 600
# A byte no transaction wrote, changed on the master.
"$PY" -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); os.pwrite(fd, b"\xff", 7 << 20); os.close(fd)' "$T/h1"
expect 1 "master FAIL at txid=600: offset $((15 * MIB)) \(extent 1 \+$((7 * MIB))\) .*last written by the initial image" \
	"${MF[@]}" --master-trace "$T/h.trace" --txid 600

pass "writer sequence rebuilt byte for byte, sequential and 16 in flight; master, prefix, converge and trace verdicts all as expected"
