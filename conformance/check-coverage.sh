#!/usr/bin/env bash
# Every normative clause of spec/protocol.md is cited by at least one
# frep-conform case, or listed in conformance/untestable.md with its reason; no
# case or list names a clause the spec does not have; none is in both.
#
# Usage: bash conformance/check-coverage.sh FREP_CONFORM_BINARY
# Prints one line per problem and a closing summary; exit 0 when there is none.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
conform=${1:?usage: check-coverage.sh FREP_CONFORM_BINARY}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Clauses: **[ID]** in the spec, except the retired ones (kept so IDs are never reused).
grep -o '\*\*\[[A-Z]*-[0-9]*\]\*\* *\**[A-Za-z]*' "$src/spec/protocol.md" |
	grep -v 'Retired' | sed 's/^\*\*\[\([A-Z]*-[0-9]*\)\].*/\1/' | sort -u >"$tmp/spec"
grep -o '\*\*\[[A-Z]*-[0-9]*\]\*\* *\*Retired' "$src/spec/protocol.md" |
	sed 's/^\*\*\[\([A-Z]*-[0-9]*\)\].*/\1/' | sort -u >"$tmp/retired"
"$conform" list | cut -f2 | tr ' ' '\n' | grep . | sort -u >"$tmp/cited"
# untestable.md: one "- **ID**: reason" line per clause.
sed -n 's/^- \*\*\([A-Z]*-[0-9]*\)\*\*: *\(.*\)$/\1\t\2/p' "$src/conformance/untestable.md" >"$tmp/untestable.tsv"
cut -f1 "$tmp/untestable.tsv" | sort >"$tmp/untestable.all"
sort -u "$tmp/untestable.all" >"$tmp/untestable"

problems=0
problem() {
	echo "check-coverage: $*"
	problems=$((problems + 1))
}
while read -r id; do
	problem "$id is neither cited by a case nor listed in conformance/untestable.md"
done < <(sort -u "$tmp/cited" "$tmp/untestable" | comm -13 - "$tmp/spec")
while read -r id; do
	problem "a case cites $id, which spec/protocol.md does not define (or retired)"
done < <(comm -23 "$tmp/cited" "$tmp/spec")
while read -r id; do
	problem "conformance/untestable.md lists $id, which spec/protocol.md does not define (or retired)"
done < <(comm -23 "$tmp/untestable" "$tmp/spec")
while read -r id; do
	problem "$id is both cited by a case and listed as untestable: drop it from conformance/untestable.md"
done < <(comm -12 "$tmp/cited" "$tmp/untestable")
while read -r id; do
	problem "conformance/untestable.md lists $id twice"
done < <(uniq -d "$tmp/untestable.all")
while IFS=$'\t' read -r id reason; do
	[ ${#reason} -ge 20 ] || problem "conformance/untestable.md gives $id no real reason: '$reason'"
done <"$tmp/untestable.tsv"

total=$(wc -l <"$tmp/spec")
cited=$(comm -12 "$tmp/cited" "$tmp/spec" | wc -l)
untestable=$(comm -12 "$tmp/untestable" "$tmp/spec" | wc -l)
cases=$("$conform" list | wc -l)
echo "clauses: $total normative ($(wc -l <"$tmp/retired") retired, not counted): $cited cited by $cases cases, $untestable untestable (conformance/untestable.md)"
[ $problems -eq 0 ]
