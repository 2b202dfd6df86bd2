#!/usr/bin/env bash
# frepctl --connect: the admin API over TLS (--admin-listen) with an admin certificate.
# An allowed identity gets answers; one not in --admin-allow gets PERMISSION_DENIED (exit
# 1); a certificate from another CA, or a server name the daemon's certificate does not
# carry, cannot connect (exit 3); PEM files frepctl cannot read are a usage error (exit 2).
source "$(dirname "$0")/frepctl-lib.sh"
certs master-1 admin-1 intruder
bash "$FREP_SRC/scripts/gen-certs.sh" "$T/pki2" admin-1 # another CA, same CN

printf '# admin identities\nadmin-1\n' >"$T/admin-allow"
mkvol "$T/e0" 8M
start_server --admin-listen 127.0.0.1:0 --admin-cert "$PKI/server.crt" --admin-key "$PKI/server.key" \
	--admin-ca "$PKI/ca.crt" --admin-allow "$T/admin-allow"
ADMIN_PORT=$(grep -Eo 'admin API on 127\.0\.0\.1:[0-9]+' "$SERVER_LOG" | cut -d: -f2)
[ -n "$ADMIN_PORT" ] || fail "no admin TLS port in the server log"
start_client db "$T/e0" master-1
wait_state db MIRROR INSYNC

# tls CN: the --connect options of admin identity CN (test paths have no spaces).
tls() {
	echo --connect "127.0.0.1:$ADMIN_PORT" --ca "$PKI/ca.crt" --cert "$PKI/$1.crt" --key "$PKI/$1.key"
}

# shellcheck disable=SC2046 # tls prints separate words on purpose
expect 0 $(tls admin-1) --server-name frep-mirror status
out_has '^db role:MIRROR state:INSYNC'
# shellcheck disable=SC2046
expect 0 $(tls admin-1) --server-name localhost --json status db
[ "$(jqc '[.volumes[].role]')" = '["MIRROR"]' ] || fail "status db over TLS: $OUT"
# shellcheck disable=SC2046
expect 1 $(tls admin-1) --server-name frep-mirror pause db
err_has '^frepctl: pause db: FAILED_PRECONDITION: .*frep-server'

# Not in --admin-allow: refused per call, and the daemon logs who.
# shellcheck disable=SC2046
expect 1 $(tls intruder) --server-name frep-mirror status
err_has '^frepctl: status: PERMISSION_DENIED: '
wait_log "$SERVER_LOG" "intruder" 5

# The daemon's certificate names frep-mirror and localhost, not 127.0.0.1.
# shellcheck disable=SC2046
expect 3 $(tls admin-1) status
err_has "^frepctl: status: 127\.0\.0\.1:$ADMIN_PORT: UNAVAILABLE: "
# A client certificate from another CA: the handshake fails.
expect 3 --connect "127.0.0.1:$ADMIN_PORT" --ca "$PKI/ca.crt" --cert "$T/pki2/admin-1.crt" \
	--key "$T/pki2/admin-1.key" --server-name frep-mirror status
err_has "UNAVAILABLE"
# The daemon's certificate is checked against --ca: another CA does not vouch for it.
expect 3 --connect "127.0.0.1:$ADMIN_PORT" --ca "$T/pki2/ca.crt" --cert "$T/pki2/admin-1.crt" \
	--key "$T/pki2/admin-1.key" --server-name frep-mirror status
err_has "UNAVAILABLE"

# Files frepctl cannot read: usage, before anything connects.
expect 2 --connect "127.0.0.1:$ADMIN_PORT" --ca "$T/nope.crt" --cert "$PKI/admin-1.crt" \
	--key "$PKI/admin-1.key" status
err_has "^frepctl: --ca $T/nope\.crt: No such file or directory"
: >"$T/empty.key"
expect 2 --connect "127.0.0.1:$ADMIN_PORT" --ca "$PKI/ca.crt" --cert "$PKI/admin-1.crt" \
	--key "$T/empty.key" status
err_has "^frepctl: --key $T/empty\.key: empty file"
expect 2 --connect "127.0.0.1:$ADMIN_PORT" --ca "$PKI/ca.crt" --cert "$PKI/admin-1.crt" status
err_has '^frepctl: --connect needs --ca, --cert and --key'
expect 2 --connect "127.0.0.1" --ca "$PKI/ca.crt" --cert "$PKI/admin-1.crt" --key "$PKI/admin-1.key" status
err_has "^frepctl: --connect: expected HOST:PORT"

alive "$SERVER_PID" frep-server
pass "--connect over TLS: allowed identity answered, others PERMISSION_DENIED (1), bad name/CA (3), bad files (2)"
