/*
 * Unit tests for sharded replays (rp_shard.c): the partition (every
 * connection in exactly one shard for N = 1..8, deterministic whatever the
 * input order, balanced within one session at every point in time, sessions
 * never split), its application to a plan (threads, local indices), the
 * --shard and --start-at parsers, and the wait for the shared origin.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "h2replay/error.h"
#include "h2replay/units.h"
#include "rp_schedule.h"
#include "rp_shard.h"

#define MS 1000000LL
#define SEC 1000000000LL
#define T0 1700000000000000000LL
#define AT_2026 (1795741200LL * SEC) /* 2026-11-27T01:00:00Z */

static uint64_t lcg_state = 12345;

static uint32_t lcg(void)
{
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(lcg_state >> 33);
}

/* ---- rp_shard_assign ---- */

#define NI 61

static void test_assign_exactly_once_balanced(void)
{
    uint64_t keys[NI];
    int64_t t[NI];
    uint32_t out[NI], again[NI];
    for (uint32_t i = 0; i < NI; i++) {
        keys[i] = 1000 + (uint64_t)lcg() % 100000 * 64 + i; /* unique */
        t[i] = T0 + (int64_t)(lcg() % 5000) * MS;
    }
    t[7] = t[8]; /* a tie on time: broken by key */
    for (uint32_t n = 1; n <= 8; n++) {
        uint32_t sessions = 0;
        for (uint32_t i = 0; i < NI; i++)
            out[i] = UINT32_MAX;
        CHECK_EQ_INT(rp_shard_assign(keys, t, NI, n, out, &sessions), 0);
        CHECK_EQ_INT(sessions, NI);
        uint32_t per[8] = {0};
        int in_range = 1;
        for (uint32_t i = 0; i < NI; i++) {
            in_range &= out[i] < n;
            if (out[i] < n)
                per[out[i]]++;
        }
        CHECK(in_range); /* every item in exactly one shard (out[] holds one value) */
        uint32_t total = 0, lo = UINT32_MAX, hi = 0;
        for (uint32_t s = 0; s < n; s++) {
            total += per[s];
            lo = per[s] < lo ? per[s] : lo;
            hi = per[s] > hi ? per[s] : hi;
            CHECK_EQ_INT(per[s], NI / n + (s < NI % n ? 1 : 0));
        }
        CHECK_EQ_INT(total, NI);
        CHECK(hi - lo <= 1);

        /* balanced at every point in time: walk the items in (t, key) order */
        uint32_t order[NI];
        for (uint32_t i = 0; i < NI; i++)
            order[i] = i;
        for (uint32_t i = 1; i < NI; i++) /* insertion sort: tiny */
            for (uint32_t j = i; j > 0; j--) {
                uint32_t a = order[j - 1], b = order[j];
                int after = t[a] > t[b] || (t[a] == t[b] && keys[a] > keys[b]);
                if (!after)
                    break;
                order[j - 1] = b;
                order[j] = a;
            }
        uint32_t run[8] = {0};
        int prefix_ok = 1;
        for (uint32_t k = 0; k < NI; k++) {
            uint32_t s = out[order[k]];
            prefix_ok &= s == k % n; /* round-robin in time order */
            run[s]++;
            uint32_t rlo = UINT32_MAX, rhi = 0;
            for (uint32_t q = 0; q < n; q++) {
                rlo = run[q] < rlo ? run[q] : rlo;
                rhi = run[q] > rhi ? run[q] : rhi;
            }
            prefix_ok &= rhi - rlo <= 1;
        }
        CHECK(prefix_ok);

        /* deterministic, and independent of the input order */
        CHECK_EQ_INT(rp_shard_assign(keys, t, NI, n, again, NULL), 0);
        CHECK_EQ_MEM(out, sizeof(out), again, sizeof(again));
        uint64_t rk[NI];
        int64_t rt[NI];
        uint32_t rout[NI];
        for (uint32_t i = 0; i < NI; i++) {
            rk[i] = keys[NI - 1 - i];
            rt[i] = t[NI - 1 - i];
        }
        CHECK_EQ_INT(rp_shard_assign(rk, rt, NI, n, rout, NULL), 0);
        int same = 1;
        for (uint32_t i = 0; i < NI; i++)
            same &= rout[NI - 1 - i] == out[i];
        CHECK(same);
    }
    CHECK_EQ_INT(rp_shard_assign(keys, t, NI, 0, out, NULL), H2R_ERR_ARG);
    CHECK_EQ_INT(rp_shard_assign(keys, t, 0, 3, out, NULL), 0);
}

static void test_assign_sessions(void)
{
    /* 12 connections, 5 sessions: keys 1,1,1, 2, 3,3, 4,4,4,4, 5,5 */
    const uint64_t keys[12] = {1, 2, 3, 1, 4, 4, 5, 3, 4, 1, 5, 4};
    int64_t t[12];
    for (uint32_t i = 0; i < 12; i++)
        t[i] = T0 + (int64_t)(12 - i) * MS; /* later items start earlier */
    for (uint32_t n = 1; n <= 8; n++) {
        uint32_t out[12], sessions = 0;
        CHECK_EQ_INT(rp_shard_assign(keys, t, 12, n, out, &sessions), 0);
        CHECK_EQ_INT(sessions, 5);
        int together = 1;
        uint32_t per[8] = {0};
        for (uint32_t i = 0; i < 12; i++)
            for (uint32_t j = 0; j < 12; j++)
                together &= keys[i] != keys[j] || out[i] == out[j];
        CHECK(together); /* a session is never split */
        for (uint64_t k = 1; k <= 5; k++)
            for (uint32_t i = 0; i < 12; i++)
                if (keys[i] == k) {
                    per[out[i]]++;
                    break;
                }
        for (uint32_t s = 0; s < n; s++)
            CHECK_EQ_INT(per[s], 5 / n + (s < 5 % n ? 1 : 0));
    }
    /* sessions ordered by their earliest connection: key 4 (item 11, earliest) goes first */
    uint32_t out[12];
    CHECK_EQ_INT(rp_shard_assign(keys, t, 12, 5, out, NULL), 0);
    CHECK_EQ_INT(out[11], 0); /* key 4 */
    CHECK_EQ_INT(out[10], 1); /* key 5 */
    CHECK_EQ_INT(out[9], 2);  /* key 1 */
    CHECK_EQ_INT(out[7], 3);  /* key 3 */
    CHECK_EQ_INT(out[1], 4);  /* key 2 */
}

/* ---- plans ---- */

static struct h2r_hdr hdrs[4];

static struct h2r_hdr hdr(const char *n, const char *v)
{
    struct h2r_hdr h;
    h.name = (const uint8_t *)n;
    h.name_len = (uint32_t)strlen(n);
    h.value = (const uint8_t *)v;
    h.value_len = (uint32_t)strlen(v);
    return h;
}

static void add_exchange(struct rp_plan *p, uint64_t id, uint64_t conn, int64_t start_ms)
{
    hdrs[0] = hdr(":method", "GET");
    hdrs[1] = hdr(":scheme", "http");
    hdrs[2] = hdr(":authority", "capture.example");
    hdrs[3] = hdr(":path", "/x");
    struct h2r_exchange x;
    memset(&x, 0, sizeof(x));
    x.id = id;
    x.conn_id = conn;
    x.stream_id = (uint32_t)(2 * id + 1);
    x.req_hdrs = hdrs;
    x.n_req_hdrs = 4;
    x.status = 200;
    x.grpc_status = -1;
    x.rst_code = -1;
    x.goaway_code = -1;
    x.t_req_first_ns = T0 + start_ms * MS;
    x.t_resp_end_ns = x.t_req_first_ns + MS;
    CHECK_EQ_INT(rp_plan_add_exchange(p, &x), 0);
}

#define PLAN_CONNS 23

/* 23 connections with 1..7 exchanges each (161 in all, ids 1..), plus one without any. */
static struct rp_plan *make_plan(void)
{
    struct rp_plan *p = NULL;
    CHECK_EQ_INT(rp_plan_new(&p, 0), 0);
    if (!p)
        return NULL;
    struct h2r_conn empty;
    memset(&empty, 0, sizeof(empty));
    empty.id = 9999;
    empty.t_open_ns = T0;
    CHECK_EQ_INT(rp_plan_add_conn(p, &empty), 0);
    uint64_t id = 1;
    for (uint64_t c = 0; c < PLAN_CONNS; c++)
        for (uint64_t k = 0; k < 1 + c % 7; k++)
            add_exchange(p, id++, 100 + c, (int64_t)((c * 37) % 23) * 10 + (int64_t)k * 3);
    CHECK_EQ_INT(rp_plan_finish(p), 0);
    return p;
}

/* Pairs of connections form one session (ids 100,101 -> 50; 102,103 -> 51 ...). */
static uint64_t key_pairs(const struct rp_plan *p, uint32_t c, void *arg)
{
    (void)arg;
    return p->conns[c].trace_id / 2;
}

static void test_plan_partition(void)
{
    struct rp_plan *p = make_plan();
    if (!p)
        return;
    for (int pairs = 0; pairs < 2; pairs++) {
        for (uint32_t n = 1; n <= 8; n++) {
            for (uint32_t threads = 1; threads <= 3; threads++) {
                uint32_t *owner = calloc(p->n_conns, sizeof(*owner)); /* shards that own it */
                uint32_t *xowner = calloc(p->n_xs, sizeof(*xowner));
                uint32_t *shard_of = calloc(p->n_conns, sizeof(*shard_of));
                uint64_t xs_total = 0;
                uint32_t conns_lo = UINT32_MAX, conns_hi = 0, sess_lo = UINT32_MAX, sess_hi = 0;
                if (!owner || !xowner || !shard_of)
                    break;
                for (uint32_t s = 0; s < n; s++) {
                    struct rp_shard_stats st;
                    CHECK_EQ_INT(rp_shard_partition(p, threads, s, n, pairs ? key_pairs : NULL,
                                                    NULL, &st),
                                 0);
                    CHECK_EQ_INT(p->n_threads, threads);
                    uint64_t xs = 0, in_threads = 0;
                    uint32_t conns = 0;
                    for (uint32_t c = 0; c < p->n_conns; c++) {
                        if (p->conns[c].thread == RP_SHARD_NONE && n > 1)
                            continue;
                        CHECK(p->conns[c].thread < threads);
                        owner[c]++;
                        shard_of[c] = s;
                        conns++;
                    }
                    for (uint32_t i = 0; i < p->n_xs; i++) {
                        uint32_t t = p->conns[p->xs[i].conn].thread;
                        if (t == RP_SHARD_NONE)
                            continue;
                        xowner[i]++;
                        xs++;
                        CHECK(p->xs[i].local < p->thread_xs[t]);
                    }
                    for (uint32_t t = 0; t < threads; t++)
                        in_threads += p->thread_xs[t];
                    CHECK_EQ_INT(st.xs, xs);
                    CHECK_EQ_INT(in_threads, xs);
                    if (n > 1)
                        CHECK_EQ_INT(st.conns, conns);
                    xs_total += xs;
                    sess_lo = st.sessions < sess_lo ? st.sessions : sess_lo;
                    sess_hi = st.sessions > sess_hi ? st.sessions : sess_hi;
                    conns_lo = conns < conns_lo ? conns : conns_lo;
                    conns_hi = conns > conns_hi ? conns : conns_hi;
                }
                int once = 1, xonce = 1, empty_none = 1, pairs_ok = 1;
                for (uint32_t c = 0; c < p->n_conns; c++) {
                    if (p->conns[c].n_x == 0)
                        empty_none &= n == 1 || owner[c] == 0;
                    else
                        once &= owner[c] == 1;
                    for (uint32_t d = 0; pairs && d < p->n_conns; d++)
                        if (p->conns[c].n_x && p->conns[d].n_x &&
                            p->conns[c].trace_id / 2 == p->conns[d].trace_id / 2)
                            pairs_ok &= shard_of[c] == shard_of[d];
                }
                for (uint32_t i = 0; i < p->n_xs; i++)
                    xonce &= xowner[i] == 1;
                CHECK(once);       /* every connection in exactly one shard */
                CHECK(xonce);      /* so every exchange is replayed exactly once */
                CHECK(empty_none); /* a connection without exchanges is opened by no shard */
                CHECK(pairs_ok);   /* a session never spans shards */
                CHECK_EQ_INT(xs_total, p->n_xs);
                if (n > 1 && !pairs)
                    CHECK(conns_hi - conns_lo <= 1);
                if (n > 1 && pairs) /* sessions of 1 or 2 connections, balanced within one */
                    CHECK(conns_hi - conns_lo <= 3);
                if (n > 1)
                    CHECK(sess_hi - sess_lo <= 1);
                free(owner);
                free(xowner);
                free(shard_of);
            }
        }
    }
    /* unsharded is exactly rp_plan_partition */
    struct rp_shard_stats st;
    CHECK_EQ_INT(rp_shard_partition(p, 2, 0, 1, NULL, NULL, &st), 0);
    CHECK_EQ_INT(st.xs, p->n_xs);
    CHECK_EQ_INT(st.conns, PLAN_CONNS);
    int rr = 1;
    for (uint32_t c = 0; c < p->n_conns; c++)
        rr &= p->conns[c].thread == c % 2;
    CHECK(rr);
    CHECK_EQ_INT(rp_shard_partition(p, 2, 3, 3, NULL, NULL, NULL), H2R_ERR_ARG);
    CHECK_EQ_INT(rp_shard_partition(p, 0, 0, 3, NULL, NULL, NULL), H2R_ERR_ARG);
    rp_plan_free(p);
}

static void test_settings_and_opts(void)
{
    char buf[128] = "speed=1 threads=2";
    rp_shard_settings(buf, sizeof(buf), 1, NULL);
    CHECK_EQ_STR(buf, "speed=1 threads=2");
    rp_shard_settings(buf, sizeof(buf), 4, NULL);
    CHECK_EQ_STR(buf, "speed=1 threads=2 shards=4 partition=conn:" RP_SHARD_SCHEME);
    char small[8] = "speed=1";
    rp_shard_settings(small, sizeof(small), 4, NULL); /* no room: left alone, terminated */
    CHECK_EQ_STR(small, "speed=1");

    struct h2r_replay_opts o;
    const char *two[2] = {"http://a", "http://b"};
    char err[256];
    h2r_replay_opts_init(&o);
    o.targets = two;
    o.n_targets = 2;
    CHECK_EQ_INT(rp_shard_check_opts(&o, err, sizeof(err)), 0);
    o.shard_index = 3;
    o.shard_count = 3;
    CHECK_EQ_INT(rp_shard_check_opts(&o, err, sizeof(err)), H2R_ERR_ARG);
    o.shard_index = 2;
    CHECK_EQ_INT(rp_shard_check_opts(&o, err, sizeof(err)), 0);
    o.start_at_ns = AT_2026;
    CHECK_EQ_INT(rp_shard_check_opts(&o, err, sizeof(err)), H2R_ERR_ARG);
    CHECK(strstr(err, "one --target") != NULL);
    o.n_targets = 1;
    CHECK_EQ_INT(rp_shard_check_opts(&o, err, sizeof(err)), 0);
}

/* ---- flags ---- */

static void test_parse_shard(void)
{
    uint32_t i = 77, n = 77;
    char err[256];
    CHECK_EQ_INT(h2r_replay_parse_shard("0/1", &i, &n, err, sizeof(err)), 0);
    CHECK_EQ_INT(i, 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(h2r_replay_parse_shard("2/3", &i, &n, err, sizeof(err)), 0);
    CHECK_EQ_INT(i, 2);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(h2r_replay_parse_shard("99999/100000", &i, &n, err, sizeof(err)), 0);
    CHECK_EQ_INT(i, 99999);
    CHECK_EQ_INT(h2r_replay_parse_shard("3/3", &i, &n, err, sizeof(err)), H2R_ERR_ARG);
    CHECK(strstr(err, "0-based") != NULL);
    CHECK(strstr(err, "JOB_COMPLETION_INDEX") != NULL);
    const char *bad[] = {"", "3", "/3", "1/", "-1/3", "1/-3", "+1/3", "1/0", "a/3", "1/3x",
                         " 1/3", "1 /3", "0/100001", "1/2/3", "0x1/3", "1234567890/3"};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        i = n = 77;
        int rc = h2r_replay_parse_shard(bad[k], &i, &n, err, sizeof(err));
        if (rc != H2R_ERR_ARG)
            fprintf(stderr, "accepted --shard '%s'\n", bad[k]);
        CHECK_EQ_INT(rc, H2R_ERR_ARG);
        CHECK(i == 77 && n == 77);
    }
    CHECK_EQ_INT(h2r_replay_parse_shard(NULL, &i, &n, err, sizeof(err)), H2R_ERR_ARG);
}

static void test_parse_start_at(void)
{
    const int64_t now = AT_2026 - 10 * SEC;
    int64_t at = 0;
    char err[256];
    struct {
        const char *s;
        int64_t want;
    } good[] = {
        {"2026-11-27T01:00:00Z", AT_2026},
        {"2026-11-27t01:00:00z", AT_2026},
        {"2026-11-27 01:00:00Z", AT_2026},
        {"2026-11-27T01:00:00.25Z", AT_2026 + 250 * MS},
        {"2026-11-27T01:00:00.123456789Z", AT_2026 + 123456789},
        {"2026-11-27T02:30:00+01:30", AT_2026},
        {"2026-11-26T23:00:00-02:00", AT_2026},
        {"2026-11-27T00:59:60Z", AT_2026}, /* a leap second is the next minute's :00 */
        {"1795741200", AT_2026},
        {"1795741200.5", AT_2026 + 500 * MS},
        {"1795741200000000000", AT_2026},
        {"+30s", now + 30 * SEC},
        {"+2", now + 2 * SEC},
        {"+1500ms", now + 1500 * MS},
        {"+0s", now},
        {"2026-11-27T00:59:56Z", AT_2026 - 4 * SEC}, /* in the past, within the grace */
    };
    for (size_t k = 0; k < sizeof(good) / sizeof(good[0]); k++) {
        at = 0;
        int rc = h2r_replay_parse_start_at(good[k].s, now, &at, err, sizeof(err));
        if (rc || at != good[k].want)
            fprintf(stderr, "--start-at '%s': rc %d at %lld, want %lld (%s)\n", good[k].s, rc,
                    (long long)at, (long long)good[k].want, err);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(at, good[k].want);
    }
    int64_t leap = 0;
    CHECK_EQ_INT(h2r_replay_parse_start_at("2000-02-29T23:59:59Z", 951868799LL * SEC, &leap, err,
                                           sizeof(err)),
                 0);
    CHECK_EQ_INT(leap, 951868799LL * SEC);
    const char *bad[] = {
        "",
        "2026-11-27T01:00:00",    /* no zone: local time differs between machines */
        "2026-13-27T01:00:00Z",   /* month */
        "2026-02-29T01:00:00Z",   /* not a leap year */
        "2026-11-27T24:00:00Z",   /* hour */
        "2026-11-27T01:00:00.Z",  /* empty fraction */
        "2026-11-27T01:00:00+1:00",
        "2026-11-27T01:00:00Zjunk",
        "26-11-27T01:00:00Z",
        "1795741200000", /* milliseconds: ambiguous */
        "1795741200x",
        "+", "+-3s", "+3 parsecs", "+25h", /* beyond the 24 h wait */
        "2026-11-29T01:00:00Z",            /* more than 24 h ahead */
        "2026-11-27T00:59:40Z",            /* 10 s in the past: beyond the 5 s grace */
        "1795741180",                      /* the same */
        "now",
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        at = 77;
        int rc = h2r_replay_parse_start_at(bad[k], now + 0, &at, err, sizeof(err));
        if (rc != H2R_ERR_ARG)
            fprintf(stderr, "accepted --start-at '%s'\n", bad[k]);
        CHECK_EQ_INT(rc, H2R_ERR_ARG);
        CHECK_EQ_INT(at, 77);
    }
    CHECK_EQ_INT(h2r_replay_parse_start_at("2026-11-27T00:59:40Z", now, &at, err, sizeof(err)),
                 H2R_ERR_ARG);
    CHECK(strstr(err, "grace") != NULL);
    CHECK(strstr(err, "2026-11-27T00:59:40.000Z") != NULL);
}

static int fn_stop;
static int stop_fn(void)
{
    return fn_stop;
}

static void test_wait(void)
{
    char err[256];
    int64_t mono = 0, wall = 0;
    int64_t m0 = h2r_now_mono_ns();
    int64_t start = h2r_now_wall_ns() + 150 * MS;
    CHECK_EQ_INT(rp_start_at_wait(start, 50 * MS, stop_fn, 1, &mono, &wall, err, sizeof(err)), 0);
    int64_t m1 = h2r_now_mono_ns();
    /* woke about 50 ms before the origin; the origin on the monotonic clock is ~150 ms out */
    CHECK(m1 - m0 >= 90 * MS);
    CHECK(m1 - m0 < 2 * SEC);
    int64_t t0 = mono + (start - wall);
    CHECK(t0 - m0 > 140 * MS && t0 - m0 < 160 * MS);
    CHECK(wall <= start);

    fn_stop = 1; /* a stop request ends the wait at once */
    m0 = h2r_now_mono_ns();
    CHECK_EQ_INT(rp_start_at_wait(h2r_now_wall_ns() + 10 * SEC, 0, stop_fn, 1, &mono, &wall, err,
                                  sizeof(err)),
                 0);
    CHECK(h2r_now_mono_ns() - m0 < SEC);
    fn_stop = 0;
    /* already late, within the grace: no wait; beyond it: an error */
    m0 = h2r_now_mono_ns();
    CHECK_EQ_INT(rp_start_at_wait(h2r_now_wall_ns() - 2 * SEC, 0, stop_fn, 1, &mono, &wall, err,
                                  sizeof(err)),
                 0);
    CHECK(h2r_now_mono_ns() - m0 < SEC);
    CHECK_EQ_INT(rp_start_at_wait(h2r_now_wall_ns() - 60 * SEC, 0, stop_fn, 1, &mono, &wall, err,
                                  sizeof(err)),
                 H2R_ERR_ARG);
    int64_t e = rp_clock_max_error_ns();
    CHECK(e == -1 || e >= 0);
}

/* The same wait seen through a stop function (node sessions: rp_replay_stop_requested). */
static void test_wait_fn(void)
{
    char err[256];
    int64_t mono = 0, wall = 0;
    int64_t m0 = h2r_now_mono_ns();
    int64_t start = h2r_now_wall_ns() + 120 * MS;
    CHECK_EQ_INT(rp_start_at_wait(start, 20 * MS, stop_fn, 1, &mono, &wall, err, sizeof(err)),
                 0);
    int64_t m1 = h2r_now_mono_ns();
    CHECK(m1 - m0 >= 90 * MS && m1 - m0 < 2 * SEC);
    int64_t t0 = mono + (start - wall);
    CHECK(t0 - m0 > 110 * MS && t0 - m0 < 130 * MS);
    fn_stop = 1;
    m0 = h2r_now_mono_ns();
    CHECK_EQ_INT(rp_start_at_wait(h2r_now_wall_ns() + 10 * SEC, 0, stop_fn, 1, &mono, &wall,
                                     err, sizeof(err)),
                 0);
    CHECK(h2r_now_mono_ns() - m0 < SEC);
    fn_stop = 0;
    CHECK_EQ_INT(rp_start_at_wait(h2r_now_wall_ns() - 60 * SEC, 0, stop_fn, 1, &mono, &wall,
                                     err, sizeof(err)),
                 H2R_ERR_ARG);
    /* node sessions name their partition key in the settings */
    char set[128] = "speed=10";
    rp_shard_settings(set, sizeof(set), 3, "identity");
    CHECK_EQ_STR(set, "speed=10 shards=3 partition=identity:" RP_SHARD_SCHEME);
}

int main(void)
{
    test_assign_exactly_once_balanced();
    test_assign_sessions();
    test_plan_partition();
    test_settings_and_opts();
    test_parse_shard();
    test_parse_start_at();
    test_wait();
    test_wait_fn();
    return check_summary("test_rp_shard");
}
