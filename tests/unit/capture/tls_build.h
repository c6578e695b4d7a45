/*
 * Builds synthetic TLS 1.2 / 1.3 connections for tests and fuzz corpora:
 * hello messages, protected records sealed with OpenSSL EVP, and a key log
 * holding the secrets that open them. The handshakes are not real (no key
 * exchange, no certificates): the decrypting side never checks them, it
 * only needs the randoms, the negotiated suite and the key log.
 *
 * Fixed secrets (TLB_*) so the key log text and the records always match.
 */
#ifndef H2R_TESTS_TLS_BUILD_H
#define H2R_TESTS_TLS_BUILD_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "cap_tls.h"
#include "unit/capture/h2_frame_build.h"

#define TLB_HS_CLIENT_HELLO 1
#define TLB_HS_SERVER_HELLO 2
#define TLB_HS_ENCRYPTED_EXT 8
#define TLB_HS_CERTIFICATE 11
#define TLB_HS_SERVER_HELLO_DONE 14
#define TLB_HS_CLIENT_KEY_EXCHANGE 16
#define TLB_HS_FINISHED 20
#define TLB_HS_KEY_UPDATE 24
#define TLB_HS_NEW_SESSION_TICKET 4

static const uint8_t tlb_hrr_random[32] = {
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c};

/* The secrets of every synthetic connection: byte patterns, one per label. */
static inline void tlb_secret(int label, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)(label == 0 ? i : 0xa0 + label * 0x10 + (i & 0xf));
}

/* 20 21 .. 3f for seed 0 (the Python-made TLS 1.2 vectors use it); the seed varies byte 0. */
static inline void tlb_client_random(uint8_t r[32], uint8_t seed)
{
    for (int i = 0; i < 32; i++)
        r[i] = (uint8_t)(0x20 + i);
    r[0] = (uint8_t)(r[0] + seed);
}

static inline void tlb_server_random(uint8_t r[32])
{
    for (int i = 0; i < 32; i++)
        r[i] = (uint8_t)(0x40 + i);
}

/* Appends the key log lines for client random r (hash_len: 32 or 48 for TLS 1.3). */
static inline void tlb_keylog(struct tbuf *kl, const uint8_t r[32], size_t hash_len)
{
    static const char *const names[] = {"CLIENT_RANDOM", "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                                        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                                        "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"};
    char hex[3];
    for (int l = 0; l < 5; l++) {
        uint8_t s[48];
        size_t n = l == 0 ? 48 : hash_len;
        tlb_secret(l, s, n);
        tb_str(kl, names[l]);
        tb_str(kl, " ");
        for (int i = 0; i < 32; i++) {
            snprintf(hex, sizeof(hex), "%02x", r[i]);
            tb_str(kl, hex);
        }
        tb_str(kl, " ");
        for (size_t i = 0; i < n; i++) {
            snprintf(hex, sizeof(hex), "%02x", s[i]);
            tb_str(kl, hex);
        }
        tb_str(kl, "\n");
    }
}

/* ---- messages ---- */

static inline void tlb_hs(struct tbuf *b, uint8_t type, const struct tbuf *body)
{
    uint8_t h[4] = {type, (uint8_t)(body->len >> 16), (uint8_t)(body->len >> 8),
                    (uint8_t)body->len};
    tb_put(b, h, 4);
    if (body->len)
        tb_put(b, body->p, body->len);
}

static inline void tlb_ext(struct tbuf *b, uint16_t type, const struct tbuf *data)
{
    tb_be(b, type, 2);
    tb_be(b, (uint32_t)data->len, 2);
    if (data->len)
        tb_put(b, data->p, data->len);
}

static inline void tlb_alpn_ext(struct tbuf *exts, const char *proto)
{
    struct tbuf e = {0};
    size_t n = strlen(proto);
    tb_be(&e, (uint32_t)(n + 1), 2);
    tb_be(&e, (uint32_t)n, 1);
    tb_put(&e, proto, n);
    tlb_ext(exts, 16, &e);
    tb_free(&e);
}

struct tlb_hello {
    const uint8_t *random;
    const uint8_t *sid;
    size_t sid_len;
    uint16_t suite; /* ServerHello */
    int tls13;
    const char *alpn; /* offered (ClientHello), chosen (TLS 1.2 ServerHello) */
    int early;        /* ClientHello: offer 0-RTT */
    int psk;          /* ClientHello: offer a PSK; ServerHello: select it */
    int hrr;          /* ServerHello: make it a HelloRetryRequest */
    uint16_t version; /* legacy_version override (0: 0x0303) */
};

static inline void tlb_client_hello(struct tbuf *msg, const struct tlb_hello *h)
{
    static const uint8_t suites[] = {0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0,
                                     0x2f, 0xc0, 0x30, 0xcc, 0xa8, 0xc0, 0x13};
    struct tbuf body = {0}, exts = {0}, e = {0};
    tb_be(&body, h->version ? h->version : 0x0303, 2);
    tb_put(&body, h->random, 32);
    tb_be(&body, (uint32_t)h->sid_len, 1);
    if (h->sid_len)
        tb_put(&body, h->sid, h->sid_len);
    tb_be(&body, sizeof(suites), 2);
    tb_put(&body, suites, sizeof(suites));
    tb_be(&body, 0x0100, 2); /* one compression method: null */
    if (h->alpn)
        tlb_alpn_ext(&exts, h->alpn);
    if (h->tls13) {
        tb_put(&e, "\x04\x03\x04\x03\x03", 5);
        tlb_ext(&exts, 43, &e);
        e.len = 0;
    }
    if (h->early)
        tlb_ext(&exts, 42, &e);
    if (h->psk) {
        /* identities<7..>: one identity (4 bytes + ticket age), binders<33..> */
        tb_put(&e, "\x00\x0a\x00\x04tkt1\x00\x00\x00\x00\x00\x21\x20", 15);
        for (int i = 0; i < 32; i++)
            tb_be(&e, 0x55, 1);
        tlb_ext(&exts, 41, &e);
    }
    tb_be(&body, (uint32_t)exts.len, 2);
    tb_put(&body, exts.p ? exts.p : (const uint8_t *)"", exts.len);
    tlb_hs(msg, TLB_HS_CLIENT_HELLO, &body);
    tb_free(&body);
    tb_free(&exts);
    tb_free(&e);
}

static inline void tlb_server_hello(struct tbuf *msg, const struct tlb_hello *h)
{
    struct tbuf body = {0}, exts = {0}, e = {0};
    tb_be(&body, h->version ? h->version : 0x0303, 2);
    tb_put(&body, h->hrr ? tlb_hrr_random : h->random, 32);
    tb_be(&body, (uint32_t)h->sid_len, 1);
    if (h->sid_len)
        tb_put(&body, h->sid, h->sid_len);
    tb_be(&body, h->suite, 2);
    tb_be(&body, 0, 1);
    if (h->tls13) {
        tb_be(&e, 0x0304, 2);
        tlb_ext(&exts, 43, &e);
        e.len = 0;
    } else if (h->alpn) {
        tlb_alpn_ext(&exts, h->alpn);
    }
    if (h->psk) {
        tb_be(&e, 0, 2);
        tlb_ext(&exts, 41, &e);
    }
    if (exts.len) {
        tb_be(&body, (uint32_t)exts.len, 2);
        tb_put(&body, exts.p, exts.len);
    }
    tlb_hs(msg, TLB_HS_SERVER_HELLO, &body);
    tb_free(&body);
    tb_free(&exts);
    tb_free(&e);
}

static inline void tlb_encrypted_extensions(struct tbuf *msg, const char *alpn, int early)
{
    struct tbuf body = {0}, exts = {0}, e = {0};
    if (alpn)
        tlb_alpn_ext(&exts, alpn);
    if (early)
        tlb_ext(&exts, 42, &e);
    tb_be(&body, (uint32_t)exts.len, 2);
    if (exts.len)
        tb_put(&body, exts.p, exts.len);
    tlb_hs(msg, TLB_HS_ENCRYPTED_EXT, &body);
    tb_free(&body);
    tb_free(&exts);
}

/* A message of type t with n filler bytes (Finished, Certificate, ...). */
static inline void tlb_filler(struct tbuf *msg, uint8_t t, size_t n)
{
    struct tbuf body = {0};
    for (size_t i = 0; i < n; i++)
        tb_be(&body, (uint32_t)(0x30 + i % 64), 1);
    tlb_hs(msg, t, &body);
    tb_free(&body);
}

/* Plaintext records of content type `type` (split at 2^14). */
static inline void tlb_plain(struct tbuf *out, uint8_t type, const struct tbuf *p)
{
    size_t off = 0;
    do {
        size_t n = p->len - off > 16384 ? 16384 : p->len - off;
        uint8_t h[5] = {type, 3, 3, (uint8_t)(n >> 8), (uint8_t)n};
        tb_put(out, h, 5);
        if (n)
            tb_put(out, p->p + off, n);
        off += n;
    } while (off < p->len);
}

static inline void tlb_ccs(struct tbuf *out)
{
    tb_put(out, "\x14\x03\x03\x00\x01\x01", 6);
}

/* ---- protection ---- */

struct tlb_suite {
    uint16_t id;
    const char *cipher;
    const char *md;
    size_t key_len, iv_len, hash_len;
    int explicit_nonce, tls13;
};

static inline const struct tlb_suite *tlb_suite(uint16_t id)
{
    static const struct tlb_suite s[] = {
        {0x1301, "AES-128-GCM", "SHA256", 16, 12, 32, 0, 1},
        {0x1302, "AES-256-GCM", "SHA384", 32, 12, 48, 0, 1},
        {0x1303, "ChaCha20-Poly1305", "SHA256", 32, 12, 32, 0, 1},
        {0xc02f, "AES-128-GCM", "SHA256", 16, 4, 32, 1, 0},
        {0xc030, "AES-256-GCM", "SHA384", 32, 4, 48, 1, 0},
        {0xcca8, "ChaCha20-Poly1305", "SHA256", 32, 12, 32, 0, 0},
    };
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        if (s[i].id == id)
            return &s[i];
    }
    return NULL;
}

struct tlb_seal {
    const struct tlb_suite *s;
    uint8_t key[32], iv[12], secret[48];
    uint64_t seq;
};

static inline void tlb_seal_keys(struct tlb_seal *w, const struct tlb_suite *s, const uint8_t *key,
                                 const uint8_t *iv)
{
    memset(w, 0, sizeof(*w));
    w->s = s;
    memcpy(w->key, key, s->key_len);
    memcpy(w->iv, iv, s->iv_len);
}

/* TLS 1.3: key and iv of a traffic secret (RFC 8446 §7.3). */
static inline int tlb_seal13(struct tlb_seal *w, const struct tlb_suite *s, const uint8_t *secret)
{
    uint8_t key[32], iv[12];
    if (cap_tls13_expand_label(s->md, secret, s->hash_len, "key", NULL, 0, key, s->key_len) ||
        cap_tls13_expand_label(s->md, secret, s->hash_len, "iv", NULL, 0, iv, 12))
        return -1;
    tlb_seal_keys(w, s, key, iv);
    memcpy(w->secret, secret, s->hash_len);
    return 0;
}

static inline int tlb_seal13_update(struct tlb_seal *w)
{
    uint8_t next[48];
    const struct tlb_suite *s = w->s;
    if (cap_tls13_expand_label(s->md, w->secret, s->hash_len, "traffic upd", NULL, 0, next,
                               s->hash_len))
        return -1;
    return tlb_seal13(w, s, next);
}

/* One protected record carrying p (type: the real content type), with pad zero bytes (1.3). */
static inline int tlb_seal_record(struct tlb_seal *w, struct tbuf *out, uint8_t type,
                                  const uint8_t *p, size_t n, size_t pad)
{
    const struct tlb_suite *s = w->s;
    uint8_t nonce[12], aad[13], tag[16], hdr[5];
    uint8_t *pt = malloc(n + 1 + pad + 1), *ct = malloc(n + 1 + pad + 1);
    size_t ptlen = n, explicit_len = s->explicit_nonce ? 8 : 0, frag;
    int outl = 0, fin = 0, ok = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, s->cipher, NULL);

    if (!pt || !ct || !ctx || !c)
        goto out;
    if (n)
        memcpy(pt, p, n);
    if (s->tls13) {
        pt[ptlen++] = type;
        memset(pt + ptlen, 0, pad);
        ptlen += pad;
    }
    memset(nonce, 0, 12);
    memcpy(nonce, w->iv, s->iv_len);
    if (s->explicit_nonce) {
        for (int i = 0; i < 8; i++)
            nonce[4 + i] = (uint8_t)(w->seq >> (56 - 8 * i));
    } else {
        for (int i = 0; i < 8; i++)
            nonce[11 - i] ^= (uint8_t)(w->seq >> (8 * i));
    }
    frag = explicit_len + ptlen + 16;
    hdr[0] = s->tls13 ? 23 : type;
    hdr[1] = 3;
    hdr[2] = 3;
    hdr[3] = (uint8_t)(frag >> 8);
    hdr[4] = (uint8_t)frag;
    if (s->tls13) {
        memcpy(aad, hdr, 5);
    } else {
        for (int i = 0; i < 8; i++)
            aad[i] = (uint8_t)(w->seq >> (56 - 8 * i));
        aad[8] = type;
        aad[9] = 3;
        aad[10] = 3;
        aad[11] = (uint8_t)(ptlen >> 8);
        aad[12] = (uint8_t)ptlen;
    }
    if (EVP_EncryptInit_ex(ctx, c, NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) != 1 ||
        EVP_EncryptInit_ex(ctx, NULL, NULL, w->key, nonce) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &outl, aad, s->tls13 ? 5 : 13) != 1 ||
        EVP_EncryptUpdate(ctx, ct, &outl, pt, (int)ptlen) != 1 ||
        EVP_EncryptFinal_ex(ctx, ct + outl, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag) != 1)
        goto out;
    tb_put(out, hdr, 5);
    if (s->explicit_nonce)
        tb_put(out, nonce + 4, 8);
    tb_put(out, ct, ptlen);
    tb_put(out, tag, 16);
    w->seq++;
    ok = 1;
out:
    EVP_CIPHER_free(c);
    EVP_CIPHER_CTX_free(ctx);
    free(pt);
    free(ct);
    return ok ? 0 : -1;
}

/* Protected records carrying any amount of data (split at 2^14). */
static inline int tlb_seal_data(struct tlb_seal *w, struct tbuf *out, uint8_t type,
                                const uint8_t *p, size_t n)
{
    size_t off = 0;
    do {
        size_t k = n - off > 16384 ? 16384 : n - off;
        if (tlb_seal_record(w, out, type, p + off, k, 0) != 0)
            return -1;
        off += k;
    } while (off < n);
    return 0;
}

/* ---- whole connections ---- */

struct tlb_conn {
    struct tbuf c2s, s2c; /* wire bytes so far */
    struct tlb_seal w[2]; /* application data protection, per direction (0 = client) */
    const struct tlb_suite *s;
    uint8_t cr[32], sr[32];
};

struct tlb_opts {
    uint16_t suite;
    uint8_t seed;       /* client random variant */
    const char *alpn;   /* offered and chosen */
    int hrr;            /* TLS 1.3: HelloRetryRequest first */
    int early_rejected; /* TLS 1.3: two 0-RTT records the server rejects */
    int psk;            /* TLS 1.3: resumed with a PSK */
    const uint8_t *sid; /* TLS 1.2: session id offered and echoed (resumption) */
    size_t sid_len;
    size_t cert_len; /* TLS 1.2 Certificate filler; 0: 20000 (spans two records) */
};

/* The handshake of a TLS 1.3 connection; application keys in c->w afterwards. */
static inline int tlb_conn13(struct tlb_conn *c, const struct tlb_opts *o)
{
    struct tlb_hello h;
    struct tbuf m = {0};
    struct tlb_seal hs;
    uint8_t sec[48];
    int rc = 0;

    memset(c, 0, sizeof(*c));
    c->s = tlb_suite(o->suite);
    tlb_client_random(c->cr, o->seed);
    tlb_server_random(c->sr);
    memset(&h, 0, sizeof(h));
    h.random = c->cr;
    h.tls13 = 1;
    h.alpn = o->alpn;
    h.early = o->early_rejected;
    h.psk = o->psk;
    h.suite = o->suite;
    tlb_client_hello(&m, &h);
    tlb_plain(&c->c2s, 22, &m);
    m.len = 0;
    if (o->early_rejected) {
        /* 0-RTT under a key the capture does not know (CLIENT_EARLY_TRAFFIC_SECRET). */
        struct tlb_seal e;
        uint8_t junk[48];
        memset(junk, 0x77, sizeof(junk));
        tlb_ccs(&c->c2s);
        rc |= tlb_seal13(&e, c->s, junk);
        rc |= tlb_seal_record(&e, &c->c2s, 23, (const uint8_t *)"early one", 9, 0);
        rc |= tlb_seal_record(&e, &c->c2s, 23, (const uint8_t *)"early two", 9, 0);
    }
    if (o->hrr) {
        struct tlb_hello r = h;
        r.hrr = 1;
        r.psk = 0;
        tlb_server_hello(&m, &r);
        tlb_plain(&c->s2c, 22, &m);
        m.len = 0;
        tlb_ccs(&c->s2c);
        h.early = 0;
        tlb_client_hello(&m, &h);
        if (!o->early_rejected)
            tlb_ccs(&c->c2s);
        tlb_plain(&c->c2s, 22, &m);
        m.len = 0;
    }
    h.random = c->sr;
    tlb_server_hello(&m, &h);
    tlb_plain(&c->s2c, 22, &m);
    m.len = 0;
    if (!o->hrr)
        tlb_ccs(&c->s2c);
    /* server flight under SERVER_HANDSHAKE_TRAFFIC_SECRET */
    tlb_secret(2, sec, c->s->hash_len);
    rc |= tlb_seal13(&hs, c->s, sec);
    tlb_encrypted_extensions(&m, o->alpn, 0);
    if (!o->psk)
        tlb_filler(&m, TLB_HS_CERTIFICATE, 300);
    rc |= tlb_seal_record(&hs, &c->s2c, 22, m.p, m.len, 0);
    m.len = 0;
    tlb_filler(&m, TLB_HS_FINISHED, c->s->hash_len);
    rc |= tlb_seal_record(&hs, &c->s2c, 22, m.p, m.len, 7);
    m.len = 0;
    /* client flight under CLIENT_HANDSHAKE_TRAFFIC_SECRET */
    if (!o->hrr && !o->early_rejected)
        tlb_ccs(&c->c2s);
    tlb_secret(1, sec, c->s->hash_len);
    rc |= tlb_seal13(&hs, c->s, sec);
    tlb_filler(&m, TLB_HS_FINISHED, c->s->hash_len);
    rc |= tlb_seal_record(&hs, &c->c2s, 22, m.p, m.len, 0);
    m.len = 0;
    tlb_secret(3, sec, c->s->hash_len);
    rc |= tlb_seal13(&c->w[0], c->s, sec);
    tlb_secret(4, sec, c->s->hash_len);
    rc |= tlb_seal13(&c->w[1], c->s, sec);
    /* a NewSessionTicket after the handshake, as servers send */
    tlb_filler(&m, TLB_HS_NEW_SESSION_TICKET, 60);
    rc |= tlb_seal_record(&c->w[1], &c->s2c, 22, m.p, m.len, 0);
    tb_free(&m);
    return rc ? -1 : 0;
}

/* TLS 1.3 KeyUpdate from direction dir; later data of that direction uses the next key. */
static inline int tlb_key_update(struct tlb_conn *c, int dir, int request)
{
    struct tbuf m = {0};
    uint8_t b = (uint8_t)request;
    struct tbuf body = {0};
    int rc;
    tb_put(&body, &b, 1);
    tlb_hs(&m, TLB_HS_KEY_UPDATE, &body);
    rc = tlb_seal_record(&c->w[dir], dir ? &c->s2c : &c->c2s, 22, m.p, m.len, 0);
    if (rc == 0)
        rc = tlb_seal13_update(&c->w[dir]);
    tb_free(&m);
    tb_free(&body);
    return rc;
}

/* The handshake of a TLS 1.2 connection (full, or abbreviated when o->sid is set). */
static inline int tlb_conn12(struct tlb_conn *c, const struct tlb_opts *o)
{
    struct tlb_hello h;
    struct tbuf m = {0};
    uint8_t master[48], seed[64], kb[2 * 32 + 2 * 12];
    int rc = 0;
    const struct tlb_suite *s;

    memset(c, 0, sizeof(*c));
    s = c->s = tlb_suite(o->suite);
    tlb_client_random(c->cr, o->seed);
    tlb_server_random(c->sr);
    memset(&h, 0, sizeof(h));
    h.random = c->cr;
    h.alpn = o->alpn;
    h.sid = o->sid;
    h.sid_len = o->sid_len;
    h.suite = o->suite;
    tlb_client_hello(&m, &h);
    tlb_plain(&c->c2s, 22, &m);
    m.len = 0;
    h.random = c->sr;
    tlb_server_hello(&m, &h);
    if (!o->sid) {
        /* spans records by default: skipped without being buffered */
        tlb_filler(&m, TLB_HS_CERTIFICATE, o->cert_len ? o->cert_len : 20000);
        tlb_filler(&m, TLB_HS_SERVER_HELLO_DONE, 0);
    }
    tlb_plain(&c->s2c, 22, &m);
    m.len = 0;
    /* RFC 5246 §6.3 key block: client key, server key, client IV, server IV. */
    tlb_secret(0, master, 48);
    memcpy(seed, c->sr, 32);
    memcpy(seed + 32, c->cr, 32);
    if (cap_tls12_prf(s->md, master, 48, "key expansion", seed, 64, kb,
                      2 * s->key_len + 2 * s->iv_len))
        return -1;
    tlb_seal_keys(&c->w[0], s, kb, kb + 2 * s->key_len);
    tlb_seal_keys(&c->w[1], s, kb + s->key_len, kb + 2 * s->key_len + s->iv_len);
    tlb_filler(&m, TLB_HS_FINISHED, 12);
    if (!o->sid) {
        struct tbuf cke = {0};
        tlb_filler(&cke, TLB_HS_CLIENT_KEY_EXCHANGE, 66);
        tlb_plain(&c->c2s, 22, &cke);
        tb_free(&cke);
        tlb_ccs(&c->c2s);
        rc |= tlb_seal_record(&c->w[0], &c->c2s, 22, m.p, m.len, 0);
        tlb_ccs(&c->s2c);
        rc |= tlb_seal_record(&c->w[1], &c->s2c, 22, m.p, m.len, 0);
    } else {
        tlb_ccs(&c->s2c);
        rc |= tlb_seal_record(&c->w[1], &c->s2c, 22, m.p, m.len, 0);
        tlb_ccs(&c->c2s);
        rc |= tlb_seal_record(&c->w[0], &c->c2s, 22, m.p, m.len, 0);
    }
    tb_free(&m);
    return rc ? -1 : 0;
}

static inline int tlb_app(struct tlb_conn *c, int dir, const void *p, size_t n)
{
    return tlb_seal_data(&c->w[dir], dir ? &c->s2c : &c->c2s, 23, p, n);
}

static inline void tlb_conn_free(struct tlb_conn *c)
{
    tb_free(&c->c2s);
    tb_free(&c->s2c);
}

#endif
