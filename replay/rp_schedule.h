/*
 * The replay plan: a trace loaded into memory, ordered for sending.
 *
 * A trace stores exchanges in order of completion; replay needs them in order
 * of request start, grouped by connection, with the causal edges between
 * them. The plan is built once, then only read (by every loop thread and for
 * every target), so it needs no locking. Request data lives in a chunked
 * arena: pointers never move once handed out.
 *
 * Timing model (all trace times are ns on the capture clock):
 *   due(B)   = (B.t_start - trace0) / speed           offset from the section's t0
 *   B waits for A when both are on one connection and A.t_end <= B.t_start
 *            (the client saw A's response before it sent B, so B may use it);
 *   send(B)  = max(due(B), max over such A of done(A) + (B.t_start - A.t_end) / speed)
 * With speed "max" (0) every scaled time is 0: a connection's exchanges go out as
 * soon as their predecessors completed, concurrent ones together, as captured.
 * Only the edges not implied by others are kept (if A -> A' -> B, then A -> B is
 * dropped), at most RP_MAX_DEPS per exchange.
 */
#ifndef H2R_RP_SCHEDULE_H
#define H2R_RP_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/trace.h"

#define RP_MAX_DEPS 16

#define RP_PX_F_UNSENDABLE 0x1u  /* no :method/:path in the trace: cannot be sent */
#define RP_PX_F_PLACEHOLDER 0x2u /* a header or the body contains "$H2R{" */
#define RP_PX_F_DEPS_CAPPED 0x4u /* more than RP_MAX_DEPS direct predecessors */

/* One captured connection. */
struct rp_pconn {
    uint64_t trace_id;
    int64_t t_open;  /* capture clock; 0 when unknown */
    int64_t t_close; /* 0 when unknown */
    uint32_t first;  /* its exchanges: plan->conn_order[first .. first + n_x) */
    uint32_t n_x;
    uint32_t thread; /* loop thread (set by rp_plan_partition) */
    uint32_t local;  /* index among its thread's connections (rp_plan_partition) */
};

/* The captured response of an exchange (kept for the rewrite module only). */
struct rp_px_resp {
    const struct h2r_hdr *hdrs;
    const struct h2r_hdr *trailers;
    const uint8_t *body;
    uint32_t n_hdrs;
    uint32_t n_trailers;
    size_t body_stored;
    uint64_t body_len;
    int64_t rst_code;
    int64_t t_hdrs;
};

/* One exchange, in plan order (request start). */
struct rp_px {
    uint64_t id;
    uint32_t conn;              /* index into plan->conns */
    uint32_t flags;             /* RP_PX_F_* */
    uint32_t trace_flags;       /* H2R_EXCH_F_* */
    int32_t status;             /* trace :status, -1 none */
    int32_t grpc_status;        /* trace grpc-status, -1 none */
    int64_t t_start;            /* request start (capture clock) */
    int64_t t_end;              /* response end, 0 unknown */
    const struct h2r_hdr *hdrs; /* request headers, pseudo-headers first as captured */
    uint32_t n_hdrs;
    uint32_t n_deps;    /* direct predecessors */
    uint32_t dep_first; /* dependents: plan->dependents[dep_first .. + n_dependents) */
    uint32_t n_dependents;
    uint32_t local;      /* index among its thread's exchanges (rp_plan_partition) */
    const uint8_t *body; /* stored request body */
    size_t body_stored;
    uint64_t body_len;  /* bytes to send: the captured length, even when truncated */
    const char *method; /* NUL-terminated (inside hdrs' copy), NULL when absent */
    const char *path;
    const struct rp_px_resp *resp; /* the captured response; NULL unless keep_responses */
};

struct rp_chunk;
struct rp_plan_builder;

struct rp_plan {
    struct rp_pconn *conns;
    uint32_t n_conns;
    struct rp_px *xs;
    uint32_t n_xs;
    uint32_t *conn_order; /* exchange indices grouped by connection, start order inside */
    uint32_t *dependents; /* CSR edge targets, see rp_px.dep_first */
    uint64_t n_edges;
    int64_t trace0;         /* t_start of the first exchange (capture clock) */
    int64_t first_open;     /* earliest connection open, <= trace0 */
    uint32_t n_threads;     /* partition (rp_plan_partition) */
    uint32_t *thread_xs;    /* per thread: number of exchanges */
    uint32_t *thread_conns; /* per thread: number of connections */
    uint64_t n_placeholder; /* exchanges with RP_PX_F_PLACEHOLDER */
    uint64_t first_placeholder_id;
    uint64_t n_unsendable;
    uint64_t n_capped;
    int keep_responses;
    struct rp_chunk *arena;
    struct rp_plan_builder *b; /* NULL once finished */
};

/* An empty plan to fill with rp_plan_add_* and rp_plan_finish (used by rp_plan_load). */
int rp_plan_new(struct rp_plan **out, int keep_responses);

/* Adds trace records (copied). Returns 0 or H2R_ERR_NOMEM / H2R_ERR_LIMIT. */
int rp_plan_add_conn(struct rp_plan *p, const struct h2r_conn *c);
int rp_plan_add_conn_end(struct rp_plan *p, const struct h2r_conn_end *e);
int rp_plan_add_exchange(struct rp_plan *p, const struct h2r_exchange *x);

/* Sorts, groups and computes the causal edges. Returns 0 or H2R_ERR_NOMEM. */
int rp_plan_finish(struct rp_plan *p);

/*
 * Loads a whole trace. *truncated is set to 1 when the trace ends in damage (a
 * capture killed mid-write) and the plan holds the readable prefix; any other
 * read error fails. Returns 0 or a negative code with errbuf filled.
 */
int rp_plan_load(struct rp_plan **out, const char *path, int keep_responses, int *truncated,
                 char *errbuf, size_t errlen);

/* Assigns captured connections to n threads round-robin and fills rp_px.local. */
int rp_plan_partition(struct rp_plan *p, uint32_t n_threads);

void rp_plan_free(struct rp_plan *p);

/* dt / speed in ns; 0 when speed is 0 ("max"). */
int64_t rp_scale(int64_t dt, double speed);

/* Offset of exchange x's due time from the section's t0. */
int64_t rp_plan_due(const struct rp_plan *p, uint32_t x, double speed);

/* Scaled think time between predecessor a's end and b's start (>= 0). */
int64_t rp_plan_gap(const struct rp_plan *p, uint32_t a, uint32_t b, double speed);

/* Offset of connection c's open from t0 (negative: before the first exchange), clamped
 * to -max_lead. */
int64_t rp_plan_conn_open(const struct rp_plan *p, uint32_t c, double speed, int64_t max_lead);

/* A trace-shaped view of exchange x (for the rewrite module). */
void rp_plan_exchange_view(const struct rp_plan *p, uint32_t x, struct h2r_exchange *out);

#endif
