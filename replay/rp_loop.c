/*
 * The replay event loop: one per thread, sharing nothing but the read-only
 * plan (see rp_loop.h for the contract).
 *
 * Three sources of work, all on CLOCK_MONOTONIC:
 *   - exchanges without causal predecessors ("roots") in due order: a cursor
 *     over a sorted array, no timer each;
 *   - connection opens in open order: another cursor;
 *   - a min-heap for everything dynamic: exchanges released by a completed
 *     predecessor but not due yet, per-request deadlines, connect timeouts.
 * epoll_pwait2() sleeps until shortly before the earliest of them with ns
 * resolution (the thread's timer slack is lowered to 1 us) and the loop polls
 * without sleeping for the last SPIN_NS, so a 20k req/s schedule is neither
 * quantized to milliseconds nor delayed by the wake-up of an idle CPU.
 *
 * No coordinated omission: an exchange's intended time is computed from
 * the schedule (and its predecessors' completion), never from when the loop
 * got around to it; lateness is measured against it.
 *
 * Order of work in one iteration: due opens, due roots, due timers, finished
 * streams (results, release of dependents), flush of every connection that
 * has output, then the finished streams that flushing produced, then free
 * the connections that died. Nothing here runs inside an nghttp2 callback.
 */
#define _GNU_SOURCE /* epoll_pwait2, qsort_r */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "h2replay/error.h"
#include "h2replay/run.h"
#include "h2replay/units.h"
#include "rp_ack.h"
#include "rp_h2.h"
#include "rp_loop.h"
#include "rp_rewrite.h"
#include "rp_stats.h"
#include "rp_timer.h"
#include "rp_transport.h"

#define SCRATCH_BYTES ((size_t)64 * 1024)
#define MAX_EVENTS 256
#define BATCH_MAX_AGE_NS 200000000LL
#define IDLE_WAIT_NS 1000000000LL
/* Wake this long before a deadline and poll without sleeping for the rest: waking a
 * sleeping (virtual) CPU costs 50-100 us, which would be added to every send. */
#define SPIN_NS 50000LL

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

enum x_state { X_WAITING = 0, X_TIMER, X_QUEUED, X_INFLIGHT, X_DONE };
enum timer_kind { T_READY = 1, T_DEADLINE, T_CONNECT };

struct wconn;

/* One exchange's runtime state in this worker (about 100 bytes: a trace may hold
 * millions). The bigger rp_stream is only attached while the exchange is being sent. */
struct xrun {
    struct rp_timer timer; /* T_READY while waiting for its time, T_DEADLINE in flight */
    struct rp_stream *st;  /* from the pool, from send (or failure) to result */
    int64_t intended;      /* absolute; when the schedule says to send it */
    int64_t ready_at;      /* max over predecessors of done + scaled gap */
    int64_t t_sent;        /* absolute, 0 = not sent */
    uint32_t gx;           /* plan index */
    uint32_t deps_left;
    uint32_t conn_index;
    uint8_t state;    /* enum x_state */
    uint8_t flags;    /* H2R_RES_F_* */
    uint8_t finished; /* its stream finished (result pending or written) */
    struct xrun *pend_next;
    struct wconn *wc; /* connection it was sent on */
    void *rw_handle;
    char *path_owned;      /* rewritten :path, handed to the result */
    char *authority_owned; /* :authority set by a rewrite rule, handed to the result */
};

/* A captured connection: the replayed connection that stands for it now. */
struct capconn {
    uint32_t gc;
    uint32_t left;          /* exchanges without a result */
    struct wconn *live;     /* NULL: none open */
    struct xrun *pend_head; /* waiting for live to connect */
    struct xrun *pend_tail;
    int64_t open_at;
};

struct wconn {
    struct rp_conn *c;
    struct capconn *cap;
    struct rp_timer timer; /* T_CONNECT */
    uint32_t index;
    int ev; /* registered epoll events */
    int dirty;
    int dead;
    int ready;   /* completed its handshake once */
    int in_more; /* on the worker's more-input list */
    struct wconn *prev, *next;
    struct wconn *dirty_next;
    struct wconn *more_next;
    struct wconn *grave_next;
};

struct rp_worker {
    struct rp_worker_cfg cfg;
    const struct rp_plan *plan;
    int epfd;
    int stopfd;
    struct rp_heap heap;
    struct xrun *xs;
    uint32_t n_xs;
    struct capconn *caps;
    uint32_t n_caps;
    uint32_t *roots;
    uint32_t n_roots, root_cur;
    uint32_t *opens;
    uint32_t n_opens, open_cur;
    struct wconn *conns;
    struct wconn *dirty;
    struct wconn *grave;
    struct wconn *more; /* stopped reading at the per-call bound: read again first */
    struct rp_done_q done;
    uint32_t left;
    uint8_t *scratch;
    nghttp2_nv *nv;
    size_t nv_cap;
    struct rp_batch *batch;
    int64_t batch_t;
    struct rp_strtab details; /* failure details kept for results */
    struct rp_stream *st_free; /* stream pool */
    struct st_slab *slabs;
    int stopping;
    int status;
    char errbuf[256];
};

#define ST_SLAB 256

struct st_slab {
    struct st_slab *next;
    struct rp_stream v[ST_SLAB];
};

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* A clean stream for x from the pool (streams live as long as the worker). */
static struct rp_stream *st_get(struct rp_worker *w, struct xrun *x)
{
    if (x->st)
        return x->st;
    if (!w->st_free) {
        struct st_slab *sl = malloc(sizeof(*sl));
        if (!sl)
            return NULL;
        sl->next = w->slabs;
        w->slabs = sl;
        for (int i = 0; i < ST_SLAB; i++) {
            sl->v[i].done_next = w->st_free;
            w->st_free = &sl->v[i];
        }
    }
    struct rp_stream *st = w->st_free;
    w->st_free = st->done_next;
    memset(st, 0, sizeof(*st));
    st->status = -1;
    st->grpc_status = -1;
    st->owner = x;
    x->st = st;
    return st;
}

/* Has x's outcome been decided (by the loop or by its connection)? */
static int x_finished(const struct xrun *x)
{
    return x->finished || (x->st && x->st->finished);
}

static void st_put(struct rp_worker *w, struct xrun *x)
{
    struct rp_stream *st = x->st;
    if (!st)
        return;
    rp_capture_free(st->cap);
    st->cap = NULL;
    st->owner = NULL;
    st->done_next = w->st_free;
    w->st_free = st;
    x->st = NULL;
}

/* ---- result sink ---- */

int rp_sink_init(struct rp_sink *s)
{
    memset(s, 0, sizeof(*s));
    if (pthread_mutex_init(&s->mu, NULL))
        return H2R_ERR_NOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc) {
        pthread_mutex_destroy(&s->mu);
        return H2R_ERR_NOMEM;
    }
    return 0;
}

void rp_sink_destroy(struct rp_sink *s)
{
    rp_batch_free_list(s->head);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

void rp_sink_push(struct rp_sink *s, struct rp_batch *b, int last)
{
    pthread_mutex_lock(&s->mu);
    if (b) {
        b->next = NULL;
        if (s->tail)
            s->tail->next = b;
        else
            s->head = b;
        s->tail = b;
    }
    if (last)
        s->finished++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

struct rp_batch *rp_sink_take(struct rp_sink *s, int64_t deadline_mono_ns, uint32_t *finished)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(deadline_mono_ns / 1000000000LL);
    ts.tv_nsec = (long)(deadline_mono_ns % 1000000000LL);
    pthread_mutex_lock(&s->mu);
    while (!s->head) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT)
            break;
    }
    struct rp_batch *b = s->head;
    s->head = s->tail = NULL;
    *finished = s->finished;
    pthread_mutex_unlock(&s->mu);
    return b;
}

void rp_batch_free_list(struct rp_batch *b)
{
    while (b) {
        struct rp_batch *next = b->next;
        for (uint32_t i = 0; i < b->n; i++) {
            free(b->v[i].owned_path);
            free(b->v[i].owned_authority);
        }
        free(b);
        b = next;
    }
}

/* ---- small helpers ---- */

/* Details often point into a connection's buffers, which die with it: keep a copy. */
static const char *intern(struct rp_worker *w, const char *s)
{
    return rp_strtab_intern(&w->details, s);
}

static void live_add(_Atomic uint64_t *v, int64_t d)
{
    if (d >= 0)
        atomic_fetch_add_explicit(v, (uint64_t)d, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(v, (uint64_t)-d, memory_order_relaxed);
}

/* Finishes x with a failure that happened here, not on a connection. */
static void fail_local(struct rp_worker *w, struct xrun *x, uint32_t cls, const char *detail)
{
    if (x_finished(x))
        return;
    struct rp_stream *st = st_get(w, x);
    if (!st) { /* no memory even for the result's state: count it, drop the exchange */
        w->status = H2R_ERR_NOMEM;
        x->finished = 1;
        x->state = X_DONE;
        w->left--;
        return;
    }
    x->finished = 1;
    rp_stream_finish(&w->done, st, cls, intern(w, detail));
}

static void mark_dirty(struct rp_worker *w, struct wconn *wc)
{
    if (wc->dirty || wc->dead)
        return;
    wc->dirty = 1;
    wc->dirty_next = w->dirty;
    w->dirty = wc;
}

static void update_events(struct rp_worker *w, struct wconn *wc)
{
    if (wc->dead)
        return;
    int ev = 0;
    if (wc->c->state == RP_CONN_CONNECTING) {
        ev = (wc->c->io_want & RP_WANT_READ) ? EPOLLIN : EPOLLOUT;
    } else {
        ev = EPOLLIN;
        if (rp_conn_wants_write(wc->c))
            ev |= EPOLLOUT;
    }
    if (ev == wc->ev)
        return;
    struct epoll_event e;
    memset(&e, 0, sizeof(e));
    e.events = (uint32_t)ev;
    e.data.ptr = wc;
    if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, wc->c->io->fd, &e) == 0)
        wc->ev = ev;
}

/* ---- results ---- */

static void push_batch(struct rp_worker *w, int last)
{
    struct rp_batch *b = w->batch;
    w->batch = NULL;
    if (b && b->n == 0) {
        free(b);
        b = NULL;
    }
    if (b || last)
        rp_sink_push(w->cfg.sink, b, last);
}

static int64_t rel(const struct rp_worker *w, int64_t t)
{
    if (t == 0)
        return 0;
    int64_t r = t - w->cfg.t0;
    return r > 0 ? r : 1; /* 0 means "never" in the run file */
}

static void emit(struct rp_worker *w, struct xrun *x, uint32_t cls, const char *detail)
{
    if (!w->batch) {
        w->batch = calloc(1, sizeof(*w->batch));
        if (!w->batch) {
            w->status = H2R_ERR_NOMEM;
            free(x->path_owned);
            free(x->authority_owned);
            x->path_owned = x->authority_owned = NULL;
            return;
        }
        w->batch_t = h2r_now_mono_ns();
    }
    const struct rp_px *px = &w->plan->xs[x->gx];
    struct rp_out *o = &w->batch->v[w->batch->n++];
    struct h2r_run_result *r = &o->r;
    memset(r, 0, sizeof(*r));
    r->section = w->cfg.section;
    r->exchange_id = px->id;
    r->trace_conn = w->plan->conns[px->conn].trace_id;
    r->conn_index = x->conn_index;
    const struct rp_stream *st = x->st;
    r->stream_id = x->t_sent ? st->stream_id : 0;
    r->method = px->method;
    r->path = x->path_owned ? x->path_owned : px->path;
    r->authority = x->authority_owned ? x->authority_owned : w->cfg.target->authority;
    r->t_intended_ns = x->intended - w->cfg.t0;
    r->t_sent_ns = rel(w, x->t_sent);
    r->t_first_byte_ns = rel(w, st->t_first_byte);
    r->t_done_ns = st->t_done - w->cfg.t0;
    r->status = st->status;
    r->grpc_status = st->grpc_status;
    r->trace_status = px->status;
    r->trace_grpc_status = px->grpc_status;
    r->err_class = cls;
    r->err_detail = detail;
    r->req_bytes = st->req_bytes;
    r->resp_bytes = st->resp_bytes;
    r->flags = x->flags;
    o->owned_path = x->path_owned;
    o->owned_authority = x->authority_owned;
    x->path_owned = x->authority_owned = NULL;
    if (w->batch->n == RP_BATCH)
        push_batch(w, 0);
}

/* ---- connections ---- */

static void conn_unlink(struct rp_worker *w, struct wconn *wc)
{
    if (wc->prev)
        wc->prev->next = wc->next;
    else
        w->conns = wc->next;
    if (wc->next)
        wc->next->prev = wc->prev;
    wc->prev = wc->next = NULL;
}

/* Takes wc out of service; its memory lives until the end of the iteration. */
static void conn_bury(struct rp_worker *w, struct wconn *wc)
{
    if (wc->dead)
        return;
    wc->dead = 1;
    rp_heap_cancel(&w->heap, &wc->timer);
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, wc->c->io->fd, NULL);
    if (wc->cap->live == wc)
        wc->cap->live = NULL;
    conn_unlink(w, wc);
    wc->grave_next = w->grave;
    w->grave = wc;
    live_add(&w->cfg.live->open_conns, -1);
}

static void free_grave(struct rp_worker *w)
{
    while (w->grave) {
        struct wconn *wc = w->grave;
        w->grave = wc->grave_next;
        rp_conn_free(wc->c);
        free(wc);
    }
}

/* The connection failed: every request on it or waiting for it gets its class. */
static void conn_dead(struct rp_worker *w, struct wconn *wc, uint32_t cls, const char *detail)
{
    if (wc->dead)
        return;
    detail = intern(w, detail);
    if (cls == H2R_EC_NONE)
        cls = H2R_EC_IO;
    struct capconn *cap = wc->cap;
    if (cap->live == wc) {
        while (cap->pend_head) {
            struct xrun *x = cap->pend_head;
            cap->pend_head = x->pend_next;
            x->pend_next = NULL;
            fail_local(w, x, cls, detail);
        }
        cap->pend_tail = NULL;
    }
    /* requests sent on a connection that was up: closed under them */
    uint32_t open_cls = cls;
    if (wc->ready && (cls == H2R_EC_REFUSED || cls == H2R_EC_CONNECT_TIMEOUT))
        open_cls = H2R_EC_CONN_CLOSED;
    rp_conn_fail_all(wc->c, open_cls, detail);
    conn_bury(w, wc);
}

static void conn_close(struct rp_worker *w, struct wconn *wc)
{
    if (wc->dead)
        return;
    if (wc->c->state == RP_CONN_READY) {
        rp_conn_goaway(wc->c);
        rp_conn_flush(wc->c, w->scratch, SCRATCH_BYTES); /* best effort */
    }
    conn_dead(w, wc, H2R_EC_CONN_CLOSED, "closed by the replay");
}

/* Closes a connection nobody needs any more. */
static void maybe_close(struct rp_worker *w, struct wconn *wc)
{
    if (wc->dead || wc->c->n_open)
        return;
    struct capconn *cap = wc->cap;
    if (cap->live != wc || cap->left == 0 || wc->c->goaway)
        conn_close(w, wc);
}

static struct wconn *conn_open(struct rp_worker *w, struct capconn *cap, uint32_t *index,
                               uint32_t *cls, const char **detail)
{
    *index = atomic_fetch_add_explicit(w->cfg.conn_seq, 1, memory_order_relaxed);
    if (!w->cfg.addr) {
        *cls = H2R_EC_IO;
        *detail = w->cfg.resolve_err;
        return NULL;
    }
    struct rp_io *io = NULL;
    int rc = rp_tcp_connect(&io, w->cfg.addr, w->cfg.addr_len, cls, detail);
    if (rc)
        return NULL;
    *cls = H2R_EC_IO;
    *detail = "out of memory";
    if (w->cfg.ssl_ctx) {
        struct rp_io *tls = NULL;
        if (rp_tls_wrap(&tls, io, w->cfg.ssl_ctx, w->cfg.target->host, w->cfg.target->host_ip)) {
            io->ops->free(io);
            return NULL;
        }
        io = tls;
    }
    struct wconn *wc = calloc(1, sizeof(*wc));
    if (!wc) {
        io->ops->free(io);
        return NULL;
    }
    if (rp_conn_new(&wc->c, io, &w->done)) {
        free(wc);
        return NULL;
    }
    wc->c->owner = wc;
    wc->c->index = *index;
    wc->cap = cap;
    wc->index = *index;
    rp_timer_init(&wc->timer, T_CONNECT);
    struct epoll_event e;
    memset(&e, 0, sizeof(e));
    e.events = EPOLLOUT;
    e.data.ptr = wc;
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, wc->c->io->fd, &e) < 0) {
        static _Thread_local char buf[32];
        *detail = rp_errno_name(errno, buf, sizeof(buf));
        rp_conn_free(wc->c);
        free(wc);
        return NULL;
    }
    wc->ev = EPOLLOUT;
    if (rp_heap_arm(&w->heap, &wc->timer, h2r_now_mono_ns() + w->cfg.connect_timeout)) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, wc->c->io->fd, NULL);
        rp_conn_free(wc->c);
        free(wc);
        return NULL;
    }
    wc->next = w->conns;
    if (w->conns)
        w->conns->prev = wc;
    w->conns = wc;
    cap->live = wc;
    live_add(&w->cfg.live->open_conns, 1);
    return wc;
}

/* ---- sending ---- */

static int name_is(const struct h2r_hdr *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && memcmp(h->name, name, n) == 0;
}

/* Connection-specific fields are malformed in HTTP/2 (RFC 9113 8.2.2); traces made from
 * h2c upgrades can still carry them. */
static int hop_by_hop(const struct h2r_hdr *h)
{
    static const char *const names[] = {"connection",        "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade",    "http2-settings"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (name_is(h, names[i]))
            return 1;
    return name_is(h, "te") && !(h->value_len == 8 && memcmp(h->value, "trailers", 8) == 0);
}

static void nv_set(nghttp2_nv *nv, const uint8_t *name, size_t nlen, const uint8_t *value,
                   size_t vlen)
{
    nv->name = (uint8_t *)(uintptr_t)name;
    nv->namelen = nlen;
    nv->value = (uint8_t *)(uintptr_t)value;
    nv->valuelen = vlen;
    nv->flags = NGHTTP2_NV_FLAG_NONE;
}

/* Does header h still hold the value it had in the trace (not rewritten by a rule)? */
static int as_captured(const struct h2r_hdr *h, const struct rp_px *px)
{
    for (uint32_t i = 0; i < px->n_hdrs; i++) {
        const struct h2r_hdr *c = &px->hdrs[i];
        if (c->name_len == h->name_len && memcmp(c->name, h->name, h->name_len) == 0)
            return c->value_len == h->value_len &&
                   (h->value == c->value || memcmp(c->value, h->value, h->value_len) == 0);
    }
    return 0;
}

/*
 * The request's header block for the target: :authority, host and :scheme that still hold
 * their captured values take the target's (a value a rewrite rule set is kept), hop-by-hop
 * fields are dropped, and an :authority is added when the trace had neither it nor host.
 * *auth / *auth_len get the authority that is sent. Returns the number of fields.
 */
static size_t build_nv(struct rp_worker *w, const struct rp_px *px, const struct h2r_hdr *h,
                       size_t n, const uint8_t **auth, size_t *auth_len)
{
    const struct rp_target *t = w->cfg.target;
    const uint8_t *target_auth = (const uint8_t *)t->authority;
    size_t target_auth_len = strlen(t->authority);
    size_t k = 0, after_pseudo = 0;
    int have_auth = 0;
    *auth = target_auth;
    *auth_len = target_auth_len;
    for (size_t i = 0; i < n; i++) {
        int is_auth = name_is(&h[i], ":authority"), is_host = name_is(&h[i], "host");
        if ((is_auth || is_host) && as_captured(&h[i], px)) {
            nv_set(&w->nv[k++], h[i].name, h[i].name_len, target_auth, target_auth_len);
            have_auth = 1;
        } else if (is_auth || is_host) {
            nv_set(&w->nv[k++], h[i].name, h[i].name_len, h[i].value, h[i].value_len);
            if (is_auth || !have_auth) {
                *auth = h[i].value;
                *auth_len = h[i].value_len;
            }
            have_auth = 1;
        } else if (name_is(&h[i], ":scheme") && as_captured(&h[i], px)) {
            nv_set(&w->nv[k++], h[i].name, h[i].name_len, (const uint8_t *)t->scheme,
                   strlen(t->scheme));
        } else if (!hop_by_hop(&h[i])) {
            nv_set(&w->nv[k++], h[i].name, h[i].name_len, h[i].value, h[i].value_len);
        }
        if (h[i].name_len && h[i].name[0] == ':')
            after_pseudo = k;
    }
    if (!have_auth) {
        memmove(&w->nv[after_pseudo + 1], &w->nv[after_pseudo],
                (k - after_pseudo) * sizeof(*w->nv));
        nv_set(&w->nv[after_pseudo], (const uint8_t *)":authority", 10, target_auth,
               target_auth_len);
        k++;
    }
    return k;
}

static void submit(struct rp_worker *w, struct xrun *x, struct wconn *wc)
{
    const struct rp_px *px = &w->plan->xs[x->gx];
    const struct h2r_hdr *hdrs = px->hdrs;
    size_t n_hdrs = px->n_hdrs;
    const uint8_t *body = px->body;
    size_t body_stored = px->body_stored;
    uint64_t body_len = px->body_len;
    x->conn_index = wc->index;
    struct rp_stream *st = st_get(w, x);
    if (!st) {
        fail_local(w, x, H2R_EC_IO, "out of memory");
        return;
    }
    if (w->cfg.rw) {
        char err[256] = "";
        size_t blen = 0;
        if (rp_rewrite_apply(w->cfg.rw, w->plan, x->gx, &x->rw_handle, &hdrs, &n_hdrs, &body, &blen,
                             err, sizeof(err))) {
            char detail[300];
            snprintf(detail, sizeof(detail), "rewrite: %s", err);
            fail_local(w, x, H2R_EC_SKIPPED, detail);
            return;
        }
        body_stored = blen;
        body_len = blen;
        const struct h2r_hdr *p = h2r_hdr_find(hdrs, n_hdrs, ":path");
        if (p && (!px->path || strlen(px->path) != p->value_len ||
                  memcmp(px->path, p->value, p->value_len) != 0))
            x->path_owned = strndup((const char *)p->value, p->value_len);
        if (rp_rewrite_wants_response(w->cfg.rw, w->plan, x->gx))
            st->cap = calloc(1, sizeof(*st->cap));
    }
    /* a creation the server may acknowledge: keep its (bounded) response for rp_ack.c */
    if (!st->cap && rp_ack_method_of(px->method, x->path_owned ? x->path_owned : px->path))
        st->cap = calloc(1, sizeof(*st->cap));
    if (n_hdrs + 1 > w->nv_cap) {
        nghttp2_nv *nv = realloc(w->nv, (n_hdrs + 1) * sizeof(*nv));
        if (!nv) {
            fail_local(w, x, H2R_EC_IO, "out of memory");
            return;
        }
        w->nv = nv;
        w->nv_cap = n_hdrs + 1;
    }
    const uint8_t *auth;
    size_t auth_len;
    size_t n_nv = build_nv(w, px, hdrs, n_hdrs, &auth, &auth_len);
    if (auth != (const uint8_t *)w->cfg.target->authority)
        x->authority_owned = strndup((const char *)auth, auth_len);
    st->body = body;
    st->body_stored = body_stored;
    st->body_len = body_len;
    int rc = rp_conn_submit(wc->c, st, w->nv, n_nv);
    if (rc < 0) {
        fail_local(w, x, H2R_EC_PROTOCOL, nghttp2_strerror(rc));
        return;
    }
    int64_t now = h2r_now_mono_ns();
    x->t_sent = now;
    x->state = X_INFLIGHT;
    x->wc = wc;
    int64_t late = now - x->intended;
    rp_hist_add(&w->cfg.live->late, late);
    rp_live_late(w->cfg.live, late);
    live_add(&w->cfg.live->sent, 1);
    live_add(&w->cfg.live->in_flight, 1);
    x->timer.kind = T_DEADLINE;
    if (rp_heap_arm(&w->heap, &x->timer, now + w->cfg.timeout))
        w->status = H2R_ERR_NOMEM; /* no deadline for this one; the replay goes on */
    mark_dirty(w, wc);
}

/* x's time has come: send it on its captured connection's replayed connection. */
static void dispatch(struct rp_worker *w, struct xrun *x)
{
    const struct rp_px *px = &w->plan->xs[x->gx];
    live_add(&w->cfg.live->due, 1);
    if (px->flags & RP_PX_F_UNSENDABLE) {
        fail_local(w, x, H2R_EC_SKIPPED, "no :method/:path in the trace");
        return;
    }
    struct capconn *cap = &w->caps[w->plan->conns[px->conn].local];
    struct wconn *wc = cap->live;
    if (wc && wc->c->state == RP_CONN_READY && !rp_conn_accepts(wc->c)) {
        cap->live = NULL; /* draining after GOAWAY: finishes its streams, then closes */
        wc = NULL;
    }
    if (!wc) {
        uint32_t cls = H2R_EC_IO;
        const char *detail = NULL;
        wc = conn_open(w, cap, &x->conn_index, &cls, &detail);
        if (!wc) {
            fail_local(w, x, cls, detail);
            return;
        }
    }
    if (wc->c->state == RP_CONN_CONNECTING) {
        x->state = X_QUEUED;
        x->conn_index = wc->index;
        x->pend_next = NULL;
        if (cap->pend_tail)
            cap->pend_tail->pend_next = x;
        else
            cap->pend_head = x;
        cap->pend_tail = x;
        return;
    }
    submit(w, x, wc);
}

/* All of x's predecessors completed: send it now or arm its timer. */
static void schedule(struct rp_worker *w, struct xrun *x, int64_t now)
{
    if (x_finished(x) || w->stopping)
        return;
    int64_t due = w->cfg.t0 + rp_plan_due(w->plan, x->gx, w->cfg.speed);
    x->intended = max64(due, x->ready_at);
    if (x->ready_at > due)
        x->flags |= H2R_RES_F_WAITED;
    if (x->intended <= now) {
        dispatch(w, x);
        return;
    }
    x->state = X_TIMER;
    x->timer.kind = T_READY;
    if (rp_heap_arm(&w->heap, &x->timer, x->intended)) {
        w->status = H2R_ERR_NOMEM;
        dispatch(w, x); /* early rather than never */
    }
}

static void conn_ready(struct rp_worker *w, struct wconn *wc)
{
    wc->ready = 1;
    rp_heap_cancel(&w->heap, &wc->timer);
    struct capconn *cap = wc->cap;
    if (cap->live == wc) {
        while (cap->pend_head) {
            struct xrun *x = cap->pend_head;
            cap->pend_head = x->pend_next;
            x->pend_next = NULL;
            if (!cap->pend_head)
                cap->pend_tail = NULL;
            submit(w, x, wc);
        }
    }
    mark_dirty(w, wc);
}

/* ---- completion ---- */

/*
 * x completed: if it was a creation the server confirmed (gRPC status 0, or a REST 2xx),
 * queue what was created for the run file (rp_ack.h). The response was kept in st->cap
 * for exactly these requests; the request body (as sent) is the fallback.
 */
static void acknowledge(struct rp_worker *w, const struct xrun *x, const struct rp_px *px,
                        const struct rp_stream *st)
{
    enum rp_ack_method m = rp_ack_method_of(px->method, x->path_owned ? x->path_owned : px->path);
    if (m == RP_ACK_NONE)
        return;
    int ok = m >= RP_ACK_REST_USER ? st->status >= 200 && st->status < 300
                                   : st->status == 200 && st->grpc_status == 0;
    if (!ok)
        return;
    struct rp_ack_entity e;
    const uint8_t *resp = st->cap ? st->cap->body : NULL;
    size_t resp_len = st->cap && !st->cap->truncated ? st->cap->body_len : 0;
    size_t req_len = st->body_stored < st->body_len ? st->body_stored : (size_t)st->body_len;
    if (rp_ack_parse(m, st->body, req_len, resp, resp_len, &e) == 0)
        rp_ack_push(w->cfg.section, px->id, w->plan->conns[px->conn].trace_id,
                    st->t_done - w->cfg.t0, &e);
    else
        rp_ack_unidentified();
}

static void complete(struct rp_worker *w, struct xrun *x)
{
    const struct rp_plan *plan = w->plan;
    const struct rp_px *px = &plan->xs[x->gx];
    struct rp_live *live = w->cfg.live;
    rp_heap_cancel(&w->heap, &x->timer);
    if (x->state == X_INFLIGHT)
        live_add(&live->in_flight, -1);
    struct rp_stream *st = x->st;
    uint32_t cls = st->err_class;
    const char *detail = intern(w, st->err_detail);
    if (px->trace_flags & H2R_EXCH_F_GRPC)
        x->flags |= H2R_RES_F_GRPC;
    if (cls == H2R_EC_NONE) {
        if (st->status >= 400 && st->status != px->status)
            cls = H2R_EC_HTTP_STATUS;
        else if (st->grpc_status > 0 && st->grpc_status != px->grpc_status)
            cls = H2R_EC_GRPC_STATUS;
        if (x->t_sent)
            rp_hist_add(&live->latency, st->t_done - x->t_sent);
        if (st->cap && w->cfg.rw && rp_rewrite_wants_response(w->cfg.rw, plan, x->gx))
            rp_rewrite_observe(w->cfg.rw, plan, x->gx, st->status, st->cap);
        acknowledge(w, x, px, st); /* before the rewrite releases the request body */
    }
    if (x->rw_handle) {
        rp_rewrite_release(w->cfg.rw, x->rw_handle);
        x->rw_handle = NULL;
    }
    emit(w, x, cls, detail);
    int64_t t_done = st->t_done;
    st_put(w, x);
    x->state = X_DONE;
    live_add(&live->done, 1);
    if (cls != H2R_EC_NONE)
        live_add(&live->errors, 1);

    /* release the exchanges that waited for this response */
    int64_t now = h2r_now_mono_ns();
    for (uint32_t k = 0; k < px->n_dependents; k++) {
        uint32_t gb = plan->dependents[px->dep_first + k];
        struct xrun *b = &w->xs[plan->xs[gb].local];
        int64_t r = t_done + rp_plan_gap(plan, x->gx, gb, w->cfg.speed);
        if (r > b->ready_at)
            b->ready_at = r;
        if (--b->deps_left == 0)
            schedule(w, b, now);
    }

    struct capconn *cap = &w->caps[plan->conns[px->conn].local];
    cap->left--;
    w->left--;
    if (x->wc && !x->wc->dead)
        mark_dirty(w, x->wc); /* its RST or GOAWAY may need flushing; it may now be idle */
    x->wc = NULL;
    if (cap->left == 0 && cap->live)
        mark_dirty(w, cap->live);
}

static void process_done(struct rp_worker *w)
{
    while (w->done.head) {
        struct rp_stream *st = w->done.head;
        w->done.head = st->done_next;
        if (!w->done.head)
            w->done.tail = NULL;
        st->done_next = NULL;
        struct xrun *x = st->owner;
        if (x && x->state != X_DONE)
            complete(w, x);
    }
}

static void flush_dirty(struct rp_worker *w)
{
    while (w->dirty) {
        struct wconn *wc = w->dirty;
        w->dirty = wc->dirty_next;
        wc->dirty = 0;
        if (wc->dead)
            continue;
        if (rp_conn_flush(wc->c, w->scratch, SCRATCH_BYTES) != RP_IO_OK) {
            conn_dead(w, wc, wc->c->err_class, wc->c->err_detail);
            continue;
        }
        update_events(w, wc);
        maybe_close(w, wc);
    }
}

/* ---- events and timers ---- */

static void on_conn_event(struct rp_worker *w, struct wconn *wc, uint32_t events)
{
    if (wc->dead)
        return;
    struct rp_conn *c = wc->c;
    if (c->state == RP_CONN_CONNECTING) {
        int rc = rp_conn_handshake(c);
        if (rc == RP_IO_OK)
            conn_ready(w, wc);
        else if (rc == RP_IO_RETRY)
            update_events(w, wc);
        else
            conn_dead(w, wc, c->err_class, c->err_detail);
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        if (rp_conn_read(c, w->scratch, SCRATCH_BYTES) != RP_IO_OK) {
            conn_dead(w, wc, c->err_class, c->err_detail);
            return;
        }
        mark_dirty(w, wc); /* SETTINGS ACK, WINDOW_UPDATE, or now idle */
        if (c->more_input && !wc->in_more) {
            wc->in_more = 1;
            wc->more_next = w->more;
            w->more = wc;
        }
    }
    if (events & EPOLLOUT)
        mark_dirty(w, wc);
}

static void on_timer(struct rp_worker *w, struct rp_timer *t)
{
    if (t->kind == T_CONNECT) {
        struct wconn *wc = container_of(t, struct wconn, timer);
        conn_dead(w, wc, H2R_EC_CONNECT_TIMEOUT,
                  wc->c->io->lower ? "tcp connect or tls handshake" : "tcp connect");
        return;
    }
    struct xrun *x = container_of(t, struct xrun, timer);
    if (t->kind == T_READY) {
        dispatch(w, x);
    } else if (t->kind == T_DEADLINE && x->state == X_INFLIGHT && !x_finished(x)) {
        struct rp_conn *c = x->st->conn;
        if (c) {
            struct wconn *wc = c->owner;
            x->finished = 1;
            rp_conn_cancel(c, x->st, H2R_EC_DEADLINE, NULL);
            mark_dirty(w, wc);
        } else {
            fail_local(w, x, H2R_EC_DEADLINE, NULL);
        }
    }
}

static void run_due(struct rp_worker *w, int64_t now)
{
    while (w->open_cur < w->n_opens) {
        struct capconn *cap = &w->caps[w->opens[w->open_cur]];
        if (cap->open_at > now)
            break;
        w->open_cur++;
        if (!cap->live && cap->left > 0) {
            uint32_t idx, cls;
            const char *detail;
            conn_open(w, cap, &idx, &cls, &detail); /* a failure shows when an exchange is due */
        }
    }
    while (w->root_cur < w->n_roots) {
        struct xrun *x = &w->xs[w->roots[w->root_cur]];
        if (x->intended > now)
            break;
        w->root_cur++;
        if (!x_finished(x))
            dispatch(w, x);
    }
    for (;;) {
        struct rp_timer *t = rp_heap_pop_due(&w->heap, now);
        if (!t)
            break;
        on_timer(w, t);
    }
}

static int64_t next_wake(const struct rp_worker *w)
{
    int64_t next = INT64_MAX;
    const struct rp_timer *t = rp_heap_peek(&w->heap);
    if (t)
        next = t->at;
    if (w->root_cur < w->n_roots && w->xs[w->roots[w->root_cur]].intended < next)
        next = w->xs[w->roots[w->root_cur]].intended;
    if (w->open_cur < w->n_opens && w->caps[w->opens[w->open_cur]].open_at < next)
        next = w->caps[w->opens[w->open_cur]].open_at;
    return next;
}

static int wait_events(struct rp_worker *w, struct epoll_event *ev, int64_t wait_ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(wait_ns / 1000000000LL);
    ts.tv_nsec = (long)(wait_ns % 1000000000LL);
    int n = epoll_pwait2(w->epfd, ev, MAX_EVENTS, &ts, NULL);
    if (n < 0 && errno == ENOSYS) /* kernel < 5.11: ms resolution, rounded up */
        n = epoll_wait(w->epfd, ev, MAX_EVENTS, (int)((wait_ns + 999999) / 1000000));
    return n;
}

/* Stop: everything in flight is cancelled, everything unsent skipped. */
static void stop_all(struct rp_worker *w)
{
    w->stopping = 1;
    for (uint32_t i = 0; i < w->n_xs; i++) {
        struct xrun *x = &w->xs[i];
        if (x_finished(x))
            continue;
        if (x->intended == 0) /* never released by its predecessors: when it was due */
            x->intended = w->cfg.t0 + rp_plan_due(w->plan, x->gx, w->cfg.speed);
        if (x->state == X_INFLIGHT) {
            x->finished = 1;
            rp_stream_finish(&w->done, x->st, H2R_EC_CANCELLED, NULL);
        } else {
            fail_local(w, x, H2R_EC_SKIPPED, "interrupted");
        }
    }
    for (uint32_t i = 0; i < w->n_caps; i++)
        w->caps[i].pend_head = w->caps[i].pend_tail = NULL;
    process_done(w);
}

/* Finishes everything that finished, flushes everything that has output, until quiet;
 * then no dead connection is referenced any more and the graveyard can be freed. */
static void settle(struct rp_worker *w)
{
    do {
        process_done(w);
        flush_dirty(w);
    } while (w->done.head || w->dirty);
    free_grave(w);
}

/* Connections that stopped reading at the per-call bound read again before waiting. */
static void read_more(struct rp_worker *w)
{
    struct wconn *list = w->more;
    w->more = NULL;
    while (list) {
        struct wconn *wc = list;
        list = wc->more_next;
        wc->in_more = 0;
        if (!wc->dead && wc->c->more_input)
            on_conn_event(w, wc, EPOLLIN);
    }
}

static void loop(struct rp_worker *w)
{
    struct epoll_event ev[MAX_EVENTS];
    while (w->left > 0 && !w->stopping) {
        int64_t now = h2r_now_mono_ns();
        run_due(w, now);
        settle(w);
        if (w->left == 0)
            break;
        if (w->batch && now - w->batch_t > BATCH_MAX_AGE_NS)
            push_batch(w, 0);

        now = h2r_now_mono_ns();
        int64_t next = next_wake(w);
        int64_t wait = w->more ? 0 : (next == INT64_MAX ? IDLE_WAIT_NS : next - now);
        if (wait < 0)
            wait = 0;
        wait = wait > SPIN_NS ? wait - SPIN_NS : 0;
        if (wait > IDLE_WAIT_NS)
            wait = IDLE_WAIT_NS;
        if (w->batch && wait > BATCH_MAX_AGE_NS)
            wait = BATCH_MAX_AGE_NS;
        int n = wait_events(w, ev, wait);
        if (n < 0 && errno != EINTR) {
            w->status = H2R_ERR_IO;
            snprintf(w->errbuf, sizeof(w->errbuf), "epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            if (!ev[i].data.ptr) {
                uint64_t v;
                if (read(w->stopfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                    w->status = H2R_ERR_IO;
                w->stopping = 1;
                continue;
            }
            on_conn_event(w, ev[i].data.ptr, ev[i].events);
        }
        read_more(w);
        settle(w);
    }
    if (w->left > 0)
        stop_all(w);
    settle(w);
    /* every exchange has its result: close what is still open */
    while (w->conns)
        conn_close(w, w->conns);
    settle(w);
}

void *rp_worker_main(void *arg)
{
    struct rp_worker *w = arg;
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); /* 1 us: schedule precision */
    loop(w);
    push_batch(w, 1);
    atomic_store_explicit(&w->cfg.live->finished, 1, memory_order_release);
    return NULL;
}

void rp_worker_stop(struct rp_worker *w)
{
    uint64_t one = 1;
    ssize_t n = write(w->stopfd, &one, sizeof(one));
    (void)n; /* a full counter already means "stop" */
}

int rp_worker_status(const struct rp_worker *w)
{
    return w->status;
}

/* ---- setup ---- */

static int cmp_open(const void *a, const void *b, void *arg)
{
    const struct capconn *caps = arg;
    const struct capconn *x = &caps[*(const uint32_t *)a];
    const struct capconn *y = &caps[*(const uint32_t *)b];
    if (x->open_at != y->open_at)
        return x->open_at < y->open_at ? -1 : 1;
    return x->gc < y->gc ? -1 : x->gc > y->gc;
}

int rp_worker_new(struct rp_worker **out, const struct rp_worker_cfg *cfg, char *errbuf,
                  size_t errlen)
{
    *out = NULL;
    const struct rp_plan *plan = cfg->plan;
    struct rp_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    w->cfg = *cfg;
    w->plan = plan;
    w->epfd = -1;
    w->stopfd = -1;
    rp_heap_init(&w->heap);
    w->n_xs = plan->thread_xs[cfg->tid];
    w->n_caps = plan->thread_conns[cfg->tid];
    w->left = w->n_xs;
    w->xs = calloc((size_t)w->n_xs + 1, sizeof(*w->xs));
    w->caps = calloc((size_t)w->n_caps + 1, sizeof(*w->caps));
    w->roots = malloc(((size_t)w->n_xs + 1) * sizeof(*w->roots));
    w->opens = malloc(((size_t)w->n_caps + 1) * sizeof(*w->opens));
    w->scratch = malloc(SCRATCH_BYTES);
    w->nv_cap = 64;
    w->nv = malloc(w->nv_cap * sizeof(*w->nv));
    if (!w->xs || !w->caps || !w->roots || !w->opens || !w->scratch || !w->nv)
        goto nomem;

    for (uint32_t gc = 0; gc < plan->n_conns; gc++) {
        const struct rp_pconn *pc = &plan->conns[gc];
        if (pc->thread != cfg->tid)
            continue;
        struct capconn *cap = &w->caps[pc->local];
        cap->gc = gc;
        cap->left = pc->n_x;
        cap->open_at = cfg->t0 + rp_plan_conn_open(plan, gc, cfg->speed, cfg->max_lead);
        if (pc->n_x)
            w->opens[w->n_opens++] = pc->local;
    }
    for (uint32_t gx = 0; gx < plan->n_xs; gx++) {
        const struct rp_px *px = &plan->xs[gx];
        if (plan->conns[px->conn].thread != cfg->tid)
            continue;
        struct xrun *x = &w->xs[px->local];
        x->gx = gx;
        x->deps_left = px->n_deps;
        x->ready_at = INT64_MIN;
        rp_timer_init(&x->timer, T_READY);
        if (px->n_deps == 0) {
            x->intended = cfg->t0 + rp_plan_due(plan, gx, cfg->speed);
            w->roots[w->n_roots++] = px->local;
        }
    }
    qsort_r(w->opens, w->n_opens, sizeof(*w->opens), cmp_open, w->caps);

    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->epfd < 0 || w->stopfd < 0) {
        h2r_seterr(errbuf, errlen, H2R_ERR_IO, "epoll/eventfd: %s", strerror(errno));
        rp_worker_free(w);
        return H2R_ERR_IO;
    }
    struct epoll_event e;
    memset(&e, 0, sizeof(e));
    e.events = EPOLLIN;
    e.data.ptr = NULL;
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->stopfd, &e) < 0) {
        h2r_seterr(errbuf, errlen, H2R_ERR_IO, "epoll_ctl: %s", strerror(errno));
        rp_worker_free(w);
        return H2R_ERR_IO;
    }
    *out = w;
    return 0;
nomem:
    rp_worker_free(w);
    return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory for %u exchanges",
                      cfg->plan->thread_xs[cfg->tid]);
}

void rp_worker_free(struct rp_worker *w)
{
    if (!w)
        return;
    while (w->conns) {
        struct wconn *wc = w->conns;
        w->conns = wc->next;
        rp_conn_free(wc->c);
        free(wc);
    }
    free_grave(w);
    for (uint32_t i = 0; w->xs && i < w->n_xs; i++) {
        if (w->xs[i].st)
            rp_capture_free(w->xs[i].st->cap);
        free(w->xs[i].path_owned);
        free(w->xs[i].authority_owned);
        if (w->xs[i].rw_handle)
            rp_rewrite_release(w->cfg.rw, w->xs[i].rw_handle);
    }
    rp_batch_free_list(w->batch);
    rp_strtab_free(&w->details);
    rp_heap_free(&w->heap);
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->stopfd >= 0)
        close(w->stopfd);
    free(w->xs);
    free(w->caps);
    free(w->roots);
    free(w->opens);
    free(w->scratch);
    free(w->nv);
    while (w->slabs) {
        struct st_slab *next = w->slabs->next;
        free(w->slabs);
        w->slabs = next;
    }
    free(w);
}
