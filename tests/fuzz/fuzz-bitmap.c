/* Fuzz harness: the dirty-region bitmap loader (common/bitmap.c bitmap_open) on a file made from the input. */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "bitmap.h"
#include "harness.h"
#include "log.h"
#include "util.h"

/*
 * Input:
 *
 *   0     1       2              10              74
 *   +-----+-------+--------------+---------------+-------------------------+
 *   | ctl | shift | volume_size  | header (64 B) | bit pages, 4096 B each   |
 *   +-----+-------+--------------+---------------+-------------------------+
 *
 * The geometry asked for is region 4096 << (shift % 19) and volume_size
 * (LE64), cut down to at most MAX_REGIONS regions so a run stays small. The
 * file is the header padded to 4096, then the pages (the last one padded
 * with zeros). ctl bits make the harness fix what the fuzzer cannot compute,
 * so it reaches the page loader and the scans; with them clear, every check
 * is tested as the input has it.
 */
enum {
	PREFIX = 10,
	HDR = 64,
	PAGE = BITMAP_PAGE_SIZE,
	MAX_REGIONS = 1 << 20,
	CTL_FIX_GEOMETRY = 1u << 0, /* header fields as the geometry asks, and its CRC */
	CTL_FIX_SIZE = 1u << 1,	    /* file length as the geometry needs */
	CTL_FIX_PAGES = 1u << 2,    /* each page's index and CRC */
	CTL_RAW_REGION = 1u << 3,   /* region size from shift as it is: tests the range check */
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("fuzz-bitmap", LOG_ERROR);
	return 0;
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

/* Every dirty run lies inside the volume, in order, region-aligned, and they add up. */
static void check_runs(const struct bitmap *b, uint64_t volume_size)
{
	uint64_t off = 0, start, end, regions = 0;
	uint32_t rs = bitmap_region_size(b);

	while (bitmap_next_dirty(b, off, &start, &end) == 1) {
		require(start >= off - off % rs && start < end && end <= volume_size);
		require(start % rs == 0 && (end % rs == 0 || end == volume_size));
		regions += (end - start + rs - 1) / rs;
		off = end;
		if (off >= volume_size)
			break;
	}
	require(regions == bitmap_dirty_regions(b));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512] = "";
	uint8_t hdr[HDR] = { 0 };
	uint64_t volume_size;

	if (size < PREFIX)
		return -1;
	unsigned ctl = data[0];
	uint32_t region = ctl & CTL_RAW_REGION ? (uint32_t)data[1] << 12 : 4096u << (data[1] % 19);
	memcpy(&volume_size, data + 2, 8);
	volume_size = le64toh(volume_size);
	if (region >= BITMAP_MIN_REGION && volume_size / region >= MAX_REGIONS)
		volume_size %= (uint64_t)region * MAX_REGIONS;
	memcpy(hdr, data + PREFIX, size - PREFIX < HDR ? size - PREFIX : HDR);
	const uint8_t *pages = data + PREFIX + HDR;
	size_t pages_len = size > PREFIX + HDR ? size - PREFIX - HDR : 0;

	uint64_t regions = region ? (volume_size + region - 1) / region : 0;
	uint64_t npages = (regions + (PAGE - 8) * 8 - 1) / ((PAGE - 8) * 8);
	if (ctl & CTL_FIX_GEOMETRY) {
		put32(hdr, 0x4d425246u); /* "FRBM" */
		put32(hdr + 4, 1);
		put64(hdr + 8, volume_size);
		put32(hdr + 16, region);
		put32(hdr + 20, (PAGE - 8) * 8);
		put64(hdr + 24, regions);
		put64(hdr + 32, npages);
		put32(hdr + 60, frep_crc32c(hdr, 60));
	}
	size_t file_size = ctl & CTL_FIX_SIZE ? PAGE + npages * PAGE : PAGE + pages_len;
	const char *path = memfile_set(file_size);
	memfile_write(hdr, HDR, 0);
	size_t area = file_size - PAGE;
	for (size_t off = 0; off < area; off += PAGE) {
		uint8_t page[PAGE] = { 0 };
		size_t n = area - off < PAGE ? area - off : PAGE;
		if (off < pages_len)
			memcpy(page, pages + off, pages_len - off < PAGE ? pages_len - off : PAGE);
		if (ctl & CTL_FIX_PAGES && n == PAGE) {
			put32(page + PAGE - 8, (uint32_t)(off / PAGE));
			put32(page + PAGE - 4, frep_crc32c(page, PAGE - 4));
		}
		memfile_write(page, n, PAGE + off);
	}

	struct bitmap *b = bitmap_open(path, volume_size, region, "fuzz", err, sizeof(err));
	if (!b) {
		/* A clear message naming the file; only bad input, never a bad argument of ours. */
		require(err[0] && strstr(err, path));
		return 0;
	}
	require(bitmap_regions(b) == regions);
	check_runs(b, volume_size);

	/* What loaded, plus a change, is what a reopen loads: no bit lost or invented. */
	bitmap_set_range(b, volume_size / 3, region);
	bitmap_clear_range(b, 0, volume_size / 5);
	uint64_t after = bitmap_dirty_regions(b);
	require(bitmap_sync(b) == 0);
	bitmap_close(b);
	b = bitmap_open(path, volume_size, region, "fuzz", err, sizeof(err));
	require(b);
	require(bitmap_dirty_regions(b) == after);
	check_runs(b, volume_size);
	bitmap_close(b);
	return 0;
}
