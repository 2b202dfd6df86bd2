/*
 * Trailer compression of protocol version 2 (spec COMP-1..6): one frame's
 * data at a time, zstd or lz4, each with a context reused across frames.
 */
#ifndef FREP_COMPRESS_H
#define FREP_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

/* Compression enum values of frep.proto. */
enum frep_compression {
	FREP_COMPRESS_NONE = 0,
	FREP_COMPRESS_ZSTD = 1,
	FREP_COMPRESS_LZ4 = 2,
	FREP_COMPRESS__MAX = FREP_COMPRESS_LZ4,
};

/* "none", "zstd", "lz4"; "unknown" otherwise. */
const char *compress_name(unsigned alg);
/*
 * NEG-3: the mirror's choice from a master's offer (Hello.compression, its
 * preferred first): the first algorithm known here, else none.
 */
unsigned compress_choose(const uint32_t *offer, size_t n);
/* The algorithm named, or -1. */
int compress_parse(const char *name);

/* One direction's context: owned by one thread, reused for every frame. */
struct compressor;

struct compressor *compressor_new(unsigned alg);
void compressor_free(struct compressor *z);

/*
 * The largest output compress_frame may produce for n bytes: a buffer of
 * this size always suffices.
 */
size_t compress_bound(unsigned alg, size_t n);

/*
 * Compresses n bytes of src into dst (cap bytes). Returns the compressed size
 * if it is smaller than n, else 0: the frame then goes raw (COMP-2).
 */
size_t compress_frame(struct compressor *z, const void *src, size_t n, void *dst, size_t cap);

/*
 * Decompresses n bytes of src into exactly want bytes of dst. Returns 0, or
 * -1 with why set if the input is corrupt or holds more or less than want
 * bytes (COMP-4): dst is never written past want bytes, whatever the input
 * says, so no input can make it allocate or write more.
 */
int decompress_frame(struct compressor *z, const void *src, size_t n, void *dst, size_t want,
		     char *why, size_t why_len);

#endif
