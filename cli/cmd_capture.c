/*
 * `h2replay capture`: flags -> struct h2r_capture_opts -> h2r_capture_run().
 * Installs SIGINT/SIGTERM handlers so a live capture stops cleanly and the
 * trace still ends with its summary record.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "h2replay/capture.h"
#include "h2replay/units.h"

static void capture_usage(FILE *f)
{
    fprintf(f,
            "usage: h2replay capture (-r FILE | -i IFACE) -o TRACE [options]\n"
            "\n"
            "Records client->server HTTP/2 exchanges (h2c prior knowledge and Upgrade: h2c)\n"
            "from a pcap/pcapng file or a live interface into a zstd-compressed trace, and the\n"
            "shape of Tailscale TS2021 control sessions (docs/capture.md).\n"
            "\n"
            "input:\n"
            "  -r, --read FILE          read packets from a pcap or pcapng file ('-' = stdin)\n"
            "  -i, --interface IFACE    capture live (needs CAP_NET_RAW; e.g. -i lo)\n"
            "  -f, --filter EXPR        BPF filter, e.g. 'tcp port 8080' (also with -r)\n"
            "  -c, --count N            stop after N packets\n"
            "      --duration DUR       live: stop after DUR (e.g. 30s, 5m); default: SIGINT\n"
            "  -s, --snaplen BYTES      live: bytes kept per packet (default 262144)\n"
            "      --keylog FILE        TLS key log (SSLKEYLOGFILE format) to decrypt TLS flows\n"
            "      --noise-key FILE     Headscale's noise_private.key ('privkey:<hex>'): reads\n"
            "                           each TS2021 client's machine key (never written out)\n"
            "output:\n"
            "  -o, --output TRACE       trace file to write ('-' = stdout)\n"
            "      --max-req-body SIZE  request body bytes stored per exchange (default 1MiB)\n"
            "      --max-resp-body SIZE response body bytes stored per exchange (default 4KiB)\n"
            "redaction (on by default; secrets become $H2R{name_N} placeholders):\n"
            "      --no-redact          keep secrets (never for production traces)\n"
            "      --redact-headers L   comma list of header names (replaces the default list)\n"
            "      --redact-fields L    comma list of JSON body field names (replaces the default)\n"
            "progress:\n"
            "      --progress           progress line on stderr every second (default on a TTY)\n"
            "  -q, --quiet              no progress and no summary\n"
            "\n"
            "exit status: 0 trace written; 1 input or output error (a trace is still written\n"
            "up to the error, ending with its summary); 2 usage error\n");
}

static void on_signal(int sig)
{
    (void)sig;
    h2r_capture_request_stop();
}

#ifndef H2R_HAVE_CAPTURE
/* the capture library is not part of this build yet */
void h2r_capture_opts_init(struct h2r_capture_opts *o) { memset(o, 0, sizeof(*o)); }
int h2r_capture_run(const struct h2r_capture_opts *o, struct h2r_capture_result *r, char *e, size_t n) { (void)o; (void)r; return h2r_seterr(e, n, H2R_ERR_UNSUPPORTED, "capture not built"); }
void h2r_capture_request_stop(void) {}
#endif

int cmd_capture(int argc, char **argv)
{
    enum {
        OPT_NO_REDACT = 256,
        OPT_REDACT_HEADERS,
        OPT_REDACT_FIELDS,
        OPT_MAX_REQ,
        OPT_MAX_RESP,
        OPT_DURATION,
        OPT_KEYLOG,
        OPT_NOISE_KEY,
        OPT_PROGRESS
    };
    static const struct option longopts[] = {
        {"read", required_argument, NULL, 'r'},
        {"interface", required_argument, NULL, 'i'},
        {"filter", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'o'},
        {"count", required_argument, NULL, 'c'},
        {"snaplen", required_argument, NULL, 's'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"no-redact", no_argument, NULL, OPT_NO_REDACT},
        {"redact-headers", required_argument, NULL, OPT_REDACT_HEADERS},
        {"redact-fields", required_argument, NULL, OPT_REDACT_FIELDS},
        {"max-req-body", required_argument, NULL, OPT_MAX_REQ},
        {"max-resp-body", required_argument, NULL, OPT_MAX_RESP},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"keylog", required_argument, NULL, OPT_KEYLOG},
        {"noise-key", required_argument, NULL, OPT_NOISE_KEY},
        {"progress", no_argument, NULL, OPT_PROGRESS},
        {NULL, 0, NULL, 0}};

    struct h2r_capture_opts o;
    h2r_capture_opts_init(&o);
    int quiet = 0, progress = isatty(STDERR_FILENO);
    uint64_t size;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "r:i:f:o:c:s:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            o.read_file = optarg;
            break;
        case 'i':
            o.iface = optarg;
            break;
        case 'f':
            o.filter = optarg;
            break;
        case 'o':
            o.out_path = optarg;
            break;
        case 'c': {
            char *end;
            unsigned long long n = strtoull(optarg, &end, 10);
            if (*end || end == optarg) {
                cli_err("capture", "-c: '%s' is not a packet count", optarg);
                return EXIT_USAGE;
            }
            o.max_packets = n;
            break;
        }
        case 's':
            if (h2r_parse_size(optarg, &size) || size < 64 || size > 262144) {
                cli_err("capture", "-s: '%s' is not a snap length in 64..262144", optarg);
                return EXIT_USAGE;
            }
            o.snaplen = (int)size;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            capture_usage(stdout);
            return 0;
        case OPT_NO_REDACT:
            o.redact = 0;
            break;
        case OPT_REDACT_HEADERS:
            o.redact_headers = optarg;
            break;
        case OPT_REDACT_FIELDS:
            o.redact_fields = optarg;
            break;
        case OPT_MAX_REQ:
        case OPT_MAX_RESP:
            if (h2r_parse_size(optarg, &size) || size > 16u * 1024 * 1024) {
                cli_err("capture", "%s: '%s' is not a size up to 16MiB",
                        c == OPT_MAX_REQ ? "--max-req-body" : "--max-resp-body", optarg);
                return EXIT_USAGE;
            }
            /* 0 means "store nothing": keep it distinct from "default" */
            if (c == OPT_MAX_REQ)
                o.max_req_body = size ? (size_t)size : 1;
            else
                o.max_resp_body = size ? (size_t)size : 1;
            break;
        case OPT_DURATION:
            if (h2r_parse_duration(optarg, &o.duration_ns) || o.duration_ns <= 0) {
                cli_err("capture", "--duration: '%s' is not a duration (e.g. 30s, 5m)", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_KEYLOG:
            o.keylog = optarg;
            break;
        case OPT_NOISE_KEY:
            o.noise_key = optarg;
            break;
        case OPT_PROGRESS:
            progress = 1;
            break;
        default:
            capture_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        cli_err("capture", "unexpected argument '%s'", argv[optind]);
        return EXIT_USAGE;
    }
    if (!o.read_file == !o.iface) {
        cli_err("capture", "give exactly one of -r FILE or -i IFACE (see --help)");
        return EXIT_USAGE;
    }
    if (!o.out_path) {
        cli_err("capture", "-o TRACE is required (see --help)");
        return EXIT_USAGE;
    }
    o.progress = progress && !quiet;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct h2r_capture_result res;
    memset(&res, 0, sizeof(res));
    char err[512] = "";
    int rc = h2r_capture_run(&o, &res, err, sizeof(err));
    if (rc) {
        cli_err("capture", "%s", err[0] ? err : h2r_strerror(rc));
        return rc == H2R_ERR_ARG ? EXIT_USAGE : 1;
    }
    if (!quiet)
        fprintf(stderr,
                "capture: %llu packets, %llu flows, %llu exchanges, %llu gaps, %llu undecodable "
                "flows -> %s (%llu bytes)\n",
                (unsigned long long)res.packets, (unsigned long long)res.flows,
                (unsigned long long)res.exchanges, (unsigned long long)res.gaps,
                (unsigned long long)res.undecodable_flows, o.out_path,
                (unsigned long long)res.trace_bytes);
    if (!quiet && res.ts_sessions > 0)
        fprintf(stderr, "capture: %llu TS2021 sessions, %llu identified, %llu distinct nodes\n",
                (unsigned long long)res.ts_sessions, (unsigned long long)res.ts_identified,
                (unsigned long long)res.ts_nodes);
    return 0;
}
