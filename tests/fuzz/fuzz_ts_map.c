/*
 * libFuzzer target for the /machine/map stream decoder (core/ts/ts_map.c).
 *
 * Input layout:
 *   byte 0   bit 0: bodies are zstd (decoder's compressed option)
 *            bit 1: "harness frames": the rest is [u8 len][len bytes of JSON]...
 *                   and the harness compresses (if bit 0) and length-prefixes
 *                   each piece itself, so the fuzzer reaches the JSON code
 *                   behind valid zstd; otherwise the rest is the wire stream
 *            bits 2-7: feed chunk size - 1 (1..64 bytes)
 * Caps are small (64 KiB frames, 1 MiB JSON) so a bomb is found quickly.
 * Checked: every delivered message is an object with consistent counts, the
 * stream counters add up, errors are sticky.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "ts2021.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ctx {
    uint64_t calls, keepalives, netmaps;
};

static int on_map(void *ud, const struct ts_map_msg *m, json_t *root)
{
    struct ctx *c = ud;

    if (!json_is_object(root) || !m->json || m->json_len == 0 || m->index != c->calls)
        abort();
    if (m->keepalive != json_is_true(json_object_get(root, "KeepAlive")))
        abort();
    if (m->keepalive ? (m->netmap_seq != 0 || m->initial)
                     : (m->netmap_seq != c->netmaps + 1 || m->initial != (c->netmaps == 0)))
        abort();
    if (m->peers < -1 || m->peers_changed < -1 || m->peers_removed < -1)
        abort();
    c->calls++;
    if (m->keepalive)
        c->keepalives++;
    else
        c->netmaps++;
    return 0;
}

/* Builds the wire stream from [u8 len][json] pieces. Returns its length. */
static size_t harness_stream(const uint8_t *in, size_t len, int compress, uint8_t *out, size_t cap)
{
    size_t off = 0, w = 0;

    while (off < len) {
        size_t n = in[off++], body;

        if (n > len - off)
            n = len - off;
        if (cap - w < 4 + ZSTD_compressBound(n))
            break;
        if (compress) {
            body = ZSTD_compress(out + w + 4, cap - w - 4, in + off, n, 1);
            if (ZSTD_isError(body))
                abort();
        } else {
            memcpy(out + w + 4, in + off, n);
            body = n;
        }
        out[w] = (uint8_t)body;
        out[w + 1] = (uint8_t)(body >> 8);
        out[w + 2] = (uint8_t)(body >> 16);
        out[w + 3] = (uint8_t)(body >> 24);
        w += 4 + body;
        off += n;
    }
    return w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ts_map_opts o = {.max_frame = 64u << 10, .max_json = 1u << 20};
    struct ts_map_decoder *d = NULL;
    const struct ts_map_stats *st;
    const uint8_t *in;
    uint8_t *built = NULL;
    struct ctx c;
    size_t chunk, len, off = 0;
    int rc = 0;

    if (size < 1)
        return 0;
    memset(&c, 0, sizeof(c));
    o.compressed = data[0] & 1;
    chunk = 1 + (data[0] >> 2);
    in = data + 1;
    len = size - 1;
    if (data[0] & 2) {
        size_t cap = 2 * len + 4096;

        built = malloc(cap);
        if (!built)
            return 0;
        len = harness_stream(in, len, o.compressed, built, cap);
        in = built;
    }
    if (ts_map_decoder_new(&d, &o, on_map, &c) != 0)
        abort();
    while (off < len) {
        size_t n = len - off < chunk ? len - off : chunk;

        rc = ts_map_feed(d, in + off, n);
        if (rc != 0)
            break;
        off += n;
    }
    st = ts_map_decoder_stats(d);
    if (st->messages != c.calls || st->keepalives != c.keepalives || st->netmaps != c.netmaps ||
        st->messages != st->keepalives + st->netmaps)
        abort();
    if (rc != 0 && (ts_map_feed(d, in, len) != rc || ts_map_decoder_error(d)[0] == '\0'))
        abort();
    /* Harness-built streams of valid pieces only fail on JSON, never on framing. */
    if (built && rc != 0 && rc != H2R_ERR_FORMAT && rc != H2R_ERR_LIMIT)
        abort();
    ts_map_decoder_free(d);
    free(built);
    return 0;
}
