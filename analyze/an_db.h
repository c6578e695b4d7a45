/*
 * Database evidence of a run: the db_sample records `replay --db` wrote
 * (docs/run-format.md, record 6), folded into per-name first/last/min/max
 * and two short time series for the reports. Bounded: at most
 * AN_DB_MAX_NAMES distinct value names and AN_DB_MAX_POINTS points per
 * series, whatever the length of the run.
 *
 * Also what the server acknowledged (ack records, 7), the end-of-section
 * durability check (verify records, 8: acknowledged but lost, present but
 * never acknowledged) and the replay client's own resources from the
 * section ends (CPU, RSS, descriptors, lateness: is the client the
 * bottleneck?).
 */
#ifndef H2R_AN_DB_H
#define H2R_AN_DB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "h2replay/run.h"

#define AN_DB_MAX_NAMES 64u
#define AN_DB_MAX_POINTS 2048u

/* One named value over the run's samples. */
struct an_db_value {
    char *name;
    uint64_t n;      /* samples that carried it */
    int64_t t_first; /* sample times (ns from the section's t0) */
    int64_t t_last;
    uint64_t first, last, min, max;
    uint64_t nonzero; /* samples where it was above 0 */
    double sum;       /* for wait-event counts: backend-samples */
};

/* A time series thinned to AN_DB_MAX_POINTS (every stride-th sample once full). */
struct an_db_series {
    int64_t *t;
    uint64_t *v;
    size_t n;
    uint64_t stride; /* keep one sample in stride */
    uint64_t seen;
};

#define AN_DB_VERIFY_KINDS 4u   /* users, nodes, pre_auth_keys, api_keys */
#define AN_DB_VERIFY_EXAMPLES 3u /* examples kept per list */

/* One entity kind over the run's verify records (shards add up). */
struct an_db_verify_kind {
    char name[24];
    uint64_t acknowledged, present, lost, unacknowledged;
    uint64_t existing_before; /* rows there before the section: in none of the above */
    char lost_ex[AN_DB_VERIFY_EXAMPLES][160];
    size_t n_lost_ex;
    char unacked_ex[AN_DB_VERIFY_EXAMPLES][160];
    size_t n_unacked_ex;
};

/* The replay client's resources over the run's section ends. */
struct an_client {
    uint32_t ends;         /* section_end records seen */
    uint32_t loop_threads; /* most seen; 0 = not recorded (older files) */
    int64_t cpu_ns;        /* user + system, summed over shards */
    int64_t duration_ns;   /* t_end of the longest section */
    int64_t max_late_ns, late_p99_ns;
    uint64_t max_rss_kb, peak_fds, peak_conns, fd_limit, emfile_errors;
};

struct an_db {
    char kind[16]; /* "sqlite", "postgresql", "mixed" */
    uint64_t samples;
    uint64_t failed;  /* samples the watcher could not take (db.sample_failed) */
    uint64_t dropped; /* samples the watcher dropped (db.dropped, the latest figure) */
    int64_t t_first, t_last;
    struct an_db_value v[AN_DB_MAX_NAMES];
    size_t n_values;
    uint64_t names_dropped;         /* values whose name did not fit in v */
    struct an_db_series wal;        /* sqlite.wal_bytes */
    struct an_db_series lock_waits; /* pg.lock_waits */

    uint64_t acks;                           /* ack records */
    uint64_t acks_by_kind[AN_DB_VERIFY_KINDS]; /* user, node, pre_auth_key, api_key */
    uint64_t acks_from_request;              /* identity taken from the request */
    uint32_t verifies;                       /* verify records */
    uint32_t verify_errors;                  /* of which could not run */
    char verify_error[200];                  /* the first error */
    uint64_t verify_acks_dropped, verify_ignored;
    uint64_t verify_baseline_failed; /* kinds whose section-start baseline was not read */
    struct an_db_verify_kind vk[AN_DB_VERIFY_KINDS];
    size_t n_vk;
    struct an_client client;
};

/*
 * Adds one db_sample record to *db (allocated on first use). Returns 0 or
 * H2R_ERR_NOMEM.
 */
int an_db_add(struct an_db **db, const struct h2r_run_db_sample *s);

/* Adds an ack / verify / section_end record (allocating *db on first use). 0 or NOMEM. */
int an_db_add_ack(struct an_db **db, const struct h2r_run_ack *a);
int an_db_add_verify(struct an_db **db, const struct h2r_run_verify *v);
int an_db_add_end(struct an_db **db, const struct h2r_run_section_end *e);

/* Sums over the verify records: acknowledged but lost, present but never acknowledged. */
uint64_t an_db_lost(const struct an_db *db);
uint64_t an_db_unacked(const struct an_db *db);

/*
 * "client-bound: ..." into buf when the replay client itself may have limited the run:
 * its CPU reached 90 % of one core per loop thread, or connects failed with EMFILE/ENFILE.
 * Returns 1 (buf filled) or 0 (buf "").
 */
int an_client_bound(const struct an_db *db, char *buf, size_t len);

/* Frees; NULL is a no-op. */
void an_db_free(struct an_db *db);

/* The value named name, or NULL when no sample carried it. */
const struct an_db_value *an_db_value(const struct an_db *db, const char *name);

/* last - first of a cumulative counter (commits, rollbacks...); 0 when absent. */
int64_t an_db_delta(const struct an_db *db, const char *name);

/* Report parts (an_report_db.c); each writes nothing for a run without samples. */
struct an_report;
struct json_t;
void an_db_table(FILE *f, const struct an_db *db);
struct json_t *an_db_json(const struct an_db *db); /* JSON null without any evidence */
struct json_t *an_client_json(const struct an_db *db); /* JSON null without section ends */
void an_db_md(FILE *f, const struct an_report *rep);
void an_db_html(FILE *f, const struct an_report *rep);

#endif
