/*
 * Unit tests for the TS2021 node session plan (replay/rp_nodes.c): synthetic
 * arrivals (uniform spacing, identities, hold), --clone (distinct identities,
 * copies spread over the jitter, sorted by start, origins kept), limits, and
 * the option checks of rp_nodes_replay_run() that fail before any I/O.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "h2replay/error.h"
#include "h2replay/replay.h"
#include "rp_nodes.h"

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
    CHECK_EQ_INT(run(&o, err, sizeof(err)), H2R_ERR_ARG); /* a trace: not supported yet */
    CHECK(strstr(err, "trace") != NULL);
    o.trace_path = NULL;
    o.targets = mixed;
    o.n_targets = 2;
    CHECK_EQ_INT(run(&o, err, sizeof(err)), H2R_ERR_ARG);
    CHECK(strstr(err, "ts2021+") != NULL);
    o.targets = ts;
    o.n_targets = 1;
    o.ts.nodes = 0;
    CHECK(rp_nodes_wanted(&o)); /* the target says so */
    CHECK_EQ_INT(run(&o, err, sizeof(err)), H2R_ERR_ARG);
    CHECK(strstr(err, "--nodes") != NULL);
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

int main(void)
{
    test_synthetic();
    test_clone();
    test_options();
    return check_summary("test_rp_nodes");
}
