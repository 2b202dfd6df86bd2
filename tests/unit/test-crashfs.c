/* Unit tests of the named crash points (FREP_CRASH_AT), their hand-off to the crashfs shim, and its sync delay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../common/crashpoint.c"
#include "util.h"

enum { CHILD_TIMEOUT_MS = 10000, ERR_MAX = 4096 };

struct outcome {
	int status;	   /* from waitpid */
	unsigned returned; /* crash point calls that came back */
	char err[ERR_MAX]; /* the child's stderr */
};

/* Reads fd to EOF into buf (NUL-terminated), bounded by deadline_ms of now_ms(). */
static size_t drain(int fd, char *buf, size_t len, uint64_t deadline_ms)
{
	size_t n = 0;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = now_ms();
		if (now >= deadline_ms)
			fail_msg("child did not finish within %d ms", CHILD_TIMEOUT_MS);
		if (poll(&p, 1, (int)(deadline_ms - now)) <= 0)
			continue;
		char tmp[512];
		ssize_t r = read(fd, tmp, sizeof(tmp));
		if (r <= 0)
			break;
		size_t take = (size_t)r < len - 1 - n ? (size_t)r : len - 1 - n;
		memcpy(buf + n, tmp, take);
		n += take;
	}
	buf[n] = '\0';
	return n;
}

/*
 * Forks a child that sets FREP_CRASH_AT=spec (NULL: unset), optionally
 * dlopens the crashfs shim, then calls frep_crash_point(sites[i % nsites])
 * calls times, reporting each call that returns with one byte on a pipe.
 * The parent never calls frep_crash_point, so each child reads the
 * environment afresh.
 */
static void run_child(const char *spec, const char *const *sites, unsigned nsites, unsigned calls,
		      const char *shim, struct outcome *o)
{
	int hits[2], err[2];
	char buf[256];

	assert_int_equal(pipe(hits), 0);
	assert_int_equal(pipe(err), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(hits[0]);
		close(err[0]);
		dup2(err[1], 2);
		if (spec)
			setenv("FREP_CRASH_AT", spec, 1);
		else
			unsetenv("FREP_CRASH_AT");
		if (shim && !dlopen(shim, RTLD_NOW | RTLD_GLOBAL)) {
			fprintf(stderr, "dlopen %s: %s\n", shim, dlerror());
			_exit(3);
		}
		for (unsigned i = 0; i < calls; i++) {
			frep_crash_point(sites[i % nsites]);
			if (write(hits[1], "h", 1) != 1)
				_exit(4);
		}
		_exit(0);
	}
	close(hits[1]);
	close(err[1]);
	uint64_t deadline = now_ms() + CHILD_TIMEOUT_MS;
	o->returned = 0;
	for (ssize_t r; (r = read(hits[0], buf, sizeof(buf))) > 0;)
		o->returned += (unsigned)r;
	drain(err[0], o->err, sizeof(o->err), deadline);
	close(hits[0]);
	close(err[0]);
	assert_int_equal(waitpid(pid, &o->status, 0), pid);
}

static void assert_exited(const struct outcome *o, int code, unsigned returned)
{
	if (!WIFEXITED(o->status) || WEXITSTATUS(o->status) != code)
		fail_msg("child status %#x, expected exit %d; stderr: %s", o->status, code, o->err);
	assert_int_equal(o->returned, returned);
}

static const char *const X[] = { "x" };

#ifdef FREP_TEST_HOOKS

static void assert_killed_after(const struct outcome *o, unsigned returned)
{
	if (!WIFSIGNALED(o->status) || WTERMSIG(o->status) != SIGKILL)
		fail_msg("child status %#x, expected SIGKILL; stderr: %s", o->status, o->err);
	assert_int_equal(o->returned, returned);
}

static void test_nth_hit_kills(void **state)
{
	struct outcome o;

	run_child("x:3", X, 1, 5, NULL, &o);
	assert_killed_after(&o, 2);
	assert_non_null(strstr(o.err, "crash point x hit 3: crashing"));

	run_child("x:1", X, 1, 5, NULL, &o);
	assert_killed_after(&o, 0);
}

static void test_other_site_and_unset_never_crash(void **state)
{
	static const char *const xy[] = { "x", "y" };
	struct outcome o;

	run_child("y:2", X, 1, 5, NULL, &o);
	assert_exited(&o, 0, 5);
	run_child(NULL, X, 1, 5, NULL, &o);
	assert_exited(&o, 0, 5);
	run_child("", X, 1, 5, NULL, &o);
	assert_exited(&o, 0, 5);
	run_child("x:6", X, 1, 5, NULL, &o); /* past the last hit */
	assert_exited(&o, 0, 5);
	/* "y" counts only its own hits: the 2nd y is call 4 */
	run_child("y:2", xy, 2, 6, NULL, &o);
	assert_killed_after(&o, 3);
	/* a prefix of a site is another site */
	run_child("xx:1", X, 1, 3, NULL, &o);
	assert_exited(&o, 0, 3);
}

static void test_star_counts_every_site(void **state)
{
	static const char *const xyz[] = { "x", "y", "z" };
	struct outcome o;

	run_child("*:4", xyz, 3, 9, NULL, &o);
	assert_killed_after(&o, 3);
	assert_non_null(strstr(o.err, "crash point x hit 4: crashing"));
}

static void test_random_is_seeded(void **state)
{
	struct outcome o;
	char spec[64];

	for (uint64_t seed = 0; seed < 6; seed++) {
		uint64_t k = 1 + mix64(seed) % 4;
		snprintf(spec, sizeof(spec), "x:random:%" PRIu64 ":4", seed);
		run_child(spec, X, 1, 6, NULL, &o);
		assert_killed_after(&o, (unsigned)(k - 1));
		/* the same seed picks the same hit */
		run_child(spec, X, 1, 6, NULL, &o);
		assert_killed_after(&o, (unsigned)(k - 1));
	}
	/* MAX 1: always the first hit */
	run_child("x:random:12345:1", X, 1, 3, NULL, &o);
	assert_killed_after(&o, 0);
}

static void test_malformed_spec_exits_2(void **state)
{
	static const char *const bad[] = {
		"x", "x:", ":3", "x:0", "x:-1", "x:3a", "x:3:", "x:random", "x:random:1",
		"x:random:1:0", "x:random:a:4", "x:random:1:4:", "x:99999999999999999999999",
		"a-site-name-that-is-far-too-long-to-be-any-real-site-at-all-yes-really:1",
	};
	struct outcome o;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		run_child(bad[i], X, 1, 3, NULL, &o);
		if (!WIFEXITED(o.status) || WEXITSTATUS(o.status) != 2)
			fail_msg("FREP_CRASH_AT=%s: status %#x, expected exit 2", bad[i], o.status);
		assert_int_equal(o.returned, 0);
		assert_non_null(strstr(o.err, "expected SITE:N or SITE:random:SEED:MAX"));
	}
}

/* With the shim loaded, the crash point goes through crashfs_crash (power loss). */
static void test_crash_point_calls_the_shim(void **state)
{
	const char *shim = getenv("FREP_CRASHFS");
	struct outcome o;

	if (!shim || !*shim)
		skip();
	run_child("x:2", X, 1, 4, shim, &o);
	assert_killed_after(&o, 1);
	assert_non_null(strstr(o.err, "crash point x hit 2: crashing"));
	assert_non_null(strstr(o.err, "crashfs: power loss"));
}

#endif

enum { DELAY_MS = 300 };

/* ms one sync_fn(path) takes; the file is created and written first. */
static uint64_t timed_sync(int (*sync_fn)(int), const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, "x", 1) != 1)
		_exit(5);
	uint64_t t0 = now_ms();
	if (sync_fn(fd) < 0)
		_exit(6);
	uint64_t ms = now_ms() - t0;
	close(fd);
	unlink(path);
	return ms;
}

/*
 * CRASHFS_SYNC_DELAY_MS with CRASHFS_SYNC_DELAY_PATH and no CRASHFS_ROOT: a
 * sync of a matching file takes at least the delay, in a forked child too,
 * and is logged to CRASHFS_SYNC_DELAY_LOG; a sync of another file is not (bounded by the delay itself: a real
 * fdatasync of one byte takes far less).
 */
static void test_sync_delay_matches_path(void **state)
{
	const char *shim = getenv("FREP_CRASHFS");
	char dir[] = "/tmp/frep-test-crashfs-XXXXXX", slow[64], fast[64], log[64], err[ERR_MAX];
	int pipefd[2], status;

	if (!shim || !*shim)
		skip();
	assert_non_null(mkdtemp(dir));
	snprintf(slow, sizeof(slow), "%s/vol.journal", dir);
	snprintf(fast, sizeof(fast), "%s/vol.journal.meta", dir);
	snprintf(log, sizeof(log), "%s/delays", dir);
	assert_int_equal(pipe(pipefd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pipefd[0]);
		dup2(pipefd[1], 2);
		unsetenv("CRASHFS_ROOT");
		setenv("CRASHFS_SYNC_DELAY_MS", "300", 1);
		setenv("CRASHFS_SYNC_DELAY_PATH", "*/vol.journal", 1);
		setenv("CRASHFS_SYNC_DELAY_LOG", log, 1);
		void *h = dlopen(shim, RTLD_NOW | RTLD_GLOBAL);
		/* the shim's own wrappers: the test binary is bound to libc's */
		int (*shim_fdatasync)(int) = h ? (int (*)(int))dlsym(h, "fdatasync") : NULL;
		int (*shim_fsync)(int) = h ? (int (*)(int))dlsym(h, "fsync") : NULL;
		if (!shim_fdatasync || !shim_fsync) {
			fprintf(stderr, "dlopen %s: %s\n", shim, dlerror());
			_exit(3);
		}
		uint64_t s = timed_sync(shim_fdatasync, slow), f = timed_sync(shim_fdatasync, fast);
		pid_t kid = fork();
		if (kid == 0)
			_exit(timed_sync(shim_fsync, slow) >= DELAY_MS ? 0 : 1);
		int ks = -1;
		waitpid(kid, &ks, 0);
		fprintf(stderr, "slow=%llu fast=%llu forked=%s\n", (unsigned long long)s,
			(unsigned long long)f, WIFEXITED(ks) && WEXITSTATUS(ks) == 0 ? "delayed" : "not-delayed");
		_exit(0);
	}
	close(pipefd[1]);
	drain(pipefd[0], err, sizeof(err), now_ms() + CHILD_TIMEOUT_MS);
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	/* one line per delayed sync (the child's and the grandchild's), none for the other file */
	char lines[256] = "", want[256];
	int lfd = open(log, O_RDONLY | O_CLOEXEC);
	if (lfd >= 0) {
		ssize_t r = read(lfd, lines, sizeof(lines) - 1);
		lines[r > 0 ? r : 0] = '\0';
		close(lfd);
		unlink(log);
	}
	assert_int_equal(rmdir(dir), 0);
	snprintf(want, sizeof(want), "delay %s\ndelay %s\n", slow, slow);
	assert_string_equal(lines, want);
	unsigned long long s, f;
	char forked[16];
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    sscanf(err, "slow=%llu fast=%llu forked=%15s", &s, &f, forked) != 3)
		fail_msg("child status %#x; stderr: %s", status, err);
	if (s < DELAY_MS || f >= DELAY_MS || strcmp(forked, "delayed") != 0)
		fail_msg("want slow >= %d ms, fast < %d ms, forked delayed; got %s", DELAY_MS, DELAY_MS, err);
}

#ifndef FREP_TEST_HOOKS /* the benchmark build: crash points compile to nothing */

static void test_hooks_off_never_crash(void **state)
{
	struct outcome o;

	run_child("x:1", X, 1, 3, NULL, &o);
	assert_exited(&o, 0, 3);
	run_child("x", X, 1, 3, NULL, &o); /* not even parsed */
	assert_exited(&o, 0, 3);
}

#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
#ifdef FREP_TEST_HOOKS
		cmocka_unit_test(test_nth_hit_kills),
		cmocka_unit_test(test_other_site_and_unset_never_crash),
		cmocka_unit_test(test_star_counts_every_site),
		cmocka_unit_test(test_random_is_seeded),
		cmocka_unit_test(test_malformed_spec_exits_2),
		cmocka_unit_test(test_crash_point_calls_the_shim),
#else
		cmocka_unit_test(test_hooks_off_never_crash),
#endif
		cmocka_unit_test(test_sync_delay_matches_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
