/* Replication state machines: events and states of the master and mirror roles (fsm/master.rl, fsm/mirror.rl). */
#ifndef FREP_FSM_H
#define FREP_FSM_H

#include <stdbool.h>

/* Master states: every state of the model (../shared/PRODUCT.md). */
enum master_state {
	MS_NEW,
	MS_INIT,
	MS_MAKEPARTS,
	MS_RESET,
	MS_READY,
	MS_REPLICATE,
	MS_OUTOFSYNC,
	MS_INSYNC,
	MS_LINKDOWN,
	MS_IDLE,
	MS_ERROR,
	MS__COUNT
};

/*
 * Master alphabet: messages received (ME_MSG_*) and local events.
 * Numeric codes start at 1 so the Ragel alphabet is a clean range.
 */
enum master_event {
	ME_JOURNAL_OK = 1,   /* NEW: mirror buffer reserved */
	ME_JOURNAL_FAIL,     /* NEW: mirror buffer cannot be reserved */
	ME_MSG_WELCOME,	     /* INIT: handshake accepted */
	ME_MSG_PARTS_READY,  /* MAKEPARTS: extents created or validated */
	ME_DECIDE_COPY,	     /* READY: first copy (or interrupted one) needed */
	ME_DECIDE_RESYNC,    /* READY: mirror cracked, resync needed */
	ME_DECIDE_SYNC,	     /* READY: mirror consistent, sequencing can resume */
	ME_MSG_COPY_ACK,     /* copy range durable on the mirror */
	ME_MSG_TX_ACK,	     /* TXIDs durable on the mirror */
	ME_MSG_RESEND,	     /* mirror asks for a gap again */
	ME_MSG_CONSISTENT,   /* mirror consistent: copy or resync complete */
	ME_MSG_HEARTBEAT,
	ME_PAUSE,	     /* operator */
	ME_RESUME,	     /* operator */
	ME_CRACK,	     /* mirror buffer overflowed */
	ME_MINOR,	     /* minor error: refused, timeout, transient I/O, peer busy */
	ME_SEVERE,	     /* severe error: protocol error, name clash, no space... */
	ME_LINK_LOST,	     /* connection lost after INIT */
	ME_RETRY_INIT,	     /* RESET backoff over, failed step was INIT */
	ME_RETRY_MAKEPARTS,  /* RESET backoff over, failed step was MAKEPARTS */
	ME_RECONNECT,	     /* LINKDOWN backoff over: reconnect */
	ME_RESTART,	     /* operator restart out of ERROR */
	ME_MSG_VERIFY_RESULT, /* the mirror's hash of a region (online verify) */
	ME_MSG_DIVERGENCE,    /* READY: the regions a copy of an earlier epoch changed (FBK-3) */
	ME_MSG_SWITCHOVER_DONE, /* INSYNC: the mirror's copy is the primary now (SWO-3) */
	ME__COUNT
};

/* Mirror states: those the mirror can observe (no NEW, RESET or LINKDOWN). */
enum mirror_state {
	MR_INIT,
	MR_MAKEPARTS,
	MR_READY,
	MR_REPLICATE,
	MR_OUTOFSYNC,
	MR_INSYNC,
	MR_IDLE,
	MR_ERROR,
	MR__COUNT
};

enum mirror_event {
	MV_MSG_HELLO = 1,	  /* INIT: master accepted */
	MV_MSG_EXTENT_TABLE,	  /* MAKEPARTS: extents created or validated */
	MV_MSG_START_REPLICATE,	  /* READY: StartCopy kind=REPLICATE */
	MV_MSG_START_OUTOFSYNC,	  /* READY: StartCopy kind=OUTOFSYNC */
	MV_MSG_START_SYNC,	  /* READY: StartSync */
	MV_MSG_COPY_DATA,
	MV_MSG_COPY_HOLE,
	MV_MSG_COPY_DONE,
	MV_MSG_TX,
	MV_APPLIED_CONSISTENT,	  /* local: applied through t_c and durable */
	MV_MSG_PAUSE,
	MV_MSG_RESUME,
	MV_MSG_HEARTBEAT,
	MV_SEVERE,		  /* local severe error, or severe Error received */
	MV_MSG_VERIFY,		  /* INSYNC: hash a region (online verify) */
	MV_MSG_DIVERGENCE_REQUEST, /* READY: which regions did this copy change (FBK-2) */
	MV_MSG_SWITCHOVER,	  /* INSYNC: become the primary at this TXID (SWO-2) */
	MV__COUNT
};

/* Master machine. cs is Ragel's; state is the model state it stands for. */
struct master_fsm {
	int cs;
	enum master_state state;
	enum master_state return_step; /* RESET/LINKDOWN: the step to go back to */
	const char *volume;	       /* borrowed, for the state log */
};

struct mirror_fsm {
	int cs;
	enum mirror_state state;
	const char *volume; /* borrowed; may be NULL until Hello names it */
};

void master_fsm_init(struct master_fsm *f, const char *volume);
/*
 * Feeds one event. On a legal event the transition's action runs, the state
 * changes and "volume=NAME state OLD -> NEW" is logged (with reason for RESET
 * and ERROR). On an illegal event nothing changes and -1 is returned.
 * reason may be NULL.
 */
int master_fsm_feed(struct master_fsm *f, enum master_event ev, const char *reason);
/* RESET/LINKDOWN backoff over: feeds the retry event for f->return_step. */
int master_fsm_retry(struct master_fsm *f);

void mirror_fsm_init(struct mirror_fsm *f, const char *volume);
int mirror_fsm_feed(struct mirror_fsm *f, enum mirror_event ev, const char *reason);

/*
 * Called after every state change of either machine, in the thread that fed
 * the event (the admin API's events: common/events.h). mirror says which
 * machine; from and to are its enum values. Set once at startup, or NULL.
 */
extern void (*fsm_observer)(const char *volume, bool mirror, int from, int to, const char *event,
			    const char *reason);

const char *master_state_name(enum master_state s);
const char *master_event_name(enum master_event e);
const char *mirror_state_name(enum mirror_state s);
const char *mirror_event_name(enum mirror_event e);

#endif
