#!/usr/bin/env bash
# The whole test suite: installs missing Debian packages, builds with AddressSanitizer
# and UndefinedBehaviorSanitizer (warnings are errors), and runs every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
# The optimised build must be warning-free too (-O3 finds what -O2 misses).
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DFREP_WERROR=ON >/dev/null
cmake --build build-release -j"$(nproc)" >/dev/null
build=${FREP_TEST_BUILD:-build-test}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFREP_SANITIZE=ON -DFREP_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
# Every test is bounded (60 s each); tests pick ephemeral ports and private temp dirs,
# so they run two at a time.
(cd "$build" && ctest --output-on-failure -j2 --timeout 60)

# The libFuzzer harnesses (tests/fuzz): clang, in their own build dir, each run for
# FREP_FUZZ_SECONDS from its seed corpus; a crash or failed oracle fails the run.
fuzz_build=${FREP_FUZZ_BUILD:-build-fuzz}
cmake -S . -B "$fuzz_build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DFREP_FUZZ=ON -DFREP_WERROR=ON >/dev/null
cmake --build "$fuzz_build" -j"$(nproc)" >/dev/null
(cd "$fuzz_build" && ctest --output-on-failure -j2 --timeout 60)
