#!/usr/bin/env bash
# End-to-end: real NBD clients (libnbd tools, qemu, nbd-client, hostile peers) against client/nbd.c.
set -euo pipefail

: "${FREP_BUILD:?set FREP_BUILD to the build directory}"
: "${FREP_SRC:?set FREP_SRC to the source directory}"
export LIBNBD_DEBUG=0
# nbdsh runs "python3 -m nbd", and python3-libnbd is for Debian's python3: a
# python3 earlier on PATH (pyenv, venv) lacks the module.
if ! python3 -c 'import nbd' 2>/dev/null; then
	export PATH=/usr/bin:$PATH
fi

SERVER=$FREP_BUILD/tests/nbd-file-server
[ -x "$SERVER" ] || { echo "FAIL: $SERVER not built" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/frep-nbd-clients.XXXXXX")
PIDS=()
cleanup() {
	local p
	# These are timeout(1) processes: TERM is passed on to the server, KILL is not.
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT

NAME=vol1
SIZE=$((64 << 20))
MAXP=$((1 << 20))
SOCK=$T/nbd.sock
URI="nbd+unix:///$NAME?socket=$SOCK"
PASSED=0

fail() {
	echo "FAIL: $*" >&2
	for f in "$T"/*.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
	done
	exit 1
}
ok() {
	PASSED=$((PASSED + 1))
	echo "ok $PASSED - $*"
}

# Waits (bounded) until the server's log has the "NBD listening on" line.
wait_listening() {
	local log=$1 pid=$2 i
	for i in $(seq 200); do
		grep -q 'NBD listening on' "$log" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || fail "server died at start: $(cat "$log")"
		sleep 0.05
	done
	fail "server did not start listening"
}

# start_server LOG ARGS...: starts nbd-file-server, sets SPID.
start_server() {
	local log=$1
	shift
	timeout 120 "$SERVER" "$@" >"$log" 2>&1 &
	SPID=$!
	PIDS+=("$SPID")
	wait_listening "$log" "$SPID"
}

assert_alive() {
	kill -0 "$SPID" 2>/dev/null || fail "server died: $*"
	timeout 10 nbdinfo --size "$URI" >"$T/alive.out" || fail "server does not answer after $*"
	[ "$(cat "$T/alive.out")" = "$SIZE" ] || fail "wrong size after $*"
}

truncate -s "$SIZE" "$T/disk.img"
start_server "$T/server.log" --file "$T/disk.img" --listen "unix:$SOCK" --name "$NAME" \
	--max-payload "$MAXP"
MAIN_PID=$SPID

# --- nbdinfo ------------------------------------------------------------------
timeout 10 nbdinfo --json "$URI" >"$T/info.json" || fail "nbdinfo --json"
python3 - "$T/info.json" "$NAME" "$SIZE" "$MAXP" <<'EOF' || fail "nbdinfo --json fields"
import json, sys
info = json.load(open(sys.argv[1]))
e = info["exports"][0]
want = {"export-name": sys.argv[2], "export-size": int(sys.argv[3]),
	"block_size_maximum": int(sys.argv[4]), "block_size_minimum": 1,
	"block_size_preferred": 4096, "is_read_only": False, "can_flush": True,
	"can_fua": True, "can_trim": True, "can_zero": True, "can_multi_conn": True}
bad = {k: (e.get(k), v) for k, v in want.items() if e.get(k) != v}
if bad:
	sys.exit("mismatch (got, want): %r" % bad)
EOF
ok "nbdinfo --json: name, size, block sizes and flags"

timeout 10 nbdinfo --list --json "nbd+unix://?socket=$SOCK" >"$T/list.json" || fail "nbdinfo --list"
python3 -c 'import json,sys; n=[e["export-name"] for e in json.load(open(sys.argv[1]))["exports"]]; sys.exit(0 if n == [sys.argv[2]] else "exports %r" % n)' \
	"$T/list.json" "$NAME" || fail "nbdinfo --list content"
ok "nbdinfo --list lists the export"

# Unknown export name: NBD_REP_ERR_UNKNOWN, the client reports it.
if timeout 10 nbdinfo "nbd+unix:///nosuch?socket=$SOCK" >"$T/unknown.out" 2>&1; then
	fail "nbdinfo accepted an unknown export"
fi
# libnbd reports NBD_REP_ERR_UNKNOWN as ENOENT.
grep -q 'No such file or directory' "$T/unknown.out" || fail "no unknown-export error: $(cat "$T/unknown.out")"
ok "unknown export name is refused with NBD_REP_ERR_UNKNOWN"

# --- nbdcopy ------------------------------------------------------------------
head -c $((16 << 20)) /dev/urandom >"$T/in.bin"
timeout 30 nbdcopy "$T/in.bin" "$URI" || fail "nbdcopy in"
timeout 30 nbdcopy "$URI" "$T/out.bin" || fail "nbdcopy out"
[ "$(stat -c %s "$T/out.bin")" = "$SIZE" ] || fail "nbdcopy out size"
in_sum=$(sha256sum <"$T/in.bin" | cut -d' ' -f1)
out_sum=$(head -c $((16 << 20)) "$T/out.bin" | sha256sum | cut -d' ' -f1)
[ "$in_sum" = "$out_sum" ] || fail "nbdcopy round trip sha256 differs"
cmp -n $((16 << 20)) "$T/in.bin" "$T/disk.img" || fail "served file does not hold the copied bytes"
cmp -i $((16 << 20)) -n $((SIZE - (16 << 20))) "$T/out.bin" /dev/zero || fail "tail not zero"
ok "nbdcopy 16 MiB in and out: sha256 equal, file bytes equal"

# --- nbdsh: FUA, flush, trim, zero, bounds, oversized requests -----------------
cat >"$T/checks.py" <<'EOF'
import errno, os, nbd
uri, disk, size, maxp = os.environ["URI"], os.environ["DISK"], int(os.environ["SIZE"]), int(os.environ["MAXP"])

def file_bytes(off, n):
	with open(disk, "rb") as f:
		f.seek(off)
		return f.read(n)

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
assert h.get_block_size(nbd.SIZE_MAXIMUM) == maxp

pat = bytes(range(256)) * 256   # 64 KiB
h.pwrite(pat, 0, nbd.CMD_FLAG_FUA)
assert h.pread(len(pat), 0) == pat, "FUA write read back"
assert file_bytes(0, len(pat)) == pat, "FUA write not in the file"
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

# A full max-payload request works; the bounds checks are the server's own.
big = os.urandom(maxp)
h.pwrite(big, size - maxp, nbd.CMD_FLAG_FUA)
assert h.pread(maxp, size - maxp) == big, "max payload at the end"

h.set_strict_mode(0)   # let requests libnbd would refuse reach the server
expect_error("read past the end", errno.EINVAL, h.pread, 4096, size - 2048)
expect_error("read at offset size+1", errno.EINVAL, h.pread, 1, size + 1)
expect_error("write past the end", errno.ENOSPC, h.pwrite, b"x" * 4096, size - 2048)
expect_error("trim past the end", errno.EINVAL, h.trim, 4096, size - 2048)
expect_error("read over max payload", errno.EINVAL, h.pread, 2 * maxp, 0)
expect_error("write over max payload", errno.EINVAL, h.pwrite, b"y" * (2 * maxp), 4 << 20)
# The oversized payload was skipped, not taken as commands: the stream is in sync.
assert h.pread(len(pat), 0) == pat, "connection unusable after refused write"
assert file_bytes(4 << 20, 8) != b"y" * 8, "refused write reached the file"
h.shutdown()
print("nbdsh checks passed")
EOF
URI=$URI DISK=$T/disk.img SIZE=$SIZE MAXP=$MAXP \
	timeout 30 nbdsh -n -c "exec(open('$T/checks.py').read())" >"$T/nbdsh.out" 2>&1 ||
	fail "nbdsh checks: $(cat "$T/nbdsh.out")"
grep -q 'nbdsh checks passed' "$T/nbdsh.out" || fail "nbdsh checks did not finish"
ok "nbdsh: FUA write, flush, trim, zero with/without NO_HOLE, EINVAL/ENOSPC bounds, oversized write"

# --- qemu-io -------------------------------------------------------------------
timeout 30 qemu-io -f raw "$URI" -c 'write -P 0xab 4M 1M' -c 'read -P 0xab 4M 1M' \
	>"$T/qemu-io.out" 2>&1 || fail "qemu-io exit status: $(cat "$T/qemu-io.out")"
grep -qi 'pattern verification failed' "$T/qemu-io.out" && fail "qemu-io pattern mismatch"
grep -q 'read 1048576/1048576 bytes' "$T/qemu-io.out" || fail "qemu-io read: $(cat "$T/qemu-io.out")"
head -c $((1 << 20)) /dev/zero | tr '\0' '\253' >"$T/ab.bin"
cmp -i 0:$((4 << 20)) -n $((1 << 20)) "$T/ab.bin" "$T/disk.img" || fail "qemu-io bytes not in file"
# The check above can fail: a wrong pattern is reported.
timeout 30 qemu-io -f raw "$URI" -c 'read -P 0xcd 4M 4k' >"$T/qemu-io-neg.out" 2>&1 || true
grep -qi 'pattern verification failed' "$T/qemu-io-neg.out" || fail "qemu-io wrong pattern not detected"
ok "qemu-io write/read -P pattern"

# --- qemu-img convert / compare -----------------------------------------------
head -c $((8 << 20)) /dev/urandom >"$T/src.img"
truncate -s "$SIZE" "$T/src.img"
timeout 30 qemu-img convert -n -f raw -O raw "$T/src.img" "$URI" || fail "qemu-img convert to export"
timeout 30 qemu-img compare -f raw -F raw "$T/src.img" "$URI" >"$T/cmp.out" || fail "qemu-img compare: $(cat "$T/cmp.out")"
cmp "$T/src.img" "$T/disk.img" || fail "served file differs from the converted image"
timeout 30 qemu-img convert -f raw -O raw "$URI" "$T/back.img" || fail "qemu-img convert from export"
cmp "$T/src.img" "$T/back.img" || fail "image converted back differs"
printf 'Z' | dd of="$T/src.img" bs=1 seek=12345 conv=notrunc status=none
if timeout 30 qemu-img compare -f raw -F raw "$T/src.img" "$URI" >/dev/null 2>&1; then
	fail "qemu-img compare missed a difference"
fi
ok "qemu-img convert and compare between a file and the export"

# --- a TCP listener on a kernel-chosen port; nbd-client -l over both ---------
start_server "$T/tcp.log" --file "$T/disk.img" --listen 127.0.0.1:0 --name "$NAME" --read-only
TCP_PID=$SPID
PORT=$(sed -n 's/.*NBD listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/tcp.log")
[ -n "$PORT" ] && [ "$PORT" -gt 0 ] || fail "no bound port logged"
timeout 10 nbd-client -l 127.0.0.1 "$PORT" >"$T/nbdc-tcp.out" 2>&1 || fail "nbd-client -l tcp: $(cat "$T/nbdc-tcp.out")"
grep -qx "$NAME" "$T/nbdc-tcp.out" || fail "nbd-client -l tcp output: $(cat "$T/nbdc-tcp.out")"
timeout 10 nbd-client -l -unix "$SOCK" >"$T/nbdc-unix.out" 2>&1 || fail "nbd-client -l unix: $(cat "$T/nbdc-unix.out")"
grep -qx "$NAME" "$T/nbdc-unix.out" || fail "nbd-client -l unix output: $(cat "$T/nbdc-unix.out")"
ok "nbd-client -l lists the export over TCP (port 0) and unix"

# The read-only export: flag advertised, writes refused with EPERM.
cat >"$T/ro.py" <<'EOF'
import errno, os, nbd
h = nbd.NBD()
h.connect_tcp("127.0.0.1", os.environ["PORT"])
assert h.is_read_only(), "READ_ONLY not advertised"
first = h.pread(4096, 0)
h.set_strict_mode(0)
for what, fn in (("write", lambda: h.pwrite(b"q" * 4096, 0)), ("trim", lambda: h.trim(4096, 0)),
		 ("zero", lambda: h.zero(4096, 0))):
	try:
		fn()
		raise SystemExit("%s on a read-only export succeeded" % what)
	except nbd.Error as e:
		assert e.errnum == errno.EPERM, "%s: errno %s" % (what, e.errnum)
assert h.pread(4096, 0) == first
print("read-only checks passed")
EOF
PORT=$PORT timeout 20 nbdsh -n -c "exec(open('$T/ro.py').read())" >"$T/ro.out" 2>&1 ||
	fail "read-only checks: $(cat "$T/ro.out")"
grep -q 'read-only checks passed' "$T/ro.out" || fail "read-only checks did not finish"
ok "read-only export over TCP: READ_ONLY flag, EPERM for write/trim/zero"
kill -TERM "$TCP_PID"
rc=0
wait "$TCP_PID" || rc=$?
[ "$rc" = 0 ] || fail "TCP server exit status $rc"
SPID=$MAIN_PID

# --- hostile and broken clients ----------------------------------------------
cat >"$T/hostile.py" <<'EOF'
import os, socket, struct, sys
sock_path, name = sys.argv[1], sys.argv[2].encode()
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3e889045565a9

def conn():
	s = socket.socket(socket.AF_UNIX)
	s.settimeout(10)
	s.connect(sock_path)
	return s

def recv_exact(s, n):
	b = b""
	while len(b) < n:
		c = s.recv(n - len(b))
		if not c:
			raise EOFError("closed after %d of %d bytes" % (len(b), n))
		b += c
	return b

def expect_closed(s, what):
	# The server must close: read to EOF, bounded by the socket timeout.
	try:
		while s.recv(65536):
			pass
	except ConnectionResetError:
		pass
	except socket.timeout:
		raise SystemExit("%s: server kept the connection open" % what)
	s.close()

def greet(s, flags=3):
	hello = recv_exact(s, 18)
	assert hello[:16] == b"NBDMAGICIHAVEOPT", hello
	s.sendall(struct.pack(">I", flags))

def option(s, opt, data):
	s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

def opt_reply(s):
	magic, opt, rtype, ln = struct.unpack(">QIII", recv_exact(s, 20))
	assert magic == REPLY_MAGIC, hex(magic)
	return opt, rtype, recv_exact(s, ln)

# 1. Random bytes straight away.
s = conn()
s.sendall(os.urandom(4096))
expect_closed(s, "garbage")

# 2. Random bytes after valid client flags: bad option magic.
s = conn()
greet(s)
s.sendall(os.urandom(4096))
expect_closed(s, "garbage options")

# 2b. Disconnect mid-handshake: half an option header.
s = conn()
greet(s)
s.sendall(struct.pack(">Q", IHAVEOPT)[:5])
s.close()

# 3. Unknown client flags.
s = conn()
greet(s, flags=0x80)
expect_closed(s, "unknown client flags")

# 4. Oversized option data: small excess is skipped and refused, huge closes.
s = conn()
greet(s)
option(s, 6, b"\0" * 9000)
opt, rtype, _ = opt_reply(s)
assert rtype == (1 << 31) | 9, "want NBD_REP_ERR_TOO_BIG, got %#x" % rtype
option(s, 8, b"")          # structured replies: unsupported
opt, rtype, _ = opt_reply(s)
assert opt == 8 and rtype == (1 << 31) | 1, "want NBD_REP_ERR_UNSUP, got %#x" % rtype
option(s, 7, b"\0\0\0\x05ab")   # malformed GO
opt, rtype, _ = opt_reply(s)
assert rtype == (1 << 31) | 3, "want NBD_REP_ERR_INVALID, got %#x" % rtype
s.sendall(struct.pack(">QII", IHAVEOPT, 6, 0xffffffff))
expect_closed(s, "4 GiB option")

# 5. Wrong export via NBD_OPT_EXPORT_NAME: only closing is possible.
s = conn()
greet(s)
option(s, 1, b"other")
expect_closed(s, "unknown EXPORT_NAME")

# 6. Transmission: a good request, then an unknown command, then garbage.
s = conn()
greet(s)
option(s, 1, name)
size, tflags = struct.unpack(">QH", recv_exact(s, 10))   # NO_ZEROES negotiated
assert tflags & 1 and tflags & (1 << 8), hex(tflags)
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, 7, 0, 512))
magic, err, cookie = struct.unpack(">IIQ", recv_exact(s, 16))
assert (magic, err, cookie) == (0x67446698, 0, 7), (hex(magic), err, cookie)
recv_exact(s, 512)
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 99, 8, 0, 0))
magic, err, cookie = struct.unpack(">IIQ", recv_exact(s, 16))
assert (err, cookie) == (22, 8), "unknown command: error %d" % err
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0x40, 0, 9, 0, 512))
magic, err, cookie = struct.unpack(">IIQ", recv_exact(s, 16))
assert (err, cookie) == (22, 9), "unknown flag: error %d" % err
s.sendall(os.urandom(28))
expect_closed(s, "bad request magic")

# 7. A WRITE announcing 4 GiB - 1 bytes: too big to skip, connection closed.
s = conn()
greet(s)
option(s, 1, name)
recv_exact(s, 10)
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 1, 10, 0, 0xffffffff))
expect_closed(s, "4 GiB write")

# 8. Many connections at once, all abandoned mid-handshake.
socks = [conn() for _ in range(20)]
for s in socks:
	s.close()
print("hostile checks passed")
EOF
# Baseline of the server's fds and threads, to show hostile clients leak neither.
SRV=$(ps -o pid= --ppid "$MAIN_PID" | tr -d ' ')
[ -n "$SRV" ] || fail "cannot find the server under timeout"
resources() { echo "$(ls "/proc/$SRV/fd" | wc -l) $(awk '/^Threads:/ {print $2}' "/proc/$SRV/status")"; }
BASE=$(resources)
timeout 60 python3 "$T/hostile.py" "$SOCK" "$NAME" >"$T/hostile.out" 2>&1 ||
	fail "hostile clients: $(cat "$T/hostile.out")"
grep -q 'hostile checks passed' "$T/hostile.out" || fail "hostile checks did not finish"
assert_alive "hostile clients"
# Finished connections are reaped asynchronously: wait (bounded) for the baseline.
for i in $(seq 100); do
	[ "$(resources)" = "$BASE" ] && break
	sleep 0.05
done
[ "$(resources)" = "$BASE" ] || fail "fds/threads leaked: before $BASE, after $(resources)"
ok "garbage, mid-handshake disconnect, oversized options/writes: closed, no fd/thread leak, server alive"

# --- stop ------------------------------------------------------------------------
# Two clients still connected at stop: one idle in transmission, one silent
# mid-handshake. Stopping must close both and still exit 0.
cat >"$T/idle.py" <<'EOF2'
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
a.sendall(struct.pack(">I", 3) + struct.pack(">QII", 0x49484156454F5054, 1, len(sys.argv[2])) + sys.argv[2].encode())
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
EOF2
timeout 40 python3 "$T/idle.py" "$SOCK" "$NAME" >"$T/idle.out" 2>&1 &
IDLE_PID=$!
PIDS+=("$IDLE_PID")
for i in $(seq 200); do
	grep -q ready "$T/idle.out" && break
	kill -0 "$IDLE_PID" 2>/dev/null || fail "idle client: $(cat "$T/idle.out")"
	sleep 0.05
done
grep -q ready "$T/idle.out" || fail "idle client did not connect"
kill -TERM "$MAIN_PID"
rc=0
wait "$MAIN_PID" || rc=$?
[ "$rc" = 0 ] || fail "server exit status $rc on SIGTERM (sanitizer report?)"
rc=0
wait "$IDLE_PID" || rc=$?
[ "$rc" = 0 ] && grep -q 'closed by server' "$T/idle.out" || fail "idle clients not closed: $(cat "$T/idle.out")"
[ ! -e "$SOCK" ] || fail "socket file left behind"
grep -q 'ERROR: \(Address\|Leak\|Undefined\)Sanitizer\|runtime error' "$T/server.log" && fail "sanitizer report"
ok "SIGTERM with clients connected: they are closed, server exits 0, socket removed"

# A stale socket file is replaced; a non-socket file is never removed.
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$SOCK"
[ -S "$SOCK" ] || fail "could not make a stale socket"
start_server "$T/stale.log" --file "$T/disk.img" --listen "unix:$SOCK" --name "$NAME"
assert_alive "start over a stale socket"
kill -TERM "$SPID"
rc=0
wait "$SPID" || rc=$?
[ "$rc" = 0 ] || fail "server exit status $rc after stale-socket start"
if timeout 10 "$SERVER" --file "$T/disk.img" --listen "unix:$T/src.img" --name "$NAME" \
	2>"$T/notsock.log"; then
	fail "server listened over a regular file"
fi
[ -f "$T/src.img" ] || fail "a regular file was removed"
grep -q 'is not a socket' "$T/notsock.log" || fail "no error for a non-socket path"
ok "stale socket replaced, regular file refused"

echo "$PASSED passed, 0 failed"
