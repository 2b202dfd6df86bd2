#!/usr/bin/env bash
# Group commit: sixteen writes in flight (fio's nbd engine, iodepth 16) share journal fdatasyncs: journal_syncs <= writes / 4, every write appended once, read back intact, and the mirror converges.
source "$(dirname "$0")/lib.sh"
certs master-1

N=4096          # 4 KiB writes: 16 MiB, each block once (fio's random map)
DEPTH=16
MAX_SYNCS=$((N / 4))

mkvol "$T/e0" 64M
start_server
start_client vol "$T/e0" master-1
wait_status vol state INSYNC

appends0=$(ctl_field vol journal_appends)
syncs0=$(ctl_field vol journal_syncs)
[ -n "$appends0" ] && [ -n "$syncs0" ] || fail "status lacks journal_appends/journal_syncs: $(ctl vol status)"

# --verify reads every block back after the writes: reads see what was replied to.
timeout 40 fio --name=group-commit --ioengine=nbd --uri="$(nbd_uri vol)" --rw=randwrite --bs=4k \
	--iodepth=$DEPTH --size=64M --io_size=$((N * 4096)) --randrepeat=1 --verify=crc32c --verify_state_save=0 \
	--output-format=json --output="$T/fio.json" >"$T/fio.log" 2>&1 ||
	fail "fio failed: $(cat "$T/fio.log" "$T/fio.json" 2>/dev/null | tail -n 20)"
read -r sent errors < <(/usr/bin/python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
print(j["write"]["total_ios"], j["error"])' "$T/fio.json")
[ "$errors" = 0 ] || fail "fio reported error $errors"
[ "$sent" -eq $N ] || fail "fio sent $sent writes, want $N"

appends=$(($(ctl_field vol journal_appends) - appends0))
syncs=$(($(ctl_field vol journal_syncs) - syncs0))
echo "writes $sent journal_appends +$appends journal_syncs +$syncs (at most $MAX_SYNCS)"
[ "$appends" -eq "$sent" ] || fail "journal_appends grew by $appends for $sent writes: each write is one record"
[ "$syncs" -ge 1 ] || fail "journal_syncs did not grow: the writes were not made durable"
[ "$syncs" -le $MAX_SYNCS ] ||
	fail "journal_syncs grew by $syncs for $sent writes at depth $DEPTH: want <= $MAX_SYNCS (writers in flight share fdatasyncs)"

drained() {
	[ "$(ctl_field vol acked_txid)" = "$(ctl_field vol committed_txid)" ]
}
wait_for 30 "the mirror to acknowledge every write" drained
wait_converged "$T/e0" "$(mirror_extents vol 1)"
alive "$CLIENT_PID" frep-client
pass "$sent writes at depth $DEPTH took $syncs journal fdatasyncs; read back intact; mirror byte-identical"
