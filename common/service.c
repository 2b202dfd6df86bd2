/* The daemons' sd_notify messages: see service.h. */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "events.h"
#include "log.h"
#include "service.h"

enum service_limits {
	SERVICE_VOLUMES = 256,	 /* volumes tracked: frep-server takes at most 256 masters */
	SERVICE_LISTED = 4,	 /* up to this many volumes are named; more are counted per state */
	SERVICE_STATUS_MAX = 1024,
};

/*
 * mu guards everything and is held across sd_notify, so that the manager gets
 * the STATUS= lines in the order the states changed. sd_notify writes one
 * datagram to the manager's socket, which PID 1 drains as it comes; a state
 * change, the only caller that may hold a volume's lock, is rare.
 */
static struct {
	pthread_mutex_t mu;
	char text[SERVICE_STATUS_MAX]; /* service_ready/service_status: shown while no volume is known */
	unsigned n;
	struct {
		char name[65];
		int state;
	} vols[SERVICE_VOLUMES];
	bool warned;
} svc = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Under svc.mu. */
static void send_locked(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void send_locked(const char *fmt, ...)
{
	char msg[SERVICE_STATUS_MAX + 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	int r = sd_notify(0, msg);
	if (r < 0 && !svc.warned) {
		svc.warned = true;
		log_warn(NULL, "sd_notify: cannot tell the service manager '%s': %s", msg, strerror(-r));
	}
}

/* Under svc.mu: the STATUS= text, the volumes' states once any is known. */
static void status_text(char *out, size_t len)
{
	size_t off = 0;

	if (svc.n == 0) {
		snprintf(out, len, "%s", svc.text);
		return;
	}
	if (svc.n == 1) {
		snprintf(out, len, "%s: %s", svc.vols[0].name, events_state_name(svc.vols[0].state));
		return;
	}
	off = (size_t)snprintf(out, len, "%u volumes:", svc.n);
	if (svc.n <= SERVICE_LISTED) {
		for (unsigned i = 0; i < svc.n && off < len; i++)
			off += (size_t)snprintf(out + off, len - off, "%s %s %s", i ? "," : "",
						svc.vols[i].name, events_state_name(svc.vols[i].state));
		return;
	}
	/* Per state, in the order of frep.admin.v1.State. */
	for (int s = 0, first = 1; s < EVENTS_STATES && off < len; s++) {
		unsigned k = 0;
		for (unsigned i = 0; i < svc.n; i++)
			k += svc.vols[i].state == s;
		if (k) {
			off += (size_t)snprintf(out + off, len - off, "%s %u %s", first ? "" : ",", k,
						events_state_name(s));
			first = 0;
		}
	}
}

/* head (READY=1) and STATUS=, with fmt (if not NULL) as the text shown while no volume is known. */
static void __attribute__((format(printf, 2, 0)))
send_text(const char *head, const char *fmt, va_list ap)
{
	char status[SERVICE_STATUS_MAX];

	pthread_mutex_lock(&svc.mu);
	if (fmt)
		vsnprintf(svc.text, sizeof(svc.text), fmt, ap);
	status_text(status, sizeof(status));
	send_locked("%sSTATUS=%s", head, status);
	pthread_mutex_unlock(&svc.mu);
}

void service_ready(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	send_text("READY=1\n", fmt, ap);
	va_end(ap);
}

void service_status(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	send_text("", fmt, ap);
	va_end(ap);
}

void service_volume_state(const char *volume, int state)
{
	char status[SERVICE_STATUS_MAX];
	unsigned i;

	pthread_mutex_lock(&svc.mu);
	for (i = 0; i < svc.n && strcmp(svc.vols[i].name, volume) != 0; i++)
		;
	if (i == svc.n && svc.n < SERVICE_VOLUMES)
		snprintf(svc.vols[svc.n++].name, sizeof(svc.vols[0].name), "%s", volume);
	if (i < svc.n)
		svc.vols[i].state = state;
	status_text(status, sizeof(status));
	send_locked("STATUS=%s", status);
	pthread_mutex_unlock(&svc.mu);
}

void service_stopping(const char *why)
{
	pthread_mutex_lock(&svc.mu);
	snprintf(svc.text, sizeof(svc.text), "%s", why);
	send_locked("STOPPING=1\nSTATUS=%s", why);
	pthread_mutex_unlock(&svc.mu);
}
