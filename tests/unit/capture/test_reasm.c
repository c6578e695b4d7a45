/*
 * Unit tests for cap_reasm: in-order, reordered, duplicated and overlapping
 * segments, sequence wraparound, missing SYN, out-of-order cap, holes at
 * close and snaplen-truncated segments. The sink renders delivered bytes as
 * text and gaps as "[N]" so each test asserts on one string.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "cap_reasm.h"

struct out {
    char buf[8192];
    size_t len;
    int64_t last_ts;
    int fail_after; /* >0: the n-th callback fails */
    int calls;
};

static int out_data(void *ud, const uint8_t *buf, size_t len, int64_t ts_ns)
{
    struct out *o = ud;

    o->calls++;
    if (o->fail_after && o->calls >= o->fail_after)
        return H2R_ERR_IO;
    if (o->len + len < sizeof(o->buf)) {
        memcpy(o->buf + o->len, buf, len);
        o->len += len;
        o->buf[o->len] = '\0';
    }
    o->last_ts = ts_ns;
    return 0;
}

static int out_gap(void *ud, uint64_t missing, int64_t ts_ns)
{
    struct out *o = ud;
    int n;

    o->calls++;
    n = snprintf(o->buf + o->len, sizeof(o->buf) - o->len, "[%llu]", (unsigned long long)missing);
    if (n > 0 && (size_t)n < sizeof(o->buf) - o->len)
        o->len += (size_t)n;
    o->last_ts = ts_ns;
    return 0;
}

static const struct cap_reasm_sink sink = {out_data, out_gap};

struct fixture {
    struct cap_reasm_env env;
    struct cap_reasm r;
    struct out o;
};

static void setup(struct fixture *f, size_t max_ooo)
{
    memset(f, 0, sizeof(*f));
    f->env.max_ooo = max_ooo;
    cap_reasm_init(&f->r, &f->env, &sink, &f->o);
}

static void teardown(struct fixture *f)
{
    cap_reasm_release(&f->r);
    CHECK_EQ_INT(f->env.ooo_total, 0);
}

static int push(struct fixture *f, uint32_t seq, unsigned flags, const char *data)
{
    size_t n = data ? strlen(data) : 0;
    return cap_reasm_push(&f->r, seq, flags, (const uint8_t *)data, (uint32_t)n, 0, 1);
}

static void test_in_order(void)
{
    struct fixture f;

    setup(&f, 0);
    CHECK_EQ_INT(push(&f, 100, CAP_TCP_SYN, NULL), 0);
    CHECK_EQ_INT(push(&f, 101, CAP_TCP_ACK, "abc"), 0);
    CHECK_EQ_INT(push(&f, 104, CAP_TCP_ACK | CAP_TCP_PSH, "def"), 0);
    CHECK_EQ_INT(push(&f, 107, CAP_TCP_ACK, NULL), 0);
    CHECK_EQ_STR(f.o.buf, "abcdef");
    CHECK_EQ_INT(f.r.delivered, 6);
    CHECK_EQ_INT(f.r.partial, 0);
    CHECK_EQ_INT(f.env.stats.segments, 4);
    CHECK_EQ_INT(f.env.stats.out_of_order + f.env.stats.retransmit + f.env.stats.gaps, 0);
    CHECK_EQ_INT(push(&f, 107, CAP_TCP_FIN | CAP_TCP_ACK, NULL), 0);
    CHECK(cap_reasm_fin_done(&f.r));
    teardown(&f);
}

static void test_reordered(void)
{
    struct fixture f;

    setup(&f, 0);
    push(&f, 0, CAP_TCP_SYN, NULL);
    push(&f, 7, CAP_TCP_ACK, "ghi");
    push(&f, 4, CAP_TCP_ACK, "def");
    CHECK_EQ_STR(f.o.buf, "");
    CHECK(f.r.ooo_bytes > 0);
    push(&f, 1, CAP_TCP_ACK, "abc");
    CHECK_EQ_STR(f.o.buf, "abcdefghi");
    CHECK_EQ_INT(f.env.stats.out_of_order, 2);
    CHECK_EQ_INT(f.r.ooo_bytes, 0);
    CHECK_EQ_INT(f.env.stats.ooo_bytes_peak > 0, 1);
    teardown(&f);
}

static void test_duplicates(void)
{
    struct fixture f;

    setup(&f, 0);
    push(&f, 0, CAP_TCP_SYN, NULL);
    push(&f, 1, CAP_TCP_ACK, "abc");
    push(&f, 1, CAP_TCP_ACK, "abc"); /* already delivered */
    push(&f, 7, CAP_TCP_ACK, "ghi"); /* queued */
    push(&f, 7, CAP_TCP_ACK, "ghi"); /* already queued */
    push(&f, 0, CAP_TCP_SYN, NULL);  /* SYN again */
    push(&f, 4, CAP_TCP_ACK, "def");
    CHECK_EQ_STR(f.o.buf, "abcdefghi");
    CHECK_EQ_INT(f.env.stats.retransmit, 2);
    CHECK_EQ_INT(f.env.stats.syn_retransmit, 1);
    CHECK_EQ_INT(f.env.stats.overlap, 0);
    teardown(&f);
}

static void test_overlap_same(void)
{
    struct fixture f;

    setup(&f, 0);
    push(&f, 0, CAP_TCP_SYN, NULL);
    push(&f, 1, CAP_TCP_ACK, "abcd");
    push(&f, 3, CAP_TCP_ACK, "cdef");        /* overlaps delivered bytes */
    push(&f, 10, CAP_TCP_ACK, "jklm");       /* queued */
    push(&f, 8, CAP_TCP_ACK, "hijk");        /* overlaps the queued piece's head */
    push(&f, 12, CAP_TCP_ACK, "lmno");       /* overlaps its tail */
    push(&f, 6, CAP_TCP_ACK, "fghijklmnop"); /* spans everything */
    CHECK_EQ_STR(f.o.buf, "abcdefghijklmnop");
    CHECK_EQ_INT(f.env.stats.overlap, 4);
    CHECK_EQ_INT(f.env.stats.overlap_conflict, 0);
    CHECK_EQ_INT(f.env.stats.retransmit, 0);
    teardown(&f);
}

static void test_overlap_conflict(void)
{
    struct fixture f;

    setup(&f, 0);
    push(&f, 0, CAP_TCP_SYN, NULL);
    push(&f, 4, CAP_TCP_ACK, "defg");
    push(&f, 1, CAP_TCP_ACK, "abcXYZ"); /* XYZ collides with the queued "def": first copy wins */
    CHECK_EQ_STR(f.o.buf, "abcdefg");
    CHECK_EQ_INT(f.env.stats.overlap, 1);
    CHECK_EQ_INT(f.env.stats.overlap_conflict, 1);
    /* A fully covered conflicting copy is a retransmission with a conflict. */
    push(&f, 20, CAP_TCP_ACK, "tuv");
    push(&f, 20, CAP_TCP_ACK, "TUV");
    CHECK_EQ_INT(f.env.stats.retransmit, 1);
    CHECK_EQ_INT(f.env.stats.overlap_conflict, 2);
    teardown(&f);
}

static void test_wraparound(void)
{
    struct fixture f;

    setup(&f, 0);
    push(&f, 0xfffffffcu, CAP_TCP_SYN, NULL);
    push(&f, 0xfffffffdu, CAP_TCP_ACK, "abc");   /* ends exactly at 2^32 */
    push(&f, 0x00000003u, CAP_TCP_ACK, "ghi");   /* after the wrap, queued */
    push(&f, 0x00000000u, CAP_TCP_ACK, "def");   /* fills the hole */
    push(&f, 0xfffffffeu, CAP_TCP_ACK, "bcdef"); /* old bytes across the wrap */
    CHECK_EQ_STR(f.o.buf, "abcdefghi");
    CHECK_EQ_INT(f.r.next_seq, 6);
    CHECK_EQ_INT(f.env.stats.retransmit, 1);
    push(&f, 6, CAP_TCP_FIN | CAP_TCP_ACK, "j");
    CHECK_EQ_STR(f.o.buf, "abcdefghij");
    CHECK(cap_reasm_fin_done(&f.r));
    teardown(&f);

    /* Out-of-order across the wrap without a SYN. */
    setup(&f, 0);
    push(&f, 0xfffffff0u, CAP_TCP_ACK, "0123456789abcdef");
    push(&f, 0x00000004u, CAP_TCP_ACK, "4567");
    push(&f, 0x00000000u, CAP_TCP_ACK, "0123");
    CHECK_EQ_STR(f.o.buf, "0123456789abcdef01234567");
    teardown(&f);
}

static void test_missing_syn(void)
{
    struct fixture f;

    setup(&f, 0);
    push(&f, 5000, CAP_TCP_ACK, "hello");
    CHECK_EQ_STR(f.o.buf, "hello");
    CHECK_EQ_INT(f.r.partial, 1);
    CHECK_EQ_INT(f.env.stats.partial_starts, 1);
    push(&f, 4990, CAP_TCP_ACK, "0123456789"); /* older than what we joined with */
    CHECK_EQ_INT(f.env.stats.before_start, 1);
    CHECK_EQ_INT(f.env.stats.retransmit, 0);
    push(&f, 4995, CAP_TCP_ACK, "56789hellowor"); /* partly before, partly new */
    CHECK_EQ_STR(f.o.buf, "hellowor");
    /* A pure ACK first also anchors the stream. */
    teardown(&f);
    setup(&f, 0);
    push(&f, 77, CAP_TCP_ACK, NULL);
    push(&f, 77, CAP_TCP_ACK, "x");
    CHECK_EQ_STR(f.o.buf, "x");
    /* The SYN captured after the handshake's ACK repairs the start. */
    teardown(&f);
    setup(&f, 0);
    push(&f, 501, CAP_TCP_ACK, NULL);
    CHECK_EQ_INT(f.env.stats.partial_starts, 1);
    push(&f, 500, CAP_TCP_SYN, NULL);
    CHECK_EQ_INT(f.r.partial, 0);
    CHECK_EQ_INT(f.r.syn_seen, 1);
    CHECK_EQ_INT(f.env.stats.partial_starts, 0);
    CHECK_EQ_INT(f.env.stats.syn_late, 1);
    push(&f, 501, CAP_TCP_ACK, "ok");
    CHECK_EQ_STR(f.o.buf, "ok");
    /* RST before anything does not. */
    teardown(&f);
    setup(&f, 0);
    push(&f, 1, CAP_TCP_RST, "diag");
    CHECK_EQ_INT(f.r.started, 0);
    CHECK_EQ_INT(f.env.stats.rst_payload, 1);
    push(&f, 9, CAP_TCP_ACK, "y");
    CHECK_EQ_STR(f.o.buf, "y");
    teardown(&f);
}

static void test_cap_hit(void)
{
    struct fixture f;
    char seg[101];
    /* Room for one 100-byte piece plus bookkeeping, not two. */
    size_t cap = 100 + 64 + 40;

    memset(seg, 'x', 100);
    seg[100] = '\0';
    setup(&f, cap);
    push(&f, 0, CAP_TCP_SYN, NULL);
    push(&f, 1, CAP_TCP_ACK, "a");
    push(&f, 12, CAP_TCP_ACK, seg); /* hole [2, 12) */
    CHECK_EQ_STR(f.o.buf, "a");
    CHECK_EQ_INT(f.env.stats.ooo_cap_hit, 0);
    seg[0] = 'y';
    push(&f, 122, CAP_TCP_ACK, seg); /* hole [112, 122); over the cap */
    CHECK_EQ_INT(f.env.stats.ooo_cap_hit, 1);
    CHECK(strncmp(f.o.buf, "a[10]xxx", 8) == 0);
    CHECK_EQ_INT(f.o.len, 1 + 4 + 100);
    CHECK_EQ_INT(f.env.stats.gaps, 1);
    CHECK_EQ_INT(f.env.stats.gap_bytes, 10);
    CHECK_EQ_INT(f.r.gap_bytes, 10);
    /* The late hole filler is now old. */
    push(&f, 2, CAP_TCP_ACK, "bcdefghijk");
    CHECK_EQ_INT(f.env.stats.retransmit, 1);
    CHECK_EQ_INT(cap_reasm_flush(&f.r, 2), 0);
    CHECK_EQ_INT(f.o.len, 1 + 4 + 100 + 4 + 100);
    CHECK(strstr(f.o.buf, "[10]y") != NULL);
    teardown(&f);

    /* The capture-wide cap applies too. */
    memset(&f, 0, sizeof(f));
    f.env.max_ooo_total = 30; /* less than one node with its bookkeeping */
    cap_reasm_init(&f.r, &f.env, &sink, &f.o);
    push(&f, 0, CAP_TCP_SYN, NULL);
    push(&f, 5, CAP_TCP_ACK, "efgh");
    CHECK_EQ_STR(f.o.buf, "[4]efgh");
    CHECK_EQ_INT(f.env.stats.ooo_cap_hit, 1);
    teardown(&f);
}

static void test_hole_at_close(void)
{
    struct fixture f;

    setup(&f, 0);
    push(&f, 0, CAP_TCP_SYN, NULL);
    push(&f, 1, CAP_TCP_ACK, "abc");
    push(&f, 10, CAP_TCP_ACK, "jkl");
    push(&f, 20, CAP_TCP_ACK, "t");
    push(&f, 21, CAP_TCP_FIN | CAP_TCP_ACK, NULL);
    CHECK(!cap_reasm_fin_done(&f.r));
    CHECK_EQ_STR(f.o.buf, "abc");
    CHECK_EQ_INT(cap_reasm_flush(&f.r, 9), 0);
    CHECK_EQ_STR(f.o.buf, "abc[6]jkl[7]t");
    CHECK_EQ_INT(f.o.last_ts, 9);
    CHECK(cap_reasm_fin_done(&f.r));
    CHECK_EQ_INT(f.env.stats.gaps, 2);
    CHECK_EQ_INT(f.env.stats.gap_bytes, 13);
    /* Data after the FIN is dropped. */
    push(&f, 22, CAP_TCP_ACK, "zz");
    CHECK_EQ_INT(f.env.stats.data_after_fin, 1);
    CHECK_EQ_STR(f.o.buf, "abc[6]jkl[7]t");
    teardown(&f);

    /* FIN seen beyond the last byte: the missing tail is a gap too. */
    setup(&f, 0);
    push(&f, 0, CAP_TCP_SYN, NULL);
    push(&f, 1, CAP_TCP_ACK, "ab");
    push(&f, 8, CAP_TCP_FIN | CAP_TCP_ACK, NULL);
    CHECK_EQ_INT(cap_reasm_flush(&f.r, 3), 0);
    CHECK_EQ_STR(f.o.buf, "ab[5]");
    teardown(&f);
}

static void test_truncated(void)
{
    struct fixture f;

    setup(&f, 0);
    push(&f, 0, CAP_TCP_SYN, NULL);
    /* 6 bytes on the wire, 3 captured. */
    CHECK_EQ_INT(cap_reasm_push(&f.r, 1, CAP_TCP_ACK, (const uint8_t *)"abc", 3, 3, 1), 0);
    CHECK_EQ_STR(f.o.buf, "abc[3]");
    push(&f, 7, CAP_TCP_ACK, "ghi");
    CHECK_EQ_STR(f.o.buf, "abc[3]ghi");
    /* Truncated and out of order: its cut part is queued as a gap. */
    CHECK_EQ_INT(cap_reasm_push(&f.r, 16, CAP_TCP_ACK, (const uint8_t *)"pq", 2, 4, 1), 0);
    push(&f, 22, CAP_TCP_ACK, "v");
    /* A full copy of the cut bytes arrives later: the first (cut) copy wins. */
    push(&f, 18, CAP_TCP_ACK, "rstu");
    push(&f, 10, CAP_TCP_ACK, "jklmno");
    CHECK_EQ_STR(f.o.buf, "abc[3]ghijklmnopq[4]v");
    CHECK_EQ_INT(f.env.stats.truncated_segments, 2);
    CHECK_EQ_INT(f.env.stats.truncated_bytes, 7);
    CHECK_EQ_INT(f.env.stats.gap_bytes, 7);
    teardown(&f);
}

static void test_window_and_errors(void)
{
    struct fixture f;
    struct cap_counter_list l = {NULL, 0, 0};
    int found = 0;

    setup(&f, 0);
    push(&f, 0, CAP_TCP_SYN, NULL);
    push(&f, 1u + (1u << 30) + 1u, CAP_TCP_ACK, "far");
    CHECK_EQ_INT(f.env.stats.out_of_window, 1);
    CHECK_EQ_INT(f.r.ooo_bytes, 0);
    push(&f, 1, CAP_TCP_RST | CAP_TCP_ACK, "reset");
    CHECK_EQ_INT(f.r.rst_seen, 1);
    CHECK_EQ_STR(f.o.buf, "");
    teardown(&f);

    /* A sink error is passed back. */
    setup(&f, 0);
    f.o.fail_after = 3;
    push(&f, 0, CAP_TCP_SYN, NULL);
    CHECK_EQ_INT(push(&f, 4, CAP_TCP_ACK, "def"), 0);
    CHECK_EQ_INT(push(&f, 1, CAP_TCP_ACK, "abc"), 0);
    CHECK_EQ_STR(f.o.buf, "abcdef");
    push(&f, 10, CAP_TCP_ACK, "jkl");
    CHECK_EQ_INT(push(&f, 7, CAP_TCP_ACK, "ghi"), H2R_ERR_IO);
    teardown(&f);

    CHECK_EQ_INT(cap_reasm_stats_export(&f.env.stats, &l), 0);
    for (size_t i = 0; i < l.n; i++)
        if (strcmp(l.v[i].name, "tcp.segments") == 0)
            found = l.v[i].value == f.env.stats.segments;
    CHECK(found);
    cap_counter_list_free(&l);
}

int main(void)
{
    test_in_order();
    test_reordered();
    test_duplicates();
    test_overlap_same();
    test_overlap_conflict();
    test_wraparound();
    test_missing_syn();
    test_cap_hit();
    test_hole_at_close();
    test_truncated();
    test_window_and_errors();
    return check_summary("test_cap_reasm");
}
