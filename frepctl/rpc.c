/*
 * frepctl's transport: every gRPC call of the program is in this file (the
 * core C API is meant for wrapped languages and renames things between
 * versions; admin-api.md §7.3). Channels over a unix socket or TLS, unary
 * and server-streaming calls on completion queues, deadlines, status codes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "admin.h"
#include "frepctl.h"

enum {
	/* A reply larger than this is refused by gRPC: Status of a few hundred volumes fits. */
	RPC_MAX_RECEIVE = 16 << 20,
};

struct rpc_conn {
	grpc_channel *ch;
	char *target;
};

enum tag_kind { TAG_START, TAG_MESSAGE, TAG_STATUS, TAG_COUNT };

struct rpc_tag {
	struct rpc_call *call;
	enum tag_kind kind;
};

/*
 * A call runs three batches at once: the request (with the initial metadata
 * it gets back), the status, and one message receive at a time. It is over
 * once all three have come back; only then may it be unreffed.
 */
struct rpc_call {
	struct rpc_conn *conn;
	grpc_call *call;
	const ProtobufCMessageDescriptor *output;
	struct rpc_tag tags[TAG_COUNT];
	bool pending[TAG_COUNT];
	bool reported; /* RPC_EV_DONE delivered */
	grpc_metadata_array initial_md, trailing_md;
	grpc_byte_buffer *recv;
	grpc_status_code status;
	grpc_slice details;
	struct rpc_result result;
	void *user;
};

/* One queue serves every call started with rpc_start. */
static grpc_completion_queue *shared_cq;
static int opened;

/*
 * gRPC's own log lines (connection errors, TLS handshake failures) repeat what
 * the call's status says, in another format, mid-output: silent unless the
 * user asks for them with gRPC's GRPC_VERBOSITY.
 */
static void quiet_log(gpr_log_func_args *args)
{
	(void)args;
}

static void init(void)
{
	if (opened++ > 0)
		return;
	if (!getenv("GRPC_VERBOSITY"))
		gpr_set_log_function(quiet_log);
	grpc_init();
}

struct rpc_conn *rpc_open(const char *target, const struct rpc_tls *tls, char *err, size_t err_len)
{
	char *ca = NULL, *cert = NULL, *key = NULL;
	struct rpc_conn *c = NULL;

	if (tls && (!(ca = admin_slurp("--ca", tls->ca, err, err_len)) ||
		    !(cert = admin_slurp("--cert", tls->cert, err, err_len)) ||
		    !(key = admin_slurp("--key", tls->key, err, err_len))))
		goto out;
	init();
	grpc_channel_credentials *creds;
	if (tls) {
		grpc_ssl_pem_key_cert_pair pair = { .private_key = key, .cert_chain = cert };
		creds = grpc_ssl_credentials_create(ca, &pair, NULL, NULL); /* copies the PEM */
	} else {
		creds = grpc_insecure_credentials_create();
	}
	grpc_arg args[2] = {
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
		  .value.integer = RPC_MAX_RECEIVE },
		{ .type = GRPC_ARG_STRING, .key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
		  .value.string = tls ? (char *)tls->server_name : NULL },
	};
	grpc_channel_args cargs = { .num_args = tls && tls->server_name ? 2 : 1, .args = args };
	c = calloc(1, sizeof(*c));
	c->target = strdup(target);
	c->ch = grpc_channel_create(target, creds, &cargs);
	grpc_channel_credentials_release(creds);
out:
	if (key)
		memset(key, 0, strlen(key)); /* the private key need not linger in freed memory */
	free(ca);
	free(cert);
	free(key);
	return c;
}

void rpc_close(struct rpc_conn *c)
{
	if (!c)
		return;
	grpc_channel_destroy(c->ch);
	free(c->target);
	free(c);
}

const char *rpc_target(const struct rpc_conn *c)
{
	return c->target;
}

static void start_batch(struct rpc_call *rc, const grpc_op *ops, size_t n, enum tag_kind kind)
{
	rc->pending[kind] = true;
	grpc_call_error e = grpc_call_start_batch(rc->call, ops, n, &rc->tags[kind], NULL);
	if (e != GRPC_CALL_OK) {
		/* Only a bug of ours gets here (ops in the wrong order or twice). */
		fprintf(stderr, PROG ": internal error: grpc_call_start_batch: %s\n",
			grpc_call_error_to_string(e));
		abort();
	}
}

static void arm_receive(struct rpc_call *rc)
{
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &rc->recv;
	start_batch(rc, &op, 1, TAG_MESSAGE);
}

static struct rpc_call *call_begin(struct rpc_conn *c, grpc_completion_queue *cq, const char *method,
				   const ProtobufCMessage *req, int timeout_ms, void *user)
{
	const ProtobufCServiceDescriptor *sd = &frep__admin__v1__admin__descriptor;
	const ProtobufCMethodDescriptor *md = protobuf_c_service_descriptor_get_method_by_name(sd, method);
	if (!md || md->input != req->descriptor) {
		fprintf(stderr, PROG ": internal error: no method %s taking %s\n", method,
			req->descriptor->name);
		abort();
	}
	struct rpc_call *rc = calloc(1, sizeof(*rc));
	rc->conn = c;
	rc->output = md->output;
	rc->user = user;
	for (int k = 0; k < TAG_COUNT; k++)
		rc->tags[k] = (struct rpc_tag){ .call = rc, .kind = k };
	grpc_metadata_array_init(&rc->initial_md);
	grpc_metadata_array_init(&rc->trailing_md);
	rc->details = grpc_empty_slice();

	/* The path comes from the .proto's service descriptor: "/frep.admin.v1.Admin/Status". */
	char path[256];
	snprintf(path, sizeof(path), "/%s/%s", sd->name, md->name);
	grpc_slice mslice = grpc_slice_from_copied_string(path);
	gpr_timespec deadline = timeout_ms < 0 ? gpr_inf_future(GPR_CLOCK_REALTIME)
			      : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
					     gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
	rc->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, mslice, NULL,
					   deadline, NULL);
	grpc_slice_unref(mslice);

	size_t len = protobuf_c_message_get_packed_size(req);
	grpc_slice s = grpc_slice_malloc(len);
	protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);

	grpc_op ops[4];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &rc->initial_md;
	start_batch(rc, ops, 4, TAG_START);
	grpc_byte_buffer_destroy(bb); /* the batch holds its own reference */

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &rc->trailing_md;
	ops[0].data.recv_status_on_client.status = &rc->status;
	ops[0].data.recv_status_on_client.status_details = &rc->details;
	start_batch(rc, ops, 1, TAG_STATUS);
	arm_receive(rc);
	return rc;
}

static bool call_over(const struct rpc_call *rc)
{
	return !rc->pending[TAG_START] && !rc->pending[TAG_MESSAGE] && !rc->pending[TAG_STATUS];
}

static void set_result(struct rpc_call *rc)
{
	rc->result.code = rc->status;
	size_t n = GRPC_SLICE_LENGTH(rc->details);
	if (n >= sizeof(rc->result.details))
		n = sizeof(rc->result.details) - 1;
	memcpy(rc->result.details, GRPC_SLICE_START_PTR(rc->details), n);
	rc->result.details[n] = '\0';
}

/*
 * Takes one completion. A message is unpacked and the next receive armed at
 * once: one message in hand and one in flight, so a reader that falls behind
 * still holds the stream back through flow control, as the server expects.
 */
static void complete(struct rpc_tag *t, bool success, struct rpc_event *ev)
{
	struct rpc_call *rc = t->call;
	rc->pending[t->kind] = false;
	if (t->kind == TAG_START && success) /* the daemon's initial metadata came back */
		rc->result.reached = true;
	ev->type = RPC_EV_TIMEOUT;
	ev->call = rc;
	ev->msg = NULL;
	if (t->kind == TAG_MESSAGE && success && rc->recv) {
		grpc_byte_buffer_reader r;
		ProtobufCMessage *m = NULL;
		if (grpc_byte_buffer_reader_init(&r, rc->recv)) {
			grpc_slice s = grpc_byte_buffer_reader_readall(&r); /* also decompresses */
			grpc_byte_buffer_reader_destroy(&r);
			m = protobuf_c_message_unpack(rc->output, NULL, GRPC_SLICE_LENGTH(s),
						      GRPC_SLICE_START_PTR(s));
			grpc_slice_unref(s);
		}
		grpc_byte_buffer_destroy(rc->recv);
		rc->recv = NULL;
		if (!m) {
			grpc_call_cancel_with_status(rc->call, GRPC_STATUS_INTERNAL,
						     "the daemon sent a message frepctl cannot parse", NULL);
		} else {
			ev->type = RPC_EV_MESSAGE;
			ev->msg = m;
			arm_receive(rc);
			return;
		}
	}
	if (t->kind == TAG_STATUS)
		set_result(rc);
	if (call_over(rc) && !rc->reported) {
		rc->reported = true;
		ev->type = RPC_EV_DONE;
	}
}

static void next_event(grpc_completion_queue *cq, int timeout_ms, struct rpc_event *ev)
{
	gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
					     gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
	for (;;) {
		grpc_event e = grpc_completion_queue_next(cq, deadline, NULL);
		if (e.type != GRPC_OP_COMPLETE) {
			*ev = (struct rpc_event){ .type = RPC_EV_TIMEOUT };
			return;
		}
		complete(e.tag, e.success, ev);
		if (ev->type != RPC_EV_TIMEOUT)
			return;
	}
}

static void drain_destroy(grpc_completion_queue *cq)
{
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
}

int rpc_unary(struct rpc_conn *c, const char *method, const ProtobufCMessage *req,
	      int timeout_ms, ProtobufCMessage **resp, struct rpc_result *res)
{
	/* A queue of its own: the events of calls started with rpc_start stay queued for rpc_wait. */
	grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
	struct rpc_call *rc = call_begin(c, cq, method, req, timeout_ms, NULL);
	ProtobufCMessage *got = NULL;
	struct rpc_event ev;
	do {
		/* The deadline bounds the call; the wait itself need not be bounded. */
		next_event(cq, 60 * 60 * 1000, &ev);
		if (ev.type == RPC_EV_MESSAGE) {
			if (got) /* a unary method answers once; keep the first */
				protobuf_c_message_free_unpacked(ev.msg, NULL);
			else
				got = ev.msg;
		}
	} while (ev.type != RPC_EV_DONE);
	*res = rc->result;
	rpc_call_free(rc);
	drain_destroy(cq);
	if (res->code == GRPC_STATUS_OK && !got) {
		res->code = GRPC_STATUS_INTERNAL;
		snprintf(res->details, sizeof(res->details), "the daemon sent no answer");
	}
	if (res->code != GRPC_STATUS_OK) {
		if (got)
			protobuf_c_message_free_unpacked(got, NULL);
		return -1;
	}
	*resp = got;
	return 0;
}

struct rpc_call *rpc_start(struct rpc_conn *c, const char *method, const ProtobufCMessage *req,
			   int timeout_ms, void *user)
{
	if (!shared_cq)
		shared_cq = grpc_completion_queue_create_for_next(NULL);
	return call_begin(c, shared_cq, method, req, timeout_ms, user);
}

void rpc_wait(int timeout_ms, struct rpc_event *ev)
{
	if (!shared_cq) {
		*ev = (struct rpc_event){ .type = RPC_EV_TIMEOUT };
		return;
	}
	next_event(shared_cq, timeout_ms, ev);
}

void rpc_cancel(struct rpc_call *call)
{
	grpc_call_cancel(call->call, NULL);
}

void *rpc_call_user(const struct rpc_call *call)
{
	return call->user;
}

struct rpc_conn *rpc_call_conn(const struct rpc_call *call)
{
	return call->conn;
}

const struct rpc_result *rpc_call_result(const struct rpc_call *call)
{
	return &call->result;
}

void rpc_call_free(struct rpc_call *rc)
{
	if (!rc)
		return;
	grpc_call_unref(rc->call);
	grpc_slice_unref(rc->details);
	grpc_metadata_array_destroy(&rc->initial_md);
	grpc_metadata_array_destroy(&rc->trailing_md);
	free(rc);
}

void rpc_shutdown(void)
{
	if (shared_cq) {
		drain_destroy(shared_cq);
		shared_cq = NULL;
	}
	for (; opened > 0; opened--)
		grpc_shutdown();
}

const char *rpc_code_name(int code)
{
	static const char *const names[] = {
		"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
		"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
		"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
		"UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
	};
	return code >= 0 && (size_t)code < sizeof(names) / sizeof(names[0]) ? names[code] : "UNKNOWN";
}

int rpc_exit_code(int code)
{
	if (code == GRPC_STATUS_OK)
		return EXIT_OK;
	/* UNAVAILABLE: no socket, refused, TLS handshake failed, shutting down;
	 * DEADLINE_EXCEEDED: nothing answered in time. */
	if (code == GRPC_STATUS_UNAVAILABLE || code == GRPC_STATUS_DEADLINE_EXCEEDED)
		return EXIT_UNREACHABLE;
	return EXIT_FAILED;
}

void rpc_explain(const struct rpc_conn *c, struct rpc_result *res)
{
	if (res->code != GRPC_STATUS_UNAVAILABLE || res->reached || strncmp(c->target, "unix:", 5) != 0)
		return;
	const char *path = c->target + strlen("unix:");
	struct stat st;
	const char *why = NULL;
	int err = 0;
	if (lstat(path, &st) < 0) {
		err = errno;
		why = err == ENOENT ? "no such socket (daemon not running, or started without this --admin)"
				    : NULL;
	} else if (!S_ISSOCK(st.st_mode)) {
		why = "not a socket";
	} else {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		if (strlen(path) >= sizeof(sa.sun_path)) {
			why = "path too long for a unix socket";
		} else {
			strcpy(sa.sun_path, path);
			int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
			if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
				err = errno;
			if (fd >= 0)
				close(fd);
			if (fd < 0 || !err)
				return; /* it is served: gRPC's reason ("frep is shutting down") stands */
			why = err == ECONNREFUSED ? "stale socket (daemon not running)" : NULL;
		}
	}
	if (err == EACCES)
		why = "permission denied (admin sockets are 0600, run as root)";
	if (why)
		snprintf(res->details, sizeof(res->details), "%s", why);
	else
		snprintf(res->details, sizeof(res->details), "%s", strerror(err));
}
