#define _GNU_SOURCE
/*
 * PoC admin server on the gRPC core C API (grpc 1.51, Debian 12).
 * One thread drives one completion queue for two grpc_server objects: a unix
 * socket (mode 0600, no TLS) and, optionally, TCP+TLS with verified client
 * certificates and a CN allow list. A "replication" thread mutates a status
 * model and publishes events into a ring; it never calls into gRPC.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "pbgrpc.h"

enum { M_STATUS, M_WATCH, M_COUNT };
enum { RING = 2048, TICK_MS = 100, MAX_ALLOW = 64, NVOLS = 2 };

static struct {
	const char *unix_path, *listen, *cert, *key, *ca, *allow;
	unsigned max_lag, event_ms;
	bool no_unimplemented;
} opt = { .max_lag = 1000, .event_ms = 100 };

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(stderr, "%ld.%03ld admin-poc[%d] ", (long)ts.tv_sec, ts.tv_nsec / 1000000, getpid());
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* gRPC's own log lines, in the daemon's format instead of gpr's. */
static void grpc_log_hook(gpr_log_func_args *a)
{
	logf_("grpc %s %s:%d %s", gpr_log_severity_string(a->severity), a->file, a->line, a->message);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the status model: one copy, read by Status, Watch (and metrics) ---- */

struct vol {
	char name[65];
	const char *role;
	char state[16];
	int64_t since_ms;
	uint64_t committed, acked, done, total, rate;
};

struct event {
	uint64_t seq;
	int kind; /* Frep__Admin__V1__Event__Kind */
	struct vol v;
};

static struct {
	pthread_mutex_t mu; /* the model's own lock: held only to copy plain structs */
	struct vol vols[NVOLS];
	struct event ring[RING];
	uint64_t head; /* seq of the next event; event s lives in ring[s % RING] */
} model = { .mu = PTHREAD_MUTEX_INITIALIZER };

static atomic_bool stop;

static void publish(int kind, const struct vol *v)
{
	struct event *e = &model.ring[model.head % RING];
	e->seq = model.head++;
	e->kind = kind;
	e->v = *v;
}

/* Stands in for the replication: a copy that restarts, state changes, progress ticks. */
static void *replication_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&model.mu);
	snprintf(model.vols[0].name, sizeof(model.vols[0].name), "db");
	snprintf(model.vols[1].name, sizeof(model.vols[1].name), "logs");
	for (int i = 0; i < NVOLS; i++) {
		model.vols[i].role = "master";
		snprintf(model.vols[i].state, sizeof(model.vols[i].state), "INSYNC");
		model.vols[i].since_ms = now_ms();
		model.vols[i].total = 1 << 30;
	}
	pthread_mutex_unlock(&model.mu);
	for (unsigned tick = 0; !stop; tick++) {
		struct timespec d = { .tv_sec = opt.event_ms / 1000, .tv_nsec = (opt.event_ms % 1000) * 1000000L };
		nanosleep(&d, NULL);
		pthread_mutex_lock(&model.mu);
		struct vol *v = &model.vols[0];
		v->committed += 7;
		v->acked += 5;
		if (tick % 20 == 0) {
			bool copying = strcmp(v->state, "COPY") == 0;
			snprintf(v->state, sizeof(v->state), copying ? "INSYNC" : "COPY");
			v->since_ms = now_ms();
			v->done = 0;
			publish(FREP__ADMIN__V1__EVENT__KIND__STATE_CHANGE, v);
		} else if (strcmp(v->state, "COPY") == 0) {
			v->rate = 50u << 20;
			v->done += v->total / 20;
			publish(FREP__ADMIN__V1__EVENT__KIND__PROGRESS, v);
		}
		pthread_mutex_unlock(&model.mu);
	}
	return NULL;
}

/* ---- the gRPC side ---- */

struct listener {
	grpc_server *srv;
	void *methods[M_COUNT];
	bool tls; /* callers need a CN from the allow list */
	bool shut;
	char name[200];
};

enum tag_kind { T_NEW, T_RECV, T_SEND, T_CLOSE, T_STATUS, T_COUNT, T_SHUTDOWN };

struct call;
struct tag {
	enum tag_kind k;
	struct call *c;
	struct listener *l;
};

struct call {
	struct call *next;
	struct listener *l;
	int method; /* M_*, or -1: a method nobody registered */
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_call_details details; /* unregistered methods only */
	grpc_byte_buffer *payload;
	grpc_byte_buffer *out;
	struct tag tags[T_COUNT];
	int pending; /* batches whose tag has not come back */
	int cancelled;
	bool sent_md, finishing, streaming, sending, closed;
	char volume[65];
	uint64_t cursor;
	unsigned n_exists, exists_sent;
	struct vol exists[NVOLS];
};

static grpc_completion_queue *cq;
static struct listener listeners[2];
static unsigned n_listeners;
static struct call *calls;
static char allow[MAX_ALLOW][65];
static unsigned n_allow;
static bool stopping, cancelled_all, cq_shut;
static int64_t stop_at;

static void batch(struct call *c, enum tag_kind k, const grpc_op *ops, size_t n)
{
	grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->tags[k], NULL);
	if (e != GRPC_CALL_OK) {
		/* Only a programming error gets here (two ops of one type in flight). */
		logf_("grpc_call_start_batch: %s", grpc_call_error_to_string(e));
		abort();
	}
	c->pending++;
}

static void finish(struct call *c, grpc_status_code code, const char *msg)
{
	grpc_op ops[2];
	size_t n = 0;
	memset(ops, 0, sizeof(ops));
	if (!c->sent_md) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		c->sent_md = true;
	}
	grpc_slice details = grpc_slice_from_copied_string(msg);
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	ops[n++].data.send_status_from_server.status_details = &details;
	batch(c, T_STATUS, ops, n);
	grpc_slice_unref(details); /* the call took its own reference */
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
	if (method >= 0)
		e = grpc_server_request_registered_call(l->srv, l->methods[method], &c->call, &c->deadline, &c->md,
							method == M_STATUS ? &c->payload : NULL, cq, cq,
							&c->tags[T_NEW]);
	else {
		grpc_call_details_init(&c->details);
		e = grpc_server_request_call(l->srv, &c->call, &c->details, &c->md, cq, cq, &c->tags[T_NEW]);
	}
	if (e != GRPC_CALL_OK) {
		logf_("request call: %s", grpc_call_error_to_string(e));
		abort();
	}
	c->pending = 1;
	c->next = calls;
	calls = c;
}

static void maybe_free(struct call *c)
{
	if (c->pending > 0)
		return;
	for (struct call **p = &calls; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	if (c->call)
		grpc_call_unref(c->call);
	grpc_metadata_array_destroy(&c->md);
	if (c->method < 0)
		grpc_call_details_destroy(&c->details);
	if (c->payload)
		grpc_byte_buffer_destroy(c->payload);
	if (c->out)
		grpc_byte_buffer_destroy(c->out);
	free(c);
}

static bool authorized(struct call *c)
{
	grpc_auth_context *ctx = grpc_call_auth_context(c->call);
	grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
	const grpc_auth_property *p = ctx ? grpc_auth_property_iterator_next(&it) : NULL;
	bool ok = false;
	if (p && strlen(p->value) == p->value_length)
		for (unsigned i = 0; i < n_allow && !ok; i++)
			ok = strcmp(allow[i], p->value) == 0;
	if (!ok) {
		char *peer = grpc_call_get_peer(c->call);
		logf_("refused %s: peer %s identity '%s' is not in --admin-allow", c->l->name, peer,
		      p ? p->value : "(none)");
		gpr_free(peer);
	}
	grpc_auth_context_release(ctx);
	return ok;
}

static void to_pb(const struct vol *v, Frep__Admin__V1__VolumeStatus *s, Frep__Admin__V1__Progress *p)
{
	frep__admin__v1__volume_status__init(s);
	frep__admin__v1__progress__init(p);
	s->name = (char *)v->name;
	s->role = (char *)v->role;
	s->state = (char *)v->state;
	s->state_since_unix_ms = v->since_ms;
	s->committed_txid = v->committed;
	s->acked_txid = v->acked;
	s->lag_tx = v->committed - v->acked;
	p->done_bytes = v->done;
	p->total_bytes = v->total;
	p->rate_bps = v->rate;
	p->eta_seconds = v->rate ? (v->total - v->done) / v->rate : 0;
	s->progress = p;
}

/* Returns false (and finishes the call) when the request is unusable. */
static bool check_volume(struct call *c, ProtobufCMessage *req, size_t wire_len, const char *volume)
{
	if (!req) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed request message");
		return false;
	}
	/* protobuf-c NUL-terminates strings, so "db\0x" would read as "db": a
	 * request that does not re-encode to its own length had a NUL (or was not
	 * canonical) and is refused instead of being taken for another volume. */
	if (protobuf_c_message_get_packed_size(req) != wire_len) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT, "request has a NUL byte in a string field");
		return false;
	}
	if (strlen(volume) >= sizeof(c->volume)) {
		finish(c, GRPC_STATUS_INVALID_ARGUMENT, "volume name longer than 64 bytes");
		return false;
	}
	snprintf(c->volume, sizeof(c->volume), "%s", volume);
	if (c->volume[0]) {
		bool found = false;
		pthread_mutex_lock(&model.mu);
		for (int i = 0; i < NVOLS; i++)
			found |= strcmp(model.vols[i].name, c->volume) == 0;
		pthread_mutex_unlock(&model.mu);
		if (!found) {
			char msg[128];
			snprintf(msg, sizeof(msg), "no volume '%s' on this host", c->volume);
			finish(c, GRPC_STATUS_NOT_FOUND, msg);
			return false;
		}
	}
	return true;
}

static void handle_status(struct call *c)
{
	size_t wire = 0;
	Frep__Admin__V1__StatusRequest *req = (Frep__Admin__V1__StatusRequest *)bb_to_pb(
		c->payload, &frep__admin__v1__status_request__descriptor, &wire);
	bool ok = check_volume(c, &req->base, wire, req ? req->volume : "");
	if (req)
		frep__admin__v1__status_request__free_unpacked(req, NULL);
	if (!ok)
		return;

	struct vol snap[NVOLS];
	pthread_mutex_lock(&model.mu);
	memcpy(snap, model.vols, sizeof(snap));
	pthread_mutex_unlock(&model.mu);

	Frep__Admin__V1__VolumeStatus vs[NVOLS], *pv[NVOLS];
	Frep__Admin__V1__Progress pr[NVOLS];
	Frep__Admin__V1__StatusResponse resp = FREP__ADMIN__V1__STATUS_RESPONSE__INIT;
	for (int i = 0; i < NVOLS; i++)
		if (!c->volume[0] || strcmp(snap[i].name, c->volume) == 0) {
			to_pb(&snap[i], &vs[resp.n_volumes], &pr[resp.n_volumes]);
			pv[resp.n_volumes] = &vs[resp.n_volumes];
			resp.n_volumes++;
		}
	resp.volumes = pv;

	grpc_op ops[3];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = c->out = pb_to_bb(&resp.base);
	ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
	c->sent_md = c->finishing = true;
	batch(c, T_STATUS, ops, 3);
}

/* Sends the watcher its next event if it has none in flight. */
static void pump(struct call *c)
{
	/* The lag check runs even while a send is in flight: a client that stops
	 * reading leaves that send stuck in HTTP/2 flow control for good. */
	if (!c->streaming || c->finishing || c->closed)
		return;
	struct vol v;
	int kind = 0;
	uint64_t seq = 0;
	bool have = false;
	pthread_mutex_lock(&model.mu);
	uint64_t behind = model.head - c->cursor;
	if (behind > opt.max_lag) {
		pthread_mutex_unlock(&model.mu);
		char msg[160];
		snprintf(msg, sizeof(msg), "watcher fell %" PRIu64 " events behind (limit %u): dropped", behind,
			 opt.max_lag);
		char *peer = grpc_call_get_peer(c->call);
		logf_("%s: %s", peer, msg);
		gpr_free(peer);
		grpc_call_cancel_with_status(c->call, GRPC_STATUS_RESOURCE_EXHAUSTED, msg, NULL);
		c->finishing = true;
		return;
	}
	if (c->sending) {
		pthread_mutex_unlock(&model.mu);
		return;
	}
	if (c->exists_sent < c->n_exists) {
		v = c->exists[c->exists_sent++];
		kind = FREP__ADMIN__V1__EVENT__KIND__EXISTS;
		have = true;
	}
	while (!have && c->cursor < model.head) {
		const struct event *e = &model.ring[c->cursor++ % RING];
		if (!c->volume[0] || strcmp(e->v.name, c->volume) == 0) {
			v = e->v;
			kind = e->kind;
			seq = e->seq + 1;
			have = true;
		}
	}
	pthread_mutex_unlock(&model.mu);
	if (!have)
		return;

	Frep__Admin__V1__VolumeStatus vs;
	Frep__Admin__V1__Progress pr;
	Frep__Admin__V1__Event ev = FREP__ADMIN__V1__EVENT__INIT;
	to_pb(&v, &vs, &pr);
	ev.seq = seq;
	ev.kind = (Frep__Admin__V1__Event__Kind)kind;
	ev.volume = &vs;
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = c->out = pb_to_bb(&ev.base);
	c->sending = true;
	batch(c, T_SEND, &op, 1);
}

static void watch_request(struct call *c)
{
	size_t wire = 0;
	Frep__Admin__V1__WatchRequest *req = (Frep__Admin__V1__WatchRequest *)bb_to_pb(
		c->payload, &frep__admin__v1__watch_request__descriptor, &wire);
	bool ok = check_volume(c, &req->base, wire, req ? req->volume : "");
	if (req)
		frep__admin__v1__watch_request__free_unpacked(req, NULL);
	if (!ok)
		return;
	/* The current state first, then every change from the same instant on. */
	pthread_mutex_lock(&model.mu);
	for (int i = 0; i < NVOLS; i++)
		if (!c->volume[0] || strcmp(model.vols[i].name, c->volume) == 0)
			c->exists[c->n_exists++] = model.vols[i];
	c->cursor = model.head;
	pthread_mutex_unlock(&model.mu);
	c->streaming = true;
	pump(c);
}

static void on_new(struct call *c, bool ok)
{
	if (!ok) /* the server is shutting down: this request never matched a call */
		return;
	if (!stopping)
		request_new(c->l, c->method);

	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER; /* tells us when the client goes away */
	op.data.recv_close_on_server.cancelled = &c->cancelled;
	batch(c, T_CLOSE, &op, 1);

	if (c->method < 0) {
		char *m = grpc_slice_to_c_string(c->details.method), msg[300];
		snprintf(msg, sizeof(msg), "unknown method %.250s", m);
		gpr_free(m);
		finish(c, GRPC_STATUS_UNIMPLEMENTED, msg);
	} else if (c->l->tls && !authorized(c)) {
		finish(c, GRPC_STATUS_PERMISSION_DENIED, "this identity may not use the admin API");
	} else if (c->method == M_STATUS) {
		handle_status(c);
	} else {
		grpc_op ops[2];
		memset(ops, 0, sizeof(ops));
		ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
		ops[1].op = GRPC_OP_RECV_MESSAGE;
		ops[1].data.recv_message.recv_message = &c->payload;
		c->sent_md = true;
		batch(c, T_RECV, ops, 2);
	}
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
	case T_RECV:
		if (!ok)
			break; /* the call died; T_CLOSE follows */
		if (stopping)
			finish(c, GRPC_STATUS_UNAVAILABLE, "frep is shutting down");
		else if (!c->payload)
			finish(c, GRPC_STATUS_INVALID_ARGUMENT, "Watch needs a WatchRequest message");
		else
			watch_request(c);
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
		if (c->streaming && c->cancelled && !stopping) {
			char *peer = grpc_call_get_peer(c->call);
			logf_("watcher %s went away", peer);
			gpr_free(peer);
		}
		break;
	default:
		break;
	}
	maybe_free(c);
}

static void begin_shutdown(void)
{
	stopping = true;
	stop_at = now_ms();
	for (unsigned i = 0; i < n_listeners; i++) {
		struct listener *l = &listeners[i];
		static struct tag shut_tags[2];
		shut_tags[i] = (struct tag){ .k = T_SHUTDOWN, .l = l };
		grpc_server_shutdown_and_notify(l->srv, cq, &shut_tags[i]);
	}
	/* Watch streams never end by themselves: end them with a status. */
	for (struct call *c = calls; c; c = c->next)
		if (c->streaming && !c->finishing && !c->closed) {
			if (!c->sending)
				finish(c, GRPC_STATUS_UNAVAILABLE, "frep is shutting down");
			else {
				grpc_call_cancel_with_status(c->call, GRPC_STATUS_UNAVAILABLE, "frep is shutting down",
							     NULL);
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
		grpc_event ev = grpc_completion_queue_next(cq, tick, NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE)
			on_event(ev.tag, ev.success != 0);
		if (stop && !stopping)
			begin_shutdown();
		if (!stopping)
			for (struct call *c = calls; c; c = c->next)
				pump(c);
		/* A watcher that never reads keeps its call open: after a grace
		 * period, cut every call still running. */
		if (stopping && !cancelled_all && now_ms() - stop_at > 1000) {
			for (unsigned i = 0; i < n_listeners; i++)
				grpc_server_cancel_all_calls(listeners[i].srv);
			cancelled_all = true;
		}
		bool all_shut = true;
		for (unsigned i = 0; i < n_listeners; i++)
			all_shut &= listeners[i].shut;
		if (stopping && all_shut && !calls && !cq_shut) {
			for (unsigned i = 0; i < n_listeners; i++)
				grpc_server_destroy(listeners[i].srv);
			grpc_completion_queue_shutdown(cq);
			cq_shut = true;
		}
	}
	grpc_completion_queue_destroy(cq);
	return NULL;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		fprintf(stderr, "admin-poc: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, m);
	fclose(f);
	fclose(m);
	return buf; /* NUL-terminated, as gRPC wants PEM */
}

static void load_allow(const char *path)
{
	FILE *f = fopen(path, "re");
	char line[256];
	if (!f) {
		fprintf(stderr, "admin-poc: --admin-allow %s: %s\n", path, strerror(errno));
		exit(2);
	}
	while (fgets(line, sizeof(line), f) && n_allow < MAX_ALLOW) {
		line[strcspn(line, "#\r\n")] = '\0';
		if (line[0])
			snprintf(allow[n_allow++], sizeof(allow[0]), "%.64s", line);
	}
	fclose(f);
}

/* grpc unlinks whatever socket is at PATH (grpc/grpc#17122): refuse to steal
 * the socket of a daemon that still answers on it. */
static void check_unix_path(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return;
	if (!S_ISSOCK(st.st_mode)) {
		fprintf(stderr, "admin-poc: --admin %s exists and is not a socket\n", path);
		exit(2);
	}
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		fprintf(stderr, "admin-poc: --admin %s: another daemon is serving it\n", path);
		exit(2);
	}
	if (fd >= 0)
		close(fd);
}

static void add_listener(bool tls)
{
	grpc_arg args[] = {
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, .value.integer = 64 * 1024 },
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_CONCURRENT_STREAMS, .value.integer = 32 },
	};
	grpc_channel_args cargs = { .num_args = 2, .args = args };
	struct listener *l = &listeners[n_listeners++];
	l->srv = grpc_server_create(&cargs, NULL);
	l->tls = tls;
	grpc_server_register_completion_queue(l->srv, cq, NULL);
	for (unsigned m = 0; m < M_COUNT; m++) {
		char path[128];
		method_path(path, sizeof(path), m);
		l->methods[m] = grpc_server_register_method(
			l->srv, path, NULL,
			m == M_STATUS ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE, 0);
	}
	grpc_server_credentials *creds;
	char addr[160];
	if (!tls) {
		check_unix_path(opt.unix_path);
		snprintf(addr, sizeof(addr), "unix:%s", opt.unix_path);
		creds = grpc_insecure_server_credentials_create();
	} else {
		char *ca = slurp(opt.ca), *cert = slurp(opt.cert), *key = slurp(opt.key);
		grpc_ssl_pem_key_cert_pair pair = { .private_key = key, .cert_chain = cert };
		grpc_ssl_server_certificate_config *cfg = grpc_ssl_server_certificate_config_create(ca, &pair, 1);
		grpc_ssl_server_credentials_options *o = grpc_ssl_server_credentials_create_options_using_config(
			GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, cfg);
		creds = grpc_ssl_server_credentials_create_with_options(o); /* owns o, which owns cfg */
		free(ca);
		free(cert);
		free(key);
		snprintf(addr, sizeof(addr), "%s", opt.listen);
	}
	/* umask is per process: this is where the socket file is made (bind runs
	 * inside add_http2_port), so 0177 here gives mode 0600 with no window. */
	mode_t old = umask(0177);
	int port = grpc_server_add_http2_port(l->srv, addr, creds);
	umask(old);
	grpc_server_credentials_release(creds);
	if (port == 0) {
		fprintf(stderr, "admin-poc: cannot listen on %s\n", addr);
		exit(2);
	}
	if (tls)
		snprintf(l->name, sizeof(l->name), "tls:%s (port %d)", addr, port);
	else
		snprintf(l->name, sizeof(l->name), "%s", addr);
	if (!tls) {
		struct stat st;
		if (stat(opt.unix_path, &st) == 0)
			logf_("admin on %s, mode %04o before grpc_server_start", addr, st.st_mode & 07777);
	} else {
		logf_("admin on tls port %d (client certificates required, %u identities allowed)", port, n_allow);
	}
}

static int parse_args(int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name, field)                                  \
	if (strcmp(a, name) == 0 && v) {                  \
		field = v;                                \
		i++;                                      \
		continue;                                 \
	}
		if (strcmp(a, "--admin") == 0 && v && strncmp(v, "unix:", 5) == 0) {
			opt.unix_path = v + 5;
			i++;
			continue;
		}
		OPT("--admin-listen", opt.listen)
		OPT("--admin-cert", opt.cert)
		OPT("--admin-key", opt.key)
		OPT("--admin-ca", opt.ca)
		OPT("--admin-allow", opt.allow)
		if (strcmp(a, "--max-lag") == 0 && v) {
			opt.max_lag = (unsigned)atoi(v);
			i++;
			continue;
		}
		if (strcmp(a, "--event-ms") == 0 && v) {
			opt.event_ms = (unsigned)atoi(v);
			i++;
			continue;
		}
		if (strcmp(a, "--no-unimplemented") == 0) {
			opt.no_unimplemented = true;
			continue;
		}
		fprintf(stderr, "usage: admin-poc --admin unix:PATH [--admin-listen HOST:PORT --admin-cert F "
				"--admin-key F --admin-ca F --admin-allow F] [--max-lag N] [--event-ms MS]\n");
		return 2;
	}
	if (!opt.unix_path) {
		fprintf(stderr, "admin-poc: --admin unix:PATH is required\n");
		return 2;
	}
	if (opt.listen && !(opt.cert && opt.key && opt.ca && opt.allow)) {
		fprintf(stderr, "admin-poc: --admin-listen needs --admin-cert, --admin-key, --admin-ca, --admin-allow\n");
		return 2;
	}
	if (opt.allow)
		load_allow(opt.allow);
	return 0;
}

static pthread_t rep, adm;

/* Everything the daemon needs: called once other threads may run (nbdkit: .after_fork). */
static void admin_start(void)
{
	gpr_set_log_function(grpc_log_hook);
	grpc_init();
	logf_("grpc core %s", grpc_version_string());
	cq = grpc_completion_queue_create_for_next(NULL);
	add_listener(false);
	if (opt.listen)
		add_listener(true);
	for (unsigned i = 0; i < n_listeners; i++) {
		grpc_server_start(listeners[i].srv);
		for (int m = 0; m < M_COUNT; m++)
			request_new(&listeners[i], m);
		if (!opt.no_unimplemented)
			request_new(&listeners[i], -1);
	}
	pthread_create(&rep, NULL, replication_main, NULL);
	pthread_create(&adm, NULL, admin_main, NULL);
	logf_("ready");
}

static void admin_stop(void)
{
	stop = true;
	pthread_join(adm, NULL);
	pthread_join(rep, NULL);
	grpc_shutdown();
	logf_("stopped");
}

#ifndef NBDKIT_PLUGIN
int main(int argc, char **argv)
{
	if (parse_args(argc - 1, argv + 1) != 0)
		return 2;
	/* gRPC's threads inherit this mask: only sigwait below sees SIGTERM/SIGINT. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	admin_start();
	int sig;
	sigwait(&set, &sig);
	logf_("signal %d: stopping", sig);
	admin_stop();
	return 0;
}
#else
#define NBDKIT_API_VERSION 2
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
#include <nbdkit-plugin.h>

static char *plugin_argv[16];
static int plugin_argc;

/* admin=unix:PATH etc.: the same options as the daemon, as KEY=VALUE. */
static int p_config(const char *key, const char *value)
{
	if (plugin_argc + 2 > 16)
		return -1;
	char *k;
	if (asprintf(&k, "--%s", key) < 0)
		return -1;
	plugin_argv[plugin_argc++] = k;
	plugin_argv[plugin_argc++] = strdup(value);
	return 0;
}
static int p_config_complete(void) { return parse_args(plugin_argc, plugin_argv); }
static int p_after_fork(void) { if (!getenv("POC_NO_GRPC")) admin_start(); return 0; }
static void p_cleanup(void) { if (!getenv("POC_NO_GRPC")) admin_stop(); }
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif
static void p_unload(void)
{
	for (int i = 0; i < plugin_argc; i++)
		free(plugin_argv[i]);
#if defined(__SANITIZE_ADDRESS__)
	/* Sanitizer builds only: nbdkit with ASan preloaded deadlocks in
	 * p11-kit's destructor once OpenSSL has used newlocale (the setlocale
	 * lock is already unbalanced before main). Check leaks now, then skip
	 * the exit handlers. */
	if (getenv("POC_EXIT_EARLY")) {
		int leaks = __lsan_do_recoverable_leak_check();
		_exit(leaks ? 23 : 0);
	}
#endif
}
static void *p_open(int readonly) { (void)readonly; return NBDKIT_HANDLE_NOT_NEEDED; }
static int64_t p_get_size(void *h) { (void)h; return 1 << 20; }
static int p_pread(void *h, void *buf, uint32_t n, uint64_t off, uint32_t flags)
{
	(void)h; (void)off; (void)flags;
	memset(buf, 0, n);
	return 0;
}
static struct nbdkit_plugin plugin = {
	.name = "adminpoc", .config = p_config, .config_complete = p_config_complete,
	.after_fork = p_after_fork, .cleanup = p_cleanup, .unload = p_unload,
	.open = p_open, .get_size = p_get_size, .pread = p_pread,
};
NBDKIT_REGISTER_PLUGIN(plugin)
#endif
