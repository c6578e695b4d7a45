/*
 * Session layer: one per TCP connection, between TCP reassembly and the trace.
 *
 * It identifies the transport from the first client bytes: the HTTP/2 client
 * connection preface (RFC 9113 §3.4) means prior knowledge; an HTTP/1.1
 * request carrying "Upgrade: h2c" (RFC 7540 §3.2, removed from RFC 9113 but
 * still spoken by curl and nghttpd) waits for the server: "101 Switching
 * Protocols" turns the request into stream 1 and both sides continue in
 * HTTP/2 (the bytes after the 101 head are already frames); any other
 * answer means the server refused. Everything else is not HTTP/2. Until the
 * transport is known, both directions are buffered (capped) together with
 * the capture time of each piece, so the decoder later sees every byte with
 * its real timestamp.
 *
 * HTTP/1.1 heads are parsed here by a small bounded parser (RFC 9112 §2-§5,
 * head capped at 64 KiB) rather than libhttp-parser: only the request and
 * status lines and field lines of one head are needed, we want explicit
 * caps and RFC-cited checks on every byte, and http-parser is unmaintained
 * upstream (superseded by llhttp), so the dependency would buy nothing.
 *
 * A flow joined mid-stream cannot be decoded unless it starts at the
 * preface: the HPACK dynamic tables built by earlier header blocks are
 * unknown, and guessing would put wrong headers into a trace meant for exact
 * replay. Lost bytes (cap_session_gap) end decoding for the same reason.
 * Undecodable flows still get a conn and a conn-end record naming why:
 *   "not_http2"               first client bytes are neither preface nor an h2c upgrade
 *   "partial_hpack_state"     joined mid-stream and not at a preface
 *   "gap"                     bytes lost after decoding began
 *   "proto_error"             framing or HPACK error (RFC 9113 / RFC 7541)
 *   "h2c_upgrade_refused"     Upgrade: h2c answered with a final non-101 status
 *   "h2c_upgrade_unanswered"  the connection ended before the server answered
 *   "h2c_upgrade_unsupported" upgrade request whose body framing we cannot follow
 *                             (Transfer-Encoding, conflicting Content-Length)
 *   "no_data"                 no payload byte in either direction
 *
 * TLS: when the first client bytes are a TLS handshake record (RFC 8446 §5.1:
 * type 22, legacy version 0x0301..0x0304) and the capture has a key log, a
 * cap_tls parser sits in front of the detection above and the decrypted
 * application data goes through it exactly as cleartext bytes would: ALPN
 * "h2" is followed by the preface, "http/1.1" by a request head (an h2c
 * upgrade or not HTTP/2). The conn record says transport "tls" and carries
 * the ALPN. More reasons:
 *   "tls_no_keylog"           a TLS flow, and no key log was given
 *   "tls_partial"             joined mid-stream inside TLS records (no ClientHello)
 *   "tls_*"                   decryption failed: see cap_tls.h
 *
 * TS2021 (Tailscale's control protocol, docs/ts2021.md): a first request head
 * "POST /ts2021" (Headscale routes GET alike) with "Upgrade:
 * tailscale-control-protocol" makes the connection transport "ts2021", in
 * cleartext or inside TLS alike. cap_ts.c gets the X-Tailscale-Handshake
 * value, the answer's status and, after a 101, every byte of both directions;
 * at the end one ts_session record precedes the conn-end record, whose reason
 * stays NULL (the session record tells the TS2021 story). A first request
 * "GET /key" (the client fetching the server's Noise key) is not HTTP/2 either
 * but is expected traffic, so it gets its own conn-end reason:
 *   "ts2021_key"              GET /key?v=N, the step before a TS2021 upgrade
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/cursor.h"
#include "cap_exchange.h"
#include "cap_h2.h"
#include "cap_keylog.h"
#include "cap_session.h"
#include "cap_tls.h"

#define H1_MAX_HEAD (1u << 16) /* HTTP/1.1 head cap, also the pre-detection buffer cap */
#define H1_MAX_FIELDS 256u     /* field lines in one head */
#define PREFACE_LEN 24u
#define MAX_METHOD 32u

static const uint8_t client_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum sess_state {
    SS_DETECT,      /* first client bytes not yet classified */
    SS_UPGRADE,     /* Upgrade: h2c sent; waiting for the server's answer */
    SS_H2,          /* decoding HTTP/2 */
    SS_UNDECODABLE, /* gave up; later bytes are ignored */
    SS_CLOSED,
    SS_TS_UPGRADE, /* POST /ts2021 sent; waiting for the server's answer head */
    SS_TS,         /* 101: both directions go to cap_ts */
    SS_TS_DONE,    /* TS2021 session settled early (refused, gap): bytes ignored */
    SS_TS_KEY      /* GET /key: recognised, nothing to decode */
};

/* Bytes held before the transport is known, with the capture time of each piece. */
struct seg {
    size_t end; /* exclusive offset in the buffer */
    int64_t ts;
};

struct prebuf {
    uint8_t *p;
    size_t len;
    size_t cap;
    size_t used; /* bytes already consumed by the parser */
    struct seg *segs;
    size_t nsegs;
    size_t segcap;
};

struct cap_session {
    struct cap_session_env *env;
    struct cap_session_sink sink;
    struct cap_flow_info info;
    enum sess_state state;
    uint32_t transport;
    uint32_t conn_flags;
    int conn_written;
    int any_bytes;
    const char *reason;
    int64_t goaway_code;

    struct prebuf pre[2];
    struct cap_h2 *h2;
    struct cap_exch_table *ex;

    /* h2c upgrade */
    uint64_t up_body_left; /* request body bytes still to come before the preface */
    uint8_t *up_settings;  /* decoded HTTP2-Settings payload */
    size_t up_settings_len;
    size_t h1_scanned[2]; /* head terminator search position, per direction */

    /* TLS: the record layer in front of the detection, when the flow is TLS */
    struct cap_tls *tls;
    int tls_flow;        /* first client bytes were a TLS handshake record */
    int any_plaintext;   /* TLS flows: application data seen (any_bytes counts records) */
    char alpn[256];      /* server's ALPN choice, "" when none */
    char reason_buf[48]; /* TLS failure reasons are built at run time */

    /* TS2021 */
    struct cap_ts *ts;
    uint64_t ts_body_left; /* upgrade request body bytes (Content-Length) before the frames */
};

/* ---- default sink: the trace writer ---- */

static int tw_conn(void *ud, const struct h2r_conn *c)
{
    return h2r_trace_write_conn(ud, c);
}

static int tw_conn_end(void *ud, const struct h2r_conn_end *e)
{
    return h2r_trace_write_conn_end(ud, e);
}

static int tw_exchange(void *ud, const struct h2r_exchange *x)
{
    return h2r_trace_write_exchange(ud, x);
}

static int tw_ts_session(void *ud, const struct h2r_ts_session *t)
{
    return h2r_trace_write_ts_session(ud, t);
}

/* ---- pre-detection buffers ---- */

static int prebuf_append(struct prebuf *b, const uint8_t *p, size_t n, int64_t ts)
{
    if (n > H1_MAX_HEAD - (b->len - b->used))
        return H2R_ERR_LIMIT;
    if (n > b->cap - b->len) {
        size_t ncap = b->cap ? b->cap : 1024;
        while (ncap - b->len < n)
            ncap *= 2;
        uint8_t *np = realloc(b->p, ncap);
        if (!np)
            return H2R_ERR_NOMEM;
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    if (b->nsegs && b->segs[b->nsegs - 1].ts == ts) {
        b->segs[b->nsegs - 1].end = b->len;
        return 0;
    }
    if (b->nsegs == b->segcap) {
        size_t ncap = b->segcap ? b->segcap * 2 : 8;
        struct seg *ns = realloc(b->segs, ncap * sizeof(*ns));
        if (!ns)
            return H2R_ERR_NOMEM;
        b->segs = ns;
        b->segcap = ncap;
    }
    b->segs[b->nsegs].end = b->len;
    b->segs[b->nsegs].ts = ts;
    b->nsegs++;
    return 0;
}

static int64_t prebuf_ts_at(const struct prebuf *b, size_t off)
{
    for (size_t i = 0; i < b->nsegs; i++) {
        if (off < b->segs[i].end)
            return b->segs[i].ts;
    }
    return b->nsegs ? b->segs[b->nsegs - 1].ts : 0;
}

static void prebuf_free(struct prebuf *b)
{
    free(b->p);
    free(b->segs);
    memset(b, 0, sizeof(*b));
}

/* ---- records ---- */

static int record_error(struct cap_session *s, int rc)
{
    if (rc != 0 && s->env->write_error == 0)
        s->env->write_error = rc;
    return rc;
}

static int write_conn(struct cap_session *s)
{
    struct h2r_conn c;
    if (s->conn_written)
        return 0;
    s->conn_written = 1;
    memset(&c, 0, sizeof(c));
    c.id = s->info.conn_id;
    c.client = s->info.client;
    c.server = s->info.server;
    c.transport = s->transport;
    c.flags = s->conn_flags;
    c.t_open_ns = s->info.t_open_ns;
    c.alpn = s->alpn[0] ? s->alpn : NULL;
    return record_error(s, s->sink.conn ? s->sink.conn(s->sink.ud, &c) : 0);
}

/* Gives up on the flow: pending exchanges get exch_error (NULL: dropped unwritten). */
static int mark_undecodable(struct cap_session *s, const char *reason, const char *exch_error)
{
    struct cap_session_stats *st = s->env->stats;
    int rc = 0, rc2;

    if (strcmp(reason, "not_http2") == 0)
        st->undecodable_not_http2++;
    else if (strcmp(reason, "partial_hpack_state") == 0)
        st->undecodable_partial++;
    else if (strcmp(reason, "gap") == 0)
        st->undecodable_gap++;
    else if (strcmp(reason, "proto_error") == 0)
        st->undecodable_proto++;
    else if (strcmp(reason, "h2c_upgrade_refused") == 0)
        st->upgrade_rejected++;
    else if (strcmp(reason, "h2c_upgrade_unanswered") == 0)
        st->undecodable_upgrade_unanswered++;
    else if (strcmp(reason, "h2c_upgrade_unsupported") == 0)
        st->undecodable_upgrade_unsupported++;
    else if (strcmp(reason, "tls_no_keylog") == 0)
        st->undecodable_tls_no_keylog++;
    else if (strcmp(reason, "tls_partial") == 0)
        st->undecodable_tls_partial++;
    /* other "tls_*" reasons are counted by cap_tls where they happen */

    if (s->ts)
        cap_ts_fail(s->ts, reason); /* e.g. TLS broke under a TS2021 session */
    s->reason = reason;
    s->state = SS_UNDECODABLE;
    if (s->tls)
        cap_tls_stop(s->tls); /* nothing more to decrypt; freed by the next feed or close */
    rc = write_conn(s);
    if (s->ex) {
        if (exch_error) {
            rc2 = cap_exch_finish_all(s->ex, exch_error);
            if (rc == 0)
                rc = rc2;
        } else {
            cap_exch_discard_all(s->ex);
        }
    }
    cap_h2_free(s->h2);
    s->h2 = NULL;
    prebuf_free(&s->pre[0]);
    prebuf_free(&s->pre[1]);
    return rc;
}

/* ---- HTTP/2 ---- */

static int on_headers(void *ud, int dir, uint32_t sid, const struct h2r_hdr *hdrs, size_t n,
                      unsigned flags, int64_t ts_first, int64_t ts)
{
    struct cap_session *s = ud;
    return cap_exch_on_headers(s->ex, dir, sid, hdrs, n, flags, ts_first, ts);
}

static int on_data(void *ud, int dir, uint32_t sid, const uint8_t *data, size_t len, int end_stream,
                   int64_t ts)
{
    struct cap_session *s = ud;
    return cap_exch_on_data(s->ex, dir, sid, data, len, end_stream, ts);
}

static int on_rst(void *ud, int dir, uint32_t sid, uint32_t code, int64_t ts)
{
    struct cap_session *s = ud;
    return cap_exch_on_rst(s->ex, dir, sid, code, ts);
}

static int on_goaway(void *ud, int dir, uint32_t last, uint32_t code, int64_t ts)
{
    struct cap_session *s = ud;
    s->goaway_code = code;
    return cap_exch_on_goaway(s->ex, dir, last, code, ts);
}

static int ensure_exchanges(struct cap_session *s)
{
    if (s->ex)
        return 0;
    s->ex = cap_exch_new(s->env, s->info.conn_id, &s->sink);
    return s->ex ? 0 : H2R_ERR_NOMEM;
}

static int start_h2(struct cap_session *s)
{
    static const struct cap_h2_callbacks cb = {on_headers, on_data, on_rst, on_goaway};
    int rc = ensure_exchanges(s);
    if (rc != 0)
        return rc;
    s->h2 = cap_h2_new(&cb, s, s->env->stats);
    if (!s->h2)
        return H2R_ERR_NOMEM;
    s->state = SS_H2;
    return 0;
}

/* Feeds the decoder; a protocol error makes the flow undecodable (not fatal). */
static int h2_feed(struct cap_session *s, int dir, const uint8_t *p, size_t n, int64_t ts)
{
    int rc = cap_h2_feed(s->h2, dir, p, n, ts);
    if (rc == H2R_ERR_PROTO)
        return mark_undecodable(s, "proto_error", "proto_error");
    return record_error(s, rc);
}

/* Upgrade: request body bytes (Content-Length) precede the client preface. */
static int upgrade_body(struct cap_session *s, const uint8_t **p, size_t *n, int64_t ts)
{
    size_t take = *n;
    int rc;
    if (s->up_body_left == 0 || !s->ex)
        return 0;
    if (take > s->up_body_left)
        take = (size_t)s->up_body_left;
    rc = cap_exch_on_data(s->ex, CAP_DIR_C2S, 1, *p, take, 0, ts);
    if (rc != 0)
        return record_error(s, rc);
    s->up_body_left -= take;
    *p += take;
    *n -= take;
    if (s->up_body_left == 0)
        rc = cap_exch_on_data(s->ex, CAP_DIR_C2S, 1, NULL, 0, 1, ts);
    return record_error(s, rc);
}

static int ts_feed(struct cap_session *s, int dir, const uint8_t *p, size_t n, int64_t ts);

/* Hands the buffered, not yet consumed bytes of both directions to the decoder (HTTP/2 or
 * TS2021) in capture order (client first on equal timestamps). */
static int replay_prebufs(struct cap_session *s)
{
    size_t seg[2] = {0, 0};
    int rc = 0;

    for (;;) {
        int dir = -1;
        for (int d = 0; d < 2; d++) {
            struct prebuf *b = &s->pre[d];
            while (seg[d] < b->nsegs && b->segs[seg[d]].end <= b->used)
                seg[d]++;
            if (seg[d] == b->nsegs)
                continue;
            if (dir < 0 || b->segs[seg[d]].ts < s->pre[dir].segs[seg[dir]].ts)
                dir = d;
        }
        if (dir < 0)
            break;
        struct prebuf *b = &s->pre[dir];
        size_t start = b->used;
        size_t end = b->segs[seg[dir]].end;
        int64_t ts = b->segs[seg[dir]].ts;
        const uint8_t *p = b->p + start;
        size_t n = end - start;
        b->used = end;
        if (dir == CAP_DIR_C2S) {
            rc = upgrade_body(s, &p, &n, ts);
            if (rc != 0)
                return rc;
        }
        if (n > 0) {
            rc = s->state == SS_TS ? ts_feed(s, dir, p, n, ts) : h2_feed(s, dir, p, n, ts);
            if (rc != 0 || (s->state != SS_H2 && s->state != SS_TS))
                return rc;
        }
    }
    prebuf_free(&s->pre[0]);
    prebuf_free(&s->pre[1]);
    return 0;
}

/* ---- HTTP/1.1 heads (RFC 9112) ---- */

struct h1_field {
    const uint8_t *name;
    size_t name_len;
    const uint8_t *value;
    size_t value_len;
};

struct h1_head {
    const uint8_t *method; /* request */
    size_t method_len;
    const uint8_t *target;
    size_t target_len;
    int status; /* response */
    struct h1_field fields[H1_MAX_FIELDS];
    size_t n_fields;
};

/* RFC 9110 §5.6.2 tchar. */
static int is_tchar(uint8_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int ieq(const uint8_t *a, size_t alen, const char *b)
{
    size_t n = strlen(b);
    if (alen != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (lower(a[i]) != lower((uint8_t)b[i]))
            return 0;
    }
    return 1;
}

/* Length of the head (through the empty line) in c, 0 if incomplete. RFC 9112 §2.2 lets a
 * recipient accept a bare LF as the line terminator. *scanned: where the previous call on the
 * same growing buffer stopped, so feeding byte by byte stays linear. */
static size_t h1_head_len(const struct h2r_cursor *c, size_t *scanned)
{
    size_t from = *scanned > 3 ? *scanned - 3 : 0;
    *scanned = c->len;
    for (size_t i = from; i < c->len; i++) {
        if (c->p[i] != '\n')
            continue;
        if (i + 1 < c->len && c->p[i + 1] == '\n')
            return i + 2;
        if (i + 2 < c->len && c->p[i + 1] == '\r' && c->p[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* Next line of the head without its terminator; 0 when the head is exhausted. */
static int h1_line(struct h2r_cursor *c, struct h2r_cursor *line)
{
    size_t i = 0;
    uint8_t ch = 0;
    while (h2r_cur_peek(c, i, &ch) == 0 && ch != '\n')
        i++;
    if (i == c->len)
        return 0;
    line->p = c->p;
    line->len = (i > 0 && c->p[i - 1] == '\r') ? i - 1 : i;
    (void)h2r_cur_skip(c, i + 1);
    return 1;
}

/* §5: field-line = field-name ":" OWS field-value OWS. obs-fold is rejected (§5.2). */
static int h1_fields(struct h2r_cursor *c, struct h1_head *h)
{
    struct h2r_cursor line;
    h->n_fields = 0;
    while (h1_line(c, &line)) {
        size_t colon = 0, vs, ve;
        if (line.len == 0)
            return 0;
        while (colon < line.len && is_tchar(line.p[colon]))
            colon++;
        if (colon == 0 || colon == line.len || line.p[colon] != ':')
            return H2R_ERR_FORMAT;
        vs = colon + 1;
        while (vs < line.len && (line.p[vs] == ' ' || line.p[vs] == '\t'))
            vs++;
        ve = line.len;
        while (ve > vs && (line.p[ve - 1] == ' ' || line.p[ve - 1] == '\t'))
            ve--;
        for (size_t i = vs; i < ve; i++) {
            /* §5.5: CR, LF and NUL are never valid in a field value. */
            if (line.p[i] == '\r' || line.p[i] == '\0')
                return H2R_ERR_FORMAT;
        }
        if (h->n_fields == H1_MAX_FIELDS)
            return H2R_ERR_LIMIT;
        h->fields[h->n_fields].name = line.p;
        h->fields[h->n_fields].name_len = colon;
        h->fields[h->n_fields].value = line.p + vs;
        h->fields[h->n_fields].value_len = ve - vs;
        h->n_fields++;
    }
    return H2R_ERR_FORMAT;
}

/* §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT; only 1.x is HTTP/1. */
static int h1_version(const uint8_t *p, size_t n)
{
    return n == 8 && memcmp(p, "HTTP/1.", 7) == 0 && p[7] >= '0' && p[7] <= '9';
}

/* §3: request-line = method SP request-target SP HTTP-version. */
static int h1_parse_request(const uint8_t *buf, size_t len, struct h1_head *h)
{
    struct h2r_cursor c = {buf, len}, line;
    size_t i = 0, t;
    if (!h1_line(&c, &line))
        return H2R_ERR_FORMAT;
    while (i < line.len && is_tchar(line.p[i]))
        i++;
    if (i == 0 || i == line.len || line.p[i] != ' ')
        return H2R_ERR_FORMAT;
    h->method = line.p;
    h->method_len = i;
    t = ++i;
    while (i < line.len && line.p[i] > ' ' && line.p[i] < 0x7f)
        i++;
    if (i == t || i == line.len || line.p[i] != ' ')
        return H2R_ERR_FORMAT;
    h->target = line.p + t;
    h->target_len = i - t;
    if (!h1_version(line.p + i + 1, line.len - i - 1))
        return H2R_ERR_FORMAT;
    return h1_fields(&c, h);
}

/* §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]. */
static int h1_parse_response(const uint8_t *buf, size_t len, struct h1_head *h)
{
    struct h2r_cursor c = {buf, len}, line;
    if (!h1_line(&c, &line) || line.len < 12 || !h1_version(line.p, 8) || line.p[8] != ' ')
        return H2R_ERR_FORMAT;
    h->status = 0;
    for (size_t i = 9; i < 12; i++) {
        if (line.p[i] < '0' || line.p[i] > '9')
            return H2R_ERR_FORMAT;
        h->status = h->status * 10 + (line.p[i] - '0');
    }
    if (line.len > 12 && line.p[12] != ' ')
        return H2R_ERR_FORMAT;
    return h1_fields(&c, h);
}

/* Does a comma-separated list value (RFC 9110 §5.6.1) contain token tok? */
static int list_has(const uint8_t *v, size_t n, const char *tok)
{
    size_t i = 0;
    while (i < n) {
        size_t s = i, e;
        while (i < n && v[i] != ',')
            i++;
        e = i;
        while (s < e && (v[s] == ' ' || v[s] == '\t'))
            s++;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (ieq(v + s, e - s, tok))
            return 1;
        i++;
    }
    return 0;
}

static const struct h1_field *h1_find(const struct h1_head *h, const char *name, size_t *count)
{
    const struct h1_field *f = NULL;
    size_t k = 0;
    for (size_t i = 0; i < h->n_fields; i++) {
        if (ieq(h->fields[i].name, h->fields[i].name_len, name)) {
            if (!f)
                f = &h->fields[i];
            k++;
        }
    }
    if (count)
        *count = k;
    return f;
}

/* RFC 4648 §5 base64url, padding optional (RFC 7540 §3.2.1 token68). */
static int base64url_decode(const uint8_t *in, size_t n, uint8_t **out, size_t *out_len)
{
    uint8_t *o = malloc(n * 3 / 4 + 3);
    uint32_t acc = 0;
    int bits = 0;
    size_t k = 0;
    if (!o)
        return H2R_ERR_NOMEM;
    while (n > 0 && in[n - 1] == '=')
        n--;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = in[i];
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-' || c == '+')
            v = 62;
        else if (c == '_' || c == '/')
            v = 63;
        else {
            free(o);
            return H2R_ERR_FORMAT;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (uint8_t)(acc >> bits);
        }
    }
    *out = o;
    *out_len = k;
    return 0;
}

/* RFC 9113 §8.2.2: connection-specific fields are not forwarded into HTTP/2. */
static int hop_by_hop(const struct h1_head *h, const struct h1_field *f)
{
    static const char *const names[] = {
        "connection",     "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
        "http2-settings", "host"};
    const struct h1_field *conn;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (ieq(f->name, f->name_len, names[i]))
            return 1;
    }
    if (ieq(f->name, f->name_len, "te"))
        return !ieq(f->value, f->value_len, "trailers");
    for (size_t i = 0; i < h->n_fields; i++) {
        conn = &h->fields[i];
        if (!ieq(conn->name, conn->name_len, "connection"))
            continue;
        /* names listed in Connection are hop-by-hop too (RFC 9110 §7.6.1) */
        char name[128];
        if (f->name_len >= sizeof(name))
            continue;
        memcpy(name, f->name, f->name_len);
        name[f->name_len] = '\0';
        if (list_has(conn->value, conn->value_len, name))
            return 1;
    }
    return 0;
}

/* Builds the HTTP/2 form of the upgraded request (RFC 9113 §8.3.1) and opens stream 1. */
static int upgrade_request(struct cap_session *s, const struct h1_head *h, int64_t ts_first,
                           int64_t ts)
{
    struct h2r_hdr *v = NULL;
    uint8_t *names = NULL;
    size_t n = 0, name_bytes = 0, off = 0;
    const uint8_t *path = h->target, *auth = NULL;
    size_t path_len = h->target_len, auth_len = 0;
    const struct h1_field *host = h1_find(h, "host", NULL);
    int rc;

    if (host) {
        auth = host->value;
        auth_len = host->value_len;
    }
    /* §3.2.2 absolute-form "http://host/path": split into authority and path. */
    if (path_len > 7 && ieq(path, 7, "http://")) {
        size_t a = 7, e = 7;
        while (e < path_len && path[e] != '/' && path[e] != '?')
            e++;
        if (!auth) {
            auth = path + a;
            auth_len = e - a;
        }
        path += e;
        path_len -= e;
        if (path_len == 0) {
            path = (const uint8_t *)"/";
            path_len = 1;
        }
    }
    for (size_t i = 0; i < h->n_fields; i++)
        name_bytes += h->fields[i].name_len;
    v = calloc(h->n_fields + 4, sizeof(*v));
    names = malloc(name_bytes + 1);
    if (!v || !names) {
        rc = H2R_ERR_NOMEM;
        goto out;
    }
    v[n++] = (struct h2r_hdr){(const uint8_t *)":method", h->method, 7, (uint32_t)h->method_len};
    /* Inside TLS the upgraded request was an https one (RFC 9110 §4.2.2). */
    if (s->tls_flow)
        v[n++] = (struct h2r_hdr){(const uint8_t *)":scheme", (const uint8_t *)"https", 7, 5};
    else
        v[n++] = (struct h2r_hdr){(const uint8_t *)":scheme", (const uint8_t *)"http", 7, 4};
    if (auth)
        v[n++] = (struct h2r_hdr){(const uint8_t *)":authority", auth, 10, (uint32_t)auth_len};
    v[n++] = (struct h2r_hdr){(const uint8_t *)":path", path, 5, (uint32_t)path_len};
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct h1_field *f = &h->fields[i];
        if (hop_by_hop(h, f))
            continue;
        /* §8.2.2: field names are lower-case in HTTP/2. */
        for (size_t k = 0; k < f->name_len; k++)
            names[off + k] = (uint8_t)lower(f->name[k]);
        v[n].name = names + off;
        v[n].name_len = (uint32_t)f->name_len;
        v[n].value = f->value;
        v[n].value_len = (uint32_t)f->value_len;
        off += f->name_len;
        n++;
    }
    rc = ensure_exchanges(s);
    if (rc == 0)
        rc = cap_exch_on_headers(s->ex, CAP_DIR_C2S, 1, v, n,
                                 s->up_body_left == 0 ? CAP_H2_HDR_END_STREAM : 0, ts_first, ts);
out:
    free(v);
    free(names);
    return record_error(s, rc);
}

/* ---- TS2021 (docs/ts2021.md) ---- */

/* The request target's path is p: "/ts2021", "/ts2021?..." (RFC 9112 §3.2 origin-form). */
static int target_is(const struct h1_head *h, const char *p)
{
    size_t n = strlen(p);
    if (h->target_len < n || memcmp(h->target, p, n) != 0)
        return 0;
    return h->target_len == n || h->target[n] == '?';
}

/* The Tailscale control upgrade: Headscale takes POST and GET /ts2021 and dispatches on the
 * Upgrade token, compared case-insensitively as RFC 9110 §7.8 protocol names are. */
static int ts_upgrade_head(const struct h1_head *h)
{
    const struct h1_field *f = h1_find(h, "upgrade", NULL);
    return target_is(h, "/ts2021") && f &&
           list_has(f->value, f->value_len, "tailscale-control-protocol");
}

/* GET /key?v=<capver>: the client fetching the server's Noise public key. */
static int ts_key_head(const struct h1_head *h)
{
    return h->method_len == 3 && memcmp(h->method, "GET", 3) == 0 && target_is(h, "/key");
}

/* The TS2021 session is settled before the connection ends (refused, unparsable answer,
 * gap, framing error, error frame): later bytes are ignored, and TLS records need no more
 * decrypting. */
static void ts_settle(struct cap_session *s)
{
    s->state = SS_TS_DONE;
    prebuf_free(&s->pre[0]);
    prebuf_free(&s->pre[1]);
    if (s->tls)
        cap_tls_stop(s->tls); /* safe inside its callbacks; freed at close */
}

/* Bytes after the heads: a request body (Content-Length) first, then frames. */
static int ts_feed(struct cap_session *s, int dir, const uint8_t *p, size_t n, int64_t ts)
{
    if (dir == CAP_DIR_C2S && s->ts_body_left > 0) {
        size_t take = n < s->ts_body_left ? n : (size_t)s->ts_body_left;
        s->ts_body_left -= take;
        p += take;
        n -= take;
    }
    if (n == 0)
        return 0;
    int rc = record_error(s, cap_ts_feed(s->ts, dir, p, n, ts));
    if (rc == 0 && !cap_ts_open(s->ts))
        ts_settle(s); /* a framing error or an error frame ended decoding */
    return rc;
}

/* The server's answer to the upgrade (NOTES 3.2): 101, then frames; anything final else
 * refuses. Interim 1xx answers are skipped as for h2c. */
static int ts_answer(struct cap_session *s)
{
    struct prebuf *b = &s->pre[CAP_DIR_S2C];
    struct h1_head *h = NULL;
    int rc = 0;

    for (;;) {
        struct h2r_cursor c = {b->p + b->used, b->len - b->used};
        size_t head_len = h1_head_len(&c, &s->h1_scanned[CAP_DIR_S2C]);
        int64_t ts;
        if (head_len == 0)
            goto out;
        if (!h) {
            h = malloc(sizeof(*h));
            if (!h)
                return record_error(s, H2R_ERR_NOMEM);
        }
        if (h1_parse_response(c.p, head_len, h) != 0) {
            cap_ts_fail(s->ts, "the upgrade answer is not an HTTP/1.1 response head");
            ts_settle(s);
            goto out;
        }
        ts = prebuf_ts_at(b, b->used + head_len - 1);
        b->used += head_len;
        s->h1_scanned[CAP_DIR_S2C] = 0;
        if (h->status != 101 && h->status >= 100 && h->status <= 199)
            continue;
        cap_ts_answer(s->ts, h->status, ts);
        if (h->status != 101) {
            ts_settle(s);
            goto out;
        }
        break;
    }
    s->state = SS_TS;
    rc = replay_prebufs(s);
out:
    free(h);
    return rc;
}

/* The first request head is the TS2021 upgrade: the connection is a TS2021 session. */
static int start_ts(struct cap_session *s, const struct h1_head *h, size_t head_len)
{
    struct prebuf *b = &s->pre[CAP_DIR_C2S];
    const struct h1_field *hs = h1_find(h, "x-tailscale-handshake", NULL);
    const struct h1_field *cl;
    struct cap_ts_cfg cfg;
    size_t count = 0;
    int body_ok = 1, rc;

    memset(&cfg, 0, sizeof(cfg));
    cfg.id = ++s->env->ts_sessions;
    cfg.conn_id = s->info.conn_id;
    cfg.t_upgrade_ns = prebuf_ts_at(b, 0);
    cfg.tls = s->tls_flow;
    cfg.noise_key = s->env->noise_key;
    cfg.nodes = s->env->ts_nodes;
    cfg.stats = &s->env->stats->ts;
    s->ts = cap_ts_new(&cfg, hs ? hs->value : NULL, hs ? hs->value_len : 0);
    if (!s->ts)
        return record_error(s, H2R_ERR_NOMEM);
    s->transport = H2R_TRANSPORT_TS2021;
    s->state = SS_TS_UPGRADE;
    b->used = head_len;
    /* RFC 9112 §6.3: a body is delimited by one Content-Length (Go sends 0, or none). */
    cl = h1_find(h, "content-length", &count);
    if (h1_find(h, "transfer-encoding", NULL) || count > 1 ||
        (cl && (cl->value_len == 0 || cl->value_len > 15)))
        body_ok = 0;
    for (size_t i = 0; body_ok && cl && i < cl->value_len; i++) {
        if (cl->value[i] < '0' || cl->value[i] > '9')
            body_ok = 0;
        else
            s->ts_body_left = s->ts_body_left * 10 + (uint64_t)(cl->value[i] - '0');
    }
    if (!body_ok) {
        cap_ts_fail(s->ts, "upgrade request body framing not followed (Transfer-Encoding or "
                           "a bad Content-Length)");
        ts_settle(s);
        return write_conn(s);
    }
    if (s->ts_body_left > CAP_TS_MAX_UPGRADE_BODY) {
        /* Go sends none: a body this large would swallow every client frame after the
         * 101 and leave a session that looks silent rather than one that failed. */
        s->ts_body_left = 0;
        cap_ts_fail(s->ts, "upgrade request body over 64 KiB (Content-Length)");
        ts_settle(s);
        return write_conn(s);
    }
    rc = write_conn(s);
    if (rc != 0)
        return rc;
    /* The answer may already be buffered when capture order put it first. */
    if (s->pre[CAP_DIR_S2C].len > 0)
        return ts_answer(s);
    return 0;
}

/* The first request is GET /key: nothing to decode, but not a stranger either. */
static int start_ts_key(struct cap_session *s)
{
    s->env->stats->ts.key_requests++;
    s->state = SS_TS_KEY;
    s->reason = "ts2021_key";
    prebuf_free(&s->pre[0]);
    prebuf_free(&s->pre[1]);
    if (s->tls)
        cap_tls_stop(s->tls);
    return write_conn(s);
}

/* ---- transport detection ---- */

static int identified(struct cap_session *s, uint32_t transport)
{
    if (s->tls_flow) {
        /* HTTP/2 inside TLS, whichever way it started. */
        s->transport = H2R_TRANSPORT_TLS;
        s->env->stats->tls_h2++;
        return write_conn(s);
    }
    s->transport = transport;
    if (transport == H2R_TRANSPORT_H2C_PRIOR)
        s->env->stats->flows_h2c_prior++;
    else
        s->env->stats->flows_h2c_upgrade++;
    return write_conn(s);
}

static int start_tls(struct cap_session *s);
static int clear_feed(struct cap_session *s, int dir, const uint8_t *buf, size_t len,
                      int64_t ts_ns);

static int upgrade_answer(struct cap_session *s);

/* The client's first bytes are an HTTP/1.1 request head: is it an h2c upgrade? */
static int detect_h1(struct cap_session *s)
{
    struct prebuf *b = &s->pre[CAP_DIR_C2S];
    struct h2r_cursor c = {b->p, b->len};
    struct h1_head *h = NULL;
    const struct h1_field *f;
    size_t head_len = h1_head_len(&c, &s->h1_scanned[CAP_DIR_C2S]), count = 0;
    int rc = 0;

    if (head_len == 0)
        return 0; /* wait for the rest (the buffer cap ends the wait) */
    h = malloc(sizeof(*h));
    if (!h)
        return H2R_ERR_NOMEM;
    if (h1_parse_request(b->p, head_len, h) != 0) {
        rc = mark_undecodable(s, "not_http2", NULL);
        goto out;
    }
    if (ts_upgrade_head(h)) {
        rc = start_ts(s, h, head_len);
        goto out;
    }
    if (ts_key_head(h)) {
        rc = start_ts_key(s);
        goto out;
    }
    f = h1_find(h, "upgrade", NULL);
    if (!f || !list_has(f->value, f->value_len, "h2c")) {
        rc = mark_undecodable(s, "not_http2", NULL);
        goto out;
    }
    /* RFC 9112 §6.3: the body must be delimited by one Content-Length. */
    f = h1_find(h, "content-length", &count);
    if (h1_find(h, "transfer-encoding", NULL) || count > 1 ||
        (f && (f->value_len == 0 || f->value_len > 15))) {
        rc = mark_undecodable(s, "h2c_upgrade_unsupported", NULL);
        goto out;
    }
    s->up_body_left = 0;
    for (size_t i = 0; f && i < f->value_len; i++) {
        if (f->value[i] < '0' || f->value[i] > '9') {
            rc = mark_undecodable(s, "h2c_upgrade_unsupported", NULL);
            goto out;
        }
        s->up_body_left = s->up_body_left * 10 + (uint64_t)(f->value[i] - '0');
    }
    /* RFC 7540 §3.2.1: exactly one HTTP2-Settings; otherwise the server will not upgrade. */
    f = h1_find(h, "http2-settings", &count);
    if (f && count == 1) {
        rc = base64url_decode(f->value, f->value_len, &s->up_settings, &s->up_settings_len);
        if (rc == H2R_ERR_NOMEM)
            goto out;
        rc = 0;
    }
    s->state = SS_UPGRADE;
    rc = upgrade_request(s, h, prebuf_ts_at(b, 0), prebuf_ts_at(b, head_len - 1));
    if (rc != 0)
        goto out;
    b->used = head_len;
    /* Body bytes already buffered go to stream 1; whatever follows waits for the 101. */
    for (size_t i = 0; i < b->nsegs && s->up_body_left > 0; i++) {
        const uint8_t *p;
        size_t n, left;
        if (b->segs[i].end <= b->used)
            continue;
        p = b->p + b->used;
        n = b->segs[i].end - b->used;
        left = n;
        rc = upgrade_body(s, &p, &left, b->segs[i].ts);
        if (rc != 0)
            goto out;
        b->used += n - left;
    }
    /* The answer may already be buffered when capture order put it first. */
    if (s->state == SS_UPGRADE && s->pre[CAP_DIR_S2C].len > 0) {
        free(h);
        return upgrade_answer(s);
    }
out:
    free(h);
    return rc;
}

static int detect(struct cap_session *s)
{
    struct prebuf *b = &s->pre[CAP_DIR_C2S];
    size_t n = b->len < PREFACE_LEN ? b->len : PREFACE_LEN;
    size_t i = 0;
    int rc;

    if (b->len == 0)
        return 0;
    /* RFC 8446 §5.1 / RFC 5246 §6.2.1: ContentType handshake(22), ProtocolVersion 3.1-3.4. */
    if (!s->tls_flow && b->p[0] == 0x16) {
        if (b->len < 3)
            return 0;
        if (b->p[1] == 0x03 && b->p[2] >= 0x01 && b->p[2] <= 0x04)
            return start_tls(s);
    }
    /* Joined inside TLS records: change_cipher_spec..heartbeat(20..24), version 3.x. */
    if (!s->tls_flow && s->info.partial && b->len >= 3 && b->p[0] >= 0x14 && b->p[0] <= 0x18 &&
        b->p[1] == 0x03 && b->p[2] <= 0x04) {
        s->env->stats->tls_flows++;
        s->transport = H2R_TRANSPORT_TLS;
        return mark_undecodable(s, "tls_partial", NULL);
    }
    if (memcmp(b->p, client_preface, n) == 0) {
        if (b->len < PREFACE_LEN)
            return 0;
        rc = start_h2(s);
        if (rc == 0)
            rc = identified(s, H2R_TRANSPORT_H2C_PRIOR);
        if (rc != 0)
            return record_error(s, rc);
        return replay_prebufs(s);
    }
    if (s->info.partial)
        return mark_undecodable(s, "partial_hpack_state", NULL);
    /* RFC 9112 §3.1: an HTTP/1 request starts with a method token and SP. */
    while (i < b->len && i <= MAX_METHOD && is_tchar(b->p[i]))
        i++;
    if (i == b->len && i <= MAX_METHOD)
        return 0;
    if (i == 0 || i > MAX_METHOD || b->p[i] != ' ')
        return mark_undecodable(s, "not_http2", NULL);
    return detect_h1(s);
}

/* The server's answer to Upgrade: h2c (RFC 7540 §3.2). */
static int upgrade_answer(struct cap_session *s)
{
    struct prebuf *b = &s->pre[CAP_DIR_S2C];
    struct h1_head *h = NULL;
    int rc = 0;

    for (;;) {
        struct h2r_cursor c = {b->p + b->used, b->len - b->used};
        size_t head_len = h1_head_len(&c, &s->h1_scanned[CAP_DIR_S2C]);
        if (head_len == 0)
            goto out;
        if (!h) {
            h = malloc(sizeof(*h));
            if (!h)
                return H2R_ERR_NOMEM;
        }
        if (h1_parse_response(c.p, head_len, h) != 0) {
            rc = mark_undecodable(s, "not_http2", NULL);
            goto out;
        }
        b->used += head_len;
        s->h1_scanned[CAP_DIR_S2C] = 0;
        if (h->status == 101)
            break;
        if (h->status >= 100 && h->status <= 199)
            continue; /* 100 Continue / 103 Early Hints precede the real answer */
        rc = mark_undecodable(s, "h2c_upgrade_refused", NULL);
        goto out;
    }
    rc = start_h2(s);
    if (rc != 0)
        goto out;
    rc = identified(s, H2R_TRANSPORT_H2C_UPGRADE);
    if (rc != 0)
        goto out;
    /* The client's settings ride in HTTP2-Settings, acknowledged by the 101 itself. */
    if (s->up_settings && cap_h2_apply_settings(s->h2, CAP_DIR_C2S, s->up_settings,
                                                s->up_settings_len) == H2R_ERR_NOMEM) {
        rc = H2R_ERR_NOMEM;
        goto out;
    }
    free(s->up_settings);
    s->up_settings = NULL;
    rc = replay_prebufs(s);
out:
    free(h);
    return record_error(s, rc);
}

/* ---- TLS ---- */

static int tls_secret(void *ud, const uint8_t client_random[CAP_KEYLOG_RANDOM_LEN],
                      enum cap_keylog_label label, uint8_t secret[CAP_KEYLOG_MAX_SECRET],
                      size_t *len, int final)
{
    struct cap_session *s = ud;
    struct cap_keylog *kl = s->env->keylog;
    int rc = cap_keylog_lookup(kl, client_random, label, secret, len, final);

    if (rc < 0)
        return rc;
    if (rc == CAP_KEYLOG_FOUND)
        return CAP_TLS_KEY_FOUND;
    /* Live: the client may not have written the line yet; the TLS layer holds its records. */
    return cap_keylog_following(kl) && !final ? CAP_TLS_KEY_PENDING : CAP_TLS_KEY_MISSING;
}

static int tls_plaintext(void *ud, int dir, const uint8_t *buf, size_t len, int64_t ts)
{
    struct cap_session *s = ud;
    if (s->state == SS_UNDECODABLE || s->state == SS_CLOSED)
        return 0;
    s->any_plaintext = 1;
    return clear_feed(s, dir, buf, len, ts);
}

static int tls_alpn(void *ud, const char *proto)
{
    struct cap_session *s = ud;
    snprintf(s->alpn, sizeof(s->alpn), "%s", proto);
    return 0;
}

static int tls_fail(void *ud, const char *reason)
{
    struct cap_session *s = ud;
    if (s->state == SS_UNDECODABLE || s->state == SS_CLOSED)
        return 0;
    snprintf(s->reason_buf, sizeof(s->reason_buf), "%s", reason);
    return mark_undecodable(s, s->reason_buf, s->state == SS_H2 ? "tls_error" : NULL);
}

/*
 * The first client bytes are a TLS handshake record. With a key log, what was
 * held for detection becomes the TLS layer's input, in capture order, and
 * detection starts over on the decrypted application data.
 */
static int start_tls(struct cap_session *s)
{
    static const struct cap_tls_callbacks cb = {tls_secret, tls_plaintext, tls_alpn, tls_fail};
    struct prebuf held[2];
    size_t seg[2] = {0, 0}, start[2] = {0, 0};
    int rc = 0;

    s->tls_flow = 1;
    s->transport = H2R_TRANSPORT_TLS;
    s->env->stats->tls_flows++;
    if (!s->env->keylog)
        return mark_undecodable(s, "tls_no_keylog", NULL);
    s->tls = cap_tls_new(&cb, s, &s->env->stats->tls);
    if (!s->tls)
        return record_error(s, H2R_ERR_NOMEM);
    held[0] = s->pre[0];
    held[1] = s->pre[1];
    memset(s->pre, 0, sizeof(s->pre));
    s->h1_scanned[0] = s->h1_scanned[1] = 0;
    while (s->state != SS_UNDECODABLE) {
        int dir = -1;
        for (int d = 0; d < 2; d++) {
            if (seg[d] == held[d].nsegs)
                continue;
            if (dir < 0 || held[d].segs[seg[d]].ts < held[dir].segs[seg[dir]].ts)
                dir = d;
        }
        if (dir < 0)
            break;
        size_t end = held[dir].segs[seg[dir]].end;
        rc = cap_tls_feed(s->tls, dir, held[dir].p + start[dir], end - start[dir],
                          held[dir].segs[seg[dir]].ts);
        start[dir] = end;
        seg[dir]++;
        if (rc != 0)
            break;
    }
    prebuf_free(&held[0]);
    prebuf_free(&held[1]);
    return record_error(s, rc);
}

/* ---- public API ---- */

struct cap_session *cap_session_new_with_sink(struct cap_session_env *env,
                                              const struct cap_flow_info *info,
                                              const struct cap_session_sink *sink)
{
    struct cap_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->env = env;
    s->sink = *sink;
    s->info = *info;
    s->info.client[sizeof(s->info.client) - 1] = '\0';
    s->info.server[sizeof(s->info.server) - 1] = '\0';
    s->state = SS_DETECT;
    s->transport = H2R_TRANSPORT_UNKNOWN;
    s->conn_flags = info->partial ? H2R_CONN_F_PARTIAL : 0;
    s->goaway_code = -1;
    return s;
}

struct cap_session *cap_session_new(struct cap_session_env *env, const struct cap_flow_info *info)
{
    struct cap_session_sink sink = {tw_conn, tw_conn_end, tw_exchange, env->tw, tw_ts_session};
    return cap_session_new_with_sink(env, info, &sink);
}

/* Cleartext bytes of one direction (TCP payload, or TLS application data). */
static int clear_feed(struct cap_session *s, int dir, const uint8_t *buf, size_t len, int64_t ts_ns)
{
    int rc;

    switch (s->state) {
    case SS_DETECT:
        rc = prebuf_append(&s->pre[dir], buf, len, ts_ns);
        if (rc == H2R_ERR_LIMIT)
            return mark_undecodable(s, s->info.partial ? "partial_hpack_state" : "not_http2", NULL);
        if (rc != 0)
            return rc;
        return dir == CAP_DIR_C2S ? detect(s) : 0;
    case SS_UPGRADE:
        if (dir == CAP_DIR_C2S) {
            rc = upgrade_body(s, &buf, &len, ts_ns);
            if (rc != 0 || len == 0)
                return rc;
        }
        rc = prebuf_append(&s->pre[dir], buf, len, ts_ns);
        if (rc == H2R_ERR_LIMIT)
            return mark_undecodable(s, "not_http2", NULL);
        if (rc != 0)
            return rc;
        return dir == CAP_DIR_S2C ? upgrade_answer(s) : 0;
    case SS_H2:
        if (dir == CAP_DIR_C2S) {
            rc = upgrade_body(s, &buf, &len, ts_ns);
            if (rc != 0 || len == 0)
                return rc;
        }
        return h2_feed(s, dir, buf, len, ts_ns);
    case SS_TS_UPGRADE:
        rc = prebuf_append(&s->pre[dir], buf, len, ts_ns);
        if (rc == H2R_ERR_LIMIT) {
            cap_ts_fail(s->ts, "no answer head within 64 KiB");
            ts_settle(s);
            return 0;
        }
        if (rc != 0)
            return rc;
        return dir == CAP_DIR_S2C ? ts_answer(s) : 0;
    case SS_TS:
        return ts_feed(s, dir, buf, len, ts_ns);
    case SS_TS_DONE:
    case SS_TS_KEY:
    case SS_UNDECODABLE:
    case SS_CLOSED:
        break;
    }
    return 0;
}

int cap_session_feed(struct cap_session *s, int dir, const uint8_t *buf, size_t len, int64_t ts_ns)
{
    if (dir != CAP_DIR_C2S && dir != CAP_DIR_S2C)
        return H2R_ERR_ARG;
    if (s->env->write_error)
        return s->env->write_error;
    if (len == 0)
        return 0;
    s->any_bytes = 1;
    if (s->state == SS_UNDECODABLE || s->state == SS_CLOSED) {
        cap_tls_free(s->tls); /* safe here: no TLS callback is running */
        s->tls = NULL;
        return 0;
    }
    if (s->tls)
        return record_error(s, cap_tls_feed(s->tls, dir, buf, len, ts_ns));
    return clear_feed(s, dir, buf, len, ts_ns);
}

void cap_session_gap(struct cap_session *s, int dir, uint64_t missing, int64_t ts_ns)
{
    (void)dir;
    (void)ts_ns;
    if (missing == 0 || s->state == SS_CLOSED)
        return;
    s->conn_flags |= H2R_CONN_F_GAPS;
    if (s->state == SS_UNDECODABLE || s->state == SS_TS_DONE || s->state == SS_TS_KEY)
        return;
    if (s->state == SS_TS_UPGRADE || s->state == SS_TS) {
        /* Frame boundaries are lost: the session keeps its shape so far, and ends there. */
        cap_ts_gap(s->ts, dir);
        ts_settle(s);
        return;
    }
    /* Before the transport is known there is no exchange worth writing. */
    mark_undecodable(s, "gap", s->state == SS_H2 ? "capture_gap" : NULL);
    /* A write failure is kept in env->write_error and returned by the next call. */
}

int cap_session_close(struct cap_session *s, uint32_t how, int64_t ts_ns, uint64_t bytes_c2s,
                      uint64_t bytes_s2c, uint64_t gap_bytes)
{
    struct h2r_conn_end e;
    int rc = 0, rc2, rc_tls = 0;

    if (s->state == SS_CLOSED)
        return 0;
    if (gap_bytes > 0)
        s->conn_flags |= H2R_CONN_F_GAPS;
    if (s->tls && s->state != SS_UNDECODABLE) {
        /* Last chance for held records; may hand over plaintext or give up. */
        rc_tls = record_error(s, cap_tls_finish(s->tls));
    }
    switch (s->state) {
    case SS_DETECT:
        if (!(s->tls_flow ? s->any_plaintext : s->any_bytes)) {
            s->env->stats->flows_no_data++;
            s->reason = "no_data";
            rc = write_conn(s);
        } else {
            rc = mark_undecodable(s, s->info.partial ? "partial_hpack_state" : "not_http2", NULL);
        }
        break;
    case SS_UPGRADE:
        rc = mark_undecodable(s, "h2c_upgrade_unanswered", NULL);
        break;
    case SS_H2:
        rc = cap_exch_finish_all(s->ex,
                                 how == H2R_CONN_END_CAPTURE_END ? "capture_ended" : "conn_closed");
        rc2 = write_conn(s);
        if (rc == 0)
            rc = rc2;
        break;
    case SS_TS_KEY:
    case SS_TS_UPGRADE:
    case SS_TS:
    case SS_TS_DONE:
        rc = write_conn(s); /* written at detection; kept for symmetry */
        break;
    case SS_UNDECODABLE:
    case SS_CLOSED:
        break;
    }
    if (s->ts) {
        struct h2r_ts_session t;
        cap_ts_finish(s->ts, how, ts_ns, &t);
        rc2 = record_error(s, s->sink.ts_session ? s->sink.ts_session(s->sink.ud, &t) : 0);
        if (rc == 0)
            rc = rc2;
    }

    memset(&e, 0, sizeof(e));
    e.id = s->info.conn_id;
    e.t_close_ns = ts_ns;
    e.how = how;
    if (s->state == SS_UNDECODABLE)
        e.how = H2R_CONN_END_UNDECODABLE;
    else if (s->goaway_code >= 0 && how != H2R_CONN_END_RST)
        e.how = H2R_CONN_END_GOAWAY;
    e.flags = s->conn_flags;
    e.goaway_code = s->goaway_code;
    e.bytes_c2s = bytes_c2s;
    e.bytes_s2c = bytes_s2c;
    e.gap_bytes = gap_bytes;
    e.exchanges = s->ex ? cap_exch_written(s->ex) : 0;
    e.reason = s->reason;
    s->state = SS_CLOSED;
    rc2 = record_error(s, s->sink.conn_end ? s->sink.conn_end(s->sink.ud, &e) : 0);
    if (rc == 0)
        rc = rc2;
    if (rc == 0)
        rc = rc_tls;
    if (rc == 0 && s->env->write_error)
        rc = s->env->write_error;
    cap_tls_free(s->tls);
    s->tls = NULL;
    return rc;
}

void cap_session_free(struct cap_session *s)
{
    if (!s)
        return;
    cap_tls_free(s->tls);
    cap_h2_free(s->h2);
    cap_exch_free(s->ex);
    prebuf_free(&s->pre[0]);
    prebuf_free(&s->pre[1]);
    free(s->up_settings);
    cap_ts_free(s->ts);
    free(s);
}

int cap_session_stats_export(const struct cap_session_stats *st, struct cap_counter_list *l)
{
    const struct {
        const char *name;
        uint64_t value;
    } v[] = {
        {"h2c.prior_knowledge", st->flows_h2c_prior},
        {"h2c.upgrade", st->flows_h2c_upgrade},
        {"flows.no_data", st->flows_no_data},
        {"undecodable.not_http2", st->undecodable_not_http2},
        {"undecodable.partial_hpack_state", st->undecodable_partial},
        {"undecodable.gap", st->undecodable_gap},
        {"undecodable.proto_error", st->undecodable_proto},
        {"undecodable.h2c_upgrade_refused", st->upgrade_rejected},
        {"undecodable.h2c_upgrade_unanswered", st->undecodable_upgrade_unanswered},
        {"undecodable.h2c_upgrade_unsupported", st->undecodable_upgrade_unsupported},
        {"h2.frames", st->h2_frames},
        {"h2.frames_unknown_type", st->h2_frames_unknown_type},
        {"h2.frames_ignored", st->h2_frames_ignored},
        {"h2.frames_unknown_stream", st->h2_frames_unknown_stream},
        {"h2.hpack_errors", st->h2_hpack_errors},
        {"h2.frame_too_large", st->h2_frame_too_large},
        {"h2.header_block_too_large", st->h2_header_block_too_large},
        {"h2.header_list_truncated", st->h2_header_list_truncated},
        {"h2.rst_stream", st->h2_rst_stream},
        {"h2.goaway", st->h2_goaway},
        {"h2.push_promise", st->h2_push_promise},
        {"h2.req_trailers_dropped", st->h2_req_trailers_dropped},
        {"h2.streams_cap_hit", st->streams_cap_hit},
        {"exchanges", st->exchanges},
        {"exchanges.incomplete", st->exchanges_incomplete},
        {"exchanges.bodies_truncated", st->bodies_truncated},
        {"redact.values", st->redacted_values},
        {"redact.bodies_dropped", st->redact_bodies_dropped},
        {"redact.table_full", st->redact_table_full},
        {"tls.flows", st->tls_flows},
        {"tls.h2", st->tls_h2},
        {"undecodable.tls_no_keylog", st->undecodable_tls_no_keylog},
        {"undecodable.tls_partial", st->undecodable_tls_partial},
        {"ts2021.sessions", st->ts.sessions},
        {"ts2021.identified", st->ts.identified},
        {"ts2021.identify_failed", st->ts.identify_failed},
        {"ts2021.bad_handshake", st->ts.bad_handshake},
        {"ts2021.refused", st->ts.refused},
        {"ts2021.rejected", st->ts.rejected},
        {"ts2021.undecodable", st->ts.undecodable},
        {"ts2021.frames", st->ts.frames},
        {"ts2021.recs_dropped", st->ts.recs_dropped},
        {"ts2021.key_requests", st->ts.key_requests},
        {"ts2021.node_table_full", st->ts.node_table_full},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int rc = cap_counter_add(l, v[i].name, v[i].value);
        if (rc != 0)
            return rc;
    }
    return cap_tls_stats_export(&st->tls, l);
}

uint64_t cap_session_undecodable_flows(const struct cap_session_stats *st)
{
    const struct cap_tls_stats *t = &st->tls;
    return st->undecodable_not_http2 + st->undecodable_partial + st->undecodable_gap +
           st->undecodable_proto + st->undecodable_upgrade_unanswered +
           st->undecodable_upgrade_unsupported + st->undecodable_tls_no_keylog +
           st->undecodable_tls_partial + t->no_key + t->bad_tag + t->unsupported_cipher +
           t->unsupported_version + t->unsupported + t->malformed + t->handshake_incomplete;
}
