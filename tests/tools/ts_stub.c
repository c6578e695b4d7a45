/*
 * ts_stub: a minimal TS2021 control server (the Tailscale control protocol as
 * Headscale speaks it) for benchmarking and smoke-testing the replay client's
 * node sessions at sizes a real Headscale cannot register fast enough (it does
 * ~25 registrations/s: bcrypt). A test tool, not product: scripts/bench-nodes.sh
 * and tests/e2e/ts_stub_smoke.sh drive it; protocol facts are in docs/ts2021.md.
 *
 * What it serves on 127.0.0.1:PORT (one epoll loop, one thread):
 *   GET /key?v=N        {"legacyPublicKey":"mkey:0..0","publicKey":"mkey:<hex>"}, then close
 *   POST /ts2021        the upgrade: Noise IK responder (core/ts: ts_session_server_accept),
 *                       101 + the 51-byte response frame + an EarlyNoise record, then
 *                       HTTP/2 inside the records with an nghttp2 server session:
 *     /machine/register   a RegisterResponse with MachineAuthorized true (after
 *                         --register-delay, to play a slow server)
 *     /machine/map        Stream:true -> one netmap with --peers K peers, then a
 *                         {"KeepAlive":true} every --keepalive; otherwise (the
 *                         endpoint update) 200 with an empty body
 * Every map stream gets the same bytes: the netmap and the keep-alive are built
 * and zstd-compressed once at start ([u32 LE length][zstd(JSON)], ts_map.c's
 * format), so the stub's cost per session is the handshake, the record crypto and
 * nghttp2, never JSON or zstd.
 *
 * Bounded: --max-conns connections (more are closed at accept and counted), a
 * request head of 16 KiB, request bodies of 64 KiB, per-connection output of
 * 1 MiB (nghttp2 is not asked for more while 64 KiB wait for the socket), at
 * most 4 keep-alives queued on a stream whose client does not read, and it exits
 * after --duration whatever happens. At exit it prints one line of counters and
 * its own CPU time (getrusage) and peak RSS, for the benchmark to compare with the
 * client's. Like the engine, it never calls into nghttp2 from inside an nghttp2
 * callback: callbacks mark finished requests, the loop answers them afterwards.
 */
#define _GNU_SOURCE /* accept4, strcasestr, memmem */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <zstd.h>

#include "h2replay/error.h"
#include "h2replay/units.h"
#include "ts2021.h"

#define HEAD_MAX (16u << 10)   /* request head before the upgrade */
#define BODY_MAX (64u << 10)   /* one request body */
#define OUT_HIGH (64u << 10)   /* stop pulling frames from nghttp2 above this */
#define OUT_MAX (1u << 20)     /* hard cap of one connection's output */
#define KA_QUEUE_MAX 4         /* keep-alives waiting on a stream that does not drain */
#define RECV_CHUNK (16u << 10) /* one read */
#define MAX_EVENTS 512
#define CAPVER_MIN 39 /* below: Headscale answers /key with an empty body */

enum conn_state {
    C_HEAD = 0,   /* reading the HTTP/1.1 request head */
    C_KEY = 1,    /* answered /key (or an error): close once written */
    C_OPEN = 2,   /* TS2021 records both ways, HTTP/2 inside */
    C_CLOSING = 3 /* nghttp2 is done: close once written */
};

enum stream_kind { K_OTHER = 0, K_REGISTER = 1, K_MAP = 2 };

enum queue_id { Q_NONE = 0, Q_REGISTER = 1, Q_KEEPALIVE = 2 };

struct conn;

/* One request stream; lives from its HEADERS until nghttp2 closes it (or the conn goes). */
struct stream {
    struct conn *c;
    int32_t id;
    int kind;      /* enum stream_kind */
    int ready;     /* END_STREAM seen, in the ready list */
    int closed;    /* nghttp2 closed it while it sat in the ready list */
    int too_big;   /* body over BODY_MAX: answered with 413 */
    int queue;     /* enum queue_id: which timer queue links it */
    uint8_t *body; /* request body (heap, BODY_MAX cap) */
    size_t body_len;
    size_t nm_off;       /* bytes of the netmap frame produced */
    uint32_t ka_pending; /* keep-alive frames to produce */
    size_t ka_off;       /* bytes of the current keep-alive produced */
    int64_t due_ms;      /* register answer, or next keep-alive */
    struct stream *qprev, *qnext; /* timer queue */
    struct stream *cnext;         /* the conn's streams */
    struct stream *rnext;         /* the ready list */
};

struct conn {
    int fd;
    int state; /* enum conn_state */
    int dead;
    int epout;     /* EPOLLOUT is registered */
    int h2_failed; /* nghttp2 rejected the client's bytes (counted as h2, not ts) */
    char *head;
    size_t head_len;
    struct ts_session *ts;
    nghttp2_session *h2;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    struct stream *streams;
    struct conn *prev, *next; /* every connection, for the teardown */
};

struct queue {
    struct stream *head, *tail;
};

static struct {
    int port;
    uint32_t peers;
    int64_t keepalive_ms;
    int64_t register_delay_ms;
    int64_t duration_ms;
    uint32_t max_conns;
    int quiet;
} cfg = {0, 10, 50000, 0, 600000, 12000, 0};

static struct {
    uint64_t accepted, refused_max, key_requests, handshakes, handshake_failed;
    uint64_t registers, map_streams, map_updates, netmaps_sent, keepalives_sent, other;
    uint64_t head_too_big, bad_request, body_too_big, out_overflow, h2_errors, ts_errors;
    uint64_t closed;
    uint32_t conns, conns_peak;
} st;

/* Precomputed answers. */
static struct {
    struct ts_keypair control;
    char *key_resp;
    size_t key_resp_len;
    uint8_t *netmap; /* [u32 LE len][zstd JSON] */
    size_t netmap_len;
    uint8_t keepalive[64];
    size_t keepalive_len;
    char *register_json;
    size_t register_len;
    uint8_t early[256];
    size_t early_len;
} pre;

static int ep = -1;
static struct queue q_register, q_keepalive;
static struct stream *ready_head, *ready_tail;
static struct conn *conns;
static nghttp2_session_callbacks *h2cb;
static volatile sig_atomic_t quit;
static uint8_t recv_buf[RECV_CHUNK];

static const char HEAD_101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: tailscale-control-protocol\r\n"
                               "Connection: upgrade\r\n\r\n";

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- timer queues (FIFO: every stream in one queue waits the same interval) ---- */

static void q_push(struct queue *q, int id, struct stream *s)
{
    s->queue = id;
    s->qnext = NULL;
    s->qprev = q->tail;
    if (q->tail)
        q->tail->qnext = s;
    else
        q->head = s;
    q->tail = s;
}

static void q_unlink(struct stream *s)
{
    struct queue *q = s->queue == Q_REGISTER ? &q_register : &q_keepalive;

    if (s->queue == Q_NONE)
        return;
    if (s->qprev)
        s->qprev->qnext = s->qnext;
    else
        q->head = s->qnext;
    if (s->qnext)
        s->qnext->qprev = s->qprev;
    else
        q->tail = s->qprev;
    s->qprev = s->qnext = NULL;
    s->queue = Q_NONE;
}

/* ---- streams ---- */

static void stream_free(struct stream *s)
{
    q_unlink(s);
    free(s->body);
    free(s);
}

/* Takes s out of its connection's list (the list is a handful of streams long). */
static void stream_detach(struct stream *s)
{
    struct stream **pp = &s->c->streams;

    while (*pp && *pp != s)
        pp = &(*pp)->cnext;
    if (*pp)
        *pp = s->cnext;
}

/* ---- nghttp2 callbacks: record, never decide ---- */

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *ud)
{
    struct conn *c = ud;
    struct stream *s;

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    s->c = c;
    s->id = f->hd.stream_id;
    s->cnext = c->streams;
    c->streams = s;
    nghttp2_session_set_stream_user_data(h2, s->id, s);
    return 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    struct stream *s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);

    (void)flags;
    (void)ud;
    if (!s || namelen != 5 || memcmp(name, ":path", 5) != 0)
        return 0;
    if (valuelen == 17 && memcmp(value, "/machine/register", 17) == 0)
        s->kind = K_REGISTER;
    else if (valuelen == 12 && memcmp(value, "/machine/map", 12) == 0)
        s->kind = K_MAP;
    return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    struct stream *s = nghttp2_session_get_stream_user_data(h2, id);

    (void)flags;
    (void)ud;
    if (!s || s->too_big)
        return 0;
    if (s->body_len + len > BODY_MAX) {
        s->too_big = 1;
        return 0;
    }
    if (!s->body) {
        s->body = malloc(BODY_MAX);
        if (!s->body)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    memcpy(s->body + s->body_len, data, len);
    s->body_len += len;
    return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *ud)
{
    struct stream *s;

    (void)ud;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
    if (!s || s->ready)
        return 0;
    s->ready = 1;
    if (ready_tail)
        ready_tail->rnext = s;
    else
        ready_head = s;
    ready_tail = s;
    return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t id, uint32_t code, void *ud)
{
    struct stream *s = nghttp2_session_get_stream_user_data(h2, id);

    (void)code;
    (void)ud;
    if (!s)
        return 0;
    nghttp2_session_set_stream_user_data(h2, id, NULL);
    stream_detach(s);
    q_unlink(s);
    if (s->ready) {
        s->closed = 1; /* the ready list frees it */
        return 0;
    }
    stream_free(s);
    return 0;
}

/* The map stream's body: the netmap, then queued keep-alives, else wait (resumed by
 * the keep-alive timer). Shared precomputed bytes, copied into nghttp2's frame. */
static ssize_t map_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *ud)
{
    struct stream *s = src->ptr;
    size_t n = 0;

    (void)h2;
    (void)id;
    (void)flags;
    (void)ud;
    if (s->nm_off < pre.netmap_len) {
        n = pre.netmap_len - s->nm_off;
        if (n > len)
            n = len;
        memcpy(buf, pre.netmap + s->nm_off, n);
        s->nm_off += n;
        if (s->nm_off == pre.netmap_len)
            st.netmaps_sent++;
        return (ssize_t)n;
    }
    while (s->ka_pending && n < len) {
        size_t k = pre.keepalive_len - s->ka_off;
        if (k > len - n)
            k = len - n;
        memcpy(buf + n, pre.keepalive + s->ka_off, k);
        n += k;
        s->ka_off += k;
        if (s->ka_off == pre.keepalive_len) {
            s->ka_off = 0;
            s->ka_pending--;
            st.keepalives_sent++;
        }
    }
    return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
}

static ssize_t static_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
                           uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct stream *s = nghttp2_session_get_stream_user_data(h2, id);
    const char *body = src->ptr;
    size_t total = strlen(body), off = s ? s->nm_off : total, n;

    (void)ud;
    n = total - off;
    if (n > len)
        n = len;
    memcpy(buf, body + off, n);
    if (s)
        s->nm_off += n;
    if (off + n == total)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* ---- answers (called from the loop, outside callbacks) ---- */

static void respond(struct conn *c, int32_t id, const char *status, const char *ctype,
                    nghttp2_data_provider *prd)
{
    nghttp2_nv nv[2] = {
        {(uint8_t *)":status", (uint8_t *)status, 7, strlen(status), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)ctype, 12, strlen(ctype), NGHTTP2_NV_FLAG_NONE},
    };

    if (nghttp2_submit_response(c->h2, id, nv, 2, prd) != 0)
        st.h2_errors++;
}

static void respond_static(struct conn *c, struct stream *s, const char *status,
                           const char *body)
{
    nghttp2_data_provider prd;

    s->nm_off = 0;
    prd.source.ptr = (void *)body;
    prd.read_callback = static_read;
    respond(c, s->id, status, "application/json", &prd);
}

static void respond_register(struct stream *s)
{
    st.registers++;
    respond_static(s->c, s, "200", pre.register_json);
}

/* A map request: Stream:true gets the held stream, anything else (tailscaled's lite
 * endpoint update) 200 with an empty body, as Headscale answers it. The request is
 * parsed once per session; its body is a few hundred bytes. */
static void respond_map(struct stream *s)
{
    nghttp2_data_provider prd;
    json_t *req = s->body ? json_loadb((const char *)s->body, s->body_len, 0, NULL) : NULL;
    int stream = json_is_true(json_object_get(req, "Stream"));

    json_decref(req);
    if (!stream) {
        st.map_updates++;
        respond(s->c, s->id, "200", "application/json", NULL);
        return;
    }
    st.map_streams++;
    prd.source.ptr = s;
    prd.read_callback = map_read;
    respond(s->c, s->id, "200", "application/json", &prd);
    s->due_ms = now_ms() + cfg.keepalive_ms;
    q_push(&q_keepalive, Q_KEEPALIVE, s);
}

/* Answers the requests whose END_STREAM arrived. */
static void handle_ready(void)
{
    while (ready_head) {
        struct stream *s = ready_head;

        ready_head = s->rnext;
        if (!ready_head)
            ready_tail = NULL;
        s->rnext = NULL;
        s->ready = 0;
        if (s->closed) {
            stream_free(s);
            continue;
        }
        if (s->too_big) {
            st.body_too_big++;
            respond_static(s->c, s, "413", "{}");
        } else if (s->kind == K_REGISTER && cfg.register_delay_ms > 0) {
            s->due_ms = now_ms() + cfg.register_delay_ms;
            q_push(&q_register, Q_REGISTER, s);
        } else if (s->kind == K_REGISTER) {
            respond_register(s);
        } else if (s->kind == K_MAP) {
            respond_map(s);
        } else {
            st.other++;
            respond_static(s->c, s, "404", "{}");
        }
        free(s->body); /* requests are answered: their bodies are not needed */
        s->body = NULL;
        s->body_len = 0;
    }
}

/* ---- connections ---- */

static void conn_free(struct conn *c)
{
    struct stream *s, *next;

    if (c->h2)
        nghttp2_session_del(c->h2); /* does not call on_stream_close */
    for (s = c->streams; s; s = next) {
        next = s->cnext;
        if (s->ready)
            s->closed = 1; /* still in the ready list: freed there */
        else
            stream_free(s);
    }
    if (c->ts) {
        ts_session_cleanup(c->ts);
        free(c->ts);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->head);
    free(c->out);
    free(c);
    st.conns--;
    st.closed++;
}

/* Makes room for n more output bytes (compacting first). Returns 0 or -1 (over OUT_MAX). */
static int out_reserve(struct conn *c, size_t n)
{
    size_t cap;
    uint8_t *p;

    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    if (c->out_len + n <= c->out_cap)
        return 0;
    if (c->out_len + n > OUT_MAX) {
        st.out_overflow++;
        return -1;
    }
    cap = c->out_cap ? c->out_cap : 4096;
    while (cap < c->out_len + n)
        cap *= 2;
    if (cap > OUT_MAX)
        cap = OUT_MAX;
    p = realloc(c->out, cap);
    if (!p)
        return -1;
    c->out = p;
    c->out_cap = cap;
    return 0;
}

static int out_append(struct conn *c, const void *buf, size_t len)
{
    if (out_reserve(c, len))
        return -1;
    memcpy(c->out + c->out_len, buf, len);
    c->out_len += len;
    return 0;
}

/* Seals plaintext as records onto the output. */
static int out_seal(struct conn *c, const uint8_t *pt, size_t len)
{
    size_t need = ts_record_sealed_len(len), got = 0;

    if (out_reserve(c, need))
        return -1;
    if (ts_session_seal(c->ts, pt, len, c->out + c->out_len, c->out_cap - c->out_len, &got)) {
        st.ts_errors++;
        return -1;
    }
    c->out_len += got;
    return 0;
}

static void set_epout(struct conn *c, int on)
{
    struct epoll_event ev;

    if (c->epout == on)
        return;
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
    ev.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->epout = on;
}

/* Pulls frames from nghttp2 (sealed), writes what the socket takes. Marks c dead on error. */
static void conn_flush(struct conn *c)
{
    for (;;) {
        if (c->out_off < c->out_len) {
            ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (w < 0) {
                c->dead = 1;
                return;
            }
            c->out_off += (size_t)w;
            if (c->out_len - c->out_off >= OUT_HIGH)
                continue; /* keep writing before asking nghttp2 for more */
        }
        if (c->state != C_OPEN || c->out_len - c->out_off >= OUT_HIGH)
            break;
        const uint8_t *data = NULL;
        ssize_t n = nghttp2_session_mem_send(c->h2, &data);
        if (n < 0) {
            st.h2_errors++;
            c->dead = 1;
            return;
        }
        if (n == 0)
            break;
        if (out_seal(c, data, (size_t)n)) {
            c->dead = 1;
            return;
        }
    }
    if (c->out_off == c->out_len) {
        /* an idle held session keeps no output buffer */
        free(c->out);
        c->out = NULL;
        c->out_len = c->out_off = c->out_cap = 0;
        if (c->state == C_KEY) {
            c->dead = 1; /* answer written: close */
            return;
        }
        if (c->state == C_OPEN && !nghttp2_session_want_read(c->h2) &&
            !nghttp2_session_want_write(c->h2)) {
            c->dead = 1;
            return;
        }
    }
    set_epout(c, c->out_off < c->out_len);
}

static int ts_on_data(void *ud, const uint8_t *buf, size_t len)
{
    struct conn *c = ud;
    ssize_t n = nghttp2_session_mem_recv(c->h2, buf, len);

    if (n < 0) {
        st.h2_errors++;
        c->h2_failed = 1;
        return H2R_ERR_PROTO;
    }
    return 0;
}

static const struct ts_session_callbacks ts_cb = {NULL, NULL, ts_on_data};

/* Answers a request we do not serve with a plain HTTP/1.1 status, then closes. */
static void http_error(struct conn *c, const char *status)
{
    char buf[160];
    int n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status);

    st.bad_request++;
    c->state = C_KEY;
    if (out_append(c, buf, (size_t)n))
        c->dead = 1;
}

/* The value of header name in a request head (case-insensitive name), or NULL; *len set. */
static const char *header_value(const char *head, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");

    while (p && p[2] != '\r') {
        p += 2;
        const char *eol = strstr(p, "\r\n");
        if (!eol)
            return NULL;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *e = eol;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *len = (size_t)(e - v);
            return v;
        }
        p = eol;
    }
    return NULL;
}

/* The upgrade: accept the initiation frame, answer 101 + response frame + EarlyNoise,
 * start HTTP/2. rest/rest_len: bytes that followed the head. */
static void upgrade(struct conn *c, const char *head, const uint8_t *rest, size_t rest_len)
{
    uint8_t frame[TS_UPGRADE_MAX_FRAME], resp[TS_RESP_FRAME_LEN];
    size_t vlen = 0, flen = 0;
    const char *v = header_value(head, "Upgrade", &vlen);
    nghttp2_settings_entry iv[1] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};

    if (!v || vlen != 26 || strncasecmp(v, "tailscale-control-protocol", 26) != 0) {
        http_error(c, "400 Bad Request");
        return;
    }
    v = header_value(head, "X-Tailscale-Handshake", &vlen);
    if (!v || ts_b64_decode(v, vlen, frame, sizeof(frame), &flen) != 0) {
        http_error(c, "400 Bad Request");
        return;
    }
    c->ts = calloc(1, sizeof(*c->ts));
    if (!c->ts) {
        c->dead = 1;
        return;
    }
    if (ts_session_server_accept(c->ts, pre.control.priv, frame, flen, resp, &ts_cb, c) != 0) {
        /* as Headscale: the 101 was never sent, so a plain 400 */
        st.handshake_failed++;
        free(c->ts);
        c->ts = NULL;
        http_error(c, "400 Bad Request");
        return;
    }
    /* The transport needs only the ciphers from here on: free the handshake's OpenSSL
     * objects now (ts_session_cleanup() is safe on the wiped state later). */
    ts_noise_cleanup(&c->ts->noise);
    st.handshakes++;
    if (nghttp2_session_server_new(&c->h2, h2cb, c) != 0 ||
        nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 1) != 0) {
        c->dead = 1;
        return;
    }
    c->state = C_OPEN;
    if (out_append(c, HEAD_101, sizeof(HEAD_101) - 1) || out_append(c, resp, sizeof(resp)) ||
        out_seal(c, pre.early, pre.early_len)) {
        c->dead = 1;
        goto out;
    }
    if (rest_len && ts_session_feed(c->ts, rest, rest_len) != 0) {
        if (!c->h2_failed)
            st.ts_errors++;
        c->dead = 1;
    }
out:
    /* rest points into c->head: the head buffer goes only after rest was fed */
    free(c->head);
    c->head = NULL;
}

/* Bytes before the upgrade: collect the head, then route it. */
static void on_head_bytes(struct conn *c, const uint8_t *buf, size_t len)
{
    char *end, *p;
    size_t hl;

    if (c->head_len + len > HEAD_MAX) {
        st.head_too_big++;
        http_error(c, "431 Request Header Fields Too Large");
        return;
    }
    if (!c->head) {
        c->head = malloc(HEAD_MAX + 1);
        if (!c->head) {
            c->dead = 1;
            return;
        }
    }
    memcpy(c->head + c->head_len, buf, len);
    c->head_len += len;
    c->head[c->head_len] = '\0';
    end = memmem(c->head, c->head_len, "\r\n\r\n", 4);
    if (!end)
        return;
    hl = (size_t)(end - c->head) + 4;
    end[2] = '\0'; /* the head ends with its last header line's CRLF */
    p = c->head;
    if (strncmp(p, "GET /key?", 9) == 0) {
        /* v=N in the query of the request line (Headscale: mandatory, an integer) */
        const char *q = p + 9;
        long v = -1;
        while (*q && *q != ' ' && *q != '\r') {
            if ((q == p + 9 || q[-1] == '&') && q[0] == 'v' && q[1] == '=') {
                char *e;
                v = strtol(q + 2, &e, 10);
                if (e == q + 2 || (*e != ' ' && *e != '&'))
                    v = -1;
                break;
            }
            q++;
        }
        st.key_requests++;
        c->state = C_KEY;
        if (v < 0) {
            http_error(c, "400 Bad Request");
        } else if (v < CAPVER_MIN) {
            static const char empty[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                                        "Connection: close\r\n\r\n";
            if (out_append(c, empty, sizeof(empty) - 1))
                c->dead = 1;
        } else if (out_append(c, pre.key_resp, pre.key_resp_len)) {
            c->dead = 1;
        }
        return;
    }
    if (strncmp(p, "POST /ts2021 ", 13) == 0 || strncmp(p, "GET /ts2021 ", 12) == 0) {
        upgrade(c, p, (const uint8_t *)c->head + hl, c->head_len - hl);
        return;
    }
    http_error(c, "404 Not Found");
}

static void conn_read(struct conn *c)
{
    for (int i = 0; i < 4 && !c->dead; i++) {
        ssize_t n = recv(c->fd, recv_buf, sizeof(recv_buf), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            c->dead = 1;
            break;
        }
        if (c->state == C_HEAD) {
            on_head_bytes(c, recv_buf, (size_t)n);
        } else if (c->state == C_OPEN) {
            if (ts_session_feed(c->ts, recv_buf, (size_t)n) != 0) {
                if (!c->h2_failed)
                    st.ts_errors++;
                c->dead = 1;
            }
        } /* C_KEY / C_CLOSING: input is dropped */
        handle_ready();
        if ((size_t)n < sizeof(recv_buf))
            break;
    }
}

static void do_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct epoll_event ev;
        struct conn *c;
        int one = 1;

        if (fd < 0)
            return;
        if (st.conns >= cfg.max_conns) {
            st.refused_max++;
            close(fd);
            continue;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->fd = fd;
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = conns;
        if (conns)
            conns->prev = c;
        conns = c;
        st.accepted++;
        st.conns++;
        if (st.conns > st.conns_peak)
            st.conns_peak = st.conns;
    }
}

/* ---- timers ---- */

static void run_timers(int64_t t)
{
    while (q_register.head && q_register.head->due_ms <= t) {
        struct stream *s = q_register.head;
        struct conn *c = s->c;
        q_unlink(s);
        respond_register(s);
        conn_flush(c); /* s is freed when its stream closes in there */
        if (c->dead)
            conn_free(c);
    }
    while (q_keepalive.head && q_keepalive.head->due_ms <= t) {
        struct stream *s = q_keepalive.head;
        struct conn *c = s->c;
        q_unlink(s);
        s->due_ms += cfg.keepalive_ms;
        if (s->due_ms <= t)
            s->due_ms = t + cfg.keepalive_ms;
        q_push(&q_keepalive, Q_KEEPALIVE, s);
        if (s->ka_pending < KA_QUEUE_MAX)
            s->ka_pending++;
        nghttp2_session_resume_data(c->h2, s->id);
        conn_flush(c);
        if (c->dead)
            conn_free(c);
    }
}

static int next_timeout(int64_t t, int64_t end)
{
    int64_t due = end;

    if (q_register.head && q_register.head->due_ms < due)
        due = q_register.head->due_ms;
    if (q_keepalive.head && q_keepalive.head->due_ms < due)
        due = q_keepalive.head->due_ms;
    if (due - t > 1000)
        return 1000;
    return due <= t ? 0 : (int)(due - t);
}

/* ---- precomputed answers ---- */

static void hex_of(uint64_t seed, const char *prefix, char *out, size_t cap)
{
    /* a deterministic key-looking string per (seed, prefix): distinct per peer */
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + (uint64_t)(unsigned char)prefix[0];
    size_t n = (size_t)snprintf(out, cap, "%s", prefix);

    for (int i = 0; i < 64 && n + 1 < cap; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[n++] = "0123456789abcdef"[x & 15];
    }
    out[n] = '\0';
}

static json_t *node_json(uint64_t id, const char *name)
{
    char key[TS_KEY_TEXT_MAX], disco[TS_KEY_TEXT_MAX], mkey[TS_KEY_TEXT_MAX], addr[48], a6[64];
    char fqdn[96], stable[32], ep4[32];
    json_t *n;

    hex_of(id, TS_PREFIX_NODE, key, sizeof(key));
    hex_of(id, TS_PREFIX_DISCO, disco, sizeof(disco));
    hex_of(id, TS_PREFIX_MACHINE, mkey, sizeof(mkey));
    snprintf(addr, sizeof(addr), "100.64.%u.%u/32", (unsigned)(id >> 8) & 255, (unsigned)id & 255);
    snprintf(a6, sizeof(a6), "fd7a:115c:a1e0::%x/128", (unsigned)id);
    snprintf(fqdn, sizeof(fqdn), "%s.stub.example.com.", name);
    snprintf(stable, sizeof(stable), "stub%" PRIu64, id);
    snprintf(ep4, sizeof(ep4), "127.0.0.1:%u", 1024 + (unsigned)(id % 64000));
    n = json_pack("{s:I, s:s, s:s, s:I, s:s, s:s, s:s, s:[s,s], s:[s,s], s:[s], s:I, s:{s:s, "
                  "s:s}, s:b, s:b, s:s, s:s}",
                  "ID", (json_int_t)id, "StableID", stable, "Name", fqdn, "User", (json_int_t)1,
                  "Key", key, "Machine", mkey, "DiscoKey", disco, "Addresses", addr, a6,
                  "AllowedIPs", addr, a6, "Endpoints", ep4, "HomeDERP", (json_int_t)999, "Hostinfo",
                  "Hostname", name, "OS", "linux", "Online", 1, "MachineAuthorized", 1, "Created",
                  "2026-01-01T00:00:00Z", "KeyExpiry", "0001-01-01T00:00:00Z");
    return n;
}

/* [u32 LE length][zstd(json)] into a malloc'd buffer. Returns 0 or -1. */
static int map_frame(const char *json, uint8_t **out, size_t *outlen)
{
    size_t len = strlen(json), bound = ZSTD_compressBound(len), z;
    uint8_t *buf = malloc(4 + bound);

    if (!buf)
        return -1;
    z = ZSTD_compress(buf + 4, bound, json, len, 3);
    if (ZSTD_isError(z) || z > UINT32_MAX) {
        free(buf);
        return -1;
    }
    buf[0] = (uint8_t)z;
    buf[1] = (uint8_t)(z >> 8);
    buf[2] = (uint8_t)(z >> 16);
    buf[3] = (uint8_t)(z >> 24);
    *out = buf;
    *outlen = 4 + z;
    return 0;
}

static int precompute(void)
{
    char key[TS_KEY_TEXT_MAX], zero[TS_KEY_TEXT_MAX], chal[TS_KEY_TEXT_MAX], body[256];
    char early_json[160];
    uint8_t zk[TS_KEY_LEN];
    uint8_t *ka = NULL;
    size_t ka_len = 0, raw_len;
    json_t *root, *peers;
    char *js;
    int n;

    memset(zk, 0, sizeof(zk));
    if (ts_keypair_generate(&pre.control) || ts_key_format(TS_PREFIX_MACHINE, pre.control.pub,
                                                           key, sizeof(key)) ||
        ts_key_format(TS_PREFIX_MACHINE, zk, zero, sizeof(zero)))
        return -1;
    n = snprintf(body, sizeof(body), "{\"legacyPublicKey\":\"%s\",\"publicKey\":\"%s\"}\n", zero,
                 key);
    pre.key_resp = malloc(512);
    if (!pre.key_resp)
        return -1;
    pre.key_resp_len = (size_t)snprintf(pre.key_resp, 512,
                                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                        "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                                        n, body);

    hex_of(7, TS_PREFIX_CHALLENGE, chal, sizeof(chal));
    n = snprintf(early_json, sizeof(early_json), "{\"nodeKeyChallenge\":\"%s\"}", chal);
    if (ts_early_build(early_json, (size_t)n, pre.early, sizeof(pre.early), &pre.early_len))
        return -1;

    pre.register_json = strdup("{\"User\":{\"ID\":1,\"LoginName\":\"stub\",\"DisplayName\":"
                               "\"stub\"},\"Login\":{\"ID\":1,\"LoginName\":\"stub\","
                               "\"DisplayName\":\"stub\"},\"NodeKeyExpired\":false,"
                               "\"MachineAuthorized\":true,\"AuthURL\":\"\"}");
    if (!pre.register_json)
        return -1;
    pre.register_len = strlen(pre.register_json);

    /* the netmap: self (ID 1000000) and K peers (IDs 1..K), Headscale-shaped */
    peers = json_array();
    for (uint32_t i = 1; i <= cfg.peers; i++) {
        char name[32];
        snprintf(name, sizeof(name), "peer-%u", i);
        json_array_append_new(peers, node_json(i, name));
    }
    root = json_pack("{s:o, s:o, s:{s:[s], s:[s]}, s:s, s:[{s:[s], s:[{s:s, s:{s:I, s:I}}]}], "
                     "s:[{s:I, s:s, s:s}], s:s, s:I}",
                     "Node", node_json(1000000, "self"), "Peers", peers, "DNSConfig",
                     "Resolvers", "100.100.100.100", "Domains", "stub.example.com", "Domain",
                     "stub.example.com", "PacketFilter", "SrcIPs", "*", "DstPorts", "IP", "*",
                     "Ports", "First", (json_int_t)0, "Last", (json_int_t)65535, "UserProfiles",
                     "ID", (json_int_t)1, "LoginName", "stub", "DisplayName", "stub",
                     "ControlTime", "2026-01-01T00:00:00Z", "Seq", (json_int_t)1);
    if (!root)
        return -1;
    js = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!js)
        return -1;
    raw_len = strlen(js);
    n = map_frame(js, &pre.netmap, &pre.netmap_len);
    free(js);
    if (n)
        return -1;
    if (map_frame("{\"KeepAlive\":true}", &ka, &ka_len) || ka_len > sizeof(pre.keepalive)) {
        free(ka);
        return -1;
    }
    memcpy(pre.keepalive, ka, ka_len);
    pre.keepalive_len = ka_len;
    free(ka);
    if (!cfg.quiet)
        fprintf(stderr, "ts_stub: netmap with %u peers: %zu bytes JSON, %zu on the wire\n",
                cfg.peers, raw_len, pre.netmap_len);
    return 0;
}

/* ---- main ---- */

static void on_sig(int sig)
{
    (void)sig;
    quit = 1;
}

static int64_t dur_ms(const char *flag, const char *s)
{
    int64_t ns = 0;

    if (h2r_parse_duration(s, &ns) != 0) {
        fprintf(stderr, "ts_stub: %s: '%s' is not a duration\n", flag, s);
        exit(2);
    }
    return ns / 1000000;
}

static uint32_t num(const char *flag, const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (end == s || *end || v < 0 || v > 10000000L) {
        fprintf(stderr, "ts_stub: %s: '%s' is not a number\n", flag, s);
        exit(2);
    }
    return (uint32_t)v;
}

static long vm_hwm_kb(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");

    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static void usage(void)
{
    fprintf(stderr, "usage: ts_stub --port PORT [--peers K] [--keepalive DUR] [--max-conns N]\n"
                    "               [--register-delay DUR] [--duration DUR] [--quiet]\n"
                    "  defaults: --peers 10 --keepalive 50s --max-conns 12000 --duration 10m\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"port", required_argument, NULL, 'p'},
                                         {"peers", required_argument, NULL, 'k'},
                                         {"keepalive", required_argument, NULL, 'a'},
                                         {"max-conns", required_argument, NULL, 'm'},
                                         {"register-delay", required_argument, NULL, 'r'},
                                         {"duration", required_argument, NULL, 'd'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct epoll_event evs[MAX_EVENTS], ev;
    struct sockaddr_in a;
    struct rusage ru;
    int lfd, one = 1, rc = 0;
    int64_t t0, end;

    for (;;) {
        int o = getopt_long(argc, argv, "p:q", opts, NULL);
        if (o == -1)
            break;
        switch (o) {
        case 'p':
            cfg.port = (int)num("--port", optarg);
            break;
        case 'k':
            cfg.peers = num("--peers", optarg);
            break;
        case 'a':
            cfg.keepalive_ms = dur_ms("--keepalive", optarg);
            break;
        case 'm':
            cfg.max_conns = num("--max-conns", optarg);
            break;
        case 'r':
            cfg.register_delay_ms = dur_ms("--register-delay", optarg);
            break;
        case 'd':
            cfg.duration_ms = dur_ms("--duration", optarg);
            break;
        case 'q':
            cfg.quiet = 1;
            break;
        case 'h':
            usage();
            return 0;
        default:
            usage();
            return 2;
        }
    }
    if (cfg.port <= 0 || cfg.port > 65535 || optind != argc) {
        usage();
        return 2;
    }
    if (cfg.keepalive_ms < 10)
        cfg.keepalive_ms = 10;
    if (cfg.peers > 100000) {
        fprintf(stderr, "ts_stub: --peers above 100000\n");
        return 2;
    }
    if (precompute() != 0) {
        fprintf(stderr, "ts_stub: cannot build the keys or the netmap\n");
        return 1;
    }
    nghttp2_session_callbacks_new(&h2cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(h2cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(h2cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(h2cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(h2cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(h2cb, on_stream_close);

    signal(SIGTERM, on_sig);
    signal(SIGINT, on_sig);
    signal(SIGPIPE, SIG_IGN);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (lfd < 0 || ep < 0) {
        perror("ts_stub: socket/epoll");
        return 1;
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)cfg.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 4096) < 0) {
        perror("ts_stub: bind/listen");
        return 1;
    }
    ev.events = EPOLLIN;
    ev.data.ptr = NULL; /* the listener */
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    fprintf(stderr, "ts_stub: listening on 127.0.0.1:%d (peers %u, keepalive %" PRId64
                    " ms, register delay %" PRId64 " ms, max conns %u)\n",
            cfg.port, cfg.peers, cfg.keepalive_ms, cfg.register_delay_ms, cfg.max_conns);

    t0 = now_ms();
    end = t0 + cfg.duration_ms;
    while (!quit) {
        int64_t t = now_ms();
        if (t >= end)
            break;
        int n = epoll_wait(ep, evs, MAX_EVENTS, next_timeout(t, end));
        if (n < 0 && errno != EINTR) {
            perror("ts_stub: epoll_wait");
            rc = 1;
            break;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                do_accept(lfd);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                conn_read(c);
            if (!c->dead)
                conn_flush(c);
            if (c->dead)
                conn_free(c);
        }
        run_timers(now_ms());
    }

    while (conns)
        conn_free(conns);
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr,
            "ts_stub: wall_s=%.1f cpu_user_s=%.2f cpu_sys_s=%.2f vmhwm_kb=%ld accepted=%" PRIu64
            " refused_max_conns=%" PRIu64 " conns_peak=%u key=%" PRIu64 " handshakes=%" PRIu64
            " handshake_failed=%" PRIu64 " registers=%" PRIu64 " map_streams=%" PRIu64
            " map_updates=%" PRIu64 " netmaps=%" PRIu64 " keepalives=%" PRIu64
            " other=%" PRIu64 " errors: head=%" PRIu64 " bad_request=%" PRIu64 " body=%" PRIu64
            " out=%" PRIu64 " h2=%" PRIu64 " ts=%" PRIu64 "\n",
            (double)(now_ms() - t0) / 1000.0,
            (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, vm_hwm_kb(),
            st.accepted, st.refused_max, st.conns_peak, st.key_requests, st.handshakes,
            st.handshake_failed, st.registers, st.map_streams, st.map_updates, st.netmaps_sent,
            st.keepalives_sent, st.other, st.head_too_big, st.bad_request, st.body_too_big,
            st.out_overflow, st.h2_errors, st.ts_errors);
    nghttp2_session_callbacks_del(h2cb);
    free(pre.key_resp);
    free(pre.netmap);
    free(pre.register_json);
    close(lfd);
    close(ep);
    return rc;
}
