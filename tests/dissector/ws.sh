# Dissector tests: tshark with the plugin under test. Source after tests/e2e/lib.sh.
#
# tshark run as root ignores personal plugins and WIRESHARK_PLUGIN_DIR, so it
# runs as nobody with a private HOME whose personal plugin folder holds the
# plugin just built ($FREP_DISSECTOR). Files it reads go in $WS.
: "${FREP_DISSECTOR:=$FREP_BUILD/dissector/frep.so}"
[ -f "$FREP_DISSECTOR" ] || fail "no plugin at $FREP_DISSECTOR: build the frep-dissector target"
WS=$T/ws
WS_PLUGINS=$WS/home/.local/lib/wireshark/plugins/$(tshark -v 2>/dev/null |
	sed -En '1s/.* ([0-9]+\.[0-9]+)\.[0-9]+.*/\1/p')/epan
mkdir -p "$WS_PLUGINS"
cp "$FREP_DISSECTOR" "$WS_PLUGINS/frep.so"
chmod 711 "$T"
chmod -R a+rX "$WS"

# ws_tshark ARGS...: tshark as nobody with the plugin; reads files in $WS only.
ws_tshark() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups \
		env -i PATH=/usr/bin:/bin HOME="$WS/home" tshark "$@"
}
