/*
 * TS2021, the Tailscale control protocol as Headscale speaks it: the I/O-free
 * building blocks the replay engine (and the capture stage) stack into a
 * transport. Protocol facts and their upstream sources: docs/ts2021.md.
 *
 *   ts_noise.c    Noise_IK_25519_ChaChaPoly_BLAKE2s (initiator and responder) and
 *                 the transport CipherStates with TS2021's big-endian nonces
 *   ts_frame.c    controlbase framing (push parser), the 101-byte initiation frame
 *                 and its base64 header, record seal/open, the EarlyNoise blob, and
 *                 ts_session: everything above composed into one byte-stream state
 *   ts_upgrade.c  HTTP/1.1 "POST /ts2021" upgrade request, the response head parser
 *                 (also used for "GET /key"), the /key JSON
 *   ts_map.c      /machine/map response stream decoder, register/map request
 *                 bodies, key generation and mkey:/nodekey:/discokey: text forms
 *
 * Conventions: every function returns 0 or a negative H2R_ERR_* code; contexts
 * keep a human-readable reason in their `err` buffer; errors on a parser or
 * session are sticky (the connection must be dropped and redone, as in TS).
 * Data passed to callbacks is borrowed until the callback returns; a callback
 * returning non-zero stops the feed, which returns that value.
 */
#ifndef H2R_TS2021_H
#define H2R_TS2021_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "h2replay/error.h"

/* ---- sizes (NOTES 4.3, 4.4) ---- */

#define TS_KEY_LEN 32          /* X25519 keys, BLAKE2s hashes, ChaCha20 keys */
#define TS_KEY_HEX_LEN 64      /* a key in hex (text forms) */
#define TS_TAG_LEN 16          /* Poly1305 tag */
#define TS_NOISE_MAX_MSG 65535 /* Noise spec section 3 */
#define TS_MSG1_LEN 96         /* e.pub + enc(machine pub) + tag, empty payload */
#define TS_MSG2_LEN 48         /* e.pub + tag, empty payload */
#define TS_INIT_HDR_LEN 5      /* u16 version, u8 type, u16 length */
#define TS_INIT_FRAME_LEN (TS_INIT_HDR_LEN + TS_MSG1_LEN)
#define TS_FRAME_HDR_LEN 3 /* u8 type, u16 length (big-endian) */
#define TS_RESP_FRAME_LEN (TS_FRAME_HDR_LEN + TS_MSG2_LEN)
#define TS_MAX_FRAME 4096 /* whole record including its header */
#define TS_MAX_CIPHERTEXT (TS_MAX_FRAME - TS_FRAME_HDR_LEN)
#define TS_MAX_PLAINTEXT (TS_MAX_CIPHERTEXT - TS_TAG_LEN) /* 4077 */
#define TS_HANDSHAKE_B64_LEN 136 /* base64 of the 101-byte initiation frame */

/* Frame types (messages.go). */
#define TS_FRAME_INIT 1   /* client -> server, only inside X-Tailscale-Handshake */
#define TS_FRAME_RESP 2   /* server -> client handshake response */
#define TS_FRAME_ERROR 3  /* server -> client, unauthenticated text, instead of RESP */
#define TS_FRAME_RECORD 4 /* transport record, both directions */

#define TS_CAPVER_DEFAULT 130 /* what tailscale-rs advertises; a runtime setting */

/* Key text prefixes (types/key). */
#define TS_PREFIX_MACHINE "mkey:"
#define TS_PREFIX_NODE "nodekey:"
#define TS_PREFIX_DISCO "discokey:"
#define TS_PREFIX_PRIVATE "privkey:"
#define TS_PREFIX_CHALLENGE "chalpub:"
#define TS_KEY_TEXT_MAX 80 /* longest prefix + 64 hex + NUL, with room */

struct evp_md_st;
struct evp_mac_st;
struct evp_cipher_st;
struct evp_cipher_ctx_st;
struct evp_pkey_st;

/* ==== ts_noise.c ==== */

/*
 * One direction of the transport: a Noise CipherState whose 12-byte nonce is 4
 * zero bytes followed by the counter in BIG-endian order (the TS2021 deviation
 * from the spec). There is no rekey; the counter value 2^64-1 is never used.
 */
struct ts_cipher {
    uint8_t key[TS_KEY_LEN];
    uint64_t nonce; /* next counter value; tests may set it directly */
    int failed;     /* sticky: a record failed to open, or the counter ran out */
    struct evp_cipher_st *aead;
    struct evp_cipher_ctx_st *ctx;
};

/*
 * Sets up c with key and nonce 0. Returns 0, H2R_ERR_NOMEM, or
 * H2R_ERR_UNSUPPORTED when OpenSSL has no ChaCha20-Poly1305.
 */
int ts_cipher_init(struct ts_cipher *c, const uint8_t key[TS_KEY_LEN]);

/* Wipes the key and frees the OpenSSL objects. Safe on a zeroed or cleaned struct. */
void ts_cipher_cleanup(struct ts_cipher *c);

/*
 * Encrypts len (<= 65535 - 16) bytes into out (len + 16 bytes: ciphertext and
 * tag) with the next nonce and empty associated data. out may equal pt.
 * Returns 0, H2R_ERR_ARG (too long / not initialised), H2R_ERR_LIMIT (nonce
 * space exhausted) or H2R_ERR_PROTO (OpenSSL failure; c is then failed).
 */
int ts_cipher_seal(struct ts_cipher *c, const uint8_t *pt, size_t len, uint8_t *out);

/*
 * Decrypts and authenticates len bytes (ciphertext plus 16-byte tag) into out
 * (len - 16 bytes, *outlen set); out may equal ct. Returns 0, H2R_ERR_FORMAT
 * (shorter than a tag), H2R_ERR_LIMIT (nonce space exhausted) or H2R_ERR_PROTO
 * (authentication failed: c is failed for good, as TS poisons the read side).
 */
int ts_cipher_open(struct ts_cipher *c, const uint8_t *ct, size_t len, uint8_t *out,
                   size_t *outlen);

enum ts_noise_role {
    TS_NOISE_INITIATOR = 0, /* the node (client) */
    TS_NOISE_RESPONDER = 1  /* the control server; also a passive decoder holding its key */
};

/* A Noise IK HandshakeState. Fields are readable; change them only through the calls. */
struct ts_noise {
    int role;                   /* enum ts_noise_role */
    int step;                   /* messages processed; -1 after a failure */
    uint16_t version;           /* capability version in the prologue */
    uint8_t h[TS_KEY_LEN];      /* handshake hash (channel binding once done) */
    uint8_t ck[TS_KEY_LEN];     /* chaining key */
    uint8_t k[TS_KEY_LEN];      /* current handshake cipher key */
    uint8_t s_priv[TS_KEY_LEN]; /* local static */
    uint8_t s_pub[TS_KEY_LEN];
    uint8_t e_priv[TS_KEY_LEN]; /* local ephemeral */
    uint8_t e_pub[TS_KEY_LEN];
    int e_fixed;                /* ephemeral injected (tests) */
    uint8_t rs[TS_KEY_LEN];     /* remote static: control key, or learned machine key */
    uint8_t re[TS_KEY_LEN];     /* remote ephemeral */
    struct evp_md_st *md;       /* BLAKE2S-256 */
    struct evp_mac_st *mac;     /* HMAC */
    struct evp_cipher_st *aead; /* ChaCha20-Poly1305 */
    struct evp_pkey_st *s_key;  /* s_priv and e_priv, each loaded once: a load */
    struct evp_pkey_st *e_key;  /* costs an X25519 scalar multiplication */
    char err[128];
};

/*
 * Writes the prologue "Tailscale Control Protocol v<version>" (decimal, no
 * NUL counted) into out. Returns its length, or 0 when cap is too small.
 */
size_t ts_noise_prologue(uint16_t version, char *out, size_t cap);

/*
 * Computes the X25519 public key of priv. Returns 0 or H2R_ERR_PROTO
 * (OpenSSL refused the key), H2R_ERR_UNSUPPORTED (no X25519).
 */
int ts_x25519_public(const uint8_t priv[TS_KEY_LEN], uint8_t pub[TS_KEY_LEN]);

/*
 * Starts a client handshake: prologue with version, local static machine_priv,
 * remote static control_pub (from /key). Returns 0, H2R_ERR_UNSUPPORTED (OpenSSL
 * lacks BLAKE2s, HMAC, X25519 or ChaCha20-Poly1305), H2R_ERR_NOMEM or
 * H2R_ERR_PROTO (bad key). On failure n needs no cleanup (cleanup is still safe).
 */
int ts_noise_init_initiator(struct ts_noise *n, uint16_t version,
                            const uint8_t machine_priv[TS_KEY_LEN],
                            const uint8_t control_pub[TS_KEY_LEN]);

/*
 * Starts a server-side handshake with the control key (headscale's
 * noise_private.key). Same returns as ts_noise_init_initiator().
 */
int ts_noise_init_responder(struct ts_noise *n, uint16_t version,
                            const uint8_t control_priv[TS_KEY_LEN]);

/*
 * The same IK handshake with any prologue (the two calls above use the TS2021
 * one): for the public Noise test vectors. rs_pub is the responder's static
 * key, required for the initiator and ignored for the responder. version is
 * left 0. Returns like ts_noise_init_initiator(), or H2R_ERR_ARG.
 */
int ts_noise_init_custom(struct ts_noise *n, int role, const uint8_t *prologue, size_t plen,
                         const uint8_t s_priv[TS_KEY_LEN], const uint8_t *rs_pub);

/*
 * Uses priv as the ephemeral key instead of fresh randomness (test vectors).
 * Call before the first write. Returns 0, H2R_ERR_ARG (too late) or H2R_ERR_PROTO.
 */
int ts_noise_set_ephemeral(struct ts_noise *n, const uint8_t priv[TS_KEY_LEN]);

/*
 * Initiator: writes message 1 (-> e, es, s, ss, payload) into out: 96 + plen
 * bytes (TS2021 sends an empty payload, exactly 96). Returns 0 with *outlen set,
 * H2R_ERR_ARG (wrong role/step, cap too small, message over 65535), H2R_ERR_PROTO
 * (a DH result was all zero / OpenSSL failed; n is then failed).
 */
int ts_noise_write_msg1(struct ts_noise *n, const uint8_t *payload, size_t plen, uint8_t *out,
                        size_t cap, size_t *outlen);

/*
 * Initiator: reads message 2 (<- e, ee, se, payload); the decrypted payload
 * (empty in TS2021) goes to payload/cap, *plen its length (both may be NULL
 * when cap is 0). Returns 0, H2R_ERR_FORMAT (shorter than 48), H2R_ERR_LIMIT
 * (payload larger than cap), H2R_ERR_ARG (wrong role/step) or H2R_ERR_PROTO
 * (authentication failed: wrong control key or prologue; n is then failed).
 */
int ts_noise_read_msg2(struct ts_noise *n, const uint8_t *msg, size_t len, uint8_t *payload,
                       size_t cap, size_t *plen);

/*
 * Responder: reads message 1 and learns the client's machine public key
 * (n->rs) and ephemeral (n->re). With only the control private key this is
 * as far as a passive observer gets: the session keys also need an ephemeral
 * private key. Returns like ts_noise_read_msg2() (H2R_ERR_FORMAT under 96 bytes).
 */
int ts_noise_responder_read_msg1(struct ts_noise *n, const uint8_t *msg, size_t len,
                                 uint8_t *payload, size_t cap, size_t *plen);

/*
 * Responder: writes message 2 (48 + plen bytes) into out. Returns like
 * ts_noise_write_msg1().
 */
int ts_noise_responder_write_msg2(struct ts_noise *n, const uint8_t *payload, size_t plen,
                                  uint8_t *out, size_t cap, size_t *outlen);

/*
 * After both messages: Split() into the transport states. The client sends
 * with k1 and receives with k2, the server the reverse, so tx / rx are
 * assigned by role. Chaining and handshake keys are wiped; n->h stays as the
 * handshake hash. On success tx and rx must be cleaned up by the caller.
 * Returns 0, H2R_ERR_ARG (handshake not finished) or H2R_ERR_NOMEM/UNSUPPORTED.
 */
int ts_noise_split(struct ts_noise *n, struct ts_cipher *tx, struct ts_cipher *rx);

/* Wipes every secret and frees the OpenSSL objects. Safe on a zeroed struct. */
void ts_noise_cleanup(struct ts_noise *n);

/* ==== ts_frame.c: framing ==== */

/* Called once per complete frame; body is borrowed. */
typedef int (*ts_frame_cb)(void *ud, uint8_t type, const uint8_t *body, size_t len);

/*
 * Push parser for one direction of controlbase frames after the HTTP upgrade.
 * server_first: the first frame must be the handshake response (type 2, length
 * exactly 48) or an error (type 3); after an error frame nothing may follow.
 * Every other frame must be a record (type 4, 16..4093 bytes).
 */
struct ts_frame_parser {
    ts_frame_cb on_frame;
    void *ud;
    int expect_response; /* the next frame is the server's handshake answer */
    int closed;          /* an error frame was delivered */
    int rc;              /* sticky error */
    uint8_t hdr[TS_FRAME_HDR_LEN];
    size_t hdr_have;
    size_t body_len, body_have;
    uint64_t frames; /* frames delivered */
    uint64_t bytes;  /* bytes consumed */
    char err[128];
    uint8_t body[TS_MAX_FRAME];
};

/* Prepares p (no allocation); server_first as described above. */
void ts_frame_parser_init(struct ts_frame_parser *p, int server_first, ts_frame_cb on_frame,
                          void *ud);

/*
 * Consumes len bytes (any split), calling on_frame for each complete frame.
 * Returns 0, H2R_ERR_PROTO (unexpected type, data after an error frame),
 * H2R_ERR_FORMAT (response length not 48, record shorter than a tag),
 * H2R_ERR_LIMIT (record longer than 4093), or the callback's non-zero value.
 * Errors are sticky.
 */
int ts_frame_feed(struct ts_frame_parser *p, const uint8_t *buf, size_t len);

/*
 * Builds the initiation frame: BE16 version, type 1, BE16 length, msg1.
 * Returns 0 with *outlen = 5 + len, H2R_ERR_ARG (len > 65535 or cap too small).
 */
int ts_init_frame_build(uint16_t version, const uint8_t *msg1, size_t len, uint8_t *out, size_t cap,
                        size_t *outlen);

/*
 * Parses an initiation frame as the server does: type 1, length 96, 101 bytes
 * in total. *msg1 points into frame. Returns 0 or H2R_ERR_FORMAT / TRUNCATED.
 */
int ts_init_frame_parse(const uint8_t *frame, size_t len, uint16_t *version, const uint8_t **msg1,
                        size_t *msg1_len);

/*
 * Standard base64 with padding, RFC 4648 section 4 (the X-Tailscale-Handshake value). Writes a NUL-
 * terminated string; needs cap >= 4 * ceil(len / 3) + 1. Returns its length
 * through *outlen; H2R_ERR_ARG when cap is too small.
 */
int ts_b64_encode(const uint8_t *in, size_t len, char *out, size_t cap, size_t *outlen);

/*
 * Strict standard base64 decode (padding required, no whitespace), as Go's
 * StdEncoding. Returns 0, H2R_ERR_FORMAT or H2R_ERR_LIMIT (cap too small).
 */
int ts_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *outlen);

/* What a holder of the control private key learns from an initiation frame. */
struct ts_client_identity {
    uint16_t version;                  /* capability version (header = prologue) */
    uint8_t machine_pub[TS_KEY_LEN];   /* the node's machine key (identity) */
    uint8_t ephemeral_pub[TS_KEY_LEN]; /* also visible in clear */
};

/*
 * Decrypts an initiation frame with the control key: parses it, runs the
 * responder's read of message 1 with the prologue of the header's version.
 * errbuf gets the reason on failure. Returns 0, H2R_ERR_FORMAT (not an
 * initiation frame) or H2R_ERR_PROTO (does not authenticate: wrong control key,
 * or version and prologue disagree).
 */
int ts_init_frame_identify(const uint8_t control_priv[TS_KEY_LEN], const uint8_t *frame, size_t len,
                           struct ts_client_identity *out, char *errbuf, size_t errlen);

/*
 * Frames and encrypts len plaintext bytes as records of at most 4077 bytes
 * each (len 0 gives one empty record, which is legal). Output needs
 * ts_record_sealed_len(len) bytes. Returns 0 with *outlen, H2R_ERR_ARG (cap
 * too small; nothing consumed), or a ts_cipher_seal() error.
 */
int ts_record_seal(struct ts_cipher *tx, const uint8_t *pt, size_t len, uint8_t *out, size_t cap,
                   size_t *outlen);

/* Bytes ts_record_seal() writes for len plaintext bytes. */
size_t ts_record_sealed_len(size_t len);

/* ==== ts_frame.c: EarlyNoise ==== */

#define TS_EARLY_MAGIC "\xff\xff\xffTS"
#define TS_EARLY_MAGIC_LEN 5
#define TS_EARLY_HDR_LEN 9 /* magic + BE32 length = an HTTP/2 frame header */
#define TS_EARLY_MAX_JSON (64u << 10)

typedef int (*ts_data_cb)(void *ud, const uint8_t *buf, size_t len);

/*
 * Splits the optional EarlyNoise blob (FF FF FF 'T' 'S', BE32 length, JSON)
 * off the start of the server's plaintext stream; everything else - including
 * the first bytes when they turn out not to be the magic - goes to on_data.
 */
enum ts_early_state {
    TS_EARLY_ST_MAGIC = 0,  /* comparing the first bytes with the magic */
    TS_EARLY_ST_LENGTH = 1, /* reading the BE32 length */
    TS_EARLY_ST_JSON = 2,   /* collecting the JSON */
    TS_EARLY_ST_PASS = 3    /* decided: everything goes to on_data */
};

struct ts_early {
    int state; /* enum ts_early_state */
    uint8_t hdr[TS_EARLY_HDR_LEN];
    size_t hdr_have;
    uint8_t *json; /* heap, json_len bytes, freed by cleanup */
    size_t json_len, json_have;
    size_t max_json;
    int seen;            /* an early payload was delivered */
    ts_data_cb on_early; /* may be NULL: the JSON is dropped */
    ts_data_cb on_data;
    void *ud;
};

/* Prepares e; max_json 0 means TS_EARLY_MAX_JSON. */
void ts_early_init(struct ts_early *e, size_t max_json, ts_data_cb on_early, ts_data_cb on_data,
                   void *ud);

/*
 * Consumes plaintext. Returns 0, H2R_ERR_LIMIT (announced JSON over max_json),
 * H2R_ERR_NOMEM or a callback's value.
 */
int ts_early_feed(struct ts_early *e, const uint8_t *buf, size_t len);

/* Frees the JSON buffer. */
void ts_early_cleanup(struct ts_early *e);

/*
 * Builds the blob a server sends: magic, BE32 length, json. Returns 0 or
 * H2R_ERR_ARG (cap too small: needs 9 + len).
 */
int ts_early_build(const char *json, size_t len, uint8_t *out, size_t cap, size_t *outlen);

/*
 * Reads nodeKeyChallenge ("chalpub:<hex>") from the EarlyNoise JSON.
 * Returns 0, H2R_ERR_FORMAT (not JSON, missing or malformed key).
 */
int ts_early_challenge(const uint8_t *json, size_t len, uint8_t chal[TS_KEY_LEN]);

/* ==== ts_frame.c: a whole TS2021 byte stream ==== */

struct ts_session;

struct ts_session_callbacks {
    /* Client: the handshake completed (keys split); the h2 preface may be sealed now. */
    int (*on_handshake)(void *ud, struct ts_session *s);
    /* Client: the EarlyNoise JSON (NULL: ignored). */
    int (*on_early)(void *ud, const uint8_t *json, size_t len);
    /* Decrypted application bytes (HTTP/2), in order. Required. */
    int (*on_data)(void *ud, const uint8_t *buf, size_t len);
};

enum ts_session_state {
    TS_SESSION_HTTP_HEAD = 0, /* client: waiting for the 101 head */
    TS_SESSION_HANDSHAKE = 1, /* client: waiting for the response frame */
    TS_SESSION_OPEN = 2,      /* records both ways */
    TS_SESSION_FAILED = 3
};

struct ts_http_resp;

/*
 * The record layer of one TS2021 connection: the client feeds every byte the
 * server sends after its request (101 head, handshake response, records) and
 * gets plaintext through on_data with EarlyNoise stripped; the server role
 * (fake servers in tests) feeds the client's records. Embedded by value.
 */
struct ts_session {
    int role;  /* enum ts_noise_role */
    int state; /* enum ts_session_state */
    int rc;    /* sticky error */
    struct ts_noise noise;
    struct ts_cipher tx, rx;
    int have_keys;
    struct ts_http_resp *head; /* client, until the 101 is parsed */
    struct ts_frame_parser frames;
    struct ts_early early;
    const struct ts_session_callbacks *cb;
    void *ud;
    uint64_t records_in, records_out;
    uint64_t plain_in, plain_out; /* plaintext bytes */
    char err[200];
    uint8_t plain[TS_MAX_CIPHERTEXT];
};

/*
 * Client: prepares a session for capability version capver with the node's
 * machine key and the control key. cb and ud stay borrowed. Returns 0,
 * H2R_ERR_NOMEM or a ts_noise_init_initiator() error; on failure s needs no
 * cleanup. Fixed ephemerals: ts_noise_set_ephemeral(&s->noise, ...) next.
 */
int ts_session_client_init(struct ts_session *s, uint16_t capver,
                           const uint8_t machine_priv[TS_KEY_LEN],
                           const uint8_t control_pub[TS_KEY_LEN],
                           const struct ts_session_callbacks *cb, void *ud);

/*
 * Client: writes message 1 and the complete "POST /ts2021" upgrade request for
 * host (the Host header: "name[:port]") into out. user_agent NULL means
 * "h2replay". Returns 0 with *outlen, H2R_ERR_ARG (cap, bad host) or a Noise error.
 */
int ts_session_client_request(struct ts_session *s, const char *host, const char *user_agent,
                              char *out, size_t cap, size_t *outlen);

/*
 * Client without HTTP (the upgrade was done elsewhere, e.g. WebSocket): writes
 * the 101-byte initiation frame; the next bytes fed must be the response frame.
 */
int ts_session_client_init_frame(struct ts_session *s, uint8_t out[TS_INIT_FRAME_LEN]);

/*
 * Server: accepts an initiation frame with the control key, writes the 51-byte
 * response frame to resp and opens the session (the client's machine key is
 * then s->noise.rs). Returns 0, or an ts_init_frame_parse() / Noise error
 * (s needs no cleanup then).
 */
int ts_session_server_accept(struct ts_session *s, const uint8_t control_priv[TS_KEY_LEN],
                             const uint8_t *init_frame, size_t len, uint8_t resp[TS_RESP_FRAME_LEN],
                             const struct ts_session_callbacks *cb, void *ud);

/*
 * Opens a session from known transport keys, without a handshake: for
 * decrypting a captured connection from a keylog (k1 = client->server,
 * k2 = server->client) and for fuzzing. Role TS_NOISE_INITIATOR takes
 * tx_key = k1, rx_key = k2, splits EarlyNoise off and must be fed the server's
 * bytes that follow its 51-byte response frame; TS_NOISE_RESPONDER the reverse,
 * fed the client's bytes after the 101. Nonces start at 0 (they are implicit on
 * the wire). Returns 0, H2R_ERR_ARG (no on_data) or a ts_cipher_init() error.
 */
int ts_session_open_keys(struct ts_session *s, int role, const uint8_t tx_key[TS_KEY_LEN],
                         const uint8_t rx_key[TS_KEY_LEN], const struct ts_session_callbacks *cb,
                         void *ud);

/*
 * Consumes bytes from the peer. Returns 0 or a sticky error: H2R_ERR_PROTO
 * (non-101 answer, error frame, bad record, decryption failure; s->err says
 * which), H2R_ERR_LIMIT / FORMAT from the parsers, or a callback's value.
 */
int ts_session_feed(struct ts_session *s, const uint8_t *buf, size_t len);

/*
 * Seals application bytes as records (state must be OPEN). out needs
 * ts_record_sealed_len(len). Returns like ts_record_seal(); a failure is sticky.
 */
int ts_session_seal(struct ts_session *s, const uint8_t *pt, size_t len, uint8_t *out, size_t cap,
                    size_t *outlen);

/* The HTTP status of the upgrade response (client), 0 before the head. */
int ts_session_http_status(const struct ts_session *s);

/* Frees what the session holds and wipes its keys. Safe on a zeroed struct. */
void ts_session_cleanup(struct ts_session *s);

/* ==== ts_upgrade.c ==== */

#define TS_UPGRADE_MAX_FRAME 1024 /* TS2021 frames are 101 bytes; room for payload tests */

/*
 * Builds "POST /ts2021 HTTP/1.1" with Upgrade: tailscale-control-protocol,
 * Connection: upgrade, X-Tailscale-Handshake: base64(frame), Content-Length: 0.
 * host is the Host header value; user_agent NULL means "h2replay". Returns 0
 * with *outlen (out is NUL-terminated), H2R_ERR_ARG (CR/LF/control characters
 * in host or user_agent, empty host, frame over TS_UPGRADE_MAX_FRAME, cap too
 * small).
 */
int ts_upgrade_request_build(const char *host, const char *user_agent, const uint8_t *frame,
                             size_t frame_len, char *out, size_t cap, size_t *outlen);

/* Builds "GET /key?v=<capver> HTTP/1.1" for host. Returns like the above. */
int ts_key_request_build(const char *host, uint16_t capver, const char *user_agent, char *out,
                         size_t cap, size_t *outlen);

enum ts_http_mode {
    TS_HTTP_UPGRADE = 0, /* stop after the head; require 101 + the TS2021 Upgrade value */
    TS_HTTP_FULL = 1     /* read the whole response and keep its body (for /key) */
};

#define TS_HTTP_MAX_HEAD (16u << 10)
#define TS_KEY_MAX_BODY (64u << 10) /* what TS reads of /key */

/*
 * Allocates a response parser (libhttp-parser underneath). max_body caps the
 * kept body in TS_HTTP_FULL mode (0: TS_KEY_MAX_BODY). Returns 0 or H2R_ERR_NOMEM.
 */
int ts_http_resp_new(struct ts_http_resp **out, int mode, size_t max_body);

/* Frees r. NULL is a no-op. */
void ts_http_resp_free(struct ts_http_resp *r);

/*
 * Consumes bytes. *consumed says how many belong to the response: once it is
 * done (ts_http_resp_done()), buf + *consumed onwards is the next protocol's
 * data, untouched. Interim 1xx responses other than 101 are skipped.
 * Returns 0 (done or more input needed), or a sticky error: H2R_ERR_PROTO
 * (UPGRADE mode: status not 101, wrong Upgrade header; any mode: not HTTP),
 * H2R_ERR_LIMIT (head over 16 KiB, body over max_body).
 */
int ts_http_resp_feed(struct ts_http_resp *r, const uint8_t *buf, size_t len, size_t *consumed);

/* Tells the parser the connection closed (ends a body delimited by EOF). Returns
 * 0 when the response is complete, else H2R_ERR_TRUNCATED. */
int ts_http_resp_eof(struct ts_http_resp *r);

/* 1 once the response (UPGRADE: its head) is complete. */
int ts_http_resp_done(const struct ts_http_resp *r);

/* The status code, 0 before the head. */
int ts_http_resp_status(const struct ts_http_resp *r);

/* The kept body (FULL mode). */
const uint8_t *ts_http_resp_body(const struct ts_http_resp *r, size_t *len);

/* Why the last call failed ("" when it did not). */
const char *ts_http_resp_error(const struct ts_http_resp *r);

/*
 * Parses the /key response body {"legacyPublicKey":"mkey:..","publicKey":"mkey:.."}
 * into the control key. Returns 0, H2R_ERR_UNSUPPORTED (empty body or a bare
 * legacy key: the server is too old for Noise, or capver < 39 was asked),
 * H2R_ERR_FORMAT (bad JSON or key) or H2R_ERR_PROTO (publicKey is zero).
 */
int ts_key_response_parse(const uint8_t *body, size_t len, uint8_t control_pub[TS_KEY_LEN],
                          char *errbuf, size_t errlen);

/* ==== ts_map.c: keys ==== */

struct ts_keypair {
    uint8_t priv[TS_KEY_LEN];
    uint8_t pub[TS_KEY_LEN];
};

/* Generates a clamped X25519 key pair from RAND_bytes. Returns 0 or H2R_ERR_PROTO. */
int ts_keypair_generate(struct ts_keypair *kp);

/* Fills kp from a private key. Returns 0 or H2R_ERR_PROTO. */
int ts_keypair_from_private(struct ts_keypair *kp, const uint8_t priv[TS_KEY_LEN]);

/*
 * Writes "<prefix><64 lowercase hex>" NUL-terminated. Returns 0 or H2R_ERR_ARG
 * (cap too small).
 */
int ts_key_format(const char *prefix, const uint8_t key[TS_KEY_LEN], char *out, size_t cap);

/*
 * Parses "<prefix><64 hex>" (either case; surrounding ASCII whitespace, e.g. the
 * newline of noise_private.key, is ignored). Returns 0 or H2R_ERR_FORMAT.
 */
int ts_key_parse(const char *prefix, const char *text, size_t len, uint8_t key[TS_KEY_LEN]);

/* ==== ts_map.c: request bodies ==== */

/* tailcfg.Hostinfo subset; NULL fields are omitted. */
struct ts_hostinfo {
    const char *hostname;
    const char *os;
    const char *os_version;
    const char *ipn_version;
    const char *backend_log_id;
    const char *frontend_log_id;
    const char *go_arch;
    const char *app;
};

struct ts_register_req {
    uint16_t version;                   /* capability version (HS 0.29: >= 113) */
    const uint8_t *node_key;            /* 32 bytes, required */
    const uint8_t *old_node_key;        /* NULL: zero key, as Go marshals it */
    const char *auth_key;               /* pre-auth key -> Auth.AuthKey; NULL: no Auth */
    const char *expiry;                 /* RFC 3339; NULL: omitted (a past time logs out) */
    const char *followup;               /* interactive login URL; NULL: omitted */
    const struct ts_hostinfo *hostinfo; /* NULL: omitted */
    int ephemeral;
};

/*
 * Builds the RegisterRequest JSON. *out is malloc'd (free()), *len its length.
 * Returns 0, H2R_ERR_ARG (no node key) or H2R_ERR_NOMEM.
 */
int ts_register_request_json(const struct ts_register_req *r, char **out, size_t *len);

struct ts_map_req {
    uint16_t version;
    const uint8_t *node_key;  /* required */
    const uint8_t *disco_key; /* NULL: zero key */
    int compress_zstd;        /* Compress "zstd" (else raw JSON frames) */
    int keepalive;
    int stream; /* HS only returns a netmap when streaming */
    int omit_peers;
    const struct ts_hostinfo *hostinfo; /* NULL: omitted */
    const char *const *endpoints;       /* "ip:port" strings */
    size_t n_endpoints;
};

/* Builds the MapRequest JSON. Returns like ts_register_request_json(). */
int ts_map_request_json(const struct ts_map_req *r, char **out, size_t *len);

/* The parts of a RegisterResponse a replay classifies on. */
struct ts_register_resp {
    int machine_authorized;
    int node_key_expired;
    char error[256];    /* "" when none; HS reports auth failures here with HTTP 200 */
    char auth_url[512]; /* "" when none; set: interactive login needed */
    char login_name[128];
};

/* Parses a RegisterResponse body. Returns 0 or H2R_ERR_FORMAT. */
int ts_register_response_parse(const uint8_t *body, size_t len, struct ts_register_resp *out);

/* ==== ts_map.c: the map response stream ==== */

#define TS_MAP_MAX_FRAME_DEFAULT (8u << 20) /* compressed (wire) bytes of one message */
#define TS_MAP_MAX_JSON_DEFAULT (64u << 20) /* decompressed bytes of one message */

/* One decoded MapResponse. Counts are -1 when the field is absent ("unchanged"). */
struct ts_map_msg {
    uint64_t index;        /* 0-based position in the stream, keep-alives included */
    uint64_t netmap_seq;   /* 1-based count of non-keep-alive messages; 0 for keep-alives */
    int keepalive;         /* {"KeepAlive":true} */
    int initial;           /* the first non-keep-alive message (must carry Node) */
    int has_node;          /* Node (self) present */
    int64_t peers;         /* len(Peers): a full peer list */
    int64_t peers_changed; /* len(PeersChanged) */
    int64_t peers_removed; /* len(PeersRemoved) */
    int64_t seq;           /* Seq, -1 absent */
    size_t wire_len;       /* length prefix value */
    const char *json;      /* decompressed body, borrowed */
    size_t json_len;
};

/* Called per message; root (a JSON object) is borrowed until the return. */
typedef int (*ts_map_cb)(void *ud, const struct ts_map_msg *m, json_t *root);

struct ts_map_scratch;

struct ts_map_opts {
    int compressed;   /* 1: bodies are zstd (the request had Compress "zstd") */
    size_t max_frame; /* 0: TS_MAP_MAX_FRAME_DEFAULT */
    size_t max_json;  /* 0: TS_MAP_MAX_JSON_DEFAULT */
    /* NULL: the decoder owns its zstd context and output buffer. Else borrowed from a
     * ts_map_scratch shared by many decoders fed from one thread (a message is inflated
     * and handed to the callback within one feed, so they never need it at once):
     * thousands of held map streams then cost no zstd state each. */
    struct ts_map_scratch *scratch;
};

/*
 * A zstd decompression context and an output buffer to share between decoders
 * of one thread. Returns 0 or H2R_ERR_NOMEM. Free it after its decoders.
 */
int ts_map_scratch_new(struct ts_map_scratch **out);

/* Gives back an output buffer grown past 1 MiB (one huge netmap should not pin it). */
void ts_map_scratch_trim(struct ts_map_scratch *s);

/* Frees s. NULL is a no-op. */
void ts_map_scratch_free(struct ts_map_scratch *s);

struct ts_map_stats {
    uint64_t messages;
    uint64_t keepalives;
    uint64_t netmaps;
    uint64_t wire_bytes; /* prefixes included */
    uint64_t json_bytes;
    int64_t last_peers; /* len(Peers) of the latest full list, -1 none yet */
};

struct ts_map_decoder;

/* Allocates a decoder. Returns 0, H2R_ERR_ARG (no callback) or H2R_ERR_NOMEM. */
int ts_map_decoder_new(struct ts_map_decoder **out, const struct ts_map_opts *o, ts_map_cb cb,
                       void *ud);

/*
 * Consumes response body bytes: repeated [u32 LITTLE-endian length][body].
 * Returns 0 or a sticky error: H2R_ERR_LIMIT (frame or decompressed size over
 * its cap), H2R_ERR_COMPRESS (corrupt or truncated zstd), H2R_ERR_FORMAT
 * (empty frame, not a JSON object), H2R_ERR_NOMEM, or the callback's value.
 */
int ts_map_feed(struct ts_map_decoder *d, const uint8_t *buf, size_t len);

/* 1 when no partial message is buffered (a clean place for the stream to end). */
int ts_map_idle(const struct ts_map_decoder *d);

/* Counters so far. */
const struct ts_map_stats *ts_map_decoder_stats(const struct ts_map_decoder *d);

/* Why the last call failed ("" when it did not). */
const char *ts_map_decoder_error(const struct ts_map_decoder *d);

/* Frees d. NULL is a no-op. */
void ts_map_decoder_free(struct ts_map_decoder *d);

#endif
