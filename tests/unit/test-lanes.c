/* Unit tests of the mirror's lanes (server/lanes.c): record order, the low-water mark, passes, COPY_DONE's counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "../../server/lanes.h"
#include "../../server/session.h"
#include "../../server/store.h"
#include "tmpdir.h"
#include "util.h"
#include "wire.h"

enum { VOL = 64 << 10, BLK = 4096, LANES = 3 };

struct t {
	struct fixture *f;
	struct mirror_server srv;
	struct mirror_volume mv;
	struct mlanes *ls;
	uint8_t data[VOL];
};

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	tmpdir_setup((void **)&t->f, "lanes", "extent.0");
	int fd = open(t->f->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, VOL), 0);
	close(fd);
	char err[256], *paths[1] = { t->f->path };
	assert_int_equal(volume_open(&t->mv.vol, "vol", paths, 1, err, sizeof(err)), 0);
	t->mv.vol_open = true;
	for (unsigned i = 0; i < VOL; i++)
		t->data[i] = (uint8_t)(i * 7 + i / BLK);

	uint8_t sid[FREP_SESSION_ID_SIZE] = { 1 }, uuid[FREP_UUID_SIZE] = { 2 };
	Frep__V1__Hello h = FREP__V1__HELLO__INIT;
	h.volume = "vol";
	h.session_id = (ProtobufCBinaryData){ sizeof(sid), sid };
	h.volume_uuid = (ProtobufCBinaryData){ sizeof(uuid), uuid };
	h.generation = 1;
	Frep__V1__Welcome w = FREP__V1__WELCOME__INIT;
	w.proto_version = 2;
	w.has_lanes = w.has_compression = true;
	w.lanes = LANES;
	t->ls = mlanes_new(&t->srv, &h, "master-1", &w);
	assert_non_null(t->ls);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	mlanes_end(t->ls);
	volume_close(&t->mv.vol);
	tmpdir_teardown((void **)&t->f);
	free(t);
	return 0;
}

/* A record of `pass`, seq, block `blk` (data, or a hole), from `lane`; rc, *code. */
static int rec(struct t *t, unsigned lane, uint64_t pass, uint64_t seq, unsigned blk, bool data,
	       uint64_t wait_ms, uint32_t *code)
{
	char why[512];
	struct mlanes_rec r = {
		.type = data ? FREP_MSG_COPY_DATA : FREP_MSG_COPY_HOLE,
		.numbered = true,
		.pass = pass,
		.seq = seq,
		.off = (uint64_t)blk * BLK,
		.len = BLK,
		.data = data ? t->data + (size_t)blk * BLK : NULL,
		.crc = data ? frep_crc32c(t->data + (size_t)blk * BLK, BLK) : 0,
	};
	*code = 12345;
	return mlanes_record(t->ls, lane, &r, wait_ms, code, why, sizeof(why));
}

static uint64_t through(struct t *t, uint64_t *unsynced)
{
	uint64_t u;
	uint64_t end = mlanes_through(t->ls, unsynced ? unsynced : &u);
	return end;
}

static void open_pass(struct t *t, uint64_t pass, uint64_t start)
{
	mlanes_pass_begin(t->ls, pass);
	mlanes_pass_open(t->ls, &t->mv, start);
}

/* LANE-8: records written out of order move the mark only over a run from seq 1. */
static void test_mark_is_contiguous(void **state)
{
	struct t *t = *state;
	uint32_t code;
	uint64_t unsynced;
	open_pass(t, 1, 0);
	assert_int_equal(rec(t, 1, 1, 2, 1, true, 0, &code), 0);
	assert_int_equal(rec(t, 2, 1, 4, 3, true, 0, &code), 0);
	assert_int_equal(through(t, &unsynced), 0); /* seq 1 is missing */
	assert_int_equal(unsynced, 2 * BLK);
	assert_int_equal(rec(t, 2, 1, 1, 0, true, 0, &code), 0);
	assert_int_equal(through(t, NULL), 2 * BLK); /* 1, 2; 3 missing */
	assert_int_equal(rec(t, 1, 1, 3, 2, false, 0, &code), 0);
	assert_int_equal(through(t, &unsynced), 4 * BLK);
	assert_int_equal(unsynced, 3 * BLK); /* holes write no data */
	mlanes_synced(t->ls, unsynced);
	through(t, &unsynced);
	assert_int_equal(unsynced, 0);
	/* The data landed at home; the hole reads zeroes. */
	uint8_t buf[4 * BLK], zero[BLK] = { 0 };
	assert_int_equal(volume_pread(&t->mv.vol, buf, sizeof(buf), 0), 0);
	assert_memory_equal(buf, t->data, 2 * BLK);
	assert_memory_equal(buf + 2 * BLK, zero, BLK);
	assert_memory_equal(buf + 3 * BLK, t->data + 3 * BLK, BLK);
}

/* A resumed pass's mark starts at its start_offset. */
static void test_mark_starts_at_resume(void **state)
{
	struct t *t = *state;
	uint32_t code;
	open_pass(t, 1, 8 * BLK);
	assert_int_equal(through(t, NULL), 8 * BLK);
	assert_int_equal(rec(t, 1, 1, 1, 8, true, 0, &code), 0);
	assert_int_equal(through(t, NULL), 9 * BLK);
}

/* LANE-6, COPY-7: numbering, duplicates, range, CRC. */
static void test_bad_records(void **state)
{
	struct t *t = *state;
	uint32_t code;
	char why[512];
	open_pass(t, 1, 0);
	struct mlanes_rec r = { .type = FREP_MSG_COPY_HOLE, .off = 0, .len = BLK };
	assert_int_equal(mlanes_record(t->ls, 1, &r, 0, &code, why, sizeof(why)), -1);
	assert_int_equal(code, FREP_E_PROTOCOL);
	assert_non_null(strstr(why, "without its pass and seq"));
	r.numbered = true;
	r.pass = 1; /* seq 0 */
	assert_int_equal(mlanes_record(t->ls, 1, &r, 0, &code, why, sizeof(why)), -1);
	assert_int_equal(code, FREP_E_PROTOCOL);

	assert_int_equal(rec(t, 1, 1, 1, 0, true, 0, &code), 0);
	assert_int_equal(rec(t, 2, 1, 1, 0, true, 0, &code), -1); /* below the mark */
	assert_int_equal(code, FREP_E_PROTOCOL);
	assert_int_equal(rec(t, 2, 1, 3, 2, true, 0, &code), 0);
	assert_int_equal(rec(t, 1, 1, 3, 2, true, 0, &code), -1); /* claimed already */
	assert_int_equal(code, FREP_E_PROTOCOL);

	r.seq = 4;
	r.off = VOL - BLK;
	r.len = 2 * BLK;
	assert_int_equal(mlanes_record(t->ls, 1, &r, 0, &code, why, sizeof(why)), -1);
	assert_int_equal(code, FREP_E_RANGE);
	struct mlanes_rec d = { .type = FREP_MSG_COPY_DATA, .numbered = true, .pass = 1, .seq = 5,
				.off = 0, .len = BLK, .data = t->data, .crc = 1 };
	assert_int_equal(mlanes_record(t->ls, 2, &d, 0, &code, why, sizeof(why)), -1);
	assert_int_equal(code, FREP_E_CHECKSUM);
}

/* LANE-7: COPY_DONE's counts against what each lane delivered. */
static void test_done_counts(void **state)
{
	struct t *t = *state;
	uint32_t code;
	char why[512];
	open_pass(t, 1, 0);
	assert_int_equal(rec(t, 1, 1, 1, 0, true, 0, &code), 0);
	assert_int_equal(rec(t, 2, 1, 2, 1, true, 0, &code), 0);
	assert_int_equal(rec(t, 1, 1, 3, 2, false, 0, &code), 0);

	uint64_t two[2] = { 0, 3 };
	assert_int_equal(mlanes_done(t->ls, two, 2, 10, &code, why, sizeof(why)), -1);
	assert_int_equal(code, FREP_E_PROTOCOL); /* not one count per lane */
	uint64_t fewer[LANES] = { 0, 1, 1 };
	assert_int_equal(mlanes_done(t->ls, fewer, LANES, 10, &code, why, sizeof(why)), -1);
	assert_int_equal(code, FREP_E_PROTOCOL); /* lane 1 delivered 2 */
	assert_non_null(strstr(why, "lane 1 delivered 2"));
	/* One more to come on lane 2: the wait runs out, a lost link, not PROTOCOL. */
	uint64_t more[LANES] = { 0, 2, 2 };
	assert_int_equal(mlanes_done(t->ls, more, LANES, 50, &code, why, sizeof(why)), -1);
	assert_int_equal(code, 0);
	assert_non_null(strstr(why, "lane 2 has 1 of 2"));
	assert_int_equal(rec(t, 2, 1, 4, 3, true, 0, &code), 0);
	assert_int_equal(mlanes_done(t->ls, more, LANES, 50, &code, why, sizeof(why)), 0);
	/* Sealed: nothing of the pass may come now. */
	assert_int_equal(rec(t, 2, 1, 5, 4, true, 0, &code), -1);
	assert_int_equal(code, FREP_E_PROTOCOL);
}

/* LANE-6: the counts fit, but a seq is missing (another one doubled up the sum). */
static void test_done_gap(void **state)
{
	struct t *t = *state;
	uint32_t code;
	char why[512];
	open_pass(t, 1, 0);
	assert_int_equal(rec(t, 1, 1, 1, 0, true, 0, &code), 0);
	assert_int_equal(rec(t, 2, 1, 3, 2, true, 0, &code), 0);
	uint64_t counts[LANES] = { 0, 1, 1 };
	assert_int_equal(mlanes_done(t->ls, counts, LANES, 50, &code, why, sizeof(why)), -1);
	assert_int_equal(code, FREP_E_PROTOCOL);
	assert_non_null(strstr(why, "seq 2 is missing"));
}

/* LANE-7: a pass that is over is ignored; lane 0 cannot bring a pass before its START_COPY. */
static void test_passes(void **state)
{
	struct t *t = *state;
	uint32_t code;
	open_pass(t, 1, 0);
	assert_int_equal(rec(t, 1, 1, 1, 0, true, 0, &code), 0);
	mlanes_pass_begin(t->ls, 2);
	assert_int_equal(rec(t, 1, 1, 2, 1, true, 0, &code), 1); /* pass 1 is over */
	assert_int_equal(rec(t, 0, 2, 1, 1, true, 1000, &code), -1);
	assert_int_equal(code, FREP_E_PROTOCOL);
	mlanes_pass_open(t->ls, &t->mv, 0);
	assert_int_equal(through(t, NULL), 0); /* a new pass, a new mark */
	assert_int_equal(rec(t, 0, 2, 1, 1, true, 1000, &code), 0);
	assert_int_equal(through(t, NULL), 2 * BLK);
}

struct waiter {
	struct t *t;
	int rc;
	uint32_t code;
};

static void *wait_record(void *arg)
{
	struct waiter *w = arg;
	w->rc = rec(w->t, 1, 1, 1, 0, true, 0, &w->code);
	return NULL;
}

/* LANE-7: a joining lane's record waits for its pass; the session's end releases it. */
static void test_lane_waits_for_pass(void **state)
{
	struct t *t = *state;
	pthread_t th;
	struct waiter w = { t, 99, 0 };
	mlanes_pass_begin(t->ls, 1);
	assert_int_equal(pthread_create(&th, NULL, wait_record, &w), 0);
	usleep(50000);
	assert_int_equal(__atomic_load_n(&w.rc, __ATOMIC_SEQ_CST), 99); /* still waiting */
	mlanes_pass_open(t->ls, &t->mv, 0);
	pthread_join(th, NULL);
	assert_int_equal(w.rc, 0);
	assert_int_equal(through(t, NULL), BLK);
}

/* LANE-8: far ahead of the mark, lane 0 waits a bounded time for the rest. */
static void test_window(void **state)
{
	struct t *t = *state;
	uint32_t code;
	open_pass(t, 1, 0);
	assert_int_equal(rec(t, 0, 1, 4096, 1, true, 50, &code), 0); /* just inside */
	assert_int_equal(rec(t, 0, 1, 4097, 2, true, 50, &code), -1);
	assert_int_equal(code, 0);
	/* Once the mark moves, the window moves with it. */
	assert_int_equal(rec(t, 1, 1, 1, 0, true, 0, &code), 0);
	assert_int_equal(rec(t, 0, 1, 4097, 2, true, 50, &code), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mark_is_contiguous, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mark_starts_at_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_done_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_done_gap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_passes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lane_waits_for_pass, setup, teardown),
		cmocka_unit_test_setup_teardown(test_window, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
