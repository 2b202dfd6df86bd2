#!/usr/bin/env bash
# frepctl without --admin: it asks $FREP_RUN_DIR/server.sock and every client-*.sock there,
# and nothing else (a regular file named like a socket, a socket of another name: NBD);
# status merges their volumes, a command goes to the daemon that has the volume, a socket
# that cannot be asked is named with the reason (stale: exit 3; 0600 and not root: exit 3);
# an absent or stale --admin socket is exit 3.
source "$(dirname "$0")/frepctl-lib.sh"
certs master-1

mkvol "$T/a0" 8M
mkvol "$T/b0" 8M
start_server
start_client alpha "$T/a0" master-1
start_client beta "$T/b0" master-1
wait_state alpha MASTER INSYNC
wait_state beta MASTER INSYNC
ls "$FREP_RUN_DIR"/server.sock "$FREP_RUN_DIR"/client-alpha.sock "$FREP_RUN_DIR"/client-beta.sock >/dev/null ||
	fail "default admin sockets missing: $(ls "$FREP_RUN_DIR")"

# Things that are not admin sockets: a regular file with an admin socket's name, and a
# listening socket of another name (as an NBD socket in /run/frep) that records whether
# anyone connects.
: >"$FREP_RUN_DIR/client-notasocket.sock"
/usr/bin/python3 - "$FREP_RUN_DIR/nbd-gamma.sock" "$T/nbd-touched" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
s.accept()
open(sys.argv[2], "w").close()
PY
PIDS+=($!)
wait_for 10 "the decoy socket" test -S "$FREP_RUN_DIR/nbd-gamma.sock"

# status merges the three daemons: two masters, two mirrors.
expect 0 status
[ -z "$ERR" ] || fail "status wrote on stderr: $ERR"
for v in alpha beta; do
	out_has "^$v role:MASTER state:INSYNC"
	out_has "^$v role:MIRROR state:INSYNC"
done
expect 0 --json status
[ "$(jqc '[.volumes[] | [.name, .role, (.admin | split("/") | last)]] | sort')" = \
	'[["alpha","MASTER","client-alpha.sock"],["alpha","MIRROR","server.sock"],["beta","MASTER","client-beta.sock"],["beta","MIRROR","server.sock"]]' ] ||
	fail "merged status: $OUT"
[ ! -e "$T/nbd-touched" ] || fail "frepctl connected to a socket that is not an admin socket"

# A command goes to the daemon that has the volume (its master): only beta pauses.
expect 0 pause beta
wait_state beta MASTER IDLE 10
state_is alpha MASTER INSYNC || fail "pause beta paused alpha"
expect 0 resume beta
wait_state beta MASTER INSYNC 10
expect 1 pause gamma
err_has "^frepctl: pause gamma: NOT_FOUND: no volume 'gamma' on this host$"

# A stale socket (bound, nobody listening: a daemon killed with -9): named, exit 3, and the
# others still answer; a command on a volume another daemon has still goes through.
/usr/bin/python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
	"$FREP_RUN_DIR/client-dead.sock"
expect 3 status
err_has "^frepctl: status: unix:$FREP_RUN_DIR/client-dead\.sock: UNAVAILABLE: stale socket \(daemon not running\)$"
out_has '^alpha role:MASTER'
out_has '^beta role:MIRROR'
[ "$(grep -c . <<<"$ERR")" = 1 ] || fail "more than the stale socket named: $ERR"
expect 0 set-rate alpha 8M
err_has 'client-dead\.sock: UNAVAILABLE: stale socket'
[ "$(field alpha MASTER .master.max_rate_bps)" = $((8 << 20)) ] || fail "set-rate alpha did not reach alpha"
expect 3 status dead
err_has "^frepctl: status dead: no daemon that answered has volume 'dead'$"
# watch goes on with the daemons it reaches: their EXISTS, one initial-done, their events;
# the stale one is named, and stays in the exit status (3) after SIGINT.
"$BIN/frepctl" watch >"$T/w.txt" 2>"$T/w.err" &
W=$!
wait_for 10 "initial-done" grep -q ' initial-done$' "$T/w.txt"
[ "$(grep -c ' exists ' "$T/w.txt")" = 4 ] || fail "exists lines: $(cat "$T/w.txt")"
grep -q "client-dead\.sock: UNAVAILABLE: stale socket" "$T/w.err" || fail "stale socket not named: $(cat "$T/w.err")"
expect 0 pause alpha
wait_for 10 "alpha's state-change" grep -q 'state-change alpha INSYNC -> IDLE' "$T/w.txt"
expect 0 resume alpha
kill -INT "$W"
reap "$W"
[ "$WRC" = 3 ] || fail "watch with a stale socket exited $WRC after SIGINT, want 3"
rm "$FREP_RUN_DIR/client-dead.sock"

# Not root: the 0600 sockets refuse, and frepctl says why.
chmod 755 "$T" "$FREP_RUN_DIR"
RC=0
setpriv --reuid=nobody --regid=nogroup --clear-groups env FREP_RUN_DIR="$FREP_RUN_DIR" \
	ASAN_OPTIONS="$ASAN_OPTIONS" "$BIN/frepctl" status >"$T/nobody.out" 2>"$T/nobody.err" || RC=$?
ERR=$(cat "$T/nobody.err")
[ "$RC" = 3 ] || fail "status as nobody exited $RC, want 3: $ERR"
err_has "client-alpha\.sock: UNAVAILABLE: permission denied \(admin sockets are 0600, run as root\)$"
err_has "server\.sock: UNAVAILABLE: permission denied"

# --admin: an absent socket, a stale one, and a file that is no socket.
expect 3 --admin "unix:$T/nope.sock" status
err_has "^frepctl: status: unix:$T/nope\.sock: UNAVAILABLE: no such socket"
/usr/bin/python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$T/stale.sock"
expect 3 --admin "unix:$T/stale.sock" pause alpha
err_has "^frepctl: pause alpha: unix:$T/stale\.sock: UNAVAILABLE: stale socket \(daemon not running\)$"
expect 3 --admin "unix:$FREP_RUN_DIR/client-notasocket.sock" status
err_has 'UNAVAILABLE: not a socket$'

# A daemon with no volume yet (a second frep-server; the log file is shared).
FIRST_SERVER_PID=$SERVER_PID
SERVER_DATA=$T/mirror2 SERVER_PORT_WANTED=0 start_server --admin "unix:$T/lonely.sock"
expect 0 --admin "unix:$T/lonely.sock" status
[ "$OUT" = "no volumes" ] || fail "status of a daemon without volumes: $OUT"
expect 0 --admin "unix:$T/lonely.sock" --json status
[ "$OUT" = '{"volumes":[]}' ] || fail "status --json of a daemon without volumes: $OUT"

# No admin socket at all.
mkdir "$T/empty"
FREP_RUN_DIR=$T/empty expect 3 status
err_has "^frepctl: no frep admin socket in $T/empty "

alive "$FIRST_SERVER_PID" frep-server
alive "$SERVER_PID" "the second frep-server"
alive "$CLIENT_PID" frep-client
pass "discovery: 3 daemons merged, decoys skipped, routing, stale/permission/absent sockets exit 3"
