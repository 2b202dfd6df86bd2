/*
 * The admin API's event ring (Watch): replication code publishes, the admin
 * thread reads. Publishing copies a few words into a ring under the ring's
 * own mutex and never waits for a watcher, so it may be called with any
 * replication lock held (lock order: a volume's lock, then the ring's). The
 * admin thread never takes a volume lock while it holds the ring's.
 */
#ifndef FREP_EVENTS_H
#define FREP_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* frep.admin.v1.Event.Kind values. */
enum event_kind {
	EVENT_EXISTS = 1,
	EVENT_INITIAL_DONE = 2,
	EVENT_STATE_CHANGE = 3,
	EVENT_PROGRESS = 4,
	EVENT_ERROR = 5,
	EVENT_VERIFY_PROGRESS = 6,
	EVENT_VERIFY_DONE = 7,
	EVENT_SETTINGS = 8,
	EVENT_VOLUME_ADDED = 9,
	EVENT_VOLUME_REMOVED = 10,
	EVENT_SNAPSHOT = 11,
};

enum events_limits {
	EVENTS_RING = 4096,	 /* more than any watcher may lag (EVENTS_MAX_LAG) */
	EVENTS_MAX_LAG = 1000,	 /* a watcher further behind is dropped: RESOURCE_EXHAUSTED */
	EVENTS_REASON_MAX = 256,
};

struct event {
	uint64_t seq; /* 1, 2, ...: one per published event */
	int64_t time_unix_ms;
	enum event_kind kind;
	char volume[65];
	int old_state, new_state; /* frep.admin.v1.State; STATE_CHANGE */
	char reason[EVENTS_REASON_MAX];
};

/*
 * Publishes one event. old_state and new_state are frep.admin.v1.State values
 * (0 when the kind has none); reason may be NULL.
 */
void events_publish(enum event_kind kind, const char *volume, int old_state, int new_state,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The sequence number the next event will get. */
uint64_t events_head(void);

/*
 * Copies event seq into *e. 1 if copied, 0 if not published yet, -1 if the
 * ring has already overwritten it.
 */
int events_get(uint64_t seq, struct event *e);

/* fsm_observer (fsm.h) for both roles: every state change becomes an event. */
void events_fsm_observer(const char *volume, bool mirror, int from, int to, const char *event,
			 const char *reason);

/* Maps the FSM's states to frep.admin.v1.State. */
int events_master_state(int master_state);
int events_mirror_state(int mirror_state);

/* frep.admin.v1.State values are 0 .. EVENTS_STATES - 1. */
#define EVENTS_STATES 13
/* A frep.admin.v1.State's name in the proto ("INSYNC"); "UNKNOWN" outside it. */
const char *events_state_name(int state);

#endif
