/*
 * analyze --server-log (analyze/an_serverlog.c, an_report_serverlog.c).
 *
 * The line parser on real Headscale lines (v0.29.2 JSON with Unix-second
 * "time", v0.23.0 console text with caller and quoted error), RFC 3339 times
 * with fractions and zone offsets, Unix ms/ns times, garbage, truncated and
 * NUL-carrying lines; the classifier (ids, keys, numbers, quotes folded; root
 * causes named); the placement (mid-interval, before/after the run, window
 * counts, first error against the client's first failure); the bounded file
 * reader (over-long lines, FILE:LINE in the skip notes and errors); and a run
 * file analysed with h2r_analyze in every format, TARGET= selection included.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"
#include "h2replay/analyze.h"
#include "h2replay/error.h"
#include "h2replay/run.h"
#include "an_serverlog.h"

#define MS 1000000LL
#define SEC 1000000000LL
/* 2026-11-27T02:22:36Z */
#define T0_SEC 1795746156LL

static char tmpdir[64];

static const char *tmp(const char *name)
{
    static char bufs[8][256];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 256, "%s/%s", tmpdir, name);
    return b;
}

static int parse(const char *line, struct an_slog_event *ev, const char **why)
{
    return an_slog_parse_line(line, strlen(line), ev, why);
}

static void test_time(void)
{
    int64_t ns = 0, res = 0;
    CHECK_EQ_INT(an_slog_parse_time("2026-11-27T02:22:36Z", 20, &ns, &res), 0);
    CHECK_EQ_INT(ns, T0_SEC * SEC);
    CHECK_EQ_INT(res, SEC);
    const char *s = "2026-11-27T03:22:36.250+01:00";
    CHECK_EQ_INT(an_slog_parse_time(s, strlen(s), &ns, &res), 0);
    CHECK_EQ_INT(ns, T0_SEC * SEC + 250 * MS);
    CHECK_EQ_INT(res, MS);
    s = "2026-11-26T21:52:36.123456789-0430";
    CHECK_EQ_INT(an_slog_parse_time(s, strlen(s), &ns, &res), 0);
    CHECK_EQ_INT(ns, T0_SEC * SEC + 123456789);
    CHECK_EQ_INT(res, 1);
    s = "2026-11-27T02:22:36.1234567891234Z"; /* digits past ns are dropped */
    CHECK_EQ_INT(an_slog_parse_time(s, strlen(s), &ns, &res), 0);
    CHECK_EQ_INT(ns, T0_SEC * SEC + 123456789);
    static const char *const bad[] = {"2026-11-27T02:22:36",  "2026-13-27T02:22:36Z",
                                      "2026-11-27T24:00:00Z", "2026-11-27T02:22:36.Z",
                                      "1969-12-31T23:59:59Z", "2026-11-27T02:22:36+1",
                                      "9999-11-27T02:22:36Z", "2026-11-27T02:22:36Zjunk",
                                      "2026-11-27", "", "2026-02-29T00:00:00Z",
                                      "2026-04-31T00:00:00Z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(an_slog_parse_time(bad[i], strlen(bad[i]), &ns, &res) == H2R_ERR_FORMAT);
    CHECK_EQ_INT(an_slog_parse_time("2028-02-29T00:00:00Z", 20, &ns, &res), 0); /* leap year */
}

static void test_json_lines(void)
{
    struct an_slog_event ev;
    const char *why = "";
    /* v0.29.2 as written to tests/data/tailscale/headscale.log: "time" in Unix seconds */
    CHECK_EQ_INT(parse("{\"level\":\"info\",\"method\":\"GET\",\"path\":\"/key\",\"status\":200,"
                       "\"time\":1795740619,\"message\":\"http request\"}",
                       &ev, &why),
                 0);
    CHECK_EQ_INT(ev.format, AN_SL_FMT_JSON);
    CHECK_EQ_INT(ev.level, AN_SL_INFO);
    CHECK_EQ_INT(ev.t_wall_ns, 1795740619LL * SEC);
    CHECK_EQ_INT(ev.res_ns, SEC);
    CHECK_EQ_STR(ev.cls, "http request");
    CHECK_EQ_INT(parse("{\"level\":\"error\",\"caller\":\"/x/auth.go:52\",\"error\":\"authkey "
                       "not found: record not found\",\"node.name\":\"h2r-6bf446-0\","
                       "\"time\":1795746157,\"message\":\"failed to register node\"}",
                       &ev, &why),
                 0);
    CHECK_EQ_INT(ev.level, AN_SL_ERROR);
    CHECK_EQ_STR(ev.cls, "failed to register node: record not found");
    CHECK_EQ_STR(ev.text, "failed to register node: authkey not found: record not found");
    /* RFC 3339 string with a fraction and an offset; "msg" instead of "message" */
    CHECK_EQ_INT(parse("{\"level\":\"warn\",\"time\":\"2026-11-27T03:22:36.5+01:00\","
                       "\"msg\":\"update not sent, context cancelled\"}",
                       &ev, &why),
                 0);
    CHECK_EQ_INT(ev.level, AN_SL_WARN);
    CHECK_EQ_INT(ev.t_wall_ns, T0_SEC * SEC + 500 * MS);
    CHECK_EQ_INT(ev.res_ns, 100 * MS);
    CHECK_EQ_STR(ev.cls, "update not sent, context cancelled");
    /* Unix ms (TimeFormatUnixMs), fractional seconds, an error object */
    CHECK_EQ_INT(parse("{\"level\":\"panic\",\"time\":1795746156250,\"error\":{\"a\":1}}", &ev,
                       &why),
                 0);
    CHECK_EQ_INT(ev.t_wall_ns, T0_SEC * SEC + 250 * MS);
    CHECK_EQ_INT(ev.res_ns, MS);
    CHECK_EQ_INT(ev.level, AN_SL_PANIC);
    CHECK_EQ_INT(parse("{\"level\":\"fatal\",\"time\":1795746156.75,\"message\":\"x\"}", &ev,
                       &why),
                 0);
    CHECK_EQ_INT(ev.t_wall_ns, T0_SEC * SEC + 750 * MS);
    CHECK_EQ_INT(parse("{\"level\":\"debug\",\"time\":1795746156123456789}", &ev, &why), 0);
    CHECK_EQ_INT(ev.t_wall_ns, 1795746156123456789LL);
    CHECK_EQ_STR(ev.cls, "(no message)");
    /* broken ones */
    CHECK(parse("{\"level\":\"error\",\"message\":\"no time\"}", &ev, &why) == H2R_ERR_FORMAT);
    CHECK_EQ_STR(why, "no \"time\"");
    CHECK(parse("{\"level\":\"error\",\"time\":1795746157,\"mess", &ev, &why) == H2R_ERR_FORMAT);
    CHECK_EQ_STR(why, "not valid JSON");
    CHECK(parse("[1,2]", &ev, &why) == H2R_ERR_FORMAT);
    CHECK(parse("{\"time\":-5}", &ev, &why) == H2R_ERR_FORMAT);
    CHECK(parse("{\"time\":1e300}", &ev, &why) == H2R_ERR_FORMAT);
    CHECK(parse("{\"time\":\"yesterday\"}", &ev, &why) == H2R_ERR_FORMAT);
    CHECK(an_slog_parse_line("{\"time\":1}\0x", 13, &ev, &why) == H2R_ERR_FORMAT);
    CHECK_EQ_STR(why, "NUL byte in the line");
    CHECK(parse("   \r", &ev, &why) == H2R_ERR_FORMAT);
    CHECK_EQ_STR(why, "blank line");
}

static void test_console_lines(void)
{
    struct an_slog_event ev;
    const char *why = "";
    /* v0.23.0, as seen against a wrong pre-auth key */
    CHECK_EQ_INT(parse("2026-11-27T02:22:36Z ERR ../../root/go/pkg/mod/github.com/juanfont/"
                       "headscale@v0.23.0/hscontrol/auth.go:252 > Failed authentication via "
                       "AuthKey error=\"AuthKey not found\" node=h2r-6bf446-0",
                       &ev, &why),
                 0);
    CHECK_EQ_INT(ev.format, AN_SL_FMT_CONSOLE);
    CHECK_EQ_INT(ev.level, AN_SL_ERROR);
    CHECK_EQ_INT(ev.t_wall_ns, T0_SEC * SEC);
    CHECK_EQ_INT(ev.res_ns, SEC);
    CHECK_EQ_STR(ev.text, "Failed authentication via AuthKey: AuthKey not found");
    CHECK_EQ_STR(ev.cls, "failed authentication via authkey: authkey not found");
    CHECK_EQ_INT(parse("2026-11-27T02:22:36Z ERR ../hscontrol/auth.go:281 > Failed "
                       "authentication via AuthKey node=h2r-6bf446-1",
                       &ev, &why),
                 0);
    CHECK_EQ_STR(ev.cls, "failed authentication via authkey");
    CHECK_EQ_INT(parse("2026-11-27T02:22:26Z WRN gRPC is running without security", &ev, &why),
                 0);
    CHECK_EQ_INT(ev.level, AN_SL_WARN);
    CHECK_EQ_STR(ev.cls, "grpc is running without security");
    /* pointers and ids in the message; a local zone offset */
    CHECK_EQ_INT(parse("2026-11-27T03:22:35+01:00 INF ../poll.go:705 > node has connected, "
                       "mapSession: 0xffafe8bbc80, chan: 0xffafe936e70 node=h2r-f1cf1e-0 "
                       "node.id=1 stream=true",
                       &ev, &why),
                 0);
    CHECK_EQ_INT(ev.t_wall_ns, (T0_SEC - 1) * SEC);
    CHECK_EQ_STR(ev.cls, "node has connected, mapsession: {ptr}, chan: {ptr}");
    /* colours (a terminal) and an escaped quote in the error */
    CHECK_EQ_INT(parse("\x1b[90m2026-11-27T02:22:37Z\x1b[0m \x1b[31mERR\x1b[0m update failed "
                       "\x1b[36merror=\x1b[0m\"pq: \\\"x\\\" database is locked (5)\"",
                       &ev, &why),
                 0);
    CHECK_EQ_INT(ev.level, AN_SL_ERROR);
    CHECK_EQ_STR(ev.cls, "update failed: database is locked");
    CHECK_EQ_INT(parse("2026-11-27T02:22:37Z ??? strange level", &ev, &why), 0);
    CHECK_EQ_INT(ev.level, AN_SL_NONE);
    CHECK(parse("<nil> INF no time", &ev, &why) == H2R_ERR_FORMAT);
    CHECK_EQ_STR(why, "console line without a time");
    CHECK(parse("goroutine 1 [running]:", &ev, &why) == H2R_ERR_FORMAT);
    CHECK(parse("2026-11-27T02:22:37Z NOPE x", &ev, &why) == H2R_ERR_FORMAT);
    CHECK_EQ_STR(why, "console line without a level");
    CHECK(parse("2026-11-27T02:22", &ev, &why) == H2R_ERR_FORMAT);
    /* Go's standard log (net/http's own complaints in v0.29.2's log): local time, no level */
    setenv("TZ", "UTC", 1);
    tzset();
    CHECK_EQ_INT(parse("2026/11/27 02:22:36 http: response.Write on hijacked connection from "
                       "github.com/go-chi/chi/v5/middleware.(*basicWriter).Write "
                       "(wrap_writer.go:99)",
                       &ev, &why),
                 0);
    CHECK_EQ_INT(ev.format, AN_SL_FMT_GOLOG);
    CHECK_EQ_INT(ev.level, AN_SL_NONE);
    CHECK_EQ_INT(ev.t_wall_ns, T0_SEC * SEC);
    CHECK(parse("2026/13/27 02:22:36 x", &ev, &why) == H2R_ERR_FORMAT);
    /* a lone caller without a message */
    CHECK_EQ_INT(parse("2026-11-27T02:22:37Z ERR a.go:1 >", &ev, &why), 0);
    CHECK_EQ_STR(ev.cls, "(no message)");
}

static void test_classify(void)
{
    char c[AN_SLOG_CLASS_MAX];
    an_slog_classify("failed to apply change", "database is locked (5) (SQLITE_BUSY)", c,
                     sizeof(c));
    CHECK_EQ_STR(c, "failed to apply change: database is locked");
    an_slog_classify("failed to apply change", "SQLITE_BUSY", c, sizeof(c));
    CHECK_EQ_STR(c, "failed to apply change: database is locked");
    an_slog_classify("update not sent", "context deadline exceeded", c, sizeof(c));
    CHECK_EQ_STR(c, "update not sent: context deadline exceeded");
    an_slog_classify("update not sent", "context canceled", c, sizeof(c));
    CHECK_EQ_STR(c, "update not sent: context canceled");
    an_slog_classify("Node 1234 not found for key nodekey:0123456789abcdef", NULL, c, sizeof(c));
    CHECK_EQ_STR(c, "node {n} not found for key nodekey:{key}");
    an_slog_classify("user 'bob' took 12.5ms at 10.0.0.1:5432 id=550e8400-e29b-41d4-a716-"
                     "446655440000",
                     "", c, sizeof(c));
    CHECK_EQ_STR(c, "user {q} took {n} at {addr} id={uuid}");
    an_slog_classify("GET /machine/12345/map from node5", NULL, c, sizeof(c));
    CHECK_EQ_STR(c, "get /machine/{n}/map from node{n}");
    an_slog_classify("Post \"http://127.0.0.1:1/x\": dial tcp: connection refused", NULL, c,
                     sizeof(c));
    CHECK_EQ_STR(c, "post {q}: dial tcp: connection refused");
    an_slog_classify(NULL, NULL, c, sizeof(c));
    CHECK_EQ_STR(c, "(no message)");
    /* long text is cut, bytes outside ASCII become '?' */
    char longmsg[600];
    memset(longmsg, 'z', sizeof(longmsg) - 1);
    longmsg[sizeof(longmsg) - 1] = '\0';
    longmsg[3] = ' ';
    CHECK(an_slog_classify(longmsg, NULL, c, sizeof(c)) < sizeof(c));
    CHECK(strcmp(c + strlen(c) - 3, "...") == 0);
    an_slog_classify("caf\xc3\xa9 \x01 x", NULL, c, sizeof(c));
    CHECK_EQ_STR(c, "caf?? ? x");
}

static void test_placement(void)
{
    struct an_slog *s = NULL;
    /* run span [0, 10 s], 1 s windows, t0 at T0_SEC + 0.9 s */
    int64_t t0 = T0_SEC * SEC + 900 * MS;
    CHECK_EQ_INT(an_slog_new(&s, t0, 10 * SEC, SEC, 11), 0);
    if (!s)
        return;
    an_slog_relate(s, 1, 200 * MS, 1, 2 * SEC);
    struct an_slog_event ev;
    const char *why;
    char line[256];
    /* whole second T0: [T0, T0+1) overlaps the run's start -> in the run, at max(0, -0.4 s) */
    snprintf(line, sizeof(line), "{\"level\":\"error\",\"time\":%lld,\"message\":\"a\"}",
             (long long)T0_SEC);
    CHECK_EQ_INT(parse(line, &ev, &why), 0);
    an_slog_add(s, &ev);
    CHECK_EQ_INT(s->in_run[AN_SL_ERROR], 1);
    CHECK_EQ_INT(s->first_error_ns, 0);
    CHECK_EQ_INT(s->w_errors[0], 1);
    /* a second earlier: entirely before */
    snprintf(line, sizeof(line), "{\"level\":\"error\",\"time\":%lld,\"message\":\"a\"}",
             (long long)T0_SEC - 1);
    CHECK_EQ_INT(parse(line, &ev, &why), 0);
    an_slog_add(s, &ev);
    CHECK_EQ_INT(s->before[AN_SL_ERROR], 1);
    /* T0+3: placed at 3.5 - 0.9 = 2.6 s, window 2 */
    snprintf(line, sizeof(line), "{\"level\":\"warn\",\"time\":%lld,\"message\":\"w\"}",
             (long long)T0_SEC + 3);
    CHECK_EQ_INT(parse(line, &ev, &why), 0);
    an_slog_add(s, &ev);
    CHECK_EQ_INT(s->w_warnings[2], 1);
    CHECK_EQ_INT(s->first_warning_ns, 2600 * MS);
    /* T0+11 starts at 10.1 s: after */
    snprintf(line, sizeof(line), "{\"level\":\"fatal\",\"time\":%lld,\"message\":\"z\"}",
             (long long)T0_SEC + 11);
    CHECK_EQ_INT(parse(line, &ev, &why), 0);
    an_slog_add(s, &ev);
    CHECK_EQ_INT(s->after[AN_SL_FATAL], 1);
    /* info: only counted */
    snprintf(line, sizeof(line), "{\"level\":\"info\",\"time\":%lld,\"message\":\"i\"}",
             (long long)T0_SEC + 5);
    CHECK_EQ_INT(parse(line, &ev, &why), 0);
    an_slog_add(s, &ev);
    CHECK_EQ_INT(s->in_run[AN_SL_INFO], 1);
    CHECK_EQ_INT(an_slog_errors(s), 1);
    CHECK_EQ_INT(an_slog_warnings(s), 1);
    const struct an_slog_class *top[4];
    size_t n = an_slog_top(s, top, 4);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_STR(top[0]->key, "a");
    CHECK_EQ_INT(top[0]->count, 2);
    CHECK_EQ_INT(top[0]->before, 1);
    CHECK_EQ_INT(top[0]->in_run, 1);
    CHECK_EQ_INT(top[0]->t_first, -1400 * MS);
    CHECK_EQ_INT(top[0]->t_last, 0);
    /* class overflow: bounded, the rest in "(other)" */
    for (int i = 0; i < 100; i++) {
        memset(&ev, 0, sizeof(ev));
        ev.format = AN_SL_FMT_JSON;
        ev.level = AN_SL_WARN;
        ev.t_wall_ns = t0 + SEC;
        ev.res_ns = SEC;
        snprintf(ev.cls, sizeof(ev.cls), "class %c%c", 'a' + i % 26, 'a' + i / 26);
        an_slog_add(s, &ev);
    }
    CHECK_EQ_INT(s->n_cls, AN_SLOG_MAX_CLASSES);
    CHECK_EQ_STR(s->cls[AN_SLOG_MAX_CLASSES - 1].key, AN_SLOG_OTHER);
    an_slog_free(s);
    an_slog_free(NULL);
}

static void test_read_file(void)
{
    const char *path = tmp("hs.log");
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    fprintf(f, "{\"level\":\"info\",\"time\":%lld,\"message\":\"starting headscale\"}\n",
            (long long)T0_SEC);
    fprintf(f, "\n");
    fprintf(f, "garbage line\n");
    for (int i = 0; i < 70000; i++) /* over 64 KiB: skipped, the reader keeps its bound */
        fputc('x', f);
    fprintf(f, "\n{\"level\":\"error\",\"time\":%lld,\"message\":\"trunc", (long long)T0_SEC);
    fprintf(f, "\n2026-11-27T02:22:37Z ERR lost update error=\"context canceled\"");
    fclose(f); /* no final newline: the last line still counts */
    struct an_slog *s = NULL;
    CHECK_EQ_INT(an_slog_new(&s, T0_SEC * SEC, 5 * SEC, SEC, 6), 0);
    if (!s)
        return;
    char err[512] = "";
    CHECK_EQ_INT(an_slog_read_file(path, &s, 1, err, sizeof(err)), 0);
    CHECK_EQ_INT(s->lines, 6);
    CHECK_EQ_INT(s->blank, 1);
    CHECK_EQ_INT(s->skipped, 3);
    CHECK_EQ_INT(s->too_long, 1);
    CHECK_EQ_INT(s->n_json, 1);
    CHECK_EQ_INT(s->n_console, 1);
    CHECK_EQ_STR(an_slog_format_name(s), "mixed");
    CHECK_EQ_INT(s->n_skip_examples, 3);
    CHECK(strstr(s->skip_examples[0], "hs.log:3: not a zerolog line") != NULL);
    CHECK(strstr(s->skip_examples[1], "hs.log:4: line longer than 64 KiB") != NULL);
    CHECK(strstr(s->skip_examples[2], "hs.log:5: not valid JSON") != NULL);
    CHECK_EQ_INT(s->w_errors[1], 1);
    CHECK_EQ_STR(s->cls[0].key, "lost update: context canceled");
    an_slog_free(s);

    /* a file with no zerolog line at all is an error naming FILE:LINE */
    const char *bad = tmp("bad.log");
    f = fopen(bad, "w");
    if (f) {
        fprintf(f, "\nhello\nworld\n");
        fclose(f);
    }
    CHECK_EQ_INT(an_slog_new(&s, T0_SEC * SEC, 5 * SEC, SEC, 6), 0);
    CHECK_EQ_INT(an_slog_read_file(bad, &s, 1, err, sizeof(err)), H2R_ERR_FORMAT);
    CHECK(strstr(err, "bad.log:2:") != NULL);
    CHECK_EQ_INT(an_slog_read_file(tmp("missing.log"), &s, 1, err, sizeof(err)), H2R_ERR_IO);
    CHECK(strstr(err, "missing.log") != NULL);
    an_slog_free(s);
}

/* ------------------------------------------------------- through h2r_analyze */

static void write_run(const char *path)
{
    struct h2r_run_meta m;
    memset(&m, 0, sizeof(m));
    m.tool_version = "test";
    m.trace_sha256 = "";
    m.settings = "ts2021";
    m.shard_count = 1;
    struct h2r_run_writer *w = NULL;
    char err[256];
    CHECK_EQ_INT(h2r_run_writer_open(&w, path, &m, err, sizeof(err)), 0);
    if (!w)
        return;
    for (uint32_t sec = 0; sec < 2; sec++) {
        struct h2r_run_section s;
        memset(&s, 0, sizeof(s));
        s.id = sec;
        s.name = sec ? "pg" : "hs";
        s.url = "ts2021+http://127.0.0.1:1";
        s.speed = 1;
        s.timeout_ns = 5 * SEC;
        s.t0_wall_ns = (T0_SEC + 100 * sec) * SEC + 900 * MS;
        s.clock_max_error_ns = 2 * MS;
        CHECK_EQ_INT(h2r_run_write_section(w, &s), 0);
        /* 10 s: one register per 500 ms; the ones due from 4 s on fail */
        for (uint64_t i = 0; i < 20; i++) {
            struct h2r_run_result r;
            memset(&r, 0, sizeof(r));
            r.section = sec;
            r.exchange_id = i;
            r.method = "POST";
            r.path = "/machine/register";
            r.authority = "127.0.0.1:1";
            r.t_intended_ns = (int64_t)i * 500 * MS;
            r.t_sent_ns = r.t_intended_ns + MS;
            r.t_first_byte_ns = r.t_intended_ns + 3 * MS;
            r.t_done_ns = r.t_intended_ns + 4 * MS;
            r.status = i >= 8 ? 401 : 200;
            r.grpc_status = -1;
            r.trace_status = -1;
            r.trace_grpc_status = -1;
            r.err_class = i >= 8 ? H2R_EC_TS_AUTH : H2R_EC_NONE;
            r.flags = H2R_RES_F_TS;
            CHECK_EQ_INT(h2r_run_write_result(w, &r), 0);
        }
        struct h2r_run_section_end e;
        memset(&e, 0, sizeof(e));
        e.section = sec;
        e.t_end_ns = 10 * SEC;
        e.exchanges = 20;
        CHECK_EQ_INT(h2r_run_write_section_end(w, &e), 0);
    }
    CHECK_EQ_INT(h2r_run_writer_close(w), 0);
}

static size_t gates_failed;

static int analyze_gate(const char *run, const char *slog, int format, const char *out,
                        const char *gate, char *err, size_t errlen)
{
    const char *inputs[] = {run};
    const char *logs[] = {slog};
    const char *gates[] = {gate};
    struct h2r_analyze_opts o;
    h2r_analyze_opts_init(&o);
    o.inputs = inputs;
    o.n_inputs = 1;
    o.format = format;
    o.out_path = out;
    o.server_logs = logs;
    o.n_server_logs = slog ? 1 : 0;
    o.gates = gates;
    o.n_gates = gate ? 1 : 0;
    o.quiet = 1;
    FILE *devnull = fopen("/dev/null", "w");
    o.log = devnull;
    struct h2r_analyze_result res;
    int rc = h2r_analyze(&o, &res, err, errlen);
    gates_failed = res.gates_failed;
    if (devnull)
        fclose(devnull);
    return rc;
}

static int analyze(const char *run, const char *slog, int format, const char *out, char *err,
                   size_t errlen)
{
    const char *inputs[] = {run};
    const char *logs[] = {slog};
    struct h2r_analyze_opts o;
    h2r_analyze_opts_init(&o);
    o.inputs = inputs;
    o.n_inputs = 1;
    o.format = format;
    o.out_path = out;
    o.server_logs = logs;
    o.n_server_logs = 1;
    o.quiet = 1;
    struct h2r_analyze_result res;
    return h2r_analyze(&o, &res, err, errlen);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *b = calloc(1, 1 << 20);
    if (b)
        fread(b, 1, (1 << 20) - 1, f);
    fclose(f);
    return b;
}

static void test_analyze(void)
{
    char run[256], log[256]; /* tmp() recycles its buffers */
    snprintf(run, sizeof(run), "%s", tmp("r.h2rr"));
    snprintf(log, sizeof(log), "%s", tmp("server.log"));
    write_run(run);
    FILE *f = fopen(log, "w");
    if (!f)
        return;
    fprintf(f, "{\"level\":\"warn\",\"time\":%lld,\"message\":\"gRPC is running without "
               "security\"}\n",
            (long long)T0_SEC - 5);
    /* errors at the seconds of the failures (due 4.0 .. 9.5 s after t0 = T0 + 0.9 s) */
    for (int i = 8; i < 20; i++)
        fprintf(f,
                "{\"level\":\"error\",\"error\":\"AuthKey not found\",\"node\":\"h2r-%d\","
                "\"time\":%lld,\"message\":\"Failed authentication via AuthKey\"}\n",
                i, (long long)(T0_SEC + (900 + i * 500 + 4) / 1000));
    fprintf(f, "<<garbage>>\n");
    fclose(f);
    char err[1024] = "", spec[300];
    snprintf(spec, sizeof(spec), "hs=%s", log);
    CHECK_EQ_INT(analyze(run, spec, H2R_ANALYZE_JSON, tmp("o.json"), err, sizeof(err)), 0);
    json_error_t je;
    json_t *root = json_load_file(tmp("o.json"), 0, &je);
    CHECK(root != NULL);
    json_t *runs = json_object_get(root, "runs");
    json_t *hs = json_array_get(runs, 0), *pg = json_array_get(runs, 1);
    CHECK_EQ_STR(json_string_value(json_object_get(hs, "name")), "hs");
    CHECK(json_is_null(json_object_get(pg, "server_log")));
    json_t *sl = json_object_get(hs, "server_log");
    CHECK(json_is_object(sl));
    CHECK_EQ_INT(json_integer_value(json_object_get(sl, "errors")), 12);
    CHECK_EQ_INT(json_integer_value(json_object_get(sl, "warnings")), 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(sl, "skipped")), 1);
    CHECK_EQ_INT(json_integer_value(json_object_get(sl, "resolution_ns")), SEC);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(sl, "before"), "warnings")),
                 1);
    CHECK_EQ_STR(json_string_value(json_object_get(sl, "format")), "json");
    /* first failure done at 4.004 s; its error stamped T0+4 -> placed 4.5 - 0.9 = 3.6 s */
    json_t *vs = json_object_get(sl, "first_error_vs_first_failure_ns");
    CHECK(json_is_integer(vs));
    long long d = (long long)json_integer_value(vs);
    CHECK(d > -SEC && d < SEC);
    CHECK_EQ_INT(json_integer_value(json_object_get(sl, "client_first_failure_ns")),
                 4 * SEC + 4 * MS);
    json_t *cl = json_array_get(json_object_get(sl, "classes"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(cl, "class")),
                 "failed authentication via authkey: authkey not found");
    CHECK_EQ_INT(json_integer_value(json_object_get(cl, "count")), 12);
    /* per-window errors sum to the in-run count and sit where the client failed */
    json_t *we = json_object_get(json_object_get(sl, "windows"), "errors");
    json_t *wc = json_object_get(json_object_get(sl, "windows"), "client_failed");
    long long sum = 0, sum_err_where_client_failed = 0;
    for (size_t i = 0; i < json_array_size(we); i++) {
        long long e = (long long)json_integer_value(json_array_get(we, i));
        sum += e;
        long long cf = (long long)json_integer_value(json_array_get(wc, i));
        long long cf_prev = i ? (long long)json_integer_value(json_array_get(wc, i - 1)) : 0;
        long long cf_next = (long long)json_integer_value(json_array_get(wc, i + 1));
        if (cf || cf_prev || cf_next) /* whole-second stamps: within a window either way */
            sum_err_where_client_failed += e;
    }
    CHECK_EQ_INT(sum, 12);
    CHECK_EQ_INT(sum_err_where_client_failed, 12);
    json_decref(root);

    /* every other format mentions it; html stays self-contained */
    CHECK_EQ_INT(analyze(run, spec, H2R_ANALYZE_TABLE, tmp("o.txt"), err, sizeof(err)), 0);
    char *t = slurp(tmp("o.txt"));
    CHECK(t && strstr(t, "server log") && strstr(t, "server classes"));
    if (t) {
        for (char *l = t; *l;) { /* the 100-column promise */
            char *nl = strchr(l, '\n');
            size_t len = nl ? (size_t)(nl - l) : strlen(l);
            CHECK(len <= 100);
            l += len + (nl != NULL);
        }
    }
    free(t);
    CHECK_EQ_INT(analyze(run, spec, H2R_ANALYZE_MD, tmp("o.md"), err, sizeof(err)), 0);
    t = slurp(tmp("o.md"));
    CHECK(t && strstr(t, "### Server log"));
    free(t);
    CHECK_EQ_INT(analyze(run, spec, H2R_ANALYZE_HTML, tmp("o.html"), err, sizeof(err)), 0);
    t = slurp(tmp("o.html"));
    CHECK(t && strstr(t, "<h2>Server log</h2>") && strstr(t, "#cf222e"));
    CHECK(t && !strstr(t, "<script"));
    free(t);

    /* without TARGET both runs get it (the pg run sees everything "before") */
    CHECK_EQ_INT(analyze(run, log, H2R_ANALYZE_JSON, tmp("o2.json"), err, sizeof(err)), 0);
    root = json_load_file(tmp("o2.json"), 0, &je);
    pg = json_array_get(json_object_get(root, "runs"), 1);
    sl = json_object_get(pg, "server_log");
    CHECK_EQ_INT(json_integer_value(json_object_get(sl, "errors")), 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(sl, "before"), "errors")), 12);
    json_decref(root);

    /* gates: on the last run ("pg"); server_errors counts its log, no log means no value */
    snprintf(spec, sizeof(spec), "pg=%s", log);
    CHECK_EQ_INT(analyze_gate(run, spec, H2R_ANALYZE_JSON, tmp("g.json"), "server_errors <= 0",
                              err, sizeof(err)),
                 0);
    CHECK_EQ_INT(gates_failed, 0);
    CHECK_EQ_INT(analyze_gate(run, log, H2R_ANALYZE_JSON, tmp("g.json"), "server_warnings == 0",
                              err, sizeof(err)),
                 0);
    CHECK_EQ_INT(gates_failed, 0);
    CHECK_EQ_INT(analyze_gate(run, NULL, H2R_ANALYZE_JSON, tmp("g.json"), "server_errors <= 0",
                              err, sizeof(err)),
                 0);
    CHECK_EQ_INT(gates_failed, 1);
    t = slurp(tmp("g.json"));
    CHECK(t && strstr(t, "no --server-log for run 'pg'"));
    free(t);
    CHECK_EQ_INT(h2r_analyze_check_gate("server_errors(/x) <= 1", err, sizeof(err)), H2R_ERR_ARG);
    CHECK(strstr(err, "column 14") != NULL);
    CHECK_EQ_INT(h2r_analyze_check_gate("server_warnings < 10", err, sizeof(err)), 0);

    /* an unknown target names the ones there are */
    snprintf(spec, sizeof(spec), "nope=%s", log);
    CHECK_EQ_INT(analyze(run, spec, H2R_ANALYZE_JSON, tmp("o3.json"), err, sizeof(err)),
                 H2R_ERR_ARG);
    CHECK(strstr(err, "'nope'") && strstr(err, "'hs'") && strstr(err, "'pg'"));
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/h2r-slog-XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    test_time();
    test_json_lines();
    test_console_lines();
    test_classify();
    test_placement();
    test_read_file();
    test_analyze();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary("test_an_serverlog");
}
