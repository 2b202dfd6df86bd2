/* Dirty-region bitmap: one bit per volume region, in memory, persisted in checksummed pages. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bitmap.h"
#include "log.h"
#include "util.h"

/*
 * File layout (every integer little-endian; the file length never changes
 * after creation, so in-place page writes need only fdatasync):
 *
 *   0            4096         8192                      4096 * (1 + pages)
 *   +------------+------------+------------+- ... -----+
 *   | header     | bit page 0 | bit page 1 |           |
 *   +------------+------------+------------+- ... -----+
 *
 * Header (first 64 bytes of its page, the rest zero; written once, at
 * creation, so it can never be torn later):
 *
 *   0       4         8             16            20          24        32      40     60    64
 *   +-------+---------+-------------+-------------+-----------+---------+-------+------+-----+
 *   | magic | version | volume_size | region_size | page_bits | regions | pages | zero | crc |
 *   | FRBM  |         |             |             |           |         |       |      |     |
 *   +-------+---------+-------------+-------------+-----------+---------+-------+------+-----+
 *   crc = CRC32C of bytes 0..59.
 *
 * Bit page (BITMAP_PAGE_SIZE bytes, rewritten whole by bitmap_sync):
 *
 *   0                                        4088    4092  4096
 *   +----------------------------------------+-------+-----+
 *   | 511 words of 64 bits = 32704 regions   | index | crc |
 *   +----------------------------------------+-------+-----+
 *   Region r is bit r % 64 of word r / 64 (word w in page w / 511), i.e.
 *   byte r / 8, bit r % 8 of the bit area. Bits past the last region are 0.
 *   index = page number, so a page written to the wrong place fails.
 *   crc = CRC32C of bytes 0..4091.
 *
 * Why a checksum per page: power loss can tear a page write at sector
 * granularity. A torn page mixes old and new sectors, which would be safe
 * bit by bit, but garbage or a page of zeros would silently clear bits. A
 * page that fails its checksum is therefore loaded as all dirty: the cost is
 * a larger resync of up to 32704 regions, never a lost region.
 */

#define BITMAP_MAGIC 0x4d425246u /* "FRBM" */
#define BITMAP_VERSION 1u

enum bitmap_layout {
	BM_HDR_AREA = BITMAP_PAGE_SIZE,			 /* bytes before page 0 */
	BM_WORDS_PER_PAGE = (BITMAP_PAGE_SIZE - 8) / 8, /* 511 */
	BM_BITS_PER_PAGE = BM_WORDS_PER_PAGE * 64,	 /* 32704 */
	BM_IO_PAGES = 64, /* pages per pread/pwrite when creating and loading */
};

struct disk_hdr {
	uint32_t magic;
	uint32_t version;
	uint64_t volume_size;
	uint32_t region_size;
	uint32_t page_bits;
	uint64_t regions;
	uint64_t pages;
	uint8_t zero[20];
	uint32_t crc;
};
_Static_assert(sizeof(struct disk_hdr) == 64, "bitmap header layout");

struct disk_page {
	uint64_t words[BM_WORDS_PER_PAGE];
	uint32_t index;
	uint32_t crc;
};
_Static_assert(sizeof(struct disk_page) == BITMAP_PAGE_SIZE, "bitmap page layout");

struct bitmap {
	int fd;
	char *path;   /* owned */
	char *volume; /* owned, may be NULL */
	uint64_t volume_size;
	uint32_t region_size;
	unsigned shift;	  /* log2(region_size) */
	uint64_t regions; /* ceil(volume_size / region_size) */
	uint64_t nwords;  /* ceil(regions / 64) */
	uint64_t pages;	  /* ceil(regions / BM_BITS_PER_PAGE) */
	uint64_t *words;  /* the bits; bits >= regions are always 0 */
	uint64_t dirty;	  /* set bits */
	uint8_t *queued;  /* queued[p]: page p changed since the last successful sync */
	uint64_t nqueued;
};

/* ------------------------------------------------------------ small helpers */

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO; /* length was checked: the file shrank under us */
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static uint64_t page_off(uint64_t page)
{
	return BM_HDR_AREA + page * BITMAP_PAGE_SIZE;
}

/* Mask of bits lo..hi (inclusive, 0..63) of a word. */
static uint64_t bits_mask(unsigned lo, unsigned hi)
{
	return (~UINT64_C(0) << lo) & (~UINT64_C(0) >> (63 - hi));
}

static void queue_page(struct bitmap *b, uint64_t page)
{
	if (!b->queued[page]) {
		b->queued[page] = 1;
		b->nqueued++;
	}
}

/* Sets or clears regions [r0, r1), r0 < r1 <= regions; queues only pages that change. */
static void change_bits(struct bitmap *b, uint64_t r0, uint64_t r1, bool set)
{
	uint64_t w0 = r0 / 64, w1 = (r1 - 1) / 64;

	for (uint64_t w = w0; w <= w1; w++) {
		uint64_t mask = bits_mask(w == w0 ? (unsigned)(r0 % 64) : 0,
					  w == w1 ? (unsigned)((r1 - 1) % 64) : 63);
		uint64_t old = b->words[w];
		uint64_t now = set ? old | mask : old & ~mask;

		if (now == old)
			continue;
		b->words[w] = now;
		if (set)
			b->dirty += (uint64_t)__builtin_popcountll(now & ~old);
		else
			b->dirty -= (uint64_t)__builtin_popcountll(old & ~now);
		queue_page(b, w / BM_WORDS_PER_PAGE);
	}
}

/* Page p as it goes to disk; words NULL gives an all-clean page. */
static void page_encode(const uint64_t *words, uint64_t nwords, uint64_t p, struct disk_page *d)
{
	uint64_t w0 = p * BM_WORDS_PER_PAGE;

	memset(d, 0, sizeof(*d));
	for (uint64_t i = 0; words && i < BM_WORDS_PER_PAGE && w0 + i < nwords; i++)
		d->words[i] = htole64(words[w0 + i]);
	d->index = htole32((uint32_t)p);
	d->crc = htole32(frep_crc32c(d, offsetof(struct disk_page, crc)));
}

static bool page_valid(const struct disk_page *d, uint64_t p)
{
	return le32toh(d->crc) == frep_crc32c(d, offsetof(struct disk_page, crc)) &&
	       le32toh(d->index) == (uint32_t)p;
}

static void hdr_encode(struct disk_hdr *h, const struct bitmap *b)
{
	memset(h, 0, sizeof(*h));
	h->magic = htole32(BITMAP_MAGIC);
	h->version = htole32(BITMAP_VERSION);
	h->volume_size = htole64(b->volume_size);
	h->region_size = htole32(b->region_size);
	h->page_bits = htole32(BM_BITS_PER_PAGE);
	h->regions = htole64(b->regions);
	h->pages = htole64(b->pages);
	h->crc = htole32(frep_crc32c(h, offsetof(struct disk_hdr, crc)));
}

/* Fills the geometry from the caller's sizes, or explains why they are unusable. */
static int set_geometry(struct bitmap *b, uint64_t volume_size, uint32_t region_size, char *err,
			size_t err_len)
{
	if (region_size < BITMAP_MIN_REGION || region_size > BITMAP_MAX_REGION ||
	    (region_size & (region_size - 1))) {
		snprintf(err, err_len,
			 "bitmap %s: region size %" PRIu32
			 " is not a power of two between %u and %u",
			 b->path, region_size, (unsigned)BITMAP_MIN_REGION,
			 (unsigned)BITMAP_MAX_REGION);
		errno = EINVAL;
		return -1;
	}
	if (volume_size == 0) {
		snprintf(err, err_len, "bitmap %s: volume size is 0", b->path);
		errno = EINVAL;
		return -1;
	}
	b->shift = (unsigned)__builtin_ctz(region_size);
	b->regions = (volume_size >> b->shift) + ((volume_size & (region_size - 1)) != 0);
	if (b->regions > BITMAP_MAX_REGIONS) {
		snprintf(err, err_len,
			 "bitmap %s: a volume of %" PRIu64 " bytes needs %" PRIu64
			 " regions of %" PRIu32 " bytes, more than %" PRIu64
			 "; use larger regions",
			 b->path, volume_size, b->regions, region_size, BITMAP_MAX_REGIONS);
		errno = EINVAL;
		return -1;
	}
	b->volume_size = volume_size;
	b->region_size = region_size;
	b->nwords = (b->regions + 63) / 64;
	b->pages = (b->regions + BM_BITS_PER_PAGE - 1) / BM_BITS_PER_PAGE;
	return 0;
}

/* --------------------------------------------------------- open / close */

/*
 * New file, all clean: built as PATH.new and renamed, so a crash never leaves
 * a bitmap without a valid header under PATH. Every page is written (no
 * holes), so later in-place page writes allocate nothing.
 */
static int create_file(const struct bitmap *b, char *err, size_t err_len)
{
	char tmp[4096];
	unsigned char *buf = NULL;
	int fd = -1, rc = -1, e;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.new", b->path) >= sizeof(tmp)) {
		snprintf(err, err_len, "bitmap %s: path too long", b->path);
		errno = ENAMETOOLONG;
		return -1;
	}
	buf = calloc(BM_IO_PAGES, BITMAP_PAGE_SIZE);
	if (!buf) {
		snprintf(err, err_len, "bitmap %s: out of memory", b->path);
		errno = ENOMEM;
		return -1;
	}
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, err_len, "bitmap %s: creating: %s", tmp, strerror(errno));
		goto out;
	}
	hdr_encode((struct disk_hdr *)buf, b);
	if (pwrite_full(fd, buf, BM_HDR_AREA, 0) < 0)
		goto write_fail;
	for (uint64_t p = 0; p < b->pages; p += BM_IO_PAGES) {
		uint64_t n = b->pages - p < BM_IO_PAGES ? b->pages - p : BM_IO_PAGES;

		for (uint64_t i = 0; i < n; i++)
			page_encode(NULL, 0, p + i,
				    (struct disk_page *)(buf + i * BITMAP_PAGE_SIZE));
		if (pwrite_full(fd, buf, (size_t)n * BITMAP_PAGE_SIZE, page_off(p)) < 0)
			goto write_fail;
	}
	if (fdatasync(fd) < 0)
		goto write_fail;
	if (rename(tmp, b->path) < 0) {
		snprintf(err, err_len, "bitmap %s: renaming %s: %s", b->path, tmp,
			 strerror(errno));
		goto fail;
	}
	/* Until the directory entry is durable, a crash could lose the file. */
	if (fsync_parent_dir(b->path) < 0) {
		snprintf(err, err_len, "bitmap %s: fsync of its directory: %s", b->path,
			 strerror(errno));
		goto out;
	}
	rc = 0;
	goto out;
write_fail:
	snprintf(err, err_len, "bitmap %s: writing: %s", tmp, strerror(errno));
fail:
	e = errno;
	unlink(tmp);
	errno = e;
out:
	e = errno;
	if (fd >= 0)
		close(fd);
	free(buf);
	errno = e;
	return rc;
}

/* Checks the header against the geometry the caller asked for. */
static int check_header(const struct bitmap *b, const struct disk_hdr *h, uint64_t file_size,
			char *err, size_t err_len)
{
	errno = EBADMSG;
	if (le32toh(h->magic) != BITMAP_MAGIC) {
		snprintf(err, err_len, "bitmap %s: not a frep bitmap (bad magic)", b->path);
		return -1;
	}
	if (le32toh(h->version) != BITMAP_VERSION) {
		snprintf(err, err_len, "bitmap %s: version %" PRIu32 ", this build reads %u",
			 b->path, le32toh(h->version), BITMAP_VERSION);
		return -1;
	}
	if (le32toh(h->crc) != frep_crc32c(h, offsetof(struct disk_hdr, crc))) {
		snprintf(err, err_len, "bitmap %s: header checksum mismatch (corrupted)", b->path);
		return -1;
	}
	errno = EINVAL;
	if (le64toh(h->volume_size) != b->volume_size) {
		snprintf(err, err_len,
			 "bitmap %s: made for a volume of %" PRIu64
			 " bytes, the volume has %" PRIu64 " (resized?)",
			 b->path, le64toh(h->volume_size), b->volume_size);
		return -1;
	}
	if (le32toh(h->region_size) != b->region_size) {
		snprintf(err, err_len,
			 "bitmap %s: region size %" PRIu32 " on disk, %" PRIu32 " requested",
			 b->path, le32toh(h->region_size), b->region_size);
		return -1;
	}
	errno = EBADMSG;
	if (le32toh(h->page_bits) != BM_BITS_PER_PAGE || le64toh(h->regions) != b->regions ||
	    le64toh(h->pages) != b->pages) {
		snprintf(err, err_len, "bitmap %s: header geometry inconsistent (corrupted)",
			 b->path);
		return -1;
	}
	if (file_size != page_off(b->pages)) {
		snprintf(err, err_len,
			 "bitmap %s: file is %" PRIu64 " bytes, its header says %" PRIu64
			 " (truncated?)",
			 b->path, file_size, page_off(b->pages));
		return -1;
	}
	return 0;
}

/* Reads every bit page; a page failing its checksum becomes all dirty. */
static int load_pages(struct bitmap *b, char *err, size_t err_len)
{
	unsigned char *buf = malloc((size_t)BM_IO_PAGES * BITMAP_PAGE_SIZE);
	uint64_t bad = 0, first_bad = 0;
	int rc = -1;

	if (!buf) {
		snprintf(err, err_len, "bitmap %s: out of memory", b->path);
		errno = ENOMEM;
		return -1;
	}
	for (uint64_t p = 0; p < b->pages; p += BM_IO_PAGES) {
		uint64_t n = b->pages - p < BM_IO_PAGES ? b->pages - p : BM_IO_PAGES;

		if (pread_full(b->fd, buf, (size_t)n * BITMAP_PAGE_SIZE, page_off(p)) < 0) {
			snprintf(err, err_len, "bitmap %s: reading page %" PRIu64 ": %s", b->path,
				 p, strerror(errno));
			goto out;
		}
		for (uint64_t i = 0; i < n; i++) {
			const struct disk_page *d =
				(const struct disk_page *)(buf + i * BITMAP_PAGE_SIZE);
			uint64_t w0 = (p + i) * BM_WORDS_PER_PAGE;

			if (!page_valid(d, p + i)) {
				if (!bad++)
					first_bad = p + i;
				queue_page(b, p + i); /* rewritten, all dirty, at the next sync */
				continue;
			}
			for (uint64_t k = 0; k < BM_WORDS_PER_PAGE && w0 + k < b->nwords; k++)
				b->words[w0 + k] = le64toh(d->words[k]);
		}
	}
	/* Keep "bits past the last region are 0" whatever a valid page said. */
	if (b->regions % 64)
		b->words[b->nwords - 1] &= bits_mask(0, (unsigned)(b->regions % 64 - 1));
	for (uint64_t w = 0; w < b->nwords; w++)
		b->dirty += (uint64_t)__builtin_popcountll(b->words[w]);
	if (bad) {
		/* Queued pages are exactly the bad ones here; their words are still 0. */
		for (uint64_t p = 0; p < b->pages; p++) {
			uint64_t r0 = p * BM_BITS_PER_PAGE;
			uint64_t r1 = b->regions - r0 < BM_BITS_PER_PAGE ? b->regions
									  : r0 + BM_BITS_PER_PAGE;
			if (b->queued[p])
				change_bits(b, r0, r1, true);
		}
		log_warn(b->volume,
			 "bitmap %s: %" PRIu64 " page(s) fail their checksum (first: page %" PRIu64
			 ", torn by a crash?); their regions are taken as dirty",
			 b->path, bad, first_bad);
	}
	rc = 0;
out:
	free(buf);
	return rc;
}

struct bitmap *bitmap_open(const char *path, uint64_t volume_size, uint32_t region_size,
			   const char *volume, char *err, size_t err_len)
{
	struct bitmap *b = calloc(1, sizeof(*b));
	struct disk_hdr h;
	struct stat st;
	int e;

	if (b)
		b->fd = -1;
	if (!b || !(b->path = strdup(path)) || (volume && !(b->volume = strdup(volume)))) {
		snprintf(err, err_len, "bitmap %s: out of memory", path);
		errno = ENOMEM;
		goto fail;
	}
	if (set_geometry(b, volume_size, region_size, err, err_len) < 0)
		goto fail;
	b->words = calloc(b->nwords, sizeof(*b->words));
	b->queued = calloc(b->pages, 1);
	if (!b->words || !b->queued) {
		snprintf(err, err_len, "bitmap %s: out of memory for %" PRIu64 " regions", path,
			 b->regions);
		errno = ENOMEM;
		goto fail;
	}
	b->fd = open(path, O_RDWR | O_CLOEXEC);
	if (b->fd < 0 && errno == ENOENT) {
		if (create_file(b, err, err_len) < 0)
			goto fail;
		log_info(volume, "bitmap %s: created, %" PRIu64 " regions of %" PRIu32 " bytes",
			 path, b->regions, region_size);
		b->fd = open(path, O_RDWR | O_CLOEXEC);
	}
	if (b->fd < 0) {
		snprintf(err, err_len, "bitmap %s: open: %s", path, strerror(errno));
		goto fail;
	}
	if (fstat(b->fd, &st) < 0) {
		snprintf(err, err_len, "bitmap %s: fstat: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < BM_HDR_AREA) {
		snprintf(err, err_len, "bitmap %s: not a frep bitmap (size %" PRIu64 ")", path,
			 (uint64_t)st.st_size);
		errno = EBADMSG;
		goto fail;
	}
	if (pread_full(b->fd, &h, sizeof(h), 0) < 0) {
		snprintf(err, err_len, "bitmap %s: reading header: %s", path, strerror(errno));
		goto fail;
	}
	if (check_header(b, &h, (uint64_t)st.st_size, err, err_len) < 0)
		goto fail;
	if (load_pages(b, err, err_len) < 0)
		goto fail;
	log_debug(volume, "bitmap %s: %" PRIu64 " of %" PRIu64 " regions dirty", path, b->dirty,
		  b->regions);
	return b;
fail:
	e = errno;
	if (b) {
		if (b->fd >= 0)
			close(b->fd);
		free(b->words);
		free(b->queued);
		free(b->path);
		free(b->volume);
		free(b);
	}
	errno = e;
	return NULL;
}

void bitmap_close(struct bitmap *b)
{
	if (!b)
		return;
	if (b->nqueued)
		log_debug(b->volume, "bitmap %s: closed with %" PRIu64 " page(s) not synced",
			  b->path, b->nqueued);
	close(b->fd);
	free(b->words);
	free(b->queued);
	free(b->path);
	free(b->volume);
	free(b);
}

/* ------------------------------------------------------------ changing bits */

void bitmap_set_range(struct bitmap *b, uint64_t off, uint64_t len)
{
	if (len == 0 || off >= b->volume_size)
		return;
	/* Written this way round, off + len is never formed: no overflow. */
	uint64_t last = len - 1 >= b->volume_size - off ? b->volume_size - 1 : off + len - 1;
	change_bits(b, off >> b->shift, (last >> b->shift) + 1, true);
}

void bitmap_clear_range(struct bitmap *b, uint64_t off, uint64_t len)
{
	if (len == 0 || off >= b->volume_size)
		return;
	uint64_t end = len >= b->volume_size - off ? b->volume_size : off + len;
	/* off < volume_size <= 2^61, so rounding up cannot overflow. */
	uint64_t r0 = (off + b->region_size - 1) >> b->shift;
	uint64_t r1 = end == b->volume_size ? b->regions : end >> b->shift;
	if (r0 < r1)
		change_bits(b, r0, r1, false);
}

void bitmap_set_all(struct bitmap *b)
{
	change_bits(b, 0, b->regions, true);
}

void bitmap_clear_all(struct bitmap *b)
{
	change_bits(b, 0, b->regions, false);
}

int bitmap_sync(struct bitmap *b)
{
	struct disk_page d;

	if (!b->nqueued)
		return 0;
	for (uint8_t *q = b->queued; (q = memchr(q, 1, (size_t)(b->queued + b->pages - q)));
	     q++) {
		uint64_t p = (uint64_t)(q - b->queued);

		page_encode(b->words, b->nwords, p, &d);
		if (pwrite_full(b->fd, &d, sizeof(d), page_off(p)) < 0) {
			log_error(b->volume, "bitmap %s: writing page %" PRIu64 ": %s", b->path, p,
				  strerror(errno));
			return -1;
		}
	}
	if (fdatasync(b->fd) < 0) {
		int e = errno;
		log_error(b->volume, "bitmap %s: fdatasync: %s", b->path, strerror(e));
		errno = e;
		return -1;
	}
	memset(b->queued, 0, (size_t)b->pages);
	b->nqueued = 0;
	return 0;
}

/* ------------------------------------------------------------ queries */

int bitmap_next_dirty(const struct bitmap *b, uint64_t off, uint64_t *start, uint64_t *end)
{
	if (off >= b->volume_size)
		return 0;
	uint64_t r = off >> b->shift;
	uint64_t w = r / 64;
	uint64_t word = b->words[w] & (~UINT64_C(0) << (r % 64));

	while (!word) {
		if (++w == b->nwords)
			return 0;
		word = b->words[w];
	}
	uint64_t first = w * 64 + (uint64_t)__builtin_ctzll(word);
	/*
	 * Now the first clean region after it. Bits past the last region are
	 * 0, so the scan stops at b->regions at the latest.
	 */
	uint64_t clean = ~b->words[w] & (~UINT64_C(0) << (first % 64));
	while (!clean && ++w < b->nwords)
		clean = ~b->words[w];
	uint64_t stop = clean ? w * 64 + (uint64_t)__builtin_ctzll(clean) : b->regions;
	*start = first << b->shift;
	*end = stop == b->regions ? b->volume_size : stop << b->shift;
	return 1;
}

uint64_t bitmap_dirty_regions(const struct bitmap *b)
{
	return b->dirty;
}

uint64_t bitmap_regions(const struct bitmap *b)
{
	return b->regions;
}

uint32_t bitmap_region_size(const struct bitmap *b)
{
	return b->region_size;
}
