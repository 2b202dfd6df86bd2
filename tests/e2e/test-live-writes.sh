#!/usr/bin/env bash
# Writes through real NBD clients during REPLICATE and during INSYNC all reach the mirror.
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 128M; mkvol "$T/e1" 128M
fill "$T/e0" 0 96 x; fill "$T/e1" 16 64 y
EXT="$T/e0,$T/e1"
URI=$(nbd_uri vol1)
start_server
start_client vol1 "$EXT"

# Writer runs from the first moment: its writes race the bulk copy.
# Paced (about 13 MB/s for 3 s) so the 100 MiB buffer does not overflow during the copy:
# an overflow would crack the mirror and the final pass would see no writes.
timeout 40 nbdsh -u "$URI" -c '
import os, time
end = time.time() + 3
i = 0
while time.time() < end and i < 600:
    h.pwrite(os.urandom(65536), (i * 7919 * 4096) % (256 * 1024 * 1024 - 65536))
    i += 1
    time.sleep(0.005)
print("writes", i)
' >"$T/writer.log" 2>&1 || fail "writer failed: $(cat "$T/writer.log")"
wait_log "$T/client-vol1.log" 'state REPLICATE -> INSYNC' 40
# The copy's catch-up range proves transactions were committed while it ran.
during=$(grep -Eo 'sequencing TXIDs [0-9]+\.\.[0-9]+' "$T/client-vol1.log" | head -n1)
first=${during#sequencing TXIDs }; last=${first#*..}; first=${first%..*}
[ "$last" -ge "$first" ] || fail "no write landed during REPLICATE ($during)"
grep -q 'mirror cracked' "$T/client-vol1.log" && fail "the paced writer overflowed the buffer"

# INSYNC: a write crossing the extent boundary, a trim, a zero, with qemu-io.
qemu-io -f raw "$URI" \
	-c "write -P 0x5a $((128 * 1048576 - 8192)) 16k" \
	-c "discard 1M 2M" \
	-c "write -z 8M 1M" >"$T/qemu-io.log" 2>&1 || fail "qemu-io: $(cat "$T/qemu-io.log")"
qemu-io -f raw -r "$URI" -c "read -P 0x5a $((128 * 1048576 - 8192)) 16k" -c "read -P 0 1M 2M" \
	>"$T/qemu-read.log" 2>&1 || fail "read-back through NBD: $(cat "$T/qemu-read.log")"
grep -q 'Pattern verification failed' "$T/qemu-read.log" && fail "NBD read-back pattern mismatch"

M=$(mirror_extents vol1 2)
wait_converged "$EXT" "$M" 30
# The preallocated mirror (the default) zeroed the trimmed range in place: it reads zeros
# (converged) and the extent keeps all its space (MP-3). Thin mirrors: test-thin-mirror.sh.
F=$T/mirror/vol1/extent.0
[ $(($(stat -c '%b * %B' "$F"))) -ge "$(stat -c %s "$F")" ] ||
	fail "the trim gave back space on a preallocated mirror: $(stat -c '%b blocks of %B, size %s' "$F")"
alive "$SERVER_PID" frep-server
alive "$CLIENT_PID" frep-client
stop "$CLIENT_PID"
stop "$SERVER_PID"
pass "writes during REPLICATE ($during) and INSYNC (boundary write, trim, zero) converged"
