#!/usr/bin/env bash
# The dissector's fields and names match proto/frep/v1/frep.proto and common/wire.h:
# a field, message type or error code added there and not to the dissector fails.
source "$(dirname "$0")/../e2e/lib.sh"
source "$(dirname "$0")/ws.sh"

ws_tshark -G plugins >"$T/plugins" 2>&1 || fail "tshark -G plugins: $(cat "$T/plugins")"
grep -q "^frep.so" "$T/plugins" || fail "tshark did not load $FREP_DISSECTOR"
ws_tshark -G fields >"$T/fields" 2>"$T/fields.err" || fail "tshark -G fields: $(cat "$T/fields.err")"
ws_tshark -G values >"$T/values" 2>"$T/values.err" || fail "tshark -G values: $(cat "$T/values.err")"
out=$(/usr/bin/python3 "$(dirname "$0")/check-fields.py" "$FREP_SRC/proto/frep/v1/frep.proto" \
	"$FREP_SRC/common/wire.h" "$T/fields" "$T/values") || fail "$out"
pass "$out"
