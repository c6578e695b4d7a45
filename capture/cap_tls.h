/*
 * Passive TLS 1.2 / 1.3 decryption for one TCP connection, given the secrets
 * of an NSS key log: the layer between TCP reassembly and the session's
 * transport detection when the client's first bytes are a TLS handshake.
 *
 * A push parser over both directions (cap_tls_feed), no I/O: secrets come
 * from a callback, application data goes out through on_plaintext with the
 * capture time of the record that carried it. Failures are reported once
 * through on_fail with a reason the session writes into the conn-end record:
 *   "tls_no_key"                      the key log has no secret for this client_random
 *   "tls_unsupported_cipher:0xNNNN"   negotiated suite is not an AEAD suite we decrypt
 *   "tls_unsupported_version"         SSL 3.0, TLS 1.0/1.1 or an unknown version
 *   "tls_unsupported"                 0-RTT data accepted, renegotiation, compression
 *   "tls_bad_tag"                     a record failed authentication: wrong key or corrupt
 *   "tls_malformed"                   a record or handshake message breaks RFC 8446/5246
 *   "tls_handshake_incomplete"        the connection ended before a ServerHello
 * After a failure nothing more is decrypted, so garbage never reaches HTTP/2.
 *
 * Directions: 0 = client -> server, 1 = server -> client (as cap_session.h).
 */
#ifndef H2R_CAP_TLS_H
#define H2R_CAP_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "cap_keylog.h"
#include "cap_stats.h"

/* RFC 8446 §5.2: TLSCiphertext.length MUST NOT exceed 2^14 + 256. */
#define CAP_TLS_MAX_CIPHERTEXT (16384u + 256u)
/* Records held while a secret or the peer's handshake is awaited (per connection). */
#define CAP_TLS_MAX_PENDING (4u << 20)
/* Largest handshake message we parse (ClientHello, ServerHello, EncryptedExtensions). */
#define CAP_TLS_MAX_HS_MSG (1u << 16)

/* Counters owned by the TLS layer; one struct per capture (cap_session_stats.tls). */
struct cap_tls_stats {
    uint64_t records;           /* complete records, both directions */
    uint64_t records_decrypted; /* records whose tag verified */
    uint64_t plaintext_bytes;   /* application data bytes handed up */
    uint64_t decrypted_flows;   /* connections with at least one record decrypted */
    uint64_t v12_flows;         /* ServerHello selected TLS 1.2 */
    uint64_t v13_flows;         /* ServerHello selected TLS 1.3 */
    uint64_t no_key;            /* failures, one per connection ... */
    uint64_t bad_tag;
    uint64_t unsupported_cipher;
    uint64_t unsupported_version;
    uint64_t unsupported; /* 0-RTT accepted, renegotiation, compression */
    uint64_t malformed;
    uint64_t handshake_incomplete;
    uint64_t record_too_large;   /* ... of which: a record over CAP_TLS_MAX_CIPHERTEXT */
    uint64_t key_updates;        /* KeyUpdate messages followed (RFC 8446 §4.6.3) */
    uint64_t hrr;                /* HelloRetryRequests seen */
    uint64_t resumed;            /* resumed sessions (session id / ticket / PSK) */
    uint64_t alerts;             /* alert records (closure and errors) */
    uint64_t early_data_skipped; /* 0-RTT records the server rejected, skipped */
    uint64_t pending_cap_hit;    /* connections that hit CAP_TLS_MAX_PENDING */
};

/* Results of a cap_tls_secret_fn. */
#define CAP_TLS_KEY_MISSING 0 /* not in the key log: the connection fails with tls_no_key */
#define CAP_TLS_KEY_FOUND 1
#define CAP_TLS_KEY_PENDING 2 /* not yet: hold the records and ask again later */

/*
 * Looks up a secret by the ClientHello's random. final is 1 when the
 * connection has ended (last chance: a pending answer counts as missing).
 * Returns CAP_TLS_KEY_* or a negative H2R_ERR_* code (fatal).
 */
typedef int (*cap_tls_secret_fn)(void *ud, const uint8_t client_random[CAP_KEYLOG_RANDOM_LEN],
                                 enum cap_keylog_label label, uint8_t secret[CAP_KEYLOG_MAX_SECRET],
                                 size_t *len, int final);

/*
 * Callbacks; data is borrowed until the callback returns. A negative return
 * is fatal (allocation or trace write failure) and is returned by the
 * cap_tls_* call that made the callback.
 */
struct cap_tls_callbacks {
    cap_tls_secret_fn secret;
    /* Application data of direction dir, in order; ts is the capture time of its record. */
    int (*on_plaintext)(void *ud, int dir, const uint8_t *buf, size_t len, int64_t ts);
    /* The server's ALPN choice (RFC 7301 §3.2); at most once, NUL-terminated, printable. */
    int (*on_alpn)(void *ud, const char *proto);
    /* Decryption gave up (reason as listed above); at most once. */
    int (*on_fail)(void *ud, const char *reason);
};

struct cap_tls;

/* A parser for one connection. st is shared by the capture. NULL on allocation failure. */
struct cap_tls *cap_tls_new(const struct cap_tls_callbacks *cb, void *ud, struct cap_tls_stats *st);

/*
 * In-order TCP payload of direction dir. Returns 0 (also after a protocol
 * failure, which goes through on_fail) or a negative fatal code.
 */
int cap_tls_feed(struct cap_tls *t, int dir, const uint8_t *buf, size_t len, int64_t ts);

/*
 * The connection ended: asks for secrets still missing one last time
 * (final = 1), decrypts what was held, and reports tls_no_key or
 * tls_handshake_incomplete for what never could be. Returns 0 or a fatal code.
 */
int cap_tls_finish(struct cap_tls *t);

/*
 * Stops decrypting without reporting a failure: the layer above gave up on
 * the connection. Safe to call from inside a callback.
 */
void cap_tls_stop(struct cap_tls *t);

/* 1 once decryption stopped (on_fail was called, or cap_tls_stop). */
int cap_tls_failed(const struct cap_tls *t);

/* Selected version (0x0303, 0x0304), 0 before the ServerHello. */
unsigned cap_tls_version(const struct cap_tls *t);

void cap_tls_free(struct cap_tls *t);

/* Appends the tls.* counters to l. */
int cap_tls_stats_export(const struct cap_tls_stats *st, struct cap_counter_list *l);

/* ---- primitives, exposed for the unit tests (RFC 8448 vectors) ---- */

/*
 * RFC 8446 §7.1 HKDF-Expand-Label(secret, label, context, out_len) with the
 * named digest ("SHA256", "SHA384"); label without the "tls13 " prefix.
 * Returns 0, H2R_ERR_ARG for lengths over the limits, H2R_ERR_UNSUPPORTED
 * when OpenSSL refuses.
 */
int cap_tls13_expand_label(const char *digest, const uint8_t *secret, size_t secret_len,
                           const char *label, const uint8_t *context, size_t context_len,
                           uint8_t *out, size_t out_len);

/*
 * RFC 5246 §5 PRF(secret, label, seed) with the named digest.
 * Returns 0, H2R_ERR_ARG or H2R_ERR_UNSUPPORTED.
 */
int cap_tls12_prf(const char *digest, const uint8_t *secret, size_t secret_len, const char *label,
                  const uint8_t *seed, size_t seed_len, uint8_t *out, size_t out_len);

/*
 * Decrypts one complete record (5-byte header included) in place, for cipher
 * suite `suite` (TLS 1.3 suites 0x1301-0x1303, or a TLS 1.2 AEAD suite) with
 * the write key, the IV (TLS 1.3 and ChaCha20: 12 bytes; TLS 1.2 GCM: the
 * 4-byte salt) and the record sequence number. On success *plain points into
 * record and *content_type is the real content type (the inner type in TLS
 * 1.3). Returns 0, H2R_ERR_PROTO for a bad tag, H2R_ERR_FORMAT for a record
 * too short or without content type, H2R_ERR_UNSUPPORTED for another suite.
 */
int cap_tls_record_open(uint16_t suite, const uint8_t *key, const uint8_t *iv, uint64_t seq,
                        uint8_t *record, size_t len, const uint8_t **plain, size_t *plain_len,
                        uint8_t *content_type);

#endif
