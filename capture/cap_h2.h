/*
 * Passive HTTP/2 decoder for one connection, both directions.
 *
 * Push parser: cap_h2_feed() takes in-order bytes of one direction and
 * reports header blocks, DATA, RST_STREAM and GOAWAY through callbacks. It
 * keeps one HPACK inflater per direction in step with both endpoints, and
 * never performs I/O. Directions follow cap_session.h: 0 = client -> server
 * (starts with the client connection preface), 1 = server -> client.
 */
#ifndef H2R_CAP_H2_H
#define H2R_CAP_H2_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/trace.h"

struct cap_session_stats;

/* Hard caps (RFC 9113 §4.2 allows payloads up to 2^24-1; §6.5.2 header lists are unbounded). */
#define CAP_H2_MAX_FRAME ((1u << 24) + 9u)       /* header + payload of one frame */
#define CAP_H2_MAX_HEADER_BLOCK (1u << 20)       /* encoded HEADERS + CONTINUATIONs */
#define CAP_H2_MAX_HEADER_LIST (1u << 20)        /* decoded name + value bytes */
#define CAP_H2_MAX_HEADERS H2R_TRACE_MAX_HEADERS /* fields per list */
#define CAP_H2_MAX_PENDING_SETTINGS 32u          /* unacknowledged SETTINGS per direction */

/* Flags of the headers event. */
#define CAP_H2_HDR_END_STREAM 0x1u /* END_STREAM was set on the HEADERS frame */
#define CAP_H2_HDR_TRUNCATED 0x2u  /* list exceeded a cap; only the first fields are given */

/*
 * Event callbacks. Every pointer argument is borrowed until the callback
 * returns. A callback returns 0, or a negative H2R_ERR_* code (never
 * H2R_ERR_PROTO) that aborts the feed and is returned by cap_h2_feed().
 * Any callback may be NULL.
 */
struct cap_h2_callbacks {
    /* A complete header block (HEADERS + CONTINUATIONs). ts_first_ns: packet carrying the
     * first byte of the HEADERS frame; ts_ns: packet completing the block. */
    int (*on_headers)(void *ud, int dir, uint32_t stream_id, const struct h2r_hdr *hdrs, size_t n,
                      unsigned flags, int64_t ts_first_ns, int64_t ts_ns);
    /* DATA payload bytes (padding removed), possibly in several pieces per frame. The frame's
     * END_STREAM is reported as a final call with len == 0 and end_stream == 1. */
    int (*on_data)(void *ud, int dir, uint32_t stream_id, const uint8_t *data, size_t len,
                   int end_stream, int64_t ts_ns);
    int (*on_rst)(void *ud, int dir, uint32_t stream_id, uint32_t code, int64_t ts_ns);
    int (*on_goaway)(void *ud, int dir, uint32_t last_stream_id, uint32_t code, int64_t ts_ns);
};

struct cap_h2;

/*
 * Creates a decoder. cb is copied; ud is passed to every callback; st receives the
 * h2_* counters and must outlive the decoder. Returns NULL on allocation failure.
 */
struct cap_h2 *cap_h2_new(const struct cap_h2_callbacks *cb, void *ud,
                          struct cap_session_stats *st);

/* Frees the decoder and its inflaters. NULL is a no-op. */
void cap_h2_free(struct cap_h2 *h);

/*
 * Feeds in-order bytes of direction dir captured at ts_ns. Returns 0;
 * H2R_ERR_PROTO when the bytes break RFC 9113/7541 in a way the endpoints
 * could not have survived (the decoder is then dead and every later call
 * returns H2R_ERR_PROTO; cap_h2_errmsg() says why); or the negative code a
 * callback returned, or H2R_ERR_NOMEM.
 */
int cap_h2_feed(struct cap_h2 *h, int dir, const uint8_t *buf, size_t len, int64_t ts_ns);

/*
 * Applies a SETTINGS payload sent by direction sender as already acknowledged
 * (the HTTP2-Settings header of an h2c upgrade, RFC 7540 §3.2.1, is
 * acknowledged by the 101 response). Returns 0 or H2R_ERR_PROTO on a
 * malformed payload, H2R_ERR_NOMEM.
 */
int cap_h2_apply_settings(struct cap_h2 *h, int sender, const uint8_t *payload, size_t len);

/* Lowers the per-frame cap (tests, fuzzers); 0 restores CAP_H2_MAX_FRAME. */
void cap_h2_set_max_frame(struct cap_h2 *h, uint32_t max_frame);

/* Why the decoder died ("" while healthy). */
const char *cap_h2_errmsg(const struct cap_h2 *h);

/* RFC 9113 §7 name of an error code ("CANCEL"), or NULL for codes it does not define. */
const char *cap_h2_error_code_name(uint32_t code);

#endif
