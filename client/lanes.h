/*
 * Master lanes (spec "Lanes", protocol version 2): the TLS connections a
 * session adds to lane 0 for its bulk copy, each with a sender thread.
 *
 * The session thread reads the volume (pread, CRC32C) and queues each copy
 * record; whichever lane is free takes the next one, so compression and TLS
 * encryption run on as many cores as there are lanes, and a slow lane simply
 * takes fewer records. Lane 0 keeps everything else: control, TX, heartbeats.
 * All functions are called by the session thread only.
 */
#ifndef FREP_CLIENT_LANES_H
#define FREP_CLIENT_LANES_H

#include <stdbool.h>
#include <stdint.h>

struct session;
struct lanes;

/*
 * LANE-4: opens lanes 1..s->lanes-1 of the session lane 0 just opened (its
 * WELCOME granted them), in parallel, and waits until each has joined.
 * 0, or -1 with the failure handled (session_fail: a lane that cannot
 * connect is a lost link; an ERROR answering its HELLO counts as on lane 0).
 */
int lanes_open(struct session *s);

/*
 * Stops the sender threads and closes the lanes' connections; abort resets
 * them instead (a crack: whatever is still queued is dropped, CRK-2). Frees
 * s->lane_set. A no-op without lanes.
 */
void lanes_close(struct session *s, bool abort);

/* START_COPY was sent: the records from now on are of the next pass, counted from 1 (LANE-6). */
void lanes_pass_start(struct session *s);

/*
 * A record buffer of LANE_CHUNK bytes for lanes_send_data, once one is free;
 * housekeeping goes on meanwhile. NULL once the session failed or must end
 * (a crack, a stop): the caller returns.
 */
uint8_t *lanes_buffer(struct session *s);

/*
 * Queues a COPY_DATA of n bytes at off, data buf (from lanes_buffer, given
 * back here) with its CRC32C; or a COPY_HOLE. Each carries the pass and the
 * next seq. 0, or -1 with the failure handled.
 */
int lanes_send_data(struct session *s, uint64_t off, uint32_t n, uint8_t *buf, uint32_t crc);
int lanes_send_hole(struct session *s, uint64_t off, uint64_t len);

/*
 * Waits until every queued record of the pass went out, and gives the
 * records each lane sent, lane 0 first (CopyDone.lane_records, LANE-7):
 * s->lanes counts. 0, or -1 with the failure handled.
 */
int lanes_flush(struct session *s, uint64_t *lane_records);

/* COPY_DATA trailer bytes the lanes sent: as given, and on the wire. */
void lanes_bytes(const struct session *s, uint64_t *data, uint64_t *wire);

/*
 * LANE-9: a lane that failed, or that the mirror closed or sent something
 * on, fails the session; the mirror's ERROR, which it also sends on lane 0,
 * is read there first. 0, or -1 with the failure handled.
 */
int lanes_check(struct session *s);

#endif
