/* frep-conform plays a mirror against a master: the steps its cases are made of. */
#ifndef FREP_CONFORM_MASTER_H
#define FREP_CONFORM_MASTER_H

#include "conform.h"

struct nbd_handle;

/* The HELLO of the current connection, copied out of the frame. */
struct mhello {
	uint32_t proto_min, proto_max, lane, lane_count;
	char volume[FREP_MAX_VOLUME_NAME + 1];
	uint8_t uuid[FREP_UUID_SIZE], session_id[FREP_SESSION_ID_SIZE];
	uint64_t generation, retained_first_txid, committed_txid, journal_size;
	uint32_t compression[4]; /* Hello.compression, the first 4 offered (version 2) */
	size_t n_compression;
	uint32_t lanes_max;	 /* Hello.lanes_max, 1 when absent */
};

/* What a WELCOME says; wel_new() is a volume the mirror never saw. */
struct mwelcome {
	uint32_t proto_version;
	bool known, consistent;
	uint64_t durable_txid, consistent_txid, copy_cursor, copy_base;
	uint32_t phase;
	bool verify; /* Welcome.verify: this mirror answers VERIFY (VFY-1) */
	/* Version 2 (NEG-3, LANE-4): sent when proto_version is 2. */
	uint32_t compression, lanes;
};
struct mwelcome wel_new(void);
/* A mirror consistent in phase INSYNC at TXID d (READY row 3 when the master holds d + 1). */
struct mwelcome wel_insync(uint64_t d);

/* One transaction: as a write through NBD made it, or as a TX carried it. */
struct mtx {
	uint64_t generation, txid, offset, length;
	uint32_t op, crc;
};

/* The pass the master runs, from its START_COPY. */
struct mcopy {
	bool started, done;
	uint32_t kind;
	bool full;
	uint64_t base, total, start_offset;
	uint64_t next;	     /* end of the last record: the next starts here or later */
	uint64_t data_bytes; /* COPY_DATA bytes received */
	unsigned compressed; /* COPY_DATA frames whose trailer came compressed */
	uint64_t t_c, copied_bytes;
};

/*
 * The mirror side of one master case (x->ms): what the master said on this
 * connection, this mirror's image of the volume (copy records and applied
 * TXs), and the master volume as the case wrote it through NBD.
 */
struct mside {
	struct cctx *x;
	struct mhello h;
	unsigned hellos;	/* connections accepted in this case */
	bool restarted;		/* the master restarted since the last HELLO (DUR-3) */
	uint64_t accepted_ms;	/* when the last one was accepted */
	uint64_t volume_size;	/* the EXTENT_TABLE's sum */
	size_t n_extents;
	uint64_t extents[FREP_MAX_EXTENTS];

	/* The master's HEARTBEATs (HB-1), per connection. */
	bool echo;		/* answer them, as a mirror does (HB-2); else stay silent */
	unsigned n_hb;
	uint64_t hb_seq, hb_txid, hb_last_ms;
	uint64_t hb_max_gap_ms;	/* longest wait between two of them, as read */
	char hb_bad[256];	/* the first HB-1 violation seen, "" if none */

	struct mcopy copy;
	uint32_t version;	/* the WELCOME sent on this connection chose it */
	unsigned tx_compressed;	/* TX frames whose trailer came compressed, in this case */
	uint64_t next_txid;	/* the TX expected next (0: no START_COPY/START_SYNC yet) */
	const char *next_rule;	/* the rule that says which, for the first TX after a turn */
	uint64_t max_txid;	/* highest TXID received on this connection */
	uint64_t acked;		/* last TX_ACK sent */
	struct mtx *got;	/* every TX received in this case (resends compared to it) */
	size_t n_got, cap_got;

	/* The writes: TXIDs from committed (the first HELLO's committed_txid) on. */
	struct nbd_handle *nbd;
	uint64_t committed;	/* the master's last TXID as our writes made it */
	struct mtx *wrote;	/* one per write, TXID committed0 + 1 + i */
	size_t n_wrote, cap_wrote;
	uint64_t committed0;
	uint8_t *model;		/* the master volume: read at connect, then our writes */
	uint8_t *img;		/* this mirror's volume */
	bool model_read;	/* model holds the volume as first read through NBD */
	bool img_touched;	/* a copy record or TX wrote to img */
	uint64_t size;		/* of model and img */
	bool can_trim, can_zero;
	uint64_t min_block;
};

/* --- lifecycle (master-steps.c) ------------------------------------------------ */

/* Allocates x->ms for a master case; ms_free releases it (and the NBD connection). */
int ms_init(struct cctx *x);
void ms_free(struct cctx *x);

/* --- handshake --------------------------------------------------------------------- */

/*
 * Accepts the master's next connection and reads its HELLO, checked as every
 * HELLO must be (HS-1, LANE-1, LANE-2, HS-2's sizes); per connection state is reset.
 */
int ms_accept(struct mside *s);
int ms_welcome(struct mside *s, const struct mwelcome *w);
/* Reads EXTENT_TABLE (MP-1) and answers PARTS_READY with the sum (or volume_size when nonzero). */
int ms_extents(struct mside *s);
int ms_parts_ready(struct mside *s, bool created, uint64_t volume_size);
/* Accept, WELCOME w (NULL: a new volume), EXTENT_TABLE, PARTS_READY. */
int ms_open(struct mside *s, const struct mwelcome *w);

/* --- copy and sequencing ------------------------------------------------------------ */

/* Reads START_COPY of this kind (0: either); s->copy holds it. */
int ms_start_copy(struct mside *s, uint32_t kind);
int ms_start_sync(struct mside *s, uint64_t from);
/*
 * Reads the pass's records up to COPY_DONE (COPY-5, COPY-9, COPY-10): in
 * ascending order, a full pass covering [start_offset, volume size) exactly,
 * every CRC32C right, no TX before COPY_DONE, t_c >= t_s. Then COPY_ACK(size).
 */
int ms_copy(struct mside *s);
/* Reads the next frame, which must be the TX expected next (SEQ-1, SEQ-2, SEQ-11). */
int ms_tx(struct mside *s, struct mtx *t);
/* Checks and applies a TX frame already read. */
int ms_take_tx(struct mside *s, const struct frame *f, struct mtx *t);
/* Reads the TXs that come until ms pass without one (HEARTBEATs aside); *n gets their count. */
int ms_poll_txs(struct mside *s, int ms, unsigned *n);
/* Reads TXs until every TXID up to through has come. */
int ms_txs(struct mside *s, uint64_t through);
int ms_ack(struct mside *s, uint64_t txid);
int ms_consistent(struct mside *s, uint64_t txid);
int ms_copy_ack(struct mside *s, uint64_t through);
/* A valid RESEND (from <= to <= the last TX received) makes ms_tx expect `from` next. */
int ms_resend(struct mside *s, uint64_t from, uint64_t to);
/* A pass of this kind (0: either), read to its end; then COPY_ACK, TX_ACK(t_c), CONSISTENT(t_c). */
int ms_pass(struct mside *s, uint32_t kind);
/* A new volume all the way to INSYNC: ms_open, then a full pass from 0 (RDY-1 row 2). */
int ms_insync(struct mside *s);
/*
 * Answers the master's VERIFYs until their regions cover the volume once
 * (VFY-3, VFY-5), applying the TXs that come meanwhile. Each VERIFY must come
 * right after the TX of its TXID (the last one received, or the base) and
 * carry the XXH3-128 of the image's region, which then holds the master's
 * content at that TXID (VFY-2, VFY-3). The answer is VERIFY_HASHED with the
 * image's hash, except for the region holding offset bad_at (UINT64_MAX:
 * none), which gets a wrong one; *bad_off and *bad_len get that region.
 */
int ms_verify_all(struct mside *s, uint64_t bad_at, uint64_t *bad_off, uint64_t *bad_len);
/* ms_insync with the WELCOME w (NULL: a new volume). */
int ms_insync_w(struct mside *s, const struct mwelcome *w);
/* The mirror's image equals the master volume as written (DUR-10). */
int ms_check_image(struct mside *s, const char *when);

/* --- reading ---------------------------------------------------------------------- */

/* Notes a HEARTBEAT of the master (HB-1) and echoes it if s->echo (HB-2). */
int ms_on_heartbeat(struct mside *s, const struct frame *f);
/* The next frame other than a HEARTBEAT (which is noted, and echoed if s->echo). */
enum frame_status ms_recv(struct mside *s, struct frame *f, int timeout_ms);
int ms_expect(struct mside *s, unsigned type, struct frame *f);
/* Nothing but HEARTBEATs for ms; the connection stays up. */
int ms_quiet(struct mside *s, int ms);
/* The master closes, sending nothing but HEARTBEATs first. */
int ms_expect_close(struct mside *s);
/* No connection arrives for ms (after a severe error the master waits for an operator). */
int ms_no_reconnect(struct mside *s, int ms);

/* --- the master's volume through NBD (libnbd) ----------------------------------------- */

/* Connects to --nbd (retrying until the master serves it) and reads the whole volume. */
int ms_nbd(struct mside *s);
void ms_nbd_close(struct mside *s);
/* One write of len bytes of data from seed; its reply means the TX is committed (DUR-1). */
int ms_write(struct mside *s, uint64_t off, uint32_t len, uint64_t seed);
/* The same with data that compresses well (cx_fill_compressible): COMP-* cases. */
int ms_write_compressible(struct mside *s, uint64_t off, uint32_t len, uint64_t seed);
/* The same write refused (a fenced master, EPO-3): the NBD reply is an error, the model unchanged. */
int ms_write_refused(struct mside *s, uint64_t off, uint32_t len, uint64_t seed, const char *when);
int ms_trim(struct mside *s, uint64_t off, uint32_t len);
int ms_zero(struct mside *s, uint64_t off, uint32_t len);
/* The export reads back what the model holds at [off, off + len). */
int ms_read_check(struct mside *s, uint64_t off, uint64_t len, const char *when);
/* The TX the case's writes made for txid, or NULL. */
const struct mtx *ms_wrote(const struct mside *s, uint64_t txid);

/* --- the master's process (master-run.c) ---------------------------------------------- */

/* kill -9 of the master's process group, then --run again in the same {dir}. */
int ms_restart(struct mside *s);
/* --crash-cmd, wait for the master to die, --restart-cmd, then --run again in {dir}. */
int ms_power_cycle(struct mside *s);
/* An operator pauses or resumes the master (--pause-cmd, --resume-cmd; SKIP without them). */
int ms_pause(struct mside *s);
int ms_resume(struct mside *s);
/* An operator starts an online verify, with repair or not (--verify-cmd, --verify-repair-cmd; SKIP without). */
int ms_verify(struct mside *s, bool repair);
/* The master's process still runs and its export serves a read. */
int master_alive(struct cctx *x);

/* The master states a mirror can hold on the wire, for the matrix (master-cases.c). */
enum mst { MST_INIT, MST_MAKEPARTS, MST_REPLICATE, MST_OUTOFSYNC, MST_INSYNC, MST_IDLE, MST__N };

#endif
