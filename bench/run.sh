#!/usr/bin/env bash
# The benchmark (not a test: it prints, nothing asserts timings). One command, one
# run: every frep figure of issue 6 beside its baseline, then a table of ratios.
#
#   write rows   the master's volume and journal on disk, the mirror's data dir on
#                tmpfs (as if on another host), fio's nbd engine over a unix socket;
#                frep runs interleaved with its baseline, ROUNDS rounds, median [range]
#   REPLICATE    a dense volume on tmpfs copied to the mirror, against a raw mbedTLS
#                pipe (same suite) and rsync over ssh (chacha20-poly1305)
#   peak RSS     both daemons, a small volume against a large sparse one
#
# Usage: bash bench/run.sh          (about 10 minutes on 2 cores; run as root for sshd)
# Environment, for a quick run:
#   BENCH_ROUNDS=3         rounds of each write row and of REPLICATE
#   BENCH_VOLUME_MIB=1024  volume of the write rows and of REPLICATE
#   BENCH_JOURNAL_MIB=64   --journal-size; the random rows write 3x this, the
#                          sequential row max(3x this, half the volume)
#   BENCH_SPARSE_GIB=32    the large sparse volume of the RSS row
#   BENCH_DISK_DIR=/var/tmp  where the master's files go (a disk, not tmpfs)
#   BENCH_BUFFER_FULL=block  frep's --on-buffer-full in the write rows (block|crack)
#   FREP_BENCH_BUILD=build-bench  build directory (Release, test hooks off)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
cd "$src"

rounds=${BENCH_ROUNDS:-3}
vol_mib=${BENCH_VOLUME_MIB:-1024}
journal_mib=${BENCH_JOURNAL_MIB:-64}
sparse_gib=${BENCH_SPARSE_GIB:-32}
disk_parent=${BENCH_DISK_DIR:-/var/tmp}
on_full=${BENCH_BUFFER_FULL:-block}
rand_mib=$((3 * journal_mib))
seq_mib=$((vol_mib / 2 > rand_mib ? vol_mib / 2 : rand_mib))
rss_alloc_mib=$((vol_mib / 4 < 256 ? vol_mib / 4 : 256)) # allocated in both RSS volumes, spread out
[ "$journal_mib" -ge 16 ] ||
	{ echo "bench: BENCH_JOURNAL_MIB=$journal_mib: at least 16, or 1 MiB writes exceed frep's largest record" >&2; exit 2; }

bash scripts/install-deps.sh --bench
build=${FREP_BENCH_BUILD:-build-bench}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DFREP_TEST_HOOKS=OFF >/dev/null
# Every target: frep-client may need more than its own binary (a plugin it runs).
cmake --build "$build" -j2 >/dev/null

export FREP_BUILD=$src/$build
source "$src/tests/e2e/lib.sh"
# shellcheck disable=SC2034 # lib.sh's failure messages name it
TEST_NAME=bench
DISK=$(mktemp -d "$disk_parent/frep-bench.XXXXXX")
SHM=$(mktemp -d /dev/shm/frep-bench.XXXXXX)
# lib.sh's cleanup (stop the daemons, keep the logs of a failure) in a subshell, as
# it exits; then the volumes go. set +e: an EXIT trap stops at its first failure.
bench_cleanup() {
	local rc=$?
	set +e
	(exit $rc)
	(cleanup)
	rm -rf "$DISK" "$SHM"
	exit $rc
}
trap bench_cleanup EXIT
[ "$(stat -f -c %T "$DISK")" != tmpfs ] ||
	{ echo "bench: $disk_parent is tmpfs; set BENCH_DISK_DIR to a directory on a disk" >&2; exit 2; }
RESULTS=$T/results # lines "METRIC VALUE", one per measurement (a metric repeats per round)
certs master-1

# On a VM that hands freed guest pages back to the host (free page reporting), the
# first touch of a page costs ~2 s/GiB. Touch and free tmpfs memory before a timed
# phase, so that figures measure frep and its baselines, not the hypervisor.
warm_tmpfs() {
	head -c $(($1 << 20)) /dev/zero >"$SHM/warm" && rm -f "$SHM/warm"
}

now() {
	date +%s.%N
}

# log_time FILE REGEX: epoch seconds of the first log line matching REGEX.
log_time() {
	date -d "$(grep -Em1 "$2" "$1" | cut -d' ' -f1)" +%s.%N
}

record() {
	echo "$1 $2" >>"$RESULTS"
}

# fio_write METRIC URI RW BS DEPTH IO_MIB: one fio job through the nbd engine. Its
# time includes the final FLUSH (end_fsync=1: fio counts it in the write runtime,
# checked against an nbdkit flush that sleeps). Records METRIC_iops, _mbps, _p50 (ms).
fio_write() {
	local out=$T/fio-$1.json
	fio --name="$1" --ioengine=nbd --uri="$2" --rw="$3" --bs="$4" --iodepth="$5" \
		--io_size="$6m" --end_fsync=1 \
		--output-format=json --output="$out" >/dev/null 2>"$T/fio.log" ||
		fail "fio $1 failed: $(tail -n3 "$T/fio.log")"
	/usr/bin/python3 - "$out" "$1" >>"$RESULTS" <<'PY'
import json, sys
w = json.load(open(sys.argv[1]))["jobs"][0]["write"]
m = sys.argv[2]
print(f"{m}_iops {w['iops']:.1f}")
print(f"{m}_mbps {w['bw_bytes'] / 1e6:.1f}")
print(f"{m}_p50 {w['clat_ns']['percentile']['50.000000'] / 1e6:.4f}")
PY
}

# --- data ----------------------------------------------------------------------
echo "bench: preparing volumes (master on $DISK, mirror on $SHM)" >&2
fill "$SHM/random.img" 0 "$vol_mib" 1
for v in fa fs nb; do # frep async, frep sync, nbdkit: the same dense bytes on the same disk
	cp "$SHM/random.img" "$DISK/$v.img"
done
sync -f "$DISK/fa.img" # no writeback of the copies during the timed runs

# --- write rows: 4 KiB random at depth 1 and 16, 1 MiB sequential at depth 8 ----
SERVER_DATA=$SHM/mirror-w start_server
# The baseline: a local NBD server on the same disk that makes every write durable
# before replying.
nbdkit -f -U "$T/nb.sock" --filter=fua file file="$DISK/nb.img" fuamode=force >>"$T/nbdkit.log" 2>&1 &
PIDS+=($!)
wait_for 20 "nbdkit's socket" test -S "$T/nb.sock"
# block by default, not crack: a full buffer makes writers wait, so no row escapes
# the mirror into the dirty bitmap, and every figure includes replication.
JOURNAL=$DISK/fa.journal start_client fa "$DISK/fa.img" master-1 --journal-size "${journal_mib}M" \
	--on-buffer-full="$on_full" --control "unix:$T/fa.ctl"
JOURNAL=$DISK/fs.journal start_client fs "$DISK/fs.img" master-1 --journal-size "${journal_mib}M" \
	--on-buffer-full="$on_full" --control "unix:$T/fs.ctl" --mode sync
wait_status fa state INSYNC 300
wait_status fs state INSYNC 300
warm_tmpfs $((2 * journal_mib + 256))

# Before each run: the mirror has every earlier write, so no run pays for the last.
quiesce() {
	wait_status fa lag_tx 0 300
	wait_status fs lag_tx 0 300
}
# run WHO ROW RW BS DEPTH IO_MIB: one fio run on nbdkit (nb) or a frep client. Of
# frep it also counts journal appends and fdatasyncs (group commit shows), and
# "mirror buffer full" events (writers waited, or the mirror cracked).
run() {
	local who=$1 metric=$1_$2 full appends syncs
	shift 2
	quiesce
	if [ "$who" = nb ]; then
		fio_write "$metric" "nbd+unix:///?socket=$T/nb.sock" "$@"
		return
	fi
	full=$(grep -c 'mirror buffer full' "$T/client-$who.log" || true)
	appends=$(ctl_field "$who" journal_appends)
	syncs=$(ctl_field "$who" journal_syncs)
	fio_write "$metric" "nbd+unix:///$who?socket=$T/$who.sock" "$@"
	record "${metric}_full" $(($(grep -c 'mirror buffer full' "$T/client-$who.log" || true) - full))
	record "${metric}_appends" $(($(ctl_field "$who" journal_appends) - appends))
	record "${metric}_syncs" $(($(ctl_field "$who" journal_syncs) - syncs))
}
for ((r = 1; r <= rounds; r++)); do
	echo "bench: write rows, round $r of $rounds" >&2
	# Alternate which side goes first, so drift over the run does not favour one.
	if ((r % 2)); then order=(nb fa fs); else order=(fs fa nb); fi
	for depth in 1 16; do
		for who in "${order[@]}"; do
			run "$who" "qd$depth" randwrite 4k "$depth" "$rand_mib"
		done
	done
	for who in "${order[@]}"; do
		[ "$who" = fs ] || run "$who" seq write 1m 8 "$seq_mib"
	done
done
quiesce
for p in "${PIDS[@]}"; do stop "$p"; done
PIDS=()
rm -rf "$SHM/mirror-w" "$DISK"/{fa,fs,nb}.*

# --- REPLICATE: a dense volume on tmpfs, against a raw TLS pipe and rsync over ssh --
ssh_dir=$T/ssh
mkdir -p "$ssh_dir"
ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$ssh_dir/host"
ssh-keygen -q -t ed25519 -N '' -C bench-user -f "$ssh_dir/user"
cp "$ssh_dir/user.pub" "$ssh_dir/authorized_keys"
[ "$(id -u)" -ne 0 ] || mkdir -p /run/sshd # sshd's privilege separation directory
# sshd takes no port 0: ask the kernel for a free ephemeral port, then bind it
# (another process may take it in between: try again).
for _ in 1 2 3 4 5; do
	ssh_port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	cat >"$ssh_dir/sshd_config" <<EOF
ListenAddress 127.0.0.1:$ssh_port
HostKey $ssh_dir/host
AuthorizedKeysFile $ssh_dir/authorized_keys
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Ciphers chacha20-poly1305@openssh.com
Compression no
EOF
	: >"$T/sshd.log"
	/usr/sbin/sshd -D -e -f "$ssh_dir/sshd_config" 2>>"$T/sshd.log" &
	sshd_pid=$!
	PIDS+=("$sshd_pid")
	wait_for 10 "sshd listening or exiting" \
		bash -c "ss -Hltn 'sport = :$ssh_port' | grep -q . || ! kill -0 $sshd_pid"
	kill -0 "$sshd_pid" 2>/dev/null && break
done
kill -0 "$sshd_pid" 2>/dev/null || fail "sshd did not start: $(tail -n2 "$T/sshd.log")"
echo "[127.0.0.1]:$ssh_port $(cat "$ssh_dir/host.pub")" >"$ssh_dir/known_hosts"
ssh_cmd="ssh -F /dev/null -p $ssh_port -i $ssh_dir/user -o IdentitiesOnly=yes -o BatchMode=yes
 -o UserKnownHostsFile=$ssh_dir/known_hosts -o StrictHostKeyChecking=yes
 -c chacha20-poly1305@openssh.com -o Compression=no"
user=$(id -un)

copy_bytes=$((vol_mib << 20))
mbps() { # BYTES SECONDS
	awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1e6 / s }'
}
for ((r = 1; r <= rounds; r++)); do
	echo "bench: REPLICATE, round $r of $rounds" >&2
	# The raw pipe: same certificates, same suite, same 4 MiB writes.
	base=$("$BIN/bench/tls-pipe" --bytes "${vol_mib}M" --chunk 4M --certs "$PKI")
	record pipe_mbps "$(sed -n 's/.*MBps=\([0-9.]*\).*/\1/p' <<<"$base")"
	cipher=$(sed -n 's/.*cipher=\([^ ]*\).*/\1/p' <<<"$base")

	warm_tmpfs $((vol_mib + 512))
	mkdir "$SHM/rsync"
	t0=$(now)
	rsync --whole-file -e "$ssh_cmd" "$SHM/random.img" "$user@127.0.0.1:$SHM/rsync/" ||
		fail "rsync over ssh failed"
	t1=$(now)
	record rsync_mbps "$(mbps "$copy_bytes" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")"
	rm -rf "$SHM/rsync"

	# The journal is on tmpfs too: this row is about the copy, not journal creation.
	warm_tmpfs $((vol_mib + 512))
	SERVER_DATA=$SHM/mirror-c start_server
	t0=$(now)
	JOURNAL=$SHM/copy.journal start_client copy "$SHM/random.img" master-1 \
		--journal-size "${journal_mib}M" --control "unix:$T/copy.ctl"
	wait_status copy state INSYNC 300
	t1=$(log_time "$T/client-copy.log" 'state [A-Z]+ -> INSYNC')
	copy_ms=$(sed -n 's/.*copy walked [0-9]* bytes ([0-9]* data) in \([0-9]*\) ms.*/\1/p' "$T/client-copy.log")
	cmp "$SHM/random.img" "$SHM/mirror-c/copy/extent.0" || fail "the mirror differs from the master"
	# Copy phase against the pipe (neither counts process start and handshake);
	# start to INSYNC against rsync (both count everything).
	[ -z "$copy_ms" ] || record copy_mbps "$(mbps "$copy_bytes" "$(awk -v ms="$copy_ms" 'BEGIN { print ms / 1000 }')")"
	record insync_mbps "$(mbps "$copy_bytes" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")"
	stop "$CLIENT_PID"
	stop "$SERVER_PID"
	PIDS=("$sshd_pid")
	rm -rf "$SHM/mirror-c" "$SHM/copy.journal" "$T/client-copy.log" "$T/server.log"
done
kill -TERM "$sshd_pid"
wait "$sshd_pid" 2>/dev/null || true
PIDS=()
rm -f "$SHM/random.img"

# --- peak RSS of both daemons: a small volume against a large sparse one ---------
# The mirror's data dir is on disk here: the mirror reserves its whole volume
# (fallocate), and a 32 GiB reservation does not fit in this machine's tmpfs.
avail_gib=$(($(df --output=avail -k "$DISK" | tail -n1) >> 20))
[ "$avail_gib" -gt $((sparse_gib + 4)) ] ||
	fail "the RSS row reserves ${sparse_gib} GiB in $DISK, which has ${avail_gib} GiB free: set BENCH_SPARSE_GIB or BENCH_DISK_DIR"
for size in small big; do
	if [ $size = small ]; then mib=$vol_mib; else mib=$((sparse_gib << 10)); fi
	echo "bench: peak RSS, $mib MiB volume" >&2
	truncate -s "${mib}M" "$DISK/rss.img"
	pieces=$((rss_alloc_mib / 4))
	for ((i = 0; i < pieces; i++)); do
		fill "$DISK/rss.img" $((i * (mib / pieces) / 4 * 4)) 4 "$i"
	done
	SERVER_DATA=$DISK/mirror-r start_server
	t0=$(now)
	JOURNAL=$DISK/rss.journal start_client rss "$DISK/rss.img" master-1 \
		--journal-size "${journal_mib}M" --on-buffer-full=block --control "unix:$T/rss.ctl"
	wait_status rss state INSYNC 300
	record "rss_insync_s_$size" "$(awk -v a="$t0" -v b="$(log_time "$T/client-rss.log" 'state [A-Z]+ -> INSYNC')" \
		'BEGIN { printf "%.2f", b - a }')"
	# Writes over the whole range, as many bytes as the journal holds.
	fio_write "rss_$size" "nbd+unix:///rss?socket=$T/rss.sock" randwrite 4k 16 "$journal_mib"
	wait_status rss lag_tx 0 300
	record "rss_client_$size" "$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$CLIENT_PID/status")"
	record "rss_server_$size" "$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER_PID/status")"
	stop "$CLIENT_PID"
	stop "$SERVER_PID"
	PIDS=()
	rm -rf "$DISK/mirror-r" "$DISK"/rss.* "$T/client-rss.log" "$T/server.log"
done

# --- the table -----------------------------------------------------------------
echo
echo "frep benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(git -C "$src" rev-parse --short HEAD)"
echo "write rows: ${vol_mib} MiB volume and ${journal_mib} MiB journal on disk ($DISK), mirror on tmpfs;"
echo "  fio nbd engine, 4 KiB random rows write ${rand_mib} MiB, the 1 MiB row ${seq_mib} MiB (>= 3x the journal),"
echo "  the final FLUSH counted; frep --on-buffer-full=${on_full}; ${rounds} interleaved rounds, median [min-max]"
echo "REPLICATE: ${vol_mib} MiB dense on tmpfs, cipher ${cipher}; rsync over ssh with chacha20-poly1305"
echo "peak RSS: ${rss_alloc_mib} MiB allocated in a ${vol_mib} MiB and a ${sparse_gib} GiB sparse volume, then ${journal_mib} MiB"
echo "  of 4 KiB random writes; mirror on disk (it reserves the whole volume, too big for tmpfs)"
echo
/usr/bin/python3 - "$RESULTS" "$vol_mib" "$sparse_gib" <<'PY'
import statistics, sys
small, big = f"{sys.argv[2]} MiB", f"{sys.argv[3]} GiB"
vals = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    vals.setdefault(k, []).append(float(v))

def fmt(xs, d, sign=""):
    if not xs:
        return "n/a"
    s = f"{statistics.median(xs):{sign}.{d}f}"
    return s if len(xs) == 1 else f"{s} [{min(xs):{sign}.{d}f}..{max(xs):{sign}.{d}f}]"

def pair(a, b, op=lambda x, y: x / y):
    return [op(x, y) for x, y in zip(vals.get(a, []), vals.get(b, []))]

def notes(metric):  # of a frep write row, over all rounds
    run = metric.rsplit("_", 1)[0]
    out = []
    appends, syncs = sum(vals.get(run + "_appends", [])), sum(vals.get(run + "_syncs", []))
    if appends:
        out.append(f"fdatasyncs/append {syncs / appends:.2f}")
    full = sum(vals.get(run + "_full", []))
    if full:
        out.append(f"buffer full x{full:.0f}")
    return ", ".join(out)

rows = []  # figure, frep, baseline, ratio, target, notes
def row(fig, a, b, base, target, d=0, rd=2):
    rows.append((fig, fmt(vals.get(a, []), d), f"{base} {fmt(vals.get(b, []), d)}",
                 fmt(pair(a, b), rd), target, notes(a)))

row("4K randwrite QD1 async IOPS", "fa_qd1_iops", "nb_qd1_iops", "nbdkit fua", ">= 0.7")
row("4K randwrite QD16 async IOPS", "fa_qd16_iops", "nb_qd16_iops", "nbdkit fua", ">= 0.7")
rows.append(("  depth16 / depth1, async", "", f"nbdkit {fmt(pair('nb_qd16_iops', 'nb_qd1_iops'), 2)}",
             fmt(pair("fa_qd16_iops", "fa_qd1_iops"), 2), ">= 4", ""))
row("4K randwrite QD1 sync IOPS", "fs_qd1_iops", "fa_qd1_iops", "frep async", "-")
row("4K randwrite QD16 sync IOPS", "fs_qd16_iops", "fa_qd16_iops", "frep async", ">= 0.5")
rows.append(("  p50 latency QD1, sync (ms)", fmt(vals.get("fs_qd1_p50", []), 3),
             f"frep async {fmt(vals.get('fa_qd1_p50', []), 3)}",
             fmt(pair("fs_qd1_p50", "fa_qd1_p50", lambda x, y: x - y), 3, "+") + " ms", "<= +0.3 ms", ""))
row("1M seqwrite QD8 async MB/s", "fa_seq_mbps", "nb_seq_mbps", "nbdkit fua", ">= 0.45")
row("REPLICATE copy phase MB/s", "copy_mbps", "pipe_mbps", "mbedTLS pipe", ">= 0.9", 1)
row("REPLICATE start->INSYNC MB/s", "insync_mbps", "rsync_mbps", "rsync/ssh", ">= 1.0", 1)
for who in ("client", "server"):
    row(f"peak RSS frep-{who} MiB, {big}", f"rss_{who}_big", f"rss_{who}_small", small, "flat", 1)
row(f"start->INSYNC s, {big} sparse", "rss_insync_s_big", "rss_insync_s_small", small, "same", 2)

head = ("figure", "frep", "baseline", "ratio", "target", "notes")
w = [max(len(r[i]) for r in rows + [head]) for i in range(6)]
for r in [head] + rows:
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
PY
