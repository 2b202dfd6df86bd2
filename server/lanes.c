/* Mirror lanes (spec "Lanes"): joining a session, a lane's records in order, COPY_DONE's counts. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "authz.h"
#include "compress.h"
#include "frame.h"
#include "lanes.h"
#include "log.h"
#include "session.h"
#include "store.h"
#include "tls.h"
#include "util.h"

enum mlanes_limits {
	/*
	 * LANE-8: a record this far ahead of the low-water mark waits on its
	 * lane until the mark catches up (TCP then holds the master back), so
	 * the records written but not yet contiguous stay bounded.
	 */
	WINDOW = 4096,
	POLL_MS = 250,		   /* how often a waiting lane looks at its session and shutdown */
	ACK_BYTES = 64 << 20,	   /* COPY-8: data written that wakes lane 0 to acknowledge */
};

/* A record of the open pass between its claim (seq checked) and the mark passing it. */
struct slot {
	uint64_t seq; /* 0: free */
	uint64_t end; /* off + len */
	bool written;
};

struct mlanes {
	/* Set by mlanes_new; read-only afterwards. */
	struct mirror_server *srv;
	char volume[FREP_MAX_VOLUME_NAME + 1];
	char identity[256];
	uint8_t session_id[FREP_SESSION_ID_SIZE];
	uint8_t uuid[FREP_UUID_SIZE];
	uint64_t generation;
	unsigned n;		/* lanes, lane 0 included */
	unsigned compression;
	Frep__V1__Welcome welcome; /* lane 0's, scalars only: every lane gets the same (LANE-5) */
	int wake_fd;		/* eventfd: a lane wakes lane 0's wait */
	char sid_hex[2 * FREP_SESSION_ID_SIZE + 1];

	/* Held across each write into the volume, and to open or end a pass: never both ways. */
	pthread_mutex_t copy_lock;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* a pass opened, a record written, the session ended */
	/* Under lock: */
	struct mlanes *next; /* in the registry of sets (under sets_mu instead) */
	unsigned refs;	     /* lane 0 and each lane still running */
	bool joined[FREP_MAX_LANES];
	bool ready;	     /* READY reached: no more joins */
	bool done;	     /* lane 0's session is over */
	/* Passes (LANE-7): below floor, ignored; pass is open once its start is durable. */
	uint64_t floor, pass;
	struct mirror_volume *mv; /* lane 0's, for writes under copy_lock while !done */
	uint64_t vol_size;
	bool counted;	     /* COPY_DONE gave the counts */
	bool sealed;	     /* and every record arrived: none may come now */
	uint64_t counts[FREP_MAX_LANES];
	uint64_t claimed[FREP_MAX_LANES], delivered[FREP_MAX_LANES];
	uint64_t mark_seq, mark_end; /* LANE-8: records 1..mark_seq written, the last ends here */
	uint64_t unsynced;	     /* data bytes written since lane 0 last synced */
	struct slot ring[WINDOW];    /* seq s in ring[s % WINDOW] */
	/* The first failure of a lane (LANE-9), until lane 0 takes it. */
	bool failed, failure_taken;
	uint32_t fail_code;
	char fail_why[FREP_MAX_MESSAGE];
	uint64_t data_bytes[FREP_MAX_LANES], wire_bytes[FREP_MAX_LANES];
};

/* Every set of a live session, for lanes to find: (volume, session_id). */
static pthread_mutex_t sets_mu = PTHREAD_MUTEX_INITIALIZER;
static struct mlanes *sets;

static void wake_lane0(struct mlanes *ls)
{
	uint64_t one = 1;
	ssize_t w = write(ls->wake_fd, &one, sizeof(one));
	(void)w;
}

static void unref(struct mlanes *ls)
{
	pthread_mutex_lock(&ls->lock);
	bool last = --ls->refs == 0;
	pthread_mutex_unlock(&ls->lock);
	if (!last)
		return;
	close(ls->wake_fd);
	pthread_mutex_destroy(&ls->copy_lock);
	pthread_mutex_destroy(&ls->lock);
	pthread_cond_destroy(&ls->cond);
	free(ls);
}

struct mlanes *mlanes_new(struct mirror_server *srv, const Frep__V1__Hello *h, const char *identity,
			  const Frep__V1__Welcome *w)
{
	struct mlanes *ls = calloc(1, sizeof(*ls));
	if (!ls)
		return NULL;
	ls->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ls->wake_fd < 0) {
		free(ls);
		return NULL;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ls->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&ls->lock, NULL);
	pthread_mutex_init(&ls->copy_lock, NULL);
	ls->srv = srv;
	snprintf(ls->volume, sizeof(ls->volume), "%s", h->volume);
	snprintf(ls->identity, sizeof(ls->identity), "%s", identity);
	memcpy(ls->session_id, h->session_id.data, FREP_SESSION_ID_SIZE);
	memcpy(ls->uuid, h->volume_uuid.data, FREP_UUID_SIZE);
	hex_encode(ls->session_id, FREP_SESSION_ID_SIZE, ls->sid_hex);
	ls->generation = h->generation;
	ls->n = w->lanes;
	ls->compression = w->compression;
	ls->welcome = *w;
	ls->joined[0] = true;
	ls->refs = 1;
	ls->floor = 1;
	pthread_mutex_lock(&sets_mu);
	ls->next = sets;
	sets = ls;
	pthread_mutex_unlock(&sets_mu);
	return ls;
}

void mlanes_end(struct mlanes *ls)
{
	if (!ls)
		return;
	pthread_mutex_lock(&sets_mu);
	for (struct mlanes **p = &sets; *p; p = &(*p)->next)
		if (*p == ls) {
			*p = ls->next;
			break;
		}
	pthread_mutex_unlock(&sets_mu);
	/* Under the copy lock: a lane in the middle of a write finishes it, and then none starts. */
	pthread_mutex_lock(&ls->copy_lock);
	pthread_mutex_lock(&ls->lock);
	ls->done = true;
	ls->mv = NULL;
	pthread_cond_broadcast(&ls->cond);
	pthread_mutex_unlock(&ls->lock);
	pthread_mutex_unlock(&ls->copy_lock);
	unref(ls);
}

bool mlanes_ready(struct mlanes *ls, char *why, size_t why_len)
{
	char missing[64] = "";
	size_t at = 0;
	pthread_mutex_lock(&ls->lock);
	ls->ready = true;
	for (unsigned i = 1; i < ls->n; i++)
		if (!ls->joined[i] && at < sizeof(missing) - 4)
			at += (size_t)snprintf(missing + at, sizeof(missing) - at, "%s%u", at ? "," : "", i);
	pthread_mutex_unlock(&ls->lock);
	if (!at)
		return true;
	snprintf(why, why_len, "EXTENT_TABLE before lane(s) %s of the %u granted joined: a master "
		 "opens its lanes before MAKEPARTS (LANE-4)", missing, ls->n);
	return false;
}

void mlanes_pass_begin(struct mlanes *ls, uint64_t pass)
{
	pthread_mutex_lock(&ls->copy_lock);
	pthread_mutex_lock(&ls->lock);
	ls->floor = pass;
	pthread_cond_broadcast(&ls->cond); /* waiting records of older passes: ignored now */
	pthread_mutex_unlock(&ls->lock);
	pthread_mutex_unlock(&ls->copy_lock);
}

void mlanes_pass_open(struct mlanes *ls, struct mirror_volume *mv, uint64_t start)
{
	pthread_mutex_lock(&ls->lock);
	ls->pass = ls->floor;
	ls->mv = mv;
	ls->vol_size = mv->vol.size;
	ls->counted = ls->sealed = false;
	memset(ls->claimed, 0, sizeof(ls->claimed));
	memset(ls->delivered, 0, sizeof(ls->delivered));
	memset(ls->ring, 0, sizeof(ls->ring));
	ls->mark_seq = 0;
	ls->mark_end = start;
	ls->unsynced = 0;
	pthread_cond_broadcast(&ls->cond);
	pthread_mutex_unlock(&ls->lock);
}

/* Waits on the set's cond, at most until *until (NULL: one poll interval). Under lock. */
static void wait_set(struct mlanes *ls, const struct timespec *until)
{
	struct timespec t;
	if (!until) {
		deadline_in(CLOCK_MONOTONIC, POLL_MS, &t);
		until = &t;
	}
	pthread_cond_timedwait(&ls->cond, &ls->lock, until);
}

static bool passed(const struct timespec *until)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > until->tv_sec || (now.tv_sec == until->tv_sec && now.tv_nsec >= until->tv_nsec);
}

int mlanes_record(struct mlanes *ls, unsigned lane, const struct mlanes_rec *r, uint64_t wait_ms,
		  uint32_t *code, char *why, size_t why_len)
{
	const char *name = frep_msg_name(r->type);
	struct timespec until;
	deadline_in(CLOCK_MONOTONIC, wait_ms, &until);
	*code = FREP_E_PROTOCOL;
	if (!r->numbered || r->pass == 0 || r->seq == 0) {
		snprintf(why, why_len, "%s at offset %" PRIu64 " on lane %u without its pass and seq, "
			 "both from 1: a session of %u lanes numbers every copy record (LANE-6)", name,
			 r->off, lane, ls->n);
		return -1;
	}
	pthread_mutex_lock(&ls->lock);
	for (;;) {
		if (ls->done || atomic_load(&ls->srv->stopping)) {
			*code = 0;
			snprintf(why, why_len, "the session is over");
			goto fail;
		}
		if (r->pass < ls->floor) {
			pthread_mutex_unlock(&ls->lock);
			return 1; /* LANE-7: a pass that is over; the master copies again what it needs */
		}
		if (r->pass > ls->pass) {
			if (wait_ms) {
				snprintf(why, why_len, "%s of pass %" PRIu64 " on lane 0, where the last "
					 "START_COPY began pass %" PRIu64 " (LANE-6)", name, r->pass, ls->pass);
				goto fail;
			}
			wait_set(ls, NULL); /* LANE-7: its START_COPY is still on its way on lane 0 */
			continue;
		}
		if (ls->sealed || (ls->counted && ls->claimed[lane] >= ls->counts[lane])) {
			snprintf(why, why_len, "%s seq %" PRIu64 " of pass %" PRIu64 " on lane %u: more copy "
				 "records than COPY_DONE counted for the lane (%" PRIu64 ", LANE-7)", name,
				 r->seq, r->pass, lane, ls->counts[lane]);
			goto fail;
		}
		struct slot *sl = &ls->ring[r->seq % WINDOW];
		if (r->seq <= ls->mark_seq || sl->seq == r->seq) {
			snprintf(why, why_len, "%s seq %" PRIu64 " of pass %" PRIu64 " on lane %u came "
				 "before: each record of a pass has its own seq (LANE-6)", name, r->seq,
				 r->pass, lane);
			goto fail;
		}
		if (r->seq > ls->mark_seq + WINDOW) {
			/* LANE-8: far ahead of the mark; what lies between comes on other lanes. */
			if (wait_ms && passed(&until)) {
				*code = 0;
				snprintf(why, why_len, "%s seq %" PRIu64 " on lane %u waited %" PRIu64 " ms for "
					 "records %" PRIu64 ".. on other lanes", name, r->seq, lane, wait_ms,
					 ls->mark_seq + 1);
				goto fail;
			}
			wait_set(ls, wait_ms ? &until : NULL);
			continue;
		}
		break;
	}
	/* Claimed: no other lane may bring this seq again. */
	struct slot *sl = &ls->ring[r->seq % WINDOW];
	*sl = (struct slot){ .seq = r->seq, .end = r->off + r->len };
	ls->claimed[lane]++;
	uint64_t size = ls->vol_size;
	pthread_mutex_unlock(&ls->lock);

	/* COPY-7, before writing: the range, then the CRC of the data. */
	if (r->len == 0 || r->off > size || r->len > size - r->off) {
		*code = FREP_E_RANGE;
		snprintf(why, why_len, "%s of %" PRIu64 " bytes at offset %" PRIu64 " outside the "
			 "%" PRIu64 "-byte volume", name, r->len, r->off, size);
		return -1;
	}
	if (r->type == FREP_MSG_COPY_DATA && frep_crc32c(r->data, r->len) != r->crc) {
		*code = FREP_E_CHECKSUM;
		snprintf(why, why_len, "COPY_DATA at offset %" PRIu64 " (lane %u): CRC32C mismatch",
			 r->off, lane);
		return -1;
	}

	pthread_mutex_lock(&ls->copy_lock);
	pthread_mutex_lock(&ls->lock);
	bool gone = ls->done || !ls->mv, over = r->pass < ls->floor;
	struct mirror_volume *mv = ls->mv;
	pthread_mutex_unlock(&ls->lock);
	if (gone || over) {
		pthread_mutex_unlock(&ls->copy_lock);
		*code = 0;
		snprintf(why, why_len, "the session is over");
		return over ? 1 : -1;
	}
	int rc = store_copy_write(mv, r->type == FREP_MSG_COPY_DATA ? JOP_WRITE : JOP_TRIM, r->off,
				  r->len, r->data);
	int e = errno;
	if (rc < 0) {
		pthread_mutex_unlock(&ls->copy_lock);
		*code = e == ENOSPC ? FREP_E_NO_SPACE : FREP_E_IO;
		snprintf(why, why_len, "%s %" PRIu64 " bytes at offset %" PRIu64 ": %s",
			 r->type == FREP_MSG_COPY_DATA ? "writing" : "punching", r->len, r->off,
			 strerror(e));
		return -1;
	}
	pthread_mutex_lock(&ls->lock);
	sl->written = true;
	/* LANE-8: the mark moves over every record written in a row. */
	for (;;) {
		struct slot *next = &ls->ring[(ls->mark_seq + 1) % WINDOW];
		if (next->seq != ls->mark_seq + 1 || !next->written)
			break;
		ls->mark_seq++;
		ls->mark_end = next->end;
		*next = (struct slot){ 0 };
	}
	ls->delivered[lane]++;
	if (r->type == FREP_MSG_COPY_DATA) {
		bool was_below = ls->unsynced < ACK_BYTES;
		ls->unsynced += r->len;
		if (was_below && ls->unsynced >= ACK_BYTES)
			wake_lane0(ls); /* COPY-8: at least once every 64 MiB */
	}
	pthread_cond_broadcast(&ls->cond);
	pthread_mutex_unlock(&ls->lock);
	pthread_mutex_unlock(&ls->copy_lock);
	return 0;
fail:
	pthread_mutex_unlock(&ls->lock);
	return -1;
}

int mlanes_done(struct mlanes *ls, const uint64_t *counts, size_t n, uint64_t timeout_ms,
		uint32_t *code, char *why, size_t why_len)
{
	*code = FREP_E_PROTOCOL;
	if (n != ls->n) {
		snprintf(why, why_len, "COPY_DONE with %zu lane_records in a session of %u lanes: one "
			 "count per lane, lane 0 first (LANE-7)", n, ls->n);
		return -1;
	}
	struct timespec until;
	deadline_in(CLOCK_MONOTONIC, timeout_ms, &until);
	int rc = -1;
	pthread_mutex_lock(&ls->lock);
	memcpy(ls->counts, counts, n * sizeof(*counts));
	ls->counted = true;
	for (;;) {
		bool all = true;
		for (unsigned i = 0; i < ls->n; i++) {
			if (ls->claimed[i] > counts[i]) {
				snprintf(why, why_len, "lane %u delivered %" PRIu64 " copy records of pass %"
					 PRIu64 ", COPY_DONE counts %" PRIu64 " (LANE-7)", i,
					 ls->claimed[i], ls->pass, counts[i]);
				goto out;
			}
			all = all && ls->delivered[i] == counts[i];
		}
		if (all)
			break;
		if (ls->done || atomic_load(&ls->srv->stopping)) {
			*code = 0;
			snprintf(why, why_len, "the session is over");
			goto out;
		}
		if (ls->failed) {
			*code = 0;
			snprintf(why, why_len, "a lane failed before delivering its records");
			goto out;
		}
		/* Lane 0's own come before its COPY_DONE: they cannot be late. */
		if (ls->delivered[0] < counts[0]) {
			snprintf(why, why_len, "COPY_DONE counts %" PRIu64 " copy records on lane 0, which "
				 "brought %" PRIu64 " before it (LANE-7)", counts[0], ls->delivered[0]);
			goto out;
		}
		if (passed(&until)) {
			*code = 0;
			size_t at = (size_t)snprintf(why, why_len, "lanes still owe copy records of pass %"
						     PRIu64 " %" PRIu64 " ms after COPY_DONE:", ls->pass,
						     timeout_ms);
			for (unsigned i = 1; i < ls->n && at < why_len; i++)
				if (ls->delivered[i] < counts[i])
					at += (size_t)snprintf(why + at, why_len - at, " lane %u has %" PRIu64
							       " of %" PRIu64, i, ls->delivered[i], counts[i]);
			goto out;
		}
		wait_set(ls, &until);
	}
	uint64_t total = 0;
	for (unsigned i = 0; i < ls->n; i++)
		total += counts[i];
	if (ls->mark_seq != total) {
		snprintf(why, why_len, "pass %" PRIu64 " brought %" PRIu64 " copy records, but not seq 1.."
			 "%" PRIu64 ": seq %" PRIu64 " is missing (LANE-6)", ls->pass, total, total,
			 ls->mark_seq + 1);
		goto out;
	}
	ls->sealed = true; /* LANE-7: from now on TXs of the pass apply; no record may follow */
	rc = 0;
out:
	pthread_mutex_unlock(&ls->lock);
	return rc;
}

uint64_t mlanes_through(struct mlanes *ls, uint64_t *unsynced)
{
	pthread_mutex_lock(&ls->lock);
	uint64_t end = ls->mark_end;
	*unsynced = ls->unsynced;
	pthread_mutex_unlock(&ls->lock);
	return end;
}

void mlanes_synced(struct mlanes *ls, uint64_t bytes)
{
	pthread_mutex_lock(&ls->lock);
	ls->unsynced = ls->unsynced > bytes ? ls->unsynced - bytes : 0;
	pthread_mutex_unlock(&ls->lock);
}

/* A lane's failure for lane 0 to act on (LANE-9): the first one counts. Under lock. */
static void fail_locked(struct mlanes *ls, uint32_t code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail_locked(struct mlanes *ls, uint32_t code, const char *fmt, ...)
{
	if (ls->failed || ls->done)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ls->fail_why, sizeof(ls->fail_why), fmt, ap);
	va_end(ap);
	ls->failed = true;
	ls->fail_code = code;
	pthread_cond_broadcast(&ls->cond);
	wake_lane0(ls);
}

bool mlanes_failed(struct mlanes *ls, uint32_t *code, char *why, size_t why_len)
{
	pthread_mutex_lock(&ls->lock);
	bool now = ls->failed && !ls->failure_taken;
	if (now) {
		ls->failure_taken = true;
		*code = ls->fail_code;
		snprintf(why, why_len, "%s", ls->fail_why);
	}
	pthread_mutex_unlock(&ls->lock);
	return now;
}

bool mlanes_wait(struct mlanes *ls, struct tls_conn *c, int timeout_ms)
{
	if (tls_readable(c, 0))
		return true;
	struct pollfd p[2] = {
		{ .fd = tls_fd(c), .events = POLLIN },
		{ .fd = ls->wake_fd, .events = POLLIN },
	};
	if (poll(p, 2, timeout_ms) <= 0)
		return false;
	if (p[1].revents & POLLIN) {
		uint64_t v;
		ssize_t r = read(ls->wake_fd, &v, sizeof(v));
		(void)r;
		return false;
	}
	return (p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

void mlanes_bytes(struct mlanes *ls, uint64_t *data, uint64_t *wire)
{
	*data = *wire = 0;
	pthread_mutex_lock(&ls->lock);
	for (unsigned i = 1; i < ls->n; i++) {
		*data += ls->data_bytes[i];
		*wire += ls->wire_bytes[i];
	}
	pthread_mutex_unlock(&ls->lock);
}

/*
 * LANE-5: the session h names, if this identity may join it as h->lane;
 * the lane is taken and a hold on the set given. NULL with *code and why.
 */
static struct mlanes *join(struct mirror_server *srv, const Frep__V1__Hello *h, const char *who,
			   uint32_t *code, char *why, size_t why_len)
{
	char sid[2 * FREP_SESSION_ID_SIZE + 1];
	hex_encode(h->session_id.data, FREP_SESSION_ID_SIZE, sid);
	*code = FREP_E_LANES;
	if (h->proto_min != 2 || h->proto_max != 2) {
		snprintf(why, why_len, "lane %u of %u offers protocol versions %u..%u: a joining lane "
			 "offers exactly version 2, and version 1 has one lane only (LANE-2, LANE-5)",
			 h->lane, h->lane_count, h->proto_min, h->proto_max);
		return NULL;
	}
	if (h->lane_count > FREP_MAX_LANES || h->lane >= h->lane_count) {
		snprintf(why, why_len, "lane %u of %u: a lane is 1..lane_count-1, at most %u lanes "
			 "(LANE-1, LANE-4)", h->lane, h->lane_count, (unsigned)FREP_MAX_LANES);
		return NULL;
	}
	if (!authz_allows(srv->allow, h->volume, who)) {
		*code = FREP_E_UNAUTHORISED;
		snprintf(why, why_len, "master %s is not allowed for volume %s by the --allow file", who,
			 h->volume);
		return NULL;
	}
	struct mlanes *ls = NULL;
	pthread_mutex_lock(&sets_mu);
	for (struct mlanes *p = sets; p; p = p->next) {
		if (strcmp(p->volume, h->volume) != 0)
			continue;
		/* TLS-6, LANE-5: a lane is its lane 0's identity, whatever session it names. */
		if (strcmp(p->identity, who) != 0) {
			*code = FREP_E_UNAUTHORISED;
			snprintf(why, why_len, "master %s asks to join a session of volume %s, which master "
				 "%s holds: a lane authenticates as its lane 0 did (LANE-5)", who, h->volume,
				 p->identity);
			ls = NULL;
			goto out;
		}
		if (memcmp(p->session_id, h->session_id.data, FREP_SESSION_ID_SIZE) == 0)
			ls = p;
	}
	if (!ls) {
		snprintf(why, why_len, "no session %s of volume %s is open here: a lane joins the session "
			 "its lane 0 opened, with its session_id (LANE-5)", sid, h->volume);
		goto out;
	}
	pthread_mutex_lock(&ls->lock);
	unsigned comp = compress_choose(h->compression, h->n_compression);
	if (ls->done || ls->ready)
		snprintf(why, why_len, "session %s of volume %s is past READY: its lanes join before "
			 "its first copy (LANE-5)", sid, h->volume);
	else if (h->lane_count != ls->n)
		snprintf(why, why_len, "lane %u of %u, but session %s has %u lanes (Welcome.lanes, "
			 "LANE-1)", h->lane, h->lane_count, sid, ls->n);
	else if (ls->joined[h->lane])
		snprintf(why, why_len, "lane %u of session %s has joined already (LANE-5)", h->lane, sid);
	else if (memcmp(ls->uuid, h->volume_uuid.data, FREP_UUID_SIZE) != 0 ||
		 ls->generation != h->generation)
		snprintf(why, why_len, "lane %u names another volume UUID or generation than lane 0 of "
			 "session %s (LANE-1)", h->lane, sid);
	else if (comp != ls->compression)
		snprintf(why, why_len, "lane %u offers compression %s, lane 0 of session %s settled %s "
			 "(LANE-5)", h->lane, compress_name(comp), sid, compress_name(ls->compression));
	else
		*code = 0;
	if (*code == 0) {
		ls->joined[h->lane] = true;
		ls->refs++;
	}
	pthread_mutex_unlock(&ls->lock);
	if (*code)
		ls = NULL;
out:
	pthread_mutex_unlock(&sets_mu);
	return ls;
}

/* The lane ends with an error it tells the master, on the lane and (by lane 0) on lane 0. */
static void lane_error(struct mlanes *ls, unsigned lane, struct tls_conn *c,
		       struct frame_writer *out, uint32_t code, const char *why)
{
	log_error(ls->volume, "master %s (%s), lane %u: %s: %s", tls_peer_cn(c), tls_peer_addr(c),
		  lane, frep_error_name(code), why);
	frame_send_error(out, code, "lane %u: %s", lane, why);
	pthread_mutex_lock(&ls->lock);
	fail_locked(ls, code, "lane %u: %s", lane, why);
	pthread_mutex_unlock(&ls->lock);
}

/*
 * The lane is gone (a lost link, a close, GOODBYE): the session ends
 * (LANE-9). A clean close is how a master that stops ends its lanes.
 */
static void lane_lost(struct mlanes *ls, unsigned lane, struct tls_conn *c, bool clean,
		      const char *why)
{
	pthread_mutex_lock(&ls->lock);
	bool over = ls->done;
	fail_locked(ls, 0, "lane %u: %s", lane, why);
	pthread_mutex_unlock(&ls->lock);
	if (over)
		return;
	if (clean)
		log_info(ls->volume, "master %s (%s), lane %u: %s: the session ends (LANE-9)",
			 tls_peer_cn(c), tls_peer_addr(c), lane, why);
	else
		log_warn(ls->volume, "master %s (%s), lane %u: %s: the session ends (LANE-9)",
			 tls_peer_cn(c), tls_peer_addr(c), lane, why);
}

/* One frame the lane received. false: the lane is over. */
static bool lane_frame(struct mlanes *ls, unsigned lane, struct tls_conn *c,
		       struct frame_writer *out, const struct frame *f)
{
	char why[FREP_MAX_MESSAGE];
	uint32_t code;
	struct mlanes_rec r = { .type = f->hdr.type };
	switch (f->hdr.type) {
	case FREP_MSG_COPY_DATA: {
		const Frep__V1__CopyData *d = (const Frep__V1__CopyData *)f->msg;
		r.numbered = d->has_pass && d->has_seq;
		r.pass = d->pass;
		r.seq = d->seq;
		r.off = d->offset;
		r.len = f->hdr.trailer_len;
		r.data = f->trailer;
		r.crc = d->data_crc;
		break;
	}
	case FREP_MSG_COPY_HOLE: {
		const Frep__V1__CopyHole *h = (const Frep__V1__CopyHole *)f->msg;
		r.numbered = h->has_pass && h->has_seq;
		r.pass = h->pass;
		r.seq = h->seq;
		r.off = h->offset;
		r.len = h->length;
		break;
	}
	case FREP_MSG_GOODBYE:
		snprintf(why, sizeof(why), "the master said goodbye: %s",
			 ((const Frep__V1__Goodbye *)f->msg)->reason);
		lane_lost(ls, lane, c, true, why);
		return false;
	case FREP_MSG_ERROR: {
		const Frep__V1__Error *e = (const Frep__V1__Error *)f->msg;
		snprintf(why, sizeof(why), "the master reported %s: %s", frep_error_name(e->code),
			 e->message);
		lane_lost(ls, lane, c, false, why);
		return false;
	}
	default:
		snprintf(why, sizeof(why), "%s on a joining lane, which carries COPY_DATA and COPY_HOLE "
			 "only (LANE-6)", frep_msg_name(f->hdr.type));
		lane_error(ls, lane, c, out, FREP_E_UNEXPECTED, why);
		return false;
	}
	if (mlanes_record(ls, lane, &r, 0, &code, why, sizeof(why)) >= 0)
		return true;
	if (code)
		lane_error(ls, lane, c, out, code, why);
	return false;
}

void mlanes_serve(struct mirror_server *srv, struct tls_conn *c, struct frame_reader *rd,
		  struct frame_writer *out, const Frep__V1__Hello *h)
{
	const char *who = tls_peer_cn(c);
	char why[FREP_MAX_MESSAGE];
	uint32_t code;
	unsigned lane = h->lane;

	struct mlanes *ls = join(srv, h, who, &code, why, sizeof(why));
	if (!ls) {
		/* No lane of any session: the Error goes on this connection only. */
		log_error(h->volume, "master %s (%s): %s: %s", who, tls_peer_addr(c), frep_error_name(code),
			  why);
		frame_send_error(out, code, "%s", why);
		return;
	}
	/* WELCOME, a version-1 frame (FRAME-3), as lane 0's; then the session's framing. */
	Frep__V1__Welcome w = ls->welcome;
	if (frame_send(out, FREP_MSG_WELCOME, &w.base, NULL, 0) < 0) {
		snprintf(why, sizeof(why), "sending WELCOME: %s", strerror(errno));
		lane_lost(ls, lane, c, false, why);
		goto out;
	}
	if (frame_writer_set(out, 2, ls->compression) < 0 ||
	    frame_reader_set(rd, 2, ls->compression) < 0) {
		lane_error(ls, lane, c, out, FREP_E_INTERNAL, "out of memory");
		goto out;
	}
	log_info(ls->volume, "master %s (%s): lane %u of %u joined session %s", who,
		 tls_peer_addr(c), lane, ls->n, ls->sid_hex);
	for (;;) {
		/* HB-3 does not apply: lanes carry no heartbeat, lane 0's speak for the session. */
		pthread_mutex_lock(&ls->lock);
		bool over = ls->done;
		pthread_mutex_unlock(&ls->lock);
		if (over || atomic_load(&srv->stopping))
			break;
		if (!tls_readable(c, POLL_MS))
			continue;
		struct frame f;
		uint32_t wire_err;
		enum frame_status st = frame_recv(c, rd, &f, &wire_err, why, sizeof(why));
		pthread_mutex_lock(&ls->lock);
		ls->data_bytes[lane] = rd->data_bytes;
		ls->wire_bytes[lane] = rd->wire_bytes;
		pthread_mutex_unlock(&ls->lock);
		if (st == FRAME_EOF) {
			lane_lost(ls, lane, c, true, "the master closed the lane");
			break;
		}
		if (st != FRAME_OK) {
			if (wire_err)
				lane_error(ls, lane, c, out, wire_err, why);
			else
				lane_lost(ls, lane, c, false, why);
			break;
		}
		if (!lane_frame(ls, lane, c, out, &f))
			break;
	}
out:
	unref(ls);
}
