#!/usr/bin/env bash
# Replays the PoC scenarios: unix + TLS, C and Python clients, errors, a stalled watcher, SIGTERM.
set -uo pipefail
cd "$(dirname "$0")"
B=${1:-}   # "" or "-asan"
[ -f pki/ca.crt ] || bash ../../../scripts/gen-certs.sh pki admin-1 intruder
[ -f pki2/ca.crt ] || bash ../../../scripts/gen-certs.sh pki2 admin-1
printf 'admin-1\n' > admin-allow
rm -f run/*.sock; mkdir -p run
./admin-poc$B --admin unix:$PWD/run/admin.sock --admin-listen 127.0.0.1:0 --admin-cert pki/server.crt \
	--admin-key pki/server.key --admin-ca pki/ca.crt --admin-allow admin-allow --event-ms 2 --max-lag 300 2>demo-server.log &
SP=$!
for _ in $(seq 100); do grep -q ready demo-server.log && break; sleep 0.05; done
PORT=$(grep -o 'tls port [0-9]*' demo-server.log | awk '{print $3}')
U=(--admin unix:$PWD/run/admin.sock)
T=(--connect 127.0.0.1:$PORT --ca pki/ca.crt --server-name frep-mirror)
c() { echo "\$ frepctl-poc ${*/#$PWD/}"; ./frepctl-poc$B "$@"; echo "  -> exit $?"; }
ls -l run/admin.sock | awk '{print "socket mode: " $1}'
c "${U[@]}" status
c "${U[@]}" status nope
c --admin unix:$PWD/run/absent.sock status
c "${T[@]}" --cert pki/admin-1.crt --key pki/admin-1.key watch db --count 3
c "${T[@]}" --cert pki/intruder.crt --key pki/intruder.key status
c "${T[@]}" --cert pki2/admin-1.crt --key pki2/admin-1.key status
echo "$ frepctl-poc --admin unix:run/admin.sock watch db --stall 4 (server --max-lag 300)"; ./frepctl-poc$B "${U[@]}" watch db --stall 4 | tail -1; echo "  -> exit ${PIPESTATUS[0]}"
echo "\$ python3 client.py (unix, then TLS)"
/usr/bin/python3 client.py unix:$PWD/run/admin.sock
/usr/bin/python3 client.py 127.0.0.1:$PORT pki/ca.crt pki/admin-1.crt pki/admin-1.key | tail -3
./frepctl-poc$B "${U[@]}" watch --count 0 >/dev/null 2>demo-watch.err &
WP=$!
sleep 0.5
t0=$(date +%s%N)
kill -TERM $SP; wait $SP; echo "server exit $? after SIGTERM in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
wait $WP; echo "open watcher: exit $? ($(tail -1 demo-watch.err))"
ls run/admin.sock 2>/dev/null || echo "socket removed by gRPC"
echo "--- server log"; sed 's/^[0-9.]* admin-poc\[[0-9]*\] //' demo-server.log
n=$(cat demo-server.log demo-watch.err | grep -c -E "Sanitizer|runtime error"); echo "sanitizer reports: $n"; [ "$n" = 0 ]
