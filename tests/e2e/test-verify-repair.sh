#!/usr/bin/env bash
# Online verify under a concurrent random-write load (spec VFY-*): three bytes damaged
# behind frep's back in one region of a mirror extent are reported as exactly that region,
# --repair rewrites it from the master as ordinary transactions (the mirror stays INSYNC
# and consistent), and once the writes stop the extents are identical.
# spec: VFY-3, VFY-5, VFY-7, VFY-8
source "$(dirname "$0")/lib.sh"
certs master-1
MIB=1048576
# Two extents of 16 MiB: the damage goes into the mirror's extent.1, at volume offset
# 20 MiB + 12345, in verify's region [20 MiB, 21 MiB) (VERIFY_REGION is 1 MiB).
mkvol "$T/e0" 16M; mkvol "$T/e1" 16M
fill "$T/e0" 0 16 p; fill "$T/e1" 0 16 q
M=$(mirror_extents vol 2)
start_server
start_client vol "$T/e0,$T/e1" master-1
wait_status vol state INSYNC 30
wait_converged "$T/e0,$T/e1" "$M" 30

# The load, over the first 12 MiB only (so that none of its writes
# happens to overwrite the damage), until this test stops it.
start_load vol 12m
printf 'XYZ' | dd of="$T/mirror/vol/extent.1" bs=1 seek=$((4 * MIB + 12345)) conv=notrunc status=none

before=$(ctl_field vol committed_txid)
verify vol >"$T/verify.out"
read -r outcome mismatched repaired regions <"$T/verify.out"
[ "$VERIFY_RC" = 1 ] || fail "frepctl verify exited $VERIFY_RC with a region damaged (1 expected)"
[ "$outcome $mismatched $repaired" = "mismatch 1 0" ] ||
	fail "verify: outcome $outcome, $mismatched mismatching, $repaired repaired; mismatch 1 0 expected"
[ "$regions" = "$((20 * MIB))+$MIB" ] || fail "verify named regions '$regions', not $((20 * MIB))+$MIB"
committed_above vol "$before" || fail "no write committed while the verify ran: not under load"
kill -0 "$LOAD" || fail "the load stopped before the verify ended: $(tail -n 5 "$T/fio.log")"
wait_log "$T/client-vol.log" "verify 1 done in [0-9]+ ms: mismatch;.* mismatching regions: $((20 * MIB))\+$MIB\$" 5

verify vol --repair >"$T/verify.out"
read -r outcome mismatched repaired regions <"$T/verify.out"
[ "$VERIFY_RC" = 0 ] || fail "frepctl verify --repair exited $VERIFY_RC (0 expected)"
[ "$outcome $mismatched $repaired $regions" = "repaired 1 1 $((20 * MIB))+$MIB" ] ||
	fail "verify --repair: $outcome $mismatched $repaired $regions"
[ "$(ctl_field vol state)" = INSYNC ] || fail "state $(ctl_field vol state) after the repair"
kill -0 "$LOAD" || fail "the load stopped before the repair ended: $(tail -n 5 "$T/fio.log")"

# Writes stop; the mirror converges, byte for byte, extent by extent.
kill -TERM "$LOAD"
wait "$LOAD" 2>/dev/null || true
wait_converged "$T/e0,$T/e1" "$M" 30
cmp "$T/e0" "$T/mirror/vol/extent.0" || fail "extent 0 differs"
cmp "$T/e1" "$T/mirror/vol/extent.1" || fail "extent 1 differs"
verify vol >"$T/verify.out"
read -r outcome mismatched repaired regions <"$T/verify.out"
[ "$VERIFY_RC $outcome $mismatched" = "0 ok 0" ] || fail "verify after the repair: $VERIFY_RC $outcome $mismatched"
alive "$SERVER_PID" frep-server
alive "$CLIENT_PID" frep-client
pass "damage at 20M+12345 reported as exactly [20M, +1M) under load, repaired, extents identical"
