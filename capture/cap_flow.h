/*
 * The TCP flow table: 4-tuple -> connection.
 *
 * Both directions of a connection map to one flow. The table decides which
 * side is the client, reassembles each direction (cap_reasm.h) and drives one
 * cap_session per connection that ever carries payload. No I/O.
 */
#ifndef H2R_CAP_FLOW_H
#define H2R_CAP_FLOW_H

#include <stddef.h>
#include <stdint.h>

#include "cap_decode.h"
#include "cap_reasm.h"
#include "cap_session.h"
#include "cap_stats.h"

#define CAP_FLOW_DEFAULT_MAX_FLOWS 100000u

struct cap_flow_cfg {
    size_t max_flows;       /* concurrent open flows; 0: CAP_FLOW_DEFAULT_MAX_FLOWS */
    size_t max_ooo;         /* out-of-order bytes per direction; 0: CAP_REASM_DEFAULT_MAX_OOO */
    uint64_t max_ooo_total; /* out-of-order bytes over all flows; 0: default */
    uint64_t hash_seed;     /* any value; vary it to resist crafted collisions */
};

/* Flow-level counters ("flow.*"). */
struct cap_flow_stats {
    uint64_t flows;             /* connections that carried payload (got a conn id) */
    uint64_t flows_no_payload;  /* ended without a payload byte (SYN scans, probes) */
    uint64_t flows_partial;     /* connections joined without the client's SYN */
    uint64_t flows_cap_hit;     /* packets dropped because the table was full */
    uint64_t client_by_syn;     /* client side decided by SYN / SYN+ACK */
    uint64_t client_by_payload; /* ... by a client preface / request line / response */
    uint64_t client_by_port;    /* ... by the higher port number */
    uint64_t closed_fin;
    uint64_t closed_rst;
    uint64_t closed_capture_end;
    uint64_t closed_reused;       /* a new SYN replaced a flow that never closed */
    uint64_t tuple_reused;        /* a closed 4-tuple started a new connection */
    uint64_t payload_after_close; /* segments with payload for an already closed flow */
    uint64_t max_concurrent;      /* most open flows at once */
};

struct cap_flow_table;

/*
 * Creates an empty table. cfg may be NULL (defaults). env is borrowed for the
 * table's lifetime; sessions write their records through it.
 * Returns NULL on allocation failure.
 */
struct cap_flow_table *cap_flow_table_new(const struct cap_flow_cfg *cfg,
                                          struct cap_session_env *env);

/*
 * Feeds one decoded TCP segment captured at ts_ns. Returns 0, or a fatal
 * negative code from the session layer (out of memory, trace write error).
 */
int cap_flow_packet(struct cap_flow_table *t, const struct cap_tcp_seg *seg, int64_t ts_ns);

/*
 * End of capture: flushes and closes every open flow (H2R_CONN_END_CAPTURE_END)
 * in the order the flows were opened. Returns 0 or the first fatal error.
 */
int cap_flow_close_all(struct cap_flow_table *t, int64_t ts_ns);

/* Frees the table and any session still open (without writing records). NULL is a no-op. */
void cap_flow_table_free(struct cap_flow_table *t);

/* Live views of the flow and reassembly counters (valid until the table is freed). */
const struct cap_flow_stats *cap_flow_table_stats(const struct cap_flow_table *t);
const struct cap_reasm_stats *cap_flow_table_reasm_stats(const struct cap_flow_table *t);

/* Appends "flow.*" and "tcp.*" counters to l. Returns 0 or H2R_ERR_NOMEM. */
int cap_flow_stats_export(const struct cap_flow_table *t, struct cap_counter_list *l);

#endif
