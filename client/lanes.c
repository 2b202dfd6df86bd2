/* Master lanes (spec "Lanes"): joining TLS connections and their sender threads for the bulk copy. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "compress.h"
#include "frame.h"
#include "frep/v1/frep.pb-c.h"
#include "lanes.h"
#include "log.h"
#include "session-internal.h"
#include "tls.h"
#include "util.h"

enum lanes_limits {
	QUEUE_MAX = 64,		/* records queued for the lanes (holes take no buffer) */
	JOIN_SLACK_MS = 1000,	/* beyond the handshake timeout, for every lane to join */
	WAIT_MS = 100,		/* the session thread's waits, between its other duties */
	LANE0_GRACE_MS = 500,	/* lane trouble: lane 0 may bring the mirror's ERROR this soon */
	LANE_NOTSENT_LOWAT = 256 << 10, /* bytes a lane's socket queues before it is sent */
};

/* One copy record, queued for whichever lane is free. */
struct record {
	bool data;
	uint64_t off, len, pass, seq;
	uint32_t crc;
	uint8_t *buf; /* data: a buffer of the pool, back to it once sent */
};

enum lane_state { LANE_CONNECTING, LANE_JOINED };

/* Lane 1..n-1. Its thread owns c and out; the fields under the set's lock say so. */
struct lane {
	struct lanes *set;
	unsigned index;
	pthread_t thread;
	bool started;
	struct tls_conn *c;	  /* under lock: set once connected, closed by lanes_close */
	struct frame_writer out; /* its thread's while it runs, then lanes_close's */
	enum lane_state state;	  /* under lock */
	bool busy;		  /* under lock: sending a record, */
	uint64_t seq;		  /* under lock: that one */
	uint64_t records;	  /* under lock: records it took this pass */
};

struct lanes {
	/* Set by lanes_open before the threads start; read-only afterwards. */
	struct session *s; /* its options (TLS, address, timeouts) only */
	unsigned n;	   /* lanes of the session, lane 0 included */
	unsigned compression;
	Frep__V1__Hello hello; /* a joining lane's, but for lane and lane_count */
	struct hello_keep keep;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* a lane joined, failed, took a record or sent it; stop */
	/* Under lock: */
	struct lane lane[FREP_MAX_LANES];
	struct record q[QUEUE_MAX];
	unsigned q_head, q_len;
	uint8_t *bufs[FREP_MAX_LANES + 1]; /* every record buffer made, freed at close */
	unsigned n_bufs;
	uint8_t *free_bufs[FREP_MAX_LANES + 1];
	unsigned n_free;
	unsigned joined;
	bool stop;
	/* The first failure: its lane, the wire code (0: the link), and why. */
	bool failed, from_mirror, severe;
	unsigned failed_lane;
	uint32_t code;
	char why[400];

	/* The session thread's own: the pass and the last seq given (LANE-6). */
	uint64_t pass, seq;
};

/*
 * Buffers: one per lane sending, and two more, one being read from the
 * volume while the other waits for the next free lane.
 */
static unsigned pool_size(const struct lanes *ls)
{
	return ls->n + 1;
}

/*
 * Whether a lane may take the next record now. A lane takes the oldest
 * queued record, but not one more than two per lane ahead of the oldest
 * still being sent: the mirror's low-water mark (LANE-8) waits for that one,
 * and a lane slower than the others (a longer path, an unfair bottleneck)
 * would otherwise hold it back for the whole pass while the fast lanes run
 * on, so that the resume cursor and the bitmap's clearing (CRK-5) stood
 * still. The fast lanes wait instead, which gives the slow one the link.
 * Under lock.
 */
static bool may_take_locked(const struct lanes *ls)
{
	if (!ls->q_len)
		return false;
	uint64_t next = ls->q[ls->q_head].seq, ahead = 2 * (uint64_t)(ls->n - 1);
	for (unsigned i = 1; i < ls->n; i++)
		if (ls->lane[i].busy && ls->lane[i].seq + ahead < next)
			return false;
	return true;
}

/* Notes the set's first failure and wakes the session thread wherever it waits. Under lock. */
static void fail_locked(struct lanes *ls, unsigned lane, uint32_t code, bool from_mirror, bool severe,
			const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void fail_locked(struct lanes *ls, unsigned lane, uint32_t code, bool from_mirror, bool severe,
			const char *fmt, ...)
{
	if (!ls->failed) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(ls->why, sizeof(ls->why), fmt, ap);
		va_end(ap);
		ls->failed = true;
		ls->failed_lane = lane;
		ls->code = code;
		ls->from_mirror = from_mirror;
		ls->severe = severe;
	}
	pthread_cond_broadcast(&ls->cond);
	uint64_t one = 1;
	ssize_t w = write(ls->s->m->notify_fd, &one, sizeof(one)); /* out of a poll, if it is in one */
	(void)w;
}

/*
 * LANE-4, LANE-5: connects, says HELLO as lane l->index of the session, and
 * checks the WELCOME. 0, or -1 with the failure noted.
 */
static int lane_join(struct lane *l)
{
	struct lanes *ls = l->set;
	const struct session_options *o = &ls->s->o;
	char err[256];
	struct frame f;
	uint32_t wire_err;
	int rc = -1;

	struct tls_conn *c = tls_client_connect(o->tls, o->host, o->port, o->server_name,
						HANDSHAKE_TIMEOUT_MS, err, sizeof(err));
	pthread_mutex_lock(&ls->lock);
	if (!c) {
		fail_locked(ls, l->index, 0, false, false, "connect: %s", err);
		pthread_mutex_unlock(&ls->lock);
		return -1;
	}
	if (ls->stop) {
		pthread_mutex_unlock(&ls->lock);
		tls_close(c);
		return -1;
	}
	l->c = c; /* from now on lanes_close may shut it down, and closes it */
	pthread_mutex_unlock(&ls->lock);
	/*
	 * The lanes' records reach the mirror out of order, and its low-water
	 * mark (LANE-8) waits for the oldest. Bytes queued unsent in a lane's
	 * socket are invisible to may_take_locked, so keep that queue short:
	 * a write then waits until the link takes the data, which leaves what
	 * is in flight (the congestion window, so a long fat link stays full)
	 * untouched.
	 */
	int lowat = LANE_NOTSENT_LOWAT;
	if (setsockopt(tls_fd(c), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat)) < 0)
		log_warn(ls->s->m->name, "lane %u: TCP_NOTSENT_LOWAT: %s", l->index, strerror(errno));
	tls_set_read_timeout(c, HANDSHAKE_TIMEOUT_MS);
	/* A lane carries no heartbeat: a mirror that takes nothing for this long is gone (HB-3). */
	tls_set_write_timeout(c, (int)o->heartbeat_timeout_ms);
	frame_writer_init(&l->out, c);

	struct frame_reader rd;
	frame_reader_init(&rd);
	Frep__V1__Hello h = ls->hello;
	h.lane = l->index;
	h.lane_count = ls->n;
	if (frame_send(&l->out, FREP_MSG_HELLO, &h.base, NULL, 0) < 0) {
		pthread_mutex_lock(&ls->lock);
		fail_locked(ls, l->index, 0, false, false, "sending HELLO: %s", strerror(errno));
		goto out;
	}
	enum frame_status st = frame_recv(c, &rd, &f, &wire_err, err, sizeof(err));
	pthread_mutex_lock(&ls->lock);
	if (st == FRAME_EOF) {
		fail_locked(ls, l->index, 0, false, false, "the mirror closed the lane before WELCOME");
	} else if (st != FRAME_OK) {
		fail_locked(ls, l->index, wire_err, false, wire_err != 0, "%s", err);
	} else if (f.hdr.type == FREP_MSG_ERROR) {
		/* The mirror refused the join: its Error, its severity, as on lane 0. */
		Frep__V1__Error *e = (Frep__V1__Error *)f.msg;
		fail_locked(ls, l->index, e->code, true, e->severe || frep_error_is_severe(e->code),
			    "%s", e->message);
	} else if (f.hdr.type != FREP_MSG_WELCOME) {
		fail_locked(ls, l->index, FREP_E_UNEXPECTED, false, true, "expected WELCOME, got %s",
			    frep_msg_name(f.hdr.type));
	} else {
		Frep__V1__Welcome *w = (Frep__V1__Welcome *)f.msg;
		unsigned lanes = w->has_lanes ? w->lanes : 1;
		unsigned comp = w->has_compression ? w->compression : FREP_COMPRESS_NONE;
		if (w->proto_version != 2 || lanes != ls->n || comp != ls->compression)
			fail_locked(ls, l->index, FREP_E_LANES, false, true,
				    "the mirror welcomed the lane with protocol %u, %u lanes, compression %s; "
				    "the session has protocol 2, %u lanes, compression %s (LANE-5)",
				    w->proto_version, lanes, compress_name(comp), ls->n,
				    compress_name(ls->compression));
		else if (frame_writer_set(&l->out, 2, ls->compression) < 0)
			fail_locked(ls, l->index, 0, false, true, "out of memory");
		else
			rc = 0;
	}
	if (rc == 0) {
		l->state = LANE_JOINED;
		ls->joined++;
		pthread_cond_broadcast(&ls->cond);
	}
out:
	pthread_mutex_unlock(&ls->lock);
	frame_reader_free(&rd);
	return rc;
}

/* One COPY_DATA or COPY_HOLE with its pass and seq (LANE-6). 0 or -1 (errno). */
static int send_record(struct lane *l, const struct record *r)
{
	if (r->data) {
		Frep__V1__CopyData d = FREP__V1__COPY_DATA__INIT;
		d.offset = r->off;
		d.data_crc = r->crc;
		d.has_length = true; /* so that the trailer may go compressed (COMP-3) */
		d.length = r->len;
		d.has_pass = d.has_seq = true;
		d.pass = r->pass;
		d.seq = r->seq;
		return frame_send(&l->out, FREP_MSG_COPY_DATA, &d.base, r->buf, (uint32_t)r->len);
	}
	Frep__V1__CopyHole h = FREP__V1__COPY_HOLE__INIT;
	h.offset = r->off;
	h.length = r->len;
	h.has_pass = h.has_seq = true;
	h.pass = r->pass;
	h.seq = r->seq;
	return frame_send(&l->out, FREP_MSG_COPY_HOLE, &h.base, NULL, 0);
}

/* A lane's thread: joins, then sends the records it takes until told to stop or it fails. */
static void *lane_main(void *arg)
{
	struct lane *l = arg;
	struct lanes *ls = l->set;

	if (lane_join(l) < 0)
		return NULL;
	pthread_mutex_lock(&ls->lock);
	for (;;) {
		while (!ls->stop && !may_take_locked(ls))
			pthread_cond_wait(&ls->cond, &ls->lock);
		if (ls->stop)
			break;
		struct record r = ls->q[ls->q_head];
		ls->q_head = (ls->q_head + 1) % QUEUE_MAX;
		ls->q_len--;
		l->busy = true;
		l->seq = r.seq;
		l->records++;
		pthread_cond_broadcast(&ls->cond); /* room in the queue */
		pthread_mutex_unlock(&ls->lock);

		/* Compression and encryption run here, unlocked: one core per lane. */
		int rc = send_record(l, &r);
		int e = errno;

		pthread_mutex_lock(&ls->lock);
		l->busy = false;
		if (r.data)
			ls->free_bufs[ls->n_free++] = r.buf;
		pthread_cond_broadcast(&ls->cond);
		if (rc < 0) {
			fail_locked(ls, l->index, 0, false, false, "sending %s at offset %" PRIu64 ": %s",
				    r.data ? "COPY_DATA" : "COPY_HOLE", r.off,
				    e == ETIMEDOUT ? "the mirror took nothing for --heartbeat-timeout"
						   : strerror(e));
			break;
		}
	}
	pthread_mutex_unlock(&ls->lock);
	return NULL;
}

/* Fails the session with the set's first failure (LANE-9). Always -1. */
static int fail_session(struct session *s, struct lanes *ls)
{
	pthread_mutex_lock(&ls->lock);
	unsigned lane = ls->failed_lane;
	uint32_t code = ls->code;
	bool from_mirror = ls->from_mirror, severe = ls->severe;
	char why[sizeof(ls->why)];
	memcpy(why, ls->why, sizeof(why));
	pthread_mutex_unlock(&ls->lock);

	if (from_mirror) {
		s->peer_error = code;
		session_fail(s, severe ? ME_SEVERE : ME_MINOR, 0, "mirror reported %s on lane %u: %s",
			     frep_error_name(code), lane, why);
	} else if (code) {
		session_fail(s, ME_SEVERE, code, "lane %u: %s", lane, why);
	} else if (severe) {
		session_fail(s, ME_SEVERE, 0, "lane %u: %s", lane, why);
	} else {
		session_fail(s, ME_LINK_LOST, 0, "lane %u: %s", lane, why);
	}
	return -1;
}

int lanes_open(struct session *s)
{
	if (s->lanes < 2)
		return 0;
	struct lanes *ls = calloc(1, sizeof(*ls));
	if (!ls) {
		session_fail(s, ME_MINOR, 0, "out of memory for %u lanes", s->lanes);
		return -1;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ls->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&ls->lock, NULL);
	ls->s = s;
	ls->n = s->lanes;
	ls->compression = s->out.compression;
	/* LANE-1, LANE-5: lane 0's session, volume and generation; version 2 only. */
	session_hello(s, &ls->hello, &ls->keep);
	ls->hello.proto_min = ls->hello.proto_max = 2;
	ls->hello.has_lanes_max = false;
	s->lane_set = ls;

	pthread_mutex_lock(&ls->lock);
	for (unsigned i = 1; i < ls->n; i++) {
		struct lane *l = &ls->lane[i];
		l->set = ls;
		l->index = i;
		l->started = pthread_create(&l->thread, NULL, lane_main, l) == 0;
		if (!l->started)
			fail_locked(ls, i, 0, false, false, "cannot start its thread");
	}
	struct timespec until;
	deadline_in(CLOCK_MONOTONIC, HANDSHAKE_TIMEOUT_MS + JOIN_SLACK_MS, &until);
	while (!ls->failed && ls->joined < ls->n - 1 &&
	       pthread_cond_timedwait(&ls->cond, &ls->lock, &until) != ETIMEDOUT)
		;
	if (!ls->failed && ls->joined < ls->n - 1)
		fail_locked(ls, 0, 0, false, false, "%u of %u lanes joined within %d ms", ls->joined,
			    ls->n - 1, HANDSHAKE_TIMEOUT_MS + JOIN_SLACK_MS);
	bool failed = ls->failed;
	pthread_mutex_unlock(&ls->lock);
	if (failed)
		return fail_session(s, ls);
	if (ls->n == 2)
		log_info(s->m->name, "lane 1 joined the session: the copy goes over it, lane 0 keeps "
			 "control and writes");
	else
		log_info(s->m->name, "lanes 1..%u joined the session: the copy goes over these %u TLS "
			 "connections, lane 0 keeps control and writes", ls->n - 1, ls->n - 1);
	return 0;
}

void lanes_close(struct session *s, bool abort)
{
	struct lanes *ls = s->lane_set;
	if (!ls)
		return;
	s->lane_set = NULL;
	pthread_mutex_lock(&ls->lock);
	ls->stop = true;
	/* A lane blocked in a send or waiting for its WELCOME wakes up with an error. */
	for (unsigned i = 1; i < ls->n; i++) {
		struct lane *l = &ls->lane[i];
		if (l->c && (l->busy || l->state == LANE_CONNECTING))
			shutdown(tls_fd(l->c), SHUT_RDWR);
	}
	pthread_cond_broadcast(&ls->cond);
	pthread_mutex_unlock(&ls->lock);
	for (unsigned i = 1; i < ls->n; i++) {
		struct lane *l = &ls->lane[i];
		if (l->started)
			pthread_join(l->thread, NULL);
		if (abort)
			tls_abort(l->c);
		else
			tls_close(l->c);
		frame_writer_free(&l->out);
	}
	for (unsigned i = 0; i < ls->n_bufs; i++)
		free(ls->bufs[i]);
	pthread_cond_destroy(&ls->cond);
	pthread_mutex_destroy(&ls->lock);
	free(ls);
}

void lanes_pass_start(struct session *s)
{
	struct lanes *ls = s->lane_set;
	if (!ls)
		return;
	ls->pass++;
	ls->seq = 0;
	pthread_mutex_lock(&ls->lock);
	for (unsigned i = 1; i < ls->n; i++)
		ls->lane[i].records = 0;
	pthread_mutex_unlock(&ls->lock);
}

/*
 * Called with the lock held: waits a little for the lanes to move, then,
 * unlocked, does what the session thread owes meanwhile (acknowledgements,
 * heartbeats, lanes_check). 0 with the lock held again, or -1 unlocked: the
 * session failed (s->lane_set is gone) or must end.
 */
static int wait_lanes(struct session *s, struct lanes *ls)
{
	struct timespec until;
	deadline_in(CLOCK_MONOTONIC, WAIT_MS, &until);
	pthread_cond_timedwait(&ls->cond, &ls->lock, &until);
	pthread_mutex_unlock(&ls->lock);
	if (session_drain(s) < 0 || session_housekeeping(s) < 0 || session_stopping(s) ||
	    session_cracked(s))
		return -1;
	pthread_mutex_lock(&ls->lock);
	return 0;
}

uint8_t *lanes_buffer(struct session *s)
{
	struct lanes *ls = s->lane_set;
	uint8_t *b = NULL;
	pthread_mutex_lock(&ls->lock);
	while (!ls->n_free && ls->n_bufs == pool_size(ls))
		if (wait_lanes(s, ls) < 0)
			return NULL;
	if (ls->n_free) {
		b = ls->free_bufs[--ls->n_free];
	} else if ((b = malloc(LANE_CHUNK))) {
		ls->bufs[ls->n_bufs++] = b;
	}
	pthread_mutex_unlock(&ls->lock);
	if (!b)
		session_fail(s, ME_SEVERE, 0, "out of memory for a %d-byte copy record", LANE_CHUNK);
	return b;
}

/* Queues a record for the next free lane. 0, or -1 (the session failed or must end). */
static int queue(struct session *s, struct record r)
{
	struct lanes *ls = s->lane_set;
	pthread_mutex_lock(&ls->lock);
	while (ls->q_len == QUEUE_MAX)
		if (wait_lanes(s, ls) < 0)
			return -1; /* a buffer in r stays in bufs, freed at close */
	r.pass = ls->pass;
	r.seq = ++ls->seq;
	ls->q[(ls->q_head + ls->q_len) % QUEUE_MAX] = r;
	ls->q_len++;
	pthread_cond_broadcast(&ls->cond);
	pthread_mutex_unlock(&ls->lock);
	return 0;
}

int lanes_send_data(struct session *s, uint64_t off, uint32_t n, uint8_t *buf, uint32_t crc)
{
	return queue(s, (struct record){ .data = true, .off = off, .len = n, .crc = crc, .buf = buf });
}

int lanes_send_hole(struct session *s, uint64_t off, uint64_t len)
{
	return queue(s, (struct record){ .data = false, .off = off, .len = len });
}

int lanes_flush(struct session *s, uint64_t *lane_records)
{
	struct lanes *ls = s->lane_set;
	pthread_mutex_lock(&ls->lock);
	for (;;) {
		bool busy = ls->q_len != 0;
		for (unsigned i = 1; i < ls->n && !busy; i++)
			busy = ls->lane[i].busy;
		if (!busy)
			break;
		if (wait_lanes(s, ls) < 0)
			return -1;
	}
	lane_records[0] = 0; /* lane 0 carries none of frep's copy records */
	for (unsigned i = 1; i < ls->n; i++)
		lane_records[i] = ls->lane[i].records;
	bool failed = ls->failed;
	pthread_mutex_unlock(&ls->lock);
	/* A lane that failed on its last record: the mirror lacks it. */
	return failed ? fail_session(s, ls) : 0;
}

void lanes_bytes(const struct session *s, uint64_t *data, uint64_t *wire)
{
	const struct lanes *ls = s->lane_set;
	*data = *wire = 0;
	if (!ls)
		return;
	for (unsigned i = 1; i < ls->n; i++) {
		*data += atomic_load(&ls->lane[i].out.data_bytes);
		*wire += atomic_load(&ls->lane[i].out.wire_bytes);
	}
}

int lanes_check(struct session *s)
{
	struct lanes *ls = s->lane_set;
	if (!ls)
		return 0;
	struct pollfd p[FREP_MAX_LANES];
	unsigned lane_of[FREP_MAX_LANES], np = 0, closed = 0;
	pthread_mutex_lock(&ls->lock);
	bool failed = ls->failed;
	for (unsigned i = 1; i < ls->n && !failed; i++)
		if (ls->lane[i].state == LANE_JOINED) {
			lane_of[np] = i;
			p[np++] = (struct pollfd){ .fd = tls_fd(ls->lane[i].c), .events = POLLIN };
		}
	pthread_mutex_unlock(&ls->lock);
	/*
	 * The mirror sends nothing on a lane but ERROR or GOODBYE, and closes the
	 * lanes of a session it ends: a lane that polls readable (or hung up) is
	 * over. A raw poll: the lane's own thread may be inside TLS meanwhile.
	 */
	if (!failed && np && poll(p, np, 0) > 0)
		for (unsigned k = 0; k < np && !closed; k++)
			if (p[k].revents)
				closed = lane_of[k];
	if (!failed && !closed)
		return 0;
	/* The mirror says why on lane 0 too (LANE-9): its ERROR, severity and all, comes first. */
	if (s->c && tls_readable(s->c, LANE0_GRACE_MS) && session_drain(s) < 0)
		return -1;
	if (failed)
		return fail_session(s, ls);
	session_fail(s, ME_LINK_LOST, 0, "lane %u: the mirror closed it", closed);
	return -1;
}
