/*
 * Fuzz target for TS2021 recognition: the session layer's detection of the
 * "POST /ts2021" upgrade and "GET /key", the answer head, then cap_ts.c
 * following controlbase frames in both directions (core/ts ts_frame_parser),
 * identification with a fixed noise key, gaps and the close.
 *
 * The fixed control key is bytes 0x40..0x5f, the key of the TS2021 vector in
 * docs/ts2021.md, so the vector's X-Tailscale-Handshake identifies.
 *
 * Input format (tests/fuzz/gen/gen_cap_ts_corpus.py writes it):
 *   byte 0   options: bit0 noise key given, bit1 close as capture end (else FIN),
 *            bit2 a gap after the third chunk, bit3 prepend the vector's upgrade
 *            request (client), bit4 prepend a 101 head (server)
 *   then     chunks: ctl byte (bit7 direction: 0 client->server, 1 server->client;
 *            bits0-6 length 1..127, 0 = the rest of the input) + bytes
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cap_session.h"
#include "cap_ts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink_sum;

static const char vector_request[] =
    "POST /ts2021 HTTP/1.1\r\nHost: h\r\nUpgrade: tailscale-control-protocol\r\n"
    "Connection: upgrade\r\nX-Tailscale-Handshake: "
    "AIIBAGA1gHLWNliA0a7qMprfkSE4OFHtIaKOO3XpZdDSzRZiVK1bj+vt65dBW+U2EiBea/qzheNMsSfdiFTE+a+"
    "xD5sOSZRRcdgOUrYrHMd5TskgQtc4DboePJb94Jn59BWOCOo=\r\nContent-Length: 0\r\n\r\n";
static const char head_101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: tailscale-control-protocol\r\nConnection: upgrade\r\n\r\n";

static int fz_conn(void *ud, const struct h2r_conn *c)
{
    (void)ud;
    sink_sum += c->transport;
    return 0;
}

static int fz_conn_end(void *ud, const struct h2r_conn_end *e)
{
    (void)ud;
    sink_sum += e->how + (e->reason ? strlen(e->reason) : 0);
    return 0;
}

static int fz_exchange(void *ud, const struct h2r_exchange *x)
{
    (void)ud;
    sink_sum += x->stream_id;
    return 0;
}

/* The record's invariants: what the trace writer and replay rely on. */
static int fz_ts(void *ud, const struct h2r_ts_session *t)
{
    (void)ud;
    if (t->n_recs > H2R_TS_MAX_RECS || t->n_recs + t->recs_dropped > t->frames_c2s + t->frames_s2c)
        abort();
    if ((t->flags & H2R_TS_F_IDENTIFIED) && t->node == 0)
        abort();
    for (size_t i = 0; i < t->n_recs; i++) {
        if (t->recs[i].len < 3 || t->recs[i].dir > 1 || t->recs[i].t_ns < 0)
            abort();
        sink_sum += t->recs[i].len;
    }
    if (t->reason)
        sink_sum += strlen(t->reason);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cap_ts_nodes *nodes;
    struct cap_session_stats st;
    struct cap_session_env env;
    struct cap_flow_info info;
    struct cap_session_sink sink = {fz_conn, fz_conn_end, fz_exchange, NULL, fz_ts};
    struct cap_session *s;
    uint8_t key[32], opt;
    size_t off = 1;
    int64_t ts = 1000;
    int chunk = 0;

    if (size < 1)
        return 0;
    opt = data[0];
    if (!nodes) {
        nodes = cap_ts_nodes_new(7); /* shared across inputs, as across a capture's sessions */
        if (!nodes)
            abort();
    }
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(0x40 + i);
    memset(&st, 0, sizeof(st));
    memset(&env, 0, sizeof(env));
    env.stats = &st;
    env.max_req_body = 1024;
    env.max_resp_body = 1024;
    if (opt & 1) {
        env.noise_key = key;
        env.ts_nodes = nodes;
    }
    memset(&info, 0, sizeof(info));
    info.conn_id = 1;
    s = cap_session_new_with_sink(&env, &info, &sink);
    if (!s)
        return 0;
    if (opt & 8)
        (void)cap_session_feed(s, 0, (const uint8_t *)vector_request, strlen(vector_request), ts);
    if (opt & 16)
        (void)cap_session_feed(s, 1, (const uint8_t *)head_101, strlen(head_101), ts);
    while (off < size) {
        uint8_t ctl = data[off++];
        size_t n = ctl & 0x7f;
        if (n == 0 || n > size - off)
            n = size - off;
        ts += 10;
        if (cap_session_feed(s, ctl >> 7, data + off, n, ts) < 0 && env.write_error)
            break;
        off += n;
        if (++chunk == 3 && (opt & 4))
            cap_session_gap(s, ctl >> 7, 100, ts);
    }
    (void)cap_session_close(s, (opt & 2) ? H2R_CONN_END_CAPTURE_END : H2R_CONN_END_FIN, ts + 1, 0,
                            0, 0);
    cap_session_free(s);
    return 0;
}
