/*
 * TLS decryption: the TLS 1.3 key schedule and record protection against
 * RFC 8448 §3 ("Simple 1-RTT Handshake"), the TLS 1.2 PRF against the
 * published SHA-256 test vector, TLS 1.2 AES-GCM / ChaCha20 records made
 * independently (Python `cryptography`, script in the comment below), the
 * key log parser (good, truncated, bad hex, unknown label, CRLF, a last line
 * still being written, reload of an appended file), whole synthetic
 * connections through cap_tls (HelloRetryRequest, rejected 0-RTT, KeyUpdate
 * both ways, resumption, every failure reason), and TLS + HTTP/2 through
 * the session layer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "cap_keylog.h"
#include "cap_session.h"
#include "cap_tls.h"
#include "unit/capture/exch_sink.h"
#include "unit/capture/tls_build.h"

/* Hex with optional spaces -> bytes; returns the length. */
static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    int hi = -1;
    for (; *s; s++) {
        int v;
        if (*s >= '0' && *s <= '9')
            v = *s - '0';
        else if (*s >= 'a' && *s <= 'f')
            v = *s - 'a' + 10;
        else
            continue;
        if (hi < 0) {
            hi = v;
        } else {
            if (n < cap)
                out[n] = (uint8_t)(hi << 4 | v);
            n++;
            hi = -1;
        }
    }
    return n;
}

/* ---- RFC 8448 §3 ---- */

static void test_rfc8448_key_schedule(void)
{
    static const struct {
        const char *secret, *key, *iv;
    } v[] = {
        /* {server} derive write traffic keys for handshake data */
        {"b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 "
         "91 ad 38",
         "3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc", "5d 31 3e b2 67 12 76 ee 13 00 0b 30"},
        /* {client} derive write traffic keys for handshake data */
        {"b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 "
         "a5 5a 21",
         "db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01", "5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f"},
        /* {server} derive write traffic keys for application data */
        {"a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb "
         "63 16 43",
         "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56", "cf 78 2b 88 dd 83 54 9a ad f1 e9 84"},
        /* {client} derive write traffic keys for application data */
        {"9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 "
         "75 04 a5",
         "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51", "5b 78 92 3d ee 08 57 90 33 e5 23 d9"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint8_t secret[32], key[16], iv[12], got_key[16], got_iv[12];
        unhex(v[i].secret, secret, sizeof(secret));
        unhex(v[i].key, key, sizeof(key));
        unhex(v[i].iv, iv, sizeof(iv));
        CHECK_EQ_INT(cap_tls13_expand_label("SHA256", secret, 32, "key", NULL, 0, got_key, 16), 0);
        CHECK_EQ_INT(cap_tls13_expand_label("SHA256", secret, 32, "iv", NULL, 0, got_iv, 12), 0);
        CHECK_EQ_MEM(got_key, 16, key, 16);
        CHECK_EQ_MEM(got_iv, 12, iv, 12);
    }
    /* RFC 8448 §3: the "derived" secret from the handshake secret, with a context hash. */
    {
        uint8_t hs[32], ctx[32], want[32], got[32];
        unhex("1d c8 26 e9 36 06 aa 6f dc 0a ad c1 2f 74 1b 01 04 6a a6 b9 9f 69 1e d2 21 a9 f0 "
              "ca 04 3f be ac",
              hs, 32);
        unhex("86 0c 06 ed c0 78 58 ee 8e 78 f0 e7 42 8c 58 ed d6 b4 3f 2c a3 e6 e9 5f 02 ed 06 "
              "3c f0 e1 ca d8",
              ctx, 32);
        unhex("b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd "
              "59 d3 91 ad 38",
              want, 32);
        CHECK_EQ_INT(cap_tls13_expand_label("SHA256", hs, 32, "s hs traffic", ctx, 32, got, 32), 0);
        CHECK_EQ_MEM(got, 32, want, 32);
    }
    {
        uint8_t s[32] = {0}, out[8];
        char label[300];
        memset(label, 'x', sizeof(label) - 1);
        label[sizeof(label) - 1] = '\0';
        CHECK_EQ_INT(cap_tls13_expand_label("SHA256", s, 32, label, NULL, 0, out, 8), H2R_ERR_ARG);
    }
}

static void test_rfc8448_records(void)
{
    /* RFC 8448 §3: the 50 bytes 00 01 .. 31 sent by the client under its application keys. */
    static const char client_app[] =
        "17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 "
        "bc ab 3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 "
        "14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4";
    /* The same 50 bytes from the server, after its NewSessionTicket (sequence number 1). */
    static const char server_app[] =
        "17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 "
        "aa 1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 "
        "47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d";
    /* The client's Finished under its handshake keys. */
    static const char client_fin[] =
        "17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0 51 7f e9 b9 3c "
        "7a 4b fc 44 d8 7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26 c4 05 46";
    uint8_t rec[128], key[16], iv[12], want[50], type = 0;
    const uint8_t *pt = NULL;
    size_t n, ptlen = 0;

    for (int i = 0; i < 50; i++)
        want[i] = (uint8_t)i;
    unhex("17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51", key, 16);
    unhex("5b 78 92 3d ee 08 57 90 33 e5 23 d9", iv, 12);
    n = unhex(client_app, rec, sizeof(rec));
    CHECK_EQ_INT(n, 72);
    CHECK_EQ_INT(cap_tls_record_open(0x1301, key, iv, 0, rec, n, &pt, &ptlen, &type), 0);
    CHECK_EQ_INT(type, 23);
    CHECK_EQ_MEM(pt, ptlen, want, 50);
    /* One flipped bit anywhere fails authentication. */
    n = unhex(client_app, rec, sizeof(rec));
    rec[40] ^= 0x01;
    CHECK_EQ_INT(cap_tls_record_open(0x1301, key, iv, 0, rec, n, &pt, &ptlen, &type),
                 H2R_ERR_PROTO);
    /* The wrong sequence number is a wrong nonce. */
    n = unhex(client_app, rec, sizeof(rec));
    CHECK_EQ_INT(cap_tls_record_open(0x1301, key, iv, 1, rec, n, &pt, &ptlen, &type),
                 H2R_ERR_PROTO);

    unhex("9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56", key, 16);
    unhex("cf 78 2b 88 dd 83 54 9a ad f1 e9 84", iv, 12);
    n = unhex(server_app, rec, sizeof(rec));
    CHECK_EQ_INT(cap_tls_record_open(0x1301, key, iv, 1, rec, n, &pt, &ptlen, &type), 0);
    CHECK_EQ_INT(type, 23);
    CHECK_EQ_MEM(pt, ptlen, want, 50);

    unhex("db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01", key, 16);
    unhex("5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f", iv, 12);
    n = unhex(client_fin, rec, sizeof(rec));
    CHECK_EQ_INT(cap_tls_record_open(0x1301, key, iv, 0, rec, n, &pt, &ptlen, &type), 0);
    CHECK_EQ_INT(type, 22);
    CHECK_EQ_INT(ptlen, 36); /* Finished: type 20, length 32, verify_data */
    CHECK(ptlen == 36 && pt[0] == 20 && pt[1] == 0 && pt[2] == 0 && pt[3] == 32);

    CHECK_EQ_INT(cap_tls_record_open(0x00ff, key, iv, 0, rec, n, &pt, &ptlen, &type),
                 H2R_ERR_UNSUPPORTED);
    CHECK_EQ_INT(cap_tls_record_open(0x1301, key, iv, 0, rec, 20, &pt, &ptlen, &type),
                 H2R_ERR_FORMAT);
}

/* ---- TLS 1.2 ---- */

/*
 * Made with Python's hmac + cryptography (AESGCM, ChaCha20Poly1305), not with this code:
 *   master = bytes(range(48)); cr = bytes(range(0x20, 0x40)); sr = bytes(range(0x40, 0x60))
 *   key_block = P_hash(master, b"key expansion" + sr + cr)      (RFC 5246 §5, §6.3)
 *   GCM nonce = salt || seq (8 bytes, also sent explicitly);  ChaCha nonce = iv ^ seq
 *   aad = seq || type || 0x0303 || plaintext length           (RFC 5246 §6.2.3.3)
 *   records: client Finished (seq 0) "14 00 00 0c a0..ab", client "GET / over TLS 1.2" (seq 1),
 *            server Finished (seq 0), server "200 OK over TLS 1.2" (seq 1)
 */
static const struct {
    uint16_t suite;
    const char *md;
    const char *key_block;
    const char *c_fin, *c_app, *s_fin, *s_app;
} tls12_vectors[] = {
    {0xc02f, "SHA256",
     "a4034d09be0eeca5e295f4a1a83cc08a617bfc73135fe88287599ae2278f1202f429e1013ffdfdf2",
     "1603030028000000000000000073d2cddb17b421930ef59f53cac1de4df64f4593ab8991042469a4bc33a6110e",
     "170303002a0000000000000001799570b763ea372310c982e37d9cf85d8ffc8e1d865d87779c563c067a8d0e37"
     "44e6",
     "16030300280000000000000000d451c7576932d779f5d93fffb8e6c8ca75375b72b6250f008d99c014a643fad4",
     "170303002b00000000000000019f4e154286f8ff304ccb3eca9ff4c805b7816d0e1aa72f12926e46573130a185"
     "df8653"},
    {0xc030, "SHA384",
     "6423c1a4d6f2da33474cf077bc99e890bdceb9e5b94c54cd6d6d3f3b10905dc62beee8b9885b18471b6d987d01c2"
     "e7fb36b5c2cdb42fd5a1ba07e906aeef53cf1e027ff49e7af7e8",
     "160303002800000000000000005a7c700e96a2155eec99633ab32308ddf04752ad97240609c4c2d4f97d1533df",
     "170303002a000000000000000186e21393622344782c323e74f1f5a6423b415e08fe6f1e05381479c4ddfa976d"
     "07b8",
     "160303002800000000000000007f806622768ae05bcd20155f98675aab4de4920b1112bd11afd61c8504949e21",
     "170303002b000000000000000115e57b7c0732275dace5b9ca73e518f34a58b51dc60a74dda3f780639e4e1b24"
     "cf3a34"},
    {0xcca8, "SHA256",
     "a4034d09be0eeca5e295f4a1a83cc08a617bfc73135fe88287599ae2278f1202f429e1013ffdfdf29ad0f3d010"
     "6a1360e365ea9a692456669cadd9be0f4db496fe98381bb99b5b277d536c8ea87c539ab2bb943a4d4bc30c",
     "16030300204faef344d31fe12218e7a8aa3db92654d5931033a08c06b35f7837baae89804b",
     "170303002287f43b4494ae1f50c38fda74d0af513d14662b6b5ba9f8ede54672a39d22e80a315d",
     "1603030020fd3a2274e394f524d0a403ab88f53d5b8abe931dfee46cdac90ae163bb758a08",
     "1703030023c8ee51144afbfaacb4866547e2be9960d2b385b904dba2b0ffd96f59e83f7140e64f96"},
};

static void test_tls12_prf(void)
{
    /* The TLS 1.2 PRF (SHA-256) test vector published on the IETF TLS list (100 bytes). */
    uint8_t secret[16], seed[16], want[100], got[100];
    unhex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35", secret, 16);
    unhex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c", seed, 16);
    unhex("e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b"
          "4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee"
          "42c5a72e5a5110fff70187347b66",
          want, 100);
    CHECK_EQ_INT(cap_tls12_prf("SHA256", secret, 16, "test label", seed, 16, got, 100), 0);
    CHECK_EQ_MEM(got, 100, want, 100);

    for (size_t i = 0; i < sizeof(tls12_vectors) / sizeof(tls12_vectors[0]); i++) {
        uint8_t master[48], rs[64], kb[88], kbw[88];
        size_t n = unhex(tls12_vectors[i].key_block, kbw, sizeof(kbw));
        tlb_secret(0, master, 48);
        tlb_server_random(rs);
        tlb_client_random(rs + 32, 0);
        CHECK_EQ_INT(cap_tls12_prf(tls12_vectors[i].md, master, 48, "key expansion", rs, 64, kb, n),
                     0);
        CHECK_EQ_MEM(kb, n, kbw, n);
    }
}

/* ---- cap_tls harness ---- */

struct tls_out {
    struct tbuf plain[2];
    char alpn[64];
    char reason[64];
    int n_alpn, n_fail;
    struct cap_keylog *kl;
    int hold;   /* answer PENDING while set (a key log line not written yet) */
    int follow; /* a miss is PENDING until the final lookup */
    int64_t last_ts[2];
};

static int out_secret(void *ud, const uint8_t cr[32], enum cap_keylog_label label,
                      uint8_t secret[CAP_KEYLOG_MAX_SECRET], size_t *len, int final)
{
    struct tls_out *o = ud;
    int rc;
    if (o->hold && !final)
        return CAP_TLS_KEY_PENDING;
    rc = o->kl ? cap_keylog_lookup(o->kl, cr, label, secret, len, final) : CAP_KEYLOG_MISSING;
    if (rc == CAP_KEYLOG_FOUND)
        return CAP_TLS_KEY_FOUND;
    return o->follow && !final ? CAP_TLS_KEY_PENDING : CAP_TLS_KEY_MISSING;
}

static int out_plain(void *ud, int dir, const uint8_t *p, size_t n, int64_t ts)
{
    struct tls_out *o = ud;
    tb_put(&o->plain[dir], p, n);
    o->last_ts[dir] = ts;
    return 0;
}

static int out_alpn(void *ud, const char *proto)
{
    struct tls_out *o = ud;
    snprintf(o->alpn, sizeof(o->alpn), "%s", proto);
    o->n_alpn++;
    return 0;
}

static int out_fail(void *ud, const char *reason)
{
    struct tls_out *o = ud;
    snprintf(o->reason, sizeof(o->reason), "%s", reason);
    o->n_fail++;
    return 0;
}

static const struct cap_tls_callbacks out_cb = {out_secret, out_plain, out_alpn, out_fail};

static struct cap_keylog *keylog_for(const uint8_t cr[32], size_t hash_len)
{
    struct tbuf kt = {0};
    struct cap_keylog *kl = cap_keylog_new();
    tlb_keylog(&kt, cr, hash_len);
    if (!kl || cap_keylog_feed(kl, kt.p, kt.len) != 0)
        exit(2);
    tb_free(&kt);
    return kl;
}

enum feed_mode { FEED_C_THEN_S, FEED_S_THEN_C, FEED_INTERLEAVED_7, FEED_BYTEWISE };

/* Feeds a connection's two byte streams and finishes. */
static void run_conn(struct cap_tls *t, const struct tbuf *c2s, const struct tbuf *s2c,
                     enum feed_mode mode)
{
    size_t off[2] = {0, 0};
    const struct tbuf *b[2] = {c2s, s2c};
    int64_t ts = 1000;
    switch (mode) {
    case FEED_C_THEN_S:
        CHECK_EQ_INT(cap_tls_feed(t, 0, c2s->p, c2s->len, ts), 0);
        CHECK_EQ_INT(cap_tls_feed(t, 1, s2c->p, s2c->len, ts + 1), 0);
        break;
    case FEED_S_THEN_C:
        CHECK_EQ_INT(cap_tls_feed(t, 1, s2c->p, s2c->len, ts), 0);
        CHECK_EQ_INT(cap_tls_feed(t, 0, c2s->p, c2s->len, ts + 1), 0);
        break;
    case FEED_INTERLEAVED_7:
    case FEED_BYTEWISE:
        while (off[0] < b[0]->len || off[1] < b[1]->len) {
            for (int d = 0; d < 2; d++) {
                size_t k = mode == FEED_BYTEWISE ? 1 : 7;
                if (off[d] >= b[d]->len)
                    continue;
                if (k > b[d]->len - off[d])
                    k = b[d]->len - off[d];
                if (cap_tls_feed(t, d, b[d]->p + off[d], k, ts++) != 0)
                    CHECK(0);
                off[d] += k;
            }
        }
        break;
    }
    CHECK_EQ_INT(cap_tls_finish(t), 0);
}

/* A TLS 1.3 connection with HTTP-ish payloads; checks both plaintexts come out whole. */
static void check_conn13(const char *what, const struct tlb_opts *o, int key_updates,
                         enum feed_mode mode)
{
    struct cap_tls_stats st;
    struct tls_out out;
    struct tlb_conn c;
    struct cap_tls *t;
    struct tbuf want[2] = {{0}, {0}};
    static uint8_t big[70000];

    memset(&st, 0, sizeof(st));
    memset(&out, 0, sizeof(out));
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7 + 3);
    CHECK_EQ_INT(tlb_conn13(&c, o), 0);
    out.kl = keylog_for(c.cr, c.s->hash_len);
    tb_str(&want[0], "client says hello");
    CHECK_EQ_INT(tlb_app(&c, 0, "client says hello", 17), 0);
    for (int k = 0; k < key_updates; k++) {
        CHECK_EQ_INT(tlb_key_update(&c, 0, 1), 0);
        CHECK_EQ_INT(tlb_key_update(&c, 1, 0), 0);
        CHECK_EQ_INT(tlb_app(&c, 0, "after update", 12), 0);
        tb_str(&want[0], "after update");
    }
    CHECK_EQ_INT(tlb_app(&c, 1, big, sizeof(big)), 0);
    tb_put(&want[1], big, sizeof(big));

    t = cap_tls_new(&out_cb, &out, &st);
    run_conn(t, &c.c2s, &c.s2c, mode);
    if (out.n_fail)
        fprintf(stderr, "%s: failed: %s\n", what, out.reason);
    CHECK_EQ_INT(out.n_fail, 0);
    CHECK_EQ_MEM(out.plain[0].p, out.plain[0].len, want[0].p, want[0].len);
    CHECK_EQ_MEM(out.plain[1].p, out.plain[1].len, want[1].p, want[1].len);
    if (o->alpn)
        CHECK_EQ_STR(out.alpn, o->alpn);
    CHECK_EQ_INT(st.decrypted_flows, 1);
    CHECK_EQ_INT(st.v13_flows, 1);
    CHECK_EQ_INT(st.key_updates, 2 * key_updates);
    CHECK_EQ_INT(st.hrr, o->hrr ? 1 : 0);
    CHECK_EQ_INT(st.resumed, o->psk ? 1 : 0);
    CHECK_EQ_INT(st.early_data_skipped, o->early_rejected ? 2 : 0);
    CHECK_EQ_INT(cap_tls_version(t), 0x0304);
    cap_tls_free(t);
    cap_keylog_free(out.kl);
    tb_free(&out.plain[0]);
    tb_free(&out.plain[1]);
    tb_free(&want[0]);
    tb_free(&want[1]);
    tlb_conn_free(&c);
}

static void test_tls13_connections(void)
{
    static const uint16_t suites13[] = {0x1301, 0x1302, 0x1303};
    for (size_t i = 0; i < 3; i++) {
        struct tlb_opts o;
        memset(&o, 0, sizeof(o));
        o.suite = suites13[i];
        o.alpn = "h2";
        check_conn13("plain", &o, 0, FEED_C_THEN_S);
        check_conn13("key update", &o, 2, FEED_INTERLEAVED_7);
        o.hrr = 1;
        check_conn13("hrr", &o, 1, FEED_S_THEN_C);
        o.hrr = 0;
        o.psk = 1;
        o.early_rejected = 1;
        check_conn13("psk, 0-RTT rejected", &o, 0, FEED_C_THEN_S);
        o.psk = 0;
        check_conn13("0-RTT rejected", &o, 0, FEED_INTERLEAVED_7);
        o.hrr = 1;
        check_conn13("hrr, 0-RTT", &o, 0, FEED_C_THEN_S);
    }
    {
        struct tlb_opts o;
        memset(&o, 0, sizeof(o));
        o.suite = 0x1302;
        o.alpn = "http/1.1";
        check_conn13("bytewise", &o, 1, FEED_BYTEWISE);
    }
}

/* The independent TLS 1.2 records above, behind a synthetic ClientHello/ServerHello. */
static void test_tls12_vectors_through_parser(void)
{
    for (size_t i = 0; i < sizeof(tls12_vectors) / sizeof(tls12_vectors[0]); i++) {
        struct cap_tls_stats st;
        struct tls_out out;
        struct tbuf c2s = {0}, s2c = {0}, m = {0};
        struct tlb_hello h;
        uint8_t cr[32], sr[32], rec[128];
        size_t n;
        struct cap_tls *t;

        memset(&st, 0, sizeof(st));
        memset(&out, 0, sizeof(out));
        tlb_client_random(cr, 0);
        tlb_server_random(sr);
        out.kl = keylog_for(cr, 32);
        memset(&h, 0, sizeof(h));
        h.random = cr;
        h.alpn = "h2";
        h.suite = tls12_vectors[i].suite;
        tlb_client_hello(&m, &h);
        tlb_plain(&c2s, 22, &m);
        m.len = 0;
        h.random = sr;
        tlb_server_hello(&m, &h);
        tlb_plain(&s2c, 22, &m);
        tlb_ccs(&c2s);
        n = unhex(tls12_vectors[i].c_fin, rec, sizeof(rec));
        tb_put(&c2s, rec, n);
        n = unhex(tls12_vectors[i].c_app, rec, sizeof(rec));
        tb_put(&c2s, rec, n);
        tlb_ccs(&s2c);
        n = unhex(tls12_vectors[i].s_fin, rec, sizeof(rec));
        tb_put(&s2c, rec, n);
        n = unhex(tls12_vectors[i].s_app, rec, sizeof(rec));
        tb_put(&s2c, rec, n);

        t = cap_tls_new(&out_cb, &out, &st);
        run_conn(t, &c2s, &s2c, FEED_INTERLEAVED_7);
        CHECK_EQ_INT(out.n_fail, 0);
        CHECK_EQ_MEM(out.plain[0].p, out.plain[0].len, "GET / over TLS 1.2", 18);
        CHECK_EQ_MEM(out.plain[1].p, out.plain[1].len, "200 OK over TLS 1.2", 19);
        CHECK_EQ_STR(out.alpn, "h2");
        CHECK_EQ_INT(st.v12_flows, 1);
        CHECK_EQ_INT(st.records_decrypted, 4);
        CHECK_EQ_INT(cap_tls_version(t), 0x0303);
        cap_tls_free(t);
        cap_keylog_free(out.kl);
        tb_free(&out.plain[0]);
        tb_free(&out.plain[1]);
        tb_free(&c2s);
        tb_free(&s2c);
        tb_free(&m);
    }
}

static void test_tls12_connections(void)
{
    static const uint16_t suites12[] = {0xc02f, 0xc030, 0xcca8};
    static const uint8_t sid[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
    for (size_t i = 0; i < 3; i++) {
        for (int resumed = 0; resumed < 2; resumed++) {
            struct cap_tls_stats st;
            struct tls_out out;
            struct tlb_conn c;
            struct tlb_opts o;
            struct cap_tls *t;
            static uint8_t body[40000];

            memset(&st, 0, sizeof(st));
            memset(&out, 0, sizeof(out));
            memset(&o, 0, sizeof(o));
            o.suite = suites12[i];
            o.alpn = "h2";
            o.seed = (uint8_t)(1 + resumed);
            o.sid = resumed ? sid : NULL;
            o.sid_len = resumed ? sizeof(sid) : 0;
            for (size_t k = 0; k < sizeof(body); k++)
                body[k] = (uint8_t)(k ^ (k >> 8));
            CHECK_EQ_INT(tlb_conn12(&c, &o), 0);
            CHECK_EQ_INT(tlb_app(&c, 0, body, sizeof(body)), 0);
            CHECK_EQ_INT(tlb_app(&c, 1, "ok", 2), 0);
            out.kl = keylog_for(c.cr, 32);
            t = cap_tls_new(&out_cb, &out, &st);
            run_conn(t, &c.c2s, &c.s2c, resumed ? FEED_BYTEWISE : FEED_C_THEN_S);
            CHECK_EQ_INT(out.n_fail, 0);
            CHECK_EQ_MEM(out.plain[0].p, out.plain[0].len, body, sizeof(body));
            CHECK_EQ_MEM(out.plain[1].p, out.plain[1].len, "ok", 2);
            CHECK_EQ_INT(st.resumed, resumed);
            cap_tls_free(t);
            cap_keylog_free(out.kl);
            tb_free(&out.plain[0]);
            tb_free(&out.plain[1]);
            tlb_conn_free(&c);
        }
    }
}

/* Runs a connection expected to fail; returns the number of plaintext bytes that got out. */
static size_t expect_failure(const char *what, struct tbuf *c2s, struct tbuf *s2c,
                             struct cap_keylog *kl, const char *reason, struct cap_tls_stats *st)
{
    struct tls_out out;
    struct cap_tls *t;
    size_t n;

    memset(&out, 0, sizeof(out));
    out.kl = kl;
    t = cap_tls_new(&out_cb, &out, st);
    run_conn(t, c2s, s2c, FEED_C_THEN_S);
    if (strcmp(out.reason, reason) != 0)
        fprintf(stderr, "%s: reason %s, want %s\n", what, out.reason, reason);
    CHECK_EQ_STR(out.reason, reason);
    CHECK_EQ_INT(out.n_fail, 1);
    CHECK_EQ_INT(cap_tls_failed(t), 1);
    n = out.plain[0].len + out.plain[1].len;
    cap_tls_free(t);
    tb_free(&out.plain[0]);
    tb_free(&out.plain[1]);
    return n;
}

static void test_failures(void)
{
    struct cap_tls_stats st;
    struct tlb_conn c;
    struct tlb_opts o;
    struct cap_keylog *kl;
    uint8_t other[32];

    memset(&st, 0, sizeof(st));
    memset(&o, 0, sizeof(o));
    o.suite = 0x1301;
    o.alpn = "h2";
    CHECK_EQ_INT(tlb_conn13(&c, &o), 0);
    CHECK_EQ_INT(tlb_app(&c, 0, "secret request", 14), 0);

    /* No key: an empty key log, and one for another client random. */
    kl = cap_keylog_new();
    CHECK_EQ_INT(expect_failure("empty key log", &c.c2s, &c.s2c, kl, "tls_no_key", &st), 0);
    cap_keylog_free(kl);
    tlb_client_random(other, 3);
    kl = keylog_for(other, 32);
    CHECK_EQ_INT(expect_failure("other key log", &c.c2s, &c.s2c, kl, "tls_no_key", &st), 0);
    cap_keylog_free(kl);
    CHECK_EQ_INT(st.no_key, 2);

    /* Bad tag: a flipped byte in the last record; nothing of that record gets out. */
    kl = keylog_for(c.cr, 32);
    c.c2s.p[c.c2s.len - 3] ^= 0x40;
    CHECK_EQ_INT(expect_failure("bad tag", &c.c2s, &c.s2c, kl, "tls_bad_tag", &st), 0);
    c.c2s.p[c.c2s.len - 3] ^= 0x40;
    CHECK_EQ_INT(st.bad_tag, 1);

    /* Only the handshake secrets: the application data has no key. */
    {
        struct tbuf kt = {0};
        struct cap_keylog *hs_only = cap_keylog_new();
        tlb_keylog(&kt, c.cr, 32);
        /* keep the first three lines (CLIENT_RANDOM and the two handshake secrets) */
        size_t cut = 0;
        for (int lines = 0; cut < kt.len && lines < 3; cut++)
            lines += kt.p[cut] == '\n';
        CHECK_EQ_INT(cap_keylog_feed(hs_only, kt.p, cut), 0);
        CHECK_EQ_INT(expect_failure("no app secret", &c.c2s, &c.s2c, hs_only, "tls_no_key", &st),
                     0);
        cap_keylog_free(hs_only);
        tb_free(&kt);
    }
    /* A secret of the wrong length for the suite (SHA-384 secret for AES-128-GCM-SHA256). */
    {
        struct cap_keylog *wrong = keylog_for(c.cr, 48);
        CHECK_EQ_INT(expect_failure("wrong length", &c.c2s, &c.s2c, wrong, "tls_no_key", &st), 0);
        cap_keylog_free(wrong);
    }
    tlb_conn_free(&c);

    /* Unsupported cipher suite (CBC) and versions. */
    {
        struct tbuf c2s = {0}, s2c = {0}, m = {0};
        struct tlb_hello h;
        uint8_t cr[32], sr[32];
        tlb_client_random(cr, 0);
        tlb_server_random(sr);
        memset(&h, 0, sizeof(h));
        h.random = cr;
        tlb_client_hello(&m, &h);
        tlb_plain(&c2s, 22, &m);
        m.len = 0;
        h.random = sr;
        h.suite = 0xc013; /* ECDHE_RSA_WITH_AES_128_CBC_SHA */
        tlb_server_hello(&m, &h);
        tlb_plain(&s2c, 22, &m);
        expect_failure("cbc", &c2s, &s2c, kl, "tls_unsupported_cipher:0xc013", &st);
        CHECK_EQ_INT(st.unsupported_cipher, 1);
        s2c.len = 0;
        m.len = 0;
        h.suite = 0x1301; /* a TLS 1.3 suite in a TLS 1.2 ServerHello */
        tlb_server_hello(&m, &h);
        tlb_plain(&s2c, 22, &m);
        expect_failure("1.3 suite in 1.2", &c2s, &s2c, kl, "tls_unsupported_cipher:0x1301", &st);
        s2c.len = 0;
        m.len = 0;
        h.suite = 0xc02f;
        h.version = 0x0301; /* TLS 1.0 */
        tlb_server_hello(&m, &h);
        tlb_plain(&s2c, 22, &m);
        expect_failure("tls 1.0", &c2s, &s2c, kl, "tls_unsupported_version", &st);
        CHECK_EQ_INT(st.unsupported_version, 1);
        /* A server that never answers. */
        s2c.len = 0;
        expect_failure("no server hello", &c2s, &s2c, kl, "tls_handshake_incomplete", &st);
        tb_free(&c2s);
        tb_free(&s2c);
        tb_free(&m);
    }
    /* Malformed: an oversized record, an unknown content type, a short ServerHello. */
    {
        struct tbuf c2s = {0}, s2c = {0};
        uint64_t before = st.malformed;
        tb_put(&c2s, "\x16\x03\x01\x48\x01", 5); /* 18433 > 2^14 + 256 */
        expect_failure("too large", &c2s, &s2c, kl, "tls_malformed", &st);
        CHECK_EQ_INT(st.record_too_large, 1);
        c2s.len = 0;
        tb_put(&c2s, "\x19\x03\x01\x00\x01\x00", 6);
        expect_failure("content type 25", &c2s, &s2c, kl, "tls_malformed", &st);
        c2s.len = 0;
        tb_put(&c2s, "\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00", 13);
        expect_failure("short client hello", &c2s, &s2c, kl, "tls_malformed", &st);
        CHECK_EQ_INT(st.malformed, before + 3);
        tb_free(&c2s);
        tb_free(&s2c);
    }
    cap_keylog_free(kl);
}

/* Live capture: the key log line appears after the handshake was seen. */
static void test_pending_secrets(void)
{
    struct cap_tls_stats st;
    struct tls_out out;
    struct tlb_conn c;
    struct tlb_opts o;
    struct cap_tls *t;

    memset(&st, 0, sizeof(st));
    memset(&o, 0, sizeof(o));
    o.suite = 0x1303;
    CHECK_EQ_INT(tlb_conn13(&c, &o), 0);
    CHECK_EQ_INT(tlb_app(&c, 0, "held back", 9), 0);
    CHECK_EQ_INT(tlb_app(&c, 1, "me too", 6), 0);

    memset(&out, 0, sizeof(out));
    out.kl = keylog_for(c.cr, 32);
    out.hold = 1; /* the key log lines are not there yet */
    t = cap_tls_new(&out_cb, &out, &st);
    CHECK_EQ_INT(cap_tls_feed(t, 0, c.c2s.p, c.c2s.len, 10), 0);
    CHECK_EQ_INT(cap_tls_feed(t, 1, c.s2c.p, c.s2c.len, 20), 0);
    CHECK_EQ_INT(out.plain[0].len + out.plain[1].len, 0); /* held */
    CHECK_EQ_INT(out.n_fail, 0);
    out.hold = 0;
    CHECK_EQ_INT(cap_tls_feed(t, 0, NULL, 0, 30), 0);
    CHECK_EQ_INT(cap_tls_feed(t, 1, NULL, 0, 31), 0);
    CHECK_EQ_INT(cap_tls_feed(t, 1, NULL, 0, 32), 0);
    CHECK_EQ_INT(out.n_fail, 0);
    CHECK_EQ_MEM(out.plain[0].p, out.plain[0].len, "held back", 9);
    CHECK_EQ_MEM(out.plain[1].p, out.plain[1].len, "me too", 6);
    CHECK_EQ_INT(out.last_ts[0], 10); /* the capture time of the record, not of the retry */
    CHECK_EQ_INT(cap_tls_finish(t), 0);
    cap_tls_free(t);
    tb_free(&out.plain[0]);
    tb_free(&out.plain[1]);
    cap_keylog_free(out.kl);

    /* Never appears: the final lookup at the end makes it tls_no_key. */
    memset(&out, 0, sizeof(out));
    out.kl = cap_keylog_new();
    out.follow = 1;
    t = cap_tls_new(&out_cb, &out, &st);
    CHECK_EQ_INT(cap_tls_feed(t, 0, c.c2s.p, c.c2s.len, 10), 0);
    CHECK_EQ_INT(cap_tls_feed(t, 1, c.s2c.p, c.s2c.len, 20), 0);
    CHECK_EQ_INT(out.n_fail, 0);
    CHECK_EQ_INT(cap_tls_finish(t), 0);
    CHECK_EQ_STR(out.reason, "tls_no_key");
    cap_tls_free(t);
    cap_keylog_free(out.kl);
    tlb_conn_free(&c);
}

/* ---- key log ---- */

static struct cap_keylog *kl_from(const char *text)
{
    struct cap_keylog *kl = cap_keylog_new();
    if (!kl)
        exit(2);
    CHECK_EQ_INT(cap_keylog_feed(kl, (const uint8_t *)text, strlen(text)), 0);
    CHECK_EQ_INT(cap_keylog_end(kl), 0);
    return kl;
}

#define CR1 "2021222324252627282930313233343536373839404142434445464748494a4b"
#define CR2 "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
#define S32 "a1a2a3a4a5a6a7a8a9aaabacadaeafb0a1a2a3a4a5a6a7a8a9aaabacadaeafb0"
#define M48 S32 "0102030405060708090a0b0c0d0e0f10"

static void test_keylog_parse(void)
{
    const struct cap_keylog_stats *st;
    struct cap_keylog *kl;
    uint8_t cr1[32], cr2[32], s[48], want[48];
    size_t n = 0;

    unhex(CR1, cr1, 32);
    unhex(CR2, cr2, 32);
    kl = kl_from("# SSL/TLS secrets log file, generated by NSS\n"
                 "\n"
                 "CLIENT_RANDOM " CR1 " " M48 "\n"
                 "CLIENT_HANDSHAKE_TRAFFIC_SECRET " CR2 " " S32 "\r\n"   /* CRLF */
                 "SERVER_HANDSHAKE_TRAFFIC_SECRET\t" CR2 "  " S32 "  \n" /* tab, spaces */
                 "CLIENT_TRAFFIC_SECRET_0 " CR2 " " S32 "\n"
                 "SERVER_TRAFFIC_SECRET_0 " CR2 " " M48 "\n" /* SHA-384 length */
                 "EXPORTER_SECRET " CR2 " " S32 "\n"
                 "CLIENT_EARLY_TRAFFIC_SECRET " CR2 " " S32 "\n"
                 "SERVER_TRAFFIC_SECRET_N " CR2 " " S32 "\n"
                 "RSA 0123456789abcdef " M48 "\n"
                 "FUTURE_LABEL " CR2 " " S32 "\n"              /* unknown label */
                 "CLIENT_RANDOM " CR1 "\n"                     /* truncated: line 13 */
                 "CLIENT_RANDOM " CR1 " " S32 "zz\n"           /* bad hex */
                 "CLIENT_RANDOM 2021 " M48 "\n"                /* short random */
                 "CLIENT_TRAFFIC_SECRET_0 " CR2 " " S32 "ab\n" /* odd length secret */
                 "garbage line with words\n"
                 "CLIENT_RANDOM " CR2 " " M48 " extra\n"
                 "SERVER_TRAFFIC_SECRET_0 " CR1 " " S32); /* no newline at the end */
    st = cap_keylog_stats(kl);
    CHECK_EQ_INT(st->lines, 10);
    CHECK_EQ_INT(st->ignored_lines, 4);
    CHECK_EQ_INT(st->unknown_labels, 1);
    CHECK_EQ_INT(st->bad_lines, 6);
    CHECK_EQ_INT(st->first_bad_line, 13);
    CHECK_EQ_INT(st->last_bad_line, 18);
    CHECK_EQ_INT(st->entries, 2);
    CHECK(strstr(cap_keylog_first_error(kl), "line 13") != NULL);

    unhex(M48, want, 48);
    CHECK_EQ_INT(cap_keylog_lookup(kl, cr1, CAP_KL_MASTER, s, &n, 0), CAP_KEYLOG_FOUND);
    CHECK_EQ_MEM(s, n, want, 48);
    CHECK_EQ_INT(cap_keylog_lookup(kl, cr2, CAP_KL_SERVER_AP, s, &n, 0), CAP_KEYLOG_FOUND);
    CHECK_EQ_INT(n, 48);
    CHECK_EQ_INT(cap_keylog_lookup(kl, cr2, CAP_KL_CLIENT_HS, s, &n, 0), CAP_KEYLOG_FOUND);
    CHECK_EQ_INT(n, 32);
    CHECK_EQ_INT(cap_keylog_lookup(kl, cr1, CAP_KL_SERVER_AP, s, &n, 0), CAP_KEYLOG_FOUND);
    CHECK_EQ_INT(cap_keylog_lookup(kl, cr2, CAP_KL_MASTER, s, &n, 0), CAP_KEYLOG_MISSING);
    CHECK_EQ_INT(cap_keylog_lookup(kl, cr1, CAP_KL_CLIENT_HS, s, &n, 1), CAP_KEYLOG_MISSING);

    {
        struct cap_counter_list l = {NULL, 0, 0};
        int found = 0;
        CHECK_EQ_INT(cap_keylog_stats_export(kl, &l), 0);
        for (size_t i = 0; i < l.n; i++) {
            if (strcmp(l.v[i].name, "keylog.bad_lines") == 0 && l.v[i].value == 6)
                found++;
            if (strcmp(l.v[i].name, "keylog.lines") == 0 && l.v[i].value == 10)
                found++;
            if (strcmp(l.v[i].name, "keylog.empty") == 0)
                found += 10;
        }
        CHECK_EQ_INT(found, 2);
        cap_counter_list_free(&l);
    }
    cap_keylog_free(kl);

    /* A conflicting secret replaces the old one and is counted; an identical one is not. */
    kl = kl_from("CLIENT_HANDSHAKE_TRAFFIC_SECRET " CR1 " " S32 "\n"
                 "CLIENT_HANDSHAKE_TRAFFIC_SECRET " CR1 " " S32 "\n"
                 "CLIENT_HANDSHAKE_TRAFFIC_SECRET " CR1
                 " 0000000000000000000000000000000000000000000000000000000000000000\n");
    CHECK_EQ_INT(cap_keylog_stats(kl)->conflicts, 1);
    CHECK_EQ_INT(cap_keylog_lookup(kl, cr1, CAP_KL_CLIENT_HS, s, &n, 0), CAP_KEYLOG_FOUND);
    CHECK(n == 32 && s[0] == 0 && s[31] == 0);
    cap_keylog_free(kl);

    /* A very long line is one bad line, and the next line still parses. */
    {
        struct cap_keylog *k2 = cap_keylog_new();
        char longline[2000];
        memset(longline, 'A', sizeof(longline));
        CHECK_EQ_INT(cap_keylog_feed(k2, (const uint8_t *)longline, sizeof(longline)), 0);
        CHECK_EQ_INT(cap_keylog_feed(k2, (const uint8_t *)"\nCLIENT_RANDOM " CR1 " " M48 "\n",
                                     strlen("\nCLIENT_RANDOM " CR1 " " M48 "\n")),
                     0);
        CHECK_EQ_INT(cap_keylog_stats(k2)->bad_lines, 1);
        CHECK_EQ_INT(cap_keylog_stats(k2)->lines, 1);
        cap_keylog_free(k2);
    }
    /* A last line still being written: provisional, then re-parsed when it completes. */
    {
        struct cap_keylog *k3 = cap_keylog_new();
        const char *line = "CLIENT_RANDOM " CR1 " " M48 "\n";
        size_t half = 40;
        CHECK_EQ_INT(cap_keylog_feed(k3, (const uint8_t *)line, half), 0);
        CHECK_EQ_INT(cap_keylog_end(k3), 0);
        CHECK_EQ_INT(cap_keylog_stats(k3)->bad_lines, 1);
        CHECK_EQ_INT(cap_keylog_stats(k3)->first_bad_line, 1);
        CHECK_EQ_INT(cap_keylog_feed(k3, (const uint8_t *)line + half, strlen(line) - half), 0);
        CHECK_EQ_INT(cap_keylog_stats(k3)->bad_lines, 0);
        CHECK_EQ_INT(cap_keylog_stats(k3)->first_bad_line, 0);
        CHECK_EQ_INT(cap_keylog_stats(k3)->lines, 1);
        CHECK_EQ_STR(cap_keylog_first_error(k3), "");
        CHECK_EQ_INT(cap_keylog_lookup(k3, cr1, CAP_KL_MASTER, s, &n, 0), CAP_KEYLOG_FOUND);
        cap_keylog_free(k3);
    }
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void write_file(const char *path, const char *mode, const char *text)
{
    FILE *f = fopen(path, mode);
    if (!f)
        exit(2);
    fputs(text, f);
    fclose(f);
}

static void test_keylog_file(void)
{
    char dir[] = "/tmp/h2r-test-keylog.XXXXXX", path[128], err[256];
    struct cap_keylog *kl;
    uint8_t cr1[32], cr2[32], s[48];
    size_t n = 0;

    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    unhex(CR1, cr1, 32);
    unhex(CR2, cr2, 32);
    snprintf(path, sizeof(path), "%s/keys.log", dir);

    /* Missing file: an error naming it. */
    err[0] = '\0';
    CHECK(cap_keylog_open(path, err, sizeof(err)) == NULL);
    CHECK(strstr(err, path) != NULL && strstr(err, "No such file") != NULL);
    /* Not a key log at all. */
    write_file(path, "w", "hello world\nthis is not a key log\n");
    CHECK(cap_keylog_open(path, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "no valid key line") != NULL);
    /* A directory. */
    CHECK(cap_keylog_open(dir, err, sizeof(err)) == NULL);
    /* Empty: accepted (a live client has not connected yet), flagged as empty. */
    write_file(path, "w", "");
    kl = cap_keylog_open(path, err, sizeof(err));
    CHECK(kl != NULL);
    if (!kl)
        return;
    CHECK_EQ_INT(cap_keylog_stats(kl)->lines, 0);
    CHECK_EQ_INT(cap_keylog_following(kl), 0);
    cap_keylog_set_follow(kl, 1);
    CHECK_EQ_INT(cap_keylog_following(kl), 1);

    /* Appended later, half a line at first: a lookup miss re-reads (force skips the limit). */
    write_file(path, "a", "CLIENT_RANDOM " CR1 " " M48 "\nCLIENT_RANDOM " CR2 " 0102");
    CHECK_EQ_INT(cap_keylog_lookup(kl, cr1, CAP_KL_MASTER, s, &n, 1), CAP_KEYLOG_FOUND);
    CHECK_EQ_INT(cap_keylog_stats(kl)->reloads, 1);
    CHECK_EQ_INT(cap_keylog_stats(kl)->bad_lines, 1); /* the half line, for now */
    /* Paced misses: a burst of lookups for a random that never comes looks at the file a few
     * times (1, 2, 4, 8 ... ms apart), not once per lookup: at most about log2 of the time. */
    {
        uint64_t checks = cap_keylog_stats(kl)->reload_checks, lookups = 0, found = 0, bound = 3;
        uint8_t none[32];
        int64_t t0 = now_ns(), elapsed_ms;
        memset(none, 0xee, sizeof(none));
        while (now_ns() - t0 < 30000000ll) {
            found += cap_keylog_lookup(kl, none, CAP_KL_MASTER, s, &n, 0) != CAP_KEYLOG_MISSING;
            lookups++;
        }
        elapsed_ms = (now_ns() - t0) / 1000000 + 1;
        while (elapsed_ms > 1) {
            elapsed_ms /= 2;
            bound++;
        }
        checks = cap_keylog_stats(kl)->reload_checks - checks;
        CHECK_EQ_INT(found, 0);
        if (checks < 1 || checks > bound)
            fprintf(stderr, "%llu looks at the file in %llu lookups (bound %llu)\n",
                    (unsigned long long)checks, (unsigned long long)lookups,
                    (unsigned long long)bound);
        CHECK(checks >= 1 && checks <= bound && checks < lookups);
    }
    /* The rest of the half line arrives: found by a miss shortly after, without force. */
    write_file(path, "a", "0304");
    write_file(path, "a", &M48[8]); /* the rest of the 48-byte secret */
    write_file(path, "a", "\n");
    {
        int64_t t0 = now_ns();
        int rc = CAP_KEYLOG_MISSING;
        while (rc != CAP_KEYLOG_FOUND && now_ns() - t0 < 2 * CAP_KEYLOG_RELOAD_NS)
            rc = cap_keylog_lookup(kl, cr2, CAP_KL_MASTER, s, &n, 0);
        CHECK_EQ_INT(rc, CAP_KEYLOG_FOUND);
        CHECK(now_ns() - t0 < 250000000ll); /* the gap was about 32 ms, far below 500 */
    }
    CHECK_EQ_INT(cap_keylog_stats(kl)->reloads, 2);
    CHECK_EQ_INT(cap_keylog_stats(kl)->bad_lines, 0);
    CHECK_EQ_INT(cap_keylog_stats(kl)->lines, 2);
    CHECK(n == 48 && s[0] == 0x01 && s[1] == 0x02 && s[2] == 0x03 && s[3] == 0x04);

    /* Replaced by a shorter file: read again from the start; known secrets stay. */
    write_file(path, "w", "CLIENT_HANDSHAKE_TRAFFIC_SECRET " CR1 " " S32 "\n");
    CHECK_EQ_INT(cap_keylog_lookup(kl, cr1, CAP_KL_CLIENT_HS, s, &n, 1), CAP_KEYLOG_FOUND);
    CHECK_EQ_INT(cap_keylog_lookup(kl, cr1, CAP_KL_MASTER, s, &n, 0), CAP_KEYLOG_FOUND);
    cap_keylog_free(kl);

    /* A truncated line in the middle of a file: counted with its number, not fatal. */
    write_file(path, "w",
               "CLIENT_RANDOM " CR1 " " M48 "\nCLIENT_RANDOM " CR2 " 0102\n"
               "CLIENT_HANDSHAKE_TRAFFIC_SECRET " CR1 " " S32 "\r\n");
    kl = cap_keylog_open(path, err, sizeof(err));
    CHECK(kl != NULL);
    if (kl) {
        CHECK_EQ_INT(cap_keylog_stats(kl)->bad_lines, 1);
        CHECK_EQ_INT(cap_keylog_stats(kl)->first_bad_line, 2);
        CHECK_EQ_INT(cap_keylog_stats(kl)->lines, 2);
        cap_keylog_free(kl);
    }
    unlink(path);
    rmdir(dir);
}

/* ---- TLS through the session layer ---- */

struct order_log {
    int dirs[64];
    size_t n;
};

static int order_plain(void *ud, int dir, const uint8_t *p, size_t n, int64_t ts)
{
    struct order_log *o = ud;
    (void)p;
    (void)n;
    (void)ts;
    if (o->n < 64)
        o->dirs[o->n++] = dir;
    return 0;
}

static int order_hold_client_ap;
static struct cap_keylog *order_kl;

static int order_secret(void *ud, const uint8_t cr[32], enum cap_keylog_label label,
                        uint8_t secret[CAP_KEYLOG_MAX_SECRET], size_t *len, int final)
{
    (void)ud;
    if (label == CAP_KL_CLIENT_AP && order_hold_client_ap && !final)
        return CAP_TLS_KEY_PENDING;
    return cap_keylog_lookup(order_kl, cr, label, secret, len, final) == CAP_KEYLOG_FOUND
               ? CAP_TLS_KEY_FOUND
               : CAP_TLS_KEY_MISSING;
}

/* Held records come out in capture order across directions, whichever secret came first. */
static void test_release_order(void)
{
    static const struct cap_tls_callbacks cb = {order_secret, order_plain, NULL, NULL};
    struct cap_tls_stats st;
    struct order_log log;
    struct tlb_conn c;
    struct tlb_opts o;
    struct cap_tls *t;
    size_t c_mark;

    memset(&st, 0, sizeof(st));
    memset(&log, 0, sizeof(log));
    memset(&o, 0, sizeof(o));
    o.suite = 0x1301;
    CHECK_EQ_INT(tlb_conn13(&c, &o), 0);
    c_mark = c.c2s.len;
    CHECK_EQ_INT(tlb_app(&c, 0, "request", 7), 0);
    CHECK_EQ_INT(tlb_app(&c, 1, "response", 8), 0);
    order_kl = keylog_for(c.cr, 32);
    order_hold_client_ap = 1;
    t = cap_tls_new(&cb, &log, &st);
    /* capture order: handshake both ways, the request, then the response */
    CHECK_EQ_INT(cap_tls_feed(t, 0, c.c2s.p, c_mark, 1), 0);
    CHECK_EQ_INT(cap_tls_feed(t, 1, c.s2c.p, c.s2c.len - 8 - 22, 2), 0);
    CHECK_EQ_INT(cap_tls_feed(t, 0, c.c2s.p + c_mark, c.c2s.len - c_mark, 3), 0);
    CHECK_EQ_INT(cap_tls_feed(t, 1, c.s2c.p + c.s2c.len - 8 - 22, 8 + 22, 4), 0);
    CHECK_EQ_INT(log.n, 0); /* the response waits behind the request */
    order_hold_client_ap = 0;
    CHECK_EQ_INT(cap_tls_finish(t), 0);
    CHECK_EQ_INT(log.n, 2);
    CHECK(log.n == 2 && log.dirs[0] == 0 && log.dirs[1] == 1);
    cap_tls_free(t);
    cap_keylog_free(order_kl);
    tlb_conn_free(&c);
}

struct sess_fx {
    struct cap_session_stats st;
    struct cap_session_env env;
    struct rec_sink sink;
    struct cap_session *s;
};

static void sess_init(struct sess_fx *f, struct cap_keylog *kl)
{
    struct cap_flow_info info;
    struct cap_session_sink sk;
    memset(f, 0, sizeof(*f));
    f->env.stats = &f->st;
    f->env.max_req_body = 1 << 20;
    f->env.max_resp_body = 1 << 20;
    f->env.next_exchange_id = 1;
    f->env.keylog = kl;
    memset(&info, 0, sizeof(info));
    info.conn_id = 7;
    strcpy(info.client, "127.0.0.1:40000");
    strcpy(info.server, "127.0.0.1:8443");
    sk = rec_sink_make(&f->sink);
    f->s = cap_session_new_with_sink(&f->env, &info, &sk);
    if (!f->s)
        exit(2);
}

/* An HTTP/2 exchange (GET /tls -> 200 "hello over tls") inside a TLS 1.3 or 1.2 connection. */
static void build_h2_over_tls(struct tlb_conn *c, uint16_t suite, const char *alpn)
{
    struct tlb_opts o;
    struct tbuf cl = {0}, sv = {0};
    nghttp2_hd_deflater *cd = NULL, *sd = NULL;
    static const char *const req[] = {":method",   "GET",   ":scheme", "https", ":authority",
                                      "localhost", ":path", "/tls",    NULL};
    nghttp2_hd_deflate_new(&cd, 4096);
    nghttp2_hd_deflate_new(&sd, 4096);
    memset(&o, 0, sizeof(o));
    o.suite = suite;
    o.alpn = alpn;
    if (tlb_suite(suite)->tls13)
        CHECK_EQ_INT(tlb_conn13(c, &o), 0);
    else
        CHECK_EQ_INT(tlb_conn12(c, &o), 0);
    tb_preface(&cl);
    tb_settings_empty(&cl, 0);
    tb_headers(&cl, cd, 1, TB_END_STREAM, req);
    tb_settings_empty(&sv, 0);
    tb_settings_empty(&sv, TB_ACK);
    tb_headers(&sv, sd, 1, 0, (const char *const[]){":status", "200", NULL});
    tb_data(&sv, 1, TB_END_STREAM, "hello over tls", 14);
    CHECK_EQ_INT(tlb_app(c, 1, sv.p, 9), 0); /* server SETTINGS first, in its own record */
    CHECK_EQ_INT(tlb_app(c, 0, cl.p, cl.len), 0);
    CHECK_EQ_INT(tlb_app(c, 1, sv.p + 9, sv.len - 9), 0);
    tb_free(&cl);
    tb_free(&sv);
    nghttp2_hd_deflate_del(cd);
    nghttp2_hd_deflate_del(sd);
}

static uint64_t counter(const struct cap_session_stats *st, const char *name)
{
    struct cap_counter_list l = {NULL, 0, 0};
    uint64_t v = 0;
    if (cap_session_stats_export(st, &l) != 0)
        exit(2);
    for (size_t i = 0; i < l.n; i++) {
        if (strcmp(l.v[i].name, name) == 0)
            v = l.v[i].value;
    }
    cap_counter_list_free(&l);
    return v;
}

static void test_session_tls(void)
{
    static const uint16_t suites[] = {0x1301, 0xcca8};
    for (size_t i = 0; i < 2; i++) {
        struct sess_fx f;
        struct tlb_conn c;
        struct cap_keylog *kl;
        const struct rec_exch *x;

        build_h2_over_tls(&c, suites[i], "h2");
        kl = keylog_for(c.cr, 32);
        sess_init(&f, kl);
        /* The client's first bytes arrive in two pieces: detection waits for 3 bytes. */
        CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_C2S, c.c2s.p, 2, 100), 0);
        CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_C2S, c.c2s.p + 2, c.c2s.len - 2, 110), 0);
        CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_S2C, c.s2c.p, c.s2c.len, 120), 0);
        CHECK_EQ_INT(f.sink.nconn, 1);
        CHECK_EQ_INT(f.sink.conn_transport[0], H2R_TRANSPORT_TLS);
        CHECK_EQ_STR(f.sink.conn[0].alpn, "h2");
        CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 200, c.c2s.len, c.s2c.len, 0), 0);
        CHECK_EQ_INT(f.sink.nx, 1);
        x = rec_find(&f.sink, 1);
        CHECK(x != NULL);
        if (x) {
            CHECK_EQ_INT(x->status, 200);
            CHECK(strstr(x->req, ":path: /tls\n") != NULL);
            CHECK_EQ_STR(x->resp_body, "hello over tls");
        }
        CHECK_EQ_INT(f.sink.nend, 1);
        CHECK(f.sink.end_reason[0] == NULL);
        CHECK_EQ_INT(counter(&f.st, "tls.flows"), 1);
        CHECK_EQ_INT(counter(&f.st, "tls.h2"), 1);
        CHECK_EQ_INT(counter(&f.st, "tls.decrypted_flows"), 1);
        CHECK_EQ_INT(counter(&f.st, "h2c.prior_knowledge"), 0);
        CHECK_EQ_INT(cap_session_undecodable_flows(&f.st), 0);
        cap_session_free(f.s);
        rec_sink_clear(&f.sink);

        /* Without a key log: undecodable, tls_no_keylog, transport still tls. */
        sess_init(&f, NULL);
        CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_C2S, c.c2s.p, c.c2s.len, 100), 0);
        CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_S2C, c.s2c.p, c.s2c.len, 120), 0);
        CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 200, c.c2s.len, c.s2c.len, 0), 0);
        CHECK_EQ_INT(f.sink.nx, 0);
        CHECK_EQ_INT(f.sink.conn_transport[0], H2R_TRANSPORT_TLS);
        CHECK_EQ_INT(f.sink.end[0].how, H2R_CONN_END_UNDECODABLE);
        CHECK_EQ_STR(f.sink.end_reason[0], "tls_no_keylog");
        CHECK_EQ_INT(counter(&f.st, "undecodable.tls_no_keylog"), 1);
        CHECK_EQ_INT(counter(&f.st, "undecodable.not_http2"), 0);
        CHECK_EQ_INT(cap_session_undecodable_flows(&f.st), 1);
        cap_session_free(f.s);
        rec_sink_clear(&f.sink);

        /* A key log for another connection: tls_no_key. */
        {
            uint8_t other[32];
            struct cap_keylog *okl;
            tlb_client_random(other, 2);
            okl = keylog_for(other, 32);
            sess_init(&f, okl);
            CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_C2S, c.c2s.p, c.c2s.len, 100), 0);
            CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_S2C, c.s2c.p, c.s2c.len, 120), 0);
            CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 200, 1, 1, 0), 0);
            CHECK_EQ_STR(f.sink.end_reason[0], "tls_no_key");
            CHECK_EQ_INT(counter(&f.st, "tls.no_key"), 1);
            CHECK_EQ_INT(cap_session_undecodable_flows(&f.st), 1);
            cap_session_free(f.s);
            rec_sink_clear(&f.sink);
            cap_keylog_free(okl);
        }
        /* A corrupted record mid-HTTP/2: the exchange ends with tls_error, nothing garbled. */
        sess_init(&f, kl);
        c.s2c.p[c.s2c.len - 5] ^= 0x80;
        CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_C2S, c.c2s.p, c.c2s.len, 100), 0);
        CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_S2C, c.s2c.p, c.s2c.len, 120), 0);
        CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 200, 1, 1, 0), 0);
        CHECK_EQ_STR(f.sink.end_reason[0], "tls_bad_tag");
        CHECK_EQ_INT(f.sink.nx, 1);
        if (f.sink.nx == 1) {
            CHECK_EQ_STR(f.sink.x[0].error, "tls_error");
            CHECK_EQ_INT(f.sink.x[0].resp_body_len, 0);
        }
        cap_session_free(f.s);
        rec_sink_clear(&f.sink);

        cap_keylog_free(kl);
        tlb_conn_free(&c);
    }
    /* ALPN http/1.1 with a plain HTTP/1.1 request inside: not HTTP/2, transport tls. */
    {
        struct sess_fx f;
        struct tlb_conn c;
        struct tlb_opts o;
        struct cap_keylog *kl;
        memset(&o, 0, sizeof(o));
        o.suite = 0x1302;
        o.alpn = "http/1.1";
        CHECK_EQ_INT(tlb_conn13(&c, &o), 0);
        CHECK_EQ_INT(tlb_app(&c, 0, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27), 0);
        kl = keylog_for(c.cr, 48);
        sess_init(&f, kl);
        CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_C2S, c.c2s.p, c.c2s.len, 100), 0);
        CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_S2C, c.s2c.p, c.s2c.len, 120), 0);
        CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 200, 1, 1, 0), 0);
        CHECK_EQ_STR(f.sink.end_reason[0], "not_http2");
        CHECK_EQ_INT(f.sink.conn_transport[0], H2R_TRANSPORT_TLS);
        CHECK_EQ_STR(f.sink.conn[0].alpn, "http/1.1");
        CHECK_EQ_INT(counter(&f.st, "tls.decrypted_flows"), 1);
        CHECK_EQ_INT(cap_session_undecodable_flows(&f.st), 1);
        cap_session_free(f.s);
        rec_sink_clear(&f.sink);
        cap_keylog_free(kl);
        tlb_conn_free(&c);
    }
    /* Joined mid-stream inside TLS records. */
    {
        struct sess_fx f;
        struct cap_flow_info info;
        struct cap_session_sink sk;
        memset(&f, 0, sizeof(f));
        f.env.stats = &f.st;
        memset(&info, 0, sizeof(info));
        info.partial = 1;
        sk = rec_sink_make(&f.sink);
        f.s = cap_session_new_with_sink(&f.env, &info, &sk);
        CHECK_EQ_INT(
            cap_session_feed(f.s, CAP_DIR_C2S, (const uint8_t *)"\x17\x03\x03\x00\x20", 5, 1), 0);
        CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 2, 5, 0, 0), 0);
        CHECK_EQ_STR(f.sink.end_reason[0], "tls_partial");
        cap_session_free(f.s);
        rec_sink_clear(&f.sink);
    }
}

/*
 * Live capture: the client's application secret reaches the key log only after the whole
 * exchange was captured (a big response included). The response must wait for the request
 * instead of overflowing the session's pre-detection buffer.
 */
static void test_session_live_keylog(void)
{
    char dir[] = "/tmp/h2r-test-live.XXXXXX", path[128], err[256];
    struct tbuf kt = {0}, cl = {0}, sv = {0};
    struct sess_fx f;
    struct tlb_conn c;
    struct tlb_opts o;
    struct cap_keylog *kl;
    nghttp2_hd_deflater *cd = NULL, *sd = NULL;
    static uint8_t big[100000];
    static const char *const req[] = {":method", "GET",   ":scheme", "https", ":authority",
                                      "x",       ":path", "/big",    NULL};
    size_t cut = 0, line_len = 0;
    FILE *fp;

    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    snprintf(path, sizeof(path), "%s/keys.log", dir);
    memset(&o, 0, sizeof(o));
    o.suite = 0x1301;
    o.alpn = "h2";
    CHECK_EQ_INT(tlb_conn13(&c, &o), 0);
    nghttp2_hd_deflate_new(&cd, 4096);
    nghttp2_hd_deflate_new(&sd, 4096);
    tb_preface(&cl);
    tb_settings_empty(&cl, 0);
    tb_headers(&cl, cd, 1, TB_END_STREAM, req);
    tb_settings_empty(&sv, 0);
    tb_headers(&sv, sd, 1, 0, (const char *const[]){":status", "200", NULL});
    for (size_t off = 0; off < sizeof(big); off += 16000) {
        size_t k = sizeof(big) - off < 16000 ? sizeof(big) - off : 16000;
        tb_data(&sv, 1, off + k == sizeof(big) ? TB_END_STREAM : 0, big + off, k);
    }
    CHECK_EQ_INT(tlb_app(&c, 0, cl.p, cl.len), 0);
    CHECK_EQ_INT(tlb_app(&c, 1, sv.p, sv.len), 0);

    /* The key log has everything but CLIENT_TRAFFIC_SECRET_0 (the 4th line) for now. */
    tlb_keylog(&kt, c.cr, 32);
    for (int lines = 0; cut < kt.len && lines < 3; cut++)
        lines += kt.p[cut] == '\n';
    while (cut + line_len < kt.len && kt.p[cut + line_len] != '\n')
        line_len++;
    line_len++;
    CHECK(memcmp(kt.p + cut, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0);
    fp = fopen(path, "w");
    if (!fp)
        exit(2);
    fwrite(kt.p, 1, cut, fp);
    fwrite(kt.p + cut + line_len, 1, kt.len - cut - line_len, fp);
    fclose(fp);
    kl = cap_keylog_open(path, err, sizeof(err));
    CHECK(kl != NULL);
    if (!kl)
        return;
    cap_keylog_set_follow(kl, 1);
    sess_init(&f, kl);
    CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_C2S, c.c2s.p, c.c2s.len, 100), 0);
    CHECK_EQ_INT(cap_session_feed(f.s, CAP_DIR_S2C, c.s2c.p, c.s2c.len, 120), 0);
    CHECK_EQ_INT(f.sink.nconn, 0); /* nothing decided yet: the request is held */
    fp = fopen(path, "a");
    if (!fp)
        exit(2);
    fwrite(kt.p + cut, 1, line_len, fp);
    fclose(fp);
    CHECK_EQ_INT(cap_session_close(f.s, H2R_CONN_END_FIN, 200, 1, 1, 0), 0);
    CHECK_EQ_INT(f.sink.nx, 1);
    if (f.sink.nx == 1) {
        CHECK_EQ_INT(f.sink.x[0].status, 200);
        CHECK_EQ_INT(f.sink.x[0].resp_body_len, sizeof(big));
        CHECK(f.sink.x[0].error == NULL);
    }
    CHECK(f.sink.nend == 1 && f.sink.end_reason[0] == NULL);
    CHECK_EQ_INT(counter(&f.st, "tls.h2"), 1);
    cap_session_free(f.s);
    rec_sink_clear(&f.sink);
    cap_keylog_free(kl);
    nghttp2_hd_deflate_del(cd);
    nghttp2_hd_deflate_del(sd);
    tb_free(&kt);
    tb_free(&cl);
    tb_free(&sv);
    tlb_conn_free(&c);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    test_rfc8448_key_schedule();
    test_rfc8448_records();
    test_tls12_prf();
    test_tls12_vectors_through_parser();
    test_tls13_connections();
    test_tls12_connections();
    test_failures();
    test_pending_secrets();
    test_keylog_parse();
    test_keylog_file();
    test_release_order();
    test_session_tls();
    test_session_live_keylog();
    return check_summary("test_tls");
}
