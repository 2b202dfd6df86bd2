#!/usr/bin/env bash
# MAKEPARTS severe errors end in ERROR with a message, and the server keeps serving others:
# a name owned by another master, the same name with another volume UUID, not enough space.
source "$(dirname "$0")/lib.sh"
certs master-1 master-2

mkvol "$T/a0" 8M; fill "$T/a0" 0 1 a
mkvol "$T/b0" 8M
start_server
start_client shared "$T/a0" master-1
wait_log "$SERVER_LOG" 'volume=shared .*state REPLICATE -> INSYNC' 20
OWNER_PID=$CLIENT_PID

# Another identity claims the same name: severe NAME_CLASH, client in ERROR, no retry.
# (Its own admin socket: the owner's frep-client, on this host too, holds the default one.)
JOURNAL=$T/clash.journal start_client shared "$T/b0" master-2 --admin "unix:$T/clash.adm"
wait_log "$T/client-shared.log" 'state INIT -> ERROR.*NAME_CLASH.*belongs to master master-1' 20
wait_log "$SERVER_LOG" 'NAME_CLASH' 5
alive "$CLIENT_PID" "frep-client in ERROR (keeps serving local I/O)"
qemu-io -f raw "$(nbd_uri shared)" -c "write -P 7 0 4k" >/dev/null || fail "local I/O stopped in ERROR"
stop "$CLIENT_PID"

# Same identity, but a fresh journal means a new volume UUID: also a name clash.
stop "$OWNER_PID"
: >"$T/client-shared.log"
JOURNAL=$T/fresh.journal start_client shared "$T/a0" master-1
wait_log "$T/client-shared.log" 'state INIT -> ERROR.*NAME_CLASH' 20
stop "$CLIENT_PID"
alive "$SERVER_PID" frep-server

# Not enough space: a second server on a 32 MiB tmpfs, in its own mount namespace.
mkdir -p "$T/small"
SMALL_LOG=$T/server-small.log
unshare -m bash -c "mount -t tmpfs -o size=32M tmpfs '$T/small' && exec '$BIN/frep-server' \
	--listen 127.0.0.1:0 --data-dir '$T/small/data' --cert '$PKI/server.crt' \
	--key '$PKI/server.key' --ca '$PKI/ca.crt' --admin none" >"$SMALL_LOG" 2>&1 &
SMALL_PID=$!
PIDS+=("$SMALL_PID")
wait_log "$SMALL_LOG" 'listening on 127\.0\.0\.1:[0-9]+' 20
SMALL_PORT=$(grep -Eo 'listening on 127\.0\.0\.1:[0-9]+' "$SMALL_LOG" | cut -d: -f2)
mkvol "$T/big0" 256M
SERVER_PORT=$SMALL_PORT start_client big "$T/big0" master-1 --journal-size 4M
wait_log "$T/client-big.log" 'state MAKEPARTS -> ERROR.*NO_SPACE' 20
wait_log "$SMALL_LOG" 'NO_SPACE: not enough space for volume big: it needs 32[0-9] MiB \(268435456 bytes to reserve for the whole volume and a 67108864-byte journal\) but .* has 3[0-2] MiB free; free space there or put --data-dir on a bigger disk \(or, for a thin volume, run frep-server --preallocate=sparse\)' 5
[ ! -e "/proc/$SMALL_PID/root$T/small/data/big/extent.0" ] || fail "the refused volume left an extent"
alive "$SMALL_PID" "frep-server (small)"

# The first server still serves a new volume while all that happened.
mkvol "$T/c0" 4M; fill "$T/c0" 1 1 c
start_client other "$T/c0" master-2
wait_log "$SERVER_LOG" 'volume=other .*state REPLICATE -> INSYNC' 20
same_bytes "$T/c0" "$(mirror_extents other 1)" || fail "other volume differs"
alive "$SERVER_PID" frep-server
pass "name clash (identity, uuid) and no space end in ERROR; servers stay up"
