/* Fuzz harness: whole frame sequences from a master through the mirror's session (server/session.c), in process. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "log.h"
#include "mem-tls.h"
#include "session.h"
#include "tls.h"

/*
 * The input is everything a master sends on one connection; mem-tls.c
 * replaces TLS, so mirror_session_run dispatches it exactly as it would from
 * a socket: the state machine, every validation, the store, journal and
 * extents, in a data dir on tmpfs emptied before each run. A run ends when
 * the session does (Error, Goodbye or the end of the input).
 *
 * The master picks the extent sizes and the journal's, which the mirror
 * rounds up to its minimum (64 MiB, server/store.c). Linked with
 * --wrap=fallocate,posix_fallocate, a reservation (mode 0) is counted
 * against SPACE_BUDGET (ENOSPC beyond, as a full disk) and only sizes the
 * file, sparse: tmpfs is memory, and allocating the journal alone would cost
 * more than the rest of a run. A run then takes only the memory it writes,
 * within files the budget allowed.
 */
enum { SPACE_BUDGET = 128 << 20 };

static struct mirror_server srv = { .trace_fd = -1, .heartbeat_timeout_ms = 30000 };
static uint64_t space_used;

int __real_fallocate(int fd, int mode, off_t off, off_t len);

static int take_space(off_t off, off_t len)
{
	if (off < 0 || len < 0 || (uint64_t)len > SPACE_BUDGET - space_used) {
		errno = len < 0 || off < 0 ? EINVAL : ENOSPC;
		return -1;
	}
	space_used += (uint64_t)len;
	return 0;
}

/* What a reservation does to the file's size; its blocks stay holes. */
static int reserve(int fd, off_t off, off_t len)
{
	struct stat st;
	if (take_space(off, len) < 0 || fstat(fd, &st) < 0)
		return -1;
	if (off + len > st.st_size && ftruncate(fd, off + len) < 0)
		return -1;
	return 0;
}

int __wrap_fallocate(int fd, int mode, off_t off, off_t len)
{
	/* Punching and zeroing (modes with flags) release space; only mode 0 takes it. */
	if (mode == 0)
		return reserve(fd, off, len);
	return __real_fallocate(fd, mode, off, len);
}

int __wrap_posix_fallocate(int fd, off_t off, off_t len)
{
	return reserve(fd, off, len) < 0 ? errno : 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init("fuzz-mirror-session", LOG_ERROR);
	srv.data_dir = fuzz_tmpdir();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_tmpdir_clear();
	space_used = 0;
	/* Closed (tls_close) by the session when it ends. */
	mirror_session_run(&srv, mem_tls_open(data, size, "fuzz-master", 0));
	return 0;
}
