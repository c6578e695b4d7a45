/*
 * Link / IP / TCP header decoding for the capture stage.
 *
 * Every captured frame goes through cap_decode_packet() once, so this is the
 * hottest code in the capture after the flow lookup: it reads the headers it
 * needs through a bounds-checked {ptr, len} cursor, never casts a struct over
 * the buffer and never allocates. A frame the snaplen cut short, a malformed
 * header or a protocol we do not follow is counted and skipped: a capture
 * must survive any byte sequence a NIC or a fuzzer can produce.
 *
 * The IP layer also decides how many TCP payload bytes the snaplen cut off,
 * from the IP length fields, so the reassembler can report them as a gap
 * instead of waiting for bytes that were on the wire but not in the file.
 */
#include <string.h>

#include "h2replay/cursor.h"
#include "cap_decode.h"

#define ETHERTYPE_IPV4 0x0800u
#define ETHERTYPE_IPV6 0x86ddu
#define ETHERTYPE_VLAN 0x8100u /* IEEE 802.1Q */
#define ETHERTYPE_QINQ 0x88a8u /* IEEE 802.1ad */
#define ETHERTYPE_QINQ_OLD 0x9100u
#define ETHERTYPE_MIN 0x0600u /* smaller values are 802.3 length fields */
#define ETHERTYPE_NONE 0u     /* not IP: count and skip */

#define MAX_VLAN_TAGS 8
#define MAX_IPV6_EXT_HEADERS 32

#define ARPHRD_NETLINK 824 /* SLL/SLL2 of netlink sockets: protocol is not an ethertype */

#define IPPROTO_NUM_HOPOPTS 0
#define IPPROTO_NUM_TCP 6
#define IPPROTO_NUM_ROUTING 43
#define IPPROTO_NUM_FRAGMENT 44
#define IPPROTO_NUM_AH 51
#define IPPROTO_NUM_NONE 59
#define IPPROTO_NUM_DSTOPTS 60

/* ---- link layer: each returns an ethertype (or ETHERTYPE_NONE) in *et ---- */

static int link_truncated(struct cap_decode_stats *st)
{
    st->truncated_link++;
    return H2R_ERR_TRUNCATED;
}

/* IEEE 802.1Q / 802.1ad tags: TCI (2 bytes) then the inner ethertype. */
static int skip_vlan_tags(struct h2r_cursor *c, uint16_t *et, struct cap_decode_stats *st)
{
    int tags = 0;

    while (*et == ETHERTYPE_VLAN || *et == ETHERTYPE_QINQ || *et == ETHERTYPE_QINQ_OLD) {
        if (++tags > MAX_VLAN_TAGS) {
            st->bad_link++;
            return H2R_ERR_FORMAT;
        }
        if (h2r_cur_skip(c, 2) != 0 || h2r_cur_be16(c, et) != 0)
            return link_truncated(st);
        st->vlan_tags++;
    }
    return 0;
}

/* Ethernet II: destination (6), source (6), ethertype (2). */
static int link_ether(struct h2r_cursor *c, uint16_t *et, struct cap_decode_stats *st)
{
    if (h2r_cur_skip(c, 12) != 0 || h2r_cur_be16(c, et) != 0)
        return link_truncated(st);
    if (*et < ETHERTYPE_MIN) {
        *et = ETHERTYPE_NONE; /* 802.3 length + LLC: not IP for our purposes */
        return 0;
    }
    return skip_vlan_tags(c, et, st);
}

/* Linux cooked v1: packet type (2), ARPHRD (2), address length (2), address (8), protocol (2). */
static int link_sll(struct h2r_cursor *c, uint16_t *et, struct cap_decode_stats *st)
{
    uint16_t hatype = 0;

    if (h2r_cur_skip(c, 2) != 0 || h2r_cur_be16(c, &hatype) != 0 || h2r_cur_skip(c, 10) != 0 ||
        h2r_cur_be16(c, et) != 0)
        return link_truncated(st);
    if (hatype == ARPHRD_NETLINK || *et < ETHERTYPE_MIN) {
        *et = ETHERTYPE_NONE;
        return 0;
    }
    return skip_vlan_tags(c, et, st);
}

/* Linux cooked v2: protocol (2), reserved (2), ifindex (4), ARPHRD (2), packet type (1),
 * address length (1), address (8). */
static int link_sll2(struct h2r_cursor *c, uint16_t *et, struct cap_decode_stats *st)
{
    uint16_t hatype = 0;

    if (h2r_cur_be16(c, et) != 0 || h2r_cur_skip(c, 6) != 0 || h2r_cur_be16(c, &hatype) != 0 ||
        h2r_cur_skip(c, 10) != 0)
        return link_truncated(st);
    if (hatype == ARPHRD_NETLINK || *et < ETHERTYPE_MIN) {
        *et = ETHERTYPE_NONE;
        return 0;
    }
    return skip_vlan_tags(c, et, st);
}

/* BSD AF_* values seen in NULL/LOOP headers; AF_INET6 differs between the BSDs. */
static uint16_t af_to_ethertype(uint32_t af)
{
    switch (af) {
    case 2:
        return ETHERTYPE_IPV4;
    case 24: /* NetBSD, OpenBSD, BSD/OS */
    case 28: /* FreeBSD, DragonFly */
    case 30: /* macOS */
        return ETHERTYPE_IPV6;
    default:
        return ETHERTYPE_NONE;
    }
}

/* NULL: 4-byte address family in the capturing host's byte order (either order is
 * accepted, as files move between machines). LOOP: the same in network byte order. */
static int link_loopback(struct h2r_cursor *c, int network_order, uint16_t *et,
                         struct cap_decode_stats *st)
{
    uint32_t be = 0;

    if (h2r_cur_be32(c, &be) != 0)
        return link_truncated(st);
    *et = af_to_ethertype(be);
    if (*et == ETHERTYPE_NONE && !network_order) {
        uint32_t le = (be >> 24) | ((be >> 8) & 0xff00u) | ((be << 8) & 0xff0000u) | (be << 24);
        *et = af_to_ethertype(le);
    }
    return 0;
}

/* Raw IP: the version nibble of the first byte says which. */
static int link_raw(struct h2r_cursor *c, uint16_t *et, struct cap_decode_stats *st)
{
    uint8_t b;

    if (h2r_cur_peek(c, 0, &b) != 0) {
        st->truncated_ip++;
        return H2R_ERR_TRUNCATED;
    }
    if ((b >> 4) == 4)
        *et = ETHERTYPE_IPV4;
    else if ((b >> 4) == 6)
        *et = ETHERTYPE_IPV6;
    else
        *et = ETHERTYPE_NONE;
    return 0;
}

/* ---- IP layer ---- */

/*
 * After an IP decoder returns 0, c covers the captured part of the IP payload
 * (trailing link padding removed) and *claimed is the payload length the IP
 * header announces.
 */

static int ip_truncated(struct cap_decode_stats *st)
{
    st->truncated_ip++;
    return H2R_ERR_TRUNCATED;
}

static int ip_bad(struct cap_decode_stats *st)
{
    st->bad_ip++;
    return H2R_ERR_FORMAT;
}

/* Limits c to the first n bytes of the IP payload (drops Ethernet padding). */
static void clamp_payload(struct h2r_cursor *c, uint64_t n)
{
    if (c->len > n)
        c->len = (size_t)n;
}

/* RFC 791 section 3.1: Internet Header Format. */
static int ip_v4(struct h2r_cursor *c, uint64_t wire_left, struct cap_tcp_seg *seg,
                 uint64_t *claimed, struct cap_decode_stats *st)
{
    uint8_t vihl = 0, proto = 0;
    uint16_t total = 0, frag = 0;
    size_t ihl;

    st->ipv4++;
    /* Version/IHL (1), type of service (1), total length (2), identification (2). */
    if (h2r_cur_u8(c, &vihl) != 0)
        return ip_truncated(st);
    if ((vihl >> 4) != 4)
        return ip_bad(st);
    ihl = (size_t)(vihl & 0x0f) * 4;
    if (ihl < 20)
        return ip_bad(st);
    if (h2r_cur_skip(c, 1) != 0 || h2r_cur_be16(c, &total) != 0 || h2r_cur_skip(c, 2) != 0 ||
        h2r_cur_be16(c, &frag) != 0 || h2r_cur_skip(c, 1) != 0 || h2r_cur_u8(c, &proto) != 0 ||
        h2r_cur_skip(c, 2) != 0)
        return ip_truncated(st);
    memset(seg->src, 0, sizeof(seg->src));
    memset(seg->dst, 0, sizeof(seg->dst));
    if (h2r_cur_copy(c, seg->src, 4) != 0 || h2r_cur_copy(c, seg->dst, 4) != 0 ||
        h2r_cur_skip(c, ihl - 20) != 0)
        return ip_truncated(st);

    if (total == 0) {
        /* TCP segmentation offload and BIG TCP leave 0 here; the frame knows. */
        st->ip_len_from_frame++;
        if (wire_left < ihl)
            return ip_bad(st);
        *claimed = wire_left - ihl;
    } else {
        if (total < ihl)
            return ip_bad(st);
        *claimed = (uint64_t)total - ihl;
    }
    /* Flags: MF is 0x2000; fragment offset the low 13 bits. */
    if ((frag & 0x2000u) != 0 || (frag & 0x1fffu) != 0) {
        st->ip_fragments++;
        return CAP_DECODE_SKIP;
    }
    if (proto != IPPROTO_NUM_TCP) {
        st->non_tcp++;
        return CAP_DECODE_SKIP;
    }
    seg->family = 4;
    clamp_payload(c, *claimed);
    return 0;
}

/* Consumes one extension header of n bytes from both the capture and the announced length. */
static int ip_v6_ext_skip(struct h2r_cursor *c, uint64_t *claimed, size_t n,
                          struct cap_decode_stats *st)
{
    if (n > *claimed)
        return ip_bad(st);
    if (h2r_cur_skip(c, n) != 0)
        return ip_truncated(st);
    *claimed -= n;
    st->ipv6_ext_headers++;
    return 0;
}

/* RFC 8200 section 3 (fixed header) and section 4 (extension headers). */
static int ip_v6(struct h2r_cursor *c, uint64_t wire_left, struct cap_tcp_seg *seg,
                 uint64_t *claimed, struct cap_decode_stats *st)
{
    uint8_t vtc = 0, next = 0;
    uint16_t plen = 0;
    int rc;

    st->ipv6++;
    /* Version (4 bits), traffic class, flow label (4 bytes in all), payload length (2),
     * next header (1), hop limit (1), source (16), destination (16). */
    if (h2r_cur_u8(c, &vtc) != 0)
        return ip_truncated(st);
    if ((vtc >> 4) != 6)
        return ip_bad(st);
    if (h2r_cur_skip(c, 3) != 0 || h2r_cur_be16(c, &plen) != 0 || h2r_cur_u8(c, &next) != 0 ||
        h2r_cur_skip(c, 1) != 0 || h2r_cur_copy(c, seg->src, 16) != 0 ||
        h2r_cur_copy(c, seg->dst, 16) != 0)
        return ip_truncated(st);

    if (plen == 0) {
        /* Jumbogram (RFC 2675) or BIG TCP: the length lives elsewhere; trust the frame. */
        st->ip_len_from_frame++;
        if (wire_left < 40)
            return ip_bad(st);
        *claimed = wire_left - 40;
    } else {
        *claimed = plen;
    }
    clamp_payload(c, *claimed);

    for (int i = 0;; i++) {
        uint8_t nh = 0, hlen = 0;
        uint16_t offm = 0;

        if (next == IPPROTO_NUM_TCP)
            break;
        if (i >= MAX_IPV6_EXT_HEADERS)
            return ip_bad(st);
        switch (next) {
        case IPPROTO_NUM_HOPOPTS: /* section 4.3 */
        case IPPROTO_NUM_ROUTING: /* section 4.4 */
        case IPPROTO_NUM_DSTOPTS: /* section 4.6 */
            /* Next header (1), header extension length in 8-octet units not counting the
             * first 8 (1). */
            if (h2r_cur_peek(c, 1, &nh) != 0)
                return *claimed < 2 ? ip_bad(st) : ip_truncated(st);
            nh = c->p[0];
            hlen = c->p[1];
            rc = ip_v6_ext_skip(c, claimed, ((size_t)hlen + 1) * 8, st);
            break;
        case IPPROTO_NUM_AH: /* RFC 4302 section 2.2: length in 4-octet units minus 2 */
            if (h2r_cur_peek(c, 1, &nh) != 0)
                return *claimed < 2 ? ip_bad(st) : ip_truncated(st);
            nh = c->p[0];
            hlen = c->p[1];
            rc = ip_v6_ext_skip(c, claimed, ((size_t)hlen + 2) * 4, st);
            break;
        case IPPROTO_NUM_FRAGMENT: /* section 4.5: next (1), reserved (1), offset|M (2), id (4) */
            if (h2r_cur_peek(c, 3, &nh) != 0)
                return *claimed < 8 ? ip_bad(st) : ip_truncated(st);
            nh = c->p[0];
            offm = (uint16_t)((unsigned)c->p[2] << 8 | c->p[3]);
            if ((offm & 0xfff8u) != 0 || (offm & 0x1u) != 0) {
                st->ip_fragments++;
                return CAP_DECODE_SKIP;
            }
            /* An atomic fragment (offset 0, M 0; RFC 6946) carries the whole packet. */
            rc = ip_v6_ext_skip(c, claimed, 8, st);
            break;
        case IPPROTO_NUM_NONE:
        default:
            st->non_tcp++;
            return CAP_DECODE_SKIP;
        }
        if (rc != 0)
            return rc;
        next = nh;
    }
    seg->family = 6;
    return 0;
}

/* ---- TCP: RFC 9293 section 3.1, Header Format ---- */

static int tcp_header(struct h2r_cursor *c, uint64_t claimed, struct cap_tcp_seg *seg,
                      struct cap_decode_stats *st)
{
    uint8_t off = 0, flags = 0;
    size_t hlen;
    uint64_t expect;

    /* Source port (2), destination port (2), sequence number (4), acknowledgment number (4),
     * data offset (4 bits) + reserved (4 bits), control bits (1), window (2), checksum (2),
     * urgent pointer (2), options. */
    if (claimed < 20) {
        st->bad_tcp++;
        return H2R_ERR_FORMAT;
    }
    if (h2r_cur_be16(c, &seg->sport) != 0 || h2r_cur_be16(c, &seg->dport) != 0 ||
        h2r_cur_be32(c, &seg->seq) != 0 || h2r_cur_be32(c, &seg->ack) != 0 ||
        h2r_cur_u8(c, &off) != 0 || h2r_cur_u8(c, &flags) != 0 ||
        h2r_cur_be16(c, &seg->window) != 0 || h2r_cur_skip(c, 4) != 0) {
        st->truncated_tcp++;
        return H2R_ERR_TRUNCATED;
    }
    hlen = (size_t)(off >> 4) * 4;
    if (hlen < 20 || hlen > claimed) {
        st->bad_tcp++;
        return H2R_ERR_FORMAT;
    }
    if (h2r_cur_skip(c, hlen - 20) != 0) { /* options: nothing in them matters to reassembly */
        st->truncated_tcp++;
        return H2R_ERR_TRUNCATED;
    }
    seg->flags = flags;
    seg->payload = c->p;
    seg->payload_len = (uint32_t)c->len;
    expect = claimed - hlen;
    seg->payload_missing = 0;
    if (expect > c->len) {
        uint64_t miss = expect - c->len;
        seg->payload_missing = miss > UINT32_MAX ? UINT32_MAX : (uint32_t)miss;
        st->truncated_payload++;
        st->truncated_payload_bytes += miss;
    }
    st->tcp_segments++;
    return 0;
}

int cap_decode_linktype_supported(int linktype)
{
    switch (linktype) {
    case CAP_LINK_NULL:
    case CAP_LINK_EN10MB:
    case CAP_LINK_RAW_DLT:
    case CAP_LINK_RAW_BSDOS:
    case CAP_LINK_RAW:
    case CAP_LINK_LOOP:
    case CAP_LINK_SLL:
    case CAP_LINK_IPV4:
    case CAP_LINK_IPV6:
    case CAP_LINK_SLL2:
        return 1;
    default:
        return 0;
    }
}

int cap_decode_packet(int linktype, const uint8_t *pkt, uint32_t caplen, uint32_t wirelen,
                      struct cap_tcp_seg *seg, struct cap_decode_stats *st)
{
    struct h2r_cursor c = {pkt, caplen};
    uint16_t et = ETHERTYPE_NONE;
    uint64_t claimed = 0, wire_left;
    int rc;

    st->packets++;
    if (wirelen < caplen)
        wirelen = caplen;
    switch (linktype) {
    case CAP_LINK_EN10MB:
        rc = link_ether(&c, &et, st);
        break;
    case CAP_LINK_SLL:
        rc = link_sll(&c, &et, st);
        break;
    case CAP_LINK_SLL2:
        rc = link_sll2(&c, &et, st);
        break;
    case CAP_LINK_NULL:
        rc = link_loopback(&c, 0, &et, st);
        break;
    case CAP_LINK_LOOP:
        rc = link_loopback(&c, 1, &et, st);
        break;
    case CAP_LINK_RAW_DLT:
    case CAP_LINK_RAW_BSDOS:
    case CAP_LINK_RAW:
        rc = link_raw(&c, &et, st);
        break;
    case CAP_LINK_IPV4:
        et = ETHERTYPE_IPV4;
        rc = 0;
        break;
    case CAP_LINK_IPV6:
        et = ETHERTYPE_IPV6;
        rc = 0;
        break;
    default:
        return H2R_ERR_UNSUPPORTED;
    }
    if (rc != 0)
        return rc;

    /* Bytes of the frame after the link header as it was on the wire. */
    wire_left = (uint64_t)wirelen - (caplen - c.len);
    if (et == ETHERTYPE_IPV4) {
        rc = ip_v4(&c, wire_left, seg, &claimed, st);
    } else if (et == ETHERTYPE_IPV6) {
        rc = ip_v6(&c, wire_left, seg, &claimed, st);
    } else {
        st->non_ip++;
        return CAP_DECODE_SKIP;
    }
    if (rc != 0)
        return rc;
    return tcp_header(&c, claimed, seg, st);
}

int cap_decode_stats_export(const struct cap_decode_stats *st, struct cap_counter_list *l)
{
    const struct {
        const char *name;
        uint64_t value;
    } v[] = {
        {"decode.packets", st->packets},
        {"decode.tcp_segments", st->tcp_segments},
        {"decode.ipv4", st->ipv4},
        {"decode.ipv6", st->ipv6},
        {"decode.vlan_tags", st->vlan_tags},
        {"decode.non_ip", st->non_ip},
        {"decode.non_tcp", st->non_tcp},
        {"decode.ip_fragments", st->ip_fragments},
        {"decode.ipv6_ext_headers", st->ipv6_ext_headers},
        {"decode.truncated_link", st->truncated_link},
        {"decode.truncated_ip", st->truncated_ip},
        {"decode.truncated_tcp", st->truncated_tcp},
        {"decode.bad_link", st->bad_link},
        {"decode.bad_ip", st->bad_ip},
        {"decode.bad_tcp", st->bad_tcp},
        {"decode.ip_len_from_frame", st->ip_len_from_frame},
        {"decode.truncated_payload", st->truncated_payload},
        {"decode.truncated_payload_bytes", st->truncated_payload_bytes},
    };

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int rc = cap_counter_add(l, v[i].name, v[i].value);
        if (rc != 0)
            return rc;
    }
    return 0;
}
