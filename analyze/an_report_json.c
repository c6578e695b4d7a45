/*
 * JSON report (schema "h2replay.analyze/1", documented in docs/analyze.md).
 * Everything the other formats show is here, uncut: every group, every
 * window, every diff row and gate, in raw units (ns, fractions, counts), so
 * that dashboards and scripts never parse the human formats.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "an_db.h"
#include "an_report.h"
#include "an_serverlog.h"

#ifndef H2R_VERSION
#define H2R_VERSION "unknown"
#endif

/* A JSON string from text that may not be UTF-8 (bytes >= 0x80 become '?'). */
static json_t *jstr(const char *s)
{
    if (!s)
        return json_null();
    json_t *j = json_string(s);
    if (j)
        return j;
    char *c = strdup(s);
    if (!c)
        return json_null();
    for (char *p = c; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(c);
    free(c);
    return j ? j : json_null();
}

static json_t *jreal(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *jint(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static json_t *jlatency(const struct h2r_hist *h)
{
    json_t *o = json_object();
    uint64_t n = h2r_hist_count(h);
    json_object_set_new(o, "count", jint(n));
    if (n == 0) {
        const char *keys[] = {"min_ns",  "p50_ns", "p90_ns", "p99_ns",
                              "p999_ns", "max_ns", "mean_ns"};
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            json_object_set_new(o, keys[i], json_null());
        return o;
    }
    json_object_set_new(o, "min_ns", json_integer(h2r_hist_min(h)));
    json_object_set_new(o, "p50_ns", json_integer(h2r_hist_percentile(h, 50)));
    json_object_set_new(o, "p90_ns", json_integer(h2r_hist_percentile(h, 90)));
    json_object_set_new(o, "p99_ns", json_integer(h2r_hist_percentile(h, 99)));
    json_object_set_new(o, "p999_ns", json_integer(h2r_hist_percentile(h, 99.9)));
    json_object_set_new(o, "max_ns", json_integer(h2r_hist_max(h)));
    json_object_set_new(o, "mean_ns", jreal(h2r_hist_mean(h)));
    json_object_set_new(o, "clamped", jint(h2r_hist_clamped(h)));
    return o;
}

static json_t *jclasses(const uint64_t *by_class)
{
    json_t *o = json_object();
    for (uint32_t k = 1; k < AN_NCLASS; k++)
        if (by_class[k])
            json_object_set_new(o, an_class_name(k), jint(by_class[k]));
    return o;
}

static json_t *jgroup(const struct an_run *r, const struct an_group *g)
{
    json_t *o = json_object();
    uint64_t err = an_errors(g->count, g->ok);
    json_object_set_new(o, "key", jstr(g->key));
    json_object_set_new(o, "count", jint(g->count));
    json_object_set_new(o, "ok", jint(g->ok));
    json_object_set_new(o, "errors", jint(err));
    json_object_set_new(o, "error_rate", jreal(g->count ? (double)err / (double)g->count : 0));
    json_object_set_new(o, "throughput_per_s",
                        jreal((double)g->ok * 1e9 / (double)an_run_duration(r)));
    json_object_set_new(o, "errors_by_class", jclasses(g->by_class));
    json_object_set_new(o, "latency_from_intended", jlatency(g->lat_int));
    json_object_set_new(o, "latency_from_sent", jlatency(g->lat_sent));
    if (r->compared) {
        json_object_set_new(o, "new_failures", jint(g->new_failures));
        json_object_set_new(o, "shared_failures", jint(g->shared_failures));
    }
    return o;
}

static json_t *jwindows(const struct an_series *s)
{
    json_t *o = json_object();
    json_t *due = json_array(), *done = json_array(), *fl = json_array(), *failed = json_array();
    json_t *rate = json_array(), *p99 = json_array();
    json_object_set_new(o, "width_ns", json_integer(s->width_ns));
    for (size_t i = 0; i < s->n; i++) {
        const struct an_window *w = &s->w[i];
        json_array_append_new(due, jint(w->due));
        json_array_append_new(done, jint(w->done));
        json_array_append_new(fl, json_integer(w->in_flight));
        json_array_append_new(failed, jint(w->failed));
        json_array_append_new(rate, w->due ? jreal(an_window_error_rate(w)) : json_null());
        json_array_append_new(p99, w->lat && h2r_hist_count(w->lat)
                                       ? json_integer(h2r_hist_percentile(w->lat, 99))
                                       : json_null());
    }
    json_object_set_new(o, "offered", due);
    json_object_set_new(o, "completed", done);
    json_object_set_new(o, "in_flight", fl);
    json_object_set_new(o, "failed", failed);
    json_object_set_new(o, "error_rate", rate);
    json_object_set_new(o, "p99_ns", p99);
    return o;
}

static json_t *jexample(const struct an_run *r, const struct an_example *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "exchange_id", jint(e->id));
    json_object_set_new(o, "t_intended_ns", json_integer(e->t_intended_ns));
    json_object_set_new(o, "t_done_ns", json_integer(e->t_done_ns));
    json_object_set_new(o, "group", jstr(r->groups[e->group]->key));
    json_object_set_new(o, "class", jstr(an_class_name(e->cls)));
    json_object_set_new(o, "detail", e->detail[0] ? jstr(e->detail) : json_null());
    json_object_set_new(o, "status", e->status >= 0 ? json_integer(e->status) : json_null());
    return o;
}

static json_t *jfail_examples(const struct an_run *r, const struct an_run *ref, int shared)
{
    const struct an_failure *ex[5];
    size_t n = an_failure_examples(r, ref, shared, ex, 5);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        const char *d = an_failure_detail(r, ex[i]->id);
        json_object_set_new(o, "exchange_id", jint(ex[i]->id));
        json_object_set_new(o, "group", jstr(r->groups[ex[i]->group]->key));
        json_object_set_new(o, "class", jstr(an_class_name(ex[i]->cls)));
        json_object_set_new(o, "detail", d[0] ? jstr(d) : json_null());
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *jfailures(const struct an_report *rep, const struct an_run *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "first",
                        r->has_first_failure ? jexample(r, &r->first_failure) : json_null());
    const struct an_onset *on = &r->onset;
    if (on->found) {
        json_t *j = json_object();
        json_object_set_new(j, "window", jint(on->window));
        json_object_set_new(j, "t_ns", json_integer(on->t_ns));
        json_object_set_new(j, "error_rate", jreal(on->error_rate));
        json_object_set_new(j, "offered_per_s", jreal(on->offered_per_s));
        json_object_set_new(j, "in_flight", json_integer(on->in_flight));
        json_object_set_new(o, "onset", j);
    } else {
        json_object_set_new(o, "onset", json_null());
    }
    if (on->found && on->recovered) {
        json_t *j = json_object();
        json_object_set_new(j, "window", jint(on->rec_window));
        json_object_set_new(j, "t_ns", json_integer(on->rec_t_ns));
        json_object_set_new(j, "after_onset_ns", json_integer(on->rec_t_ns - on->t_ns));
        json_object_set_new(o, "recovery", j);
    } else {
        json_object_set_new(o, "recovery", json_null());
    }
    if (r->compared) {
        const struct an_run *ref = rep->runs[rep->ref];
        json_t *j = json_object();
        json_object_set_new(j, "reference", jstr(ref->name));
        json_object_set_new(j, "new", jint(r->new_failures));
        json_object_set_new(j, "shared", jint(r->shared_failures));
        json_object_set_new(j, "partial",
                            json_boolean(r->failures_truncated || ref->failures_truncated));
        json_object_set_new(j, "examples_new", jfail_examples(r, ref, 0));
        json_object_set_new(j, "examples_shared", jfail_examples(r, ref, 1));
        json_object_set_new(o, "vs_reference", j);
    } else {
        json_object_set_new(o, "vs_reference", json_null());
    }
    return o;
}

static const char *role_of(const struct an_report *rep, size_t i)
{
    if ((int)i == rep->ref)
        return rep->explicit_baseline ? "baseline" : "reference";
    return (int)i == rep->target ? "gated" : "compared";
}

static json_t *jrun(const struct an_report *rep, size_t i)
{
    const struct an_run *r = rep->runs[i];
    json_t *o = json_object();
    uint64_t err = an_errors(r->count, r->ok);
    json_object_set_new(o, "name", jstr(r->name));
    json_object_set_new(o, "kind", json_string(r->kind == AN_KIND_TRACE ? "trace" : "run"));
    json_object_set_new(o, "role", json_string(role_of(rep, i)));
    json_object_set_new(o, "sources", jstr(r->sources));
    json_object_set_new(o, "section", jstr(r->section));
    json_object_set_new(o, "label", jstr(r->label));
    json_object_set_new(o, "url", jstr(r->url));
    json_object_set_new(o, "trace_sha256", jstr(r->trace_sha256));
    json_object_set_new(o, "settings", jstr(r->settings));
    json_object_set_new(o, "tool_version", jstr(r->tool_version));
    json_object_set_new(o, "speed", jreal(r->speed));
    json_object_set_new(o, "timeout_ns", json_integer(r->timeout_ns));
    json_object_set_new(o, "shard_count", jint(r->shard_count > 1 ? r->shard_count : 1));
    json_object_set_new(o, "shards_seen", jint(r->shard_count > 1 ? r->shards_seen : 1));
    json_t *missing = json_array();
    for (uint32_t k = 0; r->shard_count > 1 && k < r->shard_count && k < AN_MAX_SHARDS; k++)
        if (!an_run_has_shard(r, k))
            json_array_append_new(missing, jint(k));
    json_object_set_new(o, "shards_missing", missing);
    json_object_set_new(o, "start_at_ns", r->start_at_ns ? json_integer(r->start_at_ns)
                                                         : json_null());
    json_object_set_new(o, "complete", json_boolean(r->sections_ended >= r->sections_started));
    json_object_set_new(o, "interrupted", json_boolean(r->interrupted));
    json_object_set_new(o, "count", jint(r->count));
    json_object_set_new(o, "ok", jint(r->ok));
    json_object_set_new(o, "errors", jint(err));
    json_object_set_new(o, "error_rate", jreal(r->count ? (double)err / (double)r->count : 0));
    json_object_set_new(o, "duration_ns", json_integer(an_run_duration(r)));
    json_object_set_new(o, "throughput_per_s",
                        jreal((double)r->ok * 1e9 / (double)an_run_duration(r)));
    json_object_set_new(o, "errors_by_class", jclasses(r->by_class));
    json_object_set_new(o, "latency_from_intended", jlatency(r->lat_int));
    json_object_set_new(o, "latency_from_sent", jlatency(r->lat_sent));
    json_t *cost = json_object();
    json_object_set_new(cost, "cpu_user_ns", json_integer(r->cpu_user_ns));
    json_object_set_new(cost, "cpu_sys_ns", json_integer(r->cpu_sys_ns));
    json_object_set_new(cost, "max_rss_kb", jint(r->max_rss_kb));
    json_object_set_new(cost, "max_send_late_ns", json_integer(r->max_late_ns));
    json_object_set_new(o, "replay_cost", cost);
    json_t *groups = json_array();
    size_t *idx = calloc(r->n_groups ? r->n_groups : 1, sizeof(*idx));
    if (idx) {
        an_sorted_groups(r, idx);
        for (size_t k = 0; k < r->n_groups; k++)
            json_array_append_new(groups, jgroup(r, r->groups[idx[k]]));
        free(idx);
    }
    json_object_set_new(o, "groups", groups);
    json_object_set_new(o, "groups_overflowed", jint(r->overflowed));
    json_object_set_new(o, "windows", jwindows(&r->series));
    json_object_set_new(o, "failures", jfailures(rep, r));
    json_object_set_new(o, "db", an_db_json(r->db)); /* replay --db evidence, an_report_db.c */
    json_object_set_new(o, "client", an_client_json(r->db)); /* replay client, an_report_db.c */
    json_object_set_new(o, "server_log", an_slog_json(r)); /* an_report_serverlog.c */
    return o;
}

static json_t *jside(uint64_t n, uint64_t err, double rate, const struct h2r_hist *lat, int64_t p50,
                     int64_t p99)
{
    json_t *o = json_object();
    int have = lat && h2r_hist_count(lat);
    json_object_set_new(o, "count", jint(n));
    json_object_set_new(o, "errors", jint(err));
    json_object_set_new(o, "error_rate", n ? jreal(rate) : json_null());
    json_object_set_new(o, "p50_ns", have ? json_integer(p50) : json_null());
    json_object_set_new(o, "p99_ns", have ? json_integer(p99) : json_null());
    return o;
}

static json_t *jrow(const struct an_report *rep, const struct an_diff_row *w)
{
    json_t *o = json_object();
    int have = w->ref_lat && w->cur_lat && h2r_hist_count(w->ref_lat) && h2r_hist_count(w->cur_lat);
    json_object_set_new(o, "run", jstr(rep->runs[w->run]->name));
    json_object_set_new(o, "group", w->key ? jstr(w->key) : json_null());
    json_object_set_new(
        o, "reference",
        jside(w->n_ref, w->err_ref, w->err_rate_ref, w->ref_lat, w->p50_ref, w->p99_ref));
    json_object_set_new(
        o, "current",
        jside(w->n_cur, w->err_cur, w->err_rate_cur, w->cur_lat, w->p50_cur, w->p99_cur));
    json_object_set_new(o, "p50_delta_ns",
                        have ? json_integer(w->p50_cur - w->p50_ref) : json_null());
    json_object_set_new(o, "p50_rel", have ? jreal(w->p50_rel) : json_null());
    json_object_set_new(o, "p99_delta_ns",
                        have ? json_integer(w->p99_cur - w->p99_ref) : json_null());
    json_object_set_new(o, "p99_rel", have ? jreal(w->p99_rel) : json_null());
    json_object_set_new(o, "errors_delta",
                        json_integer((json_int_t)w->err_cur - (json_int_t)w->err_ref));
    json_object_set_new(o, "error_rate_delta",
                        w->n_ref && w->n_cur ? jreal(w->err_rate_cur - w->err_rate_ref)
                                             : json_null());
    json_object_set_new(o, "error_rate_rel",
                        w->n_ref && w->n_cur ? jreal(w->err_rel) : json_null());
    if (w->mw.valid) {
        json_t *m = json_object();
        json_object_set_new(m, "u", jreal(w->mw.u));
        json_object_set_new(m, "z", jreal(w->mw.z));
        json_object_set_new(m, "p", jreal(w->mw.p));
        json_object_set_new(m, "prob_slower", jreal(w->mw.prob_b_gt_a));
        json_object_set_new(o, "mann_whitney", m);
    } else {
        json_object_set_new(o, "mann_whitney", json_null());
    }
    json_object_set_new(o, "errors_p", jreal(w->err_p));
    json_object_set_new(o, "p50_significant", json_boolean(w->p50_sig));
    json_object_set_new(o, "p99_significant", json_boolean(w->p99_sig));
    json_object_set_new(o, "errors_significant", json_boolean(w->err_sig));
    return o;
}

static json_t *jgate(const struct an_gate_result *g)
{
    json_t *o = json_object();
    json_object_set_new(o, "expr", jstr(g->expr));
    json_object_set_new(o, "metric", json_string(an_metric_name(g->gate.metric)));
    json_object_set_new(o, "selector", g->gate.has_selector ? jstr(g->gate.selector) : json_null());
    json_object_set_new(o, "op", json_string(an_op_name(g->gate.op)));
    json_object_set_new(o, "relative", json_boolean(g->gate.relative));
    json_object_set_new(o, "pass", json_boolean(g->pass));
    json_object_set_new(o, "actual", g->has_actual ? jreal(g->actual) : json_null());
    int limited = g->has_actual && (!g->gate.relative || g->has_reference);
    json_object_set_new(o, "limit", limited ? jreal(g->limit) : json_null());
    json_object_set_new(o, "reference", g->has_reference ? jreal(g->reference) : json_null());
    json_object_set_new(o, "note", g->note[0] ? jstr(g->note) : json_null());
    return o;
}

int an_report_json(FILE *f, const struct an_report *rep)
{
    json_t *root = json_object();
    if (!root)
        return H2R_ERR_NOMEM;
    json_object_set_new(root, "schema", json_string("h2replay.analyze/1"));
    json_object_set_new(root, "tool_version", json_string(H2R_VERSION));
    json_t *opts = json_object();
    json_object_set_new(opts, "group_by", json_string(rep->group_by));
    json_object_set_new(opts, "window_ns", json_integer(rep->window_ns));
    json_object_set_new(opts, "threshold", jreal(rep->threshold));
    json_object_set_new(opts, "sustain", jint(rep->sustain));
    json_object_set_new(root, "options", opts);
    json_object_set_new(root, "reference",
                        rep->ref >= 0 ? jstr(rep->runs[rep->ref]->name) : json_null());
    json_object_set_new(root, "reference_is_baseline", json_boolean(rep->explicit_baseline));
    json_object_set_new(root, "gated_run",
                        rep->target >= 0 ? jstr(rep->runs[rep->target]->name) : json_null());
    json_t *runs = json_array();
    for (size_t i = 0; i < rep->n_runs; i++)
        json_array_append_new(runs, jrun(rep, i));
    json_object_set_new(root, "runs", runs);
    json_t *diff = json_array();
    for (size_t i = 0; i < rep->n_rows; i++)
        json_array_append_new(diff, jrow(rep, &rep->rows[i]));
    json_object_set_new(root, "diff", diff);
    json_t *gates = json_array();
    for (size_t i = 0; i < rep->n_gates; i++)
        json_array_append_new(gates, jgate(&rep->gates[i]));
    json_object_set_new(root, "gates", gates);
    json_object_set_new(root, "gates_failed", jint(rep->gates_failed));
    json_object_set_new(root, "gates_passed", json_boolean(rep->gates_failed == 0));
    int rc = json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (rc != 0)
        return H2R_ERR_IO;
    fputc('\n', f);
    return ferror(f) ? H2R_ERR_IO : 0;
}
