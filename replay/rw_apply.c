/*
 * Rewrite sessions: one per target run. rw_apply() turns a captured request
 * into the one to send (placeholders filled, rules run in file order,
 * content-length matched to the body); rw_observe_response() feeds capture
 * rules, whose values later requests use through {{var:NAME}}.
 *
 * Per-run values are deterministic: {{run}} is the seed, {{unique}} a
 * bijective mix of the seed and a counter (so never repeats within a run),
 * {{uuid}} comes from xoshiro256** seeded with splitmix64(seed). The same
 * seed and the same call sequence give the same request bytes, which makes
 * replays reproducible and failures debuggable.
 *
 * Memory: a rewritten request borrows what did not change from the
 * exchange; every buffer made for it is listed in a small header placed in
 * front of the header array, which rw_request_release() walks and frees.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rw_internal.h"

#define GOLDEN 0x9e3779b97f4a7c15ull
#define JSON_DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY)
#define JSON_LOAD_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)

struct slot_val {
    char *v;
    size_t len;
    int set;
    int busy; /* a let being evaluated: a reference back to it is a cycle */
};

struct rw_session {
    const struct rw_ruleset *rs;
    uint64_t seed;
    uint64_t unique_ctr;
    uint64_t seq;
    uint64_t rng[4];
    struct slot_val *vals; /* one per dynamic variable slot of rs */
    size_t n_vals;
    struct rw_stats stats;
};

/* Buffers owned by one rewritten request. */
struct reqmem {
    void **v;
    size_t n;
    size_t cap;
};

union reqhead {
    struct reqmem mem;
    max_align_t align;
};

/* A working header: borrowed from the exchange or the rules, or owned by mem. */
struct wh {
    const uint8_t *name;
    size_t name_len;
    const uint8_t *value;
    size_t value_len;
    int deleted;
};

enum body_kind { BODY_OTHER, BODY_JSON, BODY_FORM };

struct actx {
    struct rw_session *s;
    const struct rw_ruleset *rs;
    const struct h2r_exchange *x;
    char *errbuf;
    size_t errlen;
    struct wh *h;
    size_t n;
    size_t cap;
    const uint8_t *body;
    size_t body_len;
    int body_kind;
    json_t *json;
    int json_state; /* 0 not parsed yet, 1 parsed, -1 not JSON */
    int json_dirty;
    struct rw_reqinfo info;
    struct reqmem mem;
};

/* ---- deterministic per-run values ---- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void fmt_uuid(uint64_t s[4], char out[37])
{
    uint64_t hi = rng_next(s), lo = rng_next(s);
    hi = (hi & ~0xf000ull) | 0x4000ull;       /* version 4 */
    lo = (lo & ~(3ull << 62)) | (2ull << 62); /* RFC 4122 variant */
    snprintf(out, 37, "%08" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%012" PRIx64,
             hi >> 32, (hi >> 16) & 0xffff, hi & 0xffff, lo >> 48, lo & (uint64_t)0xffffffffffff);
}

/* ---- request memory ---- */

static int mem_take(struct reqmem *m, void *p)
{
    if (m->n == m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 8;
        void **nv = realloc(m->v, ncap * sizeof(*nv));
        if (!nv)
            return H2R_ERR_NOMEM;
        m->v = nv;
        m->cap = ncap;
    }
    m->v[m->n++] = p;
    return 0;
}

static void mem_free(struct reqmem *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->v[i]);
    free(m->v);
    memset(m, 0, sizeof(*m));
}

/* Hands an sb's buffer to the request; *p and *len describe it afterwards. */
static int take_sb(struct actx *c, struct rw_sb *b, const uint8_t **p, size_t *len)
{
    if (!b->p) {
        *p = (const uint8_t *)"";
        *len = 0;
        return 0;
    }
    if (mem_take(&c->mem, b->p) != 0) {
        rw_sb_free(b);
        return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_NOMEM, "out of memory");
    }
    *p = (const uint8_t *)b->p;
    *len = b->len;
    b->p = NULL;
    return 0;
}

/* ---- template expansion ---- */

struct xp {
    struct rw_session *s;
    const struct rw_rule *rule;
    const struct h2r_exchange *x; /* NULL outside a request */
    char *errbuf;
    size_t errlen;
};

static int xp_err(const struct xp *e, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int xp_err(const struct xp *e, int err, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (e->x)
        return h2r_seterr(e->errbuf, e->errlen, err, "exchange %" PRIu64 ": %s:%u: %s", e->x->id,
                          e->rule->origin, e->rule->line, msg);
    return h2r_seterr(e->errbuf, e->errlen, err, "%s:%u: %s", e->rule->origin, e->rule->line, msg);
}

static int expand(const struct xp *e, const struct rw_tmpl *t, const uint8_t *orig, size_t orig_len,
                  const char *subj, const regmatch_t *m, struct rw_sb *out, int depth);

/* Value of {{var:name}} now; evaluates a pending let once per session. */
static int var_value(const struct xp *e, const char *name, size_t len, const char **v, size_t *vlen,
                     int depth)
{
    struct rw_session *s = e->s;
    const struct rw_ruleset *rs = s->rs;
    size_t slot = 0;
    int dyn = rw_map_get(&rs->dyn_map, name, len, &slot) && slot < s->n_vals;

    if (dyn && s->vals[slot].set) {
        *v = s->vals[slot].v;
        *vlen = s->vals[slot].len;
        return 0;
    }
    const struct rw_var *sv = rw_static_var(rs, name, len);
    if (sv) {
        *v = sv->value;
        *vlen = sv->value_len;
        return 0;
    }
    if (!dyn)
        return xp_err(e, H2R_ERR_ARG, "{{var:%.*s}}: no --set, let or capture defines it", (int)len,
                      name);
    const struct rw_slot_info *si = &rs->slots[slot];
    if (si->let_rule == SIZE_MAX) {
        const struct rw_rule *cr = &rs->rules[si->capture_rule];
        return xp_err(e, H2R_ERR_ARG, "{{var:%.*s}} is not captured yet (capture at %s:%u)",
                      (int)len, name, cr->origin, cr->line);
    }
    if (s->vals[slot].busy || depth >= RW_LET_MAX_DEPTH)
        return xp_err(e, H2R_ERR_ARG, "{{var:%.*s}}: let refers back to itself", (int)len, name);

    const struct rw_rule *lr = &rs->rules[si->let_rule];
    struct xp le = {s, lr, e->x, e->errbuf, e->errlen};
    struct rw_sb b;
    rw_sb_init(&b, RW_MAX_VALUE);
    s->vals[slot].busy = 1;
    int rc = expand(&le, &lr->tmpl, NULL, 0, NULL, NULL, &b, depth + 1);
    s->vals[slot].busy = 0;
    if (rc != 0) {
        rw_sb_free(&b);
        return rc;
    }
    if (b.failed) {
        rw_sb_free(&b);
        return xp_err(&le, b.failed, "let value longer than %zu bytes", RW_MAX_VALUE);
    }
    free(s->vals[slot].v);
    s->vals[slot].v = b.p ? b.p : strdup("");
    s->vals[slot].len = b.len;
    s->vals[slot].set = s->vals[slot].v != NULL;
    if (!s->vals[slot].v)
        return xp_err(e, H2R_ERR_NOMEM, "out of memory");
    *v = s->vals[slot].v;
    *vlen = s->vals[slot].len;
    return 0;
}

static int expand(const struct xp *e, const struct rw_tmpl *t, const uint8_t *orig, size_t orig_len,
                  const char *subj, const regmatch_t *m, struct rw_sb *out, int depth)
{
    struct rw_session *s = e->s;
    char tmp[40];
    for (size_t i = 0; i < t->n_parts; i++) {
        const struct rw_tpart *p = &t->parts[i];
        const char *v = tmp;
        size_t vlen = 0;
        switch (p->kind) {
        case RW_TP_LIT:
            v = t->text + p->off;
            vlen = p->len;
            break;
        case RW_TP_ORIG:
            v = orig ? (const char *)orig : "";
            vlen = orig ? orig_len : 0;
            break;
        case RW_TP_UNIQUE:
            s->unique_ctr++;
            vlen = (size_t)snprintf(tmp, sizeof(tmp), "%016" PRIx64,
                                    mix64(s->seed + GOLDEN * s->unique_ctr));
            break;
        case RW_TP_RUN:
            vlen = (size_t)snprintf(tmp, sizeof(tmp), "%016" PRIx64, s->seed);
            break;
        case RW_TP_SEQ:
            vlen = (size_t)snprintf(tmp, sizeof(tmp), "%" PRIu64, s->seq);
            break;
        case RW_TP_UUID:
            fmt_uuid(s->rng, tmp);
            vlen = 36;
            break;
        case RW_TP_VAR: {
            int rc = var_value(e, t->text + p->off, p->len, &v, &vlen, depth);
            if (rc != 0)
                return rc;
            break;
        }
        case RW_TP_GROUP:
            if (subj && m && m[p->group].rm_so >= 0) {
                v = subj + m[p->group].rm_so;
                vlen = (size_t)(m[p->group].rm_eo - m[p->group].rm_so);
            }
            break;
        default:
            break;
        }
        rw_sb_add_enc(out, v, vlen, p->enc);
    }
    if (out->failed == H2R_ERR_LIMIT)
        return xp_err(e, H2R_ERR_LIMIT, "value longer than %zu bytes", out->max);
    if (out->failed)
        return xp_err(e, out->failed, "out of memory");
    return 0;
}

/* ---- session ---- */

struct rw_session *rw_session_new(const struct rw_ruleset *rs, uint64_t unique_seed)
{
    struct rw_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->rs = rs;
    s->seed = unique_seed;
    s->n_vals = rs->n_slots;
    if (s->n_vals) {
        s->vals = calloc(s->n_vals, sizeof(*s->vals));
        if (!s->vals) {
            free(s);
            return NULL;
        }
    }
    uint64_t z = unique_seed;
    for (int i = 0; i < 4; i++) {
        z += GOLDEN;
        s->rng[i] = mix64(z);
    }
    return s;
}

void rw_session_free(struct rw_session *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_vals; i++)
        free(s->vals[i].v);
    free(s->vals);
    free(s);
}

void rw_session_stats(const struct rw_session *s, struct rw_stats *out)
{
    *out = s->stats;
}

const char *rw_session_var(const struct rw_session *s, const char *name, size_t *len)
{
    size_t slot, n = strlen(name);
    if (rw_map_get(&s->rs->dyn_map, name, n, &slot) && slot < s->n_vals && s->vals[slot].set) {
        *len = s->vals[slot].len;
        return s->vals[slot].v;
    }
    const struct rw_var *v = rw_static_var(s->rs, name, n);
    if (!v)
        return NULL;
    *len = v->value_len;
    return v->value;
}

/* ---- rw_apply ---- */

static int hname_is(const struct wh *h, const char *name, size_t len)
{
    return !h->deleted && h->name_len == len && memcmp(h->name, name, len) == 0;
}

static struct wh *find_hdr(struct actx *c, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < c->n; i++) {
        if (hname_is(&c->h[i], name, len))
            return &c->h[i];
    }
    return NULL;
}

static int push_hdr(struct actx *c, const uint8_t *name, size_t name_len, const uint8_t *value,
                    size_t value_len)
{
    if (c->n >= RW_MAX_HDRS)
        return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_LIMIT,
                          "exchange %" PRIu64 ": more than %u headers", c->x->id, RW_MAX_HDRS);
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16;
        struct wh *nh = realloc(c->h, ncap * sizeof(*nh));
        if (!nh)
            return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_NOMEM, "out of memory");
        c->h = nh;
        c->cap = ncap;
    }
    struct wh *h = &c->h[c->n++];
    h->name = name;
    h->name_len = name_len;
    h->value = value;
    h->value_len = value_len;
    h->deleted = 0;
    return 0;
}

/* Header values go on the wire as they are: refuse what HTTP/2 forbids (RFC 9113 8.2.1). */
static int bad_hdr_bytes(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\0' || p[i] == '\r' || p[i] == '\n')
            return 1;
    }
    return 0;
}

/*
 * Fills the placeholders of p[0..len) into a new buffer (or leaves *out
 * NULL when there are none). enc: how values are encoded for the place.
 */
static int fill_placeholders(struct actx *c, const uint8_t *p, size_t len, int enc, size_t max,
                             const char *where, const uint8_t **out, size_t *out_len)
{
    struct rw_ph ph;
    size_t from = 0;
    struct rw_sb b;

    *out = NULL;
    if (!rw_ph_next(p, len, 0, &ph))
        return 0;
    if (len > max)
        return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_LIMIT,
                          "exchange %" PRIu64 ": %s holds placeholders but is larger than %zu "
                          "bytes",
                          c->x->id, where, max);
    rw_sb_init(&b, max);
    do {
        const char *name = (const char *)p + ph.name_off;
        const struct rw_var *v = rw_placeholder_var(c->rs, name, ph.name_len);
        if (!v) {
            rw_sb_free(&b);
            return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_ARG,
                              "exchange %" PRIu64 ": placeholder $H2R{%.*s} in %s has no value",
                              c->x->id, (int)ph.name_len, name, where);
        }
        rw_sb_add(&b, p + from, ph.start - from);
        rw_sb_add_enc(&b, v->value, v->value_len, enc);
        c->s->stats.placeholders++;
        from = ph.end;
    } while (rw_ph_next(p, len, from, &ph));
    rw_sb_add(&b, p + from, len - from);
    if (b.failed) {
        rw_sb_free(&b);
        return h2r_seterr(c->errbuf, c->errlen, b.failed,
                          "exchange %" PRIu64 ": %s larger than %zu bytes once filled", c->x->id,
                          where, max);
    }
    return take_sb(c, &b, out, out_len);
}

static int body_kind_of(const struct h2r_exchange *x)
{
    const struct h2r_hdr *ct = h2r_hdr_find(x->req_hdrs, x->n_req_hdrs, "content-type");
    if (!ct)
        return BODY_OTHER;
    static const char form[] = "application/x-www-form-urlencoded";
    if (ct->value_len >= sizeof(form) - 1 && rw_memcaseeq(ct->value, form, sizeof(form) - 1))
        return BODY_FORM;
    for (size_t i = 0; i + 4 <= ct->value_len && ct->value[i] != ';'; i++) {
        if (rw_memcaseeq(ct->value + i, "json", 4))
            return BODY_JSON;
    }
    return BODY_OTHER;
}

static int fill_all(struct actx *c)
{
    char where[320];
    for (size_t i = 0; i < c->n; i++) {
        struct wh *h = &c->h[i];
        int is_path = h->name_len == 5 && memcmp(h->name, ":path", 5) == 0;
        const uint8_t *nv;
        size_t nlen;
        snprintf(where, sizeof(where), "header %.*s", (int)(h->name_len > 256 ? 256 : h->name_len),
                 (const char *)h->name);
        int rc = fill_placeholders(c, h->value, h->value_len, is_path ? RW_ENC_URL : RW_ENC_NONE,
                                   RW_MAX_VALUE, where, &nv, &nlen);
        if (rc != 0)
            return rc;
        if (!nv)
            continue;
        if (bad_hdr_bytes(nv, nlen))
            return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_ARG,
                              "exchange %" PRIu64 ": a value filled into %s holds CR, LF or NUL",
                              c->x->id, where);
        h->value = nv;
        h->value_len = nlen;
    }
    int enc = c->body_kind == BODY_JSON   ? RW_ENC_JSON
              : c->body_kind == BODY_FORM ? RW_ENC_URL
                                          : RW_ENC_NONE;
    const uint8_t *nb;
    size_t nblen;
    int rc = fill_placeholders(c, c->body, c->body_len, enc, RW_MAX_BODY, "the request body", &nb,
                               &nblen);
    if (rc == 0 && nb) {
        c->body = nb;
        c->body_len = nblen;
    }
    return rc;
}

/* Expands r's template into a header-safe value owned by the request. */
static int expand_hdr_value(struct actx *c, const struct rw_rule *r, const uint8_t *orig,
                            size_t orig_len, const char *subj, const regmatch_t *m,
                            const uint8_t **out, size_t *out_len)
{
    struct xp e = {c->s, r, c->x, c->errbuf, c->errlen};
    struct rw_sb b;
    rw_sb_init(&b, RW_MAX_VALUE);
    int rc = expand(&e, &r->tmpl, orig, orig_len, subj, m, &b, 0);
    if (rc != 0) {
        rw_sb_free(&b);
        return rc;
    }
    if (bad_hdr_bytes((const uint8_t *)b.p, b.len)) {
        rw_sb_free(&b);
        return xp_err(&e, H2R_ERR_ARG, "value holds CR, LF or NUL");
    }
    return take_sb(c, &b, out, out_len);
}

static int apply_header(struct actx *c, const struct rw_rule *r, const regmatch_t *m)
{
    int found = 0;
    for (size_t i = 0; i < c->n; i++) {
        struct wh *h = &c->h[i];
        if (!hname_is(h, r->name, r->name_len))
            continue;
        found = 1;
        c->s->stats.rewrites++;
        if (r->op == RW_OP_DELETE) {
            h->deleted = 1;
            continue;
        }
        int rc = expand_hdr_value(c, r, h->value, h->value_len, c->info.path, m, &h->value,
                                  &h->value_len);
        if (rc != 0)
            return rc;
    }
    if (found || r->op != RW_OP_SET)
        return 0;
    const uint8_t *v;
    size_t vlen;
    int rc = expand_hdr_value(c, r, NULL, 0, c->info.path, m, &v, &vlen);
    if (rc == 0)
        rc = push_hdr(c, (const uint8_t *)r->name, r->name_len, v, vlen);
    if (rc == 0)
        c->s->stats.rewrites++;
    return rc;
}

/* Sets :path to the bytes of b (taken by the request). */
static int set_path(struct actx *c, struct wh *ph, const struct rw_rule *r, struct rw_sb *b)
{
    struct xp e = {c->s, r, c->x, c->errbuf, c->errlen};
    if (b->failed) {
        int err = b->failed;
        rw_sb_free(b);
        return xp_err(&e, err, "path longer than %zu bytes", RW_MAX_VALUE);
    }
    if (bad_hdr_bytes((const uint8_t *)b->p, b->len)) {
        rw_sb_free(b);
        return xp_err(&e, H2R_ERR_ARG, "new :path holds CR, LF or NUL");
    }
    c->s->stats.rewrites++;
    return take_sb(c, b, &ph->value, &ph->value_len);
}

static int apply_path(struct actx *c, const struct rw_rule *r)
{
    struct wh *ph = find_hdr(c, ":path");
    regmatch_t m[RW_MAX_GROUPS];
    int rc = 0;
    if (!ph)
        return 0;
    size_t plen = 0;
    while (plen < ph->value_len && ph->value[plen] != '?')
        plen++;
    char *subj = malloc(plen + 1);
    if (!subj)
        return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_NOMEM, "out of memory");
    memcpy(subj, ph->value, plen);
    subj[plen] = '\0';
    if (regexec(&r->re, subj, RW_MAX_GROUPS, m, 0) != 0)
        goto out;

    struct xp e = {c->s, r, c->x, c->errbuf, c->errlen};
    struct rw_sb b;
    rw_sb_init(&b, RW_MAX_VALUE);
    rw_sb_add(&b, subj, (size_t)m[0].rm_so);
    rc = expand(&e, &r->tmpl, (const uint8_t *)subj + m[0].rm_so, (size_t)(m[0].rm_eo - m[0].rm_so),
                subj, m, &b, 0);
    if (rc != 0) {
        rw_sb_free(&b);
        goto out;
    }
    rw_sb_add(&b, subj + m[0].rm_eo, plen - (size_t)m[0].rm_eo);
    rw_sb_add(&b, ph->value + plen, ph->value_len - plen);
    rc = set_path(c, ph, r, &b);
out:
    free(subj);
    return rc;
}

static int apply_query(struct actx *c, const struct rw_rule *r, const regmatch_t *m)
{
    struct wh *ph = find_hdr(c, ":path");
    if (!ph)
        return 0;
    const uint8_t *p = ph->value;
    size_t len = ph->value_len;
    size_t qpos = 0;
    while (qpos < len && p[qpos] != '?')
        qpos++;
    int has_q = qpos < len;
    size_t q = has_q ? qpos + 1 : len;

    struct xp e = {c->s, r, c->x, c->errbuf, c->errlen};
    struct rw_sb nq, val;
    int rc = 0, found = 0, emitted = 0;
    rw_sb_init(&nq, RW_MAX_VALUE);
    rw_sb_init(&val, RW_MAX_VALUE);

    size_t start = q;
    while (has_q && q < len && start <= len) {
        size_t end = start;
        while (end < len && p[end] != '&')
            end++;
        size_t keq = start;
        while (keq < end && p[keq] != '=')
            keq++;
        int hit = keq - start == r->name_len && memcmp(p + start, r->name, r->name_len) == 0;
        if (hit)
            found = 1;
        if (!(hit && r->op == RW_OP_DELETE)) {
            if (emitted)
                rw_sb_add(&nq, "&", 1);
            emitted++;
            if (hit) {
                size_t vs = keq < end ? keq + 1 : end;
                val.len = 0;
                rc = expand(&e, &r->tmpl, p + vs, end - vs, c->info.path, m, &val, 0);
                if (rc != 0)
                    goto out;
                rw_sb_add(&nq, r->name, r->name_len);
                rw_sb_add(&nq, "=", 1);
                rw_sb_add(&nq, val.p, val.len);
            } else {
                rw_sb_add(&nq, p + start, end - start);
            }
        }
        start = end + 1;
    }
    if (!found && r->op == RW_OP_SET) {
        rc = expand(&e, &r->tmpl, NULL, 0, c->info.path, m, &val, 0);
        if (rc != 0)
            goto out;
        if (emitted)
            rw_sb_add(&nq, "&", 1);
        emitted++;
        rw_sb_add(&nq, r->name, r->name_len);
        rw_sb_add(&nq, "=", 1);
        rw_sb_add(&nq, val.p, val.len);
        found = 1;
    }
    if (!found)
        goto out;
    struct rw_sb np;
    rw_sb_init(&np, RW_MAX_VALUE);
    rw_sb_add(&np, p, qpos);
    if (emitted) {
        rw_sb_add(&np, "?", 1);
        rw_sb_add(&np, nq.p, nq.len);
    }
    if (nq.failed && !np.failed)
        np.failed = nq.failed;
    rc = set_path(c, ph, r, &np);
out:
    rw_sb_free(&nq);
    rw_sb_free(&val);
    return rc;
}

/* Text of a JSON value for {{orig}} and captures: string contents, else compact JSON. */
static int json_text(json_t *node, char **buf, const char **p, size_t *len)
{
    *buf = NULL;
    if (!node) {
        *p = "";
        *len = 0;
        return 0;
    }
    if (json_is_string(node)) {
        *p = json_string_value(node);
        *len = json_string_length(node);
        return 0;
    }
    size_t n = json_dumpb(node, NULL, 0, JSON_DUMP_FLAGS);
    if (n == 0 || n > RW_MAX_VALUE)
        return H2R_ERR_LIMIT;
    *buf = malloc(n);
    if (!*buf)
        return H2R_ERR_NOMEM;
    *len = json_dumpb(node, *buf, n, JSON_DUMP_FLAGS);
    *p = *buf;
    return 0;
}

struct jset {
    struct actx *c;
    const struct rw_rule *r;
    const regmatch_t *m; /* groups of the path condition */
};

static int json_set_cb(json_t *parent, const char *key, size_t key_len, size_t index, json_t *node,
                       void *arg)
{
    struct jset *j = arg;
    struct actx *c = j->c;
    const struct rw_rule *r = j->r;
    struct xp e = {c->s, r, c->x, c->errbuf, c->errlen};

    if (r->op == RW_OP_DELETE) {
        if (!node)
            return 0;
        if (json_is_object(parent))
            json_object_deln(parent, key, key_len);
        else
            json_array_remove(parent, index);
        c->json_dirty = 1;
        c->s->stats.rewrites++;
        return 0;
    }

    char *obuf;
    const char *orig;
    size_t olen;
    int rc = json_text(node, &obuf, &orig, &olen);
    if (rc != 0)
        return xp_err(&e, rc, "original value too large for {{orig}}");
    struct rw_sb b;
    rw_sb_init(&b, RW_MAX_VALUE);
    rc = expand(&e, &r->tmpl, (const uint8_t *)orig, olen, c->info.path, j->m, &b, 0);
    free(obuf);
    if (rc != 0)
        goto out;
    json_t *nv;
    if (r->raw) {
        json_error_t jerr;
        nv = json_loadb(b.p ? b.p : "", b.len, JSON_LOAD_FLAGS, &jerr);
        if (!nv) {
            rc = xp_err(&e, H2R_ERR_ARG, "raw value is not JSON: %s", jerr.text);
            goto out;
        }
    } else {
        nv = json_stringn(b.p ? b.p : "", b.len);
        if (!nv) {
            rc = xp_err(&e, H2R_ERR_ARG, "value is not valid UTF-8, cannot be a JSON string");
            goto out;
        }
    }
    if (!parent) {
        json_decref(c->json);
        c->json = nv;
    } else if (json_is_object(parent)) {
        rc = json_object_setn_new(parent, key, key_len, nv) == 0 ? 0 : H2R_ERR_NOMEM;
    } else {
        rc = json_array_set_new(parent, index, nv) == 0 ? 0 : H2R_ERR_NOMEM;
    }
    if (rc != 0) {
        rc = xp_err(&e, rc, "out of memory");
        goto out;
    }
    c->json_dirty = 1;
    c->s->stats.rewrites++;
out:
    rw_sb_free(&b);
    return rc;
}

static int apply_json(struct actx *c, const struct rw_rule *r, const regmatch_t *m)
{
    if (c->json_state == 0) {
        c->json_state = -1;
        if (c->body_len > 0 && c->body_len <= RW_MAX_BODY) {
            json_error_t jerr;
            c->json = json_loadb((const char *)c->body, c->body_len, JSON_LOAD_FLAGS, &jerr);
            if (c->json)
                c->json_state = 1;
        }
    }
    if (c->json_state < 0) {
        c->s->stats.json_skipped++;
        return 0;
    }
    struct jset j = {c, r, m};
    if (r->sel.n == 0)
        return json_set_cb(NULL, NULL, 0, 0, c->json, &j);
    int rc = rw_sel_walk(&r->sel, c->json, r->op == RW_OP_SET, json_set_cb, &j);
    if (rc == H2R_ERR_LIMIT && !(c->errbuf && c->errbuf[0])) {
        struct xp e = {c->s, r, c->x, c->errbuf, c->errlen};
        return xp_err(&e, rc, "selector walk exceeded its budget or depth");
    }
    return rc;
}

static int finish_json(struct actx *c)
{
    if (!c->json_dirty)
        return 0;
    size_t n = json_dumpb(c->json, NULL, 0, JSON_DUMP_FLAGS);
    if (n == 0 || n > RW_MAX_BODY)
        return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_LIMIT,
                          "exchange %" PRIu64 ": rewritten JSON body is empty or over %zu bytes",
                          c->x->id, RW_MAX_BODY);
    char *buf = malloc(n);
    if (!buf || mem_take(&c->mem, buf) != 0) {
        free(buf);
        return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_NOMEM, "out of memory");
    }
    c->body_len = json_dumpb(c->json, buf, n, JSON_DUMP_FLAGS);
    c->body = (const uint8_t *)buf;
    return 0;
}

/* content-length must describe the body actually sent (RFC 9113 8.1.1). */
static int fix_content_length(struct actx *c)
{
    char num[24];
    size_t nlen = (size_t)snprintf(num, sizeof(num), "%zu", c->body_len);
    for (size_t i = 0; i < c->n; i++) {
        struct wh *h = &c->h[i];
        if (!hname_is(h, "content-length", 14))
            continue;
        if (h->value_len == nlen && memcmp(h->value, num, nlen) == 0)
            continue;
        char *v = strdup(num);
        if (!v || mem_take(&c->mem, v) != 0) {
            free(v);
            return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_NOMEM, "out of memory");
        }
        h->value = (const uint8_t *)v;
        h->value_len = nlen;
    }
    return 0;
}

/* Moves the result into out: pseudo-headers first, memory list in front of the array. */
static int build_output(struct actx *c, struct rw_request *out)
{
    size_t count = 0;
    for (size_t i = 0; i < c->n; i++)
        count += !c->h[i].deleted;
    union reqhead *head = malloc(sizeof(*head) + count * sizeof(struct h2r_hdr));
    if (!head)
        return h2r_seterr(c->errbuf, c->errlen, H2R_ERR_NOMEM, "out of memory");
    struct h2r_hdr *arr = (struct h2r_hdr *)(head + 1);
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < c->n; i++) {
            const struct wh *h = &c->h[i];
            int pseudo = h->name_len > 0 && h->name[0] == ':';
            if (h->deleted || pseudo != (pass == 0))
                continue;
            arr[k].name = h->name;
            arr[k].name_len = (uint32_t)h->name_len;
            arr[k].value = h->value;
            arr[k].value_len = (uint32_t)h->value_len;
            k++;
        }
    }
    head->mem = c->mem;
    memset(&c->mem, 0, sizeof(c->mem));
    out->hdrs = arr;
    out->n_hdrs = count;
    out->body = c->body_len ? c->body : NULL;
    out->body_len = c->body_len;
    return 0;
}

int rw_apply(struct rw_session *s, const struct h2r_exchange *x, struct rw_request *out,
             char *errbuf, size_t errlen)
{
    struct actx c;
    int rc;

    memset(out, 0, sizeof(*out));
    memset(&c, 0, sizeof(c));
    if (errbuf && errlen)
        errbuf[0] = '\0';
    s->seq++;
    c.s = s;
    c.rs = s->rs;
    c.x = x;
    c.errbuf = errbuf;
    c.errlen = errlen;
    c.body = x->req_body;
    c.body_len = x->req_body_stored;
    c.body_kind = body_kind_of(x);

    rc = rw_reqinfo_init(&c.info, x);
    if (rc != 0) {
        rc = h2r_seterr(errbuf, errlen, rc, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < x->n_req_hdrs && rc == 0; i++) {
        const struct h2r_hdr *h = &x->req_hdrs[i];
        rc = push_hdr(&c, h->name, h->name_len, h->value, h->value_len);
    }
    if (rc == 0)
        rc = fill_all(&c);
    for (size_t i = 0; i < c.rs->n_rules && rc == 0; i++) {
        const struct rw_rule *r = &c.rs->rules[i];
        regmatch_t m[RW_MAX_GROUPS];
        if (r->kind == RW_R_CAPTURE || r->kind == RW_R_LET || !rw_cond_match(r, &c.info, m))
            continue;
        switch (r->kind) {
        case RW_R_HEADER:
            rc = apply_header(&c, r, m);
            break;
        case RW_R_PATH:
            rc = apply_path(&c, r);
            break;
        case RW_R_QUERY:
            rc = apply_query(&c, r, m);
            break;
        case RW_R_JSON:
            rc = apply_json(&c, r, m);
            break;
        default:
            break;
        }
    }
    if (rc == 0)
        rc = finish_json(&c);
    if (rc == 0)
        rc = fix_content_length(&c);
    if (rc == 0)
        rc = build_output(&c, out);
    if (rc == 0)
        s->stats.requests++;
out:
    json_decref(c.json);
    mem_free(&c.mem);
    free(c.h);
    rw_reqinfo_free(&c.info);
    return rc;
}

void rw_request_release(struct rw_session *s, struct rw_request *req)
{
    (void)s;
    if (!req->hdrs) {
        memset(req, 0, sizeof(*req));
        return;
    }
    union reqhead *head = (union reqhead *)(void *)req->hdrs - 1;
    mem_free(&head->mem);
    free(head);
    memset(req, 0, sizeof(*req));
}

/* ---- captures ---- */

int rw_wants_response(const struct rw_session *s, const struct h2r_exchange *x)
{
    const struct rw_ruleset *rs = s->rs;
    struct rw_reqinfo info;
    int want = 0;
    if (!rs->has_capture || rw_reqinfo_init(&info, x) != 0)
        return 0;
    for (size_t i = 0; i < rs->n_rules && !want; i++) {
        const struct rw_rule *r = &rs->rules[i];
        want = r->kind == RW_R_CAPTURE && rw_cond_match(r, &info, NULL);
    }
    rw_reqinfo_free(&info);
    return want;
}

struct jfirst {
    json_t *node;
};

static int json_first_cb(json_t *parent, const char *key, size_t key_len, size_t index,
                         json_t *node, void *arg)
{
    (void)parent;
    (void)key;
    (void)key_len;
    (void)index;
    ((struct jfirst *)arg)->node = node;
    return 1;
}

static int identity_encoding(const struct h2r_hdr *hdrs, size_t n)
{
    const struct h2r_hdr *ce = h2r_hdr_find(hdrs, n, "content-encoding");
    return !ce || (ce->value_len == 8 && rw_memcaseeq(ce->value, "identity", 8));
}

/* Extracts rule r's value from the response; 1 with *v and *vlen set (maybe in *buf), 0 none. */
static int capture_value(const struct rw_rule *r, const struct h2r_hdr *hdrs, size_t n,
                         json_t *root, char **buf, const char **v, size_t *vlen)
{
    *buf = NULL;
    if (r->src == RW_SRC_HEADER) {
        for (size_t i = 0; i < n; i++) {
            if (hdrs[i].name_len == r->hdr_len && rw_memcaseeq(hdrs[i].name, r->hdr, r->hdr_len)) {
                *v = (const char *)hdrs[i].value;
                *vlen = hdrs[i].value_len;
                return 1;
            }
        }
        return 0;
    }
    if (!root)
        return 0;
    struct jfirst f = {NULL};
    if (r->sel.n == 0)
        f.node = root;
    else if (rw_sel_walk(&r->sel, root, 0, json_first_cb, &f) != 0)
        return 0;
    if (!f.node || json_text(f.node, buf, v, vlen) != 0)
        return 0;
    return 1;
}

/* Applies `match REGEX`: group 1 when the regex has one, else the whole match. */
static int capture_match(const struct rw_rule *r, const char **v, size_t *vlen, char **buf)
{
    regmatch_t m[2];
    char *subj = malloc(*vlen + 1);
    if (!subj)
        return 0;
    memcpy(subj, *v, *vlen);
    subj[*vlen] = '\0';
    free(*buf);
    *buf = subj;
    if (regexec(&r->re, subj, 2, m, 0) != 0)
        return 0;
    int g = r->re.re_nsub >= 1 ? 1 : 0;
    if (m[g].rm_so < 0)
        return 0;
    *v = subj + m[g].rm_so;
    *vlen = (size_t)(m[g].rm_eo - m[g].rm_so);
    return 1;
}

void rw_observe_response(struct rw_session *s, const struct h2r_exchange *x, int status,
                         const struct h2r_hdr *hdrs, size_t n, const uint8_t *body, size_t len)
{
    const struct rw_ruleset *rs = s->rs;
    struct rw_reqinfo info;
    json_t *root = NULL;
    int json_tried = 0;

    if (!rs->has_capture || rw_reqinfo_init(&info, x) != 0)
        return;
    for (size_t i = 0; i < rs->n_rules; i++) {
        const struct rw_rule *r = &rs->rules[i];
        if (r->kind != RW_R_CAPTURE || !rw_cond_match(r, &info, NULL))
            continue;
        if (r->cond.status_lo && (status < r->cond.status_lo || status > r->cond.status_hi))
            continue;
        if (r->src == RW_SRC_JSON && !json_tried) {
            json_tried = 1;
            if (body && len > 0 && len <= RW_MAX_BODY && identity_encoding(hdrs, n)) {
                json_error_t jerr;
                root = json_loadb((const char *)body, len, JSON_LOAD_FLAGS, &jerr);
            }
        }
        char *buf = NULL;
        const char *v = NULL;
        size_t vlen = 0;
        int ok = capture_value(r, hdrs, n, root, &buf, &v, &vlen);
        if (ok && r->has_re)
            ok = capture_match(r, &v, &vlen, &buf);
        if (ok && vlen > RW_MAX_VALUE)
            ok = 0;
        char *copy = ok ? malloc(vlen + 1) : NULL;
        if (!copy || r->slot >= s->n_vals) {
            s->stats.capture_missed++;
            free(copy);
            free(buf);
            continue;
        }
        memcpy(copy, v, vlen);
        copy[vlen] = '\0';
        free(buf);
        struct slot_val *sv = &s->vals[r->slot];
        free(sv->v);
        sv->v = copy;
        sv->len = vlen;
        sv->set = 1;
        s->stats.captured++;
    }
    json_decref(root);
    rw_reqinfo_free(&info);
}
