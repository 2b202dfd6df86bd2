/* One logging path for every frep program: one event per line on stderr. */
#ifndef FREP_LOG_H
#define FREP_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* prog is borrowed for the life of the process. */
void log_init(const char *prog, enum log_level level);
/* Parses "error", "warn", "info", "debug"; -1 if none of them. */
int log_level_parse(const char *s);

/*
 * Writes "TIMESTAMP PROG[PID] LEVEL volume=VOLUME MESSAGE\n" in one write(2),
 * so lines from several threads never interleave. volume may be NULL ("-").
 */
void log_msg(enum log_level level, const char *volume, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(vol, ...) log_msg(LOG_ERROR, (vol), __VA_ARGS__)
#define log_warn(vol, ...) log_msg(LOG_WARN, (vol), __VA_ARGS__)
#define log_info(vol, ...) log_msg(LOG_INFO, (vol), __VA_ARGS__)
#define log_debug(vol, ...) log_msg(LOG_DEBUG, (vol), __VA_ARGS__)

#endif
