/* Unit tests of the dirty-region bitmap: boundaries, persistence, torn pages, header checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "tmpdir.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bitmap.h"
#include "log.h"
#include "util.h"

#define KIB UINT64_C(1024)
#define MIB (1024 * KIB)
#define TIB (MIB * MIB)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* The on-disk layout of bitmap.c, restated so tests can aim at a page. */
#define PAGE 4096u
#define BITS_PER_PAGE 32704u /* 511 words of 64 bits, then index and CRC */

/* A volume of two full bit pages plus 100 regions, the last one partial. */
#define RS 4096u
#define NREG (2 * BITS_PER_PAGE + 100)
#define VOL ((uint64_t)(NREG - 1) * RS + 1000)

static int setup(void **state)
{
	return tmpdir_setup(state, "bitmap", "bitmap");
}

static int teardown(void **state)
{
	return tmpdir_teardown(state);
}

/* ------------------------------------------------------------------ helpers */

/*
 * fdatasync as the bitmap sees it: counted, and failing with EIO while
 * fail_fdatasync is set. The executable's definition wins over libc's.
 */
static unsigned fdatasync_calls;
static bool fail_fdatasync;

int fdatasync(int fd)
{
	fdatasync_calls++;
	if (fail_fdatasync) {
		errno = EIO;
		return -1;
	}
	return (int)syscall(SYS_fdatasync, fd);
}

static struct bitmap *open_ok(const char *path, uint64_t vol, uint32_t rs)
{
	char err[512] = "";
	struct bitmap *b = bitmap_open(path, vol, rs, "vol", err, sizeof(err));
	if (!b)
		fail_msg("bitmap_open %s: %s", path, err);
	return b;
}

/* Opens expecting failure; the message must contain want. */
static void open_fails(const char *path, uint64_t vol, uint32_t rs, const char *want)
{
	char err[512] = "";
	struct bitmap *b = bitmap_open(path, vol, rs, "vol", err, sizeof(err));
	if (b) {
		bitmap_close(b);
		fail_msg("bitmap_open %s (vol %" PRIu64 ", region %" PRIu32 ") succeeded", path,
			 vol, rs);
	}
	if (!strstr(err, want))
		fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

/* Runs bitmap_open with stderr captured into log. */
static struct bitmap *open_logged(struct fixture *f, uint64_t vol, uint32_t rs, char *log,
				  size_t log_len)
{
	char err[512] = "";
	int saved = dup(2);
	int fd = open(f->errlog, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, 2);
	struct bitmap *b = bitmap_open(f->path, vol, rs, "vol", err, sizeof(err));
	dup2(saved, 2);
	close(saved);
	ssize_t n = pread(fd, log, log_len - 1, 0);
	log[n > 0 ? n : 0] = '\0';
	close(fd);
	if (!b)
		fail_msg("bitmap_open %s: %s", f->path, err);
	return b;
}

static void write_at(const char *path, uint64_t off, const void *buf, size_t len)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void read_at(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

/* Dirty regions as a bool per region, rebuilt through bitmap_next_dirty only. */
static void runs_to_bools(const struct bitmap *b, uint64_t vol, bool *out, size_t nreg)
{
	uint64_t rs = bitmap_region_size(b), off = 0, s, e;

	memset(out, 0, nreg);
	while (bitmap_next_dirty(b, off, &s, &e)) {
		assert_true(s >= off - off % rs); /* never behind the region of off */
		assert_true(s < e);
		assert_int_equal(s % rs, 0);
		assert_true(e % rs == 0 || e == vol);
		assert_true(e <= vol);
		for (uint64_t r = s / rs; r < (e + rs - 1) / rs; r++)
			out[r] = true;
		/* Runs are maximal: the region at e is clean. */
		uint64_t s2, e2;
		if (e < vol && bitmap_next_dirty(b, e, &s2, &e2))
			assert_true(s2 > e);
		off = e;
		if (off >= vol)
			break;
	}
}

/* The reference: does region r touch [off, off + len), computed without overflow? */
static bool touches(uint64_t r, uint64_t rs, uint64_t vol, uint64_t off, uint64_t len)
{
	unsigned __int128 rs0 = (unsigned __int128)r * rs, re = rs0 + rs;
	unsigned __int128 end = (unsigned __int128)off + len;
	if (re > vol)
		re = vol;
	return len && off < re && end > rs0;
}

/* Region r lies fully inside [off, off + len), the part past vol not needed. */
static bool inside(uint64_t r, uint64_t rs, uint64_t vol, uint64_t off, uint64_t len)
{
	unsigned __int128 rs0 = (unsigned __int128)r * rs, re = rs0 + rs;
	unsigned __int128 end = (unsigned __int128)off + len;
	if (re > vol)
		re = vol;
	return len && off <= rs0 && end >= re;
}

static void check_model(const struct bitmap *b, const bool *model, size_t nreg)
{
	bool *got = malloc(nreg);
	uint64_t n = 0;

	assert_non_null(got);
	runs_to_bools(b, VOL, got, nreg);
	for (size_t r = 0; r < nreg; r++) {
		if (got[r] != model[r])
			fail_msg("region %zu: bitmap %d, model %d", r, got[r], model[r]);
		n += model[r];
	}
	assert_int_equal(bitmap_dirty_regions(b), n);
	free(got);
}

/* -------------------------------------------------------------------- tests */

static void test_geometry_errors(void **state)
{
	struct fixture *f = *state;
	static const struct {
		uint32_t rs;
		bool ok;
	} sizes[] = {
		{ 0, false },	       { 1, false },	       { 512, false },
		{ 4095, false },       { 4096, true },	       { 4097, false },
		{ 6144, false },       { 65535, false },       { 65536, true },
		{ 1u << 30, true },    { (1u << 30) + 1, false }, { 0x7fffffff, false },
		{ 0x80000000, false }, { 0xffffffff, false },
	};

	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		if (sizes[i].ok) {
			struct bitmap *b = open_ok(f->path, 10 * MIB, sizes[i].rs);
			assert_int_equal(bitmap_region_size(b), sizes[i].rs);
			assert_int_equal(bitmap_regions(b),
					 (10 * MIB + sizes[i].rs - 1) / sizes[i].rs);
			bitmap_close(b);
			assert_int_equal(unlink(f->path), 0);
		} else {
			open_fails(f->path, 10 * MIB, sizes[i].rs, "not a power of two");
			assert_int_equal(access(f->path, F_OK), -1); /* nothing created */
		}
	}
	open_fails(f->path, 0, RS, "volume size is 0");
	/* One region more than the limit; UINT64_MAX bytes. */
	open_fails(f->path, BITMAP_MAX_REGIONS * 4096 + 1, 4096, "use larger regions");
	open_fails(f->path, UINT64_MAX, 4096, "use larger regions");
	assert_int_equal(access(f->path, F_OK), -1);
	/* UINT64_MAX with 1 GiB regions is 2^34 regions: refused, not wrapped. */
	open_fails(f->path, UINT64_MAX, 1u << 30, "use larger regions");
	assert_int_equal(BITMAP_DEFAULT_REGION, 64 * 1024);
}

/* One set_range on a clean bitmap: a table of boundaries with the expected run. */
static void test_set_range_table(void **state)
{
	struct fixture *f = *state;
	const uint64_t last = NREG - 1;
	static const struct {
		uint64_t off, len;
		uint64_t r0, r1; /* expected dirty regions [r0, r1); r0 == r1: none */
	} t[] = {
		{ 0, 0, 0, 0 },
		{ 0, 1, 0, 1 },
		{ 0, RS, 0, 1 },
		{ 0, RS + 1, 0, 2 },
		{ RS - 1, 1, 0, 1 },
		{ RS - 1, 2, 0, 2 },
		{ RS, RS, 1, 2 },
		{ 63 * RS, RS, 63, 64 },		/* last bit of word 0 */
		{ 63 * RS + 1, RS, 63, 65 },		/* across words */
		{ 64 * RS, 64 * RS, 64, 128 },		/* one whole word */
		{ 60 * RS, 200 * RS, 60, 260 },		/* several words */
		{ (BITS_PER_PAGE - 1) * RS, 2 * RS, BITS_PER_PAGE - 1, BITS_PER_PAGE + 1 },
		{ (uint64_t)BITS_PER_PAGE * RS, 1, BITS_PER_PAGE, BITS_PER_PAGE + 1 },
		{ 5 * RS, 0, 0, 0 },			/* len 0 mid-volume */
		{ VOL - 1, 1, last, last + 1 },		/* last byte: partial region */
		{ last * RS, 1000, last, last + 1 },
		{ last * RS, RS, last, last + 1 },	/* runs past the end: clipped */
		{ VOL - 1, UINT64_MAX, last, last + 1 }, /* off + len overflows */
		{ VOL - 2, 0xffffffff, last, last + 1 },
		{ 0, UINT64_MAX, 0, NREG },
		{ 1, UINT64_MAX - 1, 0, NREG },
		{ 5 * RS, UINT64_MAX - 2 * RS, 5, NREG }, /* off + len - 1 wraps below off */
		{ 0, VOL, 0, NREG },
		{ 0, VOL - 1, 0, NREG },
		{ 0, VOL - 1000, 0, NREG - 1 },
		{ VOL, 1, 0, 0 },			/* beyond the end */
		{ VOL, UINT64_MAX, 0, 0 },
		{ UINT64_MAX, 1, 0, 0 },
		{ UINT64_MAX, UINT64_MAX, 0, 0 },
		{ 0x80000000, 0x80000000, 0, 0 },	/* 2 GiB: past VOL */
		{ 100 * RS, 0x7fffffff, 100, NREG },
		{ 100 * RS + 1, 0xffffffff, 100, NREG },
	};
	struct bitmap *b = open_ok(f->path, VOL, RS);
	bool *model = calloc(NREG, 1);

	assert_non_null(model);
	assert_int_equal(bitmap_regions(b), NREG);
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		bitmap_clear_all(b);
		bitmap_set_range(b, t[i].off, t[i].len);
		for (uint64_t r = 0; r < NREG; r++) {
			model[r] = r >= t[i].r0 && r < t[i].r1;
			/* The table and the overflow-free reference agree. */
			if (model[r] != touches(r, RS, VOL, t[i].off, t[i].len))
				fail_msg("case %zu: table and reference differ at region %" PRIu64,
					 i, r);
		}
		check_model(b, model, NREG);

		uint64_t s, e;
		if (t[i].r0 == t[i].r1) {
			assert_int_equal(bitmap_next_dirty(b, 0, &s, &e), 0);
			continue;
		}
		assert_int_equal(bitmap_next_dirty(b, 0, &s, &e), 1);
		assert_int_equal(s, t[i].r0 * RS);
		assert_int_equal(e, t[i].r1 == NREG ? VOL : t[i].r1 * RS);
	}
	free(model);
	bitmap_close(b);
}

/* One clear_range on a full bitmap: only regions fully inside are cleared. */
static void test_clear_range_table(void **state)
{
	struct fixture *f = *state;
	const uint64_t last = NREG - 1;
	static const struct {
		uint64_t off, len;
		uint64_t c0, c1; /* expected clean regions [c0, c1) */
	} t[] = {
		{ 0, 0, 0, 0 },
		{ 0, 1, 0, 0 },				/* partial region: stays dirty */
		{ 0, RS - 1, 0, 0 },
		{ 0, RS, 0, 1 },
		{ 1, RS, 0, 0 },
		{ 1, 2 * RS, 1, 2 },
		{ RS - 1, 2 * RS + 1, 1, 3 },
		{ 63 * RS, 2 * RS, 63, 65 },		/* across a word */
		{ (BITS_PER_PAGE - 1) * RS, 2 * RS, BITS_PER_PAGE - 1, BITS_PER_PAGE + 1 },
		{ last * RS, 999, 0, 0 },		/* partial region short of the end */
		{ last * RS, 1000, last, last + 1 },	/* reaches the end: cleared */
		{ last * RS, UINT64_MAX, last, last + 1 },
		{ last * RS + 1, UINT64_MAX, 0, 0 },
		{ VOL - 1, 1, 0, 0 },
		{ VOL, UINT64_MAX, 0, 0 },
		{ UINT64_MAX, UINT64_MAX, 0, 0 },
		{ 0, UINT64_MAX, 0, NREG },
		{ 0, VOL, 0, NREG },
		{ 0, VOL - 1, 0, NREG - 1 },
		{ 1, UINT64_MAX, 1, NREG },
	};
	struct bitmap *b = open_ok(f->path, VOL, RS);
	bool *model = calloc(NREG, 1);

	assert_non_null(model);
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		bitmap_set_all(b);
		assert_int_equal(bitmap_dirty_regions(b), NREG);
		bitmap_clear_range(b, t[i].off, t[i].len);
		for (uint64_t r = 0; r < NREG; r++) {
			model[r] = !(r >= t[i].c0 && r < t[i].c1);
			if (model[r] != !inside(r, RS, VOL, t[i].off, t[i].len))
				fail_msg("case %zu: table and reference differ at region %" PRIu64,
					 i, r);
		}
		check_model(b, model, NREG);
	}
	free(model);
	bitmap_close(b);
}

/* Scattered bits at word and page edges: runs, offsets inside runs, the end. */
static void test_next_dirty(void **state)
{
	struct fixture *f = *state;
	const uint64_t last = NREG - 1;
	static const uint64_t set[] = { 0, 63, 64, 127, 129, BITS_PER_PAGE - 1, BITS_PER_PAGE,
					2 * BITS_PER_PAGE + 10 };
	static const struct {
		uint64_t r0, r1;
	} runs[] = {
		{ 0, 1 },
		{ 63, 65 },
		{ 127, 128 },
		{ 129, 130 },
		{ BITS_PER_PAGE - 1, BITS_PER_PAGE + 1 },
		{ 2 * BITS_PER_PAGE + 10, 2 * BITS_PER_PAGE + 11 },
	};
	struct bitmap *b = open_ok(f->path, VOL, RS);
	uint64_t s, e, off = 0;

	assert_int_equal(bitmap_next_dirty(b, 0, &s, &e), 0);
	for (size_t i = 0; i < ARRAY_SIZE(set); i++)
		bitmap_set_range(b, set[i] * RS, 1);
	assert_int_equal(bitmap_dirty_regions(b), ARRAY_SIZE(set));
	for (size_t i = 0; i < ARRAY_SIZE(runs); i++) {
		assert_int_equal(bitmap_next_dirty(b, off, &s, &e), 1);
		assert_int_equal(s, runs[i].r0 * RS);
		assert_int_equal(e, runs[i].r1 * RS);
		off = e;
	}
	assert_int_equal(bitmap_next_dirty(b, off, &s, &e), 0);

	/* off inside a dirty region: the run starts at that region. */
	assert_int_equal(bitmap_next_dirty(b, 64 * RS + 5, &s, &e), 1);
	assert_int_equal(s, 64 * RS);
	assert_int_equal(e, 65 * RS);
	/* off in a clean region: the next run. */
	assert_int_equal(bitmap_next_dirty(b, 128 * RS, &s, &e), 1);
	assert_int_equal(s, 129 * RS);
	/* Past the end, at the end, UINT64_MAX. */
	assert_int_equal(bitmap_next_dirty(b, VOL, &s, &e), 0);
	assert_int_equal(bitmap_next_dirty(b, UINT64_MAX, &s, &e), 0);

	/* The partial last region: the run ends at the volume size. */
	bitmap_set_range(b, VOL - 1, 1);
	assert_int_equal(bitmap_next_dirty(b, VOL - 1, &s, &e), 1);
	assert_int_equal(s, last * RS);
	assert_int_equal(e, VOL);
	bitmap_set_range(b, (last - 200) * RS, 200 * RS);
	assert_int_equal(bitmap_next_dirty(b, (last - 300) * RS, &s, &e), 1);
	assert_int_equal(s, (last - 200) * RS);
	assert_int_equal(e, VOL);
	bitmap_close(b);
}

/* Random sets and clears against a per-region model. */
static void test_random_ops(void **state)
{
	struct fixture *f = *state;
	struct bitmap *b = open_ok(f->path, VOL, RS);
	bool *model = calloc(NREG, 1);
	uint64_t x = 0x2545f4914f6cdd1dull;

	assert_non_null(model);
	for (int i = 0; i < 3000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t off, len;
		switch (x % 4) {
		case 0: /* small, anywhere, sometimes past the end */
			off = (x >> 8) % (VOL + 3 * RS);
			len = (x >> 40) % (3 * RS);
			break;
		case 1: /* large */
			off = (x >> 8) % VOL;
			len = (x >> 30) % (VOL / 2);
			break;
		case 2: /* region-aligned */
			off = ((x >> 8) % NREG) * RS;
			len = ((x >> 40) % 300) * RS;
			break;
		default: /* overflowing */
			off = (x >> 8) % (VOL + RS);
			len = UINT64_MAX - (x >> 50);
			break;
		}
		bool set = (x >> 62) & 1;
		if (set)
			bitmap_set_range(b, off, len);
		else
			bitmap_clear_range(b, off, len);
		for (uint64_t r = 0; r < NREG; r++) {
			if (set && touches(r, RS, VOL, off, len))
				model[r] = true;
			if (!set && inside(r, RS, VOL, off, len))
				model[r] = false;
		}
		if (i % 100 == 99)
			check_model(b, model, NREG);
	}
	check_model(b, model, NREG);

	/* And the same state survives sync and reopen. */
	assert_int_equal(bitmap_sync(b), 0);
	bitmap_close(b);
	b = open_ok(f->path, VOL, RS);
	check_model(b, model, NREG);
	free(model);
	bitmap_close(b);
}

static void test_persistence(void **state)
{
	struct fixture *f = *state;
	struct bitmap *b = open_ok(f->path, VOL, RS), *b2;
	char tmp[192];
	uint64_t s, e;

	assert_int_equal(file_size(f->path), PAGE + 3 * PAGE);
	snprintf(tmp, sizeof(tmp), "%s.new", f->path);
	assert_int_equal(access(tmp, F_OK), -1); /* renamed into place */
	bitmap_set_range(b, 0, 1);
	bitmap_set_range(b, (uint64_t)BITS_PER_PAGE * RS, 1);
	bitmap_set_range(b, VOL - 1, 1);

	/* "Crash" before sync: another handle sees a valid bitmap, bits not promised. */
	b2 = open_ok(f->path, VOL, RS);
	assert_true(bitmap_dirty_regions(b2) == 0 || bitmap_dirty_regions(b2) == 3);
	bitmap_close(b2);

	assert_int_equal(bitmap_sync(b), 0);
	b2 = open_ok(f->path, VOL, RS);
	assert_int_equal(bitmap_dirty_regions(b2), 3);
	assert_int_equal(bitmap_next_dirty(b2, 0, &s, &e), 1);
	assert_int_equal(s, 0);
	assert_int_equal(e, RS);
	assert_int_equal(bitmap_next_dirty(b2, e, &s, &e), 1);
	assert_int_equal(s, (uint64_t)BITS_PER_PAGE * RS);
	assert_int_equal(bitmap_next_dirty(b2, e, &s, &e), 1);
	assert_int_equal(s, (uint64_t)(NREG - 1) * RS);
	assert_int_equal(e, VOL);
	bitmap_close(b2);

	/* Clears are not on disk before sync, and are after it. */
	bitmap_clear_range(b, 0, RS);
	b2 = open_ok(f->path, VOL, RS);
	assert_int_equal(bitmap_dirty_regions(b2), 3);
	bitmap_close(b2);
	assert_int_equal(bitmap_sync(b), 0);
	bitmap_close(b);
	b = open_ok(f->path, VOL, RS);
	assert_int_equal(bitmap_dirty_regions(b), 2);
	assert_int_equal(bitmap_next_dirty(b, 0, &s, &e), 1);
	assert_int_equal(s, (uint64_t)BITS_PER_PAGE * RS);

	/* Close without sync drops changes, like a crash. */
	bitmap_set_all(b);
	bitmap_close(b);
	b = open_ok(f->path, VOL, RS);
	assert_int_equal(bitmap_dirty_regions(b), 2);

	/* set_all and clear_all persist. */
	bitmap_set_all(b);
	assert_int_equal(bitmap_sync(b), 0);
	bitmap_close(b);
	b = open_ok(f->path, VOL, RS);
	assert_int_equal(bitmap_dirty_regions(b), NREG);
	assert_int_equal(bitmap_next_dirty(b, 0, &s, &e), 1);
	assert_int_equal(s, 0);
	assert_int_equal(e, VOL);
	bitmap_clear_all(b);
	assert_int_equal(bitmap_sync(b), 0);
	bitmap_close(b);
	b = open_ok(f->path, VOL, RS);
	assert_int_equal(bitmap_dirty_regions(b), 0);
	bitmap_close(b);
}

/* bitmap_sync does I/O only when bits changed, and retries after a failure. */
static void test_sync_io_and_failure(void **state)
{
	struct fixture *f = *state;
	struct bitmap *b = open_ok(f->path, VOL, RS), *b2;
	unsigned calls;

	calls = fdatasync_calls;
	assert_int_equal(bitmap_sync(b), 0);
	assert_int_equal(fdatasync_calls, calls); /* nothing changed: no I/O */

	bitmap_set_range(b, 10 * RS, RS);
	assert_int_equal(bitmap_sync(b), 0);
	assert_int_equal(fdatasync_calls, calls + 1);
	bitmap_set_range(b, 10 * RS + 7, 100); /* already dirty */
	bitmap_clear_range(b, 10 * RS + 1, RS); /* not a whole region */
	assert_int_equal(bitmap_sync(b), 0);
	assert_int_equal(fdatasync_calls, calls + 1);

	/* A failed fdatasync leaves the page queued: the next sync writes it again. */
	bitmap_set_range(b, 20 * RS, RS);
	fail_fdatasync = true;
	errno = 0;
	assert_int_equal(bitmap_sync(b), -1);
	assert_int_equal(errno, EIO);
	fail_fdatasync = false;
	calls = fdatasync_calls;
	assert_int_equal(bitmap_sync(b), 0);
	assert_int_equal(fdatasync_calls, calls + 1);
	assert_int_equal(bitmap_sync(b), 0);
	assert_int_equal(fdatasync_calls, calls + 1);

	b2 = open_ok(f->path, VOL, RS);
	assert_int_equal(bitmap_dirty_regions(b2), 2);
	bitmap_close(b2);
	bitmap_close(b);

	/* A failing fdatasync at creation fails the open and leaves no file. */
	assert_int_equal(unlink(f->path), 0);
	fail_fdatasync = true;
	open_fails(f->path, VOL, RS, "writing");
	fail_fdatasync = false;
	assert_int_equal(access(f->path, F_OK), -1);
}

/* A page torn by power loss, zeroed, or misplaced loads as all dirty, never as clean. */
static void test_torn_pages(void **state)
{
	struct fixture *f = *state;
	struct bitmap *b = open_ok(f->path, VOL, RS);
	unsigned char page[PAGE], zeros[PAGE / 2];
	char log[4096];
	uint64_t s, e;

	bitmap_set_range(b, 5 * RS, 1);			   /* page 0 */
	bitmap_set_range(b, (BITS_PER_PAGE + 7) * RS, 1); /* page 1 */
	assert_int_equal(bitmap_sync(b), 0);
	/* The caller clears page 1's bit; power fails mid-write: half the page lands. */
	bitmap_clear_range(b, (BITS_PER_PAGE + 7) * RS, RS);
	assert_int_equal(bitmap_sync(b), 0);
	bitmap_close(b);
	memset(zeros, 0, sizeof(zeros));
	read_at(f->path, PAGE + PAGE, page, PAGE);
	write_at(f->path, PAGE + PAGE + PAGE / 2, zeros, sizeof(zeros)); /* torn second half */

	b = open_logged(f, VOL, RS, log, sizeof(log));
	assert_non_null(strstr(log, "page 1"));
	assert_non_null(strstr(log, "taken as dirty"));
	assert_int_equal(bitmap_dirty_regions(b), 1 + BITS_PER_PAGE);
	assert_int_equal(bitmap_next_dirty(b, 0, &s, &e), 1);
	assert_int_equal(s, 5 * RS);
	assert_int_equal(e, 6 * RS);
	assert_int_equal(bitmap_next_dirty(b, e, &s, &e), 1);
	assert_int_equal(s, (uint64_t)BITS_PER_PAGE * RS);
	assert_int_equal(e, (uint64_t)2 * BITS_PER_PAGE * RS);
	assert_int_equal(bitmap_next_dirty(b, e, &s, &e), 0);
	/* The repair is written at the next sync; the page is then valid again. */
	assert_int_equal(bitmap_sync(b), 0);
	bitmap_close(b);
	b = open_logged(f, VOL, RS, log, sizeof(log));
	assert_null(strstr(log, "taken as dirty"));
	assert_int_equal(bitmap_dirty_regions(b), 1 + BITS_PER_PAGE);
	bitmap_clear_all(b);
	assert_int_equal(bitmap_sync(b), 0);
	bitmap_close(b);

	/* Page 0's bytes written over page 2 (a misdirected write): the index catches it. */
	read_at(f->path, PAGE, page, PAGE);
	write_at(f->path, PAGE + 2 * PAGE, page, PAGE);
	b = open_logged(f, VOL, RS, log, sizeof(log));
	assert_non_null(strstr(log, "page 2"));
	assert_int_equal(bitmap_dirty_regions(b), NREG - 2 * BITS_PER_PAGE);
	assert_int_equal(bitmap_next_dirty(b, 0, &s, &e), 1);
	assert_int_equal(s, (uint64_t)2 * BITS_PER_PAGE * RS);
	assert_int_equal(e, VOL);
	bitmap_close(b);

	/* Every bit page zeroed (never written, or a hole): all dirty. */
	memset(page, 0, sizeof(page));
	for (unsigned p = 0; p < 3; p++)
		write_at(f->path, PAGE + p * PAGE, page, PAGE);
	b = open_logged(f, VOL, RS, log, sizeof(log));
	assert_non_null(strstr(log, "3 page(s)"));
	assert_int_equal(bitmap_dirty_regions(b), NREG);
	bitmap_close(b);
}

static void test_header_checks(void **state)
{
	struct fixture *f = *state;
	unsigned char hdr[64], bad[64];
	struct bitmap *b = open_ok(f->path, VOL, RS);

	bitmap_set_range(b, 0, 1);
	assert_int_equal(bitmap_sync(b), 0);
	bitmap_close(b);
	read_at(f->path, 0, hdr, sizeof(hdr));

	/* Sizes differ from the file's. */
	open_fails(f->path, VOL + 1, RS, "made for a volume of");
	open_fails(f->path, VOL - 1, RS, "(resized?)");
	open_fails(f->path, VOL, 2 * RS, "region size 4096 on disk, 8192 requested");
	open_fails(f->path, VOL, 3 * RS, "not a power of two");

	/* Bad magic, a flipped byte (CRC), another version with a valid CRC. */
	memcpy(bad, hdr, sizeof(bad));
	bad[0] ^= 0xff;
	write_at(f->path, 0, bad, sizeof(bad));
	open_fails(f->path, VOL, RS, "not a frep bitmap (bad magic)");
	memcpy(bad, hdr, sizeof(bad));
	bad[9] ^= 0x01; /* volume_size */
	write_at(f->path, 0, bad, sizeof(bad));
	open_fails(f->path, VOL, RS, "header checksum mismatch");
	memcpy(bad, hdr, sizeof(bad));
	bad[40] = 1; /* reserved zero bytes */
	write_at(f->path, 0, bad, sizeof(bad));
	open_fails(f->path, VOL, RS, "header checksum mismatch");
	memcpy(bad, hdr, sizeof(bad));
	bad[4] = 2;
	uint32_t crc = frep_crc32c(bad, 60);
	memcpy(bad + 60, &crc, 4); /* little-endian host */
	write_at(f->path, 0, bad, sizeof(bad));
	open_fails(f->path, VOL, RS, "version 2");

	/* Intact again: opens, bit still there. */
	write_at(f->path, 0, hdr, sizeof(hdr));
	b = open_ok(f->path, VOL, RS);
	assert_int_equal(bitmap_dirty_regions(b), 1);
	bitmap_close(b);

	/* Truncated, then empty. */
	assert_int_equal(truncate(f->path, (off_t)(PAGE + 2 * PAGE)), 0);
	open_fails(f->path, VOL, RS, "(truncated?)");
	assert_int_equal(truncate(f->path, 0), 0);
	open_fails(f->path, VOL, RS, "not a frep bitmap (size 0)");
	assert_int_equal(truncate(f->path, PAGE), 0);
	open_fails(f->path, VOL, RS, "not a frep bitmap (bad magic)");
}

/* 1 TiB at the default region: 2^24 regions, 2 MiB of bits, opened in well under a second. */
static void test_one_tib(void **state)
{
	struct fixture *f = *state;
	uint64_t t0 = now_ms(), s, e;
	struct bitmap *b = open_ok(f->path, TIB, BITMAP_DEFAULT_REGION);
	uint64_t t_create = now_ms() - t0;

	assert_int_equal(bitmap_regions(b), UINT64_C(1) << 24);
	/* 2 MiB of bits, plus a header page and a little per-page overhead (8 of 4096 bytes). */
	uint64_t size = file_size(f->path);
	assert_true(size >= PAGE + 2 * MIB);
	assert_true(size <= PAGE + 2 * MIB + 2 * PAGE);

	/* Touching one region costs one sync, however big the volume. */
	unsigned calls = fdatasync_calls;
	bitmap_set_range(b, TIB / 2, 4096);
	assert_int_equal(bitmap_sync(b), 0);
	assert_int_equal(fdatasync_calls, calls + 1);
	assert_int_equal(bitmap_next_dirty(b, 0, &s, &e), 1);
	assert_int_equal(s, TIB / 2);
	assert_int_equal(e, TIB / 2 + BITMAP_DEFAULT_REGION);

	bitmap_set_all(b);
	assert_int_equal(bitmap_sync(b), 0);
	bitmap_close(b);

	t0 = now_ms();
	b = open_ok(f->path, TIB, BITMAP_DEFAULT_REGION);
	uint64_t t_open = now_ms() - t0;
	assert_int_equal(bitmap_dirty_regions(b), UINT64_C(1) << 24);
	assert_int_equal(bitmap_next_dirty(b, 0, &s, &e), 1);
	assert_int_equal(s, 0);
	assert_int_equal(e, TIB);
	bitmap_close(b);
	/* Generous for sanitizer builds on a loaded machine; typically a few ms. */
	if (t_create > 2000 || t_open > 2000)
		fail_msg("1 TiB bitmap: create %" PRIu64 " ms, open %" PRIu64 " ms", t_create,
			 t_open);
	print_message("1 TiB bitmap: %" PRIu64 " bytes, create %" PRIu64 " ms, open %" PRIu64
		      " ms\n",
		      size, t_create, t_open);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_geometry_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_range_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clear_range_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_next_dirty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_ops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_io_and_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_tib, setup, teardown),
	};
	log_init("test-bitmap", LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
