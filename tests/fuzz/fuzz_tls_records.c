/*
 * Fuzz target for the TLS layer: record reassembly, handshake message
 * reassembly and parsing, key installation, AEAD decryption, KeyUpdate and
 * the queue of held records, alone (cap_tls) or under the session layer
 * (transport detection, then HTTP/2 on the plaintext).
 *
 * A fixed in-memory key log holds secrets for the client randoms the corpus
 * generator uses (tests/unit/capture/tls_build.h: seeds 0-3 with SHA-256
 * length secrets, 4-7 with SHA-384 ones), so inputs derived from the
 * committed corpus get past the key lookup and into decryption.
 *
 * Input format (tests/fuzz/gen/gen_tls_corpus.c writes it):
 *   byte 0   options: bit0 through the session layer, bit1 live key log (a miss
 *            is "pending" until the end), bit2 do not finish (connection left open)
 *   then     chunks: ctl byte (bit7 direction: 0 client->server, 1 server->client;
 *            bits0-6 length 1..127, 0 = the rest of the input) + bytes
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cap_keylog.h"
#include "cap_session.h"
#include "cap_tls.h"
#include "unit/capture/tls_build.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cap_keylog *keylog;
static int live;
static volatile uint64_t sink_sum;

static void touch(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += b[i];
    sink_sum += s;
}

static struct cap_keylog *fixed_keylog(void)
{
    if (!keylog) {
        struct tbuf kt = {0};
        keylog = cap_keylog_new();
        if (!keylog)
            abort();
        for (uint8_t seed = 0; seed < 8; seed++) {
            uint8_t r[32];
            tlb_client_random(r, seed);
            tlb_keylog(&kt, r, seed < 4 ? 32 : 48);
        }
        if (cap_keylog_feed(keylog, kt.p, kt.len) != 0)
            abort();
        tb_free(&kt);
    }
    return keylog;
}

static int fz_secret(void *ud, const uint8_t cr[32], enum cap_keylog_label label,
                     uint8_t secret[CAP_KEYLOG_MAX_SECRET], size_t *len, int final)
{
    (void)ud;
    if (cap_keylog_lookup(fixed_keylog(), cr, label, secret, len, final) == CAP_KEYLOG_FOUND)
        return CAP_TLS_KEY_FOUND;
    return live && !final ? CAP_TLS_KEY_PENDING : CAP_TLS_KEY_MISSING;
}

static int fz_plain(void *ud, int dir, const uint8_t *p, size_t n, int64_t ts)
{
    (void)ud;
    (void)dir;
    (void)ts;
    touch(p, n);
    return 0;
}

static int fz_alpn(void *ud, const char *proto)
{
    (void)ud;
    touch(proto, strlen(proto));
    return 0;
}

static int fz_fail(void *ud, const char *reason)
{
    (void)ud;
    touch(reason, strlen(reason));
    return 0;
}

static int fz_conn(void *ud, const struct h2r_conn *c)
{
    (void)ud;
    if (c->alpn)
        touch(c->alpn, strlen(c->alpn));
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
    touch(x->req_body, x->req_body_stored);
    touch(x->resp_body, x->resp_body_stored);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct cap_tls_callbacks cb = {fz_secret, fz_plain, fz_alpn, fz_fail};
    struct cap_session_stats st;
    struct cap_session_env env;
    struct cap_tls *t = NULL;
    struct cap_session *s = NULL;
    uint8_t opt;
    size_t i = 1;
    int64_t ts = 1;

    if (size < 1)
        return 0;
    opt = data[0];
    live = (opt & 2) != 0;
    memset(&st, 0, sizeof(st));
    memset(&env, 0, sizeof(env));
    if (opt & 1) {
        struct cap_session_sink sink = {fz_conn, fz_conn_end, fz_exchange, NULL, NULL};
        struct cap_flow_info info;
        env.stats = &st;
        env.keylog = fixed_keylog();
        env.max_req_body = 4096;
        env.max_resp_body = 4096;
        env.next_exchange_id = 1;
        memset(&info, 0, sizeof(info));
        info.conn_id = 1;
        s = cap_session_new_with_sink(&env, &info, &sink);
        if (!s)
            return 0;
    } else {
        t = cap_tls_new(&cb, NULL, &st.tls);
        if (!t)
            return 0;
    }
    while (i < size) {
        int dir = data[i] >> 7;
        size_t n = data[i] & 0x7f;
        int rc;
        i++;
        if (n == 0 || n > size - i)
            n = size - i;
        rc = s ? cap_session_feed(s, dir, data + i, n, ts) : cap_tls_feed(t, dir, data + i, n, ts);
        if (rc != 0)
            break;
        i += n;
        ts += 1000;
    }
    if (!(opt & 4)) {
        if (s)
            cap_session_close(s, H2R_CONN_END_FIN, ts, 0, 0, 0);
        else
            cap_tls_finish(t);
    }
    cap_session_free(s);
    cap_tls_free(t);
    return 0;
}
