#!/usr/bin/env bash
# frepctl's commands against a real frep-server and frep-client, in both output formats, and
# their error paths: unknown volume (NOT_FOUND), pause outside INSYNC and resume outside IDLE
# (FAILED_PRECONDITION), a rate the master refuses (INVALID_ARGUMENT), a master command sent
# to frep-server, and the ones refused before any call (usage, exit 2).
source "$(dirname "$0")/frepctl-lib.sh"
certs master-1

mkvol "$T/e0" 16M
fill "$T/e0" 0 16 c
M=$(mirror_extents db 1)
start_server
start_client db "$T/e0" master-1
CLIENT=unix:$FREP_RUN_DIR/client-db.sock
SERVER=unix:$FREP_RUN_DIR/server.sock
wait_state db MASTER INSYNC
qemu-io -f raw "$(nbd_uri db)" -c 'write -P 0x5a 1M 64K' >/dev/null || fail "write"
wait_converged "$T/e0" "$M" 20

# status, human: a block per volume, master (from frep-client) and mirror (from frep-server).
expect 0 status
out_has '^db role:MASTER state:INSYNC since:[0-9]+'
out_has '^db role:MIRROR state:INSYNC since:[0-9]+'
out_has '^  peer:frep-mirror address:127\.0\.0\.1:[0-9]+ lanes:1 cipher:TLS-'
out_has '^  owner:master-1 consistent@[0-9]+ .*applied:[0-9]+$'
out_has '^  master:master-1 address:127\.0\.0\.1:[0-9]+ '
[ -z "$ERR" ] || fail "status wrote on stderr: $ERR"

# status --json: one document; proto field names, enum names, exact integers.
expect 0 --json status
[ "$(jqc '[.volumes[] | [.role, .daemon]] | sort')" = '[["MASTER","frep-client"],["MIRROR","frep-server"]]' ] ||
	fail "status --json: $OUT"
committed=$(jqc '.volumes[] | select(.role == "MASTER") | .master.committed_txid')
acked=$(jqc '.volumes[] | select(.role == "MASTER") | .master.acked_txid')
[ "$committed" -ge 1 ] && [ "$committed" = "$acked" ] || fail "committed $committed, acked $acked"
[ "$(jqc '.volumes[] | select(.role == "MIRROR") | .mirror.last_applied_txid')" = "$committed" ] ||
	fail "mirror has not applied $committed: $OUT"
[ "$(jqc '.volumes[] | select(.role == "MASTER") | .admin')" = "$CLIENT" ] || fail "admin of the master: $OUT"
# Absent messages are left out: no copy runs, no error happened.
[ "$(jqc '[.volumes[] | (.master // {} | has("copy")), has("last_error")] | any')" = false ] ||
	fail "absent messages present: $OUT"

# One daemon, by --admin: the same figures; an unknown volume in the daemon's words.
expect 0 --admin "$CLIENT" --json status db
[ "$(jqc '.volumes | length')" = 1 ] || fail "--admin status db: $OUT"
expect 1 --admin "$CLIENT" status nope
err_has "^frepctl: status nope: NOT_FOUND: no volume 'nope' here"
expect 1 status nope
err_has "^frepctl: status nope: NOT_FOUND: no volume 'nope' on this host$"
expect 1 pause nope
err_has "^frepctl: pause nope: NOT_FOUND: no volume 'nope' on this host$"

# pause / resume, and each outside its state.
expect 1 resume db
err_has '^frepctl: resume db: FAILED_PRECONDITION: .*db.*(INSYNC|not paused)'
expect 0 pause db
out_has 'paus.*db'
wait_state db MASTER IDLE 10
expect 1 pause db
err_has '^frepctl: pause db: FAILED_PRECONDITION: .*db.*(IDLE|paused)'
expect 0 status db
out_has '^  mode:ASYNC on-buffer-full:CRACK max-rate:unlimited paused$'
expect 0 --json resume db
[ "$(jqc '[.volume.name, (.message | length > 0)]')" = '["db",true]' ] ||
	fail "resume --json: $OUT"
wait_state db MASTER INSYNC 10

# A master command sent to frep-server: the daemon refuses it, naming why.
expect 1 --admin "$SERVER" pause db
err_has '^frepctl: pause db: FAILED_PRECONDITION: .*frep-server'

# set-rate: a parsed rate goes to the master, which refuses one below 4K; a RATE that
# does not parse never leaves frepctl.
expect 0 set-rate db 50M
[ "$(field db MASTER .master.max_rate_bps)" = $((50 << 20)) ] || fail "max_rate_bps after set-rate 50M"
expect 0 status db
out_has 'max-rate:50M/s'
expect 1 set-rate db 100
err_has '^frepctl: set-rate db: INVALID_ARGUMENT: .*4096'
[ "$(field db MASTER .master.max_rate_bps)" = $((50 << 20)) ] || fail "a refused rate changed the rate"
expect 0 --json set-rate db 0
[ "$(jqc .volume.master.max_rate_bps)" = 0 ] || fail "set-rate 0 --json: $OUT"
for bad in abc 5X 50MB/s 99999999999999999999 ""; do
	expect 2 set-rate db "$bad"
	err_has "^frepctl: set-rate: expected RATE"
done
expect 2 set-rate db -1
err_has "^frepctl: unknown option '-1'"

# resync: --full is the only kind, required before any call; --wait follows it to INSYNC.
expect 2 resync db
err_has '^frepctl: resync: --full is required'
qemu-io -f raw "$(nbd_uri db)" -c 'write -P 0x6b 8M 64K' >/dev/null || fail "write"
# At 4M/s the 16M of data take 3 s (the first 4M chunk of a pass goes unthrottled): long
# enough for progress lines (plain ones: stdout is no terminal).
expect 0 set-rate db 4M
expect 0 resync db --full --wait
out_has '^db: full resync done in [0-9]+s: INSYNC$'
out_has "^resync db: [0-9.]+% [0-9.]+[KM]?/16M [0-9.]+[KM]?/s eta:"
wait_converged "$T/e0" "$M" 20
# On a terminal (script(1) gives it a pty): a bar redrawn in place, no plain lines.
script -qec "$BIN/frepctl resync db --full --wait" /dev/null >"$T/tty.out" ||
	fail "resync --wait on a terminal failed: $(cat -v "$T/tty.out")"
grep -aEq $'\rresync db \[#*\.*\] [0-9.]+% [0-9.]+[KM]?/16M .*\e\[K' "$T/tty.out" ||
	fail "no progress bar on a terminal: $(cat -v "$T/tty.out")"
! grep -aq '^resync db: ' "$T/tty.out" || fail "plain progress lines on a terminal"
grep -aq 'db: full resync done in' "$T/tty.out" || fail "no result line on a terminal"
expect 0 set-rate db 0
expect 0 --json resync db --full --wait
[ "$(jqc '[.state, .master.resync_full]')" = '["INSYNC",false]' ] ||
	fail "resync --json --wait: $OUT"
expect 0 resync db --full
out_has 'full resync'
wait_state db MASTER INSYNC 20
wait_converged "$T/e0" "$M" 20

# Usage errors: exit 2 with one line naming the problem, before anything is asked.
expect 2
err_has '^frepctl: a command is required'
expect 2 frobnicate
err_has "^frepctl: unknown command 'frobnicate'"
expect 2 pause
err_has '^frepctl: pause: missing argument'
expect 2 pause db extra
err_has "^frepctl: pause: unexpected argument 'extra'"
expect 2 pause db --wait
err_has '^frepctl: pause: --wait does not apply'
expect 2 status --full
expect 2 --admin "$FREP_RUN_DIR/server.sock" status
err_has '^frepctl: --admin: expected unix:PATH'
expect 2 --admin "$SERVER" --connect 127.0.0.1:1 --ca x --cert x --key x status
expect 2 --connect 127.0.0.1:1 status
err_has '^frepctl: --connect needs --ca, --cert and --key'
expect 2 --ca "$PKI/ca.crt" status
expect 2 --bogus status
expect 0 --help
out_has '^Exit status: 0 ok; 1 the operation failed'
expect 0 --version
out_has '^frepctl [0-9]+\.[0-9]+'

alive "$SERVER_PID" frep-server
alive "$CLIENT_PID" frep-client
pass "status (human, JSON), pause/resume, set-rate, resync --full --wait, and their refusals"
