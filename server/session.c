/* Mirror session: one authenticated master connection, driven by the mirror state machine. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "authz.h"
#include "bitmap.h"
#include "crashpoint.h"
#include "events.h"
#include "frep/admin/v1/admin.pb-c.h"
#include "frame.h"
#include "frep/v1/frep.pb-c.h"
#include "fsm.h"
#include "lanes.h"
#include "log.h"
#include "promote.h"
#include "compress.h"
#include "registry.h"
#include "session.h"
#include "store.h"
#include "tls.h"
#include "util.h"

enum mirror_session_limits {
	HELLO_TIMEOUT_MS = 15000,
	POLL_MS = 250,			   /* how often a waiting session checks for shutdown */
	COPY_ACK_BYTES = 64 << 20,	   /* copied bytes between durable COPY_ACKs, */
	COPY_ACK_MS = 1000,		   /* or this long, on a slow link: each one is progress
					    * a crack on the master can no longer take back */
	TX_BATCH = 256,			   /* TXs journaled per fdatasync at most */
	/* Data a batch keeps in memory until applied: the reader's pool recycles a whole batch. */
	BATCH_MAX_BYTES = FRAME_POOL_BYTES,
	HOLD_MAX = 1024,		   /* TXs held back past a gap */
	HOLD_MAX_BYTES = 256 << 20,
	CHECKPOINT_MS = 1000,
	VERIFY_BUF = 1 << 20,		   /* a Verify's region is read and hashed in pieces of this */
	LINGER_MS = 2000,		   /* after an Error: how long the master may take to close */
};

/*
 * A TX with the data received for it (NULL for trim and zero), owned: held
 * past a gap until the gap is filled, or journaled and waiting to be applied.
 */
struct owned_tx {
	struct journal_rec r;
	void *data; /* a frame trailer taken from the reader, given back once done */
	size_t cap;
};

/* Everything here belongs to the session's thread. */
struct msession {
	struct mirror_server *srv;
	struct tls_conn *c;
	struct frame_writer out; /* on c: the version and compression WELCOME settled */
	struct frame_reader rd;
	struct mirror_fsm fsm;
	struct mirror_volume mv;
	bool have_volume;
	char volume[FREP_MAX_VOLUME_NAME + 1];
	uint64_t journal_size; /* from Hello, used at creation */
	uint8_t uuid[FREP_UUID_SIZE]; /* from Hello: pinned at creation */
	uint64_t generation;	      /* generation of the last TX journaled in order */
	uint64_t hello_generation;    /* the master's current generation */

	uint64_t expected;     /* next TXID to journal; 0 until START_COPY/START_SYNC */
	uint64_t acked;	       /* last TXID acknowledged to the master */
	uint64_t resend_asked; /* highest gap end already asked for, 0 if none */
	struct owned_tx held[HOLD_MAX];
	unsigned n_held;
	uint64_t held_bytes;
	/*
	 * Journaled but not applied: TXIDs applied_txid + 1 .. expected - 1, in
	 * order. They are applied from here once durable, never read back.
	 */
	struct owned_tx batch[TX_BATCH];
	unsigned n_batch;
	uint64_t batch_bytes;

	bool copy_done;
	uint64_t copy_tc;
	uint64_t copy_unsynced;
	uint64_t copy_through;
	uint64_t copy_acked_through; /* through of the last COPY_ACK this pass */
	uint64_t copy_acked_ms;	/* when the last COPY_ACK went, or the pass started */
	uint64_t last_checkpoint_ms;
	uint8_t *verify_buf;   /* VERIFY_BUF bytes, allocated at the first VERIFY */
	bool done;	       /* session over: close */
	/* What the admin API sees of this volume while the session holds it (registry.h). */
	struct mirror_live live;
	struct vol_status live_st;
	bool live_added;
	uint64_t copy_total; /* bytes of the current copy pass (StartCopy) */
	bool linger;	       /* ...after an Error, once the master stops sending (see linger()) */
	struct epoch_history hello_epochs; /* the master's (Hello.epoch, epoch_history) */
	/* Version 2 with several lanes: their set (lanes.h), and the START_COPYs so far (LANE-6). */
	struct mlanes *lanes;
	uint64_t passes;
	/* Error FENCED's fields (session_error sends them with that code). */
	uint64_t fence_epoch, fence_txid;
	int64_t fence_ms;
};

static const char *vol(const struct msession *s)
{
	return s->volume[0] ? s->volume : NULL;
}

/* Ends the session with an Error to the master; severe ones also move the FSM to ERROR. */
static void session_error(struct msession *s, uint32_t code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void session_error(struct msession *s, uint32_t code, const char *fmt, ...)
{
	char why[FREP_MAX_MESSAGE];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);

	/* While copying or sequencing the master streams without waiting for answers. */
	s->linger = s->fsm.state == MR_REPLICATE || s->fsm.state == MR_OUTOFSYNC ||
		    s->fsm.state == MR_INSYNC;
	bool severe = frep_error_is_severe(code);
	if (severe) {
		log_error(vol(s), "master %s (%s): %s: %s", tls_peer_cn(s->c), tls_peer_addr(s->c),
			  frep_error_name(code), why);
		mirror_fsm_feed(&s->fsm, MV_SEVERE, why);
	} else {
		log_warn(vol(s), "master %s (%s): %s: %s", tls_peer_cn(s->c), tls_peer_addr(s->c),
			 frep_error_name(code), why);
	}
	if (code == FREP_E_FENCED) {
		Frep__V1__Error e = FREP__V1__ERROR__INIT;
		e.code = code;
		e.severe = true;
		e.message = why;
		e.has_fenced_epoch = e.has_fenced_txid = e.has_fenced_unix_ms = true;
		e.fenced_epoch = s->fence_epoch;
		e.fenced_txid = s->fence_txid;
		e.fenced_unix_ms = (uint64_t)s->fence_ms;
		frame_send(&s->out, FREP_MSG_ERROR, &e.base, NULL, 0);
	} else {
		frame_send_error(&s->out, code, "%s", why);
	}
	s->done = true;
	struct status_error *e = &s->live_st.last_error;
	e->set = true;
	snprintf(e->code, sizeof(e->code), "%s", frep_error_name(code));
	snprintf(e->message, sizeof(e->message), "%s", why);
	e->time_unix_ms = wall_ms();
	events_publish(EVENT_ERROR, vol(s), 0, 0, "%s: %s", frep_error_name(code), why);
}

/* Copies the volume's status as this session holds it into the registry. */
static void publish(struct msession *s)
{
	if (!s->live_added)
		return;
	struct vol_status *v = &s->live_st;
	struct status_mirror *m = &v->mirror;
	if (!m->owner_identity[0] && s->mv.owner[0]) /* a new volume: pinned at MAKEPARTS */
		snprintf(m->owner_identity, sizeof(m->owner_identity), "%s", s->mv.owner);
	int state = events_mirror_state(s->fsm.state);
	if (state != v->state) {
		v->state = state;
		v->state_since_unix_ms = wall_ms();
	}
	/* Sequencing keeps write order: in sync, every applied prefix is consistent. */
	uint64_t ctxid = s->mv.consistent && s->mv.phase == FREP__V1__PHASE__PHASE_INSYNC
				 ? s->mv.applied_txid
				 : s->mv.consistent_txid;
	if (m->consistent != s->mv.consistent || m->consistent_txid != ctxid)
		m->consistent_unix_ms = s->mv.consistent ? wall_ms() : 0;
	m->consistent = s->mv.consistent;
	m->consistent_txid = ctxid;
	m->last_applied_txid = s->mv.applied_txid;
	m->journal_used_bytes = s->mv.j ? journal_used(s->mv.j) : 0;
	m->journal_size_bytes = s->mv.j ? journal_capacity(s->mv.j) : 0;
	m->volume_size_bytes = s->mv.vol_open ? s->mv.vol.size : 0;
	snprintf(m->preallocate, sizeof(m->preallocate), "%s", s->mv.sparse ? "sparse" : "full");
	m->epoch = s->mv.epochs.epoch;
	struct status_peer *peer = &m->connected_master;
	/* Every lane's: the compression ratio is the session's. */
	uint64_t data = 0, wire = 0;
	if (s->lanes)
		mlanes_bytes(s->lanes, &data, &wire);
	peer->data_bytes = data + s->rd.data_bytes;
	peer->wire_bytes = wire + s->rd.wire_bytes;
	peer->compression_ratio = peer->wire_bytes ? (double)peer->data_bytes / (double)peer->wire_bytes : 1;
	m->copy.active = (s->fsm.state == MR_REPLICATE || s->fsm.state == MR_OUTOFSYNC) &&
			 !s->copy_done;
	m->copy.done_bytes = s->copy_through;
	m->copy.total_bytes = s->copy_total;
	if (s->mv.snaps)
		snapset_status(s->mv.snaps, m);
	registry_update(&s->live, v);
}

/* The session holds the volume from HELLO on: the admin API sees it live. */
static void go_live(struct msession *s)
{
	struct vol_status *v = &s->live_st;
	struct status_peer *p = &v->mirror.connected_master;
	snprintf(v->name, sizeof(v->name), "%s", s->volume);
	v->role = FREP__ADMIN__V1__ROLE__MIRROR;
	v->state = events_mirror_state(s->fsm.state);
	v->state_since_unix_ms = wall_ms();
	snprintf(v->mirror.owner_identity, sizeof(v->mirror.owner_identity), "%s", s->mv.owner);
	p->connected = true;
	snprintf(p->address, sizeof(p->address), "%s", tls_peer_addr(s->c));
	snprintf(p->identity, sizeof(p->identity), "%s", tls_peer_cn(s->c));
	snprintf(p->cipher, sizeof(p->cipher), "%s", tls_cipher(s->c));
	p->compression_ratio = 1;
	registry_add(&s->live, v);
	s->live_added = true;
	publish(s);
}

#ifdef FREP_CONFORM_BREAK
/*
 * frep-server-broken only (a test build, never installed): FREP_BREAK names one
 * rule this mirror breaks on purpose, so that a test can show the conformance
 * suite catches exactly the cases of that rule (tests/conformance).
 */
static bool broken(const char *rule)
{
	const char *b = getenv("FREP_BREAK");
	return b && strcmp(b, rule) == 0;
}
#else
static inline bool broken(const char *rule)
{
	(void)rule;
	return false;
}
#endif

/* Feeds the event a message stands for; illegal ones end the session. */
static int feed(struct msession *s, enum mirror_event ev, unsigned type)
{
	if (mirror_fsm_feed(&s->fsm, ev, NULL) == 0)
		return 0;
	if (broken("illegal"))
		return -1; /* FSM-1 broken: the illegal message is dropped without a word */
	session_error(s, FREP_E_UNEXPECTED, "%s is illegal in state %s", frep_msg_name(type),
		      mirror_state_name(s->fsm.state));
	return -1;
}

static int send_msg(struct msession *s, unsigned type, const ProtobufCMessage *m)
{
	if (frame_send(&s->out, type, m, NULL, 0) == 0)
		return 0;
	if (errno == ETIMEDOUT)
		log_warn(vol(s), "master %s (%s) read nothing for %" PRIu64 " ms (--heartbeat-timeout) "
			 "while the mirror was sending %s: closing", tls_peer_cn(s->c),
			 tls_peer_addr(s->c), s->srv->heartbeat_timeout_ms, frep_msg_name(type));
	else
		log_warn(vol(s), "master %s: sending %s: %s", tls_peer_addr(s->c),
			 frep_msg_name(type), strerror(errno));
	s->done = true;
	return -1;
}

static bool range_ok(const struct msession *s, uint64_t off, uint64_t len)
{
	return off <= s->mv.vol.size && len <= s->mv.vol.size - off;
}

/*
 * With --allow, any listed identity may own a volume; without it, only the one
 * pinned at creation. The volume UUID must match either way.
 */
static bool owner_ok(struct msession *s, const Frep__V1__Hello *h)
{
	if (!s->mv.exists)
		return true;
	/* A demoted master's copy has no owner until the new primary's master pins it (FBK-1). */
	bool who_ok = s->srv->allow || !s->mv.owner[0] ? true
						       : strcmp(s->mv.owner, tls_peer_cn(s->c)) == 0;
	if (who_ok && memcmp(s->mv.uuid, h->volume_uuid.data, FREP_UUID_SIZE) == 0)
		return true;
	session_error(s, FREP_E_NAME_CLASH,
		      "volume %s belongs to master %s with another volume UUID or identity; "
		      "pick another name or remove %s/%s on the mirror",
		      h->volume, s->mv.owner, s->srv->data_dir, h->volume);
	return false;
}

/*
 * EPO-3, EPO-6: a promoted copy, or one of a later epoch than the master's,
 * fences the master; a copy of an earlier epoch has no history it can be
 * brought up to incrementally. false once the Error is sent.
 */
static bool epoch_ok(struct msession *s)
{
	const struct mirror_volume *mv = &s->mv;
	const struct epoch_history *h = &s->hello_epochs;
	char why[400];
	if (!mv->exists)
		return true;
	if (mv->promoted && h->epoch > mv->epochs.epoch) {
		/*
		 * EPO-7: this copy was a primary once, and another copy has been
		 * promoted past it since: it may hold writes of its own, so it is no
		 * mirror until demoted. Minor: the master retries until then.
		 */
		session_error(s, FREP_E_BUSY,
			      "this mirror's copy of %s was promoted at epoch %" PRIu64 " and the master "
			      "is at epoch %" PRIu64 ": a later promotion superseded it, and it may hold "
			      "writes of its own. Start its frep-client (--adopt %s) to have it fenced and "
			      "run frepctl demote %s there; this master then resends only what diverged",
			      mv->name, mv->epochs.epoch, h->epoch, mv->dir, mv->name);
		return false;
	}
	if (mv->promoted && h->epoch + 1 == mv->epochs.epoch) {
		store_describe_promotion(mv, why, sizeof(why));
		s->fence_epoch = mv->epochs.epoch;
		s->fence_txid = mv->promoted_txid;
		s->fence_ms = mv->promoted_ms;
		session_error(s, FREP_E_FENCED, "%s (this master is at epoch %" PRIu64 ")", why,
			      h->epoch);
		return false;
	}
	if (h->epoch < mv->epochs.epoch || mv->promoted) {
		uint64_t t = 0;
		bool known = epoch_end_of(&mv->epochs, h->epoch, &t);
		s->fence_epoch = h->epoch + 1;
		s->fence_txid = t;
		s->fence_ms = 0;
		if (known)
			session_error(s, FREP_E_FENCED,
				      "volume %s is at epoch %" PRIu64 " on this mirror; this master is at "
				      "epoch %" PRIu64 ", which ended after TXID %" PRIu64 " when another "
				      "copy was promoted: run frepctl demote %s on this master to make it "
				      "a mirror of the new primary", mv->name, mv->epochs.epoch, h->epoch,
				      t, mv->name);
		else
			session_error(s, FREP_E_FENCED,
				      "volume %s is at epoch %" PRIu64 " on this mirror; this master is at "
				      "epoch %" PRIu64 ", promoted past long ago: its copy must be "
				      "replaced (frepctl demote --force %s)", mv->name, mv->epochs.epoch,
				      h->epoch, mv->name);
		return false;
	}
	if (h->epoch > mv->epochs.epoch) {
		uint64_t t = 0;
		bool known = epoch_end_of(h, mv->epochs.epoch, &t);
		/* FBK-1: a demoted copy that left the master's history where the master says it did. */
		if (mv->diverged && (!mv->diverged_shared || (known && t == mv->diverged_txid)))
			return true;
		char after[64] = "";
		if (known)
			snprintf(after, sizeof(after), " after TXID %" PRIu64, t);
		session_error(s, FREP_E_DIVERGED,
			      "this mirror's copy of %s is at epoch %" PRIu64 " and the master at epoch "
			      "%" PRIu64 ": the master's copy was promoted from another one%s, so their "
			      "histories part; this copy cannot follow it incrementally (remove %s on "
			      "the mirror to copy the whole volume again)", mv->name, mv->epochs.epoch,
			      h->epoch, after, mv->dir);
		return false;
	}
	return true;
}

/* INIT: who is it, which volume, may it? */
static void on_hello(struct msession *s, Frep__V1__Hello *h)
{
	const char *who = tls_peer_cn(s->c);
	uint32_t code;
	char err[512];

	if (!volume_name_valid(h->volume)) {
		session_error(s, FREP_E_PROTOCOL,
			      "volume name \"%.64s\" is invalid: use 1-64 of [A-Za-z0-9._-], "
			      "not starting with '.'", h->volume);
		return;
	}
	snprintf(s->volume, sizeof(s->volume), "%s", h->volume);
	s->fsm.volume = s->volume;
	if (h->proto_min > FREP_PROTO_VERSION_MAX || h->proto_max < FREP_PROTO_VERSION ||
	    h->proto_min > h->proto_max) {
		session_error(s, FREP_E_VERSION, "master speaks versions %u..%u, mirror speaks %u..%u",
			      h->proto_min, h->proto_max, FREP_PROTO_VERSION, FREP_PROTO_VERSION_MAX);
		return;
	}
	/* HS-3: the highest version both speak. */
	unsigned version = h->proto_max < FREP_PROTO_VERSION_MAX ? h->proto_max
								 : FREP_PROTO_VERSION_MAX;
	if (h->volume_uuid.len != FREP_UUID_SIZE || h->session_id.len != FREP_SESSION_ID_SIZE ||
	    strlen(h->master_node) > FREP_MAX_NODE_NAME) {
		session_error(s, FREP_E_PROTOCOL, "HELLO with a malformed uuid, session id or node name");
		return;
	}
	if (h->lane != 0 && h->lane_count > 1) {
		/* A lane joining a session (LANE-5): its thread serves it, holding no volume. */
		s->done = true;
		mlanes_serve(s->srv, s->c, &s->rd, &s->out, h);
		return;
	}
	if (h->lane_count != 1 || h->lane != 0) {
		session_error(s, FREP_E_LANES, "lane %u of %u: a session's first connection is lane 0 "
			      "of 1 (LANE-1, LANE-2)", h->lane, h->lane_count);
		return;
	}
	if (version >= 2 && h->has_lanes_max && (h->lanes_max < 1 || h->lanes_max > FREP_MAX_LANES)) {
		session_error(s, FREP_E_LANES, "HELLO asks for %u lanes: 1..%u", h->lanes_max,
			      (unsigned)FREP_MAX_LANES);
		return;
	}
	if (epoch_from_wire(&s->hello_epochs, h->has_epoch ? h->epoch : 1, h->epoch_history,
			    h->n_epoch_history, err, sizeof(err)) < 0) {
		session_error(s, FREP_E_PROTOCOL, "HELLO with a malformed epoch history: %s", err);
		return;
	}
	if (!authz_allows(s->srv->allow, h->volume, who)) {
		session_error(s, FREP_E_UNAUTHORISED,
			      "master %s is not allowed for volume %s by the --allow file", who,
			      h->volume);
		return;
	}
	if (store_open(&s->mv, s->srv->data_dir, h->volume, &code, err, sizeof(err)) < 0) {
		session_error(s, code, "%s", err);
		return;
	}
	s->have_volume = true;
	/* Ownership first: a clash is severe even while the owner is connected (not BUSY). */
	if (!owner_ok(s, h) || !epoch_ok(s))
		return;
	if (store_attach(&s->mv, &code, err, sizeof(err)) < 0) {
		if (code == FREP_E_FENCED) /* promoted since */
			epoch_ok(s);
		else
			session_error(s, code, "%s", err);
		return;
	}
	if (!owner_ok(s, h) || !epoch_ok(s))
		return;
	if (!s->mv.exists)
		s->mv.epochs = s->hello_epochs; /* a new copy starts in the master's epoch */
	if (s->mv.exists && !s->mv.owner[0])
		snprintf(s->mv.owner, sizeof(s->mv.owner), "%s", who);
	s->mv.master_sync = h->has_sync_mode && h->sync_mode;
	/* A volume keeps the mode it was created with: its space is already laid out so. */
	if (!s->mv.exists)
		s->mv.sparse = s->srv->sparse;
	else if (s->mv.sparse != s->srv->sparse)
		log_info(vol(s), "volume was created with --preallocate=%s and keeps it "
			 "(this server's --preallocate=%s applies to new volumes)",
			 s->mv.sparse ? "sparse" : "full", s->srv->sparse ? "sparse" : "full");
	s->journal_size = h->journal_size;
	memcpy(s->uuid, h->volume_uuid.data, FREP_UUID_SIZE);
	s->hello_generation = h->generation;
	if (feed(s, MV_MSG_HELLO, FREP_MSG_HELLO) < 0)
		return;

	uint64_t durable = s->mv.exists ? journal_last_txid(s->mv.j) : 0;
	Frep__V1__Welcome w = FREP__V1__WELCOME__INIT;
	w.proto_version = version;
	unsigned comp = FREP_COMPRESS_NONE, lanes = 1;
	if (version >= 2) {
		comp = compress_choose(h->compression, h->n_compression);
		/* LANE-4: as many as asked, up to FREP_MAX_LANES (checked above). */
		lanes = h->has_lanes_max ? h->lanes_max : 1;
		w.has_compression = w.has_lanes = true;
		w.compression = comp;
		w.lanes = lanes;
	}
	w.known = s->mv.exists;
	w.durable_txid = durable;
	w.consistent = s->mv.consistent;
	w.consistent_txid = s->mv.consistent_txid;
	w.phase = s->mv.exists ? s->mv.phase : FREP__V1__PHASE__PHASE_NONE;
	bool copying = s->mv.exists && s->mv.copy_full &&
		       (s->mv.phase == FREP__V1__PHASE__PHASE_REPLICATE ||
			s->mv.phase == FREP__V1__PHASE__PHASE_OUTOFSYNC);
	w.copy_cursor = copying ? s->mv.copy_cursor : 0;
	w.has_copy_base = copying;
	w.copy_base = copying ? s->mv.copy_base : 0;
	w.has_verify = true;
	w.verify = true;
	w.has_epoch = true;
	w.epoch = s->mv.epochs.epoch;
	s->live_st.mirror.connected_master.protocol = version;
	s->live_st.mirror.connected_master.lanes = lanes;
	snprintf(s->live_st.mirror.connected_master.compression,
		 sizeof(s->live_st.mirror.connected_master.compression), "%s", compress_name(comp));
	/* Its lanes may join from the moment the master reads the WELCOME. */
	if (lanes > 1 && !(s->lanes = mlanes_new(s->srv, h, who, &w))) {
		session_error(s, FREP_E_INTERNAL, "out of memory for %u lanes", lanes);
		return;
	}
	go_live(s);
	char sid[2 * FREP_SESSION_ID_SIZE + 1];
	log_info(vol(s), "master %s (%s, node %s, generation %" PRIu64 ", protocol %u, compression %s, "
		 "%u lane%s, session %s) connected: known=%d durable_txid=%" PRIu64, who,
		 tls_peer_addr(s->c), h->master_node, h->generation, version, compress_name(comp), lanes,
		 lanes == 1 ? "" : "s", hex_encode(h->session_id.data, FREP_SESSION_ID_SIZE, sid),
		 w.known, durable);
	/* WELCOME goes as a version-1 frame; everything after it in the session's version. */
	if (send_msg(s, FREP_MSG_WELCOME, &w.base) < 0)
		return;
	if (frame_writer_set(&s->out, version, comp) < 0 || frame_reader_set(&s->rd, version, comp) < 0)
		session_error(s, FREP_E_INTERNAL, "out of memory");
}

/* MAKEPARTS: build the extents like the master's, or check the existing ones. */
static void on_extent_table(struct msession *s, Frep__V1__ExtentTable *t)
{
	char err[512];
	uint32_t code;
	bool created = false;
	uint64_t total = 0;

	if (s->fsm.state == MR_MAKEPARTS && s->lanes && !mlanes_ready(s->lanes, err, sizeof(err))) {
		session_error(s, FREP_E_LANES, "%s", err);
		return;
	}
	if (t->n_extent_size == 0 || t->n_extent_size > FREP_MAX_EXTENTS) {
		session_error(s, FREP_E_BAD_EXTENTS, "extent table malformed: %zu extents (1..%d allowed)",
			      t->n_extent_size, FREP_MAX_EXTENTS);
		return;
	}
	for (size_t i = 0; i < t->n_extent_size; i++) {
		uint64_t sz = t->extent_size[i];
		if (sz == 0 || sz % FREP_EXTENT_ALIGN) {
			session_error(s, FREP_E_BAD_EXTENTS,
				      "extent table malformed: extent %zu size %" PRIu64
				      " is not a non-zero multiple of 4096",
				      i, sz);
			return;
		}
		if (sz > UINT64_MAX - total) {
			session_error(s, FREP_E_BAD_EXTENTS,
				      "extent table malformed: the sizes overflow 64 bits at extent %zu "
				      "(%" PRIu64 " bytes after %" PRIu64 "): the volume size must fit in 64 bits",
				      i, sz, total);
			return;
		}
		total += sz;
	}
	if (s->mv.exists) {
		bool same = s->mv.vol.n == t->n_extent_size;
		for (unsigned i = 0; same && i < s->mv.vol.n; i++)
			same = s->mv.vol.ext[i].size == t->extent_size[i];
		if (!same) {
			session_error(s, FREP_E_BAD_EXTENTS,
				      "extent table does not match the mirror's %u extent(s) of %" PRIu64
				      " bytes in all",
				      s->mv.vol.n, s->mv.vol.size);
			return;
		}
	} else {
		/* Without allocated_bytes (an older master) the TXs' own allocation still guards. */
		if (store_create(&s->mv, tls_peer_cn(s->c), s->uuid, t->extent_size,
				 (unsigned)t->n_extent_size, s->journal_size,
				 t->has_allocated_bytes ? &t->allocated_bytes : NULL, &created, &code,
				 err, sizeof(err)) < 0) {
			session_error(s, code, "%s", err);
			return;
		}
	}
	if (feed(s, MV_MSG_EXTENT_TABLE, FREP_MSG_EXTENT_TABLE) < 0)
		return;
	log_info(vol(s), "extents %s: %zu extent(s), %" PRIu64 " bytes, %s",
		 created ? "created" : "validated", t->n_extent_size, total,
		 s->mv.sparse ? "sparse" : "space reserved");
	Frep__V1__PartsReady p = FREP__V1__PARTS_READY__INIT;
	p.created = created;
	p.volume_size = total;
	send_msg(s, FREP_MSG_PARTS_READY, &p.base);
}

static void give_back(struct msession *s, const struct owned_tx *t)
{
	frame_give_trailer(&s->rd, t->data, t->cap);
}

/* Releases the data of the batch: applied, or dropped with the journal it was in. */
static void batch_clear(struct msession *s)
{
	for (unsigned i = 0; i < s->n_batch; i++)
		give_back(s, &s->batch[i]);
	s->n_batch = 0;
	s->batch_bytes = 0;
}

/*
 * Before a pass overwrites a consistent mirror, its state is kept as a
 * snapshot until CONSISTENT, as DRBD's before-resync-target handler does by
 * hand: a resync that dies half-way still leaves a consistent image to read
 * or promote. A pass resumed after a crash finds it there already. Failing to
 * take it is logged, never fatal: replication never stops for a snapshot.
 */
static void keep_pre_resync(struct msession *s)
{
	char err[512];
	if (!s->mv.snaps || snapset_exists(s->mv.snaps, SNAP_PRE_RESYNC_NAME))
		return;
	if (snapset_create(s->mv.snaps, SNAP_PRE_RESYNC_NAME, SNAP_PRE_RESYNC, s->mv.applied_txid,
			   NULL, err, sizeof(err)) < 0)
		log_warn(vol(s), "no pre-resync snapshot: %s; the resync goes on without one", err);
}

/* At CONSISTENT the pre-resync snapshot has done its job. */
static void drop_pre_resync(struct msession *s)
{
	char err[512];
	if (s->mv.snaps && snapset_exists(s->mv.snaps, SNAP_PRE_RESYNC_NAME) &&
	    snapset_delete(s->mv.snaps, SNAP_PRE_RESYNC_NAME, err, sizeof(err)) < 0)
		log_warn(vol(s), "deleting the pre-resync snapshot: %s", err);
}

/*
 * FBK-3: where this copy changed after the history it shares with the
 * master: a demoted master's dirty bitmap, as runs, DIVERGENCE_RUNS a frame.
 * A copy that never left the master's history answers none.
 */
static void on_divergence_request(struct msession *s, Frep__V1__DivergenceRequest *q)
{
	enum { DIVERGENCE_RUNS = 4096 };
	uint64_t off[DIVERGENCE_RUNS], len[DIVERGENCE_RUNS];
	char path[4200], err[512];
	if (feed(s, MV_MSG_DIVERGENCE_REQUEST, FREP_MSG_DIVERGENCE_REQUEST) < 0)
		return;
	struct bitmap *bm = NULL;
	if (s->mv.diverged) {
		textf(path, sizeof(path), "%s/" STORE_DIVERGED, s->mv.dir);
		/* Its record of where gone (bitmap_open would make a clean one): every region. */
		bool lost = access(path, F_OK) < 0;
		bm = bitmap_open(path, s->mv.vol.size, BITMAP_DEFAULT_REGION, vol(s), err, sizeof(err));
		if (bm && lost) {
			log_warn(vol(s), "%s is missing: the whole copy counts as diverged", path);
			bitmap_set_all(bm);
		}
		if (!bm) {
			session_error(s, FREP_E_IO, "where this copy diverged: %s", err);
			return;
		}
	}
	uint64_t at = 0, start, end, runs = 0;
	bool more = bm != NULL;
	do {
		Frep__V1__Divergence d = FREP__V1__DIVERGENCE__INIT;
		size_t n = 0;
		while (more && n < DIVERGENCE_RUNS) {
			if (!bitmap_next_dirty(bm, at, &start, &end)) {
				more = false;
				break;
			}
			off[n] = start;
			len[n++] = end - start;
			at = end;
		}
		d.n_offset = d.n_length = n;
		d.offset = off;
		d.length = len;
		d.last = !more;
		runs += n;
		if (send_msg(s, FREP_MSG_DIVERGENCE, &d.base) < 0)
			break;
	} while (more);
	bitmap_close(bm);
	log_info(vol(s), "told the master where this copy changed after TXID %" PRIu64 ": %" PRIu64
		 " run(s)", q->since_txid, runs);
}

/*
 * SWO-2, SWO-3: a planned switchover. The master takes no more writes and
 * every one of them is here, acknowledged and applied: this copy becomes the
 * primary at exactly that TXID, and the session ends.
 */
static void on_switchover(struct msession *s, Frep__V1__Switchover *w)
{
	char err[512];
	if (feed(s, MV_MSG_SWITCHOVER, FREP_MSG_SWITCHOVER) < 0)
		return;
	if (!s->mv.consistent || s->acked != w->txid || s->mv.applied_txid != w->txid ||
	    s->n_batch || s->n_held) {
		session_error(s, FREP_E_PROTOCOL, "SWITCHOVER at TXID %" PRIu64 ", but this mirror "
			      "acknowledged TXID %" PRIu64 " and applied %" PRIu64 ": a switchover comes "
			      "after the last TX is acknowledged", w->txid, s->acked,
			      s->mv.applied_txid);
		return;
	}
	if (promote_blocked(&s->mv, err, sizeof(err))) {
		/* Minor: nothing is wrong with the replication; the master takes writes again. */
		session_error(s, FREP_E_BUSY, "switchover refused: %s", err);
		return;
	}
	if (store_checkpoint(&s->mv) < 0 ||
	    promote_at(&s->mv, w->txid, "switchover", false, err, sizeof(err)) < 0) {
		session_error(s, FREP_E_IO, "switchover at TXID %" PRIu64 ": %s", w->txid,
			      err[0] ? err : strerror(errno));
		return;
	}
	Frep__V1__SwitchoverDone d = FREP__V1__SWITCHOVER_DONE__INIT;
	d.epoch = s->mv.epochs.epoch;
	d.txid = w->txid;
	send_msg(s, FREP_MSG_SWITCHOVER_DONE, &d.base);
	log_warn(vol(s), "switchover: promoted at TXID %" PRIu64 ", epoch %" PRIu64 " begins; serve "
		 "it with frep-client --adopt %s, whose mirror is the old master's host", w->txid,
		 s->mv.epochs.epoch, s->mv.dir);
	events_publish(EVENT_STATE_CHANGE, vol(s), s->live_st.state, FREP__ADMIN__V1__STATE__PROMOTED,
		       "switchover at TXID %" PRIu64 ", epoch %" PRIu64, w->txid, s->mv.epochs.epoch);
	s->done = true;
}

static void on_start_copy(struct msession *s, Frep__V1__StartCopy *sc)
{
	enum mirror_event ev;
	if (sc->kind == FREP__V1__PHASE__PHASE_REPLICATE)
		ev = MV_MSG_START_REPLICATE;
	else if (sc->kind == FREP__V1__PHASE__PHASE_OUTOFSYNC)
		ev = MV_MSG_START_OUTOFSYNC;
	else {
		session_error(s, FREP_E_PROTOCOL, "START_COPY of kind %d", sc->kind);
		return;
	}
	uint32_t prev_phase = s->mv.phase;
	/*
	 * Checked before the transition (MSG-8) wherever the volume is open;
	 * before that (INIT, MAKEPARTS) the FSM refuses START_COPY. The next
	 * TXID, base + 1, must be one a journal can hold (spec Limits), and a
	 * resumed pass may skip only what this mirror holds durably from the
	 * same pass.
	 */
	bool open = s->fsm.state != MR_INIT && s->fsm.state != MR_MAKEPARTS;
	if (open && sc->base_txid >= JOURNAL_MAX_TXID - 1) {
		session_error(s, FREP_E_PROTOCOL,
			      "START_COPY base TXID %" PRIu64 " is out of range: TXIDs stay below 2^62",
			      sc->base_txid);
		return;
	}
	if (open && sc->start_offset &&
	    (!sc->full || prev_phase != (uint32_t)sc->kind || !s->mv.copy_full ||
	     sc->start_offset > s->mv.copy_cursor || sc->base_txid != s->mv.copy_base ||
	     sc->start_offset > s->mv.vol.size)) {
		session_error(s, FREP_E_PROTOCOL,
			      "START_COPY resuming at %" PRIu64 " (base TXID %" PRIu64
			      ") but this mirror holds a full pass only below %" PRIu64 " (base %" PRIu64 ")",
			      sc->start_offset, sc->base_txid, s->mv.copy_full ? s->mv.copy_cursor : 0,
			      s->mv.copy_base);
		return;
	}
	if (feed(s, ev, FREP_MSG_START_COPY) < 0)
		return;
	/* LANE-6, LANE-7: pass n begins; records of the passes before it are ignored from now on. */
	s->passes++;
	if (s->lanes)
		mlanes_pass_begin(s->lanes, s->passes);
	/*
	 * Inconsistent from the first copied byte on: say so durably before writing
	 * any. A mirror in sync was consistent at every TXID it applied: the last
	 * one is what it keeps as its last consistent TXID (COPY-2).
	 */
	if (s->mv.consistent && s->mv.phase == FREP__V1__PHASE__PHASE_INSYNC) {
		s->mv.consistent_txid = s->mv.applied_txid;
		/* The journal is about to go: what it held must be in the extents, durably. */
		if (store_checkpoint(&s->mv) < 0) {
			session_error(s, FREP_E_IO, "cannot start the copy: %s", strerror(errno));
			return;
		}
		keep_pre_resync(s);
	}
	/*
	 * FBK-4: a copy of an earlier epoch joins the master's history now. The
	 * master holds, durably, where this copy changed (it asked before this
	 * pass): the copy's own record of it goes once that is saved.
	 */
	bool joined = s->mv.diverged || s->mv.epochs.epoch != s->hello_epochs.epoch;
	s->mv.epochs = s->hello_epochs;
	s->mv.diverged = false;
	s->mv.phase = sc->kind;
	s->mv.consistent = false;
	s->mv.copy_full = sc->full;
	s->mv.copy_base = sc->base_txid;
	s->mv.copy_cursor = sc->start_offset;
	store_publish_consistency(&s->mv);
	if (store_save(&s->mv) < 0 || journal_reset(s->mv.j, sc->base_txid) < 0) {
		session_error(s, FREP_E_IO, "cannot start the copy: %s", strerror(errno));
		return;
	}
	if (joined) {
		char path[4200];
		textf(path, sizeof(path), "%s/" STORE_DIVERGED, s->mv.dir);
		if (unlink(path) < 0 && errno != ENOENT)
			log_warn(vol(s), "removing %s: %s", path, strerror(errno));
		log_info(vol(s), "the copy joins the master's history (epoch %" PRIu64 "): this pass "
			 "copies what either side changed since they parted", s->mv.epochs.epoch);
	}
	batch_clear(s); /* its TXs left with the journal: never acknowledged, never applied */
	s->mv.applied_txid = sc->base_txid;
	s->expected = sc->base_txid + 1;
	s->acked = sc->base_txid;
	s->resend_asked = 0;
	s->copy_done = false;
	s->copy_unsynced = 0;
	s->copy_through = sc->start_offset;
	s->copy_total = sc->total_bytes;
	s->copy_acked_through = sc->start_offset;
	s->copy_acked_ms = now_ms();
	/* Its start is durable: the lanes may write its records now (COPY-2, COPY-14). */
	if (s->lanes)
		mlanes_pass_open(s->lanes, &s->mv, sc->start_offset);
	log_info(vol(s), "%s %s pass %s: %" PRIu64 " bytes, base TXID %" PRIu64,
		 mirror_state_name(s->fsm.state), sc->full ? "full" : "dirty",
		 sc->start_offset ? "resumed" : "started", sc->total_bytes, sc->base_txid);
	if (sc->start_offset)
		log_info(vol(s), "copy resumes at offset %" PRIu64, sc->start_offset);
}

static void on_start_sync(struct msession *s, Frep__V1__StartSync *ss)
{
	/*
	 * Legal only in READY, where the volume and its journal exist: there it
	 * is checked before the transition (MSG-8); elsewhere the FSM refuses it.
	 */
	uint64_t durable = s->fsm.state == MR_READY ? journal_last_txid(s->mv.j) : 0;
	if (s->fsm.state == MR_READY && (!s->mv.consistent || ss->from_txid != durable)) {
		session_error(s, FREP_E_PROTOCOL,
			      "START_SYNC from TXID %" PRIu64 " but the mirror is %s at TXID %" PRIu64,
			      ss->from_txid, s->mv.consistent ? "consistent" : "inconsistent", durable);
		return;
	}
	if (feed(s, MV_MSG_START_SYNC, FREP_MSG_START_SYNC) < 0)
		return;
	s->expected = durable + 1;
	s->acked = durable;
	log_info(vol(s), "sequencing resumes after TXID %" PRIu64, durable);
}

static int copy_ack(struct msession *s, uint64_t through)
{
	if (volume_sync(&s->mv.vol) < 0) {
		session_error(s, FREP_E_IO, "fdatasync of extents: %s", strerror(errno));
		return -1;
	}
	if (s->lanes)
		mlanes_synced(s->lanes, s->copy_unsynced);
	s->copy_unsynced = 0;
	s->copy_acked_ms = now_ms();
	s->copy_acked_through = through;
	if (s->mv.copy_full && through > s->mv.copy_cursor) {
		/* The resume point of a full pass: everything below is durable. */
		s->mv.copy_cursor = through;
		if (store_save(&s->mv) < 0) {
			session_error(s, FREP_E_IO, "saving the copy cursor: %s", strerror(errno));
			return -1;
		}
	}
	Frep__V1__CopyAck a = FREP__V1__COPY_ACK__INIT;
	a.through = through;
	return send_msg(s, FREP_MSG_COPY_ACK, &a.base);
}

/*
 * LANE-9: a lane failed or was lost. Its Error, if it sent one, goes on lane
 * 0 too; the session ends either way. true if it did.
 */
static bool lane_failed(struct msession *s)
{
	char why[FREP_MAX_MESSAGE];
	uint32_t code;
	if (!mlanes_failed(s->lanes, &code, why, sizeof(why)))
		return false;
	/* The lane logged it; lane 0 says what it does about it. */
	if (code)
		session_error(s, code, "%s", why);
	else
		log_info(vol(s), "master %s: %s: the session ends with its lanes", tls_peer_addr(s->c),
			 why);
	s->done = true;
	return true;
}

/*
 * A lanes call on lane 0 failed: its Error; or a lane's failure, which is
 * why it did; or the session just ends (a wait ran out).
 */
static void lanes_trouble(struct msession *s, uint32_t code, const char *why)
{
	if (code) {
		session_error(s, code, "%s", why);
	} else if (!lane_failed(s)) {
		log_warn(vol(s), "master %s: %s: closing", tls_peer_addr(s->c), why);
		s->done = true;
	}
}

/* A copy record on lane 0 of a session of several lanes: numbered, in its turn (lanes.h). */
static void lane0_record(struct msession *s, const struct mlanes_rec *r)
{
	char why[FREP_MAX_MESSAGE];
	uint32_t code;
	if (mlanes_record(s->lanes, 0, r, s->srv->heartbeat_timeout_ms, &code, why, sizeof(why)) < 0)
		lanes_trouble(s, code, why);
}

static void on_copy_data(struct msession *s, Frep__V1__CopyData *d, const struct frame *f)
{
	uint32_t len = f->hdr.trailer_len;
	if (feed(s, MV_MSG_COPY_DATA, FREP_MSG_COPY_DATA) < 0)
		return;
	if (s->lanes && !s->copy_done) {
		struct mlanes_rec r = { FREP_MSG_COPY_DATA, d->has_pass && d->has_seq, d->pass, d->seq,
					d->offset, len, f->trailer, d->data_crc };
		lane0_record(s, &r);
		return;
	}
	if (s->copy_done || !range_ok(s, d->offset, len) || len == 0) {
		session_error(s, s->copy_done ? FREP_E_UNEXPECTED : FREP_E_RANGE,
			      "COPY_DATA of %u bytes at offset %" PRIu64 " %s", len, d->offset,
			      s->copy_done ? "after COPY_DONE" : "outside the volume");
		return;
	}
	if (frep_crc32c(f->trailer, len) != d->data_crc) {
		session_error(s, FREP_E_CHECKSUM, "COPY_DATA at offset %" PRIu64 ": CRC32C mismatch",
			      d->offset);
		return;
	}
	if (store_copy_write(&s->mv, JOP_WRITE, d->offset, len, f->trailer) < 0) {
		session_error(s, errno == ENOSPC ? FREP_E_NO_SPACE : FREP_E_IO,
			      "writing %u bytes at offset %" PRIu64 ": %s", len, d->offset,
			      strerror(errno));
		return;
	}
	frep_crash_point("copy");
	s->copy_through = d->offset + len;
	s->copy_unsynced += len;
	if (s->copy_unsynced >= COPY_ACK_BYTES || now_ms() - s->copy_acked_ms >= COPY_ACK_MS)
		copy_ack(s, s->copy_through);
}

static void on_copy_hole(struct msession *s, Frep__V1__CopyHole *h)
{
	if (feed(s, MV_MSG_COPY_HOLE, FREP_MSG_COPY_HOLE) < 0)
		return;
	if (s->lanes && !s->copy_done) {
		struct mlanes_rec r = { FREP_MSG_COPY_HOLE, h->has_pass && h->has_seq, h->pass, h->seq,
					h->offset, h->length, NULL, 0 };
		lane0_record(s, &r);
		return;
	}
	if (s->copy_done || !range_ok(s, h->offset, h->length) || h->length == 0) {
		session_error(s, s->copy_done ? FREP_E_UNEXPECTED : FREP_E_RANGE,
			      "COPY_HOLE of %" PRIu64 " bytes at offset %" PRIu64 " %s", h->length,
			      h->offset, s->copy_done ? "after COPY_DONE" : "outside the volume");
		return;
	}
	if (store_copy_write(&s->mv, JOP_TRIM, h->offset, h->length, NULL) < 0) {
		session_error(s, FREP_E_IO, "punching %" PRIu64 " bytes at %" PRIu64 ": %s", h->length,
			      h->offset, strerror(errno));
		return;
	}
	s->copy_through = h->offset + h->length;
	/* Holes move the resume cursor too (COPY-8): a sparse volume's copy keeps its progress. */
	if (now_ms() - s->copy_acked_ms >= COPY_ACK_MS)
		copy_ack(s, s->copy_through);
}

/*
 * COPY-8's clock: once a second while the pass has moved on, whether or not
 * more records come, so that a master that pauses between records (a slow
 * link, --max-rate, a crack about to happen) still sees its progress.
 */
static void copy_ack_if_due(struct msession *s)
{
	if ((s->fsm.state != MR_REPLICATE && s->fsm.state != MR_OUTOFSYNC) || s->copy_done)
		return;
	/*
	 * LANE-8: with lanes, the low-water mark of what they wrote, taken
	 * before copy_ack's fdatasync, so that all it covers was written first.
	 */
	if (s->lanes)
		s->copy_through = mlanes_through(s->lanes, &s->copy_unsynced);
	if (s->copy_through > s->copy_acked_through &&
	    (now_ms() - s->copy_acked_ms >= COPY_ACK_MS || s->copy_unsynced >= COPY_ACK_BYTES))
		copy_ack(s, s->copy_through);
}

/* Copy complete and every TXID up to t_c applied durably: the mirror is consistent. */
static void check_consistent(struct msession *s)
{
	if (!s->copy_done || s->mv.applied_txid < s->copy_tc ||
	    (s->fsm.state != MR_REPLICATE && s->fsm.state != MR_OUTOFSYNC))
		return;
	if (volume_sync(&s->mv.vol) < 0) {
		session_error(s, FREP_E_IO, "fdatasync of extents: %s", strerror(errno));
		return;
	}
	s->mv.phase = FREP__V1__PHASE__PHASE_INSYNC;
	s->mv.consistent = true;
	s->mv.consistent_txid = s->mv.applied_txid;
	s->mv.copy_cursor = s->mv.copy_base = 0;
	s->mv.copy_full = false;
	if (store_save(&s->mv) < 0) {
		session_error(s, FREP_E_IO, "saving metadata: %s", strerror(errno));
		return;
	}
	store_publish_consistency(&s->mv);
	mirror_fsm_feed(&s->fsm, MV_APPLIED_CONSISTENT, NULL);
	log_info(vol(s), "mirror consistent at TXID %" PRIu64, s->mv.consistent_txid);
	drop_pre_resync(s);
	Frep__V1__Consistent c = FREP__V1__CONSISTENT__INIT;
	c.txid = s->mv.consistent_txid;
	send_msg(s, FREP_MSG_CONSISTENT, &c.base);
}

static void on_copy_done(struct msession *s, Frep__V1__CopyDone *d)
{
	if (feed(s, MV_MSG_COPY_DONE, FREP_MSG_COPY_DONE) < 0)
		return;
	if (s->copy_done || d->last_txid < s->mv.applied_txid) {
		session_error(s, FREP_E_PROTOCOL, "COPY_DONE at TXID %" PRIu64 " below the copy base %" PRIu64,
			      d->last_txid, s->mv.applied_txid);
		return;
	}
	/*
	 * LANE-7: no TX of the pass applies before every record the counts name
	 * is written (and, below, durable): a record late on one lane must never
	 * overwrite a newer write. Lane 0 reads nothing more meanwhile.
	 */
	char why[FREP_MAX_MESSAGE];
	uint32_t code;
	if (s->lanes && mlanes_done(s->lanes, d->lane_records, d->n_lane_records,
				    s->srv->heartbeat_timeout_ms, &code, why, sizeof(why)) < 0) {
		lanes_trouble(s, code, why);
		return;
	}
	if (copy_ack(s, s->mv.vol.size) < 0)
		return;
	s->copy_done = true;
	s->copy_tc = d->last_txid;
	log_info(vol(s), "copy done (%" PRIu64 " data bytes); applying up to TXID %" PRIu64,
		 d->copied_bytes, d->last_txid);
	check_consistent(s);
}

static void commit_batch(struct msession *s);

/*
 * Journals the next TX in order and adds it to the batch; takes t's data, and
 * gives it back on failure. A batch at its bound in TXs or bytes is committed
 * at once, so the data held in memory stays bounded. 0, or -1: session over.
 */
static int journal_tx(struct msession *s, const struct owned_tx *t)
{
	const struct journal_rec *r = &t->r;
	const void *data = t->data;

	/* SEQ-11, checked here so that it holds for held-back TXs too. */
	if (r->generation < s->generation) {
		session_error(s, FREP_E_PROTOCOL, "TX %" PRIu64 " from generation %" PRIu64
			      " after a TX of generation %" PRIu64 ": generations never go down",
			      r->txid, r->generation, s->generation);
		give_back(s, t);
		return -1;
	}
	/*
	 * Journals are made at least MIRROR_JOURNAL_MIN, which holds any legal TX;
	 * one created smaller by an older frep cannot, and retrying would not help.
	 */
	if (data && r->length > journal_max_record_data(s->mv.j)) {
		session_error(s, FREP_E_NO_SPACE, "TX %" PRIu64 " carries %" PRIu64 " bytes, more than "
			      "this volume's journal can hold in one record (%" PRIu64 "); remove the "
			      "volume's directory on the mirror so that it is created again with a "
			      "larger journal", r->txid, r->length, journal_max_record_data(s->mv.j));
		give_back(s, t);
		return -1;
	}
	if (journal_append(s->mv.j, r, data) < 0) {
		/* Full: commit and apply what the batch holds, checkpoint, reuse the space. */
		if (errno != ENOSPC)
			goto fail;
		commit_batch(s);
		if (s->done || store_checkpoint(&s->mv) < 0 || journal_append(s->mv.j, r, data) < 0)
			goto fail;
	}
	s->expected = r->txid + 1;
	s->generation = r->generation;
	s->batch[s->n_batch++] = *t;
	s->batch_bytes += data ? r->length : 0;
	if (s->n_batch == TX_BATCH || s->batch_bytes >= BATCH_MAX_BYTES)
		commit_batch(s);
	return s->done ? -1 : 0;
fail:
	if (!s->done)
		session_error(s, errno == ENOSPC ? FREP_E_NO_SPACE : FREP_E_IO,
			      "journaling TXID %" PRIu64 ": %s", r->txid, strerror(errno));
	give_back(s, t);
	return -1;
}

/* Journals held-back TXs the gap has now reached. */
static int drain_held(struct msession *s)
{
	bool progress = true;
	while (progress && s->n_held) {
		progress = false;
		for (unsigned i = 0; i < s->n_held; i++) {
			if (s->held[i].r.txid > s->expected)
				continue;
			struct owned_tx h = s->held[i];
			s->held[i] = s->held[--s->n_held];
			s->held_bytes -= h.r.op == JOP_WRITE ? h.r.length : 0;
			if (h.r.txid < s->expected)
				give_back(s, &h); /* a duplicate of one journaled meanwhile */
			else if (journal_tx(s, &h) < 0)
				return -1;
			progress = true;
			break;
		}
	}
	return 0;
}

static void on_tx(struct msession *s, Frep__V1__Tx *tx, const struct frame *f)
{
	uint32_t len = f->hdr.trailer_len;
	if (feed(s, MV_MSG_TX, FREP_MSG_TX) < 0)
		return;
	if ((s->fsm.state == MR_REPLICATE || s->fsm.state == MR_OUTOFSYNC) && !s->copy_done) {
		session_error(s, FREP_E_UNEXPECTED, "TX %" PRIu64 " before COPY_DONE", tx->txid);
		return;
	}
	bool is_write = tx->op == FREP__V1__TX_OP__TX_WRITE;
	if (tx->op < FREP__V1__TX_OP__TX_WRITE || tx->op > FREP__V1__TX_OP__TX_ZERO ||
	    (is_write ? tx->length != len : len != 0) || tx->length == 0 ||
	    tx->length > UINT32_MAX) {
		session_error(s, FREP_E_PROTOCOL, "TX %" PRIu64 ": op %d, length %" PRIu64
			      " and %u data bytes do not agree", tx->txid, tx->op, tx->length, len);
		return;
	}
	if (!range_ok(s, tx->offset, tx->length)) {
		session_error(s, FREP_E_RANGE, "TX %" PRIu64 ": %" PRIu64 " bytes at offset %" PRIu64
			      " leave the %" PRIu64 "-byte volume", tx->txid, tx->length, tx->offset,
			      s->mv.vol.size);
		return;
	}
	if (is_write && frep_crc32c(f->trailer, len) != tx->data_crc) {
		session_error(s, FREP_E_CHECKSUM, "TX %" PRIu64 ": CRC32C mismatch", tx->txid);
		return;
	}
	struct journal_rec r = {
		.generation = tx->generation,
		.txid = tx->txid,
		.offset = tx->offset,
		.length = tx->length,
		.op = (uint32_t)tx->op,
		.data_crc = is_write ? tx->data_crc : 0,
	};
	if (tx->txid < s->expected)
		return; /* a resend of something already journaled: the next ack covers it */
	if (tx->txid >= JOURNAL_MAX_TXID) {
		session_error(s, FREP_E_PROTOCOL, "TX %" PRIu64 " is out of range: TXIDs stay below 2^62",
			      tx->txid);
		return;
	}
	/* Lower is legal: a TX committed by an older generation is resent after a master restart. */
	if (tx->generation > s->hello_generation) {
		session_error(s, FREP_E_PROTOCOL, "TX %" PRIu64 " from generation %" PRIu64
			      ", newer than the session's generation %" PRIu64,
			      tx->txid, tx->generation, s->hello_generation);
		return;
	}
	if (tx->txid > s->expected && broken("seq-gap")) {
		/* SEQ-6 broken: the gap is skipped, as if its TXs had never existed. */
		commit_batch(s);
		if (s->done || journal_reset(s->mv.j, tx->txid - 1) < 0)
			return;
		s->mv.applied_txid = s->acked = tx->txid - 1;
		s->expected = tx->txid;
	}
	if (tx->txid > s->expected) {
		/* Past a gap: hold it and ask for the gap, once per gap. */
		if (s->n_held < HOLD_MAX && s->held_bytes + len <= HOLD_MAX_BYTES) {
			struct owned_tx *h = &s->held[s->n_held++];
			h->r = r;
			h->cap = 0;
			h->data = frame_take_trailer(&s->rd, f, &h->cap);
			s->held_bytes += len;
		}
		if (s->resend_asked < s->expected) {
			Frep__V1__Resend rs = FREP__V1__RESEND__INIT;
			rs.from_txid = s->expected;
			rs.to_txid = tx->txid - 1;
			log_info(vol(s), "TX %" PRIu64 " arrived past a gap: asking for %" PRIu64 "..%" PRIu64,
				 tx->txid, rs.from_txid, rs.to_txid);
			s->resend_asked = rs.to_txid;
			send_msg(s, FREP_MSG_RESEND, &rs.base);
		}
		return;
	}
	/* The data CRC was checked above, on arrival: it is kept, never read back. */
	struct owned_tx t = { .r = r };
	t.data = frame_take_trailer(&s->rd, f, &t.cap);
	if (journal_tx(s, &t) == 0)
		drain_held(s);
}

/*
 * DUR-15: a sparse mirror allocates the batch's ranges before acknowledging
 * them, so that no acknowledged TX can fail to apply for lack of space. On
 * ENOSPC the batch, never acknowledged, leaves the journal too: the mirror
 * keeps exactly what it acknowledged, and the master, which keeps the rest
 * journaled (DUR-6), sends it again once there is room. 0, or -1: session over.
 */
static int reserve_batch(struct msession *s)
{
	for (unsigned i = 0; i < s->n_batch; i++) {
		const struct journal_rec r = s->batch[i].r;
		if (store_reserve(&s->mv, &r) == 0)
			continue;
		int e = errno;
		bool full = e == ENOSPC || e == EDQUOT;
		/* Everything up to acked is applied: make it durable, then drop the rest. */
		if (store_checkpoint(&s->mv) == 0 && journal_reset(s->mv.j, s->acked) == 0)
			batch_clear(s);
		s->expected = s->acked + 1;
		session_error(s, full ? FREP_E_NO_SPACE : FREP_E_IO,
			      "allocating %" PRIu64 " bytes at offset %" PRIu64 " for TX %" PRIu64
			      " before acknowledging it: %s%s", r.length, r.offset, r.txid,
			      strerror(e), full ? "; free space in the mirror's data dir or move it to a "
			      "bigger disk, then restart the master: it still holds the TXs not "
			      "acknowledged" : "");
		return -1;
	}
	return 0;
}

/*
 * After a batch: make the journal durable, acknowledge, then apply in TXID
 * order from the data received. Applying only durable TXs keeps the extents a
 * prefix of the journal; the journal is read back only by a replay at attach.
 */
static void commit_batch(struct msession *s)
{
	if (s->expected == 0)
		return; /* not sequencing yet */
	uint64_t last = s->expected - 1;
	if (last <= s->acked)
		return;
	if (reserve_batch(s) < 0)
		return;
	/* DUR-7 broken: acknowledged before it is durable. */
	if (!broken("unsynced-ack") && journal_sync(s->mv.j) < 0) {
		session_error(s, FREP_E_IO, "journal fdatasync: %s", strerror(errno));
		return;
	}
	frep_crash_point("journal-synced");
	Frep__V1__TxAck a = FREP__V1__TX_ACK__INIT;
	a.txid = last;
	if (send_msg(s, FREP_MSG_TX_ACK, &a.base) < 0)
		return;
	s->acked = last;
	/* The recovery point a promotion reports (saved with the metadata). */
	s->mv.last_ack_txid = last;
	s->mv.last_ack_ms = wall_ms();
	frep_crash_point("ack-sent");

	/* Anything else would leave a hole in the prefix; the journal keeps every TX for a replay. */
	if (s->n_batch != last - s->mv.applied_txid || s->batch[0].r.txid != s->mv.applied_txid + 1) {
		session_error(s, FREP_E_INTERNAL, "the batch holds %u TX(s) from TXID %" PRIu64
			      " but TXIDs %" PRIu64 "..%" PRIu64 " are to be applied",
			      s->n_batch, s->n_batch ? s->batch[0].r.txid : 0, s->mv.applied_txid + 1, last);
		return;
	}
	const struct journal_rec *recs[TX_BATCH];
	for (unsigned i = 0; i < s->n_batch; i++)
		recs[i] = &s->batch[i].r;
	store_prepare_batch(&s->mv, recs, s->n_batch);
	for (unsigned i = 0; i < s->n_batch; i++) {
		const struct owned_tx *b = &s->batch[i];
		if (store_apply(&s->mv, &b->r, b->data) < 0) {
			session_error(s, errno == ENOSPC ? FREP_E_NO_SPACE : FREP_E_IO,
				      "applying TX %" PRIu64 ": %s", b->r.txid, strerror(errno));
			return;
		}
		frep_crash_point("apply");
	}
	batch_clear(s);
	check_consistent(s);
}

/*
 * Online verify (VFY-3..6): hashes a region as of exactly the TXID the master
 * names. Every TX up to it came before this frame on the lane, so committing
 * the batch applies them all; a gap (SEQ-6) can leave the mirror short of it,
 * or a go-back-N resend past it, which is answered NOT_AT_TXID rather than a
 * hash at another TXID that would read as a mismatch.
 */
static void on_verify(struct msession *s, Frep__V1__Verify *v)
{
	if (feed(s, MV_MSG_VERIFY, FREP_MSG_VERIFY) < 0)
		return;
	if (v->hash.len != FREP_VERIFY_HASH_SIZE || v->length == 0 ||
	    v->length > FREP_MAX_VERIFY_LEN || v->txid >= JOURNAL_MAX_TXID) {
		session_error(s, FREP_E_PROTOCOL, "VERIFY %" PRIu64 ": a %zu-byte hash, %" PRIu64
			      " bytes at TXID %" PRIu64 ": the hash is 16 bytes, a region 1..%u bytes",
			      v->verify_id, v->hash.len, v->length, v->txid, FREP_MAX_VERIFY_LEN);
		return;
	}
	if (!range_ok(s, v->offset, v->length)) {
		session_error(s, FREP_E_RANGE, "VERIFY %" PRIu64 ": %" PRIu64 " bytes at offset %" PRIu64
			      " leave the %" PRIu64 "-byte volume", v->verify_id, v->length, v->offset,
			      s->mv.vol.size);
		return;
	}
	/* The TXs up to txid precede the VERIFY on the lane (VFY-3): none may be missing yet. */
	uint64_t seen = s->expected ? s->expected - 1 : 0;
	for (unsigned i = 0; i < s->n_held; i++)
		if (s->held[i].r.txid > seen)
			seen = s->held[i].r.txid;
	if (v->txid > seen) {
		session_error(s, FREP_E_PROTOCOL, "VERIFY %" PRIu64 " at TXID %" PRIu64 " came before that "
			      "TX (last received: %" PRIu64 ")", v->verify_id, v->txid, seen);
		return;
	}
	commit_batch(s);
	if (s->done)
		return;
	Frep__V1__VerifyResult r = FREP__V1__VERIFY_RESULT__INIT;
	r.verify_id = v->verify_id;
	r.offset = v->offset;
	r.txid = v->txid;
	uint8_t hash[FREP_VERIFY_HASH_SIZE];
	if (s->mv.applied_txid != v->txid) {
		log_info(vol(s), "verify %" PRIu64 ": region at %" PRIu64 " asked at TXID %" PRIu64
			 " while TXID %" PRIu64 " is applied: not hashed", v->verify_id, v->offset,
			 v->txid, s->mv.applied_txid);
		r.status = FREP__V1__VERIFY_STATUS__VERIFY_NOT_AT_TXID;
	} else {
		if (!s->verify_buf && !(s->verify_buf = malloc(VERIFY_BUF))) {
			session_error(s, FREP_E_INTERNAL, "VERIFY: out of memory");
			return;
		}
		if (volume_hash(&s->mv.vol, v->offset, v->length, s->verify_buf, VERIFY_BUF, hash) < 0) {
			session_error(s, FREP_E_IO, "VERIFY %" PRIu64 ": reading %" PRIu64 " bytes at %" PRIu64
				      ": %s", v->verify_id, v->length, v->offset, strerror(errno));
			return;
		}
		if (memcmp(hash, v->hash.data, sizeof(hash)) != 0)
			log_warn(vol(s), "verify %" PRIu64 ": region of %" PRIu64 " bytes at offset %" PRIu64
				 " differs from the master's at TXID %" PRIu64, v->verify_id, v->length,
				 v->offset, v->txid);
		r.status = FREP__V1__VERIFY_STATUS__VERIFY_HASHED;
		r.has_hash = true;
		r.hash.data = hash;
		r.hash.len = sizeof(hash);
	}
	send_msg(s, FREP_MSG_VERIFY_RESULT, &r.base);
}

static void dispatch(struct msession *s, struct frame *f)
{
	switch (f->hdr.type) {
	case FREP_MSG_HELLO:
		if (s->fsm.state != MR_INIT) {
			feed(s, MV_MSG_HELLO, f->hdr.type);
			return;
		}
		on_hello(s, (Frep__V1__Hello *)f->msg);
		return;
	case FREP_MSG_EXTENT_TABLE:
		if (s->fsm.state != MR_MAKEPARTS) {
			feed(s, MV_MSG_EXTENT_TABLE, f->hdr.type);
			return;
		}
		on_extent_table(s, (Frep__V1__ExtentTable *)f->msg);
		return;
	case FREP_MSG_START_COPY:
		on_start_copy(s, (Frep__V1__StartCopy *)f->msg);
		return;
	case FREP_MSG_DIVERGENCE_REQUEST:
		on_divergence_request(s, (Frep__V1__DivergenceRequest *)f->msg);
		return;
	case FREP_MSG_SWITCHOVER:
		on_switchover(s, (Frep__V1__Switchover *)f->msg);
		return;
	case FREP_MSG_START_SYNC:
		on_start_sync(s, (Frep__V1__StartSync *)f->msg);
		return;
	case FREP_MSG_COPY_DATA:
		on_copy_data(s, (Frep__V1__CopyData *)f->msg, f);
		return;
	case FREP_MSG_COPY_HOLE:
		on_copy_hole(s, (Frep__V1__CopyHole *)f->msg);
		return;
	case FREP_MSG_COPY_DONE:
		on_copy_done(s, (Frep__V1__CopyDone *)f->msg);
		return;
	case FREP_MSG_TX:
		on_tx(s, (Frep__V1__Tx *)f->msg, f);
		return;
	case FREP_MSG_VERIFY:
		on_verify(s, (Frep__V1__Verify *)f->msg);
		return;
	case FREP_MSG_HEARTBEAT:
		if (feed(s, MV_MSG_HEARTBEAT, f->hdr.type) == 0) {
			Frep__V1__Heartbeat hb = *(Frep__V1__Heartbeat *)f->msg;
			hb.txid = s->acked;
			send_msg(s, FREP_MSG_HEARTBEAT, &hb.base);
		}
		return;
	case FREP_MSG_PAUSE:
		feed(s, MV_MSG_PAUSE, f->hdr.type);
		return;
	case FREP_MSG_RESUME:
		feed(s, MV_MSG_RESUME, f->hdr.type);
		return;
	case FREP_MSG_GOODBYE:
		log_info(vol(s), "master %s said goodbye: %s", tls_peer_addr(s->c),
			 ((Frep__V1__Goodbye *)f->msg)->reason);
		s->done = true;
		return;
	case FREP_MSG_ERROR: {
		Frep__V1__Error *e = (Frep__V1__Error *)f->msg;
		log_warn(vol(s), "master %s reported %s: %s", tls_peer_addr(s->c),
			 frep_error_name(e->code), e->message);
		if (e->severe || frep_error_is_severe(e->code))
			mirror_fsm_feed(&s->fsm, MV_SEVERE, e->message);
		s->done = true;
		return;
	}
	default:
		if (broken("illegal"))
			return; /* MSG-6 broken */
		session_error(s, FREP_E_UNEXPECTED, "%s is not a message a master sends",
			      frep_msg_name(f->hdr.type));
		return;
	}
}

/*
 * A forced promotion (frepctl promote --force) takes the volume from its
 * connected master: what the mirror holds is made durable first, so the
 * promotion's TXID is the last one acknowledged or later, then FENCED.
 */
static void fence_now(struct msession *s, const struct fence_order *o)
{
	if (o->code != FREP_E_FENCED) {
		session_error(s, o->code, "%s", o->message);
		return;
	}
	bool durable = s->have_volume && s->mv.j && journal_sync(s->mv.j) == 0;
	if (s->have_volume && s->mv.j && !durable)
		log_error(vol(s), "journal fdatasync before fencing: %s", strerror(errno));
	s->fence_epoch = o->epoch;
	/* Only what is durable here is promoted: without the sync, what was acknowledged. */
	s->fence_txid = o->txid ? o->txid : durable ? journal_last_txid(s->mv.j) : s->acked;
	s->fence_ms = o->unix_ms;
	session_error(s, FREP_E_FENCED, "%s", o->message);
}

/*
 * After an Error, reads and drops what the master still sends until it closes
 * (bounded): closing with its TXs unread would reset the connection, and the
 * master could lose the Error, its reason, before reading it.
 */
static void linger(struct msession *s)
{
	uint64_t end = now_ms() + LINGER_MS;
	struct frame f;
	uint32_t wire_err;
	char why[256];

	tls_set_read_timeout(s->c, LINGER_MS);
	while (now_ms() < end && tls_readable(s->c, POLL_MS) &&
	       frame_recv(s->c, &s->rd, &f, &wire_err, why, sizeof(why)) == FRAME_OK)
		;
}

/* Reads one frame; false when the session is over. */
static bool read_frame(struct msession *s, struct frame *f)
{
	uint32_t wire_err;
	char why[256];
	enum frame_status st = frame_recv(s->c, &s->rd, f, &wire_err, why, sizeof(why));
	if (st == FRAME_OK)
		return true;
	if (st == FRAME_EOF)
		log_info(vol(s), "master %s closed the connection", tls_peer_addr(s->c));
	else if (wire_err)
		session_error(s, wire_err, "%s", why);
	else
		log_warn(vol(s), "master %s: %s", tls_peer_addr(s->c), why);
	s->done = true;
	return false;
}

void mirror_session_run(struct mirror_server *srv, struct tls_conn *c)
{
	struct msession *s = calloc(1, sizeof(*s));
	if (!s) {
		tls_close(c);
		return;
	}
	s->srv = srv;
	s->c = c;
	s->mv.lock_fd = -1;
	frame_reader_init(&s->rd);
	frame_writer_init(&s->out, c);
	mirror_fsm_init(&s->fsm, NULL);

	uint64_t last_frame_ms = now_ms();
	tls_set_read_timeout(c, HELLO_TIMEOUT_MS);
	/*
	 * A master that stops reading is as gone as a silent one: without this
	 * limit a full socket buffer would block the session in a send for good,
	 * past the silence check and past shutdown.
	 */
	tls_set_write_timeout(c, (int)srv->heartbeat_timeout_ms);
	while (!s->done) {
		struct frame f;
		struct fence_order fo;
		if (s->live_added && registry_fence_taken(&s->live, &fo)) {
			fence_now(s, &fo);
			break;
		}
		if (atomic_load(&srv->stopping)) {
			Frep__V1__Goodbye g = FREP__V1__GOODBYE__INIT;
			g.reason = "mirror shutting down";
			frame_send(&s->out, FREP_MSG_GOODBYE, &g.base, NULL, 0);
			break;
		}
		if (s->lanes && lane_failed(s))
			break;
		int wait_ms = s->fsm.state == MR_INIT ? HELLO_TIMEOUT_MS : POLL_MS;
		if (s->lanes ? !mlanes_wait(s->lanes, c, wait_ms) : !tls_readable(c, wait_ms)) {
			if (s->fsm.state == MR_INIT) {
				log_warn(NULL, "peer %s sent no HELLO within %d ms", tls_peer_addr(c),
					 HELLO_TIMEOUT_MS);
				break;
			}
			if (!s->done && s->have_volume)
				copy_ack_if_due(s);
			publish(s);
			if (now_ms() - last_frame_ms > srv->heartbeat_timeout_ms) {
				log_warn(vol(s), "master %s silent for %" PRIu64 " ms (--heartbeat-timeout): closing",
					 tls_peer_addr(c), now_ms() - last_frame_ms);
				break;
			}
			continue;
		}
		/* A batch: everything already readable, then one fdatasync and one ack. */
		for (unsigned n = 0; n < TX_BATCH && !s->done; n++) {
			if (!read_frame(s, &f))
				break;
			dispatch(s, &f);
			if (!tls_readable(c, 0))
				break;
		}
		last_frame_ms = now_ms();
		if (!s->done && s->have_volume && s->mv.j)
			commit_batch(s);
		if (!s->done && s->have_volume)
			copy_ack_if_due(s);
		/* unsynced-ack: no checkpoint either, which would make the journal durable after all. */
		if (!s->done && s->have_volume && s->mv.exists && !broken("unsynced-ack") &&
		    last_frame_ms - s->last_checkpoint_ms >= CHECKPOINT_MS) {
			s->last_checkpoint_ms = last_frame_ms;
			if (store_checkpoint(&s->mv) < 0)
				session_error(s, FREP_E_IO, "checkpoint failed: %s", strerror(errno));
		}
		publish(s);
	}
	/* Before the volume closes: from now on no lane writes to it, and every lane ends. */
	mlanes_end(s->lanes);
	s->lanes = NULL;
	if (s->live_added)
		registry_remove(&s->live);
	for (unsigned i = 0; i < s->n_held; i++)
		give_back(s, &s->held[i]);
	batch_clear(s);
	free(s->verify_buf);
	if (s->have_volume)
		store_close(&s->mv);
	/* Watch (and systemd's STATUS) see the volume left without its master. */
	if (s->live_added)
		events_publish(EVENT_STATE_CHANGE, s->volume, s->live_st.state,
			       FREP__ADMIN__V1__STATE__DETACHED, "the master's session ended");
	/* The volume first: a master reconnecting meanwhile does not find it BUSY. */
	if (s->linger)
		linger(s);
	frame_reader_free(&s->rd);
	frame_writer_free(&s->out);
	tls_close(c);
	free(s);
}
