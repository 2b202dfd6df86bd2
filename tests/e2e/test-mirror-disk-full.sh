#!/usr/bin/env bash
# Thin mirror (--preallocate=sparse) disk full while sequencing: the mirror cannot
# allocate a TX before acknowledging it (DUR-15) and answers NO_SPACE (severe), the
# master goes to ERROR with the reason and keeps serving local writes and its journal;
# once space is freed and the master restarted, the mirror gets the TXs again and
# converges. (A preallocated mirror never gets there: its space is reserved at
# MAKEPARTS and kept, test-thin-mirror.sh.)
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 24M; fill "$T/e0" 0 2 d
LOG=$T/client-vol.log
# The mirror's data dir on a 112 MiB tmpfs in its own mount namespace: room for the
# 24 MiB volume and the mirror's 64 MiB journal (its minimum), until the filler takes the rest.
start_server_small 112M --preallocate=sparse
start_client vol "$T/e0" master-1 --journal-size 2M
wait_status vol state INSYNC 20

# Fill the mirror's file system, then write into a range that is a hole on the mirror.
dd if=/dev/zero of="$MNT/filler" bs=1M status=none 2>/dev/null || true
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x66 12M 4M' >/dev/null || fail "local write failed"
wait_log "$LOG" 'state INSYNC -> ERROR .*NO_SPACE' 20
wait_log "$SERVER_LOG" 'NO_SPACE: allocating [0-9]+ bytes at offset [0-9]+ for TX [0-9]+ before acknowledging it: No space left on device; free space' 5
[ "$(ctl_field vol state)" = ERROR ] && ctl_field vol error | grep -q NO_SPACE ||
	fail "status: state $(ctl_field vol state), last error $(ctl_field vol error)"
# The master keeps serving and loses nothing.
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x67 20M 1M' >/dev/null || fail "local write in ERROR"
qemu-io -f raw -r "$(nbd_uri vol)" -c 'read -P 0x66 12M 4M' -c 'read -P 0x67 20M 1M' |
	grep -q 'Pattern verification failed' && fail "master lost a write"
alive "$SERVER_PID" frep-server

# The operator frees space and restarts the master: replication resumes and converges.
rm -f "$MNT/filler"
stop "$CLIENT_PID"
: >"$LOG"
start_client vol "$T/e0" master-1 --journal-size 2M
wait_status vol state INSYNC 30
wait_converged "$T/e0" "$MNT/data/vol/extent.0" 20
pass "mirror disk full -> NO_SPACE -> master ERROR (local I/O kept); after freeing space, converged"
