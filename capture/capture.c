/*
 * The capture driver: pcap (file or live interface) -> decode -> flow table
 * -> sessions -> trace.
 *
 * This is the only capture module that touches files and the clock; every
 * layer below it is a push parser. It owns the libpcap handle, opens the trace
 * writer once the first packet gives the start time, and makes sure a trace
 * always ends with its summary record: a truncated file, a read error or a
 * stop request still closes every open flow and writes what was counted.
 */
#include <errno.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "h2replay/capture.h"
#include "h2replay/trace.h"
#include "cap_decode.h"
#include "cap_flow.h"
#include "cap_keylog.h"
#include "cap_redact.h"
#include "cap_session.h"
#include "cap_stats.h"
#include "cap_ts.h"

#define DEFAULT_MAX_REQ_BODY ((size_t)1 << 20)
#define LIVE_BUFFER_BYTES (64 * 1024 * 1024)
#define DEFAULT_MAX_RESP_BODY (4u * 1024u) /* replay never resends responses; keep the trace small */
#define DEFAULT_SNAPLEN 262144
#define LIVE_TIMEOUT_MS 100    /* how often an idle live capture checks stop/duration */
#define CLOCK_CHECK_EVERY 256u /* packets between progress/duration checks */
#define NS_PER_SEC 1000000000ll
#define NOISE_KEY_FILE_MAX 256 /* "privkey:" + 64 hex + a newline, with room for whitespace */

static volatile sig_atomic_t stop_requested;
static pcap_t *volatile active_pcap;

struct capture {
    const struct h2r_capture_opts *o;
    pcap_t *pcap;
    int linktype; /* DLT_* of the handle */
    int live;
    int nano; /* timestamps in ns (else us) */
    int fd;   /* live: selectable descriptor of the non-blocking handle */
    char *source;
    char *options;
    struct h2r_trace_writer *tw;
    struct cap_redactor *redactor;
    struct cap_keylog *keylog;
    uint8_t noise_key[CAP_TS_KEY_LEN]; /* --noise-key; wiped at the end, never written */
    struct cap_ts_nodes *ts_nodes;     /* machine key -> node, across the whole capture */
    struct cap_flow_table *flows;
    struct cap_session_stats sstats;
    struct cap_session_env env;
    struct cap_decode_stats dstats;
    uint64_t packets;
    uint64_t bytes;
    int64_t last_ns;
    int truncated_file;
    int writer_failed;   /* the trace could not be created: nothing to finish */
    struct pcap_stat ps; /* live only */
    int have_ps;
    /* progress */
    int tty;
    int64_t t_start_mono;
    int64_t t_last_progress;
};

void h2r_capture_opts_init(struct h2r_capture_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->redact = 1;
    o->max_req_body = DEFAULT_MAX_REQ_BODY;
    o->max_resp_body = DEFAULT_MAX_RESP_BODY;
    o->snaplen = DEFAULT_SNAPLEN;
}

void h2r_capture_request_stop(void)
{
    pcap_t *p = active_pcap;

    stop_requested = 1;
    if (p)
        pcap_breakloop(p);
}

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static int64_t wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static const char *input_name(const struct capture *c)
{
    return c->live ? c->o->iface : c->o->read_file;
}

/* ---- progress ---- */

static void human_count(char *out, size_t len, uint64_t n)
{
    if (n < 1000)
        snprintf(out, len, "%llu", (unsigned long long)n);
    else if (n < 1000000)
        snprintf(out, len, "%.1fk", (double)n / 1e3);
    else if (n < 1000000000)
        snprintf(out, len, "%.1fM", (double)n / 1e6);
    else
        snprintf(out, len, "%.1fG", (double)n / 1e9);
}

static void print_progress(struct capture *c, int final, int64_t now)
{
    char pk[32];
    double secs = (double)(now - c->t_start_mono) / 1e9;
    double mb = (double)c->bytes / 1e6;
    double rate = secs > 0 ? mb / secs : 0;

    human_count(pk, sizeof(pk), c->packets);
    if (!final) {
        fprintf(stderr, "%scapture: %s pkts  %.1f MB  %llu exch  %.1f MB/s%s", c->tty ? "\r" : "",
                pk, mb, (unsigned long long)c->sstats.exchanges, rate, c->tty ? "   " : "\n");
    } else {
        const struct cap_flow_stats *fs = cap_flow_table_stats(c->flows);
        fprintf(stderr,
                "%scapture: done  %s pkts  %.1f MB  %llu exch  %llu flows  %llu gaps  "
                "%.2f s  %.1f MB/s\n",
                c->tty ? "\r" : "", pk, mb, (unsigned long long)c->sstats.exchanges,
                (unsigned long long)fs->flows,
                (unsigned long long)cap_flow_table_reasm_stats(c->flows)->gaps, secs, rate);
    }
    fflush(stderr);
}

/* Called every few packets and on live timeouts: progress line and the duration limit. */
static void check_clock(struct capture *c)
{
    int64_t now;

    if (!c->o->progress && !(c->live && c->o->duration_ns > 0))
        return;
    now = mono_ns();
    if (c->o->progress && now - c->t_last_progress >= NS_PER_SEC) {
        c->t_last_progress = now;
        print_progress(c, 0, now);
    }
    if (c->live && c->o->duration_ns > 0 && now - c->t_start_mono >= c->o->duration_ns)
        stop_requested = 1;
}

/* ---- opening the input ---- */

static int open_offline(struct capture *c, char *errbuf, size_t errlen)
{
    char perr[PCAP_ERRBUF_SIZE] = "";
    const char *path = c->o->read_file;
    FILE *probe;

    c->pcap = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, perr);
    if (c->pcap) {
        c->nano = pcap_get_tstamp_precision(c->pcap) == PCAP_TSTAMP_PRECISION_NANO;
        return 0;
    }
    /* libpcap says "unknown file format" and "No such file" alike; tell them apart. */
    if (strcmp(path, "-") != 0) {
        probe = fopen(path, "rb");
        if (!probe)
            return h2r_seterr(errbuf, errlen, H2R_ERR_IO, "%s: cannot read: %s", path, perr);
        fclose(probe);
    }
    return h2r_seterr(errbuf, errlen, H2R_ERR_FORMAT, "%s: not a pcap or pcapng file: %s", path,
                      perr);
}

static int open_live(struct capture *c, char *errbuf, size_t errlen)
{
    char perr[PCAP_ERRBUF_SIZE] = "";
    const char *iface = c->o->iface;
    int status;

    c->pcap = pcap_create(iface, perr);
    if (!c->pcap)
        return h2r_seterr(errbuf, errlen, H2R_ERR_PCAP, "interface %s: %s", iface, perr);
    pcap_set_snaplen(c->pcap, c->o->snaplen > 0 ? c->o->snaplen : DEFAULT_SNAPLEN);
    pcap_set_immediate_mode(c->pcap, 1);
    /* bursts on loopback overflow libpcap's default 2 MiB ring: drops become gaps */
    pcap_set_buffer_size(c->pcap, LIVE_BUFFER_BYTES);
    pcap_set_timeout(c->pcap, LIVE_TIMEOUT_MS);
    /* Nanosecond stamps where the platform has them; microseconds otherwise. */
    (void)pcap_set_tstamp_precision(c->pcap, PCAP_TSTAMP_PRECISION_NANO);
    status = pcap_activate(c->pcap);
    if (status < 0) {
        const char *what = pcap_statustostr(status);
        const char *detail = pcap_geterr(c->pcap);
        int err = status == PCAP_ERROR_NO_SUCH_DEVICE ? H2R_ERR_ARG : H2R_ERR_PCAP;
        if (!detail || !detail[0] || strcmp(detail, what) == 0)
            return h2r_seterr(errbuf, errlen, err, "interface %s: %s", iface, what);
        return h2r_seterr(errbuf, errlen, err, "interface %s: %s (%s)", iface, what, detail);
    }
    c->nano = pcap_get_tstamp_precision(c->pcap) == PCAP_TSTAMP_PRECISION_NANO;
    /* libpcap on Linux retries its poll() internally on timeouts, so a quiet interface
     * would never let the loop check the duration: read non-blocking, wait ourselves. */
    if (pcap_setnonblock(c->pcap, 1, perr) != 0)
        return h2r_seterr(errbuf, errlen, H2R_ERR_PCAP, "interface %s: %s", iface, perr);
    c->fd = pcap_get_selectable_fd(c->pcap);
    if (c->fd < 0)
        return h2r_seterr(errbuf, errlen, H2R_ERR_UNSUPPORTED,
                          "interface %s: no selectable descriptor", iface);
    return 0;
}

static int set_filter(struct capture *c, char *errbuf, size_t errlen)
{
    struct bpf_program prog;
    int rc = 0;

    if (!c->o->filter)
        return 0;
    if (pcap_compile(c->pcap, &prog, c->o->filter, 1, PCAP_NETMASK_UNKNOWN) != 0)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "-f '%s': bad BPF filter: %s", c->o->filter,
                          pcap_geterr(c->pcap));
    if (pcap_setfilter(c->pcap, &prog) != 0)
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_PCAP, "-f '%s': cannot set the filter: %s",
                        c->o->filter, pcap_geterr(c->pcap));
    pcap_freecode(&prog);
    return rc;
}

/* pcap_datalink() reports DLT_ values; the trace records the LINKTYPE_ the file format uses. */
static int32_t linktype_of_dlt(int dlt)
{
    if (dlt == CAP_LINK_RAW_DLT || dlt == CAP_LINK_RAW_BSDOS)
        return CAP_LINK_RAW;
    return dlt;
}

/* Joins n strings into one malloc'd string (NULL on allocation failure). */
static char *join(const char *const *parts, size_t n)
{
    size_t len = 1, off = 0;
    char *s;

    for (size_t i = 0; i < n; i++)
        len += strlen(parts[i]);
    s = malloc(len);
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(parts[i]);
        memcpy(s + off, parts[i], l);
        off += l;
    }
    s[off] = '\0';
    return s;
}

static int describe(struct capture *c)
{
    const struct h2r_capture_opts *o = c->o;
    int hdrs = o->redact && o->redact_headers, fields = o->redact && o->redact_fields;
    char nums[192];
    size_t n;

    const char *src[] = {c->live ? "iface:" : "file:", input_name(c), o->filter ? " filter:" : "",
                         o->filter ? o->filter : ""};
    c->source = join(src, sizeof(src) / sizeof(src[0]));

    n = (size_t)snprintf(nums, sizeof(nums), " max_req_body=%zu max_resp_body=%zu",
                         c->env.max_req_body, c->env.max_resp_body);
    if (o->max_packets && n < sizeof(nums))
        n += (size_t)snprintf(nums + n, sizeof(nums) - n, " max_packets=%llu",
                              (unsigned long long)o->max_packets);
    if (c->live && o->duration_ns > 0 && n < sizeof(nums))
        snprintf(nums + n, sizeof(nums) - n, " duration_ms=%lld",
                 (long long)(o->duration_ns / 1000000));
    const char *opt[] = {"redact=",
                         o->redact ? "on" : "off",
                         o->noise_key ? " ts2021_identify=on" : "",
                         hdrs ? " redact_headers=" : "",
                         hdrs ? o->redact_headers : "",
                         fields ? " redact_fields=" : "",
                         fields ? o->redact_fields : "",
                         nums};
    c->options = join(opt, sizeof(opt) / sizeof(opt[0]));
    return c->source && c->options ? 0 : H2R_ERR_NOMEM;
}

static int open_writer(struct capture *c, int64_t start_ns, char *errbuf, size_t errlen)
{
    struct h2r_trace_header hdr;
    char werr[256] = "";
    int rc;

    memset(&hdr, 0, sizeof(hdr));
    hdr.format_version = H2R_TRACE_FORMAT_VERSION;
    hdr.tool_version = H2R_VERSION;
    hdr.source = c->source;
    hdr.start_ns = start_ns;
    hdr.linktype = linktype_of_dlt(c->linktype);
    hdr.snaplen = (uint32_t)pcap_snapshot(c->pcap);
    hdr.options = c->options;
    rc = h2r_trace_writer_open(&c->tw, c->o->out_path, &hdr, NULL, werr, sizeof(werr));
    if (rc != 0) {
        c->tw = NULL;
        c->writer_failed = 1;
        return h2r_seterr(errbuf, errlen, rc, "%s: %s", c->o->out_path,
                          werr[0] ? werr : h2r_strerror(rc));
    }
    c->env.tw = c->tw;
    return 0;
}

/* ---- the loop ---- */

static int fatal_error(struct capture *c, int rc, char *errbuf, size_t errlen)
{
    if (c->env.write_error || rc == H2R_ERR_IO || rc == H2R_ERR_COMPRESS) {
        const char *m = c->tw ? h2r_trace_writer_errmsg(c->tw) : "";
        return h2r_seterr(errbuf, errlen, rc, "writing %s: %s", c->o->out_path,
                          m && m[0] ? m : h2r_strerror(rc));
    }
    return h2r_seterr(errbuf, errlen, rc, "%s: packet %llu: %s", input_name(c),
                      (unsigned long long)c->packets, h2r_strerror(rc));
}

static int handle_packet(struct capture *c, const struct pcap_pkthdr *h, const uint8_t *data,
                         char *errbuf, size_t errlen)
{
    struct cap_tcp_seg seg;
    int64_t ts = (int64_t)h->ts.tv_sec * NS_PER_SEC + (int64_t)h->ts.tv_usec * (c->nano ? 1 : 1000);
    int rc;

    if (c->packets == 0) {
        c->last_ns = ts;
        rc = open_writer(c, ts, errbuf, errlen);
        if (rc != 0)
            return rc;
    }
    c->packets++;
    c->bytes += h->caplen;
    if (ts > c->last_ns)
        c->last_ns = ts;
    /* Anything but a TCP segment is counted by the decoder and skipped. */
    if (cap_decode_packet(c->linktype, data, h->caplen, h->len, &seg, &c->dstats) != 0)
        return 0;
    rc = cap_flow_packet(c->flows, &seg, ts);
    if (rc != 0)
        return fatal_error(c, rc, errbuf, errlen);
    return 0;
}

static int read_error(struct capture *c, char *errbuf, size_t errlen)
{
    const char *msg = pcap_geterr(c->pcap);

    if (!c->live && strstr(msg, "truncated")) {
        FILE *f = pcap_file(c->pcap);
        long off = f ? ftell(f) : -1;
        c->truncated_file = 1;
        return h2r_seterr(errbuf, errlen, H2R_ERR_TRUNCATED,
                          "%s: truncated pcap: the file ends at byte offset %ld inside packet "
                          "%llu (%s)",
                          c->o->read_file, off, (unsigned long long)c->packets + 1, msg);
    }
    return h2r_seterr(errbuf, errlen, H2R_ERR_PCAP, "%s: read error after %llu packets: %s",
                      input_name(c), (unsigned long long)c->packets, msg);
}

static int capture_loop(struct capture *c, char *errbuf, size_t errlen)
{
    struct pcap_pkthdr *h;
    const u_char *data;

    while (!stop_requested) {
        int r;

        if (c->o->max_packets && c->packets >= c->o->max_packets)
            break;
        r = pcap_next_ex(c->pcap, &h, &data);
        if (r == 1) {
            int rc = handle_packet(c, h, data, errbuf, errlen);
            if (rc != 0)
                return rc;
            if (c->packets % CLOCK_CHECK_EVERY == 0)
                check_clock(c);
        } else if (r == 0) {
            /* Live and nothing buffered: wait a little, then look at the clock. */
            struct pollfd pfd = {c->fd, POLLIN, 0};
            (void)poll(&pfd, 1, LIVE_TIMEOUT_MS); /* EINTR: a stop request, seen above */
            check_clock(c);
        } else if (r == PCAP_ERROR_BREAK) {
            break; /* end of file, or pcap_breakloop() */
        } else {
            return read_error(c, errbuf, errlen);
        }
    }
    return 0;
}

/* ---- the end ---- */

static uint64_t undecodable_flows(const struct cap_session_stats *s)
{
    return cap_session_undecodable_flows(s);
}

static int collect_counters(struct capture *c, struct cap_counter_list *l)
{
    int rc = cap_decode_stats_export(&c->dstats, l);

    if (rc == 0)
        rc = cap_flow_stats_export(c->flows, l);
    if (rc == 0)
        rc = cap_session_stats_export(&c->sstats, l);
    if (rc == 0)
        rc = cap_keylog_stats_export(c->keylog, l);
    if (rc == 0 && c->have_ps) {
        rc = cap_counter_add(l, "pcap.drop", c->ps.ps_drop);
        if (rc == 0)
            rc = cap_counter_add(l, "pcap.ifdrop", c->ps.ps_ifdrop);
    }
    if (rc == 0)
        rc = cap_counter_add(l, "pcap.truncated_file", (uint64_t)c->truncated_file);
    return rc;
}

/* Closes every flow and writes the summary; runs after errors too. */
static int finish(struct capture *c, struct h2r_capture_result *res, char *errbuf, size_t errlen)
{
    struct cap_counter_list l = {NULL, 0, 0};
    struct h2r_capture_summary sum;
    const struct cap_flow_stats *fs;
    int rc = 0;

    if (c->live && pcap_stats(c->pcap, &c->ps) == 0)
        c->have_ps = 1;
    if (!c->tw) {
        rc = open_writer(c, c->live ? wall_ns() : 0, errbuf, errlen);
        if (rc != 0)
            goto out;
    }
    rc = cap_flow_close_all(c->flows, c->last_ns);
    if (rc != 0) {
        rc = fatal_error(c, rc, errbuf, errlen);
        goto out;
    }
    rc = collect_counters(c, &l);
    if (rc != 0) {
        rc = h2r_seterr(errbuf, errlen, rc, "building the summary: %s", h2r_strerror(rc));
        goto out;
    }
    fs = cap_flow_table_stats(c->flows);
    memset(&sum, 0, sizeof(sum));
    sum.packets = c->packets;
    sum.bytes = c->bytes;
    sum.flows = fs->flows;
    sum.exchanges = c->sstats.exchanges;
    sum.gaps = cap_flow_table_reasm_stats(c->flows)->gaps;
    sum.undecodable_flows = undecodable_flows(&c->sstats);
    sum.end_ns = c->last_ns;
    sum.counters = l.v;
    sum.n_counters = l.n;
    rc = h2r_trace_write_summary(c->tw, &sum);
    if (rc != 0) {
        rc = fatal_error(c, rc, errbuf, errlen);
        goto out;
    }
    if (res) {
        res->packets = sum.packets;
        res->bytes = sum.bytes;
        res->flows = sum.flows;
        res->exchanges = sum.exchanges;
        res->gaps = sum.gaps;
        res->undecodable_flows = sum.undecodable_flows;
        res->ts_sessions = c->sstats.ts.sessions;
        res->ts_identified = c->sstats.ts.identified;
        res->ts_nodes = cap_ts_nodes_count(c->ts_nodes);
    }
out:
    cap_counter_list_free(&l);
    return rc;
}

static int close_writer(struct capture *c, struct h2r_capture_result *res, char *errbuf,
                        size_t errlen)
{
    char msg[256] = "";
    uint64_t bytes;
    int rc, rc2;

    if (!c->tw)
        return 0;
    /* Closing only ends the last zstd frame: after a flush the size is final. */
    rc = h2r_trace_writer_flush(c->tw);
    if (rc != 0)
        snprintf(msg, sizeof(msg), "%s", h2r_trace_writer_errmsg(c->tw));
    bytes = h2r_trace_writer_bytes(c->tw);
    rc2 = h2r_trace_writer_close(c->tw);
    c->tw = NULL;
    c->env.tw = NULL;
    if (rc == 0)
        rc = rc2;
    if (rc != 0)
        return h2r_seterr(errbuf, errlen, rc, "writing %s: %s", c->o->out_path,
                          msg[0] ? msg : h2r_strerror(rc));
    if (res)
        res->trace_bytes = bytes;
    return 0;
}

/* --keylog: secrets for TLS decryption; a live capture follows the file as clients append. */
static int open_keylog(struct capture *c, char *errbuf, size_t errlen)
{
    const struct cap_keylog_stats *ks;

    c->keylog = cap_keylog_open(c->o->keylog, errbuf, errlen);
    if (!c->keylog)
        return H2R_ERR_IO;
    cap_keylog_set_follow(c->keylog, c->live);
    c->env.keylog = c->keylog;
    ks = cap_keylog_stats(c->keylog);
    if (ks->lines == 0)
        fprintf(stderr, "capture: warning: key log %s has no key lines%s\n", c->o->keylog,
                c->live ? " yet" : ": TLS flows will not be decrypted");
    if (ks->bad_lines > 0)
        fprintf(stderr, "capture: warning: key log %s: %llu bad lines skipped (%s)\n",
                c->o->keylog, (unsigned long long)ks->bad_lines,
                cap_keylog_first_error(c->keylog));
    return 0;
}

/* Overwrites secret bytes in a way the compiler may not drop. */
static void wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;
    while (n--)
        *v++ = 0;
}

/*
 * --noise-key: Headscale's noise_private.key, the text "privkey:<64 hex>" (hscontrol/app.go
 * readOrCreatePrivateKey). It only decrypts Noise message 1 of each TS2021 upgrade for the
 * client's machine key; it stays in memory and is wiped at the end.
 */
static int open_noise_key(struct capture *c, uint64_t seed, char *errbuf, size_t errlen)
{
    const char *path = c->o->noise_key;
    char text[NOISE_KEY_FILE_MAX];
    size_t n;
    int bad, rc = 0;
    FILE *f = fopen(path, "rb");

    if (!f)
        return h2r_seterr(errbuf, errlen, H2R_ERR_IO, "--noise-key %s: cannot read: %s", path,
                          strerror(errno));
    n = fread(text, 1, sizeof(text), f);
    bad = ferror(f);
    fclose(f);
    if (bad) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_IO, "--noise-key %s: read error", path);
        goto out;
    }
    if (n == sizeof(text) || cap_ts_parse_noise_key(text, n, c->noise_key) != 0) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_FORMAT,
                        "--noise-key %s: not a Headscale noise private key (expected one line "
                        "'privkey:' followed by 64 hex digits, as in noise_private.key)",
                        path);
        goto out;
    }
    c->ts_nodes = cap_ts_nodes_new(seed);
    if (!c->ts_nodes) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "cannot allocate the TS2021 node table");
        goto out;
    }
    c->env.noise_key = c->noise_key;
    c->env.ts_nodes = c->ts_nodes;
out:
    wipe(text, sizeof(text));
    return rc;
}

/* After the run: TS2021 sessions that could not be identified, in words. */
static void warn_ts(const struct capture *c)
{
    const struct cap_ts_stats *t = &c->sstats.ts;

    if (t->sessions == 0)
        return;
    if (!c->o->noise_key)
        fprintf(stderr,
                "capture: %llu TS2021 sessions recorded without machine keys: give the "
                "server's noise_private.key with --noise-key to identify their nodes\n",
                (unsigned long long)t->sessions);
    else if (t->identify_failed > 0)
        fprintf(stderr,
                "capture: %llu of %llu TS2021 sessions not identified: their handshake does "
                "not decrypt with --noise-key %s (another server's key?)\n",
                (unsigned long long)t->identify_failed, (unsigned long long)t->sessions,
                c->o->noise_key);
}

/* After the run: why TLS flows were not decrypted, in words (counters are in the trace). */
static void warn_tls(const struct capture *c)
{
    const struct cap_session_stats *s = &c->sstats;
    unsigned long long n;

    if (s->undecodable_tls_no_keylog > 0)
        fprintf(stderr, "capture: %llu TLS flows not decrypted: no --keylog given\n",
                (unsigned long long)s->undecodable_tls_no_keylog);
    n = (unsigned long long)s->tls.no_key;
    if (n > 0)
        fprintf(stderr,
                "capture: %llu of %llu TLS flows not decrypted: no secrets for them in the key "
                "log %s (a key log from another capture or client?)\n",
                n, (unsigned long long)s->tls_flows, c->o->keylog);
    n = (unsigned long long)(s->tls.bad_tag + s->tls.unsupported_cipher +
                             s->tls.unsupported_version + s->tls.unsupported + s->tls.malformed);
    if (n > 0)
        fprintf(stderr,
                "capture: %llu TLS flows not decrypted: bad tag %llu, unsupported cipher %llu, "
                "unsupported version %llu, other unsupported %llu, malformed %llu (see the "
                "conn-end reasons)\n",
                n, (unsigned long long)s->tls.bad_tag,
                (unsigned long long)s->tls.unsupported_cipher,
                (unsigned long long)s->tls.unsupported_version,
                (unsigned long long)s->tls.unsupported, (unsigned long long)s->tls.malformed);
}

static int check_opts(const struct h2r_capture_opts *o, char *errbuf, size_t errlen)
{
    if (!o)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "no capture options");
    if (!o->read_file == !o->iface)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "give exactly one of -r FILE or -i IFACE");
    if (!o->out_path)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "-o TRACE is required");
    return 0;
}

int h2r_capture_run(const struct h2r_capture_opts *o, struct h2r_capture_result *res, char *errbuf,
                    size_t errlen)
{
    struct capture c;
    struct cap_flow_cfg fcfg;
    int rc, rc2;

    if (res)
        memset(res, 0, sizeof(*res));
    rc = check_opts(o, errbuf, errlen);
    if (rc != 0)
        return rc;
    memset(&c, 0, sizeof(c));
    c.o = o;
    c.live = o->iface != NULL;
    c.tty = isatty(STDERR_FILENO);
    c.env.stats = &c.sstats;
    c.env.max_req_body = o->max_req_body ? o->max_req_body : DEFAULT_MAX_REQ_BODY;
    c.env.max_resp_body = o->max_resp_body ? o->max_resp_body : DEFAULT_MAX_RESP_BODY;
    c.env.next_exchange_id = 1;
    stop_requested = 0;

    rc = c.live ? open_live(&c, errbuf, errlen) : open_offline(&c, errbuf, errlen);
    if (rc != 0)
        goto out;
    c.linktype = pcap_datalink(c.pcap);
    if (!cap_decode_linktype_supported(c.linktype)) {
        const char *name = pcap_datalink_val_to_name(c.linktype);
        const char *desc = pcap_datalink_val_to_description(c.linktype);
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_UNSUPPORTED,
                        "%s: unsupported link type %d (%s%s%s); supported: Ethernet, Linux "
                        "cooked (SLL/SLL2), BSD loopback, raw IP",
                        input_name(&c), c.linktype, name ? name : "unknown", desc ? ", " : "",
                        desc ? desc : "");
        goto out;
    }
    rc = set_filter(&c, errbuf, errlen);
    if (rc != 0)
        goto out;
    if (o->keylog) {
        rc = open_keylog(&c, errbuf, errlen);
        if (rc != 0)
            goto out;
    }
    memset(&fcfg, 0, sizeof(fcfg));
    fcfg.hash_seed = (uint64_t)mono_ns() ^ ((uint64_t)getpid() << 32);
    if (o->noise_key) {
        rc = open_noise_key(&c, fcfg.hash_seed ^ 0x7473323032316e64ull, errbuf, errlen);
        if (rc != 0)
            goto out;
    }
    if (o->redact) {
        c.redactor = cap_redactor_new(o->redact_headers, o->redact_fields);
        if (!c.redactor) {
            rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "cannot create the redactor");
            goto out;
        }
        c.env.redactor = c.redactor;
    }
    c.flows = cap_flow_table_new(&fcfg, &c.env);
    if (!c.flows) {
        rc = h2r_seterr(errbuf, errlen, H2R_ERR_NOMEM, "cannot allocate the flow table");
        goto out;
    }
    rc = describe(&c);
    if (rc != 0) {
        rc = h2r_seterr(errbuf, errlen, rc, "%s", h2r_strerror(rc));
        goto out;
    }

    c.t_start_mono = mono_ns();
    c.t_last_progress = c.t_start_mono;
    active_pcap = c.pcap;
    rc = capture_loop(&c, errbuf, errlen);
    active_pcap = NULL;
    /* The first error is the one reported; the trace is finished regardless. */
    if (!c.writer_failed) {
        rc2 = finish(&c, res, rc == 0 ? errbuf : NULL, rc == 0 ? errlen : 0);
        if (rc == 0)
            rc = rc2;
    }
    rc2 = close_writer(&c, res, rc == 0 ? errbuf : NULL, rc == 0 ? errlen : 0);
    if (rc == 0)
        rc = rc2;
    if (o->progress)
        print_progress(&c, 1, mono_ns());
    warn_tls(&c);
    warn_ts(&c);

out:
    active_pcap = NULL;
    if (c.tw)
        h2r_trace_writer_close(c.tw);
    cap_flow_table_free(c.flows);
    cap_redactor_free(c.redactor);
    cap_keylog_free(c.keylog);
    cap_ts_nodes_free(c.ts_nodes);
    wipe(c.noise_key, sizeof(c.noise_key));
    if (c.pcap)
        pcap_close(c.pcap);
    free(c.source);
    free(c.options);
    return rc;
}
