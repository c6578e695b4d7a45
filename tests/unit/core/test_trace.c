/*
 * Unit tests for the trace codec (core/trace.c, core/recio.c): round trips of
 * every record kind, forward compatibility (unknown kinds and fields are
 * skipped), many frames, and damaged files (truncated, corrupted, empty,
 * wrong magic, newer version) giving errors rather than crashes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "h2replay/fields.h"
#include "recio.h"
#include "h2replay/trace.h"

#define HDR(n, v) {(const uint8_t *)(n), (const uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1}

static char tmpdir[64];

static void tmp_path(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", tmpdir, name);
}

static const struct h2r_hdr req_hdrs[] = {
    HDR(":method", "POST"), HDR(":scheme", "http"), HDR(":authority", "example:8080"),
    HDR(":path", "/machine/register"), HDR("content-type", "application/json")};
static const struct h2r_hdr resp_hdrs[] = {HDR(":status", "200"),
                                           HDR("content-type", "application/grpc")};
static const struct h2r_hdr trailers[] = {HDR("grpc-status", "0")};

static struct h2r_exchange sample_exchange(uint64_t id)
{
    struct h2r_exchange x;
    memset(&x, 0, sizeof(x));
    x.id = id;
    x.conn_id = 7;
    x.stream_id = (uint32_t)(2 * id + 1);
    x.flags = H2R_EXCH_F_GRPC;
    x.req_hdrs = req_hdrs;
    x.n_req_hdrs = 5;
    x.req_body = (const uint8_t *)"{\"a\":1}";
    x.req_body_stored = 7;
    x.req_body_len = 7;
    x.resp_hdrs = resp_hdrs;
    x.n_resp_hdrs = 2;
    x.resp_body = (const uint8_t *)"\0\0\0\0\0";
    x.resp_body_stored = 5;
    x.resp_body_len = 500000;
    x.trailers = trailers;
    x.n_trailers = 1;
    x.status = 200;
    x.grpc_status = 0;
    x.rst_code = -1;
    x.goaway_code = -1;
    x.t_req_first_ns = 1700000000000000000LL + (int64_t)id;
    x.t_req_end_ns = x.t_req_first_ns + 10;
    x.t_resp_hdrs_ns = x.t_req_first_ns + 20;
    x.t_resp_end_ns = x.t_req_first_ns + 30;
    x.error = id % 2 ? "rst_stream:CANCEL" : NULL;
    return x;
}

static int write_sample(const char *path, unsigned n_exchanges, uint64_t frame_bytes)
{
    struct h2r_trace_header h = {0};
    h.tool_version = "test";
    h.source = "file:unit.pcap";
    h.start_ns = 1700000000000000000LL;
    h.linktype = 1;
    h.snaplen = 65535;
    h.options = "redact=on";
    struct h2r_trace_writer_opts o = {0, frame_bytes};
    struct h2r_trace_writer *w;
    char err[256];
    int rc = h2r_trace_writer_open(&w, path, &h, &o, err, sizeof(err));
    if (rc)
        return rc;
    struct h2r_conn c = {7, "127.0.0.1:40000", "127.0.0.1:8080", H2R_TRANSPORT_H2C_PRIOR,
                         H2R_CONN_F_PARTIAL, 1700000000000000000LL, NULL};
    rc |= h2r_trace_write_conn(w, &c);
    for (unsigned i = 0; i < n_exchanges; i++) {
        struct h2r_exchange x = sample_exchange(i);
        rc |= h2r_trace_write_exchange(w, &x);
    }
    struct h2r_conn_end e = {7, 1700000001000000000LL, H2R_CONN_END_FIN, 0, -1, 100, 200, 0,
                             n_exchanges, NULL};
    rc |= h2r_trace_write_conn_end(w, &e);
    struct h2r_counter ctr[] = {{"tcp.retransmit", 3}, {"undecodable.not_http2", 1}};
    struct h2r_capture_summary s = {10, 1000, 1, n_exchanges, 0, 1, 1700000001000000000LL, ctr, 2};
    rc |= h2r_trace_write_summary(w, &s);
    rc |= h2r_trace_writer_close(w);
    return rc;
}

static void check_hdrs(const struct h2r_hdr *got, size_t n, const struct h2r_hdr *want, size_t wn)
{
    CHECK_EQ_INT(n, wn);
    for (size_t i = 0; i < n && i < wn; i++) {
        CHECK_EQ_MEM(got[i].name, got[i].name_len, want[i].name, want[i].name_len);
        CHECK_EQ_MEM(got[i].value, got[i].value_len, want[i].value, want[i].value_len);
    }
}

static void test_roundtrip(void)
{
    char path[128];
    tmp_path(path, sizeof(path), "rt.h2rt");
    CHECK_EQ_INT(write_sample(path, 3, 0), 0);

    struct h2r_trace_reader *r;
    char err[256];
    CHECK_EQ_INT(h2r_trace_reader_open(&r, path, err, sizeof(err)), 0);
    const struct h2r_trace_header *h = h2r_trace_reader_header(r);
    CHECK_EQ_INT(h->format_version, H2R_TRACE_FORMAT_VERSION);
    CHECK_EQ_STR(h->source, "file:unit.pcap");
    CHECK_EQ_STR(h->options, "redact=on");
    CHECK_EQ_INT(h->linktype, 1);
    CHECK(h->start_ns == 1700000000000000000LL);

    struct h2r_trace_record rec;
    CHECK_EQ_INT(h2r_trace_reader_next(r, &rec), 1);
    CHECK_EQ_INT(rec.kind, H2R_REC_CONN);
    CHECK_EQ_STR(rec.u.conn.client, "127.0.0.1:40000");
    CHECK_EQ_INT(rec.u.conn.transport, H2R_TRANSPORT_H2C_PRIOR);
    CHECK_EQ_INT(rec.u.conn.flags, H2R_CONN_F_PARTIAL);
    CHECK(rec.u.conn.alpn == NULL);
    for (unsigned i = 0; i < 3; i++) {
        CHECK_EQ_INT(h2r_trace_reader_next(r, &rec), 1);
        CHECK_EQ_INT(rec.kind, H2R_REC_EXCHANGE);
        struct h2r_exchange want = sample_exchange(i);
        const struct h2r_exchange *x = &rec.u.exch;
        CHECK_EQ_INT(x->id, want.id);
        CHECK_EQ_INT(x->stream_id, want.stream_id);
        check_hdrs(x->req_hdrs, x->n_req_hdrs, req_hdrs, 5);
        check_hdrs(x->resp_hdrs, x->n_resp_hdrs, resp_hdrs, 2);
        check_hdrs(x->trailers, x->n_trailers, trailers, 1);
        CHECK_EQ_MEM(x->req_body, x->req_body_stored, want.req_body, want.req_body_stored);
        CHECK_EQ_MEM(x->resp_body, x->resp_body_stored, want.resp_body, want.resp_body_stored);
        CHECK_EQ_INT(x->resp_body_len, 500000);
        CHECK_EQ_INT(x->status, 200);
        CHECK_EQ_INT(x->grpc_status, 0);
        CHECK_EQ_INT(x->rst_code, -1);
        CHECK(x->t_resp_end_ns == want.t_resp_end_ns);
        if (want.error)
            CHECK_EQ_STR(x->error, want.error);
        else
            CHECK(x->error == NULL);
        const struct h2r_hdr *p = h2r_hdr_find(x->req_hdrs, x->n_req_hdrs, ":path");
        CHECK(p && p->value_len == 17);
    }
    CHECK_EQ_INT(h2r_trace_reader_next(r, &rec), 1);
    CHECK_EQ_INT(rec.kind, H2R_REC_CONN_END);
    CHECK_EQ_INT(rec.u.end.how, H2R_CONN_END_FIN);
    CHECK_EQ_INT(rec.u.end.goaway_code, -1);
    CHECK_EQ_INT(h2r_trace_reader_next(r, &rec), 1);
    CHECK_EQ_INT(rec.kind, H2R_REC_SUMMARY);
    CHECK_EQ_INT(rec.u.summary.n_counters, 2);
    CHECK_EQ_STR(rec.u.summary.counters[1].name, "undecodable.not_http2");
    CHECK_EQ_INT(rec.u.summary.counters[0].value, 3);
    CHECK_EQ_INT(h2r_trace_reader_next(r, &rec), 0);
    CHECK_EQ_INT(h2r_trace_reader_skipped(r), 0);
    h2r_trace_reader_free(r);
}

static int read_all(const char *path, unsigned *exchanges, char *err, size_t errlen)
{
    struct h2r_trace_reader *r;
    int rc = h2r_trace_reader_open(&r, path, err, errlen);
    if (rc)
        return rc;
    struct h2r_trace_record rec;
    *exchanges = 0;
    while ((rc = h2r_trace_reader_next(r, &rec)) == 1)
        *exchanges += rec.kind == H2R_REC_EXCHANGE;
    if (rc < 0)
        snprintf(err, errlen, "%s", h2r_trace_reader_errmsg(r));
    h2r_trace_reader_free(r);
    return rc;
}

static void test_many_frames(void)
{
    char path[128];
    tmp_path(path, sizeof(path), "frames.h2rt");
    CHECK_EQ_INT(write_sample(path, 5000, 4096), 0);
    unsigned n;
    char err[256];
    CHECK_EQ_INT(read_all(path, &n, err, sizeof(err)), 0);
    CHECK_EQ_INT(n, 5000);
}

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void copy_prefix(const char *src, const char *dst, long n, long flip_at)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    for (long i = 0; i < n; i++) {
        int ch = fgetc(in);
        if (ch == EOF)
            break;
        if (i == flip_at)
            ch ^= 0x5a;
        fputc(ch, out);
    }
    fclose(in);
    fclose(out);
}

static void test_damaged(void)
{
    char path[128], bad[128];
    tmp_path(path, sizeof(path), "dmg.h2rt");
    tmp_path(bad, sizeof(bad), "bad.h2rt");
    CHECK_EQ_INT(write_sample(path, 2000, 8192), 0);
    long size = file_size(path);
    CHECK(size > 1000);
    unsigned n;
    char err[256];

    /* truncated in the middle: records of the complete frames, then an error naming an offset */
    copy_prefix(path, bad, size / 2, -1);
    CHECK_EQ_INT(read_all(bad, &n, err, sizeof(err)), H2R_ERR_TRUNCATED);
    CHECK(n > 0 && n < 2000);
    CHECK(strstr(err, "offset") != NULL);

    /* a flipped byte in the middle: zstd's checksum or decoder catches it */
    copy_prefix(path, bad, size, size / 2);
    int rc = read_all(bad, &n, err, sizeof(err));
    CHECK(rc < 0);
    CHECK(n < 2000);

    /* empty file */
    copy_prefix(path, bad, 0, -1);
    CHECK_EQ_INT(read_all(bad, &n, err, sizeof(err)), H2R_ERR_FORMAT);
    CHECK(strstr(err, "empty") != NULL);

    /* not zstd at all */
    FILE *f = fopen(bad, "wb");
    fputs("this is not a trace\n", f);
    fclose(f);
    CHECK_EQ_INT(read_all(bad, &n, err, sizeof(err)), H2R_ERR_FORMAT);

    /* a valid zstd stream with another magic (e.g. a run file passed as a trace) */
    struct recio_writer *w;
    CHECK_EQ_INT(recio_writer_open(&w, bad, "OTHERMAG", 1, 0, 0, err, sizeof(err)), 0);
    recio_writer_close(w);
    CHECK_EQ_INT(read_all(bad, &n, err, sizeof(err)), H2R_ERR_FORMAT);
    CHECK(strstr(err, "magic") != NULL);

    /* a newer format version */
    CHECK_EQ_INT(recio_writer_open(&w, bad, "H2RTRACE", 99, 0, 0, err, sizeof(err)), 0);
    recio_writer_close(w);
    CHECK_EQ_INT(read_all(bad, &n, err, sizeof(err)), H2R_ERR_VERSION);

    /* mem reader over garbage and over nothing */
    struct h2r_trace_reader *r;
    CHECK(h2r_trace_reader_open_mem(&r, "", 0, err, sizeof(err)) < 0);
    CHECK(h2r_trace_reader_open_mem(&r, "\x28\xb5\x2f\xfd", 4, err, sizeof(err)) < 0);
}

static void test_forward_compat(void)
{
    /* a file from a "newer writer": an unknown record kind and an unknown field */
    char path[128], err[256];
    tmp_path(path, sizeof(path), "fwd.h2rt");
    struct recio_writer *w;
    CHECK_EQ_INT(recio_writer_open(&w, path, "H2RTRACE", 1, 0, 0, err, sizeof(err)), 0);
    struct h2r_buf b;
    h2r_buf_init(&b, 0);
    fld_put_u64(&b, 1, 1);
    fld_put_str(&b, 3, "file:x");
    fld_put_str(&b, 60, "a field from the future");
    recio_write(w, 1, b.p, b.len);
    recio_write(w, 77, "opaque", 6);
    h2r_buf_reset(&b);
    fld_put_u64(&b, 1, 42);
    fld_put_u64(&b, 99, 5);
    fld_put_str(&b, 2, "10.0.0.1:1");
    recio_write(w, H2R_REC_CONN, b.p, b.len);
    CHECK_EQ_INT(recio_writer_close(w), 0);
    h2r_buf_free(&b);

    struct h2r_trace_reader *r;
    CHECK_EQ_INT(h2r_trace_reader_open(&r, path, err, sizeof(err)), 0);
    CHECK_EQ_STR(h2r_trace_reader_header(r)->source, "file:x");
    struct h2r_trace_record rec;
    CHECK_EQ_INT(h2r_trace_reader_next(r, &rec), 1);
    CHECK_EQ_INT(rec.kind, H2R_REC_CONN);
    CHECK_EQ_INT(rec.u.conn.id, 42);
    CHECK_EQ_STR(rec.u.conn.client, "10.0.0.1:1");
    CHECK_EQ_INT(h2r_trace_reader_next(r, &rec), 0);
    CHECK_EQ_INT(h2r_trace_reader_skipped(r), 1);
    h2r_trace_reader_free(r);
}

/* A TS2021 session record: every field, the frame list with a backwards step and
 * a machine key, then one without identity decoding to its defaults. */
static void test_ts_session(void)
{
    char path[128], err[256];
    tmp_path(path, sizeof(path), "ts.h2rt");
    struct h2r_trace_header h = {0};
    h.tool_version = "test";
    h.source = "file:ts.pcap";
    struct h2r_trace_writer *w;
    CHECK_EQ_INT(h2r_trace_writer_open(&w, path, &h, NULL, err, sizeof(err)), 0);
    struct h2r_ts_rec recs[] = {{5000, 51, 1, 2}, {7000, 300, 0, 4}, {6000, 4096, 1, 4},
                                {90000000000LL, 19, 1, 4}};
    struct h2r_ts_session t;
    memset(&t, 0, sizeof(t));
    t.id = 3;
    t.conn_id = 9;
    t.node = 2;
    t.capver = 113;
    t.flags = H2R_TS_F_IDENTIFIED | H2R_TS_F_TLS;
    for (int i = 0; i < 32; i++)
        t.machine_key[i] = (uint8_t)(0xa0 + i);
    t.status = 101;
    t.how = H2R_TS_END_FIN;
    t.t_upgrade_ns = 1700000000000000000LL;
    t.t_handshake_ns = t.t_upgrade_ns + 5000;
    t.t_end_ns = t.t_upgrade_ns + 91000000000LL;
    t.frames_c2s = 1;
    t.frames_s2c = 30;
    t.bytes_c2s = 300;
    t.bytes_s2c = 123456;
    t.recs = recs;
    t.n_recs = 4;
    t.recs_dropped = 27;
    CHECK_EQ_INT(h2r_trace_write_ts_session(w, &t), 0);
    struct h2r_ts_session bare;
    memset(&bare, 0, sizeof(bare));
    bare.id = 4;
    bare.status = 403;
    bare.how = H2R_TS_END_REFUSED;
    bare.reason = "upgrade answered 403";
    CHECK_EQ_INT(h2r_trace_write_ts_session(w, &bare), 0);
    t.n_recs = H2R_TS_MAX_RECS + 1;
    CHECK_EQ_INT(h2r_trace_write_ts_session(w, &t), H2R_ERR_LIMIT);
    CHECK_EQ_INT(h2r_trace_writer_close(w), 0);

    struct h2r_trace_reader *r;
    struct h2r_trace_record rec;
    CHECK_EQ_INT(h2r_trace_reader_open(&r, path, err, sizeof(err)), 0);
    CHECK_EQ_INT(h2r_trace_reader_next(r, &rec), 1);
    CHECK_EQ_INT(rec.kind, H2R_REC_TS_SESSION);
    const struct h2r_ts_session *g = &rec.u.ts;
    CHECK_EQ_INT(g->id, 3);
    CHECK_EQ_INT(g->conn_id, 9);
    CHECK_EQ_INT(g->node, 2);
    CHECK_EQ_INT(g->capver, 113);
    CHECK_EQ_INT(g->flags, H2R_TS_F_IDENTIFIED | H2R_TS_F_TLS);
    CHECK_EQ_MEM(g->machine_key, 32, t.machine_key, 32);
    CHECK_EQ_INT(g->status, 101);
    CHECK_EQ_STR(h2r_ts_how_name(g->how), "fin");
    CHECK(g->t_upgrade_ns == t.t_upgrade_ns && g->t_handshake_ns == t.t_handshake_ns &&
          g->t_end_ns == t.t_end_ns);
    CHECK(g->frames_c2s == 1 && g->frames_s2c == 30 && g->bytes_c2s == 300 &&
          g->bytes_s2c == 123456 && g->recs_dropped == 27);
    CHECK_EQ_INT(g->n_recs, 4);
    for (size_t i = 0; i < 4 && i < g->n_recs; i++) {
        CHECK(g->recs[i].t_ns == recs[i].t_ns);
        CHECK_EQ_INT(g->recs[i].len, recs[i].len);
        CHECK_EQ_INT(g->recs[i].dir, recs[i].dir);
        CHECK_EQ_INT(g->recs[i].type, recs[i].type);
    }
    CHECK(g->reason == NULL);
    CHECK_EQ_INT(h2r_trace_reader_next(r, &rec), 1);
    CHECK_EQ_INT(rec.u.ts.id, 4);
    CHECK_EQ_INT(rec.u.ts.flags, 0);
    CHECK_EQ_INT(rec.u.ts.n_recs, 0);
    CHECK_EQ_INT(rec.u.ts.status, 403);
    CHECK_EQ_STR(h2r_ts_how_name(rec.u.ts.how), "refused");
    CHECK_EQ_STR(rec.u.ts.reason, "upgrade answered 403");
    CHECK_EQ_INT(h2r_trace_reader_next(r, &rec), 0);
    h2r_trace_reader_free(r);
}

/* Session times out of order or negative: the reader refuses the record and names the
 * field, so nothing downstream (the replay plan) subtracts a crafted int64 pair. */
static void test_ts_session_times(void)
{
    static const struct {
        int64_t up, hs, end;
        const char *field; /* NULL: accepted */
    } cases[] = {
        {INT64_MIN, 0, INT64_MAX, "t_upgrade_ns"},
        {-1, 0, 0, "t_upgrade_ns"},
        {1000, 0, 999, "t_end_ns"},
        {INT64_MAX, 0, 1, "t_end_ns"},
        {1000, 999, 2000, "t_handshake_ns"},
        {1000, 2001, 2000, "t_handshake_ns"},
        {1000, INT64_MAX, 2000, "t_handshake_ns"},
        {1000, 1000, 1000, NULL},
        {1000, 5000, 0, NULL}, /* no end recorded: the handshake is only bounded below */
        {0, 0, INT64_MAX, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[128], err[256];
        tmp_path(path, sizeof(path), "ts_times.h2rt");
        struct h2r_trace_header h = {0};
        h.tool_version = "test";
        h.source = "file:ts.pcap";
        struct h2r_trace_writer *w;
        CHECK_EQ_INT(h2r_trace_writer_open(&w, path, &h, NULL, err, sizeof(err)), 0);
        struct h2r_ts_session t;
        memset(&t, 0, sizeof(t));
        t.id = 1;
        t.status = 101;
        t.how = H2R_TS_END_FIN;
        t.t_upgrade_ns = cases[i].up;
        t.t_handshake_ns = cases[i].hs;
        t.t_end_ns = cases[i].end;
        CHECK_EQ_INT(h2r_trace_write_ts_session(w, &t), 0);
        CHECK_EQ_INT(h2r_trace_writer_close(w), 0);

        struct h2r_trace_reader *r;
        struct h2r_trace_record rec;
        CHECK_EQ_INT(h2r_trace_reader_open(&r, path, err, sizeof(err)), 0);
        int rc = h2r_trace_reader_next(r, &rec);
        if (cases[i].field) {
            CHECK_EQ_INT(rc, H2R_ERR_FORMAT);
            CHECK(strstr(h2r_trace_reader_errmsg(r), cases[i].field) != NULL);
        } else {
            CHECK_EQ_INT(rc, 1);
            CHECK(rec.u.ts.t_upgrade_ns == cases[i].up && rec.u.ts.t_end_ns == cases[i].end);
        }
        h2r_trace_reader_free(r);
    }
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/h2r-test-trace-XXXXXX");
    if (!mkdtemp(tmpdir))
        return 2;
    test_roundtrip();
    test_many_frames();
    test_damaged();
    test_forward_compat();
    test_ts_session();
    test_ts_session_times();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary("test_core_trace");
}
