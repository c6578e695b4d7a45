/*
 * Noise_IK_25519_ChaChaPoly_BLAKE2s for TS2021, on OpenSSL EVP only.
 *
 * TS2021 (tailscale control/controlbase) runs a stock Noise IK handshake -
 * prologue "Tailscale Control Protocol v<capver>", empty payloads, the node as
 * initiator knowing the control key from /key - and then deviates from the
 * Noise spec in one place: a transport nonce is 4 zero bytes followed by the
 * 64-bit counter in BIG-endian order (the spec says little-endian). Both agree
 * for counter 0, which is why off-the-shelf Noise libraries complete the
 * handshake and the first record and then fail; the vector tests therefore
 * check records far past the first.
 *
 * No primitive is implemented here: BLAKE2s-256 (RFC 7693) is an EVP_MD,
 * HMAC-BLAKE2s (RFC 2104) an EVP_MAC "HMAC" (not BLAKE2SMAC, which is keyed
 * BLAKE2s, another function), X25519 (RFC 7748) goes through EVP_PKEY raw keys
 * and ChaCha20-Poly1305 (RFC 8439) through EVP_CIPHER. HKDF (RFC 5869) is
 * written as the three HMAC calls of the Noise spec (revision 34, section 4.3)
 * instead of EVP_KDF "HKDF", because Split() passes empty input keying
 * material, which OpenSSL 3.0's HKDF rejects as a NULL key.
 *
 * The responder side exists for two users: tests and fake servers, and a
 * capture holding the control server's private key, which can authenticate
 * message 1 and learn the client's machine key - but, lacking an ephemeral
 * private key, never the session keys (forward secrecy). Secrets are wiped
 * with OPENSSL_cleanse when a state is cleaned up or split.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "ts2021.h"

#define NOISE_PROTOCOL_NAME "Noise_IK_25519_ChaChaPoly_BLAKE2s"
#define PROLOGUE_PREFIX "Tailscale Control Protocol v"
#define HMAC_DIGEST "BLAKE2S-256"
#define AEAD_NAME "ChaCha20-Poly1305"
#define NONCE_LEN 12

enum noise_step {
    STEP_START = 0, /* nothing sent or received */
    STEP_MSG1 = 1,  /* message 1 written (initiator) or read (responder) */
    STEP_DONE = 2,  /* message 2 processed: Split() allowed */
    STEP_SPLIT = 3, /* keys handed out, state wiped */
    STEP_FAILED = -1
};

/* ---- bounds-checked cursor over a handshake message ---- */

struct cursor {
    const uint8_t *p;
    size_t len;
};

/* Points *out at the next n bytes. */
static int cur_take(struct cursor *c, size_t n, const uint8_t **out)
{
    if (c->len < n)
        return -1;
    *out = c->p;
    c->p += n;
    c->len -= n;
    return 0;
}

/* ---- primitives ---- */

static int noise_fail(struct ts_noise *n, int rc, const char *what)
{
    n->step = STEP_FAILED;
    return h2r_seterr(n->err, sizeof(n->err), rc, "noise: %s", what);
}

/* out = BLAKE2s(a || b). */
static int hash2(const struct ts_noise *n, const uint8_t *a, size_t alen, const uint8_t *b,
                 size_t blen, uint8_t out[TS_KEY_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int olen = 0;
    int rc = H2R_ERR_PROTO;

    if (!ctx)
        return H2R_ERR_NOMEM;
    if (EVP_DigestInit_ex2(ctx, n->md, NULL) != 1)
        goto out;
    if (EVP_DigestUpdate(ctx, a, alen) != 1)
        goto out;
    if (blen > 0 && EVP_DigestUpdate(ctx, b, blen) != 1)
        goto out;
    if (EVP_DigestFinal_ex(ctx, out, &olen) != 1 || olen != TS_KEY_LEN)
        goto out;
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* out = HMAC-BLAKE2s(key, a || b) (RFC 2104, block size 64). */
static int hmac2(const struct ts_noise *n, const uint8_t key[TS_KEY_LEN], const uint8_t *a,
                 size_t alen, const uint8_t *b, size_t blen, uint8_t out[TS_KEY_LEN])
{
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(n->mac);
    OSSL_PARAM params[2];
    size_t olen = 0;
    int rc = H2R_ERR_PROTO;

    if (!ctx)
        return H2R_ERR_NOMEM;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)HMAC_DIGEST, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(ctx, key, TS_KEY_LEN, params) != 1)
        goto out;
    if (alen > 0 && EVP_MAC_update(ctx, a, alen) != 1)
        goto out;
    if (blen > 0 && EVP_MAC_update(ctx, b, blen) != 1)
        goto out;
    if (EVP_MAC_final(ctx, out, &olen, TS_KEY_LEN) != 1 || olen != TS_KEY_LEN)
        goto out;
    rc = 0;
out:
    EVP_MAC_CTX_free(ctx);
    return rc;
}

/* Noise HKDF with two outputs: t = HMAC(ck, ikm); o1 = HMAC(t, 0x01); o2 = HMAC(t, o1 || 0x02). */
static int hkdf2(const struct ts_noise *n, const uint8_t ck[TS_KEY_LEN], const uint8_t *ikm,
                 size_t ikm_len, uint8_t o1[TS_KEY_LEN], uint8_t o2[TS_KEY_LEN])
{
    static const uint8_t one = 0x01, two = 0x02;
    uint8_t t[TS_KEY_LEN];
    uint8_t first[TS_KEY_LEN];
    int rc;

    rc = hmac2(n, ck, ikm, ikm_len, NULL, 0, t);
    if (rc != 0)
        goto out;
    rc = hmac2(n, t, &one, 1, NULL, 0, first);
    if (rc != 0)
        goto out;
    rc = hmac2(n, t, first, TS_KEY_LEN, &two, 1, o2);
    if (rc != 0)
        goto out;
    memcpy(o1, first, TS_KEY_LEN);
out:
    OPENSSL_cleanse(t, sizeof(t));
    OPENSSL_cleanse(first, sizeof(first));
    return rc;
}

/* Loading a raw private key makes OpenSSL compute its public key, a full
 * scalar multiplication (~0.1 ms): each key is therefore loaded once per
 * handshake and kept as an EVP_PKEY for the DHs it takes part in. */
static EVP_PKEY *x25519_private(const uint8_t priv[TS_KEY_LEN])
{
    return EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, TS_KEY_LEN);
}

static int x25519_raw_public(EVP_PKEY *k, uint8_t pub[TS_KEY_LEN])
{
    size_t len = TS_KEY_LEN;

    if (EVP_PKEY_get_raw_public_key(k, pub, &len) != 1 || len != TS_KEY_LEN)
        return H2R_ERR_PROTO;
    return 0;
}

/* out = X25519(local, pub). OpenSSL refuses an all-zero result (a low-order peer
 * point), like Go's curve25519.X25519; that is a handshake failure. */
static int x25519_dh(EVP_PKEY *local, const uint8_t pub[TS_KEY_LEN], uint8_t out[TS_KEY_LEN])
{
    static const uint8_t zero[TS_KEY_LEN];
    EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, pub, TS_KEY_LEN);
    EVP_PKEY_CTX *ctx = NULL;
    size_t olen = TS_KEY_LEN;
    int rc = H2R_ERR_PROTO;

    if (!local || !peer)
        goto out;
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, local, NULL);
    if (!ctx)
        goto out;
    if (EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_derive_set_peer(ctx, peer) != 1)
        goto out;
    if (EVP_PKEY_derive(ctx, out, &olen) != 1 || olen != TS_KEY_LEN)
        goto out;
    if (CRYPTO_memcmp(out, zero, TS_KEY_LEN) == 0)
        goto out;
    rc = 0;
out:
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(peer);
    return rc;
}

int ts_x25519_public(const uint8_t priv[TS_KEY_LEN], uint8_t pub[TS_KEY_LEN])
{
    EVP_PKEY *k = x25519_private(priv);
    int rc;

    if (!k)
        return H2R_ERR_PROTO;
    rc = x25519_raw_public(k, pub);
    EVP_PKEY_free(k);
    return rc;
}

/*
 * One ChaCha20-Poly1305 operation (RFC 8439). Encrypt: in (inlen) -> out
 * (inlen + 16, tag last). Decrypt: in (inlen >= 16, tag last) -> out (inlen - 16).
 * Returns 0, or H2R_ERR_PROTO for a bad tag or an OpenSSL failure.
 */
static int aead(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, const uint8_t key[TS_KEY_LEN],
                const uint8_t nonce[NONCE_LEN], const uint8_t *ad, size_t adlen, const uint8_t *in,
                size_t inlen, uint8_t *out, int encrypt)
{
    uint8_t tag[TS_TAG_LEN];
    size_t body;
    int l = 0;

    if (inlen > INT_MAX || adlen > INT_MAX || (!encrypt && inlen < TS_TAG_LEN))
        return H2R_ERR_ARG;
    body = encrypt ? inlen : inlen - TS_TAG_LEN;
    if (EVP_CipherInit_ex2(ctx, cipher, key, nonce, encrypt, NULL) != 1)
        return H2R_ERR_PROTO;
    if (adlen > 0 && EVP_CipherUpdate(ctx, NULL, &l, ad, (int)adlen) != 1)
        return H2R_ERR_PROTO;
    if (!encrypt) {
        /* Keep the tag before an in-place decryption overwrites anything. */
        memcpy(tag, in + body, TS_TAG_LEN);
        if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TS_TAG_LEN, tag) != 1)
            return H2R_ERR_PROTO;
    }
    if (body > 0 && EVP_CipherUpdate(ctx, out, &l, in, (int)body) != 1)
        return H2R_ERR_PROTO;
    if (EVP_CipherFinal_ex(ctx, out + body, &l) != 1)
        return H2R_ERR_PROTO; /* on decrypt: the tag did not verify */
    if (encrypt && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TS_TAG_LEN, out + body) != 1)
        return H2R_ERR_PROTO;
    return 0;
}

/* TS2021 transport nonce: 4 zero bytes, then the counter big-endian (conn.go). */
static void nonce_be(uint64_t counter, uint8_t nonce[NONCE_LEN])
{
    memset(nonce, 0, 4);
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(counter >> (56 - 8 * i));
}

/* ---- transport CipherState ---- */

int ts_cipher_init(struct ts_cipher *c, const uint8_t key[TS_KEY_LEN])
{
    memset(c, 0, sizeof(*c));
    c->aead = EVP_CIPHER_fetch(NULL, AEAD_NAME, NULL);
    if (!c->aead)
        return H2R_ERR_UNSUPPORTED;
    c->ctx = EVP_CIPHER_CTX_new();
    if (!c->ctx)
        goto fail_aead;
    memcpy(c->key, key, TS_KEY_LEN);
    return 0;

fail_aead:
    EVP_CIPHER_free(c->aead);
    c->aead = NULL;
    return H2R_ERR_NOMEM;
}

void ts_cipher_cleanup(struct ts_cipher *c)
{
    if (!c)
        return;
    EVP_CIPHER_CTX_free(c->ctx);
    EVP_CIPHER_free(c->aead);
    OPENSSL_cleanse(c, sizeof(*c));
}

/* Checks the counter before use: 2^64-1 is never a valid nonce (errCipherExhausted). */
static int cipher_ready(struct ts_cipher *c)
{
    if (!c->ctx)
        return H2R_ERR_ARG;
    if (c->failed)
        return H2R_ERR_PROTO;
    if (c->nonce == UINT64_MAX) {
        c->failed = 1;
        return H2R_ERR_LIMIT;
    }
    return 0;
}

int ts_cipher_seal(struct ts_cipher *c, const uint8_t *pt, size_t len, uint8_t *out)
{
    uint8_t nonce[NONCE_LEN];
    int rc;

    if (len > TS_NOISE_MAX_MSG - TS_TAG_LEN)
        return H2R_ERR_ARG;
    rc = cipher_ready(c);
    if (rc != 0)
        return rc;
    nonce_be(c->nonce, nonce);
    rc = aead(c->ctx, c->aead, c->key, nonce, NULL, 0, pt, len, out, 1);
    if (rc != 0) {
        c->failed = 1;
        return rc;
    }
    c->nonce++;
    return 0;
}

int ts_cipher_open(struct ts_cipher *c, const uint8_t *ct, size_t len, uint8_t *out, size_t *outlen)
{
    uint8_t nonce[NONCE_LEN];
    int rc;

    if (len < TS_TAG_LEN)
        return H2R_ERR_FORMAT;
    if (len > TS_NOISE_MAX_MSG)
        return H2R_ERR_LIMIT;
    rc = cipher_ready(c);
    if (rc != 0)
        return rc;
    nonce_be(c->nonce, nonce);
    rc = aead(c->ctx, c->aead, c->key, nonce, NULL, 0, ct, len, out, 0);
    if (rc != 0) {
        c->failed = 1;
        return H2R_ERR_PROTO;
    }
    c->nonce++;
    *outlen = len - TS_TAG_LEN;
    return 0;
}

/* ---- SymmetricState (Noise spec section 5.2) ---- */

static int mix_hash(struct ts_noise *n, const uint8_t *data, size_t len)
{
    return hash2(n, n->h, TS_KEY_LEN, data, len, n->h);
}

/* MixKey with a DH result; the next handshake AEAD under k uses nonce 0. */
static int mix_key_dh(struct ts_noise *n, EVP_PKEY *local, const uint8_t pub[TS_KEY_LEN])
{
    uint8_t shared[TS_KEY_LEN];
    int rc;

    rc = x25519_dh(local, pub, shared);
    if (rc != 0)
        goto out;
    rc = hkdf2(n, n->ck, shared, TS_KEY_LEN, n->ck, n->k);
out:
    OPENSSL_cleanse(shared, sizeof(shared));
    return rc;
}

/* EncryptAndHash: out = AEAD(k, 0, h, pt) (len + 16 bytes); MixHash(out). Each
 * handshake key is used exactly once, so the zero nonce is safe. */
static int encrypt_and_hash(struct ts_noise *n, const uint8_t *pt, size_t len, uint8_t *out)
{
    static const uint8_t zero_nonce[NONCE_LEN];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int rc;

    if (!ctx)
        return H2R_ERR_NOMEM;
    rc = aead(ctx, n->aead, n->k, zero_nonce, n->h, TS_KEY_LEN, pt, len, out, 1);
    EVP_CIPHER_CTX_free(ctx);
    if (rc != 0)
        return rc;
    return mix_hash(n, out, len + TS_TAG_LEN);
}

/* DecryptAndHash: ct (len >= 16) -> out (len - 16); MixHash(ct). */
static int decrypt_and_hash(struct ts_noise *n, const uint8_t *ct, size_t len, uint8_t *out)
{
    static const uint8_t zero_nonce[NONCE_LEN];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int rc;

    if (!ctx)
        return H2R_ERR_NOMEM;
    rc = aead(ctx, n->aead, n->k, zero_nonce, n->h, TS_KEY_LEN, ct, len, out, 0);
    EVP_CIPHER_CTX_free(ctx);
    if (rc != 0)
        return rc;
    return mix_hash(n, ct, len);
}

/* ---- HandshakeState ---- */

size_t ts_noise_prologue(uint16_t version, char *out, size_t cap)
{
    int n = snprintf(out, cap, PROLOGUE_PREFIX "%u", (unsigned)version);

    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

/* InitializeSymmetric + MixHash(prologue) + the "<- s" pre-message with the
 * responder's static key. */
static int noise_start(struct ts_noise *n, const uint8_t *prologue, size_t plen,
                       const uint8_t pre_static[TS_KEY_LEN])
{
    int rc;

    n->md = EVP_MD_fetch(NULL, "BLAKE2S-256", NULL);
    n->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    n->aead = EVP_CIPHER_fetch(NULL, AEAD_NAME, NULL);
    if (!n->md || !n->mac || !n->aead)
        return h2r_seterr(n->err, sizeof(n->err), H2R_ERR_UNSUPPORTED,
                          "noise: OpenSSL lacks BLAKE2S-256, HMAC or " AEAD_NAME);
    /* The protocol name is 33 bytes, longer than HASHLEN: h = HASH(name). */
    rc = hash2(n, (const uint8_t *)NOISE_PROTOCOL_NAME, strlen(NOISE_PROTOCOL_NAME), NULL, 0, n->h);
    if (rc != 0)
        return rc;
    memcpy(n->ck, n->h, TS_KEY_LEN);
    rc = mix_hash(n, prologue, plen);
    if (rc != 0)
        return rc;
    return mix_hash(n, pre_static, TS_KEY_LEN);
}

int ts_noise_init_custom(struct ts_noise *n, int role, const uint8_t *prologue, size_t plen,
                         const uint8_t s_priv[TS_KEY_LEN], const uint8_t *rs_pub)
{
    int rc;

    memset(n, 0, sizeof(*n));
    if ((role != TS_NOISE_INITIATOR && role != TS_NOISE_RESPONDER) ||
        (role == TS_NOISE_INITIATOR && !rs_pub) || (plen > 0 && !prologue))
        return h2r_seterr(n->err, sizeof(n->err), H2R_ERR_ARG, "noise: bad arguments");
    n->role = role;
    memcpy(n->s_priv, s_priv, TS_KEY_LEN);
    n->s_key = x25519_private(s_priv);
    rc = n->s_key ? x25519_raw_public(n->s_key, n->s_pub) : H2R_ERR_PROTO;
    if (rc != 0) {
        h2r_seterr(n->err, sizeof(n->err), rc, "noise: bad static private key");
        goto fail;
    }
    if (role == TS_NOISE_INITIATOR)
        memcpy(n->rs, rs_pub, TS_KEY_LEN);
    rc = noise_start(n, prologue, plen, role == TS_NOISE_INITIATOR ? n->rs : n->s_pub);
    if (rc != 0)
        goto fail;
    return 0;

fail:
    ts_noise_cleanup(n);
    return rc;
}

int ts_noise_init_initiator(struct ts_noise *n, uint16_t version,
                            const uint8_t machine_priv[TS_KEY_LEN],
                            const uint8_t control_pub[TS_KEY_LEN])
{
    char prologue[64];
    size_t plen = ts_noise_prologue(version, prologue, sizeof(prologue));
    int rc;

    rc = ts_noise_init_custom(n, TS_NOISE_INITIATOR, (const uint8_t *)prologue, plen, machine_priv,
                              control_pub);
    n->version = version;
    return rc;
}

int ts_noise_init_responder(struct ts_noise *n, uint16_t version,
                            const uint8_t control_priv[TS_KEY_LEN])
{
    char prologue[64];
    size_t plen = ts_noise_prologue(version, prologue, sizeof(prologue));
    int rc;

    rc = ts_noise_init_custom(n, TS_NOISE_RESPONDER, (const uint8_t *)prologue, plen, control_priv,
                              NULL);
    n->version = version;
    return rc;
}

/* Loads priv as the ephemeral key (replacing any earlier one). */
static int load_ephemeral(struct ts_noise *n, const uint8_t priv[TS_KEY_LEN])
{
    EVP_PKEY *k = x25519_private(priv);

    if (!k || x25519_raw_public(k, n->e_pub) != 0) {
        EVP_PKEY_free(k);
        return H2R_ERR_PROTO;
    }
    EVP_PKEY_free(n->e_key);
    n->e_key = k;
    memcpy(n->e_priv, priv, TS_KEY_LEN);
    return 0;
}

int ts_noise_set_ephemeral(struct ts_noise *n, const uint8_t priv[TS_KEY_LEN])
{
    int rc;

    /* The initiator sends its ephemeral in message 1, the responder in message 2. */
    if (n->step != STEP_START && !(n->role == TS_NOISE_RESPONDER && n->step == STEP_MSG1))
        return H2R_ERR_ARG;
    rc = load_ephemeral(n, priv);
    if (rc != 0)
        return rc;
    n->e_fixed = 1;
    return 0;
}

/* Creates the ephemeral key unless a test injected one. */
static int make_ephemeral(struct ts_noise *n)
{
    uint8_t priv[TS_KEY_LEN];
    int rc;

    if (n->e_fixed)
        return 0;
    if (RAND_bytes(priv, TS_KEY_LEN) != 1)
        return H2R_ERR_PROTO;
    rc = load_ephemeral(n, priv);
    OPENSSL_cleanse(priv, sizeof(priv));
    return rc;
}

/* Checks a message's total length against the Noise limit and the caller's buffer. */
static int check_out(struct ts_noise *n, size_t fixed, size_t plen, size_t cap)
{
    if (plen > TS_NOISE_MAX_MSG - fixed)
        return h2r_seterr(n->err, sizeof(n->err), H2R_ERR_ARG, "noise: payload too long");
    if (cap < fixed + plen)
        return h2r_seterr(n->err, sizeof(n->err), H2R_ERR_ARG, "noise: output buffer too small");
    return 0;
}

int ts_noise_write_msg1(struct ts_noise *n, const uint8_t *payload, size_t plen, uint8_t *out,
                        size_t cap, size_t *outlen)
{
    const size_t fixed = 2 * TS_KEY_LEN + 2 * TS_TAG_LEN;
    int rc;

    if (n->role != TS_NOISE_INITIATOR || n->step != STEP_START)
        return h2r_seterr(n->err, sizeof(n->err), H2R_ERR_ARG, "noise: msg1 out of order");
    rc = check_out(n, fixed, plen, cap);
    if (rc != 0)
        return rc;
    /* -> e */
    rc = make_ephemeral(n);
    if (rc != 0)
        return noise_fail(n, rc, "cannot create ephemeral key");
    memcpy(out, n->e_pub, TS_KEY_LEN);
    rc = mix_hash(n, n->e_pub, TS_KEY_LEN);
    if (rc != 0)
        return noise_fail(n, rc, "hash failed");
    /* es */
    rc = mix_key_dh(n, n->e_key, n->rs);
    if (rc != 0)
        return noise_fail(n, rc, "es: DH with the control key failed");
    /* s */
    rc = encrypt_and_hash(n, n->s_pub, TS_KEY_LEN, out + TS_KEY_LEN);
    if (rc != 0)
        return noise_fail(n, rc, "cannot encrypt the static key");
    /* ss */
    rc = mix_key_dh(n, n->s_key, n->rs);
    if (rc != 0)
        return noise_fail(n, rc, "ss: DH with the control key failed");
    rc = encrypt_and_hash(n, payload, plen, out + TS_KEY_LEN + TS_KEY_LEN + TS_TAG_LEN);
    if (rc != 0)
        return noise_fail(n, rc, "cannot encrypt the payload");
    n->step = STEP_MSG1;
    *outlen = fixed + plen;
    return 0;
}

/* Decrypts the trailing payload of a handshake message into payload/cap. */
static int read_payload(struct ts_noise *n, struct cursor *c, uint8_t *payload, size_t cap,
                        size_t *plen)
{
    uint8_t none[1];
    size_t len = c->len - TS_TAG_LEN;
    int rc;

    if (len > cap)
        return noise_fail(n, H2R_ERR_LIMIT, "payload exceeds the caller's buffer");
    rc = decrypt_and_hash(n, c->p, c->len, len > 0 ? payload : none);
    if (rc != 0)
        return noise_fail(n, H2R_ERR_PROTO, "payload does not authenticate");
    if (plen)
        *plen = len;
    return 0;
}

int ts_noise_read_msg2(struct ts_noise *n, const uint8_t *msg, size_t len, uint8_t *payload,
                       size_t cap, size_t *plen)
{
    struct cursor c = {msg, len};
    const uint8_t *re;
    int rc;

    if (n->role != TS_NOISE_INITIATOR || n->step != STEP_MSG1)
        return h2r_seterr(n->err, sizeof(n->err), H2R_ERR_ARG, "noise: msg2 out of order");
    if (len > TS_NOISE_MAX_MSG)
        return noise_fail(n, H2R_ERR_LIMIT, "msg2 longer than a Noise message");
    if (cur_take(&c, TS_KEY_LEN, &re) != 0 || c.len < TS_TAG_LEN)
        return noise_fail(n, H2R_ERR_FORMAT, "msg2 shorter than 48 bytes");
    /* <- e */
    memcpy(n->re, re, TS_KEY_LEN);
    rc = mix_hash(n, n->re, TS_KEY_LEN);
    if (rc != 0)
        return noise_fail(n, rc, "hash failed");
    /* ee, se */
    rc = mix_key_dh(n, n->e_key, n->re);
    if (rc != 0)
        return noise_fail(n, H2R_ERR_PROTO, "ee: DH with the server ephemeral failed");
    rc = mix_key_dh(n, n->s_key, n->re);
    if (rc != 0)
        return noise_fail(n, H2R_ERR_PROTO, "se: DH with the server ephemeral failed");
    rc = read_payload(n, &c, payload, cap, plen);
    if (rc != 0)
        return rc;
    n->step = STEP_DONE;
    return 0;
}

int ts_noise_responder_read_msg1(struct ts_noise *n, const uint8_t *msg, size_t len,
                                 uint8_t *payload, size_t cap, size_t *plen)
{
    struct cursor c = {msg, len};
    const uint8_t *e, *enc_s;
    int rc;

    if (n->role != TS_NOISE_RESPONDER || n->step != STEP_START)
        return h2r_seterr(n->err, sizeof(n->err), H2R_ERR_ARG, "noise: msg1 out of order");
    if (len > TS_NOISE_MAX_MSG)
        return noise_fail(n, H2R_ERR_LIMIT, "msg1 longer than a Noise message");
    if (cur_take(&c, TS_KEY_LEN, &e) != 0 || cur_take(&c, TS_KEY_LEN + TS_TAG_LEN, &enc_s) != 0 ||
        c.len < TS_TAG_LEN)
        return noise_fail(n, H2R_ERR_FORMAT, "msg1 shorter than 96 bytes");
    /* -> e */
    memcpy(n->re, e, TS_KEY_LEN);
    rc = mix_hash(n, n->re, TS_KEY_LEN);
    if (rc != 0)
        return noise_fail(n, rc, "hash failed");
    /* es (responder side: s, re) */
    rc = mix_key_dh(n, n->s_key, n->re);
    if (rc != 0)
        return noise_fail(n, H2R_ERR_PROTO, "es: DH with the client ephemeral failed");
    /* s */
    rc = decrypt_and_hash(n, enc_s, TS_KEY_LEN + TS_TAG_LEN, n->rs);
    if (rc != 0)
        return noise_fail(n, H2R_ERR_PROTO,
                          "msg1 does not authenticate (wrong control key, or capver "
                          "and prologue disagree)");
    /* ss */
    rc = mix_key_dh(n, n->s_key, n->rs);
    if (rc != 0)
        return noise_fail(n, H2R_ERR_PROTO, "ss: DH with the machine key failed");
    rc = read_payload(n, &c, payload, cap, plen);
    if (rc != 0)
        return rc;
    n->step = STEP_MSG1;
    return 0;
}

int ts_noise_responder_write_msg2(struct ts_noise *n, const uint8_t *payload, size_t plen,
                                  uint8_t *out, size_t cap, size_t *outlen)
{
    const size_t fixed = TS_KEY_LEN + TS_TAG_LEN;
    int rc;

    if (n->role != TS_NOISE_RESPONDER || n->step != STEP_MSG1)
        return h2r_seterr(n->err, sizeof(n->err), H2R_ERR_ARG, "noise: msg2 out of order");
    rc = check_out(n, fixed, plen, cap);
    if (rc != 0)
        return rc;
    /* <- e */
    rc = make_ephemeral(n);
    if (rc != 0)
        return noise_fail(n, rc, "cannot create ephemeral key");
    memcpy(out, n->e_pub, TS_KEY_LEN);
    rc = mix_hash(n, n->e_pub, TS_KEY_LEN);
    if (rc != 0)
        return noise_fail(n, rc, "hash failed");
    /* ee, se (responder side: e with the initiator's static) */
    rc = mix_key_dh(n, n->e_key, n->re);
    if (rc != 0)
        return noise_fail(n, rc, "ee: DH failed");
    rc = mix_key_dh(n, n->e_key, n->rs);
    if (rc != 0)
        return noise_fail(n, rc, "se: DH failed");
    rc = encrypt_and_hash(n, payload, plen, out + TS_KEY_LEN);
    if (rc != 0)
        return noise_fail(n, rc, "cannot encrypt the payload");
    n->step = STEP_DONE;
    *outlen = fixed + plen;
    return 0;
}

int ts_noise_split(struct ts_noise *n, struct ts_cipher *tx, struct ts_cipher *rx)
{
    uint8_t k1[TS_KEY_LEN], k2[TS_KEY_LEN];
    int initiator = n->role == TS_NOISE_INITIATOR;
    int rc;

    if (n->step != STEP_DONE)
        return h2r_seterr(n->err, sizeof(n->err), H2R_ERR_ARG, "noise: split before the end");
    rc = hkdf2(n, n->ck, NULL, 0, k1, k2);
    if (rc != 0)
        goto out;
    rc = ts_cipher_init(tx, initiator ? k1 : k2);
    if (rc != 0)
        goto out;
    rc = ts_cipher_init(rx, initiator ? k2 : k1);
    if (rc != 0)
        goto fail_tx;
    OPENSSL_cleanse(n->ck, sizeof(n->ck));
    OPENSSL_cleanse(n->k, sizeof(n->k));
    OPENSSL_cleanse(n->e_priv, sizeof(n->e_priv));
    EVP_PKEY_free(n->e_key); /* frees and wipes the ephemeral for good */
    n->e_key = NULL;
    n->step = STEP_SPLIT;
    goto out;

fail_tx:
    ts_cipher_cleanup(tx);
out:
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    return rc;
}

void ts_noise_cleanup(struct ts_noise *n)
{
    char err[sizeof(n->err)];

    if (!n)
        return;
    EVP_MD_free(n->md);
    EVP_MAC_free(n->mac);
    EVP_CIPHER_free(n->aead);
    EVP_PKEY_free(n->s_key);
    EVP_PKEY_free(n->e_key);
    /* Everything goes but the reason of a failure. */
    memcpy(err, n->err, sizeof(err));
    OPENSSL_cleanse(n, sizeof(*n));
    memcpy(n->err, err, sizeof(err));
}
