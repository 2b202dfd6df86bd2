#!/usr/bin/env bash
# Throwaway ECDSA P-256 PKI for demos and tests: a CA, the mirror's server cert and client certs.
#
# Usage: gen-certs.sh [-v] [--admin] DIR [CLIENT_CN ...]  (default CLIENT_CN: master-1)
#   DIR/ca.crt, ca.key          the CA (CN "frep test CA")
#   DIR/server.crt, server.key  CN frep-mirror, SAN DNS:frep-mirror,DNS:localhost, EKU serverAuth
#   DIR/CN.crt, CN.key          one per CLIENT_CN, EKU clientAuth
# --admin makes the admin API's PKI instead, in its own DIR and so under its own CA
# (CN "frep admin CA"): the daemons' --admin-cert server.crt (CN frep-admin, SAN
# DNS:frep-admin,DNS:localhost), and one certificate per operator CLIENT_CN (default
# admin) for frepctl --connect and the daemons' --admin-allow. An admin certificate
# never replicates: the mirror trusts only the replication CA.
# Files that already exist are kept, so tests can call it again with more CNs.
# Quiet on success; -v lists what was made. Not for production use: keys are unencrypted.
set -euo pipefail

verbose=0 admin=0
while [ $# -gt 0 ]; do
	case $1 in
	-v) verbose=1 ;;
	--admin) admin=1 ;;
	*) break ;;
	esac
	shift
done
if [ $# -lt 1 ]; then
	echo "usage: $0 [-v] [--admin] DIR [CLIENT_CN ...]" >&2
	exit 2
fi
dir=$1
shift
cns=("$@")
readonly DAYS=825 # the longest validity Apple/browser policies accept; plenty for a test PKI
if [ $admin -eq 1 ]; then
	[ ${#cns[@]} -gt 0 ] || cns=(admin)
	readonly CA_CN="frep admin CA" SERVER_CN=frep-admin
else
	[ ${#cns[@]} -gt 0 ] || cns=(master-1)
	readonly CA_CN="frep test CA" SERVER_CN=frep-mirror
fi
if [ -f "$dir/ca.crt" ] && ! openssl x509 -in "$dir/ca.crt" -noout -subject | grep -q "CN *= *$CA_CN\$"; then
	echo "gen-certs: $dir holds another PKI ($(openssl x509 -in "$dir/ca.crt" -noout -subject));" \
		"the replication and admin PKIs each need a directory of their own" >&2
	exit 2
fi

for cn in "${cns[@]}"; do
	# The CN becomes a file name: keep it to characters that cannot escape DIR.
	if ! [[ $cn =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || [ "$cn" = ca ] || [ "$cn" = server ]; then
		echo "gen-certs: invalid client CN '$cn' (want [A-Za-z0-9._-], not ca/server)" >&2
		exit 2
	fi
done

umask 077
mkdir -p "$dir"
errlog=$(mktemp "$dir/.gen-certs.XXXXXX")
trap 'rm -f "$errlog" "$dir"/.tmp-*' EXIT

# run CMD...: openssl stays quiet unless it fails.
run() {
	if ! "$@" >>"$errlog" 2>&1; then
		echo "gen-certs: failed: $*" >&2
		cat "$errlog" >&2
		exit 1
	fi
}

say() {
	[ $verbose -eq 0 ] || echo "gen-certs: $*"
}

# A random positive 128-bit serial, so re-generated certs never repeat one.
serial() {
	echo "0x7$(openssl rand -hex 15)"
}

if [ ! -f "$dir/ca.crt" ] || [ ! -f "$dir/ca.key" ]; then
	run openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$dir/.tmp-ca.key" -out "$dir/.tmp-ca.crt" -days "$DAYS" -subj "/CN=$CA_CN" \
		-set_serial "$(serial)" \
		-addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-addext "subjectKeyIdentifier=hash"
	mv "$dir/.tmp-ca.key" "$dir/ca.key"
	chmod 644 "$dir/.tmp-ca.crt"
	mv "$dir/.tmp-ca.crt" "$dir/ca.crt"
	say "made CA $dir/ca.crt"
fi

# leaf NAME CN EKU [SAN]: key + CSR, signed by the CA. Written under temporary
# names and renamed, so an interrupted run never leaves a key without its cert.
leaf() {
	local name=$1 cn=$2 eku=$3 san=${4:-}
	[ -f "$dir/$name.crt" ] && [ -f "$dir/$name.key" ] && return 0
	local ext=$dir/.tmp-$name.ext
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature"
		echo "extendedKeyUsage=$eku"
		echo "subjectKeyIdentifier=hash"
		echo "authorityKeyIdentifier=keyid"
		[ -z "$san" ] || echo "subjectAltName=$san"
	} >"$ext"
	run openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$dir/.tmp-$name.key" -out "$dir/.tmp-$name.csr" -subj "/CN=$cn"
	run openssl x509 -req -in "$dir/.tmp-$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
		-set_serial "$(serial)" -days "$DAYS" -sha256 -extfile "$ext" \
		-out "$dir/.tmp-$name.crt"
	mv "$dir/.tmp-$name.key" "$dir/$name.key"
	chmod 644 "$dir/.tmp-$name.crt"
	mv "$dir/.tmp-$name.crt" "$dir/$name.crt"
	rm -f "$dir/.tmp-$name.csr" "$ext"
	say "made $dir/$name.crt (CN=$cn, $eku)"
}

leaf server "$SERVER_CN" serverAuth "DNS:$SERVER_CN,DNS:localhost"
for cn in "${cns[@]}"; do
	leaf "$cn" "$cn" clientAuth
done
