/* frepctl's mirror commands: snapshot create|list|delete, export and unexport (frep-server). */
#include <stdlib.h>
#include <string.h>

#include "frepctl.h"

typedef Frep__Admin__V1__SnapshotResponse SnapshotResponse;
typedef Frep__Admin__V1__ListSnapshotsResponse ListSnapshotsResponse;
typedef Frep__Admin__V1__CommandResponse CommandResponse;

enum {
	/* Export waits for nbdkit to listen, unexport and delete for it to end (SIGKILL at worst). */
	SNAPSHOT_TIMEOUT_MS = 30000,
	GRPC_FAILED_PRECONDITION = 9,
};

/* One call to the daemon route() picks (the mirror's, when both roles run here). */
static int call(struct ctl *c, const char *method, const ProtobufCMessage *req,
		ProtobufCMessage **resp)
{
	int rc, target = route(c, &rc);
	if (target < 0)
		return rc;
	struct rpc_result res;
	if (rpc_unary(c->conns[target], method, req, SNAPSHOT_TIMEOUT_MS, resp, &res) < 0)
		return report(c, c->conns[target], &res);
	return EXIT_OK;
}

/* The daemon's words, or the JSON of its answer. */
static void print_answer(const struct ctl *c, const ProtobufCMessage *resp, const char *message)
{
	if (c->json)
		print_json(pb_to_json(resp));
	else
		printf("%s\n", *message ? message : "done");
}

static int snapshot_call(struct ctl *c, const char *method, const char *volume, const char *name)
{
	Frep__Admin__V1__SnapshotRequest req = FREP__ADMIN__V1__SNAPSHOT_REQUEST__INIT;
	req.volume = (char *)volume;
	req.name = (char *)(name ? name : "");
	ProtobufCMessage *resp;
	int rc = call(c, method, &req.base, &resp);
	if (rc != EXIT_OK)
		return rc;
	/* CreateSnapshot answers a SnapshotResponse, the others a CommandResponse: message first. */
	const char *message = strcmp(method, "CreateSnapshot") == 0
				      ? ((const SnapshotResponse *)resp)->message
				      : ((const CommandResponse *)resp)->message;
	print_answer(c, resp, message);
	protobuf_c_message_free_unpacked(resp, NULL);
	return EXIT_OK;
}

int cmd_snapshot_create(struct ctl *c, const char *name)
{
	return snapshot_call(c, "CreateSnapshot", c->volume, name);
}

int cmd_snapshot_delete(struct ctl *c, const char *name)
{
	return snapshot_call(c, "DeleteSnapshot", c->volume, name);
}

int cmd_unexport(struct ctl *c, const char *snapshot)
{
	return snapshot_call(c, "Unexport", c->volume, snapshot);
}

int cmd_export(struct ctl *c, const char *snapshot, const char *nbd)
{
	Frep__Admin__V1__ExportRequest req = FREP__ADMIN__V1__EXPORT_REQUEST__INIT;
	req.volume = (char *)c->volume;
	req.snapshot = (char *)(snapshot ? snapshot : "");
	req.nbd = (char *)nbd;
	ProtobufCMessage *resp;
	int rc = call(c, "Export", &req.base, &resp);
	if (rc != EXIT_OK)
		return rc;
	print_answer(c, resp, ((const SnapshotResponse *)resp)->message);
	protobuf_c_message_free_unpacked(resp, NULL);
	return EXIT_OK;
}

/*
 * Every volume's snapshots: each daemon asked has its own (a master answers
 * FAILED_PRECONDITION, which discovery skips: only frep-server has snapshots).
 */
int cmd_snapshot_list(struct ctl *c)
{
	Frep__Admin__V1__ListSnapshotsRequest req = FREP__ADMIN__V1__LIST_SNAPSHOTS_REQUEST__INIT;
	req.volume = (char *)(c->volume ? c->volume : "");
	size_t first = 0, last = c->targets->n;
	int rc = EXIT_OK, answered = 0;
	if (c->volume) {
		int target = route(c, &rc);
		if (target < 0)
			return rc;
		first = (size_t)target;
		last = first + 1;
	}
	ListSnapshotsResponse **resp = calloc(c->targets->n, sizeof(*resp));
	struct rpc_result skipped = { 0 };
	const struct rpc_conn *skipped_conn = NULL;
	for (size_t i = first; i < last; i++) {
		struct rpc_result res;
		ProtobufCMessage *m;
		if (rpc_unary(c->conns[i], "ListSnapshots", &req.base, RPC_TIMEOUT_MS, &m, &res) == 0) {
			resp[i] = (ListSnapshotsResponse *)m;
			answered++;
		} else if (c->discovered && !c->volume && res.code == GRPC_FAILED_PRECONDITION) {
			skipped = res;
			skipped_conn = c->conns[i];
		} else {
			rc = exit_worse(rc, report(c, c->conns[i], &res));
		}
	}
	if (!answered && skipped_conn)
		rc = exit_worse(rc, report(c, skipped_conn, &skipped));

	size_t total = 0;
	for (size_t i = 0; i < c->targets->n; i++)
		total += resp[i] ? resp[i]->n_snapshots : 0;
	const Snapshot **all = calloc(total ? total : 1, sizeof(*all));
	size_t n = 0;
	for (size_t i = 0; i < c->targets->n; i++)
		for (size_t k = 0; resp[i] && k < resp[i]->n_snapshots; k++)
			all[n++] = resp[i]->snapshots[k];
	if (c->json) {
		struct json_object *arr = json_object_new_array();
		for (size_t i = 0; i < n; i++)
			json_object_array_add(arr, pb_to_json(&all[i]->base));
		struct json_object *doc = json_object_new_object();
		json_object_object_add(doc, "snapshots", arr);
		print_json(doc);
	} else if (answered) {
		render_snapshots(stdout, all, n, 0);
	}
	free(all);
	for (size_t i = 0; i < c->targets->n; i++)
		if (resp[i])
			protobuf_c_message_free_unpacked(&resp[i]->base, NULL);
	free(resp);
	return rc;
}
