/*
 * Parsing and printing of the units every command's flags accept:
 * durations ("500ms", "5s", "2m", "1h", "250us", "100ns"; a bare number is
 * seconds) and sizes ("64KiB", "1MiB", "1GB", "4096").
 */
#ifndef H2REPLAY_UNITS_H
#define H2REPLAY_UNITS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parses a non-negative duration into *ns. Returns 0 or H2R_ERR_ARG. */
int h2r_parse_duration(const char *s, int64_t *ns);

/* Parses a non-negative size into *bytes (KB = 1000, KiB = 1024). Returns 0 or H2R_ERR_ARG. */
int h2r_parse_size(const char *s, uint64_t *bytes);

/* Formats ns as a short human string ("1.23ms", "4.5s") into buf; returns buf. */
char *h2r_format_duration(int64_t ns, char *buf, size_t len);

/* Formats a byte count ("1.2 MB") into buf; returns buf. */
char *h2r_format_bytes(uint64_t bytes, char *buf, size_t len);

/* CLOCK_MONOTONIC and CLOCK_REALTIME in ns. */
int64_t h2r_now_mono_ns(void);
int64_t h2r_now_wall_ns(void);

#ifdef __cplusplus
}
#endif

#endif
