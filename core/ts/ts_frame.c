/*
 * TS2021 framing (tailscale control/controlbase messages.go and conn.go), the
 * EarlyNoise blob, and ts_session, which stacks them into one connection.
 *
 * After the HTTP upgrade both directions are a stream of frames: a 1-byte
 * type and a big-endian 16-bit length. The server's first frame is the
 * handshake response (type 2, exactly 48 bytes) or an unauthenticated error
 * text (type 3); after that only transport records (type 4) are legal, each
 * at most 4096 bytes on the wire, so at most 4077 bytes of plaintext. The
 * header is not authenticated: a tampered header simply makes the record fail
 * to decrypt, and any such failure is final, as it is in TS. The initiation
 * frame (type 1, 5-byte header with the capability version in front) never
 * travels on this stream; it rides base64-encoded in the X-Tailscale-Handshake
 * header of the upgrade request.
 *
 * The frame parser never allocates: a frame that arrives whole inside the
 * caller's buffer is handed over in place, only a frame split across feeds is
 * copied into the fixed 4 KiB body buffer - the record size limit is what
 * makes that buffer sufficient.
 *
 * Records form a byte stream, not messages: Headscale writes the EarlyNoise
 * magic, its length and its JSON in three writes, hence three records, and the
 * 9-byte peek a TS client does can span them. The EarlyNoise splitter thus
 * runs on decrypted bytes and hands everything that is not the blob on to
 * HTTP/2 untouched.
 *
 * ts_session_open_keys() starts a session from a keylog's k1/k2 instead of a
 * handshake: that is how a capture holding the keys (never the control key
 * alone - the session keys are forward-secret) would decrypt a connection.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "h2replay/cursor.h"
#include "ts2021.h"

static void put_be16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- frame parser ---- */

void ts_frame_parser_init(struct ts_frame_parser *p, int server_first, ts_frame_cb on_frame,
                          void *ud)
{
    memset(p, 0, sizeof(*p));
    p->on_frame = on_frame;
    p->ud = ud;
    p->expect_response = server_first != 0;
}

__attribute__((format(printf, 3, 4))) static int frame_fail(struct ts_frame_parser *p, int rc,
                                                            const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(p->err, sizeof(p->err), fmt, ap);
    va_end(ap);
    p->rc = rc;
    return rc;
}

/* Validates a complete 3-byte header (messages.go; conn.go errReadTooBig). */
static int frame_header(struct ts_frame_parser *p)
{
    struct h2r_cursor c = {p->hdr, TS_FRAME_HDR_LEN};
    uint8_t type = 0;
    uint16_t len = 0;

    if (h2r_cur_u8(&c, &type) != 0 || h2r_cur_be16(&c, &len) != 0)
        return frame_fail(p, H2R_ERR_TRUNCATED, "frame header short");
    if (p->expect_response) {
        if (type == TS_FRAME_RESP && len != TS_MSG2_LEN)
            return frame_fail(p, H2R_ERR_FORMAT, "handshake response of %u bytes, want %d", len,
                              TS_MSG2_LEN);
        if (type == TS_FRAME_ERROR && len > TS_MAX_CIPHERTEXT)
            return frame_fail(p, H2R_ERR_LIMIT, "error frame of %u bytes (cap %d)", len,
                              TS_MAX_CIPHERTEXT);
        if (type != TS_FRAME_RESP && type != TS_FRAME_ERROR)
            return frame_fail(p, H2R_ERR_PROTO,
                              "frame type %u where the handshake response belongs (len %u)", type,
                              len);
    } else {
        if (type != TS_FRAME_RECORD)
            return frame_fail(p, H2R_ERR_PROTO, "frame type %u, want a record (len %u)", type, len);
        if (len > TS_MAX_CIPHERTEXT)
            return frame_fail(p, H2R_ERR_LIMIT, "record of %u bytes (cap %d)", len,
                              TS_MAX_CIPHERTEXT);
        if (len < TS_TAG_LEN)
            return frame_fail(p, H2R_ERR_FORMAT, "record of %u bytes cannot hold a tag (%d)", len,
                              TS_TAG_LEN);
    }
    p->body_len = len;
    p->body_have = 0;
    return 0;
}

/* Hands one frame to the callback and resets for the next header. */
static int frame_deliver(struct ts_frame_parser *p, const uint8_t *body)
{
    uint8_t type = p->hdr[0];
    int rc;

    p->hdr_have = 0;
    p->frames++;
    if (p->expect_response) {
        p->expect_response = 0;
        p->closed = type == TS_FRAME_ERROR;
    }
    rc = p->on_frame ? p->on_frame(p->ud, type, body, p->body_len) : 0;
    if (rc != 0)
        p->rc = rc;
    return rc;
}

int ts_frame_feed(struct ts_frame_parser *p, const uint8_t *buf, size_t len)
{
    int rc;

    if (p->rc != 0)
        return p->rc;
    while (len > 0) {
        size_t n;

        if (p->closed)
            return frame_fail(p, H2R_ERR_PROTO, "%zu bytes after an error frame", len);
        if (p->hdr_have < TS_FRAME_HDR_LEN) {
            n = TS_FRAME_HDR_LEN - p->hdr_have;
            if (n > len)
                n = len;
            memcpy(p->hdr + p->hdr_have, buf, n);
            p->hdr_have += n;
            p->bytes += n;
            buf += n;
            len -= n;
            if (p->hdr_have < TS_FRAME_HDR_LEN)
                break;
            rc = frame_header(p);
            if (rc != 0)
                return rc;
        }
        if (p->body_have == 0 && len >= p->body_len) {
            /* The whole body is in the caller's buffer: no copy. */
            const uint8_t *body = buf;

            n = p->body_len;
            p->bytes += n;
            buf += n;
            len -= n;
            rc = frame_deliver(p, body);
            if (rc != 0)
                return rc;
            continue;
        }
        n = p->body_len - p->body_have;
        if (n > len)
            n = len;
        memcpy(p->body + p->body_have, buf, n);
        p->body_have += n;
        p->bytes += n;
        buf += n;
        len -= n;
        if (p->body_have == p->body_len) {
            rc = frame_deliver(p, p->body);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

/* ---- initiation frame and its header ---- */

int ts_init_frame_build(uint16_t version, const uint8_t *msg1, size_t len, uint8_t *out, size_t cap,
                        size_t *outlen)
{
    if (len > 0xffff || cap < TS_INIT_HDR_LEN + len)
        return H2R_ERR_ARG;
    put_be16(out, version);
    out[2] = TS_FRAME_INIT;
    put_be16(out + 3, len);
    memcpy(out + TS_INIT_HDR_LEN, msg1, len);
    *outlen = TS_INIT_HDR_LEN + len;
    return 0;
}

int ts_init_frame_parse(const uint8_t *frame, size_t len, uint16_t *version, const uint8_t **msg1,
                        size_t *msg1_len)
{
    struct h2r_cursor c = {frame, len};
    uint16_t v = 0, blen = 0;
    uint8_t type = 0;

    if (h2r_cur_be16(&c, &v) != 0 || h2r_cur_u8(&c, &type) != 0 || h2r_cur_be16(&c, &blen) != 0)
        return H2R_ERR_TRUNCATED;
    /* controlbase Server(): type 1, length 96, nothing more or less. */
    if (type != TS_FRAME_INIT || blen != TS_MSG1_LEN)
        return H2R_ERR_FORMAT;
    if (c.len < blen)
        return H2R_ERR_TRUNCATED;
    if (c.len > blen)
        return H2R_ERR_FORMAT;
    *version = v;
    *msg1 = c.p;
    *msg1_len = blen;
    return 0;
}

int ts_b64_encode(const uint8_t *in, size_t len, char *out, size_t cap, size_t *outlen)
{
    size_t need;
    int n;

    if (len > (size_t)0x3fffffff)
        return H2R_ERR_ARG;
    need = (len + 2) / 3 * 4;
    if (cap < need + 1)
        return H2R_ERR_ARG;
    n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    if (n < 0 || (size_t)n != need)
        return H2R_ERR_ARG;
    *outlen = need;
    return 0;
}

static int b64_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '+' || ch == '/';
}

int ts_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *outlen)
{
    uint8_t last[3];
    size_t pad = 0, head;
    int n;

    if (len % 4 != 0 || len > (size_t)0x3fffffff)
        return H2R_ERR_FORMAT;
    if (len == 0) {
        *outlen = 0;
        return 0;
    }
    if (in[len - 1] == '=')
        pad++;
    if (in[len - 2] == '=')
        pad++;
    /* EVP_DecodeBlock skips whitespace and keeps padding as zero bytes: validate
     * first, and decode the final quantum apart so out needs no slack. */
    for (size_t i = 0; i < len - pad; i++)
        if (!b64_char(in[i]))
            return H2R_ERR_FORMAT;
    head = (len - 4) / 4 * 3;
    if (cap < head + 3 - pad)
        return H2R_ERR_LIMIT;
    if (head > 0) {
        n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)(len - 4));
        if (n < 0 || (size_t)n != head)
            return H2R_ERR_FORMAT;
    }
    n = EVP_DecodeBlock(last, (const unsigned char *)in + len - 4, 4);
    if (n != 3)
        return H2R_ERR_FORMAT;
    memcpy(out + head, last, 3 - pad);
    *outlen = head + 3 - pad;
    return 0;
}

int ts_init_frame_identify(const uint8_t control_priv[TS_KEY_LEN], const uint8_t *frame, size_t len,
                           struct ts_client_identity *out, char *errbuf, size_t errlen)
{
    struct ts_noise n;
    const uint8_t *msg1 = NULL;
    size_t msg1_len = 0;
    uint16_t version = 0;
    int rc;

    memset(&n, 0, sizeof(n));
    rc = ts_init_frame_parse(frame, len, &version, &msg1, &msg1_len);
    if (rc != 0)
        return h2r_seterr(errbuf, errlen, H2R_ERR_FORMAT,
                          "not a 101-byte TS2021 initiation frame (%zu bytes)", len);
    rc = ts_noise_init_responder(&n, version, control_priv);
    if (rc != 0) {
        h2r_seterr(errbuf, errlen, rc, "%s", n.err);
        goto out;
    }
    rc = ts_noise_responder_read_msg1(&n, msg1, msg1_len, NULL, 0, NULL);
    if (rc != 0) {
        h2r_seterr(errbuf, errlen, rc, "capver %u: %s", (unsigned)version, n.err);
        goto out;
    }
    out->version = version;
    memcpy(out->machine_pub, n.rs, TS_KEY_LEN);
    memcpy(out->ephemeral_pub, n.re, TS_KEY_LEN);
out:
    ts_noise_cleanup(&n);
    return rc;
}

/* ---- records ---- */

size_t ts_record_sealed_len(size_t len)
{
    size_t records = len == 0 ? 1 : (len + TS_MAX_PLAINTEXT - 1) / TS_MAX_PLAINTEXT;

    return len + records * (TS_FRAME_HDR_LEN + TS_TAG_LEN);
}

int ts_record_seal(struct ts_cipher *tx, const uint8_t *pt, size_t len, uint8_t *out, size_t cap,
                   size_t *outlen)
{
    size_t off = 0, w = 0;

    if (cap < ts_record_sealed_len(len))
        return H2R_ERR_ARG;
    do {
        size_t n = len - off;
        int rc;

        if (n > TS_MAX_PLAINTEXT)
            n = TS_MAX_PLAINTEXT;
        out[w] = TS_FRAME_RECORD;
        put_be16(out + w + 1, n + TS_TAG_LEN);
        rc = ts_cipher_seal(tx, pt ? pt + off : NULL, n, out + w + TS_FRAME_HDR_LEN);
        if (rc != 0)
            return rc;
        off += n;
        w += TS_FRAME_HDR_LEN + n + TS_TAG_LEN;
    } while (off < len);
    *outlen = w;
    return 0;
}

/* ---- EarlyNoise (tailcfg.EarlyNoise; TS control/ts2021/conn.go) ---- */

static const uint8_t early_magic[TS_EARLY_MAGIC_LEN] = {0xff, 0xff, 0xff, 'T', 'S'};

void ts_early_init(struct ts_early *e, size_t max_json, ts_data_cb on_early, ts_data_cb on_data,
                   void *ud)
{
    memset(e, 0, sizeof(*e));
    e->max_json = max_json ? max_json : TS_EARLY_MAX_JSON;
    e->on_early = on_early;
    e->on_data = on_data;
    e->ud = ud;
}

void ts_early_cleanup(struct ts_early *e)
{
    if (!e)
        return;
    free(e->json);
    e->json = NULL;
}

static int early_data(struct ts_early *e, const uint8_t *buf, size_t len)
{
    if (len == 0 || !e->on_data)
        return 0;
    return e->on_data(e->ud, buf, len);
}

int ts_early_feed(struct ts_early *e, const uint8_t *buf, size_t len)
{
    int rc;

    while (len > 0 && e->state != TS_EARLY_ST_PASS) {
        size_t n;

        switch (e->state) {
        case TS_EARLY_ST_MAGIC:
            if (buf[0] != early_magic[e->hdr_have]) {
                /* Not the blob: what we held back is the start of HTTP/2 (an h2
                 * frame cannot begin with FF FF FF: that length is too large). */
                e->state = TS_EARLY_ST_PASS;
                rc = early_data(e, e->hdr, e->hdr_have);
                if (rc != 0)
                    return rc;
                break;
            }
            e->hdr[e->hdr_have++] = buf[0];
            buf++;
            len--;
            if (e->hdr_have == TS_EARLY_MAGIC_LEN)
                e->state = TS_EARLY_ST_LENGTH;
            break;
        case TS_EARLY_ST_LENGTH:
            e->hdr[e->hdr_have++] = buf[0];
            buf++;
            len--;
            if (e->hdr_have < TS_EARLY_HDR_LEN)
                break;
            e->json_len = get_be32(e->hdr + TS_EARLY_MAGIC_LEN);
            if (e->json_len > e->max_json)
                return H2R_ERR_LIMIT;
            e->json = malloc(e->json_len ? e->json_len : 1);
            if (!e->json)
                return H2R_ERR_NOMEM;
            e->json_have = 0;
            e->state = TS_EARLY_ST_JSON;
            break;
        default: /* TS_EARLY_ST_JSON */
            n = e->json_len - e->json_have;
            if (n > len)
                n = len;
            memcpy(e->json + e->json_have, buf, n);
            e->json_have += n;
            buf += n;
            len -= n;
            break;
        }
        if (e->state == TS_EARLY_ST_JSON && e->json_have == e->json_len) {
            e->state = TS_EARLY_ST_PASS;
            e->seen = 1;
            rc = e->on_early ? e->on_early(e->ud, e->json, e->json_len) : 0;
            free(e->json);
            e->json = NULL;
            if (rc != 0)
                return rc;
        }
    }
    return early_data(e, buf, len);
}

int ts_early_build(const char *json, size_t len, uint8_t *out, size_t cap, size_t *outlen)
{
    if (len > 0xffffffffu || cap < TS_EARLY_HDR_LEN + len)
        return H2R_ERR_ARG;
    memcpy(out, early_magic, TS_EARLY_MAGIC_LEN);
    put_be32(out + TS_EARLY_MAGIC_LEN, len);
    memcpy(out + TS_EARLY_HDR_LEN, json, len);
    *outlen = TS_EARLY_HDR_LEN + len;
    return 0;
}

int ts_early_challenge(const uint8_t *json, size_t len, uint8_t chal[TS_KEY_LEN])
{
    json_t *root = json_loadb((const char *)json, len, 0, NULL);
    json_t *v = root ? json_object_get(root, "nodeKeyChallenge") : NULL;
    int rc = H2R_ERR_FORMAT;

    if (!json_is_string(v))
        goto out;
    rc = ts_key_parse(TS_PREFIX_CHALLENGE, json_string_value(v), json_string_length(v), chal);
out:
    json_decref(root);
    return rc;
}

/* ---- session ---- */

/* Records the first failure (later ones are consequences) and kills the session. */
__attribute__((format(printf, 3, 4))) static int session_fail(struct ts_session *s, int rc,
                                                              const char *fmt, ...)
{
    va_list ap;

    if (s->rc == 0) {
        s->rc = rc;
        va_start(ap, fmt);
        vsnprintf(s->err, sizeof(s->err), fmt, ap);
        va_end(ap);
    }
    s->state = TS_SESSION_FAILED;
    return s->rc;
}

static int session_plain(void *ud, const uint8_t *buf, size_t len)
{
    struct ts_session *s = ud;

    s->plain_in += len;
    return s->cb->on_data(s->ud, buf, len);
}

static int session_early(void *ud, const uint8_t *json, size_t len)
{
    struct ts_session *s = ud;

    return s->cb->on_early ? s->cb->on_early(s->ud, json, len) : 0;
}

/* The server's handshake answer (client side). */
static int session_response(struct ts_session *s, uint8_t type, const uint8_t *body, size_t len)
{
    char text[160];
    size_t i, n = 0;
    int rc;

    if (type == TS_FRAME_ERROR) {
        /* Unauthenticated: keep it printable for the log line. */
        for (i = 0; i < len && n + 1 < sizeof(text); i++)
            text[n++] = (body[i] >= 0x20 && body[i] < 0x7f) ? (char)body[i] : '?';
        text[n] = '\0';
        return session_fail(s, H2R_ERR_PROTO, "ts2021: server error frame: %s", text);
    }
    rc = ts_noise_read_msg2(&s->noise, body, len, NULL, 0, NULL);
    if (rc != 0)
        return session_fail(s, rc, "ts2021: handshake response: %s", s->noise.err);
    rc = ts_noise_split(&s->noise, &s->tx, &s->rx);
    if (rc != 0)
        return session_fail(s, rc, "ts2021: %s", s->noise.err);
    s->have_keys = 1;
    s->state = TS_SESSION_OPEN;
    if (s->cb->on_handshake) {
        rc = s->cb->on_handshake(s->ud, s);
        if (rc != 0)
            return session_fail(s, rc, "ts2021: handshake callback failed");
    }
    return 0;
}

static int session_frame(void *ud, uint8_t type, const uint8_t *body, size_t len)
{
    struct ts_session *s = ud;
    size_t plen = 0;
    int rc;

    if (s->state == TS_SESSION_HANDSHAKE)
        return session_response(s, type, body, len);
    rc = ts_cipher_open(&s->rx, body, len, s->plain, &plen);
    if (rc != 0)
        return session_fail(s, rc, "ts2021: record %s",
                            rc == H2R_ERR_LIMIT ? "nonce space exhausted"
                                                : "does not decrypt (tampered, or wrong keys)");
    s->records_in++;
    if (s->role == TS_NOISE_RESPONDER)
        return session_plain(s, s->plain, plen);
    return ts_early_feed(&s->early, s->plain, plen);
}

/* Shared set-up of both roles; noise must be initialised already. */
static void session_common(struct ts_session *s, int role, const struct ts_session_callbacks *cb,
                           void *ud)
{
    s->role = role;
    s->cb = cb;
    s->ud = ud;
    ts_frame_parser_init(&s->frames, role == TS_NOISE_INITIATOR, session_frame, s);
    ts_early_init(&s->early, 0, session_early, session_plain, s);
}

int ts_session_client_init(struct ts_session *s, uint16_t capver,
                           const uint8_t machine_priv[TS_KEY_LEN],
                           const uint8_t control_pub[TS_KEY_LEN],
                           const struct ts_session_callbacks *cb, void *ud)
{
    int rc;

    memset(s, 0, sizeof(*s));
    if (!cb || !cb->on_data)
        return H2R_ERR_ARG;
    rc = ts_noise_init_initiator(&s->noise, capver, machine_priv, control_pub);
    if (rc != 0) {
        h2r_seterr(s->err, sizeof(s->err), rc, "ts2021: %s", s->noise.err);
        return rc;
    }
    rc = ts_http_resp_new(&s->head, TS_HTTP_UPGRADE, 0);
    if (rc != 0)
        goto fail_noise;
    session_common(s, TS_NOISE_INITIATOR, cb, ud);
    s->state = TS_SESSION_HTTP_HEAD;
    return 0;

fail_noise:
    ts_noise_cleanup(&s->noise);
    return rc;
}

/* Writes message 1 (once per session) and frames it. */
static int session_write_init(struct ts_session *s, uint8_t out[TS_INIT_FRAME_LEN])
{
    uint8_t msg1[TS_MSG1_LEN];
    size_t len = 0, flen = 0;
    int rc;

    if (s->rc != 0)
        return s->rc;
    if (s->role != TS_NOISE_INITIATOR || s->noise.step != 0)
        return H2R_ERR_ARG;
    rc = ts_noise_write_msg1(&s->noise, NULL, 0, msg1, sizeof(msg1), &len);
    if (rc != 0)
        return session_fail(s, rc, "ts2021: %s", s->noise.err);
    rc = ts_init_frame_build(s->noise.version, msg1, len, out, TS_INIT_FRAME_LEN, &flen);
    if (rc != 0)
        return session_fail(s, rc, "ts2021: cannot frame msg1");
    return 0;
}

int ts_session_client_init_frame(struct ts_session *s, uint8_t out[TS_INIT_FRAME_LEN])
{
    int rc = session_write_init(s, out);

    if (rc != 0)
        return rc;
    /* Without HTTP in front, the response frame comes next. */
    ts_http_resp_free(s->head);
    s->head = NULL;
    s->state = TS_SESSION_HANDSHAKE;
    return 0;
}

int ts_session_client_request(struct ts_session *s, const char *host, const char *user_agent,
                              char *out, size_t cap, size_t *outlen)
{
    uint8_t frame[TS_INIT_FRAME_LEN];
    int rc;

    if (!s->head || s->state != TS_SESSION_HTTP_HEAD)
        return H2R_ERR_ARG;
    /* msg1 can be written only once, so reject a bad host or a short buffer
     * first: the request has the same length whatever the frame holds. */
    memset(frame, 0, sizeof(frame));
    rc = ts_upgrade_request_build(host, user_agent, frame, sizeof(frame), out, cap, outlen);
    if (rc != 0)
        return rc;
    rc = session_write_init(s, frame);
    if (rc != 0)
        return rc;
    return ts_upgrade_request_build(host, user_agent, frame, sizeof(frame), out, cap, outlen);
}

int ts_session_server_accept(struct ts_session *s, const uint8_t control_priv[TS_KEY_LEN],
                             const uint8_t *init_frame, size_t len, uint8_t resp[TS_RESP_FRAME_LEN],
                             const struct ts_session_callbacks *cb, void *ud)
{
    const uint8_t *msg1 = NULL;
    size_t msg1_len = 0, msg2_len = 0;
    uint16_t version = 0;
    int rc;

    memset(s, 0, sizeof(*s));
    if (!cb || !cb->on_data)
        return H2R_ERR_ARG;
    rc = ts_init_frame_parse(init_frame, len, &version, &msg1, &msg1_len);
    if (rc != 0)
        return h2r_seterr(s->err, sizeof(s->err), rc, "ts2021: bad initiation frame");
    rc = ts_noise_init_responder(&s->noise, version, control_priv);
    if (rc != 0)
        goto fail_noise;
    rc = ts_noise_responder_read_msg1(&s->noise, msg1, msg1_len, NULL, 0, NULL);
    if (rc != 0)
        goto fail_noise;
    resp[0] = TS_FRAME_RESP;
    put_be16(resp + 1, TS_MSG2_LEN);
    rc = ts_noise_responder_write_msg2(&s->noise, NULL, 0, resp + TS_FRAME_HDR_LEN, TS_MSG2_LEN,
                                       &msg2_len);
    if (rc != 0)
        goto fail_noise;
    rc = ts_noise_split(&s->noise, &s->tx, &s->rx);
    if (rc != 0)
        goto fail_noise;
    s->have_keys = 1;
    session_common(s, TS_NOISE_RESPONDER, cb, ud);
    s->state = TS_SESSION_OPEN;
    return 0;

fail_noise:
    h2r_seterr(s->err, sizeof(s->err), rc, "ts2021: %s", s->noise.err);
    ts_noise_cleanup(&s->noise);
    return rc;
}

int ts_session_open_keys(struct ts_session *s, int role, const uint8_t tx_key[TS_KEY_LEN],
                         const uint8_t rx_key[TS_KEY_LEN], const struct ts_session_callbacks *cb,
                         void *ud)
{
    int rc;

    memset(s, 0, sizeof(*s));
    if (!cb || !cb->on_data || (role != TS_NOISE_INITIATOR && role != TS_NOISE_RESPONDER))
        return H2R_ERR_ARG;
    rc = ts_cipher_init(&s->tx, tx_key);
    if (rc != 0)
        return rc;
    rc = ts_cipher_init(&s->rx, rx_key);
    if (rc != 0)
        goto fail_tx;
    s->have_keys = 1;
    session_common(s, role, cb, ud);
    s->frames.expect_response = 0; /* the handshake happened elsewhere */
    s->state = TS_SESSION_OPEN;
    return 0;

fail_tx:
    ts_cipher_cleanup(&s->tx);
    return rc;
}

int ts_session_feed(struct ts_session *s, const uint8_t *buf, size_t len)
{
    int rc;

    if (s->rc != 0)
        return s->rc;
    if (s->state == TS_SESSION_HTTP_HEAD) {
        size_t used = 0;

        if (s->noise.step == 0)
            return H2R_ERR_ARG; /* the request was never built */
        rc = ts_http_resp_feed(s->head, buf, len, &used);
        if (rc != 0)
            return session_fail(s, rc, "ts2021: upgrade: %s", ts_http_resp_error(s->head));
        if (!ts_http_resp_done(s->head))
            return 0;
        s->state = TS_SESSION_HANDSHAKE;
        buf += used;
        len -= used;
    }
    rc = ts_frame_feed(&s->frames, buf, len);
    if (rc != 0 && s->rc == 0)
        session_fail(s, rc, "ts2021: %s", s->frames.err[0] ? s->frames.err : h2r_strerror(rc));
    return rc;
}

int ts_session_seal(struct ts_session *s, const uint8_t *pt, size_t len, uint8_t *out, size_t cap,
                    size_t *outlen)
{
    size_t records = len == 0 ? 1 : (len + TS_MAX_PLAINTEXT - 1) / TS_MAX_PLAINTEXT;
    int rc;

    if (s->rc != 0)
        return s->rc;
    if (s->state != TS_SESSION_OPEN)
        return H2R_ERR_ARG;
    rc = ts_record_seal(&s->tx, pt, len, out, cap, outlen);
    if (rc == H2R_ERR_ARG)
        return rc; /* buffer too small: nothing was consumed */
    if (rc != 0)
        return session_fail(s, rc, "ts2021: cannot seal a record");
    s->records_out += records;
    s->plain_out += len;
    return 0;
}

int ts_session_http_status(const struct ts_session *s)
{
    return s->head ? ts_http_resp_status(s->head) : 0;
}

void ts_session_cleanup(struct ts_session *s)
{
    if (!s)
        return;
    ts_noise_cleanup(&s->noise);
    ts_cipher_cleanup(&s->tx);
    ts_cipher_cleanup(&s->rx);
    ts_http_resp_free(s->head);
    s->head = NULL;
    ts_early_cleanup(&s->early);
    OPENSSL_cleanse(s->plain, sizeof(s->plain));
}
