/*
 * libFuzzer target for the HTTP/1.1 side of TS2021 (core/ts/ts_upgrade.c)
 * and what a capture does with the cleartext upgrade request.
 *
 * Input layout:
 *   byte 0   bits 0-1: 0 upgrade-response parser (TS_HTTP_UPGRADE),
 *                      1 full-response parser (TS_HTTP_FULL, body -> /key JSON),
 *                      2 the rest is an X-Tailscale-Handshake value: base64-decode
 *                        it and, when it is 101 bytes, identify the client with
 *                        the test vectors' control key,
 *                      3 the rest is a /key body for ts_key_response_parse()
 *            bits 2-7: feed chunk size - 1 (1..64 bytes)
 * Checked: consumed never exceeds what was fed, the head boundary is only
 * reported once, nothing is consumed after completion, errors are sticky.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ts2021.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run_http(const uint8_t *data, size_t size, size_t chunk, int mode)
{
    struct ts_http_resp *r = NULL;
    size_t off = 0;
    int rc = 0, done = 0;

    if (ts_http_resp_new(&r, mode, 4096) != 0)
        abort();
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk, used = 0;

        rc = ts_http_resp_feed(r, data + off, n, &used);
        if (used > n)
            abort();
        if (rc != 0)
            break;
        if (done && used != 0)
            abort(); /* nothing after the boundary belongs to the response */
        if (!ts_http_resp_done(r) && used != n)
            abort();
        done = ts_http_resp_done(r);
        off += n;
    }
    if (rc == 0 && !done) {
        rc = ts_http_resp_eof(r);
        done = ts_http_resp_done(r);
    }
    if (rc != 0) {
        size_t used = 0;
        if (ts_http_resp_feed(r, data, size, &used) != rc || used != 0 ||
            ts_http_resp_error(r)[0] == '\0')
            abort();
    } else if (done && mode == TS_HTTP_UPGRADE && ts_http_resp_status(r) != 101) {
        abort();
    } else if (done && mode == TS_HTTP_FULL) {
        size_t blen = 0;
        const uint8_t *body = ts_http_resp_body(r, &blen);
        uint8_t key[TS_KEY_LEN];
        char err[160];

        if (blen > 4096)
            abort();
        ts_key_response_parse(body, blen, key, err, sizeof(err));
    }
    ts_http_resp_free(r);
}

static void run_identify(const uint8_t *data, size_t size)
{
    uint8_t frame[512], control[TS_KEY_LEN];
    struct ts_client_identity id;
    char err[200];
    size_t n = 0;

    if (ts_b64_decode((const char *)data, size, frame, sizeof(frame), &n) != 0)
        return;
    if (n > sizeof(frame))
        abort();
    for (unsigned i = 0; i < TS_KEY_LEN; i++)
        control[i] = (uint8_t)(0x40 + i);
    ts_init_frame_identify(control, frame, n, &id, err, sizeof(err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t key[TS_KEY_LEN];
    char err[160];
    size_t chunk;

    if (size < 1)
        return 0;
    chunk = 1 + (data[0] >> 2);
    switch (data[0] & 3) {
    case 0:
        run_http(data + 1, size - 1, chunk, TS_HTTP_UPGRADE);
        break;
    case 1:
        run_http(data + 1, size - 1, chunk, TS_HTTP_FULL);
        break;
    case 2:
        run_identify(data + 1, size - 1);
        break;
    default:
        ts_key_response_parse(data + 1, size - 1, key, err, sizeof(err));
        break;
    }
    return 0;
}
