#!/usr/bin/env bash
# Command-line contract: --help, --version, bad arguments exit 2 naming the argument,
# exclusive use of journal and data dir, warnings for risky settings.
source "$(dirname "$0")/lib.sh"
certs master-1

expect_exit2() { # expect_exit2 REGEX CMD...: exit status 2 and a one-line message matching REGEX
	local re=$1 rc=0
	shift
	"$@" >"$T/out" 2>"$T/err" </dev/null || rc=$?
	[ $rc -eq 2 ] || fail "'$*' exited $rc, expected 2 ($(cat "$T/err"))"
	[ "$(wc -l <"$T/err")" -eq 1 ] || fail "'$*' printed more than one line: $(cat "$T/err")"
	grep -Eq -- "$re" "$T/err" || fail "'$*' said '$(cat "$T/err")', expected /$re/"
}

for p in frep-client frep-server; do
	# Through a file: grep -q quits at its first match, and a longer help (over a pipe
	# buffer's 4 KiB of stdio) would then die of SIGPIPE, failing the pipeline.
	"$BIN/$p" --help >"$T/help" || fail "$p --help exited $?"
	grep -q "Usage: $p" "$T/help" || fail "$p --help"
	"$BIN/$p" --version | grep -Eq "^$p [0-9]+\.[0-9]+\.[0-9]+$" || fail "$p --version"
done

mkvol "$T/v0" 8M
C=("$BIN/frep-client" --volume "v=$T/v0" --mirror localhost:1 --journal "$T/j" --cert "$PKI/master-1.crt"
	--key "$PKI/master-1.key" --ca "$PKI/ca.crt" --nbd "unix:$T/s")
expect_exit2 '--journal-size: expected a size' "${C[@]}" --journal-size 12X
expect_exit2 '--journal-size: 512K is below the 1M minimum' "${C[@]}" --journal-size 512K
expect_exit2 "--volume: name 'a/b' is invalid" "${C[@]}" --volume a/b=$T/v0
expect_exit2 '--volume: expected NAME=PATH' "${C[@]}" --volume novalue
expect_exit2 '--mirror: expected HOST\[:PORT\]' "${C[@]}" --mirror host:notaport
expect_exit2 '--nbd: expected unix:PATH or HOST:PORT' "${C[@]}" --nbd nonsense
expect_exit2 "unknown option '--frobnicate'" "${C[@]}" --frobnicate
expect_exit2 "--compress: expected none, zstd or lz4, got 'gzip'" "${C[@]}" --compress gzip
expect_exit2 "--lanes: expected a number of TLS connections, 1-16, got '0'" "${C[@]}" --lanes 0
expect_exit2 "--lanes: expected a number of TLS connections, 1-16, got '17'" "${C[@]}" --lanes 17
expect_exit2 "--lanes: expected a number of TLS connections, 1-16, got '2x'" "${C[@]}" --lanes 2x
expect_exit2 '--mirror is required' "$BIN/frep-client" --volume "v=$T/v0"
expect_exit2 'IP address.*--server-name' "${C[@]}" --mirror 127.0.0.1:7460
expect_exit2 "no such file|No such file|cannot|nonexistent" "${C[@]}" --volume "v=$T/nonexistent"
expect_exit2 '--nbd-tls-cert, --nbd-tls-key and --nbd-tls-ca go together' "${C[@]}" \
	--nbd-tls-cert "$PKI/server.crt"
expect_exit2 "--nbd-tls-key $T/nokey: No such file" "${C[@]}" --nbd-tls-cert "$PKI/server.crt" \
	--nbd-tls-key "$T/nokey" --nbd-tls-ca "$PKI/ca.crt"
S=("$BIN/frep-server" --listen 127.0.0.1:0 --data-dir "$T/d" --cert "$PKI/server.crt"
	--key "$PKI/server.key" --ca "$PKI/ca.crt")
expect_exit2 '--listen: expected HOST\[:PORT\]' "${S[@]}" --listen 'x:y:z'
expect_exit2 '--data-dir is required' "$BIN/frep-server" --listen 127.0.0.1:0
expect_exit2 "--log-level: expected error, warn, info or debug" "${S[@]}" --log-level loud
expect_exit2 "--preallocate: expected full .* or sparse .*, got 'bogus'" "${S[@]}" --preallocate=bogus
expect_exit2 '--preallocate needs a value' "${S[@]}" --preallocate

# Exclusive use: a second server on the same data dir, a second client on the same journal.
start_server
expect_exit2 'in use by another frep-server' "${S[@]}" --data-dir "$T/mirror"
start_client v "$T/v0" master-1 --keylog "$T/keys.log"
wait_log "$T/client-v.log" 'key log' 10
expect_exit2 'is in use by another frep-client' "$BIN/frep-client" --volume "v=$T/v0" \
	--mirror "127.0.0.1:$SERVER_PORT" --server-name frep-mirror --journal "$T/v.journal" \
	--cert "$PKI/master-1.crt" --key "$PKI/master-1.key" --ca "$PKI/ca.crt" --nbd "unix:$T/other.sock"
wait_log "$SERVER_LOG" 'volume=v .*state REPLICATE -> INSYNC' 20
grep -q '^CLIENT_RANDOM [0-9a-f]\{64\} [0-9a-f]\{96\}$' "$T/keys.log" || fail "key log has no NSS line"
stop "$CLIENT_PID"

# A smaller-than-default journal warns; an NBD listener off loopback warns.
mkvol "$T/w0" 8M
JOURNAL=$T/w.journal start_client w "$T/w0" master-1 --journal-size 2M
wait_log "$T/client-w.log" 'WARN .*--journal-size 2.0M is below the default 100M' 10
# The advertised maximum payload is at most journal size / 8.
max=$(nbdinfo --json "$(nbd_uri w)" | python3 -c 'import json,sys; print(json.load(sys.stdin)["exports"][0]["block_size_maximum"])')
[ "$max" -le $((2 * 1048576 / 8)) ] && [ "$max" -ge 4096 ] || fail "block_size_maximum $max with a 2M journal"
stop "$CLIENT_PID"
"$BIN/frep-client" --volume "w=$T/w0" --mirror "127.0.0.1:$SERVER_PORT" --server-name frep-mirror \
	--journal "$T/w.journal" --cert "$PKI/master-1.crt" --key "$PKI/master-1.key" \
	--ca "$PKI/ca.crt" --nbd 0.0.0.0:0 >"$T/client-w2.log" 2>&1 &
PIDS+=($!)
wait_log "$T/client-w2.log" 'WARN .*NBD.*no authentication' 10
stop $!
# NEW: a mirror buffer that cannot be reserved is ERROR, exit 1, with the reason.
mkdir -p "$T/tiny"
rc=0
unshare -m bash -c "mount -t tmpfs -o size=1M tmpfs '$T/tiny' && exec '$BIN/frep-client' \
	--volume 'v=$T/v0' --mirror localhost:1 --journal '$T/tiny/j' --journal-size 8M \
	--cert '$PKI/master-1.crt' --key '$PKI/master-1.key' --ca '$PKI/ca.crt' --nbd 'unix:$T/n.sock'" \
	2>"$T/new.err" || rc=$?
[ $rc -eq 1 ] || fail "unreservable journal: exit $rc, expected 1 ($(cat "$T/new.err"))"
grep -Eq 'state NEW -> ERROR \(event JOURNAL_FAIL\) reason: .*(No space left|space)' "$T/new.err" ||
	fail "unreservable journal: $(cat "$T/new.err")"
[ ! -S "$T/n.sock" ] || fail "NBD served without a mirror buffer"

alive "$SERVER_PID" frep-server
pass "help, version, 15 bad-argument cases, exclusive use, warnings"
