/*
 * `h2replay show TRACE`: a trace as a readable table or as JSON lines.
 *
 * The JSON-lines form is a public contract (docs/trace-format.md, "show
 * --format jsonl"): one object per exchange with at least conn, stream,
 * method, authority, path, status, req_bytes, resp_bytes, grpc_status,
 * t_start_ns, t_end_ns and error. With --records all, connection,
 * connection-end, TS2021 session and summary records are printed too, each
 * with a "type"; --records ts2021 prints only the TS2021 sessions.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "h2replay/run.h"
#include "h2replay/trace.h"
#include "h2replay/units.h"

enum show_format { FMT_TABLE, FMT_JSONL };

static void show_usage(FILE *f)
{
    fprintf(f, "usage: h2replay show TRACE|RUN [--format table|jsonl]\n"
               "                     [--records exchanges|ts2021|all] [--frames]\n"
               "\n"
               "Prints a trace ('-' = stdin) or a run file. table (default): exchanges,\n"
               "TS2021 sessions, connections and the capture summary (run: results per\n"
               "section). jsonl: one JSON object per exchange/result (keys in\n"
               "docs/trace-format.md and docs/run-format.md); --records all adds the other\n"
               "records, each with a type; --records ts2021 prints only TS2021 sessions.\n"
               "      --headers            table: also print request/response headers\n"
               "      --frames             jsonl: TS2021 sessions carry their frame list\n"
               "\n"
               "exit status: 0 whole trace read; 1 unreadable or damaged trace (everything\n"
               "before the damage is printed first); 2 usage error\n");
}

/* A JSON string from bytes that may not be UTF-8: invalid bytes become U+FFFD. */
static json_t *json_bytes(const uint8_t *p, size_t n)
{
    json_t *s = json_stringn((const char *)p, n);
    if (s)
        return s;
    char *tmp = malloc(n * 3 + 1);
    if (!tmp)
        return json_null();
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x80) {
            tmp[o++] = (char)p[i];
        } else {
            tmp[o++] = (char)0xef;
            tmp[o++] = (char)0xbf;
            tmp[o++] = (char)0xbd;
        }
    }
    s = json_stringn(tmp, o);
    free(tmp);
    return s ? s : json_null();
}

static json_t *json_hdr(const struct h2r_exchange *x, const struct h2r_hdr *hdrs, size_t n,
                        const char *name)
{
    (void)x;
    const struct h2r_hdr *h = h2r_hdr_find(hdrs, n, name);
    return h ? json_bytes(h->value, h->value_len) : json_null();
}

static json_t *json_int_or_null(int64_t v)
{
    return v < 0 ? json_null() : json_integer(v);
}

static json_t *json_str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static int64_t exchange_end_ns(const struct h2r_exchange *x)
{
    if (x->t_resp_end_ns)
        return x->t_resp_end_ns;
    if (x->t_resp_hdrs_ns)
        return x->t_resp_hdrs_ns;
    return x->t_req_end_ns ? x->t_req_end_ns : x->t_req_first_ns;
}

static void print_json(json_t *o)
{
    json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    fputc('\n', stdout);
    json_decref(o);
}

static json_t *hdr_array(const struct h2r_hdr *h, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *pair = json_array();
        json_array_append_new(pair, json_bytes(h[i].name, h[i].name_len));
        json_array_append_new(pair, json_bytes(h[i].value, h[i].value_len));
        json_array_append_new(a, pair);
    }
    return a;
}

static void jsonl_exchange(const struct h2r_exchange *x, int with_type, int with_headers)
{
    json_t *o = json_object();
    if (with_type)
        json_object_set_new(o, "type", json_string("exchange"));
    json_object_set_new(o, "id", json_integer((json_int_t)x->id));
    json_object_set_new(o, "conn", json_integer((json_int_t)x->conn_id));
    json_object_set_new(o, "stream", json_integer(x->stream_id));
    json_object_set_new(o, "method", json_hdr(x, x->req_hdrs, x->n_req_hdrs, ":method"));
    json_object_set_new(o, "authority", json_hdr(x, x->req_hdrs, x->n_req_hdrs, ":authority"));
    json_object_set_new(o, "path", json_hdr(x, x->req_hdrs, x->n_req_hdrs, ":path"));
    json_object_set_new(o, "status", json_int_or_null(x->status));
    json_object_set_new(o, "req_bytes", json_integer((json_int_t)x->req_body_len));
    json_object_set_new(o, "resp_bytes", json_integer((json_int_t)x->resp_body_len));
    json_object_set_new(o, "grpc_status", json_int_or_null(x->grpc_status));
    json_object_set_new(o, "t_start_ns", json_integer(x->t_req_first_ns));
    json_object_set_new(o, "t_end_ns", json_integer(exchange_end_ns(x)));
    json_object_set_new(o, "error", json_str_or_null(x->error));
    json_object_set_new(o, "t_req_end_ns", json_integer(x->t_req_end_ns));
    json_object_set_new(o, "t_resp_headers_ns", json_integer(x->t_resp_hdrs_ns));
    json_object_set_new(o, "rst_code", json_int_or_null(x->rst_code));
    json_object_set_new(o, "grpc", json_boolean(x->flags & H2R_EXCH_F_GRPC));
    json_object_set_new(o, "redacted", json_boolean(x->flags & H2R_EXCH_F_REDACTED));
    if (with_headers) {
        json_object_set_new(o, "req_headers", hdr_array(x->req_hdrs, x->n_req_hdrs));
        json_object_set_new(o, "resp_headers", hdr_array(x->resp_hdrs, x->n_resp_hdrs));
        json_object_set_new(o, "trailers", hdr_array(x->trailers, x->n_trailers));
    }
    print_json(o);
}

static void jsonl_conn(const struct h2r_conn *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("conn"));
    json_object_set_new(o, "id", json_integer((json_int_t)c->id));
    json_object_set_new(o, "client", json_string(c->client));
    json_object_set_new(o, "server", json_string(c->server));
    json_object_set_new(o, "transport", json_string(h2r_transport_name(c->transport)));
    json_object_set_new(o, "partial", json_boolean(c->flags & H2R_CONN_F_PARTIAL));
    json_object_set_new(o, "t_open_ns", json_integer(c->t_open_ns));
    json_object_set_new(o, "alpn", json_str_or_null(c->alpn));
    print_json(o);
}

static void jsonl_conn_end(const struct h2r_conn_end *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("conn_end"));
    json_object_set_new(o, "id", json_integer((json_int_t)e->id));
    json_object_set_new(o, "t_close_ns", json_integer(e->t_close_ns));
    json_object_set_new(o, "how", json_string(h2r_conn_how_name(e->how)));
    json_object_set_new(o, "goaway_code", json_int_or_null(e->goaway_code));
    json_object_set_new(o, "bytes_c2s", json_integer((json_int_t)e->bytes_c2s));
    json_object_set_new(o, "bytes_s2c", json_integer((json_int_t)e->bytes_s2c));
    json_object_set_new(o, "gap_bytes", json_integer((json_int_t)e->gap_bytes));
    json_object_set_new(o, "exchanges", json_integer((json_int_t)e->exchanges));
    json_object_set_new(o, "reason", json_str_or_null(e->reason));
    print_json(o);
}

/* "mkey:" + 64 hex digits of a machine key (a public key: fine to print). */
static void mkey_hex(const uint8_t key[32], char out[70])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "mkey:", 5);
    for (int i = 0; i < 32; i++) {
        out[5 + 2 * i] = hex[key[i] >> 4];
        out[6 + 2 * i] = hex[key[i] & 15];
    }
    out[69] = '\0';
}

static void jsonl_ts_session(const struct h2r_ts_session *t, int with_frames)
{
    json_t *o = json_object();
    char mkey[70];
    int identified = (t->flags & H2R_TS_F_IDENTIFIED) != 0;
    json_object_set_new(o, "type", json_string("ts_session"));
    json_object_set_new(o, "id", json_integer((json_int_t)t->id));
    json_object_set_new(o, "conn", json_integer((json_int_t)t->conn_id));
    json_object_set_new(o, "node", t->node ? json_integer((json_int_t)t->node) : json_null());
    json_object_set_new(o, "capver", t->capver ? json_integer(t->capver) : json_null());
    json_object_set_new(o, "identified", json_boolean(identified));
    json_object_set_new(o, "tls", json_boolean(t->flags & H2R_TS_F_TLS));
    if (identified)
        mkey_hex(t->machine_key, mkey);
    json_object_set_new(o, "machine_key", identified ? json_string(mkey) : json_null());
    json_object_set_new(o, "status", json_int_or_null(t->status));
    json_object_set_new(o, "how", json_string(h2r_ts_how_name(t->how)));
    json_object_set_new(o, "t_upgrade_ns", json_integer(t->t_upgrade_ns));
    json_object_set_new(o, "t_handshake_ns",
                        t->t_handshake_ns ? json_integer(t->t_handshake_ns) : json_null());
    json_object_set_new(o, "t_end_ns", json_integer(t->t_end_ns));
    json_object_set_new(o, "duration_ns", json_integer(t->t_end_ns - t->t_upgrade_ns));
    json_object_set_new(o, "frames_c2s", json_integer((json_int_t)t->frames_c2s));
    json_object_set_new(o, "frames_s2c", json_integer((json_int_t)t->frames_s2c));
    json_object_set_new(o, "bytes_c2s", json_integer((json_int_t)t->bytes_c2s));
    json_object_set_new(o, "bytes_s2c", json_integer((json_int_t)t->bytes_s2c));
    json_object_set_new(o, "frames_kept", json_integer((json_int_t)t->n_recs));
    json_object_set_new(o, "frames_dropped", json_integer((json_int_t)t->recs_dropped));
    json_object_set_new(o, "reason", json_str_or_null(t->reason));
    if (with_frames) {
        json_t *a = json_array();
        for (size_t i = 0; i < t->n_recs; i++) {
            const struct h2r_ts_rec *f = &t->recs[i];
            json_t *e = json_array();
            json_array_append_new(e, json_integer(f->t_ns));
            json_array_append_new(e, json_integer(f->dir));
            json_array_append_new(e, json_integer(f->type));
            json_array_append_new(e, json_integer(f->len));
            json_array_append_new(a, e);
        }
        json_object_set_new(o, "frames", a);
    }
    print_json(o);
}

/* One table line for a TS2021 session (malloc'd; NULL when out of memory). */
static char *table_ts_line(const struct h2r_ts_session *t, int64_t t0)
{
    char at[32], dur[32], status[16], node[24], capver[16], mkey[70], c2s[48], s2c[48];
    char line[512];
    h2r_format_duration(t->t_upgrade_ns - t0, at, sizeof(at));
    if (t->t_end_ns >= t->t_upgrade_ns)
        h2r_format_duration(t->t_end_ns - t->t_upgrade_ns, dur, sizeof(dur));
    else
        snprintf(dur, sizeof(dur), "-");
    snprintf(status, sizeof(status), t->status >= 0 ? "%d" : "-", t->status);
    snprintf(node, sizeof(node), t->node ? "%" PRIu64 : "-", t->node);
    snprintf(capver, sizeof(capver), t->capver ? "%u" : "-", t->capver);
    if (t->flags & H2R_TS_F_IDENTIFIED) {
        mkey_hex(t->machine_key, mkey);
        memcpy(mkey + 13, "\xe2\x80\xa6", 4); /* mkey:<8 hex>U+2026 */
    } else {
        snprintf(mkey, sizeof(mkey), "-");
    }
    snprintf(c2s, sizeof(c2s), "%" PRIu64 "/%" PRIu64, t->frames_c2s, t->bytes_c2s);
    snprintf(s2c, sizeof(s2c), "%" PRIu64 "/%" PRIu64, t->frames_s2c, t->bytes_s2c);
    snprintf(line, sizeof(line),
             "%5" PRIu64 " %5s %5" PRIu64 " %6s %-16s %10s %9s %-11s %6s %14s %14s%s%s%s", t->id,
             node, t->conn_id, capver, mkey, at, dur, h2r_ts_how_name(t->how), status, c2s, s2c,
             t->flags & H2R_TS_F_TLS ? "  tls" : "", t->reason ? "  " : "",
             t->reason ? t->reason : "");
    return strdup(line);
}

/* Session lines start with the id: order them by it (= by upgrade time), not by close. */
static int ts_line_cmp(const void *a, const void *b)
{
    unsigned long long x = strtoull(*(char *const *)a, NULL, 10);
    unsigned long long y = strtoull(*(char *const *)b, NULL, 10);
    return x < y ? -1 : x > y;
}

/* Prints (and frees) the buffered TS2021 session lines as one block. */
static void print_ts_lines(char **lines, size_t n, uint64_t dropped)
{
    if (n == 0 && dropped == 0)
        return;
    qsort(lines, n, sizeof(*lines), ts_line_cmp);
    printf("\nTS2021 sessions (frames/bytes after the upgrade, each way):\n");
    printf("%5s %5s %5s %6s %-16s %10s %9s %-11s %6s %14s %14s  %s\n", "TS", "NODE", "CONN",
           "CAPVER", "MACHINE_KEY", "AT", "DURATION", "HOW", "STATUS", "C2S_FR/B", "S2C_FR/B",
           "[TLS] [REASON]");
    for (size_t i = 0; i < n; i++) {
        puts(lines[i]);
        free(lines[i]);
    }
    if (dropped)
        printf("(%" PRIu64 " more TS2021 sessions not listed)\n", dropped);
}

/* Distinct node numbers among the sessions shown (a bitmap; numbers past the cap are not
 * told apart and counted once each). */
struct node_set {
    uint8_t *bits;
    size_t nbytes;
    uint64_t distinct;
};

static void node_set_add(struct node_set *ns, uint64_t node)
{
    const uint64_t cap = (uint64_t)1 << 24;
    if (node == 0)
        return;
    if (node >= cap) {
        ns->distinct++;
        return;
    }
    if (node / 8 >= ns->nbytes) {
        size_t nb = ns->nbytes ? ns->nbytes : 64;
        while (nb <= node / 8)
            nb *= 2;
        uint8_t *p = realloc(ns->bits, nb);
        if (!p)
            return;
        memset(p + ns->nbytes, 0, nb - ns->nbytes);
        ns->bits = p;
        ns->nbytes = nb;
    }
    if (!(ns->bits[node / 8] & (1u << (node % 8)))) {
        ns->bits[node / 8] |= (uint8_t)(1u << (node % 8));
        ns->distinct++;
    }
}

static void jsonl_summary(const struct h2r_capture_summary *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("summary"));
    json_object_set_new(o, "packets", json_integer((json_int_t)s->packets));
    json_object_set_new(o, "bytes", json_integer((json_int_t)s->bytes));
    json_object_set_new(o, "flows", json_integer((json_int_t)s->flows));
    json_object_set_new(o, "exchanges", json_integer((json_int_t)s->exchanges));
    json_object_set_new(o, "gaps", json_integer((json_int_t)s->gaps));
    json_object_set_new(o, "undecodable_flows", json_integer((json_int_t)s->undecodable_flows));
    json_object_set_new(o, "end_ns", json_integer(s->end_ns));
    json_t *ctr = json_object();
    for (size_t i = 0; i < s->n_counters; i++)
        json_object_set_new(ctr, s->counters[i].name,
                            json_integer((json_int_t)s->counters[i].value));
    json_object_set_new(o, "counters", ctr);
    print_json(o);
}

/* Prints at most `max` bytes of a header value, escaping control bytes. */
static void put_field(const uint8_t *p, size_t n, size_t max)
{
    size_t lim = n > max ? max : n;
    for (size_t i = 0; i < lim; i++)
        putchar(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?');
    if (n > max)
        fputs("...", stdout);
}

static void table_exchange(const struct h2r_exchange *x, int64_t t0, int headers)
{
    const struct h2r_hdr *m = h2r_hdr_find(x->req_hdrs, x->n_req_hdrs, ":method");
    const struct h2r_hdr *p = h2r_hdr_find(x->req_hdrs, x->n_req_hdrs, ":path");
    char at[32], dur[32];
    h2r_format_duration(x->t_req_first_ns - t0, at, sizeof(at));
    int64_t end = exchange_end_ns(x);
    if (end >= x->t_req_first_ns)
        h2r_format_duration(end - x->t_req_first_ns, dur, sizeof(dur));
    else
        snprintf(dur, sizeof(dur), "-");
    char status[16];
    if (x->status >= 0)
        snprintf(status, sizeof(status), "%d", x->status);
    else
        snprintf(status, sizeof(status), "-");
    if (x->grpc_status >= 0)
        snprintf(status + strlen(status), sizeof(status) - strlen(status), "/g%d",
                 x->grpc_status);
    /* header values are not NUL-terminated: copy the method into a bounded buffer */
    char method[8] = "-";
    if (m) {
        size_t n = m->value_len < sizeof(method) - 1 ? m->value_len : sizeof(method) - 1;
        memcpy(method, m->value, n);
        method[n] = '\0';
    }
    printf("%6" PRIu64 " %5" PRIu64 " %6u %10s %9s %-7s %-8s %9" PRIu64 " %9" PRIu64 "  ", x->id,
           x->conn_id, x->stream_id, at, dur, method, status, x->req_body_len, x->resp_body_len);
    if (p)
        put_field(p->value, p->value_len, 48);
    else
        putchar('-');
    if (x->error)
        printf("  [%s]", x->error);
    putchar('\n');
    if (headers) {
        for (size_t i = 0; i < x->n_req_hdrs; i++) {
            fputs("          > ", stdout);
            put_field(x->req_hdrs[i].name, x->req_hdrs[i].name_len, 64);
            fputs(": ", stdout);
            put_field(x->req_hdrs[i].value, x->req_hdrs[i].value_len, 200);
            putchar('\n');
        }
        for (size_t i = 0; i < x->n_resp_hdrs; i++) {
            fputs("          < ", stdout);
            put_field(x->resp_hdrs[i].name, x->resp_hdrs[i].name_len, 64);
            fputs(": ", stdout);
            put_field(x->resp_hdrs[i].value, x->resp_hdrs[i].value_len, 200);
            putchar('\n');
        }
    }
}

/* ---- run files ---- */

static json_t *json_time_or_null(int64_t t)
{
    return t ? json_integer(t) : json_null();
}

static void jsonl_result(const struct h2r_run_result *r, int with_type)
{
    json_t *o = json_object();
    if (with_type)
        json_object_set_new(o, "type", json_string("result"));
    json_object_set_new(o, "section", json_integer(r->section));
    json_object_set_new(o, "exchange", json_integer((json_int_t)r->exchange_id));
    json_object_set_new(o, "conn", json_integer((json_int_t)r->trace_conn));
    json_object_set_new(o, "replay_conn", json_integer(r->conn_index));
    json_object_set_new(o, "stream", json_integer(r->stream_id));
    json_object_set_new(o, "method", json_string(r->method));
    json_object_set_new(o, "path", json_string(r->path));
    json_object_set_new(o, "authority", json_str_or_null(r->authority));
    json_object_set_new(o, "status", json_int_or_null(r->status));
    json_object_set_new(o, "grpc_status", json_int_or_null(r->grpc_status));
    json_object_set_new(o, "trace_status", json_int_or_null(r->trace_status));
    json_object_set_new(o, "trace_grpc_status", json_int_or_null(r->trace_grpc_status));
    json_object_set_new(o, "class", json_string(h2r_err_class_name(r->err_class)));
    json_object_set_new(o, "detail", json_str_or_null(r->err_detail));
    json_object_set_new(o, "t_intended_ns", json_integer(r->t_intended_ns));
    json_object_set_new(o, "t_sent_ns", json_time_or_null(r->t_sent_ns));
    json_object_set_new(o, "t_first_byte_ns", json_time_or_null(r->t_first_byte_ns));
    json_object_set_new(o, "t_done_ns", json_integer(r->t_done_ns));
    json_object_set_new(o, "latency_ns", json_integer(r->t_done_ns - r->t_intended_ns));
    json_object_set_new(o, "service_ns",
                        r->t_sent_ns ? json_integer(r->t_done_ns - r->t_sent_ns) : json_null());
    json_object_set_new(o, "late_ns",
                        r->t_sent_ns ? json_integer(r->t_sent_ns - r->t_intended_ns)
                                     : json_null());
    json_object_set_new(o, "req_bytes", json_integer((json_int_t)r->req_bytes));
    json_object_set_new(o, "resp_bytes", json_integer((json_int_t)r->resp_bytes));
    if (r->flags & H2R_RES_F_TS) { /* TS2021 node session steps (docs/ts2021.md) */
        json_object_set_new(o, "t_open_ns", json_time_or_null(r->t_open_ns));
        json_object_set_new(o, "t_netmap_ns", json_time_or_null(r->t_netmap_ns));
        json_object_set_new(o, "t_last_netmap_ns", json_time_or_null(r->t_last_netmap_ns));
        json_object_set_new(o, "t_end_ns", json_time_or_null(r->t_end_ns));
        json_object_set_new(o, "netmaps", json_integer((json_int_t)r->netmaps));
        json_object_set_new(o, "keepalives", json_integer((json_int_t)r->keepalives));
        json_object_set_new(o, "peers", json_integer((json_int_t)r->peers));
    }
    print_json(o);
}

static void jsonl_run_other(const struct h2r_run_record *rec)
{
    json_t *o = json_object();
    switch (rec->kind) {
    case H2R_RUN_REC_SECTION: {
        const struct h2r_run_section *s = &rec->u.section;
        json_object_set_new(o, "type", json_string("section"));
        json_object_set_new(o, "section", json_integer(s->id));
        json_object_set_new(o, "name", json_string(s->name));
        json_object_set_new(o, "url", json_str_or_null(s->url));
        json_object_set_new(o, "speed", s->speed > 0 ? json_real(s->speed) : json_string("max"));
        json_object_set_new(o, "t0_wall_ns", json_integer(s->t0_wall_ns));
        json_object_set_new(o, "timeout_ns", json_integer(s->timeout_ns));
        json_object_set_new(o, "label", json_str_or_null(s->label));
        json_object_set_new(o, "clock_offset_ns", json_time_or_null(s->clock_offset_ns));
        json_object_set_new(o, "clock_max_error_ns", s->clock_max_error_ns >= 0
                                                         ? json_integer(s->clock_max_error_ns)
                                                         : json_null());
        break;
    }
    case H2R_RUN_REC_SAMPLE: {
        const struct h2r_run_sample *s = &rec->u.sample;
        json_object_set_new(o, "type", json_string("sample"));
        json_object_set_new(o, "section", json_integer(s->section));
        json_object_set_new(o, "t_ns", json_integer(s->t_ns));
        json_object_set_new(o, "interval_ns", json_integer(s->interval_ns));
        json_object_set_new(o, "in_flight", json_integer((json_int_t)s->in_flight));
        json_object_set_new(o, "open_conns", json_integer((json_int_t)s->open_conns));
        json_object_set_new(o, "due", json_integer((json_int_t)s->due));
        json_object_set_new(o, "sent", json_integer((json_int_t)s->sent));
        json_object_set_new(o, "done", json_integer((json_int_t)s->done));
        json_object_set_new(o, "errors", json_integer((json_int_t)s->errors));
        json_object_set_new(o, "max_late_ns", json_integer(s->max_late_ns));
        break;
    }
    case H2R_RUN_REC_SECTION_END: {
        const struct h2r_run_section_end *e = &rec->u.end;
        json_object_set_new(o, "type", json_string("section_end"));
        json_object_set_new(o, "section", json_integer(e->section));
        json_object_set_new(o, "t_end_ns", json_integer(e->t_end_ns));
        json_object_set_new(o, "exchanges", json_integer((json_int_t)e->exchanges));
        json_object_set_new(o, "errors", json_integer((json_int_t)e->errors));
        json_object_set_new(o, "interrupted", json_boolean(e->interrupted));
        json_object_set_new(o, "cpu_user_ns", json_integer(e->cpu_user_ns));
        json_object_set_new(o, "cpu_sys_ns", json_integer(e->cpu_sys_ns));
        json_object_set_new(o, "max_rss_kb", json_integer((json_int_t)e->max_rss_kb));
        json_object_set_new(o, "loop_threads", json_integer(e->loop_threads));
        json_object_set_new(o, "max_late_ns", json_integer(e->max_late_ns));
        json_object_set_new(o, "late_p99_ns", json_integer(e->late_p99_ns));
        json_object_set_new(o, "peak_fds", json_integer((json_int_t)e->peak_fds));
        json_object_set_new(o, "peak_conns", json_integer((json_int_t)e->peak_conns));
        json_object_set_new(o, "fd_limit", json_integer((json_int_t)e->fd_limit));
        json_object_set_new(o, "emfile_errors", json_integer((json_int_t)e->emfile_errors));
        break;
    }
    case H2R_RUN_REC_ACK: {
        const struct h2r_run_ack *a = &rec->u.ack;
        json_object_set_new(o, "type", json_string("ack"));
        json_object_set_new(o, "section", json_integer(a->section));
        json_object_set_new(o, "exchange", json_integer((json_int_t)a->exchange_id));
        json_object_set_new(o, "conn", json_integer((json_int_t)a->trace_conn));
        json_object_set_new(o, "t_ns", json_integer(a->t_ns));
        json_object_set_new(o, "kind", json_str_or_null(a->kind));
        json_object_set_new(o, "id", json_str_or_null(a->id));
        json_object_set_new(o, "name", json_str_or_null(a->name));
        json_object_set_new(o, "key", json_str_or_null(a->key));
        json_object_set_new(o, "prefix", json_str_or_null(a->prefix));
        json_object_set_new(o, "node_key", json_str_or_null(a->node_key));
        json_object_set_new(o, "machine_key", json_str_or_null(a->machine_key));
        json_object_set_new(o, "hostname", json_str_or_null(a->hostname));
        json_object_set_new(o, "source", json_string(a->source == H2R_ACK_SRC_REQUEST
                                                         ? "request"
                                                         : "response"));
        break;
    }
    case H2R_RUN_REC_VERIFY: {
        const struct h2r_run_verify *v = &rec->u.verify;
        json_object_set_new(o, "type", json_string("verify"));
        json_object_set_new(o, "section", json_integer(v->section));
        json_object_set_new(o, "t_ns", json_integer(v->t_ns));
        json_object_set_new(o, "db", json_str_or_null(v->db_kind));
        json_object_set_new(o, "error", json_str_or_null(v->error));
        json_object_set_new(o, "acks", json_integer((json_int_t)v->acks));
        json_object_set_new(o, "acks_dropped", json_integer((json_int_t)v->acks_dropped));
        json_object_set_new(o, "ignored", json_integer((json_int_t)v->ignored));
        json_object_set_new(o, "baseline_failed", json_integer((json_int_t)v->baseline_failed));
        json_t *kinds = json_object();
        for (size_t i = 0; i < v->n_kinds; i++) {
            const struct h2r_run_verify_kind *k = &v->kinds[i];
            json_t *ko = json_object();
            json_object_set_new(ko, "acknowledged", json_integer((json_int_t)k->acknowledged));
            json_object_set_new(ko, "present", json_integer((json_int_t)k->present));
            json_object_set_new(ko, "lost", json_integer((json_int_t)k->lost));
            json_object_set_new(ko, "unacknowledged",
                                json_integer((json_int_t)k->unacknowledged));
            json_object_set_new(ko, "existing_before",
                                json_integer((json_int_t)k->existing_before));
            json_object_set_new(ko, "before_max_id", k->before_max_id >= 0
                                                         ? json_integer(k->before_max_id)
                                                         : json_null());
            json_t *lost = json_array(), *unacked = json_array();
            for (size_t j = 0; j < k->n_lost_examples; j++)
                json_array_append_new(lost, json_string(k->lost_examples[j]));
            for (size_t j = 0; j < k->n_unacked_examples; j++)
                json_array_append_new(unacked, json_string(k->unacked_examples[j]));
            json_object_set_new(ko, "lost_examples", lost);
            json_object_set_new(ko, "unacknowledged_examples", unacked);
            json_object_set_new(kinds, k->kind ? k->kind : "?", ko);
        }
        json_object_set_new(o, "kinds", kinds);
        break;
    }
    case H2R_RUN_REC_DB_SAMPLE: {
        const struct h2r_run_db_sample *d = &rec->u.db;
        json_object_set_new(o, "type", json_string("db_sample"));
        json_object_set_new(o, "section", json_integer(d->section));
        json_object_set_new(o, "t_ns", json_integer(d->t_ns));
        json_object_set_new(o, "db", json_str_or_null(d->db_kind));
        json_t *vals = json_object();
        for (size_t i = 0; i < d->n_values; i++)
            json_object_set_new(vals, d->values[i].name,
                                json_integer((json_int_t)d->values[i].value));
        json_object_set_new(o, "values", vals);
        break;
    }
    default:
        json_decref(o);
        return; /* a kind this build does not know: the reader already skips those */
    }
    print_json(o);
}

static void table_result(const struct h2r_run_result *r)
{
    char at[32], lat[32], late[32], status[16];
    h2r_format_duration(r->t_intended_ns, at, sizeof(at));
    h2r_format_duration(r->t_done_ns - r->t_intended_ns, lat, sizeof(lat));
    if (r->t_sent_ns)
        h2r_format_duration(r->t_sent_ns - r->t_intended_ns, late, sizeof(late));
    else
        snprintf(late, sizeof(late), "-");
    if (r->status >= 0)
        snprintf(status, sizeof(status), "%d", r->status);
    else
        snprintf(status, sizeof(status), "-");
    printf("%3u %7" PRIu64 " %5" PRIu64 " %10s %9s %9s %-7.7s %-6s %-17.17s %s\n", r->section,
           r->exchange_id, r->trace_conn, at, late, lat, r->method, status,
           h2r_err_class_name(r->err_class), r->path);
}

static int show_run(const char *path, enum show_format fmt, int all)
{
    struct h2r_run_reader *r;
    char err[512];
    int rc = h2r_run_reader_open(&r, path, err, sizeof(err));
    if (rc) {
        cli_err("show", "%s", err);
        return 1;
    }
    const struct h2r_run_meta *m = h2r_run_reader_meta(r);
    if (fmt == FMT_TABLE) {
        printf("run %s: written by h2replay %s on %s\ntrace %s (sha256 %.16s...)", path,
               m->tool_version ? m->tool_version : "?", m->host ? m->host : "?",
               m->trace_path ? m->trace_path : "?", m->trace_sha256 ? m->trace_sha256 : "?");
        if (m->shard_count > 1)
            printf(", shard %u/%u", m->shard_index, m->shard_count);
        printf("\n");
    } else if (all) {
        json_t *o = json_object();
        json_object_set_new(o, "type", json_string("meta"));
        json_object_set_new(o, "tool_version", json_str_or_null(m->tool_version));
        json_object_set_new(o, "trace_path", json_str_or_null(m->trace_path));
        json_object_set_new(o, "trace_sha256", json_str_or_null(m->trace_sha256));
        json_object_set_new(o, "host", json_str_or_null(m->host));
        json_object_set_new(o, "command", json_str_or_null(m->command));
        json_object_set_new(o, "settings", json_str_or_null(m->settings));
        json_object_set_new(o, "shard_index", json_integer(m->shard_index));
        json_object_set_new(o, "shard_count", json_integer(m->shard_count));
        json_object_set_new(o, "start_at_ns", json_time_or_null(m->start_at_ns));
        print_json(o);
    }
    struct h2r_run_record rec;
    uint64_t results = 0, errors = 0, acks = 0;
    while ((rc = h2r_run_reader_next(r, &rec)) == 1) {
        if (rec.kind == H2R_RUN_REC_RESULT) {
            results++;
            errors += rec.u.result.err_class != H2R_EC_NONE;
            if (fmt == FMT_JSONL)
                jsonl_result(&rec.u.result, all);
            else
                table_result(&rec.u.result);
            continue;
        }
        if (fmt == FMT_JSONL) {
            if (all)
                jsonl_run_other(&rec);
            continue;
        }
        if (rec.kind == H2R_RUN_REC_SECTION) {
            printf("\nsection %u: %s  %s  speed %s%.1f  timeout %.1fs%s%s\n", rec.u.section.id,
                   rec.u.section.name, rec.u.section.url ? rec.u.section.url : "",
                   rec.u.section.speed > 0 ? "x" : "max ",
                   rec.u.section.speed > 0 ? rec.u.section.speed : 0.0,
                   (double)rec.u.section.timeout_ns / 1e9, rec.u.section.label ? "  " : "",
                   rec.u.section.label ? rec.u.section.label : "");
            printf("%3s %7s %5s %10s %9s %9s %-7s %-6s %-17s %s\n", "SEC", "EXCH", "CONN",
                   "DUE", "LATE", "LATENCY", "METHOD", "STATUS", "CLASS", "PATH");
        } else if (rec.kind == H2R_RUN_REC_ACK) {
            acks++;
        } else if (rec.kind == H2R_RUN_REC_VERIFY) {
            const struct h2r_run_verify *v = &rec.u.verify;
            printf("section %u verify (%s): %" PRIu64 " acknowledgements", v->section,
                   v->db_kind ? v->db_kind : "?", v->acks);
            if (v->error)
                printf(", could not check: %s", v->error);
            for (size_t i = 0; i < v->n_kinds; i++) {
                printf("%s %s %" PRIu64 " acknowledged / %" PRIu64 " present, %" PRIu64
                       " lost, %" PRIu64 " never acknowledged",
                       i ? ";" : ":", v->kinds[i].kind ? v->kinds[i].kind : "?",
                       v->kinds[i].acknowledged, v->kinds[i].present, v->kinds[i].lost,
                       v->kinds[i].unacknowledged);
                if (v->kinds[i].existing_before)
                    printf(" (%" PRIu64 " existed before)", v->kinds[i].existing_before);
            }
            if (v->baseline_failed)
                printf("; %" PRIu64 " kind%s without a baseline", v->baseline_failed,
                       v->baseline_failed == 1 ? "" : "s");
            printf("\n");
        } else if (rec.kind == H2R_RUN_REC_SECTION_END) {
            printf("section %u end: %" PRIu64 " exchanges, %" PRIu64 " errors%s, cpu %.2fs, "
                   "max rss %" PRIu64 " kB\n",
                   rec.u.end.section, rec.u.end.exchanges, rec.u.end.errors,
                   rec.u.end.interrupted ? ", INTERRUPTED" : "",
                   (double)(rec.u.end.cpu_user_ns + rec.u.end.cpu_sys_ns) / 1e9,
                   rec.u.end.max_rss_kb);
        }
    }
    fflush(stdout);
    int status = 0;
    if (rc < 0) {
        cli_err("show", "%s", h2r_run_reader_errmsg(r));
        status = 1;
    }
    if (fmt == FMT_TABLE && rc >= 0)
        printf("\n%" PRIu64 " results, %" PRIu64 " failed, %" PRIu64 " acknowledgements\n",
               results, errors, acks);
    h2r_run_reader_free(r);
    return status;
}

int cmd_show(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"format", required_argument, NULL, 'F'}, {"records", required_argument, NULL, 'R'},
        {"headers", no_argument, NULL, 'H'},      {"frames", no_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    enum show_format fmt = FMT_TABLE;
    int all = 0, ts_only = 0, headers = 0, frames = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'F':
            if (strcmp(optarg, "table") == 0) {
                fmt = FMT_TABLE;
            } else if (strcmp(optarg, "jsonl") == 0) {
                fmt = FMT_JSONL;
            } else {
                cli_err("show", "--format: '%s' is not one of table, jsonl", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'R':
            if (strcmp(optarg, "all") == 0) {
                all = 1;
                ts_only = 0;
            } else if (strcmp(optarg, "exchanges") == 0) {
                all = 0;
                ts_only = 0;
            } else if (strcmp(optarg, "ts2021") == 0) {
                all = 0;
                ts_only = 1;
            } else {
                cli_err("show", "--records: '%s' is not one of exchanges, ts2021, all", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'H':
            headers = 1;
            break;
        case 'T':
            frames = 1;
            break;
        case 'h':
            show_usage(stdout);
            return 0;
        default:
            show_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        cli_err("show", "expected exactly one TRACE argument (see --help)");
        return EXIT_USAGE;
    }
    const char *path = argv[optind];
    if (strcmp(path, "-") != 0 && h2r_run_file_probe(path))
        return show_run(path, fmt, all);

    struct h2r_trace_reader *r;
    char err[512];
    int rc = h2r_trace_reader_open(&r, path, err, sizeof(err));
    if (rc) {
        cli_err("show", "%s", err);
        return 1;
    }
    const struct h2r_trace_header *h = h2r_trace_reader_header(r);
    if (fmt == FMT_TABLE) {
        char when[64] = "?";
        time_t secs = (time_t)(h->start_ns / 1000000000LL);
        struct tm tm;
        if (gmtime_r(&secs, &tm))
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("trace %s: format %u, written by h2replay %s\n", path, h->format_version,
               h->tool_version ? h->tool_version : "?");
        printf("source %s, link type %d, started %s", h->source ? h->source : "?", h->linktype,
               when);
        if (h->options)
            printf(", options: %s", h->options);
        printf("\n");
    }

    /* the table lists connections after the exchanges; keep their lines in memory (bounded) */
    struct h2r_trace_record rec;
    uint64_t n_exch = 0, n_conn = 0, conn_lines_dropped = 0;
    uint64_t n_ts = 0, n_ts_identified = 0, ts_lines_dropped = 0;
    struct node_set nodes = {NULL, 0, 0};
    int have_summary = 0;
    char **conn_lines = NULL, **ts_lines = NULL;
    size_t n_lines = 0, cap_lines = 0, n_ts_lines = 0, cap_ts_lines = 0;
    const size_t max_lines = 10000;
    while ((rc = h2r_trace_reader_next(r, &rec)) == 1) {
        switch (rec.kind) {
        case H2R_REC_EXCHANGE:
            n_exch++;
            if (fmt == FMT_JSONL) {
                if (!ts_only)
                    jsonl_exchange(&rec.u.exch, all, headers);
            } else {
                if (n_exch == 1) /* the header only when there are exchanges to list */
                    printf("\n%6s %5s %6s %10s %9s %-7s %-8s %9s %9s  %s\n", "EXCH", "CONN",
                           "STREAM", "AT", "DURATION", "METHOD", "STATUS", "REQ_B", "RESP_B",
                           "PATH [ERROR]");
                table_exchange(&rec.u.exch, h->start_ns, headers);
            }
            break;
        case H2R_REC_TS_SESSION:
            n_ts++;
            n_ts_identified += (rec.u.ts.flags & H2R_TS_F_IDENTIFIED) != 0;
            node_set_add(&nodes, rec.u.ts.node);
            if (fmt == FMT_JSONL) {
                if (all || ts_only)
                    jsonl_ts_session(&rec.u.ts, frames);
                break;
            }
            if (n_ts_lines >= max_lines) {
                ts_lines_dropped++;
                break;
            }
            if (n_ts_lines == cap_ts_lines) {
                size_t ncap = cap_ts_lines ? cap_ts_lines * 2 : 64;
                char **nl = realloc(ts_lines, ncap * sizeof(*nl));
                if (!nl) {
                    ts_lines_dropped++;
                    break;
                }
                ts_lines = nl;
                cap_ts_lines = ncap;
            }
            ts_lines[n_ts_lines] = table_ts_line(&rec.u.ts, h->start_ns);
            if (ts_lines[n_ts_lines])
                n_ts_lines++;
            break;
        case H2R_REC_CONN:
            n_conn++;
            if (fmt == FMT_JSONL) {
                if (all)
                    jsonl_conn(&rec.u.conn);
                break;
            }
            if (n_lines >= max_lines) {
                conn_lines_dropped++;
                break;
            }
            if (n_lines == cap_lines) {
                size_t ncap = cap_lines ? cap_lines * 2 : 64;
                char **nl = realloc(conn_lines, ncap * sizeof(*nl));
                if (!nl) {
                    conn_lines_dropped++;
                    break;
                }
                cap_lines = ncap;
                conn_lines = nl;
            }
            {
                char line[256];
                snprintf(line, sizeof(line), "conn %5" PRIu64 "  %s -> %s  %s%s",
                         rec.u.conn.id, rec.u.conn.client, rec.u.conn.server,
                         h2r_transport_name(rec.u.conn.transport),
                         rec.u.conn.flags & H2R_CONN_F_PARTIAL ? " (partial: no SYN seen)" : "");
                conn_lines[n_lines] = strdup(line);
                if (conn_lines[n_lines])
                    n_lines++;
            }
            break;
        case H2R_REC_CONN_END:
            if (fmt == FMT_JSONL) {
                if (all)
                    jsonl_conn_end(&rec.u.end);
                break;
            }
            if (rec.u.end.reason || rec.u.end.gap_bytes) {
                char line[256];
                snprintf(line, sizeof(line),
                         "conn %5" PRIu64 "  ended %s, %" PRIu64 " exchanges, %" PRIu64
                         " bytes lost%s%s",
                         rec.u.end.id, h2r_conn_how_name(rec.u.end.how), rec.u.end.exchanges,
                         rec.u.end.gap_bytes,
                         !rec.u.end.reason                           ? ""
                         : rec.u.end.how == H2R_CONN_END_UNDECODABLE ? ", undecodable: "
                                                                     : ", ",
                         rec.u.end.reason ? rec.u.end.reason : "");
                if (n_lines < max_lines && n_lines < cap_lines) {
                    conn_lines[n_lines] = strdup(line);
                    if (conn_lines[n_lines])
                        n_lines++;
                } else if (n_lines < max_lines) {
                    cap_lines = cap_lines ? cap_lines * 2 : 64;
                    char **nl = realloc(conn_lines, cap_lines * sizeof(*nl));
                    if (nl) {
                        conn_lines = nl;
                        conn_lines[n_lines] = strdup(line);
                        if (conn_lines[n_lines])
                            n_lines++;
                    }
                }
            }
            break;
        case H2R_REC_SUMMARY:
            have_summary = 1;
            if (fmt == FMT_JSONL) {
                if (all)
                    jsonl_summary(&rec.u.summary);
                break;
            }
            print_ts_lines(ts_lines, n_ts_lines, ts_lines_dropped);
            n_ts_lines = 0;
            printf("\n");
            for (size_t i = 0; i < n_lines; i++) {
                puts(conn_lines[i]);
                free(conn_lines[i]);
            }
            if (conn_lines_dropped)
                printf("(%" PRIu64 " more connections not listed)\n", conn_lines_dropped);
            n_lines = 0;
            {
                const struct h2r_capture_summary *s = &rec.u.summary;
                char bytes[32];
                printf("\nsummary: %" PRIu64 " packets, %s, %" PRIu64 " flows, %" PRIu64
                       " exchanges, %" PRIu64 " gaps, %" PRIu64 " undecodable flows\n",
                       s->packets, h2r_format_bytes(s->bytes, bytes, sizeof(bytes)), s->flows,
                       s->exchanges, s->gaps, s->undecodable_flows);
                for (size_t i = 0; i < s->n_counters; i++)
                    printf("  %-36s %" PRIu64 "\n", s->counters[i].name, s->counters[i].value);
            }
            break;
        default:
            break;
        }
    }
    print_ts_lines(ts_lines, n_ts_lines, ts_lines_dropped);
    free(ts_lines);
    for (size_t i = 0; i < n_lines; i++) {
        puts(conn_lines[i]);
        free(conn_lines[i]);
    }
    free(conn_lines);
    free(nodes.bits);
    fflush(stdout);
    int status = 0;
    if (rc < 0) {
        cli_err("show", "%s", h2r_trace_reader_errmsg(r));
        status = 1;
    } else if (!have_summary) {
        cli_err("show", "%s: no summary record: the capture did not finish (killed?); "
                        "%" PRIu64 " exchanges read",
                path, n_exch);
    }
    if (h2r_trace_reader_skipped(r))
        fprintf(stderr, "h2replay show: skipped %" PRIu64 " records of unknown kinds "
                        "(written by a newer h2replay)\n",
                h2r_trace_reader_skipped(r));
    if (fmt == FMT_TABLE && rc >= 0) {
        printf("\n%" PRIu64 " exchanges on %" PRIu64 " connections\n", n_exch, n_conn);
        if (n_ts)
            printf("%" PRIu64 " TS2021 sessions, %" PRIu64 " distinct nodes, %" PRIu64
                   " identified\n",
                   n_ts, nodes.distinct, n_ts_identified);
    }
    h2r_trace_reader_free(r);
    return status;
}
