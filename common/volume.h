/* Volume: an ordered list of extents (files or block devices) seen as one address space. */
#ifndef FREP_VOLUME_H
#define FREP_VOLUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct extent {
	char *path;	/* owned */
	int fd;
	uint64_t start; /* volume offset of the extent's first byte */
	uint64_t size;
	bool is_blockdev;
};

struct volume {
	char *name; /* owned */
	struct extent *ext; /* owned, n entries, in address order */
	unsigned n;
	uint64_t size; /* sum of extent sizes */
};

/*
 * Opens existing extents (regular files or block devices) read-write.
 * Sizes come from fstat or BLKGETSIZE64. 0, or -1 with err filled.
 * Caller releases with volume_close.
 */
int volume_open(struct volume *v, const char *name, char *const *paths, unsigned n, char *err,
		size_t err_len);
/* The same, read-only: a reader in another process (a snapshot's export). */
int volume_open_readonly(struct volume *v, const char *name, char *const *paths, unsigned n,
			 char *err, size_t err_len);
void volume_close(struct volume *v);

/*
 * Maps [off, off + len) to its first piece: extent index, offset inside it, and
 * bytes of the range that lie in that extent. -1 (errno EINVAL) if the range is
 * empty, overflows or leaves the volume. O(log n) in extents.
 */
int volume_map(const struct volume *v, uint64_t off, uint64_t len, unsigned *idx,
	       uint64_t *ext_off, uint64_t *run);

/* Whole-range I/O across extent boundaries. 0, or -1 with errno (EINVAL out of range). */
int volume_pread(const struct volume *v, void *buf, uint64_t len, uint64_t off);
int volume_pwrite(const struct volume *v, const void *buf, uint64_t len, uint64_t off);
/* Deallocates (reads return zeros): punch hole; block device: BLKDISCARD or zeros. */
int volume_punch(const struct volume *v, uint64_t off, uint64_t len);
/* Zeroes, allocated or not: FALLOC_FL_ZERO_RANGE, else writes zeros. */
int volume_zero(const struct volume *v, uint64_t off, uint64_t len);
/*
 * Online verify (spec VFY-2): the XXH3-128 of [off, off + len), read through
 * buf (buf_len bytes, any size > 0) in pieces, into out in canonical
 * (big-endian) form. Both sides hash this way, so their hashes compare.
 * 0, or -1 with errno.
 */
int volume_hash(const struct volume *v, uint64_t off, uint64_t len, void *buf, size_t buf_len,
		uint8_t out[16]);
/* fdatasync every extent. */
int volume_sync(const struct volume *v);

/*
 * Finds the first allocated range at or after off: *data_off..*data_end
 * (end exclusive, never crossing an extent end). Returns 1 if found, 0 if the
 * rest of the volume is a hole, -1 on error. Block devices are all data.
 */
int volume_next_data(const struct volume *v, uint64_t off, uint64_t *data_off,
		     uint64_t *data_end);

/*
 * Mirror side: creates DIR/extent.0 .. extent.(n-1) with the given sizes and
 * reserves their space with fallocate, or validates existing ones (same count
 * and sizes). Then opens them as volume v. On failure err says what, and
 * *no_space is set when the cause is ENOSPC/EDQUOT.
 */
int volume_create_or_validate(struct volume *v, const char *name, const char *dir,
			      const uint64_t *sizes, unsigned n, bool *created, bool *no_space,
			      char *err, size_t err_len);

#endif
