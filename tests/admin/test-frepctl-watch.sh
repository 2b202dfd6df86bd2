#!/usr/bin/env bash
# frepctl watch against real daemons, like drbdsetup events2: every volume's current state
# (EXISTS) from both daemons, then one INITIAL_DONE, then the changes; human lines and JSON
# lines; exit 0 on SIGINT and SIGTERM, 3 when the daemon goes away, 1 with the daemon's
# message when it drops a watcher that fell behind (RESOURCE_EXHAUSTED).
source "$(dirname "$0")/frepctl-lib.sh"
certs master-1

mkvol "$T/e0" 8M
start_server
start_client db "$T/e0" master-1
CLIENT=unix:$FREP_RUN_DIR/client-db.sock
wait_state db MASTER INSYNC
wait_state db MIRROR INSYNC

# count FILE REGEX: lines of FILE matching.
count() {
	grep -Ec -- "$2" "$1" || true
}
# --- JSON lines, discovery (both daemons) -------------------------------------------------
"$BIN/frepctl" --json watch >"$T/w.json" 2>"$T/w.err" &
W=$!
wait_for 10 "INITIAL_DONE from frepctl --json watch" grep -q '"kind":"INITIAL_DONE"' "$T/w.json"
expect 0 pause db
wait_for 10 "the master's INSYNC -> IDLE event" grep -q \
	"\"kind\":\"STATE_CHANGE\".*\"state\":\"IDLE\".*\"old_state\":\"INSYNC\".*\"admin\":\"$CLIENT\"" "$T/w.json"
expect 0 resume db
wait_for 10 "the master's IDLE -> INSYNC event" grep -q \
	"\"kind\":\"STATE_CHANGE\".*\"state\":\"INSYNC\".*\"old_state\":\"IDLE\".*\"admin\":\"$CLIENT\"" "$T/w.json"
kill -INT "$W"
reap "$W"
[ "$WRC" = 0 ] || fail "frepctl watch exited non-zero on SIGINT: $(cat "$T/w.err")"
[ ! -s "$T/w.err" ] || fail "frepctl watch wrote on stderr: $(cat "$T/w.err")"
# Every line is a JSON object; the two EXISTS come first, then one INITIAL_DONE, then the
# rest, the master's in its own order (seq increases by one).
jq -se --arg c "$CLIENT" '
	map(.kind) as $k
	| [.[3:][] | select(.admin == $c) | .seq] as $s
	| $k[0:3] == ["EXISTS", "EXISTS", "INITIAL_DONE"]
	  and ([$k[] | select(. == "INITIAL_DONE")] | length) == 1
	  and ($k[3:] | any(. == "EXISTS") | not)
	  and ([.[0:2][].volume.role] | sort) == ["MASTER", "MIRROR"]
	  and $s == [range($s[0]; $s[0] + ($s | length))]
	  and ($k | any(. == "SETTINGS")) and ($k | any(. == "STATE_CHANGE"))' "$T/w.json" >/dev/null ||
	fail "JSON lines of frepctl watch: not EXISTS x2, INITIAL_DONE, then the master's events in order"

# --- human lines, one daemon, SIGTERM -----------------------------------------------------
"$BIN/frepctl" --admin "$CLIENT" watch db >"$T/w.txt" 2>"$T/w.err" &
W=$!
wait_for 10 "initial-done from frepctl watch" grep -q ' initial-done$' "$T/w.txt"
[ "$(count "$T/w.txt" ' exists db role:MASTER state:INSYNC$')" = 1 ] || fail "exists line: $(cat "$T/w.txt")"
expect 0 pause db
wait_for 10 "a state-change line" grep -Eq \
	'^20[0-9-]{8}T[0-9:.]{12}[+-][0-9]{2}:[0-9]{2} state-change db INSYNC -> IDLE \(event' "$T/w.txt"
grep -q ' settings db (paused)$' "$T/w.txt" || fail "no settings line: $(cat "$T/w.txt")"
expect 0 resume db
wait_for 10 "the resume's state-change line" grep -q 'state-change db IDLE -> INSYNC' "$T/w.txt"
kill -TERM "$W"
reap "$W"
[ "$WRC" = 0 ] || fail "frepctl watch exited non-zero on SIGTERM: $(cat "$T/w.err")"

# --- unknown volume -----------------------------------------------------------------------
expect 1 watch nope
err_has "^frepctl: watch nope: NOT_FOUND: no volume 'nope' on this host$"
expect 1 --admin "$CLIENT" watch nope
err_has "^frepctl: watch nope: NOT_FOUND: "

# --- a watcher that falls behind is dropped: exit 1 with the daemon's message --------------
"$BIN/frepctl" --admin "$CLIENT" --json watch >"$T/w.json" 2>"$T/w.err" &
W=$!
wait_for 10 "INITIAL_DONE" grep -q '"kind":"INITIAL_DONE"' "$T/w.json"
kill -STOP "$W"
# Each SetRate is one SETTINGS event: flow control and socket buffers take some hundreds
# (about 300 here), the daemon's limit is 1000 behind. In batches, until it drops us.
for ((i = 0; i < 20; i++)); do
	/usr/bin/python3 "$FREP_SRC/tests/tools/admin-client.py" "$CLIENT" SetRate \
		'{"volume": "db", "bytes_per_second": 0}' --repeat 300 >/dev/null || fail "SetRate x300"
	! grep -q 'events behind' "$T/client-db.log" || break
done
wait_log "$T/client-db.log" 'watcher fell [0-9]+ events behind' 1
kill -CONT "$W"
reap "$W"
[ "$WRC" = 1 ] || fail "a dropped watcher exited $WRC, want 1: $(cat "$T/w.err")"
grep -q '^frepctl: watch: RESOURCE_EXHAUSTED: ' "$T/w.err" || fail "stderr: $(cat "$T/w.err")"
expect 0 status db # the daemon serves on

# --- the daemon goes away: exit 3 ---------------------------------------------------------
"$BIN/frepctl" --admin "$CLIENT" watch >"$T/w.txt" 2>"$T/w.err" &
W=$!
wait_for 10 "initial-done" grep -q ' initial-done$' "$T/w.txt"
stop "$CLIENT_PID"
reap "$W"
[ "$WRC" = 3 ] || fail "watch of a daemon that stopped exited $WRC, want 3: $(cat "$T/w.err")"
grep -q "^frepctl: watch: $CLIENT: UNAVAILABLE: frep is shutting down$" "$T/w.err" || fail "stderr: $(cat "$T/w.err")"

alive "$SERVER_PID" frep-server
pass "watch: EXISTS, INITIAL_DONE, changes (JSON lines, human), SIGINT/SIGTERM 0, dropped 1, daemon gone 3"
