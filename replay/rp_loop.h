/*
 * One replay event loop thread ("worker"): epoll, a timer heap and the
 * captured connections assigned to it, sharing nothing with other workers.
 *
 * A worker replays its share of the plan against one target: it opens one
 * replayed connection per captured connection at its scaled open time,
 * sends every exchange at its scheduled time (or when its causal
 * predecessors completed), and produces exactly one result per exchange.
 * Results leave the thread in batches through a mutex-protected queue to the
 * driver, the only writer of the run file; live counters are atomics the
 * driver samples. The plan and the target are read-only here.
 */
#ifndef H2R_RP_LOOP_H
#define H2R_RP_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "h2replay/run.h"
#include "rp_schedule.h"
#include "rp_stats.h"
#include "rp_rewrite.h"
#include "rp_url.h"

#define RP_BATCH 256

/* One result on its way to the run file; strings are owned by the worker, the plan (or
 * static) except `owned_path` and `owned_authority`, which the consumer frees. */
struct rp_out {
    struct h2r_run_result r;
    char *owned_path;
    char *owned_authority;
};

struct rp_batch {
    struct rp_batch *next;
    uint32_t n;
    struct rp_out v[RP_BATCH];
};

/* Worker -> driver result queue. */
struct rp_sink {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct rp_batch *head, *tail;
    uint32_t finished; /* workers that pushed their last batch */
};

int rp_sink_init(struct rp_sink *s);
void rp_sink_destroy(struct rp_sink *s);
/* Appends b (ownership passes) and wakes the driver; last = 1 for a worker's final push. */
void rp_sink_push(struct rp_sink *s, struct rp_batch *b, int last);
/* Takes every queued batch (a list, NULL when none). Waits up to deadline_mono_ns
 * when the queue is empty. */
struct rp_batch *rp_sink_take(struct rp_sink *s, int64_t deadline_mono_ns, uint32_t *finished);
/* Frees a batch list and the owned strings in it. */
void rp_batch_free_list(struct rp_batch *b);

struct rp_worker_cfg {
    const struct rp_plan *plan;
    uint32_t tid;
    uint32_t section;
    const struct rp_target *target;
    const struct sockaddr *addr; /* NULL: resolution failed (resolve_err) */
    socklen_t addr_len;
    const char *resolve_err;
    double speed;     /* 0 = max */
    int64_t t0;       /* CLOCK_MONOTONIC ns of the section's t0 */
    int64_t max_lead; /* connections open at most this long before t0 */
    int64_t timeout;  /* per request, from the actual send */
    int64_t connect_timeout;
    struct ssl_ctx_st *ssl_ctx; /* NULL for h2c */
    struct rp_sink *sink;
    struct rp_live *live;
    _Atomic uint32_t *conn_seq; /* section-wide replay connection numbering */
    struct rp_rewrite *rw;      /* NULL: requests are sent as captured */
};

struct rp_worker;

/* Prepares a worker (memory, epoll, stop eventfd). Returns 0 or a negative code. */
int rp_worker_new(struct rp_worker **out, const struct rp_worker_cfg *cfg, char *errbuf,
                  size_t errlen);

/* Thread body (pthread signature): runs the loop until every exchange has a result. */
void *rp_worker_main(void *w);

/* Asks the worker to stop (from another thread): in-flight exchanges become
 * "cancelled", unsent ones "skipped". */
void rp_worker_stop(struct rp_worker *w);

/* 0, or the local error that ended the loop early (the results are still complete). */
int rp_worker_status(const struct rp_worker *w);

/* Frees the worker; its strings must no longer be referenced. NULL is a no-op. */
void rp_worker_free(struct rp_worker *w);

#endif
