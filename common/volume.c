/* Volume: an ordered list of extents (files or block devices) addressed as one volume. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "volume.h"

/* The state on the stack: its definition is in the "static linking only" part. */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#include "wire.h"

enum volume_limits {
	VOLUME_IO_CHUNK = 1 << 30,	/* bytes per pread/pwrite call */
	VOLUME_ZERO_BUF = 64 * 1024,	/* bytes of zeros written per call as a fallback */
	VOLUME_EXTENT_ALIGN = 4096,	/* mirror extent sizes are multiples of this */
};

static const char zeros[VOLUME_ZERO_BUF];

/* ------------------------------------------------------------ open / close */

static int open_extent(struct extent *e, const char *path, int mode, char *err, size_t err_len)
{
	struct stat st;

	e->fd = -1;
	if (!(e->path = strdup(path))) {
		snprintf(err, err_len, "extent %s: out of memory", path);
		errno = ENOMEM;
		return -1;
	}
	e->fd = open(path, mode | O_CLOEXEC);
	if (e->fd < 0 || fstat(e->fd, &st) < 0) {
		snprintf(err, err_len, "extent %s: %s", path, strerror(errno));
		return -1;
	}
	if (S_ISREG(st.st_mode)) {
		e->size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		e->is_blockdev = true;
		if (ioctl(e->fd, BLKGETSIZE64, &e->size) < 0) {
			snprintf(err, err_len, "extent %s: BLKGETSIZE64: %s", path, strerror(errno));
			return -1;
		}
	} else {
		snprintf(err, err_len, "extent %s: not a regular file or block device", path);
		errno = EINVAL;
		return -1;
	}
	/* An empty extent would make one volume offset belong to two extents. */
	if (e->size == 0) {
		snprintf(err, err_len, "extent %s: size is 0", path);
		errno = EINVAL;
		return -1;
	}
	return 0;
}

static int open_volume(struct volume *v, const char *name, char *const *paths, unsigned n,
		       int mode, char *err, size_t err_len)
{
	memset(v, 0, sizeof(*v));
	if (n < 1 || n > FREP_MAX_EXTENTS) {
		snprintf(err, err_len, "volume %s: %u extents, must be 1..%u", name, n,
			 (unsigned)FREP_MAX_EXTENTS);
		errno = EINVAL;
		return -1;
	}
	if (!(v->name = strdup(name)) || !(v->ext = calloc(n, sizeof(*v->ext)))) {
		snprintf(err, err_len, "volume %s: out of memory", name);
		errno = ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < n; i++)
		v->ext[i].fd = -1;
	v->n = n;
	for (unsigned i = 0; i < n; i++) {
		struct extent *e = &v->ext[i];
		if (open_extent(e, paths[i], mode, err, err_len) < 0)
			goto fail;
		if (e->size > UINT64_MAX - v->size) {
			snprintf(err, err_len, "volume %s: extent sizes overflow", name);
			errno = EOVERFLOW;
			goto fail;
		}
		e->start = v->size;
		v->size += e->size;
	}
	return 0;
fail:;
	int e = errno;
	volume_close(v);
	errno = e;
	return -1;
}

int volume_open(struct volume *v, const char *name, char *const *paths, unsigned n, char *err,
		size_t err_len)
{
	return open_volume(v, name, paths, n, O_RDWR, err, err_len);
}

int volume_open_readonly(struct volume *v, const char *name, char *const *paths, unsigned n,
			 char *err, size_t err_len)
{
	return open_volume(v, name, paths, n, O_RDONLY, err, err_len);
}

void volume_close(struct volume *v)
{
	for (unsigned i = 0; v->ext && i < v->n; i++) {
		if (v->ext[i].fd >= 0)
			close(v->ext[i].fd);
		free(v->ext[i].path);
	}
	free(v->ext);
	free(v->name);
	memset(v, 0, sizeof(*v));
}

/* ---------------------------------------------------------------- mapping */

int volume_map(const struct volume *v, uint64_t off, uint64_t len, unsigned *idx,
	       uint64_t *ext_off, uint64_t *run)
{
	if (len == 0 || off >= v->size || len > v->size - off) {
		errno = EINVAL;
		return -1;
	}
	/* Last extent whose start is <= off. */
	unsigned lo = 0, hi = v->n - 1;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo + 1) / 2;
		if (v->ext[mid].start <= off)
			lo = mid;
		else
			hi = mid - 1;
	}
	const struct extent *e = &v->ext[lo];
	*idx = lo;
	*ext_off = off - e->start;
	*run = e->size - *ext_off < len ? e->size - *ext_off : len;
	return 0;
}

/* Empty ranges are fine inside the volume; anything reaching past it is not. */
static bool range_ok(const struct volume *v, uint64_t off, uint64_t len)
{
	if (off > v->size || len > v->size - off) {
		errno = EINVAL;
		return false;
	}
	return true;
}

/* ---------------------------------------------------------------- data I/O */

static int rw_extent(const struct volume *v, const struct extent *e, char *buf, uint64_t len,
		     uint64_t off, bool write)
{
	while (len > 0) {
		size_t n = len < VOLUME_IO_CHUNK ? (size_t)len : VOLUME_IO_CHUNK;
		ssize_t r = write ? pwrite(e->fd, buf, n, (off_t)off) : pread(e->fd, buf, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int err = r < 0 ? errno : EIO; /* 0: the extent shrank under us */
			log_error(v->name, "%s %s at %" PRIu64 " (%zu bytes): %s",
				  write ? "pwrite" : "pread", e->path, off, n, strerror(err));
			errno = err;
			return -1;
		}
		buf += r;
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
	return 0;
}

static int volume_rw(const struct volume *v, char *buf, uint64_t len, uint64_t off, bool write)
{
	if (!range_ok(v, off, len))
		return -1;
	while (len > 0) {
		unsigned i;
		uint64_t eo, run;
		if (volume_map(v, off, len, &i, &eo, &run) < 0)
			return -1;
		if (rw_extent(v, &v->ext[i], buf, run, eo, write) < 0)
			return -1;
		buf += run;
		off += run;
		len -= run;
	}
	return 0;
}

int volume_pread(const struct volume *v, void *buf, uint64_t len, uint64_t off)
{
	return volume_rw(v, buf, len, off, false);
}

int volume_pwrite(const struct volume *v, const void *buf, uint64_t len, uint64_t off)
{
	return volume_rw(v, (char *)buf, len, off, true);
}

static int write_zeros(const struct volume *v, const struct extent *e, uint64_t len, uint64_t off)
{
	while (len > 0) {
		uint64_t n = len < sizeof(zeros) ? len : sizeof(zeros);
		if (rw_extent(v, e, (char *)zeros, n, off, true) < 0)
			return -1;
		off += n;
		len -= n;
	}
	return 0;
}

/* Where a fallocate mode is not supported. */
enum fallback {
	FB_NONE,	/* nothing to do */
	FB_ZEROS,	/* write zeros */
	FB_REPUNCH,	/* punch, then allocate again (else write zeros): zeroes, keeps the space */
};

/*
 * ZERO_RANGE is missing on tmpfs, among others: a hole allocated again reads
 * zeros too and keeps the space, and costs far less than writing the zeros.
 */
static int repunch(const struct volume *v, const struct extent *e, uint64_t eo, uint64_t run)
{
	if (fallocate(e->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)eo, (off_t)run) == 0 &&
	    fallocate(e->fd, FALLOC_FL_KEEP_SIZE, (off_t)eo, (off_t)run) == 0)
		return 0;
	return write_zeros(v, e, run, eo);
}

/*
 * One fallocate mode over [off, off + len), extent by extent, with the
 * fallback where the file system or device does not support the mode. Block
 * devices take PUNCH_HOLE and ZERO_RANGE too (Linux >= 4.9); the kernel then
 * only uses discard when the device guarantees zeroes afterwards, which plain
 * BLKDISCARD does not.
 */
static int fallocate_range(const struct volume *v, uint64_t off, uint64_t len, int mode,
			   const char *what, enum fallback fallback)
{
	if (!range_ok(v, off, len))
		return -1;
	while (len > 0) {
		unsigned i;
		uint64_t eo, run;
		if (volume_map(v, off, len, &i, &eo, &run) < 0)
			return -1;
		const struct extent *e = &v->ext[i];
		if (fallocate(e->fd, mode, (off_t)eo, (off_t)run) < 0) {
			int err = errno;
			if (err != EOPNOTSUPP && err != EINVAL && err != ENODEV) {
				log_error(v->name, "%s %s at %" PRIu64 " (%" PRIu64 " bytes): %s", what,
					  e->path, eo, run, strerror(err));
				errno = err;
				return -1;
			}
			if (fallback == FB_ZEROS && write_zeros(v, e, run, eo) < 0)
				return -1;
			if (fallback == FB_REPUNCH && repunch(v, e, eo, run) < 0)
				return -1;
		}
		off += run;
		len -= run;
	}
	return 0;
}

int volume_punch(const struct volume *v, uint64_t off, uint64_t len)
{
	if (v->keep_space)
		return fallocate_range(v, off, len, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
				       "zero range", FB_REPUNCH);
	return fallocate_range(v, off, len, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       "punch hole", FB_ZEROS);
}

int volume_zero(const struct volume *v, uint64_t off, uint64_t len)
{
	return fallocate_range(v, off, len, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
			       "zero range", FB_ZEROS);
}

/*
 * KEEP_SIZE: an extent's size is the volume's, never more. Where fallocate
 * is not supported (block devices for this mode) writes allocate anyway.
 */
int volume_allocate(const struct volume *v, uint64_t off, uint64_t len)
{
	return fallocate_range(v, off, len, FALLOC_FL_KEEP_SIZE, "allocate", FB_NONE);
}

int volume_hash(const struct volume *v, uint64_t off, uint64_t len, void *buf, size_t buf_len,
		uint8_t out[16])
{
	XXH3_state_t st;
	if (XXH3_128bits_reset(&st) != XXH_OK)
		goto fail;
	while (len) {
		size_t n = len < buf_len ? (size_t)len : buf_len;
		if (volume_pread(v, buf, n, off) < 0)
			return -1;
		if (XXH3_128bits_update(&st, buf, n) != XXH_OK)
			goto fail;
		off += n;
		len -= n;
	}
	XXH128_canonicalFromHash((XXH128_canonical_t *)out, XXH3_128bits_digest(&st));
	return 0;
fail:
	errno = EINVAL;
	return -1;
}

int volume_sync(const struct volume *v)
{
	int rc = 0;

	for (unsigned i = 0; i < v->n; i++) {
		if (fdatasync(v->ext[i].fd) < 0) {
			int err = errno;
			log_error(v->name, "fdatasync %s: %s", v->ext[i].path, strerror(err));
			errno = err;
			rc = -1;
		}
	}
	return rc;
}

int volume_next_data(const struct volume *v, uint64_t off, uint64_t *data_off,
		     uint64_t *data_end)
{
	unsigned i;
	uint64_t eo, run;

	if (off >= v->size)
		return 0;
	if (volume_map(v, off, 1, &i, &eo, &run) < 0)
		return -1;
	for (; i < v->n; i++, eo = 0) {
		const struct extent *e = &v->ext[i];
		if (e->is_blockdev) {
			*data_off = e->start + eo;
			*data_end = e->start + e->size;
			return 1;
		}
		off_t d = lseek(e->fd, (off_t)eo, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			continue; /* only holes from eo to the end of this extent */
		if (d < 0) {
			int err = errno;
			log_error(v->name, "SEEK_DATA %s at %" PRIu64 ": %s", e->path, eo,
				  strerror(err));
			errno = err;
			return -1;
		}
		if ((uint64_t)d >= e->size)
			continue; /* the file grew past the size we use */
		off_t h = lseek(e->fd, d, SEEK_HOLE);
		if (h < 0) {
			int err = errno;
			log_error(v->name, "SEEK_HOLE %s at %" PRIu64 ": %s", e->path, (uint64_t)d,
				  strerror(err));
			errno = err;
			return -1;
		}
		*data_off = e->start + (uint64_t)d;
		*data_end = e->start + ((uint64_t)h < e->size ? (uint64_t)h : e->size);
		return 1;
	}
	return 0;
}

int volume_allocated(const struct volume *v, uint64_t *bytes)
{
	uint64_t off = 0, d, end;
	int r;

	*bytes = 0;
	while ((r = volume_next_data(v, off, &d, &end)) == 1) {
		*bytes += end - d;
		off = end;
	}
	return r;
}

/* ----------------------------------------------------------- mirror side */

static void extent_path(char *buf, size_t len, const char *dir, unsigned i)
{
	snprintf(buf, len, "%s/extent.%u", dir, i);
}

static int check_table(const uint64_t *sizes, unsigned n, char *err, size_t err_len)
{
	uint64_t total = 0;

	if (n < 1 || n > FREP_MAX_EXTENTS) {
		snprintf(err, err_len, "extent table malformed: %u extents, must be 1..%u", n,
			 (unsigned)FREP_MAX_EXTENTS);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		if (sizes[i] == 0 || sizes[i] % VOLUME_EXTENT_ALIGN) {
			snprintf(err, err_len,
				 "extent table malformed: extent %u size %" PRIu64
				 " is not a non-zero multiple of %u",
				 i, sizes[i], (unsigned)VOLUME_EXTENT_ALIGN);
			return -1;
		}
		if (sizes[i] > (uint64_t)INT64_MAX - total) {
			snprintf(err, err_len, "extent table malformed: total size overflows");
			return -1;
		}
		total += sizes[i];
	}
	return 0;
}

/* Number of consecutive extent.0, extent.1, ... present in dir. */
static int count_existing(const char *dir, unsigned *count, char *err, size_t err_len)
{
	char path[PATH_MAX];
	struct stat st;

	for (*count = 0; *count <= FREP_MAX_EXTENTS; (*count)++) {
		extent_path(path, sizeof(path), dir, *count);
		if (stat(path, &st) == 0)
			continue;
		if (errno == ENOENT)
			return 0;
		snprintf(err, err_len, "extent %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int create_extent(const char *path, uint64_t size, bool sparse, bool *no_space,
			 char *err, size_t err_len)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc = -1, e;

	if (fd < 0) {
		snprintf(err, err_len, "creating extent %s: %s", path, strerror(errno));
		return -1;
	}
	/* Sparse: holes stay holes; each TX is allocated before it is acknowledged. */
	if (sparse && ftruncate(fd, (off_t)size) < 0) {
		e = errno;
		if (e == ENOSPC || e == EDQUOT)
			*no_space = true;
		snprintf(err, err_len, "sizing extent %s to %" PRIu64 " bytes: %s", path, size,
			 strerror(e));
		goto out;
	}
	/* Mode 0 allocates: a full disk shows now, not at some later write. */
	if (!sparse && fallocate(fd, 0, 0, (off_t)size) < 0) {
		e = errno;
		if (e == ENOSPC || e == EDQUOT)
			*no_space = true;
		snprintf(err, err_len, "reserving %" PRIu64 " bytes for extent %s: %s", size, path,
			 strerror(e));
		goto out;
	}
	if (fsync(fd) < 0) {
		snprintf(err, err_len, "fsync extent %s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	e = errno;
	close(fd);
	errno = e;
	return rc;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd), e = errno;
	close(fd);
	errno = e;
	return rc;
}

static void remove_extents(const char *dir, unsigned from, unsigned to)
{
	char path[PATH_MAX];

	for (unsigned i = from; i < to; i++) {
		extent_path(path, sizeof(path), dir, i);
		unlink(path);
	}
}

/*
 * Creates extent.(n-1) down to extent.1, makes them durable, then extent.0:
 * extent.0 exists only once every other extent does, so a crash midway
 * leaves no extent.0 and the next call starts over.
 */
static int create_all(const char *dir, const uint64_t *sizes, unsigned n, bool sparse,
		      bool *no_space, char *err, size_t err_len)
{
	char path[PATH_MAX];

	/* Leftovers of an earlier unfinished creation, possibly with more extents. */
	remove_extents(dir, n, FREP_MAX_EXTENTS + 1);
	for (unsigned i = n; i-- > 0;) {
		if (i == 0 && fsync_dir(dir) < 0) {
			snprintf(err, err_len, "fsync of %s: %s", dir, strerror(errno));
			goto fail;
		}
		extent_path(path, sizeof(path), dir, i);
		if (create_extent(path, sizes[i], sparse, no_space, err, err_len) < 0)
			goto fail;
	}
	if (fsync_dir(dir) < 0) {
		snprintf(err, err_len, "fsync of %s: %s", dir, strerror(errno));
		goto fail;
	}
	return 0;
fail:;
	int e = errno;
	remove_extents(dir, 0, n);
	fsync_dir(dir);
	errno = e;
	return -1;
}

static int validate_all(const char *dir, const uint64_t *sizes, unsigned n, unsigned count,
			char *err, size_t err_len)
{
	char path[PATH_MAX];
	struct stat st;

	if (count != n) {
		snprintf(err, err_len, "extent count mismatch in %s: expected %u, found %u", dir, n,
			 count);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		extent_path(path, sizeof(path), dir, i);
		if (stat(path, &st) < 0) {
			snprintf(err, err_len, "extent %s: %s", path, strerror(errno));
			return -1;
		}
		if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != sizes[i]) {
			snprintf(err, err_len,
				 "extent %s size mismatch: expected %" PRIu64 ", found %" PRIu64, path,
				 sizes[i], (uint64_t)st.st_size);
			return -1;
		}
	}
	return 0;
}

int volume_create_or_validate(struct volume *v, const char *name, const char *dir,
			      const uint64_t *sizes, unsigned n, bool sparse, bool *created,
			      bool *no_space, char *err, size_t err_len)
{
	char **paths = NULL;
	unsigned count;
	int rc = -1;

	memset(v, 0, sizeof(*v));
	*created = false;
	*no_space = false;
	if (check_table(sizes, n, err, err_len) < 0) {
		errno = EINVAL;
		return -1;
	}
	if (strlen(dir) > PATH_MAX - 32) {
		snprintf(err, err_len, "volume directory %s: path too long", dir);
		errno = ENAMETOOLONG;
		return -1;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, err_len, "creating volume directory %s: %s", dir, strerror(errno));
		return -1;
	}
	if (count_existing(dir, &count, err, err_len) < 0)
		return -1;
	if (count == 0) {
		if (create_all(dir, sizes, n, sparse, no_space, err, err_len) < 0)
			return -1;
		*created = true;
		log_info(name, "created %u extents in %s (%s)", n, dir,
			 sparse ? "sparse" : "space reserved");
	} else if (validate_all(dir, sizes, n, count, err, err_len) < 0) {
		errno = EINVAL;
		return -1;
	}

	if (!(paths = calloc(n, sizeof(*paths)))) {
		snprintf(err, err_len, "volume %s: out of memory", name);
		goto out;
	}
	for (unsigned i = 0; i < n; i++) {
		if (!(paths[i] = malloc(PATH_MAX))) {
			snprintf(err, err_len, "volume %s: out of memory", name);
			goto out;
		}
		extent_path(paths[i], PATH_MAX, dir, i);
	}
	rc = volume_open(v, name, paths, n, err, err_len);
out:
	for (unsigned i = 0; paths && i < n; i++)
		free(paths[i]);
	free(paths);
	return rc;
}
