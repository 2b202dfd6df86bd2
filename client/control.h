/* Local control socket of frep-client: pause, resume, resync-full, status (one line each). */
#ifndef FREP_CONTROL_H
#define FREP_CONTROL_H

#include "master.h"

struct control;

/*
 * Listens on "unix:PATH" (a stale socket is replaced; mode 0600: whoever can
 * reach it can pause replication) and answers one line per command line.
 * Returns NULL with err filled. m is borrowed and must outlive the control.
 */
struct control *control_start(const char *spec, struct master *m, char *err, size_t err_len);
/* Stops the listener thread, closes clients, frees. NULL is a no-op. */
void control_stop(struct control *c);

#endif
