/*
 * SQLite adapter and verify logic against real database files shaped like
 * Headscale 0.29's (hscontrol/db/schema.sql, the columns we read) and 0.22's
 * "machines" table. Also covers the engine-independent helpers in db.c.
 */
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "db.h"
#include "h2replay/error.h"

static char tmpdir[256];

static void path_in(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", tmpdir, name);
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

static const char *schema =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA wal_autocheckpoint=0;"
    "CREATE TABLE migrations(id text, PRIMARY KEY(id));"
    "CREATE TABLE users(id integer PRIMARY KEY AUTOINCREMENT, name text, display_name text,"
    "  email text, provider_identifier text, provider text, profile_pic_url text,"
    "  created_at datetime, updated_at datetime, deleted_at datetime);"
    "CREATE TABLE pre_auth_keys(id integer PRIMARY KEY AUTOINCREMENT, key text, prefix text,"
    "  hash blob, user_id integer, reusable numeric, ephemeral numeric DEFAULT false,"
    "  used numeric DEFAULT false, tags text, expiration datetime, created_at datetime);"
    "CREATE TABLE api_keys(id integer PRIMARY KEY AUTOINCREMENT, prefix text, hash blob,"
    "  expiration datetime, last_seen datetime, created_at datetime);"
    "CREATE TABLE nodes(id integer PRIMARY KEY AUTOINCREMENT, machine_key text, node_key text,"
    "  disco_key text, endpoints text, host_info text, ipv4 text, ipv6 text, hostname text,"
    "  given_name varchar(63), user_id integer, register_method text, tags text,"
    "  auth_key_id integer, last_seen datetime, expiry datetime, approved_routes text,"
    "  created_at datetime, updated_at datetime, deleted_at datetime);"
    "INSERT INTO users(name, created_at) VALUES ('alice', '2026-01-01'), ('bob', '2026-01-01'),"
    "  ('carol', '2026-01-01');"
    "UPDATE users SET deleted_at = '2026-01-02' WHERE name = 'carol';"
    "INSERT INTO pre_auth_keys(prefix, hash, user_id, reusable) VALUES"
    "  ('AbCdEfGhIjKl', x'00', 1, 1), ('mnopQRSTuv-_', x'00', 2, 0);"
    "INSERT INTO api_keys(prefix, hash) VALUES ('apiPREFIX123', x'00');"
    "INSERT INTO nodes(machine_key, node_key, hostname, given_name, user_id) VALUES"
    "  ('mkey:01', 'nodekey:aa', 'n1', 'n1', 1), ('mkey:02', 'nodekey:bb', 'n2', 'n2', 1);";

/* Creates db.sqlite; returns the writer connection (left open so the WAL stays). */
static sqlite3 *make_db(const char *path)
{
    sqlite3 *c = NULL;
    CHECK(sqlite3_open(path, &c) == SQLITE_OK);
    exec_ok(c, schema);
    return c;
}

static void test_helpers(void)
{
    CHECK(rp_db_host_is_local("127.0.0.1"));
    CHECK(rp_db_host_is_local("127.3.2.1"));
    CHECK(rp_db_host_is_local("::1"));
    CHECK(rp_db_host_is_local("[::1]"));
    CHECK(rp_db_host_is_local("::ffff:127.0.0.1"));
    CHECK(rp_db_host_is_local("localhost"));
    CHECK(rp_db_host_is_local("/var/run/postgresql"));
    CHECK(rp_db_host_is_local("@abstract"));
    CHECK(!rp_db_host_is_local("10.0.0.5"));
    CHECK(!rp_db_host_is_local("128.0.0.1"));
    CHECK(!rp_db_host_is_local("::2"));
    CHECK(!rp_db_host_is_local("db.example.com"));
    CHECK(!rp_db_host_is_local("localhost.example.com"));
    CHECK(!rp_db_host_is_local(""));
    CHECK(!rp_db_host_is_local(NULL));

    enum rp_db_kind k;
    CHECK(rp_db_kind_parse("user", &k) == 0 && k == RP_DB_USERS);
    CHECK(rp_db_kind_parse("machines", &k) == 0 && k == RP_DB_NODES);
    CHECK(rp_db_kind_parse("PreAuthKey", &k) == 0 && k == RP_DB_PRE_AUTH_KEYS);
    CHECK(rp_db_kind_parse("api_keys", &k) == 0 && k == RP_DB_API_KEYS);
    CHECK_EQ_INT(rp_db_kind_parse("routes", &k), H2R_ERR_ARG);
    CHECK_EQ_INT(rp_db_kind_parse(NULL, &k), H2R_ERR_ARG);
    CHECK_EQ_STR(rp_db_kind_name(RP_DB_PRE_AUTH_KEYS), "pre_auth_keys");
}

static void test_bad_dsn(void)
{
    struct rp_db *db = (struct rp_db *)1;
    char err[256];
    CHECK_EQ_INT(rp_db_open("mysql://x/y", NULL, &db, err, sizeof(err)), H2R_ERR_ARG);
    CHECK(db == NULL);
    CHECK(strstr(err, "not a DSN") != NULL);
    CHECK_EQ_INT(rp_db_open("sqlite:", NULL, &db, err, sizeof(err)), H2R_ERR_ARG);
    /* A missing file is an error and is not created. */
    char missing[300];
    path_in(missing, sizeof(missing), "missing.sqlite");
    char dsn[320];
    snprintf(dsn, sizeof(dsn), "sqlite:%s", missing);
    CHECK_EQ_INT(rp_db_open(dsn, NULL, &db, err, sizeof(err)), H2R_ERR_IO);
    CHECK(access(missing, F_OK) != 0);
    /* Passwords never reach messages. */
    CHECK_EQ_INT(rp_db_open("postgresql://u:s3cret@127.0.0.1:1/x", NULL, &db, err, sizeof(err)),
                 H2R_ERR_IO);
    CHECK(strstr(err, "s3cret") == NULL);
    CHECK(strstr(err, "u:***@127.0.0.1") != NULL);
}

static void test_counts_sample(const char *dsn, sqlite3 *writer)
{
    struct rp_db *db = NULL;
    char err[256] = "";
    CHECK_EQ_INT(rp_db_open(dsn, NULL, &db, err, sizeof(err)), 0);
    if (!db) {
        fprintf(stderr, "open: %s\n", err);
        return;
    }
    CHECK_EQ_STR(rp_db_engine(db), "sqlite");
    struct rp_db_counts c;
    CHECK_EQ_INT(rp_db_counts(db, &c), 0);
    CHECK_EQ_INT(c.n[RP_DB_USERS], 2); /* carol is soft-deleted */
    CHECK_EQ_INT(c.n[RP_DB_NODES], 2);
    CHECK_EQ_INT(c.n[RP_DB_PRE_AUTH_KEYS], 2);
    CHECK_EQ_INT(c.n[RP_DB_API_KEYS], 1);

    struct rp_db_sample s;
    CHECK_EQ_INT(rp_db_sample(db, &s), 0);
    CHECK_EQ_INT(s.counts.n[RP_DB_USERS], 2);
    CHECK(s.wal_bytes > 0); /* autocheckpoint is off and the writer is still open */
    CHECK(s.page_count > 1);
    CHECK_EQ_INT(s.page_size, 4096);
    CHECK(s.freelist_count >= 0);
    CHECK_EQ_INT(s.backends, -1);
    CHECK_EQ_INT(s.xact_commit, -1);
    CHECK_EQ_INT(s.n_wait, 0);
    CHECK(s.wall_ns > 0 && s.took_ns >= 0);

    /* The sampler sees new commits, and the WAL grows with them. */
    int64_t wal0 = s.wal_bytes;
    exec_ok(writer, "INSERT INTO users(name) VALUES ('dave')");
    CHECK_EQ_INT(rp_db_sample(db, &s), 0);
    CHECK_EQ_INT(s.counts.n[RP_DB_USERS], 3);
    CHECK(s.wal_bytes > wal0);
    exec_ok(writer, "DELETE FROM users WHERE name = 'dave'");

    /* A reader does not stop the writer: our transactions are short. */
    exec_ok(writer, "PRAGMA wal_checkpoint(TRUNCATE)");
    CHECK_EQ_INT(rp_db_sample(db, &s), 0);
    CHECK_EQ_INT(s.wal_bytes, 0);
    rp_db_close(db);
}

/*
 * Another process holding the database, like a running server (rw) or a
 * sampler (ro). SQLite must not be used across fork(), so the child re-runs
 * this binary in --hold mode; it prints one byte once the file is open.
 */
static pid_t spawn_holder(const char *mode, const char *path)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        close(p[0]);
        close(p[1]);
        execl("/proc/self/exe", "test_db_sqlite", "--hold", mode, path, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char b;
    ssize_t n = read(p[0], &b, 1);
    close(p[0]);
    CHECK(n == 1);
    return pid;
}

static void stop_holder(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

static int hold_main(const char *mode, const char *path)
{
    sqlite3 *c = NULL;
    int flags = strcmp(mode, "ro") == 0 ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (sqlite3_open_v2(path, &c, flags, NULL) != SQLITE_OK ||
        sqlite3_exec(c, "SELECT count(*) FROM users", NULL, NULL, NULL) != SQLITE_OK)
        return 1;
    if (write(STDOUT_FILENO, "x", 1) != 1)
        return 1;
    pause();
    return 0;
}

static void test_snapshot_restore(const char *path, const char *dsn, sqlite3 *writer)
{
    struct rp_db *db = NULL;
    char err[256] = "", snap[300], def[320];
    CHECK_EQ_INT(rp_db_open(dsn, NULL, &db, err, sizeof(err)), 0);
    if (!db)
        return;
    CHECK_EQ_INT(rp_db_default_snapshot(db, def, sizeof(def)), 0);
    snprintf(snap, sizeof(snap), "%s.snap", path);
    CHECK_EQ_STR(def, snap);

    CHECK_EQ_INT(rp_db_snapshot(db, NULL), 0);
    CHECK(access(snap, F_OK) == 0);
    /* The snapshot is a complete database of its own. */
    sqlite3 *sc = NULL;
    CHECK(sqlite3_open_v2(snap, &sc, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *st = NULL;
    CHECK(sqlite3_prepare_v2(sc, "SELECT count(*) FROM users", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int(st, 0), 3);
    sqlite3_finalize(st);
    sqlite3_close(sc);

    /* No silent overwrite; --overwrite replaces. */
    CHECK_EQ_INT(rp_db_snapshot(db, NULL), H2R_ERR_ARG);
    CHECK(strstr(rp_db_errmsg(db), "--overwrite") != NULL);
    CHECK_EQ_INT(rp_db_snapshot(db, path), H2R_ERR_ARG); /* never onto the database itself */
    db->opts.overwrite = 1;
    CHECK_EQ_INT(rp_db_snapshot(db, NULL), 0);

    /* Change the database, then restore. */
    exec_ok(writer, "INSERT INTO users(name) VALUES ('eve'), ('frank');"
                    "DELETE FROM nodes WHERE id = 1;"
                    "INSERT INTO api_keys(prefix) VALUES ('x')");
    struct rp_db_counts c;
    CHECK_EQ_INT(rp_db_counts(db, &c), 0);
    CHECK_EQ_INT(c.n[RP_DB_USERS], 4);
    CHECK_EQ_INT(c.n[RP_DB_NODES], 1);

    /* Another process holding the file for writing blocks a restore... */
    pid_t holder = spawn_holder("rw", path);
    CHECK_EQ_INT(rp_db_restore(db, NULL), H2R_ERR_ARG);
    CHECK(strstr(rp_db_errmsg(db), "stop the server") != NULL);
    CHECK_EQ_INT(rp_db_counts(db, &c), 0);
    CHECK_EQ_INT(c.n[RP_DB_USERS], 4); /* untouched */
    stop_holder(holder);

    /* ...and once it is gone the restore goes through (our own writer is in this process),
     * even while a read-only sampler in another process (like `h2replay db watch`) has it open. */
    holder = spawn_holder("ro", path);
    CHECK_EQ_INT(rp_db_restore(db, NULL), 0);
    stop_holder(holder);
    CHECK_EQ_INT(rp_db_counts(db, &c), 0);
    CHECK_EQ_INT(c.n[RP_DB_USERS], 2);
    CHECK_EQ_INT(c.n[RP_DB_NODES], 2);
    CHECK_EQ_INT(c.n[RP_DB_API_KEYS], 1);
    /* The writer still works on the restored file. */
    exec_ok(writer, "INSERT INTO users(name) VALUES ('gina')");
    CHECK_EQ_INT(rp_db_counts(db, &c), 0);
    CHECK_EQ_INT(c.n[RP_DB_USERS], 3);
    exec_ok(writer, "DELETE FROM users WHERE name = 'gina'");

    /* Missing snapshot. */
    char nosnap[320];
    path_in(nosnap, sizeof(nosnap), "nope.snap");
    CHECK_EQ_INT(rp_db_restore(db, nosnap), H2R_ERR_IO);
    rp_db_close(db);
}

static void test_verify(const char *dsn)
{
    struct rp_db *db = NULL;
    char err[256] = "";
    CHECK_EQ_INT(rp_db_open(dsn, NULL, &db, err, sizeof(err)), 0);
    if (!db)
        return;
    json_error_t jerr;
    json_t *acks = json_loads(
        "{\"acknowledged\": ["
        " {\"kind\": \"user\", \"name\": \"alice\"},"
        " {\"kind\": \"user\", \"name\": \"zed\"},"   /* lost */
        " {\"kind\": \"user\", \"name\": \"carol\"}," /* soft-deleted: lost */
        " {\"kind\": \"pre_auth_key\", \"key\": \"hskey-auth-AbCdEfGhIjKl-secretsecret\"},"
        " {\"kind\": \"node\", \"node_key\": \"nodekey:aa\"},"
        " {\"kind\": \"nodes\", \"id\": 2},"
        " {\"kind\": \"api_key\", \"prefix\": \"apiPREFIX123\"},"
        " {\"kind\": \"route\", \"id\": 1},"       /* unknown kind: ignored */
        " {\"kind\": \"user\"}"                    /* no identity: ignored */
        "]}",
        0, &jerr);
    CHECK(acks != NULL);
    json_t *rep = NULL;
    unsigned kinds = (1u << RP_DB_USERS) | (1u << RP_DB_NODES) | (1u << RP_DB_PRE_AUTH_KEYS);
    CHECK_EQ_INT(rp_db_verify(db, acks, kinds, 10, &rep), 0);
    if (rep) {
        CHECK_EQ_INT(json_integer_value(json_object_get(rep, "acknowledged_but_lost")), 2);
        /* bob (user) and the second pre-auth key were never acknowledged */
        CHECK_EQ_INT(json_integer_value(json_object_get(rep, "present_but_never_acknowledged")), 2);
        CHECK_EQ_INT(json_integer_value(json_object_get(rep, "ignored_entities")), 2);
        json_t *u = json_object_get(json_object_get(rep, "kinds"), "users");
        CHECK_EQ_INT(json_integer_value(json_object_get(u, "acknowledged")), 3);
        CHECK_EQ_INT(json_integer_value(json_object_get(u, "present")), 2);
        CHECK_EQ_INT(json_integer_value(json_object_get(u, "lost")), 2);
        json_t *row = json_array_get(json_object_get(u, "unacknowledged_rows"), 0);
        CHECK_EQ_STR(json_string_value(json_object_get(row, "name")), "bob");
        json_t *n = json_object_get(json_object_get(rep, "kinds"), "nodes");
        CHECK_EQ_INT(json_integer_value(json_object_get(n, "lost")), 0);
        CHECK_EQ_INT(json_integer_value(json_object_get(n, "unacknowledged")), 0);
        /* api_keys were not asked for: the acknowledged api key is not judged */
        CHECK(json_object_get(json_object_get(rep, "kinds"), "api_keys") == NULL);
        json_decref(rep);
    }
    json_decref(acks);
    /* A bare array works too; a scalar does not. */
    acks = json_loads("[{\"kind\":\"users\",\"id\":\"2\"}]", 0, &jerr);
    CHECK_EQ_INT(rp_db_verify(db, acks, 1u << RP_DB_USERS, 0, &rep), 0);
    if (rep) {
        CHECK_EQ_INT(json_integer_value(json_object_get(rep, "acknowledged_but_lost")), 0);
        CHECK_EQ_INT(json_integer_value(json_object_get(rep, "present_but_never_acknowledged")), 1);
        json_decref(rep);
    }
    json_decref(acks);
    acks = json_integer(3);
    CHECK_EQ_INT(rp_db_verify(db, acks, 1u, 0, &rep), H2R_ERR_FORMAT);
    json_decref(acks);

    /* The baseline replay --db takes: MAX(id), soft-deleted rows included (carol is 3). */
    int64_t max = -1;
    CHECK_EQ_INT(rp_db_max_id(db, RP_DB_USERS, &max), 0);
    CHECK_EQ_INT(max, 3);
    CHECK_EQ_INT(rp_db_max_id(db, RP_DB_NODES, &max), 0);
    CHECK_EQ_INT(max, 2);
    CHECK_EQ_INT(rp_db_max_id(db, RP_DB_PRE_AUTH_KEYS, &max), 0);
    CHECK_EQ_INT(max, 2);
    CHECK_EQ_INT(rp_db_max_id(db, RP_DB_API_KEYS, &max), 0);
    CHECK_EQ_INT(max, 1);
    max = 99;
    CHECK_EQ_INT(rp_db_max_id(db, RP_DB_KIND_COUNT, &max), H2R_ERR_ARG);
    CHECK_EQ_INT(max, 99);
    /* Rows up to the baseline satisfy acks but are neither present nor unacknowledged. */
    acks = json_loads("{\"acknowledged\": [{\"kind\": \"user\", \"name\": \"alice\"}],"
                      " \"existing_before\": {\"users\": 2}}",
                      0, &jerr);
    CHECK(acks != NULL);
    CHECK_EQ_INT(rp_db_verify(db, acks, 1u << RP_DB_USERS, 10, &rep), 0);
    if (rep) {
        json_t *u = json_object_get(json_object_get(rep, "kinds"), "users");
        CHECK_EQ_INT(json_integer_value(json_object_get(u, "lost")), 0);
        CHECK_EQ_INT(json_integer_value(json_object_get(u, "present")), 0);
        CHECK_EQ_INT(json_integer_value(json_object_get(u, "existing_before")), 2);
        CHECK_EQ_INT(json_integer_value(json_object_get(u, "unacknowledged")), 0);
        json_decref(rep);
    }
    json_decref(acks);
    rp_db_close(db);
}

/* Headscale 0.22 layout: "machines", no soft delete on users; empty schema: all -1. */
static void test_other_layouts(void)
{
    char path[300], dsn[320];
    path_in(path, sizeof(path), "old.sqlite");
    sqlite3 *c = NULL;
    CHECK(sqlite3_open(path, &c) == SQLITE_OK);
    exec_ok(c, "CREATE TABLE users(id integer PRIMARY KEY, name text);"
               "CREATE TABLE machines(id integer PRIMARY KEY, machine_key text, node_key text,"
               " hostname text, given_name text);"
               "INSERT INTO users(name) VALUES ('a');"
               "INSERT INTO machines(node_key) VALUES ('nodekey:1'), ('nodekey:2'), ('nodekey:3')");
    sqlite3_close(c);
    snprintf(dsn, sizeof(dsn), "sqlite://%s", path); /* sqlite:///abs form */
    struct rp_db *db = NULL;
    char err[256];
    CHECK_EQ_INT(rp_db_open(dsn, NULL, &db, err, sizeof(err)), 0);
    if (db) {
        struct rp_db_counts cnt;
        CHECK_EQ_INT(rp_db_counts(db, &cnt), 0);
        CHECK_EQ_INT(cnt.n[RP_DB_USERS], 1);
        CHECK_EQ_INT(cnt.n[RP_DB_NODES], 3);
        CHECK_EQ_INT(cnt.n[RP_DB_PRE_AUTH_KEYS], -1);
        CHECK_EQ_INT(cnt.n[RP_DB_API_KEYS], -1);
        int64_t max = -1;
        CHECK_EQ_INT(rp_db_max_id(db, RP_DB_NODES, &max), 0); /* "machines" */
        CHECK_EQ_INT(max, 3);
        max = -1;
        CHECK_EQ_INT(rp_db_max_id(db, RP_DB_PRE_AUTH_KEYS, &max), 0); /* no table: none before */
        CHECK_EQ_INT(max, 0);
        rp_db_close(db);
    }
    path_in(path, sizeof(path), "empty.sqlite");
    CHECK(sqlite3_open(path, &c) == SQLITE_OK);
    exec_ok(c, "PRAGMA user_version = 1");
    sqlite3_close(c);
    snprintf(dsn, sizeof(dsn), "sqlite:%s", path);
    CHECK_EQ_INT(rp_db_open(dsn, NULL, &db, err, sizeof(err)), 0);
    if (db) {
        struct rp_db_sample s;
        CHECK_EQ_INT(rp_db_sample(db, &s), 0);
        for (int k = 0; k < RP_DB_KIND_COUNT; k++)
            CHECK_EQ_INT(s.counts.n[k], -1);
        CHECK_EQ_INT(s.wal_bytes, 0);
        rp_db_close(db);
    }
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--hold") == 0)
        return hold_main(argv[2], argv[3]);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/h2r-test-db-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_helpers();
    test_bad_dsn();

    char path[300], dsn[320];
    path_in(path, sizeof(path), "db.sqlite");
    snprintf(dsn, sizeof(dsn), "sqlite:%s", path);
    sqlite3 *writer = make_db(path);
    test_counts_sample(dsn, writer);
    test_snapshot_restore(path, dsn, writer);
    test_verify(dsn);
    sqlite3_close(writer);
    test_other_layouts();

    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary("test_db_sqlite");
}
