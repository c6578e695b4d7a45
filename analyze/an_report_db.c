/*
 * The database part of the reports (an_db.h): what the database did while a
 * run replayed. Row counts before and after (and their peak), SQLite WAL
 * growth, PostgreSQL lock waits, waiting backends, commits, rollbacks,
 * deadlocks and the wait events seen, in the four report formats; the HTML
 * adds one small line plot per run (WAL size, or lock waits, over time).
 * Then what the server acknowledged and the end-of-section check against
 * the database ("acknowledged but lost", "present but never acknowledged"),
 * and the replay client's own resources with a "client-bound" verdict when
 * the client, not the server, may have set the pace.
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

static void line_w(FILE *f, const char *label, const char *text)
{
    an_report_wrapped(f, label, 14, text);
}

/* "users 10, pre_auth_keys 7" from the ack records. */
static void acks_text(const struct an_db *db, char *buf, size_t len)
{
    static const char *const names[AN_DB_VERIFY_KINDS] = {"users", "nodes", "pre_auth_keys",
                                                          "api_keys"};
    size_t o = 0;
    buf[0] = '\0';
    for (unsigned k = 0; k < AN_DB_VERIFY_KINDS && o < len; k++)
        if (db->acks_by_kind[k])
            o += (size_t)snprintf(buf + o, len - o, "%s%s %llu", o ? ", " : "", names[k],
                                  (unsigned long long)db->acks_by_kind[k]);
    if (db->acks_from_request && o < len)
        snprintf(buf + o, len - o, " (%llu identified by the request)",
                 (unsigned long long)db->acks_from_request);
    if (!buf[0])
        snprintf(buf, len, "%llu", (unsigned long long)db->acks);
}

/* "acknowledged but lost 1, present but never acknowledged 2 (users 10 acked/11 rows, ...)" */
static void verify_text(const struct an_db *db, char *buf, size_t len)
{
    if (db->verify_errors && !db->n_vk) {
        snprintf(buf, len, "could not run: %s", db->verify_error);
        return;
    }
    size_t o = (size_t)snprintf(buf, len,
                                "acknowledged but lost %llu, present but never acknowledged %llu",
                                (unsigned long long)an_db_lost(db),
                                (unsigned long long)an_db_unacked(db));
    for (size_t i = 0; i < db->n_vk && o < len; i++) {
        const struct an_db_verify_kind *k = &db->vk[i];
        o += (size_t)snprintf(buf + o, len - o, "%s%s %llu acknowledged / %llu rows", i ? ", " : " (",
                              k->name, (unsigned long long)k->acknowledged,
                              (unsigned long long)k->present);
        if (k->existing_before && o < len)
            o += (size_t)snprintf(buf + o, len - o, " (%llu existed before)",
                                  (unsigned long long)k->existing_before);
        if (i + 1 == db->n_vk && o < len)
            o += (size_t)snprintf(buf + o, len - o, ")");
    }
    if (db->verify_acks_dropped && o < len)
        o += (size_t)snprintf(buf + o, len - o, "; %llu acknowledgements not kept",
                              (unsigned long long)db->verify_acks_dropped);
    if (db->verify_baseline_failed && o < len)
        snprintf(buf + o, len - o, "; %llu kinds without a baseline (all their rows counted)",
                 (unsigned long long)db->verify_baseline_failed);
}

/* "CPU 0.12 cores (1 loop thread), RSS 14.1 MiB, fds max 25 of 1024, ..." */
static void client_text(const struct an_db *db, char *buf, size_t len)
{
    const struct an_client *c = &db->client;
    char a[32], b[32], r[32];
    double cores = c->duration_ns > 0 ? (double)c->cpu_ns / (double)c->duration_ns / c->ends : 0;
    size_t o = (size_t)snprintf(buf, len, "CPU %.2f cores", cores);
    if (c->loop_threads && o < len)
        o += (size_t)snprintf(buf + o, len - o, " (%u loop thread%s)", c->loop_threads,
                              c->loop_threads == 1 ? "" : "s");
    if (o < len)
        o += (size_t)snprintf(buf + o, len - o, ", RSS %s",
                              h2r_format_bytes(c->max_rss_kb * 1024, r, sizeof(r)));
    if (c->peak_fds && o < len)
        o += (size_t)snprintf(buf + o, len - o, ", fds max %llu", (unsigned long long)c->peak_fds);
    if (c->peak_fds && c->fd_limit && o < len)
        o += (size_t)snprintf(buf + o, len - o, " of %llu", (unsigned long long)c->fd_limit);
    if (c->peak_conns && o < len)
        o += (size_t)snprintf(buf + o, len - o, ", connections max %llu",
                              (unsigned long long)c->peak_conns);
    if ((c->late_p99_ns || c->max_late_ns) && o < len)
        snprintf(buf + o, len - o, ", send lateness p99 %s max %s",
                 h2r_format_duration(c->late_p99_ns, a, sizeof(a)),
                 h2r_format_duration(c->max_late_ns, b, sizeof(b)));
}

/* The acknowledgement, verify and client lines of one run (table format). */
static void extra_table(FILE *f, const struct an_db *db)
{
    char line[1024];
    if (db->acks) {
        acks_text(db, line, sizeof(line));
        line_w(f, "acknowledged", line);
    }
    if (db->verifies) {
        verify_text(db, line, sizeof(line));
        line_w(f, "db verify", line);
        for (size_t i = 0; i < db->n_vk; i++) {
            const struct an_db_verify_kind *k = &db->vk[i];
            for (size_t j = 0; j < k->n_lost_ex; j++) {
                snprintf(line, sizeof(line), "%s %s", k->name, k->lost_ex[j]);
                line_w(f, "  lost", line);
            }
            for (size_t j = 0; j < k->n_unacked_ex; j++) {
                snprintf(line, sizeof(line), "%s %s", k->name, k->unacked_ex[j]);
                line_w(f, "  never acked", line);
            }
        }
    }
    if (db->client.ends && db->client.loop_threads) {
        client_text(db, line, sizeof(line));
        line_w(f, "replay client", line);
        if (an_client_bound(db, line, sizeof(line)))
            line_w(f, "", line);
    }
}

void an_db_table(FILE *f, const struct an_db *db)
{
    if (!db)
        return;
    if (db->samples == 0) {
        if (db->acks || db->verifies || (db->client.ends && db->client.loop_threads)) {
            fprintf(f, "\n");
            extra_table(f, db);
        }
        return;
    }
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
    extra_table(f, db);
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

static json_t *verify_json(const struct an_db *db)
{
    if (!db->verifies)
        return json_null();
    json_t *o = json_object();
    json_object_set_new(o, "records", json_integer(db->verifies));
    json_object_set_new(o, "errors", json_integer(db->verify_errors));
    json_object_set_new(o, "error", db->verify_errors ? json_string(db->verify_error)
                                                      : json_null());
    json_object_set_new(o, "acknowledged_but_lost", json_integer((json_int_t)an_db_lost(db)));
    json_object_set_new(o, "present_but_never_acknowledged",
                        json_integer((json_int_t)an_db_unacked(db)));
    json_object_set_new(o, "acks_dropped", json_integer((json_int_t)db->verify_acks_dropped));
    json_object_set_new(o, "ignored", json_integer((json_int_t)db->verify_ignored));
    json_object_set_new(o, "baseline_failed",
                        json_integer((json_int_t)db->verify_baseline_failed));
    json_t *kinds = json_object();
    for (size_t i = 0; i < db->n_vk; i++) {
        const struct an_db_verify_kind *k = &db->vk[i];
        json_t *ko = json_object(), *lost = json_array(), *un = json_array();
        json_object_set_new(ko, "acknowledged", json_integer((json_int_t)k->acknowledged));
        json_object_set_new(ko, "present", json_integer((json_int_t)k->present));
        json_object_set_new(ko, "lost", json_integer((json_int_t)k->lost));
        json_object_set_new(ko, "unacknowledged", json_integer((json_int_t)k->unacknowledged));
        json_object_set_new(ko, "existing_before", json_integer((json_int_t)k->existing_before));
        for (size_t j = 0; j < k->n_lost_ex; j++)
            json_array_append_new(lost, json_string(k->lost_ex[j]));
        for (size_t j = 0; j < k->n_unacked_ex; j++)
            json_array_append_new(un, json_string(k->unacked_ex[j]));
        json_object_set_new(ko, "lost_examples", lost);
        json_object_set_new(ko, "unacknowledged_examples", un);
        json_object_set_new(kinds, k->name, ko);
    }
    json_object_set_new(o, "kinds", kinds);
    return o;
}

json_t *an_client_json(const struct an_db *db)
{
    if (!db || !db->client.ends)
        return json_null();
    const struct an_client *c = &db->client;
    json_t *o = json_object();
    char why[512];
    json_object_set_new(o, "loop_threads", json_integer(c->loop_threads));
    json_object_set_new(o, "cpu_ns", json_integer(c->cpu_ns));
    json_object_set_new(o, "cpu_cores",
                        json_real(c->duration_ns > 0
                                      ? (double)c->cpu_ns / (double)c->duration_ns / c->ends
                                      : 0));
    json_object_set_new(o, "max_rss_kb", json_integer((json_int_t)c->max_rss_kb));
    json_object_set_new(o, "peak_fds", json_integer((json_int_t)c->peak_fds));
    json_object_set_new(o, "fd_limit", json_integer((json_int_t)c->fd_limit));
    json_object_set_new(o, "peak_connections", json_integer((json_int_t)c->peak_conns));
    json_object_set_new(o, "emfile_errors", json_integer((json_int_t)c->emfile_errors));
    json_object_set_new(o, "send_late_p99_ns", json_integer(c->late_p99_ns));
    json_object_set_new(o, "send_late_max_ns", json_integer(c->max_late_ns));
    int bound = an_client_bound(db, why, sizeof(why));
    json_object_set_new(o, "client_bound", json_boolean(bound));
    json_object_set_new(o, "client_bound_reason", bound ? json_string(why) : json_null());
    return o;
}

json_t *an_db_json(const struct an_db *db)
{
    if (!db || (db->samples == 0 && !db->acks && !db->verifies))
        return json_null();
    json_t *o = json_object();
    json_object_set_new(o, "acks", json_integer((json_int_t)db->acks));
    json_object_set_new(o, "verify", verify_json(db));
    if (db->samples == 0)
        return o;
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

static int any_verify(const struct an_report *rep)
{
    for (size_t i = 0; i < rep->n_runs; i++)
        if (rep->runs[i]->db && (rep->runs[i]->db->verifies || rep->runs[i]->db->acks))
            return 1;
    return 0;
}

static int any_client(const struct an_report *rep)
{
    for (size_t i = 0; i < rep->n_runs; i++)
        if (rep->runs[i]->db && rep->runs[i]->db->client.loop_threads)
            return 1;
    return 0;
}

/* Cells: acknowledged | lost | never acknowledged | examples (lost first). */
static void verify_cells(FILE *f, const struct an_db *db, const char *sep, int html)
{
    char line[1024];
    acks_text(db, line, sizeof(line));
    cell(f, line, html);
    fputs(sep, f);
    if (!db->verifies)
        fprintf(f, "-%s-%s(no --db verify)", sep, sep);
    else if (db->verify_errors && !db->n_vk) {
        fprintf(f, "-%s-%s", sep, sep);
        cell(f, db->verify_error, html);
    } else {
        fprintf(f, "%s%llu%s%s%llu%s", html && an_db_lost(db) ? "<b>" : "",
                (unsigned long long)an_db_lost(db), html && an_db_lost(db) ? "</b>" : "", sep,
                (unsigned long long)an_db_unacked(db), sep);
        int any = 0;
        for (size_t i = 0; i < db->n_vk; i++)
            for (size_t j = 0; j < db->vk[i].n_lost_ex; j++) {
                fputs(any++ ? "; " : "", f);
                fprintf(f, "lost %s ", db->vk[i].name);
                cell(f, db->vk[i].lost_ex[j], html);
            }
        for (size_t i = 0; i < db->n_vk; i++)
            for (size_t j = 0; j < db->vk[i].n_unacked_ex; j++) {
                fputs(any++ ? "; " : "", f);
                fprintf(f, "never acknowledged %s ", db->vk[i].name);
                cell(f, db->vk[i].unacked_ex[j], html);
            }
        if (!any)
            fputs("-", f);
    }
}

/* Cells: client resources | verdict. */
static void client_cells(FILE *f, const struct an_db *db, const char *sep, int html)
{
    char line[1024];
    client_text(db, line, sizeof(line));
    cell(f, line, html);
    fputs(sep, f);
    if (an_client_bound(db, line, sizeof(line)))
        cell(f, line, html);
    else
        fputs("server-bound or idle (client below 90% CPU, no EMFILE)", f);
}

static void extra_md(FILE *f, const struct an_report *rep)
{
    if (any_verify(rep)) {
        fprintf(f, "### Acknowledged vs stored\n\nWhat the server acknowledged creating, checked "
                   "against its database at the end of each section (`replay --db`).\n\n"
                   "| run | acknowledged | acknowledged but lost | present but never "
                   "acknowledged | examples |\n|---|---|---:|---:|---|\n");
        for (size_t i = 0; i < rep->n_runs; i++) {
            const struct an_db *db = rep->runs[i]->db;
            if (!db || !(db->verifies || db->acks))
                continue;
            fprintf(f, "| `");
            cell(f, rep->runs[i]->name, 0);
            fprintf(f, "` | ");
            verify_cells(f, db, " | ", 0);
            fprintf(f, " |\n");
        }
        fprintf(f, "\n");
    }
    if (any_client(rep)) {
        fprintf(f, "### Replay client\n\nThe replaying process's own cost per section "
                   "(getrusage: all its threads).\n\n| run | resources | verdict |\n"
                   "|---|---|---|\n");
        for (size_t i = 0; i < rep->n_runs; i++) {
            const struct an_db *db = rep->runs[i]->db;
            if (!db || !db->client.loop_threads)
                continue;
            fprintf(f, "| `");
            cell(f, rep->runs[i]->name, 0);
            fprintf(f, "` | ");
            client_cells(f, db, " | ", 0);
            fprintf(f, " |\n");
        }
        fprintf(f, "\n");
    }
}

static void extra_html(FILE *f, const struct an_report *rep)
{
    if (any_verify(rep)) {
        fprintf(f, "<h2>Acknowledged vs stored</h2>\n<p class=\"meta\">What the server "
                   "acknowledged creating, checked against its database at the end of each "
                   "section (<code>replay --db</code>).</p>\n<table><tr><th class=\"l\">run</th>"
                   "<th class=\"l\">acknowledged</th><th>acknowledged but lost</th><th>present "
                   "but never acknowledged</th><th class=\"l\">examples</th></tr>\n");
        for (size_t i = 0; i < rep->n_runs; i++) {
            const struct an_db *db = rep->runs[i]->db;
            if (!db || !(db->verifies || db->acks))
                continue;
            fprintf(f, "<tr><td class=\"l\">");
            cell(f, rep->runs[i]->name, 1);
            fprintf(f, "</td><td class=\"l\">");
            verify_cells(f, db, "</td><td>", 1);
            fprintf(f, "</td></tr>\n");
        }
        fprintf(f, "</table>\n");
    }
    if (any_client(rep)) {
        fprintf(f, "<h2>Replay client</h2>\n<p class=\"meta\">The replaying process's own "
                   "cost per section (getrusage: all its threads).</p>\n<table><tr><th "
                   "class=\"l\">run</th><th class=\"l\">resources</th><th "
                   "class=\"l\">verdict</th></tr>\n");
        for (size_t i = 0; i < rep->n_runs; i++) {
            const struct an_db *db = rep->runs[i]->db;
            if (!db || !db->client.loop_threads)
                continue;
            fprintf(f, "<tr><td class=\"l\">");
            cell(f, rep->runs[i]->name, 1);
            fprintf(f, "</td><td class=\"l\">");
            client_cells(f, db, "</td><td class=\"l\">", 1);
            fprintf(f, "</td></tr>\n");
        }
        fprintf(f, "</table>\n");
    }
}

void an_db_md(FILE *f, const struct an_report *rep)
{
    extra_md(f, rep);
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
    extra_html(f, rep);
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
