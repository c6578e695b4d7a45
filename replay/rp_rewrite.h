/*
 * The replay engine's side of request rewriting.
 *
 * Wraps the rewrite module (rw_rules.h, built when the target h2r_replay_rw
 * exists, H2R_HAVE_RW) behind calls that take plan indices, and serializes
 * every call into the one rewrite session of a target run with a mutex:
 * values captured from a response on one connection may be needed by a
 * request on another connection, which another loop thread may own. Without
 * the module, requests go out as captured and a trace that still holds
 * $H2R{...} placeholders is refused before anything is sent.
 */
#ifndef H2R_RP_REWRITE_H
#define H2R_RP_REWRITE_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/replay.h"
#include "h2replay/trace.h"
#include "rp_schedule.h"

struct rp_rewrite;
struct rp_capture;

/* 1 when the rewrite module is built in. */
int rp_rewrite_available(void);

/*
 * Sets up rewriting from --rewrite / --set / --set-file. *out is NULL when no
 * rewriting is needed (no such flag and no placeholder in the plan). Returns
 * 0, H2R_ERR_ARG for flags the build cannot honour or bad values, or the
 * module's error (unreadable or invalid rules file) with errbuf filled.
 */
int rp_rewrite_new(struct rp_rewrite **out, const struct h2r_replay_opts *o,
                   const struct rp_plan *plan, char *errbuf, size_t errlen);

/*
 * Checks before anything is sent that every exchange can be built: each
 * placeholder has a value. Without the module, any placeholder is an error.
 * Returns 0 or a negative code with errbuf naming the exchange and placeholder.
 */
int rp_rewrite_check(struct rp_rewrite *rw, const struct rp_plan *plan, char *errbuf,
                     size_t errlen);

/* Starts the session of one target run (fresh captured values, unique seed). */
int rp_rewrite_begin(struct rp_rewrite *rw, uint64_t seed);
/* Ends it. */
void rp_rewrite_end(struct rp_rewrite *rw);

/*
 * The request to send for plan exchange x: headers (pseudo-headers first) and
 * body, valid until rp_rewrite_release(rw, *handle). Returns 0, or a negative
 * code with errbuf saying why (e.g. a value to capture never arrived).
 */
int rp_rewrite_apply(struct rp_rewrite *rw, const struct rp_plan *plan, uint32_t x, void **handle,
                     const struct h2r_hdr **hdrs, size_t *n_hdrs, const uint8_t **body,
                     size_t *body_len, char *errbuf, size_t errlen);

/* Releases what rp_rewrite_apply returned. NULL handle is a no-op. */
void rp_rewrite_release(struct rp_rewrite *rw, void *handle);

/* 1 when the response to x must be kept for capture rules. */
int rp_rewrite_wants_response(struct rp_rewrite *rw, const struct rp_plan *plan, uint32_t x);

/* Hands a finished response to the capture rules. */
void rp_rewrite_observe(struct rp_rewrite *rw, const struct rp_plan *plan, uint32_t x, int status,
                        const struct rp_capture *cap);

/* Frees everything. NULL is a no-op. */
void rp_rewrite_free(struct rp_rewrite *rw);

#endif
