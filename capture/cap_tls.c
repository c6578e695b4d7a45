/*
 * Passive TLS decryption: records in, application data out.
 *
 * For each direction, bytes are cut into records (RFC 8446 §5.1, RFC 5246
 * §6.2), each record is decrypted when its direction is keyed, and handshake
 * messages are reassembled across records (RFC 8446 §4, RFC 5246 §7.4) so the
 * few that matter can be read: ClientHello (client_random, offers),
 * ServerHello (version, suite, resumption, HelloRetryRequest),
 * EncryptedExtensions (ALPN in TLS 1.3), Finished (TLS 1.3 key change) and
 * KeyUpdate. Certificates and the rest are skipped without being buffered.
 *
 * Keys come from the key log's secrets, never from the key exchange:
 *   TLS 1.3  *_HANDSHAKE_TRAFFIC_SECRET then *_TRAFFIC_SECRET_0, each turned
 *            into key and IV by HKDF-Expand-Label (RFC 8446 §7.3); KeyUpdate
 *            derives the next secret of its direction (§7.2).
 *   TLS 1.2  the master secret (CLIENT_RANDOM line) expanded by the PRF into
 *            the key block (RFC 5246 §6.3); keys switch at ChangeCipherSpec.
 *            Extended master secret and resumption change how the master
 *            secret is made, not how it is used, so they need nothing here.
 * Only AEAD suites are decrypted (AES-GCM RFC 5288, ChaCha20-Poly1305 RFC
 * 7905, the TLS 1.3 suites of RFC 8446 §B.4); every primitive is OpenSSL EVP.
 *
 * The two directions depend on each other: the client's encrypted records
 * cannot be read before the server's ServerHello (and, when 0-RTT was
 * offered, its EncryptedExtensions) is known, and a live capture may see a
 * handshake before the client has written its secrets to the key log.
 * Records that cannot be processed yet wait in a per-direction queue
 * (capped at CAP_TLS_MAX_PENDING per connection) and are retried whenever
 * the connection makes progress, and one last time at its end.
 *
 * A record that fails authentication ends decryption for the connection:
 * guessing past it could only hand garbage to HTTP/2.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "h2replay/error.h"
#include "cap_session.h"
#include "cap_tls.h"

/* RFC 8446 §5.1 / RFC 5246 §6.2.1 content types. */
#define CT_CHANGE_CIPHER_SPEC 20
#define CT_ALERT 21
#define CT_HANDSHAKE 22
#define CT_APPLICATION_DATA 23
#define CT_HEARTBEAT 24 /* RFC 6520 */

/* RFC 8446 §4 / RFC 5246 §7.4 handshake types we read. */
#define HS_HELLO_REQUEST 0
#define HS_CLIENT_HELLO 1
#define HS_SERVER_HELLO 2
#define HS_END_OF_EARLY_DATA 5
#define HS_ENCRYPTED_EXTENSIONS 8
#define HS_FINISHED 20
#define HS_KEY_UPDATE 24

/* Extension types (RFC 8446 §4.2, RFC 7301). */
#define EXT_ALPN 16
#define EXT_PRE_SHARED_KEY 41
#define EXT_EARLY_DATA 42
#define EXT_SUPPORTED_VERSIONS 43

#define TLS12 0x0303u
#define TLS13 0x0304u

#define REC_HDR 5
#define TAG_LEN 16
#define NONCE_LEN 12
#define MAX_KEY 32
#define QUEUE_ENTRY_HDR (16 + REC_HDR) /* capture time, arrival number, record header */
#define MAX_EARLY_SKIP 256u /* rejected 0-RTT records skipped before a bad tag is believed */

/* Internal results: done (check t->failed), or wait for a secret / the peer. */
#define R_DONE 0
#define R_BLOCKED 1

/* RFC 8446 §4.1.3: the ServerHello.random of a HelloRetryRequest, SHA-256("HelloRetryRequest"). */
static const uint8_t hrr_random[32] = {
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c};

struct suite {
    uint16_t id;
    const char *cipher; /* EVP name */
    const char *md;     /* HKDF / PRF digest */
    size_t key_len;
    size_t iv_len;      /* TLS 1.3 and ChaCha20: 12; TLS 1.2 GCM: the 4-byte salt */
    int explicit_nonce; /* TLS 1.2 GCM: 8 bytes of nonce lead each record (RFC 5288 §3) */
    int tls13;
};

static const struct suite suites[] = {
    /* RFC 8446 §B.4 */
    {0x1301, "AES-128-GCM", "SHA256", 16, 12, 0, 1},
    {0x1302, "AES-256-GCM", "SHA384", 32, 12, 0, 1},
    {0x1303, "ChaCha20-Poly1305", "SHA256", 32, 12, 0, 1},
    /* RFC 5288 §3 / RFC 5289 §3.2: AES-GCM; the key exchange does not matter with the master
     * secret in hand, so RSA, DHE and ECDHE variants all decrypt the same way. */
    {0x009c, "AES-128-GCM", "SHA256", 16, 4, 1, 0}, /* RSA_WITH_AES_128_GCM_SHA256 */
    {0x009d, "AES-256-GCM", "SHA384", 32, 4, 1, 0}, /* RSA_WITH_AES_256_GCM_SHA384 */
    {0x009e, "AES-128-GCM", "SHA256", 16, 4, 1, 0}, /* DHE_RSA_WITH_AES_128_GCM_SHA256 */
    {0x009f, "AES-256-GCM", "SHA384", 32, 4, 1, 0}, /* DHE_RSA_WITH_AES_256_GCM_SHA384 */
    {0xc02b, "AES-128-GCM", "SHA256", 16, 4, 1, 0}, /* ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 */
    {0xc02c, "AES-256-GCM", "SHA384", 32, 4, 1, 0}, /* ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 */
    {0xc02f, "AES-128-GCM", "SHA256", 16, 4, 1, 0}, /* ECDHE_RSA_WITH_AES_128_GCM_SHA256 */
    {0xc030, "AES-256-GCM", "SHA384", 32, 4, 1, 0}, /* ECDHE_RSA_WITH_AES_256_GCM_SHA384 */
    /* RFC 7905 §2 */
    {0xcca8, "ChaCha20-Poly1305", "SHA256", 32, 12, 0, 0}, /* ECDHE_RSA_WITH_CHACHA20_POLY1305 */
    {0xcca9, "ChaCha20-Poly1305", "SHA256", 32, 12, 0, 0}, /* ECDHE_ECDSA_WITH_CHACHA20_... */
    {0xccaa, "ChaCha20-Poly1305", "SHA256", 32, 12, 0, 0}, /* DHE_RSA_WITH_CHACHA20_POLY1305 */
};

enum key_phase {
    PH_PLAIN,    /* records are not protected */
    PH_WAIT_KEY, /* the next protected record needs the secret `want` */
    PH_KEYED     /* decrypting */
};

struct aead {
    EVP_CIPHER_CTX *ctx;
    uint8_t iv[NONCE_LEN];
    uint64_t seq; /* RFC 8446 §5.3 / RFC 5246 §6.1: per direction, reset on every key change */
};

struct tls_dir {
    /* record reassembly */
    uint8_t hdr[REC_HDR];
    size_t hdr_got;
    uint8_t *rec; /* CAP_TLS_MAX_CIPHERTEXT bytes, allocated on first use */
    size_t rec_need, rec_got;
    /* handshake message reassembly */
    uint8_t hs_hdr[4];
    size_t hs_hdr_got;
    uint32_t hs_len;
    uint8_t *hs_body;
    size_t hs_got, hs_cap;
    int hs_skip; /* the current message is not one we read */
    /* records waiting: [ts 8][header 5][fragment] ... */
    uint8_t *q;
    size_t q_off, q_len, q_cap;
    int blocked_on_key; /* what the head of the queue waits for */
    /* protection */
    enum key_phase phase;
    enum cap_keylog_label want;
    struct aead aead;
    uint8_t secret[CAP_KEYLOG_MAX_SECRET]; /* TLS 1.3 current traffic secret */
    size_t secret_len;
    int finished; /* TLS 1.3: this side's handshake Finished seen */
};

struct cap_tls {
    struct cap_tls_callbacks cb;
    void *ud;
    struct cap_tls_stats *st;
    struct tls_dir d[2];

    int ch_seen;  /* first ClientHello parsed */
    int ch2_seen; /* ClientHello after a HelloRetryRequest parsed */
    int hrr_seen;
    int sh_seen; /* the real ServerHello parsed */
    int ee_seen;
    int offered_early;  /* ClientHello carried early_data: 0-RTT records may follow it */
    int early_skipping; /* client records that fail with the handshake key are rejected 0-RTT */
    unsigned early_skipped;
    uint8_t client_random[32];
    uint8_t server_random[32];
    uint8_t session_id[32];
    size_t session_id_len;
    unsigned version;
    const struct suite *suite;
    uint8_t key_block[2 * MAX_KEY + 2 * NONCE_LEN]; /* TLS 1.2 */
    int have_key_block;

    int failed;
    int finishing; /* cap_tls_finish: lookups are final */
    int decrypted_any;
    int draining;
    uint64_t next_seq; /* arrival number of the next complete record, both directions */
    char reason[48];
};

/* ---- bounded cursor over wire bytes ---- */

struct cur {
    const uint8_t *p;
    size_t len;
};

static int get_u8(struct cur *c, uint8_t *v)
{
    if (c->len < 1)
        return H2R_ERR_TRUNCATED;
    *v = c->p[0];
    c->p++;
    c->len--;
    return 0;
}

static int get_u16(struct cur *c, uint16_t *v)
{
    if (c->len < 2)
        return H2R_ERR_TRUNCATED;
    *v = (uint16_t)(c->p[0] << 8 | c->p[1]);
    c->p += 2;
    c->len -= 2;
    return 0;
}

static int get_bytes(struct cur *c, size_t n, const uint8_t **out)
{
    if (c->len < n)
        return H2R_ERR_TRUNCATED;
    *out = c->p;
    c->p += n;
    c->len -= n;
    return 0;
}

/* A length-prefixed vector (RFC 8446 §3.4): 1 or 2 length bytes, then that many bytes. */
static int get_vec(struct cur *c, int len_bytes, struct cur *out)
{
    uint8_t l8 = 0;
    uint16_t l16 = 0;
    int rc = len_bytes == 1 ? get_u8(c, &l8) : get_u16(c, &l16);
    if (rc != 0)
        return rc;
    out->len = len_bytes == 1 ? l8 : l16;
    return get_bytes(c, out->len, &out->p);
}

/* ---- primitives (OpenSSL EVP) ---- */

int cap_tls13_expand_label(const char *digest, const uint8_t *secret, size_t secret_len,
                           const char *label, const uint8_t *context, size_t context_len,
                           uint8_t *out, size_t out_len)
{
    /* RFC 8446 §7.1: struct { uint16 length; opaque label<7..255>; opaque context<0..255>; } */
    uint8_t info[2 + 1 + 255 + 1 + 255];
    size_t label_len = strlen(label), n = 0;
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *kctx = NULL;
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY, rc = H2R_ERR_UNSUPPORTED;
    OSSL_PARAM params[5];

    if (label_len + 6 > 255 || context_len > 255 || out_len > 0xffff || out_len == 0)
        return H2R_ERR_ARG;
    info[n++] = (uint8_t)(out_len >> 8);
    info[n++] = (uint8_t)out_len;
    info[n++] = (uint8_t)(label_len + 6);
    /* HkdfLabel is bytes with length prefixes: no terminators wanted. */
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result) */
    memcpy(info + n, "tls13 ", 6);
    n += 6;
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result) */
    memcpy(info + n, label, label_len);
    n += label_len;
    info[n++] = (uint8_t)context_len;
    if (context_len)
        memcpy(info + n, context, context_len);
    n += context_len;

    kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (!kdf)
        goto out;
    kctx = EVP_KDF_CTX_new(kdf);
    if (!kctx)
        goto out;
    params[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest, 0);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n);
    params[4] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(kctx, out, out_len, params) == 1)
        rc = 0;
out:
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    OPENSSL_cleanse(info, sizeof(info));
    return rc;
}

int cap_tls12_prf(const char *digest, const uint8_t *secret, size_t secret_len, const char *label,
                  const uint8_t *seed, size_t seed_len, uint8_t *out, size_t out_len)
{
    /* RFC 5246 §5: PRF(secret, label, seed) = P_<hash>(secret, label + seed). */
    uint8_t full[64 + 2 * 32];
    size_t label_len = strlen(label);
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *kctx = NULL;
    OSSL_PARAM params[4];
    int rc = H2R_ERR_UNSUPPORTED;

    if (label_len + seed_len > sizeof(full) || out_len == 0)
        return H2R_ERR_ARG;
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result): a byte string, no terminator */
    memcpy(full, label, label_len);
    memcpy(full + label_len, seed, seed_len);
    kdf = EVP_KDF_fetch(NULL, "TLS1-PRF", NULL);
    if (!kdf)
        goto out;
    kctx = EVP_KDF_CTX_new(kdf);
    if (!kctx)
        goto out;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest, 0);
    params[1] =
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, (void *)secret, secret_len);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, full, label_len + seed_len);
    params[3] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(kctx, out, out_len, params) == 1)
        rc = 0;
out:
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return rc;
}

static const struct suite *find_suite(uint16_t id)
{
    for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
        if (suites[i].id == id)
            return &suites[i];
    }
    return NULL;
}

static size_t md_len(const struct suite *s)
{
    return strcmp(s->md, "SHA384") == 0 ? 48 : 32;
}

/* (Re)keys an AEAD context; the sequence number starts again at 0. */
static int aead_init(struct aead *a, const struct suite *s, const uint8_t *key, const uint8_t *iv)
{
    EVP_CIPHER *c = NULL;
    int rc = H2R_ERR_UNSUPPORTED;

    if (!a->ctx) {
        a->ctx = EVP_CIPHER_CTX_new();
        if (!a->ctx)
            return H2R_ERR_NOMEM;
    }
    c = EVP_CIPHER_fetch(NULL, s->cipher, NULL);
    if (!c)
        goto out;
    if (EVP_DecryptInit_ex(a->ctx, c, NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(a->ctx, NULL, NULL, key, NULL) != 1)
        goto out;
    memset(a->iv, 0, sizeof(a->iv));
    memcpy(a->iv, iv, s->iv_len);
    a->seq = 0;
    rc = 0;
out:
    EVP_CIPHER_free(c);
    return rc;
}

/*
 * Opens one record in place. hdr is its 5-byte header, frag/len its fragment.
 * Returns 0 with the plaintext in frag[*off .. *off + *plain_len), H2R_ERR_PROTO on a bad tag,
 * H2R_ERR_FORMAT when the fragment cannot even hold the nonce and tag.
 */
static int aead_open(struct aead *a, const struct suite *s, const uint8_t *hdr, uint8_t *frag,
                     size_t len, size_t *off, size_t *plain_len)
{
    uint8_t nonce[NONCE_LEN], aad[13], tag[TAG_LEN];
    size_t ct_off = 0, ct_len, aad_len;
    int outl = 0, finl = 0;

    memcpy(nonce, a->iv, NONCE_LEN);
    if (s->explicit_nonce) {
        /* RFC 5288 §3: nonce = salt(4) || explicit_nonce(8), the first 8 bytes of the record. */
        if (len < 8 + TAG_LEN)
            return H2R_ERR_FORMAT;
        memcpy(nonce + 4, frag, 8);
        ct_off = 8;
    } else {
        /* RFC 8446 §5.3 / RFC 7905 §2: nonce = iv XOR the 64-bit sequence number, left-padded. */
        if (len < TAG_LEN + (s->tls13 ? 1u : 0u))
            return H2R_ERR_FORMAT;
        for (int i = 0; i < 8; i++)
            nonce[NONCE_LEN - 1 - i] ^= (uint8_t)(a->seq >> (8 * i));
    }
    ct_len = len - ct_off - TAG_LEN;
    if (s->tls13) {
        /* RFC 8446 §5.2: additional_data = the record header as sent. */
        memcpy(aad, hdr, REC_HDR);
        aad_len = REC_HDR;
    } else {
        /* RFC 5246 §6.2.3.3: seq_num || type || version || length of the plaintext. */
        for (int i = 0; i < 8; i++)
            aad[i] = (uint8_t)(a->seq >> (56 - 8 * i));
        aad[8] = hdr[0];
        aad[9] = hdr[1];
        aad[10] = hdr[2];
        aad[11] = (uint8_t)(ct_len >> 8);
        aad[12] = (uint8_t)ct_len;
        aad_len = 13;
    }
    memcpy(tag, frag + len - TAG_LEN, TAG_LEN);
    if (EVP_DecryptInit_ex(a->ctx, NULL, NULL, NULL, nonce) != 1 ||
        EVP_DecryptUpdate(a->ctx, NULL, &outl, aad, (int)aad_len) != 1 ||
        EVP_DecryptUpdate(a->ctx, frag + ct_off, &outl, frag + ct_off, (int)ct_len) != 1 ||
        EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) != 1 ||
        EVP_DecryptFinal_ex(a->ctx, frag + ct_off + outl, &finl) != 1)
        return H2R_ERR_PROTO;
    *off = ct_off;
    *plain_len = ct_len;
    return 0;
}

/* RFC 8446 §5.4: the real content type is the last non-zero byte; zeros after it are padding. */
static int strip_inner(const uint8_t *p, size_t *len, uint8_t *type)
{
    size_t n = *len;
    while (n > 0 && p[n - 1] == 0)
        n--;
    if (n == 0)
        return H2R_ERR_FORMAT;
    *type = p[n - 1];
    *len = n - 1;
    return 0;
}

int cap_tls_record_open(uint16_t suite, const uint8_t *key, const uint8_t *iv, uint64_t seq,
                        uint8_t *record, size_t len, const uint8_t **plain, size_t *plain_len,
                        uint8_t *content_type)
{
    const struct suite *s = find_suite(suite);
    struct aead a;
    size_t off = 0, n = 0, frag_len;
    int rc;

    if (!s)
        return H2R_ERR_UNSUPPORTED;
    if (len < REC_HDR)
        return H2R_ERR_FORMAT;
    frag_len = (size_t)record[3] << 8 | record[4];
    if (frag_len != len - REC_HDR)
        return H2R_ERR_FORMAT;
    memset(&a, 0, sizeof(a));
    rc = aead_init(&a, s, key, iv);
    if (rc != 0)
        goto out;
    a.seq = seq;
    rc = aead_open(&a, s, record, record + REC_HDR, frag_len, &off, &n);
    if (rc != 0)
        goto out;
    *content_type = record[0];
    if (s->tls13) {
        rc = strip_inner(record + REC_HDR + off, &n, content_type);
        if (rc != 0)
            goto out;
    }
    *plain = record + REC_HDR + off;
    *plain_len = n;
out:
    EVP_CIPHER_CTX_free(a.ctx);
    return rc;
}

/* ---- failures ---- */

static int fail(struct cap_tls *t, const char *reason, uint64_t *counter)
{
    if (t->failed)
        return 0;
    t->failed = 1;
    if (counter)
        (*counter)++;
    snprintf(t->reason, sizeof(t->reason), "%s", reason);
    return t->cb.on_fail ? t->cb.on_fail(t->ud, t->reason) : 0;
}

static int fail_malformed(struct cap_tls *t)
{
    return fail(t, "tls_malformed", &t->st->malformed);
}

static int fail_cipher(struct cap_tls *t, uint16_t id)
{
    char r[40];
    snprintf(r, sizeof(r), "tls_unsupported_cipher:0x%04x", id);
    return fail(t, r, &t->st->unsupported_cipher);
}

/* ---- secrets and keys ---- */

/* Fetches a secret for this connection: R_DONE with it, R_BLOCKED, or R_DONE after a failure. */
static int get_secret(struct cap_tls *t, enum cap_keylog_label label,
                      uint8_t out[CAP_KEYLOG_MAX_SECRET], size_t *len)
{
    int rc = t->cb.secret ? t->cb.secret(t->ud, t->client_random, label, out, len, t->finishing)
                          : CAP_TLS_KEY_MISSING;
    if (rc < 0)
        return rc;
    if (rc == CAP_TLS_KEY_PENDING && !t->finishing)
        return R_BLOCKED;
    if (rc != CAP_TLS_KEY_FOUND)
        return fail(t, "tls_no_key", &t->st->no_key);
    return R_DONE;
}

/* TLS 1.3: key and IV of a traffic secret (RFC 8446 §7.3). */
static int install_secret13(struct cap_tls *t, struct tls_dir *d, const uint8_t *secret, size_t len)
{
    uint8_t key[MAX_KEY], iv[NONCE_LEN];
    int rc;

    if (len != md_len(t->suite))
        return fail(t, "tls_no_key", &t->st->no_key); /* a secret for another suite */
    rc = cap_tls13_expand_label(t->suite->md, secret, len, "key", NULL, 0, key, t->suite->key_len);
    if (rc == 0)
        rc = cap_tls13_expand_label(t->suite->md, secret, len, "iv", NULL, 0, iv, NONCE_LEN);
    if (rc == 0)
        rc = aead_init(&d->aead, t->suite, key, iv);
    OPENSSL_cleanse(key, sizeof(key));
    if (rc == H2R_ERR_NOMEM)
        return rc;
    if (rc != 0)
        return fail_cipher(t, t->suite->id); /* OpenSSL without this cipher */
    if (secret != d->secret)
        memcpy(d->secret, secret, len);
    d->secret_len = len;
    d->phase = PH_KEYED;
    return R_DONE;
}

/* TLS 1.2: the key block from the master secret (RFC 5246 §6.3), once per connection. */
static int key_block12(struct cap_tls *t)
{
    uint8_t master[CAP_KEYLOG_MAX_SECRET], seed[64];
    size_t len = 0;
    int rc;

    if (t->have_key_block)
        return R_DONE;
    rc = get_secret(t, CAP_KL_MASTER, master, &len);
    if (rc != R_DONE || t->failed)
        return rc;
    /* seed = server_random + client_random for "key expansion" (§6.3). */
    memcpy(seed, t->server_random, 32);
    memcpy(seed + 32, t->client_random, 32);
    rc = cap_tls12_prf(t->suite->md, master, len, "key expansion", seed, sizeof(seed), t->key_block,
                       2 * t->suite->key_len + 2 * t->suite->iv_len);
    OPENSSL_cleanse(master, sizeof(master));
    if (rc != 0)
        return fail_cipher(t, t->suite->id);
    t->have_key_block = 1;
    return R_DONE;
}

/* TLS 1.2 ChangeCipherSpec from direction dir: its later records use the new keys. */
static int activate12(struct cap_tls *t, int dir)
{
    const struct suite *s = t->suite;
    /* AEAD suites: client_write_key, server_write_key, client_write_IV, server_write_IV. */
    const uint8_t *key = t->key_block + (dir == CAP_DIR_C2S ? 0 : s->key_len);
    const uint8_t *iv = t->key_block + 2 * s->key_len + (dir == CAP_DIR_C2S ? 0 : s->iv_len);
    int rc = key_block12(t);

    if (rc != R_DONE || t->failed)
        return rc;
    rc = aead_init(&t->d[dir].aead, s, key, iv);
    if (rc == H2R_ERR_NOMEM)
        return rc;
    if (rc != 0)
        return fail_cipher(t, s->id);
    t->d[dir].phase = PH_KEYED;
    return R_DONE;
}

/* TLS 1.3: keys for the secret this direction waits for. */
static int activate13(struct cap_tls *t, int dir)
{
    struct tls_dir *d = &t->d[dir];
    uint8_t secret[CAP_KEYLOG_MAX_SECRET];
    size_t len = 0;
    int rc = get_secret(t, d->want, secret, &len);

    if (rc == R_DONE && !t->failed)
        rc = install_secret13(t, d, secret, len);
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc;
}

/* ---- handshake messages ---- */

/* RFC 7301 §3.1: ProtocolNameList with exactly one name in a server's answer. */
static int parse_alpn_answer(struct cap_tls *t, struct cur ext)
{
    struct cur list, name;
    char proto[256];

    if (get_vec(&ext, 2, &list) != 0 || ext.len != 0 || get_vec(&list, 1, &name) != 0 ||
        list.len != 0 || name.len == 0)
        return fail_malformed(t);
    for (size_t i = 0; i < name.len; i++) {
        uint8_t c = name.p[i];
        proto[i] = (char)(c > 0x20 && c < 0x7f ? c : '?');
    }
    proto[name.len] = '\0';
    return t->cb.on_alpn ? t->cb.on_alpn(t->ud, proto) : 0;
}

/* RFC 8446 §4.1.2 / RFC 5246 §7.4.1.2. */
static int client_hello(struct cap_tls *t, const uint8_t *body, size_t len)
{
    struct cur c = {body, len}, sid, suites_v, comp, exts, ext;
    const uint8_t *random;
    uint16_t legacy_version, type;
    int second = t->ch_seen;

    if (get_u16(&c, &legacy_version) != 0 || get_bytes(&c, 32, &random) != 0 ||
        get_vec(&c, 1, &sid) != 0 || sid.len > 32 || get_vec(&c, 2, &suites_v) != 0 ||
        suites_v.len < 2 || suites_v.len % 2 != 0 || get_vec(&c, 1, &comp) != 0 || comp.len < 1)
        return fail_malformed(t);
    if ((legacy_version >> 8) != 3)
        return fail(t, "tls_unsupported_version", &t->st->unsupported_version);
    if (second) {
        /* RFC 8446 §4.1.2: the retried ClientHello keeps its random; early data is off. */
        if (memcmp(random, t->client_random, 32) != 0)
            return fail_malformed(t);
        t->offered_early = 0;
        t->ch2_seen = 1;
        return R_DONE;
    }
    memcpy(t->client_random, random, 32);
    memcpy(t->session_id, sid.p, sid.len);
    t->session_id_len = sid.len;
    t->ch_seen = 1;
    if (c.len == 0)
        return R_DONE; /* RFC 5246 §7.4.1.2: extensions are optional before TLS 1.3 */
    if (get_vec(&c, 2, &exts) != 0 || c.len != 0)
        return fail_malformed(t);
    while (exts.len > 0) {
        if (get_u16(&exts, &type) != 0 || get_vec(&exts, 2, &ext) != 0)
            return fail_malformed(t);
        if (type == EXT_EARLY_DATA)
            t->offered_early = 1; /* §4.2.10: 0-RTT records may follow the ClientHello */
    }
    return R_DONE;
}

/* RFC 8446 §4.1.3 / RFC 5246 §7.4.1.3. rec_end: the message ended its record. */
static int server_hello(struct cap_tls *t, const uint8_t *body, size_t len, int rec_end)
{
    struct cur c = {body, len}, sid, exts, ext, alpn = {NULL, 0};
    const uint8_t *random;
    uint16_t legacy_version, suite_id, type, selected = 0;
    uint8_t comp;
    int have_alpn = 0, psk = 0, rc;

    if (get_u16(&c, &legacy_version) != 0 || get_bytes(&c, 32, &random) != 0 ||
        get_vec(&c, 1, &sid) != 0 || sid.len > 32 || get_u16(&c, &suite_id) != 0 ||
        get_u8(&c, &comp) != 0)
        return fail_malformed(t);
    if (c.len > 0) {
        if (get_vec(&c, 2, &exts) != 0 || c.len != 0)
            return fail_malformed(t);
        while (exts.len > 0) {
            if (get_u16(&exts, &type) != 0 || get_vec(&exts, 2, &ext) != 0)
                return fail_malformed(t);
            if (type == EXT_SUPPORTED_VERSIONS) {
                /* §4.2.1: the ServerHello form holds the one selected version. */
                if (get_u16(&ext, &selected) != 0 || ext.len != 0)
                    return fail_malformed(t);
            } else if (type == EXT_ALPN) {
                alpn = ext;
                have_alpn = 1;
            } else if (type == EXT_PRE_SHARED_KEY) {
                psk = 1; /* §4.2.11: the server accepted a PSK: a resumed session */
            }
        }
    }
    if (memcmp(random, hrr_random, 32) == 0) {
        /* §4.1.4: a HelloRetryRequest; the client answers with a second ClientHello. */
        if (t->hrr_seen || selected != TLS13)
            return fail_malformed(t);
        t->hrr_seen = 1;
        t->version = TLS13;
        t->st->hrr++;
        return R_DONE;
    }
    if (t->sh_seen)
        return fail_malformed(t);
    t->sh_seen = 1;
    memcpy(t->server_random, random, 32);
    if (selected == 0)
        selected = legacy_version; /* no supported_versions: RFC 5246 negotiation */
    if (selected != TLS12 && selected != TLS13)
        return fail(t, "tls_unsupported_version", &t->st->unsupported_version);
    if (t->hrr_seen && selected != TLS13)
        return fail_malformed(t);
    t->version = selected;
    t->suite = find_suite(suite_id);
    if (!t->suite || t->suite->tls13 != (selected == TLS13))
        return fail_cipher(t, suite_id);
    if (comp != 0)
        return fail(t, "tls_unsupported", &t->st->unsupported); /* RFC 3749 compression */

    if (selected == TLS12) {
        t->st->v12_flows++;
        /* RFC 5246 §7.4.1.3 / RFC 5077 §3.4: an echoed non-empty session id resumes. */
        if (sid.len > 0 && sid.len == t->session_id_len &&
            memcmp(sid.p, t->session_id, sid.len) == 0)
            t->st->resumed++;
        if (have_alpn) {
            rc = parse_alpn_answer(t, alpn);
            if (rc != 0 || t->failed)
                return rc;
        }
        return R_DONE;
    }
    t->st->v13_flows++;
    if (psk)
        t->st->resumed++;
    /* §5.1: the message before a key change must end its record. */
    if (!rec_end)
        return fail_malformed(t);
    t->d[CAP_DIR_S2C].phase = PH_WAIT_KEY;
    t->d[CAP_DIR_S2C].want = CAP_KL_SERVER_HS;
    t->d[CAP_DIR_C2S].phase = PH_WAIT_KEY;
    t->d[CAP_DIR_C2S].want = CAP_KL_CLIENT_HS;
    /* §4.2.10: without an accepted PSK (or after a retry) 0-RTT data is rejected. */
    if (t->offered_early && (!psk || t->hrr_seen))
        t->early_skipping = 1;
    return R_DONE;
}

/* RFC 8446 §4.3.1. */
static int encrypted_extensions(struct cap_tls *t, const uint8_t *body, size_t len)
{
    struct cur c = {body, len}, exts, ext;
    uint16_t type;
    int rc;

    if (get_vec(&c, 2, &exts) != 0 || c.len != 0)
        return fail_malformed(t);
    t->ee_seen = 1;
    while (exts.len > 0) {
        if (get_u16(&exts, &type) != 0 || get_vec(&exts, 2, &ext) != 0)
            return fail_malformed(t);
        if (type == EXT_ALPN) {
            rc = parse_alpn_answer(t, ext);
            if (rc != 0 || t->failed)
                return rc;
        } else if (type == EXT_EARLY_DATA) {
            /* 0-RTT accepted: its records use CLIENT_EARLY_TRAFFIC_SECRET; not supported. */
            return fail(t, "tls_unsupported", &t->st->unsupported);
        }
    }
    if (t->offered_early)
        t->early_skipping = 1; /* offered, not accepted: the server skips those records */
    return R_DONE;
}

/* One complete handshake message of direction dir. */
static int handshake_message(struct cap_tls *t, int dir, uint8_t type, const uint8_t *body,
                             size_t len, int rec_end)
{
    struct tls_dir *d = &t->d[dir];
    uint8_t next[CAP_KEYLOG_MAX_SECRET];
    int rc;

    switch (type) {
    case HS_CLIENT_HELLO:
        if (dir != CAP_DIR_C2S)
            return fail_malformed(t);
        if (t->ch_seen && !(t->hrr_seen && !t->ch2_seen))
            return fail(t, "tls_unsupported", &t->st->unsupported); /* renegotiation */
        return client_hello(t, body, len);
    case HS_SERVER_HELLO:
        if (dir != CAP_DIR_S2C)
            return fail_malformed(t);
        return server_hello(t, body, len, rec_end);
    case HS_ENCRYPTED_EXTENSIONS:
        if (dir != CAP_DIR_S2C || t->version != TLS13 || d->phase != PH_KEYED || t->ee_seen)
            return fail_malformed(t);
        return encrypted_extensions(t, body, len);
    case HS_FINISHED:
        if (t->version != TLS13 || d->finished)
            return R_DONE; /* TLS 1.2, or post-handshake client authentication */
        if (d->phase != PH_KEYED || !rec_end)
            return fail_malformed(t); /* RFC 8446 §5.1 */
        d->finished = 1;
        d->phase = PH_WAIT_KEY;
        d->want = dir == CAP_DIR_C2S ? CAP_KL_CLIENT_AP : CAP_KL_SERVER_AP;
        return R_DONE;
    case HS_KEY_UPDATE:
        /* RFC 8446 §4.6.3: the sender's next secret; request_update is 0 or 1. */
        if (t->version != TLS13 || !d->finished || d->phase != PH_KEYED || len != 1 ||
            body[0] > 1 || !rec_end)
            return fail_malformed(t);
        /* §7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd"). */
        rc = cap_tls13_expand_label(t->suite->md, d->secret, d->secret_len, "traffic upd", NULL, 0,
                                    next, d->secret_len);
        if (rc != 0)
            return fail_cipher(t, t->suite->id);
        rc = install_secret13(t, d, next, d->secret_len);
        OPENSSL_cleanse(next, sizeof(next));
        if (rc == R_DONE && !t->failed)
            t->st->key_updates++;
        return rc;
    case HS_END_OF_EARLY_DATA:
        return fail_malformed(t); /* only after accepted 0-RTT, which already failed */
    default:
        return R_DONE;
    }
}

static int hs_wanted(uint8_t type)
{
    return type == HS_CLIENT_HELLO || type == HS_SERVER_HELLO || type == HS_ENCRYPTED_EXTENSIONS ||
           type == HS_FINISHED || type == HS_KEY_UPDATE || type == HS_END_OF_EARLY_DATA;
}

/* Handshake bytes of one record: messages may span records (RFC 8446 §5.1). */
static int hs_feed(struct cap_tls *t, int dir, const uint8_t *p, size_t n)
{
    struct tls_dir *d = &t->d[dir];

    if (n == 0)
        return fail_malformed(t); /* §5.1: zero-length handshake fragments are forbidden */
    while (n > 0) {
        size_t k;
        int rc;
        if (d->hs_hdr_got < 4) {
            k = 4 - d->hs_hdr_got < n ? 4 - d->hs_hdr_got : n;
            memcpy(d->hs_hdr + d->hs_hdr_got, p, k);
            d->hs_hdr_got += k;
            p += k;
            n -= k;
            if (d->hs_hdr_got < 4)
                break;
            /* §4: msg_type(1) || length(3) */
            d->hs_len = (uint32_t)d->hs_hdr[1] << 16 | (uint32_t)d->hs_hdr[2] << 8 | d->hs_hdr[3];
            d->hs_got = 0;
            d->hs_skip = !hs_wanted(d->hs_hdr[0]);
            if (!d->hs_skip) {
                if (d->hs_len > CAP_TLS_MAX_HS_MSG)
                    return fail_malformed(t);
                if (d->hs_len > d->hs_cap) {
                    uint8_t *nb = realloc(d->hs_body, d->hs_len);
                    if (!nb)
                        return H2R_ERR_NOMEM;
                    d->hs_body = nb;
                    d->hs_cap = d->hs_len;
                }
            }
        }
        k = d->hs_len - d->hs_got < n ? d->hs_len - d->hs_got : n;
        if (!d->hs_skip && k > 0)
            memcpy(d->hs_body + d->hs_got, p, k);
        d->hs_got += k;
        p += k;
        n -= k;
        if (d->hs_got < d->hs_len)
            break;
        d->hs_hdr_got = 0;
        if (d->hs_skip)
            continue;
        rc = handshake_message(t, dir, d->hs_hdr[0], d->hs_body, d->hs_len, n == 0);
        if (rc != R_DONE || t->failed)
            return rc;
    }
    return R_DONE;
}

/* ---- records ---- */

static int deliver(struct cap_tls *t, int dir, const uint8_t *p, size_t n, int64_t ts)
{
    if (n == 0)
        return R_DONE;
    t->st->plaintext_bytes += n;
    return t->cb.on_plaintext ? t->cb.on_plaintext(t->ud, dir, p, n, ts) : 0;
}

/* The content of a record, decrypted or not: what its real type says to do. */
static int content(struct cap_tls *t, int dir, uint8_t type, const uint8_t *p, size_t n, int64_t ts)
{
    switch (type) {
    case CT_HANDSHAKE:
        return hs_feed(t, dir, p, n);
    case CT_APPLICATION_DATA:
        return deliver(t, dir, p, n, ts);
    case CT_ALERT:
        t->st->alerts++;
        return R_DONE;
    case CT_HEARTBEAT:
        return R_DONE;
    default:
        return fail_malformed(t);
    }
}

/*
 * Waits the record must do before it can be read at all: the server's records
 * need the ClientHello (its random names the secrets); the client's records
 * after its ClientHello need the server's choices. In TLS 1.3 the client
 * protects nothing but 0-RTT data before it has the server's Finished
 * (RFC 8446 §2), so its protected records wait for that too: by then the
 * EncryptedExtensions said whether 0-RTT was accepted, and the ALPN is known
 * before the first byte of application data goes up.
 */
static int must_wait(const struct cap_tls *t, int dir, uint8_t type)
{
    if (dir == CAP_DIR_S2C)
        return !t->ch_seen || (t->hrr_seen && !t->ch2_seen);
    if (!t->ch_seen)
        return 0;
    if (!t->sh_seen && !(t->hrr_seen && !t->ch2_seen))
        return 1;
    return t->sh_seen && t->version == TLS13 && type == CT_APPLICATION_DATA &&
           !t->d[CAP_DIR_S2C].finished;
}

/*
 * One complete record (header hdr, fragment frag[0..len), writable: it is
 * decrypted in place). Returns R_DONE (check t->failed), R_BLOCKED (nothing
 * was changed; try again later), or a negative fatal code.
 */
static int process_record(struct cap_tls *t, int dir, const uint8_t *hdr, uint8_t *frag, size_t len,
                          int64_t ts)
{
    struct tls_dir *d = &t->d[dir];
    uint8_t type = hdr[0];
    size_t off = 0, n = 0;
    int rc;

    if (t->failed)
        return R_DONE;
    d->blocked_on_key = 0;
    if (must_wait(t, dir, type))
        return R_BLOCKED;
    if (dir == CAP_DIR_C2S && t->hrr_seen && !t->ch2_seen && type == CT_APPLICATION_DATA) {
        t->st->early_data_skipped++; /* 0-RTT sent before the retry request arrived */
        return R_DONE;
    }
    if (t->version == TLS13 && type == CT_CHANGE_CIPHER_SPEC)
        return R_DONE; /* RFC 8446 §5 / §D.4: middlebox compatibility, never protected */

    if (d->phase == PH_PLAIN) {
        if (type == CT_CHANGE_CIPHER_SPEC) {
            /* RFC 5246 §7.1: one byte of value 1; from now on this direction is protected. */
            if (t->version != TLS12 || len != 1 || frag[0] != 1)
                return fail_malformed(t);
            rc = activate12(t, dir);
            if (rc == R_BLOCKED)
                d->blocked_on_key = 1;
            return rc;
        }
        if (type == CT_APPLICATION_DATA)
            return fail_malformed(t); /* application data before any key */
        return content(t, dir, type, frag, len, ts);
    }

    if (t->version == TLS13 && type != CT_APPLICATION_DATA) {
        /* §5.2: protected records are application_data; a plaintext alert may still come
         * from a peer that failed before it had keys. */
        if (type == CT_ALERT) {
            t->st->alerts++;
            return R_DONE;
        }
        return fail_malformed(t);
    }
    if (t->version == TLS12 && type == CT_CHANGE_CIPHER_SPEC)
        return fail(t, "tls_unsupported", &t->st->unsupported); /* renegotiation */
    if (d->phase == PH_WAIT_KEY) {
        rc = activate13(t, dir);
        if (rc == R_BLOCKED)
            d->blocked_on_key = 1;
        if (rc != R_DONE || t->failed)
            return rc;
    }
    rc = aead_open(&d->aead, t->suite, hdr, frag, len, &off, &n);
    if (rc == H2R_ERR_PROTO && dir == CAP_DIR_C2S && t->early_skipping &&
        t->early_skipped < MAX_EARLY_SKIP) {
        /* Rejected 0-RTT: the server skips it the same way (RFC 8446 §4.2.10). */
        t->early_skipped++;
        t->st->early_data_skipped++;
        return R_DONE;
    }
    if (rc == H2R_ERR_PROTO)
        return fail(t, "tls_bad_tag", &t->st->bad_tag);
    if (rc != 0)
        return fail_malformed(t);
    d->aead.seq++;
    if (dir == CAP_DIR_C2S)
        t->early_skipping = 0;
    t->st->records_decrypted++;
    if (!t->decrypted_any) {
        t->decrypted_any = 1;
        t->st->decrypted_flows++;
    }
    if (t->version == TLS13) {
        /* RFC 8446 §5.2: TLSInnerPlaintext = content || type || zeros, at most 2^14 + 1. */
        if (n > 16385 || strip_inner(frag + off, &n, &type) != 0)
            return fail_malformed(t);
        if (type == CT_CHANGE_CIPHER_SPEC)
            return fail_malformed(t);
    }
    return content(t, dir, type, frag + off, n, ts);
}

/* ---- the queue of records that had to wait ----
 *
 * Held records are released in capture order across both directions: the
 * session above must see the client's bytes and the server's answer in the
 * order they crossed the wire (a server's response released ahead of the
 * client's request would overflow the session's pre-detection buffer, and
 * would be the wrong order anyway). A record waiting for a secret holds back
 * everything captured after it; a record waiting for the peer's handshake
 * lets the peer's later records go first, since they are what it waits for.
 */

static size_t pending_bytes(const struct cap_tls *t)
{
    return (t->d[0].q_len - t->d[0].q_off) + (t->d[1].q_len - t->d[1].q_off);
}

static int queued(const struct cap_tls *t, int dir)
{
    return t->d[dir].q_off < t->d[dir].q_len;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* Entry layout: [capture time 8][arrival number 8][record header 5][fragment]. */
static int enqueue(struct cap_tls *t, int dir, uint64_t seq, const uint8_t *hdr,
                   const uint8_t *frag, size_t len, int64_t ts)
{
    struct tls_dir *d = &t->d[dir];
    size_t need = QUEUE_ENTRY_HDR + len;

    if (pending_bytes(t) + need > CAP_TLS_MAX_PENDING) {
        t->st->pending_cap_hit++;
        if (t->d[0].blocked_on_key || t->d[1].blocked_on_key)
            return fail(t, "tls_no_key", &t->st->no_key);
        return fail(t, "tls_handshake_incomplete", &t->st->handshake_incomplete);
    }
    if (d->q_off > 0 && d->q_off == d->q_len) {
        d->q_off = 0;
        d->q_len = 0;
    }
    if (need > d->q_cap - d->q_len) {
        size_t ncap = d->q_cap ? d->q_cap : 4096;
        uint8_t *nq;
        while (ncap - d->q_len < need)
            ncap *= 2;
        nq = realloc(d->q, ncap);
        if (!nq)
            return H2R_ERR_NOMEM;
        d->q = nq;
        d->q_cap = ncap;
    }
    put_be64(d->q + d->q_len, (uint64_t)ts);
    put_be64(d->q + d->q_len + 8, seq);
    memcpy(d->q + d->q_len + 16, hdr, REC_HDR);
    memcpy(d->q + d->q_len + QUEUE_ENTRY_HDR, frag, len);
    d->q_len += need;
    return R_DONE;
}

/* Tries the oldest held record of dir: R_DONE (consumed), R_BLOCKED, or a fatal code. */
static int process_head(struct cap_tls *t, int dir)
{
    struct tls_dir *d = &t->d[dir];
    uint8_t *e = d->q + d->q_off;
    size_t len = (size_t)e[16 + 3] << 8 | e[16 + 4];
    int rc = process_record(t, dir, e + 16, e + QUEUE_ENTRY_HDR, len, (int64_t)get_be64(e));

    if (rc == R_DONE) {
        d->q_off += QUEUE_ENTRY_HDR + len;
        if (d->q_off == d->q_len)
            d->q_off = d->q_len = 0;
    }
    return rc;
}

/* Releases held records, oldest first, until the oldest must keep waiting. */
static int drain(struct cap_tls *t)
{
    int rc = R_DONE;

    if (t->draining)
        return R_DONE;
    t->draining = 1;
    while (!t->failed && (queued(t, 0) || queued(t, 1))) {
        int first = !queued(t, 1) || (queued(t, 0) && get_be64(t->d[0].q + t->d[0].q_off + 8) <
                                                          get_be64(t->d[1].q + t->d[1].q_off + 8))
                        ? 0
                        : 1;
        rc = process_head(t, first);
        if (rc < 0)
            break;
        if (rc == R_DONE)
            continue;
        rc = R_DONE;
        /* Waiting for a secret: everything captured later waits too. Waiting for the
         * peer: the peer's next record may be what is missing. */
        if (t->d[first].blocked_on_key || !queued(t, !first))
            break;
        rc = process_head(t, !first);
        if (rc != R_DONE) {
            if (rc == R_BLOCKED)
                rc = R_DONE;
            break;
        }
    }
    t->draining = 0;
    return rc;
}

/* A complete record arrived: process it now, or hold it behind earlier ones. */
static int record(struct cap_tls *t, int dir, const uint8_t *hdr, uint8_t *frag, size_t len,
                  int64_t ts)
{
    uint64_t seq = t->next_seq++;
    int rc;

    t->st->records++;
    if (queued(t, 0) || queued(t, 1)) {
        rc = enqueue(t, dir, seq, hdr, frag, len, ts);
        if (rc != R_DONE || t->failed)
            return rc;
        return drain(t);
    }
    rc = process_record(t, dir, hdr, frag, len, ts);
    if (rc == R_BLOCKED)
        return enqueue(t, dir, seq, hdr, frag, len, ts);
    return rc;
}

/* RFC 8446 §5.1 / RFC 5246 §6.2.1: a header this layer can follow. */
static int header_ok(struct cap_tls *t, const uint8_t *h, size_t len)
{
    if (h[0] < CT_CHANGE_CIPHER_SPEC || h[0] > CT_HEARTBEAT || h[1] != 3 || h[2] > 4)
        return 0;
    if (len > CAP_TLS_MAX_CIPHERTEXT) {
        t->st->record_too_large++;
        return 0;
    }
    return 1;
}

/* ---- public API ---- */

struct cap_tls *cap_tls_new(const struct cap_tls_callbacks *cb, void *ud, struct cap_tls_stats *st)
{
    struct cap_tls *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->cb = *cb;
    t->ud = ud;
    t->st = st;
    return t;
}

int cap_tls_feed(struct cap_tls *t, int dir, const uint8_t *buf, size_t len, int64_t ts)
{
    struct tls_dir *d;
    int rc;

    if (dir != CAP_DIR_C2S && dir != CAP_DIR_S2C)
        return H2R_ERR_ARG;
    d = &t->d[dir];
    /* A secret that was pending may be in the key log by now. */
    if (!t->failed && pending_bytes(t) > 0) {
        rc = drain(t);
        if (rc != 0)
            return rc;
    }
    while (len > 0 && !t->failed) {
        size_t k;
        if (d->hdr_got < REC_HDR) {
            k = REC_HDR - d->hdr_got < len ? REC_HDR - d->hdr_got : len;
            memcpy(d->hdr + d->hdr_got, buf, k);
            d->hdr_got += k;
            buf += k;
            len -= k;
            if (d->hdr_got < REC_HDR)
                break;
            d->rec_need = (size_t)d->hdr[3] << 8 | d->hdr[4];
            d->rec_got = 0;
            if (!header_ok(t, d->hdr, d->rec_need))
                return fail_malformed(t);
            if (!d->rec) {
                d->rec = malloc(CAP_TLS_MAX_CIPHERTEXT);
                if (!d->rec)
                    return H2R_ERR_NOMEM;
            }
        }
        k = d->rec_need - d->rec_got < len ? d->rec_need - d->rec_got : len;
        memcpy(d->rec + d->rec_got, buf, k);
        d->rec_got += k;
        buf += k;
        len -= k;
        if (d->rec_got < d->rec_need)
            break;
        d->hdr_got = 0;
        rc = record(t, dir, d->hdr, d->rec, d->rec_need, ts);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int cap_tls_finish(struct cap_tls *t)
{
    int rc;

    if (t->failed)
        return 0;
    t->finishing = 1;
    rc = drain(t);
    if (rc != 0 || t->failed)
        return rc;
    if (pending_bytes(t) > 0) {
        if (t->d[0].blocked_on_key || t->d[1].blocked_on_key)
            return fail(t, "tls_no_key", &t->st->no_key);
        return fail(t, "tls_handshake_incomplete", &t->st->handshake_incomplete);
    }
    if (!t->sh_seen)
        return fail(t, "tls_handshake_incomplete", &t->st->handshake_incomplete);
    return 0;
}

void cap_tls_stop(struct cap_tls *t)
{
    t->failed = 1;
}

int cap_tls_failed(const struct cap_tls *t)
{
    return t->failed;
}

unsigned cap_tls_version(const struct cap_tls *t)
{
    return t->sh_seen ? t->version : 0;
}

void cap_tls_free(struct cap_tls *t)
{
    if (!t)
        return;
    for (int i = 0; i < 2; i++) {
        struct tls_dir *d = &t->d[i];
        EVP_CIPHER_CTX_free(d->aead.ctx);
        free(d->rec);
        free(d->hs_body);
        free(d->q);
        OPENSSL_cleanse(d->secret, sizeof(d->secret));
    }
    OPENSSL_cleanse(t->key_block, sizeof(t->key_block));
    free(t);
}

int cap_tls_stats_export(const struct cap_tls_stats *st, struct cap_counter_list *l)
{
    const struct {
        const char *name;
        uint64_t value;
    } v[] = {
        {"tls.decrypted_flows", st->decrypted_flows},
        {"tls.v1_2", st->v12_flows},
        {"tls.v1_3", st->v13_flows},
        {"tls.records", st->records},
        {"tls.records_decrypted", st->records_decrypted},
        {"tls.plaintext_bytes", st->plaintext_bytes},
        {"tls.no_key", st->no_key},
        {"tls.bad_tag", st->bad_tag},
        {"tls.unsupported_cipher", st->unsupported_cipher},
        {"tls.unsupported_version", st->unsupported_version},
        {"tls.unsupported", st->unsupported},
        {"tls.malformed", st->malformed},
        {"tls.record_too_large", st->record_too_large},
        {"tls.handshake_incomplete", st->handshake_incomplete},
        {"tls.key_updates", st->key_updates},
        {"tls.hrr", st->hrr},
        {"tls.resumed", st->resumed},
        {"tls.alerts", st->alerts},
        {"tls.early_data_skipped", st->early_data_skipped},
        {"tls.pending_cap_hit", st->pending_cap_hit},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int rc = cap_counter_add(l, v[i].name, v[i].value);
        if (rc != 0)
            return rc;
    }
    return 0;
}
