/*
 * Unit tests for cap_flow: client detection (SYN, SYN+ACK, payload, ports),
 * conn ids, close reasons, 4-tuple reuse, tombstones, the flow cap and what
 * reaches the session layer. The session layer is replaced by a recorder
 * defined here, so the test pins down exactly what the flow table promises
 * cap_session.h.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>

#include "check.h"
#include "cap_flow.h"

#define MAX_REC 16

struct rec {
    struct cap_flow_info info;
    char data[2][256];
    size_t len[2];
    uint64_t gap[2];
    int closed;
    uint32_t how;
    int64_t t_close;
    uint64_t bytes_c2s, bytes_s2c, gap_bytes;
};

static struct rec recs[MAX_REC];
static int nrecs;

struct cap_session {
    struct rec *r;
};

struct cap_session *cap_session_new(struct cap_session_env *env, const struct cap_flow_info *info)
{
    struct cap_session *s;

    (void)env;
    if (nrecs >= MAX_REC)
        return NULL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->r = &recs[nrecs++];
    memset(s->r, 0, sizeof(*s->r));
    s->r->info = *info;
    return s;
}

int cap_session_feed(struct cap_session *s, int dir, const uint8_t *buf, size_t len, int64_t ts_ns)
{
    struct rec *r = s->r;

    (void)ts_ns;
    if (r->len[dir] + len < sizeof(r->data[dir])) {
        memcpy(r->data[dir] + r->len[dir], buf, len);
        r->len[dir] += len;
    }
    return 0;
}

void cap_session_gap(struct cap_session *s, int dir, uint64_t missing, int64_t ts_ns)
{
    (void)ts_ns;
    s->r->gap[dir] += missing;
}

int cap_session_close(struct cap_session *s, uint32_t how, int64_t ts_ns, uint64_t bytes_c2s,
                      uint64_t bytes_s2c, uint64_t gap_bytes)
{
    struct rec *r = s->r;

    r->closed++;
    r->how = how;
    r->t_close = ts_ns;
    r->bytes_c2s = bytes_c2s;
    r->bytes_s2c = bytes_s2c;
    r->gap_bytes = gap_bytes;
    return 0;
}

void cap_session_free(struct cap_session *s)
{
    free(s);
}

/* ---- helpers ---- */

static struct cap_session_env env;

static struct cap_tcp_seg seg4(const char *src, uint16_t sport, const char *dst, uint16_t dport,
                               uint32_t seq, unsigned flags, const char *payload)
{
    struct cap_tcp_seg s;

    memset(&s, 0, sizeof(s));
    s.family = 4;
    CHECK(inet_pton(AF_INET, src, s.src) == 1);
    CHECK(inet_pton(AF_INET, dst, s.dst) == 1);
    s.sport = sport;
    s.dport = dport;
    s.seq = seq;
    s.flags = (uint8_t)flags;
    s.payload = (const uint8_t *)payload;
    s.payload_len = payload ? (uint32_t)strlen(payload) : 0;
    return s;
}

#define C "10.0.0.1"
#define S "10.0.0.2"
#define SYN CAP_TCP_SYN
#define ACK CAP_TCP_ACK
#define FIN CAP_TCP_FIN
#define RST CAP_TCP_RST

static int pkt(struct cap_flow_table *t, struct cap_tcp_seg s, int64_t ts)
{
    return cap_flow_packet(t, &s, ts);
}

static void reset(void)
{
    memset(recs, 0, sizeof(recs));
    nrecs = 0;
}

static void test_handshake(void)
{
    struct cap_flow_table *t = cap_flow_table_new(NULL, &env);
    const struct cap_flow_stats *st = cap_flow_table_stats(t);

    reset();
    CHECK_EQ_INT(pkt(t, seg4(C, 50000, S, 8080, 100, SYN, NULL), 10), 0);
    CHECK_EQ_INT(pkt(t, seg4(S, 8080, C, 50000, 900, SYN | ACK, NULL), 11), 0);
    CHECK_EQ_INT(pkt(t, seg4(C, 50000, S, 8080, 101, ACK, NULL), 12), 0);
    CHECK_EQ_INT(nrecs, 0); /* no payload yet, no session */
    CHECK_EQ_INT(pkt(t, seg4(C, 50000, S, 8080, 101, ACK, "PRI * HTTP/2.0"), 13), 0);
    CHECK_EQ_INT(pkt(t, seg4(S, 8080, C, 50000, 901, ACK, "settings"), 14), 0);
    CHECK_EQ_INT(pkt(t, seg4(C, 50000, S, 8080, 115, FIN | ACK, NULL), 15), 0);
    CHECK_EQ_INT(recs[0].closed, 0);
    CHECK_EQ_INT(pkt(t, seg4(S, 8080, C, 50000, 909, FIN | ACK, NULL), 16), 0);
    CHECK_EQ_INT(nrecs, 1);
    CHECK_EQ_INT(recs[0].info.conn_id, 1);
    CHECK_EQ_STR(recs[0].info.client, "10.0.0.1:50000");
    CHECK_EQ_STR(recs[0].info.server, "10.0.0.2:8080");
    CHECK_EQ_INT(recs[0].info.partial, 0);
    CHECK_EQ_INT(recs[0].info.t_open_ns, 10);
    CHECK_EQ_MEM(recs[0].data[CAP_DIR_C2S], recs[0].len[0], "PRI * HTTP/2.0", 14);
    CHECK_EQ_MEM(recs[0].data[CAP_DIR_S2C], recs[0].len[1], "settings", 8);
    CHECK_EQ_INT(recs[0].closed, 1);
    CHECK_EQ_INT(recs[0].how, H2R_CONN_END_FIN);
    CHECK_EQ_INT(recs[0].t_close, 16);
    CHECK_EQ_INT(recs[0].bytes_c2s, 14);
    CHECK_EQ_INT(recs[0].bytes_s2c, 8);
    CHECK_EQ_INT(recs[0].gap_bytes, 0);

    /* The last ACK and a late retransmission hit the tombstone. */
    CHECK_EQ_INT(pkt(t, seg4(C, 50000, S, 8080, 116, ACK, NULL), 17), 0);
    CHECK_EQ_INT(pkt(t, seg4(C, 50000, S, 8080, 101, ACK, "PRI * HTTP/2.0"), 18), 0);
    CHECK_EQ_INT(nrecs, 1);
    CHECK_EQ_INT(st->payload_after_close, 1);

    /* The same 4-tuple opens again: a new connection. */
    CHECK_EQ_INT(pkt(t, seg4(C, 50000, S, 8080, 5000, SYN, NULL), 20), 0);
    CHECK_EQ_INT(pkt(t, seg4(C, 50000, S, 8080, 5001, ACK, "again"), 21), 0);
    CHECK_EQ_INT(nrecs, 2);
    CHECK_EQ_INT(recs[1].info.conn_id, 2);
    CHECK_EQ_INT(recs[1].info.t_open_ns, 20);
    CHECK_EQ_INT(st->tuple_reused, 1);
    CHECK_EQ_INT(cap_flow_close_all(t, 30), 0);
    CHECK_EQ_INT(recs[1].how, H2R_CONN_END_CAPTURE_END);
    CHECK_EQ_INT(recs[1].t_close, 30);
    CHECK_EQ_INT(st->flows, 2);
    CHECK_EQ_INT(st->client_by_syn, 2);
    cap_flow_table_free(t);
}

static void test_reordered_handshake(void)
{
    struct cap_flow_table *t = cap_flow_table_new(NULL, &env);
    const struct cap_flow_stats *st = cap_flow_table_stats(t);

    reset();
    /* The handshake's ACK, then the SYN+ACK, then the SYN: still one connection. */
    pkt(t, seg4(C, 40003, S, 80, 101, ACK, NULL), 1);
    pkt(t, seg4(S, 80, C, 40003, 700, SYN | ACK, NULL), 2);
    pkt(t, seg4(C, 40003, S, 80, 100, SYN, NULL), 3);
    pkt(t, seg4(C, 40003, S, 80, 101, ACK, "GET / HTTP/1.1\r\n"), 4);
    CHECK_EQ_INT(st->closed_reused, 0);
    CHECK_EQ_INT(nrecs, 1);
    CHECK_EQ_STR(recs[0].info.client, "10.0.0.1:40003");
    CHECK_EQ_INT(recs[0].info.partial, 0);
    CHECK_EQ_INT(cap_flow_table_reasm_stats(t)->partial_starts, 0);
    CHECK_EQ_INT(cap_flow_close_all(t, 5), 0);
    cap_flow_table_free(t);
}

static void test_fin_with_hole(void)
{
    struct cap_flow_table *t = cap_flow_table_new(NULL, &env);

    reset();
    pkt(t, seg4(C, 40001, S, 80, 0, SYN, NULL), 1);
    pkt(t, seg4(S, 80, C, 40001, 0, SYN | ACK, NULL), 2);
    pkt(t, seg4(C, 40001, S, 80, 1, ACK, "GET / HTTP/1.1\r\n"), 3);
    pkt(t, seg4(S, 80, C, 40001, 6, ACK, "world"), 4); /* "hello" at 1 not captured yet */
    pkt(t, seg4(S, 80, C, 40001, 11, FIN | ACK, NULL), 5);
    pkt(t, seg4(C, 40001, S, 80, 17, FIN | ACK, NULL), 6);
    CHECK_EQ_INT(recs[0].closed, 0);                   /* both FINs seen, but a hole before one */
    pkt(t, seg4(S, 80, C, 40001, 1, ACK, "hello"), 7); /* the retransmission fills it */
    CHECK_EQ_INT(recs[0].closed, 1);
    CHECK_EQ_INT(recs[0].how, H2R_CONN_END_FIN);
    CHECK_EQ_INT(recs[0].t_close, 7);
    CHECK_EQ_MEM(recs[0].data[CAP_DIR_S2C], recs[0].len[1], "helloworld", 10);
    CHECK_EQ_INT(recs[0].gap_bytes, 0);

    /* A hole that never fills: closed as FIN at the end of the capture, with the gap. */
    pkt(t, seg4(C, 40002, S, 80, 0, SYN, NULL), 10);
    pkt(t, seg4(S, 80, C, 40002, 0, SYN | ACK, NULL), 11);
    pkt(t, seg4(C, 40002, S, 80, 1, ACK, "GET / HTTP/1.1\r\n"), 12);
    pkt(t, seg4(S, 80, C, 40002, 6, FIN | ACK, "world"), 13);
    pkt(t, seg4(C, 40002, S, 80, 17, FIN | ACK, NULL), 14);
    CHECK_EQ_INT(cap_flow_close_all(t, 99), 0);
    CHECK_EQ_INT(recs[1].how, H2R_CONN_END_FIN);
    CHECK_EQ_INT(recs[1].t_close, 14);
    CHECK_EQ_INT(recs[1].gap[CAP_DIR_S2C], 5);
    CHECK_EQ_INT(recs[1].gap_bytes, 5);
    cap_flow_table_free(t);
}

static void test_client_without_syn(void)
{
    struct cap_flow_table *t = cap_flow_table_new(NULL, &env);
    const struct cap_flow_stats *st = cap_flow_table_stats(t);

    reset();
    /* Only SYN+ACK seen: its receiver is the client; not partial. */
    pkt(t, seg4(S, 443, C, 40000, 7, SYN | ACK, NULL), 1);
    pkt(t, seg4(C, 40000, S, 443, 3, ACK, "abc"), 2);
    CHECK_EQ_STR(recs[0].info.client, "10.0.0.1:40000");
    CHECK_EQ_INT(recs[0].info.partial, 0);
    /* Mid-stream, the server speaks first, from the higher port. */
    pkt(t, seg4(S, 60000, C, 1000, 50, ACK, "HTTP/1.1 200 OK\r\n"), 3);
    CHECK_EQ_STR(recs[1].info.client, "10.0.0.1:1000");
    CHECK_EQ_STR(recs[1].info.server, "10.0.0.2:60000");
    CHECK_EQ_INT(recs[1].info.partial, 1);
    CHECK_EQ_INT(recs[1].info.t_open_ns, 3);
    CHECK_EQ_MEM(recs[1].data[CAP_DIR_S2C], recs[1].len[1], "HTTP/1.1 200 OK\r\n", 17);
    /* A client preface from the lower port. */
    pkt(t, seg4(C, 80, S, 9000, 1, ACK, "PRI * HTTP/2.0\r\n\r\nSM"), 4);
    CHECK_EQ_STR(recs[2].info.client, "10.0.0.1:80");
    /* An HTTP/1.1 request line. */
    pkt(t, seg4(S, 81, C, 9001, 1, ACK, "POST /api HTTP/1.1\r\n"), 5);
    CHECK_EQ_STR(recs[3].info.client, "10.0.0.2:81");
    /* Nothing recognisable: the higher port is the client. */
    pkt(t, seg4(S, 8080, C, 52000, 1, ACK, "\x16\x03\x01"), 6);
    CHECK_EQ_STR(recs[4].info.client, "10.0.0.1:52000");
    CHECK_EQ_INT(st->client_by_syn, 1);
    CHECK_EQ_INT(st->client_by_payload, 3);
    CHECK_EQ_INT(st->client_by_port, 1);
    CHECK_EQ_INT(st->flows_partial, 4);
    /* Closed in creation order at the end. */
    CHECK_EQ_INT(cap_flow_close_all(t, 9), 0);
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(recs[i].how, H2R_CONN_END_CAPTURE_END);
    cap_flow_table_free(t);
}

static void test_scan_rst_and_cap(void)
{
    struct cap_flow_cfg cfg = {2, 0, 0, 42};
    struct cap_flow_table *t = cap_flow_table_new(&cfg, &env);
    const struct cap_flow_stats *st = cap_flow_table_stats(t);

    reset();
    /* SYN scan: counted, no session. */
    pkt(t, seg4(C, 1111, S, 22, 1, SYN, NULL), 1);
    pkt(t, seg4(S, 22, C, 1111, 0, RST | ACK, NULL), 2);
    CHECK_EQ_INT(nrecs, 0);
    CHECK_EQ_INT(st->flows_no_payload, 1);
    CHECK_EQ_INT(st->closed_rst, 1);
    /* Reset mid-connection. */
    pkt(t, seg4(C, 2222, S, 80, 10, SYN, NULL), 3);
    pkt(t, seg4(C, 2222, S, 80, 11, ACK, "GET / HTTP/1.1\r\n"), 4);
    pkt(t, seg4(S, 80, C, 2222, 99, RST, NULL), 5);
    CHECK_EQ_INT(recs[0].how, H2R_CONN_END_RST);
    /* Cap of two open flows. */
    pkt(t, seg4(C, 3000, S, 80, 1, SYN, NULL), 6);
    pkt(t, seg4(C, 3001, S, 80, 1, SYN, NULL), 7);
    pkt(t, seg4(C, 3002, S, 80, 1, SYN, NULL), 8);
    pkt(t, seg4(C, 3002, S, 80, 2, ACK, "x"), 9);
    CHECK_EQ_INT(st->flows_cap_hit, 2);
    CHECK_EQ_INT(st->max_concurrent, 2);
    CHECK_EQ_INT(nrecs, 1);
    /* A fresh SYN with another ISN on an open flow replaces it. */
    pkt(t, seg4(C, 3000, S, 80, 1, SYN, NULL), 10); /* retransmitted SYN: same flow */
    CHECK_EQ_INT(st->closed_reused, 0);
    pkt(t, seg4(C, 3000, S, 80, 2, ACK, "one"), 11);
    pkt(t, seg4(C, 3000, S, 80, 777, SYN, NULL), 12);
    pkt(t, seg4(C, 3000, S, 80, 778, ACK, "two"), 13);
    CHECK_EQ_INT(st->closed_reused, 1);
    CHECK_EQ_INT(nrecs, 3);
    CHECK_EQ_INT(recs[1].how, H2R_CONN_END_UNKNOWN);
    CHECK_EQ_MEM(recs[2].data[0], recs[2].len[0], "two", 3);
    CHECK_EQ_INT(cap_flow_close_all(t, 20), 0);
    CHECK_EQ_INT(st->flows_no_payload, 2);
    cap_flow_table_free(t);
}

static void test_gaps_and_ipv6(void)
{
    struct cap_flow_table *t = cap_flow_table_new(NULL, &env);
    struct cap_tcp_seg s;
    struct cap_counter_list l = {NULL, 0, 0};
    int names = 0;

    reset();
    s = seg4(C, 50000, S, 8080, 100, SYN, NULL);
    s.family = 6;
    CHECK(inet_pton(AF_INET6, "2001:db8::1", s.src) == 1);
    CHECK(inet_pton(AF_INET6, "::1", s.dst) == 1);
    pkt(t, s, 1);
    s.seq = 101;
    s.flags = ACK;
    s.payload = (const uint8_t *)"abc";
    s.payload_len = 3;
    s.payload_missing = 4; /* snaplen cut */
    pkt(t, s, 2);
    s.seq = 120;
    pkt(t, s, 3); /* after a hole */
    CHECK_EQ_STR(recs[0].info.client, "[2001:db8::1]:50000");
    CHECK_EQ_STR(recs[0].info.server, "[::1]:8080");
    CHECK_EQ_INT(recs[0].gap[CAP_DIR_C2S], 4);
    CHECK_EQ_INT(cap_flow_close_all(t, 4), 0);
    CHECK_EQ_INT(recs[0].gap[CAP_DIR_C2S], 4 + 12 + 4);
    CHECK_EQ_INT(recs[0].gap_bytes, 20);
    CHECK_EQ_INT(recs[0].bytes_c2s, 6);
    CHECK_EQ_MEM(recs[0].data[0], recs[0].len[0], "abcabc", 6);

    CHECK_EQ_INT(cap_flow_stats_export(t, &l), 0);
    for (size_t i = 0; i < l.n; i++)
        names += strcmp(l.v[i].name, "flow.flows") == 0 || strcmp(l.v[i].name, "tcp.gaps") == 0;
    CHECK_EQ_INT(names, 2);
    cap_counter_list_free(&l);
    cap_flow_table_free(t);
}

static void test_many_flows(void)
{
    struct cap_flow_table *t = cap_flow_table_new(NULL, &env);
    const struct cap_flow_stats *st = cap_flow_table_stats(t);

    reset();
    /* Enough flows to make the table grow a few times; no payload, so no sessions. */
    for (uint32_t i = 0; i < 20000; i++) {
        struct cap_tcp_seg s = seg4(C, (uint16_t)(1024 + i % 60000), S, 80, i, SYN, NULL);
        s.src[2] = (uint8_t)(i >> 8);
        CHECK_EQ_INT(cap_flow_packet(t, &s, i), 0);
    }
    for (uint32_t i = 0; i < 20000; i++) {
        struct cap_tcp_seg s = seg4(S, 80, C, (uint16_t)(1024 + i % 60000), 0, SYN | ACK, NULL);
        s.dst[2] = (uint8_t)(i >> 8);
        cap_flow_packet(t, &s, 20000 + i);
    }
    CHECK_EQ_INT(st->max_concurrent, 20000);
    CHECK_EQ_INT(st->client_by_syn, 20000);
    CHECK_EQ_INT(cap_flow_close_all(t, 50000), 0);
    CHECK_EQ_INT(st->flows_no_payload, 20000);
    cap_flow_table_free(t);
}

int main(void)
{
    test_handshake();
    test_fin_with_hole();
    test_reordered_handshake();
    test_client_without_syn();
    test_scan_rst_and_cap();
    test_gaps_and_ipv6();
    test_many_flows();
    return check_summary("test_cap_flow");
}
