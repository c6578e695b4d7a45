/*
 * Transports for replayed connections: one small table of functions.
 *
 * A transport is a stack of layers over one non-blocking socket: TCP at the
 * bottom, optionally TLS on top of it (the TLS layer does its socket I/O
 * through the layer below, never through the fd, so it would sit as well on
 * any other byte stream). Each operation returns RP_IO_OK, RP_IO_RETRY (the
 * socket is not ready: wait for the direction in `want`, then call again) or
 * RP_IO_ERROR (the transport is dead: `err_class` and `err_detail` say why in
 * the run file's terms). The event loop sees only this table.
 */
#ifndef H2R_RP_TRANSPORT_H
#define H2R_RP_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define RP_IO_OK 0
#define RP_IO_RETRY 1
#define RP_IO_ERROR (-1)

#define RP_WANT_READ 0x1
#define RP_WANT_WRITE 0x2

struct rp_io;

struct rp_io_ops {
    const char *name;
    /* Completes connection setup (TCP connect, TLS handshake). */
    int (*handshake)(struct rp_io *io);
    /* Reads up to len bytes into buf; *got > 0 with RP_IO_OK. The peer closing is an
     * RP_IO_ERROR with class conn_closed. */
    int (*read)(struct rp_io *io, uint8_t *buf, size_t len, size_t *got);
    /* Writes up to len bytes; *put > 0 with RP_IO_OK (possibly less than len). */
    int (*write)(struct rp_io *io, const uint8_t *buf, size_t len, size_t *put);
    /* 1 when the layer holds decoded input the socket no longer signals (TLS records). */
    int (*pending)(const struct rp_io *io);
    /* Closes and frees this layer and every layer below it. */
    void (*free)(struct rp_io *io);
};

struct rp_io {
    const struct rp_io_ops *ops;
    struct rp_io *lower;    /* the layer below, NULL for TCP */
    int fd;                 /* the socket under the whole stack */
    int want;               /* RP_WANT_* after RP_IO_RETRY */
    uint32_t err_class;     /* enum h2r_err_class after RP_IO_ERROR */
    const char *err_detail; /* static string or err_buf */
    char err_buf[200];
};

/*
 * Creates a non-blocking TCP socket and starts connecting to addr. Returns 0
 * with *out set, or a negative H2R code with *cls / *detail naming the local
 * failure (EMFILE...) or an immediate refusal (ECONNREFUSED).
 */
int rp_tcp_connect(struct rp_io **out, const struct sockaddr *addr, socklen_t addr_len,
                   uint32_t *cls, const char **detail);

/* The errno's symbolic name ("ECONNREFUSED"), or "errno N" via buf. */
const char *rp_errno_name(int err, char *buf, size_t len);

/* ---- TLS (rp_tls.c) ---- */

struct ssl_ctx_st;

/*
 * A client TLS context offering ALPN "h2": certificates verified against the
 * system store (or cacert) unless insecure. Returns 0 or a negative code with
 * errbuf filled.
 */
int rp_tls_ctx_new(struct ssl_ctx_st **out, int insecure, const char *cacert, char *errbuf,
                   size_t errlen);
void rp_tls_ctx_free(struct ssl_ctx_st *ctx);

/*
 * The same with a choice of protocol: http1 = 0 is rp_tls_ctx_new(); http1 = 1 offers
 * ALPN "http/1.1" and accepts it or no ALPN (TS2021's HTTP/1.1 upgrade, /key).
 */
int rp_tls_ctx_new_alpn(struct ssl_ctx_st **out, int insecure, const char *cacert, int http1,
                        char *errbuf, size_t errlen);

/*
 * Wraps `lower` in a TLS client layer for host (SNI unless host_is_ip; name or
 * IP verified when the context verifies). On success the new layer owns
 * lower; on failure lower is untouched. Returns 0 or H2R_ERR_NOMEM.
 */
int rp_tls_wrap(struct rp_io **out, struct rp_io *lower, struct ssl_ctx_st *ctx, const char *host,
                int host_is_ip);

#endif
