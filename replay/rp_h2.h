/*
 * One replayed HTTP/2 client connection: a transport plus an nghttp2 session.
 *
 * The connection turns socket readiness into nghttp2 input and nghttp2
 * output into transport writes (nghttp2_session_mem_recv / mem_send, so the
 * library never touches the socket). Its callbacks only record what they
 * see into the stream (status, bytes, reset codes) and, when a stream
 * closes, append it to the owner's done queue: all decisions that call back
 * into nghttp2 (submitting requests, resets, GOAWAY) are taken by the event
 * loop after mem_recv has returned, never from inside a callback.
 */
#ifndef H2R_RP_H2_H
#define H2R_RP_H2_H

#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#include "rp_transport.h"

#define RP_CAPTURE_MAX_BODY (1u << 20)  /* response body bytes kept for capture rules */
#define RP_CAPTURE_MAX_HDRS (64u << 10) /* response header bytes kept */

/* One captured header: offsets into rp_capture.hbuf. */
struct rp_capture_hdr {
    uint32_t name_off, name_len, value_off, value_len;
};

/* A response kept for the rewrite module's capture rules. */
struct rp_capture {
    uint8_t *hbuf; /* header names and values */
    size_t hlen, hcap;
    struct rp_capture_hdr *h;
    size_t n_h, cap_h;
    uint8_t *body;
    size_t body_len, body_cap;
    int truncated; /* a cap was hit (counted, the rest dropped) */
};

/* One request/response on a connection; the loop lends one to an exchange from the
 * moment it is sent (or fails) until its result is written. */
struct rp_stream {
    const uint8_t *body; /* request body source: stored bytes, then zeros */
    size_t body_stored;
    uint64_t body_len;
    uint64_t body_off;
    int32_t status;       /* final :status, -1 none */
    int32_t grpc_status;  /* -1 none */
    int64_t t_first_byte; /* mono ns of the final response HEADERS, 0 none */
    int64_t t_done;       /* mono ns when finished */
    uint64_t req_bytes;
    uint64_t resp_bytes;
    uint32_t stream_id;
    uint32_t err_class;     /* H2R_EC_NONE = complete response */
    const char *err_detail; /* static */
    uint32_t rst_code;
    uint8_t got_rst;
    uint8_t resp_complete; /* END_STREAM from the server */
    uint8_t finished;      /* on (or through) the done queue */
    struct rp_conn *conn;  /* while open */
    struct rp_stream *open_prev, *open_next;
    struct rp_stream *done_next;
    struct rp_capture *cap; /* NULL: response not kept */
    void *owner;            /* the loop's exchange */
    /* NULL, or sees every response DATA chunk as it arrives (TS2021 map streams). It runs
     * inside nghttp2's receive call: it may record and decode, never call nghttp2. */
    void (*on_body)(struct rp_stream *st, const uint8_t *data, size_t len);
};

/* FIFO of finished streams, owned by the loop. */
struct rp_done_q {
    struct rp_stream *head, *tail;
};

enum rp_conn_state {
    RP_CONN_CONNECTING = 0, /* TCP connect / TLS handshake in progress */
    RP_CONN_READY = 1,      /* requests may be submitted */
    RP_CONN_DEAD = 2        /* failed or closed; waiting to be freed */
};

struct rp_conn {
    struct rp_io *io;
    nghttp2_session *h2;
    int state;      /* enum rp_conn_state */
    uint32_t index; /* replay connection index in the section */
    void *owner;    /* the loop's captured-connection slot */
    struct rp_done_q *done;
    struct rp_stream *open_head;
    uint32_t n_open;
    uint8_t *stash; /* output the socket did not take yet */
    size_t stash_len, stash_off, stash_cap;
    int io_want;    /* RP_WANT_* from the last RP_IO_RETRY */
    int more_input; /* the transport may hold input epoll will not signal */
    int goaway;     /* GOAWAY received */
    uint32_t goaway_last;
    uint32_t goaway_code;
    uint32_t err_class;     /* why it died */
    const char *err_detail; /* static, or the transport's buffer (valid until free) */
    char err_buf[96];
};

/*
 * Creates a connection over io (taking ownership) whose finished streams go
 * to done. The client preface and SETTINGS (no push, 1 GiB windows) are queued
 * for the first flush. Returns 0 or H2R_ERR_NOMEM (io is freed).
 */
int rp_conn_new(struct rp_conn **out, struct rp_io *io, struct rp_done_q *done);

/* Drives connection setup. RP_IO_OK: READY; RP_IO_RETRY: wait for io_want;
 * RP_IO_ERROR: dead, err_class / err_detail set. */
int rp_conn_handshake(struct rp_conn *c);

/* 1 when a new request may be submitted (READY and no GOAWAY received). */
int rp_conn_accepts(const struct rp_conn *c);

/*
 * Submits a request (nv copied by nghttp2; body read from st as it goes).
 * st->stream_id is set; st joins the open list. Returns 0, or a negative
 * nghttp2 error (st untouched).
 */
int rp_conn_submit(struct rp_conn *c, struct rp_stream *st, const nghttp2_nv *nv, size_t n_nv);

/* Reads what the transport has (bounded per call) and feeds nghttp2. Returns
 * RP_IO_OK, or RP_IO_ERROR when the connection died (err_* set). */
int rp_conn_read(struct rp_conn *c, uint8_t *scratch, size_t cap);

/* Writes pending output, gathering nghttp2 frames through scratch. Returns
 * RP_IO_OK (io_want says whether output is still pending) or RP_IO_ERROR. */
int rp_conn_flush(struct rp_conn *c, uint8_t *scratch, size_t cap);

/* 1 when output is queued (stash or nghttp2). */
int rp_conn_wants_write(const struct rp_conn *c);

/* Finishes st with class cls and resets its stream (CANCEL); queued on st->conn. */
void rp_conn_cancel(struct rp_conn *c, struct rp_stream *st, uint32_t cls, const char *detail);

/* Finishes every open stream after the connection died: streams above a received
 * GOAWAY's last id become "goaway", the others get cls / detail. */
void rp_conn_fail_all(struct rp_conn *c, uint32_t cls, const char *detail);

/* Queues a GOAWAY (NO_ERROR) for a clean close after the next flush. */
void rp_conn_goaway(struct rp_conn *c);

/* Frees the session and the transport (closing the socket). Open streams must have
 * been failed first. NULL is a no-op. */
void rp_conn_free(struct rp_conn *c);

/* Finishes st (idempotent): records the time, leaves its connection's open list (if
 * any) and joins the done queue q. */
void rp_stream_finish(struct rp_done_q *q, struct rp_stream *st, uint32_t cls, const char *detail);

/* Frees a response capture. NULL is a no-op. */
void rp_capture_free(struct rp_capture *cap);

#endif
