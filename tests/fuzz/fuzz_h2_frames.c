/*
 * Fuzz target for the session layer: transport detection, the passive
 * HTTP/2 decoder, exchange assembly and redaction, writing to a memory sink.
 *
 * Input format (tests/fuzz/gen/gen_h2_corpus.c writes it):
 *   byte 0   options: bit0 partial flow, bit1 redaction on, bit2 do not prepend the
 *            client preface (exercises detection and h2c upgrade), bit3 tiny body caps,
 *            bits4-5 how the connection ends
 *   then     chunks: ctl byte (bit7 direction: 0 client->server, 1 server->client;
 *            bits0-6 length 1..127, 0 = a one-byte gap in that direction) + bytes
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cap_redact.h"
#include "cap_session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* Reads every byte of the records so sanitizers see stale or short pointers. */
static volatile uint64_t sink_sum;

static void touch(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += b[i];
    sink_sum += s;
}

static void touch_hdrs(const struct h2r_hdr *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        touch(h[i].name, h[i].name_len);
        touch(h[i].value, h[i].value_len);
    }
}

static int fz_conn(void *ud, const struct h2r_conn *c)
{
    (void)ud;
    touch(c->client, strlen(c->client));
    touch(c->server, strlen(c->server));
    return 0;
}

static int fz_conn_end(void *ud, const struct h2r_conn_end *e)
{
    (void)ud;
    if (e->reason)
        touch(e->reason, strlen(e->reason));
    return 0;
}

static int fz_exchange(void *ud, const struct h2r_exchange *x)
{
    (void)ud;
    touch_hdrs(x->req_hdrs, x->n_req_hdrs);
    touch_hdrs(x->resp_hdrs, x->n_resp_hdrs);
    touch_hdrs(x->trailers, x->n_trailers);
    touch(x->req_body, x->req_body_stored);
    touch(x->resp_body, x->resp_body_stored);
    if (x->error)
        touch(x->error, strlen(x->error));
    if (x->req_body_stored > x->req_body_len || x->resp_body_stored > x->resp_body_len) {
        /* stored bytes never exceed the wire length unless redaction rewrote them */
        if (!(x->flags & H2R_EXCH_F_REDACTED))
            abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t hows[4] = {H2R_CONN_END_FIN, H2R_CONN_END_RST, H2R_CONN_END_CAPTURE_END,
                                     H2R_CONN_END_UNKNOWN};
    struct cap_session_stats st;
    struct cap_session_env env;
    struct cap_flow_info info;
    struct cap_session_sink sink = {fz_conn, fz_conn_end, fz_exchange, NULL, NULL};
    struct cap_session *s;
    uint8_t opt;
    size_t off = 1;
    int64_t ts = 1000;

    if (size < 1)
        return 0;
    opt = data[0];
    memset(&st, 0, sizeof(st));
    memset(&env, 0, sizeof(env));
    memset(&info, 0, sizeof(info));
    env.stats = &st;
    env.max_req_body = (opt & 0x08) ? 7 : 65536;
    env.max_resp_body = (opt & 0x08) ? 5 : 65536;
    env.next_exchange_id = 1;
    if (opt & 0x02)
        env.redactor = cap_redactor_new(NULL, NULL);
    info.conn_id = 1;
    strcpy(info.client, "10.0.0.1:40000");
    strcpy(info.server, "10.0.0.2:80");
    info.partial = opt & 0x01;
    s = cap_session_new_with_sink(&env, &info, &sink);
    if (!s)
        goto out;
    if (!(opt & 0x04) && cap_session_feed(s, 0, preface, sizeof(preface) - 1, ts) != 0)
        goto out;
    while (off < size) {
        uint8_t ctl = data[off++];
        int dir = ctl >> 7;
        size_t n = ctl & 0x7f;
        ts += 7;
        if (n == 0) {
            cap_session_gap(s, dir, 1, ts);
            continue;
        }
        if (n > size - off)
            n = size - off;
        if (cap_session_feed(s, dir, data + off, n, ts) != 0)
            break;
        off += n;
    }
    cap_session_close(s, hows[(opt >> 4) & 3], ts + 1, 0, 0, 0);
out:
    cap_session_free(s);
    cap_redactor_free(env.redactor);
    return 0;
}
