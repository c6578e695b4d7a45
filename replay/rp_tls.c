/*
 * The TLS transport layer: OpenSSL over any lower rp_io, without blocking.
 *
 * OpenSSL talks to the layer below through a small custom BIO whose read
 * and write call the lower layer's table and turn its RP_IO_RETRY into BIO
 * retry flags, so SSL_get_error() reports WANT_READ / WANT_WRITE exactly
 * when the socket would block. Handshake failures become class "tls" with
 * the certificate verification result or the OpenSSL reason as detail; a
 * failure of the lower layer once the handshake is done keeps the lower
 * layer's class (a reset is "conn_closed", not "tls").
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "h2replay/error.h"
#include "h2replay/run.h"
#include "rp_transport.h"

struct tls_io {
    struct rp_io io;
    SSL *ssl;
    int handshaken;
};

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

/* SSL_CTX ex_data slot: non-NULL on contexts made for HTTP/1.1 (TS2021's upgrade). */
static int http1_idx = -1;
static pthread_once_t http1_once = PTHREAD_ONCE_INIT;

static void http1_idx_init(void)
{
    http1_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static int bio_write_ex(BIO *b, const char *data, size_t len, size_t *written)
{
    struct rp_io *lower = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    *written = 0;
    size_t put = 0;
    int rc = lower->ops->write(lower, (const uint8_t *)data, len, &put);
    if (rc == RP_IO_OK) {
        *written = put;
        return 1;
    }
    if (rc == RP_IO_RETRY)
        BIO_set_retry_write(b);
    return 0;
}

static int bio_read_ex(BIO *b, char *data, size_t len, size_t *readbytes)
{
    struct rp_io *lower = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    *readbytes = 0;
    size_t got = 0;
    int rc = lower->ops->read(lower, (uint8_t *)data, len, &got);
    if (rc == RP_IO_OK) {
        *readbytes = got;
        return 1;
    }
    if (rc == RP_IO_RETRY)
        BIO_set_retry_read(b);
    return 0;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "h2r-rp-io");
    if (!m)
        return;
    BIO_meth_set_write_ex(m, bio_write_ex);
    BIO_meth_set_read_ex(m, bio_read_ex);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    bio_method = m;
}

/* Fills class and detail after a failed SSL call that returned ret. */
static int tls_fail(struct tls_io *t, int ret)
{
    struct rp_io *io = &t->io;
    int e = SSL_get_error(t->ssl, ret);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        io->want = e == SSL_ERROR_WANT_READ ? RP_WANT_READ : RP_WANT_WRITE;
        return RP_IO_RETRY;
    }
    struct rp_io *lower = io->lower;
    if (e == SSL_ERROR_ZERO_RETURN) {
        io->err_class = t->handshaken ? H2R_EC_CONN_CLOSED : H2R_EC_TLS;
        io->err_detail = "close_notify";
        return RP_IO_ERROR;
    }
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        /* the lower layer failed (or the peer closed without close_notify) */
        const char *d = lower->err_class ? lower->err_detail : "EOF";
        if (t->handshaken) {
            io->err_class = lower->err_class ? lower->err_class : H2R_EC_CONN_CLOSED;
            io->err_detail = d;
        } else {
            io->err_class = H2R_EC_TLS;
            snprintf(io->err_buf, sizeof(io->err_buf), "connection lost in handshake: %s", d);
            io->err_detail = io->err_buf;
        }
        return RP_IO_ERROR;
    }
    io->err_class = H2R_EC_TLS;
    long v = SSL_get_verify_result(t->ssl);
    unsigned long ec = ERR_peek_last_error();
    if (!t->handshaken && v != X509_V_OK) {
        snprintf(io->err_buf, sizeof(io->err_buf), "certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
    } else if (ec) {
        char tmp[160];
        ERR_error_string_n(ec, tmp, sizeof(tmp));
        snprintf(io->err_buf, sizeof(io->err_buf), "%s", tmp);
    } else {
        snprintf(io->err_buf, sizeof(io->err_buf), "SSL error %d", e);
    }
    io->err_detail = io->err_buf;
    ERR_clear_error();
    return RP_IO_ERROR;
}

static int tls_handshake(struct rp_io *io)
{
    struct tls_io *t = (struct tls_io *)io;
    if (t->handshaken)
        return RP_IO_OK;
    struct rp_io *lower = io->lower;
    int rc = lower->ops->handshake(lower);
    if (rc != RP_IO_OK) {
        io->want = lower->want;
        io->err_class = lower->err_class;
        io->err_detail = lower->err_detail;
        return rc;
    }
    lower->err_class = H2R_EC_NONE;
    ERR_clear_error();
    int ret = SSL_do_handshake(t->ssl);
    if (ret != 1)
        return tls_fail(t, ret);
    t->handshaken = 1;
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
    if (http1_idx >= 0 && SSL_CTX_get_ex_data(SSL_get_SSL_CTX(t->ssl), http1_idx)) {
        /* an HTTP/1.1 upgrade needs http/1.1 or no ALPN at all (an h2 connection cannot
         * carry "Upgrade", RFC 9113 8.6) */
        if (alpn_len != 0 && (alpn_len != 8 || memcmp(alpn, "http/1.1", 8) != 0)) {
            io->err_class = H2R_EC_TLS;
            io->err_detail = "server did not select ALPN http/1.1";
            return RP_IO_ERROR;
        }
        return RP_IO_OK;
    }
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        io->err_class = H2R_EC_TLS;
        io->err_detail = "server did not select ALPN h2";
        return RP_IO_ERROR;
    }
    return RP_IO_OK;
}

static int tls_read(struct rp_io *io, uint8_t *buf, size_t len, size_t *got)
{
    struct tls_io *t = (struct tls_io *)io;
    io->lower->err_class = H2R_EC_NONE;
    ERR_clear_error();
    int ret = SSL_read_ex(t->ssl, buf, len, got);
    if (ret == 1)
        return RP_IO_OK;
    *got = 0;
    return tls_fail(t, ret);
}

static int tls_write(struct rp_io *io, const uint8_t *buf, size_t len, size_t *put)
{
    struct tls_io *t = (struct tls_io *)io;
    io->lower->err_class = H2R_EC_NONE;
    ERR_clear_error();
    int ret = SSL_write_ex(t->ssl, buf, len, put);
    if (ret == 1)
        return RP_IO_OK;
    *put = 0;
    return tls_fail(t, ret);
}

static int tls_pending(const struct rp_io *io)
{
    const struct tls_io *t = (const struct tls_io *)io;
    return t->handshaken && SSL_pending(t->ssl) > 0;
}

static void tls_free(struct rp_io *io)
{
    if (!io)
        return;
    struct tls_io *t = (struct tls_io *)io;
    if (t->ssl) {
        if (t->handshaken) {
            ERR_clear_error();
            SSL_shutdown(t->ssl); /* best effort close_notify; never waits */
        }
        SSL_free(t->ssl);
    }
    ERR_clear_error();
    if (io->lower)
        io->lower->ops->free(io->lower);
    free(t);
}

static const struct rp_io_ops tls_ops = {
    .name = "tls",
    .handshake = tls_handshake,
    .read = tls_read,
    .write = tls_write,
    .pending = tls_pending,
    .free = tls_free,
};

int rp_tls_ctx_new(SSL_CTX **out, int insecure, const char *cacert, char *errbuf, size_t errlen)
{
    return rp_tls_ctx_new_alpn(out, insecure, cacert, 0, errbuf, errlen);
}

int rp_tls_ctx_new_alpn(SSL_CTX **out, int insecure, const char *cacert, int http1, char *errbuf,
                        size_t errlen)
{
    *out = NULL;
    if (http1) {
        pthread_once(&http1_once, http1_idx_init);
        if (http1_idx < 0)
            return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "SSL_CTX_get_ex_new_index failed");
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "SSL_CTX_new failed");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char alpn[] = {2, 'h', '2'};
    static const unsigned char alpn_http1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    if (http1) {
        if (SSL_CTX_set_alpn_protos(ctx, alpn_http1, sizeof(alpn_http1)) != 0 ||
            SSL_CTX_set_ex_data(ctx, http1_idx, (void *)alpn_http1) != 1)
            goto fail;
    } else if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn)) != 0) {
        goto fail;
    }
    if (insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = cacert ? SSL_CTX_load_verify_locations(ctx, cacert, NULL)
                        : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            char tmp[160] = "";
            ERR_error_string_n(ERR_get_error(), tmp, sizeof(tmp));
            SSL_CTX_free(ctx);
            ERR_clear_error();
            return h2r_seterr(errbuf, errlen, H2R_ERR_IO, "loading CA certificates%s%s: %s",
                              cacert ? " from " : "", cacert ? cacert : "", tmp);
        }
    }
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "TLS context setup failed");
}

void rp_tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}

int rp_tls_wrap(struct rp_io **out, struct rp_io *lower, SSL_CTX *ctx, const char *host,
                int host_is_ip)
{
    *out = NULL;
    pthread_once(&bio_once, bio_method_init);
    if (!bio_method)
        return H2R_ERR_NOMEM;
    struct tls_io *t = calloc(1, sizeof(*t));
    if (!t)
        return H2R_ERR_NOMEM;
    t->ssl = SSL_new(ctx);
    BIO *bio = BIO_new(bio_method);
    if (!t->ssl || !bio)
        goto fail;
    BIO_set_data(bio, lower);
    SSL_set_bio(t->ssl, bio, bio);
    bio = NULL;
    SSL_set_connect_state(t->ssl);
    if (host_is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) != 1)
            goto fail;
    } else {
        if (SSL_set_tlsext_host_name(t->ssl, host) != 1 || SSL_set1_host(t->ssl, host) != 1)
            goto fail;
    }
    t->io.ops = &tls_ops;
    t->io.lower = lower;
    t->io.fd = lower->fd;
    t->io.want = RP_WANT_WRITE;
    *out = &t->io;
    return 0;
fail:
    BIO_free(bio);
    SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return H2R_ERR_NOMEM;
}
