/*
 * Internals shared by the rw_*.c files: the compiled form of a ruleset
 * (rules, value templates, JSON selectors, conditions), a small string map
 * and the helpers the parser, the checker and the session all use. Nothing
 * here is part of the replay engine's API (that is rw_rules.h).
 */
#ifndef H2R_RW_INTERNAL_H
#define H2R_RW_INTERNAL_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "rw_rules.h"

#define RW_MAX_GROUPS 10        /* \0 .. \9 */
#define RW_JSON_BUDGET 1000000u /* node visits per selector evaluation */
#define RW_JSON_MAX_DEPTH 4096u /* selector recursion */
#define RW_LET_MAX_DEPTH 16     /* let referring to let ... */

/* ---- string map: NUL-free keys -> size_t, open addressing ---- */

struct rw_map_ent {
    char *key; /* owned, NUL-terminated; NULL = empty slot */
    size_t klen;
    size_t val;
};

struct rw_map {
    struct rw_map_ent *ents;
    size_t cap; /* power of two, or 0 */
    size_t n;
};

/* Looks key up. Returns 1 with *val set, or 0. */
int rw_map_get(const struct rw_map *m, const char *key, size_t klen, size_t *val);
/* Inserts or overwrites. Returns 0 or H2R_ERR_NOMEM. */
int rw_map_put(struct rw_map *m, const char *key, size_t klen, size_t val);
void rw_map_free(struct rw_map *m);

/* ---- growable byte buffer with a cap ---- */

struct rw_sb {
    char *p;
    size_t len;
    size_t cap;
    size_t max; /* hard cap */
    int failed; /* H2R_ERR_NOMEM or H2R_ERR_LIMIT once an append failed */
};

void rw_sb_init(struct rw_sb *b, size_t max);
void rw_sb_add(struct rw_sb *b, const void *p, size_t n);
void rw_sb_free(struct rw_sb *b);
/* Appends p[0..n) encoded as enc (enum rw_enc). */
void rw_sb_add_enc(struct rw_sb *b, const void *p, size_t n, int enc);

/* ---- value templates ---- */

enum rw_tp_kind {
    RW_TP_LIT,    /* text[off, off+len) */
    RW_TP_ORIG,   /* the value being replaced */
    RW_TP_UNIQUE, /* fresh run-unique token */
    RW_TP_RUN,    /* the seed as 16 hex digits */
    RW_TP_SEQ,    /* request number in the session */
    RW_TP_UUID,   /* fresh v4 UUID from the seeded PRNG */
    RW_TP_VAR,    /* variable named text[off, off+len) */
    RW_TP_GROUP   /* regex group `group` */
};

/* How an expanded part is encoded before it is appended. */
enum rw_enc {
    RW_ENC_NONE,
    RW_ENC_URL, /* percent-encode all but A-Z a-z 0-9 - . _ ~ */
    RW_ENC_JSON /* escape for the inside of a JSON string */
};

struct rw_tpart {
    int kind;
    int enc; /* enum rw_enc, from a `|url` or `|json` suffix */
    int group;
    size_t off;
    size_t len;
};

struct rw_tmpl {
    char *text; /* literal bytes and variable names, unescaped */
    struct rw_tpart *parts;
    size_t n_parts;
    int max_group; /* highest \N used, -1 none */
    int uses_orig;
};

/*
 * Compiles template source src[0..len) (escapes still in it). col is the
 * column of src[0], for messages. Returns 0, or H2R_ERR_FORMAT with *err_col
 * and a static message in *err_msg, or H2R_ERR_NOMEM.
 */
int rw_tmpl_compile(struct rw_tmpl *t, const char *src, size_t len, unsigned col, unsigned *err_col,
                    const char **err_msg);
void rw_tmpl_free(struct rw_tmpl *t);

/* ---- JSON selectors ---- */

enum rw_step_kind { RW_S_KEY, RW_S_INDEX, RW_S_ANY, RW_S_DEEP };

struct rw_step {
    int kind;
    char *key; /* RW_S_KEY, NUL-terminated */
    size_t key_len;
    long index; /* RW_S_INDEX; negative counts from the end */
};

struct rw_sel {
    struct rw_step *steps; /* 0 steps = the root */
    size_t n;
};

/*
 * Compiles selector src[0..len). Returns 0, or H2R_ERR_FORMAT with the
 * offset of the problem in *err_off and a static message, or H2R_ERR_NOMEM.
 */
int rw_sel_compile(struct rw_sel *sel, const char *src, size_t len, size_t *err_off,
                   const char **err_msg);
void rw_sel_free(struct rw_sel *sel);

/*
 * Called for each match: parent is the containing object/array (NULL for
 * the root), key or index says where, node is the value (NULL when an
 * absent final key is reported for want_absent). Return 0 to go on, 1 to
 * stop, or a negative error code.
 */
typedef int (*rw_sel_fn)(json_t *parent, const char *key, size_t key_len, size_t index,
                         json_t *node, void *arg);

/*
 * Walks root along sel, calling fn for every match (post-order under `**`,
 * so values a callback stores are never walked). With want_absent, a final
 * key missing from an object that exists is reported with node NULL. Returns
 * 0, the first negative fn result, or H2R_ERR_LIMIT when the visit budget or
 * depth cap is exceeded.
 */
int rw_sel_walk(const struct rw_sel *sel, json_t *root, int want_absent, rw_sel_fn fn, void *arg);

/* ---- rules ---- */

enum rw_rule_kind { RW_R_HEADER, RW_R_PATH, RW_R_QUERY, RW_R_JSON, RW_R_CAPTURE, RW_R_LET };
enum rw_op { RW_OP_REPLACE, RW_OP_SET, RW_OP_DELETE };
enum rw_src { RW_SRC_JSON, RW_SRC_HEADER };

struct rw_cond {
    char **methods; /* upper-case; NULL = any */
    size_t n_methods;
    regex_t path_re; /* matched against the captured path without its query */
    int has_path;
    int status_lo; /* capture only; 0 = any */
    int status_hi;
};

struct rw_rule {
    int kind; /* enum rw_rule_kind */
    int op;   /* enum rw_op */
    const char *origin;
    unsigned line;
    char *name; /* header / query / variable name, NUL-terminated */
    size_t name_len;
    char *hdr; /* capture from header: its name */
    size_t hdr_len;
    int src;    /* capture: enum rw_src */
    int raw;    /* json: the expanded value is JSON text */
    regex_t re; /* path: the rewrite regex; capture: the match regex */
    int has_re;
    struct rw_sel sel;
    struct rw_tmpl tmpl;
    struct rw_cond cond;
    size_t slot; /* capture / let: variable slot */
};

/* Per dynamic variable (captured or let). */
struct rw_slot_info {
    const char *name; /* the dyn map's key */
    size_t name_len;
    size_t let_rule;     /* index of its let rule, or SIZE_MAX */
    size_t capture_rule; /* index of its first capture rule, or SIZE_MAX */
};

struct rw_var {
    char *name;
    size_t name_len;
    char *value;
    size_t value_len;
};

struct rw_ruleset {
    struct rw_rule *rules;
    size_t n_rules;
    size_t cap_rules;
    char **origins;
    size_t n_origins;
    struct rw_var *vars; /* static: --set / --set-file */
    size_t n_vars;
    size_t cap_vars;
    struct rw_map var_map; /* name -> index in vars */
    struct rw_map dyn_map; /* name -> slot */
    struct rw_slot_info *slots;
    size_t n_slots;
    int has_capture;
};

/* Static variable by exact name, or NULL. */
const struct rw_var *rw_static_var(const struct rw_ruleset *rs, const char *name, size_t len);

/*
 * Value for placeholder NAME: the exact name, else NAME without a trailing
 * _<digits> suffix. Returns the variable or NULL.
 */
const struct rw_var *rw_placeholder_var(const struct rw_ruleset *rs, const char *name, size_t len);

/* ---- placeholders ---- */

/* One `$H2R{name}` (or its percent-encoded form `%24H2R%7Bname%7D`) found in a buffer. */
struct rw_ph {
    size_t start; /* offset of '$' or '%' */
    size_t end;   /* offset just past '}' or "%7D" */
    size_t name_off;
    size_t name_len;
};

/* Finds the first placeholder in p[from..len). Returns 1 with *ph set, or 0. */
int rw_ph_next(const uint8_t *p, size_t len, size_t from, struct rw_ph *ph);

/* ---- request matching ---- */

/* Facts of the captured request that conditions match against. */
struct rw_reqinfo {
    const uint8_t *method;
    size_t method_len;
    char *path; /* NUL-terminated copy of :path up to '?', "" when absent */
    size_t path_len;
};

/* Fills info from x. Returns 0 or H2R_ERR_NOMEM; free with rw_reqinfo_free(). */
int rw_reqinfo_init(struct rw_reqinfo *info, const struct h2r_exchange *x);
void rw_reqinfo_free(struct rw_reqinfo *info);

/*
 * True when rule r's method and path conditions hold for info (status is
 * not looked at). m receives the path regex groups when non-NULL.
 */
int rw_cond_match(const struct rw_rule *r, const struct rw_reqinfo *info, regmatch_t *m);

/* ASCII case-insensitive comparison of two byte strings of length n. */
int rw_memcaseeq(const void *a, const void *b, size_t n);

#endif
