/*
 * The trace: the one contract between capture and replay.
 *
 * A trace is a zstd-compressed stream of typed, length-prefixed records
 * (docs/trace-format.md). Writers stream records as they happen and end a
 * zstd frame every flush interval so a capture killed mid-way still leaves a
 * readable prefix. Readers decode one record at a time with bounded memory;
 * record kinds and fields they do not know are skipped and counted.
 *
 * Pointers inside records returned by h2r_trace_reader_next() are borrowed:
 * they stay valid until the next call on the same reader. Pointers inside
 * records passed to the writer are borrowed for the duration of the call.
 */
#ifndef H2REPLAY_TRACE_H
#define H2REPLAY_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define H2R_TRACE_FORMAT_VERSION 1

/* Hard caps (bounded memory on read and write). */
#define H2R_TRACE_MAX_RECORD (64u * 1024u * 1024u) /* one encoded record */
#define H2R_TRACE_MAX_HEADERS 1024u                 /* per header list */

enum h2r_transport {
    H2R_TRANSPORT_UNKNOWN = 0,     /* not (yet) identified; see conn end reason */
    H2R_TRANSPORT_H2C_PRIOR = 1,   /* cleartext, client preface first */
    H2R_TRANSPORT_H2C_UPGRADE = 2, /* cleartext, HTTP/1.1 Upgrade: h2c -> 101 */
    H2R_TRANSPORT_TLS = 3,         /* TLS, ALPN h2 */
    H2R_TRANSPORT_TS2021 = 4       /* Tailscale control protocol (Noise) */
};

enum h2r_conn_how {
    H2R_CONN_END_UNKNOWN = 0,
    H2R_CONN_END_FIN = 1,         /* orderly TCP close */
    H2R_CONN_END_RST = 2,         /* TCP reset */
    H2R_CONN_END_CAPTURE_END = 3, /* capture stopped while the flow was open */
    H2R_CONN_END_GOAWAY = 4,      /* GOAWAY seen, then the capture/flow ended */
    H2R_CONN_END_UNDECODABLE = 5  /* gave up decoding; see reason */
};

/* Connection flags. */
#define H2R_CONN_F_PARTIAL 0x1u /* no SYN seen: joined mid-stream */
#define H2R_CONN_F_GAPS 0x2u    /* bytes were lost in at least one direction */

/* Exchange flags. */
#define H2R_EXCH_F_REQ_BODY_TRUNC 0x01u  /* stored request body shorter than req_body_len */
#define H2R_EXCH_F_RESP_BODY_TRUNC 0x02u /* stored response body shorter than resp_body_len */
#define H2R_EXCH_F_REDACTED 0x04u        /* at least one value replaced by a placeholder */
#define H2R_EXCH_F_GRPC 0x08u            /* content-type application/grpc* */
#define H2R_EXCH_F_INCOMPLETE 0x10u      /* response not complete when the exchange ended */

/* One header field. Not NUL-terminated; may contain any byte. */
struct h2r_hdr {
    const uint8_t *name;
    const uint8_t *value;
    uint32_t name_len;
    uint32_t value_len;
};

struct h2r_trace_header {
    uint32_t format_version; /* set by the writer; readers fill what the file says */
    const char *tool_version;
    const char *source;      /* "file:PATH" or "iface:NAME filter:EXPR" */
    int64_t start_ns;        /* wall clock, ns since the Unix epoch, of the first packet */
    int32_t linktype;        /* pcap LINKTYPE_* of the source, -1 if mixed/unknown */
    uint32_t snaplen;
    const char *options;     /* free text: capture options that shaped the trace */
};

/* Written when a flow is identified (or at its end when it never was). */
struct h2r_conn {
    uint64_t id;
    const char *client; /* "1.2.3.4:5678" or "[::1]:5678" */
    const char *server;
    uint32_t transport; /* enum h2r_transport */
    uint32_t flags;     /* H2R_CONN_F_* */
    int64_t t_open_ns;  /* SYN time, or first packet when partial */
    const char *alpn;   /* NULL when none */
};

struct h2r_conn_end {
    uint64_t id;
    int64_t t_close_ns;
    uint32_t how;        /* enum h2r_conn_how */
    uint32_t flags;      /* H2R_CONN_F_* as known at the end */
    int64_t goaway_code; /* -1: none seen */
    uint64_t bytes_c2s;  /* TCP payload bytes delivered in order */
    uint64_t bytes_s2c;
    uint64_t gap_bytes;  /* bytes never seen */
    uint64_t exchanges;
    const char *reason;  /* NULL when decodable; otherwise why not ("not_http2", ...) */
};

struct h2r_exchange {
    uint64_t id; /* unique in the trace; ascending in order of request start */
    uint64_t conn_id;
    uint32_t stream_id;
    uint32_t flags; /* H2R_EXCH_F_* */

    const struct h2r_hdr *req_hdrs; /* wire order, pseudo-headers included */
    size_t n_req_hdrs;
    const uint8_t *req_body; /* stored bytes (may be redacted or truncated) */
    size_t req_body_stored;
    uint64_t req_body_len; /* DATA payload bytes on the wire, after de-padding */

    const struct h2r_hdr *resp_hdrs; /* final response headers (1xx skipped) */
    size_t n_resp_hdrs;
    const uint8_t *resp_body;
    size_t resp_body_stored;
    uint64_t resp_body_len;
    const struct h2r_hdr *trailers;
    size_t n_trailers;

    int32_t status;      /* :status, -1 when no response headers */
    int32_t grpc_status; /* grpc-status from trailers (or trailers-only), -1 none */
    int64_t rst_code;    /* RST_STREAM error code, -1 none */
    uint32_t rst_by;     /* 0 none, 1 client, 2 server */
    int64_t goaway_code; /* GOAWAY that covered this stream, -1 none */

    int64_t t_req_first_ns; /* first byte of the request HEADERS */
    int64_t t_req_end_ns;   /* END_STREAM from the client, 0 unknown */
    int64_t t_resp_hdrs_ns; /* final response HEADERS, 0 unknown */
    int64_t t_resp_end_ns;  /* END_STREAM or RST from the server, 0 unknown */

    const char *error; /* NULL, or why the exchange did not complete normally */
};

/* ---- TS2021 sessions (docs/trace-format.md "ts_session") ----
 *
 * A Tailscale control connection: "POST /ts2021" upgrade, Noise IK, then
 * encrypted records carrying HTTP/2. What a capture can know: the upgrade and
 * its answer, the capability version (in clear in the initiation frame's
 * header), the client's machine key when the server's noise private key was
 * given (--noise-key), and the shape of the encrypted part - every record's
 * direction, size and time. The content is forward-secret and never known. */

enum h2r_ts_how {
    H2R_TS_END_UNKNOWN = 0,
    H2R_TS_END_FIN = 1,         /* TCP closed orderly after the handshake */
    H2R_TS_END_RST = 2,         /* TCP reset after the handshake */
    H2R_TS_END_CAPTURE_END = 3, /* still open when the capture stopped */
    H2R_TS_END_REFUSED = 4,     /* the upgrade was answered with a final non-101 status */
    H2R_TS_END_REJECTED = 5,    /* 101, then an error frame or a close before the answer */
    H2R_TS_END_UNDECODABLE = 6  /* framing broke (gap, bad frame): see reason */
};

#define H2R_TS_F_IDENTIFIED 0x1u /* machine_key holds the client's machine public key */
#define H2R_TS_F_TLS 0x2u        /* the upgrade rode on TLS (decrypted with a key log) */

#define H2R_TS_MAX_RECS 16384u /* records kept per session; later ones only counted */

/* One Noise frame of the session, after the upgrade. */
struct h2r_ts_rec {
    int64_t t_ns;  /* capture time, ns after the session's t_upgrade_ns */
    uint32_t len;  /* frame bytes on the wire, 3-byte header included */
    uint8_t dir;   /* 0: client to server, 1: server to client */
    uint8_t type;  /* frame type: 2 handshake response, 3 error, 4 record */
};

struct h2r_ts_session {
    uint64_t id;      /* unique in the trace, ascending in order of t_upgrade_ns */
    uint64_t conn_id; /* the connection it rode on (a conn record precedes it) */
    uint64_t node;    /* 1-based; sessions with the same machine key share it; 0: unknown */
    uint32_t capver;  /* capability version from the initiation frame; 0: unknown */
    uint32_t flags;   /* H2R_TS_F_* */
    uint8_t machine_key[32]; /* when H2R_TS_F_IDENTIFIED (a public key, not a secret) */
    int32_t status;          /* the upgrade's final HTTP status, -1 when unanswered */
    uint32_t how;            /* enum h2r_ts_how */
    int64_t t_upgrade_ns;    /* first byte of the POST /ts2021 request */
    int64_t t_handshake_ns;  /* the server's handshake response frame, 0 when none */
    int64_t t_end_ns;        /* last packet of the connection, or capture end */
    uint64_t frames_c2s;     /* frames after the upgrade, per direction, all counted */
    uint64_t frames_s2c;
    uint64_t bytes_c2s; /* bytes after the upgrade heads, per direction */
    uint64_t bytes_s2c;
    const struct h2r_ts_rec *recs; /* the first H2R_TS_MAX_RECS frames in capture order */
    size_t n_recs;
    uint64_t recs_dropped; /* frames beyond the cap */
    const char *reason;    /* NULL; or the error frame's text / why decoding stopped */
};

struct h2r_counter {
    const char *name;
    uint64_t value;
};

/* Final record: what the capture saw. counters holds every anomaly counter
 * ("tcp.retransmit", "undecodable.not_http2", ...). */
struct h2r_capture_summary {
    uint64_t packets;
    uint64_t bytes;
    uint64_t flows;
    uint64_t exchanges;
    uint64_t gaps;
    uint64_t undecodable_flows;
    int64_t end_ns;
    const struct h2r_counter *counters;
    size_t n_counters;
};

enum h2r_trace_kind {
    H2R_REC_CONN = 2,
    H2R_REC_CONN_END = 3,
    H2R_REC_EXCHANGE = 4,
    H2R_REC_SUMMARY = 5,
    H2R_REC_TS_SESSION = 6
};

struct h2r_trace_record {
    int kind; /* enum h2r_trace_kind */
    union {
        struct h2r_conn conn;
        struct h2r_conn_end end;
        struct h2r_exchange exch;
        struct h2r_capture_summary summary;
        struct h2r_ts_session ts;
    } u;
};

/* ---- writer ---- */

struct h2r_trace_writer;

struct h2r_trace_writer_opts {
    int level;               /* zstd level; 0 = default (3) */
    uint64_t frame_bytes;    /* end a zstd frame after this many input bytes; 0 = 4 MiB */
};

/*
 * Creates PATH ("-" for stdout) and writes the file header.
 * opts may be NULL. On failure returns a negative code and fills errbuf.
 */
int h2r_trace_writer_open(struct h2r_trace_writer **out, const char *path,
                          const struct h2r_trace_header *hdr,
                          const struct h2r_trace_writer_opts *opts, char *errbuf, size_t errlen);

int h2r_trace_write_conn(struct h2r_trace_writer *w, const struct h2r_conn *c);
int h2r_trace_write_conn_end(struct h2r_trace_writer *w, const struct h2r_conn_end *e);
int h2r_trace_write_exchange(struct h2r_trace_writer *w, const struct h2r_exchange *x);
int h2r_trace_write_summary(struct h2r_trace_writer *w, const struct h2r_capture_summary *s);
/* Written when the session's connection ends (or at capture end); n_recs <= H2R_TS_MAX_RECS. */
int h2r_trace_write_ts_session(struct h2r_trace_writer *w, const struct h2r_ts_session *t);

/* Ends the current zstd frame and flushes to the OS, so readers see every record so far. */
int h2r_trace_writer_flush(struct h2r_trace_writer *w);

/* Compressed bytes written so far. */
uint64_t h2r_trace_writer_bytes(const struct h2r_trace_writer *w);

/* Last error detail for this writer ("" when none). */
const char *h2r_trace_writer_errmsg(const struct h2r_trace_writer *w);

/* Finishes the stream, closes and frees. Returns the first error seen, if any. NULL is a no-op. */
int h2r_trace_writer_close(struct h2r_trace_writer *w);

/* ---- reader ---- */

struct h2r_trace_reader;

/* Opens PATH ("-" for stdin) and reads the header. */
int h2r_trace_reader_open(struct h2r_trace_reader **out, const char *path, char *errbuf,
                          size_t errlen);
/* Same over a memory buffer (borrowed for the reader's lifetime). */
int h2r_trace_reader_open_mem(struct h2r_trace_reader **out, const void *buf, size_t len,
                              char *errbuf, size_t errlen);

const struct h2r_trace_header *h2r_trace_reader_header(const struct h2r_trace_reader *r);

/*
 * Reads the next record. Returns 1 with *rec filled, 0 at the clean end of
 * the trace, or a negative code (errmsg names the compressed byte offset).
 */
int h2r_trace_reader_next(struct h2r_trace_reader *r, struct h2r_trace_record *rec);

/* Records of unknown kind skipped so far. */
uint64_t h2r_trace_reader_skipped(const struct h2r_trace_reader *r);
const char *h2r_trace_reader_errmsg(const struct h2r_trace_reader *r);
void h2r_trace_reader_free(struct h2r_trace_reader *r);

/* Names for enums, for show and the docs ("h2c-prior-knowledge", "fin", ...). */
const char *h2r_transport_name(uint32_t transport);
const char *h2r_conn_how_name(uint32_t how);
const char *h2r_ts_how_name(uint32_t how); /* "fin", "rst", "capture_end", "refused", ... */

/* Looks up a header (case-sensitive, names are lower-case in HTTP/2). NULL if absent. */
const struct h2r_hdr *h2r_hdr_find(const struct h2r_hdr *hdrs, size_t n, const char *name);

#ifdef __cplusplus
}
#endif

#endif
