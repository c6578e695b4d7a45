/*
 * Per-direction TCP reassembly for passive capture.
 *
 * Sequence numbers are 32-bit and wrap (RFC 9293 section 3.4); comparing them
 * directly is the classic source of reassembly bugs. So every sequence number
 * is turned into a 64-bit "unwrapped" position relative to the next byte to
 * deliver, and all buffering logic works on positions that never wrap. The
 * start of a direction sits at position 2^32, which leaves room below it for
 * (bogus or pre-capture) segments that lie before the first byte we know.
 *
 * The common case - the segment is exactly the next one - delivers straight
 * from the packet buffer, with no copy and no allocation. Only segments that
 * arrive ahead of a hole are copied into a sorted list of disjoint pieces;
 * overlaps are trimmed as they are queued (the first copy wins, which is what
 * most receivers do), so draining the list is a walk from its head.
 *
 * Loss is never waited for forever: when the out-of-order buffer reaches its
 * cap, or the connection closes, holes are skipped and reported as gaps so
 * the layer above can decide what the missing bytes broke.
 */
#include <stdlib.h>
#include <string.h>

#include "cap_reasm.h"

#define REASM_BASE ((uint64_t)1 << 32)
/* RFC 7323 section 2.3: the window never exceeds 2^30 bytes, so a sequence number further
 * ahead than that cannot belong to this connection's current data. */
#define REASM_MAX_AHEAD ((int64_t)1 << 30)

struct cap_reasm_node {
    struct cap_reasm_node *next;
    uint64_t pos; /* first byte */
    uint64_t end; /* one past the last byte */
    int has_data; /* 0: bytes cut by the snaplen, delivered as a gap */
    uint8_t data[];
};

/* One pushed segment after trimming: payload bytes cover [pos, data_end), the
 * snaplen-cut part [data_end, end). */
struct seg_view {
    const uint8_t *data;
    uint64_t pos;
    uint64_t data_end;
    uint64_t end;
};

/* a - b in sequence space (RFC 9293 section 3.4), in [-2^31, 2^31). */
static int64_t seq_delta(uint32_t a, uint32_t b)
{
    uint32_t d = a - b;

    if (d < 0x80000000u)
        return (int64_t)d;
    return (int64_t)d - ((int64_t)1 << 32);
}

static size_t node_cost(const struct cap_reasm_node *n)
{
    return sizeof(*n) + (n->has_data ? (size_t)(n->end - n->pos) : 0);
}

static void advance(struct cap_reasm *r, uint64_t to)
{
    r->next_seq += (uint32_t)(to - r->next);
    r->next = to;
}

static int report_gap(struct cap_reasm *r, uint64_t to, int64_t ts_ns)
{
    uint64_t n = to - r->next;

    advance(r, to);
    r->gap_bytes += n;
    r->env->stats.gaps++;
    r->env->stats.gap_bytes += n;
    return r->sink->gap(r->ud, n, ts_ns);
}

/* Hands [r->next, end) to the sink: bytes when data != NULL, a gap otherwise. */
static int deliver(struct cap_reasm *r, uint64_t end, const uint8_t *data, int64_t ts_ns)
{
    size_t n = (size_t)(end - r->next);

    if (!data)
        return report_gap(r, end, ts_ns);
    advance(r, end);
    r->delivered += n;
    return r->sink->data(r->ud, data, n, ts_ns);
}

/* Delivers [a, b) now when it is next in line, else queues it before *link. */
static int emit_piece(struct cap_reasm *r, struct cap_reasm_node ***link, uint64_t a, uint64_t b,
                      const uint8_t *data, int *queued, int64_t ts_ns)
{
    struct cap_reasm_node *n;
    size_t dlen = data ? (size_t)(b - a) : 0;

    if (a == r->next)
        return deliver(r, b, data, ts_ns);
    n = malloc(sizeof(*n) + dlen);
    if (!n)
        return H2R_ERR_NOMEM;
    n->pos = a;
    n->end = b;
    n->has_data = data != NULL;
    if (dlen)
        memcpy(n->data, data, dlen);
    n->next = **link;
    **link = n;
    *link = &n->next;
    if (!n->next)
        r->ooo_tail = n;
    r->ooo_bytes += node_cost(n);
    r->env->ooo_total += node_cost(n);
    if (r->ooo_bytes > r->env->stats.ooo_bytes_peak)
        r->env->stats.ooo_bytes_peak = r->ooo_bytes;
    *queued = 1;
    return 0;
}

/* Emits the new range [a, b) of segment v, split into captured and cut parts. */
static int emit_range(struct cap_reasm *r, struct cap_reasm_node ***link, uint64_t a, uint64_t b,
                      const struct seg_view *v, int *queued, int64_t ts_ns)
{
    int rc;

    if (a < v->data_end) {
        uint64_t e = b < v->data_end ? b : v->data_end;
        rc = emit_piece(r, link, a, e, v->data + (a - v->pos), queued, ts_ns);
        if (rc != 0)
            return rc;
    }
    if (b > v->data_end)
        return emit_piece(r, link, a > v->data_end ? a : v->data_end, b, NULL, queued, ts_ns);
    return 0;
}

/* 1 when the bytes of v and queued node q differ where both hold captured bytes. */
static int overlap_differs(const struct seg_view *v, const struct cap_reasm_node *q, uint64_t a,
                           uint64_t b)
{
    if (!q->has_data || a >= v->data_end)
        return 0;
    if (b > v->data_end)
        b = v->data_end;
    return memcmp(v->data + (a - v->pos), q->data + (a - q->pos), (size_t)(b - a)) != 0;
}

static void unlink_head(struct cap_reasm *r)
{
    struct cap_reasm_node *q = r->ooo_head;

    r->ooo_head = q->next;
    if (!r->ooo_head)
        r->ooo_tail = NULL;
    r->ooo_bytes -= node_cost(q);
    r->env->ooo_total -= node_cost(q);
}

/* Delivers queued pieces that have become contiguous with r->next. */
static int drain(struct cap_reasm *r, int64_t ts_ns)
{
    for (;;) {
        struct cap_reasm_node *q = r->ooo_head;
        int rc = 0;

        if (!q || q->pos > r->next)
            return 0;
        unlink_head(r);
        if (q->end > r->next) {
            uint64_t off = r->next - q->pos;
            rc = deliver(r, q->end, q->has_data ? q->data + off : NULL, ts_ns);
        }
        free(q);
        if (rc != 0)
            return rc;
    }
}

/* Skips the first hole: reports it as a gap and delivers what follows it. */
static int skip_hole(struct cap_reasm *r, int64_t ts_ns)
{
    /* After a sink error the head may already be contiguous: then there is no hole. */
    if (r->ooo_head->pos > r->next) {
        int rc = report_gap(r, r->ooo_head->pos, ts_ns);
        if (rc != 0)
            return rc;
    }
    return drain(r, ts_ns);
}

static int over_cap(const struct cap_reasm *r)
{
    const struct cap_reasm_env *e = r->env;
    size_t max = e->max_ooo ? e->max_ooo : CAP_REASM_DEFAULT_MAX_OOO;
    uint64_t max_total = e->max_ooo_total ? e->max_ooo_total : CAP_REASM_DEFAULT_MAX_OOO_TOTAL;

    return r->ooo_bytes > max || e->ooo_total > max_total;
}

static int enforce_cap(struct cap_reasm *r, int64_t ts_ns)
{
    int hit = 0, rc = 0;

    while (r->ooo_head && over_cap(r)) {
        hit = 1;
        rc = skip_hole(r, ts_ns);
        if (rc != 0)
            break;
    }
    if (hit)
        r->env->stats.ooo_cap_hit++;
    return rc;
}

void cap_reasm_init(struct cap_reasm *r, struct cap_reasm_env *env,
                    const struct cap_reasm_sink *sink, void *ud)
{
    memset(r, 0, sizeof(*r));
    r->env = env;
    r->sink = sink;
    r->ud = ud;
}

/* First segment of the direction: a SYN gives the ISN, anything else starts mid-stream. */
static void start(struct cap_reasm *r, uint32_t seq, unsigned flags)
{
    r->started = 1;
    r->next = REASM_BASE;
    if (flags & CAP_TCP_SYN) {
        r->syn_seen = 1;
        r->isn = seq;
        r->next_seq = seq + 1; /* the SYN occupies one sequence number */
    } else {
        r->partial = 1;
        r->next_seq = seq;
        r->env->stats.partial_starts++;
    }
    r->first_seq = r->next_seq;
}

/* A SYN after the direction started: a retransmission, or the SYN itself captured late
 * (the handshake's ACK can overtake it between capture points). */
static void late_syn(struct cap_reasm *r, uint32_t seq)
{
    if (r->syn_seen) {
        if (seq == r->isn)
            r->env->stats.syn_retransmit++;
        return;
    }
    if (r->partial && seq + 1 == r->first_seq) {
        r->syn_seen = 1;
        r->isn = seq;
        r->partial = 0;
        r->env->stats.partial_starts--;
        r->env->stats.syn_late++;
    }
}

int cap_reasm_push(struct cap_reasm *r, uint32_t seq, unsigned flags, const uint8_t *data,
                   uint32_t len, uint32_t missing, int64_t ts_ns)
{
    struct cap_reasm_stats *st = &r->env->stats;
    struct cap_reasm_node **link;
    struct seg_view v;
    uint64_t cur;
    int64_t delta;
    int overlap = 0, conflict = 0, fresh = 0, queued = 0, rc = 0;

    st->segments++;
    if (flags & CAP_TCP_RST) {
        /* RFC 9293 section 3.5.3: RST text is diagnostic, never stream data. */
        r->rst_seen = 1;
        if (len)
            st->rst_payload++;
        return 0;
    }
    if (!r->started)
        start(r, seq, flags);
    else if (flags & CAP_TCP_SYN)
        late_syn(r, seq);
    if (missing) {
        st->truncated_segments++;
        st->truncated_bytes += missing;
    }

    delta = seq_delta(seq + ((flags & CAP_TCP_SYN) ? 1u : 0u), r->next_seq);
    if (delta > REASM_MAX_AHEAD) {
        st->out_of_window++;
        return 0;
    }
    /* r->next >= 2^32 and delta >= -2^31: the position cannot underflow. */
    v.pos = (uint64_t)((int64_t)r->next + delta);
    v.end = v.pos + len + missing;
    v.data_end = v.pos + len;
    v.data = data;
    if ((flags & CAP_TCP_FIN) && !r->fin_seen) {
        r->fin_seen = 1;
        r->fin_pos = v.end; /* the FIN occupies the sequence number after the data */
    }
    if (v.end == v.pos)
        return 0;
    if (r->fin_seen && v.end > r->fin_pos) {
        st->data_after_fin++;
        if (v.pos >= r->fin_pos)
            return 0;
        v.end = r->fin_pos;
        if (v.data_end > v.end)
            v.data_end = v.end;
    }
    if (v.end <= r->next) {
        if (v.end <= REASM_BASE)
            st->before_start++;
        else
            st->retransmit++;
        return 0;
    }

    cur = v.pos;
    if (cur < r->next) {
        overlap = 1;
        cur = r->next;
    }
    link = &r->ooo_head;
    if (r->ooo_tail && cur >= r->ooo_tail->end)
        link = &r->ooo_tail->next; /* the usual out-of-order case: append */
    while (cur < v.end) {
        struct cap_reasm_node *q = *link;
        uint64_t oend;

        if (!q || q->pos >= v.end)
            break;
        if (q->end <= cur) {
            link = &q->next;
            continue;
        }
        if (q->pos > cur) {
            rc = emit_range(r, &link, cur, q->pos, &v, &queued, ts_ns);
            if (rc != 0)
                goto out;
            fresh = 1;
            cur = q->pos;
        }
        oend = q->end < v.end ? q->end : v.end;
        overlap = 1;
        if (overlap_differs(&v, q, cur, oend))
            conflict = 1;
        cur = q->end;
        link = &q->next;
    }
    if (cur < v.end) {
        rc = emit_range(r, &link, cur, v.end, &v, &queued, ts_ns);
        if (rc != 0)
            goto out;
        fresh = 1;
    }
    rc = drain(r, ts_ns);
    if (rc != 0)
        goto out;
    rc = enforce_cap(r, ts_ns);
out:
    if (!fresh)
        st->retransmit++;
    else if (overlap)
        st->overlap++;
    if (conflict)
        st->overlap_conflict++;
    if (queued)
        st->out_of_order++;
    return rc;
}

int cap_reasm_flush(struct cap_reasm *r, int64_t ts_ns)
{
    int rc;

    while (r->ooo_head) {
        rc = skip_hole(r, ts_ns);
        if (rc != 0)
            return rc;
    }
    if (r->fin_seen && r->fin_pos > r->next)
        return report_gap(r, r->fin_pos, ts_ns);
    return 0;
}

void cap_reasm_release(struct cap_reasm *r)
{
    while (r->ooo_head) {
        struct cap_reasm_node *q = r->ooo_head;
        unlink_head(r);
        free(q);
    }
}

int cap_reasm_fin_done(const struct cap_reasm *r)
{
    return r->fin_seen && r->next >= r->fin_pos;
}

int cap_reasm_stats_export(const struct cap_reasm_stats *st, struct cap_counter_list *l)
{
    const struct {
        const char *name;
        uint64_t value;
    } v[] = {
        {"tcp.segments", st->segments},
        {"tcp.out_of_order", st->out_of_order},
        {"tcp.retransmit", st->retransmit},
        {"tcp.overlap", st->overlap},
        {"tcp.overlap_conflict", st->overlap_conflict},
        {"tcp.ooo_cap_hit", st->ooo_cap_hit},
        {"tcp.gaps", st->gaps},
        {"tcp.gap_bytes", st->gap_bytes},
        {"tcp.truncated_segments", st->truncated_segments},
        {"tcp.truncated_bytes", st->truncated_bytes},
        {"tcp.partial_starts", st->partial_starts},
        {"tcp.syn_retransmit", st->syn_retransmit},
        {"tcp.syn_late", st->syn_late},
        {"tcp.before_start", st->before_start},
        {"tcp.out_of_window", st->out_of_window},
        {"tcp.data_after_fin", st->data_after_fin},
        {"tcp.rst_payload", st->rst_payload},
        {"tcp.ooo_bytes_peak", st->ooo_bytes_peak},
    };

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int rc = cap_counter_add(l, v[i].name, v[i].value);
        if (rc != 0)
            return rc;
    }
    return 0;
}
