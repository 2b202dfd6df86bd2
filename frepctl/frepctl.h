/*
 * frepctl's internal interfaces, grouped by the file that owns them: rpc.c
 * (everything gRPC), json.c (protobuf to JSON), render.c (human output and
 * progress bars), targets.c (which daemons to ask), main.c (commands).
 */
#ifndef FREPCTL_H
#define FREPCTL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>
#include <protobuf-c/protobuf-c.h>

#include "frep/admin/v1/admin.pb-c.h"

#define PROG "frepctl"

typedef Frep__Admin__V1__VolumeStatus VolumeStatus;
typedef Frep__Admin__V1__Event Event;
typedef Frep__Admin__V1__Progress Progress;
typedef Frep__Admin__V1__VerifyResult VerifyResult;
typedef Frep__Admin__V1__Snapshot Snapshot;

/* Exit codes (README "frepctl", --help). */
enum frepctl_exit {
	EXIT_OK = 0,
	EXIT_FAILED = 1,      /* the daemon said no: any status but OK, UNAVAILABLE, DEADLINE_EXCEEDED */
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3, /* no answer: no socket, stale socket, TLS refused, shutting down */
};

/* rpc.c ------------------------------------------------------------------ */

/* How to reach the daemons over TCP (--connect); NULL members are absent. */
struct rpc_tls {
	const char *ca, *cert, *key;
	const char *server_name; /* --server-name: the name the certificate must carry */
};

/* The gRPC status codes frepctl itself looks at (grpc/status.h values). */
enum rpc_code {
	RPC_OK = 0,
	RPC_CANCELLED = 1,
	RPC_DEADLINE_EXCEEDED = 4,
	RPC_UNAVAILABLE = 14,
};

/* A call's outcome: the gRPC status code and the daemon's message. */
struct rpc_result {
	int code; /* grpc_status_code */
	char details[1024];
	bool reached; /* the daemon took the call: code and details are its own */
};

struct rpc_conn;
struct rpc_call;

enum rpc_event_type {
	RPC_EV_TIMEOUT,	 /* nothing within the timeout */
	RPC_EV_MESSAGE,	 /* call sent a message: ev.msg, the caller frees it */
	RPC_EV_DONE,	 /* call ended: rpc_call_result(); then rpc_call_free() */
};

struct rpc_event {
	enum rpc_event_type type;
	struct rpc_call *call;
	ProtobufCMessage *msg; /* protobuf_c_message_free_unpacked(msg, NULL) */
};

/*
 * Opens a channel to target: "unix:PATH" (insecure: the socket's mode is the
 * access control) or "HOST:PORT" with tls (all of ca, cert and key). Reads the
 * PEM files; NULL with err filled if one cannot be read. Nothing connects
 * before the first call. The first call initialises gRPC.
 */
struct rpc_conn *rpc_open(const char *target, const struct rpc_tls *tls, char *err, size_t err_len);
void rpc_close(struct rpc_conn *c);
/* The target as given ("unix:/run/frep/server.sock", "mirror:7461"). Borrowed. */
const char *rpc_target(const struct rpc_conn *c);

/*
 * One unary call, start to end: method is the service's method name
 * ("Status"). 0 with *resp (caller frees with protobuf_c_message_free_unpacked)
 * when the status is OK; -1 with res filled otherwise.
 */
int rpc_unary(struct rpc_conn *c, const char *method, const ProtobufCMessage *req,
	      int timeout_ms, ProtobufCMessage **resp, struct rpc_result *res);

/*
 * Starts a call whose events arrive through rpc_wait (unary or streaming);
 * several may run at once, on as many connections, so one slow daemon does
 * not hold up the others. timeout_ms < 0: no deadline (Watch). user is the
 * caller's, returned by rpc_call_user().
 */
struct rpc_call *rpc_start(struct rpc_conn *c, const char *method, const ProtobufCMessage *req,
			   int timeout_ms, void *user);
/* The next event of any started call, waiting at most timeout_ms. */
void rpc_wait(int timeout_ms, struct rpc_event *ev);
/* Asks the call to end (its DONE event follows, status CANCELLED). */
void rpc_cancel(struct rpc_call *call);
void *rpc_call_user(const struct rpc_call *call);
struct rpc_conn *rpc_call_conn(const struct rpc_call *call);
/* Valid once RPC_EV_DONE has been seen. Borrowed. */
const struct rpc_result *rpc_call_result(const struct rpc_call *call);
void rpc_call_free(struct rpc_call *call);

/* Ends gRPC (after every connection is closed). */
void rpc_shutdown(void);

/* "NOT_FOUND" for 5, and so on. */
const char *rpc_code_name(int code);
/* The exit code a call's status maps to. */
int rpc_exit_code(int code);
/*
 * Rewrites an UNAVAILABLE result of a call that never reached a unix target
 * into why, found by lstat and connect ("stale socket (daemon not running)");
 * other results are left alone ("frep is shutting down" is the daemon's).
 */
void rpc_explain(const struct rpc_conn *c, struct rpc_result *res);

/* json.c ------------------------------------------------------------------ */

/*
 * Any protobuf-c message as a JSON object: keys are the .proto field names,
 * enums are their value names, 64-bit integers are exact (json-c int64 and
 * uint64), every scalar field is present (proto3 defaults included) and an
 * absent sub-message is left out. The caller puts the result.
 */
struct json_object *pb_to_json(const ProtobufCMessage *m);

/* render.c ---------------------------------------------------------------- */

/* A volume as a drbdadm-status-like block; now_ms is the daemon's clock (0: ours). */
void render_volume(FILE *f, const VolumeStatus *v, int64_t now_ms);
/* One event as one line. */
void render_event(FILE *f, const Event *e);
/*
 * Snapshots as a table, one line each: volume, name, kind, TXID, age, space,
 * valid or invalid with the reason, and the export; "no snapshots" for none.
 */
void render_snapshots(FILE *f, const Snapshot *const *s, size_t n, int64_t now_ms);
/* A verify's outcome with its mismatching regions. */
void render_verify_result(FILE *f, const char *volume, const VerifyResult *r);
/* The name of an enum value of admin.proto ("INSYNC"), "?" if unknown. */
const char *state_name(int state);
const char *role_name(int role);
const char *kind_name(int kind);

/*
 * A progress display: a bar redrawn in place when f is a terminal, else one
 * plain line per update (at most every few seconds, and at the end).
 */
struct progress_bar {
	FILE *f;
	char what[128];	   /* "resync db" */
	bool tty;
	bool drawn;	   /* a bar is on the line: end it before printing anything else */
	int64_t last_ms;   /* the last plain line */
};
void progress_init(struct progress_bar *b, FILE *f, const char *cmd, const char *volume);
void progress_update(struct progress_bar *b, const Progress *p);
void progress_end(struct progress_bar *b);

/* main.c ------------------------------------------------------------------ */

enum {
	RPC_TIMEOUT_MS = 5000, /* a unary call; Watch has no deadline */
	PROMOTE_TIMEOUT_MS = 60000, /* Promote: the daemon bounds its own waits well inside */
};

/* What a command works with: options, the daemons to ask and their channels. */
struct ctl {
	const char *cmd;    /* "pause": messages say which command failed */
	const char *volume; /* the VOLUME argument, or NULL */
	const char *subject; /* what messages name after cmd, if not volume ("db@nightly") */
	bool mirror;	    /* a mirror command: route() prefers frep-server */
	bool json;
	bool discovered;    /* the targets come from /run/frep, not --admin or --connect */
	struct targets *targets;
	struct rpc_conn **conns; /* one per target */
};

/*
 * Prints "frepctl: CMD VOLUME: [TARGET: ]CODE: details" on stderr and returns
 * the exit code the result maps to. The target is named when it could not be
 * reached, or when several daemons were asked about all their volumes.
 */
int report(const struct ctl *c, const struct rpc_conn *conn, struct rpc_result *res);
/* The exit code of two outcomes: unreachable outranks failed, which outranks ok. */
int exit_worse(int a, int b);
/* Prints one JSON document (or JSON line) on stdout and puts o. */
void print_json(struct json_object *o);

/* status.c ---------------------------------------------------------------- */

typedef Frep__Admin__V1__StatusResponse StatusResponse;

/* Every target's answer to Status(volume ""). */
struct answers {
	StatusResponse **resp; /* one per target; NULL where the call failed */
	int exit_code;	       /* the worst of the failures (reported on stderr), or 0 */
};
void status_ask_all(struct ctl *c, struct answers *a);
void answers_free(struct ctl *c, struct answers *a);
/*
 * The daemon to send a command on VOLUME to: with one target, that one;
 * after discovery, the one that has the volume, preferring its master (its
 * mirror for a mirror command).
 * Returns the target's index, or -1 after reporting why with *exit_code set.
 */
int route(struct ctl *c, int *exit_code);
/*
 * No daemon asked has VOLUME: says so (NOT_FOUND if every daemon answered, else
 * that the unreachable ones may have it) and returns the exit code; asked is
 * the exit code of asking them (answers.exit_code).
 */
int volume_missing(const struct ctl *c, int asked);
int cmd_status(struct ctl *c);

/* watch.c ----------------------------------------------------------------- */

int cmd_watch(struct ctl *c);

/*
 * --wait: follows one volume on one daemon while a command's effect runs.
 * follow_begin starts its Watch and reads through INITIAL_DONE (before the
 * command is sent, so no event of it is missed); follow_run then hands every
 * event, and a Status snapshot every half second, to step until step returns
 * an exit code (>= 0). Both return 0, or an exit code after reporting;
 * follow_end ends the calls in either case.
 */
struct follow {
	struct ctl *c;
	int target;
	struct rpc_call *watch, *poll;
	int64_t last_poll_ms;
};
/* Returns the event (e) or the Status snapshot (e NULL) of the volume: -1 goes on, >= 0 ends. */
typedef int (*follow_step)(void *arg, const VolumeStatus *v, const Event *e);
int follow_begin(struct follow *fw, struct ctl *c, int target);
int follow_run(struct follow *fw, follow_step step, void *arg);
void follow_end(struct follow *fw);

/* commands.c -------------------------------------------------------------- */

/* pause and resume: method "Pause" or "Resume", which take a VolumeRequest. */
int cmd_volume(struct ctl *c, const char *method);
int cmd_resync(struct ctl *c, bool full, bool wait);
int cmd_set_rate(struct ctl *c, uint64_t bytes_per_second);
int cmd_promote(struct ctl *c, bool force);
/* demote, or switchover: the master hands its copy over, then the host's frep-server adopts it. */
int cmd_demote(struct ctl *c, bool force, bool switchover, const char *mirror_admin);
int cmd_adopt(struct ctl *c, const char *handoff, const char *mirror_admin);
int cmd_verify(struct ctl *c, bool repair, bool wait);

/* snapshots.c ------------------------------------------------------------- */

/* snapshot create VOLUME [NAME] (NULL: the daemon picks one), snapshot delete VOLUME NAME. */
int cmd_snapshot_create(struct ctl *c, const char *name);
int cmd_snapshot_delete(struct ctl *c, const char *name);
/* snapshot list [VOLUME]: every daemon asked (a master's refusal is skipped after discovery). */
int cmd_snapshot_list(struct ctl *c);
/* export VOLUME[@SNAPSHOT] --nbd ADDRESS (snapshot NULL: the implicit one), unexport likewise. */
int cmd_export(struct ctl *c, const char *snapshot, const char *nbd);
int cmd_unexport(struct ctl *c, const char *snapshot);

/* targets.c --------------------------------------------------------------- */

/* The daemons to ask: --admin/--connect gives one; discovery may give several. */
struct targets {
	char **names; /* "unix:PATH" or "HOST:PORT" */
	size_t n;
};

/*
 * Without --admin and --connect: $FREP_RUN_DIR (default /run/frep)/server.sock
 * and every client-*.sock there that lstat says is a socket. Other files are
 * skipped (NBD sockets may live there too). Prints nothing; an empty list
 * when there is none.
 */
int targets_discover(struct targets *t, char *err, size_t err_len);
void targets_add(struct targets *t, const char *name);
void targets_free(struct targets *t);

#endif
