/*
 * Database watching during a replay (`replay --db [NAME=]DSN`).
 *
 * While a section replays, a watcher thread samples the database behind its
 * target with the adapters of db.h (row counts, SQLite WAL and page figures,
 * PostgreSQL activity, locks and transaction counters) on its own read-only
 * connection, and queues the samples. The coordinator thread, the only
 * writer of the run file, drains the queue into db_sample records at its
 * 1 s sample tick and at the end of the section. The event loops never see
 * the database; the only shared state is one mutex-protected ring.
 *
 * --db values pair with targets by name: "NAME=DSN" belongs to the target
 * named NAME; a DSN without a name belongs to every target that has no
 * named one. Builds without the database adapters (no h2r_replay_db)
 * refuse --db.
 */
#ifndef H2R_RP_DBWATCH_H
#define H2R_RP_DBWATCH_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/replay.h"
#include "h2replay/run.h"
#include "rp_ack.h" /* the drain also writes the acknowledgements (both engines include us) */
#include "rp_url.h"

/* Shortest --db-interval (the adapters' sampling takes ~0.5 ms on SQLite, a few ms on PostgreSQL).
 */
#define RP_DBWATCH_MIN_INTERVAL_NS 10000000LL
/* Samples queued between two drains; past it the oldest are dropped (and counted). */
#define RP_DBWATCH_QUEUE 512

struct rp_dbwatch;

/* 1 when this build can watch databases (the adapters are linked in). */
int rp_dbwatch_available(void);

/*
 * Checks the --db values against the parsed targets before anything runs:
 * each is [NAME=]DSN with a known DSN scheme, a NAME names a target, no
 * target gets two, at most one has no name; and --db-interval. Returns 0 or
 * H2R_ERR_ARG with errbuf naming the value.
 */
int rp_dbwatch_check(const struct h2r_replay_opts *o, const struct rp_target *targets, size_t n,
                     char *errbuf, size_t errlen);

/* The DSN paired with the target named name, or NULL (no --db for it). */
const char *rp_dbwatch_dsn(const struct h2r_replay_opts *o, const char *name);

/*
 * Opens the database paired with target name (read-only, busy timeout) and
 * starts the watcher thread: one sample at once (before the load), then one
 * every interval, and a last one when stopped. *out is NULL, and 0 returned, when the target has
 * no database. Returns 0, H2R_ERR_IO (cannot open: the replay should not
 * run blind) or H2R_ERR_NOMEM, with errbuf filled.
 */
int rp_dbwatch_start(struct rp_dbwatch **out, const struct h2r_replay_opts *o, const char *name,
                     char *errbuf, size_t errlen);

/*
 * Writes the samples queued so far as db_sample records of section, their
 * times relative to t0 (CLOCK_MONOTONIC ns, the section's origin: the
 * baseline sample comes before it, so its time is negative), and the
 * acknowledgements queued so far (rp_ack.h) as ack records -- those also
 * when w is NULL (no --db). Once w is stopped (rp_dbwatch_stop), the drain
 * also checks the section's acknowledgements against the database
 * (rp_db_verify) and writes one verify record. Coordinator thread only.
 * Returns 0 or the run writer's error. Prints the first failed sample's
 * message, and a verify that found losses, on stderr unless quiet.
 */
int rp_dbwatch_drain(struct rp_dbwatch *w, struct h2r_run_writer *wr, uint32_t section, int64_t t0,
                     int quiet);

/* Takes the last sample and joins the thread (queued samples stay for a drain). NULL: no-op. */
void rp_dbwatch_stop(struct rp_dbwatch *w);

/* Stops if needed, closes the database and frees. NULL is a no-op. */
void rp_dbwatch_free(struct rp_dbwatch *w);

/*
 * Turns one adapter sample into the run file's named values (the names are
 * documented in docs/run-format.md): rows.*, sqlite.*, pg.*, db.took_ns.
 * names must hold RP_DBWATCH_MAX_VALUES entries of 96 bytes (wait-event
 * names are built there). Returns the number of values.
 */
#define RP_DBWATCH_MAX_VALUES 64
struct rp_db_sample;
size_t rp_dbwatch_values(const struct rp_db_sample *s, struct h2r_counter *out, char (*names)[96]);

#endif
