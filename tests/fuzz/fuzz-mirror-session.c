/* Fuzz harness: whole frame sequences from a master through the mirror's session (server/session.c), in process. */
#include <errno.h>
#include <fcntl.h>

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
 * The master picks the journal and extent sizes. Linked with
 * --wrap=fallocate,posix_fallocate, the allocations of one run are capped
 * at SPACE_BUDGET bytes (ENOSPC beyond, as a full disk), so a run never
 * fills tmpfs, that is memory.
 */
enum { SPACE_BUDGET = 64 << 20 };

static struct mirror_server srv = { .trace_fd = -1, .heartbeat_timeout_ms = 30000 };
static uint64_t space_used;

int __real_fallocate(int fd, int mode, off_t off, off_t len);
int __real_posix_fallocate(int fd, off_t off, off_t len);

static int take_space(off_t len)
{
	if (len < 0 || (uint64_t)len > SPACE_BUDGET - space_used)
		return -1;
	space_used += (uint64_t)len;
	return 0;
}

int __wrap_fallocate(int fd, int mode, off_t off, off_t len)
{
	/* Punching and zeroing (modes with flags) release space; only mode 0 takes it. */
	if (mode == 0 && take_space(len) < 0) {
		errno = ENOSPC;
		return -1;
	}
	return __real_fallocate(fd, mode, off, len);
}

int __wrap_posix_fallocate(int fd, off_t off, off_t len)
{
	if (take_space(len) < 0)
		return ENOSPC;
	return __real_posix_fallocate(fd, off, len);
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
