/* Trailer compression (common/compress.c): round trips, the raw fallback, and exact-length decompression. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "compress.h"

static const unsigned algs[] = { FREP_COMPRESS_ZSTD, FREP_COMPRESS_LZ4 };

static void fill_text(uint8_t *p, size_t n)
{
	static const char words[] = "replicate the volume to the mirror over TLS; ";
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)words[i % (sizeof(words) - 1)];
}

static void fill_random(uint8_t *p, size_t n)
{
	uint64_t v = 0x9E3779B97F4A7C15ull;
	for (size_t i = 0; i < n; i++) {
		v ^= v << 13;
		v ^= v >> 7;
		v ^= v << 17;
		p[i] = (uint8_t)v;
	}
}

static void test_names(void **state)
{
	assert_string_equal(compress_name(FREP_COMPRESS_NONE), "none");
	assert_string_equal(compress_name(FREP_COMPRESS_ZSTD), "zstd");
	assert_string_equal(compress_name(FREP_COMPRESS_LZ4), "lz4");
	assert_string_equal(compress_name(77), "unknown");
	assert_int_equal(compress_parse("zstd"), FREP_COMPRESS_ZSTD);
	assert_int_equal(compress_parse("lz4"), FREP_COMPRESS_LZ4);
	assert_int_equal(compress_parse("none"), FREP_COMPRESS_NONE);
	assert_int_equal(compress_parse("gzip"), -1);
}

/* spec: COMP-1, COMP-5. What goes in comes out, byte for byte, frame after frame on one context. */
static void test_round_trip(void **state)
{
	enum { N = 1 << 20 };
	uint8_t *src = malloc(N), *out = malloc(N);
	assert_non_null(src);
	assert_non_null(out);
	fill_text(src, N);
	for (size_t a = 0; a < 2; a++) {
		struct compressor *c = compressor_new(algs[a]), *d = compressor_new(algs[a]);
		size_t cap = compress_bound(algs[a], N);
		uint8_t *z = malloc(cap);
		char why[160];
		assert_non_null(z);
		for (size_t len = 4096; len <= N; len *= 4) {
			size_t zn = compress_frame(c, src, len, z, cap);
			assert_true(zn > 0 && zn < len / 4);
			memset(out, 0, len);
			assert_int_equal(decompress_frame(d, z, zn, out, len, why, sizeof(why)), 0);
			assert_memory_equal(out, src, len);
		}
		free(z);
		compressor_free(c);
		compressor_free(d);
	}
	free(src);
	free(out);
}

/* spec: COMP-2. Data that does not shrink is not compressed: the frame goes raw. */
static void test_incompressible_goes_raw(void **state)
{
	enum { N = 65536 };
	uint8_t *src = malloc(N);
	assert_non_null(src);
	fill_random(src, N);
	for (size_t a = 0; a < 2; a++) {
		struct compressor *c = compressor_new(algs[a]);
		size_t cap = compress_bound(algs[a], N);
		uint8_t *z = malloc(cap);
		assert_non_null(z);
		assert_int_equal(compress_frame(c, src, N, z, cap), 0);
		free(z);
		compressor_free(c);
	}
	free(src);
}

/*
 * spec: COMP-4. Decompression yields exactly the declared length or fails
 * with a reason, and never writes past it: the guard bytes after the buffer
 * stay as they were (and ASan would see a write past a heap buffer).
 */
static void test_exact_length(void **state)
{
	enum { N = 65536, GUARD = 64 };
	uint8_t *src = malloc(N), *out = malloc(N * 2 + GUARD);
	char why[160];
	assert_non_null(src);
	assert_non_null(out);
	fill_text(src, N);
	for (size_t a = 0; a < 2; a++) {
		struct compressor *c = compressor_new(algs[a]);
		size_t cap = compress_bound(algs[a], N);
		uint8_t *z = malloc(cap);
		assert_non_null(z);
		size_t zn = compress_frame(c, src, N, z, cap);
		assert_true(zn > 0);
		/* Declared shorter: refused, nothing written past the declared length. */
		memset(out, 0x5a, N * 2 + GUARD);
		why[0] = '\0';
		assert_int_equal(decompress_frame(c, z, zn, out, N / 2, why, sizeof(why)), -1);
		assert_true(why[0] != '\0');
		for (size_t i = N / 2; i < N / 2 + GUARD; i++)
			assert_int_equal(out[i], 0x5a);
		/* Declared longer: refused. */
		why[0] = '\0';
		assert_int_equal(decompress_frame(c, z, zn, out, N * 2, why, sizeof(why)), -1);
		assert_non_null(strstr(why, "decompress"));
		/* Cut short, or garbage: refused. */
		assert_int_equal(decompress_frame(c, z, zn / 2, out, N, why, sizeof(why)), -1);
		fill_random(z, zn);
		assert_int_equal(decompress_frame(c, z, zn, out, N, why, sizeof(why)), -1);
		free(z);
		compressor_free(c);
	}
	free(src);
	free(out);
}

/* spec: COMP-4. A zstd frame of 64 MiB of zeros, a few KiB on the wire, decompresses into no more than declared. */
static void test_bomb(void **state)
{
	enum { BOMB = 64 << 20, DECLARED = 4 << 20 };
	uint8_t *zeros = calloc(1, BOMB), *out = malloc(DECLARED);
	char why[160];
	assert_non_null(zeros);
	assert_non_null(out);
	struct compressor *c = compressor_new(FREP_COMPRESS_ZSTD);
	size_t cap = compress_bound(FREP_COMPRESS_ZSTD, BOMB);
	uint8_t *z = malloc(cap);
	assert_non_null(z);
	size_t zn = compress_frame(c, zeros, BOMB, z, cap);
	assert_true(zn > 0 && zn < 64 << 10);
	assert_int_equal(decompress_frame(c, z, zn, out, DECLARED, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "zstd"));
	free(z);
	free(zeros);
	free(out);
	compressor_free(c);
}

/* A compressor of no algorithm decompresses nothing. */
static void test_none(void **state)
{
	struct compressor *c = compressor_new(FREP_COMPRESS_NONE);
	uint8_t in[16] = { 0 }, out[16];
	char why[160];
	assert_int_equal(compress_frame(c, in, sizeof(in), out, sizeof(out)), 0);
	assert_int_equal(decompress_frame(c, in, sizeof(in), out, sizeof(out), why, sizeof(why)), -1);
	assert_non_null(strstr(why, "no compression"));
	compressor_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_incompressible_goes_raw),
		cmocka_unit_test(test_exact_length),
		cmocka_unit_test(test_bomb),
		cmocka_unit_test(test_none),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
