/*
 * Unit tests for ts_noise (and the record/session glue that carries it):
 * every value of the capver-130 TS2021 vector (shared/ts2021/vectors-capver130.txt,
 * produced by an independent Python model) byte for byte, the same handshake
 * for capvers 113 and 145, the public cacophony Noise_IK_25519_ChaChaPoly_BLAKE2s
 * vector (payloads, and proof that records past the first use big-endian
 * nonces), the tailscale-rs ts_noise vector, the responder's read of message 1,
 * and the failure paths: wrong control key, tampered frames, nonce exhaustion.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ts2021.h"

/* ---- vector data ---- */

/* capver 130: machine priv = 00..1f, client eph = 20..3f, control priv = 40..5f,
 * server eph = 60..7f. */
static const char V_PROLOGUE[] = "Tailscale Control Protocol v130";
static const char V_MACHINE_PUB[] =
    "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f";
static const char V_CONTROL_PUB[] =
    "79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a";
static const char V_INIT_FRAME[] =
    "0082010060358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254"
    "ad5b8febedeb97415be53612205e6bfab385e34cb127dd8854c4f9afb10f9b0e49"
    "945171d80e52b62b1cc7794ec92042d7380dba1e3c96fde099f9f4158e08ea";
static const char V_HEADER[] =
    "AIIBAGA1gHLWNliA0a7qMprfkSE4OFHtIaKOO3XpZdDSzRZiVK1bj+vt65dBW+U2EiBea/qzheNMsSfdiFTE+a+xD5sO"
    "SZRRcdgOUrYrHMd5TskgQtc4DboePJb94Jn59BWOCOo=";
static const char V_RESP_FRAME[] =
    "020030675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f"
    "c9dd7d78df78ba87d8e5e246ffc6af00";
static const char V_HASH[] = "fc6a2df04a3dde3f2239a9139f5ce582cae89ee8c448491635f55cdfe7dbdead";
static const char V_K1[] = "1ffa520b7b784b83355f4ca5754d333f51f53ff31d9d98f697c22e8f79b66e22";
static const char V_K2[] = "1657d025486888648386e46e37e6722a42c605d3f1b0ec24454190a645355089";
static const char V_S2C0[] = "040015970a14771e3986da5bc61cb910623aa7aba8c4df6f";
static const char V_S2C1[] = "040014e17b8abc4278e64ef54c8ad15750f70a76f9e783";
static const char V_S2C2[] =
    "04006f9f05a9c0ef62720cee7a3322a00740f98f319193d19e5492b6b86a5898d88d0e7d6ef997a271464a"
    "cc42a80c213da7a66ffaabbf91b3cb5665bf5358107965d8c64afc7617364439edd6725ffeb1f7d9e04925"
    "8ef034436f802f6e20768acf389c974337df75cdf359c2626e390b9b";
static const char V_EARLY_JSON[] =
    "{\"nodeKeyChallenge\":\"chalpub:0000000000000000000000000000000000000000000000000000000000"
    "000000\"}";
static const char V_C2S0[] = "040028e42e01d8573d1173d84370e6f20edf94d699eeecda7e16e9df232e7952f0f7"
                             "8675a9b5941bce62c2";
static const char V_C2S1[] = "040015d2340ad1e4312e8db9998d67f7fa32f131ac9d935b";
static const char V_C2S2[] = "0400101c79dcbf03b94133273963f47ec98fdc";
static const char V_C2S256[] = "0400113e08beed09471c0ebc2794a15918f70b46";
static const char H2_MAGIC[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* Same keys, other capvers (ts2021_ref.py ts2021_vector(113 / 145)). */
static const char V113_INIT[] =
    "0071010060358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254ad5b8febed"
    "eb97415be53612205e6bfab385e34cb127dd8854c4f9afb10f9b0e600b9f09df004acc34c72a234b0edf"
    "e512fde66660db25fa49750fa07a714dc8";
static const char V113_RESP[] = "020030675dd574ed7789310b3d2e7681f3790b466c773b1521fecf3657795837"
                                "1ea52f04a855d028335246f01c17f3ff44e121";
static const char V113_HASH[] = "1d74d40023b5daf7cae5d0693113e84604e6be2b8d30b0ce53c031ae8d79819a";
static const char V145_INIT[] =
    "0091010060358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254ad5b8febed"
    "eb97415be53612205e6bfab385e34cb127dd8854c4f9afb10f9b0eacef4c3b928b370f94f285b6976dfe"
    "679ecba5c448ee81b48854de351340c599";
static const char V145_RESP[] = "020030675dd574ed7789310b3d2e7681f3790b466c773b1521fecf3657795837"
                                "1ea52f75865d7f4720afaf7ee19199abb14b28";
static const char V145_HASH[] = "2227aa90cf06044d78a6681737f0be48fac6a2e13f12086e076cb5bbbef55f20";

/* Cacophony (snow tests/vectors/cacophony.txt), Noise_IK_25519_ChaChaPoly_BLAKE2s. */
static const char C_PROLOGUE[] = "4a6f686e2047616c74"; /* "John Galt" */
static const char C_INIT_STATIC[] =
    "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1";
static const char C_INIT_EPH[] = "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a";
static const char C_REMOTE_STATIC[] =
    "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62";
static const char C_RESP_STATIC[] =
    "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893";
static const char C_RESP_EPH[] = "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b";
static const char C_HASH[] = "48f3cb8bc9319da4ba1e9933991b1c4ed4034f1f126a76d3a1fbcfd7f94248d4";
static const char C_P0[] = "4c756477696720766f6e204d69736573";
static const char C_M0[] =
    "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79440b03ddc7aac5123d06a1b23b"
    "71670e32e76c28239a7ca4ac8f784de7e44c1adbfc6e83fef7352a58d9d56157400c0a737b1d171ce36822"
    "9c7b752ac25b8faf4eca690f6d896f543be02c996ab2b86b76";
static const char C_P1[] = "4d757272617920526f746862617264";
static const char C_M1[] = "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843d9b5"
                           "a8927f0ac9655ef76833bc7e5561f42e691ac8404efd6fbd6308b6a27c";
static const char C_P2[] = "462e20412e20486179656b";
static const char C_M2[] = "2c256ed08fcd08c2980f954ee4beaccb61c9581340f5dd2fd1cf3b";
static const char C_P3[] = "4361726c204d656e676572";
static const char C_M3[] = "d6033f70eee20945c7c9dba304e397ee3b284ff5e00fd9efb095d3";
static const char C_P4[] = "4a65616e2d426170746973746520536179";
static const char C_M4_LE[] = "a9c068ca5d8babf72560652d8e851adbfac35c8a66e810d560863173e96adf4cfe";

/* tailscale-rs ts_noise/src/ik.rs test_handshake: prologue "TEST HANDSHAKE". */
static const char R_MSG1[] =
    "358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254ad5b8febedeb97415be53612"
    "205e6bfab385e34cb127dd8854c4f9afb10f9b0e49075a6f14f9d5bc61412f096ae4950589aef8286944be93"
    "ca02ab76a5483b51";
static const char R_MSG2[] = "675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f5ef5"
                             "508032efff8066fc858410f411e8";

/* ---- helpers ---- */

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;

    while (s[0] && s[1] && n < cap) {
        unsigned v = 0;
        for (int i = 0; i < 2; i++) {
            char c = s[i];
            v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
        }
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

/* key = bytes first..first+31 */
static void seq_key(uint8_t k[TS_KEY_LEN], unsigned first)
{
    for (unsigned i = 0; i < TS_KEY_LEN; i++)
        k[i] = (uint8_t)(first + i);
}

#define CHECK_HEX(buf, len, hex)                                                                   \
    do {                                                                                           \
        uint8_t want_[4200];                                                                       \
        size_t wl_ = unhex((hex), want_, sizeof(want_));                                           \
        CHECK_EQ_MEM((buf), (len), want_, wl_);                                                    \
    } while (0)

/* Runs the fixed-key handshake for capver; frames go to init / resp. */
struct hs {
    struct ts_noise client, server;
    struct ts_cipher c_tx, c_rx, s_tx, s_rx;
    uint8_t init[TS_INIT_FRAME_LEN];
    uint8_t resp[TS_RESP_FRAME_LEN];
};

static void hs_run(struct hs *h, uint16_t capver)
{
    uint8_t machine[32], ceph[32], control[32], seph[32], control_pub[32];
    uint8_t msg1[TS_MSG1_LEN], msg2[TS_MSG2_LEN];
    size_t len = 0, flen = 0;

    memset(h, 0, sizeof(*h));
    seq_key(machine, 0x00);
    seq_key(ceph, 0x20);
    seq_key(control, 0x40);
    seq_key(seph, 0x60);
    CHECK_EQ_INT(ts_x25519_public(control, control_pub), 0);

    CHECK_EQ_INT(ts_noise_init_initiator(&h->client, capver, machine, control_pub), 0);
    CHECK_EQ_INT(ts_noise_set_ephemeral(&h->client, ceph), 0);
    CHECK_EQ_INT(ts_noise_write_msg1(&h->client, NULL, 0, msg1, sizeof(msg1), &len), 0);
    CHECK_EQ_INT(len, TS_MSG1_LEN);
    CHECK_EQ_INT(ts_init_frame_build(capver, msg1, len, h->init, sizeof(h->init), &flen), 0);
    CHECK_EQ_INT(flen, TS_INIT_FRAME_LEN);

    CHECK_EQ_INT(ts_noise_init_responder(&h->server, capver, control), 0);
    CHECK_EQ_INT(ts_noise_responder_read_msg1(&h->server, msg1, len, NULL, 0, NULL), 0);
    CHECK_EQ_INT(ts_noise_set_ephemeral(&h->server, seph), 0);
    CHECK_EQ_INT(ts_noise_responder_write_msg2(&h->server, NULL, 0, msg2, sizeof(msg2), &len), 0);
    CHECK_EQ_INT(len, TS_MSG2_LEN);
    h->resp[0] = TS_FRAME_RESP;
    h->resp[1] = 0;
    h->resp[2] = TS_MSG2_LEN;
    memcpy(h->resp + 3, msg2, sizeof(msg2));

    CHECK_EQ_INT(ts_noise_read_msg2(&h->client, msg2, len, NULL, 0, NULL), 0);
    CHECK_EQ_INT(ts_noise_split(&h->client, &h->c_tx, &h->c_rx), 0);
    CHECK_EQ_INT(ts_noise_split(&h->server, &h->s_tx, &h->s_rx), 0);
}

static void hs_free(struct hs *h)
{
    ts_noise_cleanup(&h->client);
    ts_noise_cleanup(&h->server);
    ts_cipher_cleanup(&h->c_tx);
    ts_cipher_cleanup(&h->c_rx);
    ts_cipher_cleanup(&h->s_tx);
    ts_cipher_cleanup(&h->s_rx);
}

/* Seals pt as one record with c and compares with the vector; then opens it with peer. */
static void check_record(struct ts_cipher *c, struct ts_cipher *peer, const void *pt, size_t len,
                         const char *hex)
{
    uint8_t rec[TS_MAX_FRAME], back[TS_MAX_FRAME];
    size_t rlen = 0, blen = 0;

    CHECK_EQ_INT(ts_record_seal(c, pt, len, rec, sizeof(rec), &rlen), 0);
    CHECK_EQ_INT(rlen, ts_record_sealed_len(len));
    CHECK_HEX(rec, rlen, hex);
    CHECK_EQ_INT(ts_cipher_open(peer, rec + 3, rlen - 3, back, &blen), 0);
    CHECK_EQ_MEM(back, blen, pt, len);
}

/* ---- the capver-130 vector ---- */

static void test_vector_130(void)
{
    uint8_t k[32], pub[32], early[256];
    char text[200];
    size_t n = 0, elen = 0;
    struct hs h;

    n = ts_noise_prologue(130, text, sizeof(text));
    CHECK_EQ_MEM(text, n, V_PROLOGUE, strlen(V_PROLOGUE));
    CHECK_EQ_INT(ts_noise_prologue(130, text, 10), 0);
    seq_key(k, 0x00);
    CHECK_EQ_INT(ts_x25519_public(k, pub), 0);
    CHECK_HEX(pub, 32, V_MACHINE_PUB);
    seq_key(k, 0x40);
    CHECK_EQ_INT(ts_x25519_public(k, pub), 0);
    CHECK_HEX(pub, 32, V_CONTROL_PUB);

    hs_run(&h, 130);
    CHECK_HEX(h.init, sizeof(h.init), V_INIT_FRAME);
    CHECK_EQ_INT(ts_b64_encode(h.init, sizeof(h.init), text, sizeof(text), &n), 0);
    CHECK_EQ_INT(n, TS_HANDSHAKE_B64_LEN);
    CHECK_EQ_STR(text, V_HEADER);
    CHECK_HEX(h.resp, sizeof(h.resp), V_RESP_FRAME);
    CHECK_HEX(h.client.h, 32, V_HASH);
    CHECK_HEX(h.server.h, 32, V_HASH);
    /* The client sends with k1 and receives with k2; the server the reverse. */
    CHECK_HEX(h.c_tx.key, 32, V_K1);
    CHECK_HEX(h.c_rx.key, 32, V_K2);
    CHECK_HEX(h.s_tx.key, 32, V_K2);
    CHECK_HEX(h.s_rx.key, 32, V_K1);
    /* Split wiped the chaining key and the ephemeral. */
    memset(k, 0, sizeof(k));
    CHECK_EQ_MEM(h.client.ck, 32, k, 32);
    CHECK_EQ_MEM(h.client.e_priv, 32, k, 32);

    /* Server: the EarlyNoise blob in three writes, as headscale does. */
    CHECK_EQ_INT(ts_early_build(V_EARLY_JSON, strlen(V_EARLY_JSON), early, sizeof(early), &elen),
                 0);
    check_record(&h.s_tx, &h.c_rx, early, 5, V_S2C0);
    check_record(&h.s_tx, &h.c_rx, early + 5, 4, V_S2C1);
    check_record(&h.s_tx, &h.c_rx, early + 9, elen - 9, V_S2C2);
    /* Client: h2 preface, "hello", an empty record, then counter 256. */
    check_record(&h.c_tx, &h.s_rx, H2_MAGIC, strlen(H2_MAGIC), V_C2S0);
    check_record(&h.c_tx, &h.s_rx, "hello", 5, V_C2S1);
    check_record(&h.c_tx, &h.s_rx, "", 0, V_C2S2);
    h.c_tx.nonce = 256;
    h.s_rx.nonce = 256;
    check_record(&h.c_tx, &h.s_rx, "x", 1, V_C2S256);
    CHECK_EQ_INT(h.c_tx.nonce, 257);
    hs_free(&h);
}

static void test_other_capvers(void)
{
    struct hs h;

    hs_run(&h, 113);
    CHECK_HEX(h.init, sizeof(h.init), V113_INIT);
    CHECK_HEX(h.resp, sizeof(h.resp), V113_RESP);
    CHECK_HEX(h.client.h, 32, V113_HASH);
    hs_free(&h);
    hs_run(&h, 145);
    CHECK_HEX(h.init, sizeof(h.init), V145_INIT);
    CHECK_HEX(h.resp, sizeof(h.resp), V145_RESP);
    CHECK_HEX(h.client.h, 32, V145_HASH);
    hs_free(&h);
}

/* ---- the same vector through ts_session, fed byte by byte ---- */

struct sink {
    uint8_t data[16384];
    size_t len;
    uint8_t early[512];
    size_t early_len;
    int early_calls;
    int handshakes;
};

static int sink_data(void *ud, const uint8_t *buf, size_t len)
{
    struct sink *s = ud;

    if (len > sizeof(s->data) - s->len)
        return H2R_ERR_LIMIT;
    memcpy(s->data + s->len, buf, len);
    s->len += len;
    return 0;
}

static int sink_early(void *ud, const uint8_t *json, size_t len)
{
    struct sink *s = ud;

    s->early_calls++;
    if (len > sizeof(s->early))
        return H2R_ERR_LIMIT;
    memcpy(s->early, json, len);
    s->early_len = len;
    return 0;
}

static int sink_handshake(void *ud, struct ts_session *sess)
{
    struct sink *s = ud;

    (void)sess;
    s->handshakes++;
    return 0;
}

static const struct ts_session_callbacks sink_cb = {sink_handshake, sink_early, sink_data};

static void test_session_vector(void)
{
    static const char head[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: tailscale-control-protocol\r\n"
                               "Connection: upgrade\r\n"
                               "Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n";
    static const uint8_t settings[] = {0, 0, 0, 4, 0, 0, 0, 0, 0}; /* empty SETTINGS */
    uint8_t machine[32], ceph[32], control[32], control_pub[32], k2[32];
    uint8_t stream[1024], rec[256], out[256];
    char req[1024], b64hdr[160];
    size_t n = 0, slen = 0, rlen = 0, olen = 0;
    struct ts_cipher srv_tx;
    struct ts_session s;
    struct sink sk;

    for (int chunk = 1; chunk <= 2; chunk++) {
        memset(&sk, 0, sizeof(sk));
        seq_key(machine, 0x00);
        seq_key(ceph, 0x20);
        seq_key(control, 0x40);
        CHECK_EQ_INT(ts_x25519_public(control, control_pub), 0);
        CHECK_EQ_INT(ts_session_client_init(&s, 130, machine, control_pub, &sink_cb, &sk), 0);
        CHECK_EQ_INT(ts_noise_set_ephemeral(&s.noise, ceph), 0);
        /* A bad host is refused before msg1 is spent. */
        CHECK_EQ_INT(ts_session_client_request(&s, "bad\r\nhost", NULL, req, sizeof(req), &n),
                     H2R_ERR_ARG);
        CHECK_EQ_INT(
            ts_session_client_request(&s, "hs.example:8080", "tailscale-test", req, 10, &n),
            H2R_ERR_ARG);
        CHECK_EQ_INT(ts_session_client_request(&s, "hs.example:8080", "tailscale-test", req,
                                               sizeof(req), &n),
                     0);
        CHECK_EQ_INT(n, strlen(req));
        snprintf(b64hdr, sizeof(b64hdr), "\r\nX-Tailscale-Handshake: %s\r\n", V_HEADER);
        CHECK(strstr(req, b64hdr) != NULL);
        CHECK(strncmp(req, "POST /ts2021 HTTP/1.1\r\nHost: hs.example:8080\r\n", 46) == 0);
        /* Only once. */
        CHECK_EQ_INT(ts_session_client_request(&s, "h", NULL, req, sizeof(req), &n), H2R_ERR_ARG);

        /* Server bytes: 101 head, response frame, three early records, one more record
         * holding an h2 SETTINGS frame - all in one buffer, as the corked server sends. */
        slen = sizeof(head) - 1; /* without the NUL */
        memcpy(stream, head, slen);
        slen += unhex(V_RESP_FRAME, stream + slen, sizeof(stream) - slen);
        slen += unhex(V_S2C0, stream + slen, sizeof(stream) - slen);
        slen += unhex(V_S2C1, stream + slen, sizeof(stream) - slen);
        slen += unhex(V_S2C2, stream + slen, sizeof(stream) - slen);
        unhex(V_K2, k2, sizeof(k2));
        CHECK_EQ_INT(ts_cipher_init(&srv_tx, k2), 0);
        srv_tx.nonce = 3;
        CHECK_EQ_INT(ts_record_seal(&srv_tx, settings, sizeof(settings), rec, sizeof(rec), &rlen),
                     0);
        ts_cipher_cleanup(&srv_tx);
        memcpy(stream + slen, rec, rlen);
        slen += rlen;

        if (chunk == 1) {
            for (size_t i = 0; i < slen; i++)
                CHECK_EQ_INT(ts_session_feed(&s, stream + i, 1), 0);
        } else {
            CHECK_EQ_INT(ts_session_feed(&s, stream, slen), 0);
        }
        CHECK_EQ_INT(s.state, TS_SESSION_OPEN);
        CHECK_EQ_INT(ts_session_http_status(&s), 101);
        CHECK_EQ_INT(sk.handshakes, 1);
        CHECK_EQ_INT(sk.early_calls, 1);
        CHECK_EQ_MEM(sk.early, sk.early_len, V_EARLY_JSON, strlen(V_EARLY_JSON));
        CHECK_EQ_MEM(sk.data, sk.len, settings, sizeof(settings));
        CHECK_EQ_INT(s.records_in, 4);
        CHECK_HEX(s.noise.h, 32, V_HASH);

        /* Client records equal the vector too. */
        CHECK_EQ_INT(ts_session_seal(&s, (const uint8_t *)H2_MAGIC, strlen(H2_MAGIC), out,
                                     sizeof(out), &olen),
                     0);
        CHECK_HEX(out, olen, V_C2S0);
        CHECK_EQ_INT(ts_session_seal(&s, (const uint8_t *)"hello", 5, out, 4, &olen),
                     H2R_ERR_ARG); /* too small: nothing consumed, session alive */
        CHECK_EQ_INT(ts_session_seal(&s, (const uint8_t *)"hello", 5, out, sizeof(out), &olen), 0);
        CHECK_HEX(out, olen, V_C2S1);
        CHECK_EQ_INT(s.records_out, 2);
        ts_session_cleanup(&s);
    }
}

/* ---- decrypting a capture from a keylog (k1, k2) ---- */

static void test_open_keys(void)
{
    uint8_t k1[32], k2[32], stream[512];
    size_t slen = 0;
    struct ts_session cli, srv;
    struct sink csk, ssk;

    unhex(V_K1, k1, sizeof(k1));
    unhex(V_K2, k2, sizeof(k2));
    memset(&csk, 0, sizeof(csk));
    memset(&ssk, 0, sizeof(ssk));
    /* Server -> client bytes after the response frame: the three early records. */
    slen += unhex(V_S2C0, stream + slen, sizeof(stream) - slen);
    slen += unhex(V_S2C1, stream + slen, sizeof(stream) - slen);
    slen += unhex(V_S2C2, stream + slen, sizeof(stream) - slen);
    CHECK_EQ_INT(ts_session_open_keys(&cli, TS_NOISE_INITIATOR, k1, k2, &sink_cb, &csk), 0);
    CHECK_EQ_INT(ts_session_feed(&cli, stream, slen), 0);
    CHECK_EQ_MEM(csk.early, csk.early_len, V_EARLY_JSON, strlen(V_EARLY_JSON));
    CHECK_EQ_INT(csk.len, 0);
    /* Client -> server bytes after the 101: records n=0,1,2. */
    slen = unhex(V_C2S0, stream, sizeof(stream));
    slen += unhex(V_C2S1, stream + slen, sizeof(stream) - slen);
    slen += unhex(V_C2S2, stream + slen, sizeof(stream) - slen);
    CHECK_EQ_INT(ts_session_open_keys(&srv, TS_NOISE_RESPONDER, k2, k1, &sink_cb, &ssk), 0);
    for (size_t i = 0; i < slen; i++)
        CHECK_EQ_INT(ts_session_feed(&srv, stream + i, 1), 0);
    CHECK_EQ_INT(ssk.len, strlen(H2_MAGIC) + 5);
    CHECK_EQ_MEM(ssk.data, strlen(H2_MAGIC), H2_MAGIC, strlen(H2_MAGIC));
    CHECK_EQ_MEM(ssk.data + strlen(H2_MAGIC), 5, "hello", 5);
    CHECK_EQ_INT(srv.records_in, 3);
    /* Swapped keys do not decrypt. */
    ts_session_cleanup(&srv);
    CHECK_EQ_INT(ts_session_open_keys(&srv, TS_NOISE_RESPONDER, k1, k2, &sink_cb, &ssk), 0);
    CHECK_EQ_INT(ts_session_feed(&srv, stream, slen), H2R_ERR_PROTO);
    CHECK(strstr(srv.err, "does not decrypt") != NULL);
    ts_session_cleanup(&srv);
    ts_session_cleanup(&cli);
    CHECK_EQ_INT(ts_session_open_keys(&srv, 5, k1, k2, &sink_cb, &ssk), H2R_ERR_ARG);
}

/* ---- responder read of message 1 (capture with the control key) ---- */

static void test_identify(void)
{
    uint8_t frame[TS_INIT_FRAME_LEN + 1], control[32], wrong[32], eph_pub[32], ceph[32];
    struct ts_client_identity id;
    char err[200];
    size_t n;

    n = unhex(V_INIT_FRAME, frame, sizeof(frame));
    CHECK_EQ_INT(n, TS_INIT_FRAME_LEN);
    seq_key(control, 0x40);
    seq_key(ceph, 0x20);
    CHECK_EQ_INT(ts_x25519_public(ceph, eph_pub), 0);
    memset(&id, 0, sizeof(id));
    CHECK_EQ_INT(ts_init_frame_identify(control, frame, n, &id, err, sizeof(err)), 0);
    CHECK_EQ_INT(id.version, 130);
    CHECK_HEX(id.machine_pub, 32, V_MACHINE_PUB);
    CHECK_EQ_MEM(id.ephemeral_pub, 32, eph_pub, 32);

    /* Through the header text, as a capture sees it. */
    {
        uint8_t dec[TS_INIT_FRAME_LEN];
        size_t dlen = 0;

        CHECK_EQ_INT(ts_b64_decode(V_HEADER, strlen(V_HEADER), dec, sizeof(dec), &dlen), 0);
        CHECK_EQ_MEM(dec, dlen, frame, n);
        CHECK_EQ_INT(ts_b64_decode(V_HEADER, strlen(V_HEADER), dec, 100, &dlen), H2R_ERR_LIMIT);
        CHECK_EQ_INT(ts_b64_decode("AAA", 3, dec, sizeof(dec), &dlen), H2R_ERR_FORMAT);
        CHECK_EQ_INT(ts_b64_decode("AA=A", 4, dec, sizeof(dec), &dlen), H2R_ERR_FORMAT);
        CHECK_EQ_INT(ts_b64_decode("AA A", 4, dec, sizeof(dec), &dlen), H2R_ERR_FORMAT);
        CHECK_EQ_INT(ts_b64_decode("QUI=", 4, dec, sizeof(dec), &dlen), 0);
        CHECK_EQ_MEM(dec, dlen, "AB", 2);
        CHECK_EQ_INT(ts_b64_decode("", 0, dec, sizeof(dec), &dlen), 0);
        CHECK_EQ_INT(dlen, 0);
    }

    /* A wrong control key fails cleanly, with a reason. */
    seq_key(wrong, 0x41);
    err[0] = '\0';
    CHECK_EQ_INT(ts_init_frame_identify(wrong, frame, n, &id, err, sizeof(err)), H2R_ERR_PROTO);
    CHECK(strstr(err, "does not authenticate") != NULL);
    /* Header version and prologue must agree. */
    frame[1] = 131;
    CHECK_EQ_INT(ts_init_frame_identify(control, frame, n, &id, err, sizeof(err)), H2R_ERR_PROTO);
    frame[1] = 130;
    /* Not an initiation frame. */
    CHECK_EQ_INT(ts_init_frame_identify(control, frame, n - 1, &id, err, sizeof(err)),
                 H2R_ERR_FORMAT);
    frame[n] = 0;
    CHECK_EQ_INT(ts_init_frame_identify(control, frame, n + 1, &id, err, sizeof(err)),
                 H2R_ERR_FORMAT);
    frame[2] = 2;
    CHECK_EQ_INT(ts_init_frame_identify(control, frame, n, &id, err, sizeof(err)), H2R_ERR_FORMAT);
    frame[2] = 1;
    frame[4] = 95;
    CHECK_EQ_INT(ts_init_frame_identify(control, frame, n, &id, err, sizeof(err)), H2R_ERR_FORMAT);
    frame[4] = 96;
    /* A flipped ciphertext bit. */
    frame[50] ^= 1;
    CHECK_EQ_INT(ts_init_frame_identify(control, frame, n, &id, err, sizeof(err)), H2R_ERR_PROTO);
}

/* ---- the client with a stale control key; a tampered response ---- */

static void test_wrong_server_key(void)
{
    uint8_t machine[32], control[32], other[32], other_pub[32], resp[TS_RESP_FRAME_LEN];
    uint8_t frame[TS_INIT_FRAME_LEN], msg2[TS_MSG2_LEN];
    static const struct ts_session_callbacks cb = {NULL, NULL, sink_data};
    struct ts_session c, srv;
    struct ts_cipher tx, rx;
    struct sink sk;
    size_t n = 0;

    memset(&sk, 0, sizeof(sk));
    seq_key(machine, 0x00);
    seq_key(control, 0x40);
    seq_key(other, 0x80);
    CHECK_EQ_INT(ts_x25519_public(other, other_pub), 0);
    /* The client believes in another control key: the server cannot read msg1. */
    CHECK_EQ_INT(ts_session_client_init(&c, 130, machine, other_pub, &cb, &sk), 0);
    CHECK_EQ_INT(ts_session_client_init_frame(&c, frame), 0);
    CHECK_EQ_INT(ts_session_server_accept(&srv, control, frame, sizeof(frame), resp, &cb, &sk),
                 H2R_ERR_PROTO);
    CHECK(strstr(srv.err, "does not authenticate") != NULL);
    ts_session_cleanup(&srv);
    /* A response made by a server holding that other key, with one bit flipped,
     * fails the client cleanly. */
    CHECK_EQ_INT(ts_session_server_accept(&srv, other, frame, sizeof(frame), resp, &cb, &sk), 0);
    resp[TS_RESP_FRAME_LEN - 1] ^= 0x80;
    CHECK_EQ_INT(ts_session_feed(&c, resp, sizeof(resp)), H2R_ERR_PROTO);
    CHECK_EQ_INT(c.state, TS_SESSION_FAILED);
    CHECK(strstr(c.err, "handshake response") != NULL);
    CHECK_EQ_INT(c.noise.step, -1);
    CHECK_EQ_INT(ts_noise_split(&c.noise, &tx, &rx), H2R_ERR_ARG);
    CHECK_EQ_INT(ts_session_feed(&c, resp, 1), H2R_ERR_PROTO); /* sticky */
    CHECK_EQ_INT(ts_session_seal(&c, machine, 1, frame, sizeof(frame), &n), H2R_ERR_PROTO);
    ts_session_cleanup(&c);
    ts_session_cleanup(&srv);

    /* Low-level: read_msg2 of a message meant for another handshake. */
    {
        struct hs h;
        struct ts_noise cl;
        uint8_t ceph[32], m1[TS_MSG1_LEN];

        hs_run(&h, 130);
        memcpy(msg2, h.resp + 3, sizeof(msg2));
        hs_free(&h);
        seq_key(ceph, 0x21);
        CHECK_EQ_INT(ts_x25519_public(control, other_pub), 0);
        CHECK_EQ_INT(ts_noise_init_initiator(&cl, 130, machine, other_pub), 0);
        CHECK_EQ_INT(ts_noise_set_ephemeral(&cl, ceph), 0);
        CHECK_EQ_INT(ts_noise_write_msg1(&cl, NULL, 0, m1, sizeof(m1), &n), 0);
        CHECK_EQ_INT(ts_noise_set_ephemeral(&cl, ceph), H2R_ERR_ARG); /* too late */
        CHECK_EQ_INT(ts_noise_read_msg2(&cl, msg2, 47, NULL, 0, NULL), H2R_ERR_FORMAT);
        ts_noise_cleanup(&cl);
        CHECK_EQ_INT(ts_noise_init_initiator(&cl, 130, machine, other_pub), 0);
        CHECK_EQ_INT(ts_noise_set_ephemeral(&cl, ceph), 0);
        CHECK_EQ_INT(ts_noise_write_msg1(&cl, NULL, 0, m1, sizeof(m1), &n), 0);
        CHECK_EQ_INT(ts_noise_read_msg2(&cl, msg2, sizeof(msg2), NULL, 0, NULL), H2R_ERR_PROTO);
        CHECK(cl.err[0] != '\0');
        ts_noise_cleanup(&cl);
    }
}

/* An all-zero (low-order) control key: X25519 yields zero, which is refused. */
static void test_zero_dh(void)
{
    uint8_t machine[32], zero[32], m1[TS_MSG1_LEN];
    struct ts_noise n;
    size_t len = 0;

    seq_key(machine, 0);
    memset(zero, 0, sizeof(zero));
    CHECK_EQ_INT(ts_noise_init_initiator(&n, 130, machine, zero), 0);
    CHECK_EQ_INT(ts_noise_write_msg1(&n, NULL, 0, m1, sizeof(m1), &len), H2R_ERR_PROTO);
    CHECK_EQ_INT(n.step, -1);
    CHECK_EQ_INT(ts_noise_write_msg1(&n, NULL, 0, m1, sizeof(m1), &len), H2R_ERR_ARG);
    ts_noise_cleanup(&n);
    /* Wrong role / order. */
    CHECK_EQ_INT(ts_noise_init_responder(&n, 130, machine), 0);
    CHECK_EQ_INT(ts_noise_write_msg1(&n, NULL, 0, m1, sizeof(m1), &len), H2R_ERR_ARG);
    CHECK_EQ_INT(ts_noise_responder_write_msg2(&n, NULL, 0, m1, sizeof(m1), &len), H2R_ERR_ARG);
    ts_noise_cleanup(&n);
    CHECK_EQ_INT(ts_noise_init_custom(&n, 7, NULL, 0, machine, NULL), H2R_ERR_ARG);
    CHECK_EQ_INT(ts_noise_init_custom(&n, TS_NOISE_INITIATOR, NULL, 0, machine, NULL), H2R_ERR_ARG);
    ts_noise_cleanup(&n);
}

/* ---- public Noise vectors ---- */

static void test_cacophony(void)
{
    uint8_t prologue[16], is[32], ie[32], rs_pub[32], rs[32], re[32];
    uint8_t p[64], m[256], out[256], pt[64];
    size_t plen, mlen, olen = 0, ptlen = 0;
    struct ts_noise i, r;
    struct ts_cipher i_tx, i_rx, r_tx, r_rx;

    size_t prl = unhex(C_PROLOGUE, prologue, sizeof(prologue));
    unhex(C_INIT_STATIC, is, 32);
    unhex(C_INIT_EPH, ie, 32);
    unhex(C_REMOTE_STATIC, rs_pub, 32);
    unhex(C_RESP_STATIC, rs, 32);
    unhex(C_RESP_EPH, re, 32);

    CHECK_EQ_INT(ts_noise_init_custom(&i, TS_NOISE_INITIATOR, prologue, prl, is, rs_pub), 0);
    CHECK_EQ_INT(ts_noise_init_custom(&r, TS_NOISE_RESPONDER, prologue, prl, rs, NULL), 0);
    CHECK_EQ_INT(ts_noise_set_ephemeral(&i, ie), 0);
    CHECK_EQ_INT(ts_noise_set_ephemeral(&r, re), 0);

    plen = unhex(C_P0, p, sizeof(p));
    CHECK_EQ_INT(ts_noise_write_msg1(&i, p, plen, out, 96, &olen), H2R_ERR_ARG); /* cap */
    CHECK_EQ_INT(ts_noise_write_msg1(&i, p, plen, out, sizeof(out), &olen), 0);
    CHECK_HEX(out, olen, C_M0);
    CHECK_EQ_INT(ts_noise_responder_read_msg1(&r, out, olen, pt, 4, &ptlen), H2R_ERR_LIMIT);
    ts_noise_cleanup(&r);
    CHECK_EQ_INT(ts_noise_init_custom(&r, TS_NOISE_RESPONDER, prologue, prl, rs, NULL), 0);
    CHECK_EQ_INT(ts_noise_responder_read_msg1(&r, out, olen, pt, sizeof(pt), &ptlen), 0);
    CHECK_EQ_MEM(pt, ptlen, p, plen);
    CHECK_EQ_MEM(r.rs, 32, i.s_pub, 32);

    plen = unhex(C_P1, p, sizeof(p));
    CHECK_EQ_INT(ts_noise_set_ephemeral(&r, re), 0);
    CHECK_EQ_INT(ts_noise_responder_write_msg2(&r, p, plen, out, sizeof(out), &olen), 0);
    CHECK_HEX(out, olen, C_M1);
    CHECK_EQ_INT(ts_noise_read_msg2(&i, out, olen, pt, sizeof(pt), &ptlen), 0);
    CHECK_EQ_MEM(pt, ptlen, p, plen);
    CHECK_HEX(i.h, 32, C_HASH);
    CHECK_HEX(r.h, 32, C_HASH);
    CHECK_EQ_INT(ts_noise_split(&i, &i_tx, &i_rx), 0);
    CHECK_EQ_INT(ts_noise_split(&r, &r_tx, &r_rx), 0);
    CHECK_EQ_INT(ts_noise_split(&r, &r_tx, &r_rx), H2R_ERR_ARG); /* only once */

    /* Counter 0: big- and little-endian nonces agree. */
    plen = unhex(C_P2, p, sizeof(p));
    CHECK_EQ_INT(ts_cipher_seal(&i_tx, p, plen, out), 0);
    CHECK_HEX(out, plen + 16, C_M2);
    plen = unhex(C_P3, p, sizeof(p));
    CHECK_EQ_INT(ts_cipher_seal(&r_tx, p, plen, out), 0);
    CHECK_HEX(out, plen + 16, C_M3);
    /* Counter 1: cacophony (little-endian, the spec) differs from TS2021. */
    plen = unhex(C_P4, p, sizeof(p));
    CHECK_EQ_INT(ts_cipher_seal(&i_tx, p, plen, out), 0);
    mlen = unhex(C_M4_LE, m, sizeof(m));
    CHECK_EQ_INT(mlen, plen + 16);
    CHECK(memcmp(out, m, mlen) != 0);
    /* ... and a little-endian record does not open under TS2021 rules. */
    r_rx.nonce = 1;
    CHECK_EQ_INT(ts_cipher_open(&r_rx, m, mlen, pt, &ptlen), H2R_ERR_PROTO);

    ts_noise_cleanup(&i);
    ts_noise_cleanup(&r);
    ts_cipher_cleanup(&i_tx);
    ts_cipher_cleanup(&i_rx);
    ts_cipher_cleanup(&r_tx);
    ts_cipher_cleanup(&r_rx);
}

static void test_tailscale_rs(void)
{
    static const char prologue[] = "TEST HANDSHAKE";
    uint8_t is[32], ie[32], rs[32], re[32], rs_pub[32], out[128];
    size_t olen = 0;
    struct ts_noise i, r;

    seq_key(is, 0);
    seq_key(ie, 32);
    seq_key(rs, 64);
    seq_key(re, 96);
    CHECK_EQ_INT(ts_x25519_public(rs, rs_pub), 0);
    CHECK_EQ_INT(ts_noise_init_custom(&i, TS_NOISE_INITIATOR, (const uint8_t *)prologue,
                                      strlen(prologue), is, rs_pub),
                 0);
    CHECK_EQ_INT(ts_noise_init_custom(&r, TS_NOISE_RESPONDER, (const uint8_t *)prologue,
                                      strlen(prologue), rs, NULL),
                 0);
    CHECK_EQ_INT(ts_noise_set_ephemeral(&i, ie), 0);
    CHECK_EQ_INT(ts_noise_write_msg1(&i, NULL, 0, out, sizeof(out), &olen), 0);
    CHECK_HEX(out, olen, R_MSG1);
    CHECK_EQ_INT(ts_noise_responder_read_msg1(&r, out, olen, NULL, 0, NULL), 0);
    CHECK_EQ_INT(ts_noise_set_ephemeral(&r, re), 0);
    CHECK_EQ_INT(ts_noise_responder_write_msg2(&r, NULL, 0, out, sizeof(out), &olen), 0);
    CHECK_HEX(out, olen, R_MSG2);
    CHECK_EQ_INT(ts_noise_read_msg2(&i, out, olen, NULL, 0, NULL), 0);
    CHECK_EQ_MEM(i.h, 32, r.h, 32);
    ts_noise_cleanup(&i);
    ts_noise_cleanup(&r);
}

/* ---- transport limits ---- */

static void test_cipher_limits(void)
{
    uint8_t key[32], ct[64], pt[64];
    struct ts_cipher tx, rx;
    size_t n = 0;

    seq_key(key, 9);
    CHECK_EQ_INT(ts_cipher_init(&tx, key), 0);
    CHECK_EQ_INT(ts_cipher_init(&rx, key), 0);
    /* Counter 2^64-2 is the last usable one; 2^64-1 is never used (errCipherExhausted). */
    tx.nonce = UINT64_MAX - 1;
    rx.nonce = UINT64_MAX - 1;
    CHECK_EQ_INT(ts_cipher_seal(&tx, (const uint8_t *)"abc", 3, ct), 0);
    CHECK_EQ_INT(ts_cipher_open(&rx, ct, 19, pt, &n), 0);
    CHECK_EQ_MEM(pt, n, "abc", 3);
    CHECK_EQ_INT(ts_cipher_seal(&tx, (const uint8_t *)"abc", 3, ct), H2R_ERR_LIMIT);
    CHECK_EQ_INT(ts_cipher_seal(&tx, (const uint8_t *)"abc", 3, ct), H2R_ERR_PROTO);
    CHECK_EQ_INT(ts_cipher_open(&rx, ct, 19, pt, &n), H2R_ERR_LIMIT);
    ts_cipher_cleanup(&tx);
    ts_cipher_cleanup(&rx);

    /* One bad record poisons the receive side for good. */
    CHECK_EQ_INT(ts_cipher_init(&tx, key), 0);
    CHECK_EQ_INT(ts_cipher_init(&rx, key), 0);
    CHECK_EQ_INT(ts_cipher_open(&rx, ct, 15, pt, &n), H2R_ERR_FORMAT);
    CHECK_EQ_INT(ts_cipher_seal(&tx, (const uint8_t *)"abc", 3, ct), 0);
    ct[0] ^= 1;
    CHECK_EQ_INT(ts_cipher_open(&rx, ct, 19, pt, &n), H2R_ERR_PROTO);
    ct[0] ^= 1;
    CHECK_EQ_INT(ts_cipher_open(&rx, ct, 19, pt, &n), H2R_ERR_PROTO);
    CHECK_EQ_INT(rx.nonce, 0);
    /* In place. */
    ts_cipher_cleanup(&rx);
    CHECK_EQ_INT(ts_cipher_init(&rx, key), 0);
    CHECK_EQ_INT(ts_cipher_open(&rx, ct, 19, ct, &n), 0);
    CHECK_EQ_MEM(ct, n, "abc", 3);
    CHECK_EQ_INT(ts_cipher_seal(&tx, ct, 65535, ct), H2R_ERR_ARG);
    ts_cipher_cleanup(&tx);
    ts_cipher_cleanup(&rx);
    ts_cipher_cleanup(&rx); /* twice is fine */
    CHECK_EQ_INT(ts_cipher_seal(&rx, ct, 1, ct), H2R_ERR_ARG);
}

/* ---- random keys, both roles through ts_session, large writes ---- */

static void test_session_loopback(void)
{
    static const struct ts_session_callbacks cb = {sink_handshake, sink_early, sink_data};
    struct ts_keypair machine, control;
    uint8_t frame[TS_INIT_FRAME_LEN], resp[TS_RESP_FRAME_LEN];
    uint8_t *big, *wire;
    size_t wlen = 0, cap;
    struct ts_session c, s;
    struct sink csk, ssk;

    memset(&csk, 0, sizeof(csk));
    memset(&ssk, 0, sizeof(ssk));
    CHECK_EQ_INT(ts_keypair_generate(&machine), 0);
    CHECK_EQ_INT(ts_keypair_generate(&control), 0);
    CHECK_EQ_INT(ts_session_client_init(&c, 145, machine.priv, control.pub, &cb, &csk), 0);
    CHECK_EQ_INT(ts_session_feed(&c, frame, 1), H2R_ERR_ARG); /* no request yet */
    CHECK_EQ_INT(ts_session_client_init_frame(&c, frame), 0);
    CHECK_EQ_INT(ts_session_client_init_frame(&c, frame), H2R_ERR_ARG);
    CHECK_EQ_INT(ts_session_server_accept(&s, control.priv, frame, sizeof(frame), resp, &cb, &ssk),
                 0);
    CHECK_EQ_MEM(s.noise.rs, 32, machine.pub, 32);
    CHECK_EQ_INT(s.noise.version, 145);
    CHECK_EQ_INT(ts_session_seal(&c, frame, 1, resp, 0, &wlen), H2R_ERR_ARG); /* not open */
    CHECK_EQ_INT(ts_session_feed(&c, resp, sizeof(resp)), 0);
    CHECK_EQ_INT(c.state, TS_SESSION_OPEN);
    CHECK_EQ_MEM(c.noise.h, 32, s.noise.h, 32);

    /* 10000 bytes -> 3 records (4077 + 4077 + 1846). */
    big = malloc(10000);
    cap = ts_record_sealed_len(10000);
    wire = malloc(cap);
    if (!big || !wire)
        abort();
    for (size_t i = 0; i < 10000; i++)
        big[i] = (uint8_t)(i * 7);
    CHECK_EQ_INT(cap, 10000 + 3 * 19);
    CHECK_EQ_INT(ts_session_seal(&c, big, 8000, wire, cap, &wlen), 0);
    CHECK_EQ_INT(wlen, 8000 + 2 * 19);
    CHECK_EQ_INT(wire[0], TS_FRAME_RECORD);
    CHECK_EQ_INT(wire[1] << 8 | wire[2], TS_MAX_CIPHERTEXT);
    CHECK_EQ_INT(ts_session_feed(&s, wire, wlen), 0);
    CHECK_EQ_MEM(ssk.data, ssk.len, big, 8000);
    /* Server -> client: no early payload at all, data must pass straight through. */
    CHECK_EQ_INT(ts_session_seal(&s, big, 10000, wire, cap, &wlen), 0);
    CHECK_EQ_INT(wlen, cap);
    for (size_t i = 0; i < wlen; i += 7)
        CHECK_EQ_INT(ts_session_feed(&c, wire + i, wlen - i < 7 ? wlen - i : 7), 0);
    CHECK_EQ_MEM(csk.data, csk.len, big, 10000);
    CHECK_EQ_INT(csk.early_calls, 0);
    CHECK_EQ_INT(c.records_in, 3);
    /* The 16 KiB sink refuses the second record of 8000 more bytes: that error is final. */
    CHECK_EQ_INT(ts_session_seal(&s, big, 8000, wire, cap, &wlen), 0);
    CHECK_EQ_INT(ts_session_feed(&c, wire, wlen), H2R_ERR_LIMIT);
    CHECK_EQ_INT(csk.len, 10000 + TS_MAX_PLAINTEXT);
    CHECK_EQ_INT(c.state, TS_SESSION_FAILED);
    CHECK_EQ_INT(ts_session_feed(&c, wire, 1), H2R_ERR_LIMIT);
    free(big);
    free(wire);
    ts_session_cleanup(&c);
    ts_session_cleanup(&s);
}

int main(void)
{
    test_vector_130();
    test_other_capvers();
    test_session_vector();
    test_open_keys();
    test_identify();
    test_wrong_server_key();
    test_zero_dh();
    test_cacophony();
    test_tailscale_rs();
    test_cipher_limits();
    test_session_loopback();
    return check_summary("test_ts_noise");
}
