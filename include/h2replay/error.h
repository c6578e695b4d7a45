/*
 * h2replay error codes.
 *
 * Every function in the project returns an int: 0 on success, a negative
 * H2R_ERR_* code on failure. The human detail (file, offset, field) goes into
 * the owning context's error buffer; h2r_strerror() names the code.
 */
#ifndef H2REPLAY_ERROR_H
#define H2REPLAY_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum h2r_error {
    H2R_OK = 0,
    H2R_ERR_NOMEM = -1,       /* allocation failed */
    H2R_ERR_IO = -2,          /* read/write/open failed (errno-level) */
    H2R_ERR_FORMAT = -3,      /* malformed input (bad magic, bad field, bad frame) */
    H2R_ERR_TRUNCATED = -4,   /* input ended in the middle of a unit */
    H2R_ERR_VERSION = -5,     /* file format version this build cannot read */
    H2R_ERR_LIMIT = -6,       /* a hard cap on buffered input was hit */
    H2R_ERR_ARG = -7,         /* invalid argument or flag */
    H2R_ERR_COMPRESS = -8,    /* zstd reported an error */
    H2R_ERR_PCAP = -9,        /* libpcap reported an error */
    H2R_ERR_PROTO = -10,      /* protocol violation seen on the wire */
    H2R_ERR_UNSUPPORTED = -11 /* valid input this build does not handle */
};

/* Returns a static, human-readable name for an H2R_ERR_* code (never NULL). */
const char *h2r_strerror(int err);

/*
 * Formats into errbuf (always NUL-terminated when errlen > 0) and returns err,
 * so call sites can write `return h2r_seterr(buf, len, H2R_ERR_FORMAT, "...")`.
 */
int h2r_seterr(char *errbuf, size_t errlen, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#ifdef __cplusplus
}
#endif

#endif
