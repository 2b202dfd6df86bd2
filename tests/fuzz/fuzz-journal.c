/* Fuzz harness: journal recovery (common/journal.c journal_open) on a journal file made from the input. */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "harness.h"
#include "journal.h"
#include "log.h"
#include "util.h"

/*
 * Input, compact, since a journal file is at least 1 MiB of mostly zeros:
 *
 *   0     1      3        67       131
 *   +-----+------+--------+--------+--------------------------------+
 *   | ctl | wrap | slot 0 | slot 1 | ring bytes                     |
 *   +-----+------+--------+--------+--------------------------------+
 *
 * The file is FILE_SIZE bytes: slot 0 at 0, slot 1 at 2048, then the ring.
 * The first `wrap` (LE16, rounded down to 64) ring bytes go at the end of
 * the ring and the rest at ring offset 0, so chains that wrap are reachable.
 * ctl bits make the harness fix checksums the fuzzer cannot compute, so it
 * gets past them to recovery's logic; with them clear, the checksums are
 * tested as they are.
 */
enum {
	FILE_SIZE = 1024 * 1024, /* JOURNAL_MIN_FILE */
	HDR_AREA = 4096,
	RING = FILE_SIZE - HDR_AREA,
	SLOT = 64,
	PREFIX = 3 + 2 * SLOT,
	REC_HDR = 64,
	CTL_FIX_SLOTS = 1u << 0,   /* recompute each slot's CRC */
	CTL_FIX_RECORDS = 1u << 1, /* recompute data and header CRCs of records found */
	CTL_SALVAGE = 1u << 2,	   /* journal_open_salvage, as the master opens its own */
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("fuzz-journal", LOG_ERROR);
	return 0;
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void fix_records(uint8_t *ring, size_t len)
{
	for (size_t i = 0; i + REC_HDR <= len; i += 64) {
		uint8_t *r = ring + i;
		if (get32(r) != 0x524a5246u) /* "FRJR" */
			continue;
		uint32_t data_len = get32(r + 12);
		if (data_len <= len - i - REC_HDR)
			put32(r + 8, frep_crc32c(r + REC_HDR, data_len));
		put32(r + 4, frep_crc32c(r + 8, REC_HDR - 8));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t slots[2][SLOT];
	char err[512] = "";

	if (size < PREFIX || size - PREFIX > RING)
		return -1; /* not a journal image: keep out of the corpus */
	unsigned ctl = data[0];
	size_t ring_len = size - PREFIX;
	size_t wrap = (size_t)(data[1] | data[2] << 8) & ~(size_t)63;
	if (wrap > ring_len)
		wrap = ring_len & ~(size_t)63;
	uint8_t *ring = malloc(ring_len + 1);
	require(ring);
	memcpy(slots, data + 3, sizeof(slots));
	memcpy(ring, data + PREFIX, ring_len);
	if (ctl & CTL_FIX_SLOTS)
		for (int i = 0; i < 2; i++)
			put32(slots[i] + 60, frep_crc32c(slots[i], 60));
	if (ctl & CTL_FIX_RECORDS) {
		fix_records(ring, wrap);
		fix_records(ring + wrap, ring_len - wrap);
	}

	const char *path = memfile_set(FILE_SIZE);
	memfile_write(slots[0], SLOT, 0);
	memfile_write(slots[1], SLOT, 2048);
	memfile_write(ring, wrap, HDR_AREA + RING - wrap);
	memfile_write(ring + wrap, ring_len - wrap, HDR_AREA);
	free(ring);

	struct journal_damage damage;
	struct journal *j = ctl & CTL_SALVAGE ?
				    journal_open_salvage(path, FILE_SIZE, "fuzz", &damage, err, sizeof(err)) :
				    journal_open(path, FILE_SIZE, "fuzz", err, sizeof(err));
	if (!j) {
		/* The message names the journal, so the operator knows which file. */
		require(err[0] && strstr(err, path));
		return 0;
	}
	/* Everything recovery kept reads back with intact checksums. */
	uint64_t first = journal_first_txid(j), last = journal_last_txid(j);
	require(first <= last + 1);
	require(journal_used(j) <= journal_capacity(j));
	static uint8_t buf[RING];
	for (uint64_t t = first; t <= last; t++) {
		struct journal_rec r;
		require(journal_read(j, t, &r, buf, sizeof(buf)) == 0);
		require(r.txid == t);
	}
	/* As the master does after redo: no TXID that may be on the mirror is reused. */
	if (ctl & CTL_SALVAGE && damage.txid) {
		require(damage.txid == last + 1 && damage.floor >= damage.txid && damage.what[0]);
		require(journal_reset(j, damage.floor) == 0);
		last = journal_last_txid(j);
		require(last == damage.floor);
	}

	/* The next TXID appends, survives a close, and recovery finds it again. */
	struct journal_rec r = { .generation = 1, .txid = last + 1, .offset = 0, .length = 4096,
				 .op = JOP_WRITE };
	memset(buf, 0xa5, 4096);
	r.data_crc = frep_crc32c(buf, 4096);
	int rc = journal_append(j, &r, buf);
	if (rc < 0)
		require(errno == ENOSPC || errno == EINVAL);
	if (rc == 0)
		require(journal_sync(j) == 0);
	journal_close(j);
	if (rc < 0)
		return 0;
	j = journal_open(path, FILE_SIZE, "fuzz", err, sizeof(err));
	require(j);
	require(journal_last_txid(j) == last + 1);
	require(journal_read(j, last + 1, &r, buf, sizeof(buf)) == 0);
	journal_close(j);
	return 0;
}
