/*
 * One analysed run: a section of one or more (sharded) run files, or a trace
 * used as the baseline. Everything the reports need, in bounded memory.
 */
#ifndef H2R_AN_RUN_H
#define H2R_AN_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/hist.h"
#include "h2replay/run.h"
#include "an_fold.h"
#include "an_series.h"

/* Groups per run; the rest share one "(other)" group (docs/analyze.md). */
#define AN_MAX_GROUPS 256u
/* Failure class slots: the run file's classes, then the two below. */
#define AN_CLASS_TRACE 32u   /* a trace exchange with an error (baseline traces) */
#define AN_CLASS_UNKNOWN 33u /* a class number this build does not know */
#define AN_NCLASS 34u
/* Failures kept with their details, for examples. */
#define AN_MAX_EXAMPLES 64u
/* Failed exchange ids kept for the new-vs-shared comparison (16 bytes each). */
#define AN_MAX_FAILURES ((size_t)16 * 1024 * 1024)
#define AN_DETAIL_MAX 96
#define AN_OTHER_GROUP "(other)"
/* Shards per sharded run (a bitmap of this many bits marks the ones seen). */
#define AN_MAX_SHARDS 1000000u
/* Shard files whose --start-at differ by more than this belong to different replays. */
#define AN_SHARD_START_SLACK_NS 1000000000LL

struct an_db;
struct an_slog;

enum an_group_by { AN_GROUP_ENDPOINT, AN_GROUP_CONN, AN_GROUP_NONE };
enum an_run_kind { AN_KIND_RUN, AN_KIND_TRACE };

struct an_group {
    char *key;
    uint32_t index; /* in an_run.groups */
    uint64_t count;
    uint64_t ok;
    uint64_t by_class[AN_NCLASS];
    struct h2r_hist *lat_int;  /* t_done - t_intended of the ok exchanges */
    struct h2r_hist *lat_sent; /* t_done - t_sent of the ok exchanges */
    uint64_t new_failures;     /* filled by an_run_compare */
    uint64_t shared_failures;
};

/* One failed exchange, as kept for the comparison with the reference. */
struct an_failure {
    uint64_t id;
    uint32_t group;
    uint32_t cls;
};

struct an_example {
    uint64_t id;
    uint32_t group;
    uint32_t cls;
    int64_t t_intended_ns;
    int64_t t_done_ns;
    int32_t status;
    char detail[AN_DETAIL_MAX];
};

/* An exchange as the analyzer sees it, from a run result or a trace exchange. */
struct an_obs {
    uint64_t id;
    const char *method;
    const char *path;
    int grpc;
    uint64_t conn;
    int64_t t_intended;
    int64_t t_sent; /* < 0: never sent */
    int64_t t_done;
    uint32_t cls; /* H2R_EC_NONE = ok */
    int32_t status;
    const char *detail;
};

struct an_run {
    char *name;        /* unique among the runs of one analysis */
    char *section;     /* the section name in the run file (shards merge by it) */
    int kind;          /* enum an_run_kind */
    int from_baseline; /* read from the --baseline file */
    char *sources;     /* files, comma separated */
    char *label;
    char *url;
    char *trace_sha256;
    char *settings;
    char *tool_version;
    double speed;
    int64_t timeout_ns;
    uint32_t shard_count; /* 0/1: not sharded */
    uint8_t *shard_bits;  /* shard indexes seen, one bit each (an_run_mark_shard) */
    uint32_t shards_seen;
    int64_t start_at_ns;  /* the shards' shared --start-at (the first file's); 0 none */

    uint64_t count;
    uint64_t ok;
    uint64_t by_class[AN_NCLASS];
    int64_t t_last_done_ns;
    int64_t t_end_ns; /* latest section end */
    uint32_t sections_ended;
    uint32_t sections_started;
    int interrupted;
    uint64_t end_exchanges;
    int64_t cpu_user_ns;
    int64_t cpu_sys_ns;
    uint64_t max_rss_kb;
    int64_t max_late_ns;
    uint64_t samples;

    struct h2r_hist *lat_int;
    struct h2r_hist *lat_sent;
    struct an_group **groups;
    size_t n_groups;
    uint32_t *slots; /* open addressing: group index + 1, 0 = empty */
    size_t n_slots;
    uint64_t overflowed; /* exchanges that went to "(other)" because of AN_MAX_GROUPS */

    struct an_series series;
    struct an_onset onset;

    int has_first_failure;
    struct an_example first_failure;
    struct an_example examples[AN_MAX_EXAMPLES];
    size_t n_examples;

    struct an_failure *failures;
    size_t n_failures;
    size_t cap_failures;
    int failures_truncated;

    /* vs the reference run (an_run_compare) */
    struct an_db *db; /* replay --db evidence (an_db.h); NULL: no db_sample records */
    /* analyze --server-log (an_serverlog.h): the server's log on this run's timeline */
    int64_t t0_wall_ns;         /* the first section's t0 on the wall clock; 0 unknown */
    int64_t clock_max_error_ns; /* its NTP error bound; -1 unknown */
    struct an_slog *slog;       /* NULL: no --server-log for this run; freed by an_analyze.c */

    int compared;
    uint64_t new_failures;
    uint64_t shared_failures;
};

/* Allocates an empty run named NAME. Returns 0 or H2R_ERR_NOMEM. */
int an_run_new(struct an_run **out, const char *name, int kind, int64_t window_ns);
/* Frees r and everything it holds; NULL is a no-op. */
void an_run_free(struct an_run *r);

/* Replaces *dst with a copy of s (NULL and "" give ""). Returns 0 or H2R_ERR_NOMEM. */
int an_set_str(char **dst, const char *s);

/* Appends ", s" (or s) to r->sources unless already there. */
int an_run_add_source(struct an_run *r, const char *s);

/* Marks shard `index` of r->shard_count (> 1, index below it) as seen. Returns 1 when it
 * is new, 0 when it was seen before, H2R_ERR_NOMEM. */
int an_run_mark_shard(struct an_run *r, uint32_t index);

/* 1 when shard `index` of a sharded run was seen. */
int an_run_has_shard(const struct an_run *r, uint32_t index);

/*
 * Adds one exchange, grouped by `group_by` (enum an_group_by) with folder f.
 * Returns 0 or H2R_ERR_NOMEM.
 */
int an_run_add(struct an_run *r, const struct an_obs *x, const struct an_folder *f, int group_by);

/* Finishes a run after its last exchange: series, onset, sorted failures. */
void an_run_finish(struct an_run *r, double threshold, unsigned sustain);

/*
 * Compares the failures of r with those of ref (both finished): fills the
 * new / shared counts of r and of its groups.
 */
void an_run_compare(struct an_run *r, const struct an_run *ref);

/* 1 when exchange id failed in r (binary search; r finished). */
int an_run_failed(const struct an_run *r, uint64_t id);

/* The group with this exact key, or NULL. */
const struct an_group *an_run_group(const struct an_run *r, const char *key);

/* Run duration used for throughput: latest section end or completion (ns, >= 1). */
int64_t an_run_duration(const struct an_run *r);

/* Name of a failure class slot ("deadline_exceeded", "trace_error", "unknown"). */
const char *an_class_name(uint32_t slot);

#endif
