/*
 * Secret redaction for captured exchanges.
 *
 * A trace is replayed against staging servers and shared between people, so
 * it must never carry a usable credential. Secret values are replaced by
 * named placeholders `$H2R{<name>_<n>}` that replay fills in later: within
 * one capture the same value under the same name always gets the same
 * placeholder, and n counts the distinct values seen for that name.
 */
#ifndef H2R_CAP_REDACT_H
#define H2R_CAP_REDACT_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/trace.h"

struct cap_redactor;

/* Buffers backing a redacted exchange. Zero-initialise; free after the record is written. */
struct cap_redact_mem {
    void **v;
    size_t n;
    size_t cap;
};

/* What one call redacted (added to, never reset). */
struct cap_redact_counts {
    uint64_t values;         /* values replaced by placeholders */
    uint64_t bodies_dropped; /* stored bodies withheld because they could not be inspected */
    uint64_t table_full;     /* repeats that got a fresh number because the table was full */
};

/*
 * Creates a redactor. headers_csv: comma list of header names whose values
 * are secret; fields_csv: comma list of JSON body fields and query/form
 * parameter names (both matched case-insensitively). NULL selects the
 * defaults; "" selects none. Draws a random per-capture salt. Returns NULL
 * on allocation failure (or if the system has no entropy source).
 */
struct cap_redactor *cap_redactor_new(const char *headers_csv, const char *fields_csv);

/* Frees the redactor and its placeholder table. NULL is a no-op. */
void cap_redactor_free(struct cap_redactor *r);

/*
 * Redacts x in place: header lists (request, response, trailers), the
 * request :path query, and request/response bodies that are JSON or form
 * data. Changed lists and bodies are new buffers registered in mem (x's
 * original buffers are untouched); wire lengths (req_body_len,
 * resp_body_len) are kept. Sets H2R_EXCH_F_REDACTED when a value was
 * replaced or a body withheld. A stored body that might hold a secret but
 * cannot be inspected (truncated at the storage cap, compressed, or not
 * parsable) is dropped (stored length 0). Returns 0 or H2R_ERR_NOMEM (x may
 * then be partly redacted and must not be written).
 */
int cap_redact_exchange(struct cap_redactor *r, struct h2r_exchange *x, struct cap_redact_mem *mem,
                        struct cap_redact_counts *counts);

/*
 * Redacts one header list. *hdrs is replaced by a mem-owned copy when a
 * value changes. Returns 0 or H2R_ERR_NOMEM.
 */
int cap_redact_headers(struct cap_redactor *r, const struct h2r_hdr **hdrs, size_t n,
                       struct cap_redact_mem *mem, struct cap_redact_counts *counts);

/*
 * Redacts one stored body of wire length wire_len given the headers of the
 * same message (for content-type / content-encoding). *body and *stored are
 * replaced when the body changes or is dropped. Returns 0 or H2R_ERR_NOMEM.
 */
int cap_redact_body(struct cap_redactor *r, const struct h2r_hdr *hdrs, size_t n,
                    const uint8_t **body, size_t *stored, uint64_t wire_len,
                    struct cap_redact_mem *mem, struct cap_redact_counts *counts);

/* Frees every buffer registered in mem and resets it. */
void cap_redact_mem_free(struct cap_redact_mem *mem);

#endif
