/*
 * The HTTP/1.1 side of TS2021: the "POST /ts2021" upgrade request, the parser
 * for its "101 Switching Protocols" answer, and the /key exchange that comes
 * before it (tailscale control/controlhttp/client.go, headscale
 * hscontrol/noise.go and handlers.go; RFC 9110 section 7.8 and 15.2.2).
 *
 * The request carries Noise message 1 in the X-Tailscale-Handshake header, so
 * the server's handshake response follows the 101 head immediately - often in
 * the same TCP segment, because the server corks the 101, the response frame
 * and the EarlyNoise records into one write. The response parser therefore
 * reports exactly how many input bytes were the head and never touches the
 * rest: losing those read-ahead bytes is the classic bug TS's own client
 * warns about. libhttp-parser (Debian's libhttp-parser-dev) does the HTTP
 * syntax; it is stopped with http_parser_pause() the moment the head (or, for
 * /key, the whole response) is complete, which makes its return value the
 * exact boundary. Header bytes and bodies are capped before they are kept.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>
#include <openssl/crypto.h>

#include "ts2021.h"

#define TS_UPGRADE_PROTOCOL "tailscale-control-protocol"
#define TS_UPGRADE_PATH "/ts2021"
#define DEFAULT_USER_AGENT "h2replay"
#define FIELD_KEEP 32 /* header names we care about are short */
#define VALUE_KEEP 96
#define REASON_KEEP 64

struct ts_http_resp {
    http_parser parser;
    int mode; /* enum ts_http_mode */
    int rc;   /* sticky error */
    int done;
    int status;
    size_t head_bytes; /* status text, names and values of the current head */
    int head_done;     /* the current head is complete */
    /* header being read: name (truncated), and whether it is Upgrade */
    char field[FIELD_KEEP];
    size_t field_len;
    int field_long;
    int in_value; /* the last callback was a value */
    int value_is_upgrade;
    char upgrade[VALUE_KEEP];
    size_t upgrade_len;
    int upgrade_seen, upgrade_long;
    char reason[REASON_KEEP];
    size_t reason_len;
    uint8_t *body;
    size_t body_len, body_cap, max_body;
    char err[160];
};

__attribute__((format(printf, 3, 4))) static int resp_fail(struct ts_http_resp *r, int rc,
                                                           const char *fmt, ...)
{
    va_list ap;

    if (r->rc == 0) {
        r->rc = rc;
        va_start(ap, fmt);
        vsnprintf(r->err, sizeof(r->err), fmt, ap);
        va_end(ap);
    }
    return r->rc;
}

/* Appends at most cap - 1 - *len bytes, keeping dst NUL-terminated; 1 when cut. */
static int keep_text(char *dst, size_t cap, size_t *len, const char *at, size_t n)
{
    size_t room = cap - 1 - *len;
    int cut = n > room;

    if (cut)
        n = room;
    memcpy(dst + *len, at, n);
    *len += n;
    dst[*len] = '\0';
    return cut;
}

/* ---- http_parser callbacks ---- */

/* Counts head bytes against TS_HTTP_MAX_HEAD (libhttp-parser's own limit is 80 KiB). */
static int head_account(http_parser *p, struct ts_http_resp *r, size_t n)
{
    r->head_bytes += n;
    if (r->head_bytes <= TS_HTTP_MAX_HEAD)
        return 0;
    resp_fail(r, H2R_ERR_LIMIT, "response head over %u bytes", TS_HTTP_MAX_HEAD);
    http_parser_pause(p, 1);
    return -1;
}

static int on_message_begin(http_parser *p)
{
    struct ts_http_resp *r = p->data;

    /* A new response (after an interim 1xx): forget the previous head. */
    r->head_done = 0;
    r->status = 0;
    r->reason_len = 0;
    r->reason[0] = '\0';
    r->upgrade_len = 0;
    r->upgrade[0] = '\0';
    r->upgrade_seen = 0;
    r->upgrade_long = 0;
    r->field_len = 0;
    r->in_value = 0;
    r->head_bytes = 0;
    return 0;
}

static int on_status(http_parser *p, const char *at, size_t n)
{
    struct ts_http_resp *r = p->data;

    if (head_account(p, r, n) != 0)
        return 0;
    keep_text(r->reason, sizeof(r->reason), &r->reason_len, at, n);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct ts_http_resp *r = p->data;

    if (head_account(p, r, n) != 0)
        return 0;
    if (r->in_value) {
        /* A value ended: this is a new field name. */
        r->in_value = 0;
        r->field_len = 0;
        r->field_long = 0;
    }
    if (keep_text(r->field, sizeof(r->field), &r->field_len, at, n))
        r->field_long = 1;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct ts_http_resp *r = p->data;

    if (head_account(p, r, n) != 0)
        return 0;
    if (!r->in_value) {
        r->in_value = 1;
        /* Go's Header.Get returns the first Upgrade header; do the same. */
        r->value_is_upgrade =
            !r->field_long && !r->upgrade_seen && strcasecmp(r->field, "Upgrade") == 0;
        if (r->value_is_upgrade)
            r->upgrade_seen = 1;
    }
    if (r->value_is_upgrade && keep_text(r->upgrade, sizeof(r->upgrade), &r->upgrade_len, at, n))
        r->upgrade_long = 1;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct ts_http_resp *r = p->data;

    r->status = p->status_code;
    r->head_done = 1;
    if (r->status >= 100 && r->status < 200 && r->status != 101)
        return 0; /* interim response (RFC 9110 section 15.2): the real one follows */
    if (r->mode != TS_HTTP_UPGRADE)
        return 0;
    if (r->status != 101) {
        resp_fail(r, H2R_ERR_PROTO, "upgrade refused: HTTP %d %s", r->status, r->reason);
        http_parser_pause(p, 1);
        return 0;
    }
    /* controlhttp client: the Upgrade value must be exactly the protocol name. */
    if (!r->upgrade_seen || r->upgrade_long || strcmp(r->upgrade, TS_UPGRADE_PROTOCOL) != 0) {
        resp_fail(r, H2R_ERR_PROTO, "101 with Upgrade \"%s\", want \"" TS_UPGRADE_PROTOCOL "\"",
                  r->upgrade_seen ? r->upgrade : "(none)");
        http_parser_pause(p, 1);
        return 0;
    }
    /* 2: no body, the rest of the stream is another protocol. */
    return 2;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct ts_http_resp *r = p->data;
    size_t want;

    if (r->status >= 100 && r->status < 200)
        return 0;
    if (n > r->max_body - r->body_len) {
        resp_fail(r, H2R_ERR_LIMIT, "response body over %zu bytes", r->max_body);
        http_parser_pause(p, 1);
        return 0;
    }
    want = r->body_len + n;
    if (want > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        uint8_t *nb;

        while (cap < want)
            cap *= 2;
        if (cap > r->max_body)
            cap = r->max_body;
        nb = realloc(r->body, cap);
        if (!nb) {
            resp_fail(r, H2R_ERR_NOMEM, "out of memory for the response body");
            http_parser_pause(p, 1);
            return 0;
        }
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, n);
    r->body_len += n;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct ts_http_resp *r = p->data;

    if (r->status >= 100 && r->status < 200 && r->status != 101)
        return 0;
    r->done = 1;
    /* Stop right here: http_parser_execute() then returns the exact boundary. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings resp_settings = {
    .on_message_begin = on_message_begin,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- response parser API ---- */

int ts_http_resp_new(struct ts_http_resp **out, int mode, size_t max_body)
{
    struct ts_http_resp *r = calloc(1, sizeof(*r));

    *out = NULL;
    if (!r)
        return H2R_ERR_NOMEM;
    http_parser_init(&r->parser, HTTP_RESPONSE);
    r->parser.data = r;
    r->mode = mode;
    r->max_body = max_body ? max_body : TS_KEY_MAX_BODY;
    *out = r;
    return 0;
}

void ts_http_resp_free(struct ts_http_resp *r)
{
    if (!r)
        return;
    free(r->body);
    free(r);
}

int ts_http_resp_feed(struct ts_http_resp *r, const uint8_t *buf, size_t len, size_t *consumed)
{
    size_t n;
    enum http_errno e;

    *consumed = 0;
    if (r->rc != 0)
        return r->rc;
    if (r->done || len == 0)
        return 0;
    n = http_parser_execute(&r->parser, &resp_settings, (const char *)buf, len);
    if (n > len)
        n = len;
    *consumed = n;
    if (r->rc != 0)
        return r->rc;
    e = HTTP_PARSER_ERRNO(&r->parser);
    if (!r->done && e != HPE_OK)
        return resp_fail(r, H2R_ERR_PROTO, "not an HTTP/1.1 response: %s",
                         http_errno_description(e));
    if (!r->done && n != len)
        return resp_fail(r, H2R_ERR_PROTO, "HTTP parser stopped at byte %zu of %zu", n, len);
    return 0;
}

int ts_http_resp_eof(struct ts_http_resp *r)
{
    if (r->rc != 0)
        return r->rc;
    if (!r->done) {
        /* A zero-length execute is libhttp-parser's end-of-input signal. */
        http_parser_execute(&r->parser, &resp_settings, NULL, 0);
    }
    if (r->rc != 0)
        return r->rc;
    if (!r->done)
        return resp_fail(r, H2R_ERR_TRUNCATED, "connection closed %s",
                         r->head_done ? "in the body" : "before the response head");
    return 0;
}

int ts_http_resp_done(const struct ts_http_resp *r)
{
    return r->done;
}

int ts_http_resp_status(const struct ts_http_resp *r)
{
    return r->status;
}

const uint8_t *ts_http_resp_body(const struct ts_http_resp *r, size_t *len)
{
    *len = r->body_len;
    return r->body;
}

const char *ts_http_resp_error(const struct ts_http_resp *r)
{
    return r->err;
}

/* ---- requests ---- */

/* 1 when s is non-empty and every byte is in [lo, 0x7e] (no CR/LF injection). */
static int header_safe(const char *s, unsigned char lo)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s < lo || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

static int finish_request(int n, size_t cap, size_t *outlen)
{
    if (n < 0 || (size_t)n >= cap)
        return H2R_ERR_ARG;
    *outlen = (size_t)n;
    return 0;
}

int ts_upgrade_request_build(const char *host, const char *user_agent, const uint8_t *frame,
                             size_t frame_len, char *out, size_t cap, size_t *outlen)
{
    char b64[4 * ((TS_UPGRADE_MAX_FRAME + 2) / 3) + 1];
    size_t b64_len = 0;
    int n;

    if (!user_agent)
        user_agent = DEFAULT_USER_AGENT;
    if (!header_safe(host, 0x21) || !header_safe(user_agent, 0x20))
        return H2R_ERR_ARG;
    if (frame_len > TS_UPGRADE_MAX_FRAME ||
        ts_b64_encode(frame, frame_len, b64, sizeof(b64), &b64_len) != 0)
        return H2R_ERR_ARG;
    /* Go's header order: Host, User-Agent, Content-Length, then sorted names. */
    n = snprintf(out, cap,
                 "POST " TS_UPGRADE_PATH " HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "User-Agent: %s\r\n"
                 "Content-Length: 0\r\n"
                 "Connection: upgrade\r\n"
                 "Upgrade: " TS_UPGRADE_PROTOCOL "\r\n"
                 "X-Tailscale-Handshake: %s\r\n"
                 "\r\n",
                 host, user_agent, b64);
    OPENSSL_cleanse(b64, b64_len);
    return finish_request(n, cap, outlen);
}

int ts_key_request_build(const char *host, uint16_t capver, const char *user_agent, char *out,
                         size_t cap, size_t *outlen)
{
    int n;

    if (!user_agent)
        user_agent = DEFAULT_USER_AGENT;
    if (!header_safe(host, 0x21) || !header_safe(user_agent, 0x20))
        return H2R_ERR_ARG;
    n = snprintf(out, cap,
                 "GET /key?v=%u HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "User-Agent: %s\r\n"
                 "\r\n",
                 (unsigned)capver, host, user_agent);
    return finish_request(n, cap, outlen);
}

/* ---- /key ---- */

/* 1 for a bare 64-hex legacy key (pre-Noise servers answer /key with just that). */
static int bare_hex_key(const uint8_t *b, size_t len)
{
    size_t n = 0;

    while (len > 0 && (b[len - 1] == '\n' || b[len - 1] == '\r' || b[len - 1] == ' '))
        len--;
    if (len != TS_KEY_HEX_LEN)
        return 0;
    for (; n < len; n++) {
        uint8_t c = b[n];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    return 1;
}

int ts_key_response_parse(const uint8_t *body, size_t len, uint8_t control_pub[TS_KEY_LEN],
                          char *errbuf, size_t errlen)
{
    static const uint8_t zero[TS_KEY_LEN];
    json_error_t jerr;
    json_t *root = NULL, *pk;
    int rc;

    if (len == 0)
        return h2r_seterr(errbuf, errlen, H2R_ERR_UNSUPPORTED,
                          "/key: empty body (capver below 39, or no Noise support)");
    if (bare_hex_key(body, len))
        return h2r_seterr(errbuf, errlen, H2R_ERR_UNSUPPORTED,
                          "/key: bare legacy key: control server is too old for Noise");
    if (len > TS_KEY_MAX_BODY)
        return h2r_seterr(errbuf, errlen, H2R_ERR_LIMIT, "/key: body of %zu bytes", len);
    root = json_loadb((const char *)body, len, 0, &jerr);
    if (!json_is_object(root)) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_FORMAT, "/key: not a JSON object: %s",
                        root ? "wrong type" : jerr.text);
        goto out;
    }
    pk = json_object_get(root, "publicKey");
    if (!json_is_string(pk)) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_FORMAT, "/key: no publicKey string");
        goto out;
    }
    rc =
        ts_key_parse(TS_PREFIX_MACHINE, json_string_value(pk), json_string_length(pk), control_pub);
    if (rc != 0) {
        h2r_seterr(errbuf, errlen, rc, "/key: publicKey is not mkey:<64 hex>");
        goto out;
    }
    if (CRYPTO_memcmp(control_pub, zero, TS_KEY_LEN) == 0)
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_PROTO,
                        "/key: publicKey is zero: control server is too old; no noise key");
out:
    json_decref(root);
    return rc;
}
