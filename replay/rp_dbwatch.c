/*
 * Database watching during a replay (see rp_dbwatch.h).
 *
 * Why a thread and a queue: a database sample is a few blocking queries
 * (PostgreSQL: one network round trip each, up to statement_timeout when the
 * server holds locks), which must never stall an event loop or delay the
 * coordinator's results and 1 s samples. The watcher owns its connection;
 * the coordinator only ever takes the ring's mutex for a memcpy-sized
 * moment, once a second. Samples are kept raw in the ring and turned into
 * named values when they are written, on the coordinator.
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "h2replay/error.h"
#include "h2replay/units.h"
#include "rp_dbwatch.h"

#define DEFAULT_INTERVAL_NS 1000000000LL

/* ---- pairing --db values with targets ---- */

static int dsn_scheme_ok(const char *s)
{
    return strncmp(s, "sqlite:", 7) == 0 || strncmp(s, "postgresql://", 13) == 0 ||
           strncmp(s, "postgres://", 11) == 0 || strncmp(s, "pg:", 3) == 0;
}

/*
 * Splits "[NAME=]DSN". A value that starts with a DSN scheme has no name
 * (so "pg:host=/run dbname=x" keeps its '='); otherwise NAME is what comes
 * before the first '=' and must be [A-Za-z0-9_.-]+ like a target name.
 * name gets "" when there is none. Returns the DSN or NULL when malformed.
 */
static const char *split_db(const char *spec, char *name, size_t namelen)
{
    name[0] = '\0';
    if (dsn_scheme_ok(spec))
        return spec;
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || (size_t)(eq - spec) >= namelen)
        return NULL;
    for (const char *p = spec; p < eq; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return NULL;
    }
    memcpy(name, spec, (size_t)(eq - spec));
    name[eq - spec] = '\0';
    return dsn_scheme_ok(eq + 1) ? eq + 1 : NULL;
}

const char *rp_dbwatch_dsn(const struct h2r_replay_opts *o, const char *target)
{
    const char *unnamed = NULL;
    for (size_t i = 0; i < o->n_dbs; i++) {
        char name[RP_URL_MAX_NAME];
        const char *dsn = split_db(o->dbs[i], name, sizeof(name));
        if (!dsn)
            continue;
        if (!name[0])
            unnamed = dsn;
        else if (strcmp(name, target) == 0)
            return dsn;
    }
    return unnamed;
}

int rp_dbwatch_check(const struct h2r_replay_opts *o, const struct rp_target *targets, size_t n,
                     char *errbuf, size_t errlen)
{
    if (o->n_dbs == 0)
        return 0;
    if (!rp_dbwatch_available())
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "--db is not supported by this build (no database adapters)");
    if (o->db_interval_ns != 0 && o->db_interval_ns < RP_DBWATCH_MIN_INTERVAL_NS)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "--db-interval must be at least 10ms");
    int unnamed = 0;
    for (size_t i = 0; i < o->n_dbs; i++) {
        char name[RP_URL_MAX_NAME];
        const char *dsn = split_db(o->dbs[i], name, sizeof(name));
        if (!dsn)
            return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                              "--db '%s': expected [NAME=]DSN with a DSN sqlite:/path, "
                              "postgresql://user@127.0.0.1:PORT/DB or pg:KEY=VALUE...",
                              o->dbs[i]);
        if (!name[0]) {
            if (unnamed++)
                return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                                  "--db: two DSNs without a target name (pair them: --db "
                                  "NAME=DSN)");
            continue;
        }
        size_t t;
        for (t = 0; t < n && strcmp(targets[t].name, name) != 0; t++)
            ;
        if (t == n)
            return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                              "--db %s=...: no target is named '%s' (--target %s=URL)", name, name,
                              name);
        for (size_t j = 0; j < i; j++) {
            char other[RP_URL_MAX_NAME];
            if (split_db(o->dbs[j], other, sizeof(other)) && strcmp(other, name) == 0)
                return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                                  "--db: target '%s' has two databases", name);
        }
    }
    return 0;
}

/* ---- sample -> named values ---- */

size_t rp_dbwatch_values(const struct rp_db_sample *s, struct h2r_counter *out, char (*names)[96])
{
    static const char *const rows[RP_DB_KIND_COUNT] = {"rows.users", "rows.nodes",
                                                       "rows.pre_auth_keys", "rows.api_keys"};
    size_t n = 0;
#define PUT(nm, v)                                                                                 \
    do {                                                                                           \
        if ((v) >= 0 && n < RP_DBWATCH_MAX_VALUES) {                                               \
            out[n].name = (nm);                                                                    \
            out[n].value = (uint64_t)(v);                                                          \
            n++;                                                                                   \
        }                                                                                          \
    } while (0)
    for (int k = 0; k < RP_DB_KIND_COUNT; k++)
        PUT(rows[k], s->counts.n[k]);
    if (s->counts.blocked > 0)
        PUT("rows.blocked", (int64_t)s->counts.blocked);
    /* SQLite (the adapter leaves these -1 on PostgreSQL) */
    PUT("sqlite.wal_bytes", s->wal_bytes);
    PUT("sqlite.page_count", s->page_count);
    PUT("sqlite.page_size", s->page_size);
    PUT("sqlite.freelist_count", s->freelist_count);
    if (s->page_count >= 0 && s->page_size > 0)
        PUT("sqlite.db_bytes", s->page_count * s->page_size);
    /* PostgreSQL */
    PUT("pg.backends", s->backends);
    PUT("pg.active", s->active);
    PUT("pg.idle_in_xact", s->idle_in_xact);
    PUT("pg.waiting", s->waiting);
    PUT("pg.locks", s->locks);
    PUT("pg.lock_waits", s->locks_waiting);
    PUT("pg.xact_commit", s->xact_commit);
    PUT("pg.xact_rollback", s->xact_rollback);
    PUT("pg.deadlocks", s->deadlocks);
    PUT("pg.tup_inserted", s->tup_inserted);
    PUT("pg.tup_updated", s->tup_updated);
    PUT("pg.tup_deleted", s->tup_deleted);
    for (int i = 0; i < s->n_wait && i < RP_DB_MAX_WAIT; i++) {
        const struct rp_db_wait *wt = &s->wait[i];
        if (!wt->type[0])
            continue; /* on CPU: "active" minus "waiting" already says it */
        char *nm = names[i];
        snprintf(nm, 96, "pg.wait.%s.%s", wt->type, wt->event[0] ? wt->event : "-");
        PUT(nm, wt->count);
    }
    PUT("db.took_ns", s->took_ns);
#undef PUT
    return n;
}

/* ---- acknowledgements ---- */

/*
 * Writes the queued acknowledgements as ack records; those of section also go to keep
 * (a JSON array in db_verify.c's form) when keep is not NULL. Returns 0 or the writer's error.
 */
static int drain_acks(struct h2r_run_writer *wr, uint32_t section, json_t *keep)
{
    struct rp_ack_item *items = NULL;
    size_t n = rp_ack_take(&items, NULL);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        struct h2r_run_ack a;
        rp_ack_to_run(&items[i], &a);
        rc = h2r_run_write_ack(wr, &a);
        if (keep && a.section == section)
            rp_ack_json_append(keep, &a); /* out of memory: verify sees one ack fewer */
    }
    free(items);
    return rc;
}

#ifdef H2R_HAVE_DB

/* ---- the watcher ---- */

struct queued {
    int64_t mono; /* CLOCK_MONOTONIC when the sample started */
    int ok;       /* 0: the sample failed (err says why) */
    struct rp_db_sample s;
    char err[200];
};

struct rp_dbwatch {
    struct rp_db *db;
    const char *engine; /* "sqlite" / "postgresql" (the run format's names) */
    int64_t interval;
    pthread_t tid;
    int running;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC: stop wakes the thread at once */
    int stop;
    struct queued *ring;
    size_t head, n; /* oldest at head */
    uint64_t dropped;
    uint64_t failed;
    int warned;

    json_t *acks;           /* this section's acknowledgements, for the verify */
    uint64_t acks_dropped0; /* rp_ack's lost count when the section started */
    json_t *before;         /* {"users": max id, ...} when the section started */
    uint64_t before_failed; /* kinds left out of before (their max id could not be read) */
    int verified;
    /* the verify record's examples (H2R_RUN_VERIFY_MAX_EXAMPLES per list, short JSON texts) */
    char ex[H2R_RUN_VERIFY_MAX_KINDS][2][H2R_RUN_VERIFY_MAX_EXAMPLES][200];
};

int rp_dbwatch_available(void)
{
    return 1;
}

static void take(struct rp_dbwatch *w)
{
    struct queued q;
    memset(&q, 0, sizeof(q));
    q.mono = h2r_now_mono_ns();
    q.ok = rp_db_sample(w->db, &q.s) == 0;
    if (!q.ok) {
        snprintf(q.err, sizeof(q.err), "%s", rp_db_errmsg(w->db));
        q.s.took_ns = h2r_now_mono_ns() - q.mono;
    }
    pthread_mutex_lock(&w->mu);
    if (w->n == RP_DBWATCH_QUEUE) { /* the coordinator fell far behind: keep the newest */
        w->head = (w->head + 1) % RP_DBWATCH_QUEUE;
        w->n--;
        w->dropped++;
    }
    w->ring[(w->head + w->n) % RP_DBWATCH_QUEUE] = q;
    w->n++;
    pthread_mutex_unlock(&w->mu);
}

static void to_timespec(int64_t ns, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ns / 1000000000LL);
    ts->tv_nsec = (long)(ns % 1000000000LL);
}

static void *watch_main(void *arg)
{
    struct rp_dbwatch *w = arg;
    take(w); /* before the load: the baseline */
    int64_t next = h2r_now_mono_ns() + w->interval;
    for (;;) {
        int64_t now = h2r_now_mono_ns();
        if (next <= now) /* a slow sample: skip ticks, keep the grid */
            next += ((now - next) / w->interval + 1) * w->interval;
        struct timespec ts;
        to_timespec(next, &ts);
        pthread_mutex_lock(&w->mu);
        while (!w->stop && h2r_now_mono_ns() < next) {
            if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
                break;
        }
        int stop = w->stop;
        pthread_mutex_unlock(&w->mu);
        take(w); /* the tick's sample, or the last one after the section */
        if (stop)
            break;
        next += w->interval;
    }
    return NULL;
}

/*
 * The highest row id per kind before the section's load: rows up to it were
 * there already (an earlier section, the launcher's API key, a previous run),
 * so the verify does not count them as "present but never acknowledged".
 * Headscale's ids only grow (SQLite AUTOINCREMENT, PostgreSQL sequences). One
 * MAX(id) per kind, not a listing: it must fit the watcher's short statement
 * timeout on a big table too. A kind whose baseline cannot be read is left
 * out (its rows then all count), counted in w->before_failed and reported on
 * stderr once unless quiet.
 */
static json_t *rows_before(struct rp_dbwatch *w, int quiet)
{
    json_t *o = json_object();
    for (int k = 0; o && k < RP_DB_KIND_COUNT; k++) {
        int64_t max = 0;
        if (rp_db_max_id(w->db, (enum rp_db_kind)k, &max) == 0) {
            json_object_set_new(o, rp_db_kind_name((enum rp_db_kind)k), json_integer(max));
            continue;
        }
        if (!w->before_failed++ && !quiet)
            fprintf(stderr,
                    "replay: warning: --db %s: cannot read the highest %s id before the "
                    "section (its rows all count as made by the section): %s\n",
                    w->db->dsn, rp_db_kind_name((enum rp_db_kind)k), rp_db_errmsg(w->db));
    }
    return o;
}

int rp_dbwatch_start(struct rp_dbwatch **out, const struct h2r_replay_opts *o, const char *name,
                     char *errbuf, size_t errlen)
{
    *out = NULL;
    const char *dsn = rp_dbwatch_dsn(o, name);
    if (!dsn)
        return 0;
    struct rp_dbwatch *w = calloc(1, sizeof(*w));
    if (!w)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    w->ring = calloc(RP_DBWATCH_QUEUE, sizeof(*w->ring));
    if (!w->ring) {
        free(w);
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    }
    w->interval = o->db_interval_ns > 0 ? o->db_interval_ns : DEFAULT_INTERVAL_NS;
    w->acks = json_array();
    w->acks_dropped0 = rp_ack_dropped();
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);

    struct rp_db_opts dbo;
    rp_db_opts_init(&dbo);
    /* a watcher must never hold the server up: short waits, it just skips a sample */
    dbo.busy_timeout_ms = 1000;
    dbo.statement_timeout_ms = 2000;
    dbo.connect_timeout_s = 5;
    char err[512];
    int rc = rp_db_open(dsn, &dbo, &w->db, err, sizeof(err));
    if (rc) {
        rp_dbwatch_free(w);
        return h2r_seterr(errbuf, errlen, rc == H2R_ERR_ARG ? H2R_ERR_ARG : H2R_ERR_IO,
                          "--db for target '%s': %s", name, err);
    }
    w->engine = strcmp(rp_db_engine(w->db), "sqlite") == 0 ? "sqlite" : "postgresql";
    w->before = rows_before(w, o->quiet);
    if (pthread_create(&w->tid, NULL, watch_main, w) != 0) {
        rp_dbwatch_free(w);
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "cannot start the --db watcher thread");
    }
    w->running = 1;
    *out = w;
    return 0;
}

/* A short JSON text of one example entity or row, for the verify record. */
static const char *example_text(const json_t *e, char *buf, size_t len)
{
    char *txt = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
    snprintf(buf, len, "%s", txt ? txt : "?");
    free(txt);
    return buf;
}

/* The end-of-section check: this section's acknowledgements against the database. */
static int verify_section(struct rp_dbwatch *w, struct h2r_run_writer *wr, uint32_t section,
                          int64_t t0, int quiet)
{
    struct h2r_run_verify v;
    memset(&v, 0, sizeof(v));
    v.section = section;
    v.db_kind = w->engine;
    v.acks = json_array_size(w->acks);
    v.acks_dropped = rp_ack_dropped() - w->acks_dropped0;
    v.baseline_failed = w->before_failed;
    unsigned kinds = (1u << RP_DB_USERS) | (1u << RP_DB_NODES) | (1u << RP_DB_PRE_AUTH_KEYS);
    size_t i;
    json_t *a;
    json_array_foreach(w->acks, i, a) {
        if (strcmp(json_string_value(json_object_get(a, "kind")), "api_key") == 0)
            kinds |= 1u << RP_DB_API_KEYS; /* only when the replay made API keys itself */
    }
    json_t *rep = NULL;
    char err[512];
    int64_t start = h2r_now_mono_ns();
    json_t *in = w->acks ? json_pack("{sO}", "acknowledged", w->acks) : NULL;
    if (in && w->before)
        json_object_set(in, "existing_before", w->before);
    int rc = in ? rp_db_verify(w->db, in, kinds, H2R_RUN_VERIFY_MAX_EXAMPLES, &rep) : H2R_ERR_NOMEM;
    json_decref(in);
    v.t_ns = start - t0;
    if (rc) {
        snprintf(err, sizeof(err), "%s", w->acks ? rp_db_errmsg(w->db) : "out of memory");
        v.error = err;
        if (!quiet)
            fprintf(stderr, "replay: warning: --db verify failed: %s\n", err);
    } else {
        v.ignored = (uint64_t)json_integer_value(json_object_get(rep, "ignored_entities"));
        const char *name;
        json_t *k;
        json_object_foreach(json_object_get(rep, "kinds"), name, k) {
            if (v.n_kinds == H2R_RUN_VERIFY_MAX_KINDS)
                break;
            struct h2r_run_verify_kind *vk = &v.kinds[v.n_kinds];
            vk->kind = name;
            vk->acknowledged = (uint64_t)json_integer_value(json_object_get(k, "acknowledged"));
            vk->present = (uint64_t)json_integer_value(json_object_get(k, "present"));
            vk->lost = (uint64_t)json_integer_value(json_object_get(k, "lost"));
            vk->unacknowledged =
                (uint64_t)json_integer_value(json_object_get(k, "unacknowledged"));
            vk->existing_before =
                (uint64_t)json_integer_value(json_object_get(k, "existing_before"));
            json_t *base = json_object_get(w->before, name);
            vk->before_max_id = json_is_integer(base) ? json_integer_value(base) : -1;
            size_t j;
            json_t *e;
            json_array_foreach(json_object_get(k, "lost_entities"), j, e) {
                size_t x = vk->n_lost_examples;
                if (x < H2R_RUN_VERIFY_MAX_EXAMPLES) {
                    vk->lost_examples[x] =
                        example_text(e, w->ex[v.n_kinds][0][x], sizeof(w->ex[0][0][0]));
                    vk->n_lost_examples++;
                }
            }
            json_array_foreach(json_object_get(k, "unacknowledged_rows"), j, e) {
                size_t x = vk->n_unacked_examples;
                if (x < H2R_RUN_VERIFY_MAX_EXAMPLES) {
                    vk->unacked_examples[x] =
                        example_text(e, w->ex[v.n_kinds][1][x], sizeof(w->ex[0][0][0]));
                    vk->n_unacked_examples++;
                }
            }
            if (vk->lost && !quiet)
                fprintf(stderr, "replay: %s: %llu acknowledged %s lost (not in the database)\n",
                        w->db->dsn, (unsigned long long)vk->lost, name);
            v.n_kinds++;
        }
    }
    rc = h2r_run_write_verify(wr, &v);
    json_decref(rep);
    return rc;
}

int rp_dbwatch_drain(struct rp_dbwatch *w, struct h2r_run_writer *wr, uint32_t section, int64_t t0,
                     int quiet)
{
    int arc = drain_acks(wr, section, w ? w->acks : NULL);
    if (!w)
        return arc;
    /* Move the queue out under the lock (a copy of at most the ring), write outside it. */
    struct queued *batch = NULL;
    size_t n = 0;
    uint64_t dropped;
    pthread_mutex_lock(&w->mu);
    if (w->n) {
        batch = malloc(w->n * sizeof(*batch));
        if (batch) {
            for (size_t i = 0; i < w->n; i++)
                batch[i] = w->ring[(w->head + i) % RP_DBWATCH_QUEUE];
            n = w->n;
            w->head = (w->head + w->n) % RP_DBWATCH_QUEUE;
            w->n = 0;
        }
    }
    dropped = w->dropped;
    pthread_mutex_unlock(&w->mu);

    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        struct queued *q = &batch[i];
        struct h2r_counter vals[RP_DBWATCH_MAX_VALUES + 3];
        char names[RP_DBWATCH_MAX_VALUES][96];
        size_t nv = 0;
        if (q->ok) {
            nv = rp_dbwatch_values(&q->s, vals, names);
        } else {
            w->failed++;
            vals[nv].name = "db.sample_failed";
            vals[nv++].value = 1;
            vals[nv].name = "db.took_ns";
            vals[nv++].value = q->s.took_ns > 0 ? (uint64_t)q->s.took_ns : 0;
            if (!w->warned && !quiet)
                fprintf(stderr, "replay: warning: --db sample failed (sampling goes on): %s\n",
                        q->err);
            w->warned = 1;
        }
        if (dropped) {
            vals[nv].name = "db.dropped";
            vals[nv++].value = dropped;
        }
        struct h2r_run_db_sample rec;
        memset(&rec, 0, sizeof(rec));
        rec.section = section;
        rec.t_ns = q->mono - t0;
        rec.db_kind = w->engine;
        rec.values = vals;
        rec.n_values = nv;
        rc = h2r_run_write_db_sample(wr, &rec);
    }
    free(batch);
    if (!rc && !arc && !w->running && !w->verified) { /* stopped: the section is over */
        w->verified = 1;
        rc = verify_section(w, wr, section, t0, quiet);
    }
    return rc ? rc : arc;
}

void rp_dbwatch_stop(struct rp_dbwatch *w)
{
    if (!w || !w->running)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->tid, NULL);
    w->running = 0;
}

void rp_dbwatch_free(struct rp_dbwatch *w)
{
    if (!w)
        return;
    rp_dbwatch_stop(w);
    rp_db_close(w->db);
    json_decref(w->acks);
    json_decref(w->before);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w->ring);
    free(w);
}

#else /* no database adapters in this build: --db is refused by rp_dbwatch_check */

struct rp_dbwatch {
    int unused;
};

int rp_dbwatch_available(void)
{
    return 0;
}

int rp_dbwatch_start(struct rp_dbwatch **out, const struct h2r_replay_opts *o, const char *name,
                     char *errbuf, size_t errlen)
{
    *out = NULL;
    if (rp_dbwatch_dsn(o, name))
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "--db is not supported by this build");
    return 0;
}

int rp_dbwatch_drain(struct rp_dbwatch *w, struct h2r_run_writer *wr, uint32_t section, int64_t t0,
                     int quiet)
{
    (void)w, (void)t0, (void)quiet;
    return drain_acks(wr, section, NULL);
}

void rp_dbwatch_stop(struct rp_dbwatch *w)
{
    (void)w;
}

void rp_dbwatch_free(struct rp_dbwatch *w)
{
    (void)w;
}

#endif
