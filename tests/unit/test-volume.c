/* Unit tests of volumes: extent mapping, I/O across extents, holes, and mirror-side creation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

/*
 * Fault injection: volume.c's fallocate calls go through test_fallocate
 * (fcntl.h is included first, so its declaration keeps the real name).
 */
#include <errno.h>
#include <fcntl.h>
static int fail_fallocate_call; /* 1-based call number to fail, 0: none */
static int fail_fallocate_errno;
static int fallocate_calls;
static int test_fallocate(int fd, int mode, off_t off, off_t len)
{
	if (++fallocate_calls == fail_fallocate_call) {
		errno = fail_fallocate_errno;
		return -1;
	}
	return fallocate(fd, mode, off, len);
}
#define fallocate test_fallocate

#include "../../common/volume.c"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Three extents of different sizes: 8 KiB, 12 KiB, 4 KiB. */
static const uint64_t sizes3[] = { 8192, 12288, 4096 };

struct fixture {
	char dir[64];
	char *paths[3];
	struct volume v;
};

static void rm_rf(const char *path)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	strcpy(f->dir, "/tmp/frep-test-volume-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	for (unsigned i = 0; i < 3; i++) {
		f->paths[i] = malloc(128);
		assert_non_null(f->paths[i]);
		snprintf(f->paths[i], 128, "%s/part%u", f->dir, i);
		int fd = open(f->paths[i], O_RDWR | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, (off_t)sizes3[i]), 0); /* sparse */
		close(fd);
	}
	char err[8192] = "";
	if (volume_open(&f->v, "vol", f->paths, 3, err, sizeof(err)) < 0)
		fail_msg("volume_open: %s", err);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	volume_close(&f->v);
	for (unsigned i = 0; i < 3; i++)
		free(f->paths[i]);
	rm_rf(f->dir);
	free(f);
	return 0;
}

static void pattern(unsigned char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(i * 31 + seed * 7 + 1);
}

static void read_file(const char *path, void *buf, size_t len, off_t off)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

/* ------------------------------------------------------------------ mapping */

static void test_open_layout(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(f->v.n, 3);
	assert_int_equal(f->v.size, 8192 + 12288 + 4096);
	assert_int_equal(f->v.ext[0].start, 0);
	assert_int_equal(f->v.ext[1].start, 8192);
	assert_int_equal(f->v.ext[2].start, 20480);
	assert_string_equal(f->v.name, "vol");
	assert_false(f->v.ext[1].is_blockdev);
}

static void test_map_table(void **state)
{
	struct fixture *f = *state;
	const struct {
		uint64_t off, len;
		int rc;
		unsigned idx;
		uint64_t ext_off, run;
	} t[] = {
		{ 0, 1, 0, 0, 0, 1 },		   /* first byte */
		{ 0, 24576, 0, 0, 0, 8192 },	   /* whole volume: first piece */
		{ 8191, 1, 0, 0, 8191, 1 },	   /* last byte of extent 0 */
		{ 8191, 2, 0, 0, 8191, 1 },	   /* crossing 0 -> 1 */
		{ 8192, 1, 0, 1, 0, 1 },	   /* first byte of extent 1 */
		{ 8192, 12288, 0, 1, 0, 12288 },   /* exactly extent 1 */
		{ 20479, 2, 0, 1, 12287, 1 },	   /* crossing 1 -> 2 */
		{ 20480, 4096, 0, 2, 0, 4096 },	   /* exactly to the end */
		{ 24575, 1, 0, 2, 4095, 1 },	   /* last byte */
		{ 24576, 1, -1, 0, 0, 0 },	   /* at the end */
		{ 24575, 2, -1, 0, 0, 0 },	   /* past the end */
		{ 0, 24577, -1, 0, 0, 0 },	   /* one byte too long */
		{ 100000, 1, -1, 0, 0, 0 },	   /* far past */
		{ 0, 0, -1, 0, 0, 0 },		   /* empty */
		{ UINT64_MAX, 2, -1, 0, 0, 0 },	   /* off + len overflows */
		{ 1, UINT64_MAX, -1, 0, 0, 0 },	   /* len overflows */
		{ 8192, UINT64_MAX - 8191, -1, 0, 0, 0 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		unsigned idx = 99;
		uint64_t eo = 99, run = 99;
		errno = 0;
		int rc = volume_map(&f->v, t[i].off, t[i].len, &idx, &eo, &run);
		if (rc != t[i].rc)
			fail_msg("case %zu: rc %d, want %d", i, rc, t[i].rc);
		if (rc < 0) {
			assert_int_equal(errno, EINVAL);
			continue;
		}
		if (idx != t[i].idx || eo != t[i].ext_off || run != t[i].run)
			fail_msg("case %zu: got (%u, %" PRIu64 ", %" PRIu64 ") want (%u, %" PRIu64
				 ", %" PRIu64 ")", i, idx, eo, run, t[i].idx, t[i].ext_off, t[i].run);
	}
}

/* ----------------------------------------------------------------- data I/O */

static void test_rw_across_extents(void **state)
{
	struct fixture *f = *state;
	unsigned char w[24576], r[24576], part[12288];

	/* 5000..15000 crosses extent 0 -> 1. */
	pattern(w, 10000, 1);
	assert_int_equal(volume_pwrite(&f->v, w, 10000, 5000), 0);
	memset(r, 0, sizeof(r));
	assert_int_equal(volume_pread(&f->v, r, 10000, 5000), 0);
	assert_memory_equal(w, r, 10000);
	/* The bytes land at their home locations. */
	read_file(f->paths[0], part, 3192, 5000);
	assert_memory_equal(part, w, 3192);
	read_file(f->paths[1], part, 6808, 0);
	assert_memory_equal(part, w + 3192, 6808);

	/* The whole volume, all three extents. */
	pattern(w, sizeof(w), 2);
	assert_int_equal(volume_pwrite(&f->v, w, sizeof(w), 0), 0);
	assert_int_equal(volume_sync(&f->v), 0);
	assert_int_equal(volume_pread(&f->v, r, sizeof(r), 0), 0);
	assert_memory_equal(w, r, sizeof(w));
	read_file(f->paths[2], part, 4096, 0);
	assert_memory_equal(part, w + 20480, 4096);

	/* Out of range: refused before any I/O, nothing changed. */
	unsigned char junk[4096];
	memset(junk, 0xee, sizeof(junk));
	assert_int_equal(volume_pwrite(&f->v, junk, 4096, 24576 - 4095), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(volume_pwrite(&f->v, junk, 2, UINT64_MAX), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(volume_pread(&f->v, junk, 1, 24576), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(volume_pread(&f->v, r, sizeof(r), 0), 0);
	assert_memory_equal(w, r, sizeof(w));
	struct stat st;
	assert_int_equal(stat(f->paths[2], &st), 0);
	assert_int_equal(st.st_size, 4096);

	/* Empty transfers inside the volume are no-ops; past it they are errors. */
	assert_int_equal(volume_pread(&f->v, r, 0, 24576), 0);
	assert_int_equal(volume_pwrite(&f->v, w, 0, 100), 0);
	assert_int_equal(volume_pread(&f->v, r, 0, 24577), -1);
	assert_int_equal(errno, EINVAL);
}

/*
 * Online verify's region hash (spec VFY-2): the XXH3-128 of the bytes, in
 * canonical form, whatever the extents and the read buffer's size.
 */
static void test_hash(void **state)
{
	struct fixture *f = *state;
	static unsigned char w[24576], buf[65536];
	uint8_t h[16], want[16];
	const struct { uint64_t off, len; } ranges[] = { { 0, 24576 }, { 5000, 10000 }, { 8191, 2 },
							  { 20480, 4096 } };
	const size_t bufs[] = { 1, 4095, 4096, sizeof(buf) };

	/* Known answer: 4096 zero bytes, as `xxhsum -H2` prints it. */
	static const uint8_t zero4k[16] = { 0x3e, 0xe8, 0xdc, 0x4f, 0x9e, 0x7e, 0xe4, 0x95,
					    0x93, 0xd7, 0x6f, 0xe1, 0x48, 0xc6, 0x89, 0xba };
	assert_int_equal(volume_hash(&f->v, 20480, 4096, buf, sizeof(buf), h), 0);
	assert_memory_equal(h, zero4k, sizeof(h));

	pattern(w, sizeof(w), 3);
	assert_int_equal(volume_pwrite(&f->v, w, sizeof(w), 0), 0);
	for (size_t i = 0; i < ARRAY_SIZE(ranges); i++) {
		XXH128_canonicalFromHash((XXH128_canonical_t *)want,
					 XXH3_128bits(w + ranges[i].off, ranges[i].len));
		for (size_t j = 0; j < ARRAY_SIZE(bufs); j++) {
			memset(h, 0, sizeof(h));
			assert_int_equal(volume_hash(&f->v, ranges[i].off, ranges[i].len, buf, bufs[j], h), 0);
			assert_memory_equal(h, want, sizeof(h));
		}
	}
	/* One byte changed, in the last extent: another hash. */
	XXH128_canonicalFromHash((XXH128_canonical_t *)want, XXH3_128bits(w, sizeof(w)));
	w[24000] ^= 1;
	assert_int_equal(volume_pwrite(&f->v, w + 24000, 1, 24000), 0);
	assert_int_equal(volume_hash(&f->v, 0, sizeof(w), buf, sizeof(buf), h), 0);
	assert_memory_not_equal(h, want, sizeof(h));
	/* Past the end: the read fails, EINVAL. */
	assert_int_equal(volume_hash(&f->v, 20480, 4097, buf, sizeof(buf), h), -1);
	assert_int_equal(errno, EINVAL);
}

static void test_punch_zero_next_data(void **state)
{
	struct fixture *f = *state;
	unsigned char w[24576], r[24576], zero[24576] = { 0 };
	uint64_t d = 0, e = 0;

	/* Freshly truncated files are all holes. */
	assert_int_equal(volume_next_data(&f->v, 0, &d, &e), 0);

	/* One block in extent 1 at 4096: found from any offset before it. */
	pattern(w, 4096, 3);
	assert_int_equal(volume_pwrite(&f->v, w, 4096, 8192 + 4096), 0);
	assert_int_equal(volume_next_data(&f->v, 0, &d, &e), 1);
	assert_int_equal(d, 12288);
	assert_int_equal(e, 16384);
	assert_int_equal(volume_next_data(&f->v, 13000, &d, &e), 1);
	assert_int_equal(d, 13000);
	assert_int_equal(e, 16384);
	assert_int_equal(volume_next_data(&f->v, 16384, &d, &e), 0);
	assert_int_equal(volume_next_data(&f->v, 24576, &d, &e), 0);
	assert_int_equal(volume_next_data(&f->v, UINT64_MAX, &d, &e), 0);

	/* Data in extents 0 and 2: runs never cross an extent end. */
	pattern(w, sizeof(w), 4);
	assert_int_equal(volume_pwrite(&f->v, w, sizeof(w), 0), 0);
	assert_int_equal(volume_next_data(&f->v, 100, &d, &e), 1);
	assert_int_equal(d, 100);
	assert_int_equal(e, 8192);
	assert_int_equal(volume_next_data(&f->v, 20480, &d, &e), 1);
	assert_int_equal(d, 20480);
	assert_int_equal(e, 24576);

	/* Punch across extents 0 -> 1: reads zeros, becomes a hole, size kept. */
	assert_int_equal(volume_punch(&f->v, 4096, 8192), 0);
	assert_int_equal(volume_pread(&f->v, r, sizeof(r), 0), 0);
	assert_memory_equal(r, w, 4096);
	assert_memory_equal(r + 4096, zero, 8192);
	assert_memory_equal(r + 12288, w + 12288, sizeof(w) - 12288);
	assert_int_equal(volume_next_data(&f->v, 4096, &d, &e), 1);
	assert_int_equal(d, 12288);
	assert_int_equal(e, 20480);
	struct stat st;
	assert_int_equal(stat(f->paths[0], &st), 0);
	assert_int_equal(st.st_size, 8192);

	/* Punch everything: no data left. */
	assert_int_equal(volume_punch(&f->v, 0, 24576), 0);
	assert_int_equal(volume_next_data(&f->v, 0, &d, &e), 0);
	assert_int_equal(volume_pread(&f->v, r, sizeof(r), 0), 0);
	assert_memory_equal(r, zero, sizeof(r));

	/* Zero across extents 1 -> 2, bytes around it untouched. */
	assert_int_equal(volume_pwrite(&f->v, w, sizeof(w), 0), 0);
	assert_int_equal(volume_zero(&f->v, 20000, 1000), 0);
	assert_int_equal(volume_pread(&f->v, r, sizeof(r), 0), 0);
	assert_memory_equal(r, w, 20000);
	assert_memory_equal(r + 20000, zero, 1000);
	assert_memory_equal(r + 21000, w + 21000, sizeof(w) - 21000);
	assert_int_equal(stat(f->paths[2], &st), 0);
	assert_int_equal(st.st_size, 4096);

	/* Range checks as for writes. */
	assert_int_equal(volume_punch(&f->v, 24000, 1000), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(volume_zero(&f->v, UINT64_MAX, 2), -1);
	assert_int_equal(errno, EINVAL);
}

static void test_open_errors(void **state)
{
	struct fixture *f = *state;
	struct volume v;
	char err[8192], p[128], *paths[1] = { p };

	snprintf(p, sizeof(p), "%s/missing", f->dir);
	assert_int_equal(volume_open(&v, "vol", paths, 1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "No such file"));

	snprintf(p, sizeof(p), "%s/empty", f->dir);
	close(open(p, O_RDWR | O_CREAT, 0600));
	assert_int_equal(volume_open(&v, "vol", paths, 1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "size is 0"));

	snprintf(p, sizeof(p), "%s", f->dir);
	assert_int_equal(volume_open(&v, "vol", paths, 1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "Is a directory"));

	assert_int_equal(volume_open(&v, "vol", paths, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "must be 1..1024"));
	/* A failed open leaves nothing to close. */
	assert_null(v.ext);
	assert_null(v.name);
}

/*
 * Thin mirrors: allocated bytes count what SEEK_DATA finds; volume_allocate
 * reserves blocks without changing what reads return; with keep_space a punch
 * zeroes and keeps the blocks.
 */
static blkcnt_t blocks(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_blocks;
}

static void test_allocate_keep_space(void **state)
{
	struct fixture *f = *state;
	unsigned char w[4096], r[8192], zero[8192] = { 0 };
	uint64_t bytes;

	assert_int_equal(volume_allocated(&f->v, &bytes), 0);
	assert_int_equal(bytes, 0);
	pattern(w, sizeof(w), 7);
	assert_int_equal(volume_pwrite(&f->v, w, sizeof(w), 0), 0);
	assert_int_equal(volume_pwrite(&f->v, w, sizeof(w), 20480), 0);
	assert_int_equal(volume_allocated(&f->v, &bytes), 0);
	assert_int_equal(bytes, 8192);

	/* Extent 1 (8192..20480) is a hole: allocating it reserves, reads stay zero. */
	assert_int_equal(blocks(f->paths[1]), 0);
	assert_int_equal(volume_allocate(&f->v, 8192, 8192), 0);
	assert_true(blocks(f->paths[1]) >= 8192 / 512);
	assert_int_equal(volume_pread(&f->v, r, sizeof(r), 8192), 0);
	assert_memory_equal(r, zero, sizeof(r));
	struct stat st;
	assert_int_equal(stat(f->paths[1], &st), 0);
	assert_int_equal(st.st_size, 12288); /* KEEP_SIZE */
	assert_int_equal(volume_allocate(&f->v, 20000, 8192), -1);
	assert_int_equal(errno, EINVAL);

	/* keep_space: the punch reads zeros, the blocks stay. */
	blkcnt_t before = blocks(f->paths[0]);
	f->v.keep_space = true;
	assert_int_equal(volume_punch(&f->v, 0, 4096), 0);
	assert_int_equal(blocks(f->paths[0]), before);
	assert_int_equal(volume_pread(&f->v, r, 4096, 0), 0);
	assert_memory_equal(r, zero, 4096);
	/* Without ZERO_RANGE (tmpfs): punched and allocated again, the same outcome. */
	assert_int_equal(volume_pwrite(&f->v, w, sizeof(w), 0), 0);
	fail_fallocate_call = fallocate_calls + 1;
	fail_fallocate_errno = EOPNOTSUPP;
	assert_int_equal(volume_punch(&f->v, 0, 4096), 0);
	fail_fallocate_call = 0;
	assert_int_equal(blocks(f->paths[0]), before);
	assert_int_equal(volume_pread(&f->v, r, 4096, 0), 0);
	assert_memory_equal(r, zero, 4096);
	/* Without it the punch gives the blocks back. */
	f->v.keep_space = false;
	assert_int_equal(volume_pwrite(&f->v, w, sizeof(w), 0), 0);
	assert_int_equal(volume_punch(&f->v, 0, 8192), 0);
	assert_int_equal(blocks(f->paths[0]), 0);
}

static void test_create_sparse(void **state)
{
	struct fixture *f = *state;
	struct volume v;
	char dir[128], err[8192], p[320];
	bool created, no_space;

	snprintf(dir, sizeof(dir), "%s/thin", f->dir);
	if (volume_create_or_validate(&v, "m", dir, sizes3, 3, true, &created, &no_space, err,
				      sizeof(err)) < 0)
		fail_msg("create sparse: %s", err);
	assert_true(created);
	assert_int_equal(v.size, 24576);
	for (unsigned i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/extent.%u", dir, i);
		assert_int_equal(blocks(p), 0);
	}
	volume_close(&v);
}

/* ------------------------------------------------------- create_or_validate */

static void test_create_validate(void **state)
{
	struct fixture *f = *state;
	struct volume v;
	char dir[128], err[8192], p[320];
	bool created, no_space;
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/mirror", f->dir);
	assert_int_equal(volume_create_or_validate(&v, "m", dir, sizes3, 3, false, &created, &no_space,
						   err, sizeof(err)),
			 0);
	assert_true(created);
	assert_false(no_space);
	assert_int_equal(v.n, 3);
	assert_int_equal(v.size, 24576);
	for (unsigned i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/extent.%u", dir, i);
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_size, sizes3[i]);
		/* Reserved, not sparse. */
		assert_true((uint64_t)st.st_blocks * 512 >= sizes3[i]);
	}
	unsigned char w[100], r[100];
	pattern(w, sizeof(w), 9);
	assert_int_equal(volume_pwrite(&v, w, sizeof(w), 8150), 0);
	volume_close(&v);

	/* Same table: validated, contents kept. */
	assert_int_equal(volume_create_or_validate(&v, "m", dir, sizes3, 3, false, &created, &no_space,
						   err, sizeof(err)),
			 0);
	assert_false(created);
	assert_int_equal(volume_pread(&v, r, sizeof(r), 8150), 0);
	assert_memory_equal(w, r, sizeof(r));
	volume_close(&v);

	/* Count mismatch. */
	err[0] = '\0';
	assert_int_equal(volume_create_or_validate(&v, "m", dir, sizes3, 2, false, &created, &no_space,
						   err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "extent count mismatch"));
	assert_non_null(strstr(err, "expected 2, found 3"));
	assert_false(created);

	/* Size mismatch names the extent and both sizes. */
	const uint64_t other[] = { 8192, 16384, 4096 };
	err[0] = '\0';
	assert_int_equal(volume_create_or_validate(&v, "m", dir, other, 3, false, &created, &no_space,
						   err, sizeof(err)),
			 -1);
	snprintf(p, sizeof(p), "%s/extent.1 size mismatch: expected 16384, found 12288", dir);
	if (!strstr(err, p))
		fail_msg("err lacks \"%s\": %s", p, err);
	/* Validation failures changed nothing. */
	snprintf(p, sizeof(p), "%s/extent.1", dir);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, 12288);
}

static void test_table_malformed(void **state)
{
	struct fixture *f = *state;
	struct volume v;
	char dir[128], err[8192];
	bool created, no_space;
	static uint64_t many[FREP_MAX_EXTENTS + 1];
	const struct {
		const uint64_t *sizes;
		unsigned n;
		const char *why;
	} t[] = {
		{ (const uint64_t[]){ 4096, 4097 }, 2, "extent 1 size 4097" },
		{ (const uint64_t[]){ 4095 }, 1, "extent 0 size 4095" },
		{ (const uint64_t[]){ 4096, 0 }, 2, "extent 1 size 0" },
		{ sizes3, 0, "0 extents" },
		{ many, FREP_MAX_EXTENTS + 1, "1025 extents" },
		{ (const uint64_t[]){ 1ull << 62, 1ull << 62 }, 2, "overflows" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(many); i++)
		many[i] = 4096;
	snprintf(dir, sizeof(dir), "%s/bad", f->dir);
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		err[0] = '\0';
		no_space = true;
		assert_int_equal(volume_create_or_validate(&v, "m", dir, t[i].sizes, t[i].n, false,
							   &created, &no_space, err, sizeof(err)),
				 -1);
		assert_false(no_space);
		assert_non_null(strstr(err, "extent table malformed"));
		if (!strstr(err, t[i].why))
			fail_msg("case %zu: err lacks \"%s\": %s", i, t[i].why, err);
		/* Nothing was created. */
		assert_int_equal(access(dir, F_OK), -1);
	}
	/* The maximum count is fine. */
	assert_int_equal(volume_create_or_validate(&v, "m", dir, many, FREP_MAX_EXTENTS, false, &created,
						   &no_space, err, sizeof(err)),
			 0);
	assert_int_equal(v.n, FREP_MAX_EXTENTS);
	volume_close(&v);
}

/*
 * A full disk while reserving extent.1 (extents are created from the last):
 * no_space is set for ENOSPC and EDQUOT only, and no extent is left behind.
 */
static void test_no_space(void **state)
{
	struct fixture *f = *state;
	const struct {
		int err;
		bool no_space;
	} t[] = { { ENOSPC, true }, { EDQUOT, true }, { EIO, false } };
	struct volume v;
	char dir[128], err[8192], p[320];
	bool created, no_space;

	snprintf(dir, sizeof(dir), "%s/full", f->dir);
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		fallocate_calls = 0;
		fail_fallocate_call = 2;
		fail_fallocate_errno = t[i].err;
		err[0] = '\0';
		int rc = volume_create_or_validate(&v, "m", dir, sizes3, 3, false, &created, &no_space,
						   err, sizeof(err));
		fail_fallocate_call = 0;
		assert_int_equal(rc, -1);
		assert_int_equal(no_space, t[i].no_space);
		assert_false(created);
		snprintf(p, sizeof(p), "reserving 12288 bytes for extent %s/extent.1: %s", dir,
			 strerror(t[i].err));
		if (!strstr(err, p))
			fail_msg("err lacks \"%s\": %s", p, err);
		for (unsigned k = 0; k < 3; k++) {
			snprintf(p, sizeof(p), "%s/extent.%u", dir, k);
			assert_int_equal(access(p, F_OK), -1);
		}
	}
	/* Space again: created. */
	assert_int_equal(volume_create_or_validate(&v, "m", dir, sizes3, 3, false, &created, &no_space,
						   err, sizeof(err)),
			 0);
	assert_true(created);
	volume_close(&v);
}

/* A crash during creation leaves no extent.0: the next call starts over. */
static void test_interrupted_creation(void **state)
{
	struct fixture *f = *state;
	struct volume v;
	char dir[128], err[8192], p[320];
	bool created, no_space;

	snprintf(dir, sizeof(dir), "%s/half", f->dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	for (unsigned i = 2; i <= 5; i++) { /* leftovers of a 6-extent attempt */
		snprintf(p, sizeof(p), "%s/extent.%u", dir, i);
		close(open(p, O_RDWR | O_CREAT, 0600));
	}
	assert_int_equal(volume_create_or_validate(&v, "m", dir, sizes3, 3, false, &created, &no_space,
						   err, sizeof(err)),
			 0);
	assert_true(created);
	volume_close(&v);
	snprintf(p, sizeof(p), "%s/extent.3", dir);
	assert_int_equal(access(p, F_OK), -1);
	assert_int_equal(volume_create_or_validate(&v, "m", dir, sizes3, 3, false, &created, &no_space,
						   err, sizeof(err)),
			 0);
	assert_false(created);
	volume_close(&v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rw_across_extents, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_punch_zero_next_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_allocate_keep_space, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_sparse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_validate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_table_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_space, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupted_creation, setup, teardown),
	};
	log_init("test-volume", LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
