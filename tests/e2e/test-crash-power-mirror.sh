#!/usr/bin/env bash
# Power loss of frep-server at each named crash point: the mirror side of test-crash-power.sh (one ctest each, so both fit the 60 s bound).
CRASH_SIDES=${CRASH_SIDES:-mirror} exec bash "$(dirname "$0")/test-crash-power.sh" "$@"
