#!/usr/bin/env bash
# The benchmark (not a test: it prints, nothing asserts timings). One command, one
# run: every frep figure of issues 6, 7, 9, 10 and 12 beside its baseline, then a table
# of ratios.
#
#   write rows   the master's volume and journal on disk, the mirror's data dir on
#                tmpfs (as if on another host), fio's nbd engine over a unix socket;
#                frep runs interleaved with its baseline, ROUNDS rounds, median [range]
#   REPLICATE    a dense volume on tmpfs copied to the mirror, against a raw mbedTLS
#                pipe (same suite) and rsync over ssh (chacha20-poly1305)
#   lanes        (issue 12) the same REPLICATE with --lanes 1, 2 and 4, interleaved;
#                each figure names the lanes the mirror granted (peer.lanes)
#   compress     (issue 12) an ext4 image of /usr/share (mke2fs -d, built once a run)
#                replicated with --max-rate 50M and --compress none, zstd, lz4,
#                interleaved: start to INSYNC, bytes on the wire (peer.wire_bytes), cmp
#   crypto       (issue 12) one core's crypto: each AEAD of frep's suites alone
#                (tls-pipe --aead), and one TLS connection with both ends pinned to
#                one core, per CPU-second of each end: what one lane's end carries
#   verify       (issue 9) online verify of a dense volume, master and mirror on
#                tmpfs, unthrottled, against `xxhsum -H2` over both copies in turn
#   snapshot     (issue 10) INSYNC throughput of 4 KiB random writes across the whole
#                volume with one live snapshot on the mirror (most writes are the
#                first to their chunk since it was taken), against none; master and
#                mirror data dir both on disk, so the copy-before-write's reads,
#                writes and fdatasyncs cost what they would
#   peak RSS     both daemons, a small volume against a large sparse one
#   sustained    (issue 7) the link is tests/tools/fault-proxy with a rate cap; the
#                master's volume and journal on disk, default journal size, the
#                mirror on tmpfs; writes for minutes against the cap (rows below)
#
# Usage: bash bench/run.sh [SECTION...]   SECTION: write, replicate, lanes, compress, crypto,
#        verify, snapshot, rss, sustained; none runs them all (about 22 minutes on 2
#        cores; run as root for sshd)
# Environment, for a quick run:
#   BENCH_ROUNDS=3         rounds of each write row, of REPLICATE, lanes, compress, crypto
#   BENCH_VOLUME_MIB=1024  volume of the write rows, of REPLICATE and of lanes
#   BENCH_COMPRESS_SRC=/usr/share  the files of the compress section's ext4 image
#   BENCH_COMPRESS_RATE=50M  its --max-rate (bytes on the wire a second)
#   BENCH_CRYPTO_MIB=512   bytes each crypto measurement moves
#   BENCH_JOURNAL_MIB=64   --journal-size; the random rows write 3x this, the
#                          sequential row max(3x this, half the volume)
#   BENCH_SPARSE_GIB=32    the large sparse volume of the RSS row
#   BENCH_DISK_DIR=/var/tmp  where the master's files go (a disk, not tmpfs)
#   BENCH_BUFFER_FULL=block  frep's --on-buffer-full in the write rows (block|crack)
#   BENCH_CAP_MBPS=100     the sustained rows' link cap (MB/s, 10^6 bytes)
#   BENCH_SUSTAINED_S=30   each paced try and the block row write this long
#   BENCH_PACED="0.95 0.9 0.85 0.7"  paced rates tried, descending, as fractions of the cap
#   BENCH_OVERLOAD_S=20    full-speed writes before the time-to-INSYNC row
#   BENCH_INSYNC_WAIT_S=180  then INSYNC not reached in this long is "not reached"
#   BENCH_SUSTAINED_ROUNDS=1  rounds of the sustained rows
#   BENCH_SUSTAINED_BS=256k   block size of the sustained rows' random writes
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
cap_mbps=${BENCH_CAP_MBPS:-100}
sus_s=${BENCH_SUSTAINED_S:-30}
paced=${BENCH_PACED:-0.95 0.9 0.85 0.7}
overload_s=${BENCH_OVERLOAD_S:-20}
insync_wait_s=${BENCH_INSYNC_WAIT_S:-180}
sus_rounds=${BENCH_SUSTAINED_ROUNDS:-1}
sus_bs=${BENCH_SUSTAINED_BS:-256k}
compress_src=${BENCH_COMPRESS_SRC:-/usr/share}
compress_rate=${BENCH_COMPRESS_RATE:-50M}
crypto_mib=${BENCH_CRYPTO_MIB:-512}
all="write replicate lanes compress crypto verify snapshot rss sustained"
sections=" ${*:-$all} "
for s in $sections; do
	[[ " $all " == *" $s "* ]] ||
		{ echo "bench: unknown section '$s': give some of: $all; or none for all" >&2; exit 2; }
done
want() {
	[[ $sections == *" $1 "* ]]
}
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

# fio_write METRIC URI RW BS DEPTH IO_MIB [FIO_ARG...]: one fio job through the nbd
# engine. Its time includes the final FLUSH (end_fsync=1: fio counts it in the write
# runtime, checked against an nbdkit flush that sleeps). Records METRIC_iops, _mbps,
# _p50 (ms).
fio_write() {
	local out=$T/fio-$1.json
	fio --name="$1" --ioengine=nbd --uri="$2" --rw="$3" --bs="$4" --iodepth="$5" \
		--io_size="$6m" --end_fsync=1 "${@:7}" \
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

mbps() { # BYTES SECONDS
	awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1e6 / s }'
}

# copy_pass IMAGE MIB [CLIENT_ARG...]: one REPLICATE full pass of IMAGE (MIB MiB) to a
# fresh mirror. Volume, mirror and journal all on tmpfs: these rows are about the
# copy, not the disk or journal creation. Sets PASS_S (start to INSYNC: process start
# and handshake count), PASS_COPY_S (the master's copy phase, from its log; empty if
# it logged none) and PASS_PEER (the status's peer at INSYNC, JSON). The mirror's
# copy must be byte-identical, so that no figure comes from a broken run. Both
# daemons are stopped after.
copy_pass() {
	local img=$1 mib=$2 pids=("${PIDS[@]}") t0 t1 ms
	shift 2
	warm_tmpfs $((mib + 512))
	SERVER_DATA=$SHM/mirror-c start_server
	t0=$(now)
	JOURNAL=$SHM/copy.journal start_client copy "$img" master-1 --journal-size "${journal_mib}M" "$@"
	wait_status copy state INSYNC 300
	t1=$(log_time "$T/client-copy.log" 'state [A-Z]+ -> INSYNC')
	PASS_PEER=$(ctl copy status | jq -c '.volumes[0].master.peer')
	ms=$(sed -n 's/.*copy walked [0-9]* bytes ([0-9]* data) in \([0-9]*\) ms.*/\1/p' "$T/client-copy.log")
	cmp "$img" "$SHM/mirror-c/copy/extent.0" || fail "the mirror differs from the master (copy of $img${*:+ with $*})"
	PASS_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
	PASS_COPY_S=$([ -z "$ms" ] || awk -v ms="$ms" 'BEGIN { print ms / 1000 }')
	stop "$CLIENT_PID"
	stop "$SERVER_PID"
	PIDS=("${pids[@]}")
	rm -rf "$SHM/mirror-c" "$SHM"/copy.journal* "$T/client-copy.log" "$T/server.log" # the journal and its .bitmap, .meta, .lock
}

# peer_field KEY: one field of PASS_PEER.
peer_field() {
	jq -r --arg k "$1" '.[$k]' <<<"$PASS_PEER"
}

# --- data ----------------------------------------------------------------------
if want write || want replicate || want lanes || want verify || want snapshot; then
	echo "bench: preparing volumes (master on $DISK, mirror on $SHM)" >&2
	fill "$SHM/random.img" 0 "$vol_mib" 1
fi

# --- write rows: 4 KiB random at depth 1 and 16, 1 MiB sequential at depth 8 ----
if want write; then
	for v in fa fs nb; do # frep async, frep sync, nbdkit: the same dense bytes on the same disk
		cp "$SHM/random.img" "$DISK/$v.img"
	done
	sync -f "$DISK/fa.img" # no writeback of the copies during the timed runs
	SERVER_DATA=$SHM/mirror-w start_server
	# The baseline: a local NBD server on the same disk that makes every write durable
	# before replying.
	nbdkit -f -U "$T/nb.sock" --filter=fua file file="$DISK/nb.img" fuamode=force >>"$T/nbdkit.log" 2>&1 &
	PIDS+=($!)
	wait_for 20 "nbdkit's socket" test -S "$T/nb.sock"
	# block by default, not crack: a full buffer makes writers wait, so no row escapes
	# the mirror into the dirty bitmap, and every figure includes replication.
	JOURNAL=$DISK/fa.journal start_client fa "$DISK/fa.img" master-1 --journal-size "${journal_mib}M" \
		--on-buffer-full="$on_full"
	JOURNAL=$DISK/fs.journal start_client fs "$DISK/fs.img" master-1 --journal-size "${journal_mib}M" \
		--on-buffer-full="$on_full" --mode sync
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
	# how often writers waited for room in a full mirror buffer (status full_waits).
	run() {
		local who=$1 metric=$1_$2 full appends syncs
		shift 2
		quiesce
		if [ "$who" = nb ]; then
			fio_write "$metric" "nbd+unix:///?socket=$T/nb.sock" "$@"
			return
		fi
		full=$(ctl_field "$who" full_waits)
		appends=$(ctl_field "$who" journal_appends)
		syncs=$(ctl_field "$who" journal_syncs)
		fio_write "$metric" "nbd+unix:///$who?socket=$T/$who.sock" "$@"
		record "${metric}_full" $(($(ctl_field "$who" full_waits) - full))
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
fi

# --- REPLICATE: a dense volume on tmpfs, against a raw TLS pipe and rsync over ssh --
if want replicate; then
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

		# Copy phase against the pipe (neither counts process start and handshake);
		# start to INSYNC against rsync (both count everything).
		copy_pass "$SHM/random.img" "$vol_mib"
		[ -z "$PASS_COPY_S" ] || record copy_mbps "$(mbps "$copy_bytes" "$PASS_COPY_S")"
		record insync_mbps "$(mbps "$copy_bytes" "$PASS_S")"
	done
	kill -TERM "$sshd_pid"
	wait "$sshd_pid" 2>/dev/null || true
	PIDS=()
fi

# --- lanes (issue 12): REPLICATE of the dense volume with 1, 2 and 4 TLS lanes ------
# Incompressible data, unthrottled, --compress none: the lanes are all that differs.
# The lanes the session got (the mirror may grant fewer) are recorded beside each figure.
if want lanes; then
	copy_bytes=$((vol_mib << 20))
	for ((r = 1; r <= rounds; r++)); do
		echo "bench: lanes, round $r of $rounds" >&2
		if ((r % 2)); then order=(1 2 4); else order=(4 2 1); fi
		for n in "${order[@]}"; do
			copy_pass "$SHM/random.img" "$vol_mib" --lanes "$n" --compress none
			record "ln${n}_mbps" "$(mbps "$copy_bytes" "$PASS_S")"
			[ -z "$PASS_COPY_S" ] || record "ln${n}_copy_mbps" "$(mbps "$copy_bytes" "$PASS_COPY_S")"
			record "ln${n}_got" "$(peer_field lanes)"
		done
	done
fi

# --- compression (issue 12): an ext4 image of real files over a capped link --------
# The image is built once per run with mke2fs -d from a directory of ordinary files
# (/usr/share: text, man pages, locales, icons; some already compressed), sparse as
# mke2fs leaves it, so the copy walks only what the file system holds. Each pass is a
# full REPLICATE with --max-rate, which counts bytes on the wire: the saving is time.
if want compress; then
	echo "bench: compress: building an ext4 image of $compress_src" >&2
	src_mib=$(du -sm "$compress_src" | cut -f1)
	src_files=$(find "$compress_src" | wc -l)
	# 20% more than the files' own size, and inodes for all of them: mke2fs's default
	# of one inode per 16 KiB runs short on a tree of small files.
	cz_mib=$((src_mib * 6 / 5 + 64))
	cz_img=$SHM/compress.img
	mke2fs -F -t ext4 -N $((src_files * 6 / 5 + 1024)) -d "$compress_src" "$cz_img" "${cz_mib}M" \
		>"$T/mke2fs.log" 2>&1 || fail "mke2fs -d $compress_src failed: $(tail -n3 "$T/mke2fs.log")"
	for ((r = 1; r <= rounds; r++)); do
		echo "bench: compress, round $r of $rounds" >&2
		if ((r % 2)); then order=(none zstd lz4); else order=(lz4 zstd none); fi
		for alg in "${order[@]}"; do
			copy_pass "$cz_img" "$cz_mib" --compress "$alg" --max-rate "$compress_rate"
			[ "$(peer_field compression)" = "$alg" ] ||
				fail "--compress $alg: the session negotiated '$(peer_field compression)' (protocol $(peer_field protocol))"
			record "cz_${alg}_s" "$PASS_S"
			[ -z "$PASS_COPY_S" ] || record "cz_${alg}_copy_s" "$PASS_COPY_S"
			record "cz_${alg}_wire_mb" "$(awk -v b="$(peer_field wire_bytes)" 'BEGIN { printf "%.1f", b / 1e6 }')"
			record "cz_${alg}_data_mb" "$(awk -v b="$(peer_field data_bytes)" 'BEGIN { printf "%.1f", b / 1e6 }')"
		done
	done
	rm -f "$cz_img"
fi

# --- crypto per core (issue 12): what one core encrypts, to size lanes by -----------
# tls-pipe --aead: each AEAD of frep's suites alone, 16 KiB records as TLS seals them,
# one thread, per CPU-second (a shared machine's other load does not count). Then one TLS connection (the suite frep negotiates) with both ends pinned
# to one core: its wall-clock rate is one core doing both ends; each end's own CPU
# time (its kernel TCP work included) gives what one core carries at that end.
if want crypto; then
	cpu=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*\([0-9]*\).*/\1/p' /proc/self/status)
	for ((r = 1; r <= rounds; r++)); do
		echo "bench: crypto, round $r of $rounds" >&2
		"$BIN/bench/tls-pipe" --aead --bytes "${crypto_mib}M" >"$T/aead.out" || fail "tls-pipe --aead failed"
		/usr/bin/python3 - "$T/aead.out" >>"$RESULTS" <<'PY'
import sys
for line in open(sys.argv[1]):
    f = dict(w.split("=", 1) for w in line.split()[1:])
    name, mb = f["aead"], int(f["bytes"]) / 1e6
    print(f"aead_{name}_seal {mb / float(f['seal_cpu_s']):.1f}")
    print(f"aead_{name}_open {mb / float(f['open_cpu_s']):.1f}")
PY
		one=$(taskset -c "$cpu" "$BIN/bench/tls-pipe" --bytes "${crypto_mib}M" --chunk 4M --certs "$PKI") ||
			fail "tls-pipe on one core failed"
		crypto_cipher=$(sed -n 's/.*cipher=\([^ ]*\).*/\1/p' <<<"$one")
		one_field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$one"; }
		record tls1_mbps "$(one_field MBps)"
		record tls1_send_core "$(mbps "$(one_field bytes)" "$(one_field send_cpu_s)")"
		record tls1_recv_core "$(mbps "$(one_field bytes)" "$(one_field recv_cpu_s)")"
	done
fi

# --- online verify: both copies on tmpfs, against xxhsum -H2 over both in turn ----
# The same hash (XXH3-128) over the same bytes: xxhsum reads the master's copy, then
# the mirror's; frep's verify hashes both at once, one side in each daemon, plus its
# range locks, a frame each way per 1 MiB region and the mirror's batch commit. The
# verify time is the master's own ("verify N done in MS ms"), from start to result.
if want verify; then
	warm_tmpfs $((2 * vol_mib + 512))
	SERVER_DATA=$SHM/mirror-v start_server
	JOURNAL=$SHM/verify.journal start_client vfy "$SHM/random.img" master-1 \
		--journal-size "${journal_mib}M"
	wait_status vfy state INSYNC 300
	cmp "$SHM/random.img" "$SHM/mirror-v/vfy/extent.0" || fail "the mirror differs from the master"
	xxhsum -H2 "$SHM/random.img" "$SHM/mirror-v/vfy/extent.0" >/dev/null # both in the page cache
	for ((r = 1; r <= rounds; r++)); do
		echo "bench: verify, round $r of $rounds" >&2
		t0=$(now)
		xxhsum -H2 "$SHM/random.img" "$SHM/mirror-v/vfy/extent.0" >"$T/xxhsum.out"
		t1=$(now)
		record xxhsum_s "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
		"$BIN/frepctl" verify vfy --wait >"$T/verify.out" 2>&1 ||
			fail "frepctl verify failed: $(cat "$T/verify.out")"
		ms=$(grep -Eo "verify $r done in [0-9]+ ms: ok" "$T/client-vfy.log" | grep -Eo '[0-9]+ ms' | cut -d' ' -f1)
		[ -n "$ms" ] || fail "verify $r: no 'done ... ok' line in the master's log"
		record verify_s "$(awk -v ms="$ms" 'BEGIN { print ms / 1000 }')"
	done
	stop "$CLIENT_PID"
	stop "$SERVER_PID"
	PIDS=()
	rm -rf "$SHM/mirror-v" "$SHM/verify.journal"
fi
# --- one live snapshot: INSYNC throughput of 4 KiB random writes, with and without --
# Each run: fio's writes, then until the mirror has acknowledged them all (lag_tx 0),
# so that the figure is replicated bytes a second, whatever the buffer absorbed. The
# snapshot is taken just before its run and deleted after it; runs alternate.
if want snapshot; then
	cp "$SHM/random.img" "$DISK/sn.img"
	sync -f "$DISK/sn.img"
	SERVER_DATA=$DISK/mirror-s start_server
	JOURNAL=$DISK/sn.journal start_client sn "$DISK/sn.img" master-1 --journal-size "${journal_mib}M" \
		--on-buffer-full=block
	wait_status sn state INSYNC 300
	snap_admin() {
		/usr/bin/python3 "$FREP_SRC/tests/tools/admin-client.py" "unix:$FREP_RUN_DIR/server.sock" "$@"
	}
	snap_run() { # none|live
		wait_status sn lag_tx 0 300
		[ "$1" = none ] || snap_admin CreateSnapshot '{"volume": "sn", "name": "bench"}' >/dev/null
		local t0 t1
		t0=$(now)
		fio_write "snap_$1" "nbd+unix:///sn?socket=$T/sn.sock" randwrite 4k 16 "$rand_mib"
		wait_status sn lag_tx 0 300
		t1=$(now)
		record "snap_$1_e2e_mbps" "$(awk -v b=$((rand_mib << 20)) -v a="$t0" -v c="$t1" 'BEGIN { printf "%.1f", b / 1e6 / (c - a) }')"
		if [ "$1" = live ]; then
			record snap_used_mib "$(snap_admin ListSnapshots '{"volume": "sn"}' |
				jq '.snapshots[0].usedBytes // .snapshots[0].used_bytes | tonumber / 1048576')"
			snap_admin DeleteSnapshot '{"volume": "sn", "name": "bench"}' >/dev/null
		fi
	}
	for ((r = 1; r <= rounds; r++)); do
		echo "bench: one live snapshot, round $r of $rounds" >&2
		if ((r % 2)); then snap_run none; snap_run live; else snap_run live; snap_run none; fi
	done
	stop "$CLIENT_PID"
	stop "$SERVER_PID"
	PIDS=()
	rm -rf "$DISK/mirror-s" "$DISK"/sn.*
fi
rm -f "$SHM/random.img"

# --- peak RSS of both daemons: a small volume against a large sparse one ---------
if want rss; then
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
			--journal-size "${journal_mib}M" --on-buffer-full=block
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
fi

# --- sustained load (issue 7): writes for minutes through a link capped at the cap --
# One workload for every row, so that rows compare: random writes at depth 8 spread
# over the volume, as a VM or database would. 256 KiB by default (four dirty regions
# each): on 2 cores, 64 KiB writes with replication top out below a 100 MB/s cap, so
# they could neither fill nor overload the link.
sus_job=(randwrite "$sus_bs" 8)
sus_ramp_s=$((sus_s / 6 > 0 ? sus_s / 6 : 1))
# cracks: 'mirror buffer full: mirror cracked' lines in the client log so far.
cracks() {
	grep -c 'mirror buffer full: mirror cracked' "$T/client-su.log" || true
}
# su_client POLICY: (re)starts frep-client on the sustained volume with
# --on-buffer-full=POLICY, through the proxy, and waits until the mirror has every write.
su_client() {
	[ -z "${CLIENT_PID:-}" ] || stop "$CLIENT_PID"
	PIDS=("$SERVER_PID" "$PROXY_PID")
	SERVER_PORT=$PROXY_PORT JOURNAL=$DISK/su.journal start_client su "$DISK/su.img" master-1 \
		--on-buffer-full="$1"
	su_quiesce
}
su_quiesce() {
	wait_status su state INSYNC 300
	wait_status su lag_tx 0 300
}
# bytes_of SIZE: format_size's "12.3M" (powers of 1024) back to bytes.
bytes_of() {
	awk -v s="$1" 'BEGIN { printf "%.0f", (s + 0) * 1024 ^ index("KMGT", substr(s, length(s))) }'
}
if want sustained; then
	echo "bench: sustained load: preparing a ${vol_mib} MiB volume on $DISK" >&2
	su_uri="nbd+unix:///su?socket=$T/su.sock"
	fill "$DISK/su.img" 0 "$vol_mib" 7
	sync -f "$DISK/su.img"
	SERVER_DATA=$SHM/mirror-s start_server
	start_proxy
	# The first copy is setup, not a figure: it runs uncapped.
	CLIENT_PID=
	su_client crack
	pctl rate "$cap_mbps" >/dev/null
	warm_tmpfs 512
	for ((r = 1; r <= sus_rounds; r++)); do
		echo "bench: sustained rows, round $r of $sus_rounds" >&2
		[ "$r" -eq 1 ] || su_client crack
		# Paced writes, highest first; what the first without a crack wrote is the
		# figure (fio may fall short of the pace: then the master, not the link, limits).
		for f in $paced; do
			pct=$(awk -v f="$f" 'BEGIN { printf "%.0f", f * 100 }')
			su_quiesce
			c0=$(cracks)
			fio_write "sus_p$pct" "$su_uri" "${sus_job[@]}" "$vol_mib" \
				--rate="$(awk -v f="$f" -v c="$cap_mbps" 'BEGIN { printf "%.0f", f * c * 1e6 }')" \
				--time_based --runtime="$sus_s"
			record "sus_p${pct}_cracks" $(($(cracks) - c0))
			if [ "$(cracks)" -eq "$c0" ]; then
				record sus_paced_mbps "$(sed -n "s/^sus_p${pct}_mbps //p" "$RESULTS" | tail -n1)"
				break
			fi
		done

		# Overload with the crack policy, then back to INSYNC while writes go on at 30%.
		su_quiesce
		c0=$(cracks)
		fio_write sus_over "$su_uri" "${sus_job[@]}" "$vol_mib" --time_based --runtime="$overload_s"
		status=$(ctl su status)
		t0=$(now)
		record sus_over_cracks $(($(cracks) - c0))
		if [ "$(cracks)" -eq "$c0" ]; then
			# Full speed did not outrun the link: there is nothing to recover from.
			record sus_no_overload 1
		else
			dirty=$(tr ' ' '\n' <<<"$status" | sed -n 's/^dirty_regions=//p')
			lag=$(bytes_of "$(tr ' ' '\n' <<<"$status" | sed -n 's/^lag_bytes=//p')")
			d_bytes=$((dirty * 65536 + lag)) # 64 KiB: the bitmap's region (BITMAP_DEFAULT_REGION)
			record sus_d_mib "$(awk -v d="$d_bytes" 'BEGIN { printf "%.1f", d / 1048576 }')"
			fio --name=sus_bg --ioengine=nbd --uri="$su_uri" --rw="${sus_job[0]}" --bs="${sus_job[1]}" \
				--iodepth="${sus_job[2]}" --size="${vol_mib}m" --time_based --runtime="$((insync_wait_s + 60))" \
				--rate="$(awk -v c="$cap_mbps" 'BEGIN { printf "%.0f", 0.3 * c * 1e6 }')" \
				>"$T/fio-bg.log" 2>&1 &
			bg_pid=$!
			PIDS+=("$bg_pid")
			reached=
			deadline=$((SECONDS + insync_wait_s))
			while [ -z "$reached" ] && [ $SECONDS -lt $deadline ]; do
				if status_is su state INSYNC; then reached=$(now); else sleep 0.2; fi
			done
			kill -INT "$bg_pid" # fio ends its job and reports
			wait "$bg_pid" || true
			grep -q 'err= 0' "$T/fio-bg.log" || fail "the writes at 30% of the cap failed: $(tail -n3 "$T/fio-bg.log")"
			PIDS=("$SERVER_PID" "$PROXY_PID" "$CLIENT_PID")
			if [ -n "$reached" ]; then
				record sus_insync_s "$(awk -v a="$t0" -v b="$reached" 'BEGIN { printf "%.2f", b - a }')"
				record sus_ideal_s "$(awk -v d="$d_bytes" -v c="$cap_mbps" 'BEGIN { printf "%.2f", d / 1e6 / c }')"
			else
				record sus_insync_missed 1
			fi
		fi

		# Block policy at full speed: writers wait for the link instead of cracking.
		su_client block
		c0=$(cracks)
		fio_write sus_block "$su_uri" "${sus_job[@]}" "$vol_mib" --time_based --runtime="$sus_s" \
			--ramp_time="$sus_ramp_s"
		record sus_block_cracks $(($(cracks) - c0))
	done
	su_quiesce
	for p in "${PIDS[@]}"; do stop "$p"; done
	PIDS=()
	rm -rf "$SHM/mirror-s" "$DISK"/su.*
fi

# --- the table -----------------------------------------------------------------
echo
echo "frep benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(git -C "$src" rev-parse --short HEAD)"
if want write; then
	echo "write rows: ${vol_mib} MiB volume and ${journal_mib} MiB journal on disk ($DISK), mirror on tmpfs;"
	echo "  fio nbd engine, 4 KiB random rows write ${rand_mib} MiB, the 1 MiB row ${seq_mib} MiB (>= 3x the journal),"
	echo "  the final FLUSH counted; frep --on-buffer-full=${on_full}; ${rounds} interleaved rounds, median [min-max]"
fi
! want replicate ||
	echo "REPLICATE: ${vol_mib} MiB dense on tmpfs, cipher ${cipher}; rsync over ssh with chacha20-poly1305"
! want lanes ||
	echo "lanes: REPLICATE of ${vol_mib} MiB dense on tmpfs, --compress none, unthrottled; ${rounds} interleaved rounds"
if want compress; then
	echo "compress: ext4 image of $compress_src (mke2fs -d, ${cz_mib} MiB, sparse), on tmpfs like the mirror;"
	echo "  REPLICATE start->INSYNC with --max-rate ${compress_rate} (wire bytes); ${rounds} interleaved rounds; mirror cmp'd"
fi
! want crypto ||
	echo "crypto: mbedTLS $(dpkg-query -W -f='${Version}' libmbedtls-dev 2>/dev/null), one core ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')); ${crypto_mib} MiB a measurement, 16 KiB records"
! want verify ||
	echo "verify: ${vol_mib} MiB dense, master and mirror on tmpfs, unthrottled; xxhsum -H2 over both copies in turn"
if want snapshot; then
	echo "snapshot: ${vol_mib} MiB dense volume, master and mirror both on disk ($DISK); fio nbd engine, 4 KiB"
	echo "  random writes at depth 16 across the whole volume, ${rand_mib} MiB a run, timed until the mirror"
	echo "  acknowledged them all; one live snapshot taken just before the run, or none; ${rounds} rounds, alternated"
fi
if want rss; then
	echo "peak RSS: ${rss_alloc_mib} MiB allocated in a ${vol_mib} MiB and a ${sparse_gib} GiB sparse volume, then ${journal_mib} MiB"
	echo "  of 4 KiB random writes; mirror on disk (it reserves the whole volume, too big for tmpfs)"
fi
if want sustained; then
	echo "sustained: ${vol_mib} MiB dense volume and the default journal on disk ($DISK), mirror on tmpfs, through"
	echo "  fault-proxy 'rate ${cap_mbps}'; fio nbd engine, ${sus_job[*]}; paced tries ${sus_s} s each at"
	echo "  ${paced} x the cap, highest without a crack; the block row ${sus_s} s after ${sus_ramp_s} s of ramp;"
	echo "  ${overload_s} s of overload (crack policy), then the time to INSYNC while writing at 30% of the cap;"
	echo "  D = dirty regions x 64 KiB + lag_bytes at the end of the overload; ${sus_rounds} round(s), median [min-max]"
fi
echo
/usr/bin/python3 - "$RESULTS" "$vol_mib" "$sparse_gib" "$sections" "$cap_mbps" "$sus_s" "$overload_s" \
	"$insync_wait_s" "$compress_rate" "${crypto_cipher:-}" <<'PY'
import statistics, sys
small, big = f"{sys.argv[2]} MiB", f"{sys.argv[3]} GiB"
sections = sys.argv[4].split()
cap, sus_s, overload_s, insync_wait_s = (float(a) for a in sys.argv[5:9])
rate, cipher = sys.argv[9], sys.argv[10]
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
        out.append(f"writers waited for room x{full:.0f}")
    return ", ".join(out)

rows = []  # figure, frep, baseline, ratio, target, notes
def row(fig, a, b, base, target, d=0, rd=2):
    rows.append((fig, fmt(vals.get(a, []), d), f"{base} {fmt(vals.get(b, []), d)}",
                 fmt(pair(a, b), rd), target, notes(a)))

if "write" in sections:
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
if "replicate" in sections:
    row("REPLICATE copy phase MB/s", "copy_mbps", "pipe_mbps", "mbedTLS pipe", ">= 0.9", 1)
    row("REPLICATE start->INSYNC MB/s", "insync_mbps", "rsync_mbps", "rsync/ssh", ">= 1.0", 1)
if "lanes" in sections:
    def granted(n):
        got = sorted({int(x) for x in vals.get(f"ln{n}_got", [])})
        return "granted " + "/".join(map(str, got)) if got else "granted n/a"
    for n in (2, 4):
        row(f"REPLICATE {n} lanes start->INSYNC MB/s", f"ln{n}_mbps", "ln1_mbps", "1 lane", ">= 0.95", 1)
        rows[-1] = rows[-1][:5] + (f"asked {n}, {granted(n)} (1 lane: {granted(1)}); copy phase "
                                   f"{fmt(vals.get(f'ln{n}_copy_mbps', []), 1)} vs "
                                   f"{fmt(vals.get('ln1_copy_mbps', []), 1)} MB/s",)
if "compress" in sections:
    def wire(a):
        w, d = vals.get(f"cz_{a}_wire_mb", []), vals.get(f"cz_{a}_data_mb", [])
        return (f"wire {fmt(w, 0)} MB of {fmt(d, 0)} MB ({fmt([x / y for x, y in zip(d, w)], 2)}x)"
                f", copy phase {fmt(vals.get(f'cz_{a}_copy_s', []), 1)} s")
    for a in ("zstd", "lz4"):
        rows.append((f"compress {a}, {rate} cap: start->INSYNC s", fmt(vals.get(f"cz_{a}_s", []), 1),
                     f"none {fmt(vals.get('cz_none_s', []), 1)}", fmt(pair(f"cz_{a}_s", "cz_none_s"), 2),
                     "<= 0.6", wire(a) + ("; none: " + wire("none") if a == "zstd" else "")))
if "crypto" in sections:
    def mb(k):
        return fmt(vals.get(k, []), 0)
    rows.append((f"one core: TLS send end MB/s ({cipher})", mb("tls1_send_core"),
                 f"receive end {mb('tls1_recv_core')}", "-", "-",
                 f"per CPU-second of each end's thread; both ends on one core {mb('tls1_mbps')} MB/s"))
    aeads = sorted({k[5:-5] for k in vals if k.startswith("aead_") and k.endswith("_seal")},
                   key=lambda n: (not n.startswith("CHACHA"), n))
    for n in aeads:
        rows.append((f"one core: {n} seal MB/s", mb(f"aead_{n}_seal"), f"open {mb(f'aead_{n}_open')}",
                     "-", "-", "the AEAD alone, 16 KiB records, per CPU-second (tls-pipe --aead)"))
if "verify" in sections:
    # The ratio is xxhsum's time over verify's: at least 0.8 means verify takes at most
    # 1.25 times as long as hashing both copies in turn.
    rows.append(("online verify, s", fmt(vals.get("verify_s", []), 3),
                 f"xxhsum -H2 x2 {fmt(vals.get('xxhsum_s', []), 3)}",
                 fmt(pair("xxhsum_s", "verify_s"), 2), ">= 0.8", "ratio = xxhsum time / verify time"))
if "snapshot" in sections:
    row("INSYNC 4K randwrite QD16, 1 live snapshot, MB/s", "snap_live_e2e_mbps", "snap_none_e2e_mbps",
        "no snapshot", ">= 0.7", 1)
    rows[-1] = rows[-1][:5] + (f"fio IOPS {fmt(vals.get('snap_live_iops', []), 0)} vs "
                               f"{fmt(vals.get('snap_none_iops', []), 0)}; snapshot held "
                               f"{fmt(vals.get('snap_used_mib', []), 0)} MiB after a run",)
if "rss" in sections:
    for who in ("client", "server"):
        row(f"peak RSS frep-{who} MiB, {big}", f"rss_{who}_big", f"rss_{who}_small", small, "flat", 1)
    row(f"start->INSYNC s, {big} sparse", "rss_insync_s_big", "rss_insync_s_small", small, "same", 2)
if "sustained" in sections:
    def of_cap(metric):
        return fmt([x / cap for x in vals.get(metric, [])], 2)
    tries = sorted({k[len("sus_p"):-len("_cracks")] for k in vals
                    if k.startswith("sus_p") and k.endswith("_cracks")}, key=int, reverse=True)
    tried = "; ".join(f"{t}% pace: fio {fmt(vals.get(f'sus_p{t}_mbps', []), 1)} MB/s, "
                      f"cracks {sum(vals[f'sus_p{t}_cracks']):.0f}" for t in tries)
    paced = fmt(vals.get("sus_paced_mbps", []), 1)
    rows.append((f"highest paced MB/s, no crack for {sus_s:g} s", paced if paced != "n/a" else "none",
                 f"cap {cap:g}", of_cap("sus_paced_mbps"), ">= 0.85", tried))
    rows.append((f"block policy, full speed {sus_s:g} s, MB/s", fmt(vals.get("sus_block_mbps", []), 1),
                 f"cap {cap:g}", of_cap("sus_block_mbps"), ">= 0.85, 0 cracks",
                 f"cracks {sum(vals.get('sus_block_cracks', [])):.0f}"))
    missed, calm = sum(vals.get("sus_insync_missed", [])), sum(vals.get("sus_no_overload", []))
    rows.append((f"s to INSYNC after {overload_s:g} s overload", fmt(vals.get("sus_insync_s", []), 1),
                 f"D/cap {fmt(vals.get('sus_ideal_s', []), 1)} s", fmt(pair("sus_insync_s", "sus_ideal_s"), 2),
                 "<= 1.8", f"D {fmt(vals.get('sus_d_mib', []), 0)} MiB, overload fio "
                 f"{fmt(vals.get('sus_over_mbps', []), 1)} MB/s, cracks {sum(vals.get('sus_over_cracks', [])):.0f}"
                 + (f"; not reached in {insync_wait_s:g} s x{missed:.0f}" if missed else "")
                 + (f"; no crack x{calm:.0f}: full speed did not outrun the cap" if calm else "")))

head = ("figure", "frep", "baseline", "ratio", "target", "notes")
w = [max(len(r[i]) for r in rows + [head]) for i in range(6)]
for r in [head] + rows:
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
PY
