/*
 * Unit tests for the TS2021 transport layer (replay/rp_ts.c): the client layer
 * runs over a socketpair against a fake control server built from the ts core's
 * responder (ts_session_server_accept, ts_session_seal), driven step by step in
 * one thread. Covered: the upgrade request, the 101 with the handshake
 * response, EarlyNoise and the server's first bytes in the same segment,
 * reads into tiny buffers (the plaintext queue and pending()), large writes
 * in both directions, empty records, the write-retry contract when the
 * lower layer pushes back, and every failure class: closed after 101, a
 * non-101 answer, a bad handshake response, a wrong control key, a record
 * that does not decrypt, EOF once open, a lower layer that cannot connect.
 * Also GET /key against a forked one-shot HTTP server: JSON, 400, empty body.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "h2replay/error.h"
#include "h2replay/run.h"
#include "rp_transport.h"
#include "rp_ts.h"
#include "ts2021.h"

#define CAPVER 130
#define HOST "127.0.0.1:8080"

/* ---- a lower layer over one end of a socketpair, with a write budget ---- */

struct fd_io {
    struct rp_io io;
    size_t budget;    /* bytes write() may still take; SIZE_MAX: unlimited */
    uint32_t fail_cls; /* handshake fails with this class when non-zero */
};

static int fd_handshake(struct rp_io *io)
{
    struct fd_io *f = (struct fd_io *)io;
    if (f->fail_cls) {
        io->err_class = f->fail_cls;
        io->err_detail = "ECONNREFUSED";
        return RP_IO_ERROR;
    }
    return RP_IO_OK;
}

static int fd_read(struct rp_io *io, uint8_t *buf, size_t len, size_t *got)
{
    *got = 0;
    ssize_t n = recv(io->fd, buf, len, MSG_DONTWAIT);
    if (n > 0) {
        *got = (size_t)n;
        return RP_IO_OK;
    }
    if (n == 0) {
        io->err_class = H2R_EC_CONN_CLOSED;
        io->err_detail = "EOF";
        return RP_IO_ERROR;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        io->want = RP_WANT_READ;
        return RP_IO_RETRY;
    }
    io->err_class = H2R_EC_IO;
    io->err_detail = "recv failed";
    return RP_IO_ERROR;
}

static int fd_write(struct rp_io *io, const uint8_t *buf, size_t len, size_t *put)
{
    struct fd_io *f = (struct fd_io *)io;
    *put = 0;
    if (f->budget == 0) {
        io->want = RP_WANT_WRITE;
        return RP_IO_RETRY;
    }
    if (len > f->budget)
        len = f->budget;
    ssize_t n = send(io->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
        *put = (size_t)n;
        if (f->budget != SIZE_MAX)
            f->budget -= (size_t)n;
        return RP_IO_OK;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        io->want = RP_WANT_WRITE;
        return RP_IO_RETRY;
    }
    io->err_class = H2R_EC_CONN_CLOSED;
    io->err_detail = "EPIPE";
    return RP_IO_ERROR;
}

static int fd_pending(const struct rp_io *io)
{
    (void)io;
    return 0;
}

static void fd_free(struct rp_io *io)
{
    if (!io)
        return;
    close(io->fd);
    free(io);
}

static const struct rp_io_ops fd_ops = {"fd", fd_handshake, fd_read, fd_write, fd_pending,
                                        fd_free};

/* ---- the fake control server ---- */

struct fake {
    int fd; /* server end */
    struct ts_keypair control;
    struct ts_session s;
    int open;
    uint8_t *got; /* client plaintext */
    size_t got_len, got_cap;
};

static int srv_data(void *ud, const uint8_t *buf, size_t len)
{
    struct fake *f = ud;
    if (f->got_len + len > f->got_cap) {
        f->got_cap = (f->got_len + len) * 2;
        f->got = realloc(f->got, f->got_cap);
        if (!f->got)
            abort();
    }
    memcpy(f->got + f->got_len, buf, len);
    f->got_len += len;
    return 0;
}

static const struct ts_session_callbacks srv_cb = {NULL, NULL, srv_data};

/* Reads what the client sent so far (non-blocking) into buf. */
static size_t srv_recv(struct fake *f, uint8_t *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        ssize_t k = recv(f->fd, buf + n, cap - n, MSG_DONTWAIT);
        if (k <= 0)
            break;
        n += (size_t)k;
        if (n == cap)
            break;
    }
    return n;
}

static void srv_send(struct fake *f, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t k = send(f->fd, p, len, MSG_NOSIGNAL);
        if (k <= 0)
            abort();
        p += k;
        len -= (size_t)k;
    }
}

/* Appends sealed records of pt to out. */
static size_t srv_seal(struct fake *f, const void *pt, size_t len, uint8_t *out, size_t cap)
{
    size_t n = 0;
    CHECK_EQ_INT(ts_session_seal(&f->s, pt, len, out, cap, &n), 0);
    return n;
}

/* Takes the upgrade request off the wire; returns the decoded initiation frame's length
 * (0 when the request is malformed) with the frame in init. */
static size_t srv_take_request(struct fake *f, uint8_t init[TS_INIT_FRAME_LEN + 8])
{
    char req[2048];
    size_t n = srv_recv(f, (uint8_t *)req, sizeof(req) - 1);
    req[n] = '\0';
    CHECK(strncmp(req, "POST /ts2021 HTTP/1.1\r\n", 23) == 0);
    CHECK(strstr(req, "\r\nHost: " HOST "\r\n") != NULL);
    CHECK(strstr(req, "\r\nUpgrade: tailscale-control-protocol\r\n") != NULL);
    CHECK(strstr(req, "\r\nConnection: upgrade\r\n") != NULL);
    CHECK(n >= 4 && memcmp(req + n - 4, "\r\n\r\n", 4) == 0);
    const char *h = strstr(req, "\r\nX-Tailscale-Handshake: ");
    if (!h)
        return 0;
    h += strlen("\r\nX-Tailscale-Handshake: ");
    size_t hl = strcspn(h, "\r");
    CHECK_EQ_INT(hl, TS_HANDSHAKE_B64_LEN);
    size_t flen = 0;
    if (ts_b64_decode(h, hl, init, TS_INIT_FRAME_LEN + 8, &flen))
        return 0;
    return flen;
}

static const char HEAD_101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: tailscale-control-protocol\r\n"
                               "Connection: upgrade\r\n"
                               "Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n";

struct pair {
    struct fake f;
    struct ts_keypair machine;
    struct fd_io *lower;
    struct rp_io *io;
};

/* A client layer over a socketpair; control_pub NULL = the fake's real key. */
static void pair_new(struct pair *p, const uint8_t *control_pub)
{
    int sv[2];
    memset(p, 0, sizeof(*p));
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv))
        abort();
    p->f.fd = sv[1];
    CHECK_EQ_INT(ts_keypair_generate(&p->f.control), 0);
    CHECK_EQ_INT(ts_keypair_generate(&p->machine), 0);
    p->lower = calloc(1, sizeof(*p->lower));
    p->lower->io.ops = &fd_ops;
    p->lower->io.fd = sv[0];
    p->lower->budget = SIZE_MAX;
    char err[160];
    CHECK_EQ_INT(rp_ts_wrap(&p->io, &p->lower->io, CAPVER, p->machine.priv,
                            control_pub ? control_pub : p->f.control.pub, HOST, err, sizeof(err)),
                 0);
}

static void pair_free(struct pair *p)
{
    if (p->io)
        p->io->ops->free(p->io);
    if (p->f.fd >= 0)
        close(p->f.fd);
    if (p->f.open)
        ts_session_cleanup(&p->f.s);
    free(p->f.got);
}

/* Client handshake until the request is out; the server accepts it. Returns the
 * ts_session_server_accept result; resp gets the 51-byte response frame. */
static int pair_upgrade(struct pair *p, uint8_t resp[TS_RESP_FRAME_LEN])
{
    CHECK_EQ_INT(p->io->ops->handshake(p->io), RP_IO_RETRY);
    CHECK_EQ_INT(p->io->want, RP_WANT_READ);
    uint8_t init[TS_INIT_FRAME_LEN + 8];
    size_t flen = srv_take_request(&p->f, init);
    CHECK_EQ_INT(flen, TS_INIT_FRAME_LEN);
    int rc = ts_session_server_accept(&p->f.s, p->f.control.priv, init, flen, resp, &srv_cb,
                                      &p->f);
    if (rc == 0) {
        p->f.open = 1;
        CHECK_EQ_MEM(p->f.s.noise.rs, TS_KEY_LEN, p->machine.pub, TS_KEY_LEN);
        CHECK_EQ_INT(p->f.s.noise.version, CAPVER);
    }
    return rc;
}

/* Reads exactly want bytes through the layer with reads of at most chunk bytes. */
static size_t client_read_all(struct rp_io *io, uint8_t *out, size_t want, size_t chunk)
{
    size_t have = 0;
    for (int i = 0; i < 100000 && have < want; i++) {
        size_t got = 0;
        size_t n = want - have < chunk ? want - have : chunk;
        int rc = io->ops->read(io, out + have, n, &got);
        if (rc == RP_IO_ERROR)
            break;
        have += got;
    }
    return have;
}

/* ---- tests ---- */

static void test_open_and_data(void)
{
    struct pair p;
    uint8_t resp[TS_RESP_FRAME_LEN];
    pair_new(&p, NULL);
    CHECK(strcmp(p.io->ops->name, "ts2021") == 0);
    CHECK_EQ_INT(rp_ts_is_open(p.io), 0);
    CHECK_EQ_INT(pair_upgrade(&p, resp), 0);

    /* 101, response frame, EarlyNoise as three records (as Headscale writes it), then the
     * server's first HTTP/2 bytes: all in one segment */
    static uint8_t seg[65536];
    size_t n = 0;
    memcpy(seg, HEAD_101, strlen(HEAD_101));
    n += strlen(HEAD_101);
    memcpy(seg + n, resp, TS_RESP_FRAME_LEN);
    n += TS_RESP_FRAME_LEN;
    const char early_json[] = "{\"nodeKeyChallenge\":\"chalpub:"
                              "0000000000000000000000000000000000000000000000000000000000000000\"}";
    uint8_t len4[4] = {0, 0, 0, (uint8_t)strlen(early_json)};
    n += srv_seal(&p.f, TS_EARLY_MAGIC, TS_EARLY_MAGIC_LEN, seg + n, sizeof(seg) - n);
    n += srv_seal(&p.f, len4, 4, seg + n, sizeof(seg) - n);
    n += srv_seal(&p.f, early_json, strlen(early_json), seg + n, sizeof(seg) - n);
    const char first[] = "SERVER-SETTINGS-FRAME";
    n += srv_seal(&p.f, first, strlen(first), seg + n, sizeof(seg) - n);
    srv_send(&p.f, seg, n);

    CHECK_EQ_INT(p.io->ops->handshake(p.io), RP_IO_OK);
    CHECK_EQ_INT(rp_ts_is_open(p.io), 1);
    CHECK_EQ_INT(p.io->ops->handshake(p.io), RP_IO_OK); /* idempotent */
    CHECK_EQ_INT(p.io->ops->pending(p.io), 1);          /* queued with the handshake */
    uint8_t buf[200000];
    size_t got = client_read_all(p.io, buf, strlen(first), 4);
    CHECK_EQ_MEM(buf, got, first, strlen(first));
    CHECK_EQ_INT(p.io->ops->pending(p.io), 0);
    CHECK_EQ_INT(p.io->ops->read(p.io, buf, sizeof(buf), &got), RP_IO_RETRY);
    CHECK_EQ_INT(got, 0);

    /* client -> server: 100 000 bytes, sealed in pieces of <= 4077 */
    static uint8_t big[100000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7 + 3);
    size_t off = 0;
    for (int i = 0; i < 1000 && off < sizeof(big); i++) {
        size_t put = 0;
        int rc = p.io->ops->write(p.io, big + off, sizeof(big) - off, &put);
        if (rc == RP_IO_OK) {
            CHECK(put > 0);
            off += put;
        } else {
            CHECK_EQ_INT(rc, RP_IO_RETRY);
            /* the socket is full: let the server drain it, then retry the same bytes */
            size_t k = srv_recv(&p.f, buf, sizeof(buf));
            CHECK_EQ_INT(ts_session_feed(&p.f.s, buf, k), 0);
        }
    }
    CHECK_EQ_INT(off, sizeof(big));
    for (int i = 0; i < 100 && p.f.got_len < sizeof(big); i++) {
        size_t k = srv_recv(&p.f, buf, sizeof(buf));
        CHECK_EQ_INT(ts_session_feed(&p.f.s, buf, k), 0);
    }
    CHECK_EQ_MEM(p.f.got, p.f.got_len, big, sizeof(big));
    CHECK(p.f.s.records_in >= sizeof(big) / TS_MAX_PLAINTEXT);

    /* server -> client: 50 000 bytes with an empty record in the middle */
    n = srv_seal(&p.f, big, 30000, seg, sizeof(seg));
    srv_send(&p.f, seg, n);
    n = srv_seal(&p.f, "", 0, seg, sizeof(seg));
    CHECK_EQ_INT(n, TS_FRAME_HDR_LEN + TS_TAG_LEN);
    srv_send(&p.f, seg, n);
    n = srv_seal(&p.f, big + 30000, 20000, seg, sizeof(seg));
    srv_send(&p.f, seg, n);
    got = client_read_all(p.io, buf, 50000, 1000);
    CHECK_EQ_MEM(buf, got, big, 50000);
    uint64_t rin = 0, rout = 0;
    rp_ts_counters(p.io, &rin, &rout);
    CHECK(rin >= 5 + 50000 / TS_MAX_PLAINTEXT);
    CHECK(rout >= sizeof(big) / TS_MAX_PLAINTEXT);

    /* the server goes away: closed_by_server */
    close(p.f.fd);
    p.f.fd = -1;
    CHECK_EQ_INT(p.io->ops->read(p.io, buf, sizeof(buf), &got), RP_IO_ERROR);
    CHECK_EQ_INT(p.io->err_class, H2R_EC_TS_CLOSED);
    CHECK(strstr(p.io->err_detail, "EOF") != NULL);
    pair_free(&p);
}

static void test_closed_after_101(void)
{
    struct pair p;
    uint8_t resp[TS_RESP_FRAME_LEN];
    pair_new(&p, NULL);
    CHECK_EQ_INT(pair_upgrade(&p, resp), 0);
    srv_send(&p.f, HEAD_101, strlen(HEAD_101)); /* what Headscale does below its capver floor */
    close(p.f.fd);
    p.f.fd = -1;
    CHECK_EQ_INT(p.io->ops->handshake(p.io), RP_IO_ERROR);
    CHECK_EQ_INT(p.io->err_class, H2R_EC_TS_HANDSHAKE);
    CHECK(strstr(p.io->err_detail, "closed after 101") != NULL);
    CHECK_EQ_STR(h2r_err_class_name(p.io->err_class), "handshake_rejected");
    /* dead for good */
    size_t got;
    uint8_t b[8];
    CHECK_EQ_INT(p.io->ops->read(p.io, b, sizeof(b), &got), RP_IO_ERROR);
    CHECK_EQ_INT(p.io->ops->write(p.io, b, sizeof(b), &got), RP_IO_ERROR);
    pair_free(&p);

    /* closed before any answer */
    pair_new(&p, NULL);
    CHECK_EQ_INT(pair_upgrade(&p, resp), 0);
    close(p.f.fd);
    p.f.fd = -1;
    CHECK_EQ_INT(p.io->ops->handshake(p.io), RP_IO_ERROR);
    CHECK_EQ_INT(p.io->err_class, H2R_EC_TS_HANDSHAKE);
    CHECK(strstr(p.io->err_detail, "before the 101") != NULL);
    pair_free(&p);
}

static void test_not_101(void)
{
    struct pair p;
    uint8_t resp[TS_RESP_FRAME_LEN];
    pair_new(&p, NULL);
    CHECK_EQ_INT(pair_upgrade(&p, resp), 0);
    const char r400[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 22\r\n\r\n"
                        "unknown next protocol\n";
    srv_send(&p.f, r400, strlen(r400));
    CHECK_EQ_INT(p.io->ops->handshake(p.io), RP_IO_ERROR);
    CHECK_EQ_INT(p.io->err_class, H2R_EC_TS_HANDSHAKE);
    CHECK(strstr(p.io->err_detail, "HTTP 400") != NULL);
    pair_free(&p);
}

static void test_bad_msg2(void)
{
    struct pair p;
    uint8_t resp[TS_RESP_FRAME_LEN];
    pair_new(&p, NULL);
    CHECK_EQ_INT(pair_upgrade(&p, resp), 0);
    resp[TS_RESP_FRAME_LEN - 1] ^= 0x01; /* the tag no longer authenticates */
    srv_send(&p.f, HEAD_101, strlen(HEAD_101));
    srv_send(&p.f, resp, 20); /* split across reads, too */
    CHECK_EQ_INT(p.io->ops->handshake(p.io), RP_IO_RETRY);
    srv_send(&p.f, resp + 20, TS_RESP_FRAME_LEN - 20);
    CHECK_EQ_INT(p.io->ops->handshake(p.io), RP_IO_ERROR);
    CHECK_EQ_INT(p.io->err_class, H2R_EC_TS_HANDSHAKE);
    CHECK(strstr(p.io->err_detail, "handshake response") != NULL);
    pair_free(&p);

    /* an error frame (type 3) instead of the response */
    pair_new(&p, NULL);
    CHECK_EQ_INT(pair_upgrade(&p, resp), 0);
    const uint8_t ef[] = {3, 0, 4, 'n', 'o', 'p', 'e'};
    srv_send(&p.f, HEAD_101, strlen(HEAD_101));
    srv_send(&p.f, ef, sizeof(ef));
    CHECK_EQ_INT(p.io->ops->handshake(p.io), RP_IO_ERROR);
    CHECK_EQ_INT(p.io->err_class, H2R_EC_TS_HANDSHAKE);
    CHECK(strstr(p.io->err_detail, "nope") != NULL);
    pair_free(&p);
}

static void test_wrong_control_key(void)
{
    struct pair p;
    struct ts_keypair other;
    uint8_t resp[TS_RESP_FRAME_LEN];
    CHECK_EQ_INT(ts_keypair_generate(&other), 0);
    pair_new(&p, other.pub);
    /* msg1 does not decrypt with the server's key: Headscale closes after the 101 */
    CHECK(pair_upgrade(&p, resp) != 0);
    srv_send(&p.f, HEAD_101, strlen(HEAD_101));
    close(p.f.fd);
    p.f.fd = -1;
    CHECK_EQ_INT(p.io->ops->handshake(p.io), RP_IO_ERROR);
    CHECK_EQ_INT(p.io->err_class, H2R_EC_TS_HANDSHAKE);
    CHECK(strstr(p.io->err_detail, "control key or capability version") != NULL);
    pair_free(&p);
}

static void open_pair(struct pair *p)
{
    uint8_t resp[TS_RESP_FRAME_LEN];
    pair_new(p, NULL);
    CHECK_EQ_INT(pair_upgrade(p, resp), 0);
    srv_send(&p->f, HEAD_101, strlen(HEAD_101));
    srv_send(&p->f, resp, TS_RESP_FRAME_LEN);
    CHECK_EQ_INT(p->io->ops->handshake(p->io), RP_IO_OK);
}

static void test_bad_record(void)
{
    struct pair p;
    open_pair(&p);
    uint8_t seg[256], buf[256];
    size_t n = srv_seal(&p.f, "hello", 5, seg, sizeof(seg));
    seg[n - 1] ^= 0x80;
    srv_send(&p.f, seg, n);
    size_t got = 0;
    CHECK_EQ_INT(p.io->ops->read(p.io, buf, sizeof(buf), &got), RP_IO_ERROR);
    CHECK_EQ_INT(p.io->err_class, H2R_EC_PROTOCOL);
    CHECK(strstr(p.io->err_detail, "decrypt") != NULL);
    pair_free(&p);

    /* a record announcing more than 4093 bytes */
    open_pair(&p);
    const uint8_t hdr[] = {4, 0x10, 0x00};
    srv_send(&p.f, hdr, sizeof(hdr));
    CHECK_EQ_INT(p.io->ops->read(p.io, buf, sizeof(buf), &got), RP_IO_ERROR);
    CHECK_EQ_INT(p.io->err_class, H2R_EC_PROTOCOL);
    pair_free(&p);
}

static void test_write_retry(void)
{
    struct pair p;
    open_pair(&p);
    static uint8_t data[10000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)i;
    size_t put = 99;
    p.lower->budget = 100; /* the lower layer takes 100 bytes, then pushes back */
    CHECK_EQ_INT(p.io->ops->write(p.io, data, sizeof(data), &put), RP_IO_RETRY);
    CHECK_EQ_INT(put, 0);
    CHECK_EQ_INT(p.io->want, RP_WANT_WRITE);
    CHECK_EQ_INT(p.io->ops->write(p.io, data, sizeof(data), &put), RP_IO_RETRY); /* still */
    p.lower->budget = SIZE_MAX;
    CHECK_EQ_INT(p.io->ops->write(p.io, data, sizeof(data), &put), RP_IO_OK);
    CHECK_EQ_INT(put, sizeof(data));
    uint8_t buf[32768];
    size_t k = srv_recv(&p.f, buf, sizeof(buf));
    CHECK_EQ_INT(ts_session_feed(&p.f.s, buf, k), 0);
    CHECK_EQ_MEM(p.f.got, p.f.got_len, data, sizeof(data)); /* sealed once, sent once */
    CHECK_EQ_INT(p.io->ops->write(p.io, data, 0, &put), RP_IO_OK);
    CHECK_EQ_INT(put, 0);

    /* retrying with fewer bytes than were sealed breaks the contract: an error */
    p.lower->budget = 10;
    CHECK_EQ_INT(p.io->ops->write(p.io, data, 5000, &put), RP_IO_RETRY);
    p.lower->budget = SIZE_MAX;
    CHECK_EQ_INT(p.io->ops->write(p.io, data, 100, &put), RP_IO_ERROR);
    CHECK_EQ_INT(p.io->err_class, H2R_EC_PROTOCOL);
    pair_free(&p);
}

static void test_lower_fails(void)
{
    struct pair p;
    pair_new(&p, NULL);
    p.lower->fail_cls = H2R_EC_REFUSED;
    CHECK_EQ_INT(p.io->ops->handshake(p.io), RP_IO_ERROR);
    CHECK_EQ_INT(p.io->err_class, H2R_EC_REFUSED); /* not the TS2021 server's doing */
    CHECK_EQ_STR(p.io->err_detail, "ECONNREFUSED");
    pair_free(&p);
    /* a host that cannot go into a header */
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct fd_io *lower = calloc(1, sizeof(*lower));
    lower->io.ops = &fd_ops;
    lower->io.fd = sv[0];
    lower->budget = SIZE_MAX;
    struct rp_io *io = NULL;
    struct ts_keypair k;
    char err[160];
    CHECK_EQ_INT(ts_keypair_generate(&k), 0);
    CHECK_EQ_INT(rp_ts_wrap(&io, &lower->io, CAPVER, k.priv, k.pub, "a\r\nb", err, sizeof(err)), 0);
    CHECK_EQ_INT(io->ops->handshake(io), RP_IO_ERROR);
    CHECK_EQ_INT(io->err_class, H2R_EC_TS_HANDSHAKE);
    io->ops->free(io);
    close(sv[1]);
}

/* ---- GET /key ---- */

/* Forks a server that answers one connection with `answer`; returns its port. */
static int one_shot_server(const char *answer, pid_t *pid)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1) ||
        getsockname(ls, (struct sockaddr *)&a, &al))
        abort();
    *pid = fork();
    if (*pid == 0) {
        alarm(10);
        int c = accept(ls, NULL, NULL);
        char req[1024];
        size_t n = 0;
        while (n < sizeof(req) - 1) {
            ssize_t k = read(c, req + n, sizeof(req) - 1 - n);
            if (k <= 0)
                break;
            n += (size_t)k;
            req[n] = '\0';
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        int ok = strncmp(req, "GET /key?v=130 HTTP/1.1\r\n", 25) == 0;
        if (ok && write(c, answer, strlen(answer)) < 0)
            ok = 0;
        close(c);
        _exit(ok ? 0 : 3);
    }
    close(ls);
    return ntohs(a.sin_port);
}

static int fetch(const char *answer, uint8_t key[TS_KEY_LEN], uint32_t *cls, char *err,
                 size_t errlen)
{
    pid_t pid;
    int port = one_shot_server(answer, &pid);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int rc = rp_ts_fetch_key((struct sockaddr *)&a, sizeof(a), NULL, "127.0.0.1", 1, HOST, CAPVER,
                             5000000000LL, key, cls, err, errlen);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return rc;
}

static void test_fetch_key(void)
{
    uint8_t key[TS_KEY_LEN], want[TS_KEY_LEN];
    uint32_t cls = 0;
    char err[256], ans[512], text[TS_KEY_TEXT_MAX];
    for (int i = 0; i < TS_KEY_LEN; i++)
        want[i] = (uint8_t)(0xa0 + i);
    ts_key_format(TS_PREFIX_MACHINE, want, text, sizeof(text));
    char body[300];
    snprintf(body, sizeof(body),
             "{\"legacyPublicKey\":\"mkey:%064d\",\"publicKey\":\"%s\"}\n", 0, text);
    snprintf(ans, sizeof(ans),
             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    CHECK_EQ_INT(fetch(ans, key, &cls, err, sizeof(err)), 0);
    CHECK_EQ_MEM(key, TS_KEY_LEN, want, TS_KEY_LEN);

    CHECK(fetch("HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\n\r\nbad version\n", key, &cls,
                err, sizeof(err)) != 0);
    CHECK_EQ_INT(cls, H2R_EC_TS_HANDSHAKE);
    CHECK(strstr(err, "HTTP 400") != NULL);

    /* a server too old for Noise (or v < 39) answers an empty body */
    CHECK_EQ_INT(fetch("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", key, &cls, err, sizeof(err)),
                 H2R_ERR_UNSUPPORTED);
    /* a body delimited by the close */
    snprintf(ans, sizeof(ans), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n%s", body);
    CHECK_EQ_INT(fetch(ans, key, &cls, err, sizeof(err)), 0);
    CHECK_EQ_MEM(key, TS_KEY_LEN, want, TS_KEY_LEN);

    /* nobody listening */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    CHECK_EQ_INT(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    CHECK_EQ_INT(getsockname(s, (struct sockaddr *)&a, &al), 0);
    close(s); /* the port is free (and refuses) now */
    CHECK(rp_ts_fetch_key((struct sockaddr *)&a, sizeof(a), NULL, "127.0.0.1", 1, HOST, CAPVER,
                          2000000000LL, key, &cls, err, sizeof(err)) != 0);
    CHECK_EQ_INT(cls, H2R_EC_REFUSED);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    test_open_and_data();
    test_closed_after_101();
    test_not_101();
    test_bad_msg2();
    test_wrong_control_key();
    test_bad_record();
    test_write_retry();
    test_lower_fails();
    test_fetch_key();
    return check_summary("test_rp_ts");
}
