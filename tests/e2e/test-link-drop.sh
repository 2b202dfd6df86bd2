#!/usr/bin/env bash
# Link drops and a stall through tests/tools/fault-proxy: during the handshake, REPLICATE and INSYNC under writes; the mirror converges each time.
source "$(dirname "$0")/lib.sh"
certs master-1

# Every byte count the proxy draws comes from this seed: a failing run names it.
SEED=${FREP_SEED:-$((RANDOM * 32768 + RANDOM))}
# count FILE REGEX: matching lines so far (0 if none).
count() {
	grep -Ec -e "$2" "$1" || true
}

# at_least N FILE REGEX: predicate for wait_for.
at_least() {
	[ "$(count "$2" "$3")" -ge "$1" ]
}

# writer NAME SECONDS_MAX: background NBD writer on volume NAME, paced so a stall
# cannot fill the mirror buffer; stops when $T/stop-NAME exists, writes its count
# so far to $T/writes-NAME. Sets WRITER_PID.
writer() {
	rm -f "$T/stop-$1" "$T/writes-$1"
	W_STOP=$T/stop-$1 W_PROG=$T/writes-$1 W_SEED=$SEED W_LIMIT=$2 timeout 40 nbdsh -u "$(nbd_uri "$1")" -c '
import os, random, time
rng = random.Random(int(os.environ["W_SEED"]))
size = h.get_size()
stop = os.environ["W_STOP"]
end = time.time() + float(os.environ["W_LIMIT"])
i = 0
while not os.path.exists(stop) and time.time() < end:
    # Data and place follow from (seed, index): a failing run can be rebuilt.
    off = rng.randrange(0, size // 4096 - 16) * 4096
    h.pwrite(rng.randbytes(65536), off)
    i += 1
    if i % 16 == 0:
        with open(os.environ["W_PROG"] + ".tmp", "w") as f:
            f.write(str(i))
        os.replace(os.environ["W_PROG"] + ".tmp", os.environ["W_PROG"])
    time.sleep(0.005)
h.flush()
print("writes", i)
' >"$T/writer-$1.log" 2>&1 &
	WRITER_PID=$!
}

# writes_so_far NAME
writes_so_far() {
	cat "$T/writes-$1" 2>/dev/null || echo 0
}

# flowing BYTES: predicate for wait_for, true once BYTES more went up through the proxy than at mark_up.
mark_up() {
	UP_MARK=$(proxy_stat up)
}
flowing() {
	[ "$(proxy_stat up)" -ge $((UP_MARK + $1)) ]
}

# writer_stop NAME: ends the writer; fails if it failed or wrote nothing.
writer_stop() {
	touch "$T/stop-$1"
	wait "$WRITER_PID" || fail "writer on $1 failed: $(cat "$T/writer-$1.log")"
	WRITES=$(grep -Eo 'writes [0-9]+' "$T/writer-$1.log" | cut -d' ' -f2)
	[ "${WRITES:-0}" -gt 0 ] || fail "writer on $1 wrote nothing"
}

start_server
start_proxy "$SEED"

# 1. Drop inside INIT. Counting both directions, the TLS handshake ends near byte
# 1750 and WELCOME near byte 1950 (measured with this harness's certificates), so a
# cut at 64..1800 lands in the TLS handshake or in HELLO/WELCOME: both minor.
mkvol "$T/a0" 8M
fill "$T/a0" 1 2 "a$SEED"
drop1=$(pctl drop-after random 64 1800 any)
SERVER_PORT=$PROXY_PORT start_client vA "$T/a0"
LA=$T/client-vA.log
wait_log "$LA" 'state INIT -> RESET' 15
wait_log "$LA" 'state RESET -> INIT' 10
wait_log "$LA" 'state REPLICATE -> INSYNC' 20
wait_converged "$T/a0" "$(mirror_extents vA 1)" 20
[ "$(proxy_stat drops)" = 1 ] || fail "expected exactly one cut in the handshake scenario"
grep -Eq 'state (INIT|RESET) -> (LINKDOWN|ERROR)' "$LA" && fail "a handshake drop was not treated as minor"
stop "$CLIENT_PID"

# 2. Drop during REPLICATE: 64 MiB of data, the copy flows up; cut it between 16 and 40 MiB.
mkvol "$T/b0" 96M
fill "$T/b0" 0 40 "b$SEED"
fill "$T/b0" 64 24 "c$SEED"
EXT=$T/b0
M=$(mirror_extents vB 1)
drop2=$(pctl drop-after random 16M 40M up)
SERVER_PORT=$PROXY_PORT start_client vB "$EXT"
LB=$T/client-vB.log
wait_log "$LB" 'state REPLICATE -> LINKDOWN' 30
wait_log "$LB" 'state LINKDOWN -> INIT' 10
# Whether the copy restarts or resumes, it ends INSYNC.
wait_log "$LB" 'state [A-Z]+ -> INSYNC' 30
wait_converged "$EXT" "$M" 20
[ "$(proxy_stat drops)" = 2 ] || fail "expected the REPLICATE cut to be the second"

# 3. INSYNC under writes: one cut at once, one at a seeded byte count (mid-frame).
mark_up
writer vB 30
wait_for 20 "writes flowing to the mirror" flowing $((1 << 20))
insync=$(count "$LB" '-> INSYNC')
pctl drop-now >/dev/null
wait_for 20 "reconnect after drop-now" at_least $((insync + 1)) "$LB" '-> INSYNC'
grep -Eq 'state INSYNC -> LINKDOWN' "$LB" || fail "drop-now in INSYNC did not go LINKDOWN"
linkdowns=$(count "$LB" 'state INSYNC -> LINKDOWN')
mark_up
wait_for 20 "writes flowing after the reconnect" flowing $((1 << 20))
drop3=$(pctl drop-after random 64K 1M up)
wait_for 20 "the seeded INSYNC cut" at_least $((linkdowns + 1)) "$LB" 'state INSYNC -> LINKDOWN'
wait_for 20 "reconnect after the seeded cut" at_least $((insync + 2)) "$LB" '-> INSYNC'
writer_stop vB
writes3=$WRITES
wait_converged "$EXT" "$M" 30

# 4. A 2 s stall is shorter than any silence timeout: no LINKDOWN, writes go on, all converge.
mark_up
writer vB 30
wait_for 20 "writes flowing to the mirror" flowing $((1 << 20))
linkdowns=$(count "$LB" '-> LINKDOWN')
pctl stall >/dev/null
before=$(proxy_stat up)
local_before=$(writes_so_far vB)
sleep 2 # the length of the fault itself, not a wait for a condition
[ "$(proxy_stat up)" = "$before" ] || fail "bytes went up during the stall"
[ "$(writes_so_far vB)" -gt "$local_before" ] || fail "local writes stopped during the stall"
pctl unstall >/dev/null
writer_stop vB
writes4=$WRITES
wait_converged "$EXT" "$M" 30
[ "$(count "$LB" '-> LINKDOWN')" = "$linkdowns" ] || fail "a 2 s stall caused a LINKDOWN"

alive "$SERVER_PID" frep-server
alive "$CLIENT_PID" frep-client
alive "$PROXY_PID" fault-proxy
reconnects=$(($(count "$LA" 'state RESET -> INIT') + $(count "$LB" 'state LINKDOWN -> ')))
stop "$CLIENT_PID"
stop "$PROXY_PID"
stop "$SERVER_PID"
pass "seed $SEED: handshake cut (${drop1#ok }), REPLICATE cut (${drop2#ok }), INSYNC drop-now and cut (${drop3#ok })" \
	"under $writes3 writes, 2 s stall under $writes4 writes; $reconnects reconnects, mirror identical each time"
