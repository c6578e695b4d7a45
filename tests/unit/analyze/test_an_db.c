/*
 * The database evidence in analyze (analyze/an_db.c, an_report_db.c): run
 * files written here with db_sample records of a SQLite run (WAL growing
 * then checkpointed) and a PostgreSQL run (lock waits, rollbacks, wait
 * events), analysed with h2r_analyze in every format. Checks the folded
 * figures in the JSON, the table's lines (and its 100-column limit), the
 * Markdown table, the HTML plot, that a hostile kind string is escaped, and
 * that db_sample records are no longer taken for orphans. Then ack, verify
 * and section-end resource records: "acknowledged but lost", "present but
 * never acknowledged" and the "client-bound" verdict in every format.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"
#include "h2replay/analyze.h"
#include "h2replay/run.h"
#include "an_db.h"

#define MS 1000000LL
#define SEC 1000000000LL

static char tmpdir[64];

static const char *tmp(const char *name)
{
    static char bufs[8][256];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 256, "%s/%s", tmpdir, name);
    return b;
}

static void result(struct h2r_run_writer *w, uint32_t section, uint64_t id, int64_t t)
{
    struct h2r_run_result r;
    memset(&r, 0, sizeof(r));
    r.section = section;
    r.exchange_id = id;
    r.method = "POST";
    r.path = id % 2 ? "/headscale.v1.HeadscaleService/CreateUser"
                    : "/headscale.v1.HeadscaleService/CreatePreAuthKey";
    r.authority = "127.0.0.1:1";
    r.t_intended_ns = t;
    r.t_sent_ns = t;
    r.t_first_byte_ns = t + 5 * MS;
    r.t_done_ns = t + 6 * MS;
    r.status = 200;
    r.grpc_status = 0;
    r.trace_status = 200;
    r.trace_grpc_status = 0;
    r.flags = H2R_RES_F_GRPC;
    CHECK_EQ_INT(h2r_run_write_result(w, &r), 0);
}

static void db_sample(struct h2r_run_writer *w, uint32_t section, int64_t t, const char *kind,
                      const struct h2r_counter *v, size_t n)
{
    struct h2r_run_db_sample s = {section, t, kind, v, n};
    CHECK_EQ_INT(h2r_run_write_db_sample(w, &s), 0);
}

static void section(struct h2r_run_writer *w, uint32_t id, const char *name)
{
    struct h2r_run_section s;
    memset(&s, 0, sizeof(s));
    s.id = id;
    s.name = name;
    s.url = "http://127.0.0.1:1";
    s.speed = 10;
    s.timeout_ns = 5 * SEC;
    CHECK_EQ_INT(h2r_run_write_section(w, &s), 0);
}

static void section_end(struct h2r_run_writer *w, uint32_t id, uint64_t n)
{
    struct h2r_run_section_end e;
    memset(&e, 0, sizeof(e));
    e.section = id;
    e.t_end_ns = 3 * SEC;
    e.exchanges = n;
    CHECK_EQ_INT(h2r_run_write_section_end(w, &e), 0);
}

/* Section 0 "sqlite": WAL 100 kB -> 400 kB -> checkpointed to 0; users 0 -> 10.
 * Section 1 "pg": lock waits 0, 2, 1, 0; rollbacks 3 -> 5; deadlocks 0 -> 1. */
static void write_run(const char *path, const char *pg_kind)
{
    struct h2r_run_meta m;
    memset(&m, 0, sizeof(m));
    m.tool_version = "test";
    m.trace_path = "t.h2rt";
    m.trace_sha256 = "";
    m.settings = "speed=10";
    m.shard_count = 1;
    struct h2r_run_writer *w = NULL;
    char err[256];
    CHECK_EQ_INT(h2r_run_writer_open(&w, path, &m, err, sizeof(err)), 0);
    if (!w)
        return;
    section(w, 0, "sqlite");
    struct h2r_counter v[6];
    static const uint64_t wal[] = {100000, 250000, 400000, 0};
    for (int i = 0; i < 4; i++) {
        v[0] = (struct h2r_counter){"rows.users", (uint64_t)(i * 10 / 3)};
        v[1] = (struct h2r_counter){"rows.nodes", 0};
        v[2] = (struct h2r_counter){"rows.pre_auth_keys", (uint64_t)(i * 3)};
        v[3] = (struct h2r_counter){"sqlite.wal_bytes", wal[i]};
        v[4] = (struct h2r_counter){"sqlite.db_bytes", 69632};
        db_sample(w, 0, (i - 1) * SEC / 2 + 1, "sqlite", v, 5);
        result(w, 0, (uint64_t)i + 1, (int64_t)i * 100 * MS);
    }
    section_end(w, 0, 4);
    section(w, 1, "pg");
    static const uint64_t lw[] = {0, 2, 1, 0};
    for (int i = 0; i < 4; i++) {
        v[0] = (struct h2r_counter){"rows.users", (uint64_t)(i * 3)};
        v[1] = (struct h2r_counter){"pg.lock_waits", lw[i]};
        v[2] = (struct h2r_counter){"pg.xact_commit", (uint64_t)(100 + i * 50)};
        v[3] = (struct h2r_counter){"pg.xact_rollback", (uint64_t)(i < 2 ? 3 : 5)};
        v[4] = (struct h2r_counter){"pg.deadlocks", (uint64_t)(i == 3)};
        v[5] = (struct h2r_counter){"pg.wait.Lock.transactionid", lw[i]};
        db_sample(w, 1, (int64_t)i * SEC, pg_kind, v, 6);
        result(w, 1, (uint64_t)i + 1, (int64_t)i * 100 * MS);
    }
    section_end(w, 1, 4);
    CHECK_EQ_INT(h2r_run_writer_close(w), 0);
}

static int analyze(const char *run, int format, const char *out, FILE *log)
{
    const char *inputs[] = {run};
    struct h2r_analyze_opts o;
    h2r_analyze_opts_init(&o);
    o.inputs = inputs;
    o.n_inputs = 1;
    o.format = format;
    o.out_path = out;
    o.log = log;
    struct h2r_analyze_result res;
    char err[512] = "";
    int rc = h2r_analyze(&o, &res, err, sizeof(err));
    if (rc)
        fprintf(stderr, "analyze: %s\n", err);
    return rc;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = '\0';
    fclose(f);
    return b;
}

static json_int_t jpath_int(json_t *o, const char *a, const char *b, const char *c)
{
    json_t *x = json_object_get(o, a);
    if (b)
        x = json_object_get(x, b);
    if (c)
        x = json_object_get(x, c);
    return json_is_integer(x) ? json_integer_value(x) : -999;
}

static void test_reports(void)
{
    const char *run = tmp("db.h2rr");
    write_run(run, "postgresql");
    FILE *log = tmpfile();
    CHECK_EQ_INT(analyze(run, H2R_ANALYZE_JSON, tmp("db.json"), log), 0);
    /* db_sample records belong to their section: no "never declared" warning any more */
    char warn[4096] = "";
    rewind(log);
    size_t wn = fread(warn, 1, sizeof(warn) - 1, log);
    warn[wn] = '\0';
    CHECK(strstr(warn, "never declared") == NULL);
    fclose(log);

    json_error_t je;
    json_t *root = json_load_file(tmp("db.json"), 0, &je);
    CHECK(root != NULL);
    json_t *runs = json_object_get(root, "runs");
    CHECK_EQ_INT(json_array_size(runs), 2);
    for (size_t i = 0; i < json_array_size(runs); i++) {
        json_t *r = json_array_get(runs, i);
        const char *name = json_string_value(json_object_get(r, "name"));
        json_t *db = json_object_get(r, "db");
        CHECK(json_is_object(db));
        CHECK_EQ_INT(jpath_int(db, "samples", NULL, NULL), 4);
        if (name && strcmp(name, "sqlite") == 0) {
            CHECK_EQ_STR(json_string_value(json_object_get(db, "kind")), "sqlite");
            CHECK_EQ_INT(jpath_int(db, "rows", "users", "first"), 0);
            CHECK_EQ_INT(jpath_int(db, "rows", "users", "last"), 10);
            CHECK_EQ_INT(jpath_int(db, "rows", "pre_auth_keys", "max"), 9);
            CHECK_EQ_INT(jpath_int(db, "sqlite", "wal_bytes", "max"), 400000);
            CHECK_EQ_INT(jpath_int(db, "sqlite", "wal_bytes", "last"), 0); /* checkpointed */
            CHECK_EQ_INT(jpath_int(db, "sqlite", "wal_bytes", "growth"), 300000);
            CHECK_EQ_INT(jpath_int(db, "t_first_ns", NULL, NULL), -SEC / 2 + 1); /* baseline */
            CHECK(json_is_null(json_object_get(db, "pg")));
            CHECK(json_is_null(json_object_get(json_object_get(db, "rows"), "api_keys")));
        } else {
            CHECK_EQ_STR(json_string_value(json_object_get(db, "kind")), "postgresql");
            CHECK_EQ_INT(jpath_int(db, "pg", "lock_waits_max", NULL), 2);
            CHECK_EQ_INT(jpath_int(db, "pg", "samples_with_lock_waits", NULL), 2);
            CHECK_EQ_INT(jpath_int(db, "pg", "commits", NULL), 150);
            CHECK_EQ_INT(jpath_int(db, "pg", "rollbacks", NULL), 2);
            CHECK_EQ_INT(jpath_int(db, "pg", "deadlocks", NULL), 1);
            json_t *we = json_object_get(json_object_get(db, "pg"), "wait_events");
            CHECK(json_real_value(json_object_get(we, "Lock.transactionid")) == 3.0);
            CHECK(json_is_null(json_object_get(db, "sqlite")));
        }
    }
    json_decref(root);

    CHECK_EQ_INT(analyze(run, H2R_ANALYZE_TABLE, tmp("db.txt"), NULL), 0);
    char *t = slurp(tmp("db.txt"));
    CHECK(t != NULL);
    if (t) {
        CHECK(strstr(t, "database       sqlite, 4 samples") != NULL);
        CHECK(strstr(t, "users 0 -> 10") != NULL);
        CHECK(strstr(t, "sqlite WAL") != NULL && strstr(t, "growth 300.0 kB") != NULL);
        CHECK(strstr(t, "lock waits max 2 (in 2 of 4 samples)") != NULL);
        CHECK(strstr(t, "rollbacks +2, deadlocks +1") != NULL);
        CHECK(strstr(t, "Lock.transactionid 3") != NULL);
        CHECK(strstr(t, "POST .../CreatePreAuthKey") != NULL); /* gRPC keys stay apart */
        int wide = 0;
        for (char *l = t; *l;) {
            char *e = strchr(l, '\n');
            size_t len = e ? (size_t)(e - l) : strlen(l);
            wide |= len > 100;
            l += len + (e ? 1 : 0);
        }
        CHECK(!wide);
        free(t);
    }
    CHECK_EQ_INT(analyze(run, H2R_ANALYZE_MD, tmp("db.md"), NULL), 0);
    char *md = slurp(tmp("db.md"));
    CHECK(md && strstr(md, "### Database") != NULL);
    CHECK(md && strstr(md, "| `pg` | postgresql | 4 | 0 &rarr; 9 |") != NULL);
    free(md);
    CHECK_EQ_INT(analyze(run, H2R_ANALYZE_HTML, tmp("db.html"), NULL), 0);
    char *html = slurp(tmp("db.html"));
    CHECK(html && strstr(html, "<h2>Database</h2>") != NULL);
    CHECK(html && strstr(html, "sqlite: SQLite WAL size") != NULL);
    CHECK(html && strstr(html, "pg: PostgreSQL lock waits") != NULL);
    CHECK(html && strstr(html, "<polyline") != NULL);
    free(html);

    /* the kind string is input: a hostile one is escaped in HTML */
    const char *evil = tmp("evil.h2rr");
    write_run(evil, "<script>x");
    CHECK_EQ_INT(analyze(evil, H2R_ANALYZE_HTML, tmp("evil.html"), NULL), 0);
    html = slurp(tmp("evil.html"));
    CHECK(html && strstr(html, "<script>") == NULL && strstr(html, "&lt;script&gt;") != NULL);
    free(html);
}

/* A run without db samples has "db": null and no database lines. */
static void test_no_db(void)
{
    struct an_db *db = NULL;
    CHECK(an_db_value(db, "rows.users") == NULL);
    CHECK_EQ_INT(an_db_delta(db, "pg.xact_commit"), 0);
    an_db_free(NULL);
    /* folding directly: the series thins itself past AN_DB_MAX_POINTS */
    int rc = 0;
    for (uint64_t i = 0; i < 3 * AN_DB_MAX_POINTS; i++) {
        struct h2r_counter v = {"sqlite.wal_bytes", i};
        struct h2r_run_db_sample s = {0, (int64_t)i * MS, "sqlite", &v, 1};
        rc |= an_db_add(&db, &s);
    }
    CHECK_EQ_INT(rc, 0);
    CHECK(db != NULL);
    if (db) {
        CHECK(db->wal.n <= AN_DB_MAX_POINTS && db->wal.n >= AN_DB_MAX_POINTS / 2);
        CHECK_EQ_INT(db->wal.t[0], 0);
        CHECK_EQ_INT(an_db_value(db, "sqlite.wal_bytes")->max, 3 * AN_DB_MAX_POINTS - 1);
        /* more names than fit are counted, not stored */
        for (unsigned i = 0; i < AN_DB_MAX_NAMES + 5; i++) {
            char name[32];
            snprintf(name, sizeof(name), "x.%u", i);
            struct h2r_counter v = {name, 1};
            struct h2r_run_db_sample s = {0, 0, "sqlite", &v, 1};
            CHECK_EQ_INT(an_db_add(&db, &s), 0);
        }
        CHECK_EQ_INT(db->n_values, AN_DB_MAX_NAMES);
        CHECK(db->names_dropped >= 5);
    }
    an_db_free(db);
}

/* Section "hs": 3 acks, a verify with 1 lost user and 2 unacknowledged keys, a client that
 * used 1.9 cores for 2 loop threads and hit EMFILE; no db samples at all. */
static void write_ack_run(const char *path)
{
    struct h2r_run_meta m;
    memset(&m, 0, sizeof(m));
    m.tool_version = "test";
    m.trace_path = "t.h2rt";
    m.trace_sha256 = "";
    m.settings = "speed=10";
    m.shard_count = 1;
    struct h2r_run_writer *w = NULL;
    char err[256];
    CHECK_EQ_INT(h2r_run_writer_open(&w, path, &m, err, sizeof(err)), 0);
    if (!w)
        return;
    section(w, 0, "hs");
    for (int i = 0; i < 3; i++) {
        result(w, 0, (uint64_t)i + 1, (int64_t)i * 100 * MS);
        struct h2r_run_ack a;
        memset(&a, 0, sizeof(a));
        a.exchange_id = (uint64_t)i + 1;
        a.kind = i == 2 ? "pre_auth_key" : "user";
        a.name = "u<1>";
        a.source = i == 1 ? H2R_ACK_SRC_REQUEST : H2R_ACK_SRC_RESPONSE;
        CHECK_EQ_INT(h2r_run_write_ack(w, &a), 0);
    }
    struct h2r_run_verify v;
    memset(&v, 0, sizeof(v));
    v.db_kind = "sqlite";
    v.acks = 3;
    v.n_kinds = 2;
    v.kinds[0].kind = "users";
    v.kinds[0].acknowledged = 2;
    v.kinds[0].present = 1;
    v.kinds[0].lost = 1;
    v.kinds[0].lost_examples[0] = "{\"kind\":\"user\",\"name\":\"<gone>\"}";
    v.kinds[0].n_lost_examples = 1;
    v.kinds[1].kind = "pre_auth_keys";
    v.kinds[1].acknowledged = 1;
    v.kinds[1].present = 3;
    v.kinds[1].unacknowledged = 2;
    v.kinds[1].existing_before = 5; /* the launcher's and an earlier run's keys */
    v.kinds[1].before_max_id = 5;
    v.kinds[1].unacked_examples[0] = "{\"id\":7}";
    v.kinds[1].n_unacked_examples = 1;
    CHECK_EQ_INT(h2r_run_write_verify(w, &v), 0);
    struct h2r_run_section_end e;
    memset(&e, 0, sizeof(e));
    e.t_end_ns = 2 * SEC;
    e.exchanges = 3;
    e.cpu_user_ns = 3 * SEC;
    e.cpu_sys_ns = 8 * SEC / 10; /* 3.8 s over 2 s: 1.9 cores */
    e.max_rss_kb = 2048;
    e.loop_threads = 2;
    e.max_late_ns = 40 * MS;
    e.late_p99_ns = 30 * MS;
    e.peak_fds = 1020;
    e.peak_conns = 1000;
    e.fd_limit = 1024;
    e.emfile_errors = 5;
    CHECK_EQ_INT(h2r_run_write_section_end(w, &e), 0);
    CHECK_EQ_INT(h2r_run_writer_close(w), 0);
}

static void test_acks_verify_client(void)
{
    const char *run = tmp("acks.h2rr");
    write_ack_run(run);
    CHECK_EQ_INT(analyze(run, H2R_ANALYZE_JSON, tmp("acks.json"), NULL), 0);
    json_error_t jerr;
    json_t *root = json_load_file(tmp("acks.json"), 0, &jerr);
    CHECK(root != NULL);
    json_t *r0 = json_array_get(json_object_get(root, "runs"), 0);
    json_t *db = json_object_get(r0, "db"), *client = json_object_get(r0, "client");
    CHECK_EQ_INT(jpath_int(db, "acks", NULL, NULL), 3);
    CHECK_EQ_INT(jpath_int(db, "verify", "acknowledged_but_lost", NULL), 1);
    CHECK_EQ_INT(jpath_int(db, "verify", "present_but_never_acknowledged", NULL), 2);
    CHECK_EQ_INT(jpath_int(json_object_get(json_object_get(db, "verify"), "kinds"), "users",
                           "lost", NULL),
                 1);
    CHECK_EQ_INT(jpath_int(json_object_get(json_object_get(db, "verify"), "kinds"),
                           "pre_auth_keys", "existing_before", NULL),
                 5);
    CHECK(json_object_get(db, "sqlite") == NULL); /* no samples: no sample figures */
    CHECK_EQ_INT(jpath_int(client, "loop_threads", NULL, NULL), 2);
    CHECK_EQ_INT(jpath_int(client, "peak_fds", NULL, NULL), 1020);
    CHECK_EQ_INT(jpath_int(client, "emfile_errors", NULL, NULL), 5);
    CHECK(json_is_true(json_object_get(client, "client_bound")));
    const char *why = json_string_value(json_object_get(client, "client_bound_reason"));
    CHECK(why && strstr(why, "1.90 cores for 2 loop threads") && strstr(why, "EMFILE"));
    json_decref(root);

    CHECK_EQ_INT(analyze(run, H2R_ANALYZE_TABLE, tmp("acks.txt"), NULL), 0);
    char *t = slurp(tmp("acks.txt"));
    CHECK(t && strstr(t, "acknowledged   users 2, pre_auth_keys 1 (1 identified by the request"));
    CHECK(t && strstr(t, "acknowledged but lost 1, present but never acknowledged 2"));
    CHECK(t && strstr(t, "pre_auth_keys 1 acknowledged / 3 rows (5 existed before)"));
    CHECK(t && strstr(t, "  lost         users {\"kind\":\"user\",\"name\":\"<gone>\"}"));
    CHECK(t && strstr(t, "client-bound: the replay used 1.90 cores"));
    CHECK(t && strstr(t, "fds max 1020 of 1024"));
    for (char *line = t; t && line && *line;) { /* the 100-column limit holds here too */
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (strstr(line, "acknowledged") == line + 3 || strstr(line, "replay client") == line + 3)
            CHECK(len <= 100);
        line = nl ? nl + 1 : NULL;
    }
    free(t);

    CHECK_EQ_INT(analyze(run, H2R_ANALYZE_MD, tmp("acks.md"), NULL), 0);
    char *md = slurp(tmp("acks.md"));
    CHECK(md && strstr(md, "### Acknowledged vs stored"));
    CHECK(md && strstr(md, "| 1 | 2 | lost users {\"kind\":\"user\",\"name\":\"\\<gone\\>\"}"));
    CHECK(md && strstr(md, "### Replay client"));
    CHECK(md && strstr(md, "client-bound"));
    free(md);

    CHECK_EQ_INT(analyze(run, H2R_ANALYZE_HTML, tmp("acks.html"), NULL), 0);
    char *html = slurp(tmp("acks.html"));
    CHECK(html && strstr(html, "<h2>Acknowledged vs stored</h2>"));
    CHECK(html && strstr(html, "<b>1</b>"));
    CHECK(html && strstr(html, "&lt;gone&gt;") && !strstr(html, "<gone>"));
    CHECK(html && strstr(html, "<h2>Replay client</h2>"));
    free(html);

    /* an old-style section end (no resources): no client lines, no verdict */
    struct an_db *d = NULL;
    struct h2r_run_section_end e;
    memset(&e, 0, sizeof(e));
    e.t_end_ns = SEC;
    e.cpu_user_ns = 2 * SEC;
    CHECK_EQ_INT(an_db_add_end(&d, &e), 0);
    char buf[256];
    CHECK_EQ_INT(an_client_bound(d, buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "");
    an_db_free(d);
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/h2r-an-db.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_reports();
    test_no_db();
    test_acks_verify_client();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary("test_an_db");
}
