/*
 * The admin API server on the gRPC core C API (grpc 1.51): see admin.h, and
 * docs/design/admin-api.md for the measurements behind the choices here.
 *
 * One thread drives one completion queue for one grpc_server per listener
 * (the unix socket, and TLS with --admin-listen), so that every call knows
 * where it came from and only TLS calls need an allowed identity. The core
 * API has no code generator: each method of the protoc-c service descriptor
 * is registered by path, and one generic request stays pending so that an
 * unknown method is answered UNIMPLEMENTED at once (otherwise it would hang
 * until the caller's deadline).
 *
 * Handlers run on this thread and only copy numbers out of the daemon (the
 * admin_ops); Watch streams read the event ring (events.h). There is no
 * wakeup primitive in this API for other threads, so the thread wakes every
 * TICK_MS to pump new events; each completed send pumps the next one at once.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "admin-pb.h"
#include "admin.h"
#include "events.h"
#include "log.h"
#include "util.h"

enum {
	TICK_MS = 100,
	SHUTDOWN_GRACE_MS = 1000, /* then every call still open is cancelled */
	/*
	 * Then the admin thread gives up on calls stuck in a transport whose peer
	 * never reads (a stopped `frepctl watch` with a full socket buffer): the
	 * daemon must still stop within its unit's timeout.
	 */
	SHUTDOWN_GIVE_UP_MS = 5000,
	MAX_REQUEST_BYTES = 64 * 1024,
	MAX_STREAMS = 32, /* per connection */
	MAX_LISTENERS = 2,
};

/* The service's methods, in the order of the .proto; paths come from its descriptor. */
enum method {
	M_STATUS,
	M_WATCH,
	M_PAUSE,
	M_RESUME,
	M_RESYNC,
	M_SET_RATE,
	M_VERIFY,
	M_GET_VERIFY_RESULT,
	M_CREATE_SNAPSHOT,
	M_LIST_SNAPSHOTS,
	M_DELETE_SNAPSHOT,
	M_EXPORT,
	M_UNEXPORT,
	M_PROMOTE,
	M_DEMOTE,
	M_ADOPT,
	M_SWITCHOVER,
	M_COUNT,
	M_UNKNOWN = -1,
};

static const struct method_def {
	const char *name;
	const ProtobufCMessageDescriptor *request;
} method_defs[M_COUNT] = {
	[M_STATUS] = { "Status", &frep__admin__v1__status_request__descriptor },
	[M_WATCH] = { "Watch", &frep__admin__v1__watch_request__descriptor },
	[M_PAUSE] = { "Pause", &frep__admin__v1__volume_request__descriptor },
	[M_RESUME] = { "Resume", &frep__admin__v1__volume_request__descriptor },
	[M_RESYNC] = { "Resync", &frep__admin__v1__resync_request__descriptor },
	[M_SET_RATE] = { "SetRate", &frep__admin__v1__set_rate_request__descriptor },
	[M_VERIFY] = { "Verify", &frep__admin__v1__verify_request__descriptor },
	[M_GET_VERIFY_RESULT] = { "GetVerifyResult", &frep__admin__v1__volume_request__descriptor },
	[M_CREATE_SNAPSHOT] = { "CreateSnapshot", &frep__admin__v1__snapshot_request__descriptor },
	[M_LIST_SNAPSHOTS] = { "ListSnapshots", &frep__admin__v1__list_snapshots_request__descriptor },
	[M_DELETE_SNAPSHOT] = { "DeleteSnapshot", &frep__admin__v1__snapshot_request__descriptor },
	[M_EXPORT] = { "Export", &frep__admin__v1__export_request__descriptor },
	[M_UNEXPORT] = { "Unexport", &frep__admin__v1__snapshot_request__descriptor },
	[M_PROMOTE] = { "Promote", &frep__admin__v1__promote_request__descriptor },
	[M_DEMOTE] = { "Demote", &frep__admin__v1__demote_request__descriptor },
	[M_ADOPT] = { "Adopt", &frep__admin__v1__adopt_request__descriptor },
	[M_SWITCHOVER] = { "Switchover", &frep__admin__v1__volume_request__descriptor },
};

struct listener {
	grpc_server *srv;
	void *methods[M_COUNT];
	bool tls; /* callers need an identity from the allow list */
	bool shut;
	char name[300];
};

enum tag_kind { T_NEW, T_SEND, T_CLOSE, T_STATUS, T_COUNT, T_SHUTDOWN };

struct call;
struct tag {
	enum tag_kind k;
	struct call *c;
	struct listener *l;
};

struct call {
	struct call *next;
	struct listener *l;
	int method; /* enum method, or M_UNKNOWN */
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_call_details details; /* M_UNKNOWN only */
	grpc_byte_buffer *payload;
	grpc_byte_buffer *out;
	struct tag tags[T_COUNT];
	int pending;   /* batches whose tag has not come back */
	int cancelled; /* RECV_CLOSE_ON_SERVER: the client went away */
	bool sent_md, finishing, streaming, sending, closed;
	/* Watch */
	char volume[STATUS_NAME_MAX];
	uint64_t cursor;		  /* next event seq to look at */
	struct vol_status *exists;	  /* the current state, sent first */
	size_t n_exists, exists_sent;
	bool initial_done_sent;
	char peer[160];
};

static struct {
	struct admin_opts o;
	grpc_completion_queue *cq;
	struct listener listeners[MAX_LISTENERS];
	unsigned n_listeners;
	struct call *calls;
	char allow[ADMIN_MAX_ALLOW][STATUS_TEXT_MAX];
	unsigned n_allow;
	pthread_t thread;
	bool running;
	atomic_bool stop;
	/* admin thread only */
	bool stopping, cancelled_all, cq_shut;
	bool abandoned; /* gave up on stuck calls: gRPC is left as it is at exit */
	uint64_t stop_at_ms;
	struct tag shut_tags[MAX_LISTENERS];
} adm;

/* gRPC's own log lines, through frep's one logging path. */
static void grpc_log_hook(gpr_log_func_args *a)
{
	enum log_level l = a->severity == GPR_LOG_SEVERITY_ERROR  ? LOG_WARN
			   : a->severity == GPR_LOG_SEVERITY_INFO ? LOG_DEBUG
								  : LOG_DEBUG;
	log_msg(l, NULL, "admin: grpc: %s", a->message);
}

/* --- protobuf-c <-> byte buffers ----------------------------------------------- */

static grpc_byte_buffer *pb_to_bb(const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	grpc_slice s = grpc_slice_malloc(n);
	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

/* NULL for a missing or malformed message; *wire_len is its size on the wire. */
static ProtobufCMessage *bb_to_pb(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d,
				  size_t *wire_len)
{
	grpc_byte_buffer_reader r;
	if (!bb || !grpc_byte_buffer_reader_init(&r, bb))
		return NULL;
	grpc_slice s = grpc_byte_buffer_reader_readall(&r); /* also undoes gRPC compression */
	grpc_byte_buffer_reader_destroy(&r);
	*wire_len = GRPC_SLICE_LENGTH(s);
	ProtobufCMessage *m =
		protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
	grpc_slice_unref(s);
	return m;
}

/* --- calls ---------------------------------------------------------------------- */

static void batch(struct call *c, enum tag_kind k, const grpc_op *ops, size_t n)
{
	grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->tags[k], NULL);
	if (e != GRPC_CALL_OK) {
		/* Only a programming error gets here (two ops of one kind in flight). */
		log_error(NULL, "admin: grpc_call_start_batch: %s", grpc_call_error_to_string(e));
		abort();
	}
	c->pending++;
}

/* Ends the call with a status, and with msg as the response if there is one. */
static void finish(struct call *c, enum admin_code code, const char *details,
		   const ProtobufCMessage *msg)
{
	grpc_op ops[3];
	size_t n = 0;
	memset(ops, 0, sizeof(ops));
	if (!c->sent_md) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		c->sent_md = true;
	}
	if (msg && code == ADMIN_OK) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = c->out = pb_to_bb(msg);
	}
	grpc_slice d = grpc_slice_from_copied_string(details ? details : "");
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = (grpc_status_code)code;
	ops[n++].data.send_status_from_server.status_details = &d;
	batch(c, T_STATUS, ops, n);
	grpc_slice_unref(d); /* the call took its own reference */
	c->finishing = true;
}

static void request_new(struct listener *l, int method)
{
	struct call *c = calloc(1, sizeof(*c));
	if (!c)
		abort();
	c->l = l;
	c->method = method;
	for (int k = 0; k < T_COUNT; k++)
		c->tags[k] = (struct tag){ .k = (enum tag_kind)k, .c = c, .l = l };
	grpc_metadata_array_init(&c->md);
	grpc_call_error e;
	if (method != M_UNKNOWN) {
		e = grpc_server_request_registered_call(l->srv, l->methods[method], &c->call,
							&c->deadline, &c->md, &c->payload, adm.cq,
							adm.cq, &c->tags[T_NEW]);
	} else {
		grpc_call_details_init(&c->details);
		e = grpc_server_request_call(l->srv, &c->call, &c->details, &c->md, adm.cq, adm.cq,
					     &c->tags[T_NEW]);
	}
	if (e != GRPC_CALL_OK) {
		log_error(NULL, "admin: requesting a call: %s", grpc_call_error_to_string(e));
		abort();
	}
	c->pending = 1;
	c->next = adm.calls;
	adm.calls = c;
}

static void maybe_free(struct call *c)
{
	if (c->pending > 0)
		return;
	for (struct call **p = &adm.calls; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	if (c->call)
		grpc_call_unref(c->call);
	grpc_metadata_array_destroy(&c->md);
	if (c->method == M_UNKNOWN)
		grpc_call_details_destroy(&c->details);
	if (c->payload)
		grpc_byte_buffer_destroy(c->payload);
	if (c->out)
		grpc_byte_buffer_destroy(c->out);
	free(c->exists);
	free(c);
}

/* TLS listeners: the client certificate's CN must be in --admin-allow. */
static bool authorized(struct call *c, const char *method)
{
	grpc_auth_context *ctx = grpc_call_auth_context(c->call);
	grpc_auth_property_iterator it =
		grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
	const grpc_auth_property *p = ctx ? grpc_auth_property_iterator_next(&it) : NULL;
	bool ok = false;
	/* A CN with a NUL inside could otherwise match a shorter allowed name. */
	if (p && strlen(p->value) == p->value_length)
		for (unsigned i = 0; i < adm.n_allow && !ok; i++)
			ok = strcmp(adm.allow[i], p->value) == 0;
	if (!ok)
		log_warn(NULL, "admin: refused %s from peer %s: identity '%s' is not in --admin-allow %s",
			 method, c->peer, p ? p->value : "(none)", adm.o.allow);
	grpc_auth_context_release(ctx);
	return ok;
}

/*
 * Unpacks the request, refusing what protobuf-c would silently misread: it
 * cuts strings at a NUL, so "db\0x" would read as "db". A request that does
 * not re-encode to its own length had a NUL in a string (real encoders write
 * canonical bytes, and unknown fields survive the repack).
 */
static ProtobufCMessage *take_request(struct call *c)
{
	size_t wire = 0;
	ProtobufCMessage *req = bb_to_pb(c->payload, method_defs[c->method].request, &wire);
	if (!req) {
		finish(c, ADMIN_INVALID_ARGUMENT, "malformed request message", NULL);
		return NULL;
	}
	if (protobuf_c_message_get_packed_size(req) != wire) {
		protobuf_c_message_free_unpacked(req, NULL);
		finish(c, ADMIN_INVALID_ARGUMENT,
		       "request has a NUL byte in a string field (volume names never do)", NULL);
		return NULL;
	}
	return req;
}

/* The volume field of every request is the first field, a string. */
static const char *request_volume(const ProtobufCMessage *req)
{
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(
		req->descriptor, "volume");
	return f ? *(const char *const *)((const char *)req + f->offset) : "";
}

static struct admin_reply unimplemented(const char *what)
{
	struct admin_reply r = { .code = ADMIN_FAILED_PRECONDITION };
	snprintf(r.message, sizeof(r.message),
		 "%s is a master command: %s serves mirror volumes; run it against the volume's "
		 "frep-client",
		 what, adm.o.daemon);
	return r;
}

static struct admin_reply mirror_only(const char *what)
{
	struct admin_reply r = { .code = ADMIN_FAILED_PRECONDITION };
	snprintf(r.message, sizeof(r.message),
		 "%s is a mirror command: %s serves master volumes; run it against frep-server "
		 "on the mirror host",
		 what, adm.o.daemon);
	return r;
}

/* The volume's status after a command, for CommandResponse (NULL if it vanished). */
static struct vol_status *status_of(const char *volume)
{
	struct vol_status *v = NULL;
	size_t n = 0;
	struct admin_reply r = { 0 };
	if (adm.o.ops->status(adm.o.ctx, volume, &v, &n, &r) < 0 || n == 0) {
		free(v);
		return NULL;
	}
	return v;
}

static void reply_command(struct call *c, const char *volume, const struct admin_reply *r)
{
	if (r->code != ADMIN_OK) {
		finish(c, r->code, r->message, NULL);
		return;
	}
	Frep__Admin__V1__CommandResponse resp = FREP__ADMIN__V1__COMMAND_RESPONSE__INIT;
	struct pb_vol pv;
	struct vol_status *v = status_of(volume);
	resp.message = (char *)r->message;
	if (v)
		resp.volume = status_to_pb(v, &pv);
	finish(c, ADMIN_OK, "", &resp.base);
	free(v);
}

static void handle_status(struct call *c, const Frep__Admin__V1__StatusRequest *req)
{
	struct vol_status *v = NULL;
	size_t n = 0;
	struct admin_reply r = { .code = ADMIN_OK };
	if (adm.o.ops->status(adm.o.ctx, req->volume[0] ? req->volume : NULL, &v, &n, &r) < 0) {
		finish(c, r.code, r.message, NULL);
		free(v);
		return;
	}
	struct pb_vol *pv = calloc(n ? n : 1, sizeof(*pv));
	Frep__Admin__V1__VolumeStatus **pp = calloc(n ? n : 1, sizeof(*pp));
	if (!pv || !pp) {
		finish(c, ADMIN_INTERNAL, "out of memory", NULL);
	} else {
		Frep__Admin__V1__StatusResponse resp = FREP__ADMIN__V1__STATUS_RESPONSE__INIT;
		for (size_t i = 0; i < n; i++)
			pp[i] = status_to_pb(&v[i], &pv[i]);
		resp.n_volumes = n;
		resp.volumes = pp;
		resp.daemon = (char *)adm.o.daemon;
		resp.version = (char *)FREP_VERSION;
		resp.now_unix_ms = wall_ms();
		finish(c, ADMIN_OK, "", &resp.base);
	}
	free(pp);
	free(pv);
	free(v);
}

static void handle_verify(struct call *c, const Frep__Admin__V1__VerifyRequest *req)
{
	struct admin_reply r = { .code = ADMIN_OK };
	uint64_t id = 0;
	if (!adm.o.ops->verify)
		r = unimplemented("verify");
	else
		adm.o.ops->verify(adm.o.ctx, req->volume, req->repair, &id, &r);
	if (r.code != ADMIN_OK) {
		finish(c, r.code, r.message, NULL);
		return;
	}
	Frep__Admin__V1__VerifyResponse resp = FREP__ADMIN__V1__VERIFY_RESPONSE__INIT;
	struct pb_vol pv;
	struct vol_status *v = status_of(req->volume);
	resp.verify_id = id;
	if (v)
		resp.volume = status_to_pb(v, &pv);
	finish(c, ADMIN_OK, "", &resp.base);
	free(v);
}

static void handle_verify_result(struct call *c, const Frep__Admin__V1__VolumeRequest *req)
{
	struct admin_reply r = { .code = ADMIN_OK };
	struct status_verify st = { 0 };
	struct status_region *regions = NULL;
	size_t n = 0;
	uint64_t region_size = 0;
	if (!adm.o.ops->verify_result)
		r = unimplemented("verify");
	else
		adm.o.ops->verify_result(adm.o.ctx, req->volume, &st, &region_size, &regions, &n, &r);
	if (r.code != ADMIN_OK) {
		finish(c, r.code, r.message, NULL);
		free(regions);
		return;
	}
	Frep__Admin__V1__VerifyResult resp = FREP__ADMIN__V1__VERIFY_RESULT__INIT;
	Frep__Admin__V1__VerifyStatus vs;
	Frep__Admin__V1__Progress vp;
	Frep__Admin__V1__Region *rg = calloc(n ? n : 1, sizeof(*rg));
	Frep__Admin__V1__Region **rp = calloc(n ? n : 1, sizeof(*rp));
	if (!rg || !rp) {
		finish(c, ADMIN_INTERNAL, "out of memory", NULL);
	} else {
		verify_to_pb(&st, &vs, &vp);
		resp.status = &vs;
		resp.region_size = region_size;
		for (size_t i = 0; i < n; i++) {
			frep__admin__v1__region__init(&rg[i]);
			rg[i].offset = regions[i].offset;
			rg[i].length = regions[i].length;
			rp[i] = &rg[i];
		}
		resp.n_mismatches = n;
		resp.mismatches = rp;
		finish(c, ADMIN_OK, "", &resp.base);
	}
	free(rg);
	free(rp);
	free(regions);
}

/* CreateSnapshot and Export: the snapshot as it is once the command is done. */
static void handle_snapshot(struct call *c, const ProtobufCMessage *req)
{
	const struct admin_ops *ops = adm.o.ops;
	const char *vol = request_volume(req);
	struct admin_reply r = { .code = ADMIN_OK };
	struct status_snapshot *st = calloc(1, sizeof(*st));
	if (!st) {
		finish(c, ADMIN_INTERNAL, "out of memory", NULL);
		return;
	}
	if (c->method == M_CREATE_SNAPSHOT) {
		const Frep__Admin__V1__SnapshotRequest *q = (const void *)req;
		if (!ops->snapshot_create)
			r = mirror_only("snapshot create");
		else
			ops->snapshot_create(adm.o.ctx, vol, q->name, st, &r);
	} else {
		const Frep__Admin__V1__ExportRequest *q = (const void *)req;
		if (!ops->export_snapshot)
			r = mirror_only("export");
		else
			ops->export_snapshot(adm.o.ctx, vol, q->snapshot, q->nbd, st, &r);
	}
	if (r.code != ADMIN_OK) {
		finish(c, r.code, r.message, NULL);
	} else {
		log_info(vol, "admin: %s from %s: %s", method_defs[c->method].name, c->peer, r.message);
		Frep__Admin__V1__SnapshotResponse resp = FREP__ADMIN__V1__SNAPSHOT_RESPONSE__INIT;
		struct pb_snapshot ps;
		resp.message = r.message;
		resp.snapshot = snapshot_to_pb(st, &ps);
		finish(c, ADMIN_OK, "", &resp.base);
	}
	free(st);
}

static void handle_list_snapshots(struct call *c, const Frep__Admin__V1__ListSnapshotsRequest *req)
{
	struct admin_reply r = { .code = ADMIN_OK };
	struct status_snapshot *s = NULL;
	size_t n = 0;
	if (!adm.o.ops->snapshot_list)
		r = mirror_only("snapshot list");
	else
		adm.o.ops->snapshot_list(adm.o.ctx, req->volume[0] ? req->volume : NULL, &s, &n, &r);
	if (r.code != ADMIN_OK) {
		finish(c, r.code, r.message, NULL);
		free(s);
		return;
	}
	struct pb_snapshot *ps = calloc(n ? n : 1, sizeof(*ps));
	Frep__Admin__V1__Snapshot **pp = calloc(n ? n : 1, sizeof(*pp));
	if (!ps || !pp) {
		finish(c, ADMIN_INTERNAL, "out of memory", NULL);
	} else {
		Frep__Admin__V1__ListSnapshotsResponse resp =
			FREP__ADMIN__V1__LIST_SNAPSHOTS_RESPONSE__INIT;
		for (size_t i = 0; i < n; i++)
			pp[i] = snapshot_to_pb(&s[i], &ps[i]);
		resp.n_snapshots = n;
		resp.snapshots = pp;
		finish(c, ADMIN_OK, "", &resp.base);
	}
	free(pp);
	free(ps);
	free(s);
}

/*
 * Demote and Switchover: the master's half of frepctl demote and switchover,
 * answered with the handoff for the mirror's.
 */
static void handle_demote(struct call *c, const ProtobufCMessage *req)
{
	struct admin_reply r = { .code = ADMIN_OK };
	char handoff[4200] = "";
	uint64_t discard_tx = 0, discard_bytes = 0;
	const char *vol = request_volume(req);
	if (c->method == M_DEMOTE && adm.o.ops->demote)
		adm.o.ops->demote(adm.o.ctx, vol, ((const Frep__Admin__V1__DemoteRequest *)req)->force,
				  handoff, sizeof(handoff), &discard_tx, &discard_bytes, &r);
	else if (c->method == M_SWITCHOVER && adm.o.ops->switchover)
		adm.o.ops->switchover(adm.o.ctx, vol, handoff, sizeof(handoff), &r);
	else
		r = unimplemented(c->method == M_DEMOTE ? "demote" : "switchover");
	if (r.code != ADMIN_OK) {
		finish(c, r.code, r.message, NULL);
		return;
	}
	log_info(vol, "admin: %s from %s: %s", method_defs[c->method].name, c->peer, r.message);
	Frep__Admin__V1__DemoteResponse resp = FREP__ADMIN__V1__DEMOTE_RESPONSE__INIT;
	resp.message = r.message;
	resp.handoff = handoff;
	resp.discard_tx = discard_tx;
	resp.discard_bytes = discard_bytes;
	finish(c, ADMIN_OK, "", &resp.base);
}

/* A command on one volume: checks the op exists, runs it, answers. */
static void handle_command(struct call *c, const ProtobufCMessage *req)
{
	const struct admin_ops *ops = adm.o.ops;
	const char *vol = request_volume(req);
	struct admin_reply r = { .code = ADMIN_OK };

	switch (c->method) {
	case M_PAUSE:
		if (ops->pause)
			ops->pause(adm.o.ctx, vol, &r);
		else
			r = unimplemented("pause");
		break;
	case M_RESUME:
		if (ops->resume)
			ops->resume(adm.o.ctx, vol, &r);
		else
			r = unimplemented("resume");
		break;
	case M_RESYNC:
		if (ops->resync)
			ops->resync(adm.o.ctx, vol, ((const Frep__Admin__V1__ResyncRequest *)req)->full,
				    &r);
		else
			r = unimplemented("resync");
		break;
	case M_SET_RATE:
		if (ops->set_rate)
			ops->set_rate(adm.o.ctx, vol,
				      ((const Frep__Admin__V1__SetRateRequest *)req)->bytes_per_second,
				      &r);
		else
			r = unimplemented("set-rate");
		break;
	case M_DELETE_SNAPSHOT:
		if (ops->snapshot_delete)
			ops->snapshot_delete(adm.o.ctx, vol,
					     ((const Frep__Admin__V1__SnapshotRequest *)req)->name, &r);
		else
			r = mirror_only("snapshot delete");
		break;
	case M_UNEXPORT:
		if (ops->unexport)
			ops->unexport(adm.o.ctx, vol,
				      ((const Frep__Admin__V1__SnapshotRequest *)req)->name, &r);
		else
			r = mirror_only("unexport");
		break;
	case M_PROMOTE:
		if (ops->promote)
			ops->promote(adm.o.ctx, vol, ((const Frep__Admin__V1__PromoteRequest *)req)->force,
				     &r);
		else
			r = mirror_only("promote");
		break;
	case M_ADOPT:
		if (ops->adopt)
			ops->adopt(adm.o.ctx, vol, ((const Frep__Admin__V1__AdoptRequest *)req)->handoff, &r);
		else
			r = mirror_only("adopt");
		break;
	default:
		abort();
	}
	if (r.code == ADMIN_OK)
		log_info(vol, "admin: %s from %s: %s", method_defs[c->method].name, c->peer, r.message);
	reply_command(c, vol, &r);
}

/* --- Watch --------------------------------------------------------------------- */

/* One event in flight per watcher; the first goes with the initial metadata. */
static void send_event(struct call *c, const Frep__Admin__V1__Event *ev)
{
	grpc_op ops[2];
	size_t n = 0;
	memset(ops, 0, sizeof(ops));
	if (!c->sent_md) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		c->sent_md = true;
	}
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n++].data.send_message.send_message = c->out = pb_to_bb(&ev->base);
	c->sending = true;
	batch(c, T_SEND, ops, n);
}

/* Drops a watcher that fell too far behind, even while its send is stuck. */
static bool watcher_too_slow(struct call *c)
{
	uint64_t behind = events_head() - c->cursor;
	if (behind <= EVENTS_MAX_LAG)
		return false;
	char msg[200];
	snprintf(msg, sizeof(msg),
		 "watcher fell %" PRIu64 " events behind (limit %d): dropped; reconnect to get the "
		 "current state",
		 behind, EVENTS_MAX_LAG);
	log_warn(c->volume[0] ? c->volume : NULL, "admin: Watch from %s: %s", c->peer, msg);
	grpc_call_cancel_with_status(c->call, GRPC_STATUS_RESOURCE_EXHAUSTED, msg, NULL);
	c->finishing = true;
	return true;
}

/* Sends the watcher its next event if it has none in flight. */
static void pump(struct call *c)
{
	if (!c->streaming || c->finishing || c->closed)
		return;
	if (watcher_too_slow(c) || c->sending)
		return;

	Frep__Admin__V1__Event ev = FREP__ADMIN__V1__EVENT__INIT;
	struct pb_vol pv;
	if (c->exists_sent < c->n_exists) {
		ev.kind = FREP__ADMIN__V1__EVENT__KIND__EXISTS;
		ev.time_unix_ms = wall_ms();
		ev.volume = status_to_pb(&c->exists[c->exists_sent++], &pv);
		send_event(c, &ev);
		return;
	}
	if (!c->initial_done_sent) {
		c->initial_done_sent = true;
		ev.kind = FREP__ADMIN__V1__EVENT__KIND__INITIAL_DONE;
		ev.time_unix_ms = wall_ms();
		send_event(c, &ev);
		return;
	}
	struct event e;
	for (;;) {
		int got = events_get(c->cursor, &e);
		if (got == 0)
			return;
		c->cursor++;
		if (got < 0)
			continue; /* overwritten: watcher_too_slow catches it next time */
		if (!c->volume[0] || strcmp(e.volume, c->volume) == 0)
			break;
	}
	/* The volume as it is now, with the state this event moved it to. */
	struct vol_status *v = e.volume[0] ? status_of(e.volume) : NULL;
	if (v) {
		if (e.kind == EVENT_STATE_CHANGE)
			v->state = e.new_state;
		ev.volume = status_to_pb(v, &pv);
	}
	ev.seq = e.seq;
	ev.time_unix_ms = e.time_unix_ms;
	ev.kind = (Frep__Admin__V1__Event__Kind)e.kind;
	ev.old_state = (Frep__Admin__V1__State)e.old_state;
	ev.reason = e.reason;
	send_event(c, &ev);
	free(v);
}

static void handle_watch(struct call *c, const Frep__Admin__V1__WatchRequest *req)
{
	struct admin_reply r = { .code = ADMIN_OK };
	snprintf(c->volume, sizeof(c->volume), "%s", req->volume);
	/*
	 * The cursor first, then the current state: an event between the two
	 * is sent after a state that already shows it, never lost.
	 */
	c->cursor = events_head();
	if (adm.o.ops->status(adm.o.ctx, c->volume[0] ? c->volume : NULL, &c->exists, &c->n_exists,
			      &r) < 0) {
		finish(c, r.code, r.message, NULL);
		return;
	}
	c->streaming = true;
	log_debug(c->volume[0] ? c->volume : NULL, "admin: Watch from %s", c->peer);
	pump(c);
}

/* --- dispatch ------------------------------------------------------------------ */

static void on_new(struct call *c, bool ok)
{
	if (!ok) /* the server is shutting down: this request never matched a call */
		return;
	if (!adm.stopping)
		request_new(c->l, c->method);

	char *peer = grpc_call_get_peer(c->call);
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	gpr_free(peer);

	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER; /* tells us when the client goes away */
	op.data.recv_close_on_server.cancelled = &c->cancelled;
	batch(c, T_CLOSE, &op, 1);

	if (c->method == M_UNKNOWN) {
		char *m = grpc_slice_to_c_string(c->details.method), msg[320];
		snprintf(msg, sizeof(msg), "unknown method %.250s: see proto/frep/admin/v1/admin.proto",
			 m);
		gpr_free(m);
		finish(c, ADMIN_UNIMPLEMENTED, msg, NULL);
		return;
	}
	const char *name = method_defs[c->method].name;
	if (c->l->tls && !authorized(c, name)) {
		finish(c, ADMIN_PERMISSION_DENIED,
		       "this identity is not allowed to use the admin API (--admin-allow)", NULL);
		return;
	}
	if (adm.stopping) {
		finish(c, ADMIN_UNAVAILABLE, "frep is shutting down", NULL);
		return;
	}
	ProtobufCMessage *req = take_request(c);
	if (!req)
		return;
	const char *vol = request_volume(req);
	if (strlen(vol) >= STATUS_NAME_MAX) {
		finish(c, ADMIN_INVALID_ARGUMENT, "volume name longer than 64 bytes", NULL);
	} else if (c->method != M_STATUS && c->method != M_WATCH && c->method != M_LIST_SNAPSHOTS &&
		   !vol[0]) {
		char msg[96];
		snprintf(msg, sizeof(msg), "%s needs a volume name", name);
		finish(c, ADMIN_INVALID_ARGUMENT, msg, NULL);
	} else {
		switch (c->method) {
		case M_STATUS: handle_status(c, (void *)req); break;
		case M_WATCH: handle_watch(c, (void *)req); break;
		case M_VERIFY: handle_verify(c, (void *)req); break;
		case M_GET_VERIFY_RESULT: handle_verify_result(c, (void *)req); break;
		case M_CREATE_SNAPSHOT:
		case M_EXPORT: handle_snapshot(c, req); break;
		case M_LIST_SNAPSHOTS: handle_list_snapshots(c, (void *)req); break;
		case M_DEMOTE:
		case M_SWITCHOVER: handle_demote(c, req); break;
		default: handle_command(c, req); break;
		}
	}
	protobuf_c_message_free_unpacked(req, NULL);
}

static void on_event(struct tag *t, bool ok)
{
	if (t->k == T_SHUTDOWN) {
		t->l->shut = true;
		return;
	}
	struct call *c = t->c;
	c->pending--;
	switch (t->k) {
	case T_NEW:
		on_new(c, ok);
		break;
	case T_SEND:
		c->sending = false;
		grpc_byte_buffer_destroy(c->out);
		c->out = NULL;
		if (ok)
			pump(c);
		break;
	case T_CLOSE:
		c->closed = true;
		if (c->streaming && c->cancelled && !adm.stopping)
			log_debug(c->volume[0] ? c->volume : NULL, "admin: watcher %s went away",
				  c->peer);
		break;
	default:
		break;
	}
	maybe_free(c);
}

static void begin_shutdown(void)
{
	adm.stopping = true;
	adm.stop_at_ms = now_ms();
	for (unsigned i = 0; i < adm.n_listeners; i++) {
		struct listener *l = &adm.listeners[i];
		adm.shut_tags[i] = (struct tag){ .k = T_SHUTDOWN, .l = l };
		grpc_server_shutdown_and_notify(l->srv, adm.cq, &adm.shut_tags[i]);
	}
	/* Watch streams never end by themselves: end them with a status. */
	for (struct call *c = adm.calls; c; c = c->next)
		if (c->streaming && !c->finishing && !c->closed) {
			if (!c->sending) {
				finish(c, ADMIN_UNAVAILABLE, "frep is shutting down", NULL);
			} else {
				grpc_call_cancel_with_status(c->call, GRPC_STATUS_UNAVAILABLE,
							     "frep is shutting down", NULL);
				c->finishing = true;
			}
		}
}

static void *admin_main(void *arg)
{
	(void)arg;
	for (;;) {
		gpr_timespec tick = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
						 gpr_time_from_millis(TICK_MS, GPR_TIMESPAN));
		grpc_event ev = grpc_completion_queue_next(adm.cq, tick, NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE)
			on_event(ev.tag, ev.success != 0);
		if (atomic_load(&adm.stop) && !adm.stopping)
			begin_shutdown();
		if (!adm.stopping)
			for (struct call *c = adm.calls; c; c = c->next)
				pump(c);
		/* A watcher whose client never reads keeps its call open: cut it. */
		if (adm.stopping && !adm.cancelled_all && now_ms() - adm.stop_at_ms > SHUTDOWN_GRACE_MS) {
			for (unsigned i = 0; i < adm.n_listeners; i++)
				grpc_server_cancel_all_calls(adm.listeners[i].srv);
			adm.cancelled_all = true;
		}
		if (adm.stopping && !adm.cq_shut && now_ms() - adm.stop_at_ms > SHUTDOWN_GIVE_UP_MS) {
			unsigned n = 0;
			for (struct call *c = adm.calls; c; c = c->next)
				n += c->call != NULL;
			log_warn(NULL, "admin: %u call(s) still stuck on peers that do not read after %d ms; "
				 "stopping without them", n, SHUTDOWN_GIVE_UP_MS);
			adm.abandoned = true;
			return NULL;
		}
		bool all_shut = true;
		for (unsigned i = 0; i < adm.n_listeners; i++)
			all_shut &= adm.listeners[i].shut;
		if (adm.stopping && all_shut && !adm.calls && !adm.cq_shut) {
			for (unsigned i = 0; i < adm.n_listeners; i++)
				grpc_server_destroy(adm.listeners[i].srv);
			grpc_completion_queue_shutdown(adm.cq);
			adm.cq_shut = true;
		}
	}
	grpc_completion_queue_destroy(adm.cq);
	return NULL;
}

/* --- options and listeners ------------------------------------------------------- */

static grpc_server_credentials *tls_credentials(char *err, size_t err_len)
{
	char *ca = admin_slurp("--admin-ca", adm.o.ca, err, err_len);
	char *cert = ca ? admin_slurp("--admin-cert", adm.o.cert, err, err_len) : NULL;
	char *key = cert ? admin_slurp("--admin-key", adm.o.key, err, err_len) : NULL;
	grpc_server_credentials *creds = NULL;
	if (key) {
		grpc_ssl_pem_key_cert_pair pair = { .private_key = key, .cert_chain = cert };
		grpc_ssl_server_certificate_config *cfg =
			grpc_ssl_server_certificate_config_create(ca, &pair, 1); /* copies the PEM */
		grpc_ssl_server_credentials_options *opts =
			grpc_ssl_server_credentials_create_options_using_config(
				GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, cfg);
		creds = grpc_ssl_server_credentials_create_with_options(opts); /* owns opts, cfg */
	}
	free(ca);
	free(cert);
	free(key);
	return creds;
}

static int add_listener(bool tls, char *err, size_t err_len)
{
	grpc_arg args[] = {
		{ .type = GRPC_ARG_INTEGER,
		  .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
		  .value.integer = MAX_REQUEST_BYTES },
		{ .type = GRPC_ARG_INTEGER,
		  .key = GRPC_ARG_MAX_CONCURRENT_STREAMS,
		  .value.integer = MAX_STREAMS },
	};
	grpc_channel_args cargs = { .num_args = 2, .args = args };
	struct listener *l = &adm.listeners[adm.n_listeners];
	char addr[300];
	grpc_server_credentials *creds;

	if (tls) {
		if (!(creds = tls_credentials(err, err_len)))
			return -1;
		snprintf(addr, sizeof(addr), "%s", adm.o.listen);
	} else {
		if (admin_check_unix_path(adm.o.unix_path, err, err_len) < 0)
			return -1;
		creds = grpc_insecure_server_credentials_create();
		snprintf(addr, sizeof(addr), "unix:%s", adm.o.unix_path);
	}
	l->srv = grpc_server_create(&cargs, NULL);
	l->tls = tls;
	grpc_server_register_completion_queue(l->srv, adm.cq, NULL);
	const ProtobufCServiceDescriptor *sd = &frep__admin__v1__admin__descriptor;
	for (unsigned m = 0; m < M_COUNT; m++) {
		char path[128];
		snprintf(path, sizeof(path), "/%s/%s", sd->name, method_defs[m].name);
		if (!protobuf_c_service_descriptor_get_method_by_name(sd, method_defs[m].name))
			abort(); /* the table and the .proto disagree */
		l->methods[m] = grpc_server_register_method(
			l->srv, path, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	}
	/*
	 * bind() runs inside add_http2_port, so a 0177 umask around it alone
	 * makes the socket 0600 with no window. umask is per process: this runs
	 * before the daemon's other threads create files.
	 */
	mode_t old = umask(0177);
	int port = grpc_server_add_http2_port(l->srv, addr, creds);
	umask(old);
	grpc_server_credentials_release(creds);
	if (port == 0) {
		snprintf(err, err_len, "%s %s: cannot listen there (in use, or no such address or "
			 "directory)", tls ? "--admin-listen" : "--admin", addr);
		grpc_server_destroy(l->srv);
		return -1;
	}
	adm.n_listeners++;
	if (tls) {
		char host[256], p[16];
		split_host_port(adm.o.listen, host, sizeof(host), p, sizeof(p), NULL);
		snprintf(l->name, sizeof(l->name), "%s:%d", host, port);
		log_info(NULL, "admin API on %s (TLS, client certificates from --admin-ca, %u "
			 "identities allowed)", l->name, adm.n_allow);
	} else {
		snprintf(l->name, sizeof(l->name), "%s", addr);
		log_info(NULL, "admin API on %s (mode 0600)", addr);
	}
	return 0;
}

int admin_start(const struct admin_opts *o, char *err, size_t err_len)
{
	if (!o->unix_path && !o->listen)
		return 0;
	if (admin_check(o, err, err_len) < 0 ||
	    (o->listen && admin_allow_load(o->allow, adm.allow, ADMIN_MAX_ALLOW, &adm.n_allow, err,
					   err_len) < 0))
		return -1;
	adm.o = *o;
	gpr_set_log_function(grpc_log_hook);
	gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
	grpc_init();
	adm.cq = grpc_completion_queue_create_for_next(NULL);
	if ((o->unix_path && add_listener(false, err, err_len) < 0) ||
	    (o->listen && add_listener(true, err, err_len) < 0)) {
		for (unsigned i = 0; i < adm.n_listeners; i++) {
			grpc_server_shutdown_and_notify(adm.listeners[i].srv, adm.cq, NULL);
			grpc_server_cancel_all_calls(adm.listeners[i].srv);
		}
		grpc_completion_queue_shutdown(adm.cq);
		while (grpc_completion_queue_next(adm.cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
			       .type != GRPC_QUEUE_SHUTDOWN)
			;
		for (unsigned i = 0; i < adm.n_listeners; i++)
			grpc_server_destroy(adm.listeners[i].srv);
		grpc_completion_queue_destroy(adm.cq);
		grpc_shutdown();
		adm.n_listeners = 0;
		return -1;
	}
	for (unsigned i = 0; i < adm.n_listeners; i++) {
		grpc_server_start(adm.listeners[i].srv);
		for (int m = 0; m < M_COUNT; m++)
			request_new(&adm.listeners[i], m);
		request_new(&adm.listeners[i], M_UNKNOWN);
	}
	if (pthread_create(&adm.thread, NULL, admin_main, NULL) != 0) {
		snprintf(err, err_len, "cannot start the admin thread");
		return -1;
	}
	adm.running = true;
	return 0;
}

bool admin_abandoned(void)
{
	return adm.abandoned;
}

void admin_stop(void)
{
	if (!adm.running)
		return;
	atomic_store(&adm.stop, true);
	pthread_join(adm.thread, NULL);
	adm.running = false;
	/*
	 * Synchronous from a thread that is not gRPC's: no gRPC thread outlives
	 * this. Not after giving up on stuck calls: it would wait for them.
	 */
	if (!adm.abandoned)
		grpc_shutdown();
}
