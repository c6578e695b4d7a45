/*
 * Fuzz target for redaction: builds one exchange from the input and redacts
 * it, then checks that the result is self-consistent.
 *
 * Input format (tests/fuzz/gen/gen_h2_corpus.c writes it):
 *   byte 0   bits0-1 request content-type (none, application/json, form, text/plain),
 *            bit2 body truncated (wire length larger than stored), bit3 gzip-encoded
 *   then     header lines "name: value\n" until an empty line, then the request body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cap_redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HDRS 64

static volatile uint64_t sum;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const cts[4] = {NULL, "application/json",
                                       "application/x-www-form-urlencoded", "text/plain"};
    struct h2r_hdr h[MAX_HDRS + 2];
    size_t n = 0, off = 1;
    struct h2r_exchange x;
    struct cap_redact_mem mem = {NULL, 0, 0};
    struct cap_redact_counts counts = {0, 0, 0};
    struct cap_redactor *r;
    uint8_t opt;

    if (size < 1)
        return 0;
    opt = data[0];
    if (cts[opt & 3]) {
        h[n].name = (const uint8_t *)"content-type";
        h[n].name_len = 12;
        h[n].value = (const uint8_t *)cts[opt & 3];
        h[n].value_len = (uint32_t)strlen(cts[opt & 3]);
        n++;
    }
    if (opt & 0x08) {
        h[n].name = (const uint8_t *)"content-encoding";
        h[n].name_len = 16;
        h[n].value = (const uint8_t *)"gzip";
        h[n].value_len = 4;
        n++;
    }
    while (off < size && n < MAX_HDRS + 2) {
        const uint8_t *line = data + off;
        const uint8_t *nl = memchr(line, '\n', size - off);
        size_t len = nl ? (size_t)(nl - line) : size - off;
        const uint8_t *colon = memchr(line, ':', len);
        off += len + (nl ? 1 : 0);
        if (len == 0)
            break;
        if (!colon || colon == line) {
            continue;
        }
        h[n].name = line;
        h[n].name_len = (uint32_t)(colon - line);
        h[n].value = colon + 1;
        h[n].value_len = (uint32_t)(len - (size_t)(colon - line) - 1);
        n++;
    }
    memset(&x, 0, sizeof(x));
    x.req_hdrs = h;
    x.n_req_hdrs = n;
    x.req_body = data + off;
    x.req_body_stored = size - off;
    x.req_body_len = x.req_body_stored + ((opt & 0x04) ? 10 : 0);
    x.resp_hdrs = h;
    x.n_resp_hdrs = n;
    x.resp_body = data + off;
    x.resp_body_stored = size - off;
    x.resp_body_len = x.resp_body_stored;

    r = cap_redactor_new(NULL, NULL);
    if (!r)
        return 0;
    if (cap_redact_exchange(r, &x, &mem, &counts) == 0) {
        for (size_t i = 0; i < x.n_req_hdrs; i++) {
            for (uint32_t k = 0; k < x.req_hdrs[i].value_len; k++)
                sum += x.req_hdrs[i].value[k];
        }
        for (size_t i = 0; i < x.req_body_stored; i++)
            sum += x.req_body[i];
        if ((opt & 0x04) && x.req_body_stored > 0 && (opt & 3) == 1)
            abort(); /* a truncated JSON body must never survive redaction */
    }
    cap_redact_mem_free(&mem);
    cap_redactor_free(r);
    return 0;
}
