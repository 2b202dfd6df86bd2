/* Fuzz harness: the metadata file parser (common/meta.c) on arbitrary file contents. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "log.h"
#include "meta.h"
#include "util.h"

/*
 * Input: a ctl byte, then the file. With ctl bit 0 set the harness appends
 * the crc32c line the fuzzer cannot compute, so the parser behind the
 * checksum is reached; clear, the file is tested as it is.
 */
enum { CTL_ADD_CRC = 1u << 0 };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("fuzz-meta", LOG_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct meta m, again;
	char path[320];
	uint64_t x;

	if (size < 1)
		return -1;
	size_t len = size - 1;
	char crc[24];
	int crc_len = data[0] & CTL_ADD_CRC ?
			      snprintf(crc, sizeof(crc), "crc32c=%08x\n", frep_crc32c(data + 1, len)) : 0;
	const char *mem = memfile_set(len + (size_t)crc_len);
	memfile_write(data + 1, len, 0);
	memfile_write(crc, (size_t)crc_len, len);
	if (meta_load(mem, &m) < 0) {
		require(errno == EBADMSG);
		return 0;
	}
	require(m.n <= META_MAX_KEYS);
	for (unsigned i = 0; i < m.n; i++) {
		require(strlen(m.kv[i].key) < META_KEY_MAX && strlen(m.kv[i].val) < META_VAL_MAX);
		/* A key given twice keeps its last value: meta_get finds the one slot. */
		require(meta_get(&m, m.kv[i].key) == m.kv[i].val);
		meta_get_u64(&m, m.kv[i].key, &x);
	}
	/* What loaded saves and loads back the same. */
	snprintf(path, sizeof(path), "%s/meta", fuzz_tmpdir());
	require(meta_save(path, &m) == 0);
	require(meta_load(path, &again) == 0);
	require(again.n == m.n);
	for (unsigned i = 0; i < m.n; i++)
		require(strcmp(again.kv[i].key, m.kv[i].key) == 0 &&
			strcmp(again.kv[i].val, m.kv[i].val) == 0);
	return 0;
}
