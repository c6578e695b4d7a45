/*
 * rp_mktrace: writes a synthetic trace with the trace writer API, for replay
 * tests and benchmarks that need shapes real captures do not give cheaply
 * (10,000 connections, an exact 20,000 req/s schedule, long think times).
 *
 * Connection c (0-based) opens at c * stagger; its exchanges come in groups
 * of --concurrent streams started together, group g at c * stagger + g *
 * interval, each answered --service later. A service time shorter than the
 * interval makes each group causally follow the previous one (the replay
 * then waits for it); a longer one makes the groups overlap.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/trace.h"
#include "h2replay/units.h"

#define T0 1700000000000000000LL

static struct h2r_hdr mk(const char *n, const char *v)
{
    struct h2r_hdr h;
    h.name = (const uint8_t *)n;
    h.name_len = (uint32_t)strlen(n);
    h.value = (const uint8_t *)v;
    h.value_len = (uint32_t)strlen(v);
    return h;
}

/* A non-negative integer flag value, -1 when malformed. */
static long num(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return end == s || *end || v < 0 ? -1 : v;
}

static void usage(void)
{
    fprintf(stderr, "usage: rp_mktrace -o TRACE [--conns N] [--per-conn M] [--concurrent K]\n"
                    "        [--interval DUR] [--stagger DUR] [--service DUR] [--hold DUR]\n"
                    "        [--paths /a,/b] [--method M] [--body BYTES] [--status S]\n"
                    "        [--placeholder]\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"conns", required_argument, NULL, 'C'},
                                         {"per-conn", required_argument, NULL, 'M'},
                                         {"concurrent", required_argument, NULL, 'K'},
                                         {"interval", required_argument, NULL, 'i'},
                                         {"stagger", required_argument, NULL, 'g'},
                                         {"service", required_argument, NULL, 'v'},
                                         {"hold", required_argument, NULL, 'H'},
                                         {"paths", required_argument, NULL, 'P'},
                                         {"method", required_argument, NULL, 'm'},
                                         {"body", required_argument, NULL, 'b'},
                                         {"status", required_argument, NULL, 's'},
                                         {"placeholder", no_argument, NULL, 'X'},
                                         {NULL, 0, NULL, 0}};
    const char *out = NULL, *paths = "/small.txt", *method = "GET";
    long conns = 1, per_conn = 10, conc = 1, body = 0, status = 200;
    int64_t interval = 10000000, stagger = 0, service = 1000000, hold = 0;
    int placeholder = 0;
    for (;;) {
        int o = getopt_long(argc, argv, "o:", opts, NULL);
        if (o == -1)
            break;
        int bad = 0;
        switch (o) {
        case 'o':
            out = optarg;
            break;
        case 'C':
            conns = num(optarg);
            break;
        case 'M':
            per_conn = num(optarg);
            break;
        case 'K':
            conc = num(optarg);
            break;
        case 'i':
            bad = h2r_parse_duration(optarg, &interval);
            break;
        case 'g':
            bad = h2r_parse_duration(optarg, &stagger);
            break;
        case 'v':
            bad = h2r_parse_duration(optarg, &service);
            break;
        case 'H':
            bad = h2r_parse_duration(optarg, &hold);
            break;
        case 'P':
            paths = optarg;
            break;
        case 'm':
            method = optarg;
            break;
        case 'b':
            body = num(optarg);
            break;
        case 's':
            status = num(optarg);
            break;
        case 'X':
            placeholder = 1;
            break;
        default:
            usage();
            return 2;
        }
        if (bad) {
            usage();
            return 2;
        }
    }
    if (!out || conns < 1 || per_conn < 1 || conc < 1 || body < 0 || status < 0) {
        usage();
        return 2;
    }
    char *plist = strdup(paths);
    char *pv[64];
    int np = 0;
    for (char *tok = strtok(plist, ","); tok && np < 64; tok = strtok(NULL, ","))
        pv[np++] = tok;
    uint8_t *bodybuf = body ? calloc(1, (size_t)body) : NULL;
    if (body)
        memset(bodybuf, 'x', (size_t)body);

    struct h2r_trace_header th;
    memset(&th, 0, sizeof(th));
    th.tool_version = "rp_mktrace";
    th.source = "synthetic";
    th.start_ns = T0;
    th.linktype = -1;
    struct h2r_trace_writer *w;
    char err[256];
    if (h2r_trace_writer_open(&w, out, &th, NULL, err, sizeof(err))) {
        fprintf(stderr, "rp_mktrace: %s\n", err);
        return 1;
    }
    uint64_t id = 1;
    char clen[24];
    snprintf(clen, sizeof(clen), "%ld", body);
    for (long c = 0; c < conns; c++) {
        struct h2r_conn cr;
        memset(&cr, 0, sizeof(cr));
        cr.id = (uint64_t)c + 1;
        cr.client = "127.0.0.1:40000";
        cr.server = "127.0.0.1:80";
        cr.transport = H2R_TRANSPORT_H2C_PRIOR;
        cr.t_open_ns = T0 + c * stagger - 1000000;
        h2r_trace_write_conn(w, &cr);
    }
    /* exchange ids ascend with request start, like a real capture */
    long groups = (per_conn + conc - 1) / conc;
    int64_t last_end = 0;
    for (long g = 0; g < groups; g++) {
        for (long c = 0; c < conns; c++) {
            for (long k = g * conc; k < per_conn && k < (g + 1) * conc; k++) {
                struct h2r_hdr h[6];
                int n = 0;
                h[n++] = mk(":method", method);
                h[n++] = mk(":scheme", "http");
                h[n++] = mk(":authority", "capture.example");
                h[n++] = mk(":path", pv[(size_t)k % (size_t)np]);
                if (body)
                    h[n++] = mk("content-length", clen);
                if (placeholder)
                    h[n++] = mk("authorization", "Bearer $H2R{token_1}");
                struct h2r_exchange x;
                memset(&x, 0, sizeof(x));
                x.id = id++;
                x.conn_id = (uint64_t)c + 1;
                x.stream_id = (uint32_t)(2 * k + 1);
                x.req_hdrs = h;
                x.n_req_hdrs = (size_t)n;
                x.req_body = bodybuf;
                x.req_body_stored = (size_t)body;
                x.req_body_len = (uint64_t)body;
                x.status = (int32_t)status;
                x.grpc_status = -1;
                x.rst_code = -1;
                x.goaway_code = -1;
                x.t_req_first_ns = T0 + c * stagger + g * interval;
                x.t_req_end_ns = x.t_req_first_ns;
                x.t_resp_hdrs_ns = x.t_req_first_ns + service;
                x.t_resp_end_ns = x.t_req_first_ns + service;
                if (x.t_resp_end_ns > last_end)
                    last_end = x.t_resp_end_ns;
                if (h2r_trace_write_exchange(w, &x)) {
                    fprintf(stderr, "rp_mktrace: %s\n", h2r_trace_writer_errmsg(w));
                    return 1;
                }
            }
        }
    }
    for (long c = 0; c < conns; c++) {
        struct h2r_conn_end e;
        memset(&e, 0, sizeof(e));
        e.id = (uint64_t)c + 1;
        e.t_close_ns = last_end + hold;
        e.how = H2R_CONN_END_FIN;
        e.goaway_code = -1;
        e.exchanges = (uint64_t)per_conn;
        h2r_trace_write_conn_end(w, &e);
    }
    int rc = h2r_trace_writer_close(w);
    free(plist);
    free(bodybuf);
    if (rc) {
        fprintf(stderr, "rp_mktrace: closing %s failed\n", out);
        return 1;
    }
    fprintf(stderr, "rp_mktrace: %lu exchanges on %ld connections -> %s\n", (unsigned long)(id - 1),
            conns, out);
    return 0;
}
