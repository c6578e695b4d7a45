/*
 * Passive HTTP/2 decoding (cap_h2) and exchange assembly (cap_exchange) on
 * real frames: hand-built frame headers and nghttp2-deflated header blocks.
 * Every scenario is fed once packet by packet and once byte by byte; both
 * must produce identical exchanges.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cap_exchange.h"
#include "cap_h2.h"
#include "cap_session.h"
#include "unit/capture/exch_sink.h"
#include "unit/capture/h2_frame_build.h"

#define MAX_PKTS 128

struct pkt {
    int dir;
    int64_t ts;
    struct tbuf b;
};

struct script {
    struct pkt v[MAX_PKTS];
    size_t n;
};

/* Starts a new packet of direction dir at time ts; frames appended to it travel together. */
static struct tbuf *pk(struct script *s, int dir, int64_t ts)
{
    if (s->n == MAX_PKTS)
        exit(2);
    s->v[s->n].dir = dir;
    s->v[s->n].ts = ts;
    memset(&s->v[s->n].b, 0, sizeof(s->v[s->n].b));
    return &s->v[s->n++].b;
}

static void script_free(struct script *s)
{
    for (size_t i = 0; i < s->n; i++)
        tb_free(&s->v[i].b);
    s->n = 0;
}

struct harness {
    struct cap_session_stats st;
    struct cap_session_env env;
    struct rec_sink sink;
    struct cap_session_sink sk;
    struct cap_exch_table *ex;
    struct cap_h2 *h2;
    int feed_rc; /* first non-zero feed result */
};

static void h_init(struct harness *h, size_t max_body)
{
    static const struct cap_h2_callbacks cb = {cap_exch_on_headers, cap_exch_on_data,
                                               cap_exch_on_rst, cap_exch_on_goaway};
    memset(h, 0, sizeof(*h));
    h->env.stats = &h->st;
    h->env.max_req_body = max_body;
    h->env.max_resp_body = max_body;
    h->env.next_exchange_id = 1;
    h->sk = rec_sink_make(&h->sink);
    h->ex = cap_exch_new(&h->env, 7, &h->sk);
    h->h2 = cap_h2_new(&cb, h->ex, &h->st);
    if (!h->ex || !h->h2)
        exit(2);
}

static void h_free(struct harness *h)
{
    cap_h2_free(h->h2);
    cap_exch_free(h->ex);
    rec_sink_clear(&h->sink);
}

/* Feeds the script whole packets (step 0) or step bytes at a time, then ends the capture. */
static void h_run(struct harness *h, const struct script *s, size_t step)
{
    for (size_t i = 0; i < s->n && h->feed_rc == 0; i++) {
        const struct pkt *p = &s->v[i];
        size_t off = 0;
        while (off < p->b.len && h->feed_rc == 0) {
            size_t n = step ? step : p->b.len;
            if (n > p->b.len - off)
                n = p->b.len - off;
            h->feed_rc = cap_h2_feed(h->h2, p->dir, p->b.p + off, n, p->ts);
            off += n;
        }
    }
    if (cap_exch_finish_all(h->ex, "capture_ended") != 0)
        h->feed_rc = -100;
}

static void hdrs_padded_prio(struct tbuf *b, nghttp2_hd_deflater *d, uint32_t sid, uint8_t flags,
                             const char *const *kv, uint8_t pad)
{
    struct tbuf blk = {NULL, 0, 0};
    uint8_t zero[255] = {0};
    tb_hpack(d, kv, &blk);
    tb_frame_hdr(b, (uint32_t)(1 + 5 + blk.len + pad), TB_HEADERS,
                 (uint8_t)(flags | TB_END_HEADERS | TB_PADDED | TB_PRIO), sid);
    tb_put(b, &pad, 1);
    tb_be(b, 0x80000000u | 3u, 4); /* exclusive dependency on stream 3 */
    uint8_t weight = 200;
    tb_put(b, &weight, 1);
    tb_put(b, blk.p, blk.len);
    tb_put(b, zero, pad);
    tb_free(&blk);
}

static void data_padded(struct tbuf *b, uint32_t sid, uint8_t flags, const char *data, uint8_t pad)
{
    uint8_t zero[255] = {0};
    size_t n = strlen(data);
    tb_frame_hdr(b, (uint32_t)(1 + n + pad), TB_DATA, (uint8_t)(flags | TB_PADDED), sid);
    tb_put(b, &pad, 1);
    tb_put(b, data, n);
    tb_put(b, zero, pad);
}

/* HEADERS + two CONTINUATIONs carrying one block. */
static void hdrs_continued(struct tbuf *b, nghttp2_hd_deflater *d, uint32_t sid, uint8_t flags,
                           const char *const *kv)
{
    struct tbuf blk = {NULL, 0, 0};
    tb_hpack(d, kv, &blk);
    size_t a = blk.len / 3, c = 2 * blk.len / 3;
    tb_frame(b, TB_HEADERS, flags, sid, blk.p, a);
    tb_frame(b, TB_CONTINUATION, 0, sid, blk.p + a, c - a);
    tb_frame(b, TB_CONTINUATION, TB_END_HEADERS, sid, blk.p + c, blk.len - c);
    tb_free(&blk);
}

/* The main scenario: interleaved streams exercising most frame types. */
static void build_main(struct script *s)
{
    nghttp2_hd_deflater *cd = NULL, *sd = NULL;
    struct tbuf *b;
    nghttp2_hd_deflate_new(&cd, 4096);
    nghttp2_hd_deflate_new(&sd, 4096);

    b = pk(s, CAP_DIR_C2S, 1000);
    tb_preface(b);
    tb_settings_empty(b, 0);
    b = pk(s, CAP_DIR_C2S, 1100);
    hdrs_padded_prio(b, cd, 1, TB_END_STREAM,
                     (const char *const[]){":method", "GET", ":scheme", "http", ":authority",
                                           "example.test", ":path", "/a", "user-agent", "t/1",
                                           NULL},
                     7);
    b = pk(s, CAP_DIR_C2S, 1200);
    hdrs_continued(b, cd, 3, 0,
                   (const char *const[]){":method", "POST", ":scheme", "http", ":authority",
                                         "example.test", ":path", "/b", "content-type",
                                         "application/grpc+proto", "x-long",
                                         "0123456789abcdef0123456789abcdef0123456789", NULL});
    data_padded(b, 3, 0, "hello ", 3);
    b = pk(s, CAP_DIR_S2C, 1300);
    tb_settings_empty(b, 0);
    tb_settings_empty(b, TB_ACK);
    tb_headers(b, sd, 3, 0, (const char *const[]){":status", "100", NULL});
    tb_headers(b, sd, 1, 0, (const char *const[]){":status", "200", "server", "t", NULL});
    tb_data(b, 1, 0, "A", 1);
    b = pk(s, CAP_DIR_C2S, 1400);
    tb_data(b, 3, TB_END_STREAM, "world", 5);
    tb_settings_empty(b, TB_ACK);
    {
        uint8_t unk[3] = {1, 2, 3};
        tb_frame(b, 0xfa, 0, 0, unk, sizeof(unk)); /* unknown type: skipped */
        uint8_t prio[5] = {0, 0, 0, 1, 16};
        tb_frame(b, TB_PRIORITY, 0, 3, prio, sizeof(prio));
        uint8_t wu[4] = {0, 0, 0x10, 0};
        tb_frame(b, TB_WINDOW_UPDATE, 0, 0, wu, sizeof(wu));
        uint8_t ping[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        tb_frame(b, TB_PING, 0, 0, ping, sizeof(ping));
    }
    b = pk(s, CAP_DIR_S2C, 1500);
    data_padded(b, 1, TB_END_STREAM, "BC", 20);
    tb_headers(b, sd, 3, 0,
               (const char *const[]){":status", "200", "content-type", "application/grpc", NULL});
    tb_data(b, 3, 0, "\0\0\0\0\2ok", 7);
    b = pk(s, CAP_DIR_S2C, 1600);
    tb_headers(b, sd, 3, TB_END_STREAM,
               (const char *const[]){"grpc-status", "0", "grpc-message", "", NULL});

    /* stream 5: reset by the server */
    b = pk(s, CAP_DIR_C2S, 1700);
    tb_headers(b, cd, 5, TB_END_STREAM,
               (const char *const[]){":method", "GET", ":scheme", "http", ":authority",
                                     "example.test", ":path", "/c", NULL});
    b = pk(s, CAP_DIR_S2C, 1800);
    tb_rst(b, 5, 8);
    /* stream 7: gRPC trailers-only response */
    b = pk(s, CAP_DIR_C2S, 1900);
    tb_headers(b, cd, 7, 0,
               (const char *const[]){":method", "POST", ":scheme", "http", ":authority",
                                     "example.test", ":path", "/svc/M", "content-type",
                                     "application/grpc", "te", "trailers", NULL});
    tb_data(b, 7, TB_END_STREAM, "\0\0\0\0\0", 5);
    b = pk(s, CAP_DIR_S2C, 2000);
    tb_headers(b, sd, 7, TB_END_STREAM,
               (const char *const[]){":status", "200", "content-type", "application/grpc",
                                     "grpc-status", "14", NULL});
    /* streams 9 and 11, then GOAWAY(last=9): 11 was never processed */
    b = pk(s, CAP_DIR_C2S, 2100);
    tb_headers(b, cd, 9, TB_END_STREAM,
               (const char *const[]){":method", "GET", ":scheme", "http", ":authority",
                                     "example.test", ":path", "/d", NULL});
    tb_headers(b, cd, 11, TB_END_STREAM,
               (const char *const[]){":method", "GET", ":scheme", "http", ":authority",
                                     "example.test", ":path", "/e", NULL});
    b = pk(s, CAP_DIR_S2C, 2200);
    tb_goaway(b, 9, 0);
    tb_headers(b, sd, 9, 0, (const char *const[]){":status", "204", NULL});
    /* stream 9 still open at the end of the capture: incomplete */
    nghttp2_hd_deflate_del(cd);
    nghttp2_hd_deflate_del(sd);
}

static void check_main(const struct harness *h)
{
    const struct rec_exch *x;
    CHECK_EQ_INT(h->feed_rc, 0);
    CHECK_EQ_INT(h->sink.nx, 6);

    x = rec_find(&h->sink, 1);
    CHECK(x != NULL);
    if (x) {
        CHECK_EQ_INT(x->id, 1);
        CHECK_EQ_INT(x->conn_id, 7);
        CHECK_EQ_STR(x->req, ":method: GET\n:scheme: http\n:authority: example.test\n"
                             ":path: /a\nuser-agent: t/1\n");
        CHECK_EQ_STR(x->resp, ":status: 200\nserver: t\n");
        CHECK_EQ_STR(x->resp_body, "ABC");
        CHECK_EQ_INT(x->resp_body_len, 3);
        CHECK_EQ_INT(x->status, 200);
        CHECK_EQ_INT(x->flags, 0);
        CHECK(x->error == NULL);
        CHECK_EQ_INT(x->t_req_first_ns, 1100);
        CHECK_EQ_INT(x->t_req_end_ns, 1100);
        CHECK_EQ_INT(x->t_resp_hdrs_ns, 1300);
        CHECK_EQ_INT(x->t_resp_end_ns, 1500);
        CHECK_EQ_INT(x->rst_code, -1);
        CHECK_EQ_INT(x->grpc_status, -1);
    }
    x = rec_find(&h->sink, 3);
    CHECK(x != NULL);
    if (x) {
        CHECK_EQ_INT(x->id, 2);
        CHECK(strstr(x->req, "x-long: 0123456789abcdef0123456789abcdef0123456789\n") != NULL);
        CHECK_EQ_STR(x->req_body, "hello world");
        CHECK_EQ_INT(x->req_body_len, 11);
        CHECK_EQ_STR(x->resp, ":status: 200\ncontent-type: application/grpc\n");
        CHECK_EQ_INT(x->resp_body_len, 7);
        CHECK_EQ_STR(x->trl, "grpc-status: 0\ngrpc-message: \n");
        CHECK_EQ_INT(x->grpc_status, 0);
        CHECK_EQ_INT(x->flags, H2R_EXCH_F_GRPC);
        CHECK_EQ_INT(x->t_req_end_ns, 1400);
        CHECK_EQ_INT(x->t_resp_hdrs_ns, 1500);
        CHECK_EQ_INT(x->t_resp_end_ns, 1600);
    }
    x = rec_find(&h->sink, 5);
    CHECK(x != NULL);
    if (x) {
        CHECK_EQ_STR(x->error, "rst_stream:CANCEL");
        CHECK_EQ_INT(x->rst_code, 8);
        CHECK_EQ_INT(x->rst_by, 2);
        CHECK_EQ_INT(x->status, -1);
        CHECK_EQ_INT(x->flags, H2R_EXCH_F_INCOMPLETE);
        CHECK_EQ_INT(x->t_resp_end_ns, 1800);
    }
    x = rec_find(&h->sink, 7);
    CHECK(x != NULL);
    if (x) {
        CHECK_EQ_INT(x->grpc_status, 14);
        CHECK_EQ_INT(x->status, 200);
        CHECK_EQ_INT(x->flags, H2R_EXCH_F_GRPC);
        CHECK_EQ_STR(x->trl, "");
        CHECK(x->error == NULL);
    }
    x = rec_find(&h->sink, 11);
    CHECK(x != NULL);
    if (x) {
        CHECK_EQ_STR(x->error, "goaway:NO_ERROR");
        CHECK_EQ_INT(x->goaway_code, 0);
        CHECK_EQ_INT(x->flags, H2R_EXCH_F_INCOMPLETE);
        CHECK_EQ_INT(x->id, 6);
    }
    x = rec_find(&h->sink, 9);
    CHECK(x != NULL);
    if (x) {
        CHECK_EQ_STR(x->error, "capture_ended");
        CHECK_EQ_INT(x->status, 204);
        CHECK_EQ_INT(x->goaway_code, -1);
        CHECK_EQ_INT(x->flags, H2R_EXCH_F_INCOMPLETE);
        CHECK_EQ_INT(x->id, 5);
    }
    CHECK_EQ_INT(h->st.h2_frames_unknown_type, 1);
    CHECK_EQ_INT(h->st.h2_rst_stream, 1);
    CHECK_EQ_INT(h->st.h2_goaway, 1);
    CHECK_EQ_INT(h->st.exchanges, 6);
    CHECK_EQ_INT(h->st.exchanges_incomplete, 3);
}

static void test_main_scenario(void)
{
    struct script s = {0};
    struct harness whole, bytes;
    build_main(&s);
    h_init(&whole, 1 << 20);
    h_run(&whole, &s, 0);
    check_main(&whole);
    h_init(&bytes, 1 << 20);
    h_run(&bytes, &s, 1);
    check_main(&bytes);
    CHECK_EQ_INT(whole.sink.nx, bytes.sink.nx);
    for (size_t i = 0; i < whole.sink.nx && i < bytes.sink.nx; i++)
        CHECK(rec_exch_eq(&whole.sink.x[i], &bytes.sink.x[i]));
    CHECK_EQ_INT(whole.st.h2_frames, bytes.st.h2_frames);
    /* odd chunk sizes straddle every boundary too */
    for (size_t step = 2; step < 12; step += 3) {
        struct harness o;
        h_init(&o, 1 << 20);
        h_run(&o, &s, step);
        CHECK_EQ_INT(o.sink.nx, whole.sink.nx);
        for (size_t i = 0; i < whole.sink.nx && i < o.sink.nx; i++)
            CHECK(rec_exch_eq(&whole.sink.x[i], &o.sink.x[i]));
        h_free(&o);
    }
    h_free(&whole);
    h_free(&bytes);
    script_free(&s);
}

/*
 * SETTINGS_HEADER_TABLE_SIZE: a decrease takes effect at the peer's ACK, so a
 * block encoded with the old table before the ACK still decodes; an increase
 * is usable at once.
 */
static void test_table_size(size_t step)
{
    struct script s = {0};
    struct harness h;
    nghttp2_hd_deflater *cd = NULL, *sd = NULL;
    struct tbuf *b;
    char big[201];
    memset(big, 'v', 200);
    big[200] = '\0';
    const char *const req[] = {":method", "GET", ":scheme",  "http", ":authority", "t",
                               ":path",   "/",   "x-custom", big,    NULL};

    nghttp2_hd_deflate_new(&cd, 16384);
    nghttp2_hd_deflate_new(&sd, 4096);
    b = pk(&s, CAP_DIR_C2S, 10);
    tb_preface(b);
    tb_settings1(b, 1, 1024);                 /* the client lowers the server's table */
    tb_headers(b, cd, 1, TB_END_STREAM, req); /* x-custom enters the dynamic table */
    b = pk(&s, CAP_DIR_S2C, 20);
    tb_settings1(b, 1, 64); /* the server lowers the client's table */
    b = pk(&s, CAP_DIR_C2S, 30);
    tb_headers(b, cd, 3, TB_END_STREAM, req); /* still the old table: indexed reference */
    tb_settings_empty(b, TB_ACK);
    nghttp2_hd_deflate_change_table_size(cd, 64);
    tb_headers(b, cd, 5, TB_END_STREAM, req); /* opens with a table size update to <= 64 */
    b = pk(&s, CAP_DIR_S2C, 40);
    tb_settings_empty(b, TB_ACK);
    nghttp2_hd_deflate_change_table_size(sd, 1024);
    tb_headers(b, sd, 1, TB_END_STREAM, (const char *const[]){":status", "200", NULL});
    tb_headers(b, sd, 3, TB_END_STREAM, (const char *const[]){":status", "200", NULL});
    tb_headers(b, sd, 5, TB_END_STREAM, (const char *const[]){":status", "200", NULL});
    /* increase before the ACK is seen: the client may already use it */
    tb_settings1(b, 1, 8192);
    b = pk(&s, CAP_DIR_C2S, 50);
    nghttp2_hd_deflate_change_table_size(cd, 8192);
    tb_headers(b, cd, 7, TB_END_STREAM, req);
    tb_settings_empty(b, TB_ACK);
    tb_headers(b, cd, 9, TB_END_STREAM, req);
    b = pk(&s, CAP_DIR_S2C, 60);
    tb_headers(b, sd, 7, TB_END_STREAM, (const char *const[]){":status", "200", NULL});
    tb_headers(b, sd, 9, TB_END_STREAM, (const char *const[]){":status", "200", NULL});

    h_init(&h, 1024);
    h_run(&h, &s, step);
    CHECK_EQ_INT(h.feed_rc, 0);
    CHECK_EQ_INT(h.sink.nx, 5);
    CHECK_EQ_INT(h.st.h2_hpack_errors, 0);
    for (uint32_t sid = 1; sid <= 9; sid += 2) {
        const struct rec_exch *x = rec_find(&h.sink, sid);
        CHECK(x != NULL);
        if (x) {
            CHECK(strstr(x->req, big) != NULL);
            CHECK_EQ_INT(x->status, 200);
            CHECK(x->error == NULL);
        }
    }
    h_free(&h);
    nghttp2_hd_deflate_del(cd);
    nghttp2_hd_deflate_del(sd);
    script_free(&s);
}

/* Feeds a client stream (preface first) and returns the decoder's result. */
static int feed_c2s(struct harness *h, const struct tbuf *b)
{
    return cap_h2_feed(h->h2, CAP_DIR_C2S, b->p, b->len, 1);
}

static void test_protocol_errors(void)
{
    struct harness h;
    struct tbuf b = {NULL, 0, 0};
    uint8_t junk[16] = {0};

    /* bad preface */
    h_init(&h, 16);
    tb_str(&b, "PRI * HTTP/1.1\r\n");
    CHECK_EQ_INT(feed_c2s(&h, &b), H2R_ERR_PROTO);
    CHECK(strlen(cap_h2_errmsg(h.h2)) > 0);
    CHECK_EQ_INT(cap_h2_feed(h.h2, CAP_DIR_S2C, junk, 1, 1), H2R_ERR_PROTO);
    h_free(&h);
    tb_free(&b);

    /* padding as long as the payload (RFC 9113 §6.1) */
    h_init(&h, 16);
    tb_preface(&b);
    tb_frame_hdr(&b, 3, TB_DATA, TB_PADDED, 1);
    uint8_t pad = 3;
    tb_put(&b, &pad, 1);
    tb_put(&b, junk, 2);
    CHECK_EQ_INT(feed_c2s(&h, &b), H2R_ERR_PROTO);
    h_free(&h);
    tb_free(&b);

    /* header block interrupted by another frame (§6.10) */
    h_init(&h, 16);
    tb_preface(&b);
    tb_frame(&b, TB_HEADERS, 0, 1, "\x82", 1);
    tb_frame(&b, TB_DATA, 0, 1, "x", 1);
    CHECK_EQ_INT(feed_c2s(&h, &b), H2R_ERR_PROTO);
    h_free(&h);
    tb_free(&b);

    /* CONTINUATION out of nowhere */
    h_init(&h, 16);
    tb_preface(&b);
    tb_frame(&b, TB_CONTINUATION, TB_END_HEADERS, 1, "\x82", 1);
    CHECK_EQ_INT(feed_c2s(&h, &b), H2R_ERR_PROTO);
    h_free(&h);
    tb_free(&b);

    /* frame over the cap */
    h_init(&h, 16);
    cap_h2_set_max_frame(h.h2, 100);
    tb_preface(&b);
    tb_frame_hdr(&b, 92, TB_DATA, 0, 1);
    CHECK_EQ_INT(feed_c2s(&h, &b), H2R_ERR_PROTO);
    CHECK_EQ_INT(h.st.h2_frame_too_large, 1);
    h_free(&h);
    tb_free(&b);

    /* HPACK garbage: index 0 is never valid (RFC 7541 §6.1) */
    h_init(&h, 16);
    tb_preface(&b);
    tb_frame(&b, TB_HEADERS, TB_END_HEADERS | TB_END_STREAM, 1, "\x80", 1);
    CHECK_EQ_INT(feed_c2s(&h, &b), H2R_ERR_PROTO);
    CHECK_EQ_INT(h.st.h2_hpack_errors, 1);
    h_free(&h);
    tb_free(&b);

    /* header block over 1 MiB */
    h_init(&h, 16);
    tb_preface(&b);
    tb_frame_hdr(&b, CAP_H2_MAX_HEADER_BLOCK + 1, TB_HEADERS, 0, 1);
    CHECK_EQ_INT(feed_c2s(&h, &b), 0);
    {
        uint8_t *blk = calloc(1, CAP_H2_MAX_HEADER_BLOCK + 1);
        CHECK_EQ_INT(cap_h2_feed(h.h2, CAP_DIR_C2S, blk, CAP_H2_MAX_HEADER_BLOCK + 1, 2),
                     H2R_ERR_PROTO);
        free(blk);
    }
    CHECK_EQ_INT(h.st.h2_header_block_too_large, 1);
    h_free(&h);
    tb_free(&b);

    /* malformed SETTINGS and RST_STREAM lengths, PUSH_PROMISE from a client */
    h_init(&h, 16);
    tb_preface(&b);
    tb_frame(&b, TB_SETTINGS, 0, 0, junk, 5);
    CHECK_EQ_INT(feed_c2s(&h, &b), H2R_ERR_PROTO);
    h_free(&h);
    tb_free(&b);
    h_init(&h, 16);
    tb_preface(&b);
    tb_frame(&b, TB_RST_STREAM, 0, 1, junk, 3);
    CHECK_EQ_INT(feed_c2s(&h, &b), H2R_ERR_PROTO);
    h_free(&h);
    tb_free(&b);
    h_init(&h, 16);
    tb_preface(&b);
    tb_frame(&b, TB_PUSH_PROMISE, TB_END_HEADERS, 1, junk, 4);
    CHECK_EQ_INT(feed_c2s(&h, &b), H2R_ERR_PROTO);
    h_free(&h);
    tb_free(&b);
}

/* PUSH_PROMISE blocks are decoded (HPACK stays in sync) but pushed streams are not recorded. */
static void test_push_and_limits(void)
{
    struct harness h;
    struct tbuf c = {NULL, 0, 0}, s = {NULL, 0, 0}, blk = {NULL, 0, 0};
    nghttp2_hd_deflater *cd = NULL, *sd = NULL;
    const char *const get[] = {":method", "GET",   ":scheme", "http", ":authority",
                               "t",       ":path", "/",       NULL};
    nghttp2_hd_deflate_new(&cd, 4096);
    nghttp2_hd_deflate_new(&sd, 4096);

    h_init(&h, 4);
    cap_exch_set_max_streams(h.ex, 2);
    tb_preface(&c);
    tb_headers(&c, cd, 1, 0, get);
    tb_data(&c, 1, TB_END_STREAM, "0123456789", 10);
    tb_headers(&c, cd, 3, TB_END_STREAM, get);
    tb_headers(&c, cd, 5, TB_END_STREAM, get); /* over the stream cap */
    CHECK_EQ_INT(cap_h2_feed(h.h2, CAP_DIR_C2S, c.p, c.len, 5), 0);
    CHECK_EQ_INT(h.st.streams_cap_hit, 1);

    tb_hpack(sd,
             (const char *const[]){":method", "GET", ":scheme", "http", ":authority", "t", ":path",
                                   "/pushed.css", NULL},
             &blk);
    tb_frame_hdr(&s, (uint32_t)(4 + blk.len), TB_PUSH_PROMISE, TB_END_HEADERS, 1);
    tb_be(&s, 2, 4);
    tb_put(&s, blk.p, blk.len);
    tb_headers(&s, sd, 2, 0, (const char *const[]){":status", "200", NULL});
    tb_data(&s, 2, TB_END_STREAM, "css", 3);
    tb_headers(&s, sd, 1, 0,
               (const char *const[]){":status", "200", "content-type", "text/plain", NULL});
    tb_data(&s, 1, TB_END_STREAM, "abcdefgh", 8);
    tb_headers(&s, sd, 3, TB_END_STREAM, (const char *const[]){":status", "404", NULL});
    CHECK_EQ_INT(cap_h2_feed(h.h2, CAP_DIR_S2C, s.p, s.len, 6), 0);
    CHECK_EQ_INT(h.st.h2_push_promise, 1);
    CHECK_EQ_INT(h.sink.nx, 2);
    const struct rec_exch *x = rec_find(&h.sink, 1);
    CHECK(x != NULL);
    if (x) {
        CHECK_EQ_INT(x->req_body_stored, 4);
        CHECK_EQ_INT(x->req_body_len, 10);
        CHECK_EQ_STR(x->req_body, "0123");
        CHECK_EQ_STR(x->resp_body, "abcd");
        CHECK_EQ_INT(x->resp_body_len, 8);
        CHECK_EQ_INT(x->flags, H2R_EXCH_F_REQ_BODY_TRUNC | H2R_EXCH_F_RESP_BODY_TRUNC);
    }
    CHECK_EQ_INT(h.st.bodies_truncated, 2);
    x = rec_find(&h.sink, 3);
    CHECK(x != NULL && x->status == 404);
    CHECK(rec_find(&h.sink, 5) == NULL);

    h_free(&h);
    tb_free(&c);
    tb_free(&s);
    tb_free(&blk);
    nghttp2_hd_deflate_del(cd);
    nghttp2_hd_deflate_del(sd);
}

/* RST_STREAM(NO_ERROR) after a complete response (RFC 9113 §8.1) is not an error. */
static void test_rst_after_response(void)
{
    struct harness h;
    struct tbuf c = {NULL, 0, 0}, s = {NULL, 0, 0}, c2 = {NULL, 0, 0};
    nghttp2_hd_deflater *cd = NULL, *sd = NULL;
    nghttp2_hd_deflate_new(&cd, 4096);
    nghttp2_hd_deflate_new(&sd, 4096);
    h_init(&h, 64);
    tb_preface(&c);
    tb_headers(&c, cd, 1, 0,
               (const char *const[]){":method", "PUT", ":scheme", "http", ":authority", "t",
                                     ":path", "/up", NULL});
    tb_data(&c, 1, 0, "part", 4);
    tb_headers(&s, sd, 1, TB_END_STREAM, (const char *const[]){":status", "413", NULL});
    tb_rst(&s, 1, 0);
    tb_headers(&c2, cd, 3, TB_END_STREAM,
               (const char *const[]){":method", "GET", ":scheme", "http", ":authority", "t",
                                     ":path", "/x", NULL});
    tb_rst(&c2, 3, 8); /* the client cancels */
    CHECK_EQ_INT(cap_h2_feed(h.h2, CAP_DIR_C2S, c.p, c.len, 1), 0);
    CHECK_EQ_INT(cap_h2_feed(h.h2, CAP_DIR_S2C, s.p, s.len, 2), 0);
    CHECK_EQ_INT(cap_h2_feed(h.h2, CAP_DIR_C2S, c2.p, c2.len, 3), 0);
    const struct rec_exch *x = rec_find(&h.sink, 1);
    CHECK(x != NULL);
    if (x) {
        CHECK(x->error == NULL);
        CHECK_EQ_INT(x->rst_code, 0);
        CHECK_EQ_INT(x->rst_by, 2);
        CHECK_EQ_INT(x->status, 413);
        CHECK_EQ_INT(x->flags, 0);
        CHECK_EQ_STR(x->req_body, "part");
    }
    x = rec_find(&h.sink, 3);
    CHECK(x != NULL);
    if (x) {
        CHECK_EQ_STR(x->error, "rst_stream:CANCEL");
        CHECK_EQ_INT(x->rst_by, 1);
        CHECK_EQ_INT(x->flags, H2R_EXCH_F_INCOMPLETE);
    }
    CHECK_EQ_STR(cap_h2_error_code_name(13), "HTTP_1_1_REQUIRED");
    CHECK(cap_h2_error_code_name(14) == NULL);
    h_free(&h);
    tb_free(&c);
    tb_free(&s);
    tb_free(&c2);
    nghttp2_hd_deflate_del(cd);
    nghttp2_hd_deflate_del(sd);
}

int main(void)
{
    test_main_scenario();
    test_table_size(0);
    test_table_size(1);
    test_protocol_errors();
    test_push_and_limits();
    test_rst_after_response();
    return check_summary("test_cap_h2_passive");
}
