/*
 * What rides inside TS2021's HTTP/2: the /machine/register and /machine/map
 * request bodies, the /machine/map response stream, and the keys they name
 * (tailscale tailcfg/tailcfg.go, control/controlclient/direct.go,
 * types/key; headscale hscontrol/poll.go).
 *
 * A streaming map response is a sequence of messages, each a LITTLE-endian
 * u32 length and that many bytes of body - one independent zstd frame when
 * the request said Compress "zstd", raw JSON otherwise - holding one
 * tailcfg.MapResponse. (Note the mixed byte orders: Noise headers are BE16,
 * the EarlyNoise length BE32, this length LE32.) The server interleaves
 * {"KeepAlive":true} messages every 50-59 s when nothing else is sent; the
 * first other message is the full netmap, later ones are deltas.
 *
 * The TS client trusts the length prefix and the decompressed size. This
 * decoder does not: the prefix is capped before anything is buffered, zstd
 * output is capped while it is produced (a small frame can inflate without
 * bound), the zstd window is capped so a hostile frame header cannot make
 * the decoder allocate a large history buffer, and jansson's nesting limit
 * bounds the JSON. Messages that arrive whole in one feed are decoded in
 * place; only split ones are copied.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <zstd.h>

#include "ts2021.h"

#define MAP_LEN_BYTES 4        /* u32 little-endian; the body is RFC 8878 zstd or RFC 8259 JSON */
#define ZSTD_WINDOW_LOG_MAX 24 /* 16 MiB history: more than Go's zstd writer uses */
#define JSON_INITIAL_CAP (64u << 10)
#define SCRATCH_KEEP_CAP (1u << 20)  /* ts_map_scratch_trim() frees a larger output buffer */

/* zstd state and the decompression output: owned by one decoder, or shared (opts.scratch). */
struct ts_map_scratch {
    ZSTD_DCtx *zd;
    uint8_t *json;
    size_t json_cap;
};

struct ts_map_decoder {
    ts_map_cb cb;
    void *ud;
    int compressed;
    size_t max_frame;
    size_t max_json;
    int rc; /* sticky error */
    uint8_t hdr[MAP_LEN_BYTES];
    size_t hdr_have;
    size_t frame_len; /* body length of the message in progress */
    uint8_t *frame;   /* split bodies only */
    size_t frame_have, frame_cap;
    struct ts_map_scratch own; /* used when no scratch was lent */
    struct ts_map_scratch *sc; /* &own or the lent one */
    struct ts_map_stats stats;
    char err[160];
};

__attribute__((format(printf, 3, 4))) static int map_fail(struct ts_map_decoder *d, int rc,
                                                          const char *fmt, ...)
{
    va_list ap;

    if (d->rc == 0) {
        d->rc = rc;
        va_start(ap, fmt);
        vsnprintf(d->err, sizeof(d->err), fmt, ap);
        va_end(ap);
    }
    return d->rc;
}

/* ---- decoder ---- */

int ts_map_decoder_new(struct ts_map_decoder **out, const struct ts_map_opts *o, ts_map_cb cb,
                       void *ud)
{
    struct ts_map_decoder *d;

    *out = NULL;
    if (!cb)
        return H2R_ERR_ARG;
    d = calloc(1, sizeof(*d));
    if (!d)
        return H2R_ERR_NOMEM;
    d->cb = cb;
    d->ud = ud;
    d->compressed = o && o->compressed;
    d->max_frame = o && o->max_frame ? o->max_frame : TS_MAP_MAX_FRAME_DEFAULT;
    d->max_json = o && o->max_json ? o->max_json : TS_MAP_MAX_JSON_DEFAULT;
    d->stats.last_peers = -1;
    d->sc = o && o->scratch ? o->scratch : &d->own;
    if (d->compressed && !d->sc->zd) {
        d->own.zd = ZSTD_createDCtx();
        if (!d->own.zd)
            goto fail_decoder;
        if (ZSTD_isError(
                ZSTD_DCtx_setParameter(d->own.zd, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX)))
            goto fail_dctx;
        d->sc = &d->own;
    }
    *out = d;
    return 0;

fail_dctx:
    ZSTD_freeDCtx(d->own.zd);
fail_decoder:
    free(d);
    return H2R_ERR_NOMEM;
}

int ts_map_scratch_new(struct ts_map_scratch **out)
{
    struct ts_map_scratch *s;

    *out = NULL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return H2R_ERR_NOMEM;
    s->zd = ZSTD_createDCtx();
    if (!s->zd)
        goto fail_scratch;
    if (ZSTD_isError(ZSTD_DCtx_setParameter(s->zd, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX)))
        goto fail_dctx;
    *out = s;
    return 0;

fail_dctx:
    ZSTD_freeDCtx(s->zd);
fail_scratch:
    free(s);
    return H2R_ERR_NOMEM;
}

void ts_map_scratch_trim(struct ts_map_scratch *s)
{
    if (s && s->json_cap > SCRATCH_KEEP_CAP) {
        free(s->json);
        s->json = NULL;
        s->json_cap = 0;
    }
}

void ts_map_scratch_free(struct ts_map_scratch *s)
{
    if (!s)
        return;
    ZSTD_freeDCtx(s->zd);
    free(s->json);
    free(s);
}

void ts_map_decoder_free(struct ts_map_decoder *d)
{
    if (!d)
        return;
    ZSTD_freeDCtx(d->own.zd);
    free(d->frame);
    free(d->own.json);
    free(d);
}

/* Grows *buf (capacity *cap) to hold want bytes, doubling, never past limit. */
static int grow(uint8_t **buf, size_t *cap, size_t want, size_t limit)
{
    size_t n = *cap ? *cap : JSON_INITIAL_CAP;
    uint8_t *nb;

    if (want <= *cap)
        return 0;
    if (want > limit)
        return H2R_ERR_LIMIT;
    while (n < want)
        n = n > SIZE_MAX / 2 ? want : n * 2;
    if (n > limit)
        n = limit;
    nb = realloc(*buf, n);
    if (!nb)
        return H2R_ERR_NOMEM;
    *buf = nb;
    *cap = n;
    return 0;
}

/* Decompresses one message body into d->json; *out_len the JSON size. */
static int inflate_body(struct ts_map_decoder *d, const uint8_t *body, size_t len, size_t *out_len)
{
    struct ts_map_scratch *sc = d->sc;
    ZSTD_inBuffer in = {body, len, 0};
    ZSTD_outBuffer out;
    size_t ret;
    int rc;

    /* a shared context may hold another decoder's failed frame: always start clean */
    ZSTD_DCtx_reset(sc->zd, ZSTD_reset_session_only);
    rc = grow(&sc->json, &sc->json_cap, 1, d->max_json);
    if (rc != 0)
        return map_fail(d, rc, "map: cannot allocate the decompression buffer");
    /* a shared buffer may be larger than this decoder's cap: never offer zstd more */
    out.dst = sc->json;
    out.size = sc->json_cap < d->max_json ? sc->json_cap : d->max_json;
    out.pos = 0;
    for (;;) {
        if (out.pos == out.size) {
            rc = out.size >= d->max_json ? H2R_ERR_LIMIT
                                         : grow(&sc->json, &sc->json_cap, out.size + 1, SIZE_MAX);
            if (rc != 0)
                return map_fail(d, rc, "map: message inflates past %zu bytes (%zu compressed)",
                                d->max_json, len);
            out.dst = sc->json;
            out.size = sc->json_cap < d->max_json ? sc->json_cap : d->max_json;
        }
        ret = ZSTD_decompressStream(sc->zd, &out, &in);
        if (ZSTD_isError(ret))
            return map_fail(d, H2R_ERR_COMPRESS, "map: zstd: %s", ZSTD_getErrorName(ret));
        if (ret == 0 && in.pos == in.size)
            break; /* last frame complete, all input used */
        if (in.pos == in.size && out.pos < out.size)
            return map_fail(d, H2R_ERR_COMPRESS, "map: zstd frame truncated (%zu bytes)", len);
    }
    *out_len = out.pos;
    return 0;
}

static int64_t array_len(json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);

    return json_is_array(v) ? (int64_t)json_array_size(v) : -1;
}

/* Decodes one complete message body and hands it to the callback. */
static int map_message(struct ts_map_decoder *d, const uint8_t *body, size_t len)
{
    struct ts_map_msg m;
    json_error_t jerr;
    json_t *root, *seq;
    const char *json = (const char *)body;
    size_t json_len = len;
    int rc;

    if (d->compressed) {
        rc = inflate_body(d, body, len, &json_len);
        if (rc != 0)
            return rc;
        json = (const char *)d->sc->json;
    }
    root = json_loadb(json, json_len, 0, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        return map_fail(d, H2R_ERR_FORMAT, "map: message %llu is not a JSON object: %s",
                        (unsigned long long)d->stats.messages, root ? "wrong type" : jerr.text);
    }
    memset(&m, 0, sizeof(m));
    m.index = d->stats.messages;
    m.keepalive = json_is_true(json_object_get(root, "KeepAlive"));
    m.has_node = json_is_object(json_object_get(root, "Node"));
    m.peers = array_len(root, "Peers");
    m.peers_changed = array_len(root, "PeersChanged");
    m.peers_removed = array_len(root, "PeersRemoved");
    seq = json_object_get(root, "Seq");
    m.seq = json_is_integer(seq) ? (int64_t)json_integer_value(seq) : -1;
    m.wire_len = len;
    m.json = json;
    m.json_len = json_len;
    d->stats.messages++;
    d->stats.json_bytes += json_len;
    if (m.keepalive) {
        d->stats.keepalives++;
    } else {
        m.initial = d->stats.netmaps == 0;
        m.netmap_seq = ++d->stats.netmaps;
    }
    if (m.peers >= 0)
        d->stats.last_peers = m.peers;
    rc = d->cb(d->ud, &m, root);
    json_decref(root);
    if (rc != 0)
        d->rc = rc;
    return rc;
}

static int map_header(struct ts_map_decoder *d)
{
    /* poll.go writeMap / direct.go: binary.LittleEndian.PutUint32 */
    uint32_t n = (uint32_t)d->hdr[0] | (uint32_t)d->hdr[1] << 8 | (uint32_t)d->hdr[2] << 16 |
                 (uint32_t)d->hdr[3] << 24;

    if (n == 0)
        return map_fail(d, H2R_ERR_FORMAT, "map: empty message %llu",
                        (unsigned long long)d->stats.messages);
    if (n > d->max_frame)
        return map_fail(d, H2R_ERR_LIMIT, "map: message of %lu bytes (cap %zu)", (unsigned long)n,
                        d->max_frame);
    d->frame_len = n;
    d->frame_have = 0;
    return 0;
}

int ts_map_feed(struct ts_map_decoder *d, const uint8_t *buf, size_t len)
{
    int rc;

    if (d->rc != 0)
        return d->rc;
    d->stats.wire_bytes += len;
    while (len > 0) {
        size_t n;

        if (d->hdr_have < MAP_LEN_BYTES) {
            n = MAP_LEN_BYTES - d->hdr_have;
            if (n > len)
                n = len;
            memcpy(d->hdr + d->hdr_have, buf, n);
            d->hdr_have += n;
            buf += n;
            len -= n;
            if (d->hdr_have < MAP_LEN_BYTES)
                break;
            rc = map_header(d);
            if (rc != 0)
                return rc;
            if (len == 0)
                break; /* the body starts in a later feed */
        }
        if (d->frame_have == 0 && len >= d->frame_len) {
            n = d->frame_len;
            d->hdr_have = 0;
            rc = map_message(d, buf, n); /* whole body in the caller's buffer */
            if (rc != 0)
                return rc;
            buf += n;
            len -= n;
            continue;
        }
        n = d->frame_len - d->frame_have;
        if (n > len)
            n = len;
        /* Grow with what arrived, not with what the prefix promises. */
        rc = grow(&d->frame, &d->frame_cap, d->frame_have + n, d->max_frame);
        if (rc != 0)
            return map_fail(d, rc, "map: cannot buffer a %zu-byte message", d->frame_len);
        memcpy(d->frame + d->frame_have, buf, n);
        d->frame_have += n;
        buf += n;
        len -= n;
        if (d->frame_have == d->frame_len) {
            d->hdr_have = 0;
            d->frame_have = 0;
            rc = map_message(d, d->frame, d->frame_len);
            /* a held stream is idle nearly all the time: it keeps no buffer between
             * messages (thousands of them would otherwise pin 64 KiB or a netmap each) */
            free(d->frame);
            d->frame = NULL;
            d->frame_cap = 0;
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

int ts_map_idle(const struct ts_map_decoder *d)
{
    return d->hdr_have == 0;
}

const struct ts_map_stats *ts_map_decoder_stats(const struct ts_map_decoder *d)
{
    return &d->stats;
}

const char *ts_map_decoder_error(const struct ts_map_decoder *d)
{
    return d->err;
}

/* ---- keys (types/key: "<prefix><64 lowercase hex>") ---- */

int ts_keypair_from_private(struct ts_keypair *kp, const uint8_t priv[TS_KEY_LEN])
{
    memcpy(kp->priv, priv, TS_KEY_LEN);
    return ts_x25519_public(kp->priv, kp->pub);
}

int ts_keypair_generate(struct ts_keypair *kp)
{
    uint8_t priv[TS_KEY_LEN];
    int rc;

    if (RAND_bytes(priv, TS_KEY_LEN) != 1)
        return H2R_ERR_PROTO;
    /* RFC 7748 section 5 clamping, as key.NewMachine() / NewNode() do at creation. */
    priv[0] &= 248;
    priv[31] = (uint8_t)((priv[31] & 127) | 64);
    rc = ts_keypair_from_private(kp, priv);
    OPENSSL_cleanse(priv, sizeof(priv));
    return rc;
}

int ts_key_format(const char *prefix, const uint8_t key[TS_KEY_LEN], char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t plen = strlen(prefix);

    if (cap < plen + TS_KEY_HEX_LEN + 1)
        return H2R_ERR_ARG;
    memcpy(out, prefix, plen);
    for (size_t i = 0; i < TS_KEY_LEN; i++) {
        out[plen + 2 * i] = hex[key[i] >> 4];
        out[plen + 2 * i + 1] = hex[key[i] & 15];
    }
    out[plen + TS_KEY_HEX_LEN] = '\0';
    return 0;
}

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int ts_key_parse(const char *prefix, const char *text, size_t len, uint8_t key[TS_KEY_LEN])
{
    uint8_t tmp[TS_KEY_LEN];
    size_t plen = strlen(prefix);

    while (len > 0 && is_space(text[0])) {
        text++;
        len--;
    }
    while (len > 0 && is_space(text[len - 1]))
        len--;
    if (len != plen + TS_KEY_HEX_LEN || memcmp(text, prefix, plen) != 0)
        return H2R_ERR_FORMAT;
    text += plen;
    for (size_t i = 0; i < TS_KEY_LEN; i++) {
        int hi = hex_nibble(text[2 * i]), lo = hex_nibble(text[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return H2R_ERR_FORMAT;
        tmp[i] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(key, tmp, TS_KEY_LEN);
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return 0;
}

/* ---- request bodies ---- */

/* Sets key to v (stealing it); a NULL v (failed allocation) makes it fail. */
static int put(json_t *o, const char *key, json_t *v)
{
    if (!v)
        return -1;
    return json_object_set_new(o, key, v);
}

static int put_key(json_t *o, const char *name, const char *prefix, const uint8_t *key)
{
    static const uint8_t zero[TS_KEY_LEN];
    char text[TS_KEY_TEXT_MAX];

    if (ts_key_format(prefix, key ? key : zero, text, sizeof(text)) != 0)
        return -1;
    return put(o, name, json_string(text));
}

static int put_str(json_t *o, const char *name, const char *value)
{
    return value ? put(o, name, json_string(value)) : 0;
}

/* tailcfg.Hostinfo: every field omitempty. */
static json_t *hostinfo_json(const struct ts_hostinfo *h)
{
    json_t *o = json_object();
    int bad = 0;

    if (!o)
        return NULL;
    bad |= put_str(o, "IPNVersion", h->ipn_version);
    bad |= put_str(o, "FrontendLogID", h->frontend_log_id);
    bad |= put_str(o, "BackendLogID", h->backend_log_id);
    bad |= put_str(o, "OS", h->os);
    bad |= put_str(o, "OSVersion", h->os_version);
    bad |= put_str(o, "App", h->app);
    bad |= put_str(o, "Hostname", h->hostname);
    bad |= put_str(o, "GoArch", h->go_arch);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int dump(json_t *root, int bad, char **out, size_t *len)
{
    char *s = NULL;

    if (!bad)
        s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!s)
        return H2R_ERR_NOMEM;
    *out = s;
    *len = strlen(s);
    return 0;
}

int ts_register_request_json(const struct ts_register_req *r, char **out, size_t *len)
{
    json_t *root, *auth;
    int bad = 0;

    *out = NULL;
    if (!r->node_key)
        return H2R_ERR_ARG;
    root = json_object();
    if (!root)
        return H2R_ERR_NOMEM;
    /* Field order of tailcfg.RegisterRequest. */
    bad |= put(root, "Version", json_integer(r->version));
    bad |= put_key(root, "NodeKey", TS_PREFIX_NODE, r->node_key);
    bad |= put_key(root, "OldNodeKey", TS_PREFIX_NODE, r->old_node_key);
    if (r->auth_key) {
        auth = json_object();
        bad |= put_str(auth, "AuthKey", r->auth_key);
        bad |= put(root, "Auth", auth);
    }
    bad |= put_str(root, "Expiry", r->expiry);
    bad |= put_str(root, "Followup", r->followup);
    if (r->hostinfo)
        bad |= put(root, "Hostinfo", hostinfo_json(r->hostinfo));
    if (r->ephemeral)
        bad |= put(root, "Ephemeral", json_true());
    return dump(root, bad, out, len);
}

int ts_map_request_json(const struct ts_map_req *r, char **out, size_t *len)
{
    json_t *root, *eps;
    int bad = 0;

    *out = NULL;
    if (!r->node_key || (r->n_endpoints > 0 && !r->endpoints))
        return H2R_ERR_ARG;
    root = json_object();
    if (!root)
        return H2R_ERR_NOMEM;
    /* Field order of tailcfg.MapRequest. */
    bad |= put(root, "Version", json_integer(r->version));
    if (r->compress_zstd)
        bad |= put(root, "Compress", json_string("zstd"));
    bad |= put(root, "KeepAlive", json_boolean(r->keepalive));
    bad |= put_key(root, "NodeKey", TS_PREFIX_NODE, r->node_key);
    bad |= put_key(root, "DiscoKey", TS_PREFIX_DISCO, r->disco_key);
    bad |= put(root, "Stream", json_boolean(r->stream));
    if (r->hostinfo)
        bad |= put(root, "Hostinfo", hostinfo_json(r->hostinfo));
    if (r->n_endpoints > 0) {
        eps = json_array();
        for (size_t i = 0; eps && i < r->n_endpoints; i++)
            bad |= json_array_append_new(eps, json_string(r->endpoints[i]));
        bad |= put(root, "Endpoints", eps);
    }
    bad |= put(root, "OmitPeers", json_boolean(r->omit_peers));
    return dump(root, bad, out, len);
}

/* ---- RegisterResponse ---- */

static void copy_str(char *dst, size_t cap, json_t *v)
{
    const char *s = json_is_string(v) ? json_string_value(v) : "";

    snprintf(dst, cap, "%s", s);
}

int ts_register_response_parse(const uint8_t *body, size_t len, struct ts_register_resp *out)
{
    json_t *root = json_loadb((const char *)body, len, 0, NULL);

    memset(out, 0, sizeof(*out));
    if (!json_is_object(root)) {
        json_decref(root);
        return H2R_ERR_FORMAT;
    }
    out->machine_authorized = json_is_true(json_object_get(root, "MachineAuthorized"));
    out->node_key_expired = json_is_true(json_object_get(root, "NodeKeyExpired"));
    copy_str(out->error, sizeof(out->error), json_object_get(root, "Error"));
    copy_str(out->auth_url, sizeof(out->auth_url), json_object_get(root, "AuthURL"));
    copy_str(out->login_name, sizeof(out->login_name),
             json_object_get(json_object_get(root, "Login"), "LoginName"));
    json_decref(root);
    return 0;
}
