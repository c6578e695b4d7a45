/*
 * TCP flow table for the capture stage.
 *
 * Every decoded segment is looked up here by its 4-tuple, so the table is a
 * chained hash over a canonical key (the two endpoints in a fixed order, so
 * both directions find the same entry) with a seeded 64-bit mix; it grows by
 * doubling and never allocates per packet, only per flow.
 *
 * The table also answers the questions only the connection as a whole can:
 * which side is the client (the SYN tells; without it the first payload or
 * the port numbers do, and the flow is marked partial), when the connection
 * is over (FIN both ways, RST, end of capture), and when a 4-tuple is reused.
 * Closed flows linger for a while as tombstones so the trailing ACKs and
 * retransmissions of a finished connection do not open a bogus new one.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cap_flow.h"

#define FLOW_INITIAL_BUCKETS 1024u
/* Tombstones outlive twice the MSL of RFC 9293 section 3.4.2 (two minutes), in capture
 * time: late retransmissions of a finished connection must not open a new one. */
#define FLOW_LINGER_NS (240ll * 1000000000ll)

enum flow_state { FLOW_OPEN = 0, FLOW_CLOSED = 1 };

struct flow_key {
    uint8_t family;
    uint8_t addr[2][16]; /* endpoint 0 sorts before endpoint 1 */
    uint16_t port[2];
};

struct cap_flow {
    struct cap_flow *hnext; /* hash chain */
    struct cap_flow *prev;  /* open list (creation order) or closed list (close order) */
    struct cap_flow *next;
    struct flow_key key;
    uint64_t hash;
    struct cap_reasm rs[2]; /* by endpoint, not by direction: the client may be unknown yet */
    struct cap_session *sess;
    int64_t t_first;
    int64_t t_syn; /* first SYN or SYN+ACK, 0: none */
    int64_t t_fin; /* when FINs had been seen both ways, 0: not yet */
    int64_t t_closed;
    int client_ep; /* 0/1, -1 while undecided */
    int by_syn;    /* the client was decided by a SYN or SYN+ACK */
    int state;     /* enum flow_state */
};

struct flow_list {
    struct cap_flow *head;
    struct cap_flow *tail;
    size_t n;
};

struct cap_flow_table {
    struct cap_flow **buckets;
    size_t nbuckets; /* power of two */
    size_t nentries; /* open + closed flows in the hash */
    struct flow_list open;
    struct flow_list closed;
    struct cap_flow_cfg cfg;
    struct cap_session_env *env;
    struct cap_reasm_env renv;
    struct cap_flow_stats st;
    uint64_t next_conn_id;
};

/* ---- lists ---- */

static void list_append(struct flow_list *l, struct cap_flow *f)
{
    f->next = NULL;
    f->prev = l->tail;
    if (l->tail)
        l->tail->next = f;
    else
        l->head = f;
    l->tail = f;
    l->n++;
}

static void list_remove(struct flow_list *l, struct cap_flow *f)
{
    if (l->head == f)
        l->head = f->next;
    else
        f->prev->next = f->next;
    if (l->tail == f)
        l->tail = f->prev;
    else
        f->next->prev = f->prev;
    f->prev = f->next = NULL;
    l->n--;
}

/* ---- hashing ---- */

static uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t key_hash(const struct flow_key *k, uint64_t seed)
{
    const uint64_t mul = 0x9e3779b97f4a7c15ull;
    uint64_t h = seed ^ ((uint64_t)k->family << 32 | (uint64_t)k->port[0] << 16 | k->port[1]);

    for (int e = 0; e < 2; e++) {
        for (int i = 0; i < 16; i += 8) {
            h = (h ^ load64(k->addr[e] + i)) * mul;
            h ^= h >> 29;
        }
    }
    return mix64(h);
}

static int key_equal(const struct flow_key *a, const struct flow_key *b)
{
    return a->family == b->family && a->port[0] == b->port[0] && a->port[1] == b->port[1] &&
           memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

/* Builds the canonical key; returns the endpoint index of the segment's sender. */
static int key_from_seg(struct flow_key *k, const struct cap_tcp_seg *seg)
{
    int c = memcmp(seg->src, seg->dst, sizeof(seg->src));
    int sender = c > 0 || (c == 0 && seg->sport > seg->dport);

    k->family = seg->family;
    memcpy(k->addr[sender], seg->src, 16);
    memcpy(k->addr[!sender], seg->dst, 16);
    k->port[sender] = seg->sport;
    k->port[!sender] = seg->dport;
    return sender;
}

/* ---- table ---- */

static struct cap_flow *table_lookup(const struct cap_flow_table *t, const struct flow_key *k,
                                     uint64_t h)
{
    struct cap_flow *f = t->buckets[h & (t->nbuckets - 1)];

    while (f && !(f->hash == h && key_equal(&f->key, k)))
        f = f->hnext;
    return f;
}

static int table_grow(struct cap_flow_table *t)
{
    size_t n = t->nbuckets * 2;
    struct cap_flow **nb = calloc(n, sizeof(struct cap_flow *));

    if (!nb)
        return H2R_ERR_NOMEM;
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct cap_flow *f = t->buckets[i];
        while (f) {
            struct cap_flow *nx = f->hnext;
            size_t b = f->hash & (n - 1);
            f->hnext = nb[b];
            nb[b] = f;
            f = nx;
        }
    }
    free(t->buckets);
    t->buckets = nb;
    t->nbuckets = n;
    return 0;
}

static void table_unlink(struct cap_flow_table *t, struct cap_flow *f)
{
    struct cap_flow **pp = &t->buckets[f->hash & (t->nbuckets - 1)];

    while (*pp && *pp != f)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = f->hnext;
    t->nentries--;
}

static void flow_free(struct cap_flow *f)
{
    cap_reasm_release(&f->rs[0]);
    cap_reasm_release(&f->rs[1]);
    cap_session_free(f->sess);
    free(f);
}

/* Drops a closed flow's tombstone. */
static void forget_closed(struct cap_flow_table *t, struct cap_flow *f)
{
    table_unlink(t, f);
    list_remove(&t->closed, f);
    flow_free(f);
}

static void evict_tombstones(struct cap_flow_table *t, int64_t now)
{
    while (t->closed.head &&
           (t->closed.n > t->cfg.max_flows || t->closed.head->t_closed + FLOW_LINGER_NS < now))
        forget_closed(t, t->closed.head);
}

/* ---- reassembly sinks: endpoint -> direction -> session ---- */

static int flow_data(struct cap_flow *f, int ep, const uint8_t *buf, size_t len, int64_t ts_ns)
{
    if (!f->sess)
        return 0;
    return cap_session_feed(f->sess, ep == f->client_ep ? CAP_DIR_C2S : CAP_DIR_S2C, buf, len,
                            ts_ns);
}

static int flow_gap(struct cap_flow *f, int ep, uint64_t missing, int64_t ts_ns)
{
    if (f->sess)
        cap_session_gap(f->sess, ep == f->client_ep ? CAP_DIR_C2S : CAP_DIR_S2C, missing, ts_ns);
    return 0;
}

static int sink_data0(void *ud, const uint8_t *buf, size_t len, int64_t ts_ns)
{
    return flow_data(ud, 0, buf, len, ts_ns);
}

static int sink_data1(void *ud, const uint8_t *buf, size_t len, int64_t ts_ns)
{
    return flow_data(ud, 1, buf, len, ts_ns);
}

static int sink_gap0(void *ud, uint64_t missing, int64_t ts_ns)
{
    return flow_gap(ud, 0, missing, ts_ns);
}

static int sink_gap1(void *ud, uint64_t missing, int64_t ts_ns)
{
    return flow_gap(ud, 1, missing, ts_ns);
}

static const struct cap_reasm_sink endpoint_sinks[2] = {
    {sink_data0, sink_gap0},
    {sink_data1, sink_gap1},
};

/* ---- client detection ---- */

static int has_prefix(const uint8_t *p, size_t len, const char *lit, size_t min)
{
    size_t n = strlen(lit);

    if (len < n) {
        if (len < min)
            return 0;
        n = len;
    }
    return memcmp(p, lit, n) == 0;
}

/*
 * Looks at the first payload of a flow without a SYN: 1 when the sender looks
 * like a client (RFC 9113 section 3.4 preface, RFC 9112 section 3 request
 * line), -1 when it looks like an HTTP/1 server, 0 when it cannot tell.
 */
static int classify_first_payload(const uint8_t *p, size_t len)
{
    size_t i = 0;

    if (has_prefix(p, len, "PRI * HTTP/2.0", 3))
        return 1;
    if (has_prefix(p, len, "HTTP/1.", 7))
        return -1;
    /* method = token (upper-case in practice), SP, request-target. */
    while (i < len && i < 16 && p[i] >= 'A' && p[i] <= 'Z')
        i++;
    if (i >= 3 && i + 1 < len && p[i] == ' ' &&
        (p[i + 1] == '/' || p[i + 1] == '*' || (p[i + 1] >= 'a' && p[i + 1] <= 'z') ||
         (p[i + 1] >= '0' && p[i + 1] <= '9')))
        return 1;
    return 0;
}

static void decide_client_from_payload(struct cap_flow_table *t, struct cap_flow *f, int ep,
                                       const struct cap_tcp_seg *seg)
{
    int who = classify_first_payload(seg->payload, seg->payload_len);

    if (who != 0) {
        f->client_ep = who > 0 ? ep : !ep;
        t->st.client_by_payload++;
        return;
    }
    /* Clients use ephemeral ports, which are high. */
    if (f->key.port[0] != f->key.port[1])
        f->client_ep = f->key.port[0] > f->key.port[1] ? 0 : 1;
    else
        f->client_ep = ep;
    t->st.client_by_port++;
}

static void format_endpoint(char *out, size_t outlen, const struct flow_key *k, int ep)
{
    char ip[INET6_ADDRSTRLEN];

    if (!inet_ntop(k->family == 4 ? AF_INET : AF_INET6, k->addr[ep], ip, sizeof(ip)))
        snprintf(ip, sizeof(ip), "?");
    if (k->family == 4)
        snprintf(out, outlen, "%s:%u", ip, (unsigned)k->port[ep]);
    else
        snprintf(out, outlen, "[%s]:%u", ip, (unsigned)k->port[ep]);
}

static int open_session(struct cap_flow_table *t, struct cap_flow *f, int ep,
                        const struct cap_tcp_seg *seg, int64_t ts_ns)
{
    struct cap_flow_info info;

    (void)ts_ns;
    if (f->client_ep < 0)
        decide_client_from_payload(t, f, ep, seg);
    memset(&info, 0, sizeof(info));
    info.conn_id = ++t->next_conn_id;
    format_endpoint(info.client, sizeof(info.client), &f->key, f->client_ep);
    format_endpoint(info.server, sizeof(info.server), &f->key, !f->client_ep);
    info.partial = !f->by_syn;
    info.t_open_ns = f->t_syn ? f->t_syn : f->t_first;
    f->sess = cap_session_new(t->env, &info);
    if (!f->sess)
        return H2R_ERR_NOMEM;
    t->st.flows++;
    if (info.partial)
        t->st.flows_partial++;
    return 0;
}

/* Ends a flow: flushes both directions into the session, closes it, leaves a tombstone. */
static int close_flow(struct cap_flow_table *t, struct cap_flow *f, uint32_t how, int64_t ts_ns)
{
    int rc = 0, rc2;

    if (f->sess) {
        int c = f->client_ep, s = !f->client_ep;
        rc = cap_reasm_flush(&f->rs[c], ts_ns);
        rc2 = cap_reasm_flush(&f->rs[s], ts_ns);
        if (rc == 0)
            rc = rc2;
        rc2 = cap_session_close(f->sess, how, ts_ns, f->rs[c].delivered, f->rs[s].delivered,
                                f->rs[c].gap_bytes + f->rs[s].gap_bytes);
        if (rc == 0)
            rc = rc2;
        cap_session_free(f->sess);
        f->sess = NULL;
    } else {
        t->st.flows_no_payload++;
    }
    switch (how) {
    case H2R_CONN_END_FIN:
        t->st.closed_fin++;
        break;
    case H2R_CONN_END_RST:
        t->st.closed_rst++;
        break;
    case H2R_CONN_END_CAPTURE_END:
        t->st.closed_capture_end++;
        break;
    default:
        t->st.closed_reused++;
        break;
    }
    cap_reasm_release(&f->rs[0]);
    cap_reasm_release(&f->rs[1]);
    list_remove(&t->open, f);
    f->state = FLOW_CLOSED;
    f->t_closed = ts_ns;
    list_append(&t->closed, f);
    return rc;
}

static int flow_create(struct cap_flow_table *t, const struct flow_key *k, uint64_t h,
                       int64_t ts_ns, struct cap_flow **out)
{
    struct cap_flow *f;
    size_t b;

    *out = NULL;
    if (t->nentries >= t->nbuckets && table_grow(t) != 0)
        return H2R_ERR_NOMEM;
    f = calloc(1, sizeof(*f));
    if (!f)
        return H2R_ERR_NOMEM;
    f->key = *k;
    f->hash = h;
    f->client_ep = -1;
    f->t_first = ts_ns;
    cap_reasm_init(&f->rs[0], &t->renv, &endpoint_sinks[0], f);
    cap_reasm_init(&f->rs[1], &t->renv, &endpoint_sinks[1], f);
    b = h & (t->nbuckets - 1);
    f->hnext = t->buckets[b];
    t->buckets[b] = f;
    t->nentries++;
    list_append(&t->open, f);
    if (t->open.n > t->st.max_concurrent)
        t->st.max_concurrent = t->open.n;
    *out = f;
    return 0;
}

/* A SYN without ACK from a side that already started elsewhere in sequence space: a new
 * connection. Its own retransmission, or a SYN overtaken by the handshake's ACK, is not. */
static int is_new_connection(const struct cap_flow *f, const struct cap_tcp_seg *seg, int ep)
{
    const struct cap_reasm *r = &f->rs[ep];

    if ((seg->flags & (CAP_TCP_SYN | CAP_TCP_ACK)) != CAP_TCP_SYN || !r->started)
        return 0;
    if (r->syn_seen)
        return r->isn != seg->seq;
    return seg->seq + 1 != r->first_seq;
}

static int flow_segment(struct cap_flow_table *t, struct cap_flow *f, const struct cap_tcp_seg *seg,
                        int ep, int64_t ts_ns)
{
    unsigned fl = seg->flags;
    int rc;

    if (fl & CAP_TCP_SYN) {
        /* RFC 9293 section 3.5: the SYN sender opens; the SYN+ACK sender answers. */
        if (f->client_ep < 0 || !f->by_syn) {
            if (f->client_ep < 0)
                t->st.client_by_syn++;
            f->client_ep = (fl & CAP_TCP_ACK) ? !ep : ep;
            f->by_syn = 1;
        }
        if (!f->t_syn)
            f->t_syn = ts_ns;
    }
    if (!f->sess && (seg->payload_len > 0 || seg->payload_missing > 0) && !(fl & CAP_TCP_RST)) {
        rc = open_session(t, f, ep, seg, ts_ns);
        if (rc != 0)
            return rc;
    }
    rc = cap_reasm_push(&f->rs[ep], seg->seq, fl, seg->payload, seg->payload_len,
                        seg->payload_missing, ts_ns);
    if (rc != 0)
        return rc;
    if (fl & CAP_TCP_RST)
        return close_flow(t, f, H2R_CONN_END_RST, ts_ns);
    if (f->rs[0].fin_seen && f->rs[1].fin_seen) {
        if (!f->t_fin)
            f->t_fin = ts_ns;
        /* Wait for retransmissions to fill any hole before the FINs; the end of the
         * capture or a reuse of the 4-tuple closes what never completes. */
        if (cap_reasm_fin_done(&f->rs[0]) && cap_reasm_fin_done(&f->rs[1]))
            return close_flow(t, f, H2R_CONN_END_FIN, ts_ns);
    }
    return 0;
}

struct cap_flow_table *cap_flow_table_new(const struct cap_flow_cfg *cfg,
                                          struct cap_session_env *env)
{
    struct cap_flow_table *t = calloc(1, sizeof(*t));

    if (!t)
        goto fail;
    if (cfg)
        t->cfg = *cfg;
    if (!t->cfg.max_flows)
        t->cfg.max_flows = CAP_FLOW_DEFAULT_MAX_FLOWS;
    t->env = env;
    t->renv.max_ooo = t->cfg.max_ooo;
    t->renv.max_ooo_total = t->cfg.max_ooo_total;
    t->nbuckets = FLOW_INITIAL_BUCKETS;
    t->buckets = calloc(t->nbuckets, sizeof(struct cap_flow *));
    if (!t->buckets)
        goto fail_table;
    return t;

fail_table:
    free(t);
fail:
    return NULL;
}

int cap_flow_packet(struct cap_flow_table *t, const struct cap_tcp_seg *seg, int64_t ts_ns)
{
    struct flow_key k;
    struct cap_flow *f;
    uint64_t h;
    int ep, rc;

    evict_tombstones(t, ts_ns);
    ep = key_from_seg(&k, seg);
    h = key_hash(&k, t->cfg.hash_seed);
    f = table_lookup(t, &k, h);
    if (f && f->state == FLOW_CLOSED) {
        if (!(seg->flags & CAP_TCP_SYN)) {
            if (seg->payload_len > 0 || seg->payload_missing > 0)
                t->st.payload_after_close++;
            return 0;
        }
        t->st.tuple_reused++;
        forget_closed(t, f);
        f = NULL;
    } else if (f && is_new_connection(f, seg, ep)) {
        rc = close_flow(t, f, f->t_fin ? H2R_CONN_END_FIN : H2R_CONN_END_UNKNOWN,
                        f->t_fin ? f->t_fin : ts_ns);
        forget_closed(t, f);
        f = NULL;
        if (rc != 0)
            return rc;
    }
    if (!f) {
        if (t->open.n >= t->cfg.max_flows) {
            t->st.flows_cap_hit++;
            return 0;
        }
        rc = flow_create(t, &k, h, ts_ns, &f);
        if (rc != 0)
            return rc;
    }
    return flow_segment(t, f, seg, ep, ts_ns);
}

int cap_flow_close_all(struct cap_flow_table *t, int64_t ts_ns)
{
    int rc = 0;

    while (t->open.head) {
        struct cap_flow *f = t->open.head;
        int rc2 = f->t_fin ? close_flow(t, f, H2R_CONN_END_FIN, f->t_fin)
                           : close_flow(t, f, H2R_CONN_END_CAPTURE_END, ts_ns);
        if (rc == 0)
            rc = rc2;
    }
    return rc;
}

void cap_flow_table_free(struct cap_flow_table *t)
{
    struct cap_flow *f, *nx;

    if (!t)
        return;
    for (f = t->open.head; f; f = nx) {
        nx = f->next;
        flow_free(f);
    }
    for (f = t->closed.head; f; f = nx) {
        nx = f->next;
        flow_free(f);
    }
    free(t->buckets);
    free(t);
}

const struct cap_flow_stats *cap_flow_table_stats(const struct cap_flow_table *t)
{
    return &t->st;
}

const struct cap_reasm_stats *cap_flow_table_reasm_stats(const struct cap_flow_table *t)
{
    return &t->renv.stats;
}

int cap_flow_stats_export(const struct cap_flow_table *t, struct cap_counter_list *l)
{
    const struct cap_flow_stats *st = &t->st;
    const struct {
        const char *name;
        uint64_t value;
    } v[] = {
        {"flow.flows", st->flows},
        {"flow.no_payload", st->flows_no_payload},
        {"flow.partial", st->flows_partial},
        {"flow.cap_hit", st->flows_cap_hit},
        {"flow.client_by_syn", st->client_by_syn},
        {"flow.client_by_payload", st->client_by_payload},
        {"flow.client_by_port", st->client_by_port},
        {"flow.closed_fin", st->closed_fin},
        {"flow.closed_rst", st->closed_rst},
        {"flow.closed_capture_end", st->closed_capture_end},
        {"flow.closed_reused", st->closed_reused},
        {"flow.tuple_reused", st->tuple_reused},
        {"flow.payload_after_close", st->payload_after_close},
        {"flow.max_concurrent", st->max_concurrent},
    };

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int rc = cap_counter_add(l, v[i].name, v[i].value);
        if (rc != 0)
            return rc;
    }
    return cap_reasm_stats_export(&t->renv.stats, l);
}
