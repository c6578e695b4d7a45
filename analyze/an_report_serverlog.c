/*
 * The server-log part of the reports (an_serverlog.h): what Headscale said
 * while a run replayed, beside what the client saw. Per run: lines read and
 * skipped, errors and warnings inside the run and before/after it, the first
 * server error against the client's first failure and failure onset, the
 * busiest message classes, and per-window counts next to the client's failed
 * exchanges (the HTML draws them as a strip under each other). Only
 * formatting here; the parsing and placing is in an_serverlog.c.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/units.h"
#include "an_report.h"
#include "an_serverlog.h"

#define TOP_TABLE 5
#define TOP_MD 10
#define TOP_JSON AN_SLOG_MAX_CLASSES

static const char *signed_dur(char *buf, size_t len, int64_t ns)
{
    char d[32];
    h2r_format_duration(ns < 0 ? -ns : ns, d, sizeof(d));
    snprintf(buf, len, "%s%s", ns < 0 ? "-" : "+", d);
    return buf;
}

static const char *res_text(char *buf, size_t len, const struct an_slog *s)
{
    if (s->res_ns <= 0)
        snprintf(buf, len, "-");
    else
        h2r_format_duration(s->res_ns, buf, len);
    return buf;
}

static uint64_t sum_levels(const uint64_t *v, int from, int to)
{
    uint64_t n = 0;
    for (int l = from; l <= to; l++)
        n += v[l];
    return n;
}

/* "first error at 1.50s (class), +450ms after the client's first failure (1.05s), ..." */
static void first_error_text(char *buf, size_t len, const struct an_slog *s)
{
    char a[32], b[32], c[32], d[32];
    if (!s->has_first_error) {
        snprintf(buf, len, "no server error inside the run");
        return;
    }
    size_t o = (size_t)snprintf(buf, len, "first at %s (%s)",
                                h2r_format_duration(s->first_error_ns, a, sizeof(a)),
                                s->first_error_class);
    if (o < len && s->has_client_failure)
        o += (size_t)snprintf(buf + o, len - o, ", %s vs the client's first failure (%s)",
                              signed_dur(b, sizeof(b), s->first_error_ns - s->client_failure_ns),
                              h2r_format_duration(s->client_failure_ns, c, sizeof(c)));
    if (o < len && s->has_onset)
        snprintf(buf + o, len - o, ", %s vs the failure onset (%s)",
                 signed_dur(b, sizeof(b), s->first_error_ns - s->onset_ns),
                 h2r_format_duration(s->onset_ns, d, sizeof(d)));
}

/* ------------------------------------------------------------------ table */

static void line_w(FILE *f, const char *label, const char *text)
{
    an_report_wrapped(f, label, 14, text);
}

void an_slog_table(FILE *f, const struct an_run *r)
{
    const struct an_slog *s = r->slog;
    if (!s)
        return;
    char line[1024], a[32];
    size_t o;
    fprintf(f, "\n");
    snprintf(line, sizeof(line),
             "%s (%s), %llu lines, timestamps to %s (placed mid-interval); in the run: %llu "
             "errors, %llu warnings, %llu info or lower; before it: %llu errors, %llu warnings; "
             "after it: %llu errors, %llu warnings",
             s->files, an_slog_format_name(s), (unsigned long long)s->lines,
             res_text(a, sizeof(a), s), (unsigned long long)an_slog_errors(s),
             (unsigned long long)an_slog_warnings(s),
             (unsigned long long)sum_levels(s->in_run, AN_SL_NONE, AN_SL_INFO),
             (unsigned long long)sum_levels(s->before, AN_SL_ERROR, AN_SL_PANIC),
             (unsigned long long)s->before[AN_SL_WARN],
             (unsigned long long)sum_levels(s->after, AN_SL_ERROR, AN_SL_PANIC),
             (unsigned long long)s->after[AN_SL_WARN]);
    o = strlen(line);
    if (s->skipped && o < sizeof(line))
        snprintf(line + o, sizeof(line) - o, "; %llu lines skipped (%s)",
                 (unsigned long long)s->skipped, s->skip_examples[0]);
    line_w(f, "server log", line);
    first_error_text(line, sizeof(line), s);
    line_w(f, "server errors", line);
    /* windows where either side had something: "2s 3/2/0" = client failed / errors / warnings */
    o = 0;
    line[0] = '\0';
    size_t shown = 0, more = 0;
    for (size_t i = 0; i < s->n_windows; i++) {
        uint64_t cf = i < r->series.n ? r->series.w[i].failed : 0;
        if (!cf && !s->w_errors[i] && !s->w_warnings[i])
            continue;
        if (shown == 12 || o + 40 >= sizeof(line)) {
            more++;
            continue;
        }
        o += (size_t)snprintf(line + o, sizeof(line) - o, "%s%s %llu/%llu/%llu", shown ? ", " : "",
                              h2r_format_duration((int64_t)i * s->width_ns, a, sizeof(a)),
                              (unsigned long long)cf, (unsigned long long)s->w_errors[i],
                              (unsigned long long)s->w_warnings[i]);
        shown++;
    }
    if (shown) {
        if (more && o < sizeof(line))
            snprintf(line + o, sizeof(line) - o, " and %zu more windows", more);
        line_w(f, "by window", "window start: client failed / server errors / warnings");
        line_w(f, "", line);
    }
    const struct an_slog_class *top[TOP_TABLE];
    size_t n = an_slog_top(s, top, TOP_TABLE);
    for (size_t i = 0; i < n; i++) {
        char b[32];
        snprintf(line, sizeof(line), "%llu %s, %s..%s: %s", (unsigned long long)top[i]->count,
                 an_slog_level_name(top[i]->level),
                 h2r_format_duration(top[i]->t_first, a, sizeof(a)),
                 h2r_format_duration(top[i]->t_last, b, sizeof(b)), top[i]->key);
        line_w(f, i ? "" : "server classes", line);
    }
}

/* ------------------------------------------------------------------- JSON */

static json_t *jint(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static json_t *jlevels(const uint64_t *v)
{
    json_t *o = json_object();
    for (int l = 0; l < AN_SL_NLEVELS; l++)
        json_object_set_new(o, an_slog_level_name(l), jint(v[l]));
    return o;
}

static json_t *jside(const uint64_t *v)
{
    json_t *o = json_object();
    json_object_set_new(o, "errors", jint(sum_levels(v, AN_SL_ERROR, AN_SL_PANIC)));
    json_object_set_new(o, "warnings", jint(v[AN_SL_WARN]));
    json_object_set_new(o, "other", jint(sum_levels(v, AN_SL_NONE, AN_SL_INFO)));
    json_object_set_new(o, "by_level", jlevels(v));
    return o;
}

static json_t *jstr(const char *s)
{
    json_t *j = json_string(s); /* the parser kept printable ASCII only */
    return j ? j : json_null();
}

json_t *an_slog_json(const struct an_run *r)
{
    const struct an_slog *s = r->slog;
    if (!s)
        return json_null();
    json_t *o = json_object();
    json_object_set_new(o, "files", jstr(s->files));
    json_object_set_new(o, "format", jstr(an_slog_format_name(s)));
    json_object_set_new(o, "lines", jint(s->lines));
    json_object_set_new(o, "parsed", jint(s->n_json + s->n_console + s->n_golog));
    json_object_set_new(o, "go_log_lines", jint(s->n_golog));
    json_object_set_new(o, "blank", jint(s->blank));
    json_object_set_new(o, "skipped", jint(s->skipped));
    json_object_set_new(o, "too_long", jint(s->too_long));
    json_t *ex = json_array();
    for (size_t i = 0; i < s->n_skip_examples; i++)
        json_array_append_new(ex, jstr(s->skip_examples[i]));
    json_object_set_new(o, "skipped_examples", ex);
    json_object_set_new(o, "resolution_ns", s->res_ns > 0 ? json_integer(s->res_ns) : json_null());
    json_object_set_new(o, "t0_wall_ns", json_integer(s->t0_wall_ns));
    json_object_set_new(o, "span_ns", json_integer(s->span_ns));
    json_object_set_new(o, "clock_max_error_ns",
                        s->clock_max_error_ns >= 0 ? json_integer(s->clock_max_error_ns)
                                                   : json_null());
    json_object_set_new(o, "errors", jint(an_slog_errors(s)));
    json_object_set_new(o, "warnings", jint(an_slog_warnings(s)));
    json_object_set_new(o, "in_run", jside(s->in_run));
    json_object_set_new(o, "before", jside(s->before));
    json_object_set_new(o, "after", jside(s->after));
    if (s->has_first_error) {
        json_t *fe = json_object();
        json_object_set_new(fe, "t_ns", json_integer(s->first_error_ns));
        json_object_set_new(fe, "level", jstr(an_slog_level_name(s->first_error_level)));
        json_object_set_new(fe, "class", jstr(s->first_error_class));
        json_object_set_new(o, "first_error", fe);
    } else {
        json_object_set_new(o, "first_error", json_null());
    }
    json_object_set_new(o, "first_warning_ns",
                        s->has_first_warning ? json_integer(s->first_warning_ns) : json_null());
    json_object_set_new(o, "client_first_failure_ns",
                        s->has_client_failure ? json_integer(s->client_failure_ns) : json_null());
    json_object_set_new(o, "client_onset_ns",
                        s->has_onset ? json_integer(s->onset_ns) : json_null());
    json_object_set_new(o, "first_error_vs_first_failure_ns",
                        s->has_first_error && s->has_client_failure
                            ? json_integer(s->first_error_ns - s->client_failure_ns)
                            : json_null());
    json_object_set_new(o, "first_error_vs_onset_ns",
                        s->has_first_error && s->has_onset
                            ? json_integer(s->first_error_ns - s->onset_ns)
                            : json_null());
    json_t *w = json_object(), *we = json_array(), *ww = json_array(), *wc = json_array();
    for (size_t i = 0; i < s->n_windows; i++) {
        json_array_append_new(we, jint(s->w_errors[i]));
        json_array_append_new(ww, jint(s->w_warnings[i]));
        json_array_append_new(wc, jint(i < r->series.n ? r->series.w[i].failed : 0));
    }
    json_object_set_new(w, "width_ns", json_integer(s->width_ns));
    json_object_set_new(w, "errors", we);
    json_object_set_new(w, "warnings", ww);
    json_object_set_new(w, "client_failed", wc);
    json_object_set_new(o, "windows", w);
    const struct an_slog_class *top[TOP_JSON];
    size_t n = an_slog_top(s, top, TOP_JSON);
    json_t *cl = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_object();
        json_object_set_new(c, "class", jstr(top[i]->key));
        json_object_set_new(c, "level", jstr(an_slog_level_name(top[i]->level)));
        json_object_set_new(c, "count", jint(top[i]->count));
        json_object_set_new(c, "in_run", jint(top[i]->in_run));
        json_object_set_new(c, "before", jint(top[i]->before));
        json_object_set_new(c, "after", jint(top[i]->after));
        json_object_set_new(c, "t_first_ns", json_integer(top[i]->t_first));
        json_object_set_new(c, "t_last_ns", json_integer(top[i]->t_last));
        json_object_set_new(c, "example", jstr(top[i]->example));
        json_array_append_new(cl, c);
    }
    json_object_set_new(o, "classes", cl);
    return o;
}

/* ---------------------------------------------------------- Markdown, HTML */

static int any_log(const struct an_report *rep)
{
    for (size_t i = 0; i < rep->n_runs; i++)
        if (rep->runs[i]->slog)
            return 1;
    return 0;
}

/* Text safe in a Markdown table cell (html 0) or in HTML (html 1). */
static void cell(FILE *f, const char *s, int html)
{
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '|')
            fputs(html ? "|" : "\\|", f);
        else if (ch == '<')
            fputs(html ? "&lt;" : "\\<", f);
        else if (ch == '>')
            fputs(html ? "&gt;" : "\\>", f);
        else if (ch == '&')
            fputs(html ? "&amp;" : "&", f);
        else if (ch == '"' && html)
            fputs("&quot;", f);
        else if (ch == '\'' && html)
            fputs("&#39;", f);
        else if (!html && strchr("*_`[]\\#{}", ch))
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            fputc('?', f);
        else
            fputc(ch, f);
    }
}

/* run | file | format | resolution | errors | warnings | before | after | skipped | first error */
static void summary_row(FILE *f, const struct an_run *r, const char *sep, int html)
{
    const struct an_slog *s = r->slog;
    char a[32], b[32];
    cell(f, r->name, html);
    fputs(sep, f);
    cell(f, s->files, html);
    fprintf(f, "%s%s%s%s%s%llu%s%llu%s%llu / %llu%s%llu / %llu%s%llu%s", sep,
            an_slog_format_name(s), sep, res_text(a, sizeof(a), s), sep,
            (unsigned long long)an_slog_errors(s), sep, (unsigned long long)an_slog_warnings(s),
            sep, (unsigned long long)sum_levels(s->before, AN_SL_ERROR, AN_SL_PANIC),
            (unsigned long long)s->before[AN_SL_WARN], sep,
            (unsigned long long)sum_levels(s->after, AN_SL_ERROR, AN_SL_PANIC),
            (unsigned long long)s->after[AN_SL_WARN], sep, (unsigned long long)s->skipped, sep);
    if (!s->has_first_error) {
        fputs("-", f);
    } else {
        fprintf(f, "%s", h2r_format_duration(s->first_error_ns, a, sizeof(a)));
        if (s->has_client_failure)
            fprintf(f, " (%s vs first failure)",
                    signed_dur(b, sizeof(b), s->first_error_ns - s->client_failure_ns));
    }
}

void an_slog_md(FILE *f, const struct an_report *rep)
{
    if (!any_log(rep))
        return;
    fprintf(f, "### Server log\n\n`--server-log`: the server's warnings and errors placed on the "
               "run's timeline (wall clock of the run's t0; errors / warnings before and after "
               "the run counted apart).\n\n"
               "| run | file | format | resolution | errors | warnings | before (err / warn) | "
               "after (err / warn) | skipped | first error |\n"
               "|---|---|---|---:|---:|---:|---:|---:|---:|---|\n");
    for (size_t i = 0; i < rep->n_runs; i++) {
        if (!rep->runs[i]->slog)
            continue;
        fprintf(f, "| ");
        summary_row(f, rep->runs[i], " | ", 0);
        fprintf(f, " |\n");
    }
    fprintf(f, "\n");
    for (size_t i = 0; i < rep->n_runs; i++) {
        const struct an_slog *s = rep->runs[i]->slog;
        const struct an_slog_class *top[TOP_MD];
        size_t n = s ? an_slog_top(s, top, TOP_MD) : 0;
        if (!n)
            continue;
        fprintf(f, "<details><summary>Server message classes of `");
        cell(f, rep->runs[i]->name, 0);
        fprintf(f, "` (%zu)</summary>\n\n| class | level | count | in run | before | after | "
                   "first | last |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
                s->n_cls);
        for (size_t k = 0; k < n; k++) {
            char a[32], b[32];
            fprintf(f, "| ");
            cell(f, top[k]->key, 0);
            fprintf(f, " | %s | %llu | %llu | %llu | %llu | %s | %s |\n",
                    an_slog_level_name(top[k]->level), (unsigned long long)top[k]->count,
                    (unsigned long long)top[k]->in_run, (unsigned long long)top[k]->before,
                    (unsigned long long)top[k]->after,
                    h2r_format_duration(top[k]->t_first, a, sizeof(a)),
                    h2r_format_duration(top[k]->t_last, b, sizeof(b)));
        }
        fprintf(f, "\n</details>\n\n");
    }
}

#define STRIP_W 1100
#define STRIP_H 120

/* Per-window strip: client failures (grey bars, top) and server errors/warnings (bottom). */
static void svg_strip(FILE *f, const struct an_run *r)
{
    const struct an_slog *s = r->slog;
    double left = 70, right = 20, w = STRIP_W - left - right, mid = 62, hh = 34;
    uint64_t cmax = 1, smax = 1;
    size_t n = s->n_windows;
    for (size_t i = 0; i < n; i++) {
        uint64_t cf = i < r->series.n ? r->series.w[i].failed : 0;
        if (cf > cmax)
            cmax = cf;
        if (s->w_errors[i] + s->w_warnings[i] > smax)
            smax = s->w_errors[i] + s->w_warnings[i];
    }
    double bw = w / (double)(n ? n : 1);
    char a[32], b[32];
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 "
            "%d %d\" role=\"img\" aria-label=\"server log strip\"><text class=\"title\" x=\"8\" "
            "y=\"16\">",
            STRIP_W, STRIP_H, STRIP_W, STRIP_H);
    cell(f, r->name, 1);
    fprintf(f, ": client failed (up, max %llu) vs server errors / warnings (down, max %llu) per "
               "window</text>\n",
            (unsigned long long)cmax, (unsigned long long)smax);
    fprintf(f,
            "<line class=\"axis\" x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\"/>"
            "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">client</text>"
            "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">server</text>\n",
            left, mid, left + w, mid, left - 6, mid - 8, left - 6, mid + 16);
    for (size_t i = 0; i < n; i++) {
        uint64_t cf = i < r->series.n ? r->series.w[i].failed : 0;
        double x = left + (double)i * bw, bwid = bw > 1.5 ? bw - 0.5 : bw;
        if (cf)
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                       "fill=\"#8c959f\"/>",
                    x, mid - hh * (double)cf / (double)cmax, bwid, hh * (double)cf / (double)cmax);
        if (s->w_errors[i])
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                       "fill=\"#cf222e\"/>",
                    x, mid, bwid, hh * (double)s->w_errors[i] / (double)smax);
        if (s->w_warnings[i])
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                       "fill=\"#d4a72c\"/>",
                    x, mid + hh * (double)s->w_errors[i] / (double)smax, bwid,
                    hh * (double)s->w_warnings[i] / (double)smax);
    }
    if (s->has_first_error) {
        double x = left + (double)s->first_error_ns / (double)s->width_ns * bw;
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#cf222e\" "
                   "stroke-dasharray=\"3 2\"/>",
                x, x, mid - hh, mid + hh);
    }
    fprintf(f,
            "<text x=\"%.0f\" y=\"%d\">0</text><text x=\"%.0f\" y=\"%d\" text-anchor=\"end\">"
            "%s</text><text x=\"%.0f\" y=\"%d\" text-anchor=\"middle\">%s windows; before the "
            "run: %llu errors, after: %llu</text>\n</svg>\n",
            left, STRIP_H - 6, left + w, STRIP_H - 6,
            h2r_format_duration((int64_t)n * s->width_ns, a, sizeof(a)), left + w / 2,
            STRIP_H - 6, h2r_format_duration(s->width_ns, b, sizeof(b)),
            (unsigned long long)sum_levels(s->before, AN_SL_ERROR, AN_SL_PANIC),
            (unsigned long long)sum_levels(s->after, AN_SL_ERROR, AN_SL_PANIC));
}

void an_slog_html(FILE *f, const struct an_report *rep)
{
    if (!any_log(rep))
        return;
    fprintf(f, "<h2>Server log</h2>\n<p class=\"meta\"><code>--server-log</code>: the server's "
               "warnings and errors on the run's timeline (placed by the wall clock of the "
               "run's t0, at the middle of the interval each timestamp names; same host or "
               "synchronized clocks assumed).</p>\n<table><tr><th class=\"l\">run</th>"
               "<th class=\"l\">file</th><th class=\"l\">format</th><th>resolution</th>"
               "<th>errors</th><th>warnings</th><th>before (err / warn)</th>"
               "<th>after (err / warn)</th><th>skipped</th><th class=\"l\">first error</th>"
               "</tr>\n");
    for (size_t i = 0; i < rep->n_runs; i++) {
        if (!rep->runs[i]->slog)
            continue;
        fprintf(f, "<tr><td class=\"l\">");
        summary_row(f, rep->runs[i], "</td><td>", 1);
        fprintf(f, "</td></tr>\n");
    }
    fprintf(f, "</table>\n");
    for (size_t i = 0; i < rep->n_runs; i++) {
        const struct an_run *r = rep->runs[i];
        const struct an_slog *s = r->slog;
        if (!s)
            continue;
        svg_strip(f, r);
        const struct an_slog_class *top[TOP_MD];
        size_t n = an_slog_top(s, top, TOP_MD);
        if (!n)
            continue;
        fprintf(f, "<table><tr><th class=\"l\">class</th><th class=\"l\">level</th>"
                   "<th>count</th><th>in run</th><th>before</th><th>after</th><th>first</th>"
                   "<th>last</th></tr>\n");
        for (size_t k = 0; k < n; k++) {
            char a[32], b[32];
            fprintf(f, "<tr><td class=\"l\"><code>");
            cell(f, top[k]->key, 1);
            fprintf(f, "</code></td><td class=\"l\">%s</td><td>%llu</td><td>%llu</td><td>%llu"
                       "</td><td>%llu</td><td>%s</td><td>%s</td></tr>\n",
                    an_slog_level_name(top[k]->level), (unsigned long long)top[k]->count,
                    (unsigned long long)top[k]->in_run, (unsigned long long)top[k]->before,
                    (unsigned long long)top[k]->after,
                    h2r_format_duration(top[k]->t_first, a, sizeof(a)),
                    h2r_format_duration(top[k]->t_last, b, sizeof(b)));
        }
        fprintf(f, "</table>\n");
    }
}
