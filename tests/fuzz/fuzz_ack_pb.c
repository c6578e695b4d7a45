/*
 * libFuzzer target for the acknowledgement readers (replay/rp_ack.c): the
 * protobuf reader they use (core's fld_next) and the gRPC/REST/TS2021 identity parsers. Any
 * bytes as a response (and as a request) of every method must parse or fail
 * cleanly; whatever is extracted is NUL-terminated printable text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/fields.h"
#include "rp_ack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fld_cursor c = {data, size};
    struct fld_value f;
    while (fld_next(&c, &f) == 1) {
        if (f.wire_type == FLD_BYTES && (f.data < data || f.data + f.n > data + size))
            abort();
    }
    for (int m = RP_ACK_CREATE_USER; m <= RP_ACK_REST_API_KEY; m++) {
        struct rp_ack_entity e;
        if (rp_ack_parse((enum rp_ack_method)m, data, size, data, size, &e) == 0) {
            check_text(e.id, sizeof(e.id));
            check_text(e.name, sizeof(e.name));
            check_text(e.key, sizeof(e.key));
            check_text(e.node_key, sizeof(e.node_key));
            check_text(e.machine_key, sizeof(e.machine_key));
        }
    }
    struct rp_ack_entity e;
    if (rp_ack_parse_ts_register(data, size, &e) == 0)
        check_text(e.node_key, sizeof(e.node_key));
    return 0;
}
