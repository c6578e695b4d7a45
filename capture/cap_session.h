/*
 * The seam between TCP reassembly and everything above it.
 *
 * The flow layer (cap_flow.c) owns TCP: it reassembles each direction and
 * hands in-order bytes to one cap_session per TCP connection. The session
 * detects the transport (HTTP/2 prior knowledge, HTTP/1.1 Upgrade: h2c, TLS
 * decrypted with a key log, the TS2021 upgrade of Tailscale clients), decodes
 * HTTP/2 passively, assembles exchanges, redacts them and writes conn /
 * exchange / ts_session / conn-end records to the trace.
 *
 * Directions: 0 = client -> server, 1 = server -> client.
 * Nothing here performs I/O except through the trace writer.
 */
#ifndef H2R_CAP_SESSION_H
#define H2R_CAP_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/trace.h"
#include "cap_stats.h"
#include "cap_tls.h"
#include "cap_ts.h"

#define CAP_DIR_C2S 0
#define CAP_DIR_S2C 1

struct cap_redactor; /* cap_redact.h */
struct cap_keylog;   /* cap_keylog.h */

/* Counters owned by the session layer (transport detection, HTTP/2, exchanges). */
struct cap_session_stats {
    uint64_t flows_h2c_prior;
    uint64_t flows_h2c_upgrade;
    uint64_t undecodable_not_http2;     /* no preface / no upgrade: not HTTP/2 */
    uint64_t undecodable_partial;       /* joined mid-stream, HPACK state unknown */
    uint64_t undecodable_gap;           /* lost bytes broke the HTTP/2 framing */
    uint64_t undecodable_proto;         /* framing/HPACK error */
    uint64_t h2_frames;
    uint64_t h2_frames_unknown_type;
    uint64_t h2_hpack_errors;
    uint64_t h2_frame_too_large;
    uint64_t h2_rst_stream;
    uint64_t h2_goaway;
    uint64_t exchanges;
    uint64_t exchanges_incomplete;
    uint64_t bodies_truncated;
    uint64_t redacted_values;
    uint64_t upgrade_rejected;          /* Upgrade: h2c answered without 101 */
    uint64_t streams_cap_hit;           /* too many concurrent streams tracked */
    /* Added by the session layer (exported by cap_session_stats_export). */
    uint64_t flows_no_data;                   /* closed before any payload byte */
    uint64_t undecodable_upgrade_unanswered;  /* Upgrade: h2c never answered */
    uint64_t undecodable_upgrade_unsupported; /* Upgrade: h2c with a chunked request body */
    uint64_t h2_push_promise;           /* PUSH_PROMISE frames (pushed streams not recorded) */
    uint64_t h2_header_block_too_large; /* encoded header block over CAP_H2_MAX_HEADER_BLOCK */
    uint64_t h2_header_list_truncated;  /* decoded list over CAP_H2_MAX_HEADER_LIST/_HEADERS */
    uint64_t h2_frames_ignored;         /* malformed frames an endpoint treats as stream errors */
    uint64_t h2_frames_unknown_stream;  /* HEADERS/DATA for a client stream never tracked */
    uint64_t h2_req_trailers_dropped;   /* request trailers (the trace has no field for them) */
    uint64_t redact_bodies_dropped;     /* stored body withheld: might hold a secret, unparsable */
    uint64_t redact_table_full;         /* placeholder table full: a repeat got a new number */
    /* TLS (cap_tls.c does the record layer and counts its own failures in .tls). */
    uint64_t tls_flows;                 /* first client bytes were a TLS handshake record */
    uint64_t tls_h2;                    /* TLS flows decrypted and decoded as HTTP/2 */
    uint64_t undecodable_tls_no_keylog; /* TLS flow, and the capture has no key log */
    uint64_t undecodable_tls_partial;   /* joined mid-stream in TLS records: no ClientHello */
    struct cap_tls_stats tls;
    struct cap_ts_stats ts; /* TS2021 sessions (cap_ts.c), exported as ts2021.* */
};

/* Shared by all sessions of one capture; owned by the driver. */
struct cap_session_env {
    struct h2r_trace_writer *tw;
    struct cap_session_stats *stats;
    struct cap_redactor *redactor; /* NULL: redaction off */
    struct cap_keylog *keylog;     /* NULL: no key log, TLS flows are undecodable */
    size_t max_req_body;
    size_t max_resp_body;
    uint64_t next_exchange_id; /* incremented by sessions as requests start */
    /* TS2021: the server's Noise private key (32 bytes; NULL: sessions are not identified)
     * and the machine key -> node table (required with noise_key; owned by the driver). */
    const uint8_t *noise_key;
    struct cap_ts_nodes *ts_nodes;
    uint64_t ts_sessions;      /* ts_session ids handed out so far (ids are 1-based) */
    int write_error;           /* first trace write error (negative), 0 if none */
};

struct cap_flow_info {
    uint64_t conn_id;
    char client[64]; /* "1.2.3.4:5678" / "[::1]:5678" */
    char server[64];
    int64_t t_open_ns;
    int partial; /* 1: no SYN seen (joined mid-stream) */
};

struct cap_session;

/*
 * Where a session's records go. cap_session_new() forwards to env->tw; tests
 * and fuzzers substitute their own. Each function returns 0 or a negative
 * H2R_ERR_* code, which the session stores in env->write_error and returns.
 * Records are borrowed for the duration of the call. ts_session NULL: TS2021
 * sessions are followed but their records dropped.
 */
struct cap_session_sink {
    int (*conn)(void *ud, const struct h2r_conn *c);
    int (*conn_end)(void *ud, const struct h2r_conn_end *e);
    int (*exchange)(void *ud, const struct h2r_exchange *x);
    void *ud;
    int (*ts_session)(void *ud, const struct h2r_ts_session *t);
};

/* Creates a session for a new TCP connection. NULL only on allocation failure. */
struct cap_session *cap_session_new(struct cap_session_env *env, const struct cap_flow_info *info);

/* Same, writing records to sink (copied) instead of env->tw. */
struct cap_session *cap_session_new_with_sink(struct cap_session_env *env,
                                              const struct cap_flow_info *info,
                                              const struct cap_session_sink *sink);

/*
 * In-order bytes of one direction. Returns 0; a negative code only for fatal
 * conditions (out of memory, trace write error). Protocol problems mark the
 * session undecodable (counted) and later bytes are ignored.
 */
int cap_session_feed(struct cap_session *s, int dir, const uint8_t *buf, size_t len,
                     int64_t ts_ns);

/* `missing` bytes of direction dir were never seen (capture loss or cap hit). */
void cap_session_gap(struct cap_session *s, int dir, uint64_t missing, int64_t ts_ns);

/*
 * The TCP connection ended (FIN both ways, RST, or end of capture). Emits any
 * pending exchanges (marked incomplete as needed), the ts_session record of a
 * TS2021 connection and the conn-end record.
 * bytes_* and gap_bytes come from the flow layer.
 */
int cap_session_close(struct cap_session *s, uint32_t how, int64_t ts_ns, uint64_t bytes_c2s,
                      uint64_t bytes_s2c, uint64_t gap_bytes);

void cap_session_free(struct cap_session *s);

/* Appends the session counters (tls.* included) to l. */
int cap_session_stats_export(const struct cap_session_stats *st, struct cap_counter_list *l);

/*
 * Flows the session layer gave up on (undecodable), for the summary record's
 * undecodable_flows: every reason counted in st, TLS failures included.
 */
uint64_t cap_session_undecodable_flows(const struct cap_session_stats *st);

#endif
