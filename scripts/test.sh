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
cd "$build"
# Every test is bounded (60 s each); tests pick ephemeral ports and private temp dirs,
# so they run two at a time.
ctest --output-on-failure -j2 --timeout 60
