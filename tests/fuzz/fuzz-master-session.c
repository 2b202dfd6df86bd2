/* Fuzz harness: what a mirror sends, through the master's session (client/session*.c), in process. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "frep/v1/frep.pb-c.h"
#include "harness.h"
#include "journal.h"
#include "log.h"
#include "master.h"
#include "mem-tls.h"
#include "session-internal.h"
#include "tls.h"
#include "util.h"
#include "verify.h"

/*
 * The master is real: extents, journal, metadata and dirty bitmap on tmpfs,
 * made afresh for each run, and local writes through master_submit. Only the
 * mirror is the input, and the session runs in this thread, one
 * session_step at a time, instead of its own (session_start): the backoff
 * of RESET and LINKDOWN is skipped, and the run ends when the input does.
 *
 * Input:
 *   byte 0  low nibble: local writes committed before the session starts;
 *           high nibble: how many of them an earlier session had acknowledged,
 *           now freed from the journal
 *   byte 1  flags, CFG_*
 *   then bursts: ACTION(1) LEN(2, little-endian) BYTES(LEN)
 * BYTES are what the mirror sends (frames, or anything), one burst at a time
 * (mem-tls.h): the master reads a burst when it waits for the mirror or
 * drains what arrived, between its own steps of a copy or sequencing. ACTION
 * says what else happens as the burst arrives (ACT_*): local writes, an
 * operator request, or the mirror closing the connection after the burst.
 * The next connection (the session reconnects after RESET or LINKDOWN)
 * starts at the next burst; the rest of a burst the session did not read
 * when it disconnected is lost with the connection.
 *
 * Oracles, besides the sanitizers: every frame the master sends decodes; a
 * TX carries exactly the record committed under its TXID, and COPY_DATA its
 * trailer's CRC; the master volume holds exactly the local writes (the
 * session never writes it); no unacknowledged record is freed but by a
 * crack; acknowledged TXIDs were committed.
 */
enum {
	VOL_SIZE = 1 << 20,
	EXT0_SIZE = 640 << 10,	/* CFG_TWO_EXTENTS: 640 KiB + 384 KiB */
	JOURNAL_SIZE = 1 << 20, /* the smallest: a few 64 KiB writes fill it */
	SMALL_WRITE = 4096,
	BIG_WRITE = 64 << 10,
	MAX_TXIDS = 2048,	/* local writes per run; more are skipped */
	MAX_CONNECTIONS = 8,
	MAX_STEPS = 256,	/* session_step calls per run (each one reads or ends) */
};

enum config_flags {
	CFG_RESYNC_FULL = 1u << 0, /* --resync=full */
	CFG_TWO_EXTENTS = 1u << 1,
	CFG_CRACKED = 1u << 2,	   /* the buffer overflowed before the session: bits dirty */
};

enum action_bits {
	ACT_COUNT = 7u,		/* local writes as the burst arrives, 0..7; or with ACT_OPERATOR: */
	ACT_OP_SHIFT = 3,	/* 0, 1 write; 2 trim; 3 zero */
	ACT_BIG = 1u << 5,	/* 64 KiB each, else 4 KiB */
	ACT_OPERATOR = 1u << 6, /* instead: COUNT 1 pause, 2 resume, 3 resync-full,
				 * 4 verify (without repair: its writes would be
				 * TXs the oracles do not expect) */
	ACT_CLOSE = 1u << 7,	/* the mirror closes the connection after this burst */
};

struct expected_tx {
	unsigned op;
	uint64_t offset, length;
	uint32_t crc;
};

static struct fuzz_run {
	const uint8_t *in;
	size_t len, pos;
	bool close_next;	/* the burst just given had ACT_CLOSE */
	unsigned connections;
	struct master m;
	uint8_t shadow[VOL_SIZE]; /* what the master volume must hold */
	uint8_t buf[BIG_WRITE];
	uint64_t writes;	  /* local writes so far: picks offsets and contents */
	struct expected_tx tx[MAX_TXIDS + 1];
	uint64_t last_txid;
	char extent[2][256], journal[256];
} run;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* FREP_FUZZ_LOG=info shows what the session did with an input. */
	const char *level = getenv("FREP_FUZZ_LOG");
	int l = level ? log_level_parse(level) : -1;
	log_init("fuzz-master-session", l < 0 ? LOG_ERROR : (enum log_level)l);
	const char *dir = fuzz_tmpdir();
	snprintf(run.extent[0], sizeof(run.extent[0]), "%s/ext0", dir);
	snprintf(run.extent[1], sizeof(run.extent[1]), "%s/ext1", dir);
	snprintf(run.journal, sizeof(run.journal), "%s/journal", dir);
	return 0;
}

/* ------------------------------------------------------------ the master's side */

/* One local write through the whole transaction path, as an NBD client's. */
static void local_write(unsigned op, uint32_t len)
{
	if (run.last_txid == MAX_TXIDS)
		return;
	uint64_t n = run.writes++;
	/* Spread over the volume, 4 KiB aligned, some overlapping: the golden ratio walks it evenly. */
	uint64_t off = (n * 0x9e3779b97f4a7c15ull >> 40) % ((VOL_SIZE - len) / 4096 + 1) * 4096;
	if (op == JOP_WRITE) {
		/* Each 4 KiB block says which write and block it is: a misplaced one shows. */
		memset(run.buf, (int)(n * 31 + 1), len);
		for (uint32_t b = 0; b < len; b += 4096) {
			uint64_t stamp[2] = { n, b };
			memcpy(run.buf + b, stamp, sizeof(stamp));
		}
		memcpy(run.shadow + off, run.buf, len);
	} else {
		memset(run.shadow + off, 0, len); /* a trimmed range reads back as zeros */
	}
	require(master_submit(&run.m, op, off, len, op == JOP_WRITE ? run.buf : NULL) == 0);
	/* One writer: its TXID is the last committed. */
	pthread_mutex_lock(&run.m.lock);
	uint64_t txid = run.m.committed_txid;
	pthread_mutex_unlock(&run.m.lock);
	require(txid == run.last_txid + 1 || run.m.journal_damage[0]);
	run.last_txid = txid;
	run.tx[txid] = (struct expected_tx){ op, off, len,
					     op == JOP_WRITE ? frep_crc32c(run.buf, len) : 0 };
}

static void act(uint8_t a)
{
	if (a & ACT_OPERATOR) {
		/* The admin API's settings (client/admin-master.c): a pause holds until resumed. */
		pthread_mutex_lock(&run.m.lock);
		switch (a & ACT_COUNT) {
		case 1:
			run.m.paused = true;
			break;
		case 2:
			run.m.paused = false;
			break;
		case 3:
			run.m.resync_full_req = true;
			break;
		}
		pthread_mutex_unlock(&run.m.lock);
		if ((a & ACT_COUNT) == 4) {
			/* The admin API's verify (client/verify.c): refused unless INSYNC. */
			struct admin_reply r;
			uint64_t id;
			/*
			 * Its thread hashes as the session runs: wait until what it
			 * had to hash is queued, so that a run replays the same way.
			 */
			if (master_verify_start(&run.m, false, &id, &r) == 0)
				for (unsigned i = 0; i < 2000 && !verify_settled(&run.m); i++)
					usleep(1000);
		}
		return;
	}
	static const unsigned ops[4] = { JOP_WRITE, JOP_WRITE, JOP_TRIM, JOP_ZERO };
	unsigned op = ops[(a >> ACT_OP_SHIFT) & 3];
	for (unsigned i = 0; i < (a & ACT_COUNT); i++)
		local_write(op, a & ACT_BIG ? BIG_WRITE : SMALL_WRITE);
}

/* ------------------------------------------------------------ the mirror's side */

static bool mirror_next(void *arg, const uint8_t **in, size_t *len)
{
	if (run.close_next || run.len - run.pos < 3)
		return false;
	uint8_t a = run.in[run.pos];
	size_t n = run.in[run.pos + 1] | (size_t)run.in[run.pos + 2] << 8;
	run.pos += 3;
	if (n > run.len - run.pos)
		n = run.len - run.pos;
	*in = run.in + run.pos;
	*len = n;
	run.pos += n;
	run.close_next = a & ACT_CLOSE;
	act(a);
	return true;
}

/* Everything the master sent on one connection: whole, valid frames, true to the journal. */
static void mirror_check(void *arg, const uint8_t *out, size_t len)
{
	struct tls_conn *c = mem_tls_open(out, len, "fuzz-master", 0);
	struct frame_reader rd;
	struct frame f;
	uint32_t wire_err;
	char why[256];
	enum frame_status st;

	frame_reader_init(&rd);
	while ((st = frame_recv(c, &rd, &f, &wire_err, why, sizeof(why))) == FRAME_OK) {
		if (f.hdr.type == FREP_MSG_TX) {
			const Frep__V1__Tx *tx = (const Frep__V1__Tx *)f.msg;
			require(tx->txid >= 1 && tx->txid <= run.last_txid &&
				tx->generation == run.m.generation);
			const struct expected_tx *e = &run.tx[tx->txid];
			require((unsigned)tx->op == e->op && tx->offset == e->offset &&
				tx->length == e->length && tx->data_crc == e->crc);
			require(f.hdr.trailer_len == (e->op == JOP_WRITE ? e->length : 0));
			require(!f.hdr.trailer_len || frep_crc32c(f.trailer, f.hdr.trailer_len) == e->crc);
		} else if (f.hdr.type == FREP_MSG_COPY_DATA) {
			const Frep__V1__CopyData *d = (const Frep__V1__CopyData *)f.msg;
			require(d->offset < VOL_SIZE && f.hdr.trailer_len <= VOL_SIZE - d->offset);
			require(frep_crc32c(f.trailer, f.hdr.trailer_len) == d->data_crc);
		}
	}
	if (st != FRAME_EOF)
		fprintf(stderr, "the master sent a frame that does not decode: %s\n", why);
	require(st == FRAME_EOF);
	frame_reader_free(&rd);
	tls_close(c);
}

static const struct mem_tls_peer mirror = { .next = mirror_next, .written = mirror_check };

static struct tls_conn *mirror_connect(void *arg)
{
	if (run.connections == MAX_CONNECTIONS || run.len - run.pos < 3)
		return NULL;
	run.connections++;
	run.close_next = false;
	return mem_tls_open_bursts(&mirror, "fuzz-mirror");
}

/* ------------------------------------------------------------ one run */

/* Extents with data and holes (the copy walks both), and the master on them. */
static void master_setup(uint8_t cfg0, uint8_t cfg1)
{
	char err[512], *paths[2] = { run.extent[0], run.extent[1] };
	unsigned n = cfg1 & CFG_TWO_EXTENTS ? 2 : 1;
	uint64_t sizes[2] = { n == 2 ? EXT0_SIZE : VOL_SIZE, VOL_SIZE - EXT0_SIZE };
	int exit_code;

	memset(run.shadow, 0, sizeof(run.shadow));
	for (unsigned i = 0; i < 64 << 10; i++)
		run.shadow[i] = (uint8_t)(i * 7 + 3);
	for (unsigned i = 0; i < 8 << 10; i++)
		run.shadow[EXT0_SIZE + i] = (uint8_t)(i * 13 + 5);
	for (unsigned i = 0, start = 0; i < n; start += sizes[i++]) {
		int fd = open(paths[i], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		require(fd >= 0 && ftruncate(fd, (off_t)sizes[i]) == 0);
		for (uint64_t off = 0; off < sizes[i]; off += 4096) {
			static const uint8_t zero[4096];
			if (memcmp(run.shadow + start + off, zero, 4096) != 0)
				require(pwrite(fd, run.shadow + start + off, 4096, (off_t)off) == 4096);
		}
		close(fd);
	}
	struct master_options o = {
		.name = "fuzz",
		.paths = paths,
		.n_paths = n,
		.journal_path = run.journal,
		.journal_size = JOURNAL_SIZE,
		.on_full = ON_FULL_CRACK,
		.lock_fd = -1,
	};
	if (master_open(&run.m, &o, err, sizeof(err), &exit_code) < 0) {
		fprintf(stderr, "master_open: %s\n", err);
		abort();
	}

	unsigned before = cfg0 & 15, acked = cfg0 >> 4;
	for (unsigned i = 0; i < before; i++)
		local_write(i % 5 == 3 ? JOP_TRIM : JOP_WRITE, SMALL_WRITE);
	if (acked) {
		/* What an earlier session's TX_ACKs let go of. */
		pthread_mutex_lock(&run.m.lock);
		run.m.acked_txid = run.m.synced_txid = acked < before ? acked : before;
		pthread_mutex_unlock(&run.m.lock);
		require(master_free_acked(&run.m) == 0);
	}
	for (unsigned i = 0; cfg1 & CFG_CRACKED && run.m.cracks == 0; i++) {
		require(i < 64);
		local_write(JOP_WRITE, BIG_WRITE);
	}
}

static void oracles(void)
{
	struct master *m = &run.m;
	static uint8_t vol[VOL_SIZE];

	require(m->acked_txid <= m->committed_txid && m->synced_txid <= m->committed_txid);
	/* Nothing unacknowledged is freed, but by a crack (which marked it dirty first). */
	require(m->cracks || journal_first_txid(m->j) <= m->acked_txid + 1);
	require(volume_pread(&m->vol, vol, VOL_SIZE, 0) == 0);
	require(memcmp(vol, run.shadow, VOL_SIZE) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	fuzz_tmpdir_clear();
	run.in = data;
	run.len = size;
	run.pos = 2;
	run.connections = 0;
	run.writes = run.last_txid = 0;
	master_setup(data[0], data[1]);
	mem_tls_on_connect(mirror_connect, NULL);

	struct session_options o = {
		.host = "fuzz-mirror",
		.port = "7460",
		.server_name = "fuzz-mirror",
		.resync_full = data[1] & CFG_RESYNC_FULL,
		.backoff_min_ms = 100,
		.backoff_max_ms = 1000,
		/* Never: the input is all there is, however long a run takes. */
		.heartbeat_timeout_ms = 3600 * 1000,
	};
	struct session *s = session_new(&run.m, &o);
	require(s);
	session_enter(s);
	for (unsigned steps = 0; steps < MAX_STEPS; steps++) {
		enum master_state st = s->fsm.state;
		if (st == MS_ERROR)
			break;
		if (st == MS_RESET || st == MS_LINKDOWN) {
			/* The backoff is over at once; a retry needs input left for it. */
			if (run.connections == MAX_CONNECTIONS || run.len - run.pos < 3)
				break;
			require(master_fsm_retry(&s->fsm) == 0);
			continue;
		}
		session_step(s);
	}
	session_leave(s);
	session_free(s);
	oracles();
	master_close(&run.m);
	mem_tls_on_connect(NULL, NULL);
	return 0;
}
