#!/usr/bin/env bash
# Real NBD clients (libnbd tools, qemu, nbd-client) against frep-client, which serves the
# volume through nbdkit and frep's plugin: block status keeps holes, large writes split into
# consecutive transactions, multi-conn, NBD over TLS with client certificates, shutdown.
source "$(dirname "$0")/lib.sh"
certs master-1 nbd-user

MIB=$((1 << 20))
SIZE=$((64 * MIB))
mkvol "$T/a0" 32M; mkvol "$T/a1" 32M
EXT="$T/a0,$T/a1"
M=$(mirror_extents vol 2)
URI=$(nbd_uri vol)
start_server
start_client vol "$EXT" master-1 --journal-size 16M --trace-tx "$T/trace"
wait_status vol state INSYNC 20
PASSED=0
ok() {
	PASSED=$((PASSED + 1))
	echo "ok $PASSED - $*"
}

# --- nbdinfo ------------------------------------------------------------------
nbdinfo --json "$URI" >"$T/info.json" || fail "nbdinfo --json"
# The largest transaction, from the journal size (at most 16M / 8).
MAXP=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["exports"][0]["block_size_maximum"])' "$T/info.json")
[ $((MAXP % 4096)) -eq 0 ] && [ "$MAXP" -le $((2 * MIB)) ] && [ "$MAXP" -ge $((1 * MIB)) ] ||
	fail "block_size_maximum $MAXP with a 16M journal"
python3 - "$T/info.json" vol "$SIZE" "$MAXP" <<'EOF' || fail "nbdinfo --json fields"
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
want = {"export-name": sys.argv[2], "export-size": int(sys.argv[3]),
	"block_size_maximum": int(sys.argv[4]), "block_size_minimum": 1,
	"block_size_preferred": 4096, "is_read_only": False, "can_flush": True,
	"can_fua": True, "can_trim": True, "can_zero": True, "can_multi_conn": True}
bad = {k: (e.get(k), v) for k, v in want.items() if e.get(k) != v}
if bad:
	sys.exit("mismatch (got, want): %r" % bad)
if "base:allocation" not in e.get("contexts", []):
	sys.exit("no base:allocation context: %r" % e.get("contexts"))
EOF
ok "nbdinfo --json: name, size, block sizes, flags, base:allocation"

nbdinfo --list --json "nbd+unix://?socket=$T/vol.sock" >"$T/list.json" || fail "nbdinfo --list"
python3 -c 'import json,sys; n=[e["export-name"] for e in json.load(open(sys.argv[1]))["exports"]]; sys.exit(0 if n == ["vol"] else "exports %r" % n)' \
	"$T/list.json" || fail "nbdinfo --list content"
nbdinfo --size "nbd+unix://?socket=$T/vol.sock" >"$T/default.out" || fail "default export"
[ "$(cat "$T/default.out")" = "$SIZE" ] || fail "default export size $(cat "$T/default.out")"
if nbdinfo "nbd+unix:///nosuch?socket=$T/vol.sock" >"$T/unknown.out" 2>&1; then
	fail "nbdinfo accepted an unknown export"
fi
# libnbd reports NBD_REP_ERR_UNKNOWN as ENOENT.
grep -q 'No such file or directory' "$T/unknown.out" || fail "no unknown-export error: $(cat "$T/unknown.out")"
ok "the volume is the one export (listed, and the default); another name is refused"

# --- block status: nbdinfo --map shows the holes ------------------------------
# Data at 4M..5M and across the extent boundary 31.5M..32.5M; the rest is holes.
qemu-io -f raw "$URI" -c 'write -P 0x11 4M 1M' -c 'write -P 0x22 31.5M 1M' >/dev/null ||
	fail "qemu-io writes for the map"
nbdinfo --map --json "$URI" >"$T/map.json" || fail "nbdinfo --map"
python3 - "$T/map.json" "$SIZE" <<'EOF' || fail "nbdinfo --map: $(cat "$T/map.json")"
import json, sys
M = 1 << 20
runs = []
for e in json.load(open(sys.argv[1])):
	if runs and runs[-1][2] == e["type"] and runs[-1][1] == e["offset"]:
		runs[-1][1] += e["length"]
	else:
		runs.append([e["offset"], e["offset"] + e["length"], e["type"]])
want = [[0, 4 * M, 3], [4 * M, 5 * M, 0], [5 * M, 31 * M + M // 2, 3],
	[31 * M + M // 2, 32 * M + M // 2, 0], [32 * M + M // 2, int(sys.argv[2]), 3]]
if runs != want:
	sys.exit("map %r, want %r" % (runs, want))
EOF
ok "nbdinfo --map: data where written, holes (type 3) elsewhere, across the extent boundary"

# qemu-img convert and nbdcopy read the map: the copies stay sparse, bytes equal.
qemu-img convert -f raw -O raw "$URI" "$T/conv.img" || fail "qemu-img convert from the export"
cat "$T/a0" "$T/a1" >"$T/master.img"
cmp "$T/master.img" "$T/conv.img" || fail "qemu-img convert: bytes differ"
alloc=$(($(stat -c %b "$T/conv.img") * 512))
[ "$alloc" -le $((4 * MIB)) ] || fail "qemu-img convert allocated $alloc bytes for 2 MiB of data"
ok "qemu-img convert from the export: bytes equal, holes kept ($alloc bytes allocated)"

# --- nbdcopy, 4 connections each way ----------------------------------------------
head -c $((24 * MIB)) /dev/urandom >"$T/in.bin"
truncate -s "$SIZE" "$T/in.bin"
nbdcopy --connections=4 "$T/in.bin" "$URI" || fail "nbdcopy in"
nbdcopy --connections=4 "$URI" "$T/out.bin" || fail "nbdcopy out"
cmp "$T/in.bin" "$T/out.bin" || fail "nbdcopy round trip differs"
cat "$T/a0" "$T/a1" | cmp - "$T/in.bin" || fail "master extents do not hold the copied bytes"
ok "nbdcopy --connections=4 in and out: bytes equal, and in the extents"

# --- nbdsh: FUA, flush, trim, zero, bounds, a write split into transactions -----
cat >"$T/checks.py" <<'EOF'
import errno, os, nbd
uri, ext, size, maxp = os.environ["URI"], os.environ["EXT"].split(","), int(os.environ["SIZE"]), int(os.environ["MAXP"])

def file_bytes(off, n):
	data = b""
	for p in ext:
		data += open(p, "rb").read()
	return data[off:off + n]

def expect_error(what, want, fn, *args):
	try:
		fn(*args)
	except nbd.Error as e:
		if e.errnum != want:
			raise SystemExit("%s: errno %s, want %s" % (what, e.errnum and errno.errorcode.get(e.errnum), errno.errorcode[want]))
		return
	raise SystemExit("%s: succeeded, want %s" % (what, errno.errorcode[want]))

h = nbd.NBD()
h.connect_uri(uri)
assert h.get_size() == size
pat = bytes(range(256)) * 256   # 64 KiB
h.pwrite(pat, 0, nbd.CMD_FLAG_FUA)
assert h.pread(len(pat), 0) == pat, "FUA write read back"
assert file_bytes(0, len(pat)) == pat, "FUA write not in the extents"
h.flush()

zero = bytes(len(pat))
h.pwrite(pat, 1 << 20)
h.trim(len(pat), 1 << 20)
assert h.pread(len(pat), 1 << 20) == zero, "trimmed range does not read as zeroes"
assert file_bytes(1 << 20, len(pat)) == zero
for off, flags in ((2 << 20, 0), (3 << 20, nbd.CMD_FLAG_NO_HOLE)):
	h.pwrite(pat, off)
	h.zero(len(pat), off, flags)
	assert h.pread(len(pat), off) == zero, "zero flags=%d" % flags
	assert file_bytes(off, len(pat)) == zero

# Past the advertised maximum: nbdkit passes it on, the plugin splits it.
h.set_strict_mode(0)
big = os.urandom(2 * maxp + 4096)
off = 30 << 20  # crosses the extent boundary at 32M
h.pwrite(big, off)
assert h.pread(len(big), off) == big, "split write read back"
assert file_bytes(off, len(big)) == big, "split write not in the extents"

expect_error("read past the end", errno.EINVAL, h.pread, 4096, size - 2048)
expect_error("write past the end", errno.ENOSPC, h.pwrite, b"x" * 4096, size - 2048)
expect_error("trim past the end", errno.EINVAL, h.trim, 4096, size - 2048)
h.shutdown()
print("nbdsh checks passed")
EOF
URI=$URI EXT=$EXT SIZE=$SIZE MAXP=$MAXP nbdsh -n -c "exec(open('$T/checks.py').read())" >"$T/nbdsh.out" 2>&1 ||
	fail "nbdsh checks: $(cat "$T/nbdsh.out")"
grep -q 'nbdsh checks passed' "$T/nbdsh.out" || fail "nbdsh checks did not finish"
# The split write: three records with consecutive TXIDs and contiguous ranges.
off=$((30 * MIB))
grep -A2 " op=write off=$off len=$MAXP " "$T/trace" >"$T/split.trace" || fail "no split write in the trace"
awk -v off=$off -v maxp=$MAXP '
	{ split($2, t, "="); split($4, o, "="); split($5, l, "=") }
	NR == 1 { first = t[2] }
	{ if (t[2] != first + NR - 1 || o[2] != off + (NR - 1) * maxp || l[2] != (NR < 3 ? maxp : 4096)) bad = 1 }
	END { exit (NR != 3 || bad) }' "$T/split.trace" || fail "split write records: $(cat "$T/split.trace")"
ok "nbdsh: FUA, flush, trim, zero, bounds; a write of 2 max + 4K is 3 consecutive TXIDs"

# --- qemu-io, qemu-img ---------------------------------------------------------
qemu-io -f raw "$URI" -c 'write -P 0xab 4M 1M' -c 'read -P 0xab 4M 1M' >"$T/qemu-io.out" 2>&1 ||
	fail "qemu-io: $(cat "$T/qemu-io.out")"
grep -q 'read 1048576/1048576 bytes' "$T/qemu-io.out" || fail "qemu-io read: $(cat "$T/qemu-io.out")"
qemu-io -f raw "$URI" -c 'read -P 0xcd 4M 4k' >"$T/qemu-io-neg.out" 2>&1 || true
grep -qi 'pattern verification failed' "$T/qemu-io-neg.out" || fail "qemu-io wrong pattern not detected"
head -c $((8 * MIB)) /dev/urandom >"$T/src.img"
truncate -s "$SIZE" "$T/src.img"
qemu-img convert -n -f raw -O raw "$T/src.img" "$URI" || fail "qemu-img convert to the export"
qemu-img compare -f raw -F raw "$T/src.img" "$URI" >"$T/cmp.out" || fail "qemu-img compare: $(cat "$T/cmp.out")"
cat "$T/a0" "$T/a1" | cmp - "$T/src.img" || fail "extents differ from the converted image"
# One byte changed (its complement: never the byte it was, as a fixed byte could be).
/usr/bin/python3 - "$T/src.img" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(12345)
    b = f.read(1)[0]
    f.seek(12345)
    f.write(bytes([b ^ 0xFF]))
PY
if qemu-img compare -f raw -F raw "$T/src.img" "$URI" >/dev/null 2>&1; then
	fail "qemu-img compare missed a difference"
fi
ok "qemu-io pattern write/read; qemu-img convert into the export and compare"

# Everything above reached the mirror.
wait_converged "$EXT" "$M" 30
ok "the mirror is byte-identical to the master"

# --- garbage and abandoned handshakes: nbdkit's job, the volume stays served -----
python3 - "$T/vol.sock" <<'EOF' || fail "hostile clients"
import os, socket, struct, sys
def conn():
	s = socket.socket(socket.AF_UNIX)
	s.settimeout(10)
	s.connect(sys.argv[1])
	return s
s = conn()
s.sendall(os.urandom(4096))
s.close()
s = conn()
s.recv(18)
s.sendall(struct.pack(">I", 3) + struct.pack(">Q", 0x49484156454F5054)[:5])
s.close()
for s in [conn() for _ in range(20)]:
	s.close()
EOF
alive "$CLIENT_PID" frep-client
[ "$(nbdinfo --size "$URI")" = "$SIZE" ] || fail "no answer after hostile clients"
ok "garbage, a half option header, 20 abandoned connections: still serving"

# --- SIGTERM with clients connected, one of them idle mid-handshake -------------
python3 - "$T/vol.sock" >"$T/idle.out" 2>&1 <<'EOF' &
import socket, struct, sys
def conn():
	s = socket.socket(socket.AF_UNIX)
	s.settimeout(30)
	s.connect(sys.argv[1])
	return s
def recv_exact(s, n):
	b = b""
	while len(b) < n:
		c = s.recv(n - len(b))
		assert c, "closed early"
		b += c
	return b
a = conn()
recv_exact(a, 18)
a.sendall(struct.pack(">I", 3) + struct.pack(">QII", 0x49484156454F5054, 1, 3) + b"vol")
recv_exact(a, 10)
b = conn()
recv_exact(b, 18)
print("ready", flush=True)
for s in (a, b):
	try:
		assert s.recv(1) == b"", "data instead of EOF"
	except ConnectionResetError:
		pass
print("closed by server", flush=True)
EOF
IDLE_PID=$!
PIDS+=("$IDLE_PID")
wait_log "$T/idle.out" ready 10
stop "$CLIENT_PID"
wait "$IDLE_PID" || fail "idle clients: $(cat "$T/idle.out")"
grep -q 'closed by server' "$T/idle.out" || fail "idle clients not closed: $(cat "$T/idle.out")"
[ ! -e "$T/vol.sock" ] || fail "socket file left behind"
ok "SIGTERM with clients connected: they are closed, exit 0, socket removed"

# A stale socket file is replaced; a regular file is never removed.
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$T/vol.sock"
: >"$T/client-vol.log"
start_client vol "$EXT" master-1 --journal-size 16M
wait_log "$T/client-vol.log" "NBD listening on unix:$T/vol.sock" 10
[ "$(nbdinfo --size "$URI")" = "$SIZE" ] || fail "no answer after a start over a stale socket"
stop "$CLIENT_PID"
touch "$T/vol.sock"
rc=0
"$BIN/frep-client" --volume "vol=$EXT" --mirror "127.0.0.1:$SERVER_PORT" --server-name frep-mirror \
	--journal "$T/vol.journal" --cert "$PKI/master-1.crt" --key "$PKI/master-1.key" \
	--ca "$PKI/ca.crt" --nbd "unix:$T/vol.sock" 2>"$T/notsock.err" || rc=$?
[ $rc -eq 2 ] || fail "listening over a regular file: exit $rc"
[ -f "$T/vol.sock" ] || fail "a regular file was removed"
grep -q 'exists and is not a socket' "$T/notsock.err" || fail "no error for a non-socket path: $(cat "$T/notsock.err")"
rm -f "$T/vol.sock"
ok "stale socket replaced; a regular file refused with exit 2 and kept"

# --- TCP on a kernel-chosen port; nbd-client -l --------------------------------------
"$BIN/frep-client" --volume "vol=$EXT" --mirror "127.0.0.1:$SERVER_PORT" --server-name frep-mirror \
	--journal "$T/vol.journal" --cert "$PKI/master-1.crt" --key "$PKI/master-1.key" \
	--ca "$PKI/ca.crt" --nbd 127.0.0.1:0 >>"$T/client-tcp.log" 2>&1 &
CLIENT_PID=$!
PIDS+=("$CLIENT_PID")
wait_log "$T/client-tcp.log" 'NBD listening on 127\.0\.0\.1:[0-9]+' 20
PORT=$(sed -n 's/.*NBD listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/client-tcp.log")
[ "$PORT" -gt 0 ] || fail "no bound port logged"
grep -q 'WARN' "$T/client-tcp.log" && fail "a loopback listener warned: $(grep WARN "$T/client-tcp.log")"
nbd-client -l 127.0.0.1 "$PORT" >"$T/nbdc-tcp.out" 2>&1 || fail "nbd-client -l tcp: $(cat "$T/nbdc-tcp.out")"
grep -qx vol "$T/nbdc-tcp.out" || fail "nbd-client -l tcp output: $(cat "$T/nbdc-tcp.out")"
[ "$(nbdinfo --size "nbd://127.0.0.1:$PORT/vol")" = "$SIZE" ] || fail "nbdinfo over TCP"
stop "$CLIENT_PID"
ok "TCP listener on port 0: port logged, nbd-client -l lists the export, no warning on loopback"

# --- NBD over TLS with client certificates -------------------------------------------
mkdir -p "$T/tls-user" "$T/tls-nocert"
ln -s "$PKI/ca.crt" "$T/tls-user/ca-cert.pem"
ln -s "$PKI/nbd-user.crt" "$T/tls-user/client-cert.pem"
ln -s "$PKI/nbd-user.key" "$T/tls-user/client-key.pem"
ln -s "$PKI/ca.crt" "$T/tls-nocert/ca-cert.pem"
TMPDIR=$T start_client vol "$EXT" master-1 --journal-size 16M \
	--nbd-tls-cert "$PKI/server.crt" --nbd-tls-key "$PKI/server.key" --nbd-tls-ca "$PKI/ca.crt"
wait_log "$T/client-vol.log" 'NBD listening on unix:.* \(TLS\)' 10
[ -z "$(find "$T" -maxdepth 1 -name 'frep-nbd-tls.*')" ] || fail "the temporary TLS directory was left behind"
TLS_URI="nbds+unix:///vol?socket=$T/vol.sock&tls-certificates=$T/tls-user"
head -c $((3 * MIB)) /dev/urandom >"$T/tls.bin"
nbdcopy "$T/tls.bin" "$TLS_URI" || fail "nbdcopy over TLS"
nbdinfo --json "$TLS_URI" >"$T/tls.json" || fail "nbdinfo over TLS"
grep -q '"TLS": true' "$T/tls.json" || fail "not TLS: $(cat "$T/tls.json")"
cmp -n $((3 * MIB)) "$T/a0" "$T/tls.bin" || fail "bytes written over TLS not in the volume"
if nbdinfo "nbds+unix:///vol?socket=$T/vol.sock&tls-certificates=$T/tls-nocert" >"$T/nocert.out" 2>&1; then
	fail "a TLS client without a certificate was served"
fi
if nbdinfo "$URI" >"$T/plain.out" 2>&1; then
	fail "a plain client was served"
fi
grep -qi 'tls' "$T/plain.out" || fail "plain client refusal does not name TLS: $(cat "$T/plain.out")"
alive "$CLIENT_PID" frep-client
stop "$CLIENT_PID"
ok "NBD over TLS: a client certificate is served, no certificate or no TLS refused"

# --- SIGTERM while a writer waits for room in a full buffer ---------------------------
mkvol "$T/b0" 16M
start_proxy
SERVER_PORT=$PROXY_PORT start_client blk "$T/b0" master-1 --journal-size 2M --on-buffer-full=block \
	--degrade-after 60
wait_status blk state INSYNC 20
pctl stall >/dev/null
qemu-io -f raw "$(nbd_uri blk)" -c 'write -P 0x55 0 8M' >"$T/blocked.out" 2>&1 &
WRITER=$!
PIDS+=("$WRITER")
wait_log "$T/client-blk.log" 'mirror buffer full at TXID [0-9]+: writers wait' 20
alive "$WRITER" "the blocked writer"
stop "$CLIENT_PID"
rc=0
wait "$WRITER" || rc=$?
[ $rc -ne 0 ] || fail "the blocked write succeeded after shutdown: $(cat "$T/blocked.out")"
ok "SIGTERM while a writer waits for the buffer: exit 0 within 10 s, the writer gets an error"

pass "$PASSED checks"
