/* Master session, bulk copy (spec "REPLICATE and OUTOFSYNC"): full and dirty passes, then catch-up to CONSISTENT. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "crashpoint.h"
#include "frame.h"
#include "frep/v1/frep.pb-c.h"
#include "lanes.h"
#include "log.h"
#include "session-internal.h"
#include "tls.h"
#include "util.h"

/* Copy trailer bytes on the wire so far, every lane's: what --max-rate counts (COMP-6). */
static uint64_t wire_bytes(const struct session *s)
{
	uint64_t data, wire;
	lanes_bytes(s, &data, &wire);
	return wire + atomic_load(&s->out.wire_bytes);
}

/*
 * Sends one copied range, data or hole: on lane 0, or with several lanes
 * queued for them (lanes.h), the volume read here either way. 0 or -1
 * (state changed).
 */
static int copy_range(struct session *s, uint64_t off, uint64_t end, bool data)
{
	struct master *m = s->m;
	if (!data) {
		s->copy_off = end;
		s->copy_walked += end - off;
		if (s->lane_set)
			return lanes_send_hole(s, off, end - off);
		Frep__V1__CopyHole h = FREP__V1__COPY_HOLE__INIT;
		h.offset = off;
		h.length = end - off;
		return session_send(s, FREP_MSG_COPY_HOLE, &h.base, NULL, 0);
	}
	uint32_t chunk = s->lane_set ? LANE_CHUNK : COPY_CHUNK;
	while (off < end) {
		uint32_t n = end - off > chunk ? chunk : (uint32_t)(end - off);
		uint8_t *buf = s->lane_set ? lanes_buffer(s) : s->buf;
		if (!buf)
			return -1;
		if (volume_pread(&m->vol, buf, n, off) < 0) {
			session_fail(s, ME_SEVERE, 0, "reading master volume at %" PRIu64 ": %s", off,
			     strerror(errno));
			return -1;
		}
		uint32_t crc = frep_crc32c(buf, n);
		if (s->lane_set) {
			if (lanes_send_data(s, off, n, buf, crc) < 0)
				return -1;
		} else {
			Frep__V1__CopyData d = FREP__V1__COPY_DATA__INIT;
			d.offset = off;
			d.data_crc = crc;
			d.has_length = s->version >= 2; /* so that the trailer may go compressed (COMP-3) */
			d.length = n;
			if (session_send(s, FREP_MSG_COPY_DATA, &d.base, buf, n) < 0)
				return -1;
		}
		frep_crash_point("copy");
		off += n;
		s->copy_off = off;
		s->copy_walked += n;
		s->copy_bytes += n;
		s->copy_bytes_total += n;
		/*
		 * --max-rate counts what the link carries: compression lets more data
		 * through. Lanes count what they sent, so the budget lags the reads by
		 * the records queued, a few at most.
		 */
		uint64_t wire = wire_bytes(s);
		s->pass_budget.bytes += wire - s->wire_seen;
		s->wire_seen = wire;
		if (session_drain(s) < 0 || session_housekeeping(s) < 0 || session_stopping(s) ||
		    session_cracked(s))
			return -1;
		/* --max-rate or SetRate: a shared DR link; wait until this pass is back on its budget. */
		while (!session_stopping(s)) {
			uint64_t wait = rate_budget_wait_ms(&s->pass_budget, atomic_load(&s->m->max_rate),
							    now_ms());
			if (!wait)
				break;
			uint64_t nap = wait < 100 ? wait : 100;
			if (session_wait_event(s, (int)nap) < 0 || session_housekeeping(s) < 0 ||
			    session_cracked(s))
				return -1;
		}
	}
	return 0;
}

/* Walks [start, end) sending data and holes as the master volume has them. 0 or -1. */
static int copy_span(struct session *s, uint64_t start, uint64_t end)
{
	uint64_t off = start;
	while (off < end) {
		uint64_t d, e;
		int rc = volume_next_data(&s->m->vol, off, &d, &e);
		if (rc < 0) {
			session_fail(s, ME_SEVERE, 0, "SEEK_DATA on master volume at %" PRIu64 ": %s", off,
			     strerror(errno));
			return -1;
		}
		if (rc == 0 || d > end)
			d = e = end;
		if (e > end)
			e = end;
		if (d > off && copy_range(s, off, d, false) < 0)
			return -1;
		if (e > d && copy_range(s, d, e, true) < 0)
			return -1;
		off = e;
	}
	return 0;
}

/*
 * Snapshots the dirty runs a pass will copy, in walk order: exactly those are
 * cleared as the mirror acknowledges their copy. Called with m->lock held. 0 or -1.
 */
static int snapshot_runs(struct session *s, uint64_t *bytes)
{
	uint64_t off = 0, a, b;
	s->n_runs = 0;
	*bytes = 0;
	while (bitmap_next_dirty(s->m->bm, off, &a, &b) == 1) {
		if (s->n_runs == MAX_DIRTY_RUNS) {
			/* Too fragmented to track: copy it all. */
			s->need_full = true;
			s->n_runs = 0;
			*bytes = s->m->vol.size;
			return 0;
		}
		if (!s->runs && !(s->runs = malloc(MAX_DIRTY_RUNS * sizeof(*s->runs))))
			return -1;
		s->runs[s->n_runs++] = (struct run){ a, b };
		*bytes += b - a;
		off = b;
	}
	return 0;
}

/*
 * CRK-5, as the pass goes: a region is clean once the mirror holds its copy
 * durably, unless a crack since the pass start dropped writes (their bits may
 * lie among the regions). A write after the pass read a region is a TX after
 * t_s, which the journal keeps until the mirror acknowledges it; only a crack
 * (CRK-2) or the next pass start (CRK-4) lets it go, and both mark its range
 * first. So a pass cut short keeps what it copied, and the next pass, a dirty
 * one, copies only the rest and what was written since.
 */
int session_copy_acked(struct session *s, uint64_t through)
{
	struct master *m = s->m;
	bool cleared = false;

	pthread_mutex_lock(&m->lock);
	if (s->pass_open && m->cracks == s->pass_cracks) {
		if (s->pass_full) {
			if (through > s->pass_from)
				bitmap_clear_range(m->bm, s->pass_from, through - s->pass_from);
		} else {
			while (s->runs_cleared < s->n_runs && s->runs[s->runs_cleared].start < through) {
				const struct run *r = &s->runs[s->runs_cleared];
				uint64_t end = r->end < through ? r->end : through;
				bitmap_clear_range(m->bm, r->start, end - r->start);
				if (end < r->end)
					break;
				s->runs_cleared++;
			}
		}
		cleared = true;
	}
	pthread_mutex_unlock(&m->lock);
	if (!cleared)
		return 0;
	/*
	 * Unlocked: the bitmap locks itself, and a crack meanwhile sets its bits
	 * and syncs them itself. A crash before this sync only leaves bits set.
	 */
	if (bitmap_sync(m->bm) < 0) {
		session_fail(s, ME_SEVERE, 0, "dirty bitmap fdatasync after COPY_ACK: %s", strerror(errno));
		return -1;
	}
	frep_crash_point("copy-clear");
	return 0;
}

/*
 * REPLICATE / OUTOFSYNC, one pass at a time. A full pass copies every
 * allocated block (the first copy, --resync=full, an operator's resync-full);
 * a dirty pass copies the regions of the bitmap. Then CopyDone(t_c) and
 * sequencing t_s+1..t_c; the mirror says CONSISTENT once it applied t_c
 * durably. Every region a pass copies is dirty from its start until the
 * mirror acknowledges its copy (session_copy_acked), so a crack, which ends
 * the pass, leaves in the bitmap exactly what the next (dirty) pass needs.
 */
void session_step_copy(struct session *s)
{
	struct master *m = s->m;
	enum master_state state = s->fsm.state;
	uint64_t total = 0;

	/*
	 * t_s must be applied to the volume, not only committed, or the copy could
	 * read a block before TX t_s lands and replay would never bring it: wait
	 * until every committed TXID is applied. Later TXIDs are replayed after
	 * the copy. Records up to t_s the mirror lacks are marked dirty (a dirty
	 * pass copies their regions), so they, and everything acknowledged, can
	 * be freed.
	 */
	pthread_mutex_lock(&m->lock);
	s->copy_base = master_quiesce_locked(m);
	master_release_cached_locked(m, s->copy_base); /* the pass sends from copy_base + 1 */
	s->cracks_seen = m->cracks;
	/*
	 * An interrupted full pass resumes at the mirror's cursor with its old
	 * base, if every TXID after that base is still here to be replayed (RDY-6).
	 */
	uint32_t phase = s->w.phase;
	bool resumable = s->w.copy_cursor && s->w.copy_base <= m->committed_txid &&
			 journal_first_txid(m->j) <= s->w.copy_base + 1 &&
			 ((state == MS_REPLICATE && phase == FREP__V1__PHASE__PHASE_REPLICATE) ||
			  (state == MS_OUTOFSYNC && phase == FREP__V1__PHASE__PHASE_OUTOFSYNC));
	/*
	 * RDY-5. A mirror already in its first copy (phase REPLICATE) holds what
	 * the pass that put it there copied: that pass set every bit at its
	 * start, and only the mirror's acknowledgements cleared them. So it
	 * resumes, or else takes a dirty pass, as an OUTOFSYNC mirror does.
	 */
	bool full = s->need_full || (state == MS_OUTOFSYNC && s->o.resync_full) ||
		    (state == MS_REPLICATE && (resumable || phase != FREP__V1__PHASE__PHASE_REPLICATE));
	uint64_t resume = 0;
	if (full && resumable) {
		resume = s->w.copy_cursor < m->vol.size ? s->w.copy_cursor : m->vol.size;
		s->copy_base = s->w.copy_base;
	}
	s->w.copy_cursor = 0; /* once: a later pass of this session starts afresh */
	s->w.phase = state == MS_REPLICATE ? FREP__V1__PHASE__PHASE_REPLICATE :
					     FREP__V1__PHASE__PHASE_OUTOFSYNC;
	s->need_full = false;
	/*
	 * A new full pass marks the whole volume dirty first (CRK-4): until the
	 * mirror acknowledges a copied range, the bitmap says it lacks it. A
	 * resumed pass keeps the bits of the pass it resumes.
	 */
	if (full && !resume)
		bitmap_set_all(m->bm);
	int rc = master_mark_dirty_locked(m, m->acked_txid, s->copy_base);
	if (rc == 0 && !full)
		rc = snapshot_runs(s, &total);
	if (s->need_full) { /* too fragmented: copy everything */
		full = true;
		s->need_full = false;
	}
	if (full)
		total = m->vol.size;
	if (m->acked_txid < s->copy_base)
		m->acked_txid = s->copy_base;
	s->pass_open = true;
	s->pass_full = full;
	s->pass_from = resume;
	s->pass_cracks = m->cracks;
	s->runs_cleared = 0;
	pthread_mutex_unlock(&m->lock);
	if (rc < 0) {
		session_fail(s, ME_SEVERE, 0, "cannot prepare the %s pass: %s", full ? "full" : "dirty",
		     strerror(errno));
		return;
	}

	s->backoff_ms = 0; /* the link works: a later failure backs off from the start */
	s->copying = true;
	s->copy_off = s->copy_walked = s->copy_bytes = s->copy_acked = 0;
	s->copy_total = total;
	s->copy_started_ms = s->rate_mark_ms = s->last_progress_ms = now_ms();
	rate_budget_start(&s->pass_budget, atomic_load(&s->m->max_rate), s->copy_started_ms);
	s->wire_seen = wire_bytes(s);
	s->rate_mark_bytes = 0;
	s->next_send = s->copy_base + 1;
	s->max_sent = s->copy_base;
	s->inflight_since_ack = 0;

	Frep__V1__StartCopy sc = FREP__V1__START_COPY__INIT;
	sc.kind = state == MS_REPLICATE ? FREP__V1__PHASE__PHASE_REPLICATE :
					  FREP__V1__PHASE__PHASE_OUTOFSYNC;
	sc.base_txid = s->copy_base;
	sc.total_bytes = total;
	sc.has_full = true;
	sc.full = full;
	sc.has_start_offset = resume != 0;
	sc.start_offset = resume;
	if (session_send(s, FREP_MSG_START_COPY, &sc.base, NULL, 0) < 0)
		return;
	lanes_pass_start(s);
	log_info(m->name, "%s: %s pass over %" PRIu64 " bytes (%zu dirty runs), base TXID %" PRIu64,
		 master_state_name(state), full ? "full" : "dirty", total, full ? (size_t)0 : s->n_runs,
		 s->copy_base);
	if (resume)
		log_info(m->name, "resuming the interrupted copy at offset %" PRIu64
			 " (mirror cursor), replaying from TXID %" PRIu64, resume, s->copy_base + 1);
	s->copy_off = s->copy_walked = resume;
	session_log_progress(s, now_ms());

	if (full) {
		if (copy_span(s, resume, m->vol.size) < 0)
			return;
	} else {
		for (size_t i = 0; i < s->n_runs; i++)
			if (copy_span(s, s->runs[i].start, s->runs[i].end) < 0)
				return;
	}
	if (session_cracked(s))
		return; /* the FSM stayed in this state: the loop starts another pass */

	/*
	 * LANE-7: every record out, and how many went on each lane; the mirror
	 * applies no TX of the pass before it holds them all. t_c is taken after
	 * the last read either way (DUR-10).
	 */
	uint64_t lane_records[FREP_MAX_LANES];
	unsigned lanes = s->lanes;
	if (s->lane_set && lanes_flush(s, lane_records) < 0)
		return;
	pthread_mutex_lock(&m->lock);
	s->copy_tc = m->committed_txid;
	pthread_mutex_unlock(&m->lock);
	Frep__V1__CopyDone done = FREP__V1__COPY_DONE__INIT;
	done.last_txid = s->copy_tc;
	done.copied_bytes = s->copy_bytes;
	if (s->lane_set) {
		done.n_lane_records = lanes;
		done.lane_records = lane_records;
	}
	if (session_send(s, FREP_MSG_COPY_DONE, &done.base, NULL, 0) < 0)
		return;
	session_log_progress(s, now_ms());
	s->copying = false;
	uint64_t ms = now_ms() - s->copy_started_ms;
	log_info(m->name, "copy walked %" PRIu64 " bytes (%" PRIu64 " data) in %" PRIu64
		 " ms; sequencing TXIDs %" PRIu64 "..%" PRIu64 " to reach consistency",
		 total, s->copy_bytes, ms, s->copy_base + 1, s->copy_tc);
	session_sequence(s, state);
	if (s->fsm.state != MS_INSYNC)
		return;

	/*
	 * Consistent: what this pass copied is on the mirror, unless a crack
	 * re-dirtied it. Its COPY_ACKs cleared the bits already, except, for a
	 * resumed pass, those below where it resumed.
	 */
	s->pass_open = false;
	pthread_mutex_lock(&m->lock);
	if (m->cracks == s->pass_cracks) {
		if (full)
			bitmap_clear_all(m->bm);
		else
			for (size_t i = 0; i < s->n_runs; i++)
				bitmap_clear_range(m->bm, s->runs[i].start, s->runs[i].end - s->runs[i].start);
		if (bitmap_sync(m->bm) < 0)
			log_warn(m->name, "dirty bitmap fdatasync after resync: %s", strerror(errno));
	}
	pthread_mutex_unlock(&m->lock);
	log_info(m->name, "%s done: %" PRIu64 " data bytes copied, %" PRIu64 " ms",
		 full ? "full pass" : "dirty resync", s->copy_bytes, now_ms() - s->copy_started_ms);
}
