/* Online verify on the master (spec "Online verify", VFY-*): region hashes under a range lock, VERIFYs placed in the TX stream, results, repair. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events.h"
#include "journal.h"
#include "log.h"
#include "master.h"
#include "util.h"
#include "verify.h"

/* A VERIFY from its hashing to its result; q[n % VERIFY_WINDOW]. */
struct vreq {
	uint64_t verify_id, offset, length, txid;
	uint8_t hash[FREP_VERIFY_HASH_SIZE];
	bool ready; /* hashed: it may be sent */
};

/*
 * One per master, protected by m->lock. The verify thread hashes regions and
 * queues them; the session thread sends them in the TX stream and takes the
 * results. The queue is the connection's: a VERIFY sent stays in it until
 * its result comes, even after its run ended, so a late result is still
 * checked (VFY-5) and then dropped.
 */
struct verify {
	pthread_cond_t cond; /* results, window room, abort */
	pthread_t thread;
	bool joinable;
	bool mirror_verifies; /* Welcome.verify of the current connection */
	uint64_t last_id;

	struct status_verify st;
	bool aborting;
	char why[STATUS_TEXT_MAX]; /* aborting: the outcome, "aborted: ..." or "failed: ..." */
	uint64_t cursor;	  /* next region of the first walk */
	uint64_t *retry;	  /* regions answered NOT_AT_TXID: asked again */
	size_t n_retry, cap_retry;
	struct status_region *bad; /* mismatching regions, in the order found */
	size_t n_bad, cap_bad;
	uint64_t last_progress_ms, started_ms;
	bool napping; /* the thread waits (results, room, rate): nothing half-done */

	struct vreq q[VERIFY_WINDOW];
	uint64_t q_head, q_sent, q_tail; /* answered < sent < queued */
};

static int push(void *arr, size_t *n, size_t *cap, size_t size, const void *item)
{
	void **a = arr;
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		void *p = realloc(*a, c * size);
		if (!p)
			return -1;
		*a = p;
		*cap = c;
	}
	memcpy((char *)*a + *n * size, item, size);
	(*n)++;
	return 0;
}

static void progress_locked(struct master *m, struct verify *v)
{
	struct status_progress *p = &v->st.progress;
	uint64_t ms = now_ms() - v->started_ms;
	p->rate_bps = ms ? p->done_bytes * 1000 / ms : 0;
	p->eta_seconds = p->rate_bps ? (p->total_bytes - p->done_bytes) / p->rate_bps : 0;
	char done[16], total[16], rate[16];
	log_info(m->name, "verify %" PRIu64 " progress: compared %s of %s, %s/s, eta %" PRIu64
		 " s, %zu regions differ%s", v->st.verify_id,
		 format_size(p->done_bytes, done, sizeof(done)),
		 format_size(p->total_bytes, total, sizeof(total)),
		 format_size(p->rate_bps, rate, sizeof(rate)), p->eta_seconds, v->n_bad,
		 v->st.repair ? ", repairing them" : "");
	events_publish(EVENT_VERIFY_PROGRESS, m->name, 0, 0, "verify %" PRIu64 ": %" PRIu64 " of %"
		       PRIu64 " bytes compared, %zu regions differ", v->st.verify_id, p->done_bytes,
		       p->total_bytes, v->n_bad);
	v->last_progress_ms = now_ms();
}

void verify_abort_locked(struct master *m, const char *why)
{
	struct verify *v = m->verify;
	if (!v || !v->st.running || v->aborting)
		return;
	v->aborting = true;
	snprintf(v->why, sizeof(v->why), "%s", why);
	/* Not hashed yet, or not sent: never sent now, so the session is not held (VFY-3). */
	v->q_tail = v->q_sent;
	pthread_cond_broadcast(&v->cond);
}

void verify_state_locked(struct master *m, enum master_state state)
{
	if (state == MS_INSYNC || !m->verify || !m->verify->st.running)
		return;
	/* VFY-7: a verify compares only while sequencing runs; each way out ends it. */
	const char *why;
	switch (state) {
	case MS_IDLE: why = "aborted: the operator paused replication"; break;
	case MS_OUTOFSYNC: why = "aborted: the mirror went out of sync (crack or resync)"; break;
	case MS_LINKDOWN: why = "aborted: the link to the mirror was lost"; break;
	default: why = "aborted: replication stopped (RESET or ERROR)"; break;
	}
	verify_abort_locked(m, why);
}

void verify_link_reset_locked(struct master *m, bool mirror_verifies)
{
	struct verify *v = m->verify;
	if (!v) {
		if (!(v = calloc(1, sizeof(*v))))
			return; /* no verify on this connection: start says why */
		pthread_cond_init(&v->cond, NULL);
		m->verify = v;
	}
	verify_abort_locked(m, "aborted: the link to the mirror was lost");
	v->mirror_verifies = mirror_verifies;
	v->q_head = v->q_sent = v->q_tail = 0;
	pthread_cond_broadcast(&v->cond);
}

int verify_due_locked(struct master *m, uint64_t next, Frep__V1__Verify *out,
		      uint8_t hash[FREP_VERIFY_HASH_SIZE])
{
	struct verify *v = m->verify;
	if (!v || v->q_sent == v->q_tail)
		return 0;
	struct vreq *q = &v->q[v->q_sent % VERIFY_WINDOW];
	if (q->txid >= next)
		return 0; /* TX txid goes first */
	if (!q->ready)
		return -1;
	Frep__V1__Verify init = FREP__V1__VERIFY__INIT;
	*out = init;
	out->verify_id = q->verify_id;
	out->offset = q->offset;
	out->length = q->length;
	out->txid = q->txid;
	memcpy(hash, q->hash, FREP_VERIFY_HASH_SIZE);
	out->hash.data = hash;
	out->hash.len = FREP_VERIFY_HASH_SIZE;
	v->q_sent++;
	return 1;
}

int verify_result_locked(struct master *m, const Frep__V1__VerifyResult *r, char *why,
			 size_t why_len)
{
	struct verify *v = m->verify;
	if (!v || v->q_head == v->q_sent) {
		snprintf(why, why_len, "VERIFY_RESULT for verify %" PRIu64 " at offset %" PRIu64
			 " while no VERIFY is unanswered", r->verify_id, r->offset);
		return -1;
	}
	struct vreq *q = &v->q[v->q_head % VERIFY_WINDOW];
	bool hashed = r->status == FREP__V1__VERIFY_STATUS__VERIFY_HASHED;
	if (r->verify_id != q->verify_id || r->offset != q->offset || r->txid != q->txid ||
	    (!hashed && r->status != FREP__V1__VERIFY_STATUS__VERIFY_NOT_AT_TXID) ||
	    (hashed && (!r->has_hash || r->hash.len != FREP_VERIFY_HASH_SIZE))) {
		snprintf(why, why_len, "VERIFY_RESULT (verify %" PRIu64 ", offset %" PRIu64 ", TXID %"
			 PRIu64 ", status %d, %zu-byte hash) does not answer the oldest VERIFY "
			 "unanswered (verify %" PRIu64 ", offset %" PRIu64 ", TXID %" PRIu64 ")",
			 r->verify_id, r->offset, r->txid, r->status, r->has_hash ? r->hash.len : 0,
			 q->verify_id, q->offset, q->txid);
		return -1;
	}
	v->q_head++;
	pthread_cond_broadcast(&v->cond);
	if (!v->st.running || v->aborting || q->verify_id != v->st.verify_id)
		return 0; /* an ended run's: checked, then dropped */
	if (!hashed) {
		/* A gap or a resend around it: not a mismatch, ask again (VFY-6). */
		if (push(&v->retry, &v->n_retry, &v->cap_retry, sizeof(uint64_t), &q->offset) < 0)
			verify_abort_locked(m, "failed: out of memory");
		return 0;
	}
	v->st.progress.done_bytes += q->length;
	if (memcmp(r->hash.data, q->hash, FREP_VERIFY_HASH_SIZE) != 0) {
		struct status_region bad = { q->offset, q->length };
		char mh[33], sh[33];
		log_warn(m->name, "verify %" PRIu64 ": region of %" PRIu64 " bytes at offset %" PRIu64
			 " differs at TXID %" PRIu64 ": master %s, mirror %s", q->verify_id, q->length,
			 q->offset, q->txid, hex_encode(q->hash, sizeof(q->hash), mh),
			 hex_encode(r->hash.data, r->hash.len, sh));
		if (push(&v->bad, &v->n_bad, &v->cap_bad, sizeof(bad), &bad) < 0)
			verify_abort_locked(m, "failed: out of memory");
		v->st.mismatched_regions = v->n_bad;
	}
	return 0;
}

/* Waits on v->cond for at most ms. Called with m->lock held. */
static void nap_locked(struct master *m, struct verify *v, uint64_t ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += (long)(ms % 1000) * 1000000;
	until.tv_sec += (time_t)(ms / 1000) + until.tv_nsec / 1000000000;
	until.tv_nsec %= 1000000000;
	v->napping = true;
	pthread_cond_timedwait(&v->cond, &m->lock, &until);
	v->napping = false;
}

bool verify_settled(struct master *m)
{
	pthread_mutex_lock(&m->lock);
	bool settled = !m->verify || !m->verify->st.running || m->verify->napping;
	pthread_mutex_unlock(&m->lock);
	return settled;
}

/* Rate (--max-rate, SetRate) and progress ticks. true: go on; false: waited, look again. */
static bool pace_locked(struct master *m, struct verify *v, struct rate_budget *b)
{
	if (now_ms() - v->last_progress_ms >= VERIFY_PROGRESS_MS)
		progress_locked(m, v);
	uint64_t wait = rate_budget_wait_ms(b, atomic_load(&m->max_rate), now_ms());
	if (!wait)
		return true;
	nap_locked(m, v, wait < 100 ? wait : 100);
	return false;
}

/*
 * The compare phase: hashes each region under the range lock and queues it
 * at the TXID the lock gave (VFY-3); the session sends it and takes the
 * result. Ends when every region is answered. Called with m->lock held.
 */
static void compare_locked(struct master *m, struct verify *v, uint8_t *buf, struct rate_budget *b)
{
	uint64_t size = m->vol.size;
	while (!v->aborting) {
		bool work = v->n_retry || v->cursor < size;
		if (!work && v->q_head == v->q_tail)
			return;
		if (!pace_locked(m, v, b))
			continue;
		if (!work || v->q_tail - v->q_head >= VERIFY_WINDOW) {
			nap_locked(m, v, 200);
			continue;
		}
		uint64_t off = v->n_retry ? v->retry[--v->n_retry] : v->cursor;
		uint64_t len = size - off < VERIFY_REGION ? size - off : VERIFY_REGION;
		if (off == v->cursor)
			v->cursor += len;
		struct vreq req = { .verify_id = v->st.verify_id, .offset = off, .length = len };
		req.txid = master_range_lock_locked(m, off, len);
		/* The lock's wait let the session run: a pause or a lost link ends the run here. */
		if (v->aborting) {
			master_range_unlock_locked(m);
			return;
		}
		uint64_t n = v->q_tail++;
		v->q[n % VERIFY_WINDOW] = req;
		pthread_mutex_unlock(&m->lock);
		int rc = volume_hash(&m->vol, off, len, buf, VERIFY_REGION, req.hash);
		int e = errno;
		pthread_mutex_lock(&m->lock);
		master_range_unlock_locked(m);
		if (v->aborting)
			return; /* the entry was dropped (verify_abort_locked) */
		if (rc < 0) {
			log_error(m->name, "verify %" PRIu64 ": reading %" PRIu64 " bytes at offset %" PRIu64
				  ": %s", v->st.verify_id, len, off, strerror(e));
			verify_abort_locked(m, "failed: reading the master volume");
			return;
		}
		memcpy(v->q[n % VERIFY_WINDOW].hash, req.hash, sizeof(req.hash));
		v->q[n % VERIFY_WINDOW].ready = true;
		master_notify_session(m);
		b->bytes += len;
	}
}

/*
 * --repair (VFY-8): rewrites each mismatching region with the master's
 * current content, as ordinary transactions. The range lock spans the read
 * and the submits, so no local write to the region can fall between them
 * and be overwritten by older data; later ones get later TXIDs. Called with
 * m->lock held.
 */
static void repair_locked(struct master *m, struct verify *v, uint8_t *buf, struct rate_budget *b)
{
	for (size_t i = 0; i < v->n_bad && !v->aborting;) {
		if (!pace_locked(m, v, b))
			continue;
		uint64_t off = v->bad[i].offset, len = v->bad[i].length;
		master_range_lock_locked(m, off, len);
		pthread_mutex_unlock(&m->lock);
		int e = volume_pread(&m->vol, buf, len, off) < 0 ? errno : 0;
		for (uint64_t done = 0; !e && done < len;) {
			uint32_t n = len - done < m->max_payload ? (uint32_t)(len - done) : m->max_payload;
			e = master_submit_in_range(m, JOP_WRITE, off + done, n, buf + done);
			done += n;
		}
		pthread_mutex_lock(&m->lock);
		master_range_unlock_locked(m);
		if (e) {
			log_error(m->name, "verify %" PRIu64 ": repairing %" PRIu64 " bytes at offset %"
				  PRIu64 ": %s", v->st.verify_id, len, off, strerror(e));
			verify_abort_locked(m, "failed: a repair write failed");
			return;
		}
		log_info(m->name, "verify %" PRIu64 ": region of %" PRIu64 " bytes at offset %" PRIu64
			 " rewritten from the master", v->st.verify_id, len, off);
		v->st.repaired_regions++;
		b->bytes += len;
		i++;
	}
}

static void *verify_main(void *arg)
{
	struct master *m = arg;
	struct verify *v = m->verify;
	uint8_t *buf = malloc(VERIFY_REGION);
	struct rate_budget b;

	pthread_mutex_lock(&m->lock);
	rate_budget_start(&b, atomic_load(&m->max_rate), now_ms());
	progress_locked(m, v); /* at least one progress event per verify */
	if (!buf)
		verify_abort_locked(m, "failed: out of memory");
	compare_locked(m, v, buf, &b);
	if (v->st.repair)
		repair_locked(m, v, buf, &b);
	/* admin.proto's words: "ok", "mismatch", "repaired", or why it stopped. */
	const char *outcome = v->aborting ? v->why : !v->n_bad ? "ok" : v->st.repair ? "repaired"
										: "mismatch";
	/* The result line names every mismatching region (the admin API has them too). */
	char list[1024] = "";
	size_t used = 0;
	for (size_t i = 0; i < v->n_bad && used < sizeof(list) - 64; i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%" PRIu64 "+%" PRIu64,
					 i ? " " : "", v->bad[i].offset, v->bad[i].length);
	if (used >= sizeof(list) - 64 && v->n_bad)
		snprintf(list + used, sizeof(list) - used, " ...");
	progress_locked(m, v);
	log_info(m->name, "verify %" PRIu64 " done in %" PRIu64 " ms: %s; %" PRIu64
		 " bytes compared, %zu regions differ%s; mismatching regions: %s", v->st.verify_id,
		 now_ms() - v->started_ms, outcome, v->st.progress.done_bytes, v->n_bad,
		 v->st.repair ? " (repair asked)" : "", v->n_bad ? list : "none");
	events_publish(EVENT_VERIFY_DONE, m->name, 0, 0, "verify %" PRIu64 ": %s, %zu regions differ",
		       v->st.verify_id, outcome, v->n_bad);
	snprintf(v->st.outcome, sizeof(v->st.outcome), "%s", outcome);
	v->st.finished_unix_ms = wall_ms();
	v->st.running = false;
	v->st.progress.active = false;
	pthread_mutex_unlock(&m->lock);
	free(buf);
	return NULL;
}

int master_verify_start(struct master *m, bool repair, uint64_t *verify_id, struct admin_reply *r)
{
	int rc = -1;
	pthread_mutex_lock(&m->lock);
	struct verify *v = m->verify;
	r->code = ADMIN_FAILED_PRECONDITION;
	if (m->state != MS_INSYNC || !v) {
		snprintf(r->message, sizeof(r->message), "volume %s: verify runs only while the mirror "
			 "is INSYNC (state %s)", m->name, master_state_name(m->state));
		goto out;
	}
	if (!v->mirror_verifies) {
		snprintf(r->message, sizeof(r->message), "volume %s: the mirror does not support online "
			 "verify (its WELCOME has no verify flag): upgrade frep-server", m->name);
		goto out;
	}
	if (v->st.running) {
		snprintf(r->message, sizeof(r->message), "volume %s: verify %" PRIu64 " is still running",
			 m->name, v->st.verify_id);
		goto out;
	}
	if (v->joinable) {
		pthread_join(v->thread, NULL); /* it ended: running is its last word */
		v->joinable = false;
	}
	v->st = (struct status_verify){
		.verify_id = ++v->last_id,
		.running = true,
		.repair = repair,
		.progress = { .active = true, .total_bytes = m->vol.size },
		.started_unix_ms = wall_ms(),
	};
	v->aborting = false;
	v->cursor = 0;
	v->n_retry = v->n_bad = 0;
	v->started_ms = now_ms();
	if (pthread_create(&v->thread, NULL, verify_main, m) != 0) {
		v->st.running = false;
		r->code = ADMIN_INTERNAL;
		snprintf(r->message, sizeof(r->message), "volume %s: cannot start the verify thread",
			 m->name);
		goto out;
	}
	v->joinable = true;
	log_info(m->name, "verify %" PRIu64 " started: %" PRIu64 " bytes in regions of %u bytes, "
		 "XXH3-128 on both sides%s", v->st.verify_id, m->vol.size, VERIFY_REGION,
		 repair ? ", repairing what differs" : "");
	*verify_id = v->st.verify_id;
	r->code = ADMIN_OK;
	r->message[0] = '\0';
	rc = 0;
out:
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void master_verify_status(struct master *m, struct status_verify *out)
{
	pthread_mutex_lock(&m->lock);
	if (m->verify)
		*out = m->verify->st;
	else
		memset(out, 0, sizeof(*out));
	pthread_mutex_unlock(&m->lock);
}

int master_verify_result(struct master *m, struct status_verify *st, uint64_t *region_size,
			 struct status_region **regions, size_t *n)
{
	int rc = 0;
	*regions = NULL;
	*n = 0;
	*region_size = VERIFY_REGION;
	pthread_mutex_lock(&m->lock);
	struct verify *v = m->verify;
	if (!v) {
		memset(st, 0, sizeof(*st));
		goto out;
	}
	*st = v->st;
	if (v->n_bad) {
		if (!(*regions = malloc(v->n_bad * sizeof(**regions)))) {
			rc = -1;
			goto out;
		}
		memcpy(*regions, v->bad, v->n_bad * sizeof(**regions));
		*n = v->n_bad;
	}
out:
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void verify_free(struct master *m)
{
	struct verify *v = m->verify;
	if (!v)
		return;
	pthread_mutex_lock(&m->lock);
	verify_abort_locked(m, "aborted: frep-client is stopping");
	pthread_mutex_unlock(&m->lock);
	if (v->joinable)
		pthread_join(v->thread, NULL);
	pthread_cond_destroy(&v->cond);
	free(v->retry);
	free(v->bad);
	free(v);
	m->verify = NULL;
}
