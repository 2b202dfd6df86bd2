#!/usr/bin/env bash
# Long crash soak outside CI: test-crash-kill9.sh's loop for N kill -9 iterations per side, in fresh runs of CHUNK iterations, with a per-iteration line and a final tally.
#
# Usage: tests/crash-soak.sh N [CHUNK]     (N iterations per side; CHUNK per run, default 50)
# Environment: FREP_BUILD (default SRC/build), CRASH_SEED (base seed; run r uses SEED+r),
# SOAK_DIR (where the output goes; default a new /tmp/frep-soak.XXXXXX).
# Each run starts from a fresh volume so the consistency checks stay fast. A failed
# check is reported and the run goes on (CRASH_KEEP_GOING); a run that cannot go on
# (a daemon that does not come back, a timeout) counts as one failure, keeps its logs
# (KEEP_LOGS) and the soak continues with the next run. Exit status: 0 if no failure.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
N=${1:?usage: crash-soak.sh N [CHUNK]}
CHUNK=${2:-50}
[ "$N" -gt 0 ] && [ "$CHUNK" -gt 0 ] || { echo "crash-soak: N and CHUNK must be positive" >&2; exit 2; }
export FREP_SRC=$SRC
export FREP_BUILD=${FREP_BUILD:-$SRC/build}
[ -x "$FREP_BUILD/frep-client" ] || { echo "crash-soak: no frep-client in $FREP_BUILD (set FREP_BUILD)" >&2; exit 2; }
BASE=${CRASH_SEED:-$((RANDOM * 32768 + RANDOM))}
OUT=${SOAK_DIR:-$(mktemp -d /tmp/frep-soak.XXXXXX)}
mkdir -p "$OUT"
echo "crash soak: $N iteration(s) per side in runs of $CHUNK, base seed $BASE, output in $OUT"

done_iters=0 run=0 aborted=0 start=$SECONDS
while [ "$done_iters" -lt "$N" ]; do
	iters=$((N - done_iters < CHUNK ? N - done_iters : CHUNK))
	seed=$((BASE + run))
	log=$OUT/run-$run.log
	rc=0
	CRASH_SEED=$seed CRASH_SIDES=master,mirror CRASH_ITERS=$iters CRASH_BUDGET=0 CRASH_KEEP_GOING=1 \
		KEEP_LOGS=1 bash "$SRC/tests/e2e/test-crash-kill9.sh" >"$log" 2>&1 || rc=$?
	grep -E '^iter ' "$log" | sed "s/^/run $run /" || true
	if [ $rc -ne 0 ] && ! grep -q '^tally iterations' "$log"; then
		aborted=$((aborted + 1))
		echo "run $run (CRASH_SEED=$seed) aborted: $(grep -Ev '^[0-9]{4}-' "$log" | grep -E 'FAIL|failed' | head -n1)"
		echo "  logs: $(grep -Eo 'logs in /tmp/frep-e2e\.[A-Za-z0-9]+' "$log" | tail -n1 | cut -d' ' -f3) and $log"
	fi
	done_iters=$((done_iters + iters))
	run=$((run + 1))
done

# Tally over every run's iteration lines:
# "iter I side S seed X (request K|delay_ms D) acked A durable U next_index X recovery_ms R result OK|FAIL".
cat "$OUT"/run-*.log | awk -v aborted="$aborted" -v secs=$((SECONDS - start)) '
	/^iter / {
		for (i = 1; i < NF; i++) f[$i] = $(i + 1)
		s = f["side"]; n[s]++; sum[s] += f["recovery_ms"]
		if (f["recovery_ms"] > max[s]) max[s] = f["recovery_ms"]
		if (f["result"] != "OK") bad[s]++
		total++
	}
	/^FAIL: iteration/ { failed++ }
	END {
		for (s in n)
			printf "side %s: %d crash(es), %d failed, recovery (restart to INSYNC) mean %d ms, max %d ms\n",
				s, n[s], bad[s], sum[s] / n[s], max[s]
		printf "tally: %d iteration(s), %d failed check(s), %d aborted run(s), %d s\n",
			total, failed, aborted, secs
		exit (failed + aborted > 0)
	}'
