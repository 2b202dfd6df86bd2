#!/usr/bin/env bash
# Remote admin: --admin-listen serves the API over TLS with the admin PKI's certificate
# and CA (gen-certs.sh --admin). An identity in --admin-allow gets answers; another one
# from the same CA gets PERMISSION_DENIED, logged with its peer address; a certificate
# from the replication CA fails the handshake; and an admin certificate can never
# replicate (the mirror trusts only the replication CA). Bad options exit 2.
source "$(dirname "$0")/lib.sh"
certs master-1
admin_certs alice mallory
printf '# operators\nalice\n' >"$T/admin-allow"

mkvol "$T/e0" 8M
start_server --admin-listen 127.0.0.1:0 --admin-cert "$APKI/server.crt" \
	--admin-key "$APKI/server.key" --admin-ca "$APKI/ca.crt" --admin-allow "$T/admin-allow"
wait_log "$SERVER_LOG" 'admin API on 127\.0\.0\.1:[0-9]+ \(TLS' 10
APORT=$(grep -Eo 'admin API on 127\.0\.0\.1:[0-9]+' "$SERVER_LOG" | cut -d: -f2)
start_client vol "$T/e0" master-1
wait_status vol state INSYNC 20
AC=(/usr/bin/python3 "$FREP_SRC/tests/tools/admin-client.py")

# as CN: Status over TLS as operator CN (its admin certificate).
as() {
	local cn=$1
	shift
	"${AC[@]}" --tls "$APKI/ca.crt" "$APKI/$cn.crt" "$APKI/$cn.key" frep-admin \
		"127.0.0.1:$APORT" "$@"
}

out=$(as alice Status --field state) || fail "alice's Status over TLS: $out"
[ "$out" = INSYNC ] || fail "alice sees state '$out'"
out=$(as mallory Status 2>&1) && fail "mallory, not in --admin-allow, got an answer: $out"
[[ $out == "PERMISSION_DENIED: this identity is not allowed to use the admin API (--admin-allow)" ]] ||
	fail "mallory: $out"
wait_log "$SERVER_LOG" "admin: refused Status from peer ipv4:127\.0\.0\.1:[0-9]+: identity 'mallory' is not in --admin-allow" 5
out=$(as mallory Pause '{"volume": "vol"}' 2>&1) && fail "mallory paused: $out"
[[ $out == PERMISSION_DENIED:* ]] || fail "mallory's Pause: $out"
# A replication certificate is from another CA: no TLS session at all.
rc=0
out=$("${AC[@]}" --tls "$APKI/ca.crt" "$PKI/master-1.crt" "$PKI/master-1.key" frep-admin \
	"127.0.0.1:$APORT" Status 2>&1) || rc=$?
[ $rc -eq 3 ] && [[ $out == UNAVAILABLE:* ]] || fail "a replication certificate on the admin port: rc $rc, $out"

# An admin certificate cannot replicate: the mirror refuses it at the handshake.
mkvol "$T/e1" 8M
"$BIN/frep-client" --volume "evil=$T/e1" --mirror "127.0.0.1:$SERVER_PORT" --server-name frep-mirror \
	--journal "$T/evil.journal" --cert "$APKI/alice.crt" --key "$APKI/alice.key" --ca "$PKI/ca.crt" \
	--nbd "unix:$T/evil.sock" --backoff 0.2:0.5 >"$T/client-evil.log" 2>&1 &
PIDS+=($!)
wait_log "$SERVER_LOG" 'rejected peer=127\.0\.0\.1:[0-9]+: .*(verif|certificate)' 15
[ ! -e "$T/mirror/evil" ] || fail "an admin certificate created mirror volume evil"

# Option errors: one line, exit 2, nothing started.
bad() {
	local want=$1 rc=0 out
	shift
	out=$("$BIN/frep-server" --listen 127.0.0.1:0 --data-dir "$T/m2" --cert "$PKI/server.crt" \
		--key "$PKI/server.key" --ca "$PKI/ca.crt" "$@" 2>&1) || rc=$?
	[ $rc -eq 2 ] || fail "frep-server $* exited $rc: $out"
	[[ $out == *"$want"* ]] || fail "frep-server $*: want '$want', got: $out"
}
bad "--admin-listen needs --admin-cert, --admin-key, --admin-ca and --admin-allow" \
	--admin none --admin-listen 127.0.0.1:0
bad "--admin-cert, --admin-key, --admin-ca and --admin-allow need --admin-listen HOST:PORT" \
	--admin none --admin-allow "$T/admin-allow"
: >"$T/empty-allow"
bad "lists no identity" --admin none --admin-listen 127.0.0.1:0 --admin-cert "$APKI/server.crt" \
	--admin-key "$APKI/server.key" --admin-ca "$APKI/ca.crt" --admin-allow "$T/empty-allow"
bad "--admin-ca $T/nope: No such file or directory" --admin none --admin-listen 127.0.0.1:0 \
	--admin-cert "$APKI/server.crt" --admin-key "$APKI/server.key" --admin-ca "$T/nope" \
	--admin-allow "$T/admin-allow"
bad "another daemon is serving it" --admin "unix:$FREP_RUN_DIR/server.sock"
touch "$T/not-a-socket"
bad "exists and is not a socket" --admin "unix:$T/not-a-socket"
bad "--admin: expected unix:PATH or none, got 'tcp:1'" --admin tcp:1
rc=0
out=$("$BIN/frep-client" --volume "x=$T/e1" --mirror 127.0.0.1:1 --server-name frep-mirror \
	--journal "$T/x.journal" --cert "$PKI/master-1.crt" --key "$PKI/master-1.key" --ca "$PKI/ca.crt" \
	--nbd "unix:$T/x.sock" --admin "unix:$FREP_RUN_DIR/client-vol.sock" 2>&1) || rc=$?
[ $rc -eq 2 ] && [[ $out == *"another daemon is serving it"* ]] || fail "frep-client on a live admin socket: rc $rc, $out"

alive "$SERVER_PID" frep-server
stop "$CLIENT_PID"
stop "$SERVER_PID"
pass "TLS admin: allowed identity served, other identity PERMISSION_DENIED and logged with its peer, other CA refused, admin certificate cannot replicate, bad options exit 2"
