/*
 * Replay statistics shared between a loop thread and the driver.
 *
 * Each loop thread owns one struct rp_live and is its only writer; the
 * driver only reads it (relaxed atomic loads) to write samples and the
 * progress line, so nothing is locked and no cache line is written by two
 * threads. Histograms are log-linear (8 sub-buckets per power of two: at
 * most 12.5% relative error), enough for "p99-ish" figures; exact
 * percentiles come from the run file.
 */
#ifndef H2R_RP_STATS_H
#define H2R_RP_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

#include "h2replay/run.h"

#define RP_HIST_SUB_BITS 3
#define RP_HIST_BUCKETS ((64 - RP_HIST_SUB_BITS + 1) << RP_HIST_SUB_BITS)

struct rp_hist {
    _Atomic uint64_t n[RP_HIST_BUCKETS];
};

/* Bucket of a value (negative values count as 0). */
uint32_t rp_hist_bucket(int64_t v);

/* Largest value that falls into bucket b. */
int64_t rp_hist_bucket_max(uint32_t b);

/* Counts v (relaxed atomic increment: one writer per histogram). */
void rp_hist_add(struct rp_hist *h, int64_t v);

/* Adds h's counts into out[RP_HIST_BUCKETS]. */
void rp_hist_snapshot(const struct rp_hist *h, uint64_t *out);

/* The q-quantile (0..1) of counts as its bucket's upper bound; 0 when empty. */
int64_t rp_hist_quantile(const uint64_t *counts, double q);

/* One loop thread's live counters (cumulative since the section started). */
struct rp_live {
    _Alignas(64) _Atomic uint64_t due; /* exchanges whose send time came (own cache lines) */
    _Atomic uint64_t sent;             /* HEADERS submitted */
    _Atomic uint64_t done;             /* results produced */
    _Atomic uint64_t errors;           /* results with a failure class */
    _Atomic uint64_t in_flight;        /* sent and not done */
    _Atomic uint64_t open_conns;
    _Atomic int64_t max_late; /* worst send lateness since the driver last took it */
    _Atomic int finished;     /* the thread produced every result */
    struct rp_hist late;      /* send lateness: t_sent - t_intended */
    struct rp_hist latency;   /* response time from the actual send */
};

/* Raises max_late to v when larger. */
void rp_live_late(struct rp_live *l, int64_t v);

/*
 * Engine resources (issue 8: the report must say when the client is the
 * bottleneck). The process's open file descriptors (entries of
 * /proc/self/fd; -1 when unreadable) and whether a failure detail says the
 * client ran out of descriptors (EMFILE, ENFILE) rather than the server
 * failing.
 */
int64_t rp_count_open_fds(void);
int rp_detail_is_fd_exhaustion(const char *detail);

/* What a driver tracks over a section for its section_end record. */
struct rp_resources {
    struct rusage ru0;   /* getrusage(RUSAGE_SELF) when the section started */
    int64_t max_late;    /* worst send lateness seen in the samples */
    uint64_t peak_fds;   /* most open descriptors seen (1 s samples) */
    uint64_t peak_conns; /* most open replay connections seen */
    uint64_t emfile;     /* failed results whose detail says the client ran out of fds */
};

/* Starts tracking: takes the section's starting rusage. */
void rp_resources_begin(struct rp_resources *r);

/* One sample: raises the peaks with the current fds and open_conns and max_late. */
void rp_resources_sample(struct rp_resources *r, uint64_t open_conns, int64_t max_late);

/*
 * Fills end's client-cost fields (docs/run-format.md section_end: CPU since
 * begin, peak RSS, loop threads, lateness max and p99 over the n threads'
 * histograms, peaks, the fd limit, EMFILE/ENFILE failures). The caller sets
 * section, times and counts.
 */
void rp_resources_end(const struct rp_resources *r, struct rp_live *lives, uint32_t n,
                      struct h2r_run_section_end *end);

/*
 * A per-thread table of distinct failure-detail strings. Details often point
 * into a connection's buffers, which die with it, so results keep a copy; the
 * table is bounded (RP_STRTAB_MAX entries) and returns a fixed explanation
 * once full or out of memory. NULL in, NULL out.
 */
#define RP_STRTAB_MAX 4096

struct rp_strtab {
    char **v;
    size_t n;
};

const char *rp_strtab_intern(struct rp_strtab *t, const char *s);
/* Frees every string and the table's array; the table is empty afterwards. */
void rp_strtab_free(struct rp_strtab *t);

#endif
