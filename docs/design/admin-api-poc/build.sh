#!/usr/bin/env bash
# Builds the PoC: protobuf-c + python messages, daemon, nbdkit plugin, client; ASan variants with "asan".
set -euo pipefail
cd "$(dirname "$0")"
protoc-c -Iproto --c_out=gen proto/frep/admin/v1/admin.proto
protoc -Iproto --python_out=gen-py proto/frep/admin/v1/admin.proto
W="-Wall -Wextra -Wshadow -O1 -g -Igen -I."
SAN=""
sfx=""
if [ "${1:-}" = asan ]; then
	SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
	sfx=-asan
fi
L="$(pkg-config --cflags --libs grpc libprotobuf-c) -lpthread"
PB=gen/frep/admin/v1/admin.pb-c.c
gcc $W $SAN -o admin-poc$sfx server.c $PB $L
gcc $W $SAN -fPIC -shared -DNBDKIT_PLUGIN -o nbdkit-adminpoc-plugin$sfx.so server.c $PB $L
gcc $W $SAN -o frepctl-poc$sfx client.c $PB $L
echo "built admin-poc$sfx nbdkit-adminpoc-plugin$sfx.so frepctl-poc$sfx"
