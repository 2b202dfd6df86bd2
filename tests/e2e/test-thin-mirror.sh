#!/usr/bin/env bash
# Thin mirrors (frep-server --preallocate, spec MP-3, MP-7, DUR-15):
# - sparse: a 32 GiB volume with a few MiB of data is mirrored onto a 200 MiB file
#   system, reaches INSYNC and converges, its holes kept as holes;
# - sparse: a volume whose allocated bytes exceed the mirror's free space is refused
#   at MAKEPARTS with NO_SPACE, needed and free in the message, and nothing is created;
# - full (default): the space is reserved at creation and a trim from the master
#   gives none of it back; a later --preallocate=sparse leaves the volume as it was.
# (ENOSPC before an acknowledgement: test-mirror-disk-full.sh.)
source "$(dirname "$0")/lib.sh"
certs master-1 master-2

# sparse_same A B: every byte of A and B equal, reading only their data (SEEK_DATA of
# either; holes read zeros on both); prints the data bytes each holds.
sparse_same() {
	/usr/bin/python3 - "$1" "$2" <<'PY'
import os, sys
fds = [os.open(p, os.O_RDONLY) for p in sys.argv[1:3]]
size = os.fstat(fds[0]).st_size
if os.fstat(fds[1]).st_size != size:
	sys.exit("sizes differ")
def runs(fd):
	off, out = 0, []
	while off < size:
		try:
			d = os.lseek(fd, off, os.SEEK_DATA)
		except OSError:
			break
		h = min(os.lseek(fd, d, os.SEEK_HOLE), size)
		out.append((d, h))
		off = h
	return out
data = [runs(fd) for fd in fds]
for d, h in sorted(data[0] + data[1]):
	while d < h:
		n = min(h - d, 1 << 20)
		if os.pread(fds[0], n, d) != os.pread(fds[1], n, d):
			sys.exit("differ in [%d, %d)" % (d, d + n))
		d += n
print(*[sum(h - d for d, h in r) for r in data])
PY
}

# blocks_bytes FILE: bytes the file has allocated.
blocks_bytes() {
	echo $(($(stat -c %b "$1") * $(stat -c %B "$1")))
}

# mirror_status SOCKET VOLUME KEY: a field of the volume's status on a frep-server.
mirror_status() {
	ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0 "$BIN/frepctl" --admin "unix:$1" --json status "$2" |
		status_field "$3"
}

# --- sparse: 32 GiB onto 200 MiB ---------------------------------------------------
mkvol "$T/thin0" 32G
fill "$T/thin0" 0 2 a
fill "$T/thin0" 10000 2 b
fill "$T/thin0" 32766 1 c
SMALL_LOG=$T/server-small.log
SMALL_SOCK=$T/admin-small.sock
start_server_small 200M --admin "unix:$SMALL_SOCK" --preallocate=sparse
SMALL_PID=$SERVER_PID
start_client thin "$T/thin0" master-1 --journal-size 16M
wait_status thin state INSYNC 40
grep -Eq 'volume=thin .*extents created: 1 extent\(s\), 34359738368 bytes, sparse' "$SMALL_LOG" ||
	fail "no sparse creation in the server log"
[ "$(mirror_status "$SMALL_SOCK" thin preallocate)" = sparse ] ||
	fail "status preallocate: $(mirror_status "$SMALL_SOCK" thin preallocate)"
# Writes, a trim and a zero in INSYNC reach the mirror too.
qemu-io -f raw "$(nbd_uri thin)" -c 'write -P 0x5a 20000M 1M' -c 'discard 0 1M' \
	-c 'write -z 10000M 64K' >/dev/null || fail "local writes failed"
M=$MNT/data/thin/extent.0
wait_status thin lag_tx 0 20
wait_for 20 "the thin mirror byte-identical to the master" sparse_same "$T/thin0" "$M"
read -r master_data mirror_data < <(sparse_same "$T/thin0" "$M")
used=$(blocks_bytes "$M")
# The master holds 5 MiB of data after the trim (less the zeroed 64 KiB on ext4); the
# mirror about as much, far from 32 GiB.
[ "$used" -le $((8 << 20)) ] && [ "$mirror_data" -le $((8 << 20)) ] ||
	fail "the thin mirror allocated $used bytes ($mirror_data of data; master $master_data)"
[ "$used" -ge $((4 << 20)) ] || fail "the mirror holds only $used bytes: data is missing"

# --- sparse: more allocated on the master than free on the mirror -------------------
# Leave 40 MiB free, then offer a volume with 48 MiB of data.
# statfs of the path itself: df would look the path up in this namespace's mounts.
free=$(($(stat -f -c '%a * %S' "$MNT")))
fallocate -l $((free - (40 << 20))) "$MNT/filler"
mkvol "$T/big0" 1G
fill "$T/big0" 100 48 big
: >"$T/client-big.log"
start_client big "$T/big0" master-2 --journal-size 16M
wait_log "$T/client-big.log" 'state MAKEPARTS -> ERROR.*NO_SPACE' 20
msg='NO_SPACE: not enough space for volume big: it needs [0-9]+ MiB \(5033164[0-9] bytes the master has allocated and a [0-9]+-byte journal\) but [^ ]+ has (3[0-9]|40) MiB free; free space there or put --data-dir on a bigger disk'
grep -Eq "$msg" "$SMALL_LOG" || fail "no NO_SPACE message with needed and free: $(grep NO_SPACE "$SMALL_LOG")"
grep -Eq 'NO_SPACE.*not enough space for volume big' "$T/client-big.log" ||
	fail "the master's log lacks the mirror's reason"
[ ! -e "$MNT/data/big/extent.0" ] && [ ! -e "$MNT/data/big/journal" ] ||
	fail "the refused volume left extents or a journal behind"
stop "$CLIENT_PID"
alive "$SMALL_PID" "frep-server (sparse)"
# The first volume is still served.
qemu-io -f raw "$(nbd_uri thin)" -c 'write -P 0x5b 30000M 64K' >/dev/null || fail "write after refusal"
wait_status thin lag_tx 0 20
rm -f "$MNT/filler"

# --- full: the reservation survives a trim ------------------------------------------
mkvol "$T/full0" 16M
fill "$T/full0" 0 8 f
SERVER_DATA=$T/mirror
FULL_SOCK=$T/admin-full.sock
start_server --admin "unix:$FULL_SOCK"
FULL_PID=$SERVER_PID
start_client full "$T/full0" master-1
wait_status full state INSYNC 20
F=$T/mirror/full/extent.0
wait_converged "$T/full0" "$F" 20
before=$(blocks_bytes "$F")
[ "$before" -ge $((16 << 20)) ] || fail "a preallocated 16 MiB volume holds $before bytes after its copy"
qemu-io -f raw "$(nbd_uri full)" -c 'discard 0 4M' >/dev/null || fail "discard failed"
wait_status full lag_tx 0 20
wait_converged "$T/full0" "$F" 20
[ "$(blocks_bytes "$F")" -eq "$before" ] ||
	fail "a trim gave back space: $before bytes before, $(blocks_bytes "$F") after"
[ "$(mirror_status "$FULL_SOCK" full preallocate)" = full ] || fail "status preallocate not full"

# A server restarted with --preallocate=sparse leaves the volume preallocated.
stop "$CLIENT_PID"
stop "$FULL_PID"
start_server --admin "unix:$FULL_SOCK" --preallocate=sparse
[ "$(mirror_status "$FULL_SOCK" full preallocate)" = full ] || fail "detached status not full"
start_client full "$T/full0" master-1
wait_status full state INSYNC 20
wait_log "$SERVER_LOG" 'volume=full .*created with --preallocate=full and keeps it' 10
qemu-io -f raw "$(nbd_uri full)" -c 'discard 4M 4M' >/dev/null || fail "discard failed"
wait_status full lag_tx 0 20
wait_converged "$T/full0" "$F" 20
[ "$(blocks_bytes "$F")" -eq "$before" ] || fail "the volume went thin after the restart"
pass "32 GiB thin volume on 200 MiB: converged, $used bytes used; NO_SPACE at MAKEPARTS; full keeps its reservation"
