#!/usr/bin/env bash
# frep-conform mirror against a thin frep-server (--preallocate=sparse, MP-3, DUR-15): MAKEPARTS, a full copy with holes, sequencing and durability behave as with the default preallocation.
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/conform.sh"
MIRROR_OPTS=--preallocate=sparse conform_mirror 'mirror.mp.*' 'mirror.copy.full' 'mirror.copy.ack-timer' \
	'mirror.seq.*' 'mirror.dur.*'
grep -Eq 'extents created: .*, sparse$' "$T"/mirror-*.log || fail "the mirror created no sparse volume"
! grep -Eq 'extents created: .*, space reserved$' "$T"/mirror-*.log || fail "the mirror reserved a volume's space"
