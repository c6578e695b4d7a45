/*
 * The replay driver: h2r_replay_run() and its helpers (include/h2replay/replay.h).
 *
 * Loads the trace into a plan once, then replays it against each target in
 * turn, each target one section of the run file. Within a section, -t N
 * loop threads each own a round-robin share of the captured connections
 * (a captured connection never spans threads, so per-connection order and
 * causality need no locks). The calling thread is the coordinator and the
 * only writer of the run file: workers hand it results in batches of
 * RP_BATCH through one mutex-protected queue (one lock per batch, so the
 * lock is cold even at 100k req/s), and it samples the workers' atomic
 * counters once a second for the sample records and the progress line.
 * Writing (and zstd compression) thus stays off the event loops, the file
 * grows while the replay runs (a killed replay leaves a readable prefix),
 * and memory stays bounded by the queue, not by the length of the trace.
 */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "h2replay/error.h"
#include "h2replay/replay.h"
#include "h2replay/run.h"
#include "h2replay/units.h"
#include "rp_dbwatch.h"
#include "rp_loop.h"
#include "rp_nodes.h"
#include "rp_rewrite.h"
#include "rp_schedule.h"
#include "rp_shard.h"
#include "rp_stats.h"
#include "rp_transport.h"
#include "rp_url.h"

#define SAMPLE_NS 1000000000LL
#define POLL_NS 100000000LL      /* how often the coordinator checks for a stop request */
#define STARTUP_NS 50000000LL    /* t0 is this far ahead: threads up, first connects issued */
#define MAX_LEAD_NS 1000000000LL /* connections open at most 1 s (scaled) before t0 */

static volatile sig_atomic_t stop_requested;

void h2r_replay_request_stop(void)
{
    stop_requested = 1;
}

int rp_replay_stop_requested(void)
{
    return stop_requested != 0;
}

void h2r_replay_opts_init(struct h2r_replay_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->speed = 1.0;
    o->timeout_ns = 5000000000LL;
    o->connect_timeout_ns = 3000000000LL;
    o->threads = 1;
}

int h2r_replay_parse_speed(const char *s, double *speed)
{
    if (!s || !*s)
        return H2R_ERR_ARG;
    if (strcasecmp(s, "max") == 0) {
        *speed = 0;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v <= 0 || v > 1e6)
        return H2R_ERR_ARG;
    if (*end == 'x' || *end == 'X')
        end++;
    if (*end)
        return H2R_ERR_ARG;
    *speed = v;
    return 0;
}

int h2r_replay_check_target(const char *spec, char *errbuf, size_t errlen)
{
    struct rp_target t;
    return rp_target_parse(spec, &t, errbuf, errlen);
}

int h2r_replay_have_rewrite(void)
{
    return rp_rewrite_available();
}

/* ---- run meta ---- */

/* Hex SHA-256 of a file into out[65]; "" when unreadable. */
static void file_sha256(const char *path, char *out)
{
    out[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char buf[65536], dig[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
    while (ok) {
        size_t n = fread(buf, 1, sizeof(buf), f);
        if (n == 0)
            break;
        ok = EVP_DigestUpdate(md, buf, n) == 1;
    }
    if (ok && !ferror(f) && EVP_DigestFinal_ex(md, dig, &dlen) == 1) {
        for (unsigned i = 0; i < dlen && i < 32; i++)
            snprintf(out + (size_t)2 * i, 3, "%02x", dig[i]);
    }
    EVP_MD_CTX_free(md);
    fclose(f);
}

static void speed_str(double speed, char *buf, size_t len)
{
    if (speed <= 0)
        snprintf(buf, len, "max");
    else
        snprintf(buf, len, "%g", speed);
}

/* ---- one section ---- */

struct section_stats {
    uint64_t results;
    uint64_t errors;
    uint64_t by_class[H2R_EC_MAX_];
    struct rp_resources res; /* the client's own cost, for section_end */
};

struct replay_ctx {
    const struct h2r_replay_opts *o;
    struct rp_plan *plan;
    struct rp_rewrite *rw;
    struct h2r_run_writer *wr;
    uint32_t n_threads;
    int write_err;
    char write_msg[256];
};

static void write_results(struct replay_ctx *ctx, struct rp_batch *list, struct section_stats *st)
{
    for (struct rp_batch *b = list; b; b = b->next) {
        for (uint32_t i = 0; i < b->n; i++) {
            const struct h2r_run_result *r = &b->v[i].r;
            st->results++;
            if (r->err_class != H2R_EC_NONE)
                st->errors++;
            if (r->err_class < H2R_EC_MAX_)
                st->by_class[r->err_class]++;
            if (r->err_class != H2R_EC_NONE && rp_detail_is_fd_exhaustion(r->err_detail))
                st->res.emfile++;
            if (ctx->write_err)
                continue;
            int rc = h2r_run_write_result(ctx->wr, r);
            if (rc) {
                ctx->write_err = rc;
                snprintf(ctx->write_msg, sizeof(ctx->write_msg), "writing %s: %s", ctx->o->run_path,
                         h2r_run_writer_errmsg(ctx->wr));
            }
        }
    }
    rp_batch_free_list(list);
}

struct live_sum {
    uint64_t due, sent, done, errors, in_flight, open_conns;
    int64_t max_late;
    uint64_t late[RP_HIST_BUCKETS];
};

/* Sums the workers' counters; takes (resets) their interval max lateness. */
static void live_read(struct rp_live *lives, uint32_t n, struct live_sum *s)
{
    memset(s, 0, sizeof(*s));
    for (uint32_t i = 0; i < n; i++) {
        struct rp_live *l = &lives[i];
        s->due += atomic_load_explicit(&l->due, memory_order_relaxed);
        s->sent += atomic_load_explicit(&l->sent, memory_order_relaxed);
        s->done += atomic_load_explicit(&l->done, memory_order_relaxed);
        s->errors += atomic_load_explicit(&l->errors, memory_order_relaxed);
        s->in_flight += atomic_load_explicit(&l->in_flight, memory_order_relaxed);
        s->open_conns += atomic_load_explicit(&l->open_conns, memory_order_relaxed);
        int64_t m = atomic_exchange_explicit(&l->max_late, 0, memory_order_relaxed);
        if (m > s->max_late)
            s->max_late = m;
        rp_hist_snapshot(&l->late, s->late);
    }
}

struct sampler {
    int64_t last_t; /* absolute end of the previous interval */
    struct live_sum prev;
    int progress;
    int printed;
};

static void sample(struct replay_ctx *ctx, const struct rp_target *t, uint32_t section,
                   struct rp_live *lives, struct sampler *sp, int64_t t0, int64_t at,
                   struct section_stats *st)
{
    struct live_sum cur;
    live_read(lives, ctx->n_threads, &cur);
    rp_resources_sample(&st->res, cur.open_conns, cur.max_late);
    struct h2r_run_sample s;
    memset(&s, 0, sizeof(s));
    s.section = section;
    s.t_ns = at - t0;
    s.interval_ns = at - sp->last_t;
    s.in_flight = cur.in_flight;
    s.open_conns = cur.open_conns;
    s.due = cur.due - sp->prev.due;
    s.sent = cur.sent - sp->prev.sent;
    s.done = cur.done - sp->prev.done;
    s.errors = cur.errors - sp->prev.errors;
    s.max_late_ns = cur.max_late;
    if (!ctx->write_err && s.interval_ns > 0) {
        /* each sample ends a zstd frame: a replay killed by the OS leaves all but the
         * last second readable */
        int rc = h2r_run_write_sample(ctx->wr, &s);
        if (!rc)
            rc = h2r_run_writer_flush(ctx->wr);
        if (rc) {
            ctx->write_err = rc;
            snprintf(ctx->write_msg, sizeof(ctx->write_msg), "writing %s: %s", ctx->o->run_path,
                     h2r_run_writer_errmsg(ctx->wr));
        }
    }
    if (sp->progress) {
        uint64_t diff[RP_HIST_BUCKETS];
        for (uint32_t i = 0; i < RP_HIST_BUCKETS; i++)
            diff[i] = cur.late[i] - sp->prev.late[i];
        char p99[32];
        h2r_format_duration(rp_hist_quantile(diff, 0.99), p99, sizeof(p99));
        fprintf(stderr,
                "\r%s %5.0fs  sent %llu  done %llu  errors %llu  in flight %llu  conns %llu  "
                "late p99 %s\033[K",
                t->name, (double)(at - t0) / 1e9, (unsigned long long)cur.sent,
                (unsigned long long)cur.done, (unsigned long long)cur.errors,
                (unsigned long long)cur.in_flight, (unsigned long long)cur.open_conns, p99);
        fflush(stderr);
        sp->printed = 1;
    }
    cur.max_late = 0;
    sp->prev = cur;
    sp->last_t = at;
}

static void summary(const struct rp_target *t, const struct section_stats *st,
                    struct rp_live *lives, uint32_t n, int64_t dur, uint32_t conns, int interrupted)
{
    uint64_t late[RP_HIST_BUCKETS], lat[RP_HIST_BUCKETS];
    memset(late, 0, sizeof(late));
    memset(lat, 0, sizeof(lat));
    for (uint32_t i = 0; i < n; i++) {
        rp_hist_snapshot(&lives[i].late, late);
        rp_hist_snapshot(&lives[i].latency, lat);
    }
    char d[32], l50[32], l99[32], lmax[32], r50[32], r99[32];
    h2r_format_duration(dur, d, sizeof(d));
    h2r_format_duration(rp_hist_quantile(late, 0.5), l50, sizeof(l50));
    h2r_format_duration(rp_hist_quantile(late, 0.99), l99, sizeof(l99));
    h2r_format_duration(st->res.max_late, lmax, sizeof(lmax));
    h2r_format_duration(rp_hist_quantile(lat, 0.5), r50, sizeof(r50));
    h2r_format_duration(rp_hist_quantile(lat, 0.99), r99, sizeof(r99));
    double rate = dur > 0 ? (double)st->results * 1e9 / (double)dur : 0;
    int named = strcmp(t->name, t->url) != 0;
    fprintf(stderr, "replay %s%s%s%s: %llu exchanges in %s (%.1f/s), %llu ok, %llu errors%s\n",
            t->name, named ? " (" : "", named ? t->url : "", named ? ")" : "",
            (unsigned long long)st->results, d, rate,
            (unsigned long long)(st->results - st->errors), (unsigned long long)st->errors,
            interrupted ? " [interrupted]" : "");
    if (st->errors) {
        fprintf(stderr, "  errors:");
        for (uint32_t c = 1; c < H2R_EC_MAX_; c++)
            if (st->by_class[c])
                fprintf(stderr, " %s %llu", h2r_err_class_name(c),
                        (unsigned long long)st->by_class[c]);
        fputc('\n', stderr);
    }
    fprintf(stderr,
            "  send lateness p50 %s p99 %s max %s; response time p50 %s p99 %s; %u connections\n",
            l50, l99, lmax, r50, r99, conns);
}

/* Runs one target. Returns 0 or a local error (resources, run file). */
static int run_section(struct replay_ctx *ctx, uint32_t section, const struct rp_target *t,
                       struct h2r_replay_result *res, char *errbuf, size_t errlen)
{
    const struct h2r_replay_opts *o = ctx->o;
    const uint32_t n = ctx->n_threads;
    int rc = 0;
    struct rp_live *lives = NULL;
    struct rp_dbwatch *dbw = NULL; /* --db: samples the target's database */
    struct rp_worker **workers = NULL;
    pthread_t *tids = NULL;
    SSL_CTX **ssl = NULL;
    uint32_t started = 0;
    int sink_ok = 0, interrupted = 0;
    struct rp_sink sink;
    struct section_stats st;
    memset(&st, 0, sizeof(st));
    _Atomic uint32_t conn_seq = 0;

    struct sockaddr_storage ss;
    socklen_t ss_len = 0;
    char resolve_err[256] = "";
    int resolved = rp_target_resolve(t, &ss, &ss_len, resolve_err, sizeof(resolve_err)) == 0;

    lives = aligned_alloc(64, ((sizeof(*lives) * n + 63) / 64) * 64);
    workers = calloc(n, sizeof(*workers));
    tids = calloc(n, sizeof(*tids));
    ssl = calloc(n, sizeof(*ssl));
    if (!lives || !workers || !tids || !ssl) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
        goto out;
    }
    memset(lives, 0, sizeof(*lives) * n);
    rc = rp_sink_init(&sink);
    if (rc) {
        h2r_seterr(errbuf, errlen, rc, "out of memory");
        goto out;
    }
    sink_ok = 1;
    if (t->tls) {
        /* one context per thread: share nothing, not even OpenSSL's locks */
        for (uint32_t i = 0; i < n; i++) {
            rc = rp_tls_ctx_new(&ssl[i], o->insecure, o->cacert, errbuf, errlen);
            if (rc)
                goto out;
        }
    }
    rc = rp_rewrite_begin(ctx->rw, (uint64_t)h2r_now_wall_ns() ^ ((uint64_t)section << 56));
    if (rc) {
        h2r_seterr(errbuf, errlen, rc, "out of memory");
        goto out;
    }

    rc = rp_dbwatch_start(&dbw, o, t->name, errbuf, errlen);
    if (rc)
        goto out;

    int64_t lead = rp_scale(ctx->plan->trace0 - ctx->plan->first_open, o->speed);
    if (lead > MAX_LEAD_NS)
        lead = MAX_LEAD_NS;
    if (lead < 0)
        lead = 0;
    int64_t t0;
    rc = rp_section_begin(ctx->wr, o, section, t, STARTUP_NS + lead, rp_replay_stop_requested,
                          &t0, errbuf, errlen);
    if (rc)
        goto out;

    rp_resources_begin(&st.res);
    for (uint32_t i = 0; i < n; i++) {
        struct rp_worker_cfg cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.plan = ctx->plan;
        cfg.tid = i;
        cfg.section = section;
        cfg.target = t;
        cfg.addr = resolved ? (const struct sockaddr *)&ss : NULL;
        cfg.addr_len = ss_len;
        cfg.resolve_err = resolve_err;
        cfg.speed = o->speed;
        cfg.t0 = t0;
        cfg.max_lead = lead;
        cfg.timeout = o->timeout_ns;
        cfg.connect_timeout = o->connect_timeout_ns;
        cfg.ssl_ctx = ssl[i];
        cfg.sink = &sink;
        cfg.live = &lives[i];
        cfg.conn_seq = &conn_seq;
        cfg.rw = ctx->rw;
        rc = rp_worker_new(&workers[i], &cfg, errbuf, errlen);
        if (rc)
            goto out;
    }

    /* workers never take SIGINT/SIGTERM: the handler's flag is read here */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (; started < n; started++) {
        if (pthread_create(&tids[started], NULL, rp_worker_main, workers[started]) != 0)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < n) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "cannot start loop thread %u", started);
        for (uint32_t i = 0; i < started; i++)
            rp_worker_stop(workers[i]);
    }

    struct sampler sp;
    memset(&sp, 0, sizeof(sp));
    sp.last_t = t0;
    sp.progress = o->progress;
    int64_t next_sample = t0 + SAMPLE_NS;
    int stopped = started < n;
    uint32_t finished = 0;
    while (finished < started) {
        if ((stop_requested || ctx->write_err) && !stopped) {
            for (uint32_t i = 0; i < started; i++)
                rp_worker_stop(workers[i]);
            stopped = 1;
            interrupted = stop_requested != 0;
        }
        int64_t now = h2r_now_mono_ns();
        int64_t deadline = now + POLL_NS < next_sample ? now + POLL_NS : next_sample;
        struct rp_batch *b = rp_sink_take(&sink, deadline, &finished);
        write_results(ctx, b, &st);
        now = h2r_now_mono_ns();
        if (now >= next_sample) {
            rp_dbwatch_drain(dbw, ctx->wr, section, t0, o->quiet); /* errors stick to the writer */
            sample(ctx, t, section, lives, &sp, t0, next_sample, &st);
            next_sample += SAMPLE_NS;
            if (next_sample <= now) /* we fell behind: skip ahead, keep 1 s intervals */
                next_sample = now + SAMPLE_NS - (now - t0) % SAMPLE_NS;
        }
    }
    for (uint32_t i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    write_results(ctx, rp_sink_take(&sink, 0, &finished), &st);
    int64_t t_end = h2r_now_mono_ns();
    rp_dbwatch_stop(dbw); /* one last sample after the load */
    rp_dbwatch_drain(dbw, ctx->wr, section, t0, o->quiet);
    if (t_end > sp.last_t && t_end > t0)
        sample(ctx, t, section, lives, &sp, t0, t_end, &st);
    if (sp.printed)
        fputc('\n', stderr);
    for (uint32_t i = 0; i < started; i++) {
        int ws = rp_worker_status(workers[i]);
        if (ws && !o->quiet)
            fprintf(stderr, "replay: warning: loop thread %u: %s (results may be incomplete)\n", i,
                    h2r_strerror(ws));
    }

    struct h2r_run_section_end end;
    memset(&end, 0, sizeof(end));
    end.section = section;
    end.t_end_ns = t_end - t0;
    end.exchanges = st.results;
    end.errors = st.errors;
    end.interrupted = interrupted;
    rp_resources_end(&st.res, lives, started, &end);
    if (!ctx->write_err) {
        int wrc = h2r_run_write_section_end(ctx->wr, &end);
        if (!wrc)
            wrc = h2r_run_writer_flush(ctx->wr);
        if (wrc) {
            ctx->write_err = wrc;
            snprintf(ctx->write_msg, sizeof(ctx->write_msg), "writing %s: %s", o->run_path,
                     h2r_run_writer_errmsg(ctx->wr));
        }
    }
    if (!o->quiet)
        summary(t, &st, lives, started, t_end - t0, (uint32_t)conn_seq, interrupted);
    res->sections++;
    res->exchanges += st.results;
    res->errors += st.errors;
    if (interrupted)
        res->interrupted = 1;
    if (ctx->write_err && !rc)
        rc = h2r_seterr(errbuf, errlen, ctx->write_err, "%s", ctx->write_msg);
out:
    rp_rewrite_end(ctx->rw);
    rp_dbwatch_free(dbw);
    for (uint32_t i = 0; workers && i < n; i++)
        rp_worker_free(workers[i]);
    for (uint32_t i = 0; ssl && i < n; i++)
        rp_tls_ctx_free(ssl[i]);
    if (sink_ok)
        rp_sink_destroy(&sink);
    free(ssl);
    free(tids);
    free(workers);
    free(lives);
    return rc;
}

/* ---- between targets ---- */

static int run_between(const char *cmd, const struct rp_target *prev, const struct rp_target *next,
                       const char *run_path, char *errbuf, size_t errlen)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return h2r_seterr(errbuf, errlen, H2R_ERR_IO, "--between: fork: %s", strerror(errno));
    if (pid == 0) {
        /* no other thread exists between sections, so the environment is ours to change */
        setenv("H2R_PREV_TARGET", prev->name, 1);
        setenv("H2R_PREV_URL", prev->url, 1);
        setenv("H2R_NEXT_TARGET", next->name, 1);
        setenv("H2R_NEXT_URL", next->url, 1);
        setenv("H2R_RUN_FILE", run_path, 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return h2r_seterr(errbuf, errlen, H2R_ERR_IO, "--between: waitpid: %s",
                              strerror(errno));
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status))
        return h2r_seterr(errbuf, errlen, H2R_ERR_IO,
                          "--between command failed (exit status %d) before target '%s'; "
                          "remaining targets not replayed",
                          WEXITSTATUS(status), next->name);
    return h2r_seterr(errbuf, errlen, H2R_ERR_IO,
                      "--between command killed by signal %d before target '%s'",
                      WIFSIGNALED(status) ? WTERMSIG(status) : 0, next->name);
}

/* ---- per-target --set values ---- */

/*
 * "TARGET:NAME=VALUE" applies to the target named TARGET only. Variable names may hold
 * ':' (rw_rules.c), so the prefix counts only when it is exactly a target's name. Returns
 * the target's index with *rest at NAME=VALUE, or -1 (a value for every target).
 */
static int set_target(const char *spec, const struct rp_target *t, size_t n, const char **rest)
{
    const char *colon = strchr(spec, ':'), *eq = strchr(spec, '=');
    if (!colon || (eq && colon > eq))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (strlen(t[i].name) == (size_t)(colon - spec) &&
            memcmp(t[i].name, spec, (size_t)(colon - spec)) == 0) {
            *rest = colon + 1;
            return (int)i;
        }
    }
    return -1;
}

static int any_target_set(const struct h2r_replay_opts *o, const struct rp_target *t, size_t n)
{
    const char *rest;
    for (size_t i = 0; i < o->n_set_vars; i++)
        if (set_target(o->set_vars[i], t, n, &rest) >= 0)
            return 1;
    return 0;
}

/*
 * Copies o into *so with the --set values target ti sees: the unprefixed ones, then its own
 * (prefix stripped, so they win over an unprefixed value of the same name). *vars (caller
 * frees) backs so->set_vars. Returns 0 or H2R_ERR_NOMEM.
 */
static int target_opts(const struct h2r_replay_opts *o, const struct rp_target *t, size_t n,
                       int ti, struct h2r_replay_opts *so, const char ***vars)
{
    *so = *o;
    *vars = calloc(o->n_set_vars + 1, sizeof(**vars));
    if (!*vars)
        return H2R_ERR_NOMEM;
    size_t k = 0;
    const char *rest;
    for (size_t i = 0; i < o->n_set_vars; i++)
        if (set_target(o->set_vars[i], t, n, &rest) < 0)
            (*vars)[k++] = o->set_vars[i];
    for (size_t i = 0; i < o->n_set_vars; i++)
        if (set_target(o->set_vars[i], t, n, &rest) == ti)
            (*vars)[k++] = rest;
    so->set_vars = *vars;
    so->n_set_vars = k;
    return 0;
}

/* A fresh rewrite context for target ti (per-target --set values), checked against the plan. */
static int target_rewrite(struct replay_ctx *ctx, const struct rp_target *t, size_t n, int ti,
                          char *errbuf, size_t errlen)
{
    struct h2r_replay_opts so;
    const char **vars = NULL;
    rp_rewrite_free(ctx->rw);
    ctx->rw = NULL;
    int rc = target_opts(ctx->o, t, n, ti, &so, &vars);
    if (rc) {
        h2r_seterr(errbuf, errlen, rc, "out of memory");
        goto out;
    }
    rc = rp_rewrite_new(&ctx->rw, &so, ctx->plan, errbuf, errlen);
    if (!rc)
        rc = rp_rewrite_check(ctx->rw, ctx->plan, errbuf, errlen);
    if (rc && errbuf[0] && strlen(errbuf) + 40 < errlen) {
        char tmp[512];
        snprintf(tmp, sizeof(tmp), "%s", errbuf);
        snprintf(errbuf, errlen, "target '%s': %s", t[ti].name, tmp);
    }
out:
    free(vars); /* the rewrite context copied the values it keeps */
    return rc;
}

/*
 * Node sessions replay every target in one driver (rp_nodes.c) with one set of values:
 * per-target values work there with a single target (its prefix is stripped).
 */
static int nodes_opts(const struct h2r_replay_opts *o, struct h2r_replay_opts *so,
                      const char ***vars, char *errbuf, size_t errlen)
{
    struct rp_target *t = calloc(o->n_targets + 1, sizeof(*t));
    int rc = t ? 0 : H2R_ERR_NOMEM;
    size_t n = 0;
    *so = *o;
    *vars = NULL;
    for (; !rc && n < o->n_targets && o->targets; n++)
        if (rp_target_parse(o->targets[n], &t[n], errbuf, errlen))
            goto out; /* the nodes driver reports a bad target itself */
    if (rc || !any_target_set(o, t, n))
        goto out;
    if (n != 1) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                        "--set TARGET:NAME=VALUE: node sessions take one target per run");
        goto out;
    }
    rc = target_opts(o, t, n, 0, so, vars);
out:
    free(t);
    if (rc == H2R_ERR_NOMEM)
        h2r_seterr(errbuf, errlen, rc, "out of memory");
    return rc;
}

/* ---- entry point ---- */

static int check_opts(const struct h2r_replay_opts *o, char *errbuf, size_t errlen)
{
    if (!o->trace_path || !o->run_path)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "a trace and a run file are required");
    if (o->n_targets == 0 || o->n_targets > H2R_REPLAY_MAX_TARGETS)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "give 1 to %d targets",
                          H2R_REPLAY_MAX_TARGETS);
    if (o->threads < 1 || o->threads > H2R_REPLAY_MAX_THREADS)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "threads must be 1..%d",
                          H2R_REPLAY_MAX_THREADS);
    if (!(o->speed >= 0) || !isfinite(o->speed))
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "speed must be positive or max");
    if (o->timeout_ns <= 0 || o->connect_timeout_ns <= 0)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "timeouts must be positive");
    return 0;
}

int h2r_replay_run(const struct h2r_replay_opts *o, struct h2r_replay_result *res, char *errbuf,
                   size_t errlen)
{
    struct h2r_replay_result dummy;
    if (!res)
        res = &dummy;
    memset(res, 0, sizeof(*res));
    stop_requested = 0; /* a stop asked for during an earlier run does not carry over */
    rp_ack_reset();     /* nor do acknowledgements of an earlier run */
#ifdef H2R_HAVE_TS
    if (rp_nodes_wanted(o)) { /* TS2021 node sessions: replay/rp_nodes.c */
        struct h2r_replay_opts so;
        const char **vars = NULL;
        int nrc = nodes_opts(o, &so, &vars, errbuf, errlen);
        if (!nrc)
            nrc = rp_nodes_replay_run(&so, res, errbuf, errlen);
        free(vars);
        return nrc;
    }
#endif
    int rc = check_opts(o, errbuf, errlen);
    if (!rc)
        rc = rp_shard_check_opts(o, errbuf, errlen);
    if (rc)
        return rc;

    struct replay_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.o = o;
    struct rp_target *targets = calloc(o->n_targets, sizeof(*targets));
    if (!targets)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < o->n_targets; i++) {
        rc = rp_target_parse(o->targets[i], &targets[i], errbuf, errlen);
        if (rc)
            goto out;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(targets[j].name, targets[i].name) == 0) {
                rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                                "target name '%s' given twice (name them: --target NAME=URL)",
                                targets[i].name);
                goto out;
            }
        }
    }

    rc = rp_dbwatch_check(o, targets, o->n_targets, errbuf, errlen);
    if (rc)
        goto out;

    int truncated = 0;
    rc = rp_plan_load(&ctx.plan, o->trace_path, o->rewrite_file && rp_rewrite_available(),
                      &truncated, errbuf, errlen);
    if (rc)
        goto out;
    if (ctx.plan->n_xs == 0) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_FORMAT,
                        "%s: the trace has no HTTP/2 exchanges (captured TS2021 sessions "
                        "replay against ts2021+http(s):// targets)",
                        o->trace_path);
        goto out;
    }
    if (truncated && !o->quiet)
        fprintf(stderr,
                "replay: warning: %s ends in damage; replaying the %u exchanges before it\n",
                o->trace_path, ctx.plan->n_xs);
    int per_target = any_target_set(o, targets, o->n_targets);
    if (per_target) { /* --set TARGET:NAME=VALUE: check every target's values up front */
        for (size_t i = 0; i < o->n_targets && !rc; i++)
            rc = target_rewrite(&ctx, targets, o->n_targets, (int)i, errbuf, errlen);
    } else {
        rc = rp_rewrite_new(&ctx.rw, o, ctx.plan, errbuf, errlen);
        if (!rc)
            rc = rp_rewrite_check(ctx.rw, ctx.plan, errbuf, errlen);
    }
    if (rc)
        goto out;
    ctx.n_threads = (uint32_t)o->threads;
    if (ctx.n_threads > ctx.plan->n_conns)
        ctx.n_threads = ctx.plan->n_conns;
    struct rp_shard_stats shard;
    rc = rp_shard_partition(ctx.plan, ctx.n_threads, o->shard_index, o->shard_count, NULL, NULL,
                            &shard);
    if (rc) {
        h2r_seterr(errbuf, errlen, rc, "out of memory");
        goto out;
    }
    rp_shard_note(o, &shard, ctx.plan);

    char trace_sha[65], rules_sha[65] = "", host[256] = "", settings[512], sp[32];
    file_sha256(o->trace_path, trace_sha);
    if (o->rewrite_file)
        file_sha256(o->rewrite_file, rules_sha);
    if (gethostname(host, sizeof(host) - 1) != 0)
        host[0] = '\0';
    speed_str(o->speed, sp, sizeof(sp));
    snprintf(settings, sizeof(settings),
             "speed=%s timeout_ns=%lld connect_timeout_ns=%lld threads=%u insecure=%d "
             "rewrite_sha256=%s set_vars=%zu set_file=%s",
             sp, (long long)o->timeout_ns, (long long)o->connect_timeout_ns, ctx.n_threads,
             o->insecure, rules_sha, o->n_set_vars, o->set_file ? "yes" : "no");
    rp_shard_settings(settings, sizeof(settings), o->shard_count, NULL);
    struct h2r_run_meta meta;
    memset(&meta, 0, sizeof(meta));
    meta.tool_version = H2R_VERSION;
    meta.trace_path = o->trace_path;
    meta.trace_sha256 = trace_sha;
    meta.host = host;
    meta.command = o->command ? o->command : "";
    meta.settings = settings;
    meta.created_ns = h2r_now_wall_ns();
    meta.shard_index = o->shard_count > 1 ? o->shard_index : 0;
    meta.shard_count = o->shard_count > 1 ? o->shard_count : 1;
    meta.start_at_ns = o->start_at_ns;
    rc = h2r_run_writer_open(&ctx.wr, o->run_path, &meta, errbuf, errlen);
    if (rc)
        goto out;

    for (uint32_t i = 0; i < o->n_targets; i++) {
        if (stop_requested) {
            res->interrupted = 1;
            break;
        }
        if (i > 0 && o->between) {
            rc = run_between(o->between, &targets[i - 1], &targets[i], o->run_path, errbuf, errlen);
            if (rc)
                break;
            if (stop_requested) {
                res->interrupted = 1;
                break;
            }
        }
        if (per_target) {
            rc = target_rewrite(&ctx, targets, o->n_targets, (int)i, errbuf, errlen);
            if (rc)
                break;
        }
        rc = run_section(&ctx, i, &targets[i], res, errbuf, errlen);
        if (rc || res->interrupted)
            break;
    }
    int crc = h2r_run_writer_close(ctx.wr);
    ctx.wr = NULL;
    if (crc && !rc)
        rc = h2r_seterr(errbuf, errlen, crc, "closing %s: %s", o->run_path, h2r_strerror(crc));
out:
    if (ctx.wr)
        h2r_run_writer_close(ctx.wr);
    rp_rewrite_free(ctx.rw);
    rp_plan_free(ctx.plan);
    free(targets);
    return rc;
}
