/*
 * Rewrite rules: the parser of the rules file (docs/rewrite-rules.md), the
 * static variables of --set and --set-file, and the pre-flight check that
 * every exchange can be filled before the first request is sent.
 *
 * The rules file is line based and written by hand, so every mistake is
 * reported as file:line:column. Everything a request needs is compiled here
 * (regexes, selectors, value templates); rw_apply.c only executes. Regexes
 * are POSIX extended; back-references and large repetition counts are
 * refused because glibc's matcher is exponential or huge on them, and the
 * rules file is fuzzed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rw_internal.h"

#define MAX_TOKS 64
#define MAX_REGEX 1024
#define MAX_REPEAT 255
#define MAX_REGEX_NODES 20000u /* estimated compiled size, see regex_precheck() */
#define MAX_REGEX_LOOPS 10u    /* repeated groups holding repetitions, see regex_precheck() */
#define MAX_REGEX_DEPTH 64

struct tok {
    const char *p; /* content; for quoted tokens without the quotes, escapes kept */
    size_t len;
    unsigned col; /* 1-based column of the token's first byte (the quote if quoted) */
    int quoted;
};

struct pstate {
    struct rw_ruleset *rs;
    const char *origin;
    unsigned line;
    struct tok toks[MAX_TOKS];
    size_t n;
    size_t i;
    char *errbuf;
    size_t errlen;
};

static int perr(struct pstate *ps, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int perr(struct pstate *ps, unsigned col, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return h2r_seterr(ps->errbuf, ps->errlen, H2R_ERR_FORMAT, "%s:%u:%u: %s", ps->origin, ps->line,
                      col, msg);
}

/* Column just past the last token, for "missing X" messages. */
static unsigned end_col(const struct pstate *ps)
{
    if (ps->n == 0)
        return 1;
    const struct tok *t = &ps->toks[ps->n - 1];
    return t->col + (unsigned)t->len + (t->quoted ? 2u : 0u);
}

/* ---- lexer ---- */

static int lex_line(struct pstate *ps, const char *line, size_t len)
{
    size_t i = 0;
    ps->n = 0;
    ps->i = 0;
    for (size_t k = 0; k < len; k++) {
        uint8_t c = (uint8_t)line[k];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return perr(ps, (unsigned)k + 1, "control byte 0x%02x", c);
    }
    for (;;) {
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i >= len || line[i] == '#')
            return 0;
        if (ps->n == MAX_TOKS)
            return perr(ps, (unsigned)i + 1, "more than %d words on a line", MAX_TOKS);
        struct tok *t = &ps->toks[ps->n];
        if (line[i] == '"') {
            size_t j = i + 1;
            while (j < len && line[j] != '"')
                j += (line[j] == '\\' && j + 1 < len) ? 2 : 1;
            if (j >= len)
                return perr(ps, (unsigned)i + 1, "unterminated string");
            t->p = line + i + 1;
            t->len = j - i - 1;
            t->col = (unsigned)i + 1;
            t->quoted = 1;
            i = j + 1;
            if (i < len && line[i] != ' ' && line[i] != '\t')
                return perr(ps, (unsigned)i + 1, "expected a space after the closing quote");
        } else {
            size_t start = i;
            while (i < len && line[i] != ' ' && line[i] != '\t') {
                if (line[i] == '[' && i + 1 < len && line[i + 1] == '"') {
                    /* a quoted key inside a selector: ["key with spaces"] */
                    size_t q = i;
                    i += 2;
                    while (i < len && line[i] != '"')
                        i += (line[i] == '\\' && i + 1 < len) ? 2 : 1;
                    if (i >= len)
                        return perr(ps, (unsigned)q + 2, "unterminated quoted key");
                }
                i++;
            }
            t->p = line + start;
            t->len = i - start;
            t->col = (unsigned)start + 1;
            t->quoted = 0;
        }
        ps->n++;
    }
}

static const struct tok *peek(const struct pstate *ps)
{
    return ps->i < ps->n ? &ps->toks[ps->i] : NULL;
}

static int tok_is(const struct tok *t, const char *word)
{
    return t && !t->quoted && t->len == strlen(word) && memcmp(t->p, word, t->len) == 0;
}

/* Column of the first content byte. */
static unsigned tok_ccol(const struct tok *t)
{
    return t->col + (t->quoted ? 1u : 0u);
}

/* Next token, or an error naming what was expected. */
static int need(struct pstate *ps, const char *what, const struct tok **out)
{
    const struct tok *t = peek(ps);
    if (!t)
        return perr(ps, end_col(ps), "missing %s", what);
    ps->i++;
    *out = t;
    return 0;
}

/* Copies a token's text, resolving \" and \\ in quoted tokens. Caller frees. */
static char *tok_text(const struct tok *t, size_t *len)
{
    char *s = malloc(t->len + 1);
    size_t n = 0;
    if (!s)
        return NULL;
    for (size_t i = 0; i < t->len; i++) {
        if (t->quoted && t->p[i] == '\\' && i + 1 < t->len &&
            (t->p[i + 1] == '"' || t->p[i + 1] == '\\'))
            i++;
        s[n++] = t->p[i];
    }
    s[n] = '\0';
    *len = n;
    return s;
}

/* ---- pieces of statements ---- */

static int tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int var_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > RW_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

/* Header name: lower-cased; pseudo-headers only the request ones. */
static int parse_hdr_name(struct pstate *ps, const struct tok *t, char **out, size_t *out_len)
{
    static const char *const pseudo[] = {":method", ":scheme", ":authority", ":path", ":protocol"};
    if (t->quoted || t->len == 0 || t->len > RW_MAX_NAME)
        return perr(ps, t->col, "expected a header name (bare word, up to 256 bytes)");
    size_t from = t->p[0] == ':' ? 1 : 0;
    if (from == t->len)
        return perr(ps, t->col, "empty header name");
    for (size_t i = from; i < t->len; i++) {
        if (!tchar(t->p[i]))
            return perr(ps, t->col + (unsigned)i, "byte not allowed in a header name");
    }
    char *s = malloc(t->len + 1);
    if (!s)
        return H2R_ERR_NOMEM;
    for (size_t i = 0; i < t->len; i++) {
        char c = t->p[i];
        s[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    s[t->len] = '\0';
    if (from) {
        int known = 0;
        for (size_t i = 0; i < sizeof(pseudo) / sizeof(pseudo[0]); i++)
            known |= strcmp(s, pseudo[i]) == 0;
        if (!known) {
            free(s);
            return perr(ps, t->col, "unknown request pseudo-header");
        }
    }
    *out = s;
    *out_len = t->len;
    return 0;
}

/* Estimated cost of a piece of regex, see regex_precheck(). */
struct re_cost {
    unsigned long size;  /* compiled nodes */
    unsigned long loops; /* repeated groups that hold a repetition: (x*)* */
};

struct re_frame {
    struct re_cost alts; /* finished alternatives */
    struct re_cost cur;  /* current alternative */
    struct re_cost last; /* last atom, for a following quantifier */
    int has_q;           /* a quantifier somewhere inside */
    int last_group_q;    /* the last atom is a group with a quantifier inside */
};

/*
 * glibc compiles `x+` as `xx*` and `x{n,m}` as m copies of x, so nested
 * repetitions grow the tree exponentially (`((a+)+)+...`), and its compile
 * time explodes on repeated groups that can loop on nothing once an anchor
 * is about (`(^|/)(a*)*(b*)*...`, `x$a***...`). This estimates both (copies
 * multiply through nesting, alternatives add up) and refuses patterns above
 * MAX_REGEX_NODES or MAX_REGEX_LOOPS, stacked quantifiers (undefined in
 * POSIX), back-references (exponential matching) and repetition counts
 * above MAX_REPEAT.
 */
static int regex_precheck(const char *s, size_t n, size_t *bad, const char **why)
{
    struct re_frame st[MAX_REGEX_DEPTH];
    size_t depth = 0;
    size_t i = 0;
    int prev_quant = 0;

    memset(&st[0], 0, sizeof(st[0]));
    while (i < n) {
        struct re_frame *f = &st[depth];
        char c = s[i];
        unsigned long copies = 0; /* > 0: c is a quantifier */
        int repeats = 0;          /* the quantifier loops (not '?') */
        size_t next = i + 1;

        if (c == '\\') {
            if (i + 1 < n && s[i + 1] >= '1' && s[i + 1] <= '9') {
                *bad = i;
                *why = "back-references are not supported";
                return -1;
            }
            next = i + 2;
        } else if (c == '[') {
            size_t j = i + 1;
            if (j < n && s[j] == '^')
                j++;
            if (j < n && s[j] == ']')
                j++;
            while (j < n && s[j] != ']') {
                if (s[j] == '[' && j + 1 < n && strchr(":.=", s[j + 1])) {
                    char close = s[j + 1];
                    j += 2;
                    while (j + 1 < n && !(s[j] == close && s[j + 1] == ']'))
                        j++;
                    j += 2;
                    continue;
                }
                j++;
            }
            next = j + 1;
        } else if (c == '(') {
            if (depth + 1 >= MAX_REGEX_DEPTH) {
                *bad = i;
                *why = "groups nested too deep";
                return -1;
            }
            depth++;
            memset(&st[depth], 0, sizeof(st[depth]));
            prev_quant = 0;
            i = next;
            continue;
        } else if (c == ')' && depth > 0) {
            struct re_cost g = {f->alts.size + f->cur.size, f->alts.loops + f->cur.loops};
            int inner_q = f->has_q;
            depth--;
            f = &st[depth];
            f->last.size = g.size ? g.size : 1;
            f->last.loops = g.loops;
            f->cur.size += f->last.size;
            f->cur.loops += f->last.loops;
            f->has_q |= inner_q;
            f->last_group_q = inner_q;
            prev_quant = 0;
            i = next;
            continue;
        } else if (c == '|') {
            f->alts.size += f->cur.size;
            f->alts.loops += f->cur.loops;
            memset(&f->cur, 0, sizeof(f->cur));
            memset(&f->last, 0, sizeof(f->last));
            f->last_group_q = 0;
            prev_quant = 0;
            i = next;
            continue;
        } else if (c == '*' || c == '?') {
            copies = 1;
            repeats = c == '*';
        } else if (c == '+') {
            copies = 2;
            repeats = 1;
        } else if (c == '{') {
            unsigned long lo = 0, hi = 0;
            size_t j = i + 1;
            while (j < n && s[j] >= '0' && s[j] <= '9' && lo <= MAX_REPEAT)
                lo = lo * 10 + (unsigned long)(s[j++] - '0');
            hi = lo;
            if (j < n && s[j] == ',') {
                j++;
                hi = lo + 1; /* {n,} is n copies and a star */
                if (j < n && s[j] >= '0' && s[j] <= '9') {
                    hi = 0;
                    while (j < n && s[j] >= '0' && s[j] <= '9' && hi <= MAX_REPEAT)
                        hi = hi * 10 + (unsigned long)(s[j++] - '0');
                }
            }
            if (lo > MAX_REPEAT || hi > MAX_REPEAT + 1) {
                *bad = i;
                *why = "repetition count above 255";
                return -1;
            }
            copies = hi > lo ? hi : lo;
            if (copies == 0)
                copies = 1;
            repeats = 1;
            next = j < n && s[j] == '}' ? j + 1 : j;
        }
        if (copies && prev_quant) {
            *bad = i;
            *why = "stacked repetition operators (a** or a+?) are not supported";
            return -1;
        }
        prev_quant = copies != 0;
        if (copies) {
            struct re_cost grown = {f->last.size * copies, f->last.loops * copies};
            if (repeats && f->last_group_q)
                grown.loops += copies;
            f->cur.size += grown.size - f->last.size;
            f->cur.loops += grown.loops - f->last.loops;
            f->last = grown;
            f->has_q = 1;
        } else {
            f->last.size = 1;
            f->last.loops = 0;
            f->cur.size += 1;
        }
        f->last_group_q = 0;
        if (f->cur.size + f->alts.size > MAX_REGEX_NODES) {
            *bad = i;
            *why = "repetitions make this regex too large (nested + or {n,m})";
            return -1;
        }
        if (f->cur.loops + f->alts.loops > MAX_REGEX_LOOPS) {
            *bad = i;
            *why = "too many repeated groups that hold repetitions, as in (a*)*";
            return -1;
        }
        i = next;
    }
    return 0;
}

static int compile_re(struct pstate *ps, const struct tok *t, regex_t *re)
{
    char *s = malloc(t->len + 1);
    size_t n = 0;
    int rc = 0;
    if (!s)
        return H2R_ERR_NOMEM;
    for (size_t i = 0; i < t->len; i++) {
        if (t->quoted && t->p[i] == '\\' && i + 1 < t->len && t->p[i + 1] == '"')
            i++; /* \" is the only escape the rules file resolves in a regex */
        s[n++] = t->p[i];
    }
    s[n] = '\0';
    if (n == 0) {
        rc = perr(ps, t->col, "empty regex");
        goto out;
    }
    if (n > MAX_REGEX) {
        rc = perr(ps, t->col, "regex longer than %d bytes", MAX_REGEX);
        goto out;
    }
    size_t bad = 0;
    const char *why = NULL;
    if (regex_precheck(s, n, &bad, &why) != 0) {
        rc = perr(ps, tok_ccol(t) + (unsigned)bad, "%s", why);
        goto out;
    }
    int e = regcomp(re, s, REG_EXTENDED);
    if (e != 0) {
        char msg[128];
        regerror(e, re, msg, sizeof(msg));
        rc = perr(ps, t->col, "bad regex: %s", msg);
        goto out;
    }
out:
    free(s);
    return rc;
}

static int compile_tmpl(struct pstate *ps, const struct tok *t, struct rw_tmpl *tm)
{
    unsigned col = 0;
    const char *msg = NULL;
    int rc = rw_tmpl_compile(tm, t->p, t->len, tok_ccol(t), &col, &msg);
    if (rc == H2R_ERR_FORMAT)
        return perr(ps, col, "%s", msg);
    return rc;
}

static int parse_methods(struct pstate *ps, struct rw_cond *c, const struct tok *t)
{
    if (t->quoted || t->len == 0)
        return perr(ps, t->col, "expected methods, as in GET or POST,PUT");
    size_t count = 1;
    for (size_t i = 0; i < t->len; i++)
        count += t->p[i] == ',';
    c->methods = calloc(count, sizeof(*c->methods));
    if (!c->methods)
        return H2R_ERR_NOMEM;
    size_t start = 0;
    for (size_t i = 0; i <= t->len; i++) {
        if (i < t->len && t->p[i] != ',')
            continue;
        size_t len = i - start;
        if (len == 0 || len > 32)
            return perr(ps, t->col + (unsigned)start, "empty or too long method");
        char *m = malloc(len + 1);
        if (!m)
            return H2R_ERR_NOMEM;
        c->methods[c->n_methods++] = m;
        for (size_t k = 0; k < len; k++) {
            char ch = t->p[start + k];
            if (!tchar(ch))
                return perr(ps, t->col + (unsigned)(start + k), "byte not allowed in a method");
            m[k] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 'a' + 'A') : ch;
        }
        m[len] = '\0';
        start = i + 1;
    }
    return 0;
}

static int parse_status(struct pstate *ps, struct rw_cond *c, const struct tok *t)
{
    if (!t->quoted && t->len == 3 && t->p[0] >= '1' && t->p[0] <= '5') {
        if (t->p[1] == 'x' && t->p[2] == 'x') {
            c->status_lo = (t->p[0] - '0') * 100;
            c->status_hi = c->status_lo + 99;
            return 0;
        }
        if (t->p[1] >= '0' && t->p[1] <= '9' && t->p[2] >= '0' && t->p[2] <= '9') {
            c->status_lo = (t->p[0] - '0') * 100 + (t->p[1] - '0') * 10 + (t->p[2] - '0');
            c->status_hi = c->status_lo;
            return 0;
        }
    }
    return perr(ps, t->col, "expected a status such as 200 or 2xx");
}

/* Optional trailing `when method M[,M] path REGEX [status S]`. */
static int parse_when(struct pstate *ps, struct rw_rule *r, int allow_status)
{
    const struct tok *t = peek(ps);
    int rc;
    if (!t)
        return 0;
    if (!tok_is(t, "when"))
        return perr(ps, t->col, "unexpected '%.*s' (conditions start with 'when')",
                    (int)(t->len > 40 ? 40 : t->len), t->p);
    ps->i++;
    if (!peek(ps))
        return perr(ps, end_col(ps), "missing condition after 'when' (method, path%s)",
                    allow_status ? ", status" : "");
    for (t = peek(ps); t != NULL; t = peek(ps)) {
        const struct tok *arg = NULL;
        ps->i++;
        if (tok_is(t, "method")) {
            if (r->cond.n_methods)
                return perr(ps, t->col, "method given twice");
            rc = need(ps, "methods after 'method'", &arg);
            if (rc == 0)
                rc = parse_methods(ps, &r->cond, arg);
        } else if (tok_is(t, "path")) {
            if (r->cond.has_path)
                return perr(ps, t->col, "path given twice");
            rc = need(ps, "regex after 'path'", &arg);
            if (rc == 0)
                rc = compile_re(ps, arg, &r->cond.path_re);
            if (rc == 0)
                r->cond.has_path = 1;
        } else if (tok_is(t, "status") && allow_status) {
            if (r->cond.status_lo)
                return perr(ps, t->col, "status given twice");
            rc = need(ps, "status after 'status'", &arg);
            if (rc == 0)
                rc = parse_status(ps, &r->cond, arg);
        } else {
            return perr(ps, t->col, "unknown condition (method, path%s)",
                        allow_status ? ", status" : "");
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* `= VALUE`, `:= VALUE` or `delete`; json also takes `raw` before VALUE. */
static int parse_op_value(struct pstate *ps, struct rw_rule *r, int allow_raw)
{
    const struct tok *t = NULL;
    int rc = need(ps, "'=', ':=' or 'delete'", &t);
    if (rc != 0)
        return rc;
    if (tok_is(t, "delete")) {
        r->op = RW_OP_DELETE;
        return 0;
    }
    if (tok_is(t, "="))
        r->op = RW_OP_REPLACE;
    else if (tok_is(t, ":="))
        r->op = RW_OP_SET;
    else
        return perr(ps, t->col, "expected '=', ':=' or 'delete'");
    const struct tok *v = peek(ps);
    if (allow_raw && tok_is(v, "raw") && ps->i + 1 < ps->n) {
        r->raw = 1;
        ps->i++;
    }
    rc = need(ps, "value", &v);
    if (rc != 0)
        return rc;
    return compile_tmpl(ps, v, &r->tmpl);
}

/* The regex \N refers to: the rewrite regex of a path rule, else the path condition. */
static int check_groups(struct pstate *ps, const struct rw_rule *r, const struct tok *value)
{
    if (r->tmpl.max_group < 0)
        return 0;
    const regex_t *re = NULL;
    if (r->kind == RW_R_PATH)
        re = &r->re;
    else if (r->cond.has_path)
        re = &r->cond.path_re;
    if (!re)
        return perr(ps, tok_ccol(value), "\\N refers to a group of 'when path REGEX', absent");
    if ((size_t)r->tmpl.max_group > re->re_nsub)
        return perr(ps, tok_ccol(value), "\\%d but the regex has %zu group(s)", r->tmpl.max_group,
                    re->re_nsub);
    return 0;
}

/* ---- dynamic variables (capture / let) ---- */

static int register_dyn(struct rw_ruleset *rs, size_t ri, struct pstate *ps)
{
    struct rw_rule *r = &rs->rules[ri];
    size_t slot;
    if (!rw_map_get(&rs->dyn_map, r->name, r->name_len, &slot)) {
        struct rw_slot_info *ns = realloc(rs->slots, (rs->n_slots + 1) * sizeof(*ns));
        if (!ns)
            return H2R_ERR_NOMEM;
        rs->slots = ns;
        slot = rs->n_slots;
        if (rw_map_put(&rs->dyn_map, r->name, r->name_len, slot) != 0)
            return H2R_ERR_NOMEM;
        rs->slots[slot].name = r->name;
        rs->slots[slot].name_len = r->name_len;
        rs->slots[slot].let_rule = SIZE_MAX;
        rs->slots[slot].capture_rule = SIZE_MAX;
        rs->n_slots++;
    }
    struct rw_slot_info *si = &rs->slots[slot];
    if (r->kind == RW_R_LET) {
        if (si->let_rule != SIZE_MAX) {
            const struct rw_rule *prev = &rs->rules[si->let_rule];
            if (ps)
                return perr(ps, ps->toks[1].col, "'%s' already has a let at %s:%u", r->name,
                            prev->origin, prev->line);
            return H2R_ERR_FORMAT;
        }
        si->let_rule = ri;
    } else if (si->capture_rule == SIZE_MAX) {
        si->capture_rule = ri;
    }
    r->slot = slot;
    return 0;
}

static void rebuild_dyn(struct rw_ruleset *rs)
{
    rw_map_free(&rs->dyn_map);
    free(rs->slots);
    rs->slots = NULL;
    rs->n_slots = 0;
    rs->has_capture = 0;
    for (size_t i = 0; i < rs->n_rules; i++) {
        int k = rs->rules[i].kind;
        if (k == RW_R_CAPTURE)
            rs->has_capture = 1;
        /* can only fail on memory; the checker then reports the variable as unknown */
        if (k == RW_R_CAPTURE || k == RW_R_LET)
            (void)register_dyn(rs, i, NULL);
    }
}

/* ---- statements ---- */

static int parse_var_name(struct pstate *ps, struct rw_rule *r)
{
    const struct tok *t = NULL;
    int rc = need(ps, "variable name", &t);
    if (rc != 0)
        return rc;
    if (t->quoted || !var_name_ok(t->p, t->len))
        return perr(ps, t->col, "variable names are 1-256 bytes of A-Z a-z 0-9 _ - .");
    r->name = tok_text(t, &r->name_len);
    return r->name ? 0 : H2R_ERR_NOMEM;
}

static int stmt_header(struct pstate *ps, struct rw_rule *r)
{
    const struct tok *t = NULL;
    int rc = need(ps, "header name", &t);
    if (rc == 0)
        rc = parse_hdr_name(ps, t, &r->name, &r->name_len);
    if (rc == 0)
        rc = parse_op_value(ps, r, 0);
    if (rc != 0)
        return rc;
    if (r->name[0] == ':' && r->op != RW_OP_REPLACE)
        return perr(ps, t->col, "pseudo-headers can only be replaced with '='");
    return 0;
}

static int stmt_path(struct pstate *ps, struct rw_rule *r)
{
    const struct tok *t = NULL, *arrow = NULL, *v = NULL;
    int rc = need(ps, "regex", &t);
    if (rc == 0)
        rc = compile_re(ps, t, &r->re);
    if (rc != 0)
        return rc;
    r->has_re = 1;
    rc = need(ps, "'->'", &arrow);
    if (rc != 0)
        return rc;
    if (!tok_is(arrow, "->"))
        return perr(ps, arrow->col, "expected '->' between the regex and the replacement");
    rc = need(ps, "replacement", &v);
    if (rc == 0)
        rc = compile_tmpl(ps, v, &r->tmpl);
    return rc;
}

static int stmt_query(struct pstate *ps, struct rw_rule *r)
{
    const struct tok *t = NULL;
    int rc = need(ps, "query parameter name", &t);
    if (rc != 0)
        return rc;
    r->name = tok_text(t, &r->name_len);
    if (!r->name)
        return H2R_ERR_NOMEM;
    if (r->name_len == 0 || r->name_len > RW_MAX_NAME)
        return perr(ps, t->col, "query parameter name must have 1 to 256 bytes");
    for (size_t i = 0; i < r->name_len; i++) {
        char c = r->name[i];
        if (c == '&' || c == '=' || c == '#' || c == '?' || c == ' ' || c == '\t')
            return perr(ps, tok_ccol(t), "query parameter name holds one of & = # ? or a space");
    }
    return parse_op_value(ps, r, 0);
}

static int compile_sel(struct pstate *ps, const struct tok *t, struct rw_sel *sel)
{
    size_t len, off = 0;
    const char *msg = NULL;
    char *s = tok_text(t, &len);
    if (!s)
        return H2R_ERR_NOMEM;
    int rc = rw_sel_compile(sel, s, len, &off, &msg);
    free(s);
    if (rc == H2R_ERR_FORMAT)
        return perr(ps, tok_ccol(t) + (unsigned)off, "%s", msg);
    return rc;
}

static int stmt_json(struct pstate *ps, struct rw_rule *r)
{
    const struct tok *t = NULL;
    int rc = need(ps, "selector", &t);
    if (rc == 0)
        rc = compile_sel(ps, t, &r->sel);
    if (rc == 0)
        rc = parse_op_value(ps, r, 1);
    if (rc != 0)
        return rc;
    if (r->op == RW_OP_DELETE) {
        if (r->sel.n == 0)
            return perr(ps, t->col, "cannot delete the whole body");
        if (r->sel.steps[r->sel.n - 1].kind != RW_S_KEY &&
            r->sel.steps[r->sel.n - 1].kind != RW_S_INDEX)
            return perr(ps, t->col, "delete needs a selector ending in .key or [N]");
    }
    return 0;
}

static int stmt_capture(struct pstate *ps, struct rw_rule *r)
{
    const struct tok *t = NULL;
    int rc = parse_var_name(ps, r);
    if (rc == 0)
        rc = need(ps, "'from'", &t);
    if (rc != 0)
        return rc;
    if (!tok_is(t, "from"))
        return perr(ps, t->col, "expected 'from'");
    rc = need(ps, "'json' or 'header'", &t);
    if (rc != 0)
        return rc;
    if (tok_is(t, "json")) {
        r->src = RW_SRC_JSON;
        rc = need(ps, "selector", &t);
        if (rc == 0)
            rc = compile_sel(ps, t, &r->sel);
    } else if (tok_is(t, "header")) {
        r->src = RW_SRC_HEADER;
        rc = need(ps, "header name", &t);
        if (rc == 0)
            rc = parse_hdr_name(ps, t, &r->hdr, &r->hdr_len);
        if (rc == 0 && r->hdr[0] == ':')
            rc = perr(ps, t->col, "capture from a pseudo-header is not supported");
    } else {
        return perr(ps, t->col, "expected 'json' or 'header'");
    }
    if (rc != 0)
        return rc;
    if (tok_is(peek(ps), "match")) {
        ps->i++;
        rc = need(ps, "regex after 'match'", &t);
        if (rc == 0)
            rc = compile_re(ps, t, &r->re);
        if (rc != 0)
            return rc;
        r->has_re = 1;
    }
    return 0;
}

static int stmt_let(struct pstate *ps, struct rw_rule *r)
{
    const struct tok *t = NULL;
    int rc = parse_var_name(ps, r);
    if (rc == 0)
        rc = need(ps, "'='", &t);
    if (rc != 0)
        return rc;
    if (!tok_is(t, "="))
        return perr(ps, t->col, "expected '='");
    rc = need(ps, "value", &t);
    if (rc == 0)
        rc = compile_tmpl(ps, t, &r->tmpl);
    if (rc != 0)
        return rc;
    if (r->tmpl.uses_orig)
        return perr(ps, tok_ccol(t), "{{orig}} has no meaning in a let");
    if (r->tmpl.max_group >= 0)
        return perr(ps, tok_ccol(t), "\\N has no meaning in a let");
    if (peek(ps))
        return perr(ps, peek(ps)->col, "a let takes no conditions");
    return 0;
}

static void cond_free(struct rw_cond *c)
{
    for (size_t i = 0; i < c->n_methods; i++)
        free(c->methods[i]);
    free(c->methods);
    if (c->has_path)
        regfree(&c->path_re);
    memset(c, 0, sizeof(*c));
}

static void rule_free(struct rw_rule *r)
{
    free(r->name);
    free(r->hdr);
    if (r->has_re)
        regfree(&r->re);
    rw_sel_free(&r->sel);
    rw_tmpl_free(&r->tmpl);
    cond_free(&r->cond);
    memset(r, 0, sizeof(*r));
}

/* Parses one tokenized statement into a new rule. */
static int parse_stmt(struct pstate *ps)
{
    struct rw_ruleset *rs = ps->rs;
    const struct tok *kw = &ps->toks[0];
    int rc;

    if (rs->n_rules >= RW_MAX_RULES)
        return h2r_seterr(ps->errbuf, ps->errlen, H2R_ERR_LIMIT, "%s:%u:1: more than %u rules",
                          ps->origin, ps->line, RW_MAX_RULES);
    if (rs->n_rules == rs->cap_rules) {
        size_t ncap = rs->cap_rules ? rs->cap_rules * 2 : 16;
        struct rw_rule *nr = realloc(rs->rules, ncap * sizeof(*nr));
        if (!nr)
            return H2R_ERR_NOMEM;
        rs->rules = nr;
        rs->cap_rules = ncap;
    }
    struct rw_rule *r = &rs->rules[rs->n_rules];
    memset(r, 0, sizeof(*r));
    r->tmpl.max_group = -1;
    r->origin = rs->origins[rs->n_origins - 1];
    r->line = ps->line;
    ps->i = 1;

    const struct tok *value = NULL;
    if (tok_is(kw, "header")) {
        r->kind = RW_R_HEADER;
        rc = stmt_header(ps, r);
    } else if (tok_is(kw, "path")) {
        r->kind = RW_R_PATH;
        rc = stmt_path(ps, r);
    } else if (tok_is(kw, "query")) {
        r->kind = RW_R_QUERY;
        rc = stmt_query(ps, r);
    } else if (tok_is(kw, "json")) {
        r->kind = RW_R_JSON;
        rc = stmt_json(ps, r);
    } else if (tok_is(kw, "capture")) {
        r->kind = RW_R_CAPTURE;
        rc = stmt_capture(ps, r);
    } else if (tok_is(kw, "let")) {
        r->kind = RW_R_LET;
        rc = stmt_let(ps, r);
    } else {
        rc = perr(ps, kw->col, "unknown statement '%.*s' (header, path, query, json, capture, let)",
                  (int)(kw->len > 40 ? 40 : kw->len), kw->p);
    }
    if (rc == 0 && r->kind != RW_R_CAPTURE && r->kind != RW_R_LET)
        value = &ps->toks[ps->i - 1];
    if (rc == 0 && r->kind != RW_R_LET)
        rc = parse_when(ps, r, r->kind == RW_R_CAPTURE);
    if (rc == 0 && value && r->op != RW_OP_DELETE)
        rc = check_groups(ps, r, value);
    if (rc == 0 && (r->kind == RW_R_CAPTURE || r->kind == RW_R_LET))
        rc = register_dyn(rs, rs->n_rules, ps);
    if (rc != 0) {
        rule_free(r);
        return rc;
    }
    if (r->kind == RW_R_CAPTURE)
        rs->has_capture = 1;
    rs->n_rules++;
    return 0;
}

int rw_ruleset_new(struct rw_ruleset **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : H2R_ERR_NOMEM;
}

int rw_ruleset_parse(struct rw_ruleset *rs, const char *text, size_t len, const char *origin,
                     char *errbuf, size_t errlen)
{
    struct pstate *ps = NULL;
    size_t before = rs->n_rules;
    int rc = 0;

    if (!origin)
        origin = "rules";
    char **no = realloc(rs->origins, (rs->n_origins + 1) * sizeof(*no));
    if (!no)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    rs->origins = no;
    rs->origins[rs->n_origins] = strdup(origin);
    if (!rs->origins[rs->n_origins])
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    rs->n_origins++;

    ps = calloc(1, sizeof(*ps));
    if (!ps) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
        goto out;
    }
    ps->rs = rs;
    ps->origin = rs->origins[rs->n_origins - 1];
    ps->errbuf = errbuf;
    ps->errlen = errlen;

    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t llen = end - pos;
        ps->line++;
        if (llen > 0 && text[pos + llen - 1] == '\r')
            llen--;
        if (llen > RW_MAX_LINE) {
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_LIMIT, "%s:%u:%u: line longer than %u bytes",
                            ps->origin, ps->line, RW_MAX_LINE + 1, RW_MAX_LINE);
            goto out;
        }
        rc = lex_line(ps, text + pos, llen);
        if (rc == 0 && ps->n > 0)
            rc = parse_stmt(ps);
        if (rc != 0) {
            if (rc == H2R_ERR_NOMEM)
                h2r_seterr(errbuf, errlen, rc, "%s:%u: out of memory", ps->origin, ps->line);
            goto out;
        }
        pos = end + 1;
    }
out:
    if (rc != 0 && rs->n_rules > before) {
        while (rs->n_rules > before)
            rule_free(&rs->rules[--rs->n_rules]);
        rebuild_dyn(rs);
    }
    free(ps);
    return rc;
}

/* Reads a whole file of at most RW_MAX_FILE bytes. */
static int read_file(const char *path, char **out, size_t *out_len, char *errbuf, size_t errlen)
{
    int rc = 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return h2r_seterr(errbuf, errlen, H2R_ERR_IO, "%s: %s", path, strerror(errno));
    buf = malloc(RW_MAX_FILE + 1);
    if (!buf) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    len = fread(buf, 1, RW_MAX_FILE + 1, f);
    if (ferror(f)) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_IO, "%s: read error", path);
        goto out;
    }
    if (len > RW_MAX_FILE) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_LIMIT, "%s: larger than %zu bytes", path,
                        RW_MAX_FILE);
        goto out;
    }
    buf[len] = '\0';
out:
    fclose(f);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int rw_ruleset_load(struct rw_ruleset *rs, const char *path, char *errbuf, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(path, &text, &len, errbuf, errlen);
    if (rc != 0)
        return rc;
    rc = rw_ruleset_parse(rs, text, len, path, errbuf, errlen);
    free(text);
    return rc;
}

/* Sets static variable name[0..nlen) to value[0..vlen). */
static int set_var(struct rw_ruleset *rs, const char *name, size_t nlen, const char *value,
                   size_t vlen, char *errbuf, size_t errlen)
{
    if (nlen == 0 || nlen > RW_MAX_NAME)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "variable name must have 1 to %u bytes",
                          RW_MAX_NAME);
    for (size_t i = 0; i < nlen; i++) {
        uint8_t c = (uint8_t)name[i];
        if (c <= 0x20 || c == 0x7f || c == '{' || c == '}')
            return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                              "variable name '%.*s' holds a space, control byte or brace",
                              (int)nlen, name);
    }
    if (vlen > RW_MAX_VALUE)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "value of '%.*s' is longer than %zu bytes",
                          (int)nlen, name, RW_MAX_VALUE);
    char *v = malloc(vlen + 1);
    if (!v)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    memcpy(v, value, vlen);
    v[vlen] = '\0';

    size_t idx;
    if (rw_map_get(&rs->var_map, name, nlen, &idx)) {
        free(rs->vars[idx].value);
        rs->vars[idx].value = v;
        rs->vars[idx].value_len = vlen;
        return 0;
    }
    int rc = 0;
    char *n = NULL;
    if (rs->n_vars >= RW_MAX_VARS) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_LIMIT, "more than %u variables", RW_MAX_VARS);
        goto fail;
    }
    if (rs->n_vars == rs->cap_vars) {
        size_t ncap = rs->cap_vars ? rs->cap_vars * 2 : 16;
        struct rw_var *nv = realloc(rs->vars, ncap * sizeof(*nv));
        if (!nv)
            goto fail_nomem;
        rs->vars = nv;
        rs->cap_vars = ncap;
    }
    n = malloc(nlen + 1);
    if (!n)
        goto fail_nomem;
    memcpy(n, name, nlen);
    n[nlen] = '\0';
    if (rw_map_put(&rs->var_map, n, nlen, rs->n_vars) != 0)
        goto fail_nomem;
    rs->vars[rs->n_vars].name = n;
    rs->vars[rs->n_vars].name_len = nlen;
    rs->vars[rs->n_vars].value = v;
    rs->vars[rs->n_vars].value_len = vlen;
    rs->n_vars++;
    return 0;

fail_nomem:
    rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
fail:
    free(n);
    free(v);
    return rc;
}

int rw_ruleset_set_var(struct rw_ruleset *rs, const char *name_eq_value, char *errbuf,
                       size_t errlen)
{
    const char *eq = strchr(name_eq_value, '=');
    if (!eq)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "expected NAME=VALUE, got '%.64s'",
                          name_eq_value);
    return set_var(rs, name_eq_value, (size_t)(eq - name_eq_value), eq + 1, strlen(eq + 1), errbuf,
                   errlen);
}

int rw_ruleset_load_vars(struct rw_ruleset *rs, const char *path, char *errbuf, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    char msg[384];
    int rc = read_file(path, &text, &len, errbuf, errlen);
    if (rc != 0)
        return rc;
    size_t pos = 0;
    unsigned line = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        const char *s = text + pos;
        size_t n = end - pos;
        line++;
        pos = end + 1;
        if (n > 0 && s[n - 1] == '\r')
            n--;
        while (n > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            n--;
        }
        if (n == 0 || *s == '#')
            continue;
        const char *eq = memchr(s, '=', n);
        if (memchr(s, '\0', n)) {
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "%s:%u: NUL byte", path, line);
            goto out;
        }
        if (!eq) {
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "%s:%u: expected NAME=VALUE", path, line);
            goto out;
        }
        size_t nlen = (size_t)(eq - s);
        while (nlen > 0 && (s[nlen - 1] == ' ' || s[nlen - 1] == '\t'))
            nlen--;
        rc = set_var(rs, s, nlen, eq + 1, n - (size_t)(eq - s) - 1, msg, sizeof(msg));
        if (rc != 0) {
            h2r_seterr(errbuf, errlen, rc, "%s:%u: %s", path, line, msg);
            goto out;
        }
    }
out:
    free(text);
    return rc;
}

size_t rw_ruleset_count(const struct rw_ruleset *rs)
{
    return rs->n_rules;
}

/* ---- pre-flight check ---- */

/* Every placeholder in p[0..len) has a value; where names the place for the message. */
static int check_placeholders(const struct rw_ruleset *rs, const struct h2r_exchange *x,
                              const uint8_t *p, size_t len, const char *where_kind,
                              const uint8_t *where, size_t where_len, char *errbuf, size_t errlen)
{
    struct rw_ph ph;
    size_t from = 0;
    while (rw_ph_next(p, len, from, &ph)) {
        const char *name = (const char *)p + ph.name_off;
        if (!rw_placeholder_var(rs, name, ph.name_len)) {
            size_t base = ph.name_len;
            while (base > 0 && name[base - 1] >= '0' && name[base - 1] <= '9')
                base--;
            int numbered = base > 1 && base < ph.name_len && name[base - 1] == '_';
            return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                              "exchange %" PRIu64 ": placeholder $H2R{%.*s} in %s%.*s has no "
                              "value (--set %.*s=...%s%.*s%s)",
                              x->id, (int)ph.name_len, name, where_kind,
                              (int)(where_len > 64 ? 64 : where_len), (const char *)where,
                              (int)ph.name_len, name, numbered ? " or --set " : "",
                              numbered ? (int)(base - 1) : 0, name, numbered ? "=..." : "");
        }
        from = ph.end;
    }
    return 0;
}

/* Every {{var:}} of template t is defined somewhere (lets followed to depth). */
static int check_tmpl_vars(const struct rw_ruleset *rs, const struct h2r_exchange *x,
                           const struct rw_rule *r, const struct rw_tmpl *t, int depth,
                           char *errbuf, size_t errlen)
{
    for (size_t i = 0; i < t->n_parts; i++) {
        const struct rw_tpart *p = &t->parts[i];
        if (p->kind != RW_TP_VAR)
            continue;
        const char *name = t->text + p->off;
        size_t slot;
        if (rw_static_var(rs, name, p->len))
            continue;
        if (!rw_map_get(&rs->dyn_map, name, p->len, &slot))
            return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                              "exchange %" PRIu64 ": rule %s:%u uses {{var:%.*s}} but no --set, "
                              "let or capture defines it",
                              x->id, r->origin, r->line, (int)p->len, name);
        size_t lr = rs->slots[slot].let_rule;
        if (lr == SIZE_MAX || rs->slots[slot].capture_rule != SIZE_MAX)
            continue;
        if (depth >= RW_LET_MAX_DEPTH)
            return h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                              "rule %s:%u: lets nest deeper than %d (a cycle?)", r->origin, r->line,
                              RW_LET_MAX_DEPTH);
        int rc =
            check_tmpl_vars(rs, x, &rs->rules[lr], &rs->rules[lr].tmpl, depth + 1, errbuf, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int rw_check_exchange(const struct rw_ruleset *rs, const struct h2r_exchange *x, char *errbuf,
                      size_t errlen)
{
    struct rw_reqinfo info;
    int rc;
    for (size_t i = 0; i < x->n_req_hdrs; i++) {
        const struct h2r_hdr *h = &x->req_hdrs[i];
        rc = check_placeholders(rs, x, h->value, h->value_len, "header ", h->name, h->name_len,
                                errbuf, errlen);
        if (rc != 0)
            return rc;
    }
    rc = check_placeholders(rs, x, x->req_body, x->req_body_stored, "the request body",
                            (const uint8_t *)"", 0, errbuf, errlen);
    if (rc != 0)
        return rc;
    if (rw_reqinfo_init(&info, x) != 0)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < rs->n_rules && rc == 0; i++) {
        const struct rw_rule *r = &rs->rules[i];
        if (r->kind == RW_R_CAPTURE || r->kind == RW_R_LET || !rw_cond_match(r, &info, NULL))
            continue;
        rc = check_tmpl_vars(rs, x, r, &r->tmpl, 0, errbuf, errlen);
    }
    rw_reqinfo_free(&info);
    return rc;
}

void rw_ruleset_free(struct rw_ruleset *rs)
{
    if (!rs)
        return;
    for (size_t i = 0; i < rs->n_rules; i++)
        rule_free(&rs->rules[i]);
    free(rs->rules);
    for (size_t i = 0; i < rs->n_origins; i++)
        free(rs->origins[i]);
    free(rs->origins);
    for (size_t i = 0; i < rs->n_vars; i++) {
        free(rs->vars[i].name);
        free(rs->vars[i].value);
    }
    free(rs->vars);
    rw_map_free(&rs->var_map);
    rw_map_free(&rs->dyn_map);
    free(rs->slots);
    free(rs);
}
