/*
 * TS2021 node sessions: "thousands of nodes registering" against a
 * Tailscale control server (Headscale), for ts2021+http(s):// targets.
 *
 * A node session is one TS2021 connection (rp_ts.c) carrying an nghttp2
 * client session (rp_h2.c) with a fresh machine, node and disco key:
 *
 *   connect -> POST /ts2021 upgrade + Noise -> POST /machine/register (pre-auth
 *   key) -> POST /machine/map (Stream, zstd, KeepAlive) -> decode every map
 *   message (full netmap, deltas, keep-alives), track the peer set -> hold the
 *   stream for the session's lifetime -> close
 *
 * and yields two results: the register step and the map step (first netmap,
 * then how the stream fared). Sessions come from a plan of
 * struct rp_session_plan, which a synthetic generator (--nodes/--arrival/
 * --hold) fills today and a trace's TS2021 session records will fill once
 * capture records them; --clone multiplies either.
 *
 * The driver mirrors rp_replay.c's (one epoll loop per thread sharing
 * nothing but the read-only plan, results in batches to the calling thread,
 * the only writer of the run file) with its own worker, because a node
 * session is a little state machine, not a list of captured exchanges.
 */
#ifndef H2R_RP_NODES_H
#define H2R_RP_NODES_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/replay.h"

/* One planned node session. Times are unscaled ns (--speed applies at run time). */
struct rp_session_plan {
    int64_t start;     /* offset from the section's t0 */
    int64_t hold;      /* lifetime from its start (the map stream is held until then) */
    uint32_t identity; /* machine identity index: distinct keys and hostname per identity */
    uint32_t origin;   /* the planned session it was cloned from (its own index if not) */
};

struct rp_nodes_plan {
    struct rp_session_plan *v; /* sorted by start */
    uint32_t n;
};

/*
 * n sessions arriving uniformly over arrival (session i at arrival * i / n),
 * each held for hold; identities 0..n-1. Returns 0, H2R_ERR_ARG (n == 0) or
 * H2R_ERR_NOMEM.
 */
int rp_nodes_plan_synthetic(struct rp_nodes_plan *p, uint32_t n, int64_t arrival, int64_t hold);

/*
 * Replaces every planned session by `copies` copies with distinct identities
 * (identity * copies + k): copy k starts at start + jitter * k / copies, the
 * same hold. copies 0 or 1 changes nothing. Returns 0, H2R_ERR_LIMIT (more
 * than 2^32 - 1 sessions) or H2R_ERR_NOMEM (p unchanged).
 */
int rp_nodes_plan_clone(struct rp_nodes_plan *p, uint32_t copies, int64_t jitter);

void rp_nodes_plan_free(struct rp_nodes_plan *p);

/* 1 when the options ask for node sessions (--nodes, or a ts2021+ target). */
int rp_nodes_wanted(const struct h2r_replay_opts *o);

/*
 * h2r_replay_run() for node sessions: the same contract (run file, sections
 * per target, exit semantics). Returns 0, H2R_ERR_ARG (bad options: a trace
 * with TS2021 targets, mixed targets, no --set authkey=...), or another
 * negative code when the run could not happen or be written.
 */
int rp_nodes_replay_run(const struct h2r_replay_opts *o, struct h2r_replay_result *res,
                        char *errbuf, size_t errlen);

/* The stop flag shared with h2r_replay_request_stop() (rp_replay.c). */
int rp_replay_stop_requested(void);

#endif
