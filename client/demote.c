/*
 * frepctl demote, the master's half (spec FBK-1): a fenced master hands its
 * copy to the host's frep-server as a mirror of the new primary.
 *
 * What the copy changed after the promotion's TXID t is what a fail-back
 * must copy back over: every TX after t still in the journal (none of them
 * reached the promoted copy: t is at least every acknowledged TXID) and
 * every region the dirty bitmap already holds. Both go into the bitmap,
 * durably, and the bitmap is handed over with the extents. A journal that no
 * longer holds every TX after t (a forced promotion of an older snapshot)
 * cannot say where the copy changed: then every region counts.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "demote.h"
#include "handoff.h"
#include "log.h"
#include "meta.h"
#include "util.h"

/* The process ends once the reply is on its way: nbdkit's SIGTERM path cuts the NBD clients. */
static void *quit_soon(void *arg)
{
	(void)arg;
	usleep(300 * 1000);
	kill(getpid(), SIGTERM);
	return NULL;
}

static void schedule_quit(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, quit_soon, NULL) == 0)
		pthread_detach(t);
}

/*
 * Marks the journal demoted, then writes the handoff (handoff.h) beside it.
 * consistent: a switchover's copy, the master at exactly txid.
 */
static int hand_over(struct master *m, uint64_t t, uint64_t committed, bool shared, bool consistent,
		     uint64_t discard_tx, uint64_t discard_bytes, char *path, size_t path_len,
		     char *err, size_t err_len)
{
	struct handoff h;
	memset(&h, 0, sizeof(h));
	snprintf(h.volume, sizeof(h.volume), "%s", m->name);
	memcpy(h.uuid, m->uuid, FREP_UUID_SIZE);
	h.epochs = m->epochs;
	if (consistent)
		epoch_begin(&h.epochs, t); /* the mirror's promotion began it (SWO-3) */
	h.txid = t;
	h.committed = committed;
	h.shared = shared;
	h.consistent = consistent;
	h.discard_tx = discard_tx;
	h.discard_bytes = discard_bytes;
	h.n_extents = m->vol.n;
	for (unsigned i = 0; i < m->vol.n; i++)
		h.paths[i] = m->vol.ext[i].path;
	textf(h.bitmap, sizeof(h.bitmap), "%s.handoff.bitmap", m->journal_path);
	textf(path, path_len, "%s.handoff", m->journal_path);
	/*
	 * Demoted first: a crash between the two then leaves a journal that
	 * refuses to serve and no handoff, never a served copy that frep-server
	 * could also adopt (two writers).
	 */
	if (master_save_demoted(m, err, err_len) < 0 || handoff_save(path, &h, err, err_len) < 0)
		return -1;
	return 0;
}

static void undemote(struct master *m)
{
	pthread_mutex_lock(&m->lock);
	m->demoted = false;
	pthread_mutex_unlock(&m->lock);
}

int master_demote(struct master *m, bool force, char *handoff_path, size_t path_len,
		  uint64_t *discard_tx, uint64_t *discard_bytes, struct admin_reply *r)
{
	char err[512], path[4096 + 16];

	pthread_mutex_lock(&m->lock);
	if (!m->fenced.set && !force) {
		pthread_mutex_unlock(&m->lock);
		return admin_refuse(r, ADMIN_FAILED_PRECONDITION,
				    "%s is not fenced: no promotion elsewhere is known, so there is no "
				    "point where its history and the new primary's part. Demote a master "
				    "once its mirror answered FENCED, or use --force to have the new "
				    "primary copy the whole volume over this one", m->name);
	}
	if (m->demoted) {
		pthread_mutex_unlock(&m->lock);
		return admin_refuse(r, ADMIN_FAILED_PRECONDITION, "%s is already demoted", m->name);
	}
	/* No write from here on: the copy is frep-server's once the handoff is done. */
	m->demoted = true;
	uint64_t committed = master_quiesce_all_locked(m);
	bool shared = m->fenced.set;
	uint64_t t = shared ? m->fenced.txid : 0;
	bool whole = !shared || journal_first_txid(m->j) > t + 1;
	if (whole)
		bitmap_set_all(m->bm);
	else if (master_mark_dirty_locked(m, t, committed) < 0) {
		m->demoted = false;
		pthread_mutex_unlock(&m->lock);
		return admin_refuse(r, ADMIN_INTERNAL, "%s: reading its journal after TXID %" PRIu64
				    ": %s", m->name, t, strerror(errno));
	}
	/*
	 * The handoff gets a copy taken now, under the lock: the session may go
	 * on clearing acknowledged regions of the live bitmap (a --force demote of
	 * a master still replicating) before frep-server reads it.
	 */
	char live[4200], frozen[4200];
	textf(live, sizeof(live), "%s.bitmap", m->journal_path);
	textf(frozen, sizeof(frozen), "%s.handoff.bitmap", m->journal_path);
	int synced = bitmap_sync(m->bm) < 0 ? -1 : copy_file_durably(live, frozen);
	*discard_tx = committed > t ? committed - t : 0;
	*discard_bytes = journal_bytes_after(m->j, t);
	uint64_t dirty = bitmap_dirty_regions(m->bm) * bitmap_region_size(m->bm);
	pthread_mutex_unlock(&m->lock);
	if (synced < 0) {
		undemote(m);
		return admin_refuse(r, ADMIN_INTERNAL, "%s: dirty bitmap for the handoff: %s", m->name,
				    strerror(errno));
	}

	if (hand_over(m, t, committed, shared, false, *discard_tx, *discard_bytes, path,
		      sizeof(path), err, sizeof(err)) < 0) {
		/* The journal may say demoted already: it stays refused, as the message says. */
		return admin_refuse(r, ADMIN_INTERNAL, "%s: %s (this frep-client takes no more "
				    "writes; restart it to retry)", m->name, err);
	}
	snprintf(handoff_path, path_len, "%s", path);
	char a[16], b[16];
	admin_refuse(r, ADMIN_OK,
		     "demoted %s: it discards %" PRIu64 " TX(s), %s committed after TXID %" PRIu64
		     "%s; the fail-back resends %s of regions%s. Handed to frep-server through %s; "
		     "this frep-client ends now", m->name, *discard_tx,
		     format_size(*discard_bytes, a, sizeof(a)), t,
		     shared ? " (kept readable as snapshot pre-demote)" : " (no promotion known: --force)",
		     format_size(dirty, b, sizeof(b)),
		     whole ? " (the whole volume: its journal does not say where it changed)" : "",
		     path);
	log_warn(m->name, "%s", r->message);
	schedule_quit();
	return 0;
}

int master_switchover(struct master *m, char *handoff_path, size_t path_len,
		      struct admin_reply *r)
{
	char err[512], path[4096 + 16];
	struct timespec until;
	pthread_mutex_lock(&m->lock);
	if (m->state != MS_INSYNC || m->paused || m->demoted || m->switch_state != SWITCH_NONE) {
		enum master_state st = m->state;
		pthread_mutex_unlock(&m->lock);
		return admin_refuse(r, ADMIN_FAILED_PRECONDITION,
				    "switchover %s needs its mirror connected and INSYNC, not paused "
				    "(state %s): without it the mirror's copy would lack writes; a lost "
				    "master is a failover (frepctl promote on the mirror)", m->name,
				    master_state_name(st));
	}
	/* SWO-1: no write from here on; every committed one reaches the mirror first. */
	m->switching = true;
	uint64_t t = master_quiesce_all_locked(m);
	m->switch_txid = t;
	m->switch_state = SWITCH_ASKED;
	master_notify_session(m);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += SWITCHOVER_WAIT_S;
	while ((m->switch_state == SWITCH_ASKED || m->switch_state == SWITCH_SENT) &&
	       pthread_cond_timedwait(&m->cond, &m->lock, &until) == 0)
		;
	bool done = m->switch_state == SWITCH_DONE;
	/* Once SWITCHOVER went, the mirror may have taken over with its answer lost. */
	bool unknown = !done && m->switch_sent;
	uint64_t epoch = m->switch_epoch, acked = m->acked_txid;
	char said[600] = "";
	if (!done && m->last_error.set)
		textf(said, sizeof(said), " (%s: %s)", m->last_error.code, m->last_error.message);
	if (!done) {
		m->switch_state = SWITCH_NONE;
		m->switch_sent = false;
		m->switching = unknown; /* two primaries are worse than a pause */
	}
	pthread_mutex_unlock(&m->lock);
	if (unknown)
		return admin_refuse(r, ADMIN_UNAVAILABLE, "switchover %s: SWITCHOVER went to the mirror "
				    "but its answer did not come back%s: it may be the primary now. Local "
				    "writes stay refused: check frepctl status %s on the mirror; if it is "
				    "PROMOTED, run frepctl demote %s here, else restart this frep-client",
				    m->name, said, m->name, m->name);
	if (!done)
		return admin_refuse(r, ADMIN_UNAVAILABLE, "switchover %s: the mirror did not take over "
				    "(acknowledged TXID %" PRIu64 " of %" PRIu64 ")%s: nothing changed, "
				    "local writes go on", m->name, acked, t, said);
	if (hand_over(m, t, t, true, true, 0, 0, path, sizeof(path), err, sizeof(err)) < 0)
		return admin_refuse(r, ADMIN_INTERNAL, "switchover %s: the mirror is the primary at "
				    "epoch %" PRIu64 ", but handing this copy over failed: %s", m->name,
				    epoch, err);
	snprintf(handoff_path, path_len, "%s", path);
	admin_refuse(r, ADMIN_OK,
		     "switched over %s at TXID %" PRIu64 ": the mirror's copy is the primary at epoch "
		     "%" PRIu64 " (serve it there with frep-client --adopt), and this copy becomes its "
		     "mirror with nothing to copy. Local NBD clients are disconnected and this "
		     "frep-client ends; handed to frep-server through %s", m->name, t, epoch, path);
	log_warn(m->name, "%s", r->message);
	schedule_quit();
	return 0;
}
