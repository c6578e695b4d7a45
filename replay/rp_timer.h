/*
 * Timers for the replay event loop: a binary min-heap of intrusive nodes.
 *
 * Push, re-arm and cancel are O(log n), peek is O(1), and a node costs
 * nothing while it is not armed, so every exchange and connection embeds one.
 * Equal deadlines fire in arming order (a sequence number breaks ties), which
 * keeps the send order of exchanges due at the same instant deterministic.
 */
#ifndef H2R_RP_TIMER_H
#define H2R_RP_TIMER_H

#include <stddef.h>
#include <stdint.h>

#define RP_TIMER_IDLE UINT32_MAX

struct rp_timer {
    int64_t at;    /* absolute deadline, CLOCK_MONOTONIC ns */
    uint64_t seq;  /* arming order (tie break) */
    uint32_t idx;  /* position in the heap, RP_TIMER_IDLE when not armed */
    uint32_t kind; /* owner's tag: what to do when it fires */
};

struct rp_heap {
    struct rp_timer **v;
    uint32_t n;
    uint32_t cap;
    uint64_t seq;
};

/* A node that is not armed. */
void rp_timer_init(struct rp_timer *t, uint32_t kind);

static inline int rp_timer_armed(const struct rp_timer *t)
{
    return t->idx != RP_TIMER_IDLE;
}

/* An empty heap (no allocation until the first push). */
void rp_heap_init(struct rp_heap *h);

/* Frees the heap's array; the nodes belong to their owners. */
void rp_heap_free(struct rp_heap *h);

/* Arms t to fire at `at`, or moves it there when already armed.
 * Returns 0 or H2R_ERR_NOMEM (t is then left unarmed). */
int rp_heap_arm(struct rp_heap *h, struct rp_timer *t, int64_t at);

/* Disarms t; a no-op when it is not armed. */
void rp_heap_cancel(struct rp_heap *h, struct rp_timer *t);

/* The earliest timer, or NULL when the heap is empty. */
static inline struct rp_timer *rp_heap_peek(const struct rp_heap *h)
{
    return h->n ? h->v[0] : NULL;
}

/* Removes and returns the earliest timer when it is due at `now`, else NULL. */
struct rp_timer *rp_heap_pop_due(struct rp_heap *h, int64_t now);

#endif
