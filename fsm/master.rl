/* Master replication state machine: the grammar of spec states and events, one event per call. */
#include <assert.h>
#include <stddef.h>

#include "fsm.h"
#include "log.h"

/*
 * Ragel minimises states whose transitions are identical, which would fold
 * REPLICATE into OUTOFSYNC. Every action therefore names the model state it
 * leads to (to_X on entry, stay_X / crack_X on self-loops): two model states
 * never share an action set, so each keeps its own cs, and the diagram
 * script names nodes from these action names.
 */
static void master_enter(struct master_fsm *f, enum master_state to, enum master_event ev,
			 const char *reason);
static void master_stay(struct master_fsm *f, enum master_state in, enum master_event ev);

%%{
machine master;
alphtype int;

# Event codes of enum master_event (fsm.h); test-fsm checks every one.
JOURNAL_OK = 1;
JOURNAL_FAIL = 2;
MSG_WELCOME = 3;
MSG_PARTS_READY = 4;
DECIDE_COPY = 5;
DECIDE_RESYNC = 6;
DECIDE_SYNC = 7;
MSG_COPY_ACK = 8;
MSG_TX_ACK = 9;
MSG_RESEND = 10;
MSG_CONSISTENT = 11;
MSG_HEARTBEAT = 12;
PAUSE = 13;
RESUME = 14;
CRACK = 15;
MINOR = 16;
SEVERE = 17;
LINK_LOST = 18;
RETRY_INIT = 19;
RETRY_MAKEPARTS = 20;
RECONNECT = 21;
RESTART = 22;
MSG_VERIFY_RESULT = 23;
MSG_DIVERGENCE = 24;
MSG_SWITCHOVER_DONE = 25;

action to_new { master_enter(f, MS_NEW, ev, reason); }
action to_init { master_enter(f, MS_INIT, ev, reason); }
action to_makeparts { master_enter(f, MS_MAKEPARTS, ev, reason); }
action to_reset { master_enter(f, MS_RESET, ev, reason); }
action to_ready { master_enter(f, MS_READY, ev, reason); }
action to_replicate { master_enter(f, MS_REPLICATE, ev, reason); }
action to_outofsync { master_enter(f, MS_OUTOFSYNC, ev, reason); }
action to_insync { master_enter(f, MS_INSYNC, ev, reason); }
action to_idle { master_enter(f, MS_IDLE, ev, reason); }
action to_linkdown { master_enter(f, MS_LINKDOWN, ev, reason); }
action to_error { master_enter(f, MS_ERROR, ev, reason); }

action stay_makeparts { master_stay(f, MS_MAKEPARTS, ev); }
action stay_ready { master_stay(f, MS_READY, ev); }
action stay_replicate { master_stay(f, MS_REPLICATE, ev); }
action stay_outofsync { master_stay(f, MS_OUTOFSYNC, ev); }
action stay_insync { master_stay(f, MS_INSYNC, ev); }
action stay_idle { master_stay(f, MS_IDLE, ev); }
# A crack during a copy means another pass; during LINKDOWN it is noted for
# the decision after reconnecting. The caller does that work.
action crack_replicate { master_stay(f, MS_REPLICATE, ev); }
action crack_outofsync { master_stay(f, MS_OUTOFSYNC, ev); }
action crack_linkdown { master_stay(f, MS_LINKDOWN, ev); }

# Copy traffic, the same in REPLICATE and OUTOFSYNC.
copying = MSG_COPY_ACK | MSG_TX_ACK | MSG_RESEND | MSG_HEARTBEAT;

main := (
	start: new: (
		JOURNAL_OK @to_init -> init |
		JOURNAL_FAIL @to_error -> error
	),
	init: (
		MSG_WELCOME @to_makeparts -> makeparts |
		MINOR @to_reset -> reset |
		SEVERE @to_error -> error
	),
	makeparts: (
		MSG_PARTS_READY @to_ready -> ready |
		MSG_HEARTBEAT @stay_makeparts -> makeparts |
		MINOR @to_reset -> reset |
		SEVERE @to_error -> error |
		LINK_LOST @to_linkdown -> linkdown
	),
	reset: (
		RETRY_INIT @to_init -> init |
		RETRY_MAKEPARTS @to_makeparts -> makeparts |
		SEVERE @to_error -> error
	),
	ready: (
		DECIDE_COPY @to_replicate -> replicate |
		DECIDE_RESYNC @to_outofsync -> outofsync |
		DECIDE_SYNC @to_insync -> insync |
		(MSG_HEARTBEAT | MSG_DIVERGENCE) @stay_ready -> ready |
		MINOR @to_reset -> reset |
		SEVERE @to_error -> error |
		LINK_LOST @to_linkdown -> linkdown
	),
	replicate: (
		copying @stay_replicate -> replicate |
		CRACK @crack_replicate -> replicate |
		MSG_CONSISTENT @to_insync -> insync |
		MINOR @to_reset -> reset |
		SEVERE @to_error -> error |
		LINK_LOST @to_linkdown -> linkdown
	),
	# A VERIFY_RESULT may be in flight when a crack ends INSYNC (VFY-7).
	outofsync: (
		(copying | MSG_VERIFY_RESULT) @stay_outofsync -> outofsync |
		CRACK @crack_outofsync -> outofsync |
		MSG_CONSISTENT @to_insync -> insync |
		MINOR @to_reset -> reset |
		SEVERE @to_error -> error |
		LINK_LOST @to_linkdown -> linkdown
	),
	insync: (
		(MSG_TX_ACK | MSG_RESEND | MSG_HEARTBEAT | MSG_VERIFY_RESULT | MSG_SWITCHOVER_DONE)
			@stay_insync -> insync |
		PAUSE @to_idle -> idle |
		CRACK @to_outofsync -> outofsync |
		MINOR @to_reset -> reset |
		SEVERE @to_error -> error |
		LINK_LOST @to_linkdown -> linkdown
	),
	# A RESEND in flight at the pause is no error: the resend waits for RESUME.
	idle: (
		(MSG_TX_ACK | MSG_RESEND | MSG_HEARTBEAT | MSG_VERIFY_RESULT) @stay_idle -> idle |
		RESUME @to_insync -> insync |
		CRACK @to_outofsync -> outofsync |
		SEVERE @to_error -> error |
		LINK_LOST @to_linkdown -> linkdown
	),
	linkdown: (
		RECONNECT @to_init -> init |
		CRACK @crack_linkdown -> linkdown |
		SEVERE @to_error -> error
	),
	error: (
		RESTART @to_new -> new
	)
);

write data nofinal noentry;
}%%

/* The message is fixed (log.h prints "volume=NAME" first) so tests and operators can grep it. */
static void master_enter(struct master_fsm *f, enum master_state to, enum master_event ev,
			 const char *reason)
{
	enum master_state from = f->state;

	/* RESET retries the failed creation step; later phases start over from INIT. */
	if (to == MS_RESET)
		f->return_step = from == MS_MAKEPARTS ? MS_MAKEPARTS : MS_INIT;
	/* Kept for status: RECONNECT itself always goes through INIT. */
	if (to == MS_LINKDOWN)
		f->return_step = from;
	f->state = to;

	if (to == MS_RESET || to == MS_ERROR)
		log_warn(f->volume, "state %s -> %s (event %s)%s%s", master_state_name(from),
			 master_state_name(to), master_event_name(ev), reason ? " reason: " : "",
			 reason ? reason : "");
	else
		log_info(f->volume, "state %s -> %s (event %s)", master_state_name(from),
			 master_state_name(to), master_event_name(ev));
	if (fsm_observer)
		fsm_observer(f->volume, false, (int)from, (int)to, master_event_name(ev), reason);
}

static void master_stay(struct master_fsm *f, enum master_state in, enum master_event ev)
{
	assert(f->state == in); /* the chart and the model agree */
	log_debug(f->volume, "state %s: event %s", master_state_name(in), master_event_name(ev));
}

void master_fsm_init(struct master_fsm *f, const char *volume)
{
	f->cs = master_start;
	f->state = MS_NEW;
	f->return_step = MS_INIT;
	f->volume = volume;
}

int master_fsm_feed(struct master_fsm *f, enum master_event ev, const char *reason)
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

	if (cs == master_error) {
		log_warn(f->volume, "state %s: illegal event %s", master_state_name(f->state),
			 master_event_name(ev));
		return -1;
	}
	f->cs = cs;
	return 0;
}

int master_fsm_retry(struct master_fsm *f)
{
	if (f->state == MS_RESET)
		return master_fsm_feed(f, f->return_step == MS_MAKEPARTS ? ME_RETRY_MAKEPARTS
									 : ME_RETRY_INIT,
				       NULL);
	if (f->state == MS_LINKDOWN)
		return master_fsm_feed(f, ME_RECONNECT, NULL);
	log_warn(f->volume, "state %s: nothing to retry", master_state_name(f->state));
	return -1;
}
