/*
 * frep-conform plays a mirror against a master: the cases, each naming the
 * spec clauses it checks. The master runs fresh for every case (--run), in
 * its own scratch directory.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "conform.h"

/* The master's first frame is a well-formed HELLO for one lane of a fresh session. */
static int hs_hello(struct cctx *x)
{
	struct frame f;
	STEP(cx_accept(x));
	x->p.skip_heartbeats = true;
	STEP(cx_expect(x, FREP_MSG_HELLO, &f));
	const Frep__V1__Hello *h = (const Frep__V1__Hello *)f.msg;
	CHECK(x, h->proto_min <= 1 && h->proto_max >= 1, "HELLO offers versions %u..%u, not 1",
	      h->proto_min, h->proto_max);
	CHECK(x, h->lane == 0 && h->lane_count == 1, "HELLO lane %u of %u; version 1 has one lane",
	      h->lane, h->lane_count);
	CHECK(x, h->volume_uuid.len == 16 && h->session_id.len == 16,
	      "HELLO volume_uuid of %zu bytes, session_id of %zu; both must be 16", h->volume_uuid.len,
	      h->session_id.len);
	return 0;
}

#define C(id, clauses, title, fn) { id, clauses, title, ROLE_MASTER, false, fn, 0, 0 }

const struct conform_case master_cases[] = {
	C("master.hs.hello", "HS-1 LANE-1 LANE-2", "the first frame is a HELLO for one lane", hs_hello),
	{ NULL, NULL, NULL, ROLE_MASTER, false, NULL, 0, 0 },
};

const struct conform_case *master_matrix_cases(void)
{
	static const struct conform_case none[] = { { NULL, NULL, NULL, ROLE_MASTER, false, NULL, 0, 0 } };
	return none;
}
