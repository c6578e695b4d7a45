/*
 * Request rewriting for replay: placeholder filling, rewrite rules, per-run
 * unique values and values captured from earlier responses.
 *
 * A trace carries redacted requests (`$H2R{authkey_2}` placeholders) that
 * must be filled before they are sent, and requests that would collide when
 * replayed twice ("create user alice"). A ruleset (docs/rewrite-rules.md) is
 * parsed once: regexes, selectors and value templates are compiled up front
 * so nothing is parsed per request. A session holds the mutable state of one
 * target run: the unique-value counter, the seeded PRNG behind {{uuid}}, and
 * the variables captured from responses.
 *
 * Threading: a ruleset is read-only once sessions exist and may be shared by
 * sessions on different threads; a session belongs to one thread.
 */
#ifndef H2R_RW_RULES_H
#define H2R_RW_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/error.h"
#include "h2replay/trace.h"

/* Hard caps (bounded memory and time whatever the input). */
#define RW_MAX_RULES 10000u             /* statements per ruleset */
#define RW_MAX_LINE 8192u               /* bytes per rules line */
#define RW_MAX_FILE ((size_t)4 << 20)   /* bytes per rules or vars file */
#define RW_MAX_VALUE ((size_t)64 << 10) /* a variable or an expanded header/path value */
#define RW_MAX_BODY ((size_t)16 << 20)  /* request/response body that is rewritten or parsed */
#define RW_MAX_NAME 256u                /* variable / placeholder name */
#define RW_MAX_VARS 100000u             /* --set / --set-file variables */
#define RW_MAX_HDRS 2048u               /* headers in a rewritten request */

struct rw_ruleset;
struct rw_session;

/*
 * A rewritten request. hdrs lists pseudo-headers first, then regular headers.
 * Unchanged names, values and bodies are borrowed from the exchange passed
 * to rw_apply(): the exchange must stay valid until rw_request_release().
 */
struct rw_request {
    const struct h2r_hdr *hdrs;
    size_t n_hdrs;
    const uint8_t *body;
    size_t body_len;
};

/* Per-session counters, for the run summary. */
struct rw_stats {
    uint64_t requests;       /* successful rw_apply() calls */
    uint64_t placeholders;   /* placeholders filled */
    uint64_t rewrites;       /* rule applications that changed a value */
    uint64_t json_skipped;   /* json rules skipped: body empty, too large or not JSON */
    uint64_t captured;       /* values stored by capture rules */
    uint64_t capture_missed; /* capture rules whose request matched but found no value */
};

/* Creates an empty ruleset. Returns 0 or H2R_ERR_NOMEM (*out is then NULL). */
int rw_ruleset_new(struct rw_ruleset **out);

/*
 * Reads and parses the rules file PATH (--rewrite FILE). Returns 0,
 * H2R_ERR_IO (cannot read), H2R_ERR_LIMIT (file larger than RW_MAX_FILE) or
 * any error of rw_ruleset_parse(); errbuf then says why.
 */
int rw_ruleset_load(struct rw_ruleset *rs, const char *path, char *errbuf, size_t errlen);

/*
 * Parses rules text (docs/rewrite-rules.md) and appends its statements to
 * rs. origin names the text in messages ("rules.txt"). Returns 0,
 * H2R_ERR_FORMAT with "origin:line:column: why" in errbuf, H2R_ERR_LIMIT
 * (too many rules, line too long) or H2R_ERR_NOMEM. On error no statement of
 * this text is kept; statements of earlier calls are.
 */
int rw_ruleset_parse(struct rw_ruleset *rs, const char *text, size_t len, const char *origin,
                     char *errbuf, size_t errlen);

/*
 * Sets a static variable from "NAME=VALUE" (--set). VALUE replaces the
 * placeholder text only; a later set of the same NAME wins. Returns 0,
 * H2R_ERR_ARG (no '=', empty or too long name, value over RW_MAX_VALUE),
 * H2R_ERR_LIMIT (more than RW_MAX_VARS variables) or H2R_ERR_NOMEM.
 */
int rw_ruleset_set_var(struct rw_ruleset *rs, const char *name_eq_value, char *errbuf,
                       size_t errlen);

/*
 * Reads NAME=VALUE lines from PATH (--set-file). Blank lines and lines whose
 * first non-blank byte is '#' are skipped; VALUE is the rest of the line
 * verbatim (a trailing CR is dropped). Returns 0, H2R_ERR_IO, or the error of
 * rw_ruleset_set_var() with "path:line: " in front of the message.
 */
int rw_ruleset_load_vars(struct rw_ruleset *rs, const char *path, char *errbuf, size_t errlen);

/* Number of statements parsed so far. */
size_t rw_ruleset_count(const struct rw_ruleset *rs);

/*
 * Checks, before anything is sent, that rw_apply() can fill exchange x:
 * every placeholder in its request headers and body has a value (exact name,
 * or the name without its _N suffix), and every {{var:NAME}} used by a rule
 * that matches x is defined by --set, a let or a capture rule. Returns 0, or
 * H2R_ERR_ARG naming the placeholder or variable, the exchange id and where
 * (header name or body).
 */
int rw_check_exchange(const struct rw_ruleset *rs, const struct h2r_exchange *x, char *errbuf,
                      size_t errlen);

/*
 * Creates the state of one target run. unique_seed drives {{run}},
 * {{unique}} and {{uuid}}: the same seed and the same sequence of calls give
 * the same values. rs must outlive the session. Returns NULL when out of
 * memory.
 */
struct rw_session *rw_session_new(const struct rw_ruleset *rs, uint64_t unique_seed);

/*
 * Builds the request to send for exchange x: placeholders filled, rules
 * applied in file order, content-length made to match the body, pseudo-headers
 * first. On success out must be given back with rw_request_release(). Returns
 * 0, H2R_ERR_ARG (a variable is unknown or not captured yet, a value cannot
 * go where it is put — CR/LF/NUL in a header, invalid UTF-8 or JSON — with
 * the rule's file:line in errbuf), H2R_ERR_LIMIT or H2R_ERR_NOMEM. On error
 * *out is zeroed and needs no release.
 */
int rw_apply(struct rw_session *s, const struct h2r_exchange *x, struct rw_request *out,
             char *errbuf, size_t errlen);

/* Frees what rw_apply() allocated for req and zeroes it. A zeroed req is a no-op. */
void rw_request_release(struct rw_session *s, struct rw_request *req);

/*
 * True (1) when a capture rule matches x's request, so the engine must keep
 * the response headers and body for rw_observe_response(); 0 otherwise.
 */
int rw_wants_response(const struct rw_session *s, const struct h2r_exchange *x);

/*
 * Runs the capture rules matching x's request over the response received
 * for it (status, headers, body; body borrowed for the call). Captured
 * values replace earlier values of the same variable. Misses are counted in
 * the stats, never reported as errors.
 */
void rw_observe_response(struct rw_session *s, const struct h2r_exchange *x, int status,
                         const struct h2r_hdr *hdrs, size_t n, const uint8_t *body, size_t len);

/*
 * Current value of variable NAME as {{var:NAME}} would see it now (captured
 * or let value, else --set value), without evaluating a pending let. Returns
 * a pointer valid until the next call on s, with *len set, or NULL.
 */
const char *rw_session_var(const struct rw_session *s, const char *name, size_t *len);

/* Copies the session counters into *out. */
void rw_session_stats(const struct rw_session *s, struct rw_stats *out);

/* Frees a session. NULL is a no-op. */
void rw_session_free(struct rw_session *s);

/* Frees a ruleset (after its sessions). NULL is a no-op. */
void rw_ruleset_free(struct rw_ruleset *rs);

#endif
