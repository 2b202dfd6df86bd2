/* Dirty-region bitmap: which regions of a master volume may differ from the mirror (resync map). */
#ifndef FREP_BITMAP_H
#define FREP_BITMAP_H

#include <stddef.h>
#include <stdint.h>

/*
 * One bit per region of the volume, persisted beside the journal, as DRBD's
 * bitmap and VVR's data change map. A set bit means "this region may hold
 * writes the mirror does not have"; OUTOFSYNC resyncs only set regions.
 *
 * Crash rule: a bit is never lost. A bit made durable by bitmap_sync stays
 * set on disk until bitmap_clear_range/bitmap_clear_all plus a later
 * bitmap_sync, and a page torn by power loss reads back as all dirty. Extra
 * dirty bits after a crash are allowed (they only cost resync bytes); a
 * missing one would be silent data loss on resync. When to clear is the
 * caller's decision: only once the region's data is durable on the mirror.
 *
 * Default region size, 64 KiB, because:
 *  - the bitmap costs 2 MiB of memory and file per TiB of volume (32 MiB for
 *    16 TiB), so the whole map stays in memory and opens in milliseconds.
 *    DRBD's 4 KiB regions would cost 32 MiB per TiB;
 *  - one isolated 4 KiB write resyncs at most 64 KiB (16x for purely random
 *    4 KiB writes, 1x for sequential or clustered ones, which dominate:
 *    file-system journals, database logs, extents). VVR's DCM goes the other
 *    way with regions of megabytes, which keeps the map tiny but makes a
 *    scattered crack resync far more than was written;
 *  - a 64 KiB chunk is a good unit for the resync itself: large enough that
 *    reads and frames run at disk and TLS speed, small enough to pipeline;
 *  - one 4 KiB bitmap page covers ~2 GiB of volume, so a burst of writes
 *    dirties few pages and bitmap_sync writes little (one page + one
 *    fdatasync ~ 0.14 ms on this project's disks).
 */
#define BITMAP_DEFAULT_REGION (64u * 1024u)

enum bitmap_limits {
	BITMAP_MIN_REGION = 4096,	/* one block: smaller regions only cost space */
	BITMAP_MAX_REGION = 1u << 30,	/* 1 GiB */
	BITMAP_PAGE_SIZE = 4096,	/* unit of on-disk writes */
};
/* 256 MiB of bits in memory at most: 128 TiB at 64 KiB regions, 2 EiB at 1 GiB. */
#define BITMAP_MAX_REGIONS (UINT64_C(1) << 31)

struct bitmap;

/*
 * Opens or creates the bitmap at path for a volume of volume_size bytes cut
 * into region_size-byte regions (a power of two in BITMAP_MIN_REGION..
 * BITMAP_MAX_REGION; the last region may be partial). A new file starts all
 * clean and is created durably (written as path.new, fsync'd, renamed, the
 * directory fsync'd). An existing file must match: magic, version, header
 * CRC, volume_size and region_size, file length; any mismatch fails with a
 * message naming the field. A bit page whose checksum fails (a write torn by
 * power loss) is taken as all dirty and logged, never as clean.
 * volume is borrowed for the call and copied (for log lines), may be NULL.
 * Returns NULL with err filled and errno set. Caller frees with bitmap_close.
 *
 * Not thread-safe: the caller serialises every call on one bitmap (const
 * ones included) under its own lock. bitmap_sync does disk I/O.
 */
struct bitmap *bitmap_open(const char *path, uint64_t volume_size, uint32_t region_size,
			   const char *volume, char *err, size_t err_len);
/* Closes without syncing: anything not synced is dropped, as in a crash. NULL is a no-op. */
void bitmap_close(struct bitmap *b);

/*
 * Marks every region touching [off, off + len) dirty, in memory. Parts past
 * the end of the volume are ignored (no overflow for any off, len); len 0 is
 * a no-op. Cost O(regions touched / 64). Only pages whose bits change are
 * queued for bitmap_sync, so re-dirtying a dirty region costs no I/O.
 */
void bitmap_set_range(struct bitmap *b, uint64_t off, uint64_t len);
/*
 * Clears regions lying fully inside [off, off + len) (the partial last
 * region counts as full when the range reaches the end of the volume), in
 * memory; durable at the next bitmap_sync.
 */
void bitmap_clear_range(struct bitmap *b, uint64_t off, uint64_t len);
void bitmap_set_all(struct bitmap *b); /* --resync=full, first copy */
void bitmap_clear_all(struct bitmap *b);

/*
 * Writes every changed 4 KiB page (pwrite) and fdatasyncs: every set and
 * clear made so far is then durable. Nothing changed: returns 0 at once,
 * with no I/O. On failure the pages stay queued, so the next call rewrites
 * them (a failed fdatasync may have dropped the page cache's copy); 0, or -1
 * with errno and a logged error.
 */
int bitmap_sync(struct bitmap *b);

/*
 * Finds the first dirty run at or after off: the first dirty region that
 * contains or follows off, through the last dirty region after it without a
 * clean one between. Returns 1 with [*start, *end) (start region-aligned,
 * so it may be below off; end region-aligned or the volume size), 0 when
 * no region at or after off is dirty. Word-at-a-time scan.
 */
int bitmap_next_dirty(const struct bitmap *b, uint64_t off, uint64_t *start, uint64_t *end);

uint64_t bitmap_dirty_regions(const struct bitmap *b); /* O(1) */
uint64_t bitmap_regions(const struct bitmap *b);       /* regions in the volume */
uint32_t bitmap_region_size(const struct bitmap *b);

#endif
