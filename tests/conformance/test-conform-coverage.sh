#!/usr/bin/env bash
# Every normative clause of spec/protocol.md is cited by a frep-conform case or listed, with its reason, in conformance/untestable.md; and the check itself catches a clause without either.
source "$(dirname "$0")/../e2e/lib.sh"
CHECK=$FREP_SRC/conformance/check-coverage.sh
bash "$CHECK" "$BIN/frep-conform" >"$T/coverage.log" 2>&1 || fail "$(cat "$T/coverage.log")"
cat "$T/coverage.log"
grep -Eq '^clauses: [0-9]+ normative .*: [0-9]+ cited by [0-9]+ cases, [0-9]+ untestable' "$T/coverage.log" ||
	fail "no summary line: $(cat "$T/coverage.log")"

# The check fails on a spec with a clause nobody cites, and on a stale untestable entry.
mkdir -p "$T/src/spec" "$T/src/conformance"
cp "$FREP_SRC/conformance/check-coverage.sh" "$FREP_SRC/conformance/untestable.md" "$T/src/conformance/"
cp "$FREP_SRC/spec/protocol.md" "$T/src/spec/"
printf '\n- **[ZZZ-1]** A new rule nobody tests yet.\n' >>"$T/src/spec/protocol.md"
! bash "$T/src/conformance/check-coverage.sh" "$BIN/frep-conform" >"$T/new.log" 2>&1 ||
	fail "a clause with no case and no reason passed the check"
grep -q 'ZZZ-1 is neither cited by a case nor listed' "$T/new.log" || fail "$(cat "$T/new.log")"
cp "$FREP_SRC/spec/protocol.md" "$T/src/spec/"
printf -- '- **ZZZ-2**: a clause the spec does not have, listed by mistake\n' >>"$T/src/conformance/untestable.md"
! bash "$T/src/conformance/check-coverage.sh" "$BIN/frep-conform" >"$T/stale.log" 2>&1 ||
	fail "an untestable entry for a clause the spec lacks passed the check"
grep -q 'lists ZZZ-2, which spec/protocol.md does not define' "$T/stale.log" || fail "$(cat "$T/stale.log")"
pass "$(grep '^clauses:' "$T/coverage.log")"
