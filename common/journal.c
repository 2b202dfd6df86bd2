/* Journal: a persistent ring of checksummed write transactions, recovered after a crash. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "journal.h"
#include "log.h"
#include "util.h"

/*
 * File layout (every integer little-endian):
 *
 *   0            2048          4096                                  4096 + ring_size
 *   +------------+-------------+-------------------------------------+
 *   | hdr slot 0 | hdr slot 1  | ring: records, each 64-byte aligned  |
 *   +------------+-------------+-------------------------------------+
 *
 * Header slot (first 64 bytes of its 2048; written alternately, pwrite +
 * fdatasync, so one slot always holds a complete older header):
 *
 *   0       4         8     16          24         32          40      44          48        56     60    64
 *   +-------+---------+-----+-----------+----------+-----------+-------+-----------+---------+------+-----+
 *   | magic | version | seq | ring_size | tail_off | tail_txid | epoch | tail_prev | durable | zero | crc |
 *   | FRJH  |         |     |           |          |           |       | _crc      | _txid   |      |     |
 *   +-------+---------+-----+-----------+----------+-----------+-------+-----------+---------+------+-----+
 *   crc = CRC32C of bytes 0..59. The valid slot with the highest seq wins.
 *
 *   durable_txid  the durable-through mark: every TXID up to it was committed
 *                 (fdatasync'd) and may have left the host. Written with
 *                 every header, so at each free and at a clean close. 0 (as
 *                 in journals written before the mark existed) claims nothing.
 *
 * Record (64-byte header, then data_len bytes of data, padded to 64):
 *
 *   0       4         8          12         16   18           20         24      28      32
 *   +-------+---------+----------+----------+----+------------+----------+-------+-------+
 *   | magic | hdr_crc | data_crc | data_len | op | commit_lag | prev_crc | epoch | nonce |
 *   | FRJR  |         |          |          |    |            |          |       |       |
 *   +-------+---------+----------+----------+----+------------+----------+-------+-------+
 *   32           40     48       56       64
 *   +------------+------+--------+--------+----------------------------+
 *   | generation | txid | offset | length | data ... | pad to 64      |
 *   +------------+------+--------+--------+----------------------------+
 *
 *   hdr_crc    CRC32C of header bytes 8..63, so a record's length is known
 *              even when its data is bad.
 *   prev_crc   hdr_crc of the record with txid - 1 (the header's tail_prev_crc
 *              for the tail record). It chains records, so a stale copy of
 *              a TXID left by an earlier torn tail is never taken for the
 *              live one.
 *   epoch      bumped by journal_reset: records of an older sequencing are
 *              stale whatever their TXID.
 *   commit_lag txid minus the last TXID made durable by journal_sync when
 *              this record was appended (saturated at 65535, which only
 *              understates it). It tells a torn tail from corruption, below.
 *   nonce      random per journal_open. A record rewritten after a crash
 *              then never equals its dropped predecessor byte for byte, so
 *              a stale record chained to that predecessor stays unchained.
 *
 * Placement: a record goes at the head if it fits before the ring end, else
 * at ring offset 0 (the rest of the lap is wasted; no marker is written). A
 * record never straddles the ring end. Recovery therefore looks for TXID E at
 * the position after E - 1 and, failing that, at offset 0.
 *
 * Positions in memory are "lpos", byte counts that only grow (ring offset =
 * lpos % ring_size), so "does this write reach bytes still needed" is a plain
 * subtraction. The header's tail is persisted by every journal_free_through
 * (with the durable-through mark), and, should that header write have
 * failed, before an append would overwrite bytes between the persisted tail
 * and the in-memory tail: recovery starts at the persisted tail and must find
 * intact records there (freed ones come back; the caller frees them again).
 *
 * Torn tail versus corruption: after power loss, unsynced writes can land in
 * any order, so a bad record E followed by an intact E + 1 is normal when
 * both were in flight. It is corruption when a later record of the chain
 * says E was already durable (txid - commit_lag >= E), or when the header's
 * durable-through mark covers E (E <= durable_txid): a committed record may
 * be on the mirror, so dropping it would hand its TXID to other data (the
 * mirror ignores a TXID it holds, SEQ-8). journal_open then fails naming the
 * TXID and offset. Otherwise E and everything after it are dropped and
 * logged: they were never committed, so their TXIDs never left the host. When E's header itself is bad its length is unknown,
 * so recovery scans the aligned offsets of one maximal record after it (and
 * after offset 0) for a valid E + 1.
 *
 * Cost of journal_open: every held record is read once (data CRC), plus at
 * most two windows of one maximal record (<= 64 MiB) at the end of the chain.
 */

#define JOURNAL_HDR_MAGIC 0x484a5246u /* "FRJH" */
#define JOURNAL_REC_MAGIC 0x524a5246u /* "FRJR" */
#define JOURNAL_VERSION 1u

enum journal_limits {
	JOURNAL_HDR_AREA = 4096,	 /* bytes before the ring */
	JOURNAL_SLOT_SIZE = 2048,	 /* header slot stride */
	JOURNAL_ALIGN = 64,		 /* record alignment in the ring */
	JOURNAL_REC_HDR = 64,		 /* record header bytes */
	JOURNAL_MIN_FILE = 1024 * 1024,	 /* smallest journal file */
	JOURNAL_MAX_DATA = 64 << 20,	 /* data bytes in one record (>= FREP_MAX_TRAILER) */
	JOURNAL_SCAN_CHUNK = 1024 * 1024, /* read size while checksumming and scanning */
	JOURNAL_INDEX_MIN = 1024,	 /* first index allocation, entries */
};
/* Files up to 1 PiB: every lpos and offset sum stays far from 2^64. */
#define JOURNAL_MAX_FILE (UINT64_C(1) << 50)

struct disk_slot {
	uint32_t magic;
	uint32_t version;
	uint64_t seq;
	uint64_t ring_size;
	uint64_t tail_off;
	uint64_t tail_txid;
	uint32_t epoch;
	uint32_t tail_prev_crc;
	uint64_t durable_txid;
	uint8_t zero[4];
	uint32_t crc;
};
_Static_assert(sizeof(struct disk_slot) == 64, "header slot layout");

struct disk_rec {
	uint32_t magic;
	uint32_t hdr_crc;
	uint32_t data_crc;
	uint32_t data_len;
	uint16_t op;
	uint16_t commit_lag;
	uint32_t prev_crc;
	uint32_t epoch;
	uint32_t nonce;
	uint64_t generation;
	uint64_t txid;
	uint64_t offset;
	uint64_t length;
};
_Static_assert(sizeof(struct disk_rec) == JOURNAL_REC_HDR, "record header layout");

/*
 * One held record: the FIFO index that makes journal_read O(1). It keeps the
 * record's volume range too, so marking unacknowledged records dirty (a crack)
 * reads nothing from disk.
 */
struct jent {
	uint64_t lpos;
	uint32_t size;
	uint32_t hdr_crc;
	uint64_t offset, length;
};

struct journal {
	int fd;
	char *path;   /* owned */
	char *volume; /* owned, may be NULL */
	uint64_t ring;	   /* ring bytes, multiple of 4096 */
	uint64_t max_data; /* largest data_len */
	uint32_t epoch;
	uint32_t nonce;	   /* written into every record of this open */
	uint64_t hdr_seq;  /* seq of the newest slot on disk */
	unsigned hdr_slot; /* which slot holds it */

	uint64_t first, last;		    /* held TXIDs; first == last + 1 when empty */
	uint64_t tail_lpos, head_lpos;	    /* in memory */
	uint64_t ptail_lpos, ptail_txid;    /* as persisted in the header */
	uint32_t tail_prev_crc;		    /* hdr_crc of TXID first - 1 */
	uint32_t head_prev_crc;		    /* hdr_crc of TXID last */
	uint64_t synced;		    /* last TXID covered by fdatasync */
	uint64_t pdurable;		    /* durable-through mark as persisted */
	struct journal_damage *damage;	    /* salvage: where a damaged committed record goes */

	struct jent *ents; /* circular, ecap entries (power of two), first at ehead */
	size_t ecap, ehead;
};

/* ------------------------------------------------------------ small helpers */

static uint64_t rec_size(uint64_t data_len)
{
	return JOURNAL_REC_HDR + ((data_len + JOURNAL_ALIGN - 1) & ~(uint64_t)(JOURNAL_ALIGN - 1));
}

static bool op_valid(uint32_t op)
{
	return op == JOP_WRITE || op == JOP_TRIM || op == JOP_ZERO;
}

static size_t held(const struct journal *j)
{
	return (size_t)(j->last + 1 - j->first);
}

static struct jent *ent(const struct journal *j, uint64_t txid)
{
	return &j->ents[(j->ehead + (size_t)(txid - j->first)) & (j->ecap - 1)];
}

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
			errno = EIO; /* the file is shorter than its header says */
			return -1;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* pwritev until done; iov is consumed. */
static int pwritev_full(int fd, struct iovec *iov, int cnt, uint64_t off)
{
	while (cnt > 0) {
		ssize_t n = pwritev(fd, iov, cnt, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		off += (uint64_t)n;
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static bool all_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* --------------------------------------------------------- header slots */

static void slot_encode(struct disk_slot *s, uint64_t seq, uint64_t ring, uint64_t tail_off,
			uint64_t tail_txid, uint32_t epoch, uint32_t prev_crc, uint64_t durable_txid)
{
	memset(s, 0, sizeof(*s));
	s->magic = htole32(JOURNAL_HDR_MAGIC);
	s->version = htole32(JOURNAL_VERSION);
	s->seq = htole64(seq);
	s->ring_size = htole64(ring);
	s->tail_off = htole64(tail_off);
	s->tail_txid = htole64(tail_txid);
	s->epoch = htole32(epoch);
	s->tail_prev_crc = htole32(prev_crc);
	s->durable_txid = htole64(durable_txid);
	s->crc = htole32(frep_crc32c(s, offsetof(struct disk_slot, crc)));
}

/*
 * Decodes a slot into host order and checks everything a corrupt header could
 * use to send us outside the file. Returns a reason string, or NULL if valid.
 */
static const char *slot_decode(const void *buf, uint64_t file_size, struct disk_slot *s)
{
	memcpy(s, buf, sizeof(*s));
	if (le32toh(s->magic) != JOURNAL_HDR_MAGIC)
		return "bad magic";
	if (le32toh(s->crc) != frep_crc32c(s, offsetof(struct disk_slot, crc)))
		return "checksum mismatch";
	s->magic = JOURNAL_HDR_MAGIC;
	s->version = le32toh(s->version);
	s->seq = le64toh(s->seq);
	s->ring_size = le64toh(s->ring_size);
	s->tail_off = le64toh(s->tail_off);
	s->tail_txid = le64toh(s->tail_txid);
	s->epoch = le32toh(s->epoch);
	s->tail_prev_crc = le32toh(s->tail_prev_crc);
	s->durable_txid = le64toh(s->durable_txid);
	if (s->version != JOURNAL_VERSION)
		return "unknown format version";
	if (s->ring_size < JOURNAL_MIN_FILE - JOURNAL_HDR_AREA || s->ring_size % 4096 ||
	    s->ring_size > JOURNAL_MAX_FILE || s->ring_size > file_size - JOURNAL_HDR_AREA)
		return "ring size does not fit the file";
	if (s->tail_off >= s->ring_size || s->tail_off % JOURNAL_ALIGN)
		return "tail offset outside the ring";
	if (s->tail_txid < 1 || s->tail_txid >= JOURNAL_MAX_TXID)
		return "tail TXID out of range";
	if (s->durable_txid >= JOURNAL_MAX_TXID)
		return "durable-through TXID out of range";
	return NULL;
}

/* Replaces the header atomically: the other slot, higher seq, then fdatasync. */
static int write_header(struct journal *j, uint64_t tail_off, uint64_t tail_txid,
			uint32_t epoch, uint32_t prev_crc, uint64_t durable_txid)
{
	struct disk_slot s;
	unsigned slot = j->hdr_slot ^ 1;

	slot_encode(&s, j->hdr_seq + 1, j->ring, tail_off, tail_txid, epoch, prev_crc,
		    durable_txid);
	struct iovec iov = { &s, sizeof(s) };
	if (pwritev_full(j->fd, &iov, 1, (uint64_t)slot * JOURNAL_SLOT_SIZE) < 0 ||
	    fdatasync(j->fd) < 0) {
		int e = errno;
		log_error(j->volume, "journal %s: writing header slot %u: %s", j->path, slot,
			  strerror(e));
		errno = e;
		return -1;
	}
	j->hdr_seq++;
	j->hdr_slot = slot;
	j->pdurable = durable_txid;
	return 0;
}

/* Persists the in-memory tail and the durable-through mark (what fdatasync covered). */
static int persist_tail(struct journal *j)
{
	if (write_header(j, j->tail_lpos % j->ring, j->first, j->epoch, j->tail_prev_crc,
			 j->synced) < 0)
		return -1;
	j->ptail_lpos = j->tail_lpos;
	j->ptail_txid = j->first;
	return 0;
}

/* ------------------------------------------------------------- records */

static void rec_encode(const struct journal *j, const struct journal_rec *r, uint32_t data_len,
		       struct disk_rec *d)
{
	uint64_t lag = r->txid - j->synced;

	memset(d, 0, sizeof(*d));
	d->magic = htole32(JOURNAL_REC_MAGIC);
	d->data_crc = htole32(data_len ? r->data_crc : 0);
	d->data_len = htole32(data_len);
	d->op = htole16((uint16_t)r->op);
	d->prev_crc = htole32(j->head_prev_crc);
	d->epoch = htole32(j->epoch);
	d->nonce = htole32(j->nonce);
	d->commit_lag = htole16(lag > UINT16_MAX ? UINT16_MAX : (uint16_t)lag);
	d->generation = htole64(r->generation);
	d->txid = htole64(r->txid);
	d->offset = htole64(r->offset);
	d->length = htole64(r->length);
	d->hdr_crc = htole32(frep_crc32c((const char *)d + 8, JOURNAL_REC_HDR - 8));
}

/*
 * Decodes a record header found at ring offset ring_off and checks it is
 * self-consistent, of this epoch, and lies inside the ring. Nothing in it is
 * trusted before this returns true.
 */
static bool rec_parse(const struct journal *j, const void *buf, uint64_t ring_off,
		      struct disk_rec *d)
{
	memcpy(d, buf, sizeof(*d));
	if (le32toh(d->magic) != JOURNAL_REC_MAGIC)
		return false;
	if (le32toh(d->hdr_crc) != frep_crc32c((const char *)buf + 8, JOURNAL_REC_HDR - 8))
		return false;
	d->magic = JOURNAL_REC_MAGIC;
	d->hdr_crc = le32toh(d->hdr_crc);
	d->data_crc = le32toh(d->data_crc);
	d->data_len = le32toh(d->data_len);
	d->op = le16toh(d->op);
	d->commit_lag = le16toh(d->commit_lag);
	d->prev_crc = le32toh(d->prev_crc);
	d->epoch = le32toh(d->epoch);
	d->nonce = le32toh(d->nonce);
	d->generation = le64toh(d->generation);
	d->txid = le64toh(d->txid);
	d->offset = le64toh(d->offset);
	d->length = le64toh(d->length);

	if (d->epoch != j->epoch || !op_valid(d->op))
		return false;
	if (d->data_len > j->max_data)
		return false;
	if (d->op == JOP_WRITE ? d->length != d->data_len : d->data_len != 0)
		return false;
	if (d->txid < 1 || d->txid >= JOURNAL_MAX_TXID)
		return false;
	if (d->commit_lag < 1 || d->commit_lag > d->txid)
		return false;
	if (d->offset > UINT64_MAX - d->length)
		return false;
	if (ring_off > j->ring || rec_size(d->data_len) > j->ring - ring_off)
		return false;
	return true;
}

/* 1: a valid header at ring_off (in *d), 0: none, -1: I/O error. */
static int probe_hdr(struct journal *j, uint64_t ring_off, struct disk_rec *d)
{
	unsigned char buf[JOURNAL_REC_HDR];

	if (ring_off > j->ring - JOURNAL_REC_HDR)
		return 0;
	if (pread_full(j->fd, buf, sizeof(buf), JOURNAL_HDR_AREA + ring_off) < 0)
		return -1;
	return rec_parse(j, buf, ring_off, d);
}

/* 1: data matches data_crc, 0: mismatch, -1: I/O error. Streams, never allocates data_len. */
static int check_data(struct journal *j, uint64_t ring_off, const struct disk_rec *d,
		      unsigned char *scratch)
{
	uint64_t off = JOURNAL_HDR_AREA + ring_off + JOURNAL_REC_HDR;
	uint32_t left = d->data_len, crc = 0;

	while (left > 0) {
		size_t n = left < JOURNAL_SCAN_CHUNK ? left : JOURNAL_SCAN_CHUNK;
		if (pread_full(j->fd, scratch, n, off) < 0)
			return -1;
		crc = frep_crc32c_update(crc, scratch, n);
		off += n;
		left -= (uint32_t)n;
	}
	return crc == d->data_crc;
}

enum probe_result {
	PR_IO = -1,	/* read failed */
	PR_OK,		/* the expected record, intact */
	PR_BADHDR,	/* no valid header here */
	PR_OTHER,	/* a valid header of some other record: stale */
	PR_BADDATA,	/* the expected record's header, but its data is bad */
};

/* Looks for TXID txid chained to prev_crc at ring_off. */
static enum probe_result probe_rec(struct journal *j, uint64_t ring_off, uint64_t txid,
				   uint32_t prev_crc, struct disk_rec *d, unsigned char *scratch)
{
	int rc = probe_hdr(j, ring_off, d);
	if (rc < 0)
		return PR_IO;
	if (rc == 0)
		return PR_BADHDR;
	if (d->txid != txid || d->prev_crc != prev_crc)
		return PR_OTHER;
	rc = check_data(j, ring_off, d, scratch);
	if (rc < 0)
		return PR_IO;
	return rc ? PR_OK : PR_BADDATA;
}

/* ------------------------------------------------------------ the index */

/* Room for one more entry, so nothing can fail after a record is on disk. */
static int index_reserve(struct journal *j)
{
	if (held(j) < j->ecap)
		return 0;
	size_t cap = j->ecap ? j->ecap * 2 : JOURNAL_INDEX_MIN;
	struct jent *e = calloc(cap, sizeof(*e));
	if (!e)
		return -1;
	for (size_t i = 0; i < held(j); i++)
		e[i] = j->ents[(j->ehead + i) & (j->ecap - 1)];
	free(j->ents);
	j->ents = e;
	j->ecap = cap;
	j->ehead = 0;
	return 0;
}

/* Appends an entry for TXID last + 1 (the caller then bumps last). */
static int index_push(struct journal *j, uint64_t lpos, uint64_t size, uint32_t hdr_crc,
		      uint64_t offset, uint64_t length)
{
	if (index_reserve(j) < 0)
		return -1;
	struct jent *e = &j->ents[(j->ehead + held(j)) & (j->ecap - 1)];
	e->lpos = lpos;
	e->size = (uint32_t)size;
	e->hdr_crc = hdr_crc;
	e->offset = offset;
	e->length = length;
	return 0;
}

/* ------------------------------------------------------------- recovery */

/*
 * Follows the chain that starts with the valid header d at ring offset at.
 * True if some record in it says TXID bad was durable when it was appended:
 * then the bad record is corruption of committed data, not a torn tail.
 */
static int chain_proves_commit(struct journal *j, uint64_t at, struct disk_rec d, uint64_t bad,
			       uint64_t *who)
{
	uint64_t walked = 0;

	for (;;) {
		if (d.txid - d.commit_lag >= bad) {
			*who = d.txid;
			return 1;
		}
		uint64_t size = rec_size(d.data_len), next = at + size;
		uint32_t prev = d.hdr_crc;
		uint64_t want = d.txid + 1;
		walked += size;
		if (walked >= j->ring)
			return 0;
		uint64_t nxt = next == j->ring ? 0 : next;
		int rc = probe_hdr(j, nxt, &d);
		if (rc < 0)
			return -1;
		if (!rc || d.txid != want || d.prev_crc != prev) {
			/* It did not fit before the ring end: it is at offset 0 or nowhere. */
			if (nxt == 0)
				return 0;
			nxt = 0;
			rc = probe_hdr(j, 0, &d);
			if (rc <= 0)
				return rc;
			if (d.txid != want || d.prev_crc != prev)
				return 0;
		}
		at = nxt;
	}
}

/*
 * A record with a bad header was expected somewhere in [from, from + window):
 * looks for the valid header of TXID bad + 1 at any aligned offset there (and
 * at ring offset 0, where it goes if it did not fit) and follows its chain.
 */
static int scan_for_commit(struct journal *j, uint64_t from, uint64_t bad, unsigned char *scratch,
			   uint64_t *who)
{
	uint64_t window = rec_size(j->max_data) + JOURNAL_REC_HDR;
	uint64_t to = from + window < j->ring ? from + window : j->ring;
	struct disk_rec d;

	for (uint64_t c = from; c < to; c += JOURNAL_SCAN_CHUNK) {
		size_t n = to - c < JOURNAL_SCAN_CHUNK ? (size_t)(to - c) : JOURNAL_SCAN_CHUNK;
		if (pread_full(j->fd, scratch, n, JOURNAL_HDR_AREA + c) < 0)
			return -1;
		for (size_t i = 0; i + JOURNAL_REC_HDR <= n; i += JOURNAL_ALIGN) {
			if (!rec_parse(j, scratch + i, c + i, &d) || d.txid != bad + 1)
				continue;
			int rc = chain_proves_commit(j, c + i, d, bad, who);
			if (rc)
				return rc;
		}
	}
	int rc = probe_hdr(j, 0, &d);
	if (rc <= 0)
		return rc;
	if (d.txid != bad + 1)
		return 0;
	return chain_proves_commit(j, 0, d, bad, who);
}

/*
 * Rebuilds the index from the persisted tail. On return j->first/last,
 * tail/head and the prev CRCs describe the intact chain.
 */
static int recover(struct journal *j, char *err, size_t err_len)
{
	unsigned char *scratch = malloc(JOURNAL_SCAN_CHUNK);
	uint64_t start = j->tail_lpos, lpos = start, who = 0;
	uint32_t prev = j->tail_prev_crc;
	enum probe_result first_pr = PR_BADHDR;
	struct disk_rec d, bad_d;
	int rc = -1;

	memset(&d, 0, sizeof(d));

	if (!scratch) {
		snprintf(err, err_len, "journal %s: out of memory", j->path);
		return -1;
	}
	for (;;) {
		uint64_t p = lpos % j->ring, at = lpos;
		enum probe_result pr = probe_rec(j, p, j->last + 1, prev, &d, scratch);
		first_pr = pr;
		bad_d = d;
		if (pr != PR_OK && pr != PR_IO && p != 0) {
			/* Did not fit before the ring end: look at the next lap's start. */
			struct disk_rec d0;
			enum probe_result pr0 = probe_rec(j, 0, j->last + 1, prev, &d0, scratch);
			if (pr0 == PR_OK || pr0 == PR_IO) {
				pr = pr0;
				d = d0;
				at = lpos + (j->ring - p);
			}
		}
		if (pr == PR_IO)
			goto io_fail;
		if (pr != PR_OK)
			break;
		uint64_t size = rec_size(d.data_len);
		if (at + size - start > j->ring)
			break; /* would overlap the tail: stale, not ours */
		if (index_push(j, at, size, d.hdr_crc, d.offset, d.length) < 0) {
			snprintf(err, err_len, "journal %s: out of memory for the index", j->path);
			goto out;
		}
		j->last++;
		prev = d.hdr_crc;
		lpos = at + size;
	}
	j->head_lpos = lpos;
	j->head_prev_crc = prev;

	uint64_t p = lpos % j->ring, bad = j->last + 1;
	int proof;
	const char *what;
	if (first_pr == PR_BADDATA) {
		/* The header says where the next record is: follow the chain. */
		what = "data checksum mismatch";
		proof = chain_proves_commit(j, p, bad_d, bad, &who);
	} else {
		/* The record was at p or at 0; either may hold a corrupt header. */
		what = "record header invalid";
		proof = scan_for_commit(j, p, bad, scratch, &who);
		if (proof == 0 && p != 0)
			proof = scan_for_commit(j, 0, bad, scratch, &who);
	}
	if (proof < 0)
		goto io_fail;
	if (proof || bad <= j->pdurable) {
		if (proof)
			snprintf(err, err_len,
				 "journal %s: corrupt record TXID %" PRIu64 " at ring offset %" PRIu64
				 " (%s), but TXID %" PRIu64 " after it was committed",
				 j->path, bad, p, what, who);
		else
			snprintf(err, err_len,
				 "journal %s: corrupt record TXID %" PRIu64 " at ring offset %" PRIu64
				 " (%s), but the journal was committed through TXID %" PRIu64
				 " (it may have been replicated; dropping it would reuse its TXID)",
				 j->path, bad, p, what, j->pdurable);
		errno = EBADMSG;
		uint64_t floor = bad > who ? bad : who;
		if (j->pdurable > floor)
			floor = j->pdurable;
		/*
		 * Salvage: keep the intact records before it; the caller decides. Not
		 * when the TXIDs the caller must skip to run past the journal's range:
		 * new writes would have no TXID left (journal_reset refuses them).
		 */
		if (j->damage && floor < JOURNAL_MAX_TXID - 1) {
			j->damage->txid = bad;
			j->damage->floor = floor;
			snprintf(j->damage->what, sizeof(j->damage->what), "%s", err);
			rc = 0;
		}
		goto out;
	}
	uint32_t magic = 0;
	if (first_pr == PR_BADHDR && pread_full(j->fd, &magic, sizeof(magic), JOURNAL_HDR_AREA + p) < 0)
		goto io_fail;
	if (first_pr == PR_BADDATA || le32toh(magic) == JOURNAL_REC_MAGIC)
		log_warn(j->volume, "journal %s: dropped torn tail at ring offset %" PRIu64
			 " (TXID %" PRIu64 ")", j->path, p, bad);
	rc = 0;
	goto out;

io_fail:
	snprintf(err, err_len, "journal %s: reading during recovery: %s", j->path, strerror(errno));
out:
	free(scratch);
	return rc;
}

/* --------------------------------------------------------- open / close */

static uint64_t max_data_for(uint64_t ring)
{
	uint64_t m = ring - JOURNAL_REC_HDR;
	return m < JOURNAL_MAX_DATA ? m : JOURNAL_MAX_DATA;
}

/*
 * New file: built as PATH.new and renamed, so a crash never leaves a
 * journal without a valid header under PATH.
 */
static int create_file(const char *path, uint64_t size, char *err, size_t err_len)
{
	char tmp[4096];
	struct disk_slot s;
	int fd = -1, rc = -1;

	if (size < JOURNAL_MIN_FILE || size > JOURNAL_MAX_FILE) {
		snprintf(err, err_len, "journal %s: size %" PRIu64 " outside %u..%" PRIu64, path,
			 size, (unsigned)JOURNAL_MIN_FILE, JOURNAL_MAX_FILE);
		errno = EINVAL;
		return -1;
	}
	size &= ~(uint64_t)4095;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.new", path) >= sizeof(tmp)) {
		snprintf(err, err_len, "journal %s: path too long", path);
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, err_len, "journal %s: creating: %s", tmp, strerror(errno));
		return -1;
	}
	int e = posix_fallocate(fd, 0, (off_t)size);
	if (e) {
		snprintf(err, err_len, "journal %s: reserving %" PRIu64 " bytes: %s", path, size,
			 strerror(e));
		errno = e;
		goto fail;
	}
	slot_encode(&s, 1, size - JOURNAL_HDR_AREA, 0, 1, 1, 0, 0);
	struct iovec iov = { &s, sizeof(s) };
	if (pwritev_full(fd, &iov, 1, 0) < 0 || fdatasync(fd) < 0) {
		snprintf(err, err_len, "journal %s: writing header: %s", tmp, strerror(errno));
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		snprintf(err, err_len, "journal %s: renaming %s: %s", path, tmp, strerror(errno));
		goto fail;
	}
	if (fsync_parent_dir(path) < 0) {
		snprintf(err, err_len, "journal %s: fsync of its directory: %s", path,
			 strerror(errno));
		goto out; /* the file is complete; a later open finds it */
	}
	rc = 0;
	goto out;
fail:
	e = errno;
	unlink(tmp);
	errno = e;
out:
	e = errno;
	close(fd);
	errno = e;
	return rc;
}

static struct journal *open_journal(const char *path, uint64_t size, const char *volume,
				    struct journal_damage *damage, char *err, size_t err_len)
{
	struct journal *j = calloc(1, sizeof(*j));
	unsigned char hdr[JOURNAL_HDR_AREA];
	struct disk_slot slots[2];
	const char *why[2];
	struct stat st;
	int e;

	if (j) {
		j->fd = -1;
		j->damage = damage;
	}
	if (!j || !(j->path = strdup(path)) || (volume && !(j->volume = strdup(volume)))) {
		snprintf(err, err_len, "journal %s: out of memory", path);
		errno = ENOMEM;
		goto fail;
	}
	j->fd = open(path, O_RDWR | O_CLOEXEC);
	if (j->fd < 0 && errno == ENOENT) {
		if (create_file(path, size, err, err_len) < 0)
			goto fail;
		j->fd = open(path, O_RDWR | O_CLOEXEC);
	}
	if (j->fd < 0) {
		snprintf(err, err_len, "journal %s: open: %s", path, strerror(errno));
		goto fail;
	}
	if (fstat(j->fd, &st) < 0) {
		snprintf(err, err_len, "journal %s: fstat: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < JOURNAL_MIN_FILE) {
		snprintf(err, err_len, "journal %s: not a journal (size %" PRIu64 ")", path,
			 (uint64_t)st.st_size);
		errno = EINVAL;
		goto fail;
	}
	if (pread_full(j->fd, hdr, sizeof(hdr), 0) < 0) {
		snprintf(err, err_len, "journal %s: reading header: %s", path, strerror(errno));
		goto fail;
	}
	int best = -1;
	for (int i = 0; i < 2; i++) {
		why[i] = slot_decode(hdr + i * JOURNAL_SLOT_SIZE, (uint64_t)st.st_size, &slots[i]);
		if (!why[i] && (best < 0 || slots[i].seq > slots[best].seq))
			best = i;
	}
	if (best < 0) {
		snprintf(err, err_len, "journal %s: no valid header slot (slot 0: %s, slot 1: %s)",
			 path, why[0], why[1]);
		errno = EBADMSG;
		goto fail;
	}
	/* A torn slot write leaves the older slot; an unwritten one is all zeros. */
	if (why[best ^ 1] && !all_zero(hdr + (best ^ 1) * JOURNAL_SLOT_SIZE, sizeof(slots[0])))
		log_warn(volume, "journal %s: header slot %d invalid (%s), using slot %d", path,
			 best ^ 1, why[best ^ 1], best);
	struct disk_slot *s = &slots[best];
	j->hdr_slot = (unsigned)best;
	j->hdr_seq = s->seq;
	j->ring = s->ring_size;
	j->max_data = max_data_for(j->ring);
	j->epoch = s->epoch;
	if (random_bytes(&j->nonce, sizeof(j->nonce)) < 0) {
		snprintf(err, err_len, "journal %s: getrandom: %s", path, strerror(errno));
		goto fail;
	}
	j->first = s->tail_txid;
	j->last = s->tail_txid - 1;
	j->tail_lpos = j->ptail_lpos = s->tail_off;
	j->ptail_txid = s->tail_txid;
	j->tail_prev_crc = s->tail_prev_crc;
	j->pdurable = s->durable_txid;

	if (recover(j, err, err_len) < 0)
		goto fail;
	/* Recovered records may sit only in the page cache after a process crash. */
	if (fdatasync(j->fd) < 0) {
		snprintf(err, err_len, "journal %s: fdatasync: %s", path, strerror(errno));
		goto fail;
	}
	j->synced = j->last;
	j->damage = NULL;
	log_debug(volume, "journal %s: ring %" PRIu64 " bytes, TXIDs %" PRIu64 "..%" PRIu64, path,
		  j->ring, j->first, j->last);
	return j;
fail:
	e = errno;
	if (j) {
		if (j->fd >= 0)
			close(j->fd);
		free(j->ents);
		free(j->path);
		free(j->volume);
		free(j);
	}
	errno = e;
	return NULL;
}

struct journal *journal_open(const char *path, uint64_t size, const char *volume, char *err,
			     size_t err_len)
{
	return open_journal(path, size, volume, NULL, err, err_len);
}

struct journal *journal_open_salvage(const char *path, uint64_t size, const char *volume,
				     struct journal_damage *damage, char *err, size_t err_len)
{
	memset(damage, 0, sizeof(*damage));
	return open_journal(path, size, volume, damage, err, err_len);
}

void journal_close(struct journal *j)
{
	if (!j)
		return;
	/*
	 * A clean close leaves nothing freed to resurrect, and marks every
	 * synced TXID committed: a damaged newest record then fails recovery.
	 */
	if (j->ptail_lpos != j->tail_lpos || j->ptail_txid != j->first || j->pdurable != j->synced)
		persist_tail(j);
	close(j->fd);
	free(j->ents);
	free(j->path);
	free(j->volume);
	free(j);
}

/* ------------------------------------------------------------ accessors */

uint64_t journal_first_txid(const struct journal *j)
{
	return j->first;
}

uint64_t journal_last_txid(const struct journal *j)
{
	return j->last;
}

uint64_t journal_capacity(const struct journal *j)
{
	return j->ring;
}

uint64_t journal_used(const struct journal *j)
{
	return j->head_lpos - j->tail_lpos;
}

uint64_t journal_head_pos(const struct journal *j)
{
	return j->head_lpos;
}

uint64_t journal_bytes_after(const struct journal *j, uint64_t txid)
{
	if (txid < j->first)
		return journal_used(j);
	if (txid >= j->last)
		return 0;
	return j->head_lpos - ent(j, txid + 1)->lpos;
}

uint64_t journal_max_record_data(const struct journal *j)
{
	return j->max_data;
}

/* ------------------------------------------------------------ operations */

int journal_reserve(struct journal *j, const struct journal_rec *r, struct journal_resv *v)
{
	uint64_t data_len = r->op == JOP_WRITE ? r->length : 0;
	const char *why = NULL;

	if (r->txid != j->last + 1 || r->txid >= JOURNAL_MAX_TXID)
		why = "TXID out of sequence";
	else if (!op_valid(r->op))
		why = "unknown op";
	else if (data_len > j->max_data)
		why = "data larger than a record holds";
	else if (r->offset > UINT64_MAX - r->length)
		why = "offset + length overflows";
	if (why) {
		log_error(j->volume, "journal %s: rejected record TXID %" PRIu64 " (next %" PRIu64
			  ") op %u offset %" PRIu64 " length %" PRIu64 " (max data %" PRIu64 "): %s",
			  j->path, r->txid, j->last + 1, r->op, r->offset, r->length, j->max_data,
			  why);
		errno = EINVAL;
		return -1;
	}
	uint64_t size = rec_size(data_len);
	uint64_t start = j->head_lpos, ro = start % j->ring;
	if (size > j->ring - ro)
		start += j->ring - ro; /* does not fit before the ring end */
	uint64_t tail = held(j) ? j->tail_lpos : start; /* empty: the tail follows */
	if (start + size - tail > j->ring) {
		errno = ENOSPC;
		return -1;
	}
	if (index_reserve(j) < 0) {
		log_error(j->volume, "journal %s: out of memory for the index", j->path);
		errno = ENOMEM;
		return -1;
	}
	/*
	 * Never overwrite what recovery from the persisted tail would read. This
	 * header write (fdatasync included) is the one I/O a reservation may do;
	 * it happens only when journal_free_through could not persist the tail.
	 */
	v->prev_head_lpos = j->head_lpos;
	if (!held(j))
		j->tail_lpos = j->head_lpos = start;
	if (start + size - j->ptail_lpos > j->ring && persist_tail(j) < 0)
		return -1;

	v->txid = r->txid;
	v->lpos = start;
	v->data_len = (uint32_t)data_len;
	v->prev_head_crc = j->head_prev_crc;
	rec_encode(j, r, (uint32_t)data_len, (struct disk_rec *)v->hdr);
	uint32_t hdr_crc = le32toh(((struct disk_rec *)v->hdr)->hdr_crc);
	index_push(j, start, size, hdr_crc, r->offset, r->length); /* cannot fail: reserved */
	j->last++;
	j->head_lpos = start + size;
	j->head_prev_crc = hdr_crc;
	return 0;
}

int journal_write(struct journal *j, const struct journal_resv *v, const void *data)
{
	struct iovec iov[2] = { { (void *)v->hdr, JOURNAL_REC_HDR }, { (void *)data, v->data_len } };
	if (pwritev_full(j->fd, iov, v->data_len ? 2 : 1, JOURNAL_HDR_AREA + v->lpos % j->ring) < 0) {
		int e = errno;
		log_error(j->volume, "journal %s: writing TXID %" PRIu64 " at ring offset %" PRIu64
			  ": %s", j->path, v->txid, v->lpos % j->ring, strerror(e));
		errno = e;
		return -1;
	}
	return 0;
}

int journal_append(struct journal *j, const struct journal_rec *r, const void *data)
{
	struct journal_resv v;

	if (r->op == JOP_WRITE && r->length && !data) {
		log_error(j->volume, "journal %s: rejected record TXID %" PRIu64 ": no data", j->path,
			  r->txid);
		errno = EINVAL;
		return -1;
	}
	if (journal_reserve(j, r, &v) < 0)
		return -1;
	if (journal_write(j, &v, data) == 0)
		return 0;
	/* Nothing follows it: take the reservation back, so the caller may retry. */
	int e = errno;
	j->last--;
	j->head_lpos = v.prev_head_lpos;
	j->head_prev_crc = v.prev_head_crc;
	if (!held(j))
		j->tail_lpos = j->head_lpos;
	errno = e;
	return -1;
}

int journal_flush(struct journal *j)
{
	if (fdatasync(j->fd) < 0) {
		int e = errno;
		log_error(j->volume, "journal %s: fdatasync: %s", j->path, strerror(e));
		errno = e;
		return -1;
	}
	return 0;
}

void journal_mark_synced(struct journal *j, uint64_t txid)
{
	if (txid > j->synced)
		j->synced = txid;
}

int journal_sync(struct journal *j)
{
	uint64_t last = j->last;

	if (journal_flush(j) < 0)
		return -1;
	journal_mark_synced(j, last);
	return 0;
}

int journal_locate(const struct journal *j, uint64_t txid, struct journal_loc *l)
{
	if (txid < j->first || txid > j->last) {
		errno = ENOENT;
		return -1;
	}
	const struct jent *e = ent(j, txid);
	l->txid = txid;
	l->ring_off = e->lpos % j->ring;
	l->hdr_crc = e->hdr_crc;
	l->offset = e->offset;
	l->length = e->length;
	return 0;
}

int journal_read_at(struct journal *j, const struct journal_loc *l, struct journal_rec *r,
		    void *buf, size_t buf_len)
{
	unsigned char hb[JOURNAL_REC_HDR];
	struct disk_rec d;
	uint64_t txid = l->txid, ro = l->ring_off;

	if (pread_full(j->fd, hb, sizeof(hb), JOURNAL_HDR_AREA + ro) < 0)
		goto io_fail;
	if (!rec_parse(j, hb, ro, &d) || d.txid != txid || d.hdr_crc != l->hdr_crc) {
		log_error(j->volume, "journal %s: record TXID %" PRIu64 " at ring offset %" PRIu64
			  ": header checksum mismatch", j->path, txid, ro);
		errno = EBADMSG;
		return -1;
	}
	if (buf && d.data_len > buf_len) {
		log_error(j->volume, "journal %s: record TXID %" PRIu64 " holds %" PRIu32
			  " bytes, buffer has %zu", j->path, txid, d.data_len, buf_len);
		errno = EINVAL;
		return -1;
	}
	if (buf && d.data_len &&
	    pread_full(j->fd, buf, d.data_len, JOURNAL_HDR_AREA + ro + JOURNAL_REC_HDR) < 0)
		goto io_fail;
	if (buf && d.data_len && frep_crc32c(buf, d.data_len) != d.data_crc) {
		log_error(j->volume, "journal %s: record TXID %" PRIu64 " at ring offset %" PRIu64
			  ": data checksum mismatch", j->path, txid, ro);
		errno = EBADMSG;
		return -1;
	}
	r->generation = d.generation;
	r->txid = d.txid;
	r->offset = d.offset;
	r->length = d.length;
	r->op = d.op;
	r->data_crc = d.data_crc;
	return 0;

io_fail:;
	int err = errno;
	log_error(j->volume, "journal %s: reading TXID %" PRIu64 ": %s", j->path, txid,
		  strerror(err));
	errno = err;
	return -1;
}

int journal_read(struct journal *j, uint64_t txid, struct journal_rec *r, void *buf,
		 size_t buf_len)
{
	struct journal_loc l;

	if (journal_locate(j, txid, &l) < 0)
		return -1;
	return journal_read_at(j, &l, r, buf, buf_len);
}

int journal_rec_format(const struct journal_rec *r, char *buf, size_t len)
{
	static const char *const ops[] = { [JOP_WRITE] = "write", [JOP_TRIM] = "trim", [JOP_ZERO] = "zero" };
	int n = snprintf(buf, len,
			 "gen=%" PRIu64 " txid=%" PRIu64 " op=%s off=%" PRIu64 " len=%" PRIu64
			 " crc=%08" PRIx32 "\n",
			 r->generation, r->txid, op_valid(r->op) ? ops[r->op] : "?", r->offset,
			 r->length, r->data_crc);
	return n < 0 ? 0 : (size_t)n >= len ? (int)len - 1 : n;
}

int journal_free_through(struct journal *j, uint64_t upto)
{
	if (upto > j->last) {
		log_error(j->volume, "journal %s: free through TXID %" PRIu64 " past the last %" PRIu64,
			  j->path, upto, j->last);
		errno = EINVAL;
		return -1;
	}
	while (j->first <= upto) {
		j->tail_prev_crc = j->ents[j->ehead].hdr_crc;
		j->ehead = (j->ehead + 1) & (j->ecap - 1);
		j->first++;
		j->tail_lpos = held(j) ? j->ents[j->ehead].lpos : j->head_lpos;
	}
	/*
	 * Every free writes the header (one fdatasync; callers free about once a
	 * second): freed records are on the mirror, so the mark must cover them,
	 * and every synced TXID, before a crash can leave one as the newest
	 * record recovery finds.
	 */
	if (j->ptail_txid == j->first && j->pdurable == j->synced)
		return 0;
	return persist_tail(j);
}

int journal_reset(struct journal *j, uint64_t last_txid)
{
	if (last_txid >= JOURNAL_MAX_TXID - 1) {
		log_error(j->volume, "journal %s: reset to TXID %" PRIu64 " out of range", j->path,
			  last_txid);
		errno = EINVAL;
		return -1;
	}
	/* A new epoch makes every record on disk stale, whatever its TXID. */
	uint32_t epoch = j->epoch + 1;
	if (write_header(j, j->head_lpos % j->ring, last_txid + 1, epoch, 0, last_txid) < 0)
		return -1;
	j->epoch = epoch;
	j->first = last_txid + 1;
	j->last = last_txid;
	j->ehead = 0;
	j->tail_lpos = j->ptail_lpos = j->head_lpos;
	j->ptail_txid = j->first;
	j->tail_prev_crc = j->head_prev_crc = 0;
	j->synced = last_txid;
	return 0;
}
