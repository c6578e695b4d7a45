/*
 * rp_runcat: prints a run file with the core run reader, for the replay
 * end-to-end tests and the benchmark (until `h2replay show` reads run files).
 *
 *   rp_runcat RUN            one line per record: kind, then key=value fields
 *   rp_runcat --summary RUN  per section: results by class, exact send-lateness and
 *                            latency percentiles computed from the results
 * Exit status 0 when the whole file was read (every section ended), 1 when it
 * is unreadable, damaged, or a section has no section end, 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/run.h"

struct vec {
    int64_t *v;
    size_t n, cap;
};

static void push(struct vec *v, int64_t x)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 1024;
        v->v = realloc(v->v, v->cap * sizeof(*v->v));
        if (!v->v)
            exit(1);
    }
    v->v[v->n++] = x;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int64_t pct(struct vec *v, double q)
{
    if (!v->n)
        return 0;
    size_t i = (size_t)(q * (double)v->n);
    if (i >= v->n)
        i = v->n - 1;
    return v->v[i];
}

struct sec {
    uint64_t results, by_class[H2R_EC_MAX_], status_match, sent;
    struct vec late, lat_sent, lat_intended;
    int64_t first_sent, last_done;
    int ended, interrupted;
    char name[128];
};

static void print_summary(uint32_t id, struct sec *s)
{
    qsort(s->late.v, s->late.n, sizeof(int64_t), cmp64);
    qsort(s->lat_sent.v, s->lat_sent.n, sizeof(int64_t), cmp64);
    qsort(s->lat_intended.v, s->lat_intended.n, sizeof(int64_t), cmp64);
    double span = (double)(s->last_done - s->first_sent) / 1e9;
    printf("section=%u name=%s results=%llu sent=%llu status_match=%llu ended=%d "
           "interrupted=%d",
           id, s->name, (unsigned long long)s->results, (unsigned long long)s->sent,
           (unsigned long long)s->status_match, s->ended, s->interrupted);
    for (uint32_t c = 0; c < H2R_EC_MAX_; c++)
        if (s->by_class[c])
            printf(" %s=%llu", h2r_err_class_name(c), (unsigned long long)s->by_class[c]);
    printf(" late_p50_ns=%lld late_p99_ns=%lld late_max_ns=%lld lat_p50_ns=%lld "
           "lat_p99_ns=%lld lat_intended_p99_ns=%lld span_s=%.3f rate=%.1f\n",
           (long long)pct(&s->late, 0.5), (long long)pct(&s->late, 0.99),
           (long long)(s->late.n ? s->late.v[s->late.n - 1] : 0), (long long)pct(&s->lat_sent, 0.5),
           (long long)pct(&s->lat_sent, 0.99), (long long)pct(&s->lat_intended, 0.99), span,
           span > 0 ? (double)s->sent / span : 0.0);
}

int main(int argc, char **argv)
{
    int summary = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--summary") == 0)
            summary = 1;
        else if (!path)
            path = argv[i];
        else
            path = NULL;
    }
    if (!path) {
        fprintf(stderr, "usage: rp_runcat [--summary] RUN\n");
        return 2;
    }
    struct h2r_run_reader *r;
    char err[256];
    if (h2r_run_reader_open(&r, path, err, sizeof(err))) {
        fprintf(stderr, "rp_runcat: %s\n", err);
        return 1;
    }
    const struct h2r_run_meta *m = h2r_run_reader_meta(r);
    if (!summary)
        printf("meta trace=%s sha256=%s settings=\"%s\" command=\"%s\"\n", m->trace_path,
               m->trace_sha256, m->settings, m->command);
    static struct sec secs[64];
    uint32_t n_secs = 0;
    int rc = 0;
    for (;;) {
        struct h2r_run_record rec;
        int n = h2r_run_reader_next(r, &rec);
        if (n == 0)
            break;
        if (n < 0) {
            fprintf(stderr, "rp_runcat: %s\n", h2r_run_reader_errmsg(r));
            rc = 1;
            break;
        }
        if (rec.kind == H2R_RUN_REC_SECTION) {
            const struct h2r_run_section *s = &rec.u.section;
            if (s->id < 64) {
                snprintf(secs[s->id].name, sizeof(secs[s->id].name), "%s", s->name);
                if (s->id + 1 > n_secs)
                    n_secs = s->id + 1;
            }
            if (!summary)
                printf("section id=%u name=%s url=%s speed=%g timeout_ns=%lld label=%s\n", s->id,
                       s->name, s->url, s->speed, (long long)s->timeout_ns,
                       s->label ? s->label : "");
        } else if (rec.kind == H2R_RUN_REC_RESULT) {
            const struct h2r_run_result *x = &rec.u.result;
            if (x->section < 64) {
                struct sec *s = &secs[x->section];
                s->results++;
                if (x->err_class < H2R_EC_MAX_)
                    s->by_class[x->err_class]++;
                if (x->status == x->trace_status)
                    s->status_match++;
                if (x->t_sent_ns) {
                    s->sent++;
                    push(&s->late, x->t_sent_ns - x->t_intended_ns);
                    if (!s->first_sent || x->t_sent_ns < s->first_sent)
                        s->first_sent = x->t_sent_ns;
                    if (x->err_class == H2R_EC_NONE) {
                        push(&s->lat_sent, x->t_done_ns - x->t_sent_ns);
                        push(&s->lat_intended, x->t_done_ns - x->t_intended_ns);
                    }
                }
                if (x->t_done_ns > s->last_done)
                    s->last_done = x->t_done_ns;
            }
            if (!summary)
                printf("result section=%u id=%llu trace_conn=%llu conn=%u stream=%u "
                       "method=%s path=%s authority=%s status=%d trace_status=%d grpc=%d "
                       "class=%s detail=%s t_intended=%lld t_sent=%lld t_first=%lld "
                       "t_done=%lld req_bytes=%llu resp_bytes=%llu flags=%u\n",
                       x->section, (unsigned long long)x->exchange_id,
                       (unsigned long long)x->trace_conn, x->conn_index, x->stream_id,
                       x->method ? x->method : "-", x->path ? x->path : "-",
                       x->authority ? x->authority : "-", x->status, x->trace_status,
                       x->grpc_status, h2r_err_class_name(x->err_class),
                       x->err_detail ? x->err_detail : "-", (long long)x->t_intended_ns,
                       (long long)x->t_sent_ns, (long long)x->t_first_byte_ns,
                       (long long)x->t_done_ns, (unsigned long long)x->req_bytes,
                       (unsigned long long)x->resp_bytes, x->flags);
            if (!summary && (x->flags & H2R_RES_F_TS)) /* TS2021 node session step */
                printf("ts section=%u id=%llu t_open=%lld t_netmap=%lld t_last_netmap=%lld "
                       "t_end=%lld netmaps=%llu keepalives=%llu peers=%llu\n",
                       x->section, (unsigned long long)x->exchange_id, (long long)x->t_open_ns,
                       (long long)x->t_netmap_ns, (long long)x->t_last_netmap_ns,
                       (long long)x->t_end_ns, (unsigned long long)x->netmaps,
                       (unsigned long long)x->keepalives, (unsigned long long)x->peers);
        } else if (rec.kind == H2R_RUN_REC_SAMPLE) {
            const struct h2r_run_sample *s = &rec.u.sample;
            if (!summary)
                printf("sample section=%u t=%lld interval=%lld in_flight=%llu open_conns=%llu "
                       "due=%llu sent=%llu done=%llu errors=%llu max_late=%lld\n",
                       s->section, (long long)s->t_ns, (long long)s->interval_ns,
                       (unsigned long long)s->in_flight, (unsigned long long)s->open_conns,
                       (unsigned long long)s->due, (unsigned long long)s->sent,
                       (unsigned long long)s->done, (unsigned long long)s->errors,
                       (long long)s->max_late_ns);
        } else if (rec.kind == H2R_RUN_REC_SECTION_END) {
            const struct h2r_run_section_end *e = &rec.u.end;
            if (e->section < 64) {
                secs[e->section].ended = 1;
                secs[e->section].interrupted = e->interrupted;
            }
            if (!summary)
                printf("end section=%u t_end=%lld exchanges=%llu errors=%llu interrupted=%d "
                       "cpu_user_ns=%lld cpu_sys_ns=%lld max_rss_kb=%llu\n",
                       e->section, (long long)e->t_end_ns, (unsigned long long)e->exchanges,
                       (unsigned long long)e->errors, e->interrupted, (long long)e->cpu_user_ns,
                       (long long)e->cpu_sys_ns, (unsigned long long)e->max_rss_kb);
        }
    }
    for (uint32_t i = 0; i < n_secs; i++) {
        if (summary)
            print_summary(i, &secs[i]);
        if (!secs[i].ended)
            rc = 1;
        free(secs[i].late.v);
        free(secs[i].lat_sent.v);
        free(secs[i].lat_intended.v);
    }
    h2r_run_reader_free(r);
    return rc;
}
