/*
 * HTML report: one self-contained file (inline CSS and SVG; no script, no
 * fonts, no network), so it can be attached to a CI job, mailed, or opened
 * offline years later. Plots are drawn here as SVG paths: p99 latency, error
 * rate (failure onsets marked), offered/completed load and in-flight over
 * time with the runs overlaid, and the latency CDF of the busiest endpoints.
 * Long series are thinned to about one point per pixel column, keeping the
 * maximum of each column so spikes survive.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/units.h"
#include "an_db.h"
#include "an_report.h"
#include "an_serverlog.h"

#define HTML_TOP_GROUPS 20
#define CDF_PLOTS 12
#define TIME_W 1100
#define TIME_H 260
#define CDF_W 360
#define CDF_H 220
#define MAX_POINTS 1000

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};
#define N_COLORS (sizeof(palette) / sizeof(palette[0]))

static const char *color_of(size_t run)
{
    return palette[run % N_COLORS];
}

static void esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            if ((unsigned char)*s >= 0x80 || (unsigned char)*s < 0x20)
                fputc('?', f);
            else
                fputc(*s, f);
        }
    }
}

static const char style[] =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;"
    "margin:24px auto;max-width:1160px;padding:0 16px;color:#1f2328;background:#fff}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;"
    "border-bottom:1px solid #d0d7de;padding-bottom:4px}"
    "p.meta{color:#59636e;margin:0 0 12px}"
    "table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}"
    "th,td{padding:4px 10px;border-bottom:1px solid #eaeef2;text-align:right;"
    "vertical-align:top}th{background:#f6f8fa;font-weight:600}"
    "td.l,th.l{text-align:left}code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}"
    ".pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:700}"
    ".sig{font-weight:700;color:#9a6700}.verdict{font-size:16px;padding:8px 12px;"
    "border-radius:6px;display:inline-block;margin:8px 0}"
    ".vpass{background:#dafbe1}.vfail{background:#ffebe9}"
    "svg{display:block;background:#fff;border:1px solid #eaeef2;border-radius:4px}"
    "svg text{font:11px system-ui,Helvetica,Arial,sans-serif;fill:#424a53}"
    "svg .title{font-size:13px;font-weight:600;fill:#1f2328}"
    "svg .grid{stroke:#eaeef2;stroke-width:1}svg .axis{stroke:#8c959f;stroke-width:1}"
    ".cdfs{display:flex;flex-wrap:wrap;gap:12px}"
    "details{margin:6px 0}summary{cursor:pointer;color:#0969da}";

/* ------------------------------------------------------------------ plots */

enum plot_kind { PK_P99, PK_ERR, PK_RATE, PK_INFLIGHT };

struct plot {
    double x0, x1, y0, y1;
    double left, top, w, h; /* plot area in px */
    int log_x;
};

static double px(const struct plot *p, double x)
{
    double t;
    if (p->log_x)
        t = (log10(x) - log10(p->x0)) / (log10(p->x1) - log10(p->x0));
    else
        t = (x - p->x0) / (p->x1 - p->x0);
    return p->left + t * p->w;
}

static double py(const struct plot *p, double y)
{
    return p->top + p->h - (y - p->y0) / (p->y1 - p->y0) * p->h;
}

static double nice_step(double range, int target)
{
    if (!(range > 0))
        return 1;
    double raw = range / target, mag = pow(10, floor(log10(raw))), r = raw / mag;
    return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
}

/* Axis labels: round numbers need no decimals ("50ms", not "50.00ms"). */
static void fmt_tick_ns(char *buf, size_t len, double ns)
{
    if (ns == 0)
        snprintf(buf, len, "0");
    else if (ns >= 1e9)
        snprintf(buf, len, "%gs", ns / 1e9);
    else if (ns >= 1e6)
        snprintf(buf, len, "%gms", ns / 1e6);
    else if (ns >= 1e3)
        snprintf(buf, len, "%gus", ns / 1e3);
    else
        snprintf(buf, len, "%gns", ns);
}

static void fmt_y(char *buf, size_t len, int kind, double v)
{
    if (kind == PK_P99)
        fmt_tick_ns(buf, len, v);
    else if (kind == PK_ERR)
        snprintf(buf, len, "%g%%", v * 100);
    else
        snprintf(buf, len, "%g", v);
}

static void fmt_seconds(char *buf, size_t len, double ns)
{
    double s = ns / 1e9;
    if (s >= 120 && fmod(s, 60) == 0)
        snprintf(buf, len, "%gm", s / 60);
    else
        snprintf(buf, len, "%gs", s);
}

static void svg_open(FILE *f, const char *id, int w, int h, const char *title)
{
    fprintf(f,
            "<svg id=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"",
            id, w, h, w, h);
    esc(f, title);
    fprintf(f, "\">\n<text class=\"title\" x=\"12\" y=\"18\">");
    esc(f, title);
    fprintf(f, "</text>\n");
}

static void legend(FILE *f, const struct an_report *rep, double x_right, double y)
{
    double x = x_right;
    for (size_t i = rep->n_runs; i-- > 0;) {
        double tw = 7.0 * (double)strlen(rep->runs[i]->name) + 26;
        x -= tw;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"3\" fill=\"%s\"/>", x, y - 4,
                color_of(i));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", x + 18, y);
        esc(f, rep->runs[i]->name);
        fprintf(f, "</text>\n");
    }
}

/* Value of window w for a plot kind; 0 when the window has none. */
static int window_value(int kind, const struct an_window *w, int64_t width, double *v)
{
    switch (kind) {
    case PK_P99:
        if (!w->lat || h2r_hist_count(w->lat) == 0)
            return 0;
        *v = (double)h2r_hist_percentile(w->lat, 99);
        return 1;
    case PK_ERR:
        if (!w->due)
            return 0;
        *v = an_window_error_rate(w);
        return 1;
    case PK_RATE:
        *v = (double)w->due * 1e9 / (double)width;
        return 1;
    default:
        *v = (double)w->in_flight;
        return 1;
    }
}

/* Thinned series: point k covers windows [k*step, (k+1)*step), value = max. */
static int thinned(const struct an_series *s, int kind, size_t k, size_t step, double *t, double *v,
                   int completed)
{
    int any = 0;
    for (size_t i = k * step; i < s->n && i < (k + 1) * step; i++) {
        double x = 0;
        int ok = 1;
        if (completed)
            x = (double)s->w[i].done * 1e9 / (double)s->width_ns;
        else
            ok = window_value(kind, &s->w[i], s->width_ns, &x);
        if (ok && (!any || x > *v))
            *v = x;
        any |= ok;
    }
    *t = ((double)(k * step) + (double)step / 2.0) * (double)s->width_ns;
    return any;
}

static void series_path(FILE *f, const struct plot *p, const struct an_series *s, int kind,
                        const char *color, int completed)
{
    size_t step = s->n > MAX_POINTS ? (s->n + MAX_POINTS - 1) / MAX_POINTS : 1;
    size_t npts = (s->n + step - 1) / step;
    int pen = 0;
    fprintf(f, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"%s d=\"", color,
            completed ? " stroke-dasharray=\"5 3\"" : "");
    int any = 0;
    for (size_t k = 0; k < npts; k++) {
        double t, v = 0;
        if (!thinned(s, kind, k, step, &t, &v, completed)) {
            pen = 0;
            continue;
        }
        if (v > p->y1)
            v = p->y1;
        fprintf(f, "%c%.1f %.1f", pen ? 'L' : 'M', px(p, t), py(p, v));
        pen = 1;
        any = 1;
    }
    if (!any)
        fprintf(f, "M0 0");
    fprintf(f, "\"/>\n");
}

static void axes(FILE *f, const struct plot *p, int kind, const char *xlabel)
{
    char buf[32];
    double ys = nice_step(p->y1 - p->y0, 5);
    for (double y = p->y0; y <= p->y1 + ys * 1e-9; y += ys) {
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>",
                p->left, p->left + p->w, py(p, y), py(p, y));
        fmt_y(buf, sizeof(buf), kind, y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", p->left - 6,
                py(p, y) + 4, buf);
    }
    if (p->log_x) {
        for (double x = pow(10, ceil(log10(p->x0))); x <= p->x1 * 1.0001; x *= 10) {
            fprintf(f, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>",
                    px(p, x), px(p, x), p->top, p->top + p->h);
            fmt_tick_ns(buf, sizeof(buf), x);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", px(p, x),
                    p->top + p->h + 14, buf);
        }
    } else {
        double xs = nice_step(p->x1 - p->x0, 10);
        for (double x = p->x0; x <= p->x1 + xs * 1e-9; x += xs) {
            fprintf(f, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>",
                    px(p, x), px(p, x), p->top, p->top + p->h);
            fmt_seconds(buf, sizeof(buf), x);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", px(p, x),
                    p->top + p->h + 14, buf);
        }
    }
    fprintf(f, "<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", p->left,
            p->left + p->w, p->top + p->h, p->top + p->h);
    fprintf(f, "<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>\n", p->left,
            p->left, p->top, p->top + p->h);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", p->left + p->w / 2,
            p->top + p->h + 30, xlabel);
}

static void time_plot(FILE *f, const struct an_report *rep, const char *id, const char *title,
                      int kind)
{
    struct plot p = {0, 1e9, 0, 0, 70, 34, TIME_W - 90, TIME_H - 34 - 42, 0};
    /* ranges: x over the longest run, y from 0 to a nice ceiling of the data */
    for (size_t i = 0; i < rep->n_runs; i++) {
        const struct an_series *s = &rep->runs[i]->series;
        double end = (double)s->n * (double)s->width_ns;
        if (end > p.x1)
            p.x1 = end;
        for (size_t k = 0; k < s->n; k++) {
            double v;
            if (window_value(kind, &s->w[k], s->width_ns, &v) && v > p.y1)
                p.y1 = v;
            if (kind == PK_RATE) {
                v = (double)s->w[k].done * 1e9 / (double)s->width_ns;
                if (v > p.y1)
                    p.y1 = v;
            }
        }
    }
    if (kind == PK_ERR && p.y1 < rep->threshold * 2)
        p.y1 = rep->threshold * 2;
    if (!(p.y1 > 0))
        p.y1 = kind == PK_P99 ? 1e6 : 1;
    double ys = nice_step(p.y1, 5);
    p.y1 = ceil(p.y1 / ys * (1 - 1e-12)) * ys;
    if (kind == PK_ERR && p.y1 > 1)
        p.y1 = 1;
    double xs = nice_step(p.x1, 10);
    p.x1 = ceil(p.x1 / xs * (1 - 1e-12)) * xs;
    svg_open(f, id, TIME_W, TIME_H, title);
    legend(f, rep, TIME_W - 16, 18);
    axes(f, &p, kind, "replay time");
    if (kind == PK_ERR) {
        fprintf(f,
                "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#8c959f\" "
                "stroke-dasharray=\"2 3\"/>",
                p.left, p.left + p.w, py(&p, rep->threshold), py(&p, rep->threshold));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">threshold</text>\n",
                p.left + p.w - 4, py(&p, rep->threshold) - 4);
    }
    for (size_t i = 0; i < rep->n_runs; i++) {
        series_path(f, &p, &rep->runs[i]->series, kind, color_of(i), 0);
        if (kind == PK_RATE)
            series_path(f, &p, &rep->runs[i]->series, kind, color_of(i), 1);
    }
    if (kind == PK_ERR) {
        for (size_t i = 0; i < rep->n_runs; i++) {
            const struct an_onset *o = &rep->runs[i]->onset;
            if (!o->found)
                continue;
            double x = px(&p, (double)o->t_ns);
            fprintf(f,
                    "<line class=\"onset\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" "
                    "stroke=\"%s\" stroke-width=\"1.5\" stroke-dasharray=\"6 3\"/>",
                    x, x, p.top, p.top + p.h, color_of(i));
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\">onset ", x + 4,
                    p.top + 12 + 13.0 * (double)(i % 4), color_of(i));
            esc(f, rep->runs[i]->name);
            fprintf(f, "</text>\n");
            if (o->recovered) {
                double xr = px(&p, (double)o->rec_t_ns);
                fprintf(f,
                        "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                        "stroke-dasharray=\"1 3\"/>",
                        xr, xr, p.top, p.top + p.h, color_of(i));
                fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\">recovered</text>\n", xr + 4,
                        p.top + p.h - 6 - 13.0 * (double)(i % 4), color_of(i));
            }
        }
    }
    if (kind == PK_RATE)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">solid: offered (due), dashed: completed</text>\n",
                p.left + 8, p.top + 12);
    fprintf(f, "</svg>\n");
}

/* Latency CDF of one endpoint, one line per run that has it. */
static void cdf_plot(FILE *f, const struct an_report *rep, const char *key, size_t n)
{
    struct plot p = {0, 0, 0, 1, 48, 30, CDF_W - 76, CDF_H - 30 - 38, 1};
    int any = 0;
    for (size_t i = 0; i < rep->n_runs; i++) {
        const struct an_group *g = an_run_group(rep->runs[i], key);
        if (!g || h2r_hist_count(g->lat_int) == 0)
            continue;
        double lo = (double)h2r_hist_min(g->lat_int), hi = (double)h2r_hist_max(g->lat_int);
        if (lo < 1)
            lo = 1;
        if (!any || lo < p.x0)
            p.x0 = lo;
        if (!any || hi > p.x1)
            p.x1 = hi;
        any = 1;
    }
    char id[32], title[48];
    snprintf(id, sizeof(id), "cdf-%zu", n);
    if (strlen(key) >= sizeof(title))
        snprintf(title, sizeof(title), "%.*s...", (int)sizeof(title) - 4, key);
    else
        snprintf(title, sizeof(title), "%s", key);
    svg_open(f, id, CDF_W, CDF_H, title);
    if (!any) {
        fprintf(f, "<text x=\"%d\" y=\"%d\">no successful exchanges</text></svg>\n", 60, CDF_H / 2);
        return;
    }
    p.x0 = pow(10, floor(log10(p.x0)));
    p.x1 = pow(10, ceil(log10(p.x1 * 1.0001)));
    if (p.x1 <= p.x0)
        p.x1 = p.x0 * 10;
    axes(f, &p, PK_ERR, "latency from intended send");
    for (size_t i = 0; i < rep->n_runs; i++) {
        const struct an_group *g = an_run_group(rep->runs[i], key);
        if (!g || h2r_hist_count(g->lat_int) == 0)
            continue;
        double total = (double)h2r_hist_count(g->lat_int), cum = 0, last_x = -1;
        fprintf(f, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" d=\"", color_of(i));
        int pen = 0;
        size_t nb = h2r_hist_nbuckets(g->lat_int);
        for (size_t b = 0; b < nb; b++) {
            int64_t lo, hi;
            uint64_t c = h2r_hist_bucket(g->lat_int, b, &lo, &hi);
            if (!c)
                continue;
            cum += (double)c;
            double v = (double)hi > p.x1 ? p.x1 : (double)(hi < 1 ? 1 : hi);
            double x = px(&p, v);
            if (pen && x - last_x < 0.7 && cum < total)
                continue;
            fprintf(f, "%c%.1f %.1f", pen ? 'L' : 'M', x, py(&p, cum / total));
            pen = 1;
            last_x = x;
        }
        fprintf(f, "\"/>\n");
    }
    fprintf(f, "</svg>\n");
}

/* ----------------------------------------------------------------- tables */

static void td_ns(FILE *f, int64_t ns, uint64_t n)
{
    char b[24];
    fprintf(f, "<td>%s</td>", an_fmt_ns(b, sizeof(b), ns, n));
}

static void gates_html(FILE *f, const struct an_report *rep)
{
    if (rep->n_gates == 0)
        return;
    if (rep->gates_failed)
        fprintf(f,
                "<div class=\"verdict vfail\">Gates: <span class=\"fail\">%zu of %zu "
                "failed</span></div>\n",
                rep->gates_failed, rep->n_gates);
    else
        fprintf(f,
                "<div class=\"verdict vpass\">Gates: <span class=\"pass\">all %zu "
                "passed</span></div>\n",
                rep->n_gates);
    fprintf(f, "<table><tr><th class=\"l\"></th><th class=\"l\">gate</th><th>actual</th>"
               "<th>limit</th><th class=\"l\">note</th></tr>\n");
    for (size_t i = 0; i < rep->n_gates; i++) {
        const struct an_gate_result *g = &rep->gates[i];
        char a[48] = "-", l[48] = "-";
        if (g->has_actual)
            an_fmt_metric(a, sizeof(a), g->gate.metric, g->actual);
        if (g->has_actual && (!g->gate.relative || g->has_reference))
            an_fmt_metric(l, sizeof(l), g->gate.metric, g->limit);
        fprintf(f, "<tr><td class=\"l %s\">%s</td><td class=\"l\"><code>",
                g->pass ? "pass" : "fail", g->pass ? "pass" : "FAIL");
        esc(f, g->expr);
        fprintf(f, "</code></td><td>%s</td><td>%s</td><td class=\"l\">", a, l);
        esc(f, g->note);
        fprintf(f, "</td></tr>\n");
    }
    fprintf(f, "</table>\n");
}

static void runs_html(FILE *f, const struct an_report *rep)
{
    fprintf(f, "<h2>Runs</h2>\n<table><tr><th class=\"l\">run</th><th class=\"l\">source</th>"
               "<th>exchanges</th><th>errors</th><th>error rate</th><th>ok/s</th><th>p50</th>"
               "<th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th></tr>\n");
    for (size_t i = 0; i < rep->n_runs; i++) {
        const struct an_run *r = rep->runs[i];
        const struct h2r_hist *h = r->lat_int;
        uint64_t n = h2r_hist_count(h), err = an_errors(r->count, r->ok);
        char b[32];
        fprintf(f, "<tr><td class=\"l\"><span style=\"color:%s\">&#9632;</span> ", color_of(i));
        esc(f, r->name);
        if ((int)i == rep->ref)
            fprintf(f, " <em>(%s)</em>", rep->explicit_baseline ? "baseline" : "reference");
        fprintf(f, "</td><td class=\"l\"><code>");
        esc(f, r->sources);
        fprintf(f, "</code>");
        if (r->label[0]) {
            fprintf(f, "<br>");
            esc(f, r->label);
        }
        fprintf(f, "</td><td>%llu</td><td>%llu</td><td>%s</td><td>%.1f</td>",
                (unsigned long long)r->count, (unsigned long long)err,
                an_fmt_pct(b, sizeof(b), r->count ? (double)err / (double)r->count : 0),
                (double)r->ok * 1e9 / (double)an_run_duration(r));
        td_ns(f, h2r_hist_percentile(h, 50), n);
        td_ns(f, h2r_hist_percentile(h, 90), n);
        td_ns(f, h2r_hist_percentile(h, 99), n);
        td_ns(f, h2r_hist_percentile(h, 99.9), n);
        td_ns(f, h2r_hist_max(h), n);
        td_ns(f, (int64_t)llround(h2r_hist_mean(h)), n);
        fprintf(f, "</tr>\n");
    }
    fprintf(f, "</table>\n<p class=\"meta\">Latency from the intended send time of successful "
               "exchanges (free of coordinated omission).</p>\n");
}

static void failures_html(FILE *f, const struct an_report *rep)
{
    char thr[32];
    fprintf(f,
            "<h2>Failure points</h2>\n<p class=\"meta\">Onset: error rate above %s for %u "
            "consecutive windows.</p>\n<table><tr><th class=\"l\">run</th>"
            "<th class=\"l\">errors by class</th><th class=\"l\">first failure</th>"
            "<th class=\"l\">onset</th><th class=\"l\">recovery</th>"
            "<th>new / shared</th></tr>\n",
            an_fmt_pct(thr, sizeof(thr), rep->threshold), rep->sustain);
    for (size_t i = 0; i < rep->n_runs; i++) {
        const struct an_run *r = rep->runs[i];
        char line[1024];
        fprintf(f, "<tr><td class=\"l\">");
        esc(f, r->name);
        fprintf(f, "</td><td class=\"l\">");
        esc(f,
            an_errors(r->count, r->ok) ? an_fmt_classes(line, sizeof(line), r->by_class) : "none");
        fprintf(f, "</td><td class=\"l\">");
        esc(f, an_fmt_first_failure(line, sizeof(line), r));
        fprintf(f, "</td><td class=\"l\">");
        esc(f, an_fmt_onset(line, sizeof(line), r, rep->threshold, rep->sustain));
        fprintf(f, "</td><td class=\"l\">");
        esc(f, an_fmt_recovery(line, sizeof(line), r));
        if (r->compared)
            fprintf(f, "</td><td>%llu / %llu</td></tr>\n", (unsigned long long)r->new_failures,
                    (unsigned long long)r->shared_failures);
        else
            fprintf(f, "</td><td>-</td></tr>\n");
    }
    fprintf(f, "</table>\n");
}

static void rel_td(FILE *f, double rel, int valid, int sig)
{
    char b[24];
    an_fmt_rel(b, sizeof(b), rel, valid);
    fprintf(f, "<td%s>%s</td>", sig ? " class=\"sig\"" : "", b);
}

static void diff_html(FILE *f, const struct an_report *rep)
{
    if (rep->n_rows == 0)
        return;
    fprintf(f, "<h2>Diff vs ");
    esc(f, rep->runs[rep->ref]->name);
    fprintf(f, "</h2>\n<p class=\"meta\">Highlighted deltas are significant: p &lt; 0.01 "
               "(Mann-Whitney U on the latency histograms, two-proportion z-test for errors) "
               "and |delta| &ge; 5%%.</p>\n<table><tr><th class=\"l\">endpoint</th>"
               "<th class=\"l\">run</th><th>p50 ref</th><th>p50</th><th>&Delta;p50</th>"
               "<th>p99 ref</th><th>p99</th><th>&Delta;p99</th><th>errors</th>"
               "<th>error rate</th><th>&Delta;</th><th>p</th></tr>\n");
    size_t shown = 0;
    for (size_t i = 0; i < rep->n_rows; i++) {
        const struct an_diff_row *w = &rep->rows[i];
        if (!w->key)
            shown = 0;
        else if (++shown > HTML_TOP_GROUPS)
            continue;
        int have =
            w->ref_lat && w->cur_lat && h2r_hist_count(w->ref_lat) && h2r_hist_count(w->cur_lat);
        uint64_t nr = w->ref_lat ? h2r_hist_count(w->ref_lat) : 0;
        uint64_t nc = w->cur_lat ? h2r_hist_count(w->cur_lat) : 0;
        char b[32];
        fprintf(f, "<tr><td class=\"l\">");
        if (w->key) {
            fprintf(f, "<code>");
            esc(f, w->key);
            fprintf(f, "</code>");
        } else {
            fprintf(f, "<strong>all</strong>");
        }
        fprintf(f, "</td><td class=\"l\">");
        esc(f, rep->runs[w->run]->name);
        fprintf(f, "</td>");
        td_ns(f, w->p50_ref, nr);
        td_ns(f, w->p50_cur, nc);
        rel_td(f, w->p50_rel, have, w->p50_sig);
        td_ns(f, w->p99_ref, nr);
        td_ns(f, w->p99_cur, nc);
        rel_td(f, w->p99_rel, have, w->p99_sig);
        fprintf(f, "<td>%llu</td><td>%s</td>", (unsigned long long)w->err_cur,
                w->n_cur ? an_fmt_pct(b, sizeof(b), w->err_rate_cur) : "-");
        rel_td(f, w->err_rel, w->n_ref && w->n_cur, w->err_sig);
        fprintf(f, "<td>%s</td></tr>\n", w->mw.valid ? an_fmt_p(b, sizeof(b), w->mw.p) : "-");
    }
    fprintf(f, "</table>\n");
}

static void groups_html(FILE *f, const struct an_report *rep)
{
    fprintf(f, "<h2>Endpoints</h2>\n");
    for (size_t i = 0; i < rep->n_runs; i++) {
        const struct an_run *r = rep->runs[i];
        size_t *idx = calloc(r->n_groups ? r->n_groups : 1, sizeof(*idx));
        if (!idx)
            return;
        an_sorted_groups(r, idx);
        fprintf(f, "<details%s><summary>", i == 0 ? " open" : "");
        esc(f, r->name);
        fprintf(f,
                ": %zu endpoint%s</summary>\n<table><tr><th class=\"l\">endpoint</th>"
                "<th>count</th><th>errors</th><th class=\"l\">by class</th><th>p50</th>"
                "<th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>\n",
                r->n_groups, r->n_groups == 1 ? "" : "s");
        for (size_t k = 0; k < r->n_groups && k < (size_t)HTML_TOP_GROUPS * 5; k++) {
            const struct an_group *g = r->groups[idx[k]];
            uint64_t n = h2r_hist_count(g->lat_int);
            char line[512];
            fprintf(f, "<tr><td class=\"l\"><code>");
            esc(f, g->key);
            fprintf(f, "</code></td><td>%llu</td><td>%llu</td><td class=\"l\">",
                    (unsigned long long)g->count, (unsigned long long)an_errors(g->count, g->ok));
            esc(f, an_fmt_classes(line, sizeof(line), g->by_class));
            fprintf(f, "</td>");
            td_ns(f, h2r_hist_percentile(g->lat_int, 50), n);
            td_ns(f, h2r_hist_percentile(g->lat_int, 90), n);
            td_ns(f, h2r_hist_percentile(g->lat_int, 99), n);
            td_ns(f, h2r_hist_percentile(g->lat_int, 99.9), n);
            td_ns(f, h2r_hist_max(g->lat_int), n);
            fprintf(f, "</tr>\n");
        }
        fprintf(f, "</table></details>\n");
        free(idx);
    }
}

/* The endpoints worth a CDF: the busiest of the first run (the reference), then others. */
static void cdf_section(FILE *f, const struct an_report *rep)
{
    const char *keys[CDF_PLOTS];
    size_t n = 0;
    fprintf(f, "<h2>Latency CDF per endpoint</h2>\n<div class=\"cdfs\">\n");
    for (size_t i = 0; i < rep->n_runs && n < CDF_PLOTS; i++) {
        const struct an_run *r = rep->runs[i];
        size_t *idx = calloc(r->n_groups ? r->n_groups : 1, sizeof(*idx));
        if (!idx)
            break;
        an_sorted_groups(r, idx);
        for (size_t k = 0; k < r->n_groups && n < CDF_PLOTS; k++) {
            const char *key = r->groups[idx[k]]->key;
            int dup = 0;
            for (size_t j = 0; j < n; j++)
                dup |= strcmp(keys[j], key) == 0;
            if (!dup)
                keys[n++] = key;
        }
        free(idx);
    }
    for (size_t i = 0; i < n; i++)
        cdf_plot(f, rep, keys[i], i);
    fprintf(f, "</div>\n");
}

int an_report_html(FILE *f, const struct an_report *rep)
{
    char w[32];
    fprintf(f,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<title>h2replay analyze</title>\n<style>%s</style>\n</head>\n<body>\n"
            "<h1>h2replay analyze</h1>\n<p class=\"meta\">%zu run%s, grouped by %s, %s "
            "windows",
            style, rep->n_runs, rep->n_runs == 1 ? "" : "s", rep->group_by,
            h2r_format_duration(rep->window_ns, w, sizeof(w)));
    if (rep->ref >= 0) {
        fprintf(f, ", %s <strong>", rep->explicit_baseline ? "baseline" : "reference");
        esc(f, rep->runs[rep->ref]->name);
        fprintf(f, "</strong>");
    }
    fprintf(f, ".</p>\n");
    gates_html(f, rep);
    runs_html(f, rep);
    failures_html(f, rep);
    fprintf(f, "<h2>Over time</h2>\n");
    time_plot(f, rep, "plot-p99", "p99 latency from intended send, per window", PK_P99);
    fprintf(f, "<br>\n");
    time_plot(f, rep, "plot-errors", "Error rate per window (by due time), failure onset marked",
              PK_ERR);
    fprintf(f, "<br>\n");
    time_plot(f, rep, "plot-load", "Exchanges per second", PK_RATE);
    fprintf(f, "<br>\n");
    time_plot(f, rep, "plot-inflight", "In flight at the end of each window", PK_INFLIGHT);
    an_db_html(f, rep); /* replay --db evidence, an_report_db.c */
    an_slog_html(f, rep); /* --server-log, an_report_serverlog.c */
    cdf_section(f, rep);
    diff_html(f, rep);
    groups_html(f, rep);
    fprintf(f, "</body>\n</html>\n");
    return ferror(f) ? H2R_ERR_IO : 0;
}
