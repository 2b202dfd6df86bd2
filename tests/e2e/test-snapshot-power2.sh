#!/usr/bin/env bash
# Power loss of frep-server with a live snapshot, after the map is durable and in the middle of an apply: the second half of test-snapshot-crash.sh's power cases (one ctest each, so both fit the 60 s bound).
SNAP_CRASH=power2 exec bash "$(dirname "$0")/test-snapshot-crash.sh" "$@"
