/* Mirror replication state machine: the grammar of spec states and events, one event per call. */
#include <assert.h>
#include <stddef.h>

#include "fsm.h"
#include "log.h"

/*
 * As in master.rl, every action names the model state it leads to, so Ragel's
 * minimisation keeps REPLICATE and OUTOFSYNC (otherwise identical) apart and
 * the diagram script can name each node.
 */
static void mirror_enter(struct mirror_fsm *f, enum mirror_state to, enum mirror_event ev,
			 const char *reason);
static void mirror_stay(struct mirror_fsm *f, enum mirror_state in, enum mirror_event ev);

%%{
machine mirror;
alphtype int;

# Event codes of enum mirror_event (fsm.h); test-fsm checks every one.
MSG_HELLO = 1;
MSG_EXTENT_TABLE = 2;
MSG_START_REPLICATE = 3;
MSG_START_OUTOFSYNC = 4;
MSG_START_SYNC = 5;
MSG_COPY_DATA = 6;
MSG_COPY_HOLE = 7;
MSG_COPY_DONE = 8;
MSG_TX = 9;
APPLIED_CONSISTENT = 10;
MSG_PAUSE = 11;
MSG_RESUME = 12;
MSG_HEARTBEAT = 13;
SEVERE = 14;
MSG_VERIFY = 15;
MSG_DIVERGENCE_REQUEST = 16;
MSG_SWITCHOVER = 17;

action to_makeparts { mirror_enter(f, MR_MAKEPARTS, ev, reason); }
action to_ready { mirror_enter(f, MR_READY, ev, reason); }
action to_replicate { mirror_enter(f, MR_REPLICATE, ev, reason); }
action to_outofsync { mirror_enter(f, MR_OUTOFSYNC, ev, reason); }
action to_insync { mirror_enter(f, MR_INSYNC, ev, reason); }
action to_idle { mirror_enter(f, MR_IDLE, ev, reason); }
action to_error { mirror_enter(f, MR_ERROR, ev, reason); }

action stay_makeparts { mirror_stay(f, MR_MAKEPARTS, ev); }
action stay_ready { mirror_stay(f, MR_READY, ev); }
action stay_replicate { mirror_stay(f, MR_REPLICATE, ev); }
action stay_outofsync { mirror_stay(f, MR_OUTOFSYNC, ev); }
action stay_insync { mirror_stay(f, MR_INSYNC, ev); }
action stay_idle { mirror_stay(f, MR_IDLE, ev); }
# A repeated StartCopy of the same kind begins a new pass; the caller does it.
action repass_replicate { mirror_stay(f, MR_REPLICATE, ev); }
action repass_outofsync { mirror_stay(f, MR_OUTOFSYNC, ev); }

# Copy and sequencing traffic, the same in REPLICATE and OUTOFSYNC.
copying = MSG_COPY_DATA | MSG_COPY_HOLE | MSG_COPY_DONE | MSG_TX | MSG_HEARTBEAT;

main := (
	start: init: (
		MSG_HELLO @to_makeparts -> makeparts |
		SEVERE @to_error -> error
	),
	makeparts: (
		MSG_EXTENT_TABLE @to_ready -> ready |
		MSG_HEARTBEAT @stay_makeparts -> makeparts |
		SEVERE @to_error -> error
	),
	ready: (
		MSG_START_REPLICATE @to_replicate -> replicate |
		MSG_START_OUTOFSYNC @to_outofsync -> outofsync |
		MSG_START_SYNC @to_insync -> insync |
		(MSG_HEARTBEAT | MSG_DIVERGENCE_REQUEST) @stay_ready -> ready |
		SEVERE @to_error -> error
	),
	replicate: (
		copying @stay_replicate -> replicate |
		MSG_START_REPLICATE @repass_replicate -> replicate |
		APPLIED_CONSISTENT @to_insync -> insync |
		SEVERE @to_error -> error
	),
	outofsync: (
		copying @stay_outofsync -> outofsync |
		MSG_START_OUTOFSYNC @repass_outofsync -> outofsync |
		APPLIED_CONSISTENT @to_insync -> insync |
		SEVERE @to_error -> error
	),
	insync: (
		(MSG_TX | MSG_HEARTBEAT | MSG_VERIFY | MSG_SWITCHOVER) @stay_insync -> insync |
		MSG_PAUSE @to_idle -> idle |
		MSG_START_OUTOFSYNC @to_outofsync -> outofsync |
		SEVERE @to_error -> error
	),
	idle: (
		(MSG_TX | MSG_HEARTBEAT) @stay_idle -> idle |
		MSG_RESUME @to_insync -> insync |
		MSG_START_OUTOFSYNC @to_outofsync -> outofsync |
		SEVERE @to_error -> error
	),
	# Terminal: the mirror leaves ERROR only when the session ends.
	error: zlen
);

write data nofinal noentry;
}%%

/* The message is fixed (log.h prints "volume=NAME" first) so tests and operators can grep it. */
static void mirror_enter(struct mirror_fsm *f, enum mirror_state to, enum mirror_event ev,
			 const char *reason)
{
	enum mirror_state from = f->state;

	f->state = to;
	if (to == MR_ERROR)
		log_warn(f->volume, "state %s -> %s (event %s)%s%s", mirror_state_name(from),
			 mirror_state_name(to), mirror_event_name(ev), reason ? " reason: " : "",
			 reason ? reason : "");
	else
		log_info(f->volume, "state %s -> %s (event %s)", mirror_state_name(from),
			 mirror_state_name(to), mirror_event_name(ev));
	if (fsm_observer)
		fsm_observer(f->volume, true, (int)from, (int)to, mirror_event_name(ev), reason);
}

static void mirror_stay(struct mirror_fsm *f, enum mirror_state in, enum mirror_event ev)
{
	assert(f->state == in); /* the chart and the model agree */
	log_debug(f->volume, "state %s: event %s", mirror_state_name(in), mirror_event_name(ev));
}

void mirror_fsm_init(struct mirror_fsm *f, const char *volume)
{
	f->cs = mirror_start;
	f->state = MR_INIT;
	f->volume = volume;
}

int mirror_fsm_feed(struct mirror_fsm *f, enum mirror_event ev, const char *reason)
{
	const int sym = (int)ev;
	const int *p = &sym;
	const int *pe = p + 1;
	int cs = f->cs;

	/*
	 * Ragel runs actions only on legal transitions, so reaching the error
	 * state means nothing ran: dropping the local cs undoes the step.
	 */
#pragma GCC diagnostic push
	/* -G2 code falls from one state's case into the next by design. */
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
	%% write exec;
#pragma GCC diagnostic pop

	if (cs == mirror_error) {
		log_warn(f->volume, "state %s: illegal event %s", mirror_state_name(f->state),
			 mirror_event_name(ev));
		return -1;
	}
	f->cs = cs;
	return 0;
}
