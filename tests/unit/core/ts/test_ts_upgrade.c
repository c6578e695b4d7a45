/*
 * Unit tests for ts_upgrade: the exact "POST /ts2021" request, the 101 head
 * parser (trailing Noise bytes left untouched at every split point, interim
 * 1xx, missing Connection header, wrong or missing Upgrade value, non-101
 * answers, garbage, oversize heads, EOF), the full-response mode used for
 * /key (Content-Length, chunked, EOF-delimited, body cap) and the /key JSON.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ts2021.h"

static const char HEAD_101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: tailscale-control-protocol\r\n"
                               "Connection: upgrade\r\n"
                               "Date: Tue, 02 Jan 2024 10:00:00 GMT\r\n"
                               "\r\n";
/* What follows the head on the wire: the start of the response frame. */
static const uint8_t NOISE[] = {0x02, 0x00, 0x30, 0x67, 0x5d, 0xd5, 0x74, 0x0d, 0x0a, 0x0d, 0x0a};

/* Feeds in pieces of step bytes (0: whole). Returns the feed result; *boundary is the
 * offset of the first byte not belonging to the response once it is done. */
static int feed(struct ts_http_resp *r, const uint8_t *buf, size_t len, size_t step,
                size_t *boundary)
{
    size_t off = 0;

    *boundary = 0;
    while (off < len) {
        size_t n = step && len - off > step ? step : len - off, used = 0;
        int rc = ts_http_resp_feed(r, buf + off, n, &used);

        CHECK(used <= n);
        if (rc != 0)
            return rc;
        if (ts_http_resp_done(r)) {
            *boundary = off + used;
            return 0;
        }
        CHECK_EQ_INT(used, n); /* not done: everything belongs to the head */
        off += n;
    }
    return 0;
}

static int parse_upgrade(const char *head, size_t *boundary)
{
    struct ts_http_resp *r = NULL;
    int rc;

    CHECK_EQ_INT(ts_http_resp_new(&r, TS_HTTP_UPGRADE, 0), 0);
    rc = feed(r, (const uint8_t *)head, strlen(head), 0, boundary);
    if (rc == 0 && !ts_http_resp_done(r))
        rc = 1;
    ts_http_resp_free(r);
    return rc;
}

static void test_request(void)
{
    uint8_t frame[TS_INIT_FRAME_LEN];
    char out[512], want[512];
    size_t n = 0;

    for (size_t i = 0; i < sizeof(frame); i++)
        frame[i] = (uint8_t)i;
    CHECK_EQ_INT(ts_upgrade_request_build("hs.example.com:8080", NULL, frame, sizeof(frame), out,
                                          sizeof(out), &n),
                 0);
    snprintf(want, sizeof(want),
             "POST /ts2021 HTTP/1.1\r\n"
             "Host: hs.example.com:8080\r\n"
             "User-Agent: h2replay\r\n"
             "Content-Length: 0\r\n"
             "Connection: upgrade\r\n"
             "Upgrade: tailscale-control-protocol\r\n"
             "X-Tailscale-Handshake: %s%s\r\n"
             "\r\n",
             "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7P",
             "D0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2Q=");
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(n, strlen(want));
    CHECK_EQ_INT(
        ts_upgrade_request_build("h", "UA 1.0", frame, sizeof(frame), out, sizeof(out), &n), 0);
    CHECK(strstr(out, "\r\nUser-Agent: UA 1.0\r\n") != NULL);
    /* Injection and bad arguments. */
    CHECK_EQ_INT(
        ts_upgrade_request_build("h\r\nX: y", NULL, frame, sizeof(frame), out, sizeof(out), &n),
        H2R_ERR_ARG);
    CHECK_EQ_INT(ts_upgrade_request_build("h h", NULL, frame, sizeof(frame), out, sizeof(out), &n),
                 H2R_ERR_ARG);
    CHECK_EQ_INT(ts_upgrade_request_build("", NULL, frame, sizeof(frame), out, sizeof(out), &n),
                 H2R_ERR_ARG);
    CHECK_EQ_INT(ts_upgrade_request_build("h", "a\nb", frame, sizeof(frame), out, sizeof(out), &n),
                 H2R_ERR_ARG);
    CHECK_EQ_INT(ts_upgrade_request_build("h", NULL, frame, sizeof(frame), out, 100, &n),
                 H2R_ERR_ARG);

    CHECK_EQ_INT(ts_key_request_build("hs:8080", 130, NULL, out, sizeof(out), &n), 0);
    CHECK_EQ_STR(out, "GET /key?v=130 HTTP/1.1\r\nHost: hs:8080\r\nUser-Agent: h2replay\r\n\r\n");
    CHECK_EQ_INT(n, strlen(out));
    CHECK_EQ_INT(ts_key_request_build("hs\n", 130, NULL, out, sizeof(out), &n), H2R_ERR_ARG);
}

static void test_101_trailing(void)
{
    uint8_t buf[512];
    size_t hlen = sizeof(HEAD_101) - 1, len = hlen + sizeof(NOISE); /* without the NUL */

    memcpy(buf, HEAD_101, hlen);
    memcpy(buf + hlen, NOISE, sizeof(NOISE));
    for (size_t step = 0; step <= len; step++) {
        struct ts_http_resp *r = NULL;
        size_t boundary = 0;

        CHECK_EQ_INT(ts_http_resp_new(&r, TS_HTTP_UPGRADE, 0), 0);
        CHECK_EQ_INT(ts_http_resp_status(r), 0);
        CHECK_EQ_INT(feed(r, buf, len, step, &boundary), 0);
        CHECK_EQ_INT(ts_http_resp_done(r), 1);
        CHECK_EQ_INT(boundary, hlen);
        CHECK_EQ_INT(ts_http_resp_status(r), 101);
        CHECK_EQ_STR(ts_http_resp_error(r), "");
        /* Once done, nothing more is taken. */
        {
            size_t used = 99;
            CHECK_EQ_INT(ts_http_resp_feed(r, NOISE, sizeof(NOISE), &used), 0);
            CHECK_EQ_INT(used, 0);
        }
        ts_http_resp_free(r);
    }
}

static void test_101_variants(void)
{
    size_t b = 0;
    const char *h;

    /* No Connection header: libhttp-parser would not call it an upgrade; we do. */
    h = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: tailscale-control-protocol\r\n\r\n\x02";
    CHECK_EQ_INT(parse_upgrade(h, &b), 0);
    CHECK_EQ_INT(b, strlen(h) - 1);
    /* Header names are case-insensitive, the value is not (controlhttp client). */
    h = "HTTP/1.1 101 OK\r\nupgrade: tailscale-control-protocol\r\nconnection: Upgrade\r\n\r\n";
    CHECK_EQ_INT(parse_upgrade(h, &b), 0);
    h = "HTTP/1.1 101 OK\r\nUpgrade: Tailscale-Control-Protocol\r\nConnection: upgrade\r\n\r\n";
    CHECK_EQ_INT(parse_upgrade(h, &b), H2R_ERR_PROTO);
    h = "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
    CHECK_EQ_INT(parse_upgrade(h, &b), H2R_ERR_PROTO);
    h = "HTTP/1.1 101 OK\r\nConnection: upgrade\r\n\r\n";
    CHECK_EQ_INT(parse_upgrade(h, &b), H2R_ERR_PROTO);
    /* The first Upgrade header counts (Go's Header.Get). */
    h = "HTTP/1.1 101 OK\r\nUpgrade: tailscale-control-protocol\r\nUpgrade: x\r\n\r\n";
    CHECK_EQ_INT(parse_upgrade(h, &b), 0);
    /* A value split across feeds is reassembled: covered by test_101_trailing. An interim
     * 100 Continue is skipped. */
    h = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: tailscale-control-protocol\r\nConnection: upgrade\r\n\r\nXYZ";
    CHECK_EQ_INT(parse_upgrade(h, &b), 0);
    CHECK_EQ_INT(b, strlen(h) - 3);
}

static void test_non_101(void)
{
    struct ts_http_resp *r = NULL;
    const char *h = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                    "Content-Length: 22\r\n\r\nunknown next protocol\n";
    size_t b = 0;

    CHECK_EQ_INT(ts_http_resp_new(&r, TS_HTTP_UPGRADE, 0), 0);
    CHECK_EQ_INT(feed(r, (const uint8_t *)h, strlen(h), 0, &b), H2R_ERR_PROTO);
    CHECK_EQ_INT(ts_http_resp_status(r), 400);
    CHECK_EQ_STR(ts_http_resp_error(r), "upgrade refused: HTTP 400 Bad Request");
    CHECK_EQ_INT(ts_http_resp_done(r), 0);
    CHECK_EQ_INT(feed(r, (const uint8_t *)h, 1, 0, &b), H2R_ERR_PROTO); /* sticky */
    CHECK_EQ_INT(ts_http_resp_eof(r), H2R_ERR_PROTO);
    ts_http_resp_free(r);

    h = "HTTP/1.1 500 Internal Server Error\r\n\r\n";
    CHECK_EQ_INT(parse_upgrade(h, &b), H2R_ERR_PROTO);
    h = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    CHECK_EQ_INT(parse_upgrade(h, &b), H2R_ERR_PROTO);
    /* Not HTTP at all. */
    h = "SSH-2.0-OpenSSH_9.2\r\n";
    CHECK_EQ_INT(parse_upgrade(h, &b), H2R_ERR_PROTO);
    h = "\x16\x03\x01\x02\x00\x01";
    CHECK_EQ_INT(parse_upgrade(h, &b), H2R_ERR_PROTO);
}

static void test_limits_and_eof(void)
{
    struct ts_http_resp *r = NULL;
    char *big = malloc(20000);
    size_t b = 0, n;

    if (!big)
        abort();
    n = (size_t)snprintf(big, 100, "HTTP/1.1 101 Switching Protocols\r\nX-Pad: ");
    memset(big + n, 'a', 17000);
    n += 17000;
    CHECK_EQ_INT(ts_http_resp_new(&r, TS_HTTP_UPGRADE, 0), 0);
    CHECK_EQ_INT(feed(r, (const uint8_t *)big, n, 1000, &b), H2R_ERR_LIMIT);
    ts_http_resp_free(r);
    CHECK_EQ_INT(ts_http_resp_new(&r, TS_HTTP_UPGRADE, 0), 0);
    CHECK_EQ_INT(feed(r, (const uint8_t *)big, n, 0, &b), H2R_ERR_LIMIT);
    ts_http_resp_free(r);
    free(big);

    /* EOF inside the head. */
    CHECK_EQ_INT(ts_http_resp_new(&r, TS_HTTP_UPGRADE, 0), 0);
    CHECK_EQ_INT(feed(r, (const uint8_t *)HEAD_101, 20, 0, &b), 0);
    CHECK_EQ_INT(ts_http_resp_eof(r), H2R_ERR_TRUNCATED);
    CHECK(strstr(ts_http_resp_error(r), "before the response head") != NULL);
    ts_http_resp_free(r);
    CHECK_EQ_INT(ts_http_resp_new(&r, TS_HTTP_UPGRADE, 0), 0);
    CHECK_EQ_INT(ts_http_resp_eof(r), H2R_ERR_TRUNCATED);
    ts_http_resp_free(r);
    ts_http_resp_free(NULL);
}

static void test_full_mode(void)
{
    static const char body[] = "{\"legacyPublicKey\":\"mkey:000000000000000000000000000000000000000"
                               "0000000000000000000000000\",\"publicKey\":\"mkey:79a631eede1bf9c98"
                               "f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a\"}\n";
    char resp[1024];
    struct ts_http_resp *r = NULL;
    const uint8_t *got;
    size_t b = 0, glen = 0, n;
    uint8_t key[32];
    char err[160];

    n = (size_t)snprintf(resp, sizeof(resp),
                         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\n\r\n%sNEXT",
                         strlen(body), body);
    for (size_t step = 0; step < 40; step += 13) {
        CHECK_EQ_INT(ts_http_resp_new(&r, TS_HTTP_FULL, 0), 0);
        CHECK_EQ_INT(feed(r, (const uint8_t *)resp, n, step, &b), 0);
        CHECK_EQ_INT(ts_http_resp_done(r), 1);
        CHECK_EQ_INT(b, n - 4);
        got = ts_http_resp_body(r, &glen);
        CHECK_EQ_MEM(got, glen, body, strlen(body));
        CHECK_EQ_INT(ts_key_response_parse(got, glen, key, err, sizeof(err)), 0);
        CHECK_EQ_INT(key[0], 0x79);
        CHECK_EQ_INT(key[31], 0x1a);
        ts_http_resp_free(r);
    }
    /* Chunked. */
    n = (size_t)snprintf(resp, sizeof(resp),
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    CHECK_EQ_INT(ts_http_resp_new(&r, TS_HTTP_FULL, 0), 0);
    CHECK_EQ_INT(feed(r, (const uint8_t *)resp, n, 3, &b), 0);
    got = ts_http_resp_body(r, &glen);
    CHECK_EQ_MEM(got, glen, "hello world", 11);
    ts_http_resp_free(r);
    /* Delimited by EOF. */
    n = (size_t)snprintf(resp, sizeof(resp), "HTTP/1.0 200 OK\r\n\r\nuntil close");
    CHECK_EQ_INT(ts_http_resp_new(&r, TS_HTTP_FULL, 0), 0);
    CHECK_EQ_INT(feed(r, (const uint8_t *)resp, n, 0, &b), 0);
    CHECK_EQ_INT(ts_http_resp_done(r), 0);
    CHECK_EQ_INT(ts_http_resp_eof(r), 0);
    CHECK_EQ_INT(ts_http_resp_done(r), 1);
    got = ts_http_resp_body(r, &glen);
    CHECK_EQ_MEM(got, glen, "until close", 11);
    ts_http_resp_free(r);
    /* Body cap, and EOF in a Content-Length body. */
    n = (size_t)snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n%s",
                         "0123456789012345678901234567890123456789");
    CHECK_EQ_INT(ts_http_resp_new(&r, TS_HTTP_FULL, 16), 0);
    CHECK_EQ_INT(feed(r, (const uint8_t *)resp, n, 0, &b), H2R_ERR_LIMIT);
    ts_http_resp_free(r);
    CHECK_EQ_INT(ts_http_resp_new(&r, TS_HTTP_FULL, 0), 0);
    CHECK_EQ_INT(feed(r, (const uint8_t *)resp, n, 0, &b), 0);
    CHECK_EQ_INT(ts_http_resp_eof(r), H2R_ERR_TRUNCATED);
    ts_http_resp_free(r);
    /* A 404 is a complete response in this mode; the status tells. */
    n = (size_t)snprintf(resp, sizeof(resp), "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    CHECK_EQ_INT(ts_http_resp_new(&r, TS_HTTP_FULL, 0), 0);
    CHECK_EQ_INT(feed(r, (const uint8_t *)resp, n, 0, &b), 0);
    CHECK_EQ_INT(ts_http_resp_done(r), 1);
    CHECK_EQ_INT(ts_http_resp_status(r), 404);
    ts_http_resp_free(r);
}

static void test_key_json(void)
{
    uint8_t key[32];
    char err[160];
    const char *j;

#define KEYPARSE(s) ts_key_response_parse((const uint8_t *)(s), strlen(s), key, err, sizeof(err))
    j = "{\"legacyPublicKey\":\"mkey:0000000000000000000000000000000000000000000000000000000000000"
        "000\",\"publicKey\":\"mkey:79A631EEDE1BF9C98F12032CDEADD0E7A079398FC786B88CC846EC89AF85"
        "A51A\"}";
    CHECK_EQ_INT(KEYPARSE(j), 0);
    CHECK_EQ_INT(key[1], 0xa6);
    /* publicKey zero: "control server is too old; no noise key". */
    j = "{\"publicKey\":\"mkey:0000000000000000000000000000000000000000000000000000000000000000\"}";
    CHECK_EQ_INT(KEYPARSE(j), H2R_ERR_PROTO);
    CHECK(strstr(err, "too old") != NULL);
    CHECK_EQ_INT(KEYPARSE(""), H2R_ERR_UNSUPPORTED);
    CHECK_EQ_INT(KEYPARSE("79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a\n"),
                 H2R_ERR_UNSUPPORTED);
    CHECK_EQ_INT(KEYPARSE("{\"publicKey\":"), H2R_ERR_FORMAT);
    CHECK_EQ_INT(KEYPARSE("[1]"), H2R_ERR_FORMAT);
    CHECK_EQ_INT(KEYPARSE("{\"publicKey\":7}"), H2R_ERR_FORMAT);
    CHECK_EQ_INT(KEYPARSE("{}"), H2R_ERR_FORMAT);
    j = "{\"publicKey\":\"nodekey:79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a"
        "\"}";
    CHECK_EQ_INT(KEYPARSE(j), H2R_ERR_FORMAT);
    j = "{\"publicKey\":\"mkey:79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51\"}";
    CHECK_EQ_INT(KEYPARSE(j), H2R_ERR_FORMAT);
    j = "{\"publicKey\":\"mkey:79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a5zz\"}";
    CHECK_EQ_INT(KEYPARSE(j), H2R_ERR_FORMAT);
#undef KEYPARSE
}

int main(void)
{
    test_request();
    test_101_trailing();
    test_101_variants();
    test_non_101();
    test_limits_and_eof();
    test_full_mode();
    test_key_json();
    return check_summary("test_ts_upgrade");
}
