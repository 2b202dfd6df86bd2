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
	/*
	 * Mirror with preallocation (frep-server --preallocate=full): volume_punch
	 * zeroes with FALLOC_FL_ZERO_RANGE instead, so the blocks stay reserved.
	 */
	bool keep_space;
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
/*
 * Deallocates (reads return zeros): punch hole; block device: BLKDISCARD or
 * zeros. With v->keep_space it zeroes instead (FALLOC_FL_ZERO_RANGE, or where
 * that is missing, as on tmpfs, a punch allocated again): reads return zeros
 * and the blocks stay allocated (mostly as unwritten extents, which SEEK_DATA
 * on ext4, XFS and tmpfs reports as holes unless the range is still cached
 * or the file system wrote zeroes instead, as ext4 does for short ranges).
 */
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
/*
 * Allocates [off, off + len) without changing what it reads (fallocate mode
 * 0), so that later writes there cannot fail for lack of space. Block devices
 * need nothing. 0, or -1 with errno (ENOSPC, EDQUOT: no room).
 */
int volume_allocate(const struct volume *v, uint64_t off, uint64_t len);
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
 * Bytes of the volume that are allocated as volume_next_data sees them (the
 * data a full copy sends; block devices count whole). 0, or -1 with errno.
 */
int volume_allocated(const struct volume *v, uint64_t *bytes);

/*
 * Mirror side: creates DIR/extent.0 .. extent.(n-1) with the given sizes, their
 * space reserved with fallocate, or all holes when sparse (ftruncate), or
 * validates existing ones (same count and sizes). Then opens them as volume v.
 * On failure err says what, and *no_space is set when the cause is
 * ENOSPC/EDQUOT.
 */
int volume_create_or_validate(struct volume *v, const char *name, const char *dir,
			      const uint64_t *sizes, unsigned n, bool sparse, bool *created,
			      bool *no_space, char *err, size_t err_len);

#endif
