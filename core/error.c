/*
 * Error names and the errbuf helper shared by every module.
 */
#include <stdarg.h>
#include <stdio.h>

#include "h2replay/error.h"

const char *h2r_strerror(int err)
{
    switch (err) {
    case H2R_OK:
        return "success";
    case H2R_ERR_NOMEM:
        return "out of memory";
    case H2R_ERR_IO:
        return "I/O error";
    case H2R_ERR_FORMAT:
        return "malformed input";
    case H2R_ERR_TRUNCATED:
        return "truncated input";
    case H2R_ERR_VERSION:
        return "unsupported format version";
    case H2R_ERR_LIMIT:
        return "size limit exceeded";
    case H2R_ERR_ARG:
        return "invalid argument";
    case H2R_ERR_COMPRESS:
        return "compression error";
    case H2R_ERR_PCAP:
        return "packet capture error";
    case H2R_ERR_PROTO:
        return "protocol error";
    case H2R_ERR_UNSUPPORTED:
        return "unsupported";
    default:
        return "unknown error";
    }
}

int h2r_seterr(char *errbuf, size_t errlen, int err, const char *fmt, ...)
{
    if (errbuf && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return err;
}
