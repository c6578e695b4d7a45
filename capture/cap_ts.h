/*
 * TS2021 sessions in captured traffic (the Tailscale control protocol as
 * Headscale speaks it; protocol facts in docs/ts2021.md).
 *
 * The session layer (cap_session.c) recognises the "POST /ts2021" upgrade
 * with its own HTTP/1.1 head parser and hands this module the pieces: the
 * X-Tailscale-Handshake value, the status of the answer, then the raw bytes
 * of both directions after the heads. cap_ts follows the controlbase framing
 * (core/ts ts_frame_parser) in each direction and keeps the session's shape:
 * capability version, the client's machine key when the server's Noise
 * private key is known, and every frame's direction, size, type and time.
 * The records themselves are forward-secret and are never decrypted.
 *
 * cap_ts_nodes numbers machine keys in order of first appearance, shared by
 * every session of one capture (owned by the capture driver).
 *
 * Directions: 0 = client -> server, 1 = server -> client (CAP_DIR_*).
 * Nothing here performs I/O.
 */
#ifndef H2R_CAP_TS_H
#define H2R_CAP_TS_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/trace.h"

#define CAP_TS_KEY_LEN 32
#define CAP_TS_MAX_NODES (1u << 20) /* distinct machine keys numbered per capture */
#define CAP_TS_MAX_REASON 160       /* bytes of an error frame's text kept as the reason */
#define CAP_TS_MAX_UPGRADE_BODY ((uint64_t)64 * 1024) /* upgrade request body followed */

/* Counters of the TS2021 recogniser (exported as "ts2021.*" by cap_session). */
struct cap_ts_stats {
    uint64_t sessions;        /* POST /ts2021 upgrades recognised */
    uint64_t identified;      /* machine key recovered with the noise key */
    uint64_t identify_failed; /* a noise key was given, message 1 did not decrypt */
    uint64_t bad_handshake;   /* X-Tailscale-Handshake missing, not base64, not a frame */
    uint64_t refused;         /* the upgrade was answered with a final non-101 status */
    uint64_t rejected;        /* error frame, or closed before the server's answer */
    uint64_t undecodable;     /* framing broke (gap, bad frame, bad answer head) */
    uint64_t frames;          /* frames seen after the upgrade, both directions */
    uint64_t recs_dropped;    /* frames beyond H2R_TS_MAX_RECS in a session (counted only) */
    uint64_t key_requests;    /* connections whose first request was GET /key */
    uint64_t node_table_full; /* a new machine key found the node table full */
};

/* ---- node table ---- */

struct cap_ts_nodes;

/*
 * Allocates an empty table. seed keys the hash (machine keys come from the
 * network; the driver passes a per-run value). Returns NULL on allocation failure.
 */
struct cap_ts_nodes *cap_ts_nodes_new(uint64_t seed);

/* Frees t. NULL is a no-op. */
void cap_ts_nodes_free(struct cap_ts_nodes *t);

/*
 * The node number of key: its 1-based position among the distinct keys seen
 * so far, added when new. Returns the number, 0 when the table is full
 * (CAP_TS_MAX_NODES) or out of memory.
 */
uint64_t cap_ts_nodes_get(struct cap_ts_nodes *t, const uint8_t key[CAP_TS_KEY_LEN]);

/* Distinct keys numbered so far. */
uint64_t cap_ts_nodes_count(const struct cap_ts_nodes *t);

/* ---- one session ---- */

struct cap_ts;

struct cap_ts_cfg {
    uint64_t id;                /* session id (ascending in order of upgrade) */
    uint64_t conn_id;           /* the connection it rides on */
    int64_t t_upgrade_ns;       /* first byte of the upgrade request */
    int tls;                    /* the upgrade rode on TLS: H2R_TS_F_TLS */
    const uint8_t *noise_key;   /* server's Noise private key (32 bytes), NULL: none */
    struct cap_ts_nodes *nodes; /* required when noise_key is set */
    struct cap_ts_stats *stats; /* required */
};

/*
 * Starts a session from the upgrade request. hs is the X-Tailscale-Handshake
 * value (NULL when the header is absent, counted as bad_handshake): strict
 * base64 of the 101-byte initiation frame, whose header gives the capability
 * version; with a noise key, Noise message 1 is decrypted for the machine key.
 * Neither failure is fatal: the session is followed and recorded regardless,
 * with the reason named. Returns the session or NULL on allocation failure.
 */
struct cap_ts *cap_ts_new(const struct cap_ts_cfg *cfg, const uint8_t *hs, size_t hs_len);

/*
 * The server's final answer head: 101 starts the framing in both directions;
 * any other status makes the session "refused" (later bytes are only counted).
 */
void cap_ts_answer(struct cap_ts *t, int status, int64_t ts_ns);

/*
 * The answer head could not be parsed, or the heads exceeded their cap: the
 * session becomes undecodable with reason (a string literal).
 */
void cap_ts_fail(struct cap_ts *t, const char *reason);

/*
 * Bytes of direction dir after the upgrade heads (and after a request body).
 * Only call after cap_ts_answer(t, 101, ...). Framing errors and an error frame
 * settle the session (not an error return; cap_ts_open() turns 0): the caller
 * stops feeding. Returns 0, or H2R_ERR_NOMEM.
 */
int cap_ts_feed(struct cap_ts *t, int dir, const uint8_t *buf, size_t len, int64_t ts_ns);

/* Bytes of direction dir were lost: frame boundaries are gone, decoding stops. */
void cap_ts_gap(struct cap_ts *t, int dir);

/*
 * Whether the session still follows frames: 1 while waiting for the answer or
 * after a 101; 0 once it is settled (refused, error frame, framing error, gap,
 * cap_ts_fail), when later bytes can change nothing but the byte counts.
 */
int cap_ts_open(const struct cap_ts *t);

/*
 * The connection ended (conn_how: enum h2r_conn_how of the TCP end) at t_end_ns.
 * Fills out with the finished record; its pointers (recs, reason) stay valid
 * until cap_ts_free(). Settles how: a decodable session ends fin/rst/
 * capture_end; one the server never accepted ends rejected.
 */
void cap_ts_finish(struct cap_ts *t, uint32_t conn_how, int64_t t_end_ns,
                   struct h2r_ts_session *out);

/* Frees t. NULL is a no-op. */
void cap_ts_free(struct cap_ts *t);

/*
 * Reads a Headscale noise_private.key text ("privkey:<64 hex>", surrounding
 * whitespace allowed) into key. Returns 0 or H2R_ERR_FORMAT.
 */
int cap_ts_parse_noise_key(const char *text, size_t len, uint8_t key[CAP_TS_KEY_LEN]);

#endif
