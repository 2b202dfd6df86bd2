#!/usr/bin/env bash
# An interrupted REPLICATE resumes from the mirror's durable copy cursor, not from zero:
# after kill -9 of the master, and after kill -9 of the mirror, while writes go on.
source "$(dirname "$0")/lib.sh"
certs master-1

mkvol "$T/e0" 96M; mkvol "$T/e1" 64M; fill "$T/e0" 0 96 a; fill "$T/e1" 0 64 b
EXT="$T/e0,$T/e1"
M=$(mirror_extents vol 2)
LOG=$T/client-vol.log
META=$T/mirror/vol/meta
cursor() { sed -n 's/^copy_cursor=//p' "$META" 2>/dev/null; }
cursor_past() { local c; c=$(cursor); [ -n "$c" ] && [ "$c" -ge "$1" ]; }
# data bytes the last copy pass sent, from "copy walked N bytes (D data)"
last_copied() { grep -Eo 'copy walked [0-9]+ bytes \([0-9]+ data\)' "$LOG" | tail -n1 | grep -Eo '\([0-9]+' | tr -d '('; }

start_server
# 160 MiB of data at 40 MiB/s: about 4 s of copy, plenty of time to interrupt it.
start_client vol "$EXT" master-1 --max-rate 40M --backoff 0.2:1
wait_for 20 "a durable copy cursor past 64 MiB" cursor_past $((64 << 20))
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x31 1M 64k' -c 'write -P 0x32 100M 64k' >/dev/null
kill -KILL "$CLIENT_PID"
at=$(cursor)

# Master restart: resume at the mirror's cursor with the old base; the writes made
# during the first attempt (below and above the cursor) come back by replay.
: >"$LOG"
start_client vol "$EXT" master-1 --backoff 0.2:1
wait_log "$LOG" "resuming the interrupted copy at offset $at" 20
wait_log "$LOG" 'state REPLICATE -> INSYNC' 30
copied=$(last_copied)
[ "$copied" -le $(((160 << 20) - at)) ] || fail "resumed copy sent $copied bytes, cursor was $at"
wait_converged "$EXT" "$M" 20
stop "$CLIENT_PID"

# Mirror restart mid-copy: a resync-full forces a new full pass; kill -9 the mirror in it.
rm -rf "$T/mirror/vol"
: >"$LOG"
start_client vol "$EXT" master-1 --max-rate 40M --backoff 0.2:1
wait_for 20 "a durable copy cursor past 64 MiB" cursor_past $((64 << 20))
kill -KILL "$SERVER_PID"
at=$(cursor)
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x33 2M 64k' >/dev/null
SERVER_PORT_WANTED=$SERVER_PORT start_server
wait_log "$SERVER_LOG" 'volume=vol recovered: .*phase 2' 10
wait_log "$LOG" "resuming the interrupted copy at offset $at" 30
wait_log "$LOG" 'state REPLICATE -> INSYNC' 30
copied=$(last_copied)
[ "$copied" -le $(((160 << 20) - at)) ] || fail "resumed copy sent $copied bytes, cursor was $at"
wait_converged "$EXT" "$M" 20
alive "$SERVER_PID" frep-server
pass "copy resumed at the mirror's cursor after kill -9 of the master and of the mirror; converged"
