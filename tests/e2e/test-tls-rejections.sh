#!/usr/bin/env bash
# frep-server rejects every unauthenticated or wrong peer, logs who and why, and keeps serving.
source "$(dirname "$0")/lib.sh"
certs master-1
bash "$FREP_SRC/scripts/gen-certs.sh" "$T/other-ca" master-1   # a CA the server does not trust

start_server
S="127.0.0.1:$SERVER_PORT"
probe() { # probe NAME ARGS...: one openssl s_client attempt, bounded
	local name=$1
	shift
	timeout 10 openssl s_client -connect "$S" -tls1_2 -servername frep-mirror -CAfile "$PKI/ca.crt" \
		"$@" </dev/null >"$T/probe-$name.out" 2>&1 || true
}
probe nocert -alpn frep/1
wait_log "$SERVER_LOG" 'rejected peer=127\.0\.0\.1:[0-9]+: .*no client certificate' 10

probe otherca -alpn frep/1 -cert "$T/other-ca/master-1.crt" -key "$T/other-ca/master-1.key"
wait_log "$SERVER_LOG" 'rejected peer=127\.0\.0\.1:[0-9]+: .*(not signed by the configured CA|not trusted|CA)' 10

probe noalpn -cert "$PKI/master-1.crt" -key "$PKI/master-1.key"
wait_log "$SERVER_LOG" 'rejected peer=127\.0\.0\.1:[0-9]+: .*no ALPN' 10

probe h2 -alpn h2 -cert "$PKI/master-1.crt" -key "$PKI/master-1.key"
wait_log "$SERVER_LOG" 'rejected peer=127\.0\.0\.1:[0-9]+: .*h2' 10

timeout 5 bash -c "printf 'GET / HTTP/1.0\r\n\r\n' >/dev/tcp/127.0.0.1/$SERVER_PORT" || true
wait_log "$SERVER_LOG" 'rejected peer=127\.0\.0\.1:[0-9]+: .*plaintext' 10

# Client side: a mirror whose certificate does not carry the expected name is refused (minor: RESET).
mkvol "$T/v0" 4M; fill "$T/v0" 0 1 v
start_client v "$T/v0" master-1 --server-name wrong.example
wait_log "$T/client-v.log" 'wrong\.example' 15
wait_log "$T/client-v.log" 'state INIT -> RESET' 5
stop "$CLIENT_PID"
# An IP literal without --server-name is refused up front, with the reason.
rc=0
"$BIN/frep-client" --volume v=$T/v0 --mirror "$S" --journal "$T/x.journal" --cert "$PKI/master-1.crt" \
	--key "$PKI/master-1.key" --ca "$PKI/ca.crt" --nbd unix:$T/x.sock 2>"$T/ip.err" || rc=$?
[ $rc -eq 2 ] || fail "IP literal without --server-name: exit $rc, expected 2"
grep -q -- '--server-name' "$T/ip.err" || fail "IP literal message: $(cat "$T/ip.err")"

# After all of that, an honest master still gets through.
: >"$T/client-v.log"
start_client v "$T/v0" master-1
wait_log "$SERVER_LOG" 'volume=v .*state REPLICATE -> INSYNC' 20
alive "$SERVER_PID" frep-server
pass "no cert, other CA, no ALPN, ALPN h2, plaintext, wrong server name all rejected; server kept serving"
