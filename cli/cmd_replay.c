/*
 * `h2replay replay`: flags -> struct h2r_replay_opts -> h2r_replay_run().
 * Installs SIGINT/SIGTERM handlers so an interrupted replay still ends its
 * section and leaves a valid run file (a second signal a second later kills at once).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "h2replay/replay.h"
#include "h2replay/units.h"

#define MAX_SET_VARS 4096
#define CLONE_JITTER_DEFAULT_NS 1000000000LL /* --clone without --clone-jitter (docs/ts2021.md) */

static void replay_usage(FILE *f)
{
    fprintf(f,
            "usage: h2replay replay TRACE --target [NAME=]URL [--target ...] -o RUN [options]\n"
            "       h2replay replay --nodes N --target ts2021+http://HOST:PORT\n"
            "           --set authkey=KEY -o RUN [options]  (TS2021 node sessions)\n"
            "       h2replay replay TRACE --target ts2021+http://HOST:PORT\n"
            "           --set authkey=KEY -o RUN [options]  (its captured TS2021 sessions)\n"
            "\n"
            "Re-issues the trace's HTTP/2 exchanges against each target in turn, with the\n"
            "captured timing scaled by --speed, one connection per captured connection, and\n"
            "writes one result per exchange and target into the run file.\n"
            "\n"
            "targets:\n"
            "  -T, --target [NAME=]URL  http://host[:port] = HTTP/2 cleartext (prior\n"
            "                           knowledge), https://host[:port] = TLS with ALPN h2.\n"
            "                           Repeatable; one run-file section per target. The\n"
            "                           URL's authority replaces :authority and :scheme;\n"
            "                           the captured path is kept. ts2021+http(s)://: below\n"
            "      --between CMD        run `/bin/sh -c CMD` between targets (environment:\n"
            "                           H2R_PREV_TARGET, H2R_NEXT_TARGET, H2R_NEXT_URL,\n"
            "                           H2R_RUN_FILE); a non-zero exit stops the replay\n"
            "                           (exit 1)\n"
            "      --db [NAME=]DSN      sample target NAME's database while it replays (no\n"
            "                           NAME: every target without its own --db): row\n"
            "                           counts, SQLite WAL and pages, PostgreSQL locks,\n"
            "                           waits, commits and rollbacks, as db_sample records\n"
            "                           (DSNs as in `h2replay db`); at the section's end,\n"
            "                           checks what the server acknowledged against it (a\n"
            "                           verify record: acknowledged but lost, present but\n"
            "                           never acknowledged)\n"
            "      --db-interval DUR    database sample interval (default 1s, at least 10ms)\n"
            "timing:\n"
            "  -s, --speed X|max        time scale: 1 = as captured (default), 10 = ten times\n"
            "                           faster; max = each request as soon as the request it\n"
            "                           causally follows on its connection has completed\n"
            "                           (concurrent streams stay concurrent)\n"
            "      --timeout DUR        per-request deadline, measured from the actual send\n"
            "                           (default 5s); beyond it: deadline_exceeded\n"
            "      --connect-timeout DUR  TCP connect + TLS handshake (default 3s)\n"
            "  -t, --threads N          event-loop threads; captured connections are shared\n"
            "                           out round-robin (default 1)\n"
            "sharding (N processes or machines replay one trace; docs/distributed.md):\n"
            "      --shard I/N          replay only shard I of N (I 0-based, as\n"
            "                           $JOB_COMPLETION_INDEX): captured connections by first\n"
            "                           request, dealt round-robin; N shards = the trace\n"
            "                           once; node sessions by identity (never splitting\n"
            "                           one node's sessions)\n"
            "      --start-at TIME      shared t0: RFC 3339 UTC (2026-11-27T01:00:00Z),\n"
            "                           +30s from now, or Unix seconds/ns; sleeps until then\n"
            "                           (at most 24h ahead, 5s late); one target only\n"
            "TLS:\n"
            "      --insecure           do not verify the server certificate\n"
            "      --cacert FILE        verify against this PEM bundle, not the system CAs\n"
            "rewriting (placeholders left by capture redaction, rewrite rules):\n"
            "      --set NAME=VALUE     value for $H2R{NAME} (repeatable; masked in the run\n"
            "                           file)\n"
            "      --set TARGET:NAME=VALUE  the same for the target named TARGET only (wins\n"
            "                           over NAME=VALUE there)\n"
            "      --set-file FILE      NAME=VALUE lines\n"
            "      --rewrite FILE       rewrite rules (docs/rewrite-rules.md)\n"
            "TS2021 node sessions (targets ts2021+http:// or ts2021+https://):\n"
            "  with a TRACE: its captured TS2021 sessions, at their captured starts and\n"
            "  lifetimes (--speed scales both); one identity per captured node, so a\n"
            "  reconnect presents the same keys; sessions without a completed handshake\n"
            "  give one skipped result each; the trace's HTTP/2 exchanges are not replayed\n"
            "      --nodes N            instead of a TRACE: N synthetic nodes; each registers\n"
            "                           with --set authkey=KEY, then holds a netmap stream\n"
            "      --arrival DUR        spread the N starts uniformly over DUR (default 0)\n"
            "      --hold DUR           each session's lifetime from its start (default 0:\n"
            "                           close after the first netmap); --speed scales both\n"
            "      --clone N            replay every planned session N times: copy k of a\n"
            "                           node is one new identity for all its sessions\n"
            "      --clone-jitter DUR   spread the copies' starts over DUR (copy k: +DUR*k/N;\n"
            "                           default 1s with --clone)\n"
            "      --capver N           capability version sent (default: the trace's, when\n"
            "                           its sessions agree, else 130; Headscale v0.23.0\n"
            "                           accepts >= 61, v0.29.2 >= 113)\n"
            "      --omit-peers         light sessions: register + OmitPeers map, no stream\n"
            "      --keepalive-window DUR  map stream silence that is stream_stalled (120s)\n"
            "                           (--timeout bounds register and the first netmap,\n"
            "                           --connect-timeout TCP + TLS + the TS2021 upgrade)\n"
            "output:\n"
            "  -o, --output RUN         run file to write\n"
            "      --label TEXT         free text stored with every section\n"
            "      --progress           progress line on stderr every second (default on a\n"
            "                           TTY)\n"
            "  -q, --quiet              no progress and no summary\n"
            "\n"
            "Failed requests are data, not errors: each result carries a class (refused,\n"
            "connect_timeout, tls, stream_reset, goaway, deadline_exceeded, http_status,\n"
            "grpc_status, conn_closed, cancelled, protocol, io, skipped; docs/run-format.md).\n"
            "Each result records the intended send time (from the schedule), the actual send\n"
            "time and the completion time, so latency can be measured either way.\n"
            "On SIGINT/SIGTERM, requests in flight are recorded as cancelled, unsent ones as\n"
            "skipped, and the run file is closed cleanly.\n"
            "\n"
            "exit status: 0 the replay ran (even if every request failed, or it was\n"
            "interrupted); 1 it could not run or its output could not be written (unreadable\n"
            "trace, unwritable run file, failed --between command, placeholders in a build\n"
            "without rewriting); 2 usage error, including a $H2R{...} placeholder that no\n"
            "--set / --set-file value fills\n");
}

/* First signal: stop cleanly. A second one at least a second later (a user pressing
 * Ctrl-C again) ends the process at once; one arriving together with the first is the
 * same request delivered twice (timeout(1) signals the child and its process group). */
static volatile sig_atomic_t first_signal_s;

static void on_signal(int sig)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (first_signal_s && now.tv_sec - first_signal_s >= 1) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    if (!first_signal_s)
        first_signal_s = (sig_atomic_t)(now.tv_sec ? now.tv_sec : 1);
    h2r_replay_request_stop();
}

/* The command line for the run meta: --set values masked, odd arguments quoted. */
static char *join_command(int argc, char **argv)
{
    size_t cap = 64;
    for (int i = 0; i < argc; i++)
        cap += strlen(argv[i]) * 4 + 8;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    size_t n = (size_t)snprintf(s, cap, "h2replay");
    int mask_next = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        char masked[300];
        if (mask_next || strncmp(a, "--set=", 6) == 0) {
            const char *v = mask_next ? a : a + 6;
            const char *eq = strchr(v, '=');
            int nl = eq ? (int)(eq - v) : (int)strlen(v);
            if (nl > 200)
                nl = 200;
            snprintf(masked, sizeof(masked), "%s%.*s=***", mask_next ? "" : "--set=", nl, v);
            a = masked;
        }
        mask_next = strcmp(argv[i], "--set") == 0;
        int plain = *a != '\0' && strpbrk(a, " \t\n'\"$`\\;&|<>*?()[]{}") == NULL;
        s[n++] = ' ';
        if (plain) {
            n += (size_t)snprintf(s + n, cap - n, "%s", a);
            continue;
        }
        s[n++] = '\'';
        for (const char *p = a; *p; p++) {
            if (*p == '\'') {
                memcpy(s + n, "'\\''", 4);
                n += 4;
            } else {
                s[n++] = *p;
            }
        }
        s[n++] = '\'';
        s[n] = '\0';
    }
    return s;
}

static int parse_duration_flag(const char *flag, const char *v, int64_t *out)
{
    if (h2r_parse_duration(v, out) || *out <= 0) {
        cli_err("replay", "%s: '%s' is not a positive duration (e.g. 500ms, 5s, 2m)", flag, v);
        return -1;
    }
    return 0;
}

int cmd_replay(int argc, char **argv)
{
    enum {
        OPT_TIMEOUT = 256,
        OPT_CONNECT_TIMEOUT,
        OPT_INSECURE,
        OPT_CACERT,
        OPT_BETWEEN,
        OPT_SET,
        OPT_SET_FILE,
        OPT_REWRITE,
        OPT_LABEL,
        OPT_PROGRESS
    };
    enum { OPT_DB = 512, OPT_DB_INTERVAL };
    enum {
        OPT_NODES = 768,
        OPT_ARRIVAL,
        OPT_HOLD,
        OPT_CLONE,
        OPT_CLONE_JITTER,
        OPT_CAPVER,
        OPT_OMIT_PEERS,
        OPT_KEEPALIVE_WINDOW
    };
    enum { OPT_SHARD = 640, OPT_START_AT };
    static const struct option longopts[] = {
        {"target", required_argument, NULL, 'T'},
        {"speed", required_argument, NULL, 's'},
        {"output", required_argument, NULL, 'o'},
        {"threads", required_argument, NULL, 't'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"cacert", required_argument, NULL, OPT_CACERT},
        {"between", required_argument, NULL, OPT_BETWEEN},
        {"set", required_argument, NULL, OPT_SET},
        {"set-file", required_argument, NULL, OPT_SET_FILE},
        {"rewrite", required_argument, NULL, OPT_REWRITE},
        {"label", required_argument, NULL, OPT_LABEL},
        {"progress", no_argument, NULL, OPT_PROGRESS},
        {"db", required_argument, NULL, OPT_DB},
        {"db-interval", required_argument, NULL, OPT_DB_INTERVAL},
        {"nodes", required_argument, NULL, OPT_NODES},
        {"arrival", required_argument, NULL, OPT_ARRIVAL},
        {"hold", required_argument, NULL, OPT_HOLD},
        {"clone", required_argument, NULL, OPT_CLONE},
        {"clone-jitter", required_argument, NULL, OPT_CLONE_JITTER},
        {"capver", required_argument, NULL, OPT_CAPVER},
        {"omit-peers", no_argument, NULL, OPT_OMIT_PEERS},
        {"keepalive-window", required_argument, NULL, OPT_KEEPALIVE_WINDOW},
        {"shard", required_argument, NULL, OPT_SHARD},
        {"start-at", required_argument, NULL, OPT_START_AT},
        {NULL, 0, NULL, 0}};

    if (cli_wants_help(argc, argv)) {
        replay_usage(stdout);
        return 0;
    }
    struct h2r_replay_opts o;
    h2r_replay_opts_init(&o);
    const char *targets[H2R_REPLAY_MAX_TARGETS];
    const char *dbs[H2R_REPLAY_MAX_TARGETS];
    size_t n_dbs = 0;
    size_t n_targets = 0;
    const char **sets = NULL;
    size_t n_sets = 0;
    int quiet = 0, progress = isatty(STDERR_FILENO), jitter_given = 0;
    int rc = EXIT_USAGE;
    char *command = NULL;
    optind = 1;
    for (;;) {
        int c = getopt_long(argc, argv, "T:s:o:t:qh", longopts, NULL);
        if (c == -1)
            break;
        switch (c) {
        case 'T': {
            char err[256];
            if (n_targets == H2R_REPLAY_MAX_TARGETS) {
                cli_err("replay", "at most %d targets", H2R_REPLAY_MAX_TARGETS);
                goto out;
            }
            if (h2r_replay_check_target(optarg, err, sizeof(err))) {
                cli_err("replay", "--target: %s", err);
                goto out;
            }
            targets[n_targets++] = optarg;
            break;
        }
        case 's':
            if (h2r_replay_parse_speed(optarg, &o.speed)) {
                cli_err("replay", "--speed: '%s' is not a positive factor or 'max'", optarg);
                goto out;
            }
            break;
        case 'o':
            o.run_path = optarg;
            break;
        case 't': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || end == optarg || n < 1 || n > H2R_REPLAY_MAX_THREADS) {
                cli_err("replay", "-t: '%s' is not a thread count in 1..%d", optarg,
                        H2R_REPLAY_MAX_THREADS);
                goto out;
            }
            o.threads = (int)n;
            break;
        }
        case 'q':
            quiet = 1;
            break;
        case 'h':
            replay_usage(stdout);
            rc = 0;
            goto out;
        case OPT_TIMEOUT:
            if (parse_duration_flag("--timeout", optarg, &o.timeout_ns))
                goto out;
            break;
        case OPT_CONNECT_TIMEOUT:
            if (parse_duration_flag("--connect-timeout", optarg, &o.connect_timeout_ns))
                goto out;
            break;
        case OPT_INSECURE:
            o.insecure = 1;
            break;
        case OPT_CACERT:
            o.cacert = optarg;
            break;
        case OPT_BETWEEN:
            o.between = optarg;
            break;
        case OPT_SET: {
            if (!strchr(optarg, '=') || optarg[0] == '=') {
                cli_err("replay", "--set: expected NAME=VALUE");
                goto out;
            }
            if (n_sets == MAX_SET_VARS) {
                cli_err("replay", "--set: at most %d values (use --set-file)", MAX_SET_VARS);
                goto out;
            }
            const char **v = realloc(sets, (n_sets + 1) * sizeof(*v));
            if (!v) {
                cli_err("replay", "out of memory");
                rc = 1;
                goto out;
            }
            sets = v;
            sets[n_sets++] = optarg;
            break;
        }
        case OPT_SET_FILE:
            o.set_file = optarg;
            break;
        case OPT_REWRITE:
            o.rewrite_file = optarg;
            break;
        case OPT_LABEL:
            o.label = optarg;
            break;
        case OPT_PROGRESS:
            progress = 1;
            break;
        case OPT_DB:
            if (n_dbs == H2R_REPLAY_MAX_TARGETS) {
                cli_err("replay", "--db: at most %d", H2R_REPLAY_MAX_TARGETS);
                goto out;
            }
            dbs[n_dbs++] = optarg;
            break;
        case OPT_DB_INTERVAL:
            if (parse_duration_flag("--db-interval", optarg, &o.db_interval_ns))
                goto out;
            break;
        case OPT_NODES:
        case OPT_CLONE:
        case OPT_CAPVER: {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            unsigned long max = c == OPT_CAPVER ? 65535 : 10000000;
            if (*end || end == optarg || optarg[0] == '-' || v < 1 || v > max) {
                cli_err("replay", "%s: '%s' is not a number in 1..%lu",
                        c == OPT_NODES ? "--nodes" : c == OPT_CLONE ? "--clone" : "--capver",
                        optarg, max);
                goto out;
            }
            if (c == OPT_NODES)
                o.ts.nodes = (uint32_t)v;
            else if (c == OPT_CLONE)
                o.ts.clone = (uint32_t)v;
            else
                o.ts.capver = (uint32_t)v;
            break;
        }
        case OPT_ARRIVAL:
        case OPT_HOLD:
        case OPT_CLONE_JITTER: {
            int64_t *dst = c == OPT_ARRIVAL ? &o.ts.arrival_ns
                           : c == OPT_HOLD  ? &o.ts.hold_ns
                                            : &o.ts.clone_jitter_ns;
            if (h2r_parse_duration(optarg, dst) || *dst < 0) {
                cli_err("replay", "'%s' is not a duration (e.g. 0, 500ms, 30s, 2m)", optarg);
                goto out;
            }
            jitter_given |= c == OPT_CLONE_JITTER;
            break;
        }
        case OPT_OMIT_PEERS:
            o.ts.omit_peers = 1;
            break;
        case OPT_KEEPALIVE_WINDOW:
            if (parse_duration_flag("--keepalive-window", optarg, &o.ts.stall_ns))
                goto out;
            break;
        case OPT_SHARD:
        case OPT_START_AT: {
            char err[256];
            int bad = c == OPT_SHARD ? h2r_replay_parse_shard(optarg, &o.shard_index,
                                                              &o.shard_count, err, sizeof(err))
                                     : h2r_replay_parse_start_at(optarg, h2r_now_wall_ns(),
                                                                 &o.start_at_ns, err, sizeof(err));
            if (bad) {
                cli_err("replay", "%s: %s", c == OPT_SHARD ? "--shard" : "--start-at", err);
                goto out;
            }
            break;
        }
        default:
            replay_usage(stderr);
            goto out;
        }
    }
    if (optind >= argc && !o.ts.nodes) {
        cli_err("replay", "a TRACE argument is required (see --help)");
        goto out;
    }
    if (optind < argc) /* with --nodes too: the library refuses TRACE + --nodes clearly */
        o.trace_path = argv[optind++];
    if (optind < argc) {
        cli_err("replay", "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (n_targets == 0) {
        cli_err("replay", "at least one --target [NAME=]URL is required (see --help)");
        goto out;
    }
    if (!o.run_path) {
        cli_err("replay", "-o RUN is required (see --help)");
        goto out;
    }
    if ((o.rewrite_file || o.set_file || n_sets) && !h2r_replay_have_rewrite()) {
        cli_err("replay", "--rewrite, --set and --set-file are not supported by this build");
        goto out;
    }
    if (o.ts.clone > 1 && !jitter_given) /* copies of one session do not all start at once */
        o.ts.clone_jitter_ns = CLONE_JITTER_DEFAULT_NS;
    o.targets = targets;
    o.dbs = dbs;
    o.n_dbs = n_dbs;
    o.n_targets = n_targets;
    o.set_vars = sets;
    o.n_set_vars = n_sets;
    o.quiet = quiet;
    o.progress = progress && !quiet;
    command = join_command(argc, argv);
    o.command = command;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct h2r_replay_result res;
    memset(&res, 0, sizeof(res));
    char err[512] = "";
    int r = h2r_replay_run(&o, &res, err, sizeof(err));
    if (r) {
        cli_err("replay", "%s", err[0] ? err : h2r_strerror(r));
        rc = r == H2R_ERR_ARG ? EXIT_USAGE : 1;
        goto out;
    }
    if (!quiet && res.interrupted)
        fprintf(stderr, "replay: interrupted; %s is complete up to the interruption\n", o.run_path);
    rc = 0;
out:
    free(command);
    free(sets);
    return rc;
}
