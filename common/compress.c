/* Trailer compression of protocol version 2: libzstd and liblz4, one frame at a time. */
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "compress.h"

/*
 * zstd level 1: on these cores it compresses at several hundred MB/s per
 * core, faster than one TLS lane encrypts, and still takes most of the gain
 * of the higher levels on block data (README, "Compression").
 */
enum { ZSTD_LEVEL = 1 };

struct compressor {
	unsigned alg;
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	void *lz4_state; /* LZ4_sizeofState() bytes, so no call puts 16 KiB on the stack */
};

static const char *const names[] = {
	[FREP_COMPRESS_NONE] = "none",
	[FREP_COMPRESS_ZSTD] = "zstd",
	[FREP_COMPRESS_LZ4] = "lz4",
};

const char *compress_name(unsigned alg)
{
	return alg <= FREP_COMPRESS__MAX ? names[alg] : "unknown";
}

unsigned compress_choose(const uint32_t *offer, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (offer[i] >= 1 && offer[i] <= FREP_COMPRESS__MAX)
			return offer[i];
	return FREP_COMPRESS_NONE;
}

int compress_parse(const char *name)
{
	for (unsigned i = 0; i <= FREP_COMPRESS__MAX; i++)
		if (strcmp(name, names[i]) == 0)
			return (int)i;
	return -1;
}

struct compressor *compressor_new(unsigned alg)
{
	struct compressor *z = calloc(1, sizeof(*z));
	if (!z)
		return NULL;
	z->alg = alg;
	return z;
}

void compressor_free(struct compressor *z)
{
	if (!z)
		return;
	ZSTD_freeCCtx(z->cctx);
	ZSTD_freeDCtx(z->dctx);
	free(z->lz4_state);
	free(z);
}

size_t compress_bound(unsigned alg, size_t n)
{
	if (alg == FREP_COMPRESS_ZSTD)
		return ZSTD_compressBound(n);
	if (alg == FREP_COMPRESS_LZ4)
		return n > LZ4_MAX_INPUT_SIZE ? 0 : (size_t)LZ4_compressBound((int)n);
	return n;
}

size_t compress_frame(struct compressor *z, const void *src, size_t n, void *dst, size_t cap)
{
	size_t out = 0;
	if (z->alg == FREP_COMPRESS_ZSTD) {
		if (!z->cctx && !(z->cctx = ZSTD_createCCtx()))
			return 0;
		out = ZSTD_compressCCtx(z->cctx, dst, cap, src, n, ZSTD_LEVEL);
		if (ZSTD_isError(out))
			return 0;
	} else if (z->alg == FREP_COMPRESS_LZ4) {
		if (n > LZ4_MAX_INPUT_SIZE || cap > INT32_MAX)
			return 0;
		if (!z->lz4_state && !(z->lz4_state = malloc((size_t)LZ4_sizeofState())))
			return 0;
		int r = LZ4_compress_fast_extState(z->lz4_state, src, dst, (int)n, (int)cap, 1);
		out = r > 0 ? (size_t)r : 0;
	}
	return out < n ? out : 0;
}

int decompress_frame(struct compressor *z, const void *src, size_t n, void *dst, size_t want,
		     char *why, size_t why_len)
{
	if (z->alg == FREP_COMPRESS_ZSTD) {
		if (!z->dctx && !(z->dctx = ZSTD_createDCtx())) {
			snprintf(why, why_len, "out of memory for a zstd context");
			return -1;
		}
		/* One shot into dst: zstd keeps no window of its own, however large the frame says. */
		size_t r = ZSTD_decompressDCtx(z->dctx, dst, want, src, n);
		if (ZSTD_isError(r)) {
			snprintf(why, why_len, "zstd: %s (the data must decompress to exactly %zu bytes)",
				 ZSTD_getErrorName(r), want);
			return -1;
		}
		if (r != want) {
			snprintf(why, why_len, "zstd data decompresses to %zu bytes, not the %zu declared",
				 r, want);
			return -1;
		}
		return 0;
	}
	if (z->alg == FREP_COMPRESS_LZ4) {
		if (n > INT32_MAX || want > INT32_MAX) {
			snprintf(why, why_len, "lz4 data too large");
			return -1;
		}
		int r = LZ4_decompress_safe(src, dst, (int)n, (int)want);
		if (r < 0) {
			snprintf(why, why_len, "lz4 data is corrupt or decompresses past the %zu bytes "
				 "declared", want);
			return -1;
		}
		if ((size_t)r != want) {
			snprintf(why, why_len, "lz4 data decompresses to %d bytes, not the %zu declared",
				 r, want);
			return -1;
		}
		return 0;
	}
	snprintf(why, why_len, "no compression negotiated");
	return -1;
}
