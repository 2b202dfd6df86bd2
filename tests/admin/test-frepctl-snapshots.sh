#!/usr/bin/env bash
# frepctl snapshot create|list|delete, export and unexport against a real frep-server, and their
# refusals with gRPC codes and exit codes: unknown snapshot (NOT_FOUND), a second implicit export
# or the same snapshot twice (ALREADY_EXISTS), an invalid snapshot (FAILED_PRECONDITION), bad
# --nbd (INVALID_ARGUMENT), a port nbdkit cannot bind (FAILED_PRECONDITION with nbdkit's words),
# the master refusing mirror commands, and usage errors (exit 2).
source "$(dirname "$0")/frepctl-lib.sh"
certs master-1

mkvol "$T/e0" 8M
fill "$T/e0" 0 1 s
start_server
start_client db "$T/e0" master-1
wait_state db MIRROR INSYNC
SERVER=unix:$FREP_RUN_DIR/server.sock
CLIENT=unix:$FREP_RUN_DIR/client-db.sock

# Discovery sends mirror commands to frep-server even though db's master runs here too.
expect 0 snapshot create db nightly
out_has '^snapshot db@nightly created at TXID [0-9]+$'
expect 0 snapshot list
out_has '^VOLUME +SNAPSHOT +KIND +TXID +CREATED +USED +STATE +EXPORT$'
out_has '^db +nightly +user +[0-9]+ +[0-9]+s ago +[0-9.]+[KMG]? +valid +-$'
expect 0 --json snapshot list db
[ "$(jqc '[.snapshots[] | [.volume, .name, .kind, .valid]]')" = '[["db","nightly","USER",true]]' ] ||
	fail "snapshot list --json: $OUT"
expect 0 snapshot create db
out_has '^snapshot db@snap-[0-9]{8}-[0-9]{6} created at TXID'

# Exports, and their refusals.
SOCK=$T/nbd/db@nightly.sock
expect 0 export db@nightly --nbd "unix:$SOCK"
out_has "^exporting db@nightly \(TXID [0-9]+\) read-only on unix:$SOCK: nbd\+unix:///db@nightly\?socket=$SOCK$"
expect 0 snapshot list db
out_has "^db +nightly .* valid +unix:$SOCK pid:[0-9]+$"
expect 1 export db@nightly --nbd "unix:$T/other.sock"
err_has "^frepctl: export db@nightly: ALREADY_EXISTS: db@nightly is already exported on unix:$SOCK$"
expect 1 export db@nope --nbd "unix:$T/nope.sock"
err_has "^frepctl: export db@nope: NOT_FOUND: no snapshot 'nope' of volume 'db'"
expect 1 export nope@nightly --nbd "unix:$T/nope.sock"
err_has "^frepctl: export nope@nightly: NOT_FOUND: no volume 'nope' on this host$"
expect 1 --admin "$SERVER" export db --nbd bogus
err_has "^frepctl: export db: INVALID_ARGUMENT: --nbd: expected unix:/ABSOLUTE/PATH \(a unix socket\) or HOST:PORT"
expect 1 --admin "$SERVER" export db --nbd unix:relative.sock
err_has "^frepctl: export db: INVALID_ARGUMENT: --nbd unix:relative.sock: the socket path must be absolute"
expect 1 --admin "$SERVER" export db@nightly --nbd 127.0.0.1:0
err_has 'INVALID_ARGUMENT: --nbd: expected .*got .127\.0\.0\.1:0.$'
# A port something else holds: nbdkit cannot bind, and says so.
/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True); time.sleep(60)' >"$T/busy.port" &
BUSY=$!
PIDS+=("$BUSY")
wait_for 10 "a port to hold" test -s "$T/busy.port"
expect 1 export db --nbd "127.0.0.1:$(cat "$T/busy.port")"
err_has "^frepctl: export db: FAILED_PRECONDITION: export db@export-[0-9-]+ on 127\.0\.0\.1:[0-9]+: nbdkit exited with status 1 before serving: .*(Address already in use|bind)"
kill "$BUSY"
# ...and its implicit snapshot went with it.
expect 0 --json snapshot list db
[ "$(jqc '[.snapshots[] | select(.kind == "EXPORT")] | length')" = 0 ] || fail "implicit left: $OUT"

# One implicit export per volume.
expect 0 --json export db --nbd "unix:$T/nbd/db.sock"
impl=$(jqc .snapshot.name)
expect 1 export db --nbd "unix:$T/nbd/db2.sock"
err_has "^frepctl: export db: ALREADY_EXISTS: db's latest state is already exported as db@$impl on unix:$T/nbd/db.sock; unexport db first"
expect 0 unexport db
out_has "^unexported db@$impl; its NBD clients were disconnected and the implicit snapshot is deleted$"
expect 1 unexport db
err_has "^frepctl: unexport db: NOT_FOUND: db has no export of its latest state"
expect 0 unexport db@nightly
out_has '^unexported db@nightly; its NBD clients were disconnected$'
expect 1 unexport db@nightly
err_has '^frepctl: unexport db@nightly: FAILED_PRECONDITION: db@nightly is not exported$'
expect 1 unexport db@nope
err_has "^frepctl: unexport db@nope: NOT_FOUND: no snapshot 'nope' of volume 'db'"

# An invalid snapshot cannot be exported: invalidated by hand (its metadata, CRC recomputed)
# while frep-server is stopped.
stop "$SERVER_PID"
/usr/bin/python3 - "$T/mirror/db/snapshots/nightly/meta" "$FREP_SRC/tests/tools/frep-check.py" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("fc", sys.argv[2]); fc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fc)
lines = [l for l in open(sys.argv[1]).read().splitlines() if not l.startswith("crc32c=")]
lines = [("valid=0" if l.startswith("valid=") else "reason=invalidated by the test" if l.startswith("reason=") else l) for l in lines]
body = "".join(l + "\n" for l in lines)
open(sys.argv[1], "w").write(body + "crc32c=%08x\n" % fc.crc32c_py(body.encode()))
PY
SERVER_PORT_WANTED=$SERVER_PORT start_server
expect 0 snapshot list db
out_has '^db +nightly .* invalid [0-9]+[smhd].* ago: invalidated by the test +-$'
expect 1 export db@nightly --nbd "unix:$SOCK"
err_has "^frepctl: export db@nightly: FAILED_PRECONDITION: db@nightly is invalid \(invalidated by the test\): its content is gone"
expect 0 snapshot delete db nightly
expect 1 snapshot delete db nightly
err_has "^frepctl: snapshot delete db: NOT_FOUND"

# The master refuses mirror commands, naming frep-server.
expect 1 --admin "$CLIENT" snapshot create db x
err_has '^frepctl: snapshot create db: FAILED_PRECONDITION: snapshot create is a mirror command: frep-client serves master volumes; run it against frep-server'
expect 1 --admin "$CLIENT" snapshot list
err_has 'FAILED_PRECONDITION: snapshot list is a mirror command'
expect 1 --admin "$CLIENT" export db --nbd "unix:$T/x.sock"
err_has '^frepctl: export db: FAILED_PRECONDITION: export is a mirror command'
expect 1 --admin "$CLIENT" unexport db@x
err_has '^frepctl: unexport db@x: FAILED_PRECONDITION: unexport is a mirror command'
expect 1 --admin "$CLIENT" snapshot delete db x
err_has 'FAILED_PRECONDITION: snapshot delete is a mirror command'

# Usage errors: exit 2 before any call.
expect 2 export db
err_has 'export: --nbd is required'
expect 2 export db@ --nbd unix:/x
err_has "export: expected VOLUME or VOLUME@SNAPSHOT, got 'db@'"
expect 2 status --nbd unix:/x
err_has 'status: --nbd goes with export'
expect 2 snapshot frob db
err_has 'snapshot frob: expected snapshot create VOLUME'
expect 2 snapshot delete db
err_has 'snapshot delete: expected'

alive "$SERVER_PID" frep-server
alive "$CLIENT_PID" frep-client
pass "snapshot create/list/delete, export/unexport and their refusals (NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, INVALID_ARGUMENT, usage)"
