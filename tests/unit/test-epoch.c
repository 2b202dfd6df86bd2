/* Epoch histories (common/epoch.c): begin, where an epoch ended, metadata and wire forms. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <string.h>

#include "epoch.h"

static void test_begin_and_end_of(void **state)
{
	(void)state;
	struct epoch_history h;
	uint64_t t;
	epoch_init(&h);
	assert_int_equal(h.epoch, 1);
	assert_false(epoch_end_of(&h, 1, &t)); /* the current epoch has not ended */
	epoch_begin(&h, 10);
	epoch_begin(&h, 25);
	assert_int_equal(h.epoch, 3);
	assert_true(epoch_end_of(&h, 1, &t));
	assert_int_equal(t, 10);
	assert_true(epoch_end_of(&h, 2, &t));
	assert_int_equal(t, 25);
	assert_false(epoch_end_of(&h, 3, &t));
	/* Only the last FREP_MAX_HISTORY starts are kept: older epochs are unknown. */
	for (unsigned i = 0; i < FREP_MAX_HISTORY; i++)
		epoch_begin(&h, 100 + i);
	assert_int_equal(h.epoch, 3 + FREP_MAX_HISTORY);
	assert_int_equal(h.n, FREP_MAX_HISTORY);
	assert_false(epoch_end_of(&h, 2, &t));
	assert_true(epoch_end_of(&h, 3, &t));
	assert_int_equal(t, 100);
}

static void test_meta_round_trip(void **state)
{
	(void)state;
	struct epoch_history h, back;
	struct meta md;
	epoch_init(&h);
	epoch_begin(&h, 7);
	epoch_begin(&h, 7); /* two promotions at one TXID: allowed, non-decreasing */
	meta_init(&md);
	assert_int_equal(epoch_save(&h, &md), 0);
	assert_int_equal(epoch_load(&back, &md), 0);
	assert_int_equal(back.epoch, 3);
	assert_int_equal(back.n, 2);
	assert_int_equal(back.start[0], 7);
	assert_int_equal(back.start[1], 7);
	/* Metadata from before epochs: epoch 1. */
	meta_init(&md);
	assert_int_equal(epoch_load(&back, &md), 0);
	assert_int_equal(back.epoch, 1);
	assert_int_equal(back.n, 0);
}

static void test_wire_checks(void **state)
{
	(void)state;
	struct epoch_history h;
	char err[128];
	uint64_t ok[2] = { 3, 9 }, down[2] = { 9, 3 };
	assert_int_equal(epoch_from_wire(&h, 3, ok, 2, err, sizeof(err)), 0);
	assert_int_equal(epoch_from_wire(&h, 0, NULL, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "epoch 0"));
	assert_int_equal(epoch_from_wire(&h, 2, ok, 2, err, sizeof(err)), -1); /* more than epoch - 1 */
	assert_int_equal(epoch_from_wire(&h, 3, down, 2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "decrease"));
	assert_int_equal(epoch_from_wire(&h, 20, ok, FREP_MAX_HISTORY + 1, err, sizeof(err)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_begin_and_end_of),
		cmocka_unit_test(test_meta_round_trip),
		cmocka_unit_test(test_wire_checks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
