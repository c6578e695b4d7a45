/*
 * Log-linear histograms and live counters for the replay (see rp_stats.h).
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "rp_stats.h"

int64_t rp_count_open_fds(void)
{
    /* one directory walk a second: ~1 ms at 10k descriptors, on the coordinator only */
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int64_t n = 0;
    const struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : 0; /* the directory's own descriptor */
}

int rp_detail_is_fd_exhaustion(const char *detail)
{
    return detail && (strstr(detail, "EMFILE") || strstr(detail, "ENFILE"));
}

static int64_t timeval_ns(const struct timeval *tv)
{
    return (int64_t)tv->tv_sec * 1000000000LL + (int64_t)tv->tv_usec * 1000;
}

void rp_resources_begin(struct rp_resources *r)
{
    memset(r, 0, sizeof(*r));
    getrusage(RUSAGE_SELF, &r->ru0);
}

void rp_resources_sample(struct rp_resources *r, uint64_t open_conns, int64_t max_late)
{
    if (max_late > r->max_late)
        r->max_late = max_late;
    if (open_conns > r->peak_conns)
        r->peak_conns = open_conns;
    int64_t fds = rp_count_open_fds();
    if (fds > 0 && (uint64_t)fds > r->peak_fds)
        r->peak_fds = (uint64_t)fds;
}

void rp_resources_end(const struct rp_resources *r, struct rp_live *lives, uint32_t n,
                      struct h2r_run_section_end *end)
{
    struct rusage ru1;
    getrusage(RUSAGE_SELF, &ru1);
    end->cpu_user_ns = timeval_ns(&ru1.ru_utime) - timeval_ns(&r->ru0.ru_utime);
    end->cpu_sys_ns = timeval_ns(&ru1.ru_stime) - timeval_ns(&r->ru0.ru_stime);
    end->max_rss_kb = (uint64_t)ru1.ru_maxrss;
    end->loop_threads = n;
    end->max_late_ns = r->max_late;
    uint64_t late[RP_HIST_BUCKETS];
    memset(late, 0, sizeof(late));
    for (uint32_t i = 0; i < n; i++)
        rp_hist_snapshot(&lives[i].late, late);
    end->late_p99_ns = rp_hist_quantile(late, 0.99);
    end->peak_fds = r->peak_fds;
    end->peak_conns = r->peak_conns;
    end->emfile_errors = r->emfile;
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY)
        end->fd_limit = (uint64_t)nofile.rlim_cur;
}

uint32_t rp_hist_bucket(int64_t v)
{
    if (v < (1 << RP_HIST_SUB_BITS))
        return v < 0 ? 0 : (uint32_t)v;
    uint64_t u = (uint64_t)v;
    uint32_t e = 63u - (uint32_t)__builtin_clzll(u); /* >= SUB_BITS */
    uint32_t sub = (uint32_t)(u >> (e - RP_HIST_SUB_BITS)) & ((1u << RP_HIST_SUB_BITS) - 1);
    return ((e - RP_HIST_SUB_BITS + 1) << RP_HIST_SUB_BITS) + sub;
}

int64_t rp_hist_bucket_max(uint32_t b)
{
    if (b < (1u << RP_HIST_SUB_BITS))
        return (int64_t)b;
    uint32_t e = (b >> RP_HIST_SUB_BITS) + RP_HIST_SUB_BITS - 1;
    uint64_t sub = b & ((1u << RP_HIST_SUB_BITS) - 1);
    uint64_t lo = ((1ull << RP_HIST_SUB_BITS) + sub) << (e - RP_HIST_SUB_BITS);
    uint64_t width = 1ull << (e - RP_HIST_SUB_BITS);
    uint64_t hi = lo + width - 1;
    return hi > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)hi;
}

void rp_hist_add(struct rp_hist *h, int64_t v)
{
    atomic_fetch_add_explicit(&h->n[rp_hist_bucket(v)], 1, memory_order_relaxed);
}

void rp_hist_snapshot(const struct rp_hist *h, uint64_t *out)
{
    for (uint32_t i = 0; i < RP_HIST_BUCKETS; i++)
        out[i] += atomic_load_explicit(&h->n[i], memory_order_relaxed);
}

int64_t rp_hist_quantile(const uint64_t *counts, double q)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < RP_HIST_BUCKETS; i++)
        total += counts[i];
    if (total == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)total);
    if (rank >= total)
        rank = total - 1;
    uint64_t acc = 0;
    for (uint32_t i = 0; i < RP_HIST_BUCKETS; i++) {
        acc += counts[i];
        if (acc > rank)
            return rp_hist_bucket_max(i);
    }
    return rp_hist_bucket_max(RP_HIST_BUCKETS - 1);
}

void rp_live_late(struct rp_live *l, int64_t v)
{
    int64_t cur = atomic_load_explicit(&l->max_late, memory_order_relaxed);
    while (v > cur && !atomic_compare_exchange_weak_explicit(
                          &l->max_late, &cur, v, memory_order_relaxed, memory_order_relaxed)) {
    }
}

const char *rp_strtab_intern(struct rp_strtab *t, const char *s)
{
    if (!s)
        return NULL;
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i], s) == 0)
            return t->v[i];
    if (t->n == RP_STRTAB_MAX)
        return "(detail not kept: too many distinct details)";
    if (t->n % 64 == 0) {
        char **v = realloc(t->v, (t->n + 64) * sizeof(*v));
        if (!v)
            return "(detail not kept: out of memory)";
        t->v = v;
    }
    char *d = strdup(s);
    if (!d)
        return "(detail not kept: out of memory)";
    t->v[t->n++] = d;
    return d;
}

void rp_strtab_free(struct rp_strtab *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i]);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}
