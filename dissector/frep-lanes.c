/*
 * Connections, sessions and lanes (spec "Lanes", NEG-*, FRAME-3).
 *
 * Each TLS connection (one TCP conversation) is one lane of one session. Its
 * HELLO names the session (session_id) and the lane; its WELCOME settles
 * what every later frame of the connection must be: the version in the
 * header, the compression of trailers, and, on lane 0, the session's lanes.
 * Lane 0's HELLO opens a session; a joining lane's HELLO names it again:
 *
 *   lane 0:  HELLO(session S, lane 0) WELCOME(lanes 3) ... START_COPY ... COPY_DONE(lane_records)
 *   lane 1:  HELLO(session S, lane 1 of 3) WELCOME ... COPY_DATA(pass, seq) ...
 *   lane 2:  HELLO(session S, lane 2 of 3) WELCOME ... COPY_HOLE(pass, seq) ...
 *
 * so every frame of every lane gets its session and lane, and the rules that
 * span lanes are checked here: who may join (LANE-1, LANE-5), what a joining
 * lane carries (LANE-6), pass and seq on every record (LANE-6), the records
 * of each lane against COPY_DONE.lane_records (LANE-7), and WELCOME against
 * the offer of its HELLO (HS-3, NEG-3, LANE-4).
 *
 * As in frep-links.c, the state moves only on the first pass, in frame order;
 * each frep frame's findings are kept with its packet, so every pass shows
 * the same.
 */
#include "frep-lanes.h"

#include <epan/expert.h>
#include <epan/proto_data.h>

#include "wire.h"

enum {
	/*
	 * Per-frame records are kept under RECORD_KEY + rank, above the ranks
	 * frep-links.c keys its own by: fewer than 2^16 frep frames end in one
	 * packet (each is at least 16 bytes).
	 */
	RECORD_KEY = 1u << 20,
};

/* One finding of the first pass, shown as expert info on every pass. */
struct finding {
	expert_field *ei;
	const char *text;
};

struct lane_session;

/* One TLS connection: one lane. File scope. */
struct lane_conn {
	conversation_t *conv;
	guint32 frames;			/* frep frames seen so far */
	struct frep_lane_frame now;	/* what it has negotiated so far */
	address master;			/* the HELLO's sender */
	guint32 master_port;
	guint64 offer_min, offer_max;	/* its HELLO's proto_min..proto_max */
	guint64 lanes_max;		/* its HELLO's lanes_max (default 1) */
	wmem_array_t *offer;		/* its HELLO's compression offer, guint64 each */
	struct lane_session *session;	/* NULL until a HELLO names it */
	guint32 lane;
};

/* Copy records of one pass, per lane. File scope. */
struct pass {
	guint64 seen[FREP_MAX_LANES];	 /* copy records seen on each lane */
	guint32 done_frame;		 /* its COPY_DONE, 0 before */
	unsigned n_declared;		 /* COPY_DONE.lane_records */
	guint64 declared[FREP_MAX_LANES];
	gboolean checked;		 /* a CONSISTENT after COPY_DONE checked the counts */
};

/* One session: lane 0's connection and the lanes that joined it. File scope. */
struct lane_session {
	guint8 id[FREP_SESSION_ID_SIZE];
	guint32 opened_in;		/* lane 0's HELLO; 0 if lane 0 is not in the capture */
	struct lane_conn *lane[FREP_MAX_LANES];
	guint32 lane_hello[FREP_MAX_LANES]; /* each lane's HELLO, 0 if not seen */
	/* From lane 0's HELLO: what a joining lane must repeat (LANE-1, LANE-5). */
	const char *volume;
	const guint8 *uuid;
	guint32 uuid_len;
	guint64 generation;
	wmem_array_t *offer;
	/* From lane 0's WELCOME. */
	guint32 welcome_frame;		/* 0 before */
	guint64 lanes;			/* Welcome.lanes (1 until then) */
	guint64 compression;
	guint64 pass;			/* START_COPYs lane 0 sent: the current pass (LANE-6) */
	wmem_map_t *passes;		/* pass (guint64 *) -> struct pass */
};

/* What the first pass found about one frep frame. File scope. */
struct record {
	struct frep_lane_frame before;
	gboolean moved;		  /* the first pass moved the state on by this frame */
	struct lane_session *s;	  /* its session, NULL if none is known */
	guint32 lane;
	guint32 opened_in;	  /* lane 0's HELLO; 0 on that HELLO itself */
	gboolean opens;		  /* it is lane 0's HELLO: it links to the lanes that join */
	wmem_array_t *findings;	  /* struct finding */
};

static int proto_frep = -1;
static int hf_session = -1;
static int hf_lane = -1;
static int hf_opened_in = -1;
static int hf_lane_in = -1;
static expert_field ei_reused = EI_INIT;
static expert_field ei_join = EI_INIT;
static expert_field ei_unexpected = EI_INIT;
static expert_field ei_no_seq = EI_INIT;
static expert_field ei_records = EI_INIT;
static expert_field ei_choice = EI_INIT;

/* conv_index + 1 -> struct lane_conn; session_id in hex -> the latest struct lane_session. */
static wmem_map_t *conns;
static wmem_map_t *sessions;

void frep_lanes_register(int proto)
{
	static hf_register_info hf[] = {
		{ &hf_session,
		  { "Session", "frep.session", FT_BYTES, BASE_NONE, NULL, 0x0,
		    "Hello.session_id of the connection: every lane of a session has it", HFILL } },
		{ &hf_lane,
		  { "Lane", "frep.lane", FT_UINT32, BASE_DEC, NULL, 0x0,
		    "Hello.lane of the connection: 0 is the control lane", HFILL } },
		{ &hf_opened_in,
		  { "Session opened in", "frep.session.opened_in", FT_FRAMENUM, BASE_NONE,
		    FRAMENUM_TYPE(FT_FRAMENUM_NONE), 0x0,
		    "The HELLO of lane 0 that opened this frame's session", HFILL } },
		{ &hf_lane_in,
		  { "Lane joined in", "frep.session.lane_in", FT_FRAMENUM, BASE_NONE,
		    FRAMENUM_TYPE(FT_FRAMENUM_NONE), 0x0,
		    "The HELLO of a lane that joined the session this HELLO opened (LANE-4)", HFILL } },
	};
	static ei_register_info ei[] = {
		{ &ei_reused,
		  { "frep.session.reused", PI_PROTOCOL, PI_WARN,
		    "session_id of an earlier session: each session has a fresh one (LANE-3)",
		    EXPFILL } },
		{ &ei_join,
		  { "frep.lane.join_bad", PI_PROTOCOL, PI_ERROR,
		    "A joining lane that does not match its session (LANE-1, LANE-5)", EXPFILL } },
		{ &ei_unexpected,
		  { "frep.lane.unexpected", PI_PROTOCOL, PI_ERROR,
		    "Message type a joining lane does not carry (LANE-6)", EXPFILL } },
		{ &ei_no_seq,
		  { "frep.lane.no_seq", PI_PROTOCOL, PI_ERROR,
		    "Copy record without pass and seq in a session of several lanes (LANE-6)",
		    EXPFILL } },
		{ &ei_records,
		  { "frep.lane.records", PI_PROTOCOL, PI_ERROR,
		    "Copy records on a lane disagree with COPY_DONE.lane_records (LANE-7)", EXPFILL } },
		{ &ei_choice,
		  { "frep.neg.bad_choice", PI_PROTOCOL, PI_ERROR,
		    "WELCOME chose what its HELLO did not offer (HS-3, NEG-3, LANE-4)", EXPFILL } },
	};

	proto_frep = proto;
	proto_register_field_array(proto, hf, array_length(hf));
	expert_register_field_array(expert_register_protocol(proto), ei, array_length(ei));
	conns = wmem_map_new_autoreset(wmem_epan_scope(), wmem_file_scope(), g_direct_hash,
				       g_direct_equal);
	sessions = wmem_map_new_autoreset(wmem_epan_scope(), wmem_file_scope(), g_str_hash,
					  g_str_equal);
}

static void G_GNUC_PRINTF(3, 4) finding(struct record *r, expert_field *ei, const char *fmt, ...)
{
	struct finding f = { ei, NULL };
	va_list ap;

	va_start(ap, fmt);
	f.text = wmem_strdup_vprintf(wmem_file_scope(), fmt, ap);
	va_end(ap);
	if (!r->findings)
		r->findings = wmem_array_new(wmem_file_scope(), sizeof(f));
	wmem_array_append_one(r->findings, f);
}

static struct lane_conn *conn_get(packet_info *pinfo)
{
	conversation_t *conv = find_or_create_conversation(pinfo);
	gpointer key = GUINT_TO_POINTER(conv->conv_index + 1);
	struct lane_conn *c = wmem_map_lookup(conns, key);

	if (c)
		return c;
	c = wmem_new0(wmem_file_scope(), struct lane_conn);
	c->conv = conv;
	c->now.compression = FREP_COMPRESSION_UNKNOWN;
	wmem_map_insert(conns, key, c);
	return c;
}

const struct frep_lane_frame *frep_lanes_frame(packet_info *pinfo, unsigned rank)
{
	static const struct frep_lane_frame unknown = { 0, FREP_COMPRESSION_UNKNOWN, 0, 0 };
	struct record *r = p_get_proto_data(wmem_file_scope(), pinfo, proto_frep, RECORD_KEY + rank);

	if (r)
		return &r->before;
	if (PINFO_FD_VISITED(pinfo))
		return &unknown;
	r = wmem_new0(wmem_file_scope(), struct record);
	r->before = conn_get(pinfo)->now;
	p_add_proto_data(wmem_file_scope(), pinfo, proto_frep, RECORD_KEY + rank, r);
	return &r->before;
}

conversation_t *frep_lanes_copy_conversation(packet_info *pinfo)
{
	struct lane_conn *c = conn_get(pinfo);

	if (c->session && c->lane > 0 && c->session->lane[0])
		return c->session->lane[0]->conv;
	return c->conv;
}

static wmem_array_t *repeated_copy(const struct frep_body *b, unsigned field)
{
	wmem_array_t *a = wmem_array_new(wmem_file_scope(), sizeof(guint64));

	for (unsigned i = 0; i < b->n_repeated[field]; i++)
		wmem_array_append_one(a, frep_body_value(b, field, i)->v);
	return a;
}

static gboolean offered(wmem_array_t *offer, guint64 v)
{
	for (guint i = 0; offer && i < wmem_array_get_count(offer); i++)
		if (*(guint64 *)wmem_array_index(offer, i) == v)
			return TRUE;
	return FALSE;
}

static gboolean same_offer(wmem_array_t *a, wmem_array_t *b)
{
	guint n = wmem_array_get_count(a);

	if (n != wmem_array_get_count(b))
		return FALSE;
	for (guint i = 0; i < n; i++)
		if (*(guint64 *)wmem_array_index(a, i) != *(guint64 *)wmem_array_index(b, i))
			return FALSE;
	return TRUE;
}

static struct pass *pass_get(struct lane_session *s, guint64 n)
{
	struct pass *p = wmem_map_lookup(s->passes, &n);
	guint64 *key;

	if (p)
		return p;
	p = wmem_new0(wmem_file_scope(), struct pass);
	key = wmem_new(wmem_file_scope(), guint64);
	*key = n;
	wmem_map_insert(s->passes, key, p);
	return p;
}

static struct lane_session *session_new(const guint8 *id, const char *hex)
{
	struct lane_session *s = wmem_new0(wmem_file_scope(), struct lane_session);

	memcpy(s->id, id, FREP_SESSION_ID_SIZE);
	s->lanes = 1;
	s->passes = wmem_map_new(wmem_file_scope(), g_int64_hash, g_int64_equal);
	wmem_map_insert(sessions, wmem_strdup(wmem_file_scope(), hex), s);
	return s;
}

/* A joining lane's HELLO against its session (LANE-1, LANE-5). */
static void check_join(struct lane_session *s, struct record *r, const struct frep_body *b,
		       guint32 lane, wmem_array_t *offer)
{
	enum { PROTO_MIN = 1, PROTO_MAX = 2, VOLUME = 4, UUID = 5, GENERATION = 6, LANE_COUNT = 9 };

	if (b->u[PROTO_MIN] != 2 || b->u[PROTO_MAX] != 2)
		finding(r, &ei_join, "Lane %u offers versions %" PRIu64 "..%" PRIu64 ": a joining lane "
			"offers exactly version 2 (LANE-5)", lane, b->u[PROTO_MIN], b->u[PROTO_MAX]);
	if (s->lane[lane])
		finding(r, &ei_join, "Lane %u already joined this session in frame %u (LANE-5)", lane,
			s->lane_hello[lane]);
	if (!s->opened_in)
		return; /* lane 0 is not in the capture: nothing to compare with */
	if (g_strcmp0(b->s[VOLUME], s->volume) || b->u[GENERATION] != s->generation ||
	    b->len[UUID] != s->uuid_len ||
	    (s->uuid_len && memcmp(b->bytes[UUID], s->uuid, s->uuid_len)))
		finding(r, &ei_join, "Lane %u names another volume, volume_uuid or generation than "
			"lane 0's HELLO in frame %u (LANE-1)", lane, s->opened_in);
	if (!same_offer(offer, s->offer))
		finding(r, &ei_join, "Lane %u offers another compression than lane 0's HELLO in frame "
			"%u (LANE-5)", lane, s->opened_in);
	if (!s->welcome_frame)
		finding(r, &ei_join, "Lane %u joins before lane 0's WELCOME granted any lane (LANE-4)",
			lane);
	else if (b->u[LANE_COUNT] != s->lanes || lane >= s->lanes)
		finding(r, &ei_join, "Lane %u of %" PRIu64 ", but lane 0's WELCOME in frame %u granted "
			"%" PRIu64 " lanes (LANE-1, LANE-5)", lane, b->u[LANE_COUNT],
			s->welcome_frame, s->lanes);
}

/* A connection's first frame, HELLO: its session and lane. */
static void on_hello(struct lane_conn *c, packet_info *pinfo, struct record *r,
		     const struct frep_body *b)
{
	enum { PROTO_MIN = 1, PROTO_MAX = 2, VOLUME = 4, UUID = 5, GENERATION = 6, SESSION = 7,
	       LANE = 8, COMPRESSION = 16, LANES_MAX = 17 };
	char hex[2 * FREP_SESSION_ID_SIZE + 1];
	struct lane_session *s;
	guint32 lane;

	c->now.version = FREP_PROTO_VERSION;
	c->now.hello = pinfo->num;
	copy_address_wmem(wmem_file_scope(), &c->master, &pinfo->src);
	c->master_port = pinfo->srcport;
	c->offer_min = b->u[PROTO_MIN];
	c->offer_max = b->u[PROTO_MAX];
	c->lanes_max = frep_body_has(b, LANES_MAX) ? b->u[LANES_MAX] : 1;
	c->offer = repeated_copy(b, COMPRESSION);
	/* A malformed session_id or lane is flagged by frep-checks.c; it names no session. */
	if (b->len[SESSION] != FREP_SESSION_ID_SIZE || b->u[LANE] >= FREP_MAX_LANES)
		return;
	lane = (guint32)b->u[LANE];
	for (unsigned i = 0; i < FREP_SESSION_ID_SIZE; i++)
		g_snprintf(hex + 2 * i, 3, "%02x", b->bytes[SESSION][i]);
	s = wmem_map_lookup(sessions, hex);
	if (lane == 0) {
		if (s && s->opened_in)
			finding(r, &ei_reused, "session_id %s also opened the session in frame %u: "
				"each session has a fresh one (LANE-3)", hex, s->opened_in);
		s = session_new(b->bytes[SESSION], hex);
		s->opened_in = pinfo->num;
		s->volume = b->s[VOLUME] ? wmem_strdup(wmem_file_scope(), b->s[VOLUME]) : NULL;
		s->uuid_len = b->len[UUID];
		s->uuid = b->len[UUID] ? wmem_memdup(wmem_file_scope(), b->bytes[UUID],
						     b->len[UUID]) : NULL;
		s->generation = b->u[GENERATION];
		s->offer = c->offer;
		r->opens = TRUE;
	} else if (!s) {
		s = session_new(b->bytes[SESSION], hex);
	} else {
		check_join(s, r, b, lane, c->offer);
	}
	if (!s->lane[lane]) {
		s->lane[lane] = c;
		s->lane_hello[lane] = pinfo->num;
	}
	c->session = s;
	c->lane = lane;
}

/* WELCOME: what the connection's later frames must be (FRAME-3), against the offer (NEG-3). */
static void on_welcome(struct lane_conn *c, packet_info *pinfo, struct record *r,
		       const struct frep_body *b)
{
	enum { PROTO_VERSION = 1, COMPRESSION = 11, LANES = 12 };
	struct lane_session *s = c->session;
	guint64 version = b->u[PROTO_VERSION];
	guint64 comp = version >= 2 && frep_body_has(b, COMPRESSION) ? b->u[COMPRESSION] : 0;
	guint64 lanes = version >= 2 && frep_body_has(b, LANES) ? b->u[LANES] : 1;

	c->now.version = (guint8)MIN(version, G_MAXUINT8);
	c->now.compression = (int)MIN(comp, G_MAXINT8);
	c->now.welcome = pinfo->num;
	if (version < c->offer_min || version > c->offer_max)
		finding(r, &ei_choice, "proto_version %" PRIu64 " is outside the HELLO's offer %" PRIu64
			"..%" PRIu64 " (HS-3)", version, c->offer_min, c->offer_max);
	if (comp && !offered(c->offer, comp))
		finding(r, &ei_choice, "compression %" PRIu64 " was not in the HELLO's offer (NEG-3)",
			comp);
	if (!s)
		return;
	if (c->lane == 0) {
		if (lanes < 1 || lanes > c->lanes_max)
			finding(r, &ei_choice, "lanes %" PRIu64 ": 1..the HELLO's lanes_max %" PRIu64
				" (LANE-4)", lanes, c->lanes_max);
		s->welcome_frame = pinfo->num;
		s->lanes = lanes;
		s->compression = comp;
	} else if (s->welcome_frame &&
		   (version != 2 || comp != s->compression || lanes != s->lanes)) {
		finding(r, &ei_join, "WELCOME of lane %u has proto_version %" PRIu64 ", compression %"
			PRIu64 ", lanes %" PRIu64 "; lane 0's WELCOME in frame %u has 2, %" PRIu64 ", %"
			PRIu64 " (LANE-5)", c->lane, version, comp, lanes, s->welcome_frame,
			s->compression, s->lanes);
	}
}

/* LANE-6: a joining lane carries copy records from the master, and nothing but its WELCOME back. */
static gboolean joining_lane_carries(unsigned type, gboolean from_master)
{
	if (type == FREP_MSG_ERROR || type == FREP_MSG_GOODBYE)
		return TRUE;
	if (from_master)
		return type == FREP_MSG_HELLO || type == FREP_MSG_COPY_DATA ||
		       type == FREP_MSG_COPY_HOLE;
	return type == FREP_MSG_WELCOME;
}

/* COPY_DATA, COPY_HOLE on any lane: pass and seq (LANE-6), counted per lane for LANE-7. */
static void on_copy_record(struct lane_conn *c, struct record *r, unsigned type,
			   const struct frep_body *b)
{
	struct lane_session *s = c->session;
	unsigned pass_field = type == FREP_MSG_COPY_DATA ? 4 : 3, seq_field = pass_field + 1;
	const char *name = frep_msg_name(type);
	guint64 n = frep_body_has(b, pass_field) ? b->u[pass_field] : s->pass;
	struct pass *p;

	if (s->lanes > 1 && (!frep_body_has(b, pass_field) || !frep_body_has(b, seq_field)))
		finding(r, &ei_no_seq, "%s without %s in a session of %" PRIu64 " lanes: every copy "
			"record carries pass and seq (LANE-6)", name,
			frep_body_has(b, pass_field) ? "seq" : frep_body_has(b, seq_field) ? "pass" :
			"pass and seq", s->lanes);
	else if ((frep_body_has(b, pass_field) && n == 0) ||
		 (frep_body_has(b, seq_field) && b->u[seq_field] == 0))
		finding(r, &ei_no_seq, "%s with pass %" PRIu64 ", seq %" PRIu64 ": both count from 1 "
			"(LANE-6)", name, n, b->u[seq_field]);
	p = pass_get(s, n);
	p->seen[c->lane]++;
	if (p->done_frame && c->lane < p->n_declared && p->seen[c->lane] > p->declared[c->lane])
		finding(r, &ei_records, "%s number %" PRIu64 " of pass %" PRIu64 " on lane %u: "
			"COPY_DONE in frame %u declared %" PRIu64 " for this lane (LANE-7)", name,
			p->seen[c->lane], n, c->lane, p->done_frame, p->declared[c->lane]);
}

/* COPY_DONE on lane 0: lane_records, one per lane, none below what each lane sent (LANE-7). */
static void on_copy_done(struct lane_session *s, packet_info *pinfo, struct record *r,
			 const struct frep_body *b)
{
	enum { LANE_RECORDS = 3 };
	struct pass *p = pass_get(s, s->pass);
	unsigned n = b->n_repeated[LANE_RECORDS];

	p->done_frame = pinfo->num;
	p->n_declared = MIN(n, FREP_MAX_LANES);
	for (unsigned i = 0; i < p->n_declared; i++)
		p->declared[i] = frep_body_value(b, LANE_RECORDS, i)->v;
	if (n && n != s->lanes)
		finding(r, &ei_records, "%u lane_records in a session of %" PRIu64 " lanes: one per "
			"lane (LANE-7)", n, s->lanes);
	else if (!n && s->lanes > 1)
		finding(r, &ei_records, "No lane_records in a session of %" PRIu64 " lanes (LANE-7)",
			s->lanes);
	for (unsigned i = 0; i < p->n_declared; i++)
		if (p->seen[i] > p->declared[i])
			finding(r, &ei_records, "Lane %u carried %" PRIu64 " copy records of pass %" PRIu64
				", COPY_DONE declares %" PRIu64 " (LANE-7)", i, p->seen[i], s->pass,
				p->declared[i]);
}

/*
 * CONSISTENT after COPY_DONE on lane 0: the mirror has every record the counts
 * name (LANE-7), and so does the capture, since each was sent before the
 * mirror could read it.
 */
static void on_consistent(struct lane_session *s, struct record *r)
{
	struct pass *p = pass_get(s, s->pass);

	if (!p->done_frame || p->checked)
		return;
	p->checked = TRUE;
	for (unsigned i = 0; i < p->n_declared; i++)
		if (p->seen[i] < p->declared[i])
			finding(r, &ei_records, "CONSISTENT, but lane %u carried %" PRIu64 " of the %" PRIu64
				" copy records of pass %" PRIu64 " that COPY_DONE in frame %u declared "
				"(LANE-7)", i, p->seen[i], p->declared[i], s->pass, p->done_frame);
}

/* The first pass: the connection and its session move on by one frame. */
static void move(struct lane_conn *c, packet_info *pinfo, struct record *r, unsigned type,
		 const struct frep_body *b)
{
	struct lane_session *s;
	gboolean from_master;

	/* A connection is followed from its HELLO, the first frame (HS-1). */
	if (c->frames++ == 0 && type == FREP_MSG_HELLO)
		on_hello(c, pinfo, r, b);
	if (type == FREP_MSG_WELCOME && c->now.hello && !c->now.welcome)
		on_welcome(c, pinfo, r, b);
	s = c->session;
	if (!s)
		return;
	r->s = s;
	r->lane = c->lane;
	r->opened_in = r->opens ? 0 : s->opened_in;
	from_master = addresses_equal(&c->master, &pinfo->src) && c->master_port == pinfo->srcport;
	if (c->lane > 0 && !joining_lane_carries(type, from_master))
		finding(r, &ei_unexpected, "%s %s on joining lane %u: a joining lane carries COPY_DATA "
			"and COPY_HOLE from the master, ERROR and GOODBYE both ways (LANE-6)",
			frep_msg_name(type), from_master ? "from the master" : "from the mirror",
			c->lane);
	switch (type) {
	case FREP_MSG_START_COPY:
		/* The passes of a session count from 1: the n-th START_COPY starts pass n (LANE-6). */
		if (c->lane == 0)
			s->pass++;
		break;
	case FREP_MSG_COPY_DATA:
	case FREP_MSG_COPY_HOLE:
		on_copy_record(c, r, type, b);
		break;
	case FREP_MSG_COPY_DONE:
		if (c->lane == 0)
			on_copy_done(s, pinfo, r, b);
		break;
	case FREP_MSG_CONSISTENT:
		if (c->lane == 0)
			on_consistent(s, r);
		break;
	default:
		break;
	}
}

void frep_lanes_dissect(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, proto_item *fi,
			unsigned rank, unsigned type, const struct frep_body *b)
{
	struct record *r = p_get_proto_data(wmem_file_scope(), pinfo, proto_frep, RECORD_KEY + rank);

	if (!r)
		return;
	/* A packet dissected again within the first pass must not move the state twice. */
	if (!r->moved && !PINFO_FD_VISITED(pinfo)) {
		r->moved = TRUE;
		move(conn_get(pinfo), pinfo, r, type, b);
	}
	if (r->s) {
		proto_item_set_generated(proto_tree_add_bytes_with_length(tree, hf_session, tvb, 0, 0,
									       r->s->id, FREP_SESSION_ID_SIZE));
		proto_item_set_generated(proto_tree_add_uint(tree, hf_lane, tvb, 0, 0, r->lane));
		if (r->opened_in)
			proto_item_set_generated(proto_tree_add_uint(tree, hf_opened_in, tvb, 0, 0,
								     r->opened_in));
		/* Links forward, to lanes that joined later: from the second pass on. */
		for (unsigned i = 1; r->opens && i < FREP_MAX_LANES; i++)
			if (r->s->lane_hello[i])
				proto_item_set_generated(proto_tree_add_uint(tree, hf_lane_in, tvb, 0, 0,
									     r->s->lane_hello[i]));
	}
	for (guint i = 0; r->findings && i < wmem_array_get_count(r->findings); i++) {
		const struct finding *f = wmem_array_index(r->findings, i);

		expert_add_info_format(pinfo, fi, f->ei, "%s", f->text);
	}
}
