/*
 * What frep's nbdkit plugins (client/plugin.c, server/snapshot-plugin.c)
 * share about nbdkit's lifecycle: finding its listening sockets, ending its
 * clients' connections on a quit signal, and leaving in sanitizer builds.
 * One plugin per process: the state is this module's.
 */
#ifndef FREP_PLUGIN_QUIT_H
#define FREP_PLUGIN_QUIT_H

#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <sys/socket.h>

/*
 * In .after_fork (nbdkit listens by then): remembers every listening socket
 * of the process and calls noted (if not NULL) for each, to log it.
 */
void plugin_note_listeners(void (*noted)(const struct sockaddr_storage *ss, socklen_t len));

/*
 * nbdkit waits for every request in flight, and for every client to
 * disconnect, before it calls .cleanup, and nbdkit 1.32 never closes an idle
 * client (the kernel's nbd-client stays connected for as long as the device
 * is attached). So SIGINT, SIGQUIT and SIGTERM are relayed (nbdkit's own
 * handlers still run) to a thread that calls on_quit (first: the first
 * signal) and then shuts down the connections accepted on the listeners,
 * again every rescan in case nbdkit was accepting one, until
 * plugin_quit_end. Call from .after_fork. 0, or -1 with err.
 */
int plugin_quit_start(void (*on_quit)(int sig, bool first), char *err, size_t err_len);
/*
 * Blocks the quit signals in the calling thread (old: the mask before), so
 * that threads it starts never take one (their system calls are not all
 * ready for EINTR): nbdkit's own threads do, and the handler relays it.
 */
void plugin_block_quit_signals(sigset_t *old);
/* From .cleanup: nbdkit's handlers back, the thread joined. */
void plugin_quit_end(void);

/*
 * Exits from plugin code: in the configuration phase (nbdkit allows it until
 * .get_ready returns), or once .cleanup is done in sanitizer builds. There
 * nbdkit is not instrumented, and with the sanitizer runtimes preloaded into
 * it glibc's locale lock holds a negative reader count from startup on
 * (nbdkit 1.32 alone shows it), so exit's destructors (libp11-kit's
 * freelocale) would wait forever: leaks are checked now, while nbdkit's own
 * memory is still in use, and the process leaves without the destructors.
 */
void plugin_exit(int code) __attribute__((noreturn));

/*
 * From .load: in sanitizer builds, an exit of nbdkit's own before .cleanup
 * (a port it cannot bind: exit(1)) leaves as plugin_exit(1) does, instead of
 * hanging in the destructors; elsewhere nothing.
 */
void plugin_guard_exit(void);

/* Sanitizer builds leave at the end of .cleanup (plugin_exit(0)); others return. */
void plugin_cleanup_done(void);

#endif
