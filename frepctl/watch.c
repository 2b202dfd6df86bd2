/*
 * frepctl watch: the daemons' Watch streams, merged like `drbdsetup events2`:
 * every volume's current state (EXISTS), one INITIAL_DONE once every daemon
 * has sent its own, then changes as they come. And the --wait followers of
 * resync and verify, which ride on one volume's Watch stream.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frepctl.h"

enum {
	TICK_MS = 200,	       /* how soon a signal ends a watch */
	POLL_INTERVAL_MS = 500, /* --wait: Status snapshots for the progress bar */
};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct stream {
	int target;
	struct rpc_call *call;
	bool initial_done;
};

/* Events held back until every daemon's initial state is out. */
struct held {
	Event **ev;
	int *target;
	size_t n;
};

static void emit(const struct ctl *c, int target, const Event *e)
{
	if (c->json) {
		struct json_object *o = pb_to_json(&e->base);
		json_object_object_add(o, "admin", json_object_new_string(c->targets->names[target]));
		print_json(o);
	} else {
		render_event(stdout, e);
		fflush(stdout);
	}
}

/* A Watch stream is endless: its end, even with OK, means the daemon is going away. */
static int stream_ended(const struct ctl *c, const struct rpc_conn *conn, struct rpc_result *res)
{
	if (res->code == RPC_OK) {
		res->code = RPC_UNAVAILABLE;
		snprintf(res->details, sizeof(res->details), "the daemon ended the watch");
	}
	return report(c, conn, res);
}

/* The targets to watch: all, or after discovery those that have the volume. */
static size_t pick(struct ctl *c, int *targets, int *rc)
{
	size_t n = 0;
	if (!c->discovered || !c->volume) {
		for (size_t i = 0; i < c->targets->n; i++)
			targets[n++] = (int)i;
		return n;
	}
	struct answers a;
	status_ask_all(c, &a);
	*rc = a.exit_code;
	for (size_t i = 0; i < c->targets->n; i++) {
		for (size_t k = 0; a.resp[i] && k < a.resp[i]->n_volumes; k++) {
			if (strcmp(a.resp[i]->volumes[k]->name, c->volume) == 0) {
				targets[n++] = (int)i;
				break;
			}
		}
	}
	answers_free(c, &a);
	if (n == 0)
		*rc = volume_missing(c, *rc);
	return n;
}

int cmd_watch(struct ctl *c)
{
	struct sigaction sa = { .sa_handler = on_signal }; /* no SA_RESTART: the wait wakes up */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	int rc = EXIT_OK;
	int *targets = calloc(c->targets->n, sizeof(*targets));
	size_t n = pick(c, targets, &rc);
	struct stream *s = calloc(n ? n : 1, sizeof(*s));
	Frep__Admin__V1__WatchRequest req = FREP__ADMIN__V1__WATCH_REQUEST__INIT;
	req.volume = (char *)(c->volume ? c->volume : "");
	for (size_t i = 0; i < n; i++) {
		s[i].target = targets[i];
		s[i].call = rpc_start(c->conns[targets[i]], "Watch", &req.base, -1, &s[i]);
	}

	size_t live = n, initial_left = n;
	struct held held = { 0 };
	Event *last_initial = NULL; /* the INITIAL_DONE that goes out once all are in */
	int last_initial_target = 0;
	bool cancelled = false;
	while (live > 0) {
		if (stop_signal && !cancelled) {
			for (size_t i = 0; i < n; i++)
				if (s[i].call)
					rpc_cancel(s[i].call);
			cancelled = true;
		}
		struct rpc_event ev;
		rpc_wait(TICK_MS, &ev);
		if (ev.type == RPC_EV_TIMEOUT)
			continue;
		struct stream *st = rpc_call_user(ev.call);
		if (ev.type == RPC_EV_MESSAGE) {
			Event *e = (Event *)ev.msg;
			if (e->kind == FREP__ADMIN__V1__EVENT__KIND__INITIAL_DONE && !st->initial_done) {
				st->initial_done = true;
				initial_left--;
				if (last_initial)
					protobuf_c_message_free_unpacked(&last_initial->base, NULL);
				last_initial = e;
				last_initial_target = st->target;
			} else if (!st->initial_done || initial_left == 0) {
				emit(c, st->target, e);
				protobuf_c_message_free_unpacked(&e->base, NULL);
			} else {
				held.ev = realloc(held.ev, (held.n + 1) * sizeof(*held.ev));
				held.target = realloc(held.target, (held.n + 1) * sizeof(*held.target));
				held.ev[held.n] = e;
				held.target[held.n++] = st->target;
			}
		} else {
			live--;
			if (!st->initial_done) {
				st->initial_done = true;
				initial_left--;
			}
			struct rpc_result res = *rpc_call_result(ev.call);
			if (!(cancelled && res.code == RPC_CANCELLED /* ours */)) {
				rc = exit_worse(rc, stream_ended(c, rpc_call_conn(ev.call), &res));
			}
			rpc_call_free(ev.call);
			st->call = NULL;
		}
		if (initial_left == 0 && last_initial) {
			emit(c, last_initial_target, last_initial);
			protobuf_c_message_free_unpacked(&last_initial->base, NULL);
			last_initial = NULL;
			for (size_t i = 0; i < held.n; i++) {
				emit(c, held.target[i], held.ev[i]);
				protobuf_c_message_free_unpacked(&held.ev[i]->base, NULL);
			}
			held.n = 0;
		}
	}
	for (size_t i = 0; i < held.n; i++)
		protobuf_c_message_free_unpacked(&held.ev[i]->base, NULL);
	if (last_initial)
		protobuf_c_message_free_unpacked(&last_initial->base, NULL);
	free(held.ev);
	free(held.target);
	free(s);
	free(targets);
	return rc;
}

static bool same_volume(const struct follow *fw, const VolumeStatus *v)
{
	return v && strcmp(v->name, fw->c->volume) == 0;
}

int follow_begin(struct follow *fw, struct ctl *c, int target)
{
	*fw = (struct follow){ .c = c, .target = target };
	Frep__Admin__V1__WatchRequest req = FREP__ADMIN__V1__WATCH_REQUEST__INIT;
	req.volume = (char *)c->volume;
	fw->watch = rpc_start(c->conns[target], "Watch", &req.base, -1, fw);
	int64_t deadline = mono_ms() + RPC_TIMEOUT_MS;
	while (mono_ms() < deadline) {
		struct rpc_event ev;
		rpc_wait(TICK_MS, &ev);
		if (ev.type == RPC_EV_MESSAGE) {
			Event *e = (Event *)ev.msg;
			bool done = e->kind == FREP__ADMIN__V1__EVENT__KIND__INITIAL_DONE;
			protobuf_c_message_free_unpacked(&e->base, NULL);
			if (done)
				return 0;
		} else if (ev.type == RPC_EV_DONE) {
			struct rpc_result res = *rpc_call_result(ev.call);
			rpc_call_free(fw->watch);
			fw->watch = NULL;
			return report(c, c->conns[target], &res);
		}
	}
	struct rpc_result res = { .code = RPC_DEADLINE_EXCEEDED };
	snprintf(res.details, sizeof(res.details), "Watch sent no INITIAL_DONE within %d ms",
		 RPC_TIMEOUT_MS);
	return report(c, c->conns[target], &res);
}

int follow_run(struct follow *fw, follow_step step, void *arg)
{
	Frep__Admin__V1__StatusRequest req = FREP__ADMIN__V1__STATUS_REQUEST__INIT;
	req.volume = (char *)fw->c->volume;
	for (;;) {
		if (!fw->poll && mono_ms() - fw->last_poll_ms >= POLL_INTERVAL_MS) {
			fw->last_poll_ms = mono_ms();
			fw->poll = rpc_start(fw->c->conns[fw->target], "Status", &req.base, RPC_TIMEOUT_MS, fw);
		}
		struct rpc_event ev;
		rpc_wait(TICK_MS, &ev);
		int r = -1;
		if (ev.type == RPC_EV_MESSAGE && ev.call == fw->watch) {
			Event *e = (Event *)ev.msg;
			if (same_volume(fw, e->volume))
				r = step(arg, e->volume, e);
			protobuf_c_message_free_unpacked(ev.msg, NULL);
		} else if (ev.type == RPC_EV_MESSAGE) {
			StatusResponse *sr = (StatusResponse *)ev.msg;
			for (size_t k = 0; k < sr->n_volumes && r < 0; k++)
				if (same_volume(fw, sr->volumes[k]))
					r = step(arg, sr->volumes[k], NULL);
			protobuf_c_message_free_unpacked(ev.msg, NULL);
		} else if (ev.type == RPC_EV_DONE && ev.call == fw->watch) {
			struct rpc_result res = *rpc_call_result(ev.call);
			rpc_call_free(fw->watch);
			fw->watch = NULL;
			return stream_ended(fw->c, fw->c->conns[fw->target], &res);
		} else if (ev.type == RPC_EV_DONE) {
			rpc_call_free(fw->poll); /* a failed snapshot: the next one may do */
			fw->poll = NULL;
		}
		if (r >= 0)
			return r;
	}
}

void follow_end(struct follow *fw)
{
	if (fw->watch)
		rpc_cancel(fw->watch);
	if (fw->poll)
		rpc_cancel(fw->poll);
	while (fw->watch || fw->poll) {
		struct rpc_event ev;
		rpc_wait(TICK_MS, &ev);
		if (ev.type == RPC_EV_MESSAGE)
			protobuf_c_message_free_unpacked(ev.msg, NULL);
		if (ev.type != RPC_EV_DONE)
			continue;
		rpc_call_free(ev.call);
		if (ev.call == fw->watch)
			fw->watch = NULL;
		else
			fw->poll = NULL;
	}
}
