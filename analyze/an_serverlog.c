/*
 * Headscale's log on the run's timeline (an_serverlog.h).
 *
 * Headscale logs through zerolog with zerolog.TimeFieldFormat set to Unix
 * seconds (cmd/headscale/headscale.go, v0.23 to v0.29): a JSON line carries
 * "time" as whole seconds, and the console writer prints that same instant as
 * RFC 3339 without a fraction. So server events are known to one second; the
 * parser keeps each timestamp's resolution and the placement uses the middle
 * of the interval it names. Other zerolog set-ups (RFC 3339 with a fraction
 * and a zone, Unix ms/us/ns) parse too.
 *
 * Lines are input from a file we did not write: every line is bounded
 * (AN_SLOG_LINE_MAX), parsed without trusting a byte, and a line that is not
 * zerolog is counted and named, never fatal unless the whole file is such.
 */
#include <errno.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "h2replay/error.h"
#include "an_fold.h"
#include "an_run.h"
#include "an_serverlog.h"

/* Console lines are examined up to this many bytes (time, level, message, error). */
#define CONSOLE_SCAN 4096
#define FIELD_MAX 1024

static const char *const level_names[AN_SL_NLEVELS] = {
    "none", "trace", "debug", "info", "warn", "error", "fatal", "panic"};

const char *an_slog_level_name(int level)
{
    return level >= 0 && level < AN_SL_NLEVELS ? level_names[level] : "none";
}

/* ------------------------------------------------------------ small helpers */

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

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Bounded string builder; always NUL-terminated, never past cap. */
struct sb {
    char *p;
    size_t cap, len;
};

static void sb_putc(struct sb *b, char c)
{
    if (b->len + 1 < b->cap)
        b->p[b->len++] = c;
    b->p[b->len] = '\0';
}

static void sb_put(struct sb *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sb_putc(b, s[i]);
}

static void sb_puts(struct sb *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* Copies n bytes as printable ASCII ('?' for the rest), cut with "..." at cap. */
static void copy_printable(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    if (cap == 0)
        return;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : (c == '\t' ? ' ' : '?');
    }
    out[o] = '\0';
    if (o + 1 >= cap && n > o && cap >= 4)
        memcpy(out + cap - 4, "...", 4);
}

/* -------------------------------------------------------------------- time */

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char *s, size_t n, size_t at, size_t count, int64_t *v)
{
    int64_t x = 0;
    if (at + count > n)
        return -1;
    for (size_t i = 0; i < count; i++) {
        if (!is_digit(s[at + i]))
            return -1;
        x = x * 10 + (s[at + i] - '0');
    }
    *v = x;
    return 0;
}

static int days_in_month(int64_t y, int64_t m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

int an_slog_parse_time(const char *s, size_t n, int64_t *ns, int64_t *res_ns)
{
    int64_t y, mo, d, h, mi, sec, frac = 0, res = 1000000000;
    if (digits(s, n, 0, 4, &y) || n < 20 || s[4] != '-' || digits(s, n, 5, 2, &mo) ||
        s[7] != '-' || digits(s, n, 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s, n, 11, 2, &h) || s[13] != ':' || digits(s, n, 14, 2, &mi) || s[16] != ':' ||
        digits(s, n, 17, 2, &sec))
        return H2R_ERR_FORMAT;
    if (y < 1970 || y > 2261 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) ||
        h > 23 || mi > 59 || sec > 60)
        return H2R_ERR_FORMAT;
    size_t i = 19;
    if (i < n && (s[i] == '.' || s[i] == ',')) {
        size_t nd = 0;
        for (i++; i < n && is_digit(s[i]); i++, nd++)
            if (nd < 9) {
                frac = frac * 10 + (s[i] - '0');
                res /= 10;
            }
        if (nd == 0)
            return H2R_ERR_FORMAT;
        for (size_t k = nd; k < 9; k++)
            frac *= 10;
    }
    int64_t off = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        int64_t oh, om;
        int neg = s[i] == '-';
        if (digits(s, n, i + 1, 2, &oh))
            return H2R_ERR_FORMAT;
        if (i + 3 < n && s[i + 3] == ':') {
            if (digits(s, n, i + 4, 2, &om))
                return H2R_ERR_FORMAT;
            i += 6;
        } else if (digits(s, n, i + 3, 2, &om) == 0) {
            i += 5;
        } else {
            return H2R_ERR_FORMAT;
        }
        if (oh > 23 || om > 59)
            return H2R_ERR_FORMAT;
        off = (oh * 3600 + om * 60) * (neg ? -1 : 1);
    } else {
        return H2R_ERR_FORMAT; /* RFC 3339 requires a zone; guessing one would misplace events */
    }
    if (i != n)
        return H2R_ERR_FORMAT;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    if (secs < 0 || secs > INT64_MAX / 1000000000 - 1)
        return H2R_ERR_FORMAT;
    *ns = secs * 1000000000 + frac;
    *res_ns = res;
    return 0;
}

/* A zerolog Unix time: seconds, ms, us or ns by magnitude (TimeFormatUnix*). */
static int unix_time(double v, int integral, int64_t *ns, int64_t *res)
{
    double scale, r;
    if (!(v >= 0) || v > 9.2e18)
        return H2R_ERR_FORMAT;
    if (v < 1e11) { /* seconds (until the year 5138) */
        scale = 1e9;
        r = integral ? 1e9 : 1e6;
    } else if (v < 1e14) {
        scale = 1e6;
        r = integral ? 1e6 : 1e3;
    } else if (v < 1e17) {
        scale = 1e3;
        r = 1e3;
    } else {
        scale = 1;
        r = 1;
    }
    if (v * scale > 9.2e18) /* past 2261: not a time this run can have */
        return H2R_ERR_FORMAT;
    if (!integral && scale == 1e9) { /* whole seconds exactly, the fraction to the us */
        double whole = (double)(int64_t)v;
        *ns = (int64_t)whole * 1000000000 + (int64_t)((v - whole) * 1e6 + 0.5) * 1000;
    } else {
        *ns = (int64_t)(v * scale);
    }
    *res = (int64_t)r;
    return 0;
}

/* ------------------------------------------------------------------ levels */

static int level_of(const char *s, size_t n)
{
    static const struct {
        const char *name;
        int level;
    } names[] = {{"trace", AN_SL_TRACE}, {"trc", AN_SL_TRACE},   {"debug", AN_SL_DEBUG},
                 {"dbg", AN_SL_DEBUG},   {"info", AN_SL_INFO},   {"inf", AN_SL_INFO},
                 {"warn", AN_SL_WARN},   {"warning", AN_SL_WARN}, {"wrn", AN_SL_WARN},
                 {"error", AN_SL_ERROR}, {"err", AN_SL_ERROR},   {"fatal", AN_SL_FATAL},
                 {"ftl", AN_SL_FATAL},   {"panic", AN_SL_PANIC}, {"pnc", AN_SL_PANIC}};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        size_t ln = strlen(names[k].name);
        if (ln != n)
            continue;
        size_t i = 0;
        while (i < n && lower(s[i]) == names[k].name[i])
            i++;
        if (i == n)
            return names[k].level;
    }
    return -1;
}

/* ----------------------------------------------------------- classification */

/* Known root causes, matched in the error text (lower case) and named alike. */
static const struct {
    const char *needle;
    const char *name;
} families[] = {
    {"database is locked", "database is locked"},
    {"database table is locked", "database is locked"},
    {"sqlite_busy", "database is locked"},
    {"context deadline exceeded", "context deadline exceeded"},
    {"context canceled", "context canceled"},
    {"context cancelled", "context canceled"},
    {"deadlock detected", "deadlock detected"},
    {"too many clients", "too many connections"},
    {"too many connections", "too many connections"},
    {"connection refused", "connection refused"},
    {"connection reset", "connection reset"},
    {"broken pipe", "broken pipe"},
    {"i/o timeout", "i/o timeout"},
    {"use of closed network connection", "use of closed network connection"},
    {"duplicate key", "unique constraint violated"},
    {"unique constraint", "unique constraint violated"},
    {"record not found", "record not found"},
};

static const char *family_of(const char *s)
{
    char low[FIELD_MAX];
    size_t n = 0;
    for (; s[n] && n + 1 < sizeof(low); n++)
        low[n] = lower(s[n]);
    low[n] = '\0';
    for (size_t k = 0; k < sizeof(families) / sizeof(families[0]); k++)
        if (strstr(low, families[k].needle))
            return families[k].name;
    return NULL;
}

static int token_char(char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("_.:/-+=@%#~", c) != NULL);
}

/* 12, 1.5, 250ms, 3s, 100%, 2.5GB: a number with an optional short unit. */
static int is_number(const char *s, size_t n)
{
    size_t i = 0, d = 0;
    while (i < n && (is_digit(s[i]) || s[i] == '.')) {
        d += is_digit(s[i]);
        i++;
    }
    if (d == 0 || i == 0 || s[0] == '.')
        return 0;
    size_t unit = n - i;
    if (unit > 3)
        return 0;
    for (; i < n; i++)
        if (!is_alpha(s[i]) && s[i] != '%')
            return 0;
    return 1;
}

static int is_ipv4(const char *s, size_t n, size_t *end)
{
    size_t i = 0, dots = 0;
    while (i < n && (is_digit(s[i]) || s[i] == '.')) {
        dots += s[i] == '.';
        i++;
    }
    *end = i;
    return dots == 3 && i >= 7;
}

static int count_if(const char *s, size_t n, int (*pred)(char))
{
    int c = 0;
    for (size_t i = 0; i < n; i++)
        c += pred(s[i]) != 0;
    return c;
}

/* Folds one token (no spaces) into b: pointers, URLs, IPs, numbers, then the id shapes of
 * an_fold.c (an_fold_id), then words with digits. */
static void fold_token(struct sb *b, const char *s, size_t n)
{
    size_t ipend;
    if (n == 0)
        return;
    if (n > 1 && s[0] == '/') {
        char path[256], out[256];
        copy_printable(path, sizeof(path), s, n);
        an_fold_path(NULL, path, 0, out, sizeof(out));
        for (char *p = out; *p; p++)
            sb_putc(b, lower(*p));
        return;
    }
    const char *scheme = n > 3 ? strstr(s, "://") : NULL;
    if (scheme && scheme < s + n - 3) {
        sb_puts(b, "{url}");
        return;
    }
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && count_if(s + 2, n - 2, is_hex) ==
                                                                     (int)(n - 2)) {
        sb_puts(b, "{ptr}");
        return;
    }
    if (is_ipv4(s, n, &ipend)) {
        sb_puts(b, ipend == n ? "{ip}" : "{addr}");
        return;
    }
    if (is_number(s, n) || (s[0] == '-' && n > 1 && is_number(s + 1, n - 1))) {
        sb_puts(b, "{n}");
        return;
    }
    char id[64]; /* {uuid}, prefix:{key}, {hex}, {tok}: the id shapes of endpoint folding */
    size_t il = an_fold_id(s, n, id, sizeof(id));
    if (il) {
        sb_put(b, id, il);
        return;
    }
    int nd = count_if(s, n, is_digit), na = count_if(s, n, is_alpha);
    if (nd == 0) {
        for (size_t i = 0; i < n; i++)
            sb_putc(b, lower(s[i]));
        return;
    }
    if (n >= 6 && na > 0) { /* node names, hostnames with numbers, file:line */
        sb_puts(b, "{id}");
        return;
    }
    for (size_t i = 0; i < n;) { /* short: node1 -> node{n} */
        if (is_digit(s[i])) {
            sb_puts(b, "{n}");
            while (i < n && is_digit(s[i]))
                i++;
        } else {
            sb_putc(b, lower(s[i++]));
        }
    }
}

/* Normalizes free text into b (see an_slog_classify). */
static void normalize(struct sb *b, const char *s)
{
    int space = 0;
    for (size_t i = 0; s[i];) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            space = b->len > 0;
            i++;
            continue;
        }
        if (space) {
            sb_putc(b, ' ');
            space = 0;
        }
        int quote_open = c == '"' || c == '`' ||
                         (c == '\'' && (i == 0 || !is_alpha(s[i - 1])));
        if (quote_open) {
            size_t j = i + 1;
            while (s[j] && (unsigned char)s[j] != c) {
                if (s[j] == '\\' && s[j + 1])
                    j++;
                j++;
            }
            if (s[j]) { /* closed: a quoted value */
                sb_puts(b, "{q}");
                i = j + 1;
                continue;
            }
            sb_putc(b, (char)c); /* an unmatched quote is just a character */
            i++;
            continue;
        }
        if (token_char((char)c)) {
            size_t j = i;
            while (s[j] && token_char(s[j]))
                j++;
            size_t n = j - i;
            /* trailing sentence punctuation is not part of the token */
            size_t tail = 0;
            while (n > tail + 1 && strchr(".:", s[i + n - tail - 1]))
                tail++;
            const char *eq = memchr(s + i, '=', n - tail);
            if (eq) { /* key=value inside a message: keep the key */
                size_t kn = (size_t)(eq - (s + i)) + 1;
                for (size_t k = 0; k < kn; k++)
                    sb_putc(b, lower(s[i + k]));
                fold_token(b, s + i + kn, n - tail - kn);
            } else {
                fold_token(b, s + i, n - tail);
            }
            sb_put(b, s + i + n - tail, tail);
            i = j;
            continue;
        }
        sb_putc(b, c >= 0x20 && c < 0x7f ? lower((char)c) : '?');
        i++;
    }
}

size_t an_slog_classify(const char *msg, const char *err, char *out, size_t cap)
{
    char tmp[AN_SLOG_CLASS_MAX * 2];
    struct sb b = {tmp, sizeof(tmp), 0};
    tmp[0] = '\0';
    if (cap < 8) {
        if (cap)
            out[0] = '\0';
        return 0;
    }
    if (msg && *msg)
        normalize(&b, msg);
    if (err && *err) {
        const char *fam = family_of(err);
        if (b.len)
            sb_puts(&b, ": ");
        if (fam)
            sb_puts(&b, fam);
        else
            normalize(&b, err);
    }
    if (b.len == 0)
        sb_puts(&b, "(no message)");
    copy_printable(out, cap, tmp, b.len);
    if (b.len + 1 >= sizeof(tmp) && cap >= 4 && strlen(out) + 1 < cap) {
        size_t o = strlen(out);
        if (o >= 3)
            memcpy(out + o - 3, "...", 4);
    }
    return strlen(out);
}

/* ------------------------------------------------------------ line parsing */

static void set_text(struct an_slog_event *ev, const char *msg, const char *err)
{
    char t[AN_SLOG_TEXT_MAX * 2];
    snprintf(t, sizeof(t), "%s%s%s", msg, *msg && *err ? ": " : "", err);
    copy_printable(ev->text, sizeof(ev->text), t, strlen(t));
    an_slog_classify(msg, err, ev->cls, sizeof(ev->cls));
}

static int parse_json(const char *line, size_t len, struct an_slog_event *ev, const char **why)
{
    json_error_t jerr;
    int rc = H2R_ERR_FORMAT;
    json_t *o = json_loadb(line, len, 0, &jerr);
    char msg[FIELD_MAX] = "", err[FIELD_MAX] = "";
    if (!o || !json_is_object(o)) {
        *why = o ? "JSON but not an object" : "not valid JSON";
        goto out;
    }
    ev->format = AN_SL_FMT_JSON;
    json_t *lv = json_object_get(o, "level");
    ev->level = AN_SL_NONE;
    if (json_is_string(lv)) {
        int l = level_of(json_string_value(lv), json_string_length(lv));
        ev->level = l < 0 ? AN_SL_NONE : l;
    }
    json_t *tv = json_object_get(o, "time");
    if (!tv)
        tv = json_object_get(o, "ts");
    if (json_is_integer(tv)) {
        json_int_t v = json_integer_value(tv);
        if (unix_time((double)v, 1, &ev->t_wall_ns, &ev->res_ns)) {
            *why = "\"time\" out of range";
            goto out;
        }
        if (v >= 100000000000LL) /* ms, us, ns: exact in integers, not through a double */
            ev->t_wall_ns = v * (v < 100000000000000LL      ? 1000000
                                 : v < 100000000000000000LL ? 1000
                                                            : 1);
    } else if (json_is_real(tv)) {
        if (unix_time(json_real_value(tv), 0, &ev->t_wall_ns, &ev->res_ns)) {
            *why = "\"time\" out of range";
            goto out;
        }
    } else if (json_is_string(tv)) {
        if (an_slog_parse_time(json_string_value(tv), json_string_length(tv), &ev->t_wall_ns,
                               &ev->res_ns)) {
            *why = "\"time\" is not RFC 3339 with a zone";
            goto out;
        }
    } else {
        *why = "no \"time\"";
        goto out;
    }
    json_t *mv = json_object_get(o, "message");
    if (!mv)
        mv = json_object_get(o, "msg");
    if (json_is_string(mv))
        copy_printable(msg, sizeof(msg), json_string_value(mv), json_string_length(mv));
    json_t *ev_err = json_object_get(o, "error");
    if (json_is_string(ev_err)) {
        copy_printable(err, sizeof(err), json_string_value(ev_err), json_string_length(ev_err));
    } else if (ev_err && !json_is_null(ev_err)) { /* Errs(): an array or object */
        char *d = json_dumps(ev_err, JSON_COMPACT);
        if (d)
            copy_printable(err, sizeof(err), d, strlen(d));
        free(d);
    }
    set_text(ev, msg, err);
    rc = 0;
out:
    json_decref(o);
    return rc;
}

/* Copies line[0..n) without ANSI escape sequences (a console writer with colours). */
static size_t strip_ansi(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        if (s[i] == '\x1b' && i + 1 < n && s[i + 1] == '[') {
            i += 2;
            while (i < n && !((unsigned char)s[i] >= 0x40 && (unsigned char)s[i] <= 0x7e))
                i++;
            continue;
        }
        out[o++] = s[i];
    }
    out[o] = '\0';
    return o;
}

/* Start of the fields: the first " key=" (key of [A-Za-z0-9_.-]) at or after p. */
static const char *fields_start(const char *p, const char *end)
{
    for (const char *q = p; q < end; q++) {
        if (q != p && q[-1] != ' ')
            continue;
        const char *k = q;
        while (k < end && (is_alpha(*k) || is_digit(*k) || *k == '_' || *k == '.' || *k == '-'))
            k++;
        if (k > q && k < end && *k == '=')
            return q;
    }
    return end;
}

/* Value of field `name` among the console fields [p, end), unquoted, into out. */
static void console_field(const char *p, const char *end, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    out[0] = '\0';
    while (p < end) {
        while (p < end && *p == ' ')
            p++;
        const char *key = p;
        while (p < end && *p != '=' && *p != ' ')
            p++;
        int match = (size_t)(p - key) == nl && memcmp(key, name, nl) == 0;
        if (p >= end || *p != '=') {
            continue;
        }
        p++;
        struct sb b = {out, cap, 0};
        if (p < end && *p == '"') {
            for (p++; p < end && *p != '"'; p++) {
                if (*p == '\\' && p + 1 < end)
                    p++;
                if (match)
                    sb_putc(&b, *p);
            }
            if (p < end)
                p++;
        } else {
            for (; p < end && *p != ' '; p++)
                if (match)
                    sb_putc(&b, *p);
        }
        if (match)
            return;
    }
}

/* "2026/11/27 02:32:05[.123456] text": Go's log package, local time (same host assumed). */
static int parse_golog(const char *s, size_t n, struct an_slog_event *ev)
{
    int64_t y, mo, d, h, mi, sec, frac = 0, res = 1000000000;
    if (n < 19 || digits(s, n, 0, 4, &y) || s[4] != '/' || digits(s, n, 5, 2, &mo) ||
        s[7] != '/' || digits(s, n, 8, 2, &d) || s[10] != ' ' || digits(s, n, 11, 2, &h) ||
        s[13] != ':' || digits(s, n, 14, 2, &mi) || s[16] != ':' || digits(s, n, 17, 2, &sec))
        return H2R_ERR_FORMAT;
    if (y < 1971 || y > 2261 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec > 60)
        return H2R_ERR_FORMAT;
    size_t i = 19;
    if (i < n && s[i] == '.') {
        size_t nd = 0;
        for (i++; i < n && is_digit(s[i]) && nd < 9; i++, nd++) {
            frac = frac * 10 + (s[i] - '0');
            res /= 10;
        }
        for (size_t k = nd; k < 9; k++)
            frac *= 10;
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = (int)y - 1900;
    tm.tm_mon = (int)mo - 1;
    tm.tm_mday = (int)d;
    tm.tm_hour = (int)h;
    tm.tm_min = (int)mi;
    tm.tm_sec = (int)sec;
    tm.tm_isdst = -1;
    /* Go's log package writes local time without a zone: read it in this process's zone
     * (TZ; docs/analyze.md). mktime normalises 31 April to 1 May: refuse such dates. */
    time_t t = mktime(&tm);
    if (t == (time_t)-1 || t < 0 || tm.tm_mday != (int)d || tm.tm_mon != (int)mo - 1)
        return H2R_ERR_FORMAT;
    while (i < n && s[i] == ' ')
        i++;
    ev->format = AN_SL_FMT_GOLOG;
    ev->level = AN_SL_NONE;
    ev->t_wall_ns = (int64_t)t * 1000000000 + frac;
    ev->res_ns = res;
    char msg[FIELD_MAX];
    copy_printable(msg, sizeof(msg), s + i, n - i);
    set_text(ev, msg, "");
    return 0;
}

static int parse_console(const char *line, size_t len, struct an_slog_event *ev, const char **why)
{
    if (parse_golog(line, len, ev) == 0)
        return 0;
    char buf[CONSOLE_SCAN];
    size_t n = strip_ansi(line, len, buf, sizeof(buf));
    const char *p = buf, *end = buf + n;
    while (p < end && *p == ' ')
        p++;
    const char *t = p;
    while (p < end && *p != ' ')
        p++;
    if (an_slog_parse_time(t, (size_t)(p - t), &ev->t_wall_ns, &ev->res_ns)) {
        *why = p - t == 5 && memcmp(t, "<nil>", 5) == 0 ? "console line without a time"
                                                         : "not a zerolog line (no JSON object, "
                                                           "no RFC 3339 time first)";
        return H2R_ERR_FORMAT;
    }
    while (p < end && *p == ' ')
        p++;
    const char *lv = p;
    while (p < end && *p != ' ')
        p++;
    int l = level_of(lv, (size_t)(p - lv));
    if (l < 0 && !((size_t)(p - lv) == 3 && memcmp(lv, "???", 3) == 0)) {
        *why = "console line without a level";
        return H2R_ERR_FORMAT;
    }
    ev->format = AN_SL_FMT_CONSOLE;
    ev->level = l < 0 ? AN_SL_NONE : l;
    while (p < end && *p == ' ')
        p++;
    /* "file.go:123 > message": zerolog's caller, left out of the message */
    const char *c = p;
    while (c < end && *c != ' ')
        c++;
    if (c + 1 < end && c[1] == '>' && (c + 2 == end || c[2] == ' ')) {
        for (const char *g = p; g + 4 <= c; g++)
            if (memcmp(g, ".go:", 4) == 0) {
                p = c + 2;
                break;
            }
    }
    while (p < end && *p == ' ')
        p++;
    const char *fs = fields_start(p, end);
    const char *me = fs;
    while (me > p && me[-1] == ' ')
        me--;
    char msg[FIELD_MAX], err[FIELD_MAX];
    copy_printable(msg, sizeof(msg), p, (size_t)(me - p));
    console_field(fs, end, "error", err, sizeof(err));
    set_text(ev, msg, err);
    return 0;
}

int an_slog_parse_line(const char *line, size_t len, struct an_slog_event *ev, const char **why)
{
    static const char *none;
    if (!why)
        why = &none;
    memset(ev, 0, sizeof(*ev));
    *why = "";
    if (len > AN_SLOG_LINE_MAX) {
        *why = "line too long";
        return H2R_ERR_FORMAT;
    }
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
        i++;
    while (len > i && (line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    if (i == len) {
        *why = "blank line";
        return H2R_ERR_FORMAT;
    }
    if (memchr(line + i, '\0', len - i)) {
        *why = "NUL byte in the line";
        return H2R_ERR_FORMAT;
    }
    if (line[i] == '{')
        return parse_json(line + i, len - i, ev, why);
    return parse_console(line + i, len - i, ev, why);
}

/* ----------------------------------------------------------------- folding */

int an_slog_new(struct an_slog **out, int64_t t0_wall_ns, int64_t span_ns, int64_t width_ns,
                size_t n_windows)
{
    struct an_slog *s = calloc(1, sizeof(*s));
    if (!s)
        return H2R_ERR_NOMEM;
    s->t0_wall_ns = t0_wall_ns;
    s->span_ns = span_ns > 0 ? span_ns : 0;
    s->width_ns = width_ns > 0 ? width_ns : 1000000000;
    s->clock_max_error_ns = -1;
    s->n_windows = n_windows ? n_windows : 1;
    s->w_errors = calloc(s->n_windows, sizeof(*s->w_errors));
    s->w_warnings = calloc(s->n_windows, sizeof(*s->w_warnings));
    if (!s->w_errors || !s->w_warnings) {
        an_slog_free(s);
        return H2R_ERR_NOMEM;
    }
    *out = s;
    return 0;
}

void an_slog_free(struct an_slog *s)
{
    if (!s)
        return;
    free(s->w_errors);
    free(s->w_warnings);
    free(s);
}

static struct an_slog_class *class_slot(struct an_slog *s, const char *key)
{
    for (size_t i = 0; i < s->n_cls; i++)
        if (strcmp(s->cls[i].key, key) == 0)
            return &s->cls[i];
    if (s->n_cls + 1 >= AN_SLOG_MAX_CLASSES) { /* the last slot collects the rest */
        struct an_slog_class *o = &s->cls[AN_SLOG_MAX_CLASSES - 1];
        if (s->n_cls < AN_SLOG_MAX_CLASSES) {
            memset(o, 0, sizeof(*o));
            snprintf(o->key, sizeof(o->key), "%s", AN_SLOG_OTHER);
            s->n_cls = AN_SLOG_MAX_CLASSES;
        }
        return o;
    }
    struct an_slog_class *c = &s->cls[s->n_cls++];
    memset(c, 0, sizeof(*c));
    snprintf(c->key, sizeof(c->key), "%s", key);
    return c;
}

void an_slog_add(struct an_slog *s, const struct an_slog_event *ev)
{
    int lv = ev->level >= 0 && ev->level < AN_SL_NLEVELS ? ev->level : AN_SL_NONE;
    int64_t res = ev->res_ns > 0 ? ev->res_ns : 1;
    if (ev->format == AN_SL_FMT_JSON)
        s->n_json++;
    else if (ev->format == AN_SL_FMT_CONSOLE)
        s->n_console++;
    else
        s->n_golog++;
    if (res > s->res_ns)
        s->res_ns = res;
    /* wall times of the log and of the run are both Unix ns: no overflow in the difference */
    int64_t rel = ev->t_wall_ns - s->t0_wall_ns;
    int64_t placed = rel + res / 2; /* the middle of the interval the timestamp names */
    int where;                      /* -1 before, 0 in the run, 1 after */
    if (rel + res <= 0) {
        where = -1;
    } else if (rel > s->span_ns) {
        where = 1;
    } else {
        where = 0;
        if (placed < 0)
            placed = 0;
        if (placed > s->span_ns)
            placed = s->span_ns;
    }
    if (where < 0)
        s->before[lv]++;
    else if (where > 0)
        s->after[lv]++;
    else
        s->in_run[lv]++;
    if (lv < AN_SL_WARN)
        return; /* info and below: counted only */
    struct an_slog_class *c = class_slot(s, ev->cls);
    if (c->count == 0) {
        snprintf(c->example, sizeof(c->example), "%s", ev->text);
        c->t_first = c->t_last = placed;
    }
    if (placed < c->t_first)
        c->t_first = placed;
    if (placed > c->t_last)
        c->t_last = placed;
    if (lv > c->level)
        c->level = lv;
    c->count++;
    if (where < 0)
        c->before++;
    else if (where > 0)
        c->after++;
    else
        c->in_run++;
    if (where != 0)
        return;
    size_t w = (size_t)(placed / s->width_ns);
    if (w >= s->n_windows)
        w = s->n_windows - 1;
    if (lv >= AN_SL_ERROR) {
        s->w_errors[w]++;
        if (!s->has_first_error || placed < s->first_error_ns) {
            s->has_first_error = 1;
            s->first_error_ns = placed;
            s->first_error_level = lv;
            snprintf(s->first_error_class, sizeof(s->first_error_class), "%s", ev->cls);
        }
    } else {
        s->w_warnings[w]++;
        if (!s->has_first_warning || placed < s->first_warning_ns) {
            s->has_first_warning = 1;
            s->first_warning_ns = placed;
        }
    }
}

void an_slog_skip(struct an_slog *s, const char *file, uint64_t line, const char *why)
{
    s->skipped++;
    if (s->n_skip_examples < AN_SLOG_SKIP_EXAMPLES) {
        const char *base = strrchr(file, '/');
        snprintf(s->skip_examples[s->n_skip_examples++], sizeof(s->skip_examples[0]),
                 "%.100s:%llu: %s", base ? base + 1 : file, (unsigned long long)line, why);
    }
}

void an_slog_relate(struct an_slog *s, int has_failure, int64_t failure_ns, int has_onset,
                    int64_t onset_ns)
{
    s->has_client_failure = has_failure;
    s->client_failure_ns = failure_ns;
    s->has_onset = has_onset;
    s->onset_ns = onset_ns;
}

uint64_t an_slog_errors(const struct an_slog *s)
{
    return s->in_run[AN_SL_ERROR] + s->in_run[AN_SL_FATAL] + s->in_run[AN_SL_PANIC];
}

uint64_t an_slog_warnings(const struct an_slog *s)
{
    return s->in_run[AN_SL_WARN];
}

static int class_before(const struct an_slog_class *a, const struct an_slog_class *b)
{
    if (a->count != b->count)
        return a->count > b->count;
    return strcmp(a->key, b->key) < 0;
}

size_t an_slog_top(const struct an_slog *s, const struct an_slog_class **out, size_t max)
{
    const struct an_slog_class *all[AN_SLOG_MAX_CLASSES];
    size_t n = s->n_cls;
    for (size_t i = 0; i < n; i++) { /* insertion sort: at most AN_SLOG_MAX_CLASSES */
        size_t j = i;
        while (j > 0 && class_before(&s->cls[i], all[j - 1])) {
            all[j] = all[j - 1];
            j--;
        }
        all[j] = &s->cls[i];
    }
    if (n > max)
        n = max;
    memcpy(out, all, n * sizeof(*out));
    return n;
}

const char *an_slog_format_name(const struct an_slog *s)
{
    if (s->n_json && s->n_console)
        return "mixed";
    if (s->n_json)
        return "json";
    if (s->n_console)
        return "console";
    return s->n_golog ? "go-log" : "none";
}

/* ----------------------------------------------------------------- reading */

static void add_files(struct an_slog *s, const char *path)
{
    size_t o = strlen(s->files);
    if (o + 1 < sizeof(s->files))
        snprintf(s->files + o, sizeof(s->files) - o, "%s%s", o ? ", " : "", path);
}

int an_slog_read_file(const char *path, struct an_slog *const *logs, size_t n_logs, char *errbuf,
                      size_t errlen)
{
    int rc = 0;
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    uint64_t lineno = 0, parsed = 0, nonblank = 0;
    char first_bad[200] = "";
    if (!f)
        return h2r_seterr(errbuf, errlen, H2R_ERR_IO, "--server-log %s: cannot open: %s", path,
                          strerror(errno));
    buf = malloc(AN_SLOG_LINE_MAX + 1);
    if (!buf) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < n_logs; k++)
        add_files(logs[k], path);
    for (;;) {
        size_t n = 0;
        int c = 0, too_long = 0, any = 0;
        while ((c = getc(f)) != EOF) {
            any = 1;
            if (c == '\n')
                break;
            if (n < AN_SLOG_LINE_MAX)
                buf[n++] = (char)c;
            else
                too_long = 1; /* keep reading to the newline; the line is dropped */
        }
        if (!any)
            break;
        lineno++;
        struct an_slog_event ev;
        const char *why = "";
        int prc = too_long ? H2R_ERR_FORMAT : an_slog_parse_line(buf, n, &ev, &why);
        if (too_long)
            why = "line longer than 64 KiB";
        for (size_t k = 0; k < n_logs; k++) {
            struct an_slog *s = logs[k];
            s->lines++;
            if (prc == 0)
                an_slog_add(s, &ev);
            else if (strcmp(why, "blank line") == 0)
                s->blank++;
            else {
                s->too_long += too_long;
                an_slog_skip(s, path, lineno, why);
            }
        }
        if (prc == 0)
            parsed++;
        if (strcmp(why, "blank line") != 0)
            nonblank++;
        if (prc && !first_bad[0] && strcmp(why, "blank line") != 0)
            snprintf(first_bad, sizeof(first_bad), "%s:%llu: %s", path,
                     (unsigned long long)lineno, why);
        if (c == EOF)
            break;
    }
    if (ferror(f)) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_IO, "--server-log %s: read error after line %llu",
                        path, (unsigned long long)lineno);
        goto out;
    }
    if (nonblank && !parsed)
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_FORMAT,
                        "--server-log %s: no zerolog line (JSON or console) in %llu lines; "
                        "first: %s",
                        path, (unsigned long long)lineno, first_bad);
out:
    free(buf);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------ the driver */

/* "[TARGET=]FILE": an existing file is a FILE even with '=' in its name. */
static void split_spec(const char *spec, char *target, size_t tcap, const char **file)
{
    const char *eq = strrchr(spec, '=');
    FILE *probe = fopen(spec, "rb");
    target[0] = '\0';
    *file = spec;
    if (probe) {
        fclose(probe);
        return;
    }
    if (eq && eq != spec && eq[1]) {
        size_t n = (size_t)(eq - spec);
        if (n >= tcap)
            n = tcap - 1;
        memcpy(target, spec, n);
        target[n] = '\0';
        *file = eq + 1;
    }
}

static int run_log(struct an_run *r, struct an_slog **out)
{
    if (r->slog) {
        *out = r->slog;
        return 0;
    }
    int64_t span = an_run_duration(r), width = r->series.width_ns;
    size_t n = r->series.n;
    if (width > 0 && (size_t)(span / width) + 1 > n)
        n = (size_t)(span / width) + 1;
    if (n > (size_t)AN_MAX_WINDOWS * 2)
        n = (size_t)AN_MAX_WINDOWS * 2;
    int rc = an_slog_new(&r->slog, r->t0_wall_ns, span, width, n);
    if (rc)
        return rc;
    r->slog->clock_max_error_ns = r->clock_max_error_ns;
    an_slog_relate(r->slog, r->has_first_failure, r->first_failure.t_done_ns, r->onset.found,
                   r->onset.t_ns);
    *out = r->slog;
    return 0;
}

int an_slog_attach(struct an_run **runs, size_t n_runs, const char *const *specs, size_t n_specs,
                   FILE *warn, char *errbuf, size_t errlen)
{
    int rc = 0;
    struct an_slog **sel = calloc(n_runs ? n_runs : 1, sizeof(*sel));
    if (!sel)
        return h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n_specs; i++) {
        char target[256];
        const char *file;
        size_t n_sel = 0;
        split_spec(specs[i], target, sizeof(target), &file);
        for (size_t k = 0; k < n_runs; k++) {
            struct an_run *r = runs[k];
            if (r->kind != AN_KIND_RUN)
                continue;
            if (target[0] && strcmp(r->section, target) != 0 && strcmp(r->name, target) != 0)
                continue;
            if (r->t0_wall_ns <= 0) {
                rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                                "--server-log %s: run '%s' has no wall-clock t0 to place the "
                                "log on",
                                specs[i], r->name);
                goto out;
            }
            rc = run_log(r, &sel[n_sel]);
            if (rc) {
                h2r_seterr(errbuf, errlen, rc, "out of memory");
                goto out;
            }
            n_sel++;
        }
        if (n_sel == 0) {
            char names[512] = "";
            for (size_t k = 0; k < n_runs && strlen(names) < 400; k++)
                if (runs[k]->kind == AN_KIND_RUN)
                    snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s'%s'",
                             names[0] ? ", " : "", runs[k]->section);
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_ARG,
                            "--server-log %s: no run %s%s%s (targets: %s)", specs[i],
                            target[0] ? "named '" : "to place it on", target,
                            target[0] ? "'" : "", names[0] ? names : "none");
            goto out;
        }
        uint64_t skipped0 = sel[0]->skipped;
        size_t ex0 = sel[0]->n_skip_examples;
        rc = an_slog_read_file(file, sel, n_sel, errbuf, errlen);
        if (rc)
            goto out;
        uint64_t skipped = sel[0]->skipped - skipped0;
        if (skipped && warn) {
            fprintf(warn, "h2replay analyze: warning: --server-log %s: %llu line%s skipped", file,
                    (unsigned long long)skipped, skipped == 1 ? "" : "s");
            for (size_t e = ex0; e < sel[0]->n_skip_examples; e++)
                fprintf(warn, "%s%s", e == ex0 ? " (" : "; ", sel[0]->skip_examples[e]);
            fprintf(warn, "%s\n", ex0 < sel[0]->n_skip_examples ? ")" : "");
        }
    }
out:
    free(sel);
    return rc;
}
