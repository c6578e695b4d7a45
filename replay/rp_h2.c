/*
 * Replayed HTTP/2 client connections over nghttp2 (see rp_h2.h).
 *
 * Output is gathered from nghttp2_session_mem_send() into the loop's scratch
 * buffer and written in one call; only what the socket refuses is copied
 * into a per-connection stash, so ten thousand idle connections cost no
 * output buffers. Reads are bounded per call (fairness between connections
 * on one loop); a connection that hit the bound says so in more_input.
 *
 * Classification of a closed stream (RFC 9113): a complete response is
 * "ok" here and compared with the trace by the loop; a RST_STREAM from the
 * server is "stream_reset" with the error code's name (section 7); a stream
 * above the last stream id of a received GOAWAY was never processed
 * (section 6.8) and is "goaway"; anything else that ends a stream without
 * a response is a protocol error.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "h2replay/error.h"
#include "h2replay/run.h"
#include "h2replay/units.h"
#include "rp_h2.h"

#define READ_ROUNDS_PER_CALL 8
#define LOCAL_WINDOW ((1 << 30) - 1)

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

/* ---- streams ---- */

void rp_stream_finish(struct rp_done_q *q, struct rp_stream *st, uint32_t cls, const char *detail)
{
    if (st->finished)
        return;
    st->finished = 1;
    st->err_class = cls;
    st->err_detail = detail;
    st->t_done = h2r_now_mono_ns();
    struct rp_conn *c = st->conn;
    if (c) {
        if (st->open_prev)
            st->open_prev->open_next = st->open_next;
        else
            c->open_head = st->open_next;
        if (st->open_next)
            st->open_next->open_prev = st->open_prev;
        st->open_prev = st->open_next = NULL;
        c->n_open--;
        st->conn = NULL;
    }
    st->done_next = NULL;
    if (q->tail)
        q->tail->done_next = st;
    else
        q->head = st;
    q->tail = st;
}

static struct rp_stream *find_open(struct rp_conn *c, int32_t id)
{
    for (struct rp_stream *st = c->open_head; st; st = st->open_next)
        if ((int32_t)st->stream_id == id)
            return st;
    return NULL;
}

/* The stream for id, or NULL. Streams are pooled by the loop: a finished one may already
 * serve another request while nghttp2 still holds it as user data of the old stream id
 * (e.g. until a queued RST_STREAM is sent), hence the connection and id checks. */
static struct rp_stream *stream_of(nghttp2_session *s, struct rp_conn *c, int32_t id)
{
    struct rp_stream *st = nghttp2_session_get_stream_user_data(s, id);
    if (!st)
        st = find_open(c, id);
    if (!st || st->finished || st->conn != c || st->stream_id != (uint32_t)id)
        return NULL;
    return st;
}

/* ---- response capture (for the rewrite module) ---- */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

static void capture_header(struct rp_capture *cap, const uint8_t *name, size_t nlen,
                           const uint8_t *value, size_t vlen)
{
    if (cap->hlen + nlen + vlen > RP_CAPTURE_MAX_HDRS ||
        grow((void **)&cap->hbuf, &cap->hcap, cap->hlen + nlen + vlen, 1) ||
        grow((void **)&cap->h, &cap->cap_h, cap->n_h + 1, sizeof(*cap->h))) {
        cap->truncated = 1;
        return;
    }
    struct rp_capture_hdr *h = &cap->h[cap->n_h++];
    h->name_off = (uint32_t)cap->hlen;
    h->name_len = (uint32_t)nlen;
    memcpy(cap->hbuf + cap->hlen, name, nlen);
    cap->hlen += nlen;
    h->value_off = (uint32_t)cap->hlen;
    h->value_len = (uint32_t)vlen;
    memcpy(cap->hbuf + cap->hlen, value, vlen);
    cap->hlen += vlen;
}

static void capture_body(struct rp_capture *cap, const uint8_t *data, size_t len)
{
    if (cap->body_len + len > RP_CAPTURE_MAX_BODY) {
        cap->truncated = 1;
        len = RP_CAPTURE_MAX_BODY - cap->body_len;
    }
    if (len == 0 || grow((void **)&cap->body, &cap->body_cap, cap->body_len + len, 1))
        return;
    memcpy(cap->body + cap->body_len, data, len);
    cap->body_len += len;
}

void rp_capture_free(struct rp_capture *cap)
{
    if (!cap)
        return;
    free(cap->hbuf);
    free(cap->h);
    free(cap->body);
    free(cap);
}

/* ---- nghttp2 callbacks: record only, never call back into the session ---- */

static int parse_int(const uint8_t *v, size_t n, int32_t *out)
{
    if (n == 0 || n > 9)
        return -1;
    int32_t r = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        r = r * 10 + (v[i] - '0');
    }
    *out = r;
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)flags;
    struct rp_conn *c = ud;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct rp_stream *st = stream_of(s, c, frame->hd.stream_id);
    if (!st)
        return 0;
    int32_t v;
    if (nlen == 7 && memcmp(name, ":status", 7) == 0) {
        if (parse_int(value, vlen, &v) == 0 && v >= 200 && st->status < 0) {
            st->status = v;
            st->t_first_byte = h2r_now_mono_ns();
        }
    } else if (nlen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        if (parse_int(value, vlen, &v) == 0)
            st->grpc_status = v;
    }
    if (st->cap)
        capture_header(st->cap, name, nlen, value, vlen);
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    struct rp_stream *st = stream_of(s, ud, id);
    if (!st)
        return 0;
    st->resp_bytes += len;
    if (st->cap)
        capture_body(st->cap, data, len);
    if (st->on_body)
        st->on_body(st, data, len);
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    struct rp_conn *c = ud;
    struct rp_stream *st;
    switch (frame->hd.type) {
    case NGHTTP2_GOAWAY:
        c->goaway = 1;
        c->goaway_last = (uint32_t)frame->goaway.last_stream_id;
        c->goaway_code = frame->goaway.error_code;
        break;
    case NGHTTP2_RST_STREAM:
        st = stream_of(s, c, frame->hd.stream_id);
        if (st) {
            st->got_rst = 1;
            st->rst_code = frame->rst_stream.error_code;
        }
        break;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            st = stream_of(s, c, frame->hd.stream_id);
            if (st)
                st->resp_complete = 1;
        }
        break;
    default:
        break;
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
    struct rp_conn *c = ud;
    struct rp_stream *st = stream_of(s, c, id);
    if (!st)
        return 0;
    if (st->resp_complete)
        rp_stream_finish(c->done, st, H2R_EC_NONE, NULL);
    else if (st->got_rst)
        rp_stream_finish(c->done, st, H2R_EC_STREAM_RESET, nghttp2_http2_strerror(st->rst_code));
    else if (c->goaway && (uint32_t)id > c->goaway_last)
        rp_stream_finish(c->done, st, H2R_EC_GOAWAY, nghttp2_http2_strerror(c->goaway_code));
    else if (error_code != NGHTTP2_NO_ERROR)
        rp_stream_finish(c->done, st, H2R_EC_PROTOCOL, nghttp2_http2_strerror(error_code));
    else
        rp_stream_finish(c->done, st, H2R_EC_PROTOCOL, "stream closed without a response");
    return 0;
}

static int on_frame_not_send(nghttp2_session *s, const nghttp2_frame *frame, int lib_error,
                             void *ud)
{
    struct rp_conn *c = ud;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct rp_stream *st = stream_of(s, c, frame->hd.stream_id);
    if (!st)
        return 0;
    if (lib_error == NGHTTP2_ERR_START_STREAM_NOT_ALLOWED)
        rp_stream_finish(c->done, st, H2R_EC_GOAWAY, "not sent: GOAWAY received");
    else
        rp_stream_finish(c->done, st, H2R_EC_PROTOCOL, nghttp2_strerror(lib_error));
    return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)s;
    struct rp_stream *st = src->ptr;
    if (st->finished || st->conn != ud || st->stream_id != (uint32_t)id) {
        /* cancelled (deadline, stop): its body may be gone, its stream reused */
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    uint64_t left = st->body_len - st->body_off;
    size_t n = left < len ? (size_t)left : len;
    size_t from_store = 0;
    if (st->body_off < st->body_stored) {
        size_t avail = st->body_stored - (size_t)st->body_off;
        from_store = avail < n ? avail : n;
        memcpy(buf, st->body + st->body_off, from_store);
    }
    /* a body the capture truncated is completed with zeros: the server sees the captured
     * length, which its content-length header announces */
    if (n > from_store)
        memset(buf + from_store, 0, n - from_store);
    st->body_off += n;
    st->req_bytes += n;
    if (st->body_off == st->body_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void setup(void)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb))
        return;
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, on_frame_not_send);
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt)) {
        nghttp2_session_callbacks_del(cb);
        return;
    }
    /* RFC 9113 6.5.2 recommends at least 100; assume that much until the server's
     * SETTINGS arrive instead of nghttp2's "unlimited", which invites REFUSED_STREAM */
    nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
    callbacks = cb;
    options = opt;
}

/* ---- connection ---- */

int rp_conn_new(struct rp_conn **out, struct rp_io *io, struct rp_done_q *done)
{
    *out = NULL;
    pthread_once(&setup_once, setup);
    struct rp_conn *c = calloc(1, sizeof(*c));
    if (!c || !callbacks)
        goto fail;
    c->io = io;
    c->done = done;
    c->state = RP_CONN_CONNECTING;
    c->io_want = io->want;
    if (nghttp2_session_client_new2(&c->h2, callbacks, c, options))
        goto fail;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, LOCAL_WINDOW},
    };
    if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 2) ||
        nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, LOCAL_WINDOW))
        goto fail;
    *out = c;
    return 0;
fail:
    if (c && c->h2)
        nghttp2_session_del(c->h2);
    free(c);
    io->ops->free(io);
    return H2R_ERR_NOMEM;
}

static int die(struct rp_conn *c, uint32_t cls, const char *detail)
{
    c->state = RP_CONN_DEAD;
    c->err_class = cls;
    c->err_detail = detail;
    return RP_IO_ERROR;
}

int rp_conn_handshake(struct rp_conn *c)
{
    if (c->state != RP_CONN_CONNECTING)
        return c->state == RP_CONN_READY ? RP_IO_OK : RP_IO_ERROR;
    int rc = c->io->ops->handshake(c->io);
    if (rc == RP_IO_RETRY) {
        c->io_want = c->io->want;
        return rc;
    }
    if (rc != RP_IO_OK)
        return die(c, c->io->err_class, c->io->err_detail);
    c->state = RP_CONN_READY;
    c->io_want = 0;
    return RP_IO_OK;
}

int rp_conn_accepts(const struct rp_conn *c)
{
    return c->state == RP_CONN_READY && !c->goaway && nghttp2_session_check_request_allowed(c->h2);
}

int rp_conn_submit(struct rp_conn *c, struct rp_stream *st, const nghttp2_nv *nv, size_t n_nv)
{
    nghttp2_data_provider prd;
    prd.source.ptr = st;
    prd.read_callback = read_body;
    int32_t id = nghttp2_submit_request(c->h2, NULL, nv, n_nv, st->body_len ? &prd : NULL, st);
    if (id < 0)
        return id;
    st->stream_id = (uint32_t)id;
    st->conn = c;
    st->open_prev = NULL;
    st->open_next = c->open_head;
    if (c->open_head)
        c->open_head->open_prev = st;
    c->open_head = st;
    c->n_open++;
    return 0;
}

int rp_conn_read(struct rp_conn *c, uint8_t *scratch, size_t cap)
{
    if (c->state != RP_CONN_READY)
        return c->state == RP_CONN_DEAD ? RP_IO_ERROR : RP_IO_OK;
    for (int i = 0; i < READ_ROUNDS_PER_CALL; i++) {
        size_t got = 0;
        int rc = c->io->ops->read(c->io, scratch, cap, &got);
        if (rc == RP_IO_RETRY) {
            c->more_input = c->io->ops->pending(c->io);
            return RP_IO_OK;
        }
        if (rc != RP_IO_OK)
            return die(c, c->io->err_class, c->io->err_detail);
        ssize_t k = nghttp2_session_mem_recv(c->h2, scratch, got);
        if (k < 0)
            return die(c, H2R_EC_PROTOCOL, nghttp2_strerror((int)k));
    }
    c->more_input = 1;
    return RP_IO_OK;
}

static int stash_append(struct rp_conn *c, const uint8_t *p, size_t n)
{
    if (c->stash_off == c->stash_len)
        c->stash_off = c->stash_len = 0;
    if (grow((void **)&c->stash, &c->stash_cap, c->stash_len + n, 1))
        return H2R_ERR_NOMEM;
    memcpy(c->stash + c->stash_len, p, n);
    c->stash_len += n;
    return 0;
}

/* Writes p fully, or stashes the rest when the socket pushes back. */
static int write_or_stash(struct rp_conn *c, const uint8_t *p, size_t n)
{
    while (n) {
        size_t put = 0;
        int rc = c->io->ops->write(c->io, p, n, &put);
        if (rc == RP_IO_OK) {
            p += put;
            n -= put;
            continue;
        }
        if (rc == RP_IO_RETRY) {
            c->io_want = c->io->want;
            if (stash_append(c, p, n))
                return die(c, H2R_EC_IO, "out of memory");
            return RP_IO_RETRY;
        }
        return die(c, c->io->err_class, c->io->err_detail);
    }
    return RP_IO_OK;
}

static int drain_stash(struct rp_conn *c)
{
    while (c->stash_off < c->stash_len) {
        size_t put = 0;
        int rc =
            c->io->ops->write(c->io, c->stash + c->stash_off, c->stash_len - c->stash_off, &put);
        if (rc == RP_IO_RETRY) {
            c->io_want = c->io->want;
            return RP_IO_RETRY;
        }
        if (rc != RP_IO_OK)
            return die(c, c->io->err_class, c->io->err_detail);
        c->stash_off += put;
    }
    /* drained: give the memory back, idle connections should cost nothing */
    free(c->stash);
    c->stash = NULL;
    c->stash_len = c->stash_off = c->stash_cap = 0;
    c->io_want = 0;
    return RP_IO_OK;
}

int rp_conn_flush(struct rp_conn *c, uint8_t *scratch, size_t cap)
{
    if (c->state != RP_CONN_READY)
        return c->state == RP_CONN_DEAD ? RP_IO_ERROR : RP_IO_OK;
    int rc = drain_stash(c);
    if (rc != RP_IO_OK)
        return rc == RP_IO_RETRY ? RP_IO_OK : rc;
    size_t n = 0;
    for (;;) {
        const uint8_t *data;
        ssize_t k = nghttp2_session_mem_send(c->h2, &data);
        if (k < 0)
            return die(c, H2R_EC_PROTOCOL, nghttp2_strerror((int)k));
        if (k == 0)
            break;
        if (n + (size_t)k <= cap) {
            memcpy(scratch + n, data, (size_t)k);
            n += (size_t)k;
            continue;
        }
        rc = write_or_stash(c, scratch, n);
        n = 0;
        if (rc == RP_IO_ERROR)
            return rc;
        if (rc == RP_IO_RETRY) {
            /* data is only valid until the next mem_send: keep it behind the stash */
            if (stash_append(c, data, (size_t)k))
                return die(c, H2R_EC_IO, "out of memory");
            return RP_IO_OK;
        }
        if ((size_t)k <= cap) {
            memcpy(scratch, data, (size_t)k);
            n = (size_t)k;
            continue;
        }
        rc = write_or_stash(c, data, (size_t)k);
        if (rc == RP_IO_ERROR)
            return rc;
        if (rc == RP_IO_RETRY)
            return RP_IO_OK;
    }
    if (n) {
        rc = write_or_stash(c, scratch, n);
        if (rc == RP_IO_ERROR)
            return rc;
    }
    return RP_IO_OK;
}

int rp_conn_wants_write(const struct rp_conn *c)
{
    if (c->state == RP_CONN_CONNECTING)
        return (c->io_want & RP_WANT_WRITE) != 0;
    return c->stash_off < c->stash_len || (c->io_want & RP_WANT_WRITE);
}

void rp_conn_cancel(struct rp_conn *c, struct rp_stream *st, uint32_t cls, const char *detail)
{
    uint32_t id = st->stream_id;
    rp_stream_finish(c->done, st, cls, detail);
    if (c->state == RP_CONN_READY && id)
        nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, (int32_t)id, NGHTTP2_CANCEL);
}

void rp_conn_fail_all(struct rp_conn *c, uint32_t cls, const char *detail)
{
    while (c->open_head) {
        struct rp_stream *st = c->open_head;
        if (c->goaway && st->stream_id > c->goaway_last)
            rp_stream_finish(c->done, st, H2R_EC_GOAWAY, nghttp2_http2_strerror(c->goaway_code));
        else if (st->resp_complete)
            rp_stream_finish(c->done, st, H2R_EC_NONE, NULL);
        else
            rp_stream_finish(c->done, st, cls, detail);
    }
}

void rp_conn_goaway(struct rp_conn *c)
{
    if (c->state == RP_CONN_READY)
        nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
}

void rp_conn_free(struct rp_conn *c)
{
    if (!c)
        return;
    if (c->h2)
        nghttp2_session_del(c->h2);
    if (c->io)
        c->io->ops->free(c->io);
    free(c->stash);
    free(c);
}
