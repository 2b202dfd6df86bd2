/* frepctl status, and finding the daemon that has a volume. */
#include <stdlib.h>
#include <string.h>

#include "frepctl.h"

void status_ask_all(struct ctl *c, struct answers *a)
{
	size_t n = c->targets->n, left = n;
	a->resp = calloc(n, sizeof(*a->resp));
	a->exit_code = EXIT_OK;
	Frep__Admin__V1__StatusRequest req = FREP__ADMIN__V1__STATUS_REQUEST__INIT;
	/* Several daemons: ask each for everything and filter here, since all but one will not have
	 * the volume. One daemon: let it say NOT_FOUND in its own words. */
	req.volume = (char *)(n == 1 && c->volume ? c->volume : "");
	struct rpc_call **calls = calloc(n, sizeof(*calls));
	/* All at once on one queue: a daemon that hangs costs its deadline once, not once each. */
	for (size_t i = 0; i < n; i++)
		calls[i] = rpc_start(c->conns[i], "Status", &req.base, RPC_TIMEOUT_MS, &a->resp[i]);
	while (left > 0) {
		struct rpc_event ev;
		rpc_wait(RPC_TIMEOUT_MS, &ev);
		if (ev.type == RPC_EV_MESSAGE) {
			StatusResponse **slot = rpc_call_user(ev.call);
			if (*slot)
				protobuf_c_message_free_unpacked(&(*slot)->base, NULL);
			*slot = (StatusResponse *)ev.msg;
		} else if (ev.type == RPC_EV_DONE) {
			left--;
			StatusResponse **slot = rpc_call_user(ev.call);
			struct rpc_result res = *rpc_call_result(ev.call);
			if (res.code != RPC_OK) {
				if (*slot)
					protobuf_c_message_free_unpacked(&(*slot)->base, NULL);
				*slot = NULL;
				a->exit_code = exit_worse(a->exit_code, report(c, rpc_call_conn(ev.call), &res));
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		rpc_call_free(calls[i]);
	free(calls);
}

void answers_free(struct ctl *c, struct answers *a)
{
	for (size_t i = 0; i < c->targets->n; i++)
		if (a->resp[i])
			protobuf_c_message_free_unpacked(&a->resp[i]->base, NULL);
	free(a->resp);
}

int volume_missing(const struct ctl *c, int asked)
{
	const char *subject = c->subject ? c->subject : c->volume;
	if (asked == EXIT_OK) {
		fprintf(stderr, PROG ": %s %s: NOT_FOUND: no volume '%s' on this host\n", c->cmd,
			subject, c->volume);
		return EXIT_FAILED;
	}
	if (asked == EXIT_UNREACHABLE)
		fprintf(stderr, PROG ": %s %s: no daemon that answered has volume '%s'\n", c->cmd,
			subject, c->volume);
	/* else a daemon's own refusal has been reported */
	return asked;
}

static bool wanted(const struct ctl *c, const VolumeStatus *v)
{
	return !c->volume || strcmp(v->name, c->volume) == 0;
}

int route(struct ctl *c, int *exit_code)
{
	if (!c->discovered)
		return 0;
	struct answers a;
	status_ask_all(c, &a);
	int found = -1;
	for (size_t i = 0; i < c->targets->n; i++) {
		for (size_t k = 0; a.resp[i] && k < a.resp[i]->n_volumes; k++) {
			const VolumeStatus *v = a.resp[i]->volumes[k];
			if (!wanted(c, v))
				continue;
			/* Master and mirror of one volume on one host (a test, a loopback setup):
			 * commands are the master's, but for the mirror's own (snapshots). */
			if (found < 0 || v->role == (c->mirror ? FREP__ADMIN__V1__ROLE__MIRROR
							       : FREP__ADMIN__V1__ROLE__MASTER))
				found = (int)i;
		}
	}
	if (found < 0) {
		*exit_code = volume_missing(c, a.exit_code);
	}
	answers_free(c, &a);
	return found;
}

int cmd_status(struct ctl *c)
{
	struct answers a;
	status_ask_all(c, &a);
	int rc = a.exit_code, shown = 0;
	struct json_object *vols = json_object_new_array();
	for (size_t i = 0; i < c->targets->n; i++) {
		const StatusResponse *r = a.resp[i];
		for (size_t k = 0; r && k < r->n_volumes; k++) {
			const VolumeStatus *v = r->volumes[k];
			if (!wanted(c, v))
				continue;
			if (c->json) {
				struct json_object *o = pb_to_json(&v->base);
				/* Which daemon said so: the volume's name alone is ambiguous when
				 * master and mirror run on one host. */
				json_object_object_add(o, "daemon", json_object_new_string(r->daemon));
				json_object_object_add(o, "admin", json_object_new_string(c->targets->names[i]));
				json_object_array_add(vols, o);
			} else {
				if (shown)
					fputc('\n', stdout);
				render_volume(stdout, v, r->now_unix_ms);
			}
			shown++;
		}
	}
	if (c->json) {
		struct json_object *doc = json_object_new_object();
		json_object_object_add(doc, "volumes", vols);
		print_json(doc);
	} else {
		json_object_put(vols);
	}
	if (c->volume && !shown)
		rc = volume_missing(c, rc);
	else if (!shown && !c->json && rc == EXIT_OK) /* a new frep-server: say so, not nothing */
		printf("no volumes\n");
	answers_free(c, &a);
	return rc;
}
