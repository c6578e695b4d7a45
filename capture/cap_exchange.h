/*
 * Exchange assembly: turns the passive HTTP/2 decoder's events for one
 * connection into struct h2r_exchange records (request, final response,
 * trailers, bodies, RST/GOAWAY outcome, timestamps), redacts them and hands
 * them to the session sink.
 *
 * The on_* functions have the cap_h2_callbacks signatures with the table as
 * ud, so a session can wire them straight into cap_h2_new().
 *
 * Exchange `error` strings (a public contract of the trace):
 *   NULL                      both END_STREAMs seen (or a NO_ERROR RST after a complete
 *                             response)
 *   "rst_stream:<CODE>"       RST_STREAM ended the stream (rst_by says who); CODE is the
 *                             RFC 9113 §7 name (NO_ERROR, CANCEL, ...) or the decimal number
 *   "goaway:<CODE>"           the server's GOAWAY last-stream-id excludes the stream, so it
 *                             was never processed
 *   "conn_closed"             TCP closed (FIN/RST) with the stream open
 *   "capture_ended"           the capture stopped with the stream open
 *   "capture_gap"             bytes were lost; decoding stopped with the stream open
 *   "proto_error"             framing/HPACK error; decoding stopped with the stream open
 *   "headers_too_large"       a header list was over CAP_H2_MAX_HEADERS/_LIST; stored
 *                             truncated, so the request is not exactly replayable
 */
#ifndef H2R_CAP_EXCHANGE_H
#define H2R_CAP_EXCHANGE_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/trace.h"
#include "cap_session.h"

/* Default cap on streams tracked at once per connection (more are ignored and counted). */
#define CAP_EXCH_MAX_STREAMS 10000u

struct cap_exch_table;

/*
 * Creates the stream table of connection conn_id. env (limits, counters,
 * redactor, exchange ids) and sink must outlive the table; sink is copied.
 * Returns NULL on allocation failure.
 */
struct cap_exch_table *cap_exch_new(struct cap_session_env *env, uint64_t conn_id,
                                    const struct cap_session_sink *sink);

/* Frees the table and every open stream without writing them. NULL is a no-op. */
void cap_exch_free(struct cap_exch_table *t);

/* Changes the concurrent stream cap (tests); 0 restores CAP_EXCH_MAX_STREAMS. */
void cap_exch_set_max_streams(struct cap_exch_table *t, size_t max_streams);

/*
 * Decoder events (see cap_h2_callbacks); ud is the table. Each returns 0, or
 * the negative code of a failed write (also stored in env->write_error), or
 * H2R_ERR_NOMEM. Events for streams not tracked are ignored.
 */
int cap_exch_on_headers(void *ud, int dir, uint32_t stream_id, const struct h2r_hdr *hdrs, size_t n,
                        unsigned flags, int64_t ts_first_ns, int64_t ts_ns);
int cap_exch_on_data(void *ud, int dir, uint32_t stream_id, const uint8_t *data, size_t len,
                     int end_stream, int64_t ts_ns);
int cap_exch_on_rst(void *ud, int dir, uint32_t stream_id, uint32_t code, int64_t ts_ns);
int cap_exch_on_goaway(void *ud, int dir, uint32_t last_stream_id, uint32_t code, int64_t ts_ns);

/*
 * Writes every open exchange, oldest first, with the given error string
 * (one of the constants above) and H2R_EXCH_F_INCOMPLETE when its response
 * had not ended. Returns 0 or the first negative code.
 */
int cap_exch_finish_all(struct cap_exch_table *t, const char *error);

/* Drops every open exchange without writing it (an h2c upgrade the server refused). */
void cap_exch_discard_all(struct cap_exch_table *t);

/* Exchanges written so far. */
uint64_t cap_exch_written(const struct cap_exch_table *t);

/* Streams currently open. */
size_t cap_exch_open_count(const struct cap_exch_table *t);

#endif
