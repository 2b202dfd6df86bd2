/*
 * Mirror lanes (spec "Lanes", protocol version 2): the connections that join
 * a session to carry its copy records, and what the session's copy learns
 * from them.
 *
 * Lane 0's session (session.c) makes the set when its WELCOME grants more
 * than one lane. Each joining lane runs in its own connection thread
 * (mlanes_serve): it reads its records, checks them and writes them into
 * the volume under the set's copy lock. Lane 0 keeps everything else: the
 * copy's low-water mark for COPY_ACK and the cursor (LANE-8), the wait at
 * COPY_DONE until every lane delivered its records (LANE-7), TX, heartbeats.
 * A lane holds no volume of its own: it never takes the volume's lock.
 *
 * The set is shared by lane 0's thread and the lanes' threads and freed by
 * whichever lets go of it last. Lock order: copy lock, then the set's lock.
 */
#ifndef FREP_SERVER_LANES_H
#define FREP_SERVER_LANES_H

#include <stdbool.h>
#include <stdint.h>

#include "frep/v1/frep.pb-c.h"

struct frame_reader;
struct frame_writer;
struct mirror_server;
struct mirror_volume;
struct tls_conn;
struct mlanes;

/*
 * Lane 0, before it sends WELCOME w granting lanes (> 1): registers its
 * session, (volume, session_id) of this identity, for its lanes to join;
 * they get w's fields (LANE-5). NULL if out of memory.
 */
struct mlanes *mlanes_new(struct mirror_server *srv, const Frep__V1__Hello *h, const char *identity,
			  const Frep__V1__Welcome *w);

/*
 * Lane 0's session ends (LANE-9): from now on no lane writes to the volume
 * (one in the middle of a write finishes it first), none may join, and every
 * lane ends within a poll interval, closing its connection. Lets go of lane
 * 0's hold on the set. NULL is a no-op.
 */
void mlanes_end(struct mlanes *ls);

/*
 * MAKEPARTS done, READY next: lanes join before the first copy (LANE-5),
 * so no more may. false, with why, if a lane the session granted has not
 * joined: the master opens them all before EXTENT_TABLE (LANE-4).
 */
bool mlanes_ready(struct mlanes *ls, char *why, size_t why_len);

/*
 * START_COPY of pass `pass` arrived (LANE-6: the n-th of the session starts
 * pass n): records of earlier passes are ignored from now on (LANE-7), and
 * those of this one wait until mlanes_pass_open, once the pass's start is
 * durable (COPY-2, COPY-14) and they may be written into mv from `start`.
 */
void mlanes_pass_begin(struct mlanes *ls, uint64_t pass);
void mlanes_pass_open(struct mlanes *ls, struct mirror_volume *mv, uint64_t start);

/* One copy record, as a lane received it (the data decompressed). */
struct mlanes_rec {
	unsigned type;	   /* FREP_MSG_COPY_DATA or FREP_MSG_COPY_HOLE */
	bool numbered;	   /* it carries pass and seq (LANE-6) */
	uint64_t pass, seq;
	uint64_t off, len;
	const void *data;  /* COPY_DATA: len bytes */
	uint32_t crc;	   /* COPY_DATA: data_crc */
};

/*
 * LANE-6..8, COPY-6, COPY-7: checks a copy record from lane `lane` and
 * writes it to the volume in its turn. A record of a pass not yet open waits
 * for it, and one far ahead of the low-water mark waits for the mark: on a
 * joining lane (wait_ms 0) while the session lives, on lane 0 at most
 * wait_ms (lane 0 cannot wait for its own START_COPY). 0 written, 1 ignored
 * (its pass is over), -1 with *code and why (*code 0: the session is over
 * or the wait ran out, nothing to tell the master).
 */
int mlanes_record(struct mlanes *ls, unsigned lane, const struct mlanes_rec *r, uint64_t wait_ms,
		  uint32_t *code, char *why, size_t why_len);

/*
 * COPY_DONE's lane_records (LANE-7): waits, at most timeout_ms, until each
 * lane delivered exactly its count of the open pass; then none may deliver
 * more. 0, or -1 with *code (PROTOCOL: counts that do not fit what arrived)
 * or 0 (the session ended, or a lane did not deliver in time) and why.
 */
int mlanes_done(struct mlanes *ls, const uint64_t *counts, size_t n, uint64_t timeout_ms,
		uint32_t *code, char *why, size_t why_len);

/*
 * LANE-8: the end of the last record of the contiguous run of written
 * records 1..s (the pass's start if none), and the data bytes written since
 * the last mlanes_synced. Lane 0 takes it before its fdatasync, so that
 * what it acknowledges was written before the sync began.
 */
uint64_t mlanes_through(struct mlanes *ls, uint64_t *unsynced);
/* Those unsynced bytes are durable now (COPY-8's byte count starts again). */
void mlanes_synced(struct mlanes *ls, uint64_t bytes);

/*
 * LANE-9: a lane failed (an error, a lost connection, a close): true once,
 * with the code to send on lane 0 (0: none, a lost link) and why.
 */
bool mlanes_failed(struct mlanes *ls, uint32_t *code, char *why, size_t why_len);

/*
 * Lane 0's wait for its next frame: true if c is readable within
 * timeout_ms; false when the time is up or a lane woke it (COPY-8's 64 MiB
 * written, or a failure), so that lane 0 acknowledges or ends at once.
 */
bool mlanes_wait(struct mlanes *ls, struct tls_conn *c, int timeout_ms);

/* COPY_DATA trailer bytes the joining lanes received: decompressed, and as read. */
void mlanes_bytes(struct mlanes *ls, uint64_t *data, uint64_t *wire);

/*
 * A connection whose HELLO h asks to join a session (lane > 0, LANE-5),
 * checked as far as HS-2's sizes: answers it with WELCOME or an Error, and
 * serves the lane until it or its session ends. rd and out are the
 * connection's, version 1 so far; c stays the caller's to close.
 */
void mlanes_serve(struct mirror_server *srv, struct tls_conn *c, struct frame_reader *rd,
		  struct frame_writer *out, const Frep__V1__Hello *h);

#endif
