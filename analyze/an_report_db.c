/*
 * The database part of the reports (an_db.h): what the database did while a
 * run replayed. Row counts before and after (and their peak), SQLite WAL
 * growth, PostgreSQL lock waits, waiting backends, commits, rollbacks,
 * deadlocks and the wait events seen, in the four report formats; the HTML
 * adds one small line plot per run (WAL size, or lock waits, over time).
 * Only formatting here; the folding is in an_db.c.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/units.h"
#include "an_db.h"
#include "an_report.h"

#define TOP_WAITS 5

static const char *const row_kinds[] = {"users", "nodes", "pre_auth_keys", "api_keys"};
#define N_ROW_KINDS (sizeof(row_kinds) / sizeof(row_kinds[0]))

static int is_pg(const struct an_db *db)
{
    return an_db_value(db, "pg.xact_commit") != NULL;
}

static int is_sqlite(const struct an_db *db)
{
    return an_db_value(db, "sqlite.wal_bytes") != NULL;
}

static uint64_t max_of(const struct an_db *db, const char *name)
{
    const struct an_db_value *v = an_db_value(db, name);
    return v ? v->max : 0;
}

static uint64_t nonzero_of(const struct an_db *db, const char *name)
{
    const struct an_db_value *v = an_db_value(db, name);
    return v ? v->nonzero : 0;
}

/* Wait events ("pg.wait.TYPE.EVENT") by backend-samples, most first; idle ClientRead left out. */
static size_t top_waits(const struct an_db *db, const struct an_db_value **out, size_t max)
{
    const struct an_db_value *all[AN_DB_MAX_NAMES];
    size_t n = 0;
    for (size_t i = 0; i < db->n_values && n < AN_DB_MAX_NAMES; i++) {
        const struct an_db_value *v = &db->v[i];
        if (strncmp(v->name, "pg.wait.", 8) == 0 &&
            strcmp(v->name, "pg.wait.Client.ClientRead") != 0 && v->sum > 0)
            all[n++] = v;
    }
    for (size_t i = 1; i < n; i++) { /* insertion sort, descending */
        const struct an_db_value *x = all[i];
        size_t j = i;
        for (; j > 0 && all[j - 1]->sum < x->sum; j--)
            all[j] = all[j - 1];
        all[j] = x;
    }
    if (n > max)
        n = max;
    memcpy(out, all, n * sizeof(*out));
    return n;
}

/* "users 0 -> 10 (max 12), nodes ..." */
static void rows_text(const struct an_db *db, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t k = 0; k < N_ROW_KINDS && o < len; k++) {
        char name[32];
        snprintf(name, sizeof(name), "rows.%s", row_kinds[k]);
        const struct an_db_value *v = an_db_value(db, name);
        if (!v)
            continue;
        o += (size_t)snprintf(buf + o, len - o, "%s%s %llu -> %llu", o ? ", " : "", row_kinds[k],
                              (unsigned long long)v->first, (unsigned long long)v->last);
        if (v->max > v->last && o < len)
            o += (size_t)snprintf(buf + o, len - o, " (max %llu)", (unsigned long long)v->max);
    }
    if (!buf[0])
        snprintf(buf, len, "not counted (no Headscale tables yet?)");
}

/* ------------------------------------------------------------------ table */

/* "   LABEL TEXT", TEXT wrapped at spaces to 100 columns under itself. */
static void line_w(FILE *f, const char *label, const char *text)
{
    const size_t width = 100 - 3 - 14 - 1;
    size_t n = strlen(text);
    const char *p = text;
    fprintf(f, "   %-14s ", label);
    while (n > width) {
        size_t cut = width;
        while (cut > width / 2 && p[cut] != ' ')
            cut--;
        if (p[cut] != ' ')
            cut = width;
        fprintf(f, "%.*s\n   %-14s ", (int)cut, p, "");
        p += cut;
        n -= cut;
        while (*p == ' ') {
            p++;
            n--;
        }
    }
    fprintf(f, "%s\n", p);
}

void an_db_table(FILE *f, const struct an_db *db)
{
    if (!db || db->samples == 0)
        return;
    char line[1024], d[32], a[32], b[32], c[32];
    snprintf(line, sizeof(line), "%s, %llu samples over %s", db->kind,
             (unsigned long long)db->samples,
             h2r_format_duration(db->t_last - db->t_first, d, sizeof(d)));
    if (db->failed || db->dropped) {
        size_t o = strlen(line);
        snprintf(line + o, sizeof(line) - o, " (%llu failed, %llu dropped)",
                 (unsigned long long)db->failed, (unsigned long long)db->dropped);
    }
    fprintf(f, "\n");
    line_w(f, "database", line);
    rows_text(db, line, sizeof(line));
    line_w(f, "rows", line);
    if (is_sqlite(db)) {
        const struct an_db_value *w = an_db_value(db, "sqlite.wal_bytes");
        const struct an_db_value *s = an_db_value(db, "sqlite.db_bytes");
        snprintf(line, sizeof(line), "%s -> %s (max %s, growth %s)",
                 h2r_format_bytes(w->first, a, sizeof(a)), h2r_format_bytes(w->last, b, sizeof(b)),
                 h2r_format_bytes(w->max, c, sizeof(c)),
                 h2r_format_bytes(w->max - w->first, d, sizeof(d)));
        if (s) {
            size_t o = strlen(line);
            snprintf(line + o, sizeof(line) - o, "; database file %s -> %s",
                     h2r_format_bytes(s->first, a, sizeof(a)),
                     h2r_format_bytes(s->last, b, sizeof(b)));
        }
        line_w(f, "sqlite WAL", line);
    }
    if (is_pg(db)) {
        snprintf(line, sizeof(line),
                 "lock waits max %llu (in %llu of %llu samples), waiting backends max %llu, "
                 "backends max %llu",
                 (unsigned long long)max_of(db, "pg.lock_waits"),
                 (unsigned long long)nonzero_of(db, "pg.lock_waits"),
                 (unsigned long long)db->samples, (unsigned long long)max_of(db, "pg.waiting"),
                 (unsigned long long)max_of(db, "pg.backends"));
        line_w(f, "pg locks", line);
        snprintf(line, sizeof(line),
                 "commits +%lld, rollbacks +%lld, deadlocks +%lld, rows inserted +%lld, "
                 "updated +%lld, deleted +%lld",
                 (long long)an_db_delta(db, "pg.xact_commit"),
                 (long long)an_db_delta(db, "pg.xact_rollback"),
                 (long long)an_db_delta(db, "pg.deadlocks"),
                 (long long)an_db_delta(db, "pg.tup_inserted"),
                 (long long)an_db_delta(db, "pg.tup_updated"),
                 (long long)an_db_delta(db, "pg.tup_deleted"));
        line_w(f, "pg counters", line);
        const struct an_db_value *w[TOP_WAITS];
        size_t n = top_waits(db, w, TOP_WAITS);
        if (n) {
            size_t o = 0;
            for (size_t i = 0; i < n && i < TOP_WAITS && o < sizeof(line); i++)
                o += (size_t)snprintf(line + o, sizeof(line) - o, "%s%s %.0f", i ? ", " : "",
                                      w[i]->name + 8, w[i]->sum);
            if (o < sizeof(line))
                snprintf(line + o, sizeof(line) - o, " (backend-samples)");
            line_w(f, "pg waits", line);
        }
    }
}

/* ------------------------------------------------------------------- JSON */

static json_t *jv(const struct an_db_value *v)
{
    if (!v)
        return json_null();
    json_t *o = json_object();
    json_object_set_new(o, "samples", json_integer((json_int_t)v->n));
    json_object_set_new(o, "first", json_integer((json_int_t)v->first));
    json_object_set_new(o, "last", json_integer((json_int_t)v->last));
    json_object_set_new(o, "min", json_integer((json_int_t)v->min));
    json_object_set_new(o, "max", json_integer((json_int_t)v->max));
    return o;
}

json_t *an_db_json(const struct an_db *db)
{
    if (!db || db->samples == 0)
        return json_null();
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string(db->kind));
    json_object_set_new(o, "samples", json_integer((json_int_t)db->samples));
    json_object_set_new(o, "failed", json_integer((json_int_t)db->failed));
    json_object_set_new(o, "dropped", json_integer((json_int_t)db->dropped));
    json_object_set_new(o, "t_first_ns", json_integer(db->t_first));
    json_object_set_new(o, "t_last_ns", json_integer(db->t_last));
    json_t *rows = json_object();
    for (size_t k = 0; k < N_ROW_KINDS; k++) {
        char name[32];
        snprintf(name, sizeof(name), "rows.%s", row_kinds[k]);
        json_object_set_new(rows, row_kinds[k], jv(an_db_value(db, name)));
    }
    json_object_set_new(o, "rows", rows);
    if (is_sqlite(db)) {
        const struct an_db_value *w = an_db_value(db, "sqlite.wal_bytes");
        json_t *s = json_object();
        json_t *wal = jv(w);
        json_object_set_new(wal, "growth", json_integer((json_int_t)(w->max - w->first)));
        json_object_set_new(s, "wal_bytes", wal);
        json_object_set_new(s, "db_bytes", jv(an_db_value(db, "sqlite.db_bytes")));
        json_object_set_new(o, "sqlite", s);
    } else {
        json_object_set_new(o, "sqlite", json_null());
    }
    if (is_pg(db)) {
        json_t *p = json_object();
        json_object_set_new(p, "lock_waits_max",
                            json_integer((json_int_t)max_of(db, "pg.lock_waits")));
        json_object_set_new(p, "samples_with_lock_waits",
                            json_integer((json_int_t)nonzero_of(db, "pg.lock_waits")));
        json_object_set_new(p, "waiting_max", json_integer((json_int_t)max_of(db, "pg.waiting")));
        json_object_set_new(p, "backends_max", json_integer((json_int_t)max_of(db, "pg.backends")));
        json_object_set_new(p, "commits", json_integer(an_db_delta(db, "pg.xact_commit")));
        json_object_set_new(p, "rollbacks", json_integer(an_db_delta(db, "pg.xact_rollback")));
        json_object_set_new(p, "deadlocks", json_integer(an_db_delta(db, "pg.deadlocks")));
        json_t *waits = json_object();
        for (size_t i = 0; i < db->n_values; i++)
            if (strncmp(db->v[i].name, "pg.wait.", 8) == 0)
                json_object_set_new(waits, db->v[i].name + 8, json_real(db->v[i].sum));
        json_object_set_new(p, "wait_events", waits);
        json_object_set_new(o, "pg", p);
    } else {
        json_object_set_new(o, "pg", json_null());
    }
    json_t *all = json_object();
    for (size_t i = 0; i < db->n_values; i++)
        json_object_set_new(all, db->v[i].name, jv(&db->v[i]));
    json_object_set_new(o, "values", all);
    json_object_set_new(o, "names_dropped", json_integer((json_int_t)db->names_dropped));
    return o;
}

/* ---------------------------------------------------------- Markdown, HTML */

static int any_db(const struct an_report *rep)
{
    for (size_t i = 0; i < rep->n_runs; i++)
        if (rep->runs[i]->db && rep->runs[i]->db->samples)
            return 1;
    return 0;
}

/* Text safe in a Markdown table cell and in HTML: | < > & " ' become harmless. */
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
        else if (ch < 0x20 || ch >= 0x80)
            fputc('?', f);
        else
            fputc(ch, f);
    }
}

static void rows_cell(FILE *f, const struct an_db *db, const char *name)
{
    const struct an_db_value *v = an_db_value(db, name);
    if (!v)
        fprintf(f, "-");
    else
        fprintf(f, "%llu &rarr; %llu", (unsigned long long)v->first, (unsigned long long)v->last);
}

/* One summary row: engine, samples, rows, WAL growth, lock waits, rollbacks, deadlocks. */
static void summary_cells(FILE *f, const struct an_db *db, const char *sep, int html)
{
    char a[32];
    cell(f, db->kind, html); /* from the run file: escaped like any other input */
    fprintf(f, "%s%llu%s", sep, (unsigned long long)db->samples, sep);
    rows_cell(f, db, "rows.users");
    fputs(sep, f);
    rows_cell(f, db, "rows.nodes");
    fputs(sep, f);
    rows_cell(f, db, "rows.pre_auth_keys");
    fputs(sep, f);
    const struct an_db_value *w = an_db_value(db, "sqlite.wal_bytes");
    fprintf(f, "%s%s", w ? h2r_format_bytes(w->max - w->first, a, sizeof(a)) : "-", sep);
    if (is_pg(db))
        fprintf(f, "%llu%s%lld%s%lld", (unsigned long long)max_of(db, "pg.lock_waits"), sep,
                (long long)an_db_delta(db, "pg.xact_rollback"), sep,
                (long long)an_db_delta(db, "pg.deadlocks"));
    else
        fprintf(f, "-%s-%s-", sep, sep);
}

void an_db_md(FILE *f, const struct an_report *rep)
{
    if (!any_db(rep))
        return;
    fprintf(f, "### Database\n\nSampled by `replay --db` while each run replayed; rows are "
               "before &rarr; after, WAL growth is the peak over the first sample.\n\n"
               "| run | engine | samples | users | nodes | pre-auth keys | WAL growth | "
               "lock waits (max) | rollbacks | deadlocks |\n"
               "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < rep->n_runs; i++) {
        const struct an_db *db = rep->runs[i]->db;
        if (!db || !db->samples)
            continue;
        fprintf(f, "| `");
        cell(f, rep->runs[i]->name, 0);
        fprintf(f, "` | ");
        summary_cells(f, db, " | ", 0);
        fprintf(f, " |\n");
    }
    fprintf(f, "\n");
}

#define SVG_W 540
#define SVG_H 150

/* A small line plot of one thinned series. */
static void svg_series(FILE *f, const struct an_db_series *s, const char *title, const char *color,
                       int bytes)
{
    if (s->n == 0)
        return;
    int64_t t0 = s->t[0], t1 = s->t[s->n - 1];
    uint64_t vmax = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] > vmax)
            vmax = s->v[i];
    double left = 64, top = 26, w = SVG_W - left - 14, h = SVG_H - top - 28;
    double span = t1 > t0 ? (double)(t1 - t0) : 1, vspan = vmax ? (double)vmax : 1;
    char a[32], b[32];
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"",
            SVG_W, SVG_H, SVG_W, SVG_H);
    cell(f, title, 1);
    fprintf(f, "\"><text class=\"title\" x=\"8\" y=\"16\">");
    cell(f, title, 1);
    fprintf(f,
            "</text>\n<line class=\"axis\" x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\"/>"
            "<line class=\"axis\" x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\"/>\n",
            left, top + h, left + w, top + h, left, top, left, top + h);
    if (bytes)
        h2r_format_bytes(vmax, a, sizeof(a));
    else
        snprintf(a, sizeof(a), "%llu", (unsigned long long)vmax);
    fprintf(f,
            "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%s</text>"
            "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">0</text>\n",
            left - 4, top + 4, a, left - 4, top + h);
    fprintf(f,
            "<text x=\"%.0f\" y=\"%.0f\">%s</text><text x=\"%.0f\" y=\"%.0f\" "
            "text-anchor=\"end\">%s</text>\n",
            left, top + h + 16, h2r_format_duration(t0, a, sizeof(a)), left + w, top + h + 16,
            h2r_format_duration(t1, b, sizeof(b)));
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" points=\"", color);
    for (size_t i = 0; i < s->n; i++)
        fprintf(f, "%s%.1f,%.1f", i ? " " : "", left + (double)(s->t[i] - t0) / span * w,
                top + h - (double)s->v[i] / vspan * h);
    fprintf(f, "\"/>\n</svg>\n");
}

void an_db_html(FILE *f, const struct an_report *rep)
{
    static const char *const colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                         "#9467bd", "#8c564b", "#e377c2", "#17becf"};
    if (!any_db(rep))
        return;
    fprintf(f, "<h2>Database</h2>\n<p class=\"meta\">Sampled by <code>replay --db</code> while "
               "each run replayed: rows before &rarr; after, WAL growth (peak over the first "
               "sample), PostgreSQL lock waits (max ungranted locks), rollbacks and deadlocks "
               "during the run.</p>\n<table><tr><th class=\"l\">run</th><th class=\"l\">engine"
               "</th><th>samples</th><th>users</th><th>nodes</th><th>pre-auth keys</th>"
               "<th>WAL growth</th><th>lock waits (max)</th><th>rollbacks</th>"
               "<th>deadlocks</th></tr>\n");
    for (size_t i = 0; i < rep->n_runs; i++) {
        const struct an_db *db = rep->runs[i]->db;
        if (!db || !db->samples)
            continue;
        fprintf(f, "<tr><td class=\"l\">");
        cell(f, rep->runs[i]->name, 1);
        fprintf(f, "</td><td class=\"l\">");
        summary_cells(f, db, "</td><td>", 1);
        fprintf(f, "</td></tr>\n");
    }
    fprintf(f, "</table>\n<div class=\"cdfs\">\n");
    for (size_t i = 0; i < rep->n_runs; i++) {
        const struct an_db *db = rep->runs[i]->db;
        if (!db || !db->samples)
            continue;
        char title[200];
        const char *color = colors[i % (sizeof(colors) / sizeof(colors[0]))];
        if (db->wal.n) {
            snprintf(title, sizeof(title), "%.120s: SQLite WAL size", rep->runs[i]->name);
            svg_series(f, &db->wal, title, color, 1);
        } else if (db->lock_waits.n) {
            snprintf(title, sizeof(title), "%.120s: PostgreSQL lock waits", rep->runs[i]->name);
            svg_series(f, &db->lock_waits, title, color, 0);
        }
    }
    fprintf(f, "</div>\n");
}
