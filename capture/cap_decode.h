/*
 * Packet decoding: one captured frame -> one TCP segment descriptor.
 *
 * A pure function over the captured bytes (no I/O, no allocation). Link layers
 * handled: Ethernet with 802.1Q/802.1ad tags, Linux cooked SLL and SLL2, BSD
 * loopback NULL and LOOP, and raw IPv4/IPv6. Everything that is not a complete
 * TCP header (ARP, UDP, IP fragments, cut headers) is counted and skipped.
 */
#ifndef H2R_CAP_DECODE_H
#define H2R_CAP_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "cap_stats.h"

/* pcap link types understood by cap_decode_packet() (DLT_* / LINKTYPE_* values). */
#define CAP_LINK_NULL 0       /* BSD loopback, address family in host byte order */
#define CAP_LINK_EN10MB 1     /* Ethernet */
#define CAP_LINK_RAW_DLT 12   /* DLT_RAW on most systems */
#define CAP_LINK_RAW_BSDOS 14 /* DLT_RAW on BSD/OS and OpenBSD */
#define CAP_LINK_RAW 101      /* LINKTYPE_RAW as stored in files */
#define CAP_LINK_LOOP 108     /* OpenBSD loopback, address family in network byte order */
#define CAP_LINK_SLL 113      /* Linux cooked capture v1 */
#define CAP_LINK_IPV4 228
#define CAP_LINK_IPV6 229
#define CAP_LINK_SLL2 276 /* Linux cooked capture v2 */

/* TCP control bits (RFC 9293 section 3.1), as in the header's flags byte. */
#define CAP_TCP_FIN 0x01u
#define CAP_TCP_SYN 0x02u
#define CAP_TCP_RST 0x04u
#define CAP_TCP_PSH 0x08u
#define CAP_TCP_ACK 0x10u

/* cap_decode_packet() result for a frame that is not a TCP segment (counted, not an error). */
#define CAP_DECODE_SKIP 1

/* One TCP segment as seen on the wire. */
struct cap_tcp_seg {
    uint8_t family; /* 4 or 6 */
    uint8_t flags;  /* CAP_TCP_* */
    uint16_t sport;
    uint16_t dport;
    uint16_t window;
    uint8_t src[16]; /* IPv4 uses the first 4 bytes, the rest is zero */
    uint8_t dst[16];
    uint32_t seq;
    uint32_t ack;
    const uint8_t *payload;   /* borrowed from the frame */
    uint32_t payload_len;     /* captured payload bytes */
    uint32_t payload_missing; /* payload bytes the IP header announces but the snaplen cut off */
};

/* Decoder counters; exported as "decode.*". */
struct cap_decode_stats {
    uint64_t packets;
    uint64_t tcp_segments;
    uint64_t ipv4;
    uint64_t ipv6;
    uint64_t vlan_tags;
    uint64_t non_ip;            /* ARP, LLDP, unknown address family, 802.3 frames ... */
    uint64_t non_tcp;           /* UDP, ICMP, ESP, ... */
    uint64_t ip_fragments;      /* IPv4/IPv6 fragments: skipped, never reassembled */
    uint64_t ipv6_ext_headers;  /* extension headers walked over */
    uint64_t truncated_link;    /* snaplen cut the link-layer header */
    uint64_t truncated_ip;      /* snaplen cut the IP header or its extension headers */
    uint64_t truncated_tcp;     /* snaplen cut the TCP header or its options */
    uint64_t bad_link;          /* malformed link-layer header */
    uint64_t bad_ip;            /* bad version, IHL, total length, extension header chain */
    uint64_t bad_tcp;           /* data offset < 5 or beyond the IP payload */
    uint64_t ip_len_from_frame; /* IP length field 0 (TSO / jumbo): length taken from the frame */
    uint64_t truncated_payload; /* segments whose payload the snaplen cut */
    uint64_t truncated_payload_bytes;
};

/* Returns 1 when cap_decode_packet() handles this pcap link type, else 0. */
int cap_decode_linktype_supported(int linktype);

/*
 * Decodes one captured frame.
 *   linktype  pcap link type of the capture (CAP_LINK_*)
 *   pkt       captured bytes, caplen of them
 *   wirelen   original frame length (pcap's len; < caplen is treated as caplen)
 *   seg       filled on success; seg->payload points into pkt
 *   st        counters to update (must not be NULL)
 * Returns 0 for a TCP segment, CAP_DECODE_SKIP for a frame that is not one
 * (non-IP, non-TCP, IP fragment), H2R_ERR_TRUNCATED when the snaplen cut a
 * header, H2R_ERR_FORMAT for a malformed header, H2R_ERR_UNSUPPORTED for an
 * unknown link type. Every outcome is counted in st; none is fatal.
 */
int cap_decode_packet(int linktype, const uint8_t *pkt, uint32_t caplen, uint32_t wirelen,
                      struct cap_tcp_seg *seg, struct cap_decode_stats *st);

/* Appends the decoder counters to l. Returns 0 or H2R_ERR_NOMEM. */
int cap_decode_stats_export(const struct cap_decode_stats *st, struct cap_counter_list *l);

#endif
