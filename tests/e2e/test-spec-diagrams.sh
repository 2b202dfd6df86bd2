#!/usr/bin/env bash
# The spec's state diagrams are exact copies of the ones generated from fsm/*.rl.
set -u

: "${FREP_BUILD:?set FREP_BUILD to the build directory}"
: "${FREP_SRC:?set FREP_SRC to the source directory}"

status=0
for m in master mirror; do
	gen="$FREP_BUILD/gen/fsm/$m.dot"
	spec="$FREP_SRC/spec/fsm-$m.dot"
	if [ ! -f "$gen" ]; then
		echo "FAIL: $gen missing: build the fsm-diagrams target first" >&2
		status=1
		continue
	fi
	if ! diff -u "$spec" "$gen" >&2; then
		echo "FAIL: spec/fsm-$m.dot differs from the diagram generated from fsm/$m.rl." >&2
		echo "      Refresh the spec copies:" >&2
		echo "        cmake --build $FREP_BUILD --target fsm-diagrams" >&2
		echo "        cp $gen $spec" >&2
		echo "        dot -Tsvg $spec -o ${spec%.dot}.svg" >&2
		status=1
		continue
	fi
	echo "ok: spec/fsm-$m.dot matches fsm/$m.rl"
done
exit $status
