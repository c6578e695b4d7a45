/*
 * libFuzzer target for cap_reasm: the input drives two directions of one
 * connection through a sequence of segment pushes, then closes both.
 *
 * Input layout (all integers big-endian):
 *   byte 0       config: bits 0-5 per-direction cap = 64 * (1 + value) bytes;
 *                bit 6 the data sink fails on its 5th call; bit 7 "coherent" payloads
 *   bytes 1-8    initial sequence numbers of direction 0 and 1
 *   then ops of  b0: bit 0 direction, bits 1-5 TCP flags (FIN SYN RST PSH ACK),
 *                    bits 6-7 how to pick seq: 0 isn + d, 1 last seq + d,
 *                    2 next expected seq + d, 3 the next 4 bytes verbatim
 *                b1-b2: signed 16-bit delta d
 *                b3: payload length; b4: low 4 bits snaplen-cut bytes
 *                payload: b3 bytes of input, unless coherent
 * In coherent mode every payload byte is a function of its sequence number,
 * so the bytes delivered must match their sequence numbers exactly.
 * A sink error ends the pushes, as it ends the capture in the flow layer.
 * Invariants checked after each push: delivered + gap bytes account for every
 * position passed, buffered bytes never exceed the cap, buffer accounting
 * matches the shared total, and nothing stays buffered after a flush.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cap_reasm.h"

struct dir_state {
    struct cap_reasm r;
    uint64_t origin; /* r.next - delivered - gap_bytes, fixed once started */
    int have_origin;
    uint32_t isn;
    uint32_t last;
};

struct fuzz_ctx {
    struct cap_reasm_env env;
    struct dir_state d[2];
    int coherent;
    int fail_at;
    int calls;
};

struct dir_ud {
    struct fuzz_ctx *ctx;
    int dir;
};

static uint8_t coherent_byte(uint32_t seq)
{
    return (uint8_t)((seq * 2654435761u) >> 24);
}

static int sink_data(void *ud, const uint8_t *buf, size_t len, int64_t ts_ns)
{
    struct dir_ud *u = ud;
    struct fuzz_ctx *c = u->ctx;
    const struct cap_reasm *r = &c->d[u->dir].r;

    (void)ts_ns;
    if (len == 0)
        abort();
    if (c->coherent) {
        /* The reassembler advances before calling out: buf ends at r->next_seq. */
        uint32_t seq = r->next_seq - (uint32_t)len;
        for (size_t i = 0; i < len; i++)
            if (buf[i] != coherent_byte(seq + (uint32_t)i))
                abort();
    }
    c->calls++;
    return c->fail_at && c->calls == c->fail_at ? H2R_ERR_IO : 0;
}

static int sink_gap(void *ud, uint64_t missing, int64_t ts_ns)
{
    struct dir_ud *u = ud;

    (void)ts_ns;
    if (missing == 0 || u->ctx->d[u->dir].r.gap_bytes < missing)
        abort();
    return 0;
}

static const struct cap_reasm_sink sink = {sink_data, sink_gap};

static void check(struct fuzz_ctx *c, int pushed_ok)
{
    uint64_t total = 0;

    for (int i = 0; i < 2; i++) {
        struct dir_state *d = &c->d[i];
        total += d->r.ooo_bytes;
        if (!d->r.started)
            continue;
        if (!d->have_origin) {
            d->origin = d->r.next - d->r.delivered - d->r.gap_bytes;
            d->have_origin = 1;
        } else if (d->r.next - d->r.delivered - d->r.gap_bytes != d->origin) {
            abort();
        }
        if (pushed_ok && d->r.ooo_bytes > c->env.max_ooo)
            abort();
        if ((d->r.ooo_head == NULL) != (d->r.ooo_tail == NULL) ||
            (d->r.ooo_head == NULL) != (d->r.ooo_bytes == 0))
            abort();
    }
    if (total != c->env.ooo_total)
        abort();
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned flag_bits[5] = {CAP_TCP_FIN, CAP_TCP_SYN, CAP_TCP_RST, CAP_TCP_PSH,
                                          CAP_TCP_ACK};
    struct fuzz_ctx c;
    struct dir_ud ud[2];
    uint8_t payload[256];
    size_t off = 9;
    int64_t ts = 0;

    if (size < 9)
        return 0;
    memset(&c, 0, sizeof(c));
    c.env.max_ooo = (size_t)64 * (1u + (data[0] & 0x3fu));
    c.fail_at = (data[0] & 0x40u) ? 5 : 0;
    c.coherent = (data[0] & 0x80u) != 0;
    for (int i = 0; i < 2; i++) {
        ud[i].ctx = &c;
        ud[i].dir = i;
        c.d[i].isn = be32(data + 1 + (size_t)4 * (size_t)i);
        c.d[i].last = c.d[i].isn;
        cap_reasm_init(&c.d[i].r, &c.env, &sink, &ud[i]);
    }

    while (off + 5 <= size) {
        const uint8_t *op = data + off;
        int dir = op[0] & 1;
        struct dir_state *d = &c.d[dir];
        unsigned flags = 0;
        int16_t delta = (int16_t)(uint16_t)((unsigned)op[1] << 8 | op[2]);
        uint32_t len = op[3], missing = op[4] & 0x0fu, seq;
        int rc;

        for (int b = 0; b < 5; b++)
            if (op[0] & (2u << b))
                flags |= flag_bits[b];
        off += 5;
        switch (op[0] >> 6) {
        case 0:
            seq = d->isn + (uint32_t)(int32_t)delta;
            break;
        case 1:
            seq = d->last + (uint32_t)(int32_t)delta;
            break;
        case 2:
            seq = d->r.next_seq + (uint32_t)(int32_t)delta;
            break;
        default:
            if (off + 4 > size)
                goto done;
            seq = be32(data + off);
            off += 4;
            break;
        }
        if (c.coherent) {
            /* Payload starts after the SYN's own sequence number. */
            uint32_t first = seq + ((flags & CAP_TCP_SYN) ? 1u : 0u);
            for (uint32_t i = 0; i < len; i++)
                payload[i] = coherent_byte(first + i);
        } else {
            if (len > size - off)
                len = (uint32_t)(size - off);
            memcpy(payload, data + off, len);
            off += len;
        }
        d->last = seq;
        ts += 1000;
        rc = cap_reasm_push(&d->r, seq, flags, payload, len, missing, ts);
        if (rc != 0 && rc != H2R_ERR_IO)
            abort();
        check(&c, rc == 0);
        if (rc != 0)
            break; /* sink errors are fatal to the flow layer too */
    }
done:
    for (int i = 0; i < 2; i++) {
        int rc = cap_reasm_flush(&c.d[i].r, ts + 1);
        if (rc != 0 && rc != H2R_ERR_IO)
            abort();
        check(&c, 0);
        if (rc == 0 && c.d[i].r.ooo_bytes != 0)
            abort();
        if (rc == 0 && c.d[i].r.fin_seen && !cap_reasm_fin_done(&c.d[i].r))
            abort();
    }
    for (int i = 0; i < 2; i++)
        cap_reasm_release(&c.d[i].r);
    if (c.env.ooo_total != 0)
        abort();
    return 0;
}
