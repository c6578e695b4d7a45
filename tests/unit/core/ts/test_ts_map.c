/*
 * Unit tests for ts_map: the /machine/map stream decoder fed with
 * zstd-compressed, little-endian length-prefixed messages built here (whole,
 * byte at a time), keep-alives, the netmap sequence and peer counts, raw JSON
 * mode, and every failure: oversize prefix, decompression bomb, corrupt and
 * truncated zstd, empty message, non-object JSON, callback errors. Also the
 * register/map request bodies, the RegisterResponse reader and the key codecs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "check.h"
#include "ts2021.h"

static const char FULL_MAP[] =
    "{\"Node\":{\"ID\":1,\"Addresses\":[\"100.64.0.1/32\"]},\"Peers\":[{\"ID\":2},{\"ID\":3},"
    "{\"ID\":4}],\"DERPMap\":{},\"Domain\":\"example\",\"ControlTime\":\"2024-01-01T00:00:00Z\"}";
static const char DELTA_MAP[] = "{\"PeersChanged\":[{\"ID\":5}],\"PeersRemoved\":[3,4],\"Seq\":7}";
static const char KEEPALIVE[] = "{\"KeepAlive\":true}";

/* Appends [LE32 len][zstd(json)] (or raw json) to buf. */
static size_t put_msg(uint8_t *buf, size_t cap, const char *json, size_t jlen, int compress)
{
    size_t n;

    if (compress) {
        n = ZSTD_compress(buf + 4, cap - 4, json, jlen, 1);
        if (ZSTD_isError(n))
            abort();
    } else {
        memcpy(buf + 4, json, jlen);
        n = jlen;
    }
    buf[0] = (uint8_t)n;
    buf[1] = (uint8_t)(n >> 8);
    buf[2] = (uint8_t)(n >> 16);
    buf[3] = (uint8_t)(n >> 24);
    return 4 + n;
}

struct seen {
    int n;
    struct ts_map_msg m[16];
    char first_domain[32];
    int fail_at;
};

static int on_map(void *ud, const struct ts_map_msg *m, json_t *root)
{
    struct seen *s = ud;
    json_t *d = json_object_get(root, "Domain");

    if (s->n < 16)
        s->m[s->n] = *m;
    s->n++;
    if (json_is_string(d))
        snprintf(s->first_domain, sizeof(s->first_domain), "%s", json_string_value(d));
    /* The JSON text is handed over too. */
    if (m->json_len == 0 || (m->json[0] != '{'))
        return H2R_ERR_FORMAT;
    return s->fail_at == s->n ? H2R_ERR_IO : 0;
}

static int decode(const uint8_t *buf, size_t len, size_t step, const struct ts_map_opts *o,
                  struct seen *s, struct ts_map_decoder **keep)
{
    struct ts_map_decoder *d = NULL;
    size_t off = 0;
    int rc = 0;

    CHECK_EQ_INT(ts_map_decoder_new(&d, o, on_map, s), 0);
    while (off < len && rc == 0) {
        size_t n = step && len - off > step ? step : len - off;
        rc = ts_map_feed(d, buf + off, n);
        off += n;
    }
    if (keep)
        *keep = d;
    else
        ts_map_decoder_free(d);
    return rc;
}

static void test_stream(void)
{
    static const struct ts_map_opts zopts = {.compressed = 1};
    static const size_t steps[] = {0, 1, 3, 7, 64};
    uint8_t buf[4096];
    size_t len = 0;

    len += put_msg(buf + len, sizeof(buf) - len, FULL_MAP, strlen(FULL_MAP), 1);
    len += put_msg(buf + len, sizeof(buf) - len, KEEPALIVE, strlen(KEEPALIVE), 1);
    len += put_msg(buf + len, sizeof(buf) - len, DELTA_MAP, strlen(DELTA_MAP), 1);
    len += put_msg(buf + len, sizeof(buf) - len, KEEPALIVE, strlen(KEEPALIVE), 1);

    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct ts_map_decoder *d = NULL;
        const struct ts_map_stats *st;
        struct seen s;

        memset(&s, 0, sizeof(s));
        CHECK_EQ_INT(decode(buf, len, steps[i], &zopts, &s, &d), 0);
        CHECK_EQ_INT(s.n, 4);
        CHECK_EQ_STR(s.first_domain, "example");
        /* 1: the full netmap */
        CHECK_EQ_INT(s.m[0].index, 0);
        CHECK_EQ_INT(s.m[0].keepalive, 0);
        CHECK_EQ_INT(s.m[0].initial, 1);
        CHECK_EQ_INT(s.m[0].netmap_seq, 1);
        CHECK_EQ_INT(s.m[0].has_node, 1);
        CHECK_EQ_INT(s.m[0].peers, 3);
        CHECK_EQ_INT(s.m[0].peers_changed, -1);
        CHECK_EQ_INT(s.m[0].seq, -1);
        CHECK_EQ_INT(s.m[0].json_len, strlen(FULL_MAP));
        /* 2: keep-alive */
        CHECK_EQ_INT(s.m[1].index, 1);
        CHECK_EQ_INT(s.m[1].keepalive, 1);
        CHECK_EQ_INT(s.m[1].netmap_seq, 0);
        CHECK_EQ_INT(s.m[1].initial, 0);
        CHECK_EQ_INT(s.m[1].peers, -1);
        /* 3: a delta */
        CHECK_EQ_INT(s.m[2].netmap_seq, 2);
        CHECK_EQ_INT(s.m[2].initial, 0);
        CHECK_EQ_INT(s.m[2].has_node, 0);
        CHECK_EQ_INT(s.m[2].peers, -1);
        CHECK_EQ_INT(s.m[2].peers_changed, 1);
        CHECK_EQ_INT(s.m[2].peers_removed, 2);
        CHECK_EQ_INT(s.m[2].seq, 7);
        CHECK_EQ_INT(s.m[3].keepalive, 1);
        st = ts_map_decoder_stats(d);
        CHECK_EQ_INT(st->messages, 4);
        CHECK_EQ_INT(st->keepalives, 2);
        CHECK_EQ_INT(st->netmaps, 2);
        CHECK_EQ_INT(st->wire_bytes, len);
        CHECK_EQ_INT(st->json_bytes, strlen(FULL_MAP) + strlen(DELTA_MAP) + 2 * strlen(KEEPALIVE));
        CHECK_EQ_INT(st->last_peers, 3);
        CHECK_EQ_INT(ts_map_idle(d), 1);
        CHECK_EQ_INT(ts_map_feed(d, buf, 2), 0);
        CHECK_EQ_INT(ts_map_idle(d), 0);
        ts_map_decoder_free(d);
    }
}

static void test_raw_mode(void)
{
    uint8_t buf[1024];
    size_t len = 0;
    struct seen s;

    memset(&s, 0, sizeof(s));
    len += put_msg(buf, sizeof(buf), KEEPALIVE, strlen(KEEPALIVE), 0);
    len += put_msg(buf + len, sizeof(buf) - len, FULL_MAP, strlen(FULL_MAP), 0);
    CHECK_EQ_INT(decode(buf, len, 5, NULL, &s, NULL), 0);
    CHECK_EQ_INT(s.n, 2);
    CHECK_EQ_INT(s.m[0].keepalive, 1);
    CHECK_EQ_INT(s.m[1].initial, 1);
    CHECK_EQ_INT(s.m[1].peers, 3);
    /* zstd bytes in raw mode are not JSON. */
    memset(&s, 0, sizeof(s));
    len = put_msg(buf, sizeof(buf), KEEPALIVE, strlen(KEEPALIVE), 1);
    CHECK_EQ_INT(decode(buf, len, 0, NULL, &s, NULL), H2R_ERR_FORMAT);
}

static void test_failures(void)
{
    static const struct ts_map_opts zopts = {.compressed = 1};
    struct ts_map_decoder *d = NULL;
    uint8_t buf[4096];
    size_t len;
    struct seen s;

    /* Oversize prefix: refused on the header, nothing buffered. */
    {
        static const struct ts_map_opts small = {.compressed = 1, .max_frame = 100};
        memset(&s, 0, sizeof(s));
        memcpy(buf, "\x65\x00\x00\x00", 4);
        CHECK_EQ_INT(decode(buf, 4, 0, &small, &s, &d), H2R_ERR_LIMIT);
        CHECK(strstr(ts_map_decoder_error(d), "101 bytes") != NULL);
        CHECK_EQ_INT(ts_map_feed(d, buf, 4), H2R_ERR_LIMIT); /* sticky */
        ts_map_decoder_free(d);
        memcpy(buf, "\xff\xff\xff\xff", 4);
        CHECK_EQ_INT(decode(buf, 4, 0, &zopts, &s, NULL), H2R_ERR_LIMIT);
    }
    /* Empty message. */
    memset(buf, 0, 4);
    CHECK_EQ_INT(decode(buf, 4, 0, &zopts, &s, NULL), H2R_ERR_FORMAT);
    /* Decompression bomb: 1 MiB of spaces around {} inflates past a 64 KiB cap. */
    {
        static const struct ts_map_opts capped = {.compressed = 1, .max_json = 64u << 10};
        size_t big = 1u << 20;
        char *json = malloc(big);
        uint8_t *z = malloc(ZSTD_compressBound(big) + 4);

        if (!json || !z)
            abort();
        memset(json, ' ', big);
        json[0] = '{';
        json[big - 1] = '}';
        len = put_msg(z, ZSTD_compressBound(big) + 4, json, big, 1);
        CHECK(len < 1000);
        memset(&s, 0, sizeof(s));
        CHECK_EQ_INT(decode(z, len, 0, &capped, &s, &d), H2R_ERR_LIMIT);
        CHECK(strstr(ts_map_decoder_error(d), "inflates past") != NULL);
        ts_map_decoder_free(d);
        /* Within the default cap the same message decodes (and is not an object
         * problem: it is one). */
        memset(&s, 0, sizeof(s));
        CHECK_EQ_INT(decode(z, len, 0, &zopts, &s, NULL), 0);
        CHECK_EQ_INT(s.n, 1);
        CHECK_EQ_INT(s.m[0].json_len, big);
        free(json);
        free(z);
    }
    /* Corrupt zstd: garbage, a flipped byte, a truncated frame. */
    memcpy(buf, "\x05\x00\x00\x00hello", 9);
    CHECK_EQ_INT(decode(buf, 9, 0, &zopts, &s, &d), H2R_ERR_COMPRESS);
    CHECK(strstr(ts_map_decoder_error(d), "zstd") != NULL);
    ts_map_decoder_free(d);
    len = put_msg(buf, sizeof(buf), FULL_MAP, strlen(FULL_MAP), 1);
    buf[len / 2] ^= 0x55;
    memset(&s, 0, sizeof(s));
    {
        int rc = decode(buf, len, 0, &zopts, &s, NULL);
        /* Either zstd notices (checksum/format) or the JSON no longer parses. */
        CHECK(rc == H2R_ERR_COMPRESS || rc == H2R_ERR_FORMAT);
    }
    len = put_msg(buf, sizeof(buf), FULL_MAP, strlen(FULL_MAP), 1);
    len -= 3;
    buf[0] = (uint8_t)(buf[0] - 3);
    CHECK_EQ_INT(decode(buf, len, 0, &zopts, &s, &d), H2R_ERR_COMPRESS);
    CHECK(strstr(ts_map_decoder_error(d), "truncated") != NULL);
    ts_map_decoder_free(d);
    /* Valid zstd, not an object. */
    len = put_msg(buf, sizeof(buf), "[1,2]", 5, 1);
    CHECK_EQ_INT(decode(buf, len, 0, &zopts, &s, NULL), H2R_ERR_FORMAT);
    len = put_msg(buf, sizeof(buf), "{\"a\":", 5, 1);
    CHECK_EQ_INT(decode(buf, len, 0, &zopts, &s, NULL), H2R_ERR_FORMAT);
    /* Two concatenated zstd frames in one message are one body (zstd semantics). */
    {
        size_t a = ZSTD_compress(buf + 4, 1000, "{\"KeepAlive\"", 12, 1);
        size_t b = ZSTD_compress(buf + 4 + a, 1000, ":true}", 6, 1);
        size_t n = a + b;

        buf[0] = (uint8_t)n;
        buf[1] = (uint8_t)(n >> 8);
        buf[2] = 0;
        buf[3] = 0;
        memset(&s, 0, sizeof(s));
        CHECK_EQ_INT(decode(buf, 4 + n, 0, &zopts, &s, NULL), 0);
        CHECK_EQ_INT(s.m[0].keepalive, 1);
    }
    /* Callback errors stop the stream. */
    len = put_msg(buf, sizeof(buf), KEEPALIVE, strlen(KEEPALIVE), 1);
    len += put_msg(buf + len, sizeof(buf) - len, KEEPALIVE, strlen(KEEPALIVE), 1);
    len += put_msg(buf + len, sizeof(buf) - len, KEEPALIVE, strlen(KEEPALIVE), 1);
    memset(&s, 0, sizeof(s));
    s.fail_at = 2;
    CHECK_EQ_INT(decode(buf, len, 0, &zopts, &s, NULL), H2R_ERR_IO);
    CHECK_EQ_INT(s.n, 2);
    CHECK_EQ_INT(ts_map_decoder_new(&d, NULL, NULL, NULL), H2R_ERR_ARG);
    ts_map_decoder_free(NULL);
}

/* ---- request bodies ---- */

static void test_requests(void)
{
    uint8_t nk[32], dk[32];
    const char *eps[] = {"192.0.2.1:41641", "[2001:db8::1]:41641"};
    struct ts_hostinfo hi = {"c-client", "linux", NULL, "1.80.0", NULL, NULL, "amd64", NULL};
    struct ts_register_req rr;
    struct ts_map_req mr;
    char *out = NULL;
    size_t len = 0;

    memset(nk, 0xab, sizeof(nk));
    memset(dk, 0x01, sizeof(dk));
    memset(&rr, 0, sizeof(rr));
    rr.version = 130;
    rr.node_key = nk;
    rr.auth_key = "hskey-auth-abc-def";
    rr.hostinfo = &hi;
    CHECK_EQ_INT(ts_register_request_json(&rr, &out, &len), 0);
    CHECK_EQ_STR(out,
                 "{\"Version\":130,"
                 "\"NodeKey\":\"nodekey:abababababababababababababababababababababababababababab"
                 "abababab\","
                 "\"OldNodeKey\":\"nodekey:0000000000000000000000000000000000000000000000000000"
                 "000000000000\","
                 "\"Auth\":{\"AuthKey\":\"hskey-auth-abc-def\"},"
                 "\"Hostinfo\":{\"IPNVersion\":\"1.80.0\",\"OS\":\"linux\","
                 "\"Hostname\":\"c-client\",\"GoArch\":\"amd64\"}}");
    CHECK_EQ_INT(len, strlen(out));
    free(out);
    rr.auth_key = NULL;
    rr.hostinfo = NULL;
    rr.old_node_key = dk;
    rr.expiry = "2001-01-01T00:00:00Z";
    rr.followup = "https://hs/register/x";
    rr.ephemeral = 1;
    CHECK_EQ_INT(ts_register_request_json(&rr, &out, &len), 0);
    CHECK(strstr(out, "\"OldNodeKey\":\"nodekey:0101") != NULL);
    CHECK(strstr(out, "\"Auth\"") == NULL);
    CHECK(strstr(out, "\"Expiry\":\"2001-01-01T00:00:00Z\",\"Followup\":\"https://hs/register/x\""
                      ",\"Ephemeral\":true}") != NULL);
    free(out);
    rr.node_key = NULL;
    CHECK_EQ_INT(ts_register_request_json(&rr, &out, &len), H2R_ERR_ARG);

    memset(&mr, 0, sizeof(mr));
    mr.version = 130;
    mr.node_key = nk;
    mr.disco_key = dk;
    mr.compress_zstd = 1;
    mr.keepalive = 1;
    mr.stream = 1;
    mr.hostinfo = &hi;
    mr.endpoints = eps;
    mr.n_endpoints = 2;
    CHECK_EQ_INT(ts_map_request_json(&mr, &out, &len), 0);
    CHECK_EQ_STR(out,
                 "{\"Version\":130,\"Compress\":\"zstd\",\"KeepAlive\":true,"
                 "\"NodeKey\":\"nodekey:abababababababababababababababababababababababababababab"
                 "abababab\","
                 "\"DiscoKey\":\"discokey:010101010101010101010101010101010101010101010101010101"
                 "0101010101\","
                 "\"Stream\":true,"
                 "\"Hostinfo\":{\"IPNVersion\":\"1.80.0\",\"OS\":\"linux\","
                 "\"Hostname\":\"c-client\",\"GoArch\":\"amd64\"},"
                 "\"Endpoints\":[\"192.0.2.1:41641\",\"[2001:db8::1]:41641\"],"
                 "\"OmitPeers\":false}");
    free(out);
    memset(&mr, 0, sizeof(mr));
    mr.version = 113;
    mr.node_key = nk;
    mr.omit_peers = 1;
    CHECK_EQ_INT(ts_map_request_json(&mr, &out, &len), 0);
    CHECK(strstr(out, "\"Compress\"") == NULL);
    CHECK(strstr(out, "\"DiscoKey\":\"discokey:0000") != NULL);
    CHECK(strstr(out, "\"Stream\":false") != NULL);
    CHECK(strstr(out, "\"OmitPeers\":true}") != NULL);
    free(out);
    mr.n_endpoints = 1;
    CHECK_EQ_INT(ts_map_request_json(&mr, &out, &len), H2R_ERR_ARG);
}

static void test_register_response(void)
{
    struct ts_register_resp r;
    const char *ok = "{\"User\":{\"ID\":1,\"DisplayName\":\"alice\"},\"Login\":{\"ID\":1,"
                     "\"LoginName\":\"alice\"},\"NodeKeyExpired\":false,"
                     "\"MachineAuthorized\":true,\"AuthURL\":\"\"}";
    const char *bad = "{\"Error\":\"invalid pre auth key\",\"MachineAuthorized\":false}";
    const char *inter = "{\"AuthURL\":\"https://hs/register/abc\",\"NodeKeyExpired\":true}";

    CHECK_EQ_INT(ts_register_response_parse((const uint8_t *)ok, strlen(ok), &r), 0);
    CHECK_EQ_INT(r.machine_authorized, 1);
    CHECK_EQ_INT(r.node_key_expired, 0);
    CHECK_EQ_STR(r.error, "");
    CHECK_EQ_STR(r.auth_url, "");
    CHECK_EQ_STR(r.login_name, "alice");
    CHECK_EQ_INT(ts_register_response_parse((const uint8_t *)bad, strlen(bad), &r), 0);
    CHECK_EQ_INT(r.machine_authorized, 0);
    CHECK_EQ_STR(r.error, "invalid pre auth key");
    CHECK_EQ_INT(ts_register_response_parse((const uint8_t *)inter, strlen(inter), &r), 0);
    CHECK_EQ_STR(r.auth_url, "https://hs/register/abc");
    CHECK_EQ_INT(r.node_key_expired, 1);
    CHECK_EQ_INT(ts_register_response_parse((const uint8_t *)"x", 1, &r), H2R_ERR_FORMAT);
    CHECK_EQ_INT(ts_register_response_parse((const uint8_t *)"\"s\"", 3, &r), H2R_ERR_FORMAT);
}

/* ---- keys ---- */

static void test_keys(void)
{
    struct ts_keypair a, b;
    uint8_t k[32], back[32];
    char text[TS_KEY_TEXT_MAX];
    const char *hs_file =
        "privkey:404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f\n";

    CHECK_EQ_INT(ts_keypair_generate(&a), 0);
    CHECK_EQ_INT(ts_keypair_generate(&b), 0);
    CHECK(memcmp(a.priv, b.priv, 32) != 0);
    CHECK_EQ_INT(a.priv[0] & 7, 0);
    CHECK_EQ_INT(a.priv[31] & 0xc0, 0x40);
    CHECK_EQ_INT(ts_key_format(TS_PREFIX_MACHINE, a.pub, text, sizeof(text)), 0);
    CHECK_EQ_INT(strlen(text), 5 + 64);
    CHECK_EQ_INT(ts_key_parse(TS_PREFIX_MACHINE, text, strlen(text), back), 0);
    CHECK_EQ_MEM(back, 32, a.pub, 32);
    CHECK_EQ_INT(ts_key_format(TS_PREFIX_DISCO, a.pub, text, 9 + 64), H2R_ERR_ARG);
    CHECK_EQ_INT(ts_key_format(TS_PREFIX_DISCO, a.pub, text, 9 + 65), 0);
    CHECK(strncmp(text, "discokey:", 9) == 0);

    /* headscale's noise_private.key, newline and all -> the vector's control key. */
    CHECK_EQ_INT(ts_key_parse(TS_PREFIX_PRIVATE, hs_file, strlen(hs_file), k), 0);
    CHECK_EQ_INT(ts_keypair_from_private(&a, k), 0);
    CHECK_EQ_INT(ts_key_format(TS_PREFIX_MACHINE, a.pub, text, sizeof(text)), 0);
    CHECK_EQ_STR(text, "mkey:79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a");
    CHECK_EQ_INT(ts_key_parse(TS_PREFIX_NODE, hs_file, strlen(hs_file), k), H2R_ERR_FORMAT);
    CHECK_EQ_INT(ts_key_parse(TS_PREFIX_PRIVATE, hs_file, 20, k), H2R_ERR_FORMAT);
    CHECK_EQ_INT(ts_key_parse(TS_PREFIX_PRIVATE, "", 0, k), H2R_ERR_FORMAT);
    CHECK_EQ_INT(ts_key_parse(TS_PREFIX_PRIVATE, "  \n", 3, k), H2R_ERR_FORMAT);
    CHECK_EQ_INT(ts_key_parse("MKEY:", text, strlen(text), k), H2R_ERR_FORMAT);
}

/* Decoders sharing one scratch: interleaved messages decode independently, a bomb hits
 * the small decoder's cap even though the shared buffer already grew larger for
 * another decoder, and a big split message's buffer is not kept. */
static void test_shared_scratch(void)
{
    struct ts_map_scratch *sc = NULL;
    struct ts_map_decoder *a = NULL, *b = NULL;
    struct seen sa, sb;
    size_t big = 512u << 10, len;
    char *json = malloc(big);
    uint8_t *z = malloc(ZSTD_compressBound(big) + 4);
    uint8_t buf[4096];

    if (!json || !z)
        abort();
    CHECK_EQ_INT(ts_map_scratch_new(&sc), 0);
    struct ts_map_opts big_opts = {.compressed = 1, .scratch = sc};
    struct ts_map_opts small_opts = {.compressed = 1, .max_json = 64u << 10, .scratch = sc};
    memset(&sa, 0, sizeof(sa));
    memset(&sb, 0, sizeof(sb));
    CHECK_EQ_INT(ts_map_decoder_new(&a, &big_opts, on_map, &sa), 0);
    CHECK_EQ_INT(ts_map_decoder_new(&b, &small_opts, on_map, &sb), 0);

    memset(json, ' ', big);
    json[0] = '{';
    json[big - 1] = '}';
    len = put_msg(z, ZSTD_compressBound(big) + 4, json, big, 1);
    /* a's big message grows the shared buffer past b's cap */
    CHECK_EQ_INT(ts_map_feed(a, z, len), 0);
    CHECK_EQ_INT(sa.n, 1);
    CHECK_EQ_INT(sa.m[0].json_len, big);
    /* b: half of a full map, the bomb must still fail on b alone ... */
    size_t flen = put_msg(buf, sizeof(buf), FULL_MAP, strlen(FULL_MAP), 1);
    CHECK_EQ_INT(ts_map_feed(b, buf, flen / 2), 0);
    /* ... a keeps decoding in between (split message through the frame buffer) */
    size_t klen = put_msg(buf + flen, sizeof(buf) - flen, KEEPALIVE, strlen(KEEPALIVE), 1);
    CHECK_EQ_INT(ts_map_feed(a, buf + flen, 2), 0);
    CHECK_EQ_INT(ts_map_feed(a, buf + flen + 2, klen - 2), 0);
    CHECK_EQ_INT(sa.n, 2);
    CHECK_EQ_INT(sa.m[1].keepalive, 1);
    CHECK_EQ_INT(ts_map_feed(b, buf + flen / 2, flen - flen / 2), 0);
    CHECK_EQ_INT(sb.n, 1);
    CHECK_EQ_INT(sb.m[0].peers, 3);
    CHECK_EQ_STR(sb.first_domain, "example");
    CHECK_EQ_INT(ts_map_feed(b, z, len), H2R_ERR_LIMIT);
    CHECK(strstr(ts_map_decoder_error(b), "inflates past") != NULL);
    /* a is unaffected by b's failure in the shared context; a split big message works */
    CHECK_EQ_INT(ts_map_feed(a, z, len / 3), 0);
    CHECK_EQ_INT(ts_map_feed(a, z + len / 3, len - len / 3), 0);
    CHECK_EQ_INT(sa.n, 3);
    CHECK_EQ_INT(sa.m[2].json_len, big);
    CHECK(ts_map_idle(a));
    ts_map_scratch_trim(sc);
    CHECK_EQ_INT(ts_map_feed(a, z, len), 0);
    CHECK_EQ_INT(sa.n, 4);
    ts_map_decoder_free(a);
    ts_map_decoder_free(b);
    ts_map_scratch_free(sc);
    ts_map_scratch_free(NULL);
    free(json);
    free(z);
}

int main(void)
{
    test_stream();
    test_shared_scratch();
    test_raw_mode();
    test_failures();
    test_requests();
    test_register_response();
    test_keys();
    return check_summary("test_ts_map");
}
