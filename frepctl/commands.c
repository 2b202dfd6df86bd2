/* frepctl's commands on one volume: pause, resume, resync, set-rate, verify, promote. */
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "frepctl.h"

typedef Frep__Admin__V1__CommandResponse CommandResponse;

/* Sends one request to the daemon that has the volume; *resp on success. */
static int request(struct ctl *c, int target, const char *method, const ProtobufCMessage *req,
		   ProtobufCMessage **resp)
{
	struct rpc_result res;
	/* A promotion waits for a fenced session to end and replays a journal: seconds. */
	int timeout = strcmp(method, "Promote") == 0 || strcmp(method, "Switchover") == 0 ?
			      PROMOTE_TIMEOUT_MS : RPC_TIMEOUT_MS;
	if (rpc_unary(c->conns[target], method, req, timeout, resp, &res) < 0)
		return report(c, c->conns[target], &res);
	return EXIT_OK;
}

/* The daemon's words ("pausing db: ..."; they name the volume) or the JSON of the answer. */
static void print_taken(const struct ctl *c, const CommandResponse *r)
{
	if (c->json)
		print_json(pb_to_json(&r->base));
	else if (*r->message)
		printf("%s\n", r->message);
	else
		printf("%s: %s: done\n", c->cmd, c->volume);
}

/* A command answered by a CommandResponse: sent, and its answer printed unless quiet. */
static int command(struct ctl *c, int target, const char *method, const ProtobufCMessage *req,
		   bool quiet)
{
	ProtobufCMessage *resp;
	int rc = request(c, target, method, req, &resp);
	if (rc != EXIT_OK)
		return rc;
	if (!quiet)
		print_taken(c, (const CommandResponse *)resp);
	protobuf_c_message_free_unpacked(resp, NULL);
	return EXIT_OK;
}

int cmd_volume(struct ctl *c, const char *method)
{
	int rc, target = route(c, &rc);
	if (target < 0)
		return rc;
	Frep__Admin__V1__VolumeRequest req = FREP__ADMIN__V1__VOLUME_REQUEST__INIT;
	req.volume = (char *)c->volume;
	return command(c, target, method, &req.base, false);
}

int cmd_set_rate(struct ctl *c, uint64_t bytes_per_second)
{
	int rc, target = route(c, &rc);
	if (target < 0)
		return rc;
	Frep__Admin__V1__SetRateRequest req = FREP__ADMIN__V1__SET_RATE_REQUEST__INIT;
	req.volume = (char *)c->volume;
	req.bytes_per_second = bytes_per_second;
	return command(c, target, "SetRate", &req.base, false);
}

int cmd_promote(struct ctl *c, bool force)
{
	int rc, target = route(c, &rc);
	if (target < 0)
		return rc;
	Frep__Admin__V1__PromoteRequest req = FREP__ADMIN__V1__PROMOTE_REQUEST__INIT;
	req.volume = (char *)c->volume;
	req.force = force;
	return command(c, target, "Promote", &req.base, false);
}

/* Adopt on frep-server at target: the copy a demote handed over. */
static int adopt(struct ctl *c, const char *target, const char *handoff)
{
	char err[512];
	struct rpc_conn *conn = rpc_open(target, NULL, err, sizeof(err));
	if (!conn) {
		fprintf(stderr, PROG ": %s: %s\n", c->cmd, err);
		return EXIT_UNREACHABLE;
	}
	Frep__Admin__V1__AdoptRequest a = FREP__ADMIN__V1__ADOPT_REQUEST__INIT;
	a.volume = (char *)c->volume;
	a.handoff = (char *)handoff;
	ProtobufCMessage *resp;
	struct rpc_result res;
	int rc = EXIT_OK;
	if (rpc_unary(conn, "Adopt", &a.base, RPC_TIMEOUT_MS, &resp, &res) < 0) {
		rc = report(c, conn, &res);
		if (rc == EXIT_UNREACHABLE)
			fprintf(stderr, PROG ": the copy waits in %s: once frep-server runs, take it with "
				"frepctl adopt %s --handoff %s\n", handoff, c->volume, handoff);
	} else {
		print_taken(c, (const CommandResponse *)resp);
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	rpc_close(conn);
	return rc;
}

static void default_server(char *buf, size_t len, const char *given)
{
	if (given)
		snprintf(buf, len, "%s", given);
	else
		snprintf(buf, len, "unix:%s/server.sock", admin_run_dir());
}

int cmd_adopt(struct ctl *c, const char *handoff, const char *mirror_admin)
{
	char server[4200];
	default_server(server, sizeof(server), mirror_admin ? mirror_admin :
			c->targets->n == 1 ? c->targets->names[0] : NULL);
	return adopt(c, server, handoff);
}

/*
 * Fail-back on the old master's host: the fenced frep-client hands its copy
 * over (Demote), then the host's frep-server adopts it (Adopt).
 */
int cmd_demote(struct ctl *c, bool force, bool switchover, const char *mirror_admin)
{
	int rc, target = route(c, &rc);
	if (target < 0)
		return rc;
	Frep__Admin__V1__DemoteRequest req = FREP__ADMIN__V1__DEMOTE_REQUEST__INIT;
	Frep__Admin__V1__VolumeRequest vreq = FREP__ADMIN__V1__VOLUME_REQUEST__INIT;
	req.volume = vreq.volume = (char *)c->volume;
	req.force = force;
	ProtobufCMessage *resp;
	if ((rc = request(c, target, switchover ? "Switchover" : "Demote",
			  switchover ? &vreq.base : &req.base, &resp)) != EXIT_OK)
		return rc;
	const Frep__Admin__V1__DemoteResponse *d = (const void *)resp;
	if (c->json)
		print_json(pb_to_json(&d->base));
	else
		printf("%s\n", d->message);
	char handoff[4200], server[4200];
	snprintf(handoff, sizeof(handoff), "%s", d->handoff);
	protobuf_c_message_free_unpacked(resp, NULL);
	default_server(server, sizeof(server), mirror_admin);
	return adopt(c, server, handoff);
}

static int64_t mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

struct resync_wait {
	const struct ctl *c;
	struct progress_bar bar;
	bool copying; /* the volume has been seen copying since the request */
	struct json_object *final;
};

/*
 * The resync is over once the volume is back in INSYNC after copying, with no
 * full resync still pending (a request taken during another pass waits for it
 * to end: admin.proto, Resync). State is judged from events only: they come in
 * order, while a Status snapshot may have been taken before the last event.
 */
static int resync_step(void *arg, const VolumeStatus *v, const Event *e)
{
	struct resync_wait *w = arg;
	if (v->master && v->master->copy && !w->c->json)
		progress_update(&w->bar, v->master->copy);
	if (!e)
		return -1;
	if (v->state == FREP__ADMIN__V1__STATE__REPLICATE || v->state == FREP__ADMIN__V1__STATE__OUTOFSYNC)
		w->copying = true;
	if (v->state == FREP__ADMIN__V1__STATE__ERROR) {
		progress_end(&w->bar);
		fprintf(stderr, PROG ": resync %s: the volume went to ERROR: %s: %s\n", w->c->volume,
			v->last_error ? v->last_error->code : "?", v->last_error ? v->last_error->message : "");
		return EXIT_FAILED;
	}
	if (w->copying && v->state == FREP__ADMIN__V1__STATE__INSYNC &&
	    !(v->master && v->master->resync_full)) {
		if (w->c->json)
			w->final = pb_to_json(&v->base);
		return EXIT_OK;
	}
	return -1;
}

int cmd_resync(struct ctl *c, bool full, bool wait)
{
	int rc, target = route(c, &rc);
	if (target < 0)
		return rc;
	Frep__Admin__V1__ResyncRequest req = FREP__ADMIN__V1__RESYNC_REQUEST__INIT;
	req.volume = (char *)c->volume;
	req.full = full;
	if (!wait)
		return command(c, target, "Resync", &req.base, false);

	struct follow fw;
	int64_t t0 = mono_s();
	rc = follow_begin(&fw, c, target);
	if (rc == EXIT_OK)
		rc = command(c, target, "Resync", &req.base, c->json);
	if (rc == EXIT_OK) {
		struct resync_wait w = { .c = c };
		progress_init(&w.bar, stdout, c->cmd, c->volume);
		rc = follow_run(&fw, resync_step, &w);
		progress_end(&w.bar);
		if (rc == EXIT_OK && c->json)
			print_json(w.final);
		else if (rc == EXIT_OK)
			printf("%s: full resync done in %" PRId64 "s: INSYNC\n", c->volume, mono_s() - t0);
	}
	follow_end(&fw);
	return rc;
}

struct verify_wait {
	const struct ctl *c;
	uint64_t id;
	struct progress_bar bar;
};

static int verify_step(void *arg, const VolumeStatus *v, const Event *e)
{
	struct verify_wait *w = arg;
	const Frep__Admin__V1__VerifyStatus *vs = v->verify;
	if (!vs || vs->verify_id != w->id)
		return -1;
	if (vs->running) {
		if (vs->progress && !w->c->json)
			progress_update(&w->bar, vs->progress);
		return -1;
	}
	return EXIT_OK; /* finished: the result says how */
}

/* The exit code of a finished verify: 1 if regions differ and were not all repaired. */
static int verify_outcome(const struct ctl *c, const VerifyResult *r)
{
	const Frep__Admin__V1__VerifyStatus *s = r->status;
	if (!s)
		return EXIT_FAILED;
	if (strcmp(s->outcome, "ok") && strcmp(s->outcome, "mismatch") && strcmp(s->outcome, "repaired")) {
		fprintf(stderr, PROG ": verify %s: verify #%" PRIu64 " stopped: %s\n", c->volume,
			s->verify_id, s->outcome);
		return EXIT_FAILED;
	}
	return s->mismatched_regions > s->repaired_regions ? EXIT_FAILED : EXIT_OK;
}

int cmd_verify(struct ctl *c, bool repair, bool wait)
{
	int rc, target = route(c, &rc);
	if (target < 0)
		return rc;
	Frep__Admin__V1__VerifyRequest req = FREP__ADMIN__V1__VERIFY_REQUEST__INIT;
	req.volume = (char *)c->volume;
	req.repair = repair;
	ProtobufCMessage *resp = NULL;
	struct follow fw = { 0 };

	if (wait && (rc = follow_begin(&fw, c, target)) != EXIT_OK)
		goto out;
	if ((rc = request(c, target, "Verify", &req.base, &resp)) != EXIT_OK)
		goto out;
	uint64_t id = ((Frep__Admin__V1__VerifyResponse *)resp)->verify_id;
	if (!wait) {
		if (c->json)
			print_json(pb_to_json(resp));
		else
			printf("%s: verify #%" PRIu64 " started%s\n", c->volume, id,
			       repair ? " (repair)" : "");
		goto out;
	}
	struct verify_wait w = { .c = c, .id = id };
	progress_init(&w.bar, stdout, c->cmd, c->volume);
	rc = follow_run(&fw, verify_step, &w);
	progress_end(&w.bar);
	if (rc != EXIT_OK)
		goto out;

	Frep__Admin__V1__VolumeRequest vreq = FREP__ADMIN__V1__VOLUME_REQUEST__INIT;
	vreq.volume = (char *)c->volume;
	ProtobufCMessage *result;
	if ((rc = request(c, target, "GetVerifyResult", &vreq.base, &result)) != EXIT_OK)
		goto out;
	const VerifyResult *r = (const VerifyResult *)result;
	if (c->json)
		print_json(pb_to_json(result));
	else
		render_verify_result(stdout, c->volume, r);
	rc = verify_outcome(c, r);
	protobuf_c_message_free_unpacked(result, NULL);
out:
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (wait)
		follow_end(&fw);
	return rc;
}
