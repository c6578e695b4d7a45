/*
 * pcap_mangle - rewrite a pcap with reordered and duplicated TCP segments.
 *
 * End-to-end tests need captures with the anomalies real networks produce
 * (out-of-order arrival, retransmitted duplicates) but loopback never does.
 * This tool takes a clean capture and, deterministically for a given seed:
 *   - swaps adjacent TCP data segments of the same direction (the later one
 *     is written first; timestamps stay with the positions, so the file is
 *     still in time order), each eligible pair with probability -w PERCENT;
 *   - writes every Nth TCP data segment twice (-n N), like a retransmission.
 * Everything else (handshakes, pure ACKs, non-TCP packets) passes through.
 *
 * Packet bytes are read only through the bounds-checked cursor below (no
 * struct casts over packet data). Link types: Ethernet (with 802.1Q tags),
 * Linux cooked v1/v2, raw IP, BSD loopback. Headers: RFC 791 (IPv4), RFC 8200
 * (IPv6, TCP as the first next header only), RFC 9293 (TCP).
 *
 * Usage: pcap_mangle [-s SEED] [-w PERCENT] [-n N] IN.pcap OUT.pcap
 * Exit: 0 ok, 1 error (message on stderr), 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pcap/pcap.h>

/* Hard caps: the tool holds the whole capture in memory. */
#define MANGLE_MAX_PACKETS 20000000u
#define MANGLE_MAX_BYTES ((uint64_t)1024 * 1024 * 1024)

/* Link types we decode (pcap LINKTYPE_* values). */
#define LT_NULL 0
#define LT_EN10MB 1
#define LT_RAW 101
#define LT_LINUX_SLL 113
#define LT_IPV4 228
#define LT_IPV6 229
#define LT_LINUX_SLL2 276
#define LT_LOOP 108

#define TCP_FLAG_FIN 0x01u
#define TCP_FLAG_SYN 0x02u
#define TCP_FLAG_RST 0x04u

/* A read-only view of packet bytes; every read checks the bounds. */
struct cursor {
    const uint8_t *p;
    size_t len;
    size_t off;
};

static int cur_u8(struct cursor *c, uint8_t *v)
{
    if (c->len - c->off < 1)
        return -1;
    *v = c->p[c->off];
    c->off += 1;
    return 0;
}

static int cur_be16(struct cursor *c, uint16_t *v)
{
    if (c->len - c->off < 2)
        return -1;
    *v = (uint16_t)((c->p[c->off] << 8) | c->p[c->off + 1]);
    c->off += 2;
    return 0;
}

static int cur_copy(struct cursor *c, uint8_t *dst, size_t n)
{
    if (c->len - c->off < n)
        return -1;
    memcpy(dst, c->p + c->off, n);
    c->off += n;
    return 0;
}

static int cur_skip(struct cursor *c, size_t n)
{
    if (c->len - c->off < n)
        return -1;
    c->off += n;
    return 0;
}

/* Direction of a TCP segment, filled field by field from the cursor. */
struct flow_dir {
    uint8_t family; /* 4 or 6 */
    uint8_t src[16];
    uint8_t dst[16];
    uint16_t sport;
    uint16_t dport;
};

struct packet {
    struct pcap_pkthdr hdr;
    uint8_t *data;
    int is_data; /* TCP segment with payload, no SYN/RST */
    struct flow_dir dir;
};

/* splitmix64: tiny, seedable, identical on every platform and libc. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z;

    *state += 0x9e3779b97f4a7c15ull;
    z = *state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int same_dir(const struct flow_dir *a, const struct flow_dir *b)
{
    return a->family == b->family && a->sport == b->sport && a->dport == b->dport &&
           memcmp(a->src, b->src, sizeof(a->src)) == 0 &&
           memcmp(a->dst, b->dst, sizeof(a->dst)) == 0;
}

/* b travels the same connection as a, the other way (e.g. its ACKs). */
static int reverse_dir(const struct flow_dir *a, const struct flow_dir *b)
{
    return a->family != 0 && a->family == b->family && a->sport == b->dport &&
           a->dport == b->sport && memcmp(a->src, b->dst, sizeof(a->src)) == 0 &&
           memcmp(a->dst, b->src, sizeof(a->dst)) == 0;
}

/*
 * Skips the link-layer header and reports the network protocol
 * (4, 6, or 0 when the frame carries neither). Returns 0, or -1 when the
 * frame is too short for its link header.
 */
static int skip_link(struct cursor *c, int linktype, int *ipver)
{
    uint16_t ethertype = 0;
    uint8_t b0;
    uint8_t fam[4];

    *ipver = 0;
    switch (linktype) {
    case LT_EN10MB:
        if (cur_skip(c, 12) < 0 || cur_be16(c, &ethertype) < 0)
            return -1;
        /* 802.1Q / 802.1ad tags: at most two */
        for (int i = 0; i < 2 && (ethertype == 0x8100 || ethertype == 0x88a8); i++) {
            if (cur_skip(c, 2) < 0 || cur_be16(c, &ethertype) < 0)
                return -1;
        }
        break;
    case LT_LINUX_SLL: /* 16-byte header, protocol in the last two bytes */
        if (cur_skip(c, 14) < 0 || cur_be16(c, &ethertype) < 0)
            return -1;
        break;
    case LT_LINUX_SLL2: /* 20-byte header, protocol first */
        if (cur_be16(c, &ethertype) < 0 || cur_skip(c, 18) < 0)
            return -1;
        break;
    case LT_NULL:
    case LT_LOOP: /* 4-byte address family, host or network order */
        if (cur_copy(c, fam, sizeof(fam)) < 0)
            return -1;
        if (fam[0] == 2 || fam[3] == 2)
            *ipver = 4;
        else if (fam[0] >= 10 || fam[3] >= 10)
            *ipver = 6; /* AF_INET6 is 10, 24, 28 or 30 depending on the OS */
        return 0;
    case LT_RAW:
    case LT_IPV4:
    case LT_IPV6:
        if (c->len - c->off < 1)
            return -1;
        b0 = c->p[c->off];
        *ipver = b0 >> 4;
        return 0;
    default:
        return 0;
    }
    if (ethertype == 0x0800)
        *ipver = 4;
    else if (ethertype == 0x86dd)
        *ipver = 6;
    return 0;
}

/*
 * Classifies one frame: fills dir and sets *is_data when it is a TCP segment
 * carrying payload (and neither SYN nor RST). Malformed or non-TCP frames
 * are simply not data; the function never fails.
 */
static void classify(const uint8_t *data, size_t caplen, int linktype, struct flow_dir *dir,
                     int *is_data)
{
    struct cursor c = {data, caplen, 0};
    int ipver;
    uint8_t b, proto, data_off, flags;
    uint16_t total_len, frag, payload_len;
    size_t l4_len, ihl;

    *is_data = 0;
    memset(dir, 0, sizeof(*dir));
    if (skip_link(&c, linktype, &ipver) < 0)
        return;
    if (ipver == 4) {
        /* RFC 791 section 3.1 */
        if (cur_u8(&c, &b) < 0 || (b >> 4) != 4)
            return;
        ihl = (size_t)(b & 0x0f) * 4;
        if (ihl < 20 || cur_skip(&c, 1) < 0 || cur_be16(&c, &total_len) < 0 ||
            cur_skip(&c, 2) < 0 || cur_be16(&c, &frag) < 0 || cur_skip(&c, 1) < 0 ||
            cur_u8(&c, &proto) < 0 || cur_skip(&c, 2) < 0 || cur_copy(&c, dir->src, 4) < 0 ||
            cur_copy(&c, dir->dst, 4) < 0)
            return;
        if (proto != 6 || (frag & 0x3fff) != 0 || total_len < ihl)
            return; /* not TCP, or a fragment */
        if (cur_skip(&c, ihl - 20) < 0)
            return;
        l4_len = total_len - ihl;
        dir->family = 4;
    } else if (ipver == 6) {
        /* RFC 8200 section 3 */
        if (cur_u8(&c, &b) < 0 || (b >> 4) != 6 || cur_skip(&c, 3) < 0 ||
            cur_be16(&c, &payload_len) < 0 || cur_u8(&c, &proto) < 0 || cur_skip(&c, 1) < 0 ||
            cur_copy(&c, dir->src, 16) < 0 || cur_copy(&c, dir->dst, 16) < 0)
            return;
        if (proto != 6)
            return;
        l4_len = payload_len;
        dir->family = 6;
    } else {
        return;
    }
    /* RFC 9293 section 3.1 */
    if (cur_be16(&c, &dir->sport) < 0 || cur_be16(&c, &dir->dport) < 0 || cur_skip(&c, 8) < 0 ||
        cur_u8(&c, &data_off) < 0 || cur_u8(&c, &flags) < 0)
        return;
    if ((size_t)(data_off >> 4) * 4 < 20 || l4_len < (size_t)(data_off >> 4) * 4)
        return;
    if (flags & (TCP_FLAG_SYN | TCP_FLAG_RST))
        return;
    *is_data = l4_len > (size_t)(data_off >> 4) * 4;
}

static void usage(void)
{
    fprintf(stderr, "usage: pcap_mangle [-s SEED] [-w SWAP_PERCENT] [-n DUP_EVERY_N] IN OUT\n"
                    "  -s SEED          PRNG seed (default 1)\n"
                    "  -w SWAP_PERCENT  chance to swap each adjacent same-direction pair of TCP\n"
                    "                   data segments, 0-100 (default 30)\n"
                    "  -n DUP_EVERY_N   write every Nth TCP data segment twice; 0 = never "
                    "(default 5)\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

/*
 * Reads every packet of in_path into *pkts (caller frees). Returns 0, or -1
 * with a message on stderr (unreadable file, cap exceeded).
 */
static int read_all(pcap_t *in, int linktype, struct packet **pkts, size_t *n_pkts)
{
    struct packet *arr = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    struct pcap_pkthdr *h;
    const u_char *bytes;
    int rc;

    for (;;) {
        rc = pcap_next_ex(in, &h, &bytes);
        if (rc == PCAP_ERROR_BREAK)
            break;
        if (rc != 1) {
            fprintf(stderr, "pcap_mangle: read error after %zu packets: %s\n", n, pcap_geterr(in));
            goto fail;
        }
        if (n >= MANGLE_MAX_PACKETS || total + h->caplen > MANGLE_MAX_BYTES) {
            fprintf(stderr, "pcap_mangle: input exceeds %u packets or %" PRIu64 " bytes\n",
                    MANGLE_MAX_PACKETS, MANGLE_MAX_BYTES);
            goto fail;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 1024;
            struct packet *tmp = realloc(arr, ncap * sizeof(*arr));

            if (tmp == NULL) {
                fprintf(stderr, "pcap_mangle: out of memory\n");
                goto fail;
            }
            arr = tmp;
            cap = ncap;
        }
        arr[n].hdr = *h;
        arr[n].data = malloc(h->caplen ? h->caplen : 1);
        if (arr[n].data == NULL) {
            fprintf(stderr, "pcap_mangle: out of memory\n");
            goto fail;
        }
        memcpy(arr[n].data, bytes, h->caplen);
        classify(arr[n].data, h->caplen, linktype, &arr[n].dir, &arr[n].is_data);
        total += h->caplen;
        n++;
    }
    *pkts = arr;
    *n_pkts = n;
    return 0;
fail:
    for (size_t i = 0; i < n; i++)
        free(arr[i].data);
    free(arr);
    return -1;
}

/*
 * Decides the output order: order[i] is the index of the packet whose bytes
 * go to position i. Swaps only adjacent data segments of one direction with
 * nothing from the peer in between: reordering within one flight, as a
 * network does. (Moving a segment past the peer's ACK of it would make the
 * capture claim the receiver acknowledged bytes it had not seen.) A segment
 * takes part in at most one swap.
 */
static void plan_swaps(const struct packet *pkts, size_t n, uint64_t seed, unsigned percent,
                       size_t *order, uint64_t *swapped)
{
    uint64_t state = seed;
    unsigned char *used = calloc(n ? n : 1, 1);

    for (size_t i = 0; i < n; i++)
        order[i] = i;
    *swapped = 0;
    if (used == NULL)
        return; /* no reordering rather than a crash */
    for (size_t i = 0; i < n; i++) {
        size_t j;

        if (!pkts[i].is_data || used[i])
            continue;
        for (j = i + 1; j < n; j++) {
            if (same_dir(&pkts[i].dir, &pkts[j].dir) || reverse_dir(&pkts[i].dir, &pkts[j].dir))
                break;
        }
        if (j < n && !(pkts[j].is_data && same_dir(&pkts[i].dir, &pkts[j].dir)))
            continue; /* the peer (or a pure ACK of ours) comes first */
        if (j >= n || used[j])
            continue;
        if (rng_next(&state) % 100u < percent) {
            order[i] = j;
            order[j] = i;
            used[i] = used[j] = 1;
            (*swapped)++;
        }
    }
    free(used);
}

int main(int argc, char **argv)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    uint64_t seed = 1, percent = 30, dup_every = 5, v;
    uint64_t swapped = 0, dups = 0, data_segs = 0, written = 0;
    struct packet *pkts = NULL;
    size_t n = 0, *order = NULL;
    pcap_t *in = NULL, *dead = NULL;
    pcap_dumper_t *out = NULL;
    int opt, linktype, ret = 1;

    while ((opt = getopt(argc, argv, "s:w:n:h")) != -1) {
        switch (opt) {
        case 's':
            if (parse_u64(optarg, &seed) < 0)
                goto bad_usage;
            break;
        case 'w':
            if (parse_u64(optarg, &v) < 0 || v > 100)
                goto bad_usage;
            percent = v;
            break;
        case 'n':
            if (parse_u64(optarg, &dup_every) < 0)
                goto bad_usage;
            break;
        case 'h':
            usage();
            return 0;
        default:
            goto bad_usage;
        }
    }
    if (argc - optind != 2)
        goto bad_usage;

    in = pcap_open_offline_with_tstamp_precision(argv[optind], PCAP_TSTAMP_PRECISION_NANO, errbuf);
    if (in == NULL) {
        fprintf(stderr, "pcap_mangle: %s: %s\n", argv[optind], errbuf);
        goto out;
    }
    linktype = pcap_datalink(in);
    if (read_all(in, linktype, &pkts, &n) < 0)
        goto out;

    order = malloc((n ? n : 1) * sizeof(*order));
    if (order == NULL) {
        fprintf(stderr, "pcap_mangle: out of memory\n");
        goto out;
    }
    plan_swaps(pkts, n, seed, (unsigned)percent, order, &swapped);

    dead = pcap_open_dead_with_tstamp_precision(linktype, pcap_snapshot(in),
                                                PCAP_TSTAMP_PRECISION_NANO);
    if (dead == NULL) {
        fprintf(stderr, "pcap_mangle: pcap_open_dead failed\n");
        goto out;
    }
    out = pcap_dump_open(dead, argv[optind + 1]);
    if (out == NULL) {
        fprintf(stderr, "pcap_mangle: %s: %s\n", argv[optind + 1], pcap_geterr(dead));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct packet *p = &pkts[order[i]];
        struct pcap_pkthdr h = p->hdr;

        h.ts = pkts[i].hdr.ts; /* time stays with the position */
        pcap_dump((u_char *)out, &h, p->data);
        written++;
        if (p->is_data) {
            data_segs++;
            if (dup_every > 0 && data_segs % dup_every == 0) {
                pcap_dump((u_char *)out, &h, p->data);
                written++;
                dups++;
            }
        }
    }
    if (pcap_dump_flush(out) != 0) {
        fprintf(stderr, "pcap_mangle: %s: write failed\n", argv[optind + 1]);
        goto out;
    }
    fprintf(stderr,
            "pcap_mangle: %zu packets in, %" PRIu64 " out, %" PRIu64 " data segments, %" PRIu64
            " pairs swapped, %" PRIu64 " duplicated (seed %" PRIu64 ")\n",
            n, written, data_segs, swapped, dups, seed);
    ret = 0;
out:
    if (out != NULL)
        pcap_dump_close(out);
    if (dead != NULL)
        pcap_close(dead);
    if (in != NULL)
        pcap_close(in);
    for (size_t i = 0; i < n; i++)
        free(pkts[i].data);
    free(pkts);
    free(order);
    return ret;
bad_usage:
    usage();
    return 2;
}
