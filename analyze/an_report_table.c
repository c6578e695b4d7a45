/*
 * Terminal report: one block per run (totals, latency, failure points, top
 * endpoints), then the diff against the reference and the gates. Every line
 * fits in 100 columns; long endpoint keys are cut with "...".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/units.h"
#include "an_db.h"
#include "an_report.h"
#include "an_serverlog.h"

/* Endpoint rows printed per run and per diff (the JSON has all of them). */
#define TABLE_TOP_GROUPS 15

/* Copies s cut to width columns ("..." at the end when cut). */
static const char *fit(char *buf, size_t len, const char *s, size_t width)
{
    size_t n = strlen(s);
    if (width + 1 > len)
        width = len - 1;
    if (n <= width) {
        snprintf(buf, len, "%s", s);
    } else {
        memcpy(buf, s, width - 3);
        memcpy(buf + width - 3, "...", 4);
    }
    return buf;
}

/*
 * An endpoint key cut to width: the method, "...", and the longest tail that starts at a '/'
 * and fits ("POST .../CreatePreAuthKey"), so keys sharing a long prefix (gRPC services) stay
 * apart; plain fit() when no such tail fits.
 */
static const char *fit_key(char *buf, size_t len, const char *s, size_t width)
{
    size_t n = strlen(s);
    if (width + 1 > len)
        width = len - 1;
    const char *sp = strchr(s, ' ');
    size_t head = sp ? (size_t)(sp - s) + 1 : 0;
    if (n <= width || head + 4 >= width)
        return fit(buf, len, s, width);
    for (const char *t = s + head; (t = strchr(t, '/')) != NULL; t++) {
        size_t tail = n - (size_t)(t - s);
        if (t > s + head && head + 3 + tail <= width) {
            snprintf(buf, len, "%.*s...%s", (int)head, s, t);
            return buf;
        }
    }
    return fit(buf, len, s, width);
}

static void latency_line(FILE *f, const char *what, const struct h2r_hist *h)
{
    char a[6][24];
    uint64_t n = h2r_hist_count(h);
    fprintf(f, "   %-14s %9s %9s %9s %9s %9s %9s\n", what,
            an_fmt_ns(a[0], sizeof(a[0]), h2r_hist_percentile(h, 50), n),
            an_fmt_ns(a[1], sizeof(a[1]), h2r_hist_percentile(h, 90), n),
            an_fmt_ns(a[2], sizeof(a[2]), h2r_hist_percentile(h, 99), n),
            an_fmt_ns(a[3], sizeof(a[3]), h2r_hist_percentile(h, 99.9), n),
            an_fmt_ns(a[4], sizeof(a[4]), h2r_hist_max(h), n),
            an_fmt_ns(a[5], sizeof(a[5]), (int64_t)llround(h2r_hist_mean(h)), n));
}

/* Prints "   LABEL TEXT" with TEXT wrapped at spaces to 100 columns under itself. */
static void wrapped(FILE *f, const char *label, const char *text)
{
    an_report_wrapped(f, label, 14, text);
}

static void examples_line(FILE *f, const struct an_run *r, const struct an_run *ref, int shared)
{
    const struct an_failure *ex[3];
    size_t n = an_failure_examples(r, ref, shared, ex, 3);
    if (n == 0)
        return;
    char line[512];
    size_t o = 0;
    line[0] = '\0';
    for (size_t i = 0; i < n && o < sizeof(line); i++)
        o += (size_t)snprintf(line + o, sizeof(line) - o, "%s#%llu %s %s", i ? "; " : "",
                              (unsigned long long)ex[i]->id, r->groups[ex[i]->group]->key,
                              an_class_name(ex[i]->cls));
    wrapped(f, shared ? "  e.g. shared" : "  e.g. new", line);
}

static void run_block(FILE *f, const struct an_report *rep, size_t ri)
{
    const struct an_run *r = rep->runs[ri];
    char b1[64], b2[64], b3[64], line[1024], name[72];
    const char *role = (int)ri == rep->ref
                           ? (rep->explicit_baseline ? "  [baseline]" : "  [reference]")
                       : (int)ri == rep->target ? "  [gated]"
                                                : "";
    fprintf(f, "\n== run '%s'%s%s\n", fit(name, sizeof(name), r->name, 64),
            r->kind == AN_KIND_TRACE ? " (trace)" : "", role);
    snprintf(line, sizeof(line), "%s%s%s%s%s", r->sources, r->url[0] ? ", target " : "", r->url,
             r->label[0] ? ", " : "", r->label);
    wrapped(f, "source", line);
    uint64_t err = an_errors(r->count, r->ok);
    double dur = (double)an_run_duration(r) / 1e9;
    snprintf(line, sizeof(line), "%llu exchanges in %s, ok %llu, errors %llu (%s), %.1f ok/s",
             (unsigned long long)r->count, h2r_format_duration(an_run_duration(r), b1, sizeof(b1)),
             (unsigned long long)r->ok, (unsigned long long)err,
             an_fmt_pct(b2, sizeof(b2), r->count ? (double)err / (double)r->count : 0),
             (double)r->ok / dur);
    wrapped(f, "totals", line);
    if (r->series.coarsened) {
        snprintf(line, sizeof(line), "windows widened to %s to stay under %u",
                 h2r_format_duration(r->series.width_ns, b1, sizeof(b1)), AN_MAX_WINDOWS);
        wrapped(f, "note", line);
    }
    if (err)
        wrapped(f, "errors", an_fmt_classes(line, sizeof(line), r->by_class));
    fprintf(f, "   %-14s %9s %9s %9s %9s %9s %9s\n", "latency", "p50", "p90", "p99", "p99.9", "max",
            "mean");
    latency_line(f, "from intended", r->lat_int);
    if (r->kind == AN_KIND_RUN)
        latency_line(f, "from sent", r->lat_sent);
    if (r->count) {
        wrapped(f, "first failure", an_fmt_first_failure(line, sizeof(line), r));
        wrapped(f, "onset", an_fmt_onset(line, sizeof(line), r, rep->threshold, rep->sustain));
        if (r->onset.found)
            wrapped(f, "recovery", an_fmt_recovery(line, sizeof(line), r));
    }
    if (r->compared) {
        const struct an_run *ref = rep->runs[rep->ref];
        snprintf(line, sizeof(line), "%llu new failures, %llu shared with '%s'%s",
                 (unsigned long long)r->new_failures, (unsigned long long)r->shared_failures,
                 ref->name, r->failures_truncated || ref->failures_truncated ? " (partial)" : "");
        wrapped(f, "vs reference", line);
        examples_line(f, r, ref, 0);
        examples_line(f, r, ref, 1);
    }
    if (r->n_groups == 0)
        return;
    size_t *idx = calloc(r->n_groups, sizeof(*idx));
    if (!idx)
        return;
    an_sorted_groups(r, idx);
    fprintf(f, "\n   %-37s %9s %8s %9s %9s %9s %9s\n", "endpoint", "count", "err%", "p50", "p90",
            "p99", "p99.9");
    size_t shown = r->n_groups < TABLE_TOP_GROUPS ? r->n_groups : TABLE_TOP_GROUPS;
    for (size_t k = 0; k < shown; k++) {
        const struct an_group *g = r->groups[idx[k]];
        char key[48], p[4][24];
        uint64_t n = h2r_hist_count(g->lat_int);
        fprintf(f, "   %-37s %9llu %8s %9s %9s %9s %9s\n", fit_key(key, sizeof(key), g->key, 37),
                (unsigned long long)g->count,
                an_fmt_pct(b3, sizeof(b3), (double)an_errors(g->count, g->ok) / (double)g->count),
                an_fmt_ns(p[0], sizeof(p[0]), h2r_hist_percentile(g->lat_int, 50), n),
                an_fmt_ns(p[1], sizeof(p[1]), h2r_hist_percentile(g->lat_int, 90), n),
                an_fmt_ns(p[2], sizeof(p[2]), h2r_hist_percentile(g->lat_int, 99), n),
                an_fmt_ns(p[3], sizeof(p[3]), h2r_hist_percentile(g->lat_int, 99.9), n));
    }
    if (shown < r->n_groups)
        fprintf(f, "   ... %zu more endpoints (see --format json)\n", r->n_groups - shown);
    free(idx);
}

static const char *rel_cell(char *buf, size_t len, double rel, int valid, int sig)
{
    char tmp[24];
    an_fmt_rel(tmp, sizeof(tmp), rel, valid);
    snprintf(buf, len, "%s%s", tmp, sig ? "*" : "");
    return buf;
}

static void diff_block(FILE *f, const struct an_report *rep)
{
    if (rep->n_rows == 0)
        return;
    const struct an_run *ref = rep->runs[rep->ref];
    char name[72];
    fprintf(f,
            "\n== diff vs '%s'\n   latency from intended; * = significant (Mann-Whitney U "
            "p < 0.01 and |delta| >= 5%%;\n   errors: two-proportion z-test)\n",
            fit(name, sizeof(name), ref->name, 64));
    fprintf(f, "   %-30s %-10s %9s %8s %9s %8s %7s %8s\n", "endpoint", "run", "p50", "dp50", "p99",
            "dp99", "err%", "derr");
    size_t shown = 0;
    for (size_t i = 0; i < rep->n_rows; i++) {
        const struct an_diff_row *w = &rep->rows[i];
        if (!w->key)
            shown = 0;
        else if (++shown > TABLE_TOP_GROUPS)
            continue;
        char key[40], run[16], p50[24], d50[24], p99[24], d99[24], er[24], de[24];
        int have =
            w->ref_lat && w->cur_lat && h2r_hist_count(w->ref_lat) && h2r_hist_count(w->cur_lat);
        uint64_t nc = w->cur_lat ? h2r_hist_count(w->cur_lat) : 0;
        fprintf(f, "   %-30s %-10s %9s %8s %9s %8s %7s %8s\n",
                fit_key(key, sizeof(key), w->key ? w->key : "(all)", 30),
                fit(run, sizeof(run), rep->runs[w->run]->name, 10),
                an_fmt_ns(p50, sizeof(p50), w->p50_cur, nc),
                rel_cell(d50, sizeof(d50), w->p50_rel, have, w->p50_sig),
                an_fmt_ns(p99, sizeof(p99), w->p99_cur, nc),
                rel_cell(d99, sizeof(d99), w->p99_rel, have, w->p99_sig),
                w->n_cur ? an_fmt_pct(er, sizeof(er), w->err_rate_cur) : "-",
                rel_cell(de, sizeof(de), w->err_rel, w->n_ref && w->n_cur, w->err_sig));
    }
}

static void gates_block(FILE *f, const struct an_report *rep)
{
    if (rep->n_gates == 0)
        return;
    const struct an_run *t = rep->runs[rep->target];
    char name[40];
    fprintf(f, "\n== gates (run '%s'", fit(name, sizeof(name), t->name, 32));
    if (rep->ref >= 0)
        fprintf(f, " vs reference '%s'", fit(name, sizeof(name), rep->runs[rep->ref]->name, 32));
    fprintf(f, ")\n");
    for (size_t i = 0; i < rep->n_gates; i++) {
        const struct an_gate_result *g = &rep->gates[i];
        char a[48], l[48], line[512];
        if (g->has_actual && (!g->gate.relative || g->has_reference))
            snprintf(line, sizeof(line), "actual %s, limit %s%s%s",
                     an_fmt_metric(a, sizeof(a), g->gate.metric, g->actual),
                     an_fmt_metric(l, sizeof(l), g->gate.metric, g->limit), g->note[0] ? "; " : "",
                     g->note);
        else
            snprintf(line, sizeof(line), "%s", g->note);
        an_report_wrapped(f, g->pass ? "PASS" : "FAIL", 4, g->expr);
        an_report_wrapped(f, "", 4, line);
    }
    fprintf(f, "result: %zu of %zu gates failed\n", rep->gates_failed, rep->n_gates);
}

int an_report_table(FILE *f, const struct an_report *rep)
{
    char w[32], thr[32];
    fprintf(f,
            "h2replay analyze: %zu run%s by %s, %s windows, onset: error rate > %s for %u "
            "windows\n",
            rep->n_runs, rep->n_runs == 1 ? "" : "s", rep->group_by,
            h2r_format_duration(rep->window_ns, w, sizeof(w)),
            an_fmt_pct(thr, sizeof(thr), rep->threshold), rep->sustain);
    for (size_t i = 0; i < rep->n_runs; i++) {
        run_block(f, rep, i);
        an_db_table(f, rep->runs[i]->db); /* replay --db evidence, an_report_db.c */
        an_slog_table(f, rep->runs[i]);   /* --server-log, an_report_serverlog.c */
    }
    diff_block(f, rep);
    gates_block(f, rep);
    return ferror(f) ? H2R_ERR_IO : 0;
}
