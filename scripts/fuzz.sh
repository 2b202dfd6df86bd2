#!/usr/bin/env bash
# Long fuzzing runs: builds the libFuzzer harnesses (tests/fuzz) with clang in their own
# build dir and runs each for SECONDS, one at a time (the machine has 2 cores), with its
# working corpus on tmpfs. Prints per harness the executions, exec/s and crashes; a
# crashing input is kept in BUILD/fuzz-crashes/ and the run exits 1. FREP_FUZZ_RUNS=N
# also stops each harness after N executions (the issue's long runs: 10 million or
# 30 CPU-minutes, whichever comes first); "cpu s" is the CPU time it got.
#   scripts/fuzz.sh [SECONDS [HARNESS...]]    default: 300 s, every tests/fuzz/fuzz-*.c
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-300}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
	echo "fuzz.sh: SECONDS must be a positive whole number, got '$seconds' (usage: scripts/fuzz.sh [SECONDS [HARNESS...]])" >&2
	exit 2
fi
runs=${FREP_FUZZ_RUNS:--1}
if ! [[ $runs =~ ^(-1|[1-9][0-9]*)$ ]]; then
	echo "fuzz.sh: FREP_FUZZ_RUNS must be a positive whole number, got '$runs'" >&2
	exit 2
fi
shift || true
harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
	for src in tests/fuzz/fuzz-*.c; do
		harnesses+=("$(basename "$src" .c)")
	done
fi
for h in "${harnesses[@]}"; do
	if [ ! -f "tests/fuzz/$h.c" ]; then
		echo "fuzz.sh: no harness '$h': pick from $(cd tests/fuzz && echo fuzz-*.c | sed 's/\.c//g')" >&2
		exit 2
	fi
done

build=${FREP_FUZZ_BUILD:-build-fuzz}
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFREP_FUZZ=ON -DFREP_WERROR=ON >/dev/null
cmake --build "$build" -j2 >/dev/null
work=$(mktemp -d /dev/shm/frep-fuzz-run-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/fuzz-crashes" "$build/fuzz-logs"

failed=0
printf '%-22s %12s %8s %8s %8s\n' harness executions exec/s "cpu s" crashes
for h in "${harnesses[@]}"; do
	mkdir -p "$work/$h/corpus" "$work/$h/artifacts"
	log=$build/fuzz-logs/$h.log
	# bash's time: user and system seconds of the harness, apart from its own output.
	TIMEFORMAT='%U %S'
	{ time "$build/tests/fuzz/$h" -max_total_time="$seconds" -runs="$runs" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/$h/artifacts/" \
		"$work/$h/corpus" "tests/fuzz/corpus/$h" >"$log" 2>&1 || true; } 2>"$work/$h/cpu"
	execs=$(awk '/^stat::number_of_executed_units:/ {print $2}' "$log")
	rate=$(awk '/^stat::average_exec_per_sec:/ {print $2}' "$log")
	cpu=$(awk '{printf "%.0f", $1 + $2}' "$work/$h/cpu")
	crashes=$(find "$work/$h/artifacts" -type f | wc -l)
	printf '%-22s %12s %8s %8s %8s\n' "$h" "${execs:-?}" "${rate:-?}" "${cpu:-?}" "$crashes"
	if [ "$crashes" -gt 0 ]; then
		cp "$work/$h/artifacts/"* "$build/fuzz-crashes/"
		echo "  kept in $build/fuzz-crashes/; log $log; reproduce: $build/tests/fuzz/$h FILE" >&2
		failed=1
	fi
done
exit $failed
