/*
 * Passive HTTP/2 frame decoder (RFC 9113) with HPACK state tracking (RFC 7541).
 *
 * An observer sees both byte streams of a connection but is party to
 * neither, so this decoder accepts what the endpoints accepted and gives up
 * (H2R_ERR_PROTO) only where the endpoints themselves could not continue:
 * broken framing or a header block that fails to decompress. Frames are
 * parsed as a byte-wise state machine per direction: the 9-byte frame header
 * and the few fixed fields a frame starts with (pad length, priority, promised
 * stream, GOAWAY ids) go into small fixed buffers; DATA payload is handed to
 * the callback as it arrives and padding is skipped in place. The only buffer
 * that grows from wire input is the encoded header block (HEADERS + PUSH_PROMISE
 * + CONTINUATION), capped at CAP_H2_MAX_HEADER_BLOCK, so a 16 MiB frame never
 * costs 16 MiB of memory per connection. The length field is still checked
 * against the frame cap (CAP_H2_MAX_FRAME, lowerable for tests).
 *
 * HPACK: one nghttp2 inflater per direction, each decoding the header blocks
 * sent in that direction. SETTINGS_HEADER_TABLE_SIZE sent by one endpoint
 * bounds the other endpoint's encoder, so it is applied to the inflater of the
 * opposite direction. A decrease is applied when that opposite direction's
 * SETTINGS ACK is seen: RFC 9113 §6.5.3 makes the peer apply settings and then
 * acknowledge immediately, so the ACK's position in the peer's byte stream is
 * exactly where its header blocks start honouring the new limit (RFC 7541
 * §4.2, the table size update opening the next block). Applying it when first
 * seen would evict entries that blocks already in flight still reference. An
 * increase only raises the ceiling an encoder may use, so it is applied as
 * soon as it is seen too, which tolerates small misorderings between the two
 * directions in a capture.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "h2replay/cursor.h"
#include "cap_h2.h"
#include "cap_session.h"

/* RFC 9113 §3.4: the client connection preface. */
static const uint8_t client_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN 24u

/* RFC 9113 §6: frame types and flags. */
enum frame_type {
    FT_DATA = 0x0,
    FT_HEADERS = 0x1,
    FT_PRIORITY = 0x2,
    FT_RST_STREAM = 0x3,
    FT_SETTINGS = 0x4,
    FT_PUSH_PROMISE = 0x5,
    FT_PING = 0x6,
    FT_GOAWAY = 0x7,
    FT_WINDOW_UPDATE = 0x8,
    FT_CONTINUATION = 0x9
};

#define FL_END_STREAM 0x01u
#define FL_ACK 0x01u
#define FL_END_HEADERS 0x04u
#define FL_PADDED 0x08u
#define FL_PRIORITY 0x20u

#define FRAME_HDR_LEN 9u
#define SETTINGS_ENTRY_LEN 6u
#define SETTINGS_HEADER_TABLE_SIZE 0x1u

enum dir_state { DS_PREFACE, DS_FRAME_HDR, DS_PAYLOAD };

/* What the bytes between a frame's fixed prefix and its padding are. */
enum body_kind { BK_SKIP, BK_DATA, BK_BLOCK, BK_SETTINGS };

/* SETTINGS_HEADER_TABLE_SIZE values of one SETTINGS frame (§6.5.3 processes them in order;
 * RFC 7541 §4.2 then requires the smallest one to be signalled first). */
struct table_size_change {
    int present;
    uint32_t min;
    uint32_t last;
};

struct h2_dir {
    enum dir_state state;
    uint32_t preface_got;

    uint8_t fh[FRAME_HDR_LEN];
    uint32_t fh_got;
    int64_t frame_ts_first;

    /* Current frame (RFC 9113 §4.1). */
    uint32_t len;
    uint8_t type;
    uint8_t flags;
    uint32_t sid;
    uint32_t remaining; /* payload bytes not yet consumed */
    uint8_t pre[8];     /* fixed fields at the start of the payload */
    uint32_t pre_need;
    uint32_t pre_got;
    uint32_t body_left; /* bytes after the fixed fields, before the padding */
    enum body_kind body_kind;

    uint8_t ent[SETTINGS_ENTRY_LEN];
    uint32_t ent_got;
    struct table_size_change cur_settings;

    /* Header block being assembled (HEADERS or PUSH_PROMISE plus CONTINUATIONs). */
    uint8_t *block;
    size_t block_len;
    size_t block_cap;
    int awaiting_continuation;
    uint8_t block_type;
    uint32_t block_sid;
    int block_end_stream;
    int64_t block_ts_first;

    nghttp2_hd_inflater *inflater; /* decodes the header blocks sent in this direction */
    size_t applied_table_size;

    /* SETTINGS sent in this direction and not yet acknowledged by the peer, oldest first. */
    struct table_size_change pending[CAP_H2_MAX_PENDING_SETTINGS];
    uint32_t pending_head;
    uint32_t pending_n;
};

/* Decoded header list of the block being emitted; offsets until complete (buf may move). */
struct hdr_span {
    size_t name_off;
    size_t name_len;
    size_t value_off;
    size_t value_len;
};

struct cap_h2 {
    struct cap_h2_callbacks cb;
    void *ud;
    struct cap_session_stats *st;
    uint32_t max_frame;
    int dead;
    char errmsg[128];
    struct h2_dir dir[2];

    uint8_t *hbuf;
    size_t hbuf_len;
    size_t hbuf_cap;
    struct hdr_span *spans;
    struct h2r_hdr *hdrs;
    size_t n_hdrs;
    size_t hdrs_cap;
};

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static int fail(struct cap_h2 *h, const char *why)
{
    h->dead = 1;
    snprintf(h->errmsg, sizeof(h->errmsg), "%s", why);
    return H2R_ERR_PROTO;
}

const char *cap_h2_error_code_name(uint32_t code)
{
    /* RFC 9113 §7. */
    static const char *const names[] = {"NO_ERROR",
                                        "PROTOCOL_ERROR",
                                        "INTERNAL_ERROR",
                                        "FLOW_CONTROL_ERROR",
                                        "SETTINGS_TIMEOUT",
                                        "STREAM_CLOSED",
                                        "FRAME_SIZE_ERROR",
                                        "REFUSED_STREAM",
                                        "CANCEL",
                                        "COMPRESSION_ERROR",
                                        "CONNECT_ERROR",
                                        "ENHANCE_YOUR_CALM",
                                        "INADEQUATE_SECURITY",
                                        "HTTP_1_1_REQUIRED"};
    if (code < sizeof(names) / sizeof(names[0]))
        return names[code];
    return NULL;
}

struct cap_h2 *cap_h2_new(const struct cap_h2_callbacks *cb, void *ud, struct cap_session_stats *st)
{
    struct cap_h2 *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    if (cb)
        h->cb = *cb;
    h->ud = ud;
    h->st = st;
    h->max_frame = CAP_H2_MAX_FRAME;
    for (int i = 0; i < 2; i++) {
        if (nghttp2_hd_inflate_new(&h->dir[i].inflater) != 0)
            goto fail_inflaters;
        /* RFC 9113 §6.5.2: SETTINGS_HEADER_TABLE_SIZE starts at 4096. */
        h->dir[i].applied_table_size = 4096;
        h->dir[i].state = DS_FRAME_HDR;
    }
    h->dir[CAP_DIR_C2S].state = DS_PREFACE;
    return h;

fail_inflaters:
    for (int i = 0; i < 2; i++) {
        if (h->dir[i].inflater)
            nghttp2_hd_inflate_del(h->dir[i].inflater);
    }
    free(h);
    return NULL;
}

void cap_h2_free(struct cap_h2 *h)
{
    if (!h)
        return;
    for (int i = 0; i < 2; i++) {
        if (h->dir[i].inflater)
            nghttp2_hd_inflate_del(h->dir[i].inflater);
        free(h->dir[i].block);
    }
    free(h->hbuf);
    free(h->spans);
    free(h->hdrs);
    free(h);
}

void cap_h2_set_max_frame(struct cap_h2 *h, uint32_t max_frame)
{
    h->max_frame = max_frame ? max_frame : CAP_H2_MAX_FRAME;
}

const char *cap_h2_errmsg(const struct cap_h2 *h)
{
    return h->errmsg;
}

/* ---- HPACK table size tracking ---- */

static int set_table_size(struct cap_h2 *h, struct h2_dir *d, size_t size)
{
    int rv = nghttp2_hd_inflate_change_table_size(d->inflater, size);
    if (rv == NGHTTP2_ERR_NOMEM)
        return H2R_ERR_NOMEM;
    if (rv != 0)
        return fail(h, "cannot change HPACK table size mid-block");
    d->applied_table_size = size;
    return 0;
}

/* Applies one acknowledged SETTINGS frame's table size values to the inflater d. */
static int apply_table_size_change(struct cap_h2 *h, struct h2_dir *d,
                                   const struct table_size_change *t)
{
    int rc;
    if (!t->present)
        return 0;
    if (t->min != t->last) {
        rc = set_table_size(h, d, t->min);
        if (rc != 0)
            return rc;
    }
    return set_table_size(h, d, t->last);
}

/* SETTINGS (non-ACK) completed in direction sender. */
static int settings_sent(struct cap_h2 *h, int sender, const struct table_size_change *t)
{
    struct h2_dir *s = &h->dir[sender];
    struct h2_dir *peer = &h->dir[!sender];
    if (s->pending_n == CAP_H2_MAX_PENDING_SETTINGS) {
        /* The peer never acknowledges: apply now rather than grow without bound. */
        return apply_table_size_change(h, peer, t);
    }
    s->pending[(s->pending_head + s->pending_n) % CAP_H2_MAX_PENDING_SETTINGS] = *t;
    s->pending_n++;
    if (t->present && t->min >= peer->applied_table_size && t->last > peer->applied_table_size)
        return set_table_size(h, peer, t->last);
    return 0;
}

/* SETTINGS ACK seen in direction acker: the acker's encoder now honours the oldest pending
 * SETTINGS of the other direction. */
static int settings_acked(struct cap_h2 *h, int acker)
{
    struct h2_dir *s = &h->dir[!acker];
    struct table_size_change t;
    if (s->pending_n == 0)
        return 0; /* e.g. joined after the SETTINGS: nothing to apply */
    t = s->pending[s->pending_head];
    s->pending_head = (s->pending_head + 1) % CAP_H2_MAX_PENDING_SETTINGS;
    s->pending_n--;
    return apply_table_size_change(h, &h->dir[acker], &t);
}

/* RFC 9113 §6.5.1: one 6-byte setting (identifier, value). */
static void settings_entry(struct table_size_change *t, const uint8_t *ent)
{
    struct h2r_cursor c = {ent, SETTINGS_ENTRY_LEN};
    uint16_t id = 0;
    uint32_t value = 0;
    if (h2r_cur_be16(&c, &id) != 0 || h2r_cur_be32(&c, &value) != 0)
        return;
    if (id != SETTINGS_HEADER_TABLE_SIZE)
        return;
    if (!t->present || value < t->min)
        t->min = value;
    t->last = value;
    t->present = 1;
}

int cap_h2_apply_settings(struct cap_h2 *h, int sender, const uint8_t *payload, size_t len)
{
    struct table_size_change t = {0, 0, 0};
    if (sender != CAP_DIR_C2S && sender != CAP_DIR_S2C)
        return H2R_ERR_ARG;
    if (h->dead)
        return H2R_ERR_PROTO;
    /* RFC 9113 §6.5: a multiple of 6 octets. */
    if (len % SETTINGS_ENTRY_LEN != 0)
        return H2R_ERR_PROTO;
    for (size_t off = 0; off < len; off += SETTINGS_ENTRY_LEN)
        settings_entry(&t, payload + off);
    return apply_table_size_change(h, &h->dir[!sender], &t);
}

/* ---- header blocks ---- */

/* Copies one decoded field; returns 1 when a cap is hit (field dropped), 0, or NOMEM. */
static int hdr_add(struct cap_h2 *h, const nghttp2_nv *nv)
{
    size_t need = nv->namelen + nv->valuelen;
    if (h->n_hdrs == CAP_H2_MAX_HEADERS || need > CAP_H2_MAX_HEADER_LIST - h->hbuf_len)
        return 1;
    if (h->n_hdrs == h->hdrs_cap) {
        size_t ncap = h->hdrs_cap ? h->hdrs_cap * 2 : 32;
        struct hdr_span *ns = realloc(h->spans, ncap * sizeof(*ns));
        if (!ns)
            return H2R_ERR_NOMEM;
        h->spans = ns;
        struct h2r_hdr *nh = realloc(h->hdrs, ncap * sizeof(*nh));
        if (!nh)
            return H2R_ERR_NOMEM;
        h->hdrs = nh;
        h->hdrs_cap = ncap;
    }
    if (need > h->hbuf_cap - h->hbuf_len) {
        size_t ncap = h->hbuf_cap ? h->hbuf_cap : 1024;
        while (ncap - h->hbuf_len < need)
            ncap *= 2;
        uint8_t *nb = realloc(h->hbuf, ncap);
        if (!nb)
            return H2R_ERR_NOMEM;
        h->hbuf = nb;
        h->hbuf_cap = ncap;
    }
    struct hdr_span *sp = &h->spans[h->n_hdrs++];
    sp->name_off = h->hbuf_len;
    sp->name_len = nv->namelen;
    if (nv->namelen)
        memcpy(h->hbuf + h->hbuf_len, nv->name, nv->namelen);
    h->hbuf_len += nv->namelen;
    sp->value_off = h->hbuf_len;
    sp->value_len = nv->valuelen;
    if (nv->valuelen)
        memcpy(h->hbuf + h->hbuf_len, nv->value, nv->valuelen);
    h->hbuf_len += nv->valuelen;
    return 0;
}

/* RFC 7541 §3: decompresses the assembled block of d and reports it. */
static int decode_block(struct cap_h2 *h, int dirn, int64_t ts)
{
    struct h2_dir *d = &h->dir[dirn];
    const uint8_t *in = d->block;
    size_t inlen = d->block_len;
    unsigned flags = 0;
    int rc = 0;

    h->n_hdrs = 0;
    h->hbuf_len = 0;
    for (;;) {
        nghttp2_nv nv;
        int inflate_flags = 0;
        ssize_t rv = nghttp2_hd_inflate_hd2(d->inflater, &nv, &inflate_flags, in, inlen, 1);
        if (rv == NGHTTP2_ERR_NOMEM)
            return H2R_ERR_NOMEM;
        if (rv < 0) {
            h->st->h2_hpack_errors++;
            return fail(h, "HPACK decompression failed (RFC 7541)");
        }
        if (rv > 0) { /* an empty block has in == NULL: no NULL + 0 (C11 6.5.6) */
            in += rv;
            inlen -= (size_t)rv;
        }
        if (inflate_flags & NGHTTP2_HD_INFLATE_EMIT) {
            rc = hdr_add(h, &nv);
            if (rc < 0)
                return rc;
            if (rc == 1)
                flags |= CAP_H2_HDR_TRUNCATED;
        }
        if (inflate_flags & NGHTTP2_HD_INFLATE_FINAL) {
            nghttp2_hd_inflate_end_headers(d->inflater);
            break;
        }
        if (!(inflate_flags & NGHTTP2_HD_INFLATE_EMIT) && inlen == 0) {
            h->st->h2_hpack_errors++;
            return fail(h, "HPACK block ended mid-field");
        }
    }

    d->awaiting_continuation = 0;
    d->block_len = 0;
    if (d->block_cap > (1u << 16)) {
        free(d->block);
        d->block = NULL;
        d->block_cap = 0;
    }
    if (flags & CAP_H2_HDR_TRUNCATED)
        h->st->h2_header_list_truncated++;
    if (d->block_type == FT_PUSH_PROMISE) {
        h->st->h2_push_promise++;
        return 0;
    }
    /* Only empty names and values so far: hbuf may still be NULL. */
    const uint8_t *base = h->hbuf ? h->hbuf : (const uint8_t *)"";
    for (size_t i = 0; i < h->n_hdrs; i++) {
        h->hdrs[i].name = base + h->spans[i].name_off;
        h->hdrs[i].name_len = (uint32_t)h->spans[i].name_len;
        h->hdrs[i].value = base + h->spans[i].value_off;
        h->hdrs[i].value_len = (uint32_t)h->spans[i].value_len;
    }
    if (d->block_end_stream)
        flags |= CAP_H2_HDR_END_STREAM;
    if (!h->cb.on_headers)
        return 0;
    return h->cb.on_headers(h->ud, dirn, d->block_sid, h->hdrs, h->n_hdrs, flags, d->block_ts_first,
                            ts);
}

static int block_append(struct cap_h2 *h, struct h2_dir *d, const uint8_t *p, size_t n)
{
    if (n > CAP_H2_MAX_HEADER_BLOCK - d->block_len) {
        h->st->h2_header_block_too_large++;
        return fail(h, "header block over the 1 MiB cap");
    }
    if (n > d->block_cap - d->block_len) {
        size_t ncap = d->block_cap ? d->block_cap : 4096;
        while (ncap - d->block_len < n)
            ncap *= 2;
        if (ncap > CAP_H2_MAX_HEADER_BLOCK)
            ncap = CAP_H2_MAX_HEADER_BLOCK;
        uint8_t *nb = realloc(d->block, ncap);
        if (!nb)
            return H2R_ERR_NOMEM;
        d->block = nb;
        d->block_cap = ncap;
    }
    memcpy(d->block + d->block_len, p, n);
    d->block_len += n;
    return 0;
}

/* ---- frames ---- */

/* The fixed fields are in: RFC 9113 §6.1/§6.2/§6.6 pad length validation. */
static int prefix_done(struct cap_h2 *h, struct h2_dir *d)
{
    uint32_t pad = 0;
    if ((d->type == FT_DATA || d->type == FT_HEADERS || d->type == FT_PUSH_PROMISE) &&
        (d->flags & FL_PADDED))
        pad = d->pre[0];
    if (pad > d->remaining)
        return fail(h, "padding longer than the frame payload");
    d->body_left = d->remaining - pad;
    return 0;
}

/* RFC 9113 §4.1: parses the 9-byte frame header and validates it against §6. */
static int begin_frame(struct cap_h2 *h, int dirn)
{
    struct h2_dir *d = &h->dir[dirn];
    struct h2r_cursor c = {d->fh, FRAME_HDR_LEN};
    uint32_t sid = 0;
    int padded;

    if (h2r_cur_be24(&c, &d->len) != 0 || h2r_cur_u8(&c, &d->type) != 0 ||
        h2r_cur_u8(&c, &d->flags) != 0 || h2r_cur_be32(&c, &sid) != 0)
        return fail(h, "short frame header");
    d->sid = sid & 0x7fffffffu; /* §4.1: the reserved bit is ignored */
    d->remaining = d->len;
    d->pre_need = 0;
    d->pre_got = 0;
    d->body_kind = BK_SKIP;
    d->ent_got = 0;
    padded = (d->flags & FL_PADDED) != 0;

    if (d->len > h->max_frame - FRAME_HDR_LEN) {
        h->st->h2_frame_too_large++;
        return fail(h, "frame over the size cap");
    }
    /* §6.10: a header block's frames must be contiguous. */
    if (d->awaiting_continuation && (d->type != FT_CONTINUATION || d->sid != d->block_sid))
        return fail(h, "header block interrupted (RFC 9113 §6.10)");

    switch (d->type) {
    case FT_DATA: /* §6.1 */
        if (d->sid == 0)
            return fail(h, "DATA on stream 0");
        d->pre_need = padded ? 1 : 0;
        d->body_kind = BK_DATA;
        break;
    case FT_HEADERS: /* §6.2 */
        if (d->sid == 0)
            return fail(h, "HEADERS on stream 0");
        d->pre_need = (padded ? 1u : 0u) + ((d->flags & FL_PRIORITY) ? 5u : 0u);
        d->body_kind = BK_BLOCK;
        d->block_type = FT_HEADERS;
        d->block_sid = d->sid;
        d->block_end_stream = (d->flags & FL_END_STREAM) != 0;
        d->block_ts_first = d->frame_ts_first;
        d->block_len = 0;
        break;
    case FT_PRIORITY: /* §6.3 */
        if (d->sid == 0)
            return fail(h, "PRIORITY on stream 0");
        if (d->len != 5)
            h->st->h2_frames_ignored++; /* a stream error only: the connection survives */
        break;
    case FT_RST_STREAM: /* §6.4 */
        if (d->sid == 0)
            return fail(h, "RST_STREAM on stream 0");
        if (d->len != 4)
            return fail(h, "RST_STREAM length is not 4");
        d->pre_need = 4;
        break;
    case FT_SETTINGS: /* §6.5 */
        if (d->sid != 0)
            return fail(h, "SETTINGS on a stream");
        if ((d->flags & FL_ACK) && d->len != 0)
            return fail(h, "SETTINGS ACK with a payload");
        if (d->len % SETTINGS_ENTRY_LEN != 0)
            return fail(h, "SETTINGS length is not a multiple of 6");
        d->body_kind = BK_SETTINGS;
        memset(&d->cur_settings, 0, sizeof(d->cur_settings));
        break;
    case FT_PUSH_PROMISE: /* §6.6 */
        if (dirn == CAP_DIR_C2S)
            return fail(h, "PUSH_PROMISE from the client (RFC 9113 §8.4)");
        if (d->sid == 0)
            return fail(h, "PUSH_PROMISE on stream 0");
        d->pre_need = (padded ? 1u : 0u) + 4u;
        d->body_kind = BK_BLOCK;
        d->block_type = FT_PUSH_PROMISE;
        d->block_sid = d->sid;
        d->block_end_stream = 0;
        d->block_ts_first = d->frame_ts_first;
        d->block_len = 0;
        break;
    case FT_PING: /* §6.7 */
        if (d->sid != 0)
            return fail(h, "PING on a stream");
        if (d->len != 8)
            return fail(h, "PING length is not 8");
        break;
    case FT_GOAWAY: /* §6.8 */
        if (d->sid != 0)
            return fail(h, "GOAWAY on a stream");
        if (d->len < 8)
            return fail(h, "GOAWAY shorter than 8");
        d->pre_need = 8;
        break;
    case FT_WINDOW_UPDATE: /* §6.9 */
        if (d->len != 4)
            return fail(h, "WINDOW_UPDATE length is not 4");
        break;
    case FT_CONTINUATION: /* §6.10 */
        if (!d->awaiting_continuation)
            return fail(h, "CONTINUATION without an open header block");
        d->body_kind = BK_BLOCK;
        break;
    default:
        break; /* §5.5: unknown types are ignored */
    }
    if (d->pre_need > d->len)
        return fail(h, "frame shorter than its fixed fields");
    d->state = DS_PAYLOAD;
    if (d->pre_need == 0)
        return prefix_done(h, d);
    return 0;
}

static int body_bytes(struct cap_h2 *h, int dirn, const uint8_t *p, size_t n, int64_t ts)
{
    struct h2_dir *d = &h->dir[dirn];
    switch (d->body_kind) {
    case BK_DATA:
        if (!h->cb.on_data || n == 0)
            return 0;
        return h->cb.on_data(h->ud, dirn, d->sid, p, n, 0, ts);
    case BK_BLOCK:
        return block_append(h, d, p, n);
    case BK_SETTINGS:
        for (size_t i = 0; i < n; i++) {
            d->ent[d->ent_got++] = p[i];
            if (d->ent_got == SETTINGS_ENTRY_LEN) {
                settings_entry(&d->cur_settings, d->ent);
                d->ent_got = 0;
            }
        }
        return 0;
    case BK_SKIP:
        break;
    }
    return 0;
}

static int end_frame(struct cap_h2 *h, int dirn, int64_t ts)
{
    struct h2_dir *d = &h->dir[dirn];
    struct h2r_cursor c = {d->pre, d->pre_need};
    uint32_t a = 0, b = 0;

    h->st->h2_frames++;
    d->state = DS_FRAME_HDR;
    d->fh_got = 0;

    switch (d->type) {
    case FT_DATA:
        if ((d->flags & FL_END_STREAM) && h->cb.on_data)
            return h->cb.on_data(h->ud, dirn, d->sid, NULL, 0, 1, ts);
        return 0;
    case FT_HEADERS:
    case FT_PUSH_PROMISE:
    case FT_CONTINUATION:
        if (d->flags & FL_END_HEADERS)
            return decode_block(h, dirn, ts);
        d->awaiting_continuation = 1;
        return 0;
    case FT_RST_STREAM:
        if (h2r_cur_be32(&c, &a) != 0)
            return fail(h, "short RST_STREAM");
        h->st->h2_rst_stream++;
        if (!h->cb.on_rst)
            return 0;
        return h->cb.on_rst(h->ud, dirn, d->sid, a, ts);
    case FT_SETTINGS:
        if (d->flags & FL_ACK)
            return settings_acked(h, dirn);
        return settings_sent(h, dirn, &d->cur_settings);
    case FT_GOAWAY:
        if (h2r_cur_be32(&c, &a) != 0 || h2r_cur_be32(&c, &b) != 0)
            return fail(h, "short GOAWAY");
        h->st->h2_goaway++;
        if (!h->cb.on_goaway)
            return 0;
        return h->cb.on_goaway(h->ud, dirn, a & 0x7fffffffu, b, ts);
    case FT_PRIORITY:
    case FT_PING:
    case FT_WINDOW_UPDATE:
        return 0;
    default:
        h->st->h2_frames_unknown_type++;
        return 0;
    }
}

/* Consumes payload bytes of the current frame from c; finishes the frame when complete. */
static int payload(struct cap_h2 *h, int dirn, struct h2r_cursor *c, int64_t ts)
{
    struct h2_dir *d = &h->dir[dirn];
    int rc;

    while (d->remaining > 0 && c->len > 0) {
        size_t n;
        if (d->pre_got < d->pre_need) {
            n = min_size(d->pre_need - d->pre_got, c->len);
            memcpy(d->pre + d->pre_got, c->p, n);
            (void)h2r_cur_skip(c, n);
            d->pre_got += (uint32_t)n;
            d->remaining -= (uint32_t)n;
            if (d->pre_got == d->pre_need) {
                rc = prefix_done(h, d);
                if (rc != 0)
                    return rc;
            }
            continue;
        }
        if (d->body_left > 0) {
            const uint8_t *p = c->p;
            n = min_size(d->body_left, c->len);
            (void)h2r_cur_skip(c, n);
            d->body_left -= (uint32_t)n;
            d->remaining -= (uint32_t)n;
            rc = body_bytes(h, dirn, p, n, ts);
            if (rc != 0)
                return rc;
            continue;
        }
        n = min_size(d->remaining, c->len); /* padding or ignored payload */
        (void)h2r_cur_skip(c, n);
        d->remaining -= (uint32_t)n;
    }
    if (d->remaining == 0)
        return end_frame(h, dirn, ts);
    return 0;
}

int cap_h2_feed(struct cap_h2 *h, int dir, const uint8_t *buf, size_t len, int64_t ts_ns)
{
    struct h2r_cursor c = {buf, len};
    struct h2_dir *d;
    int rc;

    if (dir != CAP_DIR_C2S && dir != CAP_DIR_S2C)
        return H2R_ERR_ARG;
    if (h->dead)
        return H2R_ERR_PROTO;
    d = &h->dir[dir];
    while (c.len > 0 || (d->state == DS_PAYLOAD && d->remaining == 0)) {
        size_t n;
        switch (d->state) {
        case DS_PREFACE:
            /* RFC 9113 §3.4 */
            n = min_size(PREFACE_LEN - d->preface_got, c.len);
            if (memcmp(c.p, client_preface + d->preface_got, n) != 0)
                return fail(h, "bad client connection preface");
            (void)h2r_cur_skip(&c, n);
            d->preface_got += (uint32_t)n;
            if (d->preface_got == PREFACE_LEN)
                d->state = DS_FRAME_HDR;
            break;
        case DS_FRAME_HDR:
            if (d->fh_got == 0)
                d->frame_ts_first = ts_ns;
            n = min_size(FRAME_HDR_LEN - d->fh_got, c.len);
            memcpy(d->fh + d->fh_got, c.p, n);
            (void)h2r_cur_skip(&c, n);
            d->fh_got += (uint32_t)n;
            if (d->fh_got == FRAME_HDR_LEN) {
                rc = begin_frame(h, dir);
                if (rc != 0)
                    return rc;
            }
            break;
        case DS_PAYLOAD:
            rc = payload(h, dir, &c, ts_ns);
            if (rc != 0)
                return rc;
            break;
        }
    }
    return 0;
}
