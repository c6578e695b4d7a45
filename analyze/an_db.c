/*
 * Folding a run's db_sample records (see an_db.h).
 *
 * The analyzer reads run files in one pass with bounded memory, so the
 * database evidence is folded as it arrives: per value name the first,
 * last, min, max and sum, plus two thinned series (SQLite WAL size,
 * PostgreSQL lock waits) for the HTML plot. Samples of one section come in
 * time order; sharded runs may interleave several files, so first and last
 * go by sample time, not by arrival.
 */
#include <stdlib.h>
#include <string.h>

#include "h2replay/error.h"
#include "an_db.h"

static int series_add(struct an_db_series *s, int64_t t, uint64_t v)
{
    if (!s->t) {
        s->t = malloc(AN_DB_MAX_POINTS * sizeof(*s->t));
        s->v = malloc(AN_DB_MAX_POINTS * sizeof(*s->v));
        if (!s->t || !s->v)
            return H2R_ERR_NOMEM;
        s->stride = 1;
    }
    if (s->seen++ % s->stride != 0)
        return 0;
    if (s->n == AN_DB_MAX_POINTS) { /* full: keep every other point, take half as many */
        for (size_t i = 0; i < AN_DB_MAX_POINTS / 2; i++) {
            s->t[i] = s->t[2 * i];
            s->v[i] = s->v[2 * i];
        }
        s->n = AN_DB_MAX_POINTS / 2;
        s->stride *= 2;
    }
    s->t[s->n] = t;
    s->v[s->n] = v;
    s->n++;
    return 0;
}

/* Run files are input: names and kinds may hold any byte; the reports print them. */
static void printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            *s = '?';
}

static struct an_db_value *value_slot(struct an_db *db, const char *name)
{
    for (size_t i = 0; i < db->n_values; i++)
        if (strcmp(db->v[i].name, name) == 0)
            return &db->v[i];
    if (db->n_values == AN_DB_MAX_NAMES) {
        db->names_dropped++;
        return NULL;
    }
    struct an_db_value *v = &db->v[db->n_values];
    v->name = strdup(name);
    if (!v->name)
        return NULL;
    printable(v->name);
    db->n_values++;
    return v;
}

int an_db_add(struct an_db **dbp, const struct h2r_run_db_sample *s)
{
    struct an_db *db = *dbp;
    if (!db) {
        db = calloc(1, sizeof(*db));
        if (!db)
            return H2R_ERR_NOMEM;
        *dbp = db;
    }
    const char *kind = s->db_kind && *s->db_kind ? s->db_kind : "?";
    if (!db->kind[0])
        snprintf(db->kind, sizeof(db->kind), "%s", kind);
    else if (strncmp(db->kind, kind, sizeof(db->kind) - 1) != 0)
        snprintf(db->kind, sizeof(db->kind), "mixed");
    printable(db->kind);
    if (db->samples == 0 || s->t_ns < db->t_first)
        db->t_first = s->t_ns;
    if (db->samples == 0 || s->t_ns > db->t_last)
        db->t_last = s->t_ns;
    db->samples++;
    for (size_t i = 0; i < s->n_values; i++) {
        const struct h2r_counter *c = &s->values[i];
        if (!c->name)
            continue;
        if (strcmp(c->name, "db.sample_failed") == 0) {
            db->failed++;
            continue;
        }
        if (strcmp(c->name, "db.dropped") == 0) {
            if (c->value > db->dropped)
                db->dropped = c->value;
            continue;
        }
        struct an_db_value *v = value_slot(db, c->name);
        if (!v) {
            if (db->n_values < AN_DB_MAX_NAMES)
                return H2R_ERR_NOMEM; /* strdup failed */
            continue;
        }
        if (v->n == 0 || s->t_ns < v->t_first) {
            v->t_first = s->t_ns;
            v->first = c->value;
        }
        if (v->n == 0 || s->t_ns >= v->t_last) {
            v->t_last = s->t_ns;
            v->last = c->value;
        }
        if (v->n == 0 || c->value < v->min)
            v->min = c->value;
        if (v->n == 0 || c->value > v->max)
            v->max = c->value;
        v->sum += (double)c->value;
        if (c->value > 0)
            v->nonzero++;
        v->n++;
        int rc = 0;
        if (strcmp(c->name, "sqlite.wal_bytes") == 0)
            rc = series_add(&db->wal, s->t_ns, c->value);
        else if (strcmp(c->name, "pg.lock_waits") == 0)
            rc = series_add(&db->lock_waits, s->t_ns, c->value);
        if (rc)
            return rc;
    }
    return 0;
}

void an_db_free(struct an_db *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < db->n_values; i++)
        free(db->v[i].name);
    free(db->wal.t);
    free(db->wal.v);
    free(db->lock_waits.t);
    free(db->lock_waits.v);
    free(db);
}

const struct an_db_value *an_db_value(const struct an_db *db, const char *name)
{
    if (!db)
        return NULL;
    for (size_t i = 0; i < db->n_values; i++)
        if (strcmp(db->v[i].name, name) == 0)
            return &db->v[i];
    return NULL;
}

int64_t an_db_delta(const struct an_db *db, const char *name)
{
    const struct an_db_value *v = an_db_value(db, name);
    return v ? (int64_t)(v->last - v->first) : 0;
}
