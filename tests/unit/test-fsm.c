/* Unit tests of the master and mirror state machines: every (state, event) pair against the spec's table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fsm.h"
#include "log.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_PATH 6

/* Values outside every enum: the machines must reject them like any illegal event. */
static const int bogus_events[] = { 0, -1, 1000, INT32_MIN, INT32_MAX };

/* ------------------------------------------------------------------ master */

struct master_edge {
	enum master_state from;
	enum master_event ev;
	enum master_state to;
};

/* The spec's master table; every pair not listed is illegal. */
static const struct master_edge master_edges[] = {
	{ MS_NEW, ME_JOURNAL_OK, MS_INIT },
	{ MS_NEW, ME_JOURNAL_FAIL, MS_ERROR },

	{ MS_INIT, ME_MSG_WELCOME, MS_MAKEPARTS },
	{ MS_INIT, ME_MINOR, MS_RESET },
	{ MS_INIT, ME_SEVERE, MS_ERROR },

	{ MS_MAKEPARTS, ME_MSG_PARTS_READY, MS_READY },
	{ MS_MAKEPARTS, ME_MSG_HEARTBEAT, MS_MAKEPARTS },
	{ MS_MAKEPARTS, ME_MINOR, MS_RESET },
	{ MS_MAKEPARTS, ME_SEVERE, MS_ERROR },
	{ MS_MAKEPARTS, ME_LINK_LOST, MS_LINKDOWN },

	{ MS_RESET, ME_RETRY_INIT, MS_INIT },
	{ MS_RESET, ME_RETRY_MAKEPARTS, MS_MAKEPARTS },
	{ MS_RESET, ME_SEVERE, MS_ERROR },

	{ MS_READY, ME_DECIDE_COPY, MS_REPLICATE },
	{ MS_READY, ME_DECIDE_RESYNC, MS_OUTOFSYNC },
	{ MS_READY, ME_DECIDE_SYNC, MS_INSYNC },
	{ MS_READY, ME_MSG_HEARTBEAT, MS_READY },
	{ MS_READY, ME_MSG_DIVERGENCE, MS_READY },
	{ MS_READY, ME_MINOR, MS_RESET },
	{ MS_READY, ME_SEVERE, MS_ERROR },
	{ MS_READY, ME_LINK_LOST, MS_LINKDOWN },

	{ MS_REPLICATE, ME_MSG_COPY_ACK, MS_REPLICATE },
	{ MS_REPLICATE, ME_MSG_TX_ACK, MS_REPLICATE },
	{ MS_REPLICATE, ME_MSG_RESEND, MS_REPLICATE },
	{ MS_REPLICATE, ME_MSG_HEARTBEAT, MS_REPLICATE },
	{ MS_REPLICATE, ME_CRACK, MS_REPLICATE },
	{ MS_REPLICATE, ME_MSG_CONSISTENT, MS_INSYNC },
	{ MS_REPLICATE, ME_MINOR, MS_RESET },
	{ MS_REPLICATE, ME_SEVERE, MS_ERROR },
	{ MS_REPLICATE, ME_LINK_LOST, MS_LINKDOWN },

	{ MS_OUTOFSYNC, ME_MSG_COPY_ACK, MS_OUTOFSYNC },
	{ MS_OUTOFSYNC, ME_MSG_TX_ACK, MS_OUTOFSYNC },
	{ MS_OUTOFSYNC, ME_MSG_RESEND, MS_OUTOFSYNC },
	{ MS_OUTOFSYNC, ME_MSG_HEARTBEAT, MS_OUTOFSYNC },
	{ MS_OUTOFSYNC, ME_MSG_VERIFY_RESULT, MS_OUTOFSYNC },
	{ MS_OUTOFSYNC, ME_CRACK, MS_OUTOFSYNC },
	{ MS_OUTOFSYNC, ME_MSG_CONSISTENT, MS_INSYNC },
	{ MS_OUTOFSYNC, ME_MINOR, MS_RESET },
	{ MS_OUTOFSYNC, ME_SEVERE, MS_ERROR },
	{ MS_OUTOFSYNC, ME_LINK_LOST, MS_LINKDOWN },

	{ MS_INSYNC, ME_MSG_TX_ACK, MS_INSYNC },
	{ MS_INSYNC, ME_MSG_RESEND, MS_INSYNC },
	{ MS_INSYNC, ME_MSG_HEARTBEAT, MS_INSYNC },
	{ MS_INSYNC, ME_MSG_VERIFY_RESULT, MS_INSYNC },
	{ MS_INSYNC, ME_MSG_SWITCHOVER_DONE, MS_INSYNC },
	{ MS_INSYNC, ME_PAUSE, MS_IDLE },
	{ MS_INSYNC, ME_CRACK, MS_OUTOFSYNC },
	{ MS_INSYNC, ME_MINOR, MS_RESET },
	{ MS_INSYNC, ME_SEVERE, MS_ERROR },
	{ MS_INSYNC, ME_LINK_LOST, MS_LINKDOWN },

	{ MS_IDLE, ME_MSG_TX_ACK, MS_IDLE },
	{ MS_IDLE, ME_MSG_RESEND, MS_IDLE },
	{ MS_IDLE, ME_MSG_HEARTBEAT, MS_IDLE },
	{ MS_IDLE, ME_MSG_VERIFY_RESULT, MS_IDLE },
	{ MS_IDLE, ME_RESUME, MS_INSYNC },
	{ MS_IDLE, ME_CRACK, MS_OUTOFSYNC },
	{ MS_IDLE, ME_SEVERE, MS_ERROR },
	{ MS_IDLE, ME_LINK_LOST, MS_LINKDOWN },

	{ MS_LINKDOWN, ME_RECONNECT, MS_INIT },
	{ MS_LINKDOWN, ME_CRACK, MS_LINKDOWN },
	{ MS_LINKDOWN, ME_SEVERE, MS_ERROR },

	{ MS_ERROR, ME_RESTART, MS_NEW },
};

/* A known event path from master_fsm_init to each state (0 ends a path). */
static const enum master_event master_paths[MS__COUNT][MAX_PATH] = {
	[MS_NEW] = { 0 },
	[MS_INIT] = { ME_JOURNAL_OK },
	[MS_MAKEPARTS] = { ME_JOURNAL_OK, ME_MSG_WELCOME },
	[MS_RESET] = { ME_JOURNAL_OK, ME_MINOR },
	[MS_READY] = { ME_JOURNAL_OK, ME_MSG_WELCOME, ME_MSG_PARTS_READY },
	[MS_REPLICATE] = { ME_JOURNAL_OK, ME_MSG_WELCOME, ME_MSG_PARTS_READY, ME_DECIDE_COPY },
	[MS_OUTOFSYNC] = { ME_JOURNAL_OK, ME_MSG_WELCOME, ME_MSG_PARTS_READY, ME_DECIDE_RESYNC },
	[MS_INSYNC] = { ME_JOURNAL_OK, ME_MSG_WELCOME, ME_MSG_PARTS_READY, ME_DECIDE_SYNC },
	[MS_LINKDOWN] = { ME_JOURNAL_OK, ME_MSG_WELCOME, ME_LINK_LOST },
	[MS_IDLE] = { ME_JOURNAL_OK, ME_MSG_WELCOME, ME_MSG_PARTS_READY, ME_DECIDE_SYNC, ME_PAUSE },
	[MS_ERROR] = { ME_JOURNAL_FAIL },
};

static int master_expected(enum master_state from, int ev)
{
	for (size_t i = 0; i < ARRAY_SIZE(master_edges); i++)
		if (master_edges[i].from == from && (int)master_edges[i].ev == ev)
			return (int)master_edges[i].to;
	return -1;
}

/* Field by field: padding bytes of a struct copy are unspecified. */
static bool master_same(const struct master_fsm *a, const struct master_fsm *b)
{
	return a->cs == b->cs && a->state == b->state && a->return_step == b->return_step &&
	       a->volume == b->volume;
}

static void master_reach(struct master_fsm *f, enum master_state s)
{
	master_fsm_init(f, "vol0");
	for (int i = 0; i < MAX_PATH && master_paths[s][i]; i++)
		assert_int_equal(master_fsm_feed(f, master_paths[s][i], NULL), 0);
	assert_int_equal(f->state, s);
}

/* cs of every model state, from its known path. */
static void master_cs_table(int cs[MS__COUNT])
{
	struct master_fsm f;

	for (int s = 0; s < MS__COUNT; s++) {
		master_reach(&f, (enum master_state)s);
		cs[s] = f.cs;
	}
}

static void test_master_one_cs_per_state(void **state)
{
	int cs[MS__COUNT];

	master_cs_table(cs);
	for (int a = 0; a < MS__COUNT; a++)
		for (int b = a + 1; b < MS__COUNT; b++)
			if (cs[a] == cs[b])
				fail_msg("%s and %s share cs %d", master_state_name(a),
					 master_state_name(b), cs[a]);

	/* Every way into a state lands on that state's cs. */
	for (size_t i = 0; i < ARRAY_SIZE(master_edges); i++) {
		const struct master_edge *e = &master_edges[i];
		struct master_fsm f;

		master_reach(&f, e->from);
		assert_int_equal(master_fsm_feed(&f, e->ev, NULL), 0);
		if (f.cs != cs[e->to])
			fail_msg("%s --%s--> cs %d, want %d (%s)", master_state_name(e->from),
				 master_event_name(e->ev), f.cs, cs[e->to],
				 master_state_name(e->to));
	}
}

static void test_master_every_pair(void **state)
{
	int legal = 0;

	for (int s = 0; s < MS__COUNT; s++) {
		for (int ev = 0; ev < ME__COUNT + (int)ARRAY_SIZE(bogus_events); ev++) {
			int code = ev < ME__COUNT ? ev : bogus_events[ev - ME__COUNT];
			int want = master_expected((enum master_state)s, code);
			struct master_fsm f;

			master_reach(&f, (enum master_state)s);
			struct master_fsm before = f;
			int rc = master_fsm_feed(&f, (enum master_event)code, "why");
			if (want < 0) {
				if (rc != -1 || !master_same(&f, &before))
					fail_msg("%s + event %d: accepted or changed (rc %d)",
						 master_state_name(s), code, rc);
			} else {
				legal++;
				if (rc != 0 || (int)f.state != want)
					fail_msg("%s + %s: rc %d state %s, want %s",
						 master_state_name(s), master_event_name(code), rc,
						 master_state_name(f.state), master_state_name(want));
			}
		}
	}
	assert_int_equal(legal, ARRAY_SIZE(master_edges));
}

static void test_master_return_step(void **state)
{
	static const struct {
		enum master_state from;
		enum master_event ev;
		enum master_state to;
		enum master_state step;
	} cases[] = {
		{ MS_INIT, ME_MINOR, MS_RESET, MS_INIT },
		{ MS_MAKEPARTS, ME_MINOR, MS_RESET, MS_MAKEPARTS },
		{ MS_READY, ME_MINOR, MS_RESET, MS_INIT },
		{ MS_REPLICATE, ME_MINOR, MS_RESET, MS_INIT },
		{ MS_OUTOFSYNC, ME_MINOR, MS_RESET, MS_INIT },
		{ MS_INSYNC, ME_MINOR, MS_RESET, MS_INIT },
		{ MS_MAKEPARTS, ME_LINK_LOST, MS_LINKDOWN, MS_MAKEPARTS },
		{ MS_READY, ME_LINK_LOST, MS_LINKDOWN, MS_READY },
		{ MS_REPLICATE, ME_LINK_LOST, MS_LINKDOWN, MS_REPLICATE },
		{ MS_OUTOFSYNC, ME_LINK_LOST, MS_LINKDOWN, MS_OUTOFSYNC },
		{ MS_INSYNC, ME_LINK_LOST, MS_LINKDOWN, MS_INSYNC },
		{ MS_IDLE, ME_LINK_LOST, MS_LINKDOWN, MS_IDLE },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct master_fsm f;

		master_reach(&f, cases[i].from);
		assert_int_equal(master_fsm_feed(&f, cases[i].ev, "test"), 0);
		assert_int_equal(f.state, cases[i].to);
		if (f.return_step != cases[i].step)
			fail_msg("%s --%s--> return_step %s, want %s",
				 master_state_name(cases[i].from), master_event_name(cases[i].ev),
				 master_state_name(f.return_step), master_state_name(cases[i].step));

		/* A crack while the link is down keeps the phase to report. */
		if (f.state == MS_LINKDOWN) {
			assert_int_equal(master_fsm_feed(&f, ME_CRACK, NULL), 0);
			assert_int_equal(f.return_step, cases[i].step);
		}

		/* Retry: RESET back to the failed creation step, LINKDOWN through INIT. */
		enum master_state want = f.state == MS_RESET ? cases[i].step : MS_INIT;
		assert_int_equal(master_fsm_retry(&f), 0);
		assert_int_equal(f.state, want);
	}
}

static void test_master_retry_elsewhere(void **state)
{
	for (int s = 0; s < MS__COUNT; s++) {
		struct master_fsm f;

		if (s == MS_RESET || s == MS_LINKDOWN)
			continue;
		master_reach(&f, (enum master_state)s);
		struct master_fsm before = f;
		assert_int_equal(master_fsm_retry(&f), -1);
		assert_true(master_same(&f, &before));
	}
}

/* A full life: restart out of ERROR starts over with a machine like a fresh one. */
static void test_master_restart(void **state)
{
	struct master_fsm f, fresh;

	master_fsm_init(&fresh, "vol0");
	master_reach(&f, MS_INSYNC);
	assert_int_equal(master_fsm_feed(&f, ME_SEVERE, "no space"), 0);
	assert_int_equal(f.state, MS_ERROR);
	assert_int_equal(master_fsm_feed(&f, ME_RECONNECT, NULL), -1);
	assert_int_equal(master_fsm_feed(&f, ME_RESTART, NULL), 0);
	assert_int_equal(f.state, MS_NEW);
	assert_int_equal(f.cs, fresh.cs);
	assert_int_equal(master_fsm_feed(&f, ME_JOURNAL_OK, NULL), 0);
	assert_int_equal(f.state, MS_INIT);
}

/* ------------------------------------------------------------------ mirror */

struct mirror_edge {
	enum mirror_state from;
	enum mirror_event ev;
	enum mirror_state to;
};

static const struct mirror_edge mirror_edges[] = {
	{ MR_INIT, MV_MSG_HELLO, MR_MAKEPARTS },
	{ MR_INIT, MV_SEVERE, MR_ERROR },

	{ MR_MAKEPARTS, MV_MSG_EXTENT_TABLE, MR_READY },
	{ MR_MAKEPARTS, MV_MSG_HEARTBEAT, MR_MAKEPARTS },
	{ MR_MAKEPARTS, MV_SEVERE, MR_ERROR },

	{ MR_READY, MV_MSG_START_REPLICATE, MR_REPLICATE },
	{ MR_READY, MV_MSG_START_OUTOFSYNC, MR_OUTOFSYNC },
	{ MR_READY, MV_MSG_START_SYNC, MR_INSYNC },
	{ MR_READY, MV_MSG_HEARTBEAT, MR_READY },
	{ MR_READY, MV_MSG_DIVERGENCE_REQUEST, MR_READY },
	{ MR_READY, MV_SEVERE, MR_ERROR },

	{ MR_REPLICATE, MV_MSG_COPY_DATA, MR_REPLICATE },
	{ MR_REPLICATE, MV_MSG_COPY_HOLE, MR_REPLICATE },
	{ MR_REPLICATE, MV_MSG_COPY_DONE, MR_REPLICATE },
	{ MR_REPLICATE, MV_MSG_TX, MR_REPLICATE },
	{ MR_REPLICATE, MV_MSG_HEARTBEAT, MR_REPLICATE },
	{ MR_REPLICATE, MV_MSG_START_REPLICATE, MR_REPLICATE },
	{ MR_REPLICATE, MV_APPLIED_CONSISTENT, MR_INSYNC },
	{ MR_REPLICATE, MV_SEVERE, MR_ERROR },

	{ MR_OUTOFSYNC, MV_MSG_COPY_DATA, MR_OUTOFSYNC },
	{ MR_OUTOFSYNC, MV_MSG_COPY_HOLE, MR_OUTOFSYNC },
	{ MR_OUTOFSYNC, MV_MSG_COPY_DONE, MR_OUTOFSYNC },
	{ MR_OUTOFSYNC, MV_MSG_TX, MR_OUTOFSYNC },
	{ MR_OUTOFSYNC, MV_MSG_HEARTBEAT, MR_OUTOFSYNC },
	{ MR_OUTOFSYNC, MV_MSG_START_OUTOFSYNC, MR_OUTOFSYNC },
	{ MR_OUTOFSYNC, MV_APPLIED_CONSISTENT, MR_INSYNC },
	{ MR_OUTOFSYNC, MV_SEVERE, MR_ERROR },

	{ MR_INSYNC, MV_MSG_TX, MR_INSYNC },
	{ MR_INSYNC, MV_MSG_HEARTBEAT, MR_INSYNC },
	{ MR_INSYNC, MV_MSG_VERIFY, MR_INSYNC },
	{ MR_INSYNC, MV_MSG_SWITCHOVER, MR_INSYNC },
	{ MR_INSYNC, MV_MSG_PAUSE, MR_IDLE },
	{ MR_INSYNC, MV_MSG_START_OUTOFSYNC, MR_OUTOFSYNC },
	{ MR_INSYNC, MV_SEVERE, MR_ERROR },

	{ MR_IDLE, MV_MSG_TX, MR_IDLE },
	{ MR_IDLE, MV_MSG_HEARTBEAT, MR_IDLE },
	{ MR_IDLE, MV_MSG_RESUME, MR_INSYNC },
	{ MR_IDLE, MV_MSG_START_OUTOFSYNC, MR_OUTOFSYNC },
	{ MR_IDLE, MV_SEVERE, MR_ERROR },
};

static const enum mirror_event mirror_paths[MR__COUNT][MAX_PATH] = {
	[MR_INIT] = { 0 },
	[MR_MAKEPARTS] = { MV_MSG_HELLO },
	[MR_READY] = { MV_MSG_HELLO, MV_MSG_EXTENT_TABLE },
	[MR_REPLICATE] = { MV_MSG_HELLO, MV_MSG_EXTENT_TABLE, MV_MSG_START_REPLICATE },
	[MR_OUTOFSYNC] = { MV_MSG_HELLO, MV_MSG_EXTENT_TABLE, MV_MSG_START_OUTOFSYNC },
	[MR_INSYNC] = { MV_MSG_HELLO, MV_MSG_EXTENT_TABLE, MV_MSG_START_SYNC },
	[MR_IDLE] = { MV_MSG_HELLO, MV_MSG_EXTENT_TABLE, MV_MSG_START_SYNC, MV_MSG_PAUSE },
	[MR_ERROR] = { MV_SEVERE },
};

static int mirror_expected(enum mirror_state from, int ev)
{
	for (size_t i = 0; i < ARRAY_SIZE(mirror_edges); i++)
		if (mirror_edges[i].from == from && (int)mirror_edges[i].ev == ev)
			return (int)mirror_edges[i].to;
	return -1;
}

static bool mirror_same(const struct mirror_fsm *a, const struct mirror_fsm *b)
{
	return a->cs == b->cs && a->state == b->state && a->volume == b->volume;
}

static void mirror_reach(struct mirror_fsm *f, enum mirror_state s)
{
	mirror_fsm_init(f, NULL);
	for (int i = 0; i < MAX_PATH && mirror_paths[s][i]; i++)
		assert_int_equal(mirror_fsm_feed(f, mirror_paths[s][i], NULL), 0);
	assert_int_equal(f->state, s);
}

static void test_mirror_one_cs_per_state(void **state)
{
	int cs[MR__COUNT];
	struct mirror_fsm f;

	for (int s = 0; s < MR__COUNT; s++) {
		mirror_reach(&f, (enum mirror_state)s);
		cs[s] = f.cs;
	}
	for (int a = 0; a < MR__COUNT; a++)
		for (int b = a + 1; b < MR__COUNT; b++)
			if (cs[a] == cs[b])
				fail_msg("%s and %s share cs %d", mirror_state_name(a),
					 mirror_state_name(b), cs[a]);

	for (size_t i = 0; i < ARRAY_SIZE(mirror_edges); i++) {
		const struct mirror_edge *e = &mirror_edges[i];

		mirror_reach(&f, e->from);
		assert_int_equal(mirror_fsm_feed(&f, e->ev, NULL), 0);
		if (f.cs != cs[e->to])
			fail_msg("%s --%s--> cs %d, want %d (%s)", mirror_state_name(e->from),
				 mirror_event_name(e->ev), f.cs, cs[e->to],
				 mirror_state_name(e->to));
	}
}

static void test_mirror_every_pair(void **state)
{
	int legal = 0;

	for (int s = 0; s < MR__COUNT; s++) {
		for (int ev = 0; ev < MV__COUNT + (int)ARRAY_SIZE(bogus_events); ev++) {
			int code = ev < MV__COUNT ? ev : bogus_events[ev - MV__COUNT];
			int want = mirror_expected((enum mirror_state)s, code);
			struct mirror_fsm f;

			mirror_reach(&f, (enum mirror_state)s);
			struct mirror_fsm before = f;
			int rc = mirror_fsm_feed(&f, (enum mirror_event)code, "why");
			if (want < 0) {
				if (rc != -1 || !mirror_same(&f, &before))
					fail_msg("%s + event %d: accepted or changed (rc %d)",
						 mirror_state_name(s), code, rc);
			} else {
				legal++;
				if (rc != 0 || (int)f.state != want)
					fail_msg("%s + %s: rc %d state %s, want %s",
						 mirror_state_name(s), mirror_event_name(code), rc,
						 mirror_state_name(f.state), mirror_state_name(want));
			}
		}
	}
	assert_int_equal(legal, ARRAY_SIZE(mirror_edges));
}

/* ------------------------------------------------------------------- names */

static void test_names(void **state)
{
	static const char *const ms[] = { "NEW", "INIT", "MAKEPARTS", "RESET", "READY",
					  "REPLICATE", "OUTOFSYNC", "INSYNC", "LINKDOWN",
					  "IDLE", "ERROR" };
	static const char *const rs[] = { "INIT", "REPLICATE", "ERROR" };
	static const enum mirror_state rv[] = { MR_INIT, MR_REPLICATE, MR_ERROR };

	assert_int_equal(ARRAY_SIZE(ms), MS__COUNT);
	for (int s = 0; s < MS__COUNT; s++)
		assert_string_equal(master_state_name(s), ms[s]);
	for (size_t i = 0; i < ARRAY_SIZE(rs); i++)
		assert_string_equal(mirror_state_name(rv[i]), rs[i]);
	assert_string_equal(mirror_state_name(MR_IDLE), "IDLE");

	assert_string_equal(master_event_name(ME_JOURNAL_OK), "JOURNAL_OK");
	assert_string_equal(master_event_name(ME_MSG_WELCOME), "MSG_WELCOME");
	assert_string_equal(master_event_name(ME_RETRY_MAKEPARTS), "RETRY_MAKEPARTS");
	assert_string_equal(master_event_name(ME_RESTART), "RESTART");
	assert_string_equal(mirror_event_name(MV_MSG_HELLO), "MSG_HELLO");
	assert_string_equal(mirror_event_name(MV_APPLIED_CONSISTENT), "APPLIED_CONSISTENT");
	assert_string_equal(mirror_event_name(MV_SEVERE), "SEVERE");

	/* Every in-range value is named, and names are unique within a table. */
	for (int e = 1; e < ME__COUNT; e++) {
		assert_string_not_equal(master_event_name(e), "UNKNOWN");
		for (int o = 1; o < e; o++)
			assert_string_not_equal(master_event_name(e), master_event_name(o));
	}
	for (int e = 1; e < MV__COUNT; e++) {
		assert_string_not_equal(mirror_event_name(e), "UNKNOWN");
		for (int o = 1; o < e; o++)
			assert_string_not_equal(mirror_event_name(e), mirror_event_name(o));
	}
	for (int s = 0; s < MR__COUNT; s++)
		assert_string_not_equal(mirror_state_name(s), "UNKNOWN");

	static const int out[] = { -1, 1000, INT32_MIN, INT32_MAX };
	for (size_t i = 0; i < ARRAY_SIZE(out); i++) {
		assert_string_equal(master_state_name(out[i]), "UNKNOWN");
		assert_string_equal(master_event_name(out[i]), "UNKNOWN");
		assert_string_equal(mirror_state_name(out[i]), "UNKNOWN");
		assert_string_equal(mirror_event_name(out[i]), "UNKNOWN");
	}
	assert_string_equal(master_state_name(MS__COUNT), "UNKNOWN");
	assert_string_equal(master_event_name(0), "UNKNOWN");
	assert_string_equal(master_event_name(ME__COUNT), "UNKNOWN");
	assert_string_equal(mirror_state_name(MR__COUNT), "UNKNOWN");
	assert_string_equal(mirror_event_name(0), "UNKNOWN");
	assert_string_equal(mirror_event_name(MV__COUNT), "UNKNOWN");
}

/* --------------------------------------------------------------- state log */

/* Runs fn with stderr captured into buf (NUL-terminated). */
static void capture_stderr(void (*fn)(void), char *buf, size_t size)
{
	char path[] = "/tmp/test-fsm-log-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);

	fn();

	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	ssize_t n = pread(fd, buf, size - 1, 0);
	close(fd);
	assert_true(n >= 0);
	buf[n] = '\0';
}

static void run_master_story(void)
{
	struct master_fsm f;

	log_init("test-fsm", LOG_INFO);
	master_fsm_init(&f, "vol7");
	master_fsm_feed(&f, ME_JOURNAL_OK, NULL);
	master_fsm_feed(&f, ME_MINOR, "connection refused");
	master_fsm_retry(&f);
	master_fsm_feed(&f, ME_MSG_WELCOME, NULL);
	master_fsm_feed(&f, ME_MSG_HEARTBEAT, NULL); /* self-loop: not a state change */
	master_fsm_feed(&f, ME_SEVERE, NULL);
	log_init("test-fsm", LOG_ERROR);
}

static void run_mirror_story(void)
{
	struct mirror_fsm f;

	log_init("test-fsm", LOG_INFO);
	mirror_fsm_init(&f, "vol8");
	mirror_fsm_feed(&f, MV_MSG_HELLO, NULL);
	mirror_fsm_feed(&f, MV_MSG_HEARTBEAT, NULL);
	mirror_fsm_feed(&f, MV_SEVERE, "protocol error");
	log_init("test-fsm", LOG_ERROR);
}

/* Counts the lines of buf that contain needle. */
static int count_lines(const char *buf, const char *needle)
{
	int n = 0;

	for (const char *p = buf; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

static void test_state_log(void **state)
{
	char buf[8192];

	capture_stderr(run_master_story, buf, sizeof(buf));
	assert_int_equal(count_lines(buf, " INFO volume=vol7 state NEW -> INIT (event JOURNAL_OK)\n"), 1);
	assert_int_equal(count_lines(buf, " WARN volume=vol7 state INIT -> RESET (event MINOR) "
					  "reason: connection refused\n"), 1);
	assert_int_equal(count_lines(buf, " INFO volume=vol7 state RESET -> INIT (event RETRY_INIT)\n"), 1);
	assert_int_equal(count_lines(buf, " INFO volume=vol7 state INIT -> MAKEPARTS (event MSG_WELCOME)\n"), 1);
	assert_int_equal(count_lines(buf, " WARN volume=vol7 state MAKEPARTS -> ERROR (event SEVERE)\n"), 1);
	assert_int_equal(count_lines(buf, "\n"), 5); /* nothing for the heartbeat */

	capture_stderr(run_mirror_story, buf, sizeof(buf));
	assert_int_equal(count_lines(buf, " INFO volume=vol8 state INIT -> MAKEPARTS (event MSG_HELLO)\n"), 1);
	assert_int_equal(count_lines(buf, " WARN volume=vol8 state MAKEPARTS -> ERROR (event SEVERE) "
					  "reason: protocol error\n"), 1);
	assert_int_equal(count_lines(buf, "\n"), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_master_one_cs_per_state),
		cmocka_unit_test(test_master_every_pair),
		cmocka_unit_test(test_master_return_step),
		cmocka_unit_test(test_master_retry_elsewhere),
		cmocka_unit_test(test_master_restart),
		cmocka_unit_test(test_mirror_one_cs_per_state),
		cmocka_unit_test(test_mirror_every_pair),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_state_log),
	};

	/* Illegal events log a warning each: keep the table tests quiet. */
	log_init("test-fsm", LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
