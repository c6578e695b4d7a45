/*
 * Small pieces the rewrite module shares between parsing, checking and
 * applying: a string map (variable names are looked up per placeholder and
 * per {{var:}}, so a linear scan over thousands of --set-file entries would
 * not do), a capped byte buffer, the placeholder scanner, and request
 * matching. Matching always looks at the request as captured, so which rules
 * apply does not depend on what earlier rules rewrote.
 */
#include <stdlib.h>
#include <string.h>

#include "rw_internal.h"

static uint64_t map_hash(const char *key, size_t klen)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < klen; i++) {
        h ^= (uint8_t)key[i];
        h *= 1099511628211ull;
    }
    return h;
}

static struct rw_map_ent *map_find(const struct rw_map *m, const char *key, size_t klen)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    size_t i = (size_t)map_hash(key, klen) & mask;
    for (;;) {
        struct rw_map_ent *e = &m->ents[i];
        if (!e->key)
            return e;
        if (e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
        i = (i + 1) & mask;
    }
}

static int map_grow(struct rw_map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    struct rw_map_ent *ne = calloc(ncap, sizeof(*ne));
    if (!ne)
        return H2R_ERR_NOMEM;
    struct rw_map old = *m;
    m->ents = ne;
    m->cap = ncap;
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.ents[i].key)
            continue;
        struct rw_map_ent *e = map_find(m, old.ents[i].key, old.ents[i].klen);
        *e = old.ents[i];
    }
    free(old.ents);
    return 0;
}

int rw_map_get(const struct rw_map *m, const char *key, size_t klen, size_t *val)
{
    const struct rw_map_ent *e = map_find(m, key, klen);
    if (!e || !e->key)
        return 0;
    *val = e->val;
    return 1;
}

int rw_map_put(struct rw_map *m, const char *key, size_t klen, size_t val)
{
    if ((m->n + 1) * 2 > m->cap) {
        int rc = map_grow(m);
        if (rc != 0)
            return rc;
    }
    struct rw_map_ent *e = map_find(m, key, klen);
    if (e->key) {
        e->val = val;
        return 0;
    }
    e->key = malloc(klen + 1);
    if (!e->key)
        return H2R_ERR_NOMEM;
    memcpy(e->key, key, klen);
    e->key[klen] = '\0';
    e->klen = klen;
    e->val = val;
    m->n++;
    return 0;
}

void rw_map_free(struct rw_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->ents[i].key);
    free(m->ents);
    memset(m, 0, sizeof(*m));
}

void rw_sb_init(struct rw_sb *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void rw_sb_add(struct rw_sb *b, const void *p, size_t n)
{
    if (b->failed)
        return;
    if (n > b->max || b->len > b->max - n) {
        b->failed = H2R_ERR_LIMIT;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 64;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->failed = H2R_ERR_NOMEM;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void rw_sb_add_enc(struct rw_sb *b, const void *p, size_t n, int enc)
{
    static const char hex[] = "0123456789ABCDEF";
    const uint8_t *s = p;
    size_t run = 0; /* bytes copied as they are, flushed in one append */

    if (enc == RW_ENC_NONE) {
        rw_sb_add(b, p, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        char esc[6];
        size_t elen = 0;
        if (enc == RW_ENC_URL) {
            int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '.' || c == '_' || c == '~';
            if (!keep) {
                esc[0] = '%';
                esc[1] = hex[c >> 4];
                esc[2] = hex[c & 15];
                elen = 3;
            }
        } else if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c < 0x20) {
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        if (elen == 0) {
            run++;
            continue;
        }
        rw_sb_add(b, s + i - run, run);
        run = 0;
        rw_sb_add(b, esc, elen);
    }
    rw_sb_add(b, s + n - run, run);
}

void rw_sb_free(struct rw_sb *b)
{
    free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}

const struct rw_var *rw_static_var(const struct rw_ruleset *rs, const char *name, size_t len)
{
    size_t idx;
    if (!rw_map_get(&rs->var_map, name, len, &idx))
        return NULL;
    return &rs->vars[idx];
}

const struct rw_var *rw_placeholder_var(const struct rw_ruleset *rs, const char *name, size_t len)
{
    const struct rw_var *v = rw_static_var(rs, name, len);
    if (v)
        return v;
    /* "authkey_2" falls back to "authkey" so one --set fills every numbered copy */
    size_t i = len;
    while (i > 0 && name[i - 1] >= '0' && name[i - 1] <= '9')
        i--;
    if (i == len || i < 2 || name[i - 1] != '_')
        return NULL;
    return rw_static_var(rs, name, i - 1);
}

/* Bytes a placeholder name may hold: printable, and none of the delimiters. */
static int ph_name_byte(uint8_t c)
{
    return c > 0x20 && c != 0x7f && c != '{' && c != '}' && c != '"' && c != '\\' && c != '$' &&
           c != '%';
}

static int ph_at(const uint8_t *p, size_t len, size_t i, struct rw_ph *ph)
{
    static const char lit[] = "$H2R{";
    static const char enc[] = "%24H2R%7B";
    size_t open_len, close_len;

    if (p[i] == '$') {
        if (len - i < 5 || memcmp(p + i, lit, 5) != 0)
            return 0;
        open_len = 5;
        close_len = 1;
    } else {
        if (len - i < 9 || memcmp(p + i, enc, 7) != 0 || (p[i + 8] != 'B' && p[i + 8] != 'b'))
            return 0;
        open_len = 9;
        close_len = 3;
    }
    size_t n = i + open_len;
    size_t name_end = n;
    while (name_end < len && name_end - n <= RW_MAX_NAME && ph_name_byte(p[name_end]))
        name_end++;
    if (name_end == n || name_end - n > RW_MAX_NAME || name_end >= len)
        return 0;
    if (close_len == 1) {
        if (p[name_end] != '}')
            return 0;
    } else {
        if (len - name_end < 3 || p[name_end] != '%' || p[name_end + 1] != '7' ||
            (p[name_end + 2] != 'D' && p[name_end + 2] != 'd'))
            return 0;
    }
    ph->start = i;
    ph->name_off = n;
    ph->name_len = name_end - n;
    ph->end = name_end + close_len;
    return 1;
}

int rw_ph_next(const uint8_t *p, size_t len, size_t from, struct rw_ph *ph)
{
    for (size_t i = from; i < len; i++) {
        if ((p[i] == '$' || p[i] == '%') && ph_at(p, len, i, ph))
            return 1;
    }
    return 0;
}

int rw_reqinfo_init(struct rw_reqinfo *info, const struct h2r_exchange *x)
{
    memset(info, 0, sizeof(*info));
    const struct h2r_hdr *m = h2r_hdr_find(x->req_hdrs, x->n_req_hdrs, ":method");
    if (m) {
        info->method = m->value;
        info->method_len = m->value_len;
    }
    const struct h2r_hdr *p = h2r_hdr_find(x->req_hdrs, x->n_req_hdrs, ":path");
    size_t n = 0;
    if (p) {
        while (n < p->value_len && p->value[n] != '?' && p->value[n] != '\0')
            n++;
    }
    info->path = malloc(n + 1);
    if (!info->path)
        return H2R_ERR_NOMEM;
    if (n)
        memcpy(info->path, p->value, n);
    info->path[n] = '\0';
    info->path_len = n;
    return 0;
}

void rw_reqinfo_free(struct rw_reqinfo *info)
{
    free(info->path);
    info->path = NULL;
}

int rw_memcaseeq(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = x[i], d = y[i];
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c - 'A' + 'a');
        if (d >= 'A' && d <= 'Z')
            d = (uint8_t)(d - 'A' + 'a');
        if (c != d)
            return 0;
    }
    return 1;
}

int rw_cond_match(const struct rw_rule *r, const struct rw_reqinfo *info, regmatch_t *m)
{
    const struct rw_cond *c = &r->cond;
    if (m) {
        for (int i = 0; i < RW_MAX_GROUPS; i++) {
            m[i].rm_so = -1;
            m[i].rm_eo = -1;
        }
    }
    if (c->n_methods) {
        int hit = 0;
        for (size_t i = 0; i < c->n_methods && !hit; i++) {
            size_t len = strlen(c->methods[i]);
            hit = len == info->method_len && rw_memcaseeq(c->methods[i], info->method, len);
        }
        if (!hit)
            return 0;
    }
    if (!c->has_path)
        return 1;
    regmatch_t local[RW_MAX_GROUPS];
    if (regexec(&c->path_re, info->path, RW_MAX_GROUPS, m ? m : local, 0) != 0)
        return 0;
    return 1;
}
