/*
 * Unit tests for cap_decode: hand-built frames for every supported link type,
 * IPv4 options, IPv6 extension headers, VLAN tags, fragments, snaplen cuts,
 * malformed headers and non-TCP traffic.
 */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "cap_decode.h"

static const uint8_t SRC4[4] = {10, 0, 0, 1};
static const uint8_t DST4[4] = {10, 0, 0, 2};
static const uint8_t SRC6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
static const uint8_t DST6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 2};

static size_t put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return 2;
}

static size_t put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return 4;
}

/* TCP header (20 + optlen bytes, optlen a multiple of 4) followed by the payload. */
static size_t build_tcp(uint8_t *p, uint32_t seq, unsigned flags, size_t optlen,
                        const char *payload)
{
    size_t n = 0, plen = payload ? strlen(payload) : 0;

    n += put16(p + n, 51000);
    n += put16(p + n, 8080);
    n += put32(p + n, seq);
    n += put32(p + n, 0xa0b0c0d0u);
    p[n++] = (uint8_t)(((20 + optlen) / 4) << 4);
    p[n++] = (uint8_t)flags;
    n += put16(p + n, 65535);
    n += put32(p + n, 0); /* checksum, urgent pointer */
    for (size_t i = 0; i < optlen; i++)
        p[n++] = 1; /* NOP */
    memcpy(p + n, payload ? payload : "", plen);
    return n + plen;
}

/* IPv4 header with optlen bytes of options around an L4 body of l4len bytes at p + 20 + optlen.
 * total: 0 = compute. */
static size_t build_ipv4(uint8_t *p, size_t optlen, uint8_t proto, size_t l4len, unsigned frag,
                         int total)
{
    size_t ihl = 20 + optlen;

    p[0] = (uint8_t)(0x40 | (ihl / 4));
    p[1] = 0;
    put16(p + 2, total >= 0 ? (unsigned)total : (unsigned)(ihl + l4len));
    put16(p + 4, 0x1234);
    put16(p + 6, frag);
    p[8] = 64;
    p[9] = proto;
    put16(p + 10, 0);
    memcpy(p + 12, SRC4, 4);
    memcpy(p + 16, DST4, 4);
    memset(p + 20, 1, optlen);
    return ihl + l4len;
}

static size_t ipv4_tcp(uint8_t *p, const char *payload)
{
    size_t l4 = build_tcp(p + 20, 1000, CAP_TCP_ACK | CAP_TCP_PSH, 0, payload);
    return build_ipv4(p, 0, 6, l4, 0x4000, -1);
}

/* IPv6 fixed header; the caller has written ext headers + L4 (extlen bytes) at p + 40. */
static size_t build_ipv6(uint8_t *p, uint8_t next, size_t extlen, int plen)
{
    p[0] = 0x60;
    p[1] = p[2] = p[3] = 0;
    put16(p + 4, plen >= 0 ? (unsigned)plen : (unsigned)extlen);
    p[6] = next;
    p[7] = 64;
    memcpy(p + 8, SRC6, 16);
    memcpy(p + 24, DST6, 16);
    return 40 + extlen;
}

static size_t ipv6_tcp(uint8_t *p, const char *payload)
{
    size_t l4 = build_tcp(p + 40, 2000, CAP_TCP_ACK, 0, payload);
    return build_ipv6(p, 6, l4, -1);
}

static size_t ether(uint8_t *p, unsigned ethertype)
{
    memset(p, 0xaa, 12);
    put16(p + 12, ethertype);
    return 14;
}

static struct cap_decode_stats st;

static int decode(int linktype, const uint8_t *pkt, size_t caplen, size_t wirelen,
                  struct cap_tcp_seg *seg)
{
    memset(seg, 0x5a, sizeof(*seg));
    return cap_decode_packet(linktype, pkt, (uint32_t)caplen, (uint32_t)wirelen, seg, &st);
}

static void test_ethernet_ipv4(void)
{
    uint8_t f[256];
    struct cap_tcp_seg s;
    size_t n = ether(f, 0x0800);

    n += ipv4_tcp(f + n, "hello");
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(decode(CAP_LINK_EN10MB, f, n, n, &s), 0);
    CHECK_EQ_INT(s.family, 4);
    CHECK_EQ_MEM(s.src, 4, SRC4, 4);
    CHECK_EQ_MEM(s.dst, 4, DST4, 4);
    CHECK_EQ_INT(s.src[4] | s.src[15] | s.dst[4] | s.dst[15], 0);
    CHECK_EQ_INT(s.sport, 51000);
    CHECK_EQ_INT(s.dport, 8080);
    CHECK_EQ_INT(s.seq, 1000);
    CHECK_EQ_INT(s.ack, 0xa0b0c0d0u);
    CHECK_EQ_INT(s.flags, CAP_TCP_ACK | CAP_TCP_PSH);
    CHECK_EQ_INT(s.window, 65535);
    CHECK_EQ_MEM(s.payload, s.payload_len, "hello", 5);
    CHECK_EQ_INT(s.payload_missing, 0);
    CHECK_EQ_INT(st.packets, 1);
    CHECK_EQ_INT(st.tcp_segments, 1);
    CHECK_EQ_INT(st.ipv4, 1);
}

static void test_ethernet_padding(void)
{
    uint8_t f[128];
    struct cap_tcp_seg s;
    size_t n = ether(f, 0x0800);

    n += ipv4_tcp(f + n, NULL); /* 54 bytes */
    memset(f + n, 0xee, 60 - n);
    CHECK_EQ_INT(decode(CAP_LINK_EN10MB, f, 60, 64, &s), 0);
    CHECK_EQ_INT(s.payload_len, 0);
    CHECK_EQ_INT(s.payload_missing, 0);
}

static void test_vlan(void)
{
    uint8_t f[256];
    struct cap_tcp_seg s;
    size_t n = ether(f, 0x88a8);

    n += put16(f + n, 100);    /* S-tag TCI */
    n += put16(f + n, 0x8100); /* C-tag */
    n += put16(f + n, 200);
    n += put16(f + n, 0x86dd);
    n += ipv6_tcp(f + n, "v6 in qinq");
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(decode(CAP_LINK_EN10MB, f, n, n, &s), 0);
    CHECK_EQ_INT(s.family, 6);
    CHECK_EQ_MEM(s.src, 16, SRC6, 16);
    CHECK_EQ_MEM(s.payload, s.payload_len, "v6 in qinq", 10);
    CHECK_EQ_INT(st.vlan_tags, 2);

    /* A tag cut in the middle. */
    CHECK_EQ_INT(decode(CAP_LINK_EN10MB, f, 16, n, &s), H2R_ERR_TRUNCATED);
    CHECK_EQ_INT(st.truncated_link, 1);

    /* Nine stacked tags are not a real frame. */
    n = ether(f, 0x8100);
    for (int i = 0; i < 9; i++) {
        n += put16(f + n, 1);
        n += put16(f + n, 0x8100);
    }
    n += ipv4_tcp(f + n, "x");
    CHECK_EQ_INT(decode(CAP_LINK_EN10MB, f, n, n, &s), H2R_ERR_FORMAT);
    CHECK_EQ_INT(st.bad_link, 1);
}

static void test_sll(void)
{
    uint8_t f[256];
    struct cap_tcp_seg s;
    size_t n = 0;

    n += put16(f + n, 0);   /* packet type: to us */
    n += put16(f + n, 772); /* ARPHRD_LOOPBACK */
    n += put16(f + n, 6);
    memset(f + n, 0, 8);
    n += 8;
    n += put16(f + n, 0x0800);
    n += ipv4_tcp(f + n, "sll");
    CHECK_EQ_INT(decode(CAP_LINK_SLL, f, n, n, &s), 0);
    CHECK_EQ_MEM(s.payload, s.payload_len, "sll", 3);

    /* Netlink over SLL: the protocol field is not an ethertype. */
    put16(f + 2, 824);
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(decode(CAP_LINK_SLL, f, n, n, &s), CAP_DECODE_SKIP);
    CHECK_EQ_INT(st.non_ip, 1);
    CHECK_EQ_INT(decode(CAP_LINK_SLL, f, 15, 15, &s), H2R_ERR_TRUNCATED);
}

static void test_sll2(void)
{
    uint8_t f[256];
    struct cap_tcp_seg s;
    size_t n = 0;

    n += put16(f + n, 0x86dd);
    n += put16(f + n, 0);
    n += put32(f + n, 1);   /* ifindex */
    n += put16(f + n, 772); /* ARPHRD */
    f[n++] = 4;             /* outgoing */
    f[n++] = 6;
    memset(f + n, 0, 8);
    n += 8;
    n += ipv6_tcp(f + n, "sll2");
    CHECK_EQ_INT(decode(CAP_LINK_SLL2, f, n, n, &s), 0);
    CHECK_EQ_INT(s.family, 6);
    CHECK_EQ_INT(s.seq, 2000);
    CHECK_EQ_MEM(s.payload, s.payload_len, "sll2", 4);
    CHECK_EQ_INT(decode(CAP_LINK_SLL2, f, 19, 19, &s), H2R_ERR_TRUNCATED);
}

static void test_loopback(void)
{
    static const uint32_t v6_afs[] = {24, 28, 30};
    uint8_t f[256];
    struct cap_tcp_seg s;
    size_t n;

    /* NULL, AF_INET little-endian (the capturing host's order). */
    f[0] = 2;
    f[1] = f[2] = f[3] = 0;
    n = 4 + ipv4_tcp(f + 4, "null4");
    CHECK_EQ_INT(decode(CAP_LINK_NULL, f, n, n, &s), 0);
    CHECK_EQ_MEM(s.payload, s.payload_len, "null4", 5);
    /* ... and big-endian, from a big-endian host. */
    put32(f, 2);
    CHECK_EQ_INT(decode(CAP_LINK_NULL, f, n, n, &s), 0);
    CHECK_EQ_INT(s.family, 4);

    for (size_t i = 0; i < 3; i++) {
        n = 4 + ipv6_tcp(f + 4, "null6");
        put32(f, v6_afs[i]);
        CHECK_EQ_INT(decode(CAP_LINK_NULL, f, n, n, &s), 0);
        CHECK_EQ_INT(s.family, 6);
        f[0] = (uint8_t)v6_afs[i];
        f[1] = f[2] = f[3] = 0;
        CHECK_EQ_INT(decode(CAP_LINK_NULL, f, n, n, &s), 0);
        CHECK_EQ_INT(s.family, 6);
        /* LOOP is network byte order only. */
        put32(f, v6_afs[i]);
        CHECK_EQ_INT(decode(CAP_LINK_LOOP, f, n, n, &s), 0);
        CHECK_EQ_INT(s.family, 6);
    }
    f[0] = 2;
    f[1] = f[2] = f[3] = 0;
    n = 4 + ipv4_tcp(f + 4, "loop");
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(decode(CAP_LINK_LOOP, f, n, n, &s), CAP_DECODE_SKIP);
    put32(f, 7); /* unknown family */
    CHECK_EQ_INT(decode(CAP_LINK_NULL, f, n, n, &s), CAP_DECODE_SKIP);
    CHECK_EQ_INT(st.non_ip, 2);
    CHECK_EQ_INT(decode(CAP_LINK_NULL, f, 3, 3, &s), H2R_ERR_TRUNCATED);
}

static void test_raw(void)
{
    static const int raw4[] = {CAP_LINK_RAW_DLT, CAP_LINK_RAW_BSDOS, CAP_LINK_RAW, CAP_LINK_IPV4};
    static const int raw6[] = {CAP_LINK_RAW_DLT, CAP_LINK_RAW_BSDOS, CAP_LINK_RAW, CAP_LINK_IPV6};
    uint8_t f[256];
    struct cap_tcp_seg s;
    size_t n;

    for (size_t i = 0; i < 4; i++) {
        n = ipv4_tcp(f, "raw4");
        CHECK_EQ_INT(decode(raw4[i], f, n, n, &s), 0);
        CHECK_EQ_INT(s.family, 4);
        CHECK_EQ_MEM(s.payload, s.payload_len, "raw4", 4);
        n = ipv6_tcp(f, "raw6");
        CHECK_EQ_INT(decode(raw6[i], f, n, n, &s), 0);
        CHECK_EQ_INT(s.family, 6);
        CHECK_EQ_MEM(s.payload, s.payload_len, "raw6", 4);
    }
    /* LINKTYPE_IPV4 with an IPv6 packet inside is malformed. */
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(decode(CAP_LINK_IPV4, f, n, n, &s), H2R_ERR_FORMAT);
    CHECK_EQ_INT(st.bad_ip, 1);
    f[0] = 0x50;
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), CAP_DECODE_SKIP);
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, 0, 0, &s), H2R_ERR_TRUNCATED);
}

static void test_options(void)
{
    uint8_t f[256];
    struct cap_tcp_seg s;
    size_t l4 = build_tcp(f + 28, 7, CAP_TCP_SYN, 12, "opt");
    size_t n = build_ipv4(f, 8, 6, l4, 0, -1);

    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), 0);
    CHECK_EQ_INT(s.flags, CAP_TCP_SYN);
    CHECK_EQ_INT(s.seq, 7);
    CHECK_EQ_MEM(s.payload, s.payload_len, "opt", 3);

    /* Snaplen inside the TCP options. */
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, 28 + 24, n, &s), H2R_ERR_TRUNCATED);
    CHECK_EQ_INT(st.truncated_tcp, 1);
    /* ... inside the IP options. */
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, 24, n, &s), H2R_ERR_TRUNCATED);
    CHECK_EQ_INT(st.truncated_ip, 1);
    /* ... inside the fixed TCP header. */
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, 28 + 10, n, &s), H2R_ERR_TRUNCATED);
    CHECK_EQ_INT(st.truncated_tcp, 2);
}

static void test_ipv6_ext(void)
{
    uint8_t f[512];
    struct cap_tcp_seg s;
    size_t e = 40, l4, n;

    /* Hop-by-hop (8 bytes) -> routing (24 bytes) -> destination options (8) -> AH (16) -> TCP */
    f[e] = 43;
    f[e + 1] = 0;
    memset(f + e + 2, 1, 6);
    e += 8;
    f[e] = 60;
    f[e + 1] = 2;
    memset(f + e + 2, 0, 22);
    e += 24;
    f[e] = 51;
    f[e + 1] = 0;
    memset(f + e + 2, 1, 6);
    e += 8;
    f[e] = 6;
    f[e + 1] = 2; /* (2 + 2) * 4 = 16 bytes */
    memset(f + e + 2, 0, 14);
    e += 16;
    l4 = build_tcp(f + e, 99, CAP_TCP_ACK, 0, "ext");
    n = build_ipv6(f, 0, e - 40 + l4, -1);
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), 0);
    CHECK_EQ_INT(s.seq, 99);
    CHECK_EQ_MEM(s.payload, s.payload_len, "ext", 3);
    CHECK_EQ_INT(st.ipv6_ext_headers, 4);

    /* Cut inside the routing header. */
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, 40 + 8 + 10, n, &s), H2R_ERR_TRUNCATED);
    CHECK_EQ_INT(st.truncated_ip, 1);
    /* Payload length too small for the routing header. */
    put16(f + 4, 12);
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), H2R_ERR_FORMAT);
    CHECK_EQ_INT(st.bad_ip, 1);

    /* No next header. */
    n = build_ipv6(f, 59, 0, -1);
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), CAP_DECODE_SKIP);
    /* ICMPv6. */
    memset(f + 40, 0, 8);
    n = build_ipv6(f, 58, 8, -1);
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), CAP_DECODE_SKIP);
    CHECK_EQ_INT(st.non_tcp, 2);
}

static void test_fragments(void)
{
    uint8_t f[256];
    struct cap_tcp_seg s;
    size_t l4, n;

    memset(&st, 0, sizeof(st));
    /* IPv4: MF set, then a non-zero offset. */
    l4 = build_tcp(f + 20, 1, CAP_TCP_ACK, 0, "frag");
    n = build_ipv4(f, 0, 6, l4, 0x2000, -1);
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), CAP_DECODE_SKIP);
    n = build_ipv4(f, 0, 6, l4, 0x0003, -1);
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), CAP_DECODE_SKIP);
    CHECK_EQ_INT(st.ip_fragments, 2);

    /* IPv6 fragment header, first fragment (M = 1). */
    f[40] = 6;
    f[41] = 0;
    put16(f + 42, 0x0001);
    put32(f + 44, 0xabcd);
    l4 = build_tcp(f + 48, 5, CAP_TCP_ACK, 0, "f6");
    n = build_ipv6(f, 44, 8 + l4, -1);
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), CAP_DECODE_SKIP);
    CHECK_EQ_INT(st.ip_fragments, 3);
    /* Atomic fragment (offset 0, M 0): the whole packet, decoded. */
    put16(f + 42, 0x0000);
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), 0);
    CHECK_EQ_MEM(s.payload, s.payload_len, "f6", 2);
    CHECK_EQ_INT(st.ip_fragments, 3);
}

static void test_snaplen(void)
{
    uint8_t f[256];
    struct cap_tcp_seg s;
    size_t n = ether(f, 0x0800);

    n += ipv4_tcp(f + n, "0123456789"); /* 14 + 20 + 20 + 10 = 64 */
    memset(&st, 0, sizeof(st));
    /* caplen < wirelen: 6 payload bytes cut. */
    CHECK_EQ_INT(decode(CAP_LINK_EN10MB, f, n - 6, n, &s), 0);
    CHECK_EQ_MEM(s.payload, s.payload_len, "0123", 4);
    CHECK_EQ_INT(s.payload_missing, 6);
    CHECK_EQ_INT(st.truncated_payload, 1);
    CHECK_EQ_INT(st.truncated_payload_bytes, 6);
    /* IP total length larger than what was captured, even with caplen == wirelen. */
    CHECK_EQ_INT(decode(CAP_LINK_EN10MB, f, n - 6, n - 6, &s), 0);
    CHECK_EQ_INT(s.payload_len, 4);
    CHECK_EQ_INT(s.payload_missing, 6);
    /* IPv6 too. */
    n = ipv6_tcp(f, "abcdefgh");
    CHECK_EQ_INT(decode(CAP_LINK_IPV6, f, n - 3, n, &s), 0);
    CHECK_EQ_MEM(s.payload, s.payload_len, "abcde", 5);
    CHECK_EQ_INT(s.payload_missing, 3);
    /* IPv4 total length 0 (TSO): the frame length counts. */
    n = ipv4_tcp(f, "tso");
    put16(f + 2, 0);
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), 0);
    CHECK_EQ_MEM(s.payload, s.payload_len, "tso", 3);
    CHECK_EQ_INT(s.payload_missing, 0);
    CHECK_EQ_INT(st.ip_len_from_frame, 1);
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n - 1, n + 100, &s), 0);
    CHECK_EQ_INT(s.payload_missing, 101);
}

static void test_malformed(void)
{
    uint8_t f[256];
    struct cap_tcp_seg s;
    size_t n;

    memset(&st, 0, sizeof(st));
    n = ipv4_tcp(f, "x");
    f[0] = 0x44; /* IHL 4 */
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), H2R_ERR_FORMAT);
    n = ipv4_tcp(f, "x");
    put16(f + 2, 12); /* total length < header */
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), H2R_ERR_FORMAT);
    CHECK_EQ_INT(st.bad_ip, 2);

    n = ipv4_tcp(f, "x");
    f[20 + 12] = 0x40; /* data offset 4 */
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), H2R_ERR_FORMAT);
    n = ipv4_tcp(f, "x");
    f[20 + 12] = 0xf0; /* data offset 60 bytes > segment */
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), H2R_ERR_FORMAT);
    n = ipv4_tcp(f, "x");
    put16(f + 2, 30); /* room for 10 bytes of TCP only */
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), H2R_ERR_FORMAT);
    CHECK_EQ_INT(st.bad_tcp, 3);

    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, 10, 100, &s), H2R_ERR_TRUNCATED);
    CHECK_EQ_INT(decode(CAP_LINK_EN10MB, f, 13, 13, &s), H2R_ERR_TRUNCATED);
    n = ether(f, 0x0800);
    CHECK_EQ_INT(decode(CAP_LINK_EN10MB, f, n, n, &s), H2R_ERR_TRUNCATED);
    CHECK_EQ_INT(st.truncated_ip, 2);
    CHECK_EQ_INT(st.truncated_link, 1);
    CHECK_EQ_INT(st.tcp_segments, 0);
    CHECK_EQ_INT(st.packets, 8);
}

static void test_non_tcp(void)
{
    uint8_t f[256];
    struct cap_tcp_seg s;
    size_t n;

    memset(&st, 0, sizeof(st));
    n = ether(f, 0x0806); /* ARP */
    memset(f + n, 0, 28);
    n += 28;
    CHECK_EQ_INT(decode(CAP_LINK_EN10MB, f, n, n, &s), CAP_DECODE_SKIP);
    n = ether(f, 60); /* 802.3 length field */
    CHECK_EQ_INT(decode(CAP_LINK_EN10MB, f, n, n, &s), CAP_DECODE_SKIP);
    CHECK_EQ_INT(st.non_ip, 2);
    memset(f + 20, 0, 8);
    n = build_ipv4(f, 0, 17, 8, 0, -1); /* UDP */
    CHECK_EQ_INT(decode(CAP_LINK_RAW, f, n, n, &s), CAP_DECODE_SKIP);
    CHECK_EQ_INT(st.non_tcp, 1);
    CHECK_EQ_INT(st.packets, 3);
}

static void test_linktypes(void)
{
    uint8_t f[64] = {0};
    struct cap_tcp_seg s;
    struct cap_counter_list l = {NULL, 0, 0};
    int found = 0;

    CHECK(cap_decode_linktype_supported(CAP_LINK_EN10MB));
    CHECK(cap_decode_linktype_supported(CAP_LINK_SLL2));
    CHECK(cap_decode_linktype_supported(CAP_LINK_NULL));
    CHECK(!cap_decode_linktype_supported(127)); /* 802.11 radiotap */
    CHECK_EQ_INT(decode(127, f, sizeof(f), sizeof(f), &s), H2R_ERR_UNSUPPORTED);

    CHECK_EQ_INT(cap_decode_stats_export(&st, &l), 0);
    for (size_t i = 0; i < l.n; i++) {
        CHECK(l.v[i].value != 0);
        if (strcmp(l.v[i].name, "decode.packets") == 0) {
            found = 1;
            CHECK_EQ_INT(l.v[i].value, st.packets);
        }
    }
    CHECK(found);
    cap_counter_list_free(&l);
}

int main(void)
{
    test_ethernet_ipv4();
    test_ethernet_padding();
    test_vlan();
    test_sll();
    test_sll2();
    test_loopback();
    test_raw();
    test_options();
    test_ipv6_ext();
    test_fragments();
    test_snaplen();
    test_malformed();
    test_non_tcp();
    test_linktypes();
    return check_summary("test_cap_decode");
}
