/* Unit tests of the journal: round trips, torn tails, corruption, wrap, reset, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "tmpdir.h"

#include "../../common/journal.c"

#define MIB (1024u * 1024u)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static int setup(void **state)
{
	return tmpdir_setup(state, "journal", "journal");
}

static int teardown(void **state)
{
	return tmpdir_teardown(state);
}

/* ------------------------------------------------------------------ helpers */

/* Deterministic content of TXID txid, so any record can be checked later. */
static void pattern(unsigned char *buf, size_t len, uint64_t txid)
{
	uint64_t x = txid * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (unsigned char)x;
	}
}

/* Length of TXID txid in the wrap test: varied, 0 to ~70 KB. */
static uint32_t wrap_len(uint64_t txid)
{
	return (uint32_t)((txid * 7919u) % 70001u);
}

static struct journal *open_ok(const char *path, uint64_t size)
{
	char err[512] = "";
	struct journal *j = journal_open(path, size, "vol", err, sizeof(err));
	if (!j)
		fail_msg("journal_open %s: %s", path, err);
	return j;
}

static int append_write(struct journal *j, uint64_t txid, uint32_t len)
{
	unsigned char *buf = malloc(len ? len : 1);
	assert_non_null(buf);
	pattern(buf, len, txid);
	struct journal_rec r = {
		.generation = 7,
		.txid = txid,
		.offset = txid * 4096,
		.length = len,
		.op = JOP_WRITE,
		.data_crc = frep_crc32c(buf, len),
	};
	int rc = journal_append(j, &r, buf);
	free(buf);
	return rc;
}

static void append_sync(struct journal *j, uint64_t txid, uint32_t len)
{
	assert_int_equal(append_write(j, txid, len), 0);
	assert_int_equal(journal_sync(j), 0);
}

static void check_write(struct journal *j, uint64_t txid, uint32_t len)
{
	unsigned char *want = malloc(len + 1), *got = malloc(len + 1);
	struct journal_rec r;

	assert_non_null(want);
	assert_non_null(got);
	pattern(want, len, txid);
	if (journal_read(j, txid, &r, got, len) != 0)
		fail_msg("journal_read TXID %" PRIu64 ": %s", txid, strerror(errno));
	assert_int_equal(r.txid, txid);
	assert_int_equal(r.op, JOP_WRITE);
	assert_int_equal(r.length, len);
	assert_int_equal(r.offset, txid * 4096);
	assert_int_equal(r.generation, 7);
	assert_int_equal(r.data_crc, frep_crc32c(want, len));
	assert_memory_equal(want, got, len);
	free(want);
	free(got);
}

/* Ring offset of a held record, to aim corruption at it. */
static uint64_t ring_off(struct journal *j, uint64_t txid)
{
	return ent(j, txid)->lpos % j->ring;
}

static void flip_byte(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	unsigned char b;
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0x5a;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

static void write_at(const char *path, uint64_t off, const void *buf, size_t len)
{
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* A process crash: nothing more reaches the file, the header tail stays as it was. */
static void crash_close(struct journal *j)
{
	close(j->fd);
	free(j->ents);
	free(j->path);
	free(j->volume);
	free(j);
}

/* Runs journal_open with stderr captured; returns the journal and the log text. */
static struct journal *open_logged(struct fixture *f, char *err, size_t err_len, char *log,
				   size_t log_len)
{
	int saved = dup(2);
	int fd = open(f->errlog, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, 2);
	struct journal *j = journal_open(f->path, MIB, "vol", err, err_len);
	dup2(saved, 2);
	close(saved);
	ssize_t n = pread(fd, log, log_len - 1, 0);
	log[n > 0 ? n : 0] = '\0';
	close(fd);
	return j;
}

/* -------------------------------------------------------------------- tests */

static void test_roundtrip_and_reopen(void **state)
{
	struct fixture *f = *state;
	struct journal *j = open_ok(f->path, MIB);
	struct journal_rec r;
	unsigned char buf[8192];

	assert_int_equal(journal_first_txid(j), 1);
	assert_int_equal(journal_last_txid(j), 0);
	assert_int_equal(journal_capacity(j), MIB - JOURNAL_HDR_AREA);
	assert_int_equal(journal_max_record_data(j), MIB - JOURNAL_HDR_AREA - JOURNAL_REC_HDR);
	assert_int_equal(journal_used(j), 0);

	append_sync(j, 1, 4096);
	struct journal_rec trim = { .generation = 7, .txid = 2, .offset = 1 << 20,
				    .length = UINT32_MAX, .op = JOP_TRIM };
	assert_int_equal(journal_append(j, &trim, NULL), 0);
	struct journal_rec zero = { .generation = 7, .txid = 3, .offset = 0, .length = 512,
				    .op = JOP_ZERO };
	assert_int_equal(journal_append(j, &zero, NULL), 0);
	append_sync(j, 4, 1);
	append_sync(j, 5, 0);
	assert_int_equal(journal_last_txid(j), 5);
	assert_int_equal(journal_used(j), 4 * 64 + 4096 + 64 + 64);

	/* A TXID that is not last + 1 is refused and changes nothing. */
	assert_int_equal(append_write(j, 7, 10), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(append_write(j, 5, 10), -1);
	assert_int_equal(errno, EINVAL);
	struct journal_rec badop = { .txid = 6, .op = 9 };
	assert_int_equal(journal_append(j, &badop, NULL), -1);
	assert_int_equal(errno, EINVAL);

	for (int pass = 0; pass < 2; pass++) {
		check_write(j, 1, 4096);
		assert_int_equal(journal_read(j, 2, &r, buf, 0), 0);
		assert_int_equal(r.op, JOP_TRIM);
		assert_int_equal(r.length, UINT32_MAX);
		assert_int_equal(r.offset, 1 << 20);
		assert_int_equal(r.data_crc, 0);
		assert_int_equal(journal_read(j, 3, &r, buf, 0), 0);
		assert_int_equal(r.op, JOP_ZERO);
		assert_int_equal(r.length, 512);
		check_write(j, 4, 1);
		check_write(j, 5, 0);
		assert_int_equal(journal_read(j, 0, &r, buf, sizeof(buf)), -1);
		assert_int_equal(errno, ENOENT);
		assert_int_equal(journal_read(j, 6, &r, buf, sizeof(buf)), -1);
		assert_int_equal(errno, ENOENT);
		/* The buffer must hold the data. */
		assert_int_equal(journal_read(j, 1, &r, buf, 4095), -1);
		assert_int_equal(errno, EINVAL);

		journal_close(j);
		/* The size is ignored for an existing file. */
		j = open_ok(f->path, 0);
		assert_int_equal(journal_first_txid(j), 1);
		assert_int_equal(journal_last_txid(j), 5);
	}
	/* Data corrupted after open is caught by journal_read. */
	flip_byte(f->path, JOURNAL_HDR_AREA + ring_off(j, 1) + JOURNAL_REC_HDR + 100);
	assert_int_equal(journal_read(j, 1, &r, buf, sizeof(buf)), -1);
	assert_int_equal(errno, EBADMSG);
	journal_close(j);
}

static void test_open_errors(void **state)
{
	struct fixture *f = *state;
	char err[512] = "", p[256];

	assert_null(journal_open(f->path, MIB - 1, "vol", err, sizeof(err)));
	assert_non_null(strstr(err, "outside"));
	assert_int_equal(access(f->path, F_OK), -1);
	snprintf(p, sizeof(p), "%s.new", f->path);
	assert_int_equal(access(p, F_OK), -1);

	snprintf(p, sizeof(p), "%s/missing/journal", f->dir);
	err[0] = '\0';
	assert_null(journal_open(p, MIB, "vol", err, sizeof(err)));
	assert_non_null(strstr(err, "No such file"));

	/* Not a journal: a small file, then a big file of zeros. */
	write_at(f->path, 0, "hello", 5);
	assert_null(journal_open(f->path, MIB, "vol", err, sizeof(err)));
	assert_non_null(strstr(err, "not a journal"));
	assert_int_equal(truncate(f->path, 2 * MIB), 0);
	write_at(f->path, 0, "\0\0\0\0\0", 5);
	assert_null(journal_open(f->path, MIB, "vol", err, sizeof(err)));
	assert_non_null(strstr(err, "no valid header slot"));

	/* A size that is not a multiple of 4096 is rounded down. */
	unlink(f->path);
	struct journal *j = open_ok(f->path, MIB + 4095);
	assert_int_equal(journal_capacity(j), MIB - JOURNAL_HDR_AREA);
	journal_close(j);
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_size, MIB);
	/* The space is reserved, not sparse. */
	assert_true((uint64_t)st.st_blocks * 512 >= MIB);
}

/* Power loss: the newest record was written but never fdatasync'd. */
static void test_torn_tail_data(void **state)
{
	struct fixture *f = *state;
	char err[512] = "", log[4096];
	struct journal *j = open_ok(f->path, MIB);

	for (uint64_t t = 1; t <= 4; t++)
		append_sync(j, t, 3000);
	assert_int_equal(append_write(j, 5, 3000), 0);
	uint64_t off = ring_off(j, 5);
	crash_close(j);
	flip_byte(f->path, JOURNAL_HDR_AREA + off + JOURNAL_REC_HDR + 2999);

	j = open_logged(f, err, sizeof(err), log, sizeof(log));
	assert_non_null(j);
	assert_int_equal(journal_last_txid(j), 4);
	for (uint64_t t = 1; t <= 4; t++)
		check_write(j, t, 3000);
	char want[128];
	snprintf(want, sizeof(want), "dropped torn tail at ring offset %" PRIu64 " (TXID 5)", off);
	if (!strstr(log, want))
		fail_msg("log lacks \"%s\": %s", want, log);

	/* The slot is reused and the new TXID 5 is recovered. */
	append_sync(j, 5, 100);
	journal_close(j);
	j = open_ok(f->path, MIB);
	assert_int_equal(journal_last_txid(j), 5);
	check_write(j, 5, 100);
	journal_close(j);
}

static void test_torn_tail_header(void **state)
{
	struct fixture *f = *state;
	char err[512] = "", log[4096];
	struct journal *j = open_ok(f->path, MIB);

	for (uint64_t t = 1; t <= 4; t++)
		append_sync(j, t, 5000);
	assert_int_equal(append_write(j, 5, 5000), 0);
	uint64_t off = ring_off(j, 5);
	crash_close(j);
	flip_byte(f->path, JOURNAL_HDR_AREA + off + 40); /* inside the txid field */

	j = open_logged(f, err, sizeof(err), log, sizeof(log));
	assert_non_null(j);
	assert_int_equal(journal_last_txid(j), 4);
	for (uint64_t t = 1; t <= 4; t++)
		check_write(j, t, 5000);
	assert_non_null(strstr(log, "dropped torn tail"));
	journal_close(j);
}

/*
 * Appends TXIDs 1..5 (committed), closes cleanly, damages TXID bad at each of
 * several places, and expects journal_open to refuse naming it and why.
 */
static void check_corrupt_refused(struct fixture *f, uint64_t bad, const char *why)
{
	static const unsigned at[] = { JOURNAL_REC_HDR + 10, 8, 40, 0 };
	char err[512], want[128];

	for (size_t i = 0; i < ARRAY_SIZE(at); i++) {
		struct journal *j = open_ok(f->path, MIB);
		for (uint64_t t = 1; t <= 5; t++)
			append_sync(j, t, 2000);
		uint64_t off = ring_off(j, bad);
		journal_close(j);
		flip_byte(f->path, JOURNAL_HDR_AREA + off + at[i]);

		err[0] = '\0';
		assert_null(journal_open(f->path, MIB, "vol", err, sizeof(err)));
		assert_int_equal(errno, EBADMSG);
		snprintf(want, sizeof(want), "corrupt record TXID %" PRIu64 " at ring offset %" PRIu64,
			 bad, off);
		if (!strstr(err, want) || !strstr(err, why))
			fail_msg("byte %u: err lacks \"%s\" or \"%s\": %s", at[i], want, why, err);

		/*
		 * The master's salvage: the intact records before it stay for redo,
		 * and the floor is above every TXID that may have left (here the
		 * clean close's mark, 5).
		 */
		struct journal_damage d;
		j = journal_open_salvage(f->path, MIB, "vol", &d, err, sizeof(err));
		assert_non_null(j);
		assert_int_equal(d.txid, bad);
		assert_int_equal(d.floor, 5);
		assert_non_null(strstr(d.what, want));
		assert_int_equal(journal_last_txid(j), bad - 1);
		for (uint64_t t = 1; t < bad; t++)
			check_write(j, t, 2000);
		assert_int_equal(journal_reset(j, d.floor), 0);
		journal_close(j);
		j = open_ok(f->path, MIB);
		assert_int_equal(journal_last_txid(j), 5);
		append_sync(j, 6, 2000); /* new TXIDs continue above the floor */
		journal_close(j);
		assert_int_equal(unlink(f->path), 0);
	}
}

/* Committed records: a bad one followed by a valid one is corruption, never dropped. */
static void test_corrupt_middle(void **state)
{
	check_corrupt_refused(*state, 3, "after it was committed");
}

/*
 * The newest record damaged after a clean close: nothing follows it, but the
 * close's durable-through mark says it was committed (it may be on the
 * mirror), so it is never dropped and its TXID never reused.
 */
static void test_corrupt_newest_after_close(void **state)
{
	check_corrupt_refused(*state, 5, "committed through TXID 5");
}

/*
 * The same after a crash, for a record a free's mark covers: the mirror
 * acknowledged it, so it is on the mirror, even with no record after it.
 */
static void test_corrupt_newest_after_free(void **state)
{
	struct fixture *f = *state;
	char err[512] = "";
	struct journal *j = open_ok(f->path, MIB);

	for (uint64_t t = 1; t <= 6; t++)
		append_sync(j, t, 2000);
	assert_int_equal(journal_free_through(j, 2), 0);
	uint64_t off = ring_off(j, 6);
	crash_close(j);
	flip_byte(f->path, JOURNAL_HDR_AREA + off + JOURNAL_REC_HDR + 1);

	assert_null(journal_open(f->path, MIB, "vol", err, sizeof(err)));
	assert_int_equal(errno, EBADMSG);
	assert_non_null(strstr(err, "corrupt record TXID 6"));
	assert_non_null(strstr(err, "committed through TXID 6"));
}

/*
 * A header written before the mark existed has zeros there: it claims
 * nothing, so such a journal opens as it did, a bad newest record dropped.
 */
static void test_header_without_mark(void **state)
{
	struct fixture *f = *state;
	char err[512] = "", log[4096];
	struct journal *j = open_ok(f->path, MIB);

	for (uint64_t t = 1; t <= 3; t++)
		append_sync(j, t, 1000);
	uint64_t off = ring_off(j, 3);
	unsigned slot = j->hdr_slot;
	struct disk_slot s;
	slot_encode(&s, j->hdr_seq, j->ring, 0, 1, j->epoch, 0, 0);
	crash_close(j);
	write_at(f->path, slot * JOURNAL_SLOT_SIZE, &s, sizeof(s));
	flip_byte(f->path, JOURNAL_HDR_AREA + off + JOURNAL_REC_HDR + 1);

	j = open_logged(f, err, sizeof(err), log, sizeof(log));
	assert_non_null(j);
	assert_int_equal(journal_last_txid(j), 2);
	assert_non_null(strstr(log, "dropped torn tail"));
	journal_close(j);
}

/*
 * Records written after the last mark and torn by power loss never left the
 * host: they are dropped, and their TXIDs go to new records.
 */
static void test_torn_beyond_mark_reused(void **state)
{
	struct fixture *f = *state;
	struct journal *j = open_ok(f->path, MIB);

	for (uint64_t t = 1; t <= 3; t++)
		append_sync(j, t, 2000);
	assert_int_equal(journal_free_through(j, 1), 0); /* mark: TXID 3 */
	for (uint64_t t = 4; t <= 5; t++)
		assert_int_equal(append_write(j, t, 2000), 0);
	uint64_t off = ring_off(j, 4);
	crash_close(j);
	flip_byte(f->path, JOURNAL_HDR_AREA + off + JOURNAL_REC_HDR + 1);

	j = open_ok(f->path, MIB);
	assert_int_equal(journal_first_txid(j), 2);
	assert_int_equal(journal_last_txid(j), 3);
	append_sync(j, 4, 300);
	journal_close(j);
	j = open_ok(f->path, MIB);
	assert_int_equal(journal_last_txid(j), 4);
	check_write(j, 4, 300);
	journal_close(j);
}

/*
 * Power loss reorders unsynced writes: a bad record followed by an intact one
 * appended in the same unsynced batch is a torn tail, not corruption.
 */
static void test_unsynced_batch_is_torn(void **state)
{
	struct fixture *f = *state;
	struct journal *j = open_ok(f->path, MIB);

	append_sync(j, 1, 100);
	append_sync(j, 2, 100);
	for (uint64_t t = 3; t <= 5; t++)
		assert_int_equal(append_write(j, t, 100), 0);
	uint64_t off = ring_off(j, 3);
	crash_close(j);
	flip_byte(f->path, JOURNAL_HDR_AREA + off + JOURNAL_REC_HDR + 1);

	j = open_ok(f->path, MIB);
	assert_int_equal(journal_last_txid(j), 2);
	check_write(j, 1, 100);
	check_write(j, 2, 100);

	/* New TXIDs 3.. are written over; the stale 4 and 5 never come back. */
	append_sync(j, 3, 50);
	crash_close(j);
	j = open_ok(f->path, MIB);
	assert_int_equal(journal_last_txid(j), 3);
	check_write(j, 3, 50);
	journal_close(j);
}

/*
 * After a torn tail is dropped, intact records of the dropped batch stay on
 * disk. Records chain by header CRC, so a stale copy is never taken for a
 * newer record with the same TXID.
 */
static void test_stale_copy_not_resurrected(void **state)
{
	struct fixture *f = *state;
	struct journal *j = open_ok(f->path, MIB);
	const uint32_t len = 100000;

	for (uint64_t t = 1; t <= 9; t++)
		append_sync(j, t, len);
	assert_int_equal(journal_free_through(j, 2), 0);
	/* 10 fits before the ring end, 11 wraps to offset 0; neither synced. */
	assert_int_equal(append_write(j, 10, len), 0);
	assert_int_equal(append_write(j, 11, len), 0);
	assert_int_equal(ring_off(j, 11), 0);
	uint64_t off10 = ring_off(j, 10);
	crash_close(j);
	flip_byte(f->path, JOURNAL_HDR_AREA + off10 + JOURNAL_REC_HDR + 5);

	j = open_ok(f->path, MIB);
	assert_int_equal(journal_last_txid(j), 9);
	/* New, smaller 10 at the same place; the new 11 after it is torn. */
	append_sync(j, 10, 1000);
	assert_int_equal(ring_off(j, 10), off10);
	assert_int_equal(append_write(j, 11, 1000), 0);
	uint64_t off11 = ring_off(j, 11);
	assert_int_not_equal(off11, 0);
	crash_close(j);
	flip_byte(f->path, JOURNAL_HDR_AREA + off11 + JOURNAL_REC_HDR + 5);

	j = open_ok(f->path, MIB);
	/* The old 11 at offset 0 is intact but chained to the old 10. */
	assert_int_equal(journal_last_txid(j), 10);
	check_write(j, 10, 1000);
	journal_close(j);
}

/* Many laps around the ring, reopening on the way; every held record reads back. */
static void test_wrap_many_laps(void **state)
{
	struct fixture *f = *state;
	struct journal *j = open_ok(f->path, MIB);
	uint64_t t = 1, freed = 0, bytes = 0;

	while (bytes < 8ull * journal_capacity(j)) {
		uint32_t len = wrap_len(t);
		if (append_write(j, t, len) == 0) {
			bytes += rec_size(len);
			t++;
			continue;
		}
		assert_int_equal(errno, ENOSPC);
		assert_true(journal_first_txid(j) <= journal_last_txid(j));
		assert_true(journal_used(j) <= journal_capacity(j));
		/* Free the older half, sometimes after a crash and recovery. */
		uint64_t first = journal_first_txid(j), last = journal_last_txid(j);
		assert_int_equal(journal_free_through(j, first + (last - first) / 2), 0);
		freed = first + (last - first) / 2;
		if (t % 3 == 0) {
			assert_int_equal(journal_sync(j), 0);
			crash_close(j);
			j = open_ok(f->path, MIB);
			/* A free is durable at once; every held record comes back. */
			assert_int_equal(journal_first_txid(j), freed + 1);
			assert_int_equal(journal_last_txid(j), t - 1);
			for (uint64_t x = journal_first_txid(j); x <= journal_last_txid(j); x++)
				check_write(j, x, wrap_len(x));
			assert_int_equal(journal_free_through(j, freed), 0);
		}
		assert_int_equal(journal_first_txid(j), freed + 1);
	}
	assert_int_equal(journal_sync(j), 0);
	journal_close(j);
	j = open_ok(f->path, MIB);
	/* A clean close persisted the tail: nothing freed comes back. */
	assert_int_equal(journal_first_txid(j), freed + 1);
	assert_int_equal(journal_last_txid(j), t - 1);
	for (uint64_t x = freed + 1; x < t; x++)
		check_write(j, x, wrap_len(x));
	journal_close(j);
}

/*
 * Random appends, syncs, frees and crashes (some tearing the first unsynced
 * record): recovery never fails, keeps every synced record and drops exactly
 * the torn record and what follows it.
 */
static void test_random_crashes(void **state)
{
	struct fixture *f = *state;
	struct journal *j = open_ok(f->path, MIB);
	uint64_t t = 1, synced = 0, freed = 0, seed = 12345;
	static uint32_t lens[4096]; /* length of each TXID as last appended */

	for (int step = 0; step < 4000; step++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		unsigned r = (unsigned)(seed >> 33);
		switch (r % 10) {
		case 0:
		case 1:
		case 2:
		case 3:
			assert_true(t < ARRAY_SIZE(lens));
			lens[t] = wrap_len(t) / (1 + r % 4);
			if (append_write(j, t, lens[t]) == 0) {
				t++;
				break;
			}
			assert_int_equal(errno, ENOSPC);
			/* fall through: make room */
		case 4:
			if (journal_last_txid(j) >= journal_first_txid(j)) {
				uint64_t first = journal_first_txid(j), last = journal_last_txid(j);
				freed = first + (r >> 8) % (last - first + 1);
				assert_int_equal(journal_free_through(j, freed), 0);
			}
			break;
		case 5:
		case 6:
			assert_int_equal(journal_sync(j), 0);
			synced = t - 1;
			break;
		default: {
			uint64_t expect = t - 1;
			if (synced < t - 1 && synced + 1 >= journal_first_txid(j) && r % 2) {
				/* Power loss tore the first unsynced record. */
				uint64_t bad = synced + 1, off = ring_off(j, bad);
				flip_byte(f->path, JOURNAL_HDR_AREA + off +
						   (lens[bad] && r % 4 == 1 ? JOURNAL_REC_HDR : 40));
				expect = synced;
			}
			crash_close(j);
			j = open_ok(f->path, MIB);
			assert_int_equal(journal_last_txid(j), expect);
			assert_true(journal_first_txid(j) <= freed + 1);
			for (uint64_t x = journal_first_txid(j); x <= expect; x++)
				check_write(j, x, lens[x]);
			t = expect + 1;
			synced = expect;
			if (freed > expect)
				freed = expect;
			if (freed >= journal_first_txid(j))
				assert_int_equal(journal_free_through(j, freed), 0);
			break;
		}
		}
	}
	journal_close(j);
}

static void test_enospc_then_free(void **state)
{
	struct fixture *f = *state;
	struct journal *j = open_ok(f->path, MIB);
	uint64_t t = 1;

	while (append_write(j, t, 10000) == 0)
		t++;
	assert_int_equal(errno, ENOSPC);
	assert_int_equal(journal_last_txid(j), t - 1);
	uint64_t used = journal_used(j);
	assert_true(used <= journal_capacity(j));
	assert_true(journal_capacity(j) - used < rec_size(10000) + rec_size(10000));
	/* Nothing was written by the refused append. */
	assert_int_equal(journal_sync(j), 0);
	crash_close(j);
	j = open_ok(f->path, MIB);
	assert_int_equal(journal_last_txid(j), t - 1);

	assert_int_equal(journal_free_through(j, 3), 0);
	assert_int_equal(journal_first_txid(j), 4);
	append_sync(j, t, 10000);
	append_sync(j, t + 1, 10000);
	/* Freeing past the last TXID is a caller bug. */
	assert_int_equal(journal_free_through(j, t + 2), -1);
	assert_int_equal(errno, EINVAL);
	/* Freeing everything lets a maximal record in, wherever the head is. */
	assert_int_equal(journal_free_through(j, t + 1), 0);
	assert_int_equal(journal_used(j), 0);
	append_sync(j, t + 2, (uint32_t)journal_max_record_data(j));
	assert_int_equal(journal_used(j), journal_capacity(j));
	journal_close(j);
	j = open_ok(f->path, MIB);
	assert_int_equal(journal_first_txid(j), t + 2);
	check_write(j, t + 2, (uint32_t)journal_max_record_data(j));
	journal_close(j);
}

/*
 * The header tail is persisted before freed space is reused: otherwise a
 * crash would leave recovery starting at a record overwritten by a newer one.
 * A free persists it at once; this is the fallback when that write failed.
 */
static void test_free_persisted_before_reuse(void **state)
{
	struct fixture *f = *state;
	struct journal *j = open_ok(f->path, MIB);
	const uint32_t len = 100000;

	for (uint64_t t = 1; t <= 10; t++)
		append_sync(j, t, len);
	assert_int_equal(journal_free_through(j, 1), 0);
	assert_int_equal(j->ptail_txid, 2);
	assert_int_equal(j->pdurable, 10);
	/* As if the free's header write had failed: the header still says TXID 1. */
	j->ptail_lpos = 0;
	j->ptail_txid = 1;

	/* TXID 11 wraps to ring offset 0, over TXID 1. */
	append_sync(j, 11, len);
	assert_int_equal(ring_off(j, 11), 0);
	assert_int_equal(j->ptail_txid, 2);
	crash_close(j);

	j = open_ok(f->path, MIB);
	assert_int_equal(journal_first_txid(j), 2);
	assert_int_equal(journal_last_txid(j), 11);
	for (uint64_t t = 2; t <= 11; t++)
		check_write(j, t, len);
	journal_close(j);
}

static void test_header_slots(void **state)
{
	struct fixture *f = *state;
	char err[512], log[4096];
	struct journal *j = open_ok(f->path, MIB);

	for (uint64_t t = 1; t <= 3; t++)
		append_sync(j, t, 1000);
	assert_int_equal(journal_free_through(j, 3), 0);
	journal_close(j); /* the free persisted tail TXID 4 into slot 1, seq 2 */

	j = open_ok(f->path, MIB);
	assert_int_equal(j->hdr_slot, 1);
	assert_int_equal(j->hdr_seq, 2);
	assert_int_equal(journal_first_txid(j), 4);
	journal_close(j);

	/* Slot 1 torn: slot 0 (tail TXID 1) is used; the records there are intact. */
	flip_byte(f->path, JOURNAL_SLOT_SIZE + 30);
	j = open_logged(f, err, sizeof(err), log, sizeof(log));
	assert_non_null(j);
	assert_non_null(strstr(log, "header slot 1 invalid (checksum mismatch), using slot 0"));
	assert_int_equal(j->hdr_slot, 0);
	assert_int_equal(journal_first_txid(j), 1);
	assert_int_equal(journal_last_txid(j), 3);
	check_write(j, 2, 1000);
	/* The next header write (the free's) goes to the bad slot, with a higher seq. */
	assert_int_equal(journal_free_through(j, 3), 0);
	assert_int_equal(j->hdr_slot, 1);
	assert_int_equal(j->hdr_seq, 2);
	journal_close(j);
	j = open_ok(f->path, MIB);
	assert_int_equal(journal_first_txid(j), 4);
	journal_close(j);

	/* Both bad: refused. */
	flip_byte(f->path, 30);
	flip_byte(f->path, JOURNAL_SLOT_SIZE + 30);
	err[0] = '\0';
	assert_null(journal_open(f->path, MIB, "vol", err, sizeof(err)));
	assert_non_null(strstr(err, "no valid header slot"));
}

/* A valid CRC does not make a header trusted: every field is range-checked. */
static void test_header_fields_checked(void **state)
{
	struct fixture *f = *state;
	struct {
		uint64_t ring, tail_off, tail_txid, durable;
		const char *why;
	} cases[] = {
		{ MIB - JOURNAL_HDR_AREA + 4096, 0, 1, 0, "ring size does not fit" },
		{ UINT64_MAX & ~4095ull, 0, 1, 0, "ring size does not fit" },
		{ 4096, 0, 1, 0, "ring size does not fit" },
		{ MIB - JOURNAL_HDR_AREA, MIB - JOURNAL_HDR_AREA, 1, 0, "tail offset outside" },
		{ MIB - JOURNAL_HDR_AREA, 100, 1, 0, "tail offset outside" },
		{ MIB - JOURNAL_HDR_AREA, 0, 0, 0, "tail TXID out of range" },
		{ MIB - JOURNAL_HDR_AREA, 0, UINT64_MAX, 0, "tail TXID out of range" },
		{ MIB - JOURNAL_HDR_AREA, 0, 1, JOURNAL_MAX_TXID, "durable-through TXID out of range" },
		{ MIB - JOURNAL_HDR_AREA, 0, 1, UINT64_MAX, "durable-through TXID out of range" },
	};
	char err[512];

	journal_close(open_ok(f->path, MIB));
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct disk_slot s;
		slot_encode(&s, 1, cases[i].ring, cases[i].tail_off, cases[i].tail_txid, 1, 0,
			    cases[i].durable);
		write_at(f->path, 0, &s, sizeof(s));
		err[0] = '\0';
		assert_null(journal_open(f->path, MIB, "vol", err, sizeof(err)));
		if (!strstr(err, cases[i].why))
			fail_msg("case %zu: err lacks \"%s\": %s", i, cases[i].why, err);
	}
}

/* Length boundaries on append, and on a record header found on disk. */
static void test_length_boundaries(void **state)
{
	struct fixture *f = *state;
	struct journal *j = open_ok(f->path, MIB);
	const uint64_t max = journal_max_record_data(j);
	const struct {
		uint64_t len;
		bool ok;
	} table[] = {
		{ 0, true },	      { 1, true },	     { max - 1, true },
		{ max, true },	      { max + 1, false },    { 0x7fffffff, false },
		{ 0x80000000, false }, { 0xffffffff, false }, { UINT64_MAX, false },
	};
	unsigned char *buf = malloc(max + 1);
	uint64_t t = 1;

	assert_non_null(buf);
	for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
		uint64_t len = table[i].len;
		size_t n = len <= max ? (size_t)len : 0;
		pattern(buf, n, t);
		struct journal_rec r = { .txid = t, .op = JOP_WRITE, .length = len,
					 .data_crc = frep_crc32c(buf, n) };
		int rc = journal_append(j, &r, buf);
		if (!table[i].ok) {
			assert_int_equal(rc, -1);
			assert_int_equal(errno, EINVAL);
			assert_int_equal(journal_last_txid(j), t - 1);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_int_equal(journal_sync(j), 0);
		struct journal_rec got;
		memset(buf, 0, n);
		assert_int_equal(journal_read(j, t, &got, buf, max + 1), 0);
		assert_int_equal(got.length, len);
		assert_int_equal(frep_crc32c(buf, n), r.data_crc);
		assert_int_equal(journal_free_through(j, t), 0);
		t++;
	}
	/* Offset + length must not wrap, with or without data. */
	struct journal_rec trim = { .txid = t, .op = JOP_TRIM, .offset = UINT64_MAX - 10,
				    .length = 11 };
	assert_int_equal(journal_append(j, &trim, NULL), -1);
	assert_int_equal(errno, EINVAL);
	trim.length = 10;
	assert_int_equal(journal_append(j, &trim, NULL), 0);
	t++;
	/* A WRITE with data but no buffer. */
	struct journal_rec nodata = { .txid = t, .op = JOP_WRITE, .length = 1 };
	assert_int_equal(journal_append(j, &nodata, NULL), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(journal_sync(j), 0);

	/*
	 * Headers on disk with a valid CRC but an impossible data_len right after
	 * the last record: recovery treats them as the end, never allocates.
	 */
	static const uint32_t bad_len[] = { 0x7fffffff, 0x80000000, 0xffffffff };
	uint64_t at = j->head_lpos % j->ring, last = journal_last_txid(j);
	for (size_t i = 0; i < ARRAY_SIZE(bad_len); i++) {
		struct journal_rec r = { .txid = last + 1, .op = JOP_WRITE, .length = bad_len[i] };
		struct disk_rec d;
		rec_encode(j, &r, 0, &d);
		d.data_len = htole32(bad_len[i]);
		d.hdr_crc = htole32(frep_crc32c((const char *)&d + 8, JOURNAL_REC_HDR - 8));
		write_at(f->path, JOURNAL_HDR_AREA + at, &d, sizeof(d));
		struct journal *j2 = open_ok(f->path, MIB);
		assert_int_equal(journal_last_txid(j2), last);
		crash_close(j2);
	}
	free(buf);
	journal_close(j);
}

static void test_reset(void **state)
{
	struct fixture *f = *state;
	struct journal *j = open_ok(f->path, MIB);

	for (uint64_t t = 1; t <= 5; t++)
		append_sync(j, t, 700);
	assert_int_equal(journal_reset(j, 100), 0);
	assert_int_equal(journal_first_txid(j), 101);
	assert_int_equal(journal_last_txid(j), 100);
	assert_int_equal(journal_used(j), 0);
	assert_int_equal(append_write(j, 6, 700), -1);
	assert_int_equal(errno, EINVAL);
	append_sync(j, 101, 700);
	crash_close(j);
	j = open_ok(f->path, MIB);
	assert_int_equal(journal_first_txid(j), 101);
	assert_int_equal(journal_last_txid(j), 101);
	check_write(j, 101, 700);

	/* Back to a lower base: old records with the next TXIDs are stale (older epoch). */
	assert_int_equal(journal_reset(j, 2), 0);
	crash_close(j);
	j = open_ok(f->path, MIB);
	assert_int_equal(journal_first_txid(j), 3);
	assert_int_equal(journal_last_txid(j), 2);
	append_sync(j, 3, 10);
	crash_close(j);
	j = open_ok(f->path, MIB);
	assert_int_equal(journal_last_txid(j), 3);
	check_write(j, 3, 10);

	assert_int_equal(journal_reset(j, JOURNAL_MAX_TXID), -1);
	assert_int_equal(errno, EINVAL);
	journal_close(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip_and_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_middle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_newest_after_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_newest_after_free, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_without_mark, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_beyond_mark_reused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsynced_batch_is_torn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_copy_not_resurrected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrap_many_laps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_crashes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enospc_then_free, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_persisted_before_reuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_slots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_fields_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_length_boundaries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
	};
	log_init("test-journal", LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
