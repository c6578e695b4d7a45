/*
 * Unit tests for the run file codec (core/run.c): round trip of every record
 * kind with defaults for absent fields, error class names, a truncated file,
 * and a trace passed where a run file is expected.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "h2replay/run.h"
#include "h2replay/trace.h"

static char dir[64];

static void write_run(const char *path, unsigned n)
{
    struct h2r_run_meta m = {"test", "t.h2rt", "abc123", "host", "h2replay replay ...",
                             "speed=10", 1700000000000000000LL, 1, 4, 0};
    struct h2r_run_writer *w;
    char err[256];
    CHECK_EQ_INT(h2r_run_writer_open(&w, path, &m, err, sizeof(err)), 0);
    struct h2r_run_section s = {0, "sqlite", "http://127.0.0.1:1", 10.0, 1700000000000000000LL,
                                5000000000LL, "label", -1700000000000000000LL, 4000000};
    CHECK_EQ_INT(h2r_run_write_section(w, &s), 0);
    for (unsigned i = 0; i < n; i++) {
        struct h2r_run_result r;
        memset(&r, 0, sizeof(r));
        r.exchange_id = i;
        r.trace_conn = 1;
        r.stream_id = 2 * i + 1;
        r.method = "GET";
        r.path = "/x";
        r.t_intended_ns = i * 1000;
        r.t_sent_ns = i * 1000 + 5;
        r.t_done_ns = i * 1000 + 100;
        r.status = i % 3 ? 200 : -1;
        r.grpc_status = -1;
        r.trace_status = 200;
        r.trace_grpc_status = -1;
        r.err_class = i % 3 ? H2R_EC_NONE : H2R_EC_STREAM_RESET;
        r.err_detail = i % 3 ? NULL : "REFUSED_STREAM";
        if (i % 5 == 4) { /* a TS2021 map step: the optional fields 22-28 */
            r.flags = H2R_RES_F_TS;
            r.t_open_ns = i * 1000 + 2;
            r.t_netmap_ns = i * 1000 + 50;
            r.t_last_netmap_ns = i * 1000 + 70;
            r.t_end_ns = i * 1000 + 90;
            r.netmaps = 3;
            r.keepalives = 0;
            r.peers = 99;
        }
        CHECK_EQ_INT(h2r_run_write_result(w, &r), 0);
    }
    struct h2r_run_sample sm = {0, 1000000000, 1000000000, 3, 1, 10, 10, 9, 1, 1234};
    CHECK_EQ_INT(h2r_run_write_sample(w, &sm), 0);
    struct h2r_counter vals[] = {{"rows.nodes", 600}, {"sqlite.wal_bytes", 4096}};
    struct h2r_run_db_sample db = {0, 1500000000, "sqlite", vals, 2};
    CHECK_EQ_INT(h2r_run_write_db_sample(w, &db), 0);
    struct h2r_run_ack ack;
    memset(&ack, 0, sizeof(ack));
    ack.exchange_id = 7;
    ack.trace_conn = 1;
    ack.t_ns = 1700;
    ack.kind = "user";
    ack.id = "42";
    ack.name = "alice";
    ack.source = H2R_ACK_SRC_REQUEST;
    CHECK_EQ_INT(h2r_run_write_ack(w, &ack), 0);
    struct h2r_run_verify v;
    memset(&v, 0, sizeof(v));
    v.t_ns = 1900000000;
    v.db_kind = "sqlite";
    v.acks = 3;
    v.ignored = 1;
    v.n_kinds = 2;
    v.kinds[0].kind = "users";
    v.kinds[0].acknowledged = 2;
    v.kinds[0].present = 5;
    v.kinds[0].lost = 1;
    v.kinds[0].unacknowledged = 4;
    v.kinds[0].lost_examples[0] = "{\"kind\":\"user\",\"name\":\"bob\"}";
    v.kinds[0].n_lost_examples = 1;
    v.kinds[0].unacked_examples[0] = "{\"id\":9}";
    v.kinds[0].unacked_examples[1] = "{\"id\":10}";
    v.kinds[0].n_unacked_examples = 2;
    v.kinds[0].existing_before = 6;
    v.kinds[0].before_max_id = 7;
    v.kinds[1].kind = "nodes";
    v.kinds[1].before_max_id = -1; /* no baseline: not written */
    v.baseline_failed = 1;
    CHECK_EQ_INT(h2r_run_write_verify(w, &v), 0);
    struct h2r_run_section_end e;
    memset(&e, 0, sizeof(e));
    e.t_end_ns = 2000000000;
    e.exchanges = n;
    e.errors = n / 3;
    e.cpu_user_ns = 1;
    e.cpu_sys_ns = 2;
    e.max_rss_kb = 3;
    e.loop_threads = 2;
    e.max_late_ns = 5000;
    e.late_p99_ns = 4000;
    e.peak_fds = 17;
    e.peak_conns = 9;
    e.fd_limit = 1024;
    e.emfile_errors = 3;
    CHECK_EQ_INT(h2r_run_write_section_end(w, &e), 0);
    CHECK_EQ_INT(h2r_run_writer_close(w), 0);
}

static void test_roundtrip(void)
{
    char path[128], err[256];
    snprintf(path, sizeof(path), "%s/a.h2rr", dir);
    write_run(path, 10);
    CHECK(h2r_run_file_probe(path));
    struct h2r_run_reader *r;
    CHECK_EQ_INT(h2r_run_reader_open(&r, path, err, sizeof(err)), 0);
    const struct h2r_run_meta *m = h2r_run_reader_meta(r);
    CHECK_EQ_STR(m->trace_sha256, "abc123");
    CHECK_EQ_INT(m->shard_index, 1);
    CHECK_EQ_INT(m->shard_count, 4);
    struct h2r_run_record rec;
    CHECK_EQ_INT(h2r_run_reader_next(r, &rec), 1);
    CHECK_EQ_INT(rec.kind, H2R_RUN_REC_SECTION);
    CHECK_EQ_STR(rec.u.section.name, "sqlite");
    CHECK(rec.u.section.speed == 10.0);
    CHECK_EQ_INT(rec.u.section.clock_offset_ns, -1700000000000000000LL);
    CHECK_EQ_INT(rec.u.section.clock_max_error_ns, 4000000);
    for (unsigned i = 0; i < 10; i++) {
        CHECK_EQ_INT(h2r_run_reader_next(r, &rec), 1);
        CHECK_EQ_INT(rec.kind, H2R_RUN_REC_RESULT);
        CHECK_EQ_INT(rec.u.result.exchange_id, i);
        CHECK_EQ_INT(rec.u.result.status, i % 3 ? 200 : -1);
        CHECK_EQ_INT(rec.u.result.grpc_status, -1);
        CHECK_EQ_INT(rec.u.result.t_done_ns, i * 1000 + 100);
        CHECK_EQ_STR(rec.u.result.path, "/x");
        if (i % 3 == 0)
            CHECK_EQ_STR(rec.u.result.err_detail, "REFUSED_STREAM");
        else
            CHECK(rec.u.result.err_detail == NULL);
        if (i % 5 == 4) {
            CHECK_EQ_INT(rec.u.result.flags, H2R_RES_F_TS);
            CHECK_EQ_INT(rec.u.result.t_open_ns, i * 1000 + 2);
            CHECK_EQ_INT(rec.u.result.t_netmap_ns, i * 1000 + 50);
            CHECK_EQ_INT(rec.u.result.t_last_netmap_ns, i * 1000 + 70);
            CHECK_EQ_INT(rec.u.result.t_end_ns, i * 1000 + 90);
            CHECK_EQ_INT(rec.u.result.netmaps, 3);
            CHECK_EQ_INT(rec.u.result.keepalives, 0);
            CHECK_EQ_INT(rec.u.result.peers, 99);
        } else {
            CHECK_EQ_INT(rec.u.result.flags, 0);
            CHECK_EQ_INT(rec.u.result.t_netmap_ns, 0);
            CHECK_EQ_INT(rec.u.result.peers, 0);
        }
    }
    CHECK_EQ_INT(h2r_run_reader_next(r, &rec), 1);
    CHECK_EQ_INT(rec.kind, H2R_RUN_REC_SAMPLE);
    CHECK_EQ_INT(rec.u.sample.max_late_ns, 1234);
    CHECK_EQ_INT(h2r_run_reader_next(r, &rec), 1);
    CHECK_EQ_INT(rec.kind, H2R_RUN_REC_DB_SAMPLE);
    CHECK_EQ_STR(rec.u.db.db_kind, "sqlite");
    CHECK_EQ_INT(rec.u.db.n_values, 2);
    CHECK_EQ_STR(rec.u.db.values[1].name, "sqlite.wal_bytes");
    CHECK_EQ_INT(rec.u.db.values[0].value, 600);
    CHECK_EQ_INT(h2r_run_reader_next(r, &rec), 1);
    CHECK_EQ_INT(rec.kind, H2R_RUN_REC_ACK);
    CHECK_EQ_INT(rec.u.ack.exchange_id, 7);
    CHECK_EQ_INT(rec.u.ack.t_ns, 1700);
    CHECK_EQ_STR(rec.u.ack.kind, "user");
    CHECK_EQ_STR(rec.u.ack.id, "42");
    CHECK_EQ_STR(rec.u.ack.name, "alice");
    CHECK(rec.u.ack.key == NULL && rec.u.ack.node_key == NULL);
    CHECK_EQ_INT(rec.u.ack.source, H2R_ACK_SRC_REQUEST);
    CHECK_EQ_INT(h2r_run_reader_next(r, &rec), 1);
    CHECK_EQ_INT(rec.kind, H2R_RUN_REC_VERIFY);
    CHECK_EQ_STR(rec.u.verify.db_kind, "sqlite");
    CHECK(rec.u.verify.error == NULL);
    CHECK_EQ_INT(rec.u.verify.acks, 3);
    CHECK_EQ_INT(rec.u.verify.ignored, 1);
    CHECK_EQ_INT(rec.u.verify.n_kinds, 2);
    CHECK_EQ_STR(rec.u.verify.kinds[0].kind, "users");
    CHECK_EQ_INT(rec.u.verify.kinds[0].lost, 1);
    CHECK_EQ_INT(rec.u.verify.kinds[0].unacknowledged, 4);
    CHECK_EQ_INT(rec.u.verify.kinds[0].n_lost_examples, 1);
    CHECK_EQ_STR(rec.u.verify.kinds[0].lost_examples[0], "{\"kind\":\"user\",\"name\":\"bob\"}");
    CHECK_EQ_INT(rec.u.verify.kinds[0].n_unacked_examples, 2);
    CHECK_EQ_STR(rec.u.verify.kinds[0].unacked_examples[1], "{\"id\":10}");
    CHECK_EQ_INT(rec.u.verify.kinds[0].existing_before, 6);
    CHECK_EQ_INT(rec.u.verify.kinds[0].before_max_id, 7);
    CHECK_EQ_INT(rec.u.verify.baseline_failed, 1);
    CHECK_EQ_STR(rec.u.verify.kinds[1].kind, "nodes");
    CHECK_EQ_INT(rec.u.verify.kinds[1].present, 0);
    CHECK_EQ_INT(rec.u.verify.kinds[1].existing_before, 0);
    CHECK_EQ_INT(rec.u.verify.kinds[1].before_max_id, -1);
    CHECK_EQ_INT(h2r_run_reader_next(r, &rec), 1);
    CHECK_EQ_INT(rec.kind, H2R_RUN_REC_SECTION_END);
    CHECK_EQ_INT(rec.u.end.max_rss_kb, 3);
    CHECK_EQ_INT(rec.u.end.loop_threads, 2);
    CHECK_EQ_INT(rec.u.end.max_late_ns, 5000);
    CHECK_EQ_INT(rec.u.end.late_p99_ns, 4000);
    CHECK_EQ_INT(rec.u.end.peak_fds, 17);
    CHECK_EQ_INT(rec.u.end.peak_conns, 9);
    CHECK_EQ_INT(rec.u.end.fd_limit, 1024);
    CHECK_EQ_INT(rec.u.end.emfile_errors, 3);
    CHECK_EQ_INT(h2r_run_reader_next(r, &rec), 0);
    h2r_run_reader_free(r);
}

static void test_classes(void)
{
    CHECK_EQ_STR(h2r_err_class_name(H2R_EC_DEADLINE), "deadline_exceeded");
    CHECK_EQ_STR(h2r_err_class_name(999), "unknown");
    for (unsigned c = 0; c < H2R_EC_MAX_; c++) {
        const char *n = h2r_err_class_name(c);
        if (strcmp(n, "unknown") != 0)
            CHECK_EQ_INT(h2r_err_class_from_name(n), c);
    }
    CHECK_EQ_INT(h2r_err_class_from_name("nope"), -1);
}

static void test_damaged(void)
{
    char path[128], cut[128], err[256];
    snprintf(path, sizeof(path), "%s/b.h2rr", dir);
    snprintf(cut, sizeof(cut), "%s/cut.h2rr", dir);
    write_run(path, 20000);
    FILE *in = fopen(path, "rb");
    fseek(in, 0, SEEK_END);
    long size = ftell(in);
    rewind(in);
    char *buf = malloc((size_t)size);
    CHECK(fread(buf, 1, (size_t)size, in) == (size_t)size);
    fclose(in);
    FILE *out = fopen(cut, "wb");
    fwrite(buf, 1, (size_t)size - 7, out);
    fclose(out);

    struct h2r_run_reader *r;
    CHECK_EQ_INT(h2r_run_reader_open(&r, cut, err, sizeof(err)), 0);
    struct h2r_run_record rec;
    int rc;
    while ((rc = h2r_run_reader_next(r, &rec)) == 1)
        ;
    CHECK_EQ_INT(rc, H2R_ERR_TRUNCATED);
    CHECK(strstr(h2r_run_reader_errmsg(r), "offset") != NULL);
    h2r_run_reader_free(r);

    /* the in-memory reader on the same bytes agrees */
    CHECK_EQ_INT(h2r_run_reader_open_mem(&r, buf, (size_t)size, err, sizeof(err)), 0);
    unsigned results = 0;
    while ((rc = h2r_run_reader_next(r, &rec)) == 1)
        results += rec.kind == H2R_RUN_REC_RESULT;
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(results, 20000);
    h2r_run_reader_free(r);
    free(buf);

    /* a trace is not a run file */
    char tpath[128];
    snprintf(tpath, sizeof(tpath), "%s/t.h2rt", dir);
    struct h2r_trace_header th = {0};
    struct h2r_trace_writer *tw;
    CHECK_EQ_INT(h2r_trace_writer_open(&tw, tpath, &th, NULL, err, sizeof(err)), 0);
    h2r_trace_writer_close(tw);
    CHECK(!h2r_run_file_probe(tpath));
    CHECK_EQ_INT(h2r_run_reader_open(&r, tpath, err, sizeof(err)), H2R_ERR_FORMAT);
    CHECK(strstr(err, "magic") != NULL);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/h2r-test-run-XXXXXX");
    if (!mkdtemp(dir))
        return 2;
    test_roundtrip();
    test_classes();
    test_damaged();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return check_summary("test_core_run");
}
