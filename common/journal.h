/* Journal: the persistent ring of write transactions (master mirror buffer, mirror journal). */
#ifndef FREP_JOURNAL_H
#define FREP_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Record operations; the values equal proto TxOp. */
enum journal_op { JOP_WRITE = 1, JOP_TRIM = 2, JOP_ZERO = 3 };

/*
 * TXIDs stay below 2^62 so txid + 1 and lpos sums never overflow; a peer's
 * TXID at or above it is a protocol error, never an I/O one (spec Limits).
 */
#define JOURNAL_MAX_TXID (UINT64_C(1) << 62)

/* A transaction as stored. data_len is length for JOP_WRITE, else 0. */
struct journal_rec {
	uint64_t generation;
	uint64_t txid;
	uint64_t offset;
	uint64_t length;
	uint32_t op;	   /* enum journal_op */
	uint32_t data_crc; /* CRC32C of the data, 0 without data */
};

struct journal;

/*
 * Formats r as one trace line (--trace-tx), newline included:
 * "gen=G txid=T op=write|trim|zero off=O len=L crc=XXXXXXXX\n". Returns its length.
 */
int journal_rec_format(const struct journal_rec *r, char *buf, size_t len);

/*
 * Opens the journal at path, creating it with `size` bytes (space reserved with
 * posix_fallocate) if it does not exist. size is ignored for an existing file.
 * Recovery runs here: records from the persisted tail are scanned and checked
 * (header and data CRC32C, TXIDs contiguous); a torn tail is dropped and logged.
 * A bad record that was committed fails with errno EBADMSG and err naming the
 * path and TXID: one followed by a valid record saying so, or one covered by
 * the durable-through mark (the last TXID synced at the last free or clean
 * close). Only records never committed are dropped, so no TXID that may have
 * left the host is ever reused. Returns NULL with err filled (errno set).
 * Caller frees with journal_close.
 * Not thread-safe: the caller serialises every call on one journal, except
 * journal_write, journal_flush and journal_read_at, which may run unlocked.
 */
struct journal *journal_open(const char *path, uint64_t size, const char *volume, char *err,
			     size_t err_len);
/* Persists the tail and marks every TXID journal_sync covered as committed. */
/*
 * journal_open, except that a damaged committed record does not fail it (the
 * master's choice: its volume must stay served). The journal then holds the
 * intact records before it, for redo, and *damage says which TXID was lost and
 * the highest TXID that may have left the host (floor: the record after it
 * that proved it committed, the durable-through mark, or itself). After redo
 * the caller must drop the rest with journal_reset(j, floor), so that no TXID
 * that may be on the mirror is ever given to other data. damage->txid is 0
 * when nothing was damaged.
 */
struct journal_damage {
	uint64_t txid;
	uint64_t floor;
	char what[400]; /* the journal, the TXID, the offset and why */
};
struct journal *journal_open_salvage(const char *path, uint64_t size, const char *volume,
				     struct journal_damage *damage, char *err, size_t err_len);
void journal_close(struct journal *j);

/* TXIDs held: [first, last]; first == last + 1 when empty. last is 0 if none ever. */
uint64_t journal_first_txid(const struct journal *j);
uint64_t journal_last_txid(const struct journal *j);
uint64_t journal_capacity(const struct journal *j); /* ring bytes */
uint64_t journal_used(const struct journal *j);	    /* ring bytes held by records */
/* Ring bytes ever reserved, as a position that only grows: rates are its deltas. */
uint64_t journal_head_pos(const struct journal *j);
/* Ring bytes held by the records after txid (all of them if txid < first). */
uint64_t journal_bytes_after(const struct journal *j, uint64_t txid);
/* Largest data length one record can hold in this ring. */
uint64_t journal_max_record_data(const struct journal *j);

/*
 * Appends a record and writes it: journal_reserve then journal_write, for
 * callers that serialise everything (the mirror, redo). r->txid must be
 * journal_last_txid() + 1. Not durable until journal_sync. Returns 0, or -1
 * with errno ENOSPC when the ring has no room (nothing written), EINVAL for a
 * bad txid or oversize record, or an I/O errno (the record is taken back).
 */
int journal_append(struct journal *j, const struct journal_rec *r, const void *data);

/*
 * Concurrent appends (the master's transaction path) in two steps:
 *
 *   journal_reserve  under the caller's lock: checks r, takes the ring space
 *                    and TXID r->txid (== journal_last_txid() + 1), indexes
 *                    the record and encodes its header into *v. From here on
 *                    journal_last_txid() counts it. No data is read.
 *   journal_write    without any lock: writes header and data at the
 *                    reserved place. Writes of different reservations may run
 *                    in parallel and finish in any order.
 *
 * r->data_crc must be the CRC32C of the data (not recomputed; journal_read
 * checks it). A reservation whose write fails leaves a hole in the chain:
 * recovery ends there, so every later record is lost too. The caller must then
 * stop using the journal (the master fails all writes with EIO).
 * journal_reserve returns 0 or -1 with errno as journal_append.
 */
struct journal_resv {
	uint64_t txid;
	uint64_t lpos;
	uint32_t data_len;
	uint32_t prev_head_crc;	 /* to take back the reservation (journal_append) */
	uint64_t prev_head_lpos;
	_Alignas(8) unsigned char hdr[64]; /* the encoded record header */
};
int journal_reserve(struct journal *j, const struct journal_rec *r, struct journal_resv *v);
int journal_write(struct journal *j, const struct journal_resv *v, const void *data);

/* fdatasync: every appended record is now committed. 0 or -1. */
int journal_sync(struct journal *j);
/*
 * Group commit in two steps: journal_flush (fdatasync, no state touched, so
 * no lock needed) makes durable every record whose journal_write returned
 * before it started; journal_mark_synced(txid) then records, under the
 * caller's lock, that TXIDs up to txid are durable.
 */
int journal_flush(struct journal *j);
void journal_mark_synced(struct journal *j, uint64_t txid);

/*
 * Reads record txid (first <= txid <= last) into *r and its data into buf
 * (buf_len must hold r->length for JOP_WRITE). Verifies the data CRC.
 * buf NULL reads the record header only (its header CRC is still checked).
 * 0, or -1 with errno (ENOENT: not held; EBADMSG: checksum mismatch).
 */
int journal_read(struct journal *j, uint64_t txid, struct journal_rec *r, void *buf,
		 size_t buf_len);

/*
 * The same in two steps, so the reading needs no lock: journal_locate (under
 * the caller's lock) finds where record txid is and its volume range;
 * journal_read_at (no lock; it uses only the file and immutable geometry)
 * reads and checks it. If the record was freed and its space reused in
 * between, journal_read_at fails with EBADMSG (the header names another TXID
 * or its CRC differs): the caller decides whether that was a free or
 * corruption.
 */
struct journal_loc {
	uint64_t txid;
	uint64_t ring_off;
	uint32_t hdr_crc;
	uint64_t offset, length; /* the record's volume range */
};
int journal_locate(const struct journal *j, uint64_t txid, struct journal_loc *l);
int journal_read_at(struct journal *j, const struct journal_loc *l, struct journal_rec *r,
		    void *buf, size_t buf_len);

/*
 * Frees every record with txid <= upto (records are freed in order). Writes
 * the header durably (one fdatasync): the tail, and the durable-through mark
 * at the last TXID journal_sync or journal_mark_synced covered. 0 or -1 (the
 * free holds in memory; the tail is persisted again before its space is reused).
 */
int journal_free_through(struct journal *j, uint64_t upto);

/*
 * Drops every record and makes the journal empty with last TXID = last_txid,
 * durably. The mirror uses it when a bulk copy restarts sequencing at a new base.
 */
int journal_reset(struct journal *j, uint64_t last_txid);

#endif
