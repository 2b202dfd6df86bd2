#!/usr/bin/env bash
# kill -9 of frep-server at seeded random points: the mirror side of test-crash-kill9.sh (one ctest each, so both fit the 60 s bound).
CRASH_SIDES=${CRASH_SIDES:-mirror} exec bash "$(dirname "$0")/test-crash-kill9.sh" "$@"
