/*
 * The TCP transport: the bottom layer of every replayed connection.
 *
 * Connects without blocking, reports completion through handshake(), and
 * maps errno values to the run file's failure classes: a refusal is
 * "refused", a reset or close while the connection is in use is
 * "conn_closed", anything else is "io" with the errno name as detail.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "h2replay/error.h"
#include "h2replay/run.h"
#include "rp_transport.h"

struct tcp_io {
    struct rp_io io;
    int connected;
};

const char *rp_errno_name(int err, char *buf, size_t len)
{
    switch (err) {
    case ECONNREFUSED:
        return "ECONNREFUSED";
    case ECONNRESET:
        return "ECONNRESET";
    case ECONNABORTED:
        return "ECONNABORTED";
    case EPIPE:
        return "EPIPE";
    case ETIMEDOUT:
        return "ETIMEDOUT";
    case EHOSTUNREACH:
        return "EHOSTUNREACH";
    case ENETUNREACH:
        return "ENETUNREACH";
    case ENETDOWN:
        return "ENETDOWN";
    case EADDRNOTAVAIL:
        return "EADDRNOTAVAIL";
    case EADDRINUSE:
        return "EADDRINUSE";
    case EMFILE:
        return "EMFILE";
    case ENFILE:
        return "ENFILE";
    case ENOBUFS:
        return "ENOBUFS";
    case ENOMEM:
        return "ENOMEM";
    case EACCES:
        return "EACCES";
    case EPERM:
        return "EPERM";
    default:
        snprintf(buf, len, "errno %d", err);
        return buf;
    }
}

/* Class of a socket error once the connection is established. */
static void set_error(struct rp_io *io, int err, int connecting)
{
    if (connecting && err == ECONNREFUSED)
        io->err_class = H2R_EC_REFUSED;
    else if (connecting && err == ETIMEDOUT)
        io->err_class = H2R_EC_CONNECT_TIMEOUT;
    else if (err == ECONNRESET || err == EPIPE || err == ECONNABORTED)
        io->err_class = H2R_EC_CONN_CLOSED;
    else
        io->err_class = H2R_EC_IO;
    io->err_detail = rp_errno_name(err, io->err_buf, sizeof(io->err_buf));
}

static int tcp_handshake(struct rp_io *io)
{
    struct tcp_io *t = (struct tcp_io *)io;
    if (t->connected)
        return RP_IO_OK;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        set_error(io, err, 1);
        return RP_IO_ERROR;
    }
    struct sockaddr_storage ss;
    len = sizeof(ss);
    if (getpeername(io->fd, (struct sockaddr *)&ss, &len) < 0) {
        if (errno == ENOTCONN) {
            io->want = RP_WANT_WRITE;
            return RP_IO_RETRY;
        }
        set_error(io, errno, 1);
        return RP_IO_ERROR;
    }
    t->connected = 1;
    return RP_IO_OK;
}

static int tcp_read(struct rp_io *io, uint8_t *buf, size_t len, size_t *got)
{
    *got = 0;
    for (;;) {
        ssize_t n = recv(io->fd, buf, len, 0);
        if (n > 0) {
            *got = (size_t)n;
            return RP_IO_OK;
        }
        if (n == 0) {
            io->err_class = H2R_EC_CONN_CLOSED;
            io->err_detail = "EOF";
            return RP_IO_ERROR;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            io->want = RP_WANT_READ;
            return RP_IO_RETRY;
        }
        set_error(io, errno, 0);
        return RP_IO_ERROR;
    }
}

static int tcp_write(struct rp_io *io, const uint8_t *buf, size_t len, size_t *put)
{
    *put = 0;
    for (;;) {
        ssize_t n = send(io->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) {
            *put = (size_t)n;
            if (n == 0) {
                io->want = RP_WANT_WRITE;
                return RP_IO_RETRY;
            }
            return RP_IO_OK;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            io->want = RP_WANT_WRITE;
            return RP_IO_RETRY;
        }
        set_error(io, errno, 0);
        return RP_IO_ERROR;
    }
}

static int tcp_pending(const struct rp_io *io)
{
    (void)io;
    return 0;
}

static void tcp_free(struct rp_io *io)
{
    if (!io)
        return;
    if (io->fd >= 0)
        close(io->fd);
    free(io);
}

static const struct rp_io_ops tcp_ops = {
    .name = "tcp",
    .handshake = tcp_handshake,
    .read = tcp_read,
    .write = tcp_write,
    .pending = tcp_pending,
    .free = tcp_free,
};

int rp_tcp_connect(struct rp_io **out, const struct sockaddr *addr, socklen_t addr_len,
                   uint32_t *cls, const char **detail)
{
    static _Thread_local char errbuf[32];
    *out = NULL;
    *cls = H2R_EC_IO;
    *detail = NULL;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
        *detail = rp_errno_name(errno, errbuf, sizeof(errbuf));
        return H2R_ERR_IO;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct tcp_io *t = calloc(1, sizeof(*t));
    if (!t) {
        close(fd);
        *detail = "ENOMEM";
        return H2R_ERR_NOMEM;
    }
    t->io.ops = &tcp_ops;
    t->io.fd = fd;
    t->io.want = RP_WANT_WRITE;
    int rc;
    do {
        rc = connect(fd, addr, addr_len);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) {
        t->connected = 1;
    } else if (errno != EINPROGRESS) {
        int err = errno;
        *cls = err == ECONNREFUSED ? H2R_EC_REFUSED : H2R_EC_IO;
        *detail = rp_errno_name(err, errbuf, sizeof(errbuf));
        tcp_free(&t->io);
        return H2R_ERR_IO;
    }
    *out = &t->io;
    return 0;
}
