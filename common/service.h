/*
 * The service manager's view of a daemon (systemd's sd_notify protocol, for
 * Type=notify units): READY=1 once it serves, STATUS= with the volumes' states,
 * STOPPING=1 when it begins to shut down. Without NOTIFY_SOCKET every call
 * does nothing, so the daemons call them unconditionally.
 */
#ifndef FREP_SERVICE_H
#define FREP_SERVICE_H

/* READY=1, with a STATUS= line (fmt may be NULL). Call once the daemon serves. */
void service_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One STATUS= line. */
void service_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Records volume's state (a frep.admin.v1.State value) and sends the states of
 * every volume seen as the STATUS= line ("db: INSYNC", "2 volumes: db INSYNC,
 * web REPLICATE"). Called by events_publish for every state change.
 */
void service_volume_state(const char *volume, int state);

/* STOPPING=1, with a STATUS= line naming why. Not async-signal-safe. */
void service_stopping(const char *why);

#endif
