/*
 * Golden tests of the analyze stage (h2r_analyze) on run files written here
 * with the run writer, with known latency distributions: percentiles are
 * checked against exact values within the histogram's 1 % bound, and gates,
 * exit codes, diffs, failure points, new-vs-shared failures, shard merging,
 * trace baselines and every refusal (mismatched traces or settings, damaged
 * files, bad gates) against what the inputs imply. Reports are read back
 * from the JSON writer; the table is checked for its 100-column limit.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "check.h"
#include "h2replay/analyze.h"
#include "h2replay/run.h"
#include "h2replay/trace.h"

#define MS 1000000LL
#define SEC 1000000000LL
#define SHA_A "aaaa000000000000000000000000000000000000000000000000000000000000"
#define SHA_B "bbbb000000000000000000000000000000000000000000000000000000000000"

static char tmpdir[64];
static char last_err[1024];
static FILE *devnull; /* the analysis log (warnings, failing gates) */

static const char *tmp(const char *name)
{
    static char bufs[8][256];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 256, "%s/%s", tmpdir, name);
    return b;
}

/* ------------------------------------------------------------ run writing */

static int64_t run_start_at; /* --start-at of the next run_open */

/* A path under tmpdir that outlives tmp()'s rotating buffers. */
static const char *keep(char (*buf)[256], const char *name)
{
    snprintf(*buf, sizeof(*buf), "%s/%s", tmpdir, name);
    return *buf;
}

static struct h2r_run_writer *run_open(const char *path, const char *sha, const char *settings,
                                       uint32_t shard_index, uint32_t shard_count)
{
    struct h2r_run_meta m;
    struct h2r_run_writer *w = NULL;
    char err[256];
    memset(&m, 0, sizeof(m));
    m.tool_version = "test";
    m.trace_path = "t.h2t";
    m.trace_sha256 = sha;
    m.settings = settings ? settings : "speed=1";
    m.shard_index = shard_index;
    m.shard_count = shard_count;
    m.start_at_ns = run_start_at;
    if (h2r_run_writer_open(&w, path, &m, err, sizeof(err)) != 0) {
        fprintf(stderr, "run_open %s: %s\n", path, err);
        return NULL;
    }
    return w;
}

static void run_section(struct h2r_run_writer *w, uint32_t id, const char *name)
{
    struct h2r_run_section s;
    memset(&s, 0, sizeof(s));
    s.id = id;
    s.name = name;
    s.url = "http://127.0.0.1:1";
    s.speed = 1;
    s.timeout_ns = 30 * SEC;
    s.label = "test";
    CHECK_EQ_INT(h2r_run_write_section(w, &s), 0);
}

static void run_result(struct h2r_run_writer *w, uint32_t section, uint64_t id, const char *method,
                       const char *path, int64_t t, int64_t lat, uint32_t cls)
{
    struct h2r_run_result r;
    memset(&r, 0, sizeof(r));
    r.section = section;
    r.exchange_id = id;
    r.conn_index = (uint32_t)(id % 4);
    r.stream_id = 1;
    r.method = method;
    r.path = path;
    r.t_intended_ns = t;
    r.t_sent_ns = t + 100;
    r.t_done_ns = t + lat;
    r.status = cls ? -1 : 200;
    r.grpc_status = -1;
    r.trace_status = 200;
    r.trace_grpc_status = -1;
    r.err_class = cls;
    r.err_detail = cls ? "detail" : NULL;
    CHECK_EQ_INT(h2r_run_write_result(w, &r), 0);
}

static void run_end(struct h2r_run_writer *w, uint32_t section, int64_t t_end)
{
    struct h2r_run_section_end e;
    memset(&e, 0, sizeof(e));
    e.section = section;
    e.t_end_ns = t_end;
    CHECK_EQ_INT(h2r_run_write_section_end(w, &e), 0);
}

static void run_close(struct h2r_run_writer *w)
{
    CHECK_EQ_INT(h2r_run_writer_close(w), 0);
}

/* ------------------------------------------------------------ analysis */

struct an_call {
    const char *inputs[4];
    size_t n_inputs;
    const char *baseline;
    const char *gates[8];
    size_t n_gates;
    int format;
    int group_by;
    const char *out;
};

/* Runs the analysis; returns the CLI exit code (0/1/2); the error text is in last_err. */
static int analyze(const struct an_call *c, struct h2r_analyze_result *res)
{
    struct h2r_analyze_opts o;
    struct h2r_analyze_result r;
    h2r_analyze_opts_init(&o);
    o.inputs = c->inputs;
    o.n_inputs = c->n_inputs;
    o.baseline = c->baseline;
    o.gates = c->gates;
    o.n_gates = c->n_gates;
    o.format = c->format;
    o.group_by = c->group_by;
    o.out_path = c->out ? c->out : tmp("out.json");
    o.log = devnull;
    last_err[0] = '\0';
    int rc = h2r_analyze(&o, res ? res : &r, last_err, sizeof(last_err));
    return h2r_analyze_exit_code(rc, res ? res : &r);
}

static json_t *analyze_json(struct an_call *c, int *exit_code)
{
    c->format = H2R_ANALYZE_JSON;
    c->out = tmp("out.json");
    *exit_code = analyze(c, NULL);
    if (*exit_code == 2)
        return NULL;
    json_error_t e;
    json_t *j = json_load_file(c->out, 0, &e);
    if (!j)
        fprintf(stderr, "bad JSON: %s line %d\n", e.text, e.line);
    CHECK(j != NULL);
    return j;
}

static json_t *run_named(json_t *root, const char *name)
{
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(root, "runs"), i, r)
    {
        if (strcmp(json_string_value(json_object_get(r, "name")), name) == 0)
            return r;
    }
    return NULL;
}

static json_t *group_named(json_t *run, const char *key)
{
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(run, "groups"), i, g)
    {
        if (strcmp(json_string_value(json_object_get(g, "key")), key) == 0)
            return g;
    }
    return NULL;
}

static int64_t jget_int(json_t *o, const char *a, const char *b)
{
    json_t *x = json_object_get(o, a);
    if (b)
        x = json_object_get(x, b);
    return json_integer_value(x);
}

static int near(int64_t got, double want, double rel)
{
    if (fabs((double)got - want) <= rel * want)
        return 1;
    fprintf(stderr, "got %lld want %.0f (+-%.2f%%)\n", (long long)got, want, rel * 100);
    return 0;
}

/* ------------------------------------------------------------ the tests */

/* One section, two endpoints: latencies 1..10000 us uniformly, and a constant 5 ms. */
static void write_known(const char *path)
{
    struct h2r_run_writer *w = run_open(path, SHA_A, NULL, 0, 1);
    if (!w)
        return;
    run_section(w, 0, "known");
    char p[64];
    for (uint64_t i = 1; i <= 10000; i++) {
        snprintf(p, sizeof(p), "/machine/%llu/map", (unsigned long long)i);
        run_result(w, 0, i, "POST", p, (int64_t)i * MS, (int64_t)i * 1000, 0);
    }
    for (uint64_t i = 0; i < 1000; i++)
        run_result(w, 0, 20000 + i, "GET", "/key?v=88", (int64_t)i * 10 * MS, 5 * MS, 0);
    run_end(w, 0, 10010 * MS);
    run_close(w);
}

static void test_known_distribution(void)
{
    const char *path = tmp("known.h2r");
    write_known(path);
    struct an_call c = {{path}, 1, NULL, {0}, 0, 0, 0, NULL};
    int code;
    json_t *j = analyze_json(&c, &code);
    CHECK_EQ_INT(code, 0);
    if (!j)
        return;
    json_t *r = run_named(j, "known");
    CHECK(r != NULL);
    if (!r)
        goto out;
    CHECK_EQ_INT(jget_int(r, "count", NULL), 11000);
    CHECK_EQ_INT(jget_int(r, "errors", NULL), 0);
    json_t *g = group_named(r, "POST /machine/{n}/map");
    CHECK(g != NULL);
    if (g) {
        json_t *lat = json_object_get(g, "latency_from_intended");
        CHECK_EQ_INT(jget_int(lat, "count", NULL), 10000);
        CHECK(near(jget_int(lat, "p50_ns", NULL), 5000e3, 0.01));
        CHECK(near(jget_int(lat, "p90_ns", NULL), 9000e3, 0.01));
        CHECK(near(jget_int(lat, "p99_ns", NULL), 9900e3, 0.01));
        CHECK(near(jget_int(lat, "p999_ns", NULL), 9990e3, 0.01));
        CHECK_EQ_INT(jget_int(lat, "max_ns", NULL), 10000000);
        CHECK_EQ_INT(jget_int(lat, "min_ns", NULL), 1000);
        CHECK(fabs(json_real_value(json_object_get(lat, "mean_ns")) - 5000500.0) < 1e-3);
        /* from the actual send: 100 ns less each */
        json_t *ls = json_object_get(g, "latency_from_sent");
        CHECK_EQ_INT(jget_int(ls, "max_ns", NULL), 10000000 - 100);
    }
    json_t *k = group_named(r, "GET /key");
    CHECK(k != NULL);
    if (k) {
        CHECK_EQ_INT(jget_int(k, "latency_from_intended", "p50_ns"), 5 * MS);
        CHECK_EQ_INT(jget_int(k, "latency_from_intended", "p99_ns"), 5 * MS);
    }
    /* windows: 1 s wide, ~1000 + 100 due per second */
    json_t *win = json_object_get(r, "windows");
    CHECK_EQ_INT(jget_int(win, "width_ns", NULL), SEC);
    CHECK_EQ_INT(json_integer_value(json_array_get(json_object_get(win, "offered"), 1)), 1100);
    CHECK(json_is_null(json_object_get(json_object_get(r, "failures"), "first")));
    CHECK(json_is_null(json_object_get(json_object_get(r, "failures"), "onset")));
    CHECK_EQ_INT(json_array_size(json_object_get(j, "diff")), 0);
out:
    json_decref(j);

    /* gates on one run (no reference): absolute ones only */
    struct an_call g1 = {{path},
                         1,
                         NULL,
                         {"p50(/machine/1/map) < 6ms", "p99 < 10ms", "errors == 0",
                          "error_rate(GET /key) <= 1%", "count == 11000", "throughput > 1000"},
                         6,
                         0,
                         0,
                         tmp("g.txt")};
    struct h2r_analyze_result res;
    CHECK_EQ_INT(analyze(&g1, &res), 0);
    CHECK_EQ_INT(res.gates, 6);
    CHECK_EQ_INT(res.gates_failed, 0);
    CHECK_EQ_INT(res.exchanges, 11000);
    struct an_call g2 = {{path}, 1, NULL, {"p99(/machine/{n}/map) < 9ms", "errors == 0"},
                         2,      0, 0,    tmp("g.txt")};
    CHECK_EQ_INT(analyze(&g2, &res), 1);
    CHECK_EQ_INT(res.gates_failed, 1);
    struct an_call g3 = {{path}, 1, NULL, {"p99 < +20%"}, 1, 0, 0, tmp("g.txt")};
    CHECK_EQ_INT(analyze(&g3, NULL), 2); /* relative without a reference */
    CHECK(strstr(last_err, "reference") != NULL);
    struct an_call g4 = {{path}, 1, NULL, {"p99(/nope) < 1s"}, 1, 0, 0, tmp("g.txt")};
    CHECK_EQ_INT(analyze(&g4, NULL), 2);
    CHECK(strstr(last_err, "no endpoint or group matches '/nope'") != NULL);
    struct an_call g5 = {{path}, 1, NULL, {"p99 <= 1 parsec"}, 1, 0, 0, tmp("g.txt")};
    CHECK_EQ_INT(analyze(&g5, NULL), 2);
    CHECK(strstr(last_err, "column") != NULL);
    /* --group-by none: one group "all" */
    struct an_call g6 = {{path}, 1, NULL, {0}, 0, 0, H2R_ANALYZE_BY_NONE, NULL};
    j = analyze_json(&g6, &code);
    if (j) {
        r = run_named(j, "known");
        CHECK(r && json_array_size(json_object_get(r, "groups")) == 1);
        CHECK(r && group_named(r, "all") != NULL);
        json_decref(j);
    }
}

/* Two targets in one file over 12 s; b is twice as slow, with failures in [5 s, 8 s). */
static void write_ab(const char *path, const char *sha, const char *settings)
{
    struct h2r_run_writer *w = run_open(path, sha, settings, 0, 1);
    if (!w)
        return;
    run_section(w, 0, "a");
    run_section(w, 1, "b");
    for (uint64_t i = 0; i < 2400; i++) {
        int64_t t = (int64_t)i * 5 * MS, lat = (int64_t)(1 + i % 100) * MS;
        run_result(w, 0, i, "POST", "/machine/register", t, lat, 0);
        /* b: failures only in [5 s, 8 s): exchange ids 1000..1599, every other one */
        uint32_t cls = i >= 1000 && i < 1600 && i % 2 ? H2R_EC_DEADLINE : 0;
        run_result(w, 1, i, "POST", "/machine/register", t, 2 * lat, cls);
    }
    run_end(w, 0, 12 * SEC);
    run_end(w, 1, 12 * SEC);
    run_close(w);
}

static void test_diff_and_failure_points(void)
{
    const char *path = tmp("ab.h2r");
    write_ab(path, SHA_A, NULL);
    struct an_call c = {{path}, 1, NULL, {"p99 < +20%"}, 1, 0, 0, NULL};
    int code;
    json_t *j = analyze_json(&c, &code);
    CHECK_EQ_INT(code, 1); /* b's p99 doubled */
    if (!j)
        return;
    CHECK_EQ_STR(json_string_value(json_object_get(j, "reference")), "a");
    CHECK_EQ_STR(json_string_value(json_object_get(j, "gated_run")), "b");
    json_t *row = json_array_get(json_object_get(j, "diff"), 0);
    CHECK(json_is_null(json_object_get(row, "group")));
    CHECK(fabs(json_real_value(json_object_get(row, "p50_rel")) - 1.0) < 0.02);
    CHECK(json_is_true(json_object_get(row, "p50_significant")));
    CHECK(json_is_true(json_object_get(row, "p99_significant")));
    CHECK(json_real_value(json_object_get(json_object_get(row, "mann_whitney"), "p")) < 1e-10);
    json_t *b = run_named(j, "b");
    json_t *fail = json_object_get(b, "failures");
    CHECK_EQ_INT(jget_int(fail, "first", "exchange_id"), 1001);
    CHECK_EQ_INT(jget_int(fail, "first", "t_intended_ns"), 1001 * 5 * MS);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(fail, "first"), "class")),
                 "deadline_exceeded");
    /* 50 % errors in windows 5, 6, 7: onset at 5 s, recovery at 8 s */
    CHECK_EQ_INT(jget_int(fail, "onset", "t_ns"), 5 * SEC);
    CHECK_EQ_INT(jget_int(fail, "onset", "window"), 5);
    CHECK(fabs(json_real_value(json_object_get(json_object_get(fail, "onset"), "error_rate")) -
               0.5) < 1e-9);
    CHECK(fabs(json_real_value(json_object_get(json_object_get(fail, "onset"), "offered_per_s")) -
               200.0) < 1e-9);
    CHECK_EQ_INT(jget_int(fail, "recovery", "t_ns"), 8 * SEC);
    CHECK_EQ_INT(jget_int(fail, "vs_reference", "new"), 300);
    CHECK_EQ_INT(jget_int(fail, "vs_reference", "shared"), 0);
    CHECK_EQ_INT(jget_int(b, "errors_by_class", "deadline_exceeded"), 300);
    json_decref(j);

    /* relative gates that hold; the baseline named among the runs (b becomes the reference) */
    struct an_call c2 = {{path}, 1, NULL, {"p99 < +120%", "p50 > +90%", "errors <= 300"},
                         3,      0, 0,    tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c2, NULL), 0);
    struct an_call c3 = {{path}, 1, "b", {"p99 < -40%", "new_failures == 0"},
                         2,      0, 0,   tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c3, NULL), 0);
    struct an_call c4 = {{path}, 1, "nope", {0}, 0, 0, 0, tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c4, NULL), 2);
    CHECK(strstr(last_err, "'a'") != NULL && strstr(last_err, "'b'") != NULL);
    /* the baseline as a separate file with FILE@SECTION */
    char spec[300];
    snprintf(spec, sizeof(spec), "%s@a", path);
    struct an_call c5 = {{path}, 1, spec, {"new_failures == 300"}, 1, 0, 0, tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c5, NULL), 0);
    struct an_call c6 = {{path}, 1, path, {0}, 0, 0, 0, tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c6, NULL), 2);
    CHECK(strstr(last_err, "@SECTION") != NULL);
}

static void test_new_vs_shared(void)
{
    const char *base = tmp("base.h2r"), *cur = tmp("cur.h2r");
    struct h2r_run_writer *w = run_open(base, SHA_A, NULL, 0, 1);
    if (!w)
        return;
    run_section(w, 0, "base");
    for (uint64_t i = 0; i < 10; i++)
        run_result(w, 0, i, "GET", "/x", (int64_t)i * MS, MS, i >= 1 && i <= 3 ? 9 : 0);
    run_end(w, 0, SEC);
    run_close(w);
    w = run_open(cur, SHA_A, NULL, 0, 1);
    if (!w)
        return;
    run_section(w, 0, "cur");
    for (uint64_t i = 0; i < 10; i++)
        run_result(w, 0, i, "GET", i == 5 ? "/y" : "/x", (int64_t)i * MS, MS,
                   i >= 2 && i <= 5 ? 7 : 0);
    run_end(w, 0, SEC);
    run_close(w);
    struct an_call c = {{cur}, 1, base, {"new_failures == 0"}, 1, 0, 0, NULL};
    int code;
    json_t *j = analyze_json(&c, &code);
    CHECK_EQ_INT(code, 1);
    if (!j)
        return;
    CHECK(json_is_true(json_object_get(j, "reference_is_baseline")));
    json_t *r = run_named(j, "cur");
    json_t *vs = json_object_get(json_object_get(r, "failures"), "vs_reference");
    CHECK_EQ_INT(jget_int(vs, "new", NULL), 2);    /* 4 and 5 */
    CHECK_EQ_INT(jget_int(vs, "shared", NULL), 2); /* 2 and 3 */
    CHECK_EQ_INT(json_array_size(json_object_get(vs, "examples_new")), 2);
    CHECK_EQ_INT(
        jget_int(json_array_get(json_object_get(vs, "examples_new"), 1), "exchange_id", NULL), 5);
    CHECK_EQ_INT(jget_int(group_named(r, "GET /y"), "new_failures", NULL), 1);
    json_decref(j);
    struct an_call c2 = {{cur}, 1, base, {"new_failures <= 2", "new_failures(/y) == 1"},
                         2,     0, 0,    tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c2, NULL), 0);
    /* without a baseline, two files: the first is the reference */
    struct an_call c3 = {{base, cur}, 2, NULL, {"new_failures == 2"}, 1, 0, 0, tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c3, NULL), 0);
}

static void test_empty_and_only_failures(void)
{
    const char *path = tmp("edge.h2r");
    struct h2r_run_writer *w = run_open(path, SHA_A, NULL, 0, 1);
    if (!w)
        return;
    run_section(w, 0, "empty");
    run_section(w, 1, "allfail");
    for (uint64_t i = 0; i < 500; i++)
        run_result(w, 1, i, "POST", "/api/v1/user/17", (int64_t)i * 10 * MS, 30 * SEC, 6);
    run_end(w, 0, 0);
    run_end(w, 1, 35 * SEC);
    run_close(w);
    for (int fmt = H2R_ANALYZE_TABLE; fmt <= H2R_ANALYZE_HTML; fmt++) {
        struct an_call c = {{path}, 1, NULL, {0}, 0, fmt, 0, tmp("edge.out")};
        CHECK_EQ_INT(analyze(&c, NULL), 0);
    }
    struct an_call c = {{path}, 1, "allfail", {0}, 0, 0, 0, NULL};
    int code;
    json_t *j = analyze_json(&c, &code);
    CHECK_EQ_INT(code, 0);
    if (!j)
        return;
    json_t *e = run_named(j, "empty"), *f = run_named(j, "allfail");
    CHECK_EQ_INT(jget_int(e, "count", NULL), 0);
    CHECK(json_is_null(json_object_get(json_object_get(e, "latency_from_intended"), "p50_ns")));
    CHECK_EQ_INT(jget_int(f, "errors", NULL), 500);
    CHECK(json_real_value(json_object_get(f, "error_rate")) == 1.0);
    CHECK_EQ_INT(jget_int(json_object_get(f, "failures"), "onset", "t_ns"), 0);
    CHECK(json_is_null(json_object_get(json_object_get(f, "failures"), "recovery")));
    CHECK_EQ_INT(jget_int(json_object_get(f, "failures"), "first", "exchange_id"), 0);
    CHECK(group_named(f, "POST /api/v1/user/{n}") != NULL);
    json_decref(j);
    /* gates on the empty run: counts pass, latencies have no data and fail */
    struct an_call g = {{path}, 1, "allfail", {"errors == 0", "p99 < 1s"}, 2, 0, 0, tmp("o.txt")};
    /* target is the last run ("allfail" is the baseline, so "empty" is gated) */
    struct h2r_analyze_result res;
    CHECK_EQ_INT(analyze(&g, &res), 1);
    CHECK_EQ_INT(res.gates_failed, 1);
}

static void test_refusals(void)
{
    const char *a = tmp("ra.h2r"), *b = tmp("rb.h2r"), *s = tmp("rs.h2r");
    write_ab(a, SHA_A, "speed=1");
    write_ab(b, SHA_B, "speed=1");
    write_ab(s, SHA_A, "speed=2");
    struct an_call c = {{a, b}, 2, NULL, {0}, 0, 0, 0, tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c, NULL), 2);
    CHECK(strstr(last_err, "different traces") != NULL);
    struct an_call c2 = {{a, s}, 2, NULL, {0}, 0, 0, 0, tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c2, NULL), 2);
    CHECK(strstr(last_err, "different settings") != NULL);
    struct an_call c3 = {{a}, 1, b, {0}, 0, 0, 0, tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c3, NULL), 2);

    /* truncated: cut a multi-frame file in the middle */
    const char *big = tmp("big.h2r"), *cut = tmp("cut.h2r");
    struct h2r_run_writer *w = run_open(big, SHA_A, NULL, 0, 1);
    if (!w)
        return;
    run_section(w, 0, "big");
    char p[64];
    for (uint64_t i = 0; i < 60000; i++) {
        snprintf(p, sizeof(p), "/n/%llu/%llx", (unsigned long long)i,
                 (unsigned long long)(i * 0x9e3779b97f4a7c15ull));
        run_result(w, 0, i, "GET", p, (int64_t)i * MS, (int64_t)(i % 977) * 1000, 0);
    }
    run_end(w, 0, 61 * SEC);
    run_close(w);
    FILE *in = fopen(big, "rb"), *out = fopen(cut, "wb");
    CHECK(in && out);
    if (in && out) {
        fseek(in, 0, SEEK_END);
        long size = ftell(in);
        fseek(in, 0, SEEK_SET);
        for (long k = 0; k < size / 2 + 7; k++)
            fputc(fgetc(in), out);
    }
    if (in)
        fclose(in);
    if (out)
        fclose(out);
    struct an_call c4 = {{cut}, 1, NULL, {0}, 0, 0, 0, tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c4, NULL), 2);
    CHECK(strstr(last_err, cut) != NULL);
    CHECK(strstr(last_err, "truncated") != NULL || strstr(last_err, "damaged") != NULL);
    struct an_call c5 = {{tmp("missing.h2r")}, 1, NULL, {0}, 0, 0, 0, tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c5, NULL), 2);
    CHECK(strstr(last_err, "missing.h2r") != NULL);
    /* garbage */
    FILE *g = fopen(tmp("garbage.h2r"), "wb");
    if (g) {
        fputs("this is not a run file at all", g);
        fclose(g);
    }
    struct an_call c6 = {{tmp("garbage.h2r")}, 1, NULL, {0}, 0, 0, 0, tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c6, NULL), 2);
    /* unwritable output */
    struct an_call c7 = {{a}, 1, NULL, {0}, 0, 0, 0, "/nonexistent-dir/x.json"};
    CHECK_EQ_INT(analyze(&c7, NULL), 2);
}

/* Latencies with a spread (1..997 us, some failures): merged shards = one unsharded file. */
static void write_spread(const char *path, uint32_t index, uint32_t count)
{
    struct h2r_run_writer *w = run_open(path, SHA_A, NULL, index, count);
    if (!w)
        return;
    run_section(w, 0, "pg");
    for (uint64_t i = 0; i < 3000; i++) {
        if (count > 1 && i % count != index)
            continue;
        uint32_t cls = i % 97 == 0 ? H2R_EC_DEADLINE : i % 89 == 0 ? H2R_EC_STREAM_RESET : 0;
        run_result(w, 0, i, i % 3 ? "GET" : "POST", i % 2 ? "/a/1" : "/b/22",
                   (int64_t)i * MS / 3, (int64_t)(i * 7919 % 997 + 1) * 1000, cls);
    }
    run_end(w, 0, SEC);
    run_close(w);
}

static void test_shards_merge_exactly(void)
{
    char pb[4][256];
    const char *whole = keep(&pb[0], "whole.h2r");
    write_spread(whole, 0, 1);
    const char *sh[3] = {keep(&pb[1], "m0.h2r"), keep(&pb[2], "m1.h2r"), keep(&pb[3], "m2.h2r")};
    for (uint32_t k = 0; k < 3; k++)
        write_spread(sh[k], k, 3);
    int code;
    struct an_call cw = {{whole}, 1, NULL, {0}, 0, 0, 0, NULL};
    json_t *jw = analyze_json(&cw, &code);
    CHECK_EQ_INT(code, 0);
    struct an_call cs = {{sh[2], sh[0], sh[1]}, 3, NULL, {0}, 0, 0, 0, NULL};
    json_t *js = analyze_json(&cs, &code);
    CHECK_EQ_INT(code, 0);
    if (jw && js) {
        json_t *a = run_named(jw, "pg"), *b = run_named(js, "pg");
        CHECK(a && b);
        CHECK_EQ_INT(json_array_size(json_object_get(js, "runs")), 1);
        CHECK_EQ_INT(jget_int(b, "shard_count", NULL), 3);
        CHECK_EQ_INT(jget_int(b, "shards_seen", NULL), 3);
        CHECK_EQ_INT(json_array_size(json_object_get(b, "shards_missing")), 0);
        CHECK_EQ_INT(jget_int(a, "count", NULL), 3000);
        const char *same[] = {"count", "ok", "errors", "errors_by_class", "latency_from_intended",
                              "latency_from_sent", "groups", "failures"};
        for (size_t k = 0; k < sizeof(same) / sizeof(same[0]); k++) {
            int eq = json_equal(json_object_get(a, same[k]), json_object_get(b, same[k]));
            if (!eq)
                fprintf(stderr, "merged shards differ from the whole run in '%s'\n", same[k]);
            CHECK(eq);
        }
    }
    json_decref(jw);
    json_decref(js);
    /* a missing shard: a warning, and the JSON names it */
    struct an_call cm = {{sh[0], sh[2]}, 2, NULL, {0}, 0, 0, 0, NULL};
    js = analyze_json(&cm, &code);
    CHECK_EQ_INT(code, 0);
    if (js) {
        json_t *b = run_named(js, "pg");
        CHECK_EQ_INT(jget_int(b, "shards_seen", NULL), 2);
        CHECK_EQ_INT(json_array_size(json_object_get(b, "shards_missing")), 1);
        CHECK_EQ_INT(json_integer_value(json_array_get(json_object_get(b, "shards_missing"), 0)),
                     1);
        CHECK_EQ_INT(jget_int(b, "count", NULL), 2000);
        json_decref(js);
    }
}

/* Shard indexes beyond 64: duplicates are still caught, missing ones listed. */
static void test_shards_many(void)
{
    char b[2][256];
    const char *p70 = keep(&b[0], "x70.h2r"), *p3 = keep(&b[1], "x3.h2r");
    for (int k = 0; k < 2; k++) {
        struct h2r_run_writer *w = run_open(k ? p3 : p70, SHA_A, NULL, k ? 3 : 70, 100);
        if (!w)
            return;
        run_section(w, 0, "pg");
        run_result(w, 0, k, "GET", "/x", 0, 1000, 0);
        run_end(w, 0, SEC);
        run_close(w);
    }
    struct an_call c = {{p70, p3, p70}, 3, NULL, {0}, 0, 0, 0, tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c, NULL), 2);
    CHECK(strstr(last_err, "shard 70/100") != NULL);
    CHECK(strstr(last_err, "given twice") != NULL);
    struct an_call c2 = {{p70, p3}, 2, NULL, {0}, 0, 0, 0, NULL};
    int code;
    json_t *j = analyze_json(&c2, &code);
    CHECK_EQ_INT(code, 0);
    if (j) {
        json_t *r = run_named(j, "pg");
        CHECK_EQ_INT(jget_int(r, "shards_seen", NULL), 2);
        CHECK_EQ_INT(json_array_size(json_object_get(r, "shards_missing")), 98);
        json_decref(j);
    }
}

/* Shards of another trace or other settings are refused; another replay of the job (a
 * different --start-at) is another run, not more shards. */
static void test_shards_mismatch(void)
{
    char b[7][256];
    const char *s0 = keep(&b[0], "s0.h2r"), *other = keep(&b[1], "other.h2r");
    const char *set = keep(&b[2], "set.h2r");
    struct h2r_run_writer *w = run_open(other, SHA_B, NULL, 1, 2);
    if (w) {
        run_section(w, 0, "pg");
        run_result(w, 0, 1, "GET", "/x", 0, 1000, 0);
        run_end(w, 0, SEC);
        run_close(w);
    }
    struct an_call c = {{s0, other}, 2, NULL, {0}, 0, 0, 0, tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c, NULL), 2);
    CHECK(strstr(last_err, "merge or compare shard file") != NULL);
    CHECK(strstr(last_err, "different traces") != NULL);
    w = run_open(set, SHA_A, "speed=1 shards=2 partition=conn:other/v9", 1, 2);
    if (w) {
        run_section(w, 0, "pg");
        run_result(w, 0, 1, "GET", "/x", 0, 1000, 0);
        run_end(w, 0, SEC);
        run_close(w);
    }
    struct an_call c2 = {{s0, set}, 2, NULL, {0}, 0, 0, 0, tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c2, NULL), 2);
    CHECK(strstr(last_err, "different settings") != NULL);

    const char *r1[2] = {keep(&b[3], "r1a.h2r"), keep(&b[4], "r1b.h2r")};
    const char *r2[2] = {keep(&b[5], "r2a.h2r"), keep(&b[6], "r2b.h2r")};
    for (int run = 0; run < 2; run++) {
        for (uint32_t k = 0; k < 2; k++) {
            /* replay 1 at T, its shards 300 ms apart (relative --start-at); replay 2 an hour on */
            run_start_at = 1795741200LL * SEC + (run ? 3600 * SEC : (int64_t)k * 300 * MS);
            w = run_open(run ? r2[k] : r1[k], SHA_A, NULL, k, 2);
            if (!w)
                continue;
            run_section(w, 0, "pg");
            run_result(w, 0, k, "GET", "/x", 0, run ? 2000 : 1000, 0);
            run_end(w, 0, SEC);
            run_close(w);
        }
    }
    run_start_at = 0;
    struct an_call c3 = {{r1[0], r2[0], r1[1], r2[1]}, 4, NULL, {0}, 0, 0, 0, NULL};
    int code;
    json_t *j = analyze_json(&c3, &code);
    CHECK_EQ_INT(code, 0);
    if (j) {
        CHECK_EQ_INT(json_array_size(json_object_get(j, "runs")), 2);
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(j, "runs"), i, r)
        {
            CHECK_EQ_INT(jget_int(r, "shards_seen", NULL), 2);
            CHECK_EQ_INT(jget_int(r, "count", NULL), 2);
        }
        json_decref(j);
    }
}

static void test_shards(void)
{
    const char *s0 = tmp("s0.h2r"), *s1 = tmp("s1.h2r");
    for (uint32_t k = 0; k < 2; k++) {
        struct h2r_run_writer *w = run_open(k ? s1 : s0, SHA_A, NULL, k, 2);
        if (!w)
            return;
        run_section(w, 0, "pg");
        for (uint64_t i = k; i < 1000; i += 2)
            run_result(w, 0, i, "GET", "/x", (int64_t)i * MS, (int64_t)(i + 1) * 1000, 0);
        run_end(w, 0, SEC);
        run_close(w);
    }
    struct an_call c = {{s0, s1}, 2, NULL, {0}, 0, 0, 0, NULL};
    int code;
    json_t *j = analyze_json(&c, &code);
    CHECK_EQ_INT(code, 0);
    if (j) {
        CHECK_EQ_INT(json_array_size(json_object_get(j, "runs")), 1);
        json_t *r = run_named(j, "pg");
        CHECK_EQ_INT(jget_int(r, "count", NULL), 1000);
        CHECK_EQ_INT(jget_int(r, "shards_seen", NULL), 2);
        CHECK(near(jget_int(r, "latency_from_intended", "p50_ns"), 500e3, 0.01));
        CHECK_EQ_INT(jget_int(r, "latency_from_intended", "max_ns"), 1000000);
        json_decref(j);
    }
    struct an_call c2 = {{s0, s0}, 2, NULL, {0}, 0, 0, 0, tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c2, NULL), 2);
    CHECK(strstr(last_err, "given twice") != NULL);
    CHECK(strstr(last_err, "shard 0/2") != NULL);
    test_shards_merge_exactly();
    test_shards_many();
    test_shards_mismatch();
}

static int sha256_file(const char *path, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE], buf[4096];
    unsigned int n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (;;) {
        size_t k = fread(buf, 1, sizeof(buf), f);
        if (k == 0)
            break;
        EVP_DigestUpdate(ctx, buf, k);
    }
    EVP_DigestFinal_ex(ctx, md, &n);
    EVP_MD_CTX_free(ctx);
    fclose(f);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

#define HDR(n, v)                                                                                  \
    {                                                                                              \
        (const uint8_t *)(n), (const uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1                   \
    }

static void test_trace_baseline(void)
{
    const char *trace = tmp("t.h2t"), *run = tmp("tr.h2r"), *bad = tmp("trbad.h2r");
    struct h2r_trace_header th;
    struct h2r_trace_writer *tw = NULL;
    char err[256], hex[65];
    memset(&th, 0, sizeof(th));
    th.tool_version = "test";
    th.source = "test";
    th.linktype = -1;
    CHECK_EQ_INT(h2r_trace_writer_open(&tw, trace, &th, NULL, err, sizeof(err)), 0);
    if (!tw)
        return;
    const struct h2r_hdr req[] = {HDR(":method", "POST"), HDR(":path", "/machine/42/map")};
    for (uint64_t i = 0; i < 100; i++) {
        struct h2r_exchange x;
        memset(&x, 0, sizeof(x));
        x.id = i;
        x.conn_id = 1;
        x.stream_id = (uint32_t)(1 + 2 * i);
        x.req_hdrs = req;
        x.n_req_hdrs = 2;
        x.status = 200;
        x.grpc_status = -1;
        x.rst_code = -1;
        x.goaway_code = -1;
        x.t_req_first_ns = 1700000000000000000LL + (int64_t)i * 10 * MS;
        x.t_resp_end_ns = x.t_req_first_ns + (int64_t)(i + 1) * MS;
        x.error = i == 7 ? "reset by server" : NULL;
        CHECK_EQ_INT(h2r_trace_write_exchange(tw, &x), 0);
    }
    CHECK_EQ_INT(h2r_trace_writer_close(tw), 0);
    CHECK_EQ_INT(sha256_file(trace, hex), 0);
    struct h2r_run_writer *w = run_open(run, hex, NULL, 0, 1);
    if (!w)
        return;
    run_section(w, 0, "replay");
    for (uint64_t i = 0; i < 100; i++)
        run_result(w, 0, i, "POST", "/machine/42/map", (int64_t)i * 10 * MS,
                   (int64_t)(i + 1) * 2 * MS, i == 7 || i == 8 ? 4 : 0);
    run_end(w, 0, 2 * SEC);
    run_close(w);
    write_ab(bad, SHA_B, NULL);

    struct an_call c = {{run}, 1, trace, {"new_failures == 1", "p50 < +120%"}, 2, 0, 0, NULL};
    int code;
    json_t *j = analyze_json(&c, &code);
    CHECK_EQ_INT(code, 0);
    if (j) {
        json_t *t = run_named(j, "t.h2t");
        CHECK(t != NULL);
        CHECK_EQ_STR(json_string_value(json_object_get(t, "kind")), "trace");
        CHECK_EQ_INT(jget_int(t, "errors", NULL), 1);
        CHECK_EQ_INT(jget_int(t, "errors_by_class", "trace_error"), 1);
        CHECK_EQ_INT(jget_int(t, "latency_from_intended", "max_ns"), 100 * MS);
        CHECK(group_named(t, "POST /machine/{n}/map") != NULL);
        json_t *r = run_named(j, "replay");
        json_t *vs = json_object_get(json_object_get(r, "failures"), "vs_reference");
        CHECK_EQ_INT(jget_int(vs, "new", NULL), 1);
        CHECK_EQ_INT(jget_int(vs, "shared", NULL), 1);
        json_decref(j);
    }
    struct an_call c2 = {{bad}, 1, trace, {0}, 0, 0, 0, tmp("o.txt")};
    CHECK_EQ_INT(analyze(&c2, NULL), 2);
    CHECK(strstr(last_err, "another trace") != NULL);
}

static void test_table_width_and_md(void)
{
    const char *path = tmp("wide.h2r");
    struct h2r_run_writer *w = run_open(path, SHA_A, NULL, 0, 1);
    if (!w)
        return;
    run_section(w, 0, "a-target-with-a-rather-long-name-indeed");
    run_section(w, 1, "b");
    char p[300];
    for (uint64_t i = 0; i < 300; i++) {
        /* 300 distinct endpoints that do not fold: the group cap applies */
        snprintf(p, sizeof(p), "/very/long/endpoint/name/that/keeps/going/and/going/ep%c%c%c",
                 'a' + (int)(i % 26), 'a' + (int)(i / 26 % 26), 'a' + (int)(i / 676));
        for (uint32_t s = 0; s < 2; s++)
            run_result(w, s, i, "DELETE", p, (int64_t)i * MS, (int64_t)(1 + s) * MS,
                       s && i % 3 == 0 ? 5 : 0);
    }
    run_end(w, 0, SEC);
    run_end(w, 1, SEC);
    run_close(w);
    const char *out = tmp("wide.txt");
    struct an_call c = {{path}, 1,  NULL, {"p99 < +10%", "error_rate < 1%"}, 2, H2R_ANALYZE_TABLE,
                        0,      out};
    CHECK_EQ_INT(analyze(&c, NULL), 1);
    FILE *f = fopen(out, "r");
    CHECK(f != NULL);
    if (f) {
        char line[4096];
        int lines = 0, too_wide = 0;
        while (fgets(line, sizeof(line), f)) {
            lines++;
            size_t n = strcspn(line, "\n");
            if (n > 100) {
                fprintf(stderr, "%zu columns: %s", n, line);
                too_wide++;
            }
        }
        fclose(f);
        CHECK(lines > 20);
        CHECK_EQ_INT(too_wide, 0);
    }
    int code;
    struct an_call cj = {{path}, 1, NULL, {0}, 0, 0, 0, NULL};
    json_t *j = analyze_json(&cj, &code);
    if (j) {
        json_t *r = run_named(j, "b");
        CHECK_EQ_INT(json_array_size(json_object_get(r, "groups")), 256);
        CHECK(group_named(r, "(other)") != NULL);
        CHECK_EQ_INT(jget_int(r, "groups_overflowed", NULL), 300 - 255);
        json_decref(j);
    }
    const char *md = tmp("wide.md");
    struct an_call cm = {{path}, 1, NULL, {"errors == 0"}, 1, H2R_ANALYZE_MD, 0, md};
    CHECK_EQ_INT(analyze(&cm, NULL), 1);
    f = fopen(md, "r");
    if (f) {
        char buf[65536];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        fclose(f);
        CHECK(strstr(buf, "## h2replay analyze") != NULL);
        CHECK(strstr(buf, "**Gates: FAILED, 1 of 1**") != NULL);
        CHECK(strstr(buf, "| **FAIL** | `errors == 0` | 100 | 0 |") != NULL);
        CHECK(strstr(buf, "### Diff vs `a-target-with-a-rather-long-name-indeed`") != NULL);
    }
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_an_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    devnull = fopen("/dev/null", "w");
    test_known_distribution();
    test_diff_and_failure_points();
    test_new_vs_shared();
    test_empty_and_only_failures();
    test_refusals();
    test_shards();
    test_trace_baseline();
    test_table_width_and_md();
    if (devnull)
        fclose(devnull);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary("test_an_analyze");
}
