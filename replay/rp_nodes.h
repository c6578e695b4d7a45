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
 * --hold) or a trace's TS2021 session records fill; --clone multiplies
 * either and --shard keeps one worker's identities.
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
#include "h2replay/trace.h"

/* One planned node session. Times are unscaled ns (--speed applies at run time). */
struct rp_session_plan {
    int64_t start;     /* offset from the section's t0 */
    int64_t hold;      /* lifetime from its start (the map stream is held until then) */
    uint32_t identity; /* machine identity: the same keys and hostname for every session of it */
    uint32_t origin;   /* the planned session it was cloned from (captured: the trace's order) */
    uint32_t seq;      /* position in the whole plan, before sharding: exchange ids 2 seq, +1 */
    uint8_t skip;      /* 0: replay it; else the enum h2r_ts_how of a captured session that
                        * never completed a handshake (one `skipped` result, no connection) */
    int32_t status;    /* captured upgrade status (-1 none); synthetic: -1 */
};

struct rp_nodes_plan {
    struct rp_session_plan *v; /* sorted by start */
    uint32_t n;
    uint32_t identities; /* distinct identities (max identity + 1) */
};

/* What a trace's TS2021 session records said (rp_nodes_plan_from_trace). */
struct rp_nodes_trace_info {
    uint32_t sessions;  /* ts_session records */
    uint32_t nodes;     /* distinct captured nodes (node != 0) */
    uint32_t anonymous; /* sessions of an unknown node (node 0): one identity each */
    uint32_t skipped;   /* sessions without a completed handshake */
    uint32_t capver;    /* the captured capability version when all known ones agree, else 0 */
    uint64_t exchanges; /* HTTP/2 exchange records (not replayed in node mode) */
    int64_t origin_ns;  /* capture time of plan offset 0: the earliest t_upgrade_ns */
    int64_t span_ns;    /* origin to the last session's end */
};

/*
 * n sessions arriving uniformly over arrival (session i at arrival * i / n),
 * each held for hold; identities 0..n-1. Returns 0, H2R_ERR_ARG (n == 0) or
 * H2R_ERR_NOMEM.
 */
int rp_nodes_plan_synthetic(struct rp_nodes_plan *p, uint32_t n, int64_t arrival, int64_t hold);

/*
 * A plan from captured TS2021 sessions (records in any order; only the scalar
 * fields are read). Offsets are from the earliest t_upgrade_ns (the first
 * session starts at t0, as a trace's first exchange does); hold is t_end_ns -
 * t_upgrade_ns (a session open at capture end holds until the capture end).
 * Identities: one per captured node (node != 0), one per session of node 0,
 * numbered in order of first appearance. Sessions with t_handshake_ns 0 get
 * skip = their how (H2R_TS_END_UNKNOWN becomes H2R_TS_END_REJECTED). info may
 * be NULL (info->exchanges is left 0). Returns 0, H2R_ERR_ARG (n == 0), H2R_ERR_FORMAT
 * (session times span more than 10 years), H2R_ERR_LIMIT or H2R_ERR_NOMEM.
 */
int rp_nodes_plan_from_sessions(struct rp_nodes_plan *p, const struct h2r_ts_session *s,
                                uint32_t n, struct rp_nodes_trace_info *info);

/*
 * Reads the trace at path and plans its ts_session records
 * (rp_nodes_plan_from_sessions; info->exchanges counts the exchange records).
 * Returns 0, H2R_ERR_FORMAT (no ts_session record: errbuf says so) or the
 * reader's error with errbuf filled.
 */
int rp_nodes_plan_from_trace(struct rp_nodes_plan *p, const char *path,
                             struct rp_nodes_trace_info *info, char *errbuf, size_t errlen);

/*
 * Replaces every planned session by `copies` copies with distinct identities
 * (identity * copies + k): copy k starts at start + jitter * k / copies, the
 * same hold. Sessions of one identity thus map, copy by copy, to one identity
 * each (captured node j, copy k -> identity j * copies + k) and keep their
 * order. The result is sorted by start and renumbered (seq = index), origins
 * kept. copies 0 or 1 changes nothing. Returns 0, H2R_ERR_LIMIT (more than
 * 2^32 - 1 sessions) or H2R_ERR_NOMEM (p unchanged).
 */
int rp_nodes_plan_clone(struct rp_nodes_plan *p, uint32_t copies, int64_t jitter);

/*
 * Keeps only shard `index` of `count` (rp_shard_assign over identities, keyed
 * by the identity's first start): one identity's sessions are never split,
 * every session is in exactly one shard. seq is kept (exchange ids stay those
 * of the whole plan). count <= 1 keeps everything. *identities (may be NULL)
 * receives the identities of this shard. Returns 0, H2R_ERR_ARG (index >=
 * count) or H2R_ERR_NOMEM (p unchanged).
 */
int rp_nodes_plan_shard(struct rp_nodes_plan *p, uint32_t index, uint32_t count,
                        uint32_t *identities);

void rp_nodes_plan_free(struct rp_nodes_plan *p);

/*
 * 1 when a RegisterResponse Error (or a 4xx text) from Headscale names the
 * pre-auth key as the reason (auth_key_refused), 0 for any other register error.
 * Headscale's "handling register with auth key:" wrapper does not count.
 */
int rp_nodes_is_auth_error(const char *error);

/* 1 when the options ask for node sessions (--nodes, or a ts2021+ target). */
int rp_nodes_wanted(const struct h2r_replay_opts *o);

/*
 * h2r_replay_run() for node sessions: the same contract (run file, sections
 * per target, exit semantics). Returns 0, H2R_ERR_ARG (bad options: mixed
 * targets, a trace and --nodes, no --set authkey=...), or another
 * negative code when the run could not happen or be written.
 * With o->trace_path, the sessions are the trace's ts_session records.
 */
int rp_nodes_replay_run(const struct h2r_replay_opts *o, struct h2r_replay_result *res,
                        char *errbuf, size_t errlen);

/* The stop flag shared with h2r_replay_request_stop() (rp_replay.c). */
int rp_replay_stop_requested(void);

#endif
