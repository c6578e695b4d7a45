/*
 * PostgreSQL adapter (rp_db_pg_ops), on libpq.
 *
 * Snapshot = CREATE DATABASE snap TEMPLATE db; restore = clone the snapshot
 * into a staging database, drop db, rename the clone to db. PostgreSQL only
 * clones a template nobody is connected to, and a running Headscale keeps a
 * connection pool open, so both operations either find no other session on
 * the database (server stopped: the supported way, because Headscale also
 * caches state in memory that a reset would contradict) or, with
 * opts.terminate, end them. Either way new connections are blocked for the
 * duration (ALTER DATABASE ... ALLOW_CONNECTIONS false, then true again) and
 * our own read-only samplers (application_name h2replay-db, e.g. a running
 * `h2replay db watch`) are ended without asking: they reconnect. Cloning first and dropping last means a failed clone never leaves
 * the target missing. Snapshots carry a database comment ("h2replay
 * snapshot of ...") and only such databases are ever replaced or restored
 * from. Restore also refuses servers that are not on loopback or a unix
 * socket unless opts.disposable is set: the check uses the address libpq
 * actually connected to, so PGHOST, service files and DNS cannot fool it.
 *
 * Sampling runs one short READ ONLY transaction on a dedicated connection
 * (application_name h2replay-db) and excludes itself from every figure;
 * pg_stat_database counters still include that one transaction per sample.
 * Catalogue and DDL statements run on a separate connection to the
 * maintenance database, since a session cannot drop or clone the database
 * it is connected to.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "h2replay/error.h"

#define SNAP_COMMENT "h2replay snapshot of "

struct pg_impl {
    PGconn *conn;   /* sampling connection to the target database */
    char *conninfo; /* the DSN (URI or key=value) as given */
    char dbname[128];
    int local; /* connected over a unix socket or to a loopback address */
    char where[160];
};

static struct pg_impl *impl_of(struct rp_db *db)
{
    return db->impl;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* libpq messages end with a newline; keep messages on one line. */
static const char *pq_msg(PGconn *c)
{
    static __thread char buf[384];
    snprintf(buf, sizeof(buf), "%s", c ? PQerrorMessage(c) : "out of memory");
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = (p[1] ? ' ' : '\0');
    return buf;
}

/* Connects to the target's server; dbname NULL = the DSN's database. */
static int connect_db(struct rp_db *db, const char *dbname, PGconn **out)
{
    struct pg_impl *im = impl_of(db);
    char timeout[16], stmt[64];
    snprintf(timeout, sizeof(timeout), "%d", db->opts.connect_timeout_s);
    /* Our defaults first so the DSN can override them; an explicit dbname last wins. */
    const char *kw[] = {"application_name", "connect_timeout", "dbname", dbname ? "dbname" : NULL,
                        NULL};
    const char *val[] = {"h2replay-db", timeout, im->conninfo, dbname, NULL};
    PGconn *c = PQconnectdbParams(kw, val, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        int rc = rp_db_fail(db, H2R_ERR_IO, "postgres connect %s%s%s%s: %s", db->dsn,
                            dbname ? " (database " : "", dbname ? dbname : "", dbname ? ")" : "",
                            pq_msg(c));
        PQfinish(c);
        return rc;
    }
    snprintf(stmt, sizeof(stmt), "SET statement_timeout = %d", db->opts.statement_timeout_ms);
    PGresult *r = PQexec(c, stmt);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        int rc = rp_db_fail(db, H2R_ERR_IO, "postgres %s: %s", stmt, pq_msg(c));
        PQfinish(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Opens (or re-opens after a lost connection) the sampling connection. */
static int ensure_conn(struct rp_db *db)
{
    struct pg_impl *im = impl_of(db);
    if (im->conn && PQstatus(im->conn) == CONNECTION_OK)
        return 0;
    PQfinish(im->conn);
    im->conn = NULL;
    int rc = connect_db(db, NULL, &im->conn);
    if (rc)
        return rc;
    snprintf(im->dbname, sizeof(im->dbname), "%s", PQdb(im->conn));
    const char *host = PQhost(im->conn);
    const char *addr = PQhostaddr(im->conn);
    if (host && (host[0] == '/' || host[0] == '@'))
        im->local = 1;
    else if (addr && *addr)
        im->local = rp_db_host_is_local(addr);
    else
        im->local = rp_db_host_is_local(host);
    snprintf(im->where, sizeof(im->where), "%s%s%s port %s", host ? host : "?",
             addr && *addr ? " address " : "", addr && *addr ? addr : "", PQport(im->conn));
    return 0;
}

static int pg_open(struct rp_db *db, const char *target)
{
    struct pg_impl *im = calloc(1, sizeof(*im));
    if (!im)
        return rp_db_fail(db, H2R_ERR_NOMEM, "out of memory");
    db->impl = im;
    im->conninfo = strdup(target);
    if (!im->conninfo)
        return rp_db_fail(db, H2R_ERR_NOMEM, "out of memory");
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(target, &perr);
    if (!opts) {
        int rc = rp_db_fail(db, H2R_ERR_ARG, "postgres DSN %s: %s", db->dsn,
                            perr ? perr : "cannot parse");
        PQfreemem(perr);
        return rc;
    }
    PQconninfoFree(opts);
    return ensure_conn(db);
}

static void pg_close(struct rp_db *db)
{
    struct pg_impl *im = impl_of(db);
    if (!im)
        return;
    PQfinish(im->conn);
    free(im->conninfo);
    free(im);
    db->impl = NULL;
}

static int pg_default_snapshot(struct rp_db *db, char *out, size_t outlen)
{
    struct pg_impl *im = impl_of(db);
    /* NAMEDATALEN is 64: keep room for the suffix. */
    if ((size_t)snprintf(out, outlen, "%.58s_snap", im->dbname) >= outlen)
        return rp_db_fail(db, H2R_ERR_ARG, "snapshot name too long");
    return 0;
}

/* Runs a command; returns 0 or a failure naming what. */
static int exec_cmd(struct rp_db *db, PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    PQclear(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        return rp_db_fail(db, H2R_ERR_IO, "postgres %s: %s", sql, pq_msg(c));
    return 0;
}

/* Query with text params; returns the result (caller PQclear) or NULL with db->err set. */
static PGresult *query(struct rp_db *db, PGconn *c, const char *sql, int n, const char *const *p)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rp_db_fail(db, H2R_ERR_IO, "postgres query failed: %s (%.80s)", pq_msg(c), sql);
        PQclear(r);
        return NULL;
    }
    return r;
}

static int64_t get_i64(PGresult *r, int row, int col)
{
    if (PQntuples(r) <= row || PQgetisnull(r, row, col))
        return -1;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* 1 if relation exists (search_path), 0 if not, <0 on error. */
static int has_table(struct rp_db *db, PGconn *c, const char *table)
{
    char quoted[96];
    snprintf(quoted, sizeof(quoted), "\"%s\"", table);
    const char *p[] = {quoted};
    PGresult *r = query(db, c, "SELECT to_regclass($1) IS NOT NULL", 1, p);
    if (!r)
        return H2R_ERR_IO;
    int has = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return has;
}

static int has_column(struct rp_db *db, PGconn *c, const char *table, const char *col)
{
    char quoted[96];
    snprintf(quoted, sizeof(quoted), "\"%s\"", table);
    const char *p[] = {quoted, col};
    PGresult *r = query(db, c,
                        "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) "
                        "AND attname = $2 AND attnum > 0 AND NOT attisdropped",
                        2, p);
    if (!r)
        return H2R_ERR_IO;
    int has = PQntuples(r) > 0;
    PQclear(r);
    return has;
}

static int kind_table(struct rp_db *db, PGconn *c, enum rp_db_kind k, const char **table)
{
    for (const char *const *t = rp_db_kind_tables(k); *t; t++) {
        int rc = has_table(db, c, *t);
        if (rc < 0)
            return rc;
        if (rc) {
            *table = *t;
            return 1;
        }
    }
    return 0;
}

/*
 * Counts live rows per kind. Each count runs under a savepoint with a short
 * lock_timeout: the server may hold a table lock (a migration, an explicit
 * LOCK), and a sampler that queues behind it would both miss its interval
 * and block every later lock request on that table. Such a kind is left at
 * -1 and counted in out->blocked; the rest of the sample still goes out.
 */
static int counts_in_txn(struct rp_db *db, PGconn *c, struct rp_db_counts *out)
{
    int rc = exec_cmd(db, c, "SET LOCAL lock_timeout = '200ms'");
    if (rc)
        return rc;
    for (int k = 0; k < RP_DB_KIND_COUNT; k++) {
        const char *table;
        rc = kind_table(db, c, (enum rp_db_kind)k, &table);
        if (rc < 0)
            return rc;
        out->n[k] = -1;
        if (rc == 0)
            continue;
        int soft = has_column(db, c, table, "deleted_at");
        if (soft < 0)
            return soft;
        char sql[160];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\"%s", table,
                 soft ? " WHERE deleted_at IS NULL" : "");
        if ((rc = exec_cmd(db, c, "SAVEPOINT h2r_count")))
            return rc;
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            out->n[k] = get_i64(r, 0, 0);
            PQclear(r);
            if ((rc = exec_cmd(db, c, "RELEASE SAVEPOINT h2r_count")))
                return rc;
            continue;
        }
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        int lock_wait = state && strcmp(state, "55P03") == 0; /* lock_not_available */
        if (!lock_wait)
            rp_db_fail(db, H2R_ERR_IO, "postgres %s: %s", sql, pq_msg(c));
        PQclear(r);
        if (!lock_wait)
            return H2R_ERR_IO;
        out->blocked++;
        if ((rc = exec_cmd(db, c, "ROLLBACK TO SAVEPOINT h2r_count")))
            return rc;
    }
    return exec_cmd(db, c, "SET LOCAL lock_timeout = 0");
}

static int with_read_txn(struct rp_db *db, int (*fn)(struct rp_db *, PGconn *, void *), void *arg)
{
    int rc = ensure_conn(db);
    if (rc)
        return rc;
    PGconn *c = impl_of(db)->conn;
    rc = exec_cmd(db, c, "BEGIN READ ONLY");
    if (rc)
        return rc;
    rc = fn(db, c, arg);
    if (rc) {
        PGresult *r = PQexec(c, "ROLLBACK");
        PQclear(r);
        return rc;
    }
    return exec_cmd(db, c, "COMMIT");
}

static int counts_cb(struct rp_db *db, PGconn *c, void *arg)
{
    return counts_in_txn(db, c, arg);
}

static int pg_counts(struct rp_db *db, struct rp_db_counts *out)
{
    return with_read_txn(db, counts_cb, out);
}

static int sample_cb(struct rp_db *db, PGconn *c, void *arg)
{
    struct rp_db_sample *s = arg;
    PGresult *r = query(db, c,
                        "SELECT count(*), count(*) FILTER (WHERE state = 'active'), "
                        "count(*) FILTER (WHERE state LIKE 'idle in transaction%'), "
                        "count(*) FILTER (WHERE state = 'active' AND wait_event IS NOT NULL) "
                        "FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
                        0, NULL);
    if (!r)
        return H2R_ERR_IO;
    s->backends = get_i64(r, 0, 0);
    s->active = get_i64(r, 0, 1);
    s->idle_in_xact = get_i64(r, 0, 2);
    s->waiting = get_i64(r, 0, 3);
    PQclear(r);

    r = query(db, c,
              "SELECT coalesce(wait_event_type, ''), coalesce(wait_event, ''), count(*) "
              "FROM pg_stat_activity "
              "WHERE datname = current_database() AND pid <> pg_backend_pid() "
              "GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 16",
              0, NULL);
    if (!r)
        return H2R_ERR_IO;
    s->n_wait = 0;
    for (int i = 0; i < PQntuples(r) && s->n_wait < RP_DB_MAX_WAIT; i++) {
        struct rp_db_wait *w = &s->wait[s->n_wait++];
        snprintf(w->type, sizeof(w->type), "%s", PQgetvalue(r, i, 0));
        snprintf(w->event, sizeof(w->event), "%s", PQgetvalue(r, i, 1));
        w->count = get_i64(r, i, 2);
    }
    PQclear(r);

    r = query(db, c,
              "SELECT count(*), count(*) FILTER (WHERE NOT l.granted) FROM pg_locks l "
              "JOIN pg_stat_activity a ON a.pid = l.pid "
              "WHERE a.datname = current_database() AND l.pid <> pg_backend_pid()",
              0, NULL);
    if (!r)
        return H2R_ERR_IO;
    s->locks = get_i64(r, 0, 0);
    s->locks_waiting = get_i64(r, 0, 1);
    PQclear(r);

    r = query(db, c,
              "SELECT xact_commit, xact_rollback, deadlocks, tup_inserted, tup_updated, "
              "tup_deleted FROM pg_stat_database WHERE datname = current_database()",
              0, NULL);
    if (!r)
        return H2R_ERR_IO;
    s->xact_commit = get_i64(r, 0, 0);
    s->xact_rollback = get_i64(r, 0, 1);
    s->deadlocks = get_i64(r, 0, 2);
    s->tup_inserted = get_i64(r, 0, 3);
    s->tup_updated = get_i64(r, 0, 4);
    s->tup_deleted = get_i64(r, 0, 5);
    PQclear(r);

    return counts_in_txn(db, c, &s->counts);
}

static int pg_sample(struct rp_db *db, struct rp_db_sample *s)
{
    return with_read_txn(db, sample_cb, s);
}

struct list_arg {
    enum rp_db_kind kind;
    rp_db_row_fn fn;
    void *ud;
};

static int list_cb(struct rp_db *db, PGconn *c, void *arg)
{
    struct list_arg *la = arg;
    const char *table;
    int rc = kind_table(db, c, la->kind, &table);
    if (rc <= 0)
        return rc;
    int soft = has_column(db, c, table, "deleted_at");
    if (soft < 0)
        return soft;
    const char *cols[RP_DB_ROW_MAX];
    int ncols = 0;
    char sql[512];
    size_t off = (size_t)snprintf(sql, sizeof(sql), "SELECT id");
    for (const char *const *col = rp_db_identity_columns(la->kind); *col && ncols < RP_DB_ROW_MAX;
         col++) {
        int has = has_column(db, c, table, *col);
        if (has < 0)
            return has;
        if (!has)
            continue;
        cols[ncols++] = *col;
        off += (size_t)snprintf(sql + off, sizeof(sql) - off, ", \"%s\"::text", *col);
    }
    snprintf(sql + off, sizeof(sql) - off, " FROM \"%s\"%s ORDER BY id", table,
             soft ? " WHERE deleted_at IS NULL" : "");
    PGresult *r = query(db, c, sql, 0, NULL);
    if (!r)
        return H2R_ERR_IO;
    rc = 0;
    for (int i = 0; i < PQntuples(r) && !rc; i++) {
        struct rp_db_row row;
        row.id = get_i64(r, i, 0);
        row.n = ncols;
        for (int j = 0; j < ncols; j++) {
            row.name[j] = cols[j];
            row.value[j] = PQgetisnull(r, i, j + 1) ? NULL : PQgetvalue(r, i, j + 1);
        }
        rc = la->fn(&row, la->ud);
    }
    PQclear(r);
    return rc;
}

static int pg_list(struct rp_db *db, enum rp_db_kind kind, rp_db_row_fn fn, void *ud)
{
    struct list_arg la = {kind, fn, ud};
    return with_read_txn(db, list_cb, &la);
}

struct max_id_arg {
    enum rp_db_kind kind;
    int64_t max;
};

static int max_id_cb(struct rp_db *db, PGconn *c, void *arg)
{
    struct max_id_arg *ma = arg;
    const char *table;
    int rc = kind_table(db, c, ma->kind, &table);
    if (rc <= 0) {
        ma->max = 0; /* no table: nothing existed */
        return rc;
    }
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT COALESCE(MAX(id), 0) FROM \"%s\"", table);
    PGresult *r = query(db, c, sql, 0, NULL);
    if (!r)
        return H2R_ERR_IO;
    ma->max = get_i64(r, 0, 0);
    PQclear(r);
    if (ma->max < 0)
        return rp_db_fail(db, H2R_ERR_IO, "postgres %s: no value", sql);
    return 0;
}

static int pg_max_id(struct rp_db *db, enum rp_db_kind kind, int64_t *max)
{
    struct max_id_arg ma = {kind, 0};
    int rc = with_read_txn(db, max_id_cb, &ma);
    if (!rc)
        *max = ma.max;
    return rc;
}

/* ---- snapshot / restore (on a maintenance connection) */

static int check_name(struct rp_db *db, const char *name, const char *what)
{
    size_t n = strlen(name);
    if (n == 0 || n > 63)
        return rp_db_fail(db, H2R_ERR_ARG, "%s '%s' must be 1..63 bytes", what, name);
    if (strcmp(name, impl_of(db)->dbname) == 0)
        return rp_db_fail(db, H2R_ERR_ARG, "%s '%s' is the target database itself", what, name);
    return 0;
}

/* Connects to the maintenance database (falls back to template1 when "postgres" is absent). */
static int maint_connect(struct rp_db *db, PGconn **out)
{
    int rc = connect_db(db, db->opts.maintenance_db, out);
    if (rc && strcmp(db->opts.maintenance_db, "postgres") == 0)
        rc = connect_db(db, "template1", out);
    return rc;
}

/* Runs fmt with up to three identifiers (NULL = unused), each escaped by libpq. */
static int ddl3(struct rp_db *db, PGconn *c, const char *fmt, const char *a, const char *b,
                const char *d)
{
    const char *in[3] = {a, b, d};
    char *q[3] = {NULL, NULL, NULL};
    int rc = 0;
    for (int i = 0; i < 3; i++) {
        if (in[i] && !(q[i] = PQescapeIdentifier(c, in[i], strlen(in[i])))) {
            rc = rp_db_fail(db, H2R_ERR_NOMEM, "identifier escaping failed: %s", pq_msg(c));
            goto out;
        }
    }
    char sql[768];
    snprintf(sql, sizeof(sql), fmt, q[0] ? q[0] : "", q[1] ? q[1] : "", q[2] ? q[2] : "");
    rc = exec_cmd(db, c, sql);
out:
    for (int i = 0; i < 3; i++)
        PQfreemem(q[i]);
    return rc;
}

static int ddl(struct rp_db *db, PGconn *c, const char *fmt, const char *a, const char *b)
{
    return ddl3(db, c, fmt, a, b, NULL);
}

/* Database facts: 1 exists (comment/owner copied out), 0 missing, <0 error. */
static int db_info(struct rp_db *db, PGconn *c, const char *name, char *comment, size_t clen,
                   char *owner, size_t olen)
{
    const char *p[] = {name};
    PGresult *r = query(db, c,
                        "SELECT coalesce(shobj_description(oid, 'pg_database'), ''), "
                        "pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1",
                        1, p);
    if (!r)
        return H2R_ERR_IO;
    int exists = PQntuples(r) == 1;
    if (exists) {
        if (comment)
            snprintf(comment, clen, "%s", PQgetvalue(r, 0, 0));
        if (owner)
            snprintf(owner, olen, "%s", PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    return exists;
}

#define OUR_APP "h2replay-db"

/* Sessions on name other than ours: foreign ones, or (ours_too) every one but this session. */
static int64_t sessions_on(struct rp_db *db, PGconn *c, const char *name, int ours_too)
{
    const char *p[] = {name, ours_too ? "" : OUR_APP};
    PGresult *r = query(db, c,
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                        "AND pid <> pg_backend_pid() "
                        "AND ($2 = '' OR application_name IS DISTINCT FROM $2)",
                        2, p);
    if (!r)
        return -1;
    int64_t n = get_i64(r, 0, 0);
    PQclear(r);
    return n;
}

/*
 * Makes sure nobody else is connected to name. Foreign sessions (a running
 * Headscale, psql) make it refuse unless opts.terminate; other h2replay-db
 * sessions (read-only samplers such as `h2replay db watch`) are always
 * ended, they reconnect by themselves. New connections are blocked first
 * (*blocked=1, ALLOW_CONNECTIONS false) so nobody slips in before the copy.
 */
static int clear_sessions(struct rp_db *db, PGconn *c, const char *name, const char *op,
                          int *blocked)
{
    int64_t n = sessions_on(db, c, name, 0);
    if (n < 0)
        return H2R_ERR_IO;
    if (n > 0 && !db->opts.terminate)
        return rp_db_fail(db, H2R_ERR_ARG,
                          "%lld other session(s) are connected to database %s (is the server "
                          "still running?): stop it before a %s, or pass --terminate",
                          (long long)n, name, op);
    if (!*blocked) {
        int rc = ddl(db, c, "ALTER DATABASE %s ALLOW_CONNECTIONS false", name, NULL);
        if (rc)
            return rc;
        *blocked = 1;
    }
    const char *p[] = {name};
    for (int waited = 0;; waited += 50) {
        n = sessions_on(db, c, name, 1);
        if (n == 0)
            return 0;
        if (n < 0)
            return H2R_ERR_IO;
        if (waited >= 5000)
            return rp_db_fail(db, H2R_ERR_IO, "%lld session(s) on %s survived termination for 5 s",
                              (long long)n, name);
        PGresult *r = query(db, c,
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1 AND pid <> pg_backend_pid()",
                            1, p);
        if (!r)
            return H2R_ERR_IO;
        PQclear(r);
        sleep_ms(waited ? 50 : 10);
    }
}

static void unblock(struct rp_db *db, PGconn *c, const char *name, int *blocked)
{
    if (!*blocked)
        return;
    char keep[sizeof(db->err)];
    snprintf(keep, sizeof(keep), "%s", db->err); /* do not lose the real error */
    if (ddl(db, c, "ALTER DATABASE %s ALLOW_CONNECTIONS true", name, NULL) == 0)
        *blocked = 0;
    else
        fprintf(stderr, "h2replay db: WARNING: database %s still refuses connections: %s\n", name,
                db->err);
    snprintf(db->err, sizeof(db->err), "%s", keep);
}

/* Marks snap as ours: COMMENT ON DATABASE snap IS 'h2replay snapshot of DB at TIME'. */
static int comment_snapshot(struct rp_db *db, PGconn *c, const char *snap)
{
    char text[256], ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(text, sizeof(text), SNAP_COMMENT "%s at %s", impl_of(db)->dbname, ts);
    char *lit = PQescapeLiteral(c, text, strlen(text));
    char *id = PQescapeIdentifier(c, snap, strlen(snap));
    int rc;
    if (!lit || !id) {
        rc = rp_db_fail(db, H2R_ERR_NOMEM, "escaping failed: %s", pq_msg(c));
    } else {
        char sql[768];
        snprintf(sql, sizeof(sql), "COMMENT ON DATABASE %s IS %s", id, lit);
        rc = exec_cmd(db, c, sql);
    }
    PQfreemem(lit);
    PQfreemem(id);
    return rc;
}

static int pg_snapshot(struct rp_db *db, const char *snap)
{
    struct pg_impl *im = impl_of(db);
    int rc = check_name(db, snap, "snapshot");
    if (rc)
        return rc;
    /* Our own sampling session would count as "another user" of the template. */
    PQfinish(im->conn);
    im->conn = NULL;
    PGconn *m = NULL;
    int blocked = 0;
    rc = maint_connect(db, &m);
    if (rc)
        goto out;
    char comment[256];
    int exists = db_info(db, m, snap, comment, sizeof(comment), NULL, 0);
    if (exists < 0) {
        rc = exists;
        goto out;
    }
    if (exists) {
        if (strncmp(comment, SNAP_COMMENT, strlen(SNAP_COMMENT)) != 0) {
            rc = rp_db_fail(db, H2R_ERR_ARG,
                            "database %s exists and is not an h2replay snapshot; refusing to "
                            "replace it",
                            snap);
            goto out;
        }
        if (!db->opts.overwrite) {
            rc = rp_db_fail(db, H2R_ERR_ARG, "snapshot %s exists (use --overwrite to replace it)",
                            snap);
            goto out;
        }
        rc = ddl(db, m, "DROP DATABASE %s", snap, NULL);
        if (rc)
            goto out;
    }
    rc = clear_sessions(db, m, im->dbname, "snapshot", &blocked);
    if (rc)
        goto out;
    rc = ddl(db, m, "CREATE DATABASE %s TEMPLATE %s", snap, im->dbname);
    if (rc)
        goto out;
    rc = comment_snapshot(db, m, snap);
out:
    if (m)
        unblock(db, m, im->dbname, &blocked);
    PQfinish(m);
    int rc2 = ensure_conn(db);
    return rc ? rc : rc2;
}

static int pg_restore(struct rp_db *db, const char *snap)
{
    struct pg_impl *im = impl_of(db);
    if (!im->local && !db->opts.disposable)
        return rp_db_fail(db, H2R_ERR_ARG,
                          "refusing to restore %s: the server (%s) is not on loopback or a unix "
                          "socket; pass --disposable if this database is yours to destroy",
                          db->dsn, im->where);
    int rc = check_name(db, snap, "snapshot");
    if (rc)
        return rc;
    PQfinish(im->conn);
    im->conn = NULL;
    PGconn *m = NULL;
    int blocked = 0, staged = 0;
    char staging[64];
    snprintf(staging, sizeof(staging), "h2r_restore_%ld", (long)getpid());
    rc = maint_connect(db, &m);
    if (rc)
        goto out;
    char comment[256], owner[128];
    int exists = db_info(db, m, snap, comment, sizeof(comment), NULL, 0);
    if (exists < 0) {
        rc = exists;
        goto out;
    }
    if (!exists || strncmp(comment, SNAP_COMMENT, strlen(SNAP_COMMENT)) != 0) {
        rc = rp_db_fail(db, H2R_ERR_ARG, "%s is not an h2replay snapshot (%s)", snap,
                        exists ? "no h2replay comment" : "no such database");
        goto out;
    }
    exists = db_info(db, m, im->dbname, NULL, 0, owner, sizeof(owner));
    if (exists < 0) {
        rc = exists;
        goto out;
    }
    if (!exists)
        owner[0] = '\0';
    if (db_info(db, m, staging, NULL, 0, NULL, 0) != 0) {
        rc = rp_db_fail(db, H2R_ERR_IO, "staging database %s already exists (drop it by hand)",
                        staging);
        goto out;
    }
    /* Refuse early (before the costly clone) when someone is connected and we may not end it. */
    if (exists && !db->opts.terminate) {
        int64_t n = sessions_on(db, m, im->dbname, 0);
        if (n != 0) {
            rc = n < 0 ? H2R_ERR_IO
                       : rp_db_fail(db, H2R_ERR_ARG,
                                    "%lld other session(s) are connected to database %s (is the "
                                    "server still running?): stop it before a restore, or pass "
                                    "--terminate",
                                    (long long)n, im->dbname);
            goto out;
        }
    }
    /* Clone first: a failure here leaves the target untouched. */
    if (owner[0])
        rc = ddl3(db, m, "CREATE DATABASE %s TEMPLATE %s OWNER %s", staging, snap, owner);
    else
        rc = ddl(db, m, "CREATE DATABASE %s TEMPLATE %s", staging, snap);
    if (rc)
        goto out;
    staged = 1;
    if (exists) {
        rc = clear_sessions(db, m, im->dbname, "restore", &blocked);
        if (rc)
            goto out;
        rc = ddl(db, m, "DROP DATABASE %s", im->dbname, NULL);
        if (rc)
            goto out;
        blocked = 0; /* the database is gone, nothing to unblock */
    }
    rc = ddl(db, m, "ALTER DATABASE %s RENAME TO %s", staging, im->dbname);
    if (rc) {
        snprintf(db->err + strlen(db->err), sizeof(db->err) - strlen(db->err),
                 " -- %s was dropped; its restored copy is database %s", im->dbname, staging);
        staged = 0; /* keep it: it is the only copy of the target now */
        goto out;
    }
    staged = 0;
out:
    if (m) {
        unblock(db, m, im->dbname, &blocked);
        if (staged) {
            char keep[sizeof(db->err)];
            snprintf(keep, sizeof(keep), "%s", db->err);
            ddl(db, m, "DROP DATABASE %s", staging, NULL);
            snprintf(db->err, sizeof(db->err), "%s", keep);
        }
    }
    PQfinish(m);
    int rc2 = ensure_conn(db);
    return rc ? rc : rc2;
}

const struct rp_db_ops rp_db_pg_ops = {
    .name = "postgres",
    .open = pg_open,
    .snapshot = pg_snapshot,
    .restore = pg_restore,
    .sample = pg_sample,
    .counts = pg_counts,
    .list = pg_list,
    .max_id = pg_max_id,
    .close = pg_close,
    .default_snapshot = pg_default_snapshot,
};
