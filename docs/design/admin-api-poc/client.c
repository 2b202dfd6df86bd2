/*
 * PoC of frepctl's transport on the gRPC core C API: status [VOLUME] and
 * watch [VOLUME] over a unix socket or TLS with a client certificate.
 * Exit codes as issue 9 wants: 0 ok, 1 the operation failed, 2 usage,
 * 3 cannot reach the daemon.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "pbgrpc.h"

static const char *status_name(grpc_status_code c)
{
	static const char *n[] = { "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
				   "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
				   "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
				   "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED" };
	return (unsigned)c < sizeof(n) / sizeof(n[0]) ? n[c] : "?";
}

static int exit_code(grpc_status_code c)
{
	if (c == GRPC_STATUS_OK)
		return 0;
	/* UNAVAILABLE: no socket, refused, TLS handshake failed; DEADLINE_EXCEEDED: it never answered. */
	return c == GRPC_STATUS_UNAVAILABLE || c == GRPC_STATUS_DEADLINE_EXCEEDED ? 3 : 1;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		perror(path);
		exit(2);
	}
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	int ch;
	while ((ch = fgetc(f)) != EOF)
		fputc(ch, m);
	fclose(f);
	fclose(m);
	return buf;
}

static void print_vol(const Frep__Admin__V1__VolumeStatus *v)
{
	printf("%s role:%s state:%s committed:%" PRIu64 " acked:%" PRIu64 " lag_tx:%" PRIu64, v->name, v->role,
	       v->state, v->committed_txid, v->acked_txid, v->lag_tx);
	if (v->progress && v->progress->total_bytes && strcmp(v->state, "COPY") == 0)
		printf(" copy:%" PRIu64 "%% eta:%" PRIu64 "s", v->progress->done_bytes * 100 / v->progress->total_bytes,
		       v->progress->eta_seconds);
	printf("\n");
}

struct rpc {
	grpc_call *call;
	grpc_completion_queue *cq;
	grpc_metadata_array md, trailers;
	grpc_status_code status;
	grpc_slice details;
};

/* Waits for one batch: a pluck queue, since this thread is the only one. */
static bool wait_tag(struct rpc *r, void *tag)
{
	grpc_event ev = grpc_completion_queue_pluck(r->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static void start(struct rpc *r, const grpc_op *ops, size_t n, void *tag)
{
	grpc_call_error e = grpc_call_start_batch(r->call, ops, n, tag, NULL);
	if (e != GRPC_CALL_OK) {
		fprintf(stderr, "frepctl: %s\n", grpc_call_error_to_string(e));
		exit(1);
	}
}

static int finish_rpc(struct rpc *r, const char *what)
{
	int rc = exit_code(r->status);
	if (r->status != GRPC_STATUS_OK) {
		char *d = grpc_slice_to_c_string(r->details);
		fprintf(stderr, "frepctl: %s: %s: %s\n", what, status_name(r->status), d);
		gpr_free(d);
	}
	grpc_slice_unref(r->details);
	grpc_metadata_array_destroy(&r->md);
	grpc_metadata_array_destroy(&r->trailers);
	grpc_call_unref(r->call);
	return rc;
}

/* Sends the one request and asks for the status; the caller reads messages. */
static void begin(struct rpc *r, grpc_channel *ch, unsigned method, const ProtobufCMessage *req,
		  gpr_timespec deadline)
{
	char path[128];
	method_path(path, sizeof(path), method);
	grpc_slice m = grpc_slice_from_copied_string(path);
	r->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, r->cq, m, NULL, deadline, NULL);
	grpc_slice_unref(m);
	grpc_metadata_array_init(&r->md);
	grpc_metadata_array_init(&r->trailers);
	r->details = grpc_empty_slice();

	grpc_byte_buffer *bb = pb_to_bb(req);
	grpc_op ops[5];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &r->md;
	start(r, ops, 4, (void *)1);
	wait_tag(r, (void *)1); /* fails (harmlessly) when the server refuses at once */
	grpc_byte_buffer_destroy(bb);

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &r->trailers;
	ops[0].data.recv_status_on_client.status = &r->status;
	ops[0].data.recv_status_on_client.status_details = &r->details;
	start(r, ops, 1, (void *)2);
}

/* NULL at the end of the stream (the status then follows on tag 2). */
static grpc_byte_buffer *recv_one(struct rpc *r)
{
	grpc_byte_buffer *bb = NULL;
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &bb;
	start(r, &op, 1, (void *)3);
	wait_tag(r, (void *)3);
	return bb;
}

static void usage(void)
{
	fprintf(stderr, "usage: frepctl-poc (--admin unix:PATH | --connect HOST:PORT --ca F --cert F --key F "
			"[--server-name NAME]) [--timeout SECS] (status [VOLUME] | watch [VOLUME] [--count N] "
			"[--stall SECS])\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *admin = NULL, *connect = NULL, *ca = NULL, *cert = NULL, *key = NULL, *sni = NULL;
	const char *cmd = NULL, *volume = "";
	int timeout = 5, count = 5, stall = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--admin") && v && !strncmp(v, "unix:", 5))
			admin = argv[++i];
		else if (!strcmp(a, "--connect") && v)
			connect = argv[++i];
		else if (!strcmp(a, "--ca") && v)
			ca = argv[++i];
		else if (!strcmp(a, "--cert") && v)
			cert = argv[++i];
		else if (!strcmp(a, "--key") && v)
			key = argv[++i];
		else if (!strcmp(a, "--server-name") && v)
			sni = argv[++i];
		else if (!strcmp(a, "--timeout") && v)
			timeout = atoi(argv[++i]);
		else if (!strcmp(a, "--count") && v)
			count = atoi(argv[++i]);
		else if (!strcmp(a, "--stall") && v)
			stall = atoi(argv[++i]);
		else if (!cmd && (!strcmp(a, "status") || !strcmp(a, "watch")))
			cmd = a;
		else if (cmd && a[0] != '-')
			volume = a;
		else
			usage();
	}
	if (!cmd || !!admin == !!connect || (connect && !(ca && cert && key)))
		usage();

	grpc_init();
	grpc_channel_credentials *creds;
	grpc_arg arg = { .type = GRPC_ARG_STRING, .key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, .value.string = (char *)sni };
	grpc_channel_args args = { .num_args = sni ? 1 : 0, .args = &arg };
	if (admin) {
		creds = grpc_insecure_credentials_create();
	} else {
		char *pem_ca = slurp(ca), *pem_cert = slurp(cert), *pem_key = slurp(key);
		grpc_ssl_pem_key_cert_pair pair = { .private_key = pem_key, .cert_chain = pem_cert };
		creds = grpc_ssl_credentials_create(pem_ca, &pair, NULL, NULL); /* copies the PEM */
		free(pem_ca);
		free(pem_cert);
		free(pem_key);
	}
	grpc_channel *ch = grpc_channel_create(admin ? admin : connect, creds, &args);
	grpc_channel_credentials_release(creds);

	struct rpc r = { .cq = grpc_completion_queue_create_for_pluck(NULL) };
	int rc;
	if (!strcmp(cmd, "status")) {
		Frep__Admin__V1__StatusRequest req = FREP__ADMIN__V1__STATUS_REQUEST__INIT;
		req.volume = (char *)volume;
		gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(timeout, GPR_TIMESPAN));
		begin(&r, ch, 0, &req.base, dl);
		grpc_byte_buffer *bb = recv_one(&r);
		wait_tag(&r, (void *)2);
		if (bb && r.status == GRPC_STATUS_OK) {
			Frep__Admin__V1__StatusResponse *resp = (Frep__Admin__V1__StatusResponse *)bb_to_pb(
				bb, &frep__admin__v1__status_response__descriptor, NULL);
			for (size_t i = 0; resp && i < resp->n_volumes; i++)
				print_vol(resp->volumes[i]);
			if (resp)
				frep__admin__v1__status_response__free_unpacked(resp, NULL);
		}
		if (bb)
			grpc_byte_buffer_destroy(bb);
		rc = finish_rpc(&r, "status");
	} else {
		Frep__Admin__V1__WatchRequest req = FREP__ADMIN__V1__WATCH_REQUEST__INIT;
		req.volume = (char *)volume;
		begin(&r, ch, 1, &req.base, gpr_inf_future(GPR_CLOCK_REALTIME));
		int got = 0;
		grpc_byte_buffer *bb;
		while ((count == 0 || got < count) && (bb = recv_one(&r))) {
			Frep__Admin__V1__Event *ev = (Frep__Admin__V1__Event *)bb_to_pb(
				bb, &frep__admin__v1__event__descriptor, NULL);
			grpc_byte_buffer_destroy(bb);
			if (!ev)
				break;
			const ProtobufCEnumValue *k = protobuf_c_enum_descriptor_get_value(
				&frep__admin__v1__event__kind__descriptor, ev->kind);
			printf("event seq=%" PRIu64 " %s ", ev->seq, k ? k->name : "?");
			if (ev->volume)
				print_vol(ev->volume);
			fflush(stdout);
			frep__admin__v1__event__free_unpacked(ev, NULL);
			if (++got == 1 && stall) {
				/* A watcher that stops reading: the server must drop it, not wait. */
				fprintf(stderr, "frepctl: not reading for %d s\n", stall);
				sleep((unsigned)stall);
				stall = 0;
				count = got + 5000; /* then drain: the server should have dropped us */
			}
		}
		if (count && got >= count)
			grpc_call_cancel(r.call, NULL); /* the user is done: CANCELLED is expected */
		wait_tag(&r, (void *)2);
		if (count && got >= count && r.status == GRPC_STATUS_CANCELLED)
			r.status = GRPC_STATUS_OK;
		fprintf(stderr, "frepctl: watch: %d events\n", got);
		rc = finish_rpc(&r, "watch");
	}
	grpc_completion_queue_shutdown(r.cq);
	while (grpc_completion_queue_pluck(r.cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(r.cq);
	grpc_channel_destroy(ch);
	grpc_shutdown();
	return rc;
}
