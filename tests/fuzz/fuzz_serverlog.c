/*
 * libFuzzer target for the server-log line parser (analyze/an_serverlog.c):
 * any byte string, split at newlines like the file reader does, must parse
 * or fail with H2R_ERR_FORMAT and a reason, never crash or read out of
 * bounds; what parses must have a known level and format, printable text and
 * class, and place into a small run without escaping its windows.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "an_serverlog.h"
#include "h2replay/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct an_slog *s = NULL;
    if (an_slog_new(&s, 1795746156LL * 1000000000LL, 10000000000LL, 1000000000LL, 11))
        return 0;
    const char *p = (const char *)data, *end = p + size;
    while (p <= end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *line = malloc(n ? n : 1); /* exact size: ASan sees any over-read */
        if (!line)
            break;
        memcpy(line, p, n);
        struct an_slog_event ev;
        const char *why = NULL;
        int rc = an_slog_parse_line(line, n, &ev, &why);
        if (rc == 0) {
            if (ev.level < 0 || ev.level >= AN_SL_NLEVELS || ev.res_ns <= 0 ||
                (ev.format < AN_SL_FMT_JSON || ev.format > AN_SL_FMT_GOLOG))
                abort();
            check_text(ev.text, sizeof(ev.text));
            check_text(ev.cls, sizeof(ev.cls));
            an_slog_add(s, &ev);
        } else if (rc != H2R_ERR_FORMAT || !why || !*why) {
            abort();
        }
        free(line);
        if (!nl)
            break;
        p = nl + 1;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < s->n_windows; i++)
        w += s->w_errors[i] + s->w_warnings[i];
    if (w != an_slog_errors(s) + an_slog_warnings(s) || s->n_cls > AN_SLOG_MAX_CLASSES)
        abort();
    an_slog_free(s);
    return 0;
}
