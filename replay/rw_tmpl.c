/*
 * Value templates: the right-hand side of a rewrite rule compiled once into
 * a list of parts (literal text, {{orig}}, {{unique}}, {{var:NAME}}, \1 ...)
 * so a request only concatenates. Escapes are resolved here, with the column
 * of any mistake, because the rules file is written by hand.
 */
#include <stdlib.h>
#include <string.h>

#include "rw_internal.h"

static int var_name_byte(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

static void add_part(struct rw_tmpl *t, int kind, size_t off, size_t len, int group)
{
    struct rw_tpart *p = &t->parts[t->n_parts++];
    p->kind = kind;
    p->off = off;
    p->len = len;
    p->group = group;
    p->enc = RW_ENC_NONE;
}

/* Appends one literal byte, extending the previous literal part when it ends here. */
static void add_lit(struct rw_tmpl *t, size_t *tl, char c)
{
    struct rw_tpart *last = t->n_parts ? &t->parts[t->n_parts - 1] : NULL;
    t->text[*tl] = c;
    if (last && last->kind == RW_TP_LIT && last->off + last->len == *tl)
        last->len++;
    else
        add_part(t, RW_TP_LIT, *tl, 1, 0);
    (*tl)++;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Splits a trailing `|url` or `|json` off name[0..*n). Returns the encoding or -1. */
static int func_filter(const char *name, size_t *n)
{
    const char *bar = memchr(name, '|', *n);
    if (!bar)
        return RW_ENC_NONE;
    size_t flen = *n - (size_t)(bar - name) - 1;
    *n = (size_t)(bar - name);
    if (flen == 3 && memcmp(bar + 1, "url", 3) == 0)
        return RW_ENC_URL;
    if (flen == 4 && memcmp(bar + 1, "json", 4) == 0)
        return RW_ENC_JSON;
    return -1;
}

/* Compiles the function between "{{" and "}}": name[0..n). */
static int add_func(struct rw_tmpl *t, size_t *tl, const char *name, size_t n, const char **err_msg)
{
    static const struct {
        const char *name;
        int kind;
    } funcs[] = {{"orig", RW_TP_ORIG},
                 {"unique", RW_TP_UNIQUE},
                 {"run", RW_TP_RUN},
                 {"seq", RW_TP_SEQ},
                 {"uuid", RW_TP_UUID}};

    int enc = func_filter(name, &n);
    if (enc < 0) {
        *err_msg = "unknown filter (|url or |json)";
        return H2R_ERR_FORMAT;
    }
    for (size_t i = 0; i < sizeof(funcs) / sizeof(funcs[0]); i++) {
        if (strlen(funcs[i].name) == n && memcmp(funcs[i].name, name, n) == 0) {
            add_part(t, funcs[i].kind, 0, 0, 0);
            t->parts[t->n_parts - 1].enc = enc;
            if (funcs[i].kind == RW_TP_ORIG)
                t->uses_orig = 1;
            return 0;
        }
    }
    if (n < 4 || memcmp(name, "var:", 4) != 0) {
        *err_msg = "unknown template function (orig, unique, run, seq, uuid, var:NAME)";
        return H2R_ERR_FORMAT;
    }
    name += 4;
    n -= 4;
    if (n == 0 || n > RW_MAX_NAME) {
        *err_msg = "variable name must have 1 to 256 bytes";
        return H2R_ERR_FORMAT;
    }
    for (size_t i = 0; i < n; i++) {
        if (!var_name_byte(name[i])) {
            *err_msg = "variable names use A-Z a-z 0-9 _ - .";
            return H2R_ERR_FORMAT;
        }
    }
    memcpy(t->text + *tl, name, n);
    add_part(t, RW_TP_VAR, *tl, n, 0);
    t->parts[t->n_parts - 1].enc = enc;
    *tl += n;
    return 0;
}

int rw_tmpl_compile(struct rw_tmpl *t, const char *src, size_t len, unsigned col, unsigned *err_col,
                    const char **err_msg)
{
    int rc = H2R_ERR_FORMAT;
    size_t tl = 0;
    size_t i = 0;

    memset(t, 0, sizeof(*t));
    t->max_group = -1;
    t->text = malloc(len + 1);
    t->parts = calloc(len + 1, sizeof(*t->parts));
    if (!t->text || !t->parts) {
        rc = H2R_ERR_NOMEM;
        goto fail;
    }
    while (i < len) {
        char c = src[i];
        if (c == '\\') {
            if (i + 1 >= len) {
                *err_msg = "backslash at the end of the value";
                goto fail_at;
            }
            char e = src[i + 1];
            if (e >= '0' && e <= '9') {
                add_part(t, RW_TP_GROUP, 0, 0, e - '0');
                if (e - '0' > t->max_group)
                    t->max_group = e - '0';
                i += 2;
                continue;
            }
            if (e == 'x') {
                int hi = i + 2 < len ? hexval(src[i + 2]) : -1;
                int lo = i + 3 < len ? hexval(src[i + 3]) : -1;
                if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                    *err_msg = "\\x needs two hex digits (not 00)";
                    goto fail_at;
                }
                add_lit(t, &tl, (char)(hi * 16 + lo));
                i += 4;
                continue;
            }
            const char *from = "\\\"nrt{}";
            const char *to = "\\\"\n\r\t{}";
            const char *hit = e ? strchr(from, e) : NULL;
            if (!hit) {
                *err_msg = "unknown escape (use \\\\ \\\" \\n \\r \\t \\{ \\} \\xHH \\0-\\9)";
                goto fail_at;
            }
            add_lit(t, &tl, to[hit - from]);
            i += 2;
            continue;
        }
        if (c == '{' && i + 1 < len && src[i + 1] == '{') {
            size_t j = i + 2;
            while (j + 1 < len && !(src[j] == '}' && src[j + 1] == '}'))
                j++;
            if (j + 1 >= len) {
                *err_msg = "'{{' without '}}' (write \\{ for a literal brace)";
                goto fail_at;
            }
            rc = add_func(t, &tl, src + i + 2, j - i - 2, err_msg);
            if (rc != 0)
                goto fail_at;
            i = j + 2;
            continue;
        }
        add_lit(t, &tl, c);
        i++;
    }
    t->text[tl] = '\0';
    return 0;

fail_at:
    rc = H2R_ERR_FORMAT;
    *err_col = col + (unsigned)i;
fail:
    rw_tmpl_free(t);
    return rc;
}

void rw_tmpl_free(struct rw_tmpl *t)
{
    free(t->text);
    free(t->parts);
    memset(t, 0, sizeof(*t));
    t->max_group = -1;
}
