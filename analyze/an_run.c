/*
 * Per-run aggregation. Every exchange of a run passes through an_run_add
 * once and leaves only counters and histogram buckets behind: memory is
 * O(groups x histogram + windows) whatever the run length, plus one 16-byte
 * entry per failed exchange for the new-vs-shared comparison with the
 * reference (O(failures), capped at AN_MAX_FAILURES; a run that fails more
 * than that reports the comparison as partial).
 *
 * Groups live in a small open-addressing table keyed by the folded endpoint;
 * the number of groups is capped (AN_MAX_GROUPS) because a path shape the
 * folder misses would otherwise create one group per id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/error.h"
#include "an_db.h"
#include "an_run.h"

#define SLOT_COUNT ((size_t)4 * AN_MAX_GROUPS)

int an_set_str(char **dst, const char *s)
{
    char *c = strdup(s ? s : "");
    if (!c)
        return H2R_ERR_NOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

int an_run_new(struct an_run **out, const char *name, int kind, int64_t window_ns)
{
    int rc = H2R_ERR_NOMEM;
    struct an_run *r = calloc(1, sizeof(*r));
    if (!r)
        return rc;
    an_series_init(&r->series, window_ns, 0);
    r->kind = kind;
    r->n_slots = SLOT_COUNT;
    r->slots = calloc(r->n_slots, sizeof(*r->slots));
    r->groups = calloc(AN_MAX_GROUPS, sizeof(*r->groups));
    if (!r->slots || !r->groups)
        goto fail;
    char **strs[] = {&r->name, &r->section,      &r->sources,  &r->label,
                     &r->url,  &r->trace_sha256, &r->settings, &r->tool_version};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        rc = an_set_str(strs[i], i < 2 ? name : "");
        if (rc)
            goto fail;
    }
    rc = h2r_hist_new(&r->lat_int, 0);
    if (!rc)
        rc = h2r_hist_new(&r->lat_sent, 0);
    if (rc)
        goto fail;
    *out = r;
    return 0;
fail:
    an_run_free(r);
    return rc;
}

static void group_free(struct an_group *g)
{
    if (!g)
        return;
    free(g->key);
    h2r_hist_free(g->lat_int);
    h2r_hist_free(g->lat_sent);
    free(g);
}

void an_run_free(struct an_run *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_groups; i++)
        group_free(r->groups[i]);
    free(r->groups);
    free(r->slots);
    h2r_hist_free(r->lat_int);
    h2r_hist_free(r->lat_sent);
    an_series_free(&r->series);
    free(r->failures);
    an_db_free(r->db);
    free(r->shard_bits);
    free(r->name);
    free(r->section);
    free(r->sources);
    free(r->label);
    free(r->url);
    free(r->trace_sha256);
    free(r->settings);
    free(r->tool_version);
    free(r);
}

int an_run_add_source(struct an_run *r, const char *s)
{
    size_t n = strlen(s), have = strlen(r->sources);
    const char *p = strstr(r->sources, s);
    while (p) {
        int starts = p == r->sources || (p >= r->sources + 2 && p[-2] == ',' && p[-1] == ' ');
        if (starts && (p[n] == '\0' || p[n] == ','))
            return 0;
        p = strstr(p + 1, s);
    }
    char *c = malloc(have + n + 3);
    if (!c)
        return H2R_ERR_NOMEM;
    snprintf(c, have + n + 3, "%s%s%s", r->sources, have ? ", " : "", s);
    free(r->sources);
    r->sources = c;
    return 0;
}

int an_run_mark_shard(struct an_run *r, uint32_t index)
{
    if (!r->shard_bits) {
        r->shard_bits = calloc(((size_t)r->shard_count + 7) / 8, 1);
        if (!r->shard_bits)
            return H2R_ERR_NOMEM;
    }
    uint8_t bit = (uint8_t)(1u << (index % 8));
    if (r->shard_bits[index / 8] & bit)
        return 0;
    r->shard_bits[index / 8] |= bit;
    r->shards_seen++;
    return 1;
}

int an_run_has_shard(const struct an_run *r, uint32_t index)
{
    return r->shard_bits && index < r->shard_count &&
           (r->shard_bits[index / 8] & (1u << (index % 8))) != 0;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

/* Slot of key: the one holding it, or the empty one where it would go. */
static size_t find_slot(const struct an_run *r, const char *key)
{
    size_t mask = r->n_slots - 1, i = (size_t)fnv1a(key) & mask;
    while (r->slots[i] && strcmp(r->groups[r->slots[i] - 1]->key, key) != 0)
        i = (i + 1) & mask;
    return i;
}

const struct an_group *an_run_group(const struct an_run *r, const char *key)
{
    size_t i = find_slot(r, key);
    return r->slots[i] ? r->groups[r->slots[i] - 1] : NULL;
}

static int group_get(struct an_run *r, const char *key, struct an_group **out)
{
    size_t i = find_slot(r, key);
    if (r->slots[i]) {
        *out = r->groups[r->slots[i] - 1];
        return 0;
    }
    /* the last slot is kept for "(other)" */
    if (r->n_groups + 1 >= AN_MAX_GROUPS && strcmp(key, AN_OTHER_GROUP) != 0) {
        r->overflowed++;
        return group_get(r, AN_OTHER_GROUP, out);
    }
    struct an_group *g = calloc(1, sizeof(*g));
    if (!g)
        return H2R_ERR_NOMEM;
    g->key = strdup(key);
    int rc = g->key ? h2r_hist_new(&g->lat_int, 0) : H2R_ERR_NOMEM;
    if (!rc)
        rc = h2r_hist_new(&g->lat_sent, 0);
    if (rc) {
        group_free(g);
        return rc;
    }
    g->index = (uint32_t)r->n_groups;
    r->groups[r->n_groups++] = g;
    r->slots[i] = (uint32_t)r->n_groups;
    *out = g;
    return 0;
}

static uint32_t class_slot(uint32_t cls)
{
    if (cls == AN_CLASS_TRACE)
        return cls;
    if (cls < H2R_EC_MAX_ && strcmp(h2r_err_class_name(cls), "unknown") != 0)
        return cls;
    return AN_CLASS_UNKNOWN;
}

const char *an_class_name(uint32_t slot)
{
    if (slot == AN_CLASS_TRACE)
        return "trace_error";
    if (slot >= AN_CLASS_UNKNOWN)
        return "unknown";
    return h2r_err_class_name(slot);
}

static void fill_example(struct an_example *e, const struct an_obs *x, uint32_t group, uint32_t cls)
{
    e->id = x->id;
    e->group = group;
    e->cls = cls;
    e->t_intended_ns = x->t_intended;
    e->t_done_ns = x->t_done;
    e->status = x->status;
    size_t n = 0;
    for (const char *d = x->detail; d && *d && n + 1 < sizeof(e->detail); d++) {
        unsigned char c = (unsigned char)*d;
        e->detail[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    e->detail[n] = '\0';
}

static int note_failure(struct an_run *r, const struct an_obs *x, uint32_t group, uint32_t cls)
{
    if (!r->has_first_failure || x->t_intended < r->first_failure.t_intended_ns ||
        (x->t_intended == r->first_failure.t_intended_ns && x->id < r->first_failure.id)) {
        fill_example(&r->first_failure, x, group, cls);
        r->has_first_failure = 1;
    }
    if (r->n_examples < AN_MAX_EXAMPLES)
        fill_example(&r->examples[r->n_examples++], x, group, cls);
    if (r->n_failures == r->cap_failures) {
        if (r->cap_failures >= AN_MAX_FAILURES) {
            r->failures_truncated = 1;
            return 0;
        }
        size_t cap = r->cap_failures ? r->cap_failures * 2 : 1024;
        struct an_failure *f = realloc(r->failures, cap * sizeof(*f));
        if (!f)
            return H2R_ERR_NOMEM;
        r->failures = f;
        r->cap_failures = cap;
    }
    struct an_failure *f = &r->failures[r->n_failures++];
    f->id = x->id;
    f->group = group;
    f->cls = cls;
    return 0;
}

int an_run_add(struct an_run *r, const struct an_obs *x, const struct an_folder *f, int group_by)
{
    char key[AN_KEY_MAX + 32];
    if (group_by == AN_GROUP_CONN)
        snprintf(key, sizeof(key), "conn %llu", (unsigned long long)x->conn);
    else if (group_by == AN_GROUP_NONE)
        snprintf(key, sizeof(key), "all");
    else
        an_fold_key(f, x->method, x->path, x->grpc, key, sizeof(key));
    struct an_group *g;
    int rc = group_get(r, key, &g);
    if (rc)
        return rc;
    uint32_t cls = class_slot(x->cls);
    int ok = cls == H2R_EC_NONE;
    r->count++;
    g->count++;
    r->by_class[cls]++;
    g->by_class[cls]++;
    if (x->t_done > r->t_last_done_ns)
        r->t_last_done_ns = x->t_done;
    int64_t lat = -1;
    if (ok) {
        r->ok++;
        g->ok++;
        lat = x->t_done - x->t_intended;
        int64_t lat_sent = x->t_sent >= 0 ? x->t_done - x->t_sent : lat;
        if (lat < 0)
            lat = 0;
        h2r_hist_record(r->lat_int, lat);
        h2r_hist_record(g->lat_int, lat);
        h2r_hist_record(r->lat_sent, lat_sent);
        h2r_hist_record(g->lat_sent, lat_sent);
    } else {
        rc = note_failure(r, x, g->index, cls);
        if (rc)
            return rc;
    }
    return an_series_add(&r->series, x->t_intended, x->t_sent, x->t_done, !ok, lat);
}

static int cmp_failure(const void *a, const void *b)
{
    const struct an_failure *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

void an_run_finish(struct an_run *r, double threshold, unsigned sustain)
{
    an_series_finish(&r->series);
    an_series_onset(&r->series, threshold, sustain, &r->onset);
    if (r->n_failures > 1)
        qsort(r->failures, r->n_failures, sizeof(*r->failures), cmp_failure);
    size_t n = 0;
    for (size_t i = 0; i < r->n_failures; i++)
        if (n == 0 || r->failures[i].id != r->failures[n - 1].id)
            r->failures[n++] = r->failures[i];
    r->n_failures = n;
}

int an_run_failed(const struct an_run *r, uint64_t id)
{
    size_t lo = 0, hi = r->n_failures;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->failures[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->n_failures && r->failures[lo].id == id;
}

void an_run_compare(struct an_run *r, const struct an_run *ref)
{
    size_t j = 0;
    r->new_failures = r->shared_failures = 0;
    for (size_t i = 0; i < r->n_groups; i++)
        r->groups[i]->new_failures = r->groups[i]->shared_failures = 0;
    for (size_t i = 0; i < r->n_failures; i++) {
        const struct an_failure *f = &r->failures[i];
        while (j < ref->n_failures && ref->failures[j].id < f->id)
            j++;
        int shared = j < ref->n_failures && ref->failures[j].id == f->id;
        struct an_group *g = r->groups[f->group];
        if (shared) {
            r->shared_failures++;
            g->shared_failures++;
        } else {
            r->new_failures++;
            g->new_failures++;
        }
    }
    r->compared = 1;
}

int64_t an_run_duration(const struct an_run *r)
{
    int64_t d = r->t_end_ns > r->t_last_done_ns ? r->t_end_ns : r->t_last_done_ns;
    return d > 0 ? d : 1;
}
