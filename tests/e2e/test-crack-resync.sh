#!/usr/bin/env bash
# Buffer overflow cracks the mirror: the records go to the dirty bitmap, the mirror goes
# OUTOFSYNC, and only the dirty regions are copied back before INSYNC.
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 64M; mkvol "$T/e1" 64M; fill "$T/e0" 0 64 a; fill "$T/e1" 0 64 b
EXT="$T/e0,$T/e1"
M=$(mirror_extents vol 2)
LOG=$T/client-vol.log
start_server
start_client vol "$EXT" master-1 --journal-size 2M
wait_status vol state INSYNC 30

# Pause sequencing, then write more than the 2 MiB buffer holds: it must crack.
ctl vol pause | grep -q '^ok' || fail "pause"
wait_status vol state IDLE 10
/usr/bin/python3 - "$T/vol.sock" <<'PY'
import nbd, os, sys
h = nbd.NBD()
h.connect_unix(sys.argv[1])
for i in range(48):  # 48 x 64K = 3 MiB at scattered offsets, some across the e0/e1 boundary
    off = (i * 2654435761 * 65536) % (128 * 1024 * 1024 - 65536)
    h.pwrite(os.urandom(65536), off)
h.pwrite(os.urandom(65536), 64 * 1024 * 1024 - 32768)
h.shutdown()
PY
wait_log "$LOG" 'mirror cracked' 20
wait_log "$LOG" 'state IDLE -> OUTOFSYNC' 10
wait_log "$LOG" 'OUTOFSYNC: dirty pass over [0-9]+ bytes' 20
wait_log "$LOG" 'state OUTOFSYNC -> INSYNC' 30
wait_converged "$EXT" "$M" 30

# The resync copies the dirty regions, not the 128 MiB volume.
dirty=$(grep -Eo 'OUTOFSYNC: dirty pass over [0-9]+ bytes' "$LOG" | head -n1 | grep -Eo '[0-9]+')
copied=$(grep -Eo 'dirty resync done: [0-9]+ data bytes' "$LOG" | head -n1 | grep -Eo '[0-9]+')
[ -n "$copied" ] || fail "no dirty resync logged"
limit=$((dirty * 11 / 10 + 1048576))
[ "$copied" -le "$limit" ] || fail "resync copied $copied bytes for $dirty dirty bytes (limit $limit)"
[ "$dirty" -lt $((32 << 20)) ] || fail "dirty set is $dirty bytes: not incremental"
[ "$(dirty_regions vol)" = 0 ] || fail "bitmap not cleared after the resync"
# The operator's pause outlives the crack: in sync again, the master pauses at once.
wait_log "$LOG" 'state OUTOFSYNC -> INSYNC .*' 5
wait_status vol state IDLE 10
[ "$(ctl_field vol paused)" = true ] || fail "the pause did not outlive the crack"
ctl vol resume | grep -q '^ok resuming vol$' || fail "resume"
wait_status vol state INSYNC 10
# The operator's full resync re-copies every allocated block, then INSYNC again.
ctl vol resync-full | grep -q '^ok vol: a full resync of every allocated block starts now' || fail "resync-full"
wait_log "$LOG" 'OUTOFSYNC: full pass over 134217728 bytes' 20
wait_log "$LOG" 'full pass done: 134217728 data bytes copied' 30
wait_status vol state INSYNC 20
wait_converged "$EXT" "$M" 20
stop "$CLIENT_PID"

# --resync=full: a crack is repaired by a full pass instead of a dirty one.
: >"$LOG"
start_client vol "$EXT" master-1 --journal-size 2M --resync=full
wait_status vol state INSYNC 30
ctl vol pause | grep -q '^ok' || fail "pause"
wait_status vol state IDLE 10
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x21 0 3M' >/dev/null || fail "writes while paused"
wait_log "$LOG" 'mirror cracked' 20
wait_log "$LOG" 'OUTOFSYNC: full pass over 134217728 bytes' 20
wait_status vol state IDLE 30
ctl vol resume | grep -q '^ok' || fail "resume"
wait_status vol state INSYNC 10
wait_converged "$EXT" "$M" 20
alive "$SERVER_PID" frep-server
echo "resync: dirty=$dirty bytes copied=$copied bytes (limit $limit)"
pass "crack -> OUTOFSYNC -> dirty resync ($copied of $dirty dirty bytes) -> INSYNC; resync-full and --resync=full copy everything; converged"
