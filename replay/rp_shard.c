/*
 * Sharded replays (see rp_shard.h for the partition and why round-robin by
 * first request): the partition of a plan, the --shard and --start-at flags,
 * and the wait for the shared time origin.
 *
 * Time model across machines. Each worker turns --start-at (a wall-clock
 * instant) into its own CLOCK_MONOTONIC t0 once, from one reading of both
 * clocks taken just before t0, and from then on schedules and measures on
 * CLOCK_MONOTONIC only. Clock skew between hosts therefore shifts a worker's
 * whole schedule by the skew (NTP keeps it to a few ms), but never enters a
 * latency, which is a difference of two readings of one monotonic clock. The
 * section records the reading (clock_offset_ns) and the kernel's NTP error
 * bound (clock_max_error_ns), so the skew a merged run may carry is visible.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timex.h>
#include <time.h>

#include "h2replay/error.h"
#include "h2replay/units.h"
#include "rp_shard.h"

#define NS_PER_S 1000000000LL
#define WAIT_SLICE_NS 100000000LL /* a stop request is seen within this */

/* ---- partition ---- */

uint64_t rp_shard_key_conn(const struct rp_plan *p, uint32_t c, void *arg)
{
    (void)arg;
    return p->conns[c].trace_id;
}

struct item {
    uint64_t key;
    int64_t t;
    uint32_t i;
};

struct unit {
    uint64_t key;
    int64_t t;     /* earliest t_first of its items */
    uint32_t from; /* its items: sorted[from .. to) */
    uint32_t to;
};

static int cmp_item(const void *a, const void *b)
{
    const struct item *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int cmp_unit(const void *a, const void *b)
{
    const struct unit *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key; /* keys are unique among units */
}

int rp_shard_assign(const uint64_t *keys, const int64_t *t_first, uint32_t n, uint32_t count,
                    uint32_t *out, uint32_t *n_sessions)
{
    if (count == 0)
        return H2R_ERR_ARG;
    if (n_sessions)
        *n_sessions = 0;
    if (n == 0)
        return 0;
    int rc = H2R_ERR_NOMEM;
    struct item *items = malloc((size_t)n * sizeof(*items));
    struct unit *units = malloc((size_t)n * sizeof(*units));
    if (!items || !units)
        goto out;
    for (uint32_t i = 0; i < n; i++) {
        items[i].key = keys[i];
        items[i].t = t_first[i];
        items[i].i = i;
    }
    /* equal keys side by side, earliest first: each run of one key is a session */
    qsort(items, n, sizeof(*items), cmp_item);
    uint32_t nu = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (nu && units[nu - 1].key == items[i].key) {
            units[nu - 1].to = i + 1;
            continue;
        }
        units[nu].key = items[i].key;
        units[nu].t = items[i].t;
        units[nu].from = i;
        units[nu].to = i + 1;
        nu++;
    }
    qsort(units, nu, sizeof(*units), cmp_unit);
    for (uint32_t u = 0; u < nu; u++)
        for (uint32_t k = units[u].from; k < units[u].to; k++)
            out[items[k].i] = u % count;
    if (n_sessions)
        *n_sessions = nu;
    rc = 0;
out:
    free(items);
    free(units);
    return rc;
}

static void whole_stats(const struct rp_plan *p, struct rp_shard_stats *st)
{
    memset(st, 0, sizeof(*st));
    for (uint32_t c = 0; c < p->n_conns; c++)
        st->sessions += p->conns[c].n_x > 0;
    st->conns = st->sessions;
    st->xs = p->n_xs;
}

int rp_shard_partition(struct rp_plan *p, uint32_t n_threads, uint32_t index, uint32_t count,
                       rp_shard_key_fn key, void *arg, struct rp_shard_stats *st)
{
    struct rp_shard_stats dummy;
    if (!st)
        st = &dummy;
    if (count <= 1) {
        int prc = rp_plan_partition(p, n_threads);
        whole_stats(p, st);
        return prc;
    }
    if (n_threads == 0 || index >= count)
        return H2R_ERR_ARG;
    if (!key)
        key = rp_shard_key_conn;
    memset(st, 0, sizeof(*st));

    int rc = H2R_ERR_NOMEM;
    uint32_t n = 0;
    for (uint32_t c = 0; c < p->n_conns; c++)
        n += p->conns[c].n_x > 0;
    uint64_t *keys = malloc(((size_t)n + 1) * sizeof(*keys));
    int64_t *t_first = malloc(((size_t)n + 1) * sizeof(*t_first));
    uint32_t *conn_of = malloc(((size_t)n + 1) * sizeof(*conn_of));
    uint32_t *shard = malloc(((size_t)n + 1) * sizeof(*shard));
    uint32_t *counts = calloc(n_threads, sizeof(*counts));
    uint32_t *ccounts = calloc(n_threads, sizeof(*ccounts));
    if (!keys || !t_first || !conn_of || !shard || !counts || !ccounts)
        goto out;
    uint32_t k = 0;
    for (uint32_t c = 0; c < p->n_conns; c++) {
        const struct rp_pconn *pc = &p->conns[c];
        if (pc->n_x == 0)
            continue;
        keys[k] = key(p, c, arg);
        t_first[k] = p->xs[p->conn_order[pc->first]].t_start; /* conn_order: start order */
        conn_of[k] = c;
        k++;
    }
    uint32_t sessions = 0;
    rc = rp_shard_assign(keys, t_first, n, count, shard, &sessions);
    if (rc)
        goto out;

    for (uint32_t c = 0; c < p->n_conns; c++) {
        p->conns[c].thread = RP_SHARD_NONE;
        p->conns[c].local = 0;
    }
    /* this shard's connections over the threads round-robin, as rp_plan_partition does */
    uint32_t mine = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (shard[i] != index)
            continue;
        struct rp_pconn *pc = &p->conns[conn_of[i]];
        pc->thread = mine % n_threads;
        pc->local = ccounts[pc->thread]++;
        mine++;
    }
    for (uint32_t i = 0; i < p->n_xs; i++) {
        uint32_t t = p->conns[p->xs[i].conn].thread;
        p->xs[i].local = 0;
        if (t == RP_SHARD_NONE)
            continue;
        p->xs[i].local = counts[t]++;
        st->xs++;
    }
    st->conns = mine;
    st->sessions = sessions / count + (index < sessions % count ? 1 : 0);
    free(p->thread_xs);
    free(p->thread_conns);
    p->thread_xs = counts;
    p->thread_conns = ccounts;
    p->n_threads = n_threads;
    counts = ccounts = NULL;
out:
    free(keys);
    free(t_first);
    free(conn_of);
    free(shard);
    free(counts);
    free(ccounts);
    return rc;
}

/* ---- options ---- */

int rp_shard_check_opts(const struct h2r_replay_opts *o, char *errbuf, size_t errlen)
{
    if (o->shard_count > H2R_REPLAY_MAX_SHARDS)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "at most %u shards",
                          (unsigned)H2R_REPLAY_MAX_SHARDS);
    if (o->shard_count > 1 && o->shard_index >= o->shard_count)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "shard index %u is not in 0..%u",
                          o->shard_index, o->shard_count - 1);
    if (o->start_at_ns && o->n_targets > 1)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "--start-at aligns one target: give one --target per sharded "
                          "replay (one job per target; analyze compares the runs)");
    return 0;
}

void rp_shard_settings(char *buf, size_t len, uint32_t count, const char *key_name)
{
    size_t used = strnlen(buf, len);
    if (count <= 1 || used + 1 >= len)
        return;
    snprintf(buf + used, len - used, " shards=%u partition=%s:%s", count,
             key_name ? key_name : "conn", RP_SHARD_SCHEME);
}

void rp_shard_note(const struct h2r_replay_opts *o, const struct rp_shard_stats *st,
                   const struct rp_plan *p)
{
    if (o->quiet || o->shard_count <= 1)
        return;
    fprintf(stderr, "replay: shard %u/%u: %u of %u connections, %llu of %u exchanges\n",
            o->shard_index, o->shard_count, st->conns, p->n_conns, (unsigned long long)st->xs,
            p->n_xs);
    if (!o->start_at_ns)
        fprintf(stderr, "replay: warning: --shard without --start-at: this shard's schedule "
                        "starts when this process does; give every shard the same --start-at "
                        "to align them\n");
}

/* ---- --shard I/N ---- */

/* A decimal number of at most 9 digits (no sign, no spaces); returns the end or NULL. */
static const char *parse_u32(const char *s, uint32_t *v)
{
    uint32_t x = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9' && p - s < 9)
        x = x * 10 + (uint32_t)(*p++ - '0');
    if (p == s || (*p >= '0' && *p <= '9'))
        return NULL;
    *v = x;
    return p;
}

int h2r_replay_parse_shard(const char *s, uint32_t *index, uint32_t *count, char *errbuf,
                           size_t errlen)
{
    uint32_t i = 0, n = 0;
    const char *p = s ? parse_u32(s, &i) : NULL;
    if (p && *p == '/')
        p = parse_u32(p + 1, &n);
    else
        p = NULL;
    if (!p || *p)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "'%s' is not I/N (0-based shard index / shard count, e.g. 0/4)",
                          s ? s : "");
    if (n < 1 || n > H2R_REPLAY_MAX_SHARDS)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "'%s': the shard count must be 1..%u", s,
                          (unsigned)H2R_REPLAY_MAX_SHARDS);
    if (i >= n)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "'%s': shard indexes are 0-based (0..%u), like Kubernetes' "
                          "JOB_COMPLETION_INDEX; from a 1-based task id give $((ID - 1))/%u",
                          s, n - 1, n);
    *index = i;
    *count = n;
    return 0;
}

/* ---- --start-at TIME ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int64_t y, int64_t m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return days[m - 1] + (m == 2 && leap);
}

/* Exactly `width` digits at *p (advanced); -1 when not. */
static int64_t digits(const char **p, int width)
{
    int64_t v = 0;
    for (int i = 0; i < width; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += width;
    return v;
}

/* Fractional seconds after a '.' at *p (advanced), in ns; -1 when no digit follows. */
static int64_t fraction_ns(const char **p)
{
    const char *s = *p;
    int64_t v = 0, scale = 100000000LL;
    int n = 0;
    for (; *s >= '0' && *s <= '9'; s++, n++) {
        v += (*s - '0') * scale;
        scale /= 10;
    }
    if (n == 0)
        return -1;
    *p = s;
    return v;
}

/* RFC 3339: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM). Returns 0 or -1. */
static int parse_rfc3339(const char *s, int64_t *out)
{
    const char *p = s;
    int64_t y = digits(&p, 4);
    if (y < 0 || *p++ != '-')
        return -1;
    int64_t mo = digits(&p, 2);
    if (mo < 0 || *p++ != '-')
        return -1;
    int64_t d = digits(&p, 2);
    if (d < 0 || (*p != 'T' && *p != 't' && *p != ' '))
        return -1;
    p++;
    int64_t h = digits(&p, 2);
    if (h < 0 || *p++ != ':')
        return -1;
    int64_t mi = digits(&p, 2);
    if (mi < 0 || *p++ != ':')
        return -1;
    int64_t sec = digits(&p, 2);
    if (sec < 0)
        return -1;
    int64_t frac = 0;
    if (*p == '.') {
        p++;
        frac = fraction_ns(&p);
        if (frac < 0)
            return -1;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int neg = *p++ == '-';
        int64_t oh = digits(&p, 2);
        if (oh < 0 || *p++ != ':')
            return -1;
        int64_t om = digits(&p, 2);
        if (om < 0 || oh > 23 || om > 59)
            return -1;
        off = (oh * 60 + om) * 60 * (neg ? -1 : 1);
    } else {
        return -1; /* no zone: local time would differ between machines */
    }
    if (*p || y < 1970 || y > 2200 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) ||
        h > 23 || mi > 59 || sec > 60)
        return -1;
    int64_t t = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 + sec - off;
    *out = t * NS_PER_S + frac;
    return 0;
}

/* Unix time: seconds (up to 11 digits, optional fraction) or nanoseconds (18+ digits). */
static int parse_epoch(const char *s, int64_t *out)
{
    const char *p = s;
    int64_t v = 0;
    int n = 0;
    for (; *p >= '0' && *p <= '9'; p++, n++) {
        if (n == 19)
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (n == 0)
        return -1;
    if (n <= 11) {
        int64_t frac = 0;
        if (*p == '.') {
            p++;
            frac = fraction_ns(&p);
            if (frac < 0)
                return -1;
        }
        if (*p)
            return -1;
        *out = v * NS_PER_S + frac;
        return 0;
    }
    if (n >= 18 && !*p) {
        *out = v;
        return 0;
    }
    return -1; /* milliseconds or microseconds would be guesswork */
}

static void format_utc(int64_t ns, char *buf, size_t len)
{
    time_t t = (time_t)(ns / NS_PER_S);
    struct tm tm;
    if (ns < 0 || !gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm)) {
        snprintf(buf, len, "%lld ns", (long long)ns);
        return;
    }
    size_t n = strlen(buf);
    snprintf(buf + n, len - n, ".%03lldZ", (long long)(ns % NS_PER_S / 1000000));
}

/* A long span as "42s", "3.5h" or "12.0 days". */
static void format_span(int64_t ns, char *buf, size_t len)
{
    if (ns < 120 * NS_PER_S)
        h2r_format_duration(ns, buf, len);
    else if (ns < 48 * 3600 * NS_PER_S)
        snprintf(buf, len, "%.1fh", (double)ns / 3600e9);
    else
        snprintf(buf, len, "%.1f days", (double)ns / 86400e9);
}

/* The window --start-at must fall in, relative to now; what names the value in messages. */
static int check_start_window(int64_t at, int64_t now, const char *what, char *errbuf,
                              size_t errlen)
{
    char when[48], d[32];
    format_utc(at, when, sizeof(when));
    if (at < now - RP_START_GRACE_NS) {
        format_span(now - at, d, sizeof(d));
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "%s%s was %s ago (more than the %llds grace): too late to keep the "
                          "shared schedule; start the shards again with a later time",
                          what, when, d, RP_START_GRACE_NS / NS_PER_S);
    }
    if (at > now + RP_START_MAX_WAIT_NS) {
        format_span(at - now, d, sizeof(d));
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "%s%s is %s ahead (at most %lldh): a wrong date?", what, when, d,
                          RP_START_MAX_WAIT_NS / NS_PER_S / 3600);
    }
    return 0;
}

int h2r_replay_parse_start_at(const char *s, int64_t now_wall_ns, int64_t *at, char *errbuf,
                              size_t errlen)
{
    int64_t t = 0;
    int ok;
    if (!s || !*s) {
        ok = 0;
    } else if (s[0] == '+') {
        int64_t d = 0;
        ok = h2r_parse_duration(s + 1, &d) == 0 && d <= RP_START_MAX_WAIT_NS;
        t = now_wall_ns + d;
    } else if (strchr(s, '-') || strchr(s, ':')) {
        ok = parse_rfc3339(s, &t) == 0;
    } else {
        ok = parse_epoch(s, &t) == 0;
    }
    if (!ok)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                          "'%s' is not a start time: RFC 3339 with a zone "
                          "(2026-11-27T01:00:00Z), +DURATION from now (+30s), or Unix time in "
                          "seconds or nanoseconds",
                          s ? s : "");
    int rc = check_start_window(t, now_wall_ns, "", errbuf, errlen);
    if (rc)
        return rc;
    *at = t;
    return 0;
}

/* ---- waiting for t0 ---- */

/* The wait, for either way of asking for a stop (a flag or a function). */
int rp_start_at_wait(int64_t start_at_ns, int64_t lead_ns, int (*stop)(void), int quiet,
                     int64_t *mono, int64_t *wall, char *errbuf, size_t errlen)
{
    int64_t now = h2r_now_wall_ns();
    int rc = check_start_window(start_at_ns, now, "--start-at ", errbuf, errlen);
    if (rc)
        return rc;
    int64_t wake = start_at_ns - lead_ns;
    char when[48], d[32];
    format_utc(start_at_ns, when, sizeof(when));
    if (!quiet && wake - now > NS_PER_S) {
        h2r_format_duration(start_at_ns - now, d, sizeof(d));
        fprintf(stderr, "replay: waiting %s for --start-at %s\n", d, when);
    }
    /* slices re-read the wall clock, so an NTP step during the wait is followed; the bound
     * holds even if the clock is stepped back repeatedly */
    uint64_t max_slices = (uint64_t)(RP_START_MAX_WAIT_NS / WAIT_SLICE_NS) + 100;
    for (uint64_t i = 0; i < max_slices && !stop() && now < wake; i++) {
        int64_t left = wake - now;
        if (left > WAIT_SLICE_NS)
            left = WAIT_SLICE_NS;
        struct timespec ts = {(time_t)(left / NS_PER_S), (long)(left % NS_PER_S)};
        nanosleep(&ts, NULL); /* EINTR: a signal; the loop re-checks *stop and the clock */
        now = h2r_now_wall_ns();
    }
    /* one reading of both clocks, the monotonic one bracketing the wall one */
    int64_t m1 = h2r_now_mono_ns();
    int64_t w = h2r_now_wall_ns();
    int64_t m2 = h2r_now_mono_ns();
    *mono = m1 + (m2 - m1) / 2;
    *wall = w;
    if (!quiet && !stop() && w > start_at_ns + 1000000) {
        h2r_format_duration(w - start_at_ns, d, sizeof(d));
        fprintf(stderr,
                "replay: warning: started %s after --start-at %s; the exchanges due before "
                "now go out at once (their send lateness shows it)\n",
                d, when);
    }
    return 0;
}

int64_t rp_clock_max_error_ns(void)
{
    struct timex tx;
    memset(&tx, 0, sizeof(tx)); /* modes 0: read only, no privilege needed */
    int state = adjtimex(&tx);
    if (state < 0 || state == TIME_ERROR || (tx.status & STA_UNSYNC))
        return -1;
    return (int64_t)tx.maxerror * 1000; /* microseconds */
}

int rp_section_begin(struct h2r_run_writer *wr, const struct h2r_replay_opts *o, uint32_t section,
                     const struct rp_target *t, int64_t lead_ns, int (*stop)(void), int64_t *t0,
                     char *errbuf, size_t errlen)
{
    int64_t mono = h2r_now_mono_ns(), wall = h2r_now_wall_ns();
    *t0 = mono + lead_ns;
    if (o->start_at_ns && section == 0) { /* --start-at: the origin shared by all shards */
        int rc = rp_start_at_wait(o->start_at_ns, lead_ns, stop, o->quiet, &mono, &wall, errbuf,
                                  errlen);
        if (rc)
            return rc;
        *t0 = mono + (o->start_at_ns - wall);
    }
    struct h2r_run_section sec;
    memset(&sec, 0, sizeof(sec));
    sec.id = section;
    sec.name = t->name;
    sec.url = t->url;
    sec.speed = o->speed;
    sec.t0_wall_ns = wall + (*t0 - mono);
    sec.timeout_ns = o->timeout_ns;
    sec.label = o->label;
    sec.clock_offset_ns = wall - mono;
    sec.clock_max_error_ns = rp_clock_max_error_ns();
    int rc = h2r_run_write_section(wr, &sec);
    if (rc)
        return h2r_seterr(errbuf, errlen, rc, "writing %s: %s", o->run_path,
                          h2r_run_writer_errmsg(wr));
    return 0;
}
