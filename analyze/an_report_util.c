/*
 * Number formatting shared by the report writers, so that a value reads the
 * same in the terminal table, the Markdown and the HTML.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "h2replay/units.h"
#include "an_report.h"

const char *an_fmt_ns(char *buf, size_t len, int64_t ns, uint64_t n)
{
    if (n == 0) {
        snprintf(buf, len, "-");
        return buf;
    }
    return h2r_format_duration(ns, buf, len);
}

const char *an_fmt_rel(char *buf, size_t len, double rel, int valid)
{
    if (!valid || isnan(rel))
        snprintf(buf, len, "-");
    else if (isinf(rel))
        snprintf(buf, len, "%s", rel > 0 ? "new" : "gone");
    else if (fabs(rel) >= 100)
        snprintf(buf, len, "%+.0fx", rel + 1);
    else
        snprintf(buf, len, "%+.1f%%", rel * 100);
    return buf;
}

const char *an_fmt_pct(char *buf, size_t len, double frac)
{
    if (frac > 0 && frac < 0.0001)
        snprintf(buf, len, "<0.01%%");
    else
        snprintf(buf, len, "%.2f%%", frac * 100);
    return buf;
}

const char *an_fmt_metric(char *buf, size_t len, int metric, double v)
{
    if (an_metric_is_latency(metric))
        return h2r_format_duration((int64_t)llround(v), buf, len);
    if (metric == AN_M_ERROR_RATE)
        return an_fmt_pct(buf, len, v);
    if (metric == AN_M_THROUGHPUT)
        snprintf(buf, len, "%.1f/s", v);
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, len, "%.0f", v);
    else
        snprintf(buf, len, "%.2f", v);
    return buf;
}

const char *an_fmt_classes(char *buf, size_t len, const uint64_t *by_class)
{
    size_t o = 0;
    buf[0] = '\0';
    for (uint32_t k = 1; k < AN_NCLASS && o + 1 < len; k++) {
        if (!by_class[k])
            continue;
        int n = snprintf(buf + o, len - o, "%s%s %llu", o ? ", " : "", an_class_name(k),
                         (unsigned long long)by_class[k]);
        if (n < 0)
            break;
        o += (size_t)n;
        if (o >= len)
            o = len - 1;
    }
    return buf;
}

uint64_t an_errors(uint64_t count, uint64_t ok)
{
    return count > ok ? count - ok : 0;
}

/* a before b: more exchanges first, then by key */
static int group_before(const struct an_group *a, const struct an_group *b)
{
    if (a->count != b->count)
        return a->count > b->count;
    return strcmp(a->key, b->key) < 0;
}

void an_sorted_groups(const struct an_run *run, size_t *idx)
{
    /* insertion sort: at most AN_MAX_GROUPS entries, and no shared state for qsort */
    for (size_t i = 0; i < run->n_groups; i++) {
        size_t j = i;
        while (j > 0 && group_before(run->groups[i], run->groups[idx[j - 1]])) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
}

const char *an_fmt_first_failure(char *buf, size_t len, const struct an_run *r)
{
    char t[32];
    const struct an_example *e = &r->first_failure;
    if (!r->has_first_failure) {
        snprintf(buf, len, "none");
        return buf;
    }
    snprintf(buf, len, "at %s: %s, %s%s%s%s, exchange #%llu",
             h2r_format_duration(e->t_intended_ns, t, sizeof(t)), r->groups[e->group]->key,
             an_class_name(e->cls), e->detail[0] ? " (" : "", e->detail, e->detail[0] ? ")" : "",
             (unsigned long long)e->id);
    return buf;
}

const char *an_fmt_onset(char *buf, size_t len, const struct an_run *r, double threshold,
                         unsigned sustain)
{
    char t[32], pct[32], thr[32];
    const struct an_onset *o = &r->onset;
    if (!o->found) {
        snprintf(buf, len, "none (error rate never above %s for %u windows)",
                 an_fmt_pct(thr, sizeof(thr), threshold), sustain);
        return buf;
    }
    snprintf(buf, len, "at %s: error rate %s, offered %.1f/s, %lld in flight",
             h2r_format_duration(o->t_ns, t, sizeof(t)),
             an_fmt_pct(pct, sizeof(pct), o->error_rate), o->offered_per_s,
             (long long)o->in_flight);
    return buf;
}

const char *an_fmt_recovery(char *buf, size_t len, const struct an_run *r)
{
    char t[32], d[32];
    const struct an_onset *o = &r->onset;
    if (!o->found)
        snprintf(buf, len, "-");
    else if (!o->recovered)
        snprintf(buf, len, "not recovered by the end of the run");
    else
        snprintf(buf, len, "at %s, %s after the onset",
                 h2r_format_duration(o->rec_t_ns, t, sizeof(t)),
                 h2r_format_duration(o->rec_t_ns - o->t_ns, d, sizeof(d)));
    return buf;
}

size_t an_failure_examples(const struct an_run *r, const struct an_run *ref, int shared,
                           const struct an_failure **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_failures && n < max; i++)
        if (an_run_failed(ref, r->failures[i].id) == shared)
            out[n++] = &r->failures[i];
    return n;
}

const char *an_failure_detail(const struct an_run *r, uint64_t id)
{
    for (size_t i = 0; i < r->n_examples; i++)
        if (r->examples[i].id == id)
            return r->examples[i].detail;
    return "";
}

const char *an_fmt_p(char *buf, size_t len, double p)
{
    if (p < 0.0001)
        snprintf(buf, len, "<0.0001");
    else
        snprintf(buf, len, "%.2g", p);
    return buf;
}

void an_report_wrapped(FILE *f, const char *label, int label_w, const char *text)
{
    size_t width = 100 - 3 - (size_t)label_w - 1, n = strlen(text);
    const char *p = text;
    fprintf(f, "   %-*s ", label_w, label);
    while (n > width) {
        size_t cut = width;
        while (cut > width / 2 && p[cut] != ' ')
            cut--;
        if (p[cut] != ' ')
            cut = width;
        fprintf(f, "%.*s\n   %-*s ", (int)cut, p, label_w, "");
        p += cut;
        n -= cut;
        while (*p == ' ') {
            p++;
            n--;
        }
    }
    fprintf(f, "%s\n", p);
}
