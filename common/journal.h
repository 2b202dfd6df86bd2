/* Journal: the persistent ring of write transactions (master mirror buffer, mirror journal). */
#ifndef FREP_JOURNAL_H
#define FREP_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Record operations; the values equal proto TxOp. */
enum journal_op { JOP_WRITE = 1, JOP_TRIM = 2, JOP_ZERO = 3 };

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
 * A bad record followed by a valid one (corruption, not a torn tail) fails.
 * Returns NULL with err filled. Caller frees with journal_close.
 * Not thread-safe: the caller serialises every call on one journal.
 */
struct journal *journal_open(const char *path, uint64_t size, const char *volume, char *err,
			     size_t err_len);
void journal_close(struct journal *j);

/* TXIDs held: [first, last]; first == last + 1 when empty. last is 0 if none ever. */
uint64_t journal_first_txid(const struct journal *j);
uint64_t journal_last_txid(const struct journal *j);
uint64_t journal_capacity(const struct journal *j); /* ring bytes */
uint64_t journal_used(const struct journal *j);	    /* ring bytes held by records */
/* Largest data length one record can hold in this ring. */
uint64_t journal_max_record_data(const struct journal *j);

/*
 * Appends a record; r->txid must be journal_last_txid() + 1. r->data_crc must
 * be the CRC32C of data (not recomputed here; journal_read checks it). Not durable until
 * journal_sync. Returns 0, or -1 with errno ENOSPC when the ring has no room
 * (nothing written), EINVAL for a bad txid or oversize record, or an I/O errno.
 */
int journal_append(struct journal *j, const struct journal_rec *r, const void *data);

/* fdatasync: every appended record is now committed. 0 or -1. */
int journal_sync(struct journal *j);

/*
 * Reads record txid (first <= txid <= last) into *r and its data into buf
 * (buf_len must hold r->length for JOP_WRITE). Verifies the data CRC.
 * buf NULL reads the record header only (its header CRC is still checked).
 * 0, or -1 with errno (ENOENT: not held; EBADMSG: checksum mismatch).
 */
int journal_read(struct journal *j, uint64_t txid, struct journal_rec *r, void *buf,
		 size_t buf_len);

/*
 * Frees every record with txid <= upto (records are freed in order). The tail
 * on disk is persisted lazily, always before the freed space is reused.
 * 0 or -1.
 */
int journal_free_through(struct journal *j, uint64_t upto);

/*
 * Drops every record and makes the journal empty with last TXID = last_txid,
 * durably. The mirror uses it when a bulk copy restarts sequencing at a new base.
 */
int journal_reset(struct journal *j, uint64_t last_txid);

#endif
