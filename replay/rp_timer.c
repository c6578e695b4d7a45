/*
 * Binary min-heap timers (see rp_timer.h). The replay loop keeps at most
 * one armed timer per in-flight or waiting exchange and per connecting
 * connection, which is tens of thousands at most; a heap keeps every
 * operation O(log n) without the tuning a timer wheel needs for ns deadlines
 * that range from microseconds (20k req/s) to minutes (slow replays).
 */
#include <stdlib.h>

#include "h2replay/error.h"
#include "rp_timer.h"

void rp_timer_init(struct rp_timer *t, uint32_t kind)
{
    t->at = 0;
    t->seq = 0;
    t->idx = RP_TIMER_IDLE;
    t->kind = kind;
}

void rp_heap_init(struct rp_heap *h)
{
    h->v = NULL;
    h->n = 0;
    h->cap = 0;
    h->seq = 0;
}

void rp_heap_free(struct rp_heap *h)
{
    for (uint32_t i = 0; i < h->n; i++)
        h->v[i]->idx = RP_TIMER_IDLE;
    free(h->v);
    rp_heap_init(h);
}

static int before(const struct rp_timer *a, const struct rp_timer *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void place(struct rp_heap *h, uint32_t i, struct rp_timer *t)
{
    h->v[i] = t;
    t->idx = i;
}

static void sift_up(struct rp_heap *h, uint32_t i)
{
    struct rp_timer *t = h->v[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!before(t, h->v[parent]))
            break;
        place(h, i, h->v[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(struct rp_heap *h, uint32_t i)
{
    struct rp_timer *t = h->v[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= h->n)
            break;
        if (child + 1 < h->n && before(h->v[child + 1], h->v[child]))
            child++;
        if (!before(h->v[child], t))
            break;
        place(h, i, h->v[child]);
        i = child;
    }
    place(h, i, t);
}

int rp_heap_arm(struct rp_heap *h, struct rp_timer *t, int64_t at)
{
    if (rp_timer_armed(t))
        rp_heap_cancel(h, t);
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 64;
        if (cap <= h->cap)
            return H2R_ERR_NOMEM;
        struct rp_timer **v = realloc(h->v, (size_t)cap * sizeof(*v));
        if (!v)
            return H2R_ERR_NOMEM;
        h->v = v;
        h->cap = cap;
    }
    t->at = at;
    t->seq = h->seq++;
    place(h, h->n++, t);
    sift_up(h, t->idx);
    return 0;
}

void rp_heap_cancel(struct rp_heap *h, struct rp_timer *t)
{
    if (!rp_timer_armed(t))
        return;
    uint32_t i = t->idx;
    t->idx = RP_TIMER_IDLE;
    h->n--;
    if (i == h->n)
        return;
    struct rp_timer *last = h->v[h->n];
    place(h, i, last);
    if (i > 0 && before(last, h->v[(i - 1) / 2]))
        sift_up(h, i);
    else
        sift_down(h, i);
}

struct rp_timer *rp_heap_pop_due(struct rp_heap *h, int64_t now)
{
    if (h->n == 0 || h->v[0]->at > now)
        return NULL;
    struct rp_timer *t = h->v[0];
    rp_heap_cancel(h, t);
    return t;
}
