/*
 * The replay plan (see rp_schedule.h for the timing model).
 *
 * Loading copies every record the reader hands out (its pointers are borrowed
 * until the next call) into a chunked arena, interning header names and
 * values (a long trace says ":method GET" a million times; it is stored
 * once), maps capture connection ids to dense indices, then sorts once. The causal edges are
 * computed per connection in one pass over its exchanges in start order with a second list sorted
 * by response end: B's direct predecessors are the exchanges that ended before B started but after
 * the latest start among all exchanges that ended before B started (anything ending earlier is
 * already implied through that one). That keeps a sequential connection at one edge per exchange
 * instead of n^2 / 2.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/error.h"
#include "h2replay/trace.h"
#include "rp_schedule.h"

#define ARENA_CHUNK (1u << 20)
#define MAX_PLAN_XS (UINT32_MAX / 2)

struct rp_chunk {
    struct rp_chunk *next;
    size_t used;
    size_t cap;
    _Alignas(16) unsigned char data[];
};

struct conn_slot {
    uint64_t id;
    uint32_t idx; /* UINT32_MAX: empty */
};

struct str_slot {
    const uint8_t *p; /* NULL: empty */
    uint32_t len;
    uint32_t hash;
};

struct rp_plan_builder {
    struct conn_slot *map;
    uint32_t map_cap; /* power of two */
    uint32_t conns_cap;
    uint32_t xs_cap;
    struct str_slot *strs; /* interned header names and values */
    uint32_t strs_cap;     /* power of two */
    uint32_t n_strs;
};

/* Header names and values longer than this are copied, not interned: long values are
 * mostly unique (tokens, cookies) and would only fill the table. */
#define INTERN_MAX_LEN 256
#define INTERN_MAX_STRS (1u << 20)

/* ---- arena ---- */

static void *arena_alloc(struct rp_plan *p, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    struct rp_chunk *c = p->arena;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
        struct rp_chunk *nc = malloc(sizeof(*nc) + cap);
        if (!nc)
            return NULL;
        nc->used = 0;
        nc->cap = cap;
        if (c && cap != ARENA_CHUNK) {
            /* a big item gets its own chunk behind the current one, which stays open */
            nc->next = c->next;
            c->next = nc;
            nc->used = n;
            return nc->data;
        }
        nc->next = c;
        p->arena = nc;
        c = nc;
    }
    void *r = c->data + c->used;
    c->used += n;
    return r;
}

static const uint8_t *arena_bytes(struct rp_plan *p, const uint8_t *b, size_t n, int nul)
{
    uint8_t *d = arena_alloc(p, n + (nul ? 1 : 0));
    if (!d)
        return NULL;
    if (n)
        memcpy(d, b, n);
    if (nul)
        d[n] = 0;
    return d;
}

static uint32_t hash_bytes(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

static int strs_grow(struct rp_plan_builder *b)
{
    uint32_t cap = b->strs_cap ? b->strs_cap * 2 : 4096;
    struct str_slot *t = calloc(cap, sizeof(*t));
    if (!t)
        return H2R_ERR_NOMEM;
    for (uint32_t i = 0; i < b->strs_cap; i++) {
        if (!b->strs[i].p)
            continue;
        uint32_t j = b->strs[i].hash & (cap - 1);
        while (t[j].p)
            j = (j + 1) & (cap - 1);
        t[j] = b->strs[i];
    }
    free(b->strs);
    b->strs = t;
    b->strs_cap = cap;
    return 0;
}

/* A NUL-terminated arena copy of p[0..n), shared with every equal string seen before
 * (a trace repeats the same names, methods, authorities and user agents millions of times). */
static const uint8_t *intern(struct rp_plan *p, const uint8_t *s, size_t n)
{
    struct rp_plan_builder *b = p->b;
    if (n > INTERN_MAX_LEN || b->n_strs >= INTERN_MAX_STRS)
        return arena_bytes(p, s, n, 1);
    if ((b->n_strs + 1) * 2 > b->strs_cap && strs_grow(b))
        return NULL;
    uint32_t h = hash_bytes(s, n);
    uint32_t j = h & (b->strs_cap - 1);
    while (b->strs[j].p) {
        if (b->strs[j].hash == h && b->strs[j].len == n && memcmp(b->strs[j].p, s, n) == 0)
            return b->strs[j].p;
        j = (j + 1) & (b->strs_cap - 1);
    }
    const uint8_t *c = arena_bytes(p, s, n, 1);
    if (!c)
        return NULL;
    b->strs[j].p = c;
    b->strs[j].len = (uint32_t)n;
    b->strs[j].hash = h;
    b->n_strs++;
    return c;
}

/* Copies a header list: the array into the arena, names and values interned, each value
 * NUL-terminated so :method and :path can be used as C strings in place. */
static int copy_hdrs(struct rp_plan *p, const struct h2r_hdr *src, size_t n,
                     const struct h2r_hdr **dst)
{
    *dst = NULL;
    if (n == 0)
        return 0;
    struct h2r_hdr *h = arena_alloc(p, n * sizeof(*h));
    if (!h)
        return H2R_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        h[i].name_len = src[i].name_len;
        h[i].value_len = src[i].value_len;
        h[i].name = intern(p, src[i].name, src[i].name_len);
        h[i].value = intern(p, src[i].value, src[i].value_len);
        if (!h[i].name || !h[i].value)
            return H2R_ERR_NOMEM;
    }
    *dst = h;
    return 0;
}

/* ---- connection id map ---- */

static uint32_t hash64(uint64_t v)
{
    v ^= v >> 33;
    v *= 0xff51afd7ed558ccdULL;
    v ^= v >> 33;
    return (uint32_t)v;
}

static int map_grow(struct rp_plan_builder *b)
{
    uint32_t cap = b->map_cap ? b->map_cap * 2 : 1024;
    struct conn_slot *m = malloc((size_t)cap * sizeof(*m));
    if (!m)
        return H2R_ERR_NOMEM;
    for (uint32_t i = 0; i < cap; i++)
        m[i].idx = UINT32_MAX;
    for (uint32_t i = 0; i < b->map_cap; i++) {
        if (b->map[i].idx == UINT32_MAX)
            continue;
        uint32_t j = hash64(b->map[i].id) & (cap - 1);
        while (m[j].idx != UINT32_MAX)
            j = (j + 1) & (cap - 1);
        m[j] = b->map[i];
    }
    free(b->map);
    b->map = m;
    b->map_cap = cap;
    return 0;
}

/* Index of capture connection `id`, created (unknown open time) when new. */
static int conn_index(struct rp_plan *p, uint64_t id, uint32_t *out)
{
    struct rp_plan_builder *b = p->b;
    if ((uint64_t)(p->n_conns + 1) * 2 > b->map_cap && map_grow(b))
        return H2R_ERR_NOMEM;
    uint32_t j = hash64(id) & (b->map_cap - 1);
    while (b->map[j].idx != UINT32_MAX) {
        if (b->map[j].id == id) {
            *out = b->map[j].idx;
            return 0;
        }
        j = (j + 1) & (b->map_cap - 1);
    }
    if (p->n_conns == b->conns_cap) {
        uint32_t cap = b->conns_cap ? b->conns_cap * 2 : 256;
        if (cap > MAX_PLAN_XS)
            return H2R_ERR_LIMIT;
        struct rp_pconn *c = realloc(p->conns, (size_t)cap * sizeof(*c));
        if (!c)
            return H2R_ERR_NOMEM;
        p->conns = c;
        b->conns_cap = cap;
    }
    struct rp_pconn *c = &p->conns[p->n_conns];
    memset(c, 0, sizeof(*c));
    c->trace_id = id;
    b->map[j].id = id;
    b->map[j].idx = p->n_conns;
    *out = p->n_conns++;
    return 0;
}

/* ---- building ---- */

int rp_plan_new(struct rp_plan **out, int keep_responses)
{
    *out = NULL;
    struct rp_plan *p = calloc(1, sizeof(*p));
    if (!p)
        return H2R_ERR_NOMEM;
    p->b = calloc(1, sizeof(*p->b));
    if (!p->b) {
        free(p);
        return H2R_ERR_NOMEM;
    }
    p->keep_responses = keep_responses;
    *out = p;
    return 0;
}

int rp_plan_add_conn(struct rp_plan *p, const struct h2r_conn *c)
{
    uint32_t i;
    int rc = conn_index(p, c->id, &i);
    if (rc)
        return rc;
    p->conns[i].t_open = c->t_open_ns;
    return 0;
}

int rp_plan_add_conn_end(struct rp_plan *p, const struct h2r_conn_end *e)
{
    uint32_t i;
    int rc = conn_index(p, e->id, &i);
    if (rc)
        return rc;
    p->conns[i].t_close = e->t_close_ns;
    return 0;
}

static int contains_placeholder(const uint8_t *s, size_t n)
{
    static const char pat[] = "$H2R{";
    const size_t m = sizeof(pat) - 1;
    for (size_t i = 0; i + m <= n; i++)
        if (s[i] == '$' && memcmp(s + i, pat, m) == 0)
            return 1;
    return 0;
}

static int hdrs_have_placeholder(const struct h2r_hdr *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (contains_placeholder(h[i].name, h[i].name_len) ||
            contains_placeholder(h[i].value, h[i].value_len))
            return 1;
    return 0;
}

/* The (NUL-terminated, see copy_hdrs) value of a copied header, NULL when absent. */
static const char *hdr_cstr(const struct h2r_hdr *h, size_t n, const char *name)
{
    const struct h2r_hdr *f = h2r_hdr_find(h, n, name);
    return f ? (const char *)f->value : NULL;
}

static int64_t first_nonzero(const struct h2r_exchange *x)
{
    if (x->t_req_first_ns)
        return x->t_req_first_ns;
    if (x->t_req_end_ns)
        return x->t_req_end_ns;
    if (x->t_resp_hdrs_ns)
        return x->t_resp_hdrs_ns;
    return x->t_resp_end_ns;
}

int rp_plan_add_exchange(struct rp_plan *p, const struct h2r_exchange *x)
{
    struct rp_plan_builder *b = p->b;
    if (p->n_xs == b->xs_cap) {
        uint32_t cap = b->xs_cap ? b->xs_cap * 2 : 1024;
        if (cap > MAX_PLAN_XS)
            return H2R_ERR_LIMIT;
        struct rp_px *v = realloc(p->xs, (size_t)cap * sizeof(*v));
        if (!v)
            return H2R_ERR_NOMEM;
        p->xs = v;
        b->xs_cap = cap;
    }
    struct rp_px *px = &p->xs[p->n_xs];
    memset(px, 0, sizeof(*px));
    int rc = conn_index(p, x->conn_id, &px->conn);
    if (rc)
        return rc;
    px->id = x->id;
    px->trace_flags = x->flags;
    px->status = x->status;
    px->grpc_status = x->grpc_status;
    px->t_start = first_nonzero(x);
    px->t_end = x->t_resp_end_ns;
    px->body_len = x->req_body_len;
    if (px->body_len < x->req_body_stored)
        px->body_len = x->req_body_stored;
    px->body_stored = x->req_body_stored;
    if (copy_hdrs(p, x->req_hdrs, x->n_req_hdrs, &px->hdrs))
        return H2R_ERR_NOMEM;
    px->n_hdrs = (uint32_t)x->n_req_hdrs;
    if (x->req_body_stored) {
        px->body = arena_bytes(p, x->req_body, x->req_body_stored, 0);
        if (!px->body)
            return H2R_ERR_NOMEM;
    }
    px->method = hdr_cstr(px->hdrs, px->n_hdrs, ":method");
    px->path = hdr_cstr(px->hdrs, px->n_hdrs, ":path");
    if (!px->method || !px->path) {
        px->flags |= RP_PX_F_UNSENDABLE;
        p->n_unsendable++;
    }
    if (hdrs_have_placeholder(x->req_hdrs, x->n_req_hdrs) ||
        contains_placeholder(x->req_body, x->req_body_stored)) {
        px->flags |= RP_PX_F_PLACEHOLDER;
        if (p->n_placeholder == 0 || x->id < p->first_placeholder_id)
            p->first_placeholder_id = x->id;
        p->n_placeholder++;
    }
    if (p->keep_responses) {
        struct rp_px_resp *r = arena_alloc(p, sizeof(*r));
        if (!r || copy_hdrs(p, x->resp_hdrs, x->n_resp_hdrs, &r->hdrs) ||
            copy_hdrs(p, x->trailers, x->n_trailers, &r->trailers))
            return H2R_ERR_NOMEM;
        r->n_hdrs = (uint32_t)x->n_resp_hdrs;
        r->n_trailers = (uint32_t)x->n_trailers;
        r->body = NULL;
        if (x->resp_body_stored) {
            r->body = arena_bytes(p, x->resp_body, x->resp_body_stored, 0);
            if (!r->body)
                return H2R_ERR_NOMEM;
        }
        r->body_stored = x->resp_body_stored;
        r->body_len = x->resp_body_len;
        r->rst_code = x->rst_code;
        r->t_hdrs = x->t_resp_hdrs_ns;
        px->resp = r;
    }
    p->n_xs++;
    return 0;
}

static int cmp_px(const void *a, const void *b)
{
    const struct rp_px *x = a, *y = b;
    if (x->t_start != y->t_start)
        return x->t_start < y->t_start ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Sort key for the per-connection "by response end" list. */
struct end_key {
    int64_t t_end;
    uint32_t idx;
};

static int cmp_end(const void *a, const void *b)
{
    const struct end_key *x = a, *y = b;
    if (x->t_end != y->t_end)
        return x->t_end < y->t_end ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

struct edge {
    uint32_t from, to;
};

struct edge_vec {
    struct edge *v;
    uint64_t n, cap;
};

static int edge_push(struct edge_vec *e, uint32_t from, uint32_t to)
{
    if (e->n == e->cap) {
        uint64_t cap = e->cap ? e->cap * 2 : 1024;
        struct edge *v = realloc(e->v, cap * sizeof(*v));
        if (!v)
            return H2R_ERR_NOMEM;
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n].from = from;
    e->v[e->n].to = to;
    e->n++;
    return 0;
}

/* The direct predecessors of every exchange of connection c (see the file comment). */
static int conn_edges(struct rp_plan *p, const struct rp_pconn *c, struct end_key *ends,
                      struct edge_vec *edges)
{
    const uint32_t *order = p->conn_order + c->first;
    uint32_t n_ends = 0;
    for (uint32_t i = 0; i < c->n_x; i++) {
        const struct rp_px *x = &p->xs[order[i]];
        if (x->t_end > 0) {
            ends[n_ends].t_end = x->t_end;
            ends[n_ends].idx = order[i];
            n_ends++;
        }
    }
    qsort(ends, n_ends, sizeof(*ends), cmp_end);
    uint32_t e = 0, lo = 0;
    int64_t smax = INT64_MIN;
    for (uint32_t i = 0; i < c->n_x; i++) {
        uint32_t bi = order[i];
        struct rp_px *bx = &p->xs[bi];
        while (e < n_ends && ends[e].t_end <= bx->t_start && ends[e].idx < bi) {
            int64_t s = p->xs[ends[e].idx].t_start;
            if (s > smax)
                smax = s;
            e++;
        }
        while (lo < e && ends[lo].t_end <= smax)
            lo++;
        uint32_t from = lo;
        if (e - lo > RP_MAX_DEPS) {
            from = e - RP_MAX_DEPS; /* keep the latest-ending ones */
            bx->flags |= RP_PX_F_DEPS_CAPPED;
            p->n_capped++;
        }
        for (uint32_t j = from; j < e; j++) {
            if (edge_push(edges, ends[j].idx, bi))
                return H2R_ERR_NOMEM;
            bx->n_deps++;
        }
    }
    return 0;
}

int rp_plan_finish(struct rp_plan *p)
{
    int rc = H2R_ERR_NOMEM;
    struct end_key *ends = NULL;
    struct edge_vec edges = {NULL, 0, 0};
    uint32_t *fill = NULL;

    if (p->n_xs)
        qsort(p->xs, p->n_xs, sizeof(*p->xs), cmp_px);
    p->conn_order = malloc(((size_t)p->n_xs + 1) * sizeof(*p->conn_order));
    fill = calloc((size_t)p->n_conns + 1, sizeof(*fill));
    if (!p->conn_order || !fill)
        goto out;

    /* group by connection, keeping start order inside each group */
    uint32_t max_per_conn = 0;
    for (uint32_t i = 0; i < p->n_xs; i++)
        p->conns[p->xs[i].conn].n_x++;
    uint32_t acc = 0;
    for (uint32_t c = 0; c < p->n_conns; c++) {
        p->conns[c].first = acc;
        acc += p->conns[c].n_x;
        if (p->conns[c].n_x > max_per_conn)
            max_per_conn = p->conns[c].n_x;
    }
    for (uint32_t i = 0; i < p->n_xs; i++) {
        struct rp_pconn *c = &p->conns[p->xs[i].conn];
        p->conn_order[c->first + fill[p->xs[i].conn]++] = i;
    }

    p->trace0 = p->n_xs ? p->xs[0].t_start : 0;
    p->first_open = p->trace0;
    for (uint32_t c = 0; c < p->n_conns; c++) {
        struct rp_pconn *pc = &p->conns[c];
        if (pc->t_open <= 0 && pc->n_x)
            pc->t_open = p->xs[p->conn_order[pc->first]].t_start;
        if (pc->n_x && pc->t_open > 0 && pc->t_open < p->first_open)
            p->first_open = pc->t_open;
    }

    ends = malloc(((size_t)max_per_conn + 1) * sizeof(*ends));
    if (!ends)
        goto out;
    for (uint32_t c = 0; c < p->n_conns; c++) {
        rc = conn_edges(p, &p->conns[c], ends, &edges);
        if (rc)
            goto out;
    }
    rc = H2R_ERR_NOMEM;

    /* CSR by source, targets in start order (edges were produced in that order per source) */
    p->dependents = malloc((edges.n + 1) * sizeof(*p->dependents));
    if (!p->dependents)
        goto out;
    for (uint64_t i = 0; i < edges.n; i++)
        p->xs[edges.v[i].from].n_dependents++;
    acc = 0;
    for (uint32_t i = 0; i < p->n_xs; i++) {
        p->xs[i].dep_first = acc;
        acc += p->xs[i].n_dependents;
    }
    uint32_t *pos = calloc((size_t)p->n_xs + 1, sizeof(*pos));
    if (!pos)
        goto out;
    for (uint64_t i = 0; i < edges.n; i++) {
        struct rp_px *from = &p->xs[edges.v[i].from];
        p->dependents[from->dep_first + pos[edges.v[i].from]++] = edges.v[i].to;
    }
    free(pos);
    p->n_edges = edges.n;

    free(p->b->map);
    free(p->b->strs);
    free(p->b);
    p->b = NULL;
    rc = 0;
out:
    free(ends);
    free(edges.v);
    free(fill);
    return rc;
}

int rp_plan_partition(struct rp_plan *p, uint32_t n_threads)
{
    if (n_threads == 0)
        return H2R_ERR_ARG;
    uint32_t *counts = calloc(n_threads, sizeof(*counts));
    uint32_t *ccounts = calloc(n_threads, sizeof(*ccounts));
    if (!counts || !ccounts) {
        free(counts);
        free(ccounts);
        return H2R_ERR_NOMEM;
    }
    for (uint32_t c = 0; c < p->n_conns; c++) {
        p->conns[c].thread = c % n_threads;
        p->conns[c].local = ccounts[c % n_threads]++;
    }
    for (uint32_t i = 0; i < p->n_xs; i++) {
        uint32_t t = p->conns[p->xs[i].conn].thread;
        p->xs[i].local = counts[t]++;
    }
    free(p->thread_xs);
    free(p->thread_conns);
    p->thread_xs = counts;
    p->thread_conns = ccounts;
    p->n_threads = n_threads;
    return 0;
}

int rp_plan_load(struct rp_plan **out, const char *path, int keep_responses, int *truncated,
                 char *errbuf, size_t errlen)
{
    struct h2r_trace_reader *r = NULL;
    struct rp_plan *p = NULL;
    *out = NULL;
    *truncated = 0;
    int rc = h2r_trace_reader_open(&r, path, errbuf, errlen);
    if (rc)
        return rc;
    rc = rp_plan_new(&p, keep_responses);
    if (rc)
        goto out;
    for (;;) {
        struct h2r_trace_record rec;
        int n = h2r_trace_reader_next(r, &rec);
        if (n == 0)
            break;
        if (n < 0) {
            if (n == H2R_ERR_TRUNCATED) {
                *truncated = 1;
                break;
            }
            rc = h2r_seterr(errbuf, errlen, n, "%s: %s", path, h2r_trace_reader_errmsg(r));
            goto out;
        }
        if (rec.kind == H2R_REC_CONN)
            rc = rp_plan_add_conn(p, &rec.u.conn);
        else if (rec.kind == H2R_REC_CONN_END)
            rc = rp_plan_add_conn_end(p, &rec.u.end);
        else if (rec.kind == H2R_REC_EXCHANGE)
            rc = rp_plan_add_exchange(p, &rec.u.exch);
        if (rc) {
            h2r_seterr(errbuf, errlen, rc, "%s: loading the trace: %s", path, h2r_strerror(rc));
            goto out;
        }
    }
    rc = rp_plan_finish(p);
    if (rc) {
        h2r_seterr(errbuf, errlen, rc, "%s: %s", path, h2r_strerror(rc));
        goto out;
    }
    *out = p;
    p = NULL;
out:
    rp_plan_free(p);
    h2r_trace_reader_free(r);
    return rc;
}

void rp_plan_free(struct rp_plan *p)
{
    if (!p)
        return;
    struct rp_chunk *c = p->arena;
    while (c) {
        struct rp_chunk *next = c->next;
        free(c);
        c = next;
    }
    if (p->b) {
        free(p->b->map);
        free(p->b->strs);
    }
    free(p->b);
    free(p->conns);
    free(p->xs);
    free(p->conn_order);
    free(p->dependents);
    free(p->thread_xs);
    free(p->thread_conns);
    free(p);
}

int64_t rp_scale(int64_t dt, double speed)
{
    if (speed <= 0)
        return 0;
    return (int64_t)llround((double)dt / speed);
}

int64_t rp_plan_due(const struct rp_plan *p, uint32_t x, double speed)
{
    int64_t dt = p->xs[x].t_start - p->trace0;
    return rp_scale(dt > 0 ? dt : 0, speed);
}

int64_t rp_plan_gap(const struct rp_plan *p, uint32_t a, uint32_t b, double speed)
{
    int64_t dt = p->xs[b].t_start - p->xs[a].t_end;
    return rp_scale(dt > 0 ? dt : 0, speed);
}

int64_t rp_plan_conn_open(const struct rp_plan *p, uint32_t c, double speed, int64_t max_lead)
{
    int64_t off = rp_scale(p->conns[c].t_open - p->trace0, speed);
    return off < -max_lead ? -max_lead : off;
}

void rp_plan_exchange_view(const struct rp_plan *p, uint32_t x, struct h2r_exchange *out)
{
    const struct rp_px *px = &p->xs[x];
    memset(out, 0, sizeof(*out));
    out->id = px->id;
    out->conn_id = p->conns[px->conn].trace_id;
    out->flags = px->trace_flags;
    out->req_hdrs = px->hdrs;
    out->n_req_hdrs = px->n_hdrs;
    out->req_body = px->body;
    out->req_body_stored = px->body_stored;
    out->req_body_len = px->body_len;
    out->status = px->status;
    out->grpc_status = px->grpc_status;
    out->rst_code = -1;
    out->rst_by = 0;
    out->goaway_code = -1;
    if (px->resp) {
        out->resp_hdrs = px->resp->hdrs;
        out->n_resp_hdrs = px->resp->n_hdrs;
        out->resp_body = px->resp->body;
        out->resp_body_stored = px->resp->body_stored;
        out->resp_body_len = px->resp->body_len;
        out->trailers = px->resp->trailers;
        out->n_trailers = px->resp->n_trailers;
        out->rst_code = px->resp->rst_code;
        out->t_resp_hdrs_ns = px->resp->t_hdrs;
    }
    out->t_req_first_ns = px->t_start;
    out->t_resp_end_ns = px->t_end;
}
