#!/usr/bin/env bash
# --metrics on both daemons: /metrics in the Prometheus text format (parsed by
# prometheus_client) says exactly what the admin API's Status says at the same moment, for
# the master and the mirror volume of an idle INSYNC pair; a bad --metrics is exit 2.
source "$(dirname "$0")/lib.sh"
certs master-1
CHECK=(/usr/bin/python3 "$FREP_SRC/tests/tools/metrics-check.py")

# http URL [METHOD]: the HTTP status code on the first line, then the body.
http() {
	/usr/bin/python3 - "$@" <<'PY'
import sys, urllib.error, urllib.request
url, method = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "GET"
req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
try:
    r = urllib.request.urlopen(req, timeout=10)
except urllib.error.HTTPError as e:
    r = e
print(r.getcode())
sys.stdout.write(r.read().decode())
PY
}

# scrape URL: the body of a 200 answer.
scrape() {
	local out
	out=$(http "$1") && [ "${out%%$'\n'*}" = 200 ] && printf '%s\n' "${out#*$'\n'}"
}

# metrics_url LOG: the address the daemon logged ("metrics on http://...").
metrics_url() {
	grep -Eo 'metrics on http://127\.0\.0\.1:[0-9]+/metrics' "$1" | tail -n1 | cut -d' ' -f3
}

mkvol "$T/e0" 16M
fill "$T/e0" 0 4 m1
start_server --metrics 127.0.0.1:0
start_client vol "$T/e0" master-1 --metrics 127.0.0.1:0
wait_log "$T/client-vol.log" 'state READY -> INSYNC|state REPLICATE -> INSYNC' 20
qemu-io -f raw "$(nbd_uri vol)" -c 'write -P 0x42 4M 1M' -c 'write -P 0x43 9M 64K' >/dev/null ||
	fail "write"
wait_converged "$T/e0" "$(mirror_extents vol 1)" 20
SERVER_URL=$(metrics_url "$SERVER_LOG")
CLIENT_URL=$(metrics_url "$T/client-vol.log")
[ -n "$SERVER_URL" ] && [ -n "$CLIENT_URL" ] || fail "a daemon did not log its metrics address"

# A quiet pair: nothing unacknowledged. The rates still move once a second (they are
# sampled), so metrics-check takes a scrape only between two equal Status answers.
quiet() {
	local m
	m=$(scrape "$CLIENT_URL") && grep -qx 'frep_lag_transactions{volume="vol"} 0' <<<"$m"
}
wait_for 10 "the master to have nothing unacknowledged" quiet

out=$("${CHECK[@]}" "unix:$T/run/client-vol.sock" "$CLIENT_URL") || fail "frep-client: $out"
echo "frep-client: $out"
out=$("${CHECK[@]}" "unix:$T/run/server.sock" "$SERVER_URL") || fail "frep-server: $out"
echo "frep-server: $out"

# The figures are real ones: INSYNC, the writes counted, the mirror consistent.
scrape "$CLIENT_URL" >"$T/client.metrics" || fail "scraping $CLIENT_URL"
scrape "$SERVER_URL" >"$T/server.metrics" || fail "scraping $SERVER_URL"
grep -qx 'frep_state{volume="vol",state="INSYNC"} 1' "$T/client.metrics" || fail "client metrics: not INSYNC"
appends=$(sed -n 's/^frep_journal_appends_total{volume="vol"} //p' "$T/client.metrics")
[ "${appends:-0}" -ge 2 ] || fail "frep_journal_appends_total=$appends after two writes"
grep -qx 'frep_consistent{volume="vol"} 1' "$T/server.metrics" || fail "server metrics: mirror not consistent"
grep -qx 'frep_state{volume="vol",state="INSYNC"} 1' "$T/server.metrics" || fail "server metrics: not INSYNC"
# And the checker does tell: the mirror's Status against the master's metrics differs.
"${CHECK[@]}" "unix:$T/run/server.sock" "$CLIENT_URL" >"$T/cross.out" &&
	fail "metrics-check found the master's metrics equal to the mirror's Status"
grep -q '^differs  frep_role' "$T/cross.out" || fail "metrics-check cross: $(head -n 3 "$T/cross.out")"

# Only /metrics, only GET.
[ "$(http "${CLIENT_URL%/metrics}/" | head -n1)" = 404 ] || fail "GET / is not 404"
[ "$(http "$CLIENT_URL" POST | head -n1)" = 405 ] || fail "POST is not 405"

# A port in use is an operator error, before anything serves.
port=${SERVER_URL#http://127.0.0.1:}
port=${port%/metrics}
set +e
"$BIN/frep-server" --listen 127.0.0.1:0 --data-dir "$T/mirror2" --cert "$PKI/server.crt" \
	--key "$PKI/server.key" --ca "$PKI/ca.crt" --admin none --metrics "127.0.0.1:$port" \
	>"$T/busy.log" 2>&1
rc=$?
"$BIN/frep-server" --listen 127.0.0.1:0 --data-dir "$T/mirror2" --cert "$PKI/server.crt" \
	--key "$PKI/server.key" --ca "$PKI/ca.crt" --metrics nope >"$T/bad.log" 2>&1
rc_bad=$?
set -e
[ $rc = 2 ] && grep -q "frep-server: --metrics 127.0.0.1:$port: cannot serve: .*in use" "$T/busy.log" ||
	fail "--metrics on a port in use: exit $rc, $(cat "$T/busy.log")"
[ $rc_bad = 2 ] && grep -qF "frep-server: --metrics: expected HOST:PORT, got 'nope' (see" "$T/bad.log" ||
	fail "--metrics nope: exit $rc_bad, $(cat "$T/bad.log")"

stop "$CLIENT_PID"
stop "$SERVER_PID"
pass "/metrics of frep-client and frep-server equal their Status, sample by sample"
