/* Named crash points for tests: FREP_CRASH_AT picks a site and a hit at which the process dies. */
#ifndef FREP_CRASHPOINT_H
#define FREP_CRASHPOINT_H

/*
 * frep_crash_point(site) marks a place where a crash is interesting. In a
 * build without FREP_TEST_HOOKS (the benchmark build) it is an empty inline
 * function; with it, the environment variable FREP_CRASH_AT is read once, on
 * the first call of any site (thread-safe), and decides whether a hit kills
 * the process:
 *
 *   FREP_CRASH_AT=SITE:N                   the N-th hit of SITE (N >= 1)
 *   FREP_CRASH_AT=SITE:random:SEED:MAX     the K-th hit, K = 1 + hash(SEED) % MAX,
 *                                          so a crash loop can draw K from its
 *                                          iteration number and replay it later
 *   SITE "*"                               counts the hits of every site together
 *
 * Hits are counted across threads with one atomic counter. Unset or empty:
 * no site ever crashes. A malformed value is a broken test: it is reported
 * and the process exits with status 2 at the first crash point.
 *
 * On the chosen hit one line goes to stderr through the log
 * ("crash point SITE hit N: crashing"), then the process dies:
 *   - if the crashfs shim is preloaded (tests/shim/crashfs.c, found by
 *     dlsym(RTLD_DEFAULT, "crashfs_crash")), by a simulated power loss: every
 *     write not yet made durable by fsync/fdatasync is undone, then SIGKILL;
 *   - otherwise by raise(SIGKILL), i.e. a plain kill -9 that keeps the page
 *     cache.
 * Either way the exit status seen by a shell is 137.
 *
 * The sites, and where the code places them:
 *   journal-append  after a journal append, before its fdatasync
 *   journal-synced  after the fdatasync of the journal, before the TX is acknowledged
 *   apply           in the middle of applying a transaction to the extents
 *   meta-write      in the middle of writing a metadata file: after the
 *                   write, before its fsync and rename
 *   copy            during a bulk copy: after a chunk is written on the
 *                   mirror, after a chunk is sent on the master
 *   ack-sent        right after an acknowledgement was sent
 *   crack           on the master, when the buffer overflows and the mirror is
 *                   cracked (dirty bits set, records about to be dropped)
 *   snapshot-create on the mirror, a snapshot's files made, before its metadata
 *   cow-copied      copy-before-write: chunks written to an overlay, before its
 *                   fdatasync
 *   cow-mapped      the map's bits written, before their fdatasync
 *   cow-saved       the map durable, before the base is overwritten
 *   promote-restored  a promotion: the copy's state to promote is on the base (a
 *                   forced one's snapshot written back), before the journal is emptied
 *   promote-journal the journal emptied at the promotion's TXID, before the
 *                   metadata says promoted
 *
 * site is borrowed for the call; it must be a string literal-like constant.
 */
#ifdef FREP_TEST_HOOKS
void frep_crash_point(const char *site);
#else
static inline void frep_crash_point(const char *site)
{
	(void)site;
}
#endif

#endif
