#!/usr/bin/env bash
# kill -9 of frep-server with a live snapshot: the kill -9 cases of test-snapshot-crash.sh (one ctest each, so both fit the 60 s bound).
SNAP_CRASH=kill9 exec bash "$(dirname "$0")/test-snapshot-crash.sh" "$@"
