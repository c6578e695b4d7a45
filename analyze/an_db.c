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
#include <stdio.h>
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

static struct an_db *db_get(struct an_db **dbp)
{
    if (!*dbp)
        *dbp = calloc(1, sizeof(**dbp));
    return *dbp;
}

static int ack_kind_index(const char *k)
{
    static const char *const names[AN_DB_VERIFY_KINDS] = {"user", "node", "pre_auth_key",
                                                          "api_key"};
    for (unsigned i = 0; k && i < AN_DB_VERIFY_KINDS; i++)
        if (strcmp(k, names[i]) == 0)
            return (int)i;
    return -1;
}

int an_db_add_ack(struct an_db **dbp, const struct h2r_run_ack *a)
{
    struct an_db *db = db_get(dbp);
    if (!db)
        return H2R_ERR_NOMEM;
    db->acks++;
    int k = ack_kind_index(a->kind);
    if (k >= 0)
        db->acks_by_kind[k]++;
    if (a->source == H2R_ACK_SRC_REQUEST)
        db->acks_from_request++;
    return 0;
}

static void keep_example(char (*ex)[160], size_t *n, const char *s)
{
    if (!s || *n >= AN_DB_VERIFY_EXAMPLES)
        return;
    snprintf(ex[*n], 160, "%s", s);
    printable(ex[*n]);
    (*n)++;
}

int an_db_add_verify(struct an_db **dbp, const struct h2r_run_verify *v)
{
    struct an_db *db = db_get(dbp);
    if (!db)
        return H2R_ERR_NOMEM;
    db->verifies++;
    db->verify_acks_dropped += v->acks_dropped;
    db->verify_ignored += v->ignored;
    db->verify_baseline_failed += v->baseline_failed;
    if (v->error) {
        if (!db->verify_errors++) {
            snprintf(db->verify_error, sizeof(db->verify_error), "%s", v->error);
            printable(db->verify_error);
        }
        return 0;
    }
    for (size_t i = 0; i < v->n_kinds; i++) {
        const struct h2r_run_verify_kind *k = &v->kinds[i];
        if (!k->kind)
            continue;
        struct an_db_verify_kind *t = NULL;
        for (size_t j = 0; j < db->n_vk && !t; j++)
            if (strncmp(db->vk[j].name, k->kind, sizeof(db->vk[j].name) - 1) == 0)
                t = &db->vk[j];
        if (!t) {
            if (db->n_vk == AN_DB_VERIFY_KINDS)
                continue; /* a kind this analyzer does not know: counted nowhere */
            t = &db->vk[db->n_vk++];
            snprintf(t->name, sizeof(t->name), "%s", k->kind);
            printable(t->name);
        }
        t->acknowledged += k->acknowledged;
        t->present += k->present;
        t->lost += k->lost;
        t->unacknowledged += k->unacknowledged;
        t->existing_before += k->existing_before;
        for (size_t j = 0; j < k->n_lost_examples; j++)
            keep_example(t->lost_ex, &t->n_lost_ex, k->lost_examples[j]);
        for (size_t j = 0; j < k->n_unacked_examples; j++)
            keep_example(t->unacked_ex, &t->n_unacked_ex, k->unacked_examples[j]);
    }
    return 0;
}

int an_db_add_end(struct an_db **dbp, const struct h2r_run_section_end *e)
{
    struct an_db *db = db_get(dbp);
    if (!db)
        return H2R_ERR_NOMEM;
    struct an_client *c = &db->client;
    c->ends++;
    if (e->loop_threads > c->loop_threads)
        c->loop_threads = e->loop_threads;
    c->cpu_ns += e->cpu_user_ns + e->cpu_sys_ns;
    if (e->t_end_ns > c->duration_ns)
        c->duration_ns = e->t_end_ns;
#define KEEP_MAX(f)                                                                                \
    do {                                                                                           \
        if (e->f > c->f)                                                                           \
            c->f = e->f;                                                                           \
    } while (0)
    KEEP_MAX(max_late_ns);
    KEEP_MAX(late_p99_ns);
    KEEP_MAX(max_rss_kb);
    KEEP_MAX(peak_fds);
    KEEP_MAX(peak_conns);
    KEEP_MAX(fd_limit);
#undef KEEP_MAX
    c->emfile_errors += e->emfile_errors;
    return 0;
}

uint64_t an_db_lost(const struct an_db *db)
{
    uint64_t n = 0;
    for (size_t i = 0; db && i < db->n_vk; i++)
        n += db->vk[i].lost;
    return n;
}

uint64_t an_db_unacked(const struct an_db *db)
{
    uint64_t n = 0;
    for (size_t i = 0; db && i < db->n_vk; i++)
        n += db->vk[i].unacknowledged;
    return n;
}

int an_client_bound(const struct an_db *db, char *buf, size_t len)
{
    buf[0] = '\0';
    if (!db || !db->client.ends)
        return 0;
    const struct an_client *c = &db->client;
    size_t o = 0;
    /* Shards are separate processes: their CPU adds up, so compare per shard-second. */
    double cores = c->duration_ns > 0 ? (double)c->cpu_ns / (double)c->duration_ns / c->ends : 0;
    /* Under a second of replay, process-wide CPU (setup, coordinator) swamps the ratio: no
     * verdict from it. */
    if (c->loop_threads && c->duration_ns >= 1000000000LL &&
        cores >= 0.9 * c->loop_threads)
        o += (size_t)snprintf(buf + o, len - o,
                              "client-bound: the replay used %.2f cores for %u loop thread%s "
                              "(>= 90%% each)",
                              cores, c->loop_threads, c->loop_threads == 1 ? "" : "s");
    if (c->emfile_errors && o < len)
        o += (size_t)snprintf(buf + o, len - o,
                              "%s%llu requests failed with EMFILE/ENFILE: the client ran out of "
                              "file descriptors (limit %llu)",
                              o ? "; " : "client-bound: ", (unsigned long long)c->emfile_errors,
                              (unsigned long long)c->fd_limit);
    return buf[0] != '\0';
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
