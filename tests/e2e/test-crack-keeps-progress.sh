#!/usr/bin/env bash
# A crack during the first copy keeps its progress: what the mirror acknowledged having
# copied is clean at once (CRK-5), the rest stays dirty (CRK-4), and the next pass is a
# dirty REPLICATE pass over that and the dropped writes, not a full copy from offset 0
# (RDY-5). Then INSYNC, byte-equal, and a clean bitmap.
source "$(dirname "$0")/lib.sh"
certs master-1

MIB=160               # above the mirror's 64 MiB COPY_ACK step, so one comes mid-pass
REGIONS=$((MIB * 16)) # 64 KiB regions
mkvol "$T/e0" ${MIB}M
fill "$T/e0" 0 $MIB keep
M=$(mirror_extents vol 1)
LOG=$T/client-vol.log
start_server
# A slow copy and a 1 MiB buffer: writes during the copy overflow it.
start_client vol "$T/e0" master-1 --journal-size 1M --max-rate 40M
wait_log "$LOG" 'REPLICATE: full pass over [0-9]+ bytes' 20
dirty=$(dirty_regions vol)
[ "$dirty" = $REGIONS ] || fail "a new full pass marks all $REGIONS regions dirty first: dirty_regions=$dirty"

# A COPY_ACK clears what it covers before the pass ends.
cleared_some() {
	[ "$(dirty_regions vol)" -lt $REGIONS ] && status_is vol state REPLICATE
}
wait_for 30 "a COPY_ACK to clear regions mid-pass" cleared_some
grep -q 'state REPLICATE -> INSYNC' "$LOG" && fail "the copy ended before the test could crack it"

# 2 MiB of writes, half where the copy has been, half where it has not: a crack.
/usr/bin/python3 - "$T/vol.sock" "$MIB" <<'PY'
import nbd, os, sys
h = nbd.NBD()
h.set_export_name("vol")
h.connect_unix(sys.argv[1])
size = int(sys.argv[2]) << 20
for i in range(32):
    off = (i * 65536 * 37) % (size // 4) if i % 2 else size - (i + 1) * 65536 * 3
    h.pwrite(os.urandom(65536), off)
h.flush()
h.shutdown()
PY
wait_log "$LOG" 'mirror cracked' 20
wait_log "$LOG" 'state REPLICATE -> RESET' 20
wait_log "$LOG" 'REPLICATE: dirty pass over [0-9]+ bytes' 20
again=$(grep -Eo 'REPLICATE: dirty pass over [0-9]+ bytes' "$LOG" | head -n1 | grep -Eo '[0-9]+')
[ "$again" -lt $((MIB << 20)) ] || fail "the pass after the crack walks $again bytes: it restarted from zero"
[ "$again" -gt 0 ] || fail "the pass after the crack walks nothing, but the first pass never finished"
wait_status vol state INSYNC 60
wait_converged "$T/e0" "$M" 30
[ "$(dirty_regions vol)" = 0 ] || fail "bitmap not clean once INSYNC: $(ctl vol status)"
# The mirror took the dirty pass as a dirty REPLICATE pass, not a resumed full one.
grep -Eq 'volume=vol .*REPLICATE dirty pass started' "$SERVER_LOG" ||
	fail "the mirror logged no dirty REPLICATE pass: $(grep -E 'pass (started|resumed)' "$SERVER_LOG")"
pass "a crack during REPLICATE keeps the copied part: the next pass walked $again of $((MIB << 20)) bytes"
