/* nbdkit's lifecycle as frep's plugins share it (plugin-quit.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#ifdef FREP_SANITIZE
#include <sanitizer/lsan_interface.h>
#endif

#include "plugin-quit.h"

/* The signals on which nbdkit shuts down (nbdkit(1), SIGNALS). */
static const int quit_signals[] = { SIGINT, SIGQUIT, SIGTERM };
#define N_QUIT_SIGNALS (sizeof(quit_signals) / sizeof(quit_signals[0]))

enum plugin_quit_limits {
	MAX_LISTENERS = 16,	  /* nbdkit binds one socket per address of -i HOST */
	SHUTDOWN_RESCAN_MS = 100, /* between passes that disconnect clients at shutdown */
};

/*
 * Written in .after_fork (one thread, before any connection) and .cleanup;
 * the stopper thread only reads listeners. quit_handler writes the signal
 * number into stop_pipe, the stopper reads it.
 */
static struct {
	struct sockaddr_storage listeners[MAX_LISTENERS];
	unsigned n_listeners;
	void (*on_quit)(int sig, bool first);
	int stop_pipe[2];
	pthread_t stopper;
	bool started;
	struct sigaction nbdkit_quit[N_QUIT_SIGNALS];
} pq = { .stop_pipe = { -1, -1 } };

/* Calls fn(fd) for every socket this process has open. */
static void for_each_socket(void (*fn)(int fd))
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	struct stat st;

	if (!d)
		return;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] != '.' && fd != dirfd(d) && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
			fn(fd);
	}
	closedir(d);
}

static bool is_listening(int fd)
{
	int on = 0;
	socklen_t len = sizeof(on);
	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

static void (*noted_cb)(const struct sockaddr_storage *ss, socklen_t len);

static void note_listener(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (!is_listening(fd) || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    pq.n_listeners == MAX_LISTENERS)
		return;
	pq.listeners[pq.n_listeners++] = ss;
	if (noted_cb)
		noted_cb(&ss, sl);
}

void plugin_note_listeners(void (*noted)(const struct sockaddr_storage *ss, socklen_t len))
{
	noted_cb = noted;
	for_each_socket(note_listener);
}

/* An NBD client's connection: accepted on one of nbdkit's listeners (same path, or same port). */
static void disconnect_client(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (is_listening(fd) || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return;
	for (unsigned i = 0; i < pq.n_listeners; i++) {
		const struct sockaddr_storage *l = &pq.listeners[i];
		bool same = false;
		if (l->ss_family != ss.ss_family)
			continue;
		if (ss.ss_family == AF_UNIX)
			same = strcmp(((struct sockaddr_un *)l)->sun_path,
				      ((struct sockaddr_un *)&ss)->sun_path) == 0;
		else if (ss.ss_family == AF_INET)
			same = ((struct sockaddr_in *)l)->sin_port == ((struct sockaddr_in *)&ss)->sin_port;
		else if (ss.ss_family == AF_INET6)
			same = ((struct sockaddr_in6 *)l)->sin6_port ==
			       ((struct sockaddr_in6 *)&ss)->sin6_port;
		if (same) {
			shutdown(fd, SHUT_RDWR);
			return;
		}
	}
}

static void quit_handler(int sig, siginfo_t *info, void *uctx)
{
	int saved = errno;
	unsigned char b = (unsigned char)sig;
	ssize_t w = write(pq.stop_pipe[1], &b, 1);
	(void)w;
	errno = saved;
	for (unsigned i = 0; i < N_QUIT_SIGNALS; i++) {
		const struct sigaction *old = &pq.nbdkit_quit[i];
		if (quit_signals[i] != sig)
			continue;
		if (old->sa_flags & SA_SIGINFO)
			old->sa_sigaction(sig, info, uctx);
		else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN)
			old->sa_handler(sig);
	}
}

static void *stopper_main(void *arg)
{
	struct pollfd p = { .fd = pq.stop_pipe[0], .events = POLLIN };
	bool stopped = false;

	for (;;) {
		unsigned char sig = 0;
		int r = poll(&p, 1, stopped ? SHUTDOWN_RESCAN_MS : -1);
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0) {
			if (read(pq.stop_pipe[0], &sig, 1) != 1 || sig == 0)
				break; /* .cleanup: nbdkit is done with the clients */
			pq.on_quit(sig, !stopped);
			stopped = true;
		}
		if (stopped)
			for_each_socket(disconnect_client);
	}
	return NULL;
}

void plugin_block_quit_signals(sigset_t *old)
{
	sigset_t quit;
	sigemptyset(&quit);
	for (unsigned i = 0; i < N_QUIT_SIGNALS; i++)
		sigaddset(&quit, quit_signals[i]);
	pthread_sigmask(SIG_BLOCK, &quit, old);
}

int plugin_quit_start(void (*on_quit)(int sig, bool first), char *err, size_t err_len)
{
	sigset_t old;
	pq.on_quit = on_quit;
	if (pipe2(pq.stop_pipe, O_CLOEXEC) < 0) {
		snprintf(err, err_len, "pipe: %s", strerror(errno));
		return -1;
	}
	plugin_block_quit_signals(&old);
	int rc = pthread_create(&pq.stopper, NULL, stopper_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		snprintf(err, err_len, "cannot start the shutdown thread");
		return -1;
	}
	pq.started = true;
	for (unsigned i = 0; i < N_QUIT_SIGNALS; i++) {
		struct sigaction sa = { .sa_sigaction = quit_handler, .sa_flags = SA_SIGINFO | SA_RESTART };
		sigemptyset(&sa.sa_mask);
		if (sigaction(quit_signals[i], &sa, &pq.nbdkit_quit[i]) < 0) {
			snprintf(err, err_len, "sigaction: %s", strerror(errno));
			return -1;
		}
	}
	return 0;
}

void plugin_quit_end(void)
{
	if (pq.started) {
		/* Back to nbdkit's handlers before this code can be unloaded. */
		for (unsigned i = 0; i < N_QUIT_SIGNALS; i++)
			sigaction(quit_signals[i], &pq.nbdkit_quit[i], NULL);
		unsigned char zero = 0;
		ssize_t w = write(pq.stop_pipe[1], &zero, 1);
		(void)w;
		pthread_join(pq.stopper, NULL);
		pq.started = false;
	}
	for (int i = 0; i < 2; i++)
		if (pq.stop_pipe[i] >= 0) {
			close(pq.stop_pipe[i]);
			pq.stop_pipe[i] = -1;
		}
}

void plugin_exit(int code)
{
#ifdef FREP_SANITIZE
	__lsan_do_leak_check();
	_exit(code);
#else
	exit(code);
#endif
}

#ifdef FREP_SANITIZE
/* Registered after nbdkit's own handlers and its libraries' destructors: runs before them. */
static void exit_guard(void)
{
	plugin_exit(1);
}
#endif

void plugin_guard_exit(void)
{
#ifdef FREP_SANITIZE
	atexit(exit_guard);
#endif
}

void plugin_cleanup_done(void)
{
#ifdef FREP_SANITIZE
	plugin_exit(0);
#endif
}
