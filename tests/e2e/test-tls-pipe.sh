#!/usr/bin/env bash
# common/tls.c via bench/tls-pipe: bulk transfer, server rejections with reasons, client refusals.
source "$(dirname "$0")/lib.sh"
PIPE=$BIN/bench/tls-pipe
[ -x "$PIPE" ] || fail "$PIPE is not built"
certs master-1
bash "$FREP_SRC/scripts/gen-certs.sh" "$T/other-ca" master-1 # a CA nobody here trusts
CHACHA=TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256

# --- 1. a 64 MiB transfer completes, on the preferred suite, with a key log ----
out=$(timeout 30 "$PIPE" --bytes 64M --chunk 1M --certs "$PKI" --keylog "$T/keys.txt" \
	2>"$T/bench.log") || fail "bench transfer failed: $(cat "$T/bench.log")"
[[ $out =~ ^tls-pipe\ bytes=67108864\ seconds=[0-9.]+\ MBps=[0-9.]+\ cipher=$CHACHA\  ]] ||
	fail "bench output: $out"
grep -q 'key log enabled: TLS sessions can be decrypted by anyone who reads' "$T/bench.log" ||
	fail "no key-log warning: $(cat "$T/bench.log")"
[ "$(grep -Ec '^CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}$' "$T/keys.txt")" = 1 ] ||
	fail "key log: $(cat "$T/keys.txt")"
[ "$(stat -c %a "$T/keys.txt")" = 600 ] || fail "key log mode $(stat -c %a "$T/keys.txt")"

# --- 2. server mode: each bad peer is rejected with its reason; the server keeps serving ---
SLOG=$T/server.log
# Started directly, not under timeout(1): cleanup must signal the server itself
# (and SIGKILL it if it does not exit), not a wrapper that leaves it orphaned.
"$PIPE" --server 127.0.0.1:0 --certs "$PKI" --timeout 500 >"$SLOG" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_log "$SLOG" 'listening on 127\.0\.0\.1:[0-9]+' 10
PORT=$(grep -Eo 'listening on 127\.0\.0\.1:[0-9]+' "$SLOG" | cut -d: -f2)
S=127.0.0.1:$PORT
REJ='rejected peer=127\.0\.0\.1:[0-9]+: '

probe() { # probe NAME S_CLIENT_ARGS...: one bounded openssl s_client attempt
	local name=$1
	shift
	timeout 10 openssl s_client -connect "$S" -tls1_2 -servername frep-mirror \
		-CAfile "$PKI/ca.crt" "$@" </dev/null >"$T/probe-$name.out" 2>&1 || true
}
# rejected N REGEX: the N-th rejection line carries REGEX, so a reason cannot be
# credited to an earlier probe.
nrejected() { [ "$(grep -c 'rejected peer=' "$SLOG")" -ge "$1" ]; }
rejected() {
	wait_for 10 "rejection #$1" nrejected "$1"
	grep 'rejected peer=' "$SLOG" | sed -n "$1p" | grep -Eq "$REJ$2" ||
		fail "rejection #$1: want '$2', got: $(grep 'rejected peer=' "$SLOG" | sed -n "$1p")"
}

probe nocert -alpn frep/1
rejected 1 'no client certificate$'
probe otherca -alpn frep/1 -cert "$T/other-ca/master-1.crt" -key "$T/other-ca/master-1.key"
rejected 2 'client certificate not signed by the configured CA'
probe noalpn -cert "$PKI/master-1.crt" -key "$PKI/master-1.key"
rejected 3 'client offered no ALPN; frep/1 required$'
probe h2 -alpn h2 -cert "$PKI/master-1.crt" -key "$PKI/master-1.key"
rejected 4 'client offered ALPN h2; frep/1 required$'
probe servercert -alpn frep/1 -cert "$PKI/server.crt" -key "$PKI/server.key"
rejected 5 'client certificate rejected: .*extendedKeyUsage'
timeout 5 bash -c "printf 'GET / HTTP/1.0\r\n\r\n' >/dev/tcp/127.0.0.1/$PORT" || true
rejected 6 "plaintext, not TLS \\(first byte 0x47 'G'\\)$"
# A handshake record header, then silence: bounded by --timeout.
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf '\x16\x03\x01' >&3
rejected 7 'TLS handshake timed out after 500 ms$'
exec 3>&-

# The same s_client with everything right is accepted, so the probes above were fair.
probe good -alpn frep/1 -cert "$PKI/master-1.crt" -key "$PKI/master-1.key"
wait_log "$SLOG" 'accepted peer=127\.0\.0\.1:[0-9]+ cn=master-1 cipher=' 10
grep -q "Verification: OK" "$T/probe-good.out" || fail "s_client: $(cat "$T/probe-good.out")"
grep -q "ALPN protocol: frep/1" "$T/probe-good.out" ||
	fail "s_client ALPN: $(cat "$T/probe-good.out")"

# After all of that, the real client still gets through and its bytes arrive.
timeout 20 "$PIPE" --connect "$S" --certs "$PKI" --bytes 3M --chunk 64K 2>"$T/good.log" ||
	fail "good client: $(cat "$T/good.log")"
grep -q "connected to $S cn=frep-mirror cipher=$CHACHA" "$T/good.log" ||
	fail "good client log: $(cat "$T/good.log")"
wait_log "$SLOG" 'cn=master-1: received 3145728 bytes and close_notify' 10

# --- 3. client side: refusals name the reason ---------------------------------
# client_fails NAME REGEX ARGS...: tls-pipe --connect must exit 1 saying REGEX.
client_fails() {
	local name=$1 want=$2 rc=0
	shift 2
	timeout 20 "$PIPE" --certs "$PKI" "$@" 2>"$T/client-$name.log" || rc=$?
	[ $rc -eq 1 ] || fail "$name: exit $rc, expected 1: $(cat "$T/client-$name.log")"
	grep -Eq "$want" "$T/client-$name.log" || fail "$name: $(cat "$T/client-$name.log")"
}
client_fails wrongname 'server certificate does not match name wrong\.example' \
	--connect "$S" --server-name wrong.example
client_fails otherca 'server certificate not signed by the configured CA' \
	--connect "$S" --ca "$T/other-ca/ca.crt"
# Connection refused: a port bound (so nobody else takes it) but not listening.
exec 4< <(exec python3 -c 'import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
time.sleep(30)')
PYPID=$!
PIDS+=("$PYPID")
read -r -t 10 -u 4 DEAD_PORT || fail "no unused port"
client_fails refused "connect to 127\\.0\\.0\\.1:$DEAD_PORT: Connection refused" \
	--connect "127.0.0.1:$DEAD_PORT"
kill "$PYPID"
# A TLS server without ALPN (-www: it ignores stdin): the handshake succeeds, frep refuses.
timeout 20 openssl s_server -accept 127.0.0.1:0 -tls1_2 -cert "$PKI/server.crt" \
	-key "$PKI/server.key" -CAfile "$PKI/ca.crt" -Verify 1 -naccept 1 -www \
	</dev/null >"$T/s_server.log" 2>&1 &
PIDS+=($!)
wait_log "$T/s_server.log" '^ACCEPT 127\.0\.0\.1:[0-9]+' 10
SS=$(grep -Eo '^ACCEPT 127\.0\.0\.1:[0-9]+' "$T/s_server.log" | cut -d' ' -f2)
client_fails noalpn 'server selected no ALPN; frep/1 required' --connect "$SS"

# The server logged no error of its own and is still serving.
alive "$SERVER_PID" "tls-pipe --server"
! grep -q ' ERROR ' "$SLOG" || fail "server errors: $(grep ' ERROR ' "$SLOG")"
pass "64 MiB on $CHACHA; no cert, other CA, server cert, no ALPN, h2, plaintext, timeout rejected" \
	"with reasons; wrong name, other CA, refused, no ALPN refused by the client"
