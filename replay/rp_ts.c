/*
 * The TS2021 transport layer and the control-key fetch (see rp_ts.h).
 *
 * A ts_io sits on any lower rp_io (TCP, or TLS offering http/1.1) and owns a
 * ts_session, the I/O-free record layer of core/ts/ts2021.h. It holds two byte
 * queues, both allocated only while non-empty so ten thousand idle node
 * sessions cost no buffers:
 *
 *   in   plaintext that decrypted beyond what the caller's read() could take
 *        (one socket read can carry many records; the server's first HTTP/2
 *        frames often arrive with the handshake response)
 *   out  sealed records not yet taken by the lower layer; the plaintext they
 *        carry is reported written only when all of them are below, so a
 *        caller that gets RP_IO_RETRY retries with the same bytes (the
 *        contract of SSL_write, which rp_h2's stash already honours)
 *
 * Ciphertext is read into a per-thread buffer: ts_session_feed() consumes
 * every byte it is given (partial frames are kept inside the session).
 *
 * Classes: anything that goes wrong before the session is open is
 * handshake_rejected with the lower layer's or the parser's reason (Headscale
 * closes right after the 101 when the capability version is below its floor
 * or msg1 does not decrypt with its key: its error frame is corked and never
 * sent, docs/ts2021.md section 3); a connection failure of the lower layer
 * (refused, TLS...) keeps the lower layer's class. After OPEN, EOF or a reset
 * is closed_by_server and a bad record is protocol.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "h2replay/error.h"
#include "h2replay/run.h"
#include "h2replay/units.h"
#include "rp_transport.h"
#include "rp_ts.h"
#include "rp_url.h"

#define UPGRADE_REQ_MAX 1024   /* the POST /ts2021 request is about 330 bytes */
#define CIPHER_BUF (16u << 10) /* one lower read */
#define READ_ROUNDS 16         /* lower reads per read() call without plaintext */
#define WRITE_MAX_PLAIN (16u * TS_MAX_PLAINTEXT) /* plaintext sealed per write() call */
#define IN_QUEUE_MAX (8u << 20) /* decrypted, unread plaintext (a hostile server's flood) */

enum ts_io_state {
    TSIO_LOWER = 0, /* lower layer connecting (TCP, TLS) */
    TSIO_REQUEST,   /* the upgrade request is going out */
    TSIO_RESPONSE,  /* waiting for the 101 and the handshake response */
    TSIO_OPEN,      /* records both ways */
    TSIO_DEAD
};

struct ts_io {
    struct rp_io io;
    int state; /* enum ts_io_state */
    struct ts_session s;
    char host[RP_URL_MAX_AUTHORITY];
    /* out: sealed bytes [out_off, out_len); out_plain = plaintext they carry */
    uint8_t *out;
    size_t out_len, out_off, out_cap, out_plain;
    /* in: decrypted plaintext [in_off, in_len) */
    uint8_t *in;
    size_t in_len, in_off, in_cap;
    /* the caller's buffer during read(): plaintext goes there first */
    uint8_t *dst;
    size_t dst_cap, dst_got;
    int nomem;
};

static _Thread_local uint8_t cipher_buf[CIPHER_BUF];

/* ---- session callbacks (inside ts_session_feed: no I/O here) ---- */

static int queue_in(struct ts_io *t, const uint8_t *buf, size_t len)
{
    if (t->in_off == t->in_len)
        t->in_off = t->in_len = 0;
    if (t->in_len - t->in_off + len > IN_QUEUE_MAX)
        return H2R_ERR_LIMIT;
    if (t->in_len + len > t->in_cap) {
        if (t->in_off) { /* compact first */
            memmove(t->in, t->in + t->in_off, t->in_len - t->in_off);
            t->in_len -= t->in_off;
            t->in_off = 0;
        }
        size_t n = t->in_cap ? t->in_cap : 16384;
        while (n < t->in_len + len)
            n *= 2;
        if (n != t->in_cap) {
            uint8_t *p = realloc(t->in, n);
            if (!p) {
                t->nomem = 1;
                return H2R_ERR_NOMEM;
            }
            t->in = p;
            t->in_cap = n;
        }
    }
    memcpy(t->in + t->in_len, buf, len);
    t->in_len += len;
    return 0;
}

static int on_plain(void *ud, const uint8_t *buf, size_t len)
{
    struct ts_io *t = ud;
    if (t->dst && t->dst_got < t->dst_cap && t->in_off == t->in_len) {
        size_t n = t->dst_cap - t->dst_got;
        if (n > len)
            n = len;
        memcpy(t->dst + t->dst_got, buf, n);
        t->dst_got += n;
        buf += n;
        len -= n;
    }
    return len ? queue_in(t, buf, len) : 0;
}

static const struct ts_session_callbacks session_cb = {
    .on_handshake = NULL,
    .on_early = NULL, /* the node-key challenge: TS itself ignores it (docs/ts2021.md) */
    .on_data = on_plain,
};

/* ---- helpers ---- */

static int fail(struct ts_io *t, uint32_t cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct ts_io *t, uint32_t cls, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->io.err_buf, sizeof(t->io.err_buf), fmt, ap);
    va_end(ap);
    t->io.err_class = cls;
    t->io.err_detail = t->io.err_buf;
    t->state = TSIO_DEAD;
    return RP_IO_ERROR;
}

/* Takes the lower layer's failure as ours, renamed by state. */
static int lower_failed(struct ts_io *t)
{
    struct rp_io *lower = t->io.lower;
    const char *d = lower->err_detail ? lower->err_detail : "error";
    uint32_t cls = lower->err_class ? lower->err_class : H2R_EC_IO;
    switch (t->state) {
    case TSIO_LOWER:
        /* refused, connect_timeout, tls: not the TS2021 server's doing */
        t->io.err_class = cls;
        snprintf(t->io.err_buf, sizeof(t->io.err_buf), "%s", d);
        t->io.err_detail = t->io.err_buf;
        t->state = TSIO_DEAD;
        return RP_IO_ERROR;
    case TSIO_REQUEST:
    case TSIO_RESPONSE: {
        int status = ts_session_http_status(&t->s);
        if (status == 101)
            return fail(t, H2R_EC_TS_HANDSHAKE,
                        "closed after 101 (%s): control key or capability version refused", d);
        return fail(t, H2R_EC_TS_HANDSHAKE, "closed before the 101 (%s)", d);
    }
    default:
        if (cls == H2R_EC_CONN_CLOSED)
            cls = H2R_EC_TS_CLOSED;
        return fail(t, cls, "%s", d);
    }
}

/* Pushes the out queue down. RP_IO_OK: empty now. */
static int flush_out(struct ts_io *t)
{
    struct rp_io *lower = t->io.lower;
    while (t->out_off < t->out_len) {
        size_t put = 0;
        int rc = lower->ops->write(lower, t->out + t->out_off, t->out_len - t->out_off, &put);
        if (rc == RP_IO_RETRY) {
            t->io.want = lower->want;
            return RP_IO_RETRY;
        }
        if (rc != RP_IO_OK)
            return lower_failed(t);
        t->out_off += put;
    }
    /* idle sessions hold no output buffer */
    free(t->out);
    t->out = NULL;
    t->out_off = t->out_len = t->out_cap = 0;
    return RP_IO_OK;
}

static int reserve_out(struct ts_io *t, size_t n)
{
    if (n <= t->out_cap)
        return 0;
    uint8_t *p = realloc(t->out, n);
    if (!p)
        return H2R_ERR_NOMEM;
    t->out = p;
    t->out_cap = n;
    return 0;
}

/* Reads from below and feeds the session, until the state changes, plaintext for the
 * caller appears, or the lower layer has nothing. */
static int pump(struct ts_io *t)
{
    struct rp_io *lower = t->io.lower;
    for (int i = 0; i < READ_ROUNDS; i++) {
        size_t got = 0;
        int rc = lower->ops->read(lower, cipher_buf, sizeof(cipher_buf), &got);
        if (rc == RP_IO_RETRY) {
            t->io.want = lower->want;
            return RP_IO_RETRY;
        }
        if (rc != RP_IO_OK)
            return lower_failed(t);
        int was_open = t->s.state == TS_SESSION_OPEN;
        int frc = ts_session_feed(&t->s, cipher_buf, got);
        if (frc != 0) {
            if (t->nomem)
                return fail(t, H2R_EC_IO, "out of memory");
            if (frc == H2R_ERR_LIMIT && t->s.state == TS_SESSION_OPEN)
                return fail(t, H2R_EC_PROTOCOL, "ts2021: more than %u bytes of unread input",
                            IN_QUEUE_MAX);
            if (!was_open && t->s.state != TS_SESSION_OPEN) {
                int status = ts_session_http_status(&t->s);
                if (status && status != 101)
                    return fail(t, H2R_EC_TS_HANDSHAKE, "upgrade answered HTTP %d: %s", status,
                                t->s.err);
                return fail(t, H2R_EC_TS_HANDSHAKE, "%s", t->s.err);
            }
            return fail(t, H2R_EC_PROTOCOL, "%s", t->s.err);
        }
        if (!was_open && t->s.state == TS_SESSION_OPEN)
            return RP_IO_OK; /* the handshake completed */
        if (t->dst_got || t->in_off < t->in_len)
            return RP_IO_OK;
    }
    /* more may be there: the caller's loop comes back (pending() says so) */
    return RP_IO_OK;
}

/* ---- the layer ---- */

static int ts_handshake(struct rp_io *io)
{
    struct ts_io *t = (struct ts_io *)io;
    struct rp_io *lower = io->lower;
    int rc;
    switch (t->state) {
    case TSIO_LOWER: {
        rc = lower->ops->handshake(lower);
        if (rc == RP_IO_RETRY) {
            io->want = lower->want;
            return rc;
        }
        if (rc != RP_IO_OK)
            return lower_failed(t);
        lower->err_class = H2R_EC_NONE;
        if (reserve_out(t, UPGRADE_REQ_MAX))
            return fail(t, H2R_EC_IO, "out of memory");
        size_t n = 0;
        int brc = ts_session_client_request(&t->s, t->host, NULL, (char *)t->out, t->out_cap, &n);
        if (brc != 0)
            return fail(t, H2R_EC_TS_HANDSHAKE, "cannot build the upgrade request: %s",
                        t->s.err[0] ? t->s.err : h2r_strerror(brc));
        t->out_len = n;
        t->out_off = 0;
        t->state = TSIO_REQUEST;
    }
        /* fall through */
    case TSIO_REQUEST:
        rc = flush_out(t);
        if (rc != RP_IO_OK)
            return rc;
        t->state = TSIO_RESPONSE;
        /* fall through */
    case TSIO_RESPONSE:
        for (int i = 0; i < READ_ROUNDS && t->s.state != TS_SESSION_OPEN; i++) {
            rc = pump(t);
            if (rc != RP_IO_OK)
                return rc;
        }
        if (t->s.state != TS_SESSION_OPEN) {
            io->want = RP_WANT_READ;
            return RP_IO_RETRY;
        }
        t->state = TSIO_OPEN;
        io->want = 0;
        /* the handshake state is spent: free its OpenSSL objects and wipe the machine
         * key now rather than when the session ends (held sessions live long) */
        ts_noise_cleanup(&t->s.noise);
        return RP_IO_OK;
    case TSIO_OPEN:
        return RP_IO_OK;
    default:
        return RP_IO_ERROR;
    }
}

static int ts_read(struct rp_io *io, uint8_t *buf, size_t len, size_t *got)
{
    struct ts_io *t = (struct ts_io *)io;
    *got = 0;
    if (t->state != TSIO_OPEN)
        return t->state == TSIO_DEAD ? RP_IO_ERROR : (io->want = RP_WANT_READ, RP_IO_RETRY);
    if (t->in_off < t->in_len) {
        size_t n = t->in_len - t->in_off;
        if (n > len)
            n = len;
        memcpy(buf, t->in + t->in_off, n);
        t->in_off += n;
        if (t->in_off == t->in_len) {
            free(t->in); /* idle sessions hold no input buffer */
            t->in = NULL;
            t->in_off = t->in_len = t->in_cap = 0;
        }
        *got = n;
        return RP_IO_OK;
    }
    t->dst = buf;
    t->dst_cap = len;
    t->dst_got = 0;
    int rc = RP_IO_OK;
    for (int i = 0; i < READ_ROUNDS && t->dst_got == 0; i++) {
        rc = pump(t);
        if (rc != RP_IO_OK)
            break;
    }
    size_t n = t->dst_got;
    t->dst = NULL;
    t->dst_cap = t->dst_got = 0;
    if (n) {
        /* plaintext first: a failure right behind it shows on the next call */
        *got = n;
        return RP_IO_OK;
    }
    if (rc == RP_IO_OK) {
        /* records came but carried nothing (empty records), or a read budget ran out */
        io->want = RP_WANT_READ;
        return RP_IO_RETRY;
    }
    return rc;
}

static int ts_write(struct rp_io *io, const uint8_t *buf, size_t len, size_t *put)
{
    struct ts_io *t = (struct ts_io *)io;
    *put = 0;
    if (t->state != TSIO_OPEN)
        return t->state == TSIO_DEAD ? RP_IO_ERROR : (io->want = RP_WANT_WRITE, RP_IO_RETRY);
    if (t->out_plain == 0) {
        if (len == 0)
            return RP_IO_OK;
        size_t n = len < WRITE_MAX_PLAIN ? len : WRITE_MAX_PLAIN;
        size_t need = ts_record_sealed_len(n);
        if (reserve_out(t, need))
            return fail(t, H2R_EC_IO, "out of memory");
        size_t outlen = 0;
        int rc = ts_session_seal(&t->s, buf, n, t->out, t->out_cap, &outlen);
        if (rc != 0)
            return fail(t, H2R_EC_PROTOCOL, "%s", t->s.err[0] ? t->s.err : h2r_strerror(rc));
        t->out_len = outlen;
        t->out_off = 0;
        t->out_plain = n;
    } else if (len < t->out_plain) {
        /* the caller must retry with (at least) the bytes already sealed */
        return fail(t, H2R_EC_PROTOCOL, "ts2021: write retried with %zu bytes, %zu sealed", len,
                    t->out_plain);
    }
    int rc = flush_out(t);
    if (rc != RP_IO_OK)
        return rc;
    *put = t->out_plain;
    t->out_plain = 0;
    return RP_IO_OK;
}

static int ts_pending(const struct rp_io *io)
{
    const struct ts_io *t = (const struct ts_io *)io;
    return t->state == TSIO_OPEN &&
           (t->in_off < t->in_len || io->lower->ops->pending(io->lower));
}

static void ts_free(struct rp_io *io)
{
    if (!io)
        return;
    struct ts_io *t = (struct ts_io *)io;
    ts_session_cleanup(&t->s);
    if (t->in)
        OPENSSL_cleanse(t->in, t->in_cap);
    free(t->in);
    free(t->out);
    if (io->lower)
        io->lower->ops->free(io->lower);
    free(t);
}

static const struct rp_io_ops ts_ops = {
    .name = "ts2021",
    .handshake = ts_handshake,
    .read = ts_read,
    .write = ts_write,
    .pending = ts_pending,
    .free = ts_free,
};

int rp_ts_wrap(struct rp_io **out, struct rp_io *lower, uint16_t capver,
               const uint8_t machine_priv[TS_KEY_LEN], const uint8_t control_pub[TS_KEY_LEN],
               const char *host, char *errbuf, size_t errlen)
{
    *out = NULL;
    if (strlen(host) >= RP_URL_MAX_AUTHORITY)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "host too long");
    struct ts_io *t = calloc(1, sizeof(*t));
    if (!t)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    int rc = ts_session_client_init(&t->s, capver, machine_priv, control_pub, &session_cb, t);
    if (rc) {
        h2r_seterr(errbuf, errlen, rc, "%s", t->s.err[0] ? t->s.err : h2r_strerror(rc));
        free(t);
        return rc;
    }
    snprintf(t->host, sizeof(t->host), "%s", host);
    t->io.ops = &ts_ops;
    t->io.lower = lower;
    t->io.fd = lower->fd;
    t->io.want = lower->want;
    t->state = TSIO_LOWER;
    *out = &t->io;
    return 0;
}

int rp_ts_is_open(const struct rp_io *io)
{
    return io->ops == &ts_ops && ((const struct ts_io *)io)->state == TSIO_OPEN;
}

void rp_ts_counters(const struct rp_io *io, uint64_t *records_in, uint64_t *records_out)
{
    *records_in = *records_out = 0;
    if (io->ops != &ts_ops)
        return;
    const struct ts_io *t = (const struct ts_io *)io;
    *records_in = t->s.records_in;
    *records_out = t->s.records_out;
}

/* ---- GET /key ---- */

/* Waits (poll) until io's wanted direction is ready or the deadline passes. */
static int wait_io(struct rp_io *io, int64_t deadline)
{
    int64_t left = deadline - h2r_now_mono_ns();
    if (left <= 0)
        return -1;
    struct pollfd p = {.fd = io->fd, .events = (io->want & RP_WANT_WRITE) ? POLLOUT : POLLIN};
    int ms = (int)((left + 999999) / 1000000);
    int n;
    do {
        n = poll(&p, 1, ms);
    } while (n < 0 && errno == EINTR);
    return n > 0 ? 0 : -1;
}

int rp_ts_fetch_key(const struct sockaddr *addr, socklen_t addr_len, struct ssl_ctx_st *ssl_ctx,
                    const char *host, int host_ip, const char *authority, uint16_t capver,
                    int64_t timeout_ns, uint8_t control_pub[TS_KEY_LEN], uint32_t *cls,
                    char *errbuf, size_t errlen)
{
    int64_t deadline = h2r_now_mono_ns() + timeout_ns;
    *cls = H2R_EC_IO;
    struct rp_io *io = NULL;
    struct ts_http_resp *resp = NULL;
    const char *detail;
    char req[512];
    size_t req_len = 0, off = 0;
    int rc = ts_key_request_build(authority, capver, NULL, req, sizeof(req), &req_len);
    if (rc)
        return h2r_seterr(errbuf, errlen, rc, "GET /key: bad host '%s'", authority);
    rc = rp_tcp_connect(&io, addr, addr_len, cls, &detail);
    if (rc)
        return h2r_seterr(errbuf, errlen, rc, "GET /key: connect: %s", detail ? detail : "failed");
    if (ssl_ctx) {
        struct rp_io *tls;
        rc = rp_tls_wrap(&tls, io, ssl_ctx, host, host_ip);
        if (rc) {
            io->ops->free(io);
            return h2r_seterr(errbuf, errlen, rc, "GET /key: TLS setup failed");
        }
        io = tls;
    }
    rc = ts_http_resp_new(&resp, TS_HTTP_FULL, 0);
    if (rc) {
        h2r_seterr(errbuf, errlen, rc, "out of memory");
        goto out;
    }
    for (;;) { /* bounded by the deadline */
        int r = io->ops->handshake(io);
        if (r == RP_IO_OK)
            break;
        if (r == RP_IO_ERROR || wait_io(io, deadline)) {
            *cls = r == RP_IO_ERROR ? io->err_class : H2R_EC_CONNECT_TIMEOUT;
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_IO, "GET /key: connecting: %s",
                            r == RP_IO_ERROR ? io->err_detail : "timed out");
            goto out;
        }
    }
    *cls = H2R_EC_TS_HANDSHAKE; /* connected: from here on the server answers badly */
    while (off < req_len) {
        size_t put = 0;
        int r = io->ops->write(io, (const uint8_t *)req + off, req_len - off, &put);
        if (r == RP_IO_OK) {
            off += put;
            continue;
        }
        if (r == RP_IO_ERROR || wait_io(io, deadline)) {
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_IO, "GET /key: sending: %s",
                            r == RP_IO_ERROR ? io->err_detail : "timed out");
            goto out;
        }
    }
    while (!ts_http_resp_done(resp)) {
        uint8_t buf[4096];
        size_t got = 0, used = 0;
        int r = io->ops->read(io, buf, sizeof(buf), &got);
        if (r == RP_IO_RETRY) {
            if (wait_io(io, deadline)) {
                rc = h2r_seterr(errbuf, errlen, H2R_ERR_IO, "GET /key: no answer within %lld ms",
                                (long long)(timeout_ns / 1000000));
                goto out;
            }
            continue;
        }
        if (r == RP_IO_ERROR) {
            if (io->err_class == H2R_EC_CONN_CLOSED && ts_http_resp_eof(resp) == 0)
                break;
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_IO, "GET /key: reading: %s", io->err_detail);
            goto out;
        }
        rc = ts_http_resp_feed(resp, buf, got, &used);
        if (rc) {
            h2r_seterr(errbuf, errlen, rc, "GET /key: %s", ts_http_resp_error(resp));
            goto out;
        }
    }
    int status = ts_http_resp_status(resp);
    size_t blen = 0;
    const uint8_t *body = ts_http_resp_body(resp, &blen);
    if (status != 200) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_PROTO, "GET /key?v=%u: HTTP %d: %.*s",
                        (unsigned)capver, status, (int)(blen > 120 ? 120 : blen),
                        (const char *)body);
        goto out;
    }
    char perr[160] = "";
    rc = ts_key_response_parse(body, blen, control_pub, perr, sizeof(perr));
    if (rc)
        h2r_seterr(errbuf, errlen, rc, "GET /key?v=%u: %s", (unsigned)capver, perr);
out:
    ts_http_resp_free(resp);
    if (io)
        io->ops->free(io);
    return rc;
}
