/*
 * Snapshots (server/snapshot.c) through the mirror's store: a snapshot reads
 * as the volume was at its TXID whatever is applied after, across a reload,
 * several at once; invalidation, deletion and block status.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "snapshot.h"
#include "store.h"
#include "frep/v1/frep.pb-c.h"

enum { VOL = 1 << 20, CH = SNAP_CHUNK };

struct t {
	char dir[64];
	char voldir[128];
	struct mirror_volume mv;
	uint8_t model[VOL]; /* what the base should hold */
	uint64_t txid;
};

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	uint64_t size = VOL;
	uint8_t uuid[FREP_UUID_SIZE] = { 1 };
	uint32_t code;
	bool created;
	char err[512];
	assert_non_null(t);
	snprintf(t->dir, sizeof(t->dir), "/tmp/frep-test-snapshot-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->voldir, sizeof(t->voldir), "%s/vol", t->dir);
	assert_int_equal(store_open(&t->mv, t->dir, "vol", &code, err, sizeof(err)), 0);
	assert_int_equal(store_attach(&t->mv, &code, err, sizeof(err)), 0);
	assert_int_equal(store_create(&t->mv, "m", uuid, &size, 1, 0, NULL, &created, &code, err, sizeof(err)), 0);
	/* An INSYNC, consistent mirror: snapshots may be taken. */
	t->mv.phase = FREP__V1__PHASE__PHASE_INSYNC;
	t->mv.consistent = true;
	t->txid = t->mv.applied_txid;
	store_publish_consistency(&t->mv);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	char cmd[160];
	store_close(&t->mv);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
	assert_int_equal(system(cmd), 0);
	free(t);
	return 0;
}

/* Applies one TX through the store (the mirror's own apply path) and to the model. */
static void apply(struct t *t, uint32_t op, uint64_t off, uint64_t len, uint8_t fill)
{
	struct journal_rec r = { .generation = 1, .txid = ++t->txid, .offset = off, .length = len, .op = op };
	uint8_t *data = malloc(len);
	assert_non_null(data);
	memset(data, fill, len);
	/* Journaled and durable first, as the session does: a checkpoint frees it. */
	assert_int_equal(journal_append(t->mv.j, &r, op == JOP_WRITE ? data : NULL), 0);
	assert_int_equal(journal_sync(t->mv.j), 0);
	assert_int_equal(store_apply(&t->mv, &r, op == JOP_WRITE ? data : NULL), 0);
	memset(t->model + off, op == JOP_WRITE ? fill : 0, len);
	free(data);
}

static void create(struct t *t, const char *name)
{
	char err[256];
	struct status_snapshot st;
	assert_int_equal(snapset_create_now(t->mv.snaps, name, SNAP_USER, &st, err, sizeof(err)), 0);
	assert_int_equal(st.txid, t->txid);
	assert_true(st.valid);
}

static void expect_snapshot(struct t *t, const char *name, const uint8_t *want)
{
	char err[256];
	struct snap_reader *r = snap_reader_open(t->voldir, name, err, sizeof(err));
	uint8_t *got = malloc(VOL);
	assert_non_null(r);
	assert_non_null(got);
	assert_int_equal(snap_reader_size(r), VOL);
	assert_int_equal(snap_reader_pread(r, got, VOL, 0), 0);
	assert_memory_equal(got, want, VOL);
	/* Unaligned reads across the chunks' two sources. */
	assert_int_equal(snap_reader_pread(r, got, 3 * CH + 7, CH - 3), 0);
	assert_memory_equal(got, want + CH - 3, 3 * CH + 7);
	free(got);
	snap_reader_close(r);
}

static void test_snapshot_holds_its_txid(void **state)
{
	struct t *t = *state;
	apply(t, JOP_WRITE, 0, VOL, 0x11);
	uint8_t *at_snap = malloc(VOL);
	memcpy(at_snap, t->model, VOL);
	create(t, "a");
	/* Aligned, unaligned, spanning, repeated writes, a trim and a zero after the snapshot. */
	apply(t, JOP_WRITE, 0, CH, 0x22);
	apply(t, JOP_WRITE, 5 * CH + 100, 3 * CH, 0x33);
	apply(t, JOP_WRITE, 5 * CH + 200, 10, 0x44);
	apply(t, JOP_TRIM, 64 * CH, 16 * CH, 0);
	apply(t, JOP_ZERO, VOL - 2 * CH, 2 * CH, 0);
	expect_snapshot(t, "a", at_snap);

	/* The base is the newest state, and the snapshot survives a reload of the store. */
	uint8_t *base = malloc(VOL);
	assert_int_equal(volume_pread(&t->mv.vol, base, VOL, 0), 0);
	assert_memory_equal(base, t->model, VOL);
	uint32_t code;
	char err[512];
	store_close(&t->mv);
	assert_int_equal(store_open(&t->mv, t->dir, "vol", &code, err, sizeof(err)), 0);
	assert_int_equal(store_attach(&t->mv, &code, err, sizeof(err)), 0);
	apply(t, JOP_WRITE, 0, 2 * CH, 0x55);
	expect_snapshot(t, "a", at_snap);
	free(base);
	free(at_snap);
}

static void test_several_snapshots(void **state)
{
	struct t *t = *state;
	uint8_t *states[3];
	const char *names[] = { "s1", "s2", "s3" };
	apply(t, JOP_WRITE, 0, VOL, 0x01);
	for (int i = 0; i < 3; i++) {
		states[i] = malloc(VOL);
		memcpy(states[i], t->model, VOL);
		create(t, names[i]);
		for (int k = 0; k < 40; k++)
			apply(t, JOP_WRITE, (uint64_t)((k * 37 + i * 11) % 250) * CH, CH, (uint8_t)(0x10 * i + k));
	}
	for (int i = 0; i < 3; i++) {
		expect_snapshot(t, names[i], states[i]);
		free(states[i]);
	}
	struct status_snapshot *list;
	size_t n;
	assert_int_equal(snapset_list(t->mv.snaps, &list, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(list[0].name, "s1");
	assert_true(list[0].txid < list[1].txid && list[1].txid < list[2].txid);
	assert_true(list[0].used_bytes > 0);
	free(list);
}

static void test_refusals(void **state)
{
	struct t *t = *state;
	char err[256];
	create(t, "x");
	assert_int_equal(snapset_create_now(t->mv.snaps, "x", SNAP_USER, NULL, err, sizeof(err)), -1);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(snapset_create_now(t->mv.snaps, ".hidden", SNAP_USER, NULL, err, sizeof(err)), -1);
	assert_int_equal(errno, EINVAL);
	/* An inconsistent mirror (a copy runs) has no state a snapshot could hold. */
	t->mv.consistent = false;
	store_publish_consistency(&t->mv);
	assert_int_equal(snapset_create_now(t->mv.snaps, "y", SNAP_USER, NULL, err, sizeof(err)), -1);
	assert_int_equal(errno, EAGAIN);
	assert_non_null(strstr(err, "inconsistent"));
	assert_int_equal(snapset_delete(t->mv.snaps, "nope", err, sizeof(err)), -1);
	assert_int_equal(errno, ENOENT);
}

static void test_invalidate_and_delete(void **state)
{
	struct t *t = *state;
	char err[256], path[256];
	struct stat st;
	apply(t, JOP_WRITE, 0, VOL, 0x66);
	create(t, "old");
	create(t, "new");
	apply(t, JOP_WRITE, 0, 8 * CH, 0x77);
	/* Space for the mirror itself comes back from the oldest snapshot. */
	assert_true(snapset_reclaim(t->mv.snaps, "testing"));
	assert_null(snap_reader_open(t->voldir, "old", err, sizeof(err)));
	assert_non_null(strstr(err, "invalidated: testing"));
	struct status_snapshot *list;
	size_t n;
	assert_int_equal(snapset_list(t->mv.snaps, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_false(list[0].valid);
	assert_string_equal(list[0].invalid_reason, "testing");
	assert_true(list[1].valid);
	free(list);
	struct status_mirror m = { 0 };
	snapset_status(t->mv.snaps, &m);
	assert_int_equal(m.snapshots, 2);
	assert_int_equal(m.snapshots_invalid, 1);
	/* An open reader of an invalidated snapshot gets EIO rather than newer data. */
	struct snap_reader *r = snap_reader_open(t->voldir, "new", err, sizeof(err));
	assert_non_null(r);
	assert_true(snapset_reclaim(t->mv.snaps, "again"));
	uint8_t buf[CH];
	assert_int_equal(snap_reader_pread(r, buf, CH, 0), -1);
	assert_int_equal(errno, EIO);
	snap_reader_close(r);
	assert_false(snapset_reclaim(t->mv.snaps, "none left"));
	/* Deleting frees everything. */
	assert_int_equal(snapset_delete(t->mv.snaps, "old", err, sizeof(err)), 0);
	assert_int_equal(snapset_delete(t->mv.snaps, "new", err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/snapshots/old", t->voldir);
	assert_int_equal(stat(path, &st), -1);
	assert_false(snapset_active(t->mv.snaps));
}

static int add_extent(void *ctx, uint64_t off, uint64_t len, bool hole)
{
	uint8_t *map = ctx;
	for (uint64_t c = off / CH; c < (off + len) / CH; c++)
		map[c] = hole ? 'h' : 'd';
	return 0;
}

static void test_extents_show_holes(void **state)
{
	struct t *t = *state;
	uint8_t map[VOL / CH + 1] = { 0 };
	apply(t, JOP_WRITE, 10 * CH, 2 * CH, 0x01);
	apply(t, JOP_WRITE, 100 * CH, CH, 0x02);
	create(t, "h");
	apply(t, JOP_TRIM, 10 * CH, 2 * CH, 0); /* saved in the overlay: still data */
	apply(t, JOP_WRITE, 50 * CH, CH, 0x03); /* a hole at the snapshot: still a hole */
	char err[256];
	struct snap_reader *r = snap_reader_open(t->voldir, "h", err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(snap_reader_extents(r, 0, VOL, add_extent, map), 0);
	assert_int_equal(map[0], 'h');
	assert_int_equal(map[10], 'd');
	assert_int_equal(map[11], 'd');
	assert_int_equal(map[12], 'h');
	assert_int_equal(map[50], 'h');
	assert_int_equal(map[100], 'd');
	assert_int_equal(map[VOL / CH - 1], 'h');
	snap_reader_close(r);
}

static void test_half_created_snapshot_is_removed(void **state)
{
	struct t *t = *state;
	char path[256], err[256];
	struct stat st;
	uint32_t code;
	/* A crash before the metadata: the directory is all that is left. */
	snprintf(path, sizeof(path), "%s/snapshots/torn", t->voldir);
	assert_int_equal(mkdir(path, 0700), 0);
	store_close(&t->mv);
	assert_int_equal(store_open(&t->mv, t->dir, "vol", &code, err, sizeof(err)), 0);
	assert_int_equal(store_attach(&t->mv, &code, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &st), -1);
	assert_false(snapset_exists(t->mv.snaps, "torn"));
}

/*
 * On a full disk the meta cannot be rewritten, so an invalidation's durable
 * mark is the map's valid word alone (spec: u32 at offset 8 of S/map). A
 * snapshot whose meta still says valid but whose map says invalid reloads
 * invalid, never as content the base no longer has.
 */
static void test_map_mark_alone_invalidates(void **state)
{
	struct t *t = *state;
	char path[256], err[256];
	uint32_t code, zero = 0;
	apply(t, JOP_WRITE, 0, VOL, 0x44);
	create(t, "full");
	store_close(&t->mv);
	snprintf(path, sizeof(path), "%s/snapshots/full/map", t->voldir);
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, &zero, sizeof(zero), 8), sizeof(zero));
	close(fd);
	assert_int_equal(store_open(&t->mv, t->dir, "vol", &code, err, sizeof(err)), 0);
	assert_int_equal(store_attach(&t->mv, &code, err, sizeof(err)), 0);
	struct status_snapshot *list;
	size_t n;
	assert_int_equal(snapset_list(t->mv.snaps, &list, &n), 0);
	assert_int_equal(n, 1);
	assert_false(list[0].valid);
	assert_non_null(strstr(list[0].invalid_reason, "reason not saved"));
	free(list);
	assert_null(snap_reader_open(t->voldir, "full", err, sizeof(err)));
	/* The meta now says so too, and a second reload agrees. */
	store_close(&t->mv);
	assert_int_equal(store_open(&t->mv, t->dir, "vol", &code, err, sizeof(err)), 0);
	assert_int_equal(store_attach(&t->mv, &code, err, sizeof(err)), 0);
	assert_int_equal(snapset_list(t->mv.snaps, &list, &n), 0);
	assert_false(list[0].valid);
	assert_non_null(strstr(list[0].invalid_reason, "reason not saved"));
	free(list);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_snapshot_holds_its_txid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_several_snapshots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalidate_and_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_extents_show_holes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_half_created_snapshot_is_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_mark_alone_invalidates, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
