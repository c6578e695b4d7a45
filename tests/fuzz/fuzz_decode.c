/*
 * libFuzzer target for cap_decode: byte 0 picks the link type, byte 1 how
 * many bytes the snaplen cut (wire length = captured + byte 1), the rest is
 * the captured frame. A decoded segment must point inside the frame, and the
 * counters must account for every frame exactly once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cap_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int links[] = {CAP_LINK_EN10MB,  CAP_LINK_SLL, CAP_LINK_SLL2, CAP_LINK_NULL,
                                CAP_LINK_LOOP,    CAP_LINK_RAW, CAP_LINK_IPV4, CAP_LINK_IPV6,
                                CAP_LINK_RAW_DLT, 147 /* unsupported */};
    struct cap_decode_stats st;
    struct cap_tcp_seg seg;
    const uint8_t *pkt;
    uint32_t caplen;
    int linktype, rc;
    uint64_t outcomes;

    if (size < 2)
        return 0;
    linktype = links[data[0] % (sizeof(links) / sizeof(links[0]))];
    pkt = data + 2;
    caplen = (uint32_t)(size - 2);
    memset(&st, 0, sizeof(st));
    rc = cap_decode_packet(linktype, pkt, caplen, caplen + data[1], &seg, &st);
    if (rc == H2R_ERR_UNSUPPORTED)
        return 0;
    if (rc == 0) {
        if (seg.payload < pkt || seg.payload + seg.payload_len > pkt + caplen)
            abort();
        if (seg.family != 4 && seg.family != 6)
            abort();
        if (st.tcp_segments != 1)
            abort();
    } else if (rc != CAP_DECODE_SKIP && rc != H2R_ERR_TRUNCATED && rc != H2R_ERR_FORMAT) {
        abort();
    }
    outcomes = st.tcp_segments + st.non_ip + st.non_tcp + st.ip_fragments + st.truncated_link +
               st.truncated_ip + st.truncated_tcp + st.bad_link + st.bad_ip + st.bad_tcp;
    if (st.packets != 1 || outcomes != 1)
        abort();
    return 0;
}
