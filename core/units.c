/*
 * Units for flags and reports: durations, sizes, clocks. Every command parses
 * its duration and size flags here so that "500ms" means the same everywhere.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "h2replay/error.h"
#include "h2replay/units.h"

struct unit {
    const char *name;
    double scale;
};

static int parse_scaled(const char *s, const struct unit *units, size_t n_units,
                        double default_scale, double max, double *out)
{
    if (!s || !*s)
        return H2R_ERR_ARG;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return H2R_ERR_ARG;
    double scale = default_scale;
    if (*end) {
        scale = -1;
        for (size_t i = 0; i < n_units; i++) {
            if (strcasecmp(end, units[i].name) == 0) {
                scale = units[i].scale;
                break;
            }
        }
        if (scale < 0)
            return H2R_ERR_ARG;
    }
    v *= scale;
    if (v > max)
        return H2R_ERR_ARG;
    *out = v;
    return 0;
}

int h2r_parse_duration(const char *s, int64_t *ns)
{
    static const struct unit units[] = {{"ns", 1},     {"us", 1e3},  {"ms", 1e6},
                                        {"s", 1e9},    {"m", 60e9},  {"min", 60e9},
                                        {"h", 3600e9}, {"sec", 1e9}};
    double v;
    int rc = parse_scaled(s, units, sizeof(units) / sizeof(units[0]), 1e9, 9.2e18, &v);
    if (rc)
        return rc;
    *ns = (int64_t)llround(v);
    return 0;
}

int h2r_parse_size(const char *s, uint64_t *bytes)
{
    static const struct unit units[] = {
        {"b", 1},      {"k", 1024},    {"kb", 1e3},      {"kib", 1024},      {"m", 1048576},
        {"mb", 1e6},   {"mib", 1048576}, {"g", 1073741824}, {"gb", 1e9}, {"gib", 1073741824}};
    double v;
    int rc = parse_scaled(s, units, sizeof(units) / sizeof(units[0]), 1, 1.8e19, &v);
    if (rc)
        return rc;
    *bytes = (uint64_t)llround(v);
    return 0;
}

char *h2r_format_duration(int64_t ns, char *buf, size_t len)
{
    double a = ns < 0 ? -(double)ns : (double)ns;
    if (a < 1e3)
        snprintf(buf, len, "%lldns", (long long)ns);
    else if (a < 1e6)
        snprintf(buf, len, "%.1fus", (double)ns / 1e3);
    else if (a < 1e9)
        snprintf(buf, len, "%.2fms", (double)ns / 1e6);
    else
        snprintf(buf, len, "%.2fs", (double)ns / 1e9);
    return buf;
}

char *h2r_format_bytes(uint64_t bytes, char *buf, size_t len)
{
    double b = (double)bytes;
    if (b < 1e3)
        snprintf(buf, len, "%llu B", (unsigned long long)bytes);
    else if (b < 1e6)
        snprintf(buf, len, "%.1f kB", b / 1e3);
    else if (b < 1e9)
        snprintf(buf, len, "%.1f MB", b / 1e6);
    else
        snprintf(buf, len, "%.2f GB", b / 1e9);
    return buf;
}

int64_t h2r_now_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t h2r_now_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
