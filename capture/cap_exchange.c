/*
 * Exchange assembly for one HTTP/2 connection (RFC 9113 §8.1).
 *
 * A client-initiated stream becomes one exchange: the first client HEADERS
 * is the request (its arrival assigns the capture-wide exchange id, so ids
 * ascend in order of request start), 1xx responses are skipped, the first
 * final HEADERS from the server is the response, and a later server HEADERS
 * is the trailer section. Bodies are stored up to the env caps while their
 * full wire length is always counted. An exchange is written as soon as it
 * is over (both END_STREAMs, RST_STREAM, or excluded by a GOAWAY) so memory
 * is bounded by the streams in flight, which are capped per connection.
 *
 * Streams live in a small chained hash table keyed by stream id plus a list
 * in creation order, which is exchange-id order for cap_exch_finish_all().
 * Server-initiated (pushed) streams are not recorded: replay only issues
 * client requests.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap_exchange.h"
#include "cap_h2.h"
#include "cap_redact.h"

#define RST_BY_CLIENT 1u
#define RST_BY_SERVER 2u

struct hdr_list {
    struct h2r_hdr *v;
    size_t n;
    uint8_t *bytes;
};

struct body {
    uint8_t *p;
    size_t stored;
    size_t cap;
    uint64_t len;
};

struct stream {
    uint32_t sid;
    uint64_t exch_id;
    struct stream *hnext;
    struct stream *prev;
    struct stream *next;

    struct hdr_list req;
    struct hdr_list resp;
    struct hdr_list trl;
    struct body req_body;
    struct body resp_body;
    int req_done;
    int resp_done;
    int have_final;
    uint32_t flags;
    int32_t status;
    int32_t grpc_status;
    int64_t rst_code;
    uint32_t rst_by;
    int64_t goaway_code;
    int64_t t_req_first;
    int64_t t_req_end;
    int64_t t_resp_hdrs;
    int64_t t_resp_end;
    const char *error;
    char errbuf[40];
};

struct cap_exch_table {
    struct cap_session_env *env;
    struct cap_session_sink sink;
    uint64_t conn_id;
    size_t max_streams;

    struct stream **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    struct stream *head;
    struct stream *tail;

    uint32_t max_client_sid; /* highest client stream id seen (tracked or not) */
    int goaway_seen;
    uint32_t goaway_last;
    uint32_t goaway_code;
    uint64_t written;
};

/* ---- small helpers ---- */

static size_t bucket_of(const struct cap_exch_table *t, uint32_t sid)
{
    return (size_t)((sid * 2654435761u) & (uint32_t)(t->nbuckets - 1));
}

static int name_is(const struct h2r_hdr *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && memcmp(h->name, name, n) == 0;
}

static const struct h2r_hdr *find_hdr(const struct h2r_hdr *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (name_is(&v[i], name))
            return &v[i];
    }
    return NULL;
}

/* Parses a bounded unsigned decimal; -1 when absent, empty, not all digits or too large. */
static int32_t parse_dec(const struct h2r_hdr *h, size_t max_digits)
{
    int64_t v = 0;
    if (!h || h->value_len == 0 || h->value_len > max_digits)
        return -1;
    for (uint32_t i = 0; i < h->value_len; i++) {
        if (h->value[i] < '0' || h->value[i] > '9')
            return -1;
        v = v * 10 + (h->value[i] - '0');
    }
    return v > INT32_MAX ? -1 : (int32_t)v;
}

/* RFC 9113 §8.3.2: ":status" is a 3-digit code. */
static int32_t parse_status(const struct h2r_hdr *v, size_t n)
{
    const struct h2r_hdr *h = find_hdr(v, n, ":status");
    if (!h || h->value_len != 3)
        return -1;
    return parse_dec(h, 3);
}

/* gRPC over HTTP/2: content-type "application/grpc" optionally followed by "+proto" etc. */
static int is_grpc(const struct h2r_hdr *v, size_t n)
{
    static const char prefix[] = "application/grpc";
    const size_t plen = sizeof(prefix) - 1;
    const struct h2r_hdr *h = find_hdr(v, n, "content-type");
    if (!h || h->value_len < plen)
        return 0;
    for (size_t i = 0; i < plen; i++) {
        uint8_t c = h->value[i];
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c - 'A' + 'a');
        if (c != (uint8_t)prefix[i])
            return 0;
    }
    return h->value_len == plen || h->value[plen] == '+' || h->value[plen] == ';';
}

static void hdr_list_free(struct hdr_list *l)
{
    free(l->v);
    free(l->bytes);
    l->v = NULL;
    l->bytes = NULL;
    l->n = 0;
}

/* Deep-copies a decoder-owned list (valid only during the callback). */
static int hdr_list_copy(struct hdr_list *l, const struct h2r_hdr *src, size_t n)
{
    size_t total = 0, off = 0;
    hdr_list_free(l);
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        total += (size_t)src[i].name_len + src[i].value_len;
    l->v = calloc(n, sizeof(*l->v));
    l->bytes = malloc(total ? total : 1);
    if (!l->v || !l->bytes) {
        hdr_list_free(l);
        return H2R_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (src[i].name_len)
            memcpy(l->bytes + off, src[i].name, src[i].name_len);
        l->v[i].name = l->bytes + off;
        l->v[i].name_len = src[i].name_len;
        off += src[i].name_len;
        if (src[i].value_len)
            memcpy(l->bytes + off, src[i].value, src[i].value_len);
        l->v[i].value = l->bytes + off;
        l->v[i].value_len = src[i].value_len;
        off += src[i].value_len;
    }
    l->n = n;
    return 0;
}

/* Stores up to max bytes, counting all of them. */
static int body_append(struct body *b, const uint8_t *p, size_t len, size_t max)
{
    size_t room, take;
    b->len += len;
    room = b->stored < max ? max - b->stored : 0;
    take = len < room ? len : room;
    if (take == 0)
        return 0;
    if (take > b->cap - b->stored) {
        size_t ncap = b->cap ? b->cap : 1024;
        while (ncap - b->stored < take)
            ncap *= 2;
        if (ncap > max)
            ncap = max;
        uint8_t *np = realloc(b->p, ncap);
        if (!np)
            return H2R_ERR_NOMEM;
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->stored, p, take);
    b->stored += take;
    return 0;
}

static void set_code_error(struct stream *s, const char *what, uint32_t code)
{
    const char *name = cap_h2_error_code_name(code);
    if (name)
        snprintf(s->errbuf, sizeof(s->errbuf), "%s:%s", what, name);
    else
        snprintf(s->errbuf, sizeof(s->errbuf), "%s:%u", what, code);
    s->error = s->errbuf;
}

/* ---- table ---- */

struct cap_exch_table *cap_exch_new(struct cap_session_env *env, uint64_t conn_id,
                                    const struct cap_session_sink *sink)
{
    struct cap_exch_table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->nbuckets = 64;
    t->buckets = calloc(t->nbuckets, sizeof(struct stream *));
    if (!t->buckets) {
        free(t);
        return NULL;
    }
    t->env = env;
    t->sink = *sink;
    t->conn_id = conn_id;
    t->max_streams = CAP_EXCH_MAX_STREAMS;
    return t;
}

void cap_exch_set_max_streams(struct cap_exch_table *t, size_t max_streams)
{
    t->max_streams = max_streams ? max_streams : CAP_EXCH_MAX_STREAMS;
}

static struct stream *lookup(const struct cap_exch_table *t, uint32_t sid)
{
    struct stream *s = t->buckets[bucket_of(t, sid)];
    while (s && s->sid != sid)
        s = s->hnext;
    return s;
}

static void grow_buckets(struct cap_exch_table *t)
{
    size_t nb = t->nbuckets * 2;
    struct stream **b = calloc(nb, sizeof(struct stream *));
    if (!b)
        return; /* longer chains, still correct */
    struct stream **old = t->buckets;
    size_t oldn = t->nbuckets;
    t->buckets = b;
    t->nbuckets = nb;
    for (size_t i = 0; i < oldn; i++) {
        struct stream *s = old[i];
        while (s) {
            struct stream *nx = s->hnext;
            size_t k = bucket_of(t, s->sid);
            s->hnext = b[k];
            b[k] = s;
            s = nx;
        }
    }
    free(old);
}

static struct stream *stream_add(struct cap_exch_table *t, uint32_t sid)
{
    struct stream *s = calloc(1, sizeof(*s));
    size_t k;
    if (!s)
        return NULL;
    if (t->count >= t->nbuckets)
        grow_buckets(t);
    s->sid = sid;
    s->status = -1;
    s->grpc_status = -1;
    s->rst_code = -1;
    s->goaway_code = -1;
    k = bucket_of(t, sid);
    s->hnext = t->buckets[k];
    t->buckets[k] = s;
    s->prev = t->tail;
    if (t->tail)
        t->tail->next = s;
    else
        t->head = s;
    t->tail = s;
    t->count++;
    return s;
}

static void stream_free(struct stream *s)
{
    hdr_list_free(&s->req);
    hdr_list_free(&s->resp);
    hdr_list_free(&s->trl);
    free(s->req_body.p);
    free(s->resp_body.p);
    free(s);
}

static void stream_remove(struct cap_exch_table *t, struct stream *s)
{
    struct stream **pp = &t->buckets[bucket_of(t, s->sid)];
    while (*pp && *pp != s)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = s->hnext;
    if (s->prev)
        s->prev->next = s->next;
    else
        t->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        t->tail = s->prev;
    t->count--;
    stream_free(s);
}

void cap_exch_free(struct cap_exch_table *t)
{
    if (!t)
        return;
    cap_exch_discard_all(t);
    free(t->buckets);
    free(t);
}

void cap_exch_discard_all(struct cap_exch_table *t)
{
    while (t->head)
        stream_remove(t, t->head);
}

uint64_t cap_exch_written(const struct cap_exch_table *t)
{
    return t->written;
}

size_t cap_exch_open_count(const struct cap_exch_table *t)
{
    return t->count;
}

/* Builds the record, redacts it, hands it to the sink and drops the stream. */
static int write_stream(struct cap_exch_table *t, struct stream *s)
{
    struct cap_session_env *env = t->env;
    struct cap_redact_mem mem = {NULL, 0, 0};
    struct cap_redact_counts counts = {0, 0, 0};
    struct h2r_exchange x;
    int rc = 0;

    memset(&x, 0, sizeof(x));
    x.id = s->exch_id;
    x.conn_id = t->conn_id;
    x.stream_id = s->sid;
    x.flags = s->flags;
    x.req_hdrs = s->req.v;
    x.n_req_hdrs = s->req.n;
    x.req_body = s->req_body.p;
    x.req_body_stored = s->req_body.stored;
    x.req_body_len = s->req_body.len;
    x.resp_hdrs = s->resp.v;
    x.n_resp_hdrs = s->resp.n;
    x.resp_body = s->resp_body.p;
    x.resp_body_stored = s->resp_body.stored;
    x.resp_body_len = s->resp_body.len;
    x.trailers = s->trl.v;
    x.n_trailers = s->trl.n;
    x.status = s->status;
    x.grpc_status = s->grpc_status;
    x.rst_code = s->rst_code;
    x.rst_by = s->rst_by;
    x.goaway_code = s->goaway_code;
    x.t_req_first_ns = s->t_req_first;
    x.t_req_end_ns = s->t_req_end;
    x.t_resp_hdrs_ns = s->t_resp_hdrs;
    x.t_resp_end_ns = s->t_resp_end;
    x.error = s->error;
    if (x.req_body_stored < x.req_body_len) {
        x.flags |= H2R_EXCH_F_REQ_BODY_TRUNC;
        env->stats->bodies_truncated++;
    }
    if (x.resp_body_stored < x.resp_body_len) {
        x.flags |= H2R_EXCH_F_RESP_BODY_TRUNC;
        env->stats->bodies_truncated++;
    }
    if (env->redactor) {
        rc = cap_redact_exchange(env->redactor, &x, &mem, &counts);
        env->stats->redacted_values += counts.values;
        env->stats->redact_bodies_dropped += counts.bodies_dropped;
        env->stats->redact_table_full += counts.table_full;
        if (rc != 0)
            goto out;
    }
    rc = t->sink.exchange ? t->sink.exchange(t->sink.ud, &x) : 0;
    if (rc != 0) {
        if (env->write_error == 0)
            env->write_error = rc;
        goto out;
    }
    t->written++;
    env->stats->exchanges++;
    if (x.flags & H2R_EXCH_F_INCOMPLETE)
        env->stats->exchanges_incomplete++;
out:
    cap_redact_mem_free(&mem);
    stream_remove(t, s);
    return rc;
}

static int maybe_complete(struct cap_exch_table *t, struct stream *s)
{
    if (s->req_done && s->resp_done)
        return write_stream(t, s);
    return 0;
}

/* ---- events ---- */

static int request_headers(struct cap_exch_table *t, uint32_t sid, const struct h2r_hdr *hdrs,
                           size_t n, unsigned flags, int64_t ts_first, int64_t ts)
{
    struct stream *s;
    int rc;

    /* RFC 9113 §5.1.1: client streams are odd and ascend; a lower id is a closed stream. */
    if ((sid & 1u) == 0 || sid <= t->max_client_sid) {
        t->env->stats->h2_frames_unknown_stream++;
        return 0;
    }
    t->max_client_sid = sid;
    if (t->count >= t->max_streams) {
        t->env->stats->streams_cap_hit++;
        return 0;
    }
    s = stream_add(t, sid);
    if (!s)
        return H2R_ERR_NOMEM;
    s->exch_id = t->env->next_exchange_id++;
    rc = hdr_list_copy(&s->req, hdrs, n);
    if (rc != 0) {
        stream_remove(t, s);
        return rc;
    }
    s->t_req_first = ts_first;
    if (is_grpc(hdrs, n))
        s->flags |= H2R_EXCH_F_GRPC;
    if (flags & CAP_H2_HDR_TRUNCATED)
        s->error = "headers_too_large";
    if (flags & CAP_H2_HDR_END_STREAM) {
        s->req_done = 1;
        s->t_req_end = ts;
    }
    /* §6.8: a stream above the server's GOAWAY last-stream-id is never processed. */
    if (t->goaway_seen && sid > t->goaway_last) {
        set_code_error(s, "goaway", t->goaway_code);
        s->goaway_code = t->goaway_code;
        s->flags |= H2R_EXCH_F_INCOMPLETE;
        return write_stream(t, s);
    }
    return 0;
}

int cap_exch_on_headers(void *ud, int dir, uint32_t stream_id, const struct h2r_hdr *hdrs, size_t n,
                        unsigned flags, int64_t ts_first_ns, int64_t ts_ns)
{
    struct cap_exch_table *t = ud;
    struct stream *s = lookup(t, stream_id);
    int end_stream = (flags & CAP_H2_HDR_END_STREAM) != 0;
    int rc;

    if (dir == CAP_DIR_C2S) {
        if (!s)
            return request_headers(t, stream_id, hdrs, n, flags, ts_first_ns, ts_ns);
        /* A second client HEADERS is a trailer section (§8.1); the trace cannot hold it. */
        t->env->stats->h2_req_trailers_dropped++;
        if (end_stream && !s->req_done) {
            s->req_done = 1;
            s->t_req_end = ts_ns;
        }
        return maybe_complete(t, s);
    }

    if (!s) {
        if ((stream_id & 1u) && stream_id > t->max_client_sid)
            t->env->stats->h2_frames_unknown_stream++;
        return 0;
    }
    if (flags & CAP_H2_HDR_TRUNCATED)
        s->error = "headers_too_large";
    if (!s->have_final) {
        int32_t status = parse_status(hdrs, n);
        /* §8.1: 1xx responses precede the final one and never end the stream. */
        if (status >= 100 && status <= 199)
            return 0;
        rc = hdr_list_copy(&s->resp, hdrs, n);
        if (rc != 0)
            return rc;
        s->have_final = 1;
        s->status = status;
        s->t_resp_hdrs = ts_first_ns;
        if (is_grpc(hdrs, n))
            s->flags |= H2R_EXCH_F_GRPC;
        /* gRPC trailers-only response: grpc-status rides on the only HEADERS. */
        s->grpc_status = parse_dec(find_hdr(hdrs, n, "grpc-status"), 10);
    } else {
        rc = hdr_list_copy(&s->trl, hdrs, n);
        if (rc != 0)
            return rc;
        int32_t gs = parse_dec(find_hdr(hdrs, n, "grpc-status"), 10);
        if (gs >= 0)
            s->grpc_status = gs;
    }
    if (end_stream) {
        s->resp_done = 1;
        s->t_resp_end = ts_ns;
    }
    return maybe_complete(t, s);
}

int cap_exch_on_data(void *ud, int dir, uint32_t stream_id, const uint8_t *data, size_t len,
                     int end_stream, int64_t ts_ns)
{
    struct cap_exch_table *t = ud;
    struct stream *s = lookup(t, stream_id);
    int rc;

    if (!s) {
        if (dir == CAP_DIR_S2C && (stream_id & 1u) && stream_id > t->max_client_sid)
            t->env->stats->h2_frames_unknown_stream++;
        return 0;
    }
    if (dir == CAP_DIR_C2S) {
        if (s->req_done)
            return 0; /* §5.1: DATA after END_STREAM is a stream error; the peer drops it */
        rc = body_append(&s->req_body, data, len, t->env->max_req_body);
        if (rc != 0)
            return rc;
        if (end_stream) {
            s->req_done = 1;
            s->t_req_end = ts_ns;
        }
    } else {
        if (s->resp_done)
            return 0;
        rc = body_append(&s->resp_body, data, len, t->env->max_resp_body);
        if (rc != 0)
            return rc;
        if (end_stream) {
            s->resp_done = 1;
            s->t_resp_end = ts_ns;
        }
    }
    return maybe_complete(t, s);
}

int cap_exch_on_rst(void *ud, int dir, uint32_t stream_id, uint32_t code, int64_t ts_ns)
{
    struct cap_exch_table *t = ud;
    struct stream *s = lookup(t, stream_id);

    if (!s)
        return 0;
    s->rst_code = code;
    s->rst_by = dir == CAP_DIR_C2S ? RST_BY_CLIENT : RST_BY_SERVER;
    if (dir == CAP_DIR_S2C && !s->resp_done)
        s->t_resp_end = ts_ns;
    /* §8.1: a server may stop an upload with NO_ERROR after a complete response. */
    if (!(s->resp_done && code == 0))
        set_code_error(s, "rst_stream", code);
    if (!s->resp_done)
        s->flags |= H2R_EXCH_F_INCOMPLETE;
    return write_stream(t, s);
}

int cap_exch_on_goaway(void *ud, int dir, uint32_t last_stream_id, uint32_t code, int64_t ts_ns)
{
    struct cap_exch_table *t = ud;
    struct stream *s;
    int rc = 0;

    (void)ts_ns;
    /* A client GOAWAY concerns server-initiated streams, which are not recorded. */
    if (dir != CAP_DIR_S2C)
        return 0;
    if (!t->goaway_seen || last_stream_id < t->goaway_last)
        t->goaway_last = last_stream_id;
    t->goaway_seen = 1;
    t->goaway_code = code;
    s = t->head;
    while (s) {
        struct stream *nx = s->next;
        if (s->sid > t->goaway_last) {
            set_code_error(s, "goaway", code);
            s->goaway_code = code;
            if (!s->resp_done)
                s->flags |= H2R_EXCH_F_INCOMPLETE;
            rc = write_stream(t, s);
            if (rc != 0)
                return rc;
        }
        s = nx;
    }
    return 0;
}

int cap_exch_finish_all(struct cap_exch_table *t, const char *error)
{
    int first = 0;
    while (t->head) {
        struct stream *s = t->head;
        int rc;
        if (!s->error)
            s->error = error;
        if (!s->resp_done)
            s->flags |= H2R_EXCH_F_INCOMPLETE;
        rc = write_stream(t, s);
        if (rc != 0 && first == 0)
            first = rc;
    }
    return first;
}
