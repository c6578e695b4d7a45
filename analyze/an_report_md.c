/*
 * Markdown report, shaped for a pull-request comment: the gate verdict
 * first, then one table per question (how did each run do, where did it
 * start failing, what changed against the reference). GitHub-flavoured
 * tables; per-endpoint detail folds into <details> so the comment stays short.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/units.h"
#include "an_db.h"
#include "an_report.h"
#include "an_serverlog.h"

#define MD_TOP_GROUPS 20

/* Inline code that survives a table cell: '`' -> '\'', '|' -> '\|'. */
static void md_code(FILE *f, const char *s)
{
    fputc('`', f);
    for (; *s; s++) {
        if (*s == '`')
            fputc('\'', f);
        else if (*s == '|')
            fputs("\\|", f);
        else
            fputc(*s, f);
    }
    fputc('`', f);
}

/* Plain text in a cell: escapes the characters Markdown would interpret. */
static void md_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (strchr("|*_`<>[]\\#", *s))
            fputc('\\', f);
        fputc(*s, f);
    }
}

static void gates_md(FILE *f, const struct an_report *rep)
{
    if (rep->n_gates == 0)
        return;
    if (rep->gates_failed)
        fprintf(f, "**Gates: FAILED, %zu of %zu**", rep->gates_failed, rep->n_gates);
    else
        fprintf(f, "**Gates: all %zu passed**", rep->n_gates);
    fprintf(f, " (run ");
    md_code(f, rep->runs[rep->target]->name);
    if (rep->ref >= 0) {
        fprintf(f, " vs ");
        md_code(f, rep->runs[rep->ref]->name);
    }
    fprintf(f, ")\n\n| | gate | actual | limit | note |\n|---|---|---:|---:|---|\n");
    for (size_t i = 0; i < rep->n_gates; i++) {
        const struct an_gate_result *g = &rep->gates[i];
        char a[48] = "-", l[48] = "-";
        if (g->has_actual)
            an_fmt_metric(a, sizeof(a), g->gate.metric, g->actual);
        if (g->has_actual && (!g->gate.relative || g->has_reference))
            an_fmt_metric(l, sizeof(l), g->gate.metric, g->limit);
        fprintf(f, "| %s | ", g->pass ? "pass" : "**FAIL**");
        md_code(f, g->expr);
        fprintf(f, " | %s | %s | ", a, l);
        md_text(f, g->note);
        fprintf(f, " |\n");
    }
    fprintf(f, "\n");
}

static void runs_md(FILE *f, const struct an_report *rep)
{
    fprintf(f, "### Runs\n\nLatency from the intended send time (no coordinated omission), "
               "successful exchanges.\n\n"
               "| run | exchanges | errors | error rate | ok/s | p50 | p90 | p99 | p99.9 | max |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < rep->n_runs; i++) {
        const struct an_run *r = rep->runs[i];
        const struct h2r_hist *h = r->lat_int;
        uint64_t n = h2r_hist_count(h), err = an_errors(r->count, r->ok);
        char b[6][24];
        fprintf(f, "| ");
        md_code(f, r->name);
        if ((int)i == rep->ref)
            fprintf(f, " (%s)", rep->explicit_baseline ? "baseline" : "reference");
        fprintf(f, " | %llu | %llu | %s | %.1f | %s | %s | %s | %s | %s |\n",
                (unsigned long long)r->count, (unsigned long long)err,
                an_fmt_pct(b[0], sizeof(b[0]), r->count ? (double)err / (double)r->count : 0),
                (double)r->ok * 1e9 / (double)an_run_duration(r),
                an_fmt_ns(b[1], sizeof(b[1]), h2r_hist_percentile(h, 50), n),
                an_fmt_ns(b[2], sizeof(b[2]), h2r_hist_percentile(h, 90), n),
                an_fmt_ns(b[3], sizeof(b[3]), h2r_hist_percentile(h, 99), n),
                an_fmt_ns(b[4], sizeof(b[4]), h2r_hist_percentile(h, 99.9), n),
                an_fmt_ns(b[5], sizeof(b[5]), h2r_hist_max(h), n));
    }
    fprintf(f, "\n");
}

static void failures_md(FILE *f, const struct an_report *rep)
{
    fprintf(f,
            "### Failure points\n\nOnset: error rate above %.2f%% for %u consecutive "
            "windows.\n\n| run | errors by class | first failure | onset | recovery | "
            "new / shared failures |\n|---|---|---|---|---|---|\n",
            rep->threshold * 100, rep->sustain);
    for (size_t i = 0; i < rep->n_runs; i++) {
        const struct an_run *r = rep->runs[i];
        char line[1024];
        fprintf(f, "| ");
        md_code(f, r->name);
        fprintf(f, " | ");
        md_text(f, an_errors(r->count, r->ok) ? an_fmt_classes(line, sizeof(line), r->by_class)
                                              : "none");
        fprintf(f, " | ");
        md_text(f, an_fmt_first_failure(line, sizeof(line), r));
        fprintf(f, " | ");
        md_text(f, an_fmt_onset(line, sizeof(line), r, rep->threshold, rep->sustain));
        fprintf(f, " | ");
        md_text(f, an_fmt_recovery(line, sizeof(line), r));
        if (r->compared)
            fprintf(f, " | %llu / %llu |\n", (unsigned long long)r->new_failures,
                    (unsigned long long)r->shared_failures);
        else
            fprintf(f, " | - |\n");
    }
    fprintf(f, "\n");
}

static void rel_md(FILE *f, double rel, int valid, int sig)
{
    char b[24];
    an_fmt_rel(b, sizeof(b), rel, valid);
    fprintf(f, sig ? " **%s** |" : " %s |", b);
}

static void diff_md(FILE *f, const struct an_report *rep)
{
    if (rep->n_rows == 0)
        return;
    fprintf(f, "### Diff vs ");
    md_code(f, rep->runs[rep->ref]->name);
    fprintf(f, "\n\n**Bold** deltas are significant: p < 0.01 (Mann-Whitney U on the latency "
               "histograms; two-proportion z-test for errors) and |delta| >= 5%%.\n\n"
               "| endpoint | run | p50 | Δp50 | p99 | Δp99 | errors | error rate | Δ | p |\n"
               "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    size_t shown = 0;
    for (size_t i = 0; i < rep->n_rows; i++) {
        const struct an_diff_row *w = &rep->rows[i];
        if (!w->key)
            shown = 0;
        else if (++shown > MD_TOP_GROUPS)
            continue;
        int have =
            w->ref_lat && w->cur_lat && h2r_hist_count(w->ref_lat) && h2r_hist_count(w->cur_lat);
        uint64_t nc = w->cur_lat ? h2r_hist_count(w->cur_lat) : 0;
        char p50[24], p99[24], er[24], pv[24];
        fprintf(f, "| ");
        if (w->key)
            md_code(f, w->key);
        else
            fprintf(f, "**all**");
        fprintf(f, " | ");
        md_code(f, rep->runs[w->run]->name);
        fprintf(f, " | %s |", an_fmt_ns(p50, sizeof(p50), w->p50_cur, nc));
        rel_md(f, w->p50_rel, have, w->p50_sig);
        fprintf(f, " %s |", an_fmt_ns(p99, sizeof(p99), w->p99_cur, nc));
        rel_md(f, w->p99_rel, have, w->p99_sig);
        fprintf(f, " %llu | %s |", (unsigned long long)w->err_cur,
                w->n_cur ? an_fmt_pct(er, sizeof(er), w->err_rate_cur) : "-");
        rel_md(f, w->err_rel, w->n_ref && w->n_cur, w->err_sig);
        if (w->mw.valid)
            an_fmt_p(pv, sizeof(pv), w->mw.p);
        else
            snprintf(pv, sizeof(pv), "-");
        fprintf(f, " %s |\n", pv);
    }
    fprintf(f, "\n");
}

static void groups_md(FILE *f, const struct an_report *rep)
{
    for (size_t i = 0; i < rep->n_runs; i++) {
        const struct an_run *r = rep->runs[i];
        if (r->n_groups == 0)
            continue;
        size_t *idx = calloc(r->n_groups, sizeof(*idx));
        if (!idx)
            return;
        an_sorted_groups(r, idx);
        fprintf(f, "<details><summary>Endpoints of ");
        md_code(f, r->name);
        fprintf(f,
                " (%zu)</summary>\n\n| endpoint | count | errors | p50 | p99 | p99.9 | "
                "max |\n|---|---:|---:|---:|---:|---:|---:|\n",
                r->n_groups);
        for (size_t k = 0; k < r->n_groups && k < MD_TOP_GROUPS; k++) {
            const struct an_group *g = r->groups[idx[k]];
            uint64_t n = h2r_hist_count(g->lat_int);
            char b[4][24];
            fprintf(f, "| ");
            md_code(f, g->key);
            fprintf(f, " | %llu | %llu | %s | %s | %s | %s |\n", (unsigned long long)g->count,
                    (unsigned long long)an_errors(g->count, g->ok),
                    an_fmt_ns(b[0], sizeof(b[0]), h2r_hist_percentile(g->lat_int, 50), n),
                    an_fmt_ns(b[1], sizeof(b[1]), h2r_hist_percentile(g->lat_int, 99), n),
                    an_fmt_ns(b[2], sizeof(b[2]), h2r_hist_percentile(g->lat_int, 99.9), n),
                    an_fmt_ns(b[3], sizeof(b[3]), h2r_hist_max(g->lat_int), n));
        }
        if (r->n_groups > MD_TOP_GROUPS)
            fprintf(f, "\n%zu more in the JSON report.\n", r->n_groups - MD_TOP_GROUPS);
        fprintf(f, "\n</details>\n\n");
        free(idx);
    }
}

int an_report_md(FILE *f, const struct an_report *rep)
{
    fprintf(f, "## h2replay analyze\n\n");
    gates_md(f, rep);
    runs_md(f, rep);
    failures_md(f, rep);
    an_db_md(f, rep); /* replay --db evidence, an_report_db.c */
    an_slog_md(f, rep); /* --server-log, an_report_serverlog.c */
    diff_md(f, rep);
    groups_md(f, rep);
    return ferror(f) ? H2R_ERR_IO : 0;
}
