/*
 * Unit tests for ts_frame: the frame push parser in both modes (whole
 * buffers, byte at a time, every split point), header validation (bad type,
 * oversize and undersize records, response length, error frames), record
 * sealing across the 4077-byte boundary, the initiation frame codec, and the
 * EarlyNoise splitter (present, absent, split across records, oversize).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ts2021.h"

struct frames {
    int n;
    uint8_t types[64];
    size_t lens[64];
    uint8_t data[65536];
    size_t data_len;
    int fail_at; /* return an error on this frame (1-based), 0 never */
};

static int on_frame(void *ud, uint8_t type, const uint8_t *body, size_t len)
{
    struct frames *f = ud;

    if (f->n < 64) {
        f->types[f->n] = type;
        f->lens[f->n] = len;
    }
    f->n++;
    if (len <= sizeof(f->data) - f->data_len) {
        memcpy(f->data + f->data_len, body, len);
        f->data_len += len;
    }
    return f->fail_at == f->n ? H2R_ERR_IO : 0;
}

static int data_sink(void *ud, const uint8_t *buf, size_t len)
{
    (void)ud;
    (void)buf;
    (void)len;
    return 0;
}

static size_t put_frame(uint8_t *p, uint8_t type, size_t len, uint8_t fill)
{
    p[0] = type;
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    memset(p + 3, fill, len);
    return 3 + len;
}

/* Feeds buf in pieces of `step` bytes (0: whole) and returns the first error. */
static int feed_steps(struct ts_frame_parser *p, const uint8_t *buf, size_t len, size_t step)
{
    size_t off = 0;

    if (step == 0)
        return ts_frame_feed(p, buf, len);
    while (off < len) {
        size_t n = len - off < step ? len - off : step;
        int rc = ts_frame_feed(p, buf + off, n);
        if (rc != 0)
            return rc;
        off += n;
    }
    return 0;
}

static void test_server_stream(void)
{
    static const size_t steps[] = {0, 1, 2, 3, 5, 51, 100};
    uint8_t buf[16384];
    size_t len = 0;

    len += put_frame(buf + len, TS_FRAME_RESP, TS_MSG2_LEN, 0xa1);
    len += put_frame(buf + len, TS_FRAME_RECORD, 16, 0xb2); /* empty record */
    len += put_frame(buf + len, TS_FRAME_RECORD, TS_MAX_CIPHERTEXT, 0xc3);
    len += put_frame(buf + len, TS_FRAME_RECORD, 100, 0xd4);

    for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
        struct ts_frame_parser p;
        struct frames f;

        memset(&f, 0, sizeof(f));
        ts_frame_parser_init(&p, 1, on_frame, &f);
        CHECK_EQ_INT(feed_steps(&p, buf, len, steps[s]), 0);
        CHECK_EQ_INT(f.n, 4);
        CHECK_EQ_INT(f.types[0], TS_FRAME_RESP);
        CHECK_EQ_INT(f.lens[0], 48);
        CHECK_EQ_INT(f.types[1], TS_FRAME_RECORD);
        CHECK_EQ_INT(f.lens[1], 16);
        CHECK_EQ_INT(f.lens[2], TS_MAX_CIPHERTEXT);
        CHECK_EQ_INT(f.lens[3], 100);
        CHECK_EQ_INT(f.data_len, 48 + 16 + TS_MAX_CIPHERTEXT + 100);
        CHECK_EQ_INT(f.data[0], 0xa1);
        CHECK_EQ_INT(f.data[48], 0xb2);
        CHECK_EQ_INT(f.data[64], 0xc3);
        CHECK_EQ_INT(f.data[f.data_len - 1], 0xd4);
        CHECK_EQ_INT(p.frames, 4);
        CHECK_EQ_INT(p.bytes, len);
    }
}

static void test_bad_headers(void)
{
    struct ts_frame_parser p;
    struct frames f;
    uint8_t buf[8192];
    size_t len;

    /* Client->server stream: only records. */
    memset(&f, 0, sizeof(f));
    ts_frame_parser_init(&p, 0, on_frame, &f);
    len = put_frame(buf, TS_FRAME_RESP, 48, 0);
    CHECK_EQ_INT(ts_frame_feed(&p, buf, len), H2R_ERR_PROTO);
    CHECK(strstr(p.err, "type 2") != NULL);
    CHECK_EQ_INT(ts_frame_feed(&p, buf, len), H2R_ERR_PROTO); /* sticky */
    CHECK_EQ_INT(f.n, 0);

    /* Oversize record: 4094 announced. Fails on the header, before any body. */
    ts_frame_parser_init(&p, 0, on_frame, &f);
    buf[0] = TS_FRAME_RECORD;
    buf[1] = 0x0f;
    buf[2] = 0xfe;
    CHECK_EQ_INT(ts_frame_feed(&p, buf, 3), H2R_ERR_LIMIT);
    ts_frame_parser_init(&p, 0, on_frame, &f);
    buf[1] = 0xff;
    buf[2] = 0xff;
    CHECK_EQ_INT(ts_frame_feed(&p, buf, 3), H2R_ERR_LIMIT);

    /* A record shorter than a tag. */
    ts_frame_parser_init(&p, 0, on_frame, &f);
    len = put_frame(buf, TS_FRAME_RECORD, 15, 0);
    CHECK_EQ_INT(ts_frame_feed(&p, buf, len), H2R_ERR_FORMAT);

    /* Unknown types in both modes. */
    for (int t = 0; t < 256; t += 51) {
        ts_frame_parser_init(&p, 1, on_frame, &f);
        len = put_frame(buf, (uint8_t)t, 48, 0);
        CHECK_EQ_INT(ts_frame_feed(&p, buf, len),
                     t == TS_FRAME_RESP || t == TS_FRAME_ERROR ? 0 : H2R_ERR_PROTO);
    }
    ts_frame_parser_init(&p, 1, on_frame, &f);
    len = put_frame(buf, TS_FRAME_RECORD, 48, 0); /* a record before the response */
    CHECK_EQ_INT(ts_frame_feed(&p, buf, len), H2R_ERR_PROTO);

    /* The response must be exactly 48 bytes. */
    ts_frame_parser_init(&p, 1, on_frame, &f);
    len = put_frame(buf, TS_FRAME_RESP, 47, 0);
    CHECK_EQ_INT(ts_frame_feed(&p, buf, len), H2R_ERR_FORMAT);
    ts_frame_parser_init(&p, 1, on_frame, &f);
    len = put_frame(buf, TS_FRAME_RESP, 49, 0);
    CHECK_EQ_INT(ts_frame_feed(&p, buf, len), H2R_ERR_FORMAT);

    /* A second response after the first is a protocol error. */
    ts_frame_parser_init(&p, 1, on_frame, &f);
    len = put_frame(buf, TS_FRAME_RESP, 48, 0);
    len += put_frame(buf + len, TS_FRAME_RESP, 48, 0);
    CHECK_EQ_INT(ts_frame_feed(&p, buf, len), H2R_ERR_PROTO);
}

static void test_error_frame(void)
{
    struct ts_frame_parser p;
    struct frames f;
    uint8_t buf[8192];
    size_t len;

    memset(&f, 0, sizeof(f));
    ts_frame_parser_init(&p, 1, on_frame, &f);
    buf[0] = TS_FRAME_ERROR;
    buf[1] = 0;
    buf[2] = 7;
    memcpy(buf + 3, "go away", 7);
    CHECK_EQ_INT(ts_frame_feed(&p, buf, 10), 0);
    CHECK_EQ_INT(f.n, 1);
    CHECK_EQ_INT(f.types[0], TS_FRAME_ERROR);
    CHECK_EQ_MEM(f.data, f.data_len, "go away", 7);
    CHECK_EQ_INT(p.closed, 1);
    CHECK_EQ_INT(ts_frame_feed(&p, buf, 1), H2R_ERR_PROTO); /* nothing may follow */

    /* An empty error frame, and one larger than the cap. */
    ts_frame_parser_init(&p, 1, on_frame, &f);
    buf[2] = 0;
    CHECK_EQ_INT(ts_frame_feed(&p, buf, 3), 0);
    ts_frame_parser_init(&p, 1, on_frame, &f);
    len = put_frame(buf, TS_FRAME_ERROR, TS_MAX_CIPHERTEXT + 1, 'x');
    CHECK_EQ_INT(ts_frame_feed(&p, buf, len), H2R_ERR_LIMIT);

    /* Through a session: the text ends up in s->err, sanitised. */
    {
        static const char head[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                   "Upgrade: tailscale-control-protocol\r\n"
                                   "Connection: upgrade\r\n\r\n";
        static const struct ts_session_callbacks cb = {NULL, NULL, data_sink};
        struct ts_keypair m, c;
        struct ts_session s;
        char req[512];
        size_t n = 0;

        CHECK_EQ_INT(ts_keypair_generate(&m), 0);
        CHECK_EQ_INT(ts_keypair_generate(&c), 0);
        CHECK_EQ_INT(ts_session_client_init(&s, 130, m.priv, c.pub, &cb, &f), 0);
        CHECK_EQ_INT(ts_session_client_request(&s, "h", NULL, req, sizeof(req), &n), 0);
        len = strlen(head);
        memcpy(buf, head, len);
        buf[len++] = TS_FRAME_ERROR;
        buf[len++] = 0;
        buf[len++] = 9;
        memcpy(buf + len, "bad\nkey\x01!", 9);
        len += 9;
        CHECK_EQ_INT(ts_session_feed(&s, buf, len), H2R_ERR_PROTO);
        CHECK_EQ_STR(s.err, "ts2021: server error frame: bad?key?!");
        CHECK_EQ_INT(s.state, TS_SESSION_FAILED);
        ts_session_cleanup(&s);
    }
}

static void test_callback_error(void)
{
    struct ts_frame_parser p;
    struct frames f;
    uint8_t buf[256];
    size_t len = 0;

    memset(&f, 0, sizeof(f));
    f.fail_at = 2;
    for (int i = 0; i < 3; i++)
        len += put_frame(buf + len, TS_FRAME_RECORD, 20, (uint8_t)i);
    ts_frame_parser_init(&p, 0, on_frame, &f);
    CHECK_EQ_INT(ts_frame_feed(&p, buf, len), H2R_ERR_IO);
    CHECK_EQ_INT(f.n, 2);
    CHECK_EQ_INT(ts_frame_feed(&p, buf, len), H2R_ERR_IO);
    CHECK_EQ_INT(f.n, 2);
}

/* ---- records ---- */

static void test_record_seal(void)
{
    static const size_t sizes[] = {0,
                                   1,
                                   TS_MAX_PLAINTEXT - 1,
                                   TS_MAX_PLAINTEXT,
                                   TS_MAX_PLAINTEXT + 1,
                                   3 * (size_t)TS_MAX_PLAINTEXT,
                                   20000};
    uint8_t key[32];
    uint8_t *pt = malloc(20000), *wire = malloc(ts_record_sealed_len(20000));
    struct ts_cipher tx, rx;

    if (!pt || !wire)
        abort();
    for (size_t i = 0; i < 20000; i++)
        pt[i] = (uint8_t)(i ^ (i >> 8));
    memset(key, 0x5a, sizeof(key));
    CHECK_EQ_INT(ts_record_sealed_len(0), 19);
    CHECK_EQ_INT(ts_record_sealed_len(TS_MAX_PLAINTEXT), TS_MAX_FRAME);
    CHECK_EQ_INT(ts_record_sealed_len(TS_MAX_PLAINTEXT + 1), TS_MAX_FRAME + 20);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        struct ts_frame_parser p;
        struct frames f;
        size_t len = sizes[s], wlen = 0, off = 0;
        uint8_t plain[TS_MAX_PLAINTEXT];
        size_t total = 0;
        int ok = 1;

        CHECK_EQ_INT(ts_cipher_init(&tx, key), 0);
        CHECK_EQ_INT(ts_cipher_init(&rx, key), 0);
        CHECK_EQ_INT(ts_record_seal(&tx, pt, len, wire, ts_record_sealed_len(len) - 1, &wlen),
                     H2R_ERR_ARG);
        CHECK_EQ_INT(tx.nonce, 0);
        CHECK_EQ_INT(ts_record_seal(&tx, pt, len, wire, ts_record_sealed_len(len), &wlen), 0);
        CHECK_EQ_INT(wlen, ts_record_sealed_len(len));
        memset(&f, 0, sizeof(f));
        ts_frame_parser_init(&p, 0, on_frame, &f);
        CHECK_EQ_INT(feed_steps(&p, wire, wlen, 1000), 0);
        CHECK_EQ_INT(f.n, (int)(len == 0 ? 1 : (len + TS_MAX_PLAINTEXT - 1) / TS_MAX_PLAINTEXT));
        CHECK_EQ_INT(tx.nonce, (uint64_t)f.n);
        for (int i = 0; i < f.n; i++) {
            size_t n = 0;
            CHECK(f.lens[i] <= TS_MAX_CIPHERTEXT);
            if (ts_cipher_open(&rx, f.data + off, f.lens[i], plain, &n) != 0 ||
                memcmp(plain, pt + total, n) != 0)
                ok = 0;
            off += f.lens[i];
            total += n;
        }
        CHECK(ok);
        CHECK_EQ_INT(total, len);
        ts_cipher_cleanup(&tx);
        ts_cipher_cleanup(&rx);
    }
    free(pt);
    free(wire);
}

/* ---- initiation frame ---- */

static void test_init_frame(void)
{
    uint8_t body[TS_MSG1_LEN], frame[TS_INIT_FRAME_LEN + 4];
    const uint8_t *m = NULL;
    size_t flen = 0, mlen = 0;
    uint16_t v = 0;

    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t)i;
    CHECK_EQ_INT(ts_init_frame_build(0x1234, body, sizeof(body), frame, 100, &flen), H2R_ERR_ARG);
    CHECK_EQ_INT(ts_init_frame_build(0x1234, body, sizeof(body), frame, sizeof(frame), &flen), 0);
    CHECK_EQ_INT(flen, TS_INIT_FRAME_LEN);
    CHECK_EQ_INT(frame[0], 0x12);
    CHECK_EQ_INT(frame[1], 0x34);
    CHECK_EQ_INT(frame[2], TS_FRAME_INIT);
    CHECK_EQ_INT(frame[3], 0);
    CHECK_EQ_INT(frame[4], 96);
    CHECK_EQ_INT(ts_init_frame_parse(frame, flen, &v, &m, &mlen), 0);
    CHECK_EQ_INT(v, 0x1234);
    CHECK_EQ_MEM(m, mlen, body, sizeof(body));
    for (size_t cut = 0; cut < TS_INIT_FRAME_LEN; cut += 4)
        CHECK_EQ_INT(ts_init_frame_parse(frame, cut, &v, &m, &mlen), H2R_ERR_TRUNCATED);
    CHECK_EQ_INT(ts_init_frame_parse(frame, flen + 1, &v, &m, &mlen), H2R_ERR_FORMAT);
}

/* ---- EarlyNoise ---- */

struct early_sink {
    uint8_t json[256];
    size_t json_len;
    int early_calls;
    uint8_t data[512];
    size_t data_len;
};

static int es_early(void *ud, const uint8_t *buf, size_t len)
{
    struct early_sink *e = ud;

    e->early_calls++;
    if (len > sizeof(e->json))
        return H2R_ERR_LIMIT;
    memcpy(e->json, buf, len);
    e->json_len = len;
    return 0;
}

static int es_data(void *ud, const uint8_t *buf, size_t len)
{
    struct early_sink *e = ud;

    if (len == 0 || len > sizeof(e->data) - e->data_len)
        return H2R_ERR_LIMIT; /* zero-length deliveries would be a bug */
    memcpy(e->data + e->data_len, buf, len);
    e->data_len += len;
    return 0;
}

static void early_run(const uint8_t *in, size_t len, size_t step, size_t max_json,
                      struct early_sink *out, int *rc)
{
    struct ts_early e;
    size_t off = 0;

    memset(out, 0, sizeof(*out));
    ts_early_init(&e, max_json, es_early, es_data, out);
    *rc = 0;
    while (off < len && *rc == 0) {
        size_t n = step && len - off > step ? step : len - off;
        *rc = ts_early_feed(&e, in + off, n);
        off += n;
    }
    ts_early_cleanup(&e);
}

static void test_early(void)
{
    static const char json[] = "{\"nodeKeyChallenge\":\"chalpub:00112233445566778899aabbccddeeff"
                               "00112233445566778899AABBCCDDEEFF\"}";
    static const uint8_t h2[] = {0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100};
    uint8_t in[512], chal[32];
    size_t len = 0, n = 0;
    struct early_sink s;
    int rc;

    CHECK_EQ_INT(ts_early_build(json, strlen(json), in, 10, &n), H2R_ERR_ARG);
    CHECK_EQ_INT(ts_early_build(json, strlen(json), in, sizeof(in), &n), 0);
    CHECK_EQ_INT(n, 9 + strlen(json));
    CHECK_EQ_MEM(in, 5, "\xff\xff\xffTS", 5);
    CHECK_EQ_INT(in[8], strlen(json));
    memcpy(in + n, h2, sizeof(h2));
    len = n + sizeof(h2);
    for (size_t step = 0; step <= 10; step++) {
        early_run(in, len, step, 0, &s, &rc);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(s.early_calls, 1);
        CHECK_EQ_MEM(s.json, s.json_len, json, strlen(json));
        CHECK_EQ_MEM(s.data, s.data_len, h2, sizeof(h2));
    }
    CHECK_EQ_INT(ts_early_challenge(s.json, s.json_len, chal), 0);
    CHECK_EQ_INT(chal[1], 0x11);
    CHECK_EQ_INT(chal[31], 0xff);
    CHECK_EQ_INT(ts_early_challenge((const uint8_t *)"{}", 2, chal), H2R_ERR_FORMAT);
    CHECK_EQ_INT(
        ts_early_challenge((const uint8_t *)"{\"nodeKeyChallenge\":\"mkey:00\"}", 29, chal),
        H2R_ERR_FORMAT);
    CHECK_EQ_INT(ts_early_challenge((const uint8_t *)"nope", 4, chal), H2R_ERR_FORMAT);

    /* No early payload (TS testcontrol): h2 passes through untouched, any split. */
    for (size_t step = 0; step <= 4; step++) {
        early_run(h2, sizeof(h2), step, 0, &s, &rc);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(s.early_calls, 0);
        CHECK_EQ_MEM(s.data, s.data_len, h2, sizeof(h2));
    }
    /* A partial magic that turns out to be data is handed back, not lost. */
    {
        static const uint8_t partial[] = {0xff, 0xff, 0x00, 0x01};
        early_run(partial, sizeof(partial), 1, 0, &s, &rc);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_MEM(s.data, s.data_len, partial, sizeof(partial));
    }
    /* An empty JSON is delivered as such; the length cap is checked before allocating. */
    CHECK_EQ_INT(ts_early_build("", 0, in, sizeof(in), &n), 0);
    early_run(in, n, 0, 0, &s, &rc);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(s.early_calls, 1);
    CHECK_EQ_INT(s.json_len, 0);
    in[5] = 0x7f; /* 2 GiB announced */
    early_run(in, 9, 0, 0, &s, &rc);
    CHECK_EQ_INT(rc, H2R_ERR_LIMIT);
    CHECK_EQ_INT(ts_early_build(json, strlen(json), in, sizeof(in), &n), 0);
    early_run(in, n, 3, 16, &s, &rc);
    CHECK_EQ_INT(rc, H2R_ERR_LIMIT);
    /* Truncated blob: nothing is delivered yet, and cleanup frees the buffer. */
    early_run(in, 20, 0, 0, &s, &rc);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(s.early_calls, 0);
    CHECK_EQ_INT(s.data_len, 0);
}

int main(void)
{
    test_server_stream();
    test_bad_headers();
    test_error_frame();
    test_callback_error();
    test_record_seal();
    test_init_frame();
    test_early();
    return check_summary("test_ts_frame");
}
