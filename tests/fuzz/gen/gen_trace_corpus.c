/*
 * Writes the seed corpus for fuzz_trace_reader: small valid traces (every
 * record kind, several frames), plus damaged variants. Run:
 *   build/tests/fuzz/gen_trace_corpus tests/fuzz/corpus/trace_reader
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/trace.h"

static int write_trace(const char *path, unsigned n, uint64_t frame_bytes)
{
    struct h2r_trace_header h = {0};
    h.tool_version = "corpus";
    h.source = "file:corpus.pcap";
    h.start_ns = 1;
    h.linktype = 1;
    struct h2r_trace_writer_opts o = {1, frame_bytes};
    struct h2r_trace_writer *w;
    char err[256];
    if (h2r_trace_writer_open(&w, path, &h, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct h2r_conn c = {1, "127.0.0.1:1", "127.0.0.1:2", H2R_TRANSPORT_H2C_PRIOR, 0, 1, "h2"};
    h2r_trace_write_conn(w, &c);
    static const struct h2r_hdr req[] = {{(const uint8_t *)":method", (const uint8_t *)"GET", 7, 3},
                                         {(const uint8_t *)":path", (const uint8_t *)"/a", 5, 2}};
    static const struct h2r_hdr resp[] = {{(const uint8_t *)":status", (const uint8_t *)"200", 7, 3}};
    for (unsigned i = 0; i < n; i++) {
        struct h2r_exchange x;
        memset(&x, 0, sizeof(x));
        x.id = i;
        x.conn_id = 1;
        x.stream_id = 2 * i + 1;
        x.req_hdrs = req;
        x.n_req_hdrs = 2;
        x.resp_hdrs = resp;
        x.n_resp_hdrs = 1;
        x.resp_body = (const uint8_t *)"hello";
        x.resp_body_stored = 5;
        x.resp_body_len = 5;
        x.status = 200;
        x.grpc_status = -1;
        x.rst_code = -1;
        x.goaway_code = -1;
        x.error = i % 2 ? "conn_closed" : NULL;
        h2r_trace_write_exchange(w, &x);
    }
    struct h2r_conn_end e = {1, 2, H2R_CONN_END_FIN, 0, -1, 1, 2, 0, n, NULL};
    h2r_trace_write_conn_end(w, &e);
    struct h2r_counter ctr[] = {{"tcp.retransmit", 1}};
    struct h2r_capture_summary s = {1, 2, 1, n, 0, 0, 3, ctr, 1};
    h2r_trace_write_summary(w, &s);
    return h2r_trace_writer_close(w) != 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    char p[1024];
    int rc = 0;
    snprintf(p, sizeof(p), "%s/one.h2rt", argv[1]);
    rc |= write_trace(p, 1, 0);
    snprintf(p, sizeof(p), "%s/frames.h2rt", argv[1]);
    rc |= write_trace(p, 40, 256);
    snprintf(p, sizeof(p), "%s/empty.h2rt", argv[1]);
    rc |= write_trace(p, 0, 0);
    return rc;
}
