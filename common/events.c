/* The admin API's event ring: see events.h. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "events.h"
#include "frep/admin/v1/admin.pb-c.h"
#include "fsm.h"
#include "service.h"
#include "util.h"

static struct {
	pthread_mutex_t mu;
	uint64_t head; /* seq of the next event; ring[seq % EVENTS_RING] holds seq */
	struct event ring[EVENTS_RING];
} ev = { .mu = PTHREAD_MUTEX_INITIALIZER, .head = 1 };

void events_publish(enum event_kind kind, const char *volume, int old_state, int new_state,
		    const char *fmt, ...)
{
	struct event e = { .kind = kind, .old_state = old_state, .new_state = new_state };

	e.time_unix_ms = wall_ms();
	snprintf(e.volume, sizeof(e.volume), "%s", volume ? volume : "");
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e.reason, sizeof(e.reason), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_lock(&ev.mu);
	e.seq = ev.head++;
	ev.ring[e.seq % EVENTS_RING] = e;
	pthread_mutex_unlock(&ev.mu);
	if (kind == EVENT_STATE_CHANGE)
		service_volume_state(e.volume, new_state);
}

uint64_t events_head(void)
{
	pthread_mutex_lock(&ev.mu);
	uint64_t h = ev.head;
	pthread_mutex_unlock(&ev.mu);
	return h;
}

int events_get(uint64_t seq, struct event *e)
{
	int r;
	pthread_mutex_lock(&ev.mu);
	if (seq >= ev.head)
		r = 0;
	else if (ev.head - seq > EVENTS_RING)
		r = -1;
	else {
		*e = ev.ring[seq % EVENTS_RING];
		r = 1;
	}
	pthread_mutex_unlock(&ev.mu);
	return r;
}

void events_fsm_observer(const char *volume, bool mirror, int from, int to, const char *event,
			 const char *reason)
{
	int old_state = mirror ? events_mirror_state(from) : events_master_state(from);
	int new_state = mirror ? events_mirror_state(to) : events_master_state(to);
	events_publish(EVENT_STATE_CHANGE, volume, old_state, new_state, "event %s%s%s", event,
		       reason ? " reason: " : "", reason ? reason : "");
}

/* frep.admin.v1.State values, in the proto's order. */
enum { ST_NEW = 1, ST_INIT, ST_MAKEPARTS, ST_RESET, ST_READY, ST_REPLICATE, ST_OUTOFSYNC,
       ST_INSYNC, ST_LINKDOWN, ST_IDLE, ST_ERROR, ST_DETACHED };

int events_master_state(int s)
{
	static const int map[MS__COUNT] = {
		[MS_NEW] = ST_NEW,	       [MS_INIT] = ST_INIT,	      [MS_MAKEPARTS] = ST_MAKEPARTS,
		[MS_RESET] = ST_RESET,	       [MS_READY] = ST_READY,	      [MS_REPLICATE] = ST_REPLICATE,
		[MS_OUTOFSYNC] = ST_OUTOFSYNC, [MS_INSYNC] = ST_INSYNC,	      [MS_LINKDOWN] = ST_LINKDOWN,
		[MS_IDLE] = ST_IDLE,	       [MS_ERROR] = ST_ERROR,
	};
	return s >= 0 && s < MS__COUNT ? map[s] : 0;
}

int events_mirror_state(int s)
{
	static const int map[MR__COUNT] = {
		[MR_INIT] = ST_INIT,	     [MR_MAKEPARTS] = ST_MAKEPARTS, [MR_READY] = ST_READY,
		[MR_REPLICATE] = ST_REPLICATE, [MR_OUTOFSYNC] = ST_OUTOFSYNC, [MR_INSYNC] = ST_INSYNC,
		[MR_IDLE] = ST_IDLE,	     [MR_ERROR] = ST_ERROR,
	};
	return s >= 0 && s < MR__COUNT ? map[s] : 0;
}

const char *events_state_name(int state)
{
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value(&frep__admin__v1__state__descriptor, state);
	return v ? v->name : "UNKNOWN";
}
