/*
 * Trace file codec: the record schemas of docs/trace-format.md on top of the
 * recio container. Encoding is field-tagged (fields.h) so that newer writers
 * can add fields and record kinds that older readers skip.
 *
 * The reader decodes into storage it owns and reuses (a string arena and
 * header arrays), so one record costs one payload plus its decoded view, and
 * memory stays bounded whatever the trace size.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/trace.h"
#include "h2replay/fields.h"
#include "recio.h"

static const char trace_magic[RECIO_MAGIC_LEN] = {'H', '2', 'R', 'T', 'R', 'A', 'C', 'E'};

#define REC_HEADER 1u

/* Field numbers (docs/trace-format.md is the reference). */
enum { HF_VERSION = 1, HF_TOOL, HF_SOURCE, HF_START_NS, HF_LINKTYPE, HF_SNAPLEN, HF_OPTIONS };
enum { CF_ID = 1, CF_CLIENT, CF_SERVER, CF_TRANSPORT, CF_FLAGS, CF_T_OPEN, CF_ALPN };
enum {
    EF_ID = 1,
    EF_T_CLOSE,
    EF_HOW,
    EF_FLAGS,
    EF_GOAWAY,
    EF_BYTES_C2S,
    EF_BYTES_S2C,
    EF_GAP_BYTES,
    EF_EXCHANGES,
    EF_REASON
};
enum {
    XF_ID = 1,
    XF_CONN,
    XF_STREAM,
    XF_FLAGS,
    XF_REQ_HDRS,
    XF_REQ_BODY,
    XF_REQ_BODY_LEN,
    XF_RESP_HDRS,
    XF_RESP_BODY,
    XF_RESP_BODY_LEN,
    XF_TRAILERS,
    XF_STATUS,
    XF_GRPC_STATUS,
    XF_RST_CODE,
    XF_RST_BY,
    XF_GOAWAY,
    XF_T_REQ_FIRST,
    XF_T_REQ_END,
    XF_T_RESP_HDRS,
    XF_T_RESP_END,
    XF_ERROR
};
enum {
    SF_PACKETS = 1,
    SF_BYTES,
    SF_FLOWS,
    SF_EXCHANGES,
    SF_GAPS,
    SF_UNDECODABLE,
    SF_END_NS,
    SF_COUNTER
};
enum {
    TF_ID = 1,
    TF_CONN,
    TF_NODE,
    TF_CAPVER,
    TF_FLAGS,
    TF_MACHINE_KEY,
    TF_STATUS,
    TF_HOW,
    TF_T_UPGRADE,
    TF_T_HANDSHAKE,
    TF_T_END,
    TF_FRAMES_C2S,
    TF_FRAMES_S2C,
    TF_BYTES_C2S,
    TF_BYTES_S2C,
    TF_RECS,
    TF_RECS_DROPPED,
    TF_REASON
};

/* ------------------------------------------------------------------ writer */

struct h2r_trace_writer {
    struct recio_writer *rw;
    struct h2r_buf rec;
    struct h2r_buf sub;
    int error;
    char errmsg[256];
};

static int tw_emit(struct h2r_trace_writer *w, uint32_t kind)
{
    if (w->error)
        return w->error;
    if (w->rec.failed) {
        w->error = w->rec.failed;
        snprintf(w->errmsg, sizeof(w->errmsg), "record too large or out of memory");
        return w->error;
    }
    int rc = recio_write(w->rw, kind, w->rec.p, w->rec.len);
    if (rc) {
        w->error = rc;
        snprintf(w->errmsg, sizeof(w->errmsg), "%s", recio_writer_errmsg(w->rw));
    }
    return rc;
}

int h2r_trace_writer_open(struct h2r_trace_writer **out, const char *path,
                          const struct h2r_trace_header *hdr,
                          const struct h2r_trace_writer_opts *opts, char *errbuf, size_t errlen)
{
    struct h2r_trace_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    int rc = recio_writer_open(&w->rw, path, trace_magic, H2R_TRACE_FORMAT_VERSION,
                               opts ? opts->level : 0, opts ? opts->frame_bytes : 0, errbuf,
                               errlen);
    if (rc) {
        free(w);
        return rc;
    }
    h2r_buf_init(&w->rec, H2R_TRACE_MAX_RECORD);
    h2r_buf_init(&w->sub, H2R_TRACE_MAX_RECORD);

    fld_put_u64(&w->rec, HF_VERSION, H2R_TRACE_FORMAT_VERSION);
    fld_put_str(&w->rec, HF_TOOL, hdr->tool_version);
    fld_put_str(&w->rec, HF_SOURCE, hdr->source);
    fld_put_i64(&w->rec, HF_START_NS, hdr->start_ns);
    fld_put_i64(&w->rec, HF_LINKTYPE, hdr->linktype);
    fld_put_u64(&w->rec, HF_SNAPLEN, hdr->snaplen);
    fld_put_str(&w->rec, HF_OPTIONS, hdr->options);
    rc = tw_emit(w, REC_HEADER);
    if (rc) {
        h2r_seterr(errbuf, errlen, rc, "%s", w->errmsg);
        h2r_trace_writer_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

int h2r_trace_write_conn(struct h2r_trace_writer *w, const struct h2r_conn *c)
{
    h2r_buf_reset(&w->rec);
    fld_put_u64(&w->rec, CF_ID, c->id);
    fld_put_str(&w->rec, CF_CLIENT, c->client);
    fld_put_str(&w->rec, CF_SERVER, c->server);
    fld_put_u64(&w->rec, CF_TRANSPORT, c->transport);
    fld_put_u64(&w->rec, CF_FLAGS, c->flags);
    fld_put_i64(&w->rec, CF_T_OPEN, c->t_open_ns);
    fld_put_str(&w->rec, CF_ALPN, c->alpn);
    return tw_emit(w, H2R_REC_CONN);
}

int h2r_trace_write_conn_end(struct h2r_trace_writer *w, const struct h2r_conn_end *e)
{
    h2r_buf_reset(&w->rec);
    fld_put_u64(&w->rec, EF_ID, e->id);
    fld_put_i64(&w->rec, EF_T_CLOSE, e->t_close_ns);
    fld_put_u64(&w->rec, EF_HOW, e->how);
    fld_put_u64(&w->rec, EF_FLAGS, e->flags);
    fld_put_i64(&w->rec, EF_GOAWAY, e->goaway_code);
    fld_put_u64(&w->rec, EF_BYTES_C2S, e->bytes_c2s);
    fld_put_u64(&w->rec, EF_BYTES_S2C, e->bytes_s2c);
    fld_put_u64(&w->rec, EF_GAP_BYTES, e->gap_bytes);
    fld_put_u64(&w->rec, EF_EXCHANGES, e->exchanges);
    fld_put_str(&w->rec, EF_REASON, e->reason);
    return tw_emit(w, H2R_REC_CONN_END);
}

/* A header list is one bytes field: repeated (varint len, name, varint len, value). */
static void put_hdrs(struct h2r_trace_writer *w, uint32_t field, const struct h2r_hdr *h, size_t n)
{
    if (n == 0)
        return;
    h2r_buf_reset(&w->sub);
    for (size_t i = 0; i < n; i++) {
        h2r_buf_put_varint(&w->sub, h[i].name_len);
        h2r_buf_append(&w->sub, h[i].name, h[i].name_len);
        h2r_buf_put_varint(&w->sub, h[i].value_len);
        h2r_buf_append(&w->sub, h[i].value, h[i].value_len);
    }
    if (w->sub.failed) {
        w->rec.failed = w->sub.failed;
        return;
    }
    fld_put_bytes(&w->rec, field, w->sub.p, w->sub.len);
}

int h2r_trace_write_exchange(struct h2r_trace_writer *w, const struct h2r_exchange *x)
{
    if (x->n_req_hdrs > H2R_TRACE_MAX_HEADERS || x->n_resp_hdrs > H2R_TRACE_MAX_HEADERS ||
        x->n_trailers > H2R_TRACE_MAX_HEADERS)
        return H2R_ERR_LIMIT;
    h2r_buf_reset(&w->rec);
    fld_put_u64(&w->rec, XF_ID, x->id);
    fld_put_u64(&w->rec, XF_CONN, x->conn_id);
    fld_put_u64(&w->rec, XF_STREAM, x->stream_id);
    fld_put_u64(&w->rec, XF_FLAGS, x->flags);
    put_hdrs(w, XF_REQ_HDRS, x->req_hdrs, x->n_req_hdrs);
    if (x->req_body_stored)
        fld_put_bytes(&w->rec, XF_REQ_BODY, x->req_body, x->req_body_stored);
    fld_put_u64(&w->rec, XF_REQ_BODY_LEN, x->req_body_len);
    put_hdrs(w, XF_RESP_HDRS, x->resp_hdrs, x->n_resp_hdrs);
    if (x->resp_body_stored)
        fld_put_bytes(&w->rec, XF_RESP_BODY, x->resp_body, x->resp_body_stored);
    fld_put_u64(&w->rec, XF_RESP_BODY_LEN, x->resp_body_len);
    put_hdrs(w, XF_TRAILERS, x->trailers, x->n_trailers);
    fld_put_i64(&w->rec, XF_STATUS, x->status);
    fld_put_i64(&w->rec, XF_GRPC_STATUS, x->grpc_status);
    fld_put_i64(&w->rec, XF_RST_CODE, x->rst_code);
    fld_put_u64(&w->rec, XF_RST_BY, x->rst_by);
    fld_put_i64(&w->rec, XF_GOAWAY, x->goaway_code);
    fld_put_i64(&w->rec, XF_T_REQ_FIRST, x->t_req_first_ns);
    fld_put_i64(&w->rec, XF_T_REQ_END, x->t_req_end_ns);
    fld_put_i64(&w->rec, XF_T_RESP_HDRS, x->t_resp_hdrs_ns);
    fld_put_i64(&w->rec, XF_T_RESP_END, x->t_resp_end_ns);
    fld_put_str(&w->rec, XF_ERROR, x->error);
    return tw_emit(w, H2R_REC_EXCHANGE);
}

int h2r_trace_write_summary(struct h2r_trace_writer *w, const struct h2r_capture_summary *s)
{
    h2r_buf_reset(&w->rec);
    fld_put_u64(&w->rec, SF_PACKETS, s->packets);
    fld_put_u64(&w->rec, SF_BYTES, s->bytes);
    fld_put_u64(&w->rec, SF_FLOWS, s->flows);
    fld_put_u64(&w->rec, SF_EXCHANGES, s->exchanges);
    fld_put_u64(&w->rec, SF_GAPS, s->gaps);
    fld_put_u64(&w->rec, SF_UNDECODABLE, s->undecodable_flows);
    fld_put_i64(&w->rec, SF_END_NS, s->end_ns);
    for (size_t i = 0; i < s->n_counters; i++)
        fld_put_counter(&w->rec, SF_COUNTER, s->counters[i].name, s->counters[i].value);
    return tw_emit(w, H2R_REC_SUMMARY);
}

/* The frame list is one bytes field: per frame (zigzag time delta from the previous
 * frame, length, dir + 2 * type), so a keep-alive costs about four bytes. */
int h2r_trace_write_ts_session(struct h2r_trace_writer *w, const struct h2r_ts_session *t)
{
    if (t->n_recs > H2R_TS_MAX_RECS)
        return H2R_ERR_LIMIT;
    h2r_buf_reset(&w->rec);
    fld_put_u64(&w->rec, TF_ID, t->id);
    fld_put_u64(&w->rec, TF_CONN, t->conn_id);
    fld_put_u64(&w->rec, TF_NODE, t->node);
    fld_put_u64(&w->rec, TF_CAPVER, t->capver);
    fld_put_u64(&w->rec, TF_FLAGS, t->flags);
    if (t->flags & H2R_TS_F_IDENTIFIED)
        fld_put_bytes(&w->rec, TF_MACHINE_KEY, t->machine_key, sizeof(t->machine_key));
    fld_put_i64(&w->rec, TF_STATUS, t->status);
    fld_put_u64(&w->rec, TF_HOW, t->how);
    fld_put_i64(&w->rec, TF_T_UPGRADE, t->t_upgrade_ns);
    fld_put_i64(&w->rec, TF_T_HANDSHAKE, t->t_handshake_ns);
    fld_put_i64(&w->rec, TF_T_END, t->t_end_ns);
    fld_put_u64(&w->rec, TF_FRAMES_C2S, t->frames_c2s);
    fld_put_u64(&w->rec, TF_FRAMES_S2C, t->frames_s2c);
    fld_put_u64(&w->rec, TF_BYTES_C2S, t->bytes_c2s);
    fld_put_u64(&w->rec, TF_BYTES_S2C, t->bytes_s2c);
    if (t->n_recs) {
        int64_t prev = 0;
        h2r_buf_reset(&w->sub);
        for (size_t i = 0; i < t->n_recs; i++) {
            const struct h2r_ts_rec *f = &t->recs[i];
            int64_t d = f->t_ns - prev;
            h2r_buf_put_varint(&w->sub, ((uint64_t)d << 1) ^ (uint64_t)(d >> 63));
            h2r_buf_put_varint(&w->sub, f->len);
            h2r_buf_put_varint(&w->sub, (uint64_t)(f->dir & 1u) | ((uint64_t)f->type << 1));
            prev = f->t_ns;
        }
        if (w->sub.failed)
            w->rec.failed = w->sub.failed;
        else
            fld_put_bytes(&w->rec, TF_RECS, w->sub.p, w->sub.len);
    }
    fld_put_u64(&w->rec, TF_RECS_DROPPED, t->recs_dropped);
    fld_put_str(&w->rec, TF_REASON, t->reason);
    return tw_emit(w, H2R_REC_TS_SESSION);
}

int h2r_trace_writer_flush(struct h2r_trace_writer *w)
{
    if (w->error)
        return w->error;
    int rc = recio_writer_flush(w->rw);
    if (rc) {
        w->error = rc;
        snprintf(w->errmsg, sizeof(w->errmsg), "%s", recio_writer_errmsg(w->rw));
    }
    return rc;
}

uint64_t h2r_trace_writer_bytes(const struct h2r_trace_writer *w)
{
    return recio_writer_bytes(w->rw);
}

const char *h2r_trace_writer_errmsg(const struct h2r_trace_writer *w)
{
    return w->errmsg;
}

int h2r_trace_writer_close(struct h2r_trace_writer *w)
{
    if (!w)
        return 0;
    int rc = recio_writer_close(w->rw);
    if (rc && !w->error)
        w->error = rc;
    rc = w->error;
    h2r_buf_free(&w->rec);
    h2r_buf_free(&w->sub);
    free(w);
    return rc;
}

/* ------------------------------------------------------------------ reader */

struct hdr_vec {
    struct h2r_hdr *v;
    size_t n, cap;
};

struct h2r_trace_reader {
    struct recio_reader *rr;
    struct h2r_trace_header hdr;
    struct h2r_buf hdr_strings; /* strings of the header record (kept) */
    struct h2r_buf strings;     /* strings of the current record */
    struct hdr_vec req, resp, trl;
    struct h2r_counter *counters;
    size_t n_counters, cap_counters;
    struct h2r_ts_rec *ts_recs;
    size_t cap_ts_recs;
    uint64_t skipped;
    char errmsg[384];
};

/*
 * Copies bytes into a NUL-terminated string in the arena. Returns an offset
 * (pointers are fixed up after the record is decoded, since the arena may move).
 */
static size_t arena_str(struct h2r_buf *a, const uint8_t *p, size_t n)
{
    size_t off = a->len;
    h2r_buf_append(a, p, n);
    h2r_buf_append(a, "", 1);
    return off;
}

#define NO_STR ((size_t)-1)
#define FIX_STR(arena, off)                                                                        \
    ((off) == NO_STR || (arena)->failed ? NULL : (const char *)(arena)->p + (off))

static int reader_error(struct h2r_trace_reader *r, int err, const char *what, uint32_t field)
{
    snprintf(r->errmsg, sizeof(r->errmsg), "%s: record %llu, field %u (offset ~%llu)", what,
             (unsigned long long)recio_reader_records(r->rr), field,
             (unsigned long long)recio_reader_offset(r->rr));
    return err;
}

static int decode_header(struct h2r_trace_reader *r, const uint8_t *p, size_t n)
{
    struct fld_cursor c = {p, n};
    struct fld_value v;
    size_t tool = NO_STR, src = NO_STR, opt = NO_STR;
    struct h2r_buf *a = &r->hdr_strings;
    int rc;
    r->hdr.linktype = -1;
    while ((rc = fld_next(&c, &v)) == 1) {
        switch (v.field) {
        case HF_VERSION:
            r->hdr.format_version = (uint32_t)v.u;
            break;
        case HF_TOOL:
            tool = arena_str(a, v.data, v.n);
            break;
        case HF_SOURCE:
            src = arena_str(a, v.data, v.n);
            break;
        case HF_START_NS:
            r->hdr.start_ns = fld_zigzag_decode(v.u);
            break;
        case HF_LINKTYPE:
            r->hdr.linktype = (int32_t)fld_zigzag_decode(v.u);
            break;
        case HF_SNAPLEN:
            r->hdr.snaplen = (uint32_t)v.u;
            break;
        case HF_OPTIONS:
            opt = arena_str(a, v.data, v.n);
            break;
        default:
            break;
        }
    }
    if (rc < 0)
        return reader_error(r, H2R_ERR_FORMAT, "malformed trace header", v.field);
    if (a->failed)
        return H2R_ERR_NOMEM;
    r->hdr.tool_version = FIX_STR(a, tool);
    r->hdr.source = FIX_STR(a, src);
    r->hdr.options = FIX_STR(a, opt);
    return 0;
}

static int decode_hdrs(struct h2r_trace_reader *r, struct hdr_vec *vec, const uint8_t *p,
                       size_t n)
{
    struct fld_cursor c = {p, n};
    while (c.len > 0) {
        uint64_t nl, vl;
        if (fld_get_varint(&c, &nl) || nl > c.len)
            return H2R_ERR_FORMAT;
        const uint8_t *name = c.p;
        c.p += nl;
        c.len -= (size_t)nl;
        if (fld_get_varint(&c, &vl) || vl > c.len)
            return H2R_ERR_FORMAT;
        const uint8_t *value = c.p;
        c.p += vl;
        c.len -= (size_t)vl;
        if (vec->n >= H2R_TRACE_MAX_HEADERS)
            return H2R_ERR_LIMIT;
        if (vec->n == vec->cap) {
            size_t ncap = vec->cap ? vec->cap * 2 : 16;
            struct h2r_hdr *nv = realloc(vec->v, ncap * sizeof(*nv));
            if (!nv)
                return H2R_ERR_NOMEM;
            vec->v = nv;
            vec->cap = ncap;
        }
        /* header bytes point into the record payload, which lives until the next call */
        vec->v[vec->n].name = name;
        vec->v[vec->n].name_len = (uint32_t)nl;
        vec->v[vec->n].value = value;
        vec->v[vec->n].value_len = (uint32_t)vl;
        vec->n++;
    }
    (void)r;
    return 0;
}

static int decode_conn(struct h2r_trace_reader *r, const uint8_t *p, size_t n, struct h2r_conn *o)
{
    struct fld_cursor c = {p, n};
    struct fld_value v;
    size_t cl = NO_STR, sv = NO_STR, alpn = NO_STR;
    struct h2r_buf *a = &r->strings;
    int rc;
    memset(o, 0, sizeof(*o));
    while ((rc = fld_next(&c, &v)) == 1) {
        switch (v.field) {
        case CF_ID: o->id = v.u; break;
        case CF_CLIENT: cl = arena_str(a, v.data, v.n); break;
        case CF_SERVER: sv = arena_str(a, v.data, v.n); break;
        case CF_TRANSPORT: o->transport = (uint32_t)v.u; break;
        case CF_FLAGS: o->flags = (uint32_t)v.u; break;
        case CF_T_OPEN: o->t_open_ns = fld_zigzag_decode(v.u); break;
        case CF_ALPN: alpn = arena_str(a, v.data, v.n); break;
        default: break;
        }
    }
    if (rc < 0)
        return reader_error(r, H2R_ERR_FORMAT, "malformed connection record", v.field);
    if (a->failed)
        return H2R_ERR_NOMEM;
    o->client = FIX_STR(a, cl);
    o->server = FIX_STR(a, sv);
    o->alpn = FIX_STR(a, alpn);
    if (!o->client)
        o->client = "";
    if (!o->server)
        o->server = "";
    return 0;
}

static int decode_conn_end(struct h2r_trace_reader *r, const uint8_t *p, size_t n,
                           struct h2r_conn_end *o)
{
    struct fld_cursor c = {p, n};
    struct fld_value v;
    size_t reason = NO_STR;
    struct h2r_buf *a = &r->strings;
    int rc;
    memset(o, 0, sizeof(*o));
    o->goaway_code = -1;
    while ((rc = fld_next(&c, &v)) == 1) {
        switch (v.field) {
        case EF_ID: o->id = v.u; break;
        case EF_T_CLOSE: o->t_close_ns = fld_zigzag_decode(v.u); break;
        case EF_HOW: o->how = (uint32_t)v.u; break;
        case EF_FLAGS: o->flags = (uint32_t)v.u; break;
        case EF_GOAWAY: o->goaway_code = fld_zigzag_decode(v.u); break;
        case EF_BYTES_C2S: o->bytes_c2s = v.u; break;
        case EF_BYTES_S2C: o->bytes_s2c = v.u; break;
        case EF_GAP_BYTES: o->gap_bytes = v.u; break;
        case EF_EXCHANGES: o->exchanges = v.u; break;
        case EF_REASON: reason = arena_str(a, v.data, v.n); break;
        default: break;
        }
    }
    if (rc < 0)
        return reader_error(r, H2R_ERR_FORMAT, "malformed connection-end record", v.field);
    if (a->failed)
        return H2R_ERR_NOMEM;
    o->reason = FIX_STR(a, reason);
    return 0;
}

static int decode_exchange(struct h2r_trace_reader *r, const uint8_t *p, size_t n,
                           struct h2r_exchange *o)
{
    struct fld_cursor c = {p, n};
    struct fld_value v;
    size_t err = NO_STR;
    struct h2r_buf *a = &r->strings;
    int rc;
    memset(o, 0, sizeof(*o));
    o->status = -1;
    o->grpc_status = -1;
    o->rst_code = -1;
    o->goaway_code = -1;
    r->req.n = r->resp.n = r->trl.n = 0;
    while ((rc = fld_next(&c, &v)) == 1) {
        int hrc = 0;
        switch (v.field) {
        case XF_ID: o->id = v.u; break;
        case XF_CONN: o->conn_id = v.u; break;
        case XF_STREAM: o->stream_id = (uint32_t)v.u; break;
        case XF_FLAGS: o->flags = (uint32_t)v.u; break;
        case XF_REQ_HDRS: hrc = decode_hdrs(r, &r->req, v.data, v.n); break;
        case XF_REQ_BODY: o->req_body = v.data; o->req_body_stored = v.n; break;
        case XF_REQ_BODY_LEN: o->req_body_len = v.u; break;
        case XF_RESP_HDRS: hrc = decode_hdrs(r, &r->resp, v.data, v.n); break;
        case XF_RESP_BODY: o->resp_body = v.data; o->resp_body_stored = v.n; break;
        case XF_RESP_BODY_LEN: o->resp_body_len = v.u; break;
        case XF_TRAILERS: hrc = decode_hdrs(r, &r->trl, v.data, v.n); break;
        case XF_STATUS: o->status = (int32_t)fld_zigzag_decode(v.u); break;
        case XF_GRPC_STATUS: o->grpc_status = (int32_t)fld_zigzag_decode(v.u); break;
        case XF_RST_CODE: o->rst_code = fld_zigzag_decode(v.u); break;
        case XF_RST_BY: o->rst_by = (uint32_t)v.u; break;
        case XF_GOAWAY: o->goaway_code = fld_zigzag_decode(v.u); break;
        case XF_T_REQ_FIRST: o->t_req_first_ns = fld_zigzag_decode(v.u); break;
        case XF_T_REQ_END: o->t_req_end_ns = fld_zigzag_decode(v.u); break;
        case XF_T_RESP_HDRS: o->t_resp_hdrs_ns = fld_zigzag_decode(v.u); break;
        case XF_T_RESP_END: o->t_resp_end_ns = fld_zigzag_decode(v.u); break;
        case XF_ERROR: err = arena_str(a, v.data, v.n); break;
        default: break;
        }
        if (hrc)
            return reader_error(r, hrc, "malformed header list in exchange", v.field);
    }
    if (rc < 0)
        return reader_error(r, H2R_ERR_FORMAT, "malformed exchange record", v.field);
    if (a->failed)
        return H2R_ERR_NOMEM;
    o->req_hdrs = r->req.v;
    o->n_req_hdrs = r->req.n;
    o->resp_hdrs = r->resp.v;
    o->n_resp_hdrs = r->resp.n;
    o->trailers = r->trl.v;
    o->n_trailers = r->trl.n;
    o->error = FIX_STR(a, err);
    return 0;
}

static int decode_summary(struct h2r_trace_reader *r, const uint8_t *p, size_t n,
                          struct h2r_capture_summary *o)
{
    struct fld_cursor c = {p, n};
    struct fld_value v;
    struct h2r_buf *a = &r->strings;
    int rc;
    memset(o, 0, sizeof(*o));
    r->n_counters = 0;
    while ((rc = fld_next(&c, &v)) == 1) {
        switch (v.field) {
        case SF_PACKETS: o->packets = v.u; break;
        case SF_BYTES: o->bytes = v.u; break;
        case SF_FLOWS: o->flows = v.u; break;
        case SF_EXCHANGES: o->exchanges = v.u; break;
        case SF_GAPS: o->gaps = v.u; break;
        case SF_UNDECODABLE: o->undecodable_flows = v.u; break;
        case SF_END_NS: o->end_ns = fld_zigzag_decode(v.u); break;
        case SF_COUNTER: {
            struct fld_value kv;
            uint64_t value;
            if (fld_get_counter(&v, &kv, &value) != 0)
                return reader_error(r, H2R_ERR_FORMAT, "malformed counter", v.field);
            size_t name = arena_str(a, kv.data, kv.n);
            if (r->n_counters >= 4096)
                return reader_error(r, H2R_ERR_LIMIT, "too many counters", v.field);
            if (r->n_counters == r->cap_counters) {
                size_t ncap = r->cap_counters ? r->cap_counters * 2 : 32;
                struct h2r_counter *nc = realloc(r->counters, ncap * sizeof(*nc));
                if (!nc)
                    return H2R_ERR_NOMEM;
                r->counters = nc;
                r->cap_counters = ncap;
            }
            /* stash the arena offset in the pointer slot; fixed up below */
            r->counters[r->n_counters].name = (const char *)(uintptr_t)name;
            r->counters[r->n_counters].value = value;
            r->n_counters++;
            break;
        }
        default:
            break;
        }
    }
    if (rc < 0)
        return reader_error(r, H2R_ERR_FORMAT, "malformed summary record", v.field);
    if (a->failed)
        return H2R_ERR_NOMEM;
    for (size_t i = 0; i < r->n_counters; i++)
        r->counters[i].name = (const char *)a->p + (uintptr_t)r->counters[i].name;
    o->counters = r->counters;
    o->n_counters = r->n_counters;
    return 0;
}

static int decode_ts_recs(struct h2r_trace_reader *r, const uint8_t *p, size_t n,
                          struct h2r_ts_session *o)
{
    struct fld_cursor c = {p, n};
    int64_t t = 0;
    size_t k = 0;
    while (c.len > 0) {
        uint64_t dz, len, dt;
        if (fld_get_varint(&c, &dz) || fld_get_varint(&c, &len) || fld_get_varint(&c, &dt))
            return H2R_ERR_FORMAT;
        if (k >= H2R_TS_MAX_RECS)
            return H2R_ERR_LIMIT;
        if (len > UINT32_MAX || (dt >> 1) > UINT8_MAX)
            return H2R_ERR_FORMAT;
        if (k == r->cap_ts_recs) {
            size_t ncap = r->cap_ts_recs ? r->cap_ts_recs * 2 : 64;
            struct h2r_ts_rec *nv = realloc(r->ts_recs, ncap * sizeof(*nv));
            if (!nv)
                return H2R_ERR_NOMEM;
            r->ts_recs = nv;
            r->cap_ts_recs = ncap;
        }
        /* unsigned arithmetic: a hostile delta wraps instead of overflowing */
        t = (int64_t)((uint64_t)t + (uint64_t)fld_zigzag_decode(dz));
        r->ts_recs[k].t_ns = t;
        r->ts_recs[k].len = (uint32_t)len;
        r->ts_recs[k].dir = (uint8_t)(dt & 1u);
        r->ts_recs[k].type = (uint8_t)(dt >> 1);
        k++;
    }
    o->recs = r->ts_recs;
    o->n_recs = k;
    return 0;
}

static int decode_ts_session(struct h2r_trace_reader *r, const uint8_t *p, size_t n,
                             struct h2r_ts_session *o)
{
    struct fld_cursor c = {p, n};
    struct fld_value v;
    size_t reason = NO_STR;
    struct h2r_buf *a = &r->strings;
    int rc;
    memset(o, 0, sizeof(*o));
    o->status = -1;
    while ((rc = fld_next(&c, &v)) == 1) {
        int drc = 0;
        switch (v.field) {
        case TF_ID: o->id = v.u; break;
        case TF_CONN: o->conn_id = v.u; break;
        case TF_NODE: o->node = v.u; break;
        case TF_CAPVER: o->capver = (uint32_t)v.u; break;
        case TF_FLAGS: o->flags = (uint32_t)v.u; break;
        case TF_MACHINE_KEY:
            if (v.wire_type != FLD_BYTES || v.n != sizeof(o->machine_key))
                drc = H2R_ERR_FORMAT;
            else
                memcpy(o->machine_key, v.data, v.n);
            break;
        case TF_STATUS: o->status = (int32_t)fld_zigzag_decode(v.u); break;
        case TF_HOW: o->how = (uint32_t)v.u; break;
        case TF_T_UPGRADE: o->t_upgrade_ns = fld_zigzag_decode(v.u); break;
        case TF_T_HANDSHAKE: o->t_handshake_ns = fld_zigzag_decode(v.u); break;
        case TF_T_END: o->t_end_ns = fld_zigzag_decode(v.u); break;
        case TF_FRAMES_C2S: o->frames_c2s = v.u; break;
        case TF_FRAMES_S2C: o->frames_s2c = v.u; break;
        case TF_BYTES_C2S: o->bytes_c2s = v.u; break;
        case TF_BYTES_S2C: o->bytes_s2c = v.u; break;
        case TF_RECS:
            if (v.wire_type != FLD_BYTES)
                drc = H2R_ERR_FORMAT;
            else
                drc = decode_ts_recs(r, v.data, v.n, o);
            break;
        case TF_RECS_DROPPED: o->recs_dropped = v.u; break;
        case TF_REASON: reason = arena_str(a, v.data, v.n); break;
        default: break;
        }
        if (drc)
            return reader_error(r, drc, "malformed ts_session record", v.field);
    }
    if (rc < 0)
        return reader_error(r, H2R_ERR_FORMAT, "malformed ts_session record", v.field);
    if ((o->flags & H2R_TS_F_IDENTIFIED) && o->node == 0)
        return reader_error(r, H2R_ERR_FORMAT, "identified ts_session without a node",
                            TF_NODE);
    /* Capture times are ordered (upgrade <= handshake <= end): a reader that subtracts
     * them (replay plans offsets and holds) must not meet a crafted int64 pair. */
    if (o->t_upgrade_ns < 0)
        return reader_error(r, H2R_ERR_FORMAT, "ts_session t_upgrade_ns is negative",
                            TF_T_UPGRADE);
    if (o->t_end_ns != 0 && o->t_end_ns < o->t_upgrade_ns)
        return reader_error(r, H2R_ERR_FORMAT, "ts_session t_end_ns is before t_upgrade_ns",
                            TF_T_END);
    if (o->t_handshake_ns != 0 &&
        (o->t_handshake_ns < o->t_upgrade_ns || (o->t_end_ns && o->t_handshake_ns > o->t_end_ns)))
        return reader_error(r, H2R_ERR_FORMAT,
                            "ts_session t_handshake_ns is outside t_upgrade_ns..t_end_ns",
                            TF_T_HANDSHAKE);
    if (a->failed)
        return H2R_ERR_NOMEM;
    o->reason = FIX_STR(a, reason);
    return 0;
}

static int reader_start(struct h2r_trace_reader *r, char *errbuf, size_t errlen)
{
    uint32_t kind;
    const uint8_t *p;
    size_t n;
    h2r_buf_init(&r->hdr_strings, 1u << 20);
    h2r_buf_init(&r->strings, H2R_TRACE_MAX_RECORD + 4096);
    int rc = recio_next(r->rr, &kind, &p, &n);
    if (rc < 0)
        return h2r_seterr(errbuf, errlen, rc, "%s", recio_reader_errmsg(r->rr));
    if (rc == 0 || kind != REC_HEADER)
        return h2r_seterr(errbuf, errlen, H2R_ERR_FORMAT, "trace has no header record");
    rc = decode_header(r, p, n);
    if (rc)
        return h2r_seterr(errbuf, errlen, rc, "%s", r->errmsg);
    return 0;
}

int h2r_trace_reader_open(struct h2r_trace_reader **out, const char *path, char *errbuf,
                          size_t errlen)
{
    struct h2r_trace_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    int rc = recio_reader_open(&r->rr, path, trace_magic, H2R_TRACE_FORMAT_VERSION, errbuf,
                               errlen);
    if (!rc)
        rc = reader_start(r, errbuf, errlen);
    if (rc) {
        h2r_trace_reader_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int h2r_trace_reader_open_mem(struct h2r_trace_reader **out, const void *buf, size_t len,
                              char *errbuf, size_t errlen)
{
    struct h2r_trace_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    int rc = recio_reader_open_mem(&r->rr, buf, len, trace_magic, H2R_TRACE_FORMAT_VERSION,
                                   errbuf, errlen);
    if (!rc)
        rc = reader_start(r, errbuf, errlen);
    if (rc) {
        h2r_trace_reader_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

const struct h2r_trace_header *h2r_trace_reader_header(const struct h2r_trace_reader *r)
{
    return &r->hdr;
}

int h2r_trace_reader_next(struct h2r_trace_reader *r, struct h2r_trace_record *rec)
{
    for (;;) {
        uint32_t kind;
        const uint8_t *p;
        size_t n;
        int rc = recio_next(r->rr, &kind, &p, &n);
        if (rc < 0) {
            snprintf(r->errmsg, sizeof(r->errmsg), "%s", recio_reader_errmsg(r->rr));
            return rc;
        }
        if (rc == 0)
            return 0;
        h2r_buf_reset(&r->strings);
        rec->kind = (int)kind;
        switch (kind) {
        case H2R_REC_CONN:
            rc = decode_conn(r, p, n, &rec->u.conn);
            break;
        case H2R_REC_CONN_END:
            rc = decode_conn_end(r, p, n, &rec->u.end);
            break;
        case H2R_REC_EXCHANGE:
            rc = decode_exchange(r, p, n, &rec->u.exch);
            break;
        case H2R_REC_SUMMARY:
            rc = decode_summary(r, p, n, &rec->u.summary);
            break;
        case H2R_REC_TS_SESSION:
            rc = decode_ts_session(r, p, n, &rec->u.ts);
            break;
        default:
            r->skipped++; /* a newer writer's record kind: skip it, counted */
            continue;
        }
        if (rc == H2R_ERR_NOMEM)
            snprintf(r->errmsg, sizeof(r->errmsg), "out of memory");
        return rc ? rc : 1;
    }
}

uint64_t h2r_trace_reader_skipped(const struct h2r_trace_reader *r)
{
    return r->skipped;
}

const char *h2r_trace_reader_errmsg(const struct h2r_trace_reader *r)
{
    return r->errmsg;
}

void h2r_trace_reader_free(struct h2r_trace_reader *r)
{
    if (!r)
        return;
    recio_reader_free(r->rr);
    h2r_buf_free(&r->hdr_strings);
    h2r_buf_free(&r->strings);
    free(r->req.v);
    free(r->resp.v);
    free(r->trl.v);
    free(r->counters);
    free(r->ts_recs);
    free(r);
}

const char *h2r_transport_name(uint32_t transport)
{
    switch (transport) {
    case H2R_TRANSPORT_H2C_PRIOR:
        return "h2c-prior-knowledge";
    case H2R_TRANSPORT_H2C_UPGRADE:
        return "h2c-upgrade";
    case H2R_TRANSPORT_TLS:
        return "tls";
    case H2R_TRANSPORT_TS2021:
        return "ts2021";
    default:
        return "unknown";
    }
}

const char *h2r_conn_how_name(uint32_t how)
{
    switch (how) {
    case H2R_CONN_END_FIN:
        return "fin";
    case H2R_CONN_END_RST:
        return "rst";
    case H2R_CONN_END_CAPTURE_END:
        return "capture_end";
    case H2R_CONN_END_GOAWAY:
        return "goaway";
    case H2R_CONN_END_UNDECODABLE:
        return "undecodable";
    default:
        return "unknown";
    }
}

const char *h2r_ts_how_name(uint32_t how)
{
    switch (how) {
    case H2R_TS_END_FIN:
        return "fin";
    case H2R_TS_END_RST:
        return "rst";
    case H2R_TS_END_CAPTURE_END:
        return "capture_end";
    case H2R_TS_END_REFUSED:
        return "refused";
    case H2R_TS_END_REJECTED:
        return "rejected";
    case H2R_TS_END_UNDECODABLE:
        return "undecodable";
    default:
        return "unknown";
    }
}

const struct h2r_hdr *h2r_hdr_find(const struct h2r_hdr *hdrs, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (hdrs[i].name_len == len && memcmp(hdrs[i].name, name, len) == 0)
            return &hdrs[i];
    return NULL;
}
