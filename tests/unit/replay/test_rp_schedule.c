/*
 * Unit tests for the replay plan (rp_schedule.c): start-order sorting,
 * due-time scaling, causal edges (direct predecessors only, capped), speed
 * max, thread partitioning, and loading a real trace file written in
 * completion order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "h2replay/trace.h"
#include "rp_schedule.h"

#define MS 1000000LL
#define T0 1700000000000000000LL /* capture clock origin of the synthetic traces */

static struct h2r_hdr hdr(const char *n, const char *v)
{
    struct h2r_hdr h;
    h.name = (const uint8_t *)n;
    h.name_len = (uint32_t)strlen(n);
    h.value = (const uint8_t *)v;
    h.value_len = (uint32_t)strlen(v);
    return h;
}

static struct h2r_hdr get_hdrs[4];

/* A GET exchange on conn `conn`: request at start_ms, response end at end_ms (0: none). */
static struct h2r_exchange xch(uint64_t id, uint64_t conn, int64_t start_ms, int64_t end_ms)
{
    get_hdrs[0] = hdr(":method", "GET");
    get_hdrs[1] = hdr(":scheme", "http");
    get_hdrs[2] = hdr(":authority", "capture.example");
    get_hdrs[3] = hdr(":path", "/x");
    struct h2r_exchange x;
    memset(&x, 0, sizeof(x));
    x.id = id;
    x.conn_id = conn;
    x.stream_id = (uint32_t)(2 * id + 1);
    x.req_hdrs = get_hdrs;
    x.n_req_hdrs = 4;
    x.status = 200;
    x.grpc_status = -1;
    x.rst_code = -1;
    x.goaway_code = -1;
    x.t_req_first_ns = T0 + start_ms * MS;
    x.t_req_end_ns = x.t_req_first_ns;
    x.t_resp_end_ns = end_ms ? T0 + end_ms * MS : 0;
    return x;
}

static void add(struct rp_plan *p, struct h2r_exchange x)
{
    CHECK_EQ_INT(rp_plan_add_exchange(p, &x), 0);
}

/* Plan index of exchange id. */
static uint32_t ix(const struct rp_plan *p, uint64_t id)
{
    for (uint32_t i = 0; i < p->n_xs; i++)
        if (p->xs[i].id == id)
            return i;
    return UINT32_MAX;
}

static int depends_on(const struct rp_plan *p, uint64_t b, uint64_t a)
{
    const struct rp_px *pa = &p->xs[ix(p, a)];
    for (uint32_t k = 0; k < pa->n_dependents; k++)
        if (p->dependents[pa->dep_first + k] == ix(p, b))
            return 1;
    return 0;
}

static void test_scaling(void)
{
    struct rp_plan *p;
    CHECK_EQ_INT(rp_plan_new(&p, 0), 0);
    /* three connections so no causality; added out of order (traces are in completion order) */
    add(p, xch(3, 3, 3000, 3100));
    add(p, xch(1, 1, 1000, 1200));
    add(p, xch(2, 2, 1500, 1600));
    CHECK_EQ_INT(rp_plan_finish(p), 0);
    CHECK_EQ_INT(p->n_xs, 3);
    CHECK_EQ_INT(p->xs[0].id, 1);
    CHECK_EQ_INT(p->xs[1].id, 2);
    CHECK_EQ_INT(p->xs[2].id, 3);
    CHECK_EQ_INT(p->trace0, T0 + 1000 * MS);
    CHECK_EQ_INT(rp_plan_due(p, 0, 1.0), 0);
    CHECK_EQ_INT(rp_plan_due(p, 1, 1.0), 500 * MS);
    CHECK_EQ_INT(rp_plan_due(p, 2, 1.0), 2000 * MS);
    CHECK_EQ_INT(rp_plan_due(p, 1, 10.0), 50 * MS);
    CHECK_EQ_INT(rp_plan_due(p, 2, 10.0), 200 * MS);
    CHECK_EQ_INT(rp_plan_due(p, 2, 0.5), 4000 * MS);
    CHECK_EQ_INT(rp_plan_due(p, 2, 0.0), 0); /* max */
    CHECK_EQ_INT(rp_scale(3, 2.0), 2);       /* rounded */
    CHECK_EQ_INT(rp_scale(1000, 0.0), 0);
    for (uint32_t i = 0; i < 3; i++)
        CHECK_EQ_INT(p->xs[i].n_deps, 0);
    CHECK_EQ_INT(p->n_edges, 0);
    rp_plan_free(p);
}

static void test_causality(void)
{
    struct rp_plan *p;
    CHECK_EQ_INT(rp_plan_new(&p, 0), 0);
    /* conn 1: a sequential chain 1 -> 2 -> 3 */
    add(p, xch(1, 1, 0, 100));
    add(p, xch(2, 1, 150, 300));
    add(p, xch(3, 1, 350, 400));
    /* conn 2: 5 starts while 4 is in flight: concurrent, no edge */
    add(p, xch(4, 2, 0, 500));
    add(p, xch(5, 2, 100, 200));
    /* conn 3: 6 and 7 overlap; 8 follows both; 9 follows 8 only */
    add(p, xch(6, 3, 0, 100));
    add(p, xch(7, 3, 10, 120));
    add(p, xch(8, 3, 130, 200));
    add(p, xch(9, 3, 300, 310));
    /* conn 4: 10 never completed in the trace: nobody waits for it */
    add(p, xch(10, 4, 0, 0));
    add(p, xch(11, 4, 50, 60));
    CHECK_EQ_INT(rp_plan_finish(p), 0);

    CHECK_EQ_INT(p->xs[ix(p, 1)].n_deps, 0);
    CHECK_EQ_INT(p->xs[ix(p, 2)].n_deps, 1);
    CHECK(depends_on(p, 2, 1));
    CHECK_EQ_INT(p->xs[ix(p, 3)].n_deps, 1); /* 1 is implied through 2 */
    CHECK(depends_on(p, 3, 2));
    CHECK(!depends_on(p, 3, 1));
    CHECK_EQ_INT(p->xs[ix(p, 5)].n_deps, 0);
    CHECK_EQ_INT(p->xs[ix(p, 8)].n_deps, 2);
    CHECK(depends_on(p, 8, 6));
    CHECK(depends_on(p, 8, 7));
    CHECK_EQ_INT(p->xs[ix(p, 9)].n_deps, 1);
    CHECK(depends_on(p, 9, 8));
    CHECK_EQ_INT(p->xs[ix(p, 11)].n_deps, 0);
    CHECK_EQ_INT(p->n_edges, 5);

    /* think time between a predecessor's end and the next start, scaled */
    CHECK_EQ_INT(rp_plan_gap(p, ix(p, 1), ix(p, 2), 1.0), 50 * MS);
    CHECK_EQ_INT(rp_plan_gap(p, ix(p, 1), ix(p, 2), 10.0), 5 * MS);
    CHECK_EQ_INT(rp_plan_gap(p, ix(p, 1), ix(p, 2), 0.0), 0);
    CHECK_EQ_INT(rp_plan_gap(p, ix(p, 7), ix(p, 8), 1.0), 10 * MS);

    /* send time model: B at max(due(B), done(A) + gap); with A done 80 ms late */
    int64_t t0 = 0;
    int64_t done1 = t0 + 100 * MS + 80 * MS;
    int64_t send2 = done1 + rp_plan_gap(p, ix(p, 1), ix(p, 2), 1.0);
    int64_t due2 = t0 + rp_plan_due(p, ix(p, 2), 1.0);
    CHECK_EQ_INT(due2, 150 * MS);
    CHECK_EQ_INT(send2 > due2 ? send2 : due2, 230 * MS);
    rp_plan_free(p);
}

static void test_deps_cap(void)
{
    struct rp_plan *p;
    CHECK_EQ_INT(rp_plan_new(&p, 0), 0);
    /* 20 concurrent streams all finished before exchange 100 starts */
    for (uint64_t i = 0; i < 20; i++)
        add(p, xch(i + 1, 7, (int64_t)i, 50 + (int64_t)i));
    add(p, xch(100, 7, 200, 210));
    CHECK_EQ_INT(rp_plan_finish(p), 0);
    const struct rp_px *x = &p->xs[ix(p, 100)];
    CHECK_EQ_INT(x->n_deps, RP_MAX_DEPS);
    CHECK(x->flags & RP_PX_F_DEPS_CAPPED);
    CHECK_EQ_INT(p->n_capped, 1);
    CHECK(depends_on(p, 100, 20)); /* the latest-ending ones are kept */
    CHECK(!depends_on(p, 100, 1));
    rp_plan_free(p);
}

static void test_flags_and_conns(void)
{
    struct rp_plan *p;
    CHECK_EQ_INT(rp_plan_new(&p, 0), 0);
    struct h2r_conn c;
    memset(&c, 0, sizeof(c));
    c.id = 42;
    c.t_open_ns = T0 - 2000 * MS; /* opened 2 s before its first request */
    CHECK_EQ_INT(rp_plan_add_conn(p, &c), 0);
    struct h2r_exchange x = xch(1, 42, 0, 10);
    add(p, x);
    /* no :path: cannot be sent */
    x = xch(2, 42, 20, 30);
    x.n_req_hdrs = 1;
    add(p, x);
    /* a redaction placeholder in a header and a truncated body */
    struct h2r_hdr h[5];
    memcpy(h, get_hdrs, sizeof(get_hdrs));
    h[4] = hdr("authorization", "Bearer $H2R{token_1}");
    x = xch(3, 43, 5, 15);
    x.req_hdrs = h;
    x.n_req_hdrs = 5;
    x.req_body = (const uint8_t *)"abc";
    x.req_body_stored = 3;
    x.req_body_len = 1000;
    x.flags = H2R_EXCH_F_REQ_BODY_TRUNC;
    add(p, x);
    struct h2r_conn_end e;
    memset(&e, 0, sizeof(e));
    e.id = 42;
    e.t_close_ns = T0 + 5000 * MS;
    CHECK_EQ_INT(rp_plan_add_conn_end(p, &e), 0);
    CHECK_EQ_INT(rp_plan_finish(p), 0);

    CHECK_EQ_INT(p->n_conns, 2);
    CHECK_EQ_INT(p->n_unsendable, 1);
    CHECK(p->xs[ix(p, 2)].flags & RP_PX_F_UNSENDABLE);
    CHECK_EQ_INT(p->n_placeholder, 1);
    CHECK_EQ_INT(p->first_placeholder_id, 3);
    const struct rp_px *px3 = &p->xs[ix(p, 3)];
    CHECK(px3->flags & RP_PX_F_PLACEHOLDER);
    CHECK_EQ_INT(px3->body_len, 1000);
    CHECK_EQ_INT(px3->body_stored, 3);
    CHECK_EQ_MEM(px3->body, 3, "abc", 3);
    CHECK_EQ_STR(px3->method, "GET");
    CHECK_EQ_STR(px3->path, "/x");
    /* copies, not borrowed pointers */
    CHECK(px3->hdrs != h && px3->hdrs[4].value != h[4].value);
    CHECK_EQ_MEM(px3->hdrs[4].value, px3->hdrs[4].value_len, "Bearer $H2R{token_1}", 20);

    uint32_t c42 = p->xs[ix(p, 1)].conn;
    CHECK_EQ_INT(p->conns[c42].trace_id, 42);
    CHECK_EQ_INT(p->conns[c42].t_close, T0 + 5000 * MS);
    CHECK_EQ_INT(p->conns[c42].n_x, 2);
    CHECK_EQ_INT(p->first_open, T0 - 2000 * MS);
    /* opens before t0, clamped to the lead */
    CHECK_EQ_INT(rp_plan_conn_open(p, c42, 1.0, 10000 * MS), -2000 * MS);
    CHECK_EQ_INT(rp_plan_conn_open(p, c42, 1.0, 1000 * MS), -1000 * MS);
    CHECK_EQ_INT(rp_plan_conn_open(p, c42, 4.0, 10000 * MS), -500 * MS);
    CHECK_EQ_INT(rp_plan_conn_open(p, c42, 0.0, 10000 * MS), 0);
    /* a connection without a conn record opens with its first request */
    uint32_t c43 = p->xs[ix(p, 3)].conn;
    CHECK_EQ_INT(p->conns[c43].t_open, T0 + 5 * MS);

    struct h2r_exchange v;
    rp_plan_exchange_view(p, ix(p, 3), &v);
    CHECK_EQ_INT(v.id, 3);
    CHECK_EQ_INT(v.conn_id, 43);
    CHECK_EQ_INT(v.n_req_hdrs, 5);
    CHECK_EQ_INT(v.req_body_len, 1000);
    CHECK_EQ_INT(v.status, 200);
    rp_plan_free(p);
}

static void test_partition(void)
{
    struct rp_plan *p;
    CHECK_EQ_INT(rp_plan_new(&p, 0), 0);
    for (uint64_t c = 1; c <= 5; c++)
        for (uint64_t k = 0; k < 3; k++)
            add(p, xch(c * 10 + k, c, (int64_t)(c + 10 * k), (int64_t)(c + 10 * k + 1000)));
    CHECK_EQ_INT(rp_plan_finish(p), 0);
    CHECK_EQ_INT(rp_plan_partition(p, 2), 0);
    CHECK_EQ_INT(p->thread_conns[0], 3);
    CHECK_EQ_INT(p->thread_conns[1], 2);
    CHECK_EQ_INT(p->thread_xs[0], 9);
    CHECK_EQ_INT(p->thread_xs[1], 6);
    /* local indices are dense per thread and follow plan (start) order */
    int bad = 0;
    uint32_t next[2] = {0, 0};
    for (uint32_t i = 0; i < p->n_xs; i++) {
        uint32_t t = p->conns[p->xs[i].conn].thread;
        if (p->xs[i].local != next[t]++)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(rp_plan_partition(p, 0), -7);
    rp_plan_free(p);
}

static void test_load_file(void)
{
    char path[] = "/tmp/test_rp_schedule_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    struct h2r_trace_header th;
    memset(&th, 0, sizeof(th));
    th.tool_version = "test";
    th.source = "unit";
    th.linktype = -1;
    struct h2r_trace_writer *w;
    char err[256];
    CHECK_EQ_INT(h2r_trace_writer_open(&w, path, &th, NULL, err, sizeof(err)), 0);
    struct h2r_conn c;
    memset(&c, 0, sizeof(c));
    c.id = 1;
    c.client = "127.0.0.1:5000";
    c.server = "127.0.0.1:80";
    c.transport = H2R_TRANSPORT_H2C_PRIOR;
    c.t_open_ns = T0 - 10 * MS;
    CHECK_EQ_INT(h2r_trace_write_conn(w, &c), 0);
    /* completion order: 2 finishes before 1 */
    struct h2r_exchange x2 = xch(2, 1, 5, 8);
    struct h2r_exchange x1 = xch(1, 1, 0, 20);
    CHECK_EQ_INT(h2r_trace_write_exchange(w, &x2), 0);
    CHECK_EQ_INT(h2r_trace_write_exchange(w, &x1), 0);
    struct h2r_exchange x3 = xch(3, 1, 30, 40);
    CHECK_EQ_INT(h2r_trace_write_exchange(w, &x3), 0);
    CHECK_EQ_INT(h2r_trace_writer_close(w), 0);

    struct rp_plan *p = NULL;
    int truncated = -1;
    CHECK_EQ_INT(rp_plan_load(&p, path, 0, &truncated, err, sizeof(err)), 0);
    CHECK_EQ_INT(truncated, 0);
    if (p) {
        CHECK_EQ_INT(p->n_xs, 3);
        CHECK_EQ_INT(p->xs[0].id, 1);
        CHECK_EQ_INT(p->xs[1].id, 2);
        CHECK_EQ_INT(p->xs[2].id, 3);
        CHECK_EQ_INT(p->xs[2].n_deps, 2); /* 3 waits for 1 and 2 (both ended before it) */
        CHECK_EQ_INT(p->conns[0].t_open, T0 - 10 * MS);
        CHECK_EQ_STR(p->xs[0].path, "/x");
    }
    rp_plan_free(p);
    unlink(path);
    p = NULL;
    CHECK(rp_plan_load(&p, "/nonexistent/trace", 0, &truncated, err, sizeof(err)) < 0);
    CHECK(p == NULL);
}

int main(void)
{
    test_scaling();
    test_causality();
    test_deps_cap();
    test_flags_and_conns();
    test_partition();
    test_load_file();
    return check_summary("test_rp_schedule");
}
