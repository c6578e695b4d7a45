/*
 * gen_run: writes a synthetic run file with the run writer, for the analyze
 * benchmark (scripts/bench-analyze.sh) and the HTML end-to-end test. The
 * load is a steady open-loop schedule over a handful of endpoints with
 * log-normal latencies; optionally each section after the first is slower,
 * and failures start at a given time, so every report feature has data.
 *
 * usage: gen_run -o FILE [-n EXCHANGES] [--sections N] [--rate PER_S]
 *                [--median-ms MS] [--slowdown F] [--fail-at SEC] [--fail-rate F]
 *                [--recover-at SEC] [--seed N] [--shard I/N] [--sha HEX] [--settings S]
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/run.h"

struct gen_opts {
    const char *out;
    uint64_t n;
    unsigned sections;
    double rate;
    double median_ms;
    double slowdown;
    double fail_at;
    double recover_at;
    double fail_rate;
    uint64_t seed;
    unsigned shard_index;
    unsigned shard_count;
    const char *sha;
    const char *settings;
};

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

/* Standard normal by Box-Muller. */
static double rng_normal(uint64_t *s)
{
    double u = rng_unit(s), v = rng_unit(s);
    if (u < 1e-300)
        u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static const struct {
    const char *method;
    const char *fmt; /* %llu gets an id */
    double weight;
    double lat_factor;
    int grpc;
} endpoints[] = {
    {"POST", "/machine/register", 0.10, 3.0, 0},
    {"POST", "/machine/%llu/map", 0.45, 1.0, 0},
    {"GET", "/key?v=%llu", 0.15, 0.2, 0},
    {"POST", "/api/v1/user/%llu", 0.10, 0.8, 0},
    {"GET", "/machine/nodekey:%016llx%016llx", 0.10, 0.5, 0},
    {"POST", "/headscale.v1.HeadscaleService/ListNodes", 0.10, 1.5, 1},
};
#define N_ENDPOINTS (sizeof(endpoints) / sizeof(endpoints[0]))

static int generate(const struct gen_opts *o)
{
    char err[256] = "", settings[256], cmd[64];
    struct h2r_run_writer *w = NULL;
    struct h2r_run_meta m;
    memset(&m, 0, sizeof(m));
    snprintf(settings, sizeof(settings), "%s", o->settings ? o->settings : "speed=1 timeout=30s");
    snprintf(cmd, sizeof(cmd), "gen_run -n %llu", (unsigned long long)o->n);
    m.tool_version = "gen_run";
    m.trace_path = "synthetic.h2t";
    m.trace_sha256 =
        o->sha ? o->sha : "5eed000000000000000000000000000000000000000000000000000000000000";
    m.host = "localhost";
    m.command = cmd;
    m.settings = settings;
    m.shard_index = o->shard_index;
    m.shard_count = o->shard_count;
    int rc = h2r_run_writer_open(&w, o->out, &m, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "gen_run: %s: %s\n", o->out, err);
        return 1;
    }
    static const char *const names[] = {"sqlite", "postgres", "cockroach", "mysql"};
    for (unsigned s = 0; s < o->sections && !rc; s++) {
        struct h2r_run_section sec;
        char name[32], url[64], label[64];
        memset(&sec, 0, sizeof(sec));
        snprintf(name, sizeof(name), "%s", s < 4 ? names[s] : "target");
        if (s >= 4)
            snprintf(name, sizeof(name), "target%u", s);
        snprintf(url, sizeof(url), "http://127.0.0.1:%u", 8080 + s);
        snprintf(label, sizeof(label), "synthetic %s", name);
        sec.id = s;
        sec.name = name;
        sec.url = url;
        sec.label = label;
        sec.speed = 1.0;
        sec.timeout_ns = 30000000000LL;
        rc = h2r_run_write_section(w, &sec);
        uint64_t rng = o->seed * 7919 + s + 1, errors = 0;
        double factor = pow(o->slowdown, (double)s);
        int64_t t_end = 0, step = (int64_t)(1e9 / o->rate);
        uint64_t first = (uint64_t)o->shard_index, stride = o->shard_count ? o->shard_count : 1;
        for (uint64_t i = first; i < o->n && !rc; i += stride) {
            struct h2r_run_result r;
            char path[128];
            memset(&r, 0, sizeof(r));
            double pick = rng_unit(&rng), acc = 0;
            size_t e = 0;
            for (; e + 1 < N_ENDPOINTS; e++) {
                acc += endpoints[e].weight;
                if (pick < acc)
                    break;
            }
            unsigned long long id = rng_next(&rng) % 100000;
            snprintf(path, sizeof(path), endpoints[e].fmt, id, id * 2654435761ull);
            double lat_ms =
                o->median_ms * endpoints[e].lat_factor * factor * exp(0.5 * rng_normal(&rng));
            int64_t t = (int64_t)i * step;
            double sec_t = (double)t / 1e9;
            int failing = o->fail_at >= 0 && s + 1 == o->sections && sec_t >= o->fail_at &&
                          (o->recover_at < 0 || sec_t < o->recover_at) &&
                          rng_unit(&rng) < o->fail_rate;
            r.section = s;
            r.exchange_id = i;
            r.trace_conn = i % 64;
            r.conn_index = (uint32_t)(i % 64);
            r.stream_id = (uint32_t)(1 + 2 * (i / 64));
            r.method = endpoints[e].method;
            r.path = path;
            r.authority = "example.com";
            r.t_intended_ns = t;
            r.t_sent_ns = t + 20000;
            r.t_first_byte_ns = t + (int64_t)(lat_ms * 0.8e6);
            r.t_done_ns = t + (int64_t)(lat_ms * 1e6);
            r.status = 200;
            r.grpc_status = endpoints[e].grpc ? 0 : -1;
            r.trace_status = 200;
            r.trace_grpc_status = r.grpc_status;
            r.flags = endpoints[e].grpc ? H2R_RES_F_GRPC : 0;
            r.resp_bytes = 512;
            if (failing) {
                int deadline = rng_unit(&rng) < 0.5;
                r.err_class = deadline ? H2R_EC_DEADLINE : H2R_EC_STREAM_RESET;
                r.err_detail = deadline ? NULL : "REFUSED_STREAM";
                r.status = deadline ? -1 : r.status;
                r.t_done_ns = deadline ? t + 30000000000LL : t + 1000000;
                errors++;
            }
            if (r.t_done_ns > t_end)
                t_end = r.t_done_ns;
            rc = h2r_run_write_result(w, &r);
        }
        struct h2r_run_section_end end;
        memset(&end, 0, sizeof(end));
        end.section = s;
        end.t_end_ns = t_end;
        end.exchanges = (o->n + stride - 1 - first) / stride;
        end.errors = errors;
        if (!rc)
            rc = h2r_run_write_section_end(w, &end);
    }
    if (rc)
        fprintf(stderr, "gen_run: %s: %s\n", o->out, h2r_run_writer_errmsg(w));
    int crc = h2r_run_writer_close(w);
    if (!rc && crc)
        fprintf(stderr, "gen_run: %s: close failed (%d)\n", o->out, crc);
    return rc || crc ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"sections", required_argument, NULL, 's'},   {"rate", required_argument, NULL, 'r'},
        {"median-ms", required_argument, NULL, 'm'},  {"slowdown", required_argument, NULL, 'd'},
        {"fail-at", required_argument, NULL, 'f'},    {"fail-rate", required_argument, NULL, 'F'},
        {"recover-at", required_argument, NULL, 'R'}, {"seed", required_argument, NULL, 'S'},
        {"shard", required_argument, NULL, 'H'},      {"sha", required_argument, NULL, 'h'},
        {"settings", required_argument, NULL, 'T'},   {NULL, 0, NULL, 0}};
    struct gen_opts o = {NULL, 100000, 2, 1000, 5, 1.0, -1, -1, 0.5, 1, 0, 1, NULL, NULL};
    int c;
    for (;;) {
        c = getopt_long(argc, argv, "o:n:", longopts, NULL);
        if (c == -1)
            break;
        switch (c) {
        case 'o':
            o.out = optarg;
            break;
        case 'n':
            o.n = strtoull(optarg, NULL, 10);
            break;
        case 's':
            o.sections = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            o.rate = strtod(optarg, NULL);
            break;
        case 'm':
            o.median_ms = strtod(optarg, NULL);
            break;
        case 'd':
            o.slowdown = strtod(optarg, NULL);
            break;
        case 'f':
            o.fail_at = strtod(optarg, NULL);
            break;
        case 'F':
            o.fail_rate = strtod(optarg, NULL);
            break;
        case 'R':
            o.recover_at = strtod(optarg, NULL);
            break;
        case 'S':
            o.seed = strtoull(optarg, NULL, 10);
            break;
        case 'H': {
            char *slash, *end = NULL;
            o.shard_index = (unsigned)strtoul(optarg, &slash, 10);
            o.shard_count = *slash == '/' ? (unsigned)strtoul(slash + 1, &end, 10) : 0;
            if (*slash != '/' || *end || o.shard_count == 0 || o.shard_index >= o.shard_count) {
                fprintf(stderr, "gen_run: --shard I/N with 0 <= I < N\n");
                return 2;
            }
            break;
        }
        case 'h':
            o.sha = optarg;
            break;
        case 'T':
            o.settings = optarg;
            break;
        default:
            fprintf(stderr, "usage: see the comment at the top of tests/tools/gen_run.c\n");
            return 2;
        }
    }
    if (!o.out || o.sections == 0 || o.sections > 64 || !(o.rate > 0) || o.seed == 0) {
        fprintf(stderr, "gen_run: -o FILE is required; sections 1..64, rate > 0, seed > 0\n");
        return 2;
    }
    return generate(&o);
}
