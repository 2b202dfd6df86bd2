/* What every fuzz harness shares: an in-memory file, a tmpfs directory. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"

/* Harness plumbing, not code under test: a failure here is the harness's own bug. */
static void die(const char *what)
{
	perror(what);
	abort();
}

static int memfd = -1;

const char *memfile_set(size_t size)
{
	static char path[64];

	if (memfd < 0) {
		memfd = memfd_create("frep-fuzz", MFD_CLOEXEC);
		if (memfd < 0)
			die("memfd_create");
		snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	}
	if (ftruncate(memfd, 0) < 0 || ftruncate(memfd, (off_t)size) < 0)
		die("ftruncate memfd");
	return path;
}

void memfile_write(const void *data, size_t len, uint64_t off)
{
	if (len && pwrite(memfd, data, len, (off_t)off) != (ssize_t)len)
		die("pwrite memfd");
}

void memfile_read(void *data, size_t len, uint64_t off)
{
	if (len && pread(memfd, data, len, (off_t)off) != (ssize_t)len)
		die("pread memfd");
}

static char tmpdir[64];

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (ftw->level > 0)
		remove(path);
	return 0;
}

void fuzz_tmpdir_clear(void)
{
	if (tmpdir[0])
		nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_tmpdir(void)
{
	fuzz_tmpdir_clear();
	rmdir(tmpdir);
}

const char *fuzz_tmpdir(void)
{
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "/dev/shm/frep-fuzz-XXXXXX");
		if (!mkdtemp(tmpdir))
			die("mkdtemp /dev/shm/frep-fuzz-XXXXXX");
		atexit(remove_tmpdir);
	}
	return tmpdir;
}
