/*
 * Sharding a replay across processes and machines (`replay --shard I/N
 * --start-at TIME`, docs/distributed.md).
 *
 * N workers load the same trace and each replays the captured connections
 * of its shard against the same time origin, so that together they replay
 * the trace exactly once with the captured timing. The partition is a pure
 * function of the trace: every worker computes the same one without talking
 * to the others.
 *
 * Unit of partition: a "session", a set of captured connections that must
 * stay on one worker because they share state (by default each captured
 * connection is its own session; TS2021 node sessions, rp_nodes.c, key it by
 * identity: a captured node's sessions, one clone copy of them, or one
 * synthetic node). Assignment: sessions sorted by their first
 * request (ties: key), dealt round-robin. Each shard gets floor(S/N) or
 * ceil(S/N) sessions, and this holds for every prefix of the trace in time:
 * a burst of new connections is spread over all workers instead of landing
 * on whichever one a hash picks (a hash mod N is just as deterministic but
 * leaves shards unbalanced by ~sqrt(S/N) sessions, and a burst on one).
 */
#ifndef H2R_RP_SHARD_H
#define H2R_RP_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/replay.h"
#include "h2replay/run.h"
#include "rp_url.h"
#include "rp_schedule.h"

/* rp_pconn.thread of a connection that another shard replays (or that has no exchange). */
#define RP_SHARD_NONE UINT32_MAX

/* Partition scheme, recorded in the run's settings: workers that disagree on it would not
 * replay the trace exactly once, so the analyzer refuses to merge them. Bump the version
 * whenever the assignment changes. */
#define RP_SHARD_SCHEME "first-request-round-robin/v1"

/* --start-at bounds: how far in the past it may be (then the replay starts at once and is
 * late from the first exchange, which the send lateness shows), how far in the future. */
#define RP_START_GRACE_NS (5LL * 1000000000LL)
#define RP_START_MAX_WAIT_NS (24LL * 3600LL * 1000000000LL)

/* Session key of captured connection c of plan p; NULL means rp_shard_key_conn. */
typedef uint64_t (*rp_shard_key_fn)(const struct rp_plan *p, uint32_t c, void *arg);

/* The default session key: the trace connection id. */
uint64_t rp_shard_key_conn(const struct rp_plan *p, uint32_t c, void *arg);

/*
 * Assigns n items to count shards: items with equal keys[i] form one session (never
 * split); sessions, ordered by their earliest t_first[i] then key, are dealt round-robin
 * from shard 0. out[i] receives item i's shard; *n_sessions (may be NULL) the number of
 * sessions. Deterministic: the same input gives the same output on every machine.
 * Returns 0, H2R_ERR_ARG (count 0) or H2R_ERR_NOMEM.
 */
int rp_shard_assign(const uint64_t *keys, const int64_t *t_first, uint32_t n, uint32_t count,
                    uint32_t *out, uint32_t *n_sessions);

/* What one shard of a plan holds (rp_shard_partition). */
struct rp_shard_stats {
    uint32_t sessions; /* sessions of this shard */
    uint32_t conns;    /* captured connections of this shard */
    uint64_t xs;       /* exchanges of this shard */
};

/*
 * rp_plan_partition for one shard: the connections (with at least one exchange) of shard
 * `index` of `count` are dealt round-robin over n_threads loop threads; all others get
 * thread RP_SHARD_NONE, so no loop replays them. count <= 1 is the whole trace (exactly
 * rp_plan_partition). key may be NULL (rp_shard_key_conn). st may be NULL.
 * Returns 0, H2R_ERR_ARG (n_threads 0, index >= count) or H2R_ERR_NOMEM.
 */
int rp_shard_partition(struct rp_plan *p, uint32_t n_threads, uint32_t index, uint32_t count,
                       rp_shard_key_fn key, void *arg, struct rp_shard_stats *st);

/* Checks the sharding options of o (index < count, --start-at with one target). Returns 0
 * or H2R_ERR_ARG with errbuf filled. */
int rp_shard_check_opts(const struct h2r_replay_opts *o, char *errbuf, size_t errlen);

/* Appends " shards=N partition=KEY:SCHEME" to the settings string in buf (NUL-terminated,
 * size len) when count > 1; key_name NULL means "conn". */
void rp_shard_settings(char *buf, size_t len, uint32_t count, const char *key_name);

/* Prints what this shard replays on stderr (unless o->quiet or not sharded). */
void rp_shard_note(const struct h2r_replay_opts *o, const struct rp_shard_stats *st,
                   const struct rp_plan *p);

/*
 * Waits until lead_ns before the wall-clock instant start_at_ns (sleeping in slices of at
 * most 100 ms, so a stop request is seen), then reads CLOCK_MONOTONIC and CLOCK_REALTIME
 * together into *mono and *wall: the section's t0 on this worker's monotonic clock is
 * *mono + (start_at_ns - *wall). Returns early (0) when stop() becomes non-zero
 * (rp_replay_stop_requested). Returns H2R_ERR_ARG when start_at_ns is more than
 * RP_START_GRACE_NS in the past or more than RP_START_MAX_WAIT_NS ahead. quiet 0: a note on
 * stderr about the wait or a late start.
 */
int rp_start_at_wait(int64_t start_at_ns, int64_t lead_ns, int (*stop)(void), int quiet,
                     int64_t *mono, int64_t *wall, char *errbuf, size_t errlen);

/*
 * Starts section `section` of the run file for target t, for both drivers (trace exchanges
 * and node sessions): t0 is lead_ns from now, or, for section 0 with --start-at, the shared
 * origin (waited for with rp_start_at_wait); then the section record with the clock offset
 * and error bound is written. Returns 0 with *t0 (CLOCK_MONOTONIC ns), the wait's errors, or
 * the writer's (errbuf names the run file).
 */
int rp_section_begin(struct h2r_run_writer *wr, const struct h2r_replay_opts *o, uint32_t section,
                     const struct rp_target *t, int64_t lead_ns, int (*stop)(void), int64_t *t0,
                     char *errbuf, size_t errlen);

/* The kernel's bound on this host's CLOCK_REALTIME error (adjtimex maxerror) in ns, or -1
 * when the clock is not synchronized by NTP (or the bound cannot be read). */
int64_t rp_clock_max_error_ns(void);

#endif
