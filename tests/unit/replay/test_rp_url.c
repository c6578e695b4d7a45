/*
 * Unit tests for replay target parsing (rp_url.c) and the replay command's
 * value flags: --speed (h2r_replay_parse_speed) and the duration flags.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "h2replay/error.h"
#include "h2replay/replay.h"
#include "h2replay/units.h"
#include "rp_url.h"

static void test_plain(void)
{
    struct rp_target t;
    char err[256];
    CHECK_EQ_INT(rp_target_parse("http://127.0.0.1:8080", &t, err, sizeof(err)), 0);
    CHECK_EQ_STR(t.scheme, "http");
    CHECK_EQ_STR(t.host, "127.0.0.1");
    CHECK_EQ_INT(t.port, 8080);
    CHECK_EQ_INT(t.tls, 0);
    CHECK_EQ_INT(t.host_ip, 1);
    CHECK_EQ_STR(t.authority, "127.0.0.1:8080");
    CHECK_EQ_STR(t.name, "http://127.0.0.1:8080");
    CHECK_EQ_STR(t.url, "http://127.0.0.1:8080");

    CHECK_EQ_INT(rp_target_parse("https://example.com/", &t, err, sizeof(err)), 0);
    CHECK_EQ_INT(t.tls, 1);
    CHECK_EQ_INT(t.port, 443);
    CHECK_EQ_INT(t.host_ip, 0);
    CHECK_EQ_STR(t.authority, "example.com");
    CHECK_EQ_STR(t.url, "https://example.com");

    CHECK_EQ_INT(rp_target_parse("http://localhost", &t, err, sizeof(err)), 0);
    CHECK_EQ_INT(t.port, 80);
}

static void test_named(void)
{
    struct rp_target t;
    char err[256];
    CHECK_EQ_INT(rp_target_parse("sqlite=http://127.0.0.1:9001", &t, err, sizeof(err)), 0);
    CHECK_EQ_STR(t.name, "sqlite");
    CHECK_EQ_STR(t.host, "127.0.0.1");
    CHECK_EQ_INT(t.port, 9001);
    CHECK_EQ_INT(rp_target_parse("pg.v2-x_1=https://db:8443", &t, err, sizeof(err)), 0);
    CHECK_EQ_STR(t.name, "pg.v2-x_1");
    CHECK_EQ_STR(t.host, "db");
    CHECK_EQ_INT(t.tls, 1);
}

static void test_ipv6(void)
{
    struct rp_target t;
    char err[256];
    CHECK_EQ_INT(rp_target_parse("http://[::1]:8080", &t, err, sizeof(err)), 0);
    CHECK_EQ_STR(t.host, "::1");
    CHECK_EQ_INT(t.port, 8080);
    CHECK_EQ_INT(t.host_ip, 1);
    CHECK_EQ_STR(t.authority, "[::1]:8080");
    CHECK_EQ_INT(rp_target_parse("https://[fe80::1]", &t, err, sizeof(err)), 0);
    CHECK_EQ_INT(t.port, 443);
}

static void test_ts2021(void)
{
    struct rp_target t;
    char err[256];
    CHECK_EQ_INT(rp_target_parse("ts2021+http://127.0.0.1:8080", &t, err, sizeof(err)), 0);
    CHECK_EQ_INT(t.ts2021, 1);
    CHECK_EQ_INT(t.tls, 0);
    CHECK_EQ_STR(t.scheme, "http");
    CHECK_EQ_INT(t.port, 8080);
    CHECK_EQ_STR(t.authority, "127.0.0.1:8080");
    CHECK_EQ_STR(t.url, "ts2021+http://127.0.0.1:8080");
    CHECK_EQ_STR(t.name, "ts2021+http://127.0.0.1:8080");
    CHECK_EQ_INT(rp_target_parse("hs=ts2021+https://headscale.example", &t, err, sizeof(err)), 0);
    CHECK_EQ_STR(t.name, "hs");
    CHECK_EQ_INT(t.ts2021, 1);
    CHECK_EQ_INT(t.tls, 1);
    CHECK_EQ_INT(t.port, 443);
    CHECK_EQ_STR(t.url, "ts2021+https://headscale.example");
    CHECK_EQ_INT(rp_target_parse("http://127.0.0.1:8080", &t, err, sizeof(err)), 0);
    CHECK_EQ_INT(t.ts2021, 0);
    CHECK_EQ_INT(rp_target_parse("ts2021+ftp://x", &t, err, sizeof(err)), H2R_ERR_ARG);
    CHECK_EQ_INT(rp_target_parse("ts2021://x", &t, err, sizeof(err)), H2R_ERR_ARG);
    CHECK_EQ_INT(rp_target_parse("ts2021+http://x/machine", &t, err, sizeof(err)), H2R_ERR_ARG);
}

static void test_bad(void)
{
    static const char *const bad[] = {
        "",
        "127.0.0.1:8080",
        "ftp://host",
        "http://",
        "http://:80",
        "http://host:0",
        "http://host:65536",
        "http://host:80x",
        "http://host/path",
        "http://host?q=1",
        "http://user@host",
        "http://[::1",
        "http://[::1]x",
        "http://[zz]:80",
        "http://ho st",
        "name=ftp://x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct rp_target t;
        char err[256] = "";
        int rc = rp_target_parse(bad[i], &t, err, sizeof(err));
        CHECK_EQ_INT(rc, H2R_ERR_ARG);
        CHECK(err[0] != '\0');
        CHECK_EQ_INT(h2r_replay_check_target(bad[i], err, sizeof(err)), H2R_ERR_ARG);
    }
}

static void test_speed(void)
{
    double s = -1;
    CHECK_EQ_INT(h2r_replay_parse_speed("1", &s), 0);
    CHECK(s == 1.0);
    CHECK_EQ_INT(h2r_replay_parse_speed("10x", &s), 0);
    CHECK(s == 10.0);
    CHECK_EQ_INT(h2r_replay_parse_speed("0.5", &s), 0);
    CHECK(s == 0.5);
    CHECK_EQ_INT(h2r_replay_parse_speed("max", &s), 0);
    CHECK(s == 0.0);
    CHECK_EQ_INT(h2r_replay_parse_speed("MAX", &s), 0);
    static const char *const bad[] = {"", "0", "-1", "abc", "1y", "nan", "inf", "1e9", "x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(h2r_replay_parse_speed(bad[i], &s), H2R_ERR_ARG);
}

static void test_durations(void)
{
    /* what --timeout / --connect-timeout accept */
    int64_t ns = 0;
    CHECK_EQ_INT(h2r_parse_duration("5s", &ns), 0);
    CHECK_EQ_INT(ns, 5000000000LL);
    CHECK_EQ_INT(h2r_parse_duration("500ms", &ns), 0);
    CHECK_EQ_INT(ns, 500000000LL);
    CHECK_EQ_INT(h2r_parse_duration("2m", &ns), 0);
    CHECK_EQ_INT(ns, 120000000000LL);
    CHECK_EQ_INT(h2r_parse_duration("3", &ns), 0);
    CHECK_EQ_INT(ns, 3000000000LL);
    CHECK_EQ_INT(h2r_parse_duration("250us", &ns), 0);
    CHECK_EQ_INT(ns, 250000LL);
    CHECK_EQ_INT(h2r_parse_duration("5 s", &ns), H2R_ERR_ARG);
    CHECK_EQ_INT(h2r_parse_duration("-1s", &ns), H2R_ERR_ARG);
    CHECK_EQ_INT(h2r_parse_duration("fast", &ns), H2R_ERR_ARG);
}

static void test_opts_defaults(void)
{
    struct h2r_replay_opts o;
    h2r_replay_opts_init(&o);
    CHECK(o.speed == 1.0);
    CHECK_EQ_INT(o.timeout_ns, 5000000000LL);
    CHECK_EQ_INT(o.connect_timeout_ns, 3000000000LL);
    CHECK_EQ_INT(o.threads, 1);
    char err[256];
    /* no targets: a usage error before anything is read */
    o.trace_path = "/nonexistent";
    o.run_path = "/tmp/x";
    CHECK_EQ_INT(h2r_replay_run(&o, NULL, err, sizeof(err)), H2R_ERR_ARG);
    const char *t[] = {"a=http://127.0.0.1:1", "a=http://127.0.0.1:2"};
    o.targets = t;
    o.n_targets = 2;
    CHECK_EQ_INT(h2r_replay_run(&o, NULL, err, sizeof(err)), H2R_ERR_ARG);
    CHECK(strstr(err, "twice") != NULL);
    o.n_targets = 1;
    o.threads = 0;
    CHECK_EQ_INT(h2r_replay_run(&o, NULL, err, sizeof(err)), H2R_ERR_ARG);
    o.threads = 1;
    CHECK(h2r_replay_run(&o, NULL, err, sizeof(err)) < 0); /* unreadable trace */
    CHECK(strstr(err, "/nonexistent") != NULL);
}

int main(void)
{
    test_plain();
    test_named();
    test_ipv6();
    test_ts2021();
    test_bad();
    test_speed();
    test_durations();
    test_opts_defaults();
    return check_summary("test_rp_url");
}
