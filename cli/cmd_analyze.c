/*
 * `h2replay analyze`: flags -> struct h2r_analyze_opts -> h2r_analyze().
 * Exit status is the CI contract: 0 every gate passed, 1 a gate failed,
 * 2 usage or input error (bad flag or gate, unreadable or incomparable runs).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "h2replay/analyze.h"
#include "h2replay/units.h"

static void analyze_usage(FILE *f)
{
    fprintf(f,
            "usage: h2replay analyze RUN [RUN ...] [options]\n"
            "\n"
            "Reads run files (one run per section; shards of one replay merge), groups\n"
            "exchanges by endpoint, finds failure points, diffs runs against a reference and\n"
            "evaluates CI gates. docs/analyze.md has the gate grammar and the JSON schema.\n"
            "\n"
            "  -b, --baseline REF        reference for diffs, new failures and relative gates:\n"
            "                            a run name, a run file (FILE or FILE@SECTION) or a\n"
            "                            trace (its captured latencies); default: the first run\n"
            "  -g, --group-by WHAT       endpoint (default), conn or none\n"
            "  -w, --window DUR          time-series window (default 1s)\n"
            "  -f, --format FMT          table (default), json, md or html\n"
            "  -o, --output FILE         write the report to FILE (default stdout)\n"
            "      --gate EXPR           e.g. 'p99(/machine/register) < +20%%', 'errors == 0',\n"
            "                            'error_rate(POST /api/v1/user) <= 1%%' (repeatable);\n"
            "                            evaluated on the last run against the reference;\n"
            "                            with --server-log also 'server_errors <= 0',\n"
            "                            'server_warnings < 10'\n"
            "      --fold-rule RE=TMPL   extra endpoint folding rule, POSIX regex (repeatable)\n"
            "      --threshold RATE      error rate of a failing window (default 0.05, or 5%%)\n"
            "      --sustain N           windows for failure onset and recovery (default 3)\n"
            "      --server-log [TARGET=]FILE\n"
            "                            Headscale's log (zerolog JSON or console text) placed\n"
            "                            on the timeline of run TARGET (a section name), or of\n"
            "                            every run without it: server errors and warnings per\n"
            "                            window, first error vs the client's first failure,\n"
            "                            message classes (repeatable; same host or synchronized\n"
            "                            clocks; Headscale stamps whole seconds)\n"
            "  -q, --quiet               no warnings\n"
            "\n"
            "exit status: 0 all gates passed (or none given); 1 a gate failed; 2 usage or\n"
            "input error (bad flag or gate, unreadable run file, runs of different traces)\n");
}

static int parse_rate(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s)
        return -1;
    if (strcmp(end, "%") == 0)
        v /= 100.0;
    else if (*end)
        return -1;
    if (!(v >= 0 && v < 1))
        return -1;
    *out = v;
    return 0;
}

int cmd_analyze(int argc, char **argv)
{
    enum { OPT_GATE = 256, OPT_FOLD, OPT_THRESHOLD, OPT_SUSTAIN, OPT_SERVER_LOG };
    static const struct option longopts[] = {{"baseline", required_argument, NULL, 'b'},
                                             {"group-by", required_argument, NULL, 'g'},
                                             {"window", required_argument, NULL, 'w'},
                                             {"format", required_argument, NULL, 'f'},
                                             {"output", required_argument, NULL, 'o'},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"gate", required_argument, NULL, OPT_GATE},
                                             {"fold-rule", required_argument, NULL, OPT_FOLD},
                                             {"threshold", required_argument, NULL, OPT_THRESHOLD},
                                             {"sustain", required_argument, NULL, OPT_SUSTAIN},
                                             {"server-log", required_argument, NULL,
                                              OPT_SERVER_LOG},
                                             {NULL, 0, NULL, 0}};
    struct h2r_analyze_opts o;
    h2r_analyze_opts_init(&o);
    int status = EXIT_USAGE, c;
    size_t n_gates = 0, n_rules = 0, n_slogs = 0;
    /* at most one gate or rule per argument */
    const char **gates = calloc((size_t)argc + 1, sizeof(*gates));
    const char **rules = calloc((size_t)argc + 1, sizeof(*rules));
    const char **slogs = calloc((size_t)argc + 1, sizeof(*slogs));
    if (!gates || !rules || !slogs) {
        cli_err("analyze", "out of memory");
        status = 1;
        goto out;
    }
    optind = 1;
    for (;;) {
        c = getopt_long(argc, argv, "b:g:w:f:o:qh", longopts, NULL);
        if (c == -1)
            break;
        switch (c) {
        case 'b':
            o.baseline = optarg;
            break;
        case 'g':
            if (strcmp(optarg, "endpoint") == 0) {
                o.group_by = H2R_ANALYZE_BY_ENDPOINT;
            } else if (strcmp(optarg, "conn") == 0) {
                o.group_by = H2R_ANALYZE_BY_CONN;
            } else if (strcmp(optarg, "none") == 0) {
                o.group_by = H2R_ANALYZE_BY_NONE;
            } else {
                cli_err("analyze", "--group-by: '%s' is not endpoint, conn or none", optarg);
                goto out;
            }
            break;
        case 'w':
            if (h2r_parse_duration(optarg, &o.window_ns) || o.window_ns < 1000000) {
                cli_err("analyze", "--window: '%s' is not a duration of at least 1ms", optarg);
                goto out;
            }
            break;
        case 'f':
            if (strcmp(optarg, "table") == 0) {
                o.format = H2R_ANALYZE_TABLE;
            } else if (strcmp(optarg, "json") == 0) {
                o.format = H2R_ANALYZE_JSON;
            } else if (strcmp(optarg, "md") == 0 || strcmp(optarg, "markdown") == 0) {
                o.format = H2R_ANALYZE_MD;
            } else if (strcmp(optarg, "html") == 0) {
                o.format = H2R_ANALYZE_HTML;
            } else {
                cli_err("analyze", "--format: '%s' is not table, json, md or html", optarg);
                goto out;
            }
            break;
        case 'o':
            o.out_path = optarg;
            break;
        case 'q':
            o.quiet = 1;
            break;
        case 'h':
            analyze_usage(stdout);
            status = 0;
            goto out;
        case OPT_GATE: {
            char err[512];
            if (h2r_analyze_check_gate(optarg, err, sizeof(err))) {
                cli_err("analyze", "%s", err);
                goto out;
            }
            gates[n_gates++] = optarg;
            break;
        }
        case OPT_FOLD:
            rules[n_rules++] = optarg;
            break;
        case OPT_SERVER_LOG:
            if (!*optarg) {
                cli_err("analyze", "--server-log: give [TARGET=]FILE");
                goto out;
            }
            slogs[n_slogs++] = optarg;
            break;
        case OPT_THRESHOLD:
            if (parse_rate(optarg, &o.threshold)) {
                cli_err("analyze", "--threshold: '%s' is not a rate in [0, 1) (e.g. 0.05 or 5%%)",
                        optarg);
                goto out;
            }
            break;
        case OPT_SUSTAIN: {
            char *end;
            unsigned long n = strtoul(optarg, &end, 10);
            if (*end || end == optarg || n < 1 || n > 10000) {
                cli_err("analyze", "--sustain: '%s' is not a window count in 1..10000", optarg);
                goto out;
            }
            o.sustain = (unsigned)n;
            break;
        }
        default:
            analyze_usage(stderr);
            goto out;
        }
    }
    if (optind >= argc) {
        cli_err("analyze", "give at least one run file (see --help)");
        goto out;
    }
    o.inputs = (const char *const *)(argv + optind);
    o.n_inputs = (size_t)(argc - optind);
    o.gates = gates;
    o.n_gates = n_gates;
    o.fold_rules = rules;
    o.n_fold_rules = n_rules;
    o.server_logs = slogs;
    o.n_server_logs = n_slogs;

    struct h2r_analyze_result res;
    char err[1024] = "";
    int rc = h2r_analyze(&o, &res, err, sizeof(err));
    if (rc)
        cli_err("analyze", "%s", err[0] ? err : h2r_strerror(rc));
    status = h2r_analyze_exit_code(rc, &res);
out:
    free(gates);
    free(rules);
    free(slogs);
    return status;
}
