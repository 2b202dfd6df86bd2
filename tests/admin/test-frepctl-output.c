/* Unit tests of frepctl's output: the protobuf-to-JSON walk and the human renderer, on filled messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frepctl.h"

#define MIB (UINT64_C(1) << 20)
#define NOW_MS INT64_C(1796220000000) /* the daemon's clock in every block below */

/* ------------------------------------------------------------------ fixtures */

/* A master volume with every part set, as frep-client would report it mid-resync. */
struct master_vol {
	VolumeStatus v;
	Frep__Admin__V1__MasterStatus m;
	Frep__Admin__V1__Peer peer;
	Progress copy;
	Frep__Admin__V1__Error err;
	Frep__Admin__V1__VerifyStatus verify;
	Progress verify_progress;
};

static void fill_master(struct master_vol *x)
{
	frep__admin__v1__volume_status__init(&x->v);
	frep__admin__v1__master_status__init(&x->m);
	frep__admin__v1__peer__init(&x->peer);
	frep__admin__v1__progress__init(&x->copy);
	frep__admin__v1__error__init(&x->err);
	frep__admin__v1__verify_status__init(&x->verify);
	frep__admin__v1__progress__init(&x->verify_progress);
	x->v.name = "db";
	x->v.role = FREP__ADMIN__V1__ROLE__MASTER;
	x->v.state = FREP__ADMIN__V1__STATE__OUTOFSYNC;
	x->v.state_since_unix_ms = NOW_MS - 312000; /* 5m12s */
	x->v.master = &x->m;
	/* Past 2^53: a double would round it. */
	x->m.committed_txid = (UINT64_C(1) << 63) + 5;
	x->m.acked_txid = 800;
	x->m.applied_txid = 812;
	x->m.lag_tx = 12;
	x->m.lag_bytes = 3 * MIB / 2;
	x->m.lag_seconds = 0.4;
	x->m.buffer_used_bytes = 25 * MIB;
	x->m.buffer_free_bytes = 75 * MIB;
	x->m.write_rate_bps = 3 * MIB;
	x->m.send_rate_bps = 2 * MIB;
	x->m.dirty_bytes = 0;
	x->m.mode = FREP__ADMIN__V1__MODE__SYNC;
	x->m.on_buffer_full = FREP__ADMIN__V1__ON_BUFFER_FULL__BLOCK;
	x->m.max_rate_bps = 50 * MIB;
	x->m.resync_full = 1;
	x->m.paused = 0;
	x->m.copy = &x->copy;
	x->copy.done_bytes = 450 * MIB;
	x->copy.total_bytes = 1024 * MIB;
	x->copy.rate_bps = 50 * MIB;
	x->copy.eta_seconds = 11;
	x->m.peer = &x->peer;
	x->peer.address = "127.0.0.1:7460";
	x->peer.identity = "frep-mirror";
	x->peer.cipher = "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256";
	x->peer.lanes = 2;
	x->peer.compression_ratio = 1.0;
	x->v.last_error = &x->err;
	x->err.code = "CHECKSUM";
	x->err.message = "journal record 77 fails its checksum";
	x->err.time_unix_ms = NOW_MS - 125000; /* 2m05s */
	x->v.verify = &x->verify;
	x->verify.verify_id = 3;
	x->verify.outcome = "mismatch";
	x->verify.mismatched_regions = 2;
	x->verify.finished_unix_ms = NOW_MS - 60000;
	x->verify.progress = &x->verify_progress;
}

/* A mirror volume, consistent, with its master connected. */
struct mirror_vol {
	VolumeStatus v;
	Frep__Admin__V1__MirrorStatus m;
	Frep__Admin__V1__Peer master;
};

static void fill_mirror(struct mirror_vol *x)
{
	frep__admin__v1__volume_status__init(&x->v);
	frep__admin__v1__mirror_status__init(&x->m);
	frep__admin__v1__peer__init(&x->master);
	x->v.name = "db";
	x->v.role = FREP__ADMIN__V1__ROLE__MIRROR;
	x->v.state = FREP__ADMIN__V1__STATE__INSYNC;
	x->v.state_since_unix_ms = NOW_MS - 7200000; /* 2h00m */
	x->v.mirror = &x->m;
	x->m.owner_identity = "master-1";
	x->m.consistent = 1;
	x->m.consistent_txid = 812;
	x->m.consistent_unix_ms = NOW_MS - 1000;
	x->m.last_applied_txid = 812;
	x->m.journal_used_bytes = 5 * MIB / 4;
	x->m.journal_size_bytes = 64 * MIB;
	x->m.preallocate = "sparse";
	x->m.connected_master = &x->master;
	x->master.address = "127.0.0.1:53422";
	x->master.identity = "master-1";
	x->master.cipher = "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256";
	x->master.lanes = 1;
	x->master.compression_ratio = 2.5;
	x->master.protocol = 2;
	x->master.compression = "zstd";
}

/* What f wrote: the caller frees. */
static char *render(void (*fn)(FILE *, const void *), const void *arg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	fn(f, arg);
	fclose(f);
	return buf;
}

static void volume_at_now(FILE *f, const void *v)
{
	render_volume(f, v, NOW_MS);
}

static void event_line(FILE *f, const void *e)
{
	render_event(f, e);
}

/* --------------------------------------------------------------------- JSON */

static void test_json_master(void **state)
{
	struct master_vol x;
	fill_master(&x);
	struct json_object *o = pb_to_json(&x.v.base), *m, *v;

	assert_true(json_object_object_get_ex(o, "name", &v));
	assert_string_equal(json_object_get_string(v), "db");
	/* Enums by name, as the metrics' labels. */
	assert_true(json_object_object_get_ex(o, "role", &v));
	assert_string_equal(json_object_get_string(v), "MASTER");
	assert_true(json_object_object_get_ex(o, "state", &v));
	assert_string_equal(json_object_get_string(v), "OUTOFSYNC");
	assert_true(json_object_object_get_ex(o, "master", &m));
	assert_true(json_object_object_get_ex(m, "mode", &v));
	assert_string_equal(json_object_get_string(v), "SYNC");
	assert_true(json_object_object_get_ex(m, "on_buffer_full", &v));
	assert_string_equal(json_object_get_string(v), "BLOCK");
	/* uint64 exactly, also in the printed text. */
	assert_true(json_object_object_get_ex(m, "committed_txid", &v));
	assert_int_equal(json_object_get_type(v), json_type_int);
	assert_true(json_object_get_uint64(v) == (UINT64_C(1) << 63) + 5);
	assert_non_null(strstr(json_object_to_json_string(m), "\"committed_txid\": 9223372036854775813"));
	/* Doubles: short, and a float in JSON even when whole. */
	assert_true(json_object_object_get_ex(m, "lag_seconds", &v));
	assert_string_equal(json_object_to_json_string(v), "0.4");
	assert_true(json_object_object_get_ex(json_object_object_get(m, "peer"), "compression_ratio", &v));
	assert_string_equal(json_object_to_json_string(v), "1.0");
	/* proto3 defaults are present; booleans are JSON booleans. */
	assert_true(json_object_object_get_ex(m, "dirty_bytes", &v));
	assert_int_equal(json_object_get_int64(v), 0);
	assert_true(json_object_object_get_ex(m, "paused", &v));
	assert_int_equal(json_object_get_type(v), json_type_boolean);
	assert_false(json_object_get_boolean(v));
	assert_true(json_object_object_get_ex(m, "resync_full", &v));
	assert_true(json_object_get_boolean(v));
	/* Sub-messages nest; an absent one is left out, not null. */
	assert_true(json_object_object_get_ex(json_object_object_get(m, "copy"), "total_bytes", &v));
	assert_true(json_object_get_uint64(v) == 1024 * MIB);
	assert_false(json_object_object_get_ex(o, "mirror", NULL));
	assert_true(json_object_object_get_ex(json_object_object_get(o, "last_error"), "code", &v));
	assert_string_equal(json_object_get_string(v), "CHECKSUM");
	json_object_put(o);
}

static void test_json_repeated_and_unknown_enum(void **state)
{
	VerifyResult r = FREP__ADMIN__V1__VERIFY_RESULT__INIT;
	Frep__Admin__V1__VerifyStatus s = FREP__ADMIN__V1__VERIFY_STATUS__INIT;
	Frep__Admin__V1__Region g1 = FREP__ADMIN__V1__REGION__INIT, g2 = FREP__ADMIN__V1__REGION__INIT;
	Frep__Admin__V1__Region *regions[] = { &g1, &g2 };
	g1.offset = 12 * MIB;
	g1.length = 4 * MIB;
	g2.offset = UINT64_MAX - 4095;
	g2.length = 4096;
	r.status = &s;
	r.region_size = 4 * MIB;
	r.n_mismatches = 2;
	r.mismatches = regions;
	struct json_object *o = pb_to_json(&r.base), *a, *v;
	assert_true(json_object_object_get_ex(o, "mismatches", &a));
	assert_int_equal(json_object_array_length(a), 2);
	assert_true(json_object_object_get_ex(json_object_array_get_idx(a, 0), "offset", &v));
	assert_true(json_object_get_uint64(v) == 12 * MIB);
	assert_true(json_object_object_get_ex(json_object_array_get_idx(a, 1), "offset", &v));
	assert_true(json_object_get_uint64(v) == UINT64_MAX - 4095);
	json_object_put(o);

	/* An empty repeated field is an empty array; a state newer than frepctl is its number. */
	StatusResponse sr = FREP__ADMIN__V1__STATUS_RESPONSE__INIT;
	VolumeStatus vs = FREP__ADMIN__V1__VOLUME_STATUS__INIT;
	assert_string_equal(json_object_to_json_string_ext(o = pb_to_json(&sr.base), JSON_C_TO_STRING_PLAIN),
			    "{\"volumes\":[],\"daemon\":\"\",\"version\":\"\",\"now_unix_ms\":0}");
	json_object_put(o);
	vs.name = "x";
	vs.state = 99;
	o = pb_to_json(&vs.base);
	assert_true(json_object_object_get_ex(o, "state", &v));
	assert_int_equal(json_object_get_int(v), 99);
	json_object_put(o);
}

static void test_json_nonfinite_double_is_null(void **state)
{
	Frep__Admin__V1__MasterStatus m = FREP__ADMIN__V1__MASTER_STATUS__INIT;
	m.lag_seconds = NAN;
	struct json_object *o = pb_to_json(&m.base), *v = (struct json_object *)1;
	assert_true(json_object_object_get_ex(o, "lag_seconds", &v));
	assert_null(v);
	/* Still a valid JSON document. */
	assert_non_null(strstr(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), "\"lag_seconds\":null"));
	json_object_put(o);
}

/* Through the wire and back, as frepctl gets it: unpacked messages walk the same. */
static void test_json_after_unpack(void **state)
{
	struct mirror_vol x;
	fill_mirror(&x);
	size_t n = protobuf_c_message_get_packed_size(&x.v.base);
	uint8_t *buf = malloc(n);
	protobuf_c_message_pack(&x.v.base, buf);
	VolumeStatus *u = frep__admin__v1__volume_status__unpack(NULL, n, buf);
	assert_non_null(u);
	struct json_object *a = pb_to_json(&x.v.base), *b = pb_to_json(&u->base);
	assert_string_equal(json_object_to_json_string(a), json_object_to_json_string(b));
	assert_false(json_object_object_get_ex(a, "master", NULL));
	json_object_put(a);
	json_object_put(b);
	frep__admin__v1__volume_status__free_unpacked(u, NULL);
	free(buf);
}

/* ---------------------------------------------------------------- renderer */

static void test_render_master(void **state)
{
	struct master_vol x;
	fill_master(&x);
	char *s = render(volume_at_now, &x.v);
	assert_string_equal(s,
		"db role:MASTER state:OUTOFSYNC since:5m12s\n"
		"  peer:frep-mirror address:127.0.0.1:7460 lanes:2 "
		"cipher:TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256\n"
		"  txid committed:9223372036854775813 acked:800 applied:812\n"
		"  lag tx:12 bytes:1.5M seconds:0.4\n"
		"  buffer used:25M free:75M (75%) writes:3.0M/s sends:2.0M/s dirty:0\n"
		"  mode:SYNC on-buffer-full:BLOCK max-rate:50M/s resync:full\n"
		"  copy: 43.9% 450M/1.0G 50M/s eta:11s\n"
		"  verify #3: mismatch mismatched:2 repaired:0 finished 1m00s ago\n"
		"  last-error:CHECKSUM 2m05s ago: journal record 77 fails its checksum\n");
	free(s);
}

static void test_render_master_disconnected_idle(void **state)
{
	struct master_vol x;
	fill_master(&x);
	x.v.state = FREP__ADMIN__V1__STATE__IDLE;
	x.v.state_since_unix_ms = NOW_MS + 5000; /* the daemon's clock is ahead: never negative */
	x.m.peer = NULL;
	x.m.copy = NULL;
	x.m.paused = 1;
	x.m.degraded = 1;
	x.m.resync_full = 0;
	x.m.max_rate_bps = 0;
	x.v.verify = NULL;
	x.v.last_error = NULL;
	char *s = render(volume_at_now, &x.v);
	assert_non_null(strstr(s, "state:IDLE since:0s\n"));
	assert_non_null(strstr(s, "  peer: not connected\n"));
	assert_non_null(strstr(s, "max-rate:unlimited paused degraded\n"));
	assert_null(strstr(s, "copy:"));
	assert_null(strstr(s, "verify"));
	assert_null(strstr(s, "last-error"));
	free(s);
}

static void test_render_mirror(void **state)
{
	struct mirror_vol x;
	fill_mirror(&x);
	char *s = render(volume_at_now, &x.v);
	assert_string_equal(s,
		"db role:MIRROR state:INSYNC since:2h00m\n"
		"  owner:master-1 consistent@812 1s ago applied:812\n"
		"  journal used:1.2M size:64M preallocate:sparse\n"
		"  master:master-1 address:127.0.0.1:53422 lanes:1 "
		"cipher:TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256 protocol:2 compression:zstd "
		"ratio:2.50\n");
	free(s);

	/* Mid-copy: inconsistent, keeping the last consistent TXID; no master connected. */
	x.m.consistent = 0;
	x.m.consistent_unix_ms = 0;
	x.m.connected_master = NULL;
	x.v.state = FREP__ADMIN__V1__STATE__DETACHED;
	s = render(volume_at_now, &x.v);
	assert_non_null(strstr(s, "state:DETACHED"));
	assert_non_null(strstr(s, "  owner:master-1 inconsistent (last consistent@812) applied:812\n"));
	assert_non_null(strstr(s, "  master: not connected\n"));
	free(s);
}

static void test_render_events(void **state)
{
	struct master_vol x;
	fill_master(&x);
	Event e = FREP__ADMIN__V1__EVENT__INIT;
	e.time_unix_ms = NOW_MS + 123; /* 2026-12-02T14:00:00.123 UTC */
	e.volume = &x.v;
	e.seq = 41;
	e.kind = FREP__ADMIN__V1__EVENT__KIND__STATE_CHANGE;
	e.old_state = FREP__ADMIN__V1__STATE__INSYNC;
	e.reason = "event crack: the mirror buffer is full";
	char *s = render(event_line, &e);
	assert_string_equal(s, "2026-12-02T14:00:00.123+00:00 state-change db INSYNC -> OUTOFSYNC "
			       "(event crack: the mirror buffer is full)\n");
	free(s);

	e.kind = FREP__ADMIN__V1__EVENT__KIND__PROGRESS;
	e.reason = "";
	s = render(event_line, &e);
	assert_string_equal(s, "2026-12-02T14:00:00.123+00:00 progress db copy 43.9% 450M/1.0G 50M/s "
			       "eta:11s lag-tx:12 lag-bytes:1572864\n");
	free(s);

	e.kind = FREP__ADMIN__V1__EVENT__KIND__VERIFY_DONE;
	s = render(event_line, &e);
	assert_string_equal(s, "2026-12-02T14:00:00.123+00:00 verify-done db #3 mismatch mismatched:2 "
			       "repaired:0\n");
	free(s);

	e.kind = FREP__ADMIN__V1__EVENT__KIND__ERROR;
	s = render(event_line, &e);
	assert_string_equal(s, "2026-12-02T14:00:00.123+00:00 error db CHECKSUM: journal record 77 fails "
			       "its checksum\n");
	free(s);

	/* INITIAL_DONE carries no volume. */
	Event d = FREP__ADMIN__V1__EVENT__INIT;
	d.kind = FREP__ADMIN__V1__EVENT__KIND__INITIAL_DONE;
	d.time_unix_ms = NOW_MS;
	s = render(event_line, &d);
	assert_string_equal(s, "2026-12-02T14:00:00.000+00:00 initial-done\n");
	free(s);
}

static void verify_result(FILE *f, const void *r)
{
	render_verify_result(f, "db", r);
}

static void test_render_verify_result(void **state)
{
	VerifyResult r = FREP__ADMIN__V1__VERIFY_RESULT__INIT;
	Frep__Admin__V1__VerifyStatus s = FREP__ADMIN__V1__VERIFY_STATUS__INIT;
	Frep__Admin__V1__Region g = FREP__ADMIN__V1__REGION__INIT;
	Frep__Admin__V1__Region *regions[] = { &g };
	s.verify_id = 4;
	s.repair = 1;
	s.outcome = "repaired";
	s.mismatched_regions = 1;
	s.repaired_regions = 1;
	g.offset = 12 * MIB;
	g.length = 4 * MIB;
	r.status = &s;
	r.region_size = 4 * MIB;
	r.n_mismatches = 1;
	r.mismatches = regions;
	char *out = render(verify_result, &r);
	assert_string_equal(out, "db: verify #4 (repair) repaired: 1 mismatching region of 4.0M, 1 repaired\n"
				 "  mismatch offset:12582912 length:4194304 (12M+4.0M)\n");
	free(out);
}

struct snapshots {
	const Snapshot *const *s;
	size_t n;
};

static void snapshot_table(FILE *f, const void *arg)
{
	const struct snapshots *x = arg;
	render_snapshots(f, x->s, x->n, NOW_MS);
}

/* A table: columns as wide as their widest cell, invalid with its reason, exports with pids. */
static void test_render_snapshots(void **state)
{
	Snapshot a = FREP__ADMIN__V1__SNAPSHOT__INIT, b = FREP__ADMIN__V1__SNAPSHOT__INIT,
		 c = FREP__ADMIN__V1__SNAPSHOT__INIT;
	Frep__Admin__V1__SnapshotExport e = FREP__ADMIN__V1__SNAPSHOT_EXPORT__INIT;
	a.volume = "db";
	a.name = "nightly";
	a.kind = FREP__ADMIN__V1__SNAPSHOT__KIND__USER;
	a.txid = 812;
	a.created_unix_ms = NOW_MS - 312000; /* 5m12s */
	a.used_bytes = 3 * MIB / 2;
	a.valid = 1;
	a.export = &e;
	e.nbd = "unix:/run/frep/nbd/db@nightly.sock";
	e.export_name = "db@nightly";
	e.pid = 4242;
	b.volume = "db";
	b.name = "pre-resync";
	b.kind = FREP__ADMIN__V1__SNAPSHOT__KIND__PRE_RESYNC;
	b.txid = (UINT64_C(1) << 63) + 5; /* exact past 2^53 */
	b.created_unix_ms = NOW_MS - 7200000;
	b.invalid_reason = "no space left for copy-before-write";
	b.invalidated_unix_ms = NOW_MS - 60000;
	c.volume = "web-2";
	c.name = "export-20261202-213748";
	c.kind = FREP__ADMIN__V1__SNAPSHOT__KIND__EXPORT;
	c.txid = 7;
	c.created_unix_ms = NOW_MS;
	c.valid = 1;
	const Snapshot *all[] = { &a, &b, &c };
	struct snapshots x = { all, 3 };
	char *out = render(snapshot_table, &x);
	assert_string_equal(out,
		"VOLUME  SNAPSHOT                KIND        TXID                 CREATED    USED  "
		"STATE                                                   EXPORT\n"
		"db      nightly                 user        812                  5m12s ago  1.5M  "
		"valid                                                   unix:/run/frep/nbd/db@nightly.sock pid:4242\n"
		"db      pre-resync              pre-resync  9223372036854775813  2h00m ago  0     "
		"invalid 1m00s ago: no space left for copy-before-write  -\n"
		"web-2   export-20261202-213748  export      7                    0s ago     0     "
		"valid                                                   -\n");
	free(out);
	x.n = 0;
	out = render(snapshot_table, &x);
	assert_string_equal(out, "no snapshots\n");
	free(out);
}

/* Not a terminal: plain lines, at most one per 2 s, and always the last one. */
static void test_progress_plain(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct progress_bar b;
	progress_init(&b, f, "resync", "db");
	assert_false(b.tty);
	Progress p = FREP__ADMIN__V1__PROGRESS__INIT;
	p.total_bytes = 100 * MIB;
	p.done_bytes = 10 * MIB;
	p.rate_bps = 10 * MIB;
	p.eta_seconds = 9;
	progress_update(&b, &p);
	p.done_bytes = 20 * MIB;
	progress_update(&b, &p); /* within 2 s of the first: not printed */
	p.done_bytes = 100 * MIB;
	p.eta_seconds = 0;
	progress_update(&b, &p); /* done: printed */
	progress_end(&b);
	fclose(f);
	assert_string_equal(buf, "resync db: 10.0% 10M/100M 10M/s eta:9s\n"
				 "resync db: 100.0% 100M/100M 10M/s eta:?\n");
	free(buf);
}

int main(void)
{
	/* Event times are local: pin the zone. */
	setenv("TZ", "UTC", 1);
	tzset();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_master),
		cmocka_unit_test(test_json_repeated_and_unknown_enum),
		cmocka_unit_test(test_json_nonfinite_double_is_null),
		cmocka_unit_test(test_json_after_unpack),
		cmocka_unit_test(test_render_master),
		cmocka_unit_test(test_render_master_disconnected_idle),
		cmocka_unit_test(test_render_mirror),
		cmocka_unit_test(test_render_events),
		cmocka_unit_test(test_render_verify_result),
		cmocka_unit_test(test_render_snapshots),
		cmocka_unit_test(test_progress_plain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
