/* Small shared helpers: CRC32C, size and address parsing, time, randomness. */
#ifndef FREP_UTIL_H
#define FREP_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* CRC32C (Castagnoli), as iSCSI and ext4 use it; ISA-L does the work. */
uint32_t frep_crc32c(const void *buf, size_t len);
/* Continues a CRC32C: frep_crc32c_update(frep_crc32c(a), b) == frep_crc32c(a ++ b). */
uint32_t frep_crc32c_update(uint32_t crc, const void *buf, size_t len);

/*
 * A bad command-line argument: prints "PROG: MESSAGE (see PROG --help)" as one
 * line on stderr and exits with status 2.
 */
void usage_error(const char *prog, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

/* Parses seconds with an optional fraction ("0.5", "30") into ms, within [min_ms, 1 day]. 0 or -1. */
int parse_seconds(const char *s, uint64_t min_ms, uint64_t *ms);

/* Parses "123", "64K", "100M", "2G" (powers of 1024). 0, or -1 if malformed/overflow. */
int parse_size(const char *s, uint64_t *out);
/* Formats bytes as "1.5G", "12M", "512K", "100" into buf. Returns buf. */
char *format_size(uint64_t bytes, char *buf, size_t len);

/*
 * Splits "HOST:PORT" or "[V6]:PORT" into host and port (copied). default_port
 * is used when ":PORT" is missing and default_port is non-NULL. 0 or -1.
 */
int split_host_port(const char *s, char *host, size_t host_len, char *port, size_t port_len,
		    const char *default_port);
/* True if host is an IPv4 or IPv6 literal. */
bool is_ip_literal(const char *host);
/* True if host is a loopback name or address (localhost, 127.0.0.0/8, ::1). */
bool is_loopback_host(const char *host);

/* Monotonic clock in ms / ns. */
uint64_t now_ms(void);
/* The time ms from now on clock (for pthread_cond_timedwait: the clock its condition uses). */
struct timespec;
void deadline_in(clockid_t clock, uint64_t ms, struct timespec *ts);
uint64_t now_ns(void);
/* Wall clock: ms since the Unix epoch (timestamps for operators). */
int64_t wall_ms(void);
/*
 * snprintf where cutting the text short is acceptable (a message) or cannot
 * happen (bounded paths checked earlier): gcc's -Wformat-truncation does not
 * look through it.
 */
void textf(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Copies file from into to (created or truncated, mode 0600), fdatasynced. 0, or -1 with errno. */
int copy_file_durably(const char *from, const char *to);
/* Unix ms as UTC "2026-12-03T07:30:00Z" ("unknown" for 0). Returns buf. */
char *format_utc_ms(int64_t ms, char *buf, size_t len);

/*
 * A rate budget (--max-rate, SetRate): bytes spent since start_ms at rate
 * bytes/s. rate_budget_wait_ms returns how long to wait before spending more;
 * a changed rate starts a new budget, so lowering it mid-pass never stalls
 * for the bytes already spent at the old one. rate 0 = unlimited. Start a
 * budget with the rate in force, so the first bytes count against it.
 */
struct rate_budget {
	uint64_t rate, bytes, start_ms;
};
void rate_budget_start(struct rate_budget *b, uint64_t rate, uint64_t now);
uint64_t rate_budget_wait_ms(struct rate_budget *b, uint64_t rate, uint64_t now);

/* Fills buf with random bytes (getrandom). 0 or -1. */
int random_bytes(void *buf, size_t len);
/* Lower-case hex of len bytes into out (2*len+1 bytes). Returns out. */
char *hex_encode(const void *buf, size_t len, char *out);
/* Parses 2*len hex digits. 0 or -1. */
int hex_decode(const char *hex, void *buf, size_t len);

/*
 * True if name is a valid volume name (spec HS-2): [A-Za-z0-9._-]{1,64}, not
 * starting with '.'. Names are directories of the mirror's data dir, where
 * the server keeps its own dot files (.lock), so "." and ".." are not the
 * only names that would land on something else.
 */
bool volume_name_valid(const char *name);

/*
 * Takes an exclusive non-blocking flock on path (created if missing, 0600).
 * Returns the fd to keep open, or -1 (errno EWOULDBLOCK if held elsewhere).
 */
int lock_file(const char *path);

/* fsync the directory holding path (after a rename or create). 0 or -1. */
int fsync_parent_dir(const char *path);

#endif
