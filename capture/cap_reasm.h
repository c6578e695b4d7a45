/*
 * TCP reassembly of one direction of one connection.
 *
 * A push parser: segments go in (sequence number, control bits, payload) and
 * contiguous bytes come out through a sink, together with "gap" notices for
 * bytes that will never be seen. Out-of-order segments are buffered up to a
 * hard cap; retransmitted and overlapping bytes are trimmed (the first copy
 * wins). No I/O; the only allocations are for out-of-order segments.
 */
#ifndef H2R_CAP_REASM_H
#define H2R_CAP_REASM_H

#include <stddef.h>
#include <stdint.h>

#include "cap_decode.h"
#include "cap_stats.h"

#define CAP_REASM_DEFAULT_MAX_OOO ((size_t)4 << 20)         /* per direction */
#define CAP_REASM_DEFAULT_MAX_OOO_TOTAL ((uint64_t)1 << 30) /* all directions */

/* Where reassembled bytes go. Data is borrowed until the callback returns.
 * A negative return aborts the push and is passed back to its caller. */
struct cap_reasm_sink {
    int (*data)(void *ud, const uint8_t *buf, size_t len, int64_t ts_ns);
    int (*gap)(void *ud, uint64_t missing, int64_t ts_ns);
};

/* Reassembly anomalies, summed over every direction of a capture ("tcp.*"). */
struct cap_reasm_stats {
    uint64_t segments;         /* segments pushed */
    uint64_t out_of_order;     /* segments that arrived ahead of a hole and were buffered */
    uint64_t retransmit;       /* segments that carried no new byte */
    uint64_t overlap;          /* segments partly overlapping bytes already seen */
    uint64_t overlap_conflict; /* ... whose overlapping bytes differ from the first copy */
    uint64_t ooo_cap_hit;      /* out-of-order buffer full: a hole was skipped */
    uint64_t gaps;             /* holes reported to the sink */
    uint64_t gap_bytes;
    uint64_t truncated_segments; /* snaplen cut the payload: the cut part became a gap */
    uint64_t truncated_bytes;
    uint64_t partial_starts; /* direction joined without its SYN */
    uint64_t syn_retransmit;
    uint64_t syn_late;       /* SYN captured after its direction's first segment (reordering) */
    uint64_t before_start;   /* segments wholly before the first byte we started from */
    uint64_t out_of_window;  /* sequence number more than 2^30 ahead: dropped */
    uint64_t data_after_fin; /* payload beyond the FIN: dropped */
    uint64_t rst_payload;    /* payload carried by RST segments: ignored */
    uint64_t ooo_bytes_peak; /* largest out-of-order buffer of one direction */
};

/* Shared by every reassembler of one capture: caps and counters. */
struct cap_reasm_env {
    size_t max_ooo;         /* per direction, bytes incl. bookkeeping; 0: default */
    uint64_t max_ooo_total; /* over all directions; 0: default */
    uint64_t ooo_total;     /* buffered now over all directions */
    struct cap_reasm_stats stats;
};

struct cap_reasm_node; /* one buffered out-of-order piece (private) */

/* One direction. Embed it; initialise with cap_reasm_init(), release with cap_reasm_release(). */
struct cap_reasm {
    struct cap_reasm_env *env;
    const struct cap_reasm_sink *sink;
    void *ud;
    struct cap_reasm_node *ooo_head; /* sorted, disjoint, all past next */
    struct cap_reasm_node *ooo_tail;
    uint64_t next;    /* unwrapped position of the next byte to deliver */
    uint64_t fin_pos; /* unwrapped position of the FIN, valid when fin_seen */
    uint64_t delivered;
    uint64_t gap_bytes;
    size_t ooo_bytes;
    uint32_t next_seq; /* next as a 32-bit sequence number */
    uint32_t isn;
    uint32_t first_seq; /* sequence number of the first byte of the stream (ISN + 1 if known) */
    uint8_t started;
    uint8_t syn_seen;
    uint8_t partial;
    uint8_t fin_seen;
    uint8_t rst_seen;
};

/* Prepares r; nothing is allocated until a segment arrives out of order. */
void cap_reasm_init(struct cap_reasm *r, struct cap_reasm_env *env,
                    const struct cap_reasm_sink *sink, void *ud);

/*
 * Pushes one segment of this direction.
 *   seq, flags  from the TCP header (CAP_TCP_*)
 *   data, len   captured payload (borrowed for the call)
 *   missing     payload bytes cut off after data by the snaplen (reported as a gap)
 * Returns 0, H2R_ERR_NOMEM, or the first negative value a sink callback returned.
 * Anomalies are counted, never errors.
 */
int cap_reasm_push(struct cap_reasm *r, uint32_t seq, unsigned flags, const uint8_t *data,
                   uint32_t len, uint32_t missing, int64_t ts_ns);

/*
 * Close time (FIN, RST, end of capture): skips every remaining hole as a gap
 * and delivers everything buffered, plus a final gap up to a seen FIN.
 * Returns 0 or the first negative sink return.
 */
int cap_reasm_flush(struct cap_reasm *r, int64_t ts_ns);

/* Frees buffered segments (without delivering them). r may then be re-initialised. */
void cap_reasm_release(struct cap_reasm *r);

/* 1 when every byte up to a seen FIN has been delivered or skipped. */
int cap_reasm_fin_done(const struct cap_reasm *r);

/* Appends the reassembly counters to l. Returns 0 or H2R_ERR_NOMEM. */
int cap_reasm_stats_export(const struct cap_reasm_stats *st, struct cap_counter_list *l);

#endif
