/*
 * PostgreSQL adapter against a real throwaway cluster (label e2e): run by
 * tests/e2e/pg_cluster.sh, which exports PG_DSN (a database we may destroy)
 * and PG_SOCKET_DIR/PG_PORT. Exits 77 (skip) without PG_DSN.
 */
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "db.h"
#include "h2replay/error.h"

/* Like CHECK_EQ_INT on an adapter call, printing the adapter's message when it fails. */
#define CHECK_DB(db, call, want)                                                                   \
    do {                                                                                           \
        int got_ = (call);                                                                         \
        CHECK_EQ_INT(got_, want);                                                                  \
        if (got_ != (want))                                                                        \
            fprintf(stderr, "    adapter: %s\n", rp_db_errmsg(db));                               \
    } while (0)

static const char *dsn;

static PGconn *side_conn(const char *dbname)
{
    const char *kw[] = {"dbname", dbname ? "dbname" : NULL, NULL};
    const char *val[] = {dsn, dbname, NULL};
    PGconn *c = PQconnectdbParams(kw, val, 1);
    if (PQstatus(c) != CONNECTION_OK)
        fprintf(stderr, "side connection: %s", PQerrorMessage(c));
    CHECK(PQstatus(c) == CONNECTION_OK);
    return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fprintf(stderr, "sql failed: %s: %s", sql, PQerrorMessage(c));
    CHECK(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
    PQclear(r);
}

static const char *schema =
    "CREATE TABLE users(id bigserial PRIMARY KEY, name text, display_name text, email text,"
    "  provider_identifier text, provider text, profile_pic_url text, created_at timestamptz,"
    "  updated_at timestamptz, deleted_at timestamptz);"
    "CREATE TABLE pre_auth_keys(id bigserial PRIMARY KEY, key text, prefix text, hash bytea,"
    "  user_id bigint REFERENCES users(id) ON DELETE SET NULL, reusable boolean,"
    "  ephemeral boolean DEFAULT false, used boolean DEFAULT false, tags text,"
    "  expiration timestamptz, created_at timestamptz);"
    "CREATE TABLE api_keys(id bigserial PRIMARY KEY, prefix text, hash bytea,"
    "  expiration timestamptz, last_seen timestamptz, created_at timestamptz);"
    "CREATE TABLE nodes(id bigserial PRIMARY KEY, machine_key text, node_key text,"
    "  disco_key text, hostname text, given_name varchar(63), user_id bigint,"
    "  created_at timestamptz, updated_at timestamptz, deleted_at timestamptz);"
    "INSERT INTO users(name) VALUES ('alice'), ('bob'), ('carol');"
    "UPDATE users SET deleted_at = now() WHERE name = 'carol';"
    "INSERT INTO pre_auth_keys(prefix, user_id, reusable) VALUES ('AbCdEfGhIjKl', 1, true);"
    "INSERT INTO api_keys(prefix) VALUES ('p1'), ('p2');"
    "INSERT INTO nodes(node_key, hostname) VALUES ('nodekey:aa', 'n1');";

static void expect_counts(struct rp_db *db, int64_t users, int64_t nodes, int64_t paks,
                          int64_t apis)
{
    struct rp_db_counts c;
    CHECK_DB(db, rp_db_counts(db, &c), 0);
    CHECK_EQ_INT(c.n[RP_DB_USERS], users);
    CHECK_EQ_INT(c.n[RP_DB_NODES], nodes);
    CHECK_EQ_INT(c.n[RP_DB_PRE_AUTH_KEYS], paks);
    CHECK_EQ_INT(c.n[RP_DB_API_KEYS], apis);
}

static void test_sample(struct rp_db *db)
{
    struct rp_db_sample s;
    CHECK_DB(db, rp_db_sample(db, &s), 0);
    CHECK_EQ_INT(s.counts.n[RP_DB_USERS], 2);
    CHECK(s.xact_commit > 0);
    CHECK(s.xact_rollback >= 0);
    CHECK_EQ_INT(s.deadlocks, 0);
    CHECK(s.tup_inserted >= 7);
    CHECK_EQ_INT(s.wal_bytes, -1);
    CHECK_EQ_INT(s.page_count, -1);

    /* A session blocked on a lock shows up as waiting, with a Lock wait event. */
    PGconn *holder = side_conn(NULL);
    PGconn *waiter = side_conn(NULL);
    exec_ok(holder, "BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE");
    CHECK(PQsendQuery(waiter, "SELECT count(*) FROM users") == 1);
    int seen = 0;
    for (int i = 0; i < 50 && !seen; i++) {
        CHECK_DB(db, rp_db_sample(db, &s), 0);
        seen = s.locks_waiting >= 1 && s.waiting >= 1;
        if (!seen)
            usleep(20000);
    }
    CHECK(seen);
    /* The sampler did not queue behind the lock: users was skipped, the rest counted. */
    CHECK_EQ_INT(s.counts.n[RP_DB_USERS], -1);
    CHECK_EQ_INT(s.counts.blocked, 1);
    CHECK_EQ_INT(s.counts.n[RP_DB_API_KEYS], 2);
    CHECK(s.took_ns < 2000000000LL);
    CHECK(s.backends >= 2);
    CHECK(s.locks >= 2);
    int lock_event = 0;
    for (int i = 0; i < s.n_wait; i++)
        if (strcmp(s.wait[i].type, "Lock") == 0 && s.wait[i].count >= 1)
            lock_event = 1;
    CHECK(lock_event);
    exec_ok(holder, "COMMIT");
    PGresult *r;
    while ((r = PQgetResult(waiter)) != NULL)
        PQclear(r);
    PQfinish(holder);
    PQfinish(waiter);
}

/* The baseline replay --db takes: MAX(id), soft-deleted rows included; a lock makes it fail. */
static void test_max_id(struct rp_db *db)
{
    int64_t max = -1;
    CHECK_DB(db, rp_db_max_id(db, RP_DB_USERS, &max), 0);
    CHECK_EQ_INT(max, 3); /* carol is deleted but her id was taken */
    CHECK_DB(db, rp_db_max_id(db, RP_DB_NODES, &max), 0);
    CHECK_EQ_INT(max, 1);
    CHECK_DB(db, rp_db_max_id(db, RP_DB_PRE_AUTH_KEYS, &max), 0);
    CHECK_EQ_INT(max, 1);
    CHECK_DB(db, rp_db_max_id(db, RP_DB_API_KEYS, &max), 0);
    CHECK_EQ_INT(max, 2);
    CHECK_EQ_INT(rp_db_max_id(db, (enum rp_db_kind)-1, &max), H2R_ERR_ARG);

    /* Held behind a table lock, the statement times out: an error, *max untouched. */
    struct rp_db_opts o;
    rp_db_opts_init(&o);
    o.statement_timeout_ms = 300;
    struct rp_db *quick = NULL;
    char err[256];
    CHECK_EQ_INT(rp_db_open(dsn, &o, &quick, err, sizeof(err)), 0);
    if (!quick)
        return;
    PGconn *holder = side_conn(NULL);
    exec_ok(holder, "BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE");
    max = 42;
    CHECK(rp_db_max_id(quick, RP_DB_USERS, &max) < 0);
    CHECK_EQ_INT(max, 42);
    CHECK(strstr(rp_db_errmsg(quick), "statement timeout") != NULL);
    exec_ok(holder, "COMMIT");
    PQfinish(holder);
    CHECK_DB(quick, rp_db_max_id(quick, RP_DB_USERS, &max), 0); /* the connection recovered */
    CHECK_EQ_INT(max, 3);
    rp_db_close(quick);
}

static void test_snapshot_restore(struct rp_db *db)
{
    char def[128];
    CHECK_EQ_INT(rp_db_default_snapshot(db, def, sizeof(def)), 0);
    CHECK_EQ_STR(def, "h2r_test_snap");

    /* Another session on the database: refused, then --terminate ends it. */
    PGconn *other = side_conn(NULL);
    CHECK_DB(db, rp_db_snapshot(db, NULL), H2R_ERR_ARG);
    CHECK(strstr(rp_db_errmsg(db), "--terminate") != NULL);
    db->opts.terminate = 1;
    CHECK_DB(db, rp_db_snapshot(db, NULL), 0);
    db->opts.terminate = 0;
    PGresult *r = PQexec(other, "SELECT 1");
    CHECK(PQresultStatus(r) != PGRES_TUPLES_OK); /* it was terminated */
    PQclear(r);
    PQfinish(other);
    /* ...and connections are allowed again afterwards. */
    other = side_conn(NULL);
    PQfinish(other);

    /* The snapshot carries our comment and the data. */
    PGconn *snapc = side_conn("h2r_test_snap");
    r = PQexec(snapc, "SELECT count(*) FROM users WHERE deleted_at IS NULL");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "2") == 0);
    PQclear(r);
    r = PQexec(snapc, "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                      "WHERE datname = current_database()");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK &&
          strncmp(PQgetvalue(r, 0, 0), "h2replay snapshot of h2r_test at ", 33) == 0);
    PQclear(r);
    PQfinish(snapc);

    /* Another h2replay sampler (like `h2replay db watch`) does not block, and recovers. */
    struct rp_db *watcher = NULL;
    char err[256];
    CHECK_EQ_INT(rp_db_open(dsn, NULL, &watcher, err, sizeof(err)), 0);
    db->opts.overwrite = 1;
    CHECK_DB(db, rp_db_snapshot(db, NULL), 0);
    db->opts.overwrite = 0;
    if (watcher) {
        struct rp_db_sample ws;
        int wrc = rp_db_sample(watcher, &ws); /* its session was ended: this one may fail */
        if (wrc)
            wrc = rp_db_sample(watcher, &ws);
        CHECK_EQ_INT(wrc, 0);
        CHECK_EQ_INT(ws.counts.n[RP_DB_USERS], 2);
        rp_db_close(watcher);
    }

    CHECK_DB(db, rp_db_snapshot(db, NULL), H2R_ERR_ARG); /* exists */
    CHECK(strstr(rp_db_errmsg(db), "--overwrite") != NULL);
    db->opts.overwrite = 1;
    CHECK_DB(db, rp_db_snapshot(db, NULL), 0);
    CHECK_DB(db, rp_db_snapshot(db, "h2r_test"), H2R_ERR_ARG); /* the target itself */

    /* A database we did not make is never replaced or restored from. */
    PGconn *maint = side_conn("postgres");
    exec_ok(maint, "CREATE DATABASE not_ours");
    CHECK_DB(db, rp_db_snapshot(db, "not_ours"), H2R_ERR_ARG);
    CHECK(strstr(rp_db_errmsg(db), "not an h2replay snapshot") != NULL);
    CHECK_DB(db, rp_db_restore(db, "not_ours"), H2R_ERR_ARG);
    CHECK_DB(db, rp_db_restore(db, "no_such_db"), H2R_ERR_ARG);
    r = PQexec(maint, "SELECT 1 FROM pg_database WHERE datname = 'not_ours'");
    CHECK(PQntuples(r) == 1);
    PQclear(r);
    db->opts.overwrite = 0;

    /* Change things, then restore. */
    PGconn *w = side_conn(NULL);
    exec_ok(w, "INSERT INTO users(name) VALUES ('dave'), ('erin');"
               "DELETE FROM nodes; INSERT INTO api_keys(prefix) VALUES ('p3')");
    expect_counts(db, 4, 0, 1, 3);
    CHECK_DB(db, rp_db_restore(db, NULL), H2R_ERR_ARG); /* w is connected */
    CHECK(strstr(rp_db_errmsg(db), "still running") != NULL);
    expect_counts(db, 4, 0, 1, 3);
    PQfinish(w);
    CHECK_DB(db, rp_db_restore(db, NULL), 0);
    expect_counts(db, 2, 1, 1, 2);
    /* Restoring twice from one snapshot works (the snapshot is a template, not consumed). */
    w = side_conn(NULL);
    exec_ok(w, "INSERT INTO users(name) VALUES ('fay')");
    PQfinish(w);
    CHECK_DB(db, rp_db_restore(db, NULL), 0);
    expect_counts(db, 2, 1, 1, 2);

    /* With --terminate a connected session does not block the restore. */
    w = side_conn(NULL);
    exec_ok(w, "INSERT INTO users(name) VALUES ('gus')");
    db->opts.terminate = 1;
    CHECK_DB(db, rp_db_restore(db, NULL), 0);
    db->opts.terminate = 0;
    PQfinish(w);
    expect_counts(db, 2, 1, 1, 2);
    /* No staging database is left behind and the target accepts connections. */
    r = PQexec(maint, "SELECT count(*) FROM pg_database WHERE datname LIKE 'h2r_restore_%' OR "
                      "(datname = 'h2r_test' AND NOT datallowconn)");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "0") == 0);
    PQclear(r);
    exec_ok(maint, "DROP DATABASE not_ours");
    PQfinish(maint);
}

static void test_unix_socket_and_verify(void)
{
    const char *sock = getenv("PG_SOCKET_DIR"), *port = getenv("PG_PORT");
    if (!sock || !port) {
        fprintf(stderr, "PG_SOCKET_DIR/PG_PORT unset: unix socket case skipped\n");
        return;
    }
    char d[512];
    snprintf(d, sizeof(d), "pg:host=%s port=%s user=postgres dbname=h2r_test", sock, port);
    struct rp_db *db = NULL;
    char err[256];
    CHECK_EQ_INT(rp_db_open(d, NULL, &db, err, sizeof(err)), 0);
    if (!db) {
        fprintf(stderr, "open %s: %s\n", d, err);
        return;
    }
    expect_counts(db, 2, 1, 1, 2);
    CHECK_DB(db, rp_db_restore(db, NULL), 0); /* unix socket counts as local */
    json_error_t jerr;
    json_t *acks = json_loads("[{\"kind\":\"user\",\"name\":\"alice\"},"
                              "{\"kind\":\"user\",\"name\":\"zed\"},"
                              "{\"kind\":\"node\",\"node_key\":\"nodekey:aa\"},"
                              "{\"kind\":\"pre_auth_key\",\"key\":\"hskey-auth-AbCdEfGhIjKl-s\"}]",
                              0, &jerr);
    json_t *rep = NULL;
    CHECK_EQ_INT(rp_db_verify(db, acks, 0xf, 5, &rep), 0);
    if (rep) {
        CHECK_EQ_INT(json_integer_value(json_object_get(rep, "acknowledged_but_lost")), 1);
        /* bob + both api keys */
        CHECK_EQ_INT(json_integer_value(json_object_get(rep, "present_but_never_acknowledged")), 3);
        json_decref(rep);
    }
    json_decref(acks);
    rp_db_close(db);

    /* Headscale 0.22's "machines" (a schema of its own, first on the search path). */
    PGconn *c = side_conn(NULL);
    exec_ok(c, "DROP SCHEMA IF EXISTS h2r_old CASCADE; CREATE SCHEMA h2r_old;"
               "CREATE TABLE h2r_old.machines(id bigserial PRIMARY KEY, machine_key text,"
               " node_key text, hostname text, given_name text);"
               "INSERT INTO h2r_old.machines(node_key) VALUES ('nodekey:1'), ('nodekey:2'),"
               " ('nodekey:3'), ('nodekey:4')");
    snprintf(d, sizeof(d),
             "pg:host=%s port=%s user=postgres dbname=h2r_test options=-csearch_path=h2r_old",
             sock, port);
    CHECK_EQ_INT(rp_db_open(d, NULL, &db, err, sizeof(err)), 0);
    if (db) {
        int64_t max = -1;
        CHECK_DB(db, rp_db_max_id(db, RP_DB_NODES, &max), 0);
        CHECK_EQ_INT(max, 4);
        max = -1;
        CHECK_DB(db, rp_db_max_id(db, RP_DB_USERS, &max), 0); /* no table there: 0 */
        CHECK_EQ_INT(max, 0);
        rp_db_close(db);
    }
    exec_ok(c, "DROP SCHEMA h2r_old CASCADE");
    PQfinish(c);
}

int main(void)
{
    dsn = getenv("PG_DSN");
    if (!dsn || !*dsn) {
        fprintf(stderr, "test_db_pg: PG_DSN not set (run through tests/e2e/pg_cluster.sh): skip\n");
        return 77;
    }
    PGconn *setup = side_conn(NULL);
    if (PQstatus(setup) != CONNECTION_OK)
        return check_summary("test_db_pg");
    exec_ok(setup, schema);
    PQfinish(setup);

    struct rp_db *db = NULL;
    char err[256] = "";
    CHECK_EQ_INT(rp_db_open(dsn, NULL, &db, err, sizeof(err)), 0);
    if (!db) {
        fprintf(stderr, "open: %s\n", err);
        return check_summary("test_db_pg");
    }
    CHECK_EQ_STR(rp_db_engine(db), "postgres");
    expect_counts(db, 2, 1, 1, 2);
    test_max_id(db);
    test_sample(db);
    test_snapshot_restore(db);
    rp_db_close(db);
    test_unix_socket_and_verify();
    return check_summary("test_db_pg");
}
