/*
 * Database evidence of a run: the db_sample records `replay --db` wrote
 * (docs/run-format.md, record 6), folded into per-name first/last/min/max
 * and two short time series for the reports. Bounded: at most
 * AN_DB_MAX_NAMES distinct value names and AN_DB_MAX_POINTS points per
 * series, whatever the length of the run.
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
};

/*
 * Adds one db_sample record to *db (allocated on first use). Returns 0 or
 * H2R_ERR_NOMEM.
 */
int an_db_add(struct an_db **db, const struct h2r_run_db_sample *s);

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
struct json_t *an_db_json(const struct an_db *db); /* JSON null without samples */
void an_db_md(FILE *f, const struct an_report *rep);
void an_db_html(FILE *f, const struct an_report *rep);

#endif
