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
 *
 * With --ts-nodes N it writes TS2021 session records instead (the shape
 * `h2replay capture` gives a Tailscale control server, docs/trace-format.md
 * "ts_session"), for node-session replays: node k (1-based) upgrades at
 * (k - 1) * --ts-stagger and holds --ts-hold; --ts-reconnect R of them (every
 * N/R-th node, from node 2) close after half their hold and reconnect 1 s
 * later, held until the capture end (how capture_end); --ts-refused F more
 * sessions of an unknown node are answered 400 without a handshake (replay
 * skips them). All with --ts-capver (130). No exchanges unless --conns is given.
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

/* TS2021 session records (see the top): returns the number written, -1 on a write error. */
static long write_ts_sessions(struct h2r_trace_writer *w, long nodes, long reconnect,
                              long refused, int64_t stagger, int64_t hold, uint32_t capver)
{
    if (nodes <= 0)
        return 0;
    struct h2r_ts_session v[2048];
    long n = 0;
    int64_t end = 0;
    long every = reconnect ? nodes / reconnect : 0;
    for (long k = 1; k <= nodes && n < 2000; k++) {
        struct h2r_ts_session *t = &v[n++];
        memset(t, 0, sizeof(*t));
        t->node = (uint64_t)k;
        t->capver = capver;
        t->status = 101;
        t->how = H2R_TS_END_FIN;
        t->t_upgrade_ns = T0 + (k - 1) * stagger;
        t->t_handshake_ns = t->t_upgrade_ns + 2000000;
        t->t_end_ns = t->t_upgrade_ns + hold;
        if (every && (k - 2) % every == 0 && (k - 2) / every < reconnect && k >= 2) {
            t->t_end_ns = t->t_upgrade_ns + hold / 2;
            struct h2r_ts_session *r = &v[n++];
            *r = *t;
            r->t_upgrade_ns = t->t_end_ns + 1000000000LL;
            r->t_handshake_ns = r->t_upgrade_ns + 2000000;
            r->t_end_ns = 0; /* the capture end, below */
        }
        if (t->t_end_ns > end)
            end = t->t_end_ns;
    }
    for (long i = 0; i < refused && n < 2048; i++) {
        struct h2r_ts_session *t = &v[n++];
        memset(t, 0, sizeof(*t));
        t->capver = capver;
        t->status = 400;
        t->how = H2R_TS_END_REFUSED;
        t->t_upgrade_ns = T0 + (2 * i + 1) * stagger / 2;
        t->t_end_ns = t->t_upgrade_ns + 1000000;
    }
    for (long i = 0; i < n; i++)
        if (v[i].t_upgrade_ns + 1000000000LL > end)
            end = v[i].t_upgrade_ns + 1000000000LL;
    for (long i = 0; i < n; i++) {
        if (v[i].t_end_ns == 0) {
            v[i].t_end_ns = end;
            v[i].how = H2R_TS_END_CAPTURE_END;
        }
    }
    /* ids ascend with t_upgrade_ns, as capture numbers them */
    for (long i = 0; i < n; i++) {
        long best = i;
        for (long j = i + 1; j < n; j++)
            if (v[j].t_upgrade_ns < v[best].t_upgrade_ns)
                best = j;
        struct h2r_ts_session tmp = v[i];
        v[i] = v[best];
        v[best] = tmp;
        v[i].id = (uint64_t)i + 1;
        v[i].conn_id = 100000 + (uint64_t)i;
    }
    for (long i = 0; i < n; i++) {
        struct h2r_conn c;
        memset(&c, 0, sizeof(c));
        c.id = v[i].conn_id;
        c.client = "127.0.0.1:41000";
        c.server = "127.0.0.1:8080";
        c.transport = H2R_TRANSPORT_TS2021;
        c.t_open_ns = v[i].t_upgrade_ns - 1000000;
        if (h2r_trace_write_conn(w, &c) || h2r_trace_write_ts_session(w, &v[i]))
            return -1;
    }
    return n;
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
                    "        [--placeholder]\n"
                    "       rp_mktrace -o TRACE --ts-nodes N [--ts-reconnect R] [--ts-refused F]\n"
                    "        [--ts-stagger DUR] [--ts-hold DUR] [--ts-capver C] [--conns N ...]\n");
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
                                         {"ts-nodes", required_argument, NULL, 'n'},
                                         {"ts-reconnect", required_argument, NULL, 'r'},
                                         {"ts-refused", required_argument, NULL, 'f'},
                                         {"ts-stagger", required_argument, NULL, 'G'},
                                         {"ts-hold", required_argument, NULL, 'L'},
                                         {"ts-capver", required_argument, NULL, 'c'},
                                         {NULL, 0, NULL, 0}};
    const char *out = NULL, *paths = "/small.txt", *method = "GET";
    long conns = 1, per_conn = 10, conc = 1, body = 0, status = 200;
    int64_t interval = 10000000, stagger = 0, service = 1000000, hold = 0;
    int placeholder = 0, conns_given = 0;
    long ts_nodes = 0, ts_reconnect = 0, ts_refused = 0, ts_capver = 130;
    int64_t ts_stagger = 500000000, ts_hold = 10000000000LL;
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
            conns_given = 1;
            break;
        case 'n':
            ts_nodes = num(optarg);
            break;
        case 'r':
            ts_reconnect = num(optarg);
            break;
        case 'f':
            ts_refused = num(optarg);
            break;
        case 'c':
            ts_capver = num(optarg);
            break;
        case 'G':
            bad = h2r_parse_duration(optarg, &ts_stagger);
            break;
        case 'L':
            bad = h2r_parse_duration(optarg, &ts_hold);
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
    if (ts_nodes > 0 && !conns_given)
        conns = 0;
    if (!out || conns < 0 || (conns < 1 && ts_nodes < 1) || per_conn < 1 || conc < 1 ||
        body < 0 || status < 0 || ts_nodes < 0 || ts_reconnect < 0 || ts_reconnect > ts_nodes ||
        ts_refused < 0 || ts_capver < 0 || ts_capver > 65535) {
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
    long ts_written = write_ts_sessions(w, ts_nodes, ts_reconnect, ts_refused, ts_stagger,
                                        ts_hold, (uint32_t)ts_capver);
    if (ts_written < 0) {
        fprintf(stderr, "rp_mktrace: %s\n", h2r_trace_writer_errmsg(w));
        return 1;
    }
    int rc = h2r_trace_writer_close(w);
    free(plist);
    free(bodybuf);
    if (rc) {
        fprintf(stderr, "rp_mktrace: closing %s failed\n", out);
        return 1;
    }
    fprintf(stderr, "rp_mktrace: %lu exchanges on %ld connections, %ld TS2021 sessions -> %s\n",
            (unsigned long)(id - 1), conns, ts_written, out);
    return 0;
}
