/* What every fuzz harness shares: oracles, an in-memory file, a tmpfs directory. */
#ifndef FREP_FUZZ_HARNESS_H
#define FREP_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* An oracle failed: a bug even though nothing crashed, reported as a crash. */
#define require(cond)                                                                    \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "%s:%d: %s does not hold\n", __FILE__, __LINE__, #cond); \
			abort();                                                         \
		}                                                                        \
	} while (0)

/*
 * One memfd per process, reused by every run: memfile_set makes it size
 * zero bytes and returns a path that opens it ("/proc/self/fd/N", static
 * storage); memfile_write puts data at off. Nothing touches a disk, and
 * nothing is left behind when the harness dies.
 */
const char *memfile_set(size_t size);
void memfile_write(const void *data, size_t len, uint64_t off);
/* Reads len bytes at off back (what the code under test wrote). */
void memfile_read(void *data, size_t len, uint64_t off);

/* A private directory on tmpfs (/dev/shm), made once, removed at exit. */
const char *fuzz_tmpdir(void);
/* Removes everything inside it, so each run starts from the same state. */
void fuzz_tmpdir_clear(void);

#endif
