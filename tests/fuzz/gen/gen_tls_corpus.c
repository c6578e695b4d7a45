/*
 * Writes the committed corpora of fuzz_tls_records and fuzz_keylog:
 *   gen_tls_corpus <corpus/tls_records> <corpus/keylog>
 * TLS connections are synthetic (tests/unit/capture/tls_build.h) and sealed
 * with the secrets of fuzz_tls_records' fixed key log, so the fuzzer starts
 * from inputs that decrypt: every TLS 1.3 and TLS 1.2 suite, KeyUpdate,
 * HelloRetryRequest, rejected 0-RTT, resumption, and HTTP/2 inside TLS
 * through the session layer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit/capture/tls_build.h"

static void die(const char *what)
{
    fprintf(stderr, "gen_tls_corpus: %s\n", what);
    exit(1);
}

static void write_file(const char *dir, const char *name, const struct tbuf *b)
{
    char path[1024];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f || fwrite(b->p, 1, b->len, f) != b->len || fclose(f) != 0)
        die(path);
}

/* The fuzz input: option byte, then the two directions interleaved in chunks. */
static void encode(struct tbuf *out, uint8_t opt, const struct tlb_conn *c, size_t chunk)
{
    size_t off[2] = {0, 0};
    const struct tbuf *b[2] = {&c->c2s, &c->s2c};
    tb_put(out, &opt, 1);
    while (off[0] < b[0]->len || off[1] < b[1]->len) {
        for (int d = 0; d < 2; d++) {
            size_t n = b[d]->len - off[d] < chunk ? b[d]->len - off[d] : chunk;
            uint8_t ctl = (uint8_t)((d << 7) | n);
            if (n == 0)
                continue;
            tb_put(out, &ctl, 1);
            tb_put(out, b[d]->p + off[d], n);
            off[d] += n;
        }
    }
}

static void h2_payload(struct tlb_conn *c)
{
    struct tbuf cl = {0}, sv = {0};
    nghttp2_hd_deflater *cd = NULL, *sd = NULL;
    static const char *const req[] = {":method",   "POST",  ":scheme", "https", ":authority",
                                      "localhost", ":path", "/api",    NULL};
    nghttp2_hd_deflate_new(&cd, 4096);
    nghttp2_hd_deflate_new(&sd, 4096);
    tb_preface(&cl);
    tb_settings_empty(&cl, 0);
    tb_headers(&cl, cd, 1, 0, req);
    tb_data(&cl, 1, TB_END_STREAM, "{\"password\":\"x\"}", 16);
    tb_settings_empty(&sv, 0);
    tb_settings_empty(&sv, TB_ACK);
    tb_headers(&sv, sd, 1, 0, (const char *const[]){":status", "201", NULL});
    tb_data(&sv, 1, TB_END_STREAM, "created", 7);
    if (tlb_app(c, 0, cl.p, cl.len) || tlb_app(c, 1, sv.p, sv.len))
        die("seal");
    tb_free(&cl);
    tb_free(&sv);
    nghttp2_hd_deflate_del(cd);
    nghttp2_hd_deflate_del(sd);
}

static void conn_file(const char *dir, const char *name, uint8_t opt, const struct tlb_opts *o,
                      int key_updates, int h2)
{
    struct tlb_conn c;
    struct tbuf out = {0};
    int rc = tlb_suite(o->suite)->tls13 ? tlb_conn13(&c, o) : tlb_conn12(&c, o);
    if (rc != 0)
        die("handshake");
    if (h2) {
        h2_payload(&c);
    } else {
        if (tlb_app(&c, 0, "ping", 4) || tlb_app(&c, 1, "pong", 4))
            die("seal");
    }
    for (int k = 0; k < key_updates; k++) {
        if (tlb_key_update(&c, 0, 1) || tlb_key_update(&c, 1, 0) || tlb_app(&c, 0, "again", 5))
            die("key update");
    }
    encode(&out, opt, &c, 100);
    write_file(dir, name, &out);
    tb_free(&out);
    tlb_conn_free(&c);
}

static void tls_records(const char *dir)
{
    static const uint8_t sid[8] = {9, 8, 7, 6, 5, 4, 3, 2};
    struct tlb_opts o;

    memset(&o, 0, sizeof(o));
    o.alpn = "h2";
    o.suite = 0x1301;
    conn_file(dir, "tls13_aes128_keyupdate.bin", 0, &o, 2, 0);
    o.suite = 0x1302;
    o.seed = 4; /* SHA-384 secrets */
    conn_file(dir, "tls13_aes256.bin", 0, &o, 1, 0);
    o.suite = 0x1303;
    o.seed = 1;
    o.hrr = 1;
    conn_file(dir, "tls13_chacha_hrr.bin", 0, &o, 0, 0);
    o.hrr = 0;
    o.early_rejected = 1;
    o.psk = 1;
    conn_file(dir, "tls13_psk_early_rejected.bin", 2, &o, 0, 0);
    memset(&o, 0, sizeof(o));
    o.alpn = "h2";
    o.suite = 0x1301;
    o.seed = 2;
    conn_file(dir, "session_tls13_h2.bin", 1, &o, 1, 1);
    o.cert_len = 300;
    o.suite = 0xc02f;
    conn_file(dir, "tls12_aes128.bin", 0, &o, 0, 0);
    o.suite = 0xc030;
    o.seed = 5;
    conn_file(dir, "tls12_aes256.bin", 0, &o, 0, 0);
    o.suite = 0xcca8;
    o.seed = 3;
    o.sid = sid;
    o.sid_len = sizeof(sid);
    conn_file(dir, "tls12_chacha_resumed.bin", 0, &o, 0, 0);
    o.sid = NULL;
    o.sid_len = 0;
    conn_file(dir, "session_tls12_h2.bin", 1, &o, 0, 1);
}

static void keylogs(const char *dir)
{
    struct tbuf b = {0};
    uint8_t r[32];

    tb_be(&b, 0, 1); /* all at once */
    tlb_client_random(r, 0);
    tlb_keylog(&b, r, 32);
    tlb_client_random(r, 4);
    tlb_keylog(&b, r, 48);
    write_file(dir, "good.keys", &b);
    b.p[0] = 7; /* the same in 7-byte chunks */
    write_file(dir, "good_chunked.keys", &b);
    b.len = 0;
    tb_be(&b, 13, 1);
    tb_str(&b, "# comment\r\n\r\nCLIENT_RANDOM 2021222324252627282930313233343536373839404142434445"
               "464748494a4b 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021"
               "22232425262728292a2b2c2d2e2f\r\nEXPORTER_SECRET 20212223 00\r\n"
               "SERVER_TRAFFIC_SECRET_N 2021222324252627282930313233343536373839404142434445464748"
               "494a4b a1a2a3a4a5a6a7a8a9aaabacadaeafb0a1a2a3a4a5a6a7a8a9aaabacadaeafb0\r\n"
               "RSA 0123456789abcdef 00\nFUTURE 2021222324252627282930313233343536373839404142434"
               "445464748494a4b 00ff\nCLIENT_RANDOM 20212223");
    write_file(dir, "crlf_mixed_truncated.keys", &b);
    b.len = 0;
    tb_be(&b, 3, 1);
    static const char garbage[] =
        "not a key log\n\x00\x01\x02 binary \xff\xfe\nCLIENT_RANDOM zz zz\n";
    tb_put(&b, garbage, sizeof(garbage) - 1);
    write_file(dir, "garbage.keys", &b);
    tb_free(&b);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: gen_tls_corpus <corpus/tls_records> <corpus/keylog>\n");
        return 2;
    }
    tls_records(argv[1]);
    keylogs(argv[2]);
    return 0;
}
