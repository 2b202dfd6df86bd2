#!/usr/bin/env bash
# The consistency tools themselves: frep-write.py against a real NBD server, and each frep-check.py verdict on synthetic mirrors and traces.
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

# nbdkit's file plugin serves the plain file; the policy filter advertises a 32M
# maximum block size, which the writer checks its --max-len against.
nbdkit -f -U "$T/nbd.sock" --filter=blocksize-policy file file="$T/served" \
	blocksize-maximum=32M >"$T/nbd-server.log" 2>&1 &
NBD_PID=$!
PIDS+=("$NBD_PID")
wait_for 20 "NBD socket" test -S "$T/nbd.sock"
URI="nbd+unix:///vol1?socket=$T/nbd.sock"
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

pass "writer sequence rebuilt byte for byte; prefix, converge and trace verdicts all as expected"
