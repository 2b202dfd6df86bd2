#!/usr/bin/env bash
# The crashfs power-loss shim on its own: synced bytes survive a simulated crash, unsynced
# writes, truncates, punched holes, creates and renames are rolled back; then under ASan frep-server.
source "$(dirname "$0")/lib.sh"

SHIM=${FREP_CRASHFS:-$BIN/tests/crashfs.so}
[ -f "$SHIM" ] || fail "crashfs shim not built: $SHIM"
R=$T/root

# One python program: "prepare" lays down a durable baseline (no shim), "run" changes
# it under the shim and crashes, "check" asserts what a power loss must have left.
cat >"$T/scenario.py" <<'EOF'
import ctypes, os, sys, threading, time

R, OUT, MODE = sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else ""
K = 1024
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
NTHREADS, TBLOCKS = 4, 64
GBLOCKS, GPASSES = 64, 2  # file g: writes racing with fdatasync

def pat(seed, n):
    # deterministic bytes for (seed, length)
    x = (seed * 0x9E3779B97F4A7C15 + 1) & (2**64 - 1)
    out = bytearray(n)
    for i in range(0, n, 8):
        x ^= (x << 13) & (2**64 - 1); x ^= x >> 7; x ^= (x << 17) & (2**64 - 1)
        out[i:i + 8] = x.to_bytes(8, "little")[:n - i]
    return bytes(out)

def put(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data); os.fsync(fd); os.close(fd)

def get(path):
    with open(path, "rb") as f:
        return f.read()

def dirsync(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(fd); os.close(fd)

def prepare():
    for d in ("", "/d1", "/d2"):
        os.makedirs(R + d, exist_ok=True)
    put(R + "/a", pat(1, 64 * K))
    put(R + "/b", pat(2, 64 * K))
    put(R + "/c", pat(3, 16 * K))
    put(R + "/e", pat(5, 1024 * K))
    put(R + "/f", pat(6, 128 * K))
    put(R + "/d1/meta", b"old meta 1")
    put(R + "/d2/meta", b"old meta 2")
    put(R + "/d1/x", b"x content")
    put(R + "/d1/y", b"y content")
    put(R + "/d1/old-name", b"durable file")
    put(R + "/log", b"log start\n")
    put(OUT, b"outside\n")
    for i in range(NTHREADS):
        put(R + "/t%d" % i, pat(10 + i, TBLOCKS * 4 * K))
    put(R + "/g", pat(20, GBLOCKS * 4 * K))
    for d in ("", "/d1", "/d2"):
        dirsync(R + d)

def write_meta(d, name, data, sync_file, sync_dir):
    fd = os.open(d + "/" + name + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    if sync_file:
        os.fsync(fd)
    os.close(fd)
    os.rename(d + "/" + name + ".tmp", d + "/" + name)
    if sync_dir:
        dirsync(d)

def writer(i):
    fd = os.open(R + "/t%d" % i, os.O_RDWR)
    for k in range(TBLOCKS):
        os.pwrite(fd, bytes([0x40 + i]) * (4 * K), ((k * 37) % TBLOCKS) * 4 * K)
        if i % 2 == 0 and k % 16 == 15:
            os.fdatasync(fd)  # even threads end synced, odd ones never sync
    os.close(fd)

def g_writes():
    # (block, byte) of every write to g, in order: two passes in a scrambled order
    return [((k * 37) % GBLOCKS, (p * GBLOCKS + k) % 250 + 1) for p in range(GPASSES) for k in range(GBLOCKS)]

def race():
    # One thread writes g while another fdatasyncs it until 3/4 of the writes are done.
    # Before each sync it notes how many writes had returned: those must survive.
    done = [0]
    fd = os.open(R + "/g", os.O_RDWR)
    def w():
        for blk, byte in g_writes():
            os.pwrite(fd, bytes([byte]) * 4 * K, blk * 4 * K)
            done[0] += 1
            time.sleep(0.0005)
    t = threading.Thread(target=w)
    t.start()
    sfd = os.open(R + "/g", os.O_RDONLY)
    while done[0] < len(g_writes()) * 3 // 4:
        d = done[0]
        os.fdatasync(sfd)
        print("durable", d, flush=True)
    t.join()
    os.close(sfd)
    os.close(fd)

def run():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    # a: one synced block, then unsynced overwrite and extension
    fd = os.open(R + "/a", os.O_RDWR)
    os.pwrite(fd, b"B" * 4 * K, 0)
    os.fdatasync(fd)
    os.pwrite(fd, b"C" * 4 * K, 4 * K)
    os.pwrite(fd, b"D" * 12 * K, 60 * K)
    os.close(fd)  # closed without a sync: still lost
    # b: punch a hole, shrink, write through the fd offset; nothing synced
    fd = os.open(R + "/b", os.O_RDWR)
    assert libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8 * K, 16 * K) == 0
    os.ftruncate(fd, 16 * K)
    os.lseek(fd, 100, os.SEEK_SET)
    os.write(fd, b"W" * 50)
    os.close(fd)
    # c: fully synced new content, then truncated to 0 and rewritten, unsynced
    fd = os.open(R + "/c", os.O_RDWR)
    os.write(fd, b"E" * 20 * K)
    os.fsync(fd)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b"F" * 10)
    os.close(fd)
    # e: appends far past EOF, overwrites, shrink, regrow (exercises the saved-range skipping)
    fd = os.open(R + "/e", os.O_RDWR)
    for off in range(512 * K, 4096 * K, 64 * K):
        os.pwrite(fd, b"G" * 64 * K, off)
    os.pwrite(fd, b"H" * 256 * K, 256 * K)
    os.pwrite(fd, b"I" * 256 * K, 128 * K)
    os.ftruncate(fd, 300 * K)
    os.truncate(R + "/e", 200 * K)
    os.pwrite(fd, b"J" * 4 * K, 2048 * K)
    os.close(fd)
    # f: synced first half, then unsynced overlapping writes and an extension
    fd = os.open(R + "/f", os.O_RDWR)
    os.pwrite(fd, b"X" * 64 * K, 0)
    os.fdatasync(fd)
    os.pwrite(fd, b"Y" * 64 * K, 32 * K)
    os.pwrite(fd, b"Z" * (128 * K + 10), 0)
    os.close(fd)
    # metadata files: tmp + rename, with and without the fsyncs
    write_meta(R + "/d1", "meta", b"new meta 1", True, False)
    write_meta(R + "/d2", "meta", b"new meta 2", True, True)
    os.rename(R + "/d1/old-name", R + "/d1/new-name")  # durable files, renames not
    os.rename(R + "/d1/x", R + "/d1/y")
    write_meta(R + "/d2", "meta2", b"never synced", False, True)
    fd = os.open(R + "/d1/new", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"created"); os.fsync(fd); os.close(fd)
    fd = os.open(R + "/d2/new", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"created"); os.fsync(fd); os.close(fd)
    dirsync(R + "/d2")
    # untracked: an O_APPEND log inside the root, a file outside it
    fd = os.open(R + "/log", os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"unsynced log line\n"); os.close(fd)
    fd = os.open(OUT, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"changed\n"); os.close(fd)
    ts = [threading.Thread(target=writer, args=(i,)) for i in range(NTHREADS)]
    for t in ts: t.start()
    for t in ts: t.join()
    race()
    if MODE == "call":
        libc.crashfs_crash()
    else:
        print("ready", flush=True)
        threading.Event().wait(30)
    sys.exit("still alive after the crash")

def expect(path, want):
    got = get(path) if os.path.exists(path) else None
    if got != want:
        desc = "missing" if got is None else "%d bytes, first differing at %s" % (len(got), next(
            (i for i in range(min(len(got), len(want or b""))) if got[i] != want[i]), "end"))
        sys.exit("%s: %s; expected %s" % (path, desc, "absent" if want is None else "%d bytes" % len(want)))

def check():
    expect(R + "/a", b"B" * 4 * K + pat(1, 64 * K)[4 * K:])
    expect(R + "/b", pat(2, 64 * K))
    expect(R + "/c", b"E" * 20 * K)
    expect(R + "/e", pat(5, 1024 * K))
    expect(R + "/f", b"X" * 64 * K + pat(6, 128 * K)[64 * K:])
    expect(R + "/d1/meta", b"old meta 1")
    expect(R + "/d1/meta.tmp", None)
    expect(R + "/d1/new", None)
    expect(R + "/d1/old-name", b"durable file")
    expect(R + "/d1/new-name", None)
    expect(R + "/d1/x", b"x content")
    expect(R + "/d1/y", b"y content")
    expect(R + "/d2/meta", b"new meta 2")
    expect(R + "/d2/meta.tmp", None)
    expect(R + "/d2/meta2", b"")  # the name is durable, its never-synced data is not
    expect(R + "/d2/new", b"created")
    expect(R + "/log", b"log start\nunsynced log line\n")
    expect(OUT, b"changed\n")
    for i in range(NTHREADS):
        expect(R + "/t%d" % i, bytes([0x40 + i]) * (TBLOCKS * 4 * K) if i % 2 == 0
               else pat(10 + i, TBLOCKS * 4 * K))
    # g: exactly the first X writes, X at least what the last completed sync covered
    durable = [int(l.split()[1]) for l in open(sys.argv[4]) if l.startswith("durable ")]
    if not durable:
        sys.exit("g: no fdatasync completed during the race")
    state = [pat(20, GBLOCKS * 4 * K)[b * 4 * K:(b + 1) * 4 * K] for b in range(GBLOCKS)]
    got, prefixes = get(R + "/g"), []
    for x, (blk, byte) in enumerate(g_writes() + [(None, None)]):
        if x >= durable[-1] and got == b"".join(state):
            prefixes.append(x)
        if blk is not None:
            state[blk] = bytes([byte]) * 4 * K
    if not prefixes:
        sys.exit("g: not the first X >= %d writes of %d" % (durable[-1], len(g_writes())))
    print("g: kept the first %d of %d writes, %d covered by the last sync"
          % (prefixes[0], len(g_writes()), durable[-1]))
    left = [n for d in ("", "/d1", "/d2") for n in os.listdir(R + d) if n.startswith(".crashfs")]
    if left:
        sys.exit("shim links left behind: %s" % left)

{"prepare": prepare, "run": run, "check": check}[sys.argv[1]]()
EOF

# run_crash MODE: baseline, changes under the shim, crash by MODE, check.
run_crash() {
	local mode=$1 rc=0
	rm -rf "$R"
	python3 "$T/scenario.py" prepare "$R" "$T/outside"
	if [ "$mode" = call ]; then
		LD_PRELOAD=$SHIM CRASHFS_ROOT=$R CRASHFS_SYNC_DELAY_MS=3 python3 "$T/scenario.py" run "$R" "$T/outside" call \
			>"$T/run-$mode.log" 2>&1 || rc=$?
	else
		LD_PRELOAD=$SHIM CRASHFS_ROOT=$R CRASHFS_SIGNAL=SIGUSR2 CRASHFS_SYNC_DELAY_MS=3 \
			python3 "$T/scenario.py" run "$R" "$T/outside" signal >"$T/run-$mode.log" 2>&1 &
		local pid=$!
		PIDS+=("$pid")
		wait_log "$T/run-$mode.log" '^ready$' 20
		kill -USR2 "$pid"
		wait "$pid" || rc=$?
	fi
	[ $rc -eq 137 ] || fail "$mode: exited $rc, expected 137 (SIGKILL): $(cat "$T/run-$mode.log")"
	grep -q 'crashfs: power loss: undid' "$T/run-$mode.log" || fail "$mode: no power-loss line"
	python3 "$T/scenario.py" check "$R" "$T/outside" "$T/run-$mode.log" || fail "$mode: wrong content after the crash"
	pass "crash by $mode: synced data kept, the rest rolled back"
}
run_crash call
run_crash signal

# Under ASan, preloaded into frep-server (verify_asan_link_order=0 is required), the
# signal still pulls the plug with status 137, and the data dir stays usable.
certs master-1
mkdir -p "$T/mirror"
LD_PRELOAD=$SHIM CRASHFS_ROOT=$T/mirror CRASHFS_SIGNAL=USR2 \
	ASAN_OPTIONS=$ASAN_OPTIONS:verify_asan_link_order=0 start_server
kill -USR2 "$SERVER_PID"
rc=0
wait "$SERVER_PID" || rc=$?
[ $rc -eq 137 ] || fail "frep-server under the shim exited $rc, expected 137: $(tail -n 5 "$SERVER_LOG")"
grep -q 'crashfs: power loss' "$SERVER_LOG" || fail "frep-server: no power-loss line"
start_server
alive "$SERVER_PID" "frep-server restarted after the simulated power loss"
pass "frep-server runs under the shim (ASan) and crashes on CRASHFS_SIGNAL"
