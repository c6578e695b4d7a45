/*
 * replay --db: pairing --db values with targets, turning adapter samples into
 * the run file's named values, and a live watcher on a real SQLite file
 * whose rows grow while it samples (replay/rp_dbwatch.c).
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "db.h"
#include "h2replay/error.h"
#include "h2replay/run.h"
#include "h2replay/units.h"
#include "rp_dbwatch.h"
#include "rp_url.h"

static char tmpdir[256];

static int check_dbs(const char *const *dbs, size_t n_dbs, int64_t interval)
{
    struct rp_target t[2];
    char err[256];
    CHECK_EQ_INT(rp_target_parse("sqlite=http://127.0.0.1:1", &t[0], err, sizeof(err)), 0);
    CHECK_EQ_INT(rp_target_parse("pg=http://127.0.0.1:2", &t[1], err, sizeof(err)), 0);
    struct h2r_replay_opts o;
    h2r_replay_opts_init(&o);
    o.dbs = dbs;
    o.n_dbs = n_dbs;
    o.db_interval_ns = interval;
    err[0] = '\0';
    int rc = rp_dbwatch_check(&o, t, 2, err, sizeof(err));
    if (rc)
        CHECK(err[0] != '\0');
    return rc;
}

static void test_pairing(void)
{
    const char *ok[] = {"sqlite=sqlite:/tmp/a.sqlite", "pg=postgresql://postgres@127.0.0.1:5/hs"};
    CHECK_EQ_INT(check_dbs(ok, 2, 0), 0);
    const char *unnamed[] = {"pg:host=/tmp dbname=hs"}; /* its '=' is not a target name */
    CHECK_EQ_INT(check_dbs(unnamed, 1, 0), 0);
    const char *mixed[] = {"sqlite:/tmp/all.sqlite", "pg=pg:host=/tmp dbname=hs"};
    CHECK_EQ_INT(check_dbs(mixed, 2, 500000000), 0);
    const char *unknown[] = {"mysql=sqlite:/tmp/a"};
    CHECK_EQ_INT(check_dbs(unknown, 1, 0), H2R_ERR_ARG);
    const char *twice[] = {"pg=sqlite:/a", "pg=sqlite:/b"};
    CHECK_EQ_INT(check_dbs(twice, 2, 0), H2R_ERR_ARG);
    const char *two_unnamed[] = {"sqlite:/a", "sqlite:/b"};
    CHECK_EQ_INT(check_dbs(two_unnamed, 2, 0), H2R_ERR_ARG);
    const char *not_dsn[] = {"pg=mysql://x"};
    CHECK_EQ_INT(check_dbs(not_dsn, 1, 0), H2R_ERR_ARG);
    const char *no_eq[] = {"/tmp/a.sqlite"};
    CHECK_EQ_INT(check_dbs(no_eq, 1, 0), H2R_ERR_ARG);
    CHECK_EQ_INT(check_dbs(ok, 2, 5000000), H2R_ERR_ARG); /* 5 ms < 10 ms */

    struct h2r_replay_opts o;
    h2r_replay_opts_init(&o);
    o.dbs = mixed;
    o.n_dbs = 2;
    CHECK_EQ_STR(rp_dbwatch_dsn(&o, "pg"), "pg:host=/tmp dbname=hs");
    CHECK_EQ_STR(rp_dbwatch_dsn(&o, "sqlite"), "sqlite:/tmp/all.sqlite");
    CHECK_EQ_STR(rp_dbwatch_dsn(&o, "other"), "sqlite:/tmp/all.sqlite");
    o.n_dbs = 0;
    CHECK(rp_dbwatch_dsn(&o, "pg") == NULL);
}

static uint64_t value_of(const struct h2r_counter *v, size_t n, const char *name, int *found)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].name, name) == 0) {
            *found = 1;
            return v[i].value;
        }
    }
    *found = 0;
    return 0;
}

static void test_values(void)
{
    struct rp_db_sample s;
    memset(&s, 0xff, sizeof(s)); /* every figure -1 */
    s.n_wait = 0;
    s.counts.blocked = 0;
    s.counts.n[RP_DB_USERS] = 10;
    s.counts.n[RP_DB_PRE_AUTH_KEYS] = 10;
    s.counts.n[RP_DB_NODES] = 0;
    s.wal_bytes = 420152;
    s.page_count = 30;
    s.page_size = 4096;
    s.freelist_count = 0;
    s.took_ns = 400000;
    struct h2r_counter v[RP_DBWATCH_MAX_VALUES];
    char names[RP_DBWATCH_MAX_VALUES][96];
    size_t n = rp_dbwatch_values(&s, v, names);
    int f;
    CHECK_EQ_INT(value_of(v, n, "rows.users", &f), 10);
    CHECK(f);
    CHECK_EQ_INT(value_of(v, n, "rows.nodes", &f), 0);
    CHECK(f);
    value_of(v, n, "rows.api_keys", &f); /* -1: no such table -> not written */
    CHECK(!f);
    CHECK_EQ_INT(value_of(v, n, "sqlite.wal_bytes", &f), 420152);
    CHECK_EQ_INT(value_of(v, n, "sqlite.db_bytes", &f), 30 * 4096);
    value_of(v, n, "pg.lock_waits", &f);
    CHECK(!f);
    CHECK_EQ_INT(value_of(v, n, "db.took_ns", &f), 400000);

    memset(&s, 0xff, sizeof(s));
    s.counts.blocked = 1;
    s.locks_waiting = 2;
    s.xact_rollback = 7;
    s.deadlocks = 0;
    s.n_wait = 2;
    snprintf(s.wait[0].type, sizeof(s.wait[0].type), "%s", "");
    s.wait[0].count = 3;
    snprintf(s.wait[1].type, sizeof(s.wait[1].type), "%s", "Lock");
    snprintf(s.wait[1].event, sizeof(s.wait[1].event), "%s", "transactionid");
    s.wait[1].count = 2;
    n = rp_dbwatch_values(&s, v, names);
    CHECK_EQ_INT(value_of(v, n, "pg.lock_waits", &f), 2);
    CHECK_EQ_INT(value_of(v, n, "pg.xact_rollback", &f), 7);
    CHECK_EQ_INT(value_of(v, n, "pg.deadlocks", &f), 0);
    CHECK(f);
    CHECK_EQ_INT(value_of(v, n, "rows.blocked", &f), 1);
    CHECK_EQ_INT(value_of(v, n, "pg.wait.Lock.transactionid", &f), 2);
    CHECK(f);
    value_of(v, n, "sqlite.wal_bytes", &f);
    CHECK(!f);
}

static void exec_ok(sqlite3 *c, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "sql failed: %s: %s\n", sql, msg ? msg : "?");
    CHECK(rc == SQLITE_OK);
    sqlite3_free(msg);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A real watcher on a WAL-mode file that grows while it samples every 20 ms. */
static void test_live_sqlite(void)
{
    char path[320], dsn[340], run[320];
    snprintf(path, sizeof(path), "%s/hs.sqlite", tmpdir);
    snprintf(dsn, sizeof(dsn), "sqlite:%s", path);
    snprintf(run, sizeof(run), "%s/watch.h2rr", tmpdir);
    sqlite3 *c = NULL;
    CHECK(sqlite3_open(path, &c) == SQLITE_OK);
    exec_ok(c, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
               "CREATE TABLE users(id integer PRIMARY KEY, name text, deleted_at datetime);"
               "CREATE TABLE nodes(id integer PRIMARY KEY, node_key text, deleted_at datetime);");

    const char *dbs[] = {dsn};
    struct h2r_replay_opts o;
    h2r_replay_opts_init(&o);
    o.dbs = dbs;
    o.n_dbs = 1;
    o.db_interval_ns = 20000000;
    char err[512] = "";
    struct rp_dbwatch *w = NULL;
    int64_t t0 = h2r_now_mono_ns() + 50000000; /* the section's origin lies ahead, as in replay */
    CHECK_EQ_INT(rp_dbwatch_start(&w, &o, "any", err, sizeof(err)), 0);
    CHECK(w != NULL);

    struct h2r_run_meta meta;
    memset(&meta, 0, sizeof(meta));
    meta.tool_version = "test";
    meta.trace_path = "none";
    meta.trace_sha256 = "";
    meta.host = "test";
    meta.command = "";
    meta.settings = "";
    meta.shard_count = 1;
    struct h2r_run_writer *wr = NULL;
    CHECK_EQ_INT(h2r_run_writer_open(&wr, run, &meta, err, sizeof(err)), 0);
    for (int i = 0; i < 10; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "INSERT INTO users(name) VALUES ('u%d');", i);
        exec_ok(c, sql);
        sleep_ms(20);
        if (i == 5)
            CHECK_EQ_INT(rp_dbwatch_drain(w, wr, 0, t0, 1), 0); /* mid-section drain */
    }
    rp_dbwatch_stop(w);
    CHECK_EQ_INT(rp_dbwatch_drain(w, wr, 0, t0, 1), 0);
    CHECK_EQ_INT(rp_dbwatch_drain(w, wr, 0, t0, 1), 0); /* nothing left: a no-op */
    rp_dbwatch_free(w);
    CHECK_EQ_INT(h2r_run_writer_close(wr), 0);
    sqlite3_close(c);

    struct h2r_run_reader *rd = NULL;
    CHECK_EQ_INT(h2r_run_reader_open(&rd, run, err, sizeof(err)), 0);
    if (!rd)
        return;
    struct h2r_run_record rec;
    int n = 0, rc, first_negative = 0, kinds_ok = 1;
    int64_t last_t = INT64_MIN, first_users = -1, last_users = -1, max_wal = 0;
    int ordered = 1;
    while ((rc = h2r_run_reader_next(rd, &rec)) == 1) {
        if (rec.kind != H2R_RUN_REC_DB_SAMPLE)
            continue;
        if (n == 0)
            first_negative = rec.u.db.t_ns < 0;
        if (rec.u.db.t_ns < last_t)
            ordered = 0;
        last_t = rec.u.db.t_ns;
        if (strcmp(rec.u.db.db_kind, "sqlite") != 0)
            kinds_ok = 0;
        int f;
        int64_t users = (int64_t)value_of(rec.u.db.values, rec.u.db.n_values, "rows.users", &f);
        if (f) {
            if (first_users < 0)
                first_users = users;
            last_users = users;
        }
        int64_t wal = (int64_t)value_of(rec.u.db.values, rec.u.db.n_values, "sqlite.wal_bytes", &f);
        if (wal > max_wal)
            max_wal = wal;
        n++;
    }
    CHECK_EQ_INT(rc, 0);
    h2r_run_reader_free(rd);
    /* ~200 ms at 20 ms: about 10 ticks, plus the baseline and the last sample */
    CHECK(n >= 6);
    CHECK(first_negative);
    CHECK(ordered);
    CHECK(kinds_ok);
    CHECK(first_users >= 0 && first_users <= 2);
    CHECK_EQ_INT(last_users, 10);
    CHECK(max_wal > 0);
    printf("live sqlite: %d samples, users %lld -> %lld, wal max %lld bytes\n", n,
           (long long)first_users, (long long)last_users, (long long)max_wal);
}

static void test_open_failure(void)
{
    const char *dbs[] = {"sqlite:/nonexistent/h2r/db.sqlite"};
    struct h2r_replay_opts o;
    h2r_replay_opts_init(&o);
    o.dbs = dbs;
    o.n_dbs = 1;
    char err[512] = "";
    struct rp_dbwatch *w = (struct rp_dbwatch *)&o; /* must be reset to NULL */
    CHECK(rp_dbwatch_start(&w, &o, "x", err, sizeof(err)) < 0);
    CHECK(w == NULL);
    CHECK(strstr(err, "--db for target 'x'") != NULL);
    o.n_dbs = 0;
    CHECK_EQ_INT(rp_dbwatch_start(&w, &o, "x", err, sizeof(err)), 0); /* no --db: no watcher */
    CHECK(w == NULL);
    rp_dbwatch_free(NULL);
    CHECK_EQ_INT(rp_dbwatch_drain(NULL, NULL, 0, 0, 1), 0);
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/h2r-dbwatch.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_pairing();
    test_values();
    test_live_sqlite();
    test_open_failure();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary("test_rp_dbwatch");
}
