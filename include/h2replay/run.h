/*
 * The run file: the one contract between replay and analyze.
 *
 * Same container as the trace (zstd frames of tagged, length-prefixed
 * records; docs/run-format.md): a meta record, then one section per target
 * (a target is one server replayed with the trace's schedule), each with one
 * result per replayed exchange, periodic samples, and a section end. Readers
 * skip record kinds and fields they do not know.
 *
 * Times inside a section are ns relative to the section's t0 (the replay
 * clock's origin: the moment the trace's first exchange was due), measured
 * on CLOCK_MONOTONIC; the section records t0's wall-clock time.
 */
#ifndef H2REPLAY_RUN_H
#define H2REPLAY_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/error.h"
#include "h2replay/trace.h" /* struct h2r_counter */

#ifdef __cplusplus
extern "C" {
#endif

#define H2R_RUN_FORMAT_VERSION 1

/* Failure classes. The names (h2r_err_class_name) are a public contract. */
enum h2r_err_class {
    H2R_EC_NONE = 0,            /* "ok"-ish: completed, status as expected */
    H2R_EC_REFUSED = 1,         /* "refused": TCP connection refused */
    H2R_EC_CONNECT_TIMEOUT = 2, /* "connect_timeout" */
    H2R_EC_TLS = 3,             /* "tls": handshake or certificate failure */
    H2R_EC_STREAM_RESET = 4,    /* "stream_reset": RST_STREAM from the server (detail: code) */
    H2R_EC_GOAWAY = 5,          /* "goaway": stream not processed after GOAWAY */
    H2R_EC_DEADLINE = 6,        /* "deadline_exceeded": no complete response within --timeout */
    H2R_EC_HTTP_STATUS = 7,     /* "http_status": 4xx/5xx that the trace did not have */
    H2R_EC_GRPC_STATUS = 8,     /* "grpc_status": non-zero grpc-status the trace did not have */
    H2R_EC_CONN_CLOSED = 9,     /* "conn_closed": connection closed mid-stream */
    H2R_EC_CANCELLED = 10,      /* "cancelled": replay stopped (SIGINT/SIGTERM) in flight */
    H2R_EC_PROTOCOL = 11,       /* "protocol": HTTP/2 protocol error */
    H2R_EC_IO = 12,             /* "io": other socket error */
    H2R_EC_SKIPPED = 13,        /* "skipped": not sent (its connection never opened, ...) */
    H2R_EC_TS_HANDSHAKE = 20,   /* TS2021 classes (issue 7) */
    H2R_EC_TS_REGISTER = 21,
    H2R_EC_TS_AUTH = 22,
    H2R_EC_TS_NO_NETMAP = 23,
    H2R_EC_TS_STALLED = 24,
    H2R_EC_TS_CLOSED = 25,
    H2R_EC_MAX_ = 32
};

const char *h2r_err_class_name(uint32_t cls);
/* Inverse of h2r_err_class_name; returns -1 when unknown. */
int h2r_err_class_from_name(const char *name);

struct h2r_run_meta {
    const char *tool_version;
    const char *trace_path;
    const char *trace_sha256; /* hex digest of the trace file: runs of different traces never merge */
    const char *host;
    const char *command;      /* argv joined, secrets from --set masked */
    const char *settings;     /* canonical settings string (speed, timeout, rewrite file hash...) */
    int64_t created_ns;       /* wall clock */
    uint32_t shard_index;     /* 0-based; shard_count 1 = not sharded */
    uint32_t shard_count;
    int64_t start_at_ns;      /* wall clock shared origin (--start-at), 0 = none */
};

struct h2r_run_section {
    uint32_t id;              /* 0, 1, ... in the order targets were replayed */
    const char *name;         /* target name ("sqlite", "pg", or the URL) */
    const char *url;
    double speed;             /* 0 = max */
    int64_t t0_wall_ns;       /* wall clock of the section's t0 */
    int64_t timeout_ns;
    const char *label;        /* free text (e.g. "headscale v0.29.2 sqlite") */
    int64_t clock_offset_ns;  /* CLOCK_REALTIME - CLOCK_MONOTONIC read just before t0; 0 unknown */
    int64_t clock_max_error_ns; /* the kernel's NTP error bound on CLOCK_REALTIME; -1 unknown */
};

struct h2r_run_result {
    uint32_t section;
    uint64_t exchange_id;     /* trace exchange id */
    uint64_t trace_conn;      /* trace connection id */
    uint32_t conn_index;      /* replay connection (0-based within the section) */
    uint32_t stream_id;       /* replay stream id, 0 if never sent */
    const char *method;
    const char *path;         /* after rewriting */
    const char *authority;
    int64_t t_intended_ns;    /* when it was due (schedule) */
    int64_t t_sent_ns;        /* when its HEADERS were submitted, 0 = never */
    int64_t t_first_byte_ns;  /* response headers, 0 = none */
    int64_t t_done_ns;        /* complete or failed */
    int32_t status;           /* -1 none */
    int32_t grpc_status;      /* -1 none */
    int32_t trace_status;     /* what the trace recorded, -1 none */
    int32_t trace_grpc_status;
    uint32_t err_class;       /* enum h2r_err_class */
    const char *err_detail;   /* NULL or e.g. "REFUSED_STREAM", "ECONNREFUSED" */
    uint64_t req_bytes;       /* request body bytes sent */
    uint64_t resp_bytes;      /* response body bytes received */
    uint32_t flags;           /* H2R_RES_F_* */
    /* TS2021 node sessions (flags & H2R_RES_F_TS; zero elsewhere), docs/ts2021.md */
    int64_t t_open_ns;        /* the Noise session opened (101 + handshake response), 0 none */
    int64_t t_netmap_ns;      /* map: first netmap decoded, 0 none */
    int64_t t_last_netmap_ns; /* map: latest netmap message (full or delta), 0 none */
    int64_t t_end_ns;         /* map: the stream ended or the replay closed it, 0 none */
    uint64_t netmaps;         /* map: netmap messages received, keep-alives excluded */
    uint64_t keepalives;      /* map: keep-alive messages received */
    uint64_t peers;           /* map: peers in the node's netmap when the stream ended */
};

#define H2R_RES_F_GRPC 0x1u
#define H2R_RES_F_WAITED 0x2u /* held back by causality (waited for an earlier response) */
#define H2R_RES_F_TS 0x4u     /* a TS2021 node session step: the TS2021 fields are set */

struct h2r_run_sample {
    uint32_t section;
    int64_t t_ns;             /* end of the sampling interval */
    int64_t interval_ns;
    uint64_t in_flight;
    uint64_t open_conns;
    uint64_t due;             /* exchanges due in the interval (offered load) */
    uint64_t sent;
    uint64_t done;
    uint64_t errors;
    int64_t max_late_ns;      /* worst send lateness in the interval */
};

struct h2r_run_section_end {
    uint32_t section;
    int64_t t_end_ns;
    uint64_t exchanges;       /* results written */
    uint64_t errors;
    int interrupted;          /* 1: SIGINT/SIGTERM */
    int64_t cpu_user_ns;      /* the replay process's own cost, for honest reports */
    int64_t cpu_sys_ns;       /* (getrusage RUSAGE_SELF over the section: every thread) */
    uint64_t max_rss_kb;
    /* Engine resources (issue 8); 0 = not measured (older files, node sessions) */
    uint32_t loop_threads;    /* event-loop threads that replayed the section */
    int64_t max_late_ns;      /* worst send lateness of the section */
    int64_t late_p99_ns;      /* p99 send lateness (log-linear histogram, <= 12.5% high) */
    uint64_t peak_fds;        /* most open file descriptors seen (1 s samples) */
    uint64_t peak_conns;      /* most open replay connections seen (1 s samples) */
    uint64_t fd_limit;        /* RLIMIT_NOFILE soft limit */
    uint64_t emfile_errors;   /* results failed with EMFILE/ENFILE: the client ran out of fds */
};

/*
 * An entity the server acknowledged creating (a CreateUser answered
 * grpc-status 0, a node registration accepted...), for `db verify --run`
 * and the verify record. Strings are NULL when unknown.
 */
struct h2r_run_ack {
    uint32_t section;
    uint64_t exchange_id;     /* the result it came from */
    uint64_t trace_conn;
    int64_t t_ns;             /* when the acknowledgement arrived, from t0 */
    const char *kind;         /* "user", "pre_auth_key", "node", "api_key" */
    const char *id;           /* database id as text (decimal), NULL unknown */
    const char *name;         /* users */
    const char *key;          /* pre-auth / API keys: the full key */
    const char *prefix;       /* API keys of the "PREFIX.SECRET" form */
    const char *node_key;     /* nodes: "nodekey:<hex>" as Headscale stores it */
    const char *machine_key;  /* nodes: "mkey:<hex>" */
    const char *hostname;     /* nodes */
    uint32_t source;          /* H2R_ACK_SRC_* */
};

#define H2R_ACK_SRC_RESPONSE 0u /* identity read from the server's answer */
#define H2R_ACK_SRC_REQUEST 1u  /* answer unreadable: identity taken from the request */

#define H2R_RUN_VERIFY_MAX_KINDS 8
#define H2R_RUN_VERIFY_MAX_EXAMPLES 8

/* One entity kind of a verify record ("users", "nodes", "pre_auth_keys", "api_keys"). */
struct h2r_run_verify_kind {
    const char *kind;
    uint64_t acknowledged;
    uint64_t present;         /* live rows made during the section (id above before_max_id) */
    uint64_t lost;            /* acknowledged, no row */
    uint64_t unacknowledged;  /* rows (of present) nothing acknowledged */
    uint64_t existing_before; /* live rows with an id up to before_max_id: not counted above */
    int64_t before_max_id;    /* the highest id when the section started; -1: not known */
    const char *lost_examples[H2R_RUN_VERIFY_MAX_EXAMPLES]; /* short JSON texts */
    size_t n_lost_examples;
    const char *unacked_examples[H2R_RUN_VERIFY_MAX_EXAMPLES];
    size_t n_unacked_examples;
};

/* The end-of-section durability check of `replay --db` (db_verify.c's figures). */
struct h2r_run_verify {
    uint32_t section;
    int64_t t_ns;             /* when it ran, from t0 */
    const char *db_kind;      /* "sqlite" or "postgresql" */
    const char *error;        /* NULL, or why the check could not run (no kinds then) */
    uint64_t acks;            /* acknowledgements of the section */
    uint64_t acks_dropped;    /* acknowledgements the replay could not keep (queue full) */
    uint64_t ignored;         /* acknowledgements without a usable identity */
    uint64_t baseline_failed; /* kinds whose highest id could not be read at the section start */
    struct h2r_run_verify_kind kinds[H2R_RUN_VERIFY_MAX_KINDS];
    size_t n_kinds;
};

/*
 * Database evidence sampled during a section (`replay --db`): named values,
 * e.g. "rows.nodes", "pg.lock_waits", "pg.xact_rollback", "sqlite.wal_bytes".
 */
struct h2r_run_db_sample {
    uint32_t section;
    int64_t t_ns;
    const char *db_kind; /* "sqlite" or "postgresql" */
    const struct h2r_counter *values;
    size_t n_values;
};

enum h2r_run_kind {
    H2R_RUN_REC_SECTION = 2,
    H2R_RUN_REC_RESULT = 3,
    H2R_RUN_REC_SAMPLE = 4,
    H2R_RUN_REC_SECTION_END = 5,
    H2R_RUN_REC_DB_SAMPLE = 6,
    H2R_RUN_REC_ACK = 7,
    H2R_RUN_REC_VERIFY = 8
};

struct h2r_run_record {
    int kind;
    union {
        struct h2r_run_section section;
        struct h2r_run_result result;
        struct h2r_run_sample sample;
        struct h2r_run_section_end end;
        struct h2r_run_db_sample db;
        struct h2r_run_ack ack;
        struct h2r_run_verify verify;
    } u;
};

struct h2r_run_writer;
struct h2r_run_reader;

/* Creates PATH and writes the meta record. */
int h2r_run_writer_open(struct h2r_run_writer **out, const char *path,
                        const struct h2r_run_meta *meta, char *errbuf, size_t errlen);
int h2r_run_write_section(struct h2r_run_writer *w, const struct h2r_run_section *s);
int h2r_run_write_result(struct h2r_run_writer *w, const struct h2r_run_result *r);
int h2r_run_write_sample(struct h2r_run_writer *w, const struct h2r_run_sample *s);
int h2r_run_write_section_end(struct h2r_run_writer *w, const struct h2r_run_section_end *e);
int h2r_run_write_db_sample(struct h2r_run_writer *w, const struct h2r_run_db_sample *s);
int h2r_run_write_ack(struct h2r_run_writer *w, const struct h2r_run_ack *a);
int h2r_run_write_verify(struct h2r_run_writer *w, const struct h2r_run_verify *v);
int h2r_run_writer_flush(struct h2r_run_writer *w);
const char *h2r_run_writer_errmsg(const struct h2r_run_writer *w);
int h2r_run_writer_close(struct h2r_run_writer *w);

int h2r_run_reader_open(struct h2r_run_reader **out, const char *path, char *errbuf,
                        size_t errlen);
int h2r_run_reader_open_mem(struct h2r_run_reader **out, const void *buf, size_t len,
                            char *errbuf, size_t errlen);
const struct h2r_run_meta *h2r_run_reader_meta(const struct h2r_run_reader *r);
/* 1 = record (pointers borrowed until the next call), 0 = clean end, <0 = error. */
int h2r_run_reader_next(struct h2r_run_reader *r, struct h2r_run_record *rec);
uint64_t h2r_run_reader_skipped(const struct h2r_run_reader *r);
const char *h2r_run_reader_errmsg(const struct h2r_run_reader *r);
void h2r_run_reader_free(struct h2r_run_reader *r);

/* True when PATH starts (after decompression) with the run file magic. */
int h2r_run_file_probe(const char *path);

#ifdef __cplusplus
}
#endif

#endif
