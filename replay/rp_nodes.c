/*
 * TS2021 node sessions (see rp_nodes.h): the plan, one event loop per thread
 * that runs its share of the sessions, and the driver that writes the run file.
 *
 * A session is a small state machine on CLOCK_MONOTONIC:
 *
 *   WAIT      until its start (a cursor over the thread's sessions, sorted)
 *   CONNECT   TCP (+ TLS) + the TS2021 upgrade; timer: --connect-timeout
 *   REGISTER  POST /machine/register in flight; timer: --timeout
 *   MAP       POST /machine/map in flight, no netmap yet; timer: --timeout
 *   HOLD      netmap received, stream held until start + hold; a watchdog
 *             fires when no map message came for the keep-alive window
 *   DONE      both results emitted, connection closed
 *
 * The map stream's DATA goes straight from nghttp2's chunk callback into the
 * session's ts_map decoder (rp_stream.on_body), whose own callback only
 * records (times, counters, the peer set); every decision - results, closing,
 * timers - is taken by the loop after nghttp2_session_mem_recv() returned,
 * never from inside an nghttp2 callback (STYLE.md, rule 2). All decoders of
 * a thread share one zstd context and output buffer (ts_map_scratch), so a
 * held stream costs its nghttp2 session, the TS2021 record state and its
 * peer set, nothing per message.
 *
 * Classification (docs/ts2021.md "Replay"): the upgrade or Noise handshake
 * failing is handshake_rejected; register answered 200 with a non-empty Error
 * is auth_key_refused when the error is about the pre-auth key and
 * register_error otherwise (also: non-200, interactive login, not
 * authorized); no netmap within --timeout of the map request is no_netmap; a
 * stream silent for the keep-alive window is stream_stalled; the server
 * ending the stream or the connection before the session's end is
 * closed_by_server. Connection failures below TS2021 keep their usual classes.
 */
#define _GNU_SOURCE /* epoll_pwait2, strcasestr */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "h2replay/error.h"
#include "h2replay/replay.h"
#include "h2replay/run.h"
#include "h2replay/units.h"
#include "rp_dbwatch.h"
#include "rp_h2.h"
#include "rp_loop.h"
#include "rp_nodes.h"
#include "rp_shard.h"
#include "rp_stats.h"
#include "rp_timer.h"
#include "rp_transport.h"
#include "rp_ts.h"
#include "rp_url.h"
#include "ts2021.h"

#define SCRATCH_BYTES ((size_t)64 * 1024)
#define MAX_EVENTS 256
#define BATCH_MAX_AGE_NS 200000000LL
#define IDLE_WAIT_NS 1000000000LL
#define SAMPLE_NS 1000000000LL
#define POLL_NS 100000000LL
#define STARTUP_NS 50000000LL
#define DEFAULT_STALL_NS 120000000000LL /* tailscale's map watchdog (direct.go) */
#define MAX_NODES 10000000u
#define MAX_PLAN_SPAN_NS (10LL * 366 * 24 * 3600 * 1000000000LL) /* ~10 years of capture */
#define ERR_BODY_KEEP 160 /* bytes of a failed response's body kept for the detail */
#define KEY_SEED_LEN 32

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

static const char PATH_REGISTER[] = "/machine/register";
static const char PATH_MAP[] = "/machine/map";
static const char PATH_UPGRADE[] = "/ts2021"; /* a skipped captured session's only result */
static const char METHOD_POST[] = "POST";

/* ---- the plan ---- */

int rp_nodes_plan_synthetic(struct rp_nodes_plan *p, uint32_t n, int64_t arrival, int64_t hold)
{
    p->v = NULL;
    p->n = 0;
    p->identities = 0;
    if (n == 0 || arrival < 0 || hold < 0)
        return H2R_ERR_ARG;
    p->v = calloc(n, sizeof(*p->v));
    if (!p->v)
        return H2R_ERR_NOMEM;
    for (uint32_t i = 0; i < n; i++) {
        /* long double: arrival * i overflows int64 for hours times millions */
        p->v[i].start = (int64_t)((long double)arrival * i / n);
        p->v[i].hold = hold;
        p->v[i].identity = i;
        p->v[i].origin = i;
        p->v[i].seq = i;
        p->v[i].status = -1;
    }
    p->n = n;
    p->identities = n;
    return 0;
}

static int cmp_plan(const void *a, const void *b)
{
    const struct rp_session_plan *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if (x->identity != y->identity)
        return x->identity < y->identity ? -1 : 1;
    return x->origin < y->origin ? -1 : x->origin > y->origin;
}

static int cmp_ts_order(const void *a, const void *b)
{
    const struct h2r_ts_session *x = *(const struct h2r_ts_session *const *)a;
    const struct h2r_ts_session *y = *(const struct h2r_ts_session *const *)b;
    if (x->t_upgrade_ns != y->t_upgrade_ns)
        return x->t_upgrade_ns < y->t_upgrade_ns ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* A captured node and the capture-order index of one of its sessions. */
struct node_at {
    uint64_t node;
    uint32_t index;
};

static int cmp_node_at(const void *a, const void *b)
{
    const struct node_at *x = a, *y = b;
    if (x->node != y->node)
        return x->node < y->node ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* b - a for a <= b, or -1 when the span exceeds MAX_PLAN_SPAN_NS (unsigned: a crafted
 * pair such as INT64_MIN and INT64_MAX must not overflow). */
static int64_t plan_span(int64_t a, int64_t b)
{
    uint64_t d = (uint64_t)b - (uint64_t)a;
    return b < a || d > (uint64_t)MAX_PLAN_SPAN_NS ? -1 : (int64_t)d;
}

int rp_nodes_plan_from_sessions(struct rp_nodes_plan *p, const struct h2r_ts_session *s,
                                uint32_t n, struct rp_nodes_trace_info *info)
{
    struct rp_nodes_trace_info dummy;
    if (!info)
        info = &dummy;
    memset(info, 0, sizeof(*info));
    p->v = NULL;
    p->n = 0;
    p->identities = 0;
    if (n == 0)
        return H2R_ERR_ARG;
    if (n > MAX_NODES)
        return H2R_ERR_LIMIT;
    int rc = H2R_ERR_NOMEM;
    const struct h2r_ts_session **ord = malloc((size_t)n * sizeof(*ord));
    struct node_at *na = malloc((size_t)n * sizeof(*na));
    uint32_t *first = malloc((size_t)n * sizeof(*first));
    struct rp_session_plan *v = calloc(n, sizeof(*v));
    if (!ord || !na || !first || !v)
        goto out;
    for (uint32_t i = 0; i < n; i++)
        ord[i] = &s[i];
    qsort(ord, n, sizeof(*ord), cmp_ts_order); /* capture order, whatever the input order */

    /* Each session's first session of the same node (capture order), from one sort of
     * (node, index) pairs: O(n log n) however many distinct nodes there are. */
    uint32_t nn = 0, known = 0;
    for (uint32_t i = 0; i < n; i++) {
        first[i] = i;
        if (ord[i]->node != 0) {
            na[nn].node = ord[i]->node;
            na[nn].index = i;
            nn++;
        }
    }
    qsort(na, nn, sizeof(*na), cmp_node_at);
    for (uint32_t j = 0; j < nn; j++) {
        if (j == 0 || na[j].node != na[j - 1].node) {
            known++;
            first[na[j].index] = na[j].index;
        } else {
            first[na[j].index] = first[na[j - 1].index];
        }
    }

    int64_t origin = ord[0]->t_upgrade_ns, last = origin;
    uint32_t next_id = 0, capver = 0;
    int capver_mixed = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct h2r_ts_session *t = ord[i];
        struct rp_session_plan *e = &v[i];
        /* identities in order of first appearance: a node's later sessions reuse the one
         * its first session took; every node-0 session takes a new one */
        uint32_t id;
        if (t->node == 0) {
            id = next_id++;
            info->anonymous++;
        } else if (first[i] == i) {
            id = next_id++;
        } else {
            id = v[first[i]].identity;
        }
        /* the reader orders a record's times; a hand-made array may not, so no
         * subtraction here runs unchecked (offsets and holds are later added up) */
        e->start = plan_span(origin, t->t_upgrade_ns);
        e->hold = t->t_end_ns > t->t_upgrade_ns ? plan_span(t->t_upgrade_ns, t->t_end_ns) : 0;
        if (e->start < 0 || e->hold < 0) {
            rc = H2R_ERR_FORMAT;
            goto out;
        }
        e->identity = id;
        e->origin = i;
        e->seq = i;
        e->status = t->status;
        if (t->t_handshake_ns == 0) {
            e->skip = (uint8_t)(t->how == H2R_TS_END_UNKNOWN || t->how > H2R_TS_END_UNDECODABLE
                                    ? H2R_TS_END_REJECTED
                                    : t->how);
            info->skipped++;
        }
        if (t->t_end_ns > last)
            last = t->t_end_ns;
        if (t->capver) {
            if (capver && capver != t->capver)
                capver_mixed = 1;
            capver = t->capver;
        }
    }
    info->span_ns = plan_span(origin, last);
    if (info->span_ns < 0) {
        rc = H2R_ERR_FORMAT;
        goto out;
    }
    info->sessions = n;
    info->nodes = known;
    info->capver = capver_mixed ? 0 : capver;
    info->origin_ns = origin;
    p->v = v;
    p->n = n;
    p->identities = next_id;
    v = NULL;
    rc = 0;
out:
    if (rc)
        memset(info, 0, sizeof(*info));
    free(ord);
    free(na);
    free(first);
    free(v);
    return rc;
}

int rp_nodes_plan_from_trace(struct rp_nodes_plan *p, const char *path,
                             struct rp_nodes_trace_info *info, char *errbuf, size_t errlen)
{
    struct rp_nodes_trace_info dummy;
    if (!info)
        info = &dummy;
    memset(info, 0, sizeof(*info));
    p->v = NULL;
    p->n = 0;
    p->identities = 0;
    struct h2r_trace_reader *r = NULL;
    struct h2r_ts_session *v = NULL;
    size_t n = 0, cap = 0;
    uint64_t exchanges = 0;
    int rc = h2r_trace_reader_open(&r, path, errbuf, errlen);
    if (rc)
        return rc;
    for (;;) {
        struct h2r_trace_record rec;
        rc = h2r_trace_reader_next(r, &rec);
        if (rc <= 0)
            break;
        if (rec.kind == H2R_REC_EXCHANGE)
            exchanges++;
        if (rec.kind != H2R_REC_TS_SESSION)
            continue;
        if (n == MAX_NODES) {
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_LIMIT,
                            "%s: more than %u TS2021 sessions", path, MAX_NODES);
            goto out;
        }
        if (n == cap) {
            size_t c = cap ? cap * 2 : 64;
            struct h2r_ts_session *nv = realloc(v, c * sizeof(*nv));
            if (!nv) {
                rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
                goto out;
            }
            v = nv;
            cap = c;
        }
        v[n] = rec.u.ts;
        v[n].recs = NULL; /* borrowed pointers die with the next record: keep scalars only */
        v[n].n_recs = 0;
        v[n].reason = NULL;
        n++;
    }
    if (rc < 0) {
        rc = h2r_seterr(errbuf, errlen, rc, "%s: %s", path, h2r_trace_reader_errmsg(r));
        goto out;
    }
    if (n == 0) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_FORMAT,
                        "%s: no TS2021 session records (%llu HTTP/2 exchanges): replay it with "
                        "an http:// or https:// target, or give --nodes N for synthetic node "
                        "sessions",
                        path, (unsigned long long)exchanges);
        goto out;
    }
    rc = rp_nodes_plan_from_sessions(p, v, (uint32_t)n, info);
    if (rc == H2R_ERR_FORMAT)
        h2r_seterr(errbuf, errlen, rc, "%s: TS2021 session times span more than 10 years",
                   path);
    else if (rc)
        h2r_seterr(errbuf, errlen, rc, "%s: cannot plan %zu sessions", path, n);
    info->exchanges = exchanges;
out:
    free(v);
    h2r_trace_reader_free(r);
    return rc;
}

int rp_nodes_plan_clone(struct rp_nodes_plan *p, uint32_t copies, int64_t jitter)
{
    if (copies <= 1)
        return 0;
    if ((uint64_t)p->n * copies > UINT32_MAX - 1 ||
        (uint64_t)p->identities * copies > UINT32_MAX - 1)
        return H2R_ERR_LIMIT;
    struct rp_session_plan *v = calloc((size_t)p->n * copies, sizeof(*v));
    if (!v)
        return H2R_ERR_NOMEM;
    size_t k = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        for (uint32_t c = 0; c < copies; c++, k++) {
            v[k] = p->v[i];
            /* one offset per copy: a copy of a node keeps its sessions' order and gaps */
            v[k].start += (int64_t)((long double)jitter * c / copies);
            v[k].identity = p->v[i].identity * copies + c;
        }
    }
    qsort(v, k, sizeof(*v), cmp_plan);
    for (size_t i = 0; i < k; i++)
        v[i].seq = (uint32_t)i;
    free(p->v);
    p->v = v;
    p->n = (uint32_t)k;
    p->identities *= copies;
    return 0;
}

int rp_nodes_plan_shard(struct rp_nodes_plan *p, uint32_t index, uint32_t count,
                        uint32_t *identities)
{
    if (count <= 1) {
        if (identities)
            *identities = p->identities;
        return 0;
    }
    if (index >= count)
        return H2R_ERR_ARG;
    if (identities)
        *identities = 0;
    if (p->n == 0)
        return 0;
    int rc = H2R_ERR_NOMEM;
    uint64_t *keys = malloc((size_t)p->n * sizeof(*keys));
    int64_t *t_first = malloc((size_t)p->n * sizeof(*t_first));
    uint32_t *shard = malloc((size_t)p->n * sizeof(*shard));
    if (!keys || !t_first || !shard)
        goto out;
    for (uint32_t i = 0; i < p->n; i++) {
        keys[i] = p->v[i].identity;
        t_first[i] = p->v[i].start;
    }
    uint32_t units = 0;
    rc = rp_shard_assign(keys, t_first, p->n, count, shard, &units);
    if (rc)
        goto out;
    uint32_t k = 0;
    for (uint32_t i = 0; i < p->n; i++)
        if (shard[i] == index)
            p->v[k++] = p->v[i]; /* order (by start) is kept */
    p->n = k;
    if (identities) /* units dealt round-robin: this shard has every count-th one */
        *identities = units / count + (index < units % count ? 1 : 0);
out:
    free(keys);
    free(t_first);
    free(shard);
    return rc;
}

void rp_nodes_plan_free(struct rp_nodes_plan *p)
{
    free(p->v);
    p->v = NULL;
    p->n = 0;
    p->identities = 0;
}

/* ---- worker ---- */

enum sess_state { S_WAIT = 0, S_CONNECT, S_REGISTER, S_MAP, S_HOLD, S_DONE };
enum timer_kind { T_MAIN = 1, T_WATCH };

struct nworker;

struct nsess {
    struct rp_timer timer; /* T_MAIN: connect, register or netmap deadline, then hold end */
    struct rp_timer watch; /* T_WATCH: map stream silence */
    struct nworker *w;
    const struct rp_session_plan *p;
    uint8_t state; /* enum sess_state */
    uint8_t reg_emitted;
    uint8_t dirty, in_more, conn_dead;
    int ev; /* registered epoll events, 0 none */
    int64_t due;      /* absolute intended start */
    int64_t hold_end; /* absolute */
    int64_t t_open;   /* the TS2021 session opened */
    int64_t reg_sent; /* register submitted, 0 never */
    int64_t map_due;  /* when the map request became due (register done) */
    int64_t map_sent; /* map submitted, 0 never */
    int64_t t_end;    /* the map stream ended (server, failure or the replay) */
    struct rp_conn *c;
    uint32_t conn_index;
    struct rp_stream reg, upd, map; /* upd: the endpoint update (not with --omit-peers) */
    char *reg_body, *upd_body, *map_body;
    size_t reg_len, upd_len, map_len;
    struct ts_map_decoder *dec;
    int map_err; /* decoder failure inside the chunk callback */
    uint64_t *peers;
    uint32_t n_peers, cap_peers;
    uint64_t netmaps, keepalives;
    int64_t t_netmap, t_last_netmap, t_last_msg;
    char *err_body; /* a failed map response's first bytes */
    size_t err_body_len;
    struct nsess *dirty_next, *more_next;
};

struct nw_cfg {
    const struct rp_nodes_plan *plan;
    uint32_t tid, n_threads, section;
    const struct rp_target *target;
    const struct sockaddr *addr;
    socklen_t addr_len;
    uint32_t pre_cls; /* non-zero: every session fails so (unresolved host, /key failed) */
    const char *pre_detail;
    const uint8_t *control_pub;
    const uint8_t *key_seed; /* KEY_SEED_LEN bytes: identity keys (identity_keypair) */
    SSL_CTX *ssl_ctx;
    double speed;
    int64_t t0, timeout, connect_timeout, stall;
    uint16_t capver;
    int omit_peers;
    const char *authkey;
    const char *tag; /* hostname prefix of this run */
    struct rp_sink *sink;
    struct rp_live *live;
    _Atomic uint32_t *conn_seq;
};

struct nworker {
    struct nw_cfg cfg;
    int epfd, stopfd;
    struct rp_heap heap;
    struct nsess *ss;
    uint32_t n_ss, cur, left;
    struct rp_done_q done;
    struct nsess *dirty, *more;
    struct rp_conn *grave[64];
    uint32_t n_grave;
    struct rp_conn **grave_ext;
    size_t n_grave_ext, cap_grave_ext;
    uint8_t *scratch;
    struct ts_map_scratch *zs;
    struct rp_batch *batch;
    int64_t batch_t;
    struct rp_strtab details; /* failure details kept for results */
    int stopping, status;
    /* per-step time histograms, merged by the driver after join */
    struct rp_hist h_open, h_register, h_netmap;
    uint64_t peers_min, peers_max, netmap_sessions;
};

static int64_t rel(const struct nworker *w, int64_t t)
{
    if (t == 0)
        return 0;
    int64_t r = t - w->cfg.t0;
    return r > 0 ? r : 1; /* 0 means "never" in the run file */
}

static void live_add(_Atomic uint64_t *v, int64_t d)
{
    if (d >= 0)
        atomic_fetch_add_explicit(v, (uint64_t)d, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(v, (uint64_t)-d, memory_order_relaxed);
}

/* Details often point into a connection's buffers, which die with it: keep a copy. */
static const char *intern(struct nworker *w, const char *s)
{
    return rp_strtab_intern(&w->details, s);
}

static const char *internf(struct nworker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static const char *internf(struct nworker *w, const char *fmt, ...)
{
    char buf[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return intern(w, buf);
}

/* ---- results ---- */

static void push_batch(struct nworker *w, int last)
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

static struct h2r_run_result *new_result(struct nworker *w)
{
    if (!w->batch) {
        w->batch = calloc(1, sizeof(*w->batch));
        if (!w->batch) {
            w->status = H2R_ERR_NOMEM;
            return NULL;
        }
        w->batch_t = h2r_now_mono_ns();
    }
    struct rp_out *o = &w->batch->v[w->batch->n++];
    memset(o, 0, sizeof(*o));
    return &o->r;
}

static void result_done(struct nworker *w, uint32_t cls)
{
    live_add(&w->cfg.live->done, 1);
    if (cls != H2R_EC_NONE)
        live_add(&w->cfg.live->errors, 1);
    if (w->batch && w->batch->n == RP_BATCH)
        push_batch(w, 0);
}

static void fill_common(struct nworker *w, struct nsess *s, struct h2r_run_result *r,
                        const struct rp_stream *st, int step)
{
    r->section = w->cfg.section;
    r->exchange_id = 2 * (uint64_t)s->p->seq + (uint64_t)step;
    r->trace_conn = s->p->identity;
    r->conn_index = s->conn_index;
    r->method = METHOD_POST;
    r->path = step ? PATH_MAP : PATH_REGISTER;
    r->authority = w->cfg.target->authority;
    r->status = st->status;
    r->grpc_status = -1;
    r->trace_status = -1;
    r->trace_grpc_status = -1;
    r->t_first_byte_ns = rel(w, st->t_first_byte);
    r->req_bytes = st->req_bytes;
    r->resp_bytes = st->resp_bytes;
    r->flags = H2R_RES_F_TS;
    r->t_open_ns = rel(w, s->t_open);
}

/* The register step's result; t_sent is 0 when the request never went out. */
static void emit_register(struct nworker *w, struct nsess *s, uint32_t cls, const char *detail,
                          int64_t t_sent, int64_t t_done)
{
    if (s->reg_emitted)
        return;
    s->reg_emitted = 1;
    if (t_sent)
        live_add(&w->cfg.live->in_flight, -1);
    struct h2r_run_result *r = new_result(w);
    if (!r)
        return;
    fill_common(w, s, r, &s->reg, 0);
    r->stream_id = t_sent ? s->reg.stream_id : 0;
    r->t_intended_ns = s->due - w->cfg.t0;
    r->t_sent_ns = rel(w, t_sent);
    r->t_done_ns = t_done - w->cfg.t0;
    r->err_class = cls;
    r->err_detail = detail;
    if (cls == H2R_EC_NONE && t_sent)
        rp_hist_add(&w->h_register, t_done - t_sent);
    result_done(w, cls);
}

static void emit_map(struct nworker *w, struct nsess *s, uint32_t cls, const char *detail,
                     int64_t t_sent, int64_t t_done)
{
    if (t_sent)
        live_add(&w->cfg.live->in_flight, -1);
    struct h2r_run_result *r = new_result(w);
    if (!r)
        return;
    fill_common(w, s, r, &s->map, 1);
    r->stream_id = t_sent ? s->map.stream_id : 0;
    r->t_intended_ns = (s->map_due ? s->map_due : s->due) - w->cfg.t0;
    r->t_sent_ns = rel(w, t_sent);
    r->t_done_ns = t_done - w->cfg.t0;
    r->err_class = cls;
    r->err_detail = detail;
    r->t_netmap_ns = rel(w, s->t_netmap);
    r->t_last_netmap_ns = rel(w, s->t_last_netmap);
    r->t_end_ns = rel(w, s->t_end);
    r->netmaps = s->netmaps;
    r->keepalives = s->keepalives;
    r->peers = s->n_peers;
    if (s->t_netmap) {
        rp_hist_add(&w->h_netmap, s->t_netmap - t_sent);
        if (!w->netmap_sessions || s->n_peers < w->peers_min)
            w->peers_min = s->n_peers;
        if (s->n_peers > w->peers_max)
            w->peers_max = s->n_peers;
        w->netmap_sessions++;
    }
    result_done(w, cls);
}

/* ---- connections ---- */

static void mark_dirty(struct nworker *w, struct nsess *s)
{
    if (s->dirty || !s->c || s->conn_dead)
        return;
    s->dirty = 1;
    s->dirty_next = w->dirty;
    w->dirty = s;
}

static void update_events(struct nworker *w, struct nsess *s)
{
    if (!s->c || s->conn_dead)
        return;
    int ev;
    if (s->c->state == RP_CONN_CONNECTING) {
        ev = (s->c->io_want & RP_WANT_READ) ? EPOLLIN : EPOLLOUT;
    } else {
        ev = EPOLLIN;
        if (rp_conn_wants_write(s->c))
            ev |= EPOLLOUT;
    }
    if (ev == s->ev)
        return;
    struct epoll_event e;
    memset(&e, 0, sizeof(e));
    e.events = (uint32_t)ev;
    e.data.ptr = s;
    if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, s->c->io->fd, &e) == 0)
        s->ev = ev;
}

/* Takes the connection out of service; it is freed at the end of the iteration. */
static void conn_bury(struct nworker *w, struct nsess *s)
{
    if (!s->c)
        return;
    struct rp_conn *c = s->c;
    rp_conn_fail_all(c, H2R_EC_CONN_CLOSED, "closed by the replay");
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->io->fd, NULL);
    s->c = NULL;
    s->conn_dead = 1;
    live_add(&w->cfg.live->open_conns, -1);
    if (w->n_grave < sizeof(w->grave) / sizeof(w->grave[0])) {
        w->grave[w->n_grave++] = c;
        return;
    }
    if (w->n_grave_ext == w->cap_grave_ext) {
        size_t n = w->cap_grave_ext ? w->cap_grave_ext * 2 : 64;
        struct rp_conn **v = realloc(w->grave_ext, n * sizeof(*v));
        if (!v) { /* cannot defer: nothing references it once its streams finished */
            rp_conn_free(c);
            return;
        }
        w->grave_ext = v;
        w->cap_grave_ext = n;
    }
    w->grave_ext[w->n_grave_ext++] = c;
}

static void free_grave(struct nworker *w)
{
    for (uint32_t i = 0; i < w->n_grave; i++)
        rp_conn_free(w->grave[i]);
    w->n_grave = 0;
    for (size_t i = 0; i < w->n_grave_ext; i++)
        rp_conn_free(w->grave_ext[i]);
    w->n_grave_ext = 0;
}

static void free_session_state(struct nsess *s)
{
    free(s->reg_body);
    free(s->upd_body);
    free(s->map_body);
    s->reg_body = s->upd_body = s->map_body = NULL;
    ts_map_decoder_free(s->dec);
    s->dec = NULL;
    free(s->peers);
    s->peers = NULL;
    s->cap_peers = 0;
    free(s->err_body);
    s->err_body = NULL;
    rp_capture_free(s->reg.cap);
    s->reg.cap = NULL;
}

/* The session is over: reset the held stream, GOAWAY, close; free what it held. */
static void session_close(struct nworker *w, struct nsess *s)
{
    rp_heap_cancel(&w->heap, &s->timer);
    rp_heap_cancel(&w->heap, &s->watch);
    s->state = S_DONE;
    if (s->c) {
        struct rp_conn *c = s->c;
        if (c->state == RP_CONN_READY) {
            if (!s->map.finished && s->map.conn == c)
                rp_conn_cancel(c, &s->map, H2R_EC_NONE, NULL);
            if (!s->upd.finished && s->upd.conn == c)
                rp_conn_cancel(c, &s->upd, H2R_EC_NONE, NULL);
            rp_conn_goaway(c);
            rp_conn_flush(c, w->scratch, SCRATCH_BYTES); /* best effort, never waits */
        }
        conn_bury(w, s);
    }
    free_session_state(s);
    w->left--;
}

/* Ends the session with the map step's outcome (the register result is out already). */
static void session_end(struct nworker *w, struct nsess *s, uint32_t cls, const char *detail)
{
    if (s->state == S_DONE)
        return;
    int64_t now = h2r_now_mono_ns();
    if (!s->t_end && s->map_sent)
        s->t_end = s->map.finished && s->map.t_done ? s->map.t_done : now;
    /* the map step is done at its first netmap (light sessions: at the response) */
    int64_t done = s->t_netmap                           ? s->t_netmap
                   : s->map.finished && s->map.t_done ? s->map.t_done
                                                      : now;
    emit_map(w, s, cls, detail, s->map_sent, done);
    session_close(w, s);
}

/* No session came about (connection, TLS, TS2021 upgrade or a local failure). */
static void session_fail_early(struct nworker *w, struct nsess *s, uint32_t cls,
                               const char *detail)
{
    int64_t now = h2r_now_mono_ns();
    emit_register(w, s, cls, intern(w, detail), 0, now);
    emit_map(w, s, H2R_EC_SKIPPED, "no TS2021 session", 0, now);
    session_close(w, s);
}

/* ---- the map stream (inside nghttp2's receive call: record only) ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int peers_reserve(struct nsess *s, size_t n)
{
    if (n <= s->cap_peers)
        return 0;
    size_t c = s->cap_peers ? s->cap_peers : 16;
    while (c < n)
        c *= 2;
    uint64_t *v = realloc(s->peers, c * sizeof(*v));
    if (!v)
        return H2R_ERR_NOMEM;
    s->peers = v;
    s->cap_peers = (uint32_t)c;
    return 0;
}

/* Position of id in the sorted peer set, or where it would go. */
static uint32_t peers_find(const struct nsess *s, uint64_t id, int *found)
{
    uint32_t lo = 0, hi = s->n_peers;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->peers[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < s->n_peers && s->peers[lo] == id;
    return lo;
}

static int node_id(json_t *node, uint64_t *id)
{
    json_t *v = json_is_object(node) ? json_object_get(node, "ID") : node;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *id = (uint64_t)json_integer_value(v);
    return 0;
}

/*
 * Applies a MapResponse to the node's peer set (tailcfg: Peers is a full list,
 * PeersChanged adds or replaces, PeersRemoved removes by node ID; absent fields
 * mean "unchanged").
 */
static int apply_peers(struct nsess *s, json_t *root)
{
    json_t *arr = json_object_get(root, "Peers"), *v;
    size_t i;
    uint64_t id;
    int found;
    if (json_is_array(arr)) {
        if (peers_reserve(s, json_array_size(arr)))
            return H2R_ERR_NOMEM;
        s->n_peers = 0;
        json_array_foreach(arr, i, v)
        {
            if (node_id(v, &id) == 0)
                s->peers[s->n_peers++] = id;
        }
        qsort(s->peers, s->n_peers, sizeof(*s->peers), cmp_u64);
        uint32_t k = 0;
        for (uint32_t j = 0; j < s->n_peers; j++)
            if (k == 0 || s->peers[k - 1] != s->peers[j])
                s->peers[k++] = s->peers[j];
        s->n_peers = k;
    }
    arr = json_object_get(root, "PeersChanged");
    if (json_is_array(arr)) {
        json_array_foreach(arr, i, v)
        {
            if (node_id(v, &id))
                continue;
            uint32_t at = peers_find(s, id, &found);
            if (found)
                continue;
            if (peers_reserve(s, (size_t)s->n_peers + 1))
                return H2R_ERR_NOMEM;
            memmove(s->peers + at + 1, s->peers + at, (s->n_peers - at) * sizeof(*s->peers));
            s->peers[at] = id;
            s->n_peers++;
        }
    }
    arr = json_object_get(root, "PeersRemoved");
    if (json_is_array(arr)) {
        json_array_foreach(arr, i, v)
        {
            if (node_id(v, &id))
                continue;
            uint32_t at = peers_find(s, id, &found);
            if (!found)
                continue;
            memmove(s->peers + at, s->peers + at + 1, (s->n_peers - at - 1) * sizeof(*s->peers));
            s->n_peers--;
        }
    }
    return 0;
}

static int on_map_msg(void *ud, const struct ts_map_msg *m, json_t *root)
{
    struct nsess *s = ud;
    int64_t now = h2r_now_mono_ns();
    s->t_last_msg = now;
    if (m->keepalive) {
        s->keepalives++;
        return 0;
    }
    s->netmaps++;
    s->t_last_netmap = now;
    if (!s->t_netmap)
        s->t_netmap = now;
    return apply_peers(s, root);
}

static void map_chunk(struct rp_stream *st, const uint8_t *data, size_t len)
{
    struct nsess *s = st->owner;
    if (!s || s->state == S_DONE)
        return;
    if (st->status != 200) { /* keep the start of an error body for the detail */
        if (!s->err_body)
            s->err_body = malloc(ERR_BODY_KEEP);
        if (s->err_body && s->err_body_len < ERR_BODY_KEEP) {
            size_t n = ERR_BODY_KEEP - s->err_body_len;
            if (n > len)
                n = len;
            memcpy(s->err_body + s->err_body_len, data, n);
            s->err_body_len += n;
        }
        return;
    }
    if (!s->dec || s->map_err)
        return;
    int rc = ts_map_feed(s->dec, data, len);
    if (rc)
        s->map_err = rc;
}

/* ---- steps ---- */

static void nv_set(nghttp2_nv *nv, const char *name, const char *value)
{
    nv->name = (uint8_t *)(uintptr_t)name;
    nv->namelen = strlen(name);
    nv->value = (uint8_t *)(uintptr_t)value;
    nv->valuelen = strlen(value);
    nv->flags = NGHTTP2_NV_FLAG_NONE;
}

static void stream_prepare(struct rp_stream *st, struct nsess *s, const char *body, size_t len)
{
    memset(st, 0, sizeof(*st));
    st->status = -1;
    st->grpc_status = -1;
    st->owner = s;
    st->body = (const uint8_t *)body;
    st->body_stored = len;
    st->body_len = len;
}

/* POSTs body to path on the session's connection; counted: the request has a result of its
 * own (in flight until then). Returns 0 or a negative nghttp2 code. */
static int submit_post(struct nworker *w, struct nsess *s, struct rp_stream *st, const char *path,
                       int counted)
{
    char clen[24];
    snprintf(clen, sizeof(clen), "%zu", (size_t)st->body_len);
    nghttp2_nv nv[6];
    /* Go's h2 server wants :scheme http or https (x/net http2 server.go); TS sends https */
    nv_set(&nv[0], ":method", METHOD_POST);
    nv_set(&nv[1], ":scheme", "https");
    nv_set(&nv[2], ":authority", w->cfg.target->authority);
    nv_set(&nv[3], ":path", path);
    nv_set(&nv[4], "content-type", "application/json");
    nv_set(&nv[5], "content-length", clen);
    int rc = rp_conn_submit(s->c, st, nv, 6);
    if (rc == 0) {
        live_add(&w->cfg.live->sent, 1);
        if (counted)
            live_add(&w->cfg.live->in_flight, 1);
        mark_dirty(w, s);
    }
    return rc;
}

static void arm(struct nworker *w, struct rp_timer *t, int64_t at)
{
    if (rp_heap_arm(&w->heap, t, at))
        w->status = H2R_ERR_NOMEM; /* the session then ends with the worker */
}

static void conn_died(struct nworker *w, struct nsess *s);

/* The TS2021 session is open: register. */
static void conn_ready(struct nworker *w, struct nsess *s)
{
    int64_t now = h2r_now_mono_ns();
    s->t_open = now;
    rp_hist_add(&w->h_open, now - s->due);
    stream_prepare(&s->reg, s, s->reg_body, s->reg_len);
    s->reg.cap = calloc(1, sizeof(*s->reg.cap));
    if (!s->reg.cap || submit_post(w, s, &s->reg, PATH_REGISTER, 1)) {
        session_fail_early(w, s, H2R_EC_IO, "cannot submit the register request");
        return;
    }
    s->reg_sent = now;
    s->state = S_REGISTER;
    arm(w, &s->timer, now + w->cfg.timeout);
    /* the server's first HTTP/2 frames may have arrived with the handshake response */
    if (rp_conn_read(s->c, w->scratch, SCRATCH_BYTES) != RP_IO_OK) {
        conn_died(w, s);
        return;
    }
    update_events(w, s);
}

/*
 * Substrings of Headscale's pre-auth key errors (hscontrol/auth.go, state.go).
 * Headscale wraps every failure on the pre-auth key path in "handling register
 * with auth key: ...", also a full disk or a lost database connection, so the
 * wrapper is skipped before looking: only the server's own reason decides
 * between auth_key_refused and register_error.
 */
int rp_nodes_is_auth_error(const char *e)
{
    static const char wrapper[] = "handling register with auth key:";
    static const char *const words[] = {"auth key", "authkey", "auth-key", "preauth",
                                        "pre-auth", "pre auth"};
    while (strncasecmp(e, wrapper, sizeof(wrapper) - 1) == 0) {
        e += sizeof(wrapper) - 1;
        while (*e == ' ')
            e++;
    }
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcasestr(e, words[i]))
            return 1;
    return 0;
}

/* Prints up to n bytes of body as one line of printable text. */
static void text_excerpt(const uint8_t *b, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        uint8_t c = b[i];
        if (c == '\n' || c == '\r')
            c = ' ';
        out[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    while (k > 0 && out[k - 1] == ' ')
        k--;
    out[k] = '\0';
}

static void register_done(struct nworker *w, struct nsess *s)
{
    struct rp_stream *st = &s->reg;
    uint32_t cls = st->err_class;
    const char *detail = intern(w, st->err_detail);
    if (cls == H2R_EC_NONE) {
        const struct rp_capture *cap = st->cap;
        const uint8_t *body = cap ? cap->body : NULL;
        size_t blen = cap ? cap->body_len : 0;
        char text[ERR_BODY_KEEP];
        struct ts_register_resp rr;
        text_excerpt(body, blen, text, sizeof(text));
        if (st->status != 200) {
            /* Headscale 0.23 answers a bad pre-auth key with 401 and a RegisterResponse
             * whose Error is empty (MachineAuthorized false) */
            int rr_ok = ts_register_response_parse(body, blen, &rr) == 0;
            cls = (st->status == 401 || st->status == 403) ? H2R_EC_TS_AUTH : H2R_EC_TS_REGISTER;
            if (rr_ok && rr.error[0] && rp_nodes_is_auth_error(rr.error))
                cls = H2R_EC_TS_AUTH;
            if (rr_ok && rr.error[0])
                detail = internf(w, "HTTP %d: %s", st->status, rr.error);
            else if (rr_ok)
                detail = internf(w, "HTTP %d: RegisterResponse with MachineAuthorized %s",
                                 st->status, rr.machine_authorized ? "true" : "false");
            else
                detail = internf(w, "HTTP %d: %s", st->status, text);
        } else if (ts_register_response_parse(body, blen, &rr) != 0) {
            cls = H2R_EC_TS_REGISTER;
            detail = internf(w, "not a RegisterResponse: %s", text);
        } else if (rr.error[0]) {
            cls = rp_nodes_is_auth_error(rr.error) ? H2R_EC_TS_AUTH : H2R_EC_TS_REGISTER;
            detail = intern(w, rr.error);
        } else if (rr.auth_url[0]) {
            cls = H2R_EC_TS_REGISTER;
            detail = "interactive login required (AuthURL set)";
        } else if (!rr.machine_authorized) {
            cls = H2R_EC_TS_REGISTER;
            detail = "MachineAuthorized false";
        }
    } else if (cls == H2R_EC_CONN_CLOSED || cls == H2R_EC_GOAWAY) {
        detail = internf(w, "%s: %s", h2r_err_class_name(cls), detail ? detail : "");
        cls = H2R_EC_TS_CLOSED;
    }
    int64_t now = st->t_done ? st->t_done : h2r_now_mono_ns();
    emit_register(w, s, cls, detail, s->reg_sent, now);
    if (cls == H2R_EC_NONE) /* accepted: the node is acknowledged (rp_ack.h, via rp_dbwatch.h) */
        rp_ack_node_registered(w->cfg.section, 2 * (uint64_t)s->p->seq, s->p->identity,
                               now - w->cfg.t0, s->reg_body, s->reg_len);
    rp_capture_free(st->cap);
    st->cap = NULL;
    free(s->reg_body);
    s->reg_body = NULL;
    if (cls != H2R_EC_NONE) {
        emit_map(w, s, H2R_EC_SKIPPED, "register failed", 0, now);
        session_close(w, s);
        return;
    }
    if (!s->c || s->conn_dead || !rp_conn_accepts(s->c)) {
        s->map_due = now;
        emit_map(w, s, H2R_EC_TS_CLOSED, "connection closed after register", 0, now);
        session_close(w, s);
        return;
    }
    /* map */
    if (!w->cfg.omit_peers) {
        struct ts_map_opts mo = {.compressed = 1, .scratch = w->zs};
        if (ts_map_decoder_new(&s->dec, &mo, on_map_msg, s)) {
            s->map_due = now;
            emit_map(w, s, H2R_EC_IO, "out of memory", 0, now);
            session_close(w, s);
            return;
        }
    }
    s->map_due = now;
    int64_t t = h2r_now_mono_ns();
    if (s->upd_body) {
        /* announce the endpoints first, as tailscaled's lite update does: Headscale 0.23
         * tells the other nodes about a node only then (poll.go handleEndpointUpdate; its
         * stream path notifies only clients below capability version 68) */
        stream_prepare(&s->upd, s, s->upd_body, s->upd_len);
        if (submit_post(w, s, &s->upd, PATH_MAP, 0)) {
            emit_map(w, s, H2R_EC_PROTOCOL, "cannot submit the endpoint update", 0, t);
            session_close(w, s);
            return;
        }
    }
    stream_prepare(&s->map, s, s->map_body, s->map_len);
    s->map.on_body = map_chunk;
    if (submit_post(w, s, &s->map, PATH_MAP, 1)) {
        emit_map(w, s, H2R_EC_PROTOCOL, "cannot submit the map request", 0, t);
        session_close(w, s);
        return;
    }
    s->map_sent = t;
    s->state = S_MAP;
    arm(w, &s->timer, t + w->cfg.timeout);
}

/* The endpoint update finished: only a failure matters (it fails the map step). */
static void upd_done(struct nworker *w, struct nsess *s)
{
    struct rp_stream *st = &s->upd;
    uint32_t cls = st->err_class;
    const char *detail = intern(w, st->err_detail);
    free(s->upd_body);
    s->upd_body = NULL;
    if (cls == H2R_EC_NONE && st->status == 200)
        return;
    if (cls == H2R_EC_NONE) {
        cls = H2R_EC_HTTP_STATUS;
        detail = internf(w, "endpoint update: HTTP %d", st->status);
    } else {
        detail = internf(w, "endpoint update: %s%s%s", h2r_err_class_name(cls),
                         detail ? ": " : "", detail ? detail : "");
        if (cls == H2R_EC_CONN_CLOSED || cls == H2R_EC_GOAWAY || cls == H2R_EC_STREAM_RESET)
            cls = H2R_EC_TS_CLOSED;
    }
    session_end(w, s, cls, detail);
}

/* The map request's stream finished before the replay ended it. */
static void map_done(struct nworker *w, struct nsess *s)
{
    struct rp_stream *st = &s->map;
    uint32_t cls = st->err_class;
    const char *detail = intern(w, st->err_detail);
    char text[ERR_BODY_KEEP];
    text_excerpt((const uint8_t *)s->err_body, s->err_body_len, text, sizeof(text));
    s->t_end = st->t_done;
    if (s->map_err) {
        session_end(w, s, H2R_EC_PROTOCOL,
                    internf(w, "map stream: %s", ts_map_decoder_error(s->dec)));
        return;
    }
    if (cls == H2R_EC_NONE && st->status >= 400) {
        session_end(w, s, H2R_EC_HTTP_STATUS, internf(w, "HTTP %d: %s", st->status, text));
        return;
    }
    if (w->cfg.omit_peers) { /* a light session: the response is the whole step */
        session_end(w, s, cls, detail);
        return;
    }
    int closed = cls == H2R_EC_NONE || cls == H2R_EC_CONN_CLOSED || cls == H2R_EC_TS_CLOSED ||
                 cls == H2R_EC_GOAWAY || cls == H2R_EC_STREAM_RESET;
    if (!closed) {
        session_end(w, s, cls, detail);
        return;
    }
    const char *how = cls == H2R_EC_NONE ? "stream ended" : h2r_err_class_name(cls);
    if (s->state == S_MAP)
        detail = internf(w, "%s%s%s before the first netmap", how, detail ? ": " : "",
                         detail ? detail : "");
    else
        detail = internf(w, "%s%s%s after %" PRIu64 " netmaps", how, detail ? ": " : "",
                         detail ? detail : "", s->netmaps);
    session_end(w, s, H2R_EC_TS_CLOSED, detail);
}

/* The first netmap arrived: hold the stream until the session's end. */
static void enter_hold(struct nworker *w, struct nsess *s)
{
    int64_t now = h2r_now_mono_ns();
    s->state = S_HOLD;
    if (now >= s->hold_end) {
        session_end(w, s, H2R_EC_NONE, NULL);
        return;
    }
    arm(w, &s->timer, s->hold_end);
    arm(w, &s->watch, s->t_last_msg + w->cfg.stall);
}

/* After nghttp2 consumed input: act on what the map decoder recorded. */
static void after_input(struct nworker *w, struct nsess *s)
{
    if (s->state != S_MAP && s->state != S_HOLD)
        return;
    if (s->map_err) {
        session_end(w, s, H2R_EC_PROTOCOL,
                    internf(w, "map stream: %s", ts_map_decoder_error(s->dec)));
        return;
    }
    if (s->state == S_MAP && s->t_netmap)
        enter_hold(w, s);
}

/* The connection failed: its open streams finish with its class (handled as they
 * come off the done queue); without a stream, the session fails here. */
static void conn_died(struct nworker *w, struct nsess *s)
{
    struct rp_conn *c = s->c;
    if (!c || s->conn_dead)
        return;
    uint32_t cls = c->err_class ? c->err_class : H2R_EC_IO;
    const char *detail = intern(w, c->err_detail);
    if (s->state == S_CONNECT) {
        session_fail_early(w, s, cls, detail);
        return;
    }
    rp_conn_fail_all(c, cls, detail);
    conn_bury(w, s);
}

/* A captured session that never completed a handshake: one result says why, nothing is
 * sent (replaying its refusal would only measure the replay's own request). */
static void session_skip(struct nworker *w, struct nsess *s)
{
    int64_t now = h2r_now_mono_ns();
    const struct rp_session_plan *p = s->p;
    struct h2r_run_result *r = new_result(w);
    if (r) {
        r->section = w->cfg.section;
        r->exchange_id = 2 * (uint64_t)p->seq;
        r->trace_conn = p->identity;
        r->method = METHOD_POST;
        r->path = PATH_UPGRADE;
        r->authority = w->cfg.target->authority;
        r->status = -1;
        r->grpc_status = -1;
        r->trace_status = p->status;
        r->trace_grpc_status = -1;
        r->t_intended_ns = s->due - w->cfg.t0;
        r->t_done_ns = now - w->cfg.t0;
        r->err_class = H2R_EC_SKIPPED;
        r->flags = H2R_RES_F_TS;
        switch (p->skip) {
        case H2R_TS_END_REFUSED:
            r->err_detail = internf(w, "captured upgrade refused (HTTP %d): not replayed",
                                    (int)p->status);
            break;
        case H2R_TS_END_REJECTED:
            r->err_detail = "captured handshake rejected (no handshake response): not replayed";
            break;
        case H2R_TS_END_UNDECODABLE:
            r->err_detail = "captured session undecodable before its handshake: not replayed";
            break;
        default:
            r->err_detail = internf(w, "captured session ended (%s) before its handshake: not "
                                       "replayed",
                                    h2r_ts_how_name(p->skip));
            break;
        }
        result_done(w, H2R_EC_SKIPPED);
    }
    session_close(w, s);
}

/*
 * An identity's machine or node key pair: private key = SHA-256(seed || label || identity
 * as 4 bytes LE). Every session of one identity (a captured node's reconnects, whichever
 * loop thread runs them) thus presents the same machine and node key, which is what makes
 * Headscale take its known-node path; a run's random seed keeps runs apart. Returns 0 or
 * H2R_ERR_PROTO.
 */
static int identity_keypair(const uint8_t *seed, const char *label, uint32_t identity,
                            struct ts_keypair *kp)
{
    uint8_t in[KEY_SEED_LEN + 16 + 4], priv[TS_KEY_LEN];
    size_t ll = strlen(label);
    if (ll > 16)
        return H2R_ERR_PROTO;
    memcpy(in, seed, KEY_SEED_LEN);
    memcpy(in + KEY_SEED_LEN, label, ll);
    for (int i = 0; i < 4; i++)
        in[KEY_SEED_LEN + ll + (size_t)i] = (uint8_t)(identity >> (8 * i));
    unsigned int dl = 0;
    int rc = EVP_Digest(in, KEY_SEED_LEN + ll + 4, priv, &dl, EVP_sha256(), NULL) == 1 &&
                     dl == TS_KEY_LEN
                 ? ts_keypair_from_private(kp, priv)
                 : H2R_ERR_PROTO;
    OPENSSL_cleanse(in, sizeof(in));
    OPENSSL_cleanse(priv, sizeof(priv));
    return rc;
}

/* Starts session s: keys, request bodies, TCP connect, TLS and TS2021 layers. */
static void session_start(struct nworker *w, struct nsess *s)
{
    const struct nw_cfg *cfg = &w->cfg;
    int64_t now = h2r_now_mono_ns();
    live_add(&cfg->live->due, 1);
    int64_t late = now - s->due;
    rp_hist_add(&cfg->live->late, late);
    rp_live_late(cfg->live, late);
    if (s->p->skip) {
        session_skip(w, s);
        return;
    }
    if (cfg->pre_cls) {
        session_fail_early(w, s, cfg->pre_cls, cfg->pre_detail);
        return;
    }
    s->conn_index = atomic_fetch_add_explicit(cfg->conn_seq, 1, memory_order_relaxed);

    struct ts_keypair machine, node, disco;
    char host[64], ep[32];
    snprintf(host, sizeof(host), "%s-%u", cfg->tag, s->p->identity);
    /* a made-up WireGuard endpoint (nothing connects to it: Headscale only relays it) */
    snprintf(ep, sizeof(ep), "127.0.0.1:%u", 1024u + s->p->identity % 64000u);
    const char *eps[1] = {ep};
    struct ts_hostinfo hi = {.hostname = host, .os = "linux", .ipn_version = "h2replay",
                             .app = "h2replay"};
    if (identity_keypair(cfg->key_seed, "machine", s->p->identity, &machine) ||
        identity_keypair(cfg->key_seed, "node", s->p->identity, &node) ||
        ts_keypair_generate(&disco)) {
        OPENSSL_cleanse(&machine, sizeof(machine));
        session_fail_early(w, s, H2R_EC_IO, "key generation failed");
        return;
    }
    struct ts_register_req rq = {.version = cfg->capver, .node_key = node.pub,
                                 .auth_key = cfg->authkey, .hostinfo = &hi};
    /* the stream (or, with --omit-peers, the light session's only map request) and the
     * endpoint update before it: tailcfg "lite" semantics, Stream false + OmitPeers true */
    struct ts_map_req mq = {.version = cfg->capver, .node_key = node.pub,
                            .disco_key = disco.pub, .compress_zstd = 1, .keepalive = 1,
                            .stream = !cfg->omit_peers, .omit_peers = cfg->omit_peers,
                            .hostinfo = &hi, .endpoints = eps, .n_endpoints = 1};
    struct ts_map_req uq = mq;
    uq.stream = 0;
    uq.omit_peers = 1;
    if (ts_register_request_json(&rq, &s->reg_body, &s->reg_len) ||
        ts_map_request_json(&mq, &s->map_body, &s->map_len) ||
        (!cfg->omit_peers && ts_map_request_json(&uq, &s->upd_body, &s->upd_len))) {
        OPENSSL_cleanse(&machine, sizeof(machine));
        session_fail_early(w, s, H2R_EC_IO, "out of memory");
        return;
    }
    OPENSSL_cleanse(&node, sizeof(node)); /* the node never signs anything here */
    OPENSSL_cleanse(&disco, sizeof(disco));

    struct rp_io *io = NULL, *up = NULL;
    uint32_t cls = H2R_EC_IO;
    const char *detail = NULL;
    char err[160];
    if (rp_tcp_connect(&io, cfg->addr, cfg->addr_len, &cls, &detail)) {
        OPENSSL_cleanse(&machine, sizeof(machine));
        session_fail_early(w, s, cls, detail);
        return;
    }
    if (cfg->ssl_ctx) {
        if (rp_tls_wrap(&up, io, cfg->ssl_ctx, cfg->target->host, cfg->target->host_ip)) {
            io->ops->free(io);
            OPENSSL_cleanse(&machine, sizeof(machine));
            session_fail_early(w, s, H2R_EC_IO, "out of memory");
            return;
        }
        io = up;
    }
    int rc = rp_ts_wrap(&up, io, cfg->capver, machine.priv, cfg->control_pub,
                        cfg->target->authority, err, sizeof(err));
    OPENSSL_cleanse(&machine, sizeof(machine)); /* the Noise state has its copy */
    if (rc) {
        io->ops->free(io);
        session_fail_early(w, s, H2R_EC_IO, err);
        return;
    }
    if (rp_conn_new(&s->c, up, &w->done)) { /* frees up */
        s->c = NULL;
        session_fail_early(w, s, H2R_EC_IO, "out of memory");
        return;
    }
    s->c->owner = s;
    s->c->index = s->conn_index;
    s->conn_dead = 0;
    struct epoll_event e;
    memset(&e, 0, sizeof(e));
    e.events = EPOLLOUT;
    e.data.ptr = s;
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, s->c->io->fd, &e) < 0) {
        char buf[32];
        const char *d = rp_errno_name(errno, buf, sizeof(buf));
        rp_conn_free(s->c);
        s->c = NULL;
        session_fail_early(w, s, H2R_EC_IO, d);
        return;
    }
    s->ev = EPOLLOUT;
    live_add(&cfg->live->open_conns, 1);
    s->state = S_CONNECT;
    arm(w, &s->timer, now + cfg->connect_timeout);
}

/* ---- loop ---- */

static void on_event(struct nworker *w, struct nsess *s, uint32_t events)
{
    if (s->state == S_DONE || !s->c || s->conn_dead)
        return;
    struct rp_conn *c = s->c;
    if (c->state == RP_CONN_CONNECTING) {
        int rc = rp_conn_handshake(c);
        if (rc == RP_IO_OK)
            conn_ready(w, s);
        else if (rc == RP_IO_RETRY)
            update_events(w, s);
        else
            conn_died(w, s);
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        if (rp_conn_read(c, w->scratch, SCRATCH_BYTES) != RP_IO_OK) {
            after_input(w, s);
            conn_died(w, s);
            return;
        }
        mark_dirty(w, s); /* SETTINGS ACK, WINDOW_UPDATE */
        if (c->more_input && !s->in_more) {
            s->in_more = 1;
            s->more_next = w->more;
            w->more = s;
        }
        after_input(w, s);
    }
    if ((events & EPOLLOUT) && s->state != S_DONE)
        mark_dirty(w, s);
}

static void on_timer(struct nworker *w, struct rp_timer *t)
{
    int64_t now = h2r_now_mono_ns();
    char d[32];
    if (t->kind == T_WATCH) {
        struct nsess *s = container_of(t, struct nsess, watch);
        if (s->state != S_HOLD)
            return;
        if (now - s->t_last_msg >= w->cfg.stall) {
            h2r_format_duration(now - s->t_last_msg, d, sizeof(d));
            session_end(w, s, H2R_EC_TS_STALLED,
                        internf(w, "no map message for %s (%" PRIu64 " keep-alives before)", d,
                                s->keepalives));
        } else {
            arm(w, &s->watch, s->t_last_msg + w->cfg.stall);
        }
        return;
    }
    struct nsess *s = container_of(t, struct nsess, timer);
    switch (s->state) {
    case S_CONNECT:
        session_fail_early(w, s, H2R_EC_CONNECT_TIMEOUT,
                           s->c && s->c->io->lower && s->c->io->lower->lower
                               ? "tcp connect, tls or ts2021 upgrade"
                               : "tcp connect or ts2021 upgrade");
        break;
    case S_REGISTER:
        if (s->c && !s->reg.finished) {
            rp_conn_cancel(s->c, &s->reg, H2R_EC_DEADLINE, NULL);
            mark_dirty(w, s);
        }
        break;
    case S_MAP:
        if (w->cfg.omit_peers) {
            session_end(w, s, H2R_EC_DEADLINE, NULL);
        } else {
            h2r_format_duration(w->cfg.timeout, d, sizeof(d));
            session_end(w, s, H2R_EC_TS_NO_NETMAP,
                        internf(w, "no netmap within %s of the map request (%" PRIu64
                                   " keep-alives)",
                                d, s->keepalives));
        }
        break;
    case S_HOLD:
        session_end(w, s, H2R_EC_NONE, NULL);
        break;
    default:
        break;
    }
}

static void process_done(struct nworker *w)
{
    while (w->done.head) {
        struct rp_stream *st = w->done.head;
        w->done.head = st->done_next;
        if (!w->done.head)
            w->done.tail = NULL;
        st->done_next = NULL;
        struct nsess *s = st->owner;
        if (!s || s->state == S_DONE)
            continue;
        if (st == &s->reg && s->state == S_REGISTER)
            register_done(w, s);
        else if (st == &s->map && (s->state == S_MAP || s->state == S_HOLD))
            map_done(w, s);
        else if (st == &s->upd && (s->state == S_MAP || s->state == S_HOLD))
            upd_done(w, s);
    }
}

static void flush_dirty(struct nworker *w)
{
    while (w->dirty) {
        struct nsess *s = w->dirty;
        w->dirty = s->dirty_next;
        s->dirty = 0;
        if (!s->c || s->conn_dead || s->state == S_DONE)
            continue;
        if (rp_conn_flush(s->c, w->scratch, SCRATCH_BYTES) != RP_IO_OK) {
            conn_died(w, s);
            continue;
        }
        update_events(w, s);
    }
}

static void settle(struct nworker *w)
{
    do {
        process_done(w);
        flush_dirty(w);
    } while (w->done.head || w->dirty);
    free_grave(w);
}

static void read_more(struct nworker *w)
{
    struct nsess *list = w->more;
    w->more = NULL;
    while (list) {
        struct nsess *s = list;
        list = s->more_next;
        s->in_more = 0;
        if (s->c && !s->conn_dead && s->c->more_input)
            on_event(w, s, EPOLLIN);
    }
}

/*
 * Sessions started per loop turn. A start costs ~0.3 ms (three X25519 key
 * pairs, the Noise state, a connect); starting 10,000 due sessions in one turn
 * held every connection's upgrade back ~3 s, long enough for their connect
 * timers (armed at start) to fire. Between bursts the loop serves I/O with a
 * zero wait, so lateness, not a false connect_timeout, records the backlog.
 */
#define START_BURST 32

static void run_due(struct nworker *w, int64_t now)
{
    for (int k = 0; k < START_BURST && w->cur < w->n_ss && w->ss[w->cur].due <= now &&
                    !w->stopping;
         k++)
        session_start(w, &w->ss[w->cur++]);
    for (;;) {
        struct rp_timer *t = rp_heap_pop_due(&w->heap, now);
        if (!t)
            break;
        on_timer(w, t);
    }
}

static void stop_all(struct nworker *w)
{
    w->stopping = 1;
    int64_t now = h2r_now_mono_ns();
    for (uint32_t i = 0; i < w->n_ss; i++) {
        struct nsess *s = &w->ss[i];
        switch (s->state) {
        case S_DONE:
            break;
        case S_WAIT:
            if (s->p->skip) { /* its one result, as if it had come due */
                session_skip(w, s);
                break;
            }
            emit_register(w, s, H2R_EC_SKIPPED, "interrupted", 0, now);
            emit_map(w, s, H2R_EC_SKIPPED, "interrupted", 0, now);
            session_close(w, s);
            break;
        case S_CONNECT:
            session_fail_early(w, s, H2R_EC_CANCELLED, "interrupted");
            break;
        case S_REGISTER:
            emit_register(w, s, H2R_EC_CANCELLED, NULL, s->reg_sent, now);
            emit_map(w, s, H2R_EC_SKIPPED, "interrupted", 0, now);
            session_close(w, s);
            break;
        default:
            session_end(w, s, H2R_EC_CANCELLED, "interrupted");
            break;
        }
    }
}

static int wait_events(struct nworker *w, struct epoll_event *ev, int64_t wait_ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(wait_ns / 1000000000LL);
    ts.tv_nsec = (long)(wait_ns % 1000000000LL);
    int n = epoll_pwait2(w->epfd, ev, MAX_EVENTS, &ts, NULL);
    if (n < 0 && errno == ENOSYS)
        n = epoll_wait(w->epfd, ev, MAX_EVENTS, (int)((wait_ns + 999999) / 1000000));
    return n;
}

static void loop(struct nworker *w)
{
    struct epoll_event ev[MAX_EVENTS];
    /* a local failure (no memory for a timer or a result batch) ends the loop: a session
     * without its timer could otherwise be held forever */
    while (w->left > 0 && !w->stopping && !w->status) {
        int64_t now = h2r_now_mono_ns();
        run_due(w, now);
        settle(w);
        if (w->left == 0)
            break;
        if (w->batch && now - w->batch_t > BATCH_MAX_AGE_NS)
            push_batch(w, 0);
        now = h2r_now_mono_ns();
        int64_t next = INT64_MAX;
        const struct rp_timer *t = rp_heap_peek(&w->heap);
        if (t)
            next = t->at;
        if (w->cur < w->n_ss && w->ss[w->cur].due < next)
            next = w->ss[w->cur].due;
        int64_t wait = w->more ? 0 : (next == INT64_MAX ? IDLE_WAIT_NS : next - now);
        if (wait < 0)
            wait = 0;
        if (wait > IDLE_WAIT_NS)
            wait = IDLE_WAIT_NS;
        if (w->batch && wait > BATCH_MAX_AGE_NS)
            wait = BATCH_MAX_AGE_NS;
        int n = wait_events(w, ev, wait);
        if (n < 0 && errno != EINTR) {
            w->status = H2R_ERR_IO;
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
            on_event(w, ev[i].data.ptr, ev[i].events);
        }
        read_more(w);
        settle(w);
    }
    if (w->left > 0)
        stop_all(w);
    settle(w);
}

static void *worker_main(void *arg)
{
    struct nworker *w = arg;
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    loop(w);
    push_batch(w, 1);
    atomic_store_explicit(&w->cfg.live->finished, 1, memory_order_release);
    return NULL;
}

static void worker_stop(struct nworker *w)
{
    uint64_t one = 1;
    ssize_t n = write(w->stopfd, &one, sizeof(one));
    (void)n;
}

static void worker_free(struct nworker *w)
{
    if (!w)
        return;
    for (uint32_t i = 0; w->ss && i < w->n_ss; i++) {
        struct nsess *s = &w->ss[i];
        if (s->c) {
            rp_conn_fail_all(s->c, H2R_EC_CANCELLED, NULL);
            rp_conn_free(s->c);
        }
        free_session_state(s);
    }
    free_grave(w);
    free(w->grave_ext);
    rp_batch_free_list(w->batch);
    rp_strtab_free(&w->details);
    rp_heap_free(&w->heap);
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->stopfd >= 0)
        close(w->stopfd);
    ts_map_scratch_free(w->zs);
    free(w->scratch);
    free(w->ss);
    free(w);
}

static int worker_new(struct nworker **out, const struct nw_cfg *cfg, char *errbuf,
                      size_t errlen)
{
    *out = NULL;
    struct nworker *w = calloc(1, sizeof(*w));
    if (!w)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    w->cfg = *cfg;
    w->epfd = w->stopfd = -1;
    rp_heap_init(&w->heap);
    const struct rp_nodes_plan *p = cfg->plan;
    uint32_t n = p->n / cfg->n_threads + (cfg->tid < p->n % cfg->n_threads);
    w->ss = calloc((size_t)n + 1, sizeof(*w->ss));
    w->scratch = malloc(SCRATCH_BYTES);
    if (!w->ss || !w->scratch || ts_map_scratch_new(&w->zs))
        goto nomem;
    for (uint32_t gi = cfg->tid; gi < p->n; gi += cfg->n_threads) {
        struct nsess *s = &w->ss[w->n_ss++];
        s->w = w;
        s->p = &p->v[gi];
        s->due = cfg->t0 + rp_scale(s->p->start, cfg->speed);
        s->hold_end = s->due + rp_scale(s->p->hold, cfg->speed);
        rp_timer_init(&s->timer, T_MAIN);
        rp_timer_init(&s->watch, T_WATCH);
    }
    w->left = w->n_ss;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->epfd < 0 || w->stopfd < 0) {
        h2r_seterr(errbuf, errlen, H2R_ERR_IO, "epoll/eventfd: %s", strerror(errno));
        worker_free(w);
        return H2R_ERR_IO;
    }
    struct epoll_event e;
    memset(&e, 0, sizeof(e));
    e.events = EPOLLIN;
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->stopfd, &e) < 0) {
        h2r_seterr(errbuf, errlen, H2R_ERR_IO, "epoll_ctl: %s", strerror(errno));
        worker_free(w);
        return H2R_ERR_IO;
    }
    *out = w;
    return 0;
nomem:
    worker_free(w);
    return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory for %u sessions", n);
}

/* ---- the driver ---- */

int rp_nodes_wanted(const struct h2r_replay_opts *o)
{
    if (o->ts.nodes)
        return 1;
    for (size_t i = 0; i < o->n_targets; i++) {
        const char *u = strchr(o->targets[i], '=');
        const char *t = o->targets[i];
        if (strncmp(t, "ts2021+", 7) == 0 || (u && strncmp(u + 1, "ts2021+", 7) == 0))
            return 1;
    }
    return 0;
}

struct nodes_ctx {
    const struct h2r_replay_opts *o;
    struct rp_nodes_plan plan;
    struct h2r_run_writer *wr;
    uint32_t n_threads;
    uint16_t capver;
    int64_t stall;
    char authkey[512];
    int pinned; /* --set controlkey=mkey:...: no GET /key */
    uint8_t control_pub[TS_KEY_LEN];
    uint8_t key_seed[KEY_SEED_LEN]; /* identity keys of this run (identity_keypair) */
    struct rp_nodes_trace_info trace; /* with a TRACE */
    char tag[16];
    int write_err;
    char write_msg[256];
};

struct nodes_stats {
    uint64_t results, errors, by_class[H2R_EC_MAX_];
    uint64_t registered, netmaps;
    struct rp_resources res; /* the client's own cost, for section_end */
};

/* The value of NAME in --set NAME=VALUE (the last one), else in --set-file. */
static int find_set_value(const struct h2r_replay_opts *o, const char *name, char *out, size_t cap,
                          char *errbuf, size_t errlen)
{
    size_t nl = strlen(name);
    int found = 0;
    for (size_t i = 0; i < o->n_set_vars; i++) {
        const char *v = o->set_vars[i];
        if (strncmp(v, name, nl) == 0 && v[nl] == '=') {
            snprintf(out, cap, "%s", v + nl + 1);
            found = 1;
        }
    }
    if (found || !o->set_file)
        return found;
    FILE *f = fopen(o->set_file, "r");
    if (!f)
        return h2r_seterr(errbuf, errlen, H2R_ERR_IO, "--set-file %s: %s", o->set_file,
                          strerror(errno));
    char line[1024];
    for (int n = 0; n < 100000 && fgets(line, sizeof(line), f); n++) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strncmp(line, name, nl) == 0 && line[nl] == '=') {
            snprintf(out, cap, "%s", line + nl + 1);
            found = 1;
        }
    }
    fclose(f);
    return found;
}

static void write_batches(struct nodes_ctx *ctx, struct rp_batch *list, struct nodes_stats *st)
{
    for (struct rp_batch *b = list; b; b = b->next) {
        for (uint32_t i = 0; i < b->n; i++) {
            const struct h2r_run_result *r = &b->v[i].r;
            st->results++;
            if (r->err_class != H2R_EC_NONE)
                st->errors++;
            if (r->err_class < H2R_EC_MAX_)
                st->by_class[r->err_class]++;
            if (r->err_class != H2R_EC_NONE && rp_detail_is_fd_exhaustion(r->err_detail))
                st->res.emfile++;
            if (r->err_class == H2R_EC_NONE && r->path == PATH_REGISTER)
                st->registered++;
            if (r->t_netmap_ns)
                st->netmaps++;
            if (ctx->write_err)
                continue;
            int rc = h2r_run_write_result(ctx->wr, r);
            if (rc) {
                ctx->write_err = rc;
                snprintf(ctx->write_msg, sizeof(ctx->write_msg), "writing %s: %s",
                         ctx->o->run_path, h2r_run_writer_errmsg(ctx->wr));
            }
        }
    }
    rp_batch_free_list(list);
}

struct live_prev {
    uint64_t due, sent, done, errors;
    int64_t last_t;
    int printed;
};

static void write_sample(struct nodes_ctx *ctx, const struct rp_target *t, uint32_t section,
                         struct rp_live *lives, struct live_prev *pv, int64_t t0, int64_t at,
                         struct nodes_stats *st)
{
    struct h2r_run_sample s;
    memset(&s, 0, sizeof(s));
    uint64_t due = 0, sent = 0, done = 0, errors = 0;
    for (uint32_t i = 0; i < ctx->n_threads; i++) {
        struct rp_live *l = &lives[i];
        due += atomic_load_explicit(&l->due, memory_order_relaxed);
        sent += atomic_load_explicit(&l->sent, memory_order_relaxed);
        done += atomic_load_explicit(&l->done, memory_order_relaxed);
        errors += atomic_load_explicit(&l->errors, memory_order_relaxed);
        s.in_flight += atomic_load_explicit(&l->in_flight, memory_order_relaxed);
        s.open_conns += atomic_load_explicit(&l->open_conns, memory_order_relaxed);
        int64_t m = atomic_exchange_explicit(&l->max_late, 0, memory_order_relaxed);
        if (m > s.max_late_ns)
            s.max_late_ns = m;
    }
    rp_resources_sample(&st->res, s.open_conns, s.max_late_ns);
    s.section = section;
    s.t_ns = at - t0;
    s.interval_ns = at - pv->last_t;
    s.due = due - pv->due;
    s.sent = sent - pv->sent;
    s.done = done - pv->done;
    s.errors = errors - pv->errors;
    if (!ctx->write_err && s.interval_ns > 0) {
        int rc = h2r_run_write_sample(ctx->wr, &s);
        if (!rc)
            rc = h2r_run_writer_flush(ctx->wr);
        if (rc) {
            ctx->write_err = rc;
            snprintf(ctx->write_msg, sizeof(ctx->write_msg), "writing %s: %s", ctx->o->run_path,
                     h2r_run_writer_errmsg(ctx->wr));
        }
    }
    if (ctx->o->progress) {
        fprintf(stderr,
                "\r%s %5.0fs  sessions started %llu  requests %llu  results %llu  errors %llu  "
                "held %llu\033[K",
                t->name, (double)(at - t0) / 1e9, (unsigned long long)due,
                (unsigned long long)sent, (unsigned long long)done, (unsigned long long)errors,
                (unsigned long long)s.open_conns);
        fflush(stderr);
        pv->printed = 1;
    }
    pv->due = due;
    pv->sent = sent;
    pv->done = done;
    pv->errors = errors;
    pv->last_t = at;
}

static void hist_merge(struct rp_hist *into, const struct rp_hist *from)
{
    for (uint32_t i = 0; i < RP_HIST_BUCKETS; i++)
        atomic_fetch_add_explicit(&into->n[i],
                                  atomic_load_explicit(&from->n[i], memory_order_relaxed),
                                  memory_order_relaxed);
}

static void print_quantiles(const char *what, const struct rp_hist *h)
{
    uint64_t c[RP_HIST_BUCKETS];
    memset(c, 0, sizeof(c));
    rp_hist_snapshot(h, c);
    uint64_t total = 0;
    for (uint32_t i = 0; i < RP_HIST_BUCKETS; i++)
        total += c[i];
    if (!total) {
        fprintf(stderr, " %s -;", what);
        return;
    }
    char a[32], b[32];
    h2r_format_duration(rp_hist_quantile(c, 0.5), a, sizeof(a));
    h2r_format_duration(rp_hist_quantile(c, 0.99), b, sizeof(b));
    fprintf(stderr, " %s p50 %s p99 %s;", what, a, b);
}

static int run_section(struct nodes_ctx *ctx, uint32_t section, const struct rp_target *t,
                       struct h2r_replay_result *res, char *errbuf, size_t errlen)
{
    const struct h2r_replay_opts *o = ctx->o;
    const uint32_t n = ctx->n_threads;
    int rc = 0, sink_ok = 0, interrupted = 0;
    uint32_t started = 0;
    struct rp_live *lives = NULL;
    struct rp_dbwatch *dbw = NULL; /* --db: samples the target's database */
    struct nworker **workers = NULL;
    pthread_t *tids = NULL;
    SSL_CTX **ssl = NULL;
    struct rp_sink sink;
    struct nodes_stats st;
    memset(&st, 0, sizeof(st));
    _Atomic uint32_t conn_seq = 0;
    uint8_t control_pub[TS_KEY_LEN];
    memset(control_pub, 0, sizeof(control_pub));
    uint32_t pre_cls = 0;
    char pre_detail[300] = "";

    struct sockaddr_storage ss;
    socklen_t ss_len = 0;
    if (rp_target_resolve(t, &ss, &ss_len, pre_detail, sizeof(pre_detail)) != 0)
        pre_cls = H2R_EC_IO;

    lives = aligned_alloc(64, ((sizeof(*lives) * n + 63) / 64) * 64);
    workers = calloc(n, sizeof(*workers));
    tids = calloc(n, sizeof(*tids));
    ssl = calloc(n + 1, sizeof(*ssl));
    if (!lives || !workers || !tids || !ssl) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
        goto out;
    }
    memset(lives, 0, sizeof(*lives) * n);
    rc = rp_sink_init(&sink);
    if (rc) {
        h2r_seterr(errbuf, errlen, rc, "out of memory");
        goto out;
    }
    sink_ok = 1;
    if (t->tls) {
        /* one context per thread (share nothing) and one for GET /key */
        for (uint32_t i = 0; i <= n; i++) {
            rc = rp_tls_ctx_new_alpn(&ssl[i], o->insecure, o->cacert, 1, errbuf, errlen);
            if (rc)
                goto out;
        }
    }
    /* the control key, once per target (docs/ts2021.md: trust on first use of /key), unless
     * it was pinned */
    if (ctx->pinned)
        memcpy(control_pub, ctx->control_pub, TS_KEY_LEN);
    if (!pre_cls && !ctx->pinned) {
        char kerr[256];
        uint32_t kcls = 0;
        int64_t kt = h2r_now_mono_ns();
        if (rp_ts_fetch_key((const struct sockaddr *)&ss, ss_len, ssl[n], t->host, t->host_ip,
                            t->authority, ctx->capver, o->connect_timeout_ns + o->timeout_ns,
                            control_pub, &kcls, kerr, sizeof(kerr)) != 0) {
            pre_cls = kcls ? kcls : H2R_EC_IO;
            snprintf(pre_detail, sizeof(pre_detail), "%s", kerr);
        }
        if (!o->quiet && !pre_cls) {
            char hex[TS_KEY_TEXT_MAX], d[32];
            ts_key_format(TS_PREFIX_MACHINE, control_pub, hex, sizeof(hex));
            h2r_format_duration(h2r_now_mono_ns() - kt, d, sizeof(d));
            fprintf(stderr, "replay %s: control key %.17s... (GET /key?v=%u in %s)\n", t->name,
                    hex, (unsigned)ctx->capver, d);
        } else if (!o->quiet) {
            fprintf(stderr, "replay %s: %s: every session fails\n", t->name, pre_detail);
        }
    }

    rc = rp_dbwatch_start(&dbw, o, t->name, errbuf, errlen);
    if (rc)
        goto out;

    int64_t t0;
    rc = rp_section_begin(ctx->wr, o, section, t, STARTUP_NS, rp_replay_stop_requested, &t0,
                          errbuf, errlen);
    if (rc)
        goto out;

    rp_resources_begin(&st.res);
    for (uint32_t i = 0; i < n; i++) {
        struct nw_cfg cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.plan = &ctx->plan;
        cfg.tid = i;
        cfg.n_threads = n;
        cfg.section = section;
        cfg.target = t;
        cfg.addr = (const struct sockaddr *)&ss;
        cfg.addr_len = ss_len;
        cfg.pre_cls = pre_cls;
        cfg.pre_detail = pre_detail;
        cfg.control_pub = control_pub;
        cfg.key_seed = ctx->key_seed;
        cfg.ssl_ctx = ssl[i];
        cfg.speed = o->speed;
        cfg.t0 = t0;
        cfg.timeout = o->timeout_ns;
        cfg.connect_timeout = o->connect_timeout_ns;
        cfg.stall = ctx->stall;
        cfg.capver = ctx->capver;
        cfg.omit_peers = o->ts.omit_peers;
        cfg.authkey = ctx->authkey;
        cfg.tag = ctx->tag;
        cfg.sink = &sink;
        cfg.live = &lives[i];
        cfg.conn_seq = &conn_seq;
        rc = worker_new(&workers[i], &cfg, errbuf, errlen);
        if (rc)
            goto out;
    }

    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (; started < n; started++)
        if (pthread_create(&tids[started], NULL, worker_main, workers[started]) != 0)
            break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < n) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "cannot start loop thread %u", started);
        for (uint32_t i = 0; i < started; i++)
            worker_stop(workers[i]);
    }

    struct live_prev pv;
    memset(&pv, 0, sizeof(pv));
    pv.last_t = t0;
    int64_t next_sample = t0 + SAMPLE_NS;
    int stopped = started < n;
    uint32_t finished = 0;
    while (finished < started) {
        if ((rp_replay_stop_requested() || ctx->write_err) && !stopped) {
            for (uint32_t i = 0; i < started; i++)
                worker_stop(workers[i]);
            stopped = 1;
            interrupted = rp_replay_stop_requested();
        }
        int64_t now = h2r_now_mono_ns();
        int64_t deadline = now + POLL_NS < next_sample ? now + POLL_NS : next_sample;
        write_batches(ctx, rp_sink_take(&sink, deadline, &finished), &st);
        now = h2r_now_mono_ns();
        if (now >= next_sample) {
            rp_dbwatch_drain(dbw, ctx->wr, section, t0, o->quiet); /* errors stick to the writer */
            write_sample(ctx, t, section, lives, &pv, t0, next_sample, &st);
            next_sample += SAMPLE_NS;
            if (next_sample <= now)
                next_sample = now + SAMPLE_NS - (now - t0) % SAMPLE_NS;
        }
    }
    for (uint32_t i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    write_batches(ctx, rp_sink_take(&sink, 0, &finished), &st);
    int64_t t_end = h2r_now_mono_ns();
    rp_dbwatch_stop(dbw); /* one last sample after the load */
    rp_dbwatch_drain(dbw, ctx->wr, section, t0, o->quiet);
    if (t_end > pv.last_t && t_end > t0)
        write_sample(ctx, t, section, lives, &pv, t0, t_end, &st);
    if (pv.printed)
        fputc('\n', stderr);
    struct h2r_run_section_end end;
    memset(&end, 0, sizeof(end));
    end.section = section;
    end.t_end_ns = t_end - t0;
    end.exchanges = st.results;
    end.errors = st.errors;
    end.interrupted = interrupted;
    rp_resources_end(&st.res, lives, started, &end);
    if (!ctx->write_err) {
        int wrc = h2r_run_write_section_end(ctx->wr, &end);
        if (!wrc)
            wrc = h2r_run_writer_flush(ctx->wr);
        if (wrc) {
            ctx->write_err = wrc;
            snprintf(ctx->write_msg, sizeof(ctx->write_msg), "writing %s: %s", o->run_path,
                     h2r_run_writer_errmsg(ctx->wr));
        }
    }
    if (!o->quiet) {
        struct rp_hist *hs = calloc(3, sizeof(*hs));
        uint64_t pmin = 0, pmax = 0, pn = 0;
        for (uint32_t i = 0; i < started; i++) {
            struct nworker *w = workers[i];
            if (hs) {
                hist_merge(&hs[0], &w->h_open);
                hist_merge(&hs[1], &w->h_register);
                hist_merge(&hs[2], &w->h_netmap);
            }
            if (w->netmap_sessions) {
                if (!pn || w->peers_min < pmin)
                    pmin = w->peers_min;
                if (w->peers_max > pmax)
                    pmax = w->peers_max;
                pn += w->netmap_sessions;
            }
            int ws = w->status;
            if (ws)
                fprintf(stderr, "replay: warning: loop thread %u: %s (results may be incomplete)\n",
                        i, h2r_strerror(ws));
        }
        char d[32];
        h2r_format_duration(t_end - t0, d, sizeof(d));
        int named = strcmp(t->name, t->url) != 0;
        fprintf(stderr,
                "replay %s%s%s%s: %u node sessions in %s: %llu registered, %llu with a netmap, "
                "%llu of %llu results failed%s; hostnames %s-N\n",
                t->name, named ? " (" : "", named ? t->url : "", named ? ")" : "", ctx->plan.n, d,
                (unsigned long long)st.registered, (unsigned long long)st.netmaps,
                (unsigned long long)st.errors, (unsigned long long)st.results,
                interrupted ? " [interrupted]" : "", ctx->tag);
        if (st.errors) {
            fprintf(stderr, "  errors:");
            for (uint32_t c = 1; c < H2R_EC_MAX_; c++)
                if (st.by_class[c])
                    fprintf(stderr, " %s %llu", h2r_err_class_name(c),
                            (unsigned long long)st.by_class[c]);
            fputc('\n', stderr);
        }
        if (hs) {
            fprintf(stderr, " ");
            print_quantiles("upgrade+handshake", &hs[0]);
            print_quantiles("register", &hs[1]);
            print_quantiles("first netmap", &hs[2]);
            fprintf(stderr, " peers at the end %llu..%llu\n", (unsigned long long)pmin,
                    (unsigned long long)pmax);
            free(hs);
        }
    }
    res->sections++;
    res->exchanges += st.results;
    res->errors += st.errors;
    if (interrupted)
        res->interrupted = 1;
    if (ctx->write_err && !rc)
        rc = h2r_seterr(errbuf, errlen, ctx->write_err, "%s", ctx->write_msg);
out:
    rp_dbwatch_free(dbw);
    for (uint32_t i = 0; workers && i < n; i++)
        worker_free(workers[i]);
    for (uint32_t i = 0; ssl && i <= n; i++)
        rp_tls_ctx_free(ssl[i]);
    if (sink_ok)
        rp_sink_destroy(&sink);
    free(ssl);
    free(tids);
    free(workers);
    free(lives);
    OPENSSL_cleanse(control_pub, sizeof(control_pub));
    return rc;
}

/* Hex SHA-256 of a file into out[65] ("" when unreadable): the run meta's trace digest, so
 * that analyze merges only shards of the same trace. */
static void file_sha256(const char *path, char *out)
{
    out[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char buf[65536], dig[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
    while (ok) {
        size_t n = fread(buf, 1, sizeof(buf), f);
        if (n == 0)
            break;
        ok = EVP_DigestUpdate(md, buf, n) == 1;
    }
    if (ok && !ferror(f) && EVP_DigestFinal_ex(md, dig, &dlen) == 1)
        for (unsigned i = 0; i < dlen && i < 32; i++)
            snprintf(out + (size_t)2 * i, 3, "%02x", dig[i]);
    EVP_MD_CTX_free(md);
    fclose(f);
}

/*
 * The hostname prefix "h2r-XXXXXX". Random, except for shards given --start-at: every shard
 * derives it from the start second, so one job's nodes share a prefix in Headscale (an
 * absolute --start-at gives all of them the same; +DURATION only those that resolved it to
 * the same second). Identities are disjoint between shards, so hostnames never collide.
 */
static void run_tag(const struct h2r_replay_opts *o, char *tag, size_t len)
{
    uint8_t rnd[EVP_MAX_MD_SIZE] = {0};
    if (o->shard_count > 1 && o->start_at_ns) {
        char in[64];
        int n = snprintf(in, sizeof(in), "h2replay shards %u at %lld", o->shard_count,
                         (long long)(o->start_at_ns / 1000000000LL));
        unsigned dl = 0;
        EVP_Digest(in, (size_t)n, rnd, &dl, EVP_sha256(), NULL);
    } else if (RAND_bytes(rnd, 3) != 1) {
        uint64_t x = (uint64_t)h2r_now_wall_ns();
        memcpy(rnd, &x, 3);
    }
    snprintf(tag, len, "h2r-%02x%02x%02x", rnd[0], rnd[1], rnd[2]);
}

/*
 * ctx->plan from the trace (o->trace_path) or the synthetic flags, then --clone and
 * --shard; sets ctx->capver (--capver, else the captured one when all sessions agree,
 * else 130) and ctx->trace. Notes on stderr unless quiet. Returns 0 or an error (errbuf).
 */
static int plan_sessions(struct nodes_ctx *ctx, char *errbuf, size_t errlen)
{
    const struct h2r_replay_opts *o = ctx->o;
    int rc;
    if (o->trace_path) {
        rc = rp_nodes_plan_from_trace(&ctx->plan, o->trace_path, &ctx->trace, errbuf, errlen);
        if (rc)
            return rc;
    } else {
        rc = rp_nodes_plan_synthetic(&ctx->plan, o->ts.nodes, o->ts.arrival_ns, o->ts.hold_ns);
        if (rc)
            return h2r_seterr(errbuf, errlen, rc, "cannot plan %u sessions", o->ts.nodes);
    }
    uint32_t copies = o->ts.clone ? o->ts.clone : 1;
    if ((uint64_t)ctx->plan.n * copies > MAX_NODES)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "%u sessions x --clone %u: at most %u node sessions", ctx->plan.n,
                          copies, MAX_NODES);
    rc = rp_nodes_plan_clone(&ctx->plan, copies, o->ts.clone_jitter_ns);
    if (rc)
        return h2r_seterr(errbuf, errlen, rc, "cannot plan %u sessions x %u", ctx->plan.n,
                          copies);
    uint32_t all_sessions = ctx->plan.n, all_ids = ctx->plan.identities, ids = all_ids;
    rc = rp_nodes_plan_shard(&ctx->plan, o->shard_index, o->shard_count, &ids);
    if (rc)
        return h2r_seterr(errbuf, errlen, rc, "cannot shard %u sessions", all_sessions);
    uint32_t cv = o->ts.capver;
    if (!cv)
        cv = ctx->trace.capver ? ctx->trace.capver : TS_CAPVER_DEFAULT;
    if (cv > 65535)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "%s: captured capability version %u: give --capver", o->trace_path,
                          cv);
    ctx->capver = (uint16_t)cv;
    if (o->quiet)
        return 0;
    if (o->trace_path) {
        const struct rp_nodes_trace_info *t = &ctx->trace;
        char span[32];
        h2r_format_duration(t->span_ns, span, sizeof(span));
        fprintf(stderr,
                "replay: %s: %u TS2021 sessions, %u identities (%u captured nodes, %u "
                "sessions of an unknown node), %u without a handshake (skipped), over %s; "
                "capver %u%s\n",
                o->trace_path, t->sessions, t->nodes + t->anonymous, t->nodes, t->anonymous,
                t->skipped, span, (unsigned)ctx->capver,
                o->ts.capver ? " (--capver)" : t->capver ? " (captured)" : " (default)");
        if (t->exchanges)
            fprintf(stderr,
                    "replay: note: %s also holds %llu HTTP/2 exchanges; a ts2021+ target "
                    "replays only the TS2021 sessions (an http(s):// target replays the "
                    "exchanges)\n",
                    o->trace_path, (unsigned long long)t->exchanges);
    }
    if (o->shard_count > 1) {
        fprintf(stderr, "replay: shard %u/%u: %u of %u node sessions, %u of %u identities\n",
                o->shard_index, o->shard_count, ctx->plan.n, all_sessions, ids, all_ids);
        if (!o->start_at_ns)
            fprintf(stderr, "replay: warning: --shard without --start-at: this shard's "
                            "schedule starts when this process does; give every shard the "
                            "same --start-at to align them\n");
    }
    return 0;
}

/* Open sessions each hold a socket: raise the soft descriptor limit when it is too low. */
static void raise_nofile(uint32_t sessions, int quiet)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = (rlim_t)sessions + 256;
    if (rl.rlim_cur >= want)
        return;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur >= want)
        return;
    if (!quiet)
        fprintf(stderr,
                "replay: warning: %u sessions may need %llu descriptors; the limit is %llu "
                "(raise it: ulimit -n)\n",
                sessions, (unsigned long long)want,
                (unsigned long long)(rl.rlim_cur > old ? rl.rlim_cur : old));
}

static int check_nodes_opts(const struct h2r_replay_opts *o, struct rp_target *targets,
                            char *errbuf, size_t errlen)
{
    if (!o->run_path)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "a run file is required");
    if (o->n_targets == 0 || o->n_targets > H2R_REPLAY_MAX_TARGETS)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "give 1 to %d targets",
                          H2R_REPLAY_MAX_TARGETS);
    for (size_t i = 0; i < o->n_targets; i++) {
        int rc = rp_target_parse(o->targets[i], &targets[i], errbuf, errlen);
        if (rc)
            return rc;
        if (!targets[i].ts2021)
            return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                              "target '%s': node sessions need ts2021+http:// or "
                              "ts2021+https:// targets (all of them)",
                              o->targets[i]);
        for (size_t j = 0; j < i; j++)
            if (strcmp(targets[j].name, targets[i].name) == 0)
                return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                                  "target name '%s' given twice (name them: --target NAME=URL)",
                                  targets[i].name);
    }
    if (o->trace_path && o->ts.nodes)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "give either a TRACE (its captured TS2021 sessions) or --nodes N "
                          "(synthetic node sessions), not both");
    if (o->trace_path && (o->ts.arrival_ns || o->ts.hold_ns))
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "--arrival and --hold shape synthetic sessions (--nodes N); a trace's "
                          "sessions keep their captured starts and lifetimes (scale them with "
                          "--speed)");
    if (!o->trace_path && o->ts.nodes == 0)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "TS2021 targets need a TRACE with TS2021 session records or --nodes N "
                          "(synthetic node sessions)");
    if (o->ts.nodes > MAX_NODES || (uint64_t)o->ts.nodes * (o->ts.clone ? o->ts.clone : 1) >
                                       MAX_NODES)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "at most %u node sessions", MAX_NODES);
    if (o->ts.capver > 65535)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "--capver must be 1..65535");
    if (o->threads < 1 || o->threads > H2R_REPLAY_MAX_THREADS)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "threads must be 1..%d",
                          H2R_REPLAY_MAX_THREADS);
    if (!(o->speed >= 0) || !isfinite(o->speed))
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "speed must be positive or max");
    if (o->timeout_ns <= 0 || o->connect_timeout_ns <= 0)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "timeouts must be positive");
    if (o->ts.arrival_ns < 0 || o->ts.hold_ns < 0 || o->ts.clone_jitter_ns < 0 ||
        o->ts.stall_ns < 0)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "durations must not be negative");
    if (o->between)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "--between is not supported with TS2021 node sessions yet");
    int src = rp_shard_check_opts(o, errbuf, errlen);
    if (src)
        return src;
    if (o->rewrite_file)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "--rewrite does not apply to TS2021 node sessions (their requests are "
                          "synthesised; --set authkey=KEY gives the pre-auth key)");
    return 0;
}

int rp_nodes_replay_run(const struct h2r_replay_opts *o, struct h2r_replay_result *res,
                        char *errbuf, size_t errlen)
{
    struct h2r_replay_result dummy;
    if (!res)
        res = &dummy;
    memset(res, 0, sizeof(*res));
    struct rp_target *targets = calloc(o->n_targets ? o->n_targets : 1, sizeof(*targets));
    struct nodes_ctx *ctx = calloc(1, sizeof(*ctx));
    int rc = 0;
    if (!targets || !ctx) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
        goto out;
    }
    rc = check_nodes_opts(o, targets, errbuf, errlen);
    if (rc)
        goto out;
    rc = rp_dbwatch_check(o, targets, o->n_targets, errbuf, errlen);
    if (rc)
        goto out;
    ctx->o = o;
    ctx->stall = o->ts.stall_ns ? o->ts.stall_ns : DEFAULT_STALL_NS;
    rc = find_set_value(o, "authkey", ctx->authkey, sizeof(ctx->authkey), errbuf, errlen);
    if (rc < 0)
        goto out;
    if (rc == 0 || !ctx->authkey[0]) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                        "TS2021 node sessions need a pre-auth key: --set authkey=KEY "
                        "(e.g. from scripts/headscale.sh authkey --dir DIR --user U --reusable)");
        goto out;
    }
    char pin[160];
    rc = find_set_value(o, "controlkey", pin, sizeof(pin), errbuf, errlen);
    if (rc < 0)
        goto out;
    if (rc == 1) {
        if (ts_key_parse(TS_PREFIX_MACHINE, pin, strlen(pin), ctx->control_pub) != 0) {
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                            "--set controlkey=: expected mkey:<64 hex digits>");
            goto out;
        }
        ctx->pinned = 1;
    }
    rc = plan_sessions(ctx, errbuf, errlen);
    if (rc)
        goto out;
    ctx->n_threads = (uint32_t)o->threads;
    if (ctx->n_threads > ctx->plan.n)
        ctx->n_threads = ctx->plan.n ? ctx->plan.n : 1; /* a shard may have no session */
    if (RAND_bytes(ctx->key_seed, sizeof(ctx->key_seed)) != 1) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_IO, "no randomness for the identity keys");
        goto out;
    }
    run_tag(o, ctx->tag, sizeof(ctx->tag));
    raise_nofile(ctx->plan.n, o->quiet);

    char host[256] = "", settings[768], sp[32], trace_sha[65] = "", plan_desc[160];
    if (gethostname(host, sizeof(host) - 1) != 0)
        host[0] = '\0';
    if (o->speed <= 0)
        snprintf(sp, sizeof(sp), "max");
    else
        snprintf(sp, sizeof(sp), "%g", o->speed);
    if (o->trace_path) {
        file_sha256(o->trace_path, trace_sha);
        snprintf(plan_desc, sizeof(plan_desc), "trace_sessions=%u trace_nodes=%u skipped=%u",
                 ctx->trace.sessions, ctx->trace.nodes + ctx->trace.anonymous,
                 ctx->trace.skipped);
    } else {
        snprintf(plan_desc, sizeof(plan_desc), "nodes=%u arrival_ns=%lld hold_ns=%lld",
                 o->ts.nodes, (long long)o->ts.arrival_ns, (long long)o->ts.hold_ns);
    }
    /* The settings must be equal for runs analyze may compare or merge, so they name how the
     * hostnames were made (a random tag per run, or one derived from --start-at for the
     * shards of one job), never the tag itself: that is in the summary and the acks. */
    snprintf(settings, sizeof(settings),
             "ts2021 %s clone=%u clone_jitter_ns=%lld "
             "capver=%u omit_peers=%d keepalive_window_ns=%lld speed=%s timeout_ns=%lld "
             "connect_timeout_ns=%lld threads=%u insecure=%d control_key=%s hostnames=%s",
             plan_desc, o->ts.clone ? o->ts.clone : 1, (long long)o->ts.clone_jitter_ns,
             (unsigned)ctx->capver, o->ts.omit_peers, (long long)ctx->stall, sp,
             (long long)o->timeout_ns, (long long)o->connect_timeout_ns, ctx->n_threads,
             o->insecure, ctx->pinned ? "pinned" : "GET /key",
             o->shard_count <= 1 ? "per-run" : o->start_at_ns ? "start-at" : "per-shard");
    rp_shard_settings(settings, sizeof(settings), o->shard_count, "identity");
    struct h2r_run_meta meta;
    memset(&meta, 0, sizeof(meta));
    meta.tool_version = H2R_VERSION;
    meta.trace_path = o->trace_path ? o->trace_path : "";
    meta.trace_sha256 = trace_sha;
    meta.host = host;
    meta.command = o->command ? o->command : "";
    meta.settings = settings;
    meta.created_ns = h2r_now_wall_ns();
    meta.shard_index = o->shard_count > 1 ? o->shard_index : 0;
    meta.shard_count = o->shard_count > 1 ? o->shard_count : 1;
    meta.start_at_ns = o->start_at_ns;
    rc = h2r_run_writer_open(&ctx->wr, o->run_path, &meta, errbuf, errlen);
    if (rc)
        goto out;
    for (uint32_t i = 0; i < o->n_targets; i++) {
        if (rp_replay_stop_requested()) {
            res->interrupted = 1;
            break;
        }
        rc = run_section(ctx, i, &targets[i], res, errbuf, errlen);
        if (rc || res->interrupted)
            break;
    }
    int crc = h2r_run_writer_close(ctx->wr);
    ctx->wr = NULL;
    if (crc && !rc)
        rc = h2r_seterr(errbuf, errlen, crc, "closing %s: %s", o->run_path, h2r_strerror(crc));
out:
    if (ctx) {
        if (ctx->wr)
            h2r_run_writer_close(ctx->wr);
        rp_nodes_plan_free(&ctx->plan);
        OPENSSL_cleanse(ctx->authkey, sizeof(ctx->authkey));
        free(ctx);
    }
    free(targets);
    return rc;
}
