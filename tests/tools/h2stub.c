/*
 * h2stub: a tiny misbehaving HTTP/2 (h2c prior knowledge) server for the
 * replay end-to-end tests, built on nghttp2's server session.
 *
 * It answers every request with a small body, unless told to misbehave:
 *   --rst-every N      reset every Nth request stream (--rst-code, default REFUSED_STREAM)
 *   --never-answer     accept requests and never respond (deadline tests)
 *   --goaway-after N   after the Nth request on a connection, send GOAWAY with that
 *                      stream as last stream id, answer up to it and never above
 *   --close-after N    after N requests in total, reset every connection (SO_LINGER 0)
 *                      and exit: a server dying mid-replay
 *   --delay MS         answer after MS milliseconds
 *   --status CODE      response status (default 200)
 * Single-threaded poll() loop on 127.0.0.1; exits after --exit-after seconds
 * (default 120) whatever happens, so a test can never leave it behind.
 * Like the engine, it never calls into nghttp2 from inside a callback:
 * callbacks queue finished requests, the loop decides what to do with them.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <nghttp2/nghttp2.h>

#define MAX_CONNS 1024
#define MAX_PENDING 65536

struct stub_conn {
    int fd;
    nghttp2_session *s;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    uint32_t requests;
    int goaway_sent;
    int32_t goaway_last;
    int dead;
    int64_t closing_ms; /* half-closed at this time: draining the client's last bytes */
};

struct pending {
    struct stub_conn *c;
    int32_t stream_id;
    int64_t due_ms;
    int used;
};

static struct {
    int port;
    uint32_t rst_every;
    uint32_t rst_code;
    int never_answer;
    uint32_t goaway_after;
    uint32_t close_after;
    int delay_ms;
    int status;
    uint32_t max_streams;
    int exit_after;
} cfg = {0, 0, NGHTTP2_REFUSED_STREAM, 0, 0, 0, 0, 200, 0, 120};

static struct stub_conn *conns[MAX_CONNS];
static struct pending pend[MAX_PENDING];
static size_t n_pend;
static uint32_t total_requests;
static volatile sig_atomic_t quit;

/* requests whose END_STREAM arrived during the last mem_recv */
static struct {
    struct stub_conn *c;
    int32_t id;
} done_q[4096];
static size_t n_done;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM) && n_done < sizeof(done_q) / sizeof(done_q[0])) {
        done_q[n_done].c = ud;
        done_q[n_done].id = f->hd.stream_id;
        n_done++;
    }
    return 0;
}

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)id;
    (void)src;
    (void)ud;
    static const char body[] = "ok from h2stub\n";
    size_t n = sizeof(body) - 1 < len ? sizeof(body) - 1 : len;
    memcpy(buf, body, n);
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void respond(struct stub_conn *c, int32_t id)
{
    char st[8];
    snprintf(st, sizeof(st), "%d", cfg.status);
    nghttp2_nv nv[] = {
        {(uint8_t *)":status", (uint8_t *)st, 7, strlen(st), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"text/plain", 12, 10, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider prd;
    prd.source.ptr = NULL;
    prd.read_callback = body_read;
    nghttp2_submit_response(c->s, id, nv, 2, &prd);
}

static void conn_free(struct stub_conn *c)
{
    for (size_t i = 0; i < n_pend; i++)
        if (pend[i].used && pend[i].c == c)
            pend[i].used = 0;
    nghttp2_session_del(c->s);
    close(c->fd);
    free(c->out);
    free(c);
}

static void abort_all(void)
{
    for (int i = 0; i < MAX_CONNS; i++) {
        if (!conns[i])
            continue;
        struct linger lg = {1, 0}; /* close with RST */
        setsockopt(conns[i]->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        conn_free(conns[i]);
        conns[i] = NULL;
    }
}

/* Decides, outside the callbacks, what happens to each finished request. */
static void handle_requests(void)
{
    for (size_t i = 0; i < n_done; i++) {
        struct stub_conn *c = done_q[i].c;
        int32_t id = done_q[i].id;
        c->requests++;
        total_requests++;
        if (cfg.close_after && total_requests >= cfg.close_after) {
            abort_all();
            quit = 1;
            n_done = 0;
            return;
        }
        if (c->goaway_sent && id > c->goaway_last)
            continue;
        if (cfg.goaway_after && c->requests == cfg.goaway_after && !c->goaway_sent) {
            nghttp2_submit_goaway(c->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR, NULL, 0);
            c->goaway_sent = 1;
            c->goaway_last = id;
        }
        if (cfg.rst_every && total_requests % cfg.rst_every == 0) {
            nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, id, cfg.rst_code);
            continue;
        }
        if (cfg.never_answer)
            continue;
        if (cfg.delay_ms == 0) {
            respond(c, id);
            continue;
        }
        for (size_t k = 0; k < MAX_PENDING; k++) {
            if (!pend[k].used) {
                pend[k].used = 1;
                pend[k].c = c;
                pend[k].stream_id = id;
                pend[k].due_ms = now_ms() + cfg.delay_ms;
                if (k >= n_pend)
                    n_pend = k + 1;
                break;
            }
        }
    }
    n_done = 0;
}

static int flush(struct stub_conn *c)
{
    for (;;) {
        if (c->out_off < c->out_len) {
            ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
            if (w < 0)
                return errno == EAGAIN ? 0 : -1;
            c->out_off += (size_t)w;
            continue;
        }
        c->out_off = c->out_len = 0;
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->s, &data);
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if ((size_t)n > c->out_cap) {
            uint8_t *o = realloc(c->out, (size_t)n);
            if (!o)
                return -1;
            c->out = o;
            c->out_cap = (size_t)n;
        }
        memcpy(c->out, data, (size_t)n);
        c->out_len = (size_t)n;
    }
}

static struct stub_conn *conn_new(int fd)
{
    static nghttp2_session_callbacks *cb;
    if (!cb) {
        nghttp2_session_callbacks_new(&cb);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    }
    struct stub_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->fd = fd;
    if (nghttp2_session_server_new(&c->s, cb, c)) {
        free(c);
        return NULL;
    }
    nghttp2_settings_entry iv[1] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg.max_streams}};
    nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, cfg.max_streams ? 1 : 0);
    return c;
}

/* A non-negative integer flag value; exits with status 2 on anything else. */
static int num(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 0 || v > 1000000000L) {
        fprintf(stderr, "h2stub: '%s' is not a number\n", s);
        exit(2);
    }
    return (int)v;
}

static void on_sig(int sig)
{
    (void)sig;
    quit = 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"port", required_argument, NULL, 'p'},
                                         {"rst-every", required_argument, NULL, 'r'},
                                         {"rst-code", required_argument, NULL, 'R'},
                                         {"never-answer", no_argument, NULL, 'n'},
                                         {"goaway-after", required_argument, NULL, 'g'},
                                         {"close-after", required_argument, NULL, 'c'},
                                         {"delay", required_argument, NULL, 'd'},
                                         {"status", required_argument, NULL, 's'},
                                         {"max-streams", required_argument, NULL, 'm'},
                                         {"exit-after", required_argument, NULL, 'x'},
                                         {NULL, 0, NULL, 0}};
    for (;;) {
        int o = getopt_long(argc, argv, "p:", opts, NULL);
        if (o == -1)
            break;
        switch (o) {
        case 'p':
            cfg.port = num(optarg);
            break;
        case 'r':
            cfg.rst_every = (uint32_t)num(optarg);
            break;
        case 'R':
            cfg.rst_code = (uint32_t)num(optarg);
            break;
        case 'n':
            cfg.never_answer = 1;
            break;
        case 'g':
            cfg.goaway_after = (uint32_t)num(optarg);
            break;
        case 'c':
            cfg.close_after = (uint32_t)num(optarg);
            break;
        case 'd':
            cfg.delay_ms = num(optarg);
            break;
        case 's':
            cfg.status = num(optarg);
            break;
        case 'm':
            cfg.max_streams = (uint32_t)num(optarg);
            break;
        case 'x':
            cfg.exit_after = num(optarg);
            break;
        default:
            fprintf(stderr, "usage: h2stub -p PORT [--rst-every N] [--rst-code C] "
                            "[--never-answer] [--goaway-after N] [--close-after N] "
                            "[--delay MS] [--status S] [--max-streams N] [--exit-after S]\n");
            return 2;
        }
    }
    if (cfg.port <= 0 || cfg.port > 65535) {
        fprintf(stderr, "h2stub: -p PORT required\n");
        return 2;
    }
    signal(SIGTERM, on_sig);
    signal(SIGINT, on_sig);
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)cfg.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 512) < 0) {
        perror("h2stub: bind/listen");
        return 1;
    }
    fprintf(stderr, "h2stub: listening on 127.0.0.1:%d\n", cfg.port);
    int64_t end = now_ms() + (int64_t)cfg.exit_after * 1000;
    static struct pollfd pfd[MAX_CONNS + 1];
    static int slot[MAX_CONNS + 1];
    while (!quit && now_ms() < end) {
        int n = 0;
        pfd[n].fd = lfd;
        pfd[n].events = POLLIN;
        slot[n++] = -1;
        for (int i = 0; i < MAX_CONNS; i++) {
            if (!conns[i])
                continue;
            pfd[n].fd = conns[i]->fd;
            pfd[n].events = POLLIN | (conns[i]->out_off < conns[i]->out_len ? POLLOUT : 0);
            slot[n++] = i;
        }
        int timeout = cfg.delay_ms ? 5 : 200;
        if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR)
            break;
        for (int k = 0; k < n; k++) {
            if (!pfd[k].revents)
                continue;
            if (slot[k] < 0) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0)
                        break;
                    int i = 0;
                    while (i < MAX_CONNS && conns[i])
                        i++;
                    struct stub_conn *c = i < MAX_CONNS ? conn_new(fd) : NULL;
                    if (!c) {
                        close(fd);
                        continue;
                    }
                    conns[i] = c;
                }
                continue;
            }
            struct stub_conn *c = conns[slot[k]];
            if (!c)
                continue;
            uint8_t buf[16384];
            ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
            /* while closing, input is read and dropped: closing with unread input would
             * make the kernel send RST */
            int gone = r == 0 || (r < 0 && errno != EAGAIN);
            int bad = r > 0 && !c->closing_ms && nghttp2_session_mem_recv(c->s, buf, (size_t)r) < 0;
            if (gone || bad)
                c->dead = 1;
            handle_requests();
            if (quit)
                break;
        }
        if (quit)
            break;
        int64_t t = now_ms();
        for (size_t i = 0; i < n_pend; i++) {
            if (pend[i].used && pend[i].due_ms <= t) {
                pend[i].used = 0;
                respond(pend[i].c, pend[i].stream_id);
            }
        }
        for (int i = 0; i < MAX_CONNS; i++) {
            struct stub_conn *c = conns[i];
            if (!c)
                continue;
            if (!c->dead && flush(c) < 0)
                c->dead = 1;
            if (!c->dead && !c->closing_ms && !nghttp2_session_want_read(c->s) &&
                !nghttp2_session_want_write(c->s)) {
                shutdown(c->fd, SHUT_WR); /* graceful: FIN, then wait for the client's */
                c->closing_ms = now_ms();
            }
            if (c->closing_ms && now_ms() - c->closing_ms > 1000)
                c->dead = 1;
            if (c->dead) {
                conn_free(c);
                conns[i] = NULL;
            }
        }
    }
    abort_all();
    close(lfd);
    return 0;
}
