/*
 * Run file codec: the record schemas of docs/run-format.md on top of the
 * recio container (the same container as the trace, another magic). Results
 * are the bulk of a run file, so their encoding skips absent fields and the
 * reader reuses one string arena per record.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/run.h"
#include "h2replay/trace.h"
#include "h2replay/fields.h"
#include "recio.h"

static const char run_magic[RECIO_MAGIC_LEN] = {'H', '2', 'R', 'R', 'U', 'N', 'F', '1'};

#define RUN_REC_META 1u

enum {
    MF_TOOL = 1,
    MF_TRACE_PATH,
    MF_TRACE_SHA,
    MF_HOST,
    MF_COMMAND,
    MF_SETTINGS,
    MF_CREATED,
    MF_SHARD_INDEX,
    MF_SHARD_COUNT,
    MF_START_AT
};
enum {
    SF_ID = 1,
    SF_NAME,
    SF_URL,
    SF_SPEED_MILLI,
    SF_T0_WALL,
    SF_TIMEOUT,
    SF_LABEL,
    SF_CLOCK_OFFSET,
    SF_CLOCK_MAX_ERROR
};
enum {
    RF_SECTION = 1,
    RF_EXCHANGE,
    RF_TRACE_CONN,
    RF_CONN_INDEX,
    RF_STREAM,
    RF_METHOD,
    RF_PATH,
    RF_AUTHORITY,
    RF_T_INTENDED,
    RF_T_SENT,
    RF_T_FIRST_BYTE,
    RF_T_DONE,
    RF_STATUS,
    RF_GRPC_STATUS,
    RF_TRACE_STATUS,
    RF_TRACE_GRPC_STATUS,
    RF_ERR_CLASS,
    RF_ERR_DETAIL,
    RF_REQ_BYTES,
    RF_RESP_BYTES,
    RF_FLAGS,
    RF_T_OPEN,        /* 22: TS2021 fields, see docs/run-format.md */
    RF_T_NETMAP,
    RF_T_LAST_NETMAP,
    RF_T_END,
    RF_NETMAPS,
    RF_KEEPALIVES,
    RF_PEERS
};
enum {
    PF_SECTION = 1,
    PF_T,
    PF_INTERVAL,
    PF_IN_FLIGHT,
    PF_OPEN_CONNS,
    PF_DUE,
    PF_SENT,
    PF_DONE,
    PF_ERRORS,
    PF_MAX_LATE
};
enum { DF_SECTION = 1, DF_T, DF_KIND, DF_VALUE };
enum {
    NF_SECTION = 1,
    NF_T_END,
    NF_EXCHANGES,
    NF_ERRORS,
    NF_INTERRUPTED,
    NF_CPU_USER,
    NF_CPU_SYS,
    NF_MAX_RSS,
    NF_LOOP_THREADS,
    NF_MAX_LATE,
    NF_LATE_P99,
    NF_PEAK_FDS,
    NF_PEAK_CONNS,
    NF_FD_LIMIT,
    NF_EMFILE
};
enum {
    AF_SECTION = 1,
    AF_EXCHANGE,
    AF_TRACE_CONN,
    AF_T,
    AF_KIND,
    AF_ID,
    AF_NAME,
    AF_KEY,
    AF_PREFIX,
    AF_NODE_KEY,
    AF_MACHINE_KEY,
    AF_HOSTNAME,
    AF_SOURCE
};
#define AF_FIRST_STR AF_KIND
#define AF_LAST_STR AF_HOSTNAME
enum {
    VF_SECTION = 1,
    VF_T,
    VF_DB_KIND,
    VF_ERROR,
    VF_ACKS,
    VF_ACKS_DROPPED,
    VF_IGNORED,
    VF_KIND,
    VF_BASELINE_FAILED
};
enum {
    VKF_NAME = 1,
    VKF_ACKED,
    VKF_PRESENT,
    VKF_LOST,
    VKF_UNACKED,
    VKF_LOST_EX,
    VKF_UNACKED_EX,
    VKF_EXISTING_BEFORE,
    VKF_BEFORE_MAX_ID
};

static const char *const class_names[H2R_EC_MAX_] = {
    [H2R_EC_NONE] = "ok",
    [H2R_EC_REFUSED] = "refused",
    [H2R_EC_CONNECT_TIMEOUT] = "connect_timeout",
    [H2R_EC_TLS] = "tls",
    [H2R_EC_STREAM_RESET] = "stream_reset",
    [H2R_EC_GOAWAY] = "goaway",
    [H2R_EC_DEADLINE] = "deadline_exceeded",
    [H2R_EC_HTTP_STATUS] = "http_status",
    [H2R_EC_GRPC_STATUS] = "grpc_status",
    [H2R_EC_CONN_CLOSED] = "conn_closed",
    [H2R_EC_CANCELLED] = "cancelled",
    [H2R_EC_PROTOCOL] = "protocol",
    [H2R_EC_IO] = "io",
    [H2R_EC_SKIPPED] = "skipped",
    [H2R_EC_TS_HANDSHAKE] = "handshake_rejected",
    [H2R_EC_TS_REGISTER] = "register_error",
    [H2R_EC_TS_AUTH] = "auth_key_refused",
    [H2R_EC_TS_NO_NETMAP] = "no_netmap",
    [H2R_EC_TS_STALLED] = "stream_stalled",
    [H2R_EC_TS_CLOSED] = "closed_by_server",
};

const char *h2r_err_class_name(uint32_t cls)
{
    if (cls < H2R_EC_MAX_ && class_names[cls])
        return class_names[cls];
    return "unknown";
}

int h2r_err_class_from_name(const char *name)
{
    for (int i = 0; i < H2R_EC_MAX_; i++)
        if (class_names[i] && strcmp(class_names[i], name) == 0)
            return i;
    return -1;
}

/* ------------------------------------------------------------------ writer */

struct h2r_run_writer {
    struct recio_writer *rw;
    struct h2r_buf rec;
    int error;
    char errmsg[256];
};

static int rw_emit(struct h2r_run_writer *w, uint32_t kind)
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

int h2r_run_writer_open(struct h2r_run_writer **out, const char *path,
                        const struct h2r_run_meta *m, char *errbuf, size_t errlen)
{
    struct h2r_run_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    /* small frames: a replay killed by the OS still leaves most results readable */
    int rc = recio_writer_open(&w->rw, path, run_magic, H2R_RUN_FORMAT_VERSION, 0,
                               1024u * 1024u, errbuf, errlen);
    if (rc) {
        free(w);
        return rc;
    }
    h2r_buf_init(&w->rec, H2R_TRACE_MAX_RECORD);
    fld_put_str(&w->rec, MF_TOOL, m->tool_version);
    fld_put_str(&w->rec, MF_TRACE_PATH, m->trace_path);
    fld_put_str(&w->rec, MF_TRACE_SHA, m->trace_sha256);
    fld_put_str(&w->rec, MF_HOST, m->host);
    fld_put_str(&w->rec, MF_COMMAND, m->command);
    fld_put_str(&w->rec, MF_SETTINGS, m->settings);
    fld_put_i64(&w->rec, MF_CREATED, m->created_ns);
    fld_put_u64(&w->rec, MF_SHARD_INDEX, m->shard_index);
    fld_put_u64(&w->rec, MF_SHARD_COUNT, m->shard_count ? m->shard_count : 1);
    fld_put_i64(&w->rec, MF_START_AT, m->start_at_ns);
    rc = rw_emit(w, RUN_REC_META);
    if (rc) {
        h2r_seterr(errbuf, errlen, rc, "%s", w->errmsg);
        h2r_run_writer_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

int h2r_run_write_section(struct h2r_run_writer *w, const struct h2r_run_section *s)
{
    h2r_buf_reset(&w->rec);
    fld_put_u64(&w->rec, SF_ID, s->id);
    fld_put_str(&w->rec, SF_NAME, s->name);
    fld_put_str(&w->rec, SF_URL, s->url);
    /* speed as an integer in thousandths keeps the format free of floats */
    fld_put_i64(&w->rec, SF_SPEED_MILLI, (int64_t)(s->speed * 1000.0 + 0.5));
    fld_put_i64(&w->rec, SF_T0_WALL, s->t0_wall_ns);
    fld_put_i64(&w->rec, SF_TIMEOUT, s->timeout_ns);
    fld_put_str(&w->rec, SF_LABEL, s->label);
    fld_put_i64(&w->rec, SF_CLOCK_OFFSET, s->clock_offset_ns);
    fld_put_i64(&w->rec, SF_CLOCK_MAX_ERROR, s->clock_max_error_ns);
    return rw_emit(w, H2R_RUN_REC_SECTION);
}

/* Optional fields are written only when they differ from their reader default. */
static void put_i64_if(struct h2r_buf *b, uint32_t f, int64_t v, int64_t dflt)
{
    if (v != dflt)
        fld_put_i64(b, f, v);
}

int h2r_run_write_result(struct h2r_run_writer *w, const struct h2r_run_result *r)
{
    struct h2r_buf *b = &w->rec;
    h2r_buf_reset(b);
    fld_put_u64(b, RF_SECTION, r->section);
    fld_put_u64(b, RF_EXCHANGE, r->exchange_id);
    fld_put_u64(b, RF_TRACE_CONN, r->trace_conn);
    fld_put_u64(b, RF_CONN_INDEX, r->conn_index);
    fld_put_u64(b, RF_STREAM, r->stream_id);
    fld_put_str(b, RF_METHOD, r->method);
    fld_put_str(b, RF_PATH, r->path);
    fld_put_str(b, RF_AUTHORITY, r->authority);
    fld_put_i64(b, RF_T_INTENDED, r->t_intended_ns);
    put_i64_if(b, RF_T_SENT, r->t_sent_ns, 0);
    put_i64_if(b, RF_T_FIRST_BYTE, r->t_first_byte_ns, 0);
    fld_put_i64(b, RF_T_DONE, r->t_done_ns);
    put_i64_if(b, RF_STATUS, r->status, -1);
    put_i64_if(b, RF_GRPC_STATUS, r->grpc_status, -1);
    put_i64_if(b, RF_TRACE_STATUS, r->trace_status, -1);
    put_i64_if(b, RF_TRACE_GRPC_STATUS, r->trace_grpc_status, -1);
    if (r->err_class)
        fld_put_u64(b, RF_ERR_CLASS, r->err_class);
    fld_put_str(b, RF_ERR_DETAIL, r->err_detail);
    if (r->req_bytes)
        fld_put_u64(b, RF_REQ_BYTES, r->req_bytes);
    if (r->resp_bytes)
        fld_put_u64(b, RF_RESP_BYTES, r->resp_bytes);
    if (r->flags)
        fld_put_u64(b, RF_FLAGS, r->flags);
    if (r->flags & H2R_RES_F_TS) {
        put_i64_if(b, RF_T_OPEN, r->t_open_ns, 0);
        put_i64_if(b, RF_T_NETMAP, r->t_netmap_ns, 0);
        put_i64_if(b, RF_T_LAST_NETMAP, r->t_last_netmap_ns, 0);
        put_i64_if(b, RF_T_END, r->t_end_ns, 0);
        fld_put_u64(b, RF_NETMAPS, r->netmaps);
        fld_put_u64(b, RF_KEEPALIVES, r->keepalives);
        fld_put_u64(b, RF_PEERS, r->peers);
    }
    return rw_emit(w, H2R_RUN_REC_RESULT);
}

int h2r_run_write_sample(struct h2r_run_writer *w, const struct h2r_run_sample *s)
{
    struct h2r_buf *b = &w->rec;
    h2r_buf_reset(b);
    fld_put_u64(b, PF_SECTION, s->section);
    fld_put_i64(b, PF_T, s->t_ns);
    fld_put_i64(b, PF_INTERVAL, s->interval_ns);
    fld_put_u64(b, PF_IN_FLIGHT, s->in_flight);
    fld_put_u64(b, PF_OPEN_CONNS, s->open_conns);
    fld_put_u64(b, PF_DUE, s->due);
    fld_put_u64(b, PF_SENT, s->sent);
    fld_put_u64(b, PF_DONE, s->done);
    fld_put_u64(b, PF_ERRORS, s->errors);
    fld_put_i64(b, PF_MAX_LATE, s->max_late_ns);
    return rw_emit(w, H2R_RUN_REC_SAMPLE);
}

int h2r_run_write_section_end(struct h2r_run_writer *w, const struct h2r_run_section_end *e)
{
    struct h2r_buf *b = &w->rec;
    h2r_buf_reset(b);
    fld_put_u64(b, NF_SECTION, e->section);
    fld_put_i64(b, NF_T_END, e->t_end_ns);
    fld_put_u64(b, NF_EXCHANGES, e->exchanges);
    fld_put_u64(b, NF_ERRORS, e->errors);
    fld_put_u64(b, NF_INTERRUPTED, e->interrupted ? 1 : 0);
    fld_put_i64(b, NF_CPU_USER, e->cpu_user_ns);
    fld_put_i64(b, NF_CPU_SYS, e->cpu_sys_ns);
    fld_put_u64(b, NF_MAX_RSS, e->max_rss_kb);
    /* engine resources: absent = not measured */
    if (e->loop_threads)
        fld_put_u64(b, NF_LOOP_THREADS, e->loop_threads);
    put_i64_if(b, NF_MAX_LATE, e->max_late_ns, 0);
    put_i64_if(b, NF_LATE_P99, e->late_p99_ns, 0);
    if (e->peak_fds)
        fld_put_u64(b, NF_PEAK_FDS, e->peak_fds);
    if (e->peak_conns)
        fld_put_u64(b, NF_PEAK_CONNS, e->peak_conns);
    if (e->fd_limit)
        fld_put_u64(b, NF_FD_LIMIT, e->fd_limit);
    if (e->emfile_errors)
        fld_put_u64(b, NF_EMFILE, e->emfile_errors);
    int rc = rw_emit(w, H2R_RUN_REC_SECTION_END);
    /* a finished section is durable even if a later one dies */
    if (!rc)
        rc = h2r_run_writer_flush(w);
    return rc;
}

int h2r_run_write_db_sample(struct h2r_run_writer *w, const struct h2r_run_db_sample *s)
{
    struct h2r_buf *b = &w->rec;
    h2r_buf_reset(b);
    fld_put_u64(b, DF_SECTION, s->section);
    fld_put_i64(b, DF_T, s->t_ns);
    fld_put_str(b, DF_KIND, s->db_kind);
    for (size_t i = 0; i < s->n_values; i++)
        fld_put_counter(b, DF_VALUE, s->values[i].name, s->values[i].value);
    return rw_emit(w, H2R_RUN_REC_DB_SAMPLE);
}

int h2r_run_write_ack(struct h2r_run_writer *w, const struct h2r_run_ack *a)
{
    struct h2r_buf *b = &w->rec;
    h2r_buf_reset(b);
    fld_put_u64(b, AF_SECTION, a->section);
    fld_put_u64(b, AF_EXCHANGE, a->exchange_id);
    fld_put_u64(b, AF_TRACE_CONN, a->trace_conn);
    fld_put_i64(b, AF_T, a->t_ns);
    fld_put_str(b, AF_KIND, a->kind);
    fld_put_str(b, AF_ID, a->id);
    fld_put_str(b, AF_NAME, a->name);
    fld_put_str(b, AF_KEY, a->key);
    fld_put_str(b, AF_PREFIX, a->prefix);
    fld_put_str(b, AF_NODE_KEY, a->node_key);
    fld_put_str(b, AF_MACHINE_KEY, a->machine_key);
    fld_put_str(b, AF_HOSTNAME, a->hostname);
    if (a->source)
        fld_put_u64(b, AF_SOURCE, a->source);
    return rw_emit(w, H2R_RUN_REC_ACK);
}

int h2r_run_write_verify(struct h2r_run_writer *w, const struct h2r_run_verify *v)
{
    struct h2r_buf *b = &w->rec;
    struct h2r_buf sub;
    h2r_buf_reset(b);
    h2r_buf_init(&sub, 64 * 1024);
    fld_put_u64(b, VF_SECTION, v->section);
    fld_put_i64(b, VF_T, v->t_ns);
    fld_put_str(b, VF_DB_KIND, v->db_kind);
    fld_put_str(b, VF_ERROR, v->error);
    fld_put_u64(b, VF_ACKS, v->acks);
    if (v->acks_dropped)
        fld_put_u64(b, VF_ACKS_DROPPED, v->acks_dropped);
    if (v->ignored)
        fld_put_u64(b, VF_IGNORED, v->ignored);
    if (v->baseline_failed)
        fld_put_u64(b, VF_BASELINE_FAILED, v->baseline_failed);
    for (size_t i = 0; i < v->n_kinds && i < H2R_RUN_VERIFY_MAX_KINDS; i++) {
        const struct h2r_run_verify_kind *k = &v->kinds[i];
        h2r_buf_reset(&sub);
        fld_put_str(&sub, VKF_NAME, k->kind);
        fld_put_u64(&sub, VKF_ACKED, k->acknowledged);
        fld_put_u64(&sub, VKF_PRESENT, k->present);
        fld_put_u64(&sub, VKF_LOST, k->lost);
        fld_put_u64(&sub, VKF_UNACKED, k->unacknowledged);
        if (k->existing_before)
            fld_put_u64(&sub, VKF_EXISTING_BEFORE, k->existing_before);
        if (k->before_max_id >= 0)
            fld_put_i64(&sub, VKF_BEFORE_MAX_ID, k->before_max_id);
        for (size_t j = 0; j < k->n_lost_examples && j < H2R_RUN_VERIFY_MAX_EXAMPLES; j++)
            fld_put_str(&sub, VKF_LOST_EX, k->lost_examples[j]);
        for (size_t j = 0; j < k->n_unacked_examples && j < H2R_RUN_VERIFY_MAX_EXAMPLES; j++)
            fld_put_str(&sub, VKF_UNACKED_EX, k->unacked_examples[j]);
        if (sub.failed)
            b->failed = sub.failed;
        else
            fld_put_bytes(b, VF_KIND, sub.p, sub.len);
    }
    h2r_buf_free(&sub);
    int rc = rw_emit(w, H2R_RUN_REC_VERIFY);
    if (!rc)
        rc = h2r_run_writer_flush(w);
    return rc;
}

int h2r_run_writer_flush(struct h2r_run_writer *w)
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

const char *h2r_run_writer_errmsg(const struct h2r_run_writer *w)
{
    return w->errmsg;
}

int h2r_run_writer_close(struct h2r_run_writer *w)
{
    if (!w)
        return 0;
    int rc = recio_writer_close(w->rw);
    if (rc && !w->error) {
        w->error = rc;
    }
    rc = w->error;
    h2r_buf_free(&w->rec);
    free(w);
    return rc;
}

/* ------------------------------------------------------------------ reader */

struct h2r_run_reader {
    struct recio_reader *rr;
    struct h2r_counter *values; /* db sample values (names are arena offsets until fixed up) */
    size_t n_values, cap_values;
    struct h2r_run_meta meta;
    struct h2r_buf meta_strings;
    struct h2r_buf strings;
    uint64_t skipped;
    char errmsg[384];
};

#define NO_STR ((size_t)-1)

static size_t arena_str(struct h2r_buf *a, const struct fld_value *v)
{
    if (v->wire_type != FLD_BYTES)
        return NO_STR;
    size_t off = a->len;
    h2r_buf_append(a, v->data, v->n);
    h2r_buf_append(a, "", 1);
    return off;
}

static const char *fix(const struct h2r_buf *a, size_t off)
{
    return off == NO_STR || a->failed ? NULL : (const char *)a->p + off;
}

static int bad_record(struct h2r_run_reader *r, const char *what)
{
    snprintf(r->errmsg, sizeof(r->errmsg), "malformed %s record (record %llu, offset ~%llu)",
             what, (unsigned long long)recio_reader_records(r->rr),
             (unsigned long long)recio_reader_offset(r->rr));
    return H2R_ERR_FORMAT;
}

static int decode_meta(struct h2r_run_reader *r, const uint8_t *p, size_t n)
{
    struct fld_cursor c = {p, n};
    struct fld_value v;
    struct h2r_buf *a = &r->meta_strings;
    size_t s[MF_SETTINGS + 1];
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        s[i] = NO_STR;
    int rc;
    r->meta.shard_count = 1;
    while ((rc = fld_next(&c, &v)) == 1) {
        if (v.field >= MF_TOOL && v.field <= MF_SETTINGS) {
            s[v.field] = arena_str(a, &v);
            continue;
        }
        switch (v.field) {
        case MF_CREATED:
            r->meta.created_ns = fld_zigzag_decode(v.u);
            break;
        case MF_SHARD_INDEX:
            r->meta.shard_index = (uint32_t)v.u;
            break;
        case MF_SHARD_COUNT:
            r->meta.shard_count = (uint32_t)v.u;
            break;
        case MF_START_AT:
            r->meta.start_at_ns = fld_zigzag_decode(v.u);
            break;
        default:
            break;
        }
    }
    if (rc < 0 || a->failed)
        return bad_record(r, "meta");
    r->meta.tool_version = fix(a, s[MF_TOOL]);
    r->meta.trace_path = fix(a, s[MF_TRACE_PATH]);
    r->meta.trace_sha256 = fix(a, s[MF_TRACE_SHA]);
    r->meta.host = fix(a, s[MF_HOST]);
    r->meta.command = fix(a, s[MF_COMMAND]);
    r->meta.settings = fix(a, s[MF_SETTINGS]);
    if (r->meta.shard_count == 0 || r->meta.shard_index >= r->meta.shard_count)
        return bad_record(r, "meta (shard index out of range)");
    return 0;
}

static int decode_section(struct h2r_run_reader *r, const uint8_t *p, size_t n,
                          struct h2r_run_section *o)
{
    struct fld_cursor c = {p, n};
    struct fld_value v;
    struct h2r_buf *a = &r->strings;
    size_t name = NO_STR, url = NO_STR, label = NO_STR;
    int rc;
    memset(o, 0, sizeof(*o));
    o->clock_max_error_ns = -1; /* absent in files written before it existed */
    while ((rc = fld_next(&c, &v)) == 1) {
        switch (v.field) {
        case SF_ID:
            o->id = (uint32_t)v.u;
            break;
        case SF_NAME:
            name = arena_str(a, &v);
            break;
        case SF_URL:
            url = arena_str(a, &v);
            break;
        case SF_SPEED_MILLI:
            o->speed = (double)fld_zigzag_decode(v.u) / 1000.0;
            break;
        case SF_T0_WALL:
            o->t0_wall_ns = fld_zigzag_decode(v.u);
            break;
        case SF_TIMEOUT:
            o->timeout_ns = fld_zigzag_decode(v.u);
            break;
        case SF_LABEL:
            label = arena_str(a, &v);
            break;
        case SF_CLOCK_OFFSET:
            o->clock_offset_ns = fld_zigzag_decode(v.u);
            break;
        case SF_CLOCK_MAX_ERROR:
            o->clock_max_error_ns = fld_zigzag_decode(v.u);
            break;
        default:
            break;
        }
    }
    if (rc < 0 || a->failed)
        return bad_record(r, "section");
    o->name = fix(a, name);
    o->url = fix(a, url);
    o->label = fix(a, label);
    if (!o->name)
        o->name = "";
    return 0;
}

static int decode_result(struct h2r_run_reader *r, const uint8_t *p, size_t n,
                         struct h2r_run_result *o)
{
    struct fld_cursor c = {p, n};
    struct fld_value v;
    struct h2r_buf *a = &r->strings;
    size_t method = NO_STR, path = NO_STR, auth = NO_STR, detail = NO_STR;
    int rc;
    memset(o, 0, sizeof(*o));
    o->status = o->grpc_status = o->trace_status = o->trace_grpc_status = -1;
    while ((rc = fld_next(&c, &v)) == 1) {
        int64_t z = fld_zigzag_decode(v.u);
        switch (v.field) {
        case RF_SECTION:
            o->section = (uint32_t)v.u;
            break;
        case RF_EXCHANGE:
            o->exchange_id = v.u;
            break;
        case RF_TRACE_CONN:
            o->trace_conn = v.u;
            break;
        case RF_CONN_INDEX:
            o->conn_index = (uint32_t)v.u;
            break;
        case RF_STREAM:
            o->stream_id = (uint32_t)v.u;
            break;
        case RF_METHOD:
            method = arena_str(a, &v);
            break;
        case RF_PATH:
            path = arena_str(a, &v);
            break;
        case RF_AUTHORITY:
            auth = arena_str(a, &v);
            break;
        case RF_T_INTENDED:
            o->t_intended_ns = z;
            break;
        case RF_T_SENT:
            o->t_sent_ns = z;
            break;
        case RF_T_FIRST_BYTE:
            o->t_first_byte_ns = z;
            break;
        case RF_T_DONE:
            o->t_done_ns = z;
            break;
        case RF_STATUS:
            o->status = (int32_t)z;
            break;
        case RF_GRPC_STATUS:
            o->grpc_status = (int32_t)z;
            break;
        case RF_TRACE_STATUS:
            o->trace_status = (int32_t)z;
            break;
        case RF_TRACE_GRPC_STATUS:
            o->trace_grpc_status = (int32_t)z;
            break;
        case RF_ERR_CLASS:
            o->err_class = (uint32_t)v.u;
            break;
        case RF_ERR_DETAIL:
            detail = arena_str(a, &v);
            break;
        case RF_REQ_BYTES:
            o->req_bytes = v.u;
            break;
        case RF_RESP_BYTES:
            o->resp_bytes = v.u;
            break;
        case RF_FLAGS:
            o->flags = (uint32_t)v.u;
            break;
        case RF_T_OPEN:
            o->t_open_ns = z;
            break;
        case RF_T_NETMAP:
            o->t_netmap_ns = z;
            break;
        case RF_T_LAST_NETMAP:
            o->t_last_netmap_ns = z;
            break;
        case RF_T_END:
            o->t_end_ns = z;
            break;
        case RF_NETMAPS:
            o->netmaps = v.u;
            break;
        case RF_KEEPALIVES:
            o->keepalives = v.u;
            break;
        case RF_PEERS:
            o->peers = v.u;
            break;
        default:
            break;
        }
    }
    if (rc < 0 || a->failed)
        return bad_record(r, "result");
    o->method = fix(a, method);
    o->path = fix(a, path);
    o->authority = fix(a, auth);
    o->err_detail = fix(a, detail);
    if (!o->method)
        o->method = "";
    if (!o->path)
        o->path = "";
    return 0;
}

static int decode_sample(struct h2r_run_reader *r, const uint8_t *p, size_t n,
                         struct h2r_run_sample *o)
{
    struct fld_cursor c = {p, n};
    struct fld_value v;
    int rc;
    memset(o, 0, sizeof(*o));
    while ((rc = fld_next(&c, &v)) == 1) {
        switch (v.field) {
        case PF_SECTION:
            o->section = (uint32_t)v.u;
            break;
        case PF_T:
            o->t_ns = fld_zigzag_decode(v.u);
            break;
        case PF_INTERVAL:
            o->interval_ns = fld_zigzag_decode(v.u);
            break;
        case PF_IN_FLIGHT:
            o->in_flight = v.u;
            break;
        case PF_OPEN_CONNS:
            o->open_conns = v.u;
            break;
        case PF_DUE:
            o->due = v.u;
            break;
        case PF_SENT:
            o->sent = v.u;
            break;
        case PF_DONE:
            o->done = v.u;
            break;
        case PF_ERRORS:
            o->errors = v.u;
            break;
        case PF_MAX_LATE:
            o->max_late_ns = fld_zigzag_decode(v.u);
            break;
        default:
            break;
        }
    }
    return rc < 0 ? bad_record(r, "sample") : 0;
}

static int decode_section_end(struct h2r_run_reader *r, const uint8_t *p, size_t n,
                              struct h2r_run_section_end *o)
{
    struct fld_cursor c = {p, n};
    struct fld_value v;
    int rc;
    memset(o, 0, sizeof(*o));
    while ((rc = fld_next(&c, &v)) == 1) {
        switch (v.field) {
        case NF_SECTION:
            o->section = (uint32_t)v.u;
            break;
        case NF_T_END:
            o->t_end_ns = fld_zigzag_decode(v.u);
            break;
        case NF_EXCHANGES:
            o->exchanges = v.u;
            break;
        case NF_ERRORS:
            o->errors = v.u;
            break;
        case NF_INTERRUPTED:
            o->interrupted = v.u != 0;
            break;
        case NF_CPU_USER:
            o->cpu_user_ns = fld_zigzag_decode(v.u);
            break;
        case NF_CPU_SYS:
            o->cpu_sys_ns = fld_zigzag_decode(v.u);
            break;
        case NF_MAX_RSS:
            o->max_rss_kb = v.u;
            break;
        case NF_LOOP_THREADS:
            o->loop_threads = (uint32_t)v.u;
            break;
        case NF_MAX_LATE:
            o->max_late_ns = fld_zigzag_decode(v.u);
            break;
        case NF_LATE_P99:
            o->late_p99_ns = fld_zigzag_decode(v.u);
            break;
        case NF_PEAK_FDS:
            o->peak_fds = v.u;
            break;
        case NF_PEAK_CONNS:
            o->peak_conns = v.u;
            break;
        case NF_FD_LIMIT:
            o->fd_limit = v.u;
            break;
        case NF_EMFILE:
            o->emfile_errors = v.u;
            break;
        default:
            break;
        }
    }
    return rc < 0 ? bad_record(r, "section end") : 0;
}

static int decode_db_sample(struct h2r_run_reader *r, const uint8_t *p, size_t n,
                            struct h2r_run_db_sample *o)
{
    struct fld_cursor c = {p, n};
    struct fld_value v;
    struct h2r_buf *a = &r->strings;
    size_t kind = NO_STR;
    int rc;
    memset(o, 0, sizeof(*o));
    r->n_values = 0;
    while ((rc = fld_next(&c, &v)) == 1) {
        switch (v.field) {
        case DF_SECTION:
            o->section = (uint32_t)v.u;
            break;
        case DF_T:
            o->t_ns = fld_zigzag_decode(v.u);
            break;
        case DF_KIND:
            kind = arena_str(a, &v);
            break;
        case DF_VALUE: {
            struct fld_value kv;
            uint64_t value;
            if (fld_get_counter(&v, &kv, &value) != 0 || r->n_values >= 4096)
                return bad_record(r, "db sample value");
            size_t name = arena_str(a, &kv);
            if (r->n_values == r->cap_values) {
                size_t ncap = r->cap_values ? r->cap_values * 2 : 32;
                struct h2r_counter *nv = realloc(r->values, ncap * sizeof(*nv));
                if (!nv)
                    return H2R_ERR_NOMEM;
                r->values = nv;
                r->cap_values = ncap;
            }
            r->values[r->n_values].name = (const char *)(uintptr_t)name;
            r->values[r->n_values].value = value;
            r->n_values++;
            break;
        }
        default:
            break;
        }
    }
    if (rc < 0 || a->failed)
        return bad_record(r, "db sample");
    for (size_t i = 0; i < r->n_values; i++)
        r->values[i].name = (const char *)a->p + (uintptr_t)r->values[i].name;
    o->db_kind = fix(a, kind);
    o->values = r->values;
    o->n_values = r->n_values;
    return 0;
}

static int decode_ack(struct h2r_run_reader *r, const uint8_t *p, size_t n,
                      struct h2r_run_ack *o)
{
    struct fld_cursor c = {p, n};
    struct fld_value v;
    struct h2r_buf *a = &r->strings;
    size_t s[AF_LAST_STR + 1];
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        s[i] = NO_STR;
    int rc;
    memset(o, 0, sizeof(*o));
    while ((rc = fld_next(&c, &v)) == 1) {
        if (v.field >= AF_FIRST_STR && v.field <= AF_LAST_STR) {
            s[v.field] = arena_str(a, &v);
            continue;
        }
        switch (v.field) {
        case AF_SECTION:
            o->section = (uint32_t)v.u;
            break;
        case AF_EXCHANGE:
            o->exchange_id = v.u;
            break;
        case AF_TRACE_CONN:
            o->trace_conn = v.u;
            break;
        case AF_T:
            o->t_ns = fld_zigzag_decode(v.u);
            break;
        case AF_SOURCE:
            o->source = (uint32_t)v.u;
            break;
        default:
            break;
        }
    }
    if (rc < 0 || a->failed)
        return bad_record(r, "ack");
    o->kind = fix(a, s[AF_KIND]);
    o->id = fix(a, s[AF_ID]);
    o->name = fix(a, s[AF_NAME]);
    o->key = fix(a, s[AF_KEY]);
    o->prefix = fix(a, s[AF_PREFIX]);
    o->node_key = fix(a, s[AF_NODE_KEY]);
    o->machine_key = fix(a, s[AF_MACHINE_KEY]);
    o->hostname = fix(a, s[AF_HOSTNAME]);
    if (!o->kind)
        o->kind = "";
    return 0;
}

/* Example strings are arena offsets until the record is complete (the arena may move). */
static int decode_verify_kind(struct h2r_run_reader *r, const struct fld_value *kv,
                              struct h2r_run_verify_kind *k, size_t *name, size_t *lost,
                              size_t *unacked)
{
    struct fld_cursor c = {kv->data, kv->n};
    struct fld_value v;
    int rc;
    while ((rc = fld_next(&c, &v)) == 1) {
        switch (v.field) {
        case VKF_NAME:
            *name = arena_str(&r->strings, &v);
            break;
        case VKF_ACKED:
            k->acknowledged = v.u;
            break;
        case VKF_PRESENT:
            k->present = v.u;
            break;
        case VKF_LOST:
            k->lost = v.u;
            break;
        case VKF_UNACKED:
            k->unacknowledged = v.u;
            break;
        case VKF_EXISTING_BEFORE:
            k->existing_before = v.u;
            break;
        case VKF_BEFORE_MAX_ID:
            k->before_max_id = fld_zigzag_decode(v.u);
            break;
        case VKF_LOST_EX:
            if (k->n_lost_examples < H2R_RUN_VERIFY_MAX_EXAMPLES)
                lost[k->n_lost_examples++] = arena_str(&r->strings, &v);
            break;
        case VKF_UNACKED_EX:
            if (k->n_unacked_examples < H2R_RUN_VERIFY_MAX_EXAMPLES)
                unacked[k->n_unacked_examples++] = arena_str(&r->strings, &v);
            break;
        default:
            break;
        }
    }
    return rc;
}

static int decode_verify(struct h2r_run_reader *r, const uint8_t *p, size_t n,
                         struct h2r_run_verify *o)
{
    struct fld_cursor c = {p, n};
    struct fld_value v;
    struct h2r_buf *a = &r->strings;
    size_t kind = NO_STR, error = NO_STR;
    size_t names[H2R_RUN_VERIFY_MAX_KINDS];
    size_t lost[H2R_RUN_VERIFY_MAX_KINDS][H2R_RUN_VERIFY_MAX_EXAMPLES];
    size_t unacked[H2R_RUN_VERIFY_MAX_KINDS][H2R_RUN_VERIFY_MAX_EXAMPLES];
    int rc;
    memset(o, 0, sizeof(*o));
    while ((rc = fld_next(&c, &v)) == 1) {
        switch (v.field) {
        case VF_SECTION:
            o->section = (uint32_t)v.u;
            break;
        case VF_T:
            o->t_ns = fld_zigzag_decode(v.u);
            break;
        case VF_DB_KIND:
            kind = arena_str(a, &v);
            break;
        case VF_ERROR:
            error = arena_str(a, &v);
            break;
        case VF_ACKS:
            o->acks = v.u;
            break;
        case VF_ACKS_DROPPED:
            o->acks_dropped = v.u;
            break;
        case VF_IGNORED:
            o->ignored = v.u;
            break;
        case VF_BASELINE_FAILED:
            o->baseline_failed = v.u;
            break;
        case VF_KIND: {
            if (v.wire_type != FLD_BYTES)
                return bad_record(r, "verify");
            if (o->n_kinds == H2R_RUN_VERIFY_MAX_KINDS)
                break; /* more kinds than this reader knows how to keep */
            size_t i = o->n_kinds;
            names[i] = NO_STR;
            o->kinds[i].before_max_id = -1; /* absent: no baseline (older files too) */
            if (decode_verify_kind(r, &v, &o->kinds[i], &names[i], lost[i], unacked[i]) < 0)
                return bad_record(r, "verify kind");
            o->n_kinds++;
            break;
        }
        default:
            break;
        }
    }
    if (rc < 0 || a->failed)
        return bad_record(r, "verify");
    o->db_kind = fix(a, kind);
    o->error = fix(a, error);
    for (size_t i = 0; i < o->n_kinds; i++) {
        struct h2r_run_verify_kind *k = &o->kinds[i];
        k->kind = fix(a, names[i]);
        if (!k->kind)
            k->kind = "";
        for (size_t j = 0; j < k->n_lost_examples; j++)
            k->lost_examples[j] = fix(a, lost[i][j]);
        for (size_t j = 0; j < k->n_unacked_examples; j++)
            k->unacked_examples[j] = fix(a, unacked[i][j]);
    }
    return 0;
}

static int run_reader_start(struct h2r_run_reader *r, char *errbuf, size_t errlen)
{
    uint32_t kind;
    const uint8_t *p;
    size_t n;
    h2r_buf_init(&r->meta_strings, 1u << 20);
    h2r_buf_init(&r->strings, H2R_TRACE_MAX_RECORD + 4096);
    int rc = recio_next(r->rr, &kind, &p, &n);
    if (rc < 0)
        return h2r_seterr(errbuf, errlen, rc, "%s", recio_reader_errmsg(r->rr));
    if (rc == 0 || kind != RUN_REC_META)
        return h2r_seterr(errbuf, errlen, H2R_ERR_FORMAT, "run file has no meta record");
    rc = decode_meta(r, p, n);
    if (rc)
        return h2r_seterr(errbuf, errlen, rc, "%s", r->errmsg);
    return 0;
}

int h2r_run_reader_open(struct h2r_run_reader **out, const char *path, char *errbuf,
                        size_t errlen)
{
    struct h2r_run_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    int rc =
        recio_reader_open(&r->rr, path, run_magic, H2R_RUN_FORMAT_VERSION, errbuf, errlen);
    if (!rc)
        rc = run_reader_start(r, errbuf, errlen);
    if (rc) {
        h2r_run_reader_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int h2r_run_reader_open_mem(struct h2r_run_reader **out, const void *buf, size_t len,
                            char *errbuf, size_t errlen)
{
    struct h2r_run_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    int rc = recio_reader_open_mem(&r->rr, buf, len, run_magic, H2R_RUN_FORMAT_VERSION, errbuf,
                                   errlen);
    if (!rc)
        rc = run_reader_start(r, errbuf, errlen);
    if (rc) {
        h2r_run_reader_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

const struct h2r_run_meta *h2r_run_reader_meta(const struct h2r_run_reader *r)
{
    return &r->meta;
}

int h2r_run_reader_next(struct h2r_run_reader *r, struct h2r_run_record *rec)
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
        case H2R_RUN_REC_SECTION:
            rc = decode_section(r, p, n, &rec->u.section);
            break;
        case H2R_RUN_REC_RESULT:
            rc = decode_result(r, p, n, &rec->u.result);
            break;
        case H2R_RUN_REC_SAMPLE:
            rc = decode_sample(r, p, n, &rec->u.sample);
            break;
        case H2R_RUN_REC_SECTION_END:
            rc = decode_section_end(r, p, n, &rec->u.end);
            break;
        case H2R_RUN_REC_DB_SAMPLE:
            rc = decode_db_sample(r, p, n, &rec->u.db);
            break;
        case H2R_RUN_REC_ACK:
            rc = decode_ack(r, p, n, &rec->u.ack);
            break;
        case H2R_RUN_REC_VERIFY:
            rc = decode_verify(r, p, n, &rec->u.verify);
            break;
        default:
            r->skipped++;
            continue;
        }
        return rc ? rc : 1;
    }
}

uint64_t h2r_run_reader_skipped(const struct h2r_run_reader *r)
{
    return r->skipped;
}

const char *h2r_run_reader_errmsg(const struct h2r_run_reader *r)
{
    return r->errmsg;
}

void h2r_run_reader_free(struct h2r_run_reader *r)
{
    if (!r)
        return;
    recio_reader_free(r->rr);
    free(r->values);
    h2r_buf_free(&r->meta_strings);
    h2r_buf_free(&r->strings);
    free(r);
}

int h2r_run_file_probe(const char *path)
{
    struct recio_reader *rr;
    char err[64];
    if (recio_reader_open(&rr, path, run_magic, UINT32_MAX, err, sizeof(err)) != 0)
        return 0;
    recio_reader_free(rr);
    return 1;
}
