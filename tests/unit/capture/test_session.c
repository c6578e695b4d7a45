/*
 * Session layer: transport detection (prior knowledge, h2c upgrade accepted
 * and refused, not HTTP/2), partial flows, gaps, conn / conn-end records,
 * write errors, and a round trip through the real trace writer and reader.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cap_redact.h"
#include "cap_session.h"
#include "unit/capture/exch_sink.h"
#include "unit/capture/h2_frame_build.h"

struct fixture {
    struct cap_session_stats st;
    struct cap_session_env env;
    struct rec_sink sink;
    struct cap_session *s;
};

static void fx_init(struct fixture *f, int partial)
{
    struct cap_flow_info info;
    struct cap_session_sink sk;
    memset(f, 0, sizeof(*f));
    f->env.stats = &f->st;
    f->env.max_req_body = 1 << 20;
    f->env.max_resp_body = 1 << 20;
    f->env.next_exchange_id = 100;
    memset(&info, 0, sizeof(info));
    info.conn_id = 42;
    strcpy(info.client, "127.0.0.1:5000");
    strcpy(info.server, "127.0.0.1:8080");
    info.t_open_ns = 5;
    info.partial = partial;
    sk = rec_sink_make(&f->sink);
    f->s = cap_session_new_with_sink(&f->env, &info, &sk);
    if (!f->s)
        exit(2);
}

static void fx_free(struct fixture *f)
{
    cap_session_free(f->s);
    rec_sink_clear(&f->sink);
}

static int feed(struct fixture *f, int dir, const struct tbuf *b, int64_t ts)
{
    return cap_session_feed(f->s, dir, b->p, b->len, ts);
}

static const char *const get_a[] = {":method",        "GET",   ":scheme", "http", ":authority",
                                    "127.0.0.1:8080", ":path", "/a",      NULL};

static void test_prior_knowledge(void)
{
    struct fixture f;
    struct tbuf c1 = {0}, c2 = {0}, s0 = {0}, s1 = {0};
    nghttp2_hd_deflater *cd = NULL, *sd = NULL;
    nghttp2_hd_deflate_new(&cd, 4096);
    nghttp2_hd_deflate_new(&sd, 4096);

    fx_init(&f, 0);
    tb_str(&c1, "PRI * HTTP/2.0\r\n");
    tb_str(&c2, "\r\nSM\r\n\r\n");
    tb_settings_empty(&c2, 0);
    tb_headers(&c2, cd, 1, TB_END_STREAM, get_a);
    tb_settings_empty(&s0, 0); /* the server may speak first */
    tb_settings_empty(&s1, TB_ACK);
    tb_headers(&s1, sd, 1, 0, (const char *const[]){":status", "200", NULL});
    tb_data(&s1, 1, TB_END_STREAM, "ok", 2);

    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s0, 90), 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c1, 100), 0);
    CHECK_EQ_INT(f.sink.nconn, 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c2, 110), 0);
    CHECK_EQ_INT(f.sink.nconn, 1);
    CHECK_EQ_INT(f.sink.conn_transport[0], H2R_TRANSPORT_H2C_PRIOR);
    CHECK_EQ_INT(f.sink.conn[0].id, 42);
    CHECK_EQ_INT(f.sink.conn[0].t_open_ns, 5);
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s1, 200), 0);
    CHECK_EQ_INT(f.sink.nx, 1);
    if (f.sink.nx == 1) {
        const struct rec_exch *x = &f.sink.x[0];
        CHECK_EQ_INT(x->id, 100);
        CHECK_EQ_INT(x->conn_id, 42);
        CHECK_EQ_INT(x->t_req_first_ns, 110);
        CHECK_EQ_INT(x->t_resp_end_ns, 200);
        CHECK_EQ_STR(x->resp_body, "ok");
        CHECK(x->error == NULL);
    }
    CHECK_EQ_INT(f.env.next_exchange_id, 101);
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 300, 70, 40, 0), 0);
    CHECK_EQ_INT(f.sink.nend, 1);
    CHECK_EQ_INT(f.sink.end[0].how, H2R_CONN_END_FIN);
    CHECK_EQ_INT(f.sink.end[0].exchanges, 1);
    CHECK_EQ_INT(f.sink.end[0].bytes_c2s, 70);
    CHECK_EQ_INT(f.sink.end[0].goaway_code, -1);
    CHECK_EQ_INT(f.sink.end[0].t_close_ns, 300);
    CHECK(f.sink.end_reason[0] == NULL);
    CHECK_EQ_INT(f.st.flows_h2c_prior, 1);
    /* closing twice is harmless */
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 300, 70, 40, 0), 0);
    CHECK_EQ_INT(f.sink.nend, 1);
    fx_free(&f);

    /* open streams at close; GOAWAY recorded on the conn end (a new connection: new HPACK) */
    nghttp2_hd_deflate_del(cd);
    nghttp2_hd_deflate_new(&cd, 4096);
    fx_init(&f, 0);
    tb_free(&c1);
    tb_preface(&c1);
    tb_headers(&c1, cd, 1, TB_END_STREAM, get_a);
    tb_free(&s1);
    tb_goaway(&s1, 1, 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c1, 10), 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s1, 20), 0);
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_CAPTURE_END, 30, 1, 1, 0), 0);
    CHECK_EQ_INT(f.sink.nx, 1);
    if (f.sink.nx == 1)
        CHECK_EQ_STR(f.sink.x[0].error, "capture_ended");
    CHECK_EQ_INT(f.sink.end[0].how, H2R_CONN_END_GOAWAY);
    CHECK_EQ_INT(f.sink.end[0].goaway_code, 0);
    fx_free(&f);

    tb_free(&c1);
    tb_free(&c2);
    tb_free(&s0);
    tb_free(&s1);
    nghttp2_hd_deflate_del(cd);
    nghttp2_hd_deflate_del(sd);
}

/* base64url of a SETTINGS payload: HEADER_TABLE_SIZE = 8192 (00 01 00 00 20 00). */
#define SETTINGS_B64 "AAEAACAA"

static void test_upgrade(void)
{
    struct fixture f;
    struct tbuf c = {0}, c2 = {0}, s = {0};
    nghttp2_hd_deflater *cd = NULL, *sd = NULL;
    nghttp2_hd_deflate_new(&cd, 4096);
    nghttp2_hd_deflate_new(&sd, 16384);

    fx_init(&f, 0);
    tb_str(&c, "GET /up?x=1 HTTP/1.1\r\nHost: example.test:8080\r\n"
               "Connection: Upgrade, HTTP2-Settings, X-Hop\r\nUpgrade: h2c\r\n"
               "HTTP2-Settings: " SETTINGS_B64 "\r\nX-Hop: 1\r\nUser-Agent: curl/8\r\n"
               "Accept: */*\r\nTE: gzip\r\n\r\n");
    /* the 101 head and the first frames in one segment */
    tb_str(&s, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n");
    tb_settings_empty(&s, 0);
    /* the client allowed 8192 in HTTP2-Settings: the server's encoder uses it at once */
    nghttp2_hd_deflate_change_table_size(sd, 8192);
    tb_headers(&s, sd, 1, 0, (const char *const[]){":status", "200", NULL});
    tb_data(&s, 1, TB_END_STREAM, "upgraded", 8);
    tb_preface(&c2);
    tb_settings_empty(&c2, 0);
    tb_settings_empty(&c2, TB_ACK);

    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c, 10), 0);
    CHECK_EQ_INT(f.sink.nconn, 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s, 20), 0);
    CHECK_EQ_INT(f.sink.nconn, 1);
    CHECK_EQ_INT(f.sink.conn_transport[0], H2R_TRANSPORT_H2C_UPGRADE);
    CHECK_EQ_INT(f.sink.nx, 1);
    if (f.sink.nx == 1) {
        const struct rec_exch *x = &f.sink.x[0];
        CHECK_EQ_INT(x->stream_id, 1);
        CHECK_EQ_STR(x->req, ":method: GET\n:scheme: http\n:authority: example.test:8080\n"
                             ":path: /up?x=1\nuser-agent: curl/8\naccept: */*\n");
        CHECK_EQ_INT(x->status, 200);
        CHECK_EQ_STR(x->resp_body, "upgraded");
        CHECK_EQ_INT(x->t_req_first_ns, 10);
        CHECK_EQ_INT(x->t_req_end_ns, 10);
        CHECK(x->error == NULL);
    }
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c2, 30), 0);
    CHECK_EQ_INT(f.st.h2_hpack_errors, 0);
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 40, 1, 1, 0), 0);
    CHECK(f.sink.nend == 1 && f.sink.end_reason[0] == NULL);
    CHECK_EQ_INT(f.st.flows_h2c_upgrade, 1);
    fx_free(&f);

    /* POST with a body split across segments, 100 Continue before the 101, preface after */
    fx_init(&f, 0);
    tb_free(&c);
    tb_free(&c2);
    tb_free(&s);
    tb_str(&c, "POST /p HTTP/1.1\nHost: h\nUpgrade: h2c\nConnection: Upgrade, HTTP2-Settings\n"
               "HTTP2-Settings: \nContent-Length: 11\n\nhello");
    tb_str(&c2, " world");
    tb_preface(&c2);
    tb_settings_empty(&c2, 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c, 10), 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c2, 11), 0);
    tb_str(&s, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n");
    tb_settings_empty(&s, 0);
    nghttp2_hd_deflater *sd2 = NULL;
    nghttp2_hd_deflate_new(&sd2, 4096);
    tb_headers(&s, sd2, 1, TB_END_STREAM, (const char *const[]){":status", "201", NULL});
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s, 20), 0);
    CHECK_EQ_INT(f.sink.nx, 1);
    if (f.sink.nx == 1) {
        CHECK_EQ_STR(f.sink.x[0].req_body, "hello world");
        CHECK_EQ_INT(f.sink.x[0].t_req_end_ns, 11);
        CHECK_EQ_INT(f.sink.x[0].status, 201);
        CHECK_EQ_STR(f.sink.x[0].req, ":method: POST\n:scheme: http\n:authority: h\n:path: /p\n"
                                      "content-length: 11\n");
    }
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 40, 1, 1, 0), 0);
    CHECK(f.sink.nend == 1 && f.sink.end_reason[0] == NULL);
    nghttp2_hd_deflate_del(sd2);
    fx_free(&f);

    tb_free(&c);
    tb_free(&c2);
    tb_free(&s);
    nghttp2_hd_deflate_del(cd);
    nghttp2_hd_deflate_del(sd);
}

/* Runs c2s then s2c bytes through a fresh session, closes it and checks the reason. */
static void expect_reason_n(const char *c2s, size_t c2s_len, const char *s2c, int partial,
                            const char *reason, uint32_t how)
{
    struct fixture f;
    fx_init(&f, partial);
    if (c2s)
        CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_C2S, (const uint8_t *)c2s, c2s_len, 1), 0);
    if (s2c)
        CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_S2C, (const uint8_t *)s2c, strlen(s2c), 2), 0);
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 3, 0, 0, 0), 0);
    CHECK_EQ_INT(f.sink.nconn, 1);
    CHECK_EQ_INT(f.sink.nend, 1);
    CHECK_EQ_INT(f.sink.nx, 0);
    if (f.sink.nend == 1) {
        CHECK_EQ_STR(f.sink.end_reason[0], reason);
        CHECK_EQ_INT(f.sink.end[0].how, how);
        CHECK_EQ_INT(f.sink.conn_transport[0], H2R_TRANSPORT_UNKNOWN);
        CHECK_EQ_INT(f.sink.end[0].flags, partial ? H2R_CONN_F_PARTIAL : 0);
    }
    fx_free(&f);
}

static void expect_reason(const char *c2s, const char *s2c, int partial, const char *reason,
                          uint32_t how)
{
    expect_reason_n(c2s, c2s ? strlen(c2s) : 0, s2c, partial, reason, how);
}

static void test_undecodable(void)
{
    static const char upgrade[] =
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n";
    expect_reason(upgrade, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", 0,
                  "h2c_upgrade_refused", H2R_CONN_END_UNDECODABLE);
    expect_reason(upgrade, NULL, 0, "h2c_upgrade_unanswered", H2R_CONN_END_UNDECODABLE);
    expect_reason(upgrade, "SSH-2.0-OpenSSH\r\n\r\n", 0, "not_http2", H2R_CONN_END_UNDECODABLE);
    expect_reason("GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n", 0, "not_http2",
                  H2R_CONN_END_UNDECODABLE);
    /* A TLS ClientHello and no key log: its own reason, transport tls (see test_tls.c). */
    {
        struct fixture f;
        fx_init(&f, 0);
        CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_C2S, (const uint8_t *)"\x16\x03\x01\x02\x00\x01",
                                      6, 1),
                     0);
        CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 3, 0, 0, 0), 0);
        CHECK(f.sink.nend == 1 && rec_str_eq(f.sink.end_reason[0], "tls_no_keylog"));
        CHECK_EQ_INT(f.sink.conn_transport[0], H2R_TRANSPORT_TLS);
        CHECK_EQ_INT(f.st.undecodable_tls_no_keylog, 1);
        CHECK_EQ_INT(f.st.undecodable_not_http2, 0);
        fx_free(&f);
    }
    expect_reason("POST / HTTP/1.1\r\nUpgrade: h2c\r\nTransfer-Encoding: chunked\r\n\r\n", NULL, 0,
                  "h2c_upgrade_unsupported", H2R_CONN_END_UNDECODABLE);
    expect_reason("PRI * HTTP/2", NULL, 0, "not_http2", H2R_CONN_END_UNDECODABLE);
    expect_reason("GE", NULL, 0, "not_http2", H2R_CONN_END_UNDECODABLE);
    expect_reason(NULL, NULL, 0, "no_data", H2R_CONN_END_FIN);
    /* joined mid-stream: a HEADERS frame first */
    expect_reason_n("\x00\x00\x01\x01\x05\x00\x00\x00\x03\x82", 10, NULL, 1, "partial_hpack_state",
                    H2R_CONN_END_UNDECODABLE);

    struct fixture f;
    fx_init(&f, 0);
    cap_session_feed(f.s, CAP_DIR_C2S, (const uint8_t *)"x", 1, 1);
    cap_session_close(f.s, H2R_CONN_END_RST, 2, 1, 0, 0);
    fx_free(&f);
    CHECK_EQ_INT(f.st.undecodable_not_http2, 1);

    /* a garbage frame after a good preface: proto_error */
    struct tbuf b = {0};
    tb_preface(&b);
    tb_frame(&b, TB_SETTINGS, 0, 1, "", 0);
    fx_init(&f, 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &b, 1), 0);
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 2, 0, 0, 0), 0);
    CHECK_EQ_INT(f.sink.conn_transport[0], H2R_TRANSPORT_H2C_PRIOR);
    CHECK_EQ_STR(f.sink.end_reason[0], "proto_error");
    CHECK_EQ_INT(f.st.undecodable_proto, 1);
    fx_free(&f);
    tb_free(&b);
}

static void test_partial_and_gap(void)
{
    struct fixture f;
    struct tbuf c = {0}, s = {0};
    nghttp2_hd_deflater *cd = NULL, *sd = NULL;
    nghttp2_hd_deflate_new(&cd, 4096);
    nghttp2_hd_deflate_new(&sd, 4096);

    /* partial, but the first bytes are the preface: decoded normally */
    fx_init(&f, 1);
    tb_preface(&c);
    tb_headers(&c, cd, 1, TB_END_STREAM, get_a);
    tb_headers(&c, cd, 3, 0, get_a);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c, 10), 0);
    tb_headers(&s, sd, 1, TB_END_STREAM, (const char *const[]){":status", "200", NULL});
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s, 20), 0);
    CHECK_EQ_INT(f.sink.nx, 1);
    CHECK_EQ_INT(f.sink.conn[0].flags, H2R_CONN_F_PARTIAL);
    /* then bytes are lost: the open exchange is emitted, the flow is undecodable */
    cap_session_gap(f.s, CAP_DIR_S2C, 1000, 30);
    CHECK_EQ_INT(f.sink.nx, 2);
    if (f.sink.nx == 2) {
        CHECK_EQ_STR(f.sink.x[1].error, "capture_gap");
        CHECK_EQ_INT(f.sink.x[1].flags, H2R_EXCH_F_INCOMPLETE);
    }
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s, 40), 0); /* ignored */
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 50, 1, 1, 1000), 0);
    CHECK_EQ_STR(f.sink.end_reason[0], "gap");
    CHECK_EQ_INT(f.sink.end[0].flags, H2R_CONN_F_PARTIAL | H2R_CONN_F_GAPS);
    CHECK_EQ_INT(f.sink.end[0].exchanges, 2);
    CHECK_EQ_INT(f.st.undecodable_gap, 1);
    fx_free(&f);

    tb_free(&c);
    tb_free(&s);
    nghttp2_hd_deflate_del(cd);
    nghttp2_hd_deflate_del(sd);
}

static void test_write_error(void)
{
    struct fixture f;
    struct tbuf c = {0};
    tb_preface(&c);
    fx_init(&f, 0);
    f.sink.fail_writes = 1;
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c, 1), H2R_ERR_IO);
    CHECK_EQ_INT(f.env.write_error, H2R_ERR_IO);
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c, 2), H2R_ERR_IO);
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 3, 0, 0, 0), H2R_ERR_IO);
    fx_free(&f);
    tb_free(&c);
}

/* Redaction runs before the sink sees the exchange. */
static void test_redacted_session(void)
{
    struct fixture f;
    struct tbuf c = {0}, s = {0};
    nghttp2_hd_deflater *cd = NULL, *sd = NULL;
    static const char body[] = "{\"AuthKey\":\"tskey-secret\",\"x\":1}";
    nghttp2_hd_deflate_new(&cd, 4096);
    nghttp2_hd_deflate_new(&sd, 4096);
    fx_init(&f, 0);
    f.env.redactor = cap_redactor_new(NULL, NULL);
    tb_preface(&c);
    tb_headers(&c, cd, 1, 0,
               (const char *const[]){":method", "POST", ":scheme", "http", ":authority", "h",
                                     ":path", "/login", "content-type", "application/json",
                                     "authorization", "Bearer tok", NULL});
    tb_data(&c, 1, TB_END_STREAM, body, strlen(body));
    tb_headers(&s, sd, 1, TB_END_STREAM, (const char *const[]){":status", "204", NULL});
    CHECK_EQ_INT(feed(&f, CAP_DIR_C2S, &c, 1), 0);
    CHECK_EQ_INT(feed(&f, CAP_DIR_S2C, &s, 2), 0);
    CHECK_EQ_INT(f.sink.nx, 1);
    if (f.sink.nx == 1) {
        const struct rec_exch *x = &f.sink.x[0];
        CHECK_EQ_STR(x->req_body, "{\"AuthKey\":\"$H2R{authkey_1}\",\"x\":1}");
        CHECK_EQ_INT(x->req_body_len, strlen(body));
        CHECK(strstr(x->req, "authorization: Bearer $H2R{authorization_1}\n") != NULL);
        CHECK(x->flags & H2R_EXCH_F_REDACTED);
    }
    CHECK_EQ_INT(f.st.redacted_values, 2);
    cap_session_close(f.s, H2R_CONN_END_FIN, 3, 0, 0, 0);
    cap_redactor_free(f.env.redactor);
    fx_free(&f);
    tb_free(&c);
    tb_free(&s);
    nghttp2_hd_deflate_del(cd);
    nghttp2_hd_deflate_del(sd);
}

/* Through the real trace writer: records survive a round trip. */
static void test_trace_roundtrip(void)
{
    char path[] = "/tmp/h2r_test_session_XXXXXX";
    int fd = mkstemp(path);
    struct h2r_trace_header th;
    struct h2r_trace_writer *w = NULL;
    struct h2r_trace_reader *r = NULL;
    struct cap_session_stats st;
    struct cap_session_env env;
    struct cap_flow_info info;
    struct tbuf c = {0}, s = {0};
    nghttp2_hd_deflater *cd = NULL, *sd = NULL;
    char err[256];
    int kinds[8] = {0};

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    close(fd);
    memset(&th, 0, sizeof(th));
    th.tool_version = "test";
    th.source = "file:test";
    th.linktype = 1;
    CHECK_EQ_INT(h2r_trace_writer_open(&w, path, &th, NULL, err, sizeof(err)), 0);
    if (!w) {
        unlink(path);
        return;
    }
    memset(&st, 0, sizeof(st));
    memset(&env, 0, sizeof(env));
    env.tw = w;
    env.stats = &st;
    env.max_req_body = 1024;
    env.max_resp_body = 1024;
    env.next_exchange_id = 1;
    memset(&info, 0, sizeof(info));
    info.conn_id = 9;
    strcpy(info.client, "[::1]:1");
    strcpy(info.server, "[::1]:2");
    struct cap_session *sess = cap_session_new(&env, &info);
    nghttp2_hd_deflate_new(&cd, 4096);
    nghttp2_hd_deflate_new(&sd, 4096);
    tb_preface(&c);
    tb_headers(&c, cd, 1, TB_END_STREAM, get_a);
    tb_headers(&s, sd, 1, 0, (const char *const[]){":status", "200", NULL});
    tb_data(&s, 1, TB_END_STREAM, "body", 4);
    CHECK_EQ_INT(cap_session_feed(sess, CAP_DIR_C2S, c.p, c.len, 1), 0);
    CHECK_EQ_INT(cap_session_feed(sess, CAP_DIR_S2C, s.p, s.len, 2), 0);
    CHECK_EQ_INT(cap_session_close(sess, H2R_CONN_END_FIN, 3, c.len, s.len, 0), 0);
    cap_session_free(sess);
    CHECK_EQ_INT(h2r_trace_writer_close(w), 0);

    CHECK_EQ_INT(h2r_trace_reader_open(&r, path, err, sizeof(err)), 0);
    if (r) {
        struct h2r_trace_record rec;
        int rc;
        while ((rc = h2r_trace_reader_next(r, &rec)) == 1) {
            if (rec.kind >= 0 && rec.kind < 8)
                kinds[rec.kind]++;
            if (rec.kind == H2R_REC_CONN) {
                CHECK_EQ_INT(rec.u.conn.id, 9);
                CHECK_EQ_STR(rec.u.conn.client, "[::1]:1");
                CHECK_EQ_INT(rec.u.conn.transport, H2R_TRANSPORT_H2C_PRIOR);
            } else if (rec.kind == H2R_REC_EXCHANGE) {
                const struct h2r_hdr *p =
                    h2r_hdr_find(rec.u.exch.req_hdrs, rec.u.exch.n_req_hdrs, ":path");
                CHECK(p && p->value_len == 2 && memcmp(p->value, "/a", 2) == 0);
                CHECK_EQ_INT(rec.u.exch.status, 200);
                CHECK_EQ_MEM(rec.u.exch.resp_body, rec.u.exch.resp_body_stored, "body", 4);
            } else if (rec.kind == H2R_REC_CONN_END) {
                CHECK_EQ_INT(rec.u.end.exchanges, 1);
                CHECK(rec.u.end.reason == NULL);
            }
        }
        CHECK_EQ_INT(rc, 0);
        h2r_trace_reader_free(r);
    }
    CHECK_EQ_INT(kinds[H2R_REC_CONN], 1);
    CHECK_EQ_INT(kinds[H2R_REC_EXCHANGE], 1);
    CHECK_EQ_INT(kinds[H2R_REC_CONN_END], 1);
    unlink(path);
    tb_free(&c);
    tb_free(&s);
    nghttp2_hd_deflate_del(cd);
    nghttp2_hd_deflate_del(sd);
}

static void test_stats_export(void)
{
    struct cap_session_stats st;
    struct cap_counter_list l = {NULL, 0, 0};
    memset(&st, 0, sizeof(st));
    st.flows_h2c_prior = 2;
    st.undecodable_partial = 1;
    CHECK_EQ_INT(cap_session_stats_export(&st, &l), 0);
    CHECK_EQ_INT(l.n, 2);
    if (l.n == 2) {
        CHECK_EQ_STR(l.v[0].name, "h2c.prior_knowledge");
        CHECK_EQ_STR(l.v[1].name, "undecodable.partial_hpack_state");
    }
    cap_counter_list_free(&l);
}

int main(void)
{
    test_prior_knowledge();
    test_upgrade();
    test_undecodable();
    test_partial_and_gap();
    test_write_error();
    test_redacted_session();
    test_trace_roundtrip();
    test_stats_export();
    return check_summary("test_cap_session");
}
