/* Unit tests of the master's concurrent transaction path: group commit, TXID order where writes overlap, cracks under load. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "journal.h"
#include "log.h"
#include "master.h"
#include "tmpdir.h"
#include "util.h"

enum {
	VOL_SIZE = 16 << 20,
	WRITERS = 16,
	WRITES_EACH = 150,
	HOT_RANGE = 64 << 10, /* one write in three lands here: overlaps are the rule */
};

struct writer {
	struct master *m;
	unsigned id;
	unsigned len_max; /* bytes, multiple of 4096 */
	int errors;
};

static uint32_t next_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint32_t seed = 0x9e3779b9u * (w->id + 1);
	unsigned char *buf = malloc(w->len_max);

	for (unsigned i = 0; i < WRITES_EACH; i++) {
		uint32_t len = 4096 * (1 + next_rand(&seed) % (w->len_max / 4096));
		uint64_t span = i % 3 == 0 ? HOT_RANGE : VOL_SIZE;
		if (len > span)
			len = (uint32_t)span;
		uint64_t off = 4096 * (uint64_t)(next_rand(&seed) % ((span - len) / 4096 + 1));
		/* Every byte says who wrote it and when: any reordering shows. */
		for (uint32_t b = 0; b < len; b += 4)
			memcpy(buf + b, &(uint32_t){ (w->id << 24) | (i << 8) | (b >> 12 & 0xff) }, 4);
		unsigned op = i % 17 == 5 ? JOP_ZERO : i % 19 == 7 ? JOP_TRIM : JOP_WRITE;
		if (master_submit(w->m, op, off, len, op == JOP_WRITE ? buf : NULL) != 0)
			w->errors++;
	}
	free(buf);
	return NULL;
}

static void run_writers(struct master *m, unsigned len_max)
{
	pthread_t t[WRITERS];
	struct writer w[WRITERS];
	for (unsigned i = 0; i < WRITERS; i++) {
		w[i] = (struct writer){ .m = m, .id = i, .len_max = len_max };
		assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
	}
	for (unsigned i = 0; i < WRITERS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].errors, 0);
	}
}

static void open_master(struct fixture *f, struct master *m, uint64_t journal_size,
			char *vol_path, char *journal_path)
{
	char err[512];
	int exit_code;
	snprintf(vol_path, 160, "%s/vol", f->dir);
	snprintf(journal_path, 160, "%s/journal", f->dir);
	int fd = open(vol_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, VOL_SIZE), 0);
	close(fd);
	char *paths[] = { vol_path };
	struct master_options o = {
		.name = "vol",
		.paths = paths,
		.n_paths = 1,
		.journal_path = journal_path,
		.journal_size = journal_size,
		.lock_fd = -1,
	};
	int rc = master_open(m, &o, err, sizeof(err), &exit_code);
	if (rc < 0)
		fail_msg("master_open: %s", err);
}

/* Rebuilds the image by replaying the journal in TXID order into zeros. */
static unsigned char *replay_journal(struct master *m)
{
	unsigned char *img = calloc(1, VOL_SIZE);
	unsigned char *buf = malloc(m->max_payload);
	assert_non_null(img);
	for (uint64_t t = journal_first_txid(m->j); t <= journal_last_txid(m->j); t++) {
		struct journal_rec r;
		assert_int_equal(journal_read(m->j, t, &r, buf, m->max_payload), 0);
		if (r.op == JOP_WRITE)
			memcpy(img + r.offset, buf, r.length);
		else
			memset(img + r.offset, 0, r.length);
	}
	free(buf);
	return img;
}

/*
 * Sixteen writers with overlapping ranges: every write is committed and
 * applied, the volume equals the journal replayed in TXID order (overlaps
 * were applied in TXID order), and concurrent writers shared fdatasyncs.
 */
static void concurrent_writes_share_syncs_and_keep_txid_order(void **state)
{
	struct fixture *f = *state;
	struct master m;
	char vol_path[160], journal_path[160];

	open_master(f, &m, 64 << 20, vol_path, journal_path);
	run_writers(&m, 16 << 10);

	uint64_t n = (uint64_t)WRITERS * WRITES_EACH;
	assert_int_equal(m.journal_appends, n);
	assert_int_equal(m.committed_txid, n);
	assert_int_equal(m.applied_txid, n);
	assert_int_equal(journal_first_txid(m.j), 1); /* nothing freed: the mirror acked nothing */
	assert_int_equal(m.cracks, 0);
	print_message("%" PRIu64 " writes, %" PRIu64 " journal fdatasyncs\n", n, m.journal_syncs);
	assert_true(m.journal_syncs <= n / 4);

	unsigned char *want = replay_journal(&m);
	unsigned char *got = malloc(VOL_SIZE);
	assert_int_equal(volume_pread(&m.vol, got, VOL_SIZE, 0), 0);
	assert_memory_equal(got, want, VOL_SIZE);
	free(want);
	free(got);
	master_close(&m);
}

/*
 * A 1 MiB journal that no mirror drains: writers crack it again and again
 * while others are in flight. No write fails, every write's region is either
 * still in the journal or dirty in the bitmap, and the journal holds only
 * what came after the last crack.
 */
static void cracks_under_concurrent_load(void **state)
{
	struct fixture *f = *state;
	struct master m;
	char vol_path[160], journal_path[160];

	open_master(f, &m, 1 << 20, vol_path, journal_path);
	log_init("test-master", LOG_ERROR); /* each crack is a warning */
	run_writers(&m, 32 << 10);
	uint64_t n = (uint64_t)WRITERS * WRITES_EACH;
	assert_int_equal(m.journal_appends, n);
	assert_int_equal(m.applied_txid, n);
	assert_true(m.cracks > 0);
	assert_true(journal_first_txid(m.j) > 1);
	/* Everything the journal dropped is dirty: a region not dirty must not have been written. */
	assert_true(bitmap_dirty_regions(m.bm) > 0);
	for (uint64_t off = 0; off < VOL_SIZE; off += bitmap_region_size(m.bm)) {
		uint64_t a, b;
		if (bitmap_next_dirty(m.bm, off, &a, &b) == 1 && a == off)
			continue;
		/* Clean region: it holds zeros unless a record still in the journal wrote it. */
		unsigned char blk[4096];
		bool in_journal = false;
		for (uint64_t t = journal_first_txid(m.j); t <= journal_last_txid(m.j); t++) {
			struct journal_loc l;
			assert_int_equal(journal_locate(m.j, t, &l), 0);
			if (l.offset < off + bitmap_region_size(m.bm) && off < l.offset + l.length)
				in_journal = true;
		}
		if (in_journal)
			continue;
		for (uint32_t b2 = 0; b2 < bitmap_region_size(m.bm); b2 += sizeof(blk)) {
			assert_int_equal(volume_pread(&m.vol, blk, sizeof(blk), off + b2), 0);
			for (size_t i = 0; i < sizeof(blk); i++)
				if (blk[i])
					fail_msg("region at %" PRIu64 " was written, but is neither dirty nor journaled", off);
		}
	}
	master_close(&m);
}

/*
 * The send cache: a fresh write is sent from memory; once released it is not;
 * when the sender lags by more than the cache holds, later writes are not
 * cached (the writer never waits) while earlier ones still are.
 */
static void send_cache_serves_fresh_writes(void **state)
{
	struct fixture *f = *state;
	struct master m;
	char vol_path[160], journal_path[160];
	static unsigned char data[256 << 10];
	struct journal_rec r;
	const void *p;

	open_master(f, &m, 64 << 20, vol_path, journal_path);
	memset(data, 0xa5, sizeof(data));
	assert_int_equal(master_submit(&m, JOP_WRITE, 8192, 4096, data), 0);
	assert_int_equal(master_submit(&m, JOP_TRIM, 0, 4096, NULL), 0);
	pthread_mutex_lock(&m.lock);
	assert_true(master_cached_locked(&m, 1, &r, &p));
	assert_int_equal(r.offset, 8192);
	assert_int_equal(r.length, 4096);
	assert_int_equal(r.data_crc, frep_crc32c(data, 4096));
	assert_memory_equal(p, data, 4096);
	assert_true(master_cached_locked(&m, 2, &r, &p));
	assert_int_equal(r.op, JOP_TRIM);
	assert_null(p);
	master_release_cached_locked(&m, 2);
	assert_false(master_cached_locked(&m, 1, &r, &p));
	assert_false(master_cached_locked(&m, 2, &r, &p));
	pthread_mutex_unlock(&m.lock);

	/* Nothing sent: the cache fills, and then writes go on uncached. */
	unsigned n = SEND_CACHE_BYTES / sizeof(data) + 4;
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(master_submit(&m, JOP_WRITE, (uint64_t)i * sizeof(data), sizeof(data), data), 0);
	pthread_mutex_lock(&m.lock);
	assert_true(master_cached_locked(&m, 3, &r, &p));
	assert_memory_equal(p, data, sizeof(data));
	assert_false(master_cached_locked(&m, 2 + n, &r, &p));
	/* Released: room again. */
	master_release_cached_locked(&m, 2 + SEND_CACHE_BYTES / sizeof(data));
	pthread_mutex_unlock(&m.lock);
	assert_int_equal(master_submit(&m, JOP_WRITE, 0, 4096, data), 0);
	pthread_mutex_lock(&m.lock);
	assert_true(master_cached_locked(&m, 3 + n, &r, &p));
	pthread_mutex_unlock(&m.lock);
	master_close(&m);
}

/*
 * A full journal whose records the mirror acknowledged frees them (after a
 * volume fdatasync) instead of cracking: no crack, nothing dirty.
 */
static void full_journal_frees_acknowledged_records_before_cracking(void **state)
{
	struct fixture *f = *state;
	struct master m;
	char vol_path[160], journal_path[160];
	static unsigned char data[64 << 10];

	open_master(f, &m, 1 << 20, vol_path, journal_path);
	memset(data, 0x5a, sizeof(data));
	for (unsigned i = 0; i < 200; i++) {
		assert_int_equal(master_submit(&m, JOP_WRITE, (uint64_t)(i % 64) * sizeof(data),
					       sizeof(data), data), 0);
		/* The mirror acknowledges everything at once, as TX_ACK would. */
		pthread_mutex_lock(&m.lock);
		m.acked_txid = m.committed_txid;
		pthread_mutex_unlock(&m.lock);
	}
	assert_int_equal(m.cracks, 0);
	assert_int_equal(bitmap_dirty_regions(m.bm), 0);
	assert_true(journal_first_txid(m.j) > 1); /* it did fill, and was freed */
	master_close(&m);
}

static int setup(void **state)
{
	log_init("test-master", LOG_WARN);
	return tmpdir_setup(state, "master", "unused");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(concurrent_writes_share_syncs_and_keep_txid_order, setup,
						tmpdir_teardown),
		cmocka_unit_test_setup_teardown(cracks_under_concurrent_load, setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(send_cache_serves_fresh_writes, setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(full_journal_frees_acknowledged_records_before_cracking,
						setup, tmpdir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
