/*
 * Prometheus metrics (--metrics HOST:PORT): GET /metrics answers in the text
 * exposition format (0.0.4), served by libmicrohttpd on a thread of its own.
 * The figures come from the daemon's admin_ops.status, the one status model
 * (common/status.h) behind the admin API's Status as well, so both report
 * the same numbers. README "Metrics" lists the series.
 */
#ifndef FREP_METRICS_H
#define FREP_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "admin.h"

/* listen has the form HOST:PORT (for the option parsers). */
bool metrics_listen_valid(const char *listen);

/*
 * Listens on listen (HOST:PORT; port 0 = any, the bound address is logged)
 * and serves ops->status(ctx, NULL, ...) on every scrape. ops and ctx are
 * borrowed until metrics_stop.
 * Call with the quit signals blocked (the thread inherits the mask).
 * 0, or -1 with err.
 */
int metrics_start(const char *listen, const struct admin_ops *ops, void *ctx, char *err,
		  size_t err_len);

/* Stops the thread and closes the listener: no scrape runs after it returns. */
void metrics_stop(void);

/*
 * The exposition text for vols (exposed for the unit test): malloc'd, freed
 * by the caller; NULL when out of memory.
 */
char *metrics_format(const struct vol_status *vols, size_t n, size_t *len);

#endif
