/*
 * The analyze stage's driver: streams every input once (baseline first),
 * turns run-file sections and trace exchanges into runs (an_run.c), checks
 * that what is compared is comparable (same trace, same settings; shards of
 * one replay merge), then derives the diff rows and gate verdicts and hands
 * the finished model to one report writer.
 *
 * Nothing here keeps an exchange: memory is the runs' histograms, windows
 * and failure-id arrays (see an_run.c), whatever the run files' sizes.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "h2replay/analyze.h"
#include "h2replay/run.h"
#include "h2replay/trace.h"
#include "an_db.h"
#include "an_fold.h"
#include "an_gate.h"
#include "an_report.h"
#include "an_run.h"
#include "an_serverlog.h"
#include "an_stats.h"

/* Sections per run file (a section is one target). */
#define AN_MAX_SECTIONS 64u

struct section_map {
    uint32_t id;
    struct an_run *run; /* NULL: section not selected */
};

struct an_ctx {
    const struct h2r_analyze_opts *o;
    struct an_folder *folder;
    struct an_gate *gates;
    struct an_run **runs;
    size_t n_runs;
    size_t cap_runs;
    char *cmp_sha; /* the first run file's trace and settings: every other must match */
    char *cmp_settings;
    char *cmp_path;
    char *trace_sha; /* the baseline trace's digest */
    char *trace_path;
    uint64_t exchanges;
    FILE *log;
    char *errbuf;
    size_t errlen;
};

void h2r_analyze_opts_init(struct h2r_analyze_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->group_by = H2R_ANALYZE_BY_ENDPOINT;
    o->window_ns = 1000000000;
    o->format = H2R_ANALYZE_TABLE;
    o->threshold = 0.05;
    o->sustain = 3;
}

int h2r_analyze_exit_code(int rc, const struct h2r_analyze_result *res)
{
    if (rc < 0)
        return 2;
    return res && res->gates_failed ? 1 : 0;
}

int h2r_analyze_check_gate(const char *expr, char *errbuf, size_t errlen)
{
    struct an_gate g;
    return an_gate_parse(expr, &g, errbuf, errlen);
}

static void warn(struct an_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void warn(struct an_ctx *c, const char *fmt, ...)
{
    if (c->o->quiet || !c->log)
        return;
    va_list ap;
    fprintf(c->log, "h2replay analyze: warning: ");
    va_start(ap, fmt);
    vfprintf(c->log, fmt, ap);
    va_end(ap);
    fputc('\n', c->log);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

/* ------------------------------------------------------------ comparability */

static int check_trace_vs(struct an_ctx *c, const char *path, const char *sha)
{
    if (!c->trace_sha || !*sha || strcmp(c->trace_sha, sha) == 0)
        return 0;
    return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_ARG,
                      "cannot compare %s with the baseline trace %s: the run replays another "
                      "trace (sha256 %.16s... vs %.16s...)",
                      path, c->trace_path, sha, c->trace_sha);
}

/* Every run file must replay the same trace with the same settings (for shards, the
 * settings include the partition scheme and the shard count: see docs/distributed.md). */
static int check_comparable(struct an_ctx *c, const char *path, const struct h2r_run_meta *m)
{
    const char *sha = nz(m->trace_sha256), *settings = nz(m->settings);
    const char *verb = m->shard_count > 1 ? "merge or compare shard file" : "compare";
    int rc = check_trace_vs(c, path, sha);
    if (rc)
        return rc;
    if (!c->cmp_path) {
        c->cmp_sha = strdup(sha);
        c->cmp_settings = strdup(settings);
        c->cmp_path = strdup(path);
        if (!c->cmp_sha || !c->cmp_settings || !c->cmp_path)
            return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_NOMEM, "out of memory");
        return 0;
    }
    if (*sha && *c->cmp_sha && strcmp(sha, c->cmp_sha) != 0)
        return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_ARG,
                          "cannot %s %s with %s: they replay different traces (sha256 "
                          "%.16s... vs %.16s...)",
                          verb, path, c->cmp_path, sha, c->cmp_sha);
    if (strcmp(settings, c->cmp_settings) != 0)
        return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_ARG,
                          "cannot %s %s with %s: they were replayed with different "
                          "settings ('%s' vs '%s')",
                          verb, path, c->cmp_path, settings, c->cmp_settings);
    return 0;
}

/* ---------------------------------------------------------------- run files */

static int add_run(struct an_ctx *c, struct an_run *r)
{
    if (c->n_runs == c->cap_runs) {
        size_t cap = c->cap_runs ? c->cap_runs * 2 : 8;
        struct an_run **v = realloc(c->runs, cap * sizeof(*v));
        if (!v)
            return H2R_ERR_NOMEM;
        c->runs = v;
        c->cap_runs = cap;
    }
    c->runs[c->n_runs++] = r;
    return 0;
}

static struct an_run *find_run(const struct an_ctx *c, const char *name)
{
    for (size_t i = 0; i < c->n_runs; i++)
        if (strcmp(c->runs[i]->name, name) == 0)
            return c->runs[i];
    return NULL;
}

/* Shards of one replay share --start-at; a relative one (+30s) is resolved by each worker,
 * so they may differ a little. Shard files further apart are another replay of the job. */
static int same_start(int64_t a, int64_t b)
{
    if (!a || !b)
        return a == b;
    return (a > b ? a - b : b - a) <= AN_SHARD_START_SLACK_NS;
}

/* The shard family run this section merges into, or NULL. */
static struct an_run *find_shard_run(const struct an_ctx *c, const struct h2r_run_meta *m,
                                     const char *section)
{
    for (size_t i = 0; i < c->n_runs; i++) {
        const struct an_run *r = c->runs[i];
        if (r->kind == AN_KIND_RUN && r->shard_count == m->shard_count &&
            strcmp(r->section, section) == 0 && strcmp(r->trace_sha256, nz(m->trace_sha256)) == 0 &&
            strcmp(r->settings, nz(m->settings)) == 0 && same_start(r->start_at_ns, m->start_at_ns))
            return c->runs[i];
    }
    return NULL;
}

static int section_run(struct an_ctx *c, const char *path, const struct h2r_run_meta *m,
                       const struct h2r_run_section *s, int from_baseline, struct an_run **out)
{
    char name[256];
    int rc;
    if (s->name && *s->name)
        snprintf(name, sizeof(name), "%s", s->name);
    else
        snprintf(name, sizeof(name), "section%u", s->id);
    struct an_run *r = m->shard_count > 1 ? find_shard_run(c, m, name) : NULL;
    if (r) {
        rc = an_run_mark_shard(r, m->shard_index);
        if (rc < 0)
            return h2r_seterr(c->errbuf, c->errlen, rc, "out of memory");
        if (rc == 0)
            return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_ARG,
                              "%s: shard %u/%u (0-based index) of section '%s' was given twice "
                              "(already merged from %s)",
                              path, m->shard_index, m->shard_count, name, r->sources);
        r->sections_started++;
        *out = r;
        return an_run_add_source(r, path);
    }
    char unique[512];
    snprintf(unique, sizeof(unique), "%s", name);
    if (find_run(c, unique))
        snprintf(unique, sizeof(unique), "%s:%s", base_name(path), name);
    for (unsigned k = 2; find_run(c, unique) && k < 1000; k++)
        snprintf(unique, sizeof(unique), "%s:%s#%u", base_name(path), name, k);
    rc = an_run_new(&r, unique, AN_KIND_RUN, c->o->window_ns);
    if (rc)
        return rc;
    rc = add_run(c, r);
    if (rc) {
        an_run_free(r);
        return rc;
    }
    r->from_baseline = from_baseline;
    r->speed = s->speed;
    r->timeout_ns = s->timeout_ns;
    r->shard_count = m->shard_count;
    r->start_at_ns = m->start_at_ns;
    r->t0_wall_ns = s->t0_wall_ns; /* --server-log placement (an_serverlog.c) */
    r->clock_max_error_ns = s->clock_max_error_ns;
    if (m->shard_count > 1 && an_run_mark_shard(r, m->shard_index) < 0)
        return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_NOMEM, "out of memory");
    r->sections_started = 1;
    rc = an_set_str(&r->section, name);
    if (!rc)
        rc = an_set_str(&r->label, s->label);
    if (!rc)
        rc = an_set_str(&r->url, s->url);
    if (!rc)
        rc = an_set_str(&r->trace_sha256, m->trace_sha256);
    if (!rc)
        rc = an_set_str(&r->settings, m->settings);
    if (!rc)
        rc = an_set_str(&r->tool_version, m->tool_version);
    if (!rc)
        rc = an_run_add_source(r, path);
    *out = r;
    return rc;
}

static struct section_map *map_find(struct section_map *map, size_t n, uint32_t id)
{
    for (size_t i = 0; i < n; i++)
        if (map[i].id == id)
            return &map[i];
    return NULL;
}

static void obs_from_result(struct an_obs *x, const struct h2r_run_result *res)
{
    x->id = res->exchange_id;
    x->method = res->method;
    x->path = res->path;
    x->grpc = (res->flags & H2R_RES_F_GRPC) != 0;
    x->conn = res->conn_index;
    x->t_intended = res->t_intended_ns;
    /* t_sent 0 means "never sent", unless the exchange evidently was */
    int sent = res->t_sent_ns != 0 || res->stream_id != 0 || res->err_class == H2R_EC_NONE;
    x->t_sent = sent ? res->t_sent_ns : -1;
    x->t_done = res->t_done_ns;
    x->cls = res->err_class;
    x->status = res->status;
    x->detail = res->err_detail;
}

/* "PATH: reason", unless the reader's message names the path already. */
static void open_error(struct an_ctx *c, const char *path, int rc, const char *err)
{
    if (err[0] && strstr(err, path))
        h2r_seterr(c->errbuf, c->errlen, rc, "%s", err);
    else
        h2r_seterr(c->errbuf, c->errlen, rc, "%s: %s", path, err[0] ? err : h2r_strerror(rc));
}

static int ingest_run_file(struct an_ctx *c, const char *path, const char *only_section,
                           int from_baseline)
{
    struct h2r_run_reader *rd = NULL;
    struct section_map map[AN_MAX_SECTIONS];
    size_t n_map = 0;
    uint64_t records = 0, orphans = 0;
    char err[512] = "";
    int rc = h2r_run_reader_open(&rd, path, err, sizeof(err));
    if (rc) {
        open_error(c, path, rc, err);
        goto out;
    }
    const struct h2r_run_meta *m = h2r_run_reader_meta(rd);
    if (m->shard_count > 1 && m->shard_index >= m->shard_count) {
        rc = h2r_seterr(c->errbuf, c->errlen, H2R_ERR_FORMAT, "%s: shard index %u of %u", path,
                        m->shard_index, m->shard_count);
        goto out;
    }
    if (m->shard_count > AN_MAX_SHARDS) {
        rc = h2r_seterr(c->errbuf, c->errlen, H2R_ERR_LIMIT, "%s: %u shards (at most %u)", path,
                        m->shard_count, AN_MAX_SHARDS);
        goto out;
    }
    rc = check_comparable(c, path, m);
    if (rc)
        goto out;
    for (;;) {
        struct h2r_run_record rec;
        rc = h2r_run_reader_next(rd, &rec);
        if (rc <= 0)
            break;
        records++;
        if (rec.kind == H2R_RUN_REC_SECTION) {
            const struct h2r_run_section *s = &rec.u.section;
            if (map_find(map, n_map, s->id)) {
                rc = h2r_seterr(c->errbuf, c->errlen, H2R_ERR_FORMAT,
                                "%s: section %u appears twice", path, s->id);
                goto out;
            }
            if (n_map == AN_MAX_SECTIONS) {
                rc = h2r_seterr(c->errbuf, c->errlen, H2R_ERR_LIMIT, "%s: more than %u sections",
                                path, AN_MAX_SECTIONS);
                goto out;
            }
            map[n_map].id = s->id;
            map[n_map].run = NULL;
            if (!only_section || strcmp(nz(s->name), only_section) == 0) {
                rc = section_run(c, path, m, s, from_baseline, &map[n_map].run);
                if (rc)
                    goto out;
            }
            n_map++;
            continue;
        }
        uint32_t sec = rec.kind == H2R_RUN_REC_RESULT        ? rec.u.result.section
                       : rec.kind == H2R_RUN_REC_SAMPLE      ? rec.u.sample.section
                       : rec.kind == H2R_RUN_REC_SECTION_END ? rec.u.end.section
                       : rec.kind == H2R_RUN_REC_DB_SAMPLE   ? rec.u.db.section
                       : rec.kind == H2R_RUN_REC_ACK         ? rec.u.ack.section
                       : rec.kind == H2R_RUN_REC_VERIFY      ? rec.u.verify.section
                                                             : UINT32_MAX;
        struct section_map *sm = map_find(map, n_map, sec);
        if (!sm) {
            orphans++;
            continue;
        }
        struct an_run *r = sm->run;
        if (!r)
            continue;
        if (rec.kind == H2R_RUN_REC_RESULT) {
            struct an_obs x;
            obs_from_result(&x, &rec.u.result);
            rc = an_run_add(r, &x, c->folder, c->o->group_by);
            if (rc) {
                h2r_seterr(c->errbuf, c->errlen, rc, "%s: %s", path, h2r_strerror(rc));
                goto out;
            }
            c->exchanges++;
        } else if (rec.kind == H2R_RUN_REC_SAMPLE) {
            r->samples++;
            if (rec.u.sample.max_late_ns > r->max_late_ns)
                r->max_late_ns = rec.u.sample.max_late_ns;
        } else if (rec.kind == H2R_RUN_REC_DB_SAMPLE) {
            rc = an_db_add(&r->db, &rec.u.db); /* database evidence, an_db.c */
            if (rc) {
                h2r_seterr(c->errbuf, c->errlen, rc, "%s: %s", path, h2r_strerror(rc));
                goto out;
            }
        } else if (rec.kind == H2R_RUN_REC_ACK || rec.kind == H2R_RUN_REC_VERIFY) {
            rc = rec.kind == H2R_RUN_REC_ACK ? an_db_add_ack(&r->db, &rec.u.ack)
                                             : an_db_add_verify(&r->db, &rec.u.verify);
            if (rc) { /* acknowledged vs stored, an_db.c */
                h2r_seterr(c->errbuf, c->errlen, rc, "%s: %s", path, h2r_strerror(rc));
                goto out;
            }
        } else if (rec.kind == H2R_RUN_REC_SECTION_END) {
            const struct h2r_run_section_end *e = &rec.u.end;
            if (an_db_add_end(&r->db, e)) { /* the client's resources, an_db.c */
                rc = h2r_seterr(c->errbuf, c->errlen, H2R_ERR_NOMEM, "out of memory");
                goto out;
            }
            if (e->t_end_ns > r->t_end_ns)
                r->t_end_ns = e->t_end_ns;
            r->sections_ended++;
            r->interrupted |= e->interrupted != 0;
            r->end_exchanges += e->exchanges;
            r->cpu_user_ns += e->cpu_user_ns;
            r->cpu_sys_ns += e->cpu_sys_ns;
            if (e->max_rss_kb > r->max_rss_kb)
                r->max_rss_kb = e->max_rss_kb;
        }
    }
    if (rc < 0) {
        const char *msg = h2r_run_reader_errmsg(rd);
        size_t pl = strlen(path);
        if (msg && strncmp(msg, path, pl) == 0 && msg[pl] == ':' && msg[pl + 1] == ' ')
            msg += pl + 2; /* the reader named the file already */
        h2r_seterr(c->errbuf, c->errlen, rc, "%s: %s run file after %llu records: %s", path,
                   rc == H2R_ERR_TRUNCATED ? "truncated" : "damaged", (unsigned long long)records,
                   msg && *msg ? msg : h2r_strerror(rc));
        goto out;
    }
    rc = 0;
    if (only_section) {
        int found = 0;
        for (size_t i = 0; i < n_map; i++)
            found |= map[i].run != NULL;
        if (!found) {
            rc = h2r_seterr(c->errbuf, c->errlen, H2R_ERR_ARG, "%s: no section named '%s'", path,
                            only_section);
            goto out;
        }
    }
    if (n_map == 0)
        warn(c, "%s: no sections (nothing was replayed)", path);
    if (orphans)
        warn(c, "%s: %llu records name a section that was never declared; skipped", path,
             (unsigned long long)orphans);
out:
    h2r_run_reader_free(rd);
    return rc;
}

/* ------------------------------------------------------------------- traces */

static int file_sha256(const char *path, char hex[65], char *errbuf, size_t errlen)
{
    int rc = 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    unsigned char buf[65536];
    EVP_MD_CTX *ctx = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return h2r_seterr(errbuf, errlen, H2R_ERR_IO, "%s: cannot open", path);
    ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "sha256: out of memory");
        goto out;
    }
    for (;;) {
        size_t n = fread(buf, 1, sizeof(buf), f);
        if (n == 0)
            break;
        EVP_DigestUpdate(ctx, buf, n);
    }
    if (ferror(f)) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_IO, "%s: read error", path);
        goto out;
    }
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    for (unsigned int i = 0; i < mdlen && i < 32; i++)
        snprintf(hex + (size_t)2 * i, 3, "%02x", md[i]);
    hex[64] = '\0';
out:
    EVP_MD_CTX_free(ctx);
    fclose(f);
    return rc;
}

static void hdr_copy(const struct h2r_exchange *x, const char *name, char *out, size_t cap)
{
    const struct h2r_hdr *h = h2r_hdr_find(x->req_hdrs, x->n_req_hdrs, name);
    size_t n = 0;
    if (h)
        for (; n < h->value_len && n + 1 < cap; n++)
            out[n] = h->value[n] ? (char)h->value[n] : '?';
    out[n] = '\0';
}

static int ingest_trace(struct an_ctx *c, const char *path)
{
    struct h2r_trace_reader *rd = NULL;
    struct an_run *r = NULL;
    char err[512] = "", hex[65];
    uint64_t records = 0;
    int rc = file_sha256(path, hex, c->errbuf, c->errlen);
    if (rc)
        return rc;
    c->trace_sha = strdup(hex);
    c->trace_path = strdup(path);
    if (!c->trace_sha || !c->trace_path)
        return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_NOMEM, "out of memory");
    rc = h2r_trace_reader_open(&rd, path, err, sizeof(err));
    if (rc) {
        open_error(c, path, rc, err);
        goto out;
    }
    rc = an_run_new(&r, base_name(path), AN_KIND_TRACE, c->o->window_ns);
    if (!rc)
        rc = add_run(c, r);
    if (rc) {
        an_run_free(r);
        h2r_seterr(c->errbuf, c->errlen, rc, "out of memory");
        goto out;
    }
    r->from_baseline = 1;
    r->sections_started = r->sections_ended = 1;
    r->speed = 1.0;
    rc = an_set_str(&r->trace_sha256, hex);
    if (!rc)
        rc = an_set_str(&r->label, "captured trace");
    if (!rc)
        rc = an_set_str(&r->tool_version, h2r_trace_reader_header(rd)->tool_version);
    if (!rc)
        rc = an_run_add_source(r, path);
    int have_t0 = 0;
    int64_t t0 = 0;
    while (!rc) {
        struct h2r_trace_record rec;
        rc = h2r_trace_reader_next(rd, &rec);
        if (rc <= 0)
            break;
        records++;
        rc = 0;
        if (rec.kind != H2R_REC_EXCHANGE)
            continue;
        const struct h2r_exchange *e = &rec.u.exch;
        char method[32], p[4096];
        hdr_copy(e, ":method", method, sizeof(method));
        hdr_copy(e, ":path", p, sizeof(p));
        if (!have_t0) {
            t0 = e->t_req_first_ns;
            have_t0 = 1;
        }
        int complete = e->t_resp_end_ns != 0 && e->t_resp_end_ns >= e->t_req_first_ns;
        struct an_obs x;
        memset(&x, 0, sizeof(x));
        x.id = e->id;
        x.method = method;
        x.path = p;
        x.grpc = (e->flags & H2R_EXCH_F_GRPC) != 0;
        x.conn = e->conn_id;
        x.t_intended = e->t_req_first_ns - t0;
        x.t_sent = x.t_intended;
        x.t_done = complete ? e->t_resp_end_ns - t0 : x.t_intended;
        x.cls = e->error || !complete ? AN_CLASS_TRACE : H2R_EC_NONE;
        x.status = e->status;
        x.detail = e->error ? e->error : (complete ? NULL : "incomplete");
        rc = an_run_add(r, &x, c->folder, c->o->group_by);
        if (rc)
            h2r_seterr(c->errbuf, c->errlen, rc, "%s: %s", path, h2r_strerror(rc));
        c->exchanges++;
    }
    if (rc < 0 && !(c->errbuf && c->errbuf[0])) {
        const char *msg = h2r_trace_reader_errmsg(rd);
        h2r_seterr(c->errbuf, c->errlen, rc, "%s: damaged trace after %llu records: %s", path,
                   (unsigned long long)records, msg && *msg ? msg : h2r_strerror(rc));
    }
    if (rc > 0)
        rc = 0;
    r->t_end_ns = r->t_last_done_ns;
out:
    h2r_trace_reader_free(rd);
    return rc;
}

/* ----------------------------------------------------------------- baseline */

enum { BASE_NONE, BASE_NAME, BASE_RUN_FILE, BASE_TRACE };

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Loads a --baseline that is a file. *kind tells what it was. */
static int load_baseline_file(struct an_ctx *c, const char *spec, int *kind)
{
    *kind = BASE_NAME;
    char *path = NULL;
    const char *section = NULL;
    int rc = 0;
    if (is_file(spec)) {
        path = strdup(spec);
    } else {
        const char *at = strrchr(spec, '@');
        if (at && at > spec) {
            path = strndup(spec, (size_t)(at - spec));
            section = at + 1;
            if (path && !is_file(path)) {
                free(path);
                return 0; /* a run name */
            }
        } else {
            return 0;
        }
    }
    if (!path)
        return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_NOMEM, "out of memory");
    if (h2r_run_file_probe(path)) {
        *kind = BASE_RUN_FILE;
        rc = ingest_run_file(c, path, section, 1);
        if (!rc && c->n_runs > 1) {
            char names[512] = "";
            for (size_t i = 0; i < c->n_runs; i++)
                snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
                         i ? ", " : "", c->runs[i]->section);
            rc = h2r_seterr(c->errbuf, c->errlen, H2R_ERR_ARG,
                            "--baseline %s has %zu sections (%s): pick one with %s@SECTION", path,
                            c->n_runs, names, path);
        } else if (!rc && c->n_runs == 0) {
            rc = h2r_seterr(c->errbuf, c->errlen, H2R_ERR_ARG,
                            "--baseline %s: the run file has no sections", path);
        }
    } else if (section) {
        rc = h2r_seterr(c->errbuf, c->errlen, H2R_ERR_ARG,
                        "--baseline %s: not a run file (only run files have sections)", spec);
    } else {
        *kind = BASE_TRACE;
        rc = ingest_trace(c, path);
    }
    free(path);
    return rc;
}

/* ---------------------------------------------------------------- the model */

static void fill_row(struct an_diff_row *w, const struct h2r_hist *ref_lat,
                     const struct h2r_hist *cur_lat, uint64_t n_ref, uint64_t ok_ref,
                     uint64_t n_cur, uint64_t ok_cur)
{
    w->ref_lat = ref_lat;
    w->cur_lat = cur_lat;
    w->n_ref = n_ref;
    w->n_cur = n_cur;
    w->err_ref = n_ref - ok_ref;
    w->err_cur = n_cur - ok_cur;
    int have = ref_lat && cur_lat && h2r_hist_count(ref_lat) && h2r_hist_count(cur_lat);
    if (ref_lat) {
        w->p50_ref = h2r_hist_percentile(ref_lat, 50);
        w->p99_ref = h2r_hist_percentile(ref_lat, 99);
    }
    if (cur_lat) {
        w->p50_cur = h2r_hist_percentile(cur_lat, 50);
        w->p99_cur = h2r_hist_percentile(cur_lat, 99);
    }
    w->p50_rel = have ? an_rel_delta((double)w->p50_ref, (double)w->p50_cur) : NAN;
    w->p99_rel = have ? an_rel_delta((double)w->p99_ref, (double)w->p99_cur) : NAN;
    memset(&w->mw, 0, sizeof(w->mw));
    w->mw.p = 1.0;
    if (have)
        an_mann_whitney(ref_lat, cur_lat, &w->mw);
    w->err_rate_ref = n_ref ? (double)w->err_ref / (double)n_ref : 0.0;
    w->err_rate_cur = n_cur ? (double)w->err_cur / (double)n_cur : 0.0;
    w->err_rel = an_rel_delta(w->err_rate_ref, w->err_rate_cur);
    w->err_p = an_two_proportion_p(w->err_ref, n_ref, w->err_cur, n_cur);
    w->p50_sig = have && w->mw.valid && an_significant(w->mw.p, w->p50_rel);
    w->p99_sig = have && w->mw.valid && an_significant(w->mw.p, w->p99_rel);
    w->err_sig = n_ref && n_cur && an_significant(w->err_p, w->err_rel);
}

static int build_rows(struct an_report *rep)
{
    if (rep->ref < 0)
        return 0;
    const struct an_run *ref = rep->runs[rep->ref];
    size_t max = 0;
    for (size_t i = 0; i < rep->n_runs; i++)
        if ((int)i != rep->ref)
            max += 1 + ref->n_groups + rep->runs[i]->n_groups;
    if (max == 0)
        return 0;
    rep->rows = calloc(max, sizeof(*rep->rows));
    size_t *idx = calloc(AN_MAX_GROUPS, sizeof(*idx));
    if (!rep->rows || !idx) {
        free(idx);
        return H2R_ERR_NOMEM;
    }
    size_t *ridx = calloc(AN_MAX_GROUPS, sizeof(*ridx));
    if (!ridx) {
        free(idx);
        return H2R_ERR_NOMEM;
    }
    an_sorted_groups(ref, ridx);
    for (size_t i = 0; i < rep->n_runs; i++) {
        if ((int)i == rep->ref)
            continue;
        const struct an_run *cur = rep->runs[i];
        struct an_diff_row *w = &rep->rows[rep->n_rows++];
        w->run = i;
        fill_row(w, ref->lat_int, cur->lat_int, ref->count, ref->ok, cur->count, cur->ok);
        for (size_t k = 0; k < ref->n_groups; k++) {
            const struct an_group *gr = ref->groups[ridx[k]];
            const struct an_group *gc = an_run_group(cur, gr->key);
            w = &rep->rows[rep->n_rows++];
            w->run = i;
            w->key = gr->key;
            fill_row(w, gr->lat_int, gc ? gc->lat_int : NULL, gr->count, gr->ok, gc ? gc->count : 0,
                     gc ? gc->ok : 0);
        }
        an_sorted_groups(cur, idx);
        for (size_t k = 0; k < cur->n_groups; k++) {
            const struct an_group *gc = cur->groups[idx[k]];
            if (an_run_group(ref, gc->key))
                continue;
            w = &rep->rows[rep->n_rows++];
            w->run = i;
            w->key = gc->key;
            fill_row(w, NULL, gc->lat_int, 0, 0, gc->count, gc->ok);
        }
    }
    free(idx);
    free(ridx);
    return 0;
}

/* ------------------------------------------------------------------- gates */

struct sel_stats {
    uint64_t count;
    uint64_t ok;
    uint64_t new_failures;
    size_t matched;
    const struct h2r_hist *lat;
    struct h2r_hist *own; /* merged latencies when several groups match */
};

/* Does a group key match a gate selector ("/path" or "METHOD /path", raw or folded)? */
static int selector_matches(const struct an_folder *f, const char *key, const char *sel)
{
    char want[AN_KEY_MAX + 32];
    if (strcmp(key, sel) == 0)
        return 1;
    const char *sp = strchr(sel, ' ');
    const char *kpath = strchr(key, ' ');
    if (sp) {
        char method[32];
        size_t mn = (size_t)(sp - sel);
        if (mn >= sizeof(method))
            return 0;
        memcpy(method, sel, mn);
        method[mn] = '\0';
        while (*sp == ' ')
            sp++;
        for (int grpc = 0; grpc < 2; grpc++) {
            an_fold_key(f, method, sp, grpc, want, sizeof(want));
            if (strcmp(key, want) == 0)
                return 1;
        }
        return 0;
    }
    if (!kpath)
        return 0;
    kpath++;
    for (int grpc = 0; grpc < 2; grpc++) {
        an_fold_path(f, sel, grpc, want, sizeof(want));
        if (strcmp(kpath, want) == 0)
            return 1;
    }
    return 0;
}

static int sel_collect(const struct an_ctx *c, const struct an_run *r, const struct an_gate *g,
                       struct sel_stats *s)
{
    memset(s, 0, sizeof(*s));
    if (!g->has_selector) {
        s->count = r->count;
        s->ok = r->ok;
        s->new_failures = r->new_failures;
        s->lat = r->lat_int;
        s->matched = 1;
        return 0;
    }
    for (size_t i = 0; i < r->n_groups; i++) {
        const struct an_group *gr = r->groups[i];
        if (!selector_matches(c->folder, gr->key, g->selector))
            continue;
        s->count += gr->count;
        s->ok += gr->ok;
        s->new_failures += gr->new_failures;
        if (s->matched == 0) {
            s->lat = gr->lat_int;
        } else {
            if (!s->own) {
                int rc = h2r_hist_new(&s->own, 0);
                if (!rc)
                    rc = h2r_hist_merge(s->own, s->lat);
                if (rc)
                    return rc;
                s->lat = s->own;
            }
            h2r_hist_merge(s->own, gr->lat_int);
        }
        s->matched++;
    }
    return 0;
}

/* Returns 1 with *v set, or 0 when the metric has no value (no successful exchanges). */
static int metric_value(const struct an_run *r, const struct sel_stats *s, int metric, double *v)
{
    static const double pct[] = {
        [AN_M_P50] = 50, [AN_M_P90] = 90, [AN_M_P99] = 99, [AN_M_P999] = 99.9};
    uint64_t errors = s->count - s->ok;
    switch (metric) {
    case AN_M_P50:
    case AN_M_P90:
    case AN_M_P99:
    case AN_M_P999:
    case AN_M_MAX:
    case AN_M_MEAN:
        if (!s->lat || h2r_hist_count(s->lat) == 0)
            return 0;
        if (metric == AN_M_MAX)
            *v = (double)h2r_hist_max(s->lat);
        else if (metric == AN_M_MEAN)
            *v = h2r_hist_mean(s->lat);
        else
            *v = (double)h2r_hist_percentile(s->lat, pct[metric]);
        return 1;
    case AN_M_COUNT:
        *v = (double)s->count;
        return 1;
    case AN_M_ERRORS:
        *v = (double)errors;
        return 1;
    case AN_M_ERROR_RATE:
        *v = s->count ? (double)errors / (double)s->count : 0.0;
        return 1;
    case AN_M_NEW_FAILURES:
        *v = (double)s->new_failures;
        return 1;
    case AN_M_THROUGHPUT:
        *v = (double)s->ok * 1e9 / (double)an_run_duration(r);
        return 1;
    case AN_M_SERVER_ERRORS: /* --server-log (an_serverlog.c); no log: no value */
    case AN_M_SERVER_WARNINGS:
        if (!r->slog)
            return 0;
        *v = (double)(metric == AN_M_SERVER_ERRORS ? an_slog_errors(r->slog)
                                                   : an_slog_warnings(r->slog));
        return 1;
    default:
        return 0;
    }
}

static int eval_gates(struct an_ctx *c, struct an_report *rep)
{
    size_t n = c->o->n_gates;
    if (n == 0)
        return 0;
    rep->gates = calloc(n, sizeof(*rep->gates));
    if (!rep->gates)
        return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_NOMEM, "out of memory");
    rep->n_gates = n;
    if (rep->target < 0)
        return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_ARG,
                          "gates need a run to evaluate (the only run is the baseline)");
    const struct an_run *t = rep->runs[rep->target];
    const struct an_run *ref = rep->ref >= 0 ? rep->runs[rep->ref] : NULL;
    for (size_t i = 0; i < n; i++) {
        struct an_gate_result *gr = &rep->gates[i];
        const struct an_gate *g = &c->gates[i];
        struct sel_stats st, sr;
        int rc;
        gr->expr = c->o->gates[i];
        gr->gate = *g;
        if ((g->relative || g->metric == AN_M_NEW_FAILURES) && !ref)
            return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_ARG,
                              "gate '%s': %s needs a reference: give --baseline or a second run",
                              gr->expr, g->relative ? "a relative value" : "new_failures");
        rc = sel_collect(c, t, g, &st);
        if (!rc && ref)
            rc = sel_collect(c, ref, g, &sr);
        else
            memset(&sr, 0, sizeof(sr));
        if (rc) {
            h2r_hist_free(st.own);
            h2r_hist_free(sr.own);
            return h2r_seterr(c->errbuf, c->errlen, rc, "out of memory");
        }
        if (g->has_selector && st.matched == 0 && sr.matched == 0) {
            char groups[600] = "";
            for (size_t k = 0; k < t->n_groups && strlen(groups) < 400; k++)
                snprintf(groups + strlen(groups), sizeof(groups) - strlen(groups), "%s'%s'",
                         k ? ", " : "", t->groups[k]->key);
            h2r_hist_free(st.own);
            h2r_hist_free(sr.own);
            return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_ARG,
                              "gate '%s': no endpoint or group matches '%s' (groups: %s)", gr->expr,
                              g->selector, groups[0] ? groups : "none");
        }
        gr->has_actual = metric_value(t, &st, g->metric, &gr->actual);
        if (g->relative)
            gr->has_reference = metric_value(ref, &sr, g->metric, &gr->reference);
        if (!gr->has_actual && !t->slog &&
            (g->metric == AN_M_SERVER_ERRORS || g->metric == AN_M_SERVER_WARNINGS)) {
            snprintf(gr->note, sizeof(gr->note), "no --server-log for run '%.100s'", t->name);
        } else if (!gr->has_actual) {
            snprintf(gr->note, sizeof(gr->note), "no successful exchanges in run '%s'", t->name);
        } else if (g->relative && !gr->has_reference) {
            snprintf(gr->note, sizeof(gr->note), "no successful exchanges in the reference '%s'",
                     ref->name);
        } else {
            gr->limit = an_gate_limit(g, gr->reference);
            gr->pass = an_gate_holds(g->op, gr->actual, gr->limit);
        }
        if (g->metric == AN_M_NEW_FAILURES && t->failures_truncated)
            snprintf(gr->note, sizeof(gr->note), "partial: more than %zu failures",
                     AN_MAX_FAILURES);
        if (!gr->pass)
            rep->gates_failed++;
        h2r_hist_free(st.own);
        h2r_hist_free(sr.own);
    }
    return 0;
}

/* ------------------------------------------------------------------- driver */

static int check_opts(const struct h2r_analyze_opts *o, char *errbuf, size_t errlen)
{
    if (o->n_inputs == 0)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "no run file given");
    if (o->format < H2R_ANALYZE_TABLE || o->format > H2R_ANALYZE_HTML)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "unknown format %d", o->format);
    if (o->group_by < H2R_ANALYZE_BY_ENDPOINT || o->group_by > H2R_ANALYZE_BY_NONE)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "unknown grouping %d", o->group_by);
    if (o->window_ns < 1000000)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "--window must be at least 1ms");
    if (!(o->threshold >= 0 && o->threshold < 1))
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "--threshold must be in [0, 1)");
    if (o->sustain < 1 || o->sustain > 10000)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "--sustain must be in 1..10000");
    return 0;
}

/* "1, 4, 7" (0-based), the first few of the shard indexes a run has not seen. */
static void missing_shards(const struct an_run *r, char *buf, size_t len)
{
    size_t n = 0;
    uint32_t listed = 0, more = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < r->shard_count; i++) {
        if (an_run_has_shard(r, i))
            continue;
        if (listed == 12 || n + 16 >= len) {
            more++;
            continue;
        }
        n += (size_t)snprintf(buf + n, len - n, "%s%u", listed ? ", " : "", i);
        listed++;
    }
    if (more)
        snprintf(buf + n, len - n, " and %u more", more);
}

static void run_warnings(struct an_ctx *c)
{
    for (size_t i = 0; i < c->n_runs; i++) {
        const struct an_run *r = c->runs[i];
        if (r->kind != AN_KIND_RUN)
            continue;
        if (r->sections_ended < r->sections_started)
            warn(c, "run '%s': no section end record (replay killed?); results may be partial",
                 r->name);
        if (r->interrupted)
            warn(c, "run '%s': the replay was interrupted (SIGINT/SIGTERM)", r->name);
        if (r->shard_count > 1 && r->shards_seen < r->shard_count) {
            char missing[200];
            missing_shards(r, missing, sizeof(missing));
            warn(c, "run '%s': only %u of %u shards given; missing shard index %s", r->name,
                 r->shards_seen, r->shard_count, missing);
        }
        if (r->overflowed)
            warn(c,
                 "run '%s': more than %u groups; %llu exchanges counted in '%s' (add a "
                 "--fold-rule)",
                 r->name, AN_MAX_GROUPS, (unsigned long long)r->overflowed, AN_OTHER_GROUP);
        if (r->failures_truncated)
            warn(c, "run '%s': more than %zu failures; new-vs-shared counts are partial", r->name,
                 AN_MAX_FAILURES);
        if (h2r_hist_clamped(r->lat_int))
            warn(c, "run '%s': %llu latencies beyond the histogram range were clamped", r->name,
                 (unsigned long long)h2r_hist_clamped(r->lat_int));
    }
}

static int write_report(struct an_ctx *c, const struct an_report *rep)
{
    const char *path = c->o->out_path;
    int to_stdout = !path || strcmp(path, "-") == 0;
    FILE *f = to_stdout ? stdout : fopen(path, "w");
    if (!f)
        return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_IO, "%s: cannot create", path);
    int rc;
    switch (c->o->format) {
    case H2R_ANALYZE_JSON:
        rc = an_report_json(f, rep);
        break;
    case H2R_ANALYZE_MD:
        rc = an_report_md(f, rep);
        break;
    case H2R_ANALYZE_HTML:
        rc = an_report_html(f, rep);
        break;
    default:
        rc = an_report_table(f, rep);
        break;
    }
    if (fflush(f) != 0 && !rc)
        rc = H2R_ERR_IO;
    if (!to_stdout && fclose(f) != 0 && !rc)
        rc = H2R_ERR_IO;
    if (rc)
        h2r_seterr(c->errbuf, c->errlen, rc, "%s: %s", to_stdout ? "stdout" : path,
                   rc == H2R_ERR_IO ? "write failed" : h2r_strerror(rc));
    return rc;
}

/* Reports failing gates on the log too, unless the table on stdout already shows them. */
static void log_gates(struct an_ctx *c, const struct an_report *rep)
{
    int in_table =
        c->o->format == H2R_ANALYZE_TABLE && (!c->o->out_path || strcmp(c->o->out_path, "-") == 0);
    if (in_table || !c->log)
        return;
    for (size_t i = 0; i < rep->n_gates; i++) {
        const struct an_gate_result *g = &rep->gates[i];
        if (g->pass)
            continue;
        char a[48], l[48];
        if (g->has_actual && !g->note[0])
            fprintf(c->log, "h2replay analyze: gate failed: %s (actual %s, limit %s)\n", g->expr,
                    an_fmt_metric(a, sizeof(a), g->gate.metric, g->actual),
                    an_fmt_metric(l, sizeof(l), g->gate.metric, g->limit));
        else
            fprintf(c->log, "h2replay analyze: gate failed: %s (%s)\n", g->expr, g->note);
    }
}

int h2r_analyze(const struct h2r_analyze_opts *o, struct h2r_analyze_result *res, char *errbuf,
                size_t errlen)
{
    struct an_ctx c;
    struct an_report rep;
    int rc, base_kind = BASE_NONE;
    memset(&c, 0, sizeof(c));
    memset(&rep, 0, sizeof(rep));
    if (res)
        memset(res, 0, sizeof(*res));
    if (errbuf && errlen)
        errbuf[0] = '\0';
    c.o = o;
    c.log = o->log ? o->log : stderr;
    c.errbuf = errbuf;
    c.errlen = errlen;
    rc = check_opts(o, errbuf, errlen);
    if (rc)
        goto out;
    if (o->n_gates) {
        c.gates = calloc(o->n_gates, sizeof(*c.gates));
        if (!c.gates) {
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    for (size_t i = 0; i < o->n_gates; i++) {
        rc = an_gate_parse(o->gates[i], &c.gates[i], errbuf, errlen);
        if (rc)
            goto out;
    }
    rc = an_folder_new(&c.folder, o->fold_rules, o->n_fold_rules, errbuf, errlen);
    if (rc)
        goto out;

    if (o->baseline) {
        rc = load_baseline_file(&c, o->baseline, &base_kind);
        if (rc)
            goto out;
    }
    for (size_t i = 0; i < o->n_inputs; i++) {
        rc = ingest_run_file(&c, o->inputs[i], NULL, 0);
        if (rc)
            goto out;
    }
    if (base_kind == BASE_NAME) {
        size_t k = c.n_runs;
        for (size_t i = 0; i < c.n_runs; i++)
            if (strcmp(c.runs[i]->name, o->baseline) == 0)
                k = i;
        if (k == c.n_runs) {
            char names[512] = "";
            for (size_t i = 0; i < c.n_runs && strlen(names) < 400; i++)
                snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s'%s'",
                         i ? ", " : "", c.runs[i]->name);
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                            "--baseline '%s': no such file and no run of that name (runs: %s)",
                            o->baseline, names[0] ? names : "none");
            goto out;
        }
        struct an_run *b = c.runs[k];
        memmove(c.runs + 1, c.runs, k * sizeof(*c.runs));
        c.runs[0] = b;
    }
    if (c.n_runs == 0) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "the run files hold no sections");
        goto out;
    }

    rep.opts = o;
    rep.runs = c.runs;
    rep.n_runs = c.n_runs;
    rep.explicit_baseline = base_kind != BASE_NONE;
    rep.ref = rep.explicit_baseline || c.n_runs > 1 ? 0 : -1;
    rep.target = (int)c.n_runs - 1;
    if (rep.explicit_baseline && rep.target == 0)
        rep.target = -1;
    rep.threshold = o->threshold;
    rep.sustain = o->sustain;
    rep.window_ns = o->window_ns;
    rep.group_by = o->group_by == H2R_ANALYZE_BY_CONN   ? "conn"
                   : o->group_by == H2R_ANALYZE_BY_NONE ? "none"
                                                        : "endpoint";
    for (size_t i = 0; i < c.n_runs; i++)
        an_run_finish(c.runs[i], o->threshold, o->sustain);
    if (rep.ref >= 0)
        for (size_t i = 0; i < c.n_runs; i++)
            if ((int)i != rep.ref)
                an_run_compare(c.runs[i], c.runs[rep.ref]);
    run_warnings(&c);
    rc = an_slog_attach(c.runs, c.n_runs, o->server_logs, o->n_server_logs,
                        o->quiet ? NULL : c.log, errbuf, errlen); /* an_serverlog.c */
    if (rc)
        goto out;
    rc = build_rows(&rep);
    if (rc) {
        h2r_seterr(errbuf, errlen, rc, "out of memory");
        goto out;
    }
    rc = eval_gates(&c, &rep);
    if (rc)
        goto out;
    rc = write_report(&c, &rep);
    if (rc)
        goto out;
    log_gates(&c, &rep);
    if (res) {
        res->runs = c.n_runs;
        res->exchanges = c.exchanges;
        res->gates = rep.n_gates;
        res->gates_failed = rep.gates_failed;
    }
out:
    free(rep.rows);
    free(rep.gates);
    for (size_t i = 0; i < c.n_runs; i++) {
        an_slog_free(c.runs[i]->slog);
        an_run_free(c.runs[i]);
    }
    free(c.runs);
    free(c.gates);
    an_folder_free(c.folder);
    free(c.cmp_sha);
    free(c.cmp_settings);
    free(c.cmp_path);
    free(c.trace_sha);
    free(c.trace_path);
    return rc;
}
