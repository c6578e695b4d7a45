/*
 * libFuzzer target for the TS2021 record layer (core/ts/ts_frame.c).
 *
 * Input layout:
 *   byte 0   bit 0: mode (0 bare frame parser, 1 client session)
 *            bit 1: bare mode: server_first
 *            bits 2-7: feed chunk size - 1 (1..64 bytes)
 *   bare mode: the rest is fed to ts_frame_feed() in chunks. Checked: every
 *            frame delivered respects the header rules, the byte count matches
 *            what was consumed, errors are sticky.
 *   session mode: a client session is opened from the capver-130 vector's
 *            transport keys (bit 1 = 1: it runs that handshake instead - 101
 *            head and response frame - which is slower), then ops follow:
 *              b0 bit 0 = 0: seal the next b1 bytes as ONE valid server record
 *                            (so the EarlyNoise splitter and the record path see
 *                            arbitrary plaintext), = 1: feed the next b1 bytes raw
 *            Checked while only sealed records were fed: the plaintext handed to
 *            on_data plus the EarlyNoise blob is exactly what was sealed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ts2021.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- bare parser ---- */

static int bare_frame(void *ud, uint8_t type, const uint8_t *body, size_t len)
{
    struct ts_frame_parser *p = ud;

    if (len > TS_MAX_CIPHERTEXT || (len > 0 && !body))
        abort();
    if (type == TS_FRAME_RECORD && len < TS_TAG_LEN)
        abort();
    if (type == TS_FRAME_RESP && len != TS_MSG2_LEN)
        abort();
    if (type != TS_FRAME_RECORD && type != TS_FRAME_RESP && type != TS_FRAME_ERROR)
        abort();
    if ((type == TS_FRAME_RESP || type == TS_FRAME_ERROR) && p->frames != 1)
        abort(); /* only as the very first frame */
    return 0;
}

static void run_bare(const uint8_t *data, size_t size, size_t chunk, int server_first)
{
    struct ts_frame_parser p;
    size_t off = 0;
    int rc = 0;

    ts_frame_parser_init(&p, server_first, bare_frame, &p);
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;

        rc = ts_frame_feed(&p, data + off, n);
        if (rc != 0)
            break;
        off += n;
        if (p.bytes != off)
            abort();
    }
    if (rc != 0 && (ts_frame_feed(&p, data, size) != rc || p.err[0] == '\0'))
        abort();
}

/* ---- client session ---- */

#define MAX_PLAIN 65536

struct ctx {
    uint8_t sealed[MAX_PLAIN]; /* every plaintext byte sealed so far */
    size_t sealed_len;
    uint8_t got[MAX_PLAIN]; /* what on_data delivered */
    size_t got_len;
    size_t early_len; /* JSON length of the delivered EarlyNoise */
    int early_calls;
};

static int s_data(void *ud, const uint8_t *buf, size_t len)
{
    struct ctx *c = ud;

    if (len == 0 || len > sizeof(c->got) - c->got_len)
        abort();
    memcpy(c->got + c->got_len, buf, len);
    c->got_len += len;
    return 0;
}

static int s_early(void *ud, const uint8_t *json, size_t len)
{
    struct ctx *c = ud;

    if (len > 0 && !json)
        abort();
    c->early_calls++;
    c->early_len = len;
    return 0;
}

static const struct ts_session_callbacks s_cb = {NULL, s_early, s_data};

static const char head_101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: tailscale-control-protocol\r\n"
                               "Connection: upgrade\r\n\r\n";
/* The capver-130 vector's response frame and server->client key (k2). */
static const uint8_t resp_frame[TS_RESP_FRAME_LEN] = {
    0x02, 0x00, 0x30, 0x67, 0x5d, 0xd5, 0x74, 0xed, 0x77, 0x89, 0x31, 0x0b, 0x3d,
    0x2e, 0x76, 0x81, 0xf3, 0x79, 0x0b, 0x46, 0x6c, 0x77, 0x3b, 0x15, 0x21, 0xfe,
    0xcf, 0x36, 0x57, 0x79, 0x58, 0x37, 0x1e, 0xa5, 0x2f, 0xc9, 0xdd, 0x7d, 0x78,
    0xdf, 0x78, 0xba, 0x87, 0xd8, 0xe5, 0xe2, 0x46, 0xff, 0xc6, 0xaf, 0x00};
static const uint8_t k1[TS_KEY_LEN] = {
    0x1f, 0xfa, 0x52, 0x0b, 0x7b, 0x78, 0x4b, 0x83, 0x35, 0x5f, 0x4c, 0xa5, 0x75, 0x4d, 0x33, 0x3f,
    0x51, 0xf5, 0x3f, 0xf3, 0x1d, 0x9d, 0x98, 0xf6, 0x97, 0xc2, 0x2e, 0x8f, 0x79, 0xb6, 0x6e, 0x22};
static const uint8_t k2[TS_KEY_LEN] = {
    0x16, 0x57, 0xd0, 0x25, 0x48, 0x68, 0x88, 0x64, 0x83, 0x86, 0xe4, 0x6e, 0x37, 0xe6, 0x72, 0x2a,
    0x42, 0xc6, 0x05, 0xd3, 0xf1, 0xb0, 0xec, 0x24, 0x45, 0x41, 0x90, 0xa6, 0x45, 0x35, 0x50, 0x89};

static void seq_key(uint8_t k[TS_KEY_LEN], unsigned first)
{
    for (unsigned i = 0; i < TS_KEY_LEN; i++)
        k[i] = (uint8_t)(first + i);
}

static void run_session(const uint8_t *data, size_t size, size_t chunk, int handshake)
{
    uint8_t machine[32], ceph[32], control[32], control_pub[32];
    uint8_t rec[TS_MAX_FRAME];
    char req[512];
    size_t n = 0, off = 0;
    struct ts_cipher tx;
    struct ts_session s;
    struct ctx *c = calloc(1, sizeof(*c));
    int raw = 0, rc = 0;

    if (!c)
        return;
    if (handshake) {
        seq_key(machine, 0x00);
        seq_key(ceph, 0x20);
        seq_key(control, 0x40);
        if (ts_x25519_public(control, control_pub) != 0 ||
            ts_session_client_init(&s, 130, machine, control_pub, &s_cb, c) != 0 ||
            ts_noise_set_ephemeral(&s.noise, ceph) != 0 ||
            ts_session_client_request(&s, "h", NULL, req, sizeof(req), &n) != 0 ||
            ts_session_feed(&s, (const uint8_t *)head_101, strlen(head_101)) != 0 ||
            ts_session_feed(&s, resp_frame, sizeof(resp_frame)) != 0)
            abort();
    } else if (ts_session_open_keys(&s, TS_NOISE_INITIATOR, k1, k2, &s_cb, c) != 0) {
        abort();
    }
    if (s.state != TS_SESSION_OPEN || ts_cipher_init(&tx, k2) != 0)
        abort();

    while (off + 2 <= size && rc == 0) {
        int op = data[off] & 1;
        size_t len = data[off + 1];

        off += 2;
        if (len > size - off)
            len = size - off;
        if (op == 0) {
            size_t rlen = 0;

            if (c->sealed_len + len > sizeof(c->sealed))
                break;
            if (ts_record_seal(&tx, data + off, len, rec, sizeof(rec), &rlen) != 0)
                abort();
            memcpy(c->sealed + c->sealed_len, data + off, len);
            c->sealed_len += len;
            for (size_t i = 0; i < rlen && rc == 0; i += chunk)
                rc = ts_session_feed(&s, rec + i, rlen - i < chunk ? rlen - i : chunk);
            if (rc != 0 && !raw && rc != H2R_ERR_LIMIT)
                abort(); /* valid records only fail on the EarlyNoise cap */
        } else {
            raw = 1;
            rc = ts_session_feed(&s, data + off, len);
        }
        off += len;
    }
    /* Sealed-only streams: output = input minus the EarlyNoise blob. */
    if (!raw && rc == 0 && s.early.state == TS_EARLY_ST_PASS) {
        size_t skip = c->early_calls ? TS_EARLY_HDR_LEN + c->early_len : 0;

        if (c->early_calls > 1 || skip + c->got_len != c->sealed_len ||
            memcmp(c->got, c->sealed + skip, c->got_len) != 0)
            abort();
    }
    if (rc != 0 && (s.state != TS_SESSION_FAILED || ts_session_feed(&s, data, 1) != rc))
        abort();
    ts_cipher_cleanup(&tx);
    ts_session_cleanup(&s);
    free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t chunk;

    if (size < 1)
        return 0;
    chunk = 1 + (data[0] >> 2);
    if (data[0] & 1)
        run_session(data + 1, size - 1, chunk, (data[0] >> 1) & 1);
    else
        run_bare(data + 1, size - 1, chunk, (data[0] >> 1) & 1);
    return 0;
}
