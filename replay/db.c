/*
 * The engine-independent half of the database adapters: DSN dispatch,
 * defaults, the Headscale table/identity-column catalogue both engines
 * query, and the loopback test that guards destructive operations.
 *
 * The catalogue lives here (not in each adapter) so SQLite and PostgreSQL
 * always count and list exactly the same things, whichever Headscale
 * release created the schema (0.22 "machines" vs 0.23+ "nodes").
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "db.h"
#include "h2replay/error.h"
#include "h2replay/units.h"

void rp_db_opts_init(struct rp_db_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->busy_timeout_ms = 5000;
    o->statement_timeout_ms = 10000;
    o->connect_timeout_s = 10;
    o->maintenance_db = "postgres";
}

int rp_db_fail(struct rp_db *db, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(db->err, sizeof(db->err), fmt, ap);
    va_end(ap);
    return err;
}

static const char *const kind_names[RP_DB_KIND_COUNT] = {"users", "nodes", "pre_auth_keys",
                                                         "api_keys"};

const char *rp_db_kind_name(enum rp_db_kind k)
{
    return (unsigned)k < RP_DB_KIND_COUNT ? kind_names[k] : "?";
}

int rp_db_kind_parse(const char *s, enum rp_db_kind *k)
{
    static const struct {
        const char *name;
        enum rp_db_kind kind;
    } names[] = {
        {"users", RP_DB_USERS},           {"user", RP_DB_USERS},
        {"nodes", RP_DB_NODES},           {"node", RP_DB_NODES},
        {"machines", RP_DB_NODES},        {"machine", RP_DB_NODES},
        {"pre_auth_keys", RP_DB_PRE_AUTH_KEYS}, {"pre_auth_key", RP_DB_PRE_AUTH_KEYS},
        {"preauthkeys", RP_DB_PRE_AUTH_KEYS},   {"preauthkey", RP_DB_PRE_AUTH_KEYS},
        {"api_keys", RP_DB_API_KEYS},     {"api_key", RP_DB_API_KEYS},
        {"apikeys", RP_DB_API_KEYS},      {"apikey", RP_DB_API_KEYS},
    };
    if (!s)
        return H2R_ERR_ARG;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(s, names[i].name) == 0) {
            *k = names[i].kind;
            return 0;
        }
    }
    return H2R_ERR_ARG;
}

const char *const *rp_db_kind_tables(enum rp_db_kind k)
{
    static const char *const users[] = {"users", NULL};
    static const char *const nodes[] = {"nodes", "machines", NULL};
    static const char *const paks[] = {"pre_auth_keys", NULL};
    static const char *const apis[] = {"api_keys", NULL};
    static const char *const none[] = {NULL};
    switch (k) {
    case RP_DB_USERS:
        return users;
    case RP_DB_NODES:
        return nodes;
    case RP_DB_PRE_AUTH_KEYS:
        return paks;
    case RP_DB_API_KEYS:
        return apis;
    default:
        return none;
    }
}

const char *const *rp_db_identity_columns(enum rp_db_kind k)
{
    /* What a client can know about what it created (REST replies, RegisterRequest). */
    static const char *const users[] = {"name", NULL};
    static const char *const nodes[] = {"node_key", "machine_key", "hostname", "given_name", NULL};
    static const char *const paks[] = {"key", "prefix", NULL};
    static const char *const apis[] = {"prefix", NULL};
    static const char *const none[] = {NULL};
    switch (k) {
    case RP_DB_USERS:
        return users;
    case RP_DB_NODES:
        return nodes;
    case RP_DB_PRE_AUTH_KEYS:
        return paks;
    case RP_DB_API_KEYS:
        return apis;
    default:
        return none;
    }
}

int rp_db_host_is_local(const char *host)
{
    if (!host || !*host)
        return 0;
    if (host[0] == '/' || host[0] == '@')
        return 1;
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    char buf[64];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        static const unsigned char loop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        if (memcmp(a6.s6_addr, loop6, 16) == 0)
            return 1;
        /* ::ffff:127.x.y.z */
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return memcmp(a6.s6_addr, v4mapped, 12) == 0 && a6.s6_addr[12] == 127;
    }
    return 0;
}

/* Copies dsn into db->dsn with any URI password replaced by "***". */
static void remember_dsn(struct rp_db *db, const char *dsn)
{
    snprintf(db->dsn, sizeof(db->dsn), "%s", dsn);
    char *scheme = strstr(db->dsn, "://");
    if (!scheme)
        return;
    char *auth = scheme + 3;
    char *at = strchr(auth, '@');
    char *slash = strchr(auth, '/');
    if (!at || (slash && slash < at))
        return;
    char *colon = memchr(auth, ':', (size_t)(at - auth));
    if (!colon)
        return;
    char tail[sizeof(db->dsn)];
    snprintf(tail, sizeof(tail), "%s", at);
    snprintf(colon, sizeof(db->dsn) - (size_t)(colon - db->dsn), ":***%s", tail);
}

int rp_db_open(const char *dsn, const struct rp_db_opts *opts, struct rp_db **out, char *errbuf,
               size_t errlen)
{
    *out = NULL;
    if (!dsn || !*dsn)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "empty DSN");
    const struct rp_db_ops *ops;
    const char *target;
    if (strncmp(dsn, "sqlite:", 7) == 0) {
        ops = &rp_db_sqlite_ops;
        target = dsn + 7;
        /* sqlite:///abs/path -> /abs/path; sqlite://rel -> rel */
        if (strncmp(target, "//", 2) == 0)
            target += 2;
    } else if (strncmp(dsn, "postgresql://", 13) == 0 || strncmp(dsn, "postgres://", 11) == 0) {
        ops = &rp_db_pg_ops;
        target = dsn;
    } else if (strncmp(dsn, "pg:", 3) == 0) {
        ops = &rp_db_pg_ops;
        target = dsn + 3;
    } else {
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "'%s' is not a DSN: use sqlite:/path/db.sqlite, "
                          "postgresql://user@127.0.0.1:PORT/DB or pg:KEY=VALUE...",
                          dsn);
    }
    if (!*target)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "DSN '%s' names no database", dsn);

    struct rp_db *db = calloc(1, sizeof(*db));
    if (!db)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    db->ops = ops;
    if (opts)
        db->opts = *opts;
    else
        rp_db_opts_init(&db->opts);
    if (!db->opts.maintenance_db || !*db->opts.maintenance_db)
        db->opts.maintenance_db = "postgres";
    remember_dsn(db, dsn);
    int rc = ops->open(db, target);
    if (rc) {
        h2r_seterr(errbuf, errlen, rc, "%s", db->err[0] ? db->err : h2r_strerror(rc));
        ops->close(db);
        free(db);
        return rc;
    }
    *out = db;
    return 0;
}

void rp_db_close(struct rp_db *db)
{
    if (!db)
        return;
    db->ops->close(db);
    free(db);
}

int rp_db_default_snapshot(struct rp_db *db, char *out, size_t outlen)
{
    return db->ops->default_snapshot(db, out, outlen);
}

int rp_db_snapshot(struct rp_db *db, const char *snap)
{
    char def[1024];
    db->err[0] = '\0';
    if (!snap || !*snap) {
        int rc = db->ops->default_snapshot(db, def, sizeof(def));
        if (rc)
            return rc;
        snap = def;
    }
    return db->ops->snapshot(db, snap);
}

int rp_db_restore(struct rp_db *db, const char *snap)
{
    char def[1024];
    db->err[0] = '\0';
    if (!snap || !*snap) {
        int rc = db->ops->default_snapshot(db, def, sizeof(def));
        if (rc)
            return rc;
        snap = def;
    }
    return db->ops->restore(db, snap);
}

static void sample_reset(struct rp_db_sample *s)
{
    memset(s, 0, sizeof(*s));
    for (int k = 0; k < RP_DB_KIND_COUNT; k++)
        s->counts.n[k] = -1;
    s->wal_bytes = s->page_count = s->page_size = s->freelist_count = -1;
    s->backends = s->active = s->idle_in_xact = s->waiting = -1;
    s->locks = s->locks_waiting = -1;
    s->xact_commit = s->xact_rollback = s->deadlocks = -1;
    s->tup_inserted = s->tup_updated = s->tup_deleted = -1;
}

int rp_db_sample(struct rp_db *db, struct rp_db_sample *s)
{
    sample_reset(s);
    db->err[0] = '\0';
    s->wall_ns = h2r_now_wall_ns();
    int64_t t0 = h2r_now_mono_ns();
    int rc = db->ops->sample(db, s);
    s->took_ns = h2r_now_mono_ns() - t0;
    return rc;
}

int rp_db_counts(struct rp_db *db, struct rp_db_counts *c)
{
    for (int k = 0; k < RP_DB_KIND_COUNT; k++)
        c->n[k] = -1;
    c->blocked = 0;
    db->err[0] = '\0';
    return db->ops->counts(db, c);
}

int rp_db_list(struct rp_db *db, enum rp_db_kind kind, rp_db_row_fn fn, void *ud)
{
    if ((unsigned)kind >= RP_DB_KIND_COUNT)
        return rp_db_fail(db, H2R_ERR_ARG, "unknown entity kind %d", (int)kind);
    db->err[0] = '\0';
    return db->ops->list(db, kind, fn, ud);
}

int rp_db_max_id(struct rp_db *db, enum rp_db_kind kind, int64_t *max)
{
    if ((unsigned)kind >= RP_DB_KIND_COUNT)
        return rp_db_fail(db, H2R_ERR_ARG, "unknown entity kind %d", (int)kind);
    db->err[0] = '\0';
    return db->ops->max_id(db, kind, max);
}

const char *rp_db_engine(const struct rp_db *db)
{
    return db->ops->name;
}

const char *rp_db_errmsg(const struct rp_db *db)
{
    return db->err[0] ? db->err : "no error";
}
