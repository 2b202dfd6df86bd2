#!/usr/bin/env bash
# Lanes (spec LANE-2, LANE-5): connections that claim to join a session and may not are
# refused, each with its Error and message, and the real session goes on untouched: a lane
# of another session (wrong session ID), of another identity, after READY, with a lane
# index outside the session, offering version 1 only.
#
# frep-conform peer (tests/e2e/peer.sh) plays the joining lanes; frep-client runs the real
# session over two lanes, whose session ID it logs.
source "$(dirname "$0")/lib.sh"
certs master-1 master-2
source "$(dirname "$0")/peer.sh"

mkvol "$T/e0" 16M
fill "$T/e0" 0 12 a
start_server
start_client vol "$T/e0" master-1 --lanes 2
wait_status vol state INSYNC 30
wait_log "$T/server.log" 'lane 1 of 2 joined session' 5
sid=$(grep -Eo 'session [0-9a-f]{32}\)' "$T/client-vol.log" | tail -n1 | tr -d ')' | cut -d' ' -f2)
[ -n "$sid" ] || fail "frep-client logged no session ID"

# oct HEX: protobuf text escapes of the bytes HEX spells.
oct() {
	local out="" i
	for ((i = 0; i < ${#1}; i += 2)); do out+=$(printf '\\%03o' "0x${1:i:2}"); done
	printf '%s' "$out"
}
uuid=$(oct "$(sed -n 's/^uuid=//p' "$T/vol.journal.meta")")
gen=$(sed -n 's/^generation=//p' "$T/vol.journal.meta")
# join FILE SESSION_ID_HEX LANE LANE_COUNT [PROTO_MIN PROTO_MAX]: a joining lane's HELLO.
join() {
	enc Hello "$W/$1" <<EOF
proto_min: ${5:-2} proto_max: ${6:-2} master_node: "intruder" volume: "vol" volume_uuid: "$uuid"
generation: $gen session_id: "$(oct "$2")" lane: $3 lane_count: $4 retained_first_txid: 0
committed_txid: 0 journal_size: 16777216
EOF
}

# Another session's ID, same identity: there is no such session to join.
join other.bin 000102030405060708090a0b0c0d0e0f 1 2
refused wrongsid 15 'no session 000102030405060708090a0b0c0d0e0f of volume vol is open here' \
	<<<'send HELLO other.bin'
# The real session's ID from another identity: a lane is its lane 0's identity (TLS-6).
join real.bin "$sid" 1 2
PEER_CN=master-2 refused intruder 4 \
	'master master-2 asks to join a session of volume vol, which master master-1 holds' \
	<<<'send HELLO real.bin'
wait_log "$T/server.log" 'ERROR volume=vol master master-2 .*UNAUTHORISED: master master-2 asks to join' 5
# The real session, its own identity, but long past READY: lanes join before the copy.
refused late 15 "session $sid of volume vol is past READY: its lanes join before its first copy" \
	<<<'send HELLO real.bin'
# A lane index outside the session, and a version-1 offer (one lane only in version 1).
join index.bin "$sid" 2 2
refused index 15 'lane 2 of 2: a lane is 1\.\.lane_count-1' <<<'send HELLO index.bin'
join v1.bin "$sid" 1 2 1 1
refused v1 15 'offers protocol versions 1\.\.1: a joining lane offers exactly version 2' \
	<<<'send HELLO v1.bin'

# The real session never noticed: the same session, still in sync, and it still replicates.
[ "$(grep -c 'connected to mirror' "$T/client-vol.log")" = 1 ] ||
	fail "the master reconnected: $(grep 'connected to mirror\|WARN\|ERROR' "$T/client-vol.log")"
grep -q 'the session ends' "$T/server.log" && fail "a refused lane ended the real session"
qemu-io -f raw "$(nbd_uri vol)" -c "write -P 0x5a 1M 64k" >"$T/qemu-io.log" 2>&1 ||
	fail "qemu-io: $(cat "$T/qemu-io.log")"
wait_status vol lag_tx 0 20
[ "$(ctl_field vol state)" = INSYNC ] || fail "the session left INSYNC"
wait_converged "$T/e0" "$(mirror_extents vol 1)" 20
alive "$CLIENT_PID" frep-client
stop "$CLIENT_PID"
stop_server_clean
pass "5 refused joins (wrong session, other identity, past READY, bad index, version 1); the session went on"
