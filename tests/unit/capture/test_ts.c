/*
 * TS2021 recognition in the session layer (cap_session.c + cap_ts.c): synthetic
 * Tailscale control connections whose upgrade request is built by the core's
 * initiator (ts_session_client_request) for a known machine key and control key,
 * fed through cap_session as a capture would. Covers identified, unidentified
 * and wrong-key sessions, node numbering across sessions, refused (403),
 * rejected (error frame, closes before the answers), bad handshake headers
 * (garbage base64, a truncated frame), a gap, a framing error (later bytes ignored),
 * the upgrade body cap, the frame cap,
 * GET /key, byte-by-byte feeding, and a round trip through the trace writer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cap_session.h"
#include "cap_ts.h"
#include "ts2021.h"
#include "unit/capture/exch_sink.h"
#include "unit/capture/h2_frame_build.h"

#define MAX_TS 8

/* rec_sink first, so its callbacks can take this struct's address as their ud. */
struct ts_sink {
    struct rec_sink base;
    struct h2r_ts_session ts[MAX_TS];
    char *reason[MAX_TS];
    size_t nts;
    int order[3 * MAX_TS]; /* record kinds in write order: 'c' conn, 't' ts, 'e' end */
    size_t norder;
};

static int ts_conn(void *ud, const struct h2r_conn *c)
{
    struct ts_sink *k = ud;
    if (k->norder < sizeof(k->order) / sizeof(k->order[0]))
        k->order[k->norder++] = 'c';
    return sink_conn(&k->base, c);
}

static int ts_conn_end(void *ud, const struct h2r_conn_end *e)
{
    struct ts_sink *k = ud;
    if (k->norder < sizeof(k->order) / sizeof(k->order[0]))
        k->order[k->norder++] = 'e';
    return sink_conn_end(&k->base, e);
}

static int ts_record(void *ud, const struct h2r_ts_session *t)
{
    struct ts_sink *k = ud;
    struct h2r_ts_session *c;
    if (k->norder < sizeof(k->order) / sizeof(k->order[0]))
        k->order[k->norder++] = 't';
    if (k->nts == MAX_TS)
        return 0;
    c = &k->ts[k->nts];
    *c = *t;
    c->recs = NULL;
    if (t->n_recs) {
        struct h2r_ts_rec *r = malloc(t->n_recs * sizeof(*r));
        if (!r)
            exit(2);
        memcpy(r, t->recs, t->n_recs * sizeof(*r));
        c->recs = r;
    }
    k->reason[k->nts] = t->reason ? sink_dup(t->reason, strlen(t->reason)) : NULL;
    c->reason = NULL;
    k->nts++;
    return 0;
}

struct env {
    struct cap_session_stats st;
    struct cap_session_env env;
    struct cap_ts_nodes *nodes;
    uint8_t noise_key[32];
};

struct fixture {
    struct env *e;
    struct ts_sink sink;
    struct cap_session *s;
};

static uint8_t control_priv[32], control_pub[32], machine_priv[32], machine_pub[32];

static void keys_init(void)
{
    for (int i = 0; i < 32; i++) {
        machine_priv[i] = (uint8_t)i;
        control_priv[i] = (uint8_t)(0x40 + i);
    }
    if (ts_x25519_public(control_priv, control_pub) != 0 ||
        ts_x25519_public(machine_priv, machine_pub) != 0)
        exit(2);
}

static void env_init(struct env *e, int with_key)
{
    memset(e, 0, sizeof(*e));
    e->env.stats = &e->st;
    e->env.max_req_body = 1 << 20;
    e->env.max_resp_body = 1 << 20;
    e->env.next_exchange_id = 1;
    if (with_key) {
        memcpy(e->noise_key, control_priv, 32);
        e->nodes = cap_ts_nodes_new(12345);
        if (!e->nodes)
            exit(2);
        e->env.noise_key = e->noise_key;
        e->env.ts_nodes = e->nodes;
    }
}

static void env_free(struct env *e)
{
    cap_ts_nodes_free(e->nodes);
}

static void fx_init(struct fixture *f, struct env *e, uint64_t conn_id)
{
    struct cap_flow_info info;
    struct cap_session_sink sk = {ts_conn, ts_conn_end, sink_exchange, NULL, ts_record};
    memset(f, 0, sizeof(*f));
    f->e = e;
    memset(&info, 0, sizeof(info));
    info.conn_id = conn_id;
    strcpy(info.client, "127.0.0.1:5000");
    strcpy(info.server, "127.0.0.1:8080");
    info.t_open_ns = 5;
    sk.ud = &f->sink;
    f->s = cap_session_new_with_sink(&e->env, &info, &sk);
    if (!f->s)
        exit(2);
}

static void fx_free(struct fixture *f)
{
    cap_session_free(f->s);
    for (size_t i = 0; i < f->sink.nts; i++) {
        free((void *)f->sink.ts[i].recs);
        free(f->sink.reason[i]);
    }
    rec_sink_clear(&f->sink.base);
}

static int no_data(void *ud, const uint8_t *buf, size_t len)
{
    (void)ud;
    (void)buf;
    (void)len;
    return 0;
}

/* The upgrade request of a client with machine key mpriv (capver 130), built by the core. */
static void upgrade_request(struct tbuf *b, const uint8_t mpriv[32])
{
    static const struct ts_session_callbacks cb = {NULL, NULL, no_data};
    struct ts_session cs;
    char req[1024];
    size_t n = 0;
    uint8_t eph[32];
    memset(&cs, 0, sizeof(cs));
    for (int i = 0; i < 32; i++)
        eph[i] = (uint8_t)(0x20 + i);
    if (ts_session_client_init(&cs, 130, mpriv, control_pub, &cb, NULL) != 0 ||
        ts_noise_set_ephemeral(&cs.noise, eph) != 0 ||
        ts_session_client_request(&cs, "127.0.0.1:8080", NULL, req, sizeof(req), &n) != 0)
        exit(2);
    tb_put(b, req, n);
    ts_session_cleanup(&cs);
}

/* An upgrade request with an arbitrary X-Tailscale-Handshake value (NULL: none). */
static void upgrade_request_hs(struct tbuf *b, const char *hs)
{
    tb_str(b, "POST /ts2021 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
              "Upgrade: Tailscale-Control-Protocol\r\nConnection: upgrade\r\n");
    if (hs) {
        tb_str(b, "X-Tailscale-Handshake: ");
        tb_str(b, hs);
        tb_str(b, "\r\n");
    }
    tb_str(b, "Content-Length: 0\r\n\r\n");
}

static const char head_101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: tailscale-control-protocol\r\nConnection: upgrade\r\n\r\n";

/* A controlbase frame: type, BE16 length, len filler bytes (NOTES 4.3). */
static void frame(struct tbuf *b, uint8_t type, size_t len)
{
    uint8_t hdr[3] = {type, (uint8_t)(len >> 8), (uint8_t)len};
    tb_put(b, hdr, 3);
    for (size_t i = 0; i < len; i++) {
        uint8_t v = (uint8_t)(i * 7 + type);
        tb_put(b, &v, 1);
    }
}

static int feed(struct fixture *f, int dir, const struct tbuf *b, int64_t ts)
{
    return cap_session_feed(f->s, dir, b->p, b->len, ts);
}

static int feed_bytewise(struct fixture *f, int dir, const struct tbuf *b, int64_t ts)
{
    for (size_t i = 0; i < b->len; i++) {
        int rc = cap_session_feed(f->s, dir, b->p + i, 1, ts);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/*
 * The common happy path: request at 1000, 101 + response frame + a 40-byte server
 * record at 2000, a client record split over two packets (3000, 3100), a server record
 * at 4000, FIN at 5000.
 */
static void run_session(struct fixture *f, const uint8_t *mpriv, int bytewise)
{
    struct tbuf c0 = {0}, s1 = {0}, c2 = {0}, s3 = {0};
    upgrade_request(&c0, mpriv);
    tb_str(&s1, head_101);
    frame(&s1, TS_FRAME_RESP, TS_MSG2_LEN);
    frame(&s1, TS_FRAME_RECORD, 40);
    frame(&c2, TS_FRAME_RECORD, 40 + 16);
    frame(&s3, TS_FRAME_RECORD, 100);
    if (bytewise) {
        CHECK_EQ_INT(feed_bytewise(f, CAP_DIR_C2S, &c0, 1000), 0);
        CHECK_EQ_INT(feed_bytewise(f, CAP_DIR_S2C, &s1, 2000), 0);
    } else {
        CHECK_EQ_INT(feed(f, CAP_DIR_C2S, &c0, 1000), 0);
        CHECK_EQ_INT(feed(f, CAP_DIR_S2C, &s1, 2000), 0);
    }
    CHECK_EQ_INT(cap_session_feed(f->s, CAP_DIR_C2S, c2.p, 10, 3000), 0);
    CHECK_EQ_INT(cap_session_feed(f->s, CAP_DIR_C2S, c2.p + 10, c2.len - 10, 3100), 0);
    CHECK_EQ_INT(feed(f, CAP_DIR_S2C, &s3, 4000), 0);
    CHECK_EQ_INT(
        cap_session_close(f->s, H2R_CONN_END_FIN, 5000, c0.len + c2.len, s1.len + s3.len, 0), 0);
    tb_free(&c0);
    tb_free(&s1);
    tb_free(&c2);
    tb_free(&s3);
}

static void check_happy(const struct fixture *f, uint64_t id, uint64_t node, int identified)
{
    const struct h2r_ts_session *t = &f->sink.ts[0];
    CHECK_EQ_INT(f->sink.nts, 1);
    CHECK_EQ_INT(f->sink.base.nconn, 1);
    CHECK_EQ_INT(f->sink.base.conn_transport[0], H2R_TRANSPORT_TS2021);
    CHECK_EQ_INT(f->sink.base.nend, 1);
    CHECK_EQ_INT(f->sink.base.end[0].how, H2R_CONN_END_FIN);
    CHECK_EQ_INT(f->sink.base.end[0].exchanges, 0);
    CHECK(f->sink.base.end_reason[0] == NULL);
    CHECK_EQ_INT(f->sink.norder, 3);
    CHECK(f->sink.order[0] == 'c' && f->sink.order[1] == 't' && f->sink.order[2] == 'e');
    CHECK_EQ_INT(t->id, id);
    CHECK_EQ_INT(t->conn_id, f->sink.base.conn[0].id);
    CHECK_EQ_INT(t->node, node);
    CHECK_EQ_INT(t->capver, 130);
    CHECK_EQ_INT(t->flags, identified ? H2R_TS_F_IDENTIFIED : 0);
    if (identified)
        CHECK_EQ_MEM(t->machine_key, 32, machine_pub, 32);
    CHECK_EQ_INT(t->status, 101);
    CHECK_EQ_INT(t->how, H2R_TS_END_FIN);
    CHECK_EQ_INT(t->t_upgrade_ns, 1000);
    CHECK_EQ_INT(t->t_handshake_ns, 2000);
    CHECK_EQ_INT(t->t_end_ns, 5000);
    CHECK_EQ_INT(t->frames_c2s, 1);
    CHECK_EQ_INT(t->frames_s2c, 3);
    CHECK_EQ_INT(t->bytes_c2s, 3 + 56);
    CHECK_EQ_INT(t->bytes_s2c, 51 + 43 + 103);
    CHECK_EQ_INT(t->recs_dropped, 0);
    CHECK_EQ_INT(t->n_recs, 4);
    if (t->n_recs == 4) {
        /* capture order; the time is the packet that completed the frame */
        CHECK(t->recs[0].dir == 1 && t->recs[0].type == 2 && t->recs[0].len == 51);
        CHECK_EQ_INT(t->recs[0].t_ns, 1000);
        CHECK(t->recs[1].dir == 1 && t->recs[1].type == 4 && t->recs[1].len == 43);
        CHECK(t->recs[2].dir == 0 && t->recs[2].type == 4 && t->recs[2].len == 59);
        CHECK_EQ_INT(t->recs[2].t_ns, 2100);
        CHECK(t->recs[3].dir == 1 && t->recs[3].len == 103);
        CHECK_EQ_INT(t->recs[3].t_ns, 3000);
    }
}

static void test_identified_and_nodes(void)
{
    struct env e;
    struct fixture f;
    uint8_t other[32];

    env_init(&e, 1);
    fx_init(&f, &e, 7);
    run_session(&f, machine_priv, 0);
    check_happy(&f, 1, 1, 1);
    CHECK(f.sink.reason[0] == NULL);
    fx_free(&f);

    /* the same machine again (a reconnect): same node; another machine: the next node */
    fx_init(&f, &e, 8);
    run_session(&f, machine_priv, 1);
    check_happy(&f, 2, 1, 1);
    fx_free(&f);
    for (int i = 0; i < 32; i++)
        other[i] = (uint8_t)(0x80 + i);
    fx_init(&f, &e, 9);
    run_session(&f, other, 0);
    CHECK_EQ_INT(f.sink.nts, 1);
    CHECK_EQ_INT(f.sink.ts[0].id, 3);
    CHECK_EQ_INT(f.sink.ts[0].node, 2);
    CHECK(memcmp(f.sink.ts[0].machine_key, machine_pub, 32) != 0);
    fx_free(&f);
    CHECK_EQ_INT(e.st.ts.sessions, 3);
    CHECK_EQ_INT(e.st.ts.identified, 3);
    CHECK_EQ_INT(e.st.ts.identify_failed, 0);
    CHECK_EQ_INT(e.st.ts.frames, 12);
    CHECK_EQ_INT(cap_ts_nodes_count(e.nodes), 2);
    CHECK_EQ_INT(e.st.undecodable_not_http2, 0);
    env_free(&e);
}

static void test_unidentified(void)
{
    struct env e;
    struct fixture f;
    env_init(&e, 0);
    fx_init(&f, &e, 7);
    run_session(&f, machine_priv, 0);
    check_happy(&f, 1, 0, 0);
    CHECK(f.sink.reason[0] == NULL);
    CHECK_EQ_INT(e.st.ts.identified + e.st.ts.identify_failed, 0);
    fx_free(&f);
    env_free(&e);
}

static void test_wrong_noise_key(void)
{
    struct env e;
    struct fixture f;
    env_init(&e, 1);
    e.noise_key[0] ^= 0x55; /* another server's key */
    fx_init(&f, &e, 7);
    run_session(&f, machine_priv, 0);
    check_happy(&f, 1, 0, 0);
    CHECK(f.sink.reason[0] &&
          strncmp(f.sink.reason[0], "not identified with the noise key", 33) == 0);
    CHECK_EQ_INT(e.st.ts.identify_failed, 1);
    CHECK_EQ_INT(cap_ts_nodes_count(e.nodes), 0);
    fx_free(&f);
    env_free(&e);
}

static void test_refused(void)
{
    struct env e;
    struct fixture f;
    struct tbuf c0 = {0}, s1 = {0};
    env_init(&e, 1);
    fx_init(&f, &e, 7);
    upgrade_request(&c0, machine_priv);
    tb_str(&s1, "HTTP/1.1 100 Continue\r\n\r\n"
                "HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n");
    /* capture order may put the answer first: it waits for the request */
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s1, 1500), 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c0, 1000), 0);
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 3000, c0.len, s1.len, 0), 0);
    CHECK_EQ_INT(f.sink.nts, 1);
    CHECK_EQ_INT(f.sink.ts[0].how, H2R_TS_END_REFUSED);
    CHECK_EQ_INT(f.sink.ts[0].status, 403);
    CHECK_EQ_INT(f.sink.ts[0].frames_c2s + f.sink.ts[0].frames_s2c, 0);
    CHECK_EQ_INT(f.sink.ts[0].node, 1); /* identified from the request alone */
    CHECK_EQ_INT(e.st.ts.refused, 1);
    CHECK(f.sink.base.end_reason[0] == NULL);
    tb_free(&c0);
    tb_free(&s1);
    fx_free(&f);
    env_free(&e);
}

static void test_error_frame(void)
{
    struct env e;
    struct fixture f;
    struct tbuf c0 = {0}, s1 = {0};
    env_init(&e, 1);
    fx_init(&f, &e, 7);
    upgrade_request(&c0, machine_priv);
    tb_str(&s1, head_101);
    tb_put(&s1,
           "\x03\x00\x0f"
           "version\ttoo old",
           18);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c0, 1000), 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s1, 2000), 0);
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 3000, c0.len, s1.len, 0), 0);
    CHECK_EQ_INT(f.sink.nts, 1);
    CHECK_EQ_INT(f.sink.ts[0].how, H2R_TS_END_REJECTED);
    CHECK_EQ_INT(f.sink.ts[0].status, 101);
    CHECK_EQ_STR(f.sink.reason[0], "version?too old"); /* control bytes replaced */
    CHECK_EQ_INT(f.sink.ts[0].frames_s2c, 1);
    CHECK_EQ_INT(f.sink.ts[0].t_handshake_ns, 0);
    CHECK_EQ_INT(e.st.ts.rejected, 1);
    tb_free(&c0);
    tb_free(&s1);
    fx_free(&f);
    env_free(&e);
}

/* Closes at each stage before the server's answers: rejected, or capture_end when the
 * capture stopped. */
static void test_closed_early(void)
{
    struct env e;
    struct fixture f;
    struct tbuf c0 = {0}, s1 = {0};
    env_init(&e, 0);
    upgrade_request(&c0, machine_priv);
    tb_str(&s1, head_101);

    fx_init(&f, &e, 1);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c0, 1000), 0);
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_RST, 2000, c0.len, 0, 0), 0);
    CHECK_EQ_INT(f.sink.ts[0].how, H2R_TS_END_REJECTED);
    CHECK_EQ_INT(f.sink.ts[0].status, -1);
    CHECK_EQ_STR(f.sink.reason[0], "closed before the upgrade was answered");
    fx_free(&f);

    fx_init(&f, &e, 2);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c0, 1000), 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s1, 1500), 0);
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 2000, c0.len, s1.len, 0), 0);
    CHECK_EQ_INT(f.sink.ts[0].how, H2R_TS_END_REJECTED);
    CHECK_EQ_INT(f.sink.ts[0].status, 101);
    CHECK_EQ_STR(f.sink.reason[0], "closed before the handshake response");
    fx_free(&f);

    fx_init(&f, &e, 3);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c0, 1000), 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s1, 1500), 0);
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_CAPTURE_END, 2000, c0.len, s1.len, 0), 0);
    CHECK_EQ_INT(f.sink.ts[0].how, H2R_TS_END_CAPTURE_END);
    CHECK(f.sink.reason[0] == NULL);
    fx_free(&f);

    /* the request head itself never completes: not recognised, not HTTP/2 */
    fx_init(&f, &e, 4);
    CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_C2S, c0.p, c0.len - 10, 1000), 0);
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 2000, c0.len - 10, 0, 0), 0);
    CHECK_EQ_INT(f.sink.nts, 0);
    CHECK_EQ_STR(f.sink.base.end_reason[0], "not_http2");
    fx_free(&f);
    CHECK_EQ_INT(e.st.ts.sessions, 3);
    CHECK_EQ_INT(e.st.ts.rejected, 2);
    tb_free(&c0);
    tb_free(&s1);
    env_free(&e);
}

/* Handshake headers that are not an initiation frame: counted and named, still followed. */
static void test_bad_handshake_header(void)
{
    static const struct {
        const char *hs;
        const char *reason;
    } cases[] = {
        {"AIIBAGA1gHLWNliA0a7q!!!!", "X-Tailscale-Handshake is not standard base64 of a frame"},
        {"AIIBAGA1gHLWNliA0a7qMprfkSE4OFHt", /* 24 bytes: a truncated frame */
         "X-Tailscale-Handshake is not a 101-byte initiation frame"},
        {"AIIBAGA1gHLWNliA0a7qMprfkSE4OFHt=",
         "X-Tailscale-Handshake is not standard base64 of a frame"},
        {NULL, "no X-Tailscale-Handshake header"},
    };
    struct env e;
    env_init(&e, 1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fixture f;
        struct tbuf c0 = {0}, s1 = {0};
        fx_init(&f, &e, i + 1);
        upgrade_request_hs(&c0, cases[i].hs);
        tb_str(&s1, head_101);
        frame(&s1, TS_FRAME_RESP, TS_MSG2_LEN);
        CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c0, 1000), 0);
        CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s1, 2000), 0);
        CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 3000, c0.len, s1.len, 0), 0);
        CHECK_EQ_INT(f.sink.nts, 1);
        CHECK_EQ_INT(f.sink.ts[0].capver, 0);
        CHECK_EQ_INT(f.sink.ts[0].flags, 0);
        CHECK_EQ_INT(f.sink.ts[0].how, H2R_TS_END_FIN);
        CHECK_EQ_INT(f.sink.ts[0].frames_s2c, 1);
        CHECK_EQ_STR(f.sink.reason[0], cases[i].reason);
        CHECK_EQ_INT(f.sink.base.conn_transport[0], H2R_TRANSPORT_TS2021);
        tb_free(&c0);
        tb_free(&s1);
        fx_free(&f);
    }
    CHECK_EQ_INT(e.st.ts.bad_handshake, 4);
    CHECK_EQ_INT(e.st.ts.identify_failed, 0);
    env_free(&e);
}

static void test_gap(void)
{
    struct env e;
    struct fixture f;
    struct tbuf c0 = {0}, s1 = {0}, s2 = {0};
    env_init(&e, 1);
    fx_init(&f, &e, 7);
    upgrade_request(&c0, machine_priv);
    tb_str(&s1, head_101);
    frame(&s1, TS_FRAME_RESP, TS_MSG2_LEN);
    frame(&s1, TS_FRAME_RECORD, 30);
    frame(&s2, TS_FRAME_RECORD, 30);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c0, 1000), 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s1, 2000), 0);
    cap_session_gap(f.s, CAP_DIR_S2C, 500, 2500);
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s2, 3000), 0); /* not framed any more */
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 4000, c0.len, s1.len + s2.len, 500), 0);
    CHECK_EQ_INT(f.sink.nts, 1);
    CHECK_EQ_INT(f.sink.ts[0].how, H2R_TS_END_UNDECODABLE);
    CHECK_EQ_STR(f.sink.reason[0], "gap");
    CHECK_EQ_INT(f.sink.ts[0].frames_s2c, 2);
    CHECK_EQ_INT(f.sink.ts[0].t_handshake_ns, 2000);
    CHECK_EQ_INT(f.sink.ts[0].flags, H2R_TS_F_IDENTIFIED);
    CHECK(f.sink.base.end[0].flags & H2R_CONN_F_GAPS);
    CHECK(f.sink.base.end_reason[0] == NULL);
    CHECK_EQ_INT(e.st.ts.undecodable, 1);
    tb_free(&c0);
    tb_free(&s1);
    tb_free(&s2);
    fx_free(&f);
    env_free(&e);
}

/* A record where the handshake response must be: the server's framing is broken. */
static void test_framing_error(void)
{
    struct env e;
    struct fixture f;
    struct tbuf c0 = {0}, s1 = {0}, s2 = {0}, c2 = {0};
    env_init(&e, 0);
    fx_init(&f, &e, 7);
    upgrade_request(&c0, machine_priv);
    tb_str(&s1, head_101);
    frame(&s1, TS_FRAME_RECORD, 30);
    frame(&s2, TS_FRAME_RESP, TS_MSG2_LEN);
    frame(&c2, TS_FRAME_RECORD, 40);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c0, 1000), 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s1, 2000), 0);
    /* the session is settled: later bytes of either direction are not decoded or counted */
    uint64_t frames = e.st.ts.frames;
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s2, 3000), 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c2, 3000), 0);
    CHECK_EQ_INT(e.st.ts.frames, frames);
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 4000, c0.len + c2.len,
                                   s1.len + s2.len, 0),
                 0);
    CHECK_EQ_INT(f.sink.ts[0].how, H2R_TS_END_UNDECODABLE);
    CHECK(f.sink.reason[0] && strncmp(f.sink.reason[0], "server framing: ", 16) == 0);
    CHECK_EQ_INT(f.sink.ts[0].bytes_s2c, 33);
    CHECK_EQ_INT(f.sink.ts[0].bytes_c2s, 0);
    CHECK_EQ_INT(f.sink.ts[0].frames_c2s + f.sink.ts[0].frames_s2c, 0);
    CHECK_EQ_INT(e.st.ts.undecodable, 1);
    tb_free(&c0);
    tb_free(&s1);
    tb_free(&s2);
    tb_free(&c2);
    fx_free(&f);
    env_free(&e);
}

/* An upgrade request with a body of content_length bytes (the value as written). */
static void upgrade_request_cl(struct tbuf *b, const char *content_length)
{
    tb_str(b, "POST /ts2021 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
              "Upgrade: Tailscale-Control-Protocol\r\nConnection: upgrade\r\n"
              "Content-Length: ");
    tb_str(b, content_length);
    tb_str(b, "\r\n\r\n");
}

/* The upgrade request's body: up to 64 KiB is skipped before the client's frames; a larger
 * Content-Length (which would swallow every client frame) makes the session undecodable. */
static void test_upgrade_body_cap(void)
{
    struct env e;
    env_init(&e, 0);
    for (int big = 0; big < 2; big++) {
        struct fixture f;
        struct tbuf c0 = {0}, s1 = {0}, c2 = {0};
        fx_init(&f, &e, (uint64_t)big + 1);
        upgrade_request_cl(&c0, big ? "999999999999999" : "65536");
        tb_str(&s1, head_101);
        frame(&s1, TS_FRAME_RESP, TS_MSG2_LEN);
        if (!big) {
            for (size_t i = 0; i < 65536; i++)
                tb_put(&c2, "b", 1);
        }
        frame(&c2, TS_FRAME_RECORD, 40);
        CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c0, 1000), 0);
        CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s1, 2000), 0);
        CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c2, 3000), 0);
        CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 4000, c0.len + c2.len, s1.len, 0),
                     0);
        CHECK_EQ_INT(f.sink.nts, 1);
        CHECK_EQ_INT(f.sink.base.conn_transport[0], H2R_TRANSPORT_TS2021);
        if (big) {
            CHECK_EQ_INT(f.sink.ts[0].how, H2R_TS_END_UNDECODABLE);
            CHECK_EQ_STR(f.sink.reason[0], "upgrade request body over 64 KiB (Content-Length)");
            CHECK_EQ_INT(f.sink.ts[0].frames_c2s + f.sink.ts[0].frames_s2c, 0);
        } else {
            CHECK_EQ_INT(f.sink.ts[0].how, H2R_TS_END_FIN);
            CHECK_EQ_INT(f.sink.ts[0].frames_c2s, 1);
            CHECK_EQ_INT(f.sink.ts[0].frames_s2c, 1);
            CHECK_EQ_INT(f.sink.ts[0].bytes_c2s, 43);
        }
        tb_free(&c0);
        tb_free(&s1);
        tb_free(&c2);
        fx_free(&f);
    }
    CHECK_EQ_INT(e.st.ts.sessions, 2);
    CHECK_EQ_INT(e.st.ts.undecodable, 1);
    env_free(&e);
}

/* More frames than H2R_TS_MAX_RECS: the first ones are kept, the rest counted. */
static void test_frame_cap(void)
{
    struct env e;
    struct fixture f;
    struct tbuf c0 = {0}, s1 = {0}, c2 = {0};
    const size_t extra = 10;
    env_init(&e, 0);
    fx_init(&f, &e, 7);
    upgrade_request(&c0, machine_priv);
    tb_str(&s1, head_101);
    frame(&s1, TS_FRAME_RESP, TS_MSG2_LEN);
    for (size_t i = 0; i < H2R_TS_MAX_RECS + extra; i++)
        frame(&c2, TS_FRAME_RECORD, TS_TAG_LEN); /* empty records: legal */
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c0, 1000), 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s1, 2000), 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c2, 3000), 0);
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_CAPTURE_END, 4000, c0.len + c2.len, s1.len, 0),
                 0);
    CHECK_EQ_INT(f.sink.ts[0].how, H2R_TS_END_CAPTURE_END);
    CHECK_EQ_INT(f.sink.ts[0].frames_c2s, H2R_TS_MAX_RECS + extra);
    CHECK_EQ_INT(f.sink.ts[0].n_recs, H2R_TS_MAX_RECS);
    CHECK_EQ_INT(f.sink.ts[0].recs_dropped, extra + 1);
    CHECK_EQ_INT(f.sink.ts[0].bytes_c2s, (H2R_TS_MAX_RECS + extra) * 19);
    CHECK_EQ_INT(e.st.ts.recs_dropped, extra + 1);
    tb_free(&c0);
    tb_free(&s1);
    tb_free(&c2);
    fx_free(&f);
    env_free(&e);
}

static void test_key_request(void)
{
    struct env e;
    struct fixture f;
    struct tbuf c0 = {0}, s1 = {0};
    env_init(&e, 1);
    fx_init(&f, &e, 7);
    tb_str(&c0, "GET /key?v=113 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n");
    tb_str(&s1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c0, 1000), 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s1, 2000), 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c0, 3000), 0); /* keep-alive: ignored */
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 4000, 2 * c0.len, s1.len, 0), 0);
    CHECK_EQ_INT(f.sink.nts, 0);
    CHECK_EQ_INT(f.sink.base.nend, 1);
    CHECK_EQ_STR(f.sink.base.end_reason[0], "ts2021_key");
    CHECK_EQ_INT(f.sink.base.end[0].how, H2R_CONN_END_FIN);
    CHECK_EQ_INT(e.st.ts.key_requests, 1);
    CHECK_EQ_INT(e.st.undecodable_not_http2, 0);
    CHECK_EQ_INT(cap_session_undecodable_flows(&e.st), 0);
    tb_free(&c0);
    tb_free(&s1);
    fx_free(&f);
    env_free(&e);
}

/* The node table: numbering in order of first appearance, the same key the same node. */
static void test_nodes_table(void)
{
    struct cap_ts_nodes *t = cap_ts_nodes_new(1);
    uint8_t k[32];
    int ok = 1;
    CHECK(t != NULL);
    if (!t)
        return;
    for (uint32_t i = 0; i < 5000; i++) {
        memset(k, 0, sizeof(k));
        memcpy(k, &i, sizeof(i));
        ok &= cap_ts_nodes_get(t, k) == i + 1;
    }
    for (uint32_t i = 0; i < 5000; i += 7) {
        memset(k, 0, sizeof(k));
        memcpy(k, &i, sizeof(i));
        ok &= cap_ts_nodes_get(t, k) == i + 1;
    }
    CHECK(ok);
    CHECK_EQ_INT(cap_ts_nodes_count(t), 5000);
    cap_ts_nodes_free(t);
    cap_ts_nodes_free(NULL);
}

static void test_noise_key_text(void)
{
    static const char good[] =
        "privkey:a84a7c7dc3e4ce2c1d9406b759352a2c1f68e8586f61a332341f1e886cce495c\n";
    uint8_t key[32];
    CHECK_EQ_INT(cap_ts_parse_noise_key(good, strlen(good), key), 0);
    CHECK_EQ_INT(key[0], 0xa8);
    CHECK_EQ_INT(key[31], 0x5c);
    CHECK_EQ_INT(cap_ts_parse_noise_key(good + 1, strlen(good) - 1, key), H2R_ERR_FORMAT);
    CHECK_EQ_INT(cap_ts_parse_noise_key("mkey:a84a", 9, key), H2R_ERR_FORMAT);
    CHECK_EQ_INT(cap_ts_parse_noise_key(good, 20, key), H2R_ERR_FORMAT);
}

/* The default sink: conn, ts_session and conn-end records through the real writer. */
static void test_trace_round_trip(void)
{
    char path[] = "/tmp/h2r_test_ts_XXXXXX";
    int fd = mkstemp(path);
    struct h2r_trace_header hdr;
    struct h2r_trace_writer *w = NULL;
    struct h2r_trace_reader *r = NULL;
    struct h2r_trace_record rec;
    struct env e;
    struct cap_flow_info info;
    struct cap_session *s;
    struct tbuf c0 = {0}, s1 = {0};
    char err[256];
    int kinds[8], n = 0, rc;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    close(fd);
    memset(&hdr, 0, sizeof(hdr));
    hdr.tool_version = "test";
    hdr.source = "file:test";
    CHECK_EQ_INT(h2r_trace_writer_open(&w, path, &hdr, NULL, err, sizeof(err)), 0);
    env_init(&e, 1);
    e.env.tw = w;
    memset(&info, 0, sizeof(info));
    info.conn_id = 3;
    strcpy(info.client, "127.0.0.1:5000");
    strcpy(info.server, "127.0.0.1:8080");
    s = cap_session_new(&e.env, &info);
    upgrade_request(&c0, machine_priv);
    tb_str(&s1, head_101);
    frame(&s1, TS_FRAME_RESP, TS_MSG2_LEN);
    CHECK_EQ_INT(cap_session_feed(s, CAP_DIR_C2S, c0.p, c0.len, 1000), 0);
    CHECK_EQ_INT(cap_session_feed(s, CAP_DIR_S2C, s1.p, s1.len, 2000), 0);
    CHECK_EQ_INT(cap_session_close(s, H2R_CONN_END_FIN, 3000, c0.len, s1.len, 0), 0);
    cap_session_free(s);
    CHECK_EQ_INT(h2r_trace_writer_close(w), 0);
    CHECK_EQ_INT(h2r_trace_reader_open(&r, path, err, sizeof(err)), 0);
    while (r && (rc = h2r_trace_reader_next(r, &rec)) == 1 && n < 8) {
        kinds[n++] = rec.kind;
        if (rec.kind == H2R_REC_TS_SESSION) {
            CHECK_EQ_INT(rec.u.ts.node, 1);
            CHECK_EQ_INT(rec.u.ts.conn_id, 3);
            CHECK_EQ_MEM(rec.u.ts.machine_key, 32, machine_pub, 32);
            CHECK_EQ_INT(rec.u.ts.n_recs, 1);
        }
    }
    CHECK_EQ_INT(n, 3);
    CHECK(n == 3 && kinds[0] == H2R_REC_CONN && kinds[1] == H2R_REC_TS_SESSION &&
          kinds[2] == H2R_REC_CONN_END);
    h2r_trace_reader_free(r);
    unlink(path);
    tb_free(&c0);
    tb_free(&s1);
    env_free(&e);
}

int main(void)
{
    keys_init();
    test_identified_and_nodes();
    test_unidentified();
    test_wrong_noise_key();
    test_refused();
    test_error_frame();
    test_closed_early();
    test_bad_handshake_header();
    test_gap();
    test_framing_error();
    test_upgrade_body_cap();
    test_frame_cap();
    test_key_request();
    test_nodes_table();
    test_noise_key_text();
    test_trace_round_trip();
    return check_summary("test_cap_ts");
}
