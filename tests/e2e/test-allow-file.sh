#!/usr/bin/env bash
# --allow: only listed identities may create or own a volume name.
source "$(dirname "$0")/lib.sh"
certs master-1 master-2

cat >"$T/allow" <<'RULES'
# volume-glob   identity
db-*            master-1
scratch         *
RULES
mkvol "$T/v0" 4M; fill "$T/v0" 0 1 v
start_server --allow "$T/allow"

start_client db-main "$T/v0" master-2
wait_log "$T/client-db-main.log" 'state INIT -> ERROR.*UNAUTHORISED.*master-2 is not allowed for volume db-main' 20
wait_log "$SERVER_LOG" 'UNAUTHORISED' 5
stop "$CLIENT_PID"
[ ! -e "$T/mirror/db-main/extent.0" ] || fail "refused master created extents"

: >"$T/client-db-main.log"
JOURNAL=$T/db2.journal start_client db-main "$T/v0" master-1
wait_log "$SERVER_LOG" 'volume=db-main .*state REPLICATE -> INSYNC' 20
same_bytes "$T/v0" "$(mirror_extents db-main 1)" || fail "allowed volume differs"

JOURNAL=$T/s.journal start_client scratch "$T/v0" master-2
wait_log "$SERVER_LOG" 'volume=scratch .*state REPLICATE -> INSYNC' 20

# A malformed allow file is refused at start with the line number.
printf 'only-one-field\n' >"$T/bad-allow"
rc=0
"$BIN/frep-server" --listen 127.0.0.1:0 --data-dir "$T/m2" --cert "$PKI/server.crt" \
	--key "$PKI/server.key" --ca "$PKI/ca.crt" --allow "$T/bad-allow" 2>"$T/bad.err" || rc=$?
[ $rc -eq 2 ] || fail "bad --allow file: exit $rc, expected 2"
grep -q 'bad-allow:1: expected "VOLUME-GLOB IDENTITY"' "$T/bad.err" || fail "message: $(cat "$T/bad.err")"
alive "$SERVER_PID" frep-server
pass "--allow refuses unlisted masters, admits listed ones and globs"
