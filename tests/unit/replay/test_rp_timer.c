/*
 * Unit tests for the replay timer heap (rp_timer.c): ordering, FIFO among
 * equal deadlines, cancel and re-arm in any position, checked against a
 * brute-force reference under a long random sequence of operations.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "rp_timer.h"

#define N 4000

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Is h a valid heap with consistent back-indices? */
static int heap_ok(const struct rp_heap *h)
{
    for (uint32_t i = 0; i < h->n; i++) {
        if (h->v[i]->idx != i)
            return 0;
        if (i > 0) {
            const struct rp_timer *p = h->v[(i - 1) / 2], *c = h->v[i];
            if (c->at < p->at || (c->at == p->at && c->seq < p->seq))
                return 0;
        }
    }
    return 1;
}

static void test_basic(void)
{
    struct rp_heap h;
    rp_heap_init(&h);
    struct rp_timer a, b, c, d;
    rp_timer_init(&a, 1);
    rp_timer_init(&b, 2);
    rp_timer_init(&c, 3);
    rp_timer_init(&d, 4);
    CHECK(!rp_timer_armed(&a));
    CHECK(rp_heap_peek(&h) == NULL);
    CHECK(rp_heap_pop_due(&h, 1000) == NULL);
    CHECK_EQ_INT(rp_heap_arm(&h, &a, 30), 0);
    CHECK_EQ_INT(rp_heap_arm(&h, &b, 10), 0);
    CHECK_EQ_INT(rp_heap_arm(&h, &c, 20), 0);
    CHECK_EQ_INT(rp_heap_arm(&h, &d, 10), 0); /* same time as b, armed later */
    CHECK(rp_timer_armed(&a));
    CHECK(rp_heap_peek(&h) == &b);
    CHECK(rp_heap_pop_due(&h, 5) == NULL);
    CHECK(rp_heap_pop_due(&h, 10) == &b);
    CHECK(!rp_timer_armed(&b));
    CHECK(rp_heap_pop_due(&h, 10) == &d);
    CHECK(rp_heap_pop_due(&h, 10) == NULL);
    /* re-arm earlier, cancel */
    CHECK_EQ_INT(rp_heap_arm(&h, &a, 15), 0);
    CHECK(rp_heap_peek(&h) == &a);
    rp_heap_cancel(&h, &a);
    rp_heap_cancel(&h, &a); /* twice is a no-op */
    CHECK(rp_heap_peek(&h) == &c);
    CHECK_EQ_INT(h.n, 1);
    rp_heap_free(&h);
    CHECK(!rp_timer_armed(&c));
}

static void test_random(void)
{
    struct rp_heap h;
    rp_heap_init(&h);
    static struct rp_timer t[N];
    for (int i = 0; i < N; i++)
        rp_timer_init(&t[i], (uint32_t)i);
    int64_t now = 0;
    int bad_order = 0, bad_heap = 0, missing = 0;
    for (int step = 0; step < 200000; step++) {
        uint64_t r = next_rand();
        int i = (int)(r % N);
        switch ((r >> 20) % 4) {
        case 0:
        case 1: /* arm / re-arm */
            if (rp_heap_arm(&h, &t[i], now + (int64_t)((r >> 32) % 1000)))
                missing++;
            break;
        case 2:
            rp_heap_cancel(&h, &t[i]);
            break;
        default: { /* advance time and pop everything due, checking order */
            now += (int64_t)((r >> 32) % 50);
            struct rp_timer *last = NULL;
            for (;;) {
                struct rp_timer *p = rp_heap_pop_due(&h, now);
                if (!p)
                    break;
                if (p->at > now)
                    bad_order++;
                if (last && (p->at < last->at || (p->at == last->at && p->seq < last->seq)))
                    bad_order++;
                last = p;
            }
            /* nothing armed may be due any more */
            for (int k = 0; k < N; k++)
                if (rp_timer_armed(&t[k]) && t[k].at <= now)
                    missing++;
            break;
        }
        }
        if (step % 997 == 0 && !heap_ok(&h))
            bad_heap++;
    }
    uint32_t armed = 0;
    for (int k = 0; k < N; k++)
        armed += rp_timer_armed(&t[k]) ? 1u : 0u;
    CHECK_EQ_INT(armed, h.n);
    CHECK_EQ_INT(bad_order, 0);
    CHECK_EQ_INT(bad_heap, 0);
    CHECK_EQ_INT(missing, 0);
    CHECK(heap_ok(&h));
    rp_heap_free(&h);
}

int main(void)
{
    test_basic();
    test_random();
    return check_summary("test_rp_timer");
}
