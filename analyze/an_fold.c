/*
 * Endpoint folding: turns a request path into the template that names its
 * group. Replays carry tens of thousands of distinct paths (one per node key,
 * user id, ...) but a handful of endpoints; grouping by the raw path would
 * give one useless row per id and unbounded memory, so ids are recognised by
 * shape, one path segment at a time:
 *
 *   all decimal digits                         -> {n}
 *   8-4-4-4-12 hex UUID                        -> {uuid}
 *   prefix:HEX (nodekey:, mkey:, discokey:...) -> prefix:{key}
 *   hex >= 8 chars with a digit, or >= 16      -> {hex}
 *   base64-ish >= 20 chars with letter + digit -> {tok}
 *
 * The query string is dropped; gRPC paths (/package.Service/Method) carry no
 * ids and are kept. Users add their own rules (POSIX regex) for the shapes
 * this misses; they run first.
 */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/error.h"
#include "an_fold.h"

/* Paths are cut to this before folding: a group key never needs more. */
#define FOLD_SCRATCH 2048

struct fold_rule {
    regex_t re;
    char *tmpl;
};

struct an_folder {
    struct fold_rule *rules;
    size_t n_rules;
};

int an_folder_new(struct an_folder **out, const char *const *rules, size_t n_rules, char *errbuf,
                  size_t errlen)
{
    int rc = 0;
    struct an_folder *f = calloc(1, sizeof(*f));
    if (!f)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    if (n_rules) {
        f->rules = calloc(n_rules, sizeof(*f->rules));
        if (!f->rules) {
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    for (size_t i = 0; i < n_rules; i++) {
        const char *eq = strrchr(rules[i], '=');
        if (!eq || eq == rules[i]) {
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                            "--fold-rule '%s': expected REGEX=TEMPLATE", rules[i]);
            goto fail;
        }
        size_t relen = (size_t)(eq - rules[i]);
        char *re = malloc(relen + 1);
        f->rules[i].tmpl = strdup(eq + 1);
        if (!re || !f->rules[i].tmpl) {
            free(re);
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
            goto fail;
        }
        memcpy(re, rules[i], relen);
        re[relen] = '\0';
        int rerr = regcomp(&f->rules[i].re, re, REG_EXTENDED);
        free(re);
        if (rerr) {
            char msg[128];
            regerror(rerr, &f->rules[i].re, msg, sizeof(msg));
            free(f->rules[i].tmpl);
            f->rules[i].tmpl = NULL;
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "--fold-rule '%s': %s", rules[i], msg);
            goto fail;
        }
        f->n_rules = i + 1;
    }
    *out = f;
    return 0;
fail:
    an_folder_free(f);
    return rc;
}

void an_folder_free(struct an_folder *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_rules; i++) {
        regfree(&f->rules[i].re);
        free(f->rules[i].tmpl);
    }
    free(f->rules);
    free(f);
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_b64(char c)
{
    return is_alpha(c) || is_digit(c) || c == '+' || c == '=' || c == '_' || c == '-';
}

static int all_of(const char *s, size_t n, int (*pred)(char))
{
    for (size_t i = 0; i < n; i++)
        if (!pred(s[i]))
            return 0;
    return 1;
}

static int any_of(const char *s, size_t n, int (*pred)(char))
{
    for (size_t i = 0; i < n; i++)
        if (pred(s[i]))
            return 1;
    return 0;
}

static int is_uuid(const char *s, size_t n)
{
    if (n != 36)
        return 0;
    for (size_t i = 0; i < n; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !is_hex(s[i]))
            return 0;
    }
    return 1;
}

static int is_hex_id(const char *s, size_t n)
{
    return n >= 8 && all_of(s, n, is_hex) && (n >= 16 || any_of(s, n, is_digit));
}

/* Length of "prefix:" when s is a Tailscale-style key (lower-case prefix, hex >= 8), else 0. */
static size_t key_prefix_len(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && i < 24 && ((s[i] >= 'a' && s[i] <= 'z') || (i > 0 && is_digit(s[i]))))
        i++;
    if (i == 0 || i >= n || s[i] != ':')
        return 0;
    return n - i - 1 >= 8 && all_of(s + i + 1, n - i - 1, is_hex) ? i + 1 : 0;
}

struct sbuf {
    char *p;
    size_t cap;
    size_t len;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n && b->len + 1 < b->cap; i++)
        b->p[b->len++] = s[i];
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

size_t an_fold_id(const char *s, size_t n, char *out, size_t cap)
{
    struct sbuf b = {out, cap, 0};
    size_t kp = n ? key_prefix_len(s, n) : 0;
    if (cap == 0 || n == 0)
        return 0;
    out[0] = '\0';
    if (all_of(s, n, is_digit)) {
        sb_puts(&b, "{n}");
    } else if (is_uuid(s, n)) {
        sb_puts(&b, "{uuid}");
    } else if (kp != 0) {
        sb_put(&b, s, kp);
        sb_puts(&b, "{key}");
    } else if (is_hex_id(s, n)) {
        sb_puts(&b, "{hex}");
    } else if (n >= 20 && all_of(s, n, is_b64) && any_of(s, n, is_digit) &&
               any_of(s, n, is_alpha)) {
        sb_puts(&b, "{tok}");
    }
    return b.len;
}

static void fold_segment(struct sbuf *b, const char *s, size_t n)
{
    char id[64];
    size_t il = an_fold_id(s, n, id, sizeof(id));
    if (il)
        sb_put(b, id, il);
    else
        sb_put(b, s, n);
}

/* Applies one user rule to src (global, non-overlapping) into dst. */
static void apply_rule(const struct fold_rule *r, const char *src, struct sbuf *dst)
{
    const char *p = src;
    int eflags = 0;
    dst->len = 0;
    dst->p[0] = '\0';
    while (*p) {
        regmatch_t m[10];
        if (regexec(&r->re, p, 10, m, eflags) != 0)
            break;
        sb_put(dst, p, (size_t)m[0].rm_so);
        for (const char *t = r->tmpl; *t; t++) {
            if (t[0] == '\\' && is_digit(t[1])) {
                int g = t[1] - '0';
                if (m[g].rm_so >= 0)
                    sb_put(dst, p + m[g].rm_so, (size_t)(m[g].rm_eo - m[g].rm_so));
                t++;
            } else {
                sb_put(dst, t, 1);
            }
        }
        if (m[0].rm_eo == m[0].rm_so) {
            /* empty match: copy one char and move on, or we would loop forever */
            if (!p[m[0].rm_eo])
                break;
            sb_put(dst, p + m[0].rm_eo, 1);
            p += m[0].rm_eo + 1;
        } else {
            p += m[0].rm_eo;
        }
        eflags = REG_NOTBOL;
    }
    sb_puts(dst, p);
}

static void copy_out(const char *s, size_t n, char *out, size_t cap)
{
    if (cap < 8) {
        if (cap)
            out[0] = '\0';
        return;
    }
    if (n + 1 > cap) {
        n = cap - 4;
        memcpy(out, s, n);
        memcpy(out + n, "...", 4);
        return;
    }
    memcpy(out, s, n);
    out[n] = '\0';
}

size_t an_fold_path(const struct an_folder *f, const char *path, int grpc, char *out, size_t cap)
{
    char a[FOLD_SCRATCH], b[FOLD_SCRATCH];
    struct sbuf sa = {a, sizeof(a), 0}, sb = {b, sizeof(b), 0};
    if (!path)
        path = "";
    /* cut the query and fragment; make it printable ASCII */
    size_t n = 0;
    for (; path[n] && path[n] != '?' && path[n] != '#' && n + 1 < sizeof(a); n++) {
        unsigned char c = (unsigned char)path[n];
        a[n] = c > 0x20 && c < 0x7f ? (char)c : '?';
    }
    a[n] = '\0';
    sa.len = n;
    if (n == 0) {
        copy_out("/", 1, out, cap);
        return strlen(out);
    }
    if (grpc) {
        copy_out(a, n, out, cap);
        return strlen(out);
    }
    struct sbuf *cur = &sa, *other = &sb;
    for (size_t i = 0; f && i < f->n_rules; i++) {
        apply_rule(&f->rules[i], cur->p, other);
        struct sbuf *t = cur;
        cur = other;
        other = t;
    }
    other->len = 0;
    other->p[0] = '\0';
    const char *s = cur->p;
    size_t len = strlen(s), start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '/') {
            fold_segment(other, s + start, i - start);
            if (i < len)
                sb_put(other, "/", 1);
            start = i + 1;
        }
    }
    copy_out(other->p, other->len, out, cap);
    return strlen(out);
}

size_t an_fold_key(const struct an_folder *f, const char *method, const char *path, int grpc,
                   char *out, size_t cap)
{
    /* no snprintf: this runs once per exchange */
    size_t n = 0;
    if (cap < 16) {
        if (cap)
            out[0] = '\0';
        return 0;
    }
    for (; method && method[n] && n < 23; n++) {
        unsigned char c = (unsigned char)method[n];
        out[n] = c > 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (n == 0)
        out[n++] = '?';
    out[n++] = ' ';
    return n + an_fold_path(f, path, grpc, out + n, cap - n);
}
