/*
 * Unit tests for the TS2021 node session plan (replay/rp_nodes.c): synthetic
 * arrivals (uniform spacing, identities, hold), --clone (distinct identities,
 * copies spread over the jitter, sorted by start, origins kept), limits; plans
 * from captured TS2021 sessions (identities per node, reconnects, unknown
 * nodes, skipped sessions, capver, a trace file written here), the clone
 * identity mapping over them, shards (every session exactly once, a node's
 * sessions together) and the option checks of rp_nodes_replay_run() that
 * fail before any I/O.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "h2replay/error.h"
#include "h2replay/replay.h"
#include "h2replay/trace.h"
#include "rp_nodes.h"

#define S_NS 1000000000LL
#define T0 1700000000000000000LL

static void test_synthetic(void)
{
    struct rp_nodes_plan p;
    CHECK_EQ_INT(rp_nodes_plan_synthetic(&p, 4, 1000, 50), 0);
    CHECK_EQ_INT(p.n, 4);
    for (uint32_t i = 0; i < 4; i++) {
        CHECK_EQ_INT(p.v[i].start, 250 * (int64_t)i);
        CHECK_EQ_INT(p.v[i].hold, 50);
        CHECK_EQ_INT(p.v[i].identity, i);
        CHECK_EQ_INT(p.v[i].origin, i);
    }
    rp_nodes_plan_free(&p);
    CHECK(p.v == NULL && p.n == 0);
    rp_nodes_plan_free(&p); /* twice is fine */
    /* an hour over ten million sessions does not overflow */
    CHECK_EQ_INT(rp_nodes_plan_synthetic(&p, 3, 3600000000000LL, 0), 0);
    CHECK_EQ_INT(p.v[2].start, 2400000000000LL);
    rp_nodes_plan_free(&p);
    CHECK_EQ_INT(rp_nodes_plan_synthetic(&p, 0, 0, 0), H2R_ERR_ARG);
    CHECK_EQ_INT(rp_nodes_plan_synthetic(&p, 1, -1, 0), H2R_ERR_ARG);
}

static void test_clone(void)
{
    struct rp_nodes_plan p;
    CHECK_EQ_INT(rp_nodes_plan_synthetic(&p, 2, 1000, 7), 0);
    CHECK_EQ_INT(rp_nodes_plan_clone(&p, 1, 500), 0); /* once: unchanged */
    CHECK_EQ_INT(p.n, 2);
    CHECK_EQ_INT(rp_nodes_plan_clone(&p, 3, 600), 0);
    CHECK_EQ_INT(p.n, 6);
    /* session 0 at 0 -> copies at 0, 200, 400; session 1 at 500 -> 500, 700, 900 */
    static const int64_t starts[] = {0, 200, 400, 500, 700, 900};
    static const uint32_t ids[] = {0, 1, 2, 3, 4, 5};
    static const uint32_t origins[] = {0, 0, 0, 1, 1, 1};
    for (uint32_t i = 0; i < 6; i++) {
        CHECK_EQ_INT(p.v[i].start, starts[i]);
        CHECK_EQ_INT(p.v[i].identity, ids[i]);
        CHECK_EQ_INT(p.v[i].origin, origins[i]);
        CHECK_EQ_INT(p.v[i].hold, 7);
    }
    rp_nodes_plan_free(&p);
    /* copies interleave with later sessions and stay sorted */
    CHECK_EQ_INT(rp_nodes_plan_synthetic(&p, 2, 200, 0), 0); /* starts 0, 100 */
    CHECK_EQ_INT(rp_nodes_plan_clone(&p, 2, 400), 0);        /* 0, 200 and 100, 300 */
    CHECK_EQ_INT(p.v[0].start, 0);
    CHECK_EQ_INT(p.v[1].start, 100);
    CHECK_EQ_INT(p.v[1].identity, 2);
    CHECK_EQ_INT(p.v[2].start, 200);
    CHECK_EQ_INT(p.v[2].identity, 1);
    CHECK_EQ_INT(p.v[3].start, 300);
    rp_nodes_plan_free(&p);
    CHECK_EQ_INT(rp_nodes_plan_synthetic(&p, 70000, 0, 0), 0);
    CHECK_EQ_INT(rp_nodes_plan_clone(&p, 70000, 0), H2R_ERR_LIMIT);
    CHECK_EQ_INT(p.n, 70000); /* unchanged */
    rp_nodes_plan_free(&p);
}

static int run(struct h2r_replay_opts *o, char *err, size_t len)
{
    err[0] = '\0';
    return rp_nodes_replay_run(o, NULL, err, len);
}

static void test_options(void)
{
    struct h2r_replay_opts o;
    char err[512];
    const char *ts[] = {"hs=ts2021+http://127.0.0.1:1"};
    const char *plain[] = {"http://127.0.0.1:1"};
    const char *mixed[] = {"a=ts2021+http://127.0.0.1:1", "b=http://127.0.0.1:1"};
    const char *sets[] = {"authkey=k"};
    h2r_replay_opts_init(&o);
    o.targets = ts;
    o.n_targets = 1;
    o.ts.nodes = 1;
    CHECK(rp_nodes_wanted(&o));
    CHECK_EQ_INT(run(&o, err, sizeof(err)), H2R_ERR_ARG); /* no run file */
    o.run_path = "/nonexistent/x.h2rr";
    CHECK_EQ_INT(run(&o, err, sizeof(err)), H2R_ERR_ARG); /* no pre-auth key */
    CHECK(strstr(err, "authkey") != NULL);
    o.set_vars = sets;
    o.n_set_vars = 1;
    o.trace_path = "t.h2rt";
    CHECK_EQ_INT(run(&o, err, sizeof(err)), H2R_ERR_ARG); /* a trace and --nodes */
    CHECK(strstr(err, "TRACE") != NULL && strstr(err, "--nodes") != NULL);
    o.ts.nodes = 0;
    o.ts.hold_ns = 1;
    CHECK_EQ_INT(run(&o, err, sizeof(err)), H2R_ERR_ARG); /* --hold shapes synthetic ones */
    CHECK(strstr(err, "--hold") != NULL);
    o.ts.hold_ns = 0;
    o.shard_index = 3;
    o.shard_count = 3;
    CHECK_EQ_INT(run(&o, err, sizeof(err)), H2R_ERR_ARG);
    CHECK(strstr(err, "shard") != NULL);
    o.shard_index = 0;
    o.shard_count = 0;
    o.trace_path = "/nonexistent/t.h2rt";
    CHECK(run(&o, err, sizeof(err)) != 0); /* the trace cannot be read */
    CHECK(strstr(err, "/nonexistent/t.h2rt") != NULL);
    o.trace_path = NULL;
    o.ts.nodes = 1;
    o.targets = mixed;
    o.n_targets = 2;
    CHECK_EQ_INT(run(&o, err, sizeof(err)), H2R_ERR_ARG);
    CHECK(strstr(err, "ts2021+") != NULL);
    o.targets = ts;
    o.n_targets = 1;
    o.ts.nodes = 0;
    CHECK(rp_nodes_wanted(&o)); /* the target says so */
    CHECK_EQ_INT(run(&o, err, sizeof(err)), H2R_ERR_ARG);
    CHECK(strstr(err, "--nodes") != NULL && strstr(err, "TRACE") != NULL);
    o.ts.nodes = 2;
    o.ts.capver = 70000;
    CHECK_EQ_INT(run(&o, err, sizeof(err)), H2R_ERR_ARG);
    o.ts.capver = 0;
    const char *badpin[] = {"authkey=k", "controlkey=nodekey:00"};
    o.set_vars = badpin;
    o.n_set_vars = 2;
    CHECK_EQ_INT(run(&o, err, sizeof(err)), H2R_ERR_ARG);
    CHECK(strstr(err, "controlkey") != NULL);
    o.set_vars = sets;
    o.n_set_vars = 1;
    /* everything valid: the unwritable run file is the first I/O and fails it */
    CHECK(run(&o, err, sizeof(err)) != 0);
    CHECK(strstr(err, "/nonexistent") != NULL);
    o.targets = plain;
    o.ts.nodes = 0;
    CHECK(!rp_nodes_wanted(&o));
}

/* A captured session: node (0 unknown), upgrade at T0 + up, end at T0 + end (seconds/10). */
static struct h2r_ts_session ts(uint64_t id, uint64_t node, int64_t up, int64_t end, int handshake)
{
    struct h2r_ts_session t;
    memset(&t, 0, sizeof(t));
    t.id = id;
    t.conn_id = id;
    t.node = node;
    t.capver = 130;
    t.status = 101;
    t.how = H2R_TS_END_FIN;
    t.t_upgrade_ns = T0 + up * S_NS / 10;
    t.t_handshake_ns = handshake ? t.t_upgrade_ns + 1000000 : 0;
    t.t_end_ns = T0 + end * S_NS / 10;
    return t;
}

/* The shape of traces/tailscale-sample.h2rt: 12 nodes, nodes 3 and 7 reconnect (14 sessions). */
static uint32_t sample(struct h2r_ts_session *v)
{
    uint32_t n = 0;
    for (uint64_t k = 1; k <= 12; k++) {
        v[n] = ts(n + 1, k, 10 + 5 * (int64_t)k, 600, 1);
        n++;
    }
    v[2].t_end_ns = T0 + 200 * S_NS / 10; /* node 3's first session ends at 20 s ... */
    v[6].t_end_ns = T0 + 300 * S_NS / 10;
    v[n] = ts(n + 1, 3, 210, 600, 1); /* ... and it comes back at 21 s */
    n++;
    v[n] = ts(n + 1, 7, 310, 600, 1);
    v[n].how = H2R_TS_END_CAPTURE_END;
    n++;
    return n;
}

static void test_from_sessions(void)
{
    struct h2r_ts_session v[32];
    uint32_t n = sample(v);
    CHECK_EQ_INT(n, 14);
    struct rp_nodes_plan p;
    struct rp_nodes_trace_info info;
    memset(&info, 0, sizeof(info));
    CHECK_EQ_INT(rp_nodes_plan_from_sessions(&p, v, n, &info), 0);
    CHECK_EQ_INT(p.n, 14);
    CHECK_EQ_INT(p.identities, 12);
    CHECK_EQ_INT(info.sessions, 14);
    CHECK_EQ_INT(info.nodes, 12);
    CHECK_EQ_INT(info.anonymous, 0);
    CHECK_EQ_INT(info.skipped, 0);
    CHECK_EQ_INT(info.capver, 130);
    CHECK_EQ_INT(info.origin_ns, T0 + 15 * S_NS / 10); /* the first upgrade, not T0 */
    CHECK_EQ_INT(info.span_ns, 60 * S_NS - 15 * S_NS / 10);
    /* node k -> identity k - 1 (order of first appearance); starts from the origin */
    for (uint32_t i = 0; i < 12; i++) {
        CHECK_EQ_INT(p.v[i].identity, i);
        CHECK_EQ_INT(p.v[i].start, (int64_t)(5 * i) * S_NS / 10);
        CHECK_EQ_INT(p.v[i].seq, i);
        CHECK_EQ_INT(p.v[i].origin, i);
        CHECK_EQ_INT(p.v[i].skip, 0);
    }
    CHECK_EQ_INT(p.v[2].hold, 20 * S_NS - 25 * S_NS / 10);
    CHECK_EQ_INT(p.v[12].identity, 2); /* node 3's reconnect: node 3's identity */
    CHECK_EQ_INT(p.v[12].start, 21 * S_NS - 15 * S_NS / 10);
    CHECK_EQ_INT(p.v[12].hold, 39 * S_NS);
    CHECK_EQ_INT(p.v[13].identity, 6);
    CHECK_EQ_INT(p.v[13].hold, 29 * S_NS); /* open at capture end: held to the end */
    rp_nodes_plan_free(&p);

    /* input order does not matter: reversed, the same plan */
    struct h2r_ts_session r[32];
    for (uint32_t i = 0; i < n; i++)
        r[i] = v[n - 1 - i];
    CHECK_EQ_INT(rp_nodes_plan_from_sessions(&p, r, n, NULL), 0);
    CHECK_EQ_INT(p.v[12].identity, 2);
    CHECK_EQ_INT(p.v[0].start, 0);
    rp_nodes_plan_free(&p);

    /* unknown nodes: one identity per session; no handshake: skipped with its how;
     * capvers that disagree: none */
    struct h2r_ts_session u[6];
    u[0] = ts(1, 0, 0, 100, 1);
    u[1] = ts(2, 5, 10, 100, 1);
    u[2] = ts(3, 0, 20, 100, 1);
    u[3] = ts(4, 5, 30, 31, 0);
    u[3].how = H2R_TS_END_REFUSED;
    u[3].status = 403;
    u[4] = ts(5, 0, 40, 41, 0);
    u[4].how = H2R_TS_END_UNKNOWN; /* never answered: counted as rejected */
    u[4].status = -1;
    u[5] = ts(6, 9, 50, 51, 0);
    u[5].how = H2R_TS_END_UNDECODABLE;
    u[5].capver = 113;
    memset(&info, 0, sizeof(info));
    CHECK_EQ_INT(rp_nodes_plan_from_sessions(&p, u, 6, &info), 0);
    CHECK_EQ_INT(info.nodes, 2);
    CHECK_EQ_INT(info.anonymous, 3);
    CHECK_EQ_INT(info.skipped, 3);
    CHECK_EQ_INT(info.capver, 0);
    CHECK_EQ_INT(p.identities, 5);
    static const uint32_t ids[] = {0, 1, 2, 1, 3, 4};
    static const uint8_t skips[] = {0, 0, 0, H2R_TS_END_REFUSED, H2R_TS_END_REJECTED,
                                    H2R_TS_END_UNDECODABLE};
    for (uint32_t i = 0; i < 6; i++) {
        CHECK_EQ_INT(p.v[i].identity, ids[i]);
        CHECK_EQ_INT(p.v[i].skip, skips[i]);
    }
    CHECK_EQ_INT(p.v[3].status, 403);
    rp_nodes_plan_free(&p);
    CHECK_EQ_INT(rp_nodes_plan_from_sessions(&p, u, 0, NULL), H2R_ERR_ARG);
}

/* Hand-made sessions whose times a reader would refuse: no subtraction overflows, the
 * plan is refused as a format error and left empty; spans up to ~10 years still plan. */
static void test_from_sessions_time_guards(void)
{
    struct h2r_ts_session v[2];
    struct rp_nodes_plan p;
    struct rp_nodes_trace_info info;

    /* offsets from the origin: INT64_MAX - INT64_MIN */
    v[0] = ts(1, 1, 0, 1, 1);
    v[1] = ts(2, 2, 0, 1, 1);
    v[0].t_upgrade_ns = INT64_MIN;
    v[0].t_end_ns = INT64_MIN + 1;
    v[1].t_upgrade_ns = INT64_MAX - 1;
    v[1].t_end_ns = INT64_MAX;
    CHECK_EQ_INT(rp_nodes_plan_from_sessions(&p, v, 2, &info), H2R_ERR_FORMAT);
    CHECK(p.v == NULL && p.n == 0);
    CHECK_EQ_INT(info.sessions, 0);

    /* a hold: end - upgrade */
    v[0] = ts(1, 1, 0, 1, 1);
    v[0].t_upgrade_ns = INT64_MIN;
    v[0].t_end_ns = INT64_MAX;
    CHECK_EQ_INT(rp_nodes_plan_from_sessions(&p, v, 1, NULL), H2R_ERR_FORMAT);
    CHECK(p.v == NULL && p.n == 0);

    /* the span: a session that starts at the origin and one that ends 20 years later */
    v[0] = ts(1, 1, 0, 1, 1);
    v[1] = ts(2, 2, 0, 1, 1);
    v[1].t_end_ns = v[1].t_upgrade_ns + 20LL * 365 * 24 * 3600 * S_NS;
    CHECK_EQ_INT(rp_nodes_plan_from_sessions(&p, v, 2, &info), H2R_ERR_FORMAT);
    CHECK(p.v == NULL);

    /* 9 years apart: a long capture, but a plan */
    v[1] = ts(2, 2, 0, 1, 1);
    v[1].t_upgrade_ns = v[0].t_upgrade_ns + 9LL * 365 * 24 * 3600 * S_NS;
    v[1].t_end_ns = v[1].t_upgrade_ns + S_NS;
    CHECK_EQ_INT(rp_nodes_plan_from_sessions(&p, v, 2, &info), 0);
    CHECK_EQ_INT(p.n, 2);
    CHECK_EQ_INT(info.span_ns, 9LL * 365 * 24 * 3600 * S_NS + S_NS);
    if (p.n == 2)
        CHECK_EQ_INT(p.v[1].start, 9LL * 365 * 24 * 3600 * S_NS);
    rp_nodes_plan_free(&p);
}

/* 200k distinct nodes in descending node order (the worst case of a sorted insert), every
 * 1000th session of an unknown node, then 2000 reconnects of earlier nodes: identities
 * stay in order of first appearance. Runs in well under a second. */
static void test_from_sessions_many_nodes(void)
{
    const uint32_t distinct = 200000, again = 2000, n = distinct + again;
    struct h2r_ts_session *v = malloc((size_t)n * sizeof(*v));
    struct rp_nodes_plan p;
    struct rp_nodes_trace_info info;
    CHECK(v != NULL);
    if (!v)
        return;
    for (uint32_t i = 0; i < distinct; i++)
        v[i] = ts(i + 1, i % 1000 == 999 ? 0 : distinct - i, i, i + 1, 1);
    for (uint32_t j = 0; j < again; j++) {
        uint32_t k = (j * 97u) % distinct;
        if (k % 1000 == 999)
            k--; /* a known node */
        v[distinct + j] = ts(distinct + j + 1, distinct - k, distinct + j, distinct + j + 1, 1);
    }
    CHECK_EQ_INT(rp_nodes_plan_from_sessions(&p, v, n, &info), 0);
    CHECK_EQ_INT(p.n, n);
    CHECK_EQ_INT(p.identities, distinct);
    CHECK_EQ_INT(info.nodes, distinct - distinct / 1000);
    CHECK_EQ_INT(info.anonymous, distinct / 1000);
    int ok = p.n == n;
    for (uint32_t i = 0; ok && i < distinct; i += 37)
        ok = p.v[i].identity == i;
    for (uint32_t j = 0; ok && j < again; j++) {
        uint32_t k = (j * 97u) % distinct;
        if (k % 1000 == 999)
            k--;
        ok = p.v[distinct + j].identity == k;
    }
    CHECK(ok);
    CHECK(p.n == n && p.v[999].identity == 999 && p.v[distinct - 1].identity == distinct - 1);
    rp_nodes_plan_free(&p);
    free(v);
}

/* --clone over a captured plan: 14 sessions x 10 = 140 sessions, 120 identities; node k's
 * copy j is one identity across all of node k's sessions, and keeps their gaps. */
static void test_clone_captured(void)
{
    struct h2r_ts_session v[32];
    uint32_t n = sample(v);
    struct rp_nodes_plan p;
    CHECK_EQ_INT(rp_nodes_plan_from_sessions(&p, v, n, NULL), 0);
    CHECK_EQ_INT(rp_nodes_plan_clone(&p, 10, 1 * S_NS), 0);
    CHECK_EQ_INT(p.n, 140);
    CHECK_EQ_INT(p.identities, 120);
    uint32_t per_id[120];
    int64_t first_start[120];
    memset(per_id, 0, sizeof(per_id));
    int sorted = 1, seq_ok = 1, map_ok = 1;
    for (uint32_t i = 0; i < p.n; i++) {
        const struct rp_session_plan *e = &p.v[i];
        CHECK(e->identity < 120);
        if (e->identity >= 120)
            continue;
        if (i && p.v[i - 1].start > e->start)
            sorted = 0;
        if (e->seq != i)
            seq_ok = 0;
        /* origin = the captured session; identity / 10 = that session's node identity */
        uint32_t node_id = e->identity / 10, copy = e->identity % 10;
        if (node_id != (e->origin == 12 ? 2u : e->origin == 13 ? 6u : e->origin))
            map_ok = 0;
        int64_t want = (int64_t)(5 * (e->origin < 12 ? e->origin : 0)) * S_NS / 10 +
                       (int64_t)copy * S_NS / 10;
        if (e->origin < 12 && e->start != want)
            map_ok = 0;
        if (!per_id[e->identity]++)
            first_start[e->identity] = e->start;
    }
    CHECK(sorted);
    CHECK(seq_ok);
    CHECK(map_ok);
    uint32_t twice = 0;
    for (uint32_t k = 0; k < 120; k++) {
        CHECK(per_id[k] == 1 || per_id[k] == 2);
        twice += per_id[k] == 2;
    }
    CHECK_EQ_INT(twice, 20); /* nodes 3 and 7, ten copies each */
    /* node 3 copy 4 (identity 24): its reconnect is 18.5 s after its first session, as captured */
    for (uint32_t i = 0; i < p.n; i++)
        if (p.v[i].identity == 24 && p.v[i].origin == 12)
            CHECK_EQ_INT(p.v[i].start - first_start[24], 21 * S_NS - 25 * S_NS / 10);
    rp_nodes_plan_free(&p);
}

/* --shard I/N over a (cloned) captured plan: every session in exactly one shard, one
 * identity's sessions in one shard, shards balanced by identity, deterministic. */
static void test_shard(void)
{
    struct h2r_ts_session v[32];
    uint32_t n = sample(v);
    for (uint32_t clone = 1; clone <= 10; clone += 9) {
        for (uint32_t count = 1; count <= 7; count++) {
            uint32_t *seen = calloc(14 * clone, sizeof(*seen));
            int32_t *shard_of = malloc(12 * clone * sizeof(*shard_of));
            memset(shard_of, 0xff, 12 * clone * sizeof(*shard_of));
            uint32_t total_ids = 0, ok_split = 1, ok_ids = 1;
            for (uint32_t idx = 0; idx < count; idx++) {
                struct rp_nodes_plan p;
                uint32_t ids = 0;
                CHECK_EQ_INT(rp_nodes_plan_from_sessions(&p, v, n, NULL), 0);
                CHECK_EQ_INT(rp_nodes_plan_clone(&p, clone, S_NS), 0);
                CHECK_EQ_INT(rp_nodes_plan_shard(&p, idx, count, &ids), 0);
                total_ids += ids;
                uint32_t want = 12 * clone / count + (idx < 12 * clone % count);
                if (ids != want)
                    ok_ids = 0;
                uint32_t distinct = 0;
                for (uint32_t i = 0; i < p.n; i++) {
                    const struct rp_session_plan *e = &p.v[i];
                    seen[e->seq]++;
                    if (shard_of[e->identity] == -1) {
                        shard_of[e->identity] = (int32_t)idx;
                        distinct++;
                    } else if (shard_of[e->identity] != (int32_t)idx) {
                        ok_split = 0;
                    }
                    if (i && p.v[i - 1].start > e->start)
                        ok_split = 0;
                }
                if (distinct != ids)
                    ok_ids = 0;
                rp_nodes_plan_free(&p);
            }
            CHECK(ok_split);
            CHECK(ok_ids);
            CHECK_EQ_INT(total_ids, 12 * clone);
            uint32_t once = 0;
            for (uint32_t i = 0; i < 14 * clone; i++)
                once += seen[i] == 1;
            CHECK_EQ_INT(once, 14 * clone);
            free(seen);
            free(shard_of);
        }
    }
    /* the same shard twice: the same sessions (a pure function of the plan) */
    struct rp_nodes_plan a, b;
    CHECK_EQ_INT(rp_nodes_plan_from_sessions(&a, v, n, NULL), 0);
    CHECK_EQ_INT(rp_nodes_plan_from_sessions(&b, v, n, NULL), 0);
    CHECK_EQ_INT(rp_nodes_plan_shard(&a, 1, 3, NULL), 0);
    CHECK_EQ_INT(rp_nodes_plan_shard(&b, 1, 3, NULL), 0);
    CHECK_EQ_INT(a.n, b.n);
    int same = a.n == b.n;
    for (uint32_t i = 0; same && i < a.n; i++)
        same = a.v[i].seq == b.v[i].seq && a.v[i].identity == b.v[i].identity &&
               a.v[i].start == b.v[i].start && a.v[i].hold == b.v[i].hold;
    CHECK(same);
    rp_nodes_plan_free(&a);
    rp_nodes_plan_free(&b);
    CHECK_EQ_INT(rp_nodes_plan_synthetic(&a, 10, 10, 0), 0);
    CHECK_EQ_INT(rp_nodes_plan_shard(&a, 3, 3, NULL), H2R_ERR_ARG);
    CHECK_EQ_INT(a.n, 10);
    uint32_t ids = 0;
    CHECK_EQ_INT(rp_nodes_plan_shard(&a, 0, 1, &ids), 0); /* one shard: the whole plan */
    CHECK_EQ_INT(a.n, 10);
    CHECK_EQ_INT(ids, 10);
    CHECK_EQ_INT(rp_nodes_plan_shard(&a, 2, 3, &ids), 0); /* synthetic: round-robin by start */
    CHECK_EQ_INT(a.n, 3);
    CHECK_EQ_INT(ids, 3);
    CHECK_EQ_INT(a.v[0].identity, 2);
    CHECK_EQ_INT(a.v[1].identity, 5);
    CHECK_EQ_INT(a.v[2].seq, 8);
    rp_nodes_plan_free(&a);
}

/* A trace file: ts_session records (and an exchange) read back into the same plan. */
static void test_from_trace(void)
{
    char path[] = "/tmp/test_rp_nodes_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    close(fd);
    struct h2r_trace_header th;
    memset(&th, 0, sizeof(th));
    th.tool_version = "test";
    th.source = "synthetic";
    th.start_ns = T0;
    th.linktype = -1;
    struct h2r_trace_writer *w = NULL;
    char err[256];
    CHECK_EQ_INT(h2r_trace_writer_open(&w, path, &th, NULL, err, sizeof(err)), 0);
    struct h2r_ts_session v[32];
    uint32_t n = sample(v);
    struct h2r_ts_rec recs[2] = {{0, 51, 1, 2}, {1000, 100, 0, 4}};
    for (uint32_t i = 0; i < n; i++) {
        v[i].recs = recs;
        v[i].n_recs = 2;
        CHECK_EQ_INT(h2r_trace_write_ts_session(w, &v[i]), 0);
    }
    CHECK_EQ_INT(h2r_trace_writer_close(w), 0);
    struct rp_nodes_plan p;
    struct rp_nodes_trace_info info;
    CHECK_EQ_INT(rp_nodes_plan_from_trace(&p, path, &info, err, sizeof(err)), 0);
    CHECK_EQ_INT(p.n, 14);
    CHECK_EQ_INT(p.identities, 12);
    CHECK_EQ_INT(info.nodes, 12);
    CHECK_EQ_INT(info.exchanges, 0);
    CHECK_EQ_INT(p.v[13].identity, 6);
    CHECK_EQ_INT(p.v[13].hold, 29 * S_NS);
    rp_nodes_plan_free(&p);

    /* no ts_session record: a clear error */
    CHECK_EQ_INT(h2r_trace_writer_open(&w, path, &th, NULL, err, sizeof(err)), 0);
    CHECK_EQ_INT(h2r_trace_writer_close(w), 0);
    err[0] = '\0';
    CHECK_EQ_INT(rp_nodes_plan_from_trace(&p, path, &info, err, sizeof(err)), H2R_ERR_FORMAT);
    CHECK(strstr(err, "no TS2021 session records") != NULL);
    CHECK(p.v == NULL && p.n == 0);
    unlink(path);
}

/* Register errors as Headscale words them: its own reason decides, not its wrapper. */
static void test_auth_error(void)
{
    CHECK_EQ_INT(rp_nodes_is_auth_error("handling register with auth key: invalid pre auth key"),
                 1);
    CHECK_EQ_INT(rp_nodes_is_auth_error("AuthKey not found"), 1);
    CHECK_EQ_INT(rp_nodes_is_auth_error("authkey expired"), 1);
    CHECK_EQ_INT(rp_nodes_is_auth_error("handling register with auth key: creating new node: "
                                        "database or disk is full (13)"),
                 0);
    CHECK_EQ_INT(rp_nodes_is_auth_error("handling register with auth key: saving node: FATAL: "
                                        "terminating connection due to administrator command "
                                        "(SQLSTATE 57P01)"),
                 0);
    CHECK_EQ_INT(rp_nodes_is_auth_error("Handling register with auth key:"), 0);
    CHECK_EQ_INT(rp_nodes_is_auth_error(""), 0);
}

int main(void)
{
    test_auth_error();
    test_synthetic();
    test_clone();
    test_from_sessions();
    test_from_sessions_time_guards();
    test_from_sessions_many_nodes();
    test_clone_captured();
    test_shard();
    test_from_trace();
    test_options();
    return check_summary("test_rp_nodes");
}
