/*
 * Writes the committed seed corpora of fuzz_h2_frames and fuzz_redact
 * (formats documented in those targets). Run from the build tree:
 *   gen_h2_corpus tests/fuzz/corpus/h2_frames tests/fuzz/corpus/redact
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit/capture/h2_frame_build.h"

#define C2S 0
#define S2C 1

/* Appends bytes of one direction as fuzz chunks of at most 127 bytes. */
static void chunks(struct tbuf *out, int dir, const struct tbuf *b)
{
    size_t off = 0;
    while (off < b->len) {
        size_t n = b->len - off > 127 ? 127 : b->len - off;
        uint8_t ctl = (uint8_t)((dir ? 0x80 : 0) | n);
        tb_put(out, &ctl, 1);
        tb_put(out, b->p + off, n);
        off += n;
    }
}

static void gap(struct tbuf *out, int dir)
{
    uint8_t ctl = dir ? 0x80 : 0;
    tb_put(out, &ctl, 1);
}

static int write_file(const char *dir, const char *name, const struct tbuf *b)
{
    char path[4096];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 1;
    }
    fwrite(b->p, 1, b->len, f);
    fclose(f);
    return 0;
}

static const char *const get[] = {
    ":method", "GET",         ":scheme",    "http",  ":authority", "127.0.0.1:8080",
    ":path",   "/index.html", "user-agent", "gen/1", NULL};
static const char *const ok[] = {":status", "200", "content-type", "text/html", NULL};

/* One flow: out gets the option byte, then the chunks appended by the caller. */
static void start(struct tbuf *out, uint8_t opt)
{
    tb_put(out, &opt, 1);
}

static int gen_frames(const char *dir)
{
    struct tbuf out = {0}, c = {0}, s = {0};
    nghttp2_hd_deflater *cd, *sd;
    int err = 0;
    char big[300];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';

#define FLOW_BEGIN(opt)                                                                            \
    do {                                                                                           \
        nghttp2_hd_deflate_new(&cd, 16384);                                                        \
        nghttp2_hd_deflate_new(&sd, 4096);                                                         \
        start(&out, (opt));                                                                        \
    } while (0)
#define FLOW_END(name)                                                                             \
    do {                                                                                           \
        err |= write_file(dir, (name), &out);                                                      \
        tb_free(&out);                                                                             \
        tb_free(&c);                                                                               \
        tb_free(&s);                                                                               \
        nghttp2_hd_deflate_del(cd);                                                                \
        nghttp2_hd_deflate_del(sd);                                                                \
    } while (0)
#define SEND(dir_, b)                                                                              \
    do {                                                                                           \
        chunks(&out, (dir_), &(b));                                                                \
        tb_free(&(b));                                                                             \
    } while (0)

    /* 1: prior knowledge GET */
    FLOW_BEGIN(0x00);
    tb_settings_empty(&c, 0);
    tb_headers(&c, cd, 1, TB_END_STREAM, get);
    SEND(C2S, c);
    tb_settings_empty(&s, 0);
    tb_settings_empty(&s, TB_ACK);
    tb_headers(&s, sd, 1, 0, ok);
    tb_data(&s, 1, TB_END_STREAM, "<html></html>", 13);
    SEND(S2C, s);
    tb_settings_empty(&c, TB_ACK);
    SEND(C2S, c);
    FLOW_END("prior_get");

    /* 2: POST with CONTINUATION, padded DATA, trailers, tiny body caps */
    FLOW_BEGIN(0x08);
    {
        struct tbuf blk = {0};
        tb_hpack(cd,
                 (const char *const[]){":method", "POST", ":scheme", "http", ":authority", "h",
                                       ":path", "/upload", "x-big", big, NULL},
                 &blk);
        tb_frame(&c, TB_HEADERS, 0, 1, blk.p, blk.len / 2);
        tb_frame(&c, TB_CONTINUATION, TB_END_HEADERS, 1, blk.p + blk.len / 2,
                 blk.len - blk.len / 2);
        tb_free(&blk);
        uint8_t padded[12] = {4, 'd', 'a', 't', 'a', '1', '2', '3', 0, 0, 0, 0};
        tb_frame(&c, TB_DATA, TB_PADDED | TB_END_STREAM, 1, padded, sizeof(padded));
    }
    SEND(C2S, c);
    tb_headers(&s, sd, 1, 0, (const char *const[]){":status", "100", NULL});
    tb_headers(&s, sd, 1, 0, ok);
    tb_data(&s, 1, 0, "response body", 13);
    tb_headers(&s, sd, 1, TB_END_STREAM, (const char *const[]){"x-checksum", "abc", NULL});
    SEND(S2C, s);
    FLOW_END("post_continuation_trailers");

    /* 3: gRPC trailers-only, RST_STREAM, GOAWAY */
    FLOW_BEGIN(0x20);
    tb_headers(&c, cd, 1, TB_END_STREAM,
               (const char *const[]){":method", "POST", ":scheme", "http", ":authority", "h",
                                     ":path", "/pkg.Svc/Call", "content-type", "application/grpc",
                                     "te", "trailers", NULL});
    tb_headers(&c, cd, 3, TB_END_STREAM, get);
    tb_headers(&c, cd, 5, TB_END_STREAM, get);
    SEND(C2S, c);
    tb_headers(&s, sd, 1, TB_END_STREAM,
               (const char *const[]){":status", "200", "content-type", "application/grpc",
                                     "grpc-status", "12", NULL});
    tb_rst(&s, 3, 7);
    tb_goaway(&s, 3, 11);
    SEND(S2C, s);
    FLOW_END("grpc_rst_goaway");

    /* 4: header table size changes in both directions */
    FLOW_BEGIN(0x00);
    tb_settings1(&c, 1, 256);
    tb_headers(&c, cd, 1, TB_END_STREAM, get);
    SEND(C2S, c);
    tb_settings1(&s, 1, 0);
    tb_settings_empty(&s, TB_ACK);
    nghttp2_hd_deflate_change_table_size(sd, 256);
    tb_headers(&s, sd, 1, TB_END_STREAM, ok);
    SEND(S2C, s);
    tb_settings_empty(&c, TB_ACK);
    nghttp2_hd_deflate_change_table_size(cd, 0);
    tb_headers(&c, cd, 3, TB_END_STREAM, get);
    SEND(C2S, c);
    FLOW_END("table_size");

    /* 5: h2c upgrade, the 101 and the first frames in one segment */
    FLOW_BEGIN(0x04);
    tb_str(&c,
           "POST /up HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
           "Content-Length: 4\r\n\r\nbody");
    SEND(C2S, c);
    tb_str(&s, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n");
    tb_settings_empty(&s, 0);
    tb_headers(&s, sd, 1, TB_END_STREAM, ok);
    SEND(S2C, s);
    tb_preface(&c);
    tb_settings_empty(&c, 0);
    tb_settings_empty(&c, TB_ACK);
    tb_headers(&c, cd, 3, TB_END_STREAM, get);
    SEND(C2S, c);
    FLOW_END("h2c_upgrade");

    /* 6: redaction of headers, query and JSON bodies */
    FLOW_BEGIN(0x02);
    tb_headers(&c, cd, 1, 0,
               (const char *const[]){":method", "POST", ":scheme", "http", ":authority", "h",
                                     ":path", "/machine/register?token=abc", "content-type",
                                     "application/json", "authorization", "Bearer sekrit", "cookie",
                                     "sid=1; theme=dark", NULL});
    {
        static const char body[] = "{\"NodeKey\":\"nodekey:1\",\"Auth\":{\"AuthKey\":\"tskey-x\"},"
                                   "\"list\":[{\"password\":\"p\"}]}";
        tb_data(&c, 1, TB_END_STREAM, body, strlen(body));
    }
    SEND(C2S, c);
    tb_headers(&s, sd, 1, 0,
               (const char *const[]){":status", "200", "content-type", "application/json",
                                     "set-cookie", "sid=2; Path=/", NULL});
    tb_data(&s, 1, TB_END_STREAM, "{\"access_token\":\"at\",\"n\":1}", 27);
    SEND(S2C, s);
    FLOW_END("redact_json");

    /* 7: partial flow at a preface, then a gap */
    FLOW_BEGIN(0x01);
    tb_headers(&c, cd, 1, 0, get);
    SEND(C2S, c);
    gap(&out, S2C);
    tb_headers(&s, sd, 1, TB_END_STREAM, ok);
    SEND(S2C, s);
    FLOW_END("partial_gap");

    /* 8: PUSH_PROMISE, PRIORITY, unknown frame, padded HEADERS with priority */
    FLOW_BEGIN(0x10);
    {
        struct tbuf blk = {0};
        tb_hpack(cd, get, &blk);
        uint8_t pre[6] = {3, 0x80, 0, 0, 0, 15};
        tb_frame_hdr(&c, (uint32_t)(6 + blk.len + 3), TB_HEADERS,
                     TB_END_HEADERS | TB_END_STREAM | TB_PADDED | TB_PRIO, 1);
        tb_put(&c, pre, sizeof(pre));
        tb_put(&c, blk.p, blk.len);
        tb_put(&c, "\0\0\0", 3);
        tb_free(&blk);
        uint8_t prio[5] = {0, 0, 0, 0, 1};
        tb_frame(&c, TB_PRIORITY, 0, 3, prio, 5);
        tb_frame(&c, 0x42, 0xff, 0, "xyz", 3);
    }
    SEND(C2S, c);
    {
        struct tbuf blk = {0};
        tb_hpack(sd,
                 (const char *const[]){":method", "GET", ":scheme", "http", ":authority", "h",
                                       ":path", "/style.css", NULL},
                 &blk);
        tb_frame_hdr(&s, (uint32_t)(4 + blk.len), TB_PUSH_PROMISE, TB_END_HEADERS, 1);
        tb_be(&s, 2, 4);
        tb_put(&s, blk.p, blk.len);
        tb_free(&blk);
    }
    tb_headers(&s, sd, 2, TB_END_STREAM, ok);
    tb_headers(&s, sd, 1, TB_END_STREAM, ok);
    SEND(S2C, s);
    FLOW_END("push_priority_unknown");

#undef FLOW_BEGIN
#undef FLOW_END
#undef SEND
    return err;
}

static int gen_redact(const char *dir)
{
    static const struct {
        const char *name;
        uint8_t opt;
        const char *text;
    } seeds[] = {
        {"headers", 0,
         "authorization: Bearer abc\ncookie: a=1; b=2\nset-cookie: a=1; Path=/\n"
         ":path: /x?token=t&q=1\nx-api-key: k\n\n"},
        {"json", 1,
         "accept: */*\n\n{\"a\":{\"Password\":\"p\",\"l\":[{\"key\":1}]},\"token\":\"t\"}"},
        {"form", 2, "\nuser=u&password=p&client_secret=s"},
        {"sniff", 0, "\n [{\"refresh_token\":\"r\"}]"},
        {"truncated", 5, "\n{\"password\":\"hun"},
    };
    int err = 0;
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        struct tbuf b = {0};
        tb_put(&b, &seeds[i].opt, 1);
        tb_str(&b, seeds[i].text);
        err |= write_file(dir, seeds[i].name, &b);
        tb_free(&b);
    }
    return err;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s H2_FRAMES_DIR REDACT_DIR\n", argv[0]);
        return 2;
    }
    return gen_frames(argv[1]) | gen_redact(argv[2]);
}
