/*
 * Replay stage: trace -> live HTTP/2 traffic against one or more targets -> run file.
 *
 * The trace's exchanges are re-issued with the captured timing scaled by
 * `speed` (or as fast as causality allows with speed 0 = "max"), one
 * replayed connection per captured connection, against each target in turn.
 * Every exchange gets exactly one result record in the run file per target
 * (docs/run-format.md), failed ones classified (enum h2r_err_class).
 *
 * The stage library does the work; cli/cmd_replay.c only parses flags.
 */
#ifndef H2REPLAY_REPLAY_H
#define H2REPLAY_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define H2R_REPLAY_MAX_TARGETS 64
#define H2R_REPLAY_MAX_THREADS 64
#define H2R_REPLAY_MAX_SHARDS 100000

/* TS2021 node sessions against ts2021+http(s):// targets (docs/ts2021.md "Replay"); all 0 =
 * defaults. */
struct h2r_replay_ts_opts {
    uint32_t nodes;             /* --nodes N: N synthetic sessions, no trace */
    int64_t arrival_ns;         /* --arrival: the N starts spread uniformly over this */
    int64_t hold_ns;            /* --hold: each session's lifetime from its start */
    uint32_t clone;             /* --clone N: every planned session N times (0, 1: once) */
    int64_t clone_jitter_ns;    /* --clone-jitter: copies' starts spread over this */
    uint32_t capver;            /* --capver (0: 130) */
    int omit_peers;             /* --omit-peers: register + OmitPeers map, no stream */
    int64_t stall_ns;           /* --keepalive-window: silence that is stream_stalled (0: 120 s) */
};

struct h2r_replay_opts {
    const char *trace_path;     /* trace to replay */
    const char *run_path;       /* -o: run file to write */
    const char *const *targets; /* "[NAME=]URL", URL http://host[:port] or https://...; in order */
    size_t n_targets;
    double speed;                /* > 0: time scale (2 = twice as fast); 0 = max */
    int64_t timeout_ns;          /* per-request deadline from the actual send (default 5 s) */
    int64_t connect_timeout_ns;  /* TCP + TLS handshake (default 3 s) */
    int threads;                 /* event-loop threads (default 1) */
    int insecure;                /* 1: skip certificate verification */
    const char *cacert;          /* PEM CA bundle instead of the system store; NULL: system */
    const char *between;         /* shell command run between targets; NULL: none */
    const char *const *dbs;      /* --db [NAME=]DSN: database sampled during a target's section */
    size_t n_dbs;
    int64_t db_interval_ns;      /* --db-interval (0: 1 s) */
    const char *const *set_vars; /* --set NAME=VALUE placeholder values */
    size_t n_set_vars;
    const char *set_file;     /* --set-file: NAME=VALUE lines */
    const char *rewrite_file; /* --rewrite: rewrite rules */
    const char *label;        /* free text stored with every section */
    const char *command;      /* command line for the run meta (secrets masked); NULL: none */
    struct h2r_replay_ts_opts ts; /* TS2021 node sessions */
    int progress;             /* 1: progress line on stderr once a second */
    int quiet;                /* 1: no summary on stderr */
    uint32_t shard_index;     /* --shard I/N: this worker's 0-based index (docs/distributed.md) */
    uint32_t shard_count;     /* N; 0 or 1: the whole trace */
    int64_t start_at_ns;      /* --start-at: wall-clock t0 shared by the shards; 0: now */
};

struct h2r_replay_result {
    uint32_t sections;  /* targets replayed (section ends written) */
    uint64_t exchanges; /* results written, all sections */
    uint64_t errors;    /* results with a failure class */
    int interrupted;    /* 1: stopped by h2r_replay_request_stop() */
};

/* Fills opts with defaults (speed 1, timeout 5 s, connect timeout 3 s, 1 thread). */
void h2r_replay_opts_init(struct h2r_replay_opts *o);

/*
 * Replays the trace against every target, one after another, each as one
 * section of the run file. Failed requests are data, not errors: the call
 * still returns 0 when every server refused every connection.
 *
 * res may be NULL. Returns 0, H2R_ERR_ARG for an invalid option (bad URL,
 * speed, thread count, rewrite flags in a build without rewriting), or
 * another negative code when the replay could not run or its output could not
 * be written (unreadable trace, unresolved placeholder, unwritable run file,
 * failed --between command); errbuf says which. After an interruption or a
 * failed --between command, the run file is still closed cleanly.
 */
int h2r_replay_run(const struct h2r_replay_opts *o, struct h2r_replay_result *res, char *errbuf,
                   size_t errlen);

/* Asks a running replay to stop: in-flight requests become "cancelled", unsent ones
 * "skipped", and the section ends with interrupted = 1. Async-signal-safe. */
void h2r_replay_request_stop(void);

/* Parses a --speed value: a positive factor ("10", "0.5", "10x") or "max" (-> 0).
 * Returns 0 or H2R_ERR_ARG. */
int h2r_replay_parse_speed(const char *s, double *speed);

/* Checks a --target value ("[NAME=]URL"). Returns 0 or H2R_ERR_ARG with errbuf filled. */
int h2r_replay_check_target(const char *spec, char *errbuf, size_t errlen);

/* 1 when this build can rewrite requests (--rewrite, --set, --set-file), else 0. */
int h2r_replay_have_rewrite(void);

/* Parses --shard "I/N": 0-based index I < N, count N in 1..H2R_REPLAY_MAX_SHARDS.
 * Returns 0 or H2R_ERR_ARG with errbuf filled. */
int h2r_replay_parse_shard(const char *s, uint32_t *index, uint32_t *count, char *errbuf,
                           size_t errlen);

/* Parses --start-at: RFC 3339 with a zone ("2026-11-27T01:00:00Z"), "+DURATION" from
 * now_wall_ns, or Unix time in seconds ("1795741200", fraction allowed) or nanoseconds
 * (18+ digits), into wall-clock ns. Returns 0, or H2R_ERR_ARG with errbuf filled when it
 * does not parse or lies more than 5 s in the past or more than 24 h ahead. */
int h2r_replay_parse_start_at(const char *s, int64_t now_wall_ns, int64_t *at, char *errbuf,
                              size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
