#!/usr/bin/env bash
# frepctl verify against real daemons: without --wait it prints the verify id and returns;
# with --wait it follows the progress, then prints the mismatching regions (exit 1 when
# regions differ and were not repaired); --repair fixes them. Both output formats.
source "$(dirname "$0")/frepctl-lib.sh"
certs master-1

mkvol "$T/e0" 16M
fill "$T/e0" 0 16 v
M=$(mirror_extents db 1)
start_server
start_client db "$T/e0" master-1
wait_state db MASTER INSYNC
wait_converged "$T/e0" "$M" 20

# An intact mirror: nothing differs.
expect 0 verify db --wait
out_has '^db: verify #[0-9]+ ok: 0 mismatching regions of [0-9.]+[KM], 0 repaired$'
expect 0 --json verify db --wait
[ "$(jqc '[.status.outcome, .status.mismatched_regions, (.mismatches | length)]')" = '["ok",0,0]' ] ||
	fail "verify --json --wait on an intact mirror: $OUT"

# Corrupt 4 KiB of the mirror at 5 MiB behind frep's back.
dd if=/dev/urandom of="$M" bs=4K seek=$((5 << 8)) count=1 conv=notrunc status=none
expect 1 verify db --wait
out_has '^db: verify #[0-9]+ mismatch: 1 mismatching region of [0-9.]+[KM], 0 repaired$'
region=$(grep -Eo 'mismatch offset:[0-9]+ length:[0-9]+' <<<"$OUT")
off=$(cut -d: -f2 <<<"$region" | cut -d' ' -f1)
len=$(cut -d: -f3 <<<"$region")
[ "$off" -le $((5 << 20)) ] && [ $((off + len)) -gt $((5 << 20)) ] || fail "region $region misses 5M"
expect 0 status db
out_has "^  verify #[0-9]+: mismatch mismatched:1 repaired:0 finished"

# Without --wait: the id, at once; the result is in status when it ends.
expect 0 verify db
out_has '^db: verify #[0-9]+ started$'
id=$(grep -Eo '#[0-9]+' <<<"$OUT" | tr -d '#')
wait_for 20 "verify $id to finish" test "$(field db MASTER '.verify | "\(.verify_id) \(.running)"')" = "$id false"
expect 0 --json verify db
[ "$(jqc '.verify_id > 0')" = true ] || fail "verify --json: $OUT"
wait_for 20 "the verify to finish" test "$(field db MASTER .verify.running)" = false

# --repair: the region is sent again, the mirror ends identical.
expect 0 verify db --repair --wait
out_has '^db: verify #[0-9]+ \(repair\) repaired: 1 mismatching region of [0-9.]+[KM], 1 repaired$'
wait_converged "$T/e0" "$M" 20

# Refusals: the mirror has no verify to run; a paused volume is not INSYNC.
expect 1 --admin "unix:$FREP_RUN_DIR/server.sock" verify db
err_has '^frepctl: verify db: FAILED_PRECONDITION: '
expect 0 pause db
wait_state db MASTER IDLE 10
expect 1 verify db --wait
err_has '^frepctl: verify db: FAILED_PRECONDITION: '
expect 0 resume db
expect 2 verify db --full
expect 2 verify

alive "$SERVER_PID" frep-server
alive "$CLIENT_PID" frep-client
pass "verify: ok, mismatch (exit 1, the region), repair, without --wait, refusals"
