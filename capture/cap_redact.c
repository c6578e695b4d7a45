/*
 * Secret redaction: replaces credentials in an exchange by placeholders
 * `$H2R{<name>_<n>}` before it reaches the trace.
 *
 * What is secret: the values of configured headers (Authorization keeps its
 * scheme, Cookie and Set-Cookie keep cookie names and attributes), and the
 * values of configured field names in JSON bodies (any depth), form bodies
 * and the request query string. Placeholder names are stable within one
 * capture so replay can substitute the same value everywhere it recurs: a
 * table maps SHA-256(salt, name, value) to the value's number, with a
 * random per-capture salt, so neither secrets nor unsalted hashes are kept
 * even in memory. Cookie and Set-Cookie share the name "cookie_<cookie>" so
 * a value the server sets and the client sends back gets one placeholder.
 *
 * JSON goes through jansson and is re-serialised (compact, key order kept)
 * only when a value changed, so untouched bodies stay byte-exact. A body
 * that might hold a secret but cannot be inspected (truncated at the storage
 * cap, content-encoded, or unparsable despite a JSON/form content-type) is
 * dropped: a trace must never carry a usable secret.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "cap_redact.h"

#define SALT_LEN 32u
#define KEY_LEN 16u           /* truncated SHA-256: collisions are negligible */
#define MAX_VALUES (1u << 20) /* distinct secrets remembered per capture */
#define MAX_NAMES 65536u      /* distinct placeholder names per capture */
#define MAX_BASE 64u          /* placeholder name length cap */
#define OVERFLOW_BASE "other"

static const char default_headers[] =
    "authorization,proxy-authorization,cookie,set-cookie,x-api-key,x-auth-token";
static const char default_fields[] =
    "authkey,auth_key,key,token,access_token,refresh_token,id_token,password,secret,api_key,"
    "apikey,preauthkey,pre_auth_key,client_secret";

struct value_slot {
    uint8_t key[KEY_LEN];
    uint32_t n; /* 0: empty */
};

struct name_slot {
    char *base; /* NULL: empty */
    uint32_t count;
};

struct cap_redactor {
    char **headers;
    size_t n_headers;
    char **fields;
    size_t n_fields;
    uint8_t salt[SALT_LEN];
    EVP_MD_CTX *md;

    struct value_slot *values;
    size_t values_cap; /* power of two */
    size_t values_n;
    struct name_slot *names;
    size_t names_cap; /* power of two */
    size_t names_n;
    uint32_t overflow_count;
};

/* A growable byte string for rebuilt values. */
struct sbuf {
    uint8_t *p;
    size_t len;
    size_t cap;
};

static int sb_put(struct sbuf *b, const void *p, size_t n)
{
    if (n > b->cap - b->len) {
        size_t ncap = b->cap ? b->cap : 64;
        while (ncap - b->len < n)
            ncap *= 2;
        uint8_t *np = realloc(b->p, ncap);
        if (!np)
            return H2R_ERR_NOMEM;
        b->p = np;
        b->cap = ncap;
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static int sb_str(struct sbuf *b, const char *s)
{
    return sb_put(b, s, strlen(s));
}

static int mem_keep(struct cap_redact_mem *m, void *p)
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

void cap_redact_mem_free(struct cap_redact_mem *mem)
{
    if (!mem)
        return;
    for (size_t i = 0; i < mem->n; i++)
        free(mem->v[i]);
    free(mem->v);
    mem->v = NULL;
    mem->n = mem->cap = 0;
}

static int ieq(const uint8_t *a, size_t alen, const char *lower)
{
    size_t n = strlen(lower);
    if (alen != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (tolower(a[i]) != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

static int in_list(char *const *list, size_t n, const uint8_t *s, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (ieq(s, len, list[i]))
            return 1;
    }
    return 0;
}

/* ---- construction ---- */

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

/* Splits a comma list into trimmed, lower-cased, non-empty names. */
static int parse_csv(const char *csv, char ***out, size_t *n_out)
{
    char **list = NULL;
    size_t n = 0;
    const char *p = csv;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *s = p;
        while (len && isspace((unsigned char)*s)) {
            s++;
            len--;
        }
        while (len && isspace((unsigned char)s[len - 1]))
            len--;
        if (len) {
            char **nl = realloc(list, (n + 1) * sizeof(*nl));
            if (!nl)
                goto fail;
            list = nl;
            list[n] = malloc(len + 1);
            if (!list[n])
                goto fail;
            for (size_t i = 0; i < len; i++)
                list[n][i] = (char)tolower((unsigned char)s[i]);
            list[n][len] = '\0';
            n++;
        }
        p = end ? end + 1 : p + strlen(p);
    }
    *out = list;
    *n_out = n;
    return 0;
fail:
    free_list(list, n);
    return H2R_ERR_NOMEM;
}

struct cap_redactor *cap_redactor_new(const char *headers_csv, const char *fields_csv)
{
    struct cap_redactor *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    if (parse_csv(headers_csv ? headers_csv : default_headers, &r->headers, &r->n_headers) != 0)
        goto fail_lists;
    if (parse_csv(fields_csv ? fields_csv : default_fields, &r->fields, &r->n_fields) != 0)
        goto fail_lists;
    if (getentropy(r->salt, sizeof(r->salt)) != 0)
        goto fail_lists;
    r->md = EVP_MD_CTX_new();
    if (!r->md)
        goto fail_lists;
    r->values_cap = 1024;
    r->values = calloc(r->values_cap, sizeof(*r->values));
    if (!r->values)
        goto fail_md;
    r->names_cap = 64;
    r->names = calloc(r->names_cap, sizeof(*r->names));
    if (!r->names)
        goto fail_values;
    return r;

fail_values:
    free(r->values);
fail_md:
    EVP_MD_CTX_free(r->md);
fail_lists:
    free_list(r->headers, r->n_headers);
    free_list(r->fields, r->n_fields);
    free(r);
    return NULL;
}

void cap_redactor_free(struct cap_redactor *r)
{
    if (!r)
        return;
    free_list(r->headers, r->n_headers);
    free_list(r->fields, r->n_fields);
    EVP_MD_CTX_free(r->md);
    OPENSSL_cleanse(r->salt, sizeof(r->salt));
    free(r->values);
    for (size_t i = 0; i < r->names_cap; i++)
        free(r->names[i].base);
    free(r->names);
    free(r);
}

/* ---- placeholder numbering ---- */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

static int names_grow(struct cap_redactor *r)
{
    size_t ncap = r->names_cap * 2;
    struct name_slot *nv = calloc(ncap, sizeof(*nv));
    if (!nv)
        return H2R_ERR_NOMEM;
    for (size_t i = 0; i < r->names_cap; i++) {
        if (!r->names[i].base)
            continue;
        size_t k = (size_t)fnv1a(r->names[i].base) & (ncap - 1);
        while (nv[k].base)
            k = (k + 1) & (ncap - 1);
        nv[k] = r->names[i];
    }
    free(r->names);
    r->names = nv;
    r->names_cap = ncap;
    return 0;
}

/* Returns the counter of placeholder name base, creating it; NULL on NOMEM. */
static uint32_t *name_counter(struct cap_redactor *r, const char *base)
{
    size_t k;
    if (r->names_n * 2 >= r->names_cap && r->names_n < MAX_NAMES) {
        if (names_grow(r) != 0)
            return NULL;
    }
    k = (size_t)fnv1a(base) & (r->names_cap - 1);
    while (r->names[k].base) {
        if (strcmp(r->names[k].base, base) == 0)
            return &r->names[k].count;
        k = (k + 1) & (r->names_cap - 1);
    }
    if (r->names_n >= MAX_NAMES)
        return &r->overflow_count;
    r->names[k].base = strdup(base);
    if (!r->names[k].base)
        return NULL;
    r->names_n++;
    return &r->names[k].count;
}

static int values_grow(struct cap_redactor *r)
{
    size_t ncap = r->values_cap * 2;
    struct value_slot *nv = calloc(ncap, sizeof(*nv));
    if (!nv)
        return H2R_ERR_NOMEM;
    for (size_t i = 0; i < r->values_cap; i++) {
        if (!r->values[i].n)
            continue;
        size_t k;
        memcpy(&k, r->values[i].key, sizeof(k));
        k &= ncap - 1;
        while (nv[k].n)
            k = (k + 1) & (ncap - 1);
        nv[k] = r->values[i];
    }
    free(r->values);
    r->values = nv;
    r->values_cap = ncap;
    return 0;
}

/* SHA-256(salt || base || 0 || value), truncated. */
static int value_key(struct cap_redactor *r, const char *base, const uint8_t *v, size_t len,
                     uint8_t key[KEY_LEN])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_DigestInit_ex(r->md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(r->md, r->salt, sizeof(r->salt)) != 1 ||
        EVP_DigestUpdate(r->md, base, strlen(base) + 1) != 1 ||
        EVP_DigestUpdate(r->md, v, len) != 1 || EVP_DigestFinal_ex(r->md, md, &mdlen) != 1 ||
        mdlen < KEY_LEN)
        return H2R_ERR_NOMEM;
    memcpy(key, md, KEY_LEN);
    OPENSSL_cleanse(md, sizeof(md));
    return 0;
}

/* Appends "$H2R{base_n}" for value v to out. */
static int placeholder(struct cap_redactor *r, const char *base, const uint8_t *v, size_t len,
                       struct sbuf *out, struct cap_redact_counts *counts)
{
    uint8_t key[KEY_LEN];
    uint32_t n = 0;
    uint32_t *counter;
    size_t k;
    char num[16];
    int rc;

    rc = value_key(r, base, v, len, key);
    if (rc != 0)
        return rc;
    if (r->values_n * 2 >= r->values_cap && r->values_n < MAX_VALUES) {
        rc = values_grow(r);
        if (rc != 0)
            return rc;
    }
    memcpy(&k, key, sizeof(k));
    k &= r->values_cap - 1;
    while (r->values[k].n) {
        if (memcmp(r->values[k].key, key, KEY_LEN) == 0) {
            n = r->values[k].n;
            break;
        }
        k = (k + 1) & (r->values_cap - 1);
    }
    if (n == 0) {
        counter = name_counter(r, base);
        if (!counter)
            return H2R_ERR_NOMEM;
        if (*counter < UINT32_MAX)
            (*counter)++;
        n = *counter;
        if (r->values_n < MAX_VALUES) {
            memcpy(r->values[k].key, key, KEY_LEN);
            r->values[k].n = n;
            r->values_n++;
        } else {
            counts->table_full++;
        }
    }
    snprintf(num, sizeof(num), "_%u}", n);
    counts->values++;
    rc = sb_str(out, "$H2R{");
    if (rc == 0)
        rc = sb_str(out, base);
    if (rc == 0)
        rc = sb_str(out, num);
    return rc;
}

/* Placeholder names: lower-case, [a-z0-9._-], others become '_', at most MAX_BASE bytes. */
static void make_base(char *out, const char *prefix, const uint8_t *name, size_t len)
{
    size_t o = 0;
    for (const char *p = prefix; *p && o < MAX_BASE; p++)
        out[o++] = *p;
    for (size_t i = 0; i < len && o < MAX_BASE; i++) {
        int c = tolower(name[i]);
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
            c = '_';
        out[o++] = (char)c;
    }
    out[o] = '\0';
}

/* ---- headers ---- */

static int is_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* RFC 6265 §4.2.1 cookie-string: "a=1; b=2". Each value is replaced; names kept. With
 * first_only (Set-Cookie, §4.1.1), only the leading pair is a cookie; attributes are kept. */
static int redact_cookies(struct cap_redactor *r, const uint8_t *v, size_t len, int first_only,
                          struct sbuf *out, struct cap_redact_counts *counts)
{
    size_t i = 0;
    int rc = 0;
    int first = 1;
    char base[MAX_BASE + 1];

    while (i < len) {
        size_t start = i, end, eq;
        while (start < len && is_ows(v[start]))
            start++;
        rc = sb_put(out, v + i, start - i);
        if (rc != 0)
            return rc;
        end = start;
        while (end < len && v[end] != ';')
            end++;
        if (first_only && !first) {
            rc = sb_put(out, v + start, end - start);
        } else {
            eq = start;
            while (eq < end && v[eq] != '=')
                eq++;
            if (eq < end) {
                rc = sb_put(out, v + start, eq + 1 - start);
                make_base(base, "cookie_", v + start, eq - start);
                if (rc == 0 && end > eq + 1)
                    rc = placeholder(r, base, v + eq + 1, end - eq - 1, out, counts);
            } else if (end > start) {
                rc = placeholder(r, "cookie", v + start, end - start, out, counts);
            }
        }
        if (rc != 0)
            return rc;
        first = 0;
        if (end < len) {
            rc = sb_put(out, ";", 1);
            if (rc != 0)
                return rc;
            end++;
        }
        i = end;
    }
    return 0;
}

/* RFC 9110 §11.4 credentials: auth-scheme [ 1*SP ( token68 / #auth-param ) ]; the scheme stays. */
static int redact_credentials(struct cap_redactor *r, const char *base, const uint8_t *v,
                              size_t len, struct sbuf *out, struct cap_redact_counts *counts)
{
    size_t sp = 0;
    int rc;
    while (sp < len && v[sp] != ' ')
        sp++;
    if (sp == len || sp == 0)
        return placeholder(r, base, v, len, out, counts);
    while (sp < len && v[sp] == ' ')
        sp++;
    rc = sb_put(out, v, sp);
    if (rc != 0)
        return rc;
    if (sp == len)
        return 0;
    return placeholder(r, base, v + sp, len - sp, out, counts);
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (uint8_t)tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes a parameter name (RFC 3986 §2.1) into out for matching; returns its length. */
static size_t decode_name(const uint8_t *s, size_t len, uint8_t *out, size_t outcap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o < outcap; i++) {
        if (s[i] == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[o++] = (uint8_t)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else if (s[i] == '+') {
            out[o++] = ' ';
        } else {
            out[o++] = s[i];
        }
    }
    return o;
}

/* application/x-www-form-urlencoded pairs "a=1&b=2" (also a URI query): values of listed
 * names are replaced. Returns the number replaced via counts; *changed set when any. */
static int redact_params(struct cap_redactor *r, const uint8_t *v, size_t len, struct sbuf *out,
                         int *changed, struct cap_redact_counts *counts)
{
    size_t i = 0;
    int rc = 0;
    while (i <= len) {
        size_t end = i, eq;
        uint8_t name[MAX_BASE * 3];
        size_t nlen;
        while (end < len && v[end] != '&')
            end++;
        eq = i;
        while (eq < end && v[eq] != '=')
            eq++;
        nlen = decode_name(v + i, eq - i, name, sizeof(name));
        if (eq < end && end > eq + 1 && eq - i <= sizeof(name) &&
            in_list(r->fields, r->n_fields, name, nlen)) {
            char base[MAX_BASE + 1];
            make_base(base, "", name, nlen);
            rc = sb_put(out, v + i, eq + 1 - i);
            if (rc == 0)
                rc = placeholder(r, base, v + eq + 1, end - eq - 1, out, counts);
            *changed = 1;
        } else {
            rc = sb_put(out, v + i, end - i);
        }
        if (rc == 0 && end < len)
            rc = sb_put(out, "&", 1);
        if (rc != 0)
            return rc;
        i = end + 1;
    }
    return 0;
}

/* Redacts the query of a request target ("/p?token=x"); *changed when rewritten. */
static int redact_path(struct cap_redactor *r, const uint8_t *v, size_t len, struct sbuf *out,
                       int *changed, struct cap_redact_counts *counts)
{
    size_t q = 0, frag;
    int rc;
    while (q < len && v[q] != '?')
        q++;
    if (q == len)
        return 0;
    frag = q + 1;
    while (frag < len && v[frag] != '#')
        frag++;
    rc = sb_put(out, v, q + 1);
    if (rc == 0)
        rc = redact_params(r, v + q + 1, frag - q - 1, out, changed, counts);
    if (rc == 0)
        rc = sb_put(out, v + frag, len - frag);
    return rc;
}

int cap_redact_headers(struct cap_redactor *r, const struct h2r_hdr **hdrs, size_t n,
                       struct cap_redact_mem *mem, struct cap_redact_counts *counts)
{
    struct h2r_hdr *copy = NULL;
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        const struct h2r_hdr *h = &(*hdrs)[i];
        struct sbuf out = {NULL, 0, 0};
        int changed = 0;
        char base[MAX_BASE + 1];

        if (h->value_len == 0)
            continue;
        if (ieq(h->name, h->name_len, ":path")) {
            rc = redact_path(r, h->value, h->value_len, &out, &changed, counts);
        } else if (in_list(r->headers, r->n_headers, h->name, h->name_len)) {
            changed = 1;
            make_base(base, "", h->name, h->name_len);
            if (ieq(h->name, h->name_len, "cookie"))
                rc = redact_cookies(r, h->value, h->value_len, 0, &out, counts);
            else if (ieq(h->name, h->name_len, "set-cookie"))
                rc = redact_cookies(r, h->value, h->value_len, 1, &out, counts);
            else if (ieq(h->name, h->name_len, "authorization") ||
                     ieq(h->name, h->name_len, "proxy-authorization"))
                rc = redact_credentials(r, base, h->value, h->value_len, &out, counts);
            else
                rc = placeholder(r, base, h->value, h->value_len, &out, counts);
        }
        if (rc == 0 && changed && !copy) {
            copy = malloc(n * sizeof(*copy));
            if (!copy) {
                rc = H2R_ERR_NOMEM;
            } else {
                memcpy(copy, *hdrs, n * sizeof(*copy));
                rc = mem_keep(mem, copy);
                if (rc != 0) {
                    free(copy);
                    copy = NULL;
                } else {
                    *hdrs = copy;
                }
            }
        }
        if (rc == 0 && changed) {
            rc = mem_keep(mem, out.p);
            if (rc == 0) {
                copy[i].value = out.p ? out.p : (const uint8_t *)"";
                copy[i].value_len = (uint32_t)out.len;
                out.p = NULL;
            }
        }
        free(out.p);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- bodies ---- */

enum body_type { BT_NONE, BT_JSON, BT_FORM, BT_SNIFF };

static const struct h2r_hdr *find(const struct h2r_hdr *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (ieq(v[i].name, v[i].name_len, name))
            return &v[i];
    }
    return NULL;
}

/* Media type of a content-type value (RFC 9110 §8.3.1), lower-cased, without parameters. */
static enum body_type classify(const struct h2r_hdr *ct)
{
    char mt[128];
    size_t n = 0;
    if (!ct)
        return BT_SNIFF;
    for (size_t i = 0; i < ct->value_len && ct->value[i] != ';' && n + 1 < sizeof(mt); i++) {
        if (!is_ows(ct->value[i]))
            mt[n++] = (char)tolower(ct->value[i]);
    }
    mt[n] = '\0';
    if (strcmp(mt, "application/json") == 0 || strcmp(mt, "text/json") == 0 ||
        (n > 5 && strcmp(mt + n - 5, "+json") == 0))
        return BT_JSON;
    if (strcmp(mt, "application/x-www-form-urlencoded") == 0)
        return BT_FORM;
    return BT_NONE;
}

static int looks_like_json(const uint8_t *b, size_t len)
{
    size_t i = 0;
    while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n'))
        i++;
    return i < len && (b[i] == '{' || b[i] == '[');
}

static int json_replace(struct cap_redactor *r, const char *key, json_t *v, json_t **out,
                        struct cap_redact_counts *counts)
{
    struct sbuf sb = {NULL, 0, 0};
    char base[MAX_BASE + 1];
    char num[64];
    const uint8_t *val;
    size_t len;
    int rc;

    *out = NULL;
    if (json_is_string(v)) {
        val = (const uint8_t *)json_string_value(v);
        len = json_string_length(v);
    } else if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        val = (const uint8_t *)num;
        len = strlen(num);
    } else if (json_is_real(v)) {
        snprintf(num, sizeof(num), "%.17g", json_real_value(v));
        val = (const uint8_t *)num;
        len = strlen(num);
    } else {
        return 0; /* null / booleans carry no secret */
    }
    make_base(base, "", (const uint8_t *)key, strlen(key));
    rc = placeholder(r, base, val, len, &sb, counts);
    if (rc == 0)
        rc = sb_put(&sb, "", 1);
    if (rc == 0) {
        *out = json_stringn((const char *)sb.p, sb.len - 1);
        if (!*out)
            rc = H2R_ERR_NOMEM;
    }
    free(sb.p);
    return rc;
}

/* Walks a JSON value; returns the number of values replaced or a negative code. */
static int json_walk(struct cap_redactor *r, json_t *j, struct cap_redact_counts *counts)
{
    int changed = 0;
    int rc;
    if (json_is_object(j)) {
        void *it = json_object_iter(j);
        while (it) {
            const char *key = json_object_iter_key(it);
            json_t *v = json_object_iter_value(it);
            if (in_list(r->fields, r->n_fields, (const uint8_t *)key, strlen(key)) &&
                !json_is_object(v) && !json_is_array(v)) {
                json_t *nv = NULL;
                rc = json_replace(r, key, v, &nv, counts);
                if (rc != 0)
                    return rc;
                if (nv) {
                    if (json_object_iter_set_new(j, it, nv) != 0)
                        return H2R_ERR_NOMEM;
                    changed++;
                }
            } else {
                rc = json_walk(r, v, counts);
                if (rc < 0)
                    return rc;
                changed += rc;
            }
            it = json_object_iter_next(j, it);
        }
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            rc = json_walk(r, json_array_get(j, i), counts);
            if (rc < 0)
                return rc;
            changed += rc;
        }
    }
    return changed;
}

/* Returns 1 when changed (new body in *out), 0 unchanged, -1 not JSON, or a negative code. */
static int redact_json(struct cap_redactor *r, const uint8_t *b, size_t len, struct sbuf *out,
                       struct cap_redact_counts *counts)
{
    json_error_t err;
    json_t *j = json_loadb((const char *)b, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    int rc;
    if (!j)
        return -1;
    rc = json_walk(r, j, counts);
    if (rc > 0) {
        const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY;
        size_t need = json_dumpb(j, NULL, 0, flags);
        if (need == 0) {
            rc = H2R_ERR_NOMEM;
        } else {
            out->p = malloc(need);
            if (!out->p) {
                rc = H2R_ERR_NOMEM;
            } else {
                out->cap = need;
                out->len = json_dumpb(j, (char *)out->p, need, flags);
                rc = out->len == need ? 1 : H2R_ERR_NOMEM;
            }
        }
    }
    json_decref(j);
    return rc;
}

int cap_redact_body(struct cap_redactor *r, const struct h2r_hdr *hdrs, size_t n,
                    const uint8_t **body, size_t *stored, uint64_t wire_len,
                    struct cap_redact_mem *mem, struct cap_redact_counts *counts)
{
    const struct h2r_hdr *ce = find(hdrs, n, "content-encoding");
    enum body_type type = classify(find(hdrs, n, "content-type"));
    struct sbuf out = {NULL, 0, 0};
    int encoded = ce && ce->value_len && !ieq(ce->value, ce->value_len, "identity");
    int changed = 0;
    int rc = 0;

    if (*stored == 0 || r->n_fields == 0 || type == BT_NONE)
        return 0;
    if (type == BT_SNIFF && !looks_like_json(*body, *stored))
        return 0;
    if (*stored < wire_len || encoded)
        goto drop;
    if (type == BT_FORM) {
        rc = redact_params(r, *body, *stored, &out, &changed, counts);
        if (rc != 0)
            goto out;
    } else {
        rc = redact_json(r, *body, *stored, &out, counts);
        if (rc == -1) {
            rc = 0;
            if (type == BT_JSON)
                goto drop; /* declared JSON we cannot read might still hold a secret */
            goto out;
        }
        if (rc < 0)
            goto out;
        changed = rc;
        rc = 0;
    }
    if (changed) {
        rc = mem_keep(mem, out.p);
        if (rc != 0)
            goto out;
        *body = out.p;
        *stored = out.len;
        out.p = NULL;
    }
    goto out;
drop:
    counts->bodies_dropped++;
    *body = NULL;
    *stored = 0;
out:
    free(out.p);
    return rc;
}

int cap_redact_exchange(struct cap_redactor *r, struct h2r_exchange *x, struct cap_redact_mem *mem,
                        struct cap_redact_counts *counts)
{
    uint64_t values0 = counts->values, dropped0 = counts->bodies_dropped;
    int rc;

    rc = cap_redact_headers(r, &x->req_hdrs, x->n_req_hdrs, mem, counts);
    if (rc == 0)
        rc = cap_redact_headers(r, &x->resp_hdrs, x->n_resp_hdrs, mem, counts);
    if (rc == 0)
        rc = cap_redact_headers(r, &x->trailers, x->n_trailers, mem, counts);
    if (rc == 0)
        rc = cap_redact_body(r, x->req_hdrs, x->n_req_hdrs, &x->req_body, &x->req_body_stored,
                             x->req_body_len, mem, counts);
    if (rc == 0)
        rc = cap_redact_body(r, x->resp_hdrs, x->n_resp_hdrs, &x->resp_body, &x->resp_body_stored,
                             x->resp_body_len, mem, counts);
    if (rc != 0)
        return rc;
    if (counts->values != values0 || counts->bodies_dropped != dropped0)
        x->flags |= H2R_EXCH_F_REDACTED;
    return 0;
}
